/*
 * evstore — the JSON document model of the merge-patch fold ("stream-state",
 * evs_state_fold(), evs_json_merge_patch()).
 *
 * A small DOM: objects (members in insertion order), arrays, strings
 * (decoded UTF-8, NUL bytes allowed), numbers, true, false and null. A
 * number keeps the exact text it was written with (its lexeme): the fold
 * never does arithmetic, so 123456789012345678901234567890, 0.10, 1E+2
 * and -0 come out as they went in, however large or precise.
 *
 * The parser accepts exactly RFC 8259 JSON text (any value at the top, UTF-8
 * checked, no lone surrogate escapes), the same language as the CLI's
 * append validator, nested at most `max_depth` values deep. It is
 * recursive, so `max_depth` also bounds the stack; merge, serialize and
 * free recurse no deeper than the documents they are given.
 *
 * The serializer writes compact text with the escaping of jansson's
 * json_dumpb(JSON_COMPACT | JSON_ENCODE_ANY), which the fold used before:
 * '"', '\\' and control characters are escaped (\b \f \n \r \t, others as
 * \u00XX in upper case), everything else is written as it is.
 *
 * Nodes are not shared and not thread-safe; true, false and null are
 * immutable singletons, which evs__json_free() ignores.
 */
#ifndef EVSTORE_PROJECTIONS_JSON_H
#define EVSTORE_PROJECTIONS_JSON_H

#include <stddef.h>
#include <stdint.h>

/*
 * The nesting limit of event data in the fold: a value counts one level and
 * so does each object or array around it, so 2048 nested empty arrays are
 * accepted and 2048 around a number are not. It is jansson's parsing limit,
 * which the fold used before: every document that folded then folds now.
 */
#define EVS__JSON_MAX_DEPTH 2048

typedef enum evs__json_type {
  EVS__JSON_NULL = 0,
  EVS__JSON_FALSE,
  EVS__JSON_TRUE,
  EVS__JSON_NUMBER,
  EVS__JSON_STRING,
  EVS__JSON_ARRAY,
  EVS__JSON_OBJECT
} evs__json_type;

typedef struct evs__json evs__json;

/* Where and why evs__json_parse() rejected its input. */
typedef struct evs__json_error {
  const char *msg; /* static text */
  size_t offset;   /* byte offset of the problem in the input */
} evs__json_error;

/*
 * Parses text[0..len) (need not be NUL-terminated): exactly one JSON value,
 * optionally surrounded by whitespace, nested at most `max_depth` levels.
 * Returns 0 and the document in *out (free with evs__json_free()),
 * EVS_EINVAL with *err (may be NULL) filled when it is not such JSON, or
 * EVS_ENOMEM.
 */
int evs__json_parse(evs__json **out, const void *text, size_t len,
                    unsigned max_depth, evs__json_error *err);

/* Frees a document or a detached value. Accepts NULL. */
void evs__json_free(evs__json *v);

evs__json_type evs__json_typeof(const evs__json *v);

/* The singletons (never NULL, never to be modified). */
evs__json *evs__json_null(void);

/* New values, NULL when out of memory. */
evs__json *evs__json_object(void);
evs__json *evs__json_string(const char *s, size_t len);
evs__json *evs__json_int(int64_t v);
evs__json *evs__json_uint(uint64_t v);

/* The value of member `key` of an object (borrowed), or NULL. */
evs__json *evs__json_object_get(const evs__json *obj, const char *key,
                                size_t klen);

/*
 * Sets member `key` of an object to `val`, which it takes (also when it
 * fails): an existing member keeps its place, a new one goes last. Returns
 * 0 or EVS_ENOMEM, also when `val` is NULL (so that a failed allocation
 * can be passed straight in).
 */
int evs__json_object_set(evs__json *obj, const char *key, size_t klen,
                         evs__json *val);

/*
 * Detaches the value of member `key` and returns it (the caller's), leaving
 * null in its place so that a later evs__json_object_set() puts the new
 * value where the old one was. NULL when there is no such member.
 */
evs__json *evs__json_object_take(evs__json *obj, const char *key, size_t klen);

/*
 * RFC 7386 MergePatch(target, patch). Takes both documents (target may be
 * NULL) and returns the result, which reuses their nodes; NULL when out of
 * memory, both freed.
 */
evs__json *evs__json_merge(evs__json *target, evs__json *patch);

/*
 * Serializes `v` as compact JSON text into a malloc'd, NUL-terminated
 * buffer (*len, may be NULL, without the NUL). Returns 0 or EVS_ENOMEM.
 */
int evs__json_dump(char **out, size_t *len, const evs__json *v);

#endif /* EVSTORE_PROJECTIONS_JSON_H */
