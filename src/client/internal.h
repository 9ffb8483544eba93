/*
 * evstore client — private declarations shared by the files of src/client/.
 */
#ifndef EVSTORE_CLIENT_INTERNAL_H
#define EVSTORE_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "evstore/client.h"
#include "protocol/proto.h"

/* ---- errors (client.c) -------------------------------------------------- */

/* Sets the thread's detail message; returns code. */
int evs__cl_err(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void evs__cl_clear_error(void);

#ifdef __clang_analyzer__
/* The static analyzer (scripts/lint.sh) does not follow calls to variadic
 * functions, so it cannot see that evs__cl_err() returns `code`; it would
 * then follow `return evs__cl_err(EVS_E..., ...)` as if it could return 0
 * and report the out parameters an error return leaves unset. This model
 * states the fact. It exists only for the analyzer; `code` is evaluated
 * twice, which is harmless for the constants and plain variables passed as
 * codes. */
#define evs__cl_err(code, ...) ((evs__cl_err)((code), __VA_ARGS__), (code))
#endif

/* ---- sockets (net.c) ---------------------------------------------------- */

/* Monotonic milliseconds. */
uint64_t evs__cl_now_ms(void);
/* Deadline helpers: timeout_ms < 0 means none (UINT64_MAX). */
uint64_t evs__cl_deadline(int timeout_ms);
int evs__cl_remaining(uint64_t deadline);

/* Connects (non-blocking socket) to host:port before the deadline.
 * Returns an fd or a negative EVS code. */
int evs__cl_connect(const char *host, const char *port, uint64_t deadline);
/* Writes all bytes. 0, EVS_ECONN or EVS_ETIMEDOUT. */
int evs__cl_write_all(int fd, const void *p, size_t n, uint64_t deadline);
/*
 * Reads one frame: waits for its first byte until `deadline` (returns
 * EVS_ETIMEDOUT with nothing consumed when none came), then reads the rest
 * within `body_deadline`. On success *body is malloc'd. A frame longer
 * than max_len is EVS_EPROTO.
 */
int evs__cl_read_frame(int fd, uint32_t max_len, uint64_t deadline,
                       uint64_t body_deadline, uint8_t **body, uint32_t *len);

/* Splits an address into host and port ("4815" when absent). */
int evs__cl_split_address(const char *address, char *host, size_t hostlen,
                          char *port, size_t portlen);

/* A UUIDv7 in out. */
void evs__cl_uuid_v7(uint8_t out[16]);

/* ---- the client (client.c) ---------------------------------------------- */

/* A request waiting for its reply. */
typedef struct evs__cl_slot {
  struct evs__cl_slot *next;
  uint64_t rid;
  uint64_t gen; /* connection generation it was sent on */
  int done;
  int abandoned; /* nobody waits: free on completion */
  int err;       /* connection-level failure */
  uint8_t *body; /* the reply frame body (malloc'd) */
  uint32_t len;
} evs__cl_slot;

struct evs_client {
  char host[256];
  char port[16];
  char *token;
  char *name;
  int connect_timeout_ms;
  int timeout_ms;
  int reconnect;

  pthread_mutex_t mu; /* everything below */
  pthread_cond_t cv;
  pthread_mutex_t send_mu; /* one writer on the socket at a time */
  int fd;                  /* -1 when not connected */
  uint64_t gen;            /* bumped on every (re)connection */
  int gen_broken;          /* the current connection failed */
  int reader_active;       /* a thread is reading the socket */
  uint64_t next_rid;
  evs__cl_slot *slots;
  uint32_t max_frame; /* the server's request limit */
  uint32_t max_reply; /* what we accept from the server */
  uint32_t max_events;
  uint32_t max_event_size;
};

/*
 * Opens a connection and performs the handshake: the connected fd and the
 * server's limits, or a negative code. Used by the client and by
 * subscriptions.
 */
int evs__cl_open(const char *host, const char *port, const char *token,
                 const char *name, int connect_timeout_ms, int *fd_out,
                 evs__proto_reply *hello_out, uint8_t **hello_body);

/*
 * Sends a frame built by `build` (which writes the request with the rid it
 * is given into the buffer) and registers a slot for its reply. On success
 * *slot_out is the caller's until evs__cl_wait() or evs__cl_abandon().
 */
typedef int (*evs__cl_build_fn)(evs__buf *b, uint64_t rid, void *arg);
int evs__cl_send(evs_client *c, evs__cl_build_fn build, void *arg,
                 evs__cl_slot **slot_out);
/*
 * Waits for the slot's reply (reading the socket for every waiting thread
 * when no one else does), decodes it into *rep (slices into *body, which
 * becomes the caller's to free) and frees the slot. Returns 0 when a reply
 * arrived (rep->code may be an error), or EVS_ECONN / EVS_ETIMEDOUT /
 * EVS_EPROTO.
 */
int evs__cl_wait(evs_client *c, evs__cl_slot *slot, evs__proto_reply *rep,
                 uint8_t **body);
/* Gives a slot up: its reply will be dropped. */
void evs__cl_abandon(evs_client *c, evs__cl_slot *slot);
/* Send and wait in one call; on success the reply's code is returned. */
int evs__cl_call(evs_client *c, evs__cl_build_fn build, void *arg,
                 evs__proto_reply *rep, uint8_t **body);
/* Records the reply's error as the thread's detail; returns rep->code. */
int evs__cl_reply_error(const evs__proto_reply *rep);

/* Converts a recorded protocol event into an evs_event (slices shared). */
void evs__cl_to_event(const evs__proto_event *pe, evs_event *ev);

#endif /* EVSTORE_CLIENT_INTERNAL_H */
