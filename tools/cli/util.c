/*
 * evstore-cli — arguments, errors, opening the store and output (see
 * cli.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"
#include "timeparse.h"

volatile sig_atomic_t cli_interrupted;

/* ---- arguments ---------------------------------------------------------- */

enum {
  G_DB = -100,
  G_CONNECT,
  G_TOKEN,
  G_JSON,
  G_TABLE,
  G_DURABILITY,
  G_HELP,
  G_VERSION
};

static const cli_opt global_opts[] = {
  { "db", 1, G_DB },       { "connect", 1, G_CONNECT },
  { "token", 1, G_TOKEN }, { "json", 0, G_JSON },
  { "table", 0, G_TABLE }, { "durability", 1, G_DURABILITY },
  { "help", 0, G_HELP },   { "version", 0, G_VERSION },
  { NULL, 0, 0 },
};

static const cli_opt *find_opt(const cli_opt *opts, const char *name,
                               size_t len) {
  for (; opts && opts->name; opts++)
    if (strlen(opts->name) == len && memcmp(opts->name, name, len) == 0)
      return opts;
  return NULL;
}

static int apply_global(cli_ctx *ctx, int id, const char *val) {
  switch (id) {
  case G_DB:
    ctx->db = val;
    ctx->db_flag = 1;
    break;
  case G_CONNECT:
    ctx->connect = val;
    ctx->connect_flag = 1;
    break;
  case G_TOKEN:
    ctx->token = val;
    ctx->token_flag = 1;
    break;
  case G_JSON:
    ctx->opt_json = 1;
    break;
  case G_TABLE:
    ctx->opt_table = 1;
    break;
  case G_DURABILITY:
    if (strcmp(val, "sync") == 0)
      ctx->durability = EVS_SYNC;
    else if (strcmp(val, "nometasync") == 0)
      ctx->durability = EVS_NOMETASYNC;
    else if (strcmp(val, "nosync") == 0)
      ctx->durability = EVS_NOSYNC;
    else
      return cli_usage(ctx,
                       "--durability must be sync, nometasync or nosync, "
                       "not '%s'",
                       val);
    break;
  case G_VERSION:
    ctx->want_version = 1;
    break;
  default:
    break;
  }
  return 0;
}

/*
 * Splits "--name[=value]"; looks the name up in `opts`, then the globals.
 * Returns the option or NULL (after a usage message).
 */
static const cli_opt *lookup(cli_ctx *ctx, const char *arg, const cli_opt *opts,
                             const char **inline_val) {
  const char *name = arg + 2;
  const char *eq = strchr(name, '=');
  size_t len = eq ? (size_t)(eq - name) : strlen(name);
  *inline_val = eq ? eq + 1 : NULL;
  const cli_opt *o = find_opt(opts, name, len);
  if (o == NULL)
    o = find_opt(global_opts, name, len);
  if (o == NULL) {
    cli_usage(ctx, "unknown option '--%.*s'", (int)len, name);
    return NULL;
  }
  if (!o->has_arg && eq) {
    cli_usage(ctx, "option '--%s' takes no value", o->name);
    return NULL;
  }
  return o;
}

int cli_parse_globals(cli_ctx *ctx, int argc, char **argv, int *help) {
  int i = 0;
  while (i < argc) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0) {
      *help = 1;
      i++;
      continue;
    }
    if (strncmp(a, "--", 2) != 0 || strcmp(a, "--") == 0)
      break;
    const char *val;
    const cli_opt *o = lookup(ctx, a, NULL, &val);
    if (o == NULL)
      return -1;
    i++;
    if (o->has_arg && val == NULL) {
      if (i >= argc) {
        cli_usage(ctx, "option '--%s' needs a value", o->name);
        return -1;
      }
      val = argv[i++];
    }
    if (o->id == G_HELP)
      *help = 1;
    else if (apply_global(ctx, o->id, val))
      return -1;
  }
  return i;
}

int cli_parse_args(cli_ctx *ctx, int argc, char **argv, const cli_opt *opts,
                   cli_args *out) {
  memset(out, 0, sizeof *out);
  out->pos = cli_xmalloc(sizeof *out->pos * (size_t)(argc + 1));
  out->opts = cli_xmalloc(sizeof *out->opts * (size_t)(argc + 1));
  int only_pos = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (only_pos || a[0] != '-' || strcmp(a, "-") == 0) {
      out->pos[out->npos++] = a;
      continue;
    }
    if (strcmp(a, "--") == 0) {
      only_pos = 1;
      continue;
    }
    if (strcmp(a, "-h") == 0) {
      out->help = 1;
      continue;
    }
    if (a[1] != '-') {
      cli_args_free(out);
      return cli_usage(ctx, "unknown option '%s'", a);
    }
    const char *val;
    const cli_opt *o = lookup(ctx, a, opts, &val);
    if (o == NULL) {
      cli_args_free(out);
      return CLI_EXIT_USAGE;
    }
    if (o->has_arg && val == NULL) {
      if (i + 1 >= argc) {
        cli_args_free(out);
        return cli_usage(ctx, "option '--%s' needs a value", o->name);
      }
      val = argv[++i];
    }
    if (o->id == G_HELP) {
      out->help = 1;
    } else if (o->id < 0) {
      if (apply_global(ctx, o->id, val)) {
        cli_args_free(out);
        return CLI_EXIT_USAGE;
      }
    } else {
      out->opts[out->nopts].id = o->id;
      out->opts[out->nopts].name = o->name;
      out->opts[out->nopts].val = val;
      out->nopts++;
    }
  }
  return 0;
}

void cli_args_free(cli_args *a) {
  free(a->pos);
  free(a->opts);
  a->pos = NULL;
  a->opts = NULL;
  a->npos = a->nopts = 0;
}

/* ---- value parsers ------------------------------------------------------- */

static int parse_u64(const char *s, uint64_t *out) {
  if (s == NULL || *s < '0' || *s > '9')
    return -1;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return -1;
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10)
      return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

int cli_parse_u64(cli_ctx *ctx, const char *opt, const char *s, uint64_t *out) {
  if (parse_u64(s, out))
    return cli_bad_value(ctx, opt, "a non-negative integer", s);
  return 0;
}

int cli_u64(const char *s, uint64_t *out) {
  return parse_u64(s, out);
}

int cli_bad_value(cli_ctx *ctx, const char *opt, const char *accepted,
                  const char *s) {
  return cli_usage(ctx, "%s must be %s, not '%s'", opt, accepted, s);
}

int cli_parse_version(cli_ctx *ctx, const char *opt, const char *s,
                      int64_t *out) {
  uint64_t v;
  if (parse_u64(s, &v) || v > (uint64_t)INT64_MAX - 1)
    return cli_usage(ctx, "%s must be a version (an integer >= 0), not '%s'",
                     opt, s);
  *out = (int64_t)v;
  return 0;
}

int cli_parse_expected(cli_ctx *ctx, const char *s, int64_t *out) {
  if (strcmp(s, "any") == 0)
    *out = EVS_EXPECT_ANY;
  else if (strcmp(s, "no-stream") == 0)
    *out = EVS_EXPECT_NO_STREAM;
  else if (strcmp(s, "exists") == 0)
    *out = EVS_EXPECT_EXISTS;
  else {
    uint64_t v;
    if (parse_u64(s, &v) || v > (uint64_t)INT64_MAX - 1)
      return cli_usage(ctx,
                       "--expected-version must be any, no-stream, exists or "
                       "a version number >= 0, not '%s'",
                       s);
    *out = (int64_t)v;
  }
  return 0;
}

const char *cli_expected_str(char *buf, size_t n, int64_t expected) {
  if (expected == EVS_EXPECT_ANY)
    return "any";
  if (expected == EVS_EXPECT_NO_STREAM)
    return "no-stream";
  if (expected == EVS_EXPECT_EXISTS)
    return "exists";
  snprintf(buf, n, "%lld", (long long)expected);
  return buf;
}

int cli_parse_time_arg(cli_ctx *ctx, const char *opt, const char *s,
                       int64_t *out) {
  const char *err;
  if (cli_time_parse(out, s, strlen(s), &err))
    return cli_usage(ctx,
                     "%s: invalid TIME '%s': %s (use RFC 3339 like "
                     "2026-11-27T10:00:00.5Z or 2026-11-27T12:00:00+02:00, "
                     "or @ and Unix seconds like @1764237600.5)",
                     opt, s, err);
  return 0;
}

int cli_name_problem(char *buf, size_t bufsz, const char *what, const char *s) {
  size_t n = strlen(s);
  if (n == 0) {
    snprintf(buf, bufsz, "the %s name is empty", what);
    return -1;
  }
  if (n > EVS_MAX_NAME_LEN) {
    snprintf(buf, bufsz, "the %s name is longer than %u bytes", what,
             EVS_MAX_NAME_LEN);
    return -1;
  }
  /* A JSON string of the name validates its UTF-8. */
  cli_buf b = CLI_BUF_INIT;
  cli_buf_putc(&b, '"');
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == '"' || c == '\\')
      cli_buf_putc(&b, 'x'); /* any ASCII stands in for what JSON escapes */
    else
      cli_buf_putc(&b, (char)c);
  }
  cli_buf_putc(&b, '"');
  int bad = cli_json_check(NULL, b.data, b.len, NULL);
  cli_buf_free(&b);
  if (bad) {
    snprintf(buf, bufsz, "the %s name is not valid UTF-8", what);
    return -1;
  }
  return 0;
}

int cli_check_name(cli_ctx *ctx, const char *what, const char *s) {
  char why[128];
  if (cli_name_problem(why, sizeof why, what, s))
    return cli_usage(ctx, "%s", why);
  return 0;
}

/* ---- errors -------------------------------------------------------------- */

static void vmsg(cli_ctx *ctx, const char *fmt, va_list ap) {
  fprintf(stderr, "%s%s%s: ", CLI_PROG, ctx->cmd ? " " : "",
          ctx->cmd ? ctx->cmd : "");
  vfprintf(stderr, fmt, ap);
}

int cli_usage(cli_ctx *ctx, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmsg(ctx, fmt, ap);
  va_end(ap);
  if (ctx->cmd)
    fprintf(stderr, "\nTry '%s %s --help'.\n", CLI_PROG, ctx->cmd);
  else
    fprintf(stderr, "\nTry '%s --help'.\n", CLI_PROG);
  return CLI_EXIT_USAGE;
}

int cli_errorf(cli_ctx *ctx, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmsg(ctx, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return status;
}

int cli_exit_for(int rc) {
  switch (rc) {
  case 0:
    return CLI_EXIT_OK;
  case EVS_EWRONGVERSION:
    return CLI_EXIT_VERSION;
  case EVS_ENOSTREAM:
  case EVS_ESTREAMDELETED:
    return CLI_EXIT_NOSTREAM;
  case EVS_EINVAL:
  case EVS_EBADNAME:
  case EVS_ETOOLARGE:
    return CLI_EXIT_USAGE;
  default:
    return CLI_EXIT_ERROR;
  }
}

static int cmd_is(const cli_ctx *ctx, const char *name) {
  return ctx->cmd && strcmp(ctx->cmd, name) == 0;
}

/*
 * What to do about error rc, fitted to the command that got it (import has
 * no --id, metadata's size limit is its own), or NULL. Limits are not
 * quoted here: the store's may be configured and a server has its own, so
 * the error's detail names the one that was hit.
 */
static const char *hint_for(const cli_ctx *ctx, int rc) {
  switch (rc) {
  case EVS_ENOSTREAM:
    return "Check the name with 'evstore-cli streams'.";
  case EVS_ESTREAMDELETED:
    return "The stream is tombstoned (hard-deleted) and can never be written "
           "or read again; use another stream name.";
  case EVS_EBADNAME:
    return "Stream and type names are 1..255 bytes of UTF-8; stream names "
           "may not start with '$'.";
  case EVS_ETOOLARGE:
    if (cmd_is(ctx, "metadata"))
      return "Custom stream metadata is limited to 64 KiB, and with "
             "--connect a request must also fit the server's --max-frame; "
             "keep large data in events instead.";
    if (cmd_is(ctx, "import"))
      return "An event of the input is over a limit of this store or, with "
             "--connect, of the server (the error names it; see \"Limits\" "
             "in docs/semantics.md and evstored's --max-event-size and "
             "--max-frame): import into a store or server that admits it.";
    if (cmd_is(ctx, "append"))
      return "The event or the append is over a limit of the store or, with "
             "--connect, of the server (the error names it; see \"Limits\" "
             "in docs/semantics.md and evstored's --max-event-size, "
             "--max-events and --max-frame): split the events into smaller "
             "appends, or store large payloads elsewhere.";
    return "A limit of the store or, with --connect, of the server was "
           "exceeded (the error names it; see \"Limits\" in "
           "docs/semantics.md and evstored --help).";
  case EVS_EIDCONFLICT:
    if (cmd_is(ctx, "import"))
      return "An event id of the input is already used by another event of "
             "this store; import into a store that does not hold those "
             "events.";
    return "An event id of this append is already used by another event; "
           "leave --id out to have one generated.";
  case EVS_EMAPFULL:
    return "The store reached its size limit; free disk space or run "
           "compaction.";
  case EVS_ECORRUPT:
    return "Run 'evstore-cli verify' and restore from a backup or an export.";
  case EVS_EFORMAT:
    return "The store was written by a newer evstore; upgrade evstore-cli.";
  case EVS_EBUSY:
    return "The store is in use in a way that blocks this; retry later.";
  case -EACCES:
  case -EPERM:
  case -EROFS:
    return "Check the permissions of the store directory.";
  case -ENOSPC:
    return "The disk is full; free some space and retry.";
  case EVS_EAUTH:
    return "The token (--token or $EVSTORE_TOKEN) does not grant this "
           "operation: see the server's tokens file (read:P, write:P, rw:P; "
           "stats and verify need read:*, replay rw:*).";
  case EVS_ECONN:
    if (cmd_is(ctx, "append"))
      return "The connection to the server failed: check that evstored is "
             "still running. A write may or may not have been applied; "
             "repeating it with the same --id is safe.";
    if (cmd_is(ctx, "import"))
      return "The connection to the server failed: check that evstored is "
             "still running. Events may or may not have been written; "
             "running the import again is safe (event ids make it "
             "idempotent).";
    if (cmd_is(ctx, "delete") || cmd_is(ctx, "metadata"))
      return "The connection to the server failed: check that evstored is "
             "still running. The change may or may not have been applied; "
             "'evstore-cli info STREAM' shows the stream as it is.";
    return "The connection to the server failed: check that evstored is "
           "still running, then retry.";
  case EVS_ETIMEDOUT:
    return "The server did not answer in time: check that evstored is "
           "running and not overloaded.";
  case EVS_EPROTO:
    return "The server did not understand the request: it may be an older "
           "evstored than this evstore-cli; upgrade it.";
  default:
    return NULL;
  }
}

int cli_fail(cli_ctx *ctx, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmsg(ctx, fmt, ap);
  va_end(ap);
  fprintf(stderr, ": %s", evs_strerror(rc));
  const char *detail = ctx->be ? ctx->be->ops->last_error(ctx->be) : "";
  if (detail && detail[0])
    fprintf(stderr, " (%s)", detail);
  fputc('\n', stderr);
  const char *hint = hint_for(ctx, rc);
  if (hint)
    fprintf(stderr, "%s\n", hint);
  return cli_exit_for(rc);
}

/* ---- the store ----------------------------------------------------------- */

/* Reports a failed connection to the server; returns CLI_EXIT_ERROR. */
static int connect_failed(cli_ctx *ctx, int rc, const char *detail) {
  const char *addr = ctx->connect;
  const char *from = ctx->connect_flag ? "--connect" : "$EVSTORE_CONNECT";
  switch (rc) {
  case EVS_EAUTH:
    return cli_errorf(
        ctx, CLI_EXIT_ERROR,
        "the evstored server at %s refused the connection: %s (%s).\n"
        "Give a token listed in the server's tokens file with --token TOKEN "
        "or $EVSTORE_TOKEN%s",
        addr, evs_strerror(rc), detail,
        ctx->token ? " (the one given is not known there)" : "");
  case EVS_ECONN:
  case EVS_ETIMEDOUT:
    return cli_errorf(ctx, CLI_EXIT_ERROR,
                      "cannot connect to an evstored server at %s (%s): "
                      "%s.\nCheck that evstored is running and listens on "
                      "that address (evstored --listen HOST:PORT; it logs "
                      "event=listening), and that a firewall lets the "
                      "connection through; or use a local store with --db "
                      "DIR",
                      addr, from, detail);
  case EVS_EPROTO:
    return cli_errorf(ctx, CLI_EXIT_ERROR,
                      "%s (%s) does not answer like an evstored server: %s.\n"
                      "Check the port: it is evstored's --listen address, "
                      "not its --http one",
                      addr, from, detail);
  case EVS_EBUSY:
    return cli_errorf(ctx, CLI_EXIT_ERROR,
                      "the evstored server at %s is at its connection limit "
                      "(%s); retry later",
                      addr, detail);
  default:
    return cli_errorf(ctx, CLI_EXIT_ERROR, "connecting to %s (%s): %s (%s)",
                      addr, from, evs_strerror(rc), detail);
  }
}

int cli_no_store(cli_ctx *ctx, const char *stream) {
  if (stream)
    return cli_errorf(ctx, CLI_EXIT_NOSTREAM,
                      "stream '%s' not found: there is no store at '%s' "
                      "(give --db DIR or set EVSTORE_DB)",
                      stream, ctx->db);
  return cli_errorf(ctx, CLI_EXIT_ERROR,
                    "there is no store at '%s': give --db DIR or set "
                    "EVSTORE_DB (a store is created by the first append or "
                    "import)",
                    ctx->db);
}

int cli_open(cli_ctx *ctx, int mode, const char *stream) {
  const char *detail;
  int rc;
  if (ctx->be)
    return 0;
  if (ctx->connect) {
    rc = cli_backend_remote_open(&ctx->be, ctx->connect, ctx->token, &detail);
    if (rc)
      return connect_failed(ctx, rc, detail);
    return 0;
  }
  cli_local_config cfg = { ctx->db, ctx->durability, mode == CLI_OPEN_WRITE };
  rc = cli_backend_local_open(&ctx->be, &cfg, &detail);
  if (rc == 0)
    return 0;
  if (rc == -ENOENT && mode == CLI_OPEN_EXISTING)
    return CLI_NO_STORE;
  if (rc == -ENOENT && mode == CLI_OPEN_READ)
    return cli_no_store(ctx, stream);
  fprintf(stderr, "%s %s: opening the store '%s': %s", CLI_PROG, ctx->cmd,
          ctx->db, evs_strerror(rc));
  if (detail && detail[0])
    fprintf(stderr, " (%s)", detail);
  fputc('\n', stderr);
  const char *hint = hint_for(ctx, rc);
  if (rc == EVS_EBUSY)
    hint = NULL;
  if (hint)
    fprintf(stderr, "%s\n", hint);
  return CLI_EXIT_ERROR;
}

/* ---- output -------------------------------------------------------------- */

void cli_emit(cli_ctx *ctx) {
  cli_buf_putc(&ctx->line, '\n');
  fwrite(ctx->line.data, 1, ctx->line.len, stdout);
  ctx->line.len = 0;
}

void cli_event_json(cli_buf *b, const evs_event *ev, int mode) {
  char id[37], ts[CLI_TIME_BUFSZ];
  evs_uuid_format(id, &ev->id);
  cli_time_format(ts, ev->timestamp_ns);
  cli_buf_printf(
      b, "{\"position\":%llu,\"stream\":", (unsigned long long)ev->position);
  cli_buf_json_str(b, ev->stream.data, ev->stream.len);
  cli_buf_printf(b, ",\"version\":%lld,\"id\":\"%s\",\"type\":",
                 (long long)ev->version, id);
  cli_buf_json_str(b, ev->type.data, ev->type.len);
  cli_buf_printf(b, ",\"timestamp\":\"%s\",\"data\":", ts);
  cli_buf_json_bytes(b, ev->data.data, ev->data.len, mode, 0);
  cli_buf_puts(b, ",\"metadata\":");
  cli_buf_json_bytes(b, ev->metadata.data, ev->metadata.len, mode, 1);
  cli_buf_putc(b, '}');
}

/* Pads or cuts `s` to `width` display columns (UTF-8 aware, roughly). */
static void cell(cli_buf *b, const char *s, size_t n, size_t width, int last) {
  size_t cols = 0, i = 0;
  while (i < n && cols < width) {
    size_t k = 1;
    unsigned char c = (unsigned char)s[i];
    if (c >= 0xF0)
      k = 4;
    else if (c >= 0xE0)
      k = 3;
    else if (c >= 0xC0)
      k = 2;
    if (i + k > n)
      break;
    if (cols + 1 == width && i + k < n) {
      cli_buf_puts(b, "\xE2\x80\xA6"); /* … */
      cols++;
      i = n;
      break;
    }
    for (size_t j = 0; j < k; j++) {
      char ch = s[i + j];
      cli_buf_putc(b, (ch == '\n' || ch == '\r' || ch == '\t') ? ' ' : ch);
    }
    i += k;
    cols++;
  }
  if (!last)
    for (; cols < width + 2; cols++)
      cli_buf_putc(b, ' ');
}

void cli_out_event(cli_ctx *ctx, const evs_event *ev, int mode) {
  cli_buf *b = &ctx->line;
  if (ctx->json) {
    cli_event_json(b, ev, mode);
    cli_emit(ctx);
    ctx->rows++;
    return;
  }
  if (ctx->rows++ == 0) {
    cli_buf_printf(b, "%-9s %-24s %-8s %-24s %-30s  %s", "POSITION", "STREAM",
                   "VERSION", "TYPE", "TIMESTAMP", "DATA");
    cli_emit(ctx);
  }
  char num[32], ts[CLI_TIME_BUFSZ];
  snprintf(num, sizeof num, "%llu", (unsigned long long)ev->position);
  cell(b, num, strlen(num), 8, 0);
  cell(b, ev->stream.data, ev->stream.len, 23, 0);
  snprintf(num, sizeof num, "%lld", (long long)ev->version);
  cell(b, num, strlen(num), 7, 0);
  cell(b, ev->type.data, ev->type.len, 23, 0);
  cli_time_format(ts, ev->timestamp_ns);
  cell(b, ts, strlen(ts), 30, 0);
  cli_buf data = CLI_BUF_INIT;
  cli_buf_json_bytes(&data, ev->data.data, ev->data.len, CLI_BYTES_DISPLAY, 0);
  cell(b, data.data, data.len, 60, 1);
  cli_buf_free(&data);
  cli_emit(ctx);
}

json_t *cli_json_u64(uint64_t v) {
  return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

json_t *cli_json_time(int64_t ns) {
  char ts[CLI_TIME_BUFSZ];
  return json_string(cli_time_format(ts, ns));
}

json_t *cli_json_bytes(const void *p, size_t n, int empty_is_null) {
  cli_buf b = CLI_BUF_INIT;
  cli_buf_json_bytes(&b, p, n, CLI_BYTES_DISPLAY, empty_is_null);
  json_t *v = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
  if (v == NULL) { /* beyond jansson (huge numbers): keep it as bytes */
    b.len = 0;
    cli_buf_json_base64(&b, p, n);
    v = json_loadb(b.data, b.len, 0, NULL);
  }
  cli_buf_free(&b);
  return v ? v : json_null();
}

static void flatten(cli_buf *b, const char *prefix, json_t *obj) {
  const char *key;
  json_t *val;
  json_object_foreach(obj, key, val) {
    char name[256];
    snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "", key);
    if (json_is_object(val) && json_object_size(val)) {
      flatten(b, name, val);
      continue;
    }
    cli_buf_printf(b, "%-26s ", name);
    if (json_is_string(val))
      cli_buf_put(b, json_string_value(val), json_string_length(val));
    else
      cli_buf_json_value(b, val);
    cli_buf_putc(b, '\n');
  }
}

void cli_out_object(cli_ctx *ctx, json_t *obj) {
  if (obj == NULL) {
    fputs("evstore-cli: out of memory\n", stderr);
    exit(CLI_EXIT_ERROR);
  }
  if (ctx->json || !json_is_object(obj)) {
    cli_buf_json_value(&ctx->line, obj);
    cli_emit(ctx);
  } else {
    flatten(&ctx->line, "", obj);
    fwrite(ctx->line.data, 1, ctx->line.len, stdout);
    ctx->line.len = 0;
  }
  json_decref(obj);
}

void cli_out_row(cli_ctx *ctx, json_t *obj) {
  if (obj == NULL) {
    fputs("evstore-cli: out of memory\n", stderr);
    exit(CLI_EXIT_ERROR);
  }
  if (ctx->json) {
    cli_buf_json_value(&ctx->line, obj);
    cli_emit(ctx);
    json_decref(obj);
    return;
  }
  const char *key;
  json_t *val;
  size_t i = 0, n = json_object_size(obj);
  if (ctx->rows == 0) {
    json_object_foreach(obj, key, val) {
      char up[64];
      size_t k = 0;
      for (; key[k] && k < sizeof up - 1; k++)
        up[k] = (char)(key[k] >= 'a' && key[k] <= 'z' ? key[k] - 32 : key[k]);
      up[k] = '\0';
      size_t width = i == 0 ? 40 : 12;
      i++;
      cell(&ctx->line, up, k, width, i == n);
    }
    cli_emit(ctx);
  }
  i = 0;
  json_object_foreach(obj, key, val) {
    cli_buf v = CLI_BUF_INIT;
    if (json_is_string(val))
      cli_buf_put(&v, json_string_value(val), json_string_length(val));
    else
      cli_buf_json_value(&v, val);
    size_t width = i == 0 ? 40 : 12;
    i++;
    cell(&ctx->line, v.data ? v.data : "", v.len, width, i == n);
    cli_buf_free(&v);
  }
  cli_emit(ctx);
  ctx->rows++;
  json_decref(obj);
}

int cli_finish_output(cli_ctx *ctx) {
  if (fflush(stdout) != 0 || ferror(stdout)) {
    if (errno == EPIPE)
      return CLI_EXIT_OK;
    return cli_errorf(ctx, CLI_EXIT_ERROR, "writing the output: %s",
                      strerror(errno));
  }
  return CLI_EXIT_OK;
}
