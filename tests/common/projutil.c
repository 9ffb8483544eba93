/*
 * Helpers for the projection and subscription tests (see projutil.h).
 */
#include "projutil.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

evs_store *pu_open_store(const char *dir) {
  evs_store_options o = tu_opts(EVS_NOSYNC);
  return tu_open(dir, &o);
}

evs_views *pu_open_views(evs_store *store, const char *path) {
  evs_views_options o = EVS_VIEWS_OPTIONS_INIT;
  o.durability = EVS_NOSYNC;
  o.path = path;
  evs_views *v = NULL;
  int rc = evs_views_open(&v, store, &o);
  cr_assert_eq(rc, 0, "evs_views_open: %s: %s", evs_err_name(rc),
               evs_last_error());
  return v;
}

uint64_t pu_append1(evs_store *store, const char *stream, const char *type,
                    const char *data) {
  evs_event_data ev;
  tu_event(&ev, type, data, strlen(data));
  evs_append_result r;
  int rc = evs_append(store, stream, EVS_EXPECT_ANY, &ev, 1, &r);
  cr_assert_eq(rc, 0, "append to %s: %s: %s", stream, evs_err_name(rc),
               evs_last_error());
  return r.last_position;
}

static char *dupz(const void *p, size_t n) {
  char *d = malloc(n + 1);
  cr_assert_not_null(d);
  if (n)
    memcpy(d, p, n);
  d[n] = '\0';
  return d;
}

static int dump_cb(evs_slice key, evs_slice val, void *payload) {
  pu_view *v = payload;
  if (v->n == v->cap) {
    v->cap = v->cap ? v->cap * 2 : 64;
    v->kv = realloc(v->kv, v->cap * sizeof *v->kv);
    cr_assert_not_null(v->kv);
  }
  pu_kv *kv = &v->kv[v->n++];
  kv->key = dupz(key.data, key.len);
  kv->key_len = key.len;
  kv->val = dupz(val.data, val.len);
  kv->val_len = val.len;
  return 0;
}

pu_view pu_view_dump(evs_views *views, const char *name) {
  pu_view v;
  memset(&v, 0, sizeof v);
  evs_view_txn *t = NULL;
  int rc = evs_view_read_begin(&t, views, name);
  cr_assert_eq(rc, 0, "evs_view_read_begin(%s): %s: %s", name, evs_err_name(rc),
               evs_last_error());
  rc = evs_view_scan_prefix(t, NULL, 0, dump_cb, &v);
  cr_assert_eq(rc, 0, "scan: %s", evs_err_name(rc));
  evs_view_read_end(t);
  return v;
}

void pu_view_free(pu_view *v) {
  for (size_t i = 0; i < v->n; i++) {
    free(v->kv[i].key);
    free(v->kv[i].val);
  }
  free(v->kv);
  memset(v, 0, sizeof *v);
}

void pu_view_assert_equal(const pu_view *a, const pu_view *b) {
  size_t n = a->n < b->n ? a->n : b->n;
  for (size_t i = 0; i < n; i++) {
    cr_assert_eq(a->kv[i].key_len, b->kv[i].key_len,
                 "entry %zu: key '%s' vs '%s'", i, a->kv[i].key, b->kv[i].key);
    cr_assert_eq(memcmp(a->kv[i].key, b->kv[i].key, a->kv[i].key_len), 0,
                 "entry %zu: key '%s' vs '%s'", i, a->kv[i].key, b->kv[i].key);
    cr_assert(a->kv[i].val_len == b->kv[i].val_len &&
                  memcmp(a->kv[i].val, b->kv[i].val, a->kv[i].val_len) == 0,
              "key '%s': value '%s' vs '%s'", a->kv[i].key, a->kv[i].val,
              b->kv[i].val);
  }
  cr_assert_eq(a->n, b->n, "views have %zu and %zu entries", a->n, b->n);
}

const pu_kv *pu_view_find(const pu_view *v, const char *key) {
  size_t kl = strlen(key);
  for (size_t i = 0; i < v->n; i++)
    if (v->kv[i].key_len == kl && memcmp(v->kv[i].key, key, kl) == 0)
      return &v->kv[i];
  return NULL;
}

char *pu_view_get(evs_views *views, const char *name, const char *key) {
  evs_view_txn *t = NULL;
  int rc = evs_view_read_begin(&t, views, name);
  cr_assert_eq(rc, 0, "evs_view_read_begin(%s): %s: %s", name, evs_err_name(rc),
               evs_last_error());
  evs_slice v;
  rc = evs_view_get(t, key, strlen(key), &v);
  char *out = NULL;
  if (rc == 0)
    out = dupz(v.data, v.len);
  else
    cr_assert_eq(rc, EVS_ENOTFOUND, "get %s: %s", key, evs_err_name(rc));
  evs_view_read_end(t);
  return out;
}

evs_proj_status pu_status(evs_runner *r, const char *name) {
  evs_proj_status st;
  int rc = evs_runner_status(r, name, &st);
  cr_assert_eq(rc, 0, "evs_runner_status(%s): %s", name, evs_err_name(rc));
  return st;
}

static void *pu_bg_main(void *arg) {
  pu_bg_run *r = arg;
  evs_sub_batch b;
  switch (r->kind) {
  case PU_BG_NEXT:
    do
      r->rc = evs_sub_next(r->subs[0], &b, -1);
    while (r->rc >= 0);
    break;
  case PU_BG_RUN:
    r->rc = evs_sub_run(r->subs[0], r->cbs[0], r->payloads[0]);
    break;
  case PU_BG_MANY:
    r->rc = evs_sub_run_many(r->subs, r->cbs, r->payloads, r->n, r->results);
    break;
  }
  __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
  return NULL;
}

void pu_bg_start(pu_bg_run *r) {
  cr_assert(r->n >= 1 && r->n <= PU_BG_MAX);
  cr_assert(r->kind == PU_BG_MANY || r->n == 1);
  __atomic_store_n(&r->done, 0, __ATOMIC_RELEASE);
  cr_assert_eq(pthread_create(&r->th, NULL, pu_bg_main, r), 0);
}

static int pu_bg_wait(pu_bg_run *r, int ms) {
  int64_t t0 = tu_now_ns();
  while (!__atomic_load_n(&r->done, __ATOMIC_ACQUIRE) &&
         tu_now_ns() - t0 < (int64_t)ms * 1000000)
    tu_sleep_ms(5);
  return __atomic_load_n(&r->done, __ATOMIC_ACQUIRE);
}

int pu_bg_join(pu_bg_run *r, int ms) {
  int ended = pu_bg_wait(r, ms);
  if (!ended) {
    for (size_t i = 0; i < r->n; i++)
      evs_sub_cancel(r->subs[i]);
    cr_assert(pu_bg_wait(r, ms),
              "the run returned neither by itself nor when canceled");
  }
  pthread_join(r->th, NULL);
  return ended;
}
