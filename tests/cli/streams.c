/*
 * evstore-cli streams, info, metadata and delete.
 */
#include <sys/stat.h>

#include "clitest.h"

TestSuite(cli_streams, .init = ct_setup, .fini = ct_teardown);

static json_t *run_lines(cu_result r) {
  ct_assert_status(r, 0);
  json_t *arr = ct_lines(r.out);
  cu_result_free(&r);
  return arr;
}

static size_t count_events(const char *stream) {
  cu_result r = ct_run("read", stream, NULL);
  ct_assert_status(r, 0);
  size_t n = cu_count_lines(r.out);
  cu_result_free(&r);
  return n;
}

static void expect_status(int want, const char *const *args) {
  const char *envv[] = { ct_env_db, "EVSTORE_DURABILITY=nosync", NULL };
  cu_opts o = { tu_dir, envv, NULL, 0, 0 };
  cu_result r = cu_run(EVSTORE_CLI_PATH, args, &o);
  cr_assert_eq(r.status, want, "%s %s: status %d, expected %d\n%s", args[0],
               args[1] ? args[1] : "", r.status, want, r.err);
  cu_result_free(&r);
}

#define EXPECT(want, ...)                                                      \
  do {                                                                         \
    const char *a__[] = { __VA_ARGS__, NULL };                                 \
    expect_status((want), a__);                                                \
  } while (0)

Test(cli_streams, lists_streams) {
  json_decref(ct_append("order-2", "T", "1"));
  json_decref(ct_append("order-1", "T", "1"));
  json_decref(ct_append("order-1", "T", "2"));
  json_decref(ct_append("user-1", "T", "1"));
  cu_result r = ct_run("streams", NULL);
  ct_assert_status(r, 0);
  cr_assert_str_eq(r.out,
                   "{\"stream\":\"order-1\",\"version\":1,\"deleted\":false}\n"
                   "{\"stream\":\"order-2\",\"version\":0,\"deleted\":false}\n"
                   "{\"stream\":\"user-1\",\"version\":0,\"deleted\":false}\n");
  cu_result_free(&r);
  json_t *l = run_lines(ct_run("streams", "--prefix", "order-", NULL));
  cr_assert_eq(json_array_size(l), 2);
  json_decref(l);
  json_decref(ct_obj(ct_run("delete", "order-2", NULL)));
  l = run_lines(ct_run("streams", NULL));
  cr_assert_eq(json_array_size(l), 2);
  json_decref(l);
  l = run_lines(ct_run("streams", "--include-deleted", NULL));
  cr_assert_eq(json_array_size(l), 3);
  cr_assert(json_is_true(json_object_get(json_array_get(l, 1), "deleted")));
  json_decref(l);
  l = run_lines(ct_run("streams", "--prefix", "zzz", NULL));
  cr_assert_eq(json_array_size(l), 0);
  json_decref(l);
}

Test(cli_streams, no_store) {
  EXPECT(1, "streams");
  EXPECT(1, "read-all");
  EXPECT(1, "stats");
  EXPECT(4, "info", "x-1");
  EXPECT(4, "metadata", "x-1");
}

Test(cli_streams, info) {
  json_decref(ct_append("order-1", "T", "1"));
  json_decref(ct_append("other-1", "T", "1"));
  json_decref(ct_append("order-1", "T", "2"));
  json_t *o = ct_obj(ct_run("info", "order-1", NULL));
  const char *keys[] = { "stream",         "version",       "first_version",
                         "first_position", "last_position", "deleted",
                         "tombstoned",     "metadata",      "start_version",
                         "last_timestamp" };
  size_t k = 0;
  const char *key;
  json_t *val;
  json_object_foreach(o, key, val) {
    cr_assert_lt(k, 10);
    cr_assert_str_eq(key, keys[k]);
    k++;
  }
  cr_assert_eq(k, 10);
  cr_assert_eq(ct_int(o, "version"), 1);
  cr_assert_eq(ct_int(o, "first_version"), 0);
  cr_assert_eq(ct_int(o, "first_position"), 1);
  cr_assert_eq(ct_int(o, "last_position"), 3);
  cr_assert(json_is_false(json_object_get(o, "deleted")));
  cr_assert(json_is_false(json_object_get(o, "tombstoned")));
  ct_assert_json(json_object_get(o, "metadata"),
                 "{\"max_count\":null,\"max_age\":null,"
                 "\"truncate_before\":null,\"custom\":null}");
  cr_assert_eq(strlen(ct_str(o, "last_timestamp")), 30);
  json_decref(o);

  EXPECT(4, "info", "nope-1");
  EXPECT(2, "info");
  EXPECT(2, "info", "a", "b");

  json_decref(ct_obj(ct_run("delete", "order-1", NULL)));
  o = ct_obj(ct_run("info", "order-1", NULL));
  cr_assert(json_is_true(json_object_get(o, "deleted")));
  cr_assert(json_is_false(json_object_get(o, "tombstoned")));
  json_decref(o);
  json_decref(ct_obj(ct_run("delete", "other-1", "--hard", NULL)));
  o = ct_obj(ct_run("info", "other-1", NULL));
  cr_assert(json_is_true(json_object_get(o, "deleted")));
  cr_assert(json_is_true(json_object_get(o, "tombstoned")));
  json_decref(o);
}

Test(cli_streams, metadata_get_and_set) {
  for (int i = 0; i < 5; i++)
    json_decref(ct_append("s-1", "T", "1"));
  json_t *o = ct_obj(ct_run("metadata", "s-1", NULL));
  ct_assert_json(o, "{\"stream\":\"s-1\",\"max_count\":null,\"max_age\":null,"
                    "\"truncate_before\":null,\"custom\":null}");
  json_decref(o);
  o = ct_obj(ct_run("metadata", "s-1", "--max-count", "3", NULL));
  cr_assert_eq(ct_int(o, "max_count"), 3);
  json_decref(o);
  cr_assert_eq(count_events("s-1"), 3);
  /* Unspecified fields are kept. */
  o = ct_obj(ct_run("metadata", "s-1", "--truncate-before", "3", "--custom",
                    "{\"owner\": \"ann\"}", NULL));
  cr_assert_eq(ct_int(o, "max_count"), 3);
  cr_assert_eq(ct_int(o, "truncate_before"), 3);
  ct_assert_json(json_object_get(o, "custom"), "{\"owner\":\"ann\"}");
  json_decref(o);
  cr_assert_eq(count_events("s-1"), 2);
  o = ct_obj(ct_run("metadata", "s-1", "--max-age", "3600", NULL));
  cr_assert_eq(ct_int(o, "max_age"), 3600);
  cr_assert_eq(ct_int(o, "max_count"), 3);
  ct_assert_json(json_object_get(o, "custom"), "{\"owner\":\"ann\"}");
  json_decref(o);
  o = ct_obj(ct_run("info", "s-1", NULL));
  ct_assert_json(json_object_get(o, "metadata"),
                 "{\"max_count\":3,\"max_age\":3600,\"truncate_before\":3,"
                 "\"custom\":{\"owner\":\"ann\"}}");
  cr_assert_eq(ct_int(o, "first_version"), 3);
  json_decref(o);
  o = ct_obj(ct_run("metadata", "s-1", "--max-count", "none",
                    "--truncate-before", "none", "--custom", "none", NULL));
  ct_assert_json(o, "{\"stream\":\"s-1\",\"max_count\":null,\"max_age\":3600,"
                    "\"truncate_before\":null,\"custom\":null}");
  json_decref(o);
  cr_assert_eq(count_events("s-1"), 5);

  /* Before the stream exists: setting works, reading says not found. */
  EXPECT(4, "metadata", "new-1");
  o = ct_obj(ct_run("metadata", "new-1", "--max-count", "1", NULL));
  cr_assert_eq(ct_int(o, "max_count"), 1);
  json_decref(o);

  EXPECT(2, "metadata", "s-1", "--max-count", "-1");
  EXPECT(2, "metadata", "s-1", "--max-age", "1h");
  EXPECT(2, "metadata", "s-1", "--truncate-before", "x");
  EXPECT(2, "metadata", "s-1", "--custom", "{");
  EXPECT(2, "metadata", "s-1", "--bogus", "1");
  EXPECT(2, "metadata");

  json_decref(ct_obj(ct_run("delete", "s-1", "--hard", NULL)));
  EXPECT(4, "metadata", "s-1", "--max-count", "1");
}

/* Custom metadata over 64 KiB is refused before the store is opened. */
Test(cli_streams, custom_metadata_too_large) {
  size_t n = 64 * 1024;
  char *custom = malloc(n + 3);
  custom[0] = '"';
  memset(custom + 1, 'x', n - 1); /* 65537 bytes with the quotes */
  memcpy(custom + n, "\"", 2);
  cu_result r = ct_run("metadata", "s-1", "--custom", custom, NULL);
  ct_assert_status(r, 2);
  cr_assert_not_null(strstr(r.err, "64 KiB"), "%s", r.err);
  cu_result_free(&r);
  struct stat st;
  cr_assert_neq(stat(ct_db, &st), 0, "a store was created");
  custom[n - 1] = '"'; /* 65536 bytes: at the limit */
  custom[n] = '\0';
  json_t *o = ct_obj(ct_run("metadata", "s-1", "--custom", custom, NULL));
  cr_assert_eq(strlen(json_string_value(json_object_get(o, "custom"))), n - 2);
  json_decref(o);
  free(custom);
}

static int store_exists(void) {
  struct stat st;
  return stat(ct_db, &st) == 0;
}

/* A write that needs the stream fails on a missing store as on a store
 * without the stream, and creates nothing. */
Test(cli_streams, failed_writes_create_no_store) {
  cu_result r = ct_run("delete", "s-1", NULL);
  ct_assert_status(r, 4);
  cr_assert_not_null(strstr(r.err, "not found"), "%s", r.err);
  cu_result_free(&r);
  cr_assert(!store_exists(), "delete created a store");
  EXPECT(4, "delete", "s-1", "--expected-version", "0");
  r = ct_run("delete", "s-1", "--hard", "--expected-version", "0", NULL);
  ct_assert_status(r, 3);
  cr_assert_not_null(strstr(r.err, "actual -1"), "%s", r.err);
  cr_assert_null(strstr(r.err, "to create it"), "%s", r.err);
  cu_result_free(&r);
  EXPECT(3, "delete", "s-1", "--hard", "--expected-version", "exists");
  EXPECT(3, "append", "s-1", "--type", "T", "--data", "1", "--expected-version",
         "exists");
  EXPECT(3, "append", "s-1", "--type", "T", "--data", "1", "--expected-version",
         "0");
  EXPECT(4, "metadata", "s-1");
  EXPECT(4, "info", "s-1");
  cr_assert(!store_exists(), "a failed write created a store");

  /* The same statuses once a store exists without the stream. */
  json_decref(ct_append("other-1", "T", "1"));
  EXPECT(4, "delete", "s-1");
  EXPECT(4, "delete", "s-1", "--expected-version", "0");
  EXPECT(3, "delete", "s-1", "--hard", "--expected-version", "0");
  EXPECT(3, "append", "s-1", "--type", "T", "--data", "1", "--expected-version",
         "exists");
  EXPECT(3, "append", "s-1", "--type", "T", "--data", "1", "--expected-version",
         "0");
}

/* What succeeds creates the store: a tombstone reserving a name, metadata
 * set before the stream has events. */
Test(cli_streams, writes_that_succeed_create_the_store) {
  json_t *o = ct_obj(ct_run("delete", "s-1", "--hard", NULL));
  ct_assert_json(o, "{\"stream\":\"s-1\",\"deleted\":true,"
                    "\"tombstoned\":true}");
  json_decref(o);
  cr_assert(store_exists());
  EXPECT(4, "append", "s-1", "--type", "T", "--data", "1");
  tu_rmrf(ct_db);
  json_decref(ct_obj(ct_run("delete", "s-1", "--hard", "--expected-version",
                            "no-stream", NULL)));
  cr_assert(store_exists());
  tu_rmrf(ct_db);
  o = ct_obj(ct_run("metadata", "s-1", "--max-count", "2", NULL));
  cr_assert_eq(ct_int(o, "max_count"), 2);
  json_decref(o);
  cr_assert(store_exists());
}

/* One stream state, one JSON: "deleted" is true for soft-deleted and
 * tombstoned streams alike in streams, info and delete. The help of delete
 * and metadata says what the commands do with them. */
Test(cli_streams, deleted_and_tombstoned_streams_agree) {
  json_decref(ct_append("gone-1", "T", "1"));
  json_decref(ct_append("tomb-1", "T", "1"));
  json_t *o = ct_obj(ct_run("delete", "gone-1", NULL));
  ct_assert_json(o, "{\"stream\":\"gone-1\",\"deleted\":true,"
                    "\"tombstoned\":false}");
  json_decref(o);
  o = ct_obj(ct_run("delete", "tomb-1", "--hard", NULL));
  ct_assert_json(o, "{\"stream\":\"tomb-1\",\"deleted\":true,"
                    "\"tombstoned\":true}");
  json_decref(o);
  o = ct_obj(ct_run("info", "gone-1", NULL));
  cr_assert(json_is_true(json_object_get(o, "deleted")));
  cr_assert(json_is_false(json_object_get(o, "tombstoned")));
  json_decref(o);
  o = ct_obj(ct_run("info", "tomb-1", NULL));
  cr_assert(json_is_true(json_object_get(o, "deleted")));
  cr_assert(json_is_true(json_object_get(o, "tombstoned")));
  json_decref(o);
  json_t *l = run_lines(ct_run("streams", "--include-deleted", NULL));
  cr_assert_eq(json_array_size(l), 2);
  for (size_t i = 0; i < 2; i++)
    cr_assert(json_is_true(json_object_get(json_array_get(l, i), "deleted")));
  json_decref(l);

  /* Tombstoning again succeeds with the same answer; a soft delete of a
   * tombstone does not. */
  o = ct_obj(ct_run("delete", "tomb-1", "--hard", NULL));
  ct_assert_json(o, "{\"stream\":\"tomb-1\",\"deleted\":true,"
                    "\"tombstoned\":true}");
  json_decref(o);
  EXPECT(4, "delete", "tomb-1");
  /* Metadata is shown like info shows it; it cannot be set any more. */
  o = ct_obj(ct_run("metadata", "tomb-1", NULL));
  ct_assert_json(o, "{\"stream\":\"tomb-1\",\"max_count\":null,"
                    "\"max_age\":null,\"truncate_before\":null,"
                    "\"custom\":null}");
  json_decref(o);
  json_decref(ct_obj(ct_run("metadata", "gone-1", NULL)));
  EXPECT(4, "metadata", "tomb-1", "--max-count", "1");
  json_decref(ct_obj(ct_run("metadata", "gone-1", "--max-count", "1", NULL)));

  cu_result r = ct_run("delete", "--help", NULL);
  ct_assert_status(r, 0);
  cr_assert_not_null(strstr(r.out, "a repeated --hard is safe"), "%s", r.out);
  cu_result_free(&r);
  r = ct_run("metadata", "--help", NULL);
  ct_assert_status(r, 0);
  cr_assert_not_null(strstr(r.out, "deleted or tombstoned stream is shown"),
                     "%s", r.out);
  cu_result_free(&r);
}

Test(cli_streams, soft_delete_and_recreate) {
  json_decref(ct_append("s-1", "T", "1"));
  json_decref(ct_append("s-1", "T", "2"));
  json_t *o = ct_obj(ct_run("delete", "s-1", NULL));
  ct_assert_json(o, "{\"stream\":\"s-1\",\"deleted\":true,"
                    "\"tombstoned\":false}");
  json_decref(o);
  EXPECT(4, "read", "s-1");
  EXPECT(0, "delete", "s-1"); /* again: already deleted */
  o = ct_append("s-1", "T", "3");
  cr_assert_eq(ct_int(o, "first_version"), 2);
  json_decref(o);
  cr_assert_eq(count_events("s-1"), 1);
  EXPECT(4, "delete", "nope-1");
}

Test(cli_streams, delete_expected_version) {
  json_decref(ct_append("s-1", "T", "1"));
  json_decref(ct_append("s-1", "T", "2"));
  cu_result r = ct_run("delete", "s-1", "--expected-version", "0", NULL);
  ct_assert_status(r, 3);
  cr_assert_not_null(strstr(r.err, "expected 0"), "%s", r.err);
  cr_assert_not_null(strstr(r.err, "actual 1"), "%s", r.err);
  cu_result_free(&r);
  EXPECT(3, "delete", "s-1", "--expected-version", "no-stream");
  EXPECT(2, "delete", "s-1", "--expected-version", "soon");
  EXPECT(0, "delete", "s-1", "--expected-version", "1");
  EXPECT(4, "read", "s-1");
}

Test(cli_streams, hard_delete) {
  json_decref(ct_append("s-1", "T", "1"));
  json_t *o = ct_obj(ct_run("delete", "s-1", "--hard", NULL));
  ct_assert_json(o, "{\"stream\":\"s-1\",\"deleted\":true,"
                    "\"tombstoned\":true}");
  json_decref(o);
  EXPECT(4, "read", "s-1");
  EXPECT(4, "append", "s-1", "--type", "T", "--data", "1");
  EXPECT(0, "delete", "s-1", "--hard"); /* tombstoning again is fine */
  EXPECT(4, "delete", "s-1");           /* soft delete of a tombstone */
  /* A name that never existed can be reserved. */
  EXPECT(0, "delete", "never-1", "--hard");
  EXPECT(4, "append", "never-1", "--type", "T", "--data", "1");
}
