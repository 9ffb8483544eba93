/*
 * Commits made by another process: a commit through this process's store
 * handle wakes subscriptions at once; another process's commits are seen
 * at the next timeout of evs_sub_next(), or every foreign_check_ms by an
 * idle runner.
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
#include "testutil.h"

TestSuite(proj_foreign, .init = tu_setup_dir, .timeout = 60);

static int count_handler(evs_view_txn *t, const evs_event *ev, void *p) {
  (void)p;
  return evs_view_put(t, &ev->position, sizeof ev->position, "x", 1);
}

Test(proj_foreign, runner_sees_another_process_s_appends) {
  int go[2];
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
    for (int i = 0; i < 10; i++) {
      evs_event_data ev;
      memset(&ev, 0, sizeof ev);
      ev.type = "FromAfar";
      ev.data = "{}";
      ev.data_len = 2;
      if (evs_append(s, "far-1", EVS_EXPECT_ANY, &ev, 1, NULL) != 0)
        _exit(3);
    }
    evs_store_close(s);
    _exit(0);
  }
  close(go[0]);
  evs_store *st = pu_open_store(tu_dir);
  evs_views *vw = pu_open_views(st, NULL);
  evs_runner_options ro = EVS_RUNNER_OPTIONS_INIT;
  ro.foreign_check_ms = 50;
  evs_runner *r = NULL;
  cr_assert_eq(evs_runner_create(&r, vw, &ro), 0);
  evs_projection p = EVS_PROJECTION_INIT;
  p.name = "far";
  p.handler = count_handler;
  cr_assert_eq(evs_runner_add(r, &p), 0);
  cr_assert_eq(evs_runner_start(r), 0);
  evs_sub *sub = NULL;
  cr_assert_eq(evs_sub_open(&sub, st, NULL), 0);
  evs_sub_batch b;
  cr_assert_eq(evs_sub_next(sub, &b, 0), 0); /* caught up: empty log */

  cr_assert_eq(write(go[1], "g", 1), 1);
  int status;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  /* The subscription sees them at its next look (here: the timeout). */
  size_t got = 0;
  for (int i = 0; i < 100 && got < 10; i++) {
    int n = evs_sub_next(sub, &b, 100);
    if (n > 0)
      got += b.count;
  }
  cr_assert_eq(got, 10);
  cr_assert_eq(evs_runner_wait(r, "far", 10, 5000), 0, "%s", evs_last_error());
  pu_view v = pu_view_dump(vw, "far");
  cr_assert_eq(v.n, 10);
  pu_view_free(&v);
  evs_sub_close(sub);
  evs_runner_free(r);
  evs_views_close(vw);
  evs_store_close(st);
  tu_rmrf(tu_dir);
  free(tu_dir);
}
