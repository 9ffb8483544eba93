/*
 * evstore — the C client of evstored, the evstore server.
 *
 * The client speaks the protocol of docs/protocol.md over TCP. It lives in
 * its own library, libevstore_client (CMake: evstore::evstore_client or
 * evstore::evstore_client_static), which needs only libc and pthreads: an
 * application that talks to a server does not link LMDB, and the embedded
 * library (libevstore) does not link this. The client reuses the plain
 * types of the embedded API (evs_event, evs_event_data, evs_append_result,
 * evs_read_options, evs_stream_info...) so that code can move between the
 * two; it defines none of the embedded library's functions, and the
 * embedded library defines none of these.
 *
 * Errors: every fallible call returns 0 (or a documented positive value)
 * or a negative code. Errors reported by the server come back as the same
 * EVS_E* codes the embedded library returns (EVS_EWRONGVERSION,
 * EVS_ENOSTREAM, ...); connection problems are EVS_ECONN, timeouts
 * EVS_ETIMEDOUT, malformed server frames EVS_EPROTO, rejected tokens and
 * denied operations EVS_EAUTH. evs_client_last_error() gives the calling
 * thread's detail (the server's message, e.g. "stream 'order-1': expected
 * version 4, actual version 7").
 *
 * Threads: an evs_client may be shared by any number of threads. Their
 * requests are pipelined on its one connection (each call sends its
 * request at once and waits only for its own reply), so N threads keep up
 * to N requests in flight. Iterators and subscriptions belong to one
 * thread at a time. A subscription has a connection of its own, so that a
 * slow subscriber never delays the client's other requests.
 *
 * Connection loss: calls in flight fail with EVS_ECONN; with
 * opts.reconnect (the default) the next call connects again. Appends are
 * safe to retry: the client gives every event without an id a UUIDv7
 * before sending and writes it back into the caller's evs_event_data, so
 * sending the same array again is recognised by the server as a retry
 * (idempotent, see docs/semantics.md).
 */
#ifndef EVSTORE_CLIENT_H
#define EVSTORE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "evstore/errors.h"
#include "evstore/projection.h"
#include "evstore/read.h"
#include "evstore/store.h"
#include "evstore/types.h"
#include "evstore/version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct evs_client evs_client;

#define EVS_CLIENT_DEFAULT_PORT 4815

#define EVS_CLIENT_OPTIONS_VERSION 1

typedef struct evs_client_options {
  unsigned version;        /* EVS_CLIENT_OPTIONS_VERSION */
  const char *token;       /* sent in the handshake; NULL for none */
  const char *client_name; /* shown in the server's logs; NULL = "evstore-c" */
  int connect_timeout_ms;  /* 0 = 5000 */
  int timeout_ms;          /* per request; 0 = 30000, -1 = no limit */
  int reconnect;           /* 1: a call after a connection loss reconnects */
} evs_client_options;

#define EVS_CLIENT_OPTIONS_INIT                                                \
  { EVS_CLIENT_OPTIONS_VERSION, NULL, NULL, 0, 0, 1 }

/*
 * Connects to `address` ("HOST:PORT", "[IPv6]:PORT", or "HOST" for port
 * 4815) and performs the handshake. `opts` may be NULL. On success *out is
 * the caller's, to close with evs_client_close().
 * Errors: EVS_EINVAL, EVS_ECONN (cannot connect), EVS_ETIMEDOUT, EVS_EAUTH
 * (token missing or unknown), EVS_EPROTO (not an evstored, or an
 * unsupported protocol version), EVS_EBUSY (server at its connection
 * limit), EVS_ENOMEM.
 */
EVS_EXTERN int evs_client_connect(evs_client **out, const char *address,
                                  const evs_client_options *opts);

/*
 * Closes the connection and frees the client. Accepts NULL. Every other
 * call on it, every iterator and every subscription made from it must have
 * returned or been freed first.
 */
EVS_EXTERN void evs_client_close(evs_client *c);

/* The calling thread's detail message for its last failed client call, or
 * "". Valid until the thread's next client call. */
EVS_EXTERN const char *evs_client_last_error(void);

/* Static descriptions of a code (the same texts as evs_strerror and
 * evs_err_name of the embedded library, usable without it). */
EVS_EXTERN const char *evs_client_strerror(int code);
EVS_EXTERN const char *evs_client_err_name(int code);

/*
 * Round trip to the server. *head (may be NULL) receives the last position
 * of $all.
 */
EVS_EXTERN int evs_client_ping(evs_client *c, uint64_t *head);

/* The limits the server announced in its handshake. */
typedef struct evs_client_limits {
  uint64_t max_frame;      /* bytes of one request frame */
  uint64_t max_events;     /* events of one append */
  uint64_t max_event_size; /* data + metadata bytes of one event */
} evs_client_limits;

/* Fills *out with the limits of the current connection. */
EVS_EXTERN void evs_client_get_limits(evs_client *c, evs_client_limits *out);

/*
 * The head of $all (*position, 0 when the log is empty) and the commit time
 * of the event there (*timestamp_ns, 0 when empty), read together; either
 * may be NULL. Needs no grant. Errors: EVS_EPROTO from a server that
 * predates this operation ("unknown op"), EVS_ECONN, EVS_ETIMEDOUT.
 */
EVS_EXTERN int evs_client_head(evs_client *c, uint64_t *position,
                               int64_t *timestamp_ns);

/*
 * Appends `count` events to `stream` atomically, with the expected-version
 * check of evs_append() (EVS_EXPECT_ANY, EVS_EXPECT_NO_STREAM,
 * EVS_EXPECT_EXISTS or a version). Returns after the server committed.
 * Events whose id is all zero get a UUIDv7, written back into `events`.
 * *out (may be NULL) receives the versions, positions and commit time;
 * out->idempotent is 1 when the server had already stored these events (a
 * retry). On EVS_EWRONGVERSION, out->actual_version holds the stream's
 * version.
 * Errors: those of evs_append() (EVS_EWRONGVERSION, EVS_EIDCONFLICT,
 * EVS_ESTREAMDELETED, EVS_EBADNAME, EVS_ETOOLARGE...), EVS_EAUTH, and
 * EVS_ECONN / EVS_ETIMEDOUT — in those two cases the append may or may not
 * have happened: retry with the same `events` to find out safely.
 */
EVS_EXTERN int evs_client_append(evs_client *c, const char *stream,
                                 int64_t expected, evs_event_data *events,
                                 size_t count, evs_append_result *out);

/*
 * Appends to several streams atomically (evs_append_multi()). Each part's
 * result is filled in; on failure *failed_part (may be NULL) names the
 * part that failed.
 */
EVS_EXTERN int evs_client_append_multi(evs_client *c, evs_append_part *parts,
                                       size_t nparts, size_t *failed_part);

/*
 * evs_append_at() over the wire (an import): appends like
 * evs_client_append_multi(), committed with `timestamp_ns` instead of the
 * current time, which must not be older than the commit time of the head
 * of the log (EVS_EINVAL otherwise). The token needs a write grant on every
 * part's stream. Errors: those of evs_client_append_multi(), and
 * EVS_EPROTO from a server that predates it.
 */
EVS_EXTERN int evs_client_append_at(evs_client *c, evs_append_part *parts,
                                    size_t nparts, int64_t timestamp_ns,
                                    size_t *failed_part);

/*
 * Pipelined appends from one thread: evs_client_append_send() sends the
 * append and returns at once with a ticket; evs_client_append_wait() waits
 * for that append's reply and frees the ticket. Wait for every ticket
 * exactly once. `events` and the bytes it points to are only read during
 * the send call. Appends sent on one client are committed in the order
 * they were sent. Keep the number of tickets not yet waited for bounded
 * (hundreds, not millions): the server stops reading a connection whose
 * replies are not read.
 */
EVS_EXTERN int evs_client_append_send(evs_client *c, const char *stream,
                                      int64_t expected, evs_event_data *events,
                                      size_t count, uint64_t *ticket);
EVS_EXTERN int evs_client_append_wait(evs_client *c, uint64_t ticket,
                                      evs_append_result *out);

/* ---- reads -------------------------------------------------------------- */

typedef struct evs_client_iter evs_client_iter;

/*
 * Reads a stream (opts as for evs_read_stream(); NULL for forward from
 * the start). The iterator fetches pages from the server and asks for the
 * next page before the caller has consumed the current one. *out is the
 * caller's; free it with evs_client_iter_free().
 * Errors (here or from evs_client_iter_next()): EVS_ENOSTREAM,
 * EVS_ESTREAMDELETED, EVS_EBADNAME, EVS_EAUTH, EVS_ECONN, EVS_ETIMEDOUT.
 */
EVS_EXTERN int evs_client_read_stream(evs_client_iter **out, evs_client *c,
                                      const char *stream,
                                      const evs_read_options *opts);

/* Reads $all with filters (evs_read_all()); opts may be NULL. */
EVS_EXTERN int evs_client_read_all(evs_client_iter **out, evs_client *c,
                                   const evs_read_all_options *opts);

/*
 * Returns 1 and sets *ev to the next event, 0 at the end, or a negative
 * code. *ev and its slices stay valid until the next call or
 * evs_client_iter_free(). ev->stream_id is 0 (not part of the protocol).
 */
EVS_EXTERN int evs_client_iter_next(evs_client_iter *it, const evs_event **ev);

/* $all reads: the position of the last event the server considered
 * (delivered or skipped by a filter), to resume from. Stream reads: the
 * version of the last event returned (-1 before the first). */
EVS_EXTERN int64_t evs_client_iter_checkpoint(const evs_client_iter *it);

/* Frees the iterator. Accepts NULL. */
EVS_EXTERN void evs_client_iter_free(evs_client_iter *it);

/*
 * Fills *out like evs_stream_info_get(); out->custom is malloc'd (release
 * with evs_client_stream_info_clear()). EVS_ENOSTREAM when the server
 * never saw the stream.
 */
EVS_EXTERN int evs_client_stream_info(evs_client *c, const char *stream,
                                      evs_stream_info *out);
EVS_EXTERN void evs_client_stream_info_clear(evs_stream_info *info);

/* Called for each listed stream; `name` is not NUL-terminated and, like
 * info, valid during the call only. Return non-zero to stop. */
typedef int (*evs_client_stream_cb)(const char *name, size_t name_len,
                                    const evs_stream_info *info, void *payload);

/*
 * Lists streams whose name starts with `prefix` (NULL for all), in byte
 * order, after `after` (NULL to start at the first), fetching pages as
 * needed, until the end or until `cb` returns non-zero (then that value is
 * returned). info carries version, last_position, last_timestamp_ns, flags
 * and, from a server that sends them, the metadata (max_count, max_age_sec,
 * truncate_before, custom: borrowed, valid during the call only).
 */
EVS_EXTERN int evs_client_list_streams(evs_client *c, const char *prefix,
                                       const char *after, int include_deleted,
                                       evs_client_stream_cb cb, void *payload);

/*
 * evs_read_event() over the wire: a copy of the event at `position`,
 * whatever its visibility (a low-level lookup). *out is the caller's;
 * release it with evs_client_event_free(). The token needs a read grant on
 * the event's stream. Errors: EVS_ENOTFOUND, EVS_EAUTH, EVS_EPROTO from a
 * server that predates it, connection errors.
 */
EVS_EXTERN int evs_client_read_event(evs_client *c, uint64_t position,
                                     evs_event **out);

/* evs_find_event_id() over the wire: *position of the event with id `id`.
 * Errors as for evs_client_read_event(). */
EVS_EXTERN int evs_client_find_event_id(evs_client *c, const evs_uuid *id,
                                        uint64_t *position);

/* Frees an event from evs_client_read_event(). Accepts NULL. */
EVS_EXTERN void evs_client_event_free(evs_event *ev);

/*
 * evs_state_fold() run by the server: the "stream-state" fold of
 * `stream` as of a position and/or a time (0 = now). *out is compact JSON
 * text to release with evs_client_state_free(); *version (may be NULL) is
 * the version of the last event folded. Errors: those of evs_state_fold()
 * (EVS_EINVAL when the stream is unfoldable: evs_client_last_error() names
 * the event), EVS_ETOOLARGE (a state larger than a frame), EVS_EAUTH,
 * EVS_EPROTO from a server that predates it, connection errors.
 */
EVS_EXTERN int evs_client_state(evs_client *c, const char *stream,
                                uint64_t as_of_position, int64_t as_of_ns,
                                char **out, int64_t *version);
EVS_EXTERN void evs_client_state_free(char *json);

/* evs_stream_set_metadata() over the wire. */
EVS_EXTERN int evs_client_set_metadata(evs_client *c, const char *stream,
                                       const evs_stream_metadata *md);

/* evs_stream_delete() over the wire (hard = 1 for a tombstone). */
EVS_EXTERN int evs_client_delete(evs_client *c, const char *stream,
                                 int64_t expected, int hard);

/* ---- administration ----------------------------------------------------- */

/*
 * evs_store_stats() of the server's store, with the full scan (byte and
 * compression totals). The token needs a read grant on every stream
 * ("read:*"). Errors: EVS_EAUTH, EVS_EPROTO from a server that predates it,
 * connection errors.
 */
EVS_EXTERN int evs_client_stats(evs_client *c, evs_stats *out);

/*
 * evs_store_verify() of the server's store. `cb` (may be NULL) is called
 * as by evs_store_verify(): for each problem found, and with `problem`
 * NULL for progress; a non-zero return stops waiting (the server then
 * stops the check) and is returned. The server sends at most 10000
 * problems; out->errors counts them all. Runs on a connection of its own
 * (the server sends progress at least every second, so the client's
 * timeout applies between two frames, not to the whole check). The token
 * needs "read:*". Errors: EVS_EAUTH, EVS_EBUSY (the server runs too many
 * verify/replay operations), EVS_EPROTO from a server that predates it,
 * connection errors, and those of evs_store_verify().
 */
EVS_EXTERN int evs_client_verify(evs_client *c, evs_verify_report *out,
                                 evs_verify_cb cb, void *payload);

/* Progress of a long operation: `done` of `total` (0 = unknown). Return
 * non-zero to stop waiting. */
typedef int (*evs_client_progress_cb)(uint64_t done, uint64_t total,
                                      void *payload);

/*
 * Rebuilds built-in projection `projection` ("stream-state", "counts", see
 * evs_proj_builtin()) in the views environment of the server's store, from
 * position 0 up to the head, blue/green when it exists already (as
 * evstore-cli replay does for a local store). `cb` (may be NULL) gets the
 * progress; stopping early does not stop the rebuild on the server. On
 * success (and on EVS_EHANDLER) *out (may be NULL) holds the projection's
 * generation, checkpoint, head and events_applied; on EVS_EHANDLER also
 * failed, error_position and error. Runs on a connection of its own. The
 * token needs "rw:*". Errors: EVS_ENOTFOUND (unknown projection),
 * EVS_EHANDLER, EVS_EBUSY (a replay is running), EVS_EAUTH, EVS_EPROTO from
 * a server that predates it, connection and storage errors.
 */
EVS_EXTERN int evs_client_replay(evs_client *c, const char *projection,
                                 evs_client_progress_cb cb, void *payload,
                                 evs_proj_status *out);

/* ---- subscriptions ------------------------------------------------------ */

typedef struct evs_client_sub evs_client_sub;

/* "From the beginning" for evs_client_sub_options.from. */
#define EVS_CLIENT_FROM_START INT64_MIN

#define EVS_CLIENT_SUB_OPTIONS_VERSION 1

typedef struct evs_client_sub_options {
  unsigned version;          /* EVS_CLIENT_SUB_OPTIONS_VERSION */
  const char *stream;        /* one stream; NULL for $all */
  const char *stream_prefix; /* $all filters, as in evs_read_all_options */
  const char *category;
  const char *event_type;
  uint32_t group_size;   /* consumer group: member group_member of */
  uint32_t group_member; /* group_size (streams split by hash) */
  int64_t from;          /* checkpoint, exclusive: a position ($all) or
                            a version (stream); EVS_CLIENT_FROM_START */
  int from_end;          /* 1: only events committed from now on */
  uint32_t batch;        /* events per server push; 0 = server default */
} evs_client_sub_options;

#define EVS_CLIENT_SUB_OPTIONS_INIT                                            \
  {                                                                            \
    EVS_CLIENT_SUB_OPTIONS_VERSION, NULL, NULL, NULL, NULL, 0, 0,              \
        EVS_CLIENT_FROM_START, 0, 0                                            \
  }

/*
 * Subscribes on a new connection to the server of `c` (same address and
 * token): the events already stored after `from` (catch-up), then new ones
 * as they are committed (live). `c` is only used to make the connection;
 * the subscription does not use it afterwards (it may be closed). *out is
 * the caller's; close it with evs_client_sub_close().
 * Errors: those of evs_client_connect(), EVS_EAUTH, EVS_EBUSY (too many
 * subscriptions), EVS_EBADNAME.
 */
EVS_EXTERN int evs_client_subscribe(evs_client_sub **out, evs_client *c,
                                    const evs_client_sub_options *opts);

/*
 * Pull API: waits up to `timeout_ms` (-1 = forever, 0 = poll) for the next
 * event. Returns 1 with *ev (valid until the next call), 0 when the time
 * ran out, or a negative code when the subscription ended: the server
 * ended it (EVS_ESTREAMDELETED for a tombstoned stream...), or it could not
 * resume (EVS_EAUTH). A lost connection is not an error: the subscription
 * reconnects and resumes from its checkpoint (at-least-once: after a
 * reconnect, events after the checkpoint are delivered, possibly again if
 * the checkpoint lagged).
 */
EVS_EXTERN int evs_client_sub_next(evs_client_sub *s, const evs_event **ev,
                                   int timeout_ms);

/*
 * Waits up to `timeout_ms` (-1 = forever, 0 = poll) until at least one of
 * the n subscriptions has something for evs_client_sub_next(): an event
 * already received, bytes on its connection, a connection to resume, or
 * its end. Sets ready[i] to 1 for each such subscription (0 for the
 * others) and returns how many there are, 0 when the time ran out, or
 * EVS_EINVAL / EVS_ENOMEM / EVS_ECONN (poll failed). Then
 * evs_client_sub_next(subs[i], &ev, 0) for each ready one until it returns
 * 0 reads what came without blocking (a frame already begun is read to its
 * end). With it one thread serves many subscriptions: a commit wakes that
 * thread, not one thread per subscription.
 */
EVS_EXTERN int evs_client_sub_wait(evs_client_sub *const *subs, size_t n,
                                   int timeout_ms, unsigned char *ready);

/* Called by evs_client_sub_run() for each event; non-zero stops the run and
 * is returned. */
typedef int (*evs_client_event_cb)(const evs_event *ev, void *payload);

/*
 * Callback API: calls `cb` for every event until `cb` returns non-zero
 * (returned), the subscription ends (its error is returned), or `idle_ms`
 * passes without an event (-1 = never; returns 0).
 */
EVS_EXTERN int evs_client_sub_run(evs_client_sub *s, evs_client_event_cb cb,
                                  void *payload, int idle_ms);

/*
 * The checkpoint to persist for resuming (evs_client_sub_options.from):
 * for $all, the position up to which every event was delivered or skipped
 * by a filter; for a stream, the version of the last event delivered (-1
 * before the first).
 */
EVS_EXTERN int64_t evs_client_sub_checkpoint(const evs_client_sub *s);

/* 1 once the subscription reached the end of the log at least once (later
 * events are live). */
EVS_EXTERN int evs_client_sub_caught_up(const evs_client_sub *s);

/* Number of reconnections so far. */
EVS_EXTERN unsigned evs_client_sub_reconnects(const evs_client_sub *s);

/* Unsubscribes, closes the subscription's connection, frees it. Accepts
 * NULL. */
EVS_EXTERN void evs_client_sub_close(evs_client_sub *s);

#ifdef __cplusplus
}
#endif

#endif /* EVSTORE_CLIENT_H */
