/*
 * Token authentication: connections without a valid token are refused,
 * and each token may read and/or write only the stream prefixes it was
 * granted.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "srvutil.h"

static const char tokens[] = "# evstored tokens\n"
                             "admin-token    rw:*\n"
                             "reader-token   read:*   # may read everything\n"
                             "orders-token   rw:order- read:cust\n"
                             "\n";

static srv *S;

static void setup(void) {
  char *dir = srv_tmpdir();
  char path[600];
  snprintf(path, sizeof path, "%s/tokens", dir);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(tokens, f);
  fclose(f);
  const char *args[] = { "--tokens", path, NULL };
  S = srv_start(NULL, args);
  /* the tokens file lives beside the server's own directory */
  char cmd[700];
  snprintf(cmd, sizeof cmd, "mv %s/tokens %s/ && rmdir %s", dir, S->dir, dir);
  cr_assert_eq(system(cmd), 0);
  free(dir);
}

static void teardown(void) {
  srv_free(S);
}

TestSuite(server_auth, .init = setup, .fini = teardown, .timeout = 60);

static evs_client *connect_with(const char *token, int *rc) {
  evs_client_options o = EVS_CLIENT_OPTIONS_INIT;
  o.token = token;
  evs_client *c = NULL;
  *rc = evs_client_connect(&c, S->addr, &o);
  return c;
}

Test(server_auth, a_token_is_required) {
  int rc;
  evs_client *c = connect_with(NULL, &rc);
  cr_assert_eq(rc, EVS_EAUTH, "got %s", evs_client_err_name(rc));
  cr_assert_null(c);
  c = connect_with("wrong-token", &rc);
  cr_assert_eq(rc, EVS_EAUTH);
  c = connect_with("admin-tokenX", &rc);
  cr_assert_eq(rc, EVS_EAUTH);
  /* raw: the hello is refused and the connection closed */
  int fd = raw_connect(S);
  raw_hello(fd, "nope", EVS_EAUTH);
  cr_assert(raw_wait_closed(fd, 5000));
  close(fd);
  c = connect_with("admin-token", &rc);
  cr_assert_eq(rc, 0);
  cr_assert_eq(evs_client_ping(c, NULL), 0);
  evs_client_close(c);
}

Test(server_auth, admin_may_do_everything) {
  int rc;
  evs_client *c = connect_with("admin-token", &rc);
  cr_assert_eq(rc, 0);
  cl_append_n(c, "anything-1", EVS_EXPECT_ANY, 2, NULL);
  evs_client_iter *it;
  cr_assert_eq(evs_client_read_all(&it, c, NULL), 0);
  evs_client_iter_free(it);
  cr_assert_eq(evs_client_delete(c, "anything-1", EVS_EXPECT_ANY, 0), 0);
  evs_client_close(c);
}

Test(server_auth, a_reader_cannot_write) {
  int rc;
  evs_client *admin = connect_with("admin-token", &rc);
  cl_append_n(admin, "order-1", EVS_EXPECT_ANY, 2, NULL);
  evs_client *c = connect_with("reader-token", &rc);
  cr_assert_eq(rc, 0);
  evs_event_data ev = { .type = "T" };
  cr_assert_eq(evs_client_append(c, "order-1", EVS_EXPECT_ANY, &ev, 1, NULL),
               EVS_EAUTH);
  cr_assert(strstr(evs_client_last_error(), "may not write"), "%s",
            evs_client_last_error());
  cr_assert_eq(evs_client_delete(c, "order-1", EVS_EXPECT_ANY, 1), EVS_EAUTH);
  evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
  cr_assert_eq(evs_client_set_metadata(c, "order-1", &md), EVS_EAUTH);
  /* the connection stays usable after a denial */
  evs_client_iter *it;
  cr_assert_eq(evs_client_read_stream(&it, c, "order-1", NULL), 0);
  const evs_event *e;
  cr_assert_eq(evs_client_iter_next(it, &e), 1);
  evs_client_iter_free(it);
  evs_client_sub *s;
  evs_client_sub_options so = EVS_CLIENT_SUB_OPTIONS_INIT;
  cr_assert_eq(evs_client_subscribe(&s, c, &so), 0);
  cr_assert_eq(evs_client_sub_next(s, &e, 10000), 1);
  evs_client_sub_close(s);
  evs_client_close(c);
  evs_client_close(admin);
}

Test(server_auth, prefix_grants) {
  int rc;
  evs_client *admin = connect_with("admin-token", &rc);
  cl_append_n(admin, "cust-1", EVS_EXPECT_ANY, 1, NULL);
  cl_append_n(admin, "invoice-1", EVS_EXPECT_ANY, 1, NULL);
  evs_client *c = connect_with("orders-token", &rc);
  cr_assert_eq(rc, 0);
  /* write and read inside order- */
  cl_append_n(c, "order-9", EVS_EXPECT_ANY, 2, NULL);
  evs_client_iter *it;
  cr_assert_eq(evs_client_read_stream(&it, c, "order-9", NULL), 0);
  evs_client_iter_free(it);
  /* read-only on cust */
  cr_assert_eq(evs_client_read_stream(&it, c, "cust-1", NULL), 0);
  evs_client_iter_free(it);
  evs_event_data ev = { .type = "T" };
  cr_assert_eq(evs_client_append(c, "cust-1", EVS_EXPECT_ANY, &ev, 1, NULL),
               EVS_EAUTH);
  /* nothing on invoice- */
  cr_assert_eq(evs_client_read_stream(&it, c, "invoice-1", NULL), EVS_EAUTH);
  evs_stream_info info;
  cr_assert_eq(evs_client_stream_info(c, "invoice-1", &info), EVS_EAUTH);
  /* a multi-stream append with one forbidden part is refused whole */
  evs_event_data a = { .type = "A" }, b = { .type = "B" };
  evs_append_part parts[2] = { { "order-9", EVS_EXPECT_ANY, &a, 1, { 0 } },
                               { "invoice-1", EVS_EXPECT_ANY, &b, 1, { 0 } } };
  cr_assert_eq(evs_client_append_multi(c, parts, 2, NULL), EVS_EAUTH);
  cr_assert_eq(evs_client_stream_info(c, "order-9", &info), 0);
  cr_assert_eq(info.version, 1);
  evs_client_stream_info_clear(&info);
  /* $all: only confined reads */
  cr_assert_eq(evs_client_read_all(&it, c, NULL), EVS_EAUTH);
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  o.stream_prefix = "order-";
  cr_assert_eq(evs_client_read_all(&it, c, &o), 0);
  const evs_event *e;
  int n = 0;
  while (evs_client_iter_next(it, &e) == 1)
    n++;
  cr_assert_eq(n, 2);
  evs_client_iter_free(it);
  o = (evs_read_all_options)EVS_READ_ALL_OPTIONS_INIT;
  o.category = "cust";
  cr_assert_eq(evs_client_read_all(&it, c, &o), 0);
  evs_client_iter_free(it);
  o.category = "invoice";
  cr_assert_eq(evs_client_read_all(&it, c, &o), EVS_EAUTH);
  /* subscriptions follow the same rules */
  evs_client_sub *s;
  evs_client_sub_options so = EVS_CLIENT_SUB_OPTIONS_INIT;
  cr_assert_eq(evs_client_subscribe(&s, c, &so), EVS_EAUTH);
  so.stream = "invoice-1";
  cr_assert_eq(evs_client_subscribe(&s, c, &so), EVS_EAUTH);
  so.stream = NULL;
  so.category = "order";
  cr_assert_eq(evs_client_subscribe(&s, c, &so), EVS_EAUTH,
               "grant order- does not cover the stream named 'order'");
  so.category = NULL;
  so.stream_prefix = "order-";
  cr_assert_eq(evs_client_subscribe(&s, c, &so), 0);
  cr_assert_eq(evs_client_sub_next(s, &e, 10000), 1);
  evs_client_sub_close(s);
  evs_client_close(c);
  evs_client_close(admin);
}

Test(server_auth, bad_tokens_files_stop_the_server) {
  char *dir = srv_tmpdir();
  char cmd[1200];
  snprintf(cmd, sizeof cmd,
           "printf 'tok read\\n' > %s/bad && %s --tokens %s/bad --data "
           "%s/data --listen 127.0.0.1:0 --http off 2>&1 | grep -q 'bad grant'",
           dir, EVSTORED_PATH, dir, dir);
  int st = system(cmd);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a clear error");
  snprintf(cmd, sizeof cmd,
           "%s --tokens %s/missing --data %s/data --listen 127.0.0.1:0 "
           "--http off >/dev/null 2>&1",
           EVSTORED_PATH, dir, dir);
  st = system(cmd);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_assert_eq(system(cmd), 0);
  free(dir);
}
