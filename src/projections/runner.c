/*
 * evstore — the projection runner.
 *
 * Each projection follows the log with a subscription and applies each
 * batch in ONE write transaction of the views environment that also
 * updates its catalog entry (checkpoint, error, generation): the view and
 * the checkpoint move together, so a crash at any moment leaves a view
 * that contains exactly the events up to its checkpoint, and a restart
 * resumes after it. That is the exactly-once guarantee.
 *
 * Every batch transaction first re-reads the catalog entry and checks that
 * it still says what this runner last committed (same checkpoint, slot and
 * generation). If not (a rebuild was restarted, or another process runs the
 * same projection on the same views), the batch is dropped and the runner
 * resynchronises from the catalog: a batch is never applied on top of a
 * state it was not read for.
 *
 * A handler error aborts the batch's transaction; the batch is then applied
 * again up to the failing event, with the checkpoint just before it and the
 * error recorded, in one transaction. The projection stops there; the
 * others go on.
 *
 * Blue/green rebuild: a second subscription from position 0 fills the
 * inactive slot while the active one keeps being updated and queried; the
 * rebuild batch that reaches the head also switches the active slot, moves
 * the checkpoint to the rebuild's and empties the old slot, in the same
 * transaction.
 *
 * Threads: with evs_runner_start() each projection has a thread that owns
 * its subscriptions; requests from other threads (stop, rebuild, resume)
 * are flags under r->mu plus an interrupt of the subscription's wait.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "projections/internal.h"
#include "store/internal.h"

#define EVS__RC_HANDLER 1 /* a handler failed: see ctx->fail_* */
/* A live checkpoint that only moved over skipped events is written when it
 * has moved this far (or when the runner stops or finishes a catch-up):
 * a sparse filter does not cost a views commit per unrelated commit. */
#define EVS__LAZY_CP 4096u
#define EVS__RC_RESYNC 2 /* the catalog moved: resynchronise */

enum {
  EVS__LIVE = 0,
  EVS__REBUILD = 1
};

/* cat.failed values. */
#define EVS__FAILED_LIVE 1
#define EVS__FAILED_REBUILD 2

typedef struct evs__proj {
  evs_runner *r;
  char name[EVS__PROJ_NAME_MAX + 1];
  char *category, *prefix, *type;
  evs_proj_handler handler;
  void *payload;
  MDB_dbi dbi[2];

  /* Owned by whoever runs the projection (its thread, or catch_up). */
  evs_sub *live, *rb;
  int need_sync;

  /* Shared, under r->mu. */
  evs__cat cat;  /* as last committed */
  uint64_t seen; /* live: last position considered (>= cat.checkpoint) */
  int rebuild_req, resume_req, stop_req;
  int ctl_pending; /* a rebuild/resume request not yet committed */
  int running;
  uint64_t events_applied;
  pthread_t thread;
  int has_thread;
} evs__proj;

struct evs_runner {
  evs_views *v;
  evs_store *s;
  uint32_t max_events, max_bytes;
  int idle_ms; /* -1 = wait for a local commit */
  pthread_mutex_t mu;
  pthread_cond_t cv; /* broadcast on every commit and request */
  evs__proj **p;
  size_t n, cap;
  int started;
  int busy; /* evs_runner_catch_up in progress */
};

/* ---- helpers ----------------------------------------------------------------
 */

static void evs__deadline(struct timespec *ts, int ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

static evs__proj *evs__find(evs_runner *r, const char *name) {
  if (name == NULL)
    return NULL;
  for (size_t i = 0; i < r->n; i++)
    if (strcmp(r->p[i]->name, name) == 0)
      return r->p[i];
  return NULL;
}

static int evs__open_sub(evs__proj *p, uint64_t cp, evs_sub **out) {
  evs_sub_options o = EVS_SUB_OPTIONS_INIT;
  o.category = p->category;
  o.stream_prefix = p->prefix;
  o.event_type = p->type;
  o.checkpoint = cp;
  o.max_batch_events = p->r->max_events;
  o.max_batch_bytes = p->r->max_bytes;
  return evs_sub_open(out, p->r->s, &o);
}

/* Swaps a projection's subscriptions (under r->mu, so that interrupts never
 * see a closed one) and closes the old ones. */
static void evs__set_subs(evs__proj *p, evs_sub *live, evs_sub *rb) {
  pthread_mutex_lock(&p->r->mu);
  evs_sub *ol = p->live, *orb = p->rb;
  p->live = live;
  p->rb = rb;
  pthread_mutex_unlock(&p->r->mu);
  evs_sub_close(ol);
  evs_sub_close(orb);
}

static void evs__publish(evs__proj *p, const evs__cat *c, uint64_t applied) {
  pthread_mutex_lock(&p->r->mu);
  p->cat = *c;
  if (p->seen < c->checkpoint)
    p->seen = c->checkpoint;
  p->events_applied += applied;
  pthread_cond_broadcast(&p->r->cv);
  pthread_mutex_unlock(&p->r->mu);
}

/* Reads the catalog and reopens the subscriptions from it. */
static int evs__sync(evs__proj *p) {
  MDB_txn *txn;
  int rc = evs__views_read_begin(p->r->v, &txn);
  if (rc)
    return rc;
  evs__cat c;
  rc = evs__cat_get(p->r->v, txn, p->name, &c);
  evs__views_read_end(p->r->v, txn);
  if (rc == EVS_ENOTFOUND)
    return evs__err(rc, "projection '%s' was dropped from its views", p->name);
  if (rc)
    return rc;
  evs_sub *live = NULL, *rb = NULL;
  rc = evs__open_sub(p, c.checkpoint, &live);
  if (rc == 0 && c.rebuilding)
    rc = evs__open_sub(p, c.rebuild_checkpoint, &rb);
  if (rc) {
    evs_sub_close(live);
    evs_sub_close(rb);
    return rc;
  }
  evs__set_subs(p, live, rb);
  pthread_mutex_lock(&p->r->mu);
  p->seen = c.checkpoint;
  pthread_mutex_unlock(&p->r->mu);
  evs__publish(p, &c, 0);
  p->need_sync = 0;
  return 0;
}

/* ---- batches --------------------------------------------------------------
 */

typedef struct evs__batch_ctx {
  evs__proj *p;
  int kind;
  const evs_event *events;
  size_t n_apply;  /* events to apply */
  uint64_t cp;     /* checkpoint to write */
  int caught_up;   /* a rebuild batch reaching the head switches */
  evs__cat expect; /* the catalog as this runner last committed it */
  /* failure to record (failing = 1) */
  int failing;
  int fail_code;
  uint64_t fail_pos;
  char fail_msg[256];
  /* a handler failed during the transaction at this index */
  size_t fail_index;
  /* results */
  evs__cat out;
  int switched;
} evs__batch_ctx;

static int evs__batch_fn(evs_views *v, MDB_txn *txn, void *vctx) {
  evs__batch_ctx *ctx = vctx;
  evs__proj *p = ctx->p;
  evs__cat c;
  int rc = evs__cat_get(v, txn, p->name, &c);
  if (rc == EVS_ENOTFOUND)
    return evs__err(rc, "projection '%s' was dropped from its views", p->name);
  if (rc)
    return rc;
  const evs__cat *e = &ctx->expect;
  if (c.generation != e->generation || c.active != e->active ||
      c.rebuilding != e->rebuilding || c.failed != e->failed)
    return EVS__RC_RESYNC;
  if (ctx->kind == EVS__LIVE &&
      (c.checkpoint != e->checkpoint || c.failed != 0))
    return EVS__RC_RESYNC;
  if (ctx->kind == EVS__REBUILD &&
      (!c.rebuilding || c.rebuild_checkpoint != e->rebuild_checkpoint ||
       c.failed == EVS__FAILED_REBUILD))
    return EVS__RC_RESYNC;

  unsigned slot = ctx->kind == EVS__LIVE ? c.active : 1u - c.active;
  evs_view_txn vt;
  memset(&vt, 0, sizeof vt);
  vt.v = v;
  vt.txn = txn;
  vt.dbi = p->dbi[slot];
  vt.write = 1;
  for (size_t i = 0; i < ctx->n_apply; i++) {
    evs__clear_error();
    int hr = p->handler(&vt, &ctx->events[i], p->payload);
    if (vt.fatal) {
      /* Storage failure inside the handler: the transaction is poisoned. */
      if (vt.fatal == MDB_MAP_FULL)
        return EVS_EMAPFULL;
      return evs__views_lmdb_err(vt.fatal, "writing a view");
    }
    if (hr != 0) {
      ctx->fail_index = i;
      ctx->fail_code = hr < 0 ? hr : EVS_EHANDLER;
      ctx->fail_pos = ctx->events[i].position;
      const char *d = evs_last_error();
      if (d && d[0])
        snprintf(ctx->fail_msg, sizeof ctx->fail_msg, "%s", d);
      else
        snprintf(ctx->fail_msg, sizeof ctx->fail_msg, "handler returned %d",
                 hr);
      return EVS__RC_HANDLER;
    }
  }
  if (ctx->kind == EVS__LIVE)
    c.checkpoint = ctx->cp;
  else
    c.rebuild_checkpoint = ctx->cp;
  if (ctx->failing) {
    c.failed = ctx->kind == EVS__LIVE ? EVS__FAILED_LIVE : EVS__FAILED_REBUILD;
    c.error_code = ctx->fail_code;
    c.error_position = ctx->fail_pos;
    snprintf(c.error, sizeof c.error, "%s", ctx->fail_msg);
  } else if (ctx->kind == EVS__REBUILD && ctx->caught_up) {
    unsigned old = c.active;
    c.active = (uint8_t)(1u - old);
    c.checkpoint = ctx->cp;
    c.rebuilding = 0;
    c.rebuild_checkpoint = 0;
    c.generation++;
    if (c.failed == EVS__FAILED_LIVE) {
      /* The failed view is the one being replaced. */
      c.failed = 0;
      c.error_code = 0;
      c.error_position = 0;
      c.error[0] = '\0';
    }
    int mrc = mdb_drop(txn, p->dbi[old], 0);
    if (mrc == MDB_MAP_FULL)
      return EVS_EMAPFULL;
    if (mrc)
      return evs__views_lmdb_err(mrc, "emptying the replaced view");
    ctx->switched = 1;
  }
  rc = evs__cat_put(v, txn, p->name, &c);
  if (rc)
    return rc;
  ctx->out = c;
  return 0;
}

/* Records a failure that is not a handler's (reading the log, writing the
 * views) in the catalog if possible, and in memory anyway. */
static int evs__record_failure(evs__proj *p, int kind, int code, uint64_t pos) {
  evs__batch_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.p = p;
  ctx.kind = kind;
  pthread_mutex_lock(&p->r->mu);
  ctx.expect = p->cat;
  pthread_mutex_unlock(&p->r->mu);
  ctx.cp =
      kind == EVS__LIVE ? ctx.expect.checkpoint : ctx.expect.rebuild_checkpoint;
  ctx.failing = 1;
  ctx.fail_code = code;
  ctx.fail_pos = pos;
  snprintf(ctx.fail_msg, sizeof ctx.fail_msg, "%s",
           evs_last_error()[0] ? evs_last_error() : evs_strerror(code));
  int rc = kind == EVS__REBUILD && ctx.expect.failed == EVS__FAILED_REBUILD
               ? EVS__RC_RESYNC
               : evs__views_write(p->r->v, evs__batch_fn, &ctx);
  if (rc == 0) {
    evs__publish(p, &ctx.out, 0);
  } else {
    evs__cat c = ctx.expect;
    c.failed = kind == EVS__LIVE ? EVS__FAILED_LIVE : EVS__FAILED_REBUILD;
    c.error_code = code;
    c.error_position = pos;
    snprintf(c.error, sizeof c.error, "%s", ctx.fail_msg);
    evs__publish(p, &c, 0);
  }
  p->need_sync = 1;
  return 1;
}

/*
 * Applies one batch. Returns 0 (applied, or dropped for a resync), 1 when
 * the projection failed, or a negative code for a failure that could not
 * be recorded.
 */
static int evs__apply(evs__proj *p, int kind, const evs_sub_batch *b) {
  evs__batch_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.p = p;
  ctx.kind = kind;
  ctx.events = b->events;
  ctx.n_apply = b->count;
  ctx.cp = b->checkpoint;
  ctx.caught_up = b->caught_up;
  pthread_mutex_lock(&p->r->mu);
  ctx.expect = p->cat;
  pthread_mutex_unlock(&p->r->mu);
  for (;;) {
    int rc = evs__views_write(p->r->v, evs__batch_fn, &ctx);
    if (rc == 0)
      break;
    if (rc == EVS__RC_RESYNC) {
      p->need_sync = 1;
      return 0;
    }
    if (rc == EVS__RC_HANDLER) {
      /* Apply the events before the failing one, and record the error,
       * in one transaction. */
      size_t i = ctx.fail_index;
      ctx.n_apply = i;
      ctx.cp = ctx.events[i].position - 1;
      ctx.failing = 1;
      continue;
    }
    uint64_t pos = b->count ? b->events[0].position : ctx.cp + 1;
    return evs__record_failure(p, kind, rc, pos);
  }
  if (ctx.switched) {
    /* The new view's checkpoint replaces the old view's progress. */
    pthread_mutex_lock(&p->r->mu);
    p->seen = ctx.out.checkpoint;
    pthread_mutex_unlock(&p->r->mu);
  }
  evs__publish(p, &ctx.out, ctx.n_apply);
  if (ctx.failing || ctx.switched)
    p->need_sync = 1;
  return ctx.failing ? 1 : 0;
}

/* One batch of one subscription: read, then apply. */
static int evs__batch(evs__proj *p, int kind, int timeout_ms) {
  evs_sub *sub = kind == EVS__LIVE ? p->live : p->rb;
  pthread_mutex_lock(&p->r->mu);
  evs__cat c = p->cat;
  pthread_mutex_unlock(&p->r->mu);
  uint64_t persisted = kind == EVS__LIVE ? c.checkpoint : c.rebuild_checkpoint;
  evs_sub_batch b;
  int n = evs_sub_next(sub, &b, timeout_ms);
  if (n == EVS_ETIMEDOUT) {
    /* Nothing to deliver, but a filter may have skipped a long way. */
    memset(&b, 0, sizeof b);
    b.checkpoint = evs_sub_checkpoint(sub);
    n = 0;
  } else if (n == EVS_ECLOSED || n == EVS_ECANCELED) {
    return n;
  } else if (n < 0) {
    return evs__record_failure(p, kind, n, persisted + 1);
  }
  if (n == 0 && !(kind == EVS__REBUILD && b.caught_up)) {
    if (b.checkpoint <= persisted)
      return 0;
    if (kind == EVS__LIVE && b.checkpoint - persisted < EVS__LAZY_CP) {
      pthread_mutex_lock(&p->r->mu);
      if (b.checkpoint > p->seen)
        p->seen = b.checkpoint;
      pthread_cond_broadcast(&p->r->cv);
      pthread_mutex_unlock(&p->r->mu);
      return 0;
    }
  }
  return evs__apply(p, kind, &b);
}

/* Writes a live checkpoint that only moved over skipped events. */
static int evs__flush_seen(evs__proj *p) {
  pthread_mutex_lock(&p->r->mu);
  evs__cat c = p->cat;
  uint64_t seen = p->seen;
  pthread_mutex_unlock(&p->r->mu);
  if (p->need_sync || c.failed || seen <= c.checkpoint)
    return 0;
  evs_sub_batch b;
  memset(&b, 0, sizeof b);
  b.checkpoint = seen;
  return evs__apply(p, EVS__LIVE, &b);
}

/* ---- control ----------------------------------------------------------------
 */

typedef struct evs__ctl_ctx {
  evs__proj *p;
  int rebuild, resume;
  evs__cat out;
} evs__ctl_ctx;

static int evs__ctl_fn(evs_views *v, MDB_txn *txn, void *vctx) {
  evs__ctl_ctx *ctx = vctx;
  evs__proj *p = ctx->p;
  evs__cat c;
  int rc = evs__cat_get(v, txn, p->name, &c);
  if (rc == EVS_ENOTFOUND)
    return evs__err(rc, "projection '%s' was dropped from its views", p->name);
  if (rc)
    return rc;
  if (ctx->resume || (ctx->rebuild && c.failed == EVS__FAILED_REBUILD)) {
    c.failed = 0;
    c.error_code = 0;
    c.error_position = 0;
    c.error[0] = '\0';
  }
  if (ctx->rebuild) {
    int mrc = mdb_drop(txn, p->dbi[1u - c.active], 0);
    if (mrc == MDB_MAP_FULL)
      return EVS_EMAPFULL;
    if (mrc)
      return evs__views_lmdb_err(mrc, "emptying the view to rebuild");
    c.rebuilding = 1;
    c.rebuild_checkpoint = 0;
  }
  rc = evs__cat_put(v, txn, p->name, &c);
  ctx->out = c;
  return rc;
}

/*
 * One step of a projection: handle requests, then one rebuild batch (if a
 * rebuild is in progress) and one live batch. Returns 0 to go on, 1 when
 * the projection has failed and waits for a request, or a negative code
 * (the store is closing).
 */
static int evs__step(evs__proj *p, int block_ms) {
  evs_runner *r = p->r;
  pthread_mutex_lock(&r->mu);
  int rebuild = p->rebuild_req, resume = p->resume_req;
  p->rebuild_req = p->resume_req = 0;
  pthread_mutex_unlock(&r->mu);
  int rc;
  if (rebuild || resume) {
    evs__ctl_ctx ctx = { p, rebuild, resume, { 0 } };
    rc = evs__views_write(r->v, evs__ctl_fn, &ctx);
    if (rc == 0)
      evs__publish(p, &ctx.out, 0);
    pthread_mutex_lock(&r->mu);
    if (!p->rebuild_req && !p->resume_req)
      p->ctl_pending = 0;
    pthread_mutex_unlock(&r->mu);
    if (rc)
      return evs__record_failure(p, EVS__LIVE, rc, 0);
    p->need_sync = 1;
  }
  if (p->need_sync) {
    rc = evs__sync(p);
    if (rc)
      return evs__record_failure(p, EVS__LIVE, rc, 0);
  }
  pthread_mutex_lock(&r->mu);
  evs__cat c = p->cat;
  pthread_mutex_unlock(&r->mu);
  if (c.failed == EVS__FAILED_REBUILD ||
      (c.failed == EVS__FAILED_LIVE && !c.rebuilding))
    return 1;
  if (c.rebuilding) {
    rc = evs__batch(p, EVS__REBUILD, 0);
    if (rc)
      return rc;
    if (p->need_sync)
      return 0;
    if (c.failed)
      return 0; /* only the rebuild runs */
  }
  pthread_mutex_lock(&r->mu);
  c = p->cat;
  pthread_mutex_unlock(&r->mu);
  return evs__batch(p, EVS__LIVE, c.rebuilding ? 0 : block_ms);
}

static int evs__has_request(evs__proj *p) {
  return p->stop_req || p->rebuild_req || p->resume_req;
}

static void *evs__thread(void *arg) {
  evs__proj *p = arg;
  evs_runner *r = p->r;
  for (;;) {
    pthread_mutex_lock(&r->mu);
    if (p->stop_req) {
      pthread_mutex_unlock(&r->mu);
      break;
    }
    p->running = 1;
    pthread_mutex_unlock(&r->mu);
    int rc = evs__step(p, r->idle_ms);
    if (rc != 0) {
      /* Failed (or the store is closing): idle until a request. */
      pthread_mutex_lock(&r->mu);
      p->running = 0;
      while (!evs__has_request(p))
        pthread_cond_wait(&r->cv, &r->mu);
      pthread_mutex_unlock(&r->mu);
    }
  }
  evs__flush_seen(p);
  pthread_mutex_lock(&r->mu);
  p->running = 0;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  return NULL;
}

/* Wakes a projection's thread (r->mu held). */
static void evs__poke(evs__proj *p) {
  evs__sub_interrupt(p->live);
  evs__sub_interrupt(p->rb);
  pthread_cond_broadcast(&p->r->cv);
}

static int evs__spawn(evs__proj *p) {
  int e = pthread_create(&p->thread, NULL, evs__thread, p);
  if (e)
    return evs__err(-e, "starting a projection thread: %s", strerror(e));
  p->has_thread = 1;
  return 0;
}

/* ---- API
 * ---------------------------------------------------------------------- */

int evs_runner_create(evs_runner **out, evs_views *v,
                      const evs_runner_options *opts) {
  evs__clear_error();
  if (out == NULL || v == NULL)
    return evs__err(EVS_EINVAL, "NULL output or views");
  *out = NULL;
  evs_runner_options o = EVS_RUNNER_OPTIONS_INIT;
  if (opts) {
    if (opts->version != EVS_RUNNER_OPTIONS_VERSION)
      return evs__err(EVS_EINVAL, "unknown runner options version %u",
                      opts->version);
    o = *opts;
  }
  evs_runner *r = calloc(1, sizeof *r);
  if (r == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  r->v = v;
  r->s = evs__views_store(v);
  r->max_events = o.max_batch_events ? o.max_batch_events : 512;
  r->max_bytes = o.max_batch_bytes ? o.max_batch_bytes : 4u * 1024 * 1024;
  if (o.foreign_check_ms == 0)
    r->idle_ms = EVS__FOREIGN_CHECK_MS;
  else if (o.foreign_check_ms == UINT32_MAX)
    r->idle_ms = -1;
  else
    r->idle_ms =
        o.foreign_check_ms > INT32_MAX ? INT32_MAX : (int)o.foreign_check_ms;
  pthread_mutex_init(&r->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cv, &ca);
  pthread_condattr_destroy(&ca);
  *out = r;
  return 0;
}

static void evs__proj_free(evs__proj *p) {
  if (p == NULL)
    return;
  evs_sub_close(p->live);
  evs_sub_close(p->rb);
  free(p->category);
  free(p->prefix);
  free(p->type);
  free(p);
}

static char *evs__dup_or_null(const char *s) {
  return s && s[0] ? strdup(s) : NULL;
}

int evs_runner_add(evs_runner *r, const evs_projection *def) {
  evs__clear_error();
  if (r == NULL || def == NULL)
    return evs__err(EVS_EINVAL, "NULL runner or definition");
  if (def->version != EVS_PROJECTION_VERSION)
    return evs__err(EVS_EINVAL, "unknown projection version %u", def->version);
  if (!evs__proj_name_ok(def->name))
    return evs__err(EVS_EINVAL,
                    "projection names are 1..%d bytes of "
                    "[A-Za-z0-9._-]",
                    EVS__PROJ_NAME_MAX);
  if (def->handler == NULL)
    return evs__err(EVS_EINVAL, "projection '%s' has no handler", def->name);
  int rc;
  if (def->category && def->category[0] &&
      (rc = evs__check_name(def->category, "category", NULL)))
    return rc;
  if (def->event_type && def->event_type[0] &&
      (rc = evs__check_name(def->event_type, "event type", NULL)))
    return rc;
  pthread_mutex_lock(&r->mu);
  int dup = evs__find(r, def->name) != NULL;
  pthread_mutex_unlock(&r->mu);
  if (dup)
    return evs__err(EVS_EBUSY, "projection '%s' is already registered",
                    def->name);
  evs__proj *p = calloc(1, sizeof *p);
  if (p == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  p->r = r;
  snprintf(p->name, sizeof p->name, "%s", def->name);
  p->category = evs__dup_or_null(def->category);
  p->prefix = evs__dup_or_null(def->stream_prefix);
  p->type = evs__dup_or_null(def->event_type);
  p->handler = def->handler;
  p->payload = def->payload;
  p->need_sync = 1;
  if ((def->category && def->category[0] && !p->category) ||
      (def->stream_prefix && def->stream_prefix[0] && !p->prefix) ||
      (def->event_type && def->event_type[0] && !p->type)) {
    evs__proj_free(p);
    return evs__err(EVS_ENOMEM, "out of memory");
  }
  rc = evs__views_ensure(r->v, p->name, p->dbi);
  if (rc == 0) {
    /* Load the catalog now so that status is right before the first run. */
    MDB_txn *txn;
    rc = evs__views_read_begin(r->v, &txn);
    if (rc == 0) {
      rc = evs__cat_get(r->v, txn, p->name, &p->cat);
      evs__views_read_end(r->v, txn);
    }
  }
  if (rc) {
    evs__proj_free(p);
    return rc;
  }
  pthread_mutex_lock(&r->mu);
  if (evs__find(r, p->name)) {
    pthread_mutex_unlock(&r->mu);
    evs__proj_free(p);
    return evs__err(EVS_EBUSY, "projection '%s' is already registered",
                    def->name);
  }
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 8;
    /* An array of pointers: sizeof *r->p is the pointer's size. */
    size_t bytes = cap * sizeof *r->p; /* NOLINT(bugprone-sizeof-expression) */
    evs__proj **np = realloc(r->p, bytes);
    if (np == NULL) {
      pthread_mutex_unlock(&r->mu);
      evs__proj_free(p);
      return evs__err(EVS_ENOMEM, "out of memory");
    }
    r->p = np;
    r->cap = cap;
  }
  r->p[r->n++] = p;
  rc = r->started ? evs__spawn(p) : 0;
  pthread_mutex_unlock(&r->mu);
  return rc;
}

int evs_runner_start(evs_runner *r) {
  evs__clear_error();
  if (r == NULL)
    return evs__err(EVS_EINVAL, "NULL runner");
  pthread_mutex_lock(&r->mu);
  if (r->started || r->busy) {
    pthread_mutex_unlock(&r->mu);
    return evs__err(EVS_EBUSY, "runner already running");
  }
  r->started = 1;
  int rc = 0;
  for (size_t i = 0; i < r->n && rc == 0; i++) {
    r->p[i]->stop_req = 0;
    rc = evs__spawn(r->p[i]);
  }
  pthread_mutex_unlock(&r->mu);
  if (rc)
    evs_runner_stop(r);
  return rc;
}

void evs_runner_stop(evs_runner *r) {
  if (r == NULL)
    return;
  pthread_mutex_lock(&r->mu);
  if (!r->started) {
    pthread_mutex_unlock(&r->mu);
    return;
  }
  for (size_t i = 0; i < r->n; i++) {
    r->p[i]->stop_req = 1;
    evs__poke(r->p[i]);
  }
  pthread_mutex_unlock(&r->mu);
  for (size_t i = 0; i < r->n; i++) {
    evs__proj *p = r->p[i];
    if (p->has_thread) {
      pthread_join(p->thread, NULL);
      p->has_thread = 0;
    }
  }
  pthread_mutex_lock(&r->mu);
  for (size_t i = 0; i < r->n; i++)
    r->p[i]->stop_req = 0;
  r->started = 0;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

void evs_runner_free(evs_runner *r) {
  if (r == NULL)
    return;
  evs_runner_stop(r);
  for (size_t i = 0; i < r->n; i++)
    evs__proj_free(r->p[i]);
  free(r->p);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  free(r);
}

int evs_runner_catch_up(evs_runner *r) {
  evs__clear_error();
  if (r == NULL)
    return evs__err(EVS_EINVAL, "NULL runner");
  pthread_mutex_lock(&r->mu);
  if (r->started || r->busy) {
    pthread_mutex_unlock(&r->mu);
    return evs__err(EVS_EBUSY, "runner is running");
  }
  r->busy = 1;
  size_t n = r->n;
  pthread_mutex_unlock(&r->mu);
  uint64_t head;
  int rc = evs_head_position(r->s, &head);
  const char *failed = NULL;
  for (size_t i = 0; i < n && rc == 0; i++) {
    evs__proj *p = r->p[i];
    for (;;) {
      int sr = evs__step(p, 0);
      if (sr < 0) {
        rc = sr;
        break;
      }
      pthread_mutex_lock(&r->mu);
      evs__cat c = p->cat;
      uint64_t seen = p->seen;
      int pending = p->rebuild_req || p->resume_req;
      pthread_mutex_unlock(&r->mu);
      if (sr == 1) {
        failed = p->name;
        break;
      }
      if (!pending && !p->need_sync && !c.rebuilding && seen >= head) {
        sr = evs__flush_seen(p);
        if (sr < 0)
          rc = sr;
        else if (sr == 1)
          failed = p->name;
        break;
      }
    }
  }
  pthread_mutex_lock(&r->mu);
  r->busy = 0;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  if (rc == 0 && failed)
    rc = evs__err(EVS_EHANDLER, "projection '%s' has failed (see its status)",
                  failed);
  return rc;
}

int evs_runner_wait(evs_runner *r, const char *name, uint64_t position,
                    int timeout_ms) {
  evs__clear_error();
  if (r == NULL)
    return evs__err(EVS_EINVAL, "NULL runner");
  struct timespec dl;
  if (timeout_ms >= 0)
    evs__deadline(&dl, timeout_ms);
  pthread_mutex_lock(&r->mu);
  evs__proj *p = evs__find(r, name);
  int rc = 0;
  if (p == NULL) {
    rc = evs__err(EVS_ENOTFOUND, "no projection '%s' in this runner",
                  name ? name : "(null)");
  } else {
    for (;;) {
      if (p->seen >= position && !p->cat.failed)
        break;
      if (p->cat.checkpoint >= position)
        break;
      if (p->cat.failed && !p->ctl_pending) {
        rc = evs__err(EVS_EHANDLER,
                      "projection '%s' has failed at "
                      "position %llu: %s",
                      p->name, (unsigned long long)p->cat.error_position,
                      p->cat.error);
        break;
      }
      if (!r->started && !r->busy) {
        rc = evs__err(EVS_ESTOPPED, "the runner is not running");
        break;
      }
      if (timeout_ms < 0) {
        pthread_cond_wait(&r->cv, &r->mu);
      } else if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) == ETIMEDOUT) {
        if (p->cat.checkpoint >= position || p->seen >= position)
          break;
        rc = evs__err(EVS_ETIMEDOUT,
                      "projection '%s' at %llu, waiting "
                      "for %llu",
                      p->name, (unsigned long long)p->cat.checkpoint,
                      (unsigned long long)position);
        break;
      }
    }
  }
  pthread_mutex_unlock(&r->mu);
  return rc;
}

int evs_runner_status(evs_runner *r, const char *name, evs_proj_status *out) {
  evs__clear_error();
  if (r == NULL || out == NULL)
    return evs__err(EVS_EINVAL, "NULL runner or output");
  pthread_mutex_lock(&r->mu);
  evs__proj *p = evs__find(r, name);
  if (p == NULL) {
    pthread_mutex_unlock(&r->mu);
    return evs__err(EVS_ENOTFOUND, "no projection '%s' in this runner",
                    name ? name : "(null)");
  }
  evs__cat_status(&p->cat, out);
  if (!p->cat.failed && p->seen > out->checkpoint)
    out->checkpoint = p->seen;
  out->running = p->running;
  out->events_applied = p->events_applied;
  if (p->rebuild_req) {
    out->rebuilding = 1;
    out->rebuild_checkpoint = 0;
  }
  pthread_mutex_unlock(&r->mu);
  uint64_t head = 0;
  if (evs_head_position(r->s, &head) == 0) {
    out->head = head;
    out->behind = head > out->checkpoint ? head - out->checkpoint : 0;
  }
  return 0;
}

static int evs__request(evs_runner *r, const char *name, int rebuild) {
  evs__clear_error();
  if (r == NULL)
    return evs__err(EVS_EINVAL, "NULL runner");
  pthread_mutex_lock(&r->mu);
  evs__proj *p = evs__find(r, name);
  if (p == NULL) {
    pthread_mutex_unlock(&r->mu);
    return evs__err(EVS_ENOTFOUND, "no projection '%s' in this runner",
                    name ? name : "(null)");
  }
  if (r->started || r->busy) {
    /* A thread (or a catch-up) runs the projection: it takes the request
     * at its next step. */
    if (rebuild)
      p->rebuild_req = 1;
    else
      p->resume_req = 1;
    p->ctl_pending = 1;
    evs__poke(p);
    pthread_mutex_unlock(&r->mu);
    return 0;
  }
  /* Nothing runs it: record the request in the catalog now, so that it
   * holds even if the process dies before the next run. */
  r->busy = 1;
  pthread_mutex_unlock(&r->mu);
  evs__ctl_ctx ctx = { p, rebuild, !rebuild, { 0 } };
  int rc = evs__views_write(r->v, evs__ctl_fn, &ctx);
  if (rc == 0) {
    evs__publish(p, &ctx.out, 0);
    p->need_sync = 1;
  }
  pthread_mutex_lock(&r->mu);
  r->busy = 0;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  return rc;
}

int evs_runner_rebuild(evs_runner *r, const char *name) {
  return evs__request(r, name, 1);
}

int evs_runner_resume(evs_runner *r, const char *name) {
  return evs__request(r, name, 0);
}
