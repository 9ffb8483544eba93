/*
 * evstore-bench — output: progress lines, the results table, the targets,
 * the JSON file, a Markdown table and the charts (data files + gnuplot).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#ifndef EVS_BENCH_SOURCE_DIR
#define EVS_BENCH_SOURCE_DIR "bench"
#endif

static void fmt_val(char *out, size_t cap, double v) {
  bench_fmt_num(out, cap, v);
}

static void fmt_ratio(char *out, size_t cap, double r) {
  if (isnan(r))
    snprintf(out, cap, "-");
  else if (r >= 100)
    snprintf(out, cap, "%.0fx", r);
  else if (r >= 10)
    snprintf(out, cap, "%.1fx", r);
  else
    snprintf(out, cap, "%.2fx", r);
}

void bench_print_result(const bench_result *r) {
  char v[32], lo[32], hi[32], ra[32], rv[32];
  if (strcmp(r->metric, "skipped") == 0) {
    fprintf(stderr, "  %-44s skipped: %s\n", r->scenario, r->note);
    return;
  }
  if (strcmp(r->metric, "error") == 0) {
    fprintf(stderr, "  %-44s ERROR: %s\n", r->scenario, r->note);
    return;
  }
  fmt_val(v, sizeof v, r->value);
  fmt_val(lo, sizeof lo, r->min);
  fmt_val(hi, sizeof hi, r->max);
  fprintf(stderr, "  %-44s %-12s %12s %-10s", r->scenario, r->metric, v,
          r->unit);
  if (r->reps > 1)
    fprintf(stderr, " [%s..%s]", lo, hi);
  if (r->reference[0]) {
    fmt_ratio(ra, sizeof ra, r->ratio);
    fmt_val(rv, sizeof rv, r->ref_value);
    fprintf(stderr, "  %s vs %s (%s)", ra, r->reference, rv);
  }
  fputc('\n', stderr);
}

/* ---- the table
 * --------------------------------------------------------------- */

static int seen_before(const bench_ctx *c, size_t i) {
  for (size_t j = 0; j < i; j++)
    if (strcmp(c->res[j].scenario, c->res[i].scenario) == 0)
      return 1;
  return 0;
}

static const bench_result *find_in(const bench_ctx *c, const char *scen,
                                   const char *metric, const char *ref) {
  for (size_t i = 0; i < c->nres; i++) {
    const bench_result *r = &c->res[i];
    if (strcmp(r->scenario, scen) == 0 && strcmp(r->metric, metric) == 0 &&
        (ref == NULL || strcmp(r->reference, ref) == 0))
      return r;
  }
  return NULL;
}

static int is_column_metric(const char *m) {
  return strcmp(m, "events/s") == 0 || strcmp(m, "MB/s") == 0 ||
         strcmp(m, "p50") == 0 || strcmp(m, "p99") == 0 ||
         strcmp(m, "p999") == 0;
}

/* One scenario: a main line with the throughput columns, then sub-lines. */
static void print_group(const bench_ctx *c, const char *scen, FILE *f, int md) {
  const bench_result *eps = find_in(c, scen, "events/s", NULL);
  char a[32], b[32], d[32], e[40], g[32], h[32], k[32], ra[32], rv[32];
  if (eps) {
    const char *ref = eps->reference;
    const bench_result *mb = find_in(c, scen, "MB/s", ref);
    const bench_result *p50 = find_in(c, scen, "p50", ref);
    const bench_result *p99 = find_in(c, scen, "p99", ref);
    const bench_result *p999 = find_in(c, scen, "p999", ref);
    fmt_val(a, sizeof a, eps->value);
    fmt_val(b, sizeof b, eps->min);
    fmt_val(d, sizeof d, eps->max);
    BENCH_FMT(e, "%s..%s", b, d);
    fmt_val(g, sizeof g, mb ? mb->value : NAN);
    fmt_val(h, sizeof h, p50 ? p50->value : NAN);
    fmt_val(k, sizeof k, p99 ? p99->value : NAN);
    fmt_val(b, sizeof b, p999 ? p999->value : NAN);
    fmt_ratio(ra, sizeof ra, eps->ratio);
    if (md)
      fprintf(f, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", scen, a, e,
              g, h, k, b, ref[0] ? ref : "", ref[0] ? ra : "");
    else
      fprintf(f, "%-44s %12s %-23s %9s %9s %9s %9s  %-28s %s\n", scen, a, e, g,
              h, k, b, ref, ref[0] ? ra : "");
  }
  for (size_t i = 0; i < c->nres; i++) {
    const bench_result *r = &c->res[i];
    if (strcmp(r->scenario, scen) != 0 || r == eps)
      continue;
    if (eps && is_column_metric(r->metric) &&
        strcmp(r->reference, eps->reference) == 0)
      continue;
    if (strcmp(r->metric, "skipped") == 0 || strcmp(r->metric, "error") == 0) {
      if (md)
        fprintf(f, "| %s | %s: %s | | | | | | | |\n", scen, r->metric, r->note);
      else
        fprintf(f, "%-44s %s: %s\n", scen,
                r->metric[0] == 'e' ? "ERROR" : "skipped", r->note);
      continue;
    }
    if (eps && is_column_metric(r->metric) && strcmp(r->metric, "events/s"))
      continue; /* p50/MB/s against another reference: in the JSON */
    fmt_val(a, sizeof a, r->value);
    fmt_val(b, sizeof b, r->min);
    fmt_val(d, sizeof d, r->max);
    fmt_ratio(ra, sizeof ra, r->ratio);
    fmt_val(rv, sizeof rv, r->ref_value);
    char what[200];
    if (r->reference[0] && strcmp(r->unit, "x") == 0)
      snprintf(what, sizeof what, "%s", r->reference);
    else if (r->reference[0])
      snprintf(what, sizeof what, "%s (%s)", r->reference, rv);
    else
      what[0] = '\0';
    if (strcmp(r->metric, "events/s") == 0) {
      if (md)
        fprintf(f, "| %s | | | | | | | vs %s | %s |\n",
                eps ? "&nbsp;&nbsp;&nbsp;" : scen, what, ra);
      else
        fprintf(f, "%-44s   vs %-40s %s\n", "", what, ra);
      continue;
    }
    char val[96];
    if (r->reps > 1)
      BENCH_FMT(val, "%s %s [%s..%s]", a, r->unit, b, d);
    else
      BENCH_FMT(val, "%s %s", a, r->unit);
    if (md) {
      fprintf(f, "| %s | %s: %s | | | | | | %s | %s |\n",
              eps ? "&nbsp;&nbsp;&nbsp;" : scen, r->metric, val, what,
              r->reference[0] ? ra : "");
    } else {
      char line[256];
      if (strcmp(r->unit, "x") == 0 && r->reference[0])
        BENCH_FMT(line, "%s", r->metric); /* the ratio follows */
      else
        BENCH_FMT(line, "%s: %s", r->metric, val);
      fprintf(f, "%-44s   %-42s", eps ? "" : scen, line);
      if (r->reference[0])
        fprintf(f, " vs %s: %s", what, ra);
      fputc('\n', f);
    }
  }
}

void bench_print_table(bench_ctx *c, FILE *f) {
  fprintf(f, "%-44s %12s %-23s %9s %9s %9s %9s  %-28s %s\n", "scenario",
          "events/s", "[min..max]", "MB/s", "p50 us", "p99 us", "p999 us",
          "reference", "ratio");
  fprintf(f, "%-44s %12s %-23s %9s %9s %9s %9s  %-28s %s\n", "--------",
          "--------", "----------", "----", "------", "------", "-------",
          "---------", "-----");
  for (size_t i = 0; i < c->nres; i++)
    if (!seen_before(c, i))
      print_group(c, c->res[i].scenario, f, 0);
}

static void print_table_md(bench_ctx *c, FILE *f) {
  fprintf(f, "| scenario | events/s | min..max | MB/s | p50 us | p99 us | "
             "p999 us | reference | ratio |\n");
  fprintf(f, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: "
             "|\n");
  for (size_t i = 0; i < c->nres; i++)
    if (!seen_before(c, i))
      print_group(c, c->res[i].scenario, f, 1);
}

/* ---- targets
 * ------------------------------------------------------------------- */

typedef struct target_eval {
  const char *name;
  double ratio;
  double goal;
  int le; /* pass when ratio <= goal (else >=) */
  char why[200];
} target_eval;

static int eval_targets(bench_ctx *c, target_eval *t, int cap) {
  int n = 0;
  const bench_result *r;
#define T_ADD(nm, goal_, le_)                                                  \
  do {                                                                         \
    if (n < cap) {                                                             \
      t[n].name = (nm);                                                        \
      t[n].ratio = NAN;                                                        \
      t[n].goal = (goal_);                                                     \
      t[n].le = (le_);                                                         \
      t[n].why[0] = '\0';                                                      \
      n++;                                                                     \
    }                                                                          \
  } while (0)
#define T_LAST (&t[n - 1])

  T_ADD("batched durable append (batch 100) >= 0.9x raw-LMDB occ-index", 0.9,
        0);
  r = bench_find(c, "append/b100/200B/sync", "events/s", "raw-lmdb-occ-index");
  if (r)
    T_LAST->ratio = r->ratio;
  else
    snprintf(T_LAST->why, sizeof T_LAST->why, "scenario 'append' not run");

  T_ADD("batched durable append (batch 100) >= 1.0x best peer", 1.0, 0);
  {
    static const char *refs[] = { "sqlite-b100", "postgres-b100",
                                  "redis-b100" };
    double best = NAN, val = NAN;
    const char *who = NULL;
    for (int i = 0; i < 3; i++) {
      r = bench_find(c, "append/b100/200B/sync", "events/s", refs[i]);
      if (r && !isnan(r->ref_value) && (isnan(best) || r->ref_value > best)) {
        best = r->ref_value;
        val = r->value;
        who = refs[i];
      }
    }
    if (who) {
      T_LAST->ratio = val / best;
      r = bench_find(c, "append/b100/200B/sync", "normalized ratio", who);
      if (r)
        snprintf(T_LAST->why, sizeof T_LAST->why,
                 "best peer: %s; normalized through the peers' LMDB run: "
                 "%.2fx",
                 who, r->value);
      else
        snprintf(T_LAST->why, sizeof T_LAST->why, "best peer: %s", who);
    } else {
      snprintf(T_LAST->why, sizeof T_LAST->why,
               "needs --peers (or --peers-log)");
    }
  }

  T_ADD("single durable appends >= 1.0x SQLite", 1.0, 0);
  r = bench_find(c, "append/b1/200B/sync", "events/s", "sqlite-b1");
  if (r) {
    T_LAST->ratio = r->ratio;
    r = bench_find(c, "append/b1/200B/sync", "normalized ratio", "sqlite-b1");
    if (r)
      snprintf(T_LAST->why, sizeof T_LAST->why,
               "normalized through the peers' LMDB run: %.2fx", r->value);
  } else
    snprintf(T_LAST->why, sizeof T_LAST->why, "needs --peers (or --peers-log)");

  T_ADD("group commit 64 threads >= 20x the 1-thread rate", 20.0, 0);
  r = bench_find(c, "group-commit/64t/sync", "events/s", "1-thread");
  if (r)
    T_LAST->ratio = r->ratio;
  else
    snprintf(T_LAST->why, sizeof T_LAST->why,
             "scenario 'group-commit' not run");

  T_ADD("$all scan >= 0.5x a raw LMDB cursor scan (decoding included)", 0.5, 0);
  r = bench_find(c, "read/all", "events/s", "raw-lmdb-cursor");
  if (r)
    T_LAST->ratio = r->ratio;
  else
    snprintf(T_LAST->why, sizeof T_LAST->why, "scenario 'read' not run");

  T_ADD("single-stream reads >= 2x SQLite's", 2.0, 0);
  r = bench_find(c, "read/stream-100", "events/s", "sqlite-read-stream");
  if (r) {
    T_LAST->ratio = r->ratio;
    r = bench_find(c, "read/stream-100", "normalized ratio",
                   "sqlite-read-stream");
    if (r)
      snprintf(T_LAST->why, sizeof T_LAST->why,
               "normalized through the peers' LMDB run: %.2fx", r->value);
  } else
    snprintf(T_LAST->why, sizeof T_LAST->why,
             "needs scenario 'read' and --peers (or --peers-log)");

  T_ADD("trained-dictionary compression <= 0.5x raw bytes of the default "
        "events (the store's dictionary)",
        0.5, 1);
  r = bench_find(c, "storage/zstd-store-dict-16KiB", "data bytes/event",
                 "raw-json");
  if (r)
    T_LAST->ratio = r->ratio;
  else
    snprintf(T_LAST->why, sizeof T_LAST->why, "scenario 'storage' not run");

  T_ADD("over TCP: 64 clients appending single events durably >= 0.5x the "
        "in-process 64-thread rate",
        0.5, 0);
  r = bench_find(c, "server/append/64c/sync", "events/s", "in-process-64t");
  if (r) {
    T_LAST->ratio = r->ratio;
    snprintf(T_LAST->why, sizeof T_LAST->why,
             "%.0f events/s over TCP, %.0f in-process (interleaved)", r->value,
             r->ref_value);
  } else
    snprintf(T_LAST->why, sizeof T_LAST->why,
             "scenario 'server' not run at 64 clients");

  T_ADD("over TCP: 64 clients appending single events durably >= 3x "
        "PostgreSQL with 64 connections (peers mode 8)",
        3.0, 0);
  r = bench_find(c, "server/append/64c/sync", "events/s", "postgres-64");
  if (r) {
    T_LAST->ratio = r->ratio;
    r = bench_find(c, "server/append/64c/sync", "normalized ratio",
                   "postgres-64");
    if (r)
      snprintf(T_LAST->why, sizeof T_LAST->why,
               "normalized through the peers' LMDB run: %.2fx", r->value);
  } else
    snprintf(T_LAST->why, sizeof T_LAST->why,
             "needs scenario 'server' and --peers (or --peers-log)");

  static const struct {
    const char *name, *scen, *what, *grouped_by;
    double limit_us;
  } lat_targets[] = {
    { "live subscription latency p99 <= 1 ms in-process, 100 subscribers",
      "subscription/live-100sub", "commit to delivery", "evs_sub_run_many",
      1000 },
    { "live subscription latency p99 <= 2 ms over loopback TCP, 100 "
      "subscribers",
      "server/sub-live-100sub", "acknowledgement to delivery",
      "evs_client_sub_wait", 2000 },
  };
  for (size_t i = 0; i < sizeof lat_targets / sizeof lat_targets[0]; i++) {
    T_ADD(lat_targets[i].name, 1.0, 1);
    r = bench_find(c, lat_targets[i].scen, "p99", NULL);
    /* 100 subscribers run either on a thread each or all on one thread
     * (evs_sub_run_many in-process, evs_client_sub_wait over TCP: the
     * libraries' way for many): the target takes the better of the two
     * and names both. */
    char grouped[80];
    snprintf(grouped, sizeof grouped, "%s-1thread", lat_targets[i].scen);
    const bench_result *g = bench_find(c, grouped, "p99", NULL);
    if (r && !isnan(r->value) && g && !isnan(g->value)) {
      double best = g->value < r->value ? g->value : r->value;
      T_LAST->ratio = best / lat_targets[i].limit_us;
      snprintf(T_LAST->why, sizeof T_LAST->why,
               "p99 %.0f us (%s) against %.0f us: %.0f us with the 100 on "
               "one thread (%s), %.0f us with a thread each",
               best, lat_targets[i].what, lat_targets[i].limit_us, g->value,
               lat_targets[i].grouped_by, r->value);
    } else if (r && !isnan(r->value)) {
      T_LAST->ratio = r->value / lat_targets[i].limit_us;
      snprintf(T_LAST->why, sizeof T_LAST->why,
               "p99 %.0f us (%s) against %.0f us", r->value,
               lat_targets[i].what, lat_targets[i].limit_us);
    } else
      snprintf(T_LAST->why, sizeof T_LAST->why, "%s not run",
               lat_targets[i].scen);
  }

  T_ADD("server RSS <= 100 MiB with 1,000 idle subscriptions", 1.0, 1);
  r = bench_find(c, "server/rss/1000-subscriptions", "VmRSS", NULL);
  if (r && !isnan(r->value)) {
    T_LAST->ratio = r->value / 100.0;
    snprintf(T_LAST->why, sizeof T_LAST->why, "VmRSS %.1f MiB against 100 MiB",
             r->value);
  } else
    snprintf(T_LAST->why, sizeof T_LAST->why,
             "scenario 'server' not run with 1,000 subscriptions");
#undef T_ADD
#undef T_LAST
  return n;
}

static const char *target_status(const target_eval *t) {
  if (isnan(t->ratio) || isnan(t->goal))
    return "n/a";
  return (t->le ? t->ratio <= t->goal : t->ratio >= t->goal) ? "PASS" : "MISS";
}

void bench_print_targets(bench_ctx *c, FILE *f) {
  target_eval t[24];
  int n = eval_targets(c, t, 24);
  fprintf(f, "\ntargets:\n");
  for (int i = 0; i < n; i++) {
    char ra[32];
    fmt_ratio(ra, sizeof ra, t[i].ratio);
    fprintf(f, "  %-4s  %-78s", target_status(&t[i]), t[i].name);
    if (!isnan(t[i].ratio))
      fprintf(f, " measured %s", ra);
    if (t[i].why[0])
      fprintf(f, "%s%s", isnan(t[i].ratio) ? " " : "; ", t[i].why);
    fputc('\n', f);
  }
}

/* ---- JSON
 * ------------------------------------------------------------------------ */

static void json_num(FILE *f, double v) {
  if (isnan(v) || isinf(v))
    fputs("null", f);
  else
    fprintf(f, "%.10g", v);
}

static void json_result(FILE *f, const bench_result *r) {
  fprintf(f, "  {\"scenario\":");
  bench_json_str(f, r->scenario);
  fprintf(f, ",\"metric\":");
  bench_json_str(f, r->metric);
  fprintf(f, ",\"value\":");
  json_num(f, r->value);
  fprintf(f, ",\"unit\":");
  bench_json_str(f, r->unit);
  fprintf(f, ",\"reference\":");
  if (r->reference[0])
    bench_json_str(f, r->reference);
  else
    fputs("null", f);
  fprintf(f, ",\"ratio\":");
  json_num(f, r->ratio);
  fprintf(f, ",\"ref_value\":");
  json_num(f, r->ref_value);
  fprintf(f, ",\"min\":");
  json_num(f, r->min);
  fprintf(f, ",\"max\":");
  json_num(f, r->max);
  fprintf(f, ",\"reps\":%d,\"note\":", r->reps);
  bench_json_str(f, r->note);
  fputc('}', f);
}

/* A figure: a finite value. Skips, errors and figures without a value (no
 * sample) go to "skipped", so that every "value" in "results" is a number. */
static int json_is_figure(const bench_result *r) {
  return isfinite(r->value) && strcmp(r->metric, "skipped") != 0 &&
         strcmp(r->metric, "error") != 0;
}

int bench_write_json(bench_ctx *c, const char *path) {
  FILE *f = fopen(path, "w");
  if (f == NULL)
    return -errno;
  fprintf(f, "{\n\"machine\": ");
  bench_machine_json(c, f);
  for (int pass = 0; pass < 2; pass++) {
    fprintf(f, ",\n\"%s\": [\n", pass == 0 ? "results" : "skipped");
    int first = 1;
    for (size_t i = 0; i < c->nres; i++) {
      if (json_is_figure(&c->res[i]) != (pass == 0))
        continue;
      fputs(first ? "" : ",\n", f);
      json_result(f, &c->res[i]);
      first = 0;
    }
    fputs(first ? "]" : "\n]", f);
  }
  fprintf(f, ",\n\"targets\": [\n");
  target_eval t[24];
  int n = eval_targets(c, t, 24);
  for (int i = 0; i < n; i++) {
    fprintf(f, "  {\"target\":");
    bench_json_str(f, t[i].name);
    fprintf(f, ",\"status\":");
    bench_json_str(f, target_status(&t[i]));
    fprintf(f, ",\"ratio\":");
    json_num(f, t[i].ratio);
    fprintf(f, ",\"goal\":");
    json_num(f, t[i].goal);
    fprintf(f, ",\"goal_is_max\":%s,\"note\":", t[i].le ? "true" : "false");
    bench_json_str(f, t[i].why);
    fprintf(f, "}%s\n", i + 1 < n ? "," : "");
  }
  fprintf(f, "]\n}\n");
  int rc = ferror(f) ? -EIO : 0;
  if (fclose(f) != 0 && rc == 0)
    rc = -errno;
  if (rc)
    unlink(path); /* no truncated JSON left behind */
  return rc;
}

/* ---- charts
 * ---------------------------------------------------------------------- */

static double point(const bench_ctx *c, const char *series, double x) {
  for (size_t i = 0; i < c->npts; i++)
    if (strcmp(c->pts[i].series, series) == 0 && c->pts[i].x == x)
      return c->pts[i].y;
  return NAN;
}

static void dat_num(FILE *f, double v) {
  if (isnan(v))
    fputs(" ?", f);
  else
    fprintf(f, " %.6g", v);
}

/* Distinct x values of the series starting with `prefix`, ascending. */
static size_t xs_of(const bench_ctx *c, const char *prefix, double *xs,
                    size_t cap) {
  size_t n = 0, pl = strlen(prefix);
  for (size_t i = 0; i < c->npts; i++) {
    if (strncmp(c->pts[i].series, prefix, pl) != 0)
      continue;
    int dup = 0;
    for (size_t j = 0; j < n; j++)
      dup |= xs[j] == c->pts[i].x;
    if (!dup && n < cap)
      xs[n++] = c->pts[i].x;
  }
  for (size_t i = 1; i < n; i++)
    for (size_t j = i; j > 0 && xs[j - 1] > xs[j]; j--) {
      double t = xs[j];
      xs[j] = xs[j - 1];
      xs[j - 1] = t;
    }
  return n;
}

static double find_value(const bench_ctx *c, const char *scen,
                         const char *metric, const char *ref) {
  const bench_result *r = bench_find(c, scen, metric, ref);
  if (r == NULL)
    return NAN;
  return ref ? r->ref_value : r->value;
}

static FILE *open_dat(const char *dir, const char *name) {
  char p[4300];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return fopen(p, "w");
}

void bench_write_charts(bench_ctx *c) {
  const char *dir = c->opt.out_dir ? c->opt.out_dir : "bench-results";
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "evstore-bench: cannot create %s: %s\n", dir,
            strerror(errno));
    return;
  }
  double xs[64];
  size_t n;
  FILE *f;
  /* growth.dat: events load sync read_p50 read_p99 scan bpe file_mb */
  if ((n = xs_of(c, "growth-", xs, 64)) && (f = open_dat(dir, "growth.dat"))) {
    fprintf(f, "# events bulk_load_eps append_sync_eps read_p50_us "
               "read_p99_us scan_eps bytes_per_event file_mb "
               "written_bytes_per_sync_event append_sync_v7_eps "
               "written_bytes_per_sync_event_v7\n");
    static const char *cols[] = { "growth-load",     "growth-sync",
                                  "growth-read-p50", "growth-read-p99",
                                  "growth-scan",     "growth-bpe",
                                  "growth-file-mb",  "growth-written",
                                  "growth-sync-v7",  "growth-written-v7" };
    for (size_t i = 0; i < n; i++) {
      fprintf(f, "%.0f", xs[i]);
      for (size_t k = 0; k < 10; k++)
        dat_num(f, point(c, cols[k], xs[i]));
      fputc('\n', f);
    }
    fclose(f);
  }
  if ((n = xs_of(c, "one-stream", xs, 64)) &&
      (f = open_dat(dir, "onestream.dat"))) {
    fprintf(f, "# events_in_stream append_eps\n");
    for (size_t i = 0; i < n; i++) {
      fprintf(f, "%.0f", xs[i]);
      dat_num(f, point(c, "one-stream", xs[i]));
      fputc('\n', f);
    }
    fclose(f);
  }
  /* append.dat: batch evstore raw sqlite postgres redis (durable) and the
   * evstore/raw pairs in the other modes. */
  if ((n = xs_of(c, "append-", xs, 64)) && (f = open_dat(dir, "append.dat"))) {
    fprintf(f, "# batch evstore_sync raw_sync sqlite postgres redis "
               "evstore_nometasync raw_nometasync evstore_nosync "
               "raw_nosync\n");
    for (size_t i = 0; i < n; i++) {
      char scen[64], ref[32];
      snprintf(scen, sizeof scen, "append/b%.0f/200B/sync", xs[i]);
      fprintf(f, "%.0f", xs[i]);
      dat_num(f, point(c, "append-sync", xs[i]));
      dat_num(f, point(c, "raw-sync", xs[i]));
      static const char *peers[] = { "sqlite", "postgres", "redis" };
      for (int p = 0; p < 3; p++) {
        snprintf(ref, sizeof ref, "%s-b%.0f", peers[p], xs[i]);
        dat_num(f, find_value(c, scen, "events/s", ref));
      }
      dat_num(f, point(c, "append-nometasync", xs[i]));
      dat_num(f, point(c, "raw-nometasync", xs[i]));
      dat_num(f, point(c, "append-nosync", xs[i]));
      dat_num(f, point(c, "raw-nosync", xs[i]));
      fputc('\n', f);
    }
    fclose(f);
  }
  if ((n = xs_of(c, "group-", xs, 64)) && (f = open_dat(dir, "group.dat"))) {
    fprintf(f, "# threads evstore_sync evstore_nometasync evstore_nosync "
               "sqlite postgres redis lmdb_per_thread_txn "
               "evstored_tcp_sync evstored_tcp_pipelined16\n");
    for (size_t i = 0; i < n; i++) {
      char scen[64], ref[32];
      snprintf(scen, sizeof scen, "group-commit/%.0ft/sync", xs[i]);
      fprintf(f, "%.0f", xs[i]);
      dat_num(f, point(c, "group-sync", xs[i]));
      dat_num(f, point(c, "group-nometasync", xs[i]));
      dat_num(f, point(c, "group-nosync", xs[i]));
      static const char *peers[] = { "sqlite", "postgres", "redis",
                                     "peers-lmdb" };
      for (int p = 0; p < 4; p++) {
        snprintf(ref, sizeof ref, "%s-%.0f", peers[p], xs[i]);
        dat_num(f, find_value(c, scen, "events/s", ref));
      }
      dat_num(f, point(c, "group-tcp-sync", xs[i]));
      dat_num(f, point(c, "group-tcp-pipe", xs[i]));
      fputc('\n', f);
    }
    fclose(f);
  }
  if (bench_find(c, "read/all", "events/s", NULL) &&
      (f = open_dat(dir, "reads.dat"))) {
    fprintf(f, "# label evstore raw_lmdb sqlite\n");
    fprintf(f, "\"$all 1.1M\"");
    dat_num(f, find_value(c, "read/all", "events/s", NULL));
    dat_num(f, find_value(c, "read/all", "events/s", "raw-lmdb-cursor"));
    dat_num(f, NAN);
    fprintf(f, "\n\"$all 100k\"");
    dat_num(f, find_value(c, "read/all-100k", "events/s", NULL));
    dat_num(f, find_value(c, "read/all-100k", "events/s", "raw-lmdb-cursor"));
    dat_num(f, find_value(c, "read/all-100k", "events/s", "sqlite-read-all"));
    fprintf(f, "\n\"stream of 1000\"");
    dat_num(f, find_value(c, "read/stream-1000", "events/s", NULL));
    dat_num(
        f, find_value(c, "read/stream-1000", "events/s", "raw-lmdb-occ-index"));
    dat_num(f, NAN);
    fprintf(f, "\n\"stream of 100\"");
    dat_num(f, find_value(c, "read/stream-100", "events/s", NULL));
    dat_num(f,
            find_value(c, "read/stream-100", "events/s", "raw-lmdb-occ-index"));
    dat_num(f,
            find_value(c, "read/stream-100", "events/s", "sqlite-read-stream"));
    fprintf(f, "\n\"category 9%%\"");
    dat_num(f, find_value(c, "read/category", "events/s", NULL));
    dat_num(f, NAN);
    dat_num(f, NAN);
    fputc('\n', f);
    fclose(f);
  }
  /* The text and Markdown tables beside the charts. */
  if ((f = open_dat(dir, "results.txt"))) {
    bench_machine_text(c, f);
    fputc('\n', f);
    bench_print_table(c, f);
    bench_print_targets(c, f);
    fclose(f);
  }
  if ((f = open_dat(dir, "results.md"))) {
    print_table_md(c, f);
    fclose(f);
  }
  char json[4300];
  snprintf(json, sizeof json, "%s/results.json", dir);
  bench_write_json(c, json);

  /* The SVGs. */
  char gp[4300];
  snprintf(gp, sizeof gp, "%s/charts.gp", EVS_BENCH_SOURCE_DIR);
  if (access(gp, R_OK) != 0) {
    fprintf(stderr, "charts: skipped: %s not found\n", gp);
    return;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    char arg[4400];
    snprintf(arg, sizeof arg, "dir='%s'", dir);
    execlp("gnuplot", "gnuplot", "-e", arg, gp, (char *)NULL);
    _exit(127);
  }
  int st = 0;
  if (pid > 0)
    waitpid(pid, &st, 0);
  if (pid < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fprintf(stderr, "charts: skipped: gnuplot failed or is missing (Debian: "
                    "gnuplot-nox, installed by scripts/deps.sh)\n");
  else
    fprintf(stderr, "charts: SVGs, data and tables written to %s/\n", dir);
}
