/*
 * evstored — the server: listener, loop handles, commit notifications,
 * the once-a-second tick, and graceful shutdown.
 *
 * Shutdown (SIGINT/SIGTERM): stop accepting and stop reading requests;
 * every request already started runs to its end (appends are committed by
 * the store's writer) and is answered; then each connection gets a
 * "goodbye" and is closed. The loop ends when no connection and no
 * operation is left; main() then closes the store. A second signal closes
 * the connections at once (operations in flight still finish before the
 * store is closed, so nothing acknowledged is lost).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/server.h"

/* Connections still flushing this long after a shutdown began are closed. */
#define EVSD_STOP_GRACE_MS 10000u

static void close_handles(evsd_server *srv);

/* Called by the store's committing thread with its commit mutex held:
 * only an atomic store and a wake-up. */
static void on_commit(uint64_t head, void *payload) {
  evsd_server *srv = payload;
  EVSD_SET(srv->head, head);
  uv_async_send(&srv->commit_async);
}

/* Called by the store's group-commit leader for every group that wrote
 * events (with the store's commit mutex held; the histogram has its own
 * mutex): the exact number of write requests the group committed. */
static void on_group(const evs__group_info *g, void *payload) {
  evsd_server *srv = payload;
  evsd_hist_observe(&srv->metrics, &srv->metrics.group_size,
                    (double)g->requests);
}

static void on_commit_async(uv_async_t *h) {
  evsd_subs_on_commit(h->data);
}

static void on_done_async(uv_async_t *h) {
  evsd_appends_drain(h->data);
}

static void on_job_async(uv_async_t *h) {
  evsd_jobs_flush(h->data);
}

static void maybe_finish(evsd_server *srv) {
  if (srv->stopping && !srv->handles_closed && srv->nconns == 0 &&
      srv->pending == 0)
    close_handles(srv);
}

void evsd_server_pending_done(evsd_server *srv) {
  srv->pending--;
  maybe_finish(srv);
}

static void on_connection(uv_stream_t *l, int status) {
  evsd_server *srv = l->data;
  if (status < 0) {
    evsd_log(EVSD_WARN, "event=accept_failed error=%s", uv_err_name(status));
    return;
  }
  evsd_conn_accept(srv);
}

static void begin_stop(evsd_server *srv, const char *why) {
  EVSD_SET(srv->stopping, 1); /* read by the HTTP thread */
  srv->stop_ms = evsd_now_ms(srv);
  evsd_log(EVSD_INFO, "event=stopping reason=%s connections=%u", why,
           srv->nconns);
  evsd_jobs_cancel(srv, NULL);
  if (!uv_is_closing((uv_handle_t *)&srv->listener))
    uv_close((uv_handle_t *)&srv->listener, NULL);
  evsd_conn *next;
  for (evsd_conn *c = srv->conns; c; c = next) {
    next = c->next;
    if (c->closing)
      continue;
    evsd_subs_cancel_all(c);
    if (!c->handshaken)
      evsd_conn_close(c, "the server is shutting down");
    else if (c->inflight == 0)
      evsd_conn_goodbye(c, EVS_ECLOSED, "the server is shutting down");
    else if (c->reading) {
      uv_read_stop((uv_stream_t *)&c->tcp);
      c->reading = 0;
    }
  }
  maybe_finish(srv);
}

static void on_signal(uv_signal_t *h, int signum) {
  evsd_server *srv = h->data;
  const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
  if (!srv->stopping) {
    begin_stop(srv, name);
    return;
  }
  evsd_log(EVSD_WARN, "event=second_signal signal=%s action=close_now", name);
  evsd_conn *next;
  for (evsd_conn *c = srv->conns; c; c = next) {
    next = c->next;
    evsd_conn_close(c, "the server is shutting down now");
  }
}

static void on_tick(uv_timer_t *t) {
  evsd_server *srv = t->data;
  uint64_t now = evsd_now_ms(srv);
  evsd_conn *next;
  for (evsd_conn *c = srv->conns; c; c = next) {
    next = c->next;
    evsd_conn_tick(c, now);
    if (srv->stopping && !c->closing && now - srv->stop_ms > EVSD_STOP_GRACE_MS)
      evsd_conn_close(c, "shutdown grace period over");
  }
  evsd_jobs_tick(srv, now);
  uint64_t n, lag_max, lag_sum;
  evsd_subs_gauges(srv, &n, &lag_max, &lag_sum);
  EVSD_SET(srv->metrics.sub_lag_max, lag_max);
  EVSD_SET(srv->metrics.sub_lag_sum, lag_sum);
  maybe_finish(srv);
}

static void close_handles(evsd_server *srv) {
  srv->handles_closed = 1;
  /* No commit callback may touch commit_async once it is closing. */
  evs__remove_commit_listener(srv->store, &srv->commit_listener);
  uv_close((uv_handle_t *)&srv->done_async, NULL);
  uv_close((uv_handle_t *)&srv->commit_async, NULL);
  uv_close((uv_handle_t *)&srv->job_async, NULL);
  uv_close((uv_handle_t *)&srv->tick, NULL);
  uv_close((uv_handle_t *)&srv->sig_int, NULL);
  uv_close((uv_handle_t *)&srv->sig_term, NULL);
  if (!uv_is_closing((uv_handle_t *)&srv->listener))
    uv_close((uv_handle_t *)&srv->listener, NULL);
}

static int write_port_file(const char *path, const char *listen,
                           const char *http) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (f == NULL)
    return -1;
  fprintf(f, "listen=%s http=%s\n", listen, http);
  if (fclose(f) != 0 || rename(tmp, path) != 0) {
    unlink(tmp);
    return -1;
  }
  return 0;
}

/* Refuses non-loopback addresses when nothing protects them. */
static int check_exposure(evsd_server *srv, const char *what,
                          const struct sockaddr_storage *ss, const char *text) {
  if (evsd_addr_is_loopback(ss))
    return 0;
  if (srv->auth && strcmp(what, "listen") == 0)
    return 0;
  if (srv->cfg->allow_remote) {
    evsd_log(EVSD_WARN, "event=remote_exposed what=%s addr=%s auth=%s", what,
             text, srv->auth ? "tokens" : "none");
    return 0;
  }
  if (strcmp(what, "http") == 0) {
    evsd_log(EVSD_ERROR,
             "event=refusing_remote what=http addr=%s message=\"/metrics "
             "needs --allow-remote on a non-loopback address\"",
             text);
    return -1;
  }
  evsd_log(EVSD_ERROR,
           "event=refusing_remote what=listen addr=%s message=\"without "
           "--tokens evstored listens on loopback only; add --tokens or "
           "--allow-remote\"",
           text);
  return -1;
}

int evsd_server_run(evsd_config *cfg, evs_store *store, evsd_auth *auth) {
  evsd_server *srv = calloc(1, sizeof *srv);
  if (srv == NULL)
    return 1;
  uv_loop_t loop;
  int rc = uv_loop_init(&loop);
  if (rc) {
    evsd_log(EVSD_ERROR, "event=loop_init_failed error=%s", uv_err_name(rc));
    free(srv);
    return 1;
  }
  int exit_code = 0;
  srv->loop = &loop;
  srv->cfg = cfg;
  srv->store = store;
  srv->auth = auth;
  evsd_metrics_init(&srv->metrics);
  pthread_mutex_init(&srv->done_mu, NULL);
  pthread_mutex_init(&srv->views_mu, NULL);
  if (evsd_submitters_start(srv)) {
    evsd_log(EVSD_ERROR, "event=thread_start_failed");
    evsd_submitters_stop(srv);
    pthread_mutex_destroy(&srv->done_mu);
    pthread_mutex_destroy(&srv->views_mu);
    evsd_metrics_destroy(&srv->metrics);
    uv_loop_close(&loop);
    free(srv);
    return 1;
  }
  uint64_t head = 0;
  evs_head_position(store, &head);
  EVSD_SET(srv->head, head);

  uv_async_init(&loop, &srv->done_async, on_done_async);
  srv->done_async.data = srv;
  uv_async_init(&loop, &srv->commit_async, on_commit_async);
  srv->commit_async.data = srv;
  uv_async_init(&loop, &srv->job_async, on_job_async);
  srv->job_async.data = srv;
  uv_timer_init(&loop, &srv->tick);
  srv->tick.data = srv;
  uv_signal_init(&loop, &srv->sig_int);
  srv->sig_int.data = srv;
  uv_signal_init(&loop, &srv->sig_term);
  srv->sig_term.data = srv;
  uv_tcp_init(&loop, &srv->listener);
  srv->listener.data = srv;
  srv->commit_listener.fn = on_commit;
  srv->commit_listener.payload = srv;
  srv->commit_listener.group_fn = on_group;
  evs__add_commit_listener(store, &srv->commit_listener);

  struct sockaddr_storage ss;
  char err[256];
  if (evsd_parse_addr(cfg->listen, &ss, err, sizeof err)) {
    evsd_log(EVSD_ERROR, "event=bad_listen_address message=%s",
             evsd_q(err + 128, 128, err, strlen(err)));
    goto fail;
  }
  if (check_exposure(srv, "listen", &ss, cfg->listen))
    goto fail;
  rc = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&srv->listener, 511, on_connection);
  if (rc) {
    evsd_log(EVSD_ERROR, "event=listen_failed addr=%s error=%s", cfg->listen,
             uv_err_name(rc));
    goto fail;
  }
  int sl = sizeof ss;
  uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &sl);
  evsd_addr_format((struct sockaddr *)&ss, srv->listen_addr,
                   sizeof srv->listen_addr);

  snprintf(srv->http_addr, sizeof srv->http_addr, "off");
  if (strcmp(cfg->http, "off") != 0) {
    struct sockaddr_storage hs;
    if (evsd_parse_addr(cfg->http, &hs, err, sizeof err)) {
      evsd_log(EVSD_ERROR, "event=bad_http_address addr=%s", cfg->http);
      goto fail;
    }
    if (check_exposure(srv, "http", &hs, cfg->http))
      goto fail;
    if (evsd_http_start(srv, cfg->http, srv->http_addr, sizeof srv->http_addr))
      goto fail;
  }
  if (cfg->port_file &&
      write_port_file(cfg->port_file, srv->listen_addr, srv->http_addr)) {
    evsd_log(EVSD_ERROR, "event=port_file_failed path=%s error=%s",
             cfg->port_file, strerror(errno));
    goto fail;
  }
  uv_signal_start(&srv->sig_int, on_signal, SIGINT);
  uv_signal_start(&srv->sig_term, on_signal, SIGTERM);
  uv_timer_start(&srv->tick, on_tick, 1000, 1000);
  if (auth == NULL)
    evsd_log(EVSD_INFO,
             "event=auth_disabled message=\"no --tokens: every client may "
             "read and write%s\"",
             cfg->allow_remote ? "; remote addresses allowed"
                               : "; loopback addresses only");
  else
    evsd_log(EVSD_INFO, "event=auth_enabled tokens=%zu", auth->ntokens);
  evsd_log(EVSD_INFO,
           "event=listening listen=%s http=%s data=%s durability=%s head=%llu",
           srv->listen_addr, srv->http_addr, cfg->data_dir,
           cfg->durability == EVS_SYNC         ? "sync"
           : cfg->durability == EVS_NOMETASYNC ? "nometasync"
                                               : "nosync",
           (unsigned long long)head);
  uv_run(&loop, UV_RUN_DEFAULT);
  goto done;

fail:
  exit_code = 1;
  EVSD_SET(srv->stopping, 1); /* read by the HTTP thread */
  close_handles(srv);
  uv_run(&loop, UV_RUN_DEFAULT);
done:
  /* Every append was answered (nothing pending): the queues are empty,
   * and no replay uses the views any more. */
  evsd_submitters_stop(srv);
  evs_views_close(srv->views);
  srv->views = NULL;
  evsd_http_stop(srv);
  rc = uv_loop_close(&loop);
  if (rc)
    evsd_log(EVSD_WARN, "event=loop_not_clean error=%s", uv_err_name(rc));
  if (exit_code == 0)
    evsd_log(EVSD_INFO, "event=stopped head=%llu",
             (unsigned long long)EVSD_GET(srv->head));
  pthread_mutex_destroy(&srv->done_mu);
  pthread_mutex_destroy(&srv->views_mu);
  evsd_metrics_destroy(&srv->metrics);
  free(srv);
  return exit_code;
}
