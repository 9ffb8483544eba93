/*
 * evstore-cli --connect: every command against a running evstored prints
 * byte for byte what it prints for a local store holding the same data,
 * with the same exit status and the same messages.
 *
 * The same data on both sides comes from `import` of one export file
 * (original timestamps and ids kept): into a local store directory, and
 * into a fresh server (the real evstored, started by srvutil on a free
 * loopback port). Commands that write are then run on both sides in the
 * same order, so positions and versions stay equal; only their commit
 * times differ, and the comparisons after them leave timestamps out.
 * Also: tokens (allowed and denied operations), a server that is not
 * running, the environment defaults, large imports split under the
 * server's frame limit, and live subscriptions.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clitest.h"
#include "srvutil.h"

static srv *S;
static char local_db[4200];

static void setup(void) {
  ct_setup();
  S = NULL;
  snprintf(local_db, sizeof local_db, "%s/local", tu_dir);
}

static void teardown(void) {
  srv_free(S);
  S = NULL;
  ct_teardown();
}

TestSuite(cli_remote, .init = setup, .fini = teardown, .timeout = 120);

/* ---- running both sides -------------------------------------------------- */

/* Runs the CLI on the local store (through $EVSTORE_DB). */
static cu_result run_local(const void *in, size_t len,
                           const char *const *args) {
  char env_db[4300];
  snprintf(env_db, sizeof env_db, "EVSTORE_DB=%s", local_db);
  const char *envv[] = { env_db, "EVSTORE_DURABILITY=nosync", NULL };
  cu_opts o = { tu_dir, envv, in, len, 120000 };
  return cu_run(EVSTORE_CLI_PATH, args, &o);
}

/* Runs the CLI on the server (through $EVSTORE_CONNECT and, when `token`
 * is not NULL, $EVSTORE_TOKEN). */
static cu_result run_remote_tok(const char *token, const void *in, size_t len,
                                const char *const *args) {
  char env_connect[128], env_token[256];
  snprintf(env_connect, sizeof env_connect, "EVSTORE_CONNECT=%s", S->addr);
  snprintf(env_token, sizeof env_token, "EVSTORE_TOKEN=%s", token ? token : "");
  const char *envv[] = { env_connect, "EVSTORE_DURABILITY=nosync",
                         token ? env_token : NULL, NULL };
  cu_opts o = { tu_dir, envv, in, len, 120000 };
  return cu_run(EVSTORE_CLI_PATH, args, &o);
}

static cu_result run_remote(const void *in, size_t len,
                            const char *const *args) {
  return run_remote_tok(NULL, in, len, args);
}

#define ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })

/* Matches `pat` at s, where '9' stands for a digit. */
static int match_digits(const char *s, const char *pat) {
  for (; *pat; pat++, s++) {
    if (*pat == '9' ? !(*s >= '0' && *s <= '9') : *s != *pat)
      return 0;
  }
  return 1;
}

/* Replaces every RFC 3339 time ("2026-11-27T10:00:00.123456789Z") by "T":
 * the commit times of writes made by the test differ between the two
 * sides. */
static char *without_timestamps(const char *s) {
  char *out = malloc(strlen(s) + 1);
  size_t o = 0;
  while (*s) {
    if (match_digits(s, "9999-99-99T99:99:99")) {
      const char *p = s + 19;
      if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
          ;
      if (*p == 'Z') {
        out[o++] = 'T';
        s = p + 1;
        continue;
      }
    }
    out[o++] = *s++;
  }
  out[o] = '\0';
  return out;
}

static void describe(const char *const *args, char *buf, size_t n) {
  size_t k = 0;
  buf[0] = '\0';
  for (size_t i = 0; args[i] && k + 2 < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%s", i ? " " : "", args[i]);
}

/*
 * Runs `args` on both sides (with `in` on stdin) and asserts the same exit
 * status `want`, the same stdout (without timestamps when `no_ts`) and the
 * same stderr. Returns the remote result's stdout (malloc'd).
 */
static char *same_in(const void *in, size_t len, int want, int no_ts,
                     const char *const *args) {
  char what[512];
  describe(args, what, sizeof what);
  cu_result l = run_local(in, len, args);
  cu_result r = run_remote(in, len, args);
  cr_assert_eq(l.status, want,
               "local '%s': exit %d, expected %d\nstdout:\n%.3000s\nstderr:\n"
               "%.3000s",
               what, l.status, want, l.out, l.err);
  cr_assert_eq(r.status, want,
               "--connect '%s': exit %d, expected %d\nstdout:\n%.3000s\n"
               "stderr:\n%.3000s",
               what, r.status, want, r.out, r.err);
  char *lo = no_ts ? without_timestamps(l.out) : strdup(l.out);
  char *ro = no_ts ? without_timestamps(r.out) : strdup(r.out);
  cr_assert_str_eq(ro, lo,
                   "'%s': stdout differs\nlocal:\n%.3000s\nremote:\n"
                   "%.3000s",
                   what, lo, ro);
  char *le = no_ts ? without_timestamps(l.err) : strdup(l.err);
  char *re = no_ts ? without_timestamps(r.err) : strdup(r.err);
  cr_assert_str_eq(re, le,
                   "'%s': stderr differs\nlocal:\n%.3000s\nremote:\n%.3000s",
                   what, le, re);
  free(le);
  free(re);
  free(lo);
  cu_result_free(&l);
  cu_result_free(&r);
  return ro;
}

static void same(int want, const char *const *args) {
  free(same_in(NULL, 0, want, 0, args));
}

static void same_no_ts(int want, const char *const *args) {
  free(same_in(NULL, 0, want, 1, args));
}

/* ---- the data ------------------------------------------------------------ */

/*
 * An export file: events with fixed ids and original times in the streams
 * order-1, order-2, cust-1, bin-1 (bytes that are not JSON), num-1 (number
 * spellings), bad-1 (unfoldable), gone-1 (starts at version 1: import adds
 * a placeholder), del-1 (soft-deleted), order-9 (max_count 2 and custom
 * metadata, first exported version 1), and a tombstone for tomb-1.
 */
#define TS(s) "\"timestamp\":\"2026-01-01T00:00:0" s "Z\""
#define ID(n) "\"id\":\"0192f4c4-7a1b-7c3d-8e9f-0000000000" n "\""
static const char scenario[] =
    "{\"position\":1,\"stream\":\"order-1\",\"version\":0," ID(
        "01") ",\"type\":\"Placed\"," TS("1.000000001") ",\"data\":{\"sku\":"
                                                        "\"A-1\",\"qty\":2},"
                                                        "\"metadata\":{"
                                                        "\"user\":\"ann\"}}\n"
                                                        "{\"position\":2,"
                                                        "\"stream\":\"order-"
                                                        "1\",\"version\":1," ID("02") ",\"type\":\"Paid\"," TS("2.5") ",\"data\":{\"paid\":true},\"metadata\":null}\n"
                                                                                                                      "{\"position\":3,\"stream\":\"order-2\",\"version\":0," ID("03") ",\"type\":\"Placed\"," TS("2.5") ",\"data\":{\"sku\":\"B-7\"},\"metadata\":null}\n"
                                                                                                                                                                                                                         "{\"position\":4,\"stream\":\"cust-1\",\"version\":0," ID("04") ",\"type\":\"Registered\"," TS("3") ",\"data\":{\"name\":\"Zo\xc3\xab\"},\"metadata\":null}\n"
                                                                                                                                                                                                                                                                                                                             "{\"position\":5,\"stream\":\"bin-1\",\"version\":0," ID("05") ",\"type\":\"Blob\"," TS("3") ",\"data\":{\"$base64\":\"AAEC/w==\"},\"metadata\":null}\n"
                                                                                                                                                                                                                                                                                                                                                                                                                          "{\"position\":6,\"stream\":\"num-1\",\"version\":0," ID("06") ",\"type\":\"Num\"," TS(
                                                                                                                                                                                                                                                                                                                                                                                                                              "4") ",\"data\":{\"n\":123456789012345678901234567890,\"f\":0.1},"
                                                                                                                                                                                                                                                                                                                                                                                                                                   "\"metadata\":null}\n"
                                                                                                                                                                                                                                                                                                                                                                                                                                   "{\"position\":7,\"stream\":\"order-1\",\"version\":2," ID(
                                                                                                                                                                                                                                                                                                                                                                                                                                       "07") ",\"type\":\"Shipped\"," TS("5") ",\"data\":{\"qty\":null,\"carrier\":\"ups\"},\"metadata\":null}\n"
                                                                                                                                                                                                                                                                                                                                                                                                                                                                              "{\"position\":8,\"stream\":\"bad-1\",\"version\":0," ID("08") ",\"type\":\"Bad\"," TS(
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                  "6") ",\"data\":[1,2],\"metadata\":null}\n"
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                       "{\"position\":9,\"stream\":\"gone-1\",\"version\":1," ID("09") ",\"type\":\"X\"," TS("6") ",\"data\":{\"x\":2},\"metadata\":null}\n"
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                  "{\"position\":10,\"stream\":\"del-1\",\"version\":0," ID("10") ",\"type\":\"X\"," TS("7") ",\"data\":{},\"metadata\":null}\n"
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                             "{\"position\":11,\"stream\":\"order-9\",\"version\":1," ID("11") ",\"type\":\"Placed\"," TS(
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                 "8") ",\"data\":{\"i\":1},\"metadata\":null}\n"
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                      "{\"position\":12,\"stream\":\"order-9\",\"version\":2," ID("12") ",\"type\":\"Paid\"," TS("9") ",\"data\":{\"i\":2},\"metadata\":null}\n"
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                      "{\"stream\":\"del-1\",\"state\":\"deleted\",\"version\":0,\"metadata\":"
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                      "{\"max_count\":null,\"max_age\":null,\"truncate_before\":null,"
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                      "\"custom\":null}}\n"
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                      "{\"stream\":\"order-9\",\"state\":\"active\",\"version\":2,\"metadata\":"
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                      "{\"max_count\":2,\"max_age\":null,\"truncate_before\":null,"
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                      "\"custom\":{\"k\":\"v\"}}}\n"
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                      "{\"stream\":\"tomb-1\",\"state\":\"tombstoned\",\"version\":0,"
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                      "\"metadata\":{\"max_count\":null,\"max_age\":null,"
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                      "\"truncate_before\":null,\"custom\":null}}\n";

/* Starts a server (extra arguments may be NULL) and imports the scenario
 * on both sides, comparing the import's output. */
static void load(const char *const *extra) {
  S = srv_start(NULL, extra);
  char *out = same_in(scenario, sizeof scenario - 1, 0, 0, ARGS("import"));
  json_t *o = ct_json(out);
  cr_assert_eq(ct_int(o, "events"), 12);
  cr_assert_eq(ct_int(o, "written"), 12);
  cr_assert_eq(ct_int(o, "states"), 3);
  json_decref(o);
  free(out);
}

/* ---- tests --------------------------------------------------------------- */

Test(cli_remote, reads_are_byte_identical) {
  load(NULL);
  same(0, ARGS("export"));
  same(0, ARGS("export", "--from", "3", "--until", "8"));
  same(0, ARGS("read", "order-1"));
  same(0, ARGS("read", "order-1", "--backward", "--limit", "2"));
  same(0, ARGS("read", "order-1", "--from", "1"));
  same(0, ARGS("read", "order-1", "--as-of", "2026-01-01T00:00:02.5Z"));
  same(0, ARGS("read", "order-1", "--as-of", "@1767225602"));
  same(0, ARGS("read", "bin-1"));
  same(0, ARGS("read", "num-1"));
  same(0, ARGS("read", "order-9"));
  same(0, ARGS("read", "--table", "order-1"));
  same(4, ARGS("read", "order-1", "--as-of", "2025-01-01T00:00:00Z"));
  same(4, ARGS("read", "missing-1"));
  same(4, ARGS("read", "del-1"));
  same(4, ARGS("read", "tomb-1"));
  same(2, ARGS("read", "order-1", "--as-of", "yesterday"));
  same(0, ARGS("read-all"));
  same(0, ARGS("read-all", "--backward", "--limit", "3"));
  same(0, ARGS("read-all", "--from", "3", "--limit", "4"));
  same(0, ARGS("read-all", "--backward", "--from", "7"));
  same(0, ARGS("read-all", "--prefix", "order-"));
  same(0, ARGS("read-all", "--category", "order"));
  same(0, ARGS("read-all", "--type", "Placed"));
  same(0, ARGS("read-all", "--since", "2026-01-01T00:00:03Z", "--until",
               "2026-01-01T00:00:06Z"));
  same(0, ARGS("read-all", "--category", "order", "--type", "Paid", "--since",
               "@1767225600"));
  same(0, ARGS("state", "order-1"));
  same(0, ARGS("state", "order-1", "--as-of", "2026-01-01T00:00:03Z"));
  same(0, ARGS("state", "--table", "order-1"));
  /* Numbers beyond 64 bits fold, and print as they were written. */
  char *num = same_in(NULL, 0, 0, 0, ARGS("state", "num-1"));
  cr_assert_str_eq(num, "{\"n\":123456789012345678901234567890,\"f\":0.1}\n");
  free(num);
  same(0, ARGS("state", "--table", "num-1"));
  same(1, ARGS("state", "bad-1"));
  same(1, ARGS("state", "bin-1"));
  same(4, ARGS("state", "missing-1"));
  same(4, ARGS("state", "tomb-1"));
  same(0, ARGS("streams"));
  same(0, ARGS("streams", "--include-deleted"));
  same(0, ARGS("streams", "--prefix", "order-"));
  same(0, ARGS("info", "order-1"));
  same(0, ARGS("info", "order-9"));
  same(0, ARGS("info", "del-1"));
  same(0, ARGS("info", "tomb-1"));
  same(0, ARGS("info", "gone-1"));
  same(4, ARGS("info", "missing-1"));
  same(0, ARGS("metadata", "order-9"));
  same(4, ARGS("metadata", "missing-1"));
  same(0, ARGS("verify"));
  same(2, ARGS("read"));
  same(2, ARGS("info", "bad\x01name", "--nope"));
}

Test(cli_remote, subscribe_catch_up_is_byte_identical) {
  load(NULL);
  same(0, ARGS("subscribe", "--all", "--limit", "11"));
  same(0, ARGS("subscribe", "--all", "--from", "4", "--limit", "3"));
  same(0, ARGS("subscribe", "--category", "order", "--limit", "4"));
  same(0, ARGS("subscribe", "--all", "--type", "Placed", "--limit", "3"));
  same(0, ARGS("subscribe", "--stream", "order-1", "--limit", "3"));
  same(0,
       ARGS("subscribe", "--stream", "order-1", "--from", "3", "--limit", "1"));
  same(0, ARGS("subscribe", "--stream", "order-9", "--from", "14", "--limit",
               "1"));
  same(0, ARGS("subscribe", "--stream", "order-1", "--type", "Shipped",
               "--limit", "1"));
  same(0, ARGS("subscribe", "--all", "--limit", "0"));
  same(4, ARGS("subscribe", "--stream", "tomb-1"));
  same(2, ARGS("subscribe", "--all", "--stream", "x"));
}

Test(cli_remote, stats_replay_and_verify) {
  load(NULL);
  cu_result l = run_local(NULL, 0, ARGS("stats"));
  cu_result r = run_remote(NULL, 0, ARGS("stats"));
  ct_assert_status(l, 0);
  ct_assert_status(r, 0);
  json_t *lo = ct_json(l.out), *ro = ct_json(r.out);
  /* Sizes of the files and maps depend on each store's history; the
   * counts and totals do not. */
  static const char *const keys[] = { "events",
                                      "streams",
                                      "event_types",
                                      "categories",
                                      "last_position",
                                      "last_timestamp",
                                      "page_size",
                                      "data_bytes_raw",
                                      "data_bytes_stored",
                                      "compressed_events",
                                      "compression_ratio",
                                      NULL };
  for (size_t i = 0; keys[i]; i++) {
    char *a = ct_dump(json_object_get(lo, keys[i]));
    char *b = ct_dump(json_object_get(ro, keys[i]));
    cr_assert_str_eq(b, a, "stats \"%s\": local %s, remote %s", keys[i], a, b);
    free(a);
    free(b);
  }
  /* The same keys in the same order. */
  const char *k1, *k2;
  json_t *v;
  void *it = json_object_iter(ro);
  json_object_foreach(lo, k1, v) {
    cr_assert_not_null(it);
    k2 = json_object_iter_key(it);
    cr_assert_str_eq(k2, k1);
    it = json_object_iter_next(ro, it);
  }
  json_decref(lo);
  json_decref(ro);
  cu_result_free(&l);
  cu_result_free(&r);
  /* A first build, then a blue/green rebuild: same figures both sides. */
  same(0, ARGS("replay", "counts"));
  same(0, ARGS("replay", "stream-state"));
  same(0, ARGS("replay", "counts"));
  same(2, ARGS("replay", "nope"));
  same(2, ARGS("replay"));
  same(0, ARGS("verify"));
}

Test(cli_remote, writes_have_the_same_results_and_statuses) {
  load(NULL);
  const char *id1 = "0192f4c4-7a1b-7c3d-8e9f-0000000000a1";
  same(0, ARGS("append", "order-3", "--type", "Placed", "--data",
               "{\"sku\":\"C\"}", "--metadata", "{\"user\":\"bob\"}", "--id",
               id1, "--expected-version", "no-stream"));
  /* A retry with the same id: idempotent, the original result. */
  same(0,
       ARGS("append", "order-3", "--type", "Placed", "--data",
            "{\"sku\":\"C\"}", "--id", id1, "--expected-version", "no-stream"));
  /* The id used elsewhere: a conflict. */
  same(1, ARGS("append", "order-4", "--type", "Placed", "--data", "{}", "--id",
               id1));
  same(3, ARGS("append", "order-3", "--type", "Paid", "--data", "{}",
               "--expected-version", "5"));
  same(3, ARGS("append", "order-3", "--type", "Paid", "--data", "{}",
               "--expected-version", "no-stream"));
  same(0, ARGS("append", "order-3", "--type", "Paid", "--data",
               "{\"paid\":true}", "--expected-version", "0", "--id",
               "0192f4c4-7a1b-7c3d-8e9f-0000000000a2"));
  same(4, ARGS("append", "tomb-1", "--type", "X", "--data", "{}"));
  same(2, ARGS("append", "order-3", "--type", "X", "--data", "{bad"));
  same(2, ARGS("append", "$order", "--type", "X", "--data", "{}"));
  /* --jsonl: one atomic append. */
  static const char lines[] =
      "{\"type\":\"A\",\"data\":{\"n\":1},\"id\":"
      "\"0192f4c4-7a1b-7c3d-8e9f-0000000000b1\"}\n"
      "\n"
      "{\"type\":\"B\",\"data\":[1,2],\"metadata\":{\"m\":true},\"id\":"
      "\"0192f4c4-7a1b-7c3d-8e9f-0000000000b2\"}\n"
      "{\"type\":\"C\",\"data\":{\"$base64\":\"AP8=\"},\"id\":"
      "\"0192f4c4-7a1b-7c3d-8e9f-0000000000b3\"}\n";
  free(same_in(lines, sizeof lines - 1, 0, 0,
               ARGS("append", "batch-1", "--jsonl", "-")));
  /* Atomic failure: the second line's id is stored elsewhere. */
  static const char conflict[] = "{\"type\":\"A\",\"data\":{}}\n"
                                 "{\"type\":\"A\",\"data\":{},\"id\":"
                                 "\"0192f4c4-7a1b-7c3d-8e9f-0000000000b1\"}\n";
  free(same_in(conflict, sizeof conflict - 1, 1, 0,
               ARGS("append", "batch-2", "--jsonl", "-")));
  same(4, ARGS("read", "batch-2"));
  same(2, ARGS("append", "batch-3", "--jsonl", "-"));
  /* Metadata, set and shown. */
  same(0, ARGS("metadata", "order-3", "--max-count", "5", "--custom",
               "{\"owner\":\"ops\"}"));
  same(0, ARGS("metadata", "order-3", "--max-count", "none",
               "--truncate-before", "1"));
  same(0, ARGS("metadata", "new-1", "--max-age", "3600"));
  same(4, ARGS("metadata", "tomb-1", "--max-count", "1"));
  /* Deletes. */
  same(3, ARGS("delete", "order-2", "--expected-version", "3"));
  same(0, ARGS("delete", "order-2", "--expected-version", "0"));
  same(0, ARGS("delete", "order-2"));
  same(4, ARGS("delete", "missing-2"));
  same(0, ARGS("delete", "missing-3", "--hard"));
  same(0, ARGS("delete", "cust-1", "--hard"));
  same(4, ARGS("delete", "cust-1"));
  same(0, ARGS("append", "order-2", "--type", "Again", "--data", "{}", "--id",
               "0192f4c4-7a1b-7c3d-8e9f-0000000000c1"));
  /* Everything written reads back the same (but for commit times). */
  same_no_ts(0, ARGS("read-all"));
  same_no_ts(0, ARGS("read", "batch-1"));
  same_no_ts(0, ARGS("read", "order-2"));
  same_no_ts(0, ARGS("streams", "--include-deleted"));
  same_no_ts(0, ARGS("info", "order-3"));
  same_no_ts(0, ARGS("export"));
  same(0, ARGS("state", "order-3"));
  same(0, ARGS("verify"));
}

Test(cli_remote, import_modes_and_reimport) {
  S = srv_start(NULL, NULL);
  /* metadata mode: commit times differ, the export restores them. */
  free(same_in(scenario, sizeof scenario - 1, 0, 0,
               ARGS("import", "--timestamps", "metadata")));
  same(0, ARGS("export"));
  /* Importing again writes nothing: every event is recognised. */
  char *out = same_in(scenario, sizeof scenario - 1, 0, 0,
                      ARGS("import", "--timestamps", "metadata"));
  json_t *o = ct_json(out);
  cr_assert_eq(ct_int(o, "written"), 0);
  cr_assert_eq(ct_int(o, "skipped"), 12);
  json_decref(o);
  free(out);
  /* original mode on a store with newer events: refused, both sides. */
  static const char older[] =
      "{\"stream\":\"old-1\",\"version\":0,\"id\":"
      "\"0192f4c4-7a1b-7c3d-8e9f-0000000000d1\",\"type\":\"T\","
      "\"timestamp\":\"2001-01-01T00:00:00Z\",\"data\":{}}\n";
  free(same_in(older, sizeof older - 1, 1, 1, ARGS("import")));
  free(same_in(older, sizeof older - 1, 0, 0,
               ARGS("import", "--timestamps", "now")));
  same_no_ts(0, ARGS("read", "old-1"));
  static const char broken[] = "{\"stream\":\"x-1\",\"version\":0}\n";
  free(same_in(broken, sizeof broken - 1, 2, 0, ARGS("import")));
}

/* Imports into a server whose frames are small: groups are split to fit. */
Test(cli_remote, large_import_fits_the_server_frame_limit) {
  const char *extra[] = { "--max-frame",
                          "256K",
                          "--max-event-size",
                          "200K",
                          "--max-events",
                          "100",
                          "--page-events",
                          "7",
                          NULL };
  S = srv_start(NULL, extra);
  /* Runs of 150 events of one stream and one commit time: 450 KiB, more
   * than a frame and more than max-events. */
  size_t n = 600, cap = n * 3200 + 65536, len = 0;
  char *in = malloc(cap);
  for (size_t i = 0; i < n; i++) {
    size_t run = i / 150;
    len += (size_t)snprintf(in + len, cap - len,
                            "{\"stream\":\"big-%zu\",\"version\":%zu,"
                            "\"id\":\"0192f4c4-7a1b-7c3d-8e9f-%012zx\","
                            "\"type\":\"T\",\"timestamp\":"
                            "\"2026-01-01T00:00:%02zu.5Z\",\"data\":\"",
                            run % 2, (run / 2) * 150 + i % 150, i + 1, run);
    for (size_t k = 0; k < 3000; k++)
      in[len++] = (char)('a' + (i + k) % 26);
    len += (size_t)snprintf(in + len, cap - len, "\"}\n");
  }
  char *out = same_in(in, len, 0, 0, ARGS("import"));
  json_t *o = ct_json(out);
  cr_assert_eq(ct_int(o, "written"), (long long)n);
  json_decref(o);
  free(out);
  /* Reads come back in pages of 7 events. */
  same(0, ARGS("export"));
  same(0, ARGS("read", "big-1", "--backward", "--limit", "20"));
  same(0, ARGS("subscribe", "--all", "--limit", "40"));
  free(in);
}

/* Over the server's own limits (below the library's defaults), the error
 * names the server's limit and the advice claims no other. */
Test(cli_remote, too_large_names_the_servers_limit) {
  const char *extra[] = { "--max-events", "2", "--max-event-size", "2K", NULL };
  S = srv_start(NULL, extra);
  static const char three[] = "{\"type\":\"T\",\"data\":1}\n"
                              "{\"type\":\"T\",\"data\":2}\n"
                              "{\"type\":\"T\",\"data\":3}\n";
  cu_result r = run_remote(three, sizeof three - 1,
                           ARGS("append", "s-1", "--jsonl", "-"));
  ct_assert_status(r, 2);
  cr_assert_not_null(strstr(r.err, "at most 2"), "%s", r.err);
  cr_assert_not_null(strstr(r.err, "--max-events"), "%s", r.err);
  cr_assert_null(strstr(r.err, "MiB"), "%s", r.err);
  cu_result_free(&r);
  char data[3100];
  data[0] = '"';
  memset(data + 1, 'x', 3000);
  memcpy(data + 3001, "\"", 2);
  r = run_remote(NULL, 0, ARGS("append", "s-1", "--type", "T", "--data", data));
  ct_assert_status(r, 2);
  cr_assert_not_null(strstr(r.err, "2048"), "%s", r.err);
  cr_assert_not_null(strstr(r.err, "--max-event-size"), "%s", r.err);
  cr_assert_null(strstr(r.err, "MiB"), "%s", r.err);
  cu_result_free(&r);
  r = run_remote(NULL, 0, ARGS("read", "s-1"));
  ct_assert_status(r, 4);
  cu_result_free(&r);
}

Test(cli_remote, follows_new_events_and_stops_on_a_signal) {
  S = srv_start(NULL, NULL);
  char env_connect[128];
  snprintf(env_connect, sizeof env_connect, "EVSTORE_CONNECT=%s", S->addr);
  const char *envv[] = { env_connect, NULL };
  cu_opts o = { tu_dir, envv, NULL, 0, 0 };
  cu_result r =
      run_remote(NULL, 0, ARGS("append", "s-1", "--type", "T", "--data", "1"));
  ct_assert_status(r, 0);
  cu_result_free(&r);
  cu_proc p = cu_start(EVSTORE_CLI_PATH,
                       ARGS("subscribe", "--all", "--limit", "3"), &o);
  char *early = NULL;
  cr_assert(cu_read_until(&p, "\"position\":1", &early, 30000),
            "no catch-up: %s", early);
  r = run_remote(NULL, 0, ARGS("append", "s-2", "--type", "T", "--data", "2"));
  ct_assert_status(r, 0);
  cu_result_free(&r);
  cr_assert(cu_read_until(&p, "\"position\":2", &early, 30000),
            "event 2 not delivered live: %s", early);
  r = run_remote(NULL, 0, ARGS("append", "s-1", "--type", "T", "--data", "3"));
  ct_assert_status(r, 0);
  cu_result_free(&r);
  r = cu_finish(&p, 30000);
  ct_assert_status(r, 0);
  cr_assert(strstr(r.out, "\"position\":3") || strstr(early, "\"position\":3"));
  cu_result_free(&r);
  free(early);
  /* SIGTERM ends a subscription that waits for events: exit 0. */
  p = cu_start(EVSTORE_CLI_PATH, ARGS("subscribe", "--stream", "s-9"), &o);
  ms_sleep(300);
  kill(p.pid, SIGTERM);
  r = cu_finish(&p, 30000);
  cr_assert_not(r.timed_out);
  ct_assert_status(r, 0);
  cu_result_free(&r);
}

/* ---- tokens -------------------------------------------------------------- */

static const char tokens[] = "admin-7f3a0c   rw:*\n"
                             "reader-19bd    read:*\n"
                             "orders-5e21    rw:order- read:cust\n";

static void start_with_tokens(void) {
  char *dir = srv_tmpdir();
  char path[600];
  snprintf(path, sizeof path, "%s/tokens", dir);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(tokens, f);
  fclose(f);
  const char *extra[] = { "--tokens", path, NULL };
  S = srv_start(NULL, extra);
  unlink(path);
  rmdir(dir);
  free(dir);
}

/* Runs with a token; asserts the status, returns stderr (malloc'd). */
static char *as(const char *token, int want, const char *const *args) {
  char what[512];
  describe(args, what, sizeof what);
  cu_result r = run_remote_tok(token, NULL, 0, args);
  cr_assert_eq(r.status, want,
               "token %s, '%s': exit %d, expected %d\nstdout:\n%.2000s\n"
               "stderr:\n%.2000s",
               token ? token : "(none)", what, r.status, want, r.out, r.err);
  char *err = strdup(r.err);
  cu_result_free(&r);
  return err;
}

Test(cli_remote, tokens_allow_and_deny) {
  start_with_tokens();
  char *e = as(NULL, 1, ARGS("streams"));
  cr_assert(strstr(e, S->addr) && strstr(e, "refused") && strstr(e, "--token"),
            "%s", e);
  free(e);
  e = as("wrong", 1, ARGS("read-all"));
  cr_assert(strstr(e, "refused") && strstr(e, "not known"), "%s", e);
  free(e);
  /* --token and --connect on the command line. */
  cu_result t =
      ct_run("streams", "--connect", S->addr, "--token", "reader-19bd", NULL);
  ct_assert_status(t, 0);
  cu_result_free(&t);
  t = ct_run("streams", "--token", "nope", "--connect", S->addr, NULL);
  ct_assert_status(t, 1);
  cr_assert(strstr(t.err, "refused"), "%s", t.err);
  cu_result_free(&t);
  /* rw:* may do everything. */
  cu_result r = run_remote_tok("admin-7f3a0c", scenario, sizeof scenario - 1,
                               ARGS("import"));
  ct_assert_status(r, 0);
  cu_result_free(&r);
  free(as("admin-7f3a0c", 0, ARGS("replay", "counts")));
  free(as("admin-7f3a0c", 0, ARGS("verify")));
  /* read:* reads everything, writes nothing, cannot replay. */
  free(as("reader-19bd", 0, ARGS("export")));
  free(as("reader-19bd", 0, ARGS("stats")));
  free(as("reader-19bd", 0, ARGS("verify")));
  free(as("reader-19bd", 0, ARGS("state", "order-1")));
  free(as("reader-19bd", 0, ARGS("subscribe", "--all", "--limit", "2")));
  e = as("reader-19bd", 1,
         ARGS("append", "order-1", "--type", "T", "--data", "{}"));
  cr_assert(strstr(e, "not authorized") && strstr(e, "tokens file"), "%s", e);
  free(e);
  e = as("reader-19bd", 1, ARGS("replay", "counts"));
  cr_assert(strstr(e, "not authorized") && strstr(e, "rw:*"), "%s", e);
  free(e);
  free(as("reader-19bd", 1, ARGS("delete", "order-1")));
  free(as("reader-19bd", 1, ARGS("metadata", "order-1", "--max-count", "1")));
  /* rw:order- read:cust: its streams only. */
  free(as("orders-5e21", 0,
          ARGS("append", "order-5", "--type", "T", "--data", "{}")));
  free(as("orders-5e21", 0, ARGS("read", "order-1")));
  free(as("orders-5e21", 0, ARGS("read", "cust-1")));
  free(as("orders-5e21", 0, ARGS("read-all", "--prefix", "order-")));
  free(as("orders-5e21", 1, ARGS("read-all", "--category", "order")));
  free(as("orders-5e21", 0, ARGS("read-all", "--category", "order-")));
  free(as("orders-5e21", 0, ARGS("streams", "--prefix", "order-")));
  free(as("orders-5e21", 0,
          ARGS("subscribe", "--stream", "order-1", "--limit", "1")));
  free(as("orders-5e21", 0, ARGS("delete", "order-5")));
  free(as("orders-5e21", 1,
          ARGS("append", "cust-1", "--type", "T", "--data", "{}")));
  free(as("orders-5e21", 1, ARGS("read", "bin-1")));
  free(as("orders-5e21", 1, ARGS("read-all")));
  free(as("orders-5e21", 1, ARGS("streams")));
  free(as("orders-5e21", 1, ARGS("export")));
  free(as("orders-5e21", 1, ARGS("stats")));
  free(as("orders-5e21", 1, ARGS("verify")));
  free(as("orders-5e21", 1, ARGS("subscribe", "--all", "--limit", "1")));
  /* An import confined to its streams works, also a second time. */
  static const char mine[] =
      "{\"stream\":\"order-77\",\"version\":0,\"id\":"
      "\"0192f4c4-7a1b-7c3d-8e9f-0000000000e1\",\"type\":\"T\","
      "\"timestamp\":\"2030-01-01T00:00:00Z\",\"data\":{}}\n";
  for (int i = 0; i < 2; i++) {
    r = run_remote_tok("orders-5e21", mine, sizeof mine - 1, ARGS("import"));
    ct_assert_status(r, 0);
    cu_result_free(&r);
  }
  /* An event id stored in a stream it may not read is not revealed. */
  static const char theirs[] =
      "{\"stream\":\"order-78\",\"version\":0,\"id\":"
      "\"0192f4c4-7a1b-7c3d-8e9f-000000000005\",\"type\":\"T\","
      "\"timestamp\":\"2030-01-01T00:00:00Z\",\"data\":{}}\n";
  r = run_remote_tok("orders-5e21", theirs, sizeof theirs - 1, ARGS("import"));
  ct_assert_status(r, 1);
  cr_assert(strstr(r.err, "not authorized"), "%s", r.err);
  cu_result_free(&r);
}

/* ---- connecting ---------------------------------------------------------- */

/* A loopback port nobody listens on. */
static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t sl = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &sl);
  close(fd);
  return ntohs(a.sin_port);
}

Test(cli_remote, a_server_that_is_not_running) {
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", closed_port());
  static const char *const cmds[][5] = {
    { "read", "order-1", NULL },
    { "append", "s-1", "--jsonl", "-" },
    { "streams", NULL },
    { "stats", NULL },
    { "subscribe", "--all", NULL },
    { "import", NULL },
  };
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    const char *args[8];
    size_t k = 0;
    args[k++] = "--connect";
    args[k++] = addr;
    for (size_t j = 0; cmds[i][j]; j++)
      args[k++] = cmds[i][j];
    args[k] = NULL;
    static const char in[] = "{\"type\":\"T\",\"data\":{}}\n";
    cu_opts o = { tu_dir, NULL, in, sizeof in - 1, 60000 };
    cu_result r = cu_run(EVSTORE_CLI_PATH, args, &o);
    ct_assert_status(r, 1);
    cr_assert_eq(r.out_len, 0);
    cr_assert(strstr(r.err, "cannot connect") && strstr(r.err, addr) &&
                  strstr(r.err, "evstored is running"),
              "%s: %s", cmds[i][0], r.err);
    cu_result_free(&r);
  }
  /* Not an address: a usage error. */
  cu_result r = ct_run("read", "x", "--connect", "nohost", NULL);
  ct_assert_status(r, 2);
  cu_result_free(&r);
  /* An HTTP port, or anything that is not evstored. */
  S = srv_start(NULL, NULL);
  r = ct_run("streams", "--connect", S->http, NULL);
  ct_assert_status(r, 1);
  cr_assert(strstr(r.err, "evstored") && strstr(r.err, S->http), "%s", r.err);
  cu_result_free(&r);
}

Test(cli_remote, choosing_the_store) {
  S = srv_start(NULL, NULL);
  /* --connect wins over $EVSTORE_DB, --db over $EVSTORE_CONNECT. */
  cu_result r = ct_run("append", "only-remote", "--type", "T", "--data", "{}",
                       "--connect", S->addr, NULL);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  r = ct_run("read", "only-remote", NULL); /* $EVSTORE_DB */
  ct_assert_status(r, 4);
  cu_result_free(&r);
  char env_connect[128];
  snprintf(env_connect, sizeof env_connect, "EVSTORE_CONNECT=%s", S->addr);
  const char *envc[] = { env_connect, NULL };
  r = ct_run_env(envc, "read", "only-remote", "--db", ct_db, NULL);
  ct_assert_status(r, 4);
  cu_result_free(&r);
  /* $EVSTORE_CONNECT alone, with --token from $EVSTORE_TOKEN ignored by a
   * server without tokens. */
  const char *envv[] = { env_connect, "EVSTORE_TOKEN=whatever", NULL };
  cu_opts o = { tu_dir, envv, NULL, 0, 60000 };
  r = cu_run(EVSTORE_CLI_PATH, ARGS("read", "only-remote"), &o);
  ct_assert_status(r, 0);
  cr_assert_eq(cu_count_lines(r.out), 1);
  cu_result_free(&r);
  r = ct_run("read", "x", "--db", ct_db, "--connect", S->addr, NULL);
  ct_assert_status(r, 2);
  cu_result_free(&r);
  r = ct_run("read", "x", "--token", "t", NULL);
  ct_assert_status(r, 2);
  cu_result_free(&r);
  r = ct_run("--help", NULL);
  ct_assert_status(r, 0);
  cr_assert_null(strstr(r.out, "not available"));
  cu_result_free(&r);
}

/* Changes every copy of `needle` in <dir>/data.mdb (LMDB keeps old copies
 * of pages): the record stays in place with a wrong checksum. */
static void corrupt(const char *dir, const char *needle) {
  char path[4400];
  snprintf(path, sizeof path, "%s/data.mdb", dir);
  FILE *f = fopen(path, "r+b");
  cr_assert_not_null(f, "%s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *d = malloc((size_t)n);
  cr_assert_eq(fread(d, 1, (size_t)n, f), (size_t)n);
  size_t len = strlen(needle), hits = 0;
  for (long i = 0; i + (long)len <= n; i++) {
    if (memcmp(d + i, needle, len) == 0) {
      d[i + len - 1] ^= 0x01;
      hits++;
    }
  }
  cr_assert_gt(hits, 0, "'%s' not found in %s", needle, path);
  fseek(f, 0, SEEK_SET);
  cr_assert_eq(fwrite(d, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  free(d);
}

Test(cli_remote, verify_reports_the_same_problems) {
  load(NULL);
  cr_assert_eq(srv_stop(S), 0);
  corrupt(local_db, "\"sku\":\"B-7");
  corrupt(S->data, "\"sku\":\"B-7");
  srv_restart(S);
  char *out = same_in(NULL, 0, 1, 0, ARGS("verify"));
  cr_assert(strstr(out, "{\"problem\":\"record at position 3 "), "%s", out);
  cr_assert(strstr(out, "\"errors\":1,\"ok\":false}"), "%s", out);
  free(out);
  same(0, ARGS("read", "order-1"));
}
