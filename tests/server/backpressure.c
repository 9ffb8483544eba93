/*
 * Output is bounded per connection: a subscriber that reads nothing while
 * 200 MB are appended does not grow the server's memory, and once it reads
 * it catches up completely, in order. A subscriber that stays stalled over
 * the soft limit is disconnected, and the client resumes from its
 * checkpoint without losing an event.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srvutil.h"

static void fill(uint8_t *p, size_t n, uint64_t seed) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = (uint8_t)x;
  }
}

/* Appends `mb` MiB of incompressible events (16 KiB each, 64 per append)
 * to a few streams; returns the number of events. Samples the server's
 * anonymous memory after every append into *peak_kb. */
static uint64_t append_mb(srv *s, evs_client *c, unsigned mb, long *peak_kb) {
  enum {
    EV = 16 * 1024,
    PER = 64
  };
  uint8_t *data = malloc((size_t)EV * PER);
  cr_assert_not_null(data);
  evs_event_data ev[PER];
  uint64_t events = 0;
  unsigned appends = mb * 1024 * 1024 / (EV * PER);
  for (unsigned a = 0; a < appends; a++) {
    fill(data, (size_t)EV * PER, a);
    memset(ev, 0, sizeof ev);
    for (int k = 0; k < PER; k++) {
      ev[k].type = "Blob";
      ev[k].data = data + (size_t)k * EV;
      ev[k].data_len = EV;
    }
    char stream[32];
    snprintf(stream, sizeof stream, "blob-%u", a % 8);
    int rc = evs_client_append(c, stream, EVS_EXPECT_ANY, ev, PER, NULL);
    cr_assert_eq(rc, 0, "append %u: %s", a, evs_client_last_error());
    events += PER;
    long kb = srv_rss_anon_kb(s);
    if (peak_kb && kb > *peak_kb)
      *peak_kb = kb;
  }
  free(data);
  return events;
}

/* ThreadSanitizer keeps shadow memory for every page of the store's map
 * the server reads, which shows as anonymous memory proportional to the
 * log: under TSan the test checks the catch-up with less data and only
 * reports the memory. */
#if defined(__SANITIZE_THREAD__)
#define EVS_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define EVS_TEST_TSAN 1
#endif
#endif
#ifdef EVS_TEST_TSAN
#define BULK_MB 48
#else
#define BULK_MB 200
#endif

/* Under AddressSanitizer, freed blocks wait in a quarantine (256 MiB by
 * default) that would count as the server's memory: keep it small for the
 * server started here. */
static void small_asan_quarantine(void) {
  const char *cur = getenv("ASAN_OPTIONS");
  char opts[1024];
  snprintf(opts, sizeof opts, "%s%squarantine_size_mb=4", cur ? cur : "",
           cur && cur[0] ? ":" : "");
  setenv("ASAN_OPTIONS", opts, 1);
}

TestSuite(server_backpressure, .timeout = 240);

Test(server_backpressure, an_unread_subscriber_costs_bounded_memory) {
  small_asan_quarantine();
  srv *s = srv_start("nosync", NULL);
  evs_client *c = srv_client(s, NULL);
  /* warm up: allocator arenas, thread pool, the store's buffers */
  uint64_t total = append_mb(s, c, 8, NULL);
  evs_client_sub *sub;
  evs_client_sub_options so = EVS_CLIENT_SUB_OPTIONS_INIT;
  cr_assert_eq(evs_client_subscribe(&sub, c, &so), 0);
  const evs_event *e;
  /* take a few events, then stop reading */
  cr_assert_eq(evs_client_sub_next(sub, &e, 10000), 1);
  cr_assert_eq(e->position, 1);
  ms_sleep(300);
  long base = srv_rss_anon_kb(s);
  long peak = base;
  total += append_mb(s, c, BULK_MB, &peak);
  ms_sleep(500);
  long after = srv_rss_anon_kb(s);
  if (after > peak)
    peak = after;
  cr_log_info("server anonymous memory: %ld KiB before, peak %ld KiB while "
              "%d MiB were appended",
              base, peak, BULK_MB);
  /* The subscriber's share is bounded by the soft output limit (8 MiB)
   * plus one batch; allow generously for the allocator, sanitizers and
   * appends in flight, far below the 200 MiB the log grew by. */
#ifndef EVS_TEST_TSAN
  cr_assert_lt(peak - base, 64 * 1024, "server memory grew by %ld KiB",
               peak - base);
#endif
  cr_assert(srv_alive(s));
  /* now read: everything arrives, in order, without a gap */
  uint64_t got = 1;
  uint64_t last = 1;
  while (got < total) {
    int rc = evs_client_sub_next(sub, &e, 30000);
    cr_assert_eq(rc, 1, "after %llu of %llu events: %d %s",
                 (unsigned long long)got, (unsigned long long)total, rc,
                 evs_client_last_error());
    cr_assert_eq(e->position, last + 1);
    cr_assert_eq(e->data.len, 16 * 1024);
    last = e->position;
    got++;
  }
  cr_assert_eq(evs_client_sub_next(sub, &e, 500), 0);
  cr_assert(evs_client_sub_caught_up(sub));
  cr_assert_eq(evs_client_sub_checkpoint(sub), (int64_t)total);
  evs_client_sub_close(sub);
  evs_client_close(c);
  srv_free(s);
}

Test(server_backpressure, a_stalled_subscriber_is_dropped_and_resumes) {
  const char *args[] = { "--output-soft", "64K", "--output-stall-timeout", "1",
                         NULL };
  srv *s = srv_start("nosync", args);
  evs_client *c = srv_client(s, NULL);
  evs_client_sub *sub;
  evs_client_sub_options so = EVS_CLIENT_SUB_OPTIONS_INIT;
  cr_assert_eq(evs_client_subscribe(&sub, c, &so), 0);
  uint64_t total = append_mb(s, c, 16, NULL);
  /* not reading for longer than the stall timeout */
  ms_sleep(3500);
  char *body = NULL;
  cr_assert_eq(http_get(s, "/metrics", &body), 200);
  cr_assert(strstr(body, "evstore_slow_consumers_closed_total 1"), "%s", body);
  free(body);
  const evs_event *e;
  uint64_t last = 0;
  for (uint64_t got = 0; got < total; got++) {
    int rc = evs_client_sub_next(sub, &e, 30000);
    cr_assert_eq(rc, 1, "after %llu events: %d %s", (unsigned long long)got, rc,
                 evs_client_last_error());
    cr_assert_eq(e->position, last + 1,
                 "no gap and no repeat across the "
                 "reconnection");
    last = e->position;
  }
  cr_assert_geq(evs_client_sub_reconnects(sub), 1);
  evs_client_sub_close(sub);
  evs_client_close(c);
  srv_free(s);
}
