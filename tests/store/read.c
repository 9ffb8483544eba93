/*
 * Reading streams and $all: directions, starting points, limits, filters,
 * checkpoints, single-event lookups.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/evstore.h"
#include "testutil.h"

/* The data set: one event per append, so row i is at position i + 1. */
static const struct row {
  const char *stream;
  const char *type;
} rows[] = {
    {"order-1", "OrderPlaced"},    /* 1  order-1 v0 */
    {"order-1", "OrderPaid"},      /* 2  order-1 v1 */
    {"order-1", "OrderShipped"},   /* 3  order-1 v2 */
    {"user-1", "UserRegistered"},  /* 4  user-1 v0 */
    {"user-1", "UserRenamed"},     /* 5  user-1 v1 */
    {"order-2", "OrderPlaced"},    /* 6  order-2 v0 */
    {"order-2", "OrderCancelled"}, /* 7  order-2 v1 */
    {"misc", "Note"},              /* 8  misc v0 (category "misc") */
    {"orderly-1", "OrderPlaced"},  /* 9  orderly-1 v0 (category "orderly") */
    {"orderly-1", "OrderPlaced"},  /* 10 orderly-1 v1 */
    {"order-1", "OrderNote"},      /* 11 order-1 v3 */
    {"order-1", "OrderShipped"},   /* 12 order-1 v4 */
    {"user-2", "UserRegistered"},  /* 13 user-2 v0 */
    {"order", "OrderPlaced"},      /* 14 order v0 (category "order") */
};
enum { NROWS = sizeof rows / sizeof rows[0] };

static void data_of(char *buf, size_t n, uint64_t pos) {
  snprintf(buf, n, "{\"p\":%llu}", (unsigned long long)pos);
}

static void read_setup(void) {
  tu_setup();
  for (size_t i = 0; i < NROWS; i++) {
    char data[32], meta[32];
    data_of(data, sizeof data, i + 1);
    snprintf(meta, sizeof meta, "m%zu", i + 1);
    evs_event_data ev;
    tu_event(&ev, rows[i].type, data, strlen(data));
    if ((i + 1) % 2) { /* odd positions carry metadata */
      ev.metadata = meta;
      ev.metadata_len = strlen(meta);
    }
    evs_append_result r;
    int rc = evs_append(tu_store, rows[i].stream, EVS_EXPECT_ANY, &ev, 1, &r);
    cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
    cr_assert_eq(r.first_position, i + 1);
  }
}

TestSuite(store_read, .init = read_setup, .fini = tu_teardown, .timeout = 60);

/* Asserts that `l` holds exactly the positions `want[0..n-1]`, and that
 * every event matches the data set. */
static void assert_positions(const tu_evlist *l, const uint64_t *want,
                             size_t n) {
  char got[256] = "", *p = got;
  for (size_t i = 0; i < l->n && p < got + sizeof got - 24; i++)
    p += sprintf(p, "%llu ", (unsigned long long)l->ev[i].position);
  cr_assert_eq(l->n, n, "got %zu events (%s), want %zu", l->n, got, n);
  for (size_t i = 0; i < n; i++) {
    const tu_ev *e = &l->ev[i];
    cr_assert_eq(e->position, want[i], "event %zu: position %llu, want %llu "
                 "(got: %s)", i, (unsigned long long)e->position,
                 (unsigned long long)want[i], got);
    const struct row *row = &rows[want[i] - 1];
    cr_assert_str_eq(e->stream, row->stream);
    cr_assert_str_eq(e->type, row->type);
    char data[32];
    data_of(data, sizeof data, want[i]);
    cr_assert_eq(e->data_len, strlen(data));
    cr_assert_eq(memcmp(e->data, data, e->data_len), 0);
    if (want[i] % 2) {
      char meta[32];
      snprintf(meta, sizeof meta, "m%llu", (unsigned long long)want[i]);
      cr_assert_eq(e->metadata_len, strlen(meta));
      cr_assert_eq(memcmp(e->metadata, meta, e->metadata_len), 0);
    } else {
      cr_assert_eq(e->metadata_len, 0, "position %llu has metadata",
                   (unsigned long long)want[i]);
    }
    /* The version is the event's rank in its stream. */
    int64_t v = 0;
    for (uint64_t k = 1; k < want[i]; k++)
      v += strcmp(rows[k - 1].stream, row->stream) == 0;
    cr_assert_eq(e->version, v, "position %llu version",
                 (unsigned long long)want[i]);
  }
}

#define WANT(...) (const uint64_t[]){__VA_ARGS__}, \
  sizeof((const uint64_t[]){__VA_ARGS__}) / sizeof(uint64_t)

static tu_evlist stream_read(const char *s, evs_direction dir, int64_t from,
                             uint64_t limit) {
  evs_read_options o = EVS_READ_OPTIONS_INIT;
  o.direction = dir;
  o.from_version = from;
  o.limit = limit;
  return tu_stream(tu_store, s, &o);
}

Test(store_read, stream_forward) {
  tu_evlist l = stream_read("order-1", EVS_FORWARD, 0, 0);
  assert_positions(&l, WANT(1, 2, 3, 11, 12));
  tu_evlist_free(&l);
  l = tu_stream(tu_store, "order", NULL);
  assert_positions(&l, WANT(14));
  tu_evlist_free(&l);
}

Test(store_read, stream_backward_from_end) {
  tu_evlist l = stream_read("order-1", EVS_BACKWARD, EVS_FROM_END, 0);
  assert_positions(&l, WANT(12, 11, 3, 2, 1));
  tu_evlist_free(&l);
}

Test(store_read, stream_backward_from_version) {
  tu_evlist l = stream_read("order-1", EVS_BACKWARD, 2, 0);
  assert_positions(&l, WANT(3, 2, 1));
  tu_evlist_free(&l);
  l = stream_read("order-1", EVS_BACKWARD, 0, 0);
  assert_positions(&l, WANT(1));
  tu_evlist_free(&l);
}

Test(store_read, stream_forward_from_version) {
  tu_evlist l = stream_read("order-1", EVS_FORWARD, 3, 0);
  assert_positions(&l, WANT(11, 12));
  tu_evlist_free(&l);
  l = stream_read("order-1", EVS_FORWARD, 4, 0);
  assert_positions(&l, WANT(12));
  tu_evlist_free(&l);
}

Test(store_read, stream_from_version_past_the_end_is_empty) {
  tu_evlist l = stream_read("order-1", EVS_FORWARD, 5, 0);
  cr_assert_eq(l.n, 0);
  tu_evlist_free(&l);
  l = stream_read("order-1", EVS_FORWARD, 1000000, 0);
  cr_assert_eq(l.n, 0);
  tu_evlist_free(&l);
}

Test(store_read, stream_limit) {
  tu_evlist l = stream_read("order-1", EVS_FORWARD, 1, 2);
  assert_positions(&l, WANT(2, 3));
  tu_evlist_free(&l);
  l = stream_read("order-1", EVS_BACKWARD, EVS_FROM_END, 2);
  assert_positions(&l, WANT(12, 11));
  tu_evlist_free(&l);
  l = stream_read("order-1", EVS_FORWARD, 0, 1);
  assert_positions(&l, WANT(1));
  tu_evlist_free(&l);
  l = stream_read("order-1", EVS_FORWARD, 0, 100);
  assert_positions(&l, WANT(1, 2, 3, 11, 12));
  tu_evlist_free(&l);
}

Test(store_read, missing_stream_is_enostream) {
  evs_iter *it = (evs_iter *)0x1;
  evs_read_options o = EVS_READ_OPTIONS_INIT;
  int rc = evs_read_stream(&it, tu_store, "order-3", &o);
  cr_assert_eq(rc, EVS_ENOSTREAM, "%s", evs_err_name(rc));
  /* A prefix of an existing name is another stream. */
  rc = evs_read_stream(&it, tu_store, "order-", &o);
  cr_assert_eq(rc, EVS_ENOSTREAM, "%s", evs_err_name(rc));
}

Test(store_read, iterator_stays_at_end) {
  evs_iter *it = NULL;
  evs_read_options o = EVS_READ_OPTIONS_INIT;
  int rc = evs_read_stream(&it, tu_store, "misc", &o);
  cr_assert_eq(rc, 0, "%s", evs_err_name(rc));
  const evs_event *ev = NULL;
  cr_assert_eq(evs_iter_next(it, &ev), 1);
  cr_assert_eq(ev->position, 8);
  cr_assert_eq(evs_iter_next(it, &ev), 0);
  cr_assert_eq(evs_iter_next(it, &ev), 0);
  cr_assert_eq(evs_iter_next(it, &ev), 0);
  evs_iter_free(it);
  evs_iter_free(NULL);
}

Test(store_read, event_slices_are_valid_until_next) {
  /* The slices of the current event are usable until the next call. */
  evs_iter *it = NULL;
  evs_read_options o = EVS_READ_OPTIONS_INIT;
  cr_assert_eq(evs_read_stream(&it, tu_store, "user-1", &o), 0);
  const evs_event *ev = NULL;
  cr_assert_eq(evs_iter_next(it, &ev), 1);
  cr_assert_eq(ev->stream.len, 6);
  cr_assert_eq(memcmp(ev->stream.data, "user-1", 6), 0);
  cr_assert_eq(ev->type.len, strlen("UserRegistered"));
  cr_assert_eq(memcmp(ev->type.data, "UserRegistered", ev->type.len), 0);
  cr_assert_eq(ev->metadata.len, 0);
  cr_assert_eq(ev->version, 0);
  cr_assert_gt(ev->timestamp_ns, 0);
  evs_stream_info info;
  cr_assert_eq(evs_stream_info_get(tu_store, "user-1", &info), 0);
  cr_assert_eq(ev->stream_id, info.stream_id);
  evs_stream_info_clear(&info);
  cr_assert_eq(evs_iter_next(it, &ev), 1);
  cr_assert_eq(ev->position, 5);
  cr_assert_eq(ev->metadata.len, 2);
  cr_assert_eq(memcmp(ev->metadata.data, "m5", 2), 0);
  evs_iter_free(it);
}

static tu_evlist all_read(evs_direction dir, uint64_t from, uint64_t limit) {
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  o.direction = dir;
  o.from_position = from;
  o.limit = limit;
  return tu_all(tu_store, &o);
}

Test(store_read, all_forward) {
  tu_evlist l = all_read(EVS_FORWARD, 0, 0);
  assert_positions(&l, WANT(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14));
  tu_evlist_free(&l);
}

Test(store_read, all_backward_from_end) {
  tu_evlist l = all_read(EVS_BACKWARD, EVS_POSITION_END, 0);
  assert_positions(&l, WANT(14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1));
  tu_evlist_free(&l);
}

Test(store_read, all_from_position_is_inclusive) {
  tu_evlist l = all_read(EVS_FORWARD, 12, 0);
  assert_positions(&l, WANT(12, 13, 14));
  tu_evlist_free(&l);
  l = all_read(EVS_BACKWARD, 3, 0);
  assert_positions(&l, WANT(3, 2, 1));
  tu_evlist_free(&l);
  l = all_read(EVS_FORWARD, 1, 1);
  assert_positions(&l, WANT(1));
  tu_evlist_free(&l);
  l = all_read(EVS_FORWARD, 15, 0);
  cr_assert_eq(l.n, 0);
  tu_evlist_free(&l);
}

Test(store_read, all_limit) {
  tu_evlist l = all_read(EVS_FORWARD, 3, 4);
  assert_positions(&l, WANT(3, 4, 5, 6));
  tu_evlist_free(&l);
  l = all_read(EVS_BACKWARD, EVS_POSITION_END, 3);
  assert_positions(&l, WANT(14, 13, 12));
  tu_evlist_free(&l);
}

static tu_evlist filtered(evs_direction dir, const char *prefix,
                          const char *category, const char *type) {
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  o.direction = dir;
  o.from_position = dir == EVS_BACKWARD ? EVS_POSITION_END : 0;
  o.stream_prefix = prefix;
  o.category = category;
  o.event_type = type;
  return tu_all(tu_store, &o);
}

Test(store_read, all_filter_stream_prefix) {
  tu_evlist l = filtered(EVS_FORWARD, "order", NULL, NULL);
  assert_positions(&l, WANT(1, 2, 3, 6, 7, 9, 10, 11, 12, 14));
  tu_evlist_free(&l);
  l = filtered(EVS_FORWARD, "order-", NULL, NULL);
  assert_positions(&l, WANT(1, 2, 3, 6, 7, 11, 12));
  tu_evlist_free(&l);
  l = filtered(EVS_BACKWARD, "user-", NULL, NULL);
  assert_positions(&l, WANT(13, 5, 4));
  tu_evlist_free(&l);
  l = filtered(EVS_FORWARD, "zzz", NULL, NULL);
  cr_assert_eq(l.n, 0);
  tu_evlist_free(&l);
}

Test(store_read, all_filter_category) {
  /* "order" is the category of order-1, order-2 and of the stream named
   * just "order", not of orderly-1. */
  tu_evlist l = filtered(EVS_FORWARD, NULL, "order", NULL);
  assert_positions(&l, WANT(1, 2, 3, 6, 7, 11, 12, 14));
  tu_evlist_free(&l);
  l = filtered(EVS_FORWARD, NULL, "misc", NULL);
  assert_positions(&l, WANT(8));
  tu_evlist_free(&l);
  l = filtered(EVS_BACKWARD, NULL, "user", NULL);
  assert_positions(&l, WANT(13, 5, 4));
  tu_evlist_free(&l);
  l = filtered(EVS_FORWARD, NULL, "orderly", NULL);
  assert_positions(&l, WANT(9, 10));
  tu_evlist_free(&l);
  l = filtered(EVS_FORWARD, NULL, "ord", NULL);
  cr_assert_eq(l.n, 0, "a category is matched whole, not as a prefix");
  tu_evlist_free(&l);
}

Test(store_read, all_filter_event_type) {
  tu_evlist l = filtered(EVS_FORWARD, NULL, NULL, "OrderPlaced");
  assert_positions(&l, WANT(1, 6, 9, 10, 14));
  tu_evlist_free(&l);
  l = filtered(EVS_BACKWARD, NULL, NULL, "UserRegistered");
  assert_positions(&l, WANT(13, 4));
  tu_evlist_free(&l);
  l = filtered(EVS_FORWARD, NULL, NULL, "Order");
  cr_assert_eq(l.n, 0, "types are matched whole");
  tu_evlist_free(&l);
  l = filtered(EVS_FORWARD, NULL, NULL, "NeverWritten");
  cr_assert_eq(l.n, 0);
  tu_evlist_free(&l);
}

Test(store_read, all_filters_combine_with_and) {
  tu_evlist l = filtered(EVS_FORWARD, NULL, "order", "OrderPlaced");
  assert_positions(&l, WANT(1, 6, 14));
  tu_evlist_free(&l);
  l = filtered(EVS_FORWARD, "order-", NULL, "OrderShipped");
  assert_positions(&l, WANT(3, 12));
  tu_evlist_free(&l);
  l = filtered(EVS_BACKWARD, "order-1", "order", "OrderShipped");
  assert_positions(&l, WANT(12, 3));
  tu_evlist_free(&l);
  l = filtered(EVS_FORWARD, "user", "order", NULL);
  cr_assert_eq(l.n, 0);
  tu_evlist_free(&l);
}

Test(store_read, all_filter_with_start_and_limit) {
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  o.event_type = "OrderPlaced";
  o.from_position = 7;
  o.limit = 2;
  tu_evlist l = tu_all(tu_store, &o);
  assert_positions(&l, WANT(9, 10));
  tu_evlist_free(&l);
  o.direction = EVS_BACKWARD;
  o.from_position = 9;
  o.limit = 0;
  o.event_type = NULL;
  o.category = "order";
  l = tu_all(tu_store, &o);
  assert_positions(&l, WANT(7, 6, 3, 2, 1));
  tu_evlist_free(&l);
}

Test(store_read, all_until_position) {
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  o.until_position = 5;
  tu_evlist l = tu_all(tu_store, &o);
  assert_positions(&l, WANT(1, 2, 3, 4, 5));
  tu_evlist_free(&l);
  o.category = "order";
  o.until_position = 7;
  l = tu_all(tu_store, &o);
  assert_positions(&l, WANT(1, 2, 3, 6, 7));
  tu_evlist_free(&l);
  o.category = NULL;
  o.direction = EVS_BACKWARD;
  o.from_position = EVS_POSITION_END;
  o.until_position = 3;
  l = tu_all(tu_store, &o);
  assert_positions(&l, WANT(3, 2, 1));
  tu_evlist_free(&l);
}

Test(store_read, checkpoint_follows_unfiltered_read) {
  evs_iter *it = NULL;
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  cr_assert_eq(evs_read_all(&it, tu_store, &o), 0);
  cr_assert_eq(evs_iter_checkpoint(it), 0);
  const evs_event *ev;
  for (uint64_t p = 1; p <= NROWS; p++) {
    cr_assert_eq(evs_iter_next(it, &ev), 1);
    cr_assert_eq(evs_iter_checkpoint(it), p);
  }
  cr_assert_eq(evs_iter_next(it, &ev), 0);
  cr_assert_eq(evs_iter_checkpoint(it), NROWS);
  evs_iter_free(it);
}

Test(store_read, checkpoint_advances_past_filtered_events) {
  /* The checkpoint is at least the last delivered position and never
   * beyond the head; at the end of a filtered read it has covered every
   * position the read considered, so resuming from it skips nothing that
   * matches. */
  evs_iter *it = NULL;
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  o.category = "user";
  cr_assert_eq(evs_read_all(&it, tu_store, &o), 0);
  const evs_event *ev;
  uint64_t want[] = {4, 5, 13};
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(evs_iter_next(it, &ev), 1);
    cr_assert_eq(ev->position, want[i]);
    uint64_t cp = evs_iter_checkpoint(it);
    cr_assert(cp >= want[i] && cp <= NROWS, "checkpoint %llu after %llu",
              (unsigned long long)cp, (unsigned long long)want[i]);
  }
  cr_assert_eq(evs_iter_next(it, &ev), 0);
  uint64_t cp = evs_iter_checkpoint(it);
  cr_assert(cp >= 13 && cp <= NROWS, "final checkpoint %llu",
            (unsigned long long)cp);
  evs_iter_free(it);
}

Test(store_read, read_event_by_position) {
  evs_event *e = NULL;
  int rc = evs_read_event(tu_store, 7, &e);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  cr_assert_not_null(e);
  cr_assert_eq(e->position, 7);
  cr_assert_eq(e->version, 1);
  cr_assert_eq(e->stream.len, 7);
  cr_assert_eq(memcmp(e->stream.data, "order-2", 7), 0);
  cr_assert_eq(e->type.len, strlen("OrderCancelled"));
  cr_assert_eq(memcmp(e->type.data, "OrderCancelled", e->type.len), 0);
  cr_assert_eq(memcmp(e->data.data, "{\"p\":7}", e->data.len), 0);
  uint64_t pos = 0;
  cr_assert_eq(evs_find_event_id(tu_store, &e->id, &pos), 0);
  cr_assert_eq(pos, 7);
  evs_event_free(e);
  evs_event_free(NULL);

  e = (evs_event *)0x1;
  cr_assert_eq(evs_read_event(tu_store, 0, &e), EVS_ENOTFOUND);
  cr_assert_eq(evs_read_event(tu_store, NROWS + 1, &e), EVS_ENOTFOUND);
  cr_assert_eq(evs_read_event(tu_store, UINT64_MAX, &e), EVS_ENOTFOUND);
}

Test(store_read, read_event_copy_outlives_later_appends) {
  evs_event *e = NULL;
  cr_assert_eq(evs_read_event(tu_store, 1, &e), 0);
  /* Appends (and map activity) after the copy do not change it. */
  for (int i = 0; i < 20; i++)
    tu_append_ok(tu_store, "later", EVS_EXPECT_ANY, 50, NULL);
  cr_assert_eq(e->data.len, strlen("{\"p\":1}"));
  cr_assert_eq(memcmp(e->data.data, "{\"p\":1}", e->data.len), 0);
  cr_assert_eq(memcmp(e->stream.data, "order-1", 7), 0);
  cr_assert_eq(memcmp(e->metadata.data, "m1", 2), 0);
  evs_event_free(e);
}

Test(store_read, long_reads_cross_snapshot_refreshes) {
  /* More events than an iterator reads in one snapshot. */
  tu_append_ok(tu_store, "long", EVS_EXPECT_NO_STREAM, 6000, NULL);
  tu_append_ok(tu_store, "long", EVS_EXPECT_ANY, 6000, NULL);
  tu_evlist l = tu_all(tu_store, NULL);
  cr_assert_eq(l.n, NROWS + 12000);
  for (size_t i = 0; i < l.n; i++)
    cr_assert_eq(l.ev[i].position, i + 1);
  tu_evlist_free(&l);
  l = stream_read("long", EVS_BACKWARD, EVS_FROM_END, 0);
  cr_assert_eq(l.n, 12000);
  for (size_t i = 0; i < l.n; i++)
    cr_assert_eq(l.ev[i].version, (int64_t)(11999 - i));
  tu_evlist_free(&l);
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  o.category = "order";
  l = tu_all(tu_store, &o);
  cr_assert_eq(l.n, 8);
  tu_evlist_free(&l);
}

Test(store_read, stream_category_helper) {
  evs_slice c = evs_stream_category("order-42", 8);
  cr_assert_eq(c.len, 5);
  cr_assert_eq(memcmp(c.data, "order", 5), 0);
  c = evs_stream_category("order", 5);
  cr_assert_eq(c.len, 5);
  c = evs_stream_category("a-b-c", 5);
  cr_assert_eq(c.len, 1);
  cr_assert_eq(memcmp(c.data, "a", 1), 0);
  /* Only `len` bytes count. */
  c = evs_stream_category("user-1", 4);
  cr_assert_eq(c.len, 4);
}

/* Two streams ("pa-1", "pb-1") of `n` events each, appended in
 * alternating runs of 100, so that neither stream's positions are
 * contiguous and each stream's index spans several pages. */
static void interleaved(size_t n) {
  for (size_t i = 0; i < n / 100; i++) {
    tu_append_ok(tu_store, "pa-1", EVS_EXPECT_ANY, 100, "A");
    tu_append_ok(tu_store, "pb-1", EVS_EXPECT_ANY, 100, "B");
  }
}

/* Asserts that l holds versions first, first +/- 1, ... (n of them) of
 * `stream`, with the data tu_append_n wrote, in position order. */
static void assert_versions(const tu_evlist *l, const char *stream,
                            int64_t first, int step, size_t n) {
  cr_assert_eq(l->n, n, "got %zu events, want %zu", l->n, n);
  for (size_t i = 0; i < n; i++) {
    const tu_ev *e = &l->ev[i];
    int64_t v = first + step * (int64_t)i;
    cr_assert_eq(e->version, v, "event %zu: version %lld, want %lld", i,
                 (long long)e->version, (long long)v);
    cr_assert_str_eq(e->stream, stream);
    char data[64];
    snprintf(data, sizeof data, "%s#%lld", stream, (long long)(v % 100));
    cr_assert_eq(e->data_len, strlen(data));
    cr_assert_eq(memcmp(e->data, data, e->data_len), 0);
    if (i)
      cr_assert(step > 0 ? e->position > l->ev[i - 1].position
                         : e->position < l->ev[i - 1].position);
  }
}

Test(store_read, stream_reads_walk_index_pages) {
  interleaved(1500);
  tu_evlist l = stream_read("pa-1", EVS_FORWARD, 0, 0);
  assert_versions(&l, "pa-1", 0, 1, 1500);
  tu_evlist_free(&l);
  l = stream_read("pb-1", EVS_FORWARD, 777, 500);
  assert_versions(&l, "pb-1", 777, 1, 500);
  tu_evlist_free(&l);
  l = stream_read("pa-1", EVS_BACKWARD, 1111, 0);
  assert_versions(&l, "pa-1", 1111, -1, 1112);
  tu_evlist_free(&l);
  l = stream_read("pb-1", EVS_BACKWARD, EVS_FROM_END, 300);
  assert_versions(&l, "pb-1", 1499, -1, 300);
  tu_evlist_free(&l);
  /* Hidden versions at both ends of a page walk. */
  evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
  md.truncate_before = 600;
  cr_assert_eq(evs_stream_set_metadata(tu_store, "pa-1", &md), 0);
  l = stream_read("pa-1", EVS_BACKWARD, EVS_FROM_END, 0);
  assert_versions(&l, "pa-1", 1499, -1, 900);
  tu_evlist_free(&l);
  l = stream_read("pa-1", EVS_FORWARD, 0, 0);
  assert_versions(&l, "pa-1", 600, 1, 900);
  tu_evlist_free(&l);
}

Test(store_read, single_event_stream_both_directions) {
  tu_append_ok(tu_store, "solo", EVS_EXPECT_NO_STREAM, 1, NULL);
  tu_evlist l = stream_read("solo", EVS_FORWARD, 0, 0);
  assert_versions(&l, "solo", 0, 1, 1);
  tu_evlist_free(&l);
  l = stream_read("solo", EVS_BACKWARD, EVS_FROM_END, 0);
  assert_versions(&l, "solo", 0, -1, 1);
  tu_evlist_free(&l);
  l = stream_read("solo", EVS_FORWARD, 1, 0);
  cr_assert_eq(l.n, 0);
  tu_evlist_free(&l);
  l = stream_read("solo", EVS_BACKWARD, 0, 0);
  assert_versions(&l, "solo", 0, -1, 1);
  tu_evlist_free(&l);
}

Test(store_read, filtered_reads_walk_index_pages) {
  interleaved(1500);
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  o.category = "pa";
  o.direction = EVS_BACKWARD;
  o.from_position = EVS_POSITION_END;
  tu_evlist l = tu_all(tu_store, &o);
  assert_versions(&l, "pa-1", 1499, -1, 1500);
  tu_evlist_free(&l);
  /* From the middle, both ways, through the type index. */
  o = (evs_read_all_options)EVS_READ_ALL_OPTIONS_INIT;
  o.event_type = "B";
  o.direction = EVS_BACKWARD;
  o.from_position = NROWS + 1800; /* pb-1 v899 */
  l = tu_all(tu_store, &o);
  assert_versions(&l, "pb-1", 899, -1, 900);
  tu_evlist_free(&l);
  o.direction = EVS_FORWARD;
  o.from_position = NROWS + 1801;
  l = tu_all(tu_store, &o);
  assert_versions(&l, "pb-1", 900, 1, 600);
  tu_evlist_free(&l);
}

Test(store_read, all_scan_sees_changes_after_a_refresh) {
  /* 10,000 events, more than one snapshot's worth: the scan's later
   * snapshots must see a delete and a new max_count made during the
   * scan, although the streams' records were read (and cached) before. */
  interleaved(5000);
  evs_iter *it = NULL;
  cr_assert_eq(evs_read_all(&it, tu_store, NULL), 0);
  const evs_event *ev;
  size_t n = 0, a_late = 0, b_early = 0, b_late = 0;
  int rc;
  while ((rc = evs_iter_next(it, &ev)) == 1) {
    if (++n == 10) {
      cr_assert_eq(evs_stream_delete(tu_store, "pb-1", EVS_EXPECT_ANY, 0), 0);
      evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
      md.max_count = 50;
      cr_assert_eq(evs_stream_set_metadata(tu_store, "pa-1", &md), 0);
    }
    int is_b = ev->stream.len == 4 && memcmp(ev->stream.data, "pb-1", 4) == 0;
    if (ev->position <= 4096) {
      b_early += is_b;
    } else if (is_b) {
      b_late++;
    } else if (ev->stream.len == 4 && memcmp(ev->stream.data, "pa-1", 4) == 0) {
      a_late++;
      cr_assert_geq(ev->version, 4950);
    }
  }
  cr_assert_eq(rc, 0);
  evs_iter_free(it);
  cr_assert_gt(b_early, 0, "the first snapshot still shows pb-1");
  cr_assert_eq(b_late, 0, "pb-1 was deleted during the scan");
  cr_assert_eq(a_late, 50);
}

Test(store_read, all_scan_over_many_streams) {
  /* More streams than any fixed-size cache holds, read round-robin, with
   * a consumer group filter over them. */
  enum { NS = 3000 };
  char name[32];
  for (int round = 0; round < 2; round++)
    for (int i = 0; i < NS; i++) {
      snprintf(name, sizeof name, "many-%d", i);
      tu_append_ok(tu_store, name, EVS_EXPECT_ANY, 1, NULL);
    }
  tu_evlist l = tu_all(tu_store, NULL);
  cr_assert_eq(l.n, NROWS + 2 * NS);
  for (size_t i = NROWS; i < l.n; i++) {
    snprintf(name, sizeof name, "many-%zu", (i - NROWS) % NS);
    cr_assert_str_eq(l.ev[i].stream, name);
    cr_assert_eq(l.ev[i].version, (int64_t)((i - NROWS) / NS));
  }
  tu_evlist_free(&l);
  size_t total = 0;
  for (uint32_t m = 0; m < 3; m++) {
    evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
    o.group_size = 3;
    o.group_member = m;
    o.stream_prefix = "many-";
    l = tu_all(tu_store, &o);
    for (size_t i = 0; i < l.n; i++)
      cr_assert_eq(evs_stream_hash(l.ev[i].stream, strlen(l.ev[i].stream)) % 3,
                   m);
    total += l.n;
    tu_evlist_free(&l);
  }
  cr_assert_eq(total, 2 * NS);
}
