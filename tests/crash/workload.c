/*
 * The child: appending threads that record every append in the ledgers.
 *
 * Each thread loops until the process is killed, choosing at random among:
 * single events and batches to streams it alone writes (exact expected
 * versions, so they always pass), multi-stream appends, appends to streams
 * every thread shares (EVS_EXPECT_ANY, EVS_EXPECT_EXISTS, or an exact
 * version read just before, which may lose the race and fail with
 * EVS_EWRONGVERSION), asynchronous appends, and idempotent retries of its
 * last acknowledged append. Payloads are small JSON-like text, larger
 * compressible text, random bytes and the occasional 20-100 KB event
 * (LMDB overflow pages).
 *
 * Before issuing an append the thread writes its intent (every event: id,
 * stream, place, payload lengths and hash) to its intent ledger and
 * fdatasync()s it; after the store returns it writes the acknowledgement
 * (versions, positions) or the refusal to its ack ledger and fdatasync()s
 * it, before starting the next append.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crash.h"

#define CR_OWN_STREAMS 4
#define CR_SHARED_STREAMS 8
#define CR_MAX_EVENTS 64
#define CR_MAX_PARTS 4

typedef struct cr_thread {
  const cr_child_opts *o;
  const cr_backend *b;
  unsigned t;
  uint64_t rng;
  uint64_t seq; /* appends started by this thread */
  int fd_intent;
  int fd_ack;
  int64_t own_version[CR_OWN_STREAMS];
  /* The last acknowledged plain append to an own stream, for a retry. */
  cr_rec last[CR_MAX_EVENTS];
  size_t last_n;
} cr_thread;

/* One append being built: records (intent, then ack) and event buffers. */
typedef struct cr_append {
  cr_rec rec[CR_MAX_EVENTS];
  evs_event_data ev[CR_MAX_EVENTS];
  void *buf[CR_MAX_EVENTS];
  evs_append_part parts[CR_MAX_PARTS];
  size_t nparts;
  size_t n;
} cr_append;

static unsigned cr_threads_ready;
static pthread_mutex_t cr_ready_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cr_ready_cv = PTHREAD_COND_INITIALIZER;

static void cr_die(const cr_thread *th, const char *what, int rc) {
  fprintf(stderr,
          "evs_crash child (iteration %u, thread %u): %s: %s (%s): %s\n",
          th->o->iteration, th->t, what, evs_err_name(rc), evs_strerror(rc),
          evs_last_error());
  _exit(3);
}

static uint64_t cr_between(cr_thread *th, uint64_t lo, uint64_t hi) {
  return lo + cr_rand(&th->rng) % (hi - lo + 1);
}

static void cr_new_id(cr_thread *th, uint8_t id[16]) {
  /* iteration (4 bytes), thread, a process-wide counter, random: unique in a
   * store generation and never nil. */
  static _Atomic uint64_t counter;
  uint64_t c = ++counter;
  uint32_t it = th->o->iteration;
  id[0] = (uint8_t)(it >> 24);
  id[1] = (uint8_t)(it >> 16);
  id[2] = (uint8_t)(it >> 8);
  id[3] = (uint8_t)it;
  id[4] = (uint8_t)th->t;
  for (int i = 0; i < 7; i++)
    id[5 + i] = (uint8_t)(c >> (8 * (6 - i)));
  uint64_t r = cr_rand(&th->rng);
  memcpy(id + 12, &r, 4);
  id[12] |= 0x80;
}

static uint32_t cr_pick_data_len(cr_thread *th) {
  uint64_t r = cr_rand(&th->rng) % 100;
  if (r < 70)
    return (uint32_t)cr_between(th, 8, 200);
  if (r < 90)
    return (uint32_t)cr_between(th, 256, 4000);
  if (r < 98)
    return (uint32_t)cr_between(th, 1, 8192);
  return (uint32_t)cr_between(th, 20000, 100000);
}

static void cr_stream_own(char *out, size_t cap, unsigned t, unsigned k) {
  snprintf(out, cap, "own-t%u-%u", t, k);
}

static void cr_stream_shared(char *out, size_t cap, unsigned k) {
  snprintf(out, cap, "shared-%u", k);
}

/* Starts a new part of `n` events to `stream`. */
static void cr_add_part(cr_thread *th, cr_append *a, const char *stream,
                        int64_t expected, size_t n) {
  evs_append_part *p = &a->parts[a->nparts];
  memset(p, 0, sizeof *p);
  p->stream = a->rec[a->n].stream; /* filled in below */
  p->expected = expected;
  p->events = &a->ev[a->n];
  p->count = n;
  for (size_t i = 0; i < n; i++) {
    cr_rec *r = &a->rec[a->n + i];
    memset(r, 0, sizeof *r);
    r->kind = CR_INTENT;
    r->type_idx = (uint16_t)(cr_rand(&th->rng) % (CR_NTYPES - 1));
    r->part = (uint32_t)a->nparts;
    r->part_index = (uint32_t)i;
    r->part_count = (uint32_t)n;
    r->data_len = cr_pick_data_len(th);
    r->meta_len = cr_rand(&th->rng) % 2 ? 0 : (uint32_t)cr_between(th, 10, 120);
    cr_new_id(th, r->id);
    r->expected = expected;
    r->version = -1;
    snprintf(r->stream, sizeof r->stream, "%s", stream);
  }
  a->n += n;
  a->nparts++;
}

/* Fills in the append-wide fields and builds the events from the records
 * (payloads regenerated from the ids). */
static void cr_build(cr_thread *th, cr_append *a) {
  uint64_t append_id = ((uint64_t)th->o->iteration << 40) |
                       ((uint64_t)th->t << 32) | (th->seq & 0xffffffffu);
  for (size_t i = 0; i < a->n; i++) {
    cr_rec *r = &a->rec[i];
    r->append_id = append_id;
    r->index = (uint32_t)i;
    r->count = (uint32_t)a->n;
    r->nparts = (uint32_t)a->nparts;
    size_t len = (size_t)r->data_len + r->meta_len;
    a->buf[i] = malloc(len ? len : 1);
    if (a->buf[i] == NULL)
      cr_die(th, "malloc", EVS_ENOMEM);
    uint8_t *data = a->buf[i];
    cr_fill_payload(data, r->data_len, r->id, 0);
    cr_fill_payload(data + r->data_len, r->meta_len, r->id, 1);
    r->data_hash = cr_hash(data, r->data_len);
    evs_event_data *e = &a->ev[i];
    memset(e, 0, sizeof *e);
    memcpy(e->id.bytes, r->id, 16);
    e->type = cr_types[r->type_idx];
    e->data = data;
    e->data_len = r->data_len;
    e->metadata = r->meta_len ? data + r->data_len : NULL;
    e->metadata_len = r->meta_len;
    cr_rec_seal(r);
  }
}

static void cr_free_append(cr_append *a) {
  for (size_t i = 0; i < a->n; i++)
    free(a->buf[i]);
  a->n = 0;
  a->nparts = 0;
}

static void cr_write(cr_thread *th, int intent, const cr_rec *recs, size_t n) {
  int rc = cr_ledger_write(intent ? th->fd_intent : th->fd_ack, recs, n,
                           th->o->ledger_sync);
  if (rc)
    cr_die(th, "writing the ledger", rc);
}

/* Writes the ack (or nack) records of `a` from the parts' results. */
static void cr_outcome(cr_thread *th, cr_append *a, int rc) {
  cr_rec out[CR_MAX_EVENTS];
  for (size_t i = 0; i < a->n; i++) {
    out[i] = a->rec[i];
    cr_rec *r = &out[i];
    if (rc == 0) {
      const evs_append_result *res = &a->parts[r->part].result;
      r->kind = CR_ACK;
      r->version = res->first_version + r->part_index;
      r->position = res->first_position + r->part_index;
      r->timestamp = res->timestamp_ns;
    } else {
      r->kind = CR_NACK;
      r->rc = rc;
    }
    cr_rec_seal(r);
  }
  cr_write(th, 0, out, a->n);
}

/* Writes ack records for a one-part append that claim versions
 * expected+1.. and no position (only the test-only faults do this). */
static void cr_ack_versions(cr_thread *th, const cr_append *a,
                            int64_t expected) {
  cr_rec out[CR_MAX_EVENTS];
  for (size_t i = 0; i < a->n; i++) {
    out[i] = a->rec[i];
    out[i].kind = CR_ACK;
    out[i].version = expected + 1 + (int64_t)i;
    out[i].position = 0;
    cr_rec_seal(&out[i]);
  }
  cr_write(th, 0, out, a->n);
}

/* Issues the append as it was built. */
static int cr_issue(cr_thread *th, cr_append *a, int async) {
  if (a->nparts == 1 && !async) {
    evs_append_part *p = &a->parts[0];
    return th->b->append(th->b->ctx, p->stream, p->expected, p->events,
                         p->count, &p->result);
  }
  size_t failed = 0;
  if (async && th->b->append_async)
    return th->b->append_async(th->b->ctx, a->parts, a->nparts, &failed);
  return th->b->append_multi(th->b->ctx, a->parts, a->nparts, &failed);
}

/* The checks every result must pass in the child itself. */
static void cr_check_result(const cr_thread *th, const cr_append *a) {
  for (size_t p = 0; p < a->nparts; p++) {
    const evs_append_part *pt = &a->parts[p];
    const evs_append_result *r = &pt->result;
    if (r->last_version - r->first_version != (int64_t)pt->count - 1 ||
        r->last_position - r->first_position != pt->count - 1 ||
        (pt->expected >= EVS_EXPECT_NO_STREAM &&
         r->first_version != pt->expected + 1)) {
      fprintf(stderr,
              "evs_crash child (thread %u): append to '%s' (expected %lld, "
              "%zu events) returned versions %lld..%lld at %llu..%llu\n",
              th->t, pt->stream, (long long)pt->expected, pt->count,
              (long long)r->first_version, (long long)r->last_version,
              (unsigned long long)r->first_position,
              (unsigned long long)r->last_position);
      _exit(3);
    }
  }
}

static void cr_ready(void) {
  pthread_mutex_lock(&cr_ready_mu);
  cr_threads_ready++;
  pthread_cond_broadcast(&cr_ready_cv);
  pthread_mutex_unlock(&cr_ready_mu);
}

/* A plain append to one of the thread's own streams (always passes). */
static void cr_op_own(cr_thread *th, cr_append *a, size_t n) {
  unsigned k = (unsigned)(cr_rand(&th->rng) % CR_OWN_STREAMS);
  char stream[64];
  cr_stream_own(stream, sizeof stream, th->t, k);
  int64_t expected = th->own_version[k];
  cr_add_part(th, a, stream, expected, n);
  cr_build(th, a);
  cr_fault fault = th->o->fault;
  int phantom = fault == CR_FAULT_PHANTOM && th->seq % 64 == 0;
  cr_write(th, 1, a->rec, a->n);
  if (phantom || fault == CR_FAULT_ACK_EARLY) {
    /* Test-only: an ack for events the store has not (yet) committed. */
    cr_ack_versions(th, a, expected);
    if (phantom)
      return; /* never sent */
  }
  int rc;
  if (fault == CR_FAULT_SPLIT && n >= 2) {
    /* Test-only: one intended append issued as two. */
    size_t half = n / 2;
    evs_append_result r1, r2;
    rc = th->b->append(th->b->ctx, stream, expected, a->ev, half, &r1);
    if (rc == 0)
      rc = th->b->append(th->b->ctx, stream, r1.last_version, a->ev + half,
                         n - half, &r2);
    if (rc)
      cr_die(th, "split append", rc);
    th->own_version[k] = r2.last_version;
    /* Positions may not be consecutive: ack the versions only. */
    cr_ack_versions(th, a, expected);
    return;
  }
  rc = cr_issue(th, a, 0);
  if (rc)
    cr_die(th, "append to an own stream", rc);
  cr_check_result(th, a);
  th->own_version[k] = a->parts[0].result.last_version;
  if (fault != CR_FAULT_ACK_EARLY)
    cr_outcome(th, a, 0);
  memcpy(th->last, a->rec, a->n * sizeof a->rec[0]);
  th->last_n = a->n;
}

/* A multi-stream append: 2..4 distinct own streams, sometimes a shared one
 * whose exact expected version may be stale (then nothing is written). */
static void cr_op_multi(cr_thread *th, cr_append *a, int async) {
  size_t nparts = (size_t)cr_between(th, 2, CR_MAX_PARTS);
  unsigned first = (unsigned)(cr_rand(&th->rng) % CR_OWN_STREAMS);
  int shared = cr_rand(&th->rng) % 2 == 0;
  unsigned own_k[CR_MAX_PARTS];
  size_t nown = shared ? nparts - 1 : nparts;
  for (size_t p = 0; p < nown; p++) {
    unsigned k = (first + (unsigned)p) % CR_OWN_STREAMS;
    char stream[64];
    cr_stream_own(stream, sizeof stream, th->t, k);
    own_k[p] = k;
    cr_add_part(th, a, stream, th->own_version[k],
                (size_t)cr_between(th, 1, 6));
  }
  if (shared) {
    char stream[64];
    cr_stream_shared(stream, sizeof stream,
                     (unsigned)(cr_rand(&th->rng) % CR_SHARED_STREAMS));
    int64_t expected = EVS_EXPECT_ANY;
    if (cr_rand(&th->rng) % 3 == 0) {
      int rc = th->b->stream_version(th->b->ctx, stream, &expected);
      if (rc)
        cr_die(th, "stream version", rc);
    }
    cr_add_part(th, a, stream, expected, (size_t)cr_between(th, 1, 4));
  }
  cr_build(th, a);
  cr_write(th, 1, a->rec, a->n);
  int rc = cr_issue(th, a, async);
  if (rc == EVS_EWRONGVERSION && shared) {
    cr_outcome(th, a, rc);
    return;
  }
  if (rc)
    cr_die(th, async ? "async multi-stream append" : "multi-stream append", rc);
  cr_check_result(th, a);
  for (size_t p = 0; p < nown; p++)
    th->own_version[own_k[p]] = a->parts[p].result.last_version;
  cr_outcome(th, a, 0);
}

/* An append to a shared stream with ANY, EXISTS or a just-read version. */
static void cr_op_shared(cr_thread *th, cr_append *a, int how) {
  char stream[64];
  cr_stream_shared(stream, sizeof stream,
                   (unsigned)(cr_rand(&th->rng) % CR_SHARED_STREAMS));
  int64_t expected = EVS_EXPECT_ANY;
  if (how == 1)
    expected = EVS_EXPECT_EXISTS;
  if (how == 2) {
    int rc = th->b->stream_version(th->b->ctx, stream, &expected);
    if (rc)
      cr_die(th, "stream version", rc);
  }
  cr_add_part(th, a, stream, expected, (size_t)cr_between(th, 1, 8));
  cr_build(th, a);
  cr_write(th, 1, a->rec, a->n);
  int rc = cr_issue(th, a, 0);
  if (rc == EVS_EWRONGVERSION && how != 0) {
    cr_outcome(th, a, rc);
    return;
  }
  if (rc)
    cr_die(th, "append to a shared stream", rc);
  cr_check_result(th, a);
  cr_outcome(th, a, 0);
}

/* Sends the last acknowledged own-stream append again: the store must
 * recognise the retry and return the original result. */
static void cr_op_retry(cr_thread *th, cr_append *a) {
  if (th->last_n == 0 || th->o->fault != CR_FAULT_NONE)
    return;
  const cr_rec *l = th->last;
  a->n = th->last_n;
  a->nparts = 1;
  memcpy(a->rec, l, th->last_n * sizeof *l);
  a->parts[0].stream = a->rec[0].stream;
  a->parts[0].expected = l[0].expected;
  a->parts[0].events = a->ev;
  a->parts[0].count = th->last_n;
  cr_build(th, a); /* the same ids, so the same payloads */
  evs_append_result r;
  int rc = th->b->append(th->b->ctx, a->rec[0].stream, l[0].expected, a->ev,
                         a->n, &r);
  if (rc)
    cr_die(th, "idempotent retry", rc);
  /* The records in th->last are intents; their ack is in the ledger. The
   * retry must land where the first attempt did: right after `expected`. */
  if (!r.idempotent || r.first_version != l[0].expected + 1 ||
      r.last_version != l[0].expected + (int64_t)th->last_n) {
    fprintf(stderr,
            "evs_crash child: retry of %zu events to '%s' (expected %lld) "
            "gave idempotent=%d versions %lld..%lld\n",
            th->last_n, l[0].stream, (long long)l[0].expected, r.idempotent,
            (long long)r.first_version, (long long)r.last_version);
    _exit(3);
  }
}

static void *cr_thread_main(void *arg) {
  cr_thread *th = arg;
  char path[4096];
  cr_ledger_path(path, sizeof path, th->o->ledger_dir, th->o->iteration,
                 th->t, 1);
  th->fd_intent = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  cr_ledger_path(path, sizeof path, th->o->ledger_dir, th->o->iteration,
                 th->t, 0);
  th->fd_ack = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (th->fd_intent < 0 || th->fd_ack < 0)
    cr_die(th, "opening the ledgers", -errno);
  /* Own streams survive from the previous iterations of this store: pick
   * up their versions as the reopened store reports them. */
  for (unsigned k = 0; k < CR_OWN_STREAMS; k++) {
    char stream[64];
    cr_stream_own(stream, sizeof stream, th->t, k);
    int rc = th->b->stream_version(th->b->ctx, stream, &th->own_version[k]);
    if (rc)
      cr_die(th, "stream version", rc);
  }
  cr_append *a = calloc(1, sizeof *a);
  if (a == NULL)
    cr_die(th, "calloc", EVS_ENOMEM);
  for (;;) {
    uint64_t r = cr_rand(&th->rng) % 100;
    if (th->seq == 0 && th->o->fault == CR_FAULT_PHANTOM)
      r = 0; /* the phantom comes first */
    if (r < 30)
      cr_op_own(th, a, 1);
    else if (r < 50)
      cr_op_own(th, a, (size_t)cr_between(th, 2, 16));
    else if (r < 60)
      cr_op_multi(th, a, 0);
    else if (r < 65)
      cr_op_multi(th, a, 1);
    else if (r < 80)
      cr_op_shared(th, a, 0);
    else if (r < 88)
      cr_op_shared(th, a, 2);
    else if (r < 93)
      cr_op_shared(th, a, 1);
    else
      cr_op_retry(th, a);
    cr_free_append(a);
    if (th->seq++ == 0)
      cr_ready();
  }
  return NULL;
}

int cr_child_run(const cr_child_opts *o, const cr_backend *b) {
  unsigned n = o->threads;
  cr_thread *th = calloc(n, sizeof *th);
  pthread_t *tid = calloc(n, sizeof *tid);
  if (th == NULL || tid == NULL) {
    fprintf(stderr, "evs_crash child: out of memory\n");
    return 3;
  }
  for (unsigned i = 0; i < n; i++) {
    th[i].o = o;
    th[i].b = b;
    th[i].t = i;
    th[i].rng = o->seed ^ ((uint64_t)o->iteration << 20) ^ ((uint64_t)i << 8) ^
                0x2545f4914f6cdd1dull;
    if (pthread_create(&tid[i], NULL, cr_thread_main, &th[i]) != 0) {
      fprintf(stderr, "evs_crash child: pthread_create failed\n");
      return 3;
    }
  }
  pthread_mutex_lock(&cr_ready_mu);
  while (cr_threads_ready < n)
    pthread_cond_wait(&cr_ready_cv, &cr_ready_mu);
  pthread_mutex_unlock(&cr_ready_mu);
  if (o->ready_fd >= 0) {
    char c = 'r';
    if (write(o->ready_fd, &c, 1) != 1) {
      perror("evs_crash child: ready pipe");
      return 3;
    }
  }
  /* The threads never stop: the parent kills the process. */
  for (;;)
    pause();
}

/* ---- the library backend ------------------------------------------------- */

static int cr_lib_append(void *ctx, const char *stream, int64_t expected,
                         evs_event_data *events, size_t count,
                         evs_append_result *out) {
  return evs_append(ctx, stream, expected, events, count, out);
}

typedef struct cr_async_wait {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  int status;
  size_t failed;
} cr_async_wait;

static void cr_async_cb(int status, evs_append_part *parts, size_t nparts,
                        size_t failed_part, void *payload) {
  (void)parts;
  (void)nparts;
  cr_async_wait *w = payload;
  pthread_mutex_lock(&w->mu);
  w->status = status;
  w->failed = failed_part;
  w->done = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static int cr_lib_append_multi(void *ctx, evs_append_part *parts,
                               size_t nparts, size_t *failed_part) {
  return evs_append_multi(ctx, parts, nparts, failed_part);
}

/* evs_append_async, waited for: the path evstored uses. */
static int cr_lib_append_async(void *ctx, evs_append_part *parts,
                               size_t nparts, size_t *failed_part) {
  cr_async_wait w;
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  w.done = 0;
  w.status = 0;
  w.failed = 0;
  int rc = evs_append_async(ctx, parts, nparts, cr_async_cb, &w);
  if (rc == 0) {
    pthread_mutex_lock(&w.mu);
    while (!w.done)
      pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    rc = w.status;
    *failed_part = w.failed;
  }
  pthread_mutex_destroy(&w.mu);
  pthread_cond_destroy(&w.cv);
  return rc;
}

static int cr_lib_stream_version(void *ctx, const char *stream,
                                 int64_t *version) {
  evs_stream_info info;
  int rc = evs_stream_info_get(ctx, stream, &info);
  if (rc == EVS_ENOSTREAM) {
    *version = EVS_VERSION_NONE;
    return 0;
  }
  if (rc)
    return rc;
  *version = info.version;
  evs_stream_info_clear(&info);
  return 0;
}

evs_store_options cr_store_options(evs_durability durability) {
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.durability = durability;
  /* Start small so that the map grows (and is remapped) under the kills. */
  o.map_size = 2u * 1024u * 1024u;
  return o;
}

int cr_child_library(const cr_child_opts *o) {
  evs_store_options so = cr_store_options(o->durability);
  evs_store *s = NULL;
  int rc = evs_store_open(&s, o->store_dir, &so);
  if (rc) {
    fprintf(stderr, "evs_crash child: opening '%s': %s: %s\n", o->store_dir,
            evs_err_name(rc), evs_last_error());
    return 3;
  }
  cr_backend b = {s, cr_lib_append, cr_lib_append_multi, cr_lib_append_async,
                  cr_lib_stream_version};
  return cr_child_run(o, &b);
}
