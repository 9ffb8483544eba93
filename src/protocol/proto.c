/*
 * evstore protocol — message codec (see proto.h and docs/protocol.md).
 */
#include "protocol/proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names -------------------------------------------------------------- */

static const char *const op_names[EVS__P_OP_COUNT] = {
  [EVS__P_NONE] = "?",
  [EVS__P_HELLO] = "hello",
  [EVS__P_PING] = "ping",
  [EVS__P_APPEND] = "append",
  [EVS__P_READ_STREAM] = "read_stream",
  [EVS__P_READ_ALL] = "read_all",
  [EVS__P_STREAM_INFO] = "stream_info",
  [EVS__P_LIST_STREAMS] = "list_streams",
  [EVS__P_SET_METADATA] = "set_metadata",
  [EVS__P_DELETE] = "delete",
  [EVS__P_SUBSCRIBE] = "subscribe",
  [EVS__P_UNSUBSCRIBE] = "unsubscribe",
  [EVS__P_APPEND_AT] = "append_at",
  [EVS__P_READ_EVENT] = "read_event",
  [EVS__P_HEAD] = "head",
  [EVS__P_STATE] = "state",
  [EVS__P_STATS] = "stats",
  [EVS__P_VERIFY] = "verify",
  [EVS__P_REPLAY] = "replay",
};

const char *evs__proto_op_name(evs__proto_op op) {
  if ((int)op <= 0 || op >= EVS__P_OP_COUNT)
    return "?";
  return op_names[op];
}

static const char *const kind_names[EVS__K_COUNT] = {
  [EVS__K_REPLY] = "reply",         [EVS__K_EVENTS] = "events",
  [EVS__K_CAUGHT_UP] = "caught_up", [EVS__K_SUB_END] = "sub_end",
  [EVS__K_GOODBYE] = "goodbye",     [EVS__K_PROGRESS] = "progress",
};

const char *evs__proto_kind_name(evs__proto_kind kind) {
  if ((int)kind < 0 || kind >= EVS__K_COUNT)
    return "?";
  return kind_names[kind];
}

static int slice_eq(evs_slice s, const char *lit) {
  size_t n = strlen(lit);
  return s.len == n && memcmp(s.data, lit, n) == 0;
}

/* ---- error names -------------------------------------------------------- */

#define EVS__PROTO_ERRNO(XX)                                                   \
  XX(ENOSPC)                                                                   \
  XX(ENOENT)                                                                   \
  XX(EACCES)                                                                   \
  XX(EIO)                                                                      \
  XX(ENOMEM)                                                                   \
  XX(EEXIST)                                                                   \
  XX(ENOTDIR)                                                                  \
  XX(EROFS)                                                                    \
  XX(EAGAIN)                                                                   \
  XX(EDQUOT)                                                                   \
  XX(EPIPE)                                                                    \
  XX(ECONNRESET)

const char *evs__proto_err_name(int code) {
  switch (code) {
  case 0:
    return "OK";
#define NAME_CASE(name, value, msg)                                            \
  case EVS_##name:                                                             \
    return "EVS_" #name;
    EVS_ERRNO_MAP(NAME_CASE)
#undef NAME_CASE
#define ERRNO_CASE(name)                                                       \
  case -(name):                                                                \
    return #name;
    EVS__PROTO_ERRNO(ERRNO_CASE)
#undef ERRNO_CASE
  default:
    return "EVS_EUNKNOWN";
  }
}

const char *evs__proto_strerror(int code) {
  switch (code) {
  case 0:
    return "success";
#define MSG_CASE(name, value, msg)                                             \
  case EVS_##name:                                                             \
    return msg;
    EVS_ERRNO_MAP(MSG_CASE)
#undef MSG_CASE
  default:
    break;
  }
  if (code < 0 && code > -4096)
    return strerror(-code);
  return "unknown error";
}

int evs__proto_err_from_name(evs_slice name) {
#define FROM_NAME(n, value, msg)                                               \
  if (slice_eq(name, "EVS_" #n))                                               \
    return EVS_##n;
  EVS_ERRNO_MAP(FROM_NAME)
#undef FROM_NAME
#define FROM_ERRNO(n)                                                          \
  if (slice_eq(name, #n))                                                      \
    return -(n);
  EVS__PROTO_ERRNO(FROM_ERRNO)
#undef FROM_ERRNO
  return 0;
}

/* ---- keys --------------------------------------------------------------- */

/* Every key the protocol defines, requests and server frames together. */
#define EVS__KEYS(XX)                                                          \
  XX(OP, "op")                                                                 \
  XX(RID, "rid")                                                               \
  XX(PROTOCOL, "protocol")                                                     \
  XX(TOKEN, "token")                                                           \
  XX(CLIENT, "client")                                                         \
  XX(STREAM, "stream")                                                         \
  XX(EXPECTED, "expected")                                                     \
  XX(EVENTS, "events")                                                         \
  XX(PARTS, "parts")                                                           \
  XX(DIRECTION, "direction")                                                   \
  XX(FROM, "from")                                                             \
  XX(LIMIT, "limit")                                                           \
  XX(AS_OF_POSITION, "as_of_position")                                         \
  XX(AS_OF, "as_of")                                                           \
  XX(STREAM_PREFIX, "stream_prefix")                                           \
  XX(CATEGORY, "category")                                                     \
  XX(EVENT_TYPE, "event_type")                                                 \
  XX(SINCE, "since")                                                           \
  XX(UNTIL, "until")                                                           \
  XX(UNTIL_POSITION, "until_position")                                         \
  XX(GROUP_SIZE, "group_size")                                                 \
  XX(GROUP_MEMBER, "group_member")                                             \
  XX(PREFIX, "prefix")                                                         \
  XX(AFTER, "after")                                                           \
  XX(INCLUDE_DELETED, "include_deleted")                                       \
  XX(MAX_COUNT, "max_count")                                                   \
  XX(MAX_AGE, "max_age")                                                       \
  XX(TRUNCATE_BEFORE, "truncate_before")                                       \
  XX(CUSTOM, "custom")                                                         \
  XX(HARD, "hard")                                                             \
  XX(FROM_END, "from_end")                                                     \
  XX(BATCH, "batch")                                                           \
  XX(SUB, "sub")                                                               \
  XX(TYPE, "type")                                                             \
  XX(ID, "id")                                                                 \
  XX(DATA, "data")                                                             \
  XX(METADATA, "metadata")                                                     \
  XX(VERSION, "version")                                                       \
  XX(POSITION, "position")                                                     \
  XX(TIMESTAMP, "timestamp")                                                   \
  XX(KIND, "kind")                                                             \
  XX(CODE, "code")                                                             \
  XX(ERROR, "error")                                                           \
  XX(MESSAGE, "message")                                                       \
  XX(SERVER, "server")                                                         \
  XX(MAX_FRAME, "max_frame")                                                   \
  XX(MAX_EVENTS, "max_events")                                                 \
  XX(MAX_EVENT_SIZE, "max_event_size")                                         \
  XX(FIRST_VERSION, "first_version")                                           \
  XX(LAST_VERSION, "last_version")                                             \
  XX(FIRST_POSITION, "first_position")                                         \
  XX(LAST_POSITION, "last_position")                                           \
  XX(IDEMPOTENT, "idempotent")                                                 \
  XX(ACTUAL_VERSION, "actual_version")                                         \
  XX(FAILED_PART, "failed_part")                                               \
  XX(RESULTS, "results")                                                       \
  XX(NEXT, "next")                                                             \
  XX(CHECKPOINT, "checkpoint")                                                 \
  XX(END, "end")                                                               \
  XX(EXISTS, "exists")                                                         \
  XX(STREAM_ID, "stream_id")                                                   \
  XX(START_VERSION, "start_version")                                           \
  XX(LAST_TIMESTAMP, "last_timestamp")                                         \
  XX(DELETED, "deleted")                                                       \
  XX(TOMBSTONED, "tombstoned")                                                 \
  XX(STREAMS, "streams")                                                       \
  XX(NAME, "name")                                                             \
  XX(HEAD, "head")                                                             \
  XX(TIME, "time")                                                             \
  XX(HEAD_TIMESTAMP, "head_timestamp")                                         \
  XX(PROJECTION, "projection")                                                 \
  XX(EVENT, "event")                                                           \
  XX(STATE, "state")                                                           \
  XX(STATS, "stats")                                                           \
  XX(EVENTS_CHECKED, "events_checked")                                         \
  XX(STREAMS_CHECKED, "streams_checked")                                       \
  XX(ERRORS, "errors")                                                         \
  XX(GENERATION, "generation")                                                 \
  XX(EVENTS_APPLIED, "events_applied")                                         \
  XX(ERROR_POSITION, "error_position")                                         \
  XX(DONE, "done")                                                             \
  XX(TOTAL, "total")                                                           \
  XX(PROBLEM, "problem")

enum {
  K_UNKNOWN = 0,
#define KEY_ENUM(id, str) K_##id,
  EVS__KEYS(KEY_ENUM)
#undef KEY_ENUM
  K_COUNT
};

static const char *const key_names[K_COUNT] = { [K_UNKNOWN] = "",
#define KEY_NAME(id, str) [K_##id] = (str),
                                                EVS__KEYS(KEY_NAME)
#undef KEY_NAME
};

static int key_id(evs_slice k) {
  if (k.len == 0 || k.len > 24)
    return K_UNKNOWN;
  for (int i = 1; i < K_COUNT; i++)
    if (slice_eq(k, key_names[i]))
      return i;
  return K_UNKNOWN;
}

/* ---- decoding helpers --------------------------------------------------- */

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

/* Value readers that treat nil as "absent" (*present = 0). */
static int rd_nil(evs__mp_reader *r, int *present) {
  if (evs__mp_peek(r) == EVS__MP_NIL) {
    r->p++;
    *present = 0;
    return 1;
  }
  *present = 1;
  return 0;
}

static int rd_bool(evs__mp_reader *r, int *out) {
  int present;
  if (rd_nil(r, &present))
    return 0;
  if (evs__mp_peek(r) == EVS__MP_INT) {
    int64_t v;
    if (evs__mp_read_int(r, &v))
      return EVS_EPROTO;
    *out = v != 0;
    return 0;
  }
  return evs__mp_read_bool(r, out);
}

static int rd_int(evs__mp_reader *r, int64_t *out, int *has) {
  int present;
  if (rd_nil(r, &present))
    return 0;
  if (evs__mp_read_int(r, out))
    return EVS_EPROTO;
  if (has)
    *has = 1;
  return 0;
}

static int rd_uint(evs__mp_reader *r, uint64_t *out, int *has) {
  int present;
  if (rd_nil(r, &present))
    return 0;
  if (evs__mp_read_uint(r, out))
    return EVS_EPROTO;
  if (has)
    *has = 1;
  return 0;
}

static int rd_u32(evs__mp_reader *r, uint32_t *out) {
  uint64_t v = 0;
  int has = 0;
  if (rd_uint(r, &v, &has) || v > UINT32_MAX)
    return EVS_EPROTO;
  if (has)
    *out = (uint32_t)v;
  return 0;
}

static int rd_str(evs__mp_reader *r, evs_slice *out, int *has) {
  int present;
  if (rd_nil(r, &present))
    return 0;
  if (evs__mp_read_str(r, out))
    return EVS_EPROTO;
  if (has)
    *has = 1;
  return 0;
}

static int rd_bytes(evs__mp_reader *r, evs_slice *out, int *has) {
  int present;
  if (rd_nil(r, &present))
    return 0;
  if (evs__mp_read_bytes(r, out))
    return EVS_EPROTO;
  if (has)
    *has = 1;
  return 0;
}

static int rd_id(evs__mp_reader *r, uint8_t id[16], int *has) {
  int present;
  if (rd_nil(r, &present))
    return 0;
  evs_slice s;
  if (evs__mp_read_bin(r, &s) || s.len != 16)
    return EVS_EPROTO;
  memcpy(id, s.data, 16);
  *has = 1;
  return 0;
}

/* Reads the raw bytes of one array value (header and elements). */
static int rd_raw_array(evs__mp_reader *r, evs_slice *raw) {
  const uint8_t *start = r->p;
  if (evs__mp_peek(r) != EVS__MP_ARRAY || evs__mp_skip(r))
    return EVS_EPROTO;
  raw->data = start;
  raw->len = (size_t)(r->p - start);
  return 0;
}

static const char *type_word(int key) {
  switch (key) {
  case K_OP:
  case K_TOKEN:
  case K_CLIENT:
  case K_STREAM:
  case K_DIRECTION:
  case K_STREAM_PREFIX:
  case K_CATEGORY:
  case K_EVENT_TYPE:
  case K_PREFIX:
  case K_AFTER:
  case K_TYPE:
  case K_KIND:
  case K_ERROR:
  case K_MESSAGE:
  case K_SERVER:
  case K_NAME:
  case K_PROJECTION:
  case K_PROBLEM:
    return "a string";
  case K_EVENT:
  case K_STATS:
    return "a map";
  case K_EVENTS:
  case K_PARTS:
  case K_RESULTS:
  case K_STREAMS:
    return "an array";
  case K_INCLUDE_DELETED:
  case K_HARD:
  case K_FROM_END:
  case K_IDEMPOTENT:
  case K_END:
  case K_EXISTS:
  case K_DELETED:
  case K_TOMBSTONED:
    return "a boolean";
  case K_ID:
    return "a 16-byte bin";
  case K_DATA:
  case K_METADATA:
  case K_CUSTOM:
  case K_STATE:
    return "bin or str bytes";
  case K_RID:
  case K_PROTOCOL:
  case K_LIMIT:
  case K_AS_OF_POSITION:
  case K_UNTIL_POSITION:
  case K_GROUP_SIZE:
  case K_GROUP_MEMBER:
  case K_MAX_COUNT:
  case K_MAX_AGE:
  case K_BATCH:
  case K_SUB:
  case K_POSITION:
  case K_EVENTS_CHECKED:
  case K_STREAMS_CHECKED:
  case K_ERRORS:
  case K_GENERATION:
  case K_EVENTS_APPLIED:
  case K_ERROR_POSITION:
  case K_DONE:
  case K_TOTAL:
    return "an unsigned integer";
  default:
    return "an integer";
  }
}

/* Decodes one event of an append request. */
static int decode_new_event(evs__mp_reader *r, evs__proto_event *ev, char *err,
                            size_t errlen) {
  uint32_t n;
  memset(ev, 0, sizeof *ev);
  if (evs__mp_read_map(r, &n))
    return fail(err, errlen, EVS_EPROTO, "an event must be a map");
  int has_type = 0;
  for (uint32_t i = 0; i < n; i++) {
    evs_slice k;
    if (evs__mp_read_str(r, &k))
      return fail(err, errlen, EVS_EPROTO, "event keys must be strings");
    int key = key_id(k);
    int rc = 0;
    switch (key) {
    case K_TYPE:
      rc = rd_str(r, &ev->type, &has_type);
      break;
    case K_ID:
      rc = rd_id(r, ev->id, &ev->has_id);
      break;
    case K_DATA:
      rc = rd_bytes(r, &ev->data, NULL);
      break;
    case K_METADATA:
      rc = rd_bytes(r, &ev->metadata, NULL);
      break;
    default:
      rc = evs__mp_skip(r);
      if (rc)
        return fail(err, errlen, EVS_EPROTO, "event: malformed value");
      continue;
    }
    if (rc)
      return fail(err, errlen, EVS_EPROTO, "event key '%s' must be %s",
                  key_names[key], type_word(key));
  }
  if (!has_type)
    return fail(err, errlen, EVS_EPROTO, "event without a 'type'");
  return 0;
}

/* Decodes the events array at `raw` (already validated as one array) into
 * out[0..n). */
static int decode_event_array(evs_slice raw, evs__proto_event *out, uint32_t n,
                              char *err, size_t errlen) {
  evs__mp_reader r;
  evs__mp_reader_init(&r, raw.data, raw.len);
  uint32_t count;
  if (evs__mp_read_array(&r, &count) || count != n)
    return fail(err, errlen, EVS_EPROTO, "events: malformed array");
  for (uint32_t i = 0; i < n; i++) {
    int rc = decode_new_event(&r, &out[i], err, errlen);
    if (rc)
      return rc;
  }
  return 0;
}

static uint32_t array_count(evs_slice raw) {
  evs__mp_reader r;
  uint32_t n = 0;
  evs__mp_reader_init(&r, raw.data, raw.len);
  if (evs__mp_read_array(&r, &n))
    return 0;
  return n;
}

static int parse_op(evs_slice s) {
  for (int i = 1; i < EVS__P_OP_COUNT; i++)
    if (slice_eq(s, op_names[i]))
      return i;
  return EVS__P_NONE;
}

/* ---- requests ----------------------------------------------------------- */

void evs__proto_request_init(evs__proto_request *req) {
  memset(req, 0, sizeof *req);
  req->expected = -2; /* EVS_EXPECT_ANY */
  req->truncate_before = -1;
}

void evs__proto_request_free(evs__proto_request *req) {
  if (req == NULL)
    return;
  free(req->parts);
  free(req->event_store);
  req->parts = NULL;
  req->event_store = NULL;
  req->nparts = 0;
  req->nevents = 0;
}

/* Decodes the "parts" array into req->parts with raw event arrays in
 * raws[]; returns the total event count through *total. */
static int decode_parts(evs__proto_request *req, evs_slice parts_raw,
                        const evs__proto_limits *lim, evs_slice **raws_out,
                        uint64_t *total, char *err, size_t errlen) {
  evs__mp_reader r;
  evs__mp_reader_init(&r, parts_raw.data, parts_raw.len);
  uint32_t np;
  if (evs__mp_read_array(&r, &np))
    return fail(err, errlen, EVS_EPROTO, "parts: malformed array");
  if (np == 0)
    return fail(err, errlen, EVS_EPROTO, "parts: empty");
  if (np > lim->max_parts)
    return fail(err, errlen, EVS_ETOOLARGE,
                "append of %u parts: at most %u per request", np,
                lim->max_parts);
  req->parts = calloc(np, sizeof *req->parts);
  evs_slice *raws = calloc(np, sizeof *raws);
  *raws_out = raws;
  if (req->parts == NULL || raws == NULL)
    return fail(err, errlen, EVS_ENOMEM, "out of memory");
  req->nparts = np;
  *total = 0;
  for (uint32_t p = 0; p < np; p++) {
    evs__proto_part *pt = &req->parts[p];
    pt->expected = -2;
    uint32_t n;
    if (evs__mp_read_map(&r, &n))
      return fail(err, errlen, EVS_EPROTO, "parts[%u]: not a map", p);
    int has_stream = 0;
    int has_events = 0;
    for (uint32_t i = 0; i < n; i++) {
      evs_slice k;
      if (evs__mp_read_str(&r, &k))
        return fail(err, errlen, EVS_EPROTO, "parts[%u]: non-string key", p);
      int key = key_id(k);
      int rc;
      if (key == K_STREAM) {
        rc = rd_str(&r, &pt->stream, &has_stream);
      } else if (key == K_EXPECTED) {
        rc = rd_int(&r, &pt->expected, NULL);
      } else if (key == K_EVENTS) {
        rc = rd_raw_array(&r, &raws[p]);
        has_events = rc == 0;
      } else {
        if (evs__mp_skip(&r))
          return fail(err, errlen, EVS_EPROTO, "parts[%u]: malformed value", p);
        continue;
      }
      if (rc)
        return fail(err, errlen, EVS_EPROTO, "parts[%u]: '%s' must be %s", p,
                    key_names[key], type_word(key));
    }
    if (!has_stream || !has_events)
      return fail(err, errlen, EVS_EPROTO,
                  "parts[%u]: needs 'stream' and 'events'", p);
    pt->nevents = array_count(raws[p]);
    if (pt->nevents == 0)
      return fail(err, errlen, EVS_EPROTO, "parts[%u]: no events", p);
    *total += pt->nevents;
  }
  return 0;
}

int evs__proto_decode_request(evs__proto_request *req, const void *body,
                              size_t len, const evs__proto_limits *limits,
                              char *err, size_t errlen) {
  static const evs__proto_limits defaults = EVS__PROTO_LIMITS_DEFAULT;
  const evs__proto_limits *lim = limits ? limits : &defaults;
  evs__proto_request_init(req);
  if (err && errlen)
    err[0] = '\0';
  evs__mp_reader r;
  evs__mp_reader_init(&r, body, len);
  uint32_t n;
  if (evs__mp_read_map(&r, &n))
    return fail(err, errlen, EVS_EPROTO, "the frame body must be a map");
  evs_slice events_raw = { NULL, 0 };
  evs_slice parts_raw = { NULL, 0 };
  int has_op = 0;
  for (uint32_t i = 0; i < n; i++) {
    evs_slice k;
    if (evs__mp_read_str(&r, &k))
      return fail(err, errlen, EVS_EPROTO, "map keys must be strings");
    int key = key_id(k);
    int rc = 0;
    evs_slice s;
    int has = 0;
    switch (key) {
    case K_OP:
      rc = rd_str(&r, &req->op_name, &has_op);
      break;
    case K_RID:
      rc = rd_uint(&r, &req->rid, &req->has_rid);
      break;
    case K_PROTOCOL:
      rc = rd_uint(&r, &req->protocol, &req->has_protocol);
      break;
    case K_TOKEN:
      rc = rd_str(&r, &req->token, &req->has_token);
      break;
    case K_CLIENT:
      rc = rd_str(&r, &req->client, NULL);
      break;
    case K_STREAM:
      rc = rd_str(&r, &req->stream, &req->has_stream);
      break;
    case K_EXPECTED:
      rc = rd_int(&r, &req->expected, NULL);
      break;
    case K_EVENTS:
      if (evs__mp_peek(&r) == EVS__MP_NIL) {
        r.p++;
        break;
      }
      rc = rd_raw_array(&r, &events_raw);
      break;
    case K_PARTS:
      if (evs__mp_peek(&r) == EVS__MP_NIL) {
        r.p++;
        break;
      }
      rc = rd_raw_array(&r, &parts_raw);
      break;
    case K_DIRECTION:
      rc = rd_str(&r, &s, &has);
      if (rc == 0 && has) {
        if (slice_eq(s, "backward"))
          req->backward = 1;
        else if (slice_eq(s, "forward"))
          req->backward = 0;
        else
          return fail(err, errlen, EVS_EPROTO,
                      "'direction' must be \"forward\" or \"backward\"");
      }
      break;
    case K_FROM:
      rc = rd_int(&r, &req->from, &req->has_from);
      break;
    case K_LIMIT:
      rc = rd_uint(&r, &req->limit, NULL);
      break;
    case K_AS_OF_POSITION:
      rc = rd_uint(&r, &req->as_of_position, NULL);
      break;
    case K_AS_OF:
      rc = rd_int(&r, &req->as_of_ns, NULL);
      break;
    case K_STREAM_PREFIX:
      rc = rd_str(&r, &req->stream_prefix, &req->has_stream_prefix);
      break;
    case K_CATEGORY:
      rc = rd_str(&r, &req->category, &req->has_category);
      break;
    case K_EVENT_TYPE:
      rc = rd_str(&r, &req->event_type, &req->has_event_type);
      break;
    case K_SINCE:
      rc = rd_int(&r, &req->since_ns, NULL);
      break;
    case K_UNTIL:
      rc = rd_int(&r, &req->until_ns, NULL);
      break;
    case K_UNTIL_POSITION:
      rc = rd_uint(&r, &req->until_position, NULL);
      break;
    case K_GROUP_SIZE:
      rc = rd_u32(&r, &req->group_size);
      break;
    case K_GROUP_MEMBER:
      rc = rd_u32(&r, &req->group_member);
      break;
    case K_PREFIX:
      rc = rd_str(&r, &req->prefix, &req->has_prefix);
      break;
    case K_AFTER:
      rc = rd_str(&r, &req->after, &req->has_after);
      break;
    case K_INCLUDE_DELETED:
      rc = rd_bool(&r, &req->include_deleted);
      break;
    case K_MAX_COUNT:
      rc = rd_uint(&r, &req->max_count, NULL);
      break;
    case K_MAX_AGE:
      rc = rd_uint(&r, &req->max_age_sec, NULL);
      break;
    case K_TRUNCATE_BEFORE:
      rc = rd_int(&r, &req->truncate_before, NULL);
      break;
    case K_CUSTOM:
      rc = rd_bytes(&r, &req->custom, &req->has_custom);
      break;
    case K_HARD:
      rc = rd_bool(&r, &req->hard);
      break;
    case K_FROM_END:
      rc = rd_bool(&r, &req->from_end);
      break;
    case K_BATCH:
      rc = rd_u32(&r, &req->batch);
      break;
    case K_SUB:
      rc = rd_uint(&r, &req->sub, &req->has_sub);
      break;
    case K_TIMESTAMP:
      rc = rd_int(&r, &req->timestamp_ns, &req->has_timestamp);
      break;
    case K_POSITION:
      rc = rd_uint(&r, &req->position, &req->has_position);
      break;
    case K_ID:
      rc = rd_id(&r, req->id, &req->has_id);
      break;
    case K_PROJECTION:
      rc = rd_str(&r, &req->projection, &req->has_projection);
      break;
    default:
      /* Unknown keys are skipped: newer clients may send more. */
      if (evs__mp_skip(&r))
        return fail(err, errlen, EVS_EPROTO, "malformed value of key '%.*s'",
                    (int)(k.len > 32 ? 32 : k.len), (const char *)k.data);
      continue;
    }
    if (rc)
      return fail(err, errlen, EVS_EPROTO, "key '%s' must be %s",
                  key_names[key], type_word(key));
  }
  if (r.p != r.end)
    return fail(err, errlen, EVS_EPROTO,
                "%zu bytes after the map in the frame body", evs__mp_left(&r));
  if (!has_op)
    return fail(err, errlen, EVS_EPROTO, "request without an 'op'");
  req->op = (evs__proto_op)parse_op(req->op_name);
  if (req->op == EVS__P_NONE)
    return fail(err, errlen, EVS_EPROTO, "unknown op '%.*s'",
                (int)(req->op_name.len > 32 ? 32 : req->op_name.len),
                (const char *)req->op_name.data);

  switch (req->op) {
  case EVS__P_HELLO:
    if (!req->has_protocol)
      return fail(err, errlen, EVS_EPROTO, "hello without 'protocol'");
    break;
  case EVS__P_READ_STREAM:
  case EVS__P_STREAM_INFO:
  case EVS__P_SET_METADATA:
  case EVS__P_DELETE:
  case EVS__P_STATE:
    if (!req->has_stream)
      return fail(err, errlen, EVS_EPROTO, "%s without 'stream'",
                  op_names[req->op]);
    break;
  case EVS__P_UNSUBSCRIBE:
    if (!req->has_sub)
      return fail(err, errlen, EVS_EPROTO, "unsubscribe without 'sub'");
    break;
  case EVS__P_APPEND_AT:
    if (!req->has_timestamp)
      return fail(err, errlen, EVS_EPROTO, "append_at without 'timestamp'");
    break;
  case EVS__P_READ_EVENT:
    if (req->has_position == req->has_id)
      return fail(err, errlen, EVS_EPROTO,
                  "read_event needs either 'position' or 'id'");
    break;
  case EVS__P_REPLAY:
    if (!req->has_projection)
      return fail(err, errlen, EVS_EPROTO, "replay without 'projection'");
    break;
  case EVS__P_READ_ALL:
  case EVS__P_SUBSCRIBE:
    if (req->group_size > 1 && req->group_member >= req->group_size)
      return fail(err, errlen, EVS_EPROTO,
                  "group_member %u is not below group_size %u",
                  req->group_member, req->group_size);
    break;
  default:
    break;
  }
  if (req->op != EVS__P_APPEND && req->op != EVS__P_APPEND_AT)
    return 0;

  /* Append: exactly one of "stream"+"events" and "parts". */
  if ((events_raw.data != NULL) == (parts_raw.data != NULL))
    return fail(err, errlen, EVS_EPROTO,
                "append needs either 'stream' and 'events', or 'parts'");
  evs_slice *raws = NULL;
  uint64_t total = 0;
  int rc;
  if (parts_raw.data) {
    req->multi = 1;
    rc = decode_parts(req, parts_raw, lim, &raws, &total, err, errlen);
    if (rc) {
      free(raws);
      return rc;
    }
  } else {
    if (!req->has_stream)
      return fail(err, errlen, EVS_EPROTO, "append without 'stream'");
    total = array_count(events_raw);
    if (total == 0)
      return fail(err, errlen, EVS_EPROTO, "append without events");
  }
  /* Bound the allocation by the limit and by the bytes actually sent: an
   * event map takes at least 8 bytes (fixmap, "type" key, a type). */
  if (total > lim->max_events) {
    free(raws);
    return fail(err, errlen, EVS_ETOOLARGE,
                "append of %llu events: at most %u per request",
                (unsigned long long)total, lim->max_events);
  }
  if (total > len / 8) {
    free(raws);
    return fail(err, errlen, EVS_EPROTO, "more events declared than sent");
  }
  req->event_store = calloc((size_t)total, sizeof *req->event_store);
  if (req->event_store == NULL) {
    free(raws);
    return fail(err, errlen, EVS_ENOMEM, "out of memory");
  }
  req->nevents = (uint32_t)total;
  if (!req->multi) {
    req->parts = calloc(1, sizeof *req->parts);
    if (req->parts == NULL)
      return fail(err, errlen, EVS_ENOMEM, "out of memory");
    req->nparts = 1;
    req->parts[0].stream = req->stream;
    req->parts[0].expected = req->expected;
    req->parts[0].nevents = (uint32_t)total;
    req->parts[0].events = req->event_store;
    return decode_event_array(events_raw, req->event_store, req->nevents, err,
                              errlen);
  }
  uint32_t at = 0;
  rc = 0;
  for (uint32_t p = 0; p < req->nparts && rc == 0; p++) {
    evs__proto_part *pt = &req->parts[p];
    pt->events = req->event_store + at;
    rc = decode_event_array(raws[p], pt->events, pt->nevents, err, errlen);
    at += pt->nevents;
  }
  free(raws);
  return rc;
}

/* ---- request encoding --------------------------------------------------- */

static void w_str_kv(evs__buf *b, evs__mp_open *m, const char *key,
                     evs_slice s) {
  evs__mp_w_key(b, m, key);
  evs__mp_w_str(b, s.data, s.len);
}

static void w_new_event(evs__buf *b, const evs__proto_event *ev) {
  evs__mp_open m = evs__mp_w_map_open(b);
  w_str_kv(b, &m, "type", ev->type);
  if (ev->has_id) {
    evs__mp_w_key(b, &m, "id");
    evs__mp_w_bin(b, ev->id, 16);
  }
  evs__mp_w_key(b, &m, "data");
  evs__mp_w_bin(b, ev->data.data, ev->data.len);
  if (ev->metadata.len) {
    evs__mp_w_key(b, &m, "metadata");
    evs__mp_w_bin(b, ev->metadata.data, ev->metadata.len);
  }
  evs__mp_w_map_close(b, &m);
}

static void w_events(evs__buf *b, const evs__proto_event *evs, uint32_t n) {
  evs__mp_w_array(b, n);
  for (uint32_t i = 0; i < n; i++)
    w_new_event(b, &evs[i]);
}

static void w_filters(evs__buf *b, evs__mp_open *m,
                      const evs__proto_request *q) {
  if (q->has_stream_prefix)
    w_str_kv(b, m, "stream_prefix", q->stream_prefix);
  if (q->has_category)
    w_str_kv(b, m, "category", q->category);
  if (q->has_event_type)
    w_str_kv(b, m, "event_type", q->event_type);
  if (q->group_size) {
    evs__mp_w_key(b, m, "group_size");
    evs__mp_w_uint(b, q->group_size);
    evs__mp_w_key(b, m, "group_member");
    evs__mp_w_uint(b, q->group_member);
  }
}

int evs__proto_encode_request(evs__buf *b, const evs__proto_request *q) {
  if (q->op <= EVS__P_NONE || q->op >= EVS__P_OP_COUNT)
    return EVS_EINVAL;
  size_t off = b->len;
  uint8_t hdr[4] = { 0, 0, 0, 0 };
  evs__buf_put(b, hdr, 4);
  evs__mp_open m = evs__mp_w_map_open(b);
  /* "rid" first, so that a server can answer a frame it cannot decode. */
  evs__mp_w_key(b, &m, "rid");
  evs__mp_w_uint(b, q->rid);
  evs__mp_w_key(b, &m, "op");
  evs__mp_w_cstr(b, op_names[q->op]);
  switch (q->op) {
  case EVS__P_HELLO:
    evs__mp_w_key(b, &m, "protocol");
    evs__mp_w_uint(b, q->protocol);
    if (q->has_token)
      w_str_kv(b, &m, "token", q->token);
    if (q->client.len)
      w_str_kv(b, &m, "client", q->client);
    break;
  case EVS__P_PING:
  case EVS__P_HEAD:
  case EVS__P_STATS:
  case EVS__P_VERIFY:
    break;
  case EVS__P_APPEND:
  case EVS__P_APPEND_AT:
    if (q->op == EVS__P_APPEND_AT) {
      evs__mp_w_key(b, &m, "timestamp");
      evs__mp_w_int(b, q->timestamp_ns);
    }
    if (q->multi) {
      evs__mp_w_key(b, &m, "parts");
      evs__mp_w_array(b, q->nparts);
      for (uint32_t p = 0; p < q->nparts; p++) {
        const evs__proto_part *pt = &q->parts[p];
        evs__mp_w_map(b, 3);
        evs__mp_w_cstr(b, "stream");
        evs__mp_w_str(b, pt->stream.data, pt->stream.len);
        evs__mp_w_cstr(b, "expected");
        evs__mp_w_int(b, pt->expected);
        evs__mp_w_cstr(b, "events");
        w_events(b, pt->events, pt->nevents);
      }
    } else if (q->nparts >= 1) {
      const evs__proto_part *pt = &q->parts[0];
      w_str_kv(b, &m, "stream", pt->stream);
      evs__mp_w_key(b, &m, "expected");
      evs__mp_w_int(b, pt->expected);
      evs__mp_w_key(b, &m, "events");
      w_events(b, pt->events, pt->nevents);
    }
    break;
  case EVS__P_READ_STREAM:
  case EVS__P_READ_ALL:
    if (q->op == EVS__P_READ_STREAM)
      w_str_kv(b, &m, "stream", q->stream);
    evs__mp_w_key(b, &m, "direction");
    evs__mp_w_cstr(b, q->backward ? "backward" : "forward");
    if (q->has_from) {
      evs__mp_w_key(b, &m, "from");
      evs__mp_w_int(b, q->from);
    }
    if (q->limit) {
      evs__mp_w_key(b, &m, "limit");
      evs__mp_w_uint(b, q->limit);
    }
    if (q->op == EVS__P_READ_STREAM) {
      if (q->as_of_position) {
        evs__mp_w_key(b, &m, "as_of_position");
        evs__mp_w_uint(b, q->as_of_position);
      }
      if (q->as_of_ns) {
        evs__mp_w_key(b, &m, "as_of");
        evs__mp_w_int(b, q->as_of_ns);
      }
    } else {
      w_filters(b, &m, q);
      if (q->since_ns) {
        evs__mp_w_key(b, &m, "since");
        evs__mp_w_int(b, q->since_ns);
      }
      if (q->until_ns) {
        evs__mp_w_key(b, &m, "until");
        evs__mp_w_int(b, q->until_ns);
      }
      if (q->until_position) {
        evs__mp_w_key(b, &m, "until_position");
        evs__mp_w_uint(b, q->until_position);
      }
    }
    break;
  case EVS__P_STREAM_INFO:
    w_str_kv(b, &m, "stream", q->stream);
    break;
  case EVS__P_LIST_STREAMS:
    if (q->has_prefix)
      w_str_kv(b, &m, "prefix", q->prefix);
    if (q->has_after)
      w_str_kv(b, &m, "after", q->after);
    if (q->limit) {
      evs__mp_w_key(b, &m, "limit");
      evs__mp_w_uint(b, q->limit);
    }
    if (q->include_deleted) {
      evs__mp_w_key(b, &m, "include_deleted");
      evs__mp_w_bool(b, 1);
    }
    break;
  case EVS__P_SET_METADATA:
    w_str_kv(b, &m, "stream", q->stream);
    evs__mp_w_key(b, &m, "max_count");
    evs__mp_w_uint(b, q->max_count);
    evs__mp_w_key(b, &m, "max_age");
    evs__mp_w_uint(b, q->max_age_sec);
    evs__mp_w_key(b, &m, "truncate_before");
    evs__mp_w_int(b, q->truncate_before);
    if (q->has_custom) {
      evs__mp_w_key(b, &m, "custom");
      evs__mp_w_bin(b, q->custom.data, q->custom.len);
    }
    break;
  case EVS__P_DELETE:
    w_str_kv(b, &m, "stream", q->stream);
    evs__mp_w_key(b, &m, "expected");
    evs__mp_w_int(b, q->expected);
    evs__mp_w_key(b, &m, "hard");
    evs__mp_w_bool(b, q->hard);
    break;
  case EVS__P_SUBSCRIBE:
    if (q->has_stream)
      w_str_kv(b, &m, "stream", q->stream);
    w_filters(b, &m, q);
    if (q->has_from) {
      evs__mp_w_key(b, &m, "from");
      evs__mp_w_int(b, q->from);
    }
    if (q->from_end) {
      evs__mp_w_key(b, &m, "from_end");
      evs__mp_w_bool(b, 1);
    }
    if (q->batch) {
      evs__mp_w_key(b, &m, "batch");
      evs__mp_w_uint(b, q->batch);
    }
    break;
  case EVS__P_UNSUBSCRIBE:
    evs__mp_w_key(b, &m, "sub");
    evs__mp_w_uint(b, q->sub);
    break;
  case EVS__P_READ_EVENT:
    if (q->has_position) {
      evs__mp_w_key(b, &m, "position");
      evs__mp_w_uint(b, q->position);
    }
    if (q->has_id) {
      evs__mp_w_key(b, &m, "id");
      evs__mp_w_bin(b, q->id, 16);
    }
    break;
  case EVS__P_STATE:
    w_str_kv(b, &m, "stream", q->stream);
    if (q->as_of_position) {
      evs__mp_w_key(b, &m, "as_of_position");
      evs__mp_w_uint(b, q->as_of_position);
    }
    if (q->as_of_ns) {
      evs__mp_w_key(b, &m, "as_of");
      evs__mp_w_int(b, q->as_of_ns);
    }
    break;
  case EVS__P_REPLAY:
    w_str_kv(b, &m, "projection", q->projection);
    break;
  default:
    break;
  }
  evs__mp_w_map_close(b, &m);
  if (b->oom)
    return EVS_ENOMEM;
  size_t body = b->len - off - 4;
  if (body > UINT32_MAX)
    return EVS_ETOOLARGE;
  b->data[off] = (uint8_t)(body >> 24);
  b->data[off + 1] = (uint8_t)(body >> 16);
  b->data[off + 2] = (uint8_t)(body >> 8);
  b->data[off + 3] = (uint8_t)body;
  return 0;
}

/* ---- frames ------------------------------------------------------------- */

int evs__proto_frame_header(const void *buf, size_t avail, uint32_t *body_len) {
  if (avail < 4)
    return 0;
  const uint8_t *p = (const uint8_t *)buf;
  *body_len = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
              ((uint32_t)p[2] << 8) | (uint32_t)p[3];
  return 1;
}

int evs__proto_peek_rid(const void *body, size_t len, uint64_t *rid) {
  evs__mp_reader r;
  evs__mp_reader_init(&r, body, len);
  if (len == 0)
    return 0;
  /* The map header, without checking its count against a prefix. */
  uint8_t c = r.p[0];
  uint64_t n;
  if (c >= 0x80 && c <= 0x8f) {
    n = c & 0x0f;
    r.p += 1;
  } else if (c == 0xde && len >= 3) {
    n = ((uint64_t)r.p[1] << 8) | r.p[2];
    r.p += 3;
  } else if (c == 0xdf && len >= 5) {
    n = ((uint64_t)r.p[1] << 24) | ((uint64_t)r.p[2] << 16) |
        ((uint64_t)r.p[3] << 8) | r.p[4];
    r.p += 5;
  } else {
    return 0;
  }
  for (uint64_t i = 0; i < n; i++) {
    evs_slice k;
    if (evs__mp_read_str(&r, &k))
      return 0;
    if (slice_eq(k, "rid"))
      return evs__mp_read_uint(&r, rid) == 0;
    if (evs__mp_skip(&r))
      return 0;
  }
  return 0;
}

int evs__proto_has_nul(evs_slice s) {
  return s.len && memchr(s.data, 0, s.len) != NULL;
}

void evs__proto_frame_open(evs__buf *b, evs__proto_frame *f,
                           evs__proto_kind kind, uint64_t rid, int code,
                           const char *message) {
  f->off = b->len;
  uint8_t hdr[4] = { 0, 0, 0, 0 };
  evs__buf_put(b, hdr, 4);
  f->map = evs__mp_w_map_open(b);
  evs__mp_w_key(b, &f->map, "kind");
  evs__mp_w_cstr(b, evs__proto_kind_name(kind));
  evs__mp_w_key(b, &f->map, "rid");
  evs__mp_w_uint(b, rid);
  evs__mp_w_key(b, &f->map, "code");
  evs__mp_w_int(b, code);
  if (code != 0) {
    evs__mp_w_key(b, &f->map, "error");
    evs__mp_w_cstr(b, evs__proto_err_name(code));
    evs__mp_w_key(b, &f->map, "message");
    evs__mp_w_cstr(b,
                   message && message[0] ? message : evs__proto_strerror(code));
  }
}

int evs__proto_frame_close(evs__buf *b, evs__proto_frame *f) {
  evs__mp_w_map_close(b, &f->map);
  if (b->oom)
    return EVS_ENOMEM;
  size_t body = b->len - f->off - 4;
  if (body > UINT32_MAX)
    return EVS_ETOOLARGE;
  b->data[f->off] = (uint8_t)(body >> 24);
  b->data[f->off + 1] = (uint8_t)(body >> 16);
  b->data[f->off + 2] = (uint8_t)(body >> 8);
  b->data[f->off + 3] = (uint8_t)body;
  return 0;
}

int evs__proto_error_frame(evs__buf *b, evs__proto_kind kind, uint64_t rid,
                           int code, const char *message) {
  evs__proto_frame f;
  evs__proto_frame_open(b, &f, kind, rid, code, message);
  return evs__proto_frame_close(b, &f);
}

void evs__proto_w_event(evs__buf *b, const evs__proto_event *ev) {
  evs__mp_w_map(b, 8);
  evs__mp_w_cstr(b, "stream");
  evs__mp_w_str(b, ev->stream.data, ev->stream.len);
  evs__mp_w_cstr(b, "type");
  evs__mp_w_str(b, ev->type.data, ev->type.len);
  evs__mp_w_cstr(b, "id");
  evs__mp_w_bin(b, ev->id, 16);
  evs__mp_w_cstr(b, "version");
  evs__mp_w_int(b, ev->version);
  evs__mp_w_cstr(b, "position");
  evs__mp_w_uint(b, ev->position);
  evs__mp_w_cstr(b, "timestamp");
  evs__mp_w_int(b, ev->timestamp_ns);
  evs__mp_w_cstr(b, "data");
  evs__mp_w_bin(b, ev->data.data, ev->data.len);
  evs__mp_w_cstr(b, "metadata");
  evs__mp_w_bin(b, ev->metadata.data, ev->metadata.len);
}

/* ---- replies ------------------------------------------------------------ */

void evs__proto_cursor_init(evs__proto_cursor *c, evs_slice raw,
                            uint32_t count) {
  evs__mp_reader_init(&c->r, raw.data, raw.len);
  c->left = count;
  if (count) {
    uint32_t n;
    if (evs__mp_read_array(&c->r, &n) || n != count)
      c->left = 0;
  }
}

/* Decodes one recorded event map (every key but the payloads required). */
static int decode_recorded(evs__mp_reader *r, evs__proto_event *ev) {
  uint32_t n;
  memset(ev, 0, sizeof *ev);
  if (evs__mp_read_map(r, &n))
    return EVS_EPROTO;
  int has_type = 0, has_id = 0, has_pos = 0, has_stream = 0;
  for (uint32_t i = 0; i < n; i++) {
    evs_slice k;
    if (evs__mp_read_str(r, &k))
      return EVS_EPROTO;
    int rc;
    switch (key_id(k)) {
    case K_STREAM:
      rc = rd_str(r, &ev->stream, &has_stream);
      break;
    case K_TYPE:
      rc = rd_str(r, &ev->type, &has_type);
      break;
    case K_ID:
      rc = rd_id(r, ev->id, &has_id);
      ev->has_id = has_id;
      break;
    case K_VERSION:
      rc = rd_int(r, &ev->version, NULL);
      break;
    case K_POSITION:
      rc = rd_uint(r, &ev->position, &has_pos);
      break;
    case K_TIMESTAMP:
      rc = rd_int(r, &ev->timestamp_ns, NULL);
      break;
    case K_DATA:
      rc = rd_bytes(r, &ev->data, NULL);
      break;
    case K_METADATA:
      rc = rd_bytes(r, &ev->metadata, NULL);
      break;
    default:
      rc = evs__mp_skip(r);
      break;
    }
    if (rc)
      return EVS_EPROTO;
  }
  if (!has_type || !has_id || !has_pos || !has_stream)
    return EVS_EPROTO;
  return 0;
}

int evs__proto_next_event(evs__proto_cursor *c, evs__proto_event *ev) {
  if (c->left == 0)
    return 0;
  if (decode_recorded(&c->r, ev))
    return EVS_EPROTO;
  c->left--;
  return 1;
}

static int rd_result_field(evs__mp_reader *r, int key, evs__proto_result *o) {
  switch (key) {
  case K_FIRST_VERSION:
    return rd_int(r, &o->first_version, NULL);
  case K_LAST_VERSION:
    return rd_int(r, &o->last_version, NULL);
  case K_FIRST_POSITION:
    return rd_uint(r, &o->first_position, NULL);
  case K_LAST_POSITION:
    return rd_uint(r, &o->last_position, NULL);
  case K_TIMESTAMP:
    return rd_int(r, &o->timestamp_ns, NULL);
  case K_IDEMPOTENT:
    return rd_bool(r, &o->idempotent);
  default:
    return evs__mp_skip(r);
  }
}

int evs__proto_next_result(evs__proto_cursor *c, evs__proto_result *out) {
  if (c->left == 0)
    return 0;
  uint32_t n;
  memset(out, 0, sizeof *out);
  if (evs__mp_read_map(&c->r, &n))
    return EVS_EPROTO;
  for (uint32_t i = 0; i < n; i++) {
    evs_slice k;
    if (evs__mp_read_str(&c->r, &k) || rd_result_field(&c->r, key_id(k), out))
      return EVS_EPROTO;
  }
  c->left--;
  return 1;
}

int evs__proto_next_stream(evs__proto_cursor *c, evs__proto_stream_entry *out) {
  if (c->left == 0)
    return 0;
  uint32_t n;
  memset(out, 0, sizeof *out);
  out->truncate_before = -1;
  if (evs__mp_read_map(&c->r, &n))
    return EVS_EPROTO;
  int has_name = 0;
  for (uint32_t i = 0; i < n; i++) {
    evs_slice k;
    if (evs__mp_read_str(&c->r, &k))
      return EVS_EPROTO;
    int rc;
    switch (key_id(k)) {
    case K_NAME:
      rc = rd_str(&c->r, &out->name, &has_name);
      break;
    case K_VERSION:
      rc = rd_int(&c->r, &out->version, NULL);
      break;
    case K_LAST_POSITION:
      rc = rd_uint(&c->r, &out->last_position, NULL);
      break;
    case K_LAST_TIMESTAMP:
      rc = rd_int(&c->r, &out->last_timestamp_ns, NULL);
      break;
    case K_DELETED:
      rc = rd_bool(&c->r, &out->deleted);
      break;
    case K_TOMBSTONED:
      rc = rd_bool(&c->r, &out->tombstoned);
      break;
    case K_MAX_COUNT:
      rc = rd_uint(&c->r, &out->max_count, NULL);
      break;
    case K_MAX_AGE:
      rc = rd_uint(&c->r, &out->max_age_sec, NULL);
      break;
    case K_TRUNCATE_BEFORE:
      rc = rd_int(&c->r, &out->truncate_before, NULL);
      break;
    case K_CUSTOM:
      rc = rd_bytes(&c->r, &out->custom, &out->has_custom);
      break;
    default:
      rc = evs__mp_skip(&c->r);
      break;
    }
    if (rc)
      return EVS_EPROTO;
  }
  if (!has_name)
    return EVS_EPROTO;
  c->left--;
  return 1;
}

/* The keys of a "stats" map, in the order they are written. */
#define EVS__STATS_KEYS(XX)                                                    \
  XX(events, events)                                                           \
  XX(streams, streams)                                                         \
  XX(event_types, event_types)                                                 \
  XX(categories, categories)                                                   \
  XX(last_position, last_position)                                             \
  XX(file_size, file_size)                                                     \
  XX(map_size, map_size)                                                       \
  XX(map_used, map_used)                                                       \
  XX(page_size, page_size)                                                     \
  XX(data_bytes_raw, data_bytes_raw)                                           \
  XX(data_bytes_stored, data_bytes_stored)                                     \
  XX(compressed_events, compressed_events)

void evs__proto_w_stats(evs__buf *b, const evs__proto_stats *st) {
  evs__mp_open m = evs__mp_w_map_open(b);
#define W_STAT(key, field)                                                     \
  evs__mp_w_key(b, &m, #key);                                                  \
  evs__mp_w_uint(b, st->field);
  EVS__STATS_KEYS(W_STAT)
#undef W_STAT
  evs__mp_w_key(b, &m, "last_timestamp");
  evs__mp_w_int(b, st->last_timestamp_ns);
  evs__mp_w_map_close(b, &m);
}

/* Reads a "stats" map; unknown keys are skipped. */
static int rd_stats(evs__mp_reader *r, evs__proto_stats *st, int *has) {
  int present;
  if (rd_nil(r, &present))
    return 0;
  uint32_t n;
  if (evs__mp_read_map(r, &n))
    return EVS_EPROTO;
  memset(st, 0, sizeof *st);
  for (uint32_t i = 0; i < n; i++) {
    evs_slice k;
    if (evs__mp_read_str(r, &k))
      return EVS_EPROTO;
    int rc;
#define R_STAT(key, field)                                                     \
  if (slice_eq(k, #key)) {                                                     \
    rc = rd_uint(r, &st->field, NULL);                                         \
  } else
    EVS__STATS_KEYS(R_STAT)
#undef R_STAT
    if (slice_eq(k, "last_timestamp"))
      rc = rd_int(r, &st->last_timestamp_ns, NULL);
    else
      rc = evs__mp_skip(r);
    if (rc)
      return EVS_EPROTO;
  }
  *has = 1;
  return 0;
}

/* Reads a recorded event map into *ev (slices into the reader's bytes). */
static int rd_event(evs__mp_reader *r, evs__proto_event *ev, int *has) {
  int present;
  if (rd_nil(r, &present))
    return 0;
  if (decode_recorded(r, ev))
    return EVS_EPROTO;
  *has = 1;
  return 0;
}

/* Reads an array value into raw/count and checks every element with
 * `next`. */
static int rd_checked_array(evs__mp_reader *r, evs_slice *raw, uint32_t *count,
                            int which) {
  int present;
  if (rd_nil(r, &present))
    return 0;
  if (rd_raw_array(r, raw))
    return EVS_EPROTO;
  *count = array_count(*raw);
  evs__proto_cursor c;
  evs__proto_cursor_init(&c, *raw, *count);
  for (;;) {
    int rc;
    if (which == 0) {
      evs__proto_event ev;
      rc = evs__proto_next_event(&c, &ev);
    } else if (which == 1) {
      evs__proto_result res;
      rc = evs__proto_next_result(&c, &res);
    } else {
      evs__proto_stream_entry st;
      rc = evs__proto_next_stream(&c, &st);
    }
    if (rc == 0)
      return 0;
    if (rc < 0)
      return EVS_EPROTO;
  }
}

int evs__proto_decode_reply(evs__proto_reply *rep, const void *body, size_t len,
                            char *err, size_t errlen) {
  memset(rep, 0, sizeof *rep);
  rep->truncate_before = -1;
  rep->version = -1;
  rep->first_version = -1;
  rep->actual_version = -1;
  if (err && errlen)
    err[0] = '\0';
  evs__mp_reader r;
  evs__mp_reader_init(&r, body, len);
  uint32_t n;
  if (evs__mp_read_map(&r, &n))
    return fail(err, errlen, EVS_EPROTO, "the frame body must be a map");
  int has_kind = 0, has_code = 0;
  for (uint32_t i = 0; i < n; i++) {
    evs_slice k;
    if (evs__mp_read_str(&r, &k))
      return fail(err, errlen, EVS_EPROTO, "map keys must be strings");
    int key = key_id(k);
    int rc = 0;
    evs_slice s;
    int64_t code = 0;
    switch (key) {
    case K_KIND:
      rc = rd_str(&r, &s, &has_kind);
      if (rc == 0 && has_kind) {
        int kd;
        for (kd = 0; kd < EVS__K_COUNT; kd++)
          if (slice_eq(s, kind_names[kd]))
            break;
        if (kd == EVS__K_COUNT)
          return fail(err, errlen, EVS_EPROTO, "unknown frame kind");
        rep->kind = (evs__proto_kind)kd;
      }
      break;
    case K_RID:
      rc = rd_uint(&r, &rep->rid, NULL);
      break;
    case K_CODE:
      rc = rd_int(&r, &code, &has_code);
      if (rc == 0 && (code > 0 || code < INT32_MIN))
        rc = EVS_EPROTO;
      rep->code = (int)code;
      break;
    case K_ERROR:
      rc = rd_str(&r, &rep->error, NULL);
      break;
    case K_MESSAGE:
      rc = rd_str(&r, &rep->message, NULL);
      break;
    case K_PROTOCOL:
      rc = rd_uint(&r, &rep->protocol, NULL);
      break;
    case K_SERVER:
      rc = rd_str(&r, &rep->server, NULL);
      break;
    case K_MAX_FRAME:
      rc = rd_uint(&r, &rep->max_frame, NULL);
      break;
    case K_MAX_EVENTS:
      rc = rd_uint(&r, &rep->max_events, NULL);
      break;
    case K_MAX_EVENT_SIZE:
      rc = rd_uint(&r, &rep->max_event_size, NULL);
      break;
    case K_FIRST_VERSION:
      rc = rd_int(&r, &rep->first_version, NULL);
      rep->result.first_version = rep->first_version;
      rep->has_result = 1;
      break;
    case K_LAST_VERSION:
      rc = rd_int(&r, &rep->result.last_version, NULL);
      rep->has_result = 1;
      break;
    case K_FIRST_POSITION:
      rc = rd_uint(&r, &rep->first_position, NULL);
      rep->result.first_position = rep->first_position;
      break;
    case K_LAST_POSITION:
      rc = rd_uint(&r, &rep->last_position, NULL);
      rep->result.last_position = rep->last_position;
      break;
    case K_TIMESTAMP:
      rc = rd_int(&r, &rep->result.timestamp_ns, NULL);
      break;
    case K_IDEMPOTENT:
      rc = rd_bool(&r, &rep->result.idempotent);
      break;
    case K_ACTUAL_VERSION:
      rc = rd_int(&r, &rep->actual_version, &rep->has_actual_version);
      break;
    case K_FAILED_PART:
      rc = rd_uint(&r, &rep->failed_part, NULL);
      break;
    case K_RESULTS:
      rc = rd_checked_array(&r, &rep->results_raw, &rep->nresults, 1);
      break;
    case K_EVENTS:
      rc = rd_checked_array(&r, &rep->events_raw, &rep->nevents, 0);
      break;
    case K_STREAMS:
      rc = rd_checked_array(&r, &rep->streams_raw, &rep->nstreams, 2);
      break;
    case K_NEXT:
      rc = rd_int(&r, &rep->next, &rep->has_next);
      break;
    case K_CHECKPOINT:
      /* A position, or a stream version: -1 before the stream's first. */
      rc = rd_int(&r, &rep->checkpoint, &rep->has_checkpoint);
      if (rc == 0 && rep->checkpoint < -1)
        rc = EVS_EPROTO;
      break;
    case K_END:
      rc = rd_bool(&r, &rep->end);
      break;
    case K_EXISTS:
      rc = rd_bool(&r, &rep->exists);
      break;
    case K_STREAM_ID:
      rc = rd_uint(&r, &rep->stream_id, NULL);
      break;
    case K_VERSION:
      rc = rd_int(&r, &rep->version, NULL);
      break;
    case K_START_VERSION:
      rc = rd_int(&r, &rep->start_version, NULL);
      break;
    case K_LAST_TIMESTAMP:
      rc = rd_int(&r, &rep->last_timestamp_ns, NULL);
      break;
    case K_DELETED:
      rc = rd_bool(&r, &rep->deleted);
      break;
    case K_TOMBSTONED:
      rc = rd_bool(&r, &rep->tombstoned);
      break;
    case K_MAX_COUNT:
      rc = rd_uint(&r, &rep->max_count, NULL);
      break;
    case K_MAX_AGE:
      rc = rd_uint(&r, &rep->max_age_sec, NULL);
      break;
    case K_TRUNCATE_BEFORE:
      rc = rd_int(&r, &rep->truncate_before, NULL);
      break;
    case K_CUSTOM:
      rc = rd_bytes(&r, &rep->custom, &rep->has_custom);
      break;
    case K_HEAD:
      rc = rd_uint(&r, &rep->head, NULL);
      break;
    case K_TIME:
      rc = rd_int(&r, &rep->time_ns, NULL);
      break;
    case K_HEAD_TIMESTAMP:
      rc = rd_int(&r, &rep->head_timestamp_ns, NULL);
      break;
    case K_EVENT:
      rc = rd_event(&r, &rep->event, &rep->has_event);
      break;
    case K_STATE:
      rc = rd_bytes(&r, &rep->state, &rep->has_state);
      break;
    case K_STATS:
      rc = rd_stats(&r, &rep->stats, &rep->has_stats);
      break;
    case K_EVENTS_CHECKED:
      rc = rd_uint(&r, &rep->events_checked, NULL);
      break;
    case K_STREAMS_CHECKED:
      rc = rd_uint(&r, &rep->streams_checked, NULL);
      break;
    case K_ERRORS:
      rc = rd_uint(&r, &rep->errors, NULL);
      break;
    case K_GENERATION:
      rc = rd_uint(&r, &rep->generation, NULL);
      break;
    case K_EVENTS_APPLIED:
      rc = rd_uint(&r, &rep->events_applied, NULL);
      break;
    case K_ERROR_POSITION:
      rc = rd_uint(&r, &rep->error_position, NULL);
      break;
    case K_DONE:
      rc = rd_uint(&r, &rep->done, NULL);
      break;
    case K_TOTAL:
      rc = rd_uint(&r, &rep->total, NULL);
      break;
    case K_PROBLEM:
      rc = rd_str(&r, &rep->problem, &rep->has_problem);
      break;
    default:
      if (evs__mp_skip(&r))
        return fail(err, errlen, EVS_EPROTO, "malformed value");
      continue;
    }
    if (rc)
      return fail(err, errlen, EVS_EPROTO, "key '%s' must be %s",
                  key_names[key], type_word(key));
  }
  if (r.p != r.end)
    return fail(err, errlen, EVS_EPROTO, "bytes after the map");
  if (!has_kind || !has_code)
    return fail(err, errlen, EVS_EPROTO, "server frame without kind or code");
  /* An error name the client knows wins over the number: the numbers of
   * -errno codes differ between systems, the names do not. */
  if (rep->code != 0 && rep->error.len) {
    int byname = evs__proto_err_from_name(rep->error);
    if (byname)
      rep->code = byname;
  }
  return 0;
}
