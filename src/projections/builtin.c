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
 * Documents are held in the model of projections/json.h: any RFC 8259 JSON
 * folds, and every number keeps the text it was written with.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "projections/internal.h"
#include "projections/json.h"
#include "store/internal.h"

/* ---- RFC 7386 -------------------------------------------------------------
 */

/* "<what> is not JSON: <why> (line L, column C)" in buf, for err about
 * text[0..len); the line and column (1-based) count bytes. */
static void evs__json_describe(char *buf, size_t n, const char *what,
                               const void *text, size_t len,
                               const evs__json_error *err) {
  const char *t = text;
  unsigned long line = 1, column = 1;
  for (size_t i = 0; i < err->offset && i < len; i++) {
    if (t[i] == '\n') {
      line++;
      column = 1;
    } else {
      column++;
    }
  }
  snprintf(buf, n, "%s is not JSON: %s (line %lu, column %lu)", what, err->msg,
           line, column);
}

static const char *evs__json_type_name(const evs__json *j) {
  switch (evs__json_typeof(j)) {
  case EVS__JSON_OBJECT:
    return "an object";
  case EVS__JSON_ARRAY:
    return "an array";
  case EVS__JSON_STRING:
    return "a string";
  case EVS__JSON_NUMBER:
    return "a number";
  case EVS__JSON_TRUE:
  case EVS__JSON_FALSE:
    return "a boolean";
  default:
    return "null";
  }
}

/* Parses `what` (a target, a patch) for evs_json_merge_patch(): 0,
 * EVS_EINVAL with the detail set, or EVS_ENOMEM. */
static int evs__json_load(evs__json **out, const char *what, const void *text,
                          size_t len) {
  evs__json_error err;
  int rc = evs__json_parse(out, text, len, EVS__JSON_MAX_DEPTH, &err);
  if (rc == EVS_EINVAL) {
    char msg[200];
    evs__json_describe(msg, sizeof msg, what, text, len, &err);
    return evs__err(EVS_EINVAL, "%s", msg);
  }
  if (rc)
    return evs__err(EVS_ENOMEM, "out of memory");
  return 0;
}

/*
 * Applies one event to *state (which it may replace). Returns 0, 1 when the
 * event makes the stream unfoldable (reason in `reason`), or EVS_ENOMEM
 * (*state freed and NULL).
 */
static int evs__fold_event(evs__json **state, const evs_event *ev, char *reason,
                           size_t rlen) {
  if (ev->data.len == 0)
    return 0;
  evs__json *patch;
  evs__json_error err;
  int rc = evs__json_parse(&patch, ev->data.data, ev->data.len,
                           EVS__JSON_MAX_DEPTH, &err);
  if (rc == EVS_EINVAL) {
    evs__json_describe(reason, rlen, "data", ev->data.data, ev->data.len, &err);
    return 1;
  }
  if (rc) {
    evs__json_free(*state);
    *state = NULL;
    return evs__err(EVS_ENOMEM, "out of memory");
  }
  if (evs__json_typeof(patch) != EVS__JSON_OBJECT) {
    snprintf(reason, rlen, "data is %s, not a JSON object",
             evs__json_type_name(patch));
    evs__json_free(patch);
    return 1;
  }
  *state = evs__json_merge(*state, patch);
  return *state ? 0 : evs__err(EVS_ENOMEM, "out of memory");
}

int evs_json_merge_patch(char **out, const char *target, size_t target_len,
                         const char *patch, size_t patch_len) {
  evs__clear_error();
  if (out == NULL || patch == NULL)
    return evs__err(EVS_EINVAL, "NULL output or patch");
  *out = NULL;
  evs__json *t = NULL, *p = NULL;
  int rc = 0;
  if (target)
    rc = evs__json_load(&t, "target", target, target_len);
  if (rc == 0)
    rc = evs__json_load(&p, "patch", patch, patch_len);
  if (rc) {
    evs__json_free(t);
    return rc;
  }
  evs__json *r = evs__json_merge(t, p);
  if (r == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  rc = evs__json_dump(out, NULL, r);
  evs__json_free(r);
  return rc ? evs__err(rc, "out of memory") : 0;
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
  evs__json *state = evs__json_object();
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
  if (rc == 0 && evs__json_dump(out, NULL, state))
    rc = evs__err(EVS_ENOMEM, "out of memory");
  evs__json_free(state);
  if (rc == 0 && version)
    *version = last;
  return rc;
}

/* ---- "stream-state" --------------------------------------------------------
 */

/* Marks the view value `env` unfoldable at `ev`: 0 or EVS_ENOMEM. */
static int evs__mark_unfoldable(evs__json *env, const evs_event *ev,
                                const char *reason) {
  evs__json *u = evs__json_object();
  if (u == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  if (evs__json_object_set(u, "version", 7, evs__json_int(ev->version)) ||
      evs__json_object_set(u, "position", 8, evs__json_uint(ev->position)) ||
      evs__json_object_set(u, "reason", 6,
                           evs__json_string(reason, strlen(reason)))) {
    evs__json_free(u);
    return evs__err(EVS_ENOMEM, "out of memory");
  }
  if (evs__json_object_set(env, "unfoldable", 10, u) ||
      evs__json_object_set(env, "state", 5, evs__json_null()))
    return evs__err(EVS_ENOMEM, "out of memory");
  return 0;
}

/* 1 when `ev` is the first event of a new life of its stream (the stream
 * was soft-deleted, then appended to again: versions go on, and what came
 * before is hidden, as evs_state_fold() and a rebuild see it). */
static int evs__starts_new_life(evs_view_txn *txn, const evs_event *ev,
                                int *out) {
  *out = 0;
  if (ev->version <= 0 || ev->stream.len > EVS_MAX_NAME_LEN)
    return 0;
  char name[EVS_MAX_NAME_LEN + 1];
  memcpy(name, ev->stream.data, ev->stream.len);
  name[ev->stream.len] = '\0';
  evs_stream_info info;
  int rc = evs_stream_info_get(evs__views_store(txn->v), name, &info);
  if (rc == EVS_ENOSTREAM)
    return 0;
  if (rc)
    return rc;
  *out = info.start_version == ev->version;
  evs_stream_info_clear(&info);
  return 0;
}

static int evs__stream_state(evs_view_txn *txn, const evs_event *ev,
                             void *payload) {
  (void)payload;
  evs_slice cur;
  int rc = evs_view_get(txn, ev->stream.data, ev->stream.len, &cur);
  if (rc && rc != EVS_ENOTFOUND)
    return rc;
  if (rc == 0) {
    /* The state of an earlier life is not carried into a new one. */
    int fresh;
    int lrc = evs__starts_new_life(txn, ev, &fresh);
    if (lrc)
      return lrc;
    if (fresh)
      rc = EVS_ENOTFOUND;
  }
  evs__json *env = NULL;
  if (rc == 0) {
    /* One level more than event data: the state sits inside. */
    rc =
        evs__json_parse(&env, cur.data, cur.len, EVS__JSON_MAX_DEPTH + 1, NULL);
    if (rc == EVS_ENOMEM)
      return evs__err(EVS_ENOMEM, "out of memory");
    if (rc || evs__json_typeof(env) != EVS__JSON_OBJECT) {
      evs__json_free(env);
      return evs__err(EVS_ECORRUPT,
                      "stream-state: the view value of '%.*s' "
                      "is not a JSON object",
                      (int)ev->stream.len, (const char *)ev->stream.data);
    }
  } else {
    env = evs__json_object();
    if (env == NULL)
      return evs__err(EVS_ENOMEM, "out of memory");
  }
  rc = 0;
  if (evs__json_object_get(env, "unfoldable", 10) == NULL) {
    /* Taken out, folded, and put back in its place. */
    evs__json *state = evs__json_object_take(env, "state", 5);
    if (state == NULL || evs__json_typeof(state) != EVS__JSON_OBJECT) {
      evs__json_free(state);
      state = evs__json_object();
    }
    char reason[200];
    int fr = state ? evs__fold_event(&state, ev, reason, sizeof reason)
                   : evs__err(EVS_ENOMEM, "out of memory");
    if (fr == 1) {
      evs__json_free(state);
      rc = evs__mark_unfoldable(env, ev, reason);
    } else if (fr < 0) {
      evs__json_free(state);
      rc = fr;
    } else if (evs__json_object_set(env, "state", 5, state)) {
      rc = evs__err(EVS_ENOMEM, "out of memory");
    }
  }
  if (rc == 0 &&
      (evs__json_object_set(env, "version", 7, evs__json_int(ev->version)) ||
       evs__json_object_set(env, "position", 8, evs__json_uint(ev->position)) ||
       evs__json_object_set(env, "timestamp", 9,
                            evs__json_int(ev->timestamp_ns))))
    rc = evs__err(EVS_ENOMEM, "out of memory");
  char *text = NULL;
  size_t len = 0;
  if (rc == 0 && evs__json_dump(&text, &len, env))
    rc = evs__err(EVS_ENOMEM, "out of memory");
  evs__json_free(env);
  if (rc == 0)
    rc = evs_view_put(txn, ev->stream.data, ev->stream.len, text, len);
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
