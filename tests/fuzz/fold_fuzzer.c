/*
 * libFuzzer target for the JSON model of the merge-patch fold
 * (src/projections/json.c): the parser, the serializer and RFC 7386 merge
 * behind "stream-state", evs_state_fold() and evs_json_merge_patch(). Event
 * data is whatever writers appended, so it is untrusted text.
 *
 * Oracles, on the whole input:
 *   - the fold parses exactly what the CLI's append validator
 *     (cli_json_check) accepts, apart from the validator's lower nesting
 *     limit; and everything jansson (the fold's former parser) accepts
 *     (but a number followed by a NUL byte, a quirk of jansson's);
 *   - what parses serializes to compact JSON that the validator accepts,
 *     and parse then serialize is idempotent;
 *   - the serialized text means what jansson reads from the input (same
 *     members in the same order, same values); for documents without
 *     reals or "-0" it is byte for byte jansson's compact output, which the
 *     fold wrote before.
 * On "TARGET\0PATCH" (a NUL byte is never JSON) also:
 *   - the merge of valid documents is valid JSON, applying the patch again
 *     changes nothing (RFC 7386 is idempotent), and it means what the
 *     former jansson merge makes of the same documents.
 *
 * Built as a libFuzzer binary with clang (fold_fuzzer), and replayed over
 * tests/fuzz/corpus/fold/ by fuzz_replay_fold in every build.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/evstore.h"
#include "json.h"
#include "projections/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond) {
  if (!cond)
    abort();
}

/* jansson's compact text of a value (malloc'd), as the fold wrote it. */
static char *jansson_dump(const json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
  check(s != NULL);
  return s;
}

/* jansson's reading of text, or NULL when jansson rejects it. */
static json_t *jansson_load(const void *text, size_t len) {
  return json_loadb(text, len, JSON_DECODE_ANY, NULL);
}

/* Are there reals in j (jansson writes them back in its own form)? */
static int has_real(const json_t *j) {
  if (json_is_real(j))
    return 1;
  if (json_is_array(j)) {
    for (size_t i = 0; i < json_array_size(j); i++)
      if (has_real(json_array_get(j, i)))
        return 1;
  }
  if (json_is_object(j)) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)j, k, v) {
      if (has_real(v))
        return 1;
    }
  }
  return 0;
}

/* The merge the fold made with jansson, for comparison. */
static json_t *jansson_merge(json_t *target, json_t *patch) {
  if (!json_is_object(patch)) {
    json_decref(target);
    return json_deep_copy(patch);
  }
  if (!json_is_object(target)) {
    json_decref(target);
    target = json_object();
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
    check(json_object_setn_new(target, k, klen, jansson_merge(cur, v)) == 0);
  }
  return target;
}

/* Checks one document; returns its serialization (malloc'd) or NULL. */
static char *document(const uint8_t *data, size_t size) {
  evs__json *doc = NULL;
  evs__json_error err = { NULL, 0 };
  int rc = evs__json_parse(&doc, data, size, EVS__JSON_MAX_DEPTH, &err);
  check(rc == 0 || rc == EVS_EINVAL);

  cli_json_info info;
  const char *verr = NULL;
  int valid = cli_json_check(&info, data, size, &verr) == 0;
  /* jansson takes a number followed by a NUL byte as if the text ended
   * there (a top-level number, which never folds); other NUL bytes it
   * rejects, as JSON does. */
  json_t *j = memchr(data, '\0', size) ? NULL : jansson_load(data, size);
  if (rc) {
    check(doc == NULL && err.msg != NULL && err.offset <= size);
    check(!valid);
    check(j == NULL);
    return NULL;
  }
  /* Accepted: the validator agrees, unless the nesting passed its limit. */
  check(valid || strcmp(verr, "nested too deeply") == 0);

  char *text = NULL;
  size_t len = 0;
  check(evs__json_dump(&text, &len, doc) == 0);
  check(text != NULL && text[len] == '\0' && strlen(text) <= len);
  evs__json_free(doc);

  cli_json_info out;
  int rc2 =
      cli_json_check_depth(&out, text, len, 4 * EVS__JSON_MAX_DEPTH, NULL);
  check(rc2 == 0);
  check(!out.has_space && out.start == 0 && out.end == len);
  check(!valid || out.kind == info.kind);

  evs__json *again = NULL;
  check(evs__json_parse(&again, text, len, EVS__JSON_MAX_DEPTH, NULL) == 0);
  char *text2 = NULL;
  size_t len2 = 0;
  check(evs__json_dump(&text2, &len2, again) == 0);
  check(len2 == len && memcmp(text, text2, len) == 0);
  free(text2);
  evs__json_free(again);

  if (j) {
    json_t *j2 = jansson_load(text, len);
    check(j2 != NULL);
    char *a = jansson_dump(j), *b = jansson_dump(j2);
    check(strcmp(a, b) == 0);
    if (!has_real(j) &&
        memmem(data, size, "-0", 2) == NULL) /* no number respelled */
      check(strcmp(a, text) == 0);
    free(a);
    free(b);
    json_decref(j2);
    json_decref(j);
  }
  return text;
}

static void merge(const uint8_t *t, size_t tlen, const uint8_t *p,
                  size_t plen) {
  char *ts = document(t, tlen);
  char *ps = document(p, plen);
  int rc;
  if (ts == NULL || ps == NULL) {
    char *out = NULL;
    if (ps) { /* a target that is not JSON is refused */
      rc = evs_json_merge_patch(&out, (const char *)t, tlen, ps, strlen(ps));
      check(rc == EVS_EINVAL);
    }
    check(out == NULL);
    free(ts);
    free(ps);
    return;
  }
  char *r = NULL;
  rc = evs_json_merge_patch(&r, ts, strlen(ts), ps, strlen(ps));
  check(rc == 0 && r != NULL);
  free(document((const uint8_t *)r, strlen(r)));

  char *r2 = NULL;
  check(evs_json_merge_patch(&r2, r, strlen(r), ps, strlen(ps)) == 0);
  check(strcmp(r, r2) == 0);
  evs_state_free(r2);

  json_t *jt = jansson_load(ts, strlen(ts));
  json_t *jp = jansson_load(ps, strlen(ps));
  if (jt && jp) {
    json_t *jr = jansson_merge(jt, jp);
    json_t *ours = jansson_load(r, strlen(r));
    check(jr != NULL && ours != NULL);
    char *a = jansson_dump(jr), *b = jansson_dump(ours);
    check(strcmp(a, b) == 0);
    free(a);
    free(b);
    json_decref(jr);
    json_decref(ours);
  } else {
    json_decref(jt);
  }
  json_decref(jp);
  evs_state_free(r);
  free(ts);
  free(ps);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  free(document(data, size));
  const uint8_t *nul = memchr(data, '\0', size);
  if (nul) {
    size_t tlen = (size_t)(nul - data);
    merge(data, tlen, nul + 1, size - tlen - 1);
  }
  return 0;
}
