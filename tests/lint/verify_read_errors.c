/*
 * Regressions for bugs that the static analyzers (scripts/lint.sh) pointed
 * at in src/store/ and src/projections/.
 *
 * evs_store_verify walks the log and the streams table with LMDB cursors.
 * It used to end each walk on any cursor error as if it had reached the
 * end: a damaged B-tree page made verify report a clean store after
 * checking only part of it (clang-analyzer-deadcode.DeadStores on the
 * streams walk's return code led there). A damaged page of the log was
 * still noticed, by accident (the index sizes then disagree with the short
 * count); a damaged page of the streams table holding streams without
 * events was not noticed at all. These tests damage a B-tree so that the
 * walk meets a page that does not exist, and expect verify to say so.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "evstore/evstore.h"
#include "testutil.h"

TestSuite(lint_verify, .init = tu_setup_dir, .fini = tu_teardown,
          .timeout = 120);

#define EVENTS 400
#define EMPTY_STREAMS 600

/* Uncompressed (records of a known size), and quick to build. */
static evs_store_options raw_opts(void) {
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.compress_threshold = UINT32_MAX;
  o.durability = EVS_NOSYNC;
  return o;
}

static void build_store(void) {
  evs_store_options o = raw_opts();
  tu_store = tu_open(tu_dir, &o);
  for (int i = 0; i < EVENTS; i++) {
    char data[100];
    memset(data, 'x', sizeof data);
    evs_event_data ev;
    tu_event(&ev, "Filled", data, sizeof data);
    int rc = evs_append(tu_store, i % 2 ? "odd-1" : "even-1", EVS_EXPECT_ANY,
                        &ev, 1, NULL);
    cr_assert_eq(rc, 0, "%s", evs_last_error());
  }
  /* Streams with metadata and no events: only the streams walk sees them. */
  for (int i = 0; i < EMPTY_STREAMS; i++) {
    char name[32];
    snprintf(name, sizeof name, "empty-%04d", i);
    evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
    md.max_count = 10;
    int rc = evs_stream_set_metadata(tu_store, name, &md);
    cr_assert_eq(rc, 0, "%s", evs_last_error());
  }
  evs_store_close(tu_store);
  tu_store = NULL;
}

/* The root page of the named database `db`, read through LMDB. */
static uint64_t db_root(const char *db, size_t *page_size) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi main_dbi;
  cr_assert_eq(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 32);
  cr_assert_eq(mdb_env_open(env, tu_dir, MDB_RDONLY, 0644), 0);
  cr_assert_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
  cr_assert_eq(mdb_dbi_open(txn, NULL, 0, &main_dbi), 0);
  MDB_val k = { strlen(db), (void *)db }, v;
  cr_assert_eq(mdb_get(txn, main_dbi, &k, &v), 0, "no database %s", db);
  cr_assert_eq(v.mv_size, 48, "unexpected MDB_db size %zu", v.mv_size);
  uint64_t root; /* MDB_db.md_root, the last of its fields */
  memcpy(&root, (const uint8_t *)v.mv_data + 40, 8);
  MDB_stat st;
  mdb_env_stat(env, &st);
  *page_size = st.ms_psize;
  mdb_txn_abort(txn);
  mdb_env_close(env);
  return root;
}

/*
 * Points child `child` of the root of `db` (a branch page) at a page number
 * past the end of the file, as a stray write could. LMDB then answers the
 * cursor step onto it with MDB_PAGE_NOTFOUND. The first and last children
 * stay intact, so that opening the store (which reads the head of the log)
 * works.
 */
static void break_child(const char *db, unsigned child) {
  size_t ps;
  uint64_t root = db_root(db, &ps);
  char path[4096];
  snprintf(path, sizeof path, "%s/data.mdb", tu_dir);
  int fd = open(path, O_RDWR);
  cr_assert_geq(fd, 0);
  uint8_t *page = malloc(ps);
  cr_assert_not_null(page);
  cr_assert_eq(pread(fd, page, ps, (off_t)(root * ps)), (ssize_t)ps);
  /* Page header: pgno (8), pad (2), flags (2), lower (2), upper (2), then
   * the 2-byte offsets of the nodes. */
  uint16_t flags, lower, ptr;
  memcpy(&flags, page + 10, 2);
  memcpy(&lower, page + 12, 2);
  cr_assert(flags & 0x01, "the %s root is not a branch page (%#x)", db,
            flags);
  cr_assert_gt((lower - 16u) / 2u, child + 1u, "too few children");
  memcpy(&ptr, page + 16 + 2 * child, 2);
  /* A branch node starts with its child's page number in 16-bit pieces:
   * lo, hi, then the flags field holds the high bits. */
  uint16_t hi = 0x7fff;
  memcpy(page + ptr + 2, &hi, 2);
  cr_assert_eq(pwrite(fd, page, ps, (off_t)(root * ps)), (ssize_t)ps);
  close(fd);
  free(page);
}

/* Collects the problems verify reports, one per line. */
typedef struct problems {
  int n;
  char text[8192];
} problems;

static int collect(const char *problem, uint64_t done, uint64_t total,
                   void *payload) {
  (void)done;
  (void)total;
  problems *p = payload;
  if (problem) {
    cr_log_info("verify: %s", problem);
    p->n++;
    size_t used = strlen(p->text);
    snprintf(p->text + used, sizeof p->text - used, "%s\n", problem);
  }
  return 0;
}

static evs_verify_report verify(problems *p) {
  evs_store_options o = raw_opts();
  tu_store = tu_open(tu_dir, &o);
  evs_verify_report vr;
  memset(p, 0, sizeof *p);
  int rc = evs_store_verify(tu_store, &vr, collect, p);
  cr_assert_eq(rc, 0, "verify did not run: %s", evs_err_name(rc));
  cr_assert_eq((uint64_t)p->n, vr.errors);
  return vr;
}

Test(lint_verify, a_clean_store_has_no_problems) {
  build_store();
  problems p;
  evs_verify_report vr = verify(&p);
  cr_assert_eq(vr.events_checked, EVENTS);
  cr_assert_eq(vr.streams_checked, 2 + EMPTY_STREAMS);
  cr_assert_eq(vr.errors, 0, "%s", p.text);
}

Test(lint_verify, a_log_page_that_cannot_be_read_is_reported) {
  build_store();
  break_child("events", 1);
  problems p;
  evs_verify_report vr = verify(&p);
  cr_assert_lt(vr.events_checked, EVENTS, "the damaged page was read?");
  cr_assert_not_null(strstr(p.text, "reading the log failed"),
                     "verify checked %llu of %d events and said:\n%s",
                     (unsigned long long)vr.events_checked, EVENTS, p.text);
}

Test(lint_verify, a_streams_page_that_cannot_be_read_is_reported) {
  build_store();
  break_child("streams", 1);
  problems p;
  evs_verify_report vr = verify(&p);
  cr_assert_eq(vr.events_checked, EVENTS);
  cr_assert_lt(vr.streams_checked, 2 + EMPTY_STREAMS,
               "the damaged page was read?");
  cr_assert_gt(vr.errors, 0,
               "verify checked %llu of %d streams and called the store clean",
               (unsigned long long)vr.streams_checked, 2 + EMPTY_STREAMS);
  cr_assert_not_null(strstr(p.text, "reading the streams table failed"),
                     "%s", p.text);
}
