/*
 * evstore — built-in projections ("stream-state", "counts"), JSON merge
 * patch (RFC 7386) and folding a stream's state straight from the log.
 *
 * Folding rules, shared by the "stream-state" view and evs_state_fold(), so
 * that the view and a fold from the log always agree:
 *  - the state of a stream starts as {};
 *  - event data of 0 bytes changes nothing;
 *  - event data that is a JSON object is applied as an RFC 7386 merge
 *    patch;
 *  - event data that is not JSON, or is JSON but not an object, makes the
 *    stream unfoldable (RFC 7386 would let a non-object replace the whole
 *    state, which turns an aggregate into a scalar: almost always a bug in
 *    the writer, so it is reported instead).
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "projections/internal.h"
#include "store/internal.h"

/* ---- RFC 7386 -------------------------------------------------------------
 */

/*
 * MergePatch(target, patch): consumes the reference `target` (may be NULL),
 * borrows `patch`, returns a new reference (NULL when out of memory).
 */
static json_t *evs__merge(json_t *target, json_t *patch) {
  if (!json_is_object(patch)) {
    json_decref(target);
    return json_deep_copy(patch);
  }
  if (!json_is_object(target)) {
    json_decref(target);
    target = json_object();
    if (target == NULL)
      return NULL;
  }
  const char *k;
  size_t klen;
  json_t *v;
  json_object_keylen_foreach(patch, k, klen, v) {
    if (json_is_null(v)) {
      json_object_deln(target, k, klen);
      continue;
    }
    json_t *cur = json_object_getn(target, k, klen);
    json_incref(cur);
    json_t *m = evs__merge(cur, v);
    if (m == NULL || json_object_setn_new(target, k, klen, m) != 0) {
      json_decref(target);
      return NULL;
    }
  }
  return target;
}

/* Compact JSON text in a malloc'd buffer (not jansson's allocator). */
static int evs__dump(const json_t *j, char **out) {
  size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
  size_t n = json_dumpb(j, NULL, 0, flags);
  char *buf = malloc(n + 1);
  if (buf == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  if (n && json_dumpb(j, buf, n, flags) != n) {
    free(buf);
    return evs__err(EVS_ENOMEM, "encoding JSON failed");
  }
  buf[n] = '\0';
  *out = buf;
  return 0;
}

static const char *evs__json_type(const json_t *j) {
  switch (json_typeof(j)) {
  case JSON_OBJECT:
    return "an object";
  case JSON_ARRAY:
    return "an array";
  case JSON_STRING:
    return "a string";
  case JSON_INTEGER:
  case JSON_REAL:
    return "a number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "a boolean";
  default:
    return "null";
  }
}

/*
 * Applies one event to *state. Returns 0, 1 when the event makes the stream
 * unfoldable (reason in `reason`), or EVS_ENOMEM.
 */
static int evs__fold_event(json_t **state, const evs_event *ev, char *reason,
                           size_t rlen) {
  if (ev->data.len == 0)
    return 0;
  json_error_t err;
  json_t *patch =
      json_loadb(ev->data.data, ev->data.len, JSON_DECODE_ANY, &err);
  if (patch == NULL) {
    snprintf(reason, rlen, "data is not JSON: %s (line %d, column %d)",
             err.text, err.line, err.column);
    return 1;
  }
  if (!json_is_object(patch)) {
    snprintf(reason, rlen, "data is %s, not a JSON object",
             evs__json_type(patch));
    json_decref(patch);
    return 1;
  }
  json_t *next = evs__merge(*state, patch);
  json_decref(patch);
  *state = next;
  return next ? 0 : evs__err(EVS_ENOMEM, "out of memory");
}

int evs_json_merge_patch(char **out, const char *target, size_t target_len,
                         const char *patch, size_t patch_len) {
  evs__clear_error();
  if (out == NULL || patch == NULL)
    return evs__err(EVS_EINVAL, "NULL output or patch");
  *out = NULL;
  json_error_t err;
  json_t *t = NULL;
  if (target) {
    t = json_loadb(target, target_len, JSON_DECODE_ANY, &err);
    if (t == NULL)
      return evs__err(EVS_EINVAL,
                      "target is not JSON: %s (line %d, column "
                      "%d)",
                      err.text, err.line, err.column);
  }
  json_t *p = json_loadb(patch, patch_len, JSON_DECODE_ANY, &err);
  if (p == NULL) {
    json_decref(t);
    return evs__err(EVS_EINVAL, "patch is not JSON: %s (line %d, column %d)",
                    err.text, err.line, err.column);
  }
  json_t *r = evs__merge(t, p);
  json_decref(p);
  if (r == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  int rc = evs__dump(r, out);
  json_decref(r);
  return rc;
}

void evs_state_free(char *json) {
  free(json);
}

/* ---- folding from the log -------------------------------------------------
 */

int evs_state_fold(char **out, int64_t *version, evs_store *store,
                   const char *stream, uint64_t as_of_position,
                   int64_t as_of_ns) {
  evs__clear_error();
  if (out == NULL || store == NULL)
    return evs__err(EVS_EINVAL, "NULL output or store");
  *out = NULL;
  if (version)
    *version = EVS_VERSION_NONE;
  evs_read_options ro = EVS_READ_OPTIONS_INIT;
  ro.as_of_position = as_of_position;
  ro.as_of_ns = as_of_ns;
  evs_iter *it = NULL;
  int rc = evs_read_stream(&it, store, stream, &ro);
  if (rc)
    return rc;
  json_t *state = json_object();
  if (state == NULL) {
    evs_iter_free(it);
    return evs__err(EVS_ENOMEM, "out of memory");
  }
  const evs_event *ev;
  int64_t last = EVS_VERSION_NONE;
  char reason[200];
  while ((rc = evs_iter_next(it, &ev)) == 1) {
    rc = evs__fold_event(&state, ev, reason, sizeof reason);
    if (rc == 1) {
      rc = evs__err(EVS_EINVAL,
                    "stream '%s' is unfoldable: event version %" PRId64
                    " (position %" PRIu64 "): %s",
                    stream, ev->version, ev->position, reason);
      break;
    }
    if (rc)
      break;
    last = ev->version;
  }
  evs_iter_free(it);
  if (rc == 0)
    rc = evs__dump(state, out);
  json_decref(state);
  if (rc == 0 && version)
    *version = last;
  return rc;
}

/* ---- "stream-state" --------------------------------------------------------
 */

static int evs__stream_state(evs_view_txn *txn, const evs_event *ev,
                             void *payload) {
  (void)payload;
  evs_slice cur;
  int rc = evs_view_get(txn, ev->stream.data, ev->stream.len, &cur);
  if (rc && rc != EVS_ENOTFOUND)
    return rc;
  json_t *env = NULL;
  if (rc == 0) {
    json_error_t err;
    env = json_loadb(cur.data, cur.len, 0, &err);
    if (env == NULL || !json_is_object(env)) {
      json_decref(env);
      return evs__err(EVS_ECORRUPT,
                      "stream-state: the view value of '%.*s' "
                      "is not a JSON object",
                      (int)ev->stream.len, (const char *)ev->stream.data);
    }
  } else {
    env = json_object();
    if (env == NULL)
      return evs__err(EVS_ENOMEM, "out of memory");
  }
  rc = 0;
  if (json_object_get(env, "unfoldable") == NULL) {
    json_t *state = json_object_get(env, "state");
    if (!json_is_object(state))
      state = json_object();
    else
      json_incref(state);
    char reason[200];
    int fr = state ? evs__fold_event(&state, ev, reason, sizeof reason)
                   : evs__err(EVS_ENOMEM, "out of memory");
    if (fr == 1) {
      json_decref(state);
      json_t *u =
          json_pack("{s:I,s:I,s:s}", "version", (json_int_t)ev->version,
                    "position", (json_int_t)ev->position, "reason", reason);
      if (u == NULL || json_object_set_new(env, "unfoldable", u) ||
          json_object_set_new(env, "state", json_null()))
        rc = evs__err(EVS_ENOMEM, "out of memory");
    } else if (fr < 0) {
      json_decref(state);
      rc = fr;
    } else if (json_object_set_new(env, "state", state)) {
      rc = evs__err(EVS_ENOMEM, "out of memory");
    }
  }
  if (rc == 0 &&
      (json_object_set_new(env, "version", json_integer(ev->version)) ||
       json_object_set_new(env, "position",
                           json_integer((json_int_t)ev->position)) ||
       json_object_set_new(env, "timestamp", json_integer(ev->timestamp_ns))))
    rc = evs__err(EVS_ENOMEM, "out of memory");
  char *text = NULL;
  if (rc == 0)
    rc = evs__dump(env, &text);
  json_decref(env);
  if (rc == 0)
    rc = evs_view_put(txn, ev->stream.data, ev->stream.len, text, strlen(text));
  free(text);
  return rc;
}

/* ---- "counts" --------------------------------------------------------------
 */

static int evs__count_incr(evs_view_txn *txn, const char *prefix,
                           evs_slice name) {
  char key[16 + EVS_MAX_NAME_LEN];
  size_t plen = strlen(prefix);
  if (name.len > EVS_MAX_NAME_LEN)
    return evs__err(EVS_EINVAL, "name too long");
  /* The key is counted bytes (klen), not a C string. */
  memcpy(key, prefix, plen); /* NOLINT(bugprone-not-null-terminated-result) */
  memcpy(key + plen, name.data, name.len);
  size_t klen = plen + name.len;
  evs_slice cur;
  uint64_t n = 0;
  int rc = evs_view_get(txn, key, klen, &cur);
  if (rc == 0) {
    char num[24];
    if (cur.len == 0 || cur.len >= sizeof num)
      return evs__err(EVS_ECORRUPT, "counts: bad value");
    memcpy(num, cur.data, cur.len);
    num[cur.len] = '\0';
    char *end;
    n = strtoull(num, &end, 10);
    if (*end != '\0')
      return evs__err(EVS_ECORRUPT, "counts: bad value");
  } else if (rc != EVS_ENOTFOUND) {
    return rc;
  }
  char out[24];
  int len = snprintf(out, sizeof out, "%" PRIu64, n + 1);
  return evs_view_put(txn, key, klen, out, (size_t)len);
}

static int evs__counts(evs_view_txn *txn, const evs_event *ev, void *payload) {
  (void)payload;
  evs_slice cat = evs_stream_category(ev->stream.data, ev->stream.len);
  int rc = evs__count_incr(txn, "category/", cat);
  if (rc == 0)
    rc = evs__count_incr(txn, "type/", ev->type);
  return rc;
}

int evs_proj_builtin(evs_projection *out, const char *name) {
  evs__clear_error();
  if (out == NULL || name == NULL)
    return evs__err(EVS_EINVAL, "NULL output or name");
  evs_projection p = EVS_PROJECTION_INIT;
  if (strcmp(name, "stream-state") == 0) {
    p.name = "stream-state";
    p.handler = evs__stream_state;
  } else if (strcmp(name, "counts") == 0) {
    p.name = "counts";
    p.handler = evs__counts;
  } else {
    return evs__err(EVS_ENOTFOUND,
                    "no built-in projection '%s' (there are "
                    "'stream-state' and 'counts')",
                    name);
  }
  *out = p;
  return 0;
}
