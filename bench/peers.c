/*
 * evstore-bench — the peer baselines: SQLite, PostgreSQL, Redis (and the
 * peers' own raw LMDB program), measured by ../shared/peers/run-all.sh.
 *
 * With --peers the harness runs that script in the same run (as root on
 * Debian 12 it installs what it needs; about 6 minutes), with its WORK
 * directory under the output directory, and parses the "RESULT ..." lines
 * of its raw.log:
 *
 *   RESULT system=<s> mode=<m> n=<events> secs=<s> eps=<events/s> [k=v ...]
 *
 * Each system/mode ran REPS times (3); the median of its eps values is the
 * baseline. --peers-log FILE parses an earlier raw.log instead (then the
 * peers were not measured in the same run, and the notes say so).
 * The script is found as $EVS_PEERS_DIR/run-all.sh, else
 * <repository>/../shared/peers/run-all.sh.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#ifndef EVS_BENCH_REPO_DIR
#define EVS_BENCH_REPO_DIR "."
#endif

typedef struct bench_peer {
  char key[128]; /* system/mode */
  double v[BENCH_MAX_REPS];
  int n;
} bench_peer;

static bench_peer *peer_get(bench_ctx *c, const char *key, int create) {
  for (size_t i = 0; i < c->npeers; i++)
    if (strcmp(c->peers[i].key, key) == 0)
      return &c->peers[i];
  if (!create)
    return NULL;
  bench_peer *p = realloc(c->peers, (c->npeers + 1) * sizeof *p);
  if (p == NULL)
    return NULL;
  c->peers = p;
  p = &c->peers[c->npeers++];
  memset(p, 0, sizeof *p);
  snprintf(p->key, sizeof p->key, "%s", key);
  return p;
}

/* The value of "name=" in a RESULT line, into out. */
static int peer_field(const char *line, const char *name, char *out,
                      size_t cap) {
  size_t nl = strlen(name);
  for (const char *p = line; (p = strstr(p, name)) != NULL; p++) {
    if ((p == line || p[-1] == ' ') && p[nl] == '=') {
      p += nl + 1;
      size_t i = 0;
      while (p[i] && p[i] != ' ' && p[i] != '\n' && i + 1 < cap) {
        out[i] = p[i];
        i++;
      }
      out[i] = '\0';
      return 1;
    }
  }
  return 0;
}

static int peer_parse(bench_ctx *c, const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -errno;
  char line[1024], sys[64], mode[96], eps[32], key[128];
  int count = 0;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "RESULT ", 7) != 0)
      continue;
    if (!peer_field(line, "system", sys, sizeof sys) ||
        !peer_field(line, "mode", mode, sizeof mode) ||
        !peer_field(line, "eps", eps, sizeof eps))
      continue;
    BENCH_FMT(key, "%s/%s", sys, mode);
    bench_peer *p = peer_get(c, key, 1);
    if (p && p->n < BENCH_MAX_REPS)
      p->v[p->n++] = atof(eps);
    count++;
  }
  fclose(f);
  snprintf(c->peers_source, sizeof c->peers_source, "%s", path);
  return count;
}

double bench_peer_eps(const bench_ctx *c, const char *system,
                      const char *mode) {
  char key[128];
  snprintf(key, sizeof key, "%s/%s", system, mode);
  for (size_t i = 0; i < c->npeers; i++)
    if (strcmp(c->peers[i].key, key) == 0)
      return bench_stat_of(c->peers[i].v, c->peers[i].n).med;
  return NAN;
}

static int peer_run(bench_ctx *c, const char *script, const char *work) {
  char results[4300];
  snprintf(results, sizeof results, "%s/results.txt", work);
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0)
    return -errno;
  if (pid == 0) {
    setenv("WORK", work, 1);
    setenv("RESULTS", results, 1);
    dup2(2, 1); /* its table goes to our stderr, beside our progress */
    execlp("bash", "bash", script, (char *)NULL);
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
    ;
  (void)c;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void sc_peers(bench_ctx *c) {
  if (c->opt.peers_log) {
    int n = peer_parse(c, c->opt.peers_log);
    if (n <= 0)
      bench_fail(c, "peers", "no RESULT lines in %s", c->opt.peers_log);
    else
      bench_log("peers: %d RESULT lines from %s (an earlier run, not this "
                "one)",
                n, c->opt.peers_log);
    return;
  }
  if (!c->opt.peers) {
    bench_skip(c, "peers",
               "not run (pass --peers to run ../shared/peers/run-all.sh, "
               "about 6 minutes, or --peers-log FILE)");
    return;
  }
  char dir[4096], script[4200], work[4200];
  const char *env = getenv("EVS_PEERS_DIR");
  snprintf(dir, sizeof dir, "%s",
           env && *env ? env : EVS_BENCH_REPO_DIR "/../shared/peers");
  snprintf(script, sizeof script, "%s/run-all.sh", dir);
  if (access(script, R_OK) != 0) {
    /* --peers asked for them: a missing script is an error, not a skip. */
    bench_fail(c, "peers", "%s: %s (set EVS_PEERS_DIR)", script,
               strerror(errno));
    return;
  }
  const char *out = c->opt.out_dir ? c->opt.out_dir : "bench-results";
  char abs[4096];
  mkdir(out, 0755);
  if (realpath(out, abs) == NULL)
    snprintf(abs, sizeof abs, "%s", out);
  snprintf(work, sizeof work, "%s/peers", abs);
  mkdir(work, 0755);
  bench_log("peers: running %s (WORK=%s); this takes about 6 minutes", script,
            work);
  double t0 = bench_now();
  int rc = peer_run(c, script, work);
  char log[4300];
  snprintf(log, sizeof log, "%s/raw.log", work);
  int n = peer_parse(c, log);
  if (rc != 0)
    bench_log("peers: run-all.sh exited with %d", rc);
  if (n <= 0) {
    bench_fail(c, "peers", "run-all.sh produced no RESULT lines (exit %d)", rc);
    return;
  }
  bench_log("peers: %d RESULT lines in %.0f s", n, bench_now() - t0);
}

/* evstore scenario -> the peer rows it is set beside. */
static const struct {
  const char *scenario;
  const char *system;
  const char *mode;
  const char *ref;
} peer_map[] = {
  { "append/b1/200B/sync", "sqlite", "b1/full", "sqlite-b1" },
  { "append/b1/200B/sync", "postgres", "b1/sync_commit=on", "postgres-b1" },
  { "append/b1/200B/sync", "redis", "b1/appendfsync=always", "redis-b1" },
  { "append/b1/200B/sync", "lmdb", "occ/b1/sync", "peers-lmdb-occ-b1" },
  { "append/b100/200B/sync", "sqlite", "b100/full", "sqlite-b100" },
  { "append/b100/200B/sync", "postgres", "b100/sync_commit=on/pipeline",
    "postgres-b100" },
  { "append/b100/200B/sync", "redis", "b100/appendfsync=always", "redis-b100" },
  { "append/b100/200B/sync", "lmdb", "occ-index/b100/sync",
    "peers-lmdb-occ-index-b100" },
  { "append/b1/200B/nosync", "sqlite", "b1/normal", "sqlite-b1-normal" },
  { "append/b1/200B/nosync", "postgres", "b1/sync_commit=off",
    "postgres-b1-async" },
  { "append/b1/200B/nosync", "redis", "b1/appendfsync=everysec",
    "redis-b1-everysec" },
  { "append/b100/200B/nosync", "sqlite", "b100/normal", "sqlite-b100-normal" },
  { "append/b100/200B/nosync", "postgres", "b100/sync_commit=off/pipeline",
    "postgres-b100-async" },
  { "append/b100/200B/nosync", "redis", "b100/appendfsync=everysec",
    "redis-b100-everysec" },
  { "group-commit/1t/sync", "sqlite", "c1/full", "sqlite-1" },
  { "group-commit/1t/sync", "postgres", "c1/sync_commit=on", "postgres-1" },
  { "group-commit/1t/sync", "redis", "c1/appendfsync=always", "redis-1" },
  { "group-commit/1t/sync", "lmdb", "occ/c1/sync", "peers-lmdb-1" },
  { "group-commit/16t/sync", "sqlite", "c16/full", "sqlite-16" },
  { "group-commit/16t/sync", "postgres", "c16/sync_commit=on", "postgres-16" },
  { "group-commit/16t/sync", "redis", "c16/appendfsync=always", "redis-16" },
  { "group-commit/16t/sync", "lmdb", "occ/c16/sync", "peers-lmdb-16" },
  { "group-commit/64t/sync", "sqlite", "c64/full", "sqlite-64" },
  { "group-commit/64t/sync", "postgres", "c64/sync_commit=on", "postgres-64" },
  { "group-commit/64t/sync", "redis", "c64/appendfsync=always", "redis-64" },
  { "group-commit/64t/sync", "lmdb", "occ/c64/sync", "peers-lmdb-64" },
  { "server/append/1c/sync", "sqlite", "c1/full", "sqlite-1" },
  { "server/append/1c/sync", "postgres", "c1/sync_commit=on", "postgres-1" },
  { "server/append/1c/sync", "redis", "c1/appendfsync=always", "redis-1" },
  { "server/append/16c/sync", "sqlite", "c16/full", "sqlite-16" },
  { "server/append/16c/sync", "postgres", "c16/sync_commit=on", "postgres-16" },
  { "server/append/16c/sync", "redis", "c16/appendfsync=always", "redis-16" },
  { "server/append/64c/sync", "sqlite", "c64/full", "sqlite-64" },
  { "server/append/64c/sync", "postgres", "c64/sync_commit=on", "postgres-64" },
  { "server/append/64c/sync", "redis", "c64/appendfsync=always", "redis-64" },
  { "read/all-100k", "sqlite", "read-all", "sqlite-read-all" },
  { "read/all-100k", "lmdb", "read-all", "peers-lmdb-read-all" },
  { "read/stream-100", "sqlite", "read-stream", "sqlite-read-stream" },
  { "read/stream-100", "lmdb", "read-stream", "peers-lmdb-read-stream" },
};

/*
 * The peers run minutes away from the evstore scenarios, and on a shared
 * machine the disk and the CPUs are not the same minutes apart. A bridge
 * is a figure measured both in this run (our raw LMDB loop) and in the
 * peers' run (their LMDB program doing the same work): the normalized
 * ratio (evstore / our raw) x (their LMDB / peer) cancels that drift.
 */
static const struct {
  const char *prefix; /* evstore scenarios starting with this */
  const char *ours;   /* our raw LMDB scenario (events/s) */
  const char *mode;   /* the peers' LMDB mode */
} peer_bridge[] = {
  { "append/b1/200B/sync", "raw-lmdb-occ-index/b1/200B/sync", "occ/b1/sync" },
  { "append/b100/200B/sync", "raw-lmdb-occ-index/b100/200B/sync",
    "occ-index/b100/sync" },
  { "append/b1/200B/nosync", "raw-lmdb-occ-index/b1/200B/nosync",
    "occ-index/b1/nosync" },
  { "append/b100/200B/nosync", "raw-lmdb-occ-index/b100/200B/nosync",
    "occ-index/b100/nosync" },
  /* Durable single commits: the same fsync-bound bridge for every count
   * of concurrent writers (an approximation for the servers). */
  { "group-commit/", "raw-lmdb-occ-index/b1/200B/sync", "occ/b1/sync" },
  { "server/append/", "raw-lmdb-occ-index/b1/200B/sync", "occ/b1/sync" },
  { "read/all-100k", "raw-lmdb-occ-index/all-100k", "read-all" },
  { "read/stream-100", "raw-lmdb-occ-index/stream-100", "read-stream" },
};

double bench_peer_normalized(const bench_ctx *c, const char *scenario,
                             double value, double peer_eps, char *via,
                             size_t cap) {
  for (size_t i = 0; i < sizeof peer_bridge / sizeof peer_bridge[0]; i++) {
    size_t pl = strlen(peer_bridge[i].prefix);
    if (strncmp(scenario, peer_bridge[i].prefix, pl) != 0)
      continue;
    const bench_result *o =
        bench_find(c, peer_bridge[i].ours, "events/s", NULL);
    double theirs = bench_peer_eps(c, "lmdb", peer_bridge[i].mode);
    if (o == NULL || isnan(o->value) || isnan(theirs) || isnan(peer_eps) ||
        o->value <= 0 || peer_eps <= 0)
      return NAN;
    if (via)
      snprintf(via, cap, "lmdb/%s", peer_bridge[i].mode);
    return value / o->value * theirs / peer_eps;
  }
  return NAN;
}

void bench_peer_compare(bench_ctx *c) {
  if (c->npeers == 0)
    return;
  char note[200];
  BENCH_FMT(note, "peer baseline from %s%s", c->peers_source,
            c->opt.peers_log ? " (an earlier run)" : " (this run)");
  for (size_t i = 0; i < sizeof peer_map / sizeof peer_map[0]; i++) {
    const bench_result *r =
        bench_find(c, peer_map[i].scenario, "events/s", NULL);
    double eps = bench_peer_eps(c, peer_map[i].system, peer_map[i].mode);
    if (r == NULL || isnan(eps))
      continue;
    bench_stat st = { r->value, r->min, r->max, r->reps };
    char via[96], ref[160], nnote[200];
    double norm = bench_peer_normalized(c, peer_map[i].scenario, r->value, eps,
                                        via, sizeof via);
    /* bench_emit may move the results array: r is not used after it. */
    bench_emit(c, peer_map[i].scenario, "events/s", "events/s", st,
               peer_map[i].ref, eps, note);
    if (!isnan(norm)) {
      bench_stat ns = { norm, norm, norm, 1 };
      snprintf(ref, sizeof ref, "%s", peer_map[i].ref);
      snprintf(nnote, sizeof nnote,
               "(evstore / our raw LMDB) x (peers' %s / %s): cancels the "
               "drift between the two runs",
               via, peer_map[i].ref);
      bench_emit(c, peer_map[i].scenario, "normalized ratio", "x", ns, ref, 1.0,
                 nnote);
    }
  }
}
