/*
 * A damaged store file: flipped bytes found by evs_store_verify and by the
 * reads that meet them, as an error, never as wrong data and never a crash.
 *
 * tests/store/compression.c flips bytes of event records through the LMDB
 * API (which rewrites the page cleanly). These tests edit data.mdb by byte
 * offset, as a bad disk or a stray write would, in uncompressed records,
 * overflow pages and the index databases, and flip every byte of a stream
 * record. Byte patterns are located by searching the file; every copy is
 * flipped, since LMDB keeps older copies of pages in its free list.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evstore/evstore.h"
#include "testutil.h"

TestSuite(faults_corrupt, .init = tu_setup_dir, .fini = tu_teardown,
          .timeout = 120);

/* The test store: streams alpha-1, beta-1, alpha-2 written in turn, so
 * position p (1-based) belongs to alpha-1 when p % 3 == 1, beta-1 when
 * p % 3 == 2 and alpha-2 when p % 3 == 0. Type "Placed" when p % 4 == 1,
 * else "Paid". Event p has id tu_uuid(p) and 100 bytes of data starting
 * with "EVS-FAULT-MARKER-<p>". Stored uncompressed. */
#define ROUNDS 40
#define EVENTS (3 * ROUNDS)

static const char *const stream_of_pos[3] = {"alpha-2", "alpha-1", "beta-1"};

static evs_store_options raw_opts(void) {
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.compress_threshold = UINT32_MAX;
  return o;
}

static void marker(char out[32], uint64_t pos) {
  snprintf(out, 32, "EVS-FAULT-MARKER-%04llu", (unsigned long long)pos);
}

static void build_store(void) {
  evs_store_options o = raw_opts();
  tu_store = tu_open(tu_dir, &o);
  for (uint64_t p = 1; p <= EVENTS; p++) {
    char data[100];
    memset(data, '.', sizeof data);
    marker(data, p);
    data[strlen(data)] = '|';
    evs_event_data ev;
    tu_event(&ev, p % 4 == 1 ? "Placed" : "Paid", data, sizeof data);
    ev.id = tu_uuid(p);
    evs_append_result r;
    int rc = evs_append(tu_store, stream_of_pos[p % 3], EVS_EXPECT_ANY, &ev,
                        1, &r);
    cr_assert_eq(rc, 0, "%s", evs_last_error());
    cr_assert_eq(r.first_position, p);
  }
  evs_store_close(tu_store);
  tu_store = NULL;
}

/* ---- editing data.mdb by byte offset ------------------------------------- */

static uint8_t *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "%s: %s", path, strerror(errno));
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *buf = malloc((size_t)n);
  cr_assert_not_null(buf);
  cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return buf;
}

static void data_path(char *out, size_t cap) {
  snprintf(out, cap, "%s/data.mdb", tu_dir);
}

/*
 * Finds every copy of `pat` in data.mdb and xors the byte at `at` (an
 * offset from the start of the match, may lie past the pattern) with
 * `mask`. A copy directly preceded by the `not_after` bytes (if given) is
 * left alone. Returns the number of bytes flipped.
 */
static size_t flip_pattern(const void *pat, size_t len, size_t at,
                           uint8_t mask, const void *not_after,
                           size_t not_after_len) {
  char path[4096];
  data_path(path, sizeof path);
  size_t n;
  uint8_t *buf = read_file(path, &n);
  int fd = open(path, O_WRONLY);
  cr_assert_geq(fd, 0);
  size_t flipped = 0;
  for (size_t off = 0; off + len <= n;) {
    uint8_t *hit = memmem(buf + off, n - off, pat, len);
    if (hit == NULL)
      break;
    size_t h = (size_t)(hit - buf);
    off = h + 1;
    if (not_after && h >= not_after_len &&
        memcmp(buf + h - not_after_len, not_after, not_after_len) == 0)
      continue;
    if (h + at >= n)
      continue;
    uint8_t b = buf[h + at] ^ mask;
    cr_assert_eq(pwrite(fd, &b, 1, (off_t)(h + at)), 1);
    flipped++;
  }
  fsync(fd);
  close(fd);
  free(buf);
  return flipped;
}

/* Root page number of the named database (LMDB 0.9's MDB_db record, read
 * from the main database: md_root is its last field, at offset 40). */
static uint64_t db_root(const char *db, size_t *page_size) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi main_dbi;
  cr_assert_eq(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 32);
  cr_assert_eq(mdb_env_open(env, tu_dir, MDB_RDONLY, 0644), 0);
  cr_assert_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
  cr_assert_eq(mdb_dbi_open(txn, NULL, 0, &main_dbi), 0);
  MDB_val k = {strlen(db), (void *)db}, v;
  cr_assert_eq(mdb_get(txn, main_dbi, &k, &v), 0, "no database %s", db);
  cr_assert_eq(v.mv_size, 48, "unexpected MDB_db size %zu", v.mv_size);
  uint64_t root;
  memcpy(&root, (const uint8_t *)v.mv_data + 40, 8);
  MDB_stat st;
  mdb_env_stat(env, &st);
  *page_size = st.ms_psize;
  mdb_txn_abort(txn);
  mdb_env_close(env);
  return root;
}

/* ---- checks -------------------------------------------------------------- */

static void reopen(void) {
  evs_store_options o = raw_opts();
  tu_store = tu_open(tu_dir, &o);
}

static uint64_t verify_errors(void) {
  evs_verify_report vr;
  memset(&vr, 0, sizeof vr);
  int rc = evs_store_verify(tu_store, &vr, NULL, NULL);
  cr_assert_eq(rc, 0, "verify did not run: %s", evs_err_name(rc));
  cr_assert_eq(vr.events_checked, EVENTS);
  return vr.errors;
}

/* Every event a read returns is the one written at its position. */
static void assert_genuine(const evs_event *e) {
  char want[32];
  marker(want, e->position);
  cr_assert_geq(e->data.len, strlen(want));
  cr_assert_eq(memcmp(e->data.data, want, strlen(want)), 0,
               "position %llu returned another event's data",
               (unsigned long long)e->position);
  const char *s = stream_of_pos[e->position % 3];
  cr_assert(e->stream.len == strlen(s) &&
                memcmp(e->stream.data, s, e->stream.len) == 0,
            "position %llu returned in stream '%.*s'",
            (unsigned long long)e->position, (int)e->stream.len,
            (const char *)e->stream.data);
  evs_uuid id = tu_uuid(e->position);
  cr_assert_eq(memcmp(e->id.bytes, id.bytes, 16), 0);
  cr_assert_eq(e->version, (int64_t)((e->position - 1) / 3));
}

/* Reads `stream` (or $all when NULL, with optional category/type filters)
 * to the end; every event returned must be genuine. Returns the code that
 * ended the read and the count in *n. */
static int read_through(const char *stream, const char *category,
                        const char *type, uint64_t *n) {
  evs_iter *it = NULL;
  int rc;
  if (stream) {
    evs_read_options o = EVS_READ_OPTIONS_INIT;
    rc = evs_read_stream(&it, tu_store, stream, &o);
  } else {
    evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
    o.category = category;
    o.event_type = type;
    rc = evs_read_all(&it, tu_store, &o);
  }
  *n = 0;
  if (rc)
    return rc;
  const evs_event *e;
  while ((rc = evs_iter_next(it, &e)) == 1) {
    assert_genuine(e);
    if (category)
      cr_assert_eq(strncmp(e->stream.data, category, strlen(category)), 0,
                   "a category read returned '%.*s'", (int)e->stream.len,
                   (const char *)e->stream.data);
    if (type)
      cr_assert(e->type.len == strlen(type) &&
                    memcmp(e->type.data, type, e->type.len) == 0,
                "a type read returned type '%.*s'", (int)e->type.len,
                (const char *)e->type.data);
    (*n)++;
  }
  evs_iter_free(it);
  return rc;
}

/* ---- records ------------------------------------------------------------- */

Test(faults_corrupt, uncompressed_record_flipped_in_the_file) {
  build_store();
  char m[32];
  marker(m, 20);
  /* A byte of the data, 30 bytes into it. */
  cr_assert_geq(flip_pattern(m, strlen(m), 30, 0x20, NULL, 0), 1);
  reopen();
  evs_event *e = NULL;
  cr_assert_eq(evs_read_event(tu_store, 20, &e), EVS_ECORRUPT);
  cr_assert_eq(evs_read_event(tu_store, 21, &e), 0);
  evs_event_free(e);
  uint64_t n;
  cr_assert_eq(read_through(NULL, NULL, NULL, &n), EVS_ECORRUPT);
  cr_assert_eq(n, 19, "$all stops at the damaged record");
  cr_assert_eq(read_through(stream_of_pos[20 % 3], NULL, NULL, &n),
               EVS_ECORRUPT);
  cr_assert_eq(read_through(stream_of_pos[21 % 3], NULL, NULL, &n), 0,
               "another stream reads fine");
  cr_assert_gt(verify_errors(), 0);
}

Test(faults_corrupt, record_header_flipped_in_the_file) {
  /* The id sits in the record header, just before the flags and data:
   * flip its last byte inside the record (bin8 header c4 10 before it). */
  build_store();
  evs_uuid id = tu_uuid(33);
  uint8_t pat[18] = {0xc4, 0x10};
  memcpy(pat + 2, id.bytes, 16);
  cr_assert_geq(flip_pattern(pat, sizeof pat, 17, 0x01, NULL, 0), 1);
  reopen();
  evs_event *e = NULL;
  cr_assert_eq(evs_read_event(tu_store, 33, &e), EVS_ECORRUPT);
  uint64_t n;
  cr_assert_eq(read_through(NULL, NULL, NULL, &n), EVS_ECORRUPT);
  cr_assert_eq(n, 32);
  cr_assert_gt(verify_errors(), 0);
}

Test(faults_corrupt, overflow_record_flipped_in_the_file) {
  /* A 20 KiB record lives on LMDB overflow pages. */
  evs_store_options o = raw_opts();
  tu_store = tu_open(tu_dir, &o);
  static uint8_t big[20 * 1024];
  tu_fill_random(big, sizeof big, 4242);
  tu_append_ok(tu_store, "before", EVS_EXPECT_ANY, 1, NULL);
  evs_event_data ev;
  tu_event(&ev, "Big", big, sizeof big);
  cr_assert_eq(evs_append(tu_store, "big", EVS_EXPECT_ANY, &ev, 1, NULL), 0);
  tu_append_ok(tu_store, "after", EVS_EXPECT_ANY, 1, NULL);
  evs_store_close(tu_store);
  tu_store = NULL;
  cr_assert_geq(flip_pattern(big, 64, 12345, 0x40, NULL, 0), 1);
  tu_store = tu_open(tu_dir, &o);
  evs_event *e = NULL;
  cr_assert_eq(evs_read_event(tu_store, 2, &e), EVS_ECORRUPT);
  cr_assert_eq(evs_read_event(tu_store, 3, &e), 0);
  evs_event_free(e);
  tu_evlist l;
  cr_assert_eq(tu_read_stream(tu_store, "big", NULL, &l), EVS_ECORRUPT);
  tu_evlist_free(&l);
  evs_verify_report vr;
  cr_assert_eq(evs_store_verify(tu_store, &vr, NULL, NULL), 0);
  cr_assert_gt(vr.errors, 0);
}

/* ---- indexes ------------------------------------------------------------- */

Test(faults_corrupt, stream_index_entry_flipped_in_the_file) {
  /* alpha-1 v5 is at position 16: its index entry (v5, p16), 16 bytes,
   * flipped to point at position 17 (beta-1 v5). */
  build_store();
  uint8_t pat[16];
  tu_be64(pat, 5);
  tu_be64(pat + 8, 16);
  cr_assert_geq(flip_pattern(pat, 16, 15, 0x01, NULL, 0), 1);
  reopen();
  cr_assert_gt(verify_errors(), 0);
  uint64_t n;
  int rc = read_through("alpha-1", NULL, NULL, &n);
  cr_assert_eq(rc, EVS_ECORRUPT, "the stream read gave %s after %llu events",
               evs_err_name(rc), (unsigned long long)n);
  cr_assert_eq(n, 5);
  cr_assert_eq(read_through("beta-1", NULL, NULL, &n), 0);
  cr_assert_eq(n, ROUNDS);
  cr_assert_eq(read_through(NULL, NULL, NULL, &n), 0, "$all needs no index");
  cr_assert_eq(n, EVENTS);
}

Test(faults_corrupt, id_index_key_flipped_in_the_file) {
  /* The id of position 10 as a key of the id index (not the copy inside
   * the record, which follows the bytes c4 10). */
  build_store();
  evs_uuid id = tu_uuid(10);
  static const uint8_t bin16[2] = {0xc4, 0x10};
  cr_assert_geq(flip_pattern(id.bytes, 16, 15, 0x80, bin16, 2), 1);
  reopen();
  cr_assert_gt(verify_errors(), 0);
  uint64_t pos = 0;
  int rc = evs_find_event_id(tu_store, &id, &pos);
  cr_assert_neq(rc, 0, "the damaged id still found position %llu",
                (unsigned long long)pos);
  /* Reads by position and stream do not depend on the id index. */
  uint64_t n;
  cr_assert_eq(read_through(NULL, NULL, NULL, &n), 0);
  cr_assert_eq(n, EVENTS);
}

Test(faults_corrupt, category_and_type_index_entries_flipped_in_the_file) {
  /* Category "alpha" lists positions ..., 61, 63, ...: flip 63 to 62 (a
   * beta-1 event). Type "Placed" lists ..., 61, 65, ...: flip 65 to 64
   * (a "Paid" event). No other index holds these 16-byte sequences (the
   * stream index pairs versions, all below 40, with positions). */
  build_store();
  uint8_t pat[16];
  tu_be64(pat, 61);
  tu_be64(pat + 8, 63);
  cr_assert_geq(flip_pattern(pat, 16, 15, 0x01, NULL, 0), 1);
  tu_be64(pat + 8, 65);
  cr_assert_geq(flip_pattern(pat, 16, 15, 0x01, NULL, 0), 1);
  reopen();
  cr_assert_gt(verify_errors(), 0);
  /* Filtered reads never return an event of another category or type
   * (read_through checks); they may miss the damaged entry. */
  uint64_t n;
  int rc = read_through(NULL, "alpha", NULL, &n);
  cr_assert(rc == 0 || rc == EVS_ECORRUPT, "%s", evs_err_name(rc));
  rc = read_through(NULL, NULL, "Placed", &n);
  cr_assert(rc == 0 || rc == EVS_ECORRUPT, "%s", evs_err_name(rc));
}

/* ---- stream records ------------------------------------------------------ */

/* What reads show of the three streams: a hash over info and contents. */
static uint64_t visible_state(int *err) {
  uint64_t h = 1469598103934665603ull;
  *err = 0;
  for (int i = 0; i < 3; i++) {
    evs_stream_info info;
    int rc = evs_stream_info_get(tu_store, stream_of_pos[i], &info);
    if (rc) {
      *err = 1;
      continue;
    }
    int64_t fields[] = {info.exists,        info.version,
                        info.first_version, (int64_t)info.last_position,
                        info.start_version, info.last_timestamp_ns,
                        (int64_t)info.flags, (int64_t)info.max_count,
                        (int64_t)info.max_age_sec, info.truncate_before};
    h ^= tu_hash(fields, sizeof fields);
    h *= 1099511628211ull;
    evs_stream_info_clear(&info);
    uint64_t n = 0;
    rc = read_through(stream_of_pos[i], NULL, NULL, &n);
    if (rc)
      *err = 1;
    h ^= n * 0x9e3779b97f4a7c15ull;
  }
  return h;
}

Test(faults_corrupt, every_byte_of_a_stream_record_is_detected) {
  /* Flip each byte of alpha-1's stream record in turn (through LMDB, then
   * restored). The store must never crash and never return an event that
   * is not the one written (read_through checks every event). Stream
   * records carry a checksum (format 2): every flip must be reported, by
   * verify or by the read, none may pass silently or harmlessly. */
  build_store();
  reopen();
  int err;
  uint64_t base = visible_state(&err);
  cr_assert_eq(err, 0);
  evs_store_close(tu_store);
  tu_store = NULL;
  const char *key = "alpha-1";
  size_t len = tu_lmdb_value_len(tu_dir, "streams", key, strlen(key));
  cr_assert_neq(len, SIZE_MAX);
  unsigned detected = 0, harmless = 0, silent = 0;
  for (size_t i = 0; i < len; i++) {
    tu_lmdb_flip_byte(tu_dir, "streams", key, strlen(key), i);
    evs_store_options o = raw_opts();
    int rc = evs_store_open(&tu_store, tu_dir, &o);
    if (rc) {
      cr_assert_eq(rc, EVS_ECORRUPT, "byte %zu: open gave %s", i,
                   evs_err_name(rc));
      tu_store = NULL;
      detected++;
    } else {
      evs_verify_report vr;
      cr_assert_eq(evs_store_verify(tu_store, &vr, NULL, NULL), 0);
      uint64_t h = visible_state(&err);
      if (vr.errors || err)
        detected++;
      else if (h == base)
        harmless++;
      else {
        silent++;
        cr_log_info("stream record byte %zu of %zu: a silent change", i, len);
      }
      evs_store_close(tu_store);
      tu_store = NULL;
    }
    tu_lmdb_flip_byte(tu_dir, "streams", key, strlen(key), i); /* restore */
  }
  cr_log_info("stream record of %zu bytes: %u flips detected, %u harmless, "
              "%u silent",
              len, detected, harmless, silent);
  cr_assert_eq(detected, len, "%u of %zu flips went unnoticed",
               harmless + silent, len);
  reopen();
  cr_assert_eq(verify_errors(), 0, "the restored record is still flagged");
}

/* ---- regressions: store bugs these tests found (fixed) ------------------- */

/*
 * Fixed store bug (this test failed before the fix). A damaged separator key in a branch page of
 * the events B-tree leaves cursor walks intact but breaks lookups by
 * position: evs_store_verify (which walks the log with a cursor) reports
 * nothing, evs_read_event says EVS_ENOTFOUND for events that exist, and
 * stream reads silently skip them (src/store/read.c, evs__next_stream,
 * treats a record it cannot find as "compacted meanwhile"), returning a
 * stream shorter than its version without an error.
 */
Test(faults_corrupt, events_branch_key_flip_is_reported) {
  build_store();
  size_t ps;
  uint64_t root = db_root("events", &ps);
  char path[4096];
  data_path(path, sizeof path);
  int fd = open(path, O_RDWR);
  cr_assert_geq(fd, 0);
  uint8_t *page = malloc(ps);
  cr_assert_eq(pread(fd, page, ps, (off_t)(root * ps)), (ssize_t)ps);
  uint16_t flags, lower, ptr1;
  memcpy(&flags, page + 10, 2);
  memcpy(&lower, page + 12, 2);
  cr_assert(flags & 0x01, "the events root is not a branch page (%#x)", flags);
  cr_assert_geq((lower - 16) / 2, 2, "fewer than two children");
  /* Node 1's key (an 8-byte big-endian position) follows its 8-byte node
   * header; make it enormous. */
  memcpy(&ptr1, page + 16 + 2, 2);
  page[ptr1 + 8 + 3] ^= 0xff;
  cr_assert_eq(pwrite(fd, page, ps, (off_t)(root * ps)), (ssize_t)ps);
  close(fd);
  free(page);
  reopen();
  uint64_t errors = verify_errors();
  int stream_rc[3];
  uint64_t total = 0;
  for (int i = 0; i < 3; i++) {
    uint64_t n;
    stream_rc[i] = read_through(stream_of_pos[i], NULL, NULL, &n);
    total += n;
  }
  cr_log_info("verify: %llu errors; streams read %llu of %d events",
              (unsigned long long)errors, (unsigned long long)total, EVENTS);
  cr_assert_gt(errors, 0, "verify missed a damaged events B-tree");
  for (int i = 0; i < 3; i++)
    cr_assert(stream_rc[i] != 0 || total == EVENTS,
              "stream reads silently returned %llu of %d events",
              (unsigned long long)total, EVENTS);
}

/*
 * Fixed store bug (this test failed before the fix): evs_find_event_id returned whatever position
 * the id index holds, without checking that the record there has that id,
 * so a damaged id index hands out another event's position.
 */
Test(faults_corrupt, find_event_id_checks_the_record) {
  build_store();
  evs_uuid id = tu_uuid(10);
  uint8_t val[8];
  tu_be64(val, 11);
  tu_lmdb_put(tu_dir, "ids", id.bytes, 16, val, 8);
  reopen();
  cr_assert_gt(verify_errors(), 0);
  uint64_t pos = 0;
  int rc = evs_find_event_id(tu_store, &id, &pos);
  cr_assert(rc == EVS_ECORRUPT || (rc == 0 && pos == 10),
            "evs_find_event_id: %s, position %llu (event 10's id)",
            evs_err_name(rc), (unsigned long long)pos);
}
