/*
 * evstore-cli — a strict, non-allocating JSON scanner.
 *
 * Event data and metadata are kept as the exact text the user gave, so
 * numbers such as 0.1 or 12345678901234567890 keep their spelling (a tree
 * parser would round them). This scanner validates RFC 8259 JSON (any
 * value, UTF-8 checked, no lone surrogate escapes, nesting at most
 * CLI_JSON_MAX_DEPTH), strips insignificant whitespace, walks the members
 * of an object as spans of the original text, and decodes string literals.
 *
 * All functions are pure: they read only the bytes they are given, which
 * need not be NUL-terminated.
 */
#ifndef EVSTORE_CLI_JSON_H
#define EVSTORE_CLI_JSON_H

#include <stddef.h>
#include <stdint.h>

#define CLI_JSON_MAX_DEPTH 512

typedef enum cli_json_kind {
  CLI_JSON_INVALID = 0,
  CLI_JSON_OBJECT,
  CLI_JSON_ARRAY,
  CLI_JSON_STRING,
  CLI_JSON_NUMBER,
  CLI_JSON_TRUE,
  CLI_JSON_FALSE,
  CLI_JSON_NULL
} cli_json_kind;

/* A span of the text being scanned. */
typedef struct cli_json_span {
  const char *p;
  size_t len;
} cli_json_span;

/* What cli_json_check() found. */
typedef struct cli_json_info {
  cli_json_kind kind;  /* of the top-level value */
  size_t start, end;   /* the value without surrounding whitespace */
  int has_space;       /* any whitespace outside strings (also around) */
  int has_newline;     /* a CR or LF outside strings */
  size_t error_offset; /* on failure: where the problem is */
} cli_json_info;

/*
 * Checks that buf[0..len) is exactly one JSON value, optionally surrounded
 * by whitespace. Returns 0 and fills *info, or -1 with *err (may be NULL)
 * set to a static message and info->error_offset set.
 */
int cli_json_check(cli_json_info *info, const void *buf, size_t len,
                   const char **err);

/*
 * cli_json_check() with another nesting limit than CLI_JSON_MAX_DEPTH, for
 * text that did not come from the user (a folded state). The scanner
 * recurses: `max_depth` bounds the stack too.
 */
int cli_json_check_depth(cli_json_info *info, const void *buf, size_t len,
                         unsigned max_depth, const char **err);

/*
 * Copies valid JSON buf[0..len) to `out` (at least `len` bytes; may be
 * `buf` itself) without insignificant whitespace. Returns the length.
 */
size_t cli_json_compact(char *out, const void *buf, size_t len);

/* Iterator over the members of an object. */
typedef struct cli_json_members {
  const char *p, *end;
  int started, done;
} cli_json_members;

/*
 * Starts iterating the object obj[0..len), which must begin with '{' and
 * be valid (as checked by cli_json_check). Returns 0, or -1 if it is not
 * an object.
 */
int cli_json_members_init(cli_json_members *it, const char *obj, size_t len);

/*
 * Returns 1 and sets the key (a string literal, with its quotes) and the
 * value span, or 0 at the end (or on malformed input).
 */
int cli_json_members_next(cli_json_members *it, cli_json_span *key,
                          cli_json_span *value);

/* The kind of a value span (by its first byte; the span must be valid). */
cli_json_kind cli_json_span_kind(cli_json_span v);

/*
 * Decodes a valid string literal (with its quotes) into a malloc'd,
 * NUL-terminated UTF-8 string; *out_len (may be NULL) excludes the NUL.
 * The result may contain NUL bytes (from \u0000). Returns 0, or -1 if the
 * span is not a string literal or memory runs out.
 */
int cli_json_string(char **out, size_t *out_len, cli_json_span lit);

/* 1 when the string literal `lit` decodes to exactly `name`. */
int cli_json_key_is(cli_json_span lit, const char *name);

/*
 * Reads an integer number span (no fraction, no exponent) into *out.
 * Returns 0, or -1 when it is not an integer or does not fit.
 */
int cli_json_int64(int64_t *out, cli_json_span v);

/*
 * 1 when buf[0..len) is a valid JSON object whose only member is named
 * "$base64" (the form evstore-cli uses for bytes that are not JSON).
 */
int cli_json_is_base64_object(const void *buf, size_t len);

#endif /* EVSTORE_CLI_JSON_H */
