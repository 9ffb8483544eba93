/*
 * evstore-cli — the remote backend (--connect HOST:PORT): the operations of
 * backend.h over the C client library (include/evstore/client.h).
 *
 * The server runs the same library calls on its store as the local backend
 * does on a directory (reads, stream info, the state fold, stats, verify,
 * the replay of a built-in projection), and its replies carry the same
 * evs_* values and EVS_E* codes, so every command prints the same output
 * in both modes. Where the protocol differs from the embedded API, this
 * file bridges the gap:
 *  - a stream subscription resumes after a version, not a position: the
 *    position of --from is turned into the stream's version at that
 *    position first (as evs_sub_open does), and --type is applied here,
 *    since the server filters types on $all subscriptions only;
 *  - the library's evs_sub_next() returns batches; the client delivers one
 *    event at a time, and a batch here ends when no further event is
 *    buffered (then the output is flushed);
 *  - a server that predates the operations added later to protocol 1
 *    lists streams without their metadata: the
 *    listing then asks for each stream's info (export needs it), and the
 *    commands that need a later operation fail with EVS_EPROTO ("unknown
 *    op").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

/* Per request; verify and replay send progress at least every second, so
 * this bounds the silence of a server, not the length of an operation. */
#define REMOTE_TIMEOUT_MS 120000
#define REMOTE_CONNECT_TIMEOUT_MS 5000
/* Room for the frame's own keys in an append. */
#define REMOTE_FRAME_MARGIN (64u * 1024u)

typedef struct remote_backend {
  cli_backend base;
  evs_client *client;
  int legacy; /* the server predates the later operations (no "head") */
  char err[512];
} remote_backend;

static remote_backend *R(cli_backend *b) { return (remote_backend *)b; }

/* Keeps the client's detail of a failed call: later calls reset it. */
static int keep(cli_backend *b, int rc) {
  if (rc < 0)
    snprintf(R(b)->err, sizeof R(b)->err, "%s", evs_client_last_error());
  return rc;
}

/* A callback's return: 0 go on, 1 stop (success), < 0 fail. */
static int stop_code(int r) { return r < 0 ? r : 0; }

static int r_append(cli_backend *b, const char *stream, int64_t expected,
                    evs_event_data *events, size_t count,
                    evs_append_result *out) {
  return keep(b, evs_client_append(R(b)->client, stream, expected, events,
                                   count, out));
}

static int r_append_at(cli_backend *b, const char *stream, int64_t expected,
                       evs_event_data *events, size_t count,
                       int64_t timestamp_ns, evs_append_result *out) {
  evs_append_part part;
  memset(&part, 0, sizeof part);
  part.stream = stream;
  part.expected = expected;
  part.events = events;
  part.count = count;
  int rc = evs_client_append_at(R(b)->client, &part, 1, timestamp_ns, NULL);
  if (out)
    *out = part.result;
  return keep(b, rc);
}

static int drain(cli_backend *b, evs_client_iter *it, cli_event_fn fn,
                 void *payload, uint64_t *checkpoint) {
  const evs_event *ev;
  int rc;
  while ((rc = evs_client_iter_next(it, &ev)) == 1) {
    int r = fn(ev, payload);
    if (r) {
      rc = stop_code(r);
      break;
    }
  }
  if (rc < 0)
    keep(b, rc);
  if (checkpoint) {
    int64_t cp = evs_client_iter_checkpoint(it);
    *checkpoint = cp > 0 ? (uint64_t)cp : 0;
  }
  evs_client_iter_free(it);
  return rc;
}

static int r_read_stream(cli_backend *b, const char *stream,
                         const evs_read_options *opts, cli_event_fn fn,
                         void *payload) {
  evs_client_iter *it;
  int rc = evs_client_read_stream(&it, R(b)->client, stream, opts);
  if (rc)
    return keep(b, rc);
  return drain(b, it, fn, payload, NULL);
}

static int r_read_all(cli_backend *b, const evs_read_all_options *opts,
                      cli_event_fn fn, void *payload, uint64_t *checkpoint) {
  evs_client_iter *it;
  int rc = evs_client_read_all(&it, R(b)->client, opts);
  if (rc)
    return keep(b, rc);
  return drain(b, it, fn, payload, checkpoint);
}

static int r_read_event(cli_backend *b, uint64_t position, cli_event_fn fn,
                        void *payload) {
  evs_event *ev;
  int rc = evs_client_read_event(R(b)->client, position, &ev);
  if (rc)
    return keep(b, rc);
  rc = fn(ev, payload);
  evs_client_event_free(ev);
  return stop_code(rc);
}

static int r_find_event_id(cli_backend *b, const evs_uuid *id,
                           uint64_t *position) {
  return keep(b, evs_client_find_event_id(R(b)->client, id, position));
}

static int r_stream_info(cli_backend *b, const char *stream,
                         evs_stream_info *out) {
  return keep(b, evs_client_stream_info(R(b)->client, stream, out));
}

static void r_stream_info_clear(cli_backend *b, evs_stream_info *info) {
  (void)b;
  evs_client_stream_info_clear(info);
}

typedef struct lister {
  cli_backend *b;
  cli_stream_fn fn;
  void *payload;
  int rc; /* the callback's code */
} lister;

/* Fills the metadata a legacy server's listing lacks. */
static int legacy_info(lister *l, const char *name, size_t len,
                       const evs_stream_info *info, evs_stream_info *full) {
  char stream[EVS_MAX_NAME_LEN + 1];
  snprintf(stream, sizeof stream, "%.*s", (int)len, name);
  int rc = evs_client_stream_info(R(l->b)->client, stream, full);
  if (rc)
    return keep(l->b, rc);
  full->flags = info->flags;
  full->version = info->version;
  return 0;
}

static int on_stream(const char *name, size_t len, const evs_stream_info *info,
                     void *payload) {
  lister *l = payload;
  int r;
  if (R(l->b)->legacy) {
    evs_stream_info full;
    r = legacy_info(l, name, len, info, &full);
    if (r == 0) {
      r = l->fn(name, len, &full, l->payload);
      evs_client_stream_info_clear(&full);
    }
  } else {
    r = l->fn(name, len, info, l->payload);
  }
  if (r)
    l->rc = r;
  return r;
}

static int r_streams(cli_backend *b, const char *prefix, int include_deleted,
                     cli_stream_fn fn, void *payload) {
  lister l = {b, fn, payload, 0};
  int rc = evs_client_list_streams(R(b)->client, prefix, NULL, include_deleted,
                                   on_stream, &l);
  if (l.rc)
    return stop_code(l.rc);
  return keep(b, rc);
}

static int r_set_metadata(cli_backend *b, const char *stream,
                          const evs_stream_metadata *md) {
  return keep(b, evs_client_set_metadata(R(b)->client, stream, md));
}

static int r_delete_stream(cli_backend *b, const char *stream,
                           int64_t expected, int hard) {
  return keep(b, evs_client_delete(R(b)->client, stream, expected, hard));
}

static int r_head_position(cli_backend *b, uint64_t *out) {
  return keep(b, evs_client_ping(R(b)->client, out));
}

static int r_head(cli_backend *b, uint64_t *position, int64_t *ts) {
  *position = 0;
  *ts = 0;
  return keep(b, evs_client_head(R(b)->client, position, ts));
}

static int r_stats(cli_backend *b, evs_stats *out, int full) {
  (void)full; /* the server always totals the bytes */
  return keep(b, evs_client_stats(R(b)->client, out));
}

static int r_verify(cli_backend *b, evs_verify_report *out, evs_verify_cb cb,
                    void *payload) {
  return keep(b, evs_client_verify(R(b)->client, out, cb, payload));
}

/*
 * The version of `stream` to resume after, for a subscription that starts
 * after `position`: the version of its last event at or before it (the
 * rule of evs_sub_open), or EVS_CLIENT_FROM_START.
 */
static int stream_checkpoint(cli_backend *b, const char *stream,
                             uint64_t position, int64_t *from) {
  *from = EVS_CLIENT_FROM_START;
  if (position == 0)
    return 0;
  evs_read_options ro = EVS_READ_OPTIONS_INIT;
  ro.direction = EVS_BACKWARD;
  ro.from_version = EVS_FROM_END;
  ro.as_of_position = position;
  ro.limit = 1;
  evs_client_iter *it;
  int rc = evs_client_read_stream(&it, R(b)->client, stream, &ro);
  if (rc == EVS_ENOSTREAM || rc == EVS_ESTREAMDELETED)
    return 0; /* the subscription reports a tombstone */
  if (rc)
    return keep(b, rc);
  const evs_event *ev;
  rc = evs_client_iter_next(it, &ev);
  if (rc == 1)
    *from = ev->version;
  evs_client_iter_free(it);
  return rc < 0 ? keep(b, rc) : 0;
}

static int r_subscribe(cli_backend *b, const evs_sub_options *opts,
                       cli_event_fn fn, cli_batch_fn batch_end, void *payload,
                       volatile sig_atomic_t *stop) {
  evs_client_sub_options so = EVS_CLIENT_SUB_OPTIONS_INIT;
  const char *type = opts->event_type;
  size_t type_len = type ? strlen(type) : 0;
  int rc;
  if (opts->stream) {
    so.stream = opts->stream;
  } else {
    so.category = opts->category;
    so.stream_prefix = opts->stream_prefix;
    so.event_type = type;
    so.group_size = opts->group_size;
    so.group_member = opts->group_member;
  }
  if (opts->start == EVS_SUB_FROM_END) {
    so.from_end = 1;
  } else if (opts->stream) {
    if ((rc = stream_checkpoint(b, opts->stream, opts->checkpoint, &so.from)))
      return rc;
  } else if (opts->checkpoint) {
    so.from = (int64_t)opts->checkpoint;
  }
  evs_client_sub *sub;
  rc = evs_client_subscribe(&sub, R(b)->client, &so);
  if (rc)
    return keep(b, rc);
  int pending = 0; /* events delivered since the last batch_end */
  rc = 0;
  while (!*stop) {
    const evs_event *ev;
    /* A short wait, so that *stop is seen; none while events are
     * buffered, so that a batch ends when the buffer runs dry. */
    int n = evs_client_sub_next(sub, &ev, pending ? 0 : 100);
    if (n < 0) {
      rc = keep(b, n);
      break;
    }
    int r = 0;
    if (n == 1) {
      if (opts->stream && type &&
          (ev->type.len != type_len || memcmp(ev->type.data, type, type_len)))
        continue;
      r = fn(ev, payload);
      pending = 1;
    } else if (pending) {
      pending = 0;
      if (batch_end)
        r = batch_end(payload);
    }
    if (r) {
      rc = stop_code(r);
      break;
    }
  }
  evs_client_sub_close(sub);
  return rc;
}

static int r_state(cli_backend *b, const char *stream, int64_t as_of_ns,
                   char **out, int64_t *version) {
  char *s = NULL;
  int rc = evs_client_state(R(b)->client, stream, 0, as_of_ns, &s, version);
  if (rc)
    return keep(b, rc);
  *out = strdup(s);
  evs_client_state_free(s);
  return *out ? 0 : EVS_ENOMEM;
}

typedef struct progress_arg {
  cli_progress_fn fn;
  void *payload;
} progress_arg;

static int on_progress(uint64_t done, uint64_t total, void *payload) {
  progress_arg *p = payload;
  p->fn(done, total, p->payload);
  return 0;
}

static int r_replay(cli_backend *b, const char *name, cli_progress_fn progress,
                    void *payload, evs_proj_status *out) {
  progress_arg p = {progress, payload};
  return keep(b, evs_client_replay(R(b)->client, name,
                                   progress ? on_progress : NULL, &p, out));
}

static const char *r_last_error(cli_backend *b) { return R(b)->err; }

static void r_close(cli_backend *b, int failed) {
  (void)failed;
  if (b == NULL)
    return;
  evs_client_close(R(b)->client);
  free(b);
}

static const cli_backend_ops remote_ops = {
    .name = "remote",
    .append = r_append,
    .append_at = r_append_at,
    .read_stream = r_read_stream,
    .read_all = r_read_all,
    .read_event = r_read_event,
    .find_event_id = r_find_event_id,
    .stream_info = r_stream_info,
    .stream_info_clear = r_stream_info_clear,
    .streams = r_streams,
    .set_metadata = r_set_metadata,
    .delete_stream = r_delete_stream,
    .head_position = r_head_position,
    .head = r_head,
    .stats = r_stats,
    .verify = r_verify,
    .subscribe = r_subscribe,
    .state = r_state,
    .replay = r_replay,
    .last_error = r_last_error,
    .close = r_close,
};

int cli_backend_remote_open(cli_backend **out, const char *host_port,
                            const char *token, const char **detail) {
  static _Thread_local char msg[512];
  *out = NULL;
  *detail = "";
  evs_client_options o = EVS_CLIENT_OPTIONS_INIT;
  o.token = token;
  o.client_name = "evstore-cli";
  o.connect_timeout_ms = REMOTE_CONNECT_TIMEOUT_MS;
  o.timeout_ms = REMOTE_TIMEOUT_MS;
  o.reconnect = 0; /* one command, one connection: a lost one is an error */
  evs_client *c = NULL;
  int rc = evs_client_connect(&c, host_port, &o);
  if (rc) {
    snprintf(msg, sizeof msg, "%s", evs_client_last_error());
    *detail = msg;
    return rc;
  }
  remote_backend *b = calloc(1, sizeof *b);
  if (b == NULL) {
    evs_client_close(c);
    return EVS_ENOMEM;
  }
  b->base.ops = &remote_ops;
  b->client = c;
  /* Which operations the server has: "head" came with the later ones. */
  uint64_t head;
  int64_t ts;
  rc = evs_client_head(c, &head, &ts);
  if (rc == EVS_EPROTO) {
    b->legacy = 1;
  } else if (rc) {
    snprintf(msg, sizeof msg, "%s", evs_client_last_error());
    *detail = msg;
    evs_client_close(c);
    free(b);
    return rc;
  }
  evs_client_limits lim;
  evs_client_get_limits(c, &lim);
  b->base.max_append_events =
      lim.max_events && lim.max_events < UINT32_MAX ? (uint32_t)lim.max_events
                                                    : 0;
  if (lim.max_frame > 2 * REMOTE_FRAME_MARGIN)
    b->base.max_append_bytes = lim.max_frame - REMOTE_FRAME_MARGIN;
  else if (lim.max_frame)
    b->base.max_append_bytes = lim.max_frame / 2;
  *out = &b->base;
  return 0;
}
