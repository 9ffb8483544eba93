/*
 * evstore — reading streams, $all, stream info and time.
 *
 * Reads are cursors in LMDB read transactions: an event's slices point into
 * the map (zero-copy) unless its data had to be decompressed, and no read
 * loads a whole stream into memory. An iterator sees the events committed
 * when it was created and, as it advances, events committed later (it
 * refreshes its snapshot every few thousand events so that it never pins
 * old pages for long).
 *
 * Thread safety: an iterator belongs to one thread at a time; many iterators
 * may be used at once from many threads. Free every iterator before closing
 * the store.
 *
 * Visibility: events hidden by stream metadata (max count, max age,
 * truncate-before), by a soft delete or by a tombstone are skipped by every
 * read, including $all.
 */
#ifndef EVSTORE_READ_H
#define EVSTORE_READ_H

#include "evstore/append.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct evs_iter evs_iter;

typedef enum evs_direction {
  EVS_FORWARD = 0,
  EVS_BACKWARD = 1
} evs_direction;

/* "From the end" for a backward read. */
#define EVS_FROM_END INT64_MAX
#define EVS_POSITION_END UINT64_MAX

#define EVS_READ_OPTIONS_VERSION 1

/* Options of evs_read_stream(). */
typedef struct evs_read_options {
  unsigned version;
  evs_direction direction;
  int64_t from_version;    /* first version to return (inclusive);
                              EVS_FROM_END for backward from the last */
  uint64_t limit;          /* at most this many events; 0 = no limit */
  uint64_t as_of_position; /* only events at positions <= this; 0 = now */
  int64_t as_of_ns;        /* only events committed at or before this time
                              (ns since epoch); 0 = now */
} evs_read_options;

#define EVS_READ_OPTIONS_INIT                                                  \
  { EVS_READ_OPTIONS_VERSION, EVS_FORWARD, 0, 0, 0, 0 }

/*
 * Reads `stream`. On success *out is an iterator to advance with
 * evs_iter_next() and free with evs_iter_free().
 * Errors: EVS_EINVAL, EVS_EBADNAME, EVS_ENOSTREAM (no such stream, or
 * soft-deleted and not recreated, or created after as_of),
 * EVS_ESTREAMDELETED (tombstoned), EVS_EBUSY (too many readers).
 */
EVS_EXTERN int evs_read_stream(evs_iter **out, evs_store *store,
                               const char *stream,
                               const evs_read_options *opts);

#define EVS_READ_ALL_OPTIONS_VERSION 1

/* Options of evs_read_all(). Filters combine with AND. */
typedef struct evs_read_all_options {
  unsigned version;
  evs_direction direction;
  uint64_t from_position;    /* first position (inclusive); 0 = start forward;
                                EVS_POSITION_END = end backward */
  uint64_t limit;            /* 0 = no limit */
  const char *stream_prefix; /* only streams starting with this; NULL = all */
  const char *category;      /* only this category; NULL = all */
  const char *event_type;    /* only this type; NULL = all */
  int64_t since_ns;          /* only events committed at/after; 0 = no bound */
  int64_t until_ns;          /* only events committed at/before; 0 = no bound */
  uint64_t until_position;   /* only positions <= this; 0 = no bound */
  uint32_t group_size;       /* consumer group: n members; 0 or 1 = off */
  uint32_t group_member;     /* this member, 0..n-1: only streams whose
                                evs_stream_hash() % n == member */
} evs_read_all_options;

#define EVS_READ_ALL_OPTIONS_INIT                                              \
  {                                                                            \
    EVS_READ_ALL_OPTIONS_VERSION, EVS_FORWARD, 0, 0, NULL, NULL, NULL, 0, 0,   \
        0, 0, 0                                                                \
  }

/*
 * Reads the global log ($all). Category- or type-filtered reads use their
 * indexes instead of scanning the log.
 */
EVS_EXTERN int evs_read_all(evs_iter **out, evs_store *store,
                            const evs_read_all_options *opts);

/*
 * Advances the iterator. Returns 1 and sets *ev to the next event (valid
 * until the next call or evs_iter_free), 0 at the end, or a negative code
 * (EVS_ECORRUPT for a damaged record, EVS_ENOMEM, ...). After 0 or an error
 * the iterator keeps returning the same.
 */
EVS_EXTERN int evs_iter_next(evs_iter *it, const evs_event **ev);

/*
 * Position of the last event the iterator considered (delivered or skipped
 * by a filter): a checkpoint to resume from. 0 before the first.
 */
EVS_EXTERN uint64_t evs_iter_checkpoint(const evs_iter *it);

/* Frees the iterator. Accepts NULL. */
EVS_EXTERN void evs_iter_free(evs_iter *it);

/* Stream flags in evs_stream_info.flags. */
#define EVS_STREAM_DELETED 0x1u    /* soft-deleted (and not recreated) */
#define EVS_STREAM_TOMBSTONED 0x2u /* hard-deleted */

typedef struct evs_stream_info {
  int exists; /* 1 when the stream has visible events or was
                 created and not deleted */
  uint64_t stream_id;
  int64_t version;         /* last version, EVS_VERSION_NONE if none */
  int64_t first_version;   /* first version reads can see, or NONE */
  uint64_t first_position; /* position of first_version, 0 if none */
  uint64_t last_position;  /* position of the last event, 0 if none */
  int64_t start_version;   /* first version of its current life (after a
                              soft delete and recreate), 0 otherwise */
  int64_t last_timestamp_ns;
  unsigned flags; /* EVS_STREAM_* */
  uint64_t max_count;
  uint64_t max_age_sec;
  int64_t truncate_before;
  void *custom; /* malloc'd copy of the custom metadata, or NULL;
                   free with evs_stream_info_clear() */
  size_t custom_len;
} evs_stream_info;

/*
 * Fills *out for `stream`. Returns 0 (also for deleted and tombstoned
 * streams: see out->flags) or EVS_ENOSTREAM when the store has never seen
 * the stream. Release with evs_stream_info_clear().
 */
EVS_EXTERN int evs_stream_info_get(evs_store *store, const char *stream,
                                   evs_stream_info *out);

/* Frees what evs_stream_info_get() allocated. Accepts NULL. */
EVS_EXTERN void evs_stream_info_clear(evs_stream_info *info);

typedef struct evs_stream_iter evs_stream_iter;

/*
 * Lists streams whose name starts with `prefix` (NULL or "" for all) in
 * byte order, starting after `after` (NULL to start at the beginning).
 * `include_deleted` = 0 skips soft-deleted and tombstoned streams.
 */
EVS_EXTERN int evs_streams_list(evs_stream_iter **out, evs_store *store,
                                const char *prefix, const char *after,
                                int include_deleted);

/*
 * Returns 1 and fills *info (its `custom` borrows from the store until the
 * next call; do not clear it), 0 at the end, or a negative code. `name`
 * borrows the same way.
 */
EVS_EXTERN int evs_streams_next(evs_stream_iter *it, evs_slice *name,
                                evs_stream_info *info);

EVS_EXTERN void evs_streams_free(evs_stream_iter *it);

/*
 * Temporal lookup: *out = the last position committed at or before
 * `timestamp_ns` (0 if none). O(log n) over the log.
 */
EVS_EXTERN int evs_position_at(evs_store *store, int64_t timestamp_ns,
                               uint64_t *out);

/* *out = the head of $all (last position, 0 when empty). */
EVS_EXTERN int evs_head_position(evs_store *store, uint64_t *out);

/*
 * Reads the one event at `position` into a copy owned by the caller:
 * *out must be released with evs_event_free(). Errors: EVS_ENOTFOUND.
 * Ignores visibility rules (a low-level lookup).
 */
EVS_EXTERN int evs_read_event(evs_store *store, uint64_t position,
                              evs_event **out);

/*
 * Looks up an event by id. Returns 0 with *position (or EVS_ENOTFOUND).
 */
EVS_EXTERN int evs_find_event_id(evs_store *store, const evs_uuid *id,
                                 uint64_t *position);

EVS_EXTERN void evs_event_free(evs_event *ev);

#ifdef __cplusplus
}
#endif

#endif /* EVSTORE_READ_H */
