/*
 * evstore-cli append — append one event, or every line of a JSON lines file
 * as one atomic append.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"

enum {
  O_EXPECTED = 1,
  O_TYPE,
  O_DATA,
  O_METADATA,
  O_ID,
  O_JSONL
};

static const cli_opt opts[] = {
  { "expected-version", 1, O_EXPECTED },
  { "type", 1, O_TYPE },
  { "data", 1, O_DATA },
  { "metadata", 1, O_METADATA },
  { "id", 1, O_ID },
  { "jsonl", 1, O_JSONL },
  { NULL, 0, 0 },
};

/* Reads a whole file ("-" = stdin) into b. Returns 0 or an exit status. */
static int read_all_input(cli_ctx *ctx, const char *path, cli_buf *b) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (f == NULL)
    return cli_errorf(ctx, CLI_EXIT_USAGE, "cannot open '%s': %s", path,
                      strerror(errno));
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    cli_buf_put(b, chunk, n);
  int bad = ferror(f);
  int e = errno;
  if (f != stdin)
    fclose(f);
  if (bad)
    return cli_errorf(ctx, CLI_EXIT_ERROR, "reading '%s': %s", path,
                      strerror(e));
  return 0;
}

/* Validates a JSON argument and returns its compact text (malloc'd). */
static int json_arg(cli_ctx *ctx, const char *opt, const char *text, void **out,
                    size_t *out_len) {
  cli_json_info info;
  const char *err;
  size_t len = strlen(text);
  if (cli_json_check(&info, text, len, &err))
    return cli_usage(ctx,
                     "%s is not valid JSON: %s (at byte %zu); nothing was "
                     "written. Quote it for the shell, e.g. "
                     "--data '{\"qty\":2}'",
                     opt, err, info.error_offset + 1);
  char *copy = cli_xmalloc(len);
  *out_len = cli_json_compact(copy, text, len);
  *out = copy;
  return 0;
}

int cli_report_wrong_version(cli_ctx *ctx, const char *stream, int64_t expected,
                             int64_t actual) {
  char eb[32];
  fprintf(stderr,
          "%s %s: stream '%s': wrong expected version: expected %s, actual "
          "%lld%s\n",
          CLI_PROG, ctx->cmd, stream, cli_expected_str(eb, sizeof eb, expected),
          (long long)actual,
          actual < 0 ? " (the stream has no events or is deleted)" : "");
  if (actual >= 0)
    fprintf(stderr,
            "The stream changed since you read it: read it again and retry "
            "with --expected-version %lld, or use --expected-version any.\n",
            (long long)actual);
  else if (strcmp(ctx->cmd, "delete") == 0)
    fprintf(stderr, "Use --expected-version no-stream (or any) for a stream "
                    "without events.\n");
  else
    fprintf(stderr, "Use --expected-version no-stream (or any) to create "
                    "it.\n");
  return CLI_EXIT_VERSION;
}

static int run(cli_ctx *ctx, const cli_args *a) {
  if (a->npos != 1)
    return cli_usage(ctx, a->npos ? "too many arguments" : "missing STREAM");
  const char *stream = a->pos[0];
  int64_t expected = EVS_EXPECT_ANY;
  const char *type = NULL, *data = NULL, *md = NULL, *id = NULL, *jsonl = NULL;
  for (int i = 0; i < a->nopts; i++) {
    const cli_optval *o = &a->opts[i];
    switch (o->id) {
    case O_EXPECTED:
      if (cli_parse_expected(ctx, o->val, &expected))
        return CLI_EXIT_USAGE;
      break;
    case O_TYPE:
      type = o->val;
      break;
    case O_DATA:
      data = o->val;
      break;
    case O_METADATA:
      md = o->val;
      break;
    case O_ID:
      id = o->val;
      break;
    case O_JSONL:
      jsonl = o->val;
      break;
    }
  }
  if (cli_check_name(ctx, "stream", stream))
    return CLI_EXIT_USAGE;
  if (jsonl && (type || data || md || id))
    return cli_usage(ctx, "--jsonl cannot be combined with --type, --data, "
                          "--metadata or --id");
  if (!jsonl && !type && !data)
    return cli_usage(ctx, "give the event with --type TYPE --data JSON, or "
                          "a JSON lines file with --jsonl FILE");
  if (!jsonl && !type)
    return cli_usage(ctx, "--type is missing (the event type, e.g. "
                          "--type OrderPlaced)");
  if (!jsonl && !data)
    return cli_usage(ctx, "--data is missing (the event data as JSON)");

  int status = CLI_EXIT_OK;
  evs_event_data *events = NULL;
  cli_jevent *parsed = NULL;
  size_t count = 0;
  void *data_bytes = NULL, *md_bytes = NULL;
  cli_buf file = CLI_BUF_INIT;

  if (!jsonl) {
    events = cli_xmalloc(sizeof *events);
    memset(events, 0, sizeof *events);
    count = 1;
    if (cli_check_name(ctx, "event type", type) ||
        json_arg(ctx, "--data", data, &data_bytes, &events[0].data_len) ||
        (md &&
         json_arg(ctx, "--metadata", md, &md_bytes, &events[0].metadata_len))) {
      status = CLI_EXIT_USAGE;
      goto done;
    }
    if (md_bytes && events[0].metadata_len == 4 &&
        memcmp(md_bytes, "null", 4) == 0)
      events[0].metadata_len = 0; /* null metadata: none */
    events[0].type = type;
    events[0].data = data_bytes;
    events[0].metadata = events[0].metadata_len ? md_bytes : NULL;
    if (id) {
      if (evs_uuid_parse(&events[0].id, id, strlen(id))) {
        status = cli_usage(ctx,
                           "--id must be a UUID like "
                           "0192f4c4-7a1b-7c3d-8e9f-0123456789ab, not "
                           "'%s'",
                           id);
        goto done;
      }
      if (evs_uuid_is_nil(&events[0].id)) {
        status = cli_usage(ctx, "--id must not be the nil UUID (leave --id "
                                "out to have one generated)");
        goto done;
      }
    }
  } else {
    if ((status = read_all_input(ctx, jsonl, &file)))
      goto done;
    size_t cap = 0;
    size_t lineno = 0;
    const char *name = strcmp(jsonl, "-") == 0 ? "<stdin>" : jsonl;
    for (size_t off = 0; off < file.len;) {
      const char *line = file.data + off;
      const char *nl = memchr(line, '\n', file.len - off);
      size_t len = nl ? (size_t)(nl - line) : file.len - off;
      off += len + (nl ? 1 : 0);
      lineno++;
      size_t t = len;
      while (t &&
             (line[t - 1] == '\r' || line[t - 1] == ' ' || line[t - 1] == '\t'))
        t--;
      size_t s = 0;
      while (s < t && (line[s] == ' ' || line[s] == '\t'))
        s++;
      if (s == t)
        continue; /* blank line */
      if (count == cap) {
        cap = cap ? cap * 2 : 64;
        cli_jevent *np = realloc(parsed, cap * sizeof *parsed);
        if (np == NULL) {
          status = cli_errorf(ctx, CLI_EXIT_ERROR, "out of memory");
          goto done;
        }
        parsed = np;
      }
      char err[256];
      if (cli_jevent_parse(&parsed[count], line + s, t - s, CLI_JSONL_APPEND,
                           err, sizeof err)) {
        status =
            cli_errorf(ctx, CLI_EXIT_USAGE, "%s:%zu: %s; nothing was written",
                       name, lineno, err);
        goto done;
      }
      if (cli_check_name(ctx, "event type", parsed[count].type)) {
        cli_jevent_clear(&parsed[count]);
        status = cli_errorf(ctx, CLI_EXIT_USAGE, "%s:%zu: bad \"type\"", name,
                            lineno);
        goto done;
      }
      count++;
    }
    if (count == 0) {
      status = cli_usage(ctx,
                         "%s has no events (one JSON object per line: "
                         "{\"type\":\"T\",\"data\":{...}})",
                         name);
      goto done;
    }
    if (count > EVS_MAX_EVENTS_PER_APPEND) {
      status = cli_usage(ctx,
                         "%s has %zu events; one append takes at most "
                         "%u",
                         name, count, EVS_MAX_EVENTS_PER_APPEND);
      goto done;
    }
    events = cli_xmalloc(count * sizeof *events);
    memset(events, 0, count * sizeof *events);
    for (size_t i = 0; i < count; i++) {
      events[i].type = parsed[i].type;
      events[i].data = parsed[i].data;
      events[i].data_len = parsed[i].data_len;
      events[i].metadata = parsed[i].metadata;
      events[i].metadata_len = parsed[i].metadata_len;
      if (parsed[i].has_id)
        events[i].id = parsed[i].id;
    }
  }

  /* An append that needs the stream to exist (--expected-version exists
   * or N) fails on a missing store as on a store without the stream, and
   * creates nothing. */
  if (expected != EVS_EXPECT_ANY && expected != EVS_EXPECT_NO_STREAM) {
    status = cli_open(ctx, CLI_OPEN_EXISTING, stream);
    if (status == CLI_NO_STORE) {
      status =
          cli_report_wrong_version(ctx, stream, expected, EVS_VERSION_NONE);
      goto done;
    }
  } else {
    status = cli_open(ctx, CLI_OPEN_WRITE, stream);
  }
  if (status)
    goto done;
  evs_append_result res;
  memset(&res, 0, sizeof res);
  int rc = ctx->be->ops->append(ctx->be, stream, expected, events, count, &res);
  if (rc == EVS_EWRONGVERSION) {
    status =
        cli_report_wrong_version(ctx, stream, expected, res.actual_version);
    goto done;
  }
  if (rc) {
    status = cli_fail(ctx, rc, "appending to stream '%s'", stream);
    goto done;
  }
  json_t *o = json_object();
  json_object_set_new(o, "stream", json_string(stream));
  json_object_set_new(o, "first_version", json_integer(res.first_version));
  json_object_set_new(o, "last_version", json_integer(res.last_version));
  json_object_set_new(o, "first_position", cli_json_u64(res.first_position));
  json_object_set_new(o, "last_position", cli_json_u64(res.last_position));
  if (!ctx->json && res.idempotent)
    json_object_set_new(o, "idempotent", json_true());
  cli_out_object(ctx, o);
  status = cli_finish_output(ctx);
done:
  for (size_t i = 0; parsed && i < count; i++)
    cli_jevent_clear(&parsed[i]);
  free(parsed);
  free(events);
  free(data_bytes);
  free(md_bytes);
  cli_buf_free(&file);
  return status;
}

const cli_command cli_cmd_append = {
  "append",
  run,
  opts,
  "append STREAM [--expected-version any|no-stream|exists|N]\n"
  "       (--type TYPE --data JSON [--metadata JSON] [--id UUID] | "
  "--jsonl FILE|-)",
  "append events to a stream",
  "Appends one event (--type and --data), or every line of a JSON lines\n"
  "file (--jsonl FILE, or - for stdin) as ONE atomic append: all events\n"
  "land with consecutive versions, or none does. Each line is\n"
  "  {\"type\":T,\"data\":<json>,\"metadata\":<json>,\"id\":\"<uuid>\"}\n"
  "(metadata and id optional; {\"$base64\":\"...\"} gives bytes that are "
  "not JSON).\n"
  "\n"
  "Options:\n"
  "  --expected-version V  any (default), no-stream, exists, or the\n"
  "                        version N of the stream's last event\n"
  "  --type TYPE           event type, 1..255 bytes of UTF-8\n"
  "  --data JSON           event data: any JSON value, stored compact\n"
  "  --metadata JSON       event metadata: any JSON value (null = none)\n"
  "  --id UUID             event id (default: a generated UUIDv7); an\n"
  "                        append whose ids are all stored already is an\n"
  "                        idempotent retry and writes nothing\n"
  "  --jsonl FILE|-        append every line of FILE atomically\n"
  "\n"
  "Prints {\"stream\":S,\"first_version\":A,\"last_version\":B,"
  "\"first_position\":P,\"last_position\":Q}.\n"
  "Exit status 3 when the expected version does not match (nothing is\n"
  "written), 2 for invalid input (nothing is written), 4 when the stream\n"
  "is tombstoned.\n",
};
