/*
 * evs_pagesurvey — what a flipped byte in an LMDB page does to a store.
 *
 * A survey, not a test: it measures the limits listed in
 * docs/reliability.md ("Known problems") and always exits 0 when it could
 * run. It builds a small store (three interleaved streams, uncompressed
 * events, two categories, two types), then for every database flips, one
 * at a time, every byte of the used part of its root page (page header,
 * node pointers and nodes; the free gap in the middle is skipped) and, in
 * a forked child, reopens the store, runs evs_store_verify, reads $all,
 * every stream, the category and type indexes and every id, and appends
 * one event. Each flip is classified:
 *
 *   detected  an error from open, verify, a read or the append
 *   harmless  no error, and everything read is what was written
 *   silent    no error, but something read differs from what was written
 *   crashed   the child died on a signal (LMDB trusts its page headers)
 *
 * Usage: evs_pagesurvey [DIR] [EVENTS]   (default: a temp dir, 120 events)
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "evstore/evstore.h"

static const char *const ps_streams[3] = {"alpha-1", "beta-1", "alpha-2"};
static const char *const ps_dbs[] = {
    "events",         "streams",        "stream_ids", "stream_index",
    "ids",            "types",          "type_names", "categories",
    "category_names", "category_index", "type_index", "meta"};
#define PS_NDBS (sizeof ps_dbs / sizeof ps_dbs[0])

static uint64_t ps_mix(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 1099511628211ull;
  }
  return h;
}

static evs_uuid ps_id(uint64_t n) {
  evs_uuid u;
  memset(&u, 0x5a, sizeof u);
  memcpy(u.bytes + 8, &n, 8);
  return u;
}

static int ps_build(const char *dir, unsigned events) {
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.compress_threshold = UINT32_MAX;
  evs_store *s;
  int rc = evs_store_open(&s, dir, &o);
  for (unsigned p = 1; rc == 0 && p <= events; p++) {
    char data[96];
    int n = snprintf(data, sizeof data, "{\"event\":%u,\"pad\":\"%040u\"}", p,
                     p);
    evs_event_data ev;
    memset(&ev, 0, sizeof ev);
    ev.id = ps_id(p);
    ev.type = p % 4 == 1 ? "Placed" : "Paid";
    ev.data = data;
    ev.data_len = (size_t)n;
    rc = evs_append(s, ps_streams[(p - 1) % 3], EVS_EXPECT_ANY, &ev, 1, NULL);
  }
  if (rc)
    fprintf(stderr, "evs_pagesurvey: building the store: %s: %s\n",
            evs_err_name(rc), evs_last_error());
  evs_store_close(s);
  return rc;
}

/* Reads everything a user can read; returns 1 on any error, else 0 with
 * a digest of what was read in *out. */
static int ps_probe(const char *dir, uint64_t *out) {
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.compress_threshold = UINT32_MAX;
  evs_store *s;
  if (evs_store_open(&s, dir, &o))
    return 1;
  int err = 0;
  evs_verify_report vr;
  if (evs_store_verify(s, &vr, NULL, NULL) || vr.errors)
    err = 1;
  uint64_t h = 1469598103934665603ull;
  const evs_event *e;
  evs_iter *it;
  int rc;
  for (int pass = 0; pass < 6; pass++) {
    evs_read_all_options ao = EVS_READ_ALL_OPTIONS_INIT;
    evs_read_options so = EVS_READ_OPTIONS_INIT;
    if (pass == 1)
      ao.category = "alpha";
    if (pass == 2)
      ao.event_type = "Placed";
    rc = pass < 3 ? evs_read_all(&it, s, &ao)
                  : evs_read_stream(&it, s, ps_streams[pass - 3], &so);
    if (rc) {
      err = 1;
      continue;
    }
    while ((rc = evs_iter_next(it, &e)) == 1) {
      h = ps_mix(h, &e->position, 8);
      h = ps_mix(h, &e->version, 8);
      h = ps_mix(h, e->id.bytes, 16);
      h = ps_mix(h, e->stream.data, e->stream.len);
      h = ps_mix(h, e->type.data, e->type.len);
      h = ps_mix(h, e->data.data, e->data.len);
      if (pass == 0) {
        uint64_t pos = 0;
        if (evs_find_event_id(s, &e->id, &pos))
          err = 1;
        h = ps_mix(h, &pos, 8);
      }
    }
    if (rc < 0)
      err = 1;
    evs_iter_free(it);
  }
  for (int i = 0; i < 3; i++) {
    evs_stream_info info;
    if (evs_stream_info_get(s, ps_streams[i], &info)) {
      err = 1;
      continue;
    }
    h = ps_mix(h, &info.version, 8);
    h = ps_mix(h, &info.last_position, 8);
    h = ps_mix(h, &info.flags, sizeof info.flags);
    evs_stream_info_clear(&info);
  }
  evs_event_data ev;
  memset(&ev, 0, sizeof ev);
  ev.id = ps_id(999999);
  ev.type = "Probe";
  ev.data = "probe";
  ev.data_len = 5;
  evs_append_result r;
  if (evs_append(s, "probe", EVS_EXPECT_NO_STREAM, &ev, 1, &r))
    err = 1;
  else
    h = ps_mix(h, &r.first_position, 8);
  evs_store_close(s);
  *out = h;
  return err;
}

/* Root page of `db` and the page size. */
static int ps_root(const char *dir, const char *db, uint64_t *root,
                   size_t *psize) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi main_dbi;
  int rc = mdb_env_create(&env);
  if (rc)
    return rc;
  mdb_env_set_maxdbs(env, 32);
  rc = mdb_env_open(env, dir, MDB_RDONLY, 0644);
  if (rc == 0)
    rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
  if (rc == 0) {
    rc = mdb_dbi_open(txn, NULL, 0, &main_dbi);
    MDB_val k = {strlen(db), (void *)db}, v;
    if (rc == 0)
      rc = mdb_get(txn, main_dbi, &k, &v);
    if (rc == 0 && v.mv_size == 48)
      memcpy(root, (const uint8_t *)v.mv_data + 40, 8); /* md_root */
    else if (rc == 0)
      rc = MDB_CORRUPTED;
    MDB_stat st;
    mdb_env_stat(env, &st);
    *psize = st.ms_psize;
    mdb_txn_abort(txn);
  }
  mdb_env_close(env);
  return rc;
}

static int ps_write_file(const char *path, const uint8_t *buf, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0)
    return -1;
  size_t done = 0;
  while (done < len) {
    ssize_t w = write(fd, buf + done, len - done);
    if (w <= 0) {
      close(fd);
      return -1;
    }
    done += (size_t)w;
  }
  close(fd);
  return 0;
}

static uint8_t *ps_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *buf = n > 0 ? malloc((size_t)n) : NULL;
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  *len = (size_t)n;
  return buf;
}

static int ps_rm_one(const char *path, const struct stat *sb, int type,
                     struct FTW *ftw) {
  (void)sb;
  (void)ftw;
  return type == FTW_DP ? rmdir(path) : unlink(path);
}

int main(int argc, char **argv) {
  char work[1024];
  if (argc > 1) {
    snprintf(work, sizeof work, "%s", argv[1]);
    if (mkdir(work, 0755) && errno != EEXIST) {
      perror(work);
      return 2;
    }
  } else {
    const char *tmp = getenv("TMPDIR");
    snprintf(work, sizeof work, "%s/evs-pagesurvey-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(work) == NULL) {
      perror("mkdtemp");
      return 2;
    }
  }
  unsigned events = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 120;
  char base[1100], trial[1100], path[1200];
  snprintf(base, sizeof base, "%s/base", work);
  snprintf(trial, sizeof trial, "%s/trial", work);
  mkdir(trial, 0755);
  if (ps_build(base, events))
    return 2;
  snprintf(path, sizeof path, "%s/data.mdb", base);
  size_t len;
  uint8_t *orig = ps_read_file(path, &len);
  if (orig == NULL) {
    perror(path);
    return 2;
  }
  snprintf(path, sizeof path, "%s/data.mdb", trial);
  uint64_t want;
  if (ps_write_file(path, orig, len) || ps_probe(trial, &want)) {
    fprintf(stderr, "evs_pagesurvey: the undamaged store does not check\n");
    return 2;
  }
  printf("evs_pagesurvey: %u events, data.mdb of %zu bytes\n", events, len);
  printf("%-15s %5s %6s %8s %8s %6s %7s\n", "database", "page", "bytes",
         "detected", "harmless", "silent", "crashed");
  unsigned tot[4] = {0, 0, 0, 0};
  for (size_t d = 0; d < PS_NDBS; d++) {
    uint64_t root = 0;
    size_t ps = 0;
    if (ps_root(base, ps_dbs[d], &root, &ps) || (root + 1) * ps > len) {
      printf("%-15s (no root page)\n", ps_dbs[d]);
      continue;
    }
    uint8_t *page = orig + root * ps;
    uint16_t lower, upper;
    memcpy(&lower, page + 12, 2);
    memcpy(&upper, page + 14, 2);
    uint16_t pflags;
    memcpy(&pflags, page + 10, 2);
    if (pflags & 0x04) /* an overflow page: all of it is data */
      lower = upper = (uint16_t)ps;
    if (lower > ps || upper > ps || lower > upper)
      lower = upper = (uint16_t)ps;
    unsigned n[4] = {0, 0, 0, 0}, tried = 0;
    for (size_t off = 0; off < ps; off++) {
      if (off >= lower && off < upper)
        continue; /* the free gap between pointers and nodes */
      tried++;
      orig[root * ps + off] ^= 0xff;
      int wrc = ps_write_file(path, orig, len);
      orig[root * ps + off] ^= 0xff;
      if (wrc) {
        perror(path);
        return 2;
      }
      fflush(stdout);
      pid_t pid = fork();
      if (pid == 0) {
        /* LMDB may print an assertion message before aborting. */
        int nul = open("/dev/null", O_WRONLY);
        if (nul >= 0)
          dup2(nul, 2);
        uint64_t got = 0;
        int err = ps_probe(trial, &got);
        _exit(err ? 1 : got == want ? 0 : 3);
      }
      int status = 0;
      waitpid(pid, &status, 0);
      if (WIFSIGNALED(status))
        n[3]++;
      else if (WEXITSTATUS(status) == 1)
        n[0]++;
      else if (WEXITSTATUS(status) == 0)
        n[1]++;
      else
        n[2]++;
    }
    printf("%-15s %5llu %6u %8u %8u %6u %7u\n", ps_dbs[d],
           (unsigned long long)root, tried, n[0], n[1], n[2], n[3]);
    for (int i = 0; i < 4; i++)
      tot[i] += n[i];
  }
  printf("%-15s %5s %6u %8u %8u %6u %7u\n", "total", "",
         tot[0] + tot[1] + tot[2] + tot[3], tot[0], tot[1], tot[2], tot[3]);
  free(orig);
  if (argc <= 1)
    nftw(work, ps_rm_one, 16, FTW_DEPTH | FTW_PHYS);
  return 0;
}
