/*
 * evs_crash — kill -9 a process appending to a store, at random moments,
 * and check after every kill that nothing acknowledged was lost and that
 * no append is partly visible. See docs/reliability.md.
 *
 * Usage: evs_crash [options]
 *   --mode library|server what gets killed: "library" (a process using the
 *                         library directly) or "server" (evstored, while a
 *                         load-generating child appends through the C
 *                         client; see server.c)
 *   --evstored PATH       server mode: the evstored binary (default: the
 *                         one built beside evs_crash, or $EVSTORED_BIN)
 *   --iterations N        kills to perform (default: $EVS_CRASH_ITERATIONS,
 *                         else 25)
 *   --threads N           appending threads in the child (default 8; 16
 *                         client connections in server mode)
 *   --durability D        sync (default), nometasync or nosync
 *   --max-delay-ms N      the kill lands 0..N ms after the child is busy
 *                         (default 400)
 *   --per-store N         iterations on one store before starting a fresh
 *                         one (default 10; the checks read the whole store)
 *   --seed N              workload and timing seed (default: from the clock;
 *                         always printed)
 *   --dir DIR             work directory (default: a new one in $TMPDIR);
 *                         kept when a check fails
 *   --no-ledger-sync      do not fdatasync the ledgers (faster; still sound
 *                         against a process kill, not against an OS crash)
 *   --fault F             test-only: phantom, ack-early or split (below)
 *   --expect-failure K    invert: succeed only if failures of kind K are
 *                         detected: "lost" (acknowledged events missing)
 *                         or "atomicity" (an append partly visible, or
 *                         its events not consecutive)
 *   --verbose             one line per iteration
 *
 * Exit status: 0 all checks passed (or, with --expect-failure, the expected
 * failure was detected); 1 a check failed (or the expected failure was not
 * detected); 2 the harness itself could not run.
 *
 * Negative controls (--fault): "phantom" acks appends that are never sent,
 * "ack-early" writes the ack before calling evs_append, "split" issues one
 * intended append as two appends. Each breaks the contract the harness
 * checks, so a harness that reports nothing under them is broken.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crash.h"

extern char **environ;

typedef struct cr_opts {
  const char *mode;
  int server; /* --mode server */
  const char *evstored;
  unsigned iterations;
  unsigned threads;
  evs_durability durability;
  unsigned max_delay_ms;
  unsigned per_store;
  uint64_t seed;
  const char *dir;
  int ledger_sync;
  cr_fault fault;
  const char *expect; /* NULL, "lost" or "atomicity" */
  int verbose;
} cr_opts;

static const char *const cr_durability_names[] = { "sync", "nometasync",
                                                   "nosync" };
static const char *const cr_fault_names[] = { "none", "phantom", "ack-early",
                                              "split" };

static int cr_parse_name(const char *s, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (strcmp(s, names[i]) == 0)
      return i;
  return -1;
}

static double cr_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void cr_sleep_ms(unsigned ms) {
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int cr_rm_one(const char *path, const struct stat *sb, int type,
                     struct FTW *ftw) {
  (void)sb;
  (void)ftw;
  return type == FTW_DP ? rmdir(path) : unlink(path);
}

static int cr_rmrf(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0)
    return errno == ENOENT ? 0 : -1;
  return nftw(path, cr_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- the child's side ---------------------------------------------------- */

static int cr_child_main(int argc, char **argv) {
  cr_child_opts o;
  memset(&o, 0, sizeof o);
  o.threads = 8;
  o.ledger_sync = 1;
  o.ready_fd = -1;
  const char *mode = "library";
  const char *addr = NULL;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : "";
    if (strcmp(a, "--no-ledger-sync") == 0) {
      o.ledger_sync = 0;
      continue;
    }
    i++;
    if (strcmp(a, "--mode") == 0)
      mode = v;
    else if (strcmp(a, "--addr") == 0)
      addr = v;
    else if (strcmp(a, "--store") == 0)
      o.store_dir = v;
    else if (strcmp(a, "--ledgers") == 0)
      o.ledger_dir = v;
    else if (strcmp(a, "--iteration") == 0)
      o.iteration = (unsigned)strtoul(v, NULL, 10);
    else if (strcmp(a, "--threads") == 0)
      o.threads = (unsigned)strtoul(v, NULL, 10);
    else if (strcmp(a, "--seed") == 0)
      o.seed = strtoull(v, NULL, 10);
    else if (strcmp(a, "--durability") == 0)
      o.durability = (evs_durability)cr_parse_name(v, cr_durability_names, 3);
    else if (strcmp(a, "--fault") == 0)
      o.fault = (cr_fault)cr_parse_name(v, cr_fault_names, 4);
    else if (strcmp(a, "--ready-fd") == 0)
      o.ready_fd = atoi(v);
    else {
      fprintf(stderr, "evs_crash child: unknown argument '%s'\n", a);
      return 2;
    }
  }
  /* Die with the parent (a ctest timeout must not leave writers behind). */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1)
    return 2;
  if (strcmp(mode, "library") == 0)
    return cr_child_library(&o);
  if (strcmp(mode, "server") == 0 && addr)
    return cr_child_server(&o, addr);
  fprintf(stderr, "evs_crash child: unknown mode '%s'\n", mode);
  return 2;
}

/* ---- the parent's side --------------------------------------------------- */

typedef struct cr_run {
  cr_opts o;
  char self[4096];
  char store_dir[4096];
  char ledger_dir[4096];
  uint64_t rng;
  cr_stats st;
  uint64_t stores;
  uint64_t early_kills;
  uint64_t in_flight_by_kill;
  cr_server srv; /* server mode */
} cr_run;

/* Starts the child; returns its pid (or -1) and the read end of its ready
 * pipe in *ready. */
static pid_t cr_spawn(cr_run *r, unsigned iteration, int *ready) {
  int p[2];
  if (pipe(p) != 0)
    return -1;
  /* Keep both ends clear of fd 3, which the child receives. */
  int rd = fcntl(p[0], F_DUPFD_CLOEXEC, 10);
  int wr = fcntl(p[1], F_DUPFD_CLOEXEC, 10);
  close(p[0]);
  close(p[1]);
  if (rd < 0 || wr < 0)
    return -1;
  char it[16], th[16], seed[32];
  snprintf(it, sizeof it, "%u", iteration);
  snprintf(th, sizeof th, "%u", r->o.threads);
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->o.seed);
  char *argv[] = { r->self,        "--child",
                   "--mode",       (char *)r->o.mode,
                   "--store",      r->store_dir,
                   "--ledgers",    r->ledger_dir,
                   "--iteration",  it,
                   "--threads",    th,
                   "--seed",       seed,
                   "--durability", (char *)cr_durability_names[r->o.durability],
                   "--fault",      (char *)cr_fault_names[r->o.fault],
                   "--ready-fd",   "3",
                   NULL,           NULL,
                   NULL,           NULL };
  size_t na = 20;
  if (!r->o.ledger_sync)
    argv[na++] = "--no-ledger-sync";
  if (r->o.server) {
    argv[na++] = "--addr";
    argv[na++] = r->srv.addr;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, wr, 3);
  pid_t pid;
  int rc = posix_spawn(&pid, r->self, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(wr);
  if (rc != 0) {
    fprintf(stderr, "evs_crash: posix_spawn: %s\n", strerror(rc));
    close(rd);
    return -1;
  }
  *ready = rd;
  return pid;
}

static void cr_describe_status(int status, char *out, size_t cap) {
  if (WIFEXITED(status))
    snprintf(out, cap, "exited with status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(out, cap, "killed by signal %d", WTERMSIG(status));
  else
    snprintf(out, cap, "status %#x", status);
}

/* Reads from the ready pipe until byte `want` arrives: 1, 0 on timeout,
 * -1 on end of file (the child exited). */
static int cr_wait_byte(int fd, char want, int timeout_ms) {
  double deadline = cr_now() + timeout_ms / 1000.0;
  for (;;) {
    int left = (int)((deadline - cr_now()) * 1000.0);
    if (left <= 0)
      return 0;
    struct pollfd pfd = { fd, POLLIN, 0 };
    int prc = poll(&pfd, 1, left);
    if (prc < 0 && errno == EINTR)
      continue;
    if (prc == 0)
      return 0;
    char c;
    ssize_t n = read(fd, &c, 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    if (c == want)
      return 1;
  }
}

/* One iteration: start, wait until busy, sleep, kill -9, check.
 * Returns 0, or 2 on a harness error. */
static int cr_iteration(cr_run *r, unsigned i, cr_model **model) {
  if (i % r->o.per_store == 0) {
    /* A fresh store (and fresh ledgers) for the next generation. */
    if (cr_rmrf(r->store_dir) || cr_rmrf(r->ledger_dir) ||
        mkdir(r->store_dir, 0755) || mkdir(r->ledger_dir, 0755)) {
      perror("evs_crash: preparing the work directory");
      return 2;
    }
    cr_model_free(*model);
    *model = cr_model_new();
    if (*model == NULL)
      return 2;
    r->stores++;
  }
  /* Server mode: evstored recovers the store left by the previous kill. */
  if (r->o.server && cr_server_start(&r->srv))
    return 2;
  int ready = -1;
  pid_t pid = cr_spawn(r, i, &ready);
  if (pid < 0) {
    cr_server_kill9(&r->srv);
    return 2;
  }
  /* One kill in ten lands early, while the child may still be opening the
   * store (recovery after the previous kill) or starting its threads; not
   * under a test-only fault, whose first appends must be made. */
  int early = r->o.fault == CR_FAULT_NONE && cr_rand(&r->rng) % 10 == 0;
  unsigned delay;
  if (early) {
    delay = (unsigned)(cr_rand(&r->rng) % 50);
  } else {
    struct pollfd pfd = { ready, POLLIN, 0 };
    int prc;
    do {
      prc = poll(&pfd, 1, 120000);
    } while (prc < 0 && errno == EINTR);
    char c = 0;
    if (prc != 1 || read(ready, &c, 1) != 1 || c != 'r') {
      int status = 0;
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      char how[64];
      cr_describe_status(status, how, sizeof how);
      fprintf(stderr,
              "evs_crash: iteration %u: the child never got busy (%s)\n", i,
              prc == 0 ? "timed out after 120 s" : how);
      close(ready);
      cr_server_kill9(&r->srv);
      return 2;
    }
    delay = r->o.max_delay_ms
                ? (unsigned)(cr_rand(&r->rng) % (r->o.max_delay_ms + 1))
                : 0;
  }
  cr_sleep_ms(delay);
  int hung = 0;
  if (r->o.server) {
    /* kill -9 evstored, then every client request in flight must fail
     * (or have succeeded), never hang: the child reports when each of its
     * threads has seen its connection fail. */
    cr_server_kill9(&r->srv);
    hung = cr_wait_byte(ready, 'd', 20000) == 0;
  }
  kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  close(ready);
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
    char how[64];
    cr_describe_status(status, how, sizeof how);
    fprintf(stderr, "evs_crash: iteration %u: the child %s before the kill\n",
            i, how);
    return 2;
  }
  cr_model *m = *model;
  if (cr_model_load(m, r->ledger_dir, i, r->o.threads, &r->st))
    return 2;
  uint64_t in_flight = cr_model_in_flight(m);
  uint64_t before = cr_stats_errors(&r->st);
  if (hung) {
    r->st.hung++;
    fprintf(stderr,
            "evs_crash: PROBLEM: iteration %u: client requests "
            "still pending 20 s after evstored was killed\n",
            i);
  }
  /* Server mode: restart evstored on the same directory, probe append and
   * verify through the client, stop it; then the library checks below. */
  if (r->o.server && cr_server_after_kill(&r->srv, m, i, &r->st))
    return 2;
  if (early)
    r->early_kills++;
  else if (in_flight > 0)
    r->st.kills_in_flight++;
  cr_check(m, r->store_dir, r->o.durability, i, &r->st, 20);
  r->st.iterations++;
  if (r->o.verbose || cr_stats_errors(&r->st) != before)
    printf("evs_crash: iteration %u: kill after %u ms%s, %llu appends in "
           "flight, %llu errors\n",
           i, delay, early ? " (early)" : "", (unsigned long long)in_flight,
           (unsigned long long)(cr_stats_errors(&r->st) - before));
  return 0;
}

static void cr_usage(void) {
  fprintf(stderr,
          "usage: evs_crash [--mode library|server] [--evstored PATH]\n"
          "                 [--iterations N] [--threads N]\n"
          "                 [--durability sync|nometasync|nosync]\n"
          "                 [--max-delay-ms N] [--per-store N] [--seed N]\n"
          "                 [--dir DIR] [--no-ledger-sync] [--verbose]\n"
          "                 [--fault phantom|ack-early|split\n"
          "                  --expect-failure lost|atomicity]\n");
}

static int cr_parse(cr_opts *o, int argc, char **argv) {
  const char *env = getenv("EVS_CRASH_ITERATIONS");
  o->mode = "library";
  o->evstored = getenv("EVSTORED_BIN");
#ifdef EVS_CRASH_EVSTORED
  if (o->evstored == NULL || *o->evstored == '\0')
    o->evstored = EVS_CRASH_EVSTORED;
#endif
  o->iterations = env && *env ? (unsigned)strtoul(env, NULL, 10) : 25;
  o->threads = 0; /* by mode */
  o->durability = EVS_SYNC;
  o->max_delay_ms = 400;
  o->per_store = 10;
  o->seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
  o->ledger_sync = 1;
  static const struct option lo[] = {
    { "mode", required_argument, NULL, 'm' },
    { "evstored", required_argument, NULL, 'E' },
    { "iterations", required_argument, NULL, 'n' },
    { "threads", required_argument, NULL, 't' },
    { "durability", required_argument, NULL, 'D' },
    { "max-delay-ms", required_argument, NULL, 'd' },
    { "per-store", required_argument, NULL, 'p' },
    { "seed", required_argument, NULL, 's' },
    { "dir", required_argument, NULL, 'w' },
    { "no-ledger-sync", no_argument, NULL, 'L' },
    { "fault", required_argument, NULL, 'f' },
    { "expect-failure", required_argument, NULL, 'e' },
    { "verbose", no_argument, NULL, 'v' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 }
  };
  int c, k;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 'm':
      o->mode = optarg;
      break;
    case 'E':
      o->evstored = optarg;
      break;
    case 'n':
      o->iterations = (unsigned)strtoul(optarg, NULL, 10);
      break;
    case 't':
      o->threads = (unsigned)strtoul(optarg, NULL, 10);
      break;
    case 'D':
      if ((k = cr_parse_name(optarg, cr_durability_names, 3)) < 0)
        return -1;
      o->durability = (evs_durability)k;
      break;
    case 'd':
      o->max_delay_ms = (unsigned)strtoul(optarg, NULL, 10);
      break;
    case 'p':
      o->per_store = (unsigned)strtoul(optarg, NULL, 10);
      break;
    case 's':
      o->seed = strtoull(optarg, NULL, 10);
      break;
    case 'w':
      o->dir = optarg;
      break;
    case 'L':
      o->ledger_sync = 0;
      break;
    case 'f':
      if ((k = cr_parse_name(optarg, cr_fault_names, 4)) < 0)
        return -1;
      o->fault = (cr_fault)k;
      break;
    case 'e':
      if (strcmp(optarg, "lost") && strcmp(optarg, "atomicity"))
        return -1;
      o->expect = optarg;
      break;
    case 'v':
      o->verbose = 1;
      break;
    default:
      return -1;
    }
  }
  o->server = strcmp(o->mode, "server") == 0;
  if (o->threads == 0)
    o->threads = o->server ? 16 : 8;
  if (optind != argc || o->threads > 64 || o->per_store == 0 ||
      o->iterations == 0)
    return -1;
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--child") == 0)
    return cr_child_main(argc, argv);
  setvbuf(stdout, NULL, _IOLBF, 0);
  cr_run *r = calloc(1, sizeof *r);
  if (r == NULL || cr_parse(&r->o, argc, argv)) {
    cr_usage();
    return 2;
  }
  if (strcmp(r->o.mode, "library") != 0 && !r->o.server) {
    fprintf(stderr, "evs_crash: unknown mode '%s'\n", r->o.mode);
    return 2;
  }
  if (r->o.server && (r->o.evstored == NULL || access(r->o.evstored, X_OK))) {
    fprintf(stderr, "evs_crash: server mode needs the evstored binary "
                    "(--evstored PATH)\n");
    return 2;
  }
  ssize_t n = readlink("/proc/self/exe", r->self, sizeof r->self - 1);
  if (n <= 0) {
    perror("evs_crash: /proc/self/exe");
    return 2;
  }
  r->self[n] = '\0';
  char workdir[3072];
  int own_dir = r->o.dir == NULL;
  if (own_dir) {
    const char *tmp = getenv("TMPDIR");
    snprintf(workdir, sizeof workdir, "%s/evs-crash-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(workdir) == NULL) {
      perror("evs_crash: mkdtemp");
      return 2;
    }
  } else {
    snprintf(workdir, sizeof workdir, "%s", r->o.dir);
    if (mkdir(workdir, 0755) != 0 && errno != EEXIST) {
      perror(workdir);
      return 2;
    }
  }
  snprintf(r->store_dir, sizeof r->store_dir, "%s/store", workdir);
  snprintf(r->ledger_dir, sizeof r->ledger_dir, "%s/ledgers", workdir);
  r->rng = r->o.seed ^ 0x6a09e667f3bcc909ull;
  if (r->o.server) {
    r->srv.bin = r->o.evstored;
    r->srv.durability = r->o.durability;
    snprintf(r->srv.data, sizeof r->srv.data, "%s", r->store_dir);
    snprintf(r->srv.port_file, sizeof r->srv.port_file, "%s/ports", workdir);
    snprintf(r->srv.log, sizeof r->srv.log, "%s/evstored.log", workdir);
  }
  printf("evs_crash: mode %s, durability %s, %u threads, %u iterations, "
         "kill 0..%u ms after the child is busy, %u iterations per store, "
         "seed %llu%s%s\n",
         r->o.mode, cr_durability_names[r->o.durability], r->o.threads,
         r->o.iterations, r->o.max_delay_ms, r->o.per_store,
         (unsigned long long)r->o.seed, r->o.fault ? ", test-only fault " : "",
         r->o.fault ? cr_fault_names[r->o.fault] : "");
  printf("evs_crash: work directory %s\n", workdir);

  double t0 = cr_now();
  cr_model *model = NULL;
  int hrc = 0;
  for (unsigned i = 0; i < r->o.iterations && hrc == 0; i++) {
    hrc = cr_iteration(r, i, &model);
    if (hrc == 0 && cr_stats_errors(&r->st) > 0)
      break; /* stop at the first failed check; keep the evidence */
    if (hrc == 0 && !r->o.verbose && (i + 1) % 50 == 0)
      printf("evs_crash: %u iterations, %llu acknowledged events checked, "
             "%.0f s\n",
             i + 1, (unsigned long long)r->st.events_acked_new, cr_now() - t0);
  }
  cr_model_free(model);
  cr_server_kill9(&r->srv);
  const cr_stats *st = &r->st;
  uint64_t errors = cr_stats_errors(st);
  uint64_t late = st->iterations - r->early_kills;
  printf("evs_crash: %llu iterations in %.1f s on %llu stores: %llu kills "
         "while busy (%llu with appends in flight), %llu early kills\n",
         (unsigned long long)st->iterations, cr_now() - t0,
         (unsigned long long)r->stores, (unsigned long long)late,
         (unsigned long long)st->kills_in_flight,
         (unsigned long long)r->early_kills);
  printf("evs_crash: found intact: %llu acknowledged appends (%llu events); "
         "%llu acknowledged-event checks in all (each check re-reads the "
         "whole store); %llu events read from $all and compared\n",
         (unsigned long long)st->appends_acked,
         (unsigned long long)st->events_acked_new,
         (unsigned long long)st->events_acked,
         (unsigned long long)st->events_scanned);
  printf("evs_crash: in flight at the kill: %llu appends (%llu committed, "
         "%llu absent); refused appends found absent: %llu; torn ledger "
         "records ignored: %llu\n",
         (unsigned long long)st->in_flight,
         (unsigned long long)st->in_flight_committed,
         (unsigned long long)(st->in_flight - st->in_flight_committed),
         (unsigned long long)st->nacked, (unsigned long long)st->torn_records);
  printf("evs_crash: lost %llu, mismatched %llu, partial %llu, misplaced "
         "%llu, unknown %llu, refused-but-visible %llu, verify errors %llu, "
         "other %llu\n",
         (unsigned long long)st->lost, (unsigned long long)st->mismatched,
         (unsigned long long)st->partial, (unsigned long long)st->misplaced,
         (unsigned long long)st->unknown,
         (unsigned long long)st->failed_visible,
         (unsigned long long)st->verify_errors, (unsigned long long)st->other);
  if (r->o.server)
    printf("evs_crash: server mode: evstored killed %llu times and "
           "restarted on the same store; client requests left hanging after "
           "a kill: %llu\n",
           (unsigned long long)st->iterations, (unsigned long long)st->hung);

  int rc;
  if (hrc) {
    rc = 2;
    printf("evs_crash: HARNESS ERROR (work directory kept: %s)\n", workdir);
  } else if (r->o.expect) {
    uint64_t got = strcmp(r->o.expect, "lost") == 0
                       ? st->lost
                       : st->partial + st->misplaced;
    rc = got > 0 ? 0 : 1;
    printf("evs_crash: negative control (%s): %s\n", cr_fault_names[r->o.fault],
           got ? "the harness detected the broken contract"
               : "NOT DETECTED: the harness is blind to this fault");
  } else if (errors) {
    rc = 1;
    printf("evs_crash: FAIL (store and ledgers kept in %s; seed %llu)\n",
           workdir, (unsigned long long)r->o.seed);
  } else if (late > 0 && st->kills_in_flight * 2 < late) {
    rc = 2;
    printf("evs_crash: HARNESS ERROR: only %llu of %llu kills landed while "
           "appends were in flight\n",
           (unsigned long long)st->kills_in_flight, (unsigned long long)late);
  } else {
    rc = 0;
    printf("evs_crash: PASS: nothing acknowledged was lost, no append was "
           "partly visible\n");
  }
  if (rc == 0) {
    cr_rmrf(r->store_dir);
    cr_rmrf(r->ledger_dir);
    if (r->o.server) {
      unlink(r->srv.port_file);
      unlink(r->srv.log);
    }
    if (own_dir)
      rmdir(workdir);
  }
  free(r);
  return rc;
}
