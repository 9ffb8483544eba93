/*
 * evstored — structured logs: one line per event on stderr, in logfmt
 * (key=value pairs), each line written with a single write() so that lines
 * from different threads never interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/server.h"

static int min_level = EVSD_INFO;

void evsd_log_init(int debug) {
  min_level = debug ? EVSD_DEBUG : EVSD_INFO;
}

static const char *level_name(int level) {
  switch (level) {
  case EVSD_DEBUG:
    return "debug";
  case EVSD_INFO:
    return "info";
  case EVSD_WARN:
    return "warn";
  default:
    return "error";
  }
}

void evsd_log(int level, const char *fmt, ...) {
  if (level < min_level)
    return;
  char line[2048];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(
      line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s ",
      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
      tm.tm_sec, ts.tv_nsec / 1000000L, level_name(level));
  if (n < 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
  if (len > sizeof line - 2)
    len = sizeof line - 2;
  line[len++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
}

const char *evsd_q(char *out, size_t outlen, const char *s, size_t len) {
  size_t o = 0;
  if (outlen < 3) {
    if (outlen)
      out[0] = '\0';
    return out;
  }
  out[o++] = '"';
  for (size_t i = 0; i < len && o + 4 < outlen; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\') {
      out[o++] = '\\';
      out[o++] = (char)ch;
    } else if (ch < 0x20 || ch == 0x7f) {
      out[o++] = '?';
    } else {
      out[o++] = (char)ch;
    }
  }
  out[o++] = '"';
  out[o] = '\0';
  return out;
}
