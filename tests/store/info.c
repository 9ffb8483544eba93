/*
 * Stream info and the stream listing.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/evstore.h"
#include "testutil.h"

TestSuite(store_info, .init = tu_setup, .fini = tu_teardown, .timeout = 60);

Test(store_info, never_seen_stream_is_enostream) {
  evs_stream_info info;
  memset(&info, 0, sizeof info);
  int rc = evs_stream_info_get(tu_store, "nobody", &info);
  cr_assert_eq(rc, EVS_ENOSTREAM, "%s", evs_err_name(rc));
  tu_append_ok(tu_store, "somebody", EVS_EXPECT_ANY, 1, NULL);
  rc = evs_stream_info_get(tu_store, "nobody", &info);
  cr_assert_eq(rc, EVS_ENOSTREAM, "%s", evs_err_name(rc));
}

Test(store_info, fields_after_appends) {
  tu_append_ok(tu_store, "other", EVS_EXPECT_ANY, 2, NULL);
  evs_append_result a = tu_append_ok(tu_store, "acct-1", EVS_EXPECT_ANY, 3,
                                     NULL);
  tu_append_ok(tu_store, "other", EVS_EXPECT_ANY, 1, NULL);
  evs_append_result b = tu_append_ok(tu_store, "acct-1", EVS_EXPECT_ANY, 2,
                                     NULL);
  evs_stream_info info;
  memset(&info, 0xab, sizeof info);
  int rc = evs_stream_info_get(tu_store, "acct-1", &info);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  cr_assert_eq(info.exists, 1);
  cr_assert_eq(info.version, 4);
  cr_assert_eq(info.first_version, 0);
  cr_assert_eq(info.first_position, a.first_position);
  cr_assert_eq(info.last_position, b.last_position);
  cr_assert_eq(info.start_version, 0);
  cr_assert_eq(info.last_timestamp_ns, b.timestamp_ns);
  cr_assert_eq(info.flags, 0);
  cr_assert_eq(info.max_count, 0);
  cr_assert_eq(info.max_age_sec, 0);
  cr_assert_eq(info.truncate_before, -1);
  cr_assert_null(info.custom);
  cr_assert_eq(info.custom_len, 0);
  uint64_t id = info.stream_id;
  evs_stream_info_clear(&info);
  evs_stream_info_clear(NULL);

  memset(&info, 0, sizeof info);
  cr_assert_eq(evs_stream_info_get(tu_store, "other", &info), 0);
  cr_assert_neq(info.stream_id, id, "two streams share an id");
  cr_assert_eq(info.version, 2);
  evs_stream_info_clear(&info);
}

/* Creates streams in a scrambled order. */
static void make_streams(void) {
  static const char *names[] = {"b", "a-1", "c", "ab", "a", "\xc3\xa9t\xc3\xa9",
                                "B", "a-10", "a-2"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    tu_append_ok(tu_store, names[i], EVS_EXPECT_NO_STREAM, 1 + i % 2, NULL);
}

/* Lists into `out` (joined with '|'); returns the count. */
static int list(char *out, size_t cap, const char *prefix, const char *after,
                int include_deleted, unsigned *flags_or) {
  evs_stream_iter *it = NULL;
  int rc = evs_streams_list(&it, tu_store, prefix, after, include_deleted);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  out[0] = '\0';
  size_t used = 0;
  int n = 0;
  evs_slice name;
  evs_stream_info info;
  if (flags_or)
    *flags_or = 0;
  while ((rc = evs_streams_next(it, &name, &info)) == 1) {
    cr_assert_lt(used + name.len + 2, cap);
    if (n)
      out[used++] = '|';
    memcpy(out + used, name.data, name.len);
    used += name.len;
    out[used] = '\0';
    if (flags_or)
      *flags_or |= info.flags;
    /* The listed info matches evs_stream_info_get. */
    char cname[256];
    memcpy(cname, name.data, name.len);
    cname[name.len] = '\0';
    evs_stream_info direct;
    cr_assert_eq(evs_stream_info_get(tu_store, cname, &direct), 0);
    cr_assert_eq(direct.version, info.version, "%s", cname);
    cr_assert_eq(direct.stream_id, info.stream_id, "%s", cname);
    cr_assert_eq(direct.flags, info.flags, "%s", cname);
    evs_stream_info_clear(&direct);
    n++;
  }
  cr_assert_eq(rc, 0, "evs_streams_next: %s", evs_err_name(rc));
  evs_streams_free(it);
  return n;
}

Test(store_info, list_in_byte_order) {
  make_streams();
  char buf[512];
  int n = list(buf, sizeof buf, NULL, NULL, 0, NULL);
  cr_assert_eq(n, 9);
  cr_assert_str_eq(buf, "B|a|a-1|a-10|a-2|ab|b|c|\xc3\xa9t\xc3\xa9");
  n = list(buf, sizeof buf, "", NULL, 0, NULL);
  cr_assert_eq(n, 9);
}

Test(store_info, list_with_prefix) {
  make_streams();
  char buf[512];
  cr_assert_eq(list(buf, sizeof buf, "a", NULL, 0, NULL), 5);
  cr_assert_str_eq(buf, "a|a-1|a-10|a-2|ab");
  cr_assert_eq(list(buf, sizeof buf, "a-1", NULL, 0, NULL), 2);
  cr_assert_str_eq(buf, "a-1|a-10");
  cr_assert_eq(list(buf, sizeof buf, "zz", NULL, 0, NULL), 0);
  cr_assert_eq(list(buf, sizeof buf, "\xc3", NULL, 0, NULL), 1);
}

Test(store_info, list_after_a_name) {
  make_streams();
  char buf[512];
  cr_assert_eq(list(buf, sizeof buf, NULL, "a-10", 0, NULL), 5);
  cr_assert_str_eq(buf, "a-2|ab|b|c|\xc3\xa9t\xc3\xa9");
  /* `after` need not be an existing stream. */
  cr_assert_eq(list(buf, sizeof buf, NULL, "aa", 0, NULL), 4);
  cr_assert_str_eq(buf, "ab|b|c|\xc3\xa9t\xc3\xa9");
  cr_assert_eq(list(buf, sizeof buf, "a", "a-2", 0, NULL), 1);
  cr_assert_str_eq(buf, "ab");
  cr_assert_eq(list(buf, sizeof buf, NULL, "\xc3\xa9t\xc3\xa9", 0, NULL), 0);
}

Test(store_info, list_skips_deleted_unless_asked) {
  make_streams();
  int rc = evs_stream_delete(tu_store, "b", EVS_EXPECT_ANY, 0);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  rc = evs_stream_delete(tu_store, "c", EVS_EXPECT_ANY, 1);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  char buf[512];
  unsigned flags;
  cr_assert_eq(list(buf, sizeof buf, NULL, "ab", 0, &flags), 1);
  cr_assert_str_eq(buf, "\xc3\xa9t\xc3\xa9");
  cr_assert_eq(flags, 0);
  cr_assert_eq(list(buf, sizeof buf, NULL, "ab", 1, &flags), 3);
  cr_assert_str_eq(buf, "b|c|\xc3\xa9t\xc3\xa9");
  cr_assert_eq(flags, EVS_STREAM_DELETED | EVS_STREAM_TOMBSTONED);
}

Test(store_info, list_of_an_empty_store) {
  char buf[16];
  cr_assert_eq(list(buf, sizeof buf, NULL, NULL, 1, NULL), 0);
}

Test(store_info, list_many_streams) {
  /* 1500 streams in one append each, listed back in order. */
  evs_store_options o = tu_opts(EVS_NOSYNC);
  tu_reopen(&o);
  for (int i = 0; i < 1500; i++) {
    char name[32];
    snprintf(name, sizeof name, "many-%05d", (i * 7919) % 1500);
    tu_append_ok(tu_store, name, EVS_EXPECT_NO_STREAM, 1, NULL);
  }
  evs_stream_iter *it = NULL;
  cr_assert_eq(evs_streams_list(&it, tu_store, "many-", NULL, 0), 0);
  evs_slice name;
  evs_stream_info info;
  int n = 0, rc;
  while ((rc = evs_streams_next(it, &name, &info)) == 1) {
    char want[32];
    snprintf(want, sizeof want, "many-%05d", n);
    cr_assert_eq(name.len, strlen(want));
    cr_assert_eq(memcmp(name.data, want, name.len), 0, "entry %d", n);
    cr_assert_eq(info.version, 0);
    n++;
  }
  cr_assert_eq(rc, 0);
  cr_assert_eq(n, 1500);
  evs_streams_free(it);
  evs_streams_free(NULL);
}
