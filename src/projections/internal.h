/*
 * evstore — private declarations shared by the files of src/projections/.
 */
#ifndef EVSTORE_PROJECTIONS_INTERNAL_H
#define EVSTORE_PROJECTIONS_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>

#include "evstore/evstore.h"

/*
 * Wakes a subscription blocked in evs_sub_next() (from any thread) without
 * cancelling it: that call returns EVS_ETIMEDOUT. The runner uses it to
 * look at its control flags (stop, rebuild, resume).
 */
void evs__sub_interrupt(evs_sub *sub);

/* Monotonic clock in milliseconds. */
int64_t evs__mono_ms(void);

/* Is `name` a valid projection name (1..64 bytes of [A-Za-z0-9._-])? */
int evs__proj_name_ok(const char *name);

#define EVS__PROJ_NAME_MAX 64

/* ---- the views environment (views.c) ----------------------------------- */

/* A transaction on one view, as handed to handlers and queries. */
struct evs_view_txn {
  evs_views *v;
  MDB_txn *txn;
  MDB_dbi dbi;
  int write; /* a write transaction (handlers) */
  int fatal; /* the LMDB error that poisoned a write transaction, or 0 */
  int own;   /* a query transaction: ends with evs_view_read_end() */
};

/* A projection's catalog entry. */
typedef struct evs__cat {
  uint8_t active; /* active view slot, 0 or 1 */
  uint8_t failed;
  uint8_t rebuilding; /* building slot 1 - active */
  uint32_t generation;
  uint64_t checkpoint;
  uint64_t rebuild_checkpoint;
  int32_t error_code;
  uint64_t error_position;
  char error[256];
} evs__cat;

/* Runs fn in a write transaction of the views environment and commits it
 * when fn returns 0; grows the map and runs fn again on MDB_MAP_FULL (fn
 * reports a full map by returning EVS_EMAPFULL). Any other non-zero return
 * aborts the transaction and is returned. */
typedef int (*evs__views_fn)(evs_views *v, MDB_txn *txn, void *ctx);
int evs__views_write(evs_views *v, evs__views_fn fn, void *ctx);

/* A read transaction (with the map-resize lock held shared). */
int evs__views_read_begin(evs_views *v, MDB_txn **txn);
void evs__views_read_end(evs_views *v, MDB_txn *txn);

/* Creates (if needed) projection `name`'s two view slots and catalog
 * entry, and returns their handles. */
int evs__views_ensure(evs_views *v, const char *name, MDB_dbi dbi[2]);

/* Catalog entry of `name` in txn: 0 or EVS_ENOTFOUND. */
int evs__cat_get(evs_views *v, MDB_txn *txn, const char *name, evs__cat *out);
int evs__cat_put(evs_views *v, MDB_txn *txn, const char *name,
                 const evs__cat *c);
void evs__cat_status(const evs__cat *c, evs_proj_status *out);

evs_store *evs__views_store(const evs_views *v);
MDB_dbi evs__views_snapshots_dbi(const evs_views *v);
uint32_t evs__views_max_projections(const evs_views *v);

/* Translates an LMDB return code into an EVS code with a detail. */
int evs__views_lmdb_err(int rc, const char *what);

#ifdef __clang_analyzer__
/* For the static analyzer only, as evs__err in store/internal.h: the
 * result is 0 exactly when rc is (views.c, which defines it, #undefs it). */
static inline int evs__an_views_lmdb_err(int rc, const char *what) {
  int code = (evs__views_lmdb_err)(rc, what);
  if ((rc != 0) != (code != 0))
    __builtin_unreachable();
  return code;
}
#define evs__views_lmdb_err(rc, what) evs__an_views_lmdb_err((rc), (what))
#endif

#endif /* EVSTORE_PROJECTIONS_INTERNAL_H */
