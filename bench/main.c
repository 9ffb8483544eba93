/*
 * evstore-bench — the benchmark harness of evstore.
 *
 *   evstore-bench            every scenario (15-25 minutes; more with
 *                            --peers)
 *   evstore-bench --quick    small sizes, under a minute: a CI smoke test
 *                            (it checks that everything runs, never speed)
 *
 * Prints a table of events/s, MB/s and latency percentiles, each figure with
 * its ratio to a reference measured in the same run, then the targets as
 * PASS/MISS lines; --json writes every result as an object. See
 * docs/performance.md for the scenarios, the references and how to read
 * the figures.
 *
 * Each scenario is one function in the table below. A scenario whose
 * component is not built yet records "skipped: <reason>", never numbers.
 * The exit status is 1 when a scenario failed (an error, not a slow
 * figure) and 2 on a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

static const struct {
  const char *name;
  const char *title;
  bench_scenario_fn fn;
} scenarios[] = {
  { "append", "1. in-process append, durable (sync): batch x data size",
    sc_append },
  { "group-commit",
    "2. group commit: 1, 4, 16, 64 threads of single "
    "appends (sync)",
    sc_group },
  { "sync-modes", "3. the same in nometasync and nosync", sc_syncmodes },
  { "read", "4. reads: $all scan, one stream, category and type", sc_read },
  { "subscription", "5. subscriptions: catch-up, live latency",
    sc_subscription },
  { "projection", "6. projection rebuild: stream-state", sc_projection },
  { "server", "7. server: evstored over TCP", sc_server },
  { "storage", "8. storage: bytes per event, compression", sc_storage },
  { "growth", "9. growth: as the store grows to 10M events (--large 50M)",
    sc_growth },
};
#define NSCENARIOS (sizeof scenarios / sizeof scenarios[0])

static bench_ctx ctx;
volatile pid_t bench_child_pid;

static void usage(FILE *f) {
  fprintf(f,
          "usage: evstore-bench [options]\n"
          "\n"
          "Runs evstore's benchmark scenarios and prints a table of events/s,\n"
          "MB/s and latency p50/p99/p999 (median of --reps runs, with the\n"
          "min..max spread), each figure with its ratio to a reference\n"
          "measured in the same run, and the targets as PASS/MISS lines.\n"
          "\n"
          "options:\n"
          "  --quick          small sizes, under a minute (CI smoke test;\n"
          "                   never asserts speed)\n"
          "  --large          growth scenario up to 50M events (default 10M)\n"
          "  --peers          also run ../shared/peers/run-all.sh (SQLite,\n"
          "                   PostgreSQL, Redis; ~6 min, root, Debian) and\n"
          "                   take ratios against them; the script is found\n"
          "                   as $EVS_PEERS_DIR/run-all.sh or\n"
          "                   <repo>/../shared/peers/run-all.sh\n"
          "  --peers-log FILE take the peer figures from an earlier run's\n"
          "                   raw.log instead (labelled as such)\n"
          "  --only LIST      run only these scenarios (comma-separated)\n"
          "  --reps N         repetitions of each measurement (default 3)\n"
          "  --secs S         time budget of one timed append run (default "
          "1,\n"
          "                   --quick 0.05; at most 60)\n"
          "  --dir DIR        where the stores go (a temporary directory is\n"
          "                   made inside it and removed at the end);\n"
          "                   default $TMPDIR, else the current directory\n"
          "  --evstored PATH  the server of scenario 7 (default: the one\n"
          "                   of this build tree, <bench>/../src/server/\n"
          "                   evstored; or $EVS_BENCH_EVSTORED)\n"
          "  --json FILE      write the results as JSON\n"
          "  --out DIR        charts (SVG), data files and tables (default\n"
          "                   bench-results; written by full runs, and by\n"
          "                   --quick runs only when --out is given)\n"
          "  --no-charts      do not write the --out directory\n"
          "  --keep           keep the stores (for inspection)\n"
          "  --ids v7|v4      client event ids: time-ordered UUIDv7 (the\n"
          "                   default, as evstore generates them) or random\n"
          "                   UUIDv4 (the peers' ids; each costs an id-index\n"
          "                   B-tree insert); by default the append\n"
          "                   scenario adds one batch-100 run with v4 ids\n"
          "  --list           list the scenarios and exit\n"
          "  --help, -h       this text\n"
          "\n"
          "scenarios:\n");
  for (size_t i = 0; i < NSCENARIOS; i++)
    fprintf(f, "  %-14s %s\n", scenarios[i].name, scenarios[i].title);
  fprintf(f, "\n"
             "exit status: 0 when no scenario failed (a skipped scenario, a\n"
             "slow figure or a MISS target never fails the run), 1 when one\n"
             "failed or the JSON could not be written, 2 on a usage error.\n");
}

static void on_signal(int sig) {
  /* Best effort: remove the scratch stores, then die of the signal. (The
   * handler runs with every signal blocked, so two signals cannot both
   * start removing.) */
  static const char msg[] = "\nevstore-bench: interrupted, removing the "
                            "stores\n";
  static const char kept[] = "\nevstore-bench: interrupted\n";
  if ((ctx.root_is_temp && !ctx.opt.keep
           ? write(2, msg, sizeof msg - 1)
           : write(2, kept, sizeof kept - 1)) < 0) {
    /* nothing to do */
  }
  if (bench_child_pid > 0)
    kill(bench_child_pid, SIGTERM);
  if (ctx.root_is_temp)
    bench_rmtree(&ctx, ctx.root);
  signal(sig, SIG_DFL);
  raise(sig);
}

static int make_root(bench_ctx *c) {
  const char *base = c->opt.dir;
  if (base == NULL) {
    const char *t = getenv("TMPDIR");
    base = t && *t ? t : ".";
  }
  if (mkdir(base, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "evstore-bench: cannot create %s: %s\n", base,
            strerror(errno));
    return -1;
  }
  char abs[4096];
  if (realpath(base, abs) == NULL) {
    fprintf(stderr, "evstore-bench: %s: %s\n", base, strerror(errno));
    return -1;
  }
  int n = snprintf(c->root, sizeof c->root, "%s/evstore-bench.XXXXXX", abs);
  if (n < 0 || (size_t)n >= sizeof c->root) {
    fprintf(stderr, "evstore-bench: path too long: %s\n", abs);
    return -1;
  }
  if (mkdtemp(c->root) == NULL) {
    fprintf(stderr, "evstore-bench: cannot create a directory in %s: %s\n", abs,
            strerror(errno));
    return -1;
  }
  c->root_is_temp = 1;
  return 0;
}

/*
 * Checks before the run what is only used after it: a --json or --out path
 * that cannot be written would otherwise fail after every scenario ran.
 * The check writes: a file or directory it had to create is removed again,
 * an existing file is opened for appending, not truncated.
 */
static int writable_path(const char *opt, const char *path, int is_dir) {
  struct stat st;
  int exists = stat(path, &st) == 0;
  int ok;
  if (exists && (is_dir ? !S_ISDIR(st.st_mode) : S_ISDIR(st.st_mode))) {
    errno = is_dir ? ENOTDIR : EISDIR;
    ok = 0;
  } else if (!is_dir) {
    int fd = open(
        path, exists ? O_WRONLY | O_APPEND : O_WRONLY | O_CREAT | O_EXCL, 0644);
    ok = fd >= 0;
    if (ok) {
      close(fd);
      if (!exists)
        unlink(path);
    }
  } else if (!exists) {
    ok = mkdir(path, 0755) == 0;
    if (ok)
      rmdir(path);
  } else {
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.evstore-bench-XXXXXX", path);
    int fd = mkstemp(probe);
    ok = fd >= 0;
    if (ok) {
      close(fd);
      unlink(probe);
    }
  }
  if (!ok)
    fprintf(stderr, "evstore-bench: %s %s: %s\n", opt, path, strerror(errno));
  return ok;
}

static int known_scenario(const char *list) {
  const char *s = list;
  while (*s) {
    const char *e = strchr(s, ',');
    size_t len = e ? (size_t)(e - s) : strlen(s);
    int ok = len == 5 && strncmp(s, "peers", 5) == 0;
    for (size_t i = 0; i < NSCENARIOS && !ok; i++)
      ok = strlen(scenarios[i].name) == len &&
           strncmp(s, scenarios[i].name, len) == 0;
    if (!ok) {
      fprintf(stderr, "evstore-bench: unknown scenario '%.*s' (--list)\n",
              (int)len, s);
      return 0;
    }
    if (!e)
      break;
    s = e + 1;
  }
  return 1;
}

int main(int argc, char **argv) {
  bench_ctx *c = &ctx;
  int no_charts = 0, out_given = 0;
  double secs = NAN;
  c->opt.reps = 3;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_ARG()                                                             \
  do {                                                                         \
    if (v == NULL) {                                                           \
      fprintf(stderr, "evstore-bench: %s needs a value\n", a);                 \
      return 2;                                                                \
    }                                                                          \
    i++;                                                                       \
  } while (0)
    if (strcmp(a, "--quick") == 0) {
      c->opt.quick = 1;
    } else if (strcmp(a, "--large") == 0) {
      c->opt.large = 1;
    } else if (strcmp(a, "--peers") == 0) {
      c->opt.peers = 1;
    } else if (strcmp(a, "--peers-log") == 0) {
      NEED_ARG();
      c->opt.peers_log = v;
    } else if (strcmp(a, "--only") == 0) {
      NEED_ARG();
      c->opt.only = v;
    } else if (strcmp(a, "--reps") == 0) {
      NEED_ARG();
      char *end;
      errno = 0;
      long n = strtol(v, &end, 10);
      c->opt.reps =
          errno || end == v || *end || n < 1 || n > BENCH_MAX_REPS ? 0 : (int)n;
      if (c->opt.reps == 0) {
        fprintf(stderr, "evstore-bench: --reps must be 1..%d\n",
                BENCH_MAX_REPS);
        return 2;
      }
    } else if (strcmp(a, "--secs") == 0) {
      NEED_ARG();
      char *end;
      secs = strtod(v, &end);
      if (end == v || *end || !(secs > 0 && secs <= BENCH_MAX_SECS)) {
        fprintf(stderr, "evstore-bench: --secs must be a number in (0, %d]\n",
                BENCH_MAX_SECS);
        return 2;
      }
    } else if (strcmp(a, "--evstored") == 0) {
      NEED_ARG();
      c->opt.evstored = v;
    } else if (strcmp(a, "--dir") == 0) {
      NEED_ARG();
      c->opt.dir = v;
    } else if (strcmp(a, "--json") == 0) {
      NEED_ARG();
      c->opt.json = v;
    } else if (strcmp(a, "--out") == 0) {
      NEED_ARG();
      c->opt.out_dir = v;
      out_given = 1;
    } else if (strcmp(a, "--no-charts") == 0) {
      no_charts = 1;
    } else if (strcmp(a, "--keep") == 0) {
      c->opt.keep = 1;
    } else if (strcmp(a, "--ids") == 0) {
      NEED_ARG();
      if (strcmp(v, "v4") == 0) {
        c->opt.ids_v4 = 1;
      } else if (strcmp(v, "v7") != 0) {
        fprintf(stderr, "evstore-bench: --ids must be v7 or v4\n");
        return 2;
      }
    } else if (strcmp(a, "--list") == 0) {
      for (size_t k = 0; k < NSCENARIOS; k++)
        printf("%-14s %s\n", scenarios[k].name, scenarios[k].title);
      printf("%-14s %s\n", "peers",
             "references: SQLite, PostgreSQL, Redis (with --peers)");
      return 0;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "evstore-bench: unknown option '%s'\n\n", a);
      usage(stderr);
      return 2;
    }
#undef NEED_ARG
  }
  if (c->opt.only && !known_scenario(c->opt.only))
    return 2;
  c->opt.secs = !isnan(secs) ? secs : c->opt.quick ? 0.05 : 1.0;
  c->opt.charts = !no_charts && (!c->opt.quick || out_given);
  if (c->opt.json && !writable_path("--json", c->opt.json, 0))
    return 2;
  if (c->opt.charts &&
      !writable_path("--out", c->opt.out_dir ? c->opt.out_dir : "bench-results",
                     1))
    return 2;
  if (c->opt.peers_log && access(c->opt.peers_log, R_OK) != 0) {
    fprintf(stderr, "evstore-bench: --peers-log %s: %s\n", c->opt.peers_log,
            strerror(errno));
    return 2;
  }
  if (c->opt.evstored && access(c->opt.evstored, X_OK) != 0) {
    fprintf(stderr, "evstore-bench: --evstored %s: %s\n", c->opt.evstored,
            strerror(errno));
    return 2;
  }
  if (c->opt.only && strstr(c->opt.only, "peers") && !c->opt.peers_log)
    c->opt.peers = 1;

  if (make_root(c))
    return 2;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigfillset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  sigaction(SIGPIPE, &sa, NULL); /* e.g. piped into head: clean up too */

  bench_machine_start(c);
  fprintf(stderr, "evstore-bench%s: stores in %s\n",
          c->opt.quick ? " --quick" : "", c->root);
  bench_machine_text(c, stderr);
  double t_all = bench_now();
  for (size_t i = 0; i < NSCENARIOS; i++) {
    if (!bench_selected(c, scenarios[i].name))
      continue;
    fprintf(stderr, "\n== %s ==\n", scenarios[i].title);
    double t0 = bench_now();
    scenarios[i].fn(c);
    fprintf(stderr, "  (%s: %.1f s)\n", scenarios[i].name, bench_now() - t0);
  }
  if (c->opt.peers || c->opt.peers_log) {
    fprintf(stderr, "\n== references: peer systems ==\n");
    sc_peers(c);
    bench_peer_compare(c);
  } else if (!c->opt.only) {
    sc_peers(c); /* records why the peer ratios are missing */
  }
  fprintf(stderr, "\nall scenarios: %.0f s\n", bench_now() - t_all);

  printf("\nevstore-bench results%s\n\n", c->opt.quick ? " (--quick: "
                                                         "smoke test, not "
                                                         "a measurement)"
                                                       : "");
  bench_machine_text(c, stdout);
  printf("\n");
  bench_print_table(c, stdout);
  bench_print_targets(c, stdout);
  fflush(stdout);

  int rc = 0;
  if (c->opt.json) {
    int jr = bench_write_json(c, c->opt.json);
    if (jr) {
      fprintf(stderr, "evstore-bench: writing %s: %s\n", c->opt.json,
              strerror(-jr));
      rc = 1;
    }
  }
  if (c->opt.charts)
    bench_write_charts(c);
  if (c->root_is_temp)
    bench_rmtree(c, c->root);
  if (c->opt.keep)
    fprintf(stderr, "stores kept in %s\n", c->root);
  if (c->errors) {
    fprintf(stderr, "evstore-bench: %d scenario(s) failed\n", c->errors);
    rc = 1;
  }
  free(c->res);
  free(c->pts);
  free(c->peers);
  return rc;
}
