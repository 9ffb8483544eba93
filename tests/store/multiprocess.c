/*
 * Several processes writing one store at once: LMDB serializes their write
 * transactions through its lock file, positions stay gap-free, and a map
 * grown by one process is adopted by the other (MDB_MAP_RESIZED).
 *
 * The children are forked before anything opens the store in this process,
 * and each opens its own handle: LMDB handles never cross fork().
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

TestSuite(store_multiprocess, .init = tu_setup_dir, .fini = tu_teardown);

#define ROUNDS 60
#define BATCH 20
#define PAYLOAD 4000

/* Child body: appends ROUNDS batches to its own stream and to a shared one,
 * with exact expected versions on its own stream. Exits 0 on success. */
static int child_main(const char *dir, int id) {
  evs_store_options o = tu_opts(EVS_NOSYNC);
  o.map_size = 1024 * 1024; /* force growth while the other one writes */
  evs_store *s = NULL;
  if (evs_store_open(&s, dir, &o) != 0)
    return 10;
  char own[32];
  snprintf(own, sizeof own, "proc-%d", id);
  char *payload = malloc(PAYLOAD);
  if (payload == NULL)
    return 11;
  /* Incompressible data, so the map really fills. */
  unsigned x = 12345u + (unsigned)id;
  for (size_t i = 0; i < PAYLOAD; i++) {
    x = x * 1103515245u + 12345u;
    payload[i] = (char)(x >> 16);
  }
  int64_t expected = EVS_EXPECT_NO_STREAM;
  for (int r = 0; r < ROUNDS; r++) {
    evs_event_data ev[BATCH];
    for (int i = 0; i < BATCH; i++)
      tu_event(&ev[i], "Written", payload, PAYLOAD);
    evs_append_result res;
    int rc = evs_append(s, own, expected, ev, BATCH, &res);
    if (rc) {
      fprintf(stderr, "child %d: %s: %s\n", id, evs_err_name(rc),
              evs_last_error());
      return 12;
    }
    expected = res.last_version;
    evs_event_data shared;
    tu_event(&shared, "Shared", &r, sizeof r);
    rc = evs_append(s, "shared", EVS_EXPECT_ANY, &shared, 1, NULL);
    if (rc) {
      fprintf(stderr, "child %d shared: %s: %s\n", id, evs_err_name(rc),
              evs_last_error());
      return 13;
    }
  }
  free(payload);
  evs_store_close(s);
  return 0;
}

Test(store_multiprocess, two_writers_share_one_store, .timeout = 120) {
  /* Create the store first in a child, so this process never maps it
   * before forking the writers. */
  pid_t pids[2];
  for (int i = 0; i < 2; i++) {
    pids[i] = fork();
    cr_assert_geq(pids[i], 0);
    if (pids[i] == 0)
      _exit(child_main(tu_dir, i));
  }
  for (int i = 0; i < 2; i++) {
    int st = 0;
    cr_assert_eq(waitpid(pids[i], &st, 0), pids[i]);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "writer %d failed (status %d)", i, st);
  }
  tu_store = tu_open(tu_dir, NULL);
  evs_stats stats;
  cr_assert_eq(evs_store_stats(tu_store, &stats, 0), 0);
  uint64_t total = 2ull * ROUNDS * (BATCH + 1);
  cr_assert_eq(stats.events, total);
  cr_assert_eq(stats.last_position, total);
  cr_assert_gt(stats.map_size, 1024 * 1024, "the map grew");

  /* $all is gap-free and each writer's stream is complete and in order. */
  tu_evlist all = tu_all(tu_store, NULL);
  cr_assert_eq(all.n, total);
  for (size_t i = 0; i < all.n; i++)
    cr_assert_eq(all.ev[i].position, i + 1);
  tu_evlist_free(&all);
  for (int i = 0; i < 2; i++) {
    char own[32];
    snprintf(own, sizeof own, "proc-%d", i);
    evs_stream_info info;
    cr_assert_eq(evs_stream_info_get(tu_store, own, &info), 0);
    cr_assert_eq(info.version, ROUNDS * BATCH - 1);
    evs_stream_info_clear(&info);
  }
  evs_stream_info info;
  cr_assert_eq(evs_stream_info_get(tu_store, "shared", &info), 0);
  cr_assert_eq(info.version, 2 * ROUNDS - 1);
  evs_stream_info_clear(&info);
  tu_verify_clean(tu_store);
}

/*
 * A child process that waits for the parent's go, runs fn, says done and
 * exits with fn's status. The parent signals with go_child() and collects
 * it with child_done(), which asserts a zero exit status.
 */
typedef struct gated_child {
  pid_t pid;
  int go[2], done[2];
} gated_child;

static gated_child start_gated_child(int (*fn)(void)) {
  gated_child g;
  cr_assert_eq(pipe(g.go), 0);
  cr_assert_eq(pipe(g.done), 0);
  g.pid = fork();
  cr_assert_geq(g.pid, 0);
  if (g.pid == 0) {
    char c;
    if (read(g.go[0], &c, 1) != 1)
      _exit(20);
    int rc = fn();
    if (write(g.done[1], "x", 1) != 1)
      _exit(21);
    _exit(rc);
  }
  return g;
}

static void go_child_and_wait(gated_child *g) {
  cr_assert_eq(write(g->go[1], "g", 1), 1);
  char c;
  cr_assert_eq(read(g->done[0], &c, 1), 1);
  int st = 0;
  cr_assert_eq(waitpid(g->pid, &st, 0), g->pid);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d",
            WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  close(g->go[0]);
  close(g->go[1]);
  close(g->done[0]);
  close(g->done[1]);
}

static int appender_child(void) {
  return child_main(tu_dir, 7);
}

Test(store_multiprocess, reader_sees_other_process_appends, .timeout = 60) {
  /* A child appends after this process opened the store: the parent's
   * handle must see the new events and adopt the child's bigger map. */
  gated_child g = start_gated_child(appender_child);
  evs_store_options o = tu_opts(EVS_NOSYNC);
  o.map_size = 1024 * 1024;
  tu_store = tu_open(tu_dir, &o);
  tu_append_ok(tu_store, "parent", EVS_EXPECT_ANY, 1, NULL);
  /* Reads leave reset read transactions in the handle's pool. */
  uint64_t before = 0;
  cr_assert_eq(evs_head_position(tu_store, &before), 0);
  tu_evlist first = tu_all(tu_store, NULL);
  cr_assert_eq(first.n, 1);
  tu_evlist_free(&first);
  go_child_and_wait(&g);
  /* The child grew the map well beyond ours; reading (through the pooled
   * transactions, whose renewal now fails) and appending here must adopt
   * its size. */
  uint64_t head = 0;
  cr_assert_eq(evs_head_position(tu_store, &head), 0);
  cr_assert_eq(head, 1 + ROUNDS * (BATCH + 1));
  evs_append_result r = tu_append_ok(tu_store, "parent", 0, 1, NULL);
  cr_assert_eq(r.first_position, head + 1);
  tu_evlist all = tu_all(tu_store, NULL);
  cr_assert_eq(all.n, head + 1);
  tu_evlist_free(&all);
  tu_verify_clean(tu_store);
}

/* Similar small JSON events, for a dictionary to learn. */
static void json_events(evs_event_data *ev, char (*buf)[160], int n,
                        int first) {
  for (int i = 0; i < n; i++) {
    int len = snprintf(buf[i], sizeof buf[i],
                       "{\"orderId\":\"o-%06d\",\"customer\":\"c-%04d\","
                       "\"amount\":%d.%02d,\"currency\":\"EUR\","
                       "\"status\":\"placed\"}",
                       first + i, (first + i) * 7 % 10000, (first + i) % 500,
                       (first + i) % 100);
    tu_event(&ev[i], "OrderPlaced", buf[i], (size_t)len);
  }
}

/* Trains a dictionary and appends 100 events compressed with it. */
static int dictionary_child(void) {
  evs_store_options o = tu_opts(EVS_NOSYNC);
  evs_store *s = NULL;
  if (evs_store_open(&s, tu_dir, &o))
    return 22;
  if (evs_store_train_dictionary(s, 4096, 0, NULL))
    return 23;
  static char buf[100][160];
  evs_event_data ev[100];
  json_events(ev, buf, 100, 5000);
  if (evs_append(s, "child", EVS_EXPECT_ANY, ev, 100, NULL))
    return 24;
  evs_stats st;
  if (evs_store_stats(s, &st, 1) || st.compressed_events != 100)
    return 25;
  evs_store_close(s);
  return 0;
}

Test(store_multiprocess, dictionary_trained_by_another_process_is_read,
     .timeout = 60) {
  /* The parent keeps the store open while a child trains a dictionary and
   * appends events compressed with it: the parent, which has never seen
   * that dictionary, must load it to read them. */
  gated_child g = start_gated_child(dictionary_child);
  evs_store_options o = tu_opts(EVS_NOSYNC);
  tu_store = tu_open(tu_dir, &o);
  static char buf[2000][160];
  evs_event_data *ev = calloc(2000, sizeof *ev);
  cr_assert_not_null(ev);
  json_events(ev, buf, 2000, 0);
  for (int i = 0; i < 2000; i += 100)
    cr_assert_eq(
        evs_append(tu_store, "parent", EVS_EXPECT_ANY, ev + i, 100, NULL), 0);
  free(ev);
  go_child_and_wait(&g);
  tu_evlist l = tu_stream(tu_store, "child", NULL);
  cr_assert_eq(l.n, 100);
  char want[160];
  for (int i = 0; i < 100; i++) {
    int len = snprintf(want, sizeof want,
                       "{\"orderId\":\"o-%06d\",\"customer\":\"c-%04d\","
                       "\"amount\":%d.%02d,\"currency\":\"EUR\","
                       "\"status\":\"placed\"}",
                       5000 + i, (5000 + i) * 7 % 10000, (5000 + i) % 500,
                       (5000 + i) % 100);
    cr_assert_eq(l.ev[i].data_len, (size_t)len);
    cr_assert_eq(memcmp(l.ev[i].data, want, (size_t)len), 0, "event %d", i);
  }
  tu_evlist_free(&l);
  tu_verify_clean(tu_store);
}
