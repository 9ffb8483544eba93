/*
 * evstore-cli — one line of JSON as an event to append or import (see
 * cli_jevent_parse() in cli.h).
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "cli.h"
#include "json.h"
#include "timeparse.h"

static int err_at(char *err, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int err_at(char *err, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, n, fmt, ap);
  va_end(ap);
  return -1;
}

/* A string member: malloc'd, NUL-free. */
static int get_string(char **out, cli_json_span v, const char *key, char *err,
                      size_t errn) {
  size_t len;
  if (cli_json_span_kind(v) != CLI_JSON_STRING)
    return err_at(err, errn, "\"%s\" must be a string", key);
  free(*out);
  *out = NULL;
  if (cli_json_string(out, &len, v))
    return err_at(err, errn, "out of memory");
  if (memchr(*out, '\0', len)) {
    free(*out);
    *out = NULL;
    return err_at(err, errn, "\"%s\" contains a NUL character", key);
  }
  return 0;
}

/*
 * The bytes a value stands for: {"$base64":"..."} decodes to its bytes;
 * any other JSON is kept as text, compact (`exact` = 0) or as written.
 * With `null_is_empty`, null gives no bytes (*out NULL).
 */
static int get_bytes(void **out, size_t *out_len, cli_json_span v, int exact,
                     int null_is_empty, const char *key, char *err,
                     size_t errn) {
  free(*out);
  *out = NULL;
  *out_len = 0;
  if (null_is_empty && cli_json_span_kind(v) == CLI_JSON_NULL)
    return 0;
  if (cli_json_is_base64_object(v.p, v.len)) {
    cli_json_members it;
    cli_json_span k, b64;
    char *text;
    size_t text_len;
    cli_json_members_init(&it, v.p, v.len);
    cli_json_members_next(&it, &k, &b64);
    if (cli_json_span_kind(b64) != CLI_JSON_STRING)
      return err_at(err, errn, "\"%s\": \"$base64\" must be a string", key);
    if (cli_json_string(&text, &text_len, b64))
      return err_at(err, errn, "out of memory");
    if (cli_base64_decode(text, out_len, text, text_len)) {
      free(text);
      return err_at(err, errn, "\"%s\": \"$base64\" is not valid base64",
                    key);
    }
    *out = text;
    return 0;
  }
  char *copy = cli_xmalloc(v.len);
  if (exact) {
    memcpy(copy, v.p, v.len);
    *out_len = v.len;
  } else {
    *out_len = cli_json_compact(copy, v.p, v.len);
  }
  *out = copy;
  return 0;
}

/* An optional limit: null (none) or an integer >= 0. */
static int get_limit(uint64_t *out, cli_json_span v, const char *key,
                     char *err, size_t errn) {
  int64_t n;
  if (cli_json_span_kind(v) == CLI_JSON_NULL) {
    *out = 0;
    return 0;
  }
  if (cli_json_int64(&n, v) || n < 0)
    return err_at(err, errn, "\"metadata\".\"%s\" must be null or an "
                  "integer >= 0", key);
  *out = (uint64_t)n;
  return 0;
}

static int parse_state_metadata(cli_jevent *ev, cli_json_span md, char *err,
                                size_t errn) {
  if (cli_json_span_kind(md) == CLI_JSON_NULL)
    return 0;
  if (cli_json_span_kind(md) != CLI_JSON_OBJECT)
    return err_at(err, errn, "\"metadata\" of a stream state must be an "
                  "object");
  ev->has_md = 1;
  cli_json_members it;
  cli_json_span k, v;
  cli_json_members_init(&it, md.p, md.len);
  while (cli_json_members_next(&it, &k, &v)) {
    if (cli_json_key_is(k, "max_count")) {
      if (get_limit(&ev->md.max_count, v, "max_count", err, errn))
        return -1;
    } else if (cli_json_key_is(k, "max_age")) {
      if (get_limit(&ev->md.max_age_sec, v, "max_age", err, errn))
        return -1;
    } else if (cli_json_key_is(k, "truncate_before")) {
      uint64_t tb = 0;
      if (get_limit(&tb, v, "truncate_before", err, errn))
        return -1;
      ev->md.truncate_before =
          cli_json_span_kind(v) == CLI_JSON_NULL ? -1 : (int64_t)tb;
    } else if (cli_json_key_is(k, "custom")) {
      if (get_bytes(&ev->custom, &ev->md.custom_len, v, 1, 1, "custom", err,
                    errn))
        return -1;
      ev->md.custom = ev->custom;
    }
  }
  return 0;
}

int cli_jevent_parse(cli_jevent *ev, const char *line, size_t len, int mode,
                     char *err, size_t errn) {
  memset(ev, 0, sizeof *ev);
  evs_stream_metadata md0 = EVS_STREAM_METADATA_INIT;
  ev->md = md0;
  const char *msg;
  cli_json_info info;
  if (cli_json_check(&info, line, len, &msg))
    return err_at(err, errn, "not valid JSON: %s (at byte %zu)", msg,
                  info.error_offset + 1);
  if (info.kind != CLI_JSON_OBJECT)
    return err_at(err, errn, "expected a JSON object like "
                  "{\"type\":\"T\",\"data\":{...}}");
  const int import = mode == CLI_JSONL_IMPORT;
  int has_data = 0;
  cli_json_span md_span = {NULL, 0};
  cli_json_members it;
  cli_json_span k, v;
  cli_json_members_init(&it, line + info.start, info.end - info.start);
  while (cli_json_members_next(&it, &k, &v)) {
    if (cli_json_key_is(k, "type")) {
      if (get_string(&ev->type, v, "type", err, errn))
        goto fail;
    } else if (cli_json_key_is(k, "data")) {
      if (get_bytes(&ev->data, &ev->data_len, v, import, 0, "data", err,
                    errn))
        goto fail;
      has_data = 1;
    } else if (cli_json_key_is(k, "metadata")) {
      md_span = v;
    } else if (cli_json_key_is(k, "id")) {
      if (cli_json_span_kind(v) == CLI_JSON_NULL) {
        ev->has_id = 0;
        continue;
      }
      char *s = NULL;
      if (get_string(&s, v, "id", err, errn))
        goto fail;
      int bad = evs_uuid_parse(&ev->id, s, strlen(s)) != 0;
      free(s);
      if (bad) {
        err_at(err, errn, "\"id\" must be a UUID like "
               "0192f4c4-7a1b-7c3d-8e9f-0123456789ab");
        goto fail;
      }
      if (evs_uuid_is_nil(&ev->id)) {
        err_at(err, errn, "\"id\" must not be the nil UUID");
        goto fail;
      }
      ev->has_id = 1;
    } else if (cli_json_key_is(k, "stream")) {
      if (get_string(&ev->stream, v, "stream", err, errn))
        goto fail;
    } else if (cli_json_key_is(k, "version")) {
      if (cli_json_int64(&ev->version, v) || ev->version < -1) {
        err_at(err, errn, "\"version\" must be an integer >= 0");
        goto fail;
      }
      ev->has_version = 1;
    } else if (cli_json_key_is(k, "timestamp")) {
      char *s = NULL;
      if (get_string(&s, v, "timestamp", err, errn))
        goto fail;
      const char *terr;
      int bad = cli_time_parse(&ev->timestamp_ns, s, strlen(s), &terr);
      free(s);
      if (bad) {
        err_at(err, errn, "\"timestamp\": %s", terr);
        goto fail;
      }
      ev->has_timestamp = 1;
    } else if (import && cli_json_key_is(k, "state")) {
      if (get_string(&ev->state, v, "state", err, errn))
        goto fail;
    }
    /* Other members ("position", unknown ones) are ignored. */
  }
  if (ev->state) {
    ev->is_state = 1;
    if (strcmp(ev->state, "active") && strcmp(ev->state, "deleted") &&
        strcmp(ev->state, "tombstoned")) {
      err_at(err, errn, "\"state\" must be active, deleted or tombstoned");
      goto fail;
    }
    if (ev->stream == NULL || !ev->has_version) {
      err_at(err, errn, "a stream state line needs \"stream\" and "
             "\"version\"");
      goto fail;
    }
    if (md_span.p && parse_state_metadata(ev, md_span, err, errn))
      goto fail;
    return 0;
  }
  if (ev->type == NULL) {
    err_at(err, errn, "missing \"type\" (the event type, a string)");
    goto fail;
  }
  if (!has_data) {
    err_at(err, errn, "missing \"data\" (any JSON value)");
    goto fail;
  }
  if (md_span.p && get_bytes(&ev->metadata, &ev->metadata_len, md_span,
                             import, 1, "metadata", err, errn))
    goto fail;
  if (import && (ev->stream == NULL || !ev->has_version ||
                 ev->version < 0)) {
    err_at(err, errn, "an imported event needs \"stream\" and \"version\" "
           "(lines as written by export)");
    goto fail;
  }
  return 0;
fail:
  cli_jevent_clear(ev);
  return -1;
}

void cli_jevent_clear(cli_jevent *ev) {
  free(ev->stream);
  free(ev->type);
  free(ev->data);
  free(ev->metadata);
  free(ev->state);
  free(ev->custom);
  memset(ev, 0, sizeof *ev);
}
