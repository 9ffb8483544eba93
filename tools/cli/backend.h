/*
 * evstore-cli — the store the commands talk to: a local directory (through
 * the embedded library, backend_local.c) or an evstored server (--connect,
 * through the client library, backend_remote.c).
 *
 * Every command goes through this table of operations and prints what it
 * gets back, so the output is the same whichever backend answers. The
 * operations mirror the public API (same types, same EVS_E* codes); the
 * remote backend gets them from the server, which runs the same library
 * calls on its store.
 *
 * Reads deliver events through a callback instead of an iterator so that a
 * remote backend can stream pages of events; an event (and every slice in
 * it) is valid only during the callback. Callbacks return 0 to go on, 1 to
 * stop early (the operation then returns 0), or a negative code to fail
 * with that code.
 */
#ifndef EVSTORE_CLI_BACKEND_H
#define EVSTORE_CLI_BACKEND_H

#include <evstore/evstore.h>
#include <signal.h>

typedef struct cli_backend cli_backend;

typedef int (*cli_event_fn)(const evs_event *ev, void *payload);
typedef int (*cli_batch_fn)(void *payload);
/* Progress of a long operation: `done` of `total` (0 = unknown). */
typedef void (*cli_progress_fn)(uint64_t done, uint64_t total, void *payload);
typedef int (*cli_stream_fn)(const char *name, size_t name_len,
                             const evs_stream_info *info, void *payload);

typedef struct cli_backend_ops {
  const char *name; /* "local", "remote" */

  int (*append)(cli_backend *b, const char *stream, int64_t expected,
                evs_event_data *events, size_t count, evs_append_result *out);
  /* Like append, committed with the given timestamp (evs_append_at):
   * EVS_EINVAL when it is older than the head of the log. */
  int (*append_at)(cli_backend *b, const char *stream, int64_t expected,
                   evs_event_data *events, size_t count, int64_t timestamp_ns,
                   evs_append_result *out);
  int (*read_stream)(cli_backend *b, const char *stream,
                     const evs_read_options *opts, cli_event_fn fn,
                     void *payload);
  /* *checkpoint (may be NULL) receives the iterator's checkpoint at the
   * end, see evs_iter_checkpoint(). */
  int (*read_all)(cli_backend *b, const evs_read_all_options *opts,
                  cli_event_fn fn, void *payload, uint64_t *checkpoint);
  /* Calls fn with the one event at `position` (visibility ignored). */
  int (*read_event)(cli_backend *b, uint64_t position, cli_event_fn fn,
                    void *payload);
  int (*find_event_id)(cli_backend *b, const evs_uuid *id,
                       uint64_t *position);
  /* Release *out with stream_info_clear. */
  int (*stream_info)(cli_backend *b, const char *stream, evs_stream_info *out);
  void (*stream_info_clear)(cli_backend *b, evs_stream_info *info);
  int (*streams)(cli_backend *b, const char *prefix, int include_deleted,
                 cli_stream_fn fn, void *payload);
  int (*set_metadata)(cli_backend *b, const char *stream,
                      const evs_stream_metadata *md);
  int (*delete_stream)(cli_backend *b, const char *stream, int64_t expected,
                       int hard);
  int (*head_position)(cli_backend *b, uint64_t *out);
  /* The head and the commit time of the event there (0, 0 when empty). */
  int (*head)(cli_backend *b, uint64_t *position, int64_t *timestamp_ns);
  /* `full` = 1 also totals the bytes (a scan of the log). */
  int (*stats)(cli_backend *b, evs_stats *out, int full);
  int (*verify)(cli_backend *b, evs_verify_report *out, evs_verify_cb cb,
                void *payload);
  /*
   * Follows the log as evs_sub_*() does: calls fn for each event and
   * batch_end (may be NULL) after each batch, until one of them returns
   * non-zero (1 stops with 0), *stop becomes non-zero (checked at least
   * every 100 ms), or an error (EVS_ESTREAMDELETED for a tombstoned
   * stream).
   */
  int (*subscribe)(cli_backend *b, const evs_sub_options *opts,
                   cli_event_fn fn, cli_batch_fn batch_end, void *payload,
                   volatile sig_atomic_t *stop);
  /* The "stream-state" fold of a stream (evs_state_fold): *out is
   * malloc'd compact JSON text to free(). EVS_EINVAL when the stream is
   * unfoldable (the detail names the event). */
  int (*state)(cli_backend *b, const char *stream, int64_t as_of_ns,
               char **out, int64_t *version);
  /* Rebuilds built-in projection `name` up to the head (EVS_ENOTFOUND for
   * an unknown name); `progress` (may be NULL) is called from another
   * thread about ten times a second. */
  int (*replay)(cli_backend *b, const char *name, cli_progress_fn progress,
                void *payload, evs_proj_status *out);
  /* Detail text of the last failed operation ("" if none). */
  const char *(*last_error)(cli_backend *b);
  /* failed: the command failed. A local store that this command created
   * and left without events or streams is then removed again. */
  void (*close)(cli_backend *b, int failed);
} cli_backend_ops;

struct cli_backend {
  const cli_backend_ops *ops;
  /* Bounds of one append: events, and bytes of data, metadata and types
   * (with some overhead per event); 0 = the library's. A server's frame
   * limit is below the library's 64 MiB per append. */
  uint32_t max_append_events;
  uint64_t max_append_bytes;
};

/* The bytes an event takes in an append, for max_append_bytes. */
#define CLI_APPEND_EVENT_OVERHEAD 96u

/* How to open a local store. */
typedef struct cli_local_config {
  const char *path;
  evs_durability durability;
  int create; /* 1: create the directory (and parents) and the store */
} cli_local_config;

/*
 * Opens a local store. Returns 0 and *out, or a negative code; *detail then
 * points to a static or thread-local message (may be "").
 */
int cli_backend_local_open(cli_backend **out, const cli_local_config *cfg,
                           const char **detail);

/*
 * Connects to the evstored server at `host_port` and says hello with
 * `token` (may be NULL). Returns 0 and *out, or a negative code (EVS_ECONN,
 * EVS_ETIMEDOUT, EVS_EAUTH, EVS_EPROTO, EVS_EBUSY...); *detail then points
 * to a thread-local message.
 */
int cli_backend_remote_open(cli_backend **out, const char *host_port,
                            const char *token, const char **detail);

#endif /* EVSTORE_CLI_BACKEND_H */
