/*
 * evstore — opening, closing and maintaining a store.
 *
 * A store is one directory holding an LMDB environment (data.mdb, lock.mdb).
 * Open it once per process: opening the same directory twice in one process
 * fails with EVS_EBUSY, because LMDB's locks break if one process maps the
 * same file twice. Several processes may open one store at once; LMDB
 * serializes their writes. Never use a store handle after fork().
 *
 * Thread safety: one evs_store handle may be used from any number of threads
 * at once, except evs_store_close(), which must be called once, after every
 * other call on the handle has returned and every iterator is freed.
 */
#ifndef EVSTORE_STORE_H
#define EVSTORE_STORE_H

#include "evstore/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct evs_store evs_store;

/*
 * Durability of an acknowledged append (see docs/storage.md):
 *  - EVS_SYNC (default): a successful return means the events are on disk;
 *    they survive a process crash, an OS crash and a power loss.
 *  - EVS_NOMETASYNC: the store stays consistent on any crash, but an OS crash
 *    or power loss may undo the last commits (the meta page is flushed with
 *    the next commit). A process crash loses nothing acknowledged.
 *  - EVS_NOSYNC: nothing is flushed; a process crash loses nothing
 *    acknowledged, an OS crash or power loss can lose data AND corrupt the
 *    store. For benchmarks and throwaway data only.
 */
typedef enum evs_durability {
  EVS_SYNC = 0,
  EVS_NOMETASYNC = 1,
  EVS_NOSYNC = 2
} evs_durability;

#define EVS_STORE_OPTIONS_VERSION 1

typedef struct evs_store_options {
  unsigned version;            /* EVS_STORE_OPTIONS_VERSION */
  uint64_t map_size;           /* initial map size in bytes; 0 = 64 MiB */
  uint64_t max_map_size;       /* growth limit; 0 = no limit but the OS's */
  evs_durability durability;   /* EVS_SYNC by default */
  uint32_t compress_threshold; /* compress data of at least this many bytes;
                                  0 = 256; UINT32_MAX = never */
  int compress_level;          /* zstd level; 0 = 3 */
  uint32_t max_event_size;     /* data+metadata bytes; 0 = default (16 MiB),
                                  at most EVS_HARD_MAX_EVENT_SIZE */
  uint32_t max_readers;        /* concurrent iterators/readers; 0 = 1024 */
  int create;                  /* create the directory and store if missing;
                                  1 by default */
  int read_only;               /* open without write access */
} evs_store_options;

#define EVS_STORE_OPTIONS_INIT                                                 \
  { EVS_STORE_OPTIONS_VERSION, 0, 0, EVS_SYNC, 0, 0, 0, 0, 1, 0 }

/*
 * Opens (and by default creates) the store in directory `path`.
 * `opts` may be NULL for defaults. On success *out is a handle to close
 * with evs_store_close().
 *
 * Errors: EVS_EINVAL (NULL arguments, bad options), EVS_EBUSY (already open
 * in this process), EVS_EFORMAT (written by a newer format), EVS_ECORRUPT,
 * -ENOENT (missing and create == 0), -EACCES and other -errno values.
 */
EVS_EXTERN int evs_store_open(evs_store **out, const char *path,
                              const evs_store_options *opts);

/* Closes the store. Accepts NULL. Waits for in-flight appends to finish. */
EVS_EXTERN void evs_store_close(evs_store *store);

/* Flushes everything committed so far to disk (useful with EVS_NOSYNC). */
EVS_EXTERN int evs_store_sync(evs_store *store);

/*
 * Trains a zstd dictionary on the data of the store's newest events (up to
 * `samples`, 0 = 10,000) and makes it the store's dictionary: from then on
 * appends compress event data of at least 32 bytes with it (or of at least
 * compress_threshold when that is lower; never when it is UINT32_MAX). A
 * dictionary holds what events of one shape share, so small JSON events,
 * which zstd alone barely shrinks, compress too (docs/storage.md). Events
 * written earlier keep their form, and every dictionary stays in the store,
 * so all of them remain readable. Train again when the events change shape.
 * `dict_size` is the dictionary's size in bytes, 1 KiB to 1 MiB (0 = 16
 * KiB). On success *dict_id (may be NULL) is the new dictionary's id.
 *
 * Other processes with the store open keep compressing with the dictionary
 * they had until they reopen it; they read events compressed with the new
 * one at once.
 *
 * Errors: EVS_EINVAL (bad sizes, a read-only store, too few events to
 * train on), EVS_ENOMEM, EVS_ECORRUPT, EVS_EMAPFULL, -errno.
 */
EVS_EXTERN int evs_store_train_dictionary(evs_store *store, size_t dict_size,
                                          size_t samples, uint32_t *dict_id);

/* Counters and sizes, see evs_store_stats(). */
typedef struct evs_stats {
  uint64_t events;        /* events in the log (after compaction) */
  uint64_t streams;       /* streams known, including deleted ones */
  uint64_t last_position; /* head of $all, 0 when empty */
  int64_t last_timestamp_ns;
  uint64_t map_size;  /* current map size in bytes */
  uint64_t map_used;  /* bytes of the map in use (pages * size) */
  uint64_t file_size; /* data.mdb size on disk */
  uint64_t page_size;
  uint64_t data_bytes_raw;    /* sum of uncompressed data sizes */
  uint64_t data_bytes_stored; /* sum of stored (possibly compressed) data */
  uint64_t compressed_events; /* events whose data is compressed */
  uint64_t event_types;
  uint64_t categories;
} evs_stats;

/*
 * Fills *out. `full` = 1 also scans the log for the byte and compression
 * totals (O(events)); with 0 those three fields are left 0.
 */
EVS_EXTERN int evs_store_stats(evs_store *store, evs_stats *out, int full);

/* Result of a verify pass. */
typedef struct evs_verify_report {
  uint64_t events_checked;
  uint64_t streams_checked;
  uint64_t errors; /* problems found; 0 = consistent */
} evs_verify_report;

/*
 * Called by evs_store_verify for each problem found, and (with `problem`
 * NULL) every 4096 events for progress. Return non-zero to stop.
 */
typedef int (*evs_verify_cb)(const char *problem, uint64_t events_done,
                             uint64_t events_total, void *payload);

/*
 * Full consistency check: every record decodes and matches its checksum,
 * positions increase, timestamps never decrease, and every index
 * (stream, id, category, type) agrees with the log and the streams table.
 * Returns 0 when the check ran (look at out->errors), or an error code.
 */
EVS_EXTERN int evs_store_verify(evs_store *store, evs_verify_report *out,
                                evs_verify_cb cb, void *payload);

/* Result of a compaction pass. */
typedef struct evs_compact_report {
  uint64_t events_removed;
  uint64_t streams_visited;
} evs_compact_report;

/*
 * Deletes events that stream metadata (max count, max age, truncate-before),
 * soft deletes and tombstones make invisible, with their index entries.
 * Runs in bounded chunks; appends proceed between chunks. `out` may be NULL.
 * The space is reused by later appends (LMDB never shrinks the file).
 */
EVS_EXTERN int evs_store_compact(evs_store *store, evs_compact_report *out);

/* The directory the store was opened in. Owned by the store. */
EVS_EXTERN const char *evs_store_path(const evs_store *store);

#ifdef __cplusplus
}
#endif

#endif /* EVSTORE_STORE_H */
