/*
 * Exactly-once projections under kill -9: a child process runs the
 * projections and is killed at random moments, 20 times, while another
 * child keeps appending between the kills; then a final run completes. The
 * views must equal the ones a single clean run builds: no event applied
 * twice, none skipped.
 *
 * LMDB handles must never cross fork(): every store and views environment
 * is opened inside the child that uses it, and the test process opens them
 * only after the last child has exited.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "projutil.h"
#include "testutil.h"

TestSuite(proj_exactly_once, .init = tu_setup_dir, .timeout = 120);

#define INITIAL_EVENTS 5000
#define ROUNDS 20

/* ---- the projection under test ------------------------------------------ */

static int bump(evs_view_txn *t, const char *key, uint64_t by) {
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
  int len = snprintf(out, sizeof out, "%" PRIu64, n + by);
  return evs_view_put(t, key, strlen(key), out, (size_t)len);
}

/* Per-stream event count and amount sum, a grand total, and one marker per
 * event that counts how many times it was applied. */
static int ledger(evs_view_txn *t, const evs_event *ev, void *payload) {
  (void)payload;
  char key[320];
  uint64_t amount = 0;
  if (ev->data.len > 10 && memcmp(ev->data.data, "{\"amount\":", 10) == 0)
    amount = strtoull((const char *)ev->data.data + 10, NULL, 10);
  snprintf(key, sizeof key, "n/%.*s", (int)ev->stream.len,
           (const char *)ev->stream.data);
  int rc = bump(t, key, 1);
  if (rc == 0) {
    key[0] = 's';
    rc = bump(t, key, amount);
  }
  if (rc == 0)
    rc = bump(t, "total", amount);
  if (rc == 0) {
    snprintf(key, sizeof key, "e/%012" PRIu64, ev->position);
    rc = bump(t, key, 1);
  }
  return rc;
}

static void add_projections(evs_runner *r) {
  evs_projection p = EVS_PROJECTION_INIT;
  p.name = "ledger";
  p.handler = ledger;
  if (evs_runner_add(r, &p) != 0)
    _exit(20);
  evs_projection sp;
  if (evs_proj_builtin(&sp, "stream-state") || evs_runner_add(r, &sp))
    _exit(21);
  p.name = "ledger-acct";
  p.category = "acct";
  if (evs_runner_add(r, &p) != 0)
    _exit(22);
}

/* ---- children ---------------------------------------------------------------
 */

static evs_store *child_store(void) {
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.durability = EVS_NOSYNC;
  evs_store *s = NULL;
  if (evs_store_open(&s, tu_dir, &o) != 0)
    _exit(10);
  return s;
}

/* Appends `n` events (forever when n < 0) in appends of 10. */
static void append_events(evs_store *s, int n, uint64_t seed) {
  char stream[32];
  for (int i = 0; n < 0 || i < n; i += 10) {
    evs_event_data evs[10];
    char bufs[10][64];
    uint64_t x = seed * 7919 + (uint64_t)i;
    snprintf(stream, sizeof stream, "%s-%" PRIu64, x % 3 ? "acct" : "shop",
             x % 97);
    for (int k = 0; k < 10; k++) {
      int len = snprintf(bufs[k], sizeof bufs[k], "{\"amount\":%d,\"k%d\":%d}",
                         (i + k) % 113, k % 4, i + k);
      memset(&evs[k], 0, sizeof evs[k]);
      evs[k].type = "Posted";
      evs[k].data = bufs[k];
      evs[k].data_len = (size_t)len;
    }
    if (evs_append(s, stream, EVS_EXPECT_ANY, evs, 10, NULL) != 0)
      _exit(11);
  }
}

static evs_runner *child_runner(evs_store *s, evs_views **v) {
  evs_views_options vo = EVS_VIEWS_OPTIONS_INIT;
  vo.durability = EVS_NOSYNC;
  if (evs_views_open(v, s, &vo) != 0)
    _exit(12);
  evs_runner_options ro = EVS_RUNNER_OPTIONS_INIT;
  ro.max_batch_events = 64;
  evs_runner *r = NULL;
  if (evs_runner_create(&r, *v, &ro) != 0)
    _exit(13);
  add_projections(r);
  return r;
}

static uint64_t g_seed;
static int g_ready_fd = -1; /* the child writes one byte when it starts work */

static void ready(void) {
  if (g_ready_fd >= 0) {
    char c = 'r';
    if (write(g_ready_fd, &c, 1) != 1)
      _exit(17);
  }
}

/* Appends a first part of the log, then exits. */
static void child_fill(void) {
  evs_store *s = child_store();
  append_events(s, INITIAL_EVENTS, 1);
  evs_store_close(s);
  _exit(0);
}

/* Live mode: runner threads follow the log while this thread appends, until
 * the process is killed. */
static void child_live(void) {
  evs_store *s = child_store();
  evs_views *v = NULL;
  evs_runner *r = child_runner(s, &v);
  if (evs_runner_start(r) != 0)
    _exit(15);
  ready();
  append_events(s, -1, g_seed);
  _exit(16);
}

/* Catch-up mode: applies the log up to the head, then exits (if not killed
 * first). */
static void child_catch_up(void) {
  evs_store *s = child_store();
  evs_views *v = NULL;
  evs_runner *r = child_runner(s, &v);
  /* Some rounds start blue/green rebuilds, so that kills also land in
   * rebuild batches and in the switch. */
  if (g_seed % 4 == 3 &&
      (evs_runner_rebuild(r, "ledger") || evs_runner_rebuild(r, "ledger-acct")))
    _exit(18);
  ready();
  int rc = evs_runner_catch_up(r);
  evs_runner_free(r);
  evs_views_close(v);
  evs_store_close(s);
  _exit(rc == 0 ? 0 : 14);
}

/* Runs fn in a child; kills it kill_after_us after it said it started
 * working (0 = never). Returns 1 if it was killed, 0 if it exited 0. */
static int in_child(void (*fn)(void), unsigned kill_after_us) {
  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  fflush(NULL);
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    close(fds[0]);
    g_ready_fd = kill_after_us ? fds[1] : -1;
    fn();
    _exit(99);
  }
  close(fds[1]);
  if (kill_after_us) {
    /* Wait for the child to start working (or to exit), so that the kill
     * lands in the middle of the work however slow the build is. */
    char c;
    ssize_t n = read(fds[0], &c, 1);
    (void)n;
    struct timespec ts = { kill_after_us / 1000000,
                           (long)(kill_after_us % 1000000) * 1000L };
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
  }
  close(fds[0]);
  int status;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  if (WIFSIGNALED(status)) {
    cr_assert_eq(WTERMSIG(status), SIGKILL);
    return 1;
  }
  cr_assert(WIFEXITED(status));
  cr_assert_eq(WEXITSTATUS(status), 0, "child exited with %d",
               WEXITSTATUS(status));
  return 0;
}

Test(proj_exactly_once, kill9_at_random_points_equals_a_clean_run) {
  srand((unsigned)time(NULL));
  in_child(child_fill, 0);
  int killed = 0;
  for (int round = 0; round < ROUNDS; round++) {
    /* Even rounds: kill a live runner while it races an appender; odd
     * rounds: kill a catch-up of what the live rounds left behind (every
     * other one after requesting rebuilds). */
    unsigned us = 1000 + (unsigned)(rand() % 30000);
    g_seed = (uint64_t)round + 2;
    killed += in_child(round % 2 ? child_catch_up : child_live, us);
  }
  cr_assert_geq(killed, ROUNDS / 2,
                "only %d of %d runs were killed before "
                "finishing: the test did not test",
                killed, ROUNDS);
  in_child(child_catch_up, 0);

  /* Now, and only now, this process opens the store. */
  evs_store *s = pu_open_store(tu_dir);
  evs_views *crashed = pu_open_views(s, NULL);
  char clean_dir[4096];
  snprintf(clean_dir, sizeof clean_dir, "%s/clean-views", tu_dir);
  evs_views *clean = pu_open_views(s, clean_dir);
  evs_runner *r = NULL;
  evs_runner_options ro = EVS_RUNNER_OPTIONS_INIT;
  ro.max_batch_events = 100000;
  ro.max_batch_bytes = 64u * 1024 * 1024;
  cr_assert_eq(evs_runner_create(&r, clean, &ro), 0);
  add_projections(r);
  cr_assert_eq(evs_runner_catch_up(r), 0);
  evs_runner_free(r);

  uint64_t head = tu_head(s);
  cr_assert_gt(head, INITIAL_EVENTS);
  const char *names[] = { "ledger", "stream-state", "ledger-acct" };
  for (int i = 0; i < 3; i++) {
    pu_view a = pu_view_dump(crashed, names[i]);
    pu_view b = pu_view_dump(clean, names[i]);
    pu_view_assert_equal(&a, &b);
    if (i == 0) {
      /* Every event applied exactly once. */
      size_t markers = 0;
      for (size_t k = 0; k < a.n; k++) {
        if (a.kv[k].key[0] == 'e') {
          markers++;
          cr_assert_str_eq(a.kv[k].val, "1", "%s applied %s times", a.kv[k].key,
                           a.kv[k].val);
        }
      }
      cr_assert_eq(markers, head);
    }
    pu_view_free(&a);
    pu_view_free(&b);
    evs_proj_status st;
    cr_assert_eq(evs_views_status(crashed, names[i], &st), 0);
    cr_assert_eq(st.checkpoint, head);
    cr_assert_not(st.failed);
    cr_assert_not(st.rebuilding);
    if (i != 1)
      cr_assert_geq(st.generation, 1,
                    "%s: the rebuilds completed (generation %u)", names[i],
                    st.generation);
  }
  evs_views_close(clean);
  evs_views_close(crashed);
  evs_store_close(s);
  tu_rmrf(tu_dir);
  free(tu_dir);
}
