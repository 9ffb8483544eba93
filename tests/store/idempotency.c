/*
 * Idempotent appends: a retry whose ids are all stored, consecutively, at
 * the place the expected version names succeeds without writing; every
 * other reuse of a known id is EVS_EIDCONFLICT and writes nothing.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/evstore.h"
#include "testutil.h"

TestSuite(store_idempotency, .init = tu_setup, .fini = tu_teardown,
          .timeout = 60);

/* Fills ev[0..n-1] with client ids tu_uuid(first_id + k). */
static void make_events(evs_event_data *ev, size_t n, uint64_t first_id) {
  static char bufs[64][32];
  for (size_t k = 0; k < n; k++) {
    int len = snprintf(bufs[(first_id + k) % 64], sizeof bufs[0], "e%llu",
                       (unsigned long long)(first_id + k));
    tu_event(&ev[k], "Idem", bufs[(first_id + k) % 64], (size_t)len);
    ev[k].id = tu_uuid(first_id + k);
  }
}

/* Appends events with ids first_id.. and asserts success. */
static evs_append_result append_ids(const char *stream, int64_t expected,
                                    uint64_t first_id, size_t n) {
  evs_event_data ev[16];
  cr_assert_leq(n, 16);
  make_events(ev, n, first_id);
  evs_append_result r;
  memset(&r, 0, sizeof r);
  int rc = evs_append(tu_store, stream, expected, ev, n, &r);
  cr_assert_eq(rc, 0, "append ids %llu..: %s: %s",
               (unsigned long long)first_id, evs_err_name(rc),
               evs_last_error());
  cr_assert_eq(r.idempotent, 0);
  return r;
}

/* Appends events with the given ids; returns the code, result in *r. */
static int append_id_list(const char *stream, int64_t expected,
                          const uint64_t *ids, size_t n,
                          evs_append_result *r) {
  evs_event_data ev[16];
  cr_assert_leq(n, 16);
  for (size_t k = 0; k < n; k++)
    make_events(&ev[k], 1, ids[k]);
  memset(r, 0, sizeof *r);
  return evs_append(tu_store, stream, expected, ev, n, r);
}

/* Asserts a successful no-op retry that reports `orig`'s place. */
static void assert_idempotent(int rc, const evs_append_result *r,
                              int64_t first_version, int64_t last_version,
                              uint64_t first_position, uint64_t last_position) {
  cr_assert_eq(rc, 0, "retry: %s: %s", evs_err_name(rc), evs_last_error());
  cr_assert_eq(r->idempotent, 1, "retry not flagged idempotent");
  cr_assert_eq(r->first_version, first_version, "first_version %lld",
               (long long)r->first_version);
  cr_assert_eq(r->last_version, last_version, "last_version %lld",
               (long long)r->last_version);
  cr_assert_eq(r->first_position, first_position, "first_position %llu",
               (unsigned long long)r->first_position);
  cr_assert_eq(r->last_position, last_position, "last_position %llu",
               (unsigned long long)r->last_position);
}

/* Asserts EVS_EIDCONFLICT and that nothing was written. */
static void assert_conflict(int rc, uint64_t head_before) {
  cr_assert_eq(rc, EVS_EIDCONFLICT, "%s: %s", evs_err_name(rc),
               evs_last_error());
  cr_assert_eq(tu_head(tu_store), head_before, "a conflicting append wrote");
}

Test(store_idempotency, full_retry_with_exact_version) {
  append_ids("s", EVS_EXPECT_NO_STREAM, 100, 2);       /* v0,v1 p1,p2 */
  evs_append_result o = append_ids("s", 1, 1, 3);      /* v2..4 p3..5 */
  cr_assert_eq(o.first_version, 2);
  evs_append_result r;
  uint64_t ids[] = {1, 2, 3};
  int rc = append_id_list("s", 1, ids, 3, &r);
  assert_idempotent(rc, &r, 2, 4, 3, 5);
  cr_assert_eq(tu_head(tu_store), 5);
  cr_assert_eq(tu_stat_events(tu_store), 5);
}

Test(store_idempotency, retry_after_the_stream_moved_on) {
  /* The typical lost ack: the client retries with its original expected
   * version while other events were appended since. */
  evs_append_result o = append_ids("s", EVS_EXPECT_NO_STREAM, 1, 2); /* v0,1 */
  append_ids("s", 1, 10, 3);                                         /* v2..4 */
  append_ids("t", EVS_EXPECT_ANY, 20, 1);
  uint64_t head = tu_head(tu_store);
  evs_append_result r;
  uint64_t ids[] = {1, 2};
  int rc = append_id_list("s", EVS_EXPECT_NO_STREAM, ids, 2, &r);
  assert_idempotent(rc, &r, 0, 1, o.first_position, o.last_position);
  uint64_t ids2[] = {10, 11, 12};
  rc = append_id_list("s", 1, ids2, 3, &r);
  assert_idempotent(rc, &r, 2, 4, 3, 5);
  cr_assert_eq(tu_head(tu_store), head);
}

Test(store_idempotency, retry_with_no_stream) {
  evs_append_result o = append_ids("s", EVS_EXPECT_NO_STREAM, 1, 3);
  evs_append_result r;
  uint64_t ids[] = {1, 2, 3};
  int rc = append_id_list("s", EVS_EXPECT_NO_STREAM, ids, 3, &r);
  assert_idempotent(rc, &r, 0, 2, o.first_position, o.last_position);
  cr_assert_eq(tu_head(tu_store), 3);
}

Test(store_idempotency, retry_with_any_finds_ids_anywhere) {
  append_ids("s", EVS_EXPECT_ANY, 100, 2);                /* v0,1 p1,2 */
  append_ids("s", EVS_EXPECT_ANY, 1, 2);                  /* v2,3 p3,4 */
  append_ids("s", EVS_EXPECT_ANY, 200, 1);                /* v4 p5 */
  evs_append_result r;
  uint64_t ids[] = {1, 2};
  int rc = append_id_list("s", EVS_EXPECT_ANY, ids, 2, &r);
  assert_idempotent(rc, &r, 2, 3, 3, 4);
  cr_assert_eq(tu_head(tu_store), 5);
}

Test(store_idempotency, retry_with_exists_finds_ids_anywhere) {
  append_ids("s", EVS_EXPECT_ANY, 100, 2);
  append_ids("s", EVS_EXPECT_ANY, 1, 2); /* v2,3 p3,4 */
  append_ids("s", EVS_EXPECT_ANY, 200, 2);
  evs_append_result r;
  uint64_t ids[] = {1, 2};
  int rc = append_id_list("s", EVS_EXPECT_EXISTS, ids, 2, &r);
  assert_idempotent(rc, &r, 2, 3, 3, 4);
  cr_assert_eq(tu_head(tu_store), 6);
}

Test(store_idempotency, consecutive_subset_with_any_is_idempotent) {
  /* [B, C] of a stored [A, B, C, D]: consecutive and in order. */
  append_ids("s", EVS_EXPECT_NO_STREAM, 1, 4); /* v0..3 p1..4 */
  evs_append_result r;
  uint64_t ids[] = {2, 3};
  int rc = append_id_list("s", EVS_EXPECT_ANY, ids, 2, &r);
  assert_idempotent(rc, &r, 1, 2, 2, 3);
}

Test(store_idempotency, exact_version_naming_a_subset_is_idempotent) {
  /* [B, C] at v1,v2 with expected 0 (first id at version 1). */
  append_ids("s", EVS_EXPECT_NO_STREAM, 1, 4);
  evs_append_result r;
  uint64_t ids[] = {2, 3};
  int rc = append_id_list("s", 0, ids, 2, &r);
  assert_idempotent(rc, &r, 1, 2, 2, 3);
}

Test(store_idempotency, reusing_the_event_array_is_a_retry) {
  /* Nil ids are generated and written back, so sending the same array
   * again is recognised as the same events. */
  evs_event_data ev[3];
  for (int i = 0; i < 3; i++)
    tu_event(&ev[i], "Auto", "x", 1);
  evs_append_result o, r;
  int rc = evs_append(tu_store, "s", EVS_EXPECT_ANY, ev, 3, &o);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  rc = evs_append(tu_store, "s", EVS_EXPECT_ANY, ev, 3, &r);
  assert_idempotent(rc, &r, o.first_version, o.last_version, o.first_position,
                    o.last_position);
  cr_assert_eq(tu_head(tu_store), 3);
}

Test(store_idempotency, retry_is_idempotent_after_reopen) {
  /* The id index is durable, not an in-memory cache. */
  evs_append_result o = append_ids("s", EVS_EXPECT_NO_STREAM, 1, 3);
  tu_reopen(NULL);
  evs_append_result r;
  uint64_t ids[] = {1, 2, 3};
  int rc = append_id_list("s", EVS_EXPECT_NO_STREAM, ids, 3, &r);
  assert_idempotent(rc, &r, 0, 2, o.first_position, o.last_position);
  cr_assert_eq(tu_head(tu_store), 3);
}

Test(store_idempotency, known_prefix_plus_new_events_conflicts) {
  append_ids("s", EVS_EXPECT_ANY, 1, 2);
  uint64_t head = tu_head(tu_store);
  evs_append_result r;
  uint64_t ids[] = {1, 2, 3};
  assert_conflict(append_id_list("s", EVS_EXPECT_ANY, ids, 3, &r), head);
  assert_conflict(append_id_list("s", 1, ids, 3, &r), head);
  /* The new id was not stored either. */
  evs_uuid u = tu_uuid(3);
  uint64_t pos;
  cr_assert_eq(evs_find_event_id(tu_store, &u, &pos), EVS_ENOTFOUND);
}

Test(store_idempotency, new_event_before_known_ids_conflicts) {
  append_ids("s", EVS_EXPECT_ANY, 1, 2);
  uint64_t head = tu_head(tu_store);
  evs_append_result r;
  uint64_t ids[] = {9, 1, 2};
  assert_conflict(append_id_list("s", EVS_EXPECT_ANY, ids, 3, &r), head);
}

Test(store_idempotency, id_used_in_another_stream_conflicts) {
  append_ids("a", EVS_EXPECT_ANY, 1, 2);
  uint64_t head = tu_head(tu_store);
  evs_append_result r;
  uint64_t ids[] = {1};
  assert_conflict(append_id_list("b", EVS_EXPECT_ANY, ids, 1, &r), head);
  assert_conflict(append_id_list("b", EVS_EXPECT_NO_STREAM, ids, 1, &r), head);
  uint64_t both[] = {1, 2};
  assert_conflict(append_id_list("b", EVS_EXPECT_ANY, both, 2, &r), head);
  evs_stream_info info;
  cr_assert_eq(evs_stream_info_get(tu_store, "b", &info), EVS_ENOSTREAM,
               "the conflicting append created stream b");
}

Test(store_idempotency, known_ids_out_of_order_conflict) {
  append_ids("s", EVS_EXPECT_NO_STREAM, 1, 3);
  uint64_t head = tu_head(tu_store);
  evs_append_result r;
  uint64_t rev[] = {3, 2, 1};
  assert_conflict(append_id_list("s", EVS_EXPECT_ANY, rev, 3, &r), head);
  uint64_t swap[] = {2, 1};
  assert_conflict(append_id_list("s", EVS_EXPECT_ANY, swap, 2, &r), head);
  assert_conflict(append_id_list("s", EVS_EXPECT_NO_STREAM, rev, 3, &r), head);
}

Test(store_idempotency, non_consecutive_subset_conflicts) {
  append_ids("s", EVS_EXPECT_NO_STREAM, 1, 3);
  uint64_t head = tu_head(tu_store);
  evs_append_result r;
  uint64_t ids[] = {1, 3};
  assert_conflict(append_id_list("s", EVS_EXPECT_ANY, ids, 2, &r), head);
  assert_conflict(append_id_list("s", EVS_EXPECT_EXISTS, ids, 2, &r), head);
}

Test(store_idempotency, ids_spanning_two_appends_are_consecutive) {
  /* Consecutive versions count, not the append they came from. */
  append_ids("s", EVS_EXPECT_NO_STREAM, 1, 2); /* v0,v1 */
  append_ids("s", 1, 3, 2);                    /* v2,v3 */
  evs_append_result r;
  uint64_t ids[] = {2, 3};
  int rc = append_id_list("s", EVS_EXPECT_ANY, ids, 2, &r);
  assert_idempotent(rc, &r, 1, 2, 2, 3);
}

Test(store_idempotency, exact_version_naming_another_place_conflicts) {
  append_ids("s", EVS_EXPECT_NO_STREAM, 1, 3); /* v0..2 */
  append_ids("s", 2, 50, 1);                   /* v3 */
  uint64_t head = tu_head(tu_store);
  evs_append_result r;
  uint64_t ids[] = {1, 2, 3};
  /* Expected 3 matches the stream's version but names v4 as the place of
   * the first id, which is at v0. */
  assert_conflict(append_id_list("s", 3, ids, 3, &r), head);
  /* Expected 0 names v1; the ids are at v0..2. Known ids at the wrong
   * place are an id conflict (the lead's decision), even though the
   * version check alone would also fail. */
  assert_conflict(append_id_list("s", 0, ids, 3, &r), head);
  /* NO_STREAM names v0: [2, 3] are at v1, v2. */
  uint64_t tail[] = {2, 3};
  assert_conflict(append_id_list("s", EVS_EXPECT_NO_STREAM, tail, 2, &r), head);
}

Test(store_idempotency, no_stream_retry_needs_ids_at_version_0) {
  append_ids("s", EVS_EXPECT_NO_STREAM, 100, 1); /* v0 */
  append_ids("s", 0, 1, 2);                      /* v1, v2 */
  uint64_t head = tu_head(tu_store);
  evs_append_result r;
  uint64_t ids[] = {1, 2};
  assert_conflict(append_id_list("s", EVS_EXPECT_NO_STREAM, ids, 2, &r), head);
}

Test(store_idempotency, duplicate_ids_in_one_request_are_invalid) {
  uint64_t ids[] = {7, 8, 7};
  evs_append_result r;
  int rc = append_id_list("s", EVS_EXPECT_ANY, ids, 3, &r);
  cr_assert_eq(rc, EVS_EINVAL, "%s", evs_err_name(rc));
  cr_assert_eq(tu_head(tu_store), 0);
  /* Also when the duplicated id is already stored. */
  append_ids("s", EVS_EXPECT_ANY, 7, 1);
  uint64_t again[] = {7, 7};
  rc = append_id_list("s", EVS_EXPECT_ANY, again, 2, &r);
  cr_assert_eq(rc, EVS_EINVAL, "%s", evs_err_name(rc));
  cr_assert_eq(tu_head(tu_store), 1);
}

Test(store_idempotency, generated_ids_never_collide) {
  /* 2000 events with nil ids over 20 appends: all ids distinct and each
   * found through the id index at its own position. */
  enum { BATCH = 100, ROUNDS = 20 };
  evs_uuid *ids = calloc(BATCH * ROUNDS, sizeof *ids);
  cr_assert_not_null(ids);
  evs_event_data ev[BATCH];
  for (int round = 0; round < ROUNDS; round++) {
    for (int k = 0; k < BATCH; k++)
      tu_event(&ev[k], "Gen", "g", 1);
    int rc = evs_append(tu_store, round % 2 ? "odd" : "even", EVS_EXPECT_ANY,
                        ev, BATCH, NULL);
    cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
    for (int k = 0; k < BATCH; k++)
      ids[round * BATCH + k] = ev[k].id;
  }
  for (int i = 0; i < BATCH * ROUNDS; i += 97) {
    uint64_t pos = 0;
    int rc = evs_find_event_id(tu_store, &ids[i], &pos);
    cr_assert_eq(rc, 0, "%s", evs_err_name(rc));
    cr_assert_eq(pos, (uint64_t)i + 1);
  }
  for (int i = 1; i < BATCH * ROUNDS; i++)
    cr_assert_gt(memcmp(&ids[i], &ids[i - 1], 16), 0,
                 "generated ids are not increasing at %d", i);
  free(ids);
}

Test(store_idempotency, find_event_id_unknown_is_not_found) {
  append_ids("s", EVS_EXPECT_ANY, 1, 1);
  evs_uuid u = tu_uuid(999);
  uint64_t pos = 77;
  cr_assert_eq(evs_find_event_id(tu_store, &u, &pos), EVS_ENOTFOUND);
  u = tu_uuid(1);
  cr_assert_eq(evs_find_event_id(tu_store, &u, &pos), 0);
  cr_assert_eq(pos, 1);
}

/* An id with a chosen first byte: orders ids around the stored maximum. */
static evs_uuid id_with_prefix(uint8_t first, uint8_t last) {
  evs_uuid u;
  memset(&u, 0, sizeof u);
  u.bytes[0] = first;
  u.bytes[15] = last;
  return u;
}

Test(store_idempotency, ids_below_and_above_the_stored_maximum) {
  /* The write path appends ids that sort after every stored one without a
   * lookup; ids below the maximum take the B-tree. Mix both, in one group
   * (a multi-stream append) and across groups, and retry each. */
  evs_event_data ev[4];
  const uint8_t firsts[4] = {0x80, 0x10, 0xf0, 0x40};
  for (int k = 0; k < 4; k++) {
    tu_event(&ev[k], "Mix", "m", 1);
    ev[k].id = id_with_prefix(firsts[k], 1);
  }
  evs_append_part parts[2] = {
    {"mix-a", EVS_EXPECT_NO_STREAM, &ev[0], 2, {0}},
    {"mix-b", EVS_EXPECT_NO_STREAM, &ev[2], 2, {0}},
  };
  cr_assert_eq(evs_append_multi(tu_store, parts, 2, NULL), 0, "%s",
               evs_last_error());
  /* A retry of each part is recognised, whichever side of the maximum. */
  for (int p = 0; p < 2; p++) {
    evs_append_result r;
    int rc = evs_append(tu_store, parts[p].stream, EVS_EXPECT_ANY,
                        parts[p].events, 2, &r);
    assert_idempotent(rc, &r, 0, 1, parts[p].result.first_position,
                      parts[p].result.last_position);
  }
  /* New ids below the maximum are accepted, above it too; each known id
   * is found at its position. */
  evs_event_data lo, hi;
  tu_event(&lo, "Mix", "lo", 2);
  lo.id = id_with_prefix(0x01, 2);
  tu_event(&hi, "Mix", "hi", 2);
  hi.id = id_with_prefix(0xff, 2);
  cr_assert_eq(evs_append(tu_store, "mix-a", 1, &lo, 1, NULL), 0);
  cr_assert_eq(evs_append(tu_store, "mix-a", 2, &hi, 1, NULL), 0);
  const evs_uuid want[6] = {ev[0].id, ev[1].id, ev[2].id,
                            ev[3].id, lo.id,    hi.id};
  for (int i = 0; i < 6; i++) {
    uint64_t pos = 0;
    cr_assert_eq(evs_find_event_id(tu_store, &want[i], &pos), 0);
    cr_assert_eq(pos, (uint64_t)i + 1, "id %d at %llu", i,
                 (unsigned long long)pos);
  }
  /* A stored id below the maximum in a new append conflicts. */
  evs_event_data again;
  tu_event(&again, "Mix", "x", 1);
  again.id = ev[1].id;
  assert_conflict(evs_append(tu_store, "mix-c", EVS_EXPECT_ANY, &again, 1,
                             NULL),
                  6);
  evs_verify_report vr;
  cr_assert_eq(evs_store_verify(tu_store, &vr, NULL, NULL), 0);
  cr_assert_eq(vr.errors, 0);
}

Test(store_idempotency, duplicates_among_many_parts_are_found) {
  /* 1,500 parts (beyond the duplicate check's on-stack tables): distinct
   * streams and ids go in; a repeated stream or id anywhere is EVS_EINVAL
   * and writes nothing. */
  enum { N = 1500 };
  evs_append_part *parts = calloc(N, sizeof *parts);
  evs_event_data *ev = calloc(N, sizeof *ev);
  char(*names)[16] = calloc(N, sizeof *names);
  cr_assert(parts && ev && names);
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof names[i], "many-%d", i);
    tu_event(&ev[i], "Many", "m", 1);
    ev[i].id = tu_uuid(10000 + (uint64_t)i);
    parts[i].stream = names[i];
    parts[i].expected = EVS_EXPECT_ANY;
    parts[i].events = &ev[i];
    parts[i].count = 1;
  }
  parts[N - 1].stream = names[3];
  size_t failed = 0;
  int rc = evs_append_multi(tu_store, parts, N, &failed);
  cr_assert_eq(rc, EVS_EINVAL, "%s", evs_err_name(rc));
  cr_assert_eq(failed, N - 1);
  parts[N - 1].stream = names[N - 1];
  ev[N - 2].id = ev[17].id;
  rc = evs_append_multi(tu_store, parts, N, NULL);
  cr_assert_eq(rc, EVS_EINVAL, "%s", evs_err_name(rc));
  cr_assert(strstr(evs_last_error(), "twice") != NULL, "%s",
            evs_last_error());
  cr_assert_eq(tu_head(tu_store), 0);
  ev[N - 2].id = tu_uuid(10000 + N - 2);
  rc = evs_append_multi(tu_store, parts, N, NULL);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  cr_assert_eq(tu_head(tu_store), N);
  free(parts);
  free(ev);
  free(names);
}
