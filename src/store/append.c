/*
 * evstore — the write path: request preparation, group commit, appends,
 * deletes and metadata.
 *
 * Every write is a request queued to the store. Whoever finds no commit in
 * progress becomes the leader: it takes every queued request (up to a cap),
 * applies them in ONE LMDB write transaction and commits once (one fsync),
 * then completes them all. A synchronous caller leads if nobody else is;
 * asynchronous requests are led by a background writer thread.
 *
 * Each request is validated against the transaction's state (expected
 * version, ids, tombstones) before any of its puts, so a request that fails
 * a check writes nothing and needs no rollback; the other requests of the
 * batch are unaffected. This is cheaper than an LMDB nested transaction per
 * request (each one allocates and copies a dirty-page list), see
 * docs/storage.md. A failed put (MDB_MAP_FULL, I/O) poisons the whole LMDB
 * transaction: the batch is aborted, the map grown if it was full, and the
 * batch applied again from scratch.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <xxhash.h>
#include <zstd.h>

#include "store/internal.h"

#define EVS__BATCH_MAX 512
#define EVS__BATCH_BYTES (64u * 1024u * 1024u)
/* With a dictionary, data of at least this many bytes is compressed. */
#define EVS__DICT_THRESHOLD 32u

enum {
  EVS__OP_APPEND = 1,
  EVS__OP_DELETE = 2,
  EVS__OP_METADATA = 3,
  EVS__OP_COMPACT = 4,
  EVS__OP_FN = 5
};

typedef struct evs__prep {
  const void *data; /* bytes to store (compressed or the caller's) */
  size_t data_len;
  uint64_t raw_len;
  uint32_t flags;
  uint32_t type_len;
  void *owned; /* compressed buffer to free */
} evs__prep;

struct evs__req {
  int op;
  /* append */
  evs_append_part *parts;
  size_t nparts;
  evs__prep *prep;  /* all events of all parts, in order */
  size_t *name_len; /* per part */
  /* delete / metadata */
  const char *stream;
  size_t stream_len;
  int64_t expected;
  int hard;
  evs_stream_metadata md;
  int64_t actual_version;
  void *compact;    /* compaction state (maint.c), or EVS__OP_FN's arg */
  evs__txn_fn fn;   /* EVS__OP_FN */
  int64_t fixed_ts; /* evs_append_at: the commit timestamp, else 0 */
  /* completion */
  int rc;
  size_t failed_part;
  int done;
  int is_async;
  evs_append_cb cb;
  void *payload;
  size_t bytes;
  char detail[256];
  evs__req *next;
  /* inline storage for single-event, single-stream requests */
  evs__prep prep1;
  size_t name_len1;
  evs_append_part part1;
};

/* A (category or type id, position) pair waiting to be indexed. */
typedef struct evs__ipos {
  uint64_t key, pos;
} evs__ipos;

/* Per-transaction state of a batch. */
typedef struct evs__batch {
  evs_store *s;
  MDB_txn *txn;
  uint64_t next_pos;
  int64_t ts;    /* timestamp of the request being applied */
  int64_t now;   /* wall clock at the start of the batch */
  int64_t floor; /* latest timestamp written so far (the head's at start) */
  uint64_t next_sid, next_tid, next_cid; /* 0 = not loaded yet */
  /* The last type interned in this batch (events of a batch usually share
   * a few types): saves a B-tree lookup per event. */
  char last_type[EVS_MAX_NAME_LEN];
  size_t last_type_len;
  uint64_t last_tid;
  uint64_t events_written, bytes_written;
  /* Cursors kept for the transaction: appends at the end of `events` (and
   * of `ids` for time-ordered ids) then skip the B-tree search. */
  MDB_cursor *c_events, *c_ids;
  MDB_cursor *c_sidx; /* stream_index, for the streams' heads */
  /* The largest key of `ids` (or above it): an id greater than this one is
   * not stored, and goes in with MDB_APPEND. 0 = not loaded, 1 = loaded,
   * 2 = the database is empty. */
  int ids_max_state;
  uint8_t ids_max[16];
  /* Category and type index entries of the batch, put with one
   * MDB_MULTIPLE call per key before the commit (evs__flush_lists). */
  evs__ipos *cat, *typ;
  size_t ncat, ntyp, capcat, captyp;
  uint8_t *scratch; /* big-endian positions for MDB_MULTIPLE */
  size_t capscratch;
  size_t tombstoned; /* streams this batch tombstoned */
} evs__batch;

/* ---- preparation (caller's thread) ------------------------------------- */

/* The id of the k-th event of a request, counting across its parts. */
static const evs_uuid *evs__req_id(const evs__req *r, size_t k) {
  for (size_t p = 0; p < r->nparts; p++) {
    if (k < r->parts[p].count)
      return &r->parts[p].events[k].id;
    k -= r->parts[p].count;
  }
  return NULL;
}

static uint64_t evs__item_hash(const evs__req *r, int streams, size_t i,
                               const evs_uuid *id) {
  if (streams)
    return XXH3_64bits(r->parts[i].stream, r->name_len[i]);
  uint64_t a, b;
  memcpy(&a, id->bytes, 8);
  memcpy(&b, id->bytes + 8, 8);
  return (a ^ (b * 0x9E3779B97F4A7C15ull)) * 0xBF58476D1CE4E5B9ull;
}

static int evs__item_eq(const evs__req *r, int streams, size_t i, size_t j,
                        const evs_uuid *a, const evs_uuid *b) {
  if (streams)
    return r->name_len[i] == r->name_len[j] &&
           memcmp(r->parts[i].stream, r->parts[j].stream, r->name_len[i]) == 0;
  /* a and b are NULL only when streams = 1. */
  // cppcheck-suppress nullPointer
  return memcmp(a->bytes, b->bytes, 16) == 0;
}

/*
 * Looks for two equal items among the request's n stream names (streams =
 * 1) or n event ids (streams = 0) with an open-addressing hash set: O(n)
 * where comparing every pair would cost O(n^2) for a 1,000-stream append.
 * Returns 1 with *dup = the index of the second occurrence, 0 when all are
 * distinct, or EVS_ENOMEM.
 */
static int evs__find_dup(const evs__req *r, int streams, size_t n,
                         size_t *dup) {
  uint32_t small[1024], *slot = small;
  const evs_uuid *small_ids[512], **ids = small_ids;
  size_t cap = 16;
  while (cap < 2 * n)
    cap <<= 1;
  if (cap > sizeof small / sizeof small[0] &&
      (slot = malloc(cap * sizeof *slot)) == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  if (!streams && n > sizeof small_ids / sizeof small_ids[0] &&
      (ids = malloc(n * sizeof *ids)) == NULL) { /* NOLINT */
    if (slot != small)
      free(slot);
    return evs__err(EVS_ENOMEM, "out of memory");
  }
  memset(slot, 0, cap * sizeof *slot);
  int found = 0;
  size_t p = 0, e = 0;
  for (size_t i = 0; i < n && !found; i++) {
    const evs_uuid *id = NULL;
    if (!streams) {
      while (e >= r->parts[p].count) {
        p++;
        e = 0;
      }
      id = ids[i] = &r->parts[p].events[e++].id;
    }
    size_t h = (size_t)evs__item_hash(r, streams, i, id) & (cap - 1);
    for (;; h = (h + 1) & (cap - 1)) {
      if (slot[h] == 0) {
        slot[h] = (uint32_t)i + 1;
        break;
      }
      size_t j = slot[h] - 1;
      if (evs__item_eq(r, streams, i, j, id, streams ? NULL : ids[j])) {
        *dup = i;
        found = 1;
        break;
      }
    }
  }
  if (slot != small)
    free(slot);
  if (ids != small_ids)
    free(ids);
  return found;
}

static void evs__req_release(evs__req *r) {
  if (r->prep) {
    size_t total = 0;
    for (size_t p = 0; p < r->nparts; p++)
      total += r->parts[p].count;
    for (size_t i = 0; i < total; i++)
      free(r->prep[i].owned);
    if (r->prep != &r->prep1)
      free(r->prep);
  }
  if (r->name_len && r->name_len != &r->name_len1)
    free(r->name_len);
  r->prep = NULL;
  r->name_len = NULL;
}

static int evs__prepare_append(evs_store *s, evs__req *r) {
  size_t total = 0;
  uint64_t bytes = 0;
  if (r->parts == NULL || r->nparts == 0)
    return evs__err(EVS_EINVAL, "no streams to append to");
  if (r->nparts > EVS_MAX_EVENTS_PER_APPEND)
    return evs__err(EVS_EINVAL, "too many streams in one append");
  r->name_len =
      r->nparts == 1 ? &r->name_len1 : calloc(r->nparts, sizeof(size_t));
  if (r->name_len == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  for (size_t p = 0; p < r->nparts; p++) {
    evs_append_part *pt = &r->parts[p];
    memset(&pt->result, 0, sizeof pt->result);
    pt->result.actual_version = EVS_VERSION_NONE;
    r->failed_part = p;
    int rc = evs__check_stream_name(pt->stream, &r->name_len[p]);
    if (rc)
      return rc;
    if (pt->events == NULL || pt->count == 0)
      return evs__err(EVS_EINVAL, "append to '%s' has no events", pt->stream);
    if (pt->count > EVS_MAX_EVENTS_PER_APPEND)
      return evs__err(EVS_EINVAL, "append of %zu events: at most %u per call",
                      pt->count, EVS_MAX_EVENTS_PER_APPEND);
    if (pt->expected < 0 && pt->expected != EVS_EXPECT_ANY &&
        pt->expected != EVS_EXPECT_NO_STREAM &&
        pt->expected != EVS_EXPECT_EXISTS)
      return evs__err(EVS_EINVAL, "invalid expected version %lld",
                      (long long)pt->expected);
    total += pt->count;
    if (total > EVS_MAX_EVENTS_PER_APPEND)
      return evs__err(EVS_EINVAL, "more than %u events in one call",
                      EVS_MAX_EVENTS_PER_APPEND);
  }
  if (r->nparts > 1) {
    size_t dup;
    int rc = evs__find_dup(r, 1, r->nparts, &dup);
    if (rc < 0)
      return rc;
    if (rc) {
      r->failed_part = dup;
      return evs__err(EVS_EINVAL,
                      "stream '%s' appears twice in one multi-stream append",
                      r->parts[dup].stream);
    }
  }
  r->prep = total == 1 ? &r->prep1 : calloc(total, sizeof(evs__prep));
  if (r->prep == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  memset(r->prep, 0, total * sizeof(evs__prep));
  size_t k = 0;
  const char *last_type = NULL;
  size_t last_tl = 0;
  for (size_t p = 0; p < r->nparts; p++) {
    evs_append_part *pt = &r->parts[p];
    r->failed_part = p;
    for (size_t i = 0; i < pt->count; i++, k++) {
      evs_event_data *e = &pt->events[i];
      size_t tl = last_tl;
      if (e->type != last_type || e->type == NULL) {
        /* Events of a call usually share a few type strings. */
        int rc = evs__check_name(e->type, "event type", &tl);
        if (rc)
          return rc;
        last_type = e->type;
        last_tl = tl;
      }
      if ((e->data == NULL && e->data_len) ||
          (e->metadata == NULL && e->metadata_len))
        return evs__err(EVS_EINVAL, "event %zu: NULL data with a length", i);
      uint64_t esz = (uint64_t)e->data_len + e->metadata_len;
      if (esz > s->opts.max_event_size)
        return evs__err(EVS_ETOOLARGE,
                        "event %zu of '%s' has %llu bytes of data and "
                        "metadata: the limit is %u",
                        i, pt->stream, (unsigned long long)esz,
                        s->opts.max_event_size);
      bytes += esz + tl + 64;
      if (bytes > EVS_DEFAULT_MAX_APPEND_SIZE)
        return evs__err(EVS_ETOOLARGE,
                        "append is larger than %u bytes: split it",
                        EVS_DEFAULT_MAX_APPEND_SIZE);
      if (evs_uuid_is_nil(&e->id))
        evs_uuid_v7(&e->id);
      evs__prep *pr = &r->prep[k];
      pr->type_len = (uint32_t)tl;
      pr->data = e->data;
      pr->data_len = e->data_len;
      pr->raw_len = e->data_len;
    }
  }
  r->bytes = bytes;
  /* Ids must be distinct within the request. */
  if (total > 1) {
    size_t dup;
    int rc = evs__find_dup(r, 0, total, &dup);
    if (rc < 0)
      return rc;
    if (rc) {
      char txt[37];
      evs_uuid_format(txt, evs__req_id(r, dup));
      r->failed_part = 0;
      return evs__err(EVS_EINVAL, "event id %s appears twice in one append",
                      txt);
    }
  }
  /* Compress in the caller's thread, outside the writer. With a trained
   * dictionary, small events pay too (docs/storage.md). */
  void *cctx = NULL;
  const ZSTD_CDict *cdict = (const ZSTD_CDict *)evs__active_cdict(s);
  size_t threshold = s->opts.compress_threshold;
  if (cdict && threshold != UINT32_MAX && threshold > EVS__DICT_THRESHOLD)
    threshold = EVS__DICT_THRESHOLD;
  k = 0;
  for (size_t p = 0; p < r->nparts; p++) {
    for (size_t i = 0; i < r->parts[p].count; i++, k++) {
      evs__prep *pr = &r->prep[k];
      if (pr->data_len < threshold || pr->data_len < 32)
        continue;
      if (cctx == NULL && (cctx = evs__cctx_get(s)) == NULL)
        break;
      size_t bound = ZSTD_compressBound(pr->data_len);
      void *buf = malloc(bound);
      if (buf == NULL)
        break;
      size_t n = cdict ? ZSTD_compress_usingCDict((ZSTD_CCtx *)cctx, buf, bound,
                                                  pr->data, pr->data_len, cdict)
                       : ZSTD_compress2((ZSTD_CCtx *)cctx, buf, bound, pr->data,
                                        pr->data_len);
      if (ZSTD_isError(n) || n >= pr->data_len - pr->data_len / 16) {
        free(buf); /* does not pay: store as is */
        continue;
      }
      pr->owned = buf;
      pr->data = buf;
      pr->data_len = n;
      pr->flags |= EVS__REC_COMPRESSED | (cdict ? EVS__REC_DICT : 0);
    }
  }
  evs__cctx_put(s, cctx);
  r->failed_part = 0;
  return 0;
}

/* ---- applying requests inside the write transaction --------------------- */

static int evs__put(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl,
                    const void *v, size_t vl, unsigned flags) {
  MDB_val key = { kl, (void *)k }, val = { vl, (void *)v };
  return mdb_put(txn, dbi, &key, &val, flags);
}

/* Loads the largest stored id into b->ids_max. LMDB code. */
static int evs__ids_max_load(evs__batch *b) {
  if (b->ids_max_state)
    return 0;
  if (b->c_ids == NULL) {
    int rc = mdb_cursor_open(b->txn, b->s->db_ids, &b->c_ids);
    if (rc)
      return rc;
  }
  MDB_val k, v;
  int rc = mdb_cursor_get(b->c_ids, &k, &v, MDB_LAST);
  if (rc == MDB_NOTFOUND) {
    b->ids_max_state = 2;
    return 0;
  }
  if (rc)
    return rc;
  if (k.mv_size != 16)
    return MDB_CORRUPTED;
  memcpy(b->ids_max, k.mv_data, 16);
  b->ids_max_state = 1;
  return 0;
}

/* 1 when `id` sorts after every stored id (so it is not stored). */
static int evs__id_is_new_max(const evs__batch *b, const uint8_t *id) {
  return b->ids_max_state == 2 ||
         (b->ids_max_state == 1 && memcmp(id, b->ids_max, 16) > 0);
}

/* Looks an id up; MDB_NOTFOUND when it is not stored. */
static int evs__id_get(evs__batch *b, const uint8_t *id, MDB_val *v) {
  int rc = evs__ids_max_load(b);
  if (rc)
    return rc;
  if (evs__id_is_new_max(b, id))
    return MDB_NOTFOUND;
  MDB_val k = { 16, (void *)id };
  return mdb_get(b->txn, b->s->db_ids, &k, v);
}

/* Indexes a new id. Time-ordered ids (UUIDv7) arrive in increasing order
 * and go in with MDB_APPEND at the cursor kept at the end of the
 * database; others take the B-tree search. LMDB code. */
static int evs__id_put(evs__batch *b, const uint8_t *id, const uint8_t *pk) {
  int rc = evs__ids_max_load(b);
  if (rc)
    return rc;
  MDB_val k = { 16, (void *)id }, v = { 8, (void *)pk };
  if (evs__id_is_new_max(b, id)) {
    rc = mdb_cursor_put(b->c_ids, &k, &v, MDB_APPEND);
    if (rc == 0) {
      memcpy(b->ids_max, id, 16);
      b->ids_max_state = 1;
    }
    return rc;
  }
  return mdb_put(b->txn, b->s->db_ids, &k, &v, MDB_NOOVERWRITE);
}

static int evs__ipos_add(evs__ipos **a, size_t *n, size_t *cap, uint64_t key,
                         uint64_t pos) {
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 256;
    evs__ipos *na = realloc(*a, nc * sizeof *na);
    if (na == NULL)
      return ENOMEM;
    *a = na;
    *cap = nc;
  }
  (*a)[*n].key = key;
  (*a)[*n].pos = pos;
  (*n)++;
  return 0;
}

static int evs__cmp_ipos(const void *x, const void *y) {
  const evs__ipos *a = (const evs__ipos *)x, *b = (const evs__ipos *)y;
  if (a->key != b->key)
    return a->key < b->key ? -1 : 1;
  return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* MDB_MULTIPLE | MDB_APPENDDUP through a cursor (mdb_put() has no
 * MDB_MULTIPLE). LMDB code. */
static int evs__put_multiple(MDB_txn *txn, MDB_dbi dbi, MDB_val *k,
                             MDB_val d[2]) {
  MDB_cursor *c;
  int rc = mdb_cursor_open(txn, dbi, &c);
  if (rc)
    return rc;
  rc = mdb_cursor_put(c, k, d, MDB_MULTIPLE | MDB_APPENDDUP);
  mdb_cursor_close(c);
  return rc;
}

/* Puts a batch's list entries: one MDB_MULTIPLE call per key, positions
 * in increasing order (MDB_APPENDDUP). LMDB code. */
static int evs__flush_list(evs__batch *b, MDB_dbi dbi, evs__ipos *a, size_t n) {
  if (n == 0)
    return 0;
  /* Usually already sorted (one category, one type). */
  int sorted = 1;
  for (size_t i = 1; i < n && sorted; i++)
    sorted = evs__cmp_ipos(&a[i - 1], &a[i]) < 0;
  if (!sorted)
    qsort(a, n, sizeof *a, evs__cmp_ipos);
  if (b->capscratch < n * 8) {
    uint8_t *ns = realloc(b->scratch, n * 8);
    if (ns == NULL)
      return ENOMEM;
    b->scratch = ns;
    b->capscratch = n * 8;
  }
  MDB_cursor *c = NULL;
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0;) {
    size_t j = i;
    while (j < n && a[j].key == a[i].key) {
      evs__put_be64(b->scratch + (j - i) * 8, a[j].pos);
      j++;
    }
    uint8_t kb[8];
    evs__put_be64(kb, a[i].key);
    MDB_val k = { 8, kb };
    MDB_val d[2] = { { 8, b->scratch }, { j - i, NULL } };
    if (j - i == 1) /* a cursor costs more than it saves for one entry */
      rc = mdb_put(b->txn, dbi, &k, &d[0], MDB_APPENDDUP);
    else if (c != NULL || (rc = mdb_cursor_open(b->txn, dbi, &c)) == 0)
      rc = mdb_cursor_put(c, &k, d, MDB_MULTIPLE | MDB_APPENDDUP);
    i = j;
  }
  if (c)
    mdb_cursor_close(c);
  return rc;
}

static int evs__flush_lists(evs__batch *b) {
  int rc = evs__flush_list(b, b->s->db_cat_index, b->cat, b->ncat);
  if (rc == 0)
    rc = evs__flush_list(b, b->s->db_type_index, b->typ, b->ntyp);
  b->ncat = b->ntyp = 0;
  return rc;
}

static void evs__batch_free(evs__batch *b) {
  free(b->cat);
  free(b->typ);
  free(b->scratch);
  b->cat = b->typ = NULL;
  b->scratch = NULL;
}

static int evs__last_id(MDB_txn *txn, MDB_dbi dbi, uint64_t *next) {
  MDB_cursor *c;
  int rc = mdb_cursor_open(txn, dbi, &c);
  if (rc)
    return rc;
  MDB_val k, v;
  rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
  mdb_cursor_close(c);
  if (rc == MDB_NOTFOUND) {
    *next = 1;
    return 0;
  }
  if (rc)
    return rc;
  if (k.mv_size != 8)
    return MDB_CORRUPTED;
  *next = evs__get_be64(k.mv_data) + 1;
  return 0;
}

/* Interns `name` in (names → id, ids → name); returns an LMDB code. */
static int evs__intern(evs__batch *b, MDB_dbi by_name, MDB_dbi by_id,
                       uint64_t *next, const void *name, size_t len,
                       uint64_t *id) {
  MDB_val k = { len, (void *)name }, v;
  int rc = mdb_get(b->txn, by_name, &k, &v);
  if (rc == 0) {
    if (v.mv_size != 8)
      return MDB_CORRUPTED;
    *id = evs__get_be64(v.mv_data);
    return 0;
  }
  if (rc != MDB_NOTFOUND)
    return rc;
  if (*next == 0 && (rc = evs__last_id(b->txn, by_id, next)) != 0)
    return rc;
  uint8_t kb[8];
  *id = (*next)++;
  evs__put_be64(kb, *id);
  rc = evs__put(b->txn, by_name, name, len, kb, 8, MDB_NOOVERWRITE);
  if (rc == 0)
    rc = evs__put(b->txn, by_id, kb, 8, name, len, MDB_APPEND);
  return rc;
}

static int evs__put_stream(evs__batch *b, const char *name, size_t len,
                           const evs__stream_rec *st) {
  uint8_t small[256];
  size_t n = evs__stream_rec_size(st);
  void *buf = n <= sizeof small ? small : malloc(n);
  if (buf == NULL)
    return ENOMEM;
  evs__stream_rec_encode(buf, st);
  int rc = evs__put(b->txn, b->s->db_streams, name, len, buf, n, 0);
  if (buf != small)
    free(buf);
  return rc;
}

/* A new stream entry: assigns its id and category. LMDB code. */
static int evs__new_stream(evs__batch *b, const char *name, size_t len,
                           evs__stream_rec *st) {
  evs_store *s = b->s;
  int rc;
  if (b->next_sid == 0 &&
      (rc = evs__last_id(b->txn, s->db_stream_ids, &b->next_sid)) != 0)
    return rc;
  memset(st, 0, sizeof *st);
  st->stream_id = b->next_sid++;
  st->last_version = -1;
  st->truncate_before = -1;
  uint8_t kb[8];
  evs__put_be64(kb, st->stream_id);
  rc = evs__put(b->txn, s->db_stream_ids, kb, 8, name, len, MDB_APPEND);
  if (rc)
    return rc;
  evs_slice cat = evs_stream_category(name, len);
  return evs__intern(b, s->db_cats, s->db_cat_names, &b->next_cid, cat.data,
                     cat.len, &st->category_id);
}

static int evs__check_expected(int64_t expected, int64_t cur) {
  if (expected == EVS_EXPECT_ANY)
    return 1;
  if (expected == EVS_EXPECT_NO_STREAM)
    return cur == -1;
  if (expected == EVS_EXPECT_EXISTS)
    return cur >= 0;
  return cur == expected;
}

static const char *evs__expected_text(int64_t expected, char *buf, size_t cap) {
  if (expected == EVS_EXPECT_ANY)
    return "any";
  if (expected == EVS_EXPECT_NO_STREAM)
    return "no-stream";
  if (expected == EVS_EXPECT_EXISTS)
    return "exists";
  snprintf(buf, cap, "%lld", (long long)expected);
  return buf;
}

/* Per-part state between the check and the write phase. */
typedef struct evs__part_state {
  evs__stream_rec st;
  int exists; /* entry in the streams table */
  int noop;   /* idempotent retry: nothing to write */
} evs__part_state;

/*
 * Phase 1 for one part: idempotency, tombstone and expected version.
 * Returns 0 (ok, or noop set), a logical EVS_E* error (request fails), or a
 * positive LMDB error (fatal for the batch) via *fatal.
 */
static int evs__check_part(evs__batch *b, evs__req *r, size_t p,
                           evs__part_state *ps, int *fatal) {
  evs_store *s = b->s;
  evs_append_part *pt = &r->parts[p];
  size_t nlen = r->name_len[p];
  int rc = 0;
  if (b->c_sidx == NULL &&
      (rc = mdb_cursor_open(b->txn, s->db_stream_index, &b->c_sidx))) {
    *fatal = evs__lmdb_err(rc);
    return *fatal;
  }
  rc = evs__stream_get_at(s, b->txn, b->c_sidx, pt->stream, nlen, &ps->st);
  if (rc == 0) {
    ps->exists = 1;
  } else if (rc == EVS_ENOSTREAM) {
    ps->exists = 0;
  } else {
    *fatal = rc;
    return rc;
  }
  /* Idempotency: look every id up. */
  size_t known = 0;
  uint64_t first_known_pos = 0;
  for (size_t i = 0; i < pt->count; i++) {
    MDB_val v;
    int mrc = evs__id_get(b, pt->events[i].id.bytes, &v);
    if (mrc == MDB_NOTFOUND)
      continue;
    if (mrc) {
      *fatal = evs__lmdb_err(mrc);
      return *fatal;
    }
    if (known == 0 && v.mv_size == 8)
      first_known_pos = evs__get_be64(v.mv_data);
    known++;
  }
  if (known > 0) {
    char idtxt[37];
    if (known < pt->count) {
      for (size_t i = 0; i < pt->count; i++) {
        MDB_val v;
        if (evs__id_get(b, pt->events[i].id.bytes, &v) == 0) {
          evs_uuid_format(idtxt, &pt->events[i].id);
          break;
        }
      }
      return evs__err(EVS_EIDCONFLICT,
                      "append to '%s': event id %s is already stored but "
                      "%zu of the %zu events are new (not a retry)",
                      pt->stream, idtxt, pt->count - known, pt->count);
    }
    /* All known: a retry if they sit consecutively in this stream at the
     * place the expected version names. */
    int64_t v0 = -1;
    uint64_t p0 = 0, plast = 0;
    int64_t ts0 = 0;
    for (size_t i = 0; i < pt->count; i++) {
      MDB_val v;
      int mrc = evs__id_get(b, pt->events[i].id.bytes, &v);
      if (mrc || v.mv_size != 8) {
        *fatal = mrc ? evs__lmdb_err(mrc) : EVS_ECORRUPT;
        return *fatal;
      }
      uint64_t pos = evs__get_be64(v.mv_data);
      uint8_t pk[8];
      evs__put_be64(pk, pos);
      MDB_val ek = { 8, pk }, ev;
      evs__record rec;
      mrc = mdb_get(b->txn, s->db_events, &ek, &ev);
      if (mrc || evs__record_peek(&rec, ev.mv_data, ev.mv_size)) {
        *fatal = mrc && mrc != MDB_NOTFOUND ? evs__lmdb_err(mrc) : EVS_ECORRUPT;
        return evs__err(*fatal,
                        "id index points to a missing record at "
                        "position %llu",
                        (unsigned long long)pos);
      }
      evs_uuid_format(idtxt, &pt->events[i].id);
      if (!ps->exists || rec.stream_id != ps->st.stream_id)
        return evs__err(EVS_EIDCONFLICT,
                        "append to '%s': event id %s is already stored in "
                        "another stream",
                        pt->stream, idtxt);
      if (i == 0) {
        v0 = (int64_t)rec.version;
        p0 = pos;
        ts0 = rec.timestamp_ns;
      } else if ((int64_t)rec.version != v0 + (int64_t)i) {
        return evs__err(EVS_EIDCONFLICT,
                        "append to '%s': event id %s is already stored, "
                        "but not in the same order as this append",
                        pt->stream, idtxt);
      }
      plast = pos;
    }
    (void)first_known_pos;
    int match = 1;
    if (pt->expected >= 0)
      match = v0 == pt->expected + 1;
    else if (pt->expected == EVS_EXPECT_NO_STREAM)
      match = v0 == ps->st.start_version;
    if (!match) {
      char eb[32];
      return evs__err(EVS_EIDCONFLICT,
                      "append to '%s': its events are already stored at "
                      "version %lld, not where expected version %s places "
                      "them",
                      pt->stream, (long long)v0,
                      evs__expected_text(pt->expected, eb, sizeof eb));
    }
    ps->noop = 1;
    pt->result.first_version = v0;
    pt->result.last_version = v0 + (int64_t)pt->count - 1;
    pt->result.first_position = p0;
    pt->result.last_position = plast;
    pt->result.timestamp_ns = ts0;
    pt->result.idempotent = 1;
    pt->result.actual_version = ps->st.last_version;
    return 0;
  }
  if (ps->exists && (ps->st.flags & EVS_STREAM_TOMBSTONED))
    return evs__err(EVS_ESTREAMDELETED,
                    "stream '%s' is tombstoned: it can never be appended "
                    "to again",
                    pt->stream);
  int64_t cur = (!ps->exists || (ps->st.flags & EVS_STREAM_DELETED))
                    ? -1
                    : ps->st.last_version;
  if (!evs__check_expected(pt->expected, cur)) {
    char eb[32];
    pt->result.actual_version = cur;
    return evs__err(EVS_EWRONGVERSION,
                    "stream '%s': expected version %s, actual version %lld",
                    pt->stream, evs__expected_text(pt->expected, eb, sizeof eb),
                    (long long)cur);
  }
  return 0;
}

/* Phase 2 for one part: the puts. Returns an LMDB code. */
static int evs__write_part(evs__batch *b, evs__req *r, size_t p,
                           evs__part_state *ps, size_t prep_off) {
  evs_store *s = b->s;
  evs_append_part *pt = &r->parts[p];
  size_t nlen = r->name_len[p];
  int rc;
  if (!ps->exists && (rc = evs__new_stream(b, pt->stream, nlen, &ps->st)))
    return rc;
  evs__stream_rec *st = &ps->st;
  /* The record is written only when it changes: a new stream, or one
   * recreated after a soft delete. Otherwise the new head is the last
   * entry of the stream's list (evs__stream_head). */
  int put_record = !ps->exists || (st->flags & EVS_STREAM_DELETED);
  st->flags &= ~EVS_STREAM_DELETED;
  int64_t base = st->last_version + 1;
  uint8_t sk[8];
  evs__put_be64(sk, st->stream_id);
  uint64_t first_pos = b->next_pos;
  uint8_t vp_small[16], *vp = vp_small;
  if (pt->count > 1) {
    vp = malloc(16 * pt->count);
    if (vp == NULL)
      return ENOMEM;
  }
  for (size_t i = 0; i < pt->count; i++) {
    evs_event_data *e = &pt->events[i];
    evs__prep *pr = &r->prep[prep_off + i];
    uint64_t tid;
    if (b->last_type_len == pr->type_len &&
        memcmp(b->last_type, e->type, pr->type_len) == 0) {
      tid = b->last_tid;
    } else {
      rc = evs__intern(b, s->db_types, s->db_type_names, &b->next_tid, e->type,
                       pr->type_len, &tid);
      if (rc)
        goto fail;
      memcpy(b->last_type, e->type, pr->type_len);
      b->last_type_len = pr->type_len;
      b->last_tid = tid;
    }
    uint64_t pos = b->next_pos++;
    evs__record rec = {
      .stream_id = st->stream_id,
      .version = (uint64_t)(base + (int64_t)i),
      .timestamp_ns = b->ts,
      .type_id = tid,
      .id = e->id.bytes,
      .flags = pr->flags,
      .raw_len = pr->raw_len,
      .metadata = e->metadata,
      .metadata_len = e->metadata_len,
      .data = pr->data,
      .data_len = pr->data_len,
    };
    uint8_t pk[8];
    evs__put_be64(pk, pos);
    MDB_val key = { 8, pk }, val = { evs__record_exact_size(&rec), NULL };
    if (b->events_written == 0 && i == 0) {
      /* The group's first event: a cursor pays from the second one on. */
      rc = mdb_put(b->txn, s->db_events, &key, &val, MDB_APPEND | MDB_RESERVE);
    } else {
      if (b->c_events == NULL &&
          (rc = mdb_cursor_open(b->txn, s->db_events, &b->c_events)))
        goto fail;
      rc = mdb_cursor_put(b->c_events, &key, &val, MDB_APPEND | MDB_RESERVE);
    }
    if (rc)
      goto fail;
    evs__record_encode(val.mv_data, &rec);
    b->bytes_written += val.mv_size;
    evs__put_be64(vp + 16 * i, rec.version);
    evs__put_be64(vp + 16 * i + 8, pos);
    if ((rc = evs__id_put(b, e->id.bytes, pk)))
      goto fail;
    if ((rc = evs__ipos_add(&b->cat, &b->ncat, &b->capcat, st->category_id,
                            pos)) ||
        (rc = evs__ipos_add(&b->typ, &b->ntyp, &b->captyp, tid, pos)))
      goto fail;
  }
  /* The part's (version, position) pairs, in one call. */
  MDB_val k = { 8, sk };
  MDB_val d[2] = { { 16, vp }, { pt->count, NULL } };
  rc = pt->count == 1
           ? mdb_put(b->txn, s->db_stream_index, &k, &d[0], MDB_APPENDDUP)
           : evs__put_multiple(b->txn, s->db_stream_index, &k, d);
  if (vp != vp_small)
    free(vp);
  if (rc)
    return rc;
  st->last_version = base + (int64_t)pt->count - 1;
  st->last_position = b->next_pos - 1;
  st->last_ts = b->ts;
  if (put_record && (rc = evs__put_stream(b, pt->stream, nlen, st)))
    return rc;
  pt->result.first_version = base;
  pt->result.last_version = st->last_version;
  pt->result.first_position = first_pos;
  pt->result.last_position = st->last_position;
  pt->result.timestamp_ns = b->ts;
  pt->result.idempotent = 0;
  pt->result.actual_version = st->last_version;
  b->events_written += pt->count;
  return 0;
fail:
  if (vp != vp_small)
    free(vp);
  return rc;
}

/*
 * Applies one append request. Returns 0 when the request is done (its
 * r->rc says how), or a fatal error code for the whole batch (an LMDB
 * error as a positive int, or an EVS_E code).
 */
static int evs__apply_append(evs__batch *b, evs__req *r) {
  evs__part_state one, *ps = &one;
  if (r->nparts > 1) {
    ps = calloc(r->nparts, sizeof *ps);
    if (ps == NULL) {
      r->rc = evs__err(EVS_ENOMEM, "out of memory");
      return 0;
    }
  } else {
    memset(&one, 0, sizeof one);
  }
  int fatal = 0;
  /* An import timestamp older than the head is refused below, after the
   * idempotency checks: the retry of an import that did commit succeeds
   * with its original result even once the log has moved on. */
  int ts_old = r->fixed_ts && r->fixed_ts < b->floor;
  if (r->fixed_ts)
    b->ts = ts_old ? b->floor : r->fixed_ts;
  else
    b->ts = b->now > b->floor ? b->now : b->floor;
  for (size_t p = 0; p < r->nparts; p++) {
    int rc = evs__check_part(b, r, p, &ps[p], &fatal);
    if (fatal) {
      if (ps != &one)
        free(ps);
      return fatal;
    }
    if (rc) {
      r->rc = rc;
      r->failed_part = p;
      snprintf(r->detail, sizeof r->detail, "%s", evs_last_error());
      if (ps != &one)
        free(ps);
      return 0;
    }
  }
  for (size_t p = 0; ts_old && p < r->nparts; p++) {
    if (ps[p].noop)
      continue;
    r->rc = evs__err(EVS_EINVAL,
                     "import timestamp %lld is older than the head of the "
                     "log (%lld): timestamps never decrease",
                     (long long)r->fixed_ts, (long long)b->floor);
    snprintf(r->detail, sizeof r->detail, "%s", evs_last_error());
    r->failed_part = p;
    if (ps != &one)
      free(ps);
    return 0;
  }
  size_t off = 0;
  for (size_t p = 0; p < r->nparts; p++) {
    if (!ps[p].noop) {
      int rc = evs__write_part(b, r, p, &ps[p], off);
      if (rc) {
        if (ps != &one)
          free(ps);
        return rc;
      }
    }
    off += r->parts[p].count;
  }
  if (ps != &one)
    free(ps);
  if (b->ts > b->floor)
    b->floor = b->ts;
  r->rc = 0;
  return 0;
}

static int evs__apply_delete(evs__batch *b, evs__req *r) {
  evs_store *s = b->s;
  evs__stream_rec st;
  int rc = evs__stream_get(s, b->txn, r->stream, r->stream_len, &st);
  char eb[32];
  if (rc == EVS_ENOSTREAM) {
    if (!evs__check_expected(r->expected, -1) ||
        r->expected == EVS_EXPECT_EXISTS) {
      r->actual_version = -1;
      r->rc =
          evs__err(EVS_EWRONGVERSION,
                   "stream '%s': expected version %s, actual version -1",
                   r->stream, evs__expected_text(r->expected, eb, sizeof eb));
      snprintf(r->detail, sizeof r->detail, "%s", evs_last_error());
      return 0;
    }
    if (!r->hard) {
      r->rc = 0;
      return 0;
    }
    if ((rc = evs__new_stream(b, r->stream, r->stream_len, &st)))
      return rc;
    st.flags |= EVS_STREAM_TOMBSTONED;
    rc = evs__put_stream(b, r->stream, r->stream_len, &st);
    if (rc == 0) {
      r->rc = 0;
      b->tombstoned++;
    }
    return rc;
  }
  if (rc)
    return rc;
  if (st.flags & EVS_STREAM_TOMBSTONED) {
    if (r->hard) {
      r->rc = 0; /* already tombstoned */
      return 0;
    }
    r->rc =
        evs__err(EVS_ESTREAMDELETED, "stream '%s' is tombstoned", r->stream);
    snprintf(r->detail, sizeof r->detail, "%s", evs_last_error());
    return 0;
  }
  int64_t cur = (st.flags & EVS_STREAM_DELETED) ? -1 : st.last_version;
  r->actual_version = cur;
  if (!evs__check_expected(r->expected, cur)) {
    r->rc = evs__err(EVS_EWRONGVERSION,
                     "stream '%s': expected version %s, actual version %lld",
                     r->stream, evs__expected_text(r->expected, eb, sizeof eb),
                     (long long)cur);
    snprintf(r->detail, sizeof r->detail, "%s", evs_last_error());
    return 0;
  }
  if (r->hard) {
    st.flags |= EVS_STREAM_TOMBSTONED;
    st.flags &= ~EVS_STREAM_DELETED;
    b->tombstoned++;
  } else {
    if (st.flags & EVS_STREAM_DELETED) {
      r->rc = 0;
      return 0;
    }
    st.flags |= EVS_STREAM_DELETED;
    st.start_version = st.last_version + 1;
  }
  rc = evs__put_stream(b, r->stream, r->stream_len, &st);
  if (rc == 0)
    r->rc = 0;
  return rc;
}

static int evs__apply_metadata(evs__batch *b, evs__req *r) {
  evs_store *s = b->s;
  evs__stream_rec st;
  int rc = evs__stream_get(s, b->txn, r->stream, r->stream_len, &st);
  if (rc == EVS_ENOSTREAM) {
    if ((rc = evs__new_stream(b, r->stream, r->stream_len, &st)))
      return rc;
  } else if (rc) {
    return rc;
  } else if (st.flags & EVS_STREAM_TOMBSTONED) {
    r->rc =
        evs__err(EVS_ESTREAMDELETED, "stream '%s' is tombstoned", r->stream);
    snprintf(r->detail, sizeof r->detail, "%s", evs_last_error());
    return 0;
  }
  st.max_count = r->md.max_count;
  st.max_age_sec = r->md.max_age_sec;
  st.truncate_before = r->md.truncate_before < 0 ? -1 : r->md.truncate_before;
  st.custom = r->md.custom;
  st.custom_len = r->md.custom_len;
  rc = evs__put_stream(b, r->stream, r->stream_len, &st);
  if (rc == 0)
    r->rc = 0;
  return rc;
}

/* One attempt at a batch. Returns 0, or a fatal code: a positive LMDB code
 * or a negative EVS_E code. */
static int evs__batch_try(evs_store *s, evs__req **reqs, size_t n,
                          evs__batch *b) {
  memset(b, 0, sizeof *b);
  b->s = s;
  evs__rd_acquire(s);
  int rc = mdb_txn_begin(s->env, NULL, 0, &b->txn);
  if (rc) {
    evs__rd_release(s);
    return rc;
  }
  uint64_t head;
  int64_t head_ts;
  rc = evs__log_head(s, b->txn, &head, &head_ts);
  if (rc) {
    mdb_txn_abort(b->txn);
    evs__rd_release(s);
    return rc;
  }
  b->next_pos = head + 1;
  b->now = evs__now_ns();
  b->floor = head_ts;
  b->ts = b->now > head_ts ? b->now : head_ts;
  for (size_t i = 0; i < n; i++) {
    evs__req *r = reqs[i];
    r->rc = EVS_EIO;
    r->detail[0] = '\0';
    if (r->op == EVS__OP_APPEND)
      rc = evs__apply_append(b, r);
    else if (r->op == EVS__OP_DELETE)
      rc = evs__apply_delete(b, r);
    else if (r->op == EVS__OP_METADATA)
      rc = evs__apply_metadata(b, r);
    else if (r->op == EVS__OP_FN)
      rc = r->fn(s, b->txn, r->compact, &r->rc);
    else if ((rc = evs__flush_lists(b)) == 0) /* before it deletes any */
      rc = evs__apply_compact(s, b->txn, r->compact, &r->rc);
    if (rc)
      break;
  }
  if (rc == 0)
    rc = evs__flush_lists(b);
  if (b->c_events)
    mdb_cursor_close(b->c_events);
  if (b->c_ids)
    mdb_cursor_close(b->c_ids);
  if (b->c_sidx)
    mdb_cursor_close(b->c_sidx);
  b->c_events = b->c_ids = b->c_sidx = NULL;
  evs__batch_free(b);
  if (rc) {
    mdb_txn_abort(b->txn);
    evs__rd_release(s);
    b->txn = NULL;
    return rc;
  }
  rc = mdb_txn_commit(b->txn);
  evs__rd_release(s);
  b->txn = NULL;
  return rc;
}

static void evs__publish(evs_store *s, uint64_t head, int64_t ts,
                         const evs__group_info *g) {
  pthread_mutex_lock(&s->c_mu);
  if (g == NULL) {
    /* Streams were tombstoned: no event, the same head; wake the
     * listeners and waiters so that stream subscriptions end. */
    for (evs__commit_listener *l = s->listeners; l; l = l->next)
      if (l->fn)
        l->fn(s->committed_head, l->payload);
    pthread_mutex_unlock(&s->c_mu);
    evs__bump_commit_seq(s);
    return;
  }
  if (head > s->committed_head) {
    s->committed_ts = ts;
    __atomic_store_n(&s->committed_head, head, __ATOMIC_RELEASE);
  }
  s->commit_seq++;
  for (evs__commit_listener *l = s->listeners; l; l = l->next) {
    if (l->fn)
      l->fn(s->committed_head, l->payload);
    if (l->group_fn)
      l->group_fn(g, l->payload);
  }
  pthread_mutex_unlock(&s->c_mu);
  evs__bump_commit_seq(s);
}

/* LMDB reports a short write as EIO ("short write, filesystem full?"): on
 * EIO, look at the filesystem and say what happened. */
static int evs__disk_full(const evs_store *s) {
  struct statvfs vfs;
  if (statvfs(s->path, &vfs) != 0)
    return 0;
  /* Less than 64 KiB left for an unprivileged writer: full. */
  return (uint64_t)vfs.f_bavail * vfs.f_frsize < 64u * 1024u;
}

static int evs__fatal_to_evs(int rc, const char *what) {
  if (rc <= EVS__ERRNO_END && rc > -30000)
    return rc; /* already an EVS code, detail set */
  if (rc == ENOSPC || rc == -ENOSPC)
    return evs__err(-ENOSPC,
                    "%s: the disk is full; nothing of this append was "
                    "written",
                    what);
  int e = evs__lmdb_err(rc);
  return evs__err(e, "%s: %s", what, rc > 0 ? strerror(rc) : mdb_strerror(rc));
}

static int64_t evs__mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Runs a batch to completion: every request's rc is final afterwards. */
static void evs__run_batch(evs_store *s, evs__req **reqs, size_t n) {
  evs__batch b;
  int64_t t0 = evs__mono_ns();
  for (int attempt = 0;; attempt++) {
    int rc = evs__batch_try(s, reqs, n, &b);
    if (rc == 0) {
      uint64_t head = b.next_pos - 1;
      __atomic_add_fetch(&s->n_commits, 1, __ATOMIC_RELAXED);
      __atomic_add_fetch(&s->n_appends, n, __ATOMIC_RELAXED);
      __atomic_add_fetch(&s->n_events_written, b.events_written,
                         __ATOMIC_RELAXED);
      __atomic_add_fetch(&s->n_bytes_written, b.bytes_written,
                         __ATOMIC_RELAXED);
      if (b.tombstoned)
        __atomic_add_fetch(&s->tomb_seq, 1, __ATOMIC_RELEASE);
      if (b.events_written) {
        evs__group_info g = { head, n, b.events_written, b.bytes_written,
                              evs__mono_ns() - t0 };
        evs__publish(s, head, b.floor, &g);
      } else if (b.tombstoned) {
        evs__publish(s, head, b.floor, NULL);
      }
      return;
    }
    int grc = 0;
    if (rc == MDB_MAP_FULL) {
      grc = evs__grow_map(s, 0);
      if (grc == 0 && attempt < 64)
        continue;
      if (grc == 0)
        grc = evs__err(EVS_EMAPFULL, "the store could not make room");
    } else if (rc == MDB_MAP_RESIZED) {
      grc = evs__grow_map(s, 1);
      if (grc == 0 && attempt < 64)
        continue;
      if (grc == 0)
        grc = evs__err(EVS_EBUSY, "the map kept being resized");
    } else if (n > 1 && (rc == MDB_TXN_FULL || rc == MDB_BAD_VALSIZE)) {
      /* The batch as a whole is too big for one transaction: commit its
       * requests one by one so that only an oversized one fails. */
      for (size_t i = 0; i < n; i++)
        evs__run_batch(s, &reqs[i], 1);
      return;
    } else if ((rc == EIO || rc == -EIO || rc == EVS_EIO) &&
               evs__disk_full(s)) {
      grc = evs__fatal_to_evs(ENOSPC, "commit failed");
    } else {
      grc = evs__fatal_to_evs(rc, "commit failed");
    }
    const char *detail = evs_last_error();
    for (size_t i = 0; i < n; i++) {
      reqs[i]->rc = grc;
      snprintf(reqs[i]->detail, sizeof reqs[i]->detail, "%s", detail);
    }
    return;
  }
}

/* ---- the queue and the leader ------------------------------------------ */

/*
 * Group pacing. When a group completes, its callers wake one by one and
 * queue their next requests; the first to arrive would lead a group of one
 * while the others are still waking, and groups would alternate between
 * tiny and large. So a leader that finds far fewer requests queued than
 * recent groups held (a slowly decaying peak) waits for them, at most half
 * the last commit's duration and never more than 1 ms. A single writer
 * never waits: its groups have one request.
 */
static void evs__pace(evs_store *s) {
  size_t target = s->peak_group;
  if (target < 4 || s->q_len >= target || s->closing)
    return;
  if (target > EVS__BATCH_MAX)
    target = EVS__BATCH_MAX;
  int64_t wait = s->last_commit_ns / 2;
  if (wait > 1000000)
    wait = 1000000;
  if (wait < 20000)
    return;
  struct timespec dl;
  clock_gettime(CLOCK_MONOTONIC, &dl);
  dl.tv_nsec += (long)wait;
  while (dl.tv_nsec >= 1000000000L) {
    dl.tv_sec++;
    dl.tv_nsec -= 1000000000L;
  }
  s->lead_target = target;
  while (s->q_len < target && !s->closing) {
    if (pthread_cond_timedwait(&s->lead_cv, &s->q_mu, &dl) == ETIMEDOUT)
      break;
  }
  s->lead_target = 0;
}

/* Called with q_mu held and leader_active set; returns with q_mu held. */
static void evs__lead(evs_store *s) {
  evs__req *batch[EVS__BATCH_MAX];
  size_t n = 0;
  size_t bytes = 0;
  evs__pace(s);
  while (s->q_head && n < EVS__BATCH_MAX) {
    evs__req *r = s->q_head;
    if (n > 0 && bytes + r->bytes > EVS__BATCH_BYTES)
      break;
    s->q_head = r->next;
    if (s->q_head == NULL)
      s->q_tail = NULL;
    s->q_len--;
    r->next = NULL;
    batch[n++] = r;
    bytes += r->bytes;
  }
  pthread_mutex_unlock(&s->q_mu);
  int64_t t0 = evs__mono_ns();
  evs__run_batch(s, batch, n);
  int64_t took = evs__mono_ns() - t0;
  evs__req *async_done = NULL;
  pthread_mutex_lock(&s->q_mu);
  s->last_group = n;
  s->peak_group -= s->peak_group / 16;
  if (n > s->peak_group)
    s->peak_group = n;
  s->last_commit_ns = took;
  for (size_t i = 0; i < n; i++) {
    evs__req *r = batch[i];
    r->done = 1;
    if (r->is_async) {
      r->next = async_done;
      async_done = r;
    }
  }
  s->leader_active = 0;
  pthread_cond_broadcast(&s->q_cv);
  if (s->q_head && s->writer_started)
    pthread_cond_signal(&s->wt_cv);
  if (async_done) {
    pthread_mutex_unlock(&s->q_mu);
    while (async_done) {
      evs__req *r = async_done;
      async_done = r->next;
      evs__req_release(r);
      if (r->rc)
        evs__set_detail(r->detail);
      r->cb(r->rc, r->parts, r->nparts, r->failed_part, r->payload);
      free(r);
      pthread_mutex_lock(&s->q_mu);
      s->inflight_async--;
      if (s->inflight_async == 0)
        pthread_cond_broadcast(&s->q_cv);
      pthread_mutex_unlock(&s->q_mu);
    }
    pthread_mutex_lock(&s->q_mu);
  }
}

static void evs__enqueue(evs_store *s, evs__req *r) {
  r->next = NULL;
  if (s->q_tail)
    s->q_tail->next = r;
  else
    s->q_head = r;
  s->q_tail = r;
  s->q_len++;
  if (s->lead_target && s->q_len >= s->lead_target)
    pthread_cond_signal(&s->lead_cv);
}

static int evs__submit_sync(evs_store *s, evs__req *r) {
  pthread_mutex_lock(&s->q_mu);
  if (s->closing) {
    pthread_mutex_unlock(&s->q_mu);
    return evs__err(EVS_ECLOSED, "store is closing");
  }
  evs__enqueue(s, r);
  while (!r->done) {
    if (!s->leader_active) {
      s->leader_active = 1;
      evs__lead(s);
      continue;
    }
    pthread_cond_wait(&s->q_cv, &s->q_mu);
  }
  pthread_mutex_unlock(&s->q_mu);
  if (r->rc)
    evs__set_detail(r->detail);
  return r->rc;
}

static void *evs__writer_main(void *arg) {
  evs_store *s = (evs_store *)arg;
  pthread_mutex_lock(&s->q_mu);
  for (;;) {
    if (s->q_head && !s->leader_active) {
      s->leader_active = 1;
      evs__lead(s);
      continue;
    }
    if (s->closing && s->q_head == NULL)
      break;
    pthread_cond_wait(&s->wt_cv, &s->q_mu);
  }
  pthread_mutex_unlock(&s->q_mu);
  return NULL;
}

void evs__writer_shutdown(evs_store *s) {
  pthread_mutex_lock(&s->q_mu);
  __atomic_store_n(&s->closing, 1, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&s->wt_cv);
  pthread_cond_broadcast(&s->lead_cv);
  int started = s->writer_started;
  pthread_mutex_unlock(&s->q_mu);
  if (started)
    pthread_join(s->writer, NULL);
  pthread_mutex_lock(&s->q_mu);
  while (s->leader_active || s->q_head || s->inflight_async)
    pthread_cond_wait(&s->q_cv, &s->q_mu);
  s->writer_started = 0;
  pthread_mutex_unlock(&s->q_mu);
  evs__wake_waiters(s);
}

/* ---- public entry points ------------------------------------------------ */

static int evs__check_writable(evs_store *s) {
  if (s->read_only)
    return evs__err(EVS_EINVAL, "store '%s' was opened read-only", s->path);
  return 0;
}

int evs_append_multi(evs_store *s, evs_append_part *parts, size_t nparts,
                     size_t *failed_part) {
  evs__clear_error();
  if (failed_part)
    *failed_part = 0;
  if (s == NULL || parts == NULL)
    return evs__err(EVS_EINVAL, "NULL store or parts");
  int rc = evs__check_writable(s);
  if (rc)
    return rc;
  evs__req r;
  memset(&r, 0, sizeof r);
  r.op = EVS__OP_APPEND;
  r.parts = parts;
  r.nparts = nparts;
  rc = evs__prepare_append(s, &r);
  if (rc == 0)
    rc = evs__submit_sync(s, &r);
  if (rc && failed_part)
    *failed_part = r.failed_part;
  evs__req_release(&r);
  return rc;
}

int evs_append_at(evs_store *s, evs_append_part *parts, size_t nparts,
                  int64_t timestamp_ns, size_t *failed_part) {
  evs__clear_error();
  if (failed_part)
    *failed_part = 0;
  if (s == NULL || parts == NULL)
    return evs__err(EVS_EINVAL, "NULL store or parts");
  if (timestamp_ns <= 0)
    return evs__err(EVS_EINVAL, "import timestamp must be positive");
  int rc = evs__check_writable(s);
  if (rc)
    return rc;
  evs__req r;
  memset(&r, 0, sizeof r);
  r.op = EVS__OP_APPEND;
  r.parts = parts;
  r.nparts = nparts;
  r.fixed_ts = timestamp_ns;
  rc = evs__prepare_append(s, &r);
  if (rc == 0)
    rc = evs__submit_sync(s, &r);
  if (rc && failed_part)
    *failed_part = r.failed_part;
  evs__req_release(&r);
  return rc;
}

int evs_append(evs_store *s, const char *stream, int64_t expected,
               evs_event_data *events, size_t count, evs_append_result *out) {
  evs__clear_error();
  if (out)
    memset(out, 0, sizeof *out);
  if (s == NULL || stream == NULL || events == NULL)
    return evs__err(EVS_EINVAL, "NULL store, stream or events");
  int rc = evs__check_writable(s);
  if (rc)
    return rc;
  evs__req r;
  memset(&r, 0, sizeof r);
  r.op = EVS__OP_APPEND;
  r.part1.stream = stream;
  r.part1.expected = expected;
  r.part1.events = events;
  r.part1.count = count;
  r.parts = &r.part1;
  r.nparts = 1;
  rc = evs__prepare_append(s, &r);
  if (rc == 0)
    rc = evs__submit_sync(s, &r);
  if (out)
    *out = r.part1.result;
  evs__req_release(&r);
  return rc;
}

int evs_append_async(evs_store *s, evs_append_part *parts, size_t nparts,
                     evs_append_cb cb, void *payload) {
  evs__clear_error();
  if (s == NULL || parts == NULL || cb == NULL)
    return evs__err(EVS_EINVAL, "NULL store, parts or callback");
  int rc = evs__check_writable(s);
  if (rc)
    return rc;
  evs__req *r = calloc(1, sizeof *r);
  if (r == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  r->op = EVS__OP_APPEND;
  r->parts = parts;
  r->nparts = nparts;
  r->is_async = 1;
  r->cb = cb;
  r->payload = payload;
  rc = evs__prepare_append(s, r);
  if (rc) {
    evs__req_release(r);
    free(r);
    return rc;
  }
  pthread_mutex_lock(&s->q_mu);
  if (s->closing) {
    pthread_mutex_unlock(&s->q_mu);
    evs__req_release(r);
    free(r);
    return evs__err(EVS_ECLOSED, "store is closing");
  }
  if (!s->writer_started) {
    if (pthread_create(&s->writer, NULL, evs__writer_main, s) != 0) {
      pthread_mutex_unlock(&s->q_mu);
      evs__req_release(r);
      free(r);
      return evs__err(EVS_ENOMEM, "cannot start the writer thread");
    }
    s->writer_started = 1;
  }
  s->inflight_async++;
  evs__enqueue(s, r);
  if (!s->leader_active)
    pthread_cond_signal(&s->wt_cv);
  pthread_mutex_unlock(&s->q_mu);
  return 0;
}

int evs_stream_delete(evs_store *s, const char *stream, int64_t expected,
                      int hard) {
  evs__clear_error();
  if (s == NULL)
    return evs__err(EVS_EINVAL, "NULL store");
  size_t len;
  int rc = evs__check_stream_name(stream, &len);
  if (rc)
    return rc;
  if ((rc = evs__check_writable(s)))
    return rc;
  if (expected < 0 && expected != EVS_EXPECT_ANY &&
      expected != EVS_EXPECT_NO_STREAM && expected != EVS_EXPECT_EXISTS)
    return evs__err(EVS_EINVAL, "invalid expected version %lld",
                    (long long)expected);
  evs__req r;
  memset(&r, 0, sizeof r);
  r.op = EVS__OP_DELETE;
  r.stream = stream;
  r.stream_len = len;
  r.expected = expected;
  r.hard = hard ? 1 : 0;
  r.bytes = 64;
  return evs__submit_sync(s, &r);
}

int evs_stream_set_metadata(evs_store *s, const char *stream,
                            const evs_stream_metadata *md) {
  evs__clear_error();
  if (s == NULL || md == NULL)
    return evs__err(EVS_EINVAL, "NULL store or metadata");
  size_t len;
  int rc = evs__check_stream_name(stream, &len);
  if (rc)
    return rc;
  if ((rc = evs__check_writable(s)))
    return rc;
  if (md->custom_len > EVS__MAX_CUSTOM_META)
    return evs__err(EVS_ETOOLARGE, "custom metadata over %u bytes",
                    EVS__MAX_CUSTOM_META);
  if (md->custom == NULL && md->custom_len)
    return evs__err(EVS_EINVAL, "NULL custom metadata with a length");
  if (md->max_count > (uint64_t)INT64_MAX ||
      md->max_age_sec > (uint64_t)INT64_MAX / 1000000000ull)
    return evs__err(EVS_EINVAL, "metadata limit out of range");
  if (md->truncate_before < -1)
    return evs__err(EVS_EINVAL,
                    "truncate_before %lld: a version, or -1 for none",
                    (long long)md->truncate_before);
  evs__req r;
  memset(&r, 0, sizeof r);
  r.op = EVS__OP_METADATA;
  r.stream = stream;
  r.stream_len = len;
  r.md = *md;
  r.bytes = 64 + md->custom_len;
  return evs__submit_sync(s, &r);
}

int evs__submit_fn(evs_store *s, evs__txn_fn fn, void *arg) {
  evs__req r;
  memset(&r, 0, sizeof r);
  r.op = EVS__OP_FN;
  r.fn = fn;
  r.compact = arg;
  r.bytes = 1024 * 1024;
  return evs__submit_sync(s, &r);
}

int evs__submit_compact(evs_store *s, void *state) {
  evs__req r;
  memset(&r, 0, sizeof r);
  r.op = EVS__OP_COMPACT;
  r.compact = state;
  r.bytes = 1024 * 1024;
  return evs__submit_sync(s, &r);
}
