/*
 * Helpers for the evstored integration tests: start the real server (the
 * binary at EVSTORED_PATH) on an ephemeral loopback port with a fresh data
 * directory, talk to it with the client library or raw frames, stop or
 * kill it. Every helper asserts on failure (Criterion), and the server
 * dies with the test process (PR_SET_PDEATHSIG).
 */
#ifndef EVSTORE_TEST_SRVUTIL_H
#define EVSTORE_TEST_SRVUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "evstore/client.h"
#include "evstore/evstore.h"
#include "protocol/proto.h"

typedef struct srv {
  pid_t pid;
  char *dir; /* temp directory: data/, ports, log, tokens */
  char data[512];
  char addr[64]; /* 127.0.0.1:PORT of the protocol listener */
  char http[64]; /* 127.0.0.1:PORT of /health and /metrics */
  char log[512];
  char *args[48]; /* extra arguments, kept for restarts */
  int nargs;
  int same_port; /* restart on the current protocol port */
} srv;

/*
 * Starts evstored with --durability `durability` (NULL = nosync) and extra
 * arguments (NULL-terminated list, may be NULL). Waits until it listens.
 */
srv *srv_start(const char *durability, const char *const *extra);
/* Starts it again on the same data directory (new ports). */
void srv_restart(srv *s);
/* The same, listening on the protocol port it had (for clients that
 * reconnect by themselves). */
void srv_restart_same_port(srv *s);
/* SIGTERM, then waits; returns the exit status (or -1 on a signal). */
int srv_stop(srv *s);
/* SIGKILL and reap. */
void srv_kill9(srv *s);
/* 1 if the process is still running. */
int srv_alive(srv *s);
/* Stops the server if running, removes the directory, frees. */
void srv_free(srv *s);
/* Resident memory of the server in KiB: all of it, and the anonymous part
 * (heap and stacks; without the pages of the store's memory map). */
long srv_rss_kb(srv *s);
long srv_rss_anon_kb(srv *s);
/* Writes `text` to <dir>/name and returns the path (static per call). */
const char *srv_write_file(srv *s, const char *name, const char *text);
/* Creates the directory and returns a path inside it (for files made
 * before srv_start, such as a tokens file). */
char *srv_tmpdir(void);

/* A connected client (asserts). token may be NULL. */
evs_client *srv_client(srv *s, const char *token);

/* Raw sockets. */
int raw_connect(srv *s);
void raw_send(int fd, const void *p, size_t n);
/* Sends a request frame (rid set by the caller). */
void raw_send_req(int fd, const evs__proto_request *q);
/* Reads a frame within timeout_ms: 1 with *rep and *body (free it), 0 on
 * timeout, -1 on EOF or error. */
int raw_read(int fd, int timeout_ms, evs__proto_reply *rep, uint8_t **body);
/* Says hello (token may be NULL) and asserts the reply's code. */
void raw_hello(int fd, const char *token, int expect_code);
/* 1 when the peer closed the connection within timeout_ms (reads and
 * discards frames meanwhile). */
int raw_wait_closed(int fd, int timeout_ms);

/* A minimal HTTP GET of path on the server's http listener; returns the
 * status and a malloc'd body. */
int http_get(srv *s, const char *path, char **body);

/* Appends n events of `type` with data "<stream>#<k>"; asserts success. */
evs_append_result cl_append_n(evs_client *c, const char *stream,
                              int64_t expected, size_t n, const char *type);

/* Sleeps ms milliseconds. */
void ms_sleep(unsigned ms);
uint64_t mono_ms(void);

#endif /* EVSTORE_TEST_SRVUTIL_H */
