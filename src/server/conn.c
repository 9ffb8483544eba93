/*
 * evstored — connection I/O: accepting, reading and framing requests,
 * writing frames with bounded output, and closing.
 *
 * Rules (STYLE.md, "Server I/O"): connection memory is freed only after
 * close_cb and once no operation holds a reference; a frame's bytes live
 * until its write_cb; a frame's declared length is checked before any
 * buffer grows for it; the unsent output of a connection is bounded (soft
 * limit: stop reading requests and pause subscriptions; hard limit and
 * stall timeout: close).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

/* Largest frame accepted before the handshake: a hello is small, and an
 * unauthenticated peer must not make the server buffer megabytes. */
#define EVSD_PREAUTH_MAX_FRAME (64u * 1024u)
#define EVSD_READ_CHUNK (64u * 1024u)
/* How long a connection may take to say hello. */
#define EVSD_HELLO_TIMEOUT_MS 10000u
/* How long a goodbye may take to be written before the socket is closed. */
#define EVSD_GOODBYE_GRACE_MS 2000u

typedef struct evsd_wreq {
  uv_write_t req;
  evsd_conn *c;
  uint8_t *data;
  size_t len;
} evsd_wreq;

static void process(evsd_conn *c);

void evsd_conn_ref(evsd_conn *c) {
  c->refs++;
}

void evsd_conn_unref(evsd_conn *c) {
  if (--c->refs > 0)
    return;
  free(c->in);
  free(c);
}

static void on_close(uv_handle_t *h) {
  evsd_conn *c = h->data;
  evsd_server *srv = c->srv;
  if (c->prev)
    c->prev->next = c->next;
  else if (srv->conns == c)
    srv->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  srv->nconns--;
  EVSD_SUB(srv->metrics.conns_open, 1);
  evsd_conn_unref(c);
  evsd_server_pending_done(srv);
}

void evsd_conn_close(evsd_conn *c, const char *reason) {
  if (c->closing)
    return;
  c->closing = 1;
  char q[160];
  evsd_log(c->handshaken ? EVSD_INFO : EVSD_DEBUG,
           "event=conn_closed conn=%llu peer=%s reason=%s",
           (unsigned long long)c->id, c->peer,
           evsd_q(q, sizeof q, reason, strlen(reason)));
  evsd_subs_cancel_all(c);
  evsd_jobs_cancel(c->srv, c);
  if (c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

int evsd_conn_output_full(const evsd_conn *c) {
  return c->out_bytes >= c->srv->cfg->output_soft;
}

static void on_write(uv_write_t *req, int status) {
  evsd_wreq *w = (evsd_wreq *)req;
  evsd_conn *c = w->c;
  c->out_bytes -= w->len;
  free(w->data);
  free(w);
  if (status < 0) {
    if (status != UV_ECANCELED)
      evsd_conn_close(c, uv_strerror(status));
    return;
  }
  c->last_write_ms = evsd_now_ms(c->srv);
  if (c->closing)
    return;
  if (c->out_bytes < c->srv->cfg->output_soft)
    c->over_soft_since_ms = 0;
  if (c->close_after_flush) {
    if (c->out_bytes == 0)
      evsd_conn_close(c, "closed by the server after its last reply");
    return;
  }
  if (c->out_bytes < c->srv->cfg->output_soft / 2 + 1) {
    evsd_conn_maybe_resume(c);
    evsd_subs_resume(c);
  }
}

void evsd_conn_send(evsd_conn *c, uint8_t *data, size_t len) {
  evsd_server *srv = c->srv;
  if (c->closing || len == 0) {
    free(data);
    return;
  }
  evsd_wreq *w = malloc(sizeof *w);
  if (w == NULL) {
    free(data);
    evsd_conn_close(c, "out of memory");
    return;
  }
  w->c = c;
  w->data = data;
  w->len = len;
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (rc < 0) {
    free(data);
    free(w);
    evsd_conn_close(c, uv_strerror(rc));
    return;
  }
  c->out_bytes += len;
  EVSD_ADD(srv->metrics.out_bytes_total, len);
  if (c->out_bytes > srv->cfg->output_hard) {
    EVSD_ADD(srv->metrics.slow_consumers_closed, 1);
    evsd_log(EVSD_WARN,
             "event=slow_consumer conn=%llu peer=%s unsent_bytes=%llu "
             "limit=%llu",
             (unsigned long long)c->id, c->peer,
             (unsigned long long)c->out_bytes,
             (unsigned long long)srv->cfg->output_hard);
    evsd_conn_close(c, "unsent output over the hard limit");
    return;
  }
  if (c->out_bytes >= srv->cfg->output_soft && c->over_soft_since_ms == 0)
    c->over_soft_since_ms = evsd_now_ms(srv);
}

void evsd_conn_send_buf(evsd_conn *c, evs__buf *b) {
  if (b->oom) {
    evs__buf_free(b);
    evsd_conn_close(c, "out of memory");
    return;
  }
  size_t len;
  uint8_t *p = evs__buf_take(b, &len);
  evsd_conn_send(c, p, len);
}

void evsd_conn_send_error(evsd_conn *c, evs__proto_kind kind, uint64_t rid,
                          int code, const char *message) {
  evs__buf b = EVS__BUF_INIT;
  evs__proto_error_frame(&b, kind, rid, code, message);
  evsd_conn_send_buf(c, &b);
}

static void finish(evsd_conn *c) {
  if (c->closing || c->close_after_flush)
    return;
  c->close_after_flush = 1;
  c->close_deadline_ms = evsd_now_ms(c->srv) + EVSD_GOODBYE_GRACE_MS;
  if (c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
  if (c->out_bytes == 0)
    evsd_conn_close(c, "closed by the server");
}

void evsd_conn_goodbye(evsd_conn *c, int code, const char *message) {
  if (c->closing || c->close_after_flush)
    return;
  char q[256];
  evsd_log(EVSD_INFO, "event=goodbye conn=%llu peer=%s error=%s message=%s",
           (unsigned long long)c->id, c->peer, evs__proto_err_name(code),
           evsd_q(q, sizeof q, message, strlen(message)));
  evsd_conn_send_error(c, EVS__K_GOODBYE, 0, code, message);
  finish(c);
}

/* The last frame was an error that ends the connection (handshake
 * failures): close once the reply is written. */
static void finish_after_reply(evsd_conn *c) {
  finish(c);
}

/* 1 when no more requests should be read now. */
static int throttled(const evsd_conn *c) {
  return c->closing || c->close_after_flush || c->srv->stopping ||
         c->inflight >= c->srv->cfg->max_inflight || evsd_conn_output_full(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  evsd_conn *c = h->data;
  /* Move the unread bytes to the front when the free tail is short. */
  if (c->in_off == c->in_len) {
    c->in_off = c->in_len = 0;
  } else if (c->in_off > 0 && c->in_cap - c->in_len < EVSD_READ_CHUNK) {
    memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
    c->in_len -= c->in_off;
    c->in_off = 0;
  }
  if (c->in_cap - c->in_len < EVSD_READ_CHUNK) {
    size_t cap = c->in_len + EVSD_READ_CHUNK;
    uint8_t *p = realloc(c->in, cap);
    if (p == NULL) {
      buf->base = NULL;
      buf->len = 0; /* libuv reports UV_ENOBUFS */
      return;
    }
    c->in = p;
    c->in_cap = cap;
  }
  buf->base = (char *)c->in + c->in_len;
  buf->len = c->in_cap - c->in_len;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  evsd_conn *c = s->data;
  if (nread < 0) {
    evsd_conn_close(c, nread == UV_EOF ? "closed by the client"
                                       : uv_strerror((int)nread));
    return;
  }
  if (nread == 0)
    return;
  c->in_len += (size_t)nread;
  EVSD_ADD(c->srv->metrics.in_bytes_total, (uint64_t)nread);
  process(c);
}

static void start_reading(evsd_conn *c) {
  if (c->reading || c->closing || c->close_after_flush)
    return;
  int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc < 0) {
    evsd_conn_close(c, uv_strerror(rc));
    return;
  }
  c->reading = 1;
}

static void stop_reading(evsd_conn *c) {
  if (!c->reading)
    return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

/* Decodes and handles one complete frame body. */
static void handle_frame(evsd_conn *c, const uint8_t *body, size_t len) {
  evsd_server *srv = c->srv;
  evs__proto_request req;
  char err[256];
  evs__proto_limits lim = { srv->cfg->max_events, 1000u };
  c->last_rx_ms = evsd_now_ms(srv);
  int rc = evs__proto_decode_request(&req, body, len, &lim, err, sizeof err);
  if (rc) {
    EVSD_ADD(srv->metrics.proto_errors, 1);
    char q[300];
    evsd_log(EVSD_DEBUG, "event=bad_request conn=%llu error=%s message=%s",
             (unsigned long long)c->id, evs__proto_err_name(rc),
             evsd_q(q, sizeof q, err, strlen(err)));
    evsd_conn_send_error(c, EVS__K_REPLY, req.has_rid ? req.rid : 0, rc, err);
    evs__proto_request_free(&req);
    if (!c->handshaken)
      finish_after_reply(c);
    return;
  }
  if (!c->handshaken) {
    evsd_handshake(c, &req);
    if (!c->handshaken)
      finish_after_reply(c);
  } else if (req.op == EVS__P_HELLO) {
    EVSD_ADD(srv->metrics.proto_errors, 1);
    evsd_conn_send_error(c, EVS__K_REPLY, req.rid, EVS_EPROTO,
                         "hello was already received on this connection");
  } else {
    evsd_dispatch(c, &req, body, len);
  }
  evs__proto_request_free(&req);
}

/* Handles the buffered frames until the buffer runs dry or a limit stops
 * reading. */
static void process(evsd_conn *c) {
  evsd_server *srv = c->srv;
  while (!throttled(c)) {
    size_t avail = c->in_len - c->in_off;
    if (c->skip) {
      size_t drop = avail < c->skip ? avail : (size_t)c->skip;
      c->in_off += drop;
      c->skip -= drop;
      if (c->skip)
        break;
      continue;
    }
    uint32_t blen;
    if (!evs__proto_frame_header(c->in + c->in_off, avail, &blen))
      break;
    uint32_t max = c->handshaken ? srv->cfg->max_frame : EVSD_PREAUTH_MAX_FRAME;
    if (blen > max) {
      /* Find the rid at the start of the frame, then drop the frame
       * without buffering it: the byte stream stays in sync. */
      size_t want = blen < 64 ? blen : 64;
      if (avail - 4 < want)
        break;
      uint64_t rid = 0;
      size_t have = avail - 4 < blen ? avail - 4 : blen;
      if (!evs__proto_peek_rid(c->in + c->in_off + 4, have, &rid))
        rid = 0;
      EVSD_ADD(srv->metrics.proto_errors, 1);
      char msg[160];
      snprintf(msg, sizeof msg,
               "frame of %u bytes is over the limit of %u bytes%s", blen, max,
               c->handshaken ? "" : " before the handshake");
      evsd_log(EVSD_INFO,
               "event=frame_too_large conn=%llu peer=%s bytes=%u "
               "limit=%u",
               (unsigned long long)c->id, c->peer, blen, max);
      evsd_conn_send_error(c, EVS__K_REPLY, rid, EVS_ETOOLARGE, msg);
      if (!c->handshaken) {
        finish_after_reply(c);
        return;
      }
      c->in_off += 4;
      c->skip = blen;
      continue;
    }
    if (avail - 4 < blen) {
      /* Make room for the whole frame now that its size is known. */
      size_t need = 4 + (size_t)blen;
      if (c->in_cap - c->in_off < need) {
        memmove(c->in, c->in + c->in_off, avail);
        c->in_len = avail;
        c->in_off = 0;
        if (c->in_cap < need) {
          uint8_t *p = realloc(c->in, need);
          if (p == NULL) {
            evsd_conn_close(c, "out of memory");
            return;
          }
          c->in = p;
          c->in_cap = need;
        }
      }
      break;
    }
    const uint8_t *body = c->in + c->in_off + 4;
    c->in_off += 4 + (size_t)blen;
    handle_frame(c, body, blen);
  }
  if (c->closing)
    return;
  /* Give back a large buffer once the big frame that needed it is gone. */
  if (c->in_cap > 4 * EVSD_READ_CHUNK &&
      c->in_len - c->in_off <= EVSD_READ_CHUNK) {
    size_t left = c->in_len - c->in_off;
    memmove(c->in, c->in + c->in_off, left);
    c->in_off = 0;
    c->in_len = left;
    uint8_t *p = realloc(c->in, 2 * EVSD_READ_CHUNK);
    if (p) {
      c->in = p;
      c->in_cap = 2 * EVSD_READ_CHUNK;
    }
  }
  if (throttled(c))
    stop_reading(c);
  else
    start_reading(c);
}

void evsd_conn_maybe_resume(evsd_conn *c) {
  if (c->closing || c->close_after_flush || c->srv->stopping)
    return;
  if (!throttled(c))
    process(c);
}

void evsd_conn_op_done(evsd_conn *c) {
  c->inflight--;
  if (c->closing)
    return;
  if (c->srv->stopping) {
    if (c->inflight == 0)
      evsd_conn_goodbye(c, EVS_ECLOSED, "the server is shutting down");
    return;
  }
  evsd_conn_maybe_resume(c);
}

void evsd_conn_tick(evsd_conn *c, uint64_t now) {
  evsd_server *srv = c->srv;
  if (c->closing)
    return;
  if (c->close_after_flush) {
    if (now >= c->close_deadline_ms)
      evsd_conn_close(c, "the client did not read the server's last frame");
    return;
  }
  if (!c->handshaken && now - c->last_rx_ms > EVSD_HELLO_TIMEOUT_MS) {
    evsd_conn_goodbye(c, EVS_ETIMEDOUT, "no hello within 10 s");
    return;
  }
  uint64_t idle = (uint64_t)srv->cfg->idle_timeout_s * 1000u;
  if (idle && c->inflight == 0 && c->nsubs == 0 && c->out_bytes == 0 &&
      now - c->last_rx_ms > idle) {
    char msg[96];
    snprintf(msg, sizeof msg, "idle for %u s", srv->cfg->idle_timeout_s);
    evsd_conn_goodbye(c, EVS_ETIMEDOUT, msg);
    return;
  }
  if (c->over_soft_since_ms) {
    uint64_t since = c->over_soft_since_ms > c->last_write_ms
                         ? c->over_soft_since_ms
                         : c->last_write_ms;
    if (now - since > (uint64_t)srv->cfg->output_stall_timeout_s * 1000u) {
      EVSD_ADD(srv->metrics.slow_consumers_closed, 1);
      evsd_log(EVSD_WARN,
               "event=slow_consumer conn=%llu peer=%s unsent_bytes=%llu "
               "stalled_s=%u",
               (unsigned long long)c->id, c->peer,
               (unsigned long long)c->out_bytes,
               srv->cfg->output_stall_timeout_s);
      evsd_conn_close(c, "output over the soft limit without progress");
    }
  }
}

void evsd_conn_accept(evsd_server *srv) {
  evsd_conn *c = calloc(1, sizeof *c);
  if (c == NULL) {
    evsd_log(EVSD_ERROR, "event=accept_failed error=ENOMEM");
    return;
  }
  c->srv = srv;
  c->refs = 1;
  c->id = ++srv->next_conn_id;
  uv_tcp_init(srv->loop, &c->tcp);
  c->tcp.data = c;
  /* Linked before anything can close it: on_close unlinks. */
  c->next = srv->conns;
  if (srv->conns)
    srv->conns->prev = c;
  srv->conns = c;
  srv->nconns++;
  srv->pending++; /* released by on_close */
  EVSD_ADD(srv->metrics.conns_open, 1);
  int rc = uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)&c->tcp);
  if (rc < 0) {
    snprintf(c->peer, sizeof c->peer, "?");
    evsd_conn_close(c, uv_strerror(rc));
    return;
  }
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0)
    evsd_addr_format((struct sockaddr *)&ss, c->peer, sizeof c->peer);
  else
    snprintf(c->peer, sizeof c->peer, "?");
  uv_tcp_nodelay(&c->tcp, 1);
  EVSD_ADD(srv->metrics.conns_total, 1);
  c->last_rx_ms = c->last_write_ms = evsd_now_ms(srv);
  evsd_log(EVSD_DEBUG, "event=conn_opened conn=%llu peer=%s",
           (unsigned long long)c->id, c->peer);
  if (srv->stopping) {
    EVSD_ADD(srv->metrics.conns_rejected, 1);
    evsd_conn_goodbye(c, EVS_ECLOSED, "the server is shutting down");
    return;
  }
  if (srv->nconns > srv->cfg->max_connections) {
    EVSD_ADD(srv->metrics.conns_rejected, 1);
    char msg[96];
    snprintf(msg, sizeof msg, "too many connections (limit %u)",
             srv->cfg->max_connections);
    evsd_conn_goodbye(c, EVS_EBUSY, msg);
    return;
  }
  start_reading(c);
}
