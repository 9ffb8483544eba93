/*
 * Stream metadata: max count, truncate-before, max age, custom bytes, and
 * the compaction that reclaims hidden events.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/evstore.h"
#include "testutil.h"

TestSuite(store_metadata, .init = tu_setup, .fini = tu_teardown,
          .timeout = 60);

static void set_md(const char *stream, uint64_t max_count, uint64_t max_age,
                   int64_t truncate_before) {
  evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
  md.max_count = max_count;
  md.max_age_sec = max_age;
  md.truncate_before = truncate_before;
  int rc = evs_stream_set_metadata(tu_store, stream, &md);
  cr_assert_eq(rc, 0, "set_metadata(%s): %s: %s", stream, evs_err_name(rc),
               evs_last_error());
}

/* Asserts the visible versions of a stream read forward and backward. */
static void assert_versions(const char *stream, int64_t first, int64_t last) {
  size_t want = last >= first ? (size_t)(last - first + 1) : 0;
  tu_evlist l = tu_stream(tu_store, stream, NULL);
  cr_assert_eq(l.n, want, "'%s': %zu visible events, want %zu (v%lld..%lld)",
               stream, l.n, want, (long long)first, (long long)last);
  for (size_t i = 0; i < l.n; i++)
    cr_assert_eq(l.ev[i].version, first + (int64_t)i);
  tu_evlist_free(&l);
  evs_read_options o = EVS_READ_OPTIONS_INIT;
  o.direction = EVS_BACKWARD;
  o.from_version = EVS_FROM_END;
  l = tu_stream(tu_store, stream, &o);
  cr_assert_eq(l.n, want, "'%s' backward: %zu events", stream, l.n);
  for (size_t i = 0; i < l.n; i++)
    cr_assert_eq(l.ev[i].version, last - (int64_t)i);
  tu_evlist_free(&l);
}

/* Number of events of `stream` in a read of $all. */
static size_t count_in_all(const char *stream) {
  tu_evlist l = tu_all(tu_store, NULL);
  size_t n = 0;
  for (size_t i = 0; i < l.n; i++)
    n += strcmp(l.ev[i].stream, stream) == 0;
  tu_evlist_free(&l);
  return n;
}

Test(store_metadata, max_count_keeps_the_last_n) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 10, NULL); /* p1..10 */
  tu_append_ok(tu_store, "t", EVS_EXPECT_ANY, 2, NULL);
  set_md("s", 3, 0, -1);
  assert_versions("s", 7, 9);
  evs_stream_info info;
  cr_assert_eq(evs_stream_info_get(tu_store, "s", &info), 0);
  cr_assert_eq(info.max_count, 3);
  cr_assert_eq(info.version, 9);
  cr_assert_eq(info.first_version, 7);
  cr_assert_eq(info.first_position, 8);
  evs_stream_info_clear(&info);
  cr_assert_eq(count_in_all("s"), 3);
  cr_assert_eq(count_in_all("t"), 2);
  /* New events push the window. */
  tu_append_ok(tu_store, "s", 9, 2, NULL);
  assert_versions("s", 9, 11);
  cr_assert_eq(count_in_all("s"), 3);
}

Test(store_metadata, max_count_read_from_a_hidden_version) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 10, NULL);
  set_md("s", 4, 0, -1);
  evs_read_options o = EVS_READ_OPTIONS_INIT;
  o.from_version = 2; /* hidden: reading starts at the first visible */
  tu_evlist l = tu_stream(tu_store, "s", &o);
  cr_assert_eq(l.n, 4);
  cr_assert_eq(l.ev[0].version, 6);
  tu_evlist_free(&l);
  o.direction = EVS_BACKWARD;
  o.from_version = 7;
  l = tu_stream(tu_store, "s", &o);
  cr_assert_eq(l.n, 2, "backward from 7 sees 7 and 6 only, got %zu", l.n);
  tu_evlist_free(&l);
}

Test(store_metadata, truncate_before_hides_lower_versions) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 8, NULL);
  set_md("s", 0, 0, 4);
  assert_versions("s", 4, 7);
  cr_assert_eq(count_in_all("s"), 4);
  evs_stream_info info;
  cr_assert_eq(evs_stream_info_get(tu_store, "s", &info), 0);
  cr_assert_eq(info.truncate_before, 4);
  cr_assert_eq(info.first_version, 4);
  cr_assert_eq(info.first_position, 5);
  evs_stream_info_clear(&info);
  /* Appends still check against the real last version. */
  evs_append_result r = tu_append_ok(tu_store, "s", 7, 1, NULL);
  cr_assert_eq(r.first_version, 8);
  /* Lifting the limit makes the events visible again (before compaction). */
  set_md("s", 0, 0, -1);
  assert_versions("s", 0, 8);
}

Test(store_metadata, max_count_and_truncate_before_combine) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 10, NULL);
  set_md("s", 5, 0, 3); /* max_count alone: 5..9 */
  assert_versions("s", 5, 9);
  set_md("s", 8, 0, 6); /* truncate alone: 6..9 */
  assert_versions("s", 6, 9);
}

Test(store_metadata, set_before_the_stream_exists) {
  set_md("future-1", 2, 0, -1);
  /* The store has seen the stream (it has metadata) but it has no event:
   * info succeeds and reports no version. */
  evs_stream_info info;
  memset(&info, 0, sizeof info);
  int rc = evs_stream_info_get(tu_store, "future-1", &info);
  cr_assert_eq(rc, 0, "%s", evs_err_name(rc));
  cr_assert_eq(info.version, EVS_VERSION_NONE);
  cr_assert_eq(info.max_count, 2);
  evs_stream_info_clear(&info);
  /* NO_STREAM still passes: the stream has no event. */
  evs_append_result r = tu_append_ok(tu_store, "future-1",
                                     EVS_EXPECT_NO_STREAM, 5, NULL);
  cr_assert_eq(r.first_version, 0);
  assert_versions("future-1", 3, 4);
}

Test(store_metadata, max_age_hides_old_events) {
  tu_append_ok(tu_store, "aging", EVS_EXPECT_ANY, 3, NULL);
  tu_append_ok(tu_store, "young", EVS_EXPECT_ANY, 1, NULL);
  set_md("aging", 0, 1, -1);
  assert_versions("aging", 0, 2); /* still younger than 1 s */
  tu_sleep_ms(1200);
  evs_append_result r = tu_append_ok(tu_store, "aging", 2, 2, NULL);
  cr_assert_eq(r.first_version, 3);
  assert_versions("aging", 3, 4);
  cr_assert_eq(count_in_all("aging"), 2);
  cr_assert_eq(count_in_all("young"), 1, "max_age of one stream hid another");
  evs_stream_info info;
  cr_assert_eq(evs_stream_info_get(tu_store, "aging", &info), 0);
  cr_assert_eq(info.max_age_sec, 1);
  cr_assert_eq(info.first_version, 3);
  evs_stream_info_clear(&info);

  /* Compaction reclaims exactly the 3 aged events. */
  evs_compact_report rep;
  memset(&rep, 0, sizeof rep);
  int rc = evs_store_compact(tu_store, &rep);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  cr_assert_eq(rep.events_removed, 3);
  cr_assert_eq(tu_stat_events(tu_store), 3);
  assert_versions("aging", 3, 4);
}

Test(store_metadata, custom_bytes_round_trip) {
  static const char custom[] = "{\"owner\":\"team-a\",\"bin\":\"\0\x01\"}";
  evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
  md.custom = custom;
  md.custom_len = sizeof custom; /* includes the embedded NUL and the last */
  cr_assert_eq(evs_stream_set_metadata(tu_store, "c-1", &md), 0);
  tu_append_ok(tu_store, "c-1", EVS_EXPECT_ANY, 1, NULL);
  evs_stream_info info;
  cr_assert_eq(evs_stream_info_get(tu_store, "c-1", &info), 0);
  cr_assert_not_null(info.custom);
  cr_assert_eq(info.custom_len, sizeof custom);
  cr_assert_eq(memcmp(info.custom, custom, sizeof custom), 0);
  evs_stream_info_clear(&info);

  /* Replacing the metadata without custom bytes removes them. */
  evs_stream_metadata none = EVS_STREAM_METADATA_INIT;
  none.max_count = 7;
  cr_assert_eq(evs_stream_set_metadata(tu_store, "c-1", &none), 0);
  cr_assert_eq(evs_stream_info_get(tu_store, "c-1", &info), 0);
  cr_assert_null(info.custom);
  cr_assert_eq(info.custom_len, 0);
  cr_assert_eq(info.max_count, 7);
  evs_stream_info_clear(&info);
}

Test(store_metadata, custom_limit_is_64_kib) {
  char *big = malloc(64 * 1024 + 1);
  cr_assert_not_null(big);
  memset(big, 'x', 64 * 1024 + 1);
  evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
  md.custom = big;
  md.custom_len = 64 * 1024;
  int rc = evs_stream_set_metadata(tu_store, "c", &md);
  cr_assert_eq(rc, 0, "64 KiB custom: %s", evs_err_name(rc));
  md.custom_len = 64 * 1024 + 1;
  rc = evs_stream_set_metadata(tu_store, "c", &md);
  cr_assert_eq(rc, EVS_ETOOLARGE, "%s", evs_err_name(rc));
  evs_stream_info info;
  cr_assert_eq(evs_stream_info_get(tu_store, "c", &info), 0);
  cr_assert_eq(info.custom_len, 64 * 1024, "a rejected set changed metadata");
  evs_stream_info_clear(&info);
  free(big);
}

Test(store_metadata, bad_arguments) {
  evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
  cr_assert_eq(evs_stream_set_metadata(tu_store, "s", NULL), EVS_EINVAL);
  cr_assert_eq(evs_stream_set_metadata(NULL, "s", &md), EVS_EINVAL);
  cr_assert_eq(evs_stream_set_metadata(tu_store, NULL, &md), EVS_EINVAL);
  cr_assert_eq(evs_stream_set_metadata(tu_store, "", &md), EVS_EBADNAME);
  cr_assert_eq(evs_stream_set_metadata(tu_store, "\xff", &md), EVS_EBADNAME);
}

Test(store_metadata, tombstoned_stream_rejects_metadata) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 1, NULL);
  cr_assert_eq(evs_stream_delete(tu_store, "s", EVS_EXPECT_ANY, 1), 0);
  evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
  md.max_count = 1;
  int rc = evs_stream_set_metadata(tu_store, "s", &md);
  cr_assert_eq(rc, EVS_ESTREAMDELETED, "%s", evs_err_name(rc));
}

Test(store_metadata, metadata_survives_reopen) {
  static const char custom[] = "{\"k\":1}";
  evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
  md.max_count = 2;
  md.truncate_before = 1;
  md.max_age_sec = 3600;
  md.custom = custom;
  md.custom_len = strlen(custom);
  cr_assert_eq(evs_stream_set_metadata(tu_store, "p", &md), 0);
  tu_append_ok(tu_store, "p", EVS_EXPECT_ANY, 5, NULL);
  tu_reopen(NULL);
  evs_stream_info info;
  cr_assert_eq(evs_stream_info_get(tu_store, "p", &info), 0);
  cr_assert_eq(info.max_count, 2);
  cr_assert_eq(info.truncate_before, 1);
  cr_assert_eq(info.max_age_sec, 3600);
  cr_assert_eq(info.custom_len, strlen(custom));
  cr_assert_eq(memcmp(info.custom, custom, info.custom_len), 0);
  evs_stream_info_clear(&info);
  assert_versions("p", 3, 4);
}

Test(store_metadata, compact_removes_hidden_events_only) {
  tu_append_ok(tu_store, "keep-3", EVS_EXPECT_ANY, 50, NULL);
  tu_append_ok(tu_store, "other", EVS_EXPECT_ANY, 20, NULL);
  tu_append_ok(tu_store, "keep-3", EVS_EXPECT_ANY, 50, NULL);
  tu_append_ok(tu_store, "trunc", EVS_EXPECT_ANY, 30, NULL);
  set_md("keep-3", 3, 0, -1);
  set_md("trunc", 0, 0, 10);
  uint64_t head = tu_head(tu_store);
  cr_assert_eq(head, 150);
  cr_assert_eq(tu_stat_events(tu_store), 150);

  tu_evlist before = tu_all(tu_store, NULL);
  cr_assert_eq(before.n, 3 + 20 + 20);
  tu_evlist before_s = tu_stream(tu_store, "keep-3", NULL);

  evs_compact_report rep;
  memset(&rep, 0, sizeof rep);
  int rc = evs_store_compact(tu_store, &rep);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  cr_assert_eq(rep.events_removed, 97 + 10);
  cr_assert_eq(tu_stat_events(tu_store), 43);
  cr_assert_eq(tu_head(tu_store), head, "compaction moved the head");

  tu_evlist after = tu_all(tu_store, NULL);
  tu_assert_same_events(&before, &after);
  tu_evlist after_s = tu_stream(tu_store, "keep-3", NULL);
  tu_assert_same_events(&before_s, &after_s);
  tu_evlist_free(&before);
  tu_evlist_free(&after);
  tu_evlist_free(&before_s);
  tu_evlist_free(&after_s);

  /* Removed events are gone from the low-level lookup too. */
  evs_event *e = NULL;
  cr_assert_eq(evs_read_event(tu_store, 1, &e), EVS_ENOTFOUND);

  evs_verify_report vr = tu_verify_clean(tu_store);
  cr_assert_eq(vr.events_checked, 43);

  /* Appends continue after the head, with the right versions. */
  evs_append_result r = tu_append_ok(tu_store, "keep-3", 99, 1, NULL);
  cr_assert_eq(r.first_version, 100);
  cr_assert_eq(r.first_position, head + 1);
  assert_versions("keep-3", 98, 100);

  /* A second pass finds only the one event the new append pushed out. */
  rc = evs_store_compact(tu_store, &rep);
  cr_assert_eq(rc, 0);
  cr_assert_eq(rep.events_removed, 1);
  rc = evs_store_compact(tu_store, NULL);
  cr_assert_eq(rc, 0, "report may be NULL: %s", evs_err_name(rc));
}

Test(store_metadata, compact_survives_reopen) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 40, NULL);
  set_md("s", 0, 0, 30);
  cr_assert_eq(evs_store_compact(tu_store, NULL), 0);
  tu_reopen(NULL);
  cr_assert_eq(tu_stat_events(tu_store), 10);
  assert_versions("s", 30, 39);
  cr_assert_eq(tu_head(tu_store), 40);
}
