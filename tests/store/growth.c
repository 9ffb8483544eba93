/*
 * Map growth: a store opened with a tiny map grows as needed; a growth
 * limit gives EVS_EMAPFULL without losing anything acknowledged.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/evstore.h"
#include "testutil.h"

TestSuite(store_growth, .init = tu_setup_dir, .fini = tu_teardown,
          .timeout = 150);

#define MIB (1024ull * 1024ull)

/* Seed of event k of batch b, so any event can be regenerated. */
static uint64_t seed_of(int batch, int k) {
  return (uint64_t)batch * 1000 + (uint64_t)k + 1;
}

static evs_store_options growth_opts(uint64_t map, uint64_t max) {
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.map_size = map;
  o.max_map_size = max;
  o.durability = EVS_NOSYNC;
  o.compress_threshold = UINT32_MAX; /* random data: do not try */
  return o;
}

/* Appends `n` random events of `size` bytes (seeds from `batch`). */
static int append_random(const char *stream, int batch, int n, size_t size,
                         evs_append_result *r) {
  static uint8_t *pool;
  static size_t pool_size;
  if (pool_size < (size_t)n * size) {
    free(pool);
    pool_size = (size_t)n * size;
    pool = malloc(pool_size);
    cr_assert_not_null(pool);
  }
  evs_event_data ev[64];
  cr_assert_leq(n, 64);
  for (int k = 0; k < n; k++) {
    uint8_t *p = pool + (size_t)k * size;
    tu_fill_random(p, size, seed_of(batch, k));
    tu_event(&ev[k], "Blob", p, size);
  }
  return evs_append(tu_store, stream, EVS_EXPECT_ANY, ev, (size_t)n, r);
}

/* Checks event `k` of `batch` as read back. */
static void check_event(const evs_event *e, int batch, int k, size_t size) {
  static uint8_t *want;
  static size_t want_size;
  if (want_size < size) {
    free(want);
    want = malloc(size);
    want_size = size;
    cr_assert_not_null(want);
  }
  tu_fill_random(want, size, seed_of(batch, k));
  cr_assert_eq(e->data.len, size);
  cr_assert_eq(tu_hash(e->data.data, size), tu_hash(want, size),
               "batch %d event %d differs", batch, k);
}

Test(store_growth, map_grows_from_one_mib_to_200_mib) {
  enum { BATCHES = 100, PER = 40 };
  const size_t size = 50 * 1024; /* 100 x 40 x 50 KiB = 200 MB */
  evs_store_options o = growth_opts(1 * MIB, 0);
  tu_store = tu_open(tu_dir, &o);
  evs_stats st;
  cr_assert_eq(evs_store_stats(tu_store, &st, 0), 0);
  uint64_t initial = st.map_size;
  cr_assert_leq(initial, 2 * MIB, "asked for 1 MiB, got %llu",
                (unsigned long long)initial);
  for (int b = 0; b < BATCHES; b++) {
    evs_append_result r;
    int rc = append_random("blobs", b, PER, size, &r);
    cr_assert_eq(rc, 0, "batch %d: %s: %s", b, evs_err_name(rc),
                 evs_last_error());
    cr_assert_eq(r.first_position, (uint64_t)b * PER + 1);
  }
  cr_assert_eq(evs_store_stats(tu_store, &st, 0), 0);
  cr_assert_gt(st.map_size, 200 * 1000 * 1000ull, "map_size %llu",
               (unsigned long long)st.map_size);
  cr_assert_geq(st.map_size, st.map_used);
  cr_assert_eq(st.events, (uint64_t)BATCHES * PER);

  /* Read a sample back: every 7th batch entirely through $all, plus single
   * events by position. */
  evs_read_all_options ro = EVS_READ_ALL_OPTIONS_INIT;
  evs_iter *it = NULL;
  cr_assert_eq(evs_read_all(&it, tu_store, &ro), 0);
  const evs_event *e;
  uint64_t n = 0;
  int rc;
  while ((rc = evs_iter_next(it, &e)) == 1) {
    int b = (int)(n / PER), k = (int)(n % PER);
    cr_assert_eq(e->position, n + 1);
    if (b % 7 == 0 || k == PER - 1)
      check_event(e, b, k, size);
    n++;
  }
  cr_assert_eq(rc, 0, "%s", evs_err_name(rc));
  cr_assert_eq(n, (uint64_t)BATCHES * PER);
  evs_iter_free(it);

  /* And after reopening with the small initial size again. */
  tu_reopen(&o);
  evs_event *one = NULL;
  cr_assert_eq(evs_read_event(tu_store, (uint64_t)BATCHES * PER, &one), 0);
  check_event(one, BATCHES - 1, PER - 1, size);
  evs_event_free(one);
  evs_append_result r;
  cr_assert_eq(append_random("blobs", BATCHES, 1, size, &r), 0);
  cr_assert_eq(r.first_position, (uint64_t)BATCHES * PER + 1);
}

Test(store_growth, growth_limit_gives_emapfull_and_loses_nothing) {
  const size_t size = 16 * 1024;
  evs_store_options o = growth_opts(1 * MIB, 4 * MIB);
  tu_store = tu_open(tu_dir, &o);
  int acked = 0, rc = 0;
  for (int b = 0; b < 200; b++) {
    rc = append_random("full", b, 10, size, NULL);
    if (rc != 0)
      break;
    acked++;
  }
  cr_assert_eq(rc, EVS_EMAPFULL, "after %d batches: %s: %s", acked,
               evs_err_name(rc), evs_last_error());
  cr_assert_gt(acked, 0, "not even one 160 KiB batch fit in 4 MiB");
  cr_assert_lt(acked, 30, "%d batches of 160 KiB fit in 4 MiB", acked);
  cr_assert_neq(evs_last_error()[0], '\0');
  evs_stats st;
  cr_assert_eq(evs_store_stats(tu_store, &st, 0), 0);
  cr_assert_leq(st.map_size, 4 * MIB);

  /* Everything acknowledged is there, nothing of the failed batch. */
  cr_assert_eq(tu_head(tu_store), (uint64_t)acked * 10);
  tu_evlist l = tu_stream(tu_store, "full", NULL);
  cr_assert_eq(l.n, (size_t)acked * 10);
  tu_evlist_free(&l);
  evs_read_all_options ro = EVS_READ_ALL_OPTIONS_INIT;
  evs_iter *it = NULL;
  cr_assert_eq(evs_read_all(&it, tu_store, &ro), 0);
  const evs_event *e;
  uint64_t n = 0;
  while ((rc = evs_iter_next(it, &e)) == 1) {
    check_event(e, (int)(n / 10), (int)(n % 10), size);
    n++;
  }
  cr_assert_eq(rc, 0);
  evs_iter_free(it);

  /* The store is still consistent and still takes small appends. */
  tu_verify_clean(tu_store);
  evs_append_result r;
  rc = tu_append_n(tu_store, "small", EVS_EXPECT_ANY, 1, NULL, &r);
  cr_assert_eq(rc, 0, "a small append after EVS_EMAPFULL: %s: %s",
               evs_err_name(rc), evs_last_error());
  cr_assert_eq(r.first_position, (uint64_t)acked * 10 + 1);

  /* Reopen with a larger limit: the big batches fit again. */
  evs_store_options big = growth_opts(1 * MIB, 64 * MIB);
  tu_reopen(&big);
  for (int b = 0; b < 5; b++) {
    rc = append_random("full", 1000 + b, 10, size, NULL);
    cr_assert_eq(rc, 0, "after raising the limit: %s: %s", evs_err_name(rc),
                 evs_last_error());
  }
  cr_assert_eq(tu_head(tu_store), (uint64_t)acked * 10 + 1 + 50);
}

Test(store_growth, one_oversized_append_fails_cleanly) {
  /* A single append larger than the whole limit fails with EVS_EMAPFULL;
   * the store goes on. */
  const size_t size = 1 * MIB;
  evs_store_options o = growth_opts(1 * MIB, 4 * MIB);
  tu_store = tu_open(tu_dir, &o);
  tu_append_ok(tu_store, "before", EVS_EXPECT_ANY, 3, NULL);
  int rc = append_random("huge", 0, 8, size, NULL);
  cr_assert_eq(rc, EVS_EMAPFULL, "%s: %s", evs_err_name(rc), evs_last_error());
  cr_assert_eq(tu_head(tu_store), 3);
  evs_stream_info info;
  cr_assert_eq(evs_stream_info_get(tu_store, "huge", &info), EVS_ENOSTREAM);
  evs_append_result r = tu_append_ok(tu_store, "after", EVS_EXPECT_ANY, 2, NULL);
  cr_assert_eq(r.first_position, 4);
  tu_evlist l = tu_all(tu_store, NULL);
  cr_assert_eq(l.n, 5);
  tu_evlist_free(&l);
}
