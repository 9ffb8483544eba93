/*
 * evstore-cli export and import — JSON lines that carry a store's streams
 * from one store to another (see docs/cli.md, "Export and import").
 *
 * export writes every visible event of $all in position order, byte-exact
 * (JSON data as written, other bytes as {"$base64":...}), with its original
 * commit time; then one state line per stream that is deleted, tombstoned
 * or has metadata:
 *   {"stream":S,"state":"active|deleted|tombstoned","version":V,
 *    "metadata":{"max_count":..,"max_age":..,"truncate_before":..,
 *                "custom":..}}
 *
 * import appends the events stream by stream with exact expected versions,
 * so versions match; consecutive events of one stream go in one append
 * (bounded). Ids are kept, so importing the same file again writes nothing.
 * Events are committed with their original time (evs_append_at), or, with
 * --timestamps metadata, now with the original time kept in the event
 * metadata (tsmeta.h); export takes it back out in both cases.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "progress.h"
#include "timeparse.h"
#include "tsmeta.h"

#define GROUP_MAX_EVENTS 10000
#define GROUP_MAX_BYTES (32u * 1024u * 1024u)
#define PLACEHOLDER_TYPE "$placeholder"
#define PLACEHOLDER_CHUNK 10000
/* "FILE:FIRST-LAST" of an input file name (up to PATH_MAX) */
#define WHERE_BUFSZ (4096 + 48)

/* ---- export -------------------------------------------------------------- */

enum {
  X_FROM = 1,
  X_UNTIL
};

static const cli_opt export_opts[] = {
  { "from", 1, X_FROM },
  { "until", 1, X_UNTIL },
  { NULL, 0, 0 },
};

typedef struct exporter {
  cli_ctx *ctx;
  cli_progress progress;
  uint64_t first;
  cli_buf scratch;
  uint64_t events, states;
} exporter;

static int export_event(const evs_event *ev, void *payload) {
  exporter *x = payload;
  evs_event copy = *ev;
  int64_t ts;
  const void *md;
  size_t md_len;
  if (cli_tsmeta_unwrap(&ts, &md, &md_len, &x->scratch, ev->metadata.data,
                        ev->metadata.len)) {
    copy.timestamp_ns = ts;
    copy.metadata.data = md;
    copy.metadata.len = md_len;
  }
  cli_event_json(&x->ctx->line, &copy, CLI_BYTES_EXACT);
  cli_emit(x->ctx);
  x->events++;
  cli_progress_update(&x->progress, ev->position - x->first + 1);
  return 0;
}

static int export_state(const char *name, size_t len,
                        const evs_stream_info *info, void *payload) {
  exporter *x = payload;
  int has_md = info->max_count || info->max_age_sec ||
               info->truncate_before >= 0 || info->custom_len;
  if (info->flags == 0 && !has_md)
    return 0;
  cli_buf *b = &x->ctx->line;
  cli_buf_puts(b, "{\"stream\":");
  cli_buf_json_str(b, name, len);
  cli_buf_printf(b, ",\"state\":\"%s\",\"version\":%lld,\"metadata\":{",
                 (info->flags & EVS_STREAM_TOMBSTONED) ? "tombstoned"
                 : (info->flags & EVS_STREAM_DELETED)  ? "deleted"
                                                       : "active",
                 (long long)info->version);
  if (info->max_count)
    cli_buf_printf(b, "\"max_count\":%llu,",
                   (unsigned long long)info->max_count);
  else
    cli_buf_puts(b, "\"max_count\":null,");
  if (info->max_age_sec)
    cli_buf_printf(b, "\"max_age\":%llu,",
                   (unsigned long long)info->max_age_sec);
  else
    cli_buf_puts(b, "\"max_age\":null,");
  if (info->truncate_before >= 0)
    cli_buf_printf(b, "\"truncate_before\":%lld,",
                   (long long)info->truncate_before);
  else
    cli_buf_puts(b, "\"truncate_before\":null,");
  cli_buf_puts(b, "\"custom\":");
  cli_buf_json_bytes(b, info->custom, info->custom_len, CLI_BYTES_EXACT, 1);
  cli_buf_puts(b, "}}");
  cli_emit(x->ctx);
  x->states++;
  return 0;
}

static int run_export(cli_ctx *ctx, const cli_args *a) {
  if (a->npos)
    return cli_usage(ctx,
                     "unexpected argument '%s' (export writes to "
                     "stdout: redirect it to a file)",
                     a->pos[0]);
  uint64_t from = 0, until = 0;
  for (int i = 0; i < a->nopts; i++) {
    if (a->opts[i].id == X_FROM &&
        cli_parse_u64(ctx, "--from", a->opts[i].val, &from))
      return CLI_EXIT_USAGE;
    if (a->opts[i].id == X_UNTIL &&
        cli_parse_u64(ctx, "--until", a->opts[i].val, &until))
      return CLI_EXIT_USAGE;
  }
  int status = cli_open(ctx, CLI_OPEN_READ, NULL);
  if (status)
    return status;
  const cli_backend_ops *ops = ctx->be->ops;
  uint64_t head;
  int rc = ops->head_position(ctx->be, &head);
  if (rc)
    return cli_fail(ctx, rc, "reading the head of $all");
  exporter x;
  memset(&x, 0, sizeof x);
  x.ctx = ctx;
  x.first = from ? from : 1;
  uint64_t last = until && until < head ? until : head;
  cli_progress_start(&x.progress, "export",
                     last >= x.first ? last - x.first + 1 : 0, 0,
                     ctx->stderr_tty && !ctx->stdout_tty);
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  o.from_position = from;
  o.until_position = until;
  if (until == 0 || from <= until)
    rc = ops->read_all(ctx->be, &o, export_event, &x, NULL);
  if (rc == 0)
    rc = ops->streams(ctx->be, NULL, 1, export_state, &x);
  cli_progress_finish(&x.progress);
  cli_buf_free(&x.scratch);
  if (rc)
    return cli_fail(ctx, rc, "exporting");
  return cli_finish_output(ctx);
}

const cli_command cli_cmd_export = {
  "export",
  run_export,
  export_opts,
  "export [--from POSITION] [--until POSITION]",
  "write the store as JSON lines to stdout",
  "Writes every visible event of $all in position order, one JSON object\n"
  "per line in the format of 'read' (always JSON, never a table), then one\n"
  "state line per stream that is deleted, tombstoned or has metadata:\n"
  "  {\"stream\":S,\"state\":\"active|deleted|tombstoned\",\"version\":V,\n"
  "   \"metadata\":{\"max_count\":..,\"max_age\":..,\"truncate_before\":..,"
  "\"custom\":..}}\n"
  "The output is byte-exact: JSON with line breaks or surrounding spaces\n"
  "and bytes that are not JSON are written as {\"$base64\":\"...\"}. The\n"
  "timestamp is the event's original commit time (for events brought in\n"
  "by 'import', the time they had in the exported store).\n"
  "\n"
  "Options:\n"
  "  --from POSITION   first position (inclusive)\n"
  "  --until POSITION  last position (inclusive)\n"
  "\n"
  "Shows a progress bar on stderr when stderr is a terminal and stdout is\n"
  "not.\n",
};

/* ---- import -------------------------------------------------------------- */

enum {
  TS_ORIGINAL = 0,
  TS_METADATA,
  TS_NOW
};

typedef struct importer {
  cli_ctx *ctx;
  const char *name; /* the input, for messages */
  size_t lineno;
  int ts_mode;      /* TS_* */
  int64_t floor_ts; /* the newest commit time in the store (0 = none):
                       no event can be committed before it */
  /* the group being built: consecutive events of one stream (and, with
   * TS_ORIGINAL, of one commit time) */
  char *stream;
  int64_t first_version;
  cli_jevent *evs;
  evs_event_data *data;
  size_t *lines; /* the input line of each event */
  size_t count, cap, bytes;
  int has_ts; /* the group is committed at ts (TS_ORIGINAL) */
  int64_t ts;
  /* where the import stopped: "FILE:LINE" or "FILE:FIRST-LAST", as the
   * error message named it */
  char where[WHERE_BUFSZ];
  /* totals */
  uint64_t events, written, skipped, states, placeholders;
} importer;

/* Names input line `line` for a message ("FILE:LINE") and remembers it as
 * the place the import stopped. */
static const char *at_line(importer *im, size_t line) {
  snprintf(im->where, sizeof im->where, "%s:%zu", im->name, line);
  return im->where;
}

/* Names the input lines of events i..j of the group (FILE:LINE for one,
 * FILE:FIRST-LAST for several), like at_line(). */
static const char *at_events(importer *im, size_t i, size_t j) {
  if (im->lines[i] == im->lines[j])
    return at_line(im, im->lines[i]);
  snprintf(im->where, sizeof im->where, "%s:%zu-%zu", im->name, im->lines[i],
           im->lines[j]);
  return im->where;
}

/*
 * Reports that the events of the file cannot keep their versions: `version`
 * is the version the file gives the event at `where`, the store's stream
 * is at `actual`. Returns CLI_EXIT_VERSION.
 */
static int wrong_version(importer *im, const char *where, const char *stream,
                         int64_t version, int64_t expected, int64_t actual) {
  char eb[32];
  fprintf(stderr,
          "%s %s: %s: stream '%s' version %lld: wrong expected version: "
          "expected %s, actual %lld\n",
          CLI_PROG, im->ctx->cmd, where, stream, (long long)version,
          cli_expected_str(eb, sizeof eb, expected), (long long)actual);
  if (actual >= version)
    fprintf(stderr,
            "This store already holds stream '%s' up to version %lld, so "
            "the file's events cannot land at their versions. Import into "
            "a store without this stream, or into one holding only the "
            "earlier part of the same export.\n",
            stream, (long long)actual);
  else
    fprintf(stderr,
            "Stream '%s' ends at version %lld in this store, so version "
            "%lld would leave a gap. Import the earlier part of the export "
            "first, or import into a store without this stream.\n",
            stream, (long long)actual, (long long)version);
  return CLI_EXIT_VERSION;
}

/* Events per append: the library's bound, or the server's when lower. */
static size_t max_group_events(const cli_ctx *ctx) {
  uint32_t m = ctx->be->max_append_events;
  return m && m < GROUP_MAX_EVENTS ? m : GROUP_MAX_EVENTS;
}

/* Bytes an event adds to a group: data and metadata, and, when the backend
 * bounds the encoded size of an append (a server's frame limit), its type
 * and encoding too. */
static size_t event_cost(const cli_ctx *ctx, const cli_jevent *ev) {
  size_t n = ev->data_len + ev->metadata_len;
  if (ctx->be->max_append_bytes)
    n += strlen(ev->type) + CLI_APPEND_EVENT_OVERHEAD;
  return n;
}

static uint64_t max_group_bytes(const cli_ctx *ctx) {
  uint64_t m = ctx->be->max_append_bytes;
  return m && m < GROUP_MAX_BYTES ? m : GROUP_MAX_BYTES;
}

static void group_reset(importer *im) {
  for (size_t i = 0; i < im->count; i++)
    cli_jevent_clear(&im->evs[i]);
  im->count = 0;
  im->bytes = 0;
  free(im->stream);
  im->stream = NULL;
}

/* Appends, committed at `ts` when has_ts (the original time), else now. */
static int write_events(importer *im, const char *stream, int64_t expected,
                        evs_event_data *events, size_t n, int has_ts,
                        int64_t ts, evs_append_result *res) {
  const cli_backend_ops *ops = im->ctx->be->ops;
  memset(res, 0, sizeof *res);
  int rc =
      has_ts ? ops->append_at(im->ctx->be, stream, expected, events, n, ts, res)
             : ops->append(im->ctx->be, stream, expected, events, n, res);
  if (rc == 0 && !res->idempotent && res->timestamp_ns > im->floor_ts)
    im->floor_ts = res->timestamp_ns;
  return rc;
}

/* Appends placeholders so that the stream's next version is `to`, starting
 * with expected version `expected` (NO_STREAM recreates a soft-deleted
 * stream at its next version), committed like the events they precede. */
static int add_placeholders(importer *im, size_t line, const char *stream,
                            int64_t expected, int64_t next, int64_t to,
                            int has_ts, int64_t ts) {
  cli_ctx *ctx = im->ctx;
  evs_event_data *ph = calloc(PLACEHOLDER_CHUNK, sizeof *ph);
  if (ph == NULL)
    return cli_errorf(ctx, CLI_EXIT_ERROR, "out of memory");
  int status = 0;
  while (next < to) {
    size_t chunk = max_group_events(ctx) < PLACEHOLDER_CHUNK
                       ? max_group_events(ctx)
                       : PLACEHOLDER_CHUNK;
    size_t n = (size_t)(to - next) < chunk ? (size_t)(to - next) : chunk;
    memset(ph, 0, n * sizeof *ph);
    for (size_t i = 0; i < n; i++)
      ph[i].type = PLACEHOLDER_TYPE;
    evs_append_result res;
    int rc = write_events(im, stream, expected, ph, n, has_ts, ts, &res);
    if (rc == EVS_EWRONGVERSION) {
      status = wrong_version(im, at_line(im, line), stream, next, expected,
                             res.actual_version);
      break;
    }
    if (rc) {
      status = cli_fail(ctx, rc,
                        "%s: stream '%s': writing placeholder events for "
                        "versions %lld to %lld",
                        at_line(im, line), stream, (long long)next,
                        (long long)to - 1);
      break;
    }
    im->placeholders += n;
    next = res.last_version + 1;
    expected = res.last_version;
  }
  free(ph);
  return status;
}

/* Placeholders up to version `to` - 1, then a soft delete: the stream's
 * next life starts at `to`, with the placeholders hidden. */
static int hide_prefix(importer *im, const char *stream, int64_t expected,
                       int64_t next, int64_t to) {
  int status = add_placeholders(im, im->lines[0], stream, expected, next, to,
                                im->has_ts, im->ts);
  if (status)
    return status;
  int rc = im->ctx->be->ops->delete_stream(im->ctx->be, stream, to - 1, 0);
  if (rc)
    return cli_fail(im->ctx, rc,
                    "%s: stream '%s': soft-deleting the placeholder events",
                    at_line(im, im->lines[0]), stream);
  return 0;
}

typedef struct located {
  const char *stream;
  int64_t version;
  int match;
  char where[300];
} located;

static int locate_event(const evs_event *ev, void *payload) {
  located *l = payload;
  l->match = ev->stream.len == strlen(l->stream) &&
             memcmp(ev->stream.data, l->stream, ev->stream.len) == 0 &&
             ev->version == l->version;
  snprintf(l->where, sizeof l->where, "stream '%.*s' version %lld",
           (int)ev->stream.len, (const char *)ev->stream.data,
           (long long)ev->version);
  return 0;
}

/* The stream's state in the target store. */
typedef struct target {
  int known; /* the store has seen the stream */
  unsigned flags;
  int64_t version; /* last version (also for soft-deleted streams) */
} target;

/* Reads the stream's state for the event or state line at input `line`. */
static int get_target(importer *im, size_t line, const char *stream,
                      target *t) {
  evs_stream_info info;
  int rc = im->ctx->be->ops->stream_info(im->ctx->be, stream, &info);
  memset(t, 0, sizeof *t);
  t->version = EVS_VERSION_NONE;
  if (rc == EVS_ENOSTREAM)
    return 0;
  if (rc)
    return cli_fail(im->ctx, rc, "%s: stream '%s'", at_line(im, line), stream);
  t->known = 1;
  t->flags = info.flags;
  t->version = info.version;
  im->ctx->be->ops->stream_info_clear(im->ctx->be, &info);
  return 0;
}

static int flush_group(importer *im) {
  if (im->count == 0)
    return 0;
  cli_ctx *ctx = im->ctx;
  const cli_backend_ops *ops = ctx->be->ops;
  const char *stream = im->stream;
  const int64_t f = im->first_version;
  int64_t expected = f - 1; /* f = 0 gives EVS_EXPECT_NO_STREAM */
  int status;
  for (size_t i = 0; i < im->count; i++) {
    evs_event_data *d = &im->data[i];
    cli_jevent *e = &im->evs[i];
    memset(d, 0, sizeof *d);
    d->type = e->type;
    d->data = e->data;
    d->data_len = e->data_len;
    d->metadata = e->metadata;
    d->metadata_len = e->metadata_len;
    if (e->has_id)
      d->id = e->id;
  }

  /* Events already imported (a second run, or an earlier partial import)
   * lead the group: the store answers their append as an idempotent retry,
   * after we checked that they sit where this file puts them. */
  size_t k = 0;
  int rc = 0;
  uint64_t pos = 0, first_pos = 0;
  while (k < im->count && im->evs[k].has_id &&
         (rc = ops->find_event_id(ctx->be, &im->evs[k].id, &pos)) == 0) {
    if (k == 0)
      first_pos = pos;
    k++;
  }
  if (rc && rc != EVS_ENOTFOUND)
    return cli_fail(ctx, rc, "%s: looking up an event id",
                    at_line(im, im->lines[k]));
  if (k < im->count && im->has_ts && im->ts < im->floor_ts) {
    char t1[CLI_TIME_BUFSZ], t2[CLI_TIME_BUFSZ];
    return cli_errorf(ctx, CLI_EXIT_ERROR,
                      "%s: stream '%s' version %lld was committed at %s, "
                      "before the newest event of this store (%s), so it "
                      "cannot keep its original time. Import into an empty "
                      "store, or use --timestamps metadata (keeps the "
                      "original time in the event metadata) or --timestamps "
                      "now",
                      at_line(im, im->lines[k]), stream,
                      (long long)(f + (int64_t)k), cli_time_format(t1, im->ts),
                      cli_time_format(t2, im->floor_ts));
  }
  size_t start = 0;
  if (k > 0) {
    located l = { stream, f, 0, "" };
    rc = ops->read_event(ctx->be, first_pos, locate_event, &l);
    if (rc)
      return cli_fail(ctx, rc, "%s: reading position %llu",
                      at_line(im, im->lines[0]), (unsigned long long)first_pos);
    if (!l.match)
      return cli_errorf(ctx, CLI_EXIT_ERROR,
                        "%s: the event id of stream '%s' version %lld is "
                        "already used by %s in this store; import into a "
                        "store without those events",
                        at_line(im, im->lines[0]), stream, (long long)f,
                        l.where);
    evs_append_result res;
    memset(&res, 0, sizeof res);
    rc = ops->append(ctx->be, stream, EVS_EXPECT_ANY, im->data, k, &res);
    if (rc)
      return cli_fail(ctx, rc,
                      "%s: stream '%s': checking %zu events "
                      "imported before",
                      at_events(im, 0, k - 1), stream, k);
    if (!res.idempotent || res.first_version != f)
      return cli_errorf(ctx, CLI_EXIT_ERROR,
                        "%s: stream '%s': events imported before are not "
                        "where this file puts them",
                        at_events(im, 0, k - 1), stream);
    im->skipped += k;
    if (k == im->count) {
      group_reset(im);
      return 0;
    }
    start = k;
    expected = f + (int64_t)k - 1;
  } else {
    target t;
    if ((status = get_target(im, im->lines[0], stream, &t)))
      return status;
    if (t.flags & EVS_STREAM_TOMBSTONED)
      return cli_errorf(ctx, CLI_EXIT_NOSTREAM,
                        "%s: stream '%s' is tombstoned in this store; "
                        "its events cannot be imported",
                        at_line(im, im->lines[0]), stream);
    if (t.flags & EVS_STREAM_DELETED) {
      if (t.version >= f)
        return wrong_version(im, at_line(im, im->lines[0]), stream, f, expected,
                             t.version);
      if (t.version < f - 1 &&
          (status =
               hide_prefix(im, stream, EVS_EXPECT_NO_STREAM, t.version + 1, f)))
        return status;
      expected = EVS_EXPECT_NO_STREAM;
    } else if (t.version < 0 && f > 0) {
      /* The export starts this stream at version f: make versions 0..f-1
       * exist and hide them, as they are hidden in the exported store. */
      if ((status = hide_prefix(im, stream, EVS_EXPECT_NO_STREAM, 0, f)))
        return status;
      expected = EVS_EXPECT_NO_STREAM;
    }
  }
  const size_t n = im->count - start;
  const int64_t fv = f + (int64_t)start;
  evs_append_result res;
  rc = write_events(im, stream, expected, im->data + start, n, im->has_ts,
                    im->ts, &res);
  if (rc == EVS_EINVAL && im->has_ts)
    return cli_errorf(ctx, CLI_EXIT_ERROR,
                      "%s: stream '%s': committing with the original "
                      "time failed: %s",
                      at_events(im, start, im->count - 1), stream,
                      ops->last_error(ctx->be));
  if (rc == EVS_EWRONGVERSION)
    return wrong_version(im, at_line(im, im->lines[start]), stream, fv,
                         expected, res.actual_version);
  if (rc)
    return cli_fail(ctx, rc, "%s: importing %zu event%s of stream '%s'",
                    at_events(im, start, im->count - 1), n, n == 1 ? "" : "s",
                    stream);
  if (res.idempotent) {
    im->skipped += n;
  } else {
    if (res.first_version != fv)
      return cli_errorf(ctx, CLI_EXIT_ERROR,
                        "%s: stream '%s': the events landed at version "
                        "%lld instead of %lld",
                        at_events(im, start, im->count - 1), stream,
                        (long long)res.first_version, (long long)fv);
    im->written += n;
  }
  group_reset(im);
  return 0;
}

static int apply_state(importer *im, cli_jevent *st) {
  cli_ctx *ctx = im->ctx;
  const cli_backend_ops *ops = ctx->be->ops;
  const char *stream = st->stream;
  const int tombstone = strcmp(st->state, "tombstoned") == 0;
  const int64_t v = st->version;
  const size_t line = im->lineno;
  int status, rc;
  target t;
  char why[128];
  if (cli_name_problem(why, sizeof why, "stream", stream))
    return cli_errorf(ctx, CLI_EXIT_USAGE, "%s: %s", at_line(im, line), why);
  if ((status = get_target(im, line, stream, &t)))
    return status;
  if (t.flags & EVS_STREAM_TOMBSTONED) {
    if (!tombstone)
      return cli_errorf(ctx, CLI_EXIT_NOSTREAM,
                        "%s: stream '%s' is tombstoned in this store",
                        at_line(im, line), stream);
    im->states++; /* already done */
    return 0;
  }
  if (st->has_md) {
    rc = ops->set_metadata(ctx->be, stream, &st->md);
    if (rc)
      return cli_fail(ctx, rc, "%s: setting the metadata of stream '%s'",
                      at_line(im, line), stream);
  }
  if (strcmp(st->state, "active") != 0) {
    /* The exported stream ended at version v (its events are hidden): make
     * the versions up to v exist here too, so that a recreated stream
     * continues at v + 1 as it would have in the exported store. */
    if (t.version > v) {
      fprintf(stderr,
              "%s %s: %s: stream '%s': wrong expected version: expected "
              "%lld, actual %lld\n"
              "The line ends stream '%s' at version %lld, but this store "
              "already holds it up to version %lld. Import into a store "
              "without this stream.\n",
              CLI_PROG, ctx->cmd, at_line(im, line), stream, (long long)v,
              (long long)t.version, stream, (long long)v, (long long)t.version);
      return CLI_EXIT_VERSION;
    }
    if (t.version < v) {
      int64_t expected = (t.flags & EVS_STREAM_DELETED) || t.version < 0
                             ? EVS_EXPECT_NO_STREAM
                             : t.version;
      int has_ts = im->ts_mode == TS_ORIGINAL && im->floor_ts > 0;
      if ((status = add_placeholders(im, line, stream, expected, t.version + 1,
                                     v + 1, has_ts, im->floor_ts)))
        return status;
      t.flags &= ~EVS_STREAM_DELETED;
      t.version = v;
    }
    if (tombstone) {
      rc = ops->delete_stream(ctx->be, stream, EVS_EXPECT_ANY, 1);
    } else if (!(t.flags & EVS_STREAM_DELETED) && v >= 0) {
      rc = ops->delete_stream(ctx->be, stream, v, 0);
    } else {
      rc = 0;
    }
    if (rc)
      return cli_fail(ctx, rc, "%s: deleting stream '%s'", at_line(im, line),
                      stream);
  }
  im->states++;
  return 0;
}

static int add_event(importer *im, cli_jevent *ev) {
  size_t size = event_cost(im->ctx, ev);
  if (im->count && (strcmp(im->stream, ev->stream) != 0 ||
                    ev->version != im->first_version + (int64_t)im->count ||
                    ev->has_timestamp != im->has_ts ||
                    (ev->has_timestamp && ev->timestamp_ns != im->ts) ||
                    im->count >= max_group_events(im->ctx) ||
                    im->bytes + size > max_group_bytes(im->ctx))) {
    int status = flush_group(im);
    if (status)
      return status;
  }
  if (im->count == 0) {
    char why[128];
    if (cli_name_problem(why, sizeof why, "stream", ev->stream))
      return cli_errorf(im->ctx, CLI_EXIT_USAGE, "%s: %s",
                        at_line(im, im->lineno), why);
    im->stream = cli_xstrndup(ev->stream, strlen(ev->stream));
    im->first_version = ev->version;
    im->has_ts = ev->has_timestamp;
    im->ts = ev->timestamp_ns;
  }
  if (im->count == im->cap) {
    size_t cap = im->cap ? im->cap * 2 : 256;
    cli_jevent *e = realloc(im->evs, cap * sizeof *e);
    if (e)
      im->evs = e;
    evs_event_data *d = realloc(im->data, cap * sizeof *d);
    if (d)
      im->data = d;
    size_t *l = realloc(im->lines, cap * sizeof *l);
    if (l)
      im->lines = l;
    if (e == NULL || d == NULL || l == NULL)
      return cli_errorf(im->ctx, CLI_EXIT_ERROR, "out of memory");
    im->cap = cap;
  }
  im->lines[im->count] = im->lineno;
  im->evs[im->count++] = *ev; /* takes ownership */
  memset(ev, 0, sizeof *ev);
  im->bytes += size;
  im->events++;
  return 0;
}

enum {
  I_TIMESTAMPS = 1
};

static const cli_opt import_opts[] = {
  { "timestamps", 1, I_TIMESTAMPS },
  { NULL, 0, 0 },
};

/* The commit time of the head of the log (0 for an empty store). */
static int head_time(cli_ctx *ctx, int64_t *ts) {
  uint64_t head;
  return ctx->be->ops->head(ctx->be, &head, ts);
}

static int run_import(cli_ctx *ctx, const cli_args *a) {
  if (a->npos > 1)
    return cli_usage(ctx, "too many arguments");
  int ts_mode = TS_ORIGINAL;
  for (int i = 0; i < a->nopts; i++) {
    const char *v = a->opts[i].val;
    if (strcmp(v, "original") == 0)
      ts_mode = TS_ORIGINAL;
    else if (strcmp(v, "metadata") == 0)
      ts_mode = TS_METADATA;
    else if (strcmp(v, "now") == 0)
      ts_mode = TS_NOW;
    else
      return cli_usage(ctx,
                       "--timestamps must be original, metadata or now, "
                       "not '%s'",
                       v);
  }
  const char *path = a->npos ? a->pos[0] : "-";
  int use_stdin = strcmp(path, "-") == 0;
  FILE *in = use_stdin ? stdin : fopen(path, "rb");
  if (in == NULL)
    return cli_errorf(ctx, CLI_EXIT_USAGE, "cannot open '%s': %s", path,
                      strerror(errno));
  int status = cli_open(ctx, CLI_OPEN_WRITE, NULL);
  if (status) {
    if (!use_stdin)
      fclose(in);
    return status;
  }
  importer im;
  memset(&im, 0, sizeof im);
  im.ctx = ctx;
  im.name = use_stdin ? "<stdin>" : path;
  im.ts_mode = ts_mode;
  int rc = head_time(ctx, &im.floor_ts);
  if (rc) {
    if (!use_stdin)
      fclose(in);
    return cli_fail(ctx, rc, "reading the head of the store");
  }
  struct stat st;
  uint64_t total = 0;
  if (fstat(fileno(in), &st) == 0 && S_ISREG(st.st_mode))
    total = (uint64_t)st.st_size;
  cli_progress progress;
  cli_progress_start(&progress, "import", total, 1, ctx->stderr_tty);
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  uint64_t consumed = 0;
  while ((n = getline(&line, &cap, in)) > 0) {
    consumed += (uint64_t)n;
    im.lineno++;
    size_t len = (size_t)n;
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' ||
                   line[len - 1] == ' ' || line[len - 1] == '\t'))
      len--;
    size_t s = 0;
    while (s < len && (line[s] == ' ' || line[s] == '\t'))
      s++;
    if (s == len)
      continue;
    cli_jevent ev;
    char err[256];
    if (cli_jevent_parse(&ev, line + s, len - s, CLI_JSONL_IMPORT, err,
                         sizeof err)) {
      status = cli_errorf(ctx, CLI_EXIT_USAGE, "%s: %s",
                          at_line(&im, im.lineno), err);
      break;
    }
    if (ev.is_state) {
      status = flush_group(&im);
      if (status == 0)
        status = apply_state(&im, &ev);
      cli_jevent_clear(&ev);
    } else {
      char why[128];
      if (cli_name_problem(why, sizeof why, "event type", ev.type)) {
        status = cli_errorf(ctx, CLI_EXIT_USAGE, "%s: %s",
                            at_line(&im, im.lineno), why);
      } else {
        if (ev.has_timestamp && ts_mode == TS_METADATA) {
          cli_buf md = CLI_BUF_INIT;
          cli_tsmeta_wrap(&md, ev.metadata, ev.metadata_len, ev.timestamp_ns);
          free(ev.metadata);
          ev.metadata = md.data;
          ev.metadata_len = md.len;
        }
        if (ts_mode != TS_ORIGINAL)
          ev.has_timestamp = 0; /* committed now */
        status = add_event(&im, &ev);
      }
      cli_jevent_clear(&ev);
    }
    if (status)
      break;
    cli_progress_update(&progress, consumed);
  }
  if (status == 0 && ferror(in))
    status = cli_errorf(ctx, CLI_EXIT_ERROR, "%s: reading: %s",
                        at_line(&im, im.lineno + 1), strerror(errno));
  if (status == 0)
    status = flush_group(&im);
  cli_progress_finish(&progress);
  free(line);
  if (!use_stdin)
    fclose(in);
  group_reset(&im);
  free(im.evs);
  free(im.data);
  free(im.lines);
  if (status) {
    /* The place the error named (every error names one). */
    if (im.where[0] == '\0')
      at_line(&im, im.lineno);
    fprintf(stderr,
            "%s import: stopped at %s, after %llu events written and %llu "
            "already present. The events of the lines before it are "
            "stored; once the cause is fixed, importing the file again is "
            "safe (event ids make it idempotent).\n",
            CLI_PROG, im.where, (unsigned long long)im.written,
            (unsigned long long)im.skipped);
    return status;
  }
  json_t *o = json_object();
  json_object_set_new(o, "events", cli_json_u64(im.events));
  json_object_set_new(o, "written", cli_json_u64(im.written));
  json_object_set_new(o, "skipped", cli_json_u64(im.skipped));
  json_object_set_new(o, "states", cli_json_u64(im.states));
  json_object_set_new(o, "placeholders", cli_json_u64(im.placeholders));
  cli_out_object(ctx, o);
  return cli_finish_output(ctx);
}

const cli_command cli_cmd_import = {
  "import",
  run_import,
  import_opts,
  "import [FILE|-] [--timestamps original|metadata|now]",
  "load JSON lines written by export",
  "Reads the lines of 'export' from FILE (default: stdin) and recreates\n"
  "every stream with the same versions, ids, types, data and metadata.\n"
  "Consecutive events of one stream are appended together (at most 10000\n"
  "events or 32 MiB at a time) with exact expected versions. Ids are kept,\n"
  "so importing a file again writes nothing new and an interrupted import\n"
  "can simply be run again.\n"
  "\n"
  "Timestamps (--timestamps):\n"
  "  original  (default) commit every event with its exported timestamp,\n"
  "            so reads, --as-of and --since/--until see the original\n"
  "            times. Needs a store whose newest event is not newer than\n"
  "            the imported ones (an empty store, or an earlier part of\n"
  "            the same export); fails otherwise.\n"
  "  metadata  commit now and keep the original time in the event\n"
  "            metadata as \"$original_timestamp\" (export restores it)\n"
  "  now       commit now and drop the original times\n"
  "Lines without a \"timestamp\" are committed now.\n"
  "A stream whose exported events start after version 0 (truncated,\n"
  "recreated after a soft delete) gets hidden placeholder events of type\n"
  "\"$placeholder\" for the missing versions, so that versions match.\n"
  "\n"
  "Errors name the input line that failed (FILE:LINE, <stdin>:LINE), or\n"
  "FILE:FIRST-LAST for a group of events refused as a whole; the events\n"
  "of the lines before it stay imported.\n"
  "\n"
  "Prints {\"events\":N,\"written\":W,\"skipped\":S,\"states\":T,"
  "\"placeholders\":P}.\n"
  "Shows a progress bar on stderr when it is a terminal.\n",
};
