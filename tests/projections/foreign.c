/*
 * Commits made by another process: a commit through this process's store
 * handle wakes subscriptions at once; another process's commits are seen
 * at the next timeout of evs_sub_next(), within a second by
 * evs_sub_run_many() and evs_sub_run(), or every foreign_check_ms by an idle
 * runner. Another process's tombstone moves no
 * head: it is seen when the next event of the log is.
 *
 * The appending child is forked before this process opens anything, and
 * opens the store itself: LMDB handles never cross fork().
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "projutil.h"
#include "store/internal.h" /* c_waiters: the runner is asleep */
#include "testutil.h"

TestSuite(proj_foreign, .init = tu_setup_dir, .timeout = 60);

static int count_handler(evs_view_txn *t, const evs_event *ev, void *p) {
  (void)p;
  return evs_view_put(t, &ev->position, sizeof ev->position, "x", 1);
}

/*
 * Forks a child that waits for a byte on the pipe, opens the store itself
 * (LMDB handles never cross fork()), runs `work` (0 = success, else the
 * exit status) and exits. Returns the child's pid; the parent keeps go[1].
 */
static pid_t fork_writer(int go[2], int (*work)(evs_store *s)) {
  cr_assert_eq(pipe(go), 0);
  fflush(NULL);
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    close(go[1]);
    char c;
    if (read(go[0], &c, 1) != 1)
      _exit(1);
    evs_store_options o = EVS_STORE_OPTIONS_INIT;
    o.durability = EVS_NOSYNC;
    evs_store *s = NULL;
    if (evs_store_open(&s, tu_dir, &o) != 0)
      _exit(2);
    int rc = work(s);
    evs_store_close(s);
    _exit(rc);
  }
  close(go[0]);
  return pid;
}

static int append_far(evs_store *s, const char *stream) {
  evs_event_data ev;
  memset(&ev, 0, sizeof ev);
  ev.type = "FromAfar";
  ev.data = "{}";
  ev.data_len = 2;
  return evs_append(s, stream, EVS_EXPECT_ANY, &ev, 1, NULL) != 0;
}

static int ten_far_appends(evs_store *s) {
  for (int i = 0; i < 10; i++)
    if (append_far(s, "far-1"))
      return 3;
  return 0;
}

/*
 * A child appends 10 events; this process only reads. check_ms is the
 * runner's foreign_check_ms: 0 (the default, once a second), a short
 * interval, or UINT32_MAX (local commits only: the runner then sees the
 * events at this process's next commit, not before).
 */
static void runner_sees_foreign_appends(uint32_t check_ms) {
  int go[2];
  pid_t pid = fork_writer(go, ten_far_appends);
  evs_store *st = pu_open_store(tu_dir);
  evs_views *vw = pu_open_views(st, NULL);
  evs_runner_options ro = EVS_RUNNER_OPTIONS_INIT;
  ro.foreign_check_ms = check_ms;
  evs_runner *r = NULL;
  cr_assert_eq(evs_runner_create(&r, vw, &ro), 0);
  evs_projection p = EVS_PROJECTION_INIT;
  p.name = "far";
  p.handler = count_handler;
  cr_assert_eq(evs_runner_add(r, &p), 0);
  cr_assert_eq(evs_runner_start(r), 0);
  /* One local event, applied, and the runner asleep in its wait: it has
   * looked at the log before the child appends. */
  pu_append1(st, "near-1", "T", "{}");
  cr_assert_eq(evs_runner_wait(r, "far", 1, 5000), 0, "%s", evs_last_error());
  for (int i = 0;
       i < 1000 && !__atomic_load_n(&st->c_waiters, __ATOMIC_SEQ_CST); i++)
    tu_sleep_ms(5);
  cr_assert_gt(__atomic_load_n(&st->c_waiters, __ATOMIC_SEQ_CST), 0,
               "the runner never went to sleep");
  evs_sub *sub = NULL;
  cr_assert_eq(evs_sub_open(&sub, st, NULL), 0);
  evs_sub_batch b;
  cr_assert_eq(evs_sub_next(sub, &b, 0), 1);
  cr_assert_eq(b.caught_up, 1);

  cr_assert_eq(write(go[1], "g", 1), 1);
  int status;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  uint64_t want = 11;
  if (check_ms == UINT32_MAX) {
    /* Nothing wakes the runner but a local commit: not within 1.5 s,
     * three looks of the default... */
    cr_assert_eq(evs_runner_wait(r, "far", 11, 1500), EVS_ETIMEDOUT, "%s",
                 evs_last_error());
    /* ...but at this process's next commit. */
    pu_append1(st, "near-2", "T", "{}");
    want = 12;
  } else {
    /* The subscription sees them at its next look (here: the timeout). */
    size_t got = 0;
    for (int i = 0; i < 100 && got < 10; i++) {
      int n = evs_sub_next(sub, &b, 100);
      if (n > 0)
        got += b.count;
    }
    cr_assert_eq(got, 10);
  }
  cr_assert_eq(evs_runner_wait(r, "far", want, 5000), 0, "%s",
               evs_last_error());
  pu_view v = pu_view_dump(vw, "far");
  cr_assert_eq(v.n, (size_t)want);
  pu_view_free(&v);
  evs_sub_close(sub);
  evs_runner_free(r);
  evs_views_close(vw);
  evs_store_close(st);
  tu_rmrf(tu_dir);
  free(tu_dir);
}

Test(proj_foreign, runner_sees_another_process_s_appends) {
  runner_sees_foreign_appends(50);
}

Test(proj_foreign, runner_sees_another_process_s_appends_by_default) {
  runner_sees_foreign_appends(0);
}

Test(proj_foreign, runner_that_only_watches_local_commits) {
  runner_sees_foreign_appends(UINT32_MAX);
}

/* ---- another process's tombstone ---------------------------------------- */

typedef struct far_state {
  int caught;      /* atomic: on_caught_up calls */
  int events;      /* on_event calls */
  char first[32];  /* the stream of the first event */
  int stop_on_one; /* stop the run at the first event */
} far_state;

static int far_on_event(const evs_event *ev, void *payload) {
  far_state *f = payload;
  if (f->events++ == 0)
    snprintf(f->first, sizeof f->first, "%.*s", (int)ev->stream.len,
             (const char *)ev->stream.data);
  return f->stop_on_one;
}

static int far_on_caught_up(uint64_t cp, void *payload) {
  (void)cp;
  __atomic_add_fetch(&((far_state *)payload)->caught, 1, __ATOMIC_RELEASE);
  return 0;
}

static void wait_caught_up(far_state *f) {
  for (int i = 0; i < 2000 && !__atomic_load_n(&f->caught, __ATOMIC_ACQUIRE);
       i++)
    tu_sleep_ms(5);
  cr_assert_gt(__atomic_load_n(&f->caught, __ATOMIC_ACQUIRE), 0,
               "the run never reached the head");
}

static int tombstone_then_append(evs_store *s) {
  if (evs_stream_delete(s, "doomed-1", EVS_EXPECT_ANY, 1) != 0)
    return 3;
  return append_far(s, "other-1") ? 4 : 0;
}

/*
 * A child process tombstones the stream this process's subscriptions
 * follow, then appends one event to another stream. The tombstone writes no
 * event and is invisible to this process's wake-ups; the event is what
 * makes the subscriptions look at the log again: evs_sub_next() at its next
 * timeout, evs_sub_run_many() and evs_sub_run() within their second, with
 * no local commit. Each ends with
 * EVS_ESTREAMDELETED, and none delivers anything of the tombstoned stream.
 */
Test(proj_foreign, another_process_s_tombstone_ends_stream_subscriptions) {
  int go[2];
  pid_t pid = fork_writer(go, tombstone_then_append);
  evs_store *st = pu_open_store(tu_dir);
  pu_append1(st, "doomed-1", "T", "{}");
  pu_append1(st, "doomed-1", "T", "{}");

  evs_sub_options one = EVS_SUB_OPTIONS_INIT;
  one.stream = "doomed-1";
  evs_sub_options all = EVS_SUB_OPTIONS_INIT;
  all.start = EVS_SUB_FROM_END;

  /* Pull: caught up, then waiting. */
  evs_sub *pull = NULL;
  cr_assert_eq(evs_sub_open(&pull, st, &one), 0);
  evs_sub_batch b;
  cr_assert_eq(evs_sub_next(pull, &b, 0), 2);
  cr_assert_eq(b.caught_up, 1);
  cr_assert_eq(evs_sub_next(pull, &b, 50), EVS_ETIMEDOUT);

  /* evs_sub_run_many: the stream, and $all from the end (which stops at
   * the child's event). evs_sub_run: the stream. Both block at the head. */
  far_state fm[2] = { { 0, 0, "", 0 }, { 0, 0, "", 1 } };
  far_state fr = { 0, 0, "", 0 };
  evs_sub_callbacks cb = EVS_SUB_CALLBACKS_INIT;
  cb.on_event = far_on_event;
  cb.on_caught_up = far_on_caught_up;
  evs_sub *msubs[2] = { NULL, NULL };
  cr_assert_eq(evs_sub_open(&msubs[0], st, &one), 0);
  cr_assert_eq(evs_sub_open(&msubs[1], st, &all), 0);
  const evs_sub_callbacks *mcbs[2] = { &cb, &cb };
  void *mpay[2] = { &fm[0], &fm[1] };
  pu_bg_run many = {
    .kind = PU_BG_MANY, .subs = msubs, .n = 2, .cbs = mcbs, .payloads = mpay
  };
  evs_sub *rsub[1] = { NULL };
  cr_assert_eq(evs_sub_open(&rsub[0], st, &one), 0);
  const evs_sub_callbacks *rcbs[1] = { &cb };
  void *rpay[1] = { &fr };
  pu_bg_run run = {
    .kind = PU_BG_RUN, .subs = rsub, .n = 1, .cbs = rcbs, .payloads = rpay
  };
  pu_bg_start(&many);
  pu_bg_start(&run);
  wait_caught_up(&fm[0]);
  wait_caught_up(&fm[1]);
  wait_caught_up(&fr);
  tu_sleep_ms(50); /* let both block in their waits */

  cr_assert_eq(write(go[1], "g", 1), 1);
  int status;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d",
            status);

  /* The pull subscription: at one of its next timeouts. */
  int n = EVS_ETIMEDOUT;
  for (int i = 0; i < 100 && n == EVS_ETIMEDOUT; i++)
    n = evs_sub_next(pull, &b, 100);
  cr_assert_eq(n, EVS_ESTREAMDELETED, "evs_sub_next: %s", evs_err_name(n));
  cr_assert_eq(evs_sub_next(pull, &b, 0), EVS_ESTREAMDELETED);

  /* evs_sub_run_many: within its poll of a second (10 s allowed). */
  int ended = pu_bg_join(&many, 10000);
  cr_assert(ended, "evs_sub_run_many did not end (results %s, %s)",
            evs_err_name(many.results[0]), evs_err_name(many.results[1]));
  cr_assert_eq(many.results[0], EVS_ESTREAMDELETED, "%s",
               evs_err_name(many.results[0]));
  cr_assert_eq(many.results[1], EVS_ESTOPPED, "%s",
               evs_err_name(many.results[1]));
  cr_assert_eq(many.rc, EVS_ESTREAMDELETED, "%s", evs_err_name(many.rc));
  cr_assert_eq(fm[0].events, 2, "the tombstoned stream delivered more");
  cr_assert_eq(fm[1].events, 1);
  cr_assert_str_eq(fm[1].first, "other-1");

  /* evs_sub_run: within its second too, with no local commit. */
  ended = pu_bg_join(&run, 10000);
  cr_assert(ended, "evs_sub_run did not end");
  cr_assert_eq(run.rc, EVS_ESTREAMDELETED, "%s", evs_err_name(run.rc));
  cr_assert_eq(fr.events, 2, "the tombstoned stream delivered more");

  evs_sub_close(pull);
  evs_sub_close(msubs[0]);
  evs_sub_close(msubs[1]);
  evs_sub_close(rsub[0]);
  evs_store_close(st);
  tu_rmrf(tu_dir);
  free(tu_dir);
}
