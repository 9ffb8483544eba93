/*
 * Helpers shared by the evstore test suites (see testutil.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "testutil.h"

#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

char *tu_dir;
evs_store *tu_store;

char *tu_mkdtemp(void) {
  const char *base = getenv("TMPDIR");
  if (base == NULL || base[0] == '\0')
    base = "/tmp";
  size_t n = strlen(base) + 32;
  char *path = malloc(n);
  cr_assert_not_null(path);
  snprintf(path, n, "%s/evstore-test-XXXXXX", base);
  cr_assert_not_null(mkdtemp(path), "mkdtemp(%s): %s", path, strerror(errno));
  return path;
}

static int rm_one(const char *path, const struct stat *sb, int type,
                  struct FTW *ftw) {
  (void)sb;
  (void)ftw;
  if (type == FTW_DP)
    return rmdir(path);
  return unlink(path);
}

int tu_rmrf(const char *path) {
  if (path == NULL)
    return 0;
  return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

evs_store *tu_open(const char *dir, const evs_store_options *opts) {
  evs_store *s = NULL;
  int rc = evs_store_open(&s, dir, opts);
  cr_assert_eq(rc, 0, "evs_store_open(%s): %s: %s", dir, evs_err_name(rc),
               evs_last_error());
  cr_assert_not_null(s);
  return s;
}

void tu_setup_dir(void) {
  tu_dir = tu_mkdtemp();
  tu_store = NULL;
}

void tu_setup(void) {
  tu_setup_dir();
  tu_store = tu_open(tu_dir, NULL);
}

void tu_teardown(void) {
  evs_store_close(tu_store);
  tu_store = NULL;
  tu_rmrf(tu_dir);
  free(tu_dir);
  tu_dir = NULL;
}

void tu_reopen(const evs_store_options *opts) {
  evs_store_close(tu_store);
  tu_store = NULL;
  tu_store = tu_open(tu_dir, opts);
}

evs_store_options tu_opts(evs_durability durability) {
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.durability = durability;
  return o;
}

void tu_event(evs_event_data *ev, const char *type, const void *data,
              size_t len) {
  memset(ev, 0, sizeof *ev);
  ev->type = type;
  ev->data = data;
  ev->data_len = len;
}

int tu_append_n(evs_store *store, const char *stream, int64_t expected,
                size_t n, const char *type, evs_append_result *out) {
  evs_event_data *evs = calloc(n ? n : 1, sizeof *evs);
  char (*bufs)[300] = calloc(n ? n : 1, sizeof *bufs);
  cr_assert(evs != NULL && bufs != NULL);
  for (size_t k = 0; k < n; k++) {
    int len = snprintf(bufs[k], sizeof bufs[k], "%s#%zu", stream ? stream : "",
                       k);
    tu_event(&evs[k], type ? type : "TestEvent", bufs[k], (size_t)len);
  }
  int rc = evs_append(store, stream, expected, evs, n, out);
  free(evs);
  free(bufs);
  return rc;
}

evs_append_result tu_append_ok(evs_store *store, const char *stream,
                               int64_t expected, size_t n, const char *type) {
  evs_append_result r;
  memset(&r, 0, sizeof r);
  int rc = tu_append_n(store, stream, expected, n, type, &r);
  cr_assert_eq(rc, 0, "append %zu to '%s' (expected %lld): %s: %s", n, stream,
               (long long)expected, evs_err_name(rc), evs_last_error());
  return r;
}

static void *dup_bytes(const void *p, size_t len, int nul) {
  char *d = malloc(len + 1);
  cr_assert_not_null(d);
  if (len)
    memcpy(d, p, len);
  if (nul)
    d[len] = '\0';
  return d;
}

int tu_drain(evs_iter *it, tu_evlist *out) {
  const evs_event *ev;
  int rc;
  while ((rc = evs_iter_next(it, &ev)) == 1) {
    if (out->n == out->cap) {
      out->cap = out->cap ? out->cap * 2 : 64;
      out->ev = realloc(out->ev, out->cap * sizeof *out->ev);
      cr_assert_not_null(out->ev);
    }
    tu_ev *c = &out->ev[out->n++];
    c->position = ev->position;
    c->version = ev->version;
    c->timestamp_ns = ev->timestamp_ns;
    c->stream_id = ev->stream_id;
    c->id = ev->id;
    c->stream = dup_bytes(ev->stream.data, ev->stream.len, 1);
    c->type = dup_bytes(ev->type.data, ev->type.len, 1);
    c->data = dup_bytes(ev->data.data, ev->data.len, 0);
    c->data_len = ev->data.len;
    c->metadata = dup_bytes(ev->metadata.data, ev->metadata.len, 0);
    c->metadata_len = ev->metadata.len;
  }
  evs_iter_free(it);
  out->rc = rc;
  return rc;
}

int tu_read_stream(evs_store *store, const char *stream,
                   const evs_read_options *opts, tu_evlist *out) {
  memset(out, 0, sizeof *out);
  evs_read_options def = EVS_READ_OPTIONS_INIT;
  evs_iter *it = NULL;
  int rc = evs_read_stream(&it, store, stream, opts ? opts : &def);
  if (rc != 0) {
    out->rc = rc;
    return rc;
  }
  cr_assert_not_null(it);
  return tu_drain(it, out);
}

int tu_read_all(evs_store *store, const evs_read_all_options *opts,
                tu_evlist *out) {
  memset(out, 0, sizeof *out);
  evs_read_all_options def = EVS_READ_ALL_OPTIONS_INIT;
  evs_iter *it = NULL;
  int rc = evs_read_all(&it, store, opts ? opts : &def);
  if (rc != 0) {
    out->rc = rc;
    return rc;
  }
  cr_assert_not_null(it);
  return tu_drain(it, out);
}

tu_evlist tu_stream(evs_store *store, const char *stream,
                    const evs_read_options *opts) {
  tu_evlist l;
  int rc = tu_read_stream(store, stream, opts, &l);
  cr_assert_eq(rc, 0, "read stream '%s': %s: %s", stream, evs_err_name(rc),
               evs_last_error());
  return l;
}

tu_evlist tu_all(evs_store *store, const evs_read_all_options *opts) {
  tu_evlist l;
  int rc = tu_read_all(store, opts, &l);
  cr_assert_eq(rc, 0, "read $all: %s: %s", evs_err_name(rc),
               evs_last_error());
  return l;
}

void tu_evlist_free(tu_evlist *list) {
  if (list == NULL)
    return;
  for (size_t i = 0; i < list->n; i++) {
    free(list->ev[i].stream);
    free(list->ev[i].type);
    free(list->ev[i].data);
    free(list->ev[i].metadata);
  }
  free(list->ev);
  memset(list, 0, sizeof *list);
}

void tu_assert_same_events(const tu_evlist *a, const tu_evlist *b) {
  cr_assert_eq(a->n, b->n, "event counts differ: %zu vs %zu", a->n, b->n);
  for (size_t i = 0; i < a->n; i++) {
    const tu_ev *x = &a->ev[i], *y = &b->ev[i];
    cr_assert_eq(x->position, y->position, "event %zu: position %llu vs %llu",
                 i, (unsigned long long)x->position,
                 (unsigned long long)y->position);
    cr_assert_eq(x->version, y->version, "event %zu: version", i);
    cr_assert_eq(x->timestamp_ns, y->timestamp_ns, "event %zu: timestamp", i);
    cr_assert_eq(memcmp(&x->id, &y->id, sizeof x->id), 0, "event %zu: id", i);
    cr_assert_str_eq(x->stream, y->stream, "event %zu: stream", i);
    cr_assert_str_eq(x->type, y->type, "event %zu: type", i);
    cr_assert_eq(x->data_len, y->data_len, "event %zu: data length", i);
    cr_assert_eq(memcmp(x->data, y->data, x->data_len), 0, "event %zu: data",
                 i);
    cr_assert_eq(x->metadata_len, y->metadata_len, "event %zu: metadata len",
                 i);
    cr_assert_eq(memcmp(x->metadata, y->metadata, x->metadata_len), 0,
                 "event %zu: metadata", i);
  }
}

typedef struct verify_log {
  char text[1024];
  size_t used;
  uint64_t problems;
} verify_log;

static int verify_log_cb(const char *problem, uint64_t done, uint64_t total,
                         void *payload) {
  (void)done;
  (void)total;
  verify_log *log = payload;
  if (problem == NULL)
    return 0;
  log->problems++;
  if (log->used < sizeof log->text - 1) {
    int n = snprintf(log->text + log->used, sizeof log->text - log->used,
                     "%s%s", log->used ? "; " : "", problem);
    if (n > 0)
      log->used += (size_t)n;
    if (log->used >= sizeof log->text)
      log->used = sizeof log->text - 1;
  }
  return 0;
}

evs_verify_report tu_verify_clean(evs_store *store) {
  evs_verify_report vr;
  memset(&vr, 0, sizeof vr);
  verify_log log;
  memset(&log, 0, sizeof log);
  int rc = evs_store_verify(store, &vr, verify_log_cb, &log);
  cr_assert_eq(rc, 0, "evs_store_verify: %s: %s", evs_err_name(rc),
               evs_last_error());
  cr_assert_eq(vr.errors, 0, "verify found %llu errors: %s",
               (unsigned long long)vr.errors, log.text);
  return vr;
}

uint64_t tu_head(evs_store *store) {
  uint64_t h = UINT64_MAX;
  int rc = evs_head_position(store, &h);
  cr_assert_eq(rc, 0, "evs_head_position: %s: %s", evs_err_name(rc),
               evs_last_error());
  return h;
}

uint64_t tu_stat_events(evs_store *store) {
  evs_stats st;
  memset(&st, 0, sizeof st);
  int rc = evs_store_stats(store, &st, 0);
  cr_assert_eq(rc, 0, "evs_store_stats: %s: %s", evs_err_name(rc),
               evs_last_error());
  return st.events;
}

int64_t tu_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void tu_sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

void tu_fill_random(void *buf, size_t len, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
  if (x == 0)
    x = 1;
  uint8_t *p = buf;
  size_t i = 0;
  while (i < len) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    uint64_t v = x * 0x2545F4914F6CDD1Dull;
    size_t take = len - i < 8 ? len - i : 8;
    memcpy(p + i, &v, take);
    i += take;
  }
}

void tu_fill_text(void *buf, size_t len, uint64_t seed) {
  static const char *words[] = {"order", "customer", "amount", "currency",
                                "EUR",   "placed",   "shipped", "item",
                                "sku",   "quantity", "price",   "note"};
  char *p = buf;
  size_t i = 0;
  uint64_t x = seed + 1;
  while (i < len) {
    char tmp[64];
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    int n = snprintf(tmp, sizeof tmp, "{\"%s\":%u},",
                     words[(x >> 33) % 12], (unsigned)((x >> 40) % 100));
    size_t take = (size_t)n < len - i ? (size_t)n : len - i;
    memcpy(p + i, tmp, take);
    i += take;
  }
}

uint64_t tu_hash(const void *buf, size_t len) {
  const uint8_t *p = buf;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

int tu_contains_ci(const char *haystack, const char *needle) {
  if (haystack == NULL || needle == NULL)
    return 0;
  size_t n = strlen(needle);
  for (const char *h = haystack; *h; h++)
    if (strncasecmp(h, needle, n) == 0)
      return 1;
  return 0;
}

evs_uuid tu_uuid(uint64_t n) {
  evs_uuid u;
  memset(&u, 0, sizeof u);
  u.bytes[0] = 0xab;
  for (int i = 0; i < 8; i++)
    u.bytes[8 + i] = (uint8_t)(n >> (56 - 8 * i));
  u.bytes[6] = 0x40; /* looks like a v4 uuid */
  u.bytes[7] = 0x01;
  return u;
}

void tu_be64(uint8_t out[8], uint64_t v) {
  for (int i = 0; i < 8; i++)
    out[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* Opens the LMDB environment of a closed store with a write txn on `db`. */
static void lmdb_begin(const char *dir, const char *db, MDB_env **env,
                       MDB_txn **txn, MDB_dbi *dbi) {
  int rc = mdb_env_create(env);
  cr_assert_eq(rc, 0, "mdb_env_create: %s", mdb_strerror(rc));
  mdb_env_set_maxdbs(*env, 32);
  rc = mdb_env_open(*env, dir, 0, 0664);
  cr_assert_eq(rc, 0, "mdb_env_open(%s): %s", dir, mdb_strerror(rc));
  rc = mdb_txn_begin(*env, NULL, 0, txn);
  cr_assert_eq(rc, 0, "mdb_txn_begin: %s", mdb_strerror(rc));
  rc = mdb_dbi_open(*txn, db, 0, dbi);
  cr_assert_eq(rc, 0, "mdb_dbi_open(%s): %s", db, mdb_strerror(rc));
}

static void lmdb_commit(MDB_env *env, MDB_txn *txn) {
  int rc = mdb_txn_commit(txn);
  cr_assert_eq(rc, 0, "mdb_txn_commit: %s", mdb_strerror(rc));
  mdb_env_close(env);
}

size_t tu_lmdb_flip_byte(const char *dir, const char *db, const void *key,
                         size_t key_len, size_t offset) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  lmdb_begin(dir, db, &env, &txn, &dbi);
  MDB_val k = {key_len, (void *)key}, v;
  int rc = mdb_get(txn, dbi, &k, &v);
  cr_assert_eq(rc, 0, "mdb_get in %s: %s", db, mdb_strerror(rc));
  cr_assert_gt(v.mv_size, 0);
  size_t len = v.mv_size;
  uint8_t *copy = malloc(len);
  cr_assert_not_null(copy);
  memcpy(copy, v.mv_data, len);
  size_t at = offset == SIZE_MAX ? len / 2 : offset;
  cr_assert_lt(at, len);
  copy[at] ^= 0xff;
  MDB_val nv = {len, copy};
  rc = mdb_put(txn, dbi, &k, &nv, 0);
  cr_assert_eq(rc, 0, "mdb_put: %s", mdb_strerror(rc));
  lmdb_commit(env, txn);
  free(copy);
  return len;
}

void tu_lmdb_put(const char *dir, const char *db, const void *key,
                 size_t key_len, const void *val, size_t val_len) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  lmdb_begin(dir, db, &env, &txn, &dbi);
  MDB_val k = {key_len, (void *)key}, v = {val_len, (void *)val};
  int rc = mdb_put(txn, dbi, &k, &v, 0);
  cr_assert_eq(rc, 0, "mdb_put in %s: %s", db, mdb_strerror(rc));
  lmdb_commit(env, txn);
}

int tu_lmdb_del(const char *dir, const char *db, const void *key,
                size_t key_len) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  lmdb_begin(dir, db, &env, &txn, &dbi);
  MDB_val k = {key_len, (void *)key};
  int rc = mdb_del(txn, dbi, &k, NULL);
  cr_assert(rc == 0 || rc == MDB_NOTFOUND, "mdb_del in %s: %s", db,
            mdb_strerror(rc));
  lmdb_commit(env, txn);
  return rc == 0;
}

size_t tu_lmdb_get(const char *dir, const char *db, const void *key,
                   size_t key_len, void *out, size_t cap) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  lmdb_begin(dir, db, &env, &txn, &dbi);
  MDB_val k = {key_len, (void *)key}, v;
  int rc = mdb_get(txn, dbi, &k, &v);
  size_t len = rc == 0 ? v.mv_size : SIZE_MAX;
  if (rc == 0 && out)
    memcpy(out, v.mv_data, len < cap ? len : cap);
  mdb_txn_abort(txn);
  mdb_env_close(env);
  return len;
}

size_t tu_lmdb_value_len(const char *dir, const char *db, const void *key,
                         size_t key_len) {
  return tu_lmdb_get(dir, db, key, key_len, NULL, 0);
}

int tu_lmdb_del_nth(const char *dir, const char *db, size_t n) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  lmdb_begin(dir, db, &env, &txn, &dbi);
  MDB_cursor *c;
  int rc = mdb_cursor_open(txn, dbi, &c);
  cr_assert_eq(rc, 0, "mdb_cursor_open: %s", mdb_strerror(rc));
  MDB_val k, v;
  rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
  int found = rc == 0;
  if (found) {
    rc = mdb_cursor_del(c, 0);
    cr_assert_eq(rc, 0, "mdb_cursor_del: %s", mdb_strerror(rc));
  }
  mdb_cursor_close(c);
  lmdb_commit(env, txn);
  return found;
}
