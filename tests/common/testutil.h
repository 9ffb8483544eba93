/*
 * Helpers shared by the evstore test suites.
 *
 * Criterion forks one process per test: every helper here is meant to be
 * called inside a test (or its .init/.fini fixture), never in the parent.
 * Helpers that cannot continue on failure abort the test with cr_assert, so
 * a test reads as a list of steps.
 */
#ifndef EVSTORE_TESTUTIL_H
#define EVSTORE_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "evstore/evstore.h"

/* The store and directory of the default fixture (tu_setup/tu_teardown). */
extern char *tu_dir;
extern evs_store *tu_store;

/*
 * Default fixture: a fresh temp directory and a store opened in it with
 * default options. Use as TestSuite(name, .init = tu_setup, .fini =
 * tu_teardown).
 */
void tu_setup(void);
void tu_teardown(void);

/* Fixture that only makes (and removes) tu_dir; the test opens the store. */
void tu_setup_dir(void);

/* Makes a fresh directory under $TMPDIR (or /tmp). Returns a malloc'd path. */
char *tu_mkdtemp(void);

/* Removes `path` and everything below it. Returns 0 or -1. */
int tu_rmrf(const char *path);

/* Opens a store in `dir` with `opts` (NULL = defaults); asserts success. */
evs_store *tu_open(const char *dir, const evs_store_options *opts);

/* Closes tu_store and reopens it in tu_dir with `opts`. */
void tu_reopen(const evs_store_options *opts);

/* Options with the given durability and everything else default. */
evs_store_options tu_opts(evs_durability durability);

/* Fills `ev` with a nil id (generate one), type and data; no metadata. */
void tu_event(evs_event_data *ev, const char *type, const void *data,
              size_t len);

/*
 * Appends `n` events of type `type` (NULL = "TestEvent") whose data is the
 * text "<stream>#<k>" with k = 0..n-1 (k counts inside this call). Returns
 * evs_append's code; *out may be NULL.
 */
int tu_append_n(evs_store *store, const char *stream, int64_t expected,
                size_t n, const char *type, evs_append_result *out);

/* Same as tu_append_n but asserts success and returns the result. */
evs_append_result tu_append_ok(evs_store *store, const char *stream,
                               int64_t expected, size_t n, const char *type);

/* A copy of one event, owned by the test. */
typedef struct tu_ev {
  uint64_t position;
  int64_t version;
  int64_t timestamp_ns;
  uint64_t stream_id;
  evs_uuid id;
  char *stream;   /* NUL-terminated copies */
  char *type;
  void *data;     /* malloc'd copy (never NULL, may be length 0) */
  size_t data_len;
  void *metadata;
  size_t metadata_len;
} tu_ev;

typedef struct tu_evlist {
  tu_ev *ev;
  size_t n;
  size_t cap;
  int rc; /* the code that ended the read: 0 at a clean end */
} tu_evlist;

/*
 * Copies every event an iterator yields into *out until the end or an
 * error (stored in out->rc, also returned). Frees the iterator.
 */
int tu_drain(evs_iter *it, tu_evlist *out);

/*
 * Reads a stream / $all into *out (zeroed first). Returns the error of
 * evs_read_stream/evs_read_all if it fails (out stays empty), otherwise
 * out->rc. `opts` may be NULL for defaults.
 */
int tu_read_stream(evs_store *store, const char *stream,
                   const evs_read_options *opts, tu_evlist *out);
int tu_read_all(evs_store *store, const evs_read_all_options *opts,
                tu_evlist *out);

/* Like the above but asserts a clean read. */
tu_evlist tu_stream(evs_store *store, const char *stream,
                    const evs_read_options *opts);
tu_evlist tu_all(evs_store *store, const evs_read_all_options *opts);

void tu_evlist_free(tu_evlist *list);

/* Runs evs_store_verify, asserts that the pass ran and found no problem
 * (the first problems described go into the failure message). Returns
 * the report. */
evs_verify_report tu_verify_clean(evs_store *store);

/* Asserts that two lists hold the same events (all fields). */
void tu_assert_same_events(const tu_evlist *a, const tu_evlist *b);

/* Head of $all; asserts success. */
uint64_t tu_head(evs_store *store);

/* Number of events in the log per evs_store_stats; asserts success. */
uint64_t tu_stat_events(evs_store *store);

/* Wall clock in ns since the epoch. */
int64_t tu_now_ns(void);

/* Sleeps `ms` milliseconds. */
void tu_sleep_ms(unsigned ms);

/* Deterministic pseudo-random bytes (xorshift64*) from `seed`. */
void tu_fill_random(void *buf, size_t len, uint64_t seed);

/* Compressible bytes: repeated JSON-like text, deterministic from `seed`. */
void tu_fill_text(void *buf, size_t len, uint64_t seed);

/* 64-bit FNV-1a. */
uint64_t tu_hash(const void *buf, size_t len);

/* 1 if `haystack` contains `needle` ignoring ASCII case. */
int tu_contains_ci(const char *haystack, const char *needle);

/* A client-chosen id whose bytes are derived from `n` (never nil). */
evs_uuid tu_uuid(uint64_t n);

/*
 * Direct LMDB access to a CLOSED store's data.mdb, for corruption and
 * format tests. `db` is a named database ("events", "meta", ...).
 */

/* Flips (xor 0xff) the byte at `offset` (or the middle one if offset is
 * SIZE_MAX) of the value stored under `key`. Returns the value's length. */
size_t tu_lmdb_flip_byte(const char *dir, const char *db, const void *key,
                         size_t key_len, size_t offset);

/* Puts `val` under `key` in `db`. */
void tu_lmdb_put(const char *dir, const char *db, const void *key,
                 size_t key_len, const void *val, size_t val_len);

/* Deletes `key` from `db`; returns 1 if it existed, 0 if not. */
int tu_lmdb_del(const char *dir, const char *db, const void *key,
                size_t key_len);

/* Deletes the n-th (0-based) key/value pair of `db` in cursor order (for
 * MDB_DUPSORT databases each duplicate counts). Returns 1 if there was one,
 * 0 if not. Independent of the database's key layout. */
int tu_lmdb_del_nth(const char *dir, const char *db, size_t n);

/* Copies up to `cap` bytes of the value under `key` in `db` to `out` (may
 * be NULL); returns the value's length, or SIZE_MAX when missing. */
size_t tu_lmdb_get(const char *dir, const char *db, const void *key,
                   size_t key_len, void *out, size_t cap);

/* Length of the value under `key` in `db`, or SIZE_MAX when missing. */
size_t tu_lmdb_value_len(const char *dir, const char *db, const void *key,
                         size_t key_len);

/* Big-endian 8-byte key. */
void tu_be64(uint8_t out[8], uint64_t v);

#endif /* EVSTORE_TESTUTIL_H */
