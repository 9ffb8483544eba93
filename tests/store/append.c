/*
 * evs_append: versions, positions, expected-version checks, results, ids,
 * payload round trips.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/evstore.h"
#include "testutil.h"

TestSuite(store_append, .init = tu_setup, .fini = tu_teardown, .timeout = 60);

/* Asserts that `stream` reads back as exactly versions 0..n-1. */
static void assert_stream_versions(const char *stream, int64_t n) {
  tu_evlist l = tu_stream(tu_store, stream, NULL);
  cr_assert_eq((int64_t)l.n, n, "'%s' has %zu events, want %lld", stream, l.n,
               (long long)n);
  for (size_t i = 0; i < l.n; i++)
    cr_assert_eq(l.ev[i].version, (int64_t)i);
  tu_evlist_free(&l);
}

/* Asserts that `stream`'s info reports last version `v`. */
static void assert_info_version(const char *stream, int64_t v) {
  evs_stream_info info;
  memset(&info, 0, sizeof info);
  int rc = evs_stream_info_get(tu_store, stream, &info);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  cr_assert_eq(info.version, v, "'%s' version %lld, want %lld", stream,
               (long long)info.version, (long long)v);
  evs_stream_info_clear(&info);
}

Test(store_append, first_append_starts_at_version_0_position_1) {
  int64_t before = tu_now_ns();
  evs_append_result r = tu_append_ok(tu_store, "order-1", EVS_EXPECT_NO_STREAM,
                                     3, NULL);
  int64_t after = tu_now_ns();
  cr_assert_eq(r.first_version, 0);
  cr_assert_eq(r.last_version, 2);
  cr_assert_eq(r.first_position, 1);
  cr_assert_eq(r.last_position, 3);
  cr_assert_eq(r.idempotent, 0);
  cr_assert_gt(r.timestamp_ns, 0);
  /* The commit time is the wall clock (allow 5 s of slack each way). */
  cr_assert_geq(r.timestamp_ns, before - 5000000000LL);
  cr_assert_leq(r.timestamp_ns, after + 5000000000LL);
  cr_assert_eq(tu_head(tu_store), 3);
}

Test(store_append, positions_continue_across_streams) {
  evs_append_result a = tu_append_ok(tu_store, "a", EVS_EXPECT_ANY, 2, NULL);
  evs_append_result b = tu_append_ok(tu_store, "b", EVS_EXPECT_ANY, 3, NULL);
  evs_append_result c = tu_append_ok(tu_store, "a", EVS_EXPECT_ANY, 1, NULL);
  cr_assert_eq(a.first_position, 1);
  cr_assert_eq(a.last_position, 2);
  cr_assert_eq(b.first_position, 3);
  cr_assert_eq(b.last_position, 5);
  cr_assert_eq(b.first_version, 0);
  cr_assert_eq(b.last_version, 2);
  cr_assert_eq(c.first_position, 6);
  cr_assert_eq(c.first_version, 2);
  cr_assert_eq(c.last_version, 2);
  cr_assert_geq(b.timestamp_ns, a.timestamp_ns);
  cr_assert_geq(c.timestamp_ns, b.timestamp_ns);
}

Test(store_append, many_appends_gap_free_and_ordered) {
  /* 60 appends of 1..5 events over 5 streams in a fixed pseudo-random
   * pattern; $all must come back as positions 1..N with each stream's
   * versions contiguous and timestamps non-decreasing. */
  static const char *streams[] = {"s-0", "s-1", "s-2", "s-3", "s-4"};
  int64_t next_version[5] = {0};
  uint64_t total = 0;
  int64_t last_ts = 0;
  uint64_t x = 42;
  for (int i = 0; i < 60; i++) {
    x = x * 6364136223846793005ull + 1;
    int s = (int)((x >> 33) % 5);
    size_t n = 1 + (size_t)((x >> 40) % 5);
    int64_t expected =
        next_version[s] == 0 ? EVS_EXPECT_NO_STREAM : next_version[s] - 1;
    evs_append_result r = tu_append_ok(tu_store, streams[s], expected, n, NULL);
    cr_assert_eq(r.first_version, next_version[s]);
    cr_assert_eq(r.last_version, next_version[s] + (int64_t)n - 1);
    cr_assert_eq(r.first_position, total + 1);
    cr_assert_eq(r.last_position, total + n);
    cr_assert_geq(r.timestamp_ns, last_ts);
    last_ts = r.timestamp_ns;
    next_version[s] += (int64_t)n;
    total += n;
  }
  tu_evlist all = tu_all(tu_store, NULL);
  cr_assert_eq(all.n, total);
  int64_t seen[5] = {0};
  for (size_t i = 0; i < all.n; i++) {
    cr_assert_eq(all.ev[i].position, i + 1);
    if (i > 0)
      cr_assert_geq(all.ev[i].timestamp_ns, all.ev[i - 1].timestamp_ns);
    int s = all.ev[i].stream[2] - '0';
    cr_assert_eq(all.ev[i].version, seen[s]++, "stream %s", all.ev[i].stream);
  }
  for (int s = 0; s < 5; s++)
    cr_assert_eq(seen[s], next_version[s]);
  tu_evlist_free(&all);
}

Test(store_append, expect_any_always_passes) {
  evs_append_result r = tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 1, NULL);
  cr_assert_eq(r.first_version, 0);
  r = tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 2, NULL);
  cr_assert_eq(r.first_version, 1);
  cr_assert_eq(r.last_version, 2);
}

Test(store_append, expect_no_stream_passes_on_missing_stream) {
  evs_append_result r =
      tu_append_ok(tu_store, "fresh", EVS_EXPECT_NO_STREAM, 1, NULL);
  cr_assert_eq(r.first_version, 0);
}

Test(store_append, expect_no_stream_rejects_existing_stream) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 3, NULL);
  uint64_t head = tu_head(tu_store);
  evs_append_result r;
  memset(&r, 0, sizeof r);
  int rc = tu_append_n(tu_store, "s", EVS_EXPECT_NO_STREAM, 1, NULL, &r);
  cr_assert_eq(rc, EVS_EWRONGVERSION, "%s", evs_err_name(rc));
  cr_assert_eq(r.actual_version, 2);
  cr_assert_eq(tu_head(tu_store), head);
  assert_stream_versions("s", 3);
}

Test(store_append, expect_exists_rejects_missing_stream) {
  evs_append_result r;
  memset(&r, 0, sizeof r);
  r.actual_version = 12345;
  int rc = tu_append_n(tu_store, "ghost", EVS_EXPECT_EXISTS, 1, NULL, &r);
  cr_assert_eq(rc, EVS_EWRONGVERSION, "%s", evs_err_name(rc));
  cr_assert_eq(r.actual_version, EVS_VERSION_NONE);
  cr_assert_eq(tu_head(tu_store), 0);
  evs_stream_info info;
  rc = evs_stream_info_get(tu_store, "ghost", &info);
  cr_assert_eq(rc, EVS_ENOSTREAM, "a rejected append must not create the "
               "stream: %s", evs_err_name(rc));
}

Test(store_append, expect_exists_passes_on_existing_stream) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 2, NULL);
  evs_append_result r = tu_append_ok(tu_store, "s", EVS_EXPECT_EXISTS, 1, NULL);
  cr_assert_eq(r.first_version, 2);
}

Test(store_append, exact_version_passes_when_it_matches) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_NO_STREAM, 1, NULL);
  evs_append_result r = tu_append_ok(tu_store, "s", 0, 2, NULL);
  cr_assert_eq(r.first_version, 1);
  cr_assert_eq(r.last_version, 2);
  r = tu_append_ok(tu_store, "s", 2, 1, NULL);
  cr_assert_eq(r.first_version, 3);
  assert_stream_versions("s", 4);
}

Test(store_append, rejects_wrong_expected_version) {
  tu_append_ok(tu_store, "order-7", EVS_EXPECT_ANY, 5, NULL); /* v0..4 */
  tu_append_ok(tu_store, "other", EVS_EXPECT_ANY, 1, NULL);
  uint64_t head = tu_head(tu_store);
  static const int64_t wrong[] = {0, 3, 5, 6, 1000};
  for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
    evs_append_result r;
    memset(&r, 0, sizeof r);
    int rc = tu_append_n(tu_store, "order-7", wrong[i], 2, NULL, &r);
    cr_assert_eq(rc, EVS_EWRONGVERSION, "expected %lld: %s",
                 (long long)wrong[i], evs_err_name(rc));
    cr_assert_eq(r.actual_version, 4, "actual_version %lld",
                 (long long)r.actual_version);
    /* The detail message names the expectation. */
    cr_assert(tu_contains_ci(evs_last_error(), "expected"),
              "evs_last_error() = '%s'", evs_last_error());
  }
  cr_assert_eq(tu_head(tu_store), head);
  assert_stream_versions("order-7", 5);
  assert_info_version("order-7", 4);
}

Test(store_append, exact_version_on_missing_stream_is_rejected) {
  evs_append_result r;
  memset(&r, 0, sizeof r);
  int rc = tu_append_n(tu_store, "ghost", 0, 1, NULL, &r);
  cr_assert_eq(rc, EVS_EWRONGVERSION, "%s", evs_err_name(rc));
  cr_assert_eq(r.actual_version, EVS_VERSION_NONE);
  cr_assert_eq(tu_head(tu_store), 0);
}

Test(store_append, rejected_append_writes_no_event_of_a_batch) {
  /* Atomicity: a 100-event append that fails its check leaves nothing. */
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 1, NULL);
  int rc = tu_append_n(tu_store, "s", 7, 100, NULL, NULL);
  cr_assert_eq(rc, EVS_EWRONGVERSION);
  cr_assert_eq(tu_head(tu_store), 1);
  cr_assert_eq(tu_stat_events(tu_store), 1);
  /* And the next successful append takes position 2, version 1. */
  evs_append_result r = tu_append_ok(tu_store, "s", 0, 1, NULL);
  cr_assert_eq(r.first_position, 2);
  cr_assert_eq(r.first_version, 1);
}

Test(store_append, result_may_be_null) {
  int rc = tu_append_n(tu_store, "s", EVS_EXPECT_ANY, 2, NULL, NULL);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  cr_assert_eq(tu_head(tu_store), 2);
}

Test(store_append, generated_ids_are_written_back) {
  evs_event_data ev[3];
  for (int i = 0; i < 3; i++)
    tu_event(&ev[i], "Generated", "x", 1);
  int rc = evs_append(tu_store, "s", EVS_EXPECT_ANY, ev, 3, NULL);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  for (int i = 0; i < 3; i++) {
    cr_assert_not(evs_uuid_is_nil(&ev[i].id), "id %d not written back", i);
    cr_assert_eq(ev[i].id.bytes[6] >> 4, 7, "generated id %d is not v7", i);
    cr_assert_eq(ev[i].id.bytes[8] & 0xc0, 0x80, "variant bits of id %d", i);
  }
  cr_assert_neq(memcmp(&ev[0].id, &ev[1].id, 16), 0);
  cr_assert_neq(memcmp(&ev[1].id, &ev[2].id, 16), 0);
  tu_evlist l = tu_stream(tu_store, "s", NULL);
  cr_assert_eq(l.n, 3);
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(memcmp(&l.ev[i].id, &ev[i].id, 16), 0, "stored id %d", i);
    uint64_t pos = 0;
    rc = evs_find_event_id(tu_store, &ev[i].id, &pos);
    cr_assert_eq(rc, 0, "%s", evs_err_name(rc));
    cr_assert_eq(pos, l.ev[i].position);
  }
  tu_evlist_free(&l);
}

Test(store_append, client_ids_are_kept) {
  evs_event_data ev[2];
  tu_event(&ev[0], "A", "1", 1);
  tu_event(&ev[1], "B", "2", 1);
  ev[0].id = tu_uuid(1);
  ev[1].id = tu_uuid(2);
  evs_uuid want0 = ev[0].id, want1 = ev[1].id;
  int rc = evs_append(tu_store, "s", EVS_EXPECT_NO_STREAM, ev, 2, NULL);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  cr_assert_eq(memcmp(&ev[0].id, &want0, 16), 0, "client id was changed");
  tu_evlist l = tu_stream(tu_store, "s", NULL);
  cr_assert_eq(l.n, 2);
  cr_assert_eq(memcmp(&l.ev[0].id, &want0, 16), 0);
  cr_assert_eq(memcmp(&l.ev[1].id, &want1, 16), 0);
  tu_evlist_free(&l);
}

Test(store_append, data_and_metadata_round_trip) {
  static const uint8_t bin[] = {0, 1, 2, 0xff, 0, 0x80, '\n', 0};
  static const char json[] = "{\"amount\":42,\"currency\":\"EUR\"}";
  static const char meta[] = "{\"correlationId\":\"c-1\",\"user\":\"ann\"}";
  evs_event_data ev[4];
  tu_event(&ev[0], "Binary", bin, sizeof bin);
  ev[0].metadata = bin;
  ev[0].metadata_len = sizeof bin;
  tu_event(&ev[1], "Json", json, strlen(json));
  ev[1].metadata = meta;
  ev[1].metadata_len = strlen(meta);
  tu_event(&ev[2], "EmptyData", NULL, 0);
  ev[2].metadata = meta;
  ev[2].metadata_len = strlen(meta);
  tu_event(&ev[3], "Nothing", NULL, 0);
  int rc = evs_append(tu_store, "payload-1", EVS_EXPECT_ANY, ev, 4, NULL);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());

  tu_evlist l = tu_stream(tu_store, "payload-1", NULL);
  cr_assert_eq(l.n, 4);
  for (int i = 0; i < 4; i++) {
    cr_assert_str_eq(l.ev[i].stream, "payload-1");
    cr_assert_str_eq(l.ev[i].type, ev[i].type);
    cr_assert_eq(l.ev[i].data_len, ev[i].data_len, "event %d data length", i);
    if (ev[i].data_len)
      cr_assert_eq(memcmp(l.ev[i].data, ev[i].data, ev[i].data_len), 0);
    cr_assert_eq(l.ev[i].metadata_len, ev[i].metadata_len,
                 "event %d metadata length", i);
    if (ev[i].metadata_len)
      cr_assert_eq(memcmp(l.ev[i].metadata, ev[i].metadata,
                          ev[i].metadata_len), 0);
  }
  tu_evlist_free(&l);
}

Test(store_append, events_of_one_append_share_the_commit_time) {
  evs_append_result r = tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 5, NULL);
  tu_evlist l = tu_stream(tu_store, "s", NULL);
  cr_assert_eq(l.n, 5);
  /* Each event's timestamp is the commit time of its append. */
  for (size_t i = 0; i < l.n; i++)
    cr_assert_eq(l.ev[i].timestamp_ns, r.timestamp_ns, "event %zu", i);
  tu_evlist_free(&l);
}

Test(store_append, ten_thousand_events_in_one_append) {
  enum { N = 10000 };
  evs_append_result r = tu_append_ok(tu_store, "bulk", EVS_EXPECT_NO_STREAM, N,
                                     NULL);
  cr_assert_eq(r.first_version, 0);
  cr_assert_eq(r.last_version, N - 1);
  cr_assert_eq(r.first_position, 1);
  cr_assert_eq(r.last_position, N);
  tu_evlist l = tu_stream(tu_store, "bulk", NULL);
  cr_assert_eq(l.n, N);
  for (size_t i = 0; i < l.n; i++) {
    char want[32];
    int n = snprintf(want, sizeof want, "bulk#%zu", i);
    cr_assert_eq(l.ev[i].version, (int64_t)i);
    cr_assert_eq(l.ev[i].position, i + 1);
    cr_assert_eq(l.ev[i].data_len, (size_t)n);
    cr_assert_eq(memcmp(l.ev[i].data, want, (size_t)n), 0);
  }
  tu_evlist_free(&l);
}

Test(store_append, one_mib_events_round_trip) {
  /* Several 1 MiB events in one append, random and compressible. */
  enum { N = 4, SZ = 1024 * 1024 };
  uint8_t *bufs[N];
  evs_event_data ev[N];
  for (int i = 0; i < N; i++) {
    bufs[i] = malloc(SZ);
    cr_assert_not_null(bufs[i]);
    if (i % 2)
      tu_fill_text(bufs[i], SZ, (uint64_t)i);
    else
      tu_fill_random(bufs[i], SZ, (uint64_t)i);
    tu_event(&ev[i], "Big", bufs[i], SZ);
    ev[i].metadata = bufs[i];
    ev[i].metadata_len = 100;
  }
  evs_append_result r;
  int rc = evs_append(tu_store, "big", EVS_EXPECT_NO_STREAM, ev, N, &r);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  cr_assert_eq(r.last_version, N - 1);

  tu_evlist l = tu_stream(tu_store, "big", NULL);
  cr_assert_eq(l.n, N);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(l.ev[i].data_len, (size_t)SZ);
    cr_assert_eq(memcmp(l.ev[i].data, bufs[i], SZ), 0, "event %d differs", i);
    cr_assert_eq(l.ev[i].metadata_len, 100);
    cr_assert_eq(memcmp(l.ev[i].metadata, bufs[i], 100), 0);
  }
  tu_evlist_free(&l);

  /* Also through the low-level copy. */
  evs_event *e = NULL;
  rc = evs_read_event(tu_store, r.first_position + 1, &e);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  cr_assert_eq(e->data.len, (size_t)SZ);
  cr_assert_eq(memcmp(e->data.data, bufs[1], SZ), 0);
  evs_event_free(e);
  for (int i = 0; i < N; i++)
    free(bufs[i]);
}

Test(store_append, type_names_round_trip) {
  static const char *types[] = {"OrderPlaced", "order.shipped.v2", "T",
                                "Événement-créé", "注文"};
  evs_event_data ev[5];
  for (int i = 0; i < 5; i++)
    tu_event(&ev[i], types[i], "{}", 2);
  int rc = evs_append(tu_store, "types", EVS_EXPECT_ANY, ev, 5, NULL);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  /* The ids were written back: resending one event is an idempotent retry
   * (ANY: anywhere in the stream), not a new event. */
  evs_append_result r;
  memset(&r, 0, sizeof r);
  rc = evs_append(tu_store, "types", EVS_EXPECT_ANY, ev + 1, 1, &r);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  cr_assert_eq(r.idempotent, 1);
  cr_assert_eq(r.first_version, 1);
  /* A fresh event reuses the (interned) type. */
  tu_event(&ev[1], types[1], "{}", 2);
  rc = evs_append(tu_store, "types", EVS_EXPECT_ANY, ev + 1, 1, NULL);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  tu_evlist l = tu_stream(tu_store, "types", NULL);
  cr_assert_eq(l.n, 6);
  for (int i = 0; i < 5; i++)
    cr_assert_str_eq(l.ev[i].type, types[i]);
  cr_assert_str_eq(l.ev[5].type, types[1]);
  tu_evlist_free(&l);
}

Test(store_append, stream_names_at_the_limits) {
  char name[256];
  memset(name, 'n', 255);
  name[255] = '\0';
  tu_append_ok(tu_store, name, EVS_EXPECT_NO_STREAM, 1, NULL);
  tu_append_ok(tu_store, "x", EVS_EXPECT_NO_STREAM, 1, NULL);
  tu_append_ok(tu_store, "日本-1", EVS_EXPECT_NO_STREAM, 1, NULL);
  tu_append_ok(tu_store, "emoji-\xf0\x9f\x98\x80", EVS_EXPECT_NO_STREAM, 1,
               NULL);
  tu_evlist l = tu_stream(tu_store, name, NULL);
  cr_assert_eq(l.n, 1);
  cr_assert_eq(strlen(l.ev[0].stream), 255);
  tu_evlist_free(&l);
  cr_assert_eq(tu_head(tu_store), 4);
}
