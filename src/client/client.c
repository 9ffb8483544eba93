/*
 * evstore client — connection, pipelined request/reply, and the simple
 * operations (ping, append, stream info, listing, metadata, delete).
 *
 * Pipelining: a caller sends its frame (one writer at a time, send_mu)
 * and registers a slot keyed by the frame's rid. Whoever waits and finds
 * no reader becomes the reader: it reads frames from the socket and hands
 * each to its slot until its own reply arrives, then lets another waiter
 * take over. No background thread, and any number of requests in flight.
 *
 * The socket is never closed while another thread may use it: a failure
 * shuts it down (waking the reader) and marks the generation broken; the
 * next sender closes it and reconnects, holding send_mu with no reader
 * active.
 */
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/internal.h"

/* ---- errors ------------------------------------------------------------- */

static _Thread_local char cl_detail[512];

/* The parentheses keep the analyzer's model of evs__cl_err (internal.h), a
 * function-like macro, from expanding here. */
int(evs__cl_err)(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cl_detail, sizeof cl_detail, fmt, ap);
  va_end(ap);
  return code;
}

void evs__cl_clear_error(void) {
  cl_detail[0] = '\0';
}

const char *evs_client_last_error(void) {
  return cl_detail;
}

const char *evs_client_strerror(int code) {
  return evs__proto_strerror(code);
}

const char *evs_client_err_name(int code) {
  return evs__proto_err_name(code);
}

int evs__cl_reply_error(const evs__proto_reply *rep) {
  if (rep->code == 0)
    return 0;
  return evs__cl_err(rep->code, "%.*s", (int)rep->message.len,
                     rep->message.data ? (const char *)rep->message.data : "");
}

/* ---- connection --------------------------------------------------------- */

#define EVS__CL_HELLO_RID UINT64_MAX
#define EVS__CL_PREHELLO_MAX (1u << 20)

static uint32_t reply_limit(uint64_t max_frame, uint64_t max_event_size) {
  uint64_t n = max_frame + max_event_size + (1u << 20);
  return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

int evs__cl_open(const char *host, const char *port, const char *token,
                 const char *name, int connect_timeout_ms, int *fd_out,
                 evs__proto_reply *hello, uint8_t **hello_body) {
  *fd_out = -1;
  *hello_body = NULL;
  uint64_t deadline = evs__cl_deadline(connect_timeout_ms);
  int fd = evs__cl_connect(host, port, deadline);
  if (fd < 0)
    return fd;
  evs__proto_request q;
  evs__proto_request_init(&q);
  q.op = EVS__P_HELLO;
  q.rid = EVS__CL_HELLO_RID;
  q.protocol = EVS_PROTO_VERSION;
  if (token) {
    q.token.data = token;
    q.token.len = strlen(token);
    q.has_token = 1;
  }
  q.client.data = name;
  q.client.len = strlen(name);
  evs__buf b = EVS__BUF_INIT;
  int rc = evs__proto_encode_request(&b, &q);
  if (rc == 0)
    rc = evs__cl_write_all(fd, b.data, b.len, deadline);
  evs__buf_free(&b);
  uint8_t *body = NULL;
  uint32_t len = 0;
  if (rc == 0)
    rc = evs__cl_read_frame(fd, EVS__CL_PREHELLO_MAX, deadline, deadline, &body,
                            &len);
  if (rc == 0) {
    char err[160];
    rc = evs__proto_decode_reply(hello, body, len, err, sizeof err);
    if (rc)
      rc = evs__cl_err(EVS_EPROTO, "bad hello reply: %s", err);
    else if (hello->code)
      rc = evs__cl_reply_error(hello);
    else if (hello->protocol != EVS_PROTO_VERSION)
      rc = evs__cl_err(EVS_EPROTO, "the server speaks protocol %llu",
                       (unsigned long long)hello->protocol);
  }
  if (rc) {
    free(body);
    close(fd);
    return rc;
  }
  *fd_out = fd;
  *hello_body = body;
  return 0;
}

/* Connects (again); called with send_mu and mu held, no reader active. */
static int reconnect_locked(evs_client *c) {
  if (c->fd >= 0) {
    close(c->fd);
    c->fd = -1;
  }
  int fd;
  evs__proto_reply hello;
  uint8_t *body;
  int rc = evs__cl_open(c->host, c->port, c->token, c->name,
                        c->connect_timeout_ms, &fd, &hello, &body);
  if (rc)
    return rc;
  c->fd = fd;
  c->gen++;
  c->max_frame = hello.max_frame ? (uint32_t)(hello.max_frame > UINT32_MAX
                                                  ? UINT32_MAX
                                                  : hello.max_frame)
                                 : EVS_PROTO_DEFAULT_MAX_FRAME;
  c->max_events = (uint32_t)hello.max_events;
  c->max_event_size = (uint32_t)hello.max_event_size;
  c->max_reply = reply_limit(c->max_frame, hello.max_event_size);
  free(body);
  return 0;
}

/* The connection of generation `gen` failed: wake its reader, fail its
 * requests. Called with mu held. */
static void fail_gen(evs_client *c, uint64_t gen, int code) {
  if (gen == c->gen && c->fd >= 0)
    shutdown(c->fd, SHUT_RDWR);
  if (gen == c->gen)
    c->gen_broken = 1;
  evs__cl_slot **pp = &c->slots;
  while (*pp) {
    evs__cl_slot *s = *pp;
    if (s->gen == gen && !s->done) {
      if (s->abandoned) {
        *pp = s->next;
        free(s->body);
        free(s);
        continue;
      }
      s->done = 1;
      s->err = code;
    }
    pp = &s->next;
  }
  pthread_cond_broadcast(&c->cv);
}

int evs_client_connect(evs_client **out, const char *address,
                       const evs_client_options *opts) {
  evs__cl_clear_error();
  if (out == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL out");
  *out = NULL;
  evs_client_options o = EVS_CLIENT_OPTIONS_INIT;
  if (opts) {
    if (opts->version != EVS_CLIENT_OPTIONS_VERSION)
      return evs__cl_err(EVS_EINVAL, "unknown options version %u",
                         opts->version);
    o = *opts;
  }
  evs_client *c = calloc(1, sizeof *c);
  if (c == NULL)
    return evs__cl_err(EVS_ENOMEM, "out of memory");
  int rc = evs__cl_split_address(address, c->host, sizeof c->host, c->port,
                                 sizeof c->port);
  if (rc) {
    free(c);
    return rc;
  }
  c->fd = -1;
  c->token = o.token ? strdup(o.token) : NULL;
  c->name = strdup(o.client_name ? o.client_name : "evstore-c");
  c->connect_timeout_ms = o.connect_timeout_ms ? o.connect_timeout_ms : 5000;
  c->timeout_ms = o.timeout_ms ? o.timeout_ms : 30000;
  c->reconnect = o.reconnect;
  c->next_rid = 1;
  if ((o.token && c->token == NULL) || c->name == NULL) {
    free(c->token);
    free(c->name);
    free(c);
    return evs__cl_err(EVS_ENOMEM, "out of memory");
  }
  pthread_mutex_init(&c->mu, NULL);
  pthread_mutex_init(&c->send_mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  rc = reconnect_locked(c);
  if (rc) {
    evs_client_close(c);
    return rc;
  }
  *out = c;
  return 0;
}

void evs_client_close(evs_client *c) {
  if (c == NULL)
    return;
  if (c->fd >= 0)
    close(c->fd);
  while (c->slots) {
    evs__cl_slot *s = c->slots;
    c->slots = s->next;
    free(s->body);
    free(s);
  }
  pthread_mutex_destroy(&c->mu);
  pthread_mutex_destroy(&c->send_mu);
  pthread_cond_destroy(&c->cv);
  if (c->token)
    memset(c->token, 0, strlen(c->token));
  free(c->token);
  free(c->name);
  free(c);
}

/* ---- request and reply -------------------------------------------------- */

/* 1 when no request of the current connection waits for a reply. */
static int idle(const evs_client *c) {
  for (const evs__cl_slot *s = c->slots; s; s = s->next)
    if (s->gen == c->gen && !s->done)
      return 0;
  return 1;
}

/* 1 when an idle connection has something to read: with nothing asked,
 * that can only be a goodbye or the end of the stream (an idle timeout or
 * a server shutdown). */
static int stale(int fd) {
  struct pollfd p = { fd, POLLIN, 0 };
  return poll(&p, 1, 0) > 0;
}

int evs__cl_send(evs_client *c, evs__cl_build_fn build, void *arg,
                 evs__cl_slot **slot_out) {
  *slot_out = NULL;
  evs__cl_slot *s = calloc(1, sizeof *s);
  if (s == NULL)
    return evs__cl_err(EVS_ENOMEM, "out of memory");
  pthread_mutex_lock(&c->mu);
  s->rid = c->next_rid++;
  pthread_mutex_unlock(&c->mu);
  evs__buf b = EVS__BUF_INIT;
  int rc = build(&b, s->rid, arg);
  if (rc == 0 && b.oom)
    rc = evs__cl_err(EVS_ENOMEM, "out of memory");
  if (rc) {
    evs__buf_free(&b);
    free(s);
    return rc;
  }
  pthread_mutex_lock(&c->send_mu);
  pthread_mutex_lock(&c->mu);
  if (c->fd >= 0 && !c->gen_broken && !c->reader_active && idle(c) &&
      stale(c->fd))
    c->gen_broken = 1; /* closed by the server while we were quiet */
  if (c->fd < 0 || c->gen_broken) {
    if (!c->reconnect && c->gen > 0) {
      rc = evs__cl_err(EVS_ECONN, "the connection to the server was lost");
    } else {
      /* The reader of the broken socket wakes up (it was shut down) and
       * leaves; then the socket can be closed and replaced. */
      while (c->reader_active)
        pthread_cond_wait(&c->cv, &c->mu);
      c->gen_broken = 0;
      rc = reconnect_locked(c);
      if (rc)
        c->gen_broken = 1;
    }
  }
  if (rc == 0 && b.len - 4 > c->max_frame)
    rc = evs__cl_err(EVS_ETOOLARGE,
                     "request of %zu bytes is over the server's limit of %u",
                     b.len - 4, c->max_frame);
  if (rc) {
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_unlock(&c->send_mu);
    evs__buf_free(&b);
    free(s);
    return rc;
  }
  s->gen = c->gen;
  s->next = c->slots;
  c->slots = s;
  int fd = c->fd;
  pthread_mutex_unlock(&c->mu);
  rc = evs__cl_write_all(
      fd, b.data, b.len,
      evs__cl_deadline(c->timeout_ms < 0 ? -1 : c->timeout_ms));
  evs__buf_free(&b);
  if (rc) {
    pthread_mutex_lock(&c->mu);
    fail_gen(c, s->gen, EVS_ECONN);
    pthread_mutex_unlock(&c->mu);
  }
  pthread_mutex_unlock(&c->send_mu);
  /* On a failed write the slot is done (with its error) and still ours. */
  *slot_out = s;
  return 0;
}

static void unlink_slot(evs_client *c, evs__cl_slot *s) {
  for (evs__cl_slot **pp = &c->slots; *pp; pp = &(*pp)->next) {
    if (*pp == s) {
      *pp = s->next;
      return;
    }
  }
}

/* Hands a frame read from the socket of generation `gen` to its slot.
 * Called with mu held; takes the body. */
static void deliver(evs_client *c, uint64_t gen, uint8_t *body, uint32_t len) {
  uint64_t rid = 0;
  if (!evs__proto_peek_rid(body, len, &rid) || rid == 0) {
    /* Connection-level frame: a goodbye ends every request. */
    evs__proto_reply rep;
    char err[64];
    if (evs__proto_decode_reply(&rep, body, len, err, sizeof err) == 0 &&
        rep.kind == EVS__K_GOODBYE) {
      evs__cl_err(rep.code ? rep.code : EVS_ECONN, "server: %.*s",
                  (int)rep.message.len,
                  rep.message.data ? (const char *)rep.message.data : "");
      fail_gen(c, gen, EVS_ECONN);
    }
    free(body);
    return;
  }
  for (evs__cl_slot **pp = &c->slots; *pp; pp = &(*pp)->next) {
    evs__cl_slot *s = *pp;
    if (s->rid != rid || s->gen != gen || s->done)
      continue;
    if (s->abandoned) {
      *pp = s->next;
      free(s->body);
      free(s);
      free(body);
      return;
    }
    s->body = body;
    s->len = len;
    s->done = 1;
    return;
  }
  free(body); /* a reply nobody waits for (timed out) */
}

static void timed_wait(evs_client *c, uint64_t deadline) {
  if (deadline == UINT64_MAX) {
    pthread_cond_wait(&c->cv, &c->mu);
    return;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int ms = evs__cl_remaining(deadline);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_cond_timedwait(&c->cv, &c->mu, &ts);
}

int evs__cl_wait(evs_client *c, evs__cl_slot *s, evs__proto_reply *rep,
                 uint8_t **body_out) {
  *body_out = NULL;
  uint64_t deadline = evs__cl_deadline(c->timeout_ms);
  pthread_mutex_lock(&c->mu);
  while (!s->done) {
    if (evs__cl_remaining(deadline) == 0) {
      unlink_slot(c, s);
      pthread_mutex_unlock(&c->mu);
      free(s);
      return evs__cl_err(EVS_ETIMEDOUT, "no reply from the server within %d ms",
                         c->timeout_ms);
    }
    if (c->reader_active) {
      timed_wait(c, deadline);
      continue;
    }
    if (s->gen != c->gen || c->gen_broken || c->fd < 0) {
      s->done = 1;
      s->err = EVS_ECONN;
      break;
    }
    c->reader_active = 1;
    int fd = c->fd;
    uint64_t gen = c->gen;
    uint32_t max = c->max_reply;
    pthread_mutex_unlock(&c->mu);
    uint8_t *fb = NULL;
    uint32_t fl = 0;
    int rc = evs__cl_read_frame(
        fd, max, deadline,
        evs__cl_deadline(c->timeout_ms < 0 ? 60000 : c->timeout_ms + 30000),
        &fb, &fl);
    pthread_mutex_lock(&c->mu);
    c->reader_active = 0;
    if (rc == 0)
      deliver(c, gen, fb, fl);
    else if (rc != EVS_ETIMEDOUT)
      fail_gen(c, gen, rc == EVS_EPROTO ? EVS_EPROTO : EVS_ECONN);
    pthread_cond_broadcast(&c->cv);
  }
  unlink_slot(c, s);
  pthread_mutex_unlock(&c->mu);
  int err = s->err;
  uint8_t *body = s->body;
  uint32_t len = s->len;
  free(s);
  if (err) {
    free(body);
    if (evs_client_last_error()[0] == '\0')
      evs__cl_err(err, "the connection to the server was lost");
    return err;
  }
  char msg[160];
  int rc = evs__proto_decode_reply(rep, body, len, msg, sizeof msg);
  if (rc) {
    free(body);
    return evs__cl_err(EVS_EPROTO, "malformed reply: %s", msg);
  }
  *body_out = body;
  return 0;
}

void evs__cl_abandon(evs_client *c, evs__cl_slot *s) {
  pthread_mutex_lock(&c->mu);
  if (s->done) {
    unlink_slot(c, s);
    free(s->body);
    free(s);
  } else {
    s->abandoned = 1;
  }
  pthread_mutex_unlock(&c->mu);
}

int evs__cl_call(evs_client *c, evs__cl_build_fn build, void *arg,
                 evs__proto_reply *rep, uint8_t **body) {
  *body = NULL;
  evs__cl_slot *s;
  int rc = evs__cl_send(c, build, arg, &s);
  if (rc)
    return rc;
  rc = evs__cl_wait(c, s, rep, body);
  if (rc)
    return rc;
  return evs__cl_reply_error(rep);
}

void evs__cl_to_event(const evs__proto_event *pe, evs_event *ev) {
  memset(ev, 0, sizeof *ev);
  ev->position = pe->position;
  ev->version = pe->version;
  ev->timestamp_ns = pe->timestamp_ns;
  memcpy(ev->id.bytes, pe->id, 16);
  ev->stream = pe->stream;
  ev->type = pe->type;
  ev->data = pe->data;
  ev->metadata = pe->metadata;
}

static evs_slice cs(const char *s) {
  evs_slice r = { s, s ? strlen(s) : 0 };
  return r;
}

/* ---- ping --------------------------------------------------------------- */

static int build_simple(evs__buf *b, uint64_t rid, void *arg) {
  evs__proto_request *q = arg;
  q->rid = rid;
  return evs__proto_encode_request(b, q);
}

int evs_client_ping(evs_client *c, uint64_t *head) {
  evs__cl_clear_error();
  if (c == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL client");
  evs__proto_request q;
  evs__proto_request_init(&q);
  q.op = EVS__P_PING;
  evs__proto_reply rep;
  uint8_t *body;
  int rc = evs__cl_call(c, build_simple, &q, &rep, &body);
  if (rc == 0 && head)
    *head = rep.head;
  free(body);
  return rc;
}

/* ---- append ------------------------------------------------------------- */

typedef struct append_arg {
  evs__proto_request q;
  evs__proto_part *parts;
  evs__proto_event *events;
} append_arg;

static void append_arg_free(append_arg *a) {
  free(a->parts);
  free(a->events);
}

/* Checks the caller's parts, gives ids to events without one, and fills
 * the protocol request (which points at the caller's bytes). */
static int append_prepare(append_arg *a, evs_append_part *parts, size_t nparts,
                          int multi) {
  memset(a, 0, sizeof *a);
  evs__proto_request_init(&a->q);
  if (parts == NULL || nparts == 0 || nparts > UINT32_MAX)
    return evs__cl_err(EVS_EINVAL, "no streams to append to");
  size_t total = 0;
  for (size_t p = 0; p < nparts; p++) {
    if (parts[p].stream == NULL)
      return evs__cl_err(EVS_EINVAL, "NULL stream name");
    if (parts[p].events == NULL || parts[p].count == 0)
      return evs__cl_err(EVS_EINVAL, "append to '%s' has no events",
                         parts[p].stream);
    if (parts[p].count > EVS_MAX_EVENTS_PER_APPEND ||
        total + parts[p].count > EVS_MAX_EVENTS_PER_APPEND)
      return evs__cl_err(EVS_EINVAL, "more than %u events in one call",
                         EVS_MAX_EVENTS_PER_APPEND);
    total += parts[p].count;
  }
  a->parts = calloc(nparts, sizeof *a->parts);
  a->events = calloc(total, sizeof *a->events);
  if (a->parts == NULL || a->events == NULL)
    return evs__cl_err(EVS_ENOMEM, "out of memory");
  size_t k = 0;
  for (size_t p = 0; p < nparts; p++) {
    evs_append_part *ap = &parts[p];
    memset(&ap->result, 0, sizeof ap->result);
    ap->result.actual_version = EVS_VERSION_NONE;
    evs__proto_part *pp = &a->parts[p];
    pp->stream = cs(ap->stream);
    pp->expected = ap->expected;
    pp->events = &a->events[k];
    pp->nevents = (uint32_t)ap->count;
    for (size_t i = 0; i < ap->count; i++, k++) {
      evs_event_data *e = &ap->events[i];
      if (e->type == NULL)
        return evs__cl_err(EVS_EINVAL, "event %zu of '%s' has no type", i,
                           ap->stream);
      if ((e->data == NULL && e->data_len) ||
          (e->metadata == NULL && e->metadata_len))
        return evs__cl_err(EVS_EINVAL, "NULL data with a length");
      int nil = 1;
      for (int j = 0; j < 16; j++)
        nil &= e->id.bytes[j] == 0;
      if (nil)
        evs__cl_uuid_v7(e->id.bytes);
      evs__proto_event *pe = &a->events[k];
      pe->type = cs(e->type);
      pe->has_id = 1;
      memcpy(pe->id, e->id.bytes, 16);
      pe->data.data = e->data;
      pe->data.len = e->data_len;
      pe->metadata.data = e->metadata;
      pe->metadata.len = e->metadata_len;
    }
  }
  a->q.op = EVS__P_APPEND;
  a->q.multi = multi;
  a->q.parts = a->parts;
  a->q.nparts = (uint32_t)nparts;
  return 0;
}

static int build_append(evs__buf *b, uint64_t rid, void *arg) {
  append_arg *a = arg;
  a->q.rid = rid;
  return evs__proto_encode_request(b, &a->q);
}

static void result_from(evs_append_result *r, const evs__proto_result *pr) {
  r->first_version = pr->first_version;
  r->last_version = pr->last_version;
  r->first_position = pr->first_position;
  r->last_position = pr->last_position;
  r->timestamp_ns = pr->timestamp_ns;
  r->idempotent = pr->idempotent;
}

/* Fills the parts' results from a reply. */
static int append_finish(const evs__proto_reply *rep, evs_append_part *parts,
                         size_t nparts, int multi, size_t *failed_part) {
  if (rep->code) {
    size_t fp = rep->failed_part < nparts ? (size_t)rep->failed_part : 0;
    if (failed_part)
      *failed_part = fp;
    if (rep->has_actual_version)
      parts[fp].result.actual_version = rep->actual_version;
    return evs__cl_reply_error(rep);
  }
  if (!multi) {
    result_from(&parts[0].result, &rep->result);
    return 0;
  }
  evs__proto_cursor cur;
  evs__proto_cursor_init(&cur, rep->results_raw, rep->nresults);
  for (size_t p = 0; p < nparts; p++) {
    evs__proto_result pr;
    if (evs__proto_next_result(&cur, &pr) != 1)
      return evs__cl_err(EVS_EPROTO, "the reply has %u results for %zu parts",
                         rep->nresults, nparts);
    result_from(&parts[p].result, &pr);
  }
  return 0;
}

/* Appends; with at_ns != 0 as append_at, committed at that time. */
static int append_parts(evs_client *c, evs_append_part *parts, size_t nparts,
                        int multi, size_t *failed_part, int64_t at_ns) {
  evs__cl_clear_error();
  if (failed_part)
    *failed_part = 0;
  if (c == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL client");
  append_arg a;
  int rc = append_prepare(&a, parts, nparts, multi);
  if (rc) {
    append_arg_free(&a);
    return rc;
  }
  if (at_ns) {
    a.q.op = EVS__P_APPEND_AT;
    a.q.timestamp_ns = at_ns;
    a.q.has_timestamp = 1;
  }
  evs__cl_slot *s;
  rc = evs__cl_send(c, build_append, &a, &s);
  append_arg_free(&a);
  if (rc)
    return rc;
  evs__proto_reply rep;
  uint8_t *body;
  rc = evs__cl_wait(c, s, &rep, &body);
  if (rc == 0)
    rc = append_finish(&rep, parts, nparts, multi, failed_part);
  free(body);
  return rc;
}

int evs_client_append(evs_client *c, const char *stream, int64_t expected,
                      evs_event_data *events, size_t count,
                      evs_append_result *out) {
  evs_append_part part = { stream, expected, events, count, { 0 } };
  int rc = append_parts(c, &part, 1, 0, NULL, 0);
  if (out)
    *out = part.result;
  return rc;
}

int evs_client_append_multi(evs_client *c, evs_append_part *parts,
                            size_t nparts, size_t *failed_part) {
  return append_parts(c, parts, nparts, 1, failed_part, 0);
}

int evs_client_append_at(evs_client *c, evs_append_part *parts, size_t nparts,
                         int64_t timestamp_ns, size_t *failed_part) {
  if (timestamp_ns <= 0) {
    if (failed_part)
      *failed_part = 0;
    return evs__cl_err(EVS_EINVAL, "import timestamp must be positive");
  }
  return append_parts(c, parts, nparts, 1, failed_part, timestamp_ns);
}

void evs_client_get_limits(evs_client *c, evs_client_limits *out) {
  memset(out, 0, sizeof *out);
  if (c == NULL)
    return;
  pthread_mutex_lock(&c->mu);
  out->max_frame = c->max_frame;
  out->max_events = c->max_events;
  out->max_event_size = c->max_event_size;
  pthread_mutex_unlock(&c->mu);
}

int evs_client_append_send(evs_client *c, const char *stream, int64_t expected,
                           evs_event_data *events, size_t count,
                           uint64_t *ticket) {
  evs__cl_clear_error();
  if (c == NULL || ticket == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL client or ticket");
  *ticket = 0;
  evs_append_part part = { stream, expected, events, count, { 0 } };
  append_arg a;
  int rc = append_prepare(&a, &part, 1, 0);
  if (rc) {
    append_arg_free(&a);
    return rc;
  }
  evs__cl_slot *s;
  rc = evs__cl_send(c, build_append, &a, &s);
  append_arg_free(&a);
  if (rc)
    return rc;
  *ticket = s->rid;
  return 0;
}

int evs_client_append_wait(evs_client *c, uint64_t ticket,
                           evs_append_result *out) {
  evs__cl_clear_error();
  if (c == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL client");
  pthread_mutex_lock(&c->mu);
  evs__cl_slot *s = c->slots;
  while (s && (s->rid != ticket || s->abandoned))
    s = s->next;
  pthread_mutex_unlock(&c->mu);
  if (s == NULL)
    return evs__cl_err(EVS_EINVAL, "unknown ticket %llu",
                       (unsigned long long)ticket);
  evs__proto_reply rep;
  uint8_t *body;
  int rc = evs__cl_wait(c, s, &rep, &body);
  evs_append_part part = { NULL, 0, NULL, 0, { 0 } };
  part.result.actual_version = EVS_VERSION_NONE;
  if (rc == 0)
    rc = append_finish(&rep, &part, 1, 0, NULL);
  free(body);
  if (out)
    *out = part.result;
  return rc;
}

/* ---- stream info, listing, metadata, delete ----------------------------- */

int evs_client_stream_info(evs_client *c, const char *stream,
                           evs_stream_info *out) {
  evs__cl_clear_error();
  if (c == NULL || stream == NULL || out == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL argument");
  memset(out, 0, sizeof *out);
  evs__proto_request q;
  evs__proto_request_init(&q);
  q.op = EVS__P_STREAM_INFO;
  q.stream = cs(stream);
  q.has_stream = 1;
  evs__proto_reply rep;
  uint8_t *body;
  int rc = evs__cl_call(c, build_simple, &q, &rep, &body);
  if (rc == 0) {
    out->exists = rep.exists;
    out->stream_id = rep.stream_id;
    out->version = rep.version;
    out->first_version = rep.first_version;
    out->first_position = rep.first_position;
    out->last_position = rep.last_position;
    out->start_version = rep.start_version;
    out->last_timestamp_ns = rep.last_timestamp_ns;
    out->flags = (rep.deleted ? EVS_STREAM_DELETED : 0u) |
                 (rep.tombstoned ? EVS_STREAM_TOMBSTONED : 0u);
    out->max_count = rep.max_count;
    out->max_age_sec = rep.max_age_sec;
    out->truncate_before = rep.truncate_before;
    if (rep.has_custom) {
      out->custom = malloc(rep.custom.len ? rep.custom.len : 1);
      if (out->custom == NULL) {
        rc = evs__cl_err(EVS_ENOMEM, "out of memory");
      } else {
        memcpy(out->custom, rep.custom.data, rep.custom.len);
        out->custom_len = rep.custom.len;
      }
    }
  }
  free(body);
  return rc;
}

void evs_client_stream_info_clear(evs_stream_info *info) {
  if (info == NULL)
    return;
  free(info->custom);
  info->custom = NULL;
  info->custom_len = 0;
}

int evs_client_list_streams(evs_client *c, const char *prefix,
                            const char *after, int include_deleted,
                            evs_client_stream_cb cb, void *payload) {
  evs__cl_clear_error();
  if (c == NULL || cb == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL argument");
  char last[EVS_MAX_NAME_LEN + 1];
  int have_after = after != NULL;
  if (after) {
    if (strlen(after) > EVS_MAX_NAME_LEN)
      return evs__cl_err(EVS_EBADNAME, "'after' is longer than %u bytes",
                         EVS_MAX_NAME_LEN);
    memcpy(last, after, strlen(after) + 1); /* bounded just above */
  }
  for (;;) {
    evs__proto_request q;
    evs__proto_request_init(&q);
    q.op = EVS__P_LIST_STREAMS;
    if (prefix) {
      q.prefix = cs(prefix);
      q.has_prefix = 1;
    }
    if (have_after) {
      q.after = cs(last);
      q.has_after = 1;
    }
    q.include_deleted = include_deleted;
    evs__proto_reply rep;
    uint8_t *body;
    int rc = evs__cl_call(c, build_simple, &q, &rep, &body);
    if (rc) {
      free(body);
      return rc;
    }
    evs__proto_cursor cur;
    evs__proto_cursor_init(&cur, rep.streams_raw, rep.nstreams);
    evs__proto_stream_entry st;
    while (evs__proto_next_stream(&cur, &st) == 1) {
      evs_stream_info info;
      memset(&info, 0, sizeof info);
      info.exists = !st.deleted && !st.tombstoned;
      info.version = st.version;
      info.last_position = st.last_position;
      info.last_timestamp_ns = st.last_timestamp_ns;
      info.flags = (st.deleted ? EVS_STREAM_DELETED : 0u) |
                   (st.tombstoned ? EVS_STREAM_TOMBSTONED : 0u);
      info.max_count = st.max_count;
      info.max_age_sec = st.max_age_sec;
      info.truncate_before = st.truncate_before;
      if (st.has_custom) {
        info.custom = (void *)st.custom.data;
        info.custom_len = st.custom.len;
      }
      int stop = cb((const char *)st.name.data, st.name.len, &info, payload);
      if (stop) {
        free(body);
        return stop;
      }
      if (st.name.len > EVS_MAX_NAME_LEN) {
        free(body);
        return evs__cl_err(EVS_EPROTO, "stream name too long in a listing");
      }
      memcpy(last, st.name.data, st.name.len);
      last[st.name.len] = '\0';
      have_after = 1;
    }
    int end = rep.end || rep.nstreams == 0;
    free(body);
    if (end)
      return 0;
  }
}

int evs_client_set_metadata(evs_client *c, const char *stream,
                            const evs_stream_metadata *md) {
  evs__cl_clear_error();
  if (c == NULL || stream == NULL || md == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL argument");
  evs__proto_request q;
  evs__proto_request_init(&q);
  q.op = EVS__P_SET_METADATA;
  q.stream = cs(stream);
  q.has_stream = 1;
  q.max_count = md->max_count;
  q.max_age_sec = md->max_age_sec;
  q.truncate_before = md->truncate_before;
  if (md->custom) {
    q.custom.data = md->custom;
    q.custom.len = md->custom_len;
    q.has_custom = 1;
  }
  evs__proto_reply rep;
  uint8_t *body;
  int rc = evs__cl_call(c, build_simple, &q, &rep, &body);
  free(body);
  return rc;
}

int evs_client_delete(evs_client *c, const char *stream, int64_t expected,
                      int hard) {
  evs__cl_clear_error();
  if (c == NULL || stream == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL argument");
  evs__proto_request q;
  evs__proto_request_init(&q);
  q.op = EVS__P_DELETE;
  q.stream = cs(stream);
  q.has_stream = 1;
  q.expected = expected;
  q.hard = hard != 0;
  evs__proto_reply rep;
  uint8_t *body;
  int rc = evs__cl_call(c, build_simple, &q, &rep, &body);
  free(body);
  return rc;
}
