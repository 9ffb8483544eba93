/*
 * evstore-cli read, read-all and state.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"

/* Prints events up to a limit. */
typedef struct printer {
  cli_ctx *ctx;
  int has_limit;
  uint64_t limit, count;
} printer;

static int print_event(const evs_event *ev, void *payload) {
  printer *p = payload;
  if (p->has_limit && p->count >= p->limit)
    return 1;
  cli_out_event(p->ctx, ev, CLI_BYTES_DISPLAY);
  p->count++;
  return p->has_limit && p->count >= p->limit ? 1 : 0;
}

/* A TIME bound for the store: 0 means "no bound" there, so times at or
 * before the epoch become 1 ns (nothing was committed then). */
static int64_t time_bound(int64_t ns) {
  return ns <= 0 ? 1 : ns;
}

/* ---- read ---------------------------------------------------------------- */

enum {
  R_FROM = 1,
  R_BACKWARD,
  R_LIMIT,
  R_AS_OF
};

static const cli_opt read_opts[] = {
  { "from", 1, R_FROM },   { "backward", 0, R_BACKWARD },
  { "limit", 1, R_LIMIT }, { "as-of", 1, R_AS_OF },
  { NULL, 0, 0 },
};

static int run_read(cli_ctx *ctx, const cli_args *a) {
  if (a->npos != 1)
    return cli_usage(ctx, a->npos ? "too many arguments" : "missing STREAM");
  const char *stream = a->pos[0];
  evs_read_options o = EVS_READ_OPTIONS_INIT;
  printer p = { ctx, 0, 0, 0 };
  int has_from = 0;
  for (int i = 0; i < a->nopts; i++) {
    const cli_optval *v = &a->opts[i];
    switch (v->id) {
    case R_FROM:
      if (cli_parse_version(ctx, "--from", v->val, &o.from_version))
        return CLI_EXIT_USAGE;
      has_from = 1;
      break;
    case R_BACKWARD:
      o.direction = EVS_BACKWARD;
      break;
    case R_LIMIT:
      if (cli_parse_u64(ctx, "--limit", v->val, &p.limit))
        return CLI_EXIT_USAGE;
      p.has_limit = 1;
      break;
    case R_AS_OF:
      if (cli_parse_time_arg(ctx, "--as-of", v->val, &o.as_of_ns))
        return CLI_EXIT_USAGE;
      o.as_of_ns = time_bound(o.as_of_ns);
      break;
    }
  }
  if (cli_check_name(ctx, "stream", stream))
    return CLI_EXIT_USAGE;
  if (o.direction == EVS_BACKWARD && !has_from)
    o.from_version = EVS_FROM_END;
  if (p.has_limit && p.limit)
    o.limit = p.limit;
  int status = cli_open(ctx, CLI_OPEN_READ, stream);
  if (status)
    return status;
  int rc = ctx->be->ops->read_stream(ctx->be, stream, &o, print_event, &p);
  if (rc)
    return cli_fail(ctx, rc, "reading stream '%s'", stream);
  return cli_finish_output(ctx);
}

const cli_command cli_cmd_read = {
  "read",
  run_read,
  read_opts,
  "read STREAM [--from VERSION] [--backward] [--limit N] [--as-of TIME]",
  "read the events of a stream",
  "Prints the events of STREAM in version order, one JSON object per line\n"
  "(or a table on a terminal):\n"
  "  {\"position\":P,\"stream\":S,\"version\":V,\"id\":\"<uuid>\","
  "\"type\":T,\n"
  "   \"timestamp\":\"<RFC 3339>\",\"data\":<json>,\"metadata\":<json or "
  "null>}\n"
  "Data that is not JSON is shown as {\"$base64\":\"...\"}.\n"
  "\n"
  "Options:\n"
  "  --from VERSION  first version to print (default: the first; with\n"
  "                  --backward, the last)\n"
  "  --backward      newest first\n"
  "  --limit N       print at most N events\n"
  "  --as-of TIME    the stream as it was at TIME: only events committed\n"
  "                  at or before it. TIME is RFC 3339\n"
  "                  (2026-11-27T10:00:00.5Z, offsets like +02:00) or\n"
  "                  @ and Unix seconds (@1764237600.5)\n"
  "\n"
  "Exit status 4 when the stream does not exist (or did not exist at\n"
  "TIME), is deleted or tombstoned.\n",
};

/* ---- read-all ------------------------------------------------------------ */

enum {
  A_FROM = 1,
  A_BACKWARD,
  A_LIMIT,
  A_PREFIX,
  A_CATEGORY,
  A_TYPE,
  A_SINCE,
  A_UNTIL
};

static const cli_opt read_all_opts[] = {
  { "from", 1, A_FROM },
  { "backward", 0, A_BACKWARD },
  { "limit", 1, A_LIMIT },
  { "prefix", 1, A_PREFIX },
  { "category", 1, A_CATEGORY },
  { "type", 1, A_TYPE },
  { "since", 1, A_SINCE },
  { "until", 1, A_UNTIL },
  { NULL, 0, 0 },
};

static int run_read_all(cli_ctx *ctx, const cli_args *a) {
  if (a->npos)
    return cli_usage(ctx, "unexpected argument '%s'", a->pos[0]);
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  printer p = { ctx, 0, 0, 0 };
  int has_from = 0;
  for (int i = 0; i < a->nopts; i++) {
    const cli_optval *v = &a->opts[i];
    switch (v->id) {
    case A_FROM:
      if (cli_parse_u64(ctx, "--from", v->val, &o.from_position))
        return CLI_EXIT_USAGE;
      has_from = 1;
      break;
    case A_BACKWARD:
      o.direction = EVS_BACKWARD;
      break;
    case A_LIMIT:
      if (cli_parse_u64(ctx, "--limit", v->val, &p.limit))
        return CLI_EXIT_USAGE;
      p.has_limit = 1;
      break;
    case A_PREFIX:
      if (strlen(v->val) > EVS_MAX_NAME_LEN)
        return cli_usage(ctx, "--prefix is longer than %u bytes",
                         EVS_MAX_NAME_LEN);
      o.stream_prefix = v->val;
      break;
    case A_CATEGORY:
      if (cli_check_name(ctx, "category", v->val))
        return CLI_EXIT_USAGE;
      o.category = v->val;
      break;
    case A_TYPE:
      if (cli_check_name(ctx, "event type", v->val))
        return CLI_EXIT_USAGE;
      o.event_type = v->val;
      break;
    case A_SINCE:
      if (cli_parse_time_arg(ctx, "--since", v->val, &o.since_ns))
        return CLI_EXIT_USAGE;
      if (o.since_ns <= 0)
        o.since_ns = 0; /* everything was committed after the epoch */
      break;
    case A_UNTIL:
      if (cli_parse_time_arg(ctx, "--until", v->val, &o.until_ns))
        return CLI_EXIT_USAGE;
      o.until_ns = time_bound(o.until_ns);
      break;
    }
  }
  if (o.direction == EVS_BACKWARD && !has_from)
    o.from_position = EVS_POSITION_END;
  if (p.has_limit && p.limit)
    o.limit = p.limit;
  int status = cli_open(ctx, CLI_OPEN_READ, NULL);
  if (status)
    return status;
  int rc = ctx->be->ops->read_all(ctx->be, &o, print_event, &p, NULL);
  if (rc)
    return cli_fail(ctx, rc, "reading $all");
  return cli_finish_output(ctx);
}

const cli_command cli_cmd_read_all = {
  "read-all",
  run_read_all,
  read_all_opts,
  "read-all [--from POSITION] [--backward] [--limit N] [--prefix P]\n"
  "         [--category C] [--type T] [--since TIME] [--until TIME]",
  "read the global log ($all), with filters",
  "Prints the events of every stream in the order they were committed\n"
  "(global positions, 1-based), in the same format as 'read'. Filters\n"
  "combine with AND.\n"
  "\n"
  "Options:\n"
  "  --from POSITION  first position to print (inclusive; default: the\n"
  "                   start, or the end with --backward)\n"
  "  --backward       newest first\n"
  "  --limit N        print at most N events\n"
  "  --prefix P       only streams whose name starts with P\n"
  "  --category C     only streams of category C (the part of the name\n"
  "                   before the first '-')\n"
  "  --type T         only events of type T\n"
  "  --since TIME     only events committed at or after TIME\n"
  "  --until TIME     only events committed at or before TIME\n",
};

/* ---- state --------------------------------------------------------------- */

enum {
  S_AS_OF = 1
};

/* Deeper than any state the library folds (event data nests at most 2048
 * levels): the check that the state is JSON before laying it out. */
#define CLI_STATE_MAX_DEPTH 4096

static const cli_opt state_opts[] = {
  { "as-of", 1, S_AS_OF },
  { NULL, 0, 0 },
};

static int run_state(cli_ctx *ctx, const cli_args *a) {
  if (a->npos != 1)
    return cli_usage(ctx, a->npos ? "too many arguments" : "missing STREAM");
  const char *stream = a->pos[0];
  int64_t as_of = 0;
  for (int i = 0; i < a->nopts; i++) {
    if (a->opts[i].id == S_AS_OF) {
      if (cli_parse_time_arg(ctx, "--as-of", a->opts[i].val, &as_of))
        return CLI_EXIT_USAGE;
      as_of = time_bound(as_of);
    }
  }
  if (cli_check_name(ctx, "stream", stream))
    return CLI_EXIT_USAGE;
  int status = cli_open(ctx, CLI_OPEN_READ, stream);
  if (status)
    return status;
  char *text = NULL;
  int64_t version;
  int rc = ctx->be->ops->state(ctx->be, stream, as_of, &text, &version);
  if (rc == EVS_EINVAL)
    return cli_errorf(ctx, CLI_EXIT_ERROR,
                      "cannot fold stream '%s': %s. 'state' merges event "
                      "data that is a JSON object (RFC 7386 merge patch); "
                      "read the stream with 'evstore-cli read' instead",
                      stream, ctx->be->ops->last_error(ctx->be));
  if (rc == EVS_ETOOLARGE) /* only from a server: a frame carries it */
    return cli_errorf(ctx, CLI_EXIT_ERROR,
                      "the state of stream '%s' is too large for the server "
                      "to send (%s); fold it where the store is, with "
                      "'evstore-cli --db DIR state'",
                      stream, ctx->be->ops->last_error(ctx->be));
  if (rc)
    return cli_fail(ctx, rc, "reading stream '%s'", stream);
  /* The fold's text laid out again, never parsed into numbers: each one
   * prints as its event wrote it. Text that is not JSON (which the library
   * never folds into) prints as it is. */
  size_t len = strlen(text);
  cli_json_info info;
  if (cli_json_check_depth(&info, text, len, CLI_STATE_MAX_DEPTH, NULL)) {
    fputs(text, stdout);
    fputc('\n', stdout);
  } else if (ctx->json) {
    cli_buf_json_text(&ctx->line, text + info.start, info.end - info.start, 0);
    cli_emit(ctx);
  } else {
    cli_buf out = CLI_BUF_INIT;
    cli_buf_json_text(&out, text + info.start, info.end - info.start, 2);
    cli_buf_putc(&out, '\n');
    fwrite(out.data, 1, out.len, stdout);
    cli_buf_free(&out);
  }
  free(text);
  return cli_finish_output(ctx);
}

const cli_command cli_cmd_state = {
  "state",
  run_state,
  state_opts,
  "state STREAM [--as-of TIME]",
  "the JSON merge-patch fold of a stream's event data",
  "Folds the data of every event of STREAM, in version order, with JSON\n"
  "Merge Patch (RFC 7386), as the built-in projection stream-state does:\n"
  "the state starts as {}, each event's data (a JSON object) is merged\n"
  "into it member by member (null removes a member, objects merge\n"
  "recursively); events with empty data change nothing. Prints the\n"
  "result, every number exactly as the events wrote it.\n"
  "\n"
  "Options:\n"
  "  --as-of TIME  the state as it was at TIME (RFC 3339 or @UNIXSECONDS)\n"
  "\n"
  "Exit status 1 when an event's data is not JSON or not a JSON object\n"
  "(the stream is unfoldable; the message names the event), 4 when the\n"
  "stream does not exist or is deleted.\n",
};
