/*
 * Every operation over the wire, through the C client library and, where
 * the client hides it, with raw frames: handshake, ping, append (single,
 * multi, expected versions, idempotent retries, pipelined), reads (stream
 * forward/backward/paged, $all with filters and consumer groups), stream
 * info, listing, metadata, deletes, subscriptions.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "srvutil.h"
#include "testutil.h"

static srv *S;
static evs_client *C;

static void setup(void) {
  S = srv_start("nosync", NULL);
  C = srv_client(S, NULL);
}

static void teardown(void) {
  evs_client_close(C);
  srv_free(S);
}

TestSuite(server_ops, .init = setup, .fini = teardown, .timeout = 120);

static int slice_is(evs_slice s, const char *lit) {
  return s.len == strlen(lit) && memcmp(s.data, lit, s.len) == 0;
}

Test(server_ops, ping_reports_the_head) {
  uint64_t head = 99;
  cr_assert_eq(evs_client_ping(C, &head), 0);
  cr_assert_eq(head, 0);
  cl_append_n(C, "p-1", EVS_EXPECT_ANY, 3, NULL);
  cr_assert_eq(evs_client_ping(C, &head), 0);
  cr_assert_eq(head, 3);
}

Test(server_ops, append_and_read_back) {
  evs_event_data ev[2];
  memset(ev, 0, sizeof ev);
  ev[0].type = "OrderPlaced";
  ev[0].data = "{\"qty\":2}";
  ev[0].data_len = 9;
  ev[0].metadata = "{\"user\":\"u\"}";
  ev[0].metadata_len = 12;
  ev[1].type = "OrderPaid";
  evs_append_result r;
  int rc = evs_client_append(C, "order-1", EVS_EXPECT_NO_STREAM, ev, 2, &r);
  cr_assert_eq(rc, 0, "%s", evs_client_last_error());
  cr_assert_eq(r.first_version, 0);
  cr_assert_eq(r.last_version, 1);
  cr_assert_eq(r.first_position, 1);
  cr_assert_eq(r.last_position, 2);
  cr_assert_gt(r.timestamp_ns, 0);
  cr_assert_eq(r.idempotent, 0);
  /* the client gave the events ids */
  cr_assert_not(evs_uuid_is_nil(&ev[0].id));

  evs_client_iter *it;
  cr_assert_eq(evs_client_read_stream(&it, C, "order-1", NULL), 0);
  const evs_event *e;
  cr_assert_eq(evs_client_iter_next(it, &e), 1);
  cr_assert(slice_is(e->type, "OrderPlaced"));
  cr_assert(slice_is(e->data, "{\"qty\":2}"));
  cr_assert(slice_is(e->metadata, "{\"user\":\"u\"}"));
  cr_assert(slice_is(e->stream, "order-1"));
  cr_assert_eq(memcmp(e->id.bytes, ev[0].id.bytes, 16), 0);
  cr_assert_eq(e->version, 0);
  cr_assert_eq(e->position, 1);
  cr_assert_eq(e->timestamp_ns, r.timestamp_ns);
  cr_assert_eq(evs_client_iter_next(it, &e), 1);
  cr_assert_eq(e->version, 1);
  cr_assert_eq(e->data.len, 0);
  cr_assert_eq(evs_client_iter_next(it, &e), 0);
  cr_assert_eq(evs_client_iter_checkpoint(it), 1);
  evs_client_iter_free(it);
}

Test(server_ops, wrong_expected_version_reports_the_actual_one) {
  cl_append_n(C, "wv-1", EVS_EXPECT_NO_STREAM, 3, NULL);
  evs_event_data ev = { .type = "T" };
  evs_append_result r;
  int rc = evs_client_append(C, "wv-1", 0, &ev, 1, &r);
  cr_assert_eq(rc, EVS_EWRONGVERSION);
  cr_assert_eq(r.actual_version, 2);
  cr_assert(strstr(evs_client_last_error(), "actual"), "%s",
            evs_client_last_error());
  memset(&ev.id, 0, sizeof ev.id);
  rc = evs_client_append(C, "wv-1", EVS_EXPECT_NO_STREAM, &ev, 1, &r);
  cr_assert_eq(rc, EVS_EWRONGVERSION);
  memset(&ev.id, 0, sizeof ev.id);
  rc = evs_client_append(C, "wv-none", EVS_EXPECT_EXISTS, &ev, 1, &r);
  cr_assert_eq(rc, EVS_EWRONGVERSION);
  cr_assert_eq(r.actual_version, -1);
  memset(&ev.id, 0, sizeof ev.id);
  rc = evs_client_append(C, "wv-1", 2, &ev, 1, &r);
  cr_assert_eq(rc, 0);
  cr_assert_eq(r.first_version, 3);
}

Test(server_ops, retry_with_same_ids_is_idempotent) {
  evs_event_data ev[2];
  memset(ev, 0, sizeof ev);
  ev[0].type = "A";
  ev[1].type = "B";
  evs_append_result r1, r2;
  cr_assert_eq(evs_client_append(C, "idem-1", EVS_EXPECT_NO_STREAM, ev, 2, &r1),
               0);
  /* the same array again: the ids were written back by the first call */
  cr_assert_eq(evs_client_append(C, "idem-1", EVS_EXPECT_NO_STREAM, ev, 2, &r2),
               0, "%s", evs_client_last_error());
  cr_assert_eq(r2.idempotent, 1);
  cr_assert_eq(r2.first_position, r1.first_position);
  cr_assert_eq(r2.last_version, r1.last_version);
  /* a known id in another stream is a conflict */
  int rc = evs_client_append(C, "idem-2", EVS_EXPECT_ANY, ev, 1, NULL);
  cr_assert_eq(rc, EVS_EIDCONFLICT);
  /* a duplicate id in one call is invalid */
  evs_event_data dup[2];
  memset(dup, 0, sizeof dup);
  dup[0].type = dup[1].type = "D";
  dup[0].id.bytes[0] = dup[1].id.bytes[0] = 7;
  rc = evs_client_append(C, "idem-3", EVS_EXPECT_ANY, dup, 2, NULL);
  cr_assert_eq(rc, EVS_EINVAL);
}

Test(server_ops, multi_stream_append_is_atomic) {
  evs_event_data a[2], b[1];
  memset(a, 0, sizeof a);
  memset(b, 0, sizeof b);
  a[0].type = a[1].type = "A";
  b[0].type = "B";
  evs_append_part parts[2] = {
    { "ma-1", EVS_EXPECT_NO_STREAM, a, 2, { 0 } },
    { "mb-1", EVS_EXPECT_NO_STREAM, b, 1, { 0 } },
  };
  size_t failed = 99;
  cr_assert_eq(evs_client_append_multi(C, parts, 2, &failed), 0, "%s",
               evs_client_last_error());
  cr_assert_eq(parts[0].result.last_version, 1);
  cr_assert_eq(parts[1].result.first_version, 0);
  cr_assert_eq(parts[1].result.first_position, 3);
  /* second part fails: nothing of the first is written */
  evs_event_data c[1], d[1];
  memset(c, 0, sizeof c);
  memset(d, 0, sizeof d);
  c[0].type = d[0].type = "X";
  evs_append_part bad[2] = {
    { "ma-1", 1, c, 1, { 0 } },
    { "mb-1", 5, d, 1, { 0 } },
  };
  cr_assert_eq(evs_client_append_multi(C, bad, 2, &failed), EVS_EWRONGVERSION);
  cr_assert_eq(failed, 1);
  cr_assert_eq(bad[1].result.actual_version, 0);
  evs_stream_info info;
  cr_assert_eq(evs_client_stream_info(C, "ma-1", &info), 0);
  cr_assert_eq(info.version, 1);
  evs_client_stream_info_clear(&info);
}

Test(server_ops, pipelined_appends_commit_in_order) {
  enum {
    N = 200
  };
  uint64_t tickets[N];
  evs_event_data ev[N];
  memset(ev, 0, sizeof ev);
  for (int i = 0; i < N; i++) {
    ev[i].type = "P";
    /* exact expected versions: any reordering would fail */
    cr_assert_eq(evs_client_append_send(C, "pipe-1", i == 0 ? -1 : i - 1,
                                        &ev[i], 1, &tickets[i]),
                 0);
  }
  for (int i = 0; i < N; i++) {
    evs_append_result r;
    cr_assert_eq(evs_client_append_wait(C, tickets[i], &r), 0, "%d: %s", i,
                 evs_client_last_error());
    cr_assert_eq(r.first_version, i);
  }
  cr_assert_eq(evs_client_append_wait(C, tickets[0], NULL), EVS_EINVAL,
               "a ticket is waited once");
}

Test(server_ops, read_stream_pages_both_ways) {
  /* more than a server page (1000 events) */
  for (int k = 0; k < 5; k++)
    cl_append_n(C, "big-1", EVS_EXPECT_ANY, 500, NULL);
  cl_append_n(C, "other-1", EVS_EXPECT_ANY, 10, NULL);
  evs_client_iter *it;
  const evs_event *e;
  cr_assert_eq(evs_client_read_stream(&it, C, "big-1", NULL), 0);
  int64_t n = 0;
  while (evs_client_iter_next(it, &e) == 1) {
    cr_assert_eq(e->version, n);
    n++;
  }
  cr_assert_eq(n, 2500);
  evs_client_iter_free(it);

  evs_read_options o = EVS_READ_OPTIONS_INIT;
  o.direction = EVS_BACKWARD;
  o.from_version = EVS_FROM_END;
  o.limit = 1500;
  cr_assert_eq(evs_client_read_stream(&it, C, "big-1", &o), 0);
  n = 2499;
  int count = 0;
  while (evs_client_iter_next(it, &e) == 1) {
    cr_assert_eq(e->version, n);
    n--;
    count++;
  }
  cr_assert_eq(count, 1500);
  evs_client_iter_free(it);

  o = (evs_read_options)EVS_READ_OPTIONS_INIT;
  o.from_version = 2495;
  cr_assert_eq(evs_client_read_stream(&it, C, "big-1", &o), 0);
  count = 0;
  while (evs_client_iter_next(it, &e) == 1)
    count++;
  cr_assert_eq(count, 5);
  evs_client_iter_free(it);

  /* an iterator freed with a page still in flight */
  cr_assert_eq(evs_client_read_stream(&it, C, "big-1", NULL), 0);
  cr_assert_eq(evs_client_iter_next(it, &e), 1);
  evs_client_iter_free(it);
  cr_assert_eq(evs_client_ping(C, NULL), 0);

  cr_assert_eq(evs_client_read_stream(&it, C, "missing-1", NULL),
               EVS_ENOSTREAM);
  cr_assert_eq(evs_client_read_stream(&it, C, "", NULL), EVS_EBADNAME);
}

Test(server_ops, read_all_with_filters_and_groups) {
  cl_append_n(C, "order-1", EVS_EXPECT_ANY, 3, "Placed");
  cl_append_n(C, "order-2", EVS_EXPECT_ANY, 2, "Paid");
  cl_append_n(C, "cust-1", EVS_EXPECT_ANY, 4, "Placed");
  evs_client_iter *it;
  const evs_event *e;
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  cr_assert_eq(evs_client_read_all(&it, C, &o), 0);
  uint64_t pos = 0;
  while (evs_client_iter_next(it, &e) == 1) {
    cr_assert_eq(e->position, pos + 1);
    pos = e->position;
  }
  cr_assert_eq(pos, 9);
  evs_client_iter_free(it);

  o.category = "order";
  cr_assert_eq(evs_client_read_all(&it, C, &o), 0);
  int n = 0;
  while (evs_client_iter_next(it, &e) == 1) {
    cr_assert_eq(memcmp(e->stream.data, "order-", 6), 0);
    n++;
  }
  cr_assert_eq(n, 5);
  cr_assert_eq(evs_client_iter_checkpoint(it), 9, "checkpoint at the head");
  evs_client_iter_free(it);

  o = (evs_read_all_options)EVS_READ_ALL_OPTIONS_INIT;
  o.event_type = "Placed";
  o.stream_prefix = "cust";
  cr_assert_eq(evs_client_read_all(&it, C, &o), 0);
  n = 0;
  while (evs_client_iter_next(it, &e) == 1)
    n++;
  cr_assert_eq(n, 4);
  evs_client_iter_free(it);

  o = (evs_read_all_options)EVS_READ_ALL_OPTIONS_INIT;
  o.direction = EVS_BACKWARD;
  o.from_position = EVS_POSITION_END;
  o.limit = 4;
  cr_assert_eq(evs_client_read_all(&it, C, &o), 0);
  uint64_t expect = 9;
  while (evs_client_iter_next(it, &e) == 1)
    cr_assert_eq(e->position, expect--);
  cr_assert_eq(expect, 5);
  evs_client_iter_free(it);

  /* consumer groups: two members see disjoint sets covering everything */
  int seen = 0;
  for (uint32_t m = 0; m < 2; m++) {
    o = (evs_read_all_options)EVS_READ_ALL_OPTIONS_INIT;
    o.group_size = 2;
    o.group_member = m;
    cr_assert_eq(evs_client_read_all(&it, C, &o), 0);
    while (evs_client_iter_next(it, &e) == 1) {
      cr_assert_eq(evs_stream_hash(e->stream.data, e->stream.len) % 2, m);
      seen++;
    }
    evs_client_iter_free(it);
  }
  cr_assert_eq(seen, 9);
}

Test(server_ops, stream_info_metadata_and_listing) {
  cl_append_n(C, "meta-1", EVS_EXPECT_ANY, 5, NULL);
  evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
  md.max_count = 2;
  md.custom = "{\"owner\":\"me\"}";
  md.custom_len = 14;
  cr_assert_eq(evs_client_set_metadata(C, "meta-1", &md), 0, "%s",
               evs_client_last_error());
  evs_stream_info info;
  cr_assert_eq(evs_client_stream_info(C, "meta-1", &info), 0);
  cr_assert(info.exists);
  cr_assert_eq(info.version, 4);
  cr_assert_eq(info.first_version, 3);
  cr_assert_eq(info.max_count, 2);
  cr_assert_eq(info.custom_len, 14);
  cr_assert_eq(memcmp(info.custom, "{\"owner\":\"me\"}", 14), 0);
  evs_client_stream_info_clear(&info);
  evs_client_iter *it;
  const evs_event *e;
  cr_assert_eq(evs_client_read_stream(&it, C, "meta-1", NULL), 0);
  int n = 0;
  while (evs_client_iter_next(it, &e) == 1)
    n++;
  cr_assert_eq(n, 2, "max_count hides older events");
  evs_client_iter_free(it);
  cr_assert_eq(evs_client_stream_info(C, "never-1", &info), EVS_ENOSTREAM);
}

static int count_cb(const char *name, size_t len, const evs_stream_info *info,
                    void *payload) {
  (void)info;
  int *n = payload;
  cr_assert_eq(memcmp(name, "ls-", 3), 0, "%.*s", (int)len, name);
  (*n)++;
  return 0;
}

static int stop_cb(const char *name, size_t len, const evs_stream_info *info,
                   void *payload) {
  (void)name;
  (void)len;
  (void)info;
  (void)payload;
  return 42;
}

Test(server_ops, list_streams_pages) {
  evs_event_data ev[1];
  memset(ev, 0, sizeof ev);
  ev[0].type = "T";
  /* 1100 streams in one multi-stream append: more than one page */
  enum {
    N = 1100
  };
  evs_append_part *parts = calloc(N, sizeof *parts);
  evs_event_data *evs = calloc(N, sizeof *evs);
  char(*names)[16] = calloc(N, sizeof *names);
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof names[i], "ls-%04d", i);
    evs[i].type = "T";
    parts[i].stream = names[i];
    parts[i].expected = EVS_EXPECT_ANY;
    parts[i].events = &evs[i];
    parts[i].count = 1;
  }
  cr_assert_eq(evs_client_append_multi(C, parts, 500, NULL), 0, "%s",
               evs_client_last_error());
  cr_assert_eq(evs_client_append_multi(C, parts + 500, N - 500, NULL), 0);
  cl_append_n(C, "zz-other", EVS_EXPECT_ANY, 1, NULL);
  int n = 0;
  cr_assert_eq(evs_client_list_streams(C, "ls-", NULL, 0, count_cb, &n), 0);
  cr_assert_eq(n, N);
  n = 0;
  cr_assert_eq(evs_client_list_streams(C, "ls-", "ls-1000", 0, count_cb, &n),
               0);
  cr_assert_eq(n, 99);
  cr_assert_eq(evs_client_list_streams(C, NULL, NULL, 0, stop_cb, NULL), 42);
  free(parts);
  free(evs);
  free(names);
}

Test(server_ops, soft_and_hard_delete) {
  cl_append_n(C, "del-1", EVS_EXPECT_ANY, 3, NULL);
  cr_assert_eq(evs_client_delete(C, "del-1", 0, 0), EVS_EWRONGVERSION);
  cr_assert_eq(evs_client_delete(C, "del-1", 2, 0), 0);
  evs_client_iter *it;
  cr_assert_eq(evs_client_read_stream(&it, C, "del-1", NULL), EVS_ENOSTREAM);
  evs_stream_info info;
  cr_assert_eq(evs_client_stream_info(C, "del-1", &info), 0);
  cr_assert(info.flags & EVS_STREAM_DELETED);
  evs_client_stream_info_clear(&info);
  /* recreated: versions continue */
  evs_append_result r = cl_append_n(C, "del-1", EVS_EXPECT_ANY, 1, NULL);
  cr_assert_eq(r.first_version, 3);
  cr_assert_eq(evs_client_delete(C, "del-1", EVS_EXPECT_ANY, 1), 0);
  evs_event_data ev = { .type = "T" };
  cr_assert_eq(evs_client_append(C, "del-1", EVS_EXPECT_ANY, &ev, 1, NULL),
               EVS_ESTREAMDELETED);
  cr_assert_eq(evs_client_read_stream(&it, C, "del-1", NULL),
               EVS_ESTREAMDELETED);
}

Test(server_ops, subscribe_all_catch_up_then_live) {
  cl_append_n(C, "sub-1", EVS_EXPECT_ANY, 5, NULL);
  evs_client_sub *s;
  evs_client_sub_options so = EVS_CLIENT_SUB_OPTIONS_INIT;
  cr_assert_eq(evs_client_subscribe(&s, C, &so), 0, "%s",
               evs_client_last_error());
  const evs_event *e;
  for (uint64_t p = 1; p <= 5; p++) {
    cr_assert_eq(evs_client_sub_next(s, &e, 10000), 1);
    cr_assert_eq(e->position, p);
  }
  cr_assert_eq(evs_client_sub_next(s, &e, 200), 0);
  cr_assert(evs_client_sub_caught_up(s));
  cl_append_n(C, "sub-2", EVS_EXPECT_ANY, 3, NULL);
  for (uint64_t p = 6; p <= 8; p++) {
    cr_assert_eq(evs_client_sub_next(s, &e, 10000), 1);
    cr_assert_eq(e->position, p);
    cr_assert(slice_is(e->stream, "sub-2"));
  }
  cr_assert_eq(evs_client_sub_checkpoint(s), 8);
  evs_client_sub_close(s);

  /* from a checkpoint, exclusive */
  so.from = 6;
  cr_assert_eq(evs_client_subscribe(&s, C, &so), 0);
  cr_assert_eq(evs_client_sub_next(s, &e, 10000), 1);
  cr_assert_eq(e->position, 7);
  evs_client_sub_close(s);

  /* from the end: only new events */
  so = (evs_client_sub_options)EVS_CLIENT_SUB_OPTIONS_INIT;
  so.from_end = 1;
  cr_assert_eq(evs_client_subscribe(&s, C, &so), 0);
  cr_assert_eq(evs_client_sub_next(s, &e, 300), 0);
  cl_append_n(C, "sub-3", EVS_EXPECT_ANY, 1, NULL);
  cr_assert_eq(evs_client_sub_next(s, &e, 10000), 1);
  cr_assert_eq(e->position, 9);
  evs_client_sub_close(s);
}

Test(server_ops, subscribe_stream_and_category) {
  cl_append_n(C, "acct-1", EVS_EXPECT_ANY, 2, NULL);
  cl_append_n(C, "acct-2", EVS_EXPECT_ANY, 2, NULL);
  cl_append_n(C, "misc-1", EVS_EXPECT_ANY, 2, NULL);
  evs_client_sub *st, *cat;
  evs_client_sub_options so = EVS_CLIENT_SUB_OPTIONS_INIT;
  so.stream = "acct-2";
  cr_assert_eq(evs_client_subscribe(&st, C, &so), 0);
  so = (evs_client_sub_options)EVS_CLIENT_SUB_OPTIONS_INIT;
  so.category = "acct";
  cr_assert_eq(evs_client_subscribe(&cat, C, &so), 0);
  const evs_event *e;
  for (int v = 0; v < 2; v++) {
    cr_assert_eq(evs_client_sub_next(st, &e, 10000), 1);
    cr_assert(slice_is(e->stream, "acct-2"));
    cr_assert_eq(e->version, v);
  }
  for (int i = 0; i < 4; i++) {
    cr_assert_eq(evs_client_sub_next(cat, &e, 10000), 1);
    cr_assert_eq(memcmp(e->stream.data, "acct-", 5), 0);
  }
  cl_append_n(C, "misc-1", EVS_EXPECT_ANY, 1, NULL);
  cl_append_n(C, "acct-2", EVS_EXPECT_ANY, 1, NULL);
  cr_assert_eq(evs_client_sub_next(st, &e, 10000), 1);
  cr_assert_eq(e->version, 2);
  cr_assert_eq(evs_client_sub_next(cat, &e, 10000), 1);
  cr_assert(slice_is(e->stream, "acct-2"));
  cr_assert_eq(evs_client_sub_checkpoint(cat), 8);
  /* a stream subscription ends when the stream is tombstoned, at once:
   * a tombstone writes no event */
  cr_assert_eq(evs_client_sub_next(st, &e, 100), 0);
  cr_assert_eq(evs_client_delete(C, "acct-2", EVS_EXPECT_ANY, 1), 0);
  cr_assert_eq(evs_client_sub_next(st, &e, 10000), EVS_ESTREAMDELETED);
  evs_client_sub_close(st);
  evs_client_sub_close(cat);
  /* a subscription to a stream that does not exist yet waits for it (its
   * checkpoint is version -1: no reconnection over it), from the start or
   * from the end, and gets the event that creates it */
  for (int from_end = 0; from_end < 2; from_end++) {
    const char *name = from_end ? "later-2" : "later-1";
    so = (evs_client_sub_options)EVS_CLIENT_SUB_OPTIONS_INIT;
    so.stream = name;
    so.from_end = from_end;
    cr_assert_eq(evs_client_subscribe(&st, C, &so), 0);
    cr_assert_eq(evs_client_sub_next(st, &e, 300), 0);
    cr_assert(evs_client_sub_caught_up(st));
    cr_assert_eq(evs_client_sub_checkpoint(st), -1);
    cl_append_n(C, name, EVS_EXPECT_ANY, 3, NULL);
    for (int v = 0; v < 3; v++) {
      cr_assert_eq(evs_client_sub_next(st, &e, 10000), 1);
      cr_assert(slice_is(e->stream, name));
      cr_assert_eq(e->version, v);
    }
    cr_assert_eq(evs_client_sub_reconnects(st), 0, "%s: %u reconnections", name,
                 evs_client_sub_reconnects(st));
    evs_client_sub_close(st);
  }
}

Test(server_ops, raw_subscribe_unsubscribe_and_pushes) {
  cl_append_n(C, "raw-1", EVS_EXPECT_ANY, 3, NULL);
  int fd = raw_connect(S);
  raw_hello(fd, NULL, 0);
  evs__proto_request q;
  evs__proto_request_init(&q);
  q.op = EVS__P_SUBSCRIBE;
  q.rid = 10;
  raw_send_req(fd, &q);
  evs__proto_reply rep;
  uint8_t *body;
  cr_assert_eq(raw_read(fd, 10000, &rep, &body), 1);
  cr_assert_eq(rep.kind, EVS__K_REPLY, "the reply comes before pushes");
  cr_assert_eq(rep.rid, 10);
  cr_assert_eq(rep.code, 0);
  free(body);
  cr_assert_eq(raw_read(fd, 10000, &rep, &body), 1);
  cr_assert_eq(rep.kind, EVS__K_EVENTS);
  cr_assert_eq(rep.rid, 10);
  cr_assert_eq(rep.nevents, 3);
  cr_assert_eq(rep.checkpoint, 3);
  free(body);
  cr_assert_eq(raw_read(fd, 10000, &rep, &body), 1);
  cr_assert_eq(rep.kind, EVS__K_CAUGHT_UP);
  cr_assert_eq(rep.checkpoint, 3);
  free(body);
  /* a second subscription with the same rid is refused */
  raw_send_req(fd, &q);
  cr_assert_eq(raw_read(fd, 10000, &rep, &body), 1);
  cr_assert_eq(rep.code, EVS_EINVAL);
  free(body);
  evs__proto_request_init(&q);
  q.op = EVS__P_UNSUBSCRIBE;
  q.rid = 11;
  q.sub = 10;
  raw_send_req(fd, &q);
  cr_assert_eq(raw_read(fd, 10000, &rep, &body), 1);
  cr_assert_eq(rep.rid, 11);
  cr_assert_eq(rep.code, 0);
  free(body);
  /* no more pushes after the unsubscribe reply */
  cl_append_n(C, "raw-1", EVS_EXPECT_ANY, 1, NULL);
  cr_assert_eq(raw_read(fd, 300, &rep, &body), 0);
  raw_send_req(fd, &q);
  cr_assert_eq(raw_read(fd, 10000, &rep, &body), 1);
  cr_assert_eq(rep.code, EVS_ENOTFOUND);
  free(body);
  close(fd);
}

Test(server_ops, raw_read_replies_carry_next_and_end) {
  cl_append_n(C, "pg-1", EVS_EXPECT_ANY, 10, NULL);
  int fd = raw_connect(S);
  raw_hello(fd, NULL, 0);
  evs__proto_request q;
  evs__proto_request_init(&q);
  q.op = EVS__P_READ_STREAM;
  q.rid = 5;
  q.stream.data = "pg-1";
  q.stream.len = 4;
  q.has_stream = 1;
  q.limit = 4;
  raw_send_req(fd, &q);
  evs__proto_reply rep;
  uint8_t *body;
  cr_assert_eq(raw_read(fd, 10000, &rep, &body), 1);
  cr_assert_eq(rep.nevents, 4);
  cr_assert_eq(rep.next, 4);
  cr_assert_eq(rep.end, 0);
  free(body);
  q.from = 8;
  q.has_from = 1;
  raw_send_req(fd, &q);
  cr_assert_eq(raw_read(fd, 10000, &rep, &body), 1);
  cr_assert_eq(rep.nevents, 2);
  cr_assert_eq(rep.end, 1);
  cr_assert_eq(rep.next, 10);
  free(body);
  evs__proto_request_init(&q);
  q.op = EVS__P_READ_ALL;
  q.rid = 6;
  q.limit = 3;
  q.from = 2;
  q.has_from = 1;
  raw_send_req(fd, &q);
  cr_assert_eq(raw_read(fd, 10000, &rep, &body), 1);
  cr_assert_eq(rep.nevents, 3);
  cr_assert_eq(rep.checkpoint, 4);
  cr_assert_eq(rep.next, 5);
  cr_assert_eq(rep.end, 0);
  free(body);
  close(fd);
}

Test(server_ops, http_health_and_metrics) {
  cl_append_n(C, "m-1", EVS_EXPECT_ANY, 3, NULL);
  char *body = NULL;
  cr_assert_eq(http_get(S, "/health", &body), 200);
  cr_assert_str_eq(body, "ok\n");
  free(body);
  cr_assert_eq(http_get(S, "/metrics", &body), 200);
  static const char *names[] = {
    "evstore_append_requests_total{result=\"ok\"} 1",
    "evstore_events_appended_total 3",
    "evstore_append_commit_seconds_bucket{le=\"+Inf\"} 1",
    "evstore_group_commit_requests_count",
    "evstore_reads_total{op=\"read_stream\"}",
    "evstore_connections 1",
    "evstore_subscriptions 0",
    "evstore_subscription_lag_events_max",
    "evstore_store_file_bytes",
    "evstore_store_map_used_bytes",
    "evstore_head_position 3",
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    cr_assert(strstr(body, names[i]), "missing '%s' in:\n%s", names[i], body);
  free(body);
  cr_assert_eq(http_get(S, "/nope", &body), 404);
  free(body);
}

Test(server_ops, consumer_group_subscriptions_split_the_streams) {
  for (int i = 0; i < 8; i++) {
    char name[32];
    snprintf(name, sizeof name, "grp-%d", i);
    cl_append_n(C, name, EVS_EXPECT_ANY, 2, NULL);
  }
  evs_client_sub *m[2];
  for (uint32_t k = 0; k < 2; k++) {
    evs_client_sub_options so = EVS_CLIENT_SUB_OPTIONS_INIT;
    so.group_size = 2;
    so.group_member = k;
    cr_assert_eq(evs_client_subscribe(&m[k], C, &so), 0);
  }
  int total = 0;
  for (uint32_t k = 0; k < 2; k++) {
    const evs_event *e;
    while (evs_client_sub_next(m[k], &e, 300) == 1) {
      cr_assert_eq(evs_stream_hash(e->stream.data, e->stream.len) % 2, k);
      total++;
    }
    cr_assert(evs_client_sub_caught_up(m[k]));
    evs_client_sub_close(m[k]);
  }
  cr_assert_eq(total, 16);
}

Test(server_ops, a_subscription_resumes_after_a_server_restart) {
  cl_append_n(C, "rs-1", EVS_EXPECT_ANY, 5, NULL);
  evs_client_sub *s;
  evs_client_sub_options so = EVS_CLIENT_SUB_OPTIONS_INIT;
  cr_assert_eq(evs_client_subscribe(&s, C, &so), 0);
  const evs_event *e;
  for (uint64_t p = 1; p <= 5; p++) {
    cr_assert_eq(evs_client_sub_next(s, &e, 10000), 1);
    cr_assert_eq(e->position, p);
  }
  evs_client_close(C);
  C = NULL;
  cr_assert_eq(srv_stop(S), 0);
  /* down: no event, no error */
  cr_assert_eq(evs_client_sub_next(s, &e, 300), 0);
  srv_restart_same_port(S);
  C = srv_client(S, NULL);
  cl_append_n(C, "rs-1", EVS_EXPECT_ANY, 3, NULL);
  for (uint64_t p = 6; p <= 8; p++) {
    cr_assert_eq(evs_client_sub_next(s, &e, 15000), 1, "%s",
                 evs_client_last_error());
    cr_assert_eq(e->position, p, "resumed after its checkpoint");
  }
  cr_assert_geq(evs_client_sub_reconnects(s), 1);
  evs_client_sub_close(s);
}

Test(server_ops, many_live_subscribers_share_reads_and_see_everything) {
  /* Unfiltered $all subscribers at the same checkpoint share one read per
   * commit (src/server/subs.c). Mix in other batch sizes, a filtered one
   * and one that leaves half-way: every remaining subscriber sees every
   * event exactly once, in order. */
  enum {
    NSUB = 12,
    ROUNDS = 40
  };
  evs_client_sub *subs[NSUB];
  for (int i = 0; i < NSUB; i++) {
    evs_client_sub_options so = EVS_CLIENT_SUB_OPTIONS_INIT;
    if (i % 4 == 3)
      so.batch = 2; /* a group of its own batch size */
    if (i == NSUB - 1)
      so.category = "fan"; /* filtered: reads on its own */
    cr_assert_eq(evs_client_subscribe(&subs[i], C, &so), 0, "%s",
                 evs_client_last_error());
  }
  const evs_event *e;
  for (int i = 0; i < NSUB; i++)
    cr_assert_eq(evs_client_sub_next(subs[i], &e, 300), 0); /* caught up */
  uint64_t pos = 0;
  for (int r = 0; r < ROUNDS; r++) {
    cl_append_n(C, r % 2 ? "fan-1" : "other-1", EVS_EXPECT_ANY, 1 + r % 3,
                NULL);
    pos += 1 + (uint64_t)(r % 3);
    if (r == ROUNDS / 2) {
      evs_client_sub_close(subs[0]);
      subs[0] = NULL;
    }
  }
  for (int i = 0; i < NSUB; i++) {
    if (subs[i] == NULL)
      continue;
    uint64_t want = 0;
    for (uint64_t p = 1; p <= pos; p++) {
      int fan = 0;
      /* rounds alternate streams; recompute the stream of position p */
      uint64_t q = 0;
      for (int r = 0; r < ROUNDS; r++) {
        q += 1 + (uint64_t)(r % 3);
        if (p <= q) {
          fan = r % 2;
          break;
        }
      }
      if (i == NSUB - 1 && !fan)
        continue;
      cr_assert_eq(evs_client_sub_next(subs[i], &e, 10000), 1,
                   "subscriber %d stopped before position %llu", i,
                   (unsigned long long)p);
      cr_assert_eq(e->position, p, "subscriber %d: position %llu, want %llu", i,
                   (unsigned long long)e->position, (unsigned long long)p);
      want++;
    }
    cr_assert_eq(evs_client_sub_next(subs[i], &e, 200), 0,
                 "subscriber %d got an extra event", i);
    cr_assert_gt(want, 0);
    evs_client_sub_close(subs[i]);
  }
  /* The live tail was served by shared reads. */
  char *body = NULL;
  cr_assert_eq(http_get(S, "/metrics", &body), 200);
  const char *m = strstr(body, "\nevstore_subscription_shared_reads_total ");
  cr_assert_not_null(m, "no shared-read metric");
  unsigned long long shared = strtoull(strchr(m + 1, ' ') + 1, NULL, 10);
  cr_assert_gt(shared, 0, "no read was shared");
  free(body);
}

Test(server_ops, one_thread_waits_on_many_subscriptions) {
  enum {
    NSUB = 8,
    N = 30
  };
  evs_client_sub *subs[NSUB];
  unsigned char ready[NSUB];
  uint64_t next[NSUB];
  for (int i = 0; i < NSUB; i++) {
    evs_client_sub_options so = EVS_CLIENT_SUB_OPTIONS_INIT;
    if (i == NSUB - 1)
      so.category = "odd"; /* sees only some of them */
    cr_assert_eq(evs_client_subscribe(&subs[i], C, &so), 0, "%s",
                 evs_client_last_error());
    next[i] = 1;
  }
  /* Nothing yet: times out (each has its caught-up notice at most). */
  const evs_event *e;
  for (int i = 0; i < NSUB; i++)
    cr_assert_eq(evs_client_sub_next(subs[i], &e, 300), 0);
  int64_t t0 = tu_now_ns();
  cr_assert_eq(evs_client_sub_wait(subs, NSUB, 200, ready), 0);
  cr_assert_geq((tu_now_ns() - t0) / 1000000, 150);
  for (int i = 0; i < NSUB; i++)
    cr_assert_eq(ready[i], 0);
  /* N events over two streams: every subscription gets its share, in
   * order, through wait + non-blocking next. */
  for (int k = 0; k < N; k++)
    cl_append_n(C, k % 3 ? "even-1" : "odd-1", EVS_EXPECT_ANY, 1, NULL);
  int got[NSUB] = { 0 };
  int want_odd = (N + 2) / 3;
  int64_t until = tu_now_ns() + 10 * 1000000000LL;
  for (;;) {
    int done = 1;
    for (int i = 0; i < NSUB; i++)
      done &= got[i] == (i == NSUB - 1 ? want_odd : N);
    if (done || tu_now_ns() > until)
      break;
    int k = evs_client_sub_wait(subs, NSUB, 1000, ready);
    cr_assert_geq(k, 0, "%s", evs_client_last_error());
    for (int i = 0; i < NSUB; i++) {
      if (!ready[i])
        continue;
      int rc;
      while ((rc = evs_client_sub_next(subs[i], &e, 0)) == 1) {
        if (i == NSUB - 1) {
          cr_assert(slice_is(e->stream, "odd-1"));
        } else {
          cr_assert_eq(e->position, next[i], "subscription %d", i);
          next[i]++;
        }
        got[i]++;
      }
      cr_assert_eq(rc, 0);
    }
  }
  for (int i = 0; i < NSUB; i++)
    cr_assert_eq(got[i], i == NSUB - 1 ? want_odd : N, "subscription %d: %d", i,
                 got[i]);
  /* A lost connection is ready (to resume) rather than silent. */
  evs_client_close(C);
  C = NULL;
  cr_assert_eq(srv_stop(S), 0);
  cr_assert_gt(evs_client_sub_wait(subs, NSUB, 5000, ready), 0);
  for (int i = 0; i < NSUB; i++)
    evs_client_sub_close(subs[i]);
  cr_assert_eq(evs_client_sub_wait(NULL, 1, 0, ready), EVS_EINVAL);
}

Test(server_ops, shared_reads_of_a_large_commit_and_of_the_tail) {
  /* A commit of many events is read for the waiting subscribers on the
   * thread pool, a commit of a few on the loop thread: both deliver
   * everything, in order, to each. */
  enum {
    NSUB = 6
  };
  evs_client_sub *subs[NSUB];
  const evs_event *e;
  for (int i = 0; i < NSUB; i++) {
    evs_client_sub_options so = EVS_CLIENT_SUB_OPTIONS_INIT;
    cr_assert_eq(evs_client_subscribe(&subs[i], C, &so), 0);
    cr_assert_eq(evs_client_sub_next(subs[i], &e, 300), 0);
  }
  cl_append_n(C, "bulk-1", EVS_EXPECT_ANY, 200, NULL); /* positions 1..200 */
  cl_append_n(C, "tail-1", EVS_EXPECT_ANY, 2, NULL);   /* 201..202 */
  cl_append_n(C, "bulk-2", EVS_EXPECT_ANY, 40, NULL);  /* 203..242 */
  cl_append_n(C, "tail-1", EVS_EXPECT_ANY, 1, NULL);   /* 243 */
  for (int i = 0; i < NSUB; i++) {
    for (uint64_t p = 1; p <= 243; p++) {
      cr_assert_eq(evs_client_sub_next(subs[i], &e, 10000), 1,
                   "subscriber %d stopped before %llu: %s", i,
                   (unsigned long long)p, evs_client_last_error());
      cr_assert_eq(e->position, p);
    }
    cr_assert_eq(evs_client_sub_next(subs[i], &e, 200), 0);
    evs_client_sub_close(subs[i]);
  }
}
