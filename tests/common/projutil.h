/*
 * Helpers for the projection and subscription tests (tests/projections/).
 * Like testutil.h: call them inside a test, never in Criterion's parent.
 */
#ifndef EVSTORE_PROJUTIL_H
#define EVSTORE_PROJUTIL_H

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
  char *key;   /* NUL-terminated copies (keys and values may hold any byte;
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

#endif /* EVSTORE_PROJUTIL_H */
