/*
 * Aggregate snapshots: snapshot + tail equals a full replay, only the tail
 * is read, and snapshots that do not fit (other schema, an earlier life of
 * the stream, ahead of it, deleted) are ignored.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "projutil.h"
#include "testutil.h"

static evs_store *st;
static evs_views *vw;

static void setup(void) {
  tu_setup_dir();
  st = pu_open_store(tu_dir);
  vw = pu_open_views(st, NULL);
}

static void teardown(void) {
  evs_views_close(vw);
  evs_store_close(st);
  tu_rmrf(tu_dir);
  free(tu_dir);
}

TestSuite(proj_snap, .init = setup, .fini = teardown, .timeout = 60);

/* The aggregate: a balance and an event count, encoded as 16 bytes. */
typedef struct acct {
  int64_t balance;
  int64_t events;
  int restored;
} acct;

static int restore(const void *data, size_t len, int64_t version, void *p) {
  (void)version;
  acct *a = p;
  if (len != 16)
    return EVS_ECORRUPT;
  memcpy(&a->balance, data, 8);
  memcpy(&a->events, (const char *)data + 8, 8);
  a->restored = 1;
  return 0;
}

static int apply(const evs_event *ev, void *p) {
  acct *a = p;
  char buf[64];
  snprintf(buf, sizeof buf, "%.*s", (int)ev->data.len,
           (const char *)ev->data.data);
  a->balance += strtoll(buf, NULL, 10);
  a->events++;
  return 0;
}

static void deposit(const char *stream, int n, int base) {
  for (int i = 0; i < n; i++) {
    char d[32];
    snprintf(d, sizeof d, "%d", base + i * 3 - 7);
    pu_append1(st, stream, "Deposited", d);
  }
}

static acct load(evs_views *views, const char *schema,
                 evs_aggregate_info *info) {
  acct a = { 0, 0, 0 };
  int rc =
      evs_aggregate_load(info, st, views, "acct-1", schema, restore, apply, &a);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  return a;
}

static void save(const char *stream, int64_t version, const acct *a) {
  char buf[16];
  memcpy(buf, &a->balance, 8);
  memcpy(buf + 8, &a->events, 8);
  int rc = evs_snapshot_save(vw, stream, version, "acct/v1", buf, 16);
  cr_assert_eq(rc, 0, "%s", evs_last_error());
}

Test(proj_snap, snapshot_plus_tail_equals_full_replay) {
  deposit("acct-1", 100, 10);
  evs_aggregate_info info;
  acct full = load(NULL, NULL, &info);
  cr_assert_eq(info.version, 99);
  cr_assert_eq(info.events_read, 100);
  cr_assert_eq(info.snapshot_version, EVS_VERSION_NONE);
  save("acct-1", info.version, &full);

  deposit("acct-1", 20, 500);
  acct snap = load(vw, "acct/v1", &info);
  cr_assert(snap.restored);
  cr_assert_eq(info.snapshot_version, 99);
  cr_assert_eq(info.events_read, 20, "only the tail is read");
  cr_assert_eq(info.version, 119);
  acct replay = load(NULL, NULL, &info);
  cr_assert_eq(info.events_read, 120);
  cr_assert_eq(snap.balance, replay.balance);
  cr_assert_eq(snap.events, replay.events);

  /* Another schema: the snapshot is ignored. */
  acct other = load(vw, "acct/v2", &info);
  cr_assert_not(other.restored);
  cr_assert_eq(info.events_read, 120);
  cr_assert_eq(other.balance, replay.balance);

  /* '$' stream names are reserved: no snapshot of them. */
  cr_assert_eq(evs_snapshot_save(vw, "$sys", 1, "acct/v1", "x", 1),
               EVS_EBADNAME);
  evs_snapshot *none = NULL;
  cr_assert_eq(evs_snapshot_load(&none, vw, "$all"), EVS_EBADNAME);
  cr_assert_null(none);

  /* An older save does not replace a newer snapshot. */
  cr_assert_eq(evs_snapshot_save(vw, "acct-1", 10, "acct/v1", "x", 1), 1);
  evs_snapshot *sn = NULL;
  cr_assert_eq(evs_snapshot_load(&sn, vw, "acct-1"), 0);
  cr_assert_eq(sn->version, 99);
  cr_assert_str_eq(sn->schema, "acct/v1");
  cr_assert_str_eq(sn->stream, "acct-1");
  cr_assert_eq(sn->len, 16);
  cr_assert_gt(sn->saved_ns, 0);
  evs_snapshot_free(sn);

  /* Deleted: the next load replays everything, with the same result. */
  cr_assert_eq(evs_snapshot_delete(vw, "acct-1"), 0);
  cr_assert_eq(evs_snapshot_delete(vw, "acct-1"), 0);
  cr_assert_eq(evs_snapshot_load(&sn, vw, "acct-1"), EVS_ENOTFOUND);
  acct again = load(vw, "acct/v1", &info);
  cr_assert_not(again.restored);
  cr_assert_eq(info.events_read, 120);
  cr_assert_eq(again.balance, replay.balance);
}

Test(proj_snap, unusable_snapshots_are_ignored) {
  deposit("acct-1", 5, 1);
  acct bogus = { 999999, 1, 0 };
  /* Ahead of the stream. */
  save("acct-1", 50, &bogus);
  evs_aggregate_info info;
  acct a = load(vw, "acct/v1", &info);
  cr_assert_not(a.restored);
  cr_assert_eq(info.events_read, 5);
  cr_assert_eq(evs_snapshot_delete(vw, "acct-1"), 0);

  /* From the stream's life before a soft delete. */
  save("acct-1", 4, &bogus);
  cr_assert_eq(evs_stream_delete(st, "acct-1", EVS_EXPECT_ANY, 0), 0);
  deposit("acct-1", 3, 100);
  a = load(vw, "acct/v1", &info);
  cr_assert_not(a.restored);
  cr_assert_eq(info.events_read, 3);
  cr_assert_eq(info.version, 7);
  cr_assert_eq(a.balance, 93 + 96 + 99); /* only the new life */
}

Test(proj_snap, new_stream_and_bad_arguments) {
  evs_aggregate_info info;
  acct a = { 0, 0, 0 };
  cr_assert_eq(evs_aggregate_load(&info, st, vw, "acct-9", "acct/v1", restore,
                                  apply, &a),
               0);
  cr_assert_eq(info.version, EVS_VERSION_NONE);
  cr_assert_eq(info.events_read, 0);
  cr_assert_eq(evs_snapshot_save(vw, "acct-1", 0, "", "x", 1), EVS_EINVAL);
  cr_assert_eq(evs_snapshot_save(vw, "", 0, "t", "x", 1), EVS_EBADNAME);
  cr_assert_eq(evs_snapshot_save(vw, "acct-1", -1, "t", "x", 1), EVS_EINVAL);
  cr_assert_eq(
      evs_aggregate_load(&info, st, vw, "acct-1", NULL, restore, apply, &a),
      EVS_EINVAL);
  pu_append1(st, "gone-1", "T", "1");
  cr_assert_eq(evs_stream_delete(st, "gone-1", EVS_EXPECT_ANY, 1), 0);
  cr_assert_eq(
      evs_aggregate_load(&info, st, NULL, "gone-1", NULL, NULL, apply, &a),
      EVS_ESTREAMDELETED);
}
