/*
 * evstore-bench — scenarios 5 and 6: subscriptions and projections.
 *
 *  5. subscription/catch-up: a $all subscription from checkpoint 0 over
 *     the read store (1.1M events), until it reports being caught up.
 *     Reference: the $all scan (read/all) of the same run.
 *     subscription/live-1sub, live-100sub: 1 or 100 subscriptions opened at
 *     the head; one writer appends single events durably (sync), one every
 *     millisecond; latency from the commit (the store's commit listener,
 *     after the flush) to the subscriber's delivery, with the old figure
 *     (append call to delivery, flush included) as a sub-line and the
 *     writer's own append latency beside it. Each subscriber has its own
 *     thread (evs_sub_next); live-100sub-1thread runs the 100 on one
 *     thread with evs_sub_run_many. Before the timed window, one event is
 *     appended to each of the 1,000 streams and delivered (a warm-up, left
 *     out of the figures: it fills the subscriptions' stream-name caches).
 *  6. projection/stream-state-rebuild: the built-in "stream-state"
 *     projection over the read store: the first build, then blue/green
 *     rebuilds (evs_runner_rebuild + evs_runner_catch_up), timed.
 *     Reference: subscription catch-up.
 *
 * Both need the projections module (include/evstore/subscription.h and
 * projection.h, src/projections/); bench/CMakeLists.txt defines
 * EVS_BENCH_HAVE_SUB / EVS_BENCH_HAVE_PROJ when it is there, and the
 * scenarios report "skipped" otherwise.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "store/internal.h"

#if EVS_BENCH_HAVE_SUB

static double sub_scan_ref(bench_ctx *c) {
  const bench_result *r =
      bench_find(c, "read/all", "events/s", "raw-lmdb-cursor");
  return r ? r->value : NAN;
}

static void sub_catch_up(bench_ctx *c) {
  const char *scen = "subscription/catch-up";
  int rc = bench_read_store(c);
  if (rc) {
    bench_fail(c, scen, "read store: %s", evs_strerror(rc));
    return;
  }
  evs_store *s = NULL;
  if ((rc = evs_store_open(&s, c->read_store, NULL))) {
    bench_fail(c, scen, "open: %s", evs_strerror(rc));
    return;
  }
  bench_meas m = { 0 };
  for (int r = 0; r < c->opt.reps; r++) {
    evs_sub *sub = NULL;
    evs_sub_options o = EVS_SUB_OPTIONS_INIT;
    uint64_t n = 0, bytes = 0;
    double t0 = bench_now();
    rc = evs_sub_open(&sub, s, &o);
    while (rc == 0) {
      evs_sub_batch b;
      int k = evs_sub_next(sub, &b, 1000);
      if (k < 0) {
        rc = k;
        break;
      }
      for (size_t i = 0; i < b.count; i++)
        bytes += b.events[i].data.len;
      n += b.count;
      if (b.caught_up)
        break;
    }
    double secs = bench_now() - t0;
    evs_sub_close(sub);
    if (rc || n != c->read_store_events) {
      bench_fail(c, scen, "catch-up: %s (%llu of %llu events)",
                 rc ? evs_strerror(rc) : "wrong count", (unsigned long long)n,
                 (unsigned long long)c->read_store_events);
      evs_store_close(s);
      return;
    }
    bench_meas_add(&m, (double)n, (double)bytes, 1, secs, NULL);
  }
  evs_store_close(s);
  char note[128];
  snprintf(note, sizeof note,
           "$all from checkpoint 0 to caught-up, %llu "
           "events, default batches",
           (unsigned long long)c->read_store_events);
  bench_meas ref = { 0 };
  double scan = sub_scan_ref(c);
  if (!isnan(scan)) {
    ref.reps = 1;
    ref.eps[0] = scan;
  }
  bench_emit_meas(c, scen, &m, isnan(scan) ? NULL : "$all-scan",
                  isnan(scan) ? NULL : &ref, note);
}

/* ---- live latency ----------------------------------------------------------
 *
 * The latency is measured from the commit: the store calls its commit
 * listeners (src/store/internal.h, the hook evstored uses to wake its
 * subscriptions) right after the LMDB commit returned, that is after the
 * flush, and before any waiting subscriber can run. The harness registers
 * a listener that stamps the committed positions with the monotonic clock;
 * each subscriber stamps every event it receives when evs_sub_next()
 * returns its batch. Latency = delivery stamp - commit stamp of the same
 * position, computed after the run (a subscriber that happens to be
 * reading may see a committed event a few microseconds before the listener
 * runs: such a sample is kept, slightly negative). The old figure, append
 * call to delivery (which includes the flush), is kept as a sub-line.
 */

typedef struct live_shared {
  evs_store *s;
  int writer_done; /* atomics */
  long written;
  size_t cap;          /* positions 1..cap-1 are stamped */
  uint64_t *commit_ns; /* by position: the listener's stamp */
  uint64_t *sent_ns;   /* by position: before the evs_append call */
  uint64_t stamped;    /* the last position stamped (listener only) */
} live_shared;

typedef struct live_sub {
  live_shared *sh;
  evs_sub *sub;
  pthread_t tid;
  long received;
  int err;
  uint64_t *deliv_ns; /* by position */
} live_sub;

/* Called by the store's writer with its commit mutex held: only stamps. */
static void live_on_commit(uint64_t head, void *payload) {
  live_shared *sh = payload;
  uint64_t now = bench_now_ns();
  for (uint64_t p = sh->stamped + 1; p <= head && p < sh->cap; p++)
    sh->commit_ns[p] = now;
  if (head > sh->stamped)
    sh->stamped = head;
}

static void *live_main(void *arg) {
  live_sub *ls = arg;
  for (;;) {
    evs_sub_batch b;
    int k = evs_sub_next(ls->sub, &b, 200);
    uint64_t now = bench_now_ns();
    if (k == EVS_ECANCELED)
      break;
    if (k < 0 && k != EVS_ETIMEDOUT) {
      ls->err = k;
      break;
    }
    for (int i = 0; i < k; i++) {
      uint64_t pos = b.events[i].position;
      if (pos < ls->sh->cap)
        ls->deliv_ns[pos] = now;
      __atomic_fetch_add(&ls->received, 1, __ATOMIC_RELEASE);
    }
    if (__atomic_load_n(&ls->sh->writer_done, __ATOMIC_ACQUIRE) &&
        __atomic_load_n(&ls->received, __ATOMIC_RELAXED) >=
            __atomic_load_n(&ls->sh->written, __ATOMIC_ACQUIRE))
      break;
  }
  return NULL;
}

/* The grouped mode: every subscription on one thread (evs_sub_run_many). */
static int live_on_event(const evs_event *ev, void *payload) {
  live_sub *ls = payload;
  uint64_t now = bench_now_ns();
  if (ev->position < ls->sh->cap)
    ls->deliv_ns[ev->position] = now;
  __atomic_fetch_add(&ls->received, 1, __ATOMIC_RELEASE);
  return 0;
}

typedef struct live_group {
  live_sub *subs;
  int n;
  int err;
  pthread_t tid;
} live_group;

static void *live_group_main(void *arg) {
  live_group *g = arg;
  evs_sub **subs = calloc((size_t)g->n, sizeof *subs);
  const evs_sub_callbacks **cbs = calloc((size_t)g->n, sizeof *cbs);
  void **payloads = calloc((size_t)g->n, sizeof *payloads);
  evs_sub_callbacks cb = EVS_SUB_CALLBACKS_INIT;
  cb.on_event = live_on_event;
  if (subs == NULL || cbs == NULL || payloads == NULL) {
    g->err = EVS_ENOMEM;
  } else {
    for (int i = 0; i < g->n; i++) {
      subs[i] = g->subs[i].sub;
      cbs[i] = &cb;
      payloads[i] = &g->subs[i];
    }
    g->err = evs_sub_run_many(subs, cbs, payloads, (size_t)g->n, NULL);
  }
  free(subs);
  free(cbs);
  free(payloads);
  return NULL;
}

static void sub_live(bench_ctx *c, int nsubs, int grouped) {
  char scen[64], dir[4200];
  snprintf(scen, sizeof scen, "subscription/live-%dsub%s", nsubs,
           grouped ? "-1thread" : "");
  double secs = c->opt.quick ? 0.2 : 2.0;
  bench_meas m = { 0 }, app = { 0 }, call = { 0 };
  uint8_t data[BENCH_DATA_SIZE];
  uint64_t prng = 42;
  bench_json_payload(data, sizeof data, &prng);
  /* Warm-up: one event per stream, before the timed window (below). */
  const long warm = BENCH_NSTREAMS;
  size_t cap = (size_t)(secs * 1000) + 16 + (size_t)warm;
  for (int r = 0; r < c->opt.reps; r++) {
    live_shared sh;
    memset(&sh, 0, sizeof sh);
    sh.cap = cap;
    sh.commit_ns = calloc(cap, sizeof *sh.commit_ns);
    sh.sent_ns = calloc(cap, sizeof *sh.sent_ns);
    evs__commit_listener lis;
    memset(&lis, 0, sizeof lis);
    lis.fn = live_on_commit;
    lis.payload = &sh;
    int rc = sh.commit_ns && sh.sent_ns ? 0 : EVS_ENOMEM;
    if (rc == 0)
      rc = bench_mkdir(c, "live", dir, sizeof dir);
    if (rc == 0)
      rc = evs_store_open(&sh.s, dir, NULL);
    if (rc == 0)
      rc = evs__add_commit_listener(sh.s, &lis);
    if (rc) {
      bench_fail(c, scen, "open: %s", evs_strerror(rc));
      evs_store_close(sh.s);
      free(sh.commit_ns);
      free(sh.sent_ns);
      return;
    }
    live_sub *subs = calloc((size_t)nsubs, sizeof *subs);
    live_group grp = { subs, 0, 0, 0 };
    int started = 0, group_started = 0;
    for (int i = 0; subs && i < nsubs; i++) {
      evs_sub_options o = EVS_SUB_OPTIONS_INIT;
      o.start = EVS_SUB_FROM_END;
      subs[i].sh = &sh;
      subs[i].deliv_ns = calloc(cap, sizeof *subs[i].deliv_ns);
      if (subs[i].deliv_ns == NULL)
        break;
      if (evs_sub_open(&subs[i].sub, sh.s, &o)) {
        free(subs[i].deliv_ns);
        break;
      }
      if (!grouped && pthread_create(&subs[i].tid, NULL, live_main, &subs[i])) {
        evs_sub_close(subs[i].sub);
        free(subs[i].deliv_ns);
        break;
      }
      started++;
    }
    if (grouped && started == nsubs) {
      grp.n = started;
      if (pthread_create(&grp.tid, NULL, live_group_main, &grp) == 0)
        group_started = 1;
      else
        started = 0; /* nothing runs them: fail below */
    }
    /* Warm-up: one event to each stream in one commit, delivered to every
     * subscriber before the timed window and left out of the figures.
     * A subscription's reads keep a cache of stream names, which grows
     * as new streams come by; on this class of virtual machine a first
     * touch of a fresh page costs about 13 us, so filling 100 caches
     * would otherwise show in the first second's tail as a one-time
     * cost, not the steady state this figure is about. */
    int werr = 0;
    char name[32];
    if (started == nsubs) {
      evs_append_part *parts = calloc((size_t)warm, sizeof *parts);
      evs_event_data *evs = calloc((size_t)warm, sizeof *evs);
      char(*names)[32] = calloc((size_t)warm, sizeof *names);
      werr = parts && evs && names ? 0 : EVS_ENOMEM;
      for (long i = 0; werr == 0 && i < warm; i++) {
        snprintf(names[i], sizeof names[i], "order-%ld", i);
        evs[i].type = BENCH_TYPE;
        evs[i].data = data;
        evs[i].data_len = sizeof data;
        parts[i].stream = names[i];
        parts[i].expected = EVS_EXPECT_ANY;
        parts[i].events = &evs[i];
        parts[i].count = 1;
      }
      if (werr == 0)
        werr = evs_append_multi(sh.s, parts, (size_t)warm, NULL);
      free(parts);
      free(evs);
      free(names);
      double until = bench_now() + 10.0;
      for (int i = 0; werr == 0 && i < started; i++)
        while (__atomic_load_n(&subs[i].received, __ATOMIC_ACQUIRE) < warm &&
               bench_now() < until) {
          struct timespec ts = { 0, 1000000 };
          nanosleep(&ts, NULL);
        }
      for (int i = 0; i < started; i++)
        memset(subs[i].deliv_ns, 0, ((size_t)warm + 1) * sizeof(uint64_t));
    }
    /* The writer: one durable append per millisecond. */
    bench_lat alat = { 0 };
    double start = bench_now(), next = start;
    long written = 0;
    while (werr == 0 && started == nsubs && bench_now() < start + secs &&
           (size_t)(written + warm) + 2 < cap) {
      double now = bench_now();
      if (now < next) {
        struct timespec ts = { 0, (long)((next - now) * 1e9) };
        nanosleep(&ts, NULL);
      }
      next += 0.001;
      evs_event_data ed;
      memset(&ed, 0, sizeof ed);
      ed.type = BENCH_TYPE;
      ed.data = data;
      ed.data_len = sizeof data;
      snprintf(name, sizeof name, "order-%ld", written % BENCH_NSTREAMS);
      evs_append_result res;
      uint64_t t0 = bench_now_ns();
      werr = evs_append(sh.s, name, EVS_EXPECT_ANY, &ed, 1, &res);
      bench_lat_add(&alat, (double)(bench_now_ns() - t0) / 1e3);
      if (werr)
        break;
      if (res.first_position < cap)
        sh.sent_ns[res.first_position] = t0;
      written++;
    }
    /* Counted from here on with the warm-up's events. */
    if (werr == 0)
      written += warm;
    __atomic_store_n(&sh.written, written, __ATOMIC_RELEASE);
    __atomic_store_n(&sh.writer_done, 1, __ATOMIC_RELEASE);
    /* Give the subscribers a moment to drain, then stop them. */
    double until = bench_now() + 5.0;
    for (int i = 0; i < started; i++) {
      while (__atomic_load_n(&subs[i].received, __ATOMIC_RELAXED) < written &&
             bench_now() < until) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
      }
    }
    for (int i = 0; i < started; i++)
      evs_sub_cancel(subs[i].sub);
    bench_lat lat = { 0 }, clat = { 0 };
    long got = 0;
    int err = werr ? werr : started < nsubs ? EVS_ENOMEM : 0;
    if (group_started) {
      pthread_join(grp.tid, NULL);
      if (grp.err && !err)
        err = grp.err;
    }
    for (int i = 0; i < started; i++) {
      if (!grouped)
        pthread_join(subs[i].tid, NULL);
      evs_sub_close(subs[i].sub);
      got += subs[i].received;
      if (subs[i].err)
        err = subs[i].err;
      bench_lat_stamps(&lat, subs[i].deliv_ns, sh.commit_ns, cap);
      bench_lat_stamps(&clat, subs[i].deliv_ns, sh.sent_ns, cap);
      free(subs[i].deliv_ns);
    }
    free(subs);
    evs__remove_commit_listener(sh.s, &lis);
    evs_store_close(sh.s);
    free(sh.commit_ns);
    free(sh.sent_ns);
    bench_rmtree(c, dir);
    if (err || got != written * nsubs) {
      bench_fail(c, scen, "%s: %ld of %ld deliveries",
                 err ? evs_strerror(err) : "events missing", got,
                 written * nsubs);
      bench_lat_free(&lat);
      bench_lat_free(&clat);
      bench_lat_free(&alat);
      return;
    }
    /* The rates count the timed window only. */
    double tgot = (double)(got - warm * nsubs),
           twritten = (double)(written - warm);
    bench_meas_add(&m, tgot, 0, tgot, secs, &lat);
    bench_meas_add(&call, tgot, 0, tgot, secs, &clat);
    bench_meas_add(&app, twritten, 0, twritten, secs, &alat);
    bench_lat_free(&lat);
    bench_lat_free(&clat);
    bench_lat_free(&alat);
  }
  char note[300];
  snprintf(note, sizeof note,
           "%d subscriber(s)%s; 1 durable append/ms; latency = commit "
           "(the store's commit listener) to delivery; events/s = "
           "deliveries",
           nsubs,
           grouped ? " on one thread (evs_sub_run_many)"
                   : ", one thread each (evs_sub_next)");
  bench_emit_meas(c, scen, &m, NULL, NULL, note);
  bench_emit_lat_sub(c, scen, "call-to-delivery", &call,
                     "the old figure: from before the evs_append call "
                     "(so it includes the commit's flush) to delivery");
  char ref[64];
  snprintf(ref, sizeof ref, "append-latency/live-%dsub%s", nsubs,
           grouped ? "-1thread" : "");
  bench_emit_meas(c, ref, &app, NULL, NULL,
                  "the writer's evs_append latency (commit, sync)");
}

void sc_subscription(bench_ctx *c) {
  sub_catch_up(c);
  sub_live(c, 1, 0);
  sub_live(c, c->opt.quick ? 10 : 100, 0);
  sub_live(c, c->opt.quick ? 10 : 100, 1);
}

#else

void sc_subscription(bench_ctx *c) {
  bench_skip(c, "subscription",
             "include/evstore/subscription.h and src/projections/ are not "
             "in this build yet");
}

#endif

#if EVS_BENCH_HAVE_PROJ

void sc_projection(bench_ctx *c) {
  const char *scen = "projection/stream-state-rebuild";
  char vdir[4200];
  int rc = bench_read_store(c);
  if (rc) {
    bench_fail(c, scen, "read store: %s", evs_strerror(rc));
    return;
  }
  evs_store *s = NULL;
  evs_views *v = NULL;
  evs_runner *run = NULL;
  if ((rc = evs_store_open(&s, c->read_store, NULL)) ||
      (rc = bench_mkdir(c, "views", vdir, sizeof vdir))) {
    bench_fail(c, scen, "open: %s", evs_strerror(rc));
    evs_store_close(s);
    return;
  }
  evs_views_options vo = EVS_VIEWS_OPTIONS_INIT;
  vo.path = vdir;
  evs_projection def;
  if ((rc = evs_views_open(&v, s, &vo)) ||
      (rc = evs_runner_create(&run, v, NULL)) ||
      (rc = evs_proj_builtin(&def, "stream-state")) ||
      (rc = evs_runner_add(run, &def))) {
    bench_fail(c, scen, "setup: %s (%s)", evs_strerror(rc), evs_last_error());
    goto out;
  }
  bench_meas m = { 0 };
  uint64_t head = 0;
  evs_head_position(s, &head);
  for (int r = 0; r < c->opt.reps; r++) {
    double t0 = bench_now();
    if (r > 0 && (rc = evs_runner_rebuild(run, "stream-state"))) {
      bench_fail(c, scen, "rebuild: %s (%s)", evs_strerror(rc),
                 evs_last_error());
      goto out;
    }
    rc = evs_runner_catch_up(run);
    double secs = bench_now() - t0;
    evs_proj_status st;
    memset(&st, 0, sizeof st);
    if (rc == 0)
      rc = evs_runner_status(run, "stream-state", &st);
    if (rc || st.failed || st.checkpoint != head || st.rebuilding) {
      bench_fail(c, scen, "catch-up: %s (%s; checkpoint %llu of %llu)",
                 rc ? evs_strerror(rc) : "incomplete",
                 st.failed ? st.error : evs_last_error(),
                 (unsigned long long)st.checkpoint, (unsigned long long)head);
      goto out;
    }
    bench_meas_add(&m, (double)head, 0, 1, secs, NULL);
    bench_log("stream-state %s: %.1f s", r ? "rebuild" : "first build", secs);
  }
  {
    const bench_result *cu =
        bench_find(c, "subscription/catch-up", "events/s", NULL);
    bench_meas ref = { 0 };
    if (cu) {
      ref.reps = 1;
      ref.eps[0] = cu->value;
    }
    char note[160];
    snprintf(note, sizeof note,
             "built-in stream-state (JSON merge patch per event) over %llu "
             "events; rep 1 = first build, then blue/green rebuilds",
             (unsigned long long)head);
    bench_emit_meas(c, scen, &m, cu ? "subscription-catch-up" : NULL,
                    cu ? &ref : NULL, note);
  }
out:
  evs_runner_free(run);
  evs_views_close(v);
  evs_store_close(s);
  bench_rmtree(c, vdir);
}

#else

void sc_projection(bench_ctx *c) {
  bench_skip(c, "projection",
             "include/evstore/projection.h and src/projections/ are not in "
             "this build yet");
}

#endif
