/*
 * evstore — private declarations shared by the files of src/store/.
 *
 * Nothing here is API. Other modules of the project (projections, server)
 * may use the few evs__ functions marked "internal API" below.
 */
#ifndef EVSTORE_STORE_INTERNAL_H
#define EVSTORE_STORE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "evstore/evstore.h"

/* ---- byte order helpers (keys are big-endian) -------------------------- */

/* memcpy + byte swap compiles to one load or store and a bswap. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define EVS__BE64(v) __builtin_bswap64(v)
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define EVS__BE64(v) (v)
#endif

static inline void evs__put_be64(void *p, uint64_t v) {
#ifdef EVS__BE64
  v = EVS__BE64(v);
  memcpy(p, &v, 8);
#else
  uint8_t *b = (uint8_t *)p;
  for (int i = 7; i >= 0; i--, v >>= 8)
    b[i] = (uint8_t)(v & 0xff);
#endif
}

static inline uint64_t evs__get_be64(const void *p) {
#ifdef EVS__BE64
  uint64_t v;
  memcpy(&v, p, 8);
  return EVS__BE64(v);
#else
  const uint8_t *b = (const uint8_t *)p;
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | b[i];
  return v;
#endif
}

static inline void evs__put_be32(void *p, uint32_t v) {
  uint8_t *b = (uint8_t *)p;
  b[0] = (uint8_t)(v >> 24);
  b[1] = (uint8_t)(v >> 16);
  b[2] = (uint8_t)(v >> 8);
  b[3] = (uint8_t)v;
}

static inline uint32_t evs__get_be32(const void *p) {
  const uint8_t *b = (const uint8_t *)p;
  return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) |
         ((uint32_t)b[2] << 8) | (uint32_t)b[3];
}

/* ---- errors ------------------------------------------------------------ */

/* Records `code` and a printf-style detail for evs_last_error(); returns
 * `code` so that callers can write `return evs__err(...)`. */
int evs__err(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Sets the detail string verbatim. */
void evs__set_detail(const char *detail);
/* Clears the calling thread's detail. */
void evs__clear_error(void);
/* Translates an LMDB (or errno) code into an EVS_E* code. */
int evs__lmdb_err(int rc);

#ifdef __clang_analyzer__
/* The static analyzer (scripts/lint.sh) reads one file at a time, so it
 * cannot see that evs__err() returns `code` and that evs__lmdb_err() maps
 * success to 0 and every failure to a negative code; it would then follow error
 * returns as if they were successes. These models state both facts. They exist
 * only for the analyzer (errors.c, which defines the functions, #undefs them).
 */
static inline int evs__an_lmdb_err(int rc) {
  int code = (evs__lmdb_err)(rc);
  if (rc == 0 ? code != 0 : code >= 0)
    __builtin_unreachable();
  return code;
}
#define evs__err(code, ...) ((evs__err)((code), __VA_ARGS__), (code))
#define evs__lmdb_err(rc) evs__an_lmdb_err(rc)
#endif

/* ---- validation and helpers -------------------------------------------- */

/* How often an idle subscription runner or projection looks at the log for
 * other processes' commits (LMDB has no cross-process notification; this
 * process's own commits wake it at once). */
#define EVS__FOREIGN_CHECK_MS 1000

/* 1 if [s, s+len) is well-formed UTF-8 (no overlongs, no surrogates). */
int evs__utf8_valid(const void *s, size_t len);
/* Checks a stream or type name. Returns 0 or EVS_EBADNAME/EVS_EINVAL. */
/* The value of hex digit c (either case), or -1. */
int evs__hexval(int c);
int evs__check_name(const char *name, const char *what, size_t *len_out);
/* evs__check_name for a stream, which may not start with '$' (reserved). */
int evs__check_stream_name(const char *name, size_t *len_out);
int64_t evs__now_ns(void);

/* ---- records ----------------------------------------------------------- */

#define EVS__REC_COMPRESSED 0x1u
/* With EVS__REC_COMPRESSED: compressed with the trained dictionary that
 * the zstd frame header names (src/store/dict.c). */
#define EVS__REC_DICT 0x2u
#define EVS__REC_CHECKSUM_LEN 8u

/* Fields of an event record as stored in the `events` database. */
typedef struct evs__record {
  uint64_t stream_id;
  uint64_t version;
  int64_t timestamp_ns;
  uint64_t type_id;
  const uint8_t *id; /* 16 bytes */
  uint32_t flags;
  uint64_t raw_len; /* uncompressed data length */
  const void *metadata;
  size_t metadata_len;
  const void *data; /* stored bytes (compressed if flagged) */
  size_t data_len;
} evs__record;

/* Bytes needed to encode a record with these payload sizes. */
size_t evs__record_size(size_t metadata_len, size_t data_len);
/* The exact encoded size of r. */
size_t evs__record_exact_size(const evs__record *r);
/* Encodes into out (exactly evs__record_exact_size() bytes). */
size_t evs__record_encode(void *out, const evs__record *r);
/* Decodes and checks the checksum. Returns 0 or EVS_ECORRUPT. */
int evs__record_decode(evs__record *r, const void *buf, size_t len);
/* Decodes the header only (no checksum check): cheap timestamp probes. */
int evs__record_peek(evs__record *r, const void *buf, size_t len);

/* Stream table value. */
typedef struct evs__stream_rec {
  uint64_t stream_id;
  int64_t last_version; /* -1 none */
  uint64_t last_position;
  uint32_t flags;        /* EVS_STREAM_* */
  int64_t start_version; /* first version of the current life */
  uint64_t max_count;
  uint64_t max_age_sec;
  int64_t truncate_before;
  uint64_t category_id;
  int64_t last_ts;
  const void *custom;
  size_t custom_len;
  int head_moved; /* not stored: evs__stream_head found a newer head */
} evs__stream_rec;

#define EVS__MAX_CUSTOM_META (64u * 1024u)

size_t evs__stream_rec_size(const evs__stream_rec *s);
size_t evs__stream_rec_encode(void *out, const evs__stream_rec *s);
int evs__stream_rec_decode(evs__stream_rec *s, const void *buf, size_t len);

/* ---- the store --------------------------------------------------------- */

typedef struct evs__req evs__req;

/* What one group commit did (internal API for metrics). */
typedef struct evs__group_info {
  uint64_t head;     /* head of the log after the commit */
  size_t requests;   /* requests in the group (appends, deletes, ...) */
  uint64_t events;   /* events written */
  uint64_t bytes;    /* record bytes written */
  int64_t commit_ns; /* time to apply and commit the group */
} evs__group_info;

/* A listener woken after every commit that wrote events (internal API for
 * subscriptions and the server). Called with the store's commit mutex
 * held: keep it tiny (signal a condition, uv_async_send). `group_fn`, when
 * set, is called too, with the group's figures. */
typedef struct evs__commit_listener {
  void (*fn)(uint64_t head, void *payload);
  void *payload;
  struct evs__commit_listener *next;
  void (*group_fn)(const evs__group_info *g, void *payload);
} evs__commit_listener;

/* Stores *flag (release) and wakes every evs__wait_commit caller, so that a
 * waiter passing `flag` as its cancel flag either sees it before sleeping or
 * is woken. */
void evs__set_wait_flag(evs_store *s, volatile int *flag, int value);

#define EVS__MAX_DICTS 64

struct evs_store {
  MDB_env *env;
  MDB_dbi db_events, db_streams, db_stream_ids, db_stream_index, db_ids,
      db_types, db_type_names, db_cats, db_cat_names, db_cat_index,
      db_type_index, db_meta, db_dicts;
  char *path;
  evs_store_options opts;
  dev_t dev;
  ino_t ino;
  int read_only;

  /* Map-resize lock: every transaction holds it shared; growing the map
   * takes it exclusively. */
  pthread_mutex_t rz_mu;
  pthread_cond_t rz_cv;
  unsigned rz_readers;
  int rz_pending;
  uint64_t map_size;

  /* Write queue (group commit). */
  pthread_mutex_t q_mu;
  pthread_cond_t q_cv;  /* sync waiters */
  pthread_cond_t wt_cv; /* the background writer thread */
  evs__req *q_head, *q_tail;
  size_t q_len;
  int leader_active;
  /* Group-commit pacing: the size and duration of the last group, and a
   * leader waiting for its group to fill up (see evs__lead). */
  size_t last_group;
  size_t peak_group; /* recent largest group, decaying */
  int64_t last_commit_ns;
  size_t lead_target;
  pthread_cond_t lead_cv;
  int closing;
  int writer_started;
  pthread_t writer;
  unsigned inflight_async;

  /* Leader-only scratch. */
  void *wbuf;
  size_t wbuf_cap;

  /* Reset read transactions kept for reuse (evs__read_begin/end). */
  pthread_mutex_t rt_mu;
  MDB_txn *rt_pool[32];
  int rt_n;

  /* Compression contexts pool. */
  pthread_mutex_t z_mu;
  void *cctx_pool[8];
  int cctx_count;

  /* Trained dictionaries (dict.c): digested for decompression by id, and
   * the CDicts this handle compressed with (the last one is active). */
  pthread_mutex_t d_mu;
  struct {
    uint32_t id;
    void *ddict;
  } dicts[EVS__MAX_DICTS];
  int ndicts;
  void *cdicts[EVS__MAX_DICTS];
  int ncdicts;
  void *active_cdict; /* atomic; NULL = no dictionary */
  uint32_t active_dict;

  /* Commit notification. */
  pthread_mutex_t c_mu;    /* guards the listeners */
  uint32_t c_seq;          /* the waiters' event count (futex word) */
  uint32_t c_waiters;      /* threads in evs__wait_commit/_wait_seq */
  uint64_t committed_head; /* atomic */
  int64_t committed_ts;
  uint64_t commit_seq;
  /* Atomic: bumped by every commit that tombstoned a stream (no event is
   * written, so the head does not move): stream subscriptions look at
   * their stream again when it changes. */
  uint64_t tomb_seq;
  evs__commit_listener *listeners;

  /* Counters (atomic). */
  uint64_t n_commits, n_appends, n_events_written, n_bytes_written;
};

/* Shared hold on the resize lock; 0 or error. */
int evs__rd_acquire(evs_store *s);
void evs__rd_release(evs_store *s);
/* 1 if a resize is waiting for holders to let go. */
int evs__rd_should_yield(evs_store *s);

/* Begins a read transaction (with the resize hold taken). */
int evs__read_begin(evs_store *s, MDB_txn **txn);
void evs__read_end(evs_store *s, MDB_txn *txn);
/* Handles MDB_MAP_RESIZED / MDB_MAP_FULL growth with the exclusive lock.
 * `need` is a hint of bytes needed (0 = adopt other process's size). */
int evs__grow_map(evs_store *s, int adopt_only);

/* Internal API for subscriptions: makes a forward $all or filtered read
 * that has ended (or is between batches) read again, on the newest
 * snapshot, from position `from` up to `until` (0 = no limit), with its
 * filters and its caches of stream and type names. Returns 0, EVS_EINVAL
 * when the iterator cannot be restarted (a stream or backward read, a
 * temporal filter, or a filter that named nothing when it was opened: open
 * a new one), or an error (the iterator is then in that error state). */
int evs__iter_restart(evs_iter *it, uint64_t from, uint64_t until);
/* Lets go of the iterator's snapshot until the next evs__iter_restart. */
void evs__iter_release(evs_iter *it);

/* Internal API for subscriptions: waits until the committed head exceeds
 * `after` or `timeout_ms` passes (-1 forever). Returns the head. */
uint64_t evs__wait_commit(evs_store *s, uint64_t after, int timeout_ms,
                          const volatile int *cancel);
/* The same, returning early too when the store's tomb_seq differs from
 * `tomb` (the value the caller saw before it tested its stream). */
uint64_t evs__wait_commit_tomb(evs_store *s, uint64_t after, int timeout_ms,
                               const volatile int *cancel, uint64_t tomb);
void evs__wake_waiters(evs_store *s);
/* Sleeps until the event count differs from `seq` (loaded, with acquire,
 * before the caller tested what it waits for), the store closes, or
 * timeout_ms (-1 = none) passes; may return early. */
void evs__wait_seq(evs_store *s, uint32_t seq, int timeout_ms);
/* Publishes whatever changed before the call to evs__wait_commit callers:
 * increments the event count (release) and wakes every waiter. */
void evs__bump_commit_seq(evs_store *s);
int evs__add_commit_listener(evs_store *s, evs__commit_listener *l);
void evs__remove_commit_listener(evs_store *s, evs__commit_listener *l);

/* Compression (compress.c). */
void *evs__cctx_get(evs_store *s);
void evs__cctx_put(evs_store *s, void *cctx);

/* Head of the log as seen by `txn` (0 if empty) and its timestamp. */
int evs__log_head(evs_store *s, MDB_txn *txn, uint64_t *pos, int64_t *ts);

/* Look up a stream record by name in txn, with its head (evs__stream_head).
 * Returns 0, EVS_ENOSTREAM or err. The _at form reads the head through `c`,
 * a cursor on stream_index (NULL: one of its own). */
int evs__stream_get(evs_store *s, MDB_txn *txn, const char *name, size_t len,
                    evs__stream_rec *out);
int evs__stream_get_at(evs_store *s, MDB_txn *txn, MDB_cursor *c,
                       const char *name, size_t len, evs__stream_rec *out);
/*
 * Completes a record decoded from `streams` with the stream's head. Since
 * format 3 an append does not rewrite its stream's record: the head is the
 * last entry of the stream's stream_index list, checked against the event
 * it names, and the record's last_version / last_position / last_ts are
 * what they were when the record was last written (creation, delete,
 * metadata, compaction). With no list (every event compacted away) the
 * record's values stand. Sets head_moved when the list is ahead of them.
 */
int evs__stream_head(evs_store *s, MDB_txn *txn, MDB_cursor *c,
                     evs__stream_rec *st);

/* Resolve a type or category id to its name (slices into the map). */
int evs__type_name(evs_store *s, MDB_txn *txn, uint64_t tid, evs_slice *out);
int evs__stream_name(evs_store *s, MDB_txn *txn, uint64_t sid, evs_slice *out);

/* Stream visibility: lowest visible version given its record and now. */
int64_t evs__visible_from(const evs__stream_rec *st);

/* Writer entry points (append.c). */
void evs__writer_shutdown(evs_store *s);
/* Runs one compaction chunk through the write queue (maint.c state). */
int evs__submit_compact(evs_store *s, void *state);
/* Runs fn inside a write transaction of the writer (a group of its own
 * kind): fn returns an LMDB code (fatal for the transaction) and sets
 * *req_rc to 0 or an EVS code for the request. Returns the request's code. */
typedef int (*evs__txn_fn)(evs_store *s, MDB_txn *txn, void *arg, int *req_rc);
int evs__submit_fn(evs_store *s, evs__txn_fn fn, void *arg);

/* Dictionaries (dict.c). */
int evs__dicts_open(evs_store *s, MDB_txn *txn);
void evs__dicts_close(evs_store *s);
/* The ZSTD_CDict appends compress with, or NULL. */
void *evs__active_cdict(evs_store *s);
/* The ZSTD_DDict of dictionary `id` (loaded on first use), or NULL. */
void *evs__ddict_get(evs_store *s, uint32_t id);
/* Applies one compaction chunk in txn; sets *req_rc; returns LMDB code. */
int evs__apply_compact(evs_store *s, MDB_txn *txn, void *state, int *req_rc);

/* First position whose timestamp is >= ts (head+1 if none). */
int evs__first_position_at_or_after(evs_store *s, MDB_txn *txn, int64_t ts,
                                    uint64_t *out);
int evs__last_position_at_or_before(evs_store *s, MDB_txn *txn, int64_t ts,
                                    uint64_t *out);

/* Decompress a record's data into *buf (grown as needed, bounded by the
 * store's max event size). */
int evs__record_data(evs_store *s, const evs__record *r, void **buf,
                     size_t *cap, void **dctx, evs_slice *out);

#define EVS__LIKELY(x) __builtin_expect(!!(x), 1)
#define EVS__UNLIKELY(x) __builtin_expect(!!(x), 0)

#endif /* EVSTORE_STORE_INTERNAL_H */
