/*
 * Shared helpers of the evstore-cli tests (header only: every test file
 * is its own executable).
 *
 * Each test gets a fresh temp directory (ct_dir) and a store path in it
 * (ct_db). ct_run() runs the built binary (EVSTORE_CLI_PATH, set by
 * tests/CMakeLists.txt) with EVSTORE_DB=ct_db and EVSTORE_DURABILITY=nosync,
 * its working directory ct_dir, and stdout a pipe (so output is JSON lines).
 */
#ifndef EVSTORE_CLITEST_H
#define EVSTORE_CLITEST_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cliutil.h"
#include "testutil.h"

#ifndef EVSTORE_CLI_PATH
#error "EVSTORE_CLI_PATH must name the evstore-cli binary"
#endif

#define CT_MAX_ARGS 64

static char ct_db[4096];
static char ct_env_db[4200];

static inline void ct_setup(void) {
  tu_setup_dir();
  snprintf(ct_db, sizeof ct_db, "%s/db", tu_dir);
  snprintf(ct_env_db, sizeof ct_env_db, "EVSTORE_DB=%s", ct_db);
}

static inline void ct_teardown(void) {
  tu_rmrf(tu_dir);
  free(tu_dir);
  tu_dir = NULL;
}

/* Runs the CLI with NULL-terminated arguments, `input` on stdin (may be
 * NULL) and `env` extra variables (NULL-terminated, may be NULL). */
static inline cu_result ct_runv(const void *input, size_t input_len,
                                const char *const *env, va_list ap) {
  const char *args[CT_MAX_ARGS + 1];
  size_t n = 0;
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL) {
    cr_assert_lt(n, CT_MAX_ARGS);
    args[n++] = a;
  }
  args[n] = NULL;
  const char *envv[16];
  size_t k = 0;
  envv[k++] = ct_env_db;
  envv[k++] = "EVSTORE_DURABILITY=nosync";
  for (size_t i = 0; env && env[i]; i++) {
    cr_assert_lt(k, 15);
    envv[k++] = env[i];
  }
  envv[k] = NULL;
  cu_opts o = { tu_dir, envv, input, input_len, 300000 };
  return cu_run(EVSTORE_CLI_PATH, args, &o);
}

/* Like ct_run with stdin input. */
static inline cu_result ct_run_in(const void *input, size_t len, ...) {
  va_list ap;
  va_start(ap, len);
  cu_result r = ct_runv(input, len, NULL, ap);
  va_end(ap);
  return r;
}

/* Runs the CLI with NULL-terminated arguments. */
#define ct_run(...) ct_run_in(NULL, 0, __VA_ARGS__)

/* Like ct_run with extra environment variables (NULL-terminated array). */
static inline cu_result ct_run_env(const char *const *env, ...) {
  va_list ap;
  va_start(ap, env);
  cu_result r = ct_runv(NULL, 0, env, ap);
  va_end(ap);
  return r;
}

#define ct_assert_status(r, want)                                              \
  cr_assert_eq((r).status, (want),                                             \
               "exit status %d, expected %d\nstdout:\n%.4000s\nstderr:\n"      \
               "%.4000s",                                                      \
               (r).status, (want), (r).out, (r).err)

/* Parses one JSON document; asserts it is valid. New reference. */
static inline json_t *ct_json(const char *text) {
  json_error_t e;
  json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
  cr_assert_not_null(v, "not JSON (%s): %.2000s", e.text, text);
  return v;
}

/* Parses every line of `out` as JSON; returns an array. */
static inline json_t *ct_lines(const char *out) {
  json_t *arr = json_array();
  const char *p = out;
  while (*p) {
    const char *nl = strchr(p, '\n');
    cr_assert_not_null(nl, "output does not end with a newline: %.200s", p);
    json_error_t e;
    json_t *v = json_loadb(p, (size_t)(nl - p), JSON_DECODE_ANY, &e);
    if (v == NULL) /* integers beyond 64 bits are valid JSON */
      v = json_loadb(p, (size_t)(nl - p),
                     JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &e);
    cr_assert_not_null(v, "line is not JSON (%s): %.*s", e.text,
                       (int)(nl - p > 2000 ? 2000 : nl - p), p);
    json_array_append_new(arr, v);
    p = nl + 1;
  }
  return arr;
}

/* Runs, asserts exit 0 and one JSON line of output; returns it. */
static inline json_t *ct_obj(cu_result r) {
  ct_assert_status(r, 0);
  cr_assert_eq(cu_count_lines(r.out), 1, "expected one line, got:\n%s", r.out);
  json_t *v = ct_json(r.out);
  cu_result_free(&r);
  return v;
}

static inline long long ct_int(const json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);
  cr_assert(json_is_integer(v), "\"%s\" is not an integer", key);
  return (long long)json_integer_value(v);
}

static inline const char *ct_str(const json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);
  cr_assert(json_is_string(v), "\"%s\" is not a string", key);
  return json_string_value(v);
}

/* Compact JSON text of v (caller frees). */
static inline char *ct_dump(const json_t *v) {
  return json_dumps(v,
                    JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(16));
}

/* Asserts that JSON value v serializes to `want` (compact, in order). */
#define ct_assert_json(v, want)                                                \
  do {                                                                         \
    char *ct__s = ct_dump(v);                                                  \
    cr_assert_str_eq(ct__s, (want));                                           \
    free(ct__s);                                                               \
  } while (0)

/* Appends one event; asserts success. */
static inline json_t *ct_append(const char *stream, const char *type,
                                const char *data) {
  return ct_obj(ct_run("append", stream, "--type", type, "--data", data, NULL));
}

#endif /* EVSTORE_CLITEST_H */
