/*
 * evstored — the HTTP listener for /health and /metrics, on
 * libmicrohttpd's own thread (no HTTP parsing of our own).
 *
 * GET /health: 200 "ok" while the store is open and writable, 503 with the
 * reason otherwise (shutting down, or the last append failed with an I/O
 * error, a full disk or a full map). GET /metrics: Prometheus text format.
 */
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>

#include "server/server.h"

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status,
                             const char *ctype, const void *body, size_t len) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (r == NULL)
    return MHD_NO;
  MHD_add_response_header(r, "Content-Type", ctype);
  MHD_add_response_header(r, "Cache-Control", "no-store");
  enum MHD_Result ret = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn,
                               const char *url, const char *method,
                               const char *version, const char *upload,
                               size_t *upload_size, void **con_cls) {
  (void)version;
  (void)upload;
  evsd_server *srv = cls;
  /* The first call for a request only announces it. */
  if (*con_cls == NULL) {
    static int marker;
    *con_cls = &marker;
    return MHD_YES;
  }
  if (*upload_size) {
    *upload_size = 0; /* drop request bodies */
    return MHD_YES;
  }
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    static const char msg[] = "method not allowed\n";
    return reply(conn, 405, "text/plain", msg, sizeof msg - 1);
  }
  if (strcmp(url, "/health") == 0) {
    const char *why = NULL;
    if (__atomic_load_n(&srv->stopping, __ATOMIC_RELAXED))
      why = "shutting down";
    else if (__atomic_load_n(&srv->store_failed, __ATOMIC_RELAXED))
      why = "the store failed its last append (I/O error, disk or map "
            "full)";
    char msg[256];
    int n = snprintf(msg, sizeof msg, "%s\n", why ? why : "ok");
    return reply(conn, why ? 503 : 200, "text/plain", msg, (size_t)n);
  }
  if (strcmp(url, "/metrics") == 0) {
    evs__buf b = EVS__BUF_INIT;
    evsd_metrics_render(srv, &b);
    enum MHD_Result r;
    if (b.oom) {
      static const char msg[] = "out of memory\n";
      r = reply(conn, 500, "text/plain", msg, sizeof msg - 1);
    } else {
      r = reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8", b.data,
                b.len);
    }
    evs__buf_free(&b);
    return r;
  }
  static const char msg[] = "not found: try /health or /metrics\n";
  return reply(conn, 404, "text/plain", msg, sizeof msg - 1);
}

int evsd_http_start(evsd_server *srv, const char *hostport, char *bound,
                    size_t boundlen) {
  struct sockaddr_storage ss;
  char err[256];
  if (evsd_parse_addr(hostport, &ss, err, sizeof err)) {
    evsd_log(EVSD_ERROR, "event=http_bad_address %s", err);
    return -1;
  }
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
  if (ss.ss_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  struct MHD_Daemon *d = MHD_start_daemon(
      flags, 0, NULL, NULL, handler, srv, MHD_OPTION_SOCK_ADDR,
      (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
  if (d == NULL) {
    evsd_log(EVSD_ERROR, "event=http_listen_failed addr=%s", hostport);
    return -1;
  }
  const union MHD_DaemonInfo *info =
      MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  unsigned port = info ? info->port : 0;
  if (ss.ss_family == AF_INET6)
    ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
  evsd_addr_format((struct sockaddr *)&ss, bound, boundlen);
  srv->http = d;
  return 0;
}

void evsd_http_stop(evsd_server *srv) {
  if (srv->http) {
    MHD_stop_daemon((struct MHD_Daemon *)srv->http);
    srv->http = NULL;
  }
}
