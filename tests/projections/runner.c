/*
 * The projection runner: views and checkpoints, several projections at
 * once, live updates, handler error isolation, blue/green rebuilds,
 * queries while the runner writes, and restart from the checkpoint.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "projutil.h"
#include "testutil.h"

static evs_store *st;
static evs_views *vw;

static void setup(void) {
  tu_setup_dir();
  st = pu_open_store(tu_dir);
  vw = pu_open_views(st, NULL);
}

static void teardown(void) {
  evs_views_close(vw);
  evs_store_close(st);
  tu_rmrf(tu_dir);
  free(tu_dir);
}

TestSuite(proj_runner, .init = setup, .fini = teardown, .timeout = 120);

/* ---- a test projection: per-stream event counts and a total ------------- */

typedef struct counter {
  int fail_on_data; /* fail on an event whose data is "fail" */
  int factor;       /* counts add this much per event (1 = v1, 2 = v2) */
  pthread_mutex_t *gate_mu; /* when set: block at `gate_pos` until open */
  pthread_cond_t *gate_cv;
  int *gate_open;
  uint64_t gate_pos;
} counter;

static int get_u64(evs_view_txn *t, const char *key, uint64_t *out) {
  evs_slice v;
  int rc = evs_view_get(t, key, strlen(key), &v);
  if (rc == EVS_ENOTFOUND) {
    *out = 0;
    return 0;
  }
  if (rc)
    return rc;
  char buf[32];
  if (v.len >= sizeof buf)
    return EVS_ECORRUPT;
  memcpy(buf, v.data, v.len);
  buf[v.len] = '\0';
  *out = strtoull(buf, NULL, 10);
  return 0;
}

static int put_u64(evs_view_txn *t, const char *key, uint64_t v) {
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%" PRIu64, v);
  return evs_view_put(t, key, strlen(key), buf, (size_t)n);
}

static int counter_handler(evs_view_txn *t, const evs_event *ev, void *p) {
  counter *c = p;
  if (c->fail_on_data && ev->data.len == 4 &&
      memcmp(ev->data.data, "fail", 4) == 0)
    return -1;
  if (c->gate_mu && ev->position == c->gate_pos) {
    pthread_mutex_lock(c->gate_mu);
    while (!*c->gate_open)
      pthread_cond_wait(c->gate_cv, c->gate_mu);
    pthread_mutex_unlock(c->gate_mu);
  }
  char key[300];
  snprintf(key, sizeof key, "s/%.*s", (int)ev->stream.len,
           (const char *)ev->stream.data);
  uint64_t n, total;
  int rc = get_u64(t, key, &n);
  if (rc == 0)
    rc = put_u64(t, key, n + (uint64_t)c->factor);
  if (rc == 0)
    rc = get_u64(t, "total", &total);
  if (rc == 0)
    rc = put_u64(t, "total", total + (uint64_t)c->factor);
  if (rc == 0)
    rc = put_u64(t, "last", ev->position);
  return rc;
}

static evs_runner *new_runner(uint32_t batch) {
  evs_runner_options o = EVS_RUNNER_OPTIONS_INIT;
  o.max_batch_events = batch;
  evs_runner *r = NULL;
  int rc = evs_runner_create(&r, vw, &o);
  cr_assert_eq(rc, 0);
  return r;
}

static void add(evs_runner *r, const char *name, counter *c,
                const char *category) {
  evs_projection p = EVS_PROJECTION_INIT;
  p.name = name;
  p.handler = counter_handler;
  p.payload = c;
  p.category = category;
  int rc = evs_runner_add(r, &p);
  cr_assert_eq(rc, 0, "evs_runner_add(%s): %s: %s", name, evs_err_name(rc),
               evs_last_error());
}

static void fill(int n, const char *prefix) {
  for (int i = 0; i < n; i++) {
    char s[64];
    snprintf(s, sizeof s, "%s-%d", prefix, i % 9);
    pu_append1(st, s, "T", "{}");
  }
}

static uint64_t view_u64(const char *proj, const char *key) {
  char *v = pu_view_get(vw, proj, key);
  uint64_t n = v ? strtoull(v, NULL, 10) : 0;
  free(v);
  return n;
}

Test(proj_runner, catch_up_builds_view_and_checkpoint) {
  fill(100, "a");
  fill(50, "b");
  evs_runner *r = new_runner(16);
  counter c = { 0, 1, NULL, NULL, NULL, 0 };
  add(r, "all", &c, NULL);
  add(r, "only-b", &c, "b");
  cr_assert_eq(evs_runner_catch_up(r), 0, "%s", evs_last_error());
  cr_assert_eq(view_u64("all", "total"), 150);
  cr_assert_eq(view_u64("only-b", "total"), 50);
  cr_assert_eq(view_u64("all", "s/a-0"), 12);
  evs_proj_status s = pu_status(r, "only-b");
  cr_assert_eq(s.checkpoint, 150,
               "a filtered projection checkpoints past "
               "what it skips");
  cr_assert_eq(s.behind, 0);
  cr_assert_eq(s.events_applied, 50);
  cr_assert_not(s.failed);
  /* Nothing new: a second catch-up changes nothing. */
  cr_assert_eq(evs_runner_catch_up(r), 0);
  cr_assert_eq(view_u64("all", "total"), 150);
  evs_runner_free(r);

  /* Restart: resumes from the checkpoint, no event applied twice. */
  fill(10, "a");
  r = new_runner(16);
  add(r, "all", &c, NULL);
  s = pu_status(r, "all");
  cr_assert_eq(s.checkpoint, 150);
  cr_assert_eq(s.behind, 10);
  cr_assert_eq(evs_runner_catch_up(r), 0);
  cr_assert_eq(view_u64("all", "total"), 160);
  evs_runner_free(r);

  /* The same state is visible without a runner. */
  cr_assert_eq(evs_views_status(vw, "all", &s), 0);
  cr_assert_eq(s.checkpoint, 160);
  cr_assert_eq(evs_views_status(vw, "nosuch", &s), EVS_ENOTFOUND);
}

Test(proj_runner, threads_follow_live_appends) {
  evs_runner *r = new_runner(0);
  counter c = { 0, 1, NULL, NULL, NULL, 0 };
  add(r, "p1", &c, NULL);
  add(r, "p2", &c, "x");
  cr_assert_eq(evs_runner_start(r), 0);
  cr_assert_eq(evs_runner_start(r), EVS_EBUSY);
  cr_assert_eq(evs_runner_catch_up(r), EVS_EBUSY);
  uint64_t last = 0;
  for (int i = 0; i < 200; i++)
    last = pu_append1(st, i % 4 ? "y-1" : "x-1", "T", "{}");
  cr_assert_eq(evs_runner_wait(r, "p1", last, 10000), 0, "%s",
               evs_last_error());
  cr_assert_eq(evs_runner_wait(r, "p2", last, 10000), 0);
  cr_assert_eq(view_u64("p1", "total"), 200);
  cr_assert_eq(view_u64("p2", "total"), 50);
  evs_proj_status s = pu_status(r, "p1");
  cr_assert(s.running);
  cr_assert_eq(evs_runner_wait(r, "p1", last + 1, 50), EVS_ETIMEDOUT);
  /* A projection added while running starts at once. */
  add(r, "p3", &c, NULL);
  cr_assert_eq(evs_runner_wait(r, "p3", last, 10000), 0);
  cr_assert_eq(view_u64("p3", "total"), 200);
  evs_runner_stop(r);
  cr_assert_eq(evs_runner_wait(r, "p1", last + 1, 0), EVS_ESTOPPED);
  evs_runner_free(r);
}

Test(proj_runner, bad_definitions) {
  evs_runner *r = new_runner(0);
  counter c = { 0, 1, NULL, NULL, NULL, 0 };
  evs_projection p = EVS_PROJECTION_INIT;
  p.name = "bad name";
  p.handler = counter_handler;
  p.payload = &c;
  cr_assert_eq(evs_runner_add(r, &p), EVS_EINVAL);
  p.name = "ok";
  p.handler = NULL;
  cr_assert_eq(evs_runner_add(r, &p), EVS_EINVAL);
  add(r, "ok", &c, NULL);
  p.handler = counter_handler;
  cr_assert_eq(evs_runner_add(r, &p), EVS_EBUSY);
  evs_proj_status s;
  cr_assert_eq(evs_runner_status(r, "nope", &s), EVS_ENOTFOUND);
  cr_assert_eq(evs_runner_rebuild(r, "nope"), EVS_ENOTFOUND);
  evs_runner_free(r);
}

Test(proj_runner, handler_error_stops_only_that_projection) {
  fill(20, "a");
  uint64_t bad = pu_append1(st, "a-1", "T", "fail");
  fill(20, "a");
  counter good = { 0, 1, NULL, NULL, NULL, 0 };
  counter failing = { 1, 1, NULL, NULL, NULL, 0 };
  evs_runner *r = new_runner(8);
  add(r, "good", &good, NULL);
  add(r, "bad", &failing, NULL);
  int rc = evs_runner_catch_up(r);
  cr_assert_eq(rc, EVS_EHANDLER);
  evs_proj_status s = pu_status(r, "bad");
  cr_assert(s.failed);
  cr_assert_eq(s.error_position, bad);
  cr_assert_eq(s.checkpoint, bad - 1);
  cr_assert_eq(s.error_code, -1);
  cr_assert_str_neq(s.error, "");
  /* The view holds exactly the events before the failing one. */
  cr_assert_eq(view_u64("bad", "total"), 20);
  cr_assert_eq(view_u64("bad", "last"), bad - 1);
  /* The other projection went on to the head. */
  s = pu_status(r, "good");
  cr_assert_not(s.failed);
  cr_assert_eq(view_u64("good", "total"), 41);
  /* Stays failed across a restart, recorded in the views. */
  evs_runner_free(r);
  cr_assert_eq(evs_views_status(vw, "bad", &s), 0);
  cr_assert(s.failed);
  cr_assert_eq(s.error_position, bad);

  /* Fixed handler: resume retries the failed event and goes on. */
  r = new_runner(8);
  add(r, "bad", &failing, NULL);
  failing.fail_on_data = 0;
  cr_assert_eq(evs_runner_resume(r, "bad"), 0);
  cr_assert_eq(evs_runner_catch_up(r), 0, "%s", evs_last_error());
  s = pu_status(r, "bad");
  cr_assert_not(s.failed);
  cr_assert_eq(view_u64("bad", "total"), 41);
  evs_runner_free(r);
}

Test(proj_runner, handler_error_with_threads) {
  counter failing = { 1, 1, NULL, NULL, NULL, 0 };
  counter good = { 0, 1, NULL, NULL, NULL, 0 };
  evs_runner *r = new_runner(0);
  add(r, "bad", &failing, NULL);
  add(r, "good", &good, NULL);
  cr_assert_eq(evs_runner_start(r), 0);
  fill(5, "a");
  uint64_t bad = pu_append1(st, "a-1", "T", "fail");
  fill(5, "a");
  uint64_t last = tu_head(st);
  cr_assert_eq(evs_runner_wait(r, "bad", last, 10000), EVS_EHANDLER);
  cr_assert_eq(evs_runner_wait(r, "good", last, 10000), 0);
  evs_proj_status s = pu_status(r, "bad");
  cr_assert(s.failed);
  cr_assert_eq(s.error_position, bad);
  cr_assert_eq(view_u64("bad", "total"), 5);
  failing.fail_on_data = 0;
  cr_assert_eq(evs_runner_resume(r, "bad"), 0);
  cr_assert_eq(evs_runner_wait(r, "bad", last, 10000), 0, "%s",
               evs_last_error());
  cr_assert_eq(view_u64("bad", "total"), 11);
  evs_runner_free(r);
}

/* ---- rebuilds -------------------------------------------------------------
 */

Test(proj_runner, rebuild_equals_incremental) {
  counter c = { 0, 1, NULL, NULL, NULL, 0 };
  evs_runner *r = new_runner(7);
  add(r, "inc", &c, NULL);
  /* Incrementally, in many small steps. */
  for (int step = 0; step < 10; step++) {
    fill(37, step % 2 ? "odd" : "even");
    cr_assert_eq(evs_runner_catch_up(r), 0);
  }
  pu_view before = pu_view_dump(vw, "inc");
  evs_proj_status s0 = pu_status(r, "inc");
  cr_assert_eq(evs_runner_rebuild(r, "inc"), 0);
  s0 = pu_status(r, "inc");
  cr_assert(s0.rebuilding);
  cr_assert_eq(evs_runner_catch_up(r), 0, "%s", evs_last_error());
  evs_proj_status s1 = pu_status(r, "inc");
  cr_assert_not(s1.rebuilding);
  cr_assert_eq(s1.generation, s0.generation + 1);
  cr_assert_eq(s1.checkpoint, tu_head(st));
  pu_view after = pu_view_dump(vw, "inc");
  pu_view_assert_equal(&before, &after);
  pu_view_free(&before);
  pu_view_free(&after);
  evs_runner_free(r);
}

Test(proj_runner, blue_green_rebuild_serves_old_view_until_switch) {
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
  int open = 0;
  counter c = { 0, 1, NULL, NULL, NULL, 0 };
  fill(100, "a");
  evs_runner *r = new_runner(10);
  add(r, "bg", &c, NULL);
  cr_assert_eq(evs_runner_catch_up(r), 0);
  cr_assert_eq(view_u64("bg", "total"), 100);

  /* Version 2 of the projection counts double, and its rebuild blocks at
   * position 50 until the gate opens. */
  c.factor = 2;
  c.gate_mu = &mu;
  c.gate_cv = &cv;
  c.gate_open = &open;
  c.gate_pos = 50;
  cr_assert_eq(evs_runner_start(r), 0);
  cr_assert_eq(evs_runner_rebuild(r, "bg"), 0);
  evs_proj_status s;
  for (int i = 0; i < 500; i++) {
    s = pu_status(r, "bg");
    if (s.rebuilding && s.rebuild_checkpoint >= 40)
      break;
    tu_sleep_ms(10);
  }
  cr_assert(s.rebuilding);
  cr_assert_geq(s.rebuild_checkpoint, 40);
  cr_assert_lt(s.rebuild_checkpoint, 50);
  /* The old view still answers queries. */
  cr_assert_eq(view_u64("bg", "total"), 100);
  cr_assert_eq(s.generation, 0);

  pthread_mutex_lock(&mu);
  open = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  for (int i = 0; i < 1000; i++) {
    s = pu_status(r, "bg");
    if (!s.rebuilding)
      break;
    tu_sleep_ms(10);
  }
  cr_assert_not(s.rebuilding);
  cr_assert_eq(s.generation, 1);
  cr_assert_eq(view_u64("bg", "total"), 200);
  /* Live updates go to the new view. */
  uint64_t p = pu_append1(st, "a-1", "T", "{}");
  cr_assert_eq(evs_runner_wait(r, "bg", p, 10000), 0);
  cr_assert_eq(view_u64("bg", "total"), 202);
  evs_runner_free(r);
}

/* ---- queries while the runner writes ----------------------------------- */

typedef struct reader_arg {
  int stop;
  int checks;
  int bad;
} reader_arg;

typedef struct sum_ctx {
  uint64_t sum;
} sum_ctx;

static int sum_cb(evs_slice k, evs_slice v, void *payload) {
  (void)k;
  sum_ctx *s = payload;
  char buf[32];
  memcpy(buf, v.data, v.len < 31 ? v.len : 31);
  buf[v.len < 31 ? v.len : 31] = '\0';
  s->sum += strtoull(buf, NULL, 10);
  return 0;
}

static void *reader(void *arg) {
  reader_arg *a = arg;
  while (!__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE)) {
    evs_view_txn *t = NULL;
    if (evs_view_read_begin(&t, vw, "q") != 0)
      continue;
    uint64_t total = 0;
    get_u64(t, "total", &total);
    sum_ctx s = { 0 };
    evs_view_scan_prefix(t, "s/", 2, sum_cb, &s);
    if (s.sum != total)
      a->bad++;
    a->checks++;
    evs_view_read_end(t);
  }
  return NULL;
}

Test(proj_runner, queries_see_consistent_snapshots_while_runner_writes) {
  counter c = { 0, 1, NULL, NULL, NULL, 0 };
  evs_runner *r = new_runner(3);
  add(r, "q", &c, NULL);
  cr_assert_eq(evs_runner_start(r), 0);
  reader_arg ra = { 0, 0, 0 };
  pthread_t th;
  pthread_create(&th, NULL, reader, &ra);
  uint64_t last = 0;
  for (int i = 0; i < 2000; i++) {
    char s[32];
    snprintf(s, sizeof s, "k-%d", i % 50);
    last = pu_append1(st, s, "T", "{}");
  }
  cr_assert_eq(evs_runner_wait(r, "q", last, 20000), 0);
  __atomic_store_n(&ra.stop, 1, __ATOMIC_RELEASE);
  pthread_join(th, NULL);
  cr_assert_gt(ra.checks, 0);
  cr_assert_eq(ra.bad, 0, "%d inconsistent reads", ra.bad);
  cr_assert_eq(view_u64("q", "total"), 2000);
  evs_runner_free(r);
}

/* ---- view API ----------------------------------------------------------- */

typedef struct scan_rec {
  char keys[16][8];
  int n;
} scan_rec;

static int rec_cb(evs_slice k, evs_slice v, void *payload) {
  (void)v;
  scan_rec *s = payload;
  snprintf(s->keys[s->n++], 8, "%.*s", (int)k.len, (const char *)k.data);
  return s->n == 16;
}

static int kv_handler(evs_view_txn *t, const evs_event *ev, void *p) {
  (void)p;
  /* data "put K V" or "del K" */
  char buf[64];
  snprintf(buf, sizeof buf, "%.*s", (int)ev->data.len,
           (const char *)ev->data.data);
  char *k = buf + 4, *v = strchr(k, ' ');
  if (strncmp(buf, "put ", 4) == 0) {
    *v++ = '\0';
    return evs_view_put(t, k, strlen(k), v, strlen(v));
  }
  int rc = evs_view_del(t, k, strlen(k));
  return rc == EVS_ENOTFOUND ? 0 : rc;
}

Test(proj_runner, view_get_put_delete_and_scans) {
  const char *ops[] = { "put b 2", "put a 1", "put c 3", "put ab 4",
                        "put d 5", "del c",   "put ba 6" };
  for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
    pu_append1(st, "kv-1", "Op", ops[i]);
  evs_runner *r = new_runner(0);
  evs_projection p = EVS_PROJECTION_INIT;
  p.name = "kv";
  p.handler = kv_handler;
  cr_assert_eq(evs_runner_add(r, &p), 0);
  cr_assert_eq(evs_runner_catch_up(r), 0);
  evs_view_txn *t = NULL;
  cr_assert_eq(evs_view_read_begin(&t, vw, "kv"), 0);
  evs_slice v;
  cr_assert_eq(evs_view_get(t, "a", 1, &v), 0);
  cr_assert_eq(v.len, 1);
  cr_assert_eq(*(const char *)v.data, '1');
  cr_assert_eq(evs_view_get(t, "c", 1, &v), EVS_ENOTFOUND);
  cr_assert_eq(evs_view_put(t, "x", 1, "y", 1), EVS_EINVAL, "read-only");
  cr_assert_eq(evs_view_get(t, "", 0, &v), EVS_EINVAL);

  scan_rec s = { .n = 0 };
  cr_assert_eq(evs_view_scan(t, "ab", 2, "d", 1, 0, rec_cb, &s), 0);
  cr_assert_eq(s.n, 3);
  cr_assert_str_eq(s.keys[0], "ab");
  cr_assert_str_eq(s.keys[1], "b");
  cr_assert_str_eq(s.keys[2], "ba");
  s.n = 0;
  cr_assert_eq(evs_view_scan(t, "ab", 2, "d", 1, 1, rec_cb, &s), 0);
  cr_assert_eq(s.n, 3);
  cr_assert_str_eq(s.keys[0], "ba");
  cr_assert_str_eq(s.keys[2], "ab");
  s.n = 0;
  cr_assert_eq(evs_view_scan(t, NULL, 0, NULL, 0, 1, rec_cb, &s), 0);
  cr_assert_eq(s.n, 5); /* a ab b ba d */
  cr_assert_str_eq(s.keys[0], "d");
  s.n = 0;
  cr_assert_eq(evs_view_scan_prefix(t, "b", 1, rec_cb, &s), 0);
  cr_assert_eq(s.n, 2);
  cr_assert_str_eq(s.keys[1], "ba");
  evs_view_read_end(t);
  cr_assert_eq(evs_view_read_begin(&t, vw, "nosuch"), EVS_ENOTFOUND);
  evs_runner_free(r);

  /* Dropping a projection removes its view and checkpoint. */
  cr_assert_eq(evs_views_drop(vw, "kv"), 0);
  cr_assert_eq(evs_view_read_begin(&t, vw, "kv"), EVS_ENOTFOUND);
  r = new_runner(0);
  cr_assert_eq(evs_runner_add(r, &p), 0);
  cr_assert_eq(pu_status(r, "kv").checkpoint, 0);
  cr_assert_eq(evs_runner_catch_up(r), 0);
  char *val = pu_view_get(vw, "kv", "ba");
  cr_assert_str_eq(val, "6");
  free(val);
  evs_runner_free(r);
}

Test(proj_runner, views_open_once_per_process_and_apart_from_the_log) {
  evs_views *again = NULL;
  cr_assert_eq(evs_views_open(&again, st, NULL), EVS_EBUSY);
  evs_views_options o = EVS_VIEWS_OPTIONS_INIT;
  o.path = tu_dir;
  cr_assert_eq(evs_views_open(&again, st, &o), EVS_EBUSY);
  cr_assert_null(again);
  char expect[4096];
  snprintf(expect, sizeof expect, "%s/views", tu_dir);
  cr_assert_str_eq(evs_views_path(vw), expect);
}

Test(proj_runner, views_map_grows) {
  evs_views_close(vw);
  evs_views_options o = EVS_VIEWS_OPTIONS_INIT;
  o.durability = EVS_NOSYNC;
  o.map_size = 1024 * 1024;
  cr_assert_eq(evs_views_open(&vw, st, &o), 0);
  static char big[4000];
  memset(big, 'v', sizeof big - 1);
  for (int i = 0; i < 1000; i++) {
    char s[32];
    snprintf(s, sizeof s, "g-%d", i);
    pu_append1(st, s, "Op", "{}");
  }
  evs_runner *r = new_runner(200);
  counter c = { 0, 1, NULL, NULL, NULL, 0 };
  add(r, "grow", &c, NULL);
  cr_assert_eq(evs_runner_catch_up(r), 0, "%s", evs_last_error());
  for (int i = 0; i < 600; i++) {
    char s[32];
    snprintf(s, sizeof s, "snap-%d", i);
    cr_assert_eq(evs_snapshot_save(vw, s, 1, "v1", big, sizeof big), 0, "%s",
                 evs_last_error());
  }
  cr_assert_eq(view_u64("grow", "total"), 1000);
  evs_runner_free(r);
}
