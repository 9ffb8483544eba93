/*
 * The operations added later to protocol 1, through the client library: head
 * with its commit time, append_at (imports with original timestamps),
 * read_event by position and by id, the server-side state fold, stats,
 * verify and replay with their progress frames, stream listings with
 * metadata, and the grants each needs.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "srvutil.h"

static srv *S;

static void setup(void) {
  char *dir = srv_tmpdir();
  char path[600];
  snprintf(path, sizeof path, "%s/tokens", dir);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs("admin-t rw:*\nreader-t read:*\norders-t rw:order-\n", f);
  fclose(f);
  const char *args[] = { "--tokens", path, NULL };
  S = srv_start(NULL, args);
  unlink(path);
  rmdir(dir);
  free(dir);
}

static void teardown(void) {
  srv_free(S);
}

TestSuite(server_admin, .init = setup, .fini = teardown, .timeout = 60);

static void check(int rc, const char *what) {
  cr_assert_eq(rc, 0, "%s: %s: %s", what, evs_client_err_name(rc),
               evs_client_last_error());
}

static evs_append_result append_json(evs_client *c, const char *stream,
                                     const char *type, const char *data) {
  evs_event_data ev;
  memset(&ev, 0, sizeof ev);
  ev.type = type;
  ev.data = data;
  ev.data_len = strlen(data);
  evs_append_result r;
  check(evs_client_append(c, stream, EVS_EXPECT_ANY, &ev, 1, &r), "append");
  return r;
}

Test(server_admin, head_and_append_at) {
  evs_client *c = srv_client(S, "admin-t");
  uint64_t head = 99;
  int64_t ts = 99;
  check(evs_client_head(c, &head, &ts), "head");
  cr_assert_eq(head, 0);
  cr_assert_eq(ts, 0);

  const int64_t t0 = 1767225600000000001; /* 2026-01-01T00:00:00.000000001Z */
  evs_event_data ev[2];
  memset(ev, 0, sizeof ev);
  ev[0].type = "Imported";
  ev[1].type = "Imported";
  ev[0].id.bytes[15] = 1;
  ev[1].id.bytes[15] = 2;
  evs_append_part part = { "imp-1", EVS_EXPECT_NO_STREAM, ev, 2, { 0 } };
  check(evs_client_append_at(c, &part, 1, t0, NULL), "append_at");
  cr_assert_eq(part.result.first_version, 0);
  cr_assert_eq(part.result.last_version, 1);
  cr_assert_eq(part.result.timestamp_ns, t0);
  cr_assert_eq(part.result.idempotent, 0);
  /* A retry is recognised. */
  check(evs_client_append_at(c, &part, 1, t0, NULL), "append_at again");
  cr_assert(part.result.idempotent);
  check(evs_client_head(c, &head, &ts), "head");
  cr_assert_eq(head, 2);
  cr_assert_eq(ts, t0);
  /* Older than the head: refused, with the store's message. */
  evs_event_data other[2];
  memset(other, 0, sizeof other);
  other[0].type = "Old";
  evs_append_part old = { "imp-2", EVS_EXPECT_ANY, other, 1, { 0 } };
  int rc = evs_client_append_at(c, &old, 1, t0 - 1, NULL);
  cr_assert_eq(rc, EVS_EINVAL, "%s", evs_client_err_name(rc));
  cr_assert(strlen(evs_client_last_error()) > 0);
  /* A wrong expected version reports the actual one. */
  rc = evs_client_append_at(c, &part, 1, t0, NULL);
  cr_assert_eq(rc, 0); /* same ids: still the idempotent retry */
  memset(other, 0, sizeof other);
  other[0].type = "Next";
  evs_append_part wrong = { "imp-1", 5, other, 1, { 0 } };
  size_t failed = 9;
  rc = evs_client_append_at(c, &wrong, 1, t0, &failed);
  cr_assert_eq(rc, EVS_EWRONGVERSION);
  cr_assert_eq(failed, 0);
  cr_assert_eq(wrong.result.actual_version, 1);
  cr_assert_eq(evs_client_append_at(c, &wrong, 1, 0, NULL), EVS_EINVAL);
  /* A later ordinary append is stamped after the imported time. */
  evs_append_result r = append_json(c, "imp-1", "Now", "{}");
  cr_assert_geq(r.timestamp_ns, t0);
  evs_client_close(c);

  /* A token must be allowed to write every part. */
  c = srv_client(S, "orders-t");
  memset(other, 0, sizeof other);
  other[0].type = "T";
  other[1].type = "T";
  evs_append_part parts[2] = {
    { "order-1", EVS_EXPECT_ANY, &other[0], 1, { 0 } },
    { "cust-1", EVS_EXPECT_ANY, &other[1], 1, { 0 } }
  };
  rc = evs_client_append_at(c, parts, 2, r.timestamp_ns, NULL);
  cr_assert_eq(rc, EVS_EAUTH, "%s", evs_client_err_name(rc));
  check(evs_client_append_at(c, parts, 1, r.timestamp_ns, NULL),
        "append_at own stream");
  check(evs_client_head(c, &head, &ts), "head needs no grant");
  evs_client_close(c);
}

Test(server_admin, read_event_by_position_and_id) {
  evs_client *c = srv_client(S, "admin-t");
  append_json(c, "order-1", "Placed", "{\"a\":1}");
  evs_append_result r = append_json(c, "cust-1", "Registered", "{\"n\":1}");
  append_json(c, "order-1", "Paid", "{\"b\":2}");
  check(evs_client_delete(c, "order-1", EVS_EXPECT_ANY, 0), "delete");
  evs_event *ev = NULL;
  /* Visibility is ignored: the deleted stream's event is still read. */
  check(evs_client_read_event(c, 3, &ev), "read_event");
  cr_assert_eq(ev->position, 3);
  cr_assert_eq(ev->version, 1);
  cr_assert_eq(ev->stream.len, 7);
  cr_assert_eq(memcmp(ev->stream.data, "order-1", 7), 0);
  cr_assert_eq(memcmp(ev->type.data, "Paid", 4), 0);
  cr_assert_eq(memcmp(ev->data.data, "{\"b\":2}", 7), 0);
  evs_uuid id = ev->id;
  evs_client_event_free(ev);
  uint64_t pos = 0;
  check(evs_client_find_event_id(c, &id, &pos), "find_event_id");
  cr_assert_eq(pos, 3);
  cr_assert_eq(evs_client_read_event(c, 99, &ev), EVS_ENOTFOUND);
  cr_assert_null(ev);
  id.bytes[0] ^= 0xff;
  cr_assert_eq(evs_client_find_event_id(c, &id, &pos), EVS_ENOTFOUND);
  evs_client_event_free(NULL);
  evs_client_close(c);

  /* Only events of streams the token may read. */
  c = srv_client(S, "orders-t");
  check(evs_client_read_event(c, 1, &ev), "own stream");
  evs_client_event_free(ev);
  cr_assert_eq(evs_client_read_event(c, r.first_position, &ev), EVS_EAUTH);
  cr_assert(strstr(evs_client_last_error(), "cust-1"), "%s",
            evs_client_last_error());
  evs_client_close(c);
}

Test(server_admin, state_is_the_library_fold) {
  evs_client *c = srv_client(S, "admin-t");
  append_json(c, "order-1", "Placed", "{\"sku\":\"A\",\"qty\":1}");
  evs_append_result r1 = append_json(c, "order-1", "Paid", "{\"paid\":true}");
  ms_sleep(2);
  append_json(c, "order-1", "Changed", "{\"qty\":null,\"n\":10}");
  append_json(c, "bad-1", "Bad", "[1]");
  char *s = NULL;
  int64_t v = -9;
  check(evs_client_state(c, "order-1", 0, 0, &s, &v), "state");
  cr_assert_str_eq(s, "{\"sku\":\"A\",\"paid\":true,\"n\":10}");
  cr_assert_eq(v, 2);
  evs_client_state_free(s);
  check(evs_client_state(c, "order-1", r1.last_position, 0, &s, &v),
        "state as of a position");
  cr_assert_str_eq(s, "{\"sku\":\"A\",\"qty\":1,\"paid\":true}");
  cr_assert_eq(v, 1);
  evs_client_state_free(s);
  check(evs_client_state(c, "order-1", 0, r1.timestamp_ns, &s, &v),
        "state as of a time");
  cr_assert_eq(v, 1);
  evs_client_state_free(s);
  cr_assert_eq(evs_client_state(c, "bad-1", 0, 0, &s, &v), EVS_EINVAL);
  cr_assert(strstr(evs_client_last_error(), "version 0"), "%s",
            evs_client_last_error());
  cr_assert_null(s);
  cr_assert_eq(evs_client_state(c, "none-1", 0, 0, &s, &v), EVS_ENOSTREAM);
  evs_client_close(c);
  c = srv_client(S, "orders-t");
  cr_assert_eq(evs_client_state(c, "bad-1", 0, 0, &s, &v), EVS_EAUTH);
  check(evs_client_state(c, "order-1", 0, 0, &s, NULL), "own stream");
  evs_client_state_free(s);
  evs_client_close(c);
}

typedef struct seen {
  int progress, problems;
  uint64_t last_done;
} seen;

static int on_verify(const char *problem, uint64_t done, uint64_t total,
                     void *payload) {
  seen *s = payload;
  (void)total;
  if (problem)
    s->problems++;
  else
    s->progress++;
  s->last_done = done;
  return 0;
}

static int on_replay(uint64_t done, uint64_t total, void *payload) {
  seen *s = payload;
  (void)total;
  s->progress++;
  s->last_done = done;
  return 0;
}

Test(server_admin, stats_verify_and_replay) {
  evs_client *c = srv_client(S, "admin-t");
  for (int i = 0; i < 5; i++)
    cl_append_n(c, i % 2 ? "order-1" : "cust-1", EVS_EXPECT_ANY, 1000,
                i % 2 ? "Placed" : "Registered");
  evs_stats st;
  check(evs_client_stats(c, &st), "stats");
  cr_assert_eq(st.events, 5000);
  cr_assert_eq(st.streams, 2);
  cr_assert_eq(st.event_types, 2);
  cr_assert_eq(st.categories, 2);
  cr_assert_eq(st.last_position, 5000);
  cr_assert_gt(st.last_timestamp_ns, 0);
  cr_assert_gt(st.data_bytes_raw, 0);
  cr_assert_gt(st.map_size, 0);

  seen v = { 0, 0, 0 };
  evs_verify_report rep;
  check(evs_client_verify(c, &rep, on_verify, &v), "verify");
  cr_assert_eq(rep.events_checked, 5000);
  cr_assert_eq(rep.streams_checked, 2);
  cr_assert_eq(rep.errors, 0);
  cr_assert_eq(v.problems, 0);
  cr_assert_geq(v.progress, 1);
  cr_assert_eq(v.last_done, 5000);

  seen p = { 0, 0, 0 };
  evs_proj_status ps;
  check(evs_client_replay(c, "counts", on_replay, &p, &ps), "replay");
  cr_assert_eq(ps.generation, 0);
  cr_assert_eq(ps.checkpoint, 5000);
  cr_assert_eq(ps.head, 5000);
  cr_assert_eq(ps.events_applied, 5000);
  cr_assert_geq(p.progress, 1);
  cr_assert_eq(p.last_done, 5000);
  /* Again: a blue/green rebuild, one generation up. */
  check(evs_client_replay(c, "counts", NULL, NULL, &ps), "replay again");
  cr_assert_eq(ps.generation, 1);
  cr_assert_eq(ps.events_applied, 5000);
  check(evs_client_replay(c, "stream-state", NULL, NULL, NULL), "replay");
  cr_assert_eq(evs_client_replay(c, "nope", NULL, NULL, &ps), EVS_ENOTFOUND);
  /* The views live in the server's data directory. */
  char views[700];
  snprintf(views, sizeof views, "%s/views/data.mdb", S->data);
  cr_assert_eq(access(views, F_OK), 0, "%s", views);
  /* The client's other requests go on meanwhile (own connection). */
  uint64_t head;
  check(evs_client_ping(c, &head), "ping");
  evs_client_close(c);

  c = srv_client(S, "reader-t");
  check(evs_client_stats(c, &st), "stats with read:*");
  check(evs_client_verify(c, &rep, NULL, NULL), "verify with read:*");
  cr_assert_eq(evs_client_replay(c, "counts", NULL, NULL, &ps), EVS_EAUTH);
  cr_assert(strstr(evs_client_last_error(), "rw:*"), "%s",
            evs_client_last_error());
  evs_client_close(c);
  c = srv_client(S, "orders-t");
  cr_assert_eq(evs_client_stats(c, &st), EVS_EAUTH);
  cr_assert_eq(evs_client_verify(c, &rep, NULL, NULL), EVS_EAUTH);
  evs_client_close(c);
}

static int stop_at_once(const char *problem, uint64_t done, uint64_t total,
                        void *payload) {
  (void)problem;
  (void)done;
  (void)total;
  (void)payload;
  return 7;
}

Test(server_admin, a_verify_stopped_by_the_client) {
  evs_client *c = srv_client(S, "admin-t");
  cl_append_n(c, "order-1", EVS_EXPECT_ANY, 100, NULL);
  evs_verify_report rep;
  cr_assert_eq(evs_client_verify(c, &rep, stop_at_once, NULL), 7);
  /* The server finishes (or cancels) it and serves the next requests. */
  check(evs_client_verify(c, &rep, NULL, NULL), "verify");
  cr_assert_eq(rep.events_checked, 100);
  evs_client_close(c);
}

typedef struct listed {
  int n;
  uint64_t max_count;
  int64_t truncate_before;
  char custom[32];
} listed;

static int on_stream(const char *name, size_t len, const evs_stream_info *info,
                     void *payload) {
  listed *l = payload;
  if (len == 7 && memcmp(name, "order-1", 7) == 0) {
    l->max_count = info->max_count;
    l->truncate_before = info->truncate_before;
    snprintf(l->custom, sizeof l->custom, "%.*s", (int)info->custom_len,
             (const char *)info->custom);
  }
  l->n++;
  return 0;
}

Test(server_admin, listings_carry_metadata) {
  evs_client *c = srv_client(S, "admin-t");
  cl_append_n(c, "order-1", EVS_EXPECT_ANY, 3, NULL);
  cl_append_n(c, "order-2", EVS_EXPECT_ANY, 1, NULL);
  evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
  md.max_count = 2;
  md.truncate_before = 1;
  md.custom = "{\"k\":1}";
  md.custom_len = 7;
  check(evs_client_set_metadata(c, "order-1", &md), "set_metadata");
  listed l = { 0, 0, 0, "" };
  check(evs_client_list_streams(c, NULL, NULL, 1, on_stream, &l), "list");
  cr_assert_eq(l.n, 2);
  cr_assert_eq(l.max_count, 2);
  cr_assert_eq(l.truncate_before, 1);
  cr_assert_str_eq(l.custom, "{\"k\":1}");
  evs_client_limits lim;
  evs_client_get_limits(c, &lim);
  cr_assert_eq(lim.max_frame, 32u << 20);
  cr_assert_eq(lim.max_events, 10000);
  cr_assert_eq(lim.max_event_size, 16u << 20);
  evs_client_close(c);
}
