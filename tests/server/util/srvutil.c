/*
 * Helpers for the evstored integration tests (see srvutil.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "srvutil.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef EVSTORED_PATH
#error "EVSTORED_PATH must be defined by the build"
#endif

void ms_sleep(unsigned ms) {
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

char *srv_tmpdir(void) {
  const char *base = getenv("TMPDIR");
  if (base == NULL || base[0] == '\0')
    base = "/tmp";
  char *p = malloc(strlen(base) + 32);
  cr_assert_not_null(p);
  sprintf(p, "%s/evstored-test-XXXXXX", base);
  cr_assert_not_null(mkdtemp(p), "mkdtemp: %s", strerror(errno));
  return p;
}

static int rm_one(const char *path, const struct stat *sb, int type,
                  struct FTW *ftw) {
  (void)sb;
  (void)ftw;
  return type == FTW_DP ? rmdir(path) : unlink(path);
}

static void launch(srv *s) {
  char ports[600];
  snprintf(ports, sizeof ports, "%s/ports", s->dir);
  unlink(ports);
  const char *argv[64];
  int n = 0;
  /* EVSTORED_BIN runs these tests against another build of the server
   * (a TSan build, say); the default is the one built beside them. */
  const char *bin = getenv("EVSTORED_BIN");
  argv[n++] = bin && bin[0] ? bin : EVSTORED_PATH;
  argv[n++] = "--data";
  argv[n++] = s->data;
  argv[n++] = "--listen";
  argv[n++] = s->same_port ? s->addr : "127.0.0.1:0";
  argv[n++] = "--http";
  argv[n++] = "127.0.0.1:0";
  argv[n++] = "--port-file";
  argv[n++] = ports;
  for (int i = 0; i < s->nargs; i++)
    argv[n++] = s->args[i];
  argv[n] = NULL;
  pid_t parent = getpid();
  pid_t pid = fork();
  cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
  if (pid == 0) {
    /* The server must not outlive the test. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 2);
      dup2(fd, 1);
      close(fd);
    }
    /* The tests' own environment must not configure the server. */
    unsetenv("EVSTORE_LISTEN");
    unsetenv("EVSTORE_HTTP");
    unsetenv("EVSTORE_TOKENS");
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  s->pid = pid;
  uint64_t deadline = mono_ms() + 30000;
  for (;;) {
    FILE *f = fopen(ports, "r");
    if (f) {
      char line[256] = "";
      char *got = fgets(line, sizeof line, f);
      fclose(f);
      if (got && sscanf(line, "listen=%63s http=%63s", s->addr, s->http) == 2)
        return;
    }
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      s->pid = 0;
      cr_assert_fail("evstored exited during start (status %d); log %s", st,
                     s->log);
    }
    cr_assert(mono_ms() < deadline, "evstored did not start in 30 s");
    ms_sleep(10);
  }
}

srv *srv_start(const char *durability, const char *const *extra) {
  srv *s = calloc(1, sizeof *s);
  cr_assert_not_null(s);
  s->dir = srv_tmpdir();
  snprintf(s->data, sizeof s->data, "%s/data", s->dir);
  snprintf(s->log, sizeof s->log, "%s/log", s->dir);
  s->args[s->nargs++] = strdup("--durability");
  s->args[s->nargs++] = strdup(durability ? durability : "nosync");
  for (int i = 0; extra && extra[i]; i++) {
    cr_assert_lt(s->nargs, 46);
    s->args[s->nargs++] = strdup(extra[i]);
  }
  launch(s);
  return s;
}

void srv_restart(srv *s) {
  cr_assert_eq(s->pid, 0, "restart of a running server");
  launch(s);
}

void srv_restart_same_port(srv *s) {
  cr_assert_eq(s->pid, 0, "restart of a running server");
  s->same_port = 1;
  launch(s);
  s->same_port = 0;
}

static int reap(srv *s, int timeout_ms) {
  uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
  for (;;) {
    int st;
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == s->pid) {
      s->pid = 0;
      return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }
    if (mono_ms() > deadline)
      return -2;
    ms_sleep(5);
  }
}

int srv_stop(srv *s) {
  if (s->pid <= 0)
    return -1;
  kill(s->pid, SIGTERM);
  int st = reap(s, 30000);
  if (st == -2) {
    kill(s->pid, SIGKILL);
    reap(s, 5000);
    cr_assert_fail("evstored did not stop within 30 s of SIGTERM");
  }
  return st;
}

void srv_kill9(srv *s) {
  if (s->pid <= 0)
    return;
  kill(s->pid, SIGKILL);
  reap(s, 10000);
}

int srv_alive(srv *s) {
  if (s->pid <= 0)
    return 0;
  int st;
  if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
    s->pid = 0;
    return 0;
  }
  return 1;
}

/*
 * Copies the server's sanitizer reports (ASan, LSan, UBSan, TSan) from its
 * log to the test's stderr, where the sanitizer presets' ctest patterns
 * see them, and fails the test.
 */
static void check_log(srv *s) {
  FILE *f = fopen(s->log, "r");
  if (f == NULL)
    return;
  char line[1024];
  int reports = 0, copied = 0;
  while (fgets(line, sizeof line, f)) {
    if (strstr(line, "Sanitizer") || strstr(line, "runtime error: "))
      reports++;
    if (reports && copied < 200) {
      fprintf(stderr, "evstored: %s", line);
      copied++;
    }
  }
  fclose(f);
  cr_expect_eq(reports, 0, "evstored reported sanitizer errors (log %s)",
               s->log);
}

void srv_free(srv *s) {
  if (s == NULL)
    return;
  if (s->pid > 0) {
    /* A graceful stop, so that a sanitizer build also checks for leaks. */
    kill(s->pid, SIGTERM);
    int st = reap(s, 20000);
    if (st == -2) {
      kill(s->pid, SIGKILL);
      reap(s, 5000);
    }
    cr_expect_eq(st, 0, "evstored exit status %d at the end of the test", st);
  }
  check_log(s);
  /* Keep the log of a failed run visible in the test output. */
  if (getenv("EVS_KEEP_TEST_DIRS") == NULL)
    nftw(s->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  for (int i = 0; i < s->nargs; i++)
    free(s->args[i]);
  free(s->dir);
  free(s);
}

long srv_rss_anon_kb(srv *s) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/status", (int)s->pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  char line[256];
  long kb = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "RssAnon: %ld kB", &kb) == 1)
      break;
  fclose(f);
  return kb;
}

long srv_rss_kb(srv *s) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/status", (int)s->pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  char line[256];
  long kb = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
      break;
  fclose(f);
  return kb;
}

const char *srv_write_file(srv *s, const char *name, const char *text) {
  static char path[600];
  snprintf(path, sizeof path, "%s/%s", s->dir, name);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

evs_client *srv_client(srv *s, const char *token) {
  evs_client_options o = EVS_CLIENT_OPTIONS_INIT;
  o.token = token;
  o.client_name = "test";
  o.timeout_ms = 60000;
  evs_client *c = NULL;
  int rc = evs_client_connect(&c, s->addr, &o);
  cr_assert_eq(rc, 0, "connect %s: %s: %s", s->addr, evs_client_err_name(rc),
               evs_client_last_error());
  return c;
}

int raw_connect(srv *s) {
  char host[64];
  snprintf(host, sizeof host, "%s", s->addr);
  char *colon = strrchr(host, ':');
  cr_assert_not_null(colon);
  *colon = '\0';
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)atoi(colon + 1));
  cr_assert_eq(inet_pton(AF_INET, host, &a.sin_addr), 1);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert_geq(fd, 0);
  cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s",
               strerror(errno));
  return fd;
}

void raw_send(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n) {
    ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    cr_assert_gt(w, 0, "send: %s", strerror(errno));
    b += w;
    n -= (size_t)w;
  }
}

void raw_send_req(int fd, const evs__proto_request *q) {
  evs__buf b = EVS__BUF_INIT;
  cr_assert_eq(evs__proto_encode_request(&b, q), 0);
  raw_send(fd, b.data, b.len);
  evs__buf_free(&b);
}

static int read_exact(int fd, uint8_t *p, size_t n, uint64_t deadline) {
  while (n) {
    int left = (int)(deadline > mono_ms() ? deadline - mono_ms() : 0);
    struct pollfd pf = { fd, POLLIN, 0 };
    int r = poll(&pf, 1, left);
    if (r == 0)
      return 0;
    if (r < 0 && errno == EINTR)
      continue;
    ssize_t got = recv(fd, p, n, 0);
    if (got <= 0) {
      if (got < 0 && errno == EINTR)
        continue;
      return -1;
    }
    p += got;
    n -= (size_t)got;
  }
  return 1;
}

int raw_read(int fd, int timeout_ms, evs__proto_reply *rep, uint8_t **body) {
  uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
  uint8_t hdr[4];
  *body = NULL;
  int r = read_exact(fd, hdr, 4, deadline);
  if (r <= 0)
    return r;
  uint32_t n;
  evs__proto_frame_header(hdr, 4, &n);
  cr_assert_leq(n, 256u << 20, "frame of %u bytes", n);
  uint8_t *p = malloc(n ? n : 1);
  cr_assert_not_null(p);
  r = read_exact(fd, p, n, deadline + 10000);
  if (r <= 0) {
    free(p);
    return r < 0 ? -1 : 0;
  }
  char err[128];
  int rc = evs__proto_decode_reply(rep, p, n, err, sizeof err);
  cr_assert_eq(rc, 0, "undecodable server frame: %s", err);
  *body = p;
  return 1;
}

void raw_hello(int fd, const char *token, int expect_code) {
  evs__proto_request q;
  evs__proto_request_init(&q);
  q.op = EVS__P_HELLO;
  q.rid = 1;
  q.protocol = EVS_PROTO_VERSION;
  if (token) {
    q.token.data = token;
    q.token.len = strlen(token);
    q.has_token = 1;
  }
  raw_send_req(fd, &q);
  evs__proto_reply rep;
  uint8_t *body;
  cr_assert_eq(raw_read(fd, 10000, &rep, &body), 1, "no hello reply");
  cr_assert_eq(rep.rid, 1);
  cr_assert_eq(rep.code, expect_code, "hello: %s %.*s",
               evs__proto_err_name(rep.code), (int)rep.message.len,
               (const char *)rep.message.data);
  free(body);
}

int raw_wait_closed(int fd, int timeout_ms) {
  uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
  uint8_t buf[4096];
  for (;;) {
    int left = (int)(deadline > mono_ms() ? deadline - mono_ms() : 0);
    struct pollfd pf = { fd, POLLIN, 0 };
    int r = poll(&pf, 1, left);
    if (r == 0)
      return 0;
    if (r < 0 && errno == EINTR)
      continue;
    ssize_t got = recv(fd, buf, sizeof buf, 0);
    if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN))
      return 1;
  }
}

int http_get(srv *s, const char *path, char **body) {
  char host[64];
  snprintf(host, sizeof host, "%s", s->http);
  char *colon = strrchr(host, ':');
  cr_assert_not_null(colon);
  *colon = '\0';
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)atoi(colon + 1));
  inet_pton(AF_INET, host, &a.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  char req[512];
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                   path, s->http);
  raw_send(fd, req, (size_t)n);
  size_t cap = 65536, len = 0;
  char *buf = malloc(cap);
  cr_assert_not_null(buf);
  for (;;) {
    if (len + 4096 > cap) {
      cap *= 2;
      buf = realloc(buf, cap);
      cr_assert_not_null(buf);
    }
    ssize_t got = recv(fd, buf + len, cap - len - 1, 0);
    if (got <= 0)
      break;
    len += (size_t)got;
  }
  close(fd);
  buf[len] = '\0';
  int status = 0;
  sscanf(buf, "HTTP/1.%*d %d", &status);
  char *sep = strstr(buf, "\r\n\r\n");
  if (body)
    *body = strdup(sep ? sep + 4 : "");
  free(buf);
  return status;
}

evs_append_result cl_append_n(evs_client *c, const char *stream,
                              int64_t expected, size_t n, const char *type) {
  evs_event_data *ev = calloc(n, sizeof *ev);
  char(*data)[300] = calloc(n, sizeof *data);
  cr_assert(ev && data);
  for (size_t i = 0; i < n; i++) {
    int len = snprintf(data[i], sizeof data[i], "%s#%zu", stream, i);
    ev[i].type = type ? type : "TestEvent";
    ev[i].data = data[i];
    ev[i].data_len = (size_t)len;
  }
  evs_append_result r;
  int rc = evs_client_append(c, stream, expected, ev, n, &r);
  cr_assert_eq(rc, 0, "append to %s: %s: %s", stream, evs_client_err_name(rc),
               evs_client_last_error());
  free(ev);
  free(data);
  return r;
}
