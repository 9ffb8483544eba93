/*
 * evstore-bench — scenario 4: reads.
 *
 * The read store: 1,000,000 default events (1,000 "order-<k>" streams of
 * 1,000 events each) with a "payment-<k>" event (type PaymentReceived, 100
 * streams) after every 10 of them: 1.1M events, 9% in a second category,
 * so that a filtered read has something to filter. --quick: 22,000 events.
 * The same events are loaded into the raw LMDB layout for the references.
 *
 *  - read/all: evs_read_all forward over everything, every event's data
 *    touched. References: raw-lmdb-cursor (a plain LMDB cursor over the
 *    store's own `events` database, decoding and checksumming every record
 *    with the store's decoder: the same records, decoding included) and
 *    raw-lmdb-occ-index (a cursor over the raw layout's log).
 *  - read/stream-1000: "order-42" (1,000 events) read 10,000 times, one
 *    iterator per read. Reference: the raw layout's (stream, version) index.
 *  - read/category, read/type: the 100k payment events through the
 *    category and type indexes; the ratio is to the $all scan's per-event
 *    rate.
 *  - read/all-100k, read/stream-100: the peers' read workload (100k events,
 *    100 per stream; one stream of 100 events read 10,000 times), to set
 *    beside SQLite's figures with --peers.
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static bench_wl_opts rd_wl_opts(const bench_ctx *c) {
  bench_wl_opts o =
      bench_wl_default(c->opt.quick ? 22000 : 1100000, BENCH_DATA_SIZE);
  o.every = 11;
  o.nstreams2 = 100;
  o.prefix2 = "payment";
  o.type2 = "PaymentReceived";
  return o;
}

/* Loads w into a new evstore (bulk, nosync) and a new raw LMDB environment
 * (nosync, batches of 1000); both are flushed at close. */
static int rd_build(bench_ctx *c, const bench_wl *w, const char *tag,
                    char *evdir, size_t evcap, char *rawdir, size_t rawcap) {
  char t[64];
  snprintf(t, sizeof t, "%s-evstore", tag);
  if (bench_mkdir(c, t, evdir, evcap))
    return EVS_EIO;
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.durability = EVS_NOSYNC;
  evs_store *s = NULL;
  int rc = evs_store_open(&s, evdir, &o);
  if (rc)
    return rc;
  double t0 = bench_now();
  long n = bench_evs_load_async(s, w, 0, w->n, 100, 500, NULL);
  evs_store_close(s);
  if (n != (long)w->n)
    return n < 0 ? (int)n : EVS_EIO;
  bench_log("loaded %zu events into %s in %.1f s", w->n, evdir,
            bench_now() - t0);
  snprintf(t, sizeof t, "%s-raw", tag);
  if (bench_mkdir(c, t, rawdir, rawcap))
    return EVS_EIO;
  raw_store *r = NULL;
  if ((rc = raw_open(&r, rawdir, EVS_NOSYNC, 0)))
    return rc;
  long rn = raw_append(r, w, 0, w->n, 1000, NULL, NULL);
  raw_close(r);
  return rn == (long)w->n ? 0 : EVS_EIO;
}

int bench_read_store(bench_ctx *c) {
  if (c->read_store[0])
    return 0;
  bench_wl_opts o = rd_wl_opts(c);
  bench_wl w;
  int rc = bench_wl_make(&w, &o);
  if (rc)
    return rc;
  rc = rd_build(c, &w, "read", c->read_store, sizeof c->read_store, c->read_raw,
                sizeof c->read_raw);
  if (rc == 0) {
    c->read_store_events = w.n;
    c->read_store_data_bytes = w.data_bytes;
  } else {
    c->read_store[0] = '\0';
  }
  bench_wl_free(&w);
  return rc;
}

/* Iterates a whole read; counts events and data bytes. */
static int rd_drain(evs_iter *it, uint64_t *events, uint64_t *bytes) {
  const evs_event *ev;
  int rc;
  uint64_t n = 0, b = 0;
  volatile uint8_t sink = 0;
  while ((rc = evs_iter_next(it, &ev)) == 1) {
    n++;
    b += ev->data.len;
    if (ev->data.len)
      sink ^= ((const uint8_t *)ev->data.data)[ev->data.len - 1];
  }
  (void)sink;
  *events = n;
  *bytes = b;
  return rc;
}

/* One $all read (optionally filtered): one repetition into m. */
static int rd_all(evs_store *s, const char *category, const char *type,
                  uint64_t expect, bench_meas *m) {
  {
    evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
    o.category = category;
    o.event_type = type;
    evs_iter *it = NULL;
    uint64_t n = 0, b = 0;
    double t0 = bench_now();
    int rc = evs_read_all(&it, s, &o);
    if (rc == 0)
      rc = rd_drain(it, &n, &b);
    double secs = bench_now() - t0;
    evs_iter_free(it);
    if (rc < 0)
      return rc;
    if (n != expect) {
      fprintf(stderr, "evstore-bench: read %llu events, expected %llu\n",
              (unsigned long long)n, (unsigned long long)expect);
      return EVS_EIO;
    }
    bench_meas_add(m, (double)n, (double)b, 1, secs, NULL);
  }
  return 0;
}

/* One stream read `reads` times (one repetition); latency per read. */
static int rd_stream(evs_store *s, raw_store *raw, const char *name, long reads,
                     uint64_t expect, bench_meas *m) {
  bench_lat lat = { 0 };
  {
    uint64_t total = 0, bytes = 0;
    double secs = 0;
    for (long i = 0; i < reads; i++) {
      uint64_t n = 0, b = 0;
      double t0 = bench_now();
      int rc;
      if (raw) {
        rc = raw_read_stream(raw, name, 0, 0, &n, &b);
      } else {
        evs_iter *it = NULL;
        rc = evs_read_stream(&it, s, name, NULL);
        if (rc == 0)
          rc = rd_drain(it, &n, &b);
        evs_iter_free(it);
      }
      double t1 = bench_now();
      if (rc < 0 || n != expect) {
        bench_lat_free(&lat);
        fprintf(stderr, "evstore-bench: stream %s: %llu events (%d)\n", name,
                (unsigned long long)n, rc);
        return rc < 0 ? rc : EVS_EIO;
      }
      secs += t1 - t0;
      total += n;
      bytes += b;
      bench_lat_add(&lat, (t1 - t0) * 1e6);
    }
    bench_meas_add(m, (double)total, (double)bytes, (double)reads, secs, &lat);
  }
  bench_lat_free(&lat);
  return 0;
}

static int rd_raw_scan(raw_store *raw, const char *evdir, uint64_t expect,
                       bench_meas *m) {
  {
    uint64_t n = 0, b = 0;
    double t0 = bench_now();
    int rc = raw ? raw_scan(raw, &n, &b) : raw_scan_evstore(evdir, &n, &b);
    double secs = bench_now() - t0;
    if (rc)
      return rc;
    if (n != expect)
      return EVS_EIO;
    bench_meas_add(m, (double)n, (double)b, 1, secs, NULL);
  }
  return 0;
}

/* $all and one stream, with their references, for one store. */
static void rd_pair(bench_ctx *c, const char *evdir, const char *rawdir,
                    uint64_t events, const char *all_scen,
                    const char *stream_scen, const char *stream,
                    uint64_t stream_len, int filtered) {
  bench_meas all = { 0 }, cur = { 0 }, rawall = { 0 }, st = { 0 },
             rawst = { 0 };
  bench_meas cat = { 0 }, typ = { 0 };
  evs_store *s = NULL;
  raw_store *raw = NULL;
  long reads = c->opt.quick ? 200 : 10000;
  char refname[96];
  uint64_t pay = events / 11;
  int rc;
  /* Each repetition measures evstore and then its references, so that a
   * change of load on a shared machine hits both sides of a ratio. */
  for (int r = 0; r < c->opt.reps; r++) {
    if ((rc = evs_store_open(&s, evdir, NULL))) {
      bench_fail(c, all_scen, "open: %s", evs_strerror(rc));
      return;
    }
    if ((rc = rd_all(s, NULL, NULL, events, &all))) {
      bench_fail(c, all_scen, "read: %s", evs_strerror(rc));
      goto out;
    }
    if ((rc = rd_stream(s, NULL, stream, reads, stream_len, &st))) {
      bench_fail(c, stream_scen, "read: %s", evs_strerror(rc));
      goto out;
    }
    if (filtered) {
      if ((rc = rd_all(s, "payment", NULL, pay, &cat)) ||
          (rc = rd_all(s, NULL, "PaymentReceived", pay, &typ))) {
        bench_fail(c, "read/category", "read: %s", evs_strerror(rc));
        goto out;
      }
    }
    /* Plain LMDB over the store's own records (the store must be
     * closed). */
    evs_store_close(s);
    s = NULL;
    if ((rc = rd_raw_scan(NULL, evdir, events, &cur))) {
      bench_fail(c, all_scen, "raw cursor scan failed");
      goto out;
    }
    if ((rc = raw_open(&raw, rawdir, EVS_SYNC, 1)) ||
        (rc = rd_raw_scan(raw, NULL, events, &rawall)) ||
        (rc = rd_stream(NULL, raw, stream, reads, stream_len, &rawst))) {
      bench_fail(c, all_scen, "raw LMDB reads failed");
      goto out;
    }
    raw_close(raw);
    raw = NULL;
  }
  char note[160];
  snprintf(note, sizeof note,
           "evs_read_all forward over %llu events, data touched",
           (unsigned long long)events);
  bench_emit_meas(c, all_scen, &all, "raw-lmdb-cursor", &cur, note);
  bench_emit(c, all_scen, "events/s", "events/s",
             bench_stat_of(all.eps, all.reps), "raw-lmdb-occ-index",
             bench_stat_of(rawall.eps, rawall.reps).med, NULL);
  snprintf(refname, sizeof refname, "raw-lmdb-cursor/%s", all_scen + 5);
  bench_emit_meas(c, refname, &cur, NULL, NULL,
                  "plain LMDB cursor over evstore's events DB + "
                  "evs__record_decode (checksum)");
  snprintf(refname, sizeof refname, "raw-lmdb-occ-index/%s", all_scen + 5);
  bench_emit_meas(c, refname, &rawall, NULL, NULL,
                  "cursor over the raw layout's log, header decoded");
  snprintf(note, sizeof note,
           "'%s' (%llu events) read %ld times, one iterator per read", stream,
           (unsigned long long)stream_len, reads);
  bench_emit_meas(c, stream_scen, &st, "raw-lmdb-occ-index", &rawst, note);
  bench_emit(c, stream_scen, "reads/s", "reads/s",
             bench_stat_of(st.ops, st.reps), "raw-lmdb-occ-index",
             bench_stat_of(rawst.ops, rawst.reps).med, NULL);
  snprintf(refname, sizeof refname, "raw-lmdb-occ-index/%s", stream_scen + 5);
  bench_emit_meas(c, refname, &rawst, NULL, NULL,
                  "streams get + (stream, version) cursor + log get per "
                  "event; read txn reset/renew");
  if (filtered) {
    snprintf(note, sizeof note,
             "category 'payment': %llu of %llu events, via the category "
             "index",
             (unsigned long long)pay, (unsigned long long)events);
    if (cat.reps)
      bench_emit_meas(c, "read/category", &cat, "$all-scan", &all, note);
    if (typ.reps)
      bench_emit_meas(c, "read/type", &typ, "$all-scan", &all,
                      "type 'PaymentReceived' via the type index");
  }
out:
  evs_store_close(s);
  raw_close(raw);
}

void sc_read(bench_ctx *c) {
  int rc = bench_read_store(c);
  if (rc) {
    bench_fail(c, "read", "building the read store: %s", evs_strerror(rc));
    return;
  }
  rd_pair(c, c->read_store, c->read_raw, c->read_store_events, "read/all",
          "read/stream-1000", "order-42",
          c->read_store_events / 11 * 10 / BENCH_NSTREAMS, 1);

  /* The peers' read workload: 100k events, streams of 100. */
  bench_wl_opts o =
      bench_wl_default(c->opt.quick ? 10000 : 100000, BENCH_DATA_SIZE);
  bench_wl w;
  char evdir[4200], rawdir[4200];
  if (bench_wl_make(&w, &o)) {
    bench_fail(c, "read/all-100k", "out of memory");
    return;
  }
  rc = rd_build(c, &w, "read100k", evdir, sizeof evdir, rawdir, sizeof rawdir);
  if (rc)
    bench_fail(c, "read/all-100k", "building the store: %s", evs_strerror(rc));
  else
    rd_pair(c, evdir, rawdir, w.n, "read/all-100k", "read/stream-100",
            "order-42", w.n / BENCH_NSTREAMS, 0);
  bench_wl_free(&w);
  bench_rmtree(c, evdir);
  bench_rmtree(c, rawdir);
}
