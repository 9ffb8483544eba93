/*
 * evstored — subscriptions: readers that follow the log.
 *
 * A subscription holds no queue of events. It reads the log (or its
 * stream) from its checkpoint in batches on the thread pool, one batch in
 * flight at a time, and sends each batch as one "events" frame. It reads
 * the next batch only while its connection's unsent output is under the
 * soft limit; otherwise it waits for the output to drain (on_write ->
 * evsd_subs_resume). At the end of the log it waits for a commit
 * notification (evsd_subs_on_commit). Catch-up and live are the same
 * mechanism, and a subscriber that never reads costs the server one batch
 * of memory, not the log's growth.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

struct evsd_sub {
  evsd_sub *next;
  evsd_conn *c;
  uint64_t rid;
  int is_stream;
  char *stream, *prefix, *category, *event_type;
  uint32_t group_size, group_member;
  uint32_t batch;
  uint64_t pos_cp;      /* $all: last position considered */
  int64_t ver_cp;       /* stream: last version delivered */
  int from_end_pending; /* resolve "the current end" in the first read */
  int reading;          /* a batch is on the thread pool */
  int cancelled;        /* freed when its batch returns */
  int at_end;           /* the last batch reached the end */
  int caught_up_sent;
  uint64_t head_seen; /* the head when the last batch was started */
  uint64_t tomb_seen; /* the store's tomb_seq then (stream subscriptions) */
  uint64_t sent_cp;   /* last checkpoint sent to the client */
  uint64_t cp_push_ms;
  uv_work_t work;
  /* results of the batch, written by the pool thread */
  evs__buf out;
  int w_rc;
  char w_err[256];
  int w_end;
  uint32_t w_n;
  uint64_t w_pos_cp;
  int64_t w_ver_cp;
};

static void sub_free(evsd_sub *s) {
  free(s->stream);
  free(s->prefix);
  free(s->category);
  free(s->event_type);
  evs__buf_free(&s->out);
  free(s);
}

static char *dupz(evs_slice s) {
  char *p = malloc(s.len + 1);
  if (p) {
    if (s.len)
      memcpy(p, s.data, s.len);
    p[s.len] = '\0';
  }
  return p;
}

/* ---- the batch, on the thread pool -------------------------------------- */

/*
 * Reads $all after position `from` with the filters of `o` into `b`: one
 * msgpack array of events (at most `batch` of them and about `page_bytes`).
 * Sets *n, the checkpoint *cp (the last position considered) and *end
 * (the read reached the end of the log). Returns 0 or an EVS code, with
 * the message in err.
 */
static int read_all_into(evs_store *store, evs_read_all_options *o,
                         uint64_t from, uint32_t batch, uint32_t page_bytes,
                         evs__buf *b, uint32_t *n, uint64_t *cp, int *end,
                         char *err, size_t errcap) {
  o->from_position = from + 1;
  evs_iter *it = NULL;
  int rc = evs_read_all(&it, store, o);
  if (rc) {
    snprintf(err, errcap, "%s", evs_last_error());
    return rc;
  }
  evs__mp_open arr = evs__mp_w_array_open(b);
  size_t bytes = 0;
  uint64_t peek = 0;
  const evs_event *ev;
  *end = 0;
  for (;;) {
    rc = evs_iter_next(it, &ev);
    if (rc == 0) {
      *end = 1;
      break;
    }
    if (rc < 0) {
      snprintf(err, errcap, "%s", evs_last_error());
      evs_iter_free(it);
      return rc;
    }
    size_t cost =
        ev->stream.len + ev->type.len + ev->data.len + ev->metadata.len + 128;
    if (arr.n >= batch || (arr.n > 0 && bytes + cost > page_bytes)) {
      peek = ev->position;
      break;
    }
    evs__proto_event pe;
    memset(&pe, 0, sizeof pe);
    pe.stream = ev->stream;
    pe.type = ev->type;
    memcpy(pe.id, ev->id.bytes, 16);
    pe.data = ev->data;
    pe.metadata = ev->metadata;
    pe.version = ev->version;
    pe.position = ev->position;
    pe.timestamp_ns = ev->timestamp_ns;
    evs__proto_w_event(b, &pe);
    arr.n++;
    bytes += cost;
  }
  uint64_t c = *end ? evs_iter_checkpoint(it) : peek - 1;
  *cp = c < from ? from : c;
  evs_iter_free(it);
  evs__mp_w_array_close(b, &arr);
  *n = arr.n;
  return 0;
}

/* An "events" frame for subscription `rid`: the encoded array `events`
 * (bytes) and the checkpoint. */
static void events_frame(evs__buf *out, uint64_t rid, const void *events,
                         size_t len, uint64_t cp) {
  evs__proto_frame f;
  evs__proto_frame_open(out, &f, EVS__K_EVENTS, rid, 0, NULL);
  evs__mp_w_key(out, &f.map, "events");
  evs__buf_put(out, events, len);
  evs__mp_w_key(out, &f.map, "checkpoint");
  evs__mp_w_uint(out, cp);
  evs__proto_frame_close(out, &f);
}

static void batch_all(evsd_sub *s, evs_store *store, uint32_t page_bytes) {
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  o.stream_prefix = s->prefix;
  o.category = s->category;
  o.event_type = s->event_type;
  o.group_size = s->group_size;
  o.group_member = s->group_member;
  evs__proto_frame f;
  evs__proto_frame_open(&s->out, &f, EVS__K_EVENTS, s->rid, 0, NULL);
  evs__mp_w_key(&s->out, &f.map, "events");
  uint64_t cp = s->w_pos_cp;
  int rc = read_all_into(store, &o, s->w_pos_cp, s->batch, page_bytes, &s->out,
                         &s->w_n, &cp, &s->w_end, s->w_err, sizeof s->w_err);
  if (rc) {
    s->w_rc = rc;
    s->w_n = 0;
    return;
  }
  evs__mp_w_key(&s->out, &f.map, "checkpoint");
  evs__mp_w_uint(&s->out, cp);
  evs__proto_frame_close(&s->out, &f);
  s->w_pos_cp = cp;
}

static void batch_stream(evsd_sub *s, evs_store *store, uint32_t page_bytes) {
  evs_read_options o = EVS_READ_OPTIONS_INIT;
  o.from_version = s->w_ver_cp + 1;
  evs_iter *it = NULL;
  int rc = evs_read_stream(&it, store, s->stream, &o);
  if (rc == EVS_ENOSTREAM) {
    /* Not created yet (or soft-deleted): wait for it. */
    s->w_end = 1;
    return;
  }
  if (rc) {
    s->w_rc = rc;
    snprintf(s->w_err, sizeof s->w_err, "%s", evs_last_error());
    return;
  }
  evs__proto_frame f;
  evs__proto_frame_open(&s->out, &f, EVS__K_EVENTS, s->rid, 0, NULL);
  evs__mp_w_key(&s->out, &f.map, "events");
  evs__mp_open arr = evs__mp_w_array_open(&s->out);
  size_t bytes = 0;
  int64_t last = s->w_ver_cp;
  const evs_event *ev;
  for (;;) {
    rc = evs_iter_next(it, &ev);
    if (rc == 0) {
      s->w_end = 1;
      break;
    }
    if (rc < 0) {
      s->w_rc = rc;
      snprintf(s->w_err, sizeof s->w_err, "%s", evs_last_error());
      evs_iter_free(it);
      return;
    }
    size_t cost =
        ev->stream.len + ev->type.len + ev->data.len + ev->metadata.len + 128;
    if (arr.n >= s->batch || (arr.n > 0 && bytes + cost > page_bytes))
      break;
    evs__proto_event pe;
    memset(&pe, 0, sizeof pe);
    pe.stream = ev->stream;
    pe.type = ev->type;
    memcpy(pe.id, ev->id.bytes, 16);
    pe.data = ev->data;
    pe.metadata = ev->metadata;
    pe.version = ev->version;
    pe.position = ev->position;
    pe.timestamp_ns = ev->timestamp_ns;
    evs__proto_w_event(&s->out, &pe);
    arr.n++;
    bytes += cost;
    last = ev->version;
  }
  evs_iter_free(it);
  evs__mp_w_array_close(&s->out, &arr);
  evs__mp_w_key(&s->out, &f.map, "checkpoint");
  evs__mp_w_int(&s->out, last);
  evs__proto_frame_close(&s->out, &f);
  s->w_ver_cp = last;
  s->w_n = arr.n;
}

static void batch_cb(uv_work_t *req) {
  evsd_sub *s = req->data;
  evsd_server *srv = s->c->srv;
  if (s->from_end_pending) {
    if (s->is_stream) {
      evs_stream_info info;
      memset(&info, 0, sizeof info);
      if (evs_stream_info_get(srv->store, s->stream, &info) == 0 &&
          !(info.flags & (EVS_STREAM_DELETED | EVS_STREAM_TOMBSTONED)))
        s->w_ver_cp = info.version;
      evs_stream_info_clear(&info);
    } else {
      uint64_t head = 0;
      if (evs_head_position(srv->store, &head) == 0)
        s->w_pos_cp = head;
    }
  }
  if (s->is_stream)
    batch_stream(s, srv->store, srv->cfg->page_bytes);
  else
    batch_all(s, srv->store, srv->cfg->page_bytes);
  if (s->out.oom && s->w_rc == 0) {
    s->w_rc = EVS_ENOMEM;
    snprintf(s->w_err, sizeof s->w_err, "out of memory");
  }
}

/* ---- the loop side ------------------------------------------------------ */

static void unlink_sub(evsd_conn *c, evsd_sub *s) {
  for (evsd_sub **pp = &c->subs; *pp; pp = &(*pp)->next) {
    if (*pp == s) {
      *pp = s->next;
      c->nsubs--;
      EVSD_SUB(c->srv->metrics.subs_open, 1);
      break;
    }
  }
  s->next = NULL;
}

static void send_checkpoint(evsd_sub *s, evs__proto_kind kind) {
  evs__buf b = EVS__BUF_INIT;
  evs__proto_frame f;
  evs__proto_frame_open(&b, &f, kind, s->rid, 0, NULL);
  if (kind == EVS__K_EVENTS) {
    evs__mp_w_key(&b, &f.map, "events");
    evs__mp_w_array(&b, 0);
  }
  evs__mp_w_key(&b, &f.map, "checkpoint");
  if (s->is_stream)
    evs__mp_w_int(&b, s->ver_cp);
  else
    evs__mp_w_uint(&b, s->pos_cp);
  evs__proto_frame_close(&b, &f);
  evsd_conn_send_buf(s->c, &b);
  s->sent_cp = s->is_stream ? (uint64_t)(s->ver_cp + 1) : s->pos_cp;
}

static void after_batch(uv_work_t *req, int status);

/* Bumped by the store for every commit that tombstoned a stream. */
static uint64_t tomb_now(const evsd_server *srv) {
  return __atomic_load_n(&srv->store->tomb_seq, __ATOMIC_ACQUIRE);
}

/* Has something the subscription waits for happened since its last read:
 * a new event, or (for a stream) a tombstone, which moves no head? */
static int sub_stale(const evsd_sub *s, uint64_t head, uint64_t tomb) {
  return head > s->head_seen || (s->is_stream && tomb != s->tomb_seen);
}

static void kick(evsd_sub *s) {
  evsd_conn *c = s->c;
  evsd_server *srv = c->srv;
  if (s->cancelled || s->reading || c->closing || c->close_after_flush)
    return;
  if (evsd_conn_output_full(c))
    return; /* paused: evsd_subs_resume() wakes it */
  s->reading = 1;
  s->tomb_seen = tomb_now(srv);
  s->head_seen = EVSD_GET(srv->head);
  s->w_rc = 0;
  s->w_err[0] = '\0';
  s->w_end = 0;
  s->w_n = 0;
  s->w_pos_cp = s->pos_cp;
  s->w_ver_cp = s->ver_cp;
  s->out.len = 0;
  s->out.oom = 0;
  s->work.data = s;
  evsd_conn_ref(c);
  srv->pending++;
  uv_queue_work(srv->loop, &s->work, batch_cb, after_batch);
}

static void batch_done(evsd_sub *s);

static void after_batch(uv_work_t *req, int status) {
  (void)status;
  batch_done((evsd_sub *)req->data);
}

/* The loop side of a finished batch (the sub's own or a shared one): its
 * w_* results and s->out are filled in. Drops the batch's reference. */
static void batch_done(evsd_sub *s) {
  evsd_conn *c = s->c;
  evsd_server *srv = c->srv;
  s->reading = 0;
  if (s->cancelled) {
    sub_free(s);
    evsd_conn_unref(c);
    evsd_server_pending_done(srv);
    return;
  }
  if (s->w_rc) {
    char q[300];
    evsd_log(EVSD_INFO,
             "event=subscription_ended conn=%llu rid=%llu error=%s "
             "message=%s",
             (unsigned long long)c->id, (unsigned long long)s->rid,
             evs__proto_err_name(s->w_rc),
             evsd_q(q, sizeof q, s->w_err, strlen(s->w_err)));
    evsd_conn_send_error(c, EVS__K_SUB_END, s->rid, s->w_rc, s->w_err);
    unlink_sub(c, s);
    sub_free(s);
    evsd_conn_unref(c);
    evsd_server_pending_done(srv);
    return;
  }
  s->from_end_pending = 0;
  s->pos_cp = s->w_pos_cp;
  s->ver_cp = s->w_ver_cp;
  if (s->w_n) {
    EVSD_ADD(srv->metrics.sub_events_sent, s->w_n);
    s->sent_cp = s->is_stream ? (uint64_t)(s->ver_cp + 1) : s->pos_cp;
    evsd_conn_send_buf(c, &s->out);
  }
  s->at_end = s->w_end;
  if (s->w_end && !c->closing) {
    uint64_t now = evsd_now_ms(srv);
    if (!s->caught_up_sent) {
      s->caught_up_sent = 1;
      s->cp_push_ms = now;
      send_checkpoint(s, EVS__K_CAUGHT_UP);
    } else if (!s->is_stream && s->pos_cp > s->sent_cp &&
               now - s->cp_push_ms >= 1000) {
      /* A filter skipped events: tell the client how far it has come, at
       * most once a second. */
      s->cp_push_ms = now;
      send_checkpoint(s, EVS__K_EVENTS);
    }
  }
  evsd_conn_unref(c);
  if (!c->closing &&
      (!s->w_end || sub_stale(s, EVSD_GET(srv->head), tomb_now(srv))))
    kick(s);
  evsd_server_pending_done(srv);
}

void evsd_sub_start(evsd_conn *c, const evs__proto_request *req) {
  evsd_server *srv = c->srv;
  evs_slice none = { NULL, 0 };
  if (req->has_stream) {
    if (!evsd_auth_stream(c->token, 0, req->stream)) {
      EVSD_ADD(srv->metrics.auth_failures, 1);
      evsd_conn_send_error(c, EVS__K_REPLY, req->rid, EVS_EAUTH,
                           "this token may not read that stream");
      return;
    }
  } else if (!evsd_auth_scope(
                 c->token, req->has_stream_prefix ? req->stream_prefix : none,
                 req->has_category ? req->category : none)) {
    EVSD_ADD(srv->metrics.auth_failures, 1);
    evsd_conn_send_error(c, EVS__K_REPLY, req->rid, EVS_EAUTH,
                         "this token may not read all of $all: confine the "
                         "subscription with stream_prefix or category");
    return;
  }
  if (c->nsubs >= srv->cfg->max_subscriptions) {
    char msg[96];
    snprintf(msg, sizeof msg, "at most %u subscriptions per connection",
             srv->cfg->max_subscriptions);
    evsd_conn_send_error(c, EVS__K_REPLY, req->rid, EVS_EBUSY, msg);
    return;
  }
  for (evsd_sub *o = c->subs; o; o = o->next) {
    if (o->rid == req->rid) {
      evsd_conn_send_error(c, EVS__K_REPLY, req->rid, EVS_EINVAL,
                           "a subscription with this rid is active");
      return;
    }
  }
  const evs_slice *strs[] = { &req->stream, &req->stream_prefix, &req->category,
                              &req->event_type };
  for (size_t i = 0; i < 4; i++) {
    if (evs__proto_has_nul(*strs[i])) {
      evsd_conn_send_error(c, EVS__K_REPLY, req->rid, EVS_EBADNAME,
                           "a name contains a NUL byte");
      return;
    }
  }
  evsd_sub *s = calloc(1, sizeof *s);
  if (s == NULL)
    goto oom;
  s->c = c;
  s->rid = req->rid;
  s->is_stream = req->has_stream;
  if ((req->has_stream && (s->stream = dupz(req->stream)) == NULL) ||
      (req->has_stream_prefix &&
       (s->prefix = dupz(req->stream_prefix)) == NULL) ||
      (req->has_category && (s->category = dupz(req->category)) == NULL) ||
      (req->has_event_type && (s->event_type = dupz(req->event_type)) == NULL))
    goto oom;
  if (s->is_stream && s->stream[0] == '\0') {
    sub_free(s);
    evsd_conn_send_error(c, EVS__K_REPLY, req->rid, EVS_EBADNAME,
                         "empty stream name");
    return;
  }
  s->group_size = req->group_size;
  s->group_member = req->group_member;
  uint32_t page = srv->cfg->page_events;
  s->batch = req->batch && req->batch < page ? req->batch : page;
  if (s->is_stream)
    s->ver_cp = req->has_from && req->from >= -1 ? req->from : -1;
  else
    s->pos_cp = req->has_from && req->from > 0 ? (uint64_t)req->from : 0;
  s->from_end_pending = req->from_end;
  s->next = c->subs;
  c->subs = s;
  c->nsubs++;
  EVSD_ADD(srv->metrics.subs_open, 1);
  char q[300];
  evsd_log(
      EVSD_DEBUG, "event=subscribed conn=%llu rid=%llu target=%s from=%lld",
      (unsigned long long)c->id, (unsigned long long)s->rid,
      s->is_stream ? evsd_q(q, sizeof q, s->stream, strlen(s->stream)) : "$all",
      s->is_stream ? (long long)s->ver_cp : (long long)s->pos_cp);
  /* The reply goes out before the first push. */
  evsd_conn_send_error(c, EVS__K_REPLY, req->rid, 0, NULL);
  kick(s);
  return;
oom:
  if (s)
    sub_free(s);
  evsd_conn_send_error(c, EVS__K_REPLY, req->rid, EVS_ENOMEM, "out of memory");
}

static void cancel(evsd_conn *c, evsd_sub *s) {
  unlink_sub(c, s);
  if (s->reading)
    s->cancelled = 1; /* after_batch frees it */
  else
    sub_free(s);
}

int evsd_sub_stop(evsd_conn *c, uint64_t rid) {
  for (evsd_sub *s = c->subs; s; s = s->next) {
    if (s->rid == rid) {
      cancel(c, s);
      return 0;
    }
  }
  return EVS_ENOTFOUND;
}

void evsd_subs_cancel_all(evsd_conn *c) {
  while (c->subs)
    cancel(c, c->subs);
}

/*
 * Shared reads. At a commit, the unfiltered $all subscriptions waiting at
 * the same checkpoint (the live tail of many subscribers) would each read
 * and encode the same new events. Instead one pool job reads and encodes
 * them once, and every member gets a frame with its own rid around the
 * same bytes: one read per commit instead of one per subscriber.
 */
/* A shared read of at most this many positions runs on the loop thread. */
#define EVSD_FAN_INLINE 32u

typedef struct evsd_fan {
  uv_work_t work;
  evsd_server *srv;
  evsd_sub **m;
  size_t n;
  uint64_t from;
  uint32_t batch;
  evs__buf arr;
  uint32_t nev;
  uint64_t cp;
  int end;
  int rc;
  char err[256];
} evsd_fan;

static void fan_cb(uv_work_t *req) {
  evsd_fan *f = req->data;
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  f->cp = f->from;
  f->rc = read_all_into(f->srv->store, &o, f->from, f->batch,
                        f->srv->cfg->page_bytes, &f->arr, &f->nev, &f->cp,
                        &f->end, f->err, sizeof f->err);
  if (f->rc == 0 && f->arr.oom) {
    f->rc = EVS_ENOMEM;
    snprintf(f->err, sizeof f->err, "out of memory");
  }
}

static void after_fan(uv_work_t *req, int status) {
  (void)status;
  evsd_fan *f = req->data;
  evsd_server *srv = f->srv;
  for (size_t i = 0; i < f->n; i++) {
    evsd_sub *s = f->m[i];
    s->w_rc = f->rc;
    if (f->rc) {
      snprintf(s->w_err, sizeof s->w_err, "%s", f->err);
    } else if (!s->cancelled) {
      s->w_n = f->nev;
      s->w_end = f->end;
      s->w_pos_cp = f->cp;
      events_frame(&s->out, s->rid, f->arr.data, f->arr.len, f->cp);
      if (s->out.oom) {
        s->w_rc = EVS_ENOMEM;
        snprintf(s->w_err, sizeof s->w_err, "out of memory");
      }
    }
    batch_done(s);
  }
  evs__buf_free(&f->arr);
  free(f->m);
  free(f);
  evsd_server_pending_done(srv);
}

/* Can `s` join a shared read now? */
static int fan_eligible(const evsd_sub *s, uint64_t head) {
  const evsd_conn *c = s->c;
  return !s->is_stream && !s->prefix && !s->category && !s->event_type &&
         s->group_size <= 1 && s->at_end && !s->reading && !s->cancelled &&
         !s->from_end_pending && head > s->head_seen && !c->closing &&
         !c->close_after_flush && !evsd_conn_output_full(c);
}

static int fan_cmp(const void *a, const void *b) {
  const evsd_sub *x = *(evsd_sub *const *)a, *y = *(evsd_sub *const *)b;
  if (x->pos_cp != y->pos_cp)
    return x->pos_cp < y->pos_cp ? -1 : 1;
  return x->batch < y->batch ? -1 : x->batch > y->batch;
}

/* Starts one shared read for subs[0..n) (same checkpoint and batch).
 * Returns 0, or -1 when out of memory (nothing started). */
static int fan_start(evsd_server *srv, evsd_sub **subs, size_t n) {
  evsd_fan *f = calloc(1, sizeof *f);
  evsd_sub **m = malloc(n * sizeof(evsd_sub *));
  if (f == NULL || m == NULL) {
    free(f);
    free(m);
    return -1;
  }
  memcpy(m, subs, n * sizeof(evsd_sub *));
  f->srv = srv;
  f->m = m;
  f->n = n;
  f->from = subs[0]->pos_cp;
  f->batch = subs[0]->batch;
  uint64_t head = EVSD_GET(srv->head);
  for (size_t i = 0; i < n; i++) {
    evsd_sub *s = m[i];
    s->reading = 1;
    s->head_seen = head;
    s->w_rc = 0;
    s->w_err[0] = '\0';
    s->w_end = 0;
    s->w_n = 0;
    s->w_pos_cp = s->pos_cp;
    s->w_ver_cp = s->ver_cp;
    s->out.len = 0;
    s->out.oom = 0;
    evsd_conn_ref(s->c);
    srv->pending++; /* one per member: batch_done drops it */
  }
  srv->pending++; /* the job's own: after_fan drops it */
  EVSD_ADD(srv->metrics.sub_shared_reads, 1);
  EVSD_ADD(srv->metrics.sub_shared_members, n);
  f->work.data = f;
  if (head - f->from <= EVSD_FAN_INLINE) {
    /* The live tail: a few events just committed, in the page cache. Read
     * them here rather than hand them to the thread pool and back, two
     * thread wake-ups that, on a busy machine, cost more than the read. */
    fan_cb(&f->work);
    after_fan(&f->work, 0);
    return 0;
  }
  uv_queue_work(srv->loop, &f->work, fan_cb, after_fan);
  return 0;
}

void evsd_subs_on_commit(evsd_server *srv) {
  uint64_t head = EVSD_GET(srv->head);
  uint64_t tomb = tomb_now(srv);
  evsd_sub *small[64], **tail = small;
  size_t n = 0, cap = sizeof small / sizeof small[0];
  for (evsd_conn *c = srv->conns; c; c = c->next) {
    if (c->closing)
      continue;
    for (evsd_sub *s = c->subs; s; s = s->next) {
      if (!(s->at_end && !s->reading && sub_stale(s, head, tomb)))
        continue;
      if (fan_eligible(s, head)) {
        if (n == cap) {
          evsd_sub **nt = malloc(2 * cap * sizeof(evsd_sub *));
          if (nt == NULL) {
            kick(s);
            continue;
          }
          memcpy(nt, tail, n * sizeof(evsd_sub *));
          if (tail != small)
            free(tail);
          tail = nt;
          cap *= 2;
        }
        tail[n++] = s;
      } else {
        kick(s);
      }
    }
  }
  if (n > 1)
    qsort(tail, n, sizeof(evsd_sub *), fan_cmp);
  for (size_t i = 0; i < n;) {
    size_t j = i + 1;
    while (j < n && fan_cmp(&tail[i], &tail[j]) == 0)
      j++;
    if (j - i == 1 || fan_start(srv, tail + i, j - i) != 0) {
      for (size_t k = i; k < j; k++)
        kick(tail[k]);
    }
    i = j;
  }
  if (tail != small)
    free(tail);
}

void evsd_subs_resume(evsd_conn *c) {
  if (c->closing || c->subs == NULL)
    return;
  uint64_t head = EVSD_GET(c->srv->head);
  uint64_t tomb = tomb_now(c->srv);
  for (evsd_sub *s = c->subs; s; s = s->next)
    if (!s->reading && (!s->at_end || sub_stale(s, head, tomb)))
      kick(s);
}

void evsd_subs_gauges(evsd_server *srv, uint64_t *nsubs, uint64_t *lag_max,
                      uint64_t *lag_sum) {
  uint64_t head = EVSD_GET(srv->head);
  *nsubs = *lag_max = *lag_sum = 0;
  for (evsd_conn *c = srv->conns; c; c = c->next) {
    for (evsd_sub *s = c->subs; s; s = s->next) {
      (*nsubs)++;
      if (s->is_stream)
        continue;
      uint64_t lag = head > s->pos_cp ? head - s->pos_cp : 0;
      if (lag > *lag_max)
        *lag_max = lag;
      *lag_sum += lag;
    }
  }
}
