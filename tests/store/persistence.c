/*
 * Opening, closing and reopening stores: data and state survive, one open
 * per process, format checks, durability modes, several processes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "evstore/evstore.h"
#include "testutil.h"

TestSuite(store_persistence, .init = tu_setup_dir, .fini = tu_teardown,
          .timeout = 120);

Test(store_persistence, reopen_keeps_everything) {
  tu_store = tu_open(tu_dir, NULL);
  tu_append_ok(tu_store, "order-1", EVS_EXPECT_NO_STREAM, 3, "Placed");
  tu_append_ok(tu_store, "order-2", EVS_EXPECT_NO_STREAM, 2, "Placed");
  tu_append_ok(tu_store, "order-1", 2, 2, "Paid");
  tu_append_ok(tu_store, "soft", EVS_EXPECT_ANY, 2, NULL);
  tu_append_ok(tu_store, "hard", EVS_EXPECT_ANY, 2, NULL);
  cr_assert_eq(evs_stream_delete(tu_store, "soft", EVS_EXPECT_ANY, 0), 0);
  cr_assert_eq(evs_stream_delete(tu_store, "hard", EVS_EXPECT_ANY, 1), 0);
  evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
  md.max_count = 4;
  cr_assert_eq(evs_stream_set_metadata(tu_store, "order-1", &md), 0);

  tu_evlist all_before = tu_all(tu_store, NULL);
  tu_evlist s_before = tu_stream(tu_store, "order-1", NULL);
  uint64_t head = tu_head(tu_store);
  evs_stats st_before;
  cr_assert_eq(evs_store_stats(tu_store, &st_before, 1), 0);

  tu_reopen(NULL);

  tu_evlist all_after = tu_all(tu_store, NULL);
  tu_evlist s_after = tu_stream(tu_store, "order-1", NULL);
  tu_assert_same_events(&all_before, &all_after);
  tu_assert_same_events(&s_before, &s_after);
  cr_assert_eq(s_after.n, 4);
  cr_assert_eq(tu_head(tu_store), head);
  evs_stats st;
  cr_assert_eq(evs_store_stats(tu_store, &st, 1), 0);
  cr_assert_eq(st.events, st_before.events);
  cr_assert_eq(st.streams, st_before.streams);
  cr_assert_eq(st.last_position, st_before.last_position);
  cr_assert_eq(st.last_timestamp_ns, st_before.last_timestamp_ns);
  cr_assert_eq(st.data_bytes_raw, st_before.data_bytes_raw);
  cr_assert_eq(st.event_types, st_before.event_types);
  tu_evlist_free(&all_before);
  tu_evlist_free(&all_after);
  tu_evlist_free(&s_before);
  tu_evlist_free(&s_after);

  /* State carries on: versions, expected-version checks, deletes. */
  evs_append_result r = tu_append_ok(tu_store, "order-1", 4, 1, NULL);
  cr_assert_eq(r.first_version, 5);
  cr_assert_eq(r.first_position, head + 1);
  cr_assert_eq(tu_append_n(tu_store, "order-2", EVS_EXPECT_NO_STREAM, 1, NULL,
                           NULL), EVS_EWRONGVERSION);
  cr_assert_eq(tu_append_n(tu_store, "hard", EVS_EXPECT_ANY, 1, NULL, NULL),
               EVS_ESTREAMDELETED);
  r = tu_append_ok(tu_store, "soft", EVS_EXPECT_NO_STREAM, 1, NULL);
  cr_assert_eq(r.first_version, 2);
  tu_verify_clean(tu_store);
}

Test(store_persistence, many_open_close_cycles) {
  for (int i = 0; i < 10; i++) {
    tu_store = tu_open(tu_dir, NULL);
    evs_append_result r = tu_append_ok(tu_store, "cycle", i == 0 ?
                                       EVS_EXPECT_NO_STREAM : (int64_t)i * 3 - 1,
                                       3, NULL);
    cr_assert_eq(r.first_position, (uint64_t)i * 3 + 1);
    evs_store_close(tu_store);
    tu_store = NULL;
  }
  tu_store = tu_open(tu_dir, NULL);
  tu_evlist l = tu_stream(tu_store, "cycle", NULL);
  cr_assert_eq(l.n, 30);
  for (size_t i = 0; i < l.n; i++) {
    cr_assert_eq(l.ev[i].position, i + 1);
    cr_assert_eq(l.ev[i].version, (int64_t)i);
    if (i)
      cr_assert_geq(l.ev[i].timestamp_ns, l.ev[i - 1].timestamp_ns);
  }
  tu_evlist_free(&l);
}

Test(store_persistence, durability_modes_round_trip) {
  static const evs_durability modes[] = {EVS_SYNC, EVS_NOMETASYNC,
                                         EVS_NOSYNC};
  for (int m = 0; m < 3; m++) {
    evs_store_options o = tu_opts(modes[m]);
    tu_store = tu_open(tu_dir, &o);
    tu_append_ok(tu_store, "d", EVS_EXPECT_ANY, 10, NULL);
    int rc = evs_store_sync(tu_store);
    cr_assert_eq(rc, 0, "sync in mode %d: %s", m, evs_err_name(rc));
    evs_store_close(tu_store);
    tu_store = NULL;
  }
  tu_store = tu_open(tu_dir, NULL);
  cr_assert_eq(tu_head(tu_store), 30);
}

Test(store_persistence, same_directory_twice_is_ebusy) {
  tu_store = tu_open(tu_dir, NULL);
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 1, NULL);
  evs_store *second = (evs_store *)0x1;
  int rc = evs_store_open(&second, tu_dir, NULL);
  cr_assert_eq(rc, EVS_EBUSY, "%s", evs_err_name(rc));
  /* Also through another spelling of the same path. */
  char other[4096];
  snprintf(other, sizeof other, "%s/./", tu_dir);
  rc = evs_store_open(&second, other, NULL);
  cr_assert_eq(rc, EVS_EBUSY, "'%s': %s", other, evs_err_name(rc));
  /* The first handle is unharmed. */
  tu_append_ok(tu_store, "s", 0, 1, NULL);
  evs_store_close(tu_store);
  tu_store = tu_open(tu_dir, NULL);
  cr_assert_eq(tu_head(tu_store), 2);
}

Test(store_persistence, two_stores_in_one_process) {
  tu_store = tu_open(tu_dir, NULL);
  char *dir2 = tu_mkdtemp();
  evs_store *s2 = tu_open(dir2, NULL);
  tu_append_ok(tu_store, "a", EVS_EXPECT_ANY, 2, NULL);
  tu_append_ok(s2, "b", EVS_EXPECT_ANY, 5, NULL);
  cr_assert_eq(tu_head(tu_store), 2);
  cr_assert_eq(tu_head(s2), 5);
  cr_assert_str_eq(evs_store_path(s2), dir2);
  evs_store_close(s2);
  tu_rmrf(dir2);
  free(dir2);
}

Test(store_persistence, store_path_is_the_directory) {
  tu_store = tu_open(tu_dir, NULL);
  const char *p = evs_store_path(tu_store);
  cr_assert_not_null(p);
  cr_assert_str_eq(p, tu_dir);
  evs_store_close(NULL);
}

Test(store_persistence, create_makes_the_directory) {
  char path[4096];
  snprintf(path, sizeof path, "%s/nested", tu_dir);
  tu_store = tu_open(path, NULL);
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 1, NULL);
  struct stat sb;
  char data[4200];
  snprintf(data, sizeof data, "%s/data.mdb", path);
  cr_assert_eq(stat(data, &sb), 0, "no %s", data);
}

Test(store_persistence, missing_store_without_create_is_enoent) {
  char path[4096];
  snprintf(path, sizeof path, "%s/absent", tu_dir);
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.create = 0;
  evs_store *s = (evs_store *)0x1;
  int rc = evs_store_open(&s, path, &o);
  cr_assert_eq(rc, -ENOENT, "%s", evs_err_name(rc));
  /* An empty existing directory is not a store either. */
  rc = evs_store_open(&s, tu_dir, &o);
  cr_assert_eq(rc, -ENOENT, "%s", evs_err_name(rc));
}

Test(store_persistence, open_bad_arguments) {
  evs_store *s = NULL;
  cr_assert_eq(evs_store_open(NULL, tu_dir, NULL), EVS_EINVAL);
  cr_assert_eq(evs_store_open(&s, NULL, NULL), EVS_EINVAL);
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.max_event_size = EVS_HARD_MAX_EVENT_SIZE + 1u;
  cr_assert_eq(evs_store_open(&s, tu_dir, &o), EVS_EINVAL,
               "max_event_size over the hard limit");
  o = (evs_store_options)EVS_STORE_OPTIONS_INIT;
  o.durability = (evs_durability)7;
  cr_assert_eq(evs_store_open(&s, tu_dir, &o), EVS_EINVAL, "bad durability");
  /* (max_map_size below map_size is not checked: the header does not say
   * whether that is a bad option or a clamp.) */
  /* A failed open leaves the directory openable. */
  tu_store = tu_open(tu_dir, NULL);
}

Test(store_persistence, newer_format_is_refused) {
  tu_store = tu_open(tu_dir, NULL);
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 1, NULL);
  evs_store_close(tu_store);
  tu_store = NULL;
  size_t len = tu_lmdb_value_len(tu_dir, "meta", "format", 6);
  cr_assert_eq(len, 4, "meta/format is %zu bytes", len);
  const uint8_t v999[4] = {0, 0, 0x03, 0xe7};
  tu_lmdb_put(tu_dir, "meta", "format", 6, v999, 4);
  evs_store *s = (evs_store *)0x1;
  int rc = evs_store_open(&s, tu_dir, NULL);
  cr_assert_eq(rc, EVS_EFORMAT, "%s: %s", evs_err_name(rc), evs_last_error());
  /* The refusal released the directory: restoring the format opens. */
  const uint8_t v1[4] = {0, 0, 0, EVS_FORMAT_VERSION};
  tu_lmdb_put(tu_dir, "meta", "format", 6, v1, 4);
  tu_store = tu_open(tu_dir, NULL);
  cr_assert_eq(tu_head(tu_store), 1);
}

Test(store_persistence, format_1_is_refused_with_a_way_out) {
  tu_store = tu_open(tu_dir, NULL);
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 1, NULL);
  evs_store_close(tu_store);
  tu_store = NULL;
  const uint8_t v1[4] = {0, 0, 0, 1};
  tu_lmdb_put(tu_dir, "meta", "format", 6, v1, 4);
  evs_store *s = NULL;
  int rc = evs_store_open(&s, tu_dir, NULL);
  cr_assert_eq(rc, EVS_EFORMAT, "%s: %s", evs_err_name(rc), evs_last_error());
  cr_assert_null(s);
  cr_assert(strstr(evs_last_error(), "import") != NULL, "%s",
            evs_last_error());
}

Test(store_persistence, read_only_open_reads_but_never_writes) {
  tu_store = tu_open(tu_dir, NULL);
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 4, NULL);
  evs_store_close(tu_store);
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.read_only = 1;
  tu_store = tu_open(tu_dir, &o);
  tu_evlist l = tu_stream(tu_store, "s", NULL);
  cr_assert_eq(l.n, 4);
  tu_evlist_free(&l);
  /* The header names no code for this; any error is right as long as
   * nothing is written. */
  int rc = tu_append_n(tu_store, "s", EVS_EXPECT_ANY, 1, NULL, NULL);
  cr_assert_lt(rc, 0, "append on a read-only store returned %d", rc);
  cr_assert_eq(tu_head(tu_store), 4);
  evs_store_close(tu_store);
  tu_store = tu_open(tu_dir, NULL);
  cr_assert_eq(tu_head(tu_store), 4);
}

/* Child process body: waits for a byte on `ready_fd`, opens the store,
 * appends `batches` batches of 10
 * events of `size` bytes to `stream`, exits 0 on success. */
static void child_appender(const char *dir, const char *stream, int batches,
                           size_t size, int ready_fd) {
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.map_size = 1024 * 1024;
  o.compress_threshold = UINT32_MAX;
  char c;
  if (read(ready_fd, &c, 1) != 1) /* start when told */
    _exit(11);
  evs_store *s = NULL;
  if (evs_store_open(&s, dir, &o) != 0)
    _exit(10);
  char *buf = malloc(size);
  if (!buf)
    _exit(12);
  for (int b = 0; b < batches; b++) {
    evs_event_data ev[10];
    for (int k = 0; k < 10; k++) {
      tu_fill_random(buf, size, (uint64_t)b * 10 + (uint64_t)k);
      memset(&ev[k], 0, sizeof ev[k]);
      ev[k].type = "FromChild";
      ev[k].data = buf;
      ev[k].data_len = size;
    }
    int rc = evs_append(s, stream, EVS_EXPECT_ANY, ev, 10, NULL);
    if (rc != 0) {
      fprintf(stderr, "child %s batch %d: %s: %s\n", stream, b,
              evs_err_name(rc), evs_last_error());
      _exit(20);
    }
  }
  free(buf);
  evs_store_close(s);
  _exit(0);
}

Test(store_persistence, two_processes_append_and_grow_the_map) {
  /* Two processes open one store with a 1 MiB map and append 4 MiB each
   * at the same time: their writes serialize, the map grows under both
   * (MDB_MAP_RESIZED is adopted), $all stays gap-free. Nothing is open in
   * this process when the children fork. */
  enum { BATCHES = 40 };
  const size_t size = 10 * 1024;
  int pipes[2];
  cr_assert_eq(pipe(pipes), 0);
  pid_t pids[2];
  const char *streams[2] = {"proc-a", "proc-b"};
  for (int i = 0; i < 2; i++) {
    pids[i] = fork();
    cr_assert_neq(pids[i], -1);
    if (pids[i] == 0) {
      close(pipes[1]);
      child_appender(tu_dir, streams[i], BATCHES, size, pipes[0]);
    }
  }
  close(pipes[0]);
  cr_assert_eq(write(pipes[1], "go", 2), 2); /* one byte for each child */
  close(pipes[1]);
  for (int i = 0; i < 2; i++) {
    int status = 0;
    cr_assert_eq(waitpid(pids[i], &status, 0), pids[i]);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "child %d: status %d", i, status);
  }
  tu_store = tu_open(tu_dir, NULL);
  tu_evlist all = tu_all(tu_store, NULL);
  cr_assert_eq(all.n, 2 * BATCHES * 10);
  int64_t next[2] = {0, 0};
  for (size_t i = 0; i < all.n; i++) {
    cr_assert_eq(all.ev[i].position, i + 1, "gap at %zu", i);
    int which = strcmp(all.ev[i].stream, "proc-b") == 0;
    cr_assert_eq(all.ev[i].version, next[which]);
    cr_assert_eq(all.ev[i].data_len, size);
    next[which]++;
  }
  tu_evlist_free(&all);
  evs_stats st;
  cr_assert_eq(evs_store_stats(tu_store, &st, 0), 0);
  cr_assert_gt(st.map_size, 4 * 1024 * 1024ull);
  tu_verify_clean(tu_store);
}

Test(store_persistence, other_process_appends_are_seen) {
  /* A store open in this process sees what another process appends, and
   * positions interleave without gaps. */
  int pipes[2];
  cr_assert_eq(pipe(pipes), 0);
  /* Fork before this process opens the store: a store handle must never
   * cross a fork(), and the child opens its own once told to. */
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    close(pipes[1]);
    child_appender(tu_dir, "there", 3, 100, pipes[0]);
  }
  close(pipes[0]);
  tu_store = tu_open(tu_dir, NULL);
  tu_append_ok(tu_store, "here", EVS_EXPECT_ANY, 5, NULL);
  cr_assert_eq(write(pipes[1], "g", 1), 1);
  close(pipes[1]);
  int status = 0;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d",
            status);
  cr_assert_eq(tu_head(tu_store), 35);
  tu_evlist l = tu_stream(tu_store, "there", NULL);
  cr_assert_eq(l.n, 30);
  tu_evlist_free(&l);
  evs_append_result r = tu_append_ok(tu_store, "here", 4, 1, NULL);
  cr_assert_eq(r.first_position, 36);
}
