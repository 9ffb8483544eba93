/*
 * Many concurrent clients appending to shared and to their own streams:
 * no acknowledged append is lost or duplicated, versions are gap-free per
 * stream, positions are gap-free in $all, and the appends of concurrent
 * clients share group commits.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srvutil.h"

#define NTHREADS 64
#define NAPPENDS 40
#define NSHARED 4

typedef struct ack {
  char stream[32];
  int64_t first_version;
  uint64_t first_position;
  uint32_t count;
  uint32_t thread, seq;
} ack;

typedef struct worker {
  srv *s;
  evs_client *shared_client; /* NULL: a connection of its own */
  uint32_t id;
  ack acks[NAPPENDS];
  int nacks;
  int failures;
  char error[256];
} worker;

static void *run(void *arg) {
  worker *w = arg;
  evs_client *c = w->shared_client;
  if (c == NULL) {
    evs_client_options o = EVS_CLIENT_OPTIONS_INIT;
    o.timeout_ms = 60000;
    if (evs_client_connect(&c, w->s->addr, &o) != 0) {
      snprintf(w->error, sizeof w->error, "connect: %s",
               evs_client_last_error());
      w->failures++;
      return NULL;
    }
  }
  int64_t own_version = -1;
  for (uint32_t i = 0; i < NAPPENDS; i++) {
    ack *a = &w->acks[w->nacks];
    uint32_t count = 1 + (w->id + i) % 3;
    int own = i % 2;
    if (own)
      snprintf(a->stream, sizeof a->stream, "own-%u", w->id);
    else
      snprintf(a->stream, sizeof a->stream, "shared-%u", (w->id + i) % NSHARED);
    evs_event_data ev[3];
    char data[3][64];
    memset(ev, 0, sizeof ev);
    for (uint32_t k = 0; k < count; k++) {
      int len = snprintf(data[k], sizeof data[k], "t%u/s%u/k%u", w->id, i, k);
      ev[k].type = "Concurrent";
      ev[k].data = data[k];
      ev[k].data_len = (size_t)len;
    }
    evs_append_result r;
    int rc = evs_client_append(c, a->stream, own ? own_version : EVS_EXPECT_ANY,
                               ev, count, &r);
    if (rc) {
      snprintf(w->error, sizeof w->error, "append %s: %s: %s", a->stream,
               evs_client_err_name(rc), evs_client_last_error());
      w->failures++;
      break;
    }
    if (own)
      own_version = r.last_version;
    a->first_version = r.first_version;
    a->first_position = r.first_position;
    a->count = count;
    a->thread = w->id;
    a->seq = i;
    if (r.last_version - r.first_version != count - 1 ||
        r.last_position - r.first_position != count - 1) {
      snprintf(w->error, sizeof w->error, "non-consecutive result");
      w->failures++;
      break;
    }
    w->nacks++;
  }
  if (w->shared_client == NULL)
    evs_client_close(c);
  return NULL;
}

/* Checks everything acknowledged against the log. */
static void verify(srv *s, worker *ws, int n) {
  evs_client *c = srv_client(s, NULL);
  /* $all: gap-free positions, one entry per acknowledged event */
  uint64_t total = 0;
  for (int t = 0; t < n; t++)
    for (int i = 0; i < ws[t].nacks; i++)
      total += ws[t].acks[i].count;
  uint8_t *seen = calloc(total + 1, 1);
  evs_client_iter *it;
  cr_assert_eq(evs_client_read_all(&it, c, NULL), 0);
  const evs_event *e;
  uint64_t pos = 0;
  while (evs_client_iter_next(it, &e) == 1) {
    cr_assert_eq(e->position, pos + 1, "gap after position %llu",
                 (unsigned long long)pos);
    pos = e->position;
  }
  cr_assert_eq(pos, total, "log holds %llu events, %llu acknowledged",
               (unsigned long long)pos, (unsigned long long)total);
  evs_client_iter_free(it);
  /* every acknowledged event is where its append said, with its data */
  for (int t = 0; t < n; t++) {
    for (int i = 0; i < ws[t].nacks; i++) {
      ack *a = &ws[t].acks[i];
      evs_read_options o = EVS_READ_OPTIONS_INIT;
      o.from_version = a->first_version;
      o.limit = a->count;
      cr_assert_eq(evs_client_read_stream(&it, c, a->stream, &o), 0);
      for (uint32_t k = 0; k < a->count; k++) {
        cr_assert_eq(evs_client_iter_next(it, &e), 1);
        char want[64];
        int len =
            snprintf(want, sizeof want, "t%u/s%u/k%u", a->thread, a->seq, k);
        cr_assert_eq(e->data.len, (size_t)len);
        cr_assert_eq(memcmp(e->data.data, want, (size_t)len), 0,
                     "%s v%lld holds another append's event", a->stream,
                     (long long)e->version);
        cr_assert_eq(e->position, a->first_position + k);
        cr_assert_eq(seen[e->position], 0, "position reported twice");
        seen[e->position] = 1;
      }
      evs_client_iter_free(it);
    }
  }
  /* every stream's versions are gap-free */
  for (int sh = 0; sh < NSHARED; sh++) {
    char name[32];
    snprintf(name, sizeof name, "shared-%d", sh);
    cr_assert_eq(evs_client_read_stream(&it, c, name, NULL), 0);
    int64_t v = 0;
    while (evs_client_iter_next(it, &e) == 1)
      cr_assert_eq(e->version, v++);
    evs_client_iter_free(it);
  }
  free(seen);
  evs_client_close(c);
}

static uint64_t metric(srv *s, const char *name) {
  char *body = NULL;
  cr_assert_eq(http_get(s, "/metrics", &body), 200);
  char *p = strstr(body, name);
  cr_assert_not_null(p, "no %s", name);
  unsigned long long v = 0;
  sscanf(p + strlen(name), " %llu", &v);
  free(body);
  return v;
}

TestSuite(server_concurrency, .timeout = 180);

Test(server_concurrency, many_clients_append_without_loss_or_duplicates) {
  srv *s = srv_start("sync", NULL);
  static worker ws[NTHREADS];
  pthread_t th[NTHREADS];
  memset(ws, 0, sizeof ws);
  for (int t = 0; t < NTHREADS; t++) {
    ws[t].s = s;
    ws[t].id = (uint32_t)t;
    cr_assert_eq(pthread_create(&th[t], NULL, run, &ws[t]), 0);
  }
  for (int t = 0; t < NTHREADS; t++)
    pthread_join(th[t], NULL);
  for (int t = 0; t < NTHREADS; t++)
    cr_assert_eq(ws[t].failures, 0, "thread %d: %s", t, ws[t].error);
  verify(s, ws, NTHREADS);
  /* concurrent appends were committed in groups */
  uint64_t appends = metric(s, "evstore_append_requests_total{result=\"ok\"}");
  uint64_t commits = metric(s, "evstore_store_commits_total");
  cr_assert_eq(appends, NTHREADS * NAPPENDS);
  cr_assert_lt(commits, appends, "%llu commits for %llu appends",
               (unsigned long long)commits, (unsigned long long)appends);
  srv_free(s);
}

Test(server_concurrency, threads_sharing_one_client_pipeline) {
  srv *s = srv_start("sync", NULL);
  evs_client *c = srv_client(s, NULL);
  enum {
    N = 16
  };
  static worker ws[N];
  pthread_t th[N];
  memset(ws, 0, sizeof ws);
  for (int t = 0; t < N; t++) {
    ws[t].s = s;
    ws[t].shared_client = c;
    ws[t].id = (uint32_t)t;
    cr_assert_eq(pthread_create(&th[t], NULL, run, &ws[t]), 0);
  }
  for (int t = 0; t < N; t++)
    pthread_join(th[t], NULL);
  for (int t = 0; t < N; t++)
    cr_assert_eq(ws[t].failures, 0, "thread %d: %s", t, ws[t].error);
  verify(s, ws, N);
  evs_client_close(c);
  srv_free(s);
}
