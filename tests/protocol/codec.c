/*
 * The wire protocol codec: msgpack reader/writer bounds, request and reply
 * round trips, and the decoder's answers to malformed input.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/append.h"
#include "protocol/proto.h"

static evs_slice S(const char *s) {
  evs_slice r = { s, strlen(s) };
  return r;
}

static int slice_is(evs_slice s, const char *lit) {
  return s.len == strlen(lit) && memcmp(s.data, lit, s.len) == 0;
}

/* Encodes `q`, checks the frame header and decodes the body into *out. */
static int roundtrip(const evs__proto_request *q, evs__proto_request *out,
                     evs__buf *b) {
  b->len = 0;
  cr_assert_eq(evs__proto_encode_request(b, q), 0);
  uint32_t body;
  cr_assert(evs__proto_frame_header(b->data, b->len, &body));
  cr_assert_eq((size_t)body + 4, b->len);
  char err[128];
  int rc =
      evs__proto_decode_request(out, b->data + 4, body, NULL, err, sizeof err);
  if (rc)
    cr_log_info("decode: %s", err);
  return rc;
}

static int decode_bytes(const void *p, size_t n, evs__proto_request *req,
                        char *err, size_t errlen) {
  return evs__proto_decode_request(req, p, n, NULL, err, errlen);
}

/* ---- msgpack ------------------------------------------------------------ */

Test(protocol_msgpack, integers_round_trip_every_width) {
  static const int64_t vals[] = { 0,
                                  1,
                                  127,
                                  128,
                                  255,
                                  256,
                                  65535,
                                  65536,
                                  -1,
                                  -32,
                                  -33,
                                  -128,
                                  -129,
                                  -32768,
                                  -32769,
                                  INT32_MIN,
                                  (int64_t)INT32_MIN - 1,
                                  INT64_MIN,
                                  INT64_MAX,
                                  4294967296LL };
  evs__buf b = EVS__BUF_INIT;
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
    evs__mp_w_int(&b, vals[i]);
  evs__mp_w_uint(&b, UINT64_MAX);
  evs__mp_reader r;
  evs__mp_reader_init(&r, b.data, b.len);
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
    int64_t v;
    cr_assert_eq(evs__mp_read_int(&r, &v), 0, "value %zu", i);
    cr_assert_eq(v, vals[i]);
  }
  int64_t v;
  cr_assert_eq(evs__mp_read_int(&r, &v), EVS_EPROTO, "UINT64_MAX as int");
  uint64_t u;
  cr_assert_eq(evs__mp_read_uint(&r, &u), 0);
  cr_assert_eq(u, UINT64_MAX);
  cr_assert_eq(evs__mp_left(&r), 0);
  evs__buf_free(&b);
}

Test(protocol_msgpack, negative_is_not_uint) {
  uint8_t neg[] = { 0xff };
  evs__mp_reader r;
  evs__mp_reader_init(&r, neg, 1);
  uint64_t u;
  cr_assert_eq(evs__mp_read_uint(&r, &u), EVS_EPROTO);
  cr_assert_eq(evs__mp_left(&r), 1, "a failed read consumes nothing");
}

Test(protocol_msgpack, declared_lengths_are_checked_against_bytes_left) {
  /* array32 of 4 billion elements, in 5 bytes */
  uint8_t arr[] = { 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01 };
  evs__mp_reader r;
  uint32_t n;
  evs__mp_reader_init(&r, arr, sizeof arr);
  cr_assert_eq(evs__mp_read_array(&r, &n), EVS_EPROTO);
  /* map16 of 2 entries needs at least 4 bytes after the header */
  uint8_t map[] = { 0xde, 0x00, 0x02, 0xa1, 'a', 0x01 };
  evs__mp_reader_init(&r, map, sizeof map);
  cr_assert_eq(evs__mp_read_map(&r, &n), EVS_EPROTO);
  /* str32 claiming 1 GiB */
  uint8_t str[] = { 0xdb, 0x40, 0x00, 0x00, 0x00, 'x' };
  evs_slice s;
  evs__mp_reader_init(&r, str, sizeof str);
  cr_assert_eq(evs__mp_read_str(&r, &s), EVS_EPROTO);
  /* bin8 claiming 3 bytes with 2 */
  uint8_t bin[] = { 0xc4, 0x03, 1, 2 };
  evs__mp_reader_init(&r, bin, sizeof bin);
  cr_assert_eq(evs__mp_read_bin(&r, &s), EVS_EPROTO);
  /* truncated headers */
  uint8_t t1[] = { 0xcd, 0x01 };
  int64_t v;
  evs__mp_reader_init(&r, t1, sizeof t1);
  cr_assert_eq(evs__mp_read_int(&r, &v), EVS_EPROTO);
  uint8_t t2[] = { 0xdc, 0x00 };
  evs__mp_reader_init(&r, t2, sizeof t2);
  cr_assert_eq(evs__mp_read_array(&r, &n), EVS_EPROTO);
}

Test(protocol_msgpack, skip_handles_deep_nesting_without_recursion) {
  size_t depth = 200000;
  uint8_t *p = malloc(depth + 1);
  cr_assert_not_null(p);
  memset(p, 0x91, depth); /* fixarray(1) nested */
  p[depth] = 0xc0;
  evs__mp_reader r;
  evs__mp_reader_init(&r, p, depth + 1);
  cr_assert_eq(evs__mp_skip(&r), 0);
  cr_assert_eq(evs__mp_left(&r), 0);
  /* the same, truncated: an error, and the reader does not move */
  evs__mp_reader_init(&r, p, depth);
  cr_assert_eq(evs__mp_skip(&r), EVS_EPROTO);
  cr_assert_eq(evs__mp_left(&r), depth);
  free(p);
}

Test(protocol_msgpack, skip_every_type) {
  evs__buf b = EVS__BUF_INIT;
  evs__mp_w_map(&b, 3);
  evs__mp_w_cstr(&b, "a");
  evs__mp_w_array(&b, 3);
  evs__mp_w_nil(&b);
  evs__mp_w_bool(&b, 1);
  evs__mp_w_int(&b, -100000);
  evs__mp_w_cstr(&b, "b");
  uint8_t ext[] = { 0xd6, 0x01, 1, 2, 3, 4 };
  evs__buf_put(&b, ext, sizeof ext);
  evs__mp_w_cstr(&b, "c");
  uint8_t dbl[] = { 0xcb, 0, 0, 0, 0, 0, 0, 0, 0 };
  evs__buf_put(&b, dbl, sizeof dbl);
  evs__mp_reader r;
  evs__mp_reader_init(&r, b.data, b.len);
  cr_assert_eq(evs__mp_skip(&r), 0);
  cr_assert_eq(evs__mp_left(&r), 0);
  /* 0xc1 is never valid */
  uint8_t bad[] = { 0x91, 0xc1 };
  evs__mp_reader_init(&r, bad, sizeof bad);
  cr_assert_eq(evs__mp_skip(&r), EVS_EPROTO);
  evs__buf_free(&b);
}

Test(protocol_msgpack, open_maps_patch_their_count) {
  evs__buf b = EVS__BUF_INIT;
  evs__mp_open m = evs__mp_w_map_open(&b);
  evs__mp_w_key(&b, &m, "x");
  evs__mp_w_uint(&b, 1);
  evs__mp_w_key(&b, &m, "y");
  evs__mp_w_uint(&b, 2);
  evs__mp_w_map_close(&b, &m);
  evs__mp_reader r;
  evs__mp_reader_init(&r, b.data, b.len);
  uint32_t n;
  cr_assert_eq(evs__mp_read_map(&r, &n), 0);
  cr_assert_eq(n, 2);
  evs__buf_free(&b);
}

/* ---- requests ----------------------------------------------------------- */

Test(protocol_request, hello_and_ping_round_trip) {
  evs__buf b = EVS__BUF_INIT;
  evs__proto_request q, d;
  evs__proto_request_init(&q);
  q.op = EVS__P_HELLO;
  q.rid = 7;
  q.protocol = 1;
  q.token = S("secret");
  q.has_token = 1;
  q.client = S("test");
  cr_assert_eq(roundtrip(&q, &d, &b), 0);
  cr_assert_eq(d.op, EVS__P_HELLO);
  cr_assert_eq(d.rid, 7);
  cr_assert(d.has_rid);
  cr_assert_eq(d.protocol, 1);
  cr_assert(d.has_token);
  cr_assert(slice_is(d.token, "secret"));
  cr_assert(slice_is(d.client, "test"));
  evs__proto_request_free(&d);

  evs__proto_request_init(&q);
  q.op = EVS__P_PING;
  q.rid = UINT64_MAX;
  cr_assert_eq(roundtrip(&q, &d, &b), 0);
  cr_assert_eq(d.op, EVS__P_PING);
  cr_assert_eq(d.rid, UINT64_MAX);
  evs__proto_request_free(&d);
  evs__buf_free(&b);
}

Test(protocol_request, append_single_round_trip) {
  evs__proto_event ev[3];
  memset(ev, 0, sizeof ev);
  ev[0].type = S("OrderPlaced");
  ev[0].data = S("{\"qty\":2}");
  ev[0].metadata = S("{\"user\":\"x\"}");
  ev[0].has_id = 1;
  for (int i = 0; i < 16; i++)
    ev[0].id[i] = (uint8_t)(i + 1);
  ev[1].type = S("Empty");
  ev[2].type = S("Big");
  char *big = malloc(100000);
  memset(big, 'z', 100000);
  ev[2].data.data = big;
  ev[2].data.len = 100000;
  evs__proto_part part = { S("order-1"), 4, ev, 3 };
  evs__proto_request q, d;
  evs__proto_request_init(&q);
  q.op = EVS__P_APPEND;
  q.rid = 42;
  q.parts = &part;
  q.nparts = 1;
  evs__buf b = EVS__BUF_INIT;
  cr_assert_eq(roundtrip(&q, &d, &b), 0);
  cr_assert_eq(d.op, EVS__P_APPEND);
  cr_assert_eq(d.multi, 0);
  cr_assert_eq(d.nparts, 1);
  cr_assert_eq(d.nevents, 3);
  cr_assert(slice_is(d.parts[0].stream, "order-1"));
  cr_assert_eq(d.parts[0].expected, 4);
  cr_assert(slice_is(d.parts[0].events[0].type, "OrderPlaced"));
  cr_assert(slice_is(d.parts[0].events[0].data, "{\"qty\":2}"));
  cr_assert(slice_is(d.parts[0].events[0].metadata, "{\"user\":\"x\"}"));
  cr_assert(d.parts[0].events[0].has_id);
  cr_assert_eq(memcmp(d.parts[0].events[0].id, ev[0].id, 16), 0);
  cr_assert_eq(d.parts[0].events[1].has_id, 0);
  cr_assert_eq(d.parts[0].events[1].data.len, 0);
  cr_assert_eq(d.parts[0].events[2].data.len, 100000);
  cr_assert_eq(memcmp(d.parts[0].events[2].data.data, big, 100000), 0);
  evs__proto_request_free(&d);
  evs__buf_free(&b);
  free(big);
}

Test(protocol_request, append_multi_round_trip) {
  evs__proto_event e1[2], e2[1];
  memset(e1, 0, sizeof e1);
  memset(e2, 0, sizeof e2);
  e1[0].type = S("A");
  e1[1].type = S("B");
  e2[0].type = S("C");
  evs__proto_part parts[2] = { { S("a-1"), EVS_EXPECT_NO_STREAM, e1, 2 },
                               { S("b-1"), EVS_EXPECT_ANY, e2, 1 } };
  evs__proto_request q, d;
  evs__proto_request_init(&q);
  q.op = EVS__P_APPEND;
  q.multi = 1;
  q.parts = parts;
  q.nparts = 2;
  evs__buf b = EVS__BUF_INIT;
  cr_assert_eq(roundtrip(&q, &d, &b), 0);
  cr_assert(d.multi);
  cr_assert_eq(d.nparts, 2);
  cr_assert_eq(d.nevents, 3);
  cr_assert(slice_is(d.parts[0].stream, "a-1"));
  cr_assert_eq(d.parts[0].expected, EVS_EXPECT_NO_STREAM);
  cr_assert_eq(d.parts[0].nevents, 2);
  cr_assert(slice_is(d.parts[0].events[1].type, "B"));
  cr_assert(slice_is(d.parts[1].stream, "b-1"));
  cr_assert_eq(d.parts[1].nevents, 1);
  cr_assert(slice_is(d.parts[1].events[0].type, "C"));
  evs__proto_request_free(&d);
  evs__buf_free(&b);
}

Test(protocol_request, reads_and_subscribe_round_trip) {
  evs__buf b = EVS__BUF_INIT;
  evs__proto_request q, d;
  evs__proto_request_init(&q);
  q.op = EVS__P_READ_STREAM;
  q.stream = S("s-1");
  q.backward = 1;
  q.from = 10;
  q.has_from = 1;
  q.limit = 5;
  q.as_of_position = 99;
  q.as_of_ns = 12345;
  cr_assert_eq(roundtrip(&q, &d, &b), 0);
  cr_assert_eq(d.op, EVS__P_READ_STREAM);
  cr_assert(slice_is(d.stream, "s-1"));
  cr_assert(d.backward);
  cr_assert_eq(d.from, 10);
  cr_assert_eq(d.limit, 5);
  cr_assert_eq(d.as_of_position, 99);
  cr_assert_eq(d.as_of_ns, 12345);

  evs__proto_request_init(&q);
  q.op = EVS__P_READ_ALL;
  q.from = 3;
  q.has_from = 1;
  q.stream_prefix = S("ord");
  q.has_stream_prefix = 1;
  q.category = S("order");
  q.has_category = 1;
  q.event_type = S("Placed");
  q.has_event_type = 1;
  q.since_ns = 1;
  q.until_ns = 2;
  q.until_position = 77;
  q.group_size = 4;
  q.group_member = 3;
  cr_assert_eq(roundtrip(&q, &d, &b), 0);
  cr_assert_eq(d.op, EVS__P_READ_ALL);
  cr_assert_eq(d.backward, 0);
  cr_assert(slice_is(d.stream_prefix, "ord"));
  cr_assert(slice_is(d.category, "order"));
  cr_assert(slice_is(d.event_type, "Placed"));
  cr_assert_eq(d.since_ns, 1);
  cr_assert_eq(d.until_ns, 2);
  cr_assert_eq(d.until_position, 77);
  cr_assert_eq(d.group_size, 4);
  cr_assert_eq(d.group_member, 3);

  evs__proto_request_init(&q);
  q.op = EVS__P_SUBSCRIBE;
  q.stream = S("s-2");
  q.has_stream = 1;
  q.from = -1;
  q.has_from = 1;
  q.batch = 10;
  q.from_end = 1;
  cr_assert_eq(roundtrip(&q, &d, &b), 0);
  cr_assert_eq(d.op, EVS__P_SUBSCRIBE);
  cr_assert(d.has_stream);
  cr_assert_eq(d.from, -1);
  cr_assert_eq(d.batch, 10);
  cr_assert(d.from_end);

  evs__proto_request_init(&q);
  q.op = EVS__P_UNSUBSCRIBE;
  q.sub = 5;
  cr_assert_eq(roundtrip(&q, &d, &b), 0);
  cr_assert_eq(d.sub, 5);
  evs__buf_free(&b);
}

Test(protocol_request, admin_ops_round_trip) {
  evs__buf b = EVS__BUF_INIT;
  evs__proto_request q, d;
  evs__proto_request_init(&q);
  q.op = EVS__P_SET_METADATA;
  q.stream = S("m-1");
  q.max_count = 3;
  q.max_age_sec = 60;
  q.truncate_before = 2;
  q.custom = S("{\"k\":1}");
  q.has_custom = 1;
  cr_assert_eq(roundtrip(&q, &d, &b), 0);
  cr_assert_eq(d.max_count, 3);
  cr_assert_eq(d.max_age_sec, 60);
  cr_assert_eq(d.truncate_before, 2);
  cr_assert(d.has_custom);
  cr_assert(slice_is(d.custom, "{\"k\":1}"));

  evs__proto_request_init(&q);
  q.op = EVS__P_DELETE;
  q.stream = S("m-1");
  q.expected = 7;
  q.hard = 1;
  cr_assert_eq(roundtrip(&q, &d, &b), 0);
  cr_assert_eq(d.expected, 7);
  cr_assert(d.hard);

  evs__proto_request_init(&q);
  q.op = EVS__P_LIST_STREAMS;
  q.prefix = S("m-");
  q.has_prefix = 1;
  q.after = S("m-0");
  q.has_after = 1;
  q.limit = 10;
  q.include_deleted = 1;
  cr_assert_eq(roundtrip(&q, &d, &b), 0);
  cr_assert(slice_is(d.prefix, "m-"));
  cr_assert(slice_is(d.after, "m-0"));
  cr_assert_eq(d.limit, 10);
  cr_assert(d.include_deleted);

  evs__proto_request_init(&q);
  q.op = EVS__P_STREAM_INFO;
  q.stream = S("m-1");
  cr_assert_eq(roundtrip(&q, &d, &b), 0);
  cr_assert_eq(d.op, EVS__P_STREAM_INFO);
  evs__buf_free(&b);
}

/* Builds {"rid": rid, "op": op} plus extra raw entries. */
static void small_request(evs__buf *b, uint64_t rid, const char *op,
                          uint32_t extra) {
  b->len = 0;
  evs__mp_w_map(b, 2 + extra);
  evs__mp_w_cstr(b, "rid");
  evs__mp_w_uint(b, rid);
  evs__mp_w_cstr(b, "op");
  evs__mp_w_cstr(b, op);
}

Test(protocol_request, unknown_op_is_an_error_with_the_rid) {
  evs__buf b = EVS__BUF_INIT;
  small_request(&b, 9, "explode", 0);
  evs__proto_request d;
  char err[128];
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  cr_assert(d.has_rid);
  cr_assert_eq(d.rid, 9);
  cr_assert(strstr(err, "unknown op"), "%s", err);
  evs__proto_request_free(&d);
  evs__buf_free(&b);
}

Test(protocol_request, wrong_types_and_missing_keys) {
  evs__buf b = EVS__BUF_INIT;
  evs__proto_request d;
  char err[128];
  /* stream as an integer */
  small_request(&b, 1, "stream_info", 1);
  evs__mp_w_cstr(&b, "stream");
  evs__mp_w_uint(&b, 5);
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  cr_assert(strstr(err, "stream"), "%s", err);
  /* missing stream */
  small_request(&b, 1, "read_stream", 0);
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  /* hello without protocol */
  small_request(&b, 1, "hello", 0);
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  /* no op at all */
  b.len = 0;
  evs__mp_w_map(&b, 0);
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  /* not a map */
  b.len = 0;
  evs__mp_w_array(&b, 0);
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  /* a non-string key */
  b.len = 0;
  evs__mp_w_map(&b, 1);
  evs__mp_w_uint(&b, 1);
  evs__mp_w_uint(&b, 1);
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  /* trailing bytes after the map */
  small_request(&b, 1, "ping", 0);
  evs__mp_w_nil(&b);
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  /* a bad direction */
  small_request(&b, 1, "read_all", 1);
  evs__mp_w_cstr(&b, "direction");
  evs__mp_w_cstr(&b, "sideways");
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  /* group member out of range */
  small_request(&b, 1, "subscribe", 2);
  evs__mp_w_cstr(&b, "group_size");
  evs__mp_w_uint(&b, 2);
  evs__mp_w_cstr(&b, "group_member");
  evs__mp_w_uint(&b, 2);
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  /* an id that is not 16 bytes */
  small_request(&b, 1, "append", 2);
  evs__mp_w_cstr(&b, "stream");
  evs__mp_w_cstr(&b, "x");
  evs__mp_w_cstr(&b, "events");
  evs__mp_w_array(&b, 1);
  evs__mp_w_map(&b, 2);
  evs__mp_w_cstr(&b, "type");
  evs__mp_w_cstr(&b, "T");
  evs__mp_w_cstr(&b, "id");
  evs__mp_w_bin(&b, "short", 5);
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  evs__proto_request_free(&d);
  /* an event without a type */
  small_request(&b, 1, "append", 2);
  evs__mp_w_cstr(&b, "stream");
  evs__mp_w_cstr(&b, "x");
  evs__mp_w_cstr(&b, "events");
  evs__mp_w_array(&b, 1);
  evs__mp_w_map(&b, 0);
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  evs__proto_request_free(&d);
  /* both forms of append */
  small_request(&b, 1, "append", 0);
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  evs__buf_free(&b);
}

Test(protocol_request, nil_means_absent_and_unknown_keys_are_skipped) {
  evs__buf b = EVS__BUF_INIT;
  small_request(&b, 3, "read_all", 3);
  evs__mp_w_cstr(&b, "category");
  evs__mp_w_nil(&b);
  evs__mp_w_cstr(&b, "future_key");
  evs__mp_w_map(&b, 1);
  evs__mp_w_cstr(&b, "nested");
  evs__mp_w_array(&b, 2);
  evs__mp_w_uint(&b, 1);
  evs__mp_w_cstr(&b, "x");
  evs__mp_w_cstr(&b, "data");
  evs__mp_w_cstr(&b, "str is fine for bytes");
  evs__proto_request d;
  char err[128];
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), 0, "%s", err);
  cr_assert_eq(d.has_category, 0);
  evs__buf_free(&b);
}

Test(protocol_request, event_count_limits_before_allocating) {
  evs__buf b = EVS__BUF_INIT;
  evs__proto_request d;
  char err[128];
  /* 4 billion events declared, nothing sent */
  small_request(&b, 1, "append", 2);
  evs__mp_w_cstr(&b, "stream");
  evs__mp_w_cstr(&b, "x");
  evs__mp_w_cstr(&b, "events");
  uint8_t huge[] = { 0xdd, 0xff, 0xff, 0xff, 0xff };
  evs__buf_put(&b, huge, sizeof huge);
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  evs__proto_request_free(&d);

  /* over the limit: ETOOLARGE, decided before decoding any event */
  evs__proto_limits lim = { 5, 2 };
  small_request(&b, 1, "append", 2);
  evs__mp_w_cstr(&b, "stream");
  evs__mp_w_cstr(&b, "x");
  evs__mp_w_cstr(&b, "events");
  evs__mp_w_array(&b, 6);
  for (int i = 0; i < 6; i++) {
    evs__mp_w_map(&b, 1);
    evs__mp_w_cstr(&b, "type");
    evs__mp_w_cstr(&b, "T");
  }
  cr_assert_eq(
      evs__proto_decode_request(&d, b.data, b.len, &lim, err, sizeof err),
      EVS_ETOOLARGE);
  cr_assert(d.has_rid);
  evs__proto_request_free(&d);

  /* parts over the limit */
  small_request(&b, 1, "append", 1);
  evs__mp_w_cstr(&b, "parts");
  evs__mp_w_array(&b, 3);
  for (int p = 0; p < 3; p++) {
    evs__mp_w_map(&b, 2);
    evs__mp_w_cstr(&b, "stream");
    evs__mp_w_cstr(&b, "s");
    evs__mp_w_cstr(&b, "events");
    evs__mp_w_array(&b, 1);
    evs__mp_w_map(&b, 1);
    evs__mp_w_cstr(&b, "type");
    evs__mp_w_cstr(&b, "T");
  }
  cr_assert_eq(
      evs__proto_decode_request(&d, b.data, b.len, &lim, err, sizeof err),
      EVS_ETOOLARGE);
  evs__proto_request_free(&d);
  evs__buf_free(&b);
}

Test(protocol_request, every_truncation_of_a_valid_request_fails_cleanly) {
  evs__proto_event ev[2];
  memset(ev, 0, sizeof ev);
  ev[0].type = S("T1");
  ev[0].data = S("payload");
  ev[1].type = S("T2");
  ev[1].has_id = 1;
  evs__proto_part part = { S("stream-1"), 0, ev, 2 };
  evs__proto_request q, d;
  evs__proto_request_init(&q);
  q.op = EVS__P_APPEND;
  q.rid = 1000;
  q.parts = &part;
  q.nparts = 1;
  evs__buf b = EVS__BUF_INIT;
  cr_assert_eq(evs__proto_encode_request(&b, &q), 0);
  const uint8_t *body = b.data + 4;
  size_t n = b.len - 4;
  char err[128];
  for (size_t cut = 0; cut < n; cut++) {
    uint8_t *copy = malloc(cut ? cut : 1);
    memcpy(copy, body, cut);
    cr_assert_neq(decode_bytes(copy, cut, &d, err, sizeof err), 0, "cut %zu",
                  cut);
    evs__proto_request_free(&d);
    uint64_t rid;
    /* "rid" is the first key: found in any prefix that holds it. */
    if (cut >= 5 + 4 + 3) /* map32 header, "rid", uint16 1000 */
      cr_assert(evs__proto_peek_rid(copy, cut, &rid) && rid == 1000, "cut %zu",
                cut);
    free(copy);
  }
  cr_assert_eq(decode_bytes(body, n, &d, err, sizeof err), 0);
  evs__proto_request_free(&d);
  evs__buf_free(&b);
}

/* ---- server frames ------------------------------------------------------ */

static void decode_frame(evs__buf *b, evs__proto_reply *rep) {
  uint32_t body;
  cr_assert(evs__proto_frame_header(b->data, b->len, &body));
  cr_assert_eq((size_t)body + 4, b->len);
  char err[128];
  int rc = evs__proto_decode_reply(rep, b->data + 4, body, err, sizeof err);
  cr_assert_eq(rc, 0, "%s", err);
}

Test(protocol_reply, error_reply_round_trip) {
  evs__buf b = EVS__BUF_INIT;
  evs__proto_frame f;
  evs__proto_frame_open(&b, &f, EVS__K_REPLY, 12, EVS_EWRONGVERSION,
                        "stream 'x': expected version 4, actual 7");
  evs__mp_w_key(&b, &f.map, "actual_version");
  evs__mp_w_int(&b, 7);
  cr_assert_eq(evs__proto_frame_close(&b, &f), 0);
  evs__proto_reply rep;
  decode_frame(&b, &rep);
  cr_assert_eq(rep.kind, EVS__K_REPLY);
  cr_assert_eq(rep.rid, 12);
  cr_assert_eq(rep.code, EVS_EWRONGVERSION);
  cr_assert(slice_is(rep.error, "EVS_EWRONGVERSION"));
  cr_assert(slice_is(rep.message, "stream 'x': expected version 4, actual 7"));
  cr_assert(rep.has_actual_version);
  cr_assert_eq(rep.actual_version, 7);
  evs__buf_free(&b);
}

Test(protocol_reply, errno_codes_travel_by_name) {
  evs__buf b = EVS__BUF_INIT;
  evs__proto_frame f;
  evs__proto_frame_open(&b, &f, EVS__K_REPLY, 1, -28 /* ENOSPC here */, NULL);
  cr_assert_eq(evs__proto_frame_close(&b, &f), 0);
  evs__proto_reply rep;
  decode_frame(&b, &rep);
  cr_assert(slice_is(rep.error, "ENOSPC"));
  cr_assert_eq(rep.code, evs__proto_err_from_name(S("ENOSPC")));
  cr_assert_eq(evs__proto_err_from_name(S("EVS_EAUTH")), EVS_EAUTH);
  cr_assert_eq(evs__proto_err_from_name(S("nope")), 0);
  cr_assert_str_eq(evs__proto_err_name(EVS_ECONN), "EVS_ECONN");
  evs__buf_free(&b);
}

Test(protocol_reply, events_push_round_trip) {
  evs__buf b = EVS__BUF_INIT;
  evs__proto_frame f;
  evs__proto_frame_open(&b, &f, EVS__K_EVENTS, 5, 0, NULL);
  evs__mp_w_key(&b, &f.map, "events");
  evs__mp_open a = evs__mp_w_array_open(&b);
  for (int i = 0; i < 3; i++) {
    evs__proto_event ev;
    memset(&ev, 0, sizeof ev);
    ev.stream = S("s-1");
    ev.type = S("T");
    ev.id[0] = (uint8_t)i;
    ev.data = S("d");
    ev.version = i;
    ev.position = 100 + (uint64_t)i;
    ev.timestamp_ns = 5000;
    evs__proto_w_event(&b, &ev);
    a.n++;
  }
  evs__mp_w_array_close(&b, &a);
  evs__mp_w_key(&b, &f.map, "checkpoint");
  evs__mp_w_uint(&b, 102);
  cr_assert_eq(evs__proto_frame_close(&b, &f), 0);
  evs__proto_reply rep;
  decode_frame(&b, &rep);
  cr_assert_eq(rep.kind, EVS__K_EVENTS);
  cr_assert_eq(rep.nevents, 3);
  cr_assert(rep.has_checkpoint);
  cr_assert_eq(rep.checkpoint, 102);
  evs__proto_cursor c;
  evs__proto_cursor_init(&c, rep.events_raw, rep.nevents);
  evs__proto_event ev;
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(evs__proto_next_event(&c, &ev), 1);
    cr_assert_eq(ev.version, i);
    cr_assert_eq(ev.position, 100 + (uint64_t)i);
    cr_assert_eq(ev.id[0], i);
    cr_assert(slice_is(ev.stream, "s-1"));
    cr_assert(slice_is(ev.data, "d"));
  }
  cr_assert_eq(evs__proto_next_event(&c, &ev), 0);
  evs__buf_free(&b);
}

Test(protocol_reply, malformed_events_are_rejected_up_front) {
  evs__buf b = EVS__BUF_INIT;
  evs__proto_frame f;
  evs__proto_frame_open(&b, &f, EVS__K_REPLY, 5, 0, NULL);
  evs__mp_w_key(&b, &f.map, "events");
  evs__mp_w_array(&b, 1);
  evs__mp_w_map(&b, 1);
  evs__mp_w_cstr(&b, "type");
  evs__mp_w_cstr(&b, "T"); /* no stream, id or position */
  cr_assert_eq(evs__proto_frame_close(&b, &f), 0);
  evs__proto_reply rep;
  char err[128];
  cr_assert_eq(
      evs__proto_decode_reply(&rep, b.data + 4, b.len - 4, err, sizeof err),
      EVS_EPROTO);
  evs__buf_free(&b);
}

Test(protocol_reply, info_list_and_results) {
  evs__buf b = EVS__BUF_INIT;
  evs__proto_frame f;
  evs__proto_frame_open(&b, &f, EVS__K_REPLY, 1, 0, NULL);
  evs__mp_w_key(&b, &f.map, "exists");
  evs__mp_w_bool(&b, 1);
  evs__mp_w_key(&b, &f.map, "version");
  evs__mp_w_int(&b, 9);
  evs__mp_w_key(&b, &f.map, "custom");
  evs__mp_w_bin(&b, "c", 1);
  evs__mp_w_key(&b, &f.map, "streams");
  evs__mp_w_array(&b, 1);
  evs__mp_w_map(&b, 2);
  evs__mp_w_cstr(&b, "name");
  evs__mp_w_cstr(&b, "a-1");
  evs__mp_w_cstr(&b, "tombstoned");
  evs__mp_w_bool(&b, 1);
  evs__mp_w_key(&b, &f.map, "results");
  evs__mp_w_array(&b, 1);
  evs__mp_w_map(&b, 2);
  evs__mp_w_cstr(&b, "first_version");
  evs__mp_w_int(&b, 3);
  evs__mp_w_cstr(&b, "idempotent");
  evs__mp_w_bool(&b, 1);
  cr_assert_eq(evs__proto_frame_close(&b, &f), 0);
  evs__proto_reply rep;
  decode_frame(&b, &rep);
  cr_assert(rep.exists);
  cr_assert_eq(rep.version, 9);
  cr_assert(rep.has_custom);
  evs__proto_cursor c;
  evs__proto_stream_entry st;
  evs__proto_cursor_init(&c, rep.streams_raw, rep.nstreams);
  cr_assert_eq(evs__proto_next_stream(&c, &st), 1);
  cr_assert(slice_is(st.name, "a-1"));
  cr_assert(st.tombstoned);
  evs__proto_result res;
  evs__proto_cursor_init(&c, rep.results_raw, rep.nresults);
  cr_assert_eq(evs__proto_next_result(&c, &res), 1);
  cr_assert_eq(res.first_version, 3);
  cr_assert(res.idempotent);
  cr_assert_eq(evs__proto_next_result(&c, &res), 0);
  evs__buf_free(&b);
}

Test(protocol_reply, positive_codes_and_missing_kind_are_rejected) {
  evs__buf b = EVS__BUF_INIT;
  evs__mp_w_map(&b, 2);
  evs__mp_w_cstr(&b, "kind");
  evs__mp_w_cstr(&b, "reply");
  evs__mp_w_cstr(&b, "code");
  evs__mp_w_int(&b, 5);
  evs__proto_reply rep;
  char err[64];
  cr_assert_eq(evs__proto_decode_reply(&rep, b.data, b.len, err, sizeof err),
               EVS_EPROTO);
  b.len = 0;
  evs__mp_w_map(&b, 1);
  evs__mp_w_cstr(&b, "code");
  evs__mp_w_int(&b, 0);
  cr_assert_eq(evs__proto_decode_reply(&rep, b.data, b.len, err, sizeof err),
               EVS_EPROTO);
  evs__buf_free(&b);
}

Test(protocol_frame, header_needs_four_bytes) {
  uint8_t h[4] = { 0x00, 0x01, 0x02, 0x03 };
  uint32_t n = 0;
  cr_assert_eq(evs__proto_frame_header(h, 3, &n), 0);
  cr_assert_eq(evs__proto_frame_header(h, 4, &n), 1);
  cr_assert_eq(n, 0x010203);
}

Test(protocol_frame, has_nul) {
  evs_slice a = { "a\0b", 3 };
  cr_assert(evs__proto_has_nul(a));
  cr_assert_not(evs__proto_has_nul(S("abc")));
}

/* ---- operations added later to protocol 1 ------------------------------- */

Test(protocol_request, later_ops_round_trip) {
  evs__buf b = EVS__BUF_INIT;
  evs__proto_request q, d;

  evs__proto_event ev[1];
  memset(ev, 0, sizeof ev);
  ev[0].type = S("Imported");
  ev[0].data = S("{}");
  ev[0].has_id = 1;
  ev[0].id[15] = 7;
  evs__proto_part part = { S("imp-1"), -1, ev, 1 };
  evs__proto_request_init(&q);
  q.op = EVS__P_APPEND_AT;
  q.multi = 1;
  q.parts = &part;
  q.nparts = 1;
  q.timestamp_ns = 1767225600000000001;
  q.has_timestamp = 1;
  cr_assert_eq(roundtrip(&q, &d, &b), 0);
  cr_assert_eq(d.op, EVS__P_APPEND_AT);
  cr_assert(d.has_timestamp);
  cr_assert_eq(d.timestamp_ns, 1767225600000000001);
  cr_assert_eq(d.nparts, 1);
  cr_assert(slice_is(d.parts[0].stream, "imp-1"));
  cr_assert_eq(d.parts[0].expected, -1);
  cr_assert_eq(d.parts[0].events[0].id[15], 7);
  evs__proto_request_free(&d);

  evs__proto_request_init(&q);
  q.op = EVS__P_READ_EVENT;
  q.position = 99;
  q.has_position = 1;
  cr_assert_eq(roundtrip(&q, &d, &b), 0);
  cr_assert(d.has_position && !d.has_id);
  cr_assert_eq(d.position, 99);

  evs__proto_request_init(&q);
  q.op = EVS__P_READ_EVENT;
  memset(q.id, 0xab, 16);
  q.has_id = 1;
  cr_assert_eq(roundtrip(&q, &d, &b), 0);
  cr_assert(d.has_id && !d.has_position);
  cr_assert_eq(d.id[0], 0xab);
  cr_assert_eq(d.id[15], 0xab);

  evs__proto_request_init(&q);
  q.op = EVS__P_STATE;
  q.stream = S("order-1");
  q.has_stream = 1;
  q.as_of_ns = 5;
  q.as_of_position = 6;
  cr_assert_eq(roundtrip(&q, &d, &b), 0);
  cr_assert(slice_is(d.stream, "order-1"));
  cr_assert_eq(d.as_of_ns, 5);
  cr_assert_eq(d.as_of_position, 6);

  evs__proto_request_init(&q);
  q.op = EVS__P_REPLAY;
  q.projection = S("counts");
  q.has_projection = 1;
  cr_assert_eq(roundtrip(&q, &d, &b), 0);
  cr_assert(slice_is(d.projection, "counts"));

  static const evs__proto_op bare[] = { EVS__P_HEAD, EVS__P_STATS,
                                        EVS__P_VERIFY };
  for (size_t i = 0; i < 3; i++) {
    evs__proto_request_init(&q);
    q.op = bare[i];
    q.rid = 3;
    cr_assert_eq(roundtrip(&q, &d, &b), 0);
    cr_assert_eq(d.op, bare[i]);
    cr_assert_str_eq(evs__proto_op_name(d.op), i == 0   ? "head"
                                               : i == 1 ? "stats"
                                                        : "verify");
  }
  evs__buf_free(&b);
}

Test(protocol_request, later_ops_check_their_keys) {
  evs__buf b = EVS__BUF_INIT;
  evs__proto_request d;
  char err[128];
  /* append_at without a timestamp */
  small_request(&b, 1, "append_at", 2);
  evs__mp_w_cstr(&b, "stream");
  evs__mp_w_cstr(&b, "s-1");
  evs__mp_w_cstr(&b, "events");
  evs__mp_w_array(&b, 1);
  evs__mp_w_map(&b, 1);
  evs__mp_w_cstr(&b, "type");
  evs__mp_w_cstr(&b, "T");
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  cr_assert(strstr(err, "timestamp"), "%s", err);
  evs__proto_request_free(&d);
  /* read_event with neither, and with both, position and id */
  small_request(&b, 2, "read_event", 0);
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  small_request(&b, 2, "read_event", 2);
  evs__mp_w_cstr(&b, "position");
  evs__mp_w_uint(&b, 1);
  evs__mp_w_cstr(&b, "id");
  evs__mp_w_bin(&b, "0123456789abcdef", 16);
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  /* an id of the wrong size */
  small_request(&b, 2, "read_event", 1);
  evs__mp_w_cstr(&b, "id");
  evs__mp_w_bin(&b, "0123", 4);
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  /* state and replay need their names */
  small_request(&b, 3, "state", 0);
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  small_request(&b, 4, "replay", 1);
  evs__mp_w_cstr(&b, "projection");
  evs__mp_w_uint(&b, 1);
  cr_assert_eq(decode_bytes(b.data, b.len, &d, err, sizeof err), EVS_EPROTO);
  cr_assert(strstr(err, "projection"), "%s", err);
  evs__buf_free(&b);
}

Test(protocol_reply, replies_of_later_ops_round_trip) {
  evs__buf b = EVS__BUF_INIT;
  evs__proto_frame f;
  evs__proto_reply rep;

  /* head and read_event */
  evs__proto_frame_open(&b, &f, EVS__K_REPLY, 5, 0, NULL);
  evs__mp_w_key(&b, &f.map, "head");
  evs__mp_w_uint(&b, 12);
  evs__mp_w_key(&b, &f.map, "head_timestamp");
  evs__mp_w_int(&b, 1767225600000000001);
  evs__proto_event ev;
  memset(&ev, 0, sizeof ev);
  ev.stream = S("s-1");
  ev.type = S("T");
  ev.id[0] = 1;
  ev.data = S("{\"a\":1}");
  ev.version = 3;
  ev.position = 12;
  ev.timestamp_ns = 77;
  evs__mp_w_key(&b, &f.map, "event");
  evs__proto_w_event(&b, &ev);
  cr_assert_eq(evs__proto_frame_close(&b, &f), 0);
  decode_frame(&b, &rep);
  cr_assert_eq(rep.head, 12);
  cr_assert_eq(rep.head_timestamp_ns, 1767225600000000001);
  cr_assert(rep.has_event);
  cr_assert(slice_is(rep.event.stream, "s-1"));
  cr_assert(slice_is(rep.event.data, "{\"a\":1}"));
  cr_assert_eq(rep.event.version, 3);
  cr_assert_eq(rep.event.position, 12);
  cr_assert_eq(rep.event.timestamp_ns, 77);

  /* state and stats */
  b.len = 0;
  evs__proto_frame_open(&b, &f, EVS__K_REPLY, 6, 0, NULL);
  evs__mp_w_key(&b, &f.map, "state");
  evs__mp_w_bin(&b, "{\"k\":2}", 7);
  evs__mp_w_key(&b, &f.map, "version");
  evs__mp_w_int(&b, 4);
  evs__proto_stats st;
  memset(&st, 0, sizeof st);
  st.events = 1;
  st.streams = 2;
  st.event_types = 3;
  st.categories = 4;
  st.last_position = 5;
  st.last_timestamp_ns = -6;
  st.file_size = 7;
  st.map_size = 8;
  st.map_used = 9;
  st.page_size = 10;
  st.data_bytes_raw = 11;
  st.data_bytes_stored = 12;
  st.compressed_events = 13;
  evs__mp_w_key(&b, &f.map, "stats");
  evs__proto_w_stats(&b, &st);
  cr_assert_eq(evs__proto_frame_close(&b, &f), 0);
  decode_frame(&b, &rep);
  cr_assert(rep.has_state);
  cr_assert(slice_is(rep.state, "{\"k\":2}"));
  cr_assert_eq(rep.version, 4);
  cr_assert(rep.has_stats);
  cr_assert_eq(memcmp(&rep.stats, &st, sizeof st), 0);

  /* a progress frame with a problem, and the verify and replay replies */
  b.len = 0;
  evs__proto_frame_open(&b, &f, EVS__K_PROGRESS, 7, 0, NULL);
  evs__mp_w_key(&b, &f.map, "done");
  evs__mp_w_uint(&b, 4096);
  evs__mp_w_key(&b, &f.map, "total");
  evs__mp_w_uint(&b, 10000);
  evs__mp_w_key(&b, &f.map, "problem");
  evs__mp_w_cstr(&b, "record at position 3 is corrupt");
  cr_assert_eq(evs__proto_frame_close(&b, &f), 0);
  decode_frame(&b, &rep);
  cr_assert_eq(rep.kind, EVS__K_PROGRESS);
  cr_assert_str_eq(evs__proto_kind_name(rep.kind), "progress");
  cr_assert_eq(rep.done, 4096);
  cr_assert_eq(rep.total, 10000);
  cr_assert(rep.has_problem);
  cr_assert(slice_is(rep.problem, "record at position 3 is corrupt"));

  b.len = 0;
  evs__proto_frame_open(&b, &f, EVS__K_REPLY, 7, EVS_EHANDLER, "bad data");
  evs__mp_w_key(&b, &f.map, "events_checked");
  evs__mp_w_uint(&b, 10);
  evs__mp_w_key(&b, &f.map, "streams_checked");
  evs__mp_w_uint(&b, 2);
  evs__mp_w_key(&b, &f.map, "errors");
  evs__mp_w_uint(&b, 1);
  evs__mp_w_key(&b, &f.map, "generation");
  evs__mp_w_uint(&b, 3);
  evs__mp_w_key(&b, &f.map, "events_applied");
  evs__mp_w_uint(&b, 9);
  evs__mp_w_key(&b, &f.map, "error_position");
  evs__mp_w_uint(&b, 8);
  cr_assert_eq(evs__proto_frame_close(&b, &f), 0);
  decode_frame(&b, &rep);
  cr_assert_eq(rep.code, EVS_EHANDLER);
  cr_assert_eq(rep.events_checked, 10);
  cr_assert_eq(rep.streams_checked, 2);
  cr_assert_eq(rep.errors, 1);
  cr_assert_eq(rep.generation, 3);
  cr_assert_eq(rep.events_applied, 9);
  cr_assert_eq(rep.error_position, 8);

  /* a malformed event or stats map is rejected up front */
  b.len = 0;
  evs__proto_frame_open(&b, &f, EVS__K_REPLY, 8, 0, NULL);
  evs__mp_w_key(&b, &f.map, "event");
  evs__mp_w_map(&b, 1);
  evs__mp_w_cstr(&b, "type");
  evs__mp_w_cstr(&b, "T");
  cr_assert_eq(evs__proto_frame_close(&b, &f), 0);
  char err[128];
  cr_assert_eq(
      evs__proto_decode_reply(&rep, b.data + 4, b.len - 4, err, sizeof err),
      EVS_EPROTO);
  b.len = 0;
  evs__proto_frame_open(&b, &f, EVS__K_REPLY, 8, 0, NULL);
  evs__mp_w_key(&b, &f.map, "stats");
  evs__mp_w_map(&b, 1);
  evs__mp_w_cstr(&b, "events");
  evs__mp_w_cstr(&b, "many");
  cr_assert_eq(evs__proto_frame_close(&b, &f), 0);
  cr_assert_eq(
      evs__proto_decode_reply(&rep, b.data + 4, b.len - 4, err, sizeof err),
      EVS_EPROTO);
  evs__buf_free(&b);
}

Test(protocol_reply, stream_entries_carry_metadata) {
  evs__buf b = EVS__BUF_INIT;
  evs__proto_frame f;
  evs__proto_frame_open(&b, &f, EVS__K_REPLY, 1, 0, NULL);
  evs__mp_w_key(&b, &f.map, "streams");
  evs__mp_w_array(&b, 2);
  evs__mp_w_map(&b, 5);
  evs__mp_w_cstr(&b, "name");
  evs__mp_w_cstr(&b, "a-1");
  evs__mp_w_cstr(&b, "max_count");
  evs__mp_w_uint(&b, 5);
  evs__mp_w_cstr(&b, "max_age");
  evs__mp_w_uint(&b, 60);
  evs__mp_w_cstr(&b, "truncate_before");
  evs__mp_w_int(&b, 2);
  evs__mp_w_cstr(&b, "custom");
  evs__mp_w_bin(&b, "{}", 2);
  /* an entry of an older server: no metadata keys */
  evs__mp_w_map(&b, 1);
  evs__mp_w_cstr(&b, "name");
  evs__mp_w_cstr(&b, "b-1");
  cr_assert_eq(evs__proto_frame_close(&b, &f), 0);
  evs__proto_reply rep;
  decode_frame(&b, &rep);
  evs__proto_cursor c;
  evs__proto_stream_entry st;
  evs__proto_cursor_init(&c, rep.streams_raw, rep.nstreams);
  cr_assert_eq(evs__proto_next_stream(&c, &st), 1);
  cr_assert_eq(st.max_count, 5);
  cr_assert_eq(st.max_age_sec, 60);
  cr_assert_eq(st.truncate_before, 2);
  cr_assert(st.has_custom && slice_is(st.custom, "{}"));
  cr_assert_eq(evs__proto_next_stream(&c, &st), 1);
  cr_assert(slice_is(st.name, "b-1"));
  cr_assert_eq(st.max_count, 0);
  cr_assert_eq(st.truncate_before, -1);
  cr_assert_eq(st.has_custom, 0);
  evs__buf_free(&b);
}
