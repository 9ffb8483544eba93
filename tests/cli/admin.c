/*
 * evstore-cli: help, version, global options and environment, --connect,
 * stats, verify and replay.
 */
#include <sys/stat.h>

#include "clitest.h"

TestSuite(cli_admin, .init = ct_setup, .fini = ct_teardown);

static const char *commands[] = {
  "append",   "read",   "read-all", "state",  "streams", "info",   "subscribe",
  "metadata", "delete", "replay",   "export", "import",  "verify", "stats",
};

/* Runs with exactly `env` (plus nothing from the fixture). */
static cu_result run_env(const char *const *env, const char *const *args) {
  cu_opts o = { tu_dir, env, NULL, 0, 0 };
  return cu_run(EVSTORE_CLI_PATH, args, &o);
}

Test(cli_admin, help_everywhere) {
  cu_result r = ct_run("--help", NULL);
  ct_assert_status(r, 0);
  cr_assert_not_null(strstr(r.out, "Usage:"));
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    cr_assert_not_null(strstr(r.out, commands[i]), "%s", commands[i]);
  cu_result_free(&r);
  r = ct_run("help", NULL);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    const char *c = commands[i];
    cu_result a = ct_run(c, "--help", NULL);
    cu_result b = ct_run("help", c, NULL);
    cu_result d = ct_run("-h", c, NULL);
    ct_assert_status(a, 0);
    ct_assert_status(b, 0);
    ct_assert_status(d, 0);
    cr_assert_str_eq(a.out, b.out);
    cr_assert_str_eq(a.out, d.out);
    char usage[64];
    snprintf(usage, sizeof usage, "] %s", c);
    cr_assert_not_null(strstr(a.out, usage), "%s: %s", c, a.out);
    cr_assert_not_null(strstr(a.out, "--db DIR"), "%s", c);
    cu_result_free(&a);
    cu_result_free(&b);
    cu_result_free(&d);
  }
  r = ct_run("help", "nope", NULL);
  ct_assert_status(r, 2);
  cu_result_free(&r);
  /* --help wins over missing arguments. */
  r = ct_run("append", "--help", NULL);
  ct_assert_status(r, 0);
  cu_result_free(&r);
}

Test(cli_admin, help_on_help) {
  const char *forms[][3] = {
    { "help", "--help", NULL },
    { "help", "-h", NULL },
    { "help", "help", NULL },
    { "--help", "help", NULL },
  };
  for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
    const char *envv[] = { ct_env_db, NULL };
    cu_result r = run_env(envv, forms[i]);
    ct_assert_status(r, 0);
    cr_assert_eq(r.err_len, 0, "case %zu: %s", i, r.err);
    cr_assert_not_null(strstr(r.out, "Usage: evstore-cli help [COMMAND]"),
                       "case %zu: %s", i, r.out);
    cu_result_free(&r);
  }
}

/* A rejected value is answered with every form the option accepts. */
Test(cli_admin, bad_values_name_every_accepted_form) {
  static const struct {
    const char *args[8];
    const char *want[3];
  } cases[] = {
    { { "subscribe", "--all", "--from", "bogus", NULL },
      { "start", "end", "position" } },
    { { "metadata", "s-1", "--max-count", "-1", NULL },
      { "integer", "none", NULL } },
    { { "metadata", "s-1", "--max-age", "1h", NULL },
      { "seconds", "none", NULL } },
    { { "metadata", "s-1", "--truncate-before", "x", NULL },
      { "version", "none", NULL } },
    { { "metadata", "s-1", "--custom", "{", NULL }, { "JSON", "none", NULL } },
    { { "delete", "s-1", "--expected-version", "soon", NULL },
      { "any", "no-stream", "exists" } },
    { { "import", "--timestamps", "later", NULL },
      { "original", "metadata", "now" } },
    { { "--connect", "nohost", "streams", NULL },
      { "HOST:PORT", "[IPv6]:PORT", NULL } },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *envv[] = { ct_env_db, NULL };
    cu_result r = run_env(envv, cases[i].args);
    cr_assert_eq(r.status, 2, "case %zu: %d %s", i, r.status, r.err);
    for (size_t k = 0; k < 3 && cases[i].want[k]; k++)
      cr_assert_not_null(strstr(r.err, cases[i].want[k]),
                         "case %zu: no '%s' in: %s", i, cases[i].want[k],
                         r.err);
    cu_result_free(&r);
  }
  /* Nothing was created by the rejected commands. */
  struct stat st;
  cr_assert_neq(stat(ct_db, &st), 0);
}

Test(cli_admin, version) {
  cu_result r = ct_run("--version", NULL);
  ct_assert_status(r, 0);
  cr_assert_str_eq(r.out, "evstore-cli " EVS_VERSION_STRING
                          " (libevstore " EVS_VERSION_STRING ")\n");
  cu_result_free(&r);
}

Test(cli_admin, usage_errors) {
  const char *cases[][6] = {
    { NULL },
    { "nope", NULL },
    { "--nope", "streams", NULL },
    { "streams", "--nope", NULL },
    { "streams", "-x", NULL },
    { "--db", NULL },
    { "streams", "--json=1", NULL },
    { "--durability", "fast", "streams", NULL },
    { "replay", NULL },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *envv[] = { ct_env_db, NULL };
    cu_result r = run_env(envv, cases[i]);
    cr_assert_eq(r.status, 2, "case %zu: %d %s", i, r.status, r.err);
    cr_assert_eq(r.out_len, 0, "case %zu: %s", i, r.out);
    cr_assert_not_null(strstr(r.err, "--help"), "case %zu: %s", i, r.err);
    cu_result_free(&r);
  }
}

Test(cli_admin, global_options_anywhere) {
  char db2[4200];
  snprintf(db2, sizeof db2, "%s/other", tu_dir);
  const char *envv[] = { "EVSTORE_DURABILITY=nosync", NULL };
  const char *a1[] = { "--db", db2,      "append", "s-1", "--type",
                       "T",    "--data", "1",      NULL };
  cu_result r = run_env(envv, a1);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  const char *a2[] = { "read", "s-1", "--db", db2, "--json", NULL };
  r = run_env(envv, a2);
  ct_assert_status(r, 0);
  cr_assert_eq(cu_count_lines(r.out), 1);
  cu_result_free(&r);
  const char *a3[] = { "read", "--db=", "s-1", NULL };
  r = run_env(envv, a3);
  ct_assert_status(r, 2);
  cu_result_free(&r);
  const char *a4[] = { "--json", "read", "--db", db2, "s-1", NULL };
  r = run_env(envv, a4);
  ct_assert_status(r, 0);
  cu_result_free(&r);
}

Test(cli_admin, store_location) {
  /* Default: ./var/evstore under the working directory. */
  const char *none[] = { "EVSTORE_DURABILITY=nosync", NULL };
  const char *app[] = { "append", "s-1", "--type", "T", "--data", "1", NULL };
  cu_result r = run_env(none, app);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  char path[4300];
  struct stat st;
  snprintf(path, sizeof path, "%s/var/evstore/data.mdb", tu_dir);
  cr_assert_eq(stat(path, &st), 0, "no store at %s", path);

  /* EVSTORE_DB, and --db over it. */
  char env_db[4300], flag_db[4300];
  snprintf(env_db, sizeof env_db, "EVSTORE_DB=%s/env-db", tu_dir);
  snprintf(flag_db, sizeof flag_db, "%s/flag-db", tu_dir);
  const char *with_env[] = { env_db, "EVSTORE_DURABILITY=nosync", NULL };
  r = run_env(with_env, app);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  snprintf(path, sizeof path, "%s/env-db/data.mdb", tu_dir);
  cr_assert_eq(stat(path, &st), 0);
  const char *app_flag[] = { "append", "s-1",  "--type", "T", "--data",
                             "1",      "--db", flag_db,  NULL };
  r = run_env(with_env, app_flag);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  snprintf(path, sizeof path, "%s/flag-db/data.mdb", tu_dir);
  cr_assert_eq(stat(path, &st), 0);
  /* Nested directories are created. */
  snprintf(flag_db, sizeof flag_db, "%s/a/b/c", tu_dir);
  r = run_env(none, app_flag);
  ct_assert_status(r, 0);
  cu_result_free(&r);

  /* EVSTORE_DB wins over EVSTORE_CONNECT. */
  const char *both[] = { env_db, "EVSTORE_CONNECT=localhost:1",
                         "EVSTORE_DURABILITY=nosync", NULL };
  const char *rd[] = { "read", "s-1", NULL };
  r = run_env(both, rd);
  ct_assert_status(r, 0);
  cu_result_free(&r);
}

Test(cli_admin, a_failed_first_write_leaves_no_store) {
  char db[4300], path[4400];
  struct stat st;
  /* Checks only the store makes (an id twice in one append, an import
   * line without its stream), on a store this command creates: the store
   * and the directories made for it are removed again. */
  static const char dup[] =
      "{\"type\":\"T\",\"data\":1,"
      "\"id\":\"0190a4c2-7b5e-7c3a-8f21-0123456789ab\"}\n"
      "{\"type\":\"T\",\"data\":2,"
      "\"id\":\"0190a4c2-7b5e-7c3a-8f21-0123456789ab\"}\n";
  snprintf(db, sizeof db, "%s/new/nested/db", tu_dir);
  cu_result r = ct_run_in(dup, sizeof dup - 1, "append", "s-1", "--jsonl", "-",
                          "--db", db, NULL);
  ct_assert_status(r, 2);
  cu_result_free(&r);
  snprintf(path, sizeof path, "%s/new", tu_dir);
  cr_assert_neq(stat(path, &st), 0, "%s was left behind", path);
  r = ct_run_in(dup, sizeof dup - 1, "import", "-", "--db", db, NULL);
  ct_assert_status(r, 2);
  cu_result_free(&r);
  cr_assert_neq(stat(path, &st), 0, "%s was left behind", path);
  /* In a directory that was there: the directory stays, the store's files
   * go. */
  snprintf(db, sizeof db, "%s/there", tu_dir);
  cr_assert_eq(mkdir(db, 0755), 0);
  r = ct_run_in(dup, sizeof dup - 1, "append", "s-1", "--jsonl", "-", "--db",
                db, NULL);
  ct_assert_status(r, 2);
  cu_result_free(&r);
  cr_assert_eq(stat(db, &st), 0);
  snprintf(path, sizeof path, "%s/data.mdb", db);
  cr_assert_neq(stat(path, &st), 0, "%s was left behind", path);
  /* A store that was there before is never removed, even when it is empty
   * and the command fails (an empty import creates one). */
  snprintf(db, sizeof db, "%s/kept", tu_dir);
  r = ct_run_in("", 0, "import", "-", "--db", db, NULL);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  r = ct_run_in(dup, sizeof dup - 1, "append", "s-1", "--jsonl", "-", "--db",
                db, NULL);
  ct_assert_status(r, 2);
  cu_result_free(&r);
  snprintf(path, sizeof path, "%s/data.mdb", db);
  cr_assert_eq(stat(path, &st), 0, "an existing store was removed");
}

/* No server listens on port 1 of the loopback interface (the commands
 * against a running server are in remote.c). */
Test(cli_admin, connect_without_a_server_fails_with_a_message) {
  const char *envv[] = { ct_env_db, NULL };
  const char *a1[] = { "--connect", "127.0.0.1:1", "streams", NULL };
  cu_result r = run_env(envv, a1);
  ct_assert_status(r, 1);
  cr_assert_not_null(strstr(r.err, "cannot connect"), "%s", r.err);
  cr_assert_eq(r.out_len, 0);
  cu_result_free(&r);
  const char *a2[] = { "streams", "--connect", "127.0.0.1:1",
                       "--token", "secret",    NULL };
  r = run_env(envv, a2);
  ct_assert_status(r, 1);
  cu_result_free(&r);
  const char *connect_env[] = { "EVSTORE_CONNECT=127.0.0.1:1", NULL };
  const char *a3[] = { "read", "s-1", NULL };
  r = run_env(connect_env, a3);
  ct_assert_status(r, 1);
  cr_assert_not_null(strstr(r.err, "127.0.0.1:1 ($EVSTORE_CONNECT)"), "%s",
                     r.err);
  cu_result_free(&r);
  const char *bad[][6] = {
    { "--connect", "localhost", "streams", NULL },
    { "--connect", "host:port", "streams", NULL },
    { "--connect", "h:1", "--db", "x", "streams", NULL },
    { "--token", "t", "streams", NULL },
  };
  for (size_t i = 0; i < 4; i++) {
    r = run_env(envv, bad[i]);
    cr_assert_eq(r.status, 2, "case %zu: %d %s", i, r.status, r.err);
    cu_result_free(&r);
  }
}

Test(cli_admin, durability_modes) {
  const char *modes[] = { "sync", "nometasync", "nosync" };
  for (int i = 0; i < 3; i++) {
    cu_result r = ct_run("append", "s-1", "--type", "T", "--data", "1",
                         "--durability", modes[i], NULL);
    ct_assert_status(r, 0);
    cu_result_free(&r);
  }
  const char *bad_env[] = { ct_env_db, "EVSTORE_DURABILITY=maybe", NULL };
  const char *args[] = { "streams", NULL };
  cu_result r = run_env(bad_env, args);
  ct_assert_status(r, 2);
  cu_result_free(&r);
}

Test(cli_admin, stats) {
  json_decref(ct_append("order-1", "A", "{\"x\":1}"));
  json_decref(ct_append("user-1", "B", "2"));
  json_t *o = ct_obj(ct_run("stats", NULL));
  const char *keys[] = {
    "events",         "streams",           "last_position",
    "file_size",      "map_size",          "map_used",
    "data_bytes_raw", "data_bytes_stored", "compressed_events",
    "event_types",    "categories",        "page_size"
  };
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    cr_assert(json_is_integer(json_object_get(o, keys[i])), "%s", keys[i]);
  cr_assert_eq(ct_int(o, "events"), 2);
  cr_assert_eq(ct_int(o, "streams"), 2);
  cr_assert_eq(ct_int(o, "last_position"), 2);
  cr_assert_eq(ct_int(o, "data_bytes_raw"), 8);
  cr_assert_gt(ct_int(o, "map_size"), 0);
  cr_assert(json_is_number(json_object_get(o, "compression_ratio")));
  cr_assert(json_is_number(json_object_get(o, "map_use")));
  cr_assert_eq(strlen(ct_str(o, "last_timestamp")), 30);
  json_decref(o);
  cu_result r = ct_run("stats", "extra", NULL);
  ct_assert_status(r, 2);
  cu_result_free(&r);
}

Test(cli_admin, compression_ratio) {
  /* 64 KiB of repetitive JSON compresses well. */
  size_t n = 65536;
  char *line = malloc(n + 64);
  size_t k = (size_t)sprintf(line, "{\"type\":\"T\",\"data\":\"");
  for (size_t i = 0; i < n; i++)
    line[k++] = "abcd"[i % 4];
  k += (size_t)sprintf(line + k, "\"}\n");
  cu_result r = ct_run_in(line, k, "append", "z-1", "--jsonl", "-", NULL);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  free(line);
  json_t *o = ct_obj(ct_run("stats", NULL));
  cr_assert_eq(ct_int(o, "compressed_events"), 1);
  cr_assert_gt(json_number_value(json_object_get(o, "compression_ratio")),
               10.0);
  json_decref(o);
}

Test(cli_admin, verify) {
  for (int i = 0; i < 20; i++)
    json_decref(ct_append("s-1", "T", "{\"n\":1}"));
  cu_result r = ct_run("verify", NULL);
  ct_assert_status(r, 0);
  json_t *o = ct_json(r.out);
  cr_assert_eq(ct_int(o, "events_checked"), 20);
  cr_assert_eq(ct_int(o, "errors"), 0);
  cr_assert(json_is_true(json_object_get(o, "ok")));
  cr_assert_eq(r.err_len, 0, "%s", r.err); /* no progress when not a tty */
  json_decref(o);
  cu_result_free(&r);

  /* Damage one record: verify reports it and exits 1. */
  uint8_t key[8];
  tu_be64(key, 5);
  tu_lmdb_flip_byte(ct_db, "events", key, 8, SIZE_MAX);
  r = ct_run("verify", NULL);
  ct_assert_status(r, 1);
  json_t *lines = ct_lines(r.out);
  cr_assert_geq(json_array_size(lines), 2);
  cr_assert_not_null(json_object_get(json_array_get(lines, 0), "problem"));
  json_t *sum = json_array_get(lines, json_array_size(lines) - 1);
  cr_assert_gt(ct_int(sum, "errors"), 0);
  cr_assert(json_is_false(json_object_get(sum, "ok")));
  cr_assert_not_null(strstr(r.err, "problem"), "%s", r.err);
  json_decref(lines);
  cu_result_free(&r);
  /* Reading the damaged event fails with a runtime error. */
  r = ct_run("read", "s-1", NULL);
  ct_assert_status(r, 1);
  cr_assert_not_null(strstr(r.err, "verify"), "%s", r.err);
  cu_result_free(&r);
}

Test(cli_admin, replay_builtin_projections) {
  for (int i = 0; i < 5; i++)
    json_decref(ct_append(i % 2 ? "order-1" : "user-1", "T", "{\"n\":1}"));
  json_t *o = ct_obj(ct_run("replay", "stream-state", NULL));
  cr_assert_str_eq(ct_str(o, "projection"), "stream-state");
  cr_assert_eq(ct_int(o, "checkpoint"), 5);
  cr_assert_eq(ct_int(o, "head"), 5);
  long long gen = ct_int(o, "generation");
  json_decref(o);
  /* Again: a blue/green rebuild, a new generation. */
  o = ct_obj(ct_run("replay", "stream-state", NULL));
  cr_assert_eq(ct_int(o, "checkpoint"), 5);
  cr_assert_gt(ct_int(o, "generation"), gen);
  json_decref(o);
  o = ct_obj(ct_run("replay", "counts", NULL));
  cr_assert_eq(ct_int(o, "checkpoint"), 5);
  json_decref(o);
  cu_result r = ct_run("replay", "orders", NULL);
  ct_assert_status(r, 2);
  cr_assert_not_null(strstr(r.err, "stream-state"), "%s", r.err);
  cu_result_free(&r);
  r = ct_run("replay", "a", "b", NULL);
  ct_assert_status(r, 2);
  cu_result_free(&r);
}
