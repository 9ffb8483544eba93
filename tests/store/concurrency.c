/*
 * Many threads on one store: optimistic concurrency on one stream, gap-free
 * $all with many writers, readers beside writers, asynchronous appends.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/evstore.h"
#include "testutil.h"

TestSuite(store_concurrency, .init = tu_setup, .fini = tu_teardown,
          .timeout = 120);

enum { THREADS = 8 };

typedef struct worker {
  pthread_t tid;
  int index;
  int per_thread;
  int failures;          /* unexpected errors */
  int last_error;
  int wrong_versions;    /* EVS_EWRONGVERSION retries */
  char stream[32];
} worker;

/* Loops: read the stream's version, append one event expecting it; retry
 * on EVS_EWRONGVERSION. */
static void *one_stream_worker(void *arg) {
  worker *w = arg;
  for (int i = 0; i < w->per_thread; i++) {
    char data[32];
    int len = snprintf(data, sizeof data, "%d:%d", w->index, i);
    for (int attempt = 0;; attempt++) {
      if (attempt > 100000) {
        w->failures++;
        return NULL;
      }
      evs_stream_info info;
      memset(&info, 0, sizeof info);
      int64_t expected;
      int rc = evs_stream_info_get(tu_store, "contended", &info);
      if (rc == EVS_ENOSTREAM) {
        expected = EVS_EXPECT_NO_STREAM;
      } else if (rc == 0) {
        expected = info.version;
        evs_stream_info_clear(&info);
      } else {
        w->failures++;
        w->last_error = rc;
        return NULL;
      }
      evs_event_data ev;
      tu_event(&ev, "Contended", data, (size_t)len);
      evs_append_result r;
      rc = evs_append(tu_store, "contended", expected, &ev, 1, &r);
      if (rc == 0) {
        if (r.first_version != expected + 1 &&
            !(expected == EVS_EXPECT_NO_STREAM && r.first_version == 0)) {
          w->failures++;
          return NULL;
        }
        break;
      }
      if (rc != EVS_EWRONGVERSION) {
        w->failures++;
        w->last_error = rc;
        return NULL;
      }
      w->wrong_versions++;
    }
  }
  return NULL;
}

Test(store_concurrency, eight_threads_one_stream_exact_versions) {
  enum { PER = 25 };
  worker w[THREADS];
  memset(w, 0, sizeof w);
  for (int t = 0; t < THREADS; t++) {
    w[t].index = t;
    w[t].per_thread = PER;
    cr_assert_eq(pthread_create(&w[t].tid, NULL, one_stream_worker, &w[t]), 0);
  }
  int wrong = 0;
  for (int t = 0; t < THREADS; t++) {
    pthread_join(w[t].tid, NULL);
    cr_assert_eq(w[t].failures, 0, "thread %d failed: %s: %s", t,
                 evs_err_name(w[t].last_error), evs_last_error());
    wrong += w[t].wrong_versions;
  }
  cr_log_info("EVS_EWRONGVERSION retries: %d", wrong);

  tu_evlist l = tu_stream(tu_store, "contended", NULL);
  cr_assert_eq(l.n, (size_t)THREADS * PER);
  int seen[THREADS][PER];
  memset(seen, 0, sizeof seen);
  for (size_t i = 0; i < l.n; i++) {
    cr_assert_eq(l.ev[i].version, (int64_t)i, "version gap at %zu", i);
    cr_assert_eq(l.ev[i].position, i + 1);
    int t, k;
    char buf[32];
    cr_assert_lt(l.ev[i].data_len, sizeof buf);
    memcpy(buf, l.ev[i].data, l.ev[i].data_len);
    buf[l.ev[i].data_len] = '\0';
    cr_assert_eq(sscanf(buf, "%d:%d", &t, &k), 2);
    cr_assert(t >= 0 && t < THREADS && k >= 0 && k < PER);
    seen[t][k]++;
    /* Each thread's events are in its own order. */
    if (k > 0)
      cr_assert_eq(seen[t][k - 1], 1, "thread %d event %d before %d", t, k,
                   k - 1);
  }
  for (int t = 0; t < THREADS; t++)
    for (int k = 0; k < PER; k++)
      cr_assert_eq(seen[t][k], 1, "event %d:%d stored %d times", t, k,
                   seen[t][k]);
  tu_evlist_free(&l);
}

/* Appends per_thread batches of 3 events to its own stream. */
static void *own_stream_worker(void *arg) {
  worker *w = arg;
  int64_t expected = EVS_EXPECT_NO_STREAM;
  for (int i = 0; i < w->per_thread; i++) {
    char data[3][32];
    evs_event_data ev[3];
    for (int k = 0; k < 3; k++) {
      int len = snprintf(data[k], sizeof data[k], "%d", i * 3 + k);
      tu_event(&ev[k], "Own", data[k], (size_t)len);
    }
    evs_append_result r;
    int rc = evs_append(tu_store, w->stream, expected, ev, 3, &r);
    if (rc != 0 || r.last_position != r.first_position + 2 ||
        r.first_version != (int64_t)i * 3) {
      w->failures++;
      w->last_error = rc;
      return NULL;
    }
    expected = r.last_version;
  }
  return NULL;
}

Test(store_concurrency, eight_threads_distinct_streams_gap_free) {
  enum { PER = 60 };
  worker w[THREADS];
  memset(w, 0, sizeof w);
  for (int t = 0; t < THREADS; t++) {
    w[t].index = t;
    w[t].per_thread = PER;
    snprintf(w[t].stream, sizeof w[t].stream, "writer-%d", t);
    cr_assert_eq(pthread_create(&w[t].tid, NULL, own_stream_worker, &w[t]), 0);
  }
  for (int t = 0; t < THREADS; t++) {
    pthread_join(w[t].tid, NULL);
    cr_assert_eq(w[t].failures, 0, "thread %d failed: %s", t,
                 evs_err_name(w[t].last_error));
  }
  tu_evlist all = tu_all(tu_store, NULL);
  cr_assert_eq(all.n, (size_t)THREADS * PER * 3);
  int64_t next[THREADS] = {0};
  for (size_t i = 0; i < all.n; i++) {
    cr_assert_eq(all.ev[i].position, i + 1, "gap in $all at %zu", i);
    if (i > 0)
      cr_assert_geq(all.ev[i].timestamp_ns, all.ev[i - 1].timestamp_ns);
    int t = -1;
    cr_assert_eq(sscanf(all.ev[i].stream, "writer-%d", &t), 1);
    cr_assert(t >= 0 && t < THREADS);
    cr_assert_eq(all.ev[i].version, next[t], "stream %s", all.ev[i].stream);
    char want[16];
    int len = snprintf(want, sizeof want, "%lld", (long long)next[t]);
    cr_assert_eq(all.ev[i].data_len, (size_t)len);
    cr_assert_eq(memcmp(all.ev[i].data, want, (size_t)len), 0);
    /* The 3 events of one append are adjacent in $all. */
    if (next[t] % 3 != 0)
      cr_assert_str_eq(all.ev[i - 1].stream, all.ev[i].stream);
    next[t]++;
  }
  tu_evlist_free(&all);
}

/* Appends with EVS_EXPECT_ANY to a shared stream. */
static void *any_worker(void *arg) {
  worker *w = arg;
  for (int i = 0; i < w->per_thread; i++) {
    int rc = tu_append_n(tu_store, "shared", EVS_EXPECT_ANY, 2, NULL, NULL);
    if (rc != 0) {
      w->failures++;
      w->last_error = rc;
      return NULL;
    }
  }
  return NULL;
}

Test(store_concurrency, eight_threads_expect_any_one_stream) {
  enum { PER = 40 };
  worker w[THREADS];
  memset(w, 0, sizeof w);
  for (int t = 0; t < THREADS; t++) {
    w[t].per_thread = PER;
    cr_assert_eq(pthread_create(&w[t].tid, NULL, any_worker, &w[t]), 0);
  }
  for (int t = 0; t < THREADS; t++) {
    pthread_join(w[t].tid, NULL);
    cr_assert_eq(w[t].failures, 0, "thread %d: %s", t,
                 evs_err_name(w[t].last_error));
  }
  tu_evlist l = tu_stream(tu_store, "shared", NULL);
  cr_assert_eq(l.n, (size_t)THREADS * PER * 2);
  for (size_t i = 0; i < l.n; i++) {
    cr_assert_eq(l.ev[i].version, (int64_t)i);
    cr_assert_eq(l.ev[i].position, i + 1);
    /* An append's two events are adjacent: "#0" then "#1". */
    const char *d = l.ev[i].data;
    cr_assert_eq(d[l.ev[i].data_len - 1], i % 2 ? '1' : '0');
  }
  tu_evlist_free(&l);
}

typedef struct same_batch {
  pthread_t tid;
  evs_event_data ev[4];
  evs_append_result r;
  int rc;
} same_batch;

static void *same_batch_worker(void *arg) {
  same_batch *b = arg;
  b->rc = evs_append(tu_store, "retry", EVS_EXPECT_ANY, b->ev, 4, &b->r);
  return NULL;
}

Test(store_concurrency, concurrent_retries_of_one_batch_write_once) {
  /* Eight threads send the same 4 ids at once: one writes, the others are
   * idempotent and report the same place. */
  same_batch b[THREADS];
  memset(b, 0, sizeof b);
  for (int t = 0; t < THREADS; t++) {
    for (int k = 0; k < 4; k++) {
      tu_event(&b[t].ev[k], "Once", "same", 4);
      b[t].ev[k].id = tu_uuid(500 + (uint64_t)k);
    }
    cr_assert_eq(pthread_create(&b[t].tid, NULL, same_batch_worker, &b[t]), 0);
  }
  int writers = 0;
  for (int t = 0; t < THREADS; t++) {
    pthread_join(b[t].tid, NULL);
    cr_assert_eq(b[t].rc, 0, "thread %d: %s", t, evs_err_name(b[t].rc));
    if (!b[t].r.idempotent)
      writers++;
    cr_assert_eq(b[t].r.first_version, 0);
    cr_assert_eq(b[t].r.last_version, 3);
    cr_assert_eq(b[t].r.first_position, 1);
    cr_assert_eq(b[t].r.last_position, 4);
  }
  cr_assert_eq(writers, 1, "%d threads wrote the batch", writers);
  cr_assert_eq(tu_head(tu_store), 4);
}

typedef struct reader {
  pthread_t tid;
  atomic_int *stop;
  int failures;
  int reads;
  char why[128];
} reader;

/* Reads $all over and over: what it sees must always be 1..n, gap-free. */
static void *reader_worker(void *arg) {
  reader *rd = arg;
  while (!atomic_load(rd->stop) || rd->reads == 0) {
    evs_iter *it = NULL;
    evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
    int rc = evs_read_all(&it, tu_store, &o);
    if (rc != 0) {
      snprintf(rd->why, sizeof rd->why, "read_all: %s", evs_err_name(rc));
      rd->failures++;
      return NULL;
    }
    const evs_event *ev;
    uint64_t expect = 1;
    while ((rc = evs_iter_next(it, &ev)) == 1) {
      if (ev->position != expect) {
        snprintf(rd->why, sizeof rd->why, "saw %llu, want %llu",
                 (unsigned long long)ev->position,
                 (unsigned long long)expect);
        rd->failures++;
        break;
      }
      expect++;
    }
    if (rc < 0) {
      snprintf(rd->why, sizeof rd->why, "iter_next: %s", evs_err_name(rc));
      rd->failures++;
    }
    evs_iter_free(it);
    rd->reads++;
    if (rd->failures)
      return NULL;
  }
  return NULL;
}

Test(store_concurrency, readers_see_consistent_prefixes_while_writing) {
  atomic_int stop = 0;
  reader rd[3];
  memset(rd, 0, sizeof rd);
  for (int i = 0; i < 3; i++) {
    rd[i].stop = &stop;
    cr_assert_eq(pthread_create(&rd[i].tid, NULL, reader_worker, &rd[i]), 0);
  }
  for (int i = 0; i < 150; i++)
    tu_append_ok(tu_store, i % 2 ? "w-1" : "w-2", EVS_EXPECT_ANY, 5, NULL);
  atomic_store(&stop, 1);
  for (int i = 0; i < 3; i++) {
    pthread_join(rd[i].tid, NULL);
    cr_assert_eq(rd[i].failures, 0, "reader %d: %s", i, rd[i].why);
    cr_assert_gt(rd[i].reads, 0);
  }
  cr_assert_eq(tu_head(tu_store), 750);
}

/* Completion bookkeeping for evs_append_async. */
typedef struct async_state {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  int calls_total;
  int bad_status;
  int last_status;
  size_t last_failed_part;
} async_state;

typedef struct async_req {
  async_state *st;
  evs_append_part part;
  evs_event_data ev[2];
  char stream[32];
  int calls;
  int status;
  size_t failed_part;
} async_req;

static void async_cb(int status, evs_append_part *parts, size_t nparts,
                     size_t failed_part, void *payload) {
  async_req *req = payload;
  async_state *st = req->st;
  pthread_mutex_lock(&st->mu);
  req->calls++;
  req->status = status;
  req->failed_part = failed_part;
  if (parts != &req->part || nparts != 1)
    st->bad_status++;
  st->calls_total++;
  st->done++;
  pthread_cond_broadcast(&st->cv);
  pthread_mutex_unlock(&st->mu);
}

/* Waits until st->done >= n or 20 s pass. */
static void async_wait(async_state *st, int n) {
  int64_t deadline = tu_now_ns() + 20000000000LL;
  pthread_mutex_lock(&st->mu);
  while (st->done < n && tu_now_ns() < deadline) {
    pthread_mutex_unlock(&st->mu);
    tu_sleep_ms(2);
    pthread_mutex_lock(&st->mu);
  }
  pthread_mutex_unlock(&st->mu);
}

Test(store_concurrency, append_async_calls_back_once_per_request) {
  enum { N = 100 };
  async_state st;
  memset(&st, 0, sizeof st);
  pthread_mutex_init(&st.mu, NULL);
  pthread_cond_init(&st.cv, NULL);
  async_req *req = calloc(N, sizeof *req);
  cr_assert_not_null(req);
  for (int i = 0; i < N; i++) {
    req[i].st = &st;
    snprintf(req[i].stream, sizeof req[i].stream, "async-%d", i % 10);
    tu_event(&req[i].ev[0], "Async", "a", 1);
    tu_event(&req[i].ev[1], "Async", "b", 1);
    req[i].part.stream = req[i].stream;
    req[i].part.expected = EVS_EXPECT_ANY;
    req[i].part.events = req[i].ev;
    req[i].part.count = 2;
    int rc = evs_append_async(tu_store, &req[i].part, 1, async_cb, &req[i]);
    cr_assert_eq(rc, 0, "async %d: %s: %s", i, evs_err_name(rc),
                 evs_last_error());
  }
  async_wait(&st, N);
  pthread_mutex_lock(&st.mu);
  cr_assert_eq(st.done, N, "%d of %d callbacks", st.done, N);
  cr_assert_eq(st.bad_status, 0, "callback got the wrong parts");
  pthread_mutex_unlock(&st.mu);
  uint64_t seen_positions[2 * N + 1];
  memset(seen_positions, 0, sizeof seen_positions);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(req[i].calls, 1, "request %d called back %d times", i,
                 req[i].calls);
    cr_assert_eq(req[i].status, 0, "request %d: %s", i,
                 evs_err_name(req[i].status));
    evs_append_result *r = &req[i].part.result;
    cr_assert_eq(r->last_position, r->first_position + 1);
    cr_assert_eq(r->last_version, r->first_version + 1);
    cr_assert(r->first_position >= 1 && r->last_position <= 2 * N);
    seen_positions[r->first_position]++;
    seen_positions[r->last_position]++;
    cr_assert_not(evs_uuid_is_nil(&req[i].ev[0].id));
  }
  for (int p = 1; p <= 2 * N; p++)
    cr_assert_eq(seen_positions[p], 1, "position %d reported %llu times", p,
                 (unsigned long long)seen_positions[p]);
  cr_assert_eq(tu_head(tu_store), 2 * N);
  free(req);
}

Test(store_concurrency, append_async_reports_failures_in_callback) {
  async_state st;
  memset(&st, 0, sizeof st);
  pthread_mutex_init(&st.mu, NULL);
  pthread_cond_init(&st.cv, NULL);
  tu_append_ok(tu_store, "async-x", EVS_EXPECT_ANY, 2, NULL);
  async_req req;
  memset(&req, 0, sizeof req);
  req.st = &st;
  tu_event(&req.ev[0], "Async", "a", 1);
  req.part.stream = "async-x";
  req.part.expected = 5; /* actual is 1 */
  req.part.events = req.ev;
  req.part.count = 1;
  int rc = evs_append_async(tu_store, &req.part, 1, async_cb, &req);
  if (rc != 0) {
    /* Failing fast is allowed too, then the callback must not run. */
    cr_assert_eq(rc, EVS_EWRONGVERSION, "%s", evs_err_name(rc));
    tu_sleep_ms(50);
    cr_assert_eq(req.calls, 0);
  } else {
    async_wait(&st, 1);
    cr_assert_eq(req.calls, 1);
    cr_assert_eq(req.status, EVS_EWRONGVERSION, "%s",
                 evs_err_name(req.status));
    cr_assert_eq(req.failed_part, 0);
    cr_assert_eq(req.part.result.actual_version, 1);
  }
  cr_assert_eq(tu_head(tu_store), 2);
}

Test(store_concurrency, close_waits_for_async_appends) {
  /* Close with requests in flight: every callback has run when close
   * returns, and what was acknowledged is in the store after reopening. */
  enum { N = 50 };
  async_state st;
  memset(&st, 0, sizeof st);
  pthread_mutex_init(&st.mu, NULL);
  pthread_cond_init(&st.cv, NULL);
  async_req *req = calloc(N, sizeof *req);
  cr_assert_not_null(req);
  for (int i = 0; i < N; i++) {
    req[i].st = &st;
    tu_event(&req[i].ev[0], "Async", "a", 1);
    req[i].part.stream = "closing";
    req[i].part.expected = EVS_EXPECT_ANY;
    req[i].part.events = req[i].ev;
    req[i].part.count = 1;
    int rc = evs_append_async(tu_store, &req[i].part, 1, async_cb, &req[i]);
    cr_assert_eq(rc, 0, "async %d: %s", i, evs_err_name(rc));
  }
  evs_store_close(tu_store);
  tu_store = NULL;
  pthread_mutex_lock(&st.mu);
  int done = st.done;
  pthread_mutex_unlock(&st.mu);
  cr_assert_eq(done, N, "close returned with %d of %d callbacks", done, N);
  int ok = 0;
  for (int i = 0; i < N; i++) {
    cr_assert_eq(req[i].calls, 1);
    cr_assert(req[i].status == 0 || req[i].status == EVS_ECLOSED, "%s",
              evs_err_name(req[i].status));
    ok += req[i].status == 0;
  }
  tu_store = tu_open(tu_dir, NULL);
  cr_assert_eq(tu_head(tu_store), (uint64_t)ok);
  free(req);
}
