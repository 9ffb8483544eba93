/*
 * Bad inputs: every public call returns a documented error, never aborts,
 * and writes nothing. Also the error-code helpers.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/evstore.h"
#include "testutil.h"

TestSuite(store_inputs, .init = tu_setup, .fini = tu_teardown, .timeout = 60);

/* Asserts the head did not move and stream `s` was not created. */
static void assert_nothing_written(uint64_t head, const char *s) {
  cr_assert_eq(tu_head(tu_store), head, "a rejected call wrote events");
  if (s) {
    evs_stream_info info;
    cr_assert_eq(evs_stream_info_get(tu_store, s, &info), EVS_ENOSTREAM,
                 "a rejected call created '%s'", s);
  }
}

static int append1(const char *stream, const char *type) {
  evs_event_data ev;
  tu_event(&ev, type, "x", 1);
  return evs_append(tu_store, stream, EVS_EXPECT_ANY, &ev, 1, NULL);
}

Test(store_inputs, null_pointers_are_einval) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 1, NULL);
  evs_event_data ev;
  tu_event(&ev, "T", "x", 1);
  cr_assert_eq(evs_append(NULL, "s", EVS_EXPECT_ANY, &ev, 1, NULL), EVS_EINVAL);
  cr_assert_eq(evs_append(tu_store, NULL, EVS_EXPECT_ANY, &ev, 1, NULL),
               EVS_EINVAL);
  cr_assert_eq(evs_append(tu_store, "s", EVS_EXPECT_ANY, NULL, 1, NULL),
               EVS_EINVAL);
  ev.type = NULL;
  cr_assert_eq(evs_append(tu_store, "s", EVS_EXPECT_ANY, &ev, 1, NULL),
               EVS_EINVAL);
  /* data NULL with a length, metadata NULL with a length. */
  tu_event(&ev, "T", NULL, 5);
  cr_assert_eq(evs_append(tu_store, "s", EVS_EXPECT_ANY, &ev, 1, NULL),
               EVS_EINVAL);
  tu_event(&ev, "T", "x", 1);
  ev.metadata_len = 3;
  cr_assert_eq(evs_append(tu_store, "s", EVS_EXPECT_ANY, &ev, 1, NULL),
               EVS_EINVAL);
  assert_nothing_written(1, NULL);

  evs_iter *it = NULL;
  evs_read_options ro = EVS_READ_OPTIONS_INIT;
  evs_read_all_options ao = EVS_READ_ALL_OPTIONS_INIT;
  cr_assert_eq(evs_read_stream(NULL, tu_store, "s", &ro), EVS_EINVAL);
  cr_assert_eq(evs_read_stream(&it, NULL, "s", &ro), EVS_EINVAL);
  cr_assert_eq(evs_read_stream(&it, tu_store, NULL, &ro), EVS_EINVAL);
  cr_assert_eq(evs_read_all(NULL, tu_store, &ao), EVS_EINVAL);
  cr_assert_eq(evs_read_all(&it, NULL, &ao), EVS_EINVAL);
  evs_stream_info info;
  cr_assert_eq(evs_stream_info_get(NULL, "s", &info), EVS_EINVAL);
  cr_assert_eq(evs_stream_info_get(tu_store, NULL, &info), EVS_EINVAL);
  cr_assert_eq(evs_stream_info_get(tu_store, "s", NULL), EVS_EINVAL);
  uint64_t pos;
  cr_assert_eq(evs_head_position(NULL, &pos), EVS_EINVAL);
  cr_assert_eq(evs_head_position(tu_store, NULL), EVS_EINVAL);
  cr_assert_eq(evs_position_at(NULL, 1, &pos), EVS_EINVAL);
  cr_assert_eq(evs_position_at(tu_store, 1, NULL), EVS_EINVAL);
  evs_event *e;
  cr_assert_eq(evs_read_event(NULL, 1, &e), EVS_EINVAL);
  cr_assert_eq(evs_read_event(tu_store, 1, NULL), EVS_EINVAL);
  evs_uuid u = tu_uuid(1);
  cr_assert_eq(evs_find_event_id(NULL, &u, &pos), EVS_EINVAL);
  cr_assert_eq(evs_find_event_id(tu_store, NULL, &pos), EVS_EINVAL);
  cr_assert_eq(evs_find_event_id(tu_store, &u, NULL), EVS_EINVAL);
  evs_stats st;
  cr_assert_eq(evs_store_stats(NULL, &st, 0), EVS_EINVAL);
  cr_assert_eq(evs_store_stats(tu_store, NULL, 0), EVS_EINVAL);
  evs_verify_report vr;
  cr_assert_eq(evs_store_verify(NULL, &vr, NULL, NULL), EVS_EINVAL);
  cr_assert_eq(evs_store_compact(NULL, NULL), EVS_EINVAL);
  cr_assert_eq(evs_store_sync(NULL), EVS_EINVAL);
  evs_stream_iter *sit = NULL;
  cr_assert_eq(evs_streams_list(NULL, tu_store, NULL, NULL, 0), EVS_EINVAL);
  cr_assert_eq(evs_streams_list(&sit, NULL, NULL, NULL, 0), EVS_EINVAL);
  cr_assert_eq(evs_uuid_parse(NULL, "x", 1), EVS_EINVAL);
  cr_assert_eq(evs_uuid_parse(&u, NULL, 36), EVS_EINVAL);
  /* Destructors accept NULL. */
  evs_iter_free(NULL);
  evs_event_free(NULL);
  evs_streams_free(NULL);
  evs_stream_info_clear(NULL);
  assert_nothing_written(1, NULL);
}

static const char *const bad_names[] = {
  "",                 /* empty */
  "\xff\xfe",         /* not UTF-8 at all */
  "\xc0\xaf",         /* overlong encoding of '/' */
  "\xe0\x80\xaf",     /* overlong, 3 bytes */
  "\xed\xa0\x80",     /* lone surrogate U+D800 */
  "\xf4\x90\x80\x80", /* beyond U+10FFFF */
  "ab\xc3",           /* truncated sequence */
  "a\x80z",           /* stray continuation byte */
};
enum {
  NBAD = sizeof bad_names / sizeof bad_names[0]
};

Test(store_inputs, bad_stream_names_are_ebadname) {
  uint64_t head = tu_head(tu_store);
  for (size_t i = 0; i < NBAD; i++) {
    int rc = append1(bad_names[i], "T");
    cr_assert_eq(rc, EVS_EBADNAME, "name %zu: %s", i, evs_err_name(rc));
    evs_iter *it = NULL;
    evs_read_options ro = EVS_READ_OPTIONS_INIT;
    rc = evs_read_stream(&it, tu_store, bad_names[i], &ro);
    cr_assert_eq(rc, EVS_EBADNAME, "read name %zu: %s", i, evs_err_name(rc));
  }
  char longname[257];
  memset(longname, 'a', 256);
  longname[256] = '\0';
  cr_assert_eq(append1(longname, "T"), EVS_EBADNAME, "256-byte name");
  longname[255] = '\0';
  cr_assert_eq(append1(longname, "T"), 0, "255-byte name: %s",
               evs_last_error());
  cr_assert_eq(tu_head(tu_store), head + 1);
}

/* '$' names are reserved ($all is the global log): every call that takes a
 * stream name refuses them the same way, and writes nothing. */
Test(store_inputs, reserved_stream_names_are_ebadname_everywhere) {
  tu_append_ok(tu_store, "order-1", EVS_EXPECT_ANY, 1, NULL);
  uint64_t head = tu_head(tu_store);
  evs_stats before;
  cr_assert_eq(evs_store_stats(tu_store, &before, 0), 0);
  const char *names[] = { "$all", "$ce-order", "$" };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char *n = names[i];
    cr_assert_eq(append1(n, "T"), EVS_EBADNAME, "%s", n);
    cr_assert_eq(evs_stream_delete(tu_store, n, EVS_EXPECT_ANY, 0),
                 EVS_EBADNAME, "soft delete %s", n);
    cr_assert_eq(evs_stream_delete(tu_store, n, EVS_EXPECT_ANY, 1),
                 EVS_EBADNAME, "hard delete %s", n);
    cr_assert(strstr(evs_last_error(), "reserved"), "%s", evs_last_error());
    evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
    md.max_count = 3;
    cr_assert_eq(evs_stream_set_metadata(tu_store, n, &md), EVS_EBADNAME);
    evs_iter *it = NULL;
    evs_read_options ro = EVS_READ_OPTIONS_INIT;
    cr_assert_eq(evs_read_stream(&it, tu_store, n, &ro), EVS_EBADNAME);
    cr_assert_null(it);
    evs_stream_info info;
    cr_assert_eq(evs_stream_info_get(tu_store, n, &info), EVS_EBADNAME);
    evs_sub *sub = NULL;
    evs_sub_options so = EVS_SUB_OPTIONS_INIT;
    so.stream = n;
    cr_assert_eq(evs_sub_open(&sub, tu_store, &so), EVS_EBADNAME);
    cr_assert_null(sub);
  }
  cr_assert(strstr(evs_last_error(), "reserved"), "%s", evs_last_error());
  cr_assert_eq(tu_head(tu_store), head);
  evs_stats after;
  cr_assert_eq(evs_store_stats(tu_store, &after, 0), 0);
  cr_assert_eq(after.streams, before.streams, "a '$' stream was created");
}

Test(store_inputs, truncate_before_is_a_version_or_minus_one) {
  evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
  md.truncate_before = -5;
  cr_assert_eq(evs_stream_set_metadata(tu_store, "tb-1", &md), EVS_EINVAL);
  cr_assert(strstr(evs_last_error(), "-5"), "%s", evs_last_error());
  md.truncate_before = -1;
  cr_assert_eq(evs_stream_set_metadata(tu_store, "tb-1", &md), 0);
  md.truncate_before = 0;
  cr_assert_eq(evs_stream_set_metadata(tu_store, "tb-1", &md), 0);
}

Test(store_inputs, uuid_parse_explains_its_failures) {
  evs_iter *it = NULL;
  evs_read_options ro = EVS_READ_OPTIONS_INIT;
  cr_assert_eq(evs_read_stream(&it, tu_store, "missing-1", &ro), EVS_ENOSTREAM);
  evs_uuid u;
  cr_assert_eq(evs_uuid_parse(&u, "nope", 4), EVS_EINVAL);
  cr_assert(strstr(evs_last_error(), "36"), "stale or empty: '%s'",
            evs_last_error());
  const char *bad = "0190c6d2-7e3a-7b1c-9d4e-5f6a7b8c9d0g";
  cr_assert_eq(evs_uuid_parse(&u, bad, 36), EVS_EINVAL);
  cr_assert(strstr(evs_last_error(), "35"), "%s", evs_last_error());
  const char *good = "0190c6d2-7e3a-7b1c-9d4e-5f6a7b8c9d0e";
  cr_assert_eq(evs_uuid_parse(&u, good, 36), 0);
  cr_assert_eq(evs_last_error()[0], '\0');
}

/* An import (evs_append_at) retried after a lost reply gets its original
 * result even once the log has moved on past its timestamp; new events at
 * that time are still refused. */
Test(store_inputs, append_at_retry_after_the_head_moved_on) {
  const int64_t t0 = 1767225600000000001; /* 2026-01-01 */
  evs_event_data ev[2];
  memset(ev, 0, sizeof ev);
  ev[0].type = "Imported";
  ev[1].type = "Imported";
  ev[0].id.bytes[15] = 1;
  ev[1].id.bytes[15] = 2;
  evs_append_part part = { "imp-1", EVS_EXPECT_NO_STREAM, ev, 2, { 0 } };
  cr_assert_eq(evs_append_at(tu_store, &part, 1, t0, NULL), 0, "%s",
               evs_last_error());
  evs_append_result first = part.result;
  cr_assert_eq(first.timestamp_ns, t0);
  tu_append_ok(tu_store, "later-1", EVS_EXPECT_ANY, 1, NULL); /* now > t0 */
  cr_assert_eq(evs_append_at(tu_store, &part, 1, t0, NULL), 0, "%s",
               evs_last_error());
  cr_assert(part.result.idempotent);
  cr_assert_eq(part.result.first_position, first.first_position);
  cr_assert_eq(part.result.last_version, first.last_version);
  cr_assert_eq(part.result.timestamp_ns, t0);
  /* New events at that time: refused, nothing written. */
  uint64_t head = tu_head(tu_store);
  evs_event_data nev;
  memset(&nev, 0, sizeof nev);
  nev.type = "Imported";
  evs_append_part fresh = { "imp-2", EVS_EXPECT_ANY, &nev, 1, { 0 } };
  size_t failed = 9;
  cr_assert_eq(evs_append_at(tu_store, &fresh, 1, t0, &failed), EVS_EINVAL);
  cr_assert_eq(failed, 0);
  cr_assert(strstr(evs_last_error(), "older than the head"), "%s",
            evs_last_error());
  cr_assert_eq(tu_head(tu_store), head);
}

Test(store_inputs, bad_type_names_are_ebadname) {
  for (size_t i = 0; i < NBAD; i++) {
    int rc = append1("s", bad_names[i]);
    cr_assert_eq(rc, EVS_EBADNAME, "type %zu: %s", i, evs_err_name(rc));
  }
  char longtype[257];
  memset(longtype, 't', 256);
  longtype[256] = '\0';
  cr_assert_eq(append1("s", longtype), EVS_EBADNAME, "256-byte type");
  assert_nothing_written(0, "s");
  longtype[255] = '\0';
  cr_assert_eq(append1("s", longtype), 0, "255-byte type: %s",
               evs_last_error());
  /* One bad type among good events rejects the whole append. */
  evs_event_data ev[3];
  tu_event(&ev[0], "Good", "1", 1);
  tu_event(&ev[1], "\xc0\xaf", "2", 1);
  tu_event(&ev[2], "Good", "3", 1);
  cr_assert_eq(evs_append(tu_store, "s", EVS_EXPECT_ANY, ev, 3, NULL),
               EVS_EBADNAME);
  cr_assert_eq(tu_head(tu_store), 1);
}

Test(store_inputs, count_zero_or_too_many_is_einval) {
  evs_event_data ev;
  tu_event(&ev, "T", "x", 1);
  cr_assert_eq(evs_append(tu_store, "s", EVS_EXPECT_ANY, &ev, 0, NULL),
               EVS_EINVAL);
  size_t n = EVS_MAX_EVENTS_PER_APPEND + 1;
  evs_event_data *many = calloc(n, sizeof *many);
  cr_assert_not_null(many);
  for (size_t i = 0; i < n; i++)
    tu_event(&many[i], "T", NULL, 0);
  cr_assert_eq(evs_append(tu_store, "s", EVS_EXPECT_ANY, many, n, NULL),
               EVS_EINVAL);
  free(many);
  assert_nothing_written(0, "s");
}

Test(store_inputs, bad_expected_version_is_einval) {
  /* Values below -2 other than EVS_EXPECT_EXISTS (-4) mean nothing: the
   * header does not list them, so they are an invalid argument. */
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 1, NULL);
  int rc = tu_append_n(tu_store, "s", -3, 1, NULL, NULL);
  cr_assert_eq(rc, EVS_EINVAL, "-3: %s", evs_err_name(rc));
  rc = tu_append_n(tu_store, "s", -100, 1, NULL, NULL);
  cr_assert_eq(rc, EVS_EINVAL, "-100: %s", evs_err_name(rc));
  assert_nothing_written(1, NULL);
}

Test(store_inputs, event_over_max_event_size_is_etoolarge) {
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.max_event_size = 64 * 1024;
  tu_reopen(&o);
  char *buf = calloc(1, 64 * 1024 + 1);
  cr_assert_not_null(buf);
  evs_event_data ev[2];
  tu_event(&ev[0], "Small", "x", 1);
  tu_event(&ev[1], "Big", buf, 64 * 1024 + 1);
  int rc = evs_append(tu_store, "s", EVS_EXPECT_ANY, ev, 2, NULL);
  cr_assert_eq(rc, EVS_ETOOLARGE, "%s", evs_err_name(rc));
  assert_nothing_written(0, "s");
  /* data + metadata count together. */
  tu_event(&ev[1], "Big", buf, 60 * 1024);
  ev[1].metadata = buf;
  ev[1].metadata_len = 4 * 1024 + 1;
  rc = evs_append(tu_store, "s", EVS_EXPECT_ANY, ev + 1, 1, NULL);
  cr_assert_eq(rc, EVS_ETOOLARGE, "%s", evs_err_name(rc));
  assert_nothing_written(0, "s");
  /* Exactly the limit is fine. */
  tu_event(&ev[1], "Big", buf, 64 * 1024);
  rc = evs_append(tu_store, "s", EVS_EXPECT_ANY, ev + 1, 1, NULL);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  free(buf);
}

Test(store_inputs, append_over_64_mib_is_etoolarge) {
  /* Five 14 MiB events (under the 16 MiB event limit) are 70 MiB. */
  size_t sz = 14u * 1024u * 1024u;
  char *buf = calloc(1, sz);
  cr_assert_not_null(buf);
  evs_event_data ev[5];
  for (int i = 0; i < 5; i++)
    tu_event(&ev[i], "Huge", buf, sz);
  int rc = evs_append(tu_store, "s", EVS_EXPECT_ANY, ev, 5, NULL);
  cr_assert_eq(rc, EVS_ETOOLARGE, "%s", evs_err_name(rc));
  assert_nothing_written(0, "s");
  free(buf);
}

Test(store_inputs, default_max_event_size_is_16_mib) {
  size_t sz = EVS_DEFAULT_MAX_EVENT_SIZE + 1;
  char *buf = calloc(1, sz);
  cr_assert_not_null(buf);
  evs_event_data ev;
  tu_event(&ev, "Huge", buf, sz);
  cr_assert_eq(evs_append(tu_store, "s", EVS_EXPECT_ANY, &ev, 1, NULL),
               EVS_ETOOLARGE);
  assert_nothing_written(0, "s");
  free(buf);
}

Test(store_inputs, rejected_append_leaves_nil_ids_alone_or_unused) {
  /* A rejected request may or may not have filled in generated ids, but
   * such an id must not be known to the store. */
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 1, NULL);
  evs_event_data ev;
  tu_event(&ev, "T", "x", 1);
  cr_assert_eq(evs_append(tu_store, "s", 5, &ev, 1, NULL), EVS_EWRONGVERSION);
  if (!evs_uuid_is_nil(&ev.id)) {
    uint64_t pos;
    cr_assert_eq(evs_find_event_id(tu_store, &ev.id, &pos), EVS_ENOTFOUND);
  }
}

Test(store_inputs, read_options_out_of_range) {
  tu_append_ok(tu_store, "s", EVS_EXPECT_ANY, 3, NULL);
  evs_iter *it = NULL;
  evs_read_options ro = EVS_READ_OPTIONS_INIT;
  ro.direction = (evs_direction)9;
  cr_assert_eq(evs_read_stream(&it, tu_store, "s", &ro), EVS_EINVAL);
  evs_read_all_options ao = EVS_READ_ALL_OPTIONS_INIT;
  ao.direction = (evs_direction)9;
  cr_assert_eq(evs_read_all(&it, tu_store, &ao), EVS_EINVAL);
}

Test(store_inputs, error_names_and_messages) {
#define CHECK_CODE(name, value, msg)                                           \
  do {                                                                         \
    cr_assert_eq(EVS_##name, value);                                           \
    cr_assert_str_eq(evs_err_name(EVS_##name), "EVS_" #name);                  \
    cr_assert_str_eq(evs_strerror(EVS_##name), msg);                           \
  } while (0);
  EVS_ERRNO_MAP(CHECK_CODE)
#undef CHECK_CODE
  cr_assert_str_eq(evs_err_name(0), "OK");
  cr_assert_not_null(evs_strerror(0));
  cr_assert_str_eq(evs_err_name(-ENOSPC), "ENOSPC");
  cr_assert_str_eq(evs_err_name(-ENOENT), "ENOENT");
  cr_assert_neq(evs_strerror(-ENOSPC)[0], '\0');
  static const int odd[] = { 12345, -12345,    -20000,    -20999,
                             1,     INT32_MIN, INT32_MAX, -4095 };
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
    cr_assert_not_null(evs_strerror(odd[i]));
    cr_assert_not_null(evs_err_name(odd[i]));
  }
  cr_assert_str_eq(evs_err_name(12345), "EVS_EUNKNOWN");
  cr_assert_str_eq(evs_err_name(-20999), "EVS_EUNKNOWN");
  cr_assert_str_eq(evs_version_string(), EVS_VERSION_STRING);
}

Test(store_inputs, last_error_explains_failures) {
  tu_append_ok(tu_store, "order-1", EVS_EXPECT_ANY, 8, NULL);
  int rc = tu_append_n(tu_store, "order-1", 4, 1, NULL, NULL);
  cr_assert_eq(rc, EVS_EWRONGVERSION);
  const char *msg = evs_last_error();
  cr_assert_not_null(msg);
  cr_assert(tu_contains_ci(msg, "expected"), "'%s'", msg);
  cr_assert(strstr(msg, "4") && strstr(msg, "7"),
            "'%s' names neither the expected nor the actual version", msg);
  rc = append1("", "T");
  cr_assert_eq(rc, EVS_EBADNAME);
  cr_assert_neq(evs_last_error()[0], '\0');
  evs_event_data ev;
  tu_event(&ev, "T", "x", 1);
  rc = evs_append(tu_store, "s", EVS_EXPECT_ANY, &ev, 0, NULL);
  cr_assert_eq(rc, EVS_EINVAL);
  cr_assert_neq(evs_last_error()[0], '\0');
}

static void *fresh_thread(void *arg) {
  const char **out = arg;
  *out = evs_last_error();
  return NULL;
}

Test(store_inputs, last_error_is_per_thread) {
  cr_assert_eq(append1("", "T"), EVS_EBADNAME);
  const char *other = NULL;
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, fresh_thread, &other), 0);
  pthread_join(t, NULL);
  cr_assert_not_null(other);
  cr_assert_str_eq(other, "", "a new thread sees another thread's error");
  cr_assert_neq(evs_last_error()[0], '\0');
}
