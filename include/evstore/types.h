/*
 * evstore — basic types shared by every part of the API.
 */
#ifndef EVSTORE_TYPES_H
#define EVSTORE_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include "evstore/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Borrowed bytes. Who owns the bytes and how long they live is stated by
 * the function that hands the slice out (for reads: until the iterator
 * moves on or is freed).
 */
typedef struct evs_slice {
  const void *data;
  size_t len;
} evs_slice;

/* A 16-byte event id (a UUID, usually v7 when generated). */
typedef struct evs_uuid {
  uint8_t bytes[16];
} evs_uuid;

/* Stream versions are 0-based; a stream with no event has this version. */
#define EVS_VERSION_NONE ((int64_t)-1)

/* Limits. */
#define EVS_MAX_NAME_LEN 255u /* stream and event type names */
#define EVS_DEFAULT_MAX_EVENT_SIZE (16u * 1024u * 1024u) /* data+metadata */
#define EVS_HARD_MAX_EVENT_SIZE (64u * 1024u * 1024u)
#define EVS_DEFAULT_MAX_APPEND_SIZE (64u * 1024u * 1024u) /* one call */
#define EVS_MAX_EVENTS_PER_APPEND 100000u

/*
 * A stored event as read back. Every slice borrows from the store's map
 * (or from the iterator's decompression buffer) and stays valid until the
 * iterator that produced it moves on or is freed.
 */
typedef struct evs_event {
  uint64_t position;    /* global position in $all, 1-based */
  int64_t version;      /* 0-based version inside its stream */
  int64_t timestamp_ns; /* commit time, ns since the Unix epoch (UTC) */
  uint64_t stream_id;   /* internal stream number */
  evs_uuid id;
  evs_slice stream;   /* stream name (not NUL-terminated) */
  evs_slice type;     /* event type (not NUL-terminated) */
  evs_slice data;     /* payload, decompressed */
  evs_slice metadata; /* metadata bytes, possibly empty */
} evs_event;

/* Formats `id` as 36 characters plus NUL into `out` (at least 37 bytes). */
EVS_EXTERN void evs_uuid_format(char out[37], const evs_uuid *id);

/*
 * Parses the canonical 8-4-4-4-12 hex form (either case) of exactly `len`
 * bytes. Returns 0 or EVS_EINVAL.
 */
EVS_EXTERN int evs_uuid_parse(evs_uuid *out, const char *text, size_t len);

/* Generates a time-ordered UUIDv7 (monotonic within this process). */
EVS_EXTERN void evs_uuid_v7(evs_uuid *out);

/* 1 if every byte of `id` is zero (meaning: "generate one for me"). */
EVS_EXTERN int evs_uuid_is_nil(const evs_uuid *id);

/*
 * The category of a stream: the part before the first '-', or the whole
 * name when it has none (as in Message DB). Returns a slice of `stream`.
 */
EVS_EXTERN evs_slice evs_stream_category(const char *stream, size_t len);

/*
 * A stable 64-bit hash of a stream name (XXH3-64, seed 0), the same on every
 * machine and in every version of evstore. Consumer groups use it: member i
 * of n receives the streams whose hash % n == i.
 */
EVS_EXTERN uint64_t evs_stream_hash(const char *stream, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* EVSTORE_TYPES_H */
