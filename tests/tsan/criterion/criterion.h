/*
 * A small stand-in for Criterion's <criterion/criterion.h>, used only by the
 * ThreadSanitizer build (EVS_SANITIZE=thread, `make tsan`).
 *
 * Criterion cannot start under TSan: its sandbox maps a shared arena at
 * fixed addresses inside the memory TSan reserves for its shadow ("Could
 * not initialize inheritable arena"). So the TSan build compiles the very
 * same test files against this header and tests/tsan/runner.c, which runs
 * each test in a plain fork()ed child, one at a time.
 *
 * Supported: Test() and TestSuite() with .init, .fini, .timeout, .disabled,
 * .description, .exit_code and .signal; the cr_assert* family (cr_expect*
 * are the same checks, not fatal); cr_assert_fail(), cr_skip_test() and
 * cr_log_*(). A test that uses more of Criterion fails to compile in the
 * TSan build: add what it needs here.
 */
#ifndef EVS_TSAN_CRITERION_H
#define EVS_TSAN_CRITERION_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* Options of a test or a suite, as Criterion names them. */
struct crs_options {
  int unused_; /* keeps { .unused_ = 0, <no options> } valid */
  void (*init)(void);
  void (*fini)(void);
  double timeout; /* seconds; 0 = none */
  bool disabled;
  const char *description;
  int exit_code; /* expected exit status */
  int signal;    /* expected terminating signal */
};

struct crs_test {
  const char *suite;
  const char *name;
  void (*fn)(void);
  struct crs_options opts;
  struct crs_test *next;
};

struct crs_suite {
  const char *name;
  struct crs_options opts;
  struct crs_suite *next;
};

void crs_register_test(struct crs_test *t);
void crs_register_suite(struct crs_suite *s);

/*
 * Reports a failed check. crs_fail() then ends the test as failed (running
 * its .fini first); crs_expect_fail() marks it failed and returns. `fmt` is
 * a printf format followed by its arguments, possibly with one unused ""
 * at the end.
 */
_Noreturn void crs_fail(const char *file, int line, const char *expr,
                        const char *fmt, ...);
void crs_expect_fail(const char *file, int line, const char *expr,
                     const char *fmt, ...);
_Noreturn void crs_skip(const char *fmt, ...);
void crs_log(const char *level, const char *fmt, ...);

#define Test(...) CRS_TEST_(__VA_ARGS__, )
#define CRS_TEST_(suite, name, ...)                                            \
  static void crs_fn_##suite##_##name(void);                                   \
  static struct crs_test crs_test_##suite##_##name = {                         \
    #suite,                                                                    \
    #name,                                                                     \
    crs_fn_##suite##_##name,                                                   \
    { .unused_ = 0, __VA_ARGS__ },                                             \
    NULL                                                                       \
  };                                                                           \
  __attribute__((constructor)) static void crs_reg_##suite##_##name(void) {    \
    crs_register_test(&crs_test_##suite##_##name);                             \
  }                                                                            \
  static void crs_fn_##suite##_##name(void)

#define TestSuite(...) CRS_SUITE_(__VA_ARGS__, )
#define CRS_SUITE_(suite, ...)                                                 \
  static struct crs_suite crs_suite_##suite = { #suite,                        \
                                                { .unused_ = 0, __VA_ARGS__ }, \
                                                NULL };                        \
  __attribute__((constructor)) static void crs_regsuite_##suite(void) {        \
    crs_register_suite(&crs_suite_##suite);                                    \
  }                                                                            \
  struct crs_suite_unused_##suite

/* One-operand and two-operand checks; the trailing "" stands in for an
 * absent message. */
#define CRS_CHECK1_(fn, text, cond, ...)                                       \
  do {                                                                         \
    if (!(cond))                                                               \
      fn(__FILE__, __LINE__, text, __VA_ARGS__);                               \
  } while (0)
#define CRS_CMP_(fn, op, a, b, ...)                                            \
  do {                                                                         \
    if (!((a)op(b)))                                                           \
      fn(__FILE__, __LINE__, #a " " #op " " #b, __VA_ARGS__);                  \
  } while (0)
#define CRS_STR_(fn, op, a, b, ...)                                            \
  do {                                                                         \
    if (!(strcmp((a), (b)) op 0))                                              \
      fn(__FILE__, __LINE__, "strcmp(" #a ", " #b ") " #op " 0", __VA_ARGS__); \
  } while (0)

#define cr_assert(...) CRS_A1_(crs_fail, __VA_ARGS__, "")
#define cr_expect(...) CRS_A1_(crs_expect_fail, __VA_ARGS__, "")
#define CRS_A1_(fn, cond, ...) CRS_CHECK1_(fn, #cond, cond, __VA_ARGS__)
#define cr_assert_not(...) CRS_NOT_(crs_fail, __VA_ARGS__, "")
#define cr_expect_not(...) CRS_NOT_(crs_expect_fail, __VA_ARGS__, "")
#define CRS_NOT_(fn, cond, ...)                                                \
  CRS_CHECK1_(fn, "!(" #cond ")", !(cond), __VA_ARGS__)
#define cr_assert_null(...) CRS_NULL_(crs_fail, ==, __VA_ARGS__, "")
#define cr_expect_null(...) CRS_NULL_(crs_expect_fail, ==, __VA_ARGS__, "")
#define cr_assert_not_null(...) CRS_NULL_(crs_fail, !=, __VA_ARGS__, "")
#define cr_expect_not_null(...) CRS_NULL_(crs_expect_fail, !=, __VA_ARGS__, "")
#define CRS_NULL_(fn, op, p, ...)                                              \
  CRS_CHECK1_(fn, #p " " #op " NULL", (p)op NULL, __VA_ARGS__)

#define cr_assert_eq(...) CRS_CMP_(crs_fail, ==, __VA_ARGS__, "")
#define cr_assert_neq(...) CRS_CMP_(crs_fail, !=, __VA_ARGS__, "")
#define cr_assert_lt(...) CRS_CMP_(crs_fail, <, __VA_ARGS__, "")
#define cr_assert_leq(...) CRS_CMP_(crs_fail, <=, __VA_ARGS__, "")
#define cr_assert_gt(...) CRS_CMP_(crs_fail, >, __VA_ARGS__, "")
#define cr_assert_geq(...) CRS_CMP_(crs_fail, >=, __VA_ARGS__, "")
#define cr_expect_eq(...) CRS_CMP_(crs_expect_fail, ==, __VA_ARGS__, "")
#define cr_expect_neq(...) CRS_CMP_(crs_expect_fail, !=, __VA_ARGS__, "")
#define cr_expect_lt(...) CRS_CMP_(crs_expect_fail, <, __VA_ARGS__, "")
#define cr_expect_leq(...) CRS_CMP_(crs_expect_fail, <=, __VA_ARGS__, "")
#define cr_expect_gt(...) CRS_CMP_(crs_expect_fail, >, __VA_ARGS__, "")
#define cr_expect_geq(...) CRS_CMP_(crs_expect_fail, >=, __VA_ARGS__, "")

#define cr_assert_str_eq(...) CRS_STR_(crs_fail, ==, __VA_ARGS__, "")
#define cr_assert_str_neq(...) CRS_STR_(crs_fail, !=, __VA_ARGS__, "")
#define cr_expect_str_eq(...) CRS_STR_(crs_expect_fail, ==, __VA_ARGS__, "")
#define cr_expect_str_neq(...) CRS_STR_(crs_expect_fail, !=, __VA_ARGS__, "")

#define cr_assert_fail(...)                                                    \
  crs_fail(__FILE__, __LINE__, "cr_assert_fail", "" __VA_ARGS__)
#define cr_expect_fail(...)                                                    \
  crs_expect_fail(__FILE__, __LINE__, "cr_expect_fail", "" __VA_ARGS__)
#define cr_skip_test(...) crs_skip("" __VA_ARGS__)

#define cr_log_info(...) crs_log("INFO", __VA_ARGS__)
#define cr_log_warn(...) crs_log("WARN", __VA_ARGS__)
#define cr_log_error(...) crs_log("ERR ", __VA_ARGS__)

#endif /* EVS_TSAN_CRITERION_H */
