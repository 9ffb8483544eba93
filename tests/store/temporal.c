/*
 * Time: commit timestamps, evs_position_at, reads as of a position or a
 * time, and time-bounded reads of $all.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/evstore.h"
#include "testutil.h"

/* Three batches committed at distinct times:
 *   batch 0: "t-1" v0,v1 and "t-2" v0   (positions 1..3)
 *   batch 1: "t-1" v2 and "t-2" v1      (positions 4..5)
 *   batch 2: "t-1" v3, "t-3" v0         (positions 6..7)
 * Every append is separated from the previous one by a few ms, so
 * append k's commit time is strictly greater than append k-1's. */
static evs_append_result res[6];
static int64_t batch_ts[3];

static void temporal_setup(void) {
  tu_setup();
  struct {
    const char *stream;
    size_t n;
  } plan[] = { { "t-1", 2 }, { "t-2", 1 }, { "t-1", 1 },
               { "t-2", 1 }, { "t-1", 1 }, { "t-3", 1 } };
  for (int i = 0; i < 6; i++) {
    if (i % 2 == 0)
      tu_sleep_ms(5);
    res[i] = tu_append_ok(tu_store, plan[i].stream, EVS_EXPECT_ANY, plan[i].n,
                          "Tick");
    if (i > 0)
      cr_assert_geq(res[i].timestamp_ns, res[i - 1].timestamp_ns);
  }
  for (int b = 0; b < 3; b++)
    batch_ts[b] = res[2 * b + 1].timestamp_ns; /* end of batch b */
  cr_assert_gt(res[2].timestamp_ns, batch_ts[0],
               "5 ms apart but the same commit time");
  cr_assert_gt(res[4].timestamp_ns, batch_ts[1]);
}

TestSuite(store_temporal, .init = temporal_setup, .fini = tu_teardown,
          .timeout = 60);

static uint64_t pos_at(int64_t ts) {
  uint64_t p = UINT64_MAX;
  int rc = evs_position_at(tu_store, ts, &p);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  return p;
}

Test(store_temporal, event_timestamps_match_commit_times) {
  tu_evlist l = tu_all(tu_store, NULL);
  cr_assert_eq(l.n, 7);
  for (int i = 0; i < 6; i++)
    for (uint64_t p = res[i].first_position; p <= res[i].last_position; p++)
      cr_assert_eq(l.ev[p - 1].timestamp_ns, res[i].timestamp_ns,
                   "position %llu", (unsigned long long)p);
  tu_evlist_free(&l);
  evs_stats st;
  cr_assert_eq(evs_store_stats(tu_store, &st, 0), 0);
  cr_assert_eq(st.last_timestamp_ns, res[5].timestamp_ns);
  evs_stream_info info;
  cr_assert_eq(evs_stream_info_get(tu_store, "t-2", &info), 0);
  cr_assert_eq(info.last_timestamp_ns, res[3].timestamp_ns);
  evs_stream_info_clear(&info);
}

Test(store_temporal, position_at) {
  cr_assert_eq(pos_at(0), 0);
  cr_assert_eq(pos_at(res[0].timestamp_ns - 1), 0);
  /* Appends 0 and 1 are only a commit apart and could share a time. */
  cr_assert_eq(pos_at(res[0].timestamp_ns),
               res[1].timestamp_ns == res[0].timestamp_ns ? 3 : 2);
  cr_assert_eq(pos_at(batch_ts[0]), 3);
  cr_assert_eq(pos_at(res[2].timestamp_ns - 1), 3);
  cr_assert_eq(pos_at(batch_ts[1]), 5);
  cr_assert_eq(pos_at(res[4].timestamp_ns - 1), 5);
  cr_assert_eq(pos_at(batch_ts[2]), 7);
  cr_assert_eq(pos_at(INT64_MAX), 7);
  cr_assert_eq(pos_at(tu_now_ns() + 3600LL * 1000000000LL), 7);
}

Test(store_temporal, position_at_on_an_empty_store) {
  char *dir = tu_mkdtemp();
  evs_store *s = tu_open(dir, NULL);
  uint64_t p = 99;
  cr_assert_eq(evs_position_at(s, tu_now_ns(), &p), 0);
  cr_assert_eq(p, 0);
  cr_assert_eq(tu_head(s), 0);
  evs_store_close(s);
  tu_rmrf(dir);
  free(dir);
}

Test(store_temporal, position_at_many_commits) {
  /* 200 more commits: position_at(ts of commit k) is commit k's last
   * position, for every k (a binary search over equal timestamps must
   * find the last one). */
  enum {
    N = 200
  };
  evs_append_result r[N];
  for (int i = 0; i < N; i++)
    r[i] = tu_append_ok(tu_store, "many", EVS_EXPECT_ANY, 1 + i % 3, NULL);
  for (int i = 0; i < N; i++) {
    uint64_t want = r[i].last_position;
    /* Later commits may share the timestamp: take the last of them. */
    for (int j = i + 1; j < N && r[j].timestamp_ns == r[i].timestamp_ns; j++)
      want = r[j].last_position;
    cr_assert_eq(pos_at(r[i].timestamp_ns), want, "commit %d", i);
  }
}

Test(store_temporal, read_stream_as_of_position) {
  evs_read_options o = EVS_READ_OPTIONS_INIT;
  o.as_of_position = 4;
  tu_evlist l = tu_stream(tu_store, "t-1", &o);
  cr_assert_eq(l.n, 3, "t-1 as of position 4: %zu events", l.n);
  cr_assert_eq(l.ev[2].version, 2);
  tu_evlist_free(&l);
  o.as_of_position = 3;
  l = tu_stream(tu_store, "t-1", &o);
  cr_assert_eq(l.n, 2);
  tu_evlist_free(&l);
  o.direction = EVS_BACKWARD;
  o.from_version = EVS_FROM_END;
  o.as_of_position = 5;
  l = tu_stream(tu_store, "t-1", &o);
  cr_assert_eq(l.n, 3);
  cr_assert_eq(l.ev[0].version, 2,
               "backward as-of starts at the version "
               "current then");
  tu_evlist_free(&l);
}

Test(store_temporal, read_stream_as_of_time) {
  evs_read_options o = EVS_READ_OPTIONS_INIT;
  o.as_of_ns = batch_ts[1];
  tu_evlist l = tu_stream(tu_store, "t-1", &o);
  cr_assert_eq(l.n, 3);
  tu_evlist_free(&l);
  o.as_of_ns = batch_ts[0];
  l = tu_stream(tu_store, "t-2", &o);
  cr_assert_eq(l.n, 1);
  tu_evlist_free(&l);
  o.as_of_ns = res[4].timestamp_ns - 1;
  l = tu_stream(tu_store, "t-1", &o);
  cr_assert_eq(l.n, 3);
  tu_evlist_free(&l);
}

Test(store_temporal, stream_created_after_as_of_is_enostream) {
  evs_read_options o = EVS_READ_OPTIONS_INIT;
  o.as_of_position = 5;
  tu_evlist l;
  int rc = tu_read_stream(tu_store, "t-3", &o, &l);
  cr_assert_eq(rc, EVS_ENOSTREAM, "%s", evs_err_name(rc));
  tu_evlist_free(&l);
  o.as_of_position = 0;
  o.as_of_ns = batch_ts[1];
  rc = tu_read_stream(tu_store, "t-3", &o, &l);
  cr_assert_eq(rc, EVS_ENOSTREAM, "%s", evs_err_name(rc));
  tu_evlist_free(&l);
}

/* A stream soft-deleted and recreated: as of a position before its new
 * life it did not exist (its earlier events stay hidden, also from temporal
 * reads), as a stream created later; the same for a still-deleted stream. */
Test(store_temporal, recreated_stream_before_its_new_life_is_enostream) {
  tu_append_ok(tu_store, "life-1", EVS_EXPECT_ANY, 2, NULL);
  uint64_t before = tu_head(tu_store);
  cr_assert_eq(evs_stream_delete(tu_store, "life-1", EVS_EXPECT_ANY, 0), 0);
  evs_read_options o = EVS_READ_OPTIONS_INIT;
  o.as_of_position = before;
  tu_evlist l;
  int rc = tu_read_stream(tu_store, "life-1", &o, &l);
  cr_assert_eq(rc, EVS_ENOSTREAM, "deleted: %s", evs_err_name(rc));
  tu_evlist_free(&l);
  evs_append_result r =
      tu_append_ok(tu_store, "life-1", EVS_EXPECT_ANY, 1, NULL);
  cr_assert_eq(r.first_version, 2);
  rc = tu_read_stream(tu_store, "life-1", &o, &l);
  cr_assert_eq(rc, EVS_ENOSTREAM, "recreated, as of before: %s",
               evs_err_name(rc));
  cr_assert(strstr(evs_last_error(), "earlier life"), "%s", evs_last_error());
  tu_evlist_free(&l);
  o.as_of_position = r.first_position;
  rc = tu_read_stream(tu_store, "life-1", &o, &l);
  cr_assert_eq(rc, 0, "%s", evs_err_name(rc));
  cr_assert_eq(l.n, 1);
  cr_assert_eq(l.ev[0].version, 2);
  tu_evlist_free(&l);
  char *json = NULL;
  rc = evs_state_fold(&json, NULL, tu_store, "life-1", before, 0);
  cr_assert_eq(rc, EVS_ENOSTREAM, "fold as of before: %s", evs_err_name(rc));
  free(json);
}

Test(store_temporal, read_all_between_times) {
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  o.since_ns = res[2].timestamp_ns;
  o.until_ns = batch_ts[1];
  tu_evlist l = tu_all(tu_store, &o);
  cr_assert_eq(l.n, 2, "batch 1 only: %zu events", l.n);
  cr_assert_eq(l.ev[0].position, 4);
  cr_assert_eq(l.ev[1].position, 5);
  tu_evlist_free(&l);

  o.since_ns = 0;
  o.until_ns = batch_ts[0];
  l = tu_all(tu_store, &o);
  cr_assert_eq(l.n, 3);
  tu_evlist_free(&l);

  o.since_ns = res[4].timestamp_ns;
  o.until_ns = 0;
  l = tu_all(tu_store, &o);
  cr_assert_eq(l.n, 2);
  cr_assert_eq(l.ev[0].position, 6);
  tu_evlist_free(&l);

  o.direction = EVS_BACKWARD;
  o.from_position = EVS_POSITION_END;
  o.since_ns = res[2].timestamp_ns;
  o.until_ns = batch_ts[1];
  l = tu_all(tu_store, &o);
  cr_assert_eq(l.n, 2);
  cr_assert_eq(l.ev[0].position, 5);
  tu_evlist_free(&l);

  /* With a filter. */
  o.direction = EVS_FORWARD;
  o.from_position = 0;
  o.since_ns = res[2].timestamp_ns;
  o.until_ns = 0;
  o.stream_prefix = "t-1";
  l = tu_all(tu_store, &o);
  cr_assert_eq(l.n, 2);
  cr_assert_eq(l.ev[0].position, 4);
  cr_assert_eq(l.ev[1].position, 6);
  tu_evlist_free(&l);

  /* An empty window. */
  o.stream_prefix = NULL;
  o.since_ns = batch_ts[0] + 1;
  o.until_ns = res[2].timestamp_ns - 1;
  l = tu_all(tu_store, &o);
  cr_assert_eq(l.n, 0);
  tu_evlist_free(&l);
}

typedef struct ts_worker {
  pthread_t tid;
  int failures;
  char stream[16];
} ts_worker;

static void *ts_worker_main(void *arg) {
  ts_worker *w = arg;
  for (int i = 0; i < 50; i++)
    if (tu_append_n(tu_store, w->stream, EVS_EXPECT_ANY, 2, NULL, NULL) != 0)
      w->failures++;
  return NULL;
}

Test(store_temporal, timestamps_never_decrease_with_many_writers) {
  ts_worker w[4];
  memset(w, 0, sizeof w);
  for (int i = 0; i < 4; i++) {
    snprintf(w[i].stream, sizeof w[i].stream, "ts-%d", i);
    cr_assert_eq(pthread_create(&w[i].tid, NULL, ts_worker_main, &w[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(w[i].tid, NULL);
    cr_assert_eq(w[i].failures, 0);
  }
  tu_evlist l = tu_all(tu_store, NULL);
  cr_assert_eq(l.n, 7 + 400);
  for (size_t i = 1; i < l.n; i++)
    cr_assert_geq(l.ev[i].timestamp_ns, l.ev[i - 1].timestamp_ns,
                  "timestamp decreases at position %llu",
                  (unsigned long long)l.ev[i].position);
  tu_evlist_free(&l);
  tu_verify_clean(tu_store);
}

Test(store_temporal, timestamps_survive_reopen) {
  tu_evlist before = tu_all(tu_store, NULL);
  tu_reopen(NULL);
  evs_append_result r = tu_append_ok(tu_store, "t-1", EVS_EXPECT_ANY, 1, NULL);
  cr_assert_geq(r.timestamp_ns, res[5].timestamp_ns);
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  o.until_position = 7;
  tu_evlist after = tu_all(tu_store, &o);
  tu_assert_same_events(&before, &after);
  tu_evlist_free(&before);
  tu_evlist_free(&after);
  cr_assert_eq(pos_at(batch_ts[1]), 5);
}
