/*
 * Helpers for the projection and subscription tests (tests/projections/).
 * Like testutil.h: call them inside a test, never in Criterion's parent.
 */
#ifndef EVSTORE_PROJUTIL_H
#define EVSTORE_PROJUTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "evstore/evstore.h"

/* A store opened with EVS_NOSYNC (fast, for tests) in `dir`. */
evs_store *pu_open_store(const char *dir);

/* The store's views (default directory) with EVS_NOSYNC; asserts. */
evs_views *pu_open_views(evs_store *store, const char *path);

/* Appends one event with `data` (a NUL-terminated string) to `stream`,
 * expected version ANY; asserts and returns its position. */
uint64_t pu_append1(evs_store *store, const char *stream, const char *type,
                    const char *data);

/* A copy of a whole view: keys and values, in key order. */
typedef struct pu_kv {
  char *key; /* NUL-terminated copies (keys and values may hold any byte;
                lengths are authoritative) */
  size_t key_len;
  char *val;
  size_t val_len;
} pu_kv;

typedef struct pu_view {
  pu_kv *kv;
  size_t n, cap;
} pu_view;

/* Reads the active view of projection `name` entirely. */
pu_view pu_view_dump(evs_views *views, const char *name);
void pu_view_free(pu_view *v);
/* Asserts that two dumps are equal (same keys, same values). */
void pu_view_assert_equal(const pu_view *a, const pu_view *b);
/* Value of `key` in a dump, or NULL. */
const pu_kv *pu_view_find(const pu_view *v, const char *key);

/* Reads `key` (a string) from projection `name`'s view into a malloc'd
 * NUL-terminated string; NULL when absent. */
char *pu_view_get(evs_views *views, const char *name, const char *key);

/* Status of a projection; asserts. */
evs_proj_status pu_status(evs_runner *r, const char *name);

/* What a pu_bg_run runs in its thread. */
typedef enum pu_bg_kind {
  PU_BG_NEXT, /* evs_sub_next(subs[0], -1) until it returns an error */
  PU_BG_RUN,  /* evs_sub_run(subs[0], cbs[0], payloads[0]) */
  PU_BG_MANY  /* evs_sub_run_many(subs, cbs, payloads, n, results) */
} pu_bg_kind;

#define PU_BG_MAX 8

/*
 * A subscription run in a thread of its own, so that a run that does not
 * end fails its test instead of hanging it: fill kind, subs, n (1 for
 * NEXT and RUN, at most PU_BG_MAX), cbs and payloads (not for NEXT), then
 * pu_bg_start() and pu_bg_join().
 */
typedef struct pu_bg_run {
  pu_bg_kind kind;
  evs_sub **subs;
  size_t n;
  const evs_sub_callbacks **cbs;
  void **payloads;
  int results[PU_BG_MAX]; /* MANY: each subscription's result */
  int rc;                 /* what the run returned */
  int done;               /* atomic: the run has returned */
  pthread_t th;
} pu_bg_run;

/* Starts the run's thread; asserts. */
void pu_bg_start(pu_bg_run *r);

/* Waits up to `ms` for the run to return. If it has not, cancels its
 * subscriptions and waits up to `ms` again (asserting that it returns).
 * Joins the thread; returns 1 if the run returned by itself, 0 if it had
 * to be canceled. */
int pu_bg_join(pu_bg_run *r, int ms);

#endif /* EVSTORE_PROJUTIL_H */
