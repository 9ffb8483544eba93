/*
 * evstore — the views environment: its own LMDB environment (never the
 * store's data.mdb), a catalog of projections, two view slots per
 * projection for blue/green rebuilds, view transactions and queries.
 *
 * Databases:
 *   $catalog     projection name -> catalog entry (see evs__cat_encode)
 *   $snapshots   stream name -> aggregate snapshot (snapshot.c)
 *   v:<name>:0   the two view slots of a projection; the catalog says which
 *   v:<name>:1   one is active
 *
 * A rebuild empties the inactive slot (mdb_drop without delete, so database
 * handles stay valid for every thread), fills it, and switches the catalog
 * pointer. Handles are opened once per process under dbi_mu, since LMDB
 * forbids concurrent mdb_dbi_open calls.
 *
 * Every transaction holds `rz` shared; growing the map (or adopting another
 * process's larger map) takes it exclusively, because LMDB only allows
 * mdb_env_set_mapsize while the process has no transaction open.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "projections/internal.h"
#include "store/internal.h"

/* The analyzer's model of this (projections/internal.h) is for callers. */
#undef evs__views_lmdb_err

#define EVS__VIEWS_DEFAULT_MAP (256ull * 1024 * 1024)
#define EVS__CAT_FORMAT 1u

typedef struct evs__vslot {
  char name[EVS__PROJ_NAME_MAX + 1];
  MDB_dbi dbi[2];
} evs__vslot;

struct evs_views {
  evs_store *store;
  MDB_env *env;
  char *path;
  dev_t dev;
  ino_t ino;
  MDB_dbi db_catalog, db_snapshots;
  uint32_t max_projections;
  pthread_rwlock_t rz;
  pthread_mutex_t dbi_mu;
  evs__vslot *slots;
  size_t nslots;
};

/* ---- process-wide registry: one open per directory ---------------------- */

typedef struct evs__vreg {
  dev_t dev;
  ino_t ino;
  struct evs__vreg *next;
} evs__vreg;

static pthread_mutex_t evs__vreg_mu = PTHREAD_MUTEX_INITIALIZER;
static evs__vreg *evs__vreg_head;

static int evs__vreg_add(dev_t dev, ino_t ino) {
  pthread_mutex_lock(&evs__vreg_mu);
  for (evs__vreg *r = evs__vreg_head; r; r = r->next) {
    if (r->dev == dev && r->ino == ino) {
      pthread_mutex_unlock(&evs__vreg_mu);
      return EVS_EBUSY;
    }
  }
  evs__vreg *r = malloc(sizeof *r);
  if (r == NULL) {
    pthread_mutex_unlock(&evs__vreg_mu);
    return EVS_ENOMEM;
  }
  r->dev = dev;
  r->ino = ino;
  r->next = evs__vreg_head;
  evs__vreg_head = r;
  pthread_mutex_unlock(&evs__vreg_mu);
  return 0;
}

static void evs__vreg_del(dev_t dev, ino_t ino) {
  pthread_mutex_lock(&evs__vreg_mu);
  for (evs__vreg **pp = &evs__vreg_head; *pp; pp = &(*pp)->next) {
    if ((*pp)->dev == dev && (*pp)->ino == ino) {
      evs__vreg *r = *pp;
      *pp = r->next;
      free(r);
      break;
    }
  }
  pthread_mutex_unlock(&evs__vreg_mu);
}

/* ---- helpers --------------------------------------------------------------
 */

int evs__proj_name_ok(const char *name) {
  if (name == NULL)
    return 0;
  size_t n = strlen(name);
  if (n == 0 || n > EVS__PROJ_NAME_MAX)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

int evs__views_lmdb_err(int rc, const char *what) {
  if (rc == MDB_MAP_FULL)
    return evs__err(EVS_EMAPFULL, "%s: views map full", what);
  return evs__err(evs__lmdb_err(rc), "%s: %s", what, mdb_strerror(rc));
}

evs_store *evs__views_store(const evs_views *v) {
  return v->store;
}

uint32_t evs__views_max_projections(const evs_views *v) {
  return v->max_projections;
}

const char *evs_views_path(const evs_views *v) {
  return v ? v->path : NULL;
}

/* Grows the map (adopt_only: take the size another process set). Waits
 * at most 30 s for the transactions open in this process to end (a thread
 * that holds a query open while it writes would otherwise wait for
 * itself). */
static int evs__views_grow(evs_views *v, int adopt_only, size_t seen) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 30;
  if (pthread_rwlock_timedwrlock(&v->rz, &dl) != 0)
    return evs__err(EVS_EMAPFULL, "the views map is full and could not grow: "
                                  "view transactions stayed open for 30 s");
  MDB_envinfo info;
  mdb_env_info(v->env, &info);
  int rc = 0;
  if (adopt_only) {
    rc = mdb_env_set_mapsize(v->env, 0);
  } else if (info.me_mapsize <= seen) {
    size_t next = info.me_mapsize < ((size_t)1 << 30)
                      ? info.me_mapsize * 2
                      : info.me_mapsize + ((size_t)1 << 30);
    rc = mdb_env_set_mapsize(v->env, next);
  }
  pthread_rwlock_unlock(&v->rz);
  return rc ? evs__views_lmdb_err(rc, "growing the views map") : 0;
}

static size_t evs__views_mapsize(evs_views *v) {
  MDB_envinfo info;
  mdb_env_info(v->env, &info);
  return info.me_mapsize;
}

static int evs__txn_begin(evs_views *v, unsigned flags, MDB_txn **txn) {
  for (;;) {
    pthread_rwlock_rdlock(&v->rz);
    int rc = mdb_txn_begin(v->env, NULL, flags, txn);
    if (rc == 0)
      return 0;
    pthread_rwlock_unlock(&v->rz);
    if (rc == MDB_MAP_RESIZED) {
      int g = evs__views_grow(v, 1, 0);
      if (g)
        return g;
      continue;
    }
    return evs__views_lmdb_err(rc, "beginning a views transaction");
  }
}

int evs__views_read_begin(evs_views *v, MDB_txn **txn) {
  return evs__txn_begin(v, MDB_RDONLY, txn);
}

void evs__views_read_end(evs_views *v, MDB_txn *txn) {
  if (txn == NULL)
    return;
  mdb_txn_abort(txn);
  pthread_rwlock_unlock(&v->rz);
}

int evs__views_write(evs_views *v, evs__views_fn fn, void *ctx) {
  for (int attempt = 0;; attempt++) {
    MDB_txn *txn;
    int rc = evs__txn_begin(v, 0, &txn);
    if (rc)
      return rc;
    size_t seen = evs__views_mapsize(v);
    rc = fn(v, txn, ctx);
    if (rc == 0) {
      rc = mdb_txn_commit(txn);
      pthread_rwlock_unlock(&v->rz);
      if (rc == 0)
        return 0;
      if (rc != MDB_MAP_FULL)
        return evs__views_lmdb_err(rc, "committing a views transaction");
      rc = EVS_EMAPFULL;
    } else {
      mdb_txn_abort(txn);
      pthread_rwlock_unlock(&v->rz);
    }
    if (rc != EVS_EMAPFULL || attempt > 40)
      return rc;
    int g = evs__views_grow(v, 0, seen);
    if (g)
      return g;
  }
}

/* ---- catalog ----------------------------------------------------------------
 */

/* Catalog entry: u32 format, u8 active, u8 failed, u8 rebuilding, u8 0,
 * u32 generation, u64 checkpoint, u64 rebuild checkpoint, u32 error code,
 * u64 error position, u16 error length, error bytes. Big-endian. */
#define EVS__CAT_FIXED 42u

int evs__cat_get(evs_views *v, MDB_txn *txn, const char *name, evs__cat *out) {
  memset(out, 0, sizeof *out);
  MDB_val k = { strlen(name), (void *)name }, d;
  int rc = mdb_get(txn, v->db_catalog, &k, &d);
  if (rc == MDB_NOTFOUND)
    return EVS_ENOTFOUND;
  if (rc)
    return evs__views_lmdb_err(rc, "reading the projection catalog");
  const uint8_t *p = d.mv_data;
  if (d.mv_size < EVS__CAT_FIXED || evs__get_be32(p) != EVS__CAT_FORMAT)
    return evs__err(EVS_ECORRUPT,
                    "catalog entry of projection '%s' is "
                    "damaged or of an unknown format",
                    name);
  out->active = p[4] & 1;
  out->failed = p[5];
  out->rebuilding = p[6];
  out->generation = evs__get_be32(p + 8);
  out->checkpoint = evs__get_be64(p + 12);
  out->rebuild_checkpoint = evs__get_be64(p + 20);
  out->error_code = (int32_t)evs__get_be32(p + 28);
  out->error_position = evs__get_be64(p + 32);
  size_t elen = ((size_t)p[40] << 8) | p[41];
  if (elen > d.mv_size - EVS__CAT_FIXED || elen >= sizeof out->error)
    return evs__err(EVS_ECORRUPT,
                    "catalog entry of projection '%s' is "
                    "damaged",
                    name);
  memcpy(out->error, p + EVS__CAT_FIXED, elen);
  out->error[elen] = '\0';
  return 0;
}

int evs__cat_put(evs_views *v, MDB_txn *txn, const char *name,
                 const evs__cat *c) {
  uint8_t buf[EVS__CAT_FIXED + sizeof c->error];
  size_t elen = strnlen(c->error, sizeof c->error - 1);
  memset(buf, 0, EVS__CAT_FIXED);
  evs__put_be32(buf, EVS__CAT_FORMAT);
  buf[4] = c->active;
  buf[5] = c->failed;
  buf[6] = c->rebuilding;
  evs__put_be32(buf + 8, c->generation);
  evs__put_be64(buf + 12, c->checkpoint);
  evs__put_be64(buf + 20, c->rebuild_checkpoint);
  evs__put_be32(buf + 28, (uint32_t)c->error_code);
  evs__put_be64(buf + 32, c->error_position);
  buf[40] = (uint8_t)(elen >> 8);
  buf[41] = (uint8_t)elen;
  memcpy(buf + EVS__CAT_FIXED, c->error, elen);
  MDB_val k = { strlen(name), (void *)name },
          d = { EVS__CAT_FIXED + elen, buf };
  int rc = mdb_put(txn, v->db_catalog, &k, &d, 0);
  if (rc == MDB_MAP_FULL)
    return EVS_EMAPFULL;
  return rc ? evs__views_lmdb_err(rc, "writing the projection catalog") : 0;
}

void evs__cat_status(const evs__cat *c, evs_proj_status *out) {
  memset(out, 0, sizeof *out);
  out->checkpoint = c->checkpoint;
  out->failed = c->failed;
  out->error_code = c->error_code;
  out->error_position = c->error_position;
  snprintf(out->error, sizeof out->error, "%s", c->error);
  out->generation = c->generation;
  out->rebuilding = c->rebuilding;
  out->rebuild_checkpoint = c->rebuild_checkpoint;
}

/* ---- view handles -----------------------------------------------------------
 */

static void evs__slot_dbname(char *out, size_t n, const char *name,
                             unsigned slot) {
  snprintf(out, n, "v:%s:%u", name, slot);
}

static evs__vslot *evs__slot_find(evs_views *v, const char *name) {
  for (size_t i = 0; i < v->nslots; i++)
    if (strcmp(v->slots[i].name, name) == 0)
      return &v->slots[i];
  return NULL;
}

/* Records handles in the cache; dbi_mu held. */
static int evs__slot_add(evs_views *v, const char *name, const MDB_dbi dbi[2]) {
  if (v->nslots >= v->max_projections)
    return evs__err(EVS_ETOOLARGE,
                    "more than %u projections in one views environment",
                    v->max_projections);
  evs__vslot *s = &v->slots[v->nslots++];
  snprintf(s->name, sizeof s->name, "%s", name);
  s->dbi[0] = dbi[0];
  s->dbi[1] = dbi[1];
  return 0;
}

typedef struct evs__ensure_ctx {
  const char *name;
  MDB_dbi dbi[2];
} evs__ensure_ctx;

static int evs__ensure_fn(evs_views *v, MDB_txn *txn, void *vctx) {
  evs__ensure_ctx *ctx = vctx;
  char dbname[EVS__PROJ_NAME_MAX + 8];
  for (unsigned i = 0; i < 2; i++) {
    evs__slot_dbname(dbname, sizeof dbname, ctx->name, i);
    int rc = mdb_dbi_open(txn, dbname, MDB_CREATE, &ctx->dbi[i]);
    if (rc == MDB_MAP_FULL)
      return EVS_EMAPFULL;
    if (rc)
      return evs__views_lmdb_err(rc, "creating a view");
  }
  evs__cat c;
  int rc = evs__cat_get(v, txn, ctx->name, &c);
  if (rc == EVS_ENOTFOUND) {
    memset(&c, 0, sizeof c);
    rc = evs__cat_put(v, txn, ctx->name, &c);
  }
  return rc;
}

int evs__views_ensure(evs_views *v, const char *name, MDB_dbi dbi[2]) {
  pthread_mutex_lock(&v->dbi_mu);
  evs__vslot *s = evs__slot_find(v, name);
  int rc = 0;
  if (s == NULL && v->nslots >= v->max_projections)
    rc = evs__err(EVS_ETOOLARGE,
                  "more than %u projections in one views environment",
                  v->max_projections);
  if (rc == 0) {
    /* Creates the catalog entry even when the handles are cached (a drop
     * removes it). */
    evs__ensure_ctx ctx = { name, { 0, 0 } };
    rc = evs__views_write(v, evs__ensure_fn, &ctx);
    if (rc == 0 && s == NULL)
      rc = evs__slot_add(v, name, ctx.dbi);
    if (rc == 0) {
      dbi[0] = ctx.dbi[0];
      dbi[1] = ctx.dbi[1];
    }
  }
  pthread_mutex_unlock(&v->dbi_mu);
  return rc;
}

/* Handles of an existing projection's slots, opened read-only if needed. */
static int evs__views_lookup(evs_views *v, const char *name, MDB_dbi dbi[2]) {
  pthread_mutex_lock(&v->dbi_mu);
  evs__vslot *s = evs__slot_find(v, name);
  int rc = 0;
  if (s) {
    dbi[0] = s->dbi[0];
    dbi[1] = s->dbi[1];
  } else {
    MDB_txn *txn;
    rc = evs__views_read_begin(v, &txn);
    if (rc == 0) {
      char dbname[EVS__PROJ_NAME_MAX + 8];
      for (unsigned i = 0; i < 2 && rc == 0; i++) {
        evs__slot_dbname(dbname, sizeof dbname, name, i);
        int mrc = mdb_dbi_open(txn, dbname, 0, &dbi[i]);
        if (mrc == MDB_NOTFOUND)
          rc = evs__err(EVS_ENOTFOUND, "no projection '%s' in these views",
                        name);
        else if (mrc)
          rc = evs__views_lmdb_err(mrc, "opening a view");
      }
      if (rc == 0) {
        /* Committing a read transaction keeps the handles it opened. */
        int mrc = mdb_txn_commit(txn);
        pthread_rwlock_unlock(&v->rz);
        if (mrc)
          rc = evs__views_lmdb_err(mrc, "opening a view");
        else
          rc = evs__slot_add(v, name, dbi);
      } else {
        evs__views_read_end(v, txn);
      }
    }
  }
  pthread_mutex_unlock(&v->dbi_mu);
  return rc;
}

/* ---- open / close
 * ------------------------------------------------------------ */

static int evs__mkdir_p1(const char *path) {
  if (mkdir(path, 0755) == 0 || errno == EEXIST)
    return 0;
  return evs__err(-errno, "creating views directory '%s': %s", path,
                  strerror(errno));
}

int evs_views_open(evs_views **out, evs_store *store,
                   const evs_views_options *opts) {
  evs__clear_error();
  if (out == NULL || store == NULL)
    return evs__err(EVS_EINVAL, "NULL output or store");
  *out = NULL;
  evs_views_options o = EVS_VIEWS_OPTIONS_INIT;
  if (opts) {
    if (opts->version != EVS_VIEWS_OPTIONS_VERSION)
      return evs__err(EVS_EINVAL, "unknown views options version %u",
                      opts->version);
    o = *opts;
  }
  if (o.durability != EVS_SYNC && o.durability != EVS_NOMETASYNC &&
      o.durability != EVS_NOSYNC)
    return evs__err(EVS_EINVAL, "bad durability %d", (int)o.durability);
  if (o.map_size == 0)
    o.map_size = EVS__VIEWS_DEFAULT_MAP;
  if (o.max_projections == 0)
    o.max_projections = 64;
  if (o.max_projections > 4096)
    return evs__err(EVS_EINVAL, "max_projections above 4096");

  evs_views *v = calloc(1, sizeof *v);
  if (v == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  v->store = store;
  v->max_projections = o.max_projections;
  pthread_rwlock_init(&v->rz, NULL);
  pthread_mutex_init(&v->dbi_mu, NULL);
  v->slots = calloc(o.max_projections, sizeof *v->slots);
  if (o.path && o.path[0]) {
    v->path = strdup(o.path);
  } else {
    const char *sp = evs_store_path(store);
    size_t n = strlen(sp) + sizeof "/views";
    v->path = malloc(n);
    if (v->path)
      snprintf(v->path, n, "%s/views", sp);
  }
  int rc = 0;
  if (v->path == NULL || v->slots == NULL)
    rc = evs__err(EVS_ENOMEM, "out of memory");
  if (rc == 0)
    rc = evs__mkdir_p1(v->path);
  struct stat st, sst;
  if (rc == 0 && stat(v->path, &st) != 0)
    rc = evs__err(-errno, "views directory '%s': %s", v->path, strerror(errno));
  if (rc == 0 && stat(evs_store_path(store), &sst) == 0 &&
      sst.st_dev == st.st_dev && sst.st_ino == st.st_ino)
    rc = evs__err(EVS_EBUSY, "the views directory must not be the store's "
                             "own directory");
  if (rc == 0) {
    rc = evs__vreg_add(st.st_dev, st.st_ino);
    if (rc)
      rc = evs__err(rc,
                    rc == EVS_EBUSY
                        ? "views '%s' are already open in this process"
                        : "views '%s': out of memory",
                    v->path);
    else {
      v->dev = st.st_dev;
      v->ino = st.st_ino;
    }
  }
  if (rc == 0) {
    int mrc = mdb_env_create(&v->env);
    if (mrc == 0)
      mrc = mdb_env_set_maxdbs(v->env, 2 * o.max_projections + 4);
    if (mrc == 0)
      mrc = mdb_env_set_maxreaders(v->env, 1024);
    if (mrc == 0)
      mrc = mdb_env_set_mapsize(v->env, (size_t)o.map_size);
    unsigned flags = MDB_NOTLS;
    if (o.durability == EVS_NOMETASYNC)
      flags |= MDB_NOMETASYNC;
    else if (o.durability == EVS_NOSYNC)
      flags |= MDB_NOSYNC;
    if (mrc == 0)
      mrc = mdb_env_open(v->env, v->path, flags, 0644);
    if (mrc)
      rc = evs__views_lmdb_err(mrc, "opening the views environment");
  }
  if (rc == 0) {
    int dead = 0;
    mdb_reader_check(v->env, &dead);
    /* Another process may have grown the map beyond ours. */
    MDB_envinfo info;
    mdb_env_info(v->env, &info);
    MDB_txn *txn = NULL;
    rc = evs__txn_begin(v, 0, &txn);
    if (rc == 0) {
      int mrc = mdb_dbi_open(txn, "$catalog", MDB_CREATE, &v->db_catalog);
      if (mrc == 0)
        mrc = mdb_dbi_open(txn, "$snapshots", MDB_CREATE, &v->db_snapshots);
      if (mrc == 0)
        mrc = mdb_txn_commit(txn);
      else
        mdb_txn_abort(txn);
      pthread_rwlock_unlock(&v->rz);
      if (mrc)
        rc = evs__views_lmdb_err(mrc, "creating the views catalog");
    }
  }
  if (rc) {
    evs_views_close(v);
    return rc;
  }
  *out = v;
  return 0;
}

void evs_views_close(evs_views *v) {
  if (v == NULL)
    return;
  if (v->env)
    mdb_env_close(v->env);
  if (v->ino || v->dev)
    evs__vreg_del(v->dev, v->ino);
  pthread_rwlock_destroy(&v->rz);
  pthread_mutex_destroy(&v->dbi_mu);
  free(v->slots);
  free(v->path);
  free(v);
}

/* ---- status and drop
 * ----------------------------------------------------------- */

int evs_views_status(evs_views *v, const char *name, evs_proj_status *out) {
  evs__clear_error();
  if (v == NULL || out == NULL || !evs__proj_name_ok(name))
    return evs__err(EVS_EINVAL, "NULL views or output, or bad name");
  MDB_txn *txn;
  int rc = evs__views_read_begin(v, &txn);
  if (rc)
    return rc;
  evs__cat c;
  rc = evs__cat_get(v, txn, name, &c);
  evs__views_read_end(v, txn);
  if (rc == EVS_ENOTFOUND)
    return evs__err(rc, "no projection '%s' in these views", name);
  if (rc)
    return rc;
  evs__cat_status(&c, out);
  uint64_t head = 0;
  if (evs_head_position(v->store, &head) == 0) {
    out->head = head;
    out->behind = head > c.checkpoint ? head - c.checkpoint : 0;
  }
  return 0;
}

typedef struct evs__drop_ctx {
  const char *name;
  MDB_dbi dbi[2];
} evs__drop_ctx;

static int evs__drop_fn(evs_views *v, MDB_txn *txn, void *vctx) {
  evs__drop_ctx *ctx = vctx;
  for (int i = 0; i < 2; i++) {
    int rc = mdb_drop(txn, ctx->dbi[i], 0);
    if (rc)
      return evs__views_lmdb_err(rc, "emptying a view");
  }
  MDB_val k = { strlen(ctx->name), (void *)ctx->name };
  int rc = mdb_del(txn, v->db_catalog, &k, NULL);
  if (rc == MDB_NOTFOUND)
    return evs__err(EVS_ENOTFOUND, "no projection '%s' in these views",
                    ctx->name);
  return rc ? evs__views_lmdb_err(rc, "dropping a projection") : 0;
}

int evs_views_drop(evs_views *v, const char *name) {
  evs__clear_error();
  if (v == NULL || !evs__proj_name_ok(name))
    return evs__err(EVS_EINVAL, "NULL views or bad projection name");
  evs__drop_ctx ctx = { name, { 0, 0 } };
  int rc = evs__views_lookup(v, name, ctx.dbi);
  if (rc)
    return rc;
  return evs__views_write(v, evs__drop_fn, &ctx);
}

/* ---- view transactions
 * -------------------------------------------------------- */

static int evs__key_ok(const void *key, size_t len) {
  if (key == NULL || len == 0 || len > EVS_VIEW_MAX_KEY)
    return evs__err(EVS_EINVAL, "view keys are 1..%u bytes", EVS_VIEW_MAX_KEY);
  return 0;
}

static int evs__vt_fail(evs_view_txn *t, int rc, const char *what) {
  t->fatal = rc;
  return evs__views_lmdb_err(rc, what);
}

int evs_view_put(evs_view_txn *t, const void *key, size_t key_len,
                 const void *val, size_t val_len) {
  evs__clear_error();
  if (t == NULL || (val == NULL && val_len))
    return evs__err(EVS_EINVAL, "NULL transaction or value");
  if (!t->write)
    return evs__err(EVS_EINVAL, "a read transaction cannot write");
  int rc = evs__key_ok(key, key_len);
  if (rc)
    return rc;
  if (val_len > EVS_HARD_MAX_EVENT_SIZE)
    return evs__err(EVS_ETOOLARGE, "view value of %zu bytes", val_len);
  if (t->fatal)
    return evs__err(EVS_EIO, "view transaction failed earlier");
  MDB_val k = { key_len, (void *)key }, d = { val_len, (void *)val };
  rc = mdb_put(t->txn, t->dbi, &k, &d, 0);
  return rc ? evs__vt_fail(t, rc, "writing a view") : 0;
}

int evs_view_get(evs_view_txn *t, const void *key, size_t key_len,
                 evs_slice *val) {
  evs__clear_error();
  if (t == NULL || val == NULL)
    return evs__err(EVS_EINVAL, "NULL transaction or output");
  val->data = NULL;
  val->len = 0;
  int rc = evs__key_ok(key, key_len);
  if (rc)
    return rc;
  MDB_val k = { key_len, (void *)key }, d;
  rc = mdb_get(t->txn, t->dbi, &k, &d);
  if (rc == MDB_NOTFOUND)
    return EVS_ENOTFOUND;
  if (rc)
    return evs__views_lmdb_err(rc, "reading a view");
  val->data = d.mv_data;
  val->len = d.mv_size;
  return 0;
}

int evs_view_del(evs_view_txn *t, const void *key, size_t key_len) {
  evs__clear_error();
  if (t == NULL)
    return evs__err(EVS_EINVAL, "NULL transaction");
  if (!t->write)
    return evs__err(EVS_EINVAL, "a read transaction cannot write");
  int rc = evs__key_ok(key, key_len);
  if (rc)
    return rc;
  if (t->fatal)
    return evs__err(EVS_EIO, "view transaction failed earlier");
  MDB_val k = { key_len, (void *)key };
  rc = mdb_del(t->txn, t->dbi, &k, NULL);
  if (rc == MDB_NOTFOUND)
    return EVS_ENOTFOUND;
  return rc ? evs__vt_fail(t, rc, "deleting from a view") : 0;
}

static int evs__cmp(const void *a, size_t alen, const void *b, size_t blen) {
  size_t n = alen < blen ? alen : blen;
  int c = n ? memcmp(a, b, n) : 0;
  if (c)
    return c;
  return alen < blen ? -1 : alen > blen;
}

int evs_view_scan(evs_view_txn *t, const void *lo, size_t lo_len,
                  const void *hi, size_t hi_len, int reverse,
                  evs_view_scan_cb cb, void *payload) {
  evs__clear_error();
  if (t == NULL || cb == NULL)
    return evs__err(EVS_EINVAL, "NULL transaction or callback");
  if ((lo && lo_len > EVS_VIEW_MAX_KEY) || (hi && hi_len > EVS_VIEW_MAX_KEY))
    return evs__err(EVS_EINVAL, "scan bound longer than %u bytes",
                    EVS_VIEW_MAX_KEY);
  MDB_cursor *cur;
  int rc = mdb_cursor_open(t->txn, t->dbi, &cur);
  if (rc)
    return evs__views_lmdb_err(rc, "opening a view cursor");
  MDB_val k, d;
  if (!reverse) {
    if (lo && lo_len) {
      k.mv_size = lo_len;
      k.mv_data = (void *)lo;
      rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
    } else {
      rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST);
    }
  } else {
    if (hi && hi_len) {
      k.mv_size = hi_len;
      k.mv_data = (void *)hi;
      rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
      if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &d, MDB_PREV);
      else if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(cur, &k, &d, MDB_LAST);
    } else {
      rc = mdb_cursor_get(cur, &k, &d, MDB_LAST);
    }
  }
  int ret = 0;
  while (rc == 0) {
    if (!reverse && hi && evs__cmp(k.mv_data, k.mv_size, hi, hi_len) >= 0)
      break;
    if (reverse && lo && evs__cmp(k.mv_data, k.mv_size, lo, lo_len) < 0)
      break;
    evs_slice ks = { k.mv_data, k.mv_size }, vs = { d.mv_data, d.mv_size };
    int r = cb(ks, vs, payload);
    if (r > 0)
      break;
    if (r < 0) {
      ret = r;
      break;
    }
    rc = mdb_cursor_get(cur, &k, &d, reverse ? MDB_PREV : MDB_NEXT);
  }
  if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
    ret = evs__views_lmdb_err(rc, "scanning a view");
  mdb_cursor_close(cur);
  return ret;
}

typedef struct evs__prefix_ctx {
  const void *prefix;
  size_t len;
  evs_view_scan_cb cb;
  void *payload;
} evs__prefix_ctx;

static int evs__prefix_cb(evs_slice key, evs_slice val, void *vctx) {
  evs__prefix_ctx *c = vctx;
  if (key.len < c->len || memcmp(key.data, c->prefix, c->len) != 0)
    return 1;
  return c->cb(key, val, c->payload);
}

int evs_view_scan_prefix(evs_view_txn *t, const void *prefix, size_t prefix_len,
                         evs_view_scan_cb cb, void *payload) {
  if (prefix_len == 0)
    return evs_view_scan(t, NULL, 0, NULL, 0, 0, cb, payload);
  if (prefix == NULL)
    return evs__err(EVS_EINVAL, "NULL prefix");
  evs__prefix_ctx c = { prefix, prefix_len, cb, payload };
  return evs_view_scan(t, prefix, prefix_len, NULL, 0, 0, evs__prefix_cb, &c);
}

int evs_view_read_begin(evs_view_txn **out, evs_views *v, const char *name) {
  evs__clear_error();
  if (out == NULL || v == NULL)
    return evs__err(EVS_EINVAL, "NULL output or views");
  *out = NULL;
  if (!evs__proj_name_ok(name))
    return evs__err(EVS_EINVAL, "bad projection name");
  MDB_dbi dbi[2];
  int rc = evs__views_lookup(v, name, dbi);
  if (rc)
    return rc;
  evs_view_txn *t = calloc(1, sizeof *t);
  if (t == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  rc = evs__views_read_begin(v, &t->txn);
  if (rc) {
    free(t);
    return rc;
  }
  evs__cat c;
  rc = evs__cat_get(v, t->txn, name, &c);
  if (rc) {
    evs__views_read_end(v, t->txn);
    free(t);
    return rc == EVS_ENOTFOUND
               ? evs__err(rc, "no projection '%s' in these views", name)
               : rc;
  }
  t->v = v;
  t->dbi = dbi[c.active];
  t->own = 1;
  *out = t;
  return 0;
}

void evs_view_read_end(evs_view_txn *t) {
  if (t == NULL || !t->own)
    return;
  evs__views_read_end(t->v, t->txn);
  free(t);
}

MDB_dbi evs__views_snapshots_dbi(const evs_views *v) {
  return v->db_snapshots;
}
