/*
 * libFuzzer target for the CLI's strict JSON scanner (tools/cli/json.c):
 * event data given on the command line, lines of `append --jsonl` and
 * `import`, and the metadata `export` reads back from a store are all
 * untrusted text. The JSON string writer (cli_buf_json_str) and the
 * exporter's bytes-to-JSON choice (cli_buf_json_bytes) are checked against
 * the scanner at the same time, on the same input.
 *
 * Oracles:
 *   - a valid value compacts to valid JSON of the same kind without
 *     whitespace, and compacting is idempotent (also in place);
 *   - every member of a valid object is a string key that decodes and a
 *     valid JSON value of the kind cli_json_span_kind() says, and
 *     cli_json_key_is() agrees with the decoded key;
 *   - a valid string literal decodes, and writing the decoded bytes with
 *     cli_buf_json_str() gives a literal that decodes to the same bytes;
 *   - an integer that cli_json_int64() accepts prints back as the same
 *     number;
 *   - any input bytes written by cli_buf_json_str() are a valid string
 *     literal, and by cli_buf_json_bytes() a valid JSON value.
 *
 * Built as a libFuzzer binary with clang (json_fuzzer), and replayed over
 * tests/fuzz/corpus/json/ by fuzz_replay_json in every build.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond) {
  if (!cond)
    abort();
}

static void check_valid(const char *p, size_t n, cli_json_kind kind) {
  cli_json_info info;
  check(cli_json_check(&info, p, n, NULL) == 0);
  check(kind == CLI_JSON_INVALID || info.kind == kind);
}

/* A valid string literal: decode, re-encode, decode again. */
static void string_literal(cli_json_span lit) {
  char *s = NULL;
  size_t n = 0;
  check(cli_json_string(&s, &n, lit) == 0);
  check(s != NULL && s[n] == '\0' && n <= lit.len - 2);
  cli_buf b = CLI_BUF_INIT;
  cli_buf_json_str(&b, s, n);
  check_valid(b.data, b.len, CLI_JSON_STRING);
  char *again = NULL;
  size_t n2 = 0;
  cli_json_span lit2 = { b.data, b.len };
  check(cli_json_string(&again, &n2, lit2) == 0);
  check(n2 == n && memcmp(again, s, n) == 0);
  /* The key comparison agrees with the decoded text (for NUL-free keys). */
  if (memchr(s, '\0', n) == NULL) {
    check(cli_json_key_is(lit, s));
    check(cli_json_key_is(lit2, s));
  }
  free(again);
  cli_buf_free(&b);
  free(s);
}

static void number(cli_json_span v) {
  int64_t x;
  if (cli_json_int64(&x, v) != 0)
    return;
  char text[32];
  int len = snprintf(text, sizeof text, "%" PRId64, x);
  /* "-0" is the only other spelling of an integer that reads back. */
  check(((size_t)len == v.len && memcmp(text, v.p, v.len) == 0) ||
        (x == 0 && v.len == 2 && memcmp(v.p, "-0", 2) == 0));
}

static void value(cli_json_span v, unsigned depth);

static void object(cli_json_span obj, unsigned depth) {
  cli_json_members it;
  cli_json_span k, v;
  check(cli_json_members_init(&it, obj.p, obj.len) == 0);
  size_t count = 0;
  while (cli_json_members_next(&it, &k, &v)) {
    check(k.p > obj.p && k.p + k.len <= obj.p + obj.len);
    check(v.p > k.p + k.len && v.p + v.len <= obj.p + obj.len);
    check(cli_json_span_kind(k) == CLI_JSON_STRING);
    string_literal(k);
    check_valid(v.p, v.len, cli_json_span_kind(v));
    value(v, depth + 1);
    check(++count <= obj.len / 4);
  }
  /* The iterator stays at its end. */
  check(!cli_json_members_next(&it, &k, &v));
}

/* Walks a valid value; only the top levels, to keep each run quick. */
static void value(cli_json_span v, unsigned depth) {
  if (depth > 3)
    return;
  switch (cli_json_span_kind(v)) {
  case CLI_JSON_OBJECT:
    object(v, depth);
    break;
  case CLI_JSON_STRING:
    string_literal(v);
    break;
  case CLI_JSON_NUMBER:
    number(v);
    break;
  default:
    break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text = (const char *)data;
  cli_json_info info;
  const char *err = NULL;
  if (cli_json_check(&info, text, size, &err) == 0) {
    check(err == NULL);
    check(info.kind != CLI_JSON_INVALID);
    check(info.start < info.end && info.end <= size);
    cli_json_span v = { text + info.start, info.end - info.start };
    check(cli_json_span_kind(v) == info.kind);
    check_valid(v.p, v.len, info.kind);

    char *c1 = malloc(size);
    check(c1 != NULL);
    size_t n1 = cli_json_compact(c1, text, size);
    check(n1 <= size && n1 > 0);
    cli_json_info ci;
    check(cli_json_check(&ci, c1, n1, NULL) == 0);
    check(ci.kind == info.kind && !ci.has_space && !ci.has_newline);
    size_t n2 = cli_json_compact(c1, c1, n1);
    check(n2 == n1);
    free(c1);

    value(v, 0);
    if (cli_json_is_base64_object(text, size))
      check(info.kind == CLI_JSON_OBJECT);
  } else {
    check(err != NULL && info.kind == CLI_JSON_INVALID);
    check(info.error_offset <= size);
    check(!cli_json_is_base64_object(text, size));
  }

  /* Writers: any bytes become valid JSON. */
  cli_buf b = CLI_BUF_INIT;
  cli_buf_json_str(&b, text, size);
  check_valid(b.data, b.len, CLI_JSON_STRING);
  b.len = 0;
  for (int mode = CLI_BYTES_DISPLAY; mode <= CLI_BYTES_EXACT; mode++) {
    for (int empty_is_null = 0; empty_is_null <= 1; empty_is_null++) {
      b.len = 0;
      cli_buf_json_bytes(&b, text, size, mode, empty_is_null);
      check_valid(b.data, b.len, CLI_JSON_INVALID);
    }
  }
  cli_buf_free(&b);
  return 0;
}
