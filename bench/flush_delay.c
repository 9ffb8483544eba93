/*
 * libevs-flush-delay.so — a diagnostic for the group-commit figures, not a
 * part of evstore: preloaded into evstore-bench, it replaces fdatasync()
 * and fsync() with a fixed sleep (EVS_FLUSH_DELAY_US, default 500) and
 * does nothing else. With the stores on a tmpfs (--dir /dev/shm/...), every
 * commit then costs the same flush whatever the disk is doing, so the
 * ratios of scenario 2 show what the group-commit machinery itself
 * achieves, apart from the disk's bandwidth (docs/performance.md,
 * analysis 4). Nothing written this way is durable.
 *
 *   LD_PRELOAD=build/bench/libevs-flush-delay.so \
 *     build/bench/evstore-bench --only group-commit --dir /dev/shm
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void evs_flush_delay(void) {
  static long ns = -1;
  if (ns < 0) {
    const char *e = getenv("EVS_FLUSH_DELAY_US");
    long us = e ? atol(e) : 500;
    ns = (us < 0 ? 0 : us > 1000000 ? 1000000 : us) * 1000L;
  }
  struct timespec t = { ns / 1000000000L, ns % 1000000000L };
  while (nanosleep(&t, &t) != 0 && errno == EINTR)
    ;
}

int fdatasync(int fd) {
  (void)fd;
  evs_flush_delay();
  return 0;
}

int fsync(int fd) {
  (void)fd;
  evs_flush_delay();
  return 0;
}
