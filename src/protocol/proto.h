/*
 * evstore protocol — frames and messages of the evstored wire protocol.
 *
 * docs/protocol.md is the specification; this is its C codec. A frame is a
 * 4-byte big-endian body length followed by a body that is one msgpack map
 * with string keys. Requests go from client to server and carry a
 * client-chosen request id ("rid") that the server echoes; server frames
 * are replies, subscription pushes and a final "goodbye".
 *
 * Decoders take untrusted bytes: they never read past the given length,
 * check every declared length and count against the bytes left before
 * using it, and allocate only for append requests, and then at most
 * min(limits.max_events, body bytes / 8) event slots. Every decoded slice
 * (names, data, metadata, token...) points into the caller's body buffer
 * and lives as long as it does. Strings are not NUL-terminated and may
 * contain NUL bytes: check with evs__proto_has_nul() before using one as a
 * C string.
 *
 * Pure code: no I/O, no store internals, no globals. Thread-safe.
 */
#ifndef EVSTORE_PROTOCOL_PROTO_H
#define EVSTORE_PROTOCOL_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/msgpack.h"

/* The protocol version this codec speaks. */
#define EVS_PROTO_VERSION 1u

/* Bytes of the frame header (the body length). */
#define EVS_PROTO_FRAME_HDR 4u

/* Default limits (docs/protocol.md, "Limits"). */
#define EVS_PROTO_DEFAULT_MAX_FRAME (32u * 1024u * 1024u)
#define EVS_PROTO_DEFAULT_MAX_EVENTS 10000u

/* Operations (the "op" key of a request). */
typedef enum evs__proto_op {
  EVS__P_NONE = 0,
  EVS__P_HELLO,
  EVS__P_PING,
  EVS__P_APPEND,
  EVS__P_READ_STREAM,
  EVS__P_READ_ALL,
  EVS__P_STREAM_INFO,
  EVS__P_LIST_STREAMS,
  EVS__P_SET_METADATA,
  EVS__P_DELETE,
  EVS__P_SUBSCRIBE,
  EVS__P_UNSUBSCRIBE,
  /* Added after the first release of protocol 1 (additive: a server
   * that predates them answers "unknown op"). */
  EVS__P_APPEND_AT,
  EVS__P_READ_EVENT,
  EVS__P_HEAD,
  EVS__P_STATE,
  EVS__P_STATS,
  EVS__P_VERIFY,
  EVS__P_REPLAY,
  EVS__P_OP_COUNT
} evs__proto_op;

/* The op's wire name ("append"), or "?" for EVS__P_NONE / out of range. */
const char *evs__proto_op_name(evs__proto_op op);

/* Kinds of server frames (the "kind" key). */
typedef enum evs__proto_kind {
  EVS__K_REPLY = 0,
  EVS__K_EVENTS,
  EVS__K_CAUGHT_UP,
  EVS__K_SUB_END,
  EVS__K_GOODBYE,
  EVS__K_PROGRESS, /* interim frames of verify and replay */
  EVS__K_COUNT
} evs__proto_kind;

const char *evs__proto_kind_name(evs__proto_kind kind);

/*
 * An event: in an append request (type, optional id, data, metadata) or
 * recorded, in a reply or push (every field).
 */
typedef struct evs__proto_event {
  evs_slice stream; /* recorded only */
  evs_slice type;
  uint8_t id[16];
  int has_id; /* append: 0 = let the server generate one */
  evs_slice data;
  evs_slice metadata;
  int64_t version;      /* recorded only */
  uint64_t position;    /* recorded only */
  int64_t timestamp_ns; /* recorded only */
} evs__proto_event;

/* One stream's part of an append request. */
typedef struct evs__proto_part {
  evs_slice stream;
  int64_t expected; /* EVS_EXPECT_* or a version; default ANY (-2) */
  evs__proto_event *events;
  uint32_t nevents;
} evs__proto_part;

/* Limits the request decoder enforces before it allocates. */
typedef struct evs__proto_limits {
  uint32_t max_events; /* events in one append, all parts together */
  uint32_t max_parts;  /* parts of a multi-stream append */
} evs__proto_limits;

#define EVS__PROTO_LIMITS_DEFAULT                                              \
  { EVS_PROTO_DEFAULT_MAX_EVENTS, 1000u }

/*
 * A decoded request. Fields irrelevant to `op` keep their defaults. The
 * has_* flags tell whether an optional key was present.
 */
typedef struct evs__proto_request {
  evs__proto_op op;
  evs_slice op_name; /* as sent, for "unknown op" messages */
  uint64_t rid;
  int has_rid;

  /* hello */
  uint64_t protocol;
  int has_protocol;
  evs_slice token;
  int has_token;
  evs_slice client;

  /* stream-addressed ops (read_stream, stream_info, set_metadata, delete,
   * single-stream append, stream subscriptions) */
  evs_slice stream;
  int has_stream;
  int64_t expected; /* append (single form), delete; default ANY */

  /* reads and subscriptions */
  int backward; /* "direction": "backward" */
  int64_t from; /* version (streams) or position ($all) */
  int has_from;
  uint64_t limit; /* 0 = the server's page size */
  uint64_t as_of_position;
  int64_t as_of_ns;

  /* $all filters (read_all, subscribe) */
  evs_slice stream_prefix;
  evs_slice category;
  evs_slice event_type;
  int has_stream_prefix, has_category, has_event_type;
  int64_t since_ns;
  int64_t until_ns;
  uint64_t until_position;
  uint32_t group_size;
  uint32_t group_member;

  /* list_streams */
  evs_slice prefix;
  evs_slice after;
  int has_prefix, has_after;
  int include_deleted;

  /* set_metadata */
  uint64_t max_count;
  uint64_t max_age_sec;
  int64_t truncate_before; /* default -1 */
  evs_slice custom;
  int has_custom;

  /* delete */
  int hard;

  /* subscribe */
  int from_end;
  uint32_t batch; /* max events per push; 0 = server default */

  /* unsubscribe */
  uint64_t sub;
  int has_sub;

  /* append_at: the commit timestamp (ns) */
  int64_t timestamp_ns;
  int has_timestamp;

  /* read_event: by position or by id */
  uint64_t position;
  int has_position;
  uint8_t id[16];
  int has_id;

  /* replay */
  evs_slice projection;
  int has_projection;

  /* append: one part for the single-stream form, several for "parts" */
  int multi;              /* 1 when sent as "parts" */
  evs__proto_part *parts; /* owned; free with evs__proto_request_free() */
  uint32_t nparts;
  uint32_t nevents;              /* all parts together */
  evs__proto_event *event_store; /* owned: every part's events */
} evs__proto_request;

/* Sets every field to its default (expected ANY, truncate_before -1...). */
void evs__proto_request_init(evs__proto_request *req);
/* Frees what the decoder allocated. Accepts NULL. */
void evs__proto_request_free(evs__proto_request *req);

/*
 * Decodes one request body (the bytes after the frame header). On success
 * returns 0 and *req is filled (free with evs__proto_request_free()). On
 * failure returns EVS_EPROTO (malformed, wrong type, missing key, unknown
 * op), EVS_ETOOLARGE (more events or parts than `limits` allow) or
 * EVS_ENOMEM, writes a one-line reason into err (NUL-terminated, at most
 * errlen bytes), and leaves req->rid/has_rid set when the rid was read.
 * `limits` may be NULL for the defaults.
 */
int evs__proto_decode_request(evs__proto_request *req, const void *body,
                              size_t len, const evs__proto_limits *limits,
                              char *err, size_t errlen);

/*
 * Encodes `req` as one complete frame (header included) appended to `b`:
 * the keys relevant to req->op, with optional keys only when their has_*
 * flag is set (or, for numbers, when they differ from the default).
 * Returns 0 or EVS_ENOMEM / EVS_EINVAL (no op).
 */
int evs__proto_encode_request(evs__buf *b, const evs__proto_request *req);

/*
 * Finds the rid of a frame body that cannot be (or has not been) decoded:
 * walks the map's entries from the start and stops at the first "rid", at
 * the first malformed byte or at the end of `len` (a truncated prefix of a
 * large frame is fine). Returns 1 with *rid, or 0.
 */
int evs__proto_peek_rid(const void *body, size_t len, uint64_t *rid);

/* 1 if the slice contains a NUL byte. */
int evs__proto_has_nul(evs_slice s);

/*
 * Reads a frame header from `avail` bytes at `buf`: returns 1 and the body
 * length when at least 4 bytes are there, 0 otherwise.
 */
int evs__proto_frame_header(const void *buf, size_t avail, uint32_t *body_len);

/* ---- server frames ------------------------------------------------------ */

/*
 * Building a server frame (or any frame): open it, add keys with the
 * msgpack writer through evs__mp_w_key(b, &f->map, ...), close it.
 * evs__proto_frame_open writes the header placeholder, the map and the
 * "kind", "rid" and "code" keys; close patches the length. When `code` is
 * not 0, also writes "error" (the code's name) and "message" (`message`,
 * may be NULL).
 */
typedef struct evs__proto_frame {
  size_t off; /* where the frame header starts in the buffer */
  evs__mp_open map;
} evs__proto_frame;

void evs__proto_frame_open(evs__buf *b, evs__proto_frame *f,
                           evs__proto_kind kind, uint64_t rid, int code,
                           const char *message);
/* Returns 0, or EVS_ENOMEM when the buffer ran out of memory, or
 * EVS_ETOOLARGE when the body exceeds 4 GiB - 1. */
int evs__proto_frame_close(evs__buf *b, evs__proto_frame *f);

/* Writes a recorded event (all fields) as a map. */
void evs__proto_w_event(evs__buf *b, const evs__proto_event *ev);

/* A whole error reply frame (kind "reply" unless told otherwise). */
int evs__proto_error_frame(evs__buf *b, evs__proto_kind kind, uint64_t rid,
                           int code, const char *message);

/* The stable symbolic name of an error code ("EVS_EWRONGVERSION",
 * "ENOSPC", "OK"); "EVS_EUNKNOWN" for a code it does not know. */
const char *evs__proto_err_name(int code);
/* A static description of a code (evstore's codes and -errno). */
const char *evs__proto_strerror(int code);
/* The code for a symbolic name, or 0 when unknown. */
int evs__proto_err_from_name(evs_slice name);

/* ---- decoding server frames (the client side) --------------------------- */

/* A result of a multi-stream append ("results" array entries). */
typedef struct evs__proto_result {
  int64_t first_version;
  int64_t last_version;
  uint64_t first_position;
  uint64_t last_position;
  int64_t timestamp_ns;
  int idempotent;
} evs__proto_result;

/* A stream of a list_streams reply. The metadata keys are sent by
 * servers that know the operations added later (0 / -1 / absent
 * before). */
typedef struct evs__proto_stream_entry {
  evs_slice name;
  int64_t version;
  uint64_t last_position;
  int64_t last_timestamp_ns;
  int deleted;
  int tombstoned;
  uint64_t max_count;
  uint64_t max_age_sec;
  int64_t truncate_before; /* -1 = none */
  evs_slice custom;
  int has_custom;
} evs__proto_stream_entry;

/* The "stats" map of a stats reply (the fields of evs_stats). */
typedef struct evs__proto_stats {
  uint64_t events;
  uint64_t streams;
  uint64_t event_types;
  uint64_t categories;
  uint64_t last_position;
  int64_t last_timestamp_ns;
  uint64_t file_size;
  uint64_t map_size;
  uint64_t map_used;
  uint64_t page_size;
  uint64_t data_bytes_raw;
  uint64_t data_bytes_stored;
  uint64_t compressed_events;
} evs__proto_stats;

/* Writes `st` as the value of a "stats" key. */
void evs__proto_w_stats(evs__buf *b, const evs__proto_stats *st);

/*
 * A decoded server frame. Arrays (events, results, streams) are validated
 * by the decoder but kept as raw slices, decoded one element at a time with
 * evs__proto_next_*(): decoding a reply never allocates.
 */
typedef struct evs__proto_reply {
  evs__proto_kind kind;
  uint64_t rid;
  int code;        /* 0 or a negative EVS_E* / -errno */
  evs_slice error; /* symbolic name when code != 0 */
  evs_slice message;

  /* hello */
  uint64_t protocol;
  evs_slice server;
  uint64_t max_frame;
  uint64_t max_events;
  uint64_t max_event_size;

  /* append (single form) and errors */
  evs__proto_result result;
  int has_result;
  int64_t actual_version;
  int has_actual_version;
  uint64_t failed_part;
  evs_slice results_raw; /* multi-stream append results */
  uint32_t nresults;

  /* reads and pushes */
  evs_slice events_raw;
  uint32_t nevents;
  int64_t next;
  int has_next;
  int64_t checkpoint; /* -1: a stream subscription before its first event */
  int has_checkpoint;
  int end;

  /* stream_info (uses result-independent fields) */
  int exists;
  uint64_t stream_id;
  int64_t version;
  int64_t first_version;
  uint64_t first_position;
  uint64_t last_position;
  int64_t start_version;
  int64_t last_timestamp_ns;
  int deleted;
  int tombstoned;
  uint64_t max_count;
  uint64_t max_age_sec;
  int64_t truncate_before;
  evs_slice custom;
  int has_custom;

  /* list_streams */
  evs_slice streams_raw;
  uint32_t nstreams;

  /* ping, head */
  uint64_t head;
  int64_t time_ns;
  int64_t head_timestamp_ns;

  /* read_event: the event (slices into the body) */
  evs__proto_event event;
  int has_event;

  /* state: compact JSON text */
  evs_slice state;
  int has_state;

  /* stats */
  evs__proto_stats stats;
  int has_stats;

  /* verify */
  uint64_t events_checked;
  uint64_t streams_checked;
  uint64_t errors;

  /* replay (with checkpoint and head above) */
  uint64_t generation;
  uint64_t events_applied;
  uint64_t error_position;

  /* progress */
  uint64_t done;
  uint64_t total;
  evs_slice problem;
  int has_problem;
} evs__proto_reply;

/*
 * Decodes a server frame body. Returns 0, or EVS_EPROTO with a reason in
 * err. Every array element is checked here, so the evs__proto_next_*
 * functions below cannot fail on a reply this accepted.
 */
int evs__proto_decode_reply(evs__proto_reply *rep, const void *body, size_t len,
                            char *err, size_t errlen);

/* Walks an array decoded above: init with the raw slice and count, then
 * call next until it returns 0. Returns 1 (element in *out), 0 at the end,
 * or EVS_EPROTO. */
typedef struct evs__proto_cursor {
  evs__mp_reader r;
  uint32_t left;
} evs__proto_cursor;

void evs__proto_cursor_init(evs__proto_cursor *c, evs_slice raw,
                            uint32_t count);
int evs__proto_next_event(evs__proto_cursor *c, evs__proto_event *out);
int evs__proto_next_result(evs__proto_cursor *c, evs__proto_result *out);
int evs__proto_next_stream(evs__proto_cursor *c, evs__proto_stream_entry *out);

#endif /* EVSTORE_PROTOCOL_PROTO_H */
