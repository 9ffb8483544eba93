/*
 * evstore client — the operations added to protocol 1 after its first
 * release (docs/protocol.md, "Operations added later"): the head with its
 * commit time, single-event lookups, the server-side state fold,
 * statistics, and the long operations verify and replay.
 *
 * verify and replay may run for minutes and send "progress" frames before
 * their reply, so each runs on a connection of its own (like a
 * subscription): the frames of one request then need no routing, and the
 * client's other requests are not held up behind them. The server sends a
 * progress frame at least every second, so the per-request timeout bounds
 * the gap between two frames.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/internal.h"

static evs_slice cs(const char *s) {
  evs_slice r = { s, s ? strlen(s) : 0 };
  return r;
}

static int build_simple(evs__buf *b, uint64_t rid, void *arg) {
  evs__proto_request *q = arg;
  q->rid = rid;
  return evs__proto_encode_request(b, q);
}

/* ---- head --------------------------------------------------------------- */

int evs_client_head(evs_client *c, uint64_t *position, int64_t *timestamp_ns) {
  evs__cl_clear_error();
  if (c == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL client");
  evs__proto_request q;
  evs__proto_request_init(&q);
  q.op = EVS__P_HEAD;
  evs__proto_reply rep;
  uint8_t *body;
  int rc = evs__cl_call(c, build_simple, &q, &rep, &body);
  if (rc == 0) {
    if (position)
      *position = rep.head;
    if (timestamp_ns)
      *timestamp_ns = rep.head_timestamp_ns;
  }
  free(body);
  return rc;
}

/* ---- single events ------------------------------------------------------ */

/* A copy of `pe` in one allocation (the slices point after the struct). */
static evs_event *copy_event(const evs__proto_event *pe) {
  size_t n = sizeof(evs_event) + pe->stream.len + pe->type.len + pe->data.len +
             pe->metadata.len + 1;
  evs_event *ev = malloc(n);
  if (ev == NULL)
    return NULL;
  evs__cl_to_event(pe, ev);
  char *p = (char *)(ev + 1);
  const evs_slice *from[4] = { &pe->stream, &pe->type, &pe->data,
                               &pe->metadata };
  evs_slice *to[4] = { &ev->stream, &ev->type, &ev->data, &ev->metadata };
  for (int i = 0; i < 4; i++) {
    if (from[i]->len)
      memcpy(p, from[i]->data, from[i]->len);
    to[i]->data = p;
    to[i]->len = from[i]->len;
    p += from[i]->len;
  }
  return ev;
}

/* read_event by position (id == NULL) or id; *pe in *body. */
static int read_event(evs_client *c, uint64_t position, const evs_uuid *id,
                      evs__proto_reply *rep, uint8_t **body) {
  evs__proto_request q;
  evs__proto_request_init(&q);
  q.op = EVS__P_READ_EVENT;
  if (id) {
    memcpy(q.id, id->bytes, 16);
    q.has_id = 1;
  } else {
    q.position = position;
    q.has_position = 1;
  }
  int rc = evs__cl_call(c, build_simple, &q, rep, body);
  if (rc == 0 && !rep->has_event)
    rc = evs__cl_err(EVS_EPROTO, "read_event reply without an event");
  return rc;
}

int evs_client_read_event(evs_client *c, uint64_t position, evs_event **out) {
  evs__cl_clear_error();
  if (c == NULL || out == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL argument");
  *out = NULL;
  evs__proto_reply rep;
  uint8_t *body;
  int rc = read_event(c, position, NULL, &rep, &body);
  if (rc == 0) {
    *out = copy_event(&rep.event);
    if (*out == NULL)
      rc = evs__cl_err(EVS_ENOMEM, "out of memory");
  }
  free(body);
  return rc;
}

int evs_client_find_event_id(evs_client *c, const evs_uuid *id,
                             uint64_t *position) {
  evs__cl_clear_error();
  if (c == NULL || id == NULL || position == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL argument");
  evs__proto_reply rep;
  uint8_t *body;
  int rc = read_event(c, 0, id, &rep, &body);
  if (rc == 0)
    *position = rep.event.position;
  free(body);
  return rc;
}

void evs_client_event_free(evs_event *ev) {
  free(ev);
}

/* ---- state -------------------------------------------------------------- */

int evs_client_state(evs_client *c, const char *stream, uint64_t as_of_position,
                     int64_t as_of_ns, char **out, int64_t *version) {
  evs__cl_clear_error();
  if (c == NULL || stream == NULL || out == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL argument");
  *out = NULL;
  if (version)
    *version = EVS_VERSION_NONE;
  evs__proto_request q;
  evs__proto_request_init(&q);
  q.op = EVS__P_STATE;
  q.stream = cs(stream);
  q.has_stream = 1;
  q.as_of_position = as_of_position;
  q.as_of_ns = as_of_ns;
  evs__proto_reply rep;
  uint8_t *body;
  int rc = evs__cl_call(c, build_simple, &q, &rep, &body);
  if (rc == 0 && !rep.has_state)
    rc = evs__cl_err(EVS_EPROTO, "state reply without a state");
  if (rc == 0) {
    char *s = malloc(rep.state.len + 1);
    if (s == NULL) {
      rc = evs__cl_err(EVS_ENOMEM, "out of memory");
    } else {
      if (rep.state.len)
        memcpy(s, rep.state.data, rep.state.len);
      s[rep.state.len] = '\0';
      *out = s;
      if (version)
        *version = rep.version;
    }
  }
  free(body);
  return rc;
}

void evs_client_state_free(char *json) {
  free(json);
}

/* ---- stats -------------------------------------------------------------- */

int evs_client_stats(evs_client *c, evs_stats *out) {
  evs__cl_clear_error();
  if (c == NULL || out == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL argument");
  memset(out, 0, sizeof *out);
  evs__proto_request q;
  evs__proto_request_init(&q);
  q.op = EVS__P_STATS;
  evs__proto_reply rep;
  uint8_t *body;
  int rc = evs__cl_call(c, build_simple, &q, &rep, &body);
  if (rc == 0 && !rep.has_stats)
    rc = evs__cl_err(EVS_EPROTO, "stats reply without stats");
  if (rc == 0) {
    const evs__proto_stats *st = &rep.stats;
    out->events = st->events;
    out->streams = st->streams;
    out->event_types = st->event_types;
    out->categories = st->categories;
    out->last_position = st->last_position;
    out->last_timestamp_ns = st->last_timestamp_ns;
    out->file_size = st->file_size;
    out->map_size = st->map_size;
    out->map_used = st->map_used;
    out->page_size = st->page_size;
    out->data_bytes_raw = st->data_bytes_raw;
    out->data_bytes_stored = st->data_bytes_stored;
    out->compressed_events = st->compressed_events;
  }
  free(body);
  return rc;
}

/* ---- long operations ---------------------------------------------------- */

#define EVS__LONG_RID 1u

/* Called for each progress frame; non-zero stops waiting. */
typedef int (*progress_fn)(const evs__proto_reply *rep, void *arg);

/*
 * Sends `q` on a new connection and reads its progress frames (calling
 * `fn`) until its reply, which is decoded into *rep (slices into *body, the
 * caller's to free). Returns 0 when the reply arrived (its code is
 * returned through evs__cl_reply_error by the caller), a non-zero value of
 * `fn`, or a connection error.
 */
static int long_call(evs_client *c, evs__proto_request *q, progress_fn fn,
                     void *arg, evs__proto_reply *rep, uint8_t **body) {
  *body = NULL;
  int fd;
  evs__proto_reply hello;
  uint8_t *hb;
  int rc = evs__cl_open(c->host, c->port, c->token, c->name,
                        c->connect_timeout_ms, &fd, &hello, &hb);
  if (rc)
    return rc;
  uint64_t max_reply = hello.max_frame + hello.max_event_size + (1u << 20);
  if (max_reply > UINT32_MAX)
    max_reply = UINT32_MAX;
  free(hb);
  q->rid = EVS__LONG_RID;
  evs__buf b = EVS__BUF_INIT;
  rc = evs__proto_encode_request(&b, q);
  if (rc == 0 && b.oom)
    rc = evs__cl_err(EVS_ENOMEM, "out of memory");
  if (rc == 0)
    rc = evs__cl_write_all(fd, b.data, b.len, evs__cl_deadline(c->timeout_ms));
  evs__buf_free(&b);
  while (rc == 0) {
    uint8_t *fb;
    uint32_t len;
    uint64_t deadline = evs__cl_deadline(c->timeout_ms);
    rc = evs__cl_read_frame(
        fd, (uint32_t)max_reply, deadline,
        evs__cl_deadline(c->timeout_ms < 0 ? 60000 : c->timeout_ms + 30000),
        &fb, &len);
    if (rc == EVS_ETIMEDOUT) {
      rc =
          evs__cl_err(EVS_ETIMEDOUT, "no progress from the server within %d ms",
                      c->timeout_ms);
      break;
    }
    if (rc)
      break;
    char err[160];
    if (evs__proto_decode_reply(rep, fb, len, err, sizeof err)) {
      free(fb);
      rc = evs__cl_err(EVS_EPROTO, "malformed frame: %s", err);
      break;
    }
    if (rep->kind == EVS__K_GOODBYE) {
      rc =
          evs__cl_err(rep->code ? rep->code : EVS_ECONN, "server: %.*s",
                      (int)rep->message.len,
                      rep->message.data ? (const char *)rep->message.data : "");
      free(fb);
      break;
    }
    if (rep->rid != EVS__LONG_RID) {
      free(fb);
      continue;
    }
    if (rep->kind == EVS__K_REPLY) {
      *body = fb;
      break;
    }
    if (rep->kind == EVS__K_PROGRESS && fn) {
      rc = fn(rep, arg);
      free(fb);
      continue;
    }
    free(fb);
  }
  close(fd);
  return rc;
}

typedef struct verify_arg {
  evs_verify_cb cb;
  void *payload;
} verify_arg;

static int on_verify_progress(const evs__proto_reply *rep, void *arg) {
  verify_arg *v = arg;
  if (v->cb == NULL)
    return 0;
  if (!rep->has_problem)
    return v->cb(NULL, rep->done, rep->total, v->payload);
  /* The problem text is not NUL-terminated in the frame. */
  char *p = malloc(rep->problem.len + 1);
  if (p == NULL)
    return evs__cl_err(EVS_ENOMEM, "out of memory");
  memcpy(p, rep->problem.data, rep->problem.len);
  p[rep->problem.len] = '\0';
  int rc = v->cb(p, rep->done, rep->total, v->payload);
  free(p);
  return rc;
}

int evs_client_verify(evs_client *c, evs_verify_report *out, evs_verify_cb cb,
                      void *payload) {
  evs__cl_clear_error();
  if (c == NULL || out == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL argument");
  memset(out, 0, sizeof *out);
  evs__proto_request q;
  evs__proto_request_init(&q);
  q.op = EVS__P_VERIFY;
  verify_arg v = { cb, payload };
  evs__proto_reply rep;
  uint8_t *body;
  int rc = long_call(c, &q, on_verify_progress, &v, &rep, &body);
  if (rc == 0)
    rc = evs__cl_reply_error(&rep);
  if (rc == 0) {
    out->events_checked = rep.events_checked;
    out->streams_checked = rep.streams_checked;
    out->errors = rep.errors;
  }
  free(body);
  return rc;
}

typedef struct replay_arg {
  evs_client_progress_cb cb;
  void *payload;
} replay_arg;

static int on_replay_progress(const evs__proto_reply *rep, void *arg) {
  replay_arg *a = arg;
  return a->cb ? a->cb(rep->done, rep->total, a->payload) : 0;
}

int evs_client_replay(evs_client *c, const char *projection,
                      evs_client_progress_cb cb, void *payload,
                      evs_proj_status *out) {
  evs__cl_clear_error();
  if (c == NULL || projection == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL argument");
  if (out)
    memset(out, 0, sizeof *out);
  evs__proto_request q;
  evs__proto_request_init(&q);
  q.op = EVS__P_REPLAY;
  q.projection = cs(projection);
  q.has_projection = 1;
  replay_arg a = { cb, payload };
  evs__proto_reply rep;
  uint8_t *body;
  int rc = long_call(c, &q, on_replay_progress, &a, &rep, &body);
  if (rc == 0 && rep.checkpoint < 0) {
    rc = evs__cl_err(EVS_EPROTO, "replay reply: a negative checkpoint");
  } else if (rc == 0) {
    if (out && (rep.code == 0 || rep.code == EVS_EHANDLER)) {
      out->generation = (uint32_t)rep.generation;
      out->checkpoint = (uint64_t)rep.checkpoint;
      out->head = rep.head;
      out->behind = rep.head > out->checkpoint ? rep.head - out->checkpoint : 0;
      out->events_applied = rep.events_applied;
      if (rep.code) {
        out->failed = 1;
        out->error_code = rep.code;
        out->error_position = rep.error_position;
        size_t n = rep.message.len < sizeof out->error - 1
                       ? rep.message.len
                       : sizeof out->error - 1;
        if (n)
          memcpy(out->error, rep.message.data, n);
        out->error[n] = '\0';
      }
    }
    rc = evs__cl_reply_error(&rep);
  }
  free(body);
  return rc;
}
