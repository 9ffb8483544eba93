/*
 * Helpers to run a command-line program (evstore-cli) as a black box from a
 * test: fork + exec with a controlled environment, optional stdin, and its
 * stdout, stderr and exit status captured.
 *
 * Like testutil.h, call these inside a test (Criterion forks per test).
 * Every run asserts that the child printed no sanitizer report, so the
 * ASan/UBSan build also checks the program under test.
 */
#ifndef EVSTORE_CLIUTIL_H
#define EVSTORE_CLIUTIL_H

#include <stddef.h>
#include <sys/types.h>

typedef struct cu_result {
  int status;     /* exit status, or 128 + signal number */
  char *out;      /* stdout, NUL-terminated (never NULL) */
  size_t out_len;
  char *err;      /* stderr, NUL-terminated (never NULL) */
  size_t err_len;
  int timed_out;  /* the child was killed after the timeout */
} cu_result;

typedef struct cu_opts {
  const char *cwd;          /* working directory; NULL = inherit */
  const char *const *env;   /* extra "NAME=value" entries, NULL-terminated */
  const void *input;        /* stdin bytes; NULL = /dev/null */
  size_t input_len;
  int timeout_ms;           /* 0 = 120 s */
} cu_opts;

/*
 * Runs `bin` with `args` (argv[1..], NULL-terminated). The child's
 * environment is the parent's without any EVSTORE_* variable, plus
 * opts->env. `opts` may be NULL.
 */
cu_result cu_run(const char *bin, const char *const *args,
                 const cu_opts *opts);

/* A running child whose stdout/stderr are collected by cu_finish(). */
typedef struct cu_proc {
  pid_t pid;
  int out_fd, err_fd;
} cu_proc;

/* Starts `bin` like cu_run() but returns at once (stdin is /dev/null). */
cu_proc cu_start(const char *bin, const char *const *args,
                 const cu_opts *opts);

/* Reads what the child prints until it exits (or the timeout kills it). */
cu_result cu_finish(cu_proc *p, int timeout_ms);

/* Reads from the child's stdout until `needle` appears in what was read so
 * far (kept in *acc, a malloc'd string) or the timeout passes. Returns 1
 * when found. */
int cu_read_until(cu_proc *p, const char *needle, char **acc, int timeout_ms);

void cu_result_free(cu_result *r);

/* Number of lines (newline-terminated) in s. */
size_t cu_count_lines(const char *s);

#endif /* EVSTORE_CLIUTIL_H */
