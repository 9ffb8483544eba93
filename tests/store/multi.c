/*
 * evs_append_multi: several streams, all or nothing.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/evstore.h"
#include "testutil.h"

TestSuite(store_multi, .init = tu_setup, .fini = tu_teardown, .timeout = 60);

/* Three parts: "acct-1" (2 events), "acct-2" (1 event), "ledger" (3). */
typedef struct fixture {
  evs_event_data ev[3][3];
  evs_append_part parts[3];
} fixture;

static void make_parts(fixture *f, int64_t e0, int64_t e1, int64_t e2) {
  static const char *streams[] = {"acct-1", "acct-2", "ledger"};
  static const size_t counts[] = {2, 1, 3};
  const int64_t exp[] = {e0, e1, e2};
  memset(f, 0, sizeof *f);
  for (int p = 0; p < 3; p++) {
    for (size_t k = 0; k < counts[p]; k++)
      tu_event(&f->ev[p][k], p == 2 ? "Entry" : "Moved", streams[p],
               strlen(streams[p]));
    f->parts[p].stream = streams[p];
    f->parts[p].expected = exp[p];
    f->parts[p].events = f->ev[p];
    f->parts[p].count = counts[p];
  }
}

static void assert_unchanged(uint64_t head, const int64_t *versions) {
  static const char *streams[] = {"acct-1", "acct-2", "ledger"};
  cr_assert_eq(tu_head(tu_store), head, "a failed multi-append wrote");
  for (int p = 0; p < 3; p++) {
    evs_stream_info info;
    int rc = evs_stream_info_get(tu_store, streams[p], &info);
    if (versions[p] == EVS_VERSION_NONE) {
      cr_assert_eq(rc, EVS_ENOSTREAM, "'%s' was created", streams[p]);
    } else {
      cr_assert_eq(rc, 0);
      cr_assert_eq(info.version, versions[p], "'%s' moved", streams[p]);
      evs_stream_info_clear(&info);
    }
  }
}

Test(store_multi, all_parts_commit_together) {
  tu_append_ok(tu_store, "acct-1", EVS_EXPECT_ANY, 4, NULL); /* v0..3 */
  fixture f;
  make_parts(&f, 3, EVS_EXPECT_NO_STREAM, EVS_EXPECT_ANY);
  size_t failed = 99;
  int rc = evs_append_multi(tu_store, f.parts, 3, &failed);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  evs_append_result *r = &f.parts[0].result;
  cr_assert_eq(r->first_version, 4);
  cr_assert_eq(r->last_version, 5);
  cr_assert_eq(f.parts[1].result.first_version, 0);
  cr_assert_eq(f.parts[2].result.first_version, 0);
  cr_assert_eq(f.parts[2].result.last_version, 2);
  /* Positions 5..10, each part contiguous, no overlap, one commit time. */
  uint64_t seen = 0;
  for (int p = 0; p < 3; p++) {
    evs_append_result *pr = &f.parts[p].result;
    cr_assert_eq(pr->last_position - pr->first_position + 1,
                 f.parts[p].count);
    cr_assert(pr->first_position >= 5 && pr->last_position <= 10);
    for (uint64_t q = pr->first_position; q <= pr->last_position; q++) {
      cr_assert_eq(seen & (1ull << q), 0, "position %llu reported twice",
                   (unsigned long long)q);
      seen |= 1ull << q;
    }
    cr_assert_eq(pr->timestamp_ns, r->timestamp_ns);
    cr_assert_eq(pr->idempotent, 0);
    for (size_t k = 0; k < f.parts[p].count; k++)
      cr_assert_not(evs_uuid_is_nil(&f.ev[p][k].id), "id not written back");
  }
  cr_assert_eq(tu_head(tu_store), 10);
  tu_evlist l = tu_stream(tu_store, "ledger", NULL);
  cr_assert_eq(l.n, 3);
  tu_evlist_free(&l);
}

Test(store_multi, wrong_version_in_one_part_writes_nothing) {
  tu_append_ok(tu_store, "acct-1", EVS_EXPECT_ANY, 1, NULL);
  tu_append_ok(tu_store, "acct-2", EVS_EXPECT_ANY, 3, NULL); /* v0..2 */
  fixture f;
  make_parts(&f, 0, 1, EVS_EXPECT_NO_STREAM); /* part 1 is wrong */
  size_t failed = 99;
  int rc = evs_append_multi(tu_store, f.parts, 3, &failed);
  cr_assert_eq(rc, EVS_EWRONGVERSION, "%s", evs_err_name(rc));
  cr_assert_eq(failed, 1);
  cr_assert_eq(f.parts[1].result.actual_version, 2);
  const int64_t versions[] = {0, 2, EVS_VERSION_NONE};
  assert_unchanged(4, versions);
}

Test(store_multi, last_part_failing_still_rolls_back_the_first) {
  fixture f;
  make_parts(&f, EVS_EXPECT_ANY, EVS_EXPECT_ANY, EVS_EXPECT_EXISTS);
  size_t failed = 99;
  int rc = evs_append_multi(tu_store, f.parts, 3, &failed);
  cr_assert_eq(rc, EVS_EWRONGVERSION, "%s", evs_err_name(rc));
  cr_assert_eq(failed, 2);
  cr_assert_eq(f.parts[2].result.actual_version, EVS_VERSION_NONE);
  const int64_t versions[] = {EVS_VERSION_NONE, EVS_VERSION_NONE,
                              EVS_VERSION_NONE};
  assert_unchanged(0, versions);
}

Test(store_multi, same_stream_twice_is_einval) {
  fixture f;
  make_parts(&f, EVS_EXPECT_ANY, EVS_EXPECT_ANY, EVS_EXPECT_ANY);
  f.parts[2].stream = "acct-1";
  int rc = evs_append_multi(tu_store, f.parts, 3, NULL);
  cr_assert_eq(rc, EVS_EINVAL, "%s", evs_err_name(rc));
  cr_assert_eq(tu_head(tu_store), 0);
}

Test(store_multi, bad_part_is_reported) {
  fixture f;
  make_parts(&f, EVS_EXPECT_ANY, EVS_EXPECT_ANY, EVS_EXPECT_ANY);
  f.parts[1].stream = "\xed\xa0\x80";
  size_t failed = 99;
  int rc = evs_append_multi(tu_store, f.parts, 3, &failed);
  cr_assert_eq(rc, EVS_EBADNAME, "%s", evs_err_name(rc));
  cr_assert_eq(failed, 1);
  cr_assert_eq(tu_head(tu_store), 0);

  make_parts(&f, EVS_EXPECT_ANY, EVS_EXPECT_ANY, EVS_EXPECT_ANY);
  f.parts[2].count = 0;
  rc = evs_append_multi(tu_store, f.parts, 3, &failed);
  cr_assert_eq(rc, EVS_EINVAL, "%s", evs_err_name(rc));
  cr_assert_eq(failed, 2);
  cr_assert_eq(tu_head(tu_store), 0);
}

Test(store_multi, tombstoned_part_fails_all) {
  cr_assert_eq(evs_stream_delete(tu_store, "ledger", EVS_EXPECT_ANY, 1), 0);
  fixture f;
  make_parts(&f, EVS_EXPECT_ANY, EVS_EXPECT_ANY, EVS_EXPECT_ANY);
  size_t failed = 99;
  int rc = evs_append_multi(tu_store, f.parts, 3, &failed);
  cr_assert_eq(rc, EVS_ESTREAMDELETED, "%s", evs_err_name(rc));
  cr_assert_eq(failed, 2);
  cr_assert_eq(tu_head(tu_store), 0);
}

Test(store_multi, id_conflict_in_one_part_fails_all) {
  evs_event_data ev;
  tu_event(&ev, "T", "x", 1);
  ev.id = tu_uuid(77);
  cr_assert_eq(evs_append(tu_store, "elsewhere", EVS_EXPECT_ANY, &ev, 1, NULL),
               0);
  fixture f;
  make_parts(&f, EVS_EXPECT_ANY, EVS_EXPECT_ANY, EVS_EXPECT_ANY);
  f.ev[1][0].id = tu_uuid(77);
  size_t failed = 99;
  int rc = evs_append_multi(tu_store, f.parts, 3, &failed);
  cr_assert_eq(rc, EVS_EIDCONFLICT, "%s", evs_err_name(rc));
  cr_assert_eq(failed, 1);
  cr_assert_eq(tu_head(tu_store), 1);
}

Test(store_multi, same_id_in_two_parts_is_rejected) {
  /* One id in two parts of one request: the request holds a duplicate id.
   * Either reading of the header (EVS_EINVAL for a duplicate in the
   * request, EVS_EIDCONFLICT for an id used in another stream) is
   * defensible; what matters is that nothing is written. */
  fixture f;
  make_parts(&f, EVS_EXPECT_ANY, EVS_EXPECT_ANY, EVS_EXPECT_ANY);
  f.ev[0][0].id = tu_uuid(5);
  f.ev[2][1].id = tu_uuid(5);
  int rc = evs_append_multi(tu_store, f.parts, 3, NULL);
  cr_assert(rc == EVS_EINVAL || rc == EVS_EIDCONFLICT, "%s",
            evs_err_name(rc));
  cr_assert_eq(tu_head(tu_store), 0);
}

Test(store_multi, retry_of_a_multi_append_is_idempotent) {
  fixture f;
  make_parts(&f, EVS_EXPECT_NO_STREAM, EVS_EXPECT_NO_STREAM,
             EVS_EXPECT_NO_STREAM);
  cr_assert_eq(evs_append_multi(tu_store, f.parts, 3, NULL), 0);
  evs_append_result orig[3];
  for (int p = 0; p < 3; p++)
    orig[p] = f.parts[p].result;
  tu_append_ok(tu_store, "acct-1", EVS_EXPECT_ANY, 1, NULL);
  /* Same ids (written back into f), same expected versions. */
  for (int p = 0; p < 3; p++)
    memset(&f.parts[p].result, 0, sizeof f.parts[p].result);
  int rc = evs_append_multi(tu_store, f.parts, 3, NULL);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  for (int p = 0; p < 3; p++) {
    cr_assert_eq(f.parts[p].result.idempotent, 1, "part %d", p);
    cr_assert_eq(f.parts[p].result.first_position, orig[p].first_position);
    cr_assert_eq(f.parts[p].result.last_version, orig[p].last_version);
  }
  cr_assert_eq(tu_head(tu_store), 7);
}

Test(store_multi, bad_arguments) {
  fixture f;
  make_parts(&f, EVS_EXPECT_ANY, EVS_EXPECT_ANY, EVS_EXPECT_ANY);
  cr_assert_eq(evs_append_multi(NULL, f.parts, 3, NULL), EVS_EINVAL);
  cr_assert_eq(evs_append_multi(tu_store, NULL, 3, NULL), EVS_EINVAL);
  cr_assert_eq(evs_append_multi(tu_store, f.parts, 0, NULL), EVS_EINVAL);
  f.parts[0].stream = NULL;
  cr_assert_eq(evs_append_multi(tu_store, f.parts, 3, NULL), EVS_EINVAL);
  cr_assert_eq(tu_head(tu_store), 0);
}

Test(store_multi, single_part_behaves_like_append) {
  fixture f;
  make_parts(&f, EVS_EXPECT_NO_STREAM, 0, 0);
  cr_assert_eq(evs_append_multi(tu_store, f.parts, 1, NULL), 0);
  cr_assert_eq(f.parts[0].result.first_position, 1);
  cr_assert_eq(f.parts[0].result.last_version, 1);
}

Test(store_multi, many_parts) {
  /* 200 streams in one atomic append. */
  enum { N = 200 };
  evs_append_part *parts = calloc(N, sizeof *parts);
  evs_event_data *ev = calloc(N, sizeof *ev);
  char (*names)[16] = calloc(N, sizeof *names);
  cr_assert(parts && ev && names);
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof names[i], "m-%03d", i);
    tu_event(&ev[i], "Many", names[i], strlen(names[i]));
    parts[i].stream = names[i];
    parts[i].expected = EVS_EXPECT_NO_STREAM;
    parts[i].events = &ev[i];
    parts[i].count = 1;
  }
  int rc = evs_append_multi(tu_store, parts, N, NULL);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  cr_assert_eq(tu_head(tu_store), N);
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  o.category = "m";
  tu_evlist l = tu_all(tu_store, &o);
  cr_assert_eq(l.n, N);
  tu_evlist_free(&l);
  free(parts);
  free(ev);
  free(names);
}
