/*
 * Soft delete (hide, recreate, continue versions) and tombstones.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/evstore.h"
#include "testutil.h"

TestSuite(store_delete, .init = tu_setup, .fini = tu_teardown, .timeout = 60);

static void del_ok(const char *stream, int64_t expected, int hard) {
  int rc = evs_stream_delete(tu_store, stream, expected, hard);
  cr_assert_eq(rc, 0, "delete %s (expected %lld, hard %d): %s: %s", stream,
               (long long)expected, hard, evs_err_name(rc), evs_last_error());
}

static evs_stream_info info_of(const char *stream) {
  evs_stream_info info;
  memset(&info, 0, sizeof info);
  int rc = evs_stream_info_get(tu_store, stream, &info);
  cr_assert_eq(rc, 0, "info %s: %s", stream, evs_err_name(rc));
  return info;
}

static size_t count_in_all(const char *stream) {
  tu_evlist l = tu_all(tu_store, NULL);
  size_t n = 0;
  for (size_t i = 0; i < l.n; i++)
    n += strcmp(l.ev[i].stream, stream) == 0;
  tu_evlist_free(&l);
  return n;
}

static int read_rc(const char *stream) {
  tu_evlist l;
  int rc = tu_read_stream(tu_store, stream, NULL, &l);
  tu_evlist_free(&l);
  return rc;
}

Test(store_delete, soft_delete_hides_the_stream) {
  tu_append_ok(tu_store, "gone-1", EVS_EXPECT_ANY, 3, NULL);
  tu_append_ok(tu_store, "kept-1", EVS_EXPECT_ANY, 2, NULL);
  del_ok("gone-1", 2, 0);
  cr_assert_eq(read_rc("gone-1"), EVS_ENOSTREAM, "%s",
               evs_err_name(read_rc("gone-1")));
  evs_stream_info info = info_of("gone-1");
  cr_assert(info.flags & EVS_STREAM_DELETED);
  cr_assert_not(info.flags & EVS_STREAM_TOMBSTONED);
  cr_assert_eq(info.exists, 0);
  evs_stream_info_clear(&info);
  cr_assert_eq(count_in_all("gone-1"), 0);
  cr_assert_eq(count_in_all("kept-1"), 2);

  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  o.category = "gone";
  tu_evlist l = tu_all(tu_store, &o);
  cr_assert_eq(l.n, 0, "category read shows a deleted stream");
  tu_evlist_free(&l);
  o.category = NULL;
  o.event_type = "TestEvent";
  l = tu_all(tu_store, &o);
  cr_assert_eq(l.n, 2, "type read shows a deleted stream");
  tu_evlist_free(&l);

  /* The head does not move: deleting writes no event. */
  cr_assert_eq(tu_head(tu_store), 5);
  /* The low-level lookup ignores visibility. */
  evs_event *e = NULL;
  cr_assert_eq(evs_read_event(tu_store, 1, &e), 0);
  evs_event_free(e);
}

Test(store_delete, recreate_with_any_continues_versions) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 3, NULL); /* v0..2 */
  del_ok("s", EVS_EXPECT_ANY, 0);
  evs_append_result r = tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 2, NULL);
  cr_assert_eq(r.first_version, 3);
  cr_assert_eq(r.last_version, 4);
  cr_assert_eq(r.first_position, 4);
  tu_evlist l = tu_stream(tu_store, "s", NULL);
  cr_assert_eq(l.n, 2);
  cr_assert_eq(l.ev[0].version, 3);
  cr_assert_eq(l.ev[1].version, 4);
  tu_evlist_free(&l);
  evs_stream_info info = info_of("s");
  cr_assert_eq(info.flags, 0);
  cr_assert_eq(info.exists, 1);
  cr_assert_eq(info.start_version, 3);
  cr_assert_eq(info.first_version, 3);
  cr_assert_eq(info.version, 4);
  cr_assert_eq(info.first_position, 4);
  evs_stream_info_clear(&info);
  cr_assert_eq(count_in_all("s"), 2);
}

Test(store_delete, recreate_with_no_stream) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 3, NULL);
  del_ok("s", EVS_EXPECT_EXISTS, 0);
  evs_append_result r =
      tu_append_ok(tu_store, "s", EVS_EXPECT_NO_STREAM, 1, NULL);
  cr_assert_eq(r.first_version, 3);
  /* Now it exists again. */
  int rc = tu_append_n(tu_store, "s", EVS_EXPECT_NO_STREAM, 1, NULL, NULL);
  cr_assert_eq(rc, EVS_EWRONGVERSION, "%s", evs_err_name(rc));
  r = tu_append_ok(tu_store, "s", 3, 1, NULL);
  cr_assert_eq(r.first_version, 4);
}

Test(store_delete, soft_deleted_stream_fails_expect_exists) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 3, NULL);
  del_ok("s", EVS_EXPECT_ANY, 0);
  uint64_t head = tu_head(tu_store);
  int rc = tu_append_n(tu_store, "s", EVS_EXPECT_EXISTS, 1, NULL, NULL);
  cr_assert_eq(rc, EVS_EWRONGVERSION, "%s", evs_err_name(rc));
  cr_assert_eq(tu_head(tu_store), head);
}

Test(store_delete, recreated_stream_keeps_metadata) {
  static const char custom[] = "{\"x\":1}";
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 3, NULL);
  evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
  md.max_count = 2;
  md.custom = custom;
  md.custom_len = strlen(custom);
  cr_assert_eq(evs_stream_set_metadata(tu_store, "s", &md), 0);
  del_ok("s", EVS_EXPECT_ANY, 0);
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 3, NULL); /* v3..5 */
  tu_evlist l = tu_stream(tu_store, "s", NULL);
  cr_assert_eq(l.n, 2);
  cr_assert_eq(l.ev[0].version, 4);
  cr_assert_eq(l.ev[1].version, 5);
  tu_evlist_free(&l);
  evs_stream_info info = info_of("s");
  cr_assert_eq(info.max_count, 2);
  cr_assert_eq(info.custom_len, strlen(custom));
  cr_assert_eq(memcmp(info.custom, custom, info.custom_len), 0);
  evs_stream_info_clear(&info);
}

Test(store_delete, old_events_stay_hidden_after_recreate) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 3, NULL);
  del_ok("s", EVS_EXPECT_ANY, 0);
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 1, NULL);
  evs_read_options o = EVS_READ_OPTIONS_INIT;
  o.from_version = 0;
  tu_evlist l = tu_stream(tu_store, "s", &o);
  cr_assert_eq(l.n, 1);
  cr_assert_eq(l.ev[0].version, 3);
  tu_evlist_free(&l);
  o.direction = EVS_BACKWARD;
  o.from_version = EVS_FROM_END;
  l = tu_stream(tu_store, "s", &o);
  cr_assert_eq(l.n, 1);
  tu_evlist_free(&l);
  cr_assert_eq(count_in_all("s"), 1);
}

Test(store_delete, delete_after_recreate_hides_again) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 2, NULL); /* v0,1 */
  del_ok("s", 1, 0);
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 2, NULL); /* v2,3 */
  del_ok("s", 3, 0);
  cr_assert_eq(read_rc("s"), EVS_ENOSTREAM);
  evs_append_result r = tu_append_ok(tu_store, "s", EVS_EXPECT_NO_STREAM, 1,
                                     NULL);
  cr_assert_eq(r.first_version, 4);
  tu_evlist l = tu_stream(tu_store, "s", NULL);
  cr_assert_eq(l.n, 1);
  tu_evlist_free(&l);
}

Test(store_delete, tombstone_forbids_appends_and_reads) {
  tu_append_ok(tu_store, "dead", EVS_EXPECT_ANY, 3, NULL);
  del_ok("dead", 2, 1);
  uint64_t head = tu_head(tu_store);
  static const int64_t exp[] = {EVS_EXPECT_ANY, EVS_EXPECT_NO_STREAM,
                                EVS_EXPECT_EXISTS, 2};
  for (size_t i = 0; i < 4; i++) {
    int rc = tu_append_n(tu_store, "dead", exp[i], 1, NULL, NULL);
    cr_assert_eq(rc, EVS_ESTREAMDELETED, "expected %lld: %s",
                 (long long)exp[i], evs_err_name(rc));
  }
  cr_assert_eq(tu_head(tu_store), head);
  cr_assert_eq(read_rc("dead"), EVS_ESTREAMDELETED, "%s",
               evs_err_name(read_rc("dead")));
  evs_stream_info info = info_of("dead");
  cr_assert(info.flags & EVS_STREAM_TOMBSTONED);
  cr_assert_eq(info.exists, 0);
  evs_stream_info_clear(&info);
  cr_assert_eq(count_in_all("dead"), 0);
  /* Deleting again: soft or hard, the tombstone stays. */
  int rc = evs_stream_delete(tu_store, "dead", EVS_EXPECT_ANY, 0);
  cr_assert(rc == 0 || rc == EVS_ESTREAMDELETED, "%s", evs_err_name(rc));
  cr_assert_eq(tu_append_n(tu_store, "dead", EVS_EXPECT_ANY, 1, NULL, NULL),
               EVS_ESTREAMDELETED);
}

Test(store_delete, tombstone_after_soft_delete) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 2, NULL);
  del_ok("s", EVS_EXPECT_ANY, 0);
  del_ok("s", EVS_EXPECT_ANY, 1);
  cr_assert_eq(tu_append_n(tu_store, "s", EVS_EXPECT_ANY, 1, NULL, NULL),
               EVS_ESTREAMDELETED);
  evs_stream_info info = info_of("s");
  cr_assert(info.flags & EVS_STREAM_TOMBSTONED);
  evs_stream_info_clear(&info);
}

Test(store_delete, tombstone_survives_reopen) {
  tu_append_ok(tu_store, "dead", EVS_EXPECT_ANY, 1, NULL);
  tu_append_ok(tu_store, "soft", EVS_EXPECT_ANY, 2, NULL);
  del_ok("dead", EVS_EXPECT_ANY, 1);
  del_ok("soft", EVS_EXPECT_ANY, 0);
  tu_reopen(NULL);
  cr_assert_eq(tu_append_n(tu_store, "dead", EVS_EXPECT_ANY, 1, NULL, NULL),
               EVS_ESTREAMDELETED);
  cr_assert_eq(read_rc("dead"), EVS_ESTREAMDELETED);
  cr_assert_eq(read_rc("soft"), EVS_ENOSTREAM);
  evs_append_result r = tu_append_ok(tu_store, "soft", EVS_EXPECT_ANY, 1, NULL);
  cr_assert_eq(r.first_version, 2);
}

Test(store_delete, deleting_a_missing_stream) {
  del_ok("never-1", EVS_EXPECT_ANY, 0);
  del_ok("never-2", EVS_EXPECT_NO_STREAM, 0);
  cr_assert_eq(tu_head(tu_store), 0);
  /* A soft-deleted stream that never had events can be created. */
  evs_append_result r =
      tu_append_ok(tu_store, "never-1", EVS_EXPECT_NO_STREAM, 1, NULL);
  cr_assert_eq(r.first_version, 0);
  /* A hard delete of a missing stream still records the tombstone. */
  del_ok("never-3", EVS_EXPECT_ANY, 1);
  cr_assert_eq(tu_append_n(tu_store, "never-3", EVS_EXPECT_ANY, 1, NULL, NULL),
               EVS_ESTREAMDELETED);
  evs_stream_info info = info_of("never-3");
  cr_assert(info.flags & EVS_STREAM_TOMBSTONED);
  evs_stream_info_clear(&info);
  /* EXISTS on a missing stream is a version mismatch. */
  int rc = evs_stream_delete(tu_store, "never-4", EVS_EXPECT_EXISTS, 0);
  cr_assert_eq(rc, EVS_EWRONGVERSION, "%s", evs_err_name(rc));
}

Test(store_delete, wrong_expected_version_is_rejected) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 3, NULL); /* v0..2 */
  static const int64_t wrong[] = {0, 1, 3, EVS_EXPECT_NO_STREAM};
  for (size_t i = 0; i < 4; i++) {
    for (int hard = 0; hard <= 1; hard++) {
      int rc = evs_stream_delete(tu_store, "s", wrong[i], hard);
      cr_assert_eq(rc, EVS_EWRONGVERSION, "expected %lld hard %d: %s",
                   (long long)wrong[i], hard, evs_err_name(rc));
    }
  }
  tu_evlist l = tu_stream(tu_store, "s", NULL);
  cr_assert_eq(l.n, 3, "a rejected delete deleted");
  tu_evlist_free(&l);
  evs_stream_info info = info_of("s");
  cr_assert_eq(info.flags, 0);
  evs_stream_info_clear(&info);
  del_ok("s", 2, 0);
}

Test(store_delete, bad_arguments) {
  cr_assert_eq(evs_stream_delete(NULL, "s", EVS_EXPECT_ANY, 0), EVS_EINVAL);
  cr_assert_eq(evs_stream_delete(tu_store, NULL, EVS_EXPECT_ANY, 0),
               EVS_EINVAL);
  cr_assert_eq(evs_stream_delete(tu_store, "", EVS_EXPECT_ANY, 0),
               EVS_EBADNAME);
  cr_assert_eq(evs_stream_delete(tu_store, "\xc0\xaf", EVS_EXPECT_ANY, 1),
               EVS_EBADNAME);
}

Test(store_delete, compaction_reclaims_deleted_streams) {
  tu_append_ok(tu_store, "soft", EVS_EXPECT_ANY, 10, NULL);
  tu_append_ok(tu_store, "hard", EVS_EXPECT_ANY, 5, NULL);
  tu_append_ok(tu_store, "live", EVS_EXPECT_ANY, 4, NULL);
  del_ok("soft", EVS_EXPECT_ANY, 0);
  del_ok("hard", EVS_EXPECT_ANY, 1);
  tu_append_ok(tu_store, "soft", EVS_EXPECT_ANY, 2, NULL); /* v10, v11 */
  tu_evlist before = tu_all(tu_store, NULL);
  cr_assert_eq(before.n, 6);
  evs_compact_report rep;
  memset(&rep, 0, sizeof rep);
  int rc = evs_store_compact(tu_store, &rep);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  cr_assert_eq(rep.events_removed, 15);
  cr_assert_eq(tu_stat_events(tu_store), 6);
  tu_evlist after = tu_all(tu_store, NULL);
  tu_assert_same_events(&before, &after);
  tu_evlist_free(&before);
  tu_evlist_free(&after);
  tu_verify_clean(tu_store);
  /* The tombstone outlives compaction, and versions still continue. */
  cr_assert_eq(tu_append_n(tu_store, "hard", EVS_EXPECT_ANY, 1, NULL, NULL),
               EVS_ESTREAMDELETED);
  evs_append_result r = tu_append_ok(tu_store, "soft", 11, 1, NULL);
  cr_assert_eq(r.first_version, 12);
}

Test(store_delete, compaction_of_a_soft_deleted_stream_verifies) {
  /* Soft-deleted and never recreated: every event goes, the stream stays
   * known (its versions continue on recreate). */
  tu_append_ok(tu_store, "soft", EVS_EXPECT_ANY, 4, NULL);
  tu_append_ok(tu_store, "live", EVS_EXPECT_ANY, 1, NULL);
  del_ok("soft", EVS_EXPECT_ANY, 0);
  evs_compact_report rep;
  memset(&rep, 0, sizeof rep);
  cr_assert_eq(evs_store_compact(tu_store, &rep), 0);
  cr_assert_eq(rep.events_removed, 4);
  tu_verify_clean(tu_store);
  evs_append_result r = tu_append_ok(tu_store, "soft", EVS_EXPECT_NO_STREAM, 1,
                                     NULL);
  cr_assert_eq(r.first_version, 4);
  cr_assert_eq(r.first_position, 6);
  tu_verify_clean(tu_store);
}

Test(store_delete, compaction_of_a_tombstoned_stream_verifies) {
  tu_append_ok(tu_store, "hard", EVS_EXPECT_ANY, 3, NULL);
  tu_append_ok(tu_store, "live", EVS_EXPECT_ANY, 1, NULL);
  del_ok("hard", EVS_EXPECT_ANY, 1);
  evs_compact_report rep;
  memset(&rep, 0, sizeof rep);
  cr_assert_eq(evs_store_compact(tu_store, &rep), 0);
  cr_assert_eq(rep.events_removed, 3);
  tu_verify_clean(tu_store);
  cr_assert_eq(tu_append_n(tu_store, "hard", EVS_EXPECT_ANY, 1, NULL, NULL),
               EVS_ESTREAMDELETED);
}
