/*
 * evstore — trained zstd dictionaries.
 *
 * Event data is compressed one event at a time, and zstd alone gains little
 * on a small event: a 200-byte JSON object has no room to repeat itself.
 * A dictionary trained on the store's own events (ZDICT_trainFromBuffer)
 * holds what events of one shape share, their field names and common
 * values, so even small events shrink (docs/storage.md has the figures).
 *
 * Dictionaries live in the `dicts` database (dictionary id u32 -> the zstd
 * dictionary, whose header carries the same id), and `meta/dict` names the
 * one new appends use. A dictionary is never deleted: every record
 * compressed with it stays readable. A compressed record flagged
 * EVS__REC_DICT names its dictionary in its zstd frame header.
 *
 * Each process keeps the dictionaries it has used, digested (ZSTD_CDict for
 * the active one, ZSTD_DDict for decompression), for the life of the store
 * handle; there are at most EVS__MAX_DICTS of them.
 */
#include <stdlib.h>
#include <string.h>
#include <zdict.h>
#include <zstd.h>

#include "store/internal.h"

/* zstd reserves dictionary ids below 32768 for a registry. */
#define EVS__DICT_ID_BASE 32768u

static const MDB_val evs__meta_dict = { 4, (void *)"dict" };

/* Digests `bytes` for decompression and caches it under `id` (d_mu held).
 * Returns the DDict, or NULL when out of memory or the cache is full. */
static void *evs__ddict_add(evs_store *s, uint32_t id, const void *bytes,
                            size_t len) {
  for (int i = 0; i < s->ndicts; i++)
    if (s->dicts[i].id == id)
      return s->dicts[i].ddict;
  if (s->ndicts == EVS__MAX_DICTS)
    return NULL;
  ZSTD_DDict *d = ZSTD_createDDict(bytes, len);
  if (d == NULL)
    return NULL;
  s->dicts[s->ndicts].id = id;
  s->dicts[s->ndicts].ddict = d;
  s->ndicts++;
  return d;
}

/* Makes `bytes` (dictionary `id`) the one appends compress with. */
static int evs__dict_activate(evs_store *s, uint32_t id, const void *bytes,
                              size_t len) {
  ZSTD_CDict *c = ZSTD_createCDict(bytes, len, s->opts.compress_level);
  if (c == NULL)
    return evs__err(EVS_ENOMEM, "out of memory (zstd dictionary)");
  pthread_mutex_lock(&s->d_mu);
  if (s->ncdicts == EVS__MAX_DICTS) {
    pthread_mutex_unlock(&s->d_mu);
    ZSTD_freeCDict(c);
    return evs__err(EVS_EINVAL,
                    "this store handle has used %d dictionaries: reopen it",
                    EVS__MAX_DICTS);
  }
  /* Earlier CDicts stay allocated: appends in flight may still use them. */
  s->cdicts[s->ncdicts++] = c;
  evs__ddict_add(s, id, bytes, len);
  __atomic_store_n(&s->active_cdict, (void *)c, __ATOMIC_RELEASE);
  s->active_dict = id;
  pthread_mutex_unlock(&s->d_mu);
  return 0;
}

int evs__dicts_open(evs_store *s, MDB_txn *txn) {
  MDB_val v;
  int rc = mdb_get(txn, s->db_meta, (MDB_val *)&evs__meta_dict, &v);
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc)
    return evs__err(evs__lmdb_err(rc), "reading meta/dict: %s",
                    mdb_strerror(rc));
  if (v.mv_size != 4)
    return evs__err(EVS_ECORRUPT, "meta/dict has %zu bytes", v.mv_size);
  uint32_t id = evs__get_be32(v.mv_data);
  uint8_t kb[4];
  evs__put_be32(kb, id);
  MDB_val k = { 4, kb }, d;
  rc = mdb_get(txn, s->db_dicts, &k, &d);
  if (rc)
    return evs__err(rc == MDB_NOTFOUND ? EVS_ECORRUPT : evs__lmdb_err(rc),
                    "the store's dictionary %u cannot be read: %s", id,
                    mdb_strerror(rc));
  if (ZDICT_getDictID(d.mv_data, d.mv_size) != id)
    return evs__err(EVS_ECORRUPT, "dictionary %u is damaged", id);
  return evs__dict_activate(s, id, d.mv_data, d.mv_size);
}

void evs__dicts_close(evs_store *s) {
  for (int i = 0; i < s->ndicts; i++)
    ZSTD_freeDDict((ZSTD_DDict *)s->dicts[i].ddict);
  for (int i = 0; i < s->ncdicts; i++)
    ZSTD_freeCDict((ZSTD_CDict *)s->cdicts[i]);
  s->ndicts = s->ncdicts = 0;
  s->active_cdict = NULL;
}

void *evs__active_cdict(evs_store *s) {
  return __atomic_load_n(&s->active_cdict, __ATOMIC_ACQUIRE);
}

void *evs__ddict_get(evs_store *s, uint32_t id) {
  pthread_mutex_lock(&s->d_mu);
  for (int i = 0; i < s->ndicts; i++) {
    if (s->dicts[i].id == id) {
      void *d = s->dicts[i].ddict;
      pthread_mutex_unlock(&s->d_mu);
      return d;
    }
  }
  pthread_mutex_unlock(&s->d_mu);
  /* Not seen yet (another process trained it): load it. */
  MDB_txn *txn;
  void *d = NULL;
  if (evs__read_begin(s, &txn) == 0) {
    uint8_t kb[4];
    evs__put_be32(kb, id);
    MDB_val k = { 4, kb }, v;
    if (mdb_get(txn, s->db_dicts, &k, &v) == 0 &&
        ZDICT_getDictID(v.mv_data, v.mv_size) == id) {
      pthread_mutex_lock(&s->d_mu);
      d = evs__ddict_add(s, id, v.mv_data, v.mv_size);
      pthread_mutex_unlock(&s->d_mu);
    }
    evs__read_end(s, txn);
  }
  return d;
}

/* ---- training ------------------------------------------------------------ */

typedef struct evs__dict_install {
  uint8_t *dict;
  size_t len;
  uint32_t id; /* out */
} evs__dict_install;

/* Runs in the writer's transaction: numbers the dictionary, stores it and
 * makes it the store's. */
static int evs__dict_install_fn(evs_store *s, MDB_txn *txn, void *arg,
                                int *req_rc) {
  evs__dict_install *in = (evs__dict_install *)arg;
  MDB_cursor *c;
  int rc = mdb_cursor_open(txn, s->db_dicts, &c);
  if (rc)
    return rc;
  MDB_val k, v;
  uint32_t id = EVS__DICT_ID_BASE;
  rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
  mdb_cursor_close(c);
  if (rc == 0 && k.mv_size == 4)
    id = evs__get_be32(k.mv_data) + 1;
  else if (rc != MDB_NOTFOUND && rc != 0)
    return rc;
  /* The header's dictionary id (bytes 4..7, little-endian) becomes ours:
   * frames compressed with it name it, and decompression finds it. */
  for (int i = 0; i < 4; i++)
    in->dict[4 + i] = (uint8_t)(id >> (8 * i));
  uint8_t kb[4];
  evs__put_be32(kb, id);
  MDB_val dk = { 4, kb }, dv = { in->len, in->dict };
  if ((rc = mdb_put(txn, s->db_dicts, &dk, &dv, MDB_NOOVERWRITE)))
    return rc;
  MDB_val mv = { 4, kb };
  if ((rc = mdb_put(txn, s->db_meta, (MDB_val *)&evs__meta_dict, &mv, 0)))
    return rc;
  in->id = id;
  *req_rc = 0;
  return 0;
}

/* Collects the data of the newest events into one buffer for ZDICT. */
static int evs__dict_samples(evs_store *s, size_t want, size_t max_bytes,
                             uint8_t **buf_out, size_t **sizes_out,
                             size_t *n_out, size_t *bytes_out) {
  uint8_t *buf = NULL;
  size_t *sizes = calloc(want, sizeof *sizes);
  size_t n = 0, used = 0, cap = 0;
  void *zbuf = NULL, *dctx = NULL;
  size_t zcap = 0;
  int rc = 0;
  if (sizes == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  MDB_txn *txn = NULL;
  MDB_cursor *cur = NULL;
  if ((rc = evs__read_begin(s, &txn)) != 0) {
    free(sizes);
    return rc;
  }
  int mrc = mdb_cursor_open(txn, s->db_events, &cur);
  MDB_val k, v;
  if (mrc == 0)
    mrc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
  while (mrc == 0 && n < want) {
    evs__record r;
    evs_slice data;
    if (evs__record_decode(&r, v.mv_data, v.mv_size)) {
      rc = evs__err(EVS_ECORRUPT, "a record does not decode");
      break;
    }
    if ((rc = evs__record_data(s, &r, &zbuf, &zcap, &dctx, &data)))
      break;
    if (data.len >= 8) { /* ZDICT wants samples of a few bytes at least */
      if (used + data.len > max_bytes)
        break;
      if (used + data.len > cap) {
        size_t ncap = cap ? cap * 2 : 1u << 20;
        while (ncap < used + data.len)
          ncap *= 2;
        uint8_t *nb = realloc(buf, ncap);
        if (nb == NULL) {
          rc = evs__err(EVS_ENOMEM, "out of memory");
          break;
        }
        buf = nb;
        cap = ncap;
      }
      memcpy(buf + used, data.data, data.len);
      used += data.len;
      sizes[n++] = data.len;
    }
    mrc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
  }
  if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
    rc = evs__err(evs__lmdb_err(mrc), "reading events: %s", mdb_strerror(mrc));
  if (cur)
    mdb_cursor_close(cur);
  evs__read_end(s, txn);
  free(zbuf);
  ZSTD_freeDCtx((ZSTD_DCtx *)dctx);
  if (rc) {
    free(buf);
    free(sizes);
    return rc;
  }
  *buf_out = buf;
  *sizes_out = sizes;
  *n_out = n;
  *bytes_out = used;
  return 0;
}

int evs_store_train_dictionary(evs_store *s, size_t dict_size, size_t samples,
                               uint32_t *dict_id) {
  if (s == NULL)
    return evs__err(EVS_EINVAL, "store is NULL");
  if (s->read_only)
    return evs__err(EVS_EINVAL, "store '%s' was opened read-only", s->path);
  if (dict_size == 0)
    dict_size = 16 * 1024;
  if (samples == 0)
    samples = 10000;
  if (dict_size < 1024 || dict_size > 1024 * 1024)
    return evs__err(EVS_EINVAL,
                    "dictionary size %zu: it must be 1 KiB to 1 MiB",
                    dict_size);
  if (samples > 1000000)
    return evs__err(EVS_EINVAL, "%zu samples: at most 1,000,000", samples);
  uint8_t *buf = NULL;
  size_t *sizes = NULL, n = 0, bytes = 0;
  /* zstd's advice: about 100 times the dictionary in samples; more only
   * slows training down. */
  size_t max_bytes = dict_size * 128;
  if (max_bytes < ((size_t)4 << 20))
    max_bytes = (size_t)4 << 20;
  int rc = evs__dict_samples(s, samples, max_bytes, &buf, &sizes, &n, &bytes);
  if (rc)
    return rc;
  evs__dict_install in = { malloc(dict_size), 0, 0 };
  if (in.dict == NULL) {
    free(buf);
    free(sizes);
    return evs__err(EVS_ENOMEM, "out of memory");
  }
  size_t got = n >= 8 ? ZDICT_trainFromBuffer(in.dict, dict_size, buf, sizes,
                                              (unsigned)n)
                      : 0;
  free(buf);
  free(sizes);
  if (n < 8 || ZDICT_isError(got)) {
    free(in.dict);
    return evs__err(EVS_EINVAL,
                    "cannot train a dictionary on %zu events (%zu bytes of "
                    "data)%s%s: append more events first",
                    n, bytes, n >= 8 ? ": " : "",
                    n >= 8 ? ZDICT_getErrorName(got) : "");
  }
  in.len = got;
  rc = evs__submit_fn(s, evs__dict_install_fn, &in);
  if (rc == 0)
    rc = evs__dict_activate(s, in.id, in.dict, in.len);
  free(in.dict);
  if (rc == 0 && dict_id)
    *dict_id = in.id;
  return rc;
}
