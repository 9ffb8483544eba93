/*
 * evstore-bench — shared declarations of the benchmark harness.
 *
 * The harness is a table of scenarios (main.c). Each scenario is a function
 * that measures something, repeats it, and records results through
 * bench_emit*(); a scenario whose component is not built yet records a skip
 * with its reason instead of numbers. Every figure may name a reference
 * measured in the same run (a raw LMDB loop, the 1-thread rate, a peer
 * system), and the harness computes the ratio to it.
 *
 * Nothing here is evstore API; the harness links the static library and,
 * for its reference measurements only, reads a few private fields through
 * src/store/internal.h.
 */
#ifndef EVS_BENCH_H
#define EVS_BENCH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "evstore/evstore.h"

#define BENCH_MAX_REPS 15
/* --secs: the events of one timed append run are generated beforehand, in
 * proportion to it. */
#define BENCH_MAX_SECS 60

/* ---- options and context ------------------------------------------------ */

typedef struct bench_opts {
  int quick;             /* --quick: small sizes, for CI smoke tests */
  int large;             /* --large: growth to 50M events */
  int peers;             /* --peers: run ../shared/peers/run-all.sh */
  int reps;              /* --reps N (default 3) */
  int charts;            /* write data files and SVG charts into out_dir */
  int keep;              /* --keep: do not delete the stores */
  const char *dir;       /* --dir: where stores go (NULL: a temp dir) */
  const char *json;      /* --json FILE */
  const char *out_dir;   /* --out DIR (default bench-results) */
  const char *only;      /* --only SCENARIO[,SCENARIO...] */
  const char *peers_log; /* --peers-log FILE: parse an earlier raw.log */
  const char *evstored;  /* --evstored PATH (scenario 7) */
  double secs;           /* time budget of one timed append run */
  int ids_v4;            /* --ids v4: random client ids everywhere */
} bench_opts;

/* One result: one figure of one scenario, optionally against a reference. */
typedef struct bench_result {
  char scenario[96];
  char metric[32]; /* "events/s", "MB/s", "p50", "bytes/event", ... */
  char unit[24];
  double value;    /* median over the repetitions; NAN when skipped */
  double min, max; /* spread over the repetitions */
  int reps;
  char reference[64]; /* what the ratio is taken against; "" = none */
  double ref_value;   /* the reference's figure (NAN = none) */
  double ratio;       /* value / ref_value; NAN = none */
  char note[200];
} bench_result;

/* A point of a chart series (growth curves). */
typedef struct bench_point {
  char series[32];
  double x;
  double y;
} bench_point;

typedef struct bench_ctx {
  bench_opts opt;
  char root[4096];  /* the run's scratch directory */
  int root_is_temp; /* created by us: removed at exit */
  unsigned dir_seq;
  bench_result *res;
  size_t nres, capres;
  bench_point *pts;
  size_t npts, cappts;
  int errors; /* scenarios that failed (not skipped) */
  /* Shared read store (scenarios 4-6), built on first use. */
  char read_store[4096];
  uint64_t read_store_events;
  uint64_t read_store_data_bytes;
  char read_raw[4096]; /* the same events in the raw-LMDB layout */
  /* Peer baselines (key "system/mode" -> median events/s). */
  struct bench_peer *peers;
  size_t npeers;
  char peers_source[4200];
  char start_date[64]; /* when the run started (UTC) */
  char start_load[64]; /* /proc/loadavg then */
} bench_ctx;

/* The evstored started by scenario 7 while it runs (0 otherwise): the
 * signal handler stops it. */
extern volatile pid_t bench_child_pid;

/* ---- results ------------------------------------------------------------ */

/* Summary of repeated measurements. */
typedef struct bench_stat {
  double med, min, max;
  int n;
} bench_stat;

bench_stat bench_stat_of(const double *v, int n);

/*
 * A measurement repeated `reps` times: throughput and, when has_lat,
 * per-operation latency percentiles (microseconds) of each repetition.
 */
typedef struct bench_meas {
  int reps;
  double eps[BENCH_MAX_REPS];  /* events per second */
  double mbps[BENCH_MAX_REPS]; /* event data MB (1e6 bytes) per second */
  double p50[BENCH_MAX_REPS], p99[BENCH_MAX_REPS], p999[BENCH_MAX_REPS];
  double ops[BENCH_MAX_REPS]; /* operations (calls) per second */
  int has_lat;
  int has_mb;
} bench_meas;

/* Latency samples in microseconds (growable). */
typedef struct bench_lat {
  double *v;
  size_t n, cap;
} bench_lat;

void bench_lat_add(bench_lat *l, double us);
void bench_lat_merge(bench_lat *into, const bench_lat *from);
void bench_lat_clear(bench_lat *l);
void bench_lat_free(bench_lat *l);
/* Sorts the samples and returns the q-quantile (0..1); NAN when empty. */
double bench_lat_quantile(bench_lat *l, double q);

/*
 * Adds to l the differences to[i] - from[i] (nanosecond stamps, converted
 * to microseconds, signed) for every i < n where both stamps are set.
 */
void bench_lat_stamps(bench_lat *l, const uint64_t *to, const uint64_t *from,
                      size_t n);

/*
 * Adds one repetition: `events` events and `bytes` data bytes in `secs`
 * seconds over `ops` calls; latency samples from `lat` (may be NULL).
 */
void bench_meas_add(bench_meas *m, double events, double bytes, double ops,
                    double secs, bench_lat *lat);

/*
 * Records the figures of `m` (events/s, MB/s if has_mb, p50/p99/p999 if
 * has_lat) under `scenario`, each with its ratio to `ref` (may be NULL)
 * named `ref_name`.
 */
void bench_emit_meas(bench_ctx *c, const char *scenario, const bench_meas *m,
                     const char *ref_name, const bench_meas *ref,
                     const char *note);

/*
 * Records the latency percentiles of `m` as sub-lines of `scenario`:
 * metrics "<label> p50", "<label> p99", "<label> p999", in microseconds.
 */
void bench_emit_lat_sub(bench_ctx *c, const char *scenario, const char *label,
                        const bench_meas *m, const char *note);

/* Records one figure. ref_value NAN = no reference. */
void bench_emit(bench_ctx *c, const char *scenario, const char *metric,
                const char *unit, bench_stat st, const char *ref_name,
                double ref_value, const char *note);

/* Records a skip ("skipped: <reason>") for a scenario. */
void bench_skip(bench_ctx *c, const char *scenario, const char *reason);

/* Records a failure: printed, and makes the run exit non-zero. */
void bench_fail(bench_ctx *c, const char *scenario, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The recorded result, or NULL. `reference` NULL matches any. */
const bench_result *bench_find(const bench_ctx *c, const char *scenario,
                               const char *metric, const char *reference);

/* A point of a chart series. */
void bench_point_add(bench_ctx *c, const char *series, double x, double y);

/* ---- utilities (util.c) -------------------------------------------------- */

/* snprintf into an array, truncating silently (the text is informative). */
void bench_fmt(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define BENCH_FMT(buf, ...) bench_fmt((buf), sizeof(buf), __VA_ARGS__)

double bench_now(void); /* monotonic seconds */
uint64_t bench_now_ns(void);
/* Creates a fresh empty directory under the run's root; returns 0. */
int bench_mkdir(bench_ctx *c, const char *tag, char *out, size_t cap);
/* Removes a directory tree (unless --keep). */
void bench_rmtree(bench_ctx *c, const char *path);
uint64_t bench_file_size(const char *path); /* 0 if missing */
/* Bytes this process has passed to write system calls so far
 * (/proc/self/io wchar: what LMDB writes, pages and meta, before the
 * kernel's own block and journal overhead); 0 when unknown. The
 * write_bytes field is not used: it counts whole (large) folios. */
uint64_t bench_io_written(void);
uint64_t bench_dir_bytes(const char *path);          /* allocated bytes */
void bench_fmt_num(char *out, size_t cap, double v); /* 1,234,567 */
const char *bench_dur_name(evs_durability d);
/* Describes the machine (one line per field) into f, and as JSON. */
void bench_machine_text(bench_ctx *c, FILE *f);
/* Records the start time and load of the run (for the two above). */
void bench_machine_start(bench_ctx *c);
void bench_machine_json(bench_ctx *c, FILE *f);
void bench_json_str(FILE *f, const char *s);
void bench_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int bench_selected(const bench_ctx *c, const char *name);

/* ---- workload (workload.c) ------------------------------------------------
 */

#define BENCH_NSTREAMS 1000u
#define BENCH_TYPE "OrderPlaced"
#define BENCH_DATA_SIZE 200u

/* One event of a pre-generated workload. */
typedef struct bench_event {
  evs_uuid id;         /* client-supplied: UUIDv7 (default) or UUIDv4 */
  uint32_t stream;     /* stream number: index into the workload's names */
  int64_t version;     /* 0-based version this event gets */
  const uint8_t *data; /* into the workload's payload pool */
  uint32_t data_len;
  uint32_t kind; /* 0 = primary (order-*), 1 = secondary */
} bench_event;

typedef struct bench_wl_opts {
  size_t n;           /* events */
  size_t data_size;   /* bytes of JSON per event */
  unsigned nstreams;  /* primary streams, round-robin */
  unsigned run;       /* consecutive events per stream (1 = round-robin) */
  const char *prefix; /* primary stream prefix, e.g. "order" */
  const char *type;
  /* optional secondary category: every `every`-th event */
  unsigned every; /* 0 = none */
  unsigned nstreams2;
  const char *prefix2;
  const char *type2;
  uint64_t seed;
  unsigned pool; /* distinct payloads (0 = min(n, 8192)) */
  int ids_v4;    /* random UUIDv4 ids instead of time-ordered UUIDv7 */
} bench_wl_opts;

typedef struct bench_wl {
  bench_wl_opts o;
  bench_event *ev;
  size_t n;
  char (*names)[32]; /* stream names: primaries then secondaries */
  unsigned nnames;
  uint8_t *pool; /* payloads, data_size bytes each */
  unsigned npool;
  int64_t *last;       /* per stream: last version after all events */
  uint64_t data_bytes; /* sum of data_len */
} bench_wl;

int bench_wl_make(bench_wl *w, const bench_wl_opts *o);
void bench_wl_free(bench_wl *w);
/* Writes exactly `size` bytes of a JSON object (no NUL) from rng state. */
void bench_json_payload(uint8_t *out, size_t size, uint64_t *rng);
uint64_t bench_rng(uint64_t *s);
void bench_uuid4(evs_uuid *id, uint64_t *rng);
/* A UUIDv7 for the seq-th event of a workload: time-ordered (a fixed
 * millisecond base, 4,096 ids per millisecond), random tail. */
void bench_uuid7(evs_uuid *id, uint64_t seq, uint64_t *rng);
/* Default options: n events of the default workload. */
bench_wl_opts bench_wl_default(size_t n, size_t data_size);

/*
 * Appends events [from, to) of w to an open evstore in calls of up to
 * `batch` events (one per stream, evs_append_multi; evs_append for one
 * event or when the batch is one stream's run). Latency per call goes into
 * lat (may be NULL). Stops early when `deadline` (monotonic s, 0 = none)
 * passes. Returns the number of events appended, or a negative EVS code.
 */
long bench_evs_load(evs_store *s, const bench_wl *w, size_t from, size_t to,
                    size_t batch, double deadline, bench_lat *lat,
                    double *secs_in_calls);

/*
 * Bulk load: appends events [from, to) with evs_append_async(), up to
 * `inflight` requests of `per_req` events queued at a time, so that the
 * store's writer puts many requests in one transaction. *secs is the wall
 * time. Returns the number of events appended or a negative EVS code.
 */
long bench_evs_load_async(evs_store *s, const bench_wl *w, size_t from,
                          size_t to, size_t per_req, size_t inflight,
                          double *secs);

/* ---- raw LMDB references (raw_lmdb.c) ------------------------------------ */

typedef struct raw_store raw_store;

int raw_open(raw_store **out, const char *dir, evs_durability dur,
             int read_only);
/* full = 1: evstore's layout ("raw-lmdb-evstore-layout", appends only). */
int raw_open_layout(raw_store **out, const char *dir, evs_durability dur,
                    int read_only, int full);
void raw_close(raw_store *r);
/* Appends events [from, to) in write transactions of `batch` events. */
long raw_append(raw_store *r, const bench_wl *w, size_t from, size_t to,
                size_t batch, bench_lat *lat, double *secs);
/* 0 when an append with a stale expected version is rejected. */
int raw_check_stale(raw_store *r, const bench_wl *w);
/* Cursor over the log, decoding every record: events and data bytes. */
int raw_scan(raw_store *r, uint64_t *events, uint64_t *bytes);
/* Reads one stream through the (stream, version) index; from_version and
 * limit as in evs_read_options (limit 0 = all). */
int raw_read_stream(raw_store *r, const char *name, int64_t from_version,
                    uint64_t limit, uint64_t *events, uint64_t *bytes);
/* Cursor over an evstore's own `events` database, decoding and checking
 * every record as evstore does (evs__record_decode). The store must be
 * closed. */
int raw_scan_evstore(const char *dir, uint64_t *events, uint64_t *bytes);
/* Pages used per named database of an LMDB environment (closed store):
 * calls cb(name, pages, entries, payload) for each. */
int raw_db_pages(const char *dir,
                 void (*cb)(const char *name, uint64_t pages, uint64_t entries,
                            void *payload),
                 void *payload, unsigned *page_size);

/* ---- scenarios --------------------------------------------------------------
 */

typedef void (*bench_scenario_fn)(bench_ctx *c);

void sc_append(bench_ctx *c);       /* 1 */
void sc_group(bench_ctx *c);        /* 2 */
void sc_syncmodes(bench_ctx *c);    /* 3 */
void sc_read(bench_ctx *c);         /* 4 */
void sc_subscription(bench_ctx *c); /* 5 */
void sc_projection(bench_ctx *c);   /* 6 */
void sc_server(bench_ctx *c);       /* 7 */
void sc_storage(bench_ctx *c);      /* 8 */
void sc_growth(bench_ctx *c);       /* 9 */
void sc_peers(bench_ctx *c);        /* references: peer systems */

/* The shared read store (1M order events + 10% payment events); builds it
 * on first use. Returns 0 or a negative code. */
int bench_read_store(bench_ctx *c);

/* ---- peers (peers.c) --------------------------------------------------------
 */

/* Median events/s of a peer's RESULT lines ("sqlite", "b1/full"); NAN if
 * the peers were not run or the row is missing. */
double bench_peer_eps(const bench_ctx *c, const char *system, const char *mode);
/* The ratio to a peer normalized through a bridge measured in both runs
 * (see peers.c); NAN when there is none. `via` names the bridge. */
double bench_peer_normalized(const bench_ctx *c, const char *scenario,
                             double value, double peer_eps, char *via,
                             size_t cap);
/* Adds ratio rows against the peer baselines (after every scenario). */
void bench_peer_compare(bench_ctx *c);

/* ---- report (report.c) ------------------------------------------------------
 */

void bench_print_result(const bench_result *r);
void bench_print_table(bench_ctx *c, FILE *f);
void bench_print_targets(bench_ctx *c, FILE *f);
int bench_write_json(bench_ctx *c, const char *path);
void bench_write_charts(bench_ctx *c);

#endif /* EVS_BENCH_H */
