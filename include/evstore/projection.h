/*
 * evstore — projections (the read side): views, an exactly-once runner,
 * built-in projections, stream state folding and aggregate snapshots.
 *
 * Views live in their own LMDB environment, apart from the event log
 * (by default the `views/` subdirectory of the store's directory): a view
 * can be dropped and rebuilt without touching the events. A projection is a
 * name, a filter and a handler called with (view transaction, event); the
 * runner applies events in batches and writes the view changes and the
 * projection's checkpoint in one transaction, so after a crash at any
 * moment it resumes from the checkpoint and no event is applied twice or
 * skipped. See docs/projections.md.
 *
 * Handles and threading:
 *  - evs_views: one per views directory per process (a second open of the
 *    same directory fails with EVS_EBUSY). Thread-safe. Never use it after
 *    fork(). Close it after every runner, view transaction and snapshot
 *    call on it has finished, and before closing its store.
 *  - evs_view_txn: a read transaction from evs_view_read_begin() belongs to
 *    one thread at a time (it may move between threads); the write
 *    transaction a handler receives is valid during that call only.
 *  - evs_runner: thread-safe; its projections run in their own threads.
 */
#ifndef EVSTORE_PROJECTION_H
#define EVSTORE_PROJECTION_H

#include "evstore/subscription.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * The views environment
 * ------------------------------------------------------------------------ */

typedef struct evs_views evs_views;

#define EVS_VIEWS_OPTIONS_VERSION 1

typedef struct evs_views_options {
  unsigned version;          /* EVS_VIEWS_OPTIONS_VERSION */
  const char *path;          /* directory; NULL = "<store directory>/views".
                                Created if missing. Must not be the store's
                                own directory. */
  uint64_t map_size;         /* initial map size; 0 = 256 MiB (sparse); the
                                map doubles when full */
  evs_durability durability; /* EVS_NOMETASYNC by default: a view that loses
                                its last commits in an OS crash loses its
                                checkpoint with them and replays them */
  uint32_t max_projections;  /* distinct projection names; 0 = 64 */
} evs_views_options;

#define EVS_VIEWS_OPTIONS_INIT                                                 \
  { EVS_VIEWS_OPTIONS_VERSION, NULL, 0, EVS_NOMETASYNC, 0 }

/*
 * Opens (creating if needed) the views environment of `store`. `opts` may
 * be NULL. The store must stay open until evs_views_close().
 *
 * Errors: EVS_EINVAL, EVS_EBUSY (this directory is already open in this
 * process, or it is the store's own directory), -errno from mkdir/open,
 * EVS_ECORRUPT.
 * Ownership: *out is the caller's; release it with evs_views_close().
 */
EVS_EXTERN int evs_views_open(evs_views **out, evs_store *store,
                              const evs_views_options *opts);

/* Closes the environment. Accepts NULL. */
EVS_EXTERN void evs_views_close(evs_views *views);

/* The directory of the views environment. Owned by `views`. */
EVS_EXTERN const char *evs_views_path(const evs_views *views);

/* ------------------------------------------------------------------------
 * View transactions: keys and values are bytes, ordered bytewise.
 * ------------------------------------------------------------------------ */

typedef struct evs_view_txn evs_view_txn;

/* Largest key (LMDB's default limit). Values may be up to 64 MiB. */
#define EVS_VIEW_MAX_KEY 511u

/*
 * Puts `val` under `key` (replacing any value). Write transactions only.
 * Errors: EVS_EINVAL (read transaction, empty or too long key, NULL),
 * EVS_ETOOLARGE, EVS_EMAPFULL and other storage errors (the runner retries
 * the batch after growing the map; a handler should return such codes).
 */
EVS_EXTERN int evs_view_put(evs_view_txn *txn, const void *key, size_t key_len,
                            const void *val, size_t val_len);

/*
 * Looks `key` up. Returns 0 and sets *val (borrowed: valid until the next
 * put/delete in this transaction or its end) or EVS_ENOTFOUND.
 */
EVS_EXTERN int evs_view_get(evs_view_txn *txn, const void *key, size_t key_len,
                            evs_slice *val);

/* Deletes `key`. Returns 0, or EVS_ENOTFOUND when it was absent. */
EVS_EXTERN int evs_view_del(evs_view_txn *txn, const void *key, size_t key_len);

/*
 * Scan callback: key and value are borrowed for the call. Return 0 to go
 * on, a positive value to stop (the scan returns 0), a negative value to
 * abort (the scan returns it). Do not write to the view from inside a scan.
 */
typedef int (*evs_view_scan_cb)(evs_slice key, evs_slice val, void *payload);

/*
 * Visits the keys k with lo <= k < hi in byte order (`reverse` = 1: in
 * descending order). lo NULL = from the first key; hi NULL = to the last.
 * Returns 0 or an error (or the callback's negative value).
 */
EVS_EXTERN int evs_view_scan(evs_view_txn *txn, const void *lo, size_t lo_len,
                             const void *hi, size_t hi_len, int reverse,
                             evs_view_scan_cb cb, void *payload);

/* Visits the keys that start with `prefix` (all keys for length 0). */
EVS_EXTERN int evs_view_scan_prefix(evs_view_txn *txn, const void *prefix,
                                    size_t prefix_len, evs_view_scan_cb cb,
                                    void *payload);

/*
 * Queries: opens a read transaction on the active view of projection
 * `name` (a snapshot: it does not see later runner commits). Works while a
 * runner writes, from this or another process. Keep it short: it pins the
 * pages it sees.
 * Errors: EVS_EINVAL, EVS_ENOTFOUND (no such projection in this views
 * environment), EVS_EBUSY (too many readers).
 * Ownership: release *out with evs_view_read_end().
 */
EVS_EXTERN int evs_view_read_begin(evs_view_txn **out, evs_views *views,
                                   const char *name);

/* Ends a read transaction. Accepts NULL. */
EVS_EXTERN void evs_view_read_end(evs_view_txn *txn);

/* ------------------------------------------------------------------------
 * Projections and the runner
 * ------------------------------------------------------------------------ */

/*
 * The handler: applies one event to the view through `txn`. Returns 0, or
 * a non-zero value to fail (a negative EVS_E* code is recorded as is, any
 * other value as EVS_EHANDLER). A failing handler stops its projection with
 * the error and the event's position recorded; the view keeps every event
 * before that one and nothing of it.
 *
 * A handler may run more than once for one event (when a batch is retried
 * or a process dies before its commit), but its effect on the view is
 * committed exactly once: keep its effects inside the view.
 */
typedef int (*evs_proj_handler)(evs_view_txn *txn, const evs_event *ev,
                                void *payload);

#define EVS_PROJECTION_VERSION 1

/* A projection's definition. Strings are copied by evs_runner_add(). */
typedef struct evs_projection {
  unsigned version;     /* EVS_PROJECTION_VERSION */
  const char *name;     /* 1..64 bytes of [A-Za-z0-9._-] */
  const char *category; /* filters, as in evs_sub_options */
  const char *stream_prefix;
  const char *event_type;
  evs_proj_handler handler;
  void *payload; /* passed to the handler */
} evs_projection;

#define EVS_PROJECTION_INIT                                                    \
  { EVS_PROJECTION_VERSION, NULL, NULL, NULL, NULL, NULL, NULL }

typedef struct evs_runner evs_runner;

#define EVS_RUNNER_OPTIONS_VERSION 1

typedef struct evs_runner_options {
  unsigned version;          /* EVS_RUNNER_OPTIONS_VERSION */
  uint32_t max_batch_events; /* events per view transaction; 0 = 512 */
  uint32_t max_batch_bytes;  /* event bytes per transaction; 0 = 4 MiB */
  uint32_t foreign_check_ms; /* A commit through this process's store
                                handle wakes idle projections at once;
                                another process's commits are looked for
                                every this many ms: 0 = the default,
                                1000; UINT32_MAX = never (only when no
                                other process appends to the store). */
} evs_runner_options;

#define EVS_RUNNER_OPTIONS_INIT                                                \
  { EVS_RUNNER_OPTIONS_VERSION, 0, 0, 0 }

/*
 * Creates a runner over `views` (and its store). `opts` may be NULL.
 * Ownership: release *out with evs_runner_free() before closing `views`.
 */
EVS_EXTERN int evs_runner_create(evs_runner **out, evs_views *views,
                                 const evs_runner_options *opts);

/*
 * Registers a projection (before or after evs_runner_start(); after, it
 * starts at once). Its view and catalog entry are created on first use;
 * an existing one resumes from its checkpoint.
 * Errors: EVS_EINVAL (bad name, NULL handler), EVS_EBUSY (a projection of
 * that name is already registered), EVS_ETOOLARGE (more than
 * max_projections), storage errors.
 */
EVS_EXTERN int evs_runner_add(evs_runner *runner, const evs_projection *def);

/*
 * Starts one thread per projection: each follows the log (catching up, then
 * live) until evs_runner_stop(). Errors: EVS_EBUSY (already started),
 * -errno from pthread_create.
 */
EVS_EXTERN int evs_runner_start(evs_runner *runner);

/* Stops and joins the threads (each finishes its current batch first).
 * The runner may be started again. Accepts NULL. */
EVS_EXTERN void evs_runner_stop(evs_runner *runner);

/*
 * Runs every projection in the calling thread until it has applied the
 * log up to the head as it is when the call starts (finishing a pending
 * rebuild too), or has failed. For tools, tests and batch jobs.
 * Returns 0 when every projection reached the head, EVS_EHANDLER when one
 * has failed (see its status; the others still ran), EVS_EBUSY when the
 * runner is started, or a storage error.
 */
EVS_EXTERN int evs_runner_catch_up(evs_runner *runner);

/*
 * Waits until projection `name` has applied the log up to `position`
 * (read-your-writes: pass the last position of an append), for at most
 * `timeout_ms` (-1 = forever). Returns 0, EVS_ETIMEDOUT, EVS_EHANDLER
 * (the projection has failed), EVS_ENOTFOUND, EVS_ESTOPPED (the runner is
 * not started).
 */
EVS_EXTERN int evs_runner_wait(evs_runner *runner, const char *name,
                               uint64_t position, int timeout_ms);

/* A projection's state. */
typedef struct evs_proj_status {
  uint64_t checkpoint;         /* last position applied (or skipped) */
  uint64_t head;               /* head of the log now */
  uint64_t behind;             /* head - checkpoint: positions still to
                                  consider (an upper bound of events) */
  uint64_t events_applied;     /* handler calls committed by this runner */
  int running;                 /* a runner thread is working on it */
  int failed;                  /* stopped by an error (below) */
  int error_code;              /* EVS_EHANDLER or the handler's EVS_E* code */
  uint64_t error_position;     /* the event that failed */
  char error[256];             /* the error's detail */
  uint32_t generation;         /* view generation (bumped by each rebuild) */
  int rebuilding;              /* a blue/green rebuild is in progress */
  uint64_t rebuild_checkpoint; /* its progress: position reached */
} evs_proj_status;

/*
 * Fills *out for projection `name` of this runner. Errors: EVS_EINVAL,
 * EVS_ENOTFOUND.
 */
EVS_EXTERN int evs_runner_status(evs_runner *runner, const char *name,
                                 evs_proj_status *out);

/*
 * Reads the stored state of projection `name` (checkpoint, error,
 * generation, rebuild progress) without a runner, e.g. from a tool;
 * `running` and `events_applied` are 0. Errors: EVS_ENOTFOUND.
 */
EVS_EXTERN int evs_views_status(evs_views *views, const char *name,
                                evs_proj_status *out);

/*
 * Starts a blue/green rebuild of projection `name`: a new view is built
 * from position 0 beside the active one, which keeps serving queries and
 * keeps being updated; when the new view reaches the head it replaces the
 * old one in one transaction (the old one is then emptied). Progress is in
 * evs_proj_status.rebuild_checkpoint. A rebuild already in progress starts
 * over. When the runner is not running, the request is written to the
 * views at once (and the rebuild happens at the next evs_runner_start() or
 * evs_runner_catch_up()); when it is, the projection's thread takes it at
 * its next step. Errors: EVS_ENOTFOUND, storage errors.
 */
EVS_EXTERN int evs_runner_rebuild(evs_runner *runner, const char *name);

/*
 * Clears a failed projection's error and runs it again from its checkpoint
 * (the failed event is retried). Errors: EVS_ENOTFOUND.
 */
EVS_EXTERN int evs_runner_resume(evs_runner *runner, const char *name);

/* Stops the runner and frees it (projections' views stay). Accepts NULL. */
EVS_EXTERN void evs_runner_free(evs_runner *runner);

/*
 * Deletes projection `name`'s views and catalog entry from `views`
 * (it must not be registered with a running runner). Returns 0 or
 * EVS_ENOTFOUND.
 */
EVS_EXTERN int evs_views_drop(evs_views *views, const char *name);

/* ------------------------------------------------------------------------
 * Built-in projections
 * ------------------------------------------------------------------------ */

/*
 * Fills *out with the definition of a built-in projection:
 *
 *  - "stream-state": the current state of every stream, the JSON merge
 *    patch (RFC 7386) fold of its events' data (see evs_state_fold for the
 *    rules). View key: the stream name. Value: a JSON object
 *      {"version":V,"position":P,"timestamp":T,"state":{...}}
 *    or, once an event's data was not a JSON object,
 *      {"version":V,"position":P,"timestamp":T,"state":null,
 *       "unfoldable":{"version":v,"position":p,"reason":"..."}}
 *    (the stream stays unfoldable; the projection goes on with the others).
 *  - "counts": events per category and per event type. Keys
 *    "category/<category>" and "type/<type>", values decimal ASCII
 *    integers.
 *
 * Errors: EVS_ENOTFOUND (unknown name), EVS_EINVAL.
 */
EVS_EXTERN int evs_proj_builtin(evs_projection *out, const char *name);

/*
 * Folds one stream's events from the log into its state, as of a position
 * and/or time (0 = now), without any view: the "stream-state" rules.
 *
 * Rules: the state starts as {}; each event's data is a JSON merge patch
 * applied per RFC 7386 (null deletes a key, objects merge recursively, any
 * non-object value replaces). Event data of 0 bytes changes nothing. Event
 * data that is not JSON (RFC 8259, nested at most 2048 levels), or JSON
 * that is not an object, makes the stream unfoldable: the call fails with
 * EVS_EINVAL and evs_last_error() names the event (version, position) and
 * the reason. Numbers are kept exactly as written in the events (no
 * arithmetic, no size limit), members in the order they were added.
 *
 * On success *out is the state as compact JSON text, NUL-terminated, to
 * release with evs_state_free(); *version (may be NULL) is the version of
 * the last event folded.
 * Errors: EVS_EINVAL, EVS_EBADNAME, EVS_ENOSTREAM (no such stream, or it
 * did not exist at that point), EVS_ESTREAMDELETED, EVS_ENOMEM, read
 * errors.
 */
EVS_EXTERN int evs_state_fold(char **out, int64_t *version, evs_store *store,
                              const char *stream, uint64_t as_of_position,
                              int64_t as_of_ns);

/* Frees a string from evs_state_fold() or evs_json_merge_patch().
 * Accepts NULL. */
EVS_EXTERN void evs_state_free(char *json);

/*
 * Applies the RFC 7386 merge patch `patch` (JSON text) to `target` (JSON
 * text, or NULL for none) and returns the result as compact JSON text in
 * *out (release with evs_state_free()), with the JSON rules of
 * evs_state_fold() (numbers kept as written). Errors: EVS_EINVAL (text that
 * is not JSON; evs_last_error() says where), EVS_ENOMEM.
 */
EVS_EXTERN int evs_json_merge_patch(char **out, const char *target,
                                    size_t target_len, const char *patch,
                                    size_t patch_len);

/* ------------------------------------------------------------------------
 * Snapshots of aggregates
 * ------------------------------------------------------------------------ */

/*
 * Snapshots are kept in the views environment, never in the event log:
 * they are a cache that can be deleted at any time (the next load replays
 * the stream). One snapshot per stream is kept: the newest.
 */
typedef struct evs_snapshot {
  char *stream;    /* NUL-terminated */
  int64_t version; /* the stream version the state includes */
  char *schema;    /* the caller's schema tag, NUL-terminated */
  void *data;      /* the state bytes */
  size_t len;
  int64_t saved_ns; /* when it was saved */
} evs_snapshot;

/*
 * Saves the state of `stream` as of `version` with a schema tag (1..255
 * bytes; change it when the state's encoding changes, and older snapshots
 * are ignored by loads). Returns 0 when saved, 1 when a snapshot of a later
 * version is already stored (nothing written).
 * Errors: EVS_EINVAL, EVS_EBADNAME, EVS_ETOOLARGE (over 64 MiB), storage
 * errors.
 */
EVS_EXTERN int evs_snapshot_save(evs_views *views, const char *stream,
                                 int64_t version, const char *schema,
                                 const void *data, size_t len);

/*
 * Loads the newest snapshot of `stream`. Errors: EVS_ENOTFOUND.
 * Ownership: release *out with evs_snapshot_free().
 */
EVS_EXTERN int evs_snapshot_load(evs_snapshot **out, evs_views *views,
                                 const char *stream);

/* Frees a snapshot. Accepts NULL. */
EVS_EXTERN void evs_snapshot_free(evs_snapshot *snap);

/* Deletes the snapshots of `stream`. Returns 0 (also when there was none). */
EVS_EXTERN int evs_snapshot_delete(evs_views *views, const char *stream);

/* Restores an aggregate's state from snapshot bytes. Return 0 or an error. */
typedef int (*evs_agg_restore_cb)(const void *data, size_t len, int64_t version,
                                  void *payload);
/* Applies one event to the aggregate's state. Return 0 or an error. */
typedef int (*evs_agg_apply_cb)(const evs_event *ev, void *payload);

/* What evs_aggregate_load() did. */
typedef struct evs_aggregate_info {
  int64_t version;          /* the stream's version now loaded
                               (EVS_VERSION_NONE for a new stream) */
  int64_t snapshot_version; /* version of the snapshot used, or
                               EVS_VERSION_NONE when none was usable */
  uint64_t events_read;     /* events applied after the snapshot */
} evs_aggregate_info;

/*
 * Loads an aggregate: restores the newest snapshot of `stream` whose
 * schema tag equals `schema` (if `views` is not NULL and one exists and
 * belongs to the stream's current life), then applies only the events
 * after its version; without a usable snapshot, every event. A stream that
 * does not exist loads as new (0, out->version = EVS_VERSION_NONE).
 * A callback's non-zero return stops the load and is returned (positive
 * values as EVS_EHANDLER). `out` may be NULL.
 * Errors: EVS_EINVAL, EVS_EBADNAME, EVS_ESTREAMDELETED, read errors.
 */
EVS_EXTERN int evs_aggregate_load(evs_aggregate_info *out, evs_store *store,
                                  evs_views *views, const char *stream,
                                  const char *schema,
                                  evs_agg_restore_cb restore,
                                  evs_agg_apply_cb apply, void *payload);

#ifdef __cplusplus
}
#endif

#endif /* EVSTORE_PROJECTION_H */
