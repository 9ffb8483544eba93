/*
 * evstore-bench — results, statistics, clocks, directories and the
 * description of the machine.
 */
#include <errno.h>
#include <ftw.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "bench.h"

void bench_fmt(char *buf, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, cap, fmt, ap);
  va_end(ap);
}

/* ---- clocks and logging ----------------------------------------------------
 */

double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void bench_log(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("  .. ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* ---- statistics
 * --------------------------------------------------------------- */

static int bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y ? 1 : 0;
}

bench_stat bench_stat_of(const double *v, int n) {
  bench_stat st = { NAN, NAN, NAN, 0 };
  double tmp[BENCH_MAX_REPS];
  int k = 0;
  for (int i = 0; i < n && k < BENCH_MAX_REPS; i++)
    if (!isnan(v[i]))
      tmp[k++] = v[i];
  if (k == 0)
    return st;
  qsort(tmp, (size_t)k, sizeof tmp[0], bench_cmp_double);
  st.n = k;
  st.min = tmp[0];
  st.max = tmp[k - 1];
  /* The median; for an even count, the mean of the middle two. */
  st.med = k % 2 ? tmp[k / 2] : (tmp[k / 2 - 1] + tmp[k / 2]) / 2;
  return st;
}

void bench_lat_add(bench_lat *l, double us) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4096;
    double *v = realloc(l->v, cap * sizeof *v);
    if (v == NULL)
      return; /* drop the sample rather than abort a measurement */
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = us;
}

void bench_lat_merge(bench_lat *into, const bench_lat *from) {
  for (size_t i = 0; i < from->n; i++)
    bench_lat_add(into, from->v[i]);
}

void bench_lat_clear(bench_lat *l) {
  l->n = 0;
}

void bench_lat_free(bench_lat *l) {
  free(l->v);
  l->v = NULL;
  l->n = l->cap = 0;
}

double bench_lat_quantile(bench_lat *l, double q) {
  if (l == NULL || l->n == 0)
    return NAN;
  qsort(l->v, l->n, sizeof l->v[0], bench_cmp_double);
  /* Nearest rank: the smallest sample with at least q of them at or
   * below it. */
  double rank = ceil(q * (double)l->n);
  size_t i = rank < 1 ? 0 : (size_t)rank - 1;
  if (i >= l->n)
    i = l->n - 1;
  return l->v[i];
}

void bench_lat_stamps(bench_lat *l, const uint64_t *to, const uint64_t *from,
                      size_t n) {
  for (size_t i = 0; i < n; i++)
    if (to[i] && from[i])
      bench_lat_add(l, ((double)to[i] - (double)from[i]) / 1e3);
}

void bench_meas_add(bench_meas *m, double events, double bytes, double ops,
                    double secs, bench_lat *lat) {
  if (m->reps >= BENCH_MAX_REPS)
    return;
  int r = m->reps++;
  m->eps[r] = secs > 0 ? events / secs : NAN;
  m->mbps[r] = secs > 0 ? bytes / secs / 1e6 : NAN;
  m->ops[r] = secs > 0 ? ops / secs : NAN;
  if (bytes > 0)
    m->has_mb = 1;
  if (lat && lat->n) {
    m->has_lat = 1;
    m->p50[r] = bench_lat_quantile(lat, 0.50);
    m->p99[r] = bench_lat_quantile(lat, 0.99);
    m->p999[r] = bench_lat_quantile(lat, 0.999);
  } else {
    m->p50[r] = m->p99[r] = m->p999[r] = NAN;
  }
}

/* ---- results
 * ---------------------------------------------------------------------- */

/* Set while bench_emit_meas records its figures: it prints one line. */
static int bench_quiet;

static bench_result *bench_new_result(bench_ctx *c) {
  if (c->nres == c->capres) {
    size_t cap = c->capres ? c->capres * 2 : 256;
    bench_result *r = realloc(c->res, cap * sizeof *r);
    if (r == NULL) {
      fprintf(stderr, "evstore-bench: out of memory\n");
      exit(2);
    }
    c->res = r;
    c->capres = cap;
  }
  bench_result *r = &c->res[c->nres++];
  memset(r, 0, sizeof *r);
  r->value = r->min = r->max = r->ref_value = r->ratio = NAN;
  return r;
}

void bench_emit(bench_ctx *c, const char *scenario, const char *metric,
                const char *unit, bench_stat st, const char *ref_name,
                double ref_value, const char *note) {
  bench_result *r = bench_new_result(c);
  snprintf(r->scenario, sizeof r->scenario, "%s", scenario);
  snprintf(r->metric, sizeof r->metric, "%s", metric);
  snprintf(r->unit, sizeof r->unit, "%s", unit);
  r->value = st.med;
  r->min = st.min;
  r->max = st.max;
  r->reps = st.n;
  if (ref_name && ref_name[0]) {
    snprintf(r->reference, sizeof r->reference, "%s", ref_name);
    r->ref_value = ref_value;
    if (!isnan(ref_value) && ref_value != 0 && !isnan(st.med))
      r->ratio = st.med / ref_value;
  }
  if (note)
    snprintf(r->note, sizeof r->note, "%s", note);
  if (!bench_quiet)
    bench_print_result(r);
}

void bench_emit_meas(bench_ctx *c, const char *scenario, const bench_meas *m,
                     const char *ref_name, const bench_meas *ref,
                     const char *note) {
  bench_stat st = bench_stat_of(m->eps, m->reps);
  bench_stat rs = ref ? bench_stat_of(ref->eps, ref->reps)
                      : (bench_stat){ NAN, NAN, NAN, 0 };
  /* Progress: one line per measurement. */
  char v[32], lo[32], hi[32], p50[32], p99[32], ratio[48];
  bench_fmt_num(v, sizeof v, st.med);
  bench_fmt_num(lo, sizeof lo, st.min);
  bench_fmt_num(hi, sizeof hi, st.max);
  bench_fmt_num(p50, sizeof p50, bench_stat_of(m->p50, m->reps).med);
  bench_fmt_num(p99, sizeof p99, bench_stat_of(m->p99, m->reps).med);
  ratio[0] = '\0';
  if (ref_name && !isnan(rs.med) && rs.med > 0)
    snprintf(ratio, sizeof ratio, "%.2fx %s", st.med / rs.med, ref_name);
  fprintf(stderr, "  %-44s %12s ev/s [%s..%s]", scenario, v, lo, hi);
  if (m->has_lat)
    fprintf(stderr, " p50 %s p99 %s us", p50, p99);
  fprintf(stderr, "%s%s\n", ratio[0] ? "  " : "", ratio);
  bench_quiet = 1;
  bench_emit(c, scenario, "events/s", "events/s", st, ref_name, rs.med, note);
  if (m->has_mb) {
    st = bench_stat_of(m->mbps, m->reps);
    rs = ref && ref->has_mb ? bench_stat_of(ref->mbps, ref->reps)
                            : (bench_stat){ NAN, NAN, NAN, 0 };
    bench_emit(c, scenario, "MB/s", "MB/s", st, ref_name, rs.med, NULL);
  }
  if (m->has_lat) {
    static const char *names[] = { "p50", "p99", "p999" };
    const double *mine[] = { m->p50, m->p99, m->p999 };
    const double *theirs[] = { ref ? ref->p50 : NULL, ref ? ref->p99 : NULL,
                               ref ? ref->p999 : NULL };
    for (int i = 0; i < 3; i++) {
      st = bench_stat_of(mine[i], m->reps);
      rs = ref && ref->has_lat ? bench_stat_of(theirs[i], ref->reps)
                               : (bench_stat){ NAN, NAN, NAN, 0 };
      bench_emit(c, scenario, names[i], "us", st, ref_name, rs.med, NULL);
    }
  }
  bench_quiet = 0;
}

void bench_emit_lat_sub(bench_ctx *c, const char *scenario, const char *label,
                        const bench_meas *m, const char *note) {
  static const char *names[] = { "p50", "p99", "p999" };
  const double *v[] = { m->p50, m->p99, m->p999 };
  if (!m->has_lat)
    return;
  for (int i = 0; i < 3; i++) {
    char metric[32];
    BENCH_FMT(metric, "%s %s", label, names[i]);
    bench_emit(c, scenario, metric, "us", bench_stat_of(v[i], m->reps), NULL,
               NAN, i == 0 ? note : NULL);
  }
}

void bench_skip(bench_ctx *c, const char *scenario, const char *reason) {
  bench_result *r = bench_new_result(c);
  snprintf(r->scenario, sizeof r->scenario, "%s", scenario);
  snprintf(r->metric, sizeof r->metric, "skipped");
  snprintf(r->note, sizeof r->note, "%s", reason);
  bench_print_result(r);
}

void bench_fail(bench_ctx *c, const char *scenario, const char *fmt, ...) {
  bench_result *r = bench_new_result(c);
  snprintf(r->scenario, sizeof r->scenario, "%s", scenario);
  snprintf(r->metric, sizeof r->metric, "error");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->note, sizeof r->note, fmt, ap);
  va_end(ap);
  c->errors++;
  bench_print_result(r);
}

const bench_result *bench_find(const bench_ctx *c, const char *scenario,
                               const char *metric, const char *reference) {
  for (size_t i = 0; i < c->nres; i++) {
    const bench_result *r = &c->res[i];
    if (strcmp(r->scenario, scenario) == 0 && strcmp(r->metric, metric) == 0 &&
        (reference == NULL || strcmp(r->reference, reference) == 0))
      return r;
  }
  return NULL;
}

void bench_point_add(bench_ctx *c, const char *series, double x, double y) {
  if (c->npts == c->cappts) {
    size_t cap = c->cappts ? c->cappts * 2 : 64;
    bench_point *p = realloc(c->pts, cap * sizeof *p);
    if (p == NULL)
      return;
    c->pts = p;
    c->cappts = cap;
  }
  bench_point *p = &c->pts[c->npts++];
  snprintf(p->series, sizeof p->series, "%s", series);
  p->x = x;
  p->y = y;
}

int bench_selected(const bench_ctx *c, const char *name) {
  const char *s = c->opt.only;
  if (s == NULL || *s == '\0')
    return 1;
  size_t n = strlen(name);
  while (*s) {
    const char *e = strchr(s, ',');
    size_t len = e ? (size_t)(e - s) : strlen(s);
    if (len == n && strncmp(s, name, n) == 0)
      return 1;
    if (!e)
      break;
    s = e + 1;
  }
  return 0;
}

/* ---- directories
 * -------------------------------------------------------------------- */

int bench_mkdir(bench_ctx *c, const char *tag, char *out, size_t cap) {
  int n = snprintf(out, cap, "%s/%03u-%s", c->root, ++c->dir_seq, tag);
  if (n < 0 || (size_t)n >= cap)
    return -ENAMETOOLONG;
  if (mkdir(out, 0755) != 0 && errno != EEXIST)
    return -errno;
  return 0;
}

static int bench_rm_cb(const char *path, const struct stat *sb, int flag,
                       struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

void bench_rmtree(bench_ctx *c, const char *path) {
  if (c->opt.keep || path == NULL || path[0] == '\0')
    return;
  nftw(path, bench_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

uint64_t bench_io_written(void) {
  FILE *f = fopen("/proc/self/io", "r");
  if (f == NULL)
    return 0;
  char line[128];
  unsigned long long v = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "wchar: %llu", &v) == 1)
      break;
  fclose(f);
  return v;
}

uint64_t bench_file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

uint64_t bench_dir_bytes(const char *path) {
  char p[4200];
  uint64_t total = 0;
  static const char *files[] = { "data.mdb", "lock.mdb" };
  for (size_t i = 0; i < 2; i++) {
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", path, files[i]);
    if (stat(p, &st) == 0)
      total += (uint64_t)st.st_blocks * 512u;
  }
  return total;
}

void bench_fmt_num(char *out, size_t cap, double v) {
  if (isnan(v)) {
    snprintf(out, cap, "-");
    return;
  }
  if (fabs(v) < 10 && v != floor(v)) {
    snprintf(out, cap, "%.2f", v);
    return;
  }
  if (fabs(v) < 100 && v != floor(v)) {
    snprintf(out, cap, "%.1f", v);
    return;
  }
  char digits[64];
  snprintf(digits, sizeof digits, "%.0f", fabs(v));
  size_t len = strlen(digits), o = 0;
  if (v < 0 && o + 1 < cap)
    out[o++] = '-';
  for (size_t i = 0; i < len && o + 2 < cap; i++) {
    out[o++] = digits[i];
    size_t left = len - i - 1;
    if (left && left % 3 == 0)
      out[o++] = ',';
  }
  out[o] = '\0';
}

const char *bench_dur_name(evs_durability d) {
  return d == EVS_NOSYNC       ? "nosync"
         : d == EVS_NOMETASYNC ? "nometasync"
                               : "sync";
}

void bench_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; s && *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

/* ---- the machine
 * ------------------------------------------------------------------ */

typedef struct bench_machine {
  long cores;
  char cpu[128];
  double ram_gib;
  char kernel[160];
  char fs_type[32];
  char fs_source[128];
  char fs_mount[256];
  char fs_opts[256];
  char disk[160];
  char loadavg[64];
  char date[64];
} bench_machine;

static void bench_trim(char *s) {
  size_t n = strlen(s);
  while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t'))
    s[--n] = '\0';
}

static void bench_read_line(const char *path, char *out, size_t cap) {
  out[0] = '\0';
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return;
  if (fgets(out, (int)cap, f) == NULL)
    out[0] = '\0';
  fclose(f);
  bench_trim(out);
}

/* Finds the mount of `path` in /proc/self/mountinfo (longest prefix). */
static void bench_mount_of(const char *path, bench_machine *m) {
  char real[4096];
  if (realpath(path, real) == NULL)
    snprintf(real, sizeof real, "%s", path);
  FILE *f = fopen("/proc/self/mountinfo", "r");
  if (f == NULL)
    return;
  char line[2048];
  size_t best = 0;
  while (fgets(line, sizeof line, f)) {
    /* id parent maj:min root mountpoint opts ... - fstype source superopts */
    char mnt[1024], opts[512], fstype[64], source[256];
    char *dash = strstr(line, " - ");
    if (dash == NULL)
      continue;
    if (sscanf(line, "%*s %*s %*s %*s %1023s %511s", mnt, opts) != 2)
      continue;
    if (sscanf(dash + 3, "%63s %255s", fstype, source) != 2)
      continue;
    size_t ml = strlen(mnt);
    int prefix = strncmp(real, mnt, ml) == 0 &&
                 (real[ml] == '/' || real[ml] == '\0' || ml == 1);
    if (prefix && ml >= best) {
      best = ml;
      BENCH_FMT(m->fs_mount, "%s", mnt);
      BENCH_FMT(m->fs_type, "%s", fstype);
      BENCH_FMT(m->fs_source, "%s", source);
      BENCH_FMT(m->fs_opts, "%s", opts);
    }
  }
  fclose(f);
  /* The block device behind it: rotational or not, and its model. */
  const char *dev = strrchr(m->fs_source, '/');
  if (dev && dev[1]) {
    char p[512], rot[16], model[96];
    snprintf(p, sizeof p, "/sys/class/block/%s/queue/rotational", dev + 1);
    bench_read_line(p, rot, sizeof rot);
    snprintf(p, sizeof p, "/sys/class/block/%s/device/model", dev + 1);
    bench_read_line(p, model, sizeof model);
    if (model[0] == '\0') {
      snprintf(p, sizeof p, "/sys/class/block/%s/device/vendor", dev + 1);
      bench_read_line(p, model, sizeof model);
    }
    snprintf(m->disk, sizeof m->disk, "%s%s%s%s", dev + 1,
             rot[0] ? (rot[0] == '1' ? ", rotational" : ", non-rotational")
                    : "",
             model[0] ? ", " : "", model);
  }
}

/* 1 if two /proc/loadavg lines show the same three averages. */
static int bench_same_load(const char *a, const char *b) {
  double x[3] = { 0 }, y[3] = { 0 };
  return sscanf(a, "%lf %lf %lf", &x[0], &x[1], &x[2]) == 3 &&
         sscanf(b, "%lf %lf %lf", &y[0], &y[1], &y[2]) == 3 && x[0] == y[0] &&
         x[1] == y[1] && x[2] == y[2];
}

static void bench_machine_get(bench_ctx *c, bench_machine *m) {
  memset(m, 0, sizeof *m);
  m->cores = sysconf(_SC_NPROCESSORS_ONLN);
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (f) {
    char line[512];
    while (fgets(line, sizeof line, f)) {
      if (strncmp(line, "model name", 10) == 0) {
        char *p = strchr(line, ':');
        if (p) {
          p++;
          while (*p == ' ')
            p++;
          snprintf(m->cpu, sizeof m->cpu, "%s", p);
          bench_trim(m->cpu);
        }
        break;
      }
    }
    fclose(f);
  }
  m->ram_gib = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE) /
               (1024.0 * 1024 * 1024);
  struct utsname u;
  if (uname(&u) == 0)
    BENCH_FMT(m->kernel, "%s %s %s", u.sysname, u.release, u.machine);
  bench_mount_of(c->root, m);
  struct statfs sfs;
  if (m->fs_type[0] == '\0' && statfs(c->root, &sfs) == 0)
    snprintf(m->fs_type, sizeof m->fs_type, "statfs-0x%lx",
             (unsigned long)sfs.f_type);
  bench_read_line("/proc/loadavg", m->loadavg, sizeof m->loadavg);
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(m->date, sizeof m->date, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

void bench_machine_start(bench_ctx *c) {
  bench_machine m;
  bench_machine_get(c, &m);
  BENCH_FMT(c->start_date, "%s", m.date);
  BENCH_FMT(c->start_load, "%s", m.loadavg);
}

#ifndef EVS_BENCH_BUILD_TYPE
#define EVS_BENCH_BUILD_TYPE "unknown"
#endif

void bench_machine_text(bench_ctx *c, FILE *f) {
  bench_machine m;
  bench_machine_get(c, &m);
  if (c->start_date[0] && strcmp(c->start_date, m.date) != 0)
    fprintf(f, "date:        %s to %s\n", c->start_date, m.date);
  else
    fprintf(f, "date:        %s\n", m.date);
  fprintf(f, "machine:     %ld cores, %s, %.1f GiB RAM\n", m.cores, m.cpu,
          m.ram_gib);
  fprintf(f, "kernel:      %s\n", m.kernel);
  fprintf(f, "data dir:    %s\n", c->root);
  fprintf(f, "filesystem:  %s on %s (mounted at %s, %s)%s%s\n", m.fs_type,
          m.fs_source, m.fs_mount, m.fs_opts, m.disk[0] ? "; disk " : "",
          m.disk);
  if (strcmp(m.fs_type, "tmpfs") == 0 || strcmp(m.fs_type, "ramfs") == 0)
    fprintf(f, "WARNING:     the data dir is in memory: durable figures "
               "(fsync) are meaningless; use --dir on a real disk\n");
  fprintf(f, "durability:  sync (LMDB defaults: fdatasync + O_DSYNC meta "
             "write per commit) unless a scenario is labelled nometasync "
             "or nosync\n");
  fprintf(f, "versions:    evstore %s, %s, zstd %s, compiler %s, build %s\n",
          EVS_VERSION_STRING, mdb_version(NULL, NULL, NULL),
          ZSTD_versionString(), __VERSION__, EVS_BENCH_BUILD_TYPE);
  if (c->start_load[0] && !bench_same_load(c->start_load, m.loadavg))
    fprintf(f,
            "load avg:    at start %s; now %s (1, 5, 15 min; "
            "runnable/total; last pid)\n",
            c->start_load, m.loadavg);
  else
    fprintf(f, "load avg:    %s (1, 5, 15 min; runnable/total; last pid)\n",
            m.loadavg);
}

void bench_machine_json(bench_ctx *c, FILE *f) {
  bench_machine m;
  bench_machine_get(c, &m);
  fprintf(f, "{\"date\":");
  bench_json_str(f, m.date);
  fprintf(f, ",\"cores\":%ld,\"cpu\":", m.cores);
  bench_json_str(f, m.cpu);
  fprintf(f, ",\"ram_gib\":%.1f,\"kernel\":", m.ram_gib);
  bench_json_str(f, m.kernel);
  fprintf(f, ",\"data_dir\":");
  bench_json_str(f, c->root);
  fprintf(f, ",\"filesystem\":");
  bench_json_str(f, m.fs_type);
  fprintf(f, ",\"device\":");
  bench_json_str(f, m.fs_source);
  fprintf(f, ",\"mount\":");
  bench_json_str(f, m.fs_mount);
  fprintf(f, ",\"mount_options\":");
  bench_json_str(f, m.fs_opts);
  fprintf(f, ",\"disk\":");
  bench_json_str(f, m.disk);
  fprintf(f, ",\"durability\":\"sync unless the scenario names "
             "nometasync or nosync\",\"evstore\":");
  bench_json_str(f, EVS_VERSION_STRING);
  fprintf(f, ",\"lmdb\":");
  bench_json_str(f, mdb_version(NULL, NULL, NULL));
  fprintf(f, ",\"zstd\":");
  bench_json_str(f, ZSTD_versionString());
  fprintf(f, ",\"compiler\":");
  bench_json_str(f, __VERSION__);
  fprintf(f, ",\"build\":");
  bench_json_str(f, EVS_BENCH_BUILD_TYPE);
  fprintf(f, ",\"date_start\":");
  bench_json_str(f, c->start_date);
  fprintf(f, ",\"loadavg_start\":");
  bench_json_str(f, c->start_load);
  fprintf(f, ",\"loadavg_end\":");
  bench_json_str(f, m.loadavg);
  fprintf(f, ",\"quick\":%s,\"reps\":%d}", c->opt.quick ? "true" : "false",
          c->opt.reps);
}
