/*
 * evstore — appending events.
 *
 * All appends go through one writer per store: concurrent callers are
 * batched into one LMDB transaction per commit (group commit, one fsync for
 * the batch). Each request is validated against the transaction's state
 * before anything of it is written, so a request that fails its checks
 * writes nothing and does not affect the other requests of its batch.
 *
 * Thread safety: every function here may be called from many threads at
 * once on one store.
 */
#ifndef EVSTORE_APPEND_H
#define EVSTORE_APPEND_H

#include "evstore/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Expected version (values as in EventStoreDB). N >= 0 means: the stream's
 * last event has version N. */
#define EVS_EXPECT_ANY ((int64_t)-2)       /* no check */
#define EVS_EXPECT_NO_STREAM ((int64_t)-1) /* the stream must not exist */
#define EVS_EXPECT_EXISTS ((int64_t)-4)    /* the stream must exist */

/*
 * One event to append. `id` all zero means "generate a UUIDv7"; the
 * generated id is written back into `id`. `type` is a NUL-terminated UTF-8
 * string of 1..255 bytes. data and metadata are opaque bytes (either may be
 * empty); together at most the store's max_event_size.
 */
typedef struct evs_event_data {
  evs_uuid id;
  const char *type;
  const void *data;
  size_t data_len;
  const void *metadata;
  size_t metadata_len;
} evs_event_data;

/* What an append did (or, for an idempotent retry, had done). */
typedef struct evs_append_result {
  int64_t first_version;
  int64_t last_version;
  uint64_t first_position;
  uint64_t last_position;
  int64_t timestamp_ns;   /* commit time */
  int64_t actual_version; /* on EVS_EWRONGVERSION: the stream's version */
  int idempotent;         /* 1 when nothing was written (a retry) */
} evs_append_result;

/*
 * Appends `count` (1..EVS_MAX_EVENTS_PER_APPEND) events to `stream`
 * atomically, checking `expected` first. On success *out (may be NULL)
 * holds the versions, positions and commit time.
 *
 * Idempotency: if every id of the request is already stored, consecutively,
 * in this stream, at the place `expected` names (for ANY and EXISTS:
 * anywhere in the stream), the call succeeds without writing and returns
 * the original versions and positions (out->idempotent = 1). Any other use
 * of an id that is already stored fails with EVS_EIDCONFLICT.
 *
 * Errors: EVS_EINVAL (NULL, count 0 or too many, duplicate ids in the
 * request), EVS_EBADNAME (stream or type empty, > 255 bytes, invalid UTF-8),
 * EVS_ETOOLARGE (an event over max_event_size or the call over 64 MiB),
 * EVS_EWRONGVERSION (out->actual_version holds the stream's version, or
 * EVS_VERSION_NONE), EVS_EIDCONFLICT, EVS_ESTREAMDELETED (tombstoned),
 * EVS_EMAPFULL, -ENOSPC, EVS_EIO, EVS_ECLOSED. On any error nothing of the
 * request was written.
 */
EVS_EXTERN int evs_append(evs_store *store, const char *stream,
                          int64_t expected, evs_event_data *events,
                          size_t count, evs_append_result *out);

/* One stream's part of a multi-stream append. */
typedef struct evs_append_part {
  const char *stream;
  int64_t expected;
  evs_event_data *events;
  size_t count;
  evs_append_result result; /* filled in by evs_append_multi */
} evs_append_part;

/*
 * Appends to several distinct streams atomically: every part succeeds or
 * none is written. Each part is checked with the rules of evs_append().
 * On failure *failed_part (may be NULL) is the index of the part that
 * failed, and that part's result.actual_version is filled in for
 * EVS_EWRONGVERSION. The same stream may not appear twice (EVS_EINVAL).
 */
EVS_EXTERN int evs_append_multi(evs_store *store, evs_append_part *parts,
                                size_t nparts, size_t *failed_part);

/*
 * Import: appends like evs_append_multi(), but commits the events with the
 * given timestamp instead of the current time, to restore an export with its
 * original times. Because timestamps never decrease along positions,
 * `timestamp_ns` must be at least the timestamp of the head of the log
 * (EVS_EINVAL otherwise, for the first part that would write); later
 * ordinary appends are stamped max(now, that timestamp). A retry of an
 * import that committed is recognised first, as with evs_append(): it
 * returns the original results even after the log moved on.
 */
EVS_EXTERN int evs_append_at(evs_store *store, evs_append_part *parts,
                             size_t nparts, int64_t timestamp_ns,
                             size_t *failed_part);

/*
 * Asynchronous append: queues the request and returns at once (0) or fails
 * fast (a negative code, callback not called). `cb` is called exactly once,
 * from a store thread, after the commit (or failure). `parts`, their events
 * and all the bytes they point to must stay valid until then. Used by the
 * server to keep its event loop free.
 */
typedef void (*evs_append_cb)(int status, evs_append_part *parts, size_t nparts,
                              size_t failed_part, void *payload);

EVS_EXTERN int evs_append_async(evs_store *store, evs_append_part *parts,
                                size_t nparts, evs_append_cb cb, void *payload);

/*
 * Soft delete (hard = 0): the stream is hidden from reads; a later append
 * with EVS_EXPECT_ANY or EVS_EXPECT_NO_STREAM recreates it, continuing its
 * version numbers (events from before the delete stay hidden) and keeping
 * its metadata.
 * Hard delete (hard = 1): a tombstone; every later append to the stream
 * fails with EVS_ESTREAMDELETED and reads fail the same way.
 * `expected` is checked as for an append. Deleting a stream that does not
 * exist succeeds with EVS_EXPECT_ANY or EVS_EXPECT_NO_STREAM (a hard delete
 * still records the tombstone).
 */
EVS_EXTERN int evs_stream_delete(evs_store *store, const char *stream,
                                 int64_t expected, int hard);

/*
 * Stream metadata. Events outside the limits are invisible to reads and
 * removed by evs_store_compact(). 0 / -1 mean "no limit" as noted.
 */
typedef struct evs_stream_metadata {
  uint64_t max_count;      /* keep the last N events; 0 = no limit */
  uint64_t max_age_sec;    /* hide events older than this; 0 = no limit */
  int64_t truncate_before; /* hide versions below this; -1 = none */
  const void *custom;      /* opaque bytes (usually JSON), may be NULL */
  size_t custom_len;       /* at most 64 KiB */
} evs_stream_metadata;

#define EVS_STREAM_METADATA_INIT                                               \
  { 0, 0, -1, NULL, 0 }

/*
 * Replaces the metadata of `stream` (which need not exist yet).
 * Errors: EVS_EINVAL, EVS_EBADNAME, EVS_ETOOLARGE, EVS_ESTREAMDELETED.
 */
EVS_EXTERN int evs_stream_set_metadata(evs_store *store, const char *stream,
                                       const evs_stream_metadata *md);

#ifdef __cplusplus
}
#endif

#endif /* EVSTORE_APPEND_H */
