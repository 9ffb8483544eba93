/*
 * evstore-cli read, read-all and state: output format, options, filters,
 * time travel and exit statuses.
 */
#include <time.h>

#include "clitest.h"

TestSuite(cli_read, .init = ct_setup, .fini = ct_teardown);

static json_t *run_lines(cu_result r) {
  ct_assert_status(r, 0);
  json_t *arr = ct_lines(r.out);
  cu_result_free(&r);
  return arr;
}

/* Versions (or positions) of a list of events, as "0,1,2". */
static char *field_list(const json_t *evs, const char *key) {
  static char buf[4096];
  size_t n = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < json_array_size(evs); i++)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%lld", i ? "," : "",
                          ct_int(json_array_get(evs, i), key));
  return buf;
}

static void fill(void) {
  /* order-1: v0..v2, order-2: v0..v1, user-1: v0 (positions 1..6). */
  json_decref(ct_append("order-1", "OrderPlaced", "{\"qty\":1}"));
  json_decref(ct_append("order-2", "OrderPlaced", "{\"qty\":2}"));
  json_decref(ct_append("order-1", "OrderPaid", "{\"paid\":true}"));
  json_decref(ct_append("user-1", "UserCreated", "{\"name\":\"ann\"}"));
  json_decref(ct_append("order-2", "OrderPaid", "{\"paid\":true}"));
  json_decref(ct_append("order-1", "OrderShipped", "{\"qty\":null}"));
}

Test(cli_read, event_format) {
  cu_result r = ct_run("append", "order-1", "--type", "OrderPlaced", "--data",
                       "{\"a\":0.1}", "--metadata", "[1]", NULL);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  r = ct_run("read", "order-1", NULL);
  ct_assert_status(r, 0);
  cr_assert_eq(cu_count_lines(r.out), 1);
  /* Keys in exactly this order, data and metadata verbatim. */
  const char *p = r.out;
  const char *keys[] = { "{\"position\":1,",
                         "\"stream\":\"order-1\",",
                         "\"version\":0,",
                         "\"id\":\"",
                         "\"type\":\"OrderPlaced\",",
                         "\"timestamp\":\"",
                         "\"data\":{\"a\":0.1},",
                         "\"metadata\":[1]}\n" };
  for (size_t i = 0; i < 8; i++) {
    const char *q = strstr(p, keys[i]);
    cr_assert_not_null(q, "missing %s after %s in %s", keys[i], p, r.out);
    p = q + strlen(keys[i]);
  }
  json_t *ev = ct_json(r.out);
  const char *ts = ct_str(ev, "timestamp");
  cr_assert_eq(strlen(ts), 30, "%s", ts);
  cr_assert_eq(ts[19], '.');
  cr_assert_eq(ts[29], 'Z');
  cr_assert_eq(strspn(ts + 20, "0123456789"), 9);
  cr_assert_eq(strlen(ct_str(ev, "id")), 36);
  /* The timestamp is now-ish. */
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  cr_assert_not_null(strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm));
  time_t t = timegm(&tm);
  cr_assert_lt(labs((long)(t - time(NULL))), 60);
  json_decref(ev);
  cu_result_free(&r);
}

Test(cli_read, bytes_that_are_not_json) {
  const char *in = "{\"type\":\"Bin\",\"data\":{\"$base64\":\"AAEC/w==\"},"
                   "\"metadata\":{\"$base64\":\"/w==\"}}\n";
  cu_result r =
      ct_run_in(in, strlen(in), "append", "b-1", "--jsonl", "-", NULL);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  json_t *evs = run_lines(ct_run("read", "b-1", NULL));
  json_t *ev = json_array_get(evs, 0);
  ct_assert_json(json_object_get(ev, "data"), "{\"$base64\":\"AAEC/w==\"}");
  ct_assert_json(json_object_get(ev, "metadata"), "{\"$base64\":\"/w==\"}");
  json_decref(evs);
}

Test(cli_read, directions_and_limits) {
  fill();
  json_t *evs = run_lines(ct_run("read", "order-1", NULL));
  cr_assert_str_eq(field_list(evs, "version"), "0,1,2");
  cr_assert_str_eq(field_list(evs, "position"), "1,3,6");
  json_decref(evs);
  evs = run_lines(ct_run("read", "order-1", "--from", "1", NULL));
  cr_assert_str_eq(field_list(evs, "version"), "1,2");
  json_decref(evs);
  evs = run_lines(ct_run("read", "order-1", "--backward", NULL));
  cr_assert_str_eq(field_list(evs, "version"), "2,1,0");
  json_decref(evs);
  evs = run_lines(ct_run("read", "order-1", "--backward", "--from", "1", NULL));
  cr_assert_str_eq(field_list(evs, "version"), "1,0");
  json_decref(evs);
  evs = run_lines(ct_run("read", "order-1", "--limit", "2", NULL));
  cr_assert_str_eq(field_list(evs, "version"), "0,1");
  json_decref(evs);
  evs =
      run_lines(ct_run("read", "order-1", "--backward", "--limit", "1", NULL));
  cr_assert_str_eq(field_list(evs, "version"), "2");
  json_decref(evs);
  evs = run_lines(ct_run("read", "order-1", "--limit", "0", NULL));
  cr_assert_eq(json_array_size(evs), 0);
  json_decref(evs);
  evs = run_lines(ct_run("read", "order-1", "--from", "9", NULL));
  cr_assert_eq(json_array_size(evs), 0);
  json_decref(evs);
}

Test(cli_read, missing_deleted_and_tombstoned_streams) {
  cu_result r = ct_run("read", "order-1", NULL);
  ct_assert_status(r, 4); /* no store at all yet */
  cr_assert_not_null(strstr(r.err, "order-1"), "%s", r.err);
  cu_result_free(&r);
  fill();
  r = ct_run("read", "nope-1", NULL);
  ct_assert_status(r, 4);
  cr_assert_not_null(strstr(r.err, "not found"), "%s", r.err);
  cu_result_free(&r);
  json_decref(ct_obj(ct_run("delete", "order-1", NULL)));
  r = ct_run("read", "order-1", NULL);
  ct_assert_status(r, 4);
  cu_result_free(&r);
  json_decref(ct_obj(ct_run("delete", "order-2", "--hard", NULL)));
  r = ct_run("read", "order-2", NULL);
  ct_assert_status(r, 4);
  cr_assert_not_null(strstr(r.err, "tombstoned"), "%s", r.err);
  cu_result_free(&r);
  r = ct_run("state", "order-2", NULL);
  ct_assert_status(r, 4);
  cu_result_free(&r);
}

Test(cli_read, invalid_options) {
  fill();
  const char *cases[][8] = {
    { "read", NULL },
    { "read", "order-1", "extra", NULL },
    { "read", "order-1", "--from", "-1", NULL },
    { "read", "order-1", "--from", "x", NULL },
    { "read", "order-1", "--limit", "1.5", NULL },
    { "read", "order-1", "--as-of", "yesterday", NULL },
    { "read", "order-1", "--as-of", "2026-11-27", NULL },
    { "read", "order-1", "--as-of", NULL },
    { "read", "order-1", "--since", "@1", NULL },
    { "read-all", "--from", "first", NULL },
    { "read-all", "--since", "@1x", NULL },
    { "read-all", "--until", "2026-13-01T00:00:00Z", NULL },
    { "read-all", "--type", "", NULL },
    { "read-all", "--category", "", NULL },
    { "read-all", "extra", NULL },
    { "state", NULL },
    { "state", "order-1", "--as-of", "soon", NULL },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *envv[] = { ct_env_db, NULL };
    cu_opts o = { tu_dir, envv, NULL, 0, 0 };
    cu_result r = cu_run(EVSTORE_CLI_PATH, cases[i], &o);
    cr_assert_eq(r.status, 2, "case %zu: %d\n%s", i, r.status, r.err);
    cr_assert_eq(r.out_len, 0);
    cu_result_free(&r);
  }
  cu_result r = ct_run("read", "order-1", "--as-of", "tomorrow", NULL);
  cr_assert_not_null(strstr(r.err, "RFC 3339"), "%s", r.err);
  cu_result_free(&r);
}

Test(cli_read, read_all_and_filters) {
  fill();
  json_t *evs = run_lines(ct_run("read-all", NULL));
  cr_assert_str_eq(field_list(evs, "position"), "1,2,3,4,5,6");
  json_decref(evs);
  evs = run_lines(ct_run("read-all", "--from", "3", "--limit", "2", NULL));
  cr_assert_str_eq(field_list(evs, "position"), "3,4");
  json_decref(evs);
  evs = run_lines(ct_run("read-all", "--backward", "--limit", "2", NULL));
  cr_assert_str_eq(field_list(evs, "position"), "6,5");
  json_decref(evs);
  evs = run_lines(ct_run("read-all", "--backward", "--from", "2", NULL));
  cr_assert_str_eq(field_list(evs, "position"), "2,1");
  json_decref(evs);
  evs = run_lines(ct_run("read-all", "--prefix", "order-", NULL));
  cr_assert_str_eq(field_list(evs, "position"), "1,2,3,5,6");
  json_decref(evs);
  evs = run_lines(ct_run("read-all", "--category", "user", NULL));
  cr_assert_str_eq(field_list(evs, "position"), "4");
  json_decref(evs);
  evs = run_lines(ct_run("read-all", "--type", "OrderPaid", NULL));
  cr_assert_str_eq(field_list(evs, "position"), "3,5");
  json_decref(evs);
  evs = run_lines(
      ct_run("read-all", "--category", "order", "--type", "OrderPlaced", NULL));
  cr_assert_str_eq(field_list(evs, "position"), "1,2");
  json_decref(evs);
  evs = run_lines(ct_run("read-all", "--type", "NeverSeen", NULL));
  cr_assert_eq(json_array_size(evs), 0);
  json_decref(evs);
  evs = run_lines(ct_run("read-all", "--json", "--prefix", "order-2", "--type",
                         "OrderPaid", NULL));
  cr_assert_str_eq(field_list(evs, "position"), "5");
  json_decref(evs);
}

/* Appends one event and returns its commit timestamp string (malloc'd). */
static char *append_ts(const char *stream, const char *data) {
  json_decref(ct_append(stream, "T", data));
  cu_result r = ct_run("read", stream, "--backward", "--limit", "1", NULL);
  ct_assert_status(r, 0);
  json_t *ev = ct_json(r.out);
  char *ts = strdup(ct_str(ev, "timestamp"));
  json_decref(ev);
  cu_result_free(&r);
  return ts;
}

Test(cli_read, time_travel) {
  char *t1 = append_ts("s-1", "{\"a\":1}");
  tu_sleep_ms(20);
  char *t2 = append_ts("s-1", "{\"b\":2}");
  tu_sleep_ms(20);
  char *t3 = append_ts("s-2", "{\"c\":3}");
  json_t *evs = run_lines(ct_run("read", "s-1", "--as-of", t1, NULL));
  cr_assert_str_eq(field_list(evs, "version"), "0");
  json_decref(evs);
  evs = run_lines(ct_run("read", "s-1", "--as-of", t2, NULL));
  cr_assert_str_eq(field_list(evs, "version"), "0,1");
  json_decref(evs);
  cu_result r = ct_run("read", "s-2", "--as-of", t2, NULL);
  ct_assert_status(r, 4); /* created later */
  cu_result_free(&r);
  r = ct_run("read", "s-1", "--as-of", "2000-01-01T00:00:00+02:00", NULL);
  ct_assert_status(r, 4);
  cu_result_free(&r);
  r = ct_run("read", "s-1", "--as-of", "@0", NULL);
  ct_assert_status(r, 4);
  cu_result_free(&r);
  evs = run_lines(ct_run("read", "s-1", "--as-of", "@4000000000", NULL));
  cr_assert_eq(json_array_size(evs), 2);
  json_decref(evs);

  evs = run_lines(ct_run("read-all", "--since", t2, NULL));
  cr_assert_str_eq(field_list(evs, "position"), "2,3");
  json_decref(evs);
  evs = run_lines(ct_run("read-all", "--until", t2, NULL));
  cr_assert_str_eq(field_list(evs, "position"), "1,2");
  json_decref(evs);
  evs = run_lines(ct_run("read-all", "--since", t2, "--until", t2, NULL));
  cr_assert_str_eq(field_list(evs, "position"), "2");
  json_decref(evs);
  evs = run_lines(ct_run("read-all", "--until", "1999-01-01T00:00:00Z", NULL));
  cr_assert_eq(json_array_size(evs), 0);
  json_decref(evs);

  json_t *st = ct_obj(ct_run("state", "s-1", "--as-of", t1, NULL));
  ct_assert_json(st, "{\"a\":1}");
  json_decref(st);
  free(t1);
  free(t2);
  free(t3);
}

Test(cli_read, state_folds_merge_patches) {
  fill();
  json_t *st = ct_obj(ct_run("state", "order-1", NULL));
  ct_assert_json(st, "{\"paid\":true}");
  json_decref(st);
  json_decref(ct_append("doc-1", "T", "{\"a\":{\"b\":1,\"c\":[1]},\"x\":0.1}"));
  json_decref(ct_append("doc-1", "T", "{\"a\":{\"b\":null,\"d\":\"e\"}}"));
  st = ct_obj(ct_run("state", "doc-1", NULL));
  ct_assert_json(st, "{\"a\":{\"c\":[1],\"d\":\"e\"},\"x\":0.1}");
  json_decref(st);
  json_decref(ct_append("doc-1", "T", "{\"a\":null,\"x\":null}"));
  st = ct_obj(ct_run("state", "doc-1", NULL));
  ct_assert_json(st, "{}");
  json_decref(st);
  /* Data that is JSON but not an object makes the stream unfoldable. */
  json_decref(ct_append("doc-1", "T", "[1,2]"));
  cu_result r = ct_run("state", "doc-1", NULL);
  ct_assert_status(r, 1);
  cr_assert_not_null(strstr(r.err, "version 3"), "%s", r.err);
  cr_assert_eq(r.out_len, 0);
  cu_result_free(&r);
}

Test(cli_read, state_keeps_numbers_as_written) {
  /* Beyond 64 bits, trailing zeros, exponents and -0 print as written,
   * nested ones too after later patches; a null still deletes. */
  json_decref(ct_append("num-1", "T",
                        "{\"big\":123456789012345678901234567890,"
                        "\"f\":0.10,\"e\":1E+2,\"z\":-0,"
                        "\"n\":{\"x\":1,\"s\":\"a\\u0000\\u001f\\u007f\"}}"));
  cu_result r = ct_run("append", "num-1", "--type", "T", "--data",
                       "{\"n\":{\"x\":null,"
                       "\"b\":-98765432109876543210987654321.0e-5},"
                       "\"z\":null}",
                       NULL);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  r = ct_run("state", "num-1", NULL);
  ct_assert_status(r, 0);
  cr_assert_str_eq(r.out, "{\"big\":123456789012345678901234567890,"
                          "\"f\":0.10,\"e\":1E+2,"
                          "\"n\":{\"s\":\"a\\u0000\\u001f\\u007f\","
                          "\"b\":-98765432109876543210987654321.0e-5}}\n");
  cu_result_free(&r);
  /* The indented form (what a terminal gets), with the library's string
   * escapes as before. */
  r = ct_run("state", "num-1", "--table", NULL);
  ct_assert_status(r, 0);
  cr_assert_str_eq(r.out, "{\n"
                          "  \"big\": 123456789012345678901234567890,\n"
                          "  \"f\": 0.10,\n"
                          "  \"e\": 1E+2,\n"
                          "  \"n\": {\n"
                          "    \"s\": \"a\\u0000\\u001F\x7f\",\n"
                          "    \"b\": -98765432109876543210987654321.0e-5\n"
                          "  }\n"
                          "}\n");
  cu_result_free(&r);
  /* Empty objects and arrays stay on their line. */
  json_decref(ct_append("num-2", "T", "{\"z\":-0,\"a\":[],\"o\":{}}"));
  r = ct_run("state", "num-2", "--table", NULL);
  ct_assert_status(r, 0);
  cr_assert_str_eq(r.out, "{\n  \"z\": -0,\n  \"a\": [],\n  \"o\": {}\n}\n");
  cu_result_free(&r);
}

Test(cli_read, state_needs_json_data) {
  const char *in = "{\"type\":\"Bin\",\"data\":{\"$base64\":\"AAEC\"}}\n";
  cu_result r =
      ct_run_in(in, strlen(in), "append", "b-1", "--jsonl", "-", NULL);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  r = ct_run("state", "b-1", NULL);
  ct_assert_status(r, 1);
  cr_assert_not_null(strstr(r.err, "not JSON"), "%s", r.err);
  cr_assert_not_null(strstr(r.err, "version 0"), "%s", r.err);
  cr_assert_not_null(strstr(r.err, "b-1"), "%s", r.err);
  cr_assert_eq(r.out_len, 0);
  cu_result_free(&r);
  r = ct_run("state", "nope-1", NULL);
  ct_assert_status(r, 4);
  cu_result_free(&r);
}

Test(cli_read, table_output) {
  fill();
  cu_result r = ct_run("read", "order-1", "--table", NULL);
  ct_assert_status(r, 0);
  cr_assert_eq(strncmp(r.out, "POSITION", 8), 0, "%s", r.out);
  cr_assert_eq(cu_count_lines(r.out), 4);
  cr_assert_not_null(strstr(r.out, "OrderShipped"));
  cu_result_free(&r);
  /* --json wins over --table. */
  json_t *evs = run_lines(ct_run("--table", "read", "order-1", "--json", NULL));
  cr_assert_eq(json_array_size(evs), 3);
  json_decref(evs);
  r = ct_run("info", "order-1", "--table", NULL);
  ct_assert_status(r, 0);
  cr_assert_not_null(strstr(r.out, "metadata.max_count"), "%s", r.out);
  cu_result_free(&r);
}
