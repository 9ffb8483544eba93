/*
 * evstore-bench — scenarios 1-3: in-process appends.
 *
 *  1. append: batch sizes 1, 10, 100, 1000 x data 100 B, 200 B (the
 *     default event), 1 KiB, 10 KiB, durable (sync). A batch of B is one
 *     evs_append_multi() of B streams with one event each, every part with
 *     its exact expected version: the peers' batch (one transaction, B
 *     version checks). "b100x1stream" is one evs_append() of 100 events to
 *     one stream. Reference: raw-lmdb-occ-index, the same events in the
 *     same transactions (bench/raw_lmdb.c). The fsync floor of the disk
 *     (4 KiB write + fdatasync) is measured first.
 *  2. group-commit: 1, 4, 16, 64 threads, each appending single events to
 *     its own streams with exact expected versions for a fixed window.
 *     Reference: the 1-thread rate.
 *  3. sync-modes: scenario 1 (200 B) and 2 in nometasync and nosync.
 *
 * Every run starts from an empty store. Timed runs stop after a time
 * budget (--quick: a small one) or when the pre-generated events run out;
 * the raw LMDB reference then appends exactly as many events.
 * Throughput counts the time spent inside the append calls; latency is
 * per call (per transaction for the reference).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "store/internal.h"

/* ---- the fsync floor -------------------------------------------------------
 */

static void sc_fsync_floor(bench_ctx *c) {
  const char *scen = "ref/fsync-floor/4KiB-append";
  int count = c->opt.quick ? 50 : 500;
  double ops[BENCH_MAX_REPS], p50[BENCH_MAX_REPS], p99[BENCH_MAX_REPS];
  char dir[4200], path[4300];
  static uint8_t block[4096];
  memset(block, 'e', sizeof block);
  int reps = c->opt.reps;
  for (int r = 0; r < reps; r++) {
    if (bench_mkdir(c, "fsync", dir, sizeof dir)) {
      bench_fail(c, scen, "cannot create a directory under %s", c->root);
      return;
    }
    snprintf(path, sizeof path, "%s/f", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
      bench_fail(c, scen, "open %s: %s", path, strerror(errno));
      return;
    }
    bench_lat lat = { 0 };
    double t0 = bench_now();
    for (int i = 0; i < count; i++) {
      double a = bench_now();
      if (write(fd, block, sizeof block) != (ssize_t)sizeof block ||
          fdatasync(fd) != 0) {
        bench_fail(c, scen, "write/fdatasync: %s", strerror(errno));
        close(fd);
        bench_lat_free(&lat);
        return;
      }
      bench_lat_add(&lat, (bench_now() - a) * 1e6);
    }
    double secs = bench_now() - t0;
    close(fd);
    ops[r] = count / secs;
    p50[r] = bench_lat_quantile(&lat, 0.5);
    p99[r] = bench_lat_quantile(&lat, 0.99);
    bench_lat_free(&lat);
    bench_rmtree(c, dir);
  }
  bench_emit(c, scen, "ops/s", "fdatasync/s", bench_stat_of(ops, reps), NULL,
             NAN, "write 4 KiB + fdatasync, file grows: the disk's floor");
  bench_emit(c, scen, "p50", "us", bench_stat_of(p50, reps), NULL, NAN, NULL);
  bench_emit(c, scen, "p99", "us", bench_stat_of(p99, reps), NULL, NAN, NULL);
}

/* ---- one timed append configuration
 * ------------------------------------------- */

typedef struct ap_cfg {
  size_t batch;
  size_t data;
  evs_durability dur;
  int one_stream;
  int ids_v4; /* random client ids instead of time-ordered ones */
} ap_cfg;

static const char *ap_size_name(size_t d) {
  switch (d) {
  case 100:
    return "100B";
  case 200:
    return "200B";
  case 1024:
    return "1KiB";
  case 10240:
    return "10KiB";
  default:
    return "?B";
  }
}

/* Events to pre-generate: enough for the time budget at a generous rate. */
static size_t ap_nmax(const bench_ctx *c, const ap_cfg *a) {
  double rate; /* events/s we allow for */
  if (a->dur == EVS_SYNC)
    rate = a->batch == 1 ? 20e3 : a->batch == 10 ? 150e3 : 600e3;
  else
    rate = a->batch == 1 ? 300e3 : a->batch == 10 ? 600e3 : 1000e3;
  if (a->data >= 10240)
    rate /= 10;
  else if (a->data >= 1024)
    rate /= 3;
  double n = rate * c->opt.secs;
  /* A run stops when the events run out: bound what is generated (about
   * 300 bytes each, payloads shared) whatever --secs says. */
  if (n > 4e6)
    n = 4e6;
  if (n < (double)a->batch * 4)
    n = (double)a->batch * 4;
  return (size_t)n;
}

static void ap_name(char *out, size_t cap, const char *what, const ap_cfg *a) {
  if (a->one_stream)
    snprintf(out, cap, "%s/b%zux1stream/%s/%s%s", what, a->batch,
             ap_size_name(a->data), bench_dur_name(a->dur),
             a->ids_v4 ? "/v4-ids" : "");
  else
    snprintf(out, cap, "%s/b%zu/%s/%s%s", what, a->batch, ap_size_name(a->data),
             bench_dur_name(a->dur), a->ids_v4 ? "/v4-ids" : "");
}

/* Opens a fresh store in a new directory. */
static int ap_open(bench_ctx *c, const char *tag, evs_durability dur,
                   evs_store **s, char *dir, size_t cap) {
  int rc = bench_mkdir(c, tag, dir, cap);
  if (rc)
    return rc;
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.durability = dur;
  return evs_store_open(s, dir, &o);
}

/* After a run: a stale expected version is rejected and the head is n. */
static int ap_check(evs_store *s, const bench_wl *w, uint64_t n) {
  evs_event_data ed;
  memset(&ed, 0, sizeof ed);
  ed.type = BENCH_TYPE;
  ed.data = "{}";
  ed.data_len = 2;
  evs_append_result res;
  int rc = evs_append(s, w->names[w->ev[0].stream], EVS_EXPECT_NO_STREAM, &ed,
                      1, &res);
  if (rc != EVS_EWRONGVERSION)
    return -1;
  uint64_t head = 0;
  if (evs_head_position(s, &head) || head != n)
    return -2;
  return 0;
}

static void ap_run(bench_ctx *c, const ap_cfg *a) {
  char scen[96], refscen[96], dir[4200];
  ap_name(scen, sizeof scen, "append", a);
  ap_name(refscen, sizeof refscen, "raw-lmdb-occ-index", a);
  bench_wl_opts wo = bench_wl_default(ap_nmax(c, a), a->data);
  wo.ids_v4 = a->ids_v4 || c->opt.ids_v4;
  if (a->one_stream)
    wo.run = (unsigned)a->batch;
  bench_wl w;
  if (bench_wl_make(&w, &wo)) {
    bench_fail(c, scen, "out of memory generating %zu events", wo.n);
    return;
  }
  bench_meas m = { 0 }, ref = { 0 }, full = { 0 };
  bench_lat lat = { 0 };
  double wr[BENCH_MAX_REPS], rwr[BENCH_MAX_REPS];
  /* For the default events, also evstore's own layout in raw LMDB. */
  int with_full = a->data == BENCH_DATA_SIZE && !a->one_stream;
  char fullscen[96];
  ap_name(fullscen, sizeof fullscen, "raw-lmdb-evstore-layout", a);
  for (int r = 0; r < c->opt.reps; r++) {
    /* evstore */
    evs_store *s = NULL;
    int rc = ap_open(c, "append", a->dur, &s, dir, sizeof dir);
    if (rc) {
      bench_fail(c, scen, "open: %s (%s)", evs_strerror(rc), evs_last_error());
      goto out;
    }
    bench_lat_clear(&lat);
    double secs = 0;
    uint64_t io0 = bench_io_written();
    long n = bench_evs_load(s, &w, 0, w.n, a->batch, bench_now() + c->opt.secs,
                            &lat, &secs);
    wr[r] = n > 0 ? (double)(bench_io_written() - io0) / (double)n : NAN;
    if (n <= 0) {
      bench_fail(c, scen, "append: %s", evs_strerror((int)n));
      evs_store_close(s);
      goto out;
    }
    if (ap_check(s, &w, (uint64_t)n)) {
      bench_fail(c, scen,
                 "after the run: stale expected version accepted "
                 "or head position wrong");
      evs_store_close(s);
      goto out;
    }
    evs_store_close(s);
    bench_rmtree(c, dir);
    bench_meas_add(&m, (double)n, (double)n * (double)a->data, (double)lat.n,
                   secs, &lat);

    /* The raw LMDB reference: the same n events. */
    raw_store *raw = NULL;
    if (bench_mkdir(c, "raw", dir, sizeof dir) ||
        raw_open(&raw, dir, a->dur, 0)) {
      bench_fail(c, refscen, "cannot open a raw LMDB environment");
      goto out;
    }
    bench_lat_clear(&lat);
    io0 = bench_io_written();
    long rn = raw_append(raw, &w, 0, (size_t)n, a->batch, &lat, &secs);
    rwr[r] = (double)(bench_io_written() - io0) / (double)n;
    int stale = raw_check_stale(raw, &w);
    raw_close(raw);
    bench_rmtree(c, dir);
    if (rn != n || stale) {
      bench_fail(c, refscen, "raw LMDB append failed");
      goto out;
    }
    bench_meas_add(&ref, (double)rn, (double)rn * (double)a->data,
                   (double)lat.n, secs, &lat);
    if (!with_full)
      continue;
    if (bench_mkdir(c, "rawfull", dir, sizeof dir) ||
        raw_open_layout(&raw, dir, a->dur, 0, 1)) {
      bench_fail(c, fullscen, "cannot open a raw LMDB environment");
      goto out;
    }
    bench_lat_clear(&lat);
    rn = raw_append(raw, &w, 0, (size_t)n, a->batch, &lat, &secs);
    raw_close(raw);
    bench_rmtree(c, dir);
    if (rn != n) {
      bench_fail(c, fullscen, "raw LMDB append failed");
      goto out;
    }
    bench_meas_add(&full, (double)rn, (double)rn * (double)a->data,
                   (double)lat.n, secs, &lat);
  }
  char note[160];
  snprintf(note, sizeof note, "%s, %zu event(s) per call, %s ids%s",
           bench_dur_name(a->dur), a->batch,
           wo.ids_v4 ? "random UUIDv4" : "UUIDv7",
           a->data >= 256 ? "; data compressed by the store (zstd)" : "");
  bench_emit_meas(c, scen, &m, "raw-lmdb-occ-index", &ref, note);
  if (with_full)
    bench_emit(c, scen, "events/s", "events/s", bench_stat_of(m.eps, m.reps),
               "raw-lmdb-evstore-layout",
               bench_stat_of(full.eps, full.reps).med, NULL);
  if (a->dur != EVS_NOSYNC)
    bench_emit(c, scen, "written bytes/event", "bytes",
               bench_stat_of(wr, m.reps), "raw-lmdb-occ-index",
               bench_stat_of(rwr, m.reps).med,
               "bytes written per event (write syscalls, /proc/self/io wchar)");
  bench_emit_meas(c, refscen, &ref, NULL, NULL,
                  "same events, same transactions; no ids/category/type "
                  "index, no checksum, no compression");
  if (with_full)
    bench_emit_meas(c, fullscen, &full, NULL, NULL,
                    "occ-index + evstore's index layout (DUPSORT stream "
                    "index, ids, category and type indexes), nothing else");
  char series[48];
  if (a->data == BENCH_DATA_SIZE && !a->one_stream && !a->ids_v4) {
    bench_stat st = bench_stat_of(m.eps, m.reps);
    snprintf(series, sizeof series, "append-%s", bench_dur_name(a->dur));
    bench_point_add(c, series, (double)a->batch, st.med);
    st = bench_stat_of(ref.eps, ref.reps);
    snprintf(series, sizeof series, "raw-%s", bench_dur_name(a->dur));
    bench_point_add(c, series, (double)a->batch, st.med);
  }
out:
  bench_lat_free(&lat);
  bench_wl_free(&w);
}

/* ---- group commit
 * ------------------------------------------------------------------ */

typedef struct gc_shared {
  evs_store *s;
  pthread_mutex_t mu; /* the start gate */
  pthread_cond_t cv;
  int go;
  double start, deadline;
  int threads;
  const uint8_t *pool; /* payloads, BENCH_DATA_SIZE bytes each */
  unsigned npool;
  int ids_v4;
} gc_shared;

typedef struct gc_thread {
  gc_shared *sh;
  int t;
  pthread_t tid;
  long in_window, total;
  int err;
  bench_lat lat;
} gc_thread;

static void gc_sleep_until(double when) {
  double now = bench_now();
  if (when <= now)
    return;
  struct timespec ts;
  double d = when - now;
  ts.tv_sec = (time_t)d;
  ts.tv_nsec = (long)((d - (double)ts.tv_sec) * 1e9);
  nanosleep(&ts, NULL);
}

static void *gc_main(void *arg) {
  gc_thread *th = arg;
  gc_shared *sh = th->sh;
  int T = sh->threads;
  /* This thread's streams: k % T == t. */
  unsigned mine = 0;
  unsigned ks[BENCH_NSTREAMS];
  int64_t ver[BENCH_NSTREAMS];
  for (unsigned k = (unsigned)th->t; k < BENCH_NSTREAMS; k += (unsigned)T) {
    ks[mine] = k;
    ver[mine++] = -1;
  }
  char name[32];
  uint64_t rng = 0x6c0c0117ull + (uint64_t)th->t * 7919u;
  pthread_mutex_lock(&sh->mu);
  while (!sh->go)
    pthread_cond_wait(&sh->cv, &sh->mu);
  pthread_mutex_unlock(&sh->mu);
  gc_sleep_until(sh->start);
  for (unsigned i = 0;; i++) {
    double t0 = bench_now();
    if (t0 >= sh->deadline)
      break;
    unsigned j = i % mine;
    snprintf(name, sizeof name, "order-%u", ks[j]);
    evs_event_data ed;
    memset(&ed, 0, sizeof ed);
    if (sh->ids_v4)
      bench_uuid4(&ed.id, &rng);
    else
      evs_uuid_v7(&ed.id); /* as a client library would make it */
    ed.type = BENCH_TYPE;
    ed.data =
        sh->pool + (size_t)(bench_rng(&rng) % sh->npool) * BENCH_DATA_SIZE;
    ed.data_len = BENCH_DATA_SIZE;
    int64_t exp = ver[j] < 0 ? EVS_EXPECT_NO_STREAM : ver[j];
    t0 = bench_now();
    int rc = evs_append(sh->s, name, exp, &ed, 1, NULL);
    double t1 = bench_now();
    if (rc) {
      th->err = rc;
      break;
    }
    ver[j]++;
    th->total++;
    if (t1 <= sh->deadline)
      th->in_window++;
    bench_lat_add(&th->lat, (t1 - t0) * 1e6);
  }
  return NULL;
}

/* One timed run of T threads on an empty store, added to m (and epc/wr at
 * index m->reps - 1). Returns 0, or -1 after recording a failure. */
static int gc_once(bench_ctx *c, evs_durability dur, int T, const char *scen,
                   const uint8_t *pool, double secs, bench_meas *m, double *epc,
                   double *wr) {
  char dir[4200];
  gc_shared sh;
  memset(&sh, 0, sizeof sh);
  sh.threads = T;
  sh.ids_v4 = c->opt.ids_v4;
  sh.pool = pool;
  sh.npool = 1024;
  int rc = ap_open(c, "group", dur, &sh.s, dir, sizeof dir);
  if (rc) {
    bench_fail(c, scen, "open: %s", evs_strerror(rc));
    return -1;
  }
  gc_thread *th = calloc((size_t)T, sizeof *th);
  pthread_mutex_init(&sh.mu, NULL);
  pthread_cond_init(&sh.cv, NULL);
  int started = 0;
  for (int t = 0; th && t < T; t++) {
    th[t].sh = &sh;
    th[t].t = t;
    if (pthread_create(&th[t].tid, NULL, gc_main, &th[t]) != 0)
      break;
    started++;
  }
  uint64_t io0 = bench_io_written();
  /* Everyone starts at the same instant and stops at the deadline. */
  pthread_mutex_lock(&sh.mu);
  sh.start = bench_now() + 0.01;
  sh.deadline = started < T ? sh.start : sh.start + secs;
  sh.go = 1;
  pthread_cond_broadcast(&sh.cv);
  pthread_mutex_unlock(&sh.mu);
  for (int t = 0; t < started; t++)
    pthread_join(th[t].tid, NULL);
  pthread_cond_destroy(&sh.cv);
  pthread_mutex_destroy(&sh.mu);
  long in_window = 0, total = 0;
  int err = started < T ? EVS_ENOMEM : 0;
  bench_lat lat = { 0 };
  for (int t = 0; t < started; t++) {
    in_window += th[t].in_window;
    total += th[t].total;
    if (th[t].err)
      err = th[t].err;
    bench_lat_merge(&lat, &th[t].lat);
    bench_lat_free(&th[t].lat);
  }
  free(th);
  /* The store's internal commit counter (src/store/internal.h). */
  uint64_t commits = __atomic_load_n(&sh.s->n_commits, __ATOMIC_RELAXED);
  uint64_t head = 0;
  evs_head_position(sh.s, &head);
  evs_store_close(sh.s);
  bench_rmtree(c, dir);
  if (err || head != (uint64_t)total) {
    bench_fail(c, scen, "append failed: %s (head %llu, appended %ld)",
               err ? evs_strerror(err) : "count mismatch",
               (unsigned long long)head, total);
    bench_lat_free(&lat);
    return -1;
  }
  epc[m->reps] = commits ? (double)total / (double)commits : NAN;
  wr[m->reps] =
      total ? (double)(bench_io_written() - io0) / (double)total : NAN;
  bench_meas_add(m, (double)in_window, (double)in_window * BENCH_DATA_SIZE,
                 (double)in_window, secs, &lat);
  bench_lat_free(&lat);
  return 0;
}

/*
 * The thread counts run interleaved: repetition r runs every count once, one
 * right after the other, so that each ratio to the 1-thread rate compares
 * runs seconds apart, not a whole scenario apart (the disk's flush
 * rate drifts by several times within minutes on a shared machine).
 */
static void gc_run(bench_ctx *c, evs_durability dur, const int *threads,
                   int nthreads) {
  enum {
    GC_MAX_T = 8
  };
  double secs = c->opt.quick ? 0.25 : 2.0;
  if (nthreads > GC_MAX_T)
    nthreads = GC_MAX_T;
  uint8_t *pool = malloc(1024 * BENCH_DATA_SIZE);
  if (pool == NULL)
    return;
  uint64_t prng = 0x9001ull;
  for (unsigned i = 0; i < 1024; i++)
    bench_json_payload(pool + (size_t)i * BENCH_DATA_SIZE, BENCH_DATA_SIZE,
                       &prng);
  bench_meas m[GC_MAX_T];
  double epc[GC_MAX_T][BENCH_MAX_REPS], wr[GC_MAX_T][BENCH_MAX_REPS];
  int failed[GC_MAX_T];
  char scen[GC_MAX_T][96];
  memset(m, 0, sizeof m);
  for (int ti = 0; ti < nthreads; ti++) {
    failed[ti] = 0;
    snprintf(scen[ti], sizeof scen[ti], "group-commit/%dt/%s", threads[ti],
             bench_dur_name(dur));
  }
  for (int r = 0; r < c->opt.reps; r++)
    for (int ti = 0; ti < nthreads; ti++)
      if (!failed[ti] && gc_once(c, dur, threads[ti], scen[ti], pool, secs,
                                 &m[ti], epc[ti], wr[ti]) != 0)
        failed[ti] = 1;
  const bench_meas *base = NULL;
  for (int ti = 0; ti < nthreads; ti++) {
    int T = threads[ti];
    if (failed[ti])
      continue;
    if (T == 1)
      base = &m[ti];
    char note[160];
    snprintf(note, sizeof note,
             "%d thread(s), 1 event per evs_append, exact expected "
             "version, %.1f s window, %s, repetitions interleaved with "
             "the other thread counts",
             T, secs, bench_dur_name(dur));
    bench_emit_meas(c, scen[ti], &m[ti], T == 1 || !base ? NULL : "1-thread",
                    T == 1 ? NULL : base, note);
    if (T != 1 && base) {
      /* The ratio within each repetition (its runs seconds apart): how much
       * of the spread is the disk's drift. */
      double rr[BENCH_MAX_REPS];
      int nr = m[ti].reps < base->reps ? m[ti].reps : base->reps;
      for (int r = 0; r < nr; r++)
        rr[r] = base->eps[r] > 0 ? m[ti].eps[r] / base->eps[r] : NAN;
      bench_emit(c, scen[ti], "ratio per repetition", "x",
                 bench_stat_of(rr, nr), NULL, NAN,
                 "events/s over the 1-thread rate of the same repetition");
    }
    bench_emit(c, scen[ti], "events/commit", "events/commit",
               bench_stat_of(epc[ti], m[ti].reps), NULL, NAN,
               "appends per LMDB commit (one fsync pair each)");
    if (dur != EVS_NOSYNC)
      bench_emit(c, scen[ti], "written bytes/event", "bytes",
                 bench_stat_of(wr[ti], m[ti].reps), NULL, NAN,
                 "bytes written per event (write syscalls, /proc/self/io "
                 "wchar)");
    char series[48];
    snprintf(series, sizeof series, "group-%s", bench_dur_name(dur));
    bench_point_add(c, series, T, bench_stat_of(m[ti].eps, m[ti].reps).med);
  }
  free(pool);
}

/* ---- the scenarios
 * ------------------------------------------------------------------ */

void sc_append(bench_ctx *c) {
  sc_fsync_floor(c);
  static const size_t batches[] = { 1, 10, 100, 1000 };
  static const size_t sizes[] = { 200, 100, 1024, 10240 };
  /* --quick too runs every size, 1 KiB and up (the store's compression
   * path) at batch 1 and 100 only, to stay short. */
  for (size_t si = 0; si < 4; si++) {
    for (size_t bi = 0; bi < 4; bi++) {
      if (c->opt.quick && sizes[si] > 256 && bi % 2)
        continue;
      ap_cfg a = { batches[bi], sizes[si], EVS_SYNC, 0, 0 };
      ap_run(c, &a);
    }
  }
  ap_cfg one = { 100, 200, EVS_SYNC, 1, 0 };
  ap_run(c, &one);
  /* The default events with random client ids: what the id index costs
   * when ids are not time-ordered (docs/performance.md). */
  if (!c->opt.ids_v4) {
    ap_cfg v4 = { 100, 200, EVS_SYNC, 0, 1 };
    ap_run(c, &v4);
  }
}

void sc_group(bench_ctx *c) {
  static const int threads[] = { 1, 4, 16, 64 };
  gc_run(c, EVS_SYNC, threads, 4);
}

void sc_syncmodes(bench_ctx *c) {
  static const size_t batches[] = { 1, 10, 100, 1000 };
  static const int threads[] = { 1, 4, 16, 64 };
  static const evs_durability modes[] = { EVS_NOMETASYNC, EVS_NOSYNC };
  for (int mi = 0; mi < 2; mi++) {
    for (size_t bi = 0; bi < 4; bi++) {
      ap_cfg a = { batches[bi], BENCH_DATA_SIZE, modes[mi], 0, 0 };
      ap_run(c, &a);
    }
    gc_run(c, modes[mi], threads, 4);
  }
}
