/*
 * evstore-bench — scenario 7: the server, evstored over loopback TCP.
 *
 * The harness starts the evstored of the same build tree
 * (<bench dir>/../src/server/evstored; --evstored PATH or
 * $EVS_BENCH_EVSTORED override it) on 127.0.0.1 with port 0 (the bound
 * port comes back through --port-file), HTTP off, durability sync, a data
 * directory inside the run's scratch directory, and connection and
 * subscription limits raised for the run. A fresh server (empty store)
 * serves every measurement; it is stopped with SIGTERM and must exit 0.
 * Clients use libevstore_client (include/evstore/client.h).
 *
 *  server/append/{1,16,64,256}c/sync: C client threads, each with its own
 *    connection, append single events (evs_client_append) to their own
 *    streams with exact expected versions for a 2 s window, as scenario 2
 *    does in-process. Reference: the same workload in-process with C
 *    threads on a fresh store (evs_append), measured just before, in the
 *    same repetition ("in-process-Ct"), and the peers' mode 8.
 *  server/append-pipelined/b1-d16/{1,16,64}c/sync: each client keeps 16
 *    single-event appends in flight (evs_client_append_send/_wait).
 *  server/append-pipelined/b100-d4/{1,16}c/sync: each client keeps 4
 *    appends of 100 events (one stream each) in flight.
 *  server/ping: request round trip (evs_client_ping) on an idle server.
 *  server/sub-live-{1,100}sub: 1 or 100 subscriptions over TCP (each its
 *    own connection, read by a client thread of its own; -1thread: the
 *    100 read by one client thread with evs_client_sub_wait) from the end
 *    of the log; one writer client appends
 *    one durable event per millisecond. The commit happens inside the
 *    server, where the client cannot see it; the latency is taken from the
 *    earliest point a client observes it, the writer's receipt of the
 *    durable acknowledgement, to the subscriber's evs_client_sub_next()
 *    returning the event (signed: a push may overtake the acknowledgement).
 *    The acknowledgement's own path (about half of server/ping) is not in
 *    the figure. Sub-line: from the append call (flush included).
 *  server/rss/...: the server's VmRSS and VmHWM (/proc/PID/status) idle,
 *    with 1,000 idle connections (handshake done), and with 1,000 idle
 *    subscriptions (each on its own connection, caught up, after one event
 *    was delivered to all of them).
 *
 * --quick runs the same at tiny sizes (1 and 4 clients, 2 and 10
 * subscribers, 50 connections and subscriptions) as a smoke test.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#if EVS_BENCH_HAVE_SERVER

#include "evstore/client.h"

/* ---- the server process --------------------------------------------------
 */

typedef struct srv_proc {
  pid_t pid;
  char dir[4200]; /* scratch: data/, port, evstored.log */
  char log[4300]; /* the server's stderr */
  char addr[64];  /* 127.0.0.1:PORT */
} srv_proc;

static int srv_exe(const bench_ctx *c, char *out, size_t cap) {
  const char *p = c->opt.evstored;
  if (p == NULL || *p == '\0')
    p = getenv("EVS_BENCH_EVSTORED");
  if (p && *p) {
    bench_fmt(out, cap, "%s", p);
  } else {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
      return -1;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
      *slash = '\0';
    bench_fmt(out, cap, "%s/../src/server/evstored", self);
  }
  return access(out, X_OK) == 0 ? 0 : -1;
}

/* The last line of the server's log, for error messages. */
static void srv_log_tail(const srv_proc *p, char *out, size_t cap) {
  out[0] = '\0';
  FILE *f = fopen(p->log, "r");
  if (f == NULL)
    return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    if (line[0])
      bench_fmt(out, cap, "%s", line);
  }
  fclose(f);
}

static int srv_start(bench_ctx *c, const char *exe, srv_proc *p, char *err,
                     size_t ecap) {
  memset(p, 0, sizeof *p);
  if (bench_mkdir(c, "server", p->dir, sizeof p->dir)) {
    bench_fmt(err, ecap, "cannot create a directory under %s", c->root);
    return -1;
  }
  char data[4300], port[4300];
  bench_fmt(data, sizeof data, "%s/data", p->dir);
  bench_fmt(port, sizeof port, "%s/port", p->dir);
  bench_fmt(p->log, sizeof p->log, "%s/evstored.log", p->dir);
  /* The limits cover 1,000 connections and 1,000 subscriptions (one per
   * connection) with room to spare; idle connections must stay open. */
  static const char *const fixed[][2] = {
    { "--listen", "127.0.0.1:0" },   { "--http", "off" },
    { "--durability", "sync" },      { "--max-connections", "4096" },
    { "--max-subscriptions", "16" }, { "--max-inflight", "64" },
    { "--idle-timeout", "0" },
  };
  size_t nfixed = sizeof fixed / sizeof fixed[0];
  char *argv[6 + 2 * sizeof fixed / sizeof fixed[0]];
  size_t k = 0;
  argv[k++] = (char *)exe;
  argv[k++] = "--data";
  argv[k++] = data;
  argv[k++] = "--port-file";
  argv[k++] = port;
  for (size_t i = 0; i < nfixed; i++) {
    argv[k++] = (char *)fixed[i][0];
    argv[k++] = (char *)fixed[i][1];
  }
  argv[k] = NULL;
  int logfd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (logfd < 0) {
    bench_fmt(err, ecap, "%s: %s", p->log, strerror(errno));
    return -1;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    /* The server must not outlive the harness. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    int nul = open("/dev/null", O_RDONLY);
    if (nul >= 0)
      dup2(nul, 0);
    dup2(logfd, 1);
    dup2(logfd, 2);
    execv(exe, argv);
    _exit(127);
  }
  close(logfd);
  if (pid < 0) {
    bench_fmt(err, ecap, "fork: %s", strerror(errno));
    return -1;
  }
  p->pid = pid;
  bench_child_pid = pid;
  /* Wait for the port file (written after the listener is bound). */
  double until = bench_now() + 15.0;
  while (bench_now() < until) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      char tail[512];
      srv_log_tail(p, tail, sizeof tail);
      bench_fmt(err, ecap, "evstored exited at start (status %d): %s",
                WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), tail);
      p->pid = 0;
      bench_child_pid = 0;
      return -1;
    }
    FILE *f = fopen(port, "r");
    if (f) {
      char line[256] = "";
      char *ok = fgets(line, sizeof line, f);
      fclose(f);
      const char *l = ok ? strstr(line, "listen=") : NULL;
      if (l) {
        l += 7;
        size_t n = strcspn(l, " \n");
        if (n > 0 && n < sizeof p->addr) {
          memcpy(p->addr, l, n);
          p->addr[n] = '\0';
          return 0;
        }
      }
    }
    struct timespec ts = { 0, 5000000 };
    nanosleep(&ts, NULL);
  }
  bench_fmt(err, ecap, "evstored did not report its port within 15 s");
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  p->pid = 0;
  bench_child_pid = 0;
  return -1;
}

/* SIGTERM, then waits (SIGKILL after 30 s). 0 when it exited with 0. */
static int srv_stop(bench_ctx *c, srv_proc *p, char *err, size_t ecap) {
  int rc = 0;
  if (p->pid > 0) {
    kill(p->pid, SIGTERM);
    double until = bench_now() + 30.0;
    int st = 0, done = 0;
    while (!done && bench_now() < until) {
      if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
        done = 1;
        break;
      }
      struct timespec ts = { 0, 5000000 };
      nanosleep(&ts, NULL);
    }
    if (!done) {
      kill(p->pid, SIGKILL);
      waitpid(p->pid, &st, 0);
      bench_fmt(err, ecap, "evstored did not stop within 30 s of SIGTERM");
      rc = -1;
    } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      char tail[512];
      srv_log_tail(p, tail, sizeof tail);
      bench_fmt(err, ecap, "evstored exited with status %d: %s",
                WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), tail);
      rc = -1;
    }
    p->pid = 0;
    bench_child_pid = 0;
  }
  bench_rmtree(c, p->dir);
  return rc;
}

/* VmRSS and VmHWM of a process, in MiB; -1 when unreadable. */
static int proc_rss(pid_t pid, double *rss, double *hwm) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  *rss = *hwm = NAN;
  while (fgets(line, sizeof line, f)) {
    unsigned long kb;
    if (sscanf(line, "VmRSS: %lu kB", &kb) == 1)
      *rss = (double)kb / 1024.0;
    else if (sscanf(line, "VmHWM: %lu kB", &kb) == 1)
      *hwm = (double)kb / 1024.0;
  }
  fclose(f);
  return isnan(*rss) ? -1 : 0;
}

/* Raises the soft limit on open files to what `need` descriptors require
 * (the server inherits it). Returns the resulting soft limit. */
static rlim_t raise_nofile(rlim_t need) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 0;
  if (rl.rlim_cur < need) {
    rl.rlim_cur =
        rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

/* --quick is a smoke test of this scenario: one repetition. */
static int sv_reps(const bench_ctx *c) {
  return c->opt.quick ? 1 : c->opt.reps;
}

/* ---- appends: C threads, over TCP or in-process ---------------------------
 */

typedef struct tc_shared {
  const char *addr; /* TCP: the server; NULL: in-process on `store` */
  evs_store *store;
  pthread_mutex_t mu; /* the start gate */
  pthread_cond_t cv;
  int go, ready;
  double start, deadline;
  int clients;
  size_t batch; /* events per append (one stream) */
  int depth;    /* appends in flight per client (TCP only) */
  const uint8_t *pool;
  unsigned npool;
  int ids_v4; /* random UUIDv4 ids (--ids v4) instead of UUIDv7 */
} tc_shared;

typedef struct tc_thread {
  tc_shared *sh;
  int t;
  pthread_t tid;
  evs_client *cl;
  long in_window, total;
  int err;
  char errmsg[200];
  bench_lat lat;
} tc_thread;

typedef struct tc_slot {
  uint64_t ticket;
  double sent;
} tc_slot;

#define TC_MAX_BATCH 100
#define TC_MAX_DEPTH 64

static void tc_fill(tc_thread *th, evs_event_data *ed, size_t n,
                    uint64_t *rng) {
  const tc_shared *sh = th->sh;
  for (size_t i = 0; i < n; i++) {
    memset(&ed[i], 0, sizeof ed[i]);
    if (sh->ids_v4)
      bench_uuid4(&ed[i].id, rng);
    else
      evs_uuid_v7(&ed[i].id); /* as a client library would make it */
    ed[i].type = BENCH_TYPE;
    ed[i].data =
        sh->pool + (size_t)(bench_rng(rng) % sh->npool) * BENCH_DATA_SIZE;
    ed[i].data_len = BENCH_DATA_SIZE;
  }
}

static void tc_error(tc_thread *th, int rc, const char *what) {
  th->err = rc;
  bench_fmt(th->errmsg, sizeof th->errmsg, "%s: %s (%s)", what,
            evs_strerror(rc),
            th->sh->addr ? evs_client_last_error() : evs_last_error());
}

static void *tc_main(void *arg) {
  tc_thread *th = arg;
  tc_shared *sh = th->sh;
  int T = sh->clients;
  /* This client's streams: k % T == t (one of its own when T > 1000). */
  unsigned mine = 0;
  unsigned ks[BENCH_NSTREAMS];
  int64_t ver[BENCH_NSTREAMS];
  char name[32];
  if (T > (int)BENCH_NSTREAMS) {
    ks[0] = (unsigned)th->t;
    ver[0] = -1;
    mine = 1;
  }
  for (unsigned k = (unsigned)th->t;
       k < BENCH_NSTREAMS && T <= (int)BENCH_NSTREAMS; k += (unsigned)T) {
    ks[mine] = k;
    ver[mine++] = -1;
  }
  uint64_t rng = 0x7c9ull + (uint64_t)th->t * 7919u;
  int rc = 0;
  if (sh->addr) {
    evs_client_options o = EVS_CLIENT_OPTIONS_INIT;
    o.client_name = "evstore-bench";
    o.reconnect = 0;
    rc = evs_client_connect(&th->cl, sh->addr, &o);
    if (rc)
      tc_error(th, rc, "connect");
  }
  pthread_mutex_lock(&sh->mu);
  sh->ready++;
  pthread_cond_broadcast(&sh->cv);
  while (!sh->go)
    pthread_cond_wait(&sh->cv, &sh->mu);
  pthread_mutex_unlock(&sh->mu);
  if (rc)
    return NULL;
  double now = bench_now();
  if (sh->start > now) {
    double d = sh->start - now;
    struct timespec ts = { (time_t)d, (long)((d - (double)(time_t)d) * 1e9) };
    nanosleep(&ts, NULL);
  }
  evs_event_data ed[TC_MAX_BATCH];
  size_t B = sh->batch;
  if (sh->depth <= 1) {
    /* One append at a time: the call returns after the durable commit. */
    for (unsigned i = 0;; i++) {
      double t0 = bench_now();
      if (t0 >= sh->deadline)
        break;
      unsigned j = i % mine;
      snprintf(name, sizeof name, "order-%u", ks[j]);
      tc_fill(th, ed, B, &rng);
      int64_t exp = ver[j] < 0 ? EVS_EXPECT_NO_STREAM : ver[j];
      t0 = bench_now();
      rc = sh->addr ? evs_client_append(th->cl, name, exp, ed, B, NULL)
                    : evs_append(sh->store, name, exp, ed, B, NULL);
      double t1 = bench_now();
      if (rc) {
        tc_error(th, rc, "append");
        break;
      }
      ver[j] += (int64_t)B;
      th->total += (long)B;
      if (t1 <= sh->deadline)
        th->in_window += (long)B;
      bench_lat_add(&th->lat, (t1 - t0) * 1e6);
    }
    return NULL;
  }
  /* Pipelined: keep `depth` appends in flight, oldest reply first (the
   * appends of one client are committed in the order they were sent). */
  tc_slot ring[TC_MAX_DEPTH];
  int head = 0, inflight = 0;
  for (unsigned i = 0;;) {
    double t = bench_now();
    while (!th->err && inflight < sh->depth && t < sh->deadline) {
      unsigned j = i++ % mine;
      snprintf(name, sizeof name, "order-%u", ks[j]);
      tc_fill(th, ed, B, &rng);
      int64_t exp = ver[j] < 0 ? EVS_EXPECT_NO_STREAM : ver[j];
      tc_slot *s = &ring[(head + inflight) % TC_MAX_DEPTH];
      s->sent = bench_now();
      rc = evs_client_append_send(th->cl, name, exp, ed, B, &s->ticket);
      if (rc) {
        tc_error(th, rc, "append_send");
        break;
      }
      ver[j] += (int64_t)B;
      inflight++;
    }
    if (inflight == 0)
      break;
    tc_slot *s = &ring[head];
    rc = evs_client_append_wait(th->cl, s->ticket, NULL);
    double t1 = bench_now();
    head = (head + 1) % TC_MAX_DEPTH;
    inflight--;
    if (rc) {
      if (!th->err)
        tc_error(th, rc, "append_wait");
      continue; /* wait for every ticket exactly once */
    }
    th->total += (long)B;
    if (t1 <= sh->deadline)
      th->in_window += (long)B;
    bench_lat_add(&th->lat, (t1 - s->sent) * 1e6);
  }
  return NULL;
}

/*
 * One timed run: `clients` threads for `secs` seconds against the server at
 * `addr` or in-process on a fresh store in `dir` (addr NULL). Adds the
 * repetition to *m. Returns 0 or fails the scenario and returns -1.
 */
static int tc_run(bench_ctx *c, const char *scen, const char *addr, int clients,
                  size_t batch, int depth, double secs, const uint8_t *pool,
                  unsigned npool, bench_meas *m) {
  tc_shared sh;
  memset(&sh, 0, sizeof sh);
  sh.addr = addr;
  sh.clients = clients;
  sh.batch = batch;
  sh.depth = depth;
  sh.pool = pool;
  sh.npool = npool;
  sh.ids_v4 = c->opt.ids_v4;
  char dir[4200] = "";
  if (addr == NULL) {
    evs_store_options so = EVS_STORE_OPTIONS_INIT;
    so.durability = EVS_SYNC;
    int rc = bench_mkdir(c, "inproc", dir, sizeof dir);
    if (rc == 0)
      rc = evs_store_open(&sh.store, dir, &so);
    if (rc) {
      bench_fail(c, scen, "open: %s", evs_strerror(rc));
      return -1;
    }
  }
  tc_thread *th = calloc((size_t)clients, sizeof *th);
  pthread_mutex_init(&sh.mu, NULL);
  pthread_cond_init(&sh.cv, NULL);
  int started = 0;
  for (int t = 0; th && t < clients; t++) {
    th[t].sh = &sh;
    th[t].t = t;
    if (pthread_create(&th[t].tid, NULL, tc_main, &th[t]) != 0)
      break;
    started++;
  }
  /* Everyone connected (or failed): start at the same instant. */
  pthread_mutex_lock(&sh.mu);
  while (sh.ready < started)
    pthread_cond_wait(&sh.cv, &sh.mu);
  sh.start = bench_now() + 0.01;
  sh.deadline = started < clients ? sh.start : sh.start + secs;
  sh.go = 1;
  pthread_cond_broadcast(&sh.cv);
  pthread_mutex_unlock(&sh.mu);
  for (int t = 0; t < started; t++)
    pthread_join(th[t].tid, NULL);
  pthread_cond_destroy(&sh.cv);
  pthread_mutex_destroy(&sh.mu);
  long in_window = 0, total = 0;
  int err = started < clients ? EVS_ENOMEM : 0;
  char errmsg[200] = "cannot start the threads";
  bench_lat lat = { 0 };
  for (int t = 0; t < started; t++) {
    in_window += th[t].in_window;
    total += th[t].total;
    if (th[t].err && !(err && errmsg[0])) {
      err = th[t].err;
      memcpy(errmsg, th[t].errmsg, sizeof errmsg);
    }
    bench_lat_merge(&lat, &th[t].lat);
    bench_lat_free(&th[t].lat);
  }
  /* Every acknowledged event is in the log. */
  uint64_t head = 0;
  int hrc = 0;
  if (addr) {
    if (th && started > 0 && th[0].cl)
      hrc = evs_client_head(th[0].cl, &head, NULL);
    for (int t = 0; t < started; t++)
      evs_client_close(th[t].cl);
  } else {
    evs_head_position(sh.store, &head);
    evs_store_close(sh.store);
    bench_rmtree(c, dir);
  }
  free(th);
  if (!err && (hrc || head != (uint64_t)total)) {
    err = hrc ? hrc : EVS_EIO;
    bench_fmt(errmsg, sizeof errmsg, "head %llu after %ld acknowledged events",
              (unsigned long long)head, total);
  }
  if (err) {
    bench_fail(c, scen, "%s", errmsg);
    bench_lat_free(&lat);
    return -1;
  }
  bench_meas_add(m, (double)in_window, (double)in_window * BENCH_DATA_SIZE,
                 (double)in_window / (double)batch, secs, &lat);
  bench_lat_free(&lat);
  return 0;
}

static void sv_appends(bench_ctx *c, const char *exe, const uint8_t *pool,
                       unsigned npool) {
  static const int full[] = { 1, 16, 64, 256 };
  static const int quick[] = { 1, 4 };
  const int *cl = c->opt.quick ? quick : full;
  int ncl = c->opt.quick ? 2 : 4;
  double secs = c->opt.quick ? 0.25 : 2.0;
  char err[600];
  for (int ci = 0; ci < ncl; ci++) {
    int C = cl[ci];
    char scen[96], ref[96], rname[32];
    snprintf(scen, sizeof scen, "server/append/%dc/sync", C);
    snprintf(ref, sizeof ref, "in-process/append/%dt/sync", C);
    snprintf(rname, sizeof rname, "in-process-%dt", C);
    bench_meas m = { 0 }, in = { 0 };
    int failed = 0;
    for (int r = 0; r < sv_reps(c) && !failed; r++) {
      /* The reference first, then the server: seconds apart. */
      if (tc_run(c, ref, NULL, C, 1, 1, secs, pool, npool, &in)) {
        failed = 1;
        break;
      }
      srv_proc p;
      if (srv_start(c, exe, &p, err, sizeof err)) {
        bench_fail(c, scen, "%s", err);
        failed = 1;
        break;
      }
      failed = tc_run(c, scen, p.addr, C, 1, 1, secs, pool, npool, &m) != 0;
      if (srv_stop(c, &p, err, sizeof err) && !failed) {
        bench_fail(c, scen, "%s", err);
        failed = 1;
      }
    }
    if (failed)
      continue;
    char note[200];
    snprintf(note, sizeof note,
             "%d client(s), one connection each, 1 event per "
             "evs_client_append, exact expected version, %.1f s window, "
             "sync",
             C, secs);
    bench_emit_meas(c, scen, &m, rname, &in, note);
    snprintf(note, sizeof note,
             "the same workload in-process (%d threads, evs_append), "
             "measured just before each server run",
             C);
    bench_emit_meas(c, ref, &in, NULL, NULL, note);
    bench_point_add(c, "group-tcp-sync", C, bench_stat_of(m.eps, m.reps).med);
  }

  /* Pipelined: singles 16 deep, batches of 100 four deep. */
  static const struct {
    size_t batch;
    int depth;
    int clients;
  } pipes[] = {
    { 1, 16, 1 }, { 1, 16, 16 }, { 1, 16, 64 }, { 100, 4, 1 }, { 100, 4, 16 }
  };
  size_t npipes = sizeof pipes / sizeof pipes[0];
  for (size_t pi = 0; pi < npipes; pi++) {
    int C = pipes[pi].clients;
    if (c->opt.quick && C > 4)
      C = 4;
    if (c->opt.quick && pi != 1 && pi != 3)
      continue;
    char scen[96], rname[32], base[96];
    snprintf(scen, sizeof scen, "server/append-pipelined/b%zu-d%d/%dc/sync",
             pipes[pi].batch, pipes[pi].depth, C);
    snprintf(base, sizeof base, "server/append/%dc/sync", C);
    snprintf(rname, sizeof rname, "server-%dc", C);
    bench_meas m = { 0 };
    int failed = 0;
    for (int r = 0; r < sv_reps(c) && !failed; r++) {
      srv_proc p;
      if (srv_start(c, exe, &p, err, sizeof err)) {
        bench_fail(c, scen, "%s", err);
        failed = 1;
        break;
      }
      failed = tc_run(c, scen, p.addr, C, pipes[pi].batch, pipes[pi].depth,
                      secs, pool, npool, &m) != 0;
      if (srv_stop(c, &p, err, sizeof err) && !failed) {
        bench_fail(c, scen, "%s", err);
        failed = 1;
      }
    }
    if (failed)
      continue;
    const bench_result *b = bench_find(c, base, "events/s", NULL);
    bench_meas ref = { 0 };
    if (b && pipes[pi].batch == 1) {
      ref.reps = 1;
      ref.eps[0] = b->value;
    }
    char note[200];
    snprintf(note, sizeof note,
             "%d client(s), %d appends of %zu event(s) in flight each "
             "(evs_client_append_send/_wait), latency = send to reply, "
             "%.1f s window, sync",
             C, pipes[pi].depth, pipes[pi].batch, secs);
    bench_emit_meas(c, scen, &m, ref.reps ? rname : NULL,
                    ref.reps ? &ref : NULL, note);
    if (pipes[pi].batch == 1)
      bench_point_add(c, "group-tcp-pipe", C, bench_stat_of(m.eps, m.reps).med);
  }
}

/* ---- ping ------------------------------------------------------------------
 */

static void sv_ping(bench_ctx *c, const char *addr) {
  const char *scen = "server/ping";
  int n = c->opt.quick ? 50 : 2000;
  evs_client *cl = NULL;
  int rc = evs_client_connect(&cl, addr, NULL);
  bench_meas m = { 0 };
  bench_lat lat = { 0 };
  double t0 = bench_now();
  for (int i = 0; rc == 0 && i < n; i++) {
    uint64_t a = bench_now_ns();
    rc = evs_client_ping(cl, NULL);
    bench_lat_add(&lat, (double)(bench_now_ns() - a) / 1e3);
  }
  double secs = bench_now() - t0;
  evs_client_close(cl);
  if (rc) {
    bench_fail(c, scen, "ping: %s (%s)", evs_strerror(rc),
               evs_client_last_error());
    bench_lat_free(&lat);
    return;
  }
  bench_meas_add(&m, n, 0, n, secs, &lat);
  bench_lat_free(&lat);
  bench_emit_meas(c, scen, &m, NULL, NULL,
                  "evs_client_ping round trips on an idle server, one "
                  "connection; events/s = round trips/s");
}

/* ---- live subscriptions over TCP ------------------------------------------
 */

typedef struct tl_shared {
  size_t cap;
  uint64_t *ack_ns;  /* by position: the writer got the acknowledgement */
  uint64_t *sent_ns; /* by position: before the append call */
  int writer_done;   /* atomics */
  long written;
  int caught_up; /* subscribers that reached the end once */
} tl_shared;

typedef struct tl_sub {
  tl_shared *sh;
  evs_client_sub *sub;
  pthread_t tid;
  long received;
  int err;
  int stop; /* atomic */
  uint64_t *deliv_ns;
} tl_sub;

static void *tl_main(void *arg) {
  tl_sub *ls = arg;
  int caught = 0;
  while (!__atomic_load_n(&ls->stop, __ATOMIC_ACQUIRE)) {
    const evs_event *ev;
    int k = evs_client_sub_next(ls->sub, &ev, 100);
    uint64_t now = bench_now_ns();
    if (k < 0) {
      ls->err = k;
      break;
    }
    if (!caught && evs_client_sub_caught_up(ls->sub)) {
      caught = 1;
      __atomic_fetch_add(&ls->sh->caught_up, 1, __ATOMIC_RELEASE);
    }
    if (k == 1) {
      if (ev->position < ls->sh->cap)
        ls->deliv_ns[ev->position] = now;
      __atomic_fetch_add(&ls->received, 1, __ATOMIC_RELEASE);
    }
    if (__atomic_load_n(&ls->sh->writer_done, __ATOMIC_ACQUIRE) &&
        __atomic_load_n(&ls->received, __ATOMIC_RELAXED) >=
            __atomic_load_n(&ls->sh->written, __ATOMIC_ACQUIRE))
      break;
  }
  return NULL;
}

/* The grouped mode: one thread serves every subscription
 * (evs_client_sub_wait, then evs_client_sub_next without blocking). */
typedef struct tl_group {
  tl_sub *subs;
  int n;
  int stop; /* atomic */
  int err;
  pthread_t tid;
} tl_group;

static void *tl_group_main(void *arg) {
  tl_group *g = arg;
  evs_client_sub **ss = calloc((size_t)g->n, sizeof *ss);
  unsigned char *ready = calloc((size_t)g->n, 1);
  unsigned char *caught = calloc((size_t)g->n, 1);
  if (ss == NULL || ready == NULL || caught == NULL) {
    g->err = EVS_ENOMEM;
    goto out;
  }
  for (int i = 0; i < g->n; i++)
    ss[i] = g->subs[i].sub;
  while (!__atomic_load_n(&g->stop, __ATOMIC_ACQUIRE)) {
    int k = evs_client_sub_wait(ss, (size_t)g->n, 100, ready);
    if (k < 0) {
      g->err = k;
      break;
    }
    for (int i = 0; k > 0 && i < g->n; i++) {
      if (!ready[i])
        continue;
      tl_sub *ls = &g->subs[i];
      const evs_event *ev;
      int rc;
      while ((rc = evs_client_sub_next(ls->sub, &ev, 0)) == 1) {
        uint64_t now = bench_now_ns();
        if (ev->position < ls->sh->cap)
          ls->deliv_ns[ev->position] = now;
        __atomic_fetch_add(&ls->received, 1, __ATOMIC_RELEASE);
      }
      if (rc < 0) {
        ls->err = rc;
        g->err = rc;
      }
      if (!caught[i] && evs_client_sub_caught_up(ls->sub)) {
        caught[i] = 1;
        __atomic_fetch_add(&ls->sh->caught_up, 1, __ATOMIC_RELEASE);
      }
    }
    if (g->err)
      break;
  }
out:
  free(ss);
  free(ready);
  free(caught);
  return NULL;
}

/* Returns -1 after failing the scenario. */
static int tl_once(bench_ctx *c, const char *scen, const char *addr, int nsubs,
                   int grouped, double secs, bench_meas *m, bench_meas *call,
                   bench_meas *app) {
  uint8_t data[BENCH_DATA_SIZE];
  uint64_t prng = 42;
  bench_json_payload(data, sizeof data, &prng);
  tl_shared sh;
  memset(&sh, 0, sizeof sh);
  sh.cap = (size_t)(secs * 1000) + 16;
  sh.ack_ns = calloc(sh.cap, sizeof *sh.ack_ns);
  sh.sent_ns = calloc(sh.cap, sizeof *sh.sent_ns);
  tl_sub *subs = calloc((size_t)nsubs, sizeof *subs);
  evs_client *w = NULL;
  int err = sh.ack_ns && sh.sent_ns && subs ? 0 : EVS_ENOMEM;
  const char *what = "setup";
  if (err == 0) {
    what = "connect";
    err = evs_client_connect(&w, addr, NULL);
  }
  int started = 0;
  for (int i = 0; err == 0 && i < nsubs; i++) {
    evs_client_sub_options o = EVS_CLIENT_SUB_OPTIONS_INIT;
    o.from_end = 1;
    subs[i].sh = &sh;
    subs[i].deliv_ns = calloc(sh.cap, sizeof *subs[i].deliv_ns);
    what = "subscribe";
    err = subs[i].deliv_ns ? evs_client_subscribe(&subs[i].sub, w, &o)
                           : EVS_ENOMEM;
    if (err == 0 && !grouped &&
        pthread_create(&subs[i].tid, NULL, tl_main, &subs[i])) {
      evs_client_sub_close(subs[i].sub);
      err = EVS_ENOMEM;
    }
    if (err) {
      free(subs[i].deliv_ns);
      break;
    }
    started++;
  }
  tl_group grp = { subs, started, 0, 0, 0 };
  int group_started = 0;
  if (err == 0 && grouped) {
    if (pthread_create(&grp.tid, NULL, tl_group_main, &grp) == 0)
      group_started = 1;
    else
      err = EVS_ENOMEM;
  }
  /* Each subscription resolves "the end" in its first read: wait until
   * every one has reached it before the first append. */
  double until = bench_now() + 10.0;
  while (err == 0 && __atomic_load_n(&sh.caught_up, __ATOMIC_ACQUIRE) < nsubs &&
         bench_now() < until) {
    struct timespec ts = { 0, 1000000 };
    nanosleep(&ts, NULL);
  }
  bench_lat alat = { 0 };
  double start = bench_now(), next = start;
  long written = 0;
  char name[32];
  while (err == 0 && bench_now() < start + secs &&
         (size_t)written + 2 < sh.cap) {
    double now = bench_now();
    if (now < next) {
      struct timespec ts = { 0, (long)((next - now) * 1e9) };
      nanosleep(&ts, NULL);
    }
    next += 0.001;
    evs_event_data ed;
    memset(&ed, 0, sizeof ed);
    ed.type = BENCH_TYPE;
    ed.data = data;
    ed.data_len = sizeof data;
    snprintf(name, sizeof name, "order-%ld", written % BENCH_NSTREAMS);
    evs_append_result res;
    uint64_t t0 = bench_now_ns();
    err = evs_client_append(w, name, EVS_EXPECT_ANY, &ed, 1, &res);
    uint64_t t1 = bench_now_ns();
    if (err) {
      what = "append";
      break;
    }
    bench_lat_add(&alat, (double)(t1 - t0) / 1e3);
    if (res.first_position < sh.cap) {
      sh.sent_ns[res.first_position] = t0;
      sh.ack_ns[res.first_position] = t1;
    }
    written++;
  }
  char detail[200] = "";
  if (err)
    bench_fmt(detail, sizeof detail, "%s", evs_client_last_error());
  __atomic_store_n(&sh.written, written, __ATOMIC_RELEASE);
  __atomic_store_n(&sh.writer_done, 1, __ATOMIC_RELEASE);
  until = bench_now() + 10.0;
  for (int i = 0; i < started; i++)
    while (__atomic_load_n(&subs[i].received, __ATOMIC_ACQUIRE) < written &&
           subs[i].err == 0 && bench_now() < until) {
      struct timespec ts = { 0, 1000000 };
      nanosleep(&ts, NULL);
    }
  bench_lat lat = { 0 }, clat = { 0 };
  long got = 0;
  if (group_started) {
    __atomic_store_n(&grp.stop, 1, __ATOMIC_RELEASE);
    pthread_join(grp.tid, NULL);
    if (grp.err && !err) {
      err = grp.err;
      what = "subscription";
    }
  }
  for (int i = 0; i < started; i++) {
    __atomic_store_n(&subs[i].stop, 1, __ATOMIC_RELEASE);
    if (!grouped)
      pthread_join(subs[i].tid, NULL);
    evs_client_sub_close(subs[i].sub);
    got += subs[i].received;
    if (subs[i].err && !err) {
      err = subs[i].err;
      what = "subscription";
    }
    bench_lat_stamps(&lat, subs[i].deliv_ns, sh.ack_ns, sh.cap);
    bench_lat_stamps(&clat, subs[i].deliv_ns, sh.sent_ns, sh.cap);
    free(subs[i].deliv_ns);
  }
  evs_client_close(w);
  free(subs);
  free(sh.ack_ns);
  free(sh.sent_ns);
  int rc = 0;
  if (err || got != written * nsubs) {
    bench_fail(c, scen, "%s: %s%s%s; %ld of %ld deliveries", what,
               err ? evs_strerror(err) : "events missing",
               detail[0] ? ": " : "", detail, got, written * nsubs);
    rc = -1;
  } else {
    bench_meas_add(m, (double)got, 0, (double)got, secs, &lat);
    bench_meas_add(call, (double)got, 0, (double)got, secs, &clat);
    bench_meas_add(app, (double)written, 0, (double)written, secs, &alat);
  }
  bench_lat_free(&lat);
  bench_lat_free(&clat);
  bench_lat_free(&alat);
  return rc;
}

static void sv_sub_live(bench_ctx *c, const char *exe, int nsubs, int grouped) {
  char scen[64], err[600];
  snprintf(scen, sizeof scen, "server/sub-live-%dsub%s", nsubs,
           grouped ? "-1thread" : "");
  double secs = c->opt.quick ? 0.2 : 2.0;
  bench_meas m = { 0 }, call = { 0 }, app = { 0 };
  for (int r = 0; r < sv_reps(c); r++) {
    srv_proc p;
    if (srv_start(c, exe, &p, err, sizeof err)) {
      bench_fail(c, scen, "%s", err);
      return;
    }
    if (r == 0 && nsubs == 1)
      sv_ping(c, p.addr);
    int failed =
        tl_once(c, scen, p.addr, nsubs, grouped, secs, &m, &call, &app);
    if (srv_stop(c, &p, err, sizeof err) && !failed) {
      bench_fail(c, scen, "%s", err);
      failed = 1;
    }
    if (failed)
      return;
  }
  char note[300];
  snprintf(note, sizeof note,
           "%d subscription(s) over TCP%s, 1 durable append/ms; latency = "
           "the writer's receipt of the acknowledgement to delivery "
           "(signed); events/s = deliveries",
           nsubs,
           grouped ? ", all read by one client thread (evs_client_sub_wait)"
                   : ", one client thread each");
  bench_emit_meas(c, scen, &m, NULL, NULL, note);
  bench_emit_lat_sub(c, scen, "call-to-delivery", &call,
                     "from before the writer's evs_client_append call (so "
                     "it includes the commit's flush) to delivery");
  char ref[64];
  snprintf(ref, sizeof ref, "server/append-latency/live-%dsub%s", nsubs,
           grouped ? "-1thread" : "");
  bench_emit_meas(c, ref, &app, NULL, NULL,
                  "the writer's evs_client_append round trip (commit, sync)");
}

/* ---- the server's memory ---------------------------------------------------
 */

static void emit_mib(bench_ctx *c, const char *scen, const char *metric,
                     const double *v, int n, const char *ref, double refv,
                     const char *note) {
  bench_emit(c, scen, metric, "MiB", bench_stat_of(v, n), ref, refv, note);
}

static void sv_rss(bench_ctx *c, const char *exe) {
  int K = c->opt.quick ? 50 : 1000;
  char sc_idle[64], sc_conn[64], sc_subs[64], err[600];
  snprintf(sc_idle, sizeof sc_idle, "server/rss/idle");
  snprintf(sc_conn, sizeof sc_conn, "server/rss/%d-idle-connections", K);
  snprintf(sc_subs, sizeof sc_subs, "server/rss/%d-subscriptions", K);
  rlim_t lim = raise_nofile((rlim_t)(2 * K + 256));
  if (lim < (rlim_t)(K + 64)) {
    bench_fail(c, sc_conn, "RLIMIT_NOFILE is %llu, %d descriptors needed",
               (unsigned long long)lim, K + 64);
    return;
  }
  double base[BENCH_MAX_REPS], rss_c[BENCH_MAX_REPS], hwm_c[BENCH_MAX_REPS];
  double rss_s[BENCH_MAX_REPS], hwm_s[BENCH_MAX_REPS];
  int reps = sv_reps(c);
  evs_client **h = calloc((size_t)K, sizeof *h);
  evs_client_sub **hs = calloc((size_t)K, sizeof *hs);
  if (h == NULL || hs == NULL) {
    free(h);
    free(hs);
    return;
  }
  for (int r = 0; r < reps; r++) {
    srv_proc p;
    if (srv_start(c, exe, &p, err, sizeof err)) {
      bench_fail(c, sc_conn, "%s", err);
      free(h);
      free(hs);
      return;
    }
    double hwm;
    int rc = 0;
    const char *what = "rss";
    const char *scen = sc_conn;
    evs_client *w = NULL;
    struct timespec settle = { 0, 300000000 };
    nanosleep(&settle, NULL);
    if (proc_rss(p.pid, &base[r], &hwm))
      rc = EVS_EIO;
    /* K idle connections, handshake done. */
    int n = 0;
    for (; rc == 0 && n < K; n++) {
      what = "connect";
      rc = evs_client_connect(&h[n], p.addr, NULL);
    }
    if (rc == 0) {
      nanosleep(&settle, NULL);
      what = "rss";
      if (proc_rss(p.pid, &rss_c[r], &hwm_c[r]))
        rc = EVS_EIO;
    }
    for (int i = 0; i < n; i++)
      evs_client_close(h[i]);
    memset(h, 0, (size_t)K * sizeof *h);
    /* K idle subscriptions, each on its own connection, caught up, after
     * one event was delivered to every one of them. */
    n = 0;
    if (rc == 0) {
      scen = sc_subs;
      what = "connect";
      rc = evs_client_connect(&w, p.addr, NULL);
    }
    for (; rc == 0 && n < K; n++) {
      evs_client_sub_options o = EVS_CLIENT_SUB_OPTIONS_INIT;
      o.from_end = 1;
      what = "subscribe";
      rc = evs_client_subscribe(&hs[n], w, &o);
    }
    /* Polls every subscription until each has reached the end once
     * (evs_client_sub_next with a timeout would wait for an event). */
    double until = bench_now() + 30.0;
    for (int left = n; rc == 0 && left > 0;) {
      left = 0;
      for (int i = 0; rc == 0 && i < n; i++) {
        const evs_event *ev;
        if (evs_client_sub_caught_up(hs[i]))
          continue;
        int k = evs_client_sub_next(hs[i], &ev, 0);
        if (k < 0)
          rc = k;
        else if (!evs_client_sub_caught_up(hs[i]))
          left++;
      }
      if (left && bench_now() > until) {
        what = "catch-up";
        rc = EVS_ETIMEDOUT;
      } else if (left) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
      }
    }
    if (rc == 0) {
      evs_event_data ed;
      memset(&ed, 0, sizeof ed);
      ed.type = BENCH_TYPE;
      ed.data = "{}";
      ed.data_len = 2;
      what = "append";
      rc = evs_client_append(w, "rss-1", EVS_EXPECT_NO_STREAM, &ed, 1, NULL);
    }
    for (int i = 0; rc == 0 && i < n; i++) {
      const evs_event *ev;
      what = "delivery";
      int k = evs_client_sub_next(hs[i], &ev, 10000);
      rc = k < 0 ? k : k == 0 ? EVS_ETIMEDOUT : 0;
    }
    if (rc == 0) {
      nanosleep(&settle, NULL);
      what = "rss";
      if (proc_rss(p.pid, &rss_s[r], &hwm_s[r]))
        rc = EVS_EIO;
    }
    char detail[200];
    bench_fmt(detail, sizeof detail, "%s", evs_client_last_error());
    for (int i = 0; i < n; i++)
      evs_client_sub_close(hs[i]);
    memset(hs, 0, (size_t)K * sizeof *hs);
    evs_client_close(w);
    if (srv_stop(c, &p, err, sizeof err) && rc == 0) {
      bench_fail(c, scen, "%s", err);
      free(h);
      free(hs);
      return;
    }
    if (rc) {
      bench_fail(c, scen, "%s (after %d): %s %s", what, n, evs_strerror(rc),
                 detail);
      free(h);
      free(hs);
      return;
    }
  }
  free(h);
  free(hs);
  double b = bench_stat_of(base, reps).med;
  double per_c[BENCH_MAX_REPS], per_s[BENCH_MAX_REPS];
  for (int r = 0; r < reps; r++) {
    per_c[r] = (rss_c[r] - base[r]) * 1024.0 / K;
    per_s[r] = (rss_s[r] - base[r]) * 1024.0 / K;
  }
  emit_mib(c, sc_idle, "VmRSS", base, reps, NULL, NAN,
           "a fresh evstored (empty store, sync), no connection");
  char note[160];
  snprintf(note, sizeof note,
           "%d connections after their handshake, no request in flight", K);
  emit_mib(c, sc_conn, "VmRSS", rss_c, reps, "idle-server", b, note);
  emit_mib(c, sc_conn, "VmHWM", hwm_c, reps, NULL, NAN, "peak RSS so far");
  bench_emit(c, sc_conn, "RSS per connection", "KiB",
             bench_stat_of(per_c, reps), NULL, NAN,
             "(VmRSS - idle VmRSS) / connections");
  snprintf(note, sizeof note,
           "%d $all subscriptions from the end, one connection each, "
           "caught up, one event delivered to each",
           K);
  emit_mib(c, sc_subs, "VmRSS", rss_s, reps, "idle-server", b, note);
  emit_mib(c, sc_subs, "VmHWM", hwm_s, reps, NULL, NAN,
           "peak RSS of the server's life (connections, then "
           "subscriptions and the delivery to all of them)");
  bench_emit(c, sc_subs, "RSS per subscription", "KiB",
             bench_stat_of(per_s, reps), NULL, NAN,
             "(VmRSS - idle VmRSS) / subscriptions");
}

void sc_server(bench_ctx *c) {
  char exe[4300];
  if (srv_exe(c, exe, sizeof exe)) {
    char why[4400];
    bench_fmt(why, sizeof why,
              "evstored not found or not executable at %s (build it, or "
              "pass --evstored PATH)",
              exe);
    /* A server named explicitly and missing is an error, not a skip. */
    const char *env = getenv("EVS_BENCH_EVSTORED");
    if ((c->opt.evstored && *c->opt.evstored) || (env && *env))
      bench_fail(c, "server", "%s", why);
    else
      bench_skip(c, "server", why);
    return;
  }
  bench_log("server: %s", exe);
  /* 256 clients, 1,000 connections, 1,000 subscriptions: two descriptors
   * each on this machine (ours and the server's), plus the stores. */
  raise_nofile(c->opt.quick ? 1024 : 4096);
  uint8_t *pool = malloc(1024 * BENCH_DATA_SIZE);
  if (pool == NULL)
    return;
  uint64_t prng = 0x9001ull;
  for (unsigned i = 0; i < 1024; i++)
    bench_json_payload(pool + (size_t)i * BENCH_DATA_SIZE, BENCH_DATA_SIZE,
                       &prng);
  sv_appends(c, exe, pool, 1024);
  free(pool);
  sv_sub_live(c, exe, c->opt.quick ? 2 : 1, 0);
  sv_sub_live(c, exe, c->opt.quick ? 10 : 100, 0);
  sv_sub_live(c, exe, c->opt.quick ? 10 : 100, 1);
  sv_rss(c, exe);
}

#else

void sc_server(bench_ctx *c) {
  bench_skip(c, "server",
             "this build has no evstored or no client library "
             "(src/server/, src/client/)");
}

#endif
