/*
 * Hostile and broken clients: malformed, truncated and oversized frames,
 * random bytes, unknown operations, requests before the handshake, clients
 * that vanish mid-request, and the configured limits (events per append,
 * event size, connections, idle timeout, requests in flight). The server
 * must answer with an error (or close) and keep serving everyone else.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "srvutil.h"

TestSuite(server_limits, .timeout = 120);

/* The server answers a ping on a fresh connection. */
static void assert_serving(srv *s) {
  cr_assert(srv_alive(s), "evstored died; log in %s", s->log);
  evs_client *c = srv_client(s, NULL);
  cr_assert_eq(evs_client_ping(c, NULL), 0);
  evs_client_close(c);
}

static void ping_on(int fd, uint64_t rid) {
  evs__proto_request q;
  evs__proto_request_init(&q);
  q.op = EVS__P_PING;
  q.rid = rid;
  raw_send_req(fd, &q);
  evs__proto_reply rep;
  uint8_t *body;
  cr_assert_eq(raw_read(fd, 10000, &rep, &body), 1, "no ping reply");
  cr_assert_eq(rep.rid, rid);
  cr_assert_eq(rep.code, 0);
  free(body);
}

/* Sends a frame with the given body. */
static void send_frame(int fd, const void *body, uint32_t len) {
  uint8_t hdr[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16),
                     (uint8_t)(len >> 8), (uint8_t)len };
  raw_send(fd, hdr, 4);
  raw_send(fd, body, len);
}

static void expect_reply(int fd, uint64_t rid, int code) {
  evs__proto_reply rep;
  uint8_t *body;
  cr_assert_eq(raw_read(fd, 10000, &rep, &body), 1, "no reply");
  cr_assert_eq(rep.code, code, "got %s: %.*s", evs__proto_err_name(rep.code),
               (int)rep.message.len, (const char *)rep.message.data);
  cr_assert_eq(rep.rid, rid);
  cr_assert_eq(rep.kind, EVS__K_REPLY);
  free(body);
}

Test(server_limits, malformed_bodies_get_errors_and_keep_the_connection) {
  srv *s = srv_start(NULL, NULL);
  int fd = raw_connect(s);
  raw_hello(fd, NULL, 0);
  /* not msgpack at all */
  send_frame(fd, "\xc1\xc1\xc1", 3);
  expect_reply(fd, 0, EVS_EPROTO);
  /* a map whose values are cut short */
  send_frame(fd, "\x82\xa3rid\x07\xa2op", 9);
  expect_reply(fd, 7, EVS_EPROTO);
  /* an unknown op */
  evs__buf b = EVS__BUF_INIT;
  evs__mp_w_map(&b, 2);
  evs__mp_w_cstr(&b, "rid");
  evs__mp_w_uint(&b, 8);
  evs__mp_w_cstr(&b, "op");
  evs__mp_w_cstr(&b, "self_destruct");
  send_frame(fd, b.data, (uint32_t)b.len);
  expect_reply(fd, 8, EVS_EPROTO);
  /* an append declaring 4 billion events in a few bytes */
  b.len = 0;
  evs__mp_w_map(&b, 4);
  evs__mp_w_cstr(&b, "rid");
  evs__mp_w_uint(&b, 9);
  evs__mp_w_cstr(&b, "op");
  evs__mp_w_cstr(&b, "append");
  evs__mp_w_cstr(&b, "stream");
  evs__mp_w_cstr(&b, "x-1");
  evs__mp_w_cstr(&b, "events");
  evs__buf_put(&b, "\xdd\xff\xff\xff\xff", 5);
  send_frame(fd, b.data, (uint32_t)b.len);
  expect_reply(fd, 9, EVS_EPROTO);
  /* an empty frame */
  send_frame(fd, "", 0);
  expect_reply(fd, 0, EVS_EPROTO);
  /* a second hello */
  evs__proto_request q;
  evs__proto_request_init(&q);
  q.op = EVS__P_HELLO;
  q.rid = 10;
  q.protocol = 1;
  raw_send_req(fd, &q);
  expect_reply(fd, 10, EVS_EPROTO);
  /* a stream name with a NUL byte */
  b.len = 0;
  evs__mp_w_map(&b, 3);
  evs__mp_w_cstr(&b, "rid");
  evs__mp_w_uint(&b, 11);
  evs__mp_w_cstr(&b, "op");
  evs__mp_w_cstr(&b, "stream_info");
  evs__mp_w_cstr(&b, "stream");
  evs__mp_w_str(&b, "a\0b", 3);
  send_frame(fd, b.data, (uint32_t)b.len);
  expect_reply(fd, 11, EVS_EBADNAME);
  /* still the same, working connection */
  ping_on(fd, 12);
  evs__buf_free(&b);
  close(fd);
  assert_serving(s);
  srv_free(s);
}

Test(server_limits, oversized_frames_are_skipped_with_an_error) {
  const char *args[] = { "--max-frame", "65536", "--max-event-size", "4096",
                         NULL };
  srv *s = srv_start(NULL, args);
  int fd = raw_connect(s);
  raw_hello(fd, NULL, 0);
  /* a 200 KB frame with "rid" first: answered with that rid */
  size_t n = 200000;
  uint8_t *big = calloc(1, n);
  evs__buf b = EVS__BUF_INIT;
  evs__mp_w_map(&b, 3);
  evs__mp_w_cstr(&b, "rid");
  evs__mp_w_uint(&b, 77);
  evs__mp_w_cstr(&b, "op");
  evs__mp_w_cstr(&b, "ping");
  evs__mp_w_cstr(&b, "pad");
  evs__mp_w_bin(&b, big, n - 32);
  send_frame(fd, b.data, (uint32_t)b.len);
  expect_reply(fd, 77, EVS_ETOOLARGE);
  /* the byte stream is still in sync */
  ping_on(fd, 78);
  evs__buf_free(&b);
  free(big);
  close(fd);

  /* before the handshake, an oversized frame closes the connection */
  fd = raw_connect(s);
  uint8_t hdr[4] = { 0x00, 0x10, 0x00, 0x00 };
  raw_send(fd, hdr, 4);
  uint8_t pad[256] = { 0x80 };
  raw_send(fd, pad, sizeof pad);
  evs__proto_reply rep;
  uint8_t *body;
  cr_assert_eq(raw_read(fd, 10000, &rep, &body), 1);
  cr_assert_eq(rep.code, EVS_ETOOLARGE);
  free(body);
  cr_assert(raw_wait_closed(fd, 5000));
  close(fd);
  assert_serving(s);
  srv_free(s);
}

Test(server_limits, append_limits) {
  const char *args[] = { "--max-events", "10", "--max-event-size", "4096",
                         NULL };
  srv *s = srv_start(NULL, args);
  evs_client *c = srv_client(s, NULL);
  evs_event_data ev[11];
  memset(ev, 0, sizeof ev);
  for (int i = 0; i < 11; i++)
    ev[i].type = "T";
  cr_assert_eq(evs_client_append(c, "lim-1", EVS_EXPECT_ANY, ev, 11, NULL),
               EVS_ETOOLARGE);
  memset(ev, 0, sizeof ev);
  for (int i = 0; i < 11; i++)
    ev[i].type = "T";
  cr_assert_eq(evs_client_append(c, "lim-1", EVS_EXPECT_ANY, ev, 10, NULL), 0);
  char *data = calloc(1, 5000);
  evs_event_data one = { .type = "Big", .data = data, .data_len = 4097 };
  cr_assert_eq(evs_client_append(c, "lim-1", EVS_EXPECT_ANY, &one, 1, NULL),
               EVS_ETOOLARGE);
  /* the message a local store gives for the same event */
  cr_assert(strstr(evs_client_last_error(),
                   "event 0 of 'lim-1' has 4097 bytes of data and metadata: "
                   "the limit is 4096"),
            "%s", evs_client_last_error());
  memset(&one.id, 0, sizeof one.id);
  one.data_len = 4000;
  one.metadata = data;
  one.metadata_len = 200;
  cr_assert_eq(evs_client_append(c, "lim-1", EVS_EXPECT_ANY, &one, 1, NULL),
               EVS_ETOOLARGE, "data and metadata count together");
  memset(&one.id, 0, sizeof one.id);
  one.metadata_len = 96;
  cr_assert_eq(evs_client_append(c, "lim-1", EVS_EXPECT_ANY, &one, 1, NULL), 0);
  /* bad names come back as the store's errors */
  evs_event_data t = { .type = "T" };
  cr_assert_eq(evs_client_append(c, "$reserved", EVS_EXPECT_ANY, &t, 1, NULL),
               EVS_EBADNAME);
  cr_assert_eq(evs_client_append(c, "", EVS_EXPECT_ANY, &t, 1, NULL),
               EVS_EBADNAME);
  free(data);
  evs_client_close(c);
  srv_free(s);
}

Test(server_limits, random_bytes_before_and_after_the_handshake) {
  srv *s = srv_start(NULL, NULL);
  uint64_t x = 0x243f6a8885a308d3ull;
  uint8_t junk[4096];
  for (int round = 0; round < 20; round++) {
    for (size_t i = 0; i < sizeof junk; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      junk[i] = (uint8_t)x;
    }
    int fd = raw_connect(s);
    if (round % 2)
      raw_hello(fd, NULL, 0);
    else
      junk[0] = junk[1] = 0; /* a plausible length before the hello */
    raw_send(fd, junk, (size_t)(1 + round * 200));
    /* an error reply, a close, or silence: never a crash */
    evs__proto_reply rep;
    uint8_t *body;
    int r = raw_read(fd, 300, &rep, &body);
    if (r == 1)
      free(body);
    close(fd);
  }
  assert_serving(s);
  srv_free(s);
}

Test(server_limits, requests_before_hello_and_bad_versions) {
  srv *s = srv_start(NULL, NULL);
  int fd = raw_connect(s);
  evs__proto_request q;
  evs__proto_request_init(&q);
  q.op = EVS__P_PING;
  q.rid = 3;
  raw_send_req(fd, &q);
  evs__proto_reply rep;
  uint8_t *body;
  cr_assert_eq(raw_read(fd, 10000, &rep, &body), 1);
  cr_assert_eq(rep.code, EVS_EPROTO);
  cr_assert_eq(rep.rid, 3);
  free(body);
  cr_assert(raw_wait_closed(fd, 5000), "closed after the error");
  close(fd);

  fd = raw_connect(s);
  evs__proto_request_init(&q);
  q.op = EVS__P_HELLO;
  q.rid = 4;
  q.protocol = 99;
  raw_send_req(fd, &q);
  cr_assert_eq(raw_read(fd, 10000, &rep, &body), 1);
  cr_assert_eq(rep.code, EVS_EPROTO);
  cr_assert_eq(rep.protocol, EVS_PROTO_VERSION, "the server's version");
  free(body);
  cr_assert(raw_wait_closed(fd, 5000));
  close(fd);
  assert_serving(s);
  srv_free(s);
}

Test(server_limits, clients_vanishing_mid_request) {
  srv *s = srv_start(NULL, NULL);
  evs_client *c = srv_client(s, NULL);
  cl_append_n(c, "van-1", EVS_EXPECT_ANY, 3000, NULL);
  for (int round = 0; round < 10; round++) {
    int fd = raw_connect(s);
    raw_hello(fd, NULL, 0);
    evs__proto_request q;
    evs__proto_request_init(&q);
    /* a read with a big reply, an append, a subscription, then gone */
    q.op = EVS__P_READ_STREAM;
    q.rid = 1;
    q.stream.data = "van-1";
    q.stream.len = 5;
    q.has_stream = 1;
    raw_send_req(fd, &q);
    evs__proto_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type.data = "T";
    ev.type.len = 1;
    evs__proto_part part = { { "van-2", 5 }, EVS_EXPECT_ANY, &ev, 1 };
    evs__proto_request_init(&q);
    q.op = EVS__P_APPEND;
    q.rid = 2;
    q.parts = &part;
    q.nparts = 1;
    raw_send_req(fd, &q);
    evs__proto_request_init(&q);
    q.op = EVS__P_SUBSCRIBE;
    q.rid = 3;
    raw_send_req(fd, &q);
    if (round % 2) {
      /* half a frame, then gone */
      raw_send(fd, "\x00\x00\x01\x00\x83", 5);
    }
    close(fd);
  }
  assert_serving(s);
  /* The appends of the vanished clients commit on the server's own time
   * (their group may still be in the writer's queue): wait for them. */
  evs_stream_info info;
  int rc = -1;
  for (uint64_t t0 = mono_ms(); mono_ms() - t0 < 10000; ms_sleep(10)) {
    rc = evs_client_stream_info(c, "van-2", &info);
    if (rc == 0 && info.version == 9)
      break;
    if (rc == 0)
      evs_client_stream_info_clear(&info);
  }
  cr_assert_eq(rc, 0, "%s", evs_client_err_name(rc));
  cr_assert_leq(info.version, 9);
  evs_client_stream_info_clear(&info);
  evs_client_close(c);
  srv_free(s);
}

Test(server_limits, max_connections) {
  const char *args[] = { "--max-connections", "3", NULL };
  srv *s = srv_start(NULL, args);
  evs_client *c[3];
  for (int i = 0; i < 3; i++)
    c[i] = srv_client(s, NULL);
  evs_client *extra = NULL;
  int rc = evs_client_connect(&extra, s->addr, NULL);
  cr_assert_eq(rc, EVS_EBUSY, "got %s", evs_client_err_name(rc));
  evs_client_close(c[0]);
  /* the slot frees up once the server sees the close */
  uint64_t deadline = mono_ms() + 5000;
  do {
    rc = evs_client_connect(&extra, s->addr, NULL);
    if (rc == 0)
      break;
    ms_sleep(20);
  } while (mono_ms() < deadline);
  cr_assert_eq(rc, 0);
  evs_client_close(extra);
  evs_client_close(c[1]);
  evs_client_close(c[2]);
  srv_free(s);
}

Test(server_limits, idle_connections_are_closed_with_a_goodbye) {
  const char *args[] = { "--idle-timeout", "1", NULL };
  srv *s = srv_start(NULL, args);
  int fd = raw_connect(s);
  raw_hello(fd, NULL, 0);
  evs__proto_reply rep;
  uint8_t *body;
  cr_assert_eq(raw_read(fd, 5000, &rep, &body), 1);
  cr_assert_eq(rep.kind, EVS__K_GOODBYE);
  cr_assert_eq(rep.code, EVS_ETIMEDOUT);
  free(body);
  cr_assert(raw_wait_closed(fd, 5000));
  close(fd);
  /* a subscriber is not idle */
  evs_client *c = srv_client(s, NULL);
  evs_client_sub *sub;
  evs_client_sub_options so = EVS_CLIENT_SUB_OPTIONS_INIT;
  cr_assert_eq(evs_client_subscribe(&sub, c, &so), 0);
  const evs_event *e;
  cr_assert_eq(evs_client_sub_next(sub, &e, 2500), 0);
  cr_assert_eq(evs_client_sub_reconnects(sub), 0);
  /* the client reconnects transparently after its idle close */
  cr_assert_eq(evs_client_ping(c, NULL), 0);
  evs_client_sub_close(sub);
  evs_client_close(c);
  srv_free(s);
}

Test(server_limits, pipelining_beyond_the_inflight_limit_is_throttled) {
  const char *args[] = { "--max-inflight", "2", NULL };
  srv *s = srv_start(NULL, args);
  evs_client *c = srv_client(s, NULL);
  cl_append_n(c, "inf-1", EVS_EXPECT_ANY, 10, NULL);
  int fd = raw_connect(s);
  raw_hello(fd, NULL, 0);
  enum {
    N = 100
  };
  evs__buf b = EVS__BUF_INIT;
  for (int i = 0; i < N; i++) {
    evs__proto_request q;
    evs__proto_request_init(&q);
    q.op = i % 2 ? EVS__P_READ_STREAM : EVS__P_STREAM_INFO;
    q.rid = (uint64_t)i + 1;
    q.stream.data = "inf-1";
    q.stream.len = 5;
    q.has_stream = 1;
    cr_assert_eq(evs__proto_encode_request(&b, &q), 0);
  }
  raw_send(fd, b.data, b.len);
  evs__buf_free(&b);
  int seen[N + 1] = { 0 };
  for (int i = 0; i < N; i++) {
    evs__proto_reply rep;
    uint8_t *body;
    cr_assert_eq(raw_read(fd, 10000, &rep, &body), 1, "reply %d", i);
    cr_assert_eq(rep.code, 0);
    cr_assert(rep.rid >= 1 && rep.rid <= N);
    seen[rep.rid]++;
    free(body);
  }
  for (int i = 1; i <= N; i++)
    cr_assert_eq(seen[i], 1);
  close(fd);
  evs_client_close(c);
  srv_free(s);
}

Test(server_limits, usage_errors_exit_2) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s --bogus >/dev/null 2>&1", EVSTORED_PATH);
  int st = system(cmd);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2);
  snprintf(cmd, sizeof cmd, "%s --help | grep -q EVSTORE_DATA", EVSTORED_PATH);
  st = system(cmd);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "--help documents env");
  /* without tokens, a non-loopback address is refused */
  char *dir = srv_tmpdir();
  snprintf(cmd, sizeof cmd,
           "%s --listen 0.0.0.0:0 --http off --data %s/data 2>&1 | "
           "grep -q 'loopback only'",
           EVSTORED_PATH, dir);
  st = system(cmd);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "refused, with a reason");
  snprintf(cmd, sizeof cmd,
           "%s --listen 0.0.0.0:0 --http off --data %s/data >/dev/null 2>&1",
           EVSTORED_PATH, dir);
  st = system(cmd);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_assert_eq(system(cmd), 0);
  free(dir);
}

/* Runs evstored with one argument; returns its exit status. */
static int evstored_status(const char *arg) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "'%s' %s >/dev/null 2>&1", EVSTORED_PATH, arg);
  int st = system(cmd);
  cr_assert(WIFEXITED(st), "%s", cmd);
  return WEXITSTATUS(st);
}

/* Long options are taken by their whole names only (getopt_long alone
 * would take any unambiguous prefix); -h is listed with --help. */
Test(server_limits, options_are_taken_by_their_whole_names) {
  cr_assert_eq(evstored_status("--version"), 0);
  cr_assert_eq(evstored_status("--help"), 0);
  cr_assert_eq(evstored_status("-h"), 0);
  cr_assert_eq(evstored_status("--vers"), 2);
  cr_assert_eq(evstored_status("--list=127.0.0.1:0"), 2);
  cr_assert_eq(evstored_status("--nosuch"), 2);
  cr_assert_eq(evstored_status("--listen"), 2);
}
