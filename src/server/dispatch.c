/*
 * evstored — request handling: the handshake, appends (through the store's
 * group-commit writer, evs_append_async), and the operations that read or
 * wait for the store (run on libuv's thread pool, which also encodes their
 * reply frames). The loop thread never waits for the store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/server.h"

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static char *dupz(evs_slice s) {
  char *p = malloc(s.len + 1);
  if (p == NULL)
    return NULL;
  if (s.len)
    memcpy(p, s.data, s.len);
  p[s.len] = '\0';
  return p;
}

/* Replies EVS_EBADNAME when a name carries a NUL byte (it would be cut
 * short as a C string). Returns 1 when it replied. */
static int reject_nul(evsd_conn *c, uint64_t rid, evs_slice s,
                      const char *what) {
  if (!evs__proto_has_nul(s))
    return 0;
  char msg[96];
  snprintf(msg, sizeof msg, "%s contains a NUL byte", what);
  evsd_conn_send_error(c, EVS__K_REPLY, rid, EVS_EBADNAME, msg);
  return 1;
}

static int deny(evsd_conn *c, uint64_t rid, const char *what, evs_slice s) {
  EVSD_ADD(c->srv->metrics.auth_failures, 1);
  char msg[400];
  snprintf(msg, sizeof msg,
           "this token (%s of the tokens file) may not %s '%.*s'",
           c->token ? c->token->label : "?", what,
           (int)(s.len > 255 ? 255 : s.len), (const char *)s.data);
  char q[420];
  evsd_log(EVSD_INFO, "event=denied conn=%llu peer=%s message=%s",
           (unsigned long long)c->id, c->peer,
           evsd_q(q, sizeof q, msg, strlen(msg)));
  evsd_conn_send_error(c, EVS__K_REPLY, rid, EVS_EAUTH, msg);
  return 1;
}

/* ---- handshake ---------------------------------------------------------- */

void evsd_handshake(evsd_conn *c, evs__proto_request *req) {
  evsd_server *srv = c->srv;
  if (req->op != EVS__P_HELLO) {
    EVSD_ADD(srv->metrics.proto_errors, 1);
    evsd_conn_send_error(c, EVS__K_REPLY, req->rid, EVS_EPROTO,
                         "the first request must be hello");
    return;
  }
  if (req->protocol != EVS_PROTO_VERSION) {
    EVSD_ADD(srv->metrics.proto_errors, 1);
    evs__buf b = EVS__BUF_INIT;
    evs__proto_frame f;
    char msg[96];
    snprintf(msg, sizeof msg,
             "protocol version %llu is not supported; this server speaks %u",
             (unsigned long long)req->protocol, EVS_PROTO_VERSION);
    evs__proto_frame_open(&b, &f, EVS__K_REPLY, req->rid, EVS_EPROTO, msg);
    evs__mp_w_key(&b, &f.map, "protocol");
    evs__mp_w_uint(&b, EVS_PROTO_VERSION);
    evs__proto_frame_close(&b, &f);
    evsd_conn_send_buf(c, &b);
    return;
  }
  size_t cl = req->client.len < sizeof c->client - 1 ? req->client.len
                                                     : sizeof c->client - 1;
  memcpy(c->client, req->client.data ? req->client.data : "", cl);
  c->client[cl] = '\0';
  char q[96];
  if (srv->auth) {
    const evsd_token *tok = evsd_auth_find(srv->auth, req->token);
    if (tok == NULL) {
      EVSD_ADD(srv->metrics.auth_failures, 1);
      evsd_log(EVSD_WARN,
               "event=auth_failed conn=%llu peer=%s client=%s "
               "reason=%s",
               (unsigned long long)c->id, c->peer,
               evsd_q(q, sizeof q, c->client, strlen(c->client)),
               req->has_token ? "unknown_token" : "no_token");
      evsd_conn_send_error(c, EVS__K_REPLY, req->rid, EVS_EAUTH,
                           req->has_token ? "unknown token"
                                          : "this server requires a token");
      return;
    }
    c->token = tok;
  }
  c->handshaken = 1;
  evsd_log(EVSD_INFO, "event=hello conn=%llu peer=%s client=%s token=%s",
           (unsigned long long)c->id, c->peer,
           evsd_q(q, sizeof q, c->client, strlen(c->client)),
           c->token ? c->token->label : "-");
  evs__buf b = EVS__BUF_INIT;
  evs__proto_frame f;
  evs__proto_frame_open(&b, &f, EVS__K_REPLY, req->rid, 0, NULL);
  evs__mp_w_key(&b, &f.map, "protocol");
  evs__mp_w_uint(&b, EVS_PROTO_VERSION);
  evs__mp_w_key(&b, &f.map, "server");
  evs__mp_w_cstr(&b, "evstored/" EVS_VERSION_STRING);
  evs__mp_w_key(&b, &f.map, "max_frame");
  evs__mp_w_uint(&b, srv->cfg->max_frame);
  evs__mp_w_key(&b, &f.map, "max_events");
  evs__mp_w_uint(&b, srv->cfg->max_events);
  evs__mp_w_key(&b, &f.map, "max_event_size");
  evs__mp_w_uint(&b, srv->cfg->max_event_size);
  evs__proto_frame_close(&b, &f);
  evsd_conn_send_buf(c, &b);
}

/* ---- appends ------------------------------------------------------------ */

struct evsd_append {
  evsd_append *next;
  evsd_conn *c;
  uint64_t rid;
  int multi;
  int at; /* append_at: committed with timestamp at_ns */
  int64_t at_ns;
  uint8_t *body; /* a copy of the frame body: data, metadata */
  char *names;   /* NUL-terminated stream and type names */
  evs_append_part *parts;
  uint32_t nparts;
  evs_event_data *events;
  uint32_t nevents;
  uint64_t bytes; /* data + metadata */
  uint64_t t_start;
  /* set by the store thread */
  int status;
  size_t failed_part;
  uint64_t t_done;
  char detail[256];
};

static void append_free(evsd_append *op) {
  free(op->body);
  free(op->names);
  free(op->parts);
  free(op->events);
  free(op);
}

static void push_done(evsd_server *srv, evsd_append *op) {
  pthread_mutex_lock(&srv->done_mu);
  op->next = NULL;
  if (srv->done_tail)
    srv->done_tail->next = op;
  else
    srv->done_head = op;
  srv->done_tail = op;
  pthread_mutex_unlock(&srv->done_mu);
  uv_async_send(&srv->done_async);
}

/* Called by a store thread after the commit (or failure). */
static void append_cb(int status, evs_append_part *parts, size_t nparts,
                      size_t failed_part, void *payload) {
  (void)parts;
  (void)nparts;
  evsd_append *op = payload;
  op->status = status;
  op->failed_part = failed_part;
  op->t_done = now_ns();
  if (status)
    snprintf(op->detail, sizeof op->detail, "%s", evs_last_error());
  push_done(op->c->srv, op);
}

/*
 * Submitters: threads that hand appends to the store. evs_append_async()
 * validates and compresses the events in its caller's thread, which must
 * not be the loop thread (a 16 MiB event takes tens of milliseconds to
 * compress). A connection always uses the same submitter, so its appends
 * reach the store's queue, and are committed, in the order they arrived;
 * connections spread over the submitters, so compression runs in
 * parallel.
 */
static void *submitter_main(void *arg) {
  evsd_submitter *q = arg;
  pthread_mutex_lock(&q->mu);
  for (;;) {
    while (q->head == NULL && !q->stop)
      pthread_cond_wait(&q->cv, &q->mu);
    if (q->head == NULL)
      break;
    evsd_append *op = q->head;
    q->head = op->next;
    if (q->head == NULL)
      q->tail = NULL;
    pthread_mutex_unlock(&q->mu);
    if (op->at) {
      /* An import with original timestamps: evs_append_at has no
       * asynchronous form, so this submitter waits for its commit, which
       * keeps it in order with the connection's other appends. */
      size_t failed = 0;
      int rc = evs_append_at(q->srv->store, op->parts, op->nparts, op->at_ns,
                             &failed);
      append_cb(rc, op->parts, op->nparts, failed, op);
      pthread_mutex_lock(&q->mu);
      continue;
    }
    int rc =
        evs_append_async(q->srv->store, op->parts, op->nparts, append_cb, op);
    if (rc) {
      /* Rejected before queueing (validation): answered like a failure. */
      op->status = rc;
      op->failed_part = 0;
      op->t_done = now_ns();
      snprintf(op->detail, sizeof op->detail, "%s", evs_last_error());
      push_done(q->srv, op);
    }
    pthread_mutex_lock(&q->mu);
  }
  pthread_mutex_unlock(&q->mu);
  return NULL;
}

int evsd_submitters_start(evsd_server *srv) {
  for (int i = 0; i < EVSD_SUBMITTERS; i++) {
    evsd_submitter *q = &srv->submitters[i];
    q->srv = srv;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    if (pthread_create(&q->th, NULL, submitter_main, q) != 0) {
      pthread_mutex_destroy(&q->mu);
      pthread_cond_destroy(&q->cv);
      return -1;
    }
    q->started = 1;
  }
  return 0;
}

void evsd_submitters_stop(evsd_server *srv) {
  for (int i = 0; i < EVSD_SUBMITTERS; i++) {
    evsd_submitter *q = &srv->submitters[i];
    if (!q->started)
      continue;
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->th, NULL);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    q->started = 0;
  }
}

static void submit(evsd_server *srv, evsd_conn *c, evsd_append *op) {
  evsd_submitter *q = &srv->submitters[c->id % EVSD_SUBMITTERS];
  op->next = NULL;
  pthread_mutex_lock(&q->mu);
  if (q->tail)
    q->tail->next = op;
  else
    q->head = op;
  q->tail = op;
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
}

static void w_result(evs__buf *b, evs__mp_open *m, const evs_append_result *r) {
  evs__mp_w_key(b, m, "first_version");
  evs__mp_w_int(b, r->first_version);
  evs__mp_w_key(b, m, "last_version");
  evs__mp_w_int(b, r->last_version);
  evs__mp_w_key(b, m, "first_position");
  evs__mp_w_uint(b, r->first_position);
  evs__mp_w_key(b, m, "last_position");
  evs__mp_w_uint(b, r->last_position);
  evs__mp_w_key(b, m, "timestamp");
  evs__mp_w_int(b, r->timestamp_ns);
  evs__mp_w_key(b, m, "idempotent");
  evs__mp_w_bool(b, r->idempotent);
}

static int is_store_failure(int rc) {
  return rc == EVS_EIO || rc == -ENOSPC || rc == EVS_EMAPFULL ||
         rc == EVS_ECORRUPT || rc == -EDQUOT || rc == -EIO;
}

static void append_done(evsd_server *srv, evsd_append *op) {
  evsd_conn *c = op->c;
  evsd_metrics *m = &srv->metrics;
  double secs = (double)(op->t_done - op->t_start) / 1e9;
  evsd_hist_observe(m, &m->commit_latency, secs);
  if (srv->cfg->slow_commit_ms &&
      secs * 1000.0 >= (double)srv->cfg->slow_commit_ms)
    evsd_log(EVSD_WARN, "event=slow_commit conn=%llu events=%u ms=%.1f",
             (unsigned long long)c->id, op->nevents, secs * 1000.0);
  if (op->status == 0) {
    EVSD_ADD(m->append_ok, 1);
    int idem = 1;
    for (uint32_t p = 0; p < op->nparts; p++)
      idem &= op->parts[p].result.idempotent;
    if (idem) {
      EVSD_ADD(m->append_idempotent, 1);
    } else {
      EVSD_ADD(m->events_appended, op->nevents);
      EVSD_ADD(m->bytes_appended, op->bytes);
    }
    if (EVSD_GET(srv->store_failed)) {
      EVSD_SET(srv->store_failed, 0);
      evsd_log(EVSD_INFO, "event=store_recovered");
    }
  } else {
    EVSD_ADD(m->append_err, 1);
    if (is_store_failure(op->status)) {
      EVSD_SET(srv->store_failed, 1);
      char q[300];
      evsd_log(EVSD_ERROR, "event=append_failed error=%s message=%s",
               evs__proto_err_name(op->status),
               evsd_q(q, sizeof q, op->detail, strlen(op->detail)));
    }
  }
  if (!c->closing) {
    evs__buf b = EVS__BUF_INIT;
    evs__proto_frame f;
    evs__proto_frame_open(&b, &f, EVS__K_REPLY, op->rid, op->status,
                          op->detail);
    if (op->status == 0 && !op->multi) {
      w_result(&b, &f.map, &op->parts[0].result);
    } else if (op->status == 0) {
      evs__mp_w_key(&b, &f.map, "results");
      evs__mp_w_array(&b, op->nparts);
      for (uint32_t p = 0; p < op->nparts; p++) {
        evs__mp_open m2 = evs__mp_w_map_open(&b);
        w_result(&b, &m2, &op->parts[p].result);
        evs__mp_w_map_close(&b, &m2);
      }
    } else {
      size_t fp = op->failed_part < op->nparts ? op->failed_part : 0;
      if (op->status == EVS_EWRONGVERSION) {
        evs__mp_w_key(&b, &f.map, "actual_version");
        evs__mp_w_int(&b, op->parts[fp].result.actual_version);
      }
      evs__mp_w_key(&b, &f.map, "failed_part");
      evs__mp_w_uint(&b, fp);
    }
    evs__proto_frame_close(&b, &f);
    evsd_conn_send_buf(c, &b);
  }
  evsd_conn_op_done(c);
  evsd_conn_unref(c);
  append_free(op);
  evsd_server_pending_done(srv);
}

void evsd_appends_drain(evsd_server *srv) {
  pthread_mutex_lock(&srv->done_mu);
  evsd_append *list = srv->done_head;
  srv->done_head = srv->done_tail = NULL;
  pthread_mutex_unlock(&srv->done_mu);
  while (list) {
    evsd_append *op = list;
    list = op->next;
    append_done(srv, op);
  }
}

static const void *rebase(const void *p, const uint8_t *from, uint8_t *to) {
  if (p == NULL)
    return NULL;
  return to + ((const uint8_t *)p - from);
}

static void do_append(evsd_conn *c, evs__proto_request *req,
                      const uint8_t *body, size_t len) {
  evsd_server *srv = c->srv;
  size_t names_len = 0;
  for (uint32_t p = 0; p < req->nparts; p++) {
    evs__proto_part *pt = &req->parts[p];
    if (reject_nul(c, req->rid, pt->stream, "stream name"))
      return;
    if (!evsd_auth_stream(c->token, 1, pt->stream)) {
      deny(c, req->rid, "write to stream", pt->stream);
      return;
    }
    names_len += pt->stream.len + 1;
    for (uint32_t i = 0; i < pt->nevents; i++) {
      evs__proto_event *e = &pt->events[i];
      if (reject_nul(c, req->rid, e->type, "event type"))
        return;
      names_len += e->type.len + 1;
      uint64_t sz = (uint64_t)e->data.len + e->metadata.len;
      if (sz > srv->cfg->max_event_size) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "event %u of '%.*s' has %llu bytes of data and metadata: "
                 "the limit is %u",
                 i, (int)(pt->stream.len > 255 ? 255 : pt->stream.len),
                 (const char *)pt->stream.data, (unsigned long long)sz,
                 srv->cfg->max_event_size);
        evsd_conn_send_error(c, EVS__K_REPLY, req->rid, EVS_ETOOLARGE, msg);
        return;
      }
    }
  }
  evsd_append *op = calloc(1, sizeof *op);
  if (op == NULL)
    goto oom;
  op->c = c;
  op->rid = req->rid;
  op->multi = req->multi;
  op->at = req->op == EVS__P_APPEND_AT;
  op->at_ns = req->timestamp_ns;
  op->body = malloc(len);
  op->names = malloc(names_len ? names_len : 1);
  /* calloc(0) may return NULL: never ask for zero elements. */
  op->parts = calloc(req->nparts ? req->nparts : 1, sizeof *op->parts);
  op->events = calloc(req->nevents ? req->nevents : 1, sizeof *op->events);
  if (op->body == NULL || op->names == NULL || op->parts == NULL ||
      op->events == NULL)
    goto oom;
  memcpy(op->body, body, len);
  op->nparts = req->nparts;
  op->nevents = req->nevents;
  char *nm = op->names;
  uint32_t k = 0;
  for (uint32_t p = 0; p < req->nparts; p++) {
    evs__proto_part *pt = &req->parts[p];
    evs_append_part *ap = &op->parts[p];
    memcpy(nm, pt->stream.data, pt->stream.len);
    nm[pt->stream.len] = '\0';
    ap->stream = nm;
    nm += pt->stream.len + 1;
    ap->expected = pt->expected;
    ap->events = &op->events[k];
    ap->count = pt->nevents;
    for (uint32_t i = 0; i < pt->nevents; i++, k++) {
      evs__proto_event *e = &pt->events[i];
      evs_event_data *d = &op->events[k];
      if (e->has_id)
        memcpy(d->id.bytes, e->id, 16);
      memcpy(nm, e->type.data, e->type.len);
      nm[e->type.len] = '\0';
      d->type = nm;
      nm += e->type.len + 1;
      d->data = rebase(e->data.data, body, op->body);
      d->data_len = e->data.len;
      d->metadata = rebase(e->metadata.data, body, op->body);
      d->metadata_len = e->metadata.len;
      op->bytes += e->data.len + e->metadata.len;
    }
  }
  op->t_start = now_ns();
  c->inflight++;
  evsd_conn_ref(c);
  srv->pending++;
  submit(srv, c, op);
  return;
oom:
  if (op)
    append_free(op);
  evsd_conn_send_error(c, EVS__K_REPLY, req->rid, EVS_ENOMEM, "out of memory");
}

/* ---- thread-pool operations --------------------------------------------- */

typedef struct evsd_work {
  uv_work_t req;
  evsd_conn *c;
  evsd_server *srv;
  evs__proto_request q;    /* scalar fields only: its slices are cleared */
  const evsd_token *token; /* the connection's (lives as long as the server) */
  char *stream, *prefix, *category, *event_type, *after;
  void *custom;
  size_t custom_len;
  evs__buf out;
  uint64_t nevents;
} evsd_work;

static void work_free(evsd_work *w) {
  free(w->stream);
  free(w->prefix);
  free(w->category);
  free(w->event_type);
  free(w->after);
  free(w->custom);
  evs__buf_free(&w->out);
  free(w);
}

static void error_frame(evsd_work *w, int rc, const char *detail) {
  w->out.len = 0;
  w->out.oom = 0;
  evs__proto_error_frame(&w->out, EVS__K_REPLY, w->q.rid, rc, detail);
}

static void to_proto_event(const evs_event *e, evs__proto_event *p) {
  memset(p, 0, sizeof *p);
  p->stream = e->stream;
  p->type = e->type;
  memcpy(p->id, e->id.bytes, 16);
  p->has_id = 1;
  p->data = e->data;
  p->metadata = e->metadata;
  p->version = e->version;
  p->position = e->position;
  p->timestamp_ns = e->timestamp_ns;
}

static size_t event_cost(const evs_event *e) {
  return e->stream.len + e->type.len + e->data.len + e->metadata.len + 128;
}

static uint64_t page_limit(const evsd_work *w) {
  uint64_t max = w->srv->cfg->page_events;
  return w->q.limit && w->q.limit < max ? w->q.limit : max;
}

static void work_read_stream(evsd_work *w) {
  evs_read_options o = EVS_READ_OPTIONS_INIT;
  o.direction = w->q.backward ? EVS_BACKWARD : EVS_FORWARD;
  if (w->q.has_from && w->q.from >= 0)
    o.from_version = w->q.from;
  else
    o.from_version = w->q.backward ? EVS_FROM_END : 0;
  o.as_of_position = w->q.as_of_position;
  o.as_of_ns = w->q.as_of_ns;
  evs_iter *it = NULL;
  int rc = evs_read_stream(&it, w->srv->store, w->stream, &o);
  if (rc) {
    error_frame(w, rc, evs_last_error());
    return;
  }
  evs__proto_frame f;
  evs__proto_frame_open(&w->out, &f, EVS__K_REPLY, w->q.rid, 0, NULL);
  evs__mp_w_key(&w->out, &f.map, "events");
  evs__mp_open arr = evs__mp_w_array_open(&w->out);
  uint64_t limit = page_limit(w);
  size_t bytes = 0;
  int end = 0;
  int64_t next = o.from_version == EVS_FROM_END ? -1 : o.from_version;
  const evs_event *ev;
  for (;;) {
    rc = evs_iter_next(it, &ev);
    if (rc == 0) {
      end = 1;
      break;
    }
    if (rc < 0) {
      evs_iter_free(it);
      error_frame(w, rc, evs_last_error());
      return;
    }
    size_t cost = event_cost(ev);
    if (arr.n >= limit ||
        (arr.n > 0 && bytes + cost > w->srv->cfg->page_bytes)) {
      next = ev->version;
      break;
    }
    evs__proto_event pe;
    to_proto_event(ev, &pe);
    evs__proto_w_event(&w->out, &pe);
    arr.n++;
    bytes += cost;
    next = w->q.backward ? ev->version - 1 : ev->version + 1;
  }
  evs_iter_free(it);
  evs__mp_w_array_close(&w->out, &arr);
  evs__mp_w_key(&w->out, &f.map, "next");
  evs__mp_w_int(&w->out, next);
  evs__mp_w_key(&w->out, &f.map, "end");
  evs__mp_w_bool(&w->out, end);
  evs__proto_frame_close(&w->out, &f);
  w->nevents = arr.n;
}

static void work_read_all(evsd_work *w) {
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  o.direction = w->q.backward ? EVS_BACKWARD : EVS_FORWARD;
  if (w->q.has_from && w->q.from > 0)
    o.from_position = (uint64_t)w->q.from;
  else
    o.from_position = w->q.backward ? EVS_POSITION_END : 0;
  o.stream_prefix = w->prefix;
  o.category = w->category;
  o.event_type = w->event_type;
  o.since_ns = w->q.since_ns;
  o.until_ns = w->q.until_ns;
  o.until_position = w->q.until_position;
  o.group_size = w->q.group_size;
  o.group_member = w->q.group_member;
  evs_iter *it = NULL;
  int rc = evs_read_all(&it, w->srv->store, &o);
  if (rc) {
    error_frame(w, rc, evs_last_error());
    return;
  }
  evs__proto_frame f;
  evs__proto_frame_open(&w->out, &f, EVS__K_REPLY, w->q.rid, 0, NULL);
  evs__mp_w_key(&w->out, &f.map, "events");
  evs__mp_open arr = evs__mp_w_array_open(&w->out);
  uint64_t limit = page_limit(w);
  size_t bytes = 0;
  int end = 0;
  uint64_t peek = 0;
  const evs_event *ev;
  for (;;) {
    rc = evs_iter_next(it, &ev);
    if (rc == 0) {
      end = 1;
      break;
    }
    if (rc < 0) {
      evs_iter_free(it);
      error_frame(w, rc, evs_last_error());
      return;
    }
    size_t cost = event_cost(ev);
    if (arr.n >= limit ||
        (arr.n > 0 && bytes + cost > w->srv->cfg->page_bytes)) {
      peek = ev->position;
      break;
    }
    evs__proto_event pe;
    to_proto_event(ev, &pe);
    evs__proto_w_event(&w->out, &pe);
    arr.n++;
    bytes += cost;
  }
  uint64_t cp;
  int64_t next;
  if (end) {
    cp = evs_iter_checkpoint(it);
    next = w->q.backward ? (int64_t)(cp > 0 ? cp - 1 : 0) : (int64_t)cp + 1;
  } else {
    /* The peeked event was not sent: it is where the next page starts,
     * and everything before it (in the read's direction) was considered. */
    cp = w->q.backward ? peek + 1 : peek - 1;
    next = (int64_t)peek;
  }
  evs_iter_free(it);
  evs__mp_w_array_close(&w->out, &arr);
  evs__mp_w_key(&w->out, &f.map, "checkpoint");
  evs__mp_w_uint(&w->out, cp);
  evs__mp_w_key(&w->out, &f.map, "next");
  evs__mp_w_int(&w->out, next);
  evs__mp_w_key(&w->out, &f.map, "end");
  evs__mp_w_bool(&w->out, end);
  evs__proto_frame_close(&w->out, &f);
  w->nevents = arr.n;
}

static void work_stream_info(evsd_work *w) {
  evs_stream_info info;
  memset(&info, 0, sizeof info);
  int rc = evs_stream_info_get(w->srv->store, w->stream, &info);
  if (rc) {
    error_frame(w, rc, evs_last_error());
    return;
  }
  evs__buf *b = &w->out;
  evs__proto_frame f;
  evs__proto_frame_open(b, &f, EVS__K_REPLY, w->q.rid, 0, NULL);
  evs__mp_w_key(b, &f.map, "exists");
  evs__mp_w_bool(b, info.exists);
  evs__mp_w_key(b, &f.map, "stream_id");
  evs__mp_w_uint(b, info.stream_id);
  evs__mp_w_key(b, &f.map, "version");
  evs__mp_w_int(b, info.version);
  evs__mp_w_key(b, &f.map, "first_version");
  evs__mp_w_int(b, info.first_version);
  evs__mp_w_key(b, &f.map, "first_position");
  evs__mp_w_uint(b, info.first_position);
  evs__mp_w_key(b, &f.map, "last_position");
  evs__mp_w_uint(b, info.last_position);
  evs__mp_w_key(b, &f.map, "start_version");
  evs__mp_w_int(b, info.start_version);
  evs__mp_w_key(b, &f.map, "last_timestamp");
  evs__mp_w_int(b, info.last_timestamp_ns);
  evs__mp_w_key(b, &f.map, "deleted");
  evs__mp_w_bool(b, (info.flags & EVS_STREAM_DELETED) != 0);
  evs__mp_w_key(b, &f.map, "tombstoned");
  evs__mp_w_bool(b, (info.flags & EVS_STREAM_TOMBSTONED) != 0);
  evs__mp_w_key(b, &f.map, "max_count");
  evs__mp_w_uint(b, info.max_count);
  evs__mp_w_key(b, &f.map, "max_age");
  evs__mp_w_uint(b, info.max_age_sec);
  evs__mp_w_key(b, &f.map, "truncate_before");
  evs__mp_w_int(b, info.truncate_before);
  if (info.custom) {
    evs__mp_w_key(b, &f.map, "custom");
    evs__mp_w_bin(b, info.custom, info.custom_len);
  }
  evs__proto_frame_close(b, &f);
  evs_stream_info_clear(&info);
}

static void work_list_streams(evsd_work *w) {
  evs_stream_iter *it = NULL;
  int rc = evs_streams_list(&it, w->srv->store, w->prefix, w->after,
                            w->q.include_deleted);
  if (rc) {
    error_frame(w, rc, evs_last_error());
    return;
  }
  evs__buf *b = &w->out;
  evs__proto_frame f;
  evs__proto_frame_open(b, &f, EVS__K_REPLY, w->q.rid, 0, NULL);
  evs__mp_w_key(b, &f.map, "streams");
  evs__mp_open arr = evs__mp_w_array_open(b);
  uint64_t limit = w->q.limit && w->q.limit < 1000 ? w->q.limit : 1000;
  int end = 0;
  for (;;) {
    evs_slice name;
    evs_stream_info info;
    rc = evs_streams_next(it, &name, &info);
    if (rc == 0) {
      end = 1;
      break;
    }
    if (rc < 0) {
      evs_streams_free(it);
      error_frame(w, rc, evs_last_error());
      return;
    }
    if (arr.n >= limit)
      break;
    evs__mp_w_map(b, info.custom ? 10 : 9);
    evs__mp_w_cstr(b, "name");
    evs__mp_w_str(b, name.data, name.len);
    evs__mp_w_cstr(b, "version");
    evs__mp_w_int(b, info.version);
    evs__mp_w_cstr(b, "last_position");
    evs__mp_w_uint(b, info.last_position);
    evs__mp_w_cstr(b, "last_timestamp");
    evs__mp_w_int(b, info.last_timestamp_ns);
    evs__mp_w_cstr(b, "deleted");
    evs__mp_w_bool(b, (info.flags & EVS_STREAM_DELETED) != 0);
    evs__mp_w_cstr(b, "tombstoned");
    evs__mp_w_bool(b, (info.flags & EVS_STREAM_TOMBSTONED) != 0);
    evs__mp_w_cstr(b, "max_count");
    evs__mp_w_uint(b, info.max_count);
    evs__mp_w_cstr(b, "max_age");
    evs__mp_w_uint(b, info.max_age_sec);
    evs__mp_w_cstr(b, "truncate_before");
    evs__mp_w_int(b, info.truncate_before);
    if (info.custom) {
      evs__mp_w_cstr(b, "custom");
      evs__mp_w_bin(b, info.custom, info.custom_len);
    }
    arr.n++;
  }
  evs_streams_free(it);
  evs__mp_w_array_close(b, &arr);
  evs__mp_w_key(b, &f.map, "end");
  evs__mp_w_bool(b, end);
  evs__proto_frame_close(b, &f);
}

static void work_set_metadata(evsd_work *w) {
  evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
  md.max_count = w->q.max_count;
  md.max_age_sec = w->q.max_age_sec;
  md.truncate_before = w->q.truncate_before;
  md.custom = w->custom;
  md.custom_len = w->custom_len;
  int rc = evs_stream_set_metadata(w->srv->store, w->stream, &md);
  if (rc)
    error_frame(w, rc, evs_last_error());
  else
    evs__proto_error_frame(&w->out, EVS__K_REPLY, w->q.rid, 0, NULL);
}

static void work_delete(evsd_work *w) {
  int rc =
      evs_stream_delete(w->srv->store, w->stream, w->q.expected, w->q.hard);
  if (rc == 0) {
    evs__proto_error_frame(&w->out, EVS__K_REPLY, w->q.rid, 0, NULL);
    return;
  }
  char detail[512];
  snprintf(detail, sizeof detail, "%s", evs_last_error());
  int64_t actual = EVS_VERSION_NONE;
  if (rc == EVS_EWRONGVERSION) {
    /* The delete API reports the actual version in its message only. */
    evs_stream_info info;
    memset(&info, 0, sizeof info);
    if (evs_stream_info_get(w->srv->store, w->stream, &info) == 0 &&
        !(info.flags & (EVS_STREAM_DELETED | EVS_STREAM_TOMBSTONED)))
      actual = info.version;
    evs_stream_info_clear(&info);
  }
  evs__proto_frame f;
  w->out.len = 0;
  evs__proto_frame_open(&w->out, &f, EVS__K_REPLY, w->q.rid, rc, detail);
  if (rc == EVS_EWRONGVERSION) {
    evs__mp_w_key(&w->out, &f.map, "actual_version");
    evs__mp_w_int(&w->out, actual);
  }
  evs__proto_frame_close(&w->out, &f);
}

/* head: the last position and its commit time, in one read. */
static void work_head(evsd_work *w) {
  evs_stats st;
  int rc = evs_store_stats(w->srv->store, &st, 0);
  if (rc) {
    error_frame(w, rc, evs_last_error());
    return;
  }
  evs__proto_frame f;
  evs__proto_frame_open(&w->out, &f, EVS__K_REPLY, w->q.rid, 0, NULL);
  evs__mp_w_key(&w->out, &f.map, "head");
  evs__mp_w_uint(&w->out, st.last_position);
  evs__mp_w_key(&w->out, &f.map, "head_timestamp");
  evs__mp_w_int(&w->out, st.last_timestamp_ns);
  evs__proto_frame_close(&w->out, &f);
}

/* read_event: one event by position or id, whatever its visibility; the
 * token must be allowed to read its stream. */
static void work_read_event(evsd_work *w) {
  evs_store *store = w->srv->store;
  uint64_t pos = w->q.position;
  int rc = 0;
  if (w->q.has_id) {
    evs_uuid id;
    memcpy(id.bytes, w->q.id, 16);
    rc = evs_find_event_id(store, &id, &pos);
  }
  evs_event *ev = NULL;
  if (rc == 0)
    rc = evs_read_event(store, pos, &ev);
  if (rc) {
    const char *d = evs_last_error();
    error_frame(w, rc,
                d[0]          ? d
                : w->q.has_id ? "no event with that id"
                              : "no event at that position");
    return;
  }
  if (!evsd_auth_stream(w->token, 0, ev->stream)) {
    EVSD_ADD(w->srv->metrics.auth_failures, 1);
    char msg[400];
    snprintf(msg, sizeof msg,
             "this token (%s of the tokens file) may not read stream "
             "'%.*s'",
             w->token ? w->token->label : "?",
             (int)(ev->stream.len > 255 ? 255 : ev->stream.len),
             (const char *)ev->stream.data);
    evs_event_free(ev);
    error_frame(w, EVS_EAUTH, msg);
    return;
  }
  evs__proto_frame f;
  evs__proto_frame_open(&w->out, &f, EVS__K_REPLY, w->q.rid, 0, NULL);
  evs__mp_w_key(&w->out, &f.map, "event");
  evs__proto_event pe;
  to_proto_event(ev, &pe);
  evs__proto_w_event(&w->out, &pe);
  evs__proto_frame_close(&w->out, &f);
  evs_event_free(ev);
  w->nevents = 1;
}

/* state: the "stream-state" fold of a stream (evs_state_fold), so that it
 * is the same text whichever side folds it. */
static void work_state(evsd_work *w) {
  char *state = NULL;
  int64_t version = EVS_VERSION_NONE;
  int rc = evs_state_fold(&state, &version, w->srv->store, w->stream,
                          w->q.as_of_position, w->q.as_of_ns);
  if (rc) {
    error_frame(w, rc, evs_last_error());
    return;
  }
  size_t len = strlen(state);
  if (len + 1024 > w->srv->cfg->max_frame) {
    char msg[160];
    snprintf(msg, sizeof msg,
             "the state of this stream has %zu bytes, more than a frame "
             "(%u bytes) can carry",
             len, w->srv->cfg->max_frame);
    evs_state_free(state);
    error_frame(w, EVS_ETOOLARGE, msg);
    return;
  }
  evs__proto_frame f;
  evs__proto_frame_open(&w->out, &f, EVS__K_REPLY, w->q.rid, 0, NULL);
  evs__mp_w_key(&w->out, &f.map, "state");
  evs__mp_w_bin(&w->out, state, len);
  evs__mp_w_key(&w->out, &f.map, "version");
  evs__mp_w_int(&w->out, version);
  evs__proto_frame_close(&w->out, &f);
  evs_state_free(state);
}

/* stats: evs_store_stats with the full scan (byte and compression
 * totals). */
static void work_stats(evsd_work *w) {
  evs_stats st;
  int rc = evs_store_stats(w->srv->store, &st, 1);
  if (rc) {
    error_frame(w, rc, evs_last_error());
    return;
  }
  evs__proto_stats ps;
  ps.events = st.events;
  ps.streams = st.streams;
  ps.event_types = st.event_types;
  ps.categories = st.categories;
  ps.last_position = st.last_position;
  ps.last_timestamp_ns = st.last_timestamp_ns;
  ps.file_size = st.file_size;
  ps.map_size = st.map_size;
  ps.map_used = st.map_used;
  ps.page_size = st.page_size;
  ps.data_bytes_raw = st.data_bytes_raw;
  ps.data_bytes_stored = st.data_bytes_stored;
  ps.compressed_events = st.compressed_events;
  evs__proto_frame f;
  evs__proto_frame_open(&w->out, &f, EVS__K_REPLY, w->q.rid, 0, NULL);
  evs__mp_w_key(&w->out, &f.map, "stats");
  evs__proto_w_stats(&w->out, &ps);
  evs__proto_frame_close(&w->out, &f);
}

static void work_cb(uv_work_t *req) {
  evsd_work *w = req->data;
  switch (w->q.op) {
  case EVS__P_READ_STREAM:
    work_read_stream(w);
    EVSD_ADD(w->srv->metrics.reads_stream, 1);
    break;
  case EVS__P_READ_ALL:
    work_read_all(w);
    EVSD_ADD(w->srv->metrics.reads_all, 1);
    break;
  case EVS__P_STREAM_INFO:
    work_stream_info(w);
    EVSD_ADD(w->srv->metrics.reads_info, 1);
    break;
  case EVS__P_LIST_STREAMS:
    work_list_streams(w);
    EVSD_ADD(w->srv->metrics.reads_list, 1);
    break;
  case EVS__P_SET_METADATA:
    work_set_metadata(w);
    EVSD_ADD(w->srv->metrics.writes_meta, 1);
    break;
  case EVS__P_DELETE:
    work_delete(w);
    EVSD_ADD(w->srv->metrics.writes_delete, 1);
    break;
  case EVS__P_HEAD:
    work_head(w);
    break;
  case EVS__P_READ_EVENT:
    work_read_event(w);
    EVSD_ADD(w->srv->metrics.reads_info, 1);
    break;
  case EVS__P_STATE:
    work_state(w);
    EVSD_ADD(w->srv->metrics.reads_stream, 1);
    break;
  case EVS__P_STATS:
    work_stats(w);
    break;
  default:
    error_frame(w, EVS_EPROTO, "operation not handled by the pool");
    break;
  }
  EVSD_ADD(w->srv->metrics.read_events, w->nevents);
}

static void after_work_cb(uv_work_t *req, int status) {
  (void)status;
  evsd_work *w = req->data;
  evsd_conn *c = w->c;
  evsd_server *srv = w->srv;
  if (!c->closing)
    evsd_conn_send_buf(c, &w->out);
  evsd_conn_op_done(c);
  evsd_conn_unref(c);
  work_free(w);
  evsd_server_pending_done(srv);
}

/* Copies an optional string; *out stays NULL when absent. */
static int copy_opt(evsd_conn *c, uint64_t rid, evs_slice s, int has,
                    const char *what, char **out) {
  if (!has)
    return 0;
  if (reject_nul(c, rid, s, what))
    return -1;
  *out = dupz(s);
  if (*out == NULL) {
    evsd_conn_send_error(c, EVS__K_REPLY, rid, EVS_ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

static void queue_work(evsd_conn *c, evs__proto_request *req) {
  evsd_server *srv = c->srv;
  evsd_work *w = calloc(1, sizeof *w);
  if (w == NULL) {
    evsd_conn_send_error(c, EVS__K_REPLY, req->rid, EVS_ENOMEM,
                         "out of memory");
    return;
  }
  w->c = c;
  w->srv = srv;
  w->token = c->token;
  w->req.data = w;
  w->q = *req;
  w->q.parts = NULL;
  w->q.event_store = NULL;
  w->q.nparts = 0;
  /* The request's slices point into the connection's input buffer, which
   * is reused: the work keeps its own copies of the strings it needs. */
  evs_slice *slices[] = { &w->q.op_name,    &w->q.token,         &w->q.client,
                          &w->q.stream,     &w->q.stream_prefix, &w->q.category,
                          &w->q.event_type, &w->q.prefix,        &w->q.after,
                          &w->q.custom,     &w->q.projection };
  for (size_t i = 0; i < sizeof slices / sizeof slices[0]; i++)
    memset(slices[i], 0, sizeof *slices[i]);
  if (copy_opt(c, req->rid, req->stream, req->has_stream, "stream name",
               &w->stream) ||
      copy_opt(c, req->rid, req->stream_prefix, req->has_stream_prefix,
               "stream_prefix", &w->prefix) ||
      copy_opt(c, req->rid, req->category, req->has_category, "category",
               &w->category) ||
      copy_opt(c, req->rid, req->event_type, req->has_event_type, "event_type",
               &w->event_type) ||
      copy_opt(c, req->rid, req->after, req->has_after, "after", &w->after)) {
    work_free(w);
    return;
  }
  if (req->op == EVS__P_LIST_STREAMS &&
      copy_opt(c, req->rid, req->prefix, req->has_prefix, "prefix",
               &w->prefix)) {
    work_free(w);
    return;
  }
  if (req->has_custom && req->custom.len) {
    w->custom = malloc(req->custom.len);
    if (w->custom == NULL) {
      work_free(w);
      evsd_conn_send_error(c, EVS__K_REPLY, req->rid, EVS_ENOMEM,
                           "out of memory");
      return;
    }
    memcpy(w->custom, req->custom.data, req->custom.len);
    w->custom_len = req->custom.len;
  }
  c->inflight++;
  evsd_conn_ref(c);
  srv->pending++;
  uv_queue_work(srv->loop, &w->req, work_cb, after_work_cb);
}

/* ---- dispatch ----------------------------------------------------------- */

static void do_ping(evsd_conn *c, uint64_t rid) {
  evs__buf b = EVS__BUF_INIT;
  evs__proto_frame f;
  evs__proto_frame_open(&b, &f, EVS__K_REPLY, rid, 0, NULL);
  evs__mp_w_key(&b, &f.map, "head");
  evs__mp_w_uint(&b, EVSD_GET(c->srv->head));
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  evs__mp_w_key(&b, &f.map, "time");
  evs__mp_w_int(&b, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
  evs__proto_frame_close(&b, &f);
  evsd_conn_send_buf(c, &b);
}

void evsd_dispatch(evsd_conn *c, evs__proto_request *req, const uint8_t *body,
                   size_t len) {
  const evsd_token *tok = c->token;
  evs_slice none = { NULL, 0 };
  switch (req->op) {
  case EVS__P_PING:
    do_ping(c, req->rid);
    return;
  case EVS__P_APPEND:
  case EVS__P_APPEND_AT:
    do_append(c, req, body, len);
    return;
  case EVS__P_HEAD:
  case EVS__P_READ_EVENT: /* the grant is checked on the event's stream */
    break;
  case EVS__P_STATS:
    if (!evsd_auth_all(tok, 0)) {
      evs_slice what = { "*", 1 };
      deny(c, req->rid, "read the statistics of all of", what);
      return;
    }
    break;
  case EVS__P_VERIFY:
  case EVS__P_REPLAY:
    evsd_job_start(c, req);
    return;
  case EVS__P_READ_STREAM:
  case EVS__P_STREAM_INFO:
  case EVS__P_STATE:
    if (!evsd_auth_stream(tok, 0, req->stream)) {
      deny(c, req->rid, "read stream", req->stream);
      return;
    }
    break;
  case EVS__P_SET_METADATA:
  case EVS__P_DELETE:
    if (!evsd_auth_stream(tok, 1, req->stream)) {
      deny(c, req->rid, "write to stream", req->stream);
      return;
    }
    break;
  case EVS__P_READ_ALL:
    if (!evsd_auth_scope(tok,
                         req->has_stream_prefix ? req->stream_prefix : none,
                         req->has_category ? req->category : none)) {
      evs_slice what = { "$all", 4 };
      deny(c, req->rid, "read all of", what);
      return;
    }
    break;
  case EVS__P_LIST_STREAMS:
    if (!evsd_auth_scope(tok, req->has_prefix ? req->prefix : none, none)) {
      evs_slice what = { "streams", 7 };
      deny(c, req->rid, "list all", what);
      return;
    }
    break;
  case EVS__P_SUBSCRIBE:
    evsd_sub_start(c, req);
    return;
  case EVS__P_UNSUBSCRIBE: {
    int rc = evsd_sub_stop(c, req->sub);
    evsd_conn_send_error(c, EVS__K_REPLY, req->rid, rc,
                         rc ? "no subscription with that rid" : NULL);
    return;
  }
  default:
    evsd_conn_send_error(c, EVS__K_REPLY, req->rid, EVS_EPROTO,
                         "operation not supported here");
    return;
  }
  queue_work(c, req);
}
