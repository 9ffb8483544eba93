/*
 * evstored — long operations: verify and replay.
 *
 * They run on libuv's thread pool like the other operations but may take
 * minutes, so they report as they go. The worker records its progress and
 * the problems it finds under the job's mutex and wakes the loop
 * (job_async: at once for a problem, at most every 100 ms for progress);
 * the loop sends them as "progress" frames carrying the request's rid, and
 * the tick sends one at least every second, so that a client can tell a
 * slow operation from a dead server. The final reply follows the last
 * progress frame.
 *
 * Bounds: at most EVSD_MAX_JOBS jobs run at once, and one replay (EVS_EBUSY
 * beyond); a verify sends at most EVSD_MAX_PROBLEMS problems and counts the
 * rest; a progress frame without a problem is skipped while the
 * connection's output is over the soft limit. A verify stops early when
 * its connection closes (nobody would read the result) or the server shuts
 * down; a replay always runs to the head it started with (a rebuild cut
 * short would only be redone).
 *
 * Replay rebuilds a built-in projection in the views environment of the
 * server's store (views/ in its data directory), as `evstore-cli replay`
 * does for a local store. The environment is opened by the first replay
 * and kept until the server stops: one evs_views per directory per process.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/server.h"

#define EVSD_MAX_JOBS 2u
#define EVSD_MAX_PROBLEMS 10000u
#define EVSD_JOB_NOTIFY_MS 100u
#define EVSD_JOB_HEARTBEAT_MS 1000u

struct evsd_job {
  evsd_job *next;
  evsd_conn *c;
  evsd_server *srv;
  uint64_t rid;
  evs__proto_op op;
  char *projection;
  uv_work_t work;
  int cancel; /* atomic: stop early (verify only) */
  /* shared by the worker and the loop, under mu */
  pthread_mutex_t mu;
  char **problems; /* found and not sent yet */
  size_t nproblems, cap;
  uint64_t problems_queued; /* every problem queued so far */
  uint64_t done, total;
  uint64_t notify_ms; /* the worker's last wake-up of the loop */
  /* loop thread only */
  uint64_t sent_ms;
  uint64_t sent_done;
  int sent_any;
  /* the result, written by the worker before it returns */
  int rc;
  int cancelled;
  char detail[512];
  evs_verify_report report;
  evs_proj_status status;
};

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void job_free(evsd_job *j) {
  for (size_t i = 0; i < j->nproblems; i++)
    free(j->problems[i]);
  free(j->problems);
  free(j->projection);
  pthread_mutex_destroy(&j->mu);
  free(j);
}

/* Worker: records progress (and a problem, may be NULL) and wakes the
 * loop when there is something worth sending. */
static void job_report(evsd_job *j, const char *problem, uint64_t done,
                       uint64_t total) {
  int wake = 0;
  pthread_mutex_lock(&j->mu);
  if (problem && j->problems_queued < EVSD_MAX_PROBLEMS) {
    if (j->nproblems == j->cap) {
      size_t cap = j->cap ? j->cap * 2 : 16;
      char **p = realloc(j->problems, cap * sizeof *p);
      if (p) {
        j->problems = p;
        j->cap = cap;
      }
    }
    char *copy = j->nproblems < j->cap ? strdup(problem) : NULL;
    if (copy) {
      j->problems[j->nproblems++] = copy;
      j->problems_queued++;
      wake = 1;
    }
  }
  if (problem == NULL) {
    j->done = done;
    j->total = total;
  }
  uint64_t now = mono_ms();
  if (!wake && now - j->notify_ms >= EVSD_JOB_NOTIFY_MS)
    wake = 1;
  if (wake)
    j->notify_ms = now;
  pthread_mutex_unlock(&j->mu);
  if (wake)
    uv_async_send(&j->srv->job_async);
}

/* ---- verify ------------------------------------------------------------- */

static int verify_cb(const char *problem, uint64_t done, uint64_t total,
                     void *payload) {
  evsd_job *j = payload;
  if (__atomic_load_n(&j->cancel, __ATOMIC_RELAXED)) {
    j->cancelled = 1;
    return 1;
  }
  job_report(j, problem, done, total);
  return 0;
}

static void work_verify(evsd_job *j) {
  j->rc = evs_store_verify(j->srv->store, &j->report, verify_cb, j);
  if (j->rc)
    snprintf(j->detail, sizeof j->detail, "%s", evs_last_error());
  else
    job_report(j, NULL, j->report.events_checked, j->report.events_checked);
}

/* ---- replay ------------------------------------------------------------- */

/* Reports a rebuild's progress from a helper thread (the worker is inside
 * evs_runner_catch_up()). */
typedef struct watcher {
  evsd_job *job;
  evs_runner *runner;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
} watcher;

static void *watch(void *arg) {
  watcher *w = arg;
  pthread_mutex_lock(&w->mu);
  while (!w->done) {
    pthread_mutex_unlock(&w->mu);
    evs_proj_status st;
    if (evs_runner_status(w->runner, w->job->projection, &st) == 0)
      job_report(w->job, NULL,
                 st.rebuilding ? st.rebuild_checkpoint : st.checkpoint,
                 st.head);
    pthread_mutex_lock(&w->mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)EVSD_JOB_NOTIFY_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    if (!w->done)
      pthread_cond_timedwait(&w->cv, &w->mu, &ts);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

/* The views environment, opened once (under views_mu). */
static int views_get(evsd_server *srv, evs_views **out) {
  int rc = 0;
  pthread_mutex_lock(&srv->views_mu);
  if (srv->views == NULL)
    rc = evs_views_open(&srv->views, srv->store, NULL);
  *out = srv->views;
  pthread_mutex_unlock(&srv->views_mu);
  return rc;
}

/* As evstore-cli's local replay: register the built-in projection, rebuild
 * it blue/green when it exists, and run it to the head. */
static void work_replay(evsd_job *j) {
  evs_projection def;
  evs_views *views = NULL;
  evs_runner *runner = NULL;
  int rc = evs_proj_builtin(&def, j->projection);
  if (rc == 0)
    rc = views_get(j->srv, &views);
  if (rc == 0)
    rc = evs_runner_create(&runner, views, NULL);
  if (rc) {
    j->rc = rc;
    snprintf(j->detail, sizeof j->detail, "%s", evs_last_error());
    return;
  }
  evs_proj_status before;
  int existed = evs_views_status(views, j->projection, &before) == 0;
  rc = evs_runner_add(runner, &def);
  if (rc == 0 && existed)
    rc = evs_runner_rebuild(runner, j->projection);
  watcher w;
  memset(&w, 0, sizeof w);
  w.job = j;
  w.runner = runner;
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  pthread_t tid;
  int watching = rc == 0 && pthread_create(&tid, NULL, watch, &w) == 0;
  if (rc == 0)
    rc = evs_runner_catch_up(runner);
  if (rc)
    snprintf(j->detail, sizeof j->detail, "%s", evs_last_error());
  if (watching) {
    pthread_mutex_lock(&w.mu);
    w.done = 1;
    pthread_cond_signal(&w.cv);
    pthread_mutex_unlock(&w.mu);
    pthread_join(tid, NULL);
  }
  pthread_mutex_destroy(&w.mu);
  pthread_cond_destroy(&w.cv);
  if (rc == 0 || rc == EVS_EHANDLER)
    evs_runner_status(runner, j->projection, &j->status);
  evs_runner_free(runner);
  j->rc = rc;
  if (rc == 0)
    job_report(j, NULL, j->status.checkpoint, j->status.head);
}

static void work_cb(uv_work_t *req) {
  evsd_job *j = req->data;
  if (j->op == EVS__P_VERIFY)
    work_verify(j);
  else
    work_replay(j);
}

/* ---- the loop side ------------------------------------------------------ */

static void send_progress(evsd_job *j, uint64_t done, uint64_t total,
                          const char *problem) {
  evs__buf b = EVS__BUF_INIT;
  evs__proto_frame f;
  evs__proto_frame_open(&b, &f, EVS__K_PROGRESS, j->rid, 0, NULL);
  evs__mp_w_key(&b, &f.map, "done");
  evs__mp_w_uint(&b, done);
  evs__mp_w_key(&b, &f.map, "total");
  evs__mp_w_uint(&b, total);
  if (problem) {
    evs__mp_w_key(&b, &f.map, "problem");
    evs__mp_w_cstr(&b, problem);
  }
  evs__proto_frame_close(&b, &f);
  evsd_conn_send_buf(j->c, &b);
  j->sent_ms = evsd_now_ms(j->srv);
  j->sent_done = done;
  j->sent_any = 1;
}

/* Sends what the worker recorded: every queued problem, then the progress
 * if it moved (or `force`), unless the client is not reading. */
static void job_flush(evsd_job *j, int force) {
  pthread_mutex_lock(&j->mu);
  char **probs = j->problems;
  size_t np = j->nproblems;
  j->problems = NULL;
  j->nproblems = j->cap = 0;
  uint64_t done = j->done, total = j->total;
  pthread_mutex_unlock(&j->mu);
  evsd_conn *c = j->c;
  for (size_t i = 0; i < np; i++) {
    if (!c->closing)
      send_progress(j, done, total, probs[i]);
    free(probs[i]);
  }
  free(probs);
  if (c->closing || evsd_conn_output_full(c))
    return;
  if (force || !j->sent_any || done != j->sent_done)
    send_progress(j, done, total, NULL);
}

static void unlink_job(evsd_server *srv, evsd_job *j) {
  for (evsd_job **pp = &srv->jobs; *pp; pp = &(*pp)->next) {
    if (*pp == j) {
      *pp = j->next;
      break;
    }
  }
  srv->njobs--;
  if (j->op == EVS__P_REPLAY)
    srv->replay_running = 0;
}

static void reply_verify(evsd_job *j) {
  evsd_conn *c = j->c;
  if (j->rc == 0 && j->cancelled) {
    evsd_conn_send_error(c, EVS__K_REPLY, j->rid,
                         j->srv->stopping ? EVS_ECLOSED : EVS_ECANCELED,
                         j->srv->stopping ? "the server is shutting down"
                                          : "verify was canceled");
    return;
  }
  if (j->rc) {
    evsd_conn_send_error(c, EVS__K_REPLY, j->rid, j->rc, j->detail);
    return;
  }
  evs__buf b = EVS__BUF_INIT;
  evs__proto_frame f;
  evs__proto_frame_open(&b, &f, EVS__K_REPLY, j->rid, 0, NULL);
  evs__mp_w_key(&b, &f.map, "events_checked");
  evs__mp_w_uint(&b, j->report.events_checked);
  evs__mp_w_key(&b, &f.map, "streams_checked");
  evs__mp_w_uint(&b, j->report.streams_checked);
  evs__mp_w_key(&b, &f.map, "errors");
  evs__mp_w_uint(&b, j->report.errors);
  evs__proto_frame_close(&b, &f);
  evsd_conn_send_buf(c, &b);
}

static void reply_replay(evsd_job *j) {
  evsd_conn *c = j->c;
  if (j->rc && j->rc != EVS_EHANDLER) {
    evsd_conn_send_error(c, EVS__K_REPLY, j->rid, j->rc, j->detail);
    return;
  }
  const evs_proj_status *st = &j->status;
  evs__buf b = EVS__BUF_INIT;
  evs__proto_frame f;
  evs__proto_frame_open(&b, &f, EVS__K_REPLY, j->rid, j->rc,
                        j->rc ? st->error : NULL);
  evs__mp_w_key(&b, &f.map, "generation");
  evs__mp_w_uint(&b, st->generation);
  evs__mp_w_key(&b, &f.map, "checkpoint");
  evs__mp_w_uint(&b, st->checkpoint);
  evs__mp_w_key(&b, &f.map, "head");
  evs__mp_w_uint(&b, st->head);
  evs__mp_w_key(&b, &f.map, "events_applied");
  evs__mp_w_uint(&b, st->events_applied);
  if (j->rc) {
    evs__mp_w_key(&b, &f.map, "error_position");
    evs__mp_w_uint(&b, st->error_position);
  }
  evs__proto_frame_close(&b, &f);
  evsd_conn_send_buf(c, &b);
}

static void after_work_cb(uv_work_t *req, int status) {
  (void)status;
  evsd_job *j = req->data;
  evsd_conn *c = j->c;
  evsd_server *srv = j->srv;
  unlink_job(srv, j);
  if (!c->closing) {
    job_flush(j, 0);
    if (j->op == EVS__P_VERIFY)
      reply_verify(j);
    else
      reply_replay(j);
  }
  evsd_log(EVSD_INFO, "event=%s_done conn=%llu error=%s",
           evs__proto_op_name(j->op), (unsigned long long)c->id,
           evs__proto_err_name(j->rc));
  evsd_conn_op_done(c);
  evsd_conn_unref(c);
  job_free(j);
  evsd_server_pending_done(srv);
}

void evsd_job_start(evsd_conn *c, const evs__proto_request *req) {
  evsd_server *srv = c->srv;
  int replay = req->op == EVS__P_REPLAY;
  if (!evsd_auth_all(c->token, 0) || (replay && !evsd_auth_all(c->token, 1))) {
    EVSD_ADD(srv->metrics.auth_failures, 1);
    char msg[200];
    snprintf(msg, sizeof msg,
             "this token (%s of the tokens file) may not %s: it needs %s",
             c->token ? c->token->label : "?",
             replay ? "rebuild projections" : "verify the store",
             replay ? "rw:*" : "read:*");
    evsd_log(EVSD_INFO, "event=denied conn=%llu peer=%s op=%s",
             (unsigned long long)c->id, c->peer, evs__proto_op_name(req->op));
    evsd_conn_send_error(c, EVS__K_REPLY, req->rid, EVS_EAUTH, msg);
    return;
  }
  if (srv->njobs >= EVSD_MAX_JOBS || (replay && srv->replay_running)) {
    evsd_conn_send_error(c, EVS__K_REPLY, req->rid, EVS_EBUSY,
                         replay && srv->replay_running
                             ? "a replay is already running on this server"
                             : "too many verify and replay operations are "
                               "running on this server");
    return;
  }
  if (replay && evs__proto_has_nul(req->projection)) {
    evsd_conn_send_error(c, EVS__K_REPLY, req->rid, EVS_ENOTFOUND,
                         "unknown projection");
    return;
  }
  evsd_job *j = calloc(1, sizeof *j);
  if (j == NULL)
    goto oom;
  pthread_mutex_init(&j->mu, NULL);
  if (replay) {
    j->projection = malloc(req->projection.len + 1);
    if (j->projection == NULL) {
      job_free(j);
      goto oom;
    }
    memcpy(j->projection, req->projection.data, req->projection.len);
    j->projection[req->projection.len] = '\0';
    srv->replay_running = 1;
  }
  j->c = c;
  j->srv = srv;
  j->rid = req->rid;
  j->op = req->op;
  j->work.data = j;
  j->sent_ms = evsd_now_ms(srv);
  j->next = srv->jobs;
  srv->jobs = j;
  srv->njobs++;
  c->inflight++;
  evsd_conn_ref(c);
  srv->pending++;
  char q[300];
  evsd_log(
      EVSD_INFO, "event=%s_started conn=%llu%s%s", evs__proto_op_name(req->op),
      (unsigned long long)c->id, replay ? " projection=" : "",
      replay ? evsd_q(q, sizeof q, j->projection, strlen(j->projection)) : "");
  uv_queue_work(srv->loop, &j->work, work_cb, after_work_cb);
  return;
oom:
  evsd_conn_send_error(c, EVS__K_REPLY, req->rid, EVS_ENOMEM, "out of memory");
}

void evsd_jobs_flush(evsd_server *srv) {
  for (evsd_job *j = srv->jobs; j; j = j->next)
    if (!j->c->closing)
      job_flush(j, 0);
}

void evsd_jobs_tick(evsd_server *srv, uint64_t now) {
  for (evsd_job *j = srv->jobs; j; j = j->next) {
    if (j->c->closing)
      continue;
    if (now - j->sent_ms >= EVSD_JOB_HEARTBEAT_MS)
      job_flush(j, 1);
  }
}

void evsd_jobs_cancel(evsd_server *srv, const evsd_conn *c) {
  for (evsd_job *j = srv->jobs; j; j = j->next)
    if (c == NULL || j->c == c)
      __atomic_store_n(&j->cancel, 1, __ATOMIC_RELAXED);
}
