/*
 * evstore-cli append: flags, expected versions, JSON validation, --jsonl,
 * idempotent ids and exit statuses.
 */
#include "clitest.h"

TestSuite(cli_append, .init = ct_setup, .fini = ct_teardown);

/* The events of a stream as a JSON array (asserts exit 0). */
static json_t *read_stream(const char *stream) {
  cu_result r = ct_run("read", stream, NULL);
  ct_assert_status(r, 0);
  json_t *arr = ct_lines(r.out);
  cu_result_free(&r);
  return arr;
}

static void assert_no_stream(const char *stream) {
  cu_result r = ct_run("read", stream, NULL);
  ct_assert_status(r, 4);
  cu_result_free(&r);
}

Test(cli_append, prints_the_result_in_order) {
  cu_result r = ct_run("append", "order-1", "--type", "OrderPlaced", "--data",
                       "{\"sku\": \"A-1\", \"qty\": 2}", NULL);
  ct_assert_status(r, 0);
  cr_assert_str_eq(r.out, "{\"stream\":\"order-1\",\"first_version\":0,"
                          "\"last_version\":0,\"first_position\":1,"
                          "\"last_position\":1}\n");
  cr_assert_eq(r.err_len, 0, "stderr: %s", r.err);
  cu_result_free(&r);
  json_t *o = ct_append("order-1", "OrderPaid", "{}");
  cr_assert_eq(ct_int(o, "first_version"), 1);
  cr_assert_eq(ct_int(o, "last_position"), 2);
  json_decref(o);
}

Test(cli_append, stores_compact_json_of_any_kind) {
  const char *values[] = { "{ \"a\" : [ 1 , 2 ] }", " 42 ", "\"text\"",
                           "[true, false, null]",   "null", "0.1",
                           "12345678901234567890" };
  const char *stored[] = { "{\"a\":[1,2]}",       "42",   "\"text\"",
                           "[true,false,null]",   "null", "0.1",
                           "12345678901234567890" };
  for (size_t i = 0; i < 7; i++)
    json_decref(ct_append("s-1", "T", values[i]));
  cu_result r = ct_run("read", "s-1", NULL);
  ct_assert_status(r, 0);
  /* The data appears verbatim (compact) inside each line. */
  for (size_t i = 0; i < 7; i++) {
    char want[128];
    snprintf(want, sizeof want, "\"data\":%s,\"metadata\":null}", stored[i]);
    cr_assert_not_null(strstr(r.out, want), "missing %s in\n%s", want, r.out);
  }
  cu_result_free(&r);
}

Test(cli_append, metadata_and_id) {
  cu_result r = ct_run("append", "s-1", "--type", "T", "--data", "1",
                       "--metadata", "{\"user\": \"bob\"}", "--id",
                       "0192F4C4-7A1B-7C3D-8E9F-0123456789AB", NULL);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  json_t *evs = read_stream("s-1");
  json_t *ev = json_array_get(evs, 0);
  cr_assert_str_eq(ct_str(ev, "id"), "0192f4c4-7a1b-7c3d-8e9f-0123456789ab");
  ct_assert_json(json_object_get(ev, "metadata"), "{\"user\":\"bob\"}");
  json_decref(evs);
  /* --metadata null means none. */
  json_decref(ct_obj(ct_run("append", "s-2", "--type", "T", "--data", "1",
                            "--metadata", "null", NULL)));
  evs = read_stream("s-2");
  cr_assert(json_is_null(json_object_get(json_array_get(evs, 0), "metadata")));
  json_decref(evs);
}

Test(cli_append, expected_versions) {
  json_decref(ct_obj(ct_run("append", "s-1", "--expected-version", "no-stream",
                            "--type", "T", "--data", "1", NULL)));
  json_decref(ct_obj(ct_run("append", "s-1", "--expected-version", "0",
                            "--type", "T", "--data", "2", NULL)));
  json_decref(ct_obj(ct_run("append", "s-1", "--expected-version", "exists",
                            "--type", "T", "--data", "3", NULL)));
  json_decref(ct_obj(ct_run("append", "s-1", "--expected-version", "any",
                            "--type", "T", "--data", "4", NULL)));

  cu_result r = ct_run("append", "s-1", "--expected-version", "1", "--type",
                       "T", "--data", "5", NULL);
  ct_assert_status(r, 3);
  cr_assert_eq(r.out_len, 0);
  cr_assert_not_null(strstr(r.err, "expected 1"), "%s", r.err);
  cr_assert_not_null(strstr(r.err, "actual 3"), "%s", r.err);
  cu_result_free(&r);

  r = ct_run("append", "s-1", "--expected-version", "no-stream", "--type", "T",
             "--data", "5", NULL);
  ct_assert_status(r, 3);
  cr_assert_not_null(strstr(r.err, "expected no-stream"), "%s", r.err);
  cr_assert_not_null(strstr(r.err, "actual 3"), "%s", r.err);
  cu_result_free(&r);

  r = ct_run("append", "s-2", "--expected-version", "exists", "--type", "T",
             "--data", "5", NULL);
  ct_assert_status(r, 3);
  cr_assert_not_null(strstr(r.err, "expected exists"), "%s", r.err);
  cr_assert_not_null(strstr(r.err, "actual -1"), "%s", r.err);
  cu_result_free(&r);

  r = ct_run("append", "s-2", "--expected-version", "0", "--type", "T",
             "--data", "5", NULL);
  ct_assert_status(r, 3);
  cu_result_free(&r);
  json_t *evs = read_stream("s-1");
  cr_assert_eq(json_array_size(evs), 4);
  json_decref(evs);
  assert_no_stream("s-2");
}

Test(cli_append, invalid_input_writes_nothing) {
  char long_name[300];
  memset(long_name, 'x', 256);
  long_name[256] = '\0';
  const char *cases[][12] = {
    { "append", "s-1", "--type", "T", "--data", "{bad", NULL },
    { "append", "s-1", "--type", "T", "--data", "", NULL },
    { "append", "s-1", "--type", "T", "--data", "{\"a\":1} x", NULL },
    { "append", "s-1", "--type", "T", "--data", "1", "--metadata", "{", NULL },
    { "append", "s-1", "--type", "", "--data", "1", NULL },
    { "append", "s-1", "--type", long_name, "--data", "1", NULL },
    { "append", "s-1", "--type", "bad\xff", "--data", "1", NULL },
    { "append", "s-1", "--type", "T", "--data", "1", "--id", "xyz", NULL },
    { "append", "s-1", "--type", "T", "--data", "1", "--id",
      "00000000-0000-0000-0000-000000000000", NULL },
    { "append", "s-1", "--type", "T", NULL },
    { "append", "s-1", "--data", "1", NULL },
    { "append", "s-1", NULL },
    { "append", NULL },
    { "append", "s-1", "s-2", "--type", "T", "--data", "1", NULL },
    { "append", "s-1", "--type", "T", "--data", "1", "--expected-version", "-3",
      NULL },
    { "append", "s-1", "--type", "T", "--data", "1", "--expected-version",
      "latest", NULL },
    { "append", "s-1", "--type", "T", "--jsonl", "-", NULL },
    { "append", "s-1", "--type", "T", "--data", "1", "--bogus", NULL },
    { "append", "s-1", "--type", "T", "--data", NULL },
    { "append", long_name, "--type", "T", "--data", "1", NULL },
    { "append", "$all", "--type", "T", "--data", "1", NULL },
    { "append", "", "--type", "T", "--data", "1", NULL },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *const *c = cases[i];
    cu_opts o;
    const char *envv[] = { ct_env_db, "EVSTORE_DURABILITY=nosync", NULL };
    memset(&o, 0, sizeof o);
    o.cwd = tu_dir;
    o.env = envv;
    cu_result r = cu_run(EVSTORE_CLI_PATH, c, &o);
    cr_assert_eq(r.status, 2, "case %zu: status %d\n%s", i, r.status, r.err);
    cr_assert_eq(r.out_len, 0, "case %zu printed: %s", i, r.out);
    cr_assert_gt(r.err_len, 10, "case %zu: no message", i);
    cu_result_free(&r);
  }
  assert_no_stream("s-1");
}

Test(cli_append, idempotent_retry_with_the_same_id) {
  const char *id = "0192f4c4-7a1b-7c3d-8e9f-0123456789ab";
  json_t *a =
      ct_obj(ct_run("append", "s-1", "--type", "T", "--data", "1", "--id", id,
                    "--expected-version", "no-stream", NULL));
  json_t *b =
      ct_obj(ct_run("append", "s-1", "--type", "T", "--data", "1", "--id", id,
                    "--expected-version", "no-stream", NULL));
  cr_assert(json_equal(a, b));
  json_decref(a);
  json_decref(b);
  json_t *evs = read_stream("s-1");
  cr_assert_eq(json_array_size(evs), 1);
  json_decref(evs);
  /* The same id in another stream is a conflict. */
  cu_result r =
      ct_run("append", "s-2", "--type", "T", "--data", "1", "--id", id, NULL);
  ct_assert_status(r, 1);
  cr_assert_not_null(strstr(r.err, "id"), "%s", r.err);
  cu_result_free(&r);
}

Test(cli_append, jsonl_is_one_atomic_append) {
  const char *in =
      "{\"type\":\"A\",\"data\":{\"n\": 1}}\n"
      "\n"
      "  {\"type\":\"B\",\"data\":[1,2],\"metadata\":{\"m\":1},"
      "\"id\":\"0192f4c4-7a1b-7c3d-8e9f-0123456789ab\"}\r\n"
      "{\"data\":{\"$base64\":\"AAH/\"},\"type\":\"C\",\"metadata\":null}";
  cu_result r =
      ct_run_in(in, strlen(in), "append", "s-1", "--jsonl", "-", NULL);
  ct_assert_status(r, 0);
  json_t *o = ct_json(r.out);
  cr_assert_eq(ct_int(o, "first_version"), 0);
  cr_assert_eq(ct_int(o, "last_version"), 2);
  cr_assert_eq(ct_int(o, "first_position"), 1);
  cr_assert_eq(ct_int(o, "last_position"), 3);
  json_decref(o);
  cu_result_free(&r);
  json_t *evs = read_stream("s-1");
  cr_assert_eq(json_array_size(evs), 3);
  ct_assert_json(json_object_get(json_array_get(evs, 0), "data"), "{\"n\":1}");
  cr_assert_str_eq(ct_str(json_array_get(evs, 1), "type"), "B");
  cr_assert_str_eq(ct_str(json_array_get(evs, 1), "id"),
                   "0192f4c4-7a1b-7c3d-8e9f-0123456789ab");
  ct_assert_json(json_object_get(json_array_get(evs, 2), "data"),
                 "{\"$base64\":\"AAH/\"}");
  json_decref(evs);

  /* From a file too. */
  char path[4200];
  snprintf(path, sizeof path, "%s/in.jsonl", tu_dir);
  FILE *f = fopen(path, "w");
  fputs("{\"type\":\"D\",\"data\":1}\n{\"type\":\"E\",\"data\":2}\n", f);
  fclose(f);
  o = ct_obj(ct_run("append", "s-1", "--jsonl", path, "--expected-version", "2",
                    NULL));
  cr_assert_eq(ct_int(o, "first_version"), 3);
  cr_assert_eq(ct_int(o, "last_version"), 4);
  json_decref(o);
}

Test(cli_append, jsonl_errors_write_nothing) {
  const char *bad[] = {
    "{\"type\":\"A\",\"data\":1}\n{\"type\":\"B\",\"data\":}\n",
    "{\"type\":\"A\",\"data\":1}\n{\"data\":1}\n",
    "{\"type\":\"A\"}\n",
    "[1,2]\n",
    "{\"type\":\"A\",\"data\":1,\"id\":\"nope\"}\n",
    "{\"type\":\"A\",\"data\":{\"$base64\":\"!!\"}}\n",
    "{\"type\":\"\",\"data\":1}\n",
    "{\"type\":7,\"data\":1}\n",
    "",
    "\n\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cu_result r = ct_run_in(bad[i], strlen(bad[i]), "append", "s-1", "--jsonl",
                            "-", NULL);
    cr_assert_eq(r.status, 2, "case %zu: %d %s", i, r.status, r.err);
    cu_result_free(&r);
  }
  /* The message names the line. */
  cu_result r =
      ct_run_in(bad[0], strlen(bad[0]), "append", "s-1", "--jsonl", "-", NULL);
  cr_assert_not_null(strstr(r.err, "<stdin>:2"), "%s", r.err);
  cu_result_free(&r);
  r = ct_run("append", "s-1", "--jsonl", "/nonexistent/file", NULL);
  ct_assert_status(r, 2);
  cu_result_free(&r);
  /* A wrong expected version rejects the whole file. */
  const char *two =
      "{\"type\":\"A\",\"data\":1}\n{\"type\":\"B\",\"data\":2}\n";
  r = ct_run_in(two, strlen(two), "append", "s-1", "--jsonl", "-",
                "--expected-version", "exists", NULL);
  ct_assert_status(r, 3);
  cu_result_free(&r);
  assert_no_stream("s-1");
}

Test(cli_append, tombstoned_stream) {
  json_decref(ct_append("s-1", "T", "1"));
  cu_result r = ct_run("delete", "s-1", "--hard", NULL);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  r = ct_run("append", "s-1", "--type", "T", "--data", "1", NULL);
  ct_assert_status(r, 4);
  cr_assert_not_null(strstr(r.err, "tombstoned"), "%s", r.err);
  cu_result_free(&r);
}

Test(cli_append, too_large) {
  /* 17 MiB of data: over the default 16 MiB event limit. */
  size_t n = 17u << 20;
  char *line = malloc(n + 64);
  size_t k = (size_t)sprintf(line, "{\"type\":\"Big\",\"data\":\"");
  memset(line + k, 'x', n);
  k += n;
  k += (size_t)sprintf(line + k, "\"}\n");
  cu_result r = ct_run_in(line, k, "append", "s-1", "--jsonl", "-", NULL);
  ct_assert_status(r, 2);
  cr_assert_not_null(strstr(r.err, "too large"), "%s", r.err);
  /* The detail names the limit that was hit; the advice quotes none, as
   * a store's or a server's may differ from the default. */
  cr_assert_not_null(strstr(r.err, "16777216"), "%s", r.err);
  cr_assert_null(strstr(r.err, "MiB"), "%s", r.err);
  cr_assert_not_null(strstr(r.err, "split the events"), "%s", r.err);
  cu_result_free(&r);
  free(line);
  assert_no_stream("s-1");
}
