/*
 * evstore-cli streams, info, metadata and delete.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"

/* ---- streams ------------------------------------------------------------- */

enum {
  L_PREFIX = 1,
  L_DELETED
};

static const cli_opt streams_opts[] = {
  { "prefix", 1, L_PREFIX },
  { "include-deleted", 0, L_DELETED },
  { NULL, 0, 0 },
};

/* The "deleted" of every command's JSON: soft-deleted or tombstoned, so
 * that streams, info and delete describe one state alike ("tombstoned"
 * then tells the two apart). */
static int is_deleted(unsigned flags) {
  return (flags & (EVS_STREAM_DELETED | EVS_STREAM_TOMBSTONED)) != 0;
}

static int print_stream(const char *name, size_t len,
                        const evs_stream_info *info, void *payload) {
  cli_ctx *ctx = payload;
  json_t *o = json_object();
  json_object_set_new(o, "stream", json_stringn(name, len));
  json_object_set_new(o, "version", json_integer(info->version));
  json_object_set_new(o, "deleted", json_boolean(is_deleted(info->flags)));
  cli_out_row(ctx, o);
  return 0;
}

static int run_streams(cli_ctx *ctx, const cli_args *a) {
  if (a->npos)
    return cli_usage(ctx, "unexpected argument '%s'", a->pos[0]);
  const char *prefix = NULL;
  int deleted = 0;
  for (int i = 0; i < a->nopts; i++) {
    if (a->opts[i].id == L_PREFIX)
      prefix = a->opts[i].val;
    else if (a->opts[i].id == L_DELETED)
      deleted = 1;
  }
  if (prefix && strlen(prefix) > EVS_MAX_NAME_LEN)
    return cli_usage(ctx, "--prefix is longer than %u bytes", EVS_MAX_NAME_LEN);
  int status = cli_open(ctx, CLI_OPEN_READ, NULL);
  if (status)
    return status;
  int rc = ctx->be->ops->streams(ctx->be, prefix, deleted, print_stream, ctx);
  if (rc)
    return cli_fail(ctx, rc, "listing streams");
  return cli_finish_output(ctx);
}

const cli_command cli_cmd_streams = {
  "streams",
  run_streams,
  streams_opts,
  "streams [--prefix P] [--include-deleted]",
  "list streams",
  "Prints one {\"stream\":S,\"version\":V,\"deleted\":false} per stream, in\n"
  "byte order of the names.\n"
  "\n"
  "Options:\n"
  "  --prefix P          only streams whose name starts with P\n"
  "  --include-deleted   also soft-deleted and tombstoned streams\n"
  "                      (\"deleted\":true)\n",
};

/* ---- info ---------------------------------------------------------------- */

static json_t *limit_json(uint64_t v) {
  return v ? cli_json_u64(v) : json_null();
}

static json_t *metadata_json(const evs_stream_info *info) {
  json_t *m = json_object();
  json_object_set_new(m, "max_count", limit_json(info->max_count));
  json_object_set_new(m, "max_age", limit_json(info->max_age_sec));
  json_object_set_new(m, "truncate_before",
                      info->truncate_before >= 0
                          ? json_integer(info->truncate_before)
                          : json_null());
  json_object_set_new(m, "custom",
                      info->custom_len
                          ? cli_json_bytes(info->custom, info->custom_len, 1)
                          : json_null());
  return m;
}

static int run_info(cli_ctx *ctx, const cli_args *a) {
  if (a->npos != 1)
    return cli_usage(ctx, a->npos ? "too many arguments" : "missing STREAM");
  const char *stream = a->pos[0];
  if (cli_check_name(ctx, "stream", stream))
    return CLI_EXIT_USAGE;
  int status = cli_open(ctx, CLI_OPEN_READ, stream);
  if (status)
    return status;
  evs_stream_info info;
  int rc = ctx->be->ops->stream_info(ctx->be, stream, &info);
  if (rc)
    return cli_fail(ctx, rc, "stream '%s'", stream);
  json_t *o = json_object();
  json_object_set_new(o, "stream", json_string(stream));
  json_object_set_new(o, "version", json_integer(info.version));
  json_object_set_new(o, "first_version", json_integer(info.first_version));
  json_object_set_new(o, "first_position", cli_json_u64(info.first_position));
  json_object_set_new(o, "last_position", cli_json_u64(info.last_position));
  json_object_set_new(o, "deleted", json_boolean(is_deleted(info.flags)));
  json_object_set_new(o, "tombstoned",
                      json_boolean(info.flags & EVS_STREAM_TOMBSTONED));
  json_object_set_new(o, "metadata", metadata_json(&info));
  json_object_set_new(o, "start_version", json_integer(info.start_version));
  json_object_set_new(o, "last_timestamp",
                      info.last_timestamp_ns
                          ? cli_json_time(info.last_timestamp_ns)
                          : json_null());
  ctx->be->ops->stream_info_clear(ctx->be, &info);
  cli_out_object(ctx, o);
  return cli_finish_output(ctx);
}

const cli_command cli_cmd_info = {
  "info",
  run_info,
  NULL,
  "info STREAM",
  "show a stream's version, positions, flags and metadata",
  "Prints one object:\n"
  "  {\"stream\":S,\"version\":V,\"first_version\":F,\"first_position\":P,\n"
  "   \"last_position\":Q,\"deleted\":false,\"tombstoned\":false,\n"
  "   \"metadata\":{\"max_count\":N,\"max_age\":SECONDS,"
  "\"truncate_before\":V,\n"
  "               \"custom\":<json or null>},\n"
  "   \"start_version\":V0,\"last_timestamp\":\"<RFC 3339>\"}\n"
  "version is -1 when the stream has no events; first_version is the\n"
  "first version reads can see (-1 if none); positions are 0 when there\n"
  "is none; metadata limits that are not set are null. Deleted and\n"
  "tombstoned streams are shown too (exit status 0): \"deleted\" is true\n"
  "for both, as in 'streams' and 'delete', and \"tombstoned\" only for a\n"
  "tombstoned one.\n"
  "\n"
  "Exit status 4 when the store has never seen the stream.\n",
};

/* ---- metadata ------------------------------------------------------------ */

/* The library's bound on custom stream metadata (evs_stream_metadata in
 * <evstore/append.h>), checked before the store is opened so that a value
 * that cannot be stored creates nothing. */
#define CUSTOM_MAX (64u * 1024u)

enum {
  M_MAX_COUNT = 1,
  M_MAX_AGE,
  M_TRUNCATE,
  M_CUSTOM
};

static const cli_opt metadata_opts[] = {
  { "max-count", 1, M_MAX_COUNT },
  { "max-age", 1, M_MAX_AGE },
  { "truncate-before", 1, M_TRUNCATE },
  { "custom", 1, M_CUSTOM },
  { NULL, 0, 0 },
};

static int run_metadata(cli_ctx *ctx, const cli_args *a) {
  if (a->npos != 1)
    return cli_usage(ctx, a->npos ? "too many arguments" : "missing STREAM");
  const char *stream = a->pos[0];
  if (cli_check_name(ctx, "stream", stream))
    return CLI_EXIT_USAGE;
  /* Parse every flag before touching the store. */
  int set_count = 0, set_age = 0, set_tb = 0, set_custom = 0;
  uint64_t max_count = 0, max_age = 0;
  int64_t tb = -1;
  char *custom = NULL;
  size_t custom_len = 0;
  for (int i = 0; i < a->nopts; i++) {
    const cli_optval *v = &a->opts[i];
    int none = strcmp(v->val, "none") == 0;
    switch (v->id) {
    case M_MAX_COUNT:
      set_count = 1;
      max_count = 0;
      if (!none && cli_u64(v->val, &max_count)) {
        cli_bad_value(ctx, "--max-count",
                      "a number of events (an integer >= 0) or none", v->val);
        goto usage;
      }
      break;
    case M_MAX_AGE:
      set_age = 1;
      max_age = 0;
      if (!none && cli_u64(v->val, &max_age)) {
        cli_bad_value(ctx, "--max-age",
                      "a number of seconds (an integer >= 0) or none", v->val);
        goto usage;
      }
      break;
    case M_TRUNCATE: {
      set_tb = 1;
      tb = -1;
      uint64_t t;
      if (none)
        break;
      if (cli_u64(v->val, &t) || t > (uint64_t)INT64_MAX - 1) {
        cli_bad_value(ctx, "--truncate-before",
                      "a version (an integer >= 0) or none", v->val);
        goto usage;
      }
      tb = (int64_t)t;
      break;
    }
    case M_CUSTOM: {
      set_custom = 1;
      free(custom);
      custom = NULL;
      custom_len = 0;
      if (none)
        break;
      cli_json_info info;
      const char *err;
      size_t len = strlen(v->val);
      if (cli_json_check(&info, v->val, len, &err)) {
        cli_usage(ctx,
                  "--custom must be JSON or none, and this is not valid "
                  "JSON: %s (at byte %zu)",
                  err, info.error_offset + 1);
        goto usage;
      }
      custom = cli_xmalloc(len);
      custom_len = cli_json_compact(custom, v->val, len);
      if (custom_len > CUSTOM_MAX) {
        cli_usage(ctx,
                  "--custom is %zu bytes of JSON; custom metadata is "
                  "limited to 64 KiB",
                  custom_len);
        goto usage;
      }
      break;
    }
    }
  }
  int setting = set_count || set_age || set_tb || set_custom;
  int status = cli_open(ctx, setting ? CLI_OPEN_WRITE : CLI_OPEN_READ, stream);
  if (status) {
    free(custom);
    return status;
  }
  evs_stream_info info;
  int rc = ctx->be->ops->stream_info(ctx->be, stream, &info);
  if (rc == EVS_ENOSTREAM && setting) {
    /* Metadata may be set before the stream has events. */
    memset(&info, 0, sizeof info);
    info.truncate_before = -1;
    rc = 0;
  }
  if (rc) {
    free(custom);
    return cli_fail(ctx, rc, "stream '%s'", stream);
  }
  if (setting) {
    if (info.flags & EVS_STREAM_TOMBSTONED) {
      ctx->be->ops->stream_info_clear(ctx->be, &info);
      free(custom);
      return cli_errorf(ctx, CLI_EXIT_NOSTREAM,
                        "stream '%s' is tombstoned (hard-deleted): its "
                        "metadata can no longer be changed",
                        stream);
    }
    evs_stream_metadata md = EVS_STREAM_METADATA_INIT;
    md.max_count = set_count ? max_count : info.max_count;
    md.max_age_sec = set_age ? max_age : info.max_age_sec;
    md.truncate_before = set_tb ? tb : info.truncate_before;
    md.custom = set_custom ? custom : info.custom;
    md.custom_len = set_custom ? custom_len : info.custom_len;
    rc = ctx->be->ops->set_metadata(ctx->be, stream, &md);
    ctx->be->ops->stream_info_clear(ctx->be, &info);
    free(custom);
    custom = NULL;
    if (rc)
      return cli_fail(ctx, rc, "setting the metadata of stream '%s'", stream);
    rc = ctx->be->ops->stream_info(ctx->be, stream, &info);
    if (rc)
      return cli_fail(ctx, rc, "stream '%s'", stream);
  }
  json_t *o = json_object();
  json_object_set_new(o, "stream", json_string(stream));
  json_t *m = metadata_json(&info);
  json_object_update(o, m);
  json_decref(m);
  ctx->be->ops->stream_info_clear(ctx->be, &info);
  cli_out_object(ctx, o);
  return cli_finish_output(ctx);
usage:
  free(custom);
  return CLI_EXIT_USAGE;
}

const cli_command cli_cmd_metadata = {
  "metadata",
  run_metadata,
  metadata_opts,
  "metadata STREAM [--max-count N] [--max-age SECONDS] "
  "[--truncate-before VERSION]\n"
  "         [--custom JSON]",
  "show or set a stream's metadata",
  "Without options, prints the stream's metadata:\n"
  "  {\"stream\":S,\"max_count\":N,\"max_age\":SECONDS,"
  "\"truncate_before\":V,\"custom\":<json>}\n"
  "(null for limits that are not set). With options, sets those and keeps\n"
  "the others, then prints the result. Metadata may be set before the\n"
  "stream has events. Events outside the limits are hidden from every\n"
  "read at once.\n"
  "\n"
  "Options (each also takes 'none' to remove the limit):\n"
  "  --max-count N              keep only the last N events visible\n"
  "  --max-age SECONDS          hide events committed longer ago\n"
  "  --truncate-before VERSION  hide versions below VERSION\n"
  "  --custom JSON              custom metadata (any JSON, at most 64 KiB)\n"
  "\n"
  "The metadata of a deleted or tombstoned stream is shown as 'info'\n"
  "shows it. Exit status 4 when the store has never seen the stream\n"
  "(without options), or when setting the metadata of a tombstoned\n"
  "stream.\n",
};

/* ---- delete -------------------------------------------------------------- */

enum {
  D_HARD = 1,
  D_EXPECTED
};

static const cli_opt delete_opts[] = {
  { "hard", 0, D_HARD },
  { "expected-version", 1, D_EXPECTED },
  { NULL, 0, 0 },
};

static int run_delete(cli_ctx *ctx, const cli_args *a) {
  if (a->npos != 1)
    return cli_usage(ctx, a->npos ? "too many arguments" : "missing STREAM");
  const char *stream = a->pos[0];
  int hard = 0;
  int64_t expected = EVS_EXPECT_ANY;
  for (int i = 0; i < a->nopts; i++) {
    if (a->opts[i].id == D_HARD)
      hard = 1;
    else if (a->opts[i].id == D_EXPECTED &&
             cli_parse_expected(ctx, a->opts[i].val, &expected))
      return CLI_EXIT_USAGE;
  }
  if (cli_check_name(ctx, "stream", stream))
    return CLI_EXIT_USAGE;
  /* Only a tombstone that reserves a name may create a store: a soft
   * delete, or a tombstone whose expected version needs the stream, fails
   * on a missing store as on a store without the stream, creating
   * nothing. */
  int status = cli_open(ctx, CLI_OPEN_EXISTING, stream);
  if (status == CLI_NO_STORE) {
    if (!hard)
      return cli_no_store(ctx, stream);
    if (expected != EVS_EXPECT_ANY && expected != EVS_EXPECT_NO_STREAM)
      return cli_report_wrong_version(ctx, stream, expected, EVS_VERSION_NONE);
    status = cli_open(ctx, CLI_OPEN_WRITE, stream);
  }
  if (status)
    return status;
  evs_stream_info info;
  int rc = ctx->be->ops->stream_info(ctx->be, stream, &info);
  if (rc && rc != EVS_ENOSTREAM)
    return cli_fail(ctx, rc, "stream '%s'", stream);
  int known = rc == 0;
  unsigned flags = known ? info.flags : 0;
  int64_t version =
      known && !(flags & EVS_STREAM_DELETED) ? info.version : EVS_VERSION_NONE;
  if (known)
    ctx->be->ops->stream_info_clear(ctx->be, &info);
  if (!hard && !known)
    return cli_errorf(ctx, CLI_EXIT_NOSTREAM,
                      "stream '%s' not found: nothing to delete. Check the "
                      "name with 'evstore-cli streams'",
                      stream);
  if (!hard && (flags & EVS_STREAM_TOMBSTONED))
    return cli_errorf(ctx, CLI_EXIT_NOSTREAM,
                      "stream '%s' is already tombstoned (hard-deleted)",
                      stream);
  rc = ctx->be->ops->delete_stream(ctx->be, stream, expected, hard);
  if (rc == EVS_EWRONGVERSION)
    return cli_report_wrong_version(ctx, stream, expected, version);
  if (rc)
    return cli_fail(ctx, rc, "deleting stream '%s'", stream);
  json_t *o = json_object();
  json_object_set_new(o, "stream", json_string(stream));
  json_object_set_new(o, "deleted", json_true());
  json_object_set_new(o, "tombstoned", json_boolean(hard));
  cli_out_object(ctx, o);
  return cli_finish_output(ctx);
}

const cli_command cli_cmd_delete = {
  "delete",
  run_delete,
  delete_opts,
  "delete STREAM [--hard] [--expected-version any|no-stream|exists|N]",
  "soft-delete or tombstone a stream",
  "Soft delete (default): the stream disappears from reads and listings;\n"
  "appending to it again recreates it, continuing its version numbers,\n"
  "with the old events hidden. Deleting an already soft-deleted stream\n"
  "succeeds.\n"
  "Hard delete (--hard): a tombstone; the stream can never be read or\n"
  "written again. A stream that does not exist can be tombstoned (the\n"
  "name is then reserved). Tombstoning an already tombstoned stream\n"
  "succeeds, so a repeated --hard is safe.\n"
  "Deleted events stay on disk until a compaction removes them.\n"
  "\n"
  "Options:\n"
  "  --hard                 tombstone the stream for good\n"
  "  --expected-version V   any (default), no-stream, exists or N, checked\n"
  "                         as for append\n"
  "\n"
  "Prints {\"stream\":S,\"deleted\":true,\"tombstoned\":BOOL}. Exit status\n"
  "3 on a wrong expected version; 4 when a soft delete finds no stream\n"
  "(or no store) or a tombstoned one.\n",
};
