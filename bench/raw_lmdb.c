/*
 * evstore-bench — the raw LMDB reference ("raw-lmdb-occ-index").
 *
 * The ceiling for an LMDB event store: the same events, the same checks,
 * written by a plain loop with nothing else. One environment, three
 * databases:
 *
 *   log           position u64 BE -> id[16] | stream id u64 BE |
 *                 version u64 BE | type length u8 | type | data
 *                 (MDB_APPEND, encoded in place with MDB_RESERVE)
 *   streams       stream name -> stream id u64 | last version i64
 *                 (read, compare with the expected version, write)
 *   stream_index  stream id u64 BE | version u64 BE -> position u64 BE
 *
 * Positions and stream ids are counted in memory (one process, one writer);
 * there is no idempotency index, no category or type index, no checksum,
 * no compression, no interning and no group commit: each transaction is
 * the caller's batch. The reads decode what they return (version, type,
 * data) and fold it into a checksum so that nothing is optimised away.
 *
 * The "full" layout ("raw-lmdb-evstore-layout") adds what evstore's layout
 * has beyond that (docs/storage.md), still with nothing else: the stream
 * index as a DUPSORT|DUPFIXED list per stream (version|position, appended
 * with MDB_APPENDDUP), the id index (16-byte id -> position,
 * MDB_NOOVERWRITE) and the category and type indexes (DUPSORT|DUPFIXED
 * lists of positions). It separates what the layout costs in LMDB from
 * what evstore's code adds around it.
 *
 * raw_scan_evstore() and raw_db_pages() open an evstore directory with
 * plain LMDB after the store is closed (never while it is open: LMDB's
 * locks break when one process opens an environment twice).
 */
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "store/internal.h"

struct raw_store {
  MDB_env *env;
  MDB_dbi log, streams, sindex;
  int full; /* evstore's layout */
  MDB_dbi ids, cat_index, type_index;
  uint64_t next_pos; /* next position to write */
  uint64_t next_sid; /* next stream id to assign */
  MDB_txn *rtxn;     /* reused read transaction (reset between reads) */
  uint64_t sum;      /* checksum of decoded fields */
};

static volatile uint64_t raw_sink;

static void raw_be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

static uint64_t raw_get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

static int raw_err(int rc, const char *what) {
  fprintf(stderr, "evstore-bench: raw LMDB: %s: %s\n", what, mdb_strerror(rc));
  return EVS_EIO;
}

int raw_open(raw_store **out, const char *dir, evs_durability dur,
             int read_only) {
  return raw_open_layout(out, dir, dur, read_only, 0);
}

int raw_open_layout(raw_store **out, const char *dir, evs_durability dur,
                    int read_only, int full) {
  raw_store *r = calloc(1, sizeof *r);
  if (r == NULL)
    return EVS_ENOMEM;
  r->full = full;
  unsigned flags = dur == EVS_NOSYNC       ? MDB_NOSYNC
                   : dur == EVS_NOMETASYNC ? MDB_NOMETASYNC
                                           : 0u;
  if (read_only)
    flags |= MDB_RDONLY;
  int rc = mdb_env_create(&r->env);
  if (rc == 0)
    rc = mdb_env_set_maxdbs(r->env, 8);
  if (rc == 0)
    rc = mdb_env_set_mapsize(r->env, (size_t)8 << 30);
  if (rc == 0)
    rc = mdb_env_open(r->env, dir, flags, 0644);
  if (rc) {
    raw_err(rc, "open");
    if (r->env)
      mdb_env_close(r->env);
    free(r);
    return EVS_EIO;
  }
  MDB_txn *txn;
  unsigned create = read_only ? 0 : MDB_CREATE;
  rc = mdb_txn_begin(r->env, NULL, read_only ? MDB_RDONLY : 0, &txn);
  if (rc == 0)
    rc = mdb_dbi_open(txn, "log", create, &r->log);
  if (rc == 0)
    rc = mdb_dbi_open(txn, "streams", create, &r->streams);
  unsigned dup = full ? MDB_DUPSORT | MDB_DUPFIXED : 0;
  if (rc == 0)
    rc = mdb_dbi_open(txn, "stream_index", create | dup, &r->sindex);
  if (rc == 0 && full)
    rc = mdb_dbi_open(txn, "ids", create, &r->ids);
  if (rc == 0 && full)
    rc = mdb_dbi_open(txn, "category_index", create | dup, &r->cat_index);
  if (rc == 0 && full)
    rc = mdb_dbi_open(txn, "type_index", create | dup, &r->type_index);
  if (rc == 0) {
    MDB_cursor *cur;
    MDB_val k, v;
    MDB_stat st;
    r->next_pos = 1;
    if (mdb_cursor_open(txn, r->log, &cur) == 0) {
      if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0)
        r->next_pos = raw_get64(k.mv_data) + 1;
      mdb_cursor_close(cur);
    }
    rc = mdb_stat(txn, r->streams, &st);
    r->next_sid = st.ms_entries + 1;
  }
  /* Commit even a read-only transaction: aborting it would close the
   * database handles it opened. */
  if (rc == 0)
    rc = mdb_txn_commit(txn);
  else
    mdb_txn_abort(txn);
  if (rc) {
    raw_err(rc, "open databases");
    mdb_env_close(r->env);
    free(r);
    return EVS_EIO;
  }
  *out = r;
  return 0;
}

void raw_close(raw_store *r) {
  if (r == NULL)
    return;
  if (r->rtxn)
    mdb_txn_abort(r->rtxn);
  mdb_env_sync(r->env, 1);
  mdb_env_close(r->env);
  free(r);
}

/* Appends one event inside txn: check, index, log. 1 = version conflict. */
static int raw_put_event(raw_store *r, MDB_txn *txn, const bench_wl *w,
                         const bench_event *e, int64_t expected) {
  const char *name = w->names[e->stream];
  MDB_val sk = { strlen(name), (void *)name }, sv;
  struct {
    uint64_t sid;
    int64_t last;
  } srec;
  int rc = mdb_get(txn, r->streams, &sk, &sv);
  if (rc == MDB_NOTFOUND) {
    srec.sid = r->next_sid++;
    srec.last = -1;
  } else if (rc) {
    return raw_err(rc, "streams get");
  } else {
    memcpy(&srec, sv.mv_data, sizeof srec);
  }
  if (srec.last != expected)
    return 1;
  srec.last = expected + 1;
  sv.mv_size = sizeof srec;
  sv.mv_data = &srec;
  if ((rc = mdb_put(txn, r->streams, &sk, &sv, 0)))
    return raw_err(rc, "streams put");

  uint8_t pk[8], ik[16];
  uint64_t pos = r->next_pos;
  raw_be64(pk, pos);
  MDB_val pkv = { 8, pk };
  if (r->full) {
    /* evstore's layout: sid -> [version|position] (DUPFIXED list), the id
     * index and the category/type lists (one category and type per kind
     * in this workload). */
    uint8_t sidk[8], vp[16], ck[8];
    raw_be64(sidk, srec.sid);
    raw_be64(vp, (uint64_t)srec.last);
    raw_be64(vp + 8, pos);
    MDB_val skv = { 8, sidk }, vpv = { 16, vp };
    if ((rc = mdb_put(txn, r->sindex, &skv, &vpv, MDB_APPENDDUP)))
      return raw_err(rc, "index put");
    MDB_val idk = { 16, (void *)e->id.bytes };
    if ((rc = mdb_put(txn, r->ids, &idk, &pkv, MDB_NOOVERWRITE)))
      return raw_err(rc, "ids put");
    raw_be64(ck, 1u + e->kind);
    MDB_val ckv = { 8, ck };
    if ((rc = mdb_put(txn, r->cat_index, &ckv, &pkv, MDB_APPENDDUP)))
      return raw_err(rc, "category index put");
    if ((rc = mdb_put(txn, r->type_index, &ckv, &pkv, MDB_APPENDDUP)))
      return raw_err(rc, "type index put");
  } else {
    raw_be64(ik, srec.sid);
    raw_be64(ik + 8, (uint64_t)srec.last);
    MDB_val ikv = { 16, ik };
    if ((rc = mdb_put(txn, r->sindex, &ikv, &pkv, 0)))
      return raw_err(rc, "index put");
  }

  const char *type = e->kind ? w->o.type2 : w->o.type;
  size_t tl = strlen(type);
  MDB_val lv = { 16 + 8 + 8 + 1 + tl + e->data_len, NULL };
  if ((rc = mdb_put(txn, r->log, &pkv, &lv, MDB_APPEND | MDB_RESERVE)))
    return raw_err(rc, "log put");
  uint8_t *p = lv.mv_data;
  memcpy(p, e->id.bytes, 16);
  raw_be64(p + 16, srec.sid);
  raw_be64(p + 24, (uint64_t)srec.last);
  p[32] = (uint8_t)tl;
  memcpy(p + 33, type, tl);
  memcpy(p + 33 + tl, e->data, e->data_len);
  r->next_pos++;
  return 0;
}

long raw_append(raw_store *r, const bench_wl *w, size_t from, size_t to,
                size_t batch, bench_lat *lat, double *secs) {
  double total = 0;
  size_t i = from;
  if (batch == 0)
    batch = 1;
  while (i < to) {
    size_t end = i + batch < to ? i + batch : to;
    uint64_t save_pos = r->next_pos, save_sid = r->next_sid;
    double t0 = bench_now();
    MDB_txn *txn;
    int rc = mdb_txn_begin(r->env, NULL, 0, &txn);
    if (rc)
      return raw_err(rc, "begin");
    for (size_t j = i; j < end; j++) {
      rc = raw_put_event(r, txn, w, &w->ev[j], w->ev[j].version - 1);
      if (rc) {
        mdb_txn_abort(txn);
        r->next_pos = save_pos;
        r->next_sid = save_sid;
        fprintf(stderr, "evstore-bench: raw LMDB: %s at event %zu\n",
                rc == 1 ? "unexpected version conflict" : "put failed", j);
        return EVS_EIO;
      }
    }
    if ((rc = mdb_txn_commit(txn)))
      return raw_err(rc, "commit");
    double t1 = bench_now();
    total += t1 - t0;
    if (lat)
      bench_lat_add(lat, (t1 - t0) * 1e6);
    i = end;
  }
  if (secs)
    *secs = total;
  return (long)(i - from);
}

int raw_check_stale(raw_store *r, const bench_wl *w) {
  MDB_txn *txn;
  if (w->n == 0 || mdb_txn_begin(r->env, NULL, 0, &txn))
    return -1;
  uint64_t save_pos = r->next_pos, save_sid = r->next_sid;
  /* Event 0's stream has events now: "no stream" (-1) is stale. */
  int rc = raw_put_event(r, txn, w, &w->ev[0], -1);
  mdb_txn_abort(txn);
  r->next_pos = save_pos;
  r->next_sid = save_sid;
  return rc == 1 ? 0 : -1;
}

static int raw_rtxn(raw_store *r) {
  int rc = r->rtxn ? mdb_txn_renew(r->rtxn)
                   : mdb_txn_begin(r->env, NULL, MDB_RDONLY, &r->rtxn);
  return rc ? raw_err(rc, "read begin") : 0;
}

/* Decodes one log record and folds it into the checksum: its data size. */
static size_t raw_decode(raw_store *r, const MDB_val *v) {
  const uint8_t *p = v->mv_data;
  if (v->mv_size < 33)
    return 0;
  uint64_t version = raw_get64(p + 24);
  size_t tl = p[32];
  if (33 + tl > v->mv_size)
    return 0;
  const uint8_t *data = p + 33 + tl;
  size_t dlen = v->mv_size - 33 - tl;
  r->sum +=
      version + p[0] + p[33] + (dlen ? data[0] + data[dlen - 1] : 0) + dlen;
  return dlen;
}

int raw_scan(raw_store *r, uint64_t *events, uint64_t *bytes) {
  if (raw_rtxn(r))
    return EVS_EIO;
  MDB_cursor *cur;
  MDB_val k, v;
  uint64_t n = 0, b = 0;
  int rc = mdb_cursor_open(r->rtxn, r->log, &cur);
  if (rc)
    return raw_err(rc, "cursor");
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    b += raw_decode(r, &v);
    n++;
  }
  mdb_cursor_close(cur);
  mdb_txn_reset(r->rtxn);
  *events = n;
  *bytes = b;
  return 0;
}

int raw_read_stream(raw_store *r, const char *name, int64_t from_version,
                    uint64_t limit, uint64_t *events, uint64_t *bytes) {
  if (r->full)
    return EVS_EINVAL; /* reads use the occ-index layout */
  if (raw_rtxn(r))
    return EVS_EIO;
  MDB_val sk = { strlen(name), (void *)name }, sv;
  uint64_t n = 0, b = 0;
  int rc = mdb_get(r->rtxn, r->streams, &sk, &sv);
  if (rc == 0) {
    uint64_t sid;
    memcpy(&sid, sv.mv_data, 8);
    uint8_t ik[16];
    raw_be64(ik, sid);
    raw_be64(ik + 8, (uint64_t)(from_version < 0 ? 0 : from_version));
    MDB_val k = { 16, ik }, v;
    MDB_cursor *cur;
    rc = mdb_cursor_open(r->rtxn, r->sindex, &cur);
    if (rc == 0) {
      for (int c = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
           c == 0 && raw_get64(k.mv_data) == sid && (!limit || n < limit);
           c = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        MDB_val ek = { 8, v.mv_data }, ev;
        if (mdb_get(r->rtxn, r->log, &ek, &ev) == 0) {
          b += raw_decode(r, &ev);
          n++;
        }
      }
      mdb_cursor_close(cur);
    }
  }
  mdb_txn_reset(r->rtxn);
  *events = n;
  *bytes = b;
  return rc == 0 || rc == MDB_NOTFOUND ? 0 : raw_err(rc, "stream read");
}

/* ---- plain LMDB over an evstore directory (store closed) ----------------- */

static int raw_env_ro(MDB_env **env, const char *dir) {
  int rc = mdb_env_create(env);
  if (rc == 0)
    rc = mdb_env_set_maxdbs(*env, 32);
  if (rc == 0)
    rc = mdb_env_open(*env, dir, MDB_RDONLY | MDB_NOTLS, 0644);
  if (rc) {
    if (*env)
      mdb_env_close(*env);
    *env = NULL;
    return raw_err(rc, "open evstore directory");
  }
  return 0;
}

int raw_scan_evstore(const char *dir, uint64_t *events, uint64_t *bytes) {
  MDB_env *env = NULL;
  if (raw_env_ro(&env, dir))
    return EVS_EIO;
  MDB_txn *txn;
  MDB_dbi dbi;
  MDB_cursor *cur;
  MDB_val k, v;
  uint64_t n = 0, b = 0, sum = 0;
  int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
  if (rc == 0)
    rc = mdb_dbi_open(txn, "events", 0, &dbi);
  if (rc == 0)
    rc = mdb_cursor_open(txn, dbi, &cur);
  if (rc) {
    mdb_env_close(env);
    return raw_err(rc, "evstore events database");
  }
  int bad = 0;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    evs__record rec;
    /* The store's own decoder: structure and XXH3 checksum. */
    if (evs__record_decode(&rec, v.mv_data, v.mv_size)) {
      bad++;
      continue;
    }
    const uint8_t *d = rec.data;
    sum += rec.version + rec.type_id + rec.stream_id +
           (rec.data_len ? d[0] + d[rec.data_len - 1] : 0) + rec.data_len;
    b += rec.raw_len;
    n++;
  }
  mdb_cursor_close(cur);
  mdb_txn_abort(txn);
  mdb_env_close(env);
  *events = n;
  *bytes = b;
  raw_sink += sum; /* keeps the decoding from being optimised away */
  if (bad) {
    fprintf(stderr, "evstore-bench: %d records failed to decode\n", bad);
    return EVS_ECORRUPT;
  }
  return 0;
}

int raw_db_pages(const char *dir,
                 void (*cb)(const char *name, uint64_t pages, uint64_t entries,
                            void *payload),
                 void *payload, unsigned *page_size) {
  MDB_env *env = NULL;
  if (raw_env_ro(&env, dir))
    return EVS_EIO;
  MDB_txn *txn;
  MDB_cursor *cur;
  MDB_val k, v;
  MDB_stat st;
  MDB_envinfo info;
  int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
  if (rc) {
    mdb_env_close(env);
    return raw_err(rc, "read");
  }
  mdb_env_stat(env, &st);
  *page_size = st.ms_psize;
  mdb_env_info(env, &info);
  uint64_t counted = 0, free_pages = 0;
  /* FREE_DBI is 0 and MAIN_DBI 1 in LMDB 0.9. Each value of the free
   * database is a list of page numbers whose first word is its length. */
  if (mdb_stat(txn, 0, &st) == 0) {
    counted += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
    if (mdb_cursor_open(txn, 0, &cur) == 0) {
      for (int c = mdb_cursor_get(cur, &k, &v, MDB_FIRST); c == 0;
           c = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        size_t len;
        if (v.mv_size >= sizeof len) {
          memcpy(&len, v.mv_data, sizeof len);
          free_pages += len;
        }
      }
      mdb_cursor_close(cur);
    }
    cb("(free pages, reusable)", free_pages, 0, payload);
  }
  MDB_dbi main_dbi;
  rc = mdb_dbi_open(txn, NULL, 0, &main_dbi);
  if (rc == 0 && mdb_cursor_open(txn, main_dbi, &cur) == 0) {
    for (int c = mdb_cursor_get(cur, &k, &v, MDB_FIRST); c == 0;
         c = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      char name[128];
      size_t len = k.mv_size < sizeof name - 1 ? k.mv_size : sizeof name - 1;
      memcpy(name, k.mv_data, len);
      name[len] = '\0';
      MDB_dbi dbi;
      if (mdb_dbi_open(txn, name, 0, &dbi) == 0 &&
          mdb_stat(txn, dbi, &st) == 0) {
        uint64_t pages =
            st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
        counted += pages;
        cb(name, pages, st.ms_entries, payload);
      }
    }
    mdb_cursor_close(cur);
  }
  if (mdb_stat(txn, main_dbi, &st) == 0)
    counted += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
  /* mdb_stat does not count the pages of DUPSORT sub-databases (the
   * stream, category and type lists); they are what is left, with the
   * main database, the free database and the two meta pages. */
  uint64_t total = info.me_last_pgno + 1;
  uint64_t rest =
      total > counted + free_pages ? total - counted - free_pages : 0;
  cb("(DUPSORT lists, meta, main, free DB)", rest, 0, payload);
  cb("(file: last page + 1)", total, 0, payload);
  mdb_txn_abort(txn);
  mdb_env_close(env);
  return 0;
}
