/*
 * evstore-cli — progress bar (see progress.h).
 */
#include "progress.h"

#include <stdio.h>
#include <time.h>

#define BAR_WIDTH 30

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void human(char *out, size_t n, uint64_t v, int bytes) {
  if (!bytes) {
    snprintf(out, n, "%llu", (unsigned long long)v);
    return;
  }
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double d = (double)v;
  unsigned u = 0;
  while (d >= 1024 && u < 4) {
    d /= 1024;
    u++;
  }
  snprintf(out, n, u ? "%.1f %s" : "%.0f %s", d, units[u]);
}

static void draw(cli_progress *p, int64_t t) {
  char done[32], total[32], rate[32];
  double secs = (double)(t - p->start_ns) / 1e9;
  human(done, sizeof done, p->done, p->bytes);
  human(rate, sizeof rate, secs > 0 ? (uint64_t)((double)p->done / secs) : 0,
        p->bytes);
  if (p->total) {
    uint64_t d = p->done > p->total ? p->total : p->done;
    unsigned fill = (unsigned)((double)d / (double)p->total * BAR_WIDTH);
    char bar[BAR_WIDTH + 1];
    for (unsigned i = 0; i < BAR_WIDTH; i++)
      bar[i] = i < fill ? '#' : '-';
    bar[BAR_WIDTH] = '\0';
    human(total, sizeof total, p->total, p->bytes);
    fprintf(stderr, "\r\033[K%s [%s] %3u%% %s/%s (%s/s)", p->label, bar,
            (unsigned)((double)d * 100 / (double)p->total), done, total,
            rate);
  } else {
    fprintf(stderr, "\r\033[K%s %s (%s/s)", p->label, done, rate);
  }
  fflush(stderr);
  p->drawn = 1;
}

void cli_progress_start(cli_progress *p, const char *label, uint64_t total,
                        int bytes, int enabled) {
  p->enabled = enabled;
  p->bytes = bytes;
  p->label = label;
  p->total = total;
  p->done = 0;
  p->start_ns = p->last_ns = now_ns();
  p->drawn = 0;
}

void cli_progress_update(cli_progress *p, uint64_t done) {
  if (!p->enabled)
    return;
  p->done = done;
  int64_t t = now_ns();
  /* Quick operations draw nothing; long ones redraw ten times a second. */
  if (t - p->start_ns < 250000000LL || t - p->last_ns < 100000000LL)
    return;
  p->last_ns = t;
  draw(p, t);
}

void cli_progress_finish(cli_progress *p) {
  if (!p->enabled || !p->drawn)
    return;
  fputs("\r\033[K", stderr);
  fflush(stderr);
  p->drawn = 0;
}
