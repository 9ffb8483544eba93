/*
 * evstore-cli — what the command files share: the context of a run,
 * argument parsing, error reporting with exit statuses, and output.
 *
 * The CLI uses only the public evstore headers (like LMDB's mdb_stat) and
 * reaches the store only through the backend table in backend.h.
 */
#ifndef EVSTORE_CLI_CLI_H
#define EVSTORE_CLI_CLI_H

#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "backend.h"
#include "buf.h"

#define CLI_PROG "evstore-cli"

/* Exit statuses (documented in docs/cli.md and the man page). */
enum {
  CLI_EXIT_OK = 0,
  CLI_EXIT_ERROR = 1,   /* runtime error */
  CLI_EXIT_USAGE = 2,   /* usage error or invalid input */
  CLI_EXIT_VERSION = 3, /* wrong expected version */
  CLI_EXIT_NOSTREAM = 4 /* stream not found or deleted */
};

typedef struct cli_ctx {
  const char *cmd;     /* the command being run, for messages */
  const char *db;      /* --db or $EVSTORE_DB */
  const char *connect; /* --connect or $EVSTORE_CONNECT */
  const char *token;   /* --token or $EVSTORE_TOKEN */
  int db_flag, connect_flag, token_flag;
  int opt_json, opt_table;
  int json; /* output JSON lines (else a table) */
  int stdout_tty, stderr_tty;
  evs_durability durability;
  int want_version;
  cli_backend *be;
  cli_buf line;       /* one output line */
  unsigned long rows; /* rows printed (table header once) */
} cli_ctx;

/* Set by SIGINT/SIGTERM while a command waits (subscribe). */
extern volatile sig_atomic_t cli_interrupted;

/* ---- arguments ---------------------------------------------------------- */

typedef struct cli_opt {
  const char *name; /* without the leading "--" */
  int has_arg;
  int id; /* > 0 */
} cli_opt;

typedef struct cli_optval {
  int id;
  const char *name;
  const char *val; /* NULL for flags */
} cli_optval;

typedef struct cli_args {
  const char **pos;
  int npos;
  cli_optval *opts;
  int nopts;
  int help;
} cli_args;

/*
 * Parses argv[0..argc) (the words after the command name) against the
 * command's options `opts` (terminated by a zero entry) and the global
 * options, which are accepted anywhere and applied to ctx. "--name value"
 * and "--name=value" both work; "--" ends the options. Returns 0, or
 * CLI_EXIT_USAGE after printing a message. Free with cli_args_free().
 */
int cli_parse_args(cli_ctx *ctx, int argc, char **argv, const cli_opt *opts,
                   cli_args *out);
void cli_args_free(cli_args *a);

/* Parses the global options before the command word; returns how many
 * words were consumed, or -1 after a usage message. */
int cli_parse_globals(cli_ctx *ctx, int argc, char **argv, int *help);

/* ---- value parsers: 0 on success, else a usage message and
 * CLI_EXIT_USAGE ---------------------------------------------------------- */

int cli_parse_u64(cli_ctx *ctx, const char *opt, const char *s, uint64_t *out);
/* Reports that option `opt` got `s` where it takes `accepted` (every form
 * it accepts, e.g. "start, end or a position (an integer >= 0)"). */
int cli_bad_value(cli_ctx *ctx, const char *opt, const char *accepted,
                  const char *s);
/* Parses decimal digits into *out without a message: 0, or -1 when s is
 * not a number in the range of uint64_t. */
int cli_u64(const char *s, uint64_t *out);
int cli_parse_version(cli_ctx *ctx, const char *opt, const char *s,
                      int64_t *out);
int cli_parse_expected(cli_ctx *ctx, const char *s, int64_t *out);
int cli_parse_time_arg(cli_ctx *ctx, const char *opt, const char *s,
                       int64_t *out);
/* Checks an event type or stream name: 1..255 bytes of UTF-8. */
int cli_check_name(cli_ctx *ctx, const char *what, const char *s);
/* The same check without a message: 0, or -1 with "the WHAT name is ..."
 * in buf (for callers that say where the name comes from). */
int cli_name_problem(char *buf, size_t bufsz, const char *what, const char *s);
/* "any", "no-stream", "exists" or the number. */
const char *cli_expected_str(char *buf, size_t n, int64_t expected);

/* ---- errors -------------------------------------------------------------- */

/* Prints "evstore-cli CMD: <message>" and a pointer to --help; returns
 * CLI_EXIT_USAGE. */
int cli_usage(cli_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Prints "evstore-cli CMD: <message>: <what rc means> (<detail>)" and a hint
 * on what to do; returns the exit status for rc (see cli_exit_for()).
 */
int cli_fail(cli_ctx *ctx, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prints "evstore-cli CMD: <message>" and returns `status`. */
int cli_errorf(cli_ctx *ctx, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Reports EVS_EWRONGVERSION for `stream`, naming the expected and the
 * actual version and what to do; returns CLI_EXIT_VERSION.
 */
int cli_report_wrong_version(cli_ctx *ctx, const char *stream, int64_t expected,
                             int64_t actual);

/* Exit status for an EVS_E* or -errno code. */
int cli_exit_for(int rc);

/* ---- the store ----------------------------------------------------------- */

enum {
  /* Never creates a store; without one, fails (see cli_no_store()). A
   * local store is still opened for writing when it is writable. */
  CLI_OPEN_READ = 0,
  /* Creates the store (and the directories above it) when there is none:
   * for the commands whose success writes to the store. */
  CLI_OPEN_WRITE = 1,
  /* Like CLI_OPEN_READ, but returns CLI_NO_STORE without a message when
   * there is no store, for the caller to decide. */
  CLI_OPEN_EXISTING = 2
};

/* cli_open() with CLI_OPEN_EXISTING: there is no store at ctx->db. */
#define CLI_NO_STORE (-1)

/*
 * Opens ctx->be (local or remote) in `mode` (CLI_OPEN_*). `stream` (may be
 * NULL) names the stream the command is about: when there is no store at
 * all, CLI_OPEN_READ then fails with CLI_EXIT_NOSTREAM instead of
 * CLI_EXIT_ERROR. Returns 0, CLI_NO_STORE (see above) or an exit status
 * after printing the error. A server always has a store.
 */
int cli_open(cli_ctx *ctx, int mode, const char *stream);

/*
 * Reports that there is no store at ctx->db: "stream S not found" with
 * CLI_EXIT_NOSTREAM when `stream` is not NULL, else CLI_EXIT_ERROR.
 * Returns that status.
 */
int cli_no_store(cli_ctx *ctx, const char *stream);

/* ---- output -------------------------------------------------------------- */

/* Writes ctx->line plus a newline to stdout and empties it. */
void cli_emit(cli_ctx *ctx);

/*
 * Prints one event: a JSON line
 *   {"position":P,"stream":S,"version":V,"id":"..","type":T,
 *    "timestamp":"..","data":..,"metadata":..}
 * or a table row. `mode` is CLI_BYTES_DISPLAY or CLI_BYTES_EXACT.
 */
void cli_out_event(cli_ctx *ctx, const evs_event *ev, int mode);
/* The JSON of one event into b (no newline). */
void cli_event_json(cli_buf *b, const evs_event *ev, int mode);

/*
 * Prints an object: a JSON line, or "key  value" lines in table mode
 * (nested objects flattened as parent.key). Steals the reference.
 */
void cli_out_object(cli_ctx *ctx, json_t *obj);

/*
 * Prints one row of a listing: a JSON line, or a table row (a header from
 * the keys before the first row). Steals the reference.
 */
void cli_out_row(cli_ctx *ctx, json_t *obj);

/* Flushes stdout; returns 0 or, after a message, CLI_EXIT_ERROR. */
int cli_finish_output(cli_ctx *ctx);

/* json_integer for unsigned values (clamped to INT64_MAX). */
json_t *cli_json_u64(uint64_t v);
/* A JSON string with the RFC 3339 form of ns. */
json_t *cli_json_time(int64_t ns);
/* The JSON value of stored bytes (display rules of cli_buf_json_bytes). */
json_t *cli_json_bytes(const void *p, size_t n, int empty_is_null);

/* ---- commands ------------------------------------------------------------ */

typedef struct cli_command {
  const char *name;
  int (*run)(cli_ctx *ctx, const cli_args *args);
  const cli_opt *opts;
  const char *synopsis; /* "append STREAM [--expected-version V] ..." */
  const char *summary;  /* one line */
  const char *help;     /* description and options, for --help */
} cli_command;

extern const cli_command cli_cmd_append, cli_cmd_read, cli_cmd_read_all,
    cli_cmd_state, cli_cmd_streams, cli_cmd_info, cli_cmd_subscribe,
    cli_cmd_metadata, cli_cmd_delete, cli_cmd_replay, cli_cmd_export,
    cli_cmd_import, cli_cmd_verify, cli_cmd_stats;

/*
 * Parsing one line of JSON into an event to append (shared by append
 * --jsonl and import). Owned buffers are released by cli_jevent_clear().
 */
typedef struct cli_jevent {
  int is_state; /* a stream state line of `export` */
  char *stream; /* "stream" (NULL if absent) */
  int has_version;
  int64_t version;
  int has_timestamp;
  int64_t timestamp_ns;
  char *type;
  int has_id;
  evs_uuid id;
  void *data;
  size_t data_len;
  void *metadata; /* NULL when absent, null or empty */
  size_t metadata_len;
  /* state lines */
  char *state; /* "active", "deleted", "tombstoned" */
  int has_md;
  evs_stream_metadata md;
  void *custom;
} cli_jevent;

enum {
  CLI_JSONL_APPEND = 0,
  CLI_JSONL_IMPORT = 1
};

/*
 * Parses one line. In APPEND mode data and metadata JSON is stored compact;
 * in IMPORT mode exactly as written (byte-exact round trips), and state
 * lines are accepted. Returns 0, or -1 with a message in err[0..errn).
 */
int cli_jevent_parse(cli_jevent *ev, const char *line, size_t len, int mode,
                     char *err, size_t errn);
void cli_jevent_clear(cli_jevent *ev);

#endif /* EVSTORE_CLI_CLI_H */
