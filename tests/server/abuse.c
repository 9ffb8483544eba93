/*
 * Abusive clients, on loopback, bounded in count and time: connections
 * opened and dropped in a loop, half-open connections, a frame header
 * followed by silence, a flood of pipelined requests that are never read,
 * random bytes. After each, evstored still serves a well-behaved client,
 * its memory and descriptors stay bounded, and it shuts down cleanly on
 * SIGTERM (exit status 0; under the asan preset srv_free() fails the test
 * on any sanitizer report in the server's log, LeakSanitizer's included).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "srvutil.h"

TestSuite(server_abuse, .timeout = 180);

/* Open descriptors of the server process. */
static int fd_count(srv *s) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd", (int)s->pid);
  DIR *d = opendir(path);
  if (d == NULL)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

/* Waits up to timeout_ms for the server's descriptor count to drop to at
 * most `want`; returns the last count. */
static int fd_settle(srv *s, int want, int timeout_ms) {
  uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
  int n;
  while ((n = fd_count(s)) > want && mono_ms() < deadline)
    ms_sleep(20);
  return n;
}

/* A well-behaved client is served promptly: connect, append, read back. */
static void served(srv *s, const char *stream) {
  uint64_t t0 = mono_ms();
  evs_client *c = srv_client(s, NULL);
  evs_append_result r = cl_append_n(c, stream, EVS_EXPECT_ANY, 3, NULL);
  evs_event *ev = NULL;
  cr_assert_eq(evs_client_read_event(c, r.first_position, &ev), 0);
  cr_assert_eq(ev->data.len, strlen(stream) + 2);
  cr_assert_eq(memcmp(ev->data.data, stream, strlen(stream)), 0);
  evs_client_event_free(ev);
  cr_assert_eq(evs_client_ping(c, NULL), 0);
  evs_client_close(c);
  cr_expect_lt(mono_ms() - t0, 5000, "a well-behaved client waited %llu ms",
               (unsigned long long)(mono_ms() - t0));
}

static void set_rst_on_close(int fd) {
  struct linger l = { 1, 0 };
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

Test(server_abuse, a_thousand_connections_opened_and_dropped) {
  srv *s = srv_start(NULL, NULL);
  served(s, "warm-up");
  int fds0 = fd_count(s);
  long rss0 = srv_rss_anon_kb(s);
  for (int i = 0; i < 1000; i++) {
    int fd = raw_connect(s);
    switch (i % 4) {
    case 0: /* connect, close */
      break;
    case 1: /* handshake, close */
      raw_hello(fd, NULL, 0);
      break;
    case 2: /* connect, reset */
      set_rst_on_close(fd);
      break;
    case 3: { /* handshake, send a ping, reset before the reply */
      raw_hello(fd, NULL, 0);
      evs__proto_request q;
      evs__proto_request_init(&q);
      q.op = EVS__P_PING;
      q.rid = 2;
      raw_send_req(fd, &q);
      set_rst_on_close(fd);
      break;
    }
    }
    close(fd);
  }
  served(s, "after-churn");
  /* Nothing held per dropped connection. */
  int fds1 = fd_settle(s, fds0, 5000);
  cr_expect_leq(fds1, fds0, "evstored holds %d descriptors, %d before", fds1,
                fds0);
  long rss1 = srv_rss_anon_kb(s);
  cr_expect_lt(rss1 - rss0, 64 * 1024, "anonymous RSS %ld -> %ld KiB", rss0,
               rss1);
  srv_free(s);
}

Test(server_abuse, half_open_connections_do_not_block_others) {
  srv *s = srv_start(NULL, NULL);
  enum { SILENT = 100, MUTE = 50 };
  int silent[SILENT], mute[MUTE];
  /* Connected, never a byte. */
  for (int i = 0; i < SILENT; i++)
    silent[i] = raw_connect(s);
  /* Handshaken, then requests whose replies are never read. */
  for (int i = 0; i < MUTE; i++) {
    mute[i] = raw_connect(s);
    raw_hello(mute[i], NULL, 0);
    for (int k = 0; k < 20; k++) {
      evs__proto_request q;
      evs__proto_request_init(&q);
      q.op = EVS__P_PING;
      q.rid = (uint64_t)k + 10;
      raw_send_req(mute[i], &q);
    }
  }
  for (int k = 0; k < 5; k++) {
    char name[32];
    snprintf(name, sizeof name, "half-open-%d", k);
    served(s, name);
  }
  for (int i = 0; i < SILENT; i++)
    close(silent[i]);
  for (int i = 0; i < MUTE; i++)
    close(mute[i]);
  served(s, "after-half-open");
  srv_free(s);
}

/* Sends the 4-byte header of a `len`-byte frame and `part` bytes of it. */
static void send_partial_frame(int fd, uint32_t len, size_t part) {
  uint8_t buf[64] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16),
                      (uint8_t)(len >> 8), (uint8_t)len };
  memset(buf + 4, 0x81, sizeof buf - 4); /* msgpack: fixmap of one */
  raw_send(fd, buf, 4 + (part < 60 ? part : 60));
}

Test(server_abuse, a_stalled_frame_is_closed_by_the_idle_timeout) {
  const char *args[] = { "--idle-timeout", "1", NULL };
  srv *s = srv_start(NULL, args);
  /* Before the handshake: a header, then nothing. */
  int pre = raw_connect(s);
  send_partial_frame(pre, 100, 0);
  /* After the handshake: a header and part of the body, then nothing. */
  int post = raw_connect(s);
  raw_hello(post, NULL, 0);
  send_partial_frame(post, 1000, 10);
  /* Meanwhile others are served. */
  served(s, "beside-stall-1");
  ms_sleep(300);
  served(s, "beside-stall-2");
  uint64_t t0 = mono_ms();
  cr_expect(raw_wait_closed(pre, 10000),
            "a connection stalled inside its first frame stays open");
  cr_expect(raw_wait_closed(post, 10000),
            "a connection stalled inside a frame stays open");
  cr_expect_lt(mono_ms() - t0, 10000);
  close(pre);
  close(post);
  served(s, "after-stall");
  srv_free(s);
}

Test(server_abuse, pipelined_flood_keeps_memory_bounded) {
  srv *s = srv_start(NULL, NULL);
  evs_client *c = srv_client(s, NULL);
  cl_append_n(c, "flood", EVS_EXPECT_NO_STREAM, 50, NULL);
  evs_client_close(c);
  long rss0 = srv_rss_kb(s), anon0 = srv_rss_anon_kb(s);
  int fd = raw_connect(s);
  raw_hello(fd, NULL, 0);
  /* Reads of a 50-event stream (replies of several KiB each) sent as fast
   * as the server takes them, never reading a reply: the server must stop
   * reading the connection instead of buffering without bound. */
  evs__buf b = EVS__BUF_INIT;
  enum { BATCH = 1000 };
  for (int i = 0; i < BATCH; i++) {
    evs__proto_request q;
    evs__proto_request_init(&q);
    q.op = EVS__P_READ_STREAM;
    q.rid = (uint64_t)i + 1;
    q.stream.data = "flood";
    q.stream.len = 5;
    q.has_stream = 1;
    cr_assert_eq(evs__proto_encode_request(&b, &q), 0);
  }
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  size_t sent = 0, off = 0;
  uint64_t stop = mono_ms() + 4000, last_progress = mono_ms();
  while (mono_ms() < stop && mono_ms() - last_progress < 1500 &&
         sent < (size_t)256 << 20) {
    ssize_t w = send(fd, b.data + off, b.len - off, MSG_NOSIGNAL);
    if (w > 0) {
      sent += (size_t)w;
      off = (off + (size_t)w) % b.len;
      last_progress = mono_ms();
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd pf = { fd, POLLOUT, 0 };
      poll(&pf, 1, 100);
    } else {
      cr_assert_fail("send: %s", strerror(errno));
    }
  }
  evs__buf_free(&b);
  long rss1 = srv_rss_kb(s), anon1 = srv_rss_anon_kb(s);
  cr_log_info("flood: %zu bytes of requests accepted; evstored RSS %ld -> "
              "%ld KiB (anonymous %ld -> %ld)",
              sent, rss0, rss1, anon0, anon1);
  /* Generous: the output limits (8 MiB soft, 64 MiB hard) plus sanitizer
   * overhead. */
  cr_expect_lt(anon1 - anon0, 256 * 1024,
               "anonymous RSS grew by %ld KiB under a pipelined flood",
               anon1 - anon0);
  /* Others are served while the flooding connection is stuck. */
  served(s, "beside-flood");
  /* The flooding client still gets well-formed replies, in order of ids. */
  fcntl(fd, F_SETFL, fl);
  for (int i = 0; i < 50; i++) {
    evs__proto_reply rep;
    uint8_t *body;
    int r = raw_read(fd, 10000, &rep, &body);
    if (r != 1)
      break; /* the server may close a connection over its output limit */
    cr_expect_eq(rep.code, 0, "reply %d: %s", i, evs__proto_err_name(rep.code));
    free(body);
  }
  close(fd);
  served(s, "after-flood");
  ms_sleep(200);
  long anon2 = srv_rss_anon_kb(s);
  cr_log_info("flood: anonymous RSS after the close %ld KiB", anon2);
  srv_free(s);
}

Test(server_abuse, random_bytes_never_crash_the_server) {
  srv *s = srv_start(NULL, NULL);
  unsigned seed = 12345;
  uint8_t buf[4096];
  for (int i = 0; i < 300; i++) {
    int fd = raw_connect(s);
    if (i % 3 == 1)
      raw_hello(fd, NULL, 0);
    size_t n = 1 + (size_t)rand_r(&seed) % sizeof buf;
    for (size_t k = 0; k < n; k++)
      buf[k] = (uint8_t)rand_r(&seed);
    if (i % 3 == 2) {
      /* A plausible header (a small frame) before random bytes, so the
       * body reaches the msgpack decoder. */
      uint32_t len = (uint32_t)(n > 4 ? n - 4 : 0);
      buf[0] = (uint8_t)(len >> 24);
      buf[1] = (uint8_t)(len >> 16);
      buf[2] = (uint8_t)(len >> 8);
      buf[3] = (uint8_t)len;
    }
    /* The server may close the connection at any point: a failed send is
     * fine, so no raw_send (which asserts). */
    size_t off = 0;
    while (off < n) {
      ssize_t w = send(fd, buf + off, n - off, MSG_NOSIGNAL);
      if (w <= 0)
        break;
      off += (size_t)w;
    }
    if (i % 10 == 0)
      raw_wait_closed(fd, 200); /* let some be answered and closed */
    close(fd);
    cr_assert(srv_alive(s), "evstored died on random bytes (connection %d)",
              i);
  }
  served(s, "after-random");
  srv_free(s);
}

/* SIGTERM while every kind of abusive connection is open: exit status 0
 * and, under the asan preset, no LeakSanitizer report (srv_free checks
 * both). */
Test(server_abuse, shutdown_with_abusive_connections_open_is_clean) {
  srv *s = srv_start(NULL, NULL);
  int fds[40];
  int n = 0;
  for (int i = 0; i < 10; i++)
    fds[n++] = raw_connect(s); /* silent */
  for (int i = 0; i < 10; i++) {
    fds[n] = raw_connect(s);
    raw_hello(fds[n], NULL, 0);
    send_partial_frame(fds[n], 500, 20); /* stalled mid-frame */
    n++;
  }
  for (int i = 0; i < 10; i++) {
    fds[n] = raw_connect(s);
    raw_hello(fds[n], NULL, 0);
    for (int k = 0; k < 200; k++) { /* replies never read */
      evs__proto_request q;
      evs__proto_request_init(&q);
      q.op = EVS__P_PING;
      q.rid = (uint64_t)k + 2;
      raw_send_req(fds[n], &q);
    }
    n++;
  }
  evs_client *c = srv_client(s, NULL);
  evs_client_sub *sub;
  evs_client_sub_options so = EVS_CLIENT_SUB_OPTIONS_INIT;
  cr_assert_eq(evs_client_subscribe(&sub, c, &so), 0);
  served(s, "before-shutdown");
  int st = srv_stop(s);
  cr_expect_eq(st, 0, "evstored exit status %d on SIGTERM with abusive "
                      "connections open",
               st);
  evs_client_sub_close(sub);
  evs_client_close(c);
  for (int i = 0; i < n; i++)
    close(fds[i]);
  srv_free(s); /* checks the log for sanitizer reports */
}
