/*
 * evstore — opening and closing a store, the map-resize lock, and small
 * shared lookups.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <time.h>
#include <zstd.h>

#include "store/internal.h"

#define EVS__DEFAULT_MAP_SIZE (64ull * 1024 * 1024)
#define EVS__RESIZE_WAIT_MS 30000

/* ---- one handle per directory per process ------------------------------ */

static pthread_mutex_t evs__reg_mu = PTHREAD_MUTEX_INITIALIZER;
static evs_store *evs__reg[64];

static int evs__reg_add(evs_store *s) {
  int rc = EVS_EBUSY;
  pthread_mutex_lock(&evs__reg_mu);
  for (size_t i = 0; i < 64; i++) {
    if (evs__reg[i] && evs__reg[i]->dev == s->dev &&
        evs__reg[i]->ino == s->ino) {
      pthread_mutex_unlock(&evs__reg_mu);
      return evs__err(EVS_EBUSY,
                      "store '%s' is already open in this process: share "
                      "one handle between threads",
                      s->path);
    }
  }
  for (size_t i = 0; i < 64; i++) {
    if (evs__reg[i] == NULL) {
      evs__reg[i] = s;
      rc = 0;
      break;
    }
  }
  pthread_mutex_unlock(&evs__reg_mu);
  if (rc)
    return evs__err(rc, "too many stores open in this process (64)");
  return 0;
}

static void evs__reg_del(const evs_store *s) {
  pthread_mutex_lock(&evs__reg_mu);
  for (size_t i = 0; i < 64; i++)
    if (evs__reg[i] == s)
      evs__reg[i] = NULL;
  pthread_mutex_unlock(&evs__reg_mu);
}

/* ---- map-resize lock ---------------------------------------------------- */

typedef struct evs__depth {
  const evs_store *s;
  unsigned d;
} evs__depth;

static _Thread_local evs__depth evs__tls_depth[8];

static unsigned *evs__depth_of(const evs_store *s) {
  evs__depth *free_slot = NULL;
  for (size_t i = 0; i < 8; i++) {
    if (evs__tls_depth[i].s == s)
      return &evs__tls_depth[i].d;
    if (free_slot == NULL && evs__tls_depth[i].d == 0)
      free_slot = &evs__tls_depth[i];
  }
  if (free_slot) {
    free_slot->s = s;
    free_slot->d = 0;
    return &free_slot->d;
  }
  return NULL;
}

int evs__rd_acquire(evs_store *s) {
  unsigned *d = evs__depth_of(s);
  pthread_mutex_lock(&s->rz_mu);
  if (d == NULL || *d == 0) {
    while (s->rz_pending)
      pthread_cond_wait(&s->rz_cv, &s->rz_mu);
  }
  s->rz_readers++;
  pthread_mutex_unlock(&s->rz_mu);
  if (d)
    (*d)++;
  return 0;
}

void evs__rd_release(evs_store *s) {
  unsigned *d = evs__depth_of(s);
  if (d && *d > 0)
    (*d)--;
  pthread_mutex_lock(&s->rz_mu);
  s->rz_readers--;
  if (s->rz_readers == 0 && s->rz_pending)
    pthread_cond_broadcast(&s->rz_cv);
  pthread_mutex_unlock(&s->rz_mu);
}

int evs__rd_should_yield(evs_store *s) {
  return __atomic_load_n(&s->rz_pending, __ATOMIC_RELAXED);
}

static void evs__refresh_map_size(evs_store *s) {
  MDB_envinfo info;
  if (mdb_env_info(s->env, &info) == 0)
    s->map_size = info.me_mapsize;
}

int evs__grow_map(evs_store *s, int adopt_only) {
  unsigned *d = evs__depth_of(s);
  if (d && *d > 0)
    return evs__err(EVS_EMAPFULL,
                    "the map must grow but this thread holds an open "
                    "iterator on the store: free it first");
  pthread_mutex_lock(&s->rz_mu);
  if (s->rz_pending) {
    /* Someone else is resizing: wait for it, then let the caller retry. */
    while (s->rz_pending)
      pthread_cond_wait(&s->rz_cv, &s->rz_mu);
    pthread_mutex_unlock(&s->rz_mu);
    return 0;
  }
  s->rz_pending = 1;
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += EVS__RESIZE_WAIT_MS / 1000;
  int rc = 0;
  while (s->rz_readers > 0) {
    if (pthread_cond_timedwait(&s->rz_cv, &s->rz_mu, &deadline) == ETIMEDOUT) {
      rc = evs__err(EVS_EMAPFULL,
                    "the map must grow but %u reader(s) kept their "
                    "iterators open for %d s",
                    s->rz_readers, EVS__RESIZE_WAIT_MS / 1000);
      break;
    }
  }
  if (rc == 0) {
    if (adopt_only) {
      int mrc = mdb_env_set_mapsize(s->env, 0);
      if (mrc)
        rc = evs__err(evs__lmdb_err(mrc), "adopting the map size: %s",
                      mdb_strerror(mrc));
    } else {
      uint64_t cur = s->map_size;
      uint64_t next = cur < (1ull << 30) ? cur * 2 : cur + (1ull << 30);
      uint64_t max = s->opts.max_map_size;
      if (max && next > max)
        next = max;
      if (next <= cur) {
        rc = evs__err(EVS_EMAPFULL,
                      "store is full: map size %llu bytes reached its "
                      "configured maximum; raise max_map_size (or free "
                      "space with metadata limits and a compaction)",
                      (unsigned long long)cur);
      } else {
        int mrc = mdb_env_set_mapsize(s->env, (size_t)next);
        if (mrc)
          rc = evs__err(mrc == ENOMEM ? EVS_EMAPFULL : evs__lmdb_err(mrc),
                        "growing the map to %llu bytes: %s",
                        (unsigned long long)next, mdb_strerror(mrc));
      }
    }
    evs__refresh_map_size(s);
  }
  s->rz_pending = 0;
  pthread_cond_broadcast(&s->rz_cv);
  pthread_mutex_unlock(&s->rz_mu);
  return rc;
}

/*
 * Read transactions are kept for reuse: evs__read_end resets one
 * (mdb_txn_reset: the snapshot is released, the reader slot kept) into a
 * small pool, and evs__read_begin renews it, which costs far less than
 * mdb_txn_begin's reader-slot setup (about 5,000 instructions a read).
 */
#define EVS__RTXN_POOL 32

int evs__read_begin(evs_store *s, MDB_txn **txn) {
  for (;;) {
    evs__rd_acquire(s);
    MDB_txn *t = NULL;
    pthread_mutex_lock(&s->rt_mu);
    if (s->rt_n > 0)
      t = s->rt_pool[--s->rt_n];
    pthread_mutex_unlock(&s->rt_mu);
    if (t) {
      if (mdb_txn_renew(t) == 0) {
        *txn = t;
        return 0;
      }
      mdb_txn_abort(t); /* e.g. the map was resized: begin afresh */
    }
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
    if (rc == 0)
      return 0;
    evs__rd_release(s);
    if (rc == MDB_MAP_RESIZED) {
      int grc = evs__grow_map(s, 1);
      if (grc)
        return grc;
      continue;
    }
    if (rc == MDB_READERS_FULL)
      return evs__err(EVS_EBUSY,
                      "too many concurrent readers: raise max_readers or "
                      "free iterators");
    return evs__err(evs__lmdb_err(rc), "beginning a read: %s",
                    mdb_strerror(rc));
  }
}

void evs__read_end(evs_store *s, MDB_txn *txn) {
  if (txn == NULL)
    return;
  mdb_txn_reset(txn);
  pthread_mutex_lock(&s->rt_mu);
  if (s->rt_n < EVS__RTXN_POOL) {
    s->rt_pool[s->rt_n++] = txn;
    txn = NULL;
  }
  pthread_mutex_unlock(&s->rt_mu);
  if (txn)
    mdb_txn_abort(txn);
  evs__rd_release(s);
}

/* Frees the pooled read transactions (before the environment closes). */
static void evs__read_pool_free(evs_store *s) {
  pthread_mutex_lock(&s->rt_mu);
  while (s->rt_n > 0)
    mdb_txn_abort(s->rt_pool[--s->rt_n]);
  pthread_mutex_unlock(&s->rt_mu);
}

/* ---- open / close ------------------------------------------------------- */

/*
 * Comparators for the big-endian integer keys and list entries. They
 * order exactly as LMDB's default (memcmp, then length), so the files are
 * the same and any program may read them with the defaults; they only
 * replace a byte loop by one byte swap per 8 bytes, on the hottest
 * comparisons of the log and its indexes.
 */
static int evs__cmp_memn(const MDB_val *a, const MDB_val *b) {
  size_t n = a->mv_size < b->mv_size ? a->mv_size : b->mv_size;
  int d = memcmp(a->mv_data, b->mv_data, n);
  if (d)
    return d;
  return a->mv_size < b->mv_size ? -1 : a->mv_size > b->mv_size;
}

static int evs__cmp_be(const MDB_val *a, const MDB_val *b) {
  if (a->mv_size == b->mv_size && (a->mv_size == 8 || a->mv_size == 16)) {
    uint64_t x = evs__get_be64(a->mv_data), y = evs__get_be64(b->mv_data);
    if (x != y || a->mv_size == 8)
      return x < y ? -1 : x > y;
    x = evs__get_be64((const uint8_t *)a->mv_data + 8);
    y = evs__get_be64((const uint8_t *)b->mv_data + 8);
    return x < y ? -1 : x > y;
  }
  return evs__cmp_memn(a, b);
}

static int evs__open_dbs(evs_store *s, MDB_txn *txn, unsigned create) {
  struct {
    MDB_dbi *dbi;
    const char *name;
    unsigned flags;
  } dbs[] = {
    { &s->db_events, "events", 0 },
    { &s->db_streams, "streams", 0 },
    { &s->db_stream_ids, "stream_ids", 0 },
    { &s->db_stream_index, "stream_index", MDB_DUPSORT | MDB_DUPFIXED },
    { &s->db_ids, "ids", 0 },
    { &s->db_types, "types", 0 },
    { &s->db_type_names, "type_names", 0 },
    { &s->db_cats, "categories", 0 },
    { &s->db_cat_names, "category_names", 0 },
    { &s->db_cat_index, "category_index", MDB_DUPSORT | MDB_DUPFIXED },
    { &s->db_type_index, "type_index", MDB_DUPSORT | MDB_DUPFIXED },
    { &s->db_dicts, "dicts", 0 },
  };
  for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
    int rc = mdb_dbi_open(txn, dbs[i].name, dbs[i].flags | create, dbs[i].dbi);
    if (rc)
      return evs__err(rc == MDB_NOTFOUND ? EVS_ECORRUPT : evs__lmdb_err(rc),
                      "opening database '%s': %s", dbs[i].name,
                      mdb_strerror(rc));
  }
  /* Integer keys and lists (see evs__cmp_be). */
  MDB_dbi keyed[] = { s->db_events, s->db_stream_ids, s->db_stream_index,
                      s->db_cat_index, s->db_type_index };
  MDB_dbi lists[] = { s->db_stream_index, s->db_cat_index, s->db_type_index };
  for (size_t i = 0; i < sizeof keyed / sizeof keyed[0]; i++) {
    int rc = mdb_set_compare(txn, keyed[i], evs__cmp_be);
    if (rc)
      return evs__err(evs__lmdb_err(rc), "setting a comparator: %s",
                      mdb_strerror(rc));
  }
  for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
    int rc = mdb_set_dupsort(txn, lists[i], evs__cmp_be);
    if (rc)
      return evs__err(evs__lmdb_err(rc), "setting a comparator: %s",
                      mdb_strerror(rc));
  }
  return 0;
}

static int evs__check_format(evs_store *s, MDB_txn *txn, int writable) {
  MDB_val k = { 6, (void *)"format" }, v;
  int rc = mdb_get(txn, s->db_meta, &k, &v);
  if (rc == MDB_NOTFOUND) {
    if (!writable)
      return evs__err(EVS_ECORRUPT, "store has no format record");
    uint8_t buf[4];
    evs__put_be32(buf, EVS_FORMAT_VERSION);
    MDB_val fv = { 4, buf };
    rc = mdb_put(txn, s->db_meta, &k, &fv, 0);
    if (rc == 0) {
      uint8_t ts[8];
      evs__put_be64(ts, (uint64_t)evs__now_ns());
      MDB_val ck = { 7, (void *)"created" }, cv = { 8, ts };
      rc = mdb_put(txn, s->db_meta, &ck, &cv, 0);
    }
    if (rc)
      return evs__err(evs__lmdb_err(rc), "writing the format record: %s",
                      mdb_strerror(rc));
    return 0;
  }
  if (rc)
    return evs__err(evs__lmdb_err(rc), "reading the format record: %s",
                    mdb_strerror(rc));
  if (v.mv_size != 4)
    return evs__err(EVS_ECORRUPT, "format record has %zu bytes", v.mv_size);
  uint32_t fmt = evs__get_be32(v.mv_data);
  if (fmt > EVS_FORMAT_VERSION)
    return evs__err(EVS_EFORMAT,
                    "store format %u is newer than this library supports "
                    "(%u): upgrade evstore",
                    fmt, EVS_FORMAT_VERSION);
  if (fmt == 0)
    return evs__err(EVS_ECORRUPT, "format record is 0");
  if (fmt == 2) {
    /* Format 2's stream records hold their heads exactly, which format 3
     * reads as well; but once format 3 has appended, a format-2 library
     * would take the records' stale heads for the truth: mark the store. */
    if (!writable)
      return 0;
    uint8_t buf[4];
    evs__put_be32(buf, EVS_FORMAT_VERSION);
    MDB_val fv = { 4, buf };
    rc = mdb_put(txn, s->db_meta, &k, &fv, 0);
    if (rc)
      return evs__err(evs__lmdb_err(rc), "writing the format record: %s",
                      mdb_strerror(rc));
    return 0;
  }
  if (fmt < EVS_FORMAT_VERSION)
    return evs__err(EVS_EFORMAT,
                    "store format %u is a development format older than "
                    "this library's (%u): export it with the evstore that "
                    "wrote it and import it here",
                    fmt, EVS_FORMAT_VERSION);
  return 0;
}

static int evs__mkdir(const char *path) {
  if (mkdir(path, 0755) == 0 || errno == EEXIST)
    return 0;
  return -errno;
}

int evs_store_open(evs_store **out, const char *path,
                   const evs_store_options *opts) {
  evs__clear_error();
  if (out == NULL || path == NULL || *path == '\0')
    return evs__err(EVS_EINVAL, "evs_store_open: NULL or empty argument");
  *out = NULL;
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  if (opts) {
    if (opts->version != EVS_STORE_OPTIONS_VERSION)
      return evs__err(EVS_EINVAL, "unknown options version %u", opts->version);
    o = *opts;
  }
  if (o.durability != EVS_SYNC && o.durability != EVS_NOMETASYNC &&
      o.durability != EVS_NOSYNC)
    return evs__err(EVS_EINVAL, "unknown durability %d", (int)o.durability);
  if (o.map_size == 0)
    o.map_size = EVS__DEFAULT_MAP_SIZE;
  if (o.map_size < 64 * 1024)
    o.map_size = 64 * 1024;
  if (o.max_map_size && o.max_map_size < o.map_size)
    o.map_size = o.max_map_size;
  if (o.compress_threshold == 0)
    o.compress_threshold = 256;
  if (o.compress_level == 0)
    o.compress_level = 3;
  if (o.compress_level < ZSTD_minCLevel() ||
      o.compress_level > ZSTD_maxCLevel())
    return evs__err(EVS_EINVAL, "compress_level %d out of range",
                    o.compress_level);
  if (o.max_event_size == 0)
    o.max_event_size = EVS_DEFAULT_MAX_EVENT_SIZE;
  if (o.max_event_size > EVS_HARD_MAX_EVENT_SIZE)
    return evs__err(EVS_EINVAL, "max_event_size above %u bytes",
                    EVS_HARD_MAX_EVENT_SIZE);
  if (o.max_readers == 0)
    o.max_readers = 1024;

  int rc;
  if (o.create && !o.read_only) {
    rc = evs__mkdir(path);
    if (rc)
      return evs__err(rc, "creating directory '%s': %s", path, strerror(-rc));
  }
  struct stat st;
  if (stat(path, &st) != 0) {
    rc = -errno;
    return evs__err(rc, "store directory '%s': %s", path, strerror(errno));
  }
  if (!S_ISDIR(st.st_mode))
    return evs__err(-ENOTDIR, "'%s' is not a directory", path);
  if (!o.create) {
    char dbpath[4096];
    snprintf(dbpath, sizeof dbpath, "%s/data.mdb", path);
    if (access(dbpath, F_OK) != 0)
      return evs__err(-ENOENT, "no store in '%s' (data.mdb missing)", path);
  }

  evs_store *s = calloc(1, sizeof *s);
  if (s == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  s->path = strdup(path);
  s->opts = o;
  s->dev = st.st_dev;
  s->ino = st.st_ino;
  s->read_only = o.read_only;
  if (s->path == NULL) {
    free(s);
    return evs__err(EVS_ENOMEM, "out of memory");
  }
  pthread_mutex_init(&s->rz_mu, NULL);
  pthread_cond_init(&s->rz_cv, NULL);
  pthread_mutex_init(&s->q_mu, NULL);
  pthread_cond_init(&s->q_cv, NULL);
  pthread_cond_init(&s->wt_cv, NULL);
  {
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->lead_cv, &ca);
    pthread_condattr_destroy(&ca);
  }
  pthread_mutex_init(&s->z_mu, NULL);
  pthread_mutex_init(&s->d_mu, NULL);
  pthread_mutex_init(&s->rt_mu, NULL);
  pthread_mutex_init(&s->c_mu, NULL);

  rc = evs__reg_add(s);
  if (rc) {
    s->dev = 0;
    s->ino = 0;
    evs_store_close(s);
    return rc;
  }

  int mrc = mdb_env_create(&s->env);
  if (mrc == 0)
    mrc = mdb_env_set_maxdbs(s->env, 32);
  if (mrc == 0)
    mrc = mdb_env_set_maxreaders(s->env, o.max_readers);
  if (mrc == 0)
    mrc = mdb_env_set_mapsize(s->env, (size_t)o.map_size);
  if (mrc) {
    rc = evs__err(evs__lmdb_err(mrc), "creating LMDB environment: %s",
                  mdb_strerror(mrc));
    evs_store_close(s);
    return rc;
  }
  unsigned flags = MDB_NOTLS;
  if (o.durability == EVS_NOMETASYNC)
    flags |= MDB_NOMETASYNC;
  else if (o.durability == EVS_NOSYNC)
    flags |= MDB_NOSYNC;
  if (o.read_only)
    flags |= MDB_RDONLY;
  mrc = mdb_env_open(s->env, path, flags, 0644);
  if (mrc) {
    rc = evs__err(evs__lmdb_err(mrc), "opening store '%s': %s", path,
                  mdb_strerror(mrc));
    evs_store_close(s);
    return rc;
  }
  int dead = 0;
  mdb_reader_check(s->env, &dead);
  evs__refresh_map_size(s);

  MDB_txn *txn = NULL;
  for (;;) {
    mrc = mdb_txn_begin(s->env, NULL, o.read_only ? MDB_RDONLY : 0, &txn);
    if (mrc == MDB_MAP_RESIZED) {
      mdb_env_set_mapsize(s->env, 0);
      continue;
    }
    break;
  }
  if (mrc) {
    rc = evs__err(evs__lmdb_err(mrc), "beginning a transaction: %s",
                  mdb_strerror(mrc));
    evs_store_close(s);
    return rc;
  }
  unsigned create = o.read_only ? 0 : MDB_CREATE;
  mrc = mdb_dbi_open(txn, "meta", create, &s->db_meta);
  if (mrc) {
    mdb_txn_abort(txn);
    rc = evs__err(mrc == MDB_NOTFOUND ? EVS_ECORRUPT : evs__lmdb_err(mrc),
                  "opening the meta database: %s", mdb_strerror(mrc));
    evs_store_close(s);
    return rc;
  }
  rc = evs__check_format(s, txn, !o.read_only);
  if (rc == 0)
    rc = evs__open_dbs(s, txn, create);
  if (rc == 0)
    rc = evs__dicts_open(s, txn);
  if (rc == 0 && !o.read_only) {
    mrc = mdb_txn_commit(txn);
    txn = NULL;
    if (mrc)
      rc = evs__err(evs__lmdb_err(mrc), "creating the store: %s",
                    mdb_strerror(mrc));
  }
  if (rc == 0 && o.read_only) {
    uint64_t head = 0;
    int64_t ts = 0;
    rc = evs__log_head(s, txn, &head, &ts);
    if (rc == EVS_ECORRUPT)
      rc = 0;
    s->committed_head = rc == 0 ? head : 0;
    s->committed_ts = rc == 0 ? ts : 0;
    if (rc == 0) {
      /* Committing (not aborting) keeps the database handles open. */
      mrc = mdb_txn_commit(txn);
      txn = NULL;
      if (mrc)
        rc = evs__err(evs__lmdb_err(mrc), "opening the store: %s",
                      mdb_strerror(mrc));
    }
  }
  if (txn)
    mdb_txn_abort(txn);
  if (rc) {
    evs_store_close(s);
    return rc;
  }
  if (!o.read_only) {
    MDB_txn *rt;
    rc = evs__read_begin(s, &rt);
    if (rc == 0) {
      rc = evs__log_head(s, rt, &s->committed_head, &s->committed_ts);
      evs__read_end(s, rt);
      /* A damaged head record must not keep the store from opening: verify
       * and reads report it; appends fail with EVS_ECORRUPT until fixed. */
      if (rc == EVS_ECORRUPT)
        rc = 0;
    }
    if (rc) {
      evs_store_close(s);
      return rc;
    }
  }
  *out = s;
  return 0;
}

void evs_store_close(evs_store *s) {
  if (s == NULL)
    return;
  if (s->env)
    evs__writer_shutdown(s);
  if (s->env) {
    evs__read_pool_free(s);
    if (!s->read_only && s->opts.durability != EVS_SYNC)
      mdb_env_sync(s->env, 1);
    mdb_env_close(s->env);
  }
  for (int i = 0; i < s->cctx_count; i++)
    ZSTD_freeCCtx((ZSTD_CCtx *)s->cctx_pool[i]);
  evs__dicts_close(s);
  evs__reg_del(s);
  pthread_mutex_destroy(&s->rz_mu);
  pthread_cond_destroy(&s->rz_cv);
  pthread_mutex_destroy(&s->q_mu);
  pthread_cond_destroy(&s->q_cv);
  pthread_cond_destroy(&s->wt_cv);
  pthread_cond_destroy(&s->lead_cv);
  pthread_mutex_destroy(&s->z_mu);
  pthread_mutex_destroy(&s->d_mu);
  pthread_mutex_destroy(&s->rt_mu);
  pthread_mutex_destroy(&s->c_mu);
  free(s->wbuf);
  free(s->path);
  free(s);
}

int evs_store_sync(evs_store *s) {
  evs__clear_error();
  if (s == NULL)
    return evs__err(EVS_EINVAL, "store is NULL");
  if (s->read_only)
    return 0;
  int rc = mdb_env_sync(s->env, 1);
  if (rc)
    return evs__err(evs__lmdb_err(rc), "sync: %s", mdb_strerror(rc));
  return 0;
}

const char *evs_store_path(const evs_store *s) {
  return s ? s->path : NULL;
}

/* ---- compression contexts ----------------------------------------------- */

void *evs__cctx_get(evs_store *s) {
  void *c = NULL;
  pthread_mutex_lock(&s->z_mu);
  if (s->cctx_count > 0)
    c = s->cctx_pool[--s->cctx_count];
  pthread_mutex_unlock(&s->z_mu);
  if (c == NULL) {
    c = ZSTD_createCCtx();
    if (c)
      ZSTD_CCtx_setParameter((ZSTD_CCtx *)c, ZSTD_c_compressionLevel,
                             s->opts.compress_level);
  }
  return c;
}

void evs__cctx_put(evs_store *s, void *c) {
  if (c == NULL)
    return;
  pthread_mutex_lock(&s->z_mu);
  if (s->cctx_count < 8) {
    s->cctx_pool[s->cctx_count++] = c;
    c = NULL;
  }
  pthread_mutex_unlock(&s->z_mu);
  if (c)
    ZSTD_freeCCtx((ZSTD_CCtx *)c);
}

int evs__record_data(evs_store *s, const evs__record *r, void **buf,
                     size_t *cap, void **dctx, evs_slice *out) {
  if (!(r->flags & EVS__REC_COMPRESSED)) {
    out->data = r->data;
    out->len = r->data_len;
    return 0;
  }
  if (r->raw_len > EVS_HARD_MAX_EVENT_SIZE)
    return evs__err(EVS_ECORRUPT,
                    "record claims %llu bytes of data, over the limit",
                    (unsigned long long)r->raw_len);
  if (*cap < r->raw_len || *buf == NULL) {
    size_t ncap = r->raw_len < 4096 ? 4096 : (size_t)r->raw_len;
    void *nb = realloc(*buf, ncap);
    if (nb == NULL)
      return evs__err(EVS_ENOMEM, "out of memory decompressing");
    *buf = nb;
    *cap = ncap;
  }
  if (*dctx == NULL) {
    *dctx = ZSTD_createDCtx();
    if (*dctx == NULL)
      return evs__err(EVS_ENOMEM, "out of memory (zstd context)");
  }
  size_t n;
  if (r->flags & EVS__REC_DICT) {
    unsigned id = ZSTD_getDictID_fromFrame(r->data, r->data_len);
    /* s is NULL for a record decoded without its store (the fuzzer). */
    void *dd = id && s ? evs__ddict_get(s, id) : NULL;
    if (dd == NULL)
      return evs__err(EVS_ECORRUPT,
                      "event data names dictionary %u, which the store "
                      "cannot provide",
                      id);
    n = ZSTD_decompress_usingDDict((ZSTD_DCtx *)*dctx, *buf, (size_t)r->raw_len,
                                   r->data, r->data_len,
                                   (const ZSTD_DDict *)dd);
  } else {
    n = ZSTD_decompressDCtx((ZSTD_DCtx *)*dctx, *buf, (size_t)r->raw_len,
                            r->data, r->data_len);
  }
  if (ZSTD_isError(n) || n != r->raw_len)
    return evs__err(EVS_ECORRUPT, "event data does not decompress: %s",
                    ZSTD_isError(n) ? ZSTD_getErrorName(n) : "size mismatch");
  out->data = *buf;
  out->len = n;
  return 0;
}

/* ---- shared lookups ----------------------------------------------------- */

int evs__log_head(evs_store *s, MDB_txn *txn, uint64_t *pos, int64_t *ts) {
  MDB_cursor *c;
  int rc = mdb_cursor_open(txn, s->db_events, &c);
  if (rc)
    return evs__err(evs__lmdb_err(rc), "cursor: %s", mdb_strerror(rc));
  MDB_val k, v;
  rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
  mdb_cursor_close(c);
  if (rc == MDB_NOTFOUND) {
    *pos = 0;
    *ts = 0;
    return 0;
  }
  if (rc)
    return evs__err(evs__lmdb_err(rc), "reading the log head: %s",
                    mdb_strerror(rc));
  if (k.mv_size != 8)
    return evs__err(EVS_ECORRUPT, "log key of %zu bytes", k.mv_size);
  evs__record r;
  if (evs__record_peek(&r, v.mv_data, v.mv_size))
    return evs__err(EVS_ECORRUPT, "log head record does not decode");
  *pos = evs__get_be64(k.mv_data);
  *ts = r.timestamp_ns;
  return 0;
}

int evs__stream_head(evs_store *s, MDB_txn *txn, MDB_cursor *c,
                     evs__stream_rec *st) {
  MDB_cursor *own = NULL;
  int rc;
  st->head_moved = 0;
  if (c == NULL) {
    if ((rc = mdb_cursor_open(txn, s->db_stream_index, &own)))
      return evs__err(evs__lmdb_err(rc), "cursor: %s", mdb_strerror(rc));
    c = own;
  }
  uint8_t kb[8];
  evs__put_be64(kb, st->stream_id);
  MDB_val k = { 8, kb }, v;
  rc = mdb_cursor_get(c, &k, &v, MDB_SET);
  if (rc == 0)
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST_DUP);
  if (own)
    mdb_cursor_close(own);
  if (rc == MDB_NOTFOUND)
    return 0; /* no events left in the index: the record holds the head */
  if (rc)
    return evs__err(evs__lmdb_err(rc), "reading a stream's head: %s",
                    mdb_strerror(rc));
  if (v.mv_size != 16)
    return evs__err(EVS_ECORRUPT, "stream index entry of %zu bytes", v.mv_size);
  int64_t ver = (int64_t)evs__get_be64(v.mv_data);
  uint64_t pos = evs__get_be64((const uint8_t *)v.mv_data + 8);
  if (ver < st->last_version || ver < 0)
    return evs__err(EVS_ECORRUPT,
                    "stream id %llu: its index ends at version %lld, before "
                    "its record's %lld",
                    (unsigned long long)st->stream_id, (long long)ver,
                    (long long)st->last_version);
  if (ver == st->last_version && pos == st->last_position)
    return 0;
  /* The index entry carries no checksum: the event it names must be the
   * stream's, at that version (and gives the head's commit time). */
  uint8_t pk[8];
  evs__put_be64(pk, pos);
  MDB_val ek = { 8, pk }, ev;
  evs__record r;
  rc = mdb_get(txn, s->db_events, &ek, &ev);
  if (rc && rc != MDB_NOTFOUND)
    return evs__err(evs__lmdb_err(rc), "reading a stream's head: %s",
                    mdb_strerror(rc));
  if (rc || evs__record_peek(&r, ev.mv_data, ev.mv_size) ||
      r.stream_id != st->stream_id || (int64_t)r.version != ver)
    return evs__err(EVS_ECORRUPT,
                    "stream id %llu: its index head (version %lld at "
                    "position %llu) does not match the event there",
                    (unsigned long long)st->stream_id, (long long)ver,
                    (unsigned long long)pos);
  st->last_version = ver;
  st->last_position = pos;
  st->last_ts = r.timestamp_ns;
  st->head_moved = 1;
  return 0;
}

int evs__stream_get_at(evs_store *s, MDB_txn *txn, MDB_cursor *c,
                       const char *name, size_t len, evs__stream_rec *out) {
  MDB_val k = { len, (void *)name }, v;
  int rc = mdb_get(txn, s->db_streams, &k, &v);
  if (rc == MDB_NOTFOUND)
    return EVS_ENOSTREAM;
  if (rc)
    return evs__err(evs__lmdb_err(rc), "reading stream: %s", mdb_strerror(rc));
  if (evs__stream_rec_decode(out, v.mv_data, v.mv_size))
    return evs__err(EVS_ECORRUPT, "stream record of '%.*s' does not decode",
                    (int)len, name);
  return evs__stream_head(s, txn, c, out);
}

int evs__stream_get(evs_store *s, MDB_txn *txn, const char *name, size_t len,
                    evs__stream_rec *out) {
  return evs__stream_get_at(s, txn, NULL, name, len, out);
}

static int evs__id_name(MDB_txn *txn, MDB_dbi dbi, uint64_t id, evs_slice *out,
                        const char *what) {
  uint8_t kb[8];
  evs__put_be64(kb, id);
  MDB_val k = { 8, kb }, v;
  int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == MDB_NOTFOUND)
    return evs__err(EVS_ECORRUPT, "%s id %llu has no name", what,
                    (unsigned long long)id);
  if (rc)
    return evs__err(evs__lmdb_err(rc), "reading %s name: %s", what,
                    mdb_strerror(rc));
  out->data = v.mv_data;
  out->len = v.mv_size;
  return 0;
}

int evs__type_name(evs_store *s, MDB_txn *txn, uint64_t tid, evs_slice *out) {
  return evs__id_name(txn, s->db_type_names, tid, out, "type");
}

int evs__stream_name(evs_store *s, MDB_txn *txn, uint64_t sid, evs_slice *out) {
  return evs__id_name(txn, s->db_stream_ids, sid, out, "stream");
}

int64_t evs__visible_from(const evs__stream_rec *st) {
  int64_t lo = st->start_version;
  if (st->truncate_before > lo)
    lo = st->truncate_before;
  if (st->max_count && st->last_version >= 0) {
    int64_t m = st->last_version - (int64_t)st->max_count + 1;
    if (m > lo)
      lo = m;
  }
  return lo;
}

/* ---- commit notification ------------------------------------------------ */

/*
 * Waiting for a commit is an event count on c_seq, a 32-bit word the
 * publisher increments (release) after it stores the new head, and on which
 * waiters sleep with a private futex. A waiter loads c_seq (acquire) before
 * it tests its condition, and sleeps only while c_seq still holds the value
 * it loaded: a commit (or flag) published after the test changes the word,
 * so the futex call returns at once and the waiter tests again. Unlike a
 * condition variable, no mutex is taken on either side: the 100 waiters a
 * commit wakes run at once instead of queueing on the mutex one by one.
 *
 * A commit with nobody waiting makes no system call: waiters count
 * themselves in c_waiters before they load c_seq, and the publisher wakes
 * only when the count is non-zero. Both sides use sequentially consistent
 * order, so either the publisher sees the waiter counted, or the waiter's
 * load of c_seq (after counting itself) sees the increment and it does not
 * sleep on the old value.
 */
static void evs__futex_wait(uint32_t *word, uint32_t val,
                            const struct timespec *rel) {
  (void)syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, rel, NULL, 0);
}

static void evs__futex_wake_all(uint32_t *word) {
  (void)syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

void evs__bump_commit_seq(evs_store *s) {
  __atomic_add_fetch(&s->c_seq, 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&s->c_waiters, __ATOMIC_SEQ_CST) != 0)
    evs__futex_wake_all(&s->c_seq);
}

static int64_t evs__mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t evs__wait_commit(evs_store *s, uint64_t after, int timeout_ms,
                          const volatile int *cancel) {
  return evs__wait_commit_tomb(s, after, timeout_ms, cancel, UINT64_MAX);
}

uint64_t evs__wait_commit_tomb(evs_store *s, uint64_t after, int timeout_ms,
                               const volatile int *cancel, uint64_t tomb) {
  int64_t deadline =
      timeout_ms >= 0 ? evs__mono_ns() + (int64_t)timeout_ms * 1000000 : 0;
  __atomic_add_fetch(&s->c_waiters, 1, __ATOMIC_SEQ_CST);
  uint64_t head;
  for (;;) {
    uint32_t seq = __atomic_load_n(&s->c_seq, __ATOMIC_SEQ_CST);
    head = __atomic_load_n(&s->committed_head, __ATOMIC_ACQUIRE);
    if (head > after || (cancel && __atomic_load_n(cancel, __ATOMIC_ACQUIRE)) ||
        __atomic_load_n(&s->closing, __ATOMIC_ACQUIRE) ||
        (tomb != UINT64_MAX &&
         __atomic_load_n(&s->tomb_seq, __ATOMIC_ACQUIRE) != tomb))
      break;
    if (timeout_ms < 0) {
      evs__futex_wait(&s->c_seq, seq, NULL);
      continue;
    }
    int64_t left = deadline - evs__mono_ns();
    if (left <= 0)
      break;
    struct timespec rel = { (time_t)(left / 1000000000),
                            (long)(left % 1000000000) };
    evs__futex_wait(&s->c_seq, seq, &rel);
  }
  __atomic_sub_fetch(&s->c_waiters, 1, __ATOMIC_SEQ_CST);
  return head;
}

void evs__wait_seq(evs_store *s, uint32_t seq, int timeout_ms) {
  __atomic_add_fetch(&s->c_waiters, 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&s->c_seq, __ATOMIC_SEQ_CST) == seq &&
      !__atomic_load_n(&s->closing, __ATOMIC_ACQUIRE)) {
    struct timespec rel = { (time_t)(timeout_ms / 1000),
                            (long)(timeout_ms % 1000) * 1000000L };
    evs__futex_wait(&s->c_seq, seq, timeout_ms >= 0 ? &rel : NULL);
  }
  __atomic_sub_fetch(&s->c_waiters, 1, __ATOMIC_SEQ_CST);
}

void evs__set_wait_flag(evs_store *s, volatile int *flag, int value) {
  __atomic_store_n(flag, value, __ATOMIC_RELEASE);
  evs__bump_commit_seq(s);
}

void evs__wake_waiters(evs_store *s) {
  evs__bump_commit_seq(s);
}

int evs__add_commit_listener(evs_store *s, evs__commit_listener *l) {
  pthread_mutex_lock(&s->c_mu);
  l->next = s->listeners;
  s->listeners = l;
  pthread_mutex_unlock(&s->c_mu);
  return 0;
}

void evs__remove_commit_listener(evs_store *s, evs__commit_listener *l) {
  pthread_mutex_lock(&s->c_mu);
  for (evs__commit_listener **pp = &s->listeners; *pp; pp = &(*pp)->next) {
    if (*pp == l) {
      *pp = l->next;
      break;
    }
  }
  pthread_mutex_unlock(&s->c_mu);
}

int evs_head_position(evs_store *s, uint64_t *out) {
  evs__clear_error();
  if (s == NULL || out == NULL)
    return evs__err(EVS_EINVAL, "NULL argument");
  MDB_txn *txn;
  int rc = evs__read_begin(s, &txn);
  if (rc)
    return rc;
  int64_t ts;
  rc = evs__log_head(s, txn, out, &ts);
  evs__read_end(s, txn);
  return rc;
}
