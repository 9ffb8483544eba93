/*
 * Running a program under test as a black box (see cliutil.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "cliutil.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct sink {
  char *data;
  size_t len, cap;
} sink;

static void sink_put(sink *s, const char *p, size_t n) {
  if (s->len + n + 1 > s->cap) {
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < s->len + n + 1)
      cap *= 2;
    s->data = realloc(s->data, cap);
    cr_assert_not_null(s->data);
    s->cap = cap;
  }
  memcpy(s->data + s->len, p, n);
  s->len += n;
  s->data[s->len] = '\0';
}

static char **child_env(const char *const *extra) {
  size_t n = 0, m = 0;
  while (environ[n])
    n++;
  while (extra && extra[m])
    m++;
  char **env = calloc(n + m + 1, sizeof *env);
  cr_assert_not_null(env);
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "EVSTORE_", 8) != 0)
      env[k++] = environ[i];
  for (size_t i = 0; i < m; i++)
    env[k++] = (char *)extra[i];
  env[k] = NULL;
  return env;
}

static pid_t spawn(const char *bin, const char *const *args,
                   const cu_opts *opts, int *in_fd, int *out_fd,
                   int *err_fd) {
  int pin[2], pout[2], perr[2];
  cr_assert_eq(pipe(pin), 0);
  cr_assert_eq(pipe(pout), 0);
  cr_assert_eq(pipe(perr), 0);
  size_t n = 0;
  while (args && args[n])
    n++;
  char **argv = calloc(n + 2, sizeof *argv);
  cr_assert_not_null(argv);
  argv[0] = (char *)bin;
  for (size_t i = 0; i < n; i++)
    argv[i + 1] = (char *)args[i];
  char **env = child_env(opts ? opts->env : NULL);
  fflush(NULL);
  pid_t pid = fork();
  cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
  if (pid == 0) {
    dup2(pin[0], 0);
    dup2(pout[1], 1);
    dup2(perr[1], 2);
    close(pin[0]);
    close(pin[1]);
    close(pout[0]);
    close(pout[1]);
    close(perr[0]);
    close(perr[1]);
    signal(SIGPIPE, SIG_DFL);
    if (opts && opts->cwd && chdir(opts->cwd) != 0)
      _exit(126);
    execve(bin, argv, env);
    _exit(127);
  }
  free(argv);
  free(env);
  close(pin[0]);
  close(pout[1]);
  close(perr[1]);
  *in_fd = pin[1];
  *out_fd = pout[0];
  *err_fd = perr[0];
  return pid;
}

static int exit_status(int ws) {
  if (WIFEXITED(ws))
    return WEXITSTATUS(ws);
  if (WIFSIGNALED(ws))
    return 128 + WTERMSIG(ws);
  return -1;
}

/* Pumps stdin/stdout/stderr until both outputs close or the deadline. */
static cu_result collect(pid_t pid, int in_fd, int out_fd, int err_fd,
                         const void *input, size_t input_len,
                         int timeout_ms) {
  cu_result r;
  memset(&r, 0, sizeof r);
  sink out = {0}, err = {0};
  sink_put(&out, "", 0);
  sink_put(&err, "", 0);
  size_t written = 0;
  if (in_fd >= 0 && (input == NULL || input_len == 0)) {
    close(in_fd);
    in_fd = -1;
  }
  if (in_fd >= 0)
    fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) | O_NONBLOCK);
  int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 120000);
  while (out_fd >= 0 || err_fd >= 0) {
    struct pollfd fds[3];
    int nfds = 0, iout = -1, ierr = -1, iin = -1;
    if (out_fd >= 0) {
      fds[nfds] = (struct pollfd){out_fd, POLLIN, 0};
      iout = nfds++;
    }
    if (err_fd >= 0) {
      fds[nfds] = (struct pollfd){err_fd, POLLIN, 0};
      ierr = nfds++;
    }
    if (in_fd >= 0) {
      fds[nfds] = (struct pollfd){in_fd, POLLOUT, 0};
      iin = nfds++;
    }
    int64_t left = deadline - now_ms();
    if (left <= 0) {
      kill(pid, SIGKILL);
      r.timed_out = 1;
      break;
    }
    int pr = poll(fds, (nfds_t)nfds, (int)(left > 1000 ? 1000 : left));
    if (pr < 0 && errno == EINTR)
      continue;
    cr_assert_geq(pr, 0, "poll: %s", strerror(errno));
    char buf[65536];
    if (iout >= 0 && fds[iout].revents) {
      ssize_t n = read(out_fd, buf, sizeof buf);
      if (n > 0)
        sink_put(&out, buf, (size_t)n);
      else if (n == 0 || errno != EINTR) {
        close(out_fd);
        out_fd = -1;
      }
    }
    if (ierr >= 0 && fds[ierr].revents) {
      ssize_t n = read(err_fd, buf, sizeof buf);
      if (n > 0)
        sink_put(&err, buf, (size_t)n);
      else if (n == 0 || errno != EINTR) {
        close(err_fd);
        err_fd = -1;
      }
    }
    if (iin >= 0 && fds[iin].revents) {
      ssize_t n = write(in_fd, (const char *)input + written,
                        input_len - written);
      if (n > 0)
        written += (size_t)n;
      if ((n < 0 && errno != EAGAIN && errno != EINTR) ||
          written == input_len) {
        close(in_fd);
        in_fd = -1;
      }
    }
  }
  if (in_fd >= 0)
    close(in_fd);
  if (out_fd >= 0)
    close(out_fd);
  if (err_fd >= 0)
    close(err_fd);
  int ws = 0;
  while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
    ;
  r.status = exit_status(ws);
  r.out = out.data;
  r.out_len = out.len;
  r.err = err.data;
  r.err_len = err.len;
  cr_assert(strstr(r.err, "Sanitizer") == NULL &&
                strstr(r.err, "runtime error:") == NULL,
            "the program reported a sanitizer error:\n%s", r.err);
  return r;
}

cu_result cu_run(const char *bin, const char *const *args,
                 const cu_opts *opts) {
  int in_fd, out_fd, err_fd;
  pid_t pid = spawn(bin, args, opts, &in_fd, &out_fd, &err_fd);
  return collect(pid, in_fd, out_fd, err_fd, opts ? opts->input : NULL,
                 opts ? opts->input_len : 0, opts ? opts->timeout_ms : 0);
}

cu_proc cu_start(const char *bin, const char *const *args,
                 const cu_opts *opts) {
  cu_proc p;
  int in_fd;
  p.pid = spawn(bin, args, opts, &in_fd, &p.out_fd, &p.err_fd);
  close(in_fd);
  return p;
}

cu_result cu_finish(cu_proc *p, int timeout_ms) {
  return collect(p->pid, -1, p->out_fd, p->err_fd, NULL, 0, timeout_ms);
}

int cu_read_until(cu_proc *p, const char *needle, char **acc,
                  int timeout_ms) {
  sink s = {0};
  if (*acc)
    sink_put(&s, *acc, strlen(*acc));
  else
    sink_put(&s, "", 0);
  free(*acc);
  int64_t deadline = now_ms() + timeout_ms;
  int found = strstr(s.data, needle) != NULL;
  while (!found && now_ms() < deadline) {
    struct pollfd fd = {p->out_fd, POLLIN, 0};
    int pr = poll(&fd, 1, 100);
    if (pr <= 0)
      continue;
    char buf[4096];
    ssize_t n = read(p->out_fd, buf, sizeof buf);
    if (n <= 0)
      break;
    sink_put(&s, buf, (size_t)n);
    found = strstr(s.data, needle) != NULL;
  }
  *acc = s.data;
  return found;
}

void cu_result_free(cu_result *r) {
  free(r->out);
  free(r->err);
  r->out = r->err = NULL;
}

size_t cu_count_lines(const char *s) {
  size_t n = 0;
  for (; s && *s; s++)
    n += *s == '\n';
  return n;
}
