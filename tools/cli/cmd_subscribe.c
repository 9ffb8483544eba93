/*
 * evstore-cli subscribe — follow $all, a stream or a category.
 *
 * Uses the store's subscriptions (include/evstore/subscription.h): catch-up
 * from the start position and live delivery are one mechanism, in log
 * order, without gaps or duplicates. The backend polls for a stop request
 * (SIGINT/SIGTERM) and for commits of other processes every 100 ms.
 */
#include <signal.h>
#include <string.h>

#include "cli.h"

enum {
  B_ALL = 1,
  B_STREAM,
  B_CATEGORY,
  B_FROM,
  B_TYPE,
  B_LIMIT
};

static const cli_opt opts[] = {
  { "all", 0, B_ALL },
  { "stream", 1, B_STREAM },
  { "category", 1, B_CATEGORY },
  { "from", 1, B_FROM },
  { "type", 1, B_TYPE },
  { "limit", 1, B_LIMIT },
  { NULL, 0, 0 },
};

typedef struct follower {
  cli_ctx *ctx;
  int has_limit;
  uint64_t limit, count;
} follower;

static int deliver(const evs_event *ev, void *payload) {
  follower *f = payload;
  if (f->has_limit && f->count >= f->limit)
    return 1;
  cli_out_event(f->ctx, ev, CLI_BYTES_DISPLAY);
  f->count++;
  if (f->has_limit && f->count >= f->limit)
    return 1;
  return 0;
}

/* Flushes each batch so that a reader of the pipe sees events at once. */
static int batch_end(void *payload) {
  (void)payload;
  return fflush(stdout) == 0 ? 0 : 1; /* cli_finish_output reports it */
}

static void on_signal(int sig) {
  (void)sig;
  cli_interrupted = 1;
}

static int run(cli_ctx *ctx, const cli_args *a) {
  if (a->npos)
    return cli_usage(ctx, "unexpected argument '%s'", a->pos[0]);
  int all = 0;
  const char *from = NULL;
  evs_sub_options o = EVS_SUB_OPTIONS_INIT;
  follower f;
  memset(&f, 0, sizeof f);
  f.ctx = ctx;
  for (int i = 0; i < a->nopts; i++) {
    const cli_optval *v = &a->opts[i];
    switch (v->id) {
    case B_ALL:
      all = 1;
      break;
    case B_STREAM:
      o.stream = v->val;
      break;
    case B_CATEGORY:
      o.category = v->val;
      break;
    case B_FROM:
      from = v->val;
      break;
    case B_TYPE:
      o.event_type = v->val;
      break;
    case B_LIMIT:
      if (cli_parse_u64(ctx, "--limit", v->val, &f.limit))
        return CLI_EXIT_USAGE;
      f.has_limit = 1;
      break;
    }
  }
  if (all + (o.stream != NULL) + (o.category != NULL) != 1)
    return cli_usage(ctx, "give exactly one of --all, --stream S or "
                          "--category C");
  if ((o.stream && cli_check_name(ctx, "stream", o.stream)) ||
      (o.category && cli_check_name(ctx, "category", o.category)) ||
      (o.event_type && cli_check_name(ctx, "event type", o.event_type)))
    return CLI_EXIT_USAGE;
  if (from && strcmp(from, "end") == 0) {
    o.start = EVS_SUB_FROM_END;
  } else if (from && strcmp(from, "start") != 0) {
    uint64_t p;
    if (cli_u64(from, &p))
      return cli_bad_value(ctx, "--from",
                           "start, end or a position (an integer >= 0)", from);
    /* --from is inclusive; a subscription resumes after its checkpoint. */
    o.checkpoint = p ? p - 1 : 0;
  }
  if (f.has_limit && f.limit == 0)
    return CLI_EXIT_OK;
  int status = cli_open(ctx, CLI_OPEN_READ, o.stream);
  if (status)
    return status;

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  int rc = ctx->be->ops->subscribe(ctx->be, &o, deliver, batch_end, &f,
                                   &cli_interrupted);
  if (rc == EVS_ESTREAMDELETED)
    return cli_errorf(ctx, CLI_EXIT_NOSTREAM,
                      "stream '%s' is tombstoned (hard-deleted): there is "
                      "nothing more to follow",
                      o.stream);
  if (rc)
    return cli_fail(ctx, rc, "following %s%s%s",
                    o.stream     ? "stream '"
                    : o.category ? "category '"
                                 : "$all",
                    o.stream     ? o.stream
                    : o.category ? o.category
                                 : "",
                    o.stream || o.category ? "'" : "");
  return cli_finish_output(ctx);
}

const cli_command cli_cmd_subscribe = {
  "subscribe",
  run,
  opts,
  "subscribe (--all | --stream S | --category C) [--from POSITION|start|end]\n"
  "          [--type T] [--limit N]",
  "follow new events as they are committed",
  "Prints the events already stored from the start position, then waits\n"
  "and prints new events as they are committed (same format as 'read'),\n"
  "until --limit events were printed or SIGINT/SIGTERM (exit status 0).\n"
  "\n"
  "Options:\n"
  "  --all            follow $all\n"
  "  --stream S       follow one stream (it may not exist yet)\n"
  "  --category C     follow the streams of category C\n"
  "  --from P         start at global position P (inclusive); 'start'\n"
  "                   (default) for everything, 'end' for only events\n"
  "                   committed after the subscription started\n"
  "  --type T         only events of type T\n"
  "  --limit N        stop after N events\n"
  "\n"
  "Commits of other processes are noticed within 100 ms. Exit status 4\n"
  "when the followed stream is (or becomes) tombstoned.\n",
};
