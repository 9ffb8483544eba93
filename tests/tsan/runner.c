/*
 * The test runner behind tests/tsan/criterion/criterion.h, for the TSan
 * build only (see that header for why).
 *
 * Runs every registered test, sorted by suite and name, each in its own
 * fork()ed child so that tests stay isolated as under Criterion: the
 * suite's and the test's .init, the test, then .fini. A test passes when
 * its child exits 0 (or as .exit_code / .signal expect). Timeouts are
 * multiplied by EVS_TEST_TIMEOUT_SCALE (default 10), since TSan slows code
 * down several times over. Prints a Criterion-style synthesis line and
 * exits non-zero when a test failed or crashed.
 *
 * Usage: test_x [--filter GLOB] [--list]   (GLOB matches "suite/name")
 */
#include <errno.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "criterion/criterion.h"

enum {
  CRS_EXIT_FAILED = 97,
  CRS_EXIT_SKIPPED = 98
};

static struct crs_test *tests;
static struct crs_suite *suites;

/* State of the test running in this (child) process. */
static const struct crs_test *current;
static void (*current_fini)(void);
static int expect_failed;
static int in_fini;

void crs_register_test(struct crs_test *t) {
  t->next = tests;
  tests = t;
}

void crs_register_suite(struct crs_suite *s) {
  s->next = suites;
  suites = s;
}

static void report(const char *file, int line, const char *expr,
                   const char *fmt, va_list ap) {
  char msg[4096];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  fprintf(stderr, "[----] %s:%d: Assertion Failed\n[----]   %s\n", file, line,
          expr);
  if (msg[0] != '\0')
    fprintf(stderr, "[----]   %s\n", msg);
}

/* Ends the child: runs .fini once, then exits with `status`. */
static _Noreturn void finish(int status) {
  if (current_fini != NULL && !in_fini) {
    in_fini = 1;
    current_fini();
  }
  fflush(NULL);
  exit(status);
}

_Noreturn void crs_fail(const char *file, int line, const char *expr,
                        const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  report(file, line, expr, fmt, ap);
  va_end(ap);
  finish(CRS_EXIT_FAILED);
}

void crs_expect_fail(const char *file, int line, const char *expr,
                     const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  report(file, line, expr, fmt, ap);
  va_end(ap);
  expect_failed = 1;
}

_Noreturn void crs_skip(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "[SKIP] %s::%s: ", current ? current->suite : "?",
          current ? current->name : "?");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  finish(CRS_EXIT_SKIPPED);
}

void crs_log(const char *level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "[%s] ", level);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static const struct crs_options *suite_options(const char *name) {
  for (const struct crs_suite *s = suites; s != NULL; s = s->next)
    if (strcmp(s->name, name) == 0)
      return &s->opts;
  return NULL;
}

static int compare_tests(const void *a, const void *b) {
  const struct crs_test *x = *(const struct crs_test *const *)a;
  const struct crs_test *y = *(const struct crs_test *const *)b;
  int c = strcmp(x->suite, y->suite);
  return c != 0 ? c : strcmp(x->name, y->name);
}

static double now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs one test in this process; never returns. */
static _Noreturn void run_child(const struct crs_test *t,
                                const struct crs_options *so, double timeout) {
  current = t;
  if (timeout > 0)
    alarm((unsigned)(timeout + 0.999));
  void (*init)(void) = t->opts.init ? t->opts.init : so ? so->init : NULL;
  current_fini = t->opts.fini ? t->opts.fini : so ? so->fini : NULL;
  if (init != NULL)
    init();
  t->fn();
  finish(expect_failed ? CRS_EXIT_FAILED : 0);
}

int main(int argc, char **argv) {
  const char *filter = NULL;
  int list = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
      filter = argv[++i];
    else if (strncmp(argv[i], "--filter=", 9) == 0)
      filter = argv[i] + 9;
    else if (strcmp(argv[i], "--list") == 0 || strcmp(argv[i], "-l") == 0)
      list = 1;
  }
  double scale = 10;
  const char *env = getenv("EVS_TEST_TIMEOUT_SCALE");
  if (env != NULL && atof(env) > 0)
    scale = atof(env);

  size_t n = 0;
  for (struct crs_test *t = tests; t != NULL; t = t->next)
    n++;
  struct crs_test **all = calloc(n ? n : 1, sizeof(*all));
  if (all == NULL)
    return 2;
  n = 0;
  for (struct crs_test *t = tests; t != NULL; t = t->next)
    all[n++] = t;
  qsort(all, n, sizeof(*all), compare_tests);

  unsigned tested = 0, passing = 0, failing = 0, crashing = 0, skipped = 0;
  for (size_t i = 0; i < n; i++) {
    const struct crs_test *t = all[i];
    const struct crs_options *so = suite_options(t->suite);
    char full[512];
    snprintf(full, sizeof(full), "%s/%s", t->suite, t->name);
    if (filter != NULL && fnmatch(filter, full, 0) != 0)
      continue;
    if (list) {
      printf("%s::%s\n", t->suite, t->name);
      continue;
    }
    if (t->opts.disabled || (so != NULL && so->disabled)) {
      skipped++;
      continue;
    }
    double timeout = t->opts.timeout > 0 ? t->opts.timeout
                     : so != NULL        ? so->timeout
                                         : 0;
    timeout *= scale;

    fflush(NULL);
    double start = now_sec();
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      return 2;
    }
    if (pid == 0)
      run_child(t, so, timeout);
    int status;
    while (waitpid(pid, &status, 0) < 0) {
      if (errno != EINTR) {
        perror("waitpid");
        return 2;
      }
    }
    double secs = now_sec() - start;
    int want_exit = t->opts.exit_code;
    int want_signal = t->opts.signal;
    tested++;
    if (WIFEXITED(status) && WEXITSTATUS(status) == CRS_EXIT_SKIPPED) {
      tested--;
      skipped++;
    } else if (want_signal != 0
                   ? WIFSIGNALED(status) && WTERMSIG(status) == want_signal
                   : WIFEXITED(status) && WEXITSTATUS(status) == want_exit) {
      passing++;
      printf("[PASS] %s::%s: (%.2fs)\n", t->suite, t->name, secs);
    } else if (WIFSIGNALED(status)) {
      crashing++;
      printf("[FAIL] %s::%s: %s (signal %d)\n", t->suite, t->name,
             WTERMSIG(status) == SIGALRM ? "Timed out" : "CRASH",
             WTERMSIG(status));
    } else {
      failing++;
      printf("[FAIL] %s::%s: (%.2fs, exit status %d)\n", t->suite, t->name,
             secs, WEXITSTATUS(status));
    }
  }
  free(all);
  if (list)
    return 0;
  printf("[====] Synthesis: Tested: %u | Passing: %u | Failing: %u | "
         "Crashing: %u | Skipped: %u\n",
         tested, passing, failing, crashing, skipped);
  return failing + crashing == 0 ? 0 : 1;
}
