/*
 * The server mode of evs_crash: evstored is what gets killed.
 *
 * Child side (the load generator): the same workload threads as the
 * library mode, each with a connection of its own to evstored (the C
 * client, no automatic reconnect). When a request fails because the
 * connection is gone (EVS_ECONN, EVS_ETIMEDOUT), its outcome is unknown:
 * the thread writes nothing to its ack ledger (the append stays "in
 * flight"), counts itself, and waits to be killed. Once every thread has
 * seen its connection fail, the child writes 'd' to the ready pipe, so the
 * parent can tell that no request hung after the server died.
 *
 * Parent side: starts evstored on the store directory (127.0.0.1, port 0,
 * --port-file), kills it with SIGKILL, restarts it on the same directory
 * for a probe append through the client (read back, then checked again
 * by the library checker) and the client's verify operation, stops it
 * with SIGTERM (exit status 0 and, in a sanitizer build, a clean log), and
 * copies sanitizer reports from its log to stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crash.h"
#include "evstore/client.h"

/* ---- child: the client backend ------------------------------------------ */

typedef struct cr_srv_ctx {
  const char *addr;
  unsigned threads;
  int ready_fd;
} cr_srv_ctx;

static _Thread_local evs_client *cr_tl_client;
static atomic_uint cr_conns_lost;
static pthread_mutex_t cr_pipe_mu = PTHREAD_MUTEX_INITIALIZER;

static int cr_conn_error(int rc) {
  return rc == EVS_ECONN || rc == EVS_ETIMEDOUT;
}

/* The server is gone: the request failed (it did not hang). Counts this
 * thread and waits for the parent's SIGKILL. */
static _Noreturn void cr_srv_gone(cr_srv_ctx *x) {
  unsigned n = atomic_fetch_add(&cr_conns_lost, 1) + 1;
  if (n == x->threads && x->ready_fd >= 0) {
    char c = 'd';
    pthread_mutex_lock(&cr_pipe_mu);
    ssize_t w = write(x->ready_fd, &c, 1);
    (void)w;
    pthread_mutex_unlock(&cr_pipe_mu);
  }
  for (;;)
    pause();
}

static evs_client *cr_srv_client(cr_srv_ctx *x) {
  if (cr_tl_client)
    return cr_tl_client;
  evs_client_options o = EVS_CLIENT_OPTIONS_INIT;
  o.client_name = "evs_crash";
  o.timeout_ms = 60000;
  o.reconnect = 0;
  int rc = evs_client_connect(&cr_tl_client, x->addr, &o);
  if (rc == 0)
    return cr_tl_client;
  cr_tl_client = NULL;
  if (cr_conn_error(rc))
    cr_srv_gone(x);
  fprintf(stderr, "evs_crash child: connecting to %s: %s: %s\n", x->addr,
          evs_client_err_name(rc), evs_client_last_error());
  _exit(3);
}

static int cr_srv_rc(cr_srv_ctx *x, int rc) {
  if (cr_conn_error(rc))
    cr_srv_gone(x);
  return rc;
}

static int cr_srv_append(void *ctx, const char *stream, int64_t expected,
                         evs_event_data *events, size_t count,
                         evs_append_result *out) {
  cr_srv_ctx *x = ctx;
  return cr_srv_rc(x, evs_client_append(cr_srv_client(x), stream, expected,
                                        events, count, out));
}

static int cr_srv_append_multi(void *ctx, evs_append_part *parts,
                               size_t nparts, size_t *failed_part) {
  cr_srv_ctx *x = ctx;
  return cr_srv_rc(x, evs_client_append_multi(cr_srv_client(x), parts, nparts,
                                              failed_part));
}

/* The "asynchronous" flavour: a one-part append is pipelined
 * (evs_client_append_send, then _wait); several parts go as a
 * multi-stream append. */
static int cr_srv_append_async(void *ctx, evs_append_part *parts,
                               size_t nparts, size_t *failed_part) {
  cr_srv_ctx *x = ctx;
  if (nparts != 1)
    return cr_srv_append_multi(ctx, parts, nparts, failed_part);
  evs_client *c = cr_srv_client(x);
  uint64_t ticket = 0;
  int rc = evs_client_append_send(c, parts[0].stream, parts[0].expected,
                                  parts[0].events, parts[0].count, &ticket);
  if (rc == 0)
    rc = evs_client_append_wait(c, ticket, &parts[0].result);
  *failed_part = 0;
  return cr_srv_rc(x, rc);
}

static int cr_srv_stream_version(void *ctx, const char *stream,
                                 int64_t *version) {
  cr_srv_ctx *x = ctx;
  evs_stream_info info;
  int rc = cr_srv_rc(x, evs_client_stream_info(cr_srv_client(x), stream,
                                               &info));
  if (rc == EVS_ENOSTREAM) {
    *version = EVS_VERSION_NONE;
    return 0;
  }
  if (rc)
    return rc;
  *version = info.version;
  evs_client_stream_info_clear(&info);
  return 0;
}

int cr_child_server(const cr_child_opts *o, const char *addr) {
  static cr_srv_ctx x;
  x.addr = addr;
  x.threads = o->threads;
  x.ready_fd = o->ready_fd;
  cr_backend b = {&x, cr_srv_append, cr_srv_append_multi,
                  cr_srv_append_async, cr_srv_stream_version};
  return cr_child_run(o, &b);
}

/* ---- parent: evstored --------------------------------------------------- */

static uint64_t cr_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void cr_nap(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static const char *const cr_dur[] = {"sync", "nometasync", "nosync"};

int cr_server_start(cr_server *s) {
  unlink(s->port_file);
  char *argv[] = {(char *)s->bin,
                  "--data",
                  (char *)s->data,
                  "--durability",
                  (char *)cr_dur[s->durability],
                  "--map-size",
                  "2M", /* grows, and is remapped, under the kills */
                  "--listen",
                  "127.0.0.1:0",
                  "--http",
                  "off",
                  "--port-file",
                  (char *)s->port_file,
                  NULL};
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    perror("evs_crash: fork");
    return -1;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    unsetenv("EVSTORE_LISTEN");
    unsetenv("EVSTORE_HTTP");
    unsetenv("EVSTORE_TOKENS");
    execv(argv[0], argv);
    _exit(127);
  }
  s->pid = pid;
  uint64_t deadline = cr_ms() + 30000;
  for (;;) {
    FILE *f = fopen(s->port_file, "r");
    if (f) {
      char line[256] = "";
      char *got = fgets(line, sizeof line, f);
      fclose(f);
      if (got && sscanf(line, "listen=%63s", s->addr) == 1)
        return 0;
    }
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      s->pid = 0;
      fprintf(stderr, "evs_crash: evstored exited during start (status "
                      "%#x); log %s\n", st, s->log);
      return -1;
    }
    if (cr_ms() > deadline) {
      fprintf(stderr, "evs_crash: evstored did not start in 30 s\n");
      cr_server_kill9(s);
      return -1;
    }
    cr_nap(5);
  }
}

void cr_server_kill9(cr_server *s) {
  if (s->pid <= 0)
    return;
  kill(s->pid, SIGKILL);
  while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR) {
  }
  s->pid = 0;
}

int cr_server_stop(cr_server *s) {
  if (s->pid <= 0)
    return -1;
  kill(s->pid, SIGTERM);
  uint64_t deadline = cr_ms() + 30000;
  for (;;) {
    int st;
    if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
      s->pid = 0;
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    if (cr_ms() > deadline) {
      fprintf(stderr, "evs_crash: evstored ignored SIGTERM for 30 s\n");
      cr_server_kill9(s);
      return -2;
    }
    cr_nap(5);
  }
}

/* Copies sanitizer reports written to the log since the last call to
 * stderr (where the sanitizer presets' ctest patterns see them). Returns
 * the number of report lines. */
static unsigned cr_server_log_check(cr_server *s) {
  FILE *f = fopen(s->log, "r");
  if (f == NULL)
    return 0;
  if (fseek(f, s->log_off, SEEK_SET) != 0) {
    fclose(f);
    return 0;
  }
  char line[1024];
  unsigned reports = 0, copied = 0;
  while (fgets(line, sizeof line, f)) {
    if (strstr(line, "Sanitizer") || strstr(line, "runtime error: "))
      reports++;
    if (reports && copied++ < 200)
      fprintf(stderr, "evstored: %s", line);
  }
  s->log_off = ftell(f);
  fclose(f);
  return reports;
}

static int cr_srv_problem(cr_stats *st, const char *what, int rc) {
  st->other++;
  fprintf(stderr, "evs_crash: PROBLEM: evstored after the kill: %s: %s: %s\n",
          what, evs_client_err_name(rc), evs_client_last_error());
  return 0;
}

static int cr_srv_verify_cb(const char *problem, uint64_t done, uint64_t total,
                            void *payload) {
  (void)done;
  (void)total;
  unsigned *n = payload;
  if (problem && (*n)++ < 20)
    fprintf(stderr, "evs_crash: PROBLEM: verify (evstored): %s\n", problem);
  return 0;
}

int cr_server_after_kill(cr_server *s, cr_model *m, unsigned iteration,
                         cr_stats *st) {
  /* A server killed during its own start-up leaves a log to scan too. */
  if (cr_server_log_check(s))
    st->other++;
  if (cr_server_start(s))
    return -1;
  evs_client_options o = EVS_CLIENT_OPTIONS_INIT;
  o.client_name = "evs_crash-check";
  o.timeout_ms = 60000;
  o.reconnect = 0;
  evs_client *c = NULL;
  int rc = evs_client_connect(&c, s->addr, &o);
  if (rc) {
    cr_srv_problem(st, "connect", rc);
  } else {
    uint64_t head = 0;
    rc = evs_client_head(c, &head, NULL);
    if (rc)
      cr_srv_problem(st, "head", rc);
    /* A probe append through the restarted server: one event to
     * "probe-server", read back here, and part of the model from now on
     * (so the library checker finds it again after the SIGTERM stop). */
    cr_rec r;
    memset(&r, 0, sizeof r);
    r.kind = CR_INTENT;
    r.type_idx = CR_NTYPES - 1;
    r.append_id = ((uint64_t)iteration << 40) | (0xfeull << 32);
    r.count = 1;
    r.nparts = 1;
    r.part_count = 1;
    r.data_len = 96;
    r.expected = EVS_EXPECT_ANY;
    r.version = -1;
    uint64_t k = iteration;
    memcpy(r.id, "srvprobe", 8);
    memcpy(r.id + 8, &k, 8);
    snprintf(r.stream, sizeof r.stream, "probe-server");
    uint8_t data[96];
    cr_fill_payload(data, sizeof data, r.id, 0);
    r.data_hash = cr_hash(data, sizeof data);
    cr_rec_seal(&r);
    evs_event_data ev;
    memset(&ev, 0, sizeof ev);
    memcpy(ev.id.bytes, r.id, 16);
    ev.type = cr_types[r.type_idx];
    ev.data = data;
    ev.data_len = sizeof data;
    evs_append_result res;
    rc = evs_client_append(c, "probe-server", EVS_EXPECT_ANY, &ev, 1, &res);
    if (rc) {
      cr_srv_problem(st, "the server refuses appends after the crash", rc);
    } else {
      if (rc == 0 && res.first_position != head + 1) {
        st->misplaced++;
        fprintf(stderr, "evs_crash: PROBLEM: server probe at %llu, head "
                        "was %llu\n",
                (unsigned long long)res.first_position,
                (unsigned long long)head);
      }
      if (cr_model_add_acked(m, &r, res.first_version, res.first_position))
        return -1;
      evs_event *back = NULL;
      rc = evs_client_read_event(c, res.first_position, &back);
      if (rc)
        cr_srv_problem(st, "reading the probe back", rc);
      else if (back->data.len != sizeof data ||
               memcmp(back->data.data, data, sizeof data) != 0 ||
               memcmp(back->id.bytes, r.id, 16) != 0) {
        st->mismatched++;
        fprintf(stderr, "evs_crash: PROBLEM: the server probe reads back "
                        "different\n");
      }
      evs_client_event_free(back);
    }
    /* evs_store_verify of the server's store, through the client. */
    evs_verify_report vr;
    unsigned problems = 0;
    rc = evs_client_verify(c, &vr, cr_srv_verify_cb, &problems);
    if (rc)
      cr_srv_problem(st, "verify", rc);
    else
      st->verify_errors += vr.errors;
    evs_client_close(c);
  }
  int status = cr_server_stop(s);
  if (status != 0) {
    st->other++;
    fprintf(stderr, "evs_crash: PROBLEM: evstored exit status %d after "
                    "SIGTERM (log %s)\n",
            status, s->log);
  }
  if (cr_server_log_check(s))
    st->other++;
  return 0;
}
