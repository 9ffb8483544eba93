/*
 * evstored — entry point: configuration, the store, authentication, then
 * the server loop (server.c). Exit codes: 0 after a clean shutdown, 1 when
 * the server cannot start or run, 2 for a usage error.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "server/server.h"

/* mkdir -p for the parents of the data directory (./var for
 * ./var/evstore); the store creates the last component itself. */
static int make_parents(const char *path) {
  char buf[4096];
  size_t n = strlen(path);
  if (n >= sizeof buf)
    return -1;
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i < n; i++) {
    if (buf[i] != '/')
      continue;
    buf[i] = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
      return -1;
    buf[i] = '/';
  }
  return 0;
}

int main(int argc, char **argv) {
  evsd_config cfg;
  int rc = evsd_config_parse(&cfg, argc, argv);
  if (rc != 0) {
    evsd_config_free(&cfg);
    return rc > 0 ? 0 : 2;
  }
  evsd_log_init(cfg.log_debug);
  /* A peer that closes its socket must not kill the server. */
  signal(SIGPIPE, SIG_IGN);
  /* The size of libuv's pool, read when the pool starts (first
   * uv_queue_work); the environment wins if set. */
  char threads[16];
  snprintf(threads, sizeof threads, "%u", cfg.threads);
  setenv("UV_THREADPOOL_SIZE", threads, 0);

  evsd_auth *auth = NULL;
  if (cfg.tokens_file) {
    char err[512];
    if (evsd_auth_load(&auth, cfg.tokens_file, err, sizeof err)) {
      char q[600];
      evsd_log(EVSD_ERROR, "event=tokens_failed message=%s",
               evsd_q(q, sizeof q, err, strlen(err)));
      evsd_config_free(&cfg);
      return 1;
    }
  }

  if (make_parents(cfg.data_dir) != 0)
    evsd_log(EVSD_WARN, "event=mkdir_failed path=%s error=%s", cfg.data_dir,
             strerror(errno));
  evs_store_options so = EVS_STORE_OPTIONS_INIT;
  so.durability = cfg.durability;
  so.map_size = cfg.map_size;
  so.max_event_size = cfg.max_event_size;
  evs_store *store = NULL;
  rc = evs_store_open(&store, cfg.data_dir, &so);
  if (rc) {
    char q[600];
    const char *d = evs_last_error();
    evsd_log(EVSD_ERROR, "event=store_open_failed path=%s error=%s message=%s",
             cfg.data_dir, evs_err_name(rc), evsd_q(q, sizeof q, d, strlen(d)));
    evsd_auth_free(auth);
    evsd_config_free(&cfg);
    return 1;
  }
  evsd_log(EVSD_INFO, "event=store_opened path=%s version=%s", cfg.data_dir,
           EVS_VERSION_STRING);
  int code = evsd_server_run(&cfg, store, auth);
  /* Every append the server acknowledged was committed before its reply;
   * closing waits for anything still queued and flushes. */
  evs_store_close(store);
  evsd_auth_free(auth);
  evsd_config_free(&cfg);
  return code;
}
