/*
 * Subscriptions: catch-up then live with racing appends, checkpoints,
 * filters, one-stream subscriptions, caught-up signal, timeouts,
 * cancellation, a closing store, bounded batches and the callback runner.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "projutil.h"
#include "store/internal.h"
#include "testutil.h"

static evs_store *st;

static void setup(void) {
  tu_setup_dir();
  st = pu_open_store(tu_dir);
}

static void teardown(void) {
  evs_store_close(st);
  st = NULL;
  tu_rmrf(tu_dir);
  free(tu_dir);
}

TestSuite(proj_sub, .init = setup, .fini = teardown, .timeout = 120);

static evs_sub *open_sub(const evs_sub_options *o) {
  evs_sub *sub = NULL;
  int rc = evs_sub_open(&sub, st, o);
  cr_assert_eq(rc, 0, "evs_sub_open: %s: %s", evs_err_name(rc),
               evs_last_error());
  return sub;
}

/* ---- catch-up to live with appends racing -------------------------------- */

#define RACE_WRITERS 4
#define RACE_TOTAL 100000
#define RACE_PER_APPEND 25

typedef struct writer_arg {
  int id;
  int appends;
} writer_arg;

static void *writer(void *arg) {
  writer_arg *w = arg;
  char stream[32];
  evs_event_data evs[RACE_PER_APPEND];
  for (int i = 0; i < w->appends; i++) {
    snprintf(stream, sizeof stream, "race%d-%d", w->id, i % 17);
    for (int k = 0; k < RACE_PER_APPEND; k++)
      tu_event(&evs[k], "Raced", "{}", 2);
    int rc = evs_append(st, stream, EVS_EXPECT_ANY, evs, RACE_PER_APPEND, NULL);
    if (rc != 0)
      return (void *)1;
  }
  return NULL;
}

Test(proj_sub, catch_up_then_live_without_gap_or_duplicate) {
  /* A fifth of the log exists before the subscription; the rest is
   * appended by racing writers while it catches up and goes live. */
  const int pre = RACE_TOTAL / 5;
  for (int i = 0; i < pre / 100; i++)
    tu_append_ok(st, "pre-1", EVS_EXPECT_ANY, 100, "Pre");
  evs_sub_options o = EVS_SUB_OPTIONS_INIT;
  o.max_batch_events = 500;
  evs_sub *sub = open_sub(&o);

  pthread_t th[RACE_WRITERS];
  writer_arg args[RACE_WRITERS];
  int per_writer = (RACE_TOTAL - pre) / RACE_WRITERS / RACE_PER_APPEND;
  for (int i = 0; i < RACE_WRITERS; i++) {
    args[i].id = i;
    args[i].appends = per_writer;
    pthread_create(&th[i], NULL, writer, &args[i]);
  }
  uint64_t expect = 1;
  int caught_ups = 0;
  while (expect <= RACE_TOTAL) {
    evs_sub_batch b;
    int n = evs_sub_next(sub, &b, 10000);
    cr_assert(n >= 0, "evs_sub_next: %s: %s", evs_err_name(n),
              evs_last_error());
    cr_assert_leq(b.count, 500);
    for (size_t i = 0; i < b.count; i++) {
      cr_assert_eq(
          b.events[i].position, expect, "expected position %llu, got %llu",
          (unsigned long long)expect, (unsigned long long)b.events[i].position);
      expect++;
    }
    cr_assert_eq(b.checkpoint, expect - 1);
    if (b.caught_up)
      caught_ups++;
  }
  for (int i = 0; i < RACE_WRITERS; i++) {
    void *ret;
    pthread_join(th[i], &ret);
    cr_assert_null(ret, "writer %d failed", i);
  }
  /* Nothing more, and the subscription says it is at the head. */
  evs_sub_batch b;
  int n = evs_sub_next(sub, &b, 0);
  if (n == 0)
    cr_assert(b.caught_up);
  else
    cr_assert_eq(n, EVS_ETIMEDOUT);
  cr_assert_eq(evs_sub_checkpoint(sub), RACE_TOTAL);
  evs_sub_close(sub);
}

/* ---- checkpoints --------------------------------------------------------- */

static uint64_t next_positions(evs_sub *sub, uint64_t *out, size_t max) {
  size_t n = 0;
  for (;;) {
    evs_sub_batch b;
    int rc = evs_sub_next(sub, &b, 0);
    if (rc == EVS_ETIMEDOUT || (rc == 0 && b.caught_up))
      break;
    cr_assert(rc > 0, "evs_sub_next: %s", evs_err_name(rc));
    for (size_t i = 0; i < b.count && n < max; i++)
      out[n++] = b.events[i].position;
  }
  return n;
}

Test(proj_sub, resumes_after_checkpoint) {
  tu_append_ok(st, "a-1", EVS_EXPECT_ANY, 10, NULL);
  evs_sub_options o = EVS_SUB_OPTIONS_INIT;
  o.checkpoint = 4;
  evs_sub *sub = open_sub(&o);
  uint64_t pos[32];
  size_t n = next_positions(sub, pos, 32);
  cr_assert_eq(n, 6);
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(pos[i], 5 + i);
  evs_sub_close(sub);
}

Test(proj_sub, from_end_delivers_only_new_events) {
  tu_append_ok(st, "a-1", EVS_EXPECT_ANY, 5, NULL);
  evs_sub_options o = EVS_SUB_OPTIONS_INIT;
  o.start = EVS_SUB_FROM_END;
  evs_sub *sub = open_sub(&o);
  cr_assert_eq(evs_sub_checkpoint(sub), 5);
  evs_sub_batch b;
  int n = evs_sub_next(sub, &b, 0);
  cr_assert_eq(n, 0, "first call reports caught up");
  cr_assert(b.caught_up);
  pu_append1(st, "a-2", "X", "{}");
  n = evs_sub_next(sub, &b, 1000);
  cr_assert_eq(n, 1);
  cr_assert_eq(b.events[0].position, 6);
  cr_assert_eq(b.checkpoint, 6);
  cr_assert(b.caught_up);
  evs_sub_close(sub);
}

Test(proj_sub, caught_up_reported_once_per_catch_up) {
  tu_append_ok(st, "a-1", EVS_EXPECT_ANY, 3, NULL);
  evs_sub_options o = EVS_SUB_OPTIONS_INIT;
  o.max_batch_events = 2;
  evs_sub *sub = open_sub(&o);
  evs_sub_batch b;
  cr_assert_eq(evs_sub_next(sub, &b, 0), 2);
  cr_assert_not(b.caught_up);
  cr_assert_eq(evs_sub_next(sub, &b, 0), 1);
  cr_assert(b.caught_up);
  /* Already said with the last batch: no extra empty batch. */
  cr_assert_eq(evs_sub_next(sub, &b, 0), EVS_ETIMEDOUT);
  evs_sub_close(sub);
}

/* ---- filters ------------------------------------------------------------- */

static void fill_mixed(void) {
  for (int i = 0; i < 300; i++) {
    char s[32];
    snprintf(s, sizeof s, "%s-%d",
             i % 3 == 0   ? "order"
             : i % 3 == 1 ? "user"
                          : "cart",
             i % 7);
    pu_append1(st, s, i % 2 ? "Odd" : "Even", "{}");
  }
}

static void check_filter(evs_sub_options *o, evs_read_all_options *ro) {
  tu_evlist ref = tu_all(st, ro);
  evs_sub *sub = open_sub(o);
  size_t k = 0;
  for (;;) {
    evs_sub_batch b;
    int n = evs_sub_next(sub, &b, 0);
    if (n == EVS_ETIMEDOUT)
      continue;
    cr_assert(n >= 0, "%s", evs_err_name(n));
    for (size_t i = 0; i < b.count; i++, k++) {
      cr_assert_lt(k, ref.n);
      cr_assert_eq(b.events[i].position, ref.ev[k].position);
      cr_assert_eq(b.events[i].stream.len, strlen(ref.ev[k].stream));
      cr_assert_eq(memcmp(b.events[i].stream.data, ref.ev[k].stream,
                          b.events[i].stream.len),
                   0);
    }
    if (b.caught_up)
      break;
  }
  cr_assert_eq(k, ref.n);
  /* The checkpoint moved past every skipped event, to the head. */
  cr_assert_eq(evs_sub_checkpoint(sub), tu_head(st));
  evs_sub_close(sub);
  tu_evlist_free(&ref);
}

Test(proj_sub, category_filter) {
  fill_mixed();
  evs_sub_options o = EVS_SUB_OPTIONS_INIT;
  evs_read_all_options ro = EVS_READ_ALL_OPTIONS_INIT;
  o.category = ro.category = "order";
  check_filter(&o, &ro);
}

Test(proj_sub, type_prefix_and_combined_filters) {
  fill_mixed();
  evs_sub_options o = EVS_SUB_OPTIONS_INIT;
  evs_read_all_options ro = EVS_READ_ALL_OPTIONS_INIT;
  o.event_type = ro.event_type = "Odd";
  check_filter(&o, &ro);
  o.event_type = ro.event_type = NULL;
  o.stream_prefix = ro.stream_prefix = "user-3";
  check_filter(&o, &ro);
  o.stream_prefix = ro.stream_prefix = NULL;
  o.category = ro.category = "cart";
  o.event_type = ro.event_type = "Even";
  check_filter(&o, &ro);
}

Test(proj_sub, filter_matching_nothing_advances_checkpoint) {
  fill_mixed();
  evs_sub_options o = EVS_SUB_OPTIONS_INIT;
  o.category = "nosuch";
  evs_sub *sub = open_sub(&o);
  evs_sub_batch b;
  int n = evs_sub_next(sub, &b, 0);
  cr_assert_eq(n, 0);
  cr_assert(b.caught_up);
  cr_assert_eq(b.checkpoint, 300);
  /* The category appears later: delivered live. */
  uint64_t p = pu_append1(st, "nosuch-1", "X", "{}");
  n = evs_sub_next(sub, &b, 2000);
  cr_assert_eq(n, 1);
  cr_assert_eq(b.events[0].position, p);
  evs_sub_close(sub);
}

Test(proj_sub, sparse_filter_over_long_log_crosses_windows) {
  /* More positions than one read window, one matching event at the end. */
  for (int i = 0; i < 14; i++)
    tu_append_ok(st, "noise-1", EVS_EXPECT_ANY, 10000, NULL);
  uint64_t p = pu_append1(st, "rare-1", "X", "{}");
  evs_sub_options o = EVS_SUB_OPTIONS_INIT;
  o.stream_prefix = "rare";
  evs_sub *sub = open_sub(&o);
  evs_sub_batch b;
  int n;
  do
    n = evs_sub_next(sub, &b, 5000);
  while (n == 0 && !b.caught_up);
  cr_assert_eq(n, 1, "%s", evs_err_name(n));
  cr_assert_eq(b.events[0].position, p);
  evs_sub_close(sub);
}

/* ---- one stream ------------------------------------------------------------
 */

Test(proj_sub, stream_subscription_catch_up_live_and_resume) {
  uint64_t mine[6];
  size_t k = 0;
  for (int i = 0; i < 12; i++) {
    uint64_t p = pu_append1(st, i % 2 ? "acct-1" : "acct-2", "T", "{}");
    if (i % 2)
      mine[k++] = p;
  }
  evs_sub_options o = EVS_SUB_OPTIONS_INIT;
  o.stream = "acct-1";
  evs_sub *sub = open_sub(&o);
  uint64_t got[16];
  size_t n = next_positions(sub, got, 16);
  cr_assert_eq(n, 6);
  for (size_t i = 0; i < 6; i++)
    cr_assert_eq(got[i], mine[i]);
  cr_assert_eq(evs_sub_checkpoint(sub), 12);
  uint64_t p = pu_append1(st, "acct-1", "T", "{}");
  pu_append1(st, "acct-2", "T", "{}");
  evs_sub_batch b;
  cr_assert_eq(evs_sub_next(sub, &b, 1000), 1);
  cr_assert_eq(b.events[0].position, p);
  cr_assert_eq(b.events[0].version, 6);
  evs_sub_close(sub);

  /* Resume from the position of its 3rd event. */
  o.checkpoint = mine[2];
  sub = open_sub(&o);
  n = next_positions(sub, got, 16);
  cr_assert_eq(n, 4);
  cr_assert_eq(got[0], mine[3]);
  cr_assert_eq(got[3], p);
  evs_sub_close(sub);
}

Test(proj_sub, stream_subscription_before_the_stream_exists) {
  evs_sub_options o = EVS_SUB_OPTIONS_INIT;
  o.stream = "later-1";
  evs_sub *sub = open_sub(&o);
  evs_sub_batch b;
  cr_assert_eq(evs_sub_next(sub, &b, 0), 0);
  cr_assert(b.caught_up);
  pu_append1(st, "other-1", "T", "{}");
  uint64_t p = pu_append1(st, "later-1", "T", "{}");
  int n;
  do
    n = evs_sub_next(sub, &b, 2000);
  while (n == EVS_ETIMEDOUT);
  cr_assert_eq(n, 1);
  cr_assert_eq(b.events[0].position, p);
  evs_sub_close(sub);
}

typedef struct tomb_later {
  const char *stream;
  int ms;
} tomb_later;

static void *tombstone_later(void *arg) {
  tomb_later *t = arg;
  struct timespec ts = { 0, (long)t->ms * 1000000L };
  nanosleep(&ts, NULL);
  return (void *)(intptr_t)evs_stream_delete(st, t->stream, EVS_EXPECT_ANY, 1);
}

/* A tombstone writes no event and moves no head: a stream subscription
 * blocked at its head must still end at once, with or without events. */
Test(proj_sub, tombstone_ends_a_blocked_stream_subscription) {
  const char *names[2] = { "doomed-1", "never-1" };
  pu_append1(st, "doomed-1", "T", "{}");
  for (int i = 0; i < 2; i++) {
    evs_sub_options o = EVS_SUB_OPTIONS_INIT;
    o.stream = names[i];
    evs_sub *sub = open_sub(&o);
    evs_sub_batch b;
    int n;
    while ((n = evs_sub_next(sub, &b, 0)) >= 0)
      ;
    cr_assert_eq(n, EVS_ETIMEDOUT, "%s", evs_err_name(n));
    /* Another stream's tombstone wakes it, and it goes on waiting. */
    cr_assert_eq(evs_stream_delete(st, "bystander-1", EVS_EXPECT_ANY, 1), 0);
    cr_assert_eq(evs_sub_next(sub, &b, 50), EVS_ETIMEDOUT);
    tomb_later t = { names[i], 100 };
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, tombstone_later, &t), 0);
    int64_t t0 = tu_now_ns();
    n = evs_sub_next(sub, &b, 10000);
    int64_t ms = (tu_now_ns() - t0) / 1000000;
    void *ret;
    pthread_join(th, &ret);
    cr_assert_eq((intptr_t)ret, 0);
    cr_assert_eq(n, EVS_ESTREAMDELETED, "%s: got %s after %lld ms", names[i],
                 evs_err_name(n), (long long)ms);
    cr_assert_lt(ms, 5000);
    evs_sub_close(sub);
  }
  /* The same through evs_sub_run_many. */
  pu_append1(st, "doomed-2", "T", "{}");
  evs_sub_options o = EVS_SUB_OPTIONS_INIT;
  o.stream = "doomed-2";
  evs_sub *subs[1] = { open_sub(&o) };
  evs_sub_callbacks cb = EVS_SUB_CALLBACKS_INIT;
  const evs_sub_callbacks *cbs[1] = { &cb };
  int results[1] = { 0 };
  tomb_later t = { "doomed-2", 100 };
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, tombstone_later, &t), 0);
  int64_t t0 = tu_now_ns();
  int rc = evs_sub_run_many(subs, cbs, NULL, 1, results);
  int64_t ms = (tu_now_ns() - t0) / 1000000;
  pthread_join(th, NULL);
  cr_assert_eq(results[0], EVS_ESTREAMDELETED, "%s", evs_err_name(results[0]));
  cr_assert_neq(rc, 0);
  cr_assert_lt(ms, 900, "the tombstone waited for the 1 s poll: %lld ms",
               (long long)ms);
  evs_sub_close(subs[0]);
}

Test(proj_sub, bad_options) {
  evs_sub *sub = NULL;
  evs_sub_options o = EVS_SUB_OPTIONS_INIT;
  o.stream = "a-1";
  o.category = "a";
  cr_assert_eq(evs_sub_open(&sub, st, &o), EVS_EINVAL);
  o = (evs_sub_options)EVS_SUB_OPTIONS_INIT;
  o.group_size = 2;
  o.group_member = 2;
  cr_assert_eq(evs_sub_open(&sub, st, &o), EVS_EINVAL);
  o = (evs_sub_options)EVS_SUB_OPTIONS_INIT;
  o.version = 99;
  cr_assert_eq(evs_sub_open(&sub, st, &o), EVS_EINVAL);
  cr_assert_null(sub);
  evs_sub_close(NULL);
}

/* ---- waiting
 * ----------------------------------------------------------------- */

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

Test(proj_sub, idle_wait_times_out_without_cpu) {
  evs_sub *sub = open_sub(NULL);
  evs_sub_batch b;
  cr_assert_eq(evs_sub_next(sub, &b, 0), 0); /* caught up (empty log) */
  double c0 = cpu_seconds();
  int64_t t0 = tu_now_ns();
  int n = evs_sub_next(sub, &b, 400);
  int64_t ms = (tu_now_ns() - t0) / 1000000;
  double used = cpu_seconds() - c0;
  cr_assert_eq(n, EVS_ETIMEDOUT);
  cr_assert_geq(ms, 390);
  cr_assert_lt(used, 0.05, "an idle subscription used %.3f s of CPU", used);
  evs_sub_close(sub);
}

typedef struct delayed {
  int ms;
  evs_sub *sub; /* cancel this one, or append when NULL */
} delayed;

static void *delayed_action(void *arg) {
  delayed *d = arg;
  tu_sleep_ms((unsigned)d->ms);
  if (d->sub)
    evs_sub_cancel(d->sub);
  else
    pu_append1(st, "wake-1", "T", "{}");
  return NULL;
}

Test(proj_sub, commit_wakes_a_blocked_subscriber) {
  evs_sub *sub = open_sub(NULL);
  evs_sub_batch b;
  cr_assert_eq(evs_sub_next(sub, &b, 0), 0);
  delayed d = { 100, NULL };
  pthread_t th;
  pthread_create(&th, NULL, delayed_action, &d);
  int64_t t0 = tu_now_ns();
  int n = evs_sub_next(sub, &b, -1);
  int64_t ms = (tu_now_ns() - t0) / 1000000;
  pthread_join(th, NULL);
  cr_assert_eq(n, 1);
  cr_assert_lt(ms, 2000);
  evs_sub_close(sub);
}

Test(proj_sub, cancel_from_another_thread) {
  evs_sub *sub = open_sub(NULL);
  evs_sub_batch b;
  cr_assert_eq(evs_sub_next(sub, &b, 0), 0);
  delayed d = { 100, sub };
  pthread_t th;
  pthread_create(&th, NULL, delayed_action, &d);
  int n = evs_sub_next(sub, &b, -1);
  pthread_join(th, NULL);
  cr_assert_eq(n, EVS_ECANCELED);
  cr_assert_eq(evs_sub_next(sub, &b, 0), EVS_ECANCELED);
  evs_sub_close(sub);
}

typedef struct edge_state {
  int caught; /* atomic: on_caught_up calls */
  int events; /* on_event calls */
} edge_state;

static int edge_on_event(const evs_event *ev, void *payload) {
  (void)ev;
  ((edge_state *)payload)->events++;
  return 0;
}

static int edge_on_caught_up(uint64_t cp, void *payload) {
  (void)cp;
  __atomic_add_fetch(&((edge_state *)payload)->caught, 1, __ATOMIC_RELEASE);
  return 0;
}

/* Waits (up to 10 s) for a run to reach the head, then a little more for
 * it to block in its wait. */
static void wait_blocked(edge_state *e) {
  for (int i = 0; i < 2000 && !__atomic_load_n(&e->caught, __ATOMIC_ACQUIRE);
       i++)
    tu_sleep_ms(5);
  cr_assert_gt(__atomic_load_n(&e->caught, __ATOMIC_ACQUIRE), 0,
               "the run never reached the head");
  tu_sleep_ms(50);
}

Test(proj_sub, cancel_ends_a_blocked_callback_runner) {
  tu_append_ok(st, "cancel-1", EVS_EXPECT_ANY, 3, NULL);
  evs_sub *subs[1] = { open_sub(NULL) };
  edge_state e = { 0, 0 };
  evs_sub_callbacks cb = EVS_SUB_CALLBACKS_INIT;
  cb.on_event = edge_on_event;
  cb.on_caught_up = edge_on_caught_up;
  const evs_sub_callbacks *cbs[1] = { &cb };
  void *payloads[1] = { &e };
  pu_bg_run run = {
    .kind = PU_BG_RUN, .subs = subs, .n = 1, .cbs = cbs, .payloads = payloads
  };
  pu_bg_start(&run);
  wait_blocked(&e);
  evs_sub_cancel(subs[0]);
  cr_assert(pu_bg_join(&run, 10000), "evs_sub_run did not end");
  cr_assert_eq(run.rc, EVS_ECANCELED, "%s", evs_err_name(run.rc));
  cr_assert_eq(e.events, 3);
  evs_sub_batch b;
  cr_assert_eq(evs_sub_next(subs[0], &b, 0), EVS_ECANCELED);
  cr_assert_eq(evs_sub_run(subs[0], &cb, &e), EVS_ECANCELED);
  evs_sub_close(subs[0]);
}

/*
 * A store that starts closing ends every subscription blocked at its head
 * with EVS_ECLOSED: evs_sub_next(), evs_sub_run() and each subscription of
 * evs_sub_run_many(), which then returns EVS_ECLOSED itself.
 *
 * evs_store_close() may be called only once every other call on the store
 * has returned (store.h), and it frees the handle: a test cannot close the
 * store under a blocked run. It drives the first half of the close instead
 * (evs__writer_shutdown: the store is marked closing and its waiters are
 * woken), and closes the store once the runs have returned.
 */
Test(proj_sub, closing_store_ends_blocked_runs) {
  tu_append_ok(st, "closing-1", EVS_EXPECT_ANY, 3, NULL);
  evs_sub_options one = EVS_SUB_OPTIONS_INIT;
  one.stream = "closing-1";

  /* evs_sub_next(-1), from the head. */
  evs_sub *psub[1] = { open_sub(NULL) };
  evs_sub_batch b;
  while (evs_sub_next(psub[0], &b, 0) >= 0)
    ;
  pu_bg_run pull = { .kind = PU_BG_NEXT, .subs = psub, .n = 1 };

  edge_state e[3] = { { 0, 0 }, { 0, 0 }, { 0, 0 } };
  evs_sub_callbacks cb = EVS_SUB_CALLBACKS_INIT;
  cb.on_event = edge_on_event;
  cb.on_caught_up = edge_on_caught_up;

  /* evs_sub_run: $all. */
  evs_sub *rsub[1] = { open_sub(NULL) };
  const evs_sub_callbacks *rcbs[1] = { &cb };
  void *rpay[1] = { &e[0] };
  pu_bg_run run = {
    .kind = PU_BG_RUN, .subs = rsub, .n = 1, .cbs = rcbs, .payloads = rpay
  };

  /* evs_sub_run_many: $all and one stream. */
  evs_sub *msubs[2] = { open_sub(NULL), open_sub(&one) };
  const evs_sub_callbacks *mcbs[2] = { &cb, &cb };
  void *mpay[2] = { &e[1], &e[2] };
  pu_bg_run many = {
    .kind = PU_BG_MANY, .subs = msubs, .n = 2, .cbs = mcbs, .payloads = mpay
  };

  pu_bg_start(&pull);
  pu_bg_start(&run);
  pu_bg_start(&many);
  for (int i = 0; i < 3; i++)
    wait_blocked(&e[i]);

  evs__writer_shutdown(st);

  cr_assert(pu_bg_join(&pull, 10000), "evs_sub_next did not return");
  cr_assert_eq(pull.rc, EVS_ECLOSED, "evs_sub_next: %s", evs_err_name(pull.rc));
  cr_assert(pu_bg_join(&run, 10000), "evs_sub_run did not return");
  cr_assert_eq(run.rc, EVS_ECLOSED, "evs_sub_run: %s", evs_err_name(run.rc));
  cr_assert(pu_bg_join(&many, 10000), "evs_sub_run_many did not return");
  cr_assert_eq(many.rc, EVS_ECLOSED, "evs_sub_run_many: %s",
               evs_err_name(many.rc));
  for (int i = 0; i < 2; i++)
    cr_assert_eq(many.results[i], EVS_ECLOSED, "subscription %d: %s", i,
                 evs_err_name(many.results[i]));
  for (int i = 0; i < 3; i++)
    cr_assert_eq(e[i].events, 3, "run %d", i);
  /* A closing store takes no more appends. */
  cr_assert_eq(tu_append_n(st, "closing-1", EVS_EXPECT_ANY, 1, NULL, NULL),
               EVS_ECLOSED);

  evs_sub_close(psub[0]);
  evs_sub_close(rsub[0]);
  evs_sub_close(msubs[0]);
  evs_sub_close(msubs[1]);
}

/* A live subscription keeps its read (and its cache of streams) from one
 * batch to the next: a stream's metadata changed in between must still
 * decide what the next batch shows. */
Test(proj_sub, live_batches_follow_metadata_changes) {
  uint64_t a0 = pu_append1(st, "cache-a", "X", "{}");
  evs_sub *sub = open_sub(NULL);
  evs_sub_batch b;
  cr_assert_eq(evs_sub_next(sub, &b, 2000), 1);
  cr_assert_eq(b.events[0].position, a0);
  /* Hide every version of cache-a below 5, then append its version 1
   * (hidden) and an event of another stream (shown). */
  evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
  md.truncate_before = 5;
  cr_assert_eq(evs_stream_set_metadata(st, "cache-a", &md), 0);
  pu_append1(st, "cache-a", "X", "{}");
  uint64_t b0 = pu_append1(st, "cache-b", "X", "{}");
  int n = evs_sub_next(sub, &b, 2000);
  cr_assert_eq(n, 1, "%d events", n);
  cr_assert_eq(b.events[0].position, b0);
  cr_assert_eq(b.checkpoint, b0);
  /* The limit lifted: cache-a's next version shows again. */
  md.truncate_before = -1;
  cr_assert_eq(evs_stream_set_metadata(st, "cache-a", &md), 0);
  uint64_t a2 = pu_append1(st, "cache-a", "X", "{}");
  uint64_t c0 = pu_append1(st, "cache-c", "X", "{}");
  n = evs_sub_next(sub, &b, 2000);
  cr_assert_eq(n, 2, "%d events", n);
  cr_assert_eq(b.events[0].position, a2);
  cr_assert_eq(b.events[0].version, 2);
  cr_assert_eq(b.events[1].position, c0);
  evs_sub_close(sub);
}

#define WAITERS 24

typedef struct waiter_arg {
  evs_sub *sub;
  int n;
  uint64_t pos;
} waiter_arg;

static void *waiter_main(void *arg) {
  waiter_arg *w = arg;
  evs_sub_batch b;
  w->n = evs_sub_next(w->sub, &b, 10000);
  w->pos = w->n == 1 ? b.events[0].position : 0;
  return NULL;
}

/* One commit wakes every subscriber blocked at the head. */
Test(proj_sub, one_commit_wakes_every_blocked_subscriber) {
  waiter_arg w[WAITERS];
  pthread_t th[WAITERS];
  evs_sub_batch b;
  for (int i = 0; i < WAITERS; i++) {
    w[i].sub = open_sub(NULL);
    cr_assert_eq(evs_sub_next(w[i].sub, &b, 0), 0);
    cr_assert_eq(pthread_create(&th[i], NULL, waiter_main, &w[i]), 0);
  }
  struct timespec ts = { 0, 50 * 1000000L };
  nanosleep(&ts, NULL); /* most of them asleep by now */
  int64_t t0 = tu_now_ns();
  uint64_t p = pu_append1(st, "wake-1", "X", "{}");
  for (int i = 0; i < WAITERS; i++)
    pthread_join(th[i], NULL);
  int64_t ms = (tu_now_ns() - t0) / 1000000;
  for (int i = 0; i < WAITERS; i++) {
    cr_assert_eq(w[i].n, 1, "subscriber %d: %d", i, w[i].n);
    cr_assert_eq(w[i].pos, p);
    evs_sub_close(w[i].sub);
  }
  cr_assert_lt(ms, 5000);
}

/* ---- bounded batches --------------------------------------------------------
 */

Test(proj_sub, batches_are_bounded_in_events_and_bytes) {
  static char big[20000];
  memset(big, 'x', sizeof big);
  big[sizeof big - 1] = '\0';
  for (int i = 0; i < 20; i++)
    pu_append1(st, "big-1", "Big", big);
  evs_sub_options o = EVS_SUB_OPTIONS_INIT;
  o.max_batch_bytes = 50000;
  o.max_batch_events = 1000;
  evs_sub *sub = open_sub(&o);
  size_t total = 0;
  for (;;) {
    evs_sub_batch b;
    int n = evs_sub_next(sub, &b, 0);
    if (n <= 0)
      break;
    size_t bytes = 0;
    for (size_t i = 0; i < b.count; i++) {
      cr_assert_eq(b.events[i].data.len, sizeof big - 1);
      cr_assert_eq(((const char *)b.events[i].data.data)[100], 'x');
      bytes += b.events[i].data.len;
    }
    /* Reading stops once the limit is reached: at most one event over. */
    cr_assert_lt(bytes, 50000 + sizeof big);
    total += b.count;
    if (b.caught_up)
      break;
  }
  cr_assert_eq(total, 20);
  evs_sub_close(sub);

  /* One event larger than the byte limit still comes through, alone. */
  o.max_batch_bytes = 1000;
  sub = open_sub(&o);
  evs_sub_batch b;
  cr_assert_eq(evs_sub_next(sub, &b, 0), 1);
  cr_assert_eq(b.events[0].data.len, sizeof big - 1);
  evs_sub_close(sub);
}

/* ---- callback runner
 * --------------------------------------------------------- */

typedef struct run_state {
  uint64_t last;
  int events, caught, batches;
} run_state;

static int on_event(const evs_event *ev, void *payload) {
  run_state *s = payload;
  cr_assert_eq(ev->position, s->last + 1);
  s->last = ev->position;
  s->events++;
  return ev->position == 31 ? 7 : 0; /* the live event stops the run */
}

static int on_batch_end(uint64_t cp, int caught_up, void *payload) {
  run_state *s = payload;
  (void)caught_up;
  cr_assert_geq(cp, s->last);
  s->batches++;
  return 0;
}

static int on_caught_up(uint64_t cp, void *payload) {
  run_state *s = payload;
  s->caught++;
  cr_assert_eq(cp, 30);
  pu_append1(st, "more-1", "T", "{}");
  return 0;
}

Test(proj_sub, callback_runner) {
  tu_append_ok(st, "run-1", EVS_EXPECT_ANY, 30, NULL);
  evs_sub_options o = EVS_SUB_OPTIONS_INIT;
  o.max_batch_events = 8;
  evs_sub *sub = open_sub(&o);
  run_state s = { 0, 0, 0, 0 };
  evs_sub_callbacks cbs = EVS_SUB_CALLBACKS_INIT;
  cbs.on_event = on_event;
  cbs.on_batch_end = on_batch_end;
  cbs.on_caught_up = on_caught_up;
  int rc = evs_sub_run(sub, &cbs, &s);
  cr_assert_eq(rc, EVS_ESTOPPED);
  cr_assert_eq(s.events, 31);
  cr_assert_eq(s.caught, 1);
  cr_assert_eq(s.batches, 4); /* 8+8+8+6; the run stops inside the 5th */
  evs_sub_close(sub);
}

/* ---- many subscriptions on one thread ------------------------------------ */

typedef struct many_state {
  const char *want_prefix; /* NULL = every stream */
  uint64_t last;
  int events, stop_after, caught;
  int bad_order, bad_stream;
} many_state;

static int many_on_event(const evs_event *ev, void *payload) {
  many_state *m = payload;
  if (ev->position <= m->last)
    m->bad_order++;
  m->last = ev->position;
  if (m->want_prefix &&
      (ev->stream.len < strlen(m->want_prefix) ||
       memcmp(ev->stream.data, m->want_prefix, strlen(m->want_prefix)) != 0))
    m->bad_stream++;
  return ++m->events == m->stop_after ? 1 : 0;
}

static int many_on_caught_up(uint64_t cp, void *payload) {
  (void)cp;
  ((many_state *)payload)->caught++;
  return 0;
}

typedef struct live_writer_arg {
  int n;
} live_writer_arg;

static void *many_writer(void *arg) {
  live_writer_arg *w = arg;
  for (int i = 0; i < w->n; i++) {
    char stream[32];
    snprintf(stream, sizeof stream, "%s-%d", i % 2 ? "cart" : "order", i % 5);
    pu_append1(st, stream, "Live", "{}");
    if (i % 10 == 0)
      tu_sleep_ms(2);
  }
  return NULL;
}

Test(proj_sub, run_many_delivers_each_subscription_its_events) {
  /* 40 events stored before (catch-up), 60 appended while running. */
  for (int i = 0; i < 40; i++) {
    char stream[32];
    snprintf(stream, sizeof stream, "%s-%d", i % 2 ? "cart" : "order", i % 5);
    pu_append1(st, stream, "Old", "{}");
  }
  evs_sub_options all = EVS_SUB_OPTIONS_INIT;
  evs_sub_options orders = EVS_SUB_OPTIONS_INIT;
  orders.category = "order";
  evs_sub_options one = EVS_SUB_OPTIONS_INIT;
  one.stream = "cart-1";
  evs_sub_options from_end = EVS_SUB_OPTIONS_INIT;
  from_end.start = EVS_SUB_FROM_END;
  evs_sub *subs[4] = { open_sub(&all), open_sub(&orders), open_sub(&one),
                       open_sub(&from_end) };
  /* Totals over the 100 events: cart-1 gets i % 10 == 1 (10 of them);
   * from the end: the 60 live ones. */
  many_state m[4] = {
    { NULL, 0, 0, 100, 0, 0, 0 },
    { "order-", 0, 0, 50, 0, 0, 0 },
    { "cart-1", 0, 0, 10, 0, 0, 0 },
    { NULL, 40, 0, 60, 0, 0, 0 },
  };
  evs_sub_callbacks cb = EVS_SUB_CALLBACKS_INIT;
  cb.on_event = many_on_event;
  cb.on_caught_up = many_on_caught_up;
  const evs_sub_callbacks *cbs[4] = { &cb, &cb, &cb, &cb };
  void *payloads[4] = { &m[0], &m[1], &m[2], &m[3] };
  int results[4] = { 1, 1, 1, 1 };
  live_writer_arg w = { 60 };
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, many_writer, &w), 0);
  int rc = evs_sub_run_many(subs, cbs, payloads, 4, results);
  pthread_join(th, NULL);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  for (int i = 0; i < 4; i++) {
    cr_assert_eq(results[i], EVS_ESTOPPED, "subscription %d: %s", i,
                 evs_err_name(results[i]));
    cr_assert_eq(m[i].events, m[i].stop_after, "subscription %d", i);
    cr_assert_eq(m[i].bad_order, 0, "subscription %d", i);
    cr_assert_eq(m[i].bad_stream, 0, "subscription %d", i);
    cr_assert_leq(m[i].caught, 1, "subscription %d", i);
    evs_sub_close(subs[i]);
  }
  cr_assert_eq(m[0].last, 100);
}

static void *cancel_all_later(void *arg) {
  evs_sub **subs = arg;
  tu_sleep_ms(100);
  pu_append1(st, "late-1", "Late", "{}");
  tu_sleep_ms(50);
  evs_sub_cancel(subs[0]);
  tu_sleep_ms(50);
  evs_sub_cancel(subs[1]);
  return NULL;
}

Test(proj_sub, run_many_cancel_ends_each_subscription) {
  evs_sub *subs[2] = { open_sub(NULL), open_sub(NULL) };
  many_state m[2] = { { NULL, 0, 0, 0, 0, 0, 0 }, { NULL, 0, 0, 0, 0, 0, 0 } };
  evs_sub_callbacks cb = EVS_SUB_CALLBACKS_INIT;
  cb.on_event = many_on_event;
  const evs_sub_callbacks *cbs[2] = { &cb, &cb };
  void *payloads[2] = { &m[0], &m[1] };
  int results[2] = { 0, 0 };
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, cancel_all_later, subs), 0);
  int64_t t0 = tu_now_ns();
  int rc = evs_sub_run_many(subs, cbs, payloads, 2, results);
  int64_t ms = (tu_now_ns() - t0) / 1000000;
  pthread_join(th, NULL);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  cr_assert_eq(results[0], EVS_ECANCELED);
  cr_assert_eq(results[1], EVS_ECANCELED);
  /* The live event reached both before they were canceled, at once. */
  cr_assert_eq(m[0].events, 1);
  cr_assert_eq(m[1].events, 1);
  cr_assert_lt(ms, 900, "a cancel waited for the 1 s poll: %lld ms",
               (long long)ms);
  evs_sub_close(subs[0]);
  evs_sub_close(subs[1]);
}

Test(proj_sub, run_many_bad_arguments) {
  evs_sub *a = open_sub(NULL);
  char dir2[4200];
  snprintf(dir2, sizeof dir2, "%s/other", tu_dir);
  evs_store *st2 = pu_open_store(dir2);
  evs_sub *b = NULL;
  cr_assert_eq(evs_sub_open(&b, st2, NULL), 0);
  evs_sub_callbacks cb = EVS_SUB_CALLBACKS_INIT;
  evs_sub_callbacks bad = cb;
  bad.version = 99;
  const evs_sub_callbacks *cbs[2] = { &cb, &cb };
  const evs_sub_callbacks *badcbs[2] = { &cb, &bad };
  evs_sub *two[2] = { a, b };
  evs_sub *same[2] = { a, a };
  cr_assert_eq(evs_sub_run_many(NULL, cbs, NULL, 1, NULL), EVS_EINVAL);
  cr_assert_eq(evs_sub_run_many(two, NULL, NULL, 1, NULL), EVS_EINVAL);
  cr_assert_eq(evs_sub_run_many(two, cbs, NULL, 0, NULL), EVS_EINVAL);
  cr_assert_eq(evs_sub_run_many(two, cbs, NULL, 2, NULL), EVS_EINVAL);
  cr_assert(strstr(evs_last_error(), "another store") != NULL);
  cr_assert_eq(evs_sub_run_many(same, badcbs, NULL, 2, NULL), EVS_EINVAL);
  evs_sub_close(a);
  evs_sub_close(b);
  evs_store_close(st2);
}
