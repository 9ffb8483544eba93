/*
 * evstore-bench — scenario 9: growth.
 *
 * One store grows to 10M default events (checkpoints 1M, 2M, 5M, 10M;
 * --large: up to 50M; --quick: 20k, 50k, 100k). Between checkpoints the
 * store is bulk-loaded in nosync mode: 500 evs_append_async requests of
 * 100 events in flight, which the store's writer commits many to a
 * transaction (that load's rate is the first curve; one measurement per
 * segment). The bulk-loaded events leave their ids to the store
 * (time-ordered UUIDv7): with random client ids, the id index turns every
 * insert into a random leaf-page rewrite, and loading 10M events that way
 * takes longer than this whole benchmark may (the probes below show that
 * cost). At each checkpoint the store is reopened in sync mode and
 * measured, each figure repeated:
 *   - append-sync-b100: 20,000 more events, durable, batches of 100, with
 *     client-supplied random UUIDv4 ids; and append-sync-b100-v7ids,
 *     the same with store-generated ids; both with the bytes written to
 *     storage per event;
 *   - stream-read: the newest 1,000 events of "order-42", read 500 times
 *     (latency per read; the stream's events are spread over the log);
 *   - all-scan: evs_read_all over the whole store;
 *   - file: data.mdb bytes per event.
 * Ratios are to the first checkpoint.
 *
 * Then one stream grows to 1M events (checkpoints 100k, 200k, 500k, 1M),
 * appended in batches of 100 (nosync): the cost of one long stream.
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static void gr_label(char *out, size_t cap, uint64_t n) {
  if (n >= 1000000 && n % 1000000 == 0)
    snprintf(out, cap, "%lluM", (unsigned long long)(n / 1000000));
  else if (n >= 1000 && n % 1000 == 0)
    snprintf(out, cap, "%lluk", (unsigned long long)(n / 1000));
  else
    snprintf(out, cap, "%llu", (unsigned long long)n);
}

/* n round-robin default events that continue a store of `base` of them
 * (both multiples of the stream count). nil_ids: leave the ids zero, so
 * that the store generates time-ordered UUIDv7 ids. */
static int gr_chunk(bench_wl *w, size_t n, uint64_t base, uint64_t seed,
                    int nil_ids) {
  bench_wl_opts o = bench_wl_default(n, BENCH_DATA_SIZE);
  o.seed = seed;
  o.ids_v4 = !nil_ids; /* the probe's "random client ids" */
  int rc = bench_wl_make(w, &o);
  if (rc)
    return rc;
  int64_t off = (int64_t)(base / BENCH_NSTREAMS);
  for (size_t i = 0; i < w->n; i++) {
    w->ev[i].version += off;
    if (nil_ids)
      memset(&w->ev[i].id, 0, sizeof w->ev[i].id);
  }
  return 0;
}

static int gr_open(const char *dir, evs_durability d, evs_store **s) {
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.durability = d;
  return evs_store_open(s, dir, &o);
}

static void gr_emit1(bench_ctx *c, const char *what, const char *cpl,
                     const char *metric, const char *unit, double v,
                     const char *first, double first_v, const char *note) {
  char scen[96], ref[32];
  snprintf(scen, sizeof scen, "growth/%s@%s", what, cpl);
  snprintf(ref, sizeof ref, "@%s", first);
  bench_stat st = { v, v, v, 1 };
  int is_first = strcmp(cpl, first) == 0;
  bench_emit(c, scen, metric, unit, st, is_first ? NULL : ref,
             is_first ? NAN : first_v, note);
}

static void gr_emit(bench_ctx *c, const char *what, const char *cpl,
                    const bench_meas *m, const char *first,
                    const bench_meas *firstm, const char *note) {
  char scen[96], ref[32];
  snprintf(scen, sizeof scen, "growth/%s@%s", what, cpl);
  snprintf(ref, sizeof ref, "@%s", first);
  int is_first = strcmp(cpl, first) == 0;
  bench_emit_meas(c, scen, m, is_first ? NULL : ref, is_first ? NULL : firstm,
                  note);
}

static void gr_store(bench_ctx *c) {
  static const uint64_t def_cp[] = { 1000000, 2000000, 5000000, 10000000 };
  static const uint64_t large_cp[] = { 1000000,  2000000,  5000000,
                                       10000000, 20000000, 50000000 };
  static const uint64_t quick_cp[] = { 20000, 50000, 100000 };
  const uint64_t *cps = c->opt.quick   ? quick_cp
                        : c->opt.large ? large_cp
                                       : def_cp;
  size_t ncp = c->opt.quick ? 3 : c->opt.large ? 6 : 4;
  size_t chunk = c->opt.quick ? 10000 : 500000;
  size_t probe = c->opt.quick ? 2000 : 20000;
  long reads = c->opt.quick ? 50 : 500;
  char dir[4200], f[4300], cpl[32], first[32];
  const char *scen = "growth";
  if (bench_mkdir(c, "growth", dir, sizeof dir)) {
    bench_fail(c, scen, "mkdir");
    return;
  }
  snprintf(f, sizeof f, "%s/data.mdb", dir);
  gr_label(first, sizeof first, cps[0]);
  evs_store *s = NULL;
  int rc = gr_open(dir, EVS_NOSYNC, &s);
  if (rc) {
    bench_fail(c, scen, "open: %s", evs_strerror(rc));
    return;
  }
  uint64_t total = 0, seed = 0x67707277ull;
  double first_load = NAN, first_bpe = NAN, f_wr = NAN, f_wr7 = NAN;
  bench_meas f_sync = { 0 }, f_v7 = { 0 }, f_read = { 0 }, f_scan = { 0 };
  bench_lat lat = { 0 };
  for (size_t ci = 0; ci < ncp; ci++) {
    uint64_t cp = cps[ci];
    gr_label(cpl, sizeof cpl, cp);
    /* Load (nosync, batches of 1000) up to the checkpoint. */
    double load_secs = 0, wall = bench_now();
    uint64_t loaded = 0;
    while (total < cp) {
      size_t n = cp - total < chunk ? (size_t)(cp - total) : chunk;
      bench_wl w;
      if ((rc = gr_chunk(&w, n, total, seed++, 1)))
        break;
      double secs = 0;
      long got = bench_evs_load_async(s, &w, 0, n, 100, 500, &secs);
      bench_wl_free(&w);
      if (got != (long)n) {
        rc = got < 0 ? (int)got : EVS_EIO;
        break;
      }
      load_secs += secs;
      loaded += n;
      total += n;
    }
    if (rc) {
      bench_fail(c, scen, "load to %s: %s", cpl, evs_strerror(rc));
      goto out;
    }
    double load_rate = (double)loaded / load_secs;
    if (ci == 0)
      first_load = load_rate;
    bench_log("growth: %s events (load %.1f s)", cpl, bench_now() - wall);
    /* Reopen durable for the measurements (closing flushes the load). */
    evs_store_close(s);
    s = NULL;
    if ((rc = gr_open(dir, EVS_SYNC, &s))) {
      bench_fail(c, scen, "reopen: %s", evs_strerror(rc));
      goto out;
    }
    bench_meas msync = { 0 }, mv7 = { 0 }, mread = { 0 }, mscan = { 0 };
    double wr[BENCH_MAX_REPS], wr7[BENCH_MAX_REPS];
    /* Durable appends, alternating client-supplied random UUIDv4 ids (the
     * default workload) and store-generated UUIDv7 ids. */
    for (int r = 0; r < 2 * c->opt.reps; r++) {
      int v7 = r % 2;
      bench_wl w;
      if ((rc = gr_chunk(&w, probe, total, seed++, v7)))
        break;
      double secs = 0;
      bench_lat_clear(&lat);
      uint64_t io0 = bench_io_written();
      long got = bench_evs_load(s, &w, 0, probe, 100, 0, &lat, &secs);
      (v7 ? wr7 : wr)[r / 2] =
          (double)(bench_io_written() - io0) / (double)probe;
      bench_wl_free(&w);
      if (got != (long)probe) {
        rc = got < 0 ? (int)got : EVS_EIO;
        break;
      }
      total += probe;
      bench_meas_add(v7 ? &mv7 : &msync, (double)probe,
                     (double)probe * BENCH_DATA_SIZE, (double)lat.n, secs,
                     &lat);
    }
    /* The newest 1,000 events of order-42. */
    int64_t last = (int64_t)(total / BENCH_NSTREAMS) - 1;
    for (int r = 0; rc == 0 && r < c->opt.reps; r++) {
      bench_lat_clear(&lat);
      double secs = 0;
      uint64_t events = 0, bytes = 0;
      for (long i = 0; i < reads && rc == 0; i++) {
        evs_read_options o = EVS_READ_OPTIONS_INIT;
        o.from_version = last >= 999 ? last - 999 : 0;
        o.limit = 1000;
        evs_iter *it = NULL;
        const evs_event *ev;
        double t0 = bench_now();
        rc = evs_read_stream(&it, s, "order-42", &o);
        uint64_t n = 0;
        while (rc >= 0 && (rc = evs_iter_next(it, &ev)) == 1) {
          n++;
          bytes += ev->data.len;
        }
        double t1 = bench_now();
        evs_iter_free(it);
        if (rc < 0)
          break;
        rc = n == 1000 || (last < 999 && n == (uint64_t)last + 1) ? 0 : EVS_EIO;
        if (rc)
          break;
        events += n;
        secs += t1 - t0;
        bench_lat_add(&lat, (t1 - t0) * 1e6);
      }
      if (rc)
        break;
      bench_meas_add(&mread, (double)events, (double)bytes, (double)reads, secs,
                     &lat);
    }
    for (int r = 0; rc == 0 && r < c->opt.reps; r++) {
      evs_iter *it = NULL;
      const evs_event *ev;
      uint64_t n = 0, bytes = 0;
      double t0 = bench_now();
      rc = evs_read_all(&it, s, NULL);
      while (rc >= 0 && (rc = evs_iter_next(it, &ev)) == 1) {
        n++;
        bytes += ev->data.len;
      }
      double secs = bench_now() - t0;
      evs_iter_free(it);
      if (rc < 0)
        break;
      if (n != total)
        fprintf(stderr, "evstore-bench: $all scan saw %llu of %llu events\n",
                (unsigned long long)n, (unsigned long long)total);
      rc = n == total ? 0 : EVS_EIO;
      bench_meas_add(&mscan, (double)n, (double)bytes, 1, secs, NULL);
    }
    if (rc) {
      bench_fail(c, scen, "measurements at %s: %s", cpl, evs_strerror(rc));
      goto out;
    }
    double bpe = (double)bench_file_size(f) / (double)total;
    if (ci == 0) {
      f_wr = bench_stat_of(wr, msync.reps).med;
      f_wr7 = bench_stat_of(wr7, mv7.reps).med;
      f_sync = msync;
      f_v7 = mv7;
      f_read = mread;
      f_scan = mscan;
      first_bpe = bpe;
    }
    gr_emit1(c, "bulk-load-nosync", cpl, "events/s", "events/s", load_rate,
             first, first_load,
             "the load up to this checkpoint: 500 async requests of 100 "
             "events in flight, nosync (one measurement)");
    gr_emit(c, "append-sync-b100", cpl, &msync, first, &f_sync,
            "20,000 more events with client-supplied random UUIDv4 ids, "
            "durable, batches of 100");
    gr_emit1(c, "append-sync-b100", cpl, "written bytes/event", "bytes",
             bench_stat_of(wr, msync.reps).med, first, f_wr,
             "bytes written per durable event (write syscalls, /proc/self/io "
             "wchar)");
    gr_emit(c, "append-sync-b100-v7ids", cpl, &mv7, first, &f_v7,
            "the same with ids left to the store (time-ordered UUIDv7)");
    gr_emit1(c, "append-sync-b100-v7ids", cpl, "written bytes/event", "bytes",
             bench_stat_of(wr7, mv7.reps).med, first, f_wr7,
             "bytes written per durable event (write syscalls, /proc/self/io "
             "wchar)");
    bench_point_add(c, "growth-written", (double)total,
                    bench_stat_of(wr, msync.reps).med);
    bench_point_add(c, "growth-written-v7", (double)total,
                    bench_stat_of(wr7, mv7.reps).med);
    bench_point_add(c, "growth-sync-v7", (double)total,
                    bench_stat_of(mv7.eps, mv7.reps).med);
    gr_emit(c, "stream-read", cpl, &mread, first, &f_read,
            "newest 1,000 events of order-42; latency per read");
    gr_emit(c, "all-scan", cpl, &mscan, first, &f_scan,
            "evs_read_all over the whole store");
    gr_emit1(c, "file", cpl, "bytes/event", "bytes", bpe, first, first_bpe,
             "data.mdb size / events");
    double x = (double)total;
    bench_point_add(c, "growth-load", x, load_rate);
    bench_point_add(c, "growth-sync", x,
                    bench_stat_of(msync.eps, msync.reps).med);
    bench_point_add(c, "growth-read-p50", x,
                    bench_stat_of(mread.p50, mread.reps).med);
    bench_point_add(c, "growth-read-p99", x,
                    bench_stat_of(mread.p99, mread.reps).med);
    bench_point_add(c, "growth-scan", x,
                    bench_stat_of(mscan.eps, mscan.reps).med);
    bench_point_add(c, "growth-bpe", x, bpe);
    bench_point_add(c, "growth-file-mb", x, (double)bench_file_size(f) / 1e6);
    evs_store_close(s);
    s = NULL;
    if ((rc = gr_open(dir, EVS_NOSYNC, &s))) {
      bench_fail(c, scen, "reopen: %s", evs_strerror(rc));
      goto out;
    }
  }
out:
  bench_lat_free(&lat);
  evs_store_close(s);
  bench_rmtree(c, dir);
}

static void gr_one_stream(bench_ctx *c) {
  static const uint64_t def_cp[] = { 100000, 200000, 500000, 1000000 };
  static const uint64_t quick_cp[] = { 5000, 10000, 20000 };
  const uint64_t *cps = c->opt.quick ? quick_cp : def_cp;
  size_t ncp = c->opt.quick ? 3 : 4;
  const char *scen = "growth/one-stream";
  char dir[4200], cpl[32], first[32];
  bench_wl_opts o = bench_wl_default(cps[ncp - 1], BENCH_DATA_SIZE);
  o.nstreams = 1;
  o.run = 100;
  o.prefix = "big";
  bench_wl w;
  if (bench_wl_make(&w, &o)) {
    bench_fail(c, scen, "out of memory");
    return;
  }
  evs_store *s = NULL;
  int rc = bench_mkdir(c, "onestream", dir, sizeof dir);
  if (rc == 0)
    rc = gr_open(dir, EVS_NOSYNC, &s);
  if (rc) {
    bench_fail(c, scen, "open: %s", evs_strerror(rc));
    bench_wl_free(&w);
    return;
  }
  gr_label(first, sizeof first, cps[0]);
  double first_rate = NAN;
  size_t done = 0;
  for (size_t ci = 0; ci < ncp; ci++) {
    gr_label(cpl, sizeof cpl, cps[ci]);
    double secs = 0;
    long got =
        bench_evs_load(s, &w, done, (size_t)cps[ci], 100, 0, NULL, &secs);
    if (got != (long)(cps[ci] - done)) {
      bench_fail(c, scen, "append: %s",
                 evs_strerror(got < 0 ? (int)got : EVS_EIO));
      break;
    }
    double rate = (double)got / secs;
    if (ci == 0)
      first_rate = rate;
    gr_emit1(c, "one-stream-append-nosync-b100", cpl, "events/s", "events/s",
             rate, first, first_rate,
             "one stream 'big-0', 100 events per evs_append, nosync; this "
             "segment's rate");
    bench_point_add(c, "one-stream", (double)cps[ci], rate);
    done = (size_t)cps[ci];
  }
  evs_store_close(s);
  bench_rmtree(c, dir);
  bench_wl_free(&w);
}

void sc_growth(bench_ctx *c) {
  gr_store(c);
  gr_one_stream(c);
}
