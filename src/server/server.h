/*
 * evstored — the server's private declarations.
 *
 * Names: evsd_ for the server's own functions and types (a program, not a
 * library: nothing here is exported).
 *
 * Threads:
 *  - the loop thread (libuv) owns every socket, connection and
 *    subscription, decodes requests and sends frames;
 *  - two submitter threads hand appends to the store (evs_append_async
 *    validates and compresses in its caller); the store's writer thread
 *    commits them in groups and calls back; completions go back to the
 *    loop through a mutex-protected queue and uv_async_send;
 *  - libuv's thread pool runs reads, stream info, listings, metadata,
 *    deletes and subscription batches (uv_queue_work, called from the loop
 *    thread only), and encodes their reply frames;
 *  - libmicrohttpd's thread serves /health and /metrics from atomics and
 *    evs_store_stats().
 */
#ifndef EVSTORE_SERVER_H
#define EVSTORE_SERVER_H

#include <pthread.h>
#include <stdint.h>
#include <uv.h>

#include "evstore/evstore.h"
#include "protocol/proto.h"
#include "store/internal.h"

/* ---- configuration (config.c) ------------------------------------------- */

typedef struct evsd_config {
  char *data_dir;
  char *listen;      /* HOST:PORT */
  char *http;        /* HOST:PORT, or "off" */
  char *tokens_file; /* NULL = no authentication */
  char *port_file;   /* NULL = none */
  evs_durability durability;
  int allow_remote;
  uint64_t map_size;
  uint32_t max_frame;
  uint32_t max_events;
  uint32_t max_event_size;
  uint32_t max_connections;
  uint32_t max_inflight;
  uint32_t max_subscriptions;
  uint32_t idle_timeout_s; /* 0 = never */
  uint64_t output_soft;
  uint64_t output_hard;
  uint32_t output_stall_timeout_s;
  uint32_t page_events;
  uint32_t page_bytes;
  uint32_t threads;
  uint32_t slow_commit_ms;
  int log_debug;
} evsd_config;

/*
 * Fills *cfg from defaults, then EVSTORE_* environment variables, then
 * argv. Returns 0, 1 when --help or --version was printed (exit 0), or -1
 * after printing an error (exit 2).
 */
int evsd_config_parse(evsd_config *cfg, int argc, char **argv);
void evsd_config_free(evsd_config *cfg);

/* Splits "HOST:PORT" / "[V6]:PORT" into a socket address. 0 or -1. */
int evsd_parse_addr(const char *hostport, struct sockaddr_storage *out,
                    char *err, size_t errlen);
/* 1 if the address is a loopback address (127.0.0.0/8, ::1). */
int evsd_addr_is_loopback(const struct sockaddr_storage *ss);
/* Formats an address as HOST:PORT (IPv6 as [HOST]:PORT). */
void evsd_addr_format(const struct sockaddr *sa, char *out, size_t len);

/* ---- logging (log.c) ---------------------------------------------------- */

enum {
  EVSD_DEBUG = 0,
  EVSD_INFO,
  EVSD_WARN,
  EVSD_ERROR
};

void evsd_log_init(int debug);
/*
 * Writes one line to stderr: "<UTC time> level=<level> <fmt...>". By
 * convention fmt is a list of key=value pairs starting with event=NAME
 * (logfmt); use evsd_q() for values that may contain spaces or quotes.
 * Thread-safe; each line is written with one write().
 */
void evsd_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Quotes `s` (up to `len` bytes) for a logfmt value into out. */
const char *evsd_q(char *out, size_t outlen, const char *s, size_t len);

/* ---- authentication (auth.c) -------------------------------------------- */

typedef struct evsd_grant {
  char *prefix; /* "" with all = 1 for "*" */
  size_t len;
  int all;
  int read;
  int write;
} evsd_grant;

typedef struct evsd_token {
  char *token;
  size_t len;
  char *label; /* "line<N>" of the tokens file, for logs */
  evsd_grant *grants;
  size_t ngrants;
} evsd_token;

typedef struct evsd_auth {
  evsd_token *tokens;
  size_t ntokens;
} evsd_auth;

/* Loads a tokens file (docs/protocol.md, "Authentication"). */
int evsd_auth_load(evsd_auth **out, const char *path, char *err, size_t errlen);
void evsd_auth_free(evsd_auth *auth);
/* Finds a token (constant time in the token's bytes); NULL if unknown. */
const evsd_token *evsd_auth_find(const evsd_auth *auth, evs_slice token);
/* 1 if `tok` may read (write = 0) or write (write = 1) the stream. A NULL
 * token (no authentication configured) may do everything. */
int evsd_auth_stream(const evsd_token *tok, int write, evs_slice stream);
/* 1 if `tok` may read everything a $all read or listing confined by
 * `prefix` and/or `category` (either may be empty) can return. */
int evsd_auth_scope(const evsd_token *tok, evs_slice prefix,
                    evs_slice category);
/* 1 if `tok` may read (write = 0) or write (write = 1) every stream: a
 * grant on "*". */
int evsd_auth_all(const evsd_token *tok, int write);

/* ---- metrics (metrics.c) ------------------------------------------------ */

#define EVSD_HIST_MAX 20

typedef struct evsd_hist {
  int nb;
  double bounds[EVSD_HIST_MAX]; /* upper bounds, ascending; +Inf implied */
  uint64_t counts[EVSD_HIST_MAX + 1];
  uint64_t count;
  double sum; /* loop thread only writes */
} evsd_hist;

typedef struct evsd_metrics {
  uint64_t append_ok, append_err, events_appended, bytes_appended;
  uint64_t append_idempotent;
  uint64_t reads_stream, reads_all, reads_info, reads_list;
  uint64_t read_events;
  uint64_t writes_meta, writes_delete;
  uint64_t conns_total, conns_rejected, conns_open;
  uint64_t subs_open, sub_events_sent, sub_lag_max, sub_lag_sum;
  uint64_t sub_shared_reads, sub_shared_members;
  uint64_t proto_errors, auth_failures, slow_consumers_closed;
  uint64_t out_bytes_total, in_bytes_total;
  evsd_hist commit_latency; /* seconds */
  evsd_hist group_size;     /* appends per commit */
  pthread_mutex_t hist_mu;  /* the histograms */
} evsd_metrics;

void evsd_metrics_init(evsd_metrics *m);
void evsd_metrics_destroy(evsd_metrics *m);
void evsd_hist_observe(evsd_metrics *m, evsd_hist *h, double v);
/* Renders the Prometheus text exposition into *b. */
struct evsd_server;
void evsd_metrics_render(struct evsd_server *srv, evs__buf *b);

#define EVSD_ADD(field, n) __atomic_add_fetch(&(field), (n), __ATOMIC_RELAXED)
#define EVSD_SUB(field, n) __atomic_sub_fetch(&(field), (n), __ATOMIC_RELAXED)
#define EVSD_GET(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)
#define EVSD_SET(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELAXED)

/* ---- server, connections, operations ------------------------------------ */

typedef struct evsd_conn evsd_conn;
typedef struct evsd_sub evsd_sub;
typedef struct evsd_append evsd_append;
typedef struct evsd_job evsd_job;

/* Threads that hand appends to the store (dispatch.c). */
#define EVSD_SUBMITTERS 2

typedef struct evsd_submitter {
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  evsd_append *head, *tail;
  int stop;
  int started;
  struct evsd_server *srv;
} evsd_submitter;

typedef struct evsd_server {
  uv_loop_t *loop;
  evsd_config *cfg;
  evs_store *store;
  evsd_auth *auth; /* NULL: no authentication */
  evsd_metrics metrics;
  void *http; /* struct MHD_Daemon * */

  uv_tcp_t listener;
  uv_async_t done_async;   /* append completions */
  uv_async_t commit_async; /* "the store committed" */
  uv_signal_t sig_int, sig_term;
  uv_timer_t tick;      /* once a second: timeouts, gauges, shutdown */
  uv_async_t job_async; /* a long operation has progress to send */

  pthread_mutex_t done_mu;
  evsd_append *done_head, *done_tail;
  evsd_submitter submitters[EVSD_SUBMITTERS];

  evs__commit_listener commit_listener;
  uint64_t head; /* committed head (atomic) */

  evsd_conn *conns; /* all open connections */
  uint32_t nconns;
  uint64_t next_conn_id;
  uint64_t pending; /* appends, works and sub reads in flight */

  /* long operations (jobs.c), loop thread */
  evsd_job *jobs;
  uint32_t njobs;
  int replay_running;
  /* the views environment of the store, opened by the first replay and
   * closed after the loop ends */
  pthread_mutex_t views_mu;
  evs_views *views;

  int store_failed; /* last append failed with an I/O-ish error */
  int stopping;
  uint64_t stop_ms;
  int handles_closed;
  char listen_addr[80];
  char http_addr[80];
} evsd_server;

struct evsd_conn {
  uv_tcp_t tcp;
  evsd_server *srv;
  evsd_conn *prev, *next;
  uint64_t id;
  char peer[80];
  int refs;    /* 1 for the handle + 1 per operation in flight */
  int closing; /* uv_close called */
  int handshaken;
  int close_after_flush; /* close when the output is written */
  uint64_t close_deadline_ms;
  const evsd_token *token;
  char client[64];

  /* input */
  uint8_t *in;
  size_t in_off, in_len, in_cap; /* unread bytes: in[in_off, in_len) */
  uint64_t skip;                 /* bytes of an oversized frame still to drop */
  int reading;

  /* output */
  uint64_t out_bytes;          /* handed to uv_write, not yet written */
  uint64_t over_soft_since_ms; /* 0 when under the soft limit */
  uint64_t last_write_ms;

  uint32_t inflight;   /* requests started and not replied */
  uint64_t last_rx_ms; /* last frame received */
  evsd_sub *subs;
  uint32_t nsubs;
};

/* Time in ms from the loop's clock. */
static inline uint64_t evsd_now_ms(evsd_server *srv) {
  return uv_now(srv->loop);
}

/* server.c */
int evsd_server_run(evsd_config *cfg, evs_store *store, evsd_auth *auth);
void evsd_server_pending_done(evsd_server *srv);

/* conn.c */
void evsd_conn_accept(evsd_server *srv);
/* Queues a frame (malloc'd bytes, ownership taken) on the connection. */
void evsd_conn_send(evsd_conn *c, uint8_t *data, size_t len);
/* Encodes and sends a buffer's contents (the buffer is emptied). */
void evsd_conn_send_buf(evsd_conn *c, evs__buf *b);
void evsd_conn_send_error(evsd_conn *c, evs__proto_kind kind, uint64_t rid,
                          int code, const char *message);
/* Closes now (pending output is dropped). */
void evsd_conn_close(evsd_conn *c, const char *reason);
/* Sends a goodbye frame, stops reading, closes when written (or after a
 * short grace period). */
void evsd_conn_goodbye(evsd_conn *c, int code, const char *message);
void evsd_conn_ref(evsd_conn *c);
void evsd_conn_unref(evsd_conn *c);
/* An operation of `c` finished: frees an in-flight slot, resumes reading
 * when possible. */
void evsd_conn_op_done(evsd_conn *c);
/* 1 when the connection's output is over the soft limit. */
int evsd_conn_output_full(const evsd_conn *c);
/* Resumes reading and processing buffered frames if limits allow. */
void evsd_conn_maybe_resume(evsd_conn *c);
/* Per-second checks: idle timeout, stalled output. */
void evsd_conn_tick(evsd_conn *c, uint64_t now);

/* dispatch.c: handles one decoded request of a handshaken connection. */
void evsd_dispatch(evsd_conn *c, evs__proto_request *req, const uint8_t *body,
                   size_t len);
/* Handles a frame before the handshake. */
void evsd_handshake(evsd_conn *c, evs__proto_request *req);
/* Drains append completions (loop thread). */
void evsd_appends_drain(evsd_server *srv);
/* Starts / joins the append submitter threads. */
int evsd_submitters_start(evsd_server *srv);
void evsd_submitters_stop(evsd_server *srv);

/* subs.c */
void evsd_sub_start(evsd_conn *c, const evs__proto_request *req);
/* Ends the subscription started by request `rid`: 0 or EVS_ENOTFOUND. */
int evsd_sub_stop(evsd_conn *c, uint64_t rid);
/* Cancels every subscription of a closing connection. */
void evsd_subs_cancel_all(evsd_conn *c);
/* The store committed: wake the subscriptions waiting at the end. */
void evsd_subs_on_commit(evsd_server *srv);
/* The connection's output drained: wake paused subscriptions. */
void evsd_subs_resume(evsd_conn *c);
/* Lag gauges. */
void evsd_subs_gauges(evsd_server *srv, uint64_t *nsubs, uint64_t *lag_max,
                      uint64_t *lag_sum);

/* jobs.c: verify and replay, which report progress as they run. */
void evsd_job_start(evsd_conn *c, const evs__proto_request *req);
/* Sends the progress the jobs recorded (job_async). */
void evsd_jobs_flush(evsd_server *srv);
/* Once a second: a progress frame for every job that sent none lately. */
void evsd_jobs_tick(evsd_server *srv, uint64_t now);
/* Asks the jobs of `c` (NULL: every job) to stop early where they can. */
void evsd_jobs_cancel(evsd_server *srv, const evsd_conn *c);

/* http.c */
int evsd_http_start(evsd_server *srv, const char *hostport, char *bound,
                    size_t boundlen);
void evsd_http_stop(evsd_server *srv);

#endif /* EVSTORE_SERVER_H */
