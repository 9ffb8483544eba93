/*
 * evstore client — read iterators over pages of read_stream / read_all
 * replies. As soon as a page arrives, the request for the next one is
 * sent, so the server works on it while the caller consumes the current
 * page.
 */
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"

struct evs_client_iter {
  evs_client *c;
  int is_all;
  /* the request template; its strings point at the copies below */
  evs__proto_request q;
  char *stream, *prefix, *category, *event_type;
  uint64_t limit;     /* total asked by the caller; 0 = no limit */
  uint64_t requested; /* events in the pages received so far */
  /* the current page */
  uint8_t *body;
  evs__proto_reply rep;
  evs__proto_cursor cur;
  /* the next page, requested */
  evs__cl_slot *pending;
  int64_t pending_from;
  int done; /* no more pages */
  int err;
  int64_t checkpoint;
  evs_event ev;
};

typedef struct page_arg {
  evs_client_iter *it;
  int64_t from;
  int has_from;
  uint64_t limit;
} page_arg;

static int build_page(evs__buf *b, uint64_t rid, void *arg) {
  page_arg *p = arg;
  evs__proto_request q = p->it->q;
  q.rid = rid;
  q.from = p->from;
  q.has_from = p->has_from;
  q.limit = p->limit;
  return evs__proto_encode_request(b, &q);
}

/* Sends the request for the page starting at `from`. */
static int request_page(evs_client_iter *it, int64_t from, int has_from) {
  page_arg a = { it, from, has_from, 0 };
  if (it->limit) {
    uint64_t left = it->limit - it->requested;
    a.limit = left;
  }
  it->pending_from = from;
  return evs__cl_send(it->c, build_page, &a, &it->pending);
}

/* Waits for the requested page, makes it current and asks for the next. */
static int next_page(evs_client_iter *it) {
  evs__proto_reply rep;
  uint8_t *body;
  evs__cl_slot *s = it->pending;
  it->pending = NULL;
  int rc = evs__cl_wait(it->c, s, &rep, &body);
  if (rc == 0 && rep.code) {
    rc = evs__cl_reply_error(&rep);
    free(body);
  }
  if (rc)
    return rc;
  free(it->body);
  it->body = body;
  it->rep = rep;
  evs__proto_cursor_init(&it->cur, rep.events_raw, rep.nevents);
  it->requested += rep.nevents;
  int more =
      !rep.end && rep.has_next && (!it->limit || it->requested < it->limit);
  /* A backward read below version/position 0 has nothing more. */
  if (more && rep.next < 0)
    more = 0;
  if (more && rep.nevents == 0 && rep.next == it->pending_from)
    more = 0; /* no progress: do not spin */
  if (more)
    return request_page(it, rep.next, 1);
  it->done = 1;
  return 0;
}

static char *dup_opt(const char *s, int *fail) {
  if (s == NULL)
    return NULL;
  char *p = strdup(s);
  if (p == NULL)
    *fail = 1;
  return p;
}

static evs_slice cs(const char *s) {
  evs_slice r = { s, s ? strlen(s) : 0 };
  return r;
}

static int start(evs_client_iter *it, int64_t from, int has_from,
                 evs_client_iter **out) {
  int rc = request_page(it, from, has_from);
  if (rc == 0)
    rc = next_page(it);
  if (rc) {
    evs_client_iter_free(it);
    return rc;
  }
  *out = it;
  return 0;
}

int evs_client_read_stream(evs_client_iter **out, evs_client *c,
                           const char *stream, const evs_read_options *opts) {
  evs__cl_clear_error();
  if (out == NULL || c == NULL || stream == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL argument");
  *out = NULL;
  evs_read_options o = EVS_READ_OPTIONS_INIT;
  if (opts)
    o = *opts;
  evs_client_iter *it = calloc(1, sizeof *it);
  if (it == NULL)
    return evs__cl_err(EVS_ENOMEM, "out of memory");
  int fail = 0;
  it->c = c;
  it->stream = dup_opt(stream, &fail);
  if (fail) {
    free(it);
    return evs__cl_err(EVS_ENOMEM, "out of memory");
  }
  it->limit = o.limit;
  it->checkpoint = -1;
  evs__proto_request_init(&it->q);
  it->q.op = EVS__P_READ_STREAM;
  it->q.stream = cs(it->stream);
  it->q.has_stream = 1;
  it->q.backward = o.direction == EVS_BACKWARD;
  it->q.as_of_position = o.as_of_position;
  it->q.as_of_ns = o.as_of_ns;
  int has_from =
      !(o.direction == EVS_BACKWARD && o.from_version == EVS_FROM_END);
  return start(it, o.from_version, has_from, out);
}

int evs_client_read_all(evs_client_iter **out, evs_client *c,
                        const evs_read_all_options *opts) {
  evs__cl_clear_error();
  if (out == NULL || c == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL argument");
  *out = NULL;
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  if (opts)
    o = *opts;
  evs_client_iter *it = calloc(1, sizeof *it);
  if (it == NULL)
    return evs__cl_err(EVS_ENOMEM, "out of memory");
  int fail = 0;
  it->c = c;
  it->is_all = 1;
  it->prefix = dup_opt(o.stream_prefix, &fail);
  it->category = dup_opt(o.category, &fail);
  it->event_type = dup_opt(o.event_type, &fail);
  if (fail) {
    evs_client_iter_free(it);
    return evs__cl_err(EVS_ENOMEM, "out of memory");
  }
  it->limit = o.limit;
  evs__proto_request_init(&it->q);
  it->q.op = EVS__P_READ_ALL;
  it->q.backward = o.direction == EVS_BACKWARD;
  if (it->prefix) {
    it->q.stream_prefix = cs(it->prefix);
    it->q.has_stream_prefix = 1;
  }
  if (it->category) {
    it->q.category = cs(it->category);
    it->q.has_category = 1;
  }
  if (it->event_type) {
    it->q.event_type = cs(it->event_type);
    it->q.has_event_type = 1;
  }
  it->q.since_ns = o.since_ns;
  it->q.until_ns = o.until_ns;
  it->q.until_position = o.until_position;
  it->q.group_size = o.group_size;
  it->q.group_member = o.group_member;
  int has_from =
      !(o.direction == EVS_BACKWARD && o.from_position == EVS_POSITION_END);
  if (o.from_position > (uint64_t)INT64_MAX)
    has_from = 0;
  return start(it, has_from ? (int64_t)o.from_position : 0, has_from, out);
}

int evs_client_iter_next(evs_client_iter *it, const evs_event **ev) {
  if (it == NULL || ev == NULL)
    return evs__cl_err(EVS_EINVAL, "NULL argument");
  for (;;) {
    if (it->err)
      return it->err;
    evs__proto_event pe;
    int rc = evs__proto_next_event(&it->cur, &pe);
    if (rc == 1) {
      evs__cl_to_event(&pe, &it->ev);
      it->checkpoint = it->is_all ? (int64_t)pe.position : pe.version;
      *ev = &it->ev;
      return 1;
    }
    if (rc < 0)
      return it->err = evs__cl_err(EVS_EPROTO, "malformed event in a reply");
    /* The page is used up. */
    if (it->is_all && it->rep.has_checkpoint)
      it->checkpoint = (int64_t)it->rep.checkpoint;
    if (it->done || it->pending == NULL)
      return 0;
    rc = next_page(it);
    if (rc)
      return it->err = rc;
  }
}

int64_t evs_client_iter_checkpoint(const evs_client_iter *it) {
  return it ? it->checkpoint : 0;
}

void evs_client_iter_free(evs_client_iter *it) {
  if (it == NULL)
    return;
  if (it->pending)
    evs__cl_abandon(it->c, it->pending);
  free(it->body);
  free(it->stream);
  free(it->prefix);
  free(it->category);
  free(it->event_type);
  free(it);
}
