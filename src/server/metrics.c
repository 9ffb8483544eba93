/*
 * evstored — counters, histograms and their Prometheus text exposition
 * (served by http.c). Counters are atomics written by any thread; the
 * histograms are written by the loop thread and read under a mutex.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "server/server.h"

static void hist_init(evsd_hist *h, const double *bounds, int nb) {
  memset(h, 0, sizeof *h);
  h->nb = nb;
  memcpy(h->bounds, bounds, (size_t)nb * sizeof *bounds);
}

void evsd_metrics_init(evsd_metrics *m) {
  memset(m, 0, sizeof *m);
  static const double lat[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                0.1,    0.25,  0.5,    1,     2.5,  5,     10 };
  static const double grp[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512 };
  hist_init(&m->commit_latency, lat, (int)(sizeof lat / sizeof lat[0]));
  hist_init(&m->group_size, grp, (int)(sizeof grp / sizeof grp[0]));
  pthread_mutex_init(&m->hist_mu, NULL);
}

void evsd_metrics_destroy(evsd_metrics *m) {
  pthread_mutex_destroy(&m->hist_mu);
}

void evsd_hist_observe(evsd_metrics *m, evsd_hist *h, double v) {
  pthread_mutex_lock(&m->hist_mu);
  int i = 0;
  while (i < h->nb && v > h->bounds[i])
    i++;
  h->counts[i]++;
  h->count++;
  h->sum += v;
  pthread_mutex_unlock(&m->hist_mu);
}

static void put(evs__buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void put(evs__buf *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0)
    evs__buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void counter(evs__buf *b, const char *name, const char *help,
                    uint64_t v) {
  put(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
      (unsigned long long)v);
}

static void gauge(evs__buf *b, const char *name, const char *help, uint64_t v) {
  put(b, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name,
      (unsigned long long)v);
}

static void hist(evs__buf *b, evsd_metrics *m, const evsd_hist *h,
                 const char *name, const char *help) {
  pthread_mutex_lock(&m->hist_mu);
  evsd_hist c = *h;
  pthread_mutex_unlock(&m->hist_mu);
  put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  uint64_t cum = 0;
  for (int i = 0; i < c.nb; i++) {
    cum += c.counts[i];
    put(b, "%s_bucket{le=\"%g\"} %llu\n", name, c.bounds[i],
        (unsigned long long)cum);
  }
  cum += c.counts[c.nb];
  put(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
  put(b, "%s_sum %.9g\n%s_count %llu\n", name, c.sum, name,
      (unsigned long long)c.count);
}

void evsd_metrics_render(evsd_server *srv, evs__buf *b) {
  evsd_metrics *m = &srv->metrics;
  evs_store *s = srv->store;
  gauge(b, "evstore_up", "1 while the server runs", 1);
  put(b,
      "# HELP evstore_append_requests_total Append requests answered, by "
      "result.\n# TYPE evstore_append_requests_total counter\n"
      "evstore_append_requests_total{result=\"ok\"} %llu\n"
      "evstore_append_requests_total{result=\"error\"} %llu\n",
      (unsigned long long)EVSD_GET(m->append_ok),
      (unsigned long long)EVSD_GET(m->append_err));
  counter(b, "evstore_append_idempotent_total",
          "Appends answered as idempotent retries (nothing written)",
          EVSD_GET(m->append_idempotent));
  counter(b, "evstore_events_appended_total",
          "Events written by appends over the protocol",
          EVSD_GET(m->events_appended));
  counter(b, "evstore_bytes_appended_total",
          "Data and metadata bytes of those events (before compression)",
          EVSD_GET(m->bytes_appended));
  counter(b, "evstore_store_commits_total",
          "Write transactions committed by the store",
          __atomic_load_n(&s->n_commits, __ATOMIC_RELAXED));
  counter(b, "evstore_store_requests_committed_total",
          "Write requests (appends, deletes, metadata) in those commits",
          __atomic_load_n(&s->n_appends, __ATOMIC_RELAXED));
  counter(b, "evstore_store_events_written_total",
          "Events written by the store (all clients of this process)",
          __atomic_load_n(&s->n_events_written, __ATOMIC_RELAXED));
  counter(b, "evstore_store_bytes_written_total",
          "Record bytes written by the store",
          __atomic_load_n(&s->n_bytes_written, __ATOMIC_RELAXED));
  hist(b, m, &m->commit_latency, "evstore_append_commit_seconds",
       "Time from receiving an append to its commit");
  hist(b, m, &m->group_size, "evstore_group_commit_requests",
       "Write requests (appends, deletes, metadata; from every connection "
       "and thread of this process) committed together in one group commit");
  put(b,
      "# HELP evstore_reads_total Read requests, by operation.\n"
      "# TYPE evstore_reads_total counter\n"
      "evstore_reads_total{op=\"read_stream\"} %llu\n"
      "evstore_reads_total{op=\"read_all\"} %llu\n"
      "evstore_reads_total{op=\"stream_info\"} %llu\n"
      "evstore_reads_total{op=\"list_streams\"} %llu\n",
      (unsigned long long)EVSD_GET(m->reads_stream),
      (unsigned long long)EVSD_GET(m->reads_all),
      (unsigned long long)EVSD_GET(m->reads_info),
      (unsigned long long)EVSD_GET(m->reads_list));
  counter(b, "evstore_read_events_total", "Events sent in read replies",
          EVSD_GET(m->read_events));
  put(b,
      "# HELP evstore_admin_writes_total Metadata and delete requests.\n"
      "# TYPE evstore_admin_writes_total counter\n"
      "evstore_admin_writes_total{op=\"set_metadata\"} %llu\n"
      "evstore_admin_writes_total{op=\"delete\"} %llu\n",
      (unsigned long long)EVSD_GET(m->writes_meta),
      (unsigned long long)EVSD_GET(m->writes_delete));
  gauge(b, "evstore_connections", "Open protocol connections",
        EVSD_GET(m->conns_open));
  counter(b, "evstore_connections_total", "Accepted connections",
          EVSD_GET(m->conns_total));
  counter(b, "evstore_connections_rejected_total",
          "Connections refused (limit reached or shutting down)",
          EVSD_GET(m->conns_rejected));
  gauge(b, "evstore_subscriptions", "Active subscriptions",
        EVSD_GET(m->subs_open));
  gauge(b, "evstore_subscription_lag_events_max",
        "Largest distance in positions between the head and a $all "
        "subscription's checkpoint",
        EVSD_GET(m->sub_lag_max));
  gauge(b, "evstore_subscription_lag_events_sum",
        "Sum of those distances over all $all subscriptions",
        EVSD_GET(m->sub_lag_sum));
  counter(b, "evstore_subscription_events_sent_total",
          "Events pushed to subscribers", EVSD_GET(m->sub_events_sent));
  counter(b, "evstore_subscription_shared_reads_total",
          "Reads shared by $all subscriptions waiting at the same place",
          EVSD_GET(m->sub_shared_reads));
  counter(b, "evstore_subscription_shared_deliveries_total",
          "Subscription batches served by a shared read",
          EVSD_GET(m->sub_shared_members));
  counter(b, "evstore_slow_consumers_closed_total",
          "Connections closed for output over the limits",
          EVSD_GET(m->slow_consumers_closed));
  counter(b, "evstore_protocol_errors_total",
          "Malformed, oversized or unknown requests",
          EVSD_GET(m->proto_errors));
  counter(b, "evstore_auth_failures_total",
          "Rejected tokens and denied operations", EVSD_GET(m->auth_failures));
  counter(b, "evstore_received_bytes_total", "Bytes received from clients",
          EVSD_GET(m->in_bytes_total));
  counter(b, "evstore_sent_bytes_total", "Bytes sent to clients",
          EVSD_GET(m->out_bytes_total));
  gauge(b, "evstore_head_position", "Last position of $all",
        EVSD_GET(srv->head));
  evs_stats st;
  if (evs_store_stats(s, &st, 0) == 0) {
    gauge(b, "evstore_store_events", "Events in the log", st.events);
    gauge(b, "evstore_store_streams", "Streams known to the store", st.streams);
    gauge(b, "evstore_store_file_bytes", "Size of data.mdb on disk",
          st.file_size);
    gauge(b, "evstore_store_map_bytes", "Current LMDB map size", st.map_size);
    gauge(b, "evstore_store_map_used_bytes", "Bytes of the map in use",
          st.map_used);
  }
}
