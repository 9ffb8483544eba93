/*
 * Built-in projections and JSON merge patch: RFC 7386's own examples,
 * "stream-state" (folded state, unfoldable streams), folding one stream as
 * of a position or a time straight from the log, and "counts".
 */
#include <criterion/criterion.h>
#include <jansson.h>
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

TestSuite(proj_builtin, .init = setup, .fini = teardown, .timeout = 60);

static void assert_json_eq(const char *got, const char *want) {
  json_error_t e;
  json_t *a = json_loads(got, JSON_DECODE_ANY, &e);
  json_t *b = json_loads(want, JSON_DECODE_ANY, &e);
  cr_assert_not_null(a, "not JSON: %s", got);
  cr_assert_not_null(b, "not JSON: %s", want);
  cr_assert(json_equal(a, b), "got %s, want %s", got, want);
  json_decref(a);
  json_decref(b);
}

Test(proj_builtin, merge_patch_rfc7386_appendix_a) {
  static const char *cases[][3] = {
    { "{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}" },
    { "{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}" },
    { "{\"a\":\"b\"}", "{\"a\":null}", "{}" },
    { "{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}" },
    { "{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}" },
    { "{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}" },
    { "{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}",
      "{\"a\":{\"b\":\"d\"}}" },
    { "{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}" },
    { "[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]" },
    { "{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]" },
    { "{\"a\":\"foo\"}", "null", "null" },
    { "{\"a\":\"foo\"}", "\"bar\"", "\"bar\"" },
    { "{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}" },
    { "[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}" },
    { "{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}" },
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char *out = NULL;
    int rc = evs_json_merge_patch(&out, cases[i][0], strlen(cases[i][0]),
                                  cases[i][1], strlen(cases[i][1]));
    cr_assert_eq(rc, 0, "case %zu: %s", i, evs_last_error());
    assert_json_eq(out, cases[i][2]);
    evs_state_free(out);
  }
  char *out = NULL;
  cr_assert_eq(evs_json_merge_patch(&out, NULL, 0, "{\"a\":null,\"b\":1}", 16),
               0);
  assert_json_eq(out, "{\"b\":1}");
  evs_state_free(out);
  cr_assert_eq(evs_json_merge_patch(&out, "{", 1, "{}", 2), EVS_EINVAL);
  cr_assert_null(out);
}

static uint64_t add_ev(const char *stream, const char *data) {
  evs_event_data ev;
  tu_event(&ev, "Changed", data, strlen(data));
  evs_append_result r;
  int rc = evs_append(st, stream, EVS_EXPECT_ANY, &ev, 1, &r);
  cr_assert_eq(rc, 0, "%s", evs_last_error());
  return r.last_position;
}

static json_t *state_entry(const char *stream) {
  char *v = pu_view_get(vw, "stream-state", stream);
  cr_assert_not_null(v, "no stream-state entry for %s", stream);
  json_error_t e;
  json_t *j = json_loads(v, 0, &e);
  cr_assert_not_null(j, "bad entry %s", v);
  free(v);
  return j;
}

static void run_builtins(void) {
  evs_runner *r = NULL;
  cr_assert_eq(evs_runner_create(&r, vw, NULL), 0);
  evs_projection p;
  cr_assert_eq(evs_proj_builtin(&p, "stream-state"), 0);
  cr_assert_eq(evs_runner_add(r, &p), 0);
  cr_assert_eq(evs_proj_builtin(&p, "counts"), 0);
  cr_assert_eq(evs_runner_add(r, &p), 0);
  cr_assert_eq(evs_proj_builtin(&p, "nosuch"), EVS_ENOTFOUND);
  cr_assert_eq(evs_runner_catch_up(r), 0, "%s", evs_last_error());
  evs_proj_status s = pu_status(r, "stream-state");
  cr_assert_not(s.failed);
  cr_assert_eq(s.checkpoint, tu_head(st));
  evs_runner_free(r);
}

Test(proj_builtin, stream_state_folds_and_marks_unfoldable_streams) {
  uint64_t p[16];
  int k = 0;
  p[k++] = add_ev("user-1", "{\"name\":\"Ann\",\"tags\":[\"a\"]}");
  p[k++] = add_ev("user-2", "{\"x\":1}");
  p[k++] = add_ev("user-1", "{\"address\":{\"city\":\"Oslo\",\"zip\":\"1\"}}");
  p[k++] = add_ev("user-2", "[1,2]");
  p[k++] = add_ev("user-1", "");
  p[k++] = add_ev("user-3", "not json");
  p[k++] = add_ev("user-1", "{\"tags\":null,\"address\":{\"zip\":null}}");
  p[k++] = add_ev("user-2", "{\"y\":2}");
  p[k++] = add_ev("user-1", "{\"address\":{\"street\":\"Main\"}}");
  run_builtins();

  json_t *u1 = state_entry("user-1");
  char *state = json_dumps(json_object_get(u1, "state"), JSON_COMPACT);
  assert_json_eq(state, "{\"name\":\"Ann\",\"address\":{\"city\":\"Oslo\","
                        "\"street\":\"Main\"}}");
  free(state);
  cr_assert_eq(json_integer_value(json_object_get(u1, "version")), 4);
  cr_assert_eq(json_integer_value(json_object_get(u1, "position")),
               (json_int_t)p[8]);
  cr_assert_null(json_object_get(u1, "unfoldable"));
  json_decref(u1);

  /* An array makes user-2 unfoldable at version 1; later events only move
   * its version on. */
  json_t *u2 = state_entry("user-2");
  json_t *unf = json_object_get(u2, "unfoldable");
  cr_assert_not_null(unf);
  cr_assert_eq(json_integer_value(json_object_get(unf, "version")), 1);
  cr_assert_eq(json_integer_value(json_object_get(unf, "position")),
               (json_int_t)p[3]);
  cr_assert(tu_contains_ci(json_string_value(json_object_get(unf, "reason")),
                           "array"));
  cr_assert(json_is_null(json_object_get(u2, "state")));
  cr_assert_eq(json_integer_value(json_object_get(u2, "version")), 2);
  json_decref(u2);

  json_t *u3 = state_entry("user-3");
  unf = json_object_get(u3, "unfoldable");
  cr_assert(tu_contains_ci(json_string_value(json_object_get(unf, "reason")),
                           "not JSON"));
  json_decref(u3);
}

Test(proj_builtin, fold_from_the_log_matches_the_view_and_travels_in_time) {
  const char *datas[] = { "{\"a\":1,\"b\":{\"c\":1}}", "{\"b\":{\"d\":2}}",
                          "{\"a\":null}", "{\"b\":{\"c\":null},\"e\":[1]}",
                          "{\"e\":{\"f\":true}}" };
  uint64_t pos[5];
  int64_t ts[5];
  for (int i = 0; i < 5; i++) {
    pos[i] = add_ev("doc-1", datas[i]);
    add_ev("doc-2", "{\"other\":1}");
    tu_sleep_ms(2);
  }
  tu_evlist l = tu_stream(st, "doc-1", NULL);
  for (int i = 0; i < 5; i++)
    ts[i] = l.ev[i].timestamp_ns;
  tu_evlist_free(&l);
  run_builtins();

  /* Now: the fold equals the view's state. */
  char *now = NULL;
  int64_t ver = 0;
  cr_assert_eq(evs_state_fold(&now, &ver, st, "doc-1", 0, 0), 0, "%s",
               evs_last_error());
  cr_assert_eq(ver, 4);
  json_t *e = state_entry("doc-1");
  char *view = json_dumps(json_object_get(e, "state"), JSON_COMPACT);
  assert_json_eq(now, view);
  assert_json_eq(now, "{\"b\":{\"d\":2},\"e\":{\"f\":true}}");
  free(view);
  json_decref(e);
  evs_state_free(now);

  /* As of each event, by position and by time. */
  const char *want[] = { "{\"a\":1,\"b\":{\"c\":1}}",
                         "{\"a\":1,\"b\":{\"c\":1,\"d\":2}}",
                         "{\"b\":{\"c\":1,\"d\":2}}",
                         "{\"b\":{\"d\":2},\"e\":[1]}",
                         "{\"b\":{\"d\":2},\"e\":{\"f\":true}}" };
  for (int i = 0; i < 5; i++) {
    char *s = NULL;
    cr_assert_eq(evs_state_fold(&s, &ver, st, "doc-1", pos[i], 0), 0);
    cr_assert_eq(ver, i);
    assert_json_eq(s, want[i]);
    evs_state_free(s);
    /* doc-2's event after pos[i] does not change doc-1's state. */
    cr_assert_eq(evs_state_fold(&s, &ver, st, "doc-1", pos[i] + 1, 0), 0);
    assert_json_eq(s, want[i]);
    evs_state_free(s);
    cr_assert_eq(evs_state_fold(&s, &ver, st, "doc-1", 0, ts[i]), 0);
    assert_json_eq(s, want[i]);
    evs_state_free(s);
  }
  char *s = NULL;
  cr_assert_eq(evs_state_fold(&s, NULL, st, "doc-1", 0, ts[0] - 1),
               EVS_ENOSTREAM);
  cr_assert_eq(evs_state_fold(&s, NULL, st, "nosuch-1", 0, 0), EVS_ENOSTREAM);
  cr_assert_null(s);
}

Test(proj_builtin, fold_of_unfoldable_stream_fails_with_the_reason) {
  add_ev("bad-1", "{\"a\":1}");
  uint64_t p = add_ev("bad-1", "42");
  char *s = NULL;
  int64_t v;
  cr_assert_eq(evs_state_fold(&s, &v, st, "bad-1", 0, 0), EVS_EINVAL);
  cr_assert_null(s);
  char want[64];
  snprintf(want, sizeof want, "position %llu", (unsigned long long)p);
  cr_assert(tu_contains_ci(evs_last_error(), want), "%s", evs_last_error());
  cr_assert(tu_contains_ci(evs_last_error(), "number"), "%s", evs_last_error());
  /* Before the bad event it folds. */
  cr_assert_eq(evs_state_fold(&s, &v, st, "bad-1", p - 1, 0), 0);
  assert_json_eq(s, "{\"a\":1}");
  evs_state_free(s);
}

Test(proj_builtin, counts_per_category_and_type) {
  for (int i = 0; i < 30; i++) {
    char stream[32];
    snprintf(stream, sizeof stream, "%s-%d", i % 3 ? "order" : "user", i % 4);
    evs_event_data ev;
    tu_event(&ev, i % 2 ? "Placed" : "Paid", "{}", 2);
    cr_assert_eq(evs_append(st, stream, EVS_EXPECT_ANY, &ev, 1, NULL), 0);
  }
  pu_append1(st, "solo", "Placed", "{}");
  run_builtins();
  pu_view v = pu_view_dump(vw, "counts");
  cr_assert_eq(v.n, 5);
  cr_assert_str_eq(pu_view_find(&v, "category/order")->val, "20");
  cr_assert_str_eq(pu_view_find(&v, "category/user")->val, "10");
  cr_assert_str_eq(pu_view_find(&v, "category/solo")->val, "1");
  cr_assert_str_eq(pu_view_find(&v, "type/Placed")->val, "16");
  cr_assert_str_eq(pu_view_find(&v, "type/Paid")->val, "15");
  pu_view_free(&v);
}
