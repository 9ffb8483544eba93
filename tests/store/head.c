/*
 * Stream heads (format 3): an append does not rewrite its stream's record;
 * the head is the last entry of the stream's index list, checked against
 * the event it names. These tests cover what depends on that: the format
 * upgrade of format-2 stores, compaction that removes a stream's last
 * entries, and a damaged head entry.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "evstore/evstore.h"
#include "testutil.h"

TestSuite(store_head, .init = tu_setup, .fini = tu_teardown, .timeout = 60);

/* meta/format of the closed store in tu_dir. */
static uint32_t stored_format(void) {
  uint8_t b[4];
  size_t len = tu_lmdb_get(tu_dir, "meta", "format", 6, b, sizeof b);
  cr_assert_eq(len, 4, "meta/format is %zu bytes", len);
  return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
         b[3];
}

static int64_t version_of(const char *stream) {
  evs_stream_info info;
  int rc = evs_stream_info_get(tu_store, stream, &info);
  cr_assert_eq(rc, 0, "info(%s): %s: %s", stream, evs_err_name(rc),
               evs_last_error());
  int64_t v = info.version;
  evs_stream_info_clear(&info);
  return v;
}

static uint64_t verify_errors(void) {
  evs_verify_report vr;
  cr_assert_eq(evs_store_verify(tu_store, &vr, NULL, NULL), 0);
  return vr.errors;
}

Test(store_head, heads_follow_appends_across_reopen_and_read_only) {
  /* One event per append: the record keeps the first append's head. */
  for (int i = 0; i < 5; i++)
    tu_append_ok(tu_store, "s", i == 0 ? EVS_EXPECT_NO_STREAM : i - 1, 1, NULL);
  tu_append_ok(tu_store, "t", EVS_EXPECT_ANY, 2, NULL);
  cr_assert_eq(version_of("s"), 4);
  evs_stream_info info;
  cr_assert_eq(evs_stream_info_get(tu_store, "s", &info), 0);
  cr_assert_eq(info.last_position, 5);
  cr_assert_gt(info.last_timestamp_ns, 0);
  evs_stream_info_clear(&info);
  evs_append_result r;
  cr_assert_eq(tu_append_n(tu_store, "s", 3, 1, NULL, &r), EVS_EWRONGVERSION);
  cr_assert_eq(r.actual_version, 4);
  tu_reopen(NULL);
  cr_assert_eq(version_of("s"), 4);
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.read_only = 1;
  tu_reopen(&o);
  cr_assert_eq(version_of("s"), 4);
  cr_assert_eq(verify_errors(), 0);
  tu_reopen(NULL);
  tu_append_ok(tu_store, "s", 4, 1, NULL);
  cr_assert_eq(version_of("s"), 5);
  /* A soft delete writes the record with the head it had. */
  cr_assert_eq(evs_stream_delete(tu_store, "s", 5, 0), 0);
  cr_assert_eq(tu_append_n(tu_store, "s", 5, 1, NULL, &r), EVS_EWRONGVERSION);
  r = tu_append_ok(tu_store, "s", EVS_EXPECT_NO_STREAM, 1, NULL);
  cr_assert_eq(r.first_version, 6);
  cr_assert_eq(verify_errors(), 0);
}

Test(store_head, format_2_stores_open_and_are_marked_3_when_written) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 2, NULL);
  evs_store_close(tu_store);
  tu_store = NULL;
  cr_assert_eq(stored_format(), EVS_FORMAT_VERSION);
  cr_assert_eq(EVS_FORMAT_VERSION, 3);
  const uint8_t v2[4] = { 0, 0, 0, 2 };
  tu_lmdb_put(tu_dir, "meta", "format", 6, v2, 4);
  /* Read-only: readable, and left as it is. */
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.read_only = 1;
  tu_store = tu_open(tu_dir, &o);
  cr_assert_eq(version_of("s"), 1);
  evs_store_close(tu_store);
  tu_store = NULL;
  cr_assert_eq(stored_format(), 2);
  /* Writable: marked format 3 at open, before any append. */
  tu_store = tu_open(tu_dir, NULL);
  evs_store_close(tu_store);
  tu_store = NULL;
  cr_assert_eq(stored_format(), 3);
  tu_store = tu_open(tu_dir, NULL);
  tu_append_ok(tu_store, "s", 1, 1, NULL);
  cr_assert_eq(version_of("s"), 2);
}

Test(store_head, compaction_that_removes_every_event_keeps_the_version) {
  /* The metadata creates the stream's record; the appends leave it as it
   * is (no events) until compaction runs. */
  evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
  md.max_age_sec = 1;
  cr_assert_eq(evs_stream_set_metadata(tu_store, "aging", &md), 0);
  for (int i = 0; i < 4; i++)
    tu_append_ok(tu_store, "aging", i == 0 ? EVS_EXPECT_NO_STREAM : i - 1, 1,
                 NULL);
  tu_append_ok(tu_store, "other", EVS_EXPECT_ANY, 1, NULL); /* the log head */
  tu_sleep_ms(1200);
  evs_compact_report rep;
  cr_assert_eq(evs_store_compact(tu_store, &rep), 0, "%s", evs_last_error());
  cr_assert_eq(rep.events_removed, 4);
  cr_assert_eq(tu_stat_events(tu_store), 1);
  cr_assert_eq(version_of("aging"), 3);
  cr_assert_eq(verify_errors(), 0);
  evs_append_result r;
  cr_assert_eq(tu_append_n(tu_store, "aging", 0, 1, NULL, &r),
               EVS_EWRONGVERSION);
  cr_assert_eq(r.actual_version, 3);
  r = tu_append_ok(tu_store, "aging", 3, 1, NULL);
  cr_assert_eq(r.first_version, 4);
  tu_reopen(NULL);
  cr_assert_eq(version_of("aging"), 4);
}

Test(store_head, a_head_entry_naming_another_event_is_corrupt) {
  for (int i = 0; i < 3; i++)
    tu_append_ok(tu_store, "a", i == 0 ? EVS_EXPECT_NO_STREAM : i - 1, 1, NULL);
  tu_append_ok(tu_store, "b", EVS_EXPECT_NO_STREAM, 1, NULL); /* position 4 */
  evs_stream_info info;
  cr_assert_eq(evs_stream_info_get(tu_store, "a", &info), 0);
  uint64_t sid = info.stream_id;
  evs_stream_info_clear(&info);
  evs_store_close(tu_store);
  tu_store = NULL;
  /* A damaged list: a's head entry says version 3 at b's position. */
  uint8_t k[8], v[16];
  tu_be64(k, sid);
  tu_be64(v, 3);
  tu_be64(v + 8, 4);
  tu_lmdb_put(tu_dir, "stream_index", k, 8, v, 16);
  tu_store = tu_open(tu_dir, NULL);
  cr_assert_eq(evs_stream_info_get(tu_store, "a", &info), EVS_ECORRUPT);
  cr_assert(strstr(evs_last_error(), "does not match") != NULL, "%s",
            evs_last_error());
  evs_append_result r;
  cr_assert_eq(tu_append_n(tu_store, "a", 3, 1, NULL, &r), EVS_ECORRUPT);
  cr_assert_eq(tu_append_n(tu_store, "a", 2, 1, NULL, &r), EVS_ECORRUPT);
  cr_assert_gt(verify_errors(), 0);
  /* Nothing was written, and the other stream is unaffected. */
  cr_assert_eq(tu_head(tu_store), 4);
  cr_assert_eq(version_of("b"), 0);
}
