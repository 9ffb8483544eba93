/*
 * evstore — the read path: stream and $all iterators, stream info and
 * listing, temporal lookups.
 *
 * An iterator owns an LMDB read transaction and a shared hold on the
 * map-resize lock while it is between calls, so that the slices it hands
 * out stay valid. Every EVS__RENEW_EVERY entries considered, or when a map
 * resize is waiting, it lets go (mdb_txn_reset), takes the hold again
 * (mdb_txn_renew, which keeps the reader slot and the cursors) and seeks
 * back to where it was by key: a long scan never pins old pages for long
 * and never blocks the writer from growing the map.
 *
 * Per-event work is kept to what LMDB cannot avoid: a stream read takes
 * its index entries a page at a time (MDB_GET_MULTIPLE on the DUPFIXED
 * list) and looks records up with a cursor that steps instead of seeking
 * when the next record is adjacent in the log; $all and
 * filtered reads resolve stream and type ids through caches that hold
 * copies of the names (ids and names never change) and so survive a
 * renew; a stream's visibility limits are re-read only when the renewed
 * snapshot is a newer one.
 */
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "store/internal.h"

#define EVS__RENEW_EVERY 4096
/* Stream cache of $all and filtered reads: grows to this many streams,
 * then starts over. Type cache: the same, for every iterator. */
#define EVS__SCACHE_MAX 65536u
#define EVS__TCACHE_MAX 1024u

/* Big-endian loads and stores for the per-event paths: one byte swap
 * instead of internal.h's portable byte loops, which GCC does not merge. */
static inline uint64_t evs__ld64(const void *p) {
  uint64_t v;
  memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

static inline void evs__st64(void *p, uint64_t v) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  memcpy(p, &v, 8);
}

enum {
  EVS__IT_STREAM = 1,
  EVS__IT_ALL = 2,
  EVS__IT_INDEX = 3
};

/* One cached id: its name (a copy, at name_off in the cache's arena) and,
 * for streams, what decides which of its events are visible. */
typedef struct evs__cent {
  uint64_t id;
  uint32_t name_off;
  uint16_t name_len;
  uint8_t used;
  uint8_t show;   /* streams: 0 = every event hidden or filtered out */
  unsigned epoch; /* iterator epoch at which age_cut was computed */
  size_t txnid;   /* snapshot whose stream record gave lo and show */
  int64_t lo;     /* lowest visible version */
  int64_t age_cut;
  uint64_t max_age_sec;
} evs__cent;

/* An open-addressing table of ids (linear probing) and an arena of
 * names. Names are referenced by offset: the arena may move as it grows. */
typedef struct evs__cache {
  evs__cent *tab;
  uint32_t cap, count, max;
  char *names;
  size_t nlen, ncap;
} evs__cache;

struct evs_iter {
  evs_store *s;
  MDB_txn *txn;
  MDB_cursor *cur;   /* stream_index, a filter index, or events */
  MDB_cursor *ecur;  /* events, for lookups by position (opened on use) */
  uint64_t ecur_pos; /* where ecur is (0 = unknown) */
  int kind;
  evs_direction dir;
  int state; /* 0 = running, 1 = ended, <0 = error */
  int positioned;
  uint64_t limit, count;
  unsigned since_renew;
  unsigned epoch; /* bumped at every begin or renew */
  size_t txnid;   /* the current snapshot */
  uint64_t checkpoint;
  /* the current page of a DUPFIXED list (stream and index reads) */
  const uint8_t *batch;
  size_t batch_n, batch_i, esize;
  /* stream reads */
  uint64_t sid;
  char name[EVS_MAX_NAME_LEN + 1];
  size_t name_len;
  int64_t next_version;
  int64_t lo_version;
  int64_t age_cut;
  uint64_t hi_position;
  /* $all and index reads */
  uint64_t next_pos;
  uint64_t lo_pos, hi_pos;
  MDB_dbi index_dbi;
  uint64_t index_key;
  char *prefix;
  size_t prefix_len;
  int has_cat;
  uint64_t cid;
  int has_type;
  uint64_t tid;
  uint32_t group_size, group_member;
  int restartable; /* forward $all or index read (evs__iter_restart) */
  /* caches: streams ($all and index reads only) and types */
  evs__cache *sc;
  evs__cache tc;
  /* the current event */
  evs_event ev;
  void *zbuf;
  size_t zcap;
  void *dctx;
};

/* ---- caches -------------------------------------------------------------- */

static void evs__cache_free(evs__cache *c) {
  if (c == NULL)
    return;
  free(c->tab);
  free(c->names);
  c->tab = NULL;
  c->names = NULL;
  c->cap = c->count = 0;
  c->nlen = c->ncap = 0;
}

static void evs__cache_init(evs__cache *c, uint32_t max) {
  memset(c, 0, sizeof *c);
  c->max = max;
}

static inline uint32_t evs__cache_slot(const evs__cache *c, uint64_t id) {
  return (uint32_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (c->cap - 1);
}

static inline evs__cent *evs__cache_find(const evs__cache *c, uint64_t id) {
  if (c->cap == 0)
    return NULL;
  for (uint32_t i = evs__cache_slot(c, id);; i = (i + 1) & (c->cap - 1)) {
    evs__cent *e = &c->tab[i];
    if (!e->used)
      return NULL;
    if (e->id == id)
      return e;
  }
}

/* Adds `id` with a copy of `name`; the entry's other fields are zero.
 * When the table is at its maximum size and full, it starts over. */
static int evs__cache_add(evs__cache *c, uint64_t id, const void *name,
                          size_t len, evs__cent **out) {
  if (len > EVS_MAX_NAME_LEN)
    return evs__err(EVS_ECORRUPT, "cached name of %zu bytes", len);
  if ((c->count + 1) * 4 > c->cap * 3) {
    uint32_t ncap = c->cap ? c->cap * 2 : 16;
    if (ncap > c->max) {
      /* Full at its maximum size: forget everything. */
      memset(c->tab, 0, (size_t)c->cap * sizeof *c->tab);
      c->count = 0;
      c->nlen = 0;
    } else {
      evs__cent *nt = calloc(ncap, sizeof *nt);
      if (nt == NULL)
        return evs__err(EVS_ENOMEM, "out of memory");
      evs__cent *old = c->tab;
      uint32_t ocap = c->cap;
      c->tab = nt;
      c->cap = ncap;
      for (uint32_t i = 0; i < ocap; i++) {
        if (!old[i].used)
          continue;
        uint32_t j = evs__cache_slot(c, old[i].id);
        while (nt[j].used)
          j = (j + 1) & (ncap - 1);
        nt[j] = old[i];
      }
      free(old);
    }
  }
  if (c->nlen + len > c->ncap) {
    size_t ncap = c->ncap ? c->ncap * 2 : 1024;
    while (ncap < c->nlen + len)
      ncap *= 2;
    char *nn = realloc(c->names, ncap);
    if (nn == NULL)
      return evs__err(EVS_ENOMEM, "out of memory");
    c->names = nn;
    c->ncap = ncap;
  }
  uint32_t i = evs__cache_slot(c, id);
  while (c->tab[i].used)
    i = (i + 1) & (c->cap - 1);
  evs__cent *e = &c->tab[i];
  memset(e, 0, sizeof *e);
  e->used = 1;
  e->id = id;
  e->name_off = (uint32_t)c->nlen;
  e->name_len = (uint16_t)len;
  if (len)
    memcpy(c->names + c->nlen, name, len);
  c->nlen += len;
  c->count++;
  *out = e;
  return 0;
}

static inline evs_slice evs__cache_name(const evs__cache *c,
                                        const evs__cent *e) {
  evs_slice s = { c->names + e->name_off, e->name_len };
  return s;
}

static int evs__type_of(evs_iter *it, uint64_t tid, evs_slice *out) {
  evs__cent *e = evs__cache_find(&it->tc, tid);
  if (EVS__UNLIKELY(e == NULL)) {
    evs_slice name;
    int rc = evs__type_name(it->s, it->txn, tid, &name);
    if (rc == 0)
      rc = evs__cache_add(&it->tc, tid, name.data, name.len, &e);
    if (rc)
      return rc;
  }
  *out = evs__cache_name(&it->tc, e);
  return 0;
}

/* Reads stream e's record in the current snapshot and sets what decides
 * the visibility of its events. */
static int evs__stream_load(evs_iter *it, evs__cent *e) {
  evs_slice name = evs__cache_name(it->sc, e);
  evs__stream_rec st;
  int rc = evs__stream_get(it->s, it->txn, name.data, name.len, &st);
  if (rc == EVS_ENOSTREAM)
    return evs__err(EVS_ECORRUPT, "stream id %llu has no stream record",
                    (unsigned long long)e->id);
  if (rc)
    return rc;
  int show = !(st.flags & (EVS_STREAM_TOMBSTONED | EVS_STREAM_DELETED));
  if (it->prefix_len && (name.len < it->prefix_len ||
                         memcmp(name.data, it->prefix, it->prefix_len) != 0))
    show = 0;
  if (it->has_cat && st.category_id != it->cid)
    show = 0;
  if (it->group_size > 1 &&
      evs_stream_hash(name.data, name.len) % it->group_size != it->group_member)
    show = 0;
  e->show = (uint8_t)show;
  e->lo = evs__visible_from(&st);
  e->max_age_sec = st.max_age_sec;
  e->txnid = it->txnid;
  return 0;
}

/* The cache entry of stream `sid`, valid in the current snapshot. */
static int evs__stream_of(evs_iter *it, uint64_t sid, evs__cent **out) {
  evs__cent *e = evs__cache_find(it->sc, sid);
  if (EVS__LIKELY(e != NULL && e->epoch == it->epoch)) {
    *out = e;
    return 0;
  }
  int rc;
  if (e == NULL) {
    evs_slice name;
    rc = evs__stream_name(it->s, it->txn, sid, &name);
    if (rc == 0)
      rc = evs__cache_add(it->sc, sid, name.data, name.len, &e);
    if (rc)
      return rc;
    e->txnid = it->txnid + 1; /* not loaded yet */
  }
  /* First use in this epoch: a newer snapshot may have changed the
   * stream's record (metadata, deletes, and max_count moves with every
   * append); within one snapshot only the time for max_age moves. */
  if (e->txnid != it->txnid && (rc = evs__stream_load(it, e)) != 0)
    return rc;
  e->age_cut = e->max_age_sec
                   ? evs__now_ns() - (int64_t)e->max_age_sec * 1000000000LL
                   : INT64_MIN;
  e->epoch = it->epoch;
  *out = e;
  return 0;
}

/* ---- transaction handling ---------------------------------------------- */

static MDB_dbi evs__it_dbi(const evs_iter *it) {
  return it->kind == EVS__IT_STREAM  ? it->s->db_stream_index
         : it->kind == EVS__IT_INDEX ? it->index_dbi
                                     : it->s->db_events;
}

/* State that belongs to one snapshot: reset at every begin and renew. */
static void evs__it_fresh(evs_iter *it) {
  it->positioned = 0;
  it->since_renew = 0;
  it->batch = NULL;
  it->batch_n = it->batch_i = 0;
  it->ecur_pos = 0;
  it->epoch++;
  it->txnid = mdb_txn_id(it->txn);
}

static void evs__it_end(evs_iter *it) {
  if (it->cur) {
    mdb_cursor_close(it->cur);
    it->cur = NULL;
  }
  if (it->ecur) {
    mdb_cursor_close(it->ecur);
    it->ecur = NULL;
  }
  if (it->txn) {
    evs__read_end(it->s, it->txn);
    it->txn = NULL;
  }
}

static int evs__it_begin(evs_iter *it) {
  int rc = evs__read_begin(it->s, &it->txn);
  if (rc)
    return rc;
  int mrc = mdb_cursor_open(it->txn, evs__it_dbi(it), &it->cur);
  if (mrc) {
    evs__it_end(it);
    return evs__err(evs__lmdb_err(mrc), "cursor: %s", mdb_strerror(mrc));
  }
  evs__it_fresh(it);
  return 0;
}

/* Lets go of the snapshot and takes the newest one, keeping the
 * transaction handle, its reader slot and the cursors. Falls back to a new
 * transaction when the renew fails (the map was resized by another
 * process, say). */
static int evs__it_renew(evs_iter *it) {
  mdb_txn_reset(it->txn);
  evs__rd_release(it->s);
  evs__rd_acquire(it->s);
  int mrc = mdb_txn_renew(it->txn);
  if (mrc == 0)
    mrc = mdb_cursor_renew(it->txn, it->cur);
  if (mrc == 0 && it->ecur)
    mrc = mdb_cursor_renew(it->txn, it->ecur);
  if (mrc == 0) {
    evs__it_fresh(it);
    return 0;
  }
  evs__it_end(it);
  return evs__it_begin(it);
}

static inline int evs__maybe_renew(evs_iter *it) {
  if (EVS__LIKELY(it->since_renew < EVS__RENEW_EVERY &&
                  !evs__rd_should_yield(it->s)))
    return 0;
  return evs__it_renew(it);
}

/* ---- building the current event ----------------------------------------- */

static int evs__it_fill(evs_iter *it, uint64_t pos, const evs__record *r,
                        evs_slice stream_name) {
  evs_event *ev = &it->ev;
  int rc = evs__type_of(it, r->type_id, &ev->type);
  if (rc)
    return rc;
  rc = evs__record_data(it->s, r, &it->zbuf, &it->zcap, &it->dctx, &ev->data);
  if (rc)
    return evs__err(rc, "event at position %llu: %s", (unsigned long long)pos,
                    evs_last_error());
  ev->position = pos;
  ev->version = (int64_t)r->version;
  ev->timestamp_ns = r->timestamp_ns;
  ev->stream_id = r->stream_id;
  memcpy(ev->id.bytes, r->id, 16);
  ev->stream = stream_name;
  ev->metadata.data = r->metadata;
  ev->metadata.len = r->metadata_len;
  return 0;
}

/* Looks the record at `pos` up and decodes it (checksum included).
 * EVS_ENOTFOUND if there is none. The events cursor remembers where it
 * is: the log's keys are dense, so the next or previous position is one
 * cursor step away instead of a descent from the root (streams and
 * categories whose events were written together); any other position is
 * an ordinary MDB_SET. */
static int evs__load_record(evs_iter *it, uint64_t pos, evs__record *r) {
  MDB_val k, v;
  int rc;
  if (it->ecur == NULL) {
    rc = mdb_cursor_open(it->txn, it->s->db_events, &it->ecur);
    if (rc)
      return evs__err(evs__lmdb_err(rc), "cursor: %s", mdb_strerror(rc));
    it->ecur_pos = 0;
  }
  if (it->ecur_pos && (pos == it->ecur_pos + 1 || pos + 1 == it->ecur_pos)) {
    rc = mdb_cursor_get(it->ecur, &k, &v,
                        pos > it->ecur_pos ? MDB_NEXT : MDB_PREV);
    if (rc == 0 && (k.mv_size != 8 || evs__ld64(k.mv_data) != pos))
      rc = MDB_NOTFOUND; /* a gap left by a compaction */
  } else {
    rc = MDB_NOTFOUND;
  }
  if (rc == MDB_NOTFOUND) {
    uint8_t kb[8];
    evs__st64(kb, pos);
    k.mv_size = 8;
    k.mv_data = kb;
    rc = mdb_cursor_get(it->ecur, &k, &v, MDB_SET);
  }
  it->ecur_pos = rc == 0 ? pos : 0;
  if (rc == MDB_NOTFOUND)
    return EVS_ENOTFOUND;
  if (rc)
    return evs__err(evs__lmdb_err(rc), "reading position %llu: %s",
                    (unsigned long long)pos, mdb_strerror(rc));
  if (evs__record_decode(r, v.mv_data, v.mv_size))
    return evs__err(EVS_ECORRUPT,
                    "record at position %llu is corrupt (checksum or "
                    "structure)",
                    (unsigned long long)pos);
  return 0;
}

/* ---- stepping ------------------------------------------------------------ */

/*
 * The next entry of the DUPFIXED list under the iterator's key (a stream's
 * version|position entries, or a category's or type's positions), in the
 * iterator's direction, starting from `from` (compared with the entry's
 * first 8 bytes) when not positioned. Entries come a page at a time with
 * MDB_GET_MULTIPLE, which returns the whole page that holds the cursor;
 * the page is walked from the positioned entry. Forward, the next page is
 * MDB_NEXT_MULTIPLE; backward, a new seek from the next wanted entry (once
 * per page). Returns 1 with *e set, 0 at the end, or an error.
 */
static int evs__dup_seek(evs_iter *it, uint64_t key, uint64_t from) {
  uint8_t kb[8], vb[16] = { 0 };
  evs__put_be64(kb, key);
  evs__put_be64(vb, from);
  MDB_val k = { 8, kb }, v = { it->esize, vb };
  int rc = mdb_cursor_get(it->cur, &k, &v, MDB_GET_BOTH_RANGE);
  if (it->dir == EVS_BACKWARD) {
    if (rc == MDB_NOTFOUND) {
      k.mv_size = 8;
      k.mv_data = kb;
      rc = mdb_cursor_get(it->cur, &k, &v, MDB_SET);
      if (rc == 0)
        rc = mdb_cursor_get(it->cur, &k, &v, MDB_LAST_DUP);
    } else if (rc == 0 && v.mv_size == it->esize &&
               evs__get_be64(v.mv_data) > from) {
      rc = mdb_cursor_get(it->cur, &k, &v, MDB_PREV_DUP);
    }
  }
  it->positioned = 1;
  it->batch = NULL;
  it->batch_n = it->batch_i = 0;
  if (rc)
    return rc;
  if (v.mv_size != it->esize)
    return -1;
  /* A key with a single entry has no duplicate page: GET_MULTIPLE then
   * succeeds without touching m. */
  MDB_val m = { 0, NULL };
  int mrc = mdb_cursor_get(it->cur, &k, &m, MDB_GET_MULTIPLE);
  const uint8_t *p = (const uint8_t *)m.mv_data;
  const uint8_t *at = (const uint8_t *)v.mv_data;
  if (mrc && mrc != MDB_NOTFOUND)
    return mrc;
  if (mrc == 0 && p != NULL) {
    if (m.mv_size == 0 || m.mv_size % it->esize != 0)
      return -1;
    it->batch = p;
    it->batch_n = m.mv_size / it->esize;
    /* Start at the positioned entry; were it not on the page, the callers
     * skip entries before their target anyway. */
    if (at >= p && at < p + m.mv_size && (size_t)(at - p) % it->esize == 0)
      it->batch_i = (size_t)(at - p) / it->esize;
    else
      it->batch_i = it->dir == EVS_FORWARD ? 0 : it->batch_n - 1;
  } else {
    it->batch = at;
    it->batch_n = 1;
    it->batch_i = 0;
  }
  return 0;
}

static int evs__dup_next(evs_iter *it, uint64_t key, uint64_t from,
                         const uint8_t **e) {
  int rc;
  if (!it->positioned) {
    rc = evs__dup_seek(it, key, from);
  } else if (it->dir == EVS_FORWARD) {
    if (EVS__LIKELY(++it->batch_i < it->batch_n)) {
      *e = it->batch + it->batch_i * it->esize;
      return 1;
    }
    MDB_val k, m = { 0, NULL };
    rc = mdb_cursor_get(it->cur, &k, &m, MDB_NEXT_MULTIPLE);
    if (rc == 0 &&
        (m.mv_data == NULL || m.mv_size == 0 || m.mv_size % it->esize != 0))
      rc = -1;
    if (rc == 0) {
      it->batch = (const uint8_t *)m.mv_data;
      it->batch_n = m.mv_size / it->esize;
      it->batch_i = 0;
    }
  } else {
    if (EVS__LIKELY(it->batch_i > 0)) {
      it->batch_i--;
      *e = it->batch + it->batch_i * it->esize;
      return 1;
    }
    rc = evs__dup_seek(it, key, from);
  }
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc == -1)
    return evs__err(EVS_ECORRUPT, "index entries of the wrong size");
  if (rc)
    return evs__err(evs__lmdb_err(rc), "reading an index: %s",
                    mdb_strerror(rc));
  *e = it->batch + it->batch_i * it->esize;
  return 1;
}

/* Moves the $all cursor to the next position. */
static int evs__step_log(evs_iter *it, uint64_t *pos, MDB_val *val) {
  MDB_val k, v;
  int rc;
  if (EVS__LIKELY(it->positioned)) {
    rc = mdb_cursor_get(it->cur, &k, &v,
                        it->dir == EVS_FORWARD ? MDB_NEXT : MDB_PREV);
  } else {
    uint8_t kb[8];
    evs__put_be64(kb, it->next_pos);
    k.mv_size = 8;
    k.mv_data = kb;
    rc = mdb_cursor_get(it->cur, &k, &v, MDB_SET_RANGE);
    if (it->dir == EVS_BACKWARD) {
      if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(it->cur, &k, &v, MDB_LAST);
      else if (rc == 0 && k.mv_size == 8 &&
               evs__get_be64(k.mv_data) > it->next_pos)
        rc = mdb_cursor_get(it->cur, &k, &v, MDB_PREV);
    }
    it->positioned = 1;
  }
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc)
    return evs__err(evs__lmdb_err(rc), "reading the log: %s", mdb_strerror(rc));
  if (k.mv_size != 8)
    return evs__err(EVS_ECORRUPT, "log key of %zu bytes", k.mv_size);
  *pos = evs__ld64(k.mv_data);
  *val = v;
  return 1;
}

static int evs__next_stream(evs_iter *it) {
  for (;;) {
    /* Backward, every entry left is below the visible range (this also
     * stops a seek from version 0 after version 0 was returned). */
    if (it->dir == EVS_BACKWARD && it->next_version < it->lo_version)
      return 0;
    int rc = evs__maybe_renew(it);
    if (rc)
      return rc;
    it->since_renew++;
    const uint8_t *e;
    rc = evs__dup_next(it, it->sid,
                       (uint64_t)(it->next_version < 0 ? 0 : it->next_version),
                       &e);
    if (rc <= 0)
      return rc;
    int64_t ver = (int64_t)evs__ld64(e);
    uint64_t pos = evs__ld64(e + 8);
    if (it->dir == EVS_FORWARD) {
      if (ver < it->next_version)
        continue;
      if (it->hi_position && pos > it->hi_position)
        return 0;
      it->next_version = ver + 1;
    } else {
      if (ver > it->next_version)
        continue;
      if (ver < it->lo_version)
        return 0;
      it->next_version = ver - 1;
      if (it->hi_position && pos > it->hi_position)
        continue;
    }
    if (ver < it->lo_version)
      continue;
    it->checkpoint = pos;
    evs__record r;
    rc = evs__load_record(it, pos, &r);
    if (rc == EVS_ENOTFOUND)
      /* The index and the log change in one transaction (compaction
       * included), so within a snapshot a missing record is damage. */
      return evs__err(EVS_ECORRUPT,
                      "stream '%s' version %lld: its record at position "
                      "%llu is missing from the log",
                      it->name, (long long)ver, (unsigned long long)pos);
    if (rc)
      return rc;
    if (r.stream_id != it->sid || (int64_t)r.version != ver)
      return evs__err(EVS_ECORRUPT,
                      "stream index of '%s' version %lld points to a record "
                      "of another stream or version (position %llu)",
                      it->name, (long long)ver, (unsigned long long)pos);
    if (r.timestamp_ns < it->age_cut) {
      if (it->dir == EVS_BACKWARD)
        return 0;
      continue;
    }
    evs_slice name = { it->name, it->name_len };
    rc = evs__it_fill(it, pos, &r, name);
    return rc ? rc : 1;
  }
}

static int evs__next_pos(evs_iter *it) {
  int idx = it->kind == EVS__IT_INDEX;
  for (;;) {
    int rc = evs__maybe_renew(it);
    if (rc)
      return rc;
    it->since_renew++;
    uint64_t pos = 0;
    MDB_val val = { 0, NULL };
    if (idx) {
      const uint8_t *e;
      rc = evs__dup_next(it, it->index_key, it->next_pos, &e);
      if (rc > 0)
        pos = evs__ld64(e);
    } else {
      rc = evs__step_log(it, &pos, &val);
    }
    if (rc < 0)
      return rc;
    if (rc == 0) {
      if (it->dir == EVS_FORWARD) {
        /* Exhausted: every position up to the head was considered. */
        uint64_t head;
        int64_t ts;
        if (evs__log_head(it->s, it->txn, &head, &ts) == 0) {
          if (it->hi_pos && head > it->hi_pos)
            head = it->hi_pos;
          if (head > it->checkpoint)
            it->checkpoint = head;
        }
      }
      return 0;
    }
    if (it->dir == EVS_FORWARD) {
      if (pos < it->next_pos)
        continue;
      if (pos > it->hi_pos) {
        it->checkpoint = it->hi_pos;
        return 0;
      }
      it->next_pos = pos + 1;
    } else {
      if (pos > it->next_pos)
        continue;
      if (pos < it->lo_pos)
        return 0;
      it->next_pos = pos - 1;
      if (pos > it->hi_pos)
        continue;
    }
    it->checkpoint = pos;
    evs__record r;
    if (idx) {
      rc = evs__load_record(it, pos, &r);
      if (rc == EVS_ENOTFOUND)
        return evs__err(EVS_ECORRUPT,
                        "the %s index lists position %llu, which is missing "
                        "from the log",
                        it->index_dbi == it->s->db_cat_index ? "category"
                                                             : "type",
                        (unsigned long long)pos);
      if (rc)
        return rc;
    } else if (evs__record_decode(&r, val.mv_data, val.mv_size)) {
      return evs__err(EVS_ECORRUPT,
                      "record at position %llu is corrupt (checksum or "
                      "structure)",
                      (unsigned long long)pos);
    }
    if (it->has_type && r.type_id != it->tid)
      continue;
    evs__cent *sc = NULL;
    rc = evs__stream_of(it, r.stream_id, &sc);
    if (rc)
      return rc;
    if (!sc->show || (int64_t)r.version < sc->lo ||
        r.timestamp_ns < sc->age_cut)
      continue;
    rc = evs__it_fill(it, pos, &r, evs__cache_name(it->sc, sc));
    return rc ? rc : 1;
  }
}

int evs_iter_next(evs_iter *it, const evs_event **ev) {
  if (it == NULL || ev == NULL)
    return evs__err(EVS_EINVAL, "NULL iterator or output");
  *ev = NULL;
  if (it->state)
    return it->state > 0 ? 0 : it->state;
  if (it->limit && it->count >= it->limit) {
    it->state = 1;
    evs__it_end(it);
    return 0;
  }
  int rc =
      it->kind == EVS__IT_STREAM ? evs__next_stream(it) : evs__next_pos(it);
  if (EVS__LIKELY(rc == 1)) {
    it->count++;
    *ev = &it->ev;
    return 1;
  }
  it->state = rc == 0 ? 1 : rc;
  /* Let go of the snapshot as soon as we are done. */
  evs__it_end(it);
  return rc;
}

uint64_t evs_iter_checkpoint(const evs_iter *it) {
  return it ? it->checkpoint : 0;
}

void evs_iter_free(evs_iter *it) {
  if (it == NULL)
    return;
  evs__it_end(it);
  free(it->prefix);
  free(it->zbuf);
  if (it->dctx)
    ZSTD_freeDCtx((ZSTD_DCtx *)it->dctx);
  evs__cache_free(it->sc);
  free(it->sc);
  evs__cache_free(&it->tc);
  free(it);
}

/* ---- opening iterators --------------------------------------------------- */

int evs_read_stream(evs_iter **out, evs_store *s, const char *stream,
                    const evs_read_options *opts) {
  evs__clear_error();
  if (out == NULL || s == NULL)
    return evs__err(EVS_EINVAL, "NULL output or store");
  *out = NULL;
  size_t len;
  int rc = evs__check_stream_name(stream, &len);
  if (rc)
    return rc;
  evs_read_options o = EVS_READ_OPTIONS_INIT;
  if (opts) {
    if (opts->version != EVS_READ_OPTIONS_VERSION)
      return evs__err(EVS_EINVAL, "unknown read options version");
    o = *opts;
  }
  if (o.direction != EVS_FORWARD && o.direction != EVS_BACKWARD)
    return evs__err(EVS_EINVAL, "bad direction");
  if (o.from_version < 0)
    return evs__err(EVS_EINVAL, "from_version must be >= 0");
  evs_iter *it = calloc(1, sizeof *it);
  if (it == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  it->s = s;
  it->kind = EVS__IT_STREAM;
  it->dir = o.direction;
  it->limit = o.limit;
  it->esize = 16;
  evs__cache_init(&it->tc, EVS__TCACHE_MAX);
  memcpy(it->name, stream, len);
  it->name_len = len;
  rc = evs__it_begin(it);
  if (rc) {
    evs_iter_free(it);
    return rc;
  }
  evs__stream_rec st;
  rc = evs__stream_get(s, it->txn, stream, len, &st);
  if (rc == EVS_ENOSTREAM) {
    evs_iter_free(it);
    return evs__err(EVS_ENOSTREAM, "stream '%s' not found", stream);
  }
  if (rc) {
    evs_iter_free(it);
    return rc;
  }
  if (st.flags & EVS_STREAM_TOMBSTONED) {
    evs_iter_free(it);
    return evs__err(EVS_ESTREAMDELETED, "stream '%s' is tombstoned", stream);
  }
  if ((st.flags & EVS_STREAM_DELETED) || st.last_version < 0) {
    evs_iter_free(it);
    return evs__err(EVS_ENOSTREAM, "stream '%s' %s", stream,
                    (st.flags & EVS_STREAM_DELETED) ? "is deleted"
                                                    : "has no events");
  }
  it->sid = st.stream_id;
  it->lo_version = evs__visible_from(&st);
  it->age_cut = st.max_age_sec
                    ? evs__now_ns() - (int64_t)st.max_age_sec * 1000000000LL
                    : INT64_MIN;
  uint64_t hi = o.as_of_position;
  if (o.as_of_ns) {
    uint64_t p;
    rc = evs__last_position_at_or_before(s, it->txn, o.as_of_ns, &p);
    if (rc) {
      evs_iter_free(it);
      return rc;
    }
    if (p == 0) {
      evs_iter_free(it);
      return evs__err(EVS_ENOSTREAM, "stream '%s' did not exist at that time",
                      stream);
    }
    if (hi == 0 || p < hi)
      hi = p;
  }
  it->hi_position = hi;
  if (hi) {
    /* Did the stream exist as of hi? Its first entry must be <= hi; for a
     * stream recreated after a soft delete, the first entry of its current
     * life (the earlier ones stay hidden, also from temporal reads). */
    uint8_t kb[8], vb[16];
    evs__put_be64(kb, st.stream_id);
    evs__put_be64(vb, (uint64_t)st.start_version);
    evs__put_be64(vb + 8, 0);
    MDB_val k = { 8, kb }, v = { 16, vb };
    int mrc = st.start_version > 0
                  ? mdb_cursor_get(it->cur, &k, &v, MDB_GET_BOTH_RANGE)
                  : mdb_cursor_get(it->cur, &k, &v, MDB_SET);
    if (mrc == 0 && v.mv_size == 16 &&
        evs__get_be64((const uint8_t *)v.mv_data + 8) > hi) {
      evs_iter_free(it);
      return evs__err(EVS_ENOSTREAM,
                      "stream '%s' did not exist at that point%s", stream,
                      st.start_version > 0
                          ? " (it was deleted before, and the events of its "
                            "earlier life stay hidden)"
                          : "");
    }
  }
  if (o.direction == EVS_FORWARD) {
    it->next_version =
        o.from_version > it->lo_version ? o.from_version : it->lo_version;
  } else {
    it->next_version =
        o.from_version > st.last_version ? st.last_version : o.from_version;
  }
  *out = it;
  return 0;
}

static int evs__lookup_id(MDB_txn *txn, MDB_dbi dbi, const char *name,
                          uint64_t *id) {
  MDB_val k = { strlen(name), (void *)name }, v;
  int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == MDB_NOTFOUND)
    return EVS_ENOTFOUND;
  if (rc)
    return evs__err(evs__lmdb_err(rc), "lookup: %s", mdb_strerror(rc));
  if (v.mv_size != 8)
    return evs__err(EVS_ECORRUPT, "bad id value");
  *id = evs__get_be64(v.mv_data);
  return 0;
}

int evs_read_all(evs_iter **out, evs_store *s,
                 const evs_read_all_options *opts) {
  evs__clear_error();
  if (out == NULL || s == NULL)
    return evs__err(EVS_EINVAL, "NULL output or store");
  *out = NULL;
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  if (opts) {
    if (opts->version != EVS_READ_ALL_OPTIONS_VERSION)
      return evs__err(EVS_EINVAL, "unknown read options version");
    o = *opts;
  }
  if (o.direction != EVS_FORWARD && o.direction != EVS_BACKWARD)
    return evs__err(EVS_EINVAL, "bad direction");
  int rc;
  if (o.category && (rc = evs__check_name(o.category, "category", NULL)))
    return rc;
  if (o.event_type && (rc = evs__check_name(o.event_type, "event type", NULL)))
    return rc;
  if (o.group_size > 1 && o.group_member >= o.group_size)
    return evs__err(EVS_EINVAL, "consumer group member %u of %u",
                    o.group_member, o.group_size);
  if (o.stream_prefix && strlen(o.stream_prefix) > EVS_MAX_NAME_LEN)
    return evs__err(EVS_EBADNAME, "stream prefix longer than %u bytes",
                    EVS_MAX_NAME_LEN);
  evs_iter *it = calloc(1, sizeof *it);
  if (it == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  it->s = s;
  it->dir = o.direction;
  it->limit = o.limit;
  it->esize = 8;
  evs__cache_init(&it->tc, EVS__TCACHE_MAX);
  it->sc = malloc(sizeof *it->sc);
  if (it->sc == NULL) {
    free(it);
    return evs__err(EVS_ENOMEM, "out of memory");
  }
  evs__cache_init(it->sc, EVS__SCACHE_MAX);
  it->group_size = o.group_size;
  it->group_member = o.group_member;
  if (o.stream_prefix && o.stream_prefix[0]) {
    it->prefix = strdup(o.stream_prefix);
    if (it->prefix == NULL) {
      evs_iter_free(it);
      return evs__err(EVS_ENOMEM, "out of memory");
    }
    it->prefix_len = strlen(it->prefix);
  }
  it->lo_pos = 1;
  it->hi_pos = UINT64_MAX;
  if (o.until_position)
    it->hi_pos = o.until_position;
  /* Resolve the filters with a short transaction first (an unfiltered
   * read, a subscription's usual batch, needs none). */
  MDB_txn *txn = NULL;
  int empty = 0;
  uint64_t head_at_lookup = 0;
  if (!o.category && !o.event_type && !o.since_ns && !o.until_ns)
    goto resolved;
  rc = evs__read_begin(s, &txn);
  if (rc) {
    evs_iter_free(it);
    return rc;
  }
  if (o.category) {
    rc = evs__lookup_id(txn, s->db_cats, o.category, &it->cid);
    if (rc == EVS_ENOTFOUND)
      empty = 1;
    else if (rc)
      goto fail_txn;
    it->has_cat = 1;
  }
  if (o.event_type) {
    rc = evs__lookup_id(txn, s->db_types, o.event_type, &it->tid);
    if (rc == EVS_ENOTFOUND)
      empty = 1;
    else if (rc)
      goto fail_txn;
    it->has_type = 1;
  }
  if (o.since_ns) {
    uint64_t p;
    rc = evs__first_position_at_or_after(s, txn, o.since_ns, &p);
    if (rc)
      goto fail_txn;
    if (p > it->lo_pos)
      it->lo_pos = p;
  }
  if (o.until_ns) {
    uint64_t p;
    rc = evs__last_position_at_or_before(s, txn, o.until_ns, &p);
    if (rc)
      goto fail_txn;
    if (p < it->hi_pos)
      it->hi_pos = p;
  }
  /* The head as of the filter lookup: an empty filtered read's checkpoint
   * must not run past events committed after the lookup. */
  {
    int64_t hts;
    rc = evs__log_head(s, txn, &head_at_lookup, &hts);
    if (rc)
      goto fail_txn;
  }
  evs__read_end(s, txn);
  txn = NULL;
resolved:
  if (it->has_cat) {
    it->kind = EVS__IT_INDEX;
    it->index_dbi = s->db_cat_index;
    it->index_key = it->cid;
  } else if (it->has_type) {
    it->kind = EVS__IT_INDEX;
    it->index_dbi = s->db_type_index;
    it->index_key = it->tid;
  } else {
    it->kind = EVS__IT_ALL;
  }
  if (o.direction == EVS_FORWARD)
    it->next_pos = o.from_position > it->lo_pos ? o.from_position : it->lo_pos;
  else
    it->next_pos = o.from_position < it->hi_pos ? o.from_position : it->hi_pos;
  if (o.direction == EVS_FORWARD && it->next_pos > 1)
    it->checkpoint = it->next_pos - 1;
  if (empty || it->lo_pos > it->hi_pos || it->next_pos == 0) {
    it->state = 1;
    if (empty && o.direction == EVS_FORWARD)
      it->checkpoint =
          head_at_lookup < it->hi_pos ? head_at_lookup : it->hi_pos;
    *out = it;
    return 0;
  }
  it->restartable = o.direction == EVS_FORWARD && !o.since_ns && !o.until_ns;
  rc = evs__it_begin(it);
  if (rc) {
    evs_iter_free(it);
    return rc;
  }
  *out = it;
  return 0;
fail_txn:
  evs__read_end(s, txn);
  evs_iter_free(it);
  return rc;
}

int evs__iter_restart(evs_iter *it, uint64_t from, uint64_t until) {
  if (!it->restartable)
    return EVS_EINVAL;
  evs__it_end(it);
  it->state = 0;
  it->count = 0;
  it->hi_pos = until ? until : UINT64_MAX;
  it->next_pos = from > it->lo_pos ? from : it->lo_pos;
  it->checkpoint = it->next_pos - 1;
  if (it->next_pos > it->hi_pos) {
    it->state = 1;
    return 0;
  }
  int rc = evs__it_begin(it);
  if (rc)
    it->state = rc;
  return rc;
}

void evs__iter_release(evs_iter *it) {
  evs__it_end(it);
}

/* ---- temporal lookups -----------------------------------------------------
 */

static int evs__ts_at(MDB_cursor *c, uint64_t probe, uint64_t *pos,
                      int64_t *ts) {
  uint8_t kb[8];
  evs__put_be64(kb, probe);
  MDB_val k = { 8, kb }, v;
  int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
  if (rc)
    return rc;
  evs__record r;
  if (k.mv_size != 8 || evs__record_peek(&r, v.mv_data, v.mv_size))
    return MDB_CORRUPTED;
  *pos = evs__get_be64(k.mv_data);
  *ts = r.timestamp_ns;
  return 0;
}

int evs__last_position_at_or_before(evs_store *s, MDB_txn *txn, int64_t t,
                                    uint64_t *out) {
  uint64_t head;
  int64_t hts;
  int rc = evs__log_head(s, txn, &head, &hts);
  if (rc)
    return rc;
  *out = 0;
  if (head == 0)
    return 0;
  if (hts <= t) {
    *out = head;
    return 0;
  }
  MDB_cursor *c;
  if ((rc = mdb_cursor_open(txn, s->db_events, &c)))
    return evs__err(evs__lmdb_err(rc), "cursor: %s", mdb_strerror(rc));
  uint64_t lo = 1, hi = head, ans = 0;
  while (lo <= hi) {
    uint64_t mid = lo + (hi - lo) / 2, pos;
    int64_t ts;
    rc = evs__ts_at(c, mid, &pos, &ts);
    if (rc == MDB_NOTFOUND || (rc == 0 && pos > hi)) {
      hi = mid - 1;
      continue;
    }
    if (rc) {
      mdb_cursor_close(c);
      return evs__err(evs__lmdb_err(rc), "temporal lookup: %s",
                      mdb_strerror(rc));
    }
    if (ts <= t) {
      ans = pos;
      lo = pos + 1;
    } else {
      if (mid == 0)
        break;
      hi = mid - 1;
    }
  }
  mdb_cursor_close(c);
  *out = ans;
  return 0;
}

int evs__first_position_at_or_after(evs_store *s, MDB_txn *txn, int64_t t,
                                    uint64_t *out) {
  uint64_t head;
  int64_t hts;
  int rc = evs__log_head(s, txn, &head, &hts);
  if (rc)
    return rc;
  *out = head + 1;
  if (head == 0 || hts < t)
    return 0;
  MDB_cursor *c;
  if ((rc = mdb_cursor_open(txn, s->db_events, &c)))
    return evs__err(evs__lmdb_err(rc), "cursor: %s", mdb_strerror(rc));
  uint64_t lo = 1, hi = head, ans = head + 1;
  while (lo <= hi) {
    uint64_t mid = lo + (hi - lo) / 2, pos;
    int64_t ts;
    rc = evs__ts_at(c, mid, &pos, &ts);
    if (rc == MDB_NOTFOUND || (rc == 0 && pos > hi)) {
      hi = mid - 1;
      continue;
    }
    if (rc) {
      mdb_cursor_close(c);
      return evs__err(evs__lmdb_err(rc), "temporal lookup: %s",
                      mdb_strerror(rc));
    }
    if (ts >= t) {
      ans = pos;
      if (mid == 0)
        break;
      hi = mid - 1;
    } else {
      lo = pos + 1;
    }
  }
  mdb_cursor_close(c);
  *out = ans;
  return 0;
}

int evs_position_at(evs_store *s, int64_t timestamp_ns, uint64_t *out) {
  evs__clear_error();
  if (s == NULL || out == NULL)
    return evs__err(EVS_EINVAL, "NULL argument");
  MDB_txn *txn;
  int rc = evs__read_begin(s, &txn);
  if (rc)
    return rc;
  rc = evs__last_position_at_or_before(s, txn, timestamp_ns, out);
  evs__read_end(s, txn);
  return rc;
}

/* ---- stream info and listing --------------------------------------------- */

/* Fills info from a record; `custom` is borrowed. */
static int evs__fill_info(evs_store *s, MDB_txn *txn, const evs__stream_rec *st,
                          evs_stream_info *info) {
  memset(info, 0, sizeof *info);
  info->stream_id = st->stream_id;
  info->version = st->last_version;
  info->last_position = st->last_position;
  info->start_version = st->start_version;
  info->last_timestamp_ns = st->last_ts;
  info->flags = st->flags & (EVS_STREAM_DELETED | EVS_STREAM_TOMBSTONED);
  info->max_count = st->max_count;
  info->max_age_sec = st->max_age_sec;
  info->truncate_before = st->truncate_before;
  info->custom = (void *)st->custom;
  info->custom_len = st->custom_len;
  info->exists = info->flags == 0 && st->last_version >= 0;
  info->first_version = EVS_VERSION_NONE;
  if (!info->exists)
    return 0;
  /* First visible event: the first index entry >= the visible bound whose
   * timestamp passes max_age. */
  int64_t lo = evs__visible_from(st);
  int64_t cut = st->max_age_sec
                    ? evs__now_ns() - (int64_t)st->max_age_sec * 1000000000LL
                    : INT64_MIN;
  MDB_cursor *c;
  int rc = mdb_cursor_open(txn, s->db_stream_index, &c);
  if (rc)
    return evs__err(evs__lmdb_err(rc), "cursor: %s", mdb_strerror(rc));
  uint8_t kb[8], vb[16];
  evs__put_be64(kb, st->stream_id);
  evs__put_be64(vb, (uint64_t)(lo < 0 ? 0 : lo));
  evs__put_be64(vb + 8, 0);
  MDB_val k = { 8, kb }, v = { 16, vb };
  rc = mdb_cursor_get(c, &k, &v, MDB_GET_BOTH_RANGE);
  while (rc == 0 && v.mv_size == 16) {
    int64_t ver = (int64_t)evs__get_be64(v.mv_data);
    uint64_t pos = evs__get_be64((const uint8_t *)v.mv_data + 8);
    if (cut != INT64_MIN) {
      uint8_t pk[8];
      evs__put_be64(pk, pos);
      MDB_val ek = { 8, pk }, ev;
      evs__record r;
      if (mdb_get(txn, s->db_events, &ek, &ev) == 0 &&
          evs__record_peek(&r, ev.mv_data, ev.mv_size) == 0 &&
          r.timestamp_ns < cut) {
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT_DUP);
        continue;
      }
    }
    info->first_version = ver;
    info->first_position = pos;
    break;
  }
  mdb_cursor_close(c);
  return 0;
}

int evs_stream_info_get(evs_store *s, const char *stream,
                        evs_stream_info *out) {
  evs__clear_error();
  if (s == NULL || out == NULL)
    return evs__err(EVS_EINVAL, "NULL store or output");
  memset(out, 0, sizeof *out);
  size_t len;
  int rc = evs__check_stream_name(stream, &len);
  if (rc)
    return rc;
  MDB_txn *txn;
  if ((rc = evs__read_begin(s, &txn)))
    return rc;
  evs__stream_rec st;
  rc = evs__stream_get(s, txn, stream, len, &st);
  if (rc == EVS_ENOSTREAM)
    rc = evs__err(EVS_ENOSTREAM, "stream '%s' not found", stream);
  if (rc == 0)
    rc = evs__fill_info(s, txn, &st, out);
  if (rc == 0 && out->custom_len) {
    void *copy = malloc(out->custom_len);
    if (copy == NULL) {
      rc = evs__err(EVS_ENOMEM, "out of memory");
    } else {
      memcpy(copy, out->custom, out->custom_len);
      out->custom = copy;
    }
  } else if (rc == 0) {
    out->custom = NULL;
  }
  evs__read_end(s, txn);
  if (rc)
    memset(out, 0, sizeof *out);
  return rc;
}

void evs_stream_info_clear(evs_stream_info *info) {
  if (info == NULL)
    return;
  free(info->custom);
  info->custom = NULL;
  info->custom_len = 0;
}

struct evs_stream_iter {
  evs_store *s;
  MDB_txn *txn;
  MDB_cursor *cur;
  char *prefix;
  size_t prefix_len;
  char *after;
  size_t after_len;
  int include_deleted;
  int started;
  int state;
  unsigned since_renew;
  char last[EVS_MAX_NAME_LEN + 1];
  size_t last_len;
  int have_last;
};

static int evs__sit_begin(evs_stream_iter *it) {
  int rc = evs__read_begin(it->s, &it->txn);
  if (rc)
    return rc;
  int mrc = mdb_cursor_open(it->txn, it->s->db_streams, &it->cur);
  if (mrc) {
    evs__read_end(it->s, it->txn);
    it->txn = NULL;
    return evs__err(evs__lmdb_err(mrc), "cursor: %s", mdb_strerror(mrc));
  }
  it->started = 0;
  it->since_renew = 0;
  return 0;
}

static void evs__sit_end(evs_stream_iter *it) {
  if (it->cur)
    mdb_cursor_close(it->cur);
  it->cur = NULL;
  if (it->txn)
    evs__read_end(it->s, it->txn);
  it->txn = NULL;
}

int evs_streams_list(evs_stream_iter **out, evs_store *s, const char *prefix,
                     const char *after, int include_deleted) {
  evs__clear_error();
  if (out == NULL || s == NULL)
    return evs__err(EVS_EINVAL, "NULL output or store");
  *out = NULL;
  evs_stream_iter *it = calloc(1, sizeof *it);
  if (it == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  it->s = s;
  it->include_deleted = include_deleted;
  if ((prefix && prefix[0] && !(it->prefix = strdup(prefix))) ||
      (after && after[0] && !(it->after = strdup(after)))) {
    evs_streams_free(it);
    return evs__err(EVS_ENOMEM, "out of memory");
  }
  it->prefix_len = it->prefix ? strlen(it->prefix) : 0;
  it->after_len = it->after ? strlen(it->after) : 0;
  int rc = evs__sit_begin(it);
  if (rc) {
    evs_streams_free(it);
    return rc;
  }
  *out = it;
  return 0;
}

int evs_streams_next(evs_stream_iter *it, evs_slice *name,
                     evs_stream_info *info) {
  if (it == NULL || name == NULL || info == NULL)
    return evs__err(EVS_EINVAL, "NULL argument");
  if (it->state)
    return it->state > 0 ? 0 : it->state;
  if (it->since_renew >= EVS__RENEW_EVERY || evs__rd_should_yield(it->s)) {
    evs__sit_end(it);
    int rc = evs__sit_begin(it);
    if (rc)
      return it->state = rc;
  }
  for (;;) {
    MDB_val k, v;
    int rc;
    if (!it->started) {
      it->started = 1;
      const char *seek = it->have_last ? it->last : it->after;
      size_t seek_len = it->have_last ? it->last_len : it->after_len;
      if (seek == NULL ||
          (it->prefix && (seek_len < it->prefix_len ||
                          memcmp(seek, it->prefix, it->prefix_len) < 0))) {
        seek = it->prefix;
        seek_len = it->prefix_len;
      }
      if (seek && seek_len) {
        k.mv_size = seek_len;
        k.mv_data = (void *)seek;
        rc = mdb_cursor_get(it->cur, &k, &v, MDB_SET_RANGE);
        if (rc == 0 && (it->have_last || it->after) && seek != it->prefix &&
            k.mv_size == seek_len && memcmp(k.mv_data, seek, seek_len) == 0)
          rc = mdb_cursor_get(it->cur, &k, &v, MDB_NEXT);
      } else {
        rc = mdb_cursor_get(it->cur, &k, &v, MDB_FIRST);
      }
    } else {
      rc = mdb_cursor_get(it->cur, &k, &v, MDB_NEXT);
    }
    if (rc == MDB_NOTFOUND) {
      it->state = 1;
      evs__sit_end(it);
      return 0;
    }
    if (rc)
      return it->state = evs__err(evs__lmdb_err(rc), "listing streams: %s",
                                  mdb_strerror(rc));
    if (it->prefix && (k.mv_size < it->prefix_len ||
                       memcmp(k.mv_data, it->prefix, it->prefix_len) != 0)) {
      it->state = 1;
      evs__sit_end(it);
      return 0;
    }
    it->since_renew++;
    evs__stream_rec st;
    if (evs__stream_rec_decode(&st, v.mv_data, v.mv_size))
      return it->state = evs__err(EVS_ECORRUPT, "stream record corrupt");
    if ((rc = evs__stream_head(it->s, it->txn, NULL, &st)) != 0)
      return it->state = rc;
    if (k.mv_size <= EVS_MAX_NAME_LEN) {
      memcpy(it->last, k.mv_data, k.mv_size);
      it->last_len = k.mv_size;
      it->have_last = 1;
    }
    if (!it->include_deleted &&
        (st.flags & (EVS_STREAM_DELETED | EVS_STREAM_TOMBSTONED)))
      continue;
    rc = evs__fill_info(it->s, it->txn, &st, info);
    if (rc)
      return it->state = rc;
    name->data = k.mv_data;
    name->len = k.mv_size;
    return 1;
  }
}

void evs_streams_free(evs_stream_iter *it) {
  if (it == NULL)
    return;
  evs__sit_end(it);
  free(it->prefix);
  free(it->after);
  free(it);
}

/* ---- single events --------------------------------------------------------
 */

int evs_read_event(evs_store *s, uint64_t position, evs_event **out) {
  evs__clear_error();
  if (s == NULL || out == NULL)
    return evs__err(EVS_EINVAL, "NULL argument");
  *out = NULL;
  MDB_txn *txn;
  int rc = evs__read_begin(s, &txn);
  if (rc)
    return rc;
  uint8_t kb[8];
  evs__put_be64(kb, position);
  MDB_val k = { 8, kb }, v;
  evs__record r;
  evs_slice type, name, data = { NULL, 0 };
  void *zbuf = NULL, *dctx = NULL;
  size_t zcap = 0;
  rc = mdb_get(txn, s->db_events, &k, &v);
  if (rc == MDB_NOTFOUND) {
    rc = evs__err(EVS_ENOTFOUND, "no event at position %llu",
                  (unsigned long long)position);
    goto done;
  }
  if (rc) {
    rc = evs__err(evs__lmdb_err(rc), "reading: %s", mdb_strerror(rc));
    goto done;
  }
  if (evs__record_decode(&r, v.mv_data, v.mv_size)) {
    rc = evs__err(EVS_ECORRUPT, "record at position %llu is corrupt",
                  (unsigned long long)position);
    goto done;
  }
  if ((rc = evs__type_name(s, txn, r.type_id, &type)) ||
      (rc = evs__stream_name(s, txn, r.stream_id, &name)) ||
      (rc = evs__record_data(s, &r, &zbuf, &zcap, &dctx, &data)))
    goto done;
  size_t total =
      sizeof(evs_event) + name.len + type.len + data.len + r.metadata_len + 4;
  evs_event *ev = malloc(total);
  if (ev == NULL) {
    rc = evs__err(EVS_ENOMEM, "out of memory");
    goto done;
  }
  char *p = (char *)(ev + 1);
  memset(ev, 0, sizeof *ev);
  ev->position = position;
  ev->version = (int64_t)r.version;
  ev->timestamp_ns = r.timestamp_ns;
  ev->stream_id = r.stream_id;
  memcpy(ev->id.bytes, r.id, 16);
#define EVS__COPY(field, src, n)                                               \
  do {                                                                         \
    if (n)                                                                     \
      memcpy(p, src, n);                                                       \
    p[n] = '\0';                                                               \
    ev->field.data = p;                                                        \
    ev->field.len = n;                                                         \
    p += (n) + 1;                                                              \
  } while (0)
  EVS__COPY(stream, name.data, name.len);
  EVS__COPY(type, type.data, type.len);
  EVS__COPY(data, data.data, data.len);
  EVS__COPY(metadata, r.metadata, r.metadata_len);
#undef EVS__COPY
  *out = ev;
  rc = 0;
done:
  evs__read_end(s, txn);
  free(zbuf);
  if (dctx)
    ZSTD_freeDCtx((ZSTD_DCtx *)dctx);
  return rc;
}

void evs_event_free(evs_event *ev) {
  free(ev);
}

int evs_find_event_id(evs_store *s, const evs_uuid *id, uint64_t *position) {
  evs__clear_error();
  if (s == NULL || id == NULL || position == NULL)
    return evs__err(EVS_EINVAL, "NULL argument");
  MDB_txn *txn;
  int rc = evs__read_begin(s, &txn);
  if (rc)
    return rc;
  MDB_val k = { 16, (void *)id->bytes }, v;
  rc = mdb_get(txn, s->db_ids, &k, &v);
  if (rc == MDB_NOTFOUND)
    rc = evs__err(EVS_ENOTFOUND, "no event with that id");
  else if (rc)
    rc = evs__err(evs__lmdb_err(rc), "id lookup: %s", mdb_strerror(rc));
  else if (v.mv_size != 8)
    rc = evs__err(EVS_ECORRUPT, "id index value of %zu bytes", v.mv_size);
  if (rc == 0) {
    /* Trust, but verify: the record there must carry this id. */
    uint64_t pos = evs__get_be64(v.mv_data);
    uint8_t kb[8];
    evs__put_be64(kb, pos);
    MDB_val ek = { 8, kb }, ev;
    evs__record r;
    if (mdb_get(txn, s->db_events, &ek, &ev) != 0 ||
        evs__record_decode(&r, ev.mv_data, ev.mv_size) != 0 ||
        memcmp(r.id, id->bytes, 16) != 0)
      rc = evs__err(EVS_ECORRUPT,
                    "the id index points to position %llu, whose record "
                    "does not carry that id",
                    (unsigned long long)pos);
    else
      *position = pos;
  }
  evs__read_end(s, txn);
  return rc;
}
