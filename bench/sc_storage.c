/*
 * evstore-bench — scenario 8: storage.
 *
 *  - storage/evstore: bytes per event of a store holding 200,000 default
 *    events (appended in batches of 100): the LMDB pages in use and the
 *    file size, against the raw LMDB layout holding the same events and
 *    against the logical size of an event (id + stream name + type +
 *    data). storage/db/<name>: the same split per LMDB database.
 *  - storage/zstd-store-threshold-32: the store's own per-event zstd
 *    (level 3, no dictionary), forced on for the 200-byte events by
 *    lowering compress_threshold to 32 (the default, 256, leaves them
 *    uncompressed).
 *  - storage/zstd-per-event: the same compression measured offline.
 *  - storage/zstd-store-dict-16KiB: the store's trained dictionary: 10,000
 *    default events appended, evs_store_train_dictionary() (16 KiB), then
 *    50,000 more events (other payloads); their stored data bytes per
 *    event against their raw JSON.
 *  - storage/zstd-dict-<size>: the same idea measured offline with zstd
 *    alone (a dictionary trained with ZDICT_trainFromBuffer on 10,000
 *    other events, ZSTD_compress_usingCDict at level 3, per event, frame
 *    header without checksum or dictionary id): the floor for the store's
 *    figure, and the dictionary sizes the store was not asked for.
 */
#include <stdlib.h>
#include <string.h>
#include <zdict.h>
#include <zstd.h>

#include "bench.h"

typedef struct st_pages {
  bench_ctx *c;
  double events;
  unsigned psize;
  char prefix[32];
  uint64_t small_pages; /* databases of under half a byte per event */
  unsigned small_count;
} st_pages;

static void st_page_cb(const char *name, uint64_t pages, uint64_t entries,
                       void *payload) {
  st_pages *p = payload;
  char scen[96], note[96];
  if (name[0] != '(' && (double)pages * p->psize / p->events < 0.5) {
    p->small_pages += pages;
    p->small_count++;
    return;
  }
  if (strncmp(name, "(DUPSORT", 8) == 0 && p->small_count) {
    snprintf(scen, sizeof scen, "storage/%s/(%u small databases)", p->prefix,
             p->small_count);
    bench_stat s1 = { (double)p->small_pages * p->psize / p->events, NAN, NAN,
                      1 };
    s1.min = s1.max = s1.med;
    bench_emit(p->c, scen, "bytes/event", "bytes", s1, NULL, NAN,
               "interning tables, meta, streams of few events");
  }
  snprintf(scen, sizeof scen, "storage/%s/%s", p->prefix, name);
  snprintf(note, sizeof note, "%llu pages, %llu entries",
           (unsigned long long)pages, (unsigned long long)entries);
  bench_stat st = { (double)pages * p->psize / p->events, NAN, NAN, 1 };
  st.min = st.max = st.med;
  bench_emit(p->c, scen, "bytes/event", "bytes", st, NULL, NAN, note);
}

static bench_stat st_one(double v) {
  bench_stat st = { v, v, v, 1 };
  return st;
}

/* Loads the events into a new store; returns its stats (full). */
static int st_load(bench_ctx *c, const bench_wl *w, uint32_t threshold,
                   char *dir, size_t cap, evs_stats *out) {
  int rc = bench_mkdir(c, "storage", dir, cap);
  if (rc)
    return rc;
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.durability = EVS_NOSYNC;
  o.compress_threshold = threshold;
  evs_store *s = NULL;
  if ((rc = evs_store_open(&s, dir, &o)))
    return rc;
  long n = bench_evs_load(s, w, 0, w->n, 100, 0, NULL, NULL);
  if (n == (long)w->n)
    rc = evs_store_stats(s, out, 1);
  else
    rc = n < 0 ? (int)n : EVS_EIO;
  evs_store_close(s);
  return rc;
}

static void st_layout(bench_ctx *c) {
  size_t n = c->opt.quick ? 10000 : 200000;
  bench_wl_opts wo = bench_wl_default(n, BENCH_DATA_SIZE);
  bench_wl w;
  char dir[4200], rdir[4200];
  if (bench_wl_make(&w, &wo)) {
    bench_fail(c, "storage", "out of memory");
    return;
  }
  /* Logical bytes: id + stream name + type + data. */
  double names = 0;
  for (size_t i = 0; i < w.n; i++)
    names += (double)strlen(w.names[w.ev[i].stream]);
  double logical =
      16 + names / (double)w.n + strlen(BENCH_TYPE) + BENCH_DATA_SIZE;
  evs_stats st;
  int rc = st_load(c, &w, 0, dir, sizeof dir, &st);
  if (rc) {
    bench_fail(c, "storage/evstore", "load: %s", evs_strerror(rc));
    bench_wl_free(&w);
    return;
  }
  raw_store *raw = NULL;
  double raw_bpe = NAN;
  if (bench_mkdir(c, "storage-raw", rdir, sizeof rdir) == 0 &&
      raw_open(&raw, rdir, EVS_NOSYNC, 0) == 0) {
    if (raw_append(raw, &w, 0, w.n, 100, NULL, NULL) == (long)w.n) {
      raw_close(raw);
      raw = NULL;
      char f[4300];
      snprintf(f, sizeof f, "%s/data.mdb", rdir);
      raw_bpe = (double)bench_file_size(f) / (double)w.n;
    }
    raw_close(raw);
  }
  double used = (double)st.map_used / (double)st.events;
  double file = (double)st.file_size / (double)st.events;
  char note[200];
  snprintf(note, sizeof note,
           "%llu default events in batches of 100; pages in use; logical "
           "event (id+stream+type+data) = %.0f bytes",
           (unsigned long long)st.events, logical);
  bench_emit(c, "storage/evstore", "bytes/event", "bytes", st_one(used),
             "raw-lmdb-occ-index", raw_bpe, note);
  bench_emit(c, "storage/evstore", "bytes/event", "bytes", st_one(used),
             "logical-event", logical, NULL);
  bench_emit(c, "storage/evstore", "file bytes/event", "bytes", st_one(file),
             "raw-lmdb-occ-index", raw_bpe, "data.mdb size / events");
  bench_emit(c, "raw-lmdb-occ-index/storage", "bytes/event", "bytes",
             st_one(raw_bpe), "logical-event", logical,
             "data.mdb size / events");
  st_pages sp = { c, (double)w.n, 0, "db", 0, 0 };
  raw_db_pages(dir, st_page_cb, &sp, &sp.psize);
  bench_rmtree(c, dir);
  bench_rmtree(c, rdir);

  /* The store's own per-event compression, forced on. */
  rc = st_load(c, &w, 32, dir, sizeof dir, &st);
  if (rc == 0 && st.data_bytes_raw) {
    double per = (double)st.data_bytes_stored / (double)st.events;
    snprintf(note, sizeof note,
             "store's zstd level 3 per event, compress_threshold=32 "
             "(%llu of %llu events compressed); %.0f bytes/event in pages",
             (unsigned long long)st.compressed_events,
             (unsigned long long)st.events,
             (double)st.map_used / (double)st.events);
    bench_emit(c, "storage/zstd-store-threshold-32", "data bytes/event",
               "bytes", st_one(per), "raw-json",
               (double)st.data_bytes_raw / (double)st.events, note);
  } else if (rc) {
    bench_fail(c, "storage/zstd-store-threshold-32", "load: %s",
               evs_strerror(rc));
  }
  bench_rmtree(c, dir);
  bench_wl_free(&w);
}

/* ---- the store's trained dictionary ---------------------------------------
 */

static void st_store_dict(bench_ctx *c) {
  const char *scen = "storage/zstd-store-dict-16KiB";
  size_t ntrain = c->opt.quick ? 2000 : 10000;
  size_t ntest = c->opt.quick ? 5000 : 50000;
  bench_wl_opts wo = bench_wl_default(ntrain + ntest, BENCH_DATA_SIZE);
  wo.pool = (unsigned)(ntrain + ntest); /* every payload distinct */
  bench_wl w;
  char dir[4200];
  if (bench_wl_make(&w, &wo)) {
    bench_fail(c, scen, "out of memory");
    return;
  }
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.durability = EVS_NOSYNC;
  evs_store *s = NULL;
  int rc = bench_mkdir(c, "storage-dict", dir, sizeof dir);
  if (rc == 0)
    rc = evs_store_open(&s, dir, &o);
  evs_stats before, after;
  uint32_t id = 0;
  double train_s = 0;
  if (rc == 0) {
    long n = bench_evs_load(s, &w, 0, ntrain, 100, 0, NULL, NULL);
    rc = n == (long)ntrain ? 0 : n < 0 ? (int)n : EVS_EIO;
  }
  if (rc == 0)
    rc = evs_store_stats(s, &before, 1);
  if (rc == 0) {
    double t0 = bench_now();
    rc = evs_store_train_dictionary(s, 16384, ntrain, &id);
    train_s = bench_now() - t0;
  }
  if (rc == 0) {
    long n = bench_evs_load(s, &w, ntrain, ntrain + ntest, 100, 0, NULL, NULL);
    rc = n == (long)ntest ? 0 : n < 0 ? (int)n : EVS_EIO;
  }
  if (rc == 0)
    rc = evs_store_stats(s, &after, 1);
  if (rc) {
    bench_fail(c, scen, "%s (%s)", evs_strerror(rc), evs_last_error());
  } else {
    double raw = (double)(after.data_bytes_raw - before.data_bytes_raw);
    double stored =
        (double)(after.data_bytes_stored - before.data_bytes_stored);
    double n = (double)(after.events - before.events);
    char note[200];
    snprintf(note, sizeof note,
             "evs_store_train_dictionary(16 KiB) on %zu events in %.2f s, "
             "then %zu more events: %llu of them compressed",
             ntrain, train_s, ntest,
             (unsigned long long)(after.compressed_events -
                                  before.compressed_events));
    bench_emit(c, scen, "data bytes/event", "bytes", st_one(stored / n),
               "raw-json", raw / n, note);
    bench_emit(c, scen, "bytes/event", "bytes",
               st_one((double)after.map_used / (double)after.events), NULL, NAN,
               "pages in use per event, the whole store");
  }
  if (s)
    evs_store_close(s);
  bench_rmtree(c, dir);
  bench_wl_free(&w);
}

/* ---- dictionaries (offline) ---------------------------------------------- */

static void st_dict(bench_ctx *c) {
  size_t ntrain = c->opt.quick ? 2000 : 10000;
  size_t ntest = c->opt.quick ? 5000 : 50000;
  size_t sz = BENCH_DATA_SIZE;
  uint8_t *train = malloc(ntrain * sz), *test = malloc(ntest * sz);
  size_t *tsizes = malloc(ntrain * sizeof *tsizes);
  size_t cap = ZSTD_compressBound(sz);
  uint8_t *out = malloc(ntest * cap), *back = malloc(sz);
  size_t *olen = malloc(ntest * sizeof *olen);
  ZSTD_CCtx *cctx = ZSTD_createCCtx();
  ZSTD_DCtx *dctx = ZSTD_createDCtx();
  if (!train || !test || !tsizes || !out || !back || !olen || !cctx || !dctx) {
    bench_fail(c, "storage/zstd-dict", "out of memory");
    goto out;
  }
  /* Training and test events are distinct (different seeds). */
  uint64_t rng = 0x7a1a7a1aull;
  for (size_t i = 0; i < ntrain; i++) {
    bench_json_payload(train + i * sz, sz, &rng);
    tsizes[i] = sz;
  }
  rng = 0x7e577e57ull;
  for (size_t i = 0; i < ntest; i++)
    bench_json_payload(test + i * sz, sz, &rng);
  double raw = (double)(ntest * sz);

  /* No dictionary: zstd level 3 per event, as the store does. */
  {
    double total = 0;
    for (size_t i = 0; i < ntest; i++) {
      size_t n = ZSTD_compressCCtx(cctx, out, cap, test + i * sz, sz, 3);
      total += ZSTD_isError(n) ? (double)sz : (double)n;
    }
    bench_emit(c, "storage/zstd-per-event", "data bytes/event", "bytes",
               st_one(total / (double)ntest), "raw-json", (double)sz,
               "offline, zstd level 3 per 200-byte event, no dictionary");
  }

  static const size_t dict_sizes[] = { 4096, 16384, 65536 };
  for (size_t di = 0; di < 3; di++) {
    size_t dcap = dict_sizes[di];
    char scen[64];
    snprintf(scen, sizeof scen, "storage/zstd-dict-%zuKiB", dcap / 1024);
    uint8_t *dict = malloc(dcap);
    if (dict == NULL)
      continue;
    double t0 = bench_now();
    size_t dlen =
        ZDICT_trainFromBuffer(dict, dcap, train, tsizes, (unsigned)ntrain);
    double train_s = bench_now() - t0;
    if (ZDICT_isError(dlen)) {
      bench_fail(c, scen, "ZDICT_trainFromBuffer: %s",
                 ZDICT_getErrorName(dlen));
      free(dict);
      continue;
    }
    ZSTD_CDict *cd = ZSTD_createCDict(dict, dlen, 3);
    ZSTD_DDict *dd = ZSTD_createDDict(dict, dlen);
    double csec[BENCH_MAX_REPS], dsec[BENCH_MAX_REPS];
    double total = 0;
    int ok = cd && dd;
    for (int r = 0; ok && r < c->opt.reps; r++) {
      ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
      ZSTD_CCtx_refCDict(cctx, cd);
      ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0);
      ZSTD_CCtx_setParameter(cctx, ZSTD_c_dictIDFlag, 0);
      total = 0;
      t0 = bench_now();
      for (size_t i = 0; i < ntest; i++) {
        size_t n = ZSTD_compress2(cctx, out + i * cap, cap, test + i * sz, sz);
        if (ZSTD_isError(n)) {
          ok = 0;
          break;
        }
        olen[i] = n;
        total += (double)n;
      }
      csec[r] = bench_now() - t0;
      t0 = bench_now();
      for (size_t i = 0; ok && i < ntest; i++) {
        size_t n = ZSTD_decompress_usingDDict(dctx, back, sz, out + i * cap,
                                              olen[i], dd);
        if (ZSTD_isError(n) || n != sz || memcmp(back, test + i * sz, sz))
          ok = 0;
      }
      dsec[r] = bench_now() - t0;
    }
    if (ok) {
      char note[200];
      snprintf(note, sizeof note,
               "zstd alone, offline: %zu-byte dictionary trained on %zu "
               "events in %.2f s, level 3",
               dlen, ntrain, train_s);
      bench_emit(c, scen, "data bytes/event", "bytes",
                 st_one(total / (double)ntest), "raw-json", (double)sz, note);
      double cm[BENCH_MAX_REPS], dm[BENCH_MAX_REPS];
      for (int r = 0; r < c->opt.reps; r++) {
        cm[r] = raw / csec[r] / 1e6;
        dm[r] = raw / dsec[r] / 1e6;
      }
      bench_emit(c, scen, "compress MB/s", "MB/s",
                 bench_stat_of(cm, c->opt.reps), NULL, NAN,
                 "one thread, per event, raw bytes in");
      bench_emit(c, scen, "decompress MB/s", "MB/s",
                 bench_stat_of(dm, c->opt.reps), NULL, NAN,
                 "one thread, per event, raw bytes out");
    } else {
      bench_fail(c, scen, "compression round trip failed");
    }
    ZSTD_freeCDict(cd);
    ZSTD_freeDDict(dd);
    free(dict);
  }
out:
  ZSTD_freeCCtx(cctx);
  ZSTD_freeDCtx(dctx);
  free(train);
  free(test);
  free(tsizes);
  free(out);
  free(back);
  free(olen);
}

void sc_storage(bench_ctx *c) {
  st_layout(c);
  st_store_dict(c);
  st_dict(c);
}
