/*
 * Unit tests of evstore-cli's pure parts: the JSON scanner, base64, the
 * JSON writers and the import timestamp wrapping.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "buf.h"
#include "json.h"
#include "timeparse.h"
#include "tsmeta.h"

static int valid(const char *s) {
  return cli_json_check(NULL, s, strlen(s), NULL) == 0;
}

Test(cli_json, accepts_rfc8259) {
  const char *ok[] = {
    "0",
    "-0",
    "1.5",
    "-1.5e10",
    "1E+2",
    "1e-2",
    "12345678901234567890123",
    "\"\"",
    "\"a\\u00e9\\ud83d\\ude00\\n\\\"\\\\\\/\"",
    "true",
    "false",
    "null",
    "[]",
    "{}",
    " [1, 2 ,3 ] ",
    "{\"a\":{\"b\":[null]}}",
    "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
    "\n{\r\n\"a\" : 1\t}\n",
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    cr_assert(valid(ok[i]), "rejected: %s", ok[i]);
}

Test(cli_json, rejects_invalid) {
  const char *bad[] = {
    "",
    " ",
    "01",
    "1.",
    ".5",
    "+1",
    "1e",
    "--1",
    "0x10",
    "NaN",
    "Infinity",
    "tru",
    "nul",
    "'a'",
    "\"a",
    "\"\\x\"",
    "\"\\u12\"",
    "\"\\ud800\"",
    "\"\\udc00\"",
    "\"\\ud800\\u0041\"",
    "\"\t\"",
    "\"\xc0\xaf\"",
    "\"\xed\xa0\x80\"",
    "\"\xf4\x90\x80\x80\"",
    "\"\xff\"",
    "[1,]",
    "[1 2]",
    "{\"a\"}",
    "{\"a\":}",
    "{a:1}",
    "{\"a\":1,}",
    "[",
    "]",
    "{} {}",
    "1 2",
    "{\"a\":1}x",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert(!valid(bad[i]), "accepted: %s", bad[i]);
  cr_assert_neq(cli_json_check(NULL, "1\0", 2, NULL), 0);
}

Test(cli_json, depth_limit) {
  char *deep = malloc(2 * CLI_JSON_MAX_DEPTH + 10);
  size_t n = 0;
  for (int i = 0; i < CLI_JSON_MAX_DEPTH; i++)
    deep[n++] = '[';
  for (int i = 0; i < CLI_JSON_MAX_DEPTH; i++)
    deep[n++] = ']';
  cr_assert_eq(cli_json_check(NULL, deep, n, NULL), 0);
  memmove(deep + 1, deep, n);
  deep[0] = '[';
  deep[n + 1] = ']';
  const char *err;
  cr_assert_neq(cli_json_check(NULL, deep, n + 2, &err), 0);
  cr_assert_str_eq(err, "nested too deeply");
  free(deep);
}

Test(cli_json, info_and_compact) {
  cli_json_info info;
  const char *s = "  {\"a\": [1, \"x y\"],\n \"b\" : null} ";
  cr_assert_eq(cli_json_check(&info, s, strlen(s), NULL), 0);
  cr_assert_eq(info.kind, CLI_JSON_OBJECT);
  cr_assert_eq(info.start, 2);
  cr_assert_eq(info.end, strlen(s) - 1);
  cr_assert(info.has_newline);
  char out[64];
  size_t n = cli_json_compact(out, s, strlen(s));
  cr_assert_eq(n, strlen("{\"a\":[1,\"x y\"],\"b\":null}"));
  cr_assert(memcmp(out, "{\"a\":[1,\"x y\"],\"b\":null}", n) == 0);
  /* Escaped quotes inside strings do not end them. */
  const char *q = "[ \"a\\\" b\" ]";
  n = cli_json_compact(out, q, strlen(q));
  cr_assert(memcmp(out, "[\"a\\\" b\"]", n) == 0);
}

Test(cli_json, members_and_strings) {
  const char *s = "{\"type\" : \"A\\u00e9\", \"n\":-12, \"d\":{\"x\":[1]},"
                  "\"t\\u0079pe2\":true}";
  cli_json_members it;
  cli_json_span k, v;
  cr_assert_eq(cli_json_members_init(&it, s, strlen(s)), 0);
  cr_assert(cli_json_members_next(&it, &k, &v));
  cr_assert(cli_json_key_is(k, "type"));
  char *str;
  size_t len;
  cr_assert_eq(cli_json_string(&str, &len, v), 0);
  cr_assert_str_eq(str, "A\xc3\xa9");
  free(str);
  cr_assert(cli_json_members_next(&it, &k, &v));
  int64_t n;
  cr_assert_eq(cli_json_int64(&n, v), 0);
  cr_assert_eq(n, -12);
  cr_assert(cli_json_members_next(&it, &k, &v));
  cr_assert_eq(v.len, strlen("{\"x\":[1]}"));
  cr_assert_eq(cli_json_span_kind(v), CLI_JSON_OBJECT);
  cr_assert(cli_json_members_next(&it, &k, &v));
  cr_assert(cli_json_key_is(k, "type2"));
  cr_assert_not(cli_json_members_next(&it, &k, &v));
  cli_json_span big = { "9223372036854775808", 19 };
  cr_assert_neq(cli_json_int64(&n, big), 0);
  cli_json_span min = { "-9223372036854775808", 20 };
  cr_assert_eq(cli_json_int64(&n, min), 0);
  cr_assert_eq(n, INT64_MIN);
  cli_json_span real = { "1.0", 3 };
  cr_assert_neq(cli_json_int64(&n, real), 0);
}

Test(cli_json, base64_object) {
  const char *b = "{\"$base64\":\"AAE=\"}";
  cr_assert(cli_json_is_base64_object(b, strlen(b)));
  const char *c = "{\"$base64\":\"AAE=\",\"x\":1}";
  cr_assert_not(cli_json_is_base64_object(c, strlen(c)));
  cr_assert_not(cli_json_is_base64_object("{}", 2));
  cr_assert_not(cli_json_is_base64_object("\"$base64\"", 9));
}

Test(cli_base64, round_trip) {
  unsigned char data[300];
  for (size_t i = 0; i < sizeof data; i++)
    data[i] = (unsigned char)(i * 7 + 3);
  for (size_t n = 0; n < sizeof data; n++) {
    char enc[512];
    size_t elen = cli_base64_encoded_len(n);
    cli_base64_encode(enc, data, n);
    unsigned char dec[400];
    size_t dlen;
    cr_assert_eq(cli_base64_decode(dec, &dlen, enc, elen), 0);
    cr_assert_eq(dlen, n);
    cr_assert(memcmp(dec, data, n) == 0);
  }
  size_t dlen;
  char out[16];
  cr_assert_eq(cli_base64_decode(out, &dlen, "aGk", 3), 0); /* no padding */
  cr_assert_eq(dlen, 2);
  cr_assert_neq(cli_base64_decode(out, &dlen, "a", 1), 0);
  cr_assert_neq(cli_base64_decode(out, &dlen, "aG k", 4), 0);
  cr_assert_neq(cli_base64_decode(out, &dlen, "aGk=a", 5), 0);
  cr_assert_neq(cli_base64_decode(out, &dlen, "a===", 4), 0);
}

static char *bytes_json(const char *p, size_t n, int mode, int null_empty) {
  cli_buf b = CLI_BUF_INIT;
  cli_buf_json_bytes(&b, p, n, mode, null_empty);
  char *s = cli_xstrndup(b.data ? b.data : "", b.len);
  cli_buf_free(&b);
  return s;
}

#define assert_bytes(p, n, mode, ne, want)                                     \
  do {                                                                         \
    char *s__ = bytes_json((p), (n), (mode), (ne));                            \
    cr_assert_str_eq(s__, (want));                                             \
    free(s__);                                                                 \
  } while (0)

Test(cli_buf, stored_bytes_as_json) {
  assert_bytes("{\"a\":0.1}", 9, CLI_BYTES_DISPLAY, 0, "{\"a\":0.1}");
  assert_bytes("{\"a\": 1}", 8, CLI_BYTES_EXACT, 0, "{\"a\": 1}");
  assert_bytes("{\n\"a\":1}", 8, CLI_BYTES_DISPLAY, 0, "{\"a\":1}");
  assert_bytes("{\n\"a\":1}", 8, CLI_BYTES_EXACT, 0,
               "{\"$base64\":\"ewoiYSI6MX0=\"}");
  assert_bytes(" 1", 2, CLI_BYTES_EXACT, 0, "{\"$base64\":\"IDE=\"}");
  assert_bytes("\x00\x01", 2, CLI_BYTES_DISPLAY, 0, "{\"$base64\":\"AAE=\"}");
  assert_bytes("", 0, CLI_BYTES_DISPLAY, 0, "{\"$base64\":\"\"}");
  assert_bytes("", 0, CLI_BYTES_DISPLAY, 1, "null");
  assert_bytes("null", 4, CLI_BYTES_DISPLAY, 0, "null");
  assert_bytes("null", 4, CLI_BYTES_EXACT, 1, "{\"$base64\":\"bnVsbA==\"}");
  /* JSON that looks like encoded bytes is itself encoded. */
  assert_bytes("{\"$base64\":\"AA==\"}", 18, CLI_BYTES_DISPLAY, 0,
               "{\"$base64\":\"eyIkYmFzZTY0IjoiQUE9PSJ9\"}");
  assert_bytes("12345678901234567890", 20, CLI_BYTES_EXACT, 0,
               "12345678901234567890");
}

Test(cli_buf, strings_and_reals) {
  cli_buf b = CLI_BUF_INIT;
  cli_buf_json_str(&b, "a\"\\\n\x01\xc3\xa9\xff", 8);
  cr_assert_str_eq(cli_buf_cstr(&b),
                   "\"a\\\"\\\\\\n\\u0001\xc3\xa9\xef\xbf\xbd\"");
  b.len = 0;
  cli_buf_json_real(&b, 0.1);
  cr_assert_str_eq(cli_buf_cstr(&b), "0.1");
  b.len = 0;
  cli_buf_json_real(&b, 2.0);
  cr_assert_str_eq(cli_buf_cstr(&b), "2.0");
  b.len = 0;
  cli_buf_json_real(&b, 1e300);
  cr_assert_str_eq(cli_buf_cstr(&b), "1e+300");
  cli_buf_free(&b);
}

static void tsmeta_case(const char *md, size_t md_len) {
  const int64_t ts = 1795773600123456789LL;
  cli_buf w = CLI_BUF_INIT, scratch = CLI_BUF_INIT;
  cli_tsmeta_wrap(&w, md, md_len, ts);
  cr_assert_eq(cli_json_check(NULL, w.data, w.len, NULL), 0,
               "wrapped metadata is not JSON: %.*s", (int)w.len, w.data);
  int64_t back = 0;
  const void *orig = NULL;
  size_t orig_len = 99;
  cr_assert_eq(
      cli_tsmeta_unwrap(&back, &orig, &orig_len, &scratch, w.data, w.len), 1,
      "not unwrapped: %.*s", (int)w.len, w.data);
  cr_assert_eq(back, ts);
  cr_assert_eq(orig_len, md_len, "%.*s", (int)w.len, w.data);
  cr_assert(md_len == 0 || memcmp(orig, md, md_len) == 0);
  cli_buf_free(&w);
  cli_buf_free(&scratch);
}

/* The layouts of `state`: what jansson made of the fold's text before,
 * for documents whose numbers it wrote back as they were. */
Test(cli_buf, json_text_lays_out_as_jansson_did) {
  const char *docs[] = {
    "{}",
    "[]",
    "1",
    "\"s\"",
    "null",
    "{\"a\":1,\"b\":[1,2,{\"c\":[]}],\"d\":{}}",
    "[[[]],{},[{}],\"x\\\"\\\\\\u001f/\"]",
    "{\"s\":\"\\u00e9\\t\\n\\u0001\\u007f\\b\\f\\r\",\"t\":true,"
    "\"f\":false,\"n\":null,\"k\\u0007\":\"\xe2\x82\xac\"}",
    "{\"deep\":{\"a\":{\"b\":{\"c\":[1,[2,[3]]]}}}}",
    "[-5,0,9223372036854775807,-9223372036854775808]",
  };
  for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
    json_t *v = json_loads(docs[i], JSON_DECODE_ANY, NULL);
    cr_assert_not_null(v, "%s", docs[i]);
    /* The library's compact text, then the two former layouts. */
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    char *indented = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY |
                                       JSON_REAL_PRECISION(16));
    cli_buf compact = CLI_BUF_INIT, got = CLI_BUF_INIT;
    cli_buf_json_value(&compact, v);
    cli_buf_json_text(&got, text, strlen(text), 2);
    cr_assert_str_eq(cli_buf_cstr(&got), indented, "%s", docs[i]);
    got.len = 0;
    cli_buf_json_text(&got, text, strlen(text), 0);
    cr_assert_str_eq(cli_buf_cstr(&got), cli_buf_cstr(&compact), "%s", docs[i]);
    cli_buf_free(&got);
    cli_buf_free(&compact);
    free(indented);
    free(text);
    json_decref(v);
  }
}

Test(cli_buf, json_text_keeps_numbers_as_written) {
  const char *in = " [ 123456789012345678901234567890 , 0.10,1E+2,\n-0 ,"
                   "{ \"x\" : -1.0e-400 } ] ";
  cli_buf b = CLI_BUF_INIT;
  cli_buf_json_text(&b, in, strlen(in), 0);
  cr_assert_str_eq(cli_buf_cstr(&b), "[123456789012345678901234567890,0.10,"
                                     "1E+2,-0,{\"x\":-1.0e-400}]");
  b.len = 0;
  cli_buf_json_text(&b, in, strlen(in), 2);
  cr_assert_str_eq(cli_buf_cstr(&b), "[\n"
                                     "  123456789012345678901234567890,\n"
                                     "  0.10,\n"
                                     "  1E+2,\n"
                                     "  -0,\n"
                                     "  {\n"
                                     "    \"x\": -1.0e-400\n"
                                     "  }\n"
                                     "]");
  cli_buf_free(&b);
}

Test(cli_json, depth_limit_of_choice) {
  char deep[2 * 600];
  for (int i = 0; i < 600; i++) {
    deep[i] = '[';
    deep[600 + i] = ']';
  }
  cr_assert_neq(cli_json_check(NULL, deep, sizeof deep, NULL), 0);
  cr_assert_eq(cli_json_check_depth(NULL, deep, sizeof deep, 600, NULL), 0);
  cr_assert_neq(cli_json_check_depth(NULL, deep, sizeof deep, 599, NULL), 0);
}

Test(cli_tsmeta, wrap_unwrap_round_trip) {
  tsmeta_case("", 0);
  tsmeta_case("{\"user\":\"bob\"}", 14);
  tsmeta_case("{\"a\": 1 }", 9);
  tsmeta_case("{}", 2);
  tsmeta_case("[1,2]", 5);
  tsmeta_case("\"text\"", 6);
  tsmeta_case("null", 4);
  tsmeta_case("not json", 8);
  tsmeta_case("\x00\xff", 2);
  tsmeta_case(" {\"a\":1}", 8);
  tsmeta_case("{\"$base64\":\"AA==\"}", 18);
  tsmeta_case("{\"$original_timestamp\":\"x\"}", 27);
  tsmeta_case("{\"$original_timestamp\":\"2026-11-27T10:00:00.000000000Z\"}",
              56);
  tsmeta_case("{\"a\":1,\"$original_metadata\":2}", 31);
}

Test(cli_tsmeta, extends_objects_in_place) {
  cli_buf w = CLI_BUF_INIT;
  cli_tsmeta_wrap(&w, "{\"user\":\"bob\"}", 14, 0);
  cr_assert_str_eq(cli_buf_cstr(&w),
                   "{\"user\":\"bob\",\"$original_timestamp\":"
                   "\"1970-01-01T00:00:00.000000000Z\"}");
  cli_buf_free(&w);
}

Test(cli_tsmeta, leaves_other_metadata_alone) {
  cli_buf scratch = CLI_BUF_INIT;
  int64_t ts;
  const void *orig;
  size_t n;
  const char *plain[] = { "",
                          "{}",
                          "{\"a\":1}",
                          "null",
                          "{\"$original_timestamp\":\"bad\"}",
                          ("{\"a\":1,\"$original_timestamp\":"
                           "\"2026-11-27T10:00:00.000000000Z\""),
                          "[]" };
  for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
    cr_assert_eq(
        cli_tsmeta_unwrap(&ts, &orig, &n, &scratch, plain[i], strlen(plain[i])),
        0, "%s", plain[i]);
  cli_buf_free(&scratch);
}
