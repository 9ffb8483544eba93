/*
 * evstore-cli subscribe: catch-up, following new events, filters, --limit
 * and signals.
 */
#include <signal.h>

#include "clitest.h"

TestSuite(cli_subscribe, .init = ct_setup, .fini = ct_teardown);

static cu_proc start(const char *const *args) {
  const char *envv[] = {ct_env_db, "EVSTORE_DURABILITY=nosync", NULL};
  cu_opts o = {tu_dir, envv, NULL, 0, 0};
  return cu_start(EVSTORE_CLI_PATH, args, &o);
}

/* Waits for the child, asserts exit 0 and returns its lines (+ `early`,
 * what cu_read_until() already took from its stdout). */
static json_t *finish(cu_proc *p, char *early) {
  cu_result r = cu_finish(p, 60000);
  cr_assert_not(r.timed_out, "subscribe did not stop; stdout so far:\n%s%s",
                early ? early : "", r.out);
  ct_assert_status(r, 0);
  size_t n = (early ? strlen(early) : 0) + r.out_len + 1;
  char *all = malloc(n);
  snprintf(all, n, "%s%s", early ? early : "", r.out);
  json_t *lines = ct_lines(all);
  free(all);
  free(early);
  cu_result_free(&r);
  return lines;
}

static char *positions(const json_t *evs) {
  static char buf[1024];
  size_t n = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < json_array_size(evs); i++)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%lld", i ? "," : "",
                          ct_int(json_array_get(evs, i), "position"));
  return buf;
}

Test(cli_subscribe, catch_up_then_follow) {
  json_decref(ct_append("s-1", "T", "1"));
  json_decref(ct_append("s-2", "T", "2"));
  const char *args[] = {"subscribe", "--all", "--limit", "4", NULL};
  cu_proc p = start(args);
  char *early = NULL;
  cr_assert(cu_read_until(&p, "\"position\":2", &early, 30000),
            "no catch-up: %s", early);
  json_decref(ct_append("s-1", "T", "3"));
  json_decref(ct_append("s-3", "T", "4"));
  json_t *evs = finish(&p, early);
  cr_assert_str_eq(positions(evs), "1,2,3,4");
  json_decref(evs);
}

Test(cli_subscribe, limit_on_existing_events) {
  for (int i = 0; i < 5; i++)
    json_decref(ct_append("s-1", "T", "1"));
  cu_result r = ct_run("subscribe", "--all", "--limit", "3", NULL);
  ct_assert_status(r, 0);
  json_t *evs = ct_lines(r.out);
  cr_assert_str_eq(positions(evs), "1,2,3");
  json_decref(evs);
  cu_result_free(&r);
  r = ct_run("subscribe", "--all", "--from", "3", "--limit", "2", NULL);
  ct_assert_status(r, 0);
  evs = ct_lines(r.out);
  cr_assert_str_eq(positions(evs), "3,4");
  json_decref(evs);
  cu_result_free(&r);
  r = ct_run("subscribe", "--all", "--from", "start", "--limit", "1", NULL);
  ct_assert_status(r, 0);
  evs = ct_lines(r.out);
  cr_assert_str_eq(positions(evs), "1");
  json_decref(evs);
  cu_result_free(&r);
}

Test(cli_subscribe, from_end_sees_only_new_events) {
  json_decref(ct_append("s-1", "T", "1"));
  json_decref(ct_append("s-1", "T", "2"));
  const char *args[] = {"subscribe", "--all", "--from", "end", "--limit", "1",
                        NULL};
  cu_proc p = start(args);
  tu_sleep_ms(1500); /* let it read the head */
  json_decref(ct_append("s-2", "T", "3"));
  json_t *evs = finish(&p, NULL);
  cr_assert_str_eq(positions(evs), "3");
  json_decref(evs);
}

Test(cli_subscribe, stream_that_does_not_exist_yet) {
  const char *args[] = {"subscribe", "--stream", "new-1", "--limit", "2",
                        NULL};
  json_decref(ct_append("other-1", "T", "0"));
  cu_proc p = start(args);
  tu_sleep_ms(300);
  json_decref(ct_append("other-1", "T", "1"));
  json_decref(ct_append("new-1", "T", "2"));
  json_decref(ct_append("new-10", "T", "3"));
  json_decref(ct_append("new-1", "T", "4"));
  json_t *evs = finish(&p, NULL);
  cr_assert_eq(json_array_size(evs), 2);
  for (size_t i = 0; i < 2; i++) {
    cr_assert_str_eq(ct_str(json_array_get(evs, i), "stream"), "new-1");
    cr_assert_eq(ct_int(json_array_get(evs, i), "version"), (long long)i);
  }
  json_decref(evs);
}

Test(cli_subscribe, category_and_type_filters) {
  json_decref(ct_append("order-1", "Placed", "1"));
  json_decref(ct_append("user-1", "Paid", "2"));
  json_decref(ct_append("order-2", "Paid", "3"));
  json_decref(ct_append("order-1", "Paid", "4"));
  cu_result r = ct_run("subscribe", "--category", "order", "--type", "Paid",
                       "--limit", "2", NULL);
  ct_assert_status(r, 0);
  json_t *evs = ct_lines(r.out);
  cr_assert_str_eq(positions(evs), "3,4");
  json_decref(evs);
  cu_result_free(&r);
  r = ct_run("subscribe", "--stream", "order-1", "--type", "Paid", "--limit",
             "1", NULL);
  ct_assert_status(r, 0);
  evs = ct_lines(r.out);
  cr_assert_str_eq(positions(evs), "4");
  json_decref(evs);
  cu_result_free(&r);
}

static void stops_on(int sig) {
  json_decref(ct_append("s-1", "T", "1"));
  const char *args[] = {"subscribe", "--all", NULL};
  cu_proc p = start(args);
  char *early = NULL;
  cr_assert(cu_read_until(&p, "\"position\":1", &early, 30000));
  kill(p.pid, sig);
  json_t *evs = finish(&p, early);
  cr_assert_str_eq(positions(evs), "1");
  json_decref(evs);
}

Test(cli_subscribe, exits_0_on_sigterm) { stops_on(SIGTERM); }

Test(cli_subscribe, exits_0_on_sigint) { stops_on(SIGINT); }

Test(cli_subscribe, errors) {
  json_decref(ct_append("s-1", "T", "1"));
  const char *bad[][8] = {
      {"subscribe", NULL},
      {"subscribe", "--all", "--stream", "s-1", NULL},
      {"subscribe", "--stream", "s-1", "--category", "s", NULL},
      {"subscribe", "--all", "--from", "middle", NULL},
      {"subscribe", "--all", "--limit", "-1", NULL},
      {"subscribe", "--all", "extra", NULL},
      {"subscribe", "--category", "", NULL},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *envv[] = {ct_env_db, NULL};
    cu_opts o = {tu_dir, envv, NULL, 0, 10000};
    cu_result r = cu_run(EVSTORE_CLI_PATH, bad[i], &o);
    cr_assert_eq(r.status, 2, "case %zu: %d %s", i, r.status, r.err);
    cu_result_free(&r);
  }
  json_decref(ct_obj(ct_run("delete", "s-1", "--hard", NULL)));
  cu_result r = ct_run("subscribe", "--stream", "s-1", NULL);
  ct_assert_status(r, 4);
  cu_result_free(&r);
}
