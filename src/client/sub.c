/*
 * evstore client — subscriptions, on a connection of their own.
 *
 * The subscription reads pushes only when the caller asks for events, so
 * a slow caller slows its own connection (TCP backpressure) and the server
 * pauses the subscription instead of buffering. When the connection is
 * lost, the next call reconnects (with a growing pause between attempts)
 * and subscribes again from the checkpoint.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client/internal.h"

#define EVS__SUB_RID 1u

struct evs_client_sub {
  char host[256];
  char port[16];
  char *token;
  char *name;
  int connect_timeout_ms;
  uint32_t max_reply;
  /* what to subscribe to */
  char *stream, *prefix, *category, *event_type;
  uint32_t group_size, group_member, batch;
  int from_end_pending; /* "from the end" not resolved yet */
  int64_t cp;           /* checkpoint: position ($all) or version */
  int fd;
  /* bytes received and not yet parsed: rbuf[roff..rlen) */
  uint8_t *rbuf;
  size_t roff, rlen, rcap;
  /* the current push */
  uint8_t *body;
  evs__proto_cursor cur;
  int in_frame;
  int64_t frame_cp;
  int frame_has_cp;
  evs_event ev;
  int caught_up;
  int ended;
  int end_code;
  unsigned reconnects;
  unsigned failures; /* consecutive failed attempts */
  uint64_t next_attempt_ms;
};

static evs_slice cs(const char *s) {
  evs_slice r = { s, s ? strlen(s) : 0 };
  return r;
}

static void drop_connection(evs_client_sub *s) {
  if (s->fd >= 0)
    close(s->fd);
  s->fd = -1;
  free(s->body);
  s->body = NULL;
  s->in_frame = 0;
  s->roff = s->rlen = 0;
  /* Wait a little longer after each failure: 0, 50, 100, 200... 2000 ms. */
  uint64_t pause =
      s->failures ? 50u << (s->failures > 6 ? 6 : s->failures - 1) : 0;
  if (pause > 2000)
    pause = 2000;
  s->failures++;
  s->next_attempt_ms = evs__cl_now_ms() + pause;
}

/* Connects, says hello and subscribes from the checkpoint. */
static int open_sub(evs_client_sub *s) {
  int fd;
  evs__proto_reply rep;
  uint8_t *hb;
  int rc = evs__cl_open(s->host, s->port, s->token, s->name,
                        s->connect_timeout_ms, &fd, &rep, &hb);
  if (rc)
    return rc;
  uint64_t max_frame = rep.max_frame;
  s->max_reply =
      (uint32_t)((max_frame + rep.max_event_size + (1u << 20)) > UINT32_MAX
                     ? UINT32_MAX
                     : max_frame + rep.max_event_size + (1u << 20));
  free(hb);
  evs__proto_request q;
  evs__proto_request_init(&q);
  q.op = EVS__P_SUBSCRIBE;
  q.rid = EVS__SUB_RID;
  if (s->stream) {
    q.stream = cs(s->stream);
    q.has_stream = 1;
  }
  if (s->prefix) {
    q.stream_prefix = cs(s->prefix);
    q.has_stream_prefix = 1;
  }
  if (s->category) {
    q.category = cs(s->category);
    q.has_category = 1;
  }
  if (s->event_type) {
    q.event_type = cs(s->event_type);
    q.has_event_type = 1;
  }
  q.group_size = s->group_size;
  q.group_member = s->group_member;
  q.batch = s->batch;
  if (s->from_end_pending) {
    q.from_end = 1;
  } else {
    q.from = s->cp;
    q.has_from = 1;
  }
  uint64_t deadline = evs__cl_deadline(s->connect_timeout_ms);
  evs__buf b = EVS__BUF_INIT;
  rc = evs__proto_encode_request(&b, &q);
  if (rc == 0)
    rc = evs__cl_write_all(fd, b.data, b.len, deadline);
  evs__buf_free(&b);
  while (rc == 0) {
    uint8_t *body;
    uint32_t len;
    rc = evs__cl_read_frame(fd, s->max_reply, deadline, deadline, &body, &len);
    if (rc)
      break;
    char err[128];
    rc = evs__proto_decode_reply(&rep, body, len, err, sizeof err);
    if (rc) {
      rc = evs__cl_err(EVS_EPROTO, "malformed reply: %s", err);
    } else if (rep.kind == EVS__K_REPLY && rep.rid == EVS__SUB_RID) {
      rc = evs__cl_reply_error(&rep);
      free(body);
      break;
    } else if (rep.kind == EVS__K_GOODBYE) {
      rc = evs__cl_err(rep.code ? rep.code : EVS_ECONN, "server: %.*s",
                       (int)rep.message.len,
                       rep.message.data ? (const char *)rep.message.data : "");
    }
    free(body);
  }
  if (rc) {
    close(fd);
    return rc;
  }
  s->fd = fd;
  s->failures = 0;
  return 0;
}

/* Errors after which resubscribing cannot help. */
static int is_final(int rc) {
  return rc == EVS_EAUTH || rc == EVS_EBADNAME || rc == EVS_EINVAL ||
         rc == EVS_EPROTO || rc == EVS_ESTREAMDELETED || rc == EVS_ENOMEM;
}

static char *dup_opt(const char *v, int *fail) {
  if (v == NULL)
    return NULL;
  char *p = strdup(v);
  if (p == NULL)
    *fail = 1;
  return p;
}

int evs_client_subscribe(evs_client_sub **out, evs_client *c,
                         const evs_client_sub_options *opts) {
  evs__cl_clear_error();
  if (out == NULL || c == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL argument");
  *out = NULL;
  evs_client_sub_options o = EVS_CLIENT_SUB_OPTIONS_INIT;
  if (opts) {
    if (opts->version != EVS_CLIENT_SUB_OPTIONS_VERSION)
      return evs__cl_err(EVS_EINVAL, "unknown options version %u",
                         opts->version);
    o = *opts;
  }
  evs_client_sub *s = calloc(1, sizeof *s);
  if (s == NULL)
    return evs__cl_err(EVS_ENOMEM, "out of memory");
  int fail = 0;
  memcpy(s->host, c->host, sizeof s->host);
  memcpy(s->port, c->port, sizeof s->port);
  s->token = dup_opt(c->token, &fail);
  s->name = dup_opt(c->name, &fail);
  s->stream = dup_opt(o.stream, &fail);
  s->prefix = dup_opt(o.stream_prefix, &fail);
  s->category = dup_opt(o.category, &fail);
  s->event_type = dup_opt(o.event_type, &fail);
  s->fd = -1;
  if (fail) {
    evs_client_sub_close(s);
    return evs__cl_err(EVS_ENOMEM, "out of memory");
  }
  s->connect_timeout_ms = c->connect_timeout_ms;
  s->group_size = o.group_size;
  s->group_member = o.group_member;
  s->batch = o.batch;
  s->from_end_pending = o.from_end;
  if (o.from == EVS_CLIENT_FROM_START)
    s->cp = s->stream ? -1 : 0;
  else
    s->cp = o.from;
  int rc = open_sub(s);
  if (rc) {
    evs_client_sub_close(s);
    return rc;
  }
  *out = s;
  return 0;
}

static void sleep_ms(int ms) {
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
  nanosleep(&ts, NULL);
}

/* Pushes are read through a buffer: one recv() takes whatever the server
 * has sent (usually a whole frame, often several), where reading the
 * header and then the body took two calls and a poll() per frame. */
#define EVS__SUB_RBUF 16384u

/*
 * The next frame of the subscription's connection, as evs__cl_read_frame
 * returns it (*body is the caller's): EVS_ETIMEDOUT when nothing of a frame
 * came before `deadline`; once part of a frame is here, the rest must come
 * within 60 s, or EVS_ECONN (the stream is out of sync).
 */
static int sub_read_frame(evs_client_sub *s, uint64_t deadline, uint8_t **body,
                          uint32_t *len) {
  uint64_t body_deadline = 0;
  *body = NULL;
  *len = 0;
  for (;;) {
    size_t avail = s->rlen - s->roff;
    uint32_t n = 0;
    size_t need = 4;
    if (avail >= 4 && evs__proto_frame_header(s->rbuf + s->roff, avail, &n)) {
      if (n == 0 || n > s->max_reply)
        return evs__cl_err(EVS_EPROTO,
                           "the server sent a frame of %u bytes (limit %u)", n,
                           s->max_reply);
      need = 4 + (size_t)n;
      if (avail >= need) {
        uint8_t *p = malloc(n);
        if (p == NULL)
          return evs__cl_err(EVS_ENOMEM, "out of memory for a %u-byte frame",
                             n);
        memcpy(p, s->rbuf + s->roff + 4, n);
        s->roff += need;
        if (s->roff == s->rlen)
          s->roff = s->rlen = 0;
        *body = p;
        *len = n;
        return 0;
      }
    }
    /* Make room for the rest of the frame (and more). */
    if (s->roff > 0) {
      memmove(s->rbuf, s->rbuf + s->roff, avail);
      s->rlen = avail;
      s->roff = 0;
    }
    size_t want = need > EVS__SUB_RBUF ? need : EVS__SUB_RBUF;
    if (s->rcap < want || (s->rcap > 4 * EVS__SUB_RBUF &&
                           want <= EVS__SUB_RBUF && avail <= EVS__SUB_RBUF)) {
      /* Grow for a large frame; shrink back after one. */
      uint8_t *nb = realloc(s->rbuf, want);
      if (nb == NULL)
        return evs__cl_err(EVS_ENOMEM, "out of memory for a %zu-byte frame",
                           want);
      s->rbuf = nb;
      s->rcap = want;
    }
    ssize_t r = recv(s->fd, s->rbuf + s->rlen, s->rcap - s->rlen, 0);
    if (r > 0) {
      s->rlen += (size_t)r;
      continue;
    }
    if (r == 0)
      return evs__cl_err(EVS_ECONN, "the server closed the connection");
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return evs__cl_err(EVS_ECONN, "recv: %s", strerror(errno));
    /* Nothing more for now: wait, for the start of a frame until the
     * caller's deadline, for the rest of one up to 60 s. */
    uint64_t dl = deadline;
    if (s->rlen > 0) {
      if (body_deadline == 0)
        body_deadline = evs__cl_deadline(60000);
      dl = body_deadline;
    }
    int ms = evs__cl_remaining(dl);
    struct pollfd pf = { s->fd, POLLIN, 0 };
    /* Polling with no time left would only say what recv() just did. */
    int pr = ms == 0 ? 0 : poll(&pf, 1, ms);
    if (pr < 0 && errno != EINTR)
      return evs__cl_err(EVS_ECONN, "poll: %s", strerror(errno));
    if (pr == 0) {
      if (s->rlen > 0)
        return evs__cl_err(EVS_ECONN, "timed out in the middle of a frame");
      return evs__cl_err(EVS_ETIMEDOUT, "timed out waiting for the server");
    }
  }
}

static void advance(evs_client_sub *s, int64_t cp) {
  if (s->stream ? cp > s->cp : (uint64_t)cp > (uint64_t)s->cp)
    s->cp = cp;
}

int evs_client_sub_next(evs_client_sub *s, const evs_event **ev,
                        int timeout_ms) {
  evs__cl_clear_error();
  if (s == NULL || ev == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL argument");
  uint64_t deadline = evs__cl_deadline(timeout_ms);
  for (;;) {
    if (s->ended)
      return s->end_code;
    if (s->in_frame) {
      evs__proto_event pe;
      int rc = evs__proto_next_event(&s->cur, &pe);
      if (rc == 1) {
        evs__cl_to_event(&pe, &s->ev);
        advance(s, s->stream ? pe.version : (int64_t)pe.position);
        *ev = &s->ev;
        return 1;
      }
      /* Every event of the push was delivered: its checkpoint holds. */
      if (s->frame_has_cp)
        advance(s, s->frame_cp);
      s->in_frame = 0;
      free(s->body);
      s->body = NULL;
    }
    if (s->fd < 0) {
      uint64_t now = evs__cl_now_ms();
      if (now < s->next_attempt_ms) {
        int left = evs__cl_remaining(deadline);
        if (left == 0)
          return 0;
        uint64_t wait = s->next_attempt_ms - now;
        sleep_ms(left < 0 || (uint64_t)left > wait ? (int)wait : left);
        continue;
      }
      int rc = open_sub(s);
      if (rc) {
        if (is_final(rc)) {
          s->ended = 1;
          s->end_code = rc;
          return rc;
        }
        drop_connection(s);
        if (evs__cl_remaining(deadline) == 0)
          return 0;
        continue;
      }
      s->reconnects++;
    }
    uint8_t *body;
    uint32_t len;
    int rc = sub_read_frame(s, deadline, &body, &len);
    if (rc == EVS_ETIMEDOUT)
      return 0;
    if (rc) {
      drop_connection(s);
      continue;
    }
    evs__proto_reply rep;
    char err[128];
    if (evs__proto_decode_reply(&rep, body, len, err, sizeof err)) {
      free(body);
      evs__cl_err(EVS_EPROTO, "malformed push: %s", err);
      drop_connection(s);
      continue;
    }
    switch (rep.kind) {
    case EVS__K_EVENTS:
      if (rep.rid != EVS__SUB_RID)
        break;
      s->from_end_pending = 0;
      s->body = body;
      body = NULL;
      s->in_frame = 1;
      s->frame_has_cp = rep.has_checkpoint;
      s->frame_cp = (int64_t)rep.checkpoint;
      evs__proto_cursor_init(&s->cur, rep.events_raw, rep.nevents);
      break;
    case EVS__K_CAUGHT_UP:
      if (rep.rid != EVS__SUB_RID)
        break;
      s->from_end_pending = 0;
      s->caught_up = 1;
      if (rep.has_checkpoint)
        advance(s, (int64_t)rep.checkpoint);
      break;
    case EVS__K_SUB_END:
      if (rep.rid != EVS__SUB_RID)
        break;
      s->ended = 1;
      s->end_code = rep.code ? rep.code : EVS_ECLOSED;
      evs__cl_reply_error(&rep);
      free(body);
      if (s->end_code == EVS_ECLOSED) {
        /* The server is shutting down: resume elsewhere/later. */
        s->ended = 0;
        drop_connection(s);
        continue;
      }
      return s->end_code;
    case EVS__K_GOODBYE:
      free(body);
      body = NULL;
      drop_connection(s);
      break;
    default:
      break;
    }
    free(body);
  }
}

int evs_client_sub_run(evs_client_sub *s, evs_client_event_cb cb, void *payload,
                       int idle_ms) {
  if (cb == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL callback");
  for (;;) {
    /* Set only when evs_client_sub_next returns 1; the analyzer cannot
     * see that s->end_code, returned when the subscription has ended, is
     * always negative. */
    const evs_event *ev = NULL;
    int rc = evs_client_sub_next(s, &ev, idle_ms);
    if (rc <= 0)
      return rc;
    rc = cb(ev, payload);
    if (rc)
      return rc;
  }
}

int evs_client_sub_wait(evs_client_sub *const *subs, size_t n, int timeout_ms,
                        unsigned char *ready) {
  evs__cl_clear_error();
  if (subs == NULL || ready == NULL || n == 0 || n > INT_MAX)
    return evs__cl_err(EVS_EINVAL, "NULL subscriptions or none");
  for (size_t i = 0; i < n; i++)
    if (subs[i] == NULL)
      return evs__cl_err(EVS_EINVAL, "subscription %zu is NULL", i);
  struct pollfd *pf = malloc(n * sizeof *pf);
  if (pf == NULL)
    return evs__cl_err(EVS_ENOMEM, "out of memory");
  uint64_t deadline = evs__cl_deadline(timeout_ms);
  int count;
  for (;;) {
    /* What is ready without waiting, and the fds to wait on. */
    uint64_t now = evs__cl_now_ms();
    uint64_t wake = deadline; /* the next reconnection attempt, if sooner */
    count = 0;
    for (size_t i = 0; i < n; i++) {
      const evs_client_sub *s = subs[i];
      ready[i] = 0;
      pf[i].fd = -1; /* poll ignores negative fds */
      pf[i].events = POLLIN;
      pf[i].revents = 0;
      if (s->ended || s->in_frame || (s->fd >= 0 && s->rlen > s->roff)) {
        ready[i] = 1; /* something to deliver or bytes to parse */
      } else if (s->fd < 0) {
        if (now >= s->next_attempt_ms)
          ready[i] = 1;
        else if (s->next_attempt_ms < wake)
          wake = s->next_attempt_ms;
      } else {
        pf[i].fd = s->fd;
      }
      count += ready[i];
    }
    if (count > 0)
      break;
    int ms = evs__cl_remaining(wake);
    int rc = poll(pf, (nfds_t)n, ms);
    if (rc < 0 && errno != EINTR) {
      free(pf);
      return evs__cl_err(EVS_ECONN, "poll: %s", strerror(errno));
    }
    for (size_t i = 0; rc > 0 && i < n; i++) {
      if (pf[i].fd >= 0 && pf[i].revents) {
        ready[i] = 1;
        count++;
      }
    }
    if (count > 0)
      break;
    if (rc == 0 && evs__cl_remaining(deadline) == 0)
      break; /* the time ran out (a reconnection wake-up goes round) */
  }
  free(pf);
  return count;
}

int64_t evs_client_sub_checkpoint(const evs_client_sub *s) {
  return s ? s->cp : 0;
}

int evs_client_sub_caught_up(const evs_client_sub *s) {
  return s ? s->caught_up : 0;
}

unsigned evs_client_sub_reconnects(const evs_client_sub *s) {
  return s ? s->reconnects : 0;
}

void evs_client_sub_close(evs_client_sub *s) {
  if (s == NULL)
    return;
  if (s->fd >= 0)
    close(s->fd);
  free(s->body);
  free(s->rbuf);
  if (s->token)
    memset(s->token, 0, strlen(s->token));
  free(s->token);
  free(s->name);
  free(s->stream);
  free(s->prefix);
  free(s->category);
  free(s->event_type);
  free(s);
}
