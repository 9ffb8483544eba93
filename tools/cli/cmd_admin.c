/*
 * evstore-cli verify, stats and replay.
 */
#include <string.h>

#include "cli.h"
#include "progress.h"

/* ---- verify -------------------------------------------------------------- */

typedef struct verifier {
  cli_ctx *ctx;
  cli_progress progress;
  uint64_t problems; /* printed */
} verifier;

static int on_verify(const char *problem, uint64_t done, uint64_t total,
                     void *payload) {
  verifier *v = payload;
  if (problem == NULL) {
    v->progress.total = total;
    cli_progress_update(&v->progress, done);
    return 0;
  }
  cli_progress_finish(&v->progress);
  v->problems++;
  if (v->ctx->json) {
    json_t *o = json_object();
    json_object_set_new(o, "problem", json_string(problem));
    cli_out_object(v->ctx, o);
  } else {
    printf("problem: %s\n", problem);
  }
  return 0;
}

static int run_verify(cli_ctx *ctx, const cli_args *a) {
  if (a->npos)
    return cli_usage(ctx, "unexpected argument '%s'", a->pos[0]);
  int status = cli_open(ctx, CLI_OPEN_READ, NULL);
  if (status)
    return status;
  verifier v;
  v.ctx = ctx;
  v.problems = 0;
  cli_progress_start(&v.progress, "verify", 0, 0, ctx->stderr_tty);
  evs_verify_report rep;
  memset(&rep, 0, sizeof rep);
  int rc = ctx->be->ops->verify(ctx->be, &rep, on_verify, &v);
  cli_progress_finish(&v.progress);
  if (rc)
    return cli_fail(ctx, rc, "verifying the store");
  json_t *o = json_object();
  json_object_set_new(o, "events_checked", cli_json_u64(rep.events_checked));
  json_object_set_new(o, "streams_checked",
                      cli_json_u64(rep.streams_checked));
  json_object_set_new(o, "errors", cli_json_u64(rep.errors));
  json_object_set_new(o, "ok", json_boolean(rep.errors == 0));
  cli_out_object(ctx, o);
  status = cli_finish_output(ctx);
  if (rep.errors > v.problems)
    fprintf(stderr,
            "%s verify: %llu of the problems are not listed: the server "
            "sends the first %llu\n",
            CLI_PROG, (unsigned long long)(rep.errors - v.problems),
            (unsigned long long)v.problems);
  if (rep.errors) {
    fprintf(stderr,
            "%s verify: %llu problem%s found. Restore the store from a "
            "backup, or export what is readable and import it into a new "
            "store.\n",
            CLI_PROG, (unsigned long long)rep.errors,
            rep.errors == 1 ? "" : "s");
    return CLI_EXIT_ERROR;
  }
  return status;
}

const cli_command cli_cmd_verify = {
    "verify",
    run_verify,
    NULL,
    "verify",
    "check the consistency of the log and every index",
    "Checks every record (decoding and checksum), that positions increase\n"
    "and timestamps never decrease, and that every index (streams, ids,\n"
    "categories, types) agrees with the log. Prints each problem as\n"
    "{\"problem\":\"...\"}, then a summary\n"
    "  {\"events_checked\":N,\"streams_checked\":M,\"errors\":E,\"ok\":BOOL}\n"
    "Exit status 1 when problems were found. Shows a progress bar on stderr\n"
    "when it is a terminal.\n",
};

/* ---- stats --------------------------------------------------------------- */

static int run_stats(cli_ctx *ctx, const cli_args *a) {
  if (a->npos)
    return cli_usage(ctx, "unexpected argument '%s'", a->pos[0]);
  int status = cli_open(ctx, CLI_OPEN_READ, NULL);
  if (status)
    return status;
  evs_stats s;
  memset(&s, 0, sizeof s);
  int rc = ctx->be->ops->stats(ctx->be, &s, 1);
  if (rc)
    return cli_fail(ctx, rc, "reading the statistics");
  json_t *o = json_object();
  json_object_set_new(o, "events", cli_json_u64(s.events));
  json_object_set_new(o, "streams", cli_json_u64(s.streams));
  json_object_set_new(o, "event_types", cli_json_u64(s.event_types));
  json_object_set_new(o, "categories", cli_json_u64(s.categories));
  json_object_set_new(o, "last_position", cli_json_u64(s.last_position));
  json_object_set_new(o, "last_timestamp",
                      s.last_timestamp_ns ? cli_json_time(s.last_timestamp_ns)
                                          : json_null());
  json_object_set_new(o, "file_size", cli_json_u64(s.file_size));
  json_object_set_new(o, "map_size", cli_json_u64(s.map_size));
  json_object_set_new(o, "map_used", cli_json_u64(s.map_used));
  json_object_set_new(o, "map_use",
                      json_real(s.map_size ? (double)s.map_used /
                                                 (double)s.map_size
                                           : 0.0));
  json_object_set_new(o, "page_size", cli_json_u64(s.page_size));
  json_object_set_new(o, "data_bytes_raw", cli_json_u64(s.data_bytes_raw));
  json_object_set_new(o, "data_bytes_stored",
                      cli_json_u64(s.data_bytes_stored));
  json_object_set_new(o, "compressed_events",
                      cli_json_u64(s.compressed_events));
  json_object_set_new(o, "compression_ratio",
                      json_real(s.data_bytes_stored
                                    ? (double)s.data_bytes_raw /
                                          (double)s.data_bytes_stored
                                    : 1.0));
  cli_out_object(ctx, o);
  return cli_finish_output(ctx);
}

const cli_command cli_cmd_stats = {
    "stats",
    run_stats,
    NULL,
    "stats",
    "counts, sizes, compression ratio and map use",
    "Prints one object:\n"
    "  events, streams (including deleted ones), event_types, categories,\n"
    "  last_position, last_timestamp, file_size (data.mdb on disk),\n"
    "  map_size, map_used (bytes of the map in use), map_use (their ratio),\n"
    "  page_size, data_bytes_raw (event data before compression),\n"
    "  data_bytes_stored (after), compressed_events, compression_ratio\n"
    "  (raw / stored; 1.0 for an empty store).\n"
    "Scans the whole log for the byte totals.\n",
};

/* ---- replay -------------------------------------------------------------- */

static void replay_progress(uint64_t done, uint64_t total, void *payload) {
  cli_progress *p = payload;
  p->total = total;
  cli_progress_update(p, done);
}

static int run_replay(cli_ctx *ctx, const cli_args *a) {
  if (a->npos != 1)
    return cli_usage(ctx, a->npos ? "too many arguments"
                                  : "missing PROJECTION (stream-state or "
                                    "counts)");
  const char *name = a->pos[0];
  int status = cli_open(ctx, CLI_OPEN_READ, NULL);
  if (status)
    return status;
  cli_progress progress;
  cli_progress_start(&progress, name, 0, 0, ctx->stderr_tty);
  evs_proj_status st;
  int rc = ctx->be->ops->replay(ctx->be, name,
                                ctx->stderr_tty ? replay_progress : NULL,
                                &progress, &st);
  cli_progress_finish(&progress);
  if (rc == EVS_ENOTFOUND)
    return cli_usage(ctx, "unknown projection '%s': the built-in projections "
                          "are stream-state and counts",
                     name);
  if (rc == EVS_EHANDLER)
    return cli_errorf(ctx, CLI_EXIT_ERROR,
                      "projection '%s' failed at position %llu: %s", name,
                      (unsigned long long)st.error_position, st.error);
  if (rc)
    return cli_fail(ctx, rc, "rebuilding projection '%s'", name);
  json_t *o = json_object();
  json_object_set_new(o, "projection", json_string(name));
  json_object_set_new(o, "generation", json_integer(st.generation));
  json_object_set_new(o, "checkpoint", cli_json_u64(st.checkpoint));
  json_object_set_new(o, "head", cli_json_u64(st.head));
  json_object_set_new(o, "events_applied", cli_json_u64(st.events_applied));
  cli_out_object(ctx, o);
  return cli_finish_output(ctx);
}

const cli_command cli_cmd_replay = {
    "replay",
    run_replay,
    NULL,
    "replay PROJECTION",
    "rebuild a built-in projection from the log",
    "Rebuilds the built-in projection PROJECTION from position 0 up to the\n"
    "head of the log, in the views environment of the store (the views/\n"
    "directory inside it; with --connect, the server's):\n"
    "  stream-state  the JSON merge-patch state of every stream (as 'state')\n"
    "  counts        events per category and per event type\n"
    "A projection built before is rebuilt blue/green: the old view keeps\n"
    "serving until the new one replaces it. Shows a progress bar on stderr\n"
    "when it is a terminal. Prints\n"
    "  {\"projection\":P,\"generation\":G,\"checkpoint\":C,\"head\":H,"
    "\"events_applied\":N}\n"
    "Exit status 2 for an unknown projection.\n",
};
