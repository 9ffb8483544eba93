/*
 * Durability of acknowledged appends: kill -9 of the server while 16
 * clients append, and a graceful shutdown (SIGTERM) while they append. In
 * both cases every append the server acknowledged is in the store after a
 * restart, intact, and the store verifies clean.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srvutil.h"

#define NTHREADS 16
#define MAXACKS 20000

typedef struct acked {
  int64_t version;
  uint64_t position;
  uint32_t seq;
} acked;

typedef struct appender {
  srv *s;
  uint32_t id;
  volatile int *stop;
  acked *acks;
  int nacks;
  int last_rc;
} appender;

static int make_data(char *out, size_t n, uint32_t id, uint32_t seq) {
  /* Some bulk so that commits take a little time, and a checkable pattern. */
  int len = snprintf(out, n, "appender %u seq %u ", id, seq);
  for (int i = 0; i < 200 && (size_t)len + 2 < n; i++)
    out[len++] = (char)('a' + (id + seq + (uint32_t)i) % 26);
  out[len] = '\0';
  return len;
}

static void *append_loop(void *arg) {
  appender *a = arg;
  evs_client_options o = EVS_CLIENT_OPTIONS_INIT;
  o.timeout_ms = 20000;
  o.reconnect = 0;
  evs_client *c = NULL;
  if (evs_client_connect(&c, a->s->addr, &o) != 0) {
    a->last_rc = -1;
    return NULL;
  }
  char stream[32];
  snprintf(stream, sizeof stream, "crash-%u", a->id);
  int64_t expected = EVS_EXPECT_NO_STREAM;
  for (uint32_t seq = 0; !*a->stop && a->nacks < MAXACKS; seq++) {
    char data[300];
    int len = make_data(data, sizeof data, a->id, seq);
    evs_event_data ev = { .type = "Crash",
                          .data = data,
                          .data_len = (size_t)len };
    evs_append_result r;
    int rc = evs_client_append(c, stream, expected, &ev, 1, &r);
    if (rc) {
      a->last_rc = rc;
      break;
    }
    a->acks[a->nacks].version = r.first_version;
    a->acks[a->nacks].position = r.first_position;
    a->acks[a->nacks].seq = seq;
    a->nacks++;
    expected = r.last_version;
  }
  evs_client_close(c);
  return NULL;
}

static void start_appenders(srv *s, appender *as, pthread_t *th,
                            volatile int *stop) {
  for (int t = 0; t < NTHREADS; t++) {
    as[t].s = s;
    as[t].id = (uint32_t)t;
    as[t].stop = stop;
    as[t].acks = calloc(MAXACKS, sizeof(acked));
    cr_assert_not_null(as[t].acks);
    cr_assert_eq(pthread_create(&th[t], NULL, append_loop, &as[t]), 0);
  }
}

/* Every acknowledged append is in the store, with its data. */
static void verify_acked(srv *s, appender *as, int max_extra) {
  evs_client *c = srv_client(s, NULL);
  uint64_t total = 0;
  for (int t = 0; t < NTHREADS; t++) {
    appender *a = &as[t];
    total += (uint64_t)a->nacks;
    if (a->nacks == 0)
      continue;
    char stream[32];
    snprintf(stream, sizeof stream, "crash-%u", a->id);
    evs_client_iter *it;
    cr_assert_eq(evs_client_read_stream(&it, c, stream, NULL), 0, "%s: %s",
                 stream, evs_client_last_error());
    const evs_event *e;
    for (int i = 0; i < a->nacks; i++) {
      cr_assert_eq(evs_client_iter_next(it, &e), 1,
                   "%s: acknowledged version %lld is missing", stream,
                   (long long)a->acks[i].version);
      cr_assert_eq(e->version, a->acks[i].version);
      cr_assert_eq(e->position, a->acks[i].position);
      char want[300];
      int len = make_data(want, sizeof want, a->id, a->acks[i].seq);
      cr_assert_eq(e->data.len, (size_t)len);
      cr_assert_eq(memcmp(e->data.data, want, (size_t)len), 0,
                   "%s v%lld is damaged", stream, (long long)e->version);
    }
    /* after a crash, the one append in flight may have been committed
     * without its reply; after a graceful stop, none */
    int extra = 0;
    while (evs_client_iter_next(it, &e) == 1)
      extra++;
    cr_assert_leq(extra, max_extra, "%s: %d unacknowledged events", stream,
                  extra);
    evs_client_iter_free(it);
  }
  cr_assert_gt(total, NTHREADS, "the appenders made progress");
  evs_client_close(c);
}

/* The store passes a full verify once the server is stopped. */
static void verify_store(srv *s) {
  evs_store *st = NULL;
  cr_assert_eq(evs_store_open(&st, s->data, NULL), 0, "%s", evs_last_error());
  evs_verify_report rep;
  cr_assert_eq(evs_store_verify(st, &rep, NULL, NULL), 0);
  cr_assert_eq(rep.errors, 0);
  evs_store_close(st);
}

static void free_appenders(appender *as) {
  for (int t = 0; t < NTHREADS; t++)
    free(as[t].acks);
}

TestSuite(server_crash, .timeout = 180);

Test(server_crash, kill9_loses_no_acknowledged_append) {
  srv *s = srv_start("sync", NULL);
  static appender as[NTHREADS];
  pthread_t th[NTHREADS];
  volatile int stop = 0;
  memset(as, 0, sizeof as);
  start_appenders(s, as, th, &stop);
  ms_sleep(1500);
  srv_kill9(s);
  for (int t = 0; t < NTHREADS; t++)
    pthread_join(th[t], NULL);
  for (int t = 0; t < NTHREADS; t++)
    cr_assert_neq(as[t].last_rc, 0, "appender %d saw the crash", t);
  srv_restart(s);
  verify_acked(s, as, 1);
  cr_assert_eq(srv_stop(s), 0);
  verify_store(s);
  free_appenders(as);
  srv_free(s);
}

Test(server_crash, sigterm_finishes_in_flight_appends) {
  srv *s = srv_start("sync", NULL);
  static appender as[NTHREADS];
  pthread_t th[NTHREADS];
  volatile int stop = 0;
  memset(as, 0, sizeof as);
  start_appenders(s, as, th, &stop);
  ms_sleep(1000);
  uint64_t t0 = mono_ms();
  int status = srv_stop(s);
  cr_assert_eq(status, 0, "evstored exits 0 on SIGTERM");
  cr_assert_lt(mono_ms() - t0, 15000, "and promptly");
  for (int t = 0; t < NTHREADS; t++)
    pthread_join(th[t], NULL);
  /* The server said goodbye, or the socket closed: never a silent loss. */
  for (int t = 0; t < NTHREADS; t++)
    cr_assert(as[t].last_rc == EVS_ECONN || as[t].last_rc == EVS_ECLOSED,
              "appender %d ended with %s", t,
              evs_client_err_name(as[t].last_rc));
  srv_restart(s);
  verify_acked(s, as, 0);
  cr_assert_eq(srv_stop(s), 0);
  verify_store(s);
  free_appenders(as);
  srv_free(s);
}
