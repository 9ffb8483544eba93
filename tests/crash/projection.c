/*
 * crash_projection_runner: the projection runner under kill -9.
 *
 * Each iteration forks a child that opens the store and its views, starts a
 * runner with three projections ("stream-state", "counts" and a custom
 * "per-stream" one that counts events per stream and bumps one marker key
 * per event) and appends from its main thread until it is killed. The
 * parent kills it with SIGKILL at a random moment after it has started
 * working, then (with the child gone) opens the store and the views, runs
 * the runner to the head (evs_runner_catch_up) and checks:
 *
 *  - every view equals, key for key and byte for byte, the one a clean
 *    rebuild from position 0 writes into a fresh views directory;
 *  - every marker of "per-stream" is "1" (no event applied twice), and
 *    there is one per event (none skipped);
 *  - every projection's checkpoint equals the head, none failed.
 *
 * Kills: $EVS_CRASH_ITERATIONS (default 25), or --iterations N. The seed is
 * printed; --seed N (or $EVS_CRASH_SEED) repeats a run. The store and the
 * views use EVS_NOSYNC: a process kill leaves the page cache intact, so the
 * durability level does not change what this test sees (docs/reliability.md).
 *
 * LMDB handles never cross fork(): the parent opens the store and views
 * only while no child runs, and closes them before the next fork.
 * Plain main(): exits 0 when every check passed, 1 otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "evstore/evstore.h"

#define NAMES 3
static const char *const g_names[NAMES] = { "stream-state", "counts",
                                            "per-stream" };

static unsigned g_failures;

static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "crash_projection_runner: FAIL: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  g_failures++;
}

static void die(const char *what, int rc) {
  fprintf(stderr, "crash_projection_runner: %s: %s (%d): %s\n", what,
          evs_err_name(rc), rc, evs_last_error());
  exit(2);
}

/* ---- the custom projection ------------------------------------------- */

static int bump(evs_view_txn *t, const char *key) {
  evs_slice v;
  uint64_t n = 0;
  int rc = evs_view_get(t, key, strlen(key), &v);
  if (rc == 0) {
    char buf[32];
    if (v.len >= sizeof buf)
      return EVS_ECORRUPT;
    memcpy(buf, v.data, v.len);
    buf[v.len] = '\0';
    n = strtoull(buf, NULL, 10);
  } else if (rc != EVS_ENOTFOUND) {
    return rc;
  }
  char out[32];
  int len = snprintf(out, sizeof out, "%" PRIu64, n + 1);
  return evs_view_put(t, key, strlen(key), out, (size_t)len);
}

/* --fault double: the handler applies every 10th event twice (in the
 * children and in the recovery catch-ups, not in the clean rebuilds), the
 * breakage the checks must catch. */
static int g_fault_double;

/* "n/<stream>": events of the stream; "e/<position>": times applied. */
static int per_stream(evs_view_txn *t, const evs_event *ev, void *payload) {
  (void)payload;
  char key[320];
  int times = g_fault_double && ev->position % 10 == 0 ? 2 : 1;
  int rc = 0;
  for (int i = 0; i < times && rc == 0; i++) {
    snprintf(key, sizeof key, "n/%.*s", (int)ev->stream.len,
             (const char *)ev->stream.data);
    rc = bump(t, key);
    if (rc == 0) {
      snprintf(key, sizeof key, "e/%012" PRIu64, ev->position);
      rc = bump(t, key);
    }
  }
  return rc;
}

/* Registers the three projections; returns 0 or an error. */
static int add_projections(evs_runner *r) {
  evs_projection p;
  int rc = evs_proj_builtin(&p, "stream-state");
  if (rc == 0)
    rc = evs_runner_add(r, &p);
  if (rc == 0)
    rc = evs_proj_builtin(&p, "counts");
  if (rc == 0)
    rc = evs_runner_add(r, &p);
  if (rc == 0) {
    evs_projection c = EVS_PROJECTION_INIT;
    c.name = "per-stream";
    c.handler = per_stream;
    rc = evs_runner_add(r, &c);
  }
  return rc;
}

static int open_views(evs_views **out, evs_store *s, const char *path) {
  evs_views_options vo = EVS_VIEWS_OPTIONS_INIT;
  vo.durability = EVS_NOSYNC;
  vo.path = path;
  return evs_views_open(out, s, &vo);
}

static int open_store(evs_store **out, const char *dir) {
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.durability = EVS_NOSYNC;
  return evs_store_open(out, dir, &o);
}

/* ---- the child ---------------------------------------------------------- */

static uint64_t rng_next(uint64_t *x) { /* xorshift64* */
  *x ^= *x >> 12;
  *x ^= *x << 25;
  *x ^= *x >> 27;
  return *x * 2685821657736338717ull;
}

/* Runs the runner's threads and appends until killed. Never returns. */
static void child(const char *dir, uint64_t seed, int ready_fd) {
  evs_store *s = NULL;
  evs_views *v = NULL;
  evs_runner *r = NULL;
  if (open_store(&s, dir) != 0)
    _exit(10);
  if (open_views(&v, s, NULL) != 0)
    _exit(11);
  evs_runner_options ro = EVS_RUNNER_OPTIONS_INIT;
  ro.max_batch_events = 64; /* many commits: many places for the kill */
  if (evs_runner_create(&r, v, &ro) != 0)
    _exit(12);
  if (add_projections(r) != 0)
    _exit(13);
  if (evs_runner_start(r) != 0)
    _exit(14);
  static const char *const cats[] = { "acct", "shop", "user", "raw" };
  static const char *const types[] = { "Opened", "Posted", "Renamed",
                                       "Closed" };
  uint64_t x = seed | 1;
  for (unsigned long i = 0;; i++) {
    char stream[32];
    uint64_t pick = rng_next(&x);
    const char *cat = cats[pick % 4];
    snprintf(stream, sizeof stream, "%s-%" PRIu64, cat, (pick >> 8) % 50);
    evs_event_data evs[8];
    char bufs[8][96];
    size_t n = 1 + (size_t)((pick >> 20) % 8);
    for (size_t k = 0; k < n; k++) {
      uint64_t y = rng_next(&x);
      int len;
      if (cat[0] == 'r' && y % 5 == 0) /* makes the stream unfoldable */
        len = snprintf(bufs[k], sizeof bufs[k], "not json %" PRIu64, y % 1000);
      else if (y % 7 == 0)
        len = snprintf(bufs[k], sizeof bufs[k], "{\"k%u\":null}",
                       (unsigned)(y % 4));
      else
        len = snprintf(bufs[k], sizeof bufs[k],
                       "{\"k%u\":%" PRIu64 ",\"n\":{\"i\":%lu}}",
                       (unsigned)(y % 4), y % 100000, i);
      memset(&evs[k], 0, sizeof evs[k]);
      evs[k].type = types[(y >> 16) % 4];
      evs[k].data = bufs[k];
      evs[k].data_len = (size_t)len;
    }
    if (evs_append(s, stream, EVS_EXPECT_ANY, evs, n, NULL) != 0)
      _exit(15);
    if (i == 0) { /* working: the runner runs, one append is in */
      char c = 'r';
      if (write(ready_fd, &c, 1) != 1)
        _exit(16);
      close(ready_fd);
    }
  }
}

/* ---- checks --------------------------------------------------------------- */

typedef struct kv {
  void *key, *val;
  size_t key_len, val_len;
} kv;

typedef struct dump {
  kv *kv;
  size_t n, cap;
} dump;

static int dump_cb(evs_slice key, evs_slice val, void *payload) {
  dump *d = payload;
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 1024;
    kv *p = realloc(d->kv, cap * sizeof *p);
    if (p == NULL)
      return EVS_ENOMEM;
    d->kv = p;
    d->cap = cap;
  }
  kv *e = &d->kv[d->n];
  e->key = malloc(key.len + 1);
  e->val = malloc(val.len + 1);
  if (e->key == NULL || e->val == NULL) {
    free(e->key);
    free(e->val);
    return EVS_ENOMEM;
  }
  memcpy(e->key, key.data, key.len);
  ((char *)e->key)[key.len] = '\0';
  memcpy(e->val, val.data, val.len);
  ((char *)e->val)[val.len] = '\0';
  e->key_len = key.len;
  e->val_len = val.len;
  d->n++;
  return 0;
}

static void dump_free(dump *d) {
  for (size_t i = 0; i < d->n; i++) {
    free(d->kv[i].key);
    free(d->kv[i].val);
  }
  free(d->kv);
  memset(d, 0, sizeof *d);
}

static dump dump_view(evs_views *v, const char *name) {
  dump d = { NULL, 0, 0 };
  evs_view_txn *t = NULL;
  int rc = evs_view_read_begin(&t, v, name);
  if (rc != 0)
    die("evs_view_read_begin", rc);
  rc = evs_view_scan_prefix(t, "", 0, dump_cb, &d);
  evs_view_read_end(t);
  if (rc != 0)
    die("evs_view_scan_prefix", rc);
  return d;
}

/* Compares two dumps byte for byte; returns the number of differences
 * (keys missing on either side count, as do different values). */
static size_t compare(const char *name, const dump *a, const dump *b) {
  size_t i = 0, j = 0, diffs = 0;
  while (i < a->n || j < b->n) {
    int c;
    if (i == a->n)
      c = 1;
    else if (j == b->n)
      c = -1;
    else {
      size_t l = a->kv[i].key_len < b->kv[j].key_len ? a->kv[i].key_len
                                                     : b->kv[j].key_len;
      c = memcmp(a->kv[i].key, b->kv[j].key, l);
      if (c == 0)
        c = a->kv[i].key_len < b->kv[j].key_len   ? -1
            : a->kv[i].key_len > b->kv[j].key_len ? 1
                                                  : 0;
    }
    if (c == 0) {
      if (a->kv[i].val_len != b->kv[j].val_len ||
          memcmp(a->kv[i].val, b->kv[j].val, a->kv[i].val_len) != 0) {
        if (diffs++ < 5)
          fail("%s: key %s: after kills \"%s\", clean \"%s\"", name,
               (char *)a->kv[i].key, (char *)a->kv[i].val,
               (char *)b->kv[j].val);
      }
      i++;
      j++;
    } else if (c < 0) {
      if (diffs++ < 5)
        fail("%s: key %s only in the view after kills", name,
             (char *)a->kv[i].key);
      i++;
    } else {
      if (diffs++ < 5)
        fail("%s: key %s only in the clean rebuild", name,
             (char *)b->kv[j].key);
      j++;
    }
  }
  if (diffs > 5)
    fail("%s: %zu differences in all", name, diffs);
  return diffs;
}

static int rm_cb(const char *p, const struct stat *sb, int flag,
                 struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(p);
}

static void rmrf(const char *dir) {
  nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

typedef struct totals {
  uint64_t behind_at_kill; /* kills with some projection behind the head */
  uint64_t replayed;       /* events the recovery catch-ups applied */
  size_t mismatches;
} totals;

/* After a kill: recover, rebuild cleanly, compare. Returns the head. */
static uint64_t check(const char *dir, unsigned iter, int fault_double,
                      totals *tot) {
  evs_store *s = NULL;
  evs_views *v = NULL, *clean = NULL;
  evs_runner *r = NULL;
  int rc = open_store(&s, dir);
  if (rc != 0)
    die("evs_store_open", rc);
  uint64_t head = 0;
  if ((rc = evs_head_position(s, &head)) != 0)
    die("evs_head_position", rc);
  if ((rc = open_views(&v, s, NULL)) != 0)
    die("evs_views_open", rc);

  /* Where the child's runner was when it died. */
  int behind = 0;
  for (int i = 0; i < NAMES; i++) {
    evs_proj_status st;
    rc = evs_views_status(v, g_names[i], &st);
    if (rc == EVS_ENOTFOUND || (rc == 0 && st.checkpoint < head))
      behind = 1;
    else if (rc != 0)
      die("evs_views_status", rc);
  }
  tot->behind_at_kill += (uint64_t)behind;
  g_fault_double = fault_double;

  /* Recovery: the runner to the head, over the views the kill left. */
  if ((rc = evs_runner_create(&r, v, NULL)) != 0)
    die("evs_runner_create", rc);
  if ((rc = add_projections(r)) != 0)
    die("add_projections", rc);
  if ((rc = evs_runner_catch_up(r)) != 0)
    fail("iteration %u: evs_runner_catch_up after the kill: %s", iter,
         evs_err_name(rc));
  for (int i = 0; i < NAMES; i++) {
    evs_proj_status st;
    if ((rc = evs_runner_status(r, g_names[i], &st)) != 0)
      die("evs_runner_status", rc);
    tot->replayed += st.events_applied;
    if (st.checkpoint != head || st.failed || st.rebuilding)
      fail("iteration %u: %s: checkpoint %" PRIu64 ", head %" PRIu64
           ", failed %d (%s), rebuilding %d",
           iter, g_names[i], st.checkpoint, head, st.failed, st.error,
           st.rebuilding);
  }
  evs_runner_free(r);
  r = NULL;
  g_fault_double = 0;

  /* The clean rebuild: a fresh views directory, from position 0. */
  char clean_dir[4096 + 32];
  snprintf(clean_dir, sizeof clean_dir, "%s/clean-views", dir);
  rmrf(clean_dir);
  if ((rc = open_views(&clean, s, clean_dir)) != 0)
    die("evs_views_open (clean)", rc);
  evs_runner_options ro = EVS_RUNNER_OPTIONS_INIT;
  ro.max_batch_events = 100000;
  ro.max_batch_bytes = 64u * 1024 * 1024;
  if ((rc = evs_runner_create(&r, clean, &ro)) != 0)
    die("evs_runner_create (clean)", rc);
  if ((rc = add_projections(r)) != 0)
    die("add_projections (clean)", rc);
  if ((rc = evs_runner_catch_up(r)) != 0)
    die("evs_runner_catch_up (clean)", rc);
  evs_runner_free(r);

  for (int i = 0; i < NAMES; i++) {
    dump a = dump_view(v, g_names[i]);
    dump b = dump_view(clean, g_names[i]);
    tot->mismatches += compare(g_names[i], &a, &b);
    if (i == 2) {
      uint64_t markers = 0, twice = 0;
      for (size_t k = 0; k < a.n; k++) {
        if (((char *)a.kv[k].key)[0] != 'e')
          continue;
        markers++;
        if (strcmp(a.kv[k].val, "1") != 0 && twice++ < 5)
          fail("iteration %u: %s applied %s times", iter,
               (char *)a.kv[k].key, (char *)a.kv[k].val);
      }
      if (twice > 5)
        fail("iteration %u: %" PRIu64 " events applied more than once", iter,
             twice);
      if (markers != head)
        fail("iteration %u: %" PRIu64 " markers for %" PRIu64 " events", iter,
             markers, head);
    }
    dump_free(&a);
    dump_free(&b);
  }
  evs_views_close(clean);
  evs_views_close(v);
  evs_store_close(s);
  rmrf(clean_dir);
  return head;
}

/* ---- main ----------------------------------------------------------------- */

int main(int argc, char **argv) {
  const char *env = getenv("EVS_CRASH_ITERATIONS");
  unsigned iterations = env && *env ? (unsigned)strtoul(env, NULL, 10) : 25;
  env = getenv("EVS_CRASH_SEED");
  uint64_t seed = env && *env ? strtoull(env, NULL, 10)
                              : ((uint64_t)time(NULL) ^
                                 ((uint64_t)getpid() << 32));
  unsigned max_delay_ms = 40;
  int keep = 0, fault_double = 0, expect_failure = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc)
      iterations = (unsigned)strtoul(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
      seed = strtoull(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--max-delay-ms") == 0 && i + 1 < argc)
      max_delay_ms = (unsigned)strtoul(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--keep") == 0)
      keep = 1;
    else if (strcmp(argv[i], "--fault") == 0 && i + 1 < argc &&
             strcmp(argv[i + 1], "double") == 0) {
      fault_double = 1;
      i++;
    } else if (strcmp(argv[i], "--expect-failure") == 0)
      expect_failure = 1;
    else {
      fprintf(stderr, "usage: evs_crash_projection [--iterations N] "
                      "[--seed N] [--max-delay-ms N] [--keep]\n"
                      "       [--fault double --expect-failure]\n");
      return 2;
    }
  }
  if (max_delay_ms < 2)
    max_delay_ms = 2;
  const char *tmp = getenv("TMPDIR");
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/evs-crash-proj-XXXXXX",
           tmp && *tmp ? tmp : "/tmp");
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 2;
  }
  printf("crash_projection_runner: %u kills, seed %" PRIu64 ", dir %s\n",
         iterations, seed, dir);
  fflush(stdout);

  uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 1;
  totals tot = { 0, 0, 0 };
  uint64_t head = 0;
  unsigned killed = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (unsigned iter = 0; iter < iterations && g_failures == 0; iter++) {
    uint64_t child_seed = rng_next(&rng);
    /* 1 ms .. max_delay_ms after the child is working */
    unsigned delay_us = 1000 + (unsigned)(rng_next(&rng) %
                                          ((uint64_t)max_delay_ms * 1000 - 999));
    int fds[2];
    if (pipe(fds) != 0) {
      perror("pipe");
      return 2;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      return 2;
    }
    if (pid == 0) {
      close(fds[0]);
      g_fault_double = fault_double;
      child(dir, child_seed, fds[1]);
      _exit(99);
    }
    close(fds[1]);
    char c;
    ssize_t n = read(fds[0], &c, 1);
    close(fds[0]);
    if (n == 1) {
      struct timespec ts = { delay_us / 1000000,
                             (long)(delay_us % 1000000) * 1000L };
      nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
      fail("iteration %u: the child did not die by the kill (%s %d)", iter,
           WIFEXITED(status) ? "exit" : "signal",
           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
      break;
    }
    killed++;
    uint64_t before = head;
    head = check(dir, iter, fault_double, &tot);
    if (head <= before)
      fail("iteration %u: the child appended nothing (head %" PRIu64 ")",
           iter, head);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) +
                (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("crash_projection_runner: %u kills, %" PRIu64 " events, "
         "%" PRIu64 " kills with a projection behind the head, "
         "%" PRIu64 " events re-applied by recoveries, %zu mismatches, "
         "%.1f s\n",
         killed, head, tot.behind_at_kill, tot.replayed, tot.mismatches, secs);
  if (iterations > 0 && tot.behind_at_kill == 0)
    fail("no kill found a projection behind the head: the kills did not land "
         "in the runner's work");
  if ((g_failures == 0 || expect_failure) && !keep)
    rmrf(dir);
  else
    fprintf(stderr, "crash_projection_runner: store kept in %s (seed %" PRIu64
                    ")\n",
            dir, seed);
  if (expect_failure) {
    printf("crash_projection_runner: %s\n",
           g_failures ? "the expected failure was reported: OK"
                      : "FAIL: the injected fault went unreported");
    return g_failures ? 0 : 1;
  }
  if (g_failures) {
    fprintf(stderr, "crash_projection_runner: %u failures\n", g_failures);
    return 1;
  }
  printf("crash_projection_runner: OK\n");
  return 0;
}
