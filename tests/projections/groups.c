/*
 * Consumer groups (as in Message DB): member i of n receives only the
 * streams whose stable hash mod n is i. The members' streams partition the
 * streams exactly: their union is every stream, their intersections are
 * empty, and each member sees all events of its streams, in log order.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "projutil.h"
#include "testutil.h"

static evs_store *st;

static void setup(void) {
  tu_setup_dir();
  st = pu_open_store(tu_dir);
}

static void teardown(void) {
  evs_store_close(st);
  tu_rmrf(tu_dir);
  free(tu_dir);
}

TestSuite(proj_groups, .init = setup, .fini = teardown, .timeout = 60);

#define NSTREAMS 150
#define NMEMBERS 3

/* owner[s] = member that received stream s (-1 none); counts[s] events. */
static void run_member(uint32_t member, const char *category, int *owner,
                       int *counts, int *twice) {
  evs_sub_options o = EVS_SUB_OPTIONS_INIT;
  o.group_size = NMEMBERS;
  o.group_member = member;
  o.category = category;
  o.max_batch_events = 64;
  evs_sub *sub = NULL;
  int rc = evs_sub_open(&sub, st, &o);
  cr_assert_eq(rc, 0, "%s", evs_last_error());
  uint64_t last = 0;
  for (;;) {
    evs_sub_batch b;
    int n = evs_sub_next(sub, &b, 0);
    if (n == EVS_ETIMEDOUT)
      continue;
    cr_assert(n >= 0, "%s", evs_err_name(n));
    for (size_t i = 0; i < b.count; i++) {
      const evs_event *ev = &b.events[i];
      cr_assert_gt(ev->position, last, "log order");
      last = ev->position;
      char name[64];
      snprintf(name, sizeof name, "%.*s", (int)ev->stream.len,
               (const char *)ev->stream.data);
      cr_assert_eq(evs_stream_hash(name, strlen(name)) % NMEMBERS, member);
      int s = atoi(strchr(name, '-') + 1);
      if (owner[s] != -1 && owner[s] != (int)member)
        *twice = 1;
      owner[s] = (int)member;
      counts[s]++;
    }
    if (b.caught_up)
      break;
  }
  cr_assert_eq(evs_sub_checkpoint(sub), tu_head(st));
  evs_sub_close(sub);
}

static void fill(void) {
  /* Interleaved appends: stream s gets (s % 5) + 1 events. */
  for (int round = 0; round < 5; round++) {
    for (int s = 0; s < NSTREAMS; s++) {
      if (round > s % 5)
        continue;
      char name[32];
      snprintf(name, sizeof name, "%s-%d", s % 2 ? "job" : "task", s);
      pu_append1(st, name, "Work", "{}");
    }
  }
}

Test(proj_groups, members_partition_the_streams_exactly) {
  fill();
  int owner[NSTREAMS], counts[NSTREAMS], twice = 0;
  for (int s = 0; s < NSTREAMS; s++) {
    owner[s] = -1;
    counts[s] = 0;
  }
  int per_member[NMEMBERS] = { 0 };
  for (uint32_t m = 0; m < NMEMBERS; m++)
    run_member(m, NULL, owner, counts, &twice);
  cr_assert_not(twice, "a stream went to two members");
  for (int s = 0; s < NSTREAMS; s++) {
    cr_assert_neq(owner[s], -1, "stream %d went to no member", s);
    cr_assert_eq(counts[s], s % 5 + 1, "stream %d: %d events", s, counts[s]);
    per_member[owner[s]]++;
  }
  /* The hash spreads the work (not a proof, a sanity check). */
  for (int m = 0; m < NMEMBERS; m++)
    cr_assert_gt(per_member[m], NSTREAMS / NMEMBERS / 3);
}

Test(proj_groups, category_plus_group) {
  fill();
  int owner[NSTREAMS], counts[NSTREAMS], twice = 0;
  for (int s = 0; s < NSTREAMS; s++) {
    owner[s] = -1;
    counts[s] = 0;
  }
  for (uint32_t m = 0; m < NMEMBERS; m++)
    run_member(m, "job", owner, counts, &twice);
  cr_assert_not(twice);
  for (int s = 0; s < NSTREAMS; s++) {
    if (s % 2) {
      cr_assert_neq(owner[s], -1);
      cr_assert_eq(counts[s], s % 5 + 1);
    } else {
      cr_assert_eq(owner[s], -1, "task-%d is not in category job", s);
    }
  }
}
