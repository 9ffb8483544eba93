/*
 * evs_store_verify and evs_store_stats.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/evstore.h"
#include "testutil.h"

TestSuite(store_verify, .init = tu_setup, .fini = tu_teardown, .timeout = 60);

static evs_verify_report verify(void) { return tu_verify_clean(tu_store); }

Test(store_verify, empty_store_is_consistent) {
  evs_verify_report vr = verify();
  cr_assert_eq(vr.errors, 0);
  cr_assert_eq(vr.events_checked, 0);
  cr_assert_eq(vr.streams_checked, 0);
}

Test(store_verify, healthy_store_is_consistent) {
  tu_append_ok(tu_store, "order-1", EVS_EXPECT_ANY, 30, "Placed");
  tu_append_ok(tu_store, "order-2", EVS_EXPECT_ANY, 20, "Paid");
  tu_append_ok(tu_store, "user-1", EVS_EXPECT_ANY, 10, "Registered");
  tu_append_ok(tu_store, "order-1", EVS_EXPECT_ANY, 5, "Paid");
  evs_verify_report vr = verify();
  cr_assert_eq(vr.errors, 0);
  cr_assert_eq(vr.events_checked, 65);
  cr_assert_eq(vr.streams_checked, 3);
}

typedef struct progress {
  int calls;
  int problems;
  uint64_t last_done;
  uint64_t total;
  int stop_after;
} progress;

static int progress_cb(const char *problem, uint64_t done, uint64_t total,
                       void *payload) {
  progress *p = payload;
  if (problem) {
    p->problems++;
    return 0;
  }
  p->calls++;
  if (done < p->last_done)
    p->problems += 1000; /* progress went backwards */
  p->last_done = done;
  p->total = total;
  return p->stop_after && p->calls >= p->stop_after;
}

Test(store_verify, progress_callback) {
  evs_store_options o = tu_opts(EVS_NOSYNC);
  tu_reopen(&o);
  tu_append_ok(tu_store, "p", EVS_EXPECT_ANY, 10000, NULL);
  progress p;
  memset(&p, 0, sizeof p);
  evs_verify_report vr;
  int rc = evs_store_verify(tu_store, &vr, progress_cb, &p);
  cr_assert_eq(rc, 0, "%s", evs_err_name(rc));
  cr_assert_eq(vr.errors, 0);
  cr_assert_eq(p.problems, 0);
  cr_assert_geq(p.calls, 2, "every 4096 events: %d calls", p.calls);
  cr_assert_eq(p.total, 10000);
  cr_assert_leq(p.last_done, 10000);
}

Test(store_verify, callback_can_stop_the_pass) {
  evs_store_options o = tu_opts(EVS_NOSYNC);
  tu_reopen(&o);
  tu_append_ok(tu_store, "p", EVS_EXPECT_ANY, 10000, NULL);
  progress p;
  memset(&p, 0, sizeof p);
  p.stop_after = 1;
  evs_verify_report vr;
  memset(&vr, 0, sizeof vr);
  int rc = evs_store_verify(tu_store, &vr, progress_cb, &p);
  /* The header leaves the code of a stopped pass open: 0 or a
   * cancellation code; either way the pass stopped early. */
  cr_assert(rc == 0 || rc == EVS_ECANCELED, "%s", evs_err_name(rc));
  cr_assert_eq(p.calls, 1, "called %d times after asking to stop", p.calls);
  cr_assert_lt(vr.events_checked, 10000);
}

Test(store_verify, damaged_index_is_reported) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 3, NULL);
  evs_store_close(tu_store);
  tu_store = NULL;
  /* Remove the second entry of the stream index, whatever its key layout
   * (DESIGN.md's table or a DUPSORT variant). */
  cr_assert_eq(tu_lmdb_del_nth(tu_dir, "stream_index", 1), 1,
               "the stream index has fewer than 2 entries");
  tu_store = tu_open(tu_dir, NULL);
  progress p;
  memset(&p, 0, sizeof p);
  evs_verify_report vr;
  cr_assert_eq(evs_store_verify(tu_store, &vr, progress_cb, &p), 0);
  cr_assert_gt(vr.errors, 0, "a missing index entry went unnoticed");
  cr_assert_gt(p.problems, 0, "no problem was described to the callback");
}

Test(store_verify, missing_log_record_is_reported) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 3, NULL);
  evs_store_close(tu_store);
  tu_store = NULL;
  uint8_t key[8];
  tu_be64(key, 2);
  cr_assert_eq(tu_lmdb_del(tu_dir, "events", key, 8), 1);
  tu_store = tu_open(tu_dir, NULL);
  evs_verify_report vr;
  cr_assert_eq(evs_store_verify(tu_store, &vr, NULL, NULL), 0);
  cr_assert_gt(vr.errors, 0, "an index pointing at nothing went unnoticed");
}

Test(store_verify, stats_count_what_was_written) {
  evs_stats st;
  memset(&st, 0xff, sizeof st);
  cr_assert_eq(evs_store_stats(tu_store, &st, 0), 0);
  cr_assert_eq(st.events, 0);
  cr_assert_eq(st.streams, 0);
  cr_assert_eq(st.last_position, 0);
  cr_assert_gt(st.page_size, 0);
  cr_assert_gt(st.map_size, 0);

  tu_append_ok(tu_store, "order-1", EVS_EXPECT_ANY, 3, "Placed");
  tu_append_ok(tu_store, "order-2", EVS_EXPECT_ANY, 2, "Paid");
  evs_append_result r =
      tu_append_ok(tu_store, "user-1", EVS_EXPECT_ANY, 1, "Placed");
  cr_assert_eq(evs_stream_delete(tu_store, "order-2", EVS_EXPECT_ANY, 0), 0);

  memset(&st, 0xff, sizeof st);
  cr_assert_eq(evs_store_stats(tu_store, &st, 0), 0);
  cr_assert_eq(st.events, 6);
  cr_assert_eq(st.streams, 3, "deleted streams count too");
  cr_assert_eq(st.last_position, 6);
  cr_assert_eq(st.last_timestamp_ns, r.timestamp_ns);
  cr_assert_eq(st.event_types, 2);
  cr_assert_eq(st.categories, 2);
  cr_assert_eq(st.data_bytes_raw, 0, "full = 0 leaves the totals 0");
  cr_assert_eq(st.data_bytes_stored, 0);
  cr_assert_eq(st.compressed_events, 0);
  cr_assert_geq(st.map_size, st.map_used);
  cr_assert_gt(st.map_used, 0);
  cr_assert_gt(st.file_size, 0);

  cr_assert_eq(evs_store_stats(tu_store, &st, 1), 0);
  /* Data is "<stream>#<k>": 9 bytes per order event, 8 for user-1. */
  cr_assert_eq(st.data_bytes_raw, 5 * 9 + 8);
  cr_assert_eq(st.data_bytes_stored, st.data_bytes_raw);
}
