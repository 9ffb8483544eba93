/*
 * evstore-cli — the local backend: a store directory opened with the
 * embedded library (see backend.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"

typedef struct local_backend {
  cli_backend base;
  evs_store *store;
  char err[512];
  /* Set when this command created the store: its directory, and the
   * highest directory the command created (the same or a parent; NULL
   * when the directory was there before). */
  char *created, *created_top;
} local_backend;

static local_backend *L(cli_backend *b) { return (local_backend *)b; }

/* Keeps evs_last_error() of a failed call: later calls reset it. */
static int keep(cli_backend *b, int rc) {
  if (rc < 0)
    snprintf(L(b)->err, sizeof L(b)->err, "%s", evs_last_error());
  return rc;
}

static int l_append(cli_backend *b, const char *stream, int64_t expected,
                    evs_event_data *events, size_t count,
                    evs_append_result *out) {
  return keep(b, evs_append(L(b)->store, stream, expected, events, count, out));
}

static int l_append_at(cli_backend *b, const char *stream, int64_t expected,
                       evs_event_data *events, size_t count,
                       int64_t timestamp_ns, evs_append_result *out) {
  evs_append_part part;
  memset(&part, 0, sizeof part);
  part.stream = stream;
  part.expected = expected;
  part.events = events;
  part.count = count;
  int rc = evs_append_at(L(b)->store, &part, 1, timestamp_ns, NULL);
  if (out)
    *out = part.result;
  return keep(b, rc);
}

static int drain(cli_backend *b, evs_iter *it, cli_event_fn fn,
                 void *payload, uint64_t *checkpoint) {
  const evs_event *ev;
  int rc;
  while ((rc = evs_iter_next(it, &ev)) == 1) {
    int r = fn(ev, payload);
    if (r) {
      rc = r < 0 ? r : 0;
      break;
    }
  }
  if (rc < 0)
    keep(b, rc);
  if (checkpoint)
    *checkpoint = evs_iter_checkpoint(it);
  evs_iter_free(it);
  return rc;
}

static int l_read_stream(cli_backend *b, const char *stream,
                         const evs_read_options *opts, cli_event_fn fn,
                         void *payload) {
  evs_iter *it;
  int rc = evs_read_stream(&it, L(b)->store, stream, opts);
  if (rc)
    return keep(b, rc);
  return drain(b, it, fn, payload, NULL);
}

static int l_read_all(cli_backend *b, const evs_read_all_options *opts,
                      cli_event_fn fn, void *payload, uint64_t *checkpoint) {
  evs_iter *it;
  int rc = evs_read_all(&it, L(b)->store, opts);
  if (rc)
    return keep(b, rc);
  return drain(b, it, fn, payload, checkpoint);
}

static int l_read_event(cli_backend *b, uint64_t position, cli_event_fn fn,
                        void *payload) {
  evs_event *ev;
  int rc = evs_read_event(L(b)->store, position, &ev);
  if (rc)
    return keep(b, rc);
  rc = fn(ev, payload);
  evs_event_free(ev);
  return rc < 0 ? rc : 0;
}

static int l_find_event_id(cli_backend *b, const evs_uuid *id,
                           uint64_t *position) {
  return keep(b, evs_find_event_id(L(b)->store, id, position));
}

static int l_stream_info(cli_backend *b, const char *stream,
                         evs_stream_info *out) {
  return keep(b, evs_stream_info_get(L(b)->store, stream, out));
}

static void l_stream_info_clear(cli_backend *b, evs_stream_info *info) {
  (void)b;
  evs_stream_info_clear(info);
}

static int l_streams(cli_backend *b, const char *prefix, int include_deleted,
                     cli_stream_fn fn, void *payload) {
  evs_stream_iter *it;
  int rc = evs_streams_list(&it, L(b)->store, prefix, NULL, include_deleted);
  if (rc)
    return keep(b, rc);
  evs_slice name;
  evs_stream_info info;
  while ((rc = evs_streams_next(it, &name, &info)) == 1) {
    int r = fn(name.data, name.len, &info, payload);
    if (r) {
      rc = r < 0 ? r : 0;
      break;
    }
  }
  if (rc < 0)
    keep(b, rc);
  evs_streams_free(it);
  return rc;
}

static int l_set_metadata(cli_backend *b, const char *stream,
                          const evs_stream_metadata *md) {
  return keep(b, evs_stream_set_metadata(L(b)->store, stream, md));
}

static int l_delete_stream(cli_backend *b, const char *stream,
                           int64_t expected, int hard) {
  return keep(b, evs_stream_delete(L(b)->store, stream, expected, hard));
}

static int l_head_position(cli_backend *b, uint64_t *out) {
  return keep(b, evs_head_position(L(b)->store, out));
}

static int l_head(cli_backend *b, uint64_t *position, int64_t *ts) {
  *position = 0;
  *ts = 0;
  int rc = evs_head_position(L(b)->store, position);
  evs_event *ev = NULL;
  if (rc == 0 && *position)
    rc = evs_read_event(L(b)->store, *position, &ev);
  if (ev)
    *ts = ev->timestamp_ns;
  evs_event_free(ev);
  return keep(b, rc);
}

static int l_stats(cli_backend *b, evs_stats *out, int full) {
  return keep(b, evs_store_stats(L(b)->store, out, full));
}

static int l_verify(cli_backend *b, evs_verify_report *out, evs_verify_cb cb,
                    void *payload) {
  return keep(b, evs_store_verify(L(b)->store, out, cb, payload));
}

static int l_subscribe(cli_backend *b, const evs_sub_options *opts,
                       cli_event_fn fn, cli_batch_fn batch_end, void *payload,
                       volatile sig_atomic_t *stop) {
  evs_sub *sub;
  int rc = evs_sub_open(&sub, L(b)->store, opts);
  if (rc)
    return keep(b, rc);
  while (!*stop) {
    evs_sub_batch batch;
    /* A short timeout: commits of other processes are noticed at the
     * timeout, and so is *stop. */
    rc = evs_sub_next(sub, &batch, 100);
    if (rc == EVS_ETIMEDOUT) {
      rc = 0;
      continue;
    }
    if (rc < 0) {
      keep(b, rc);
      break;
    }
    int r = 0;
    for (size_t i = 0; i < batch.count && r == 0; i++)
      r = fn(&batch.events[i], payload);
    if (r == 0 && batch.count && batch_end)
      r = batch_end(payload);
    rc = 0;
    if (r) {
      rc = r < 0 ? r : 0;
      break;
    }
  }
  evs_sub_close(sub);
  return rc;
}

static int l_state(cli_backend *b, const char *stream, int64_t as_of_ns,
                   char **out, int64_t *version) {
  char *s = NULL;
  int rc = evs_state_fold(&s, version, L(b)->store, stream, 0, as_of_ns);
  if (rc)
    return keep(b, rc);
  *out = strdup(s);
  evs_state_free(s);
  return *out ? 0 : EVS_ENOMEM;
}

/* Reports a rebuild's progress from a helper thread. */
typedef struct watcher {
  evs_runner *runner;
  const char *name;
  cli_progress_fn fn;
  void *payload;
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
    if (evs_runner_status(w->runner, w->name, &st) == 0)
      w->fn(st.rebuilding ? st.rebuild_checkpoint : st.checkpoint, st.head,
            w->payload);
    pthread_mutex_lock(&w->mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100000000L;
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

static int l_replay(cli_backend *b, const char *name, cli_progress_fn progress,
                    void *payload, evs_proj_status *out) {
  evs_projection def;
  int rc = evs_proj_builtin(&def, name);
  if (rc)
    return keep(b, rc);
  evs_views *views = NULL;
  evs_runner *runner = NULL;
  if ((rc = evs_views_open(&views, L(b)->store, NULL)) ||
      (rc = evs_runner_create(&runner, views, NULL))) {
    keep(b, rc);
    evs_views_close(views);
    return rc;
  }
  evs_proj_status before;
  int existed = evs_views_status(views, name, &before) == 0;
  rc = evs_runner_add(runner, &def);
  if (rc == 0 && existed)
    rc = evs_runner_rebuild(runner, name); /* blue/green, from position 0 */
  watcher w;
  memset(&w, 0, sizeof w);
  pthread_t tid;
  int watching = 0, inited = 0;
  if (rc == 0 && progress) {
    inited = 1;
    w.runner = runner;
    w.name = name;
    w.fn = progress;
    w.payload = payload;
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    watching = pthread_create(&tid, NULL, watch, &w) == 0;
  }
  if (rc == 0)
    rc = evs_runner_catch_up(runner);
  if (rc)
    keep(b, rc);
  if (watching) {
    pthread_mutex_lock(&w.mu);
    w.done = 1;
    pthread_cond_signal(&w.cv);
    pthread_mutex_unlock(&w.mu);
    pthread_join(tid, NULL);
  }
  if (inited) {
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
  }
  memset(out, 0, sizeof *out);
  if (rc == 0 || rc == EVS_EHANDLER)
    evs_runner_status(runner, name, out);
  evs_runner_free(runner);
  evs_views_close(views);
  return rc;
}

static const char *l_last_error(cli_backend *b) { return L(b)->err; }

/*
 * Removes a store this command created and that holds nothing (no event,
 * no stream record: not even a tombstone or metadata), with the directories
 * the command created for it, so that a failed first append or import
 * leaves no empty store behind. Only LMDB's two files are removed; anything
 * else in the directories makes rmdir fail and stops there.
 */
static void remove_if_empty(local_backend *lb) {
  evs_stats st;
  if (evs_store_stats(lb->store, &st, 0) != 0 || st.events || st.streams ||
      st.last_position)
    return;
  evs_store_close(lb->store);
  lb->store = NULL;
  size_t n = strlen(lb->created);
  char *p = malloc(n + sizeof "/lock.mdb");
  if (p == NULL)
    return;
  snprintf(p, n + sizeof "/lock.mdb", "%s/data.mdb", lb->created);
  (void)unlink(p);
  snprintf(p, n + sizeof "/lock.mdb", "%s/lock.mdb", lb->created);
  (void)unlink(p);
  if (lb->created_top == NULL) {
    free(p);
    return;
  }
  memcpy(p, lb->created, n + 1);
  size_t top = strlen(lb->created_top);
  for (;;) {
    while (n > 1 && p[n - 1] == '/')
      p[--n] = '\0';
    if (rmdir(p) != 0 || n <= top)
      break;
    while (n > 0 && p[n - 1] != '/')
      n--;
    p[n] = '\0';
    if (n < top)
      break;
  }
  free(p);
}

static void l_close(cli_backend *b, int failed) {
  if (b == NULL)
    return;
  local_backend *lb = L(b);
  if (failed && lb->created && lb->store)
    remove_if_empty(lb);
  evs_store_close(lb->store);
  free(lb->created);
  free(lb->created_top);
  free(b);
}

static const cli_backend_ops local_ops = {
    .name = "local",
    .append = l_append,
    .append_at = l_append_at,
    .read_stream = l_read_stream,
    .read_all = l_read_all,
    .read_event = l_read_event,
    .find_event_id = l_find_event_id,
    .stream_info = l_stream_info,
    .stream_info_clear = l_stream_info_clear,
    .streams = l_streams,
    .set_metadata = l_set_metadata,
    .delete_stream = l_delete_stream,
    .head_position = l_head_position,
    .head = l_head,
    .stats = l_stats,
    .verify = l_verify,
    .subscribe = l_subscribe,
    .state = l_state,
    .replay = l_replay,
    .last_error = l_last_error,
    .close = l_close,
};

/* mkdir -p for the parents of `path` (the store makes the last level).
 * *top: the first (highest) directory it created, malloc'd, or NULL. */
static int make_parents(const char *path, char **top) {
  *top = NULL;
  char *p = strdup(path);
  if (p == NULL)
    return -ENOMEM;
  size_t n = strlen(p);
  while (n > 1 && p[n - 1] == '/')
    p[--n] = '\0';
  for (char *s = p + 1; *s; s++) {
    if (*s != '/')
      continue;
    *s = '\0';
    if (mkdir(p, 0755) == 0) {
      if (*top == NULL)
        *top = strdup(p);
    } else if (errno != EEXIST) {
      int e = errno;
      free(p);
      return -e;
    }
    *s = '/';
  }
  free(p);
  return 0;
}

int cli_backend_local_open(cli_backend **out, const cli_local_config *cfg,
                           const char **detail) {
  static _Thread_local char msg[512];
  *out = NULL;
  *detail = "";
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.durability = cfg->durability;
  o.create = cfg->create;
  int rc = 0;
  /* Whether this command creates the store (and its directory). */
  struct stat sb;
  char *top = NULL;
  int dir_created = 0, created = 0;
  if (cfg->create) {
    char *dm = malloc(strlen(cfg->path) + sizeof "/data.mdb");
    if (dm == NULL)
      return EVS_ENOMEM;
    sprintf(dm, "%s/data.mdb", cfg->path);
    dir_created = stat(cfg->path, &sb) != 0 && errno == ENOENT;
    created = stat(dm, &sb) != 0 && errno == ENOENT;
    free(dm);
  }
  if (cfg->create && (rc = make_parents(cfg->path, &top)) != 0) {
    snprintf(msg, sizeof msg, "creating the parents of '%s': %s", cfg->path,
             strerror(-rc));
    *detail = msg;
    return rc;
  }
  evs_store *s = NULL;
  rc = evs_store_open(&s, cfg->path, &o);
  if (rc == -EACCES || rc == -EROFS) {
    /* No write access: a read-only open still serves the reading
     * commands. */
    o.create = 0;
    o.read_only = 1;
    if (evs_store_open(&s, cfg->path, &o) == 0)
      rc = 0;
  }
  if (rc) {
    snprintf(msg, sizeof msg, "%s", evs_last_error());
    *detail = msg;
    free(top);
    return rc;
  }
  local_backend *b = calloc(1, sizeof *b);
  if (b == NULL) {
    evs_store_close(s);
    free(top);
    return EVS_ENOMEM;
  }
  b->base.ops = &local_ops;
  b->store = s;
  if (created && !o.read_only && (b->created = strdup(cfg->path)) != NULL &&
      dir_created) {
    b->created_top = top ? top : strdup(cfg->path);
    top = NULL;
    if (b->created_top == NULL) {
      free(b->created); /* rather keep the store than remove too little */
      b->created = NULL;
    }
  }
  free(top);
  *out = &b->base;
  return 0;
}
