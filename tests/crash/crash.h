/*
 * evs_crash — the crash-consistency harness (see docs/reliability.md).
 *
 * A parent process starts a child that appends to a store from many threads
 * and records, in fsync'ed ledgers, what it is about to append (intents) and
 * what the store acknowledged (acks). The parent kill -9s the child at a
 * random moment, reopens the store and checks it against the ledgers.
 *
 * The pieces:
 *   harness.c   options, the kill loop, the summary (the parent)
 *   workload.c  the appending threads (the child) and their backends
 *   check.c     the checks run after each kill (the parent)
 *   ledger.c    the ledger record format and the deterministic payloads
 */
#ifndef EVS_CRASH_H
#define EVS_CRASH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "evstore/evstore.h"

/* ---- ledger records ------------------------------------------------------ */

#define CR_MAGIC 0x43535645u /* "EVSC" little-endian */

enum cr_kind {
  CR_INTENT = 1, /* about to be appended (written before the call) */
  CR_ACK = 2,    /* the store acknowledged it (written after success) */
  CR_NACK = 3    /* the store refused the append: it must never appear */
};

/*
 * One event of one append, fixed size. An append of n events writes n
 * intent records (one write, then fdatasync) before it is issued and n ack
 * (or nack) records after it returns. Each record carries a checksum, so a
 * record torn by the kill (only ever the last one of a file) is recognised
 * and ignored: the ledger may under-report, never over-report.
 */
typedef struct cr_rec {
  uint32_t magic;
  uint16_t kind;       /* enum cr_kind */
  uint16_t type_idx;   /* index into cr_types[] */
  uint64_t append_id;  /* unique per append in a store generation */
  uint32_t index;      /* this event's place in the append (all parts) */
  uint32_t count;      /* events in the append */
  uint32_t part;       /* part of a multi-stream append (0 otherwise) */
  uint32_t nparts;     /* parts in the append (1 for a plain append) */
  uint32_t part_index; /* this event's place inside its part */
  uint32_t part_count; /* events in its part */
  uint32_t data_len;
  uint32_t meta_len;
  uint8_t id[16];
  int64_t expected;    /* the part's expected version */
  int64_t version;     /* ack: the event's version; otherwise -1 */
  uint64_t position;   /* ack: the event's position, 0 if not known */
  int64_t timestamp;   /* ack: the commit time */
  uint64_t data_hash;  /* FNV-1a of the data */
  int32_t rc;          /* nack: the error code */
  uint32_t reserved;
  char stream[64];     /* NUL-terminated */
  uint64_t check;      /* FNV-1a of every byte before it */
} cr_rec;

/* Seals `r` (sets magic and check). */
void cr_rec_seal(cr_rec *r);

/* 1 if `r` is a whole, undamaged record. */
int cr_rec_valid(const cr_rec *r);

/*
 * Appends `n` records to the open ledger `fd` (opened with O_APPEND) in one
 * write and, when `sync` is set, fdatasync()s it. Returns 0 or -errno.
 */
int cr_ledger_write(int fd, const cr_rec *recs, size_t n, int sync);

/*
 * Reads every valid record of the ledger file `path` into *out (malloc'd,
 * *n records). A damaged record is accepted only at the end of the file (a
 * write torn by the kill) and is skipped; *torn counts those. A missing
 * file reads as empty. Returns 0, or -1 with a message on stderr when a
 * damaged record sits in the middle.
 */
int cr_ledger_read(const char *path, cr_rec **out, size_t *n, size_t *torn);

/* Ledger file names: <dir>/<iteration>-<thread>.<intent|ack>. */
void cr_ledger_path(char *out, size_t cap, const char *dir, unsigned iteration,
                    unsigned thread, int intent);

/* ---- deterministic payloads ---------------------------------------------- */

/* Event types the workload uses (cr_rec.type_idx indexes this). */
extern const char *const cr_types[];
#define CR_NTYPES 6u

/* 64-bit FNV-1a. */
uint64_t cr_hash(const void *buf, size_t len);

/*
 * Fills `buf` with the data (which = 0) or the metadata (which = 1) of the
 * event whose id is `id`: the bytes are a function of the id and the
 * length only, so the checker regenerates and compares them byte for byte.
 * Data is compressible JSON-like text for three ids in four and random
 * bytes otherwise.
 */
void cr_fill_payload(void *buf, size_t len, const uint8_t id[16], int which);

/* xorshift64* */
uint64_t cr_rand(uint64_t *state);

/* ---- the child ----------------------------------------------------------- */

/* Test-only faults that break the contract on purpose, so that the harness
 * can show it detects the breakage (the negative controls). */
typedef enum cr_fault {
  CR_FAULT_NONE = 0,
  CR_FAULT_PHANTOM,   /* ack appends that are never sent */
  CR_FAULT_ACK_EARLY, /* write the ack before the append is committed */
  CR_FAULT_SPLIT      /* issue one intended append as two appends */
} cr_fault;

typedef struct cr_child_opts {
  const char *store_dir;
  const char *ledger_dir;
  unsigned iteration;
  unsigned threads;
  uint64_t seed;
  evs_durability durability;
  cr_fault fault;
  int ledger_sync; /* fdatasync each ledger write */
  int ready_fd;    /* one byte is written here once every thread has
                      completed an append; -1 for none */
} cr_child_opts;

/*
 * How the workload reaches a store. The library backend calls evs_* on a
 * store opened in the child; a server backend would send the same requests
 * to evstored through the client library (see docs/reliability.md).
 */
typedef struct cr_backend {
  void *ctx;
  int (*append)(void *ctx, const char *stream, int64_t expected,
                evs_event_data *events, size_t count, evs_append_result *out);
  int (*append_multi)(void *ctx, evs_append_part *parts, size_t nparts,
                      size_t *failed_part);
  /* The same, queued and completed from a store thread (evs_append_async
   * in the library; NULL to use append_multi). */
  int (*append_async)(void *ctx, evs_append_part *parts, size_t nparts,
                      size_t *failed_part);
  /* *version = the stream's last version, EVS_VERSION_NONE if none. */
  int (*stream_version)(void *ctx, const char *stream, int64_t *version);
} cr_backend;

/*
 * Runs the workload until the process is killed. Returns only on an
 * unexpected error (after printing it), with a non-zero exit code.
 */
int cr_child_run(const cr_child_opts *o, const cr_backend *b);

/* The library mode's child: opens the store and runs the workload. */
int cr_child_library(const cr_child_opts *o);

/* The server mode's child (server.c): the workload through the C client,
 * one connection per thread, to evstored at `addr`. A thread whose
 * connection fails waits to be killed; once all have, 'd' is written to
 * o->ready_fd. */
int cr_child_server(const cr_child_opts *o, const char *addr);

/* Options with which child and checker open the store. */
evs_store_options cr_store_options(evs_durability durability);

/* ---- the checker --------------------------------------------------------- */

typedef struct cr_model cr_model;

/* Totals over a run; a failed check increments one of the error counters. */
typedef struct cr_stats {
  uint64_t iterations;
  uint64_t kills_in_flight;     /* kills with at least one append in flight */
  uint64_t appends_acked;       /* acked appends found intact */
  uint64_t events_acked;        /* acked events found intact, counted at
                                   every check (each check re-verifies all
                                   earlier ones of the store) */
  uint64_t events_acked_new;    /* ... acked in the iteration just killed */
  uint64_t events_scanned;      /* events read from $all and compared */
  uint64_t in_flight;           /* appends in flight at a kill */
  uint64_t in_flight_committed; /* ... of which the store had committed */
  uint64_t nacked;              /* refused appends found absent */
  uint64_t torn_records;        /* ledger records torn by a kill */
  /* errors: all must stay 0 */
  uint64_t lost;                /* acked events missing */
  uint64_t mismatched;          /* events present with other contents */
  uint64_t partial;             /* appends partly visible */
  uint64_t misplaced;           /* gaps, versions or positions out of order */
  uint64_t unknown;             /* events nobody intended */
  uint64_t failed_visible;      /* refused appends that appeared */
  uint64_t verify_errors;       /* problems reported by evs_store_verify */
  uint64_t hung;                /* server mode: client requests that
                                   neither failed nor succeeded after
                                   evstored died */
  uint64_t other;               /* open, probe append, index lookups */
} cr_stats;

/* Sum of the error counters. */
uint64_t cr_stats_errors(const cr_stats *s);

cr_model *cr_model_new(void);
void cr_model_free(cr_model *m);

/*
 * Loads the ledgers of `iteration` (threads 0..threads-1) from `ledger_dir`
 * into the model. Returns 0 or -1 (a harness error, printed).
 */
int cr_model_load(cr_model *m, const char *ledger_dir, unsigned iteration,
                  unsigned threads, cr_stats *st);

/* Adds an append of one event, acknowledged at version/position, to the
 * model (the server mode's probe). Returns 0 or -1. */
int cr_model_add_acked(cr_model *m, const cr_rec *intent, int64_t version,
                       uint64_t position);

/* Number of appends of the last loaded iteration that had an intent but
 * no outcome (in flight when the child died). */
uint64_t cr_model_in_flight(const cr_model *m);

/*
 * Opens the store, checks it against the model (see docs/reliability.md
 * for the list), appends a probe event and closes it. Problems are
 * printed (at most `max_report` lines of each kind) and counted in *st.
 * Returns 0 when the check could run (look at the counters), -1 on a
 * harness error.
 */
int cr_check(cr_model *m, const char *store_dir, evs_durability durability,
             unsigned iteration, cr_stats *st, unsigned max_report);

/* ---- the server mode's parent side (server.c) ---------------------------- */

typedef struct cr_server {
  const char *bin;       /* the evstored binary */
  char data[4096];       /* the store directory */
  char port_file[4096];
  char log[4096];        /* evstored's stdout and stderr, appended */
  long log_off;          /* scanned for sanitizer reports up to here */
  evs_durability durability;
  pid_t pid;             /* 0 when not running */
  char addr[64];         /* 127.0.0.1:PORT once started */
} cr_server;

/* Starts evstored on s->data and waits until it listens. 0 or -1. */
int cr_server_start(cr_server *s);
/* SIGKILL and reap. */
void cr_server_kill9(cr_server *s);
/* SIGTERM and reap (30 s at most): the exit status, or -1/-2. */
int cr_server_stop(cr_server *s);
/*
 * After a kill: restarts evstored on the same directory, appends a probe
 * through the client (read back; added to the model), runs the client's
 * verify operation, stops it with SIGTERM (exit status 0 expected) and
 * checks its log for sanitizer reports. Problems are counted in *st.
 * Returns 0, or -1 on a harness error (the server would not start).
 */
int cr_server_after_kill(cr_server *s, cr_model *m, unsigned iteration,
                         cr_stats *st);

#endif /* EVS_CRASH_H */
