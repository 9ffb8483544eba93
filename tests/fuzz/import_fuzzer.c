/*
 * libFuzzer target for the CLI's JSON-lines event parser,
 * cli_jevent_parse() (tools/cli/jsonl.c), which reads every line of
 * `evstore-cli import` and of `append --jsonl`; and for the metadata
 * wrapper that keeps an imported event's original time
 * (tools/cli/tsmeta.c), whose unwrap side reads metadata back from a store.
 *
 * The input is tried three ways:
 *   1. as one line, in APPEND and in IMPORT mode: a failure has a message
 *      and leaves nothing allocated; a success is complete (what each mode
 *      requires is there, names are NUL-free, a state is one of the three
 *      states, APPEND-mode JSON is compact and valid);
 *   2. as stored metadata: cli_tsmeta_unwrap() either declines or returns
 *      a slice inside the input or its scratch buffer;
 *   3. as the bytes of an event: an export line made of them (with
 *      cli_buf_json_bytes in EXACT mode, as `export` writes data and
 *      metadata) imports to the same data and metadata bytes, and
 *      cli_tsmeta_wrap() then cli_tsmeta_unwrap() gives back the same
 *      metadata and time.
 *
 * Built as a libFuzzer binary with clang (import_fuzzer), and replayed over
 * tests/fuzz/corpus/import/ by fuzz_replay_import in every build. jsonl.c
 * is not part of evstore_cli_core, so this target compiles it itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cli.h"
#include "json.h"
#include "timeparse.h"
#include "tsmeta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond) {
  if (!cond)
    abort();
}

static int is_zero(const void *p, size_t n) {
  const uint8_t *b = (const uint8_t *)p;
  for (size_t i = 0; i < n; i++)
    if (b[i])
      return 0;
  return 1;
}

/* The value of the last member named `key` of the object `obj` (the one
 * the parser keeps), or a NULL span. */
static cli_json_span last_member(const char *obj, size_t len,
                                 const char *key) {
  cli_json_span found = { NULL, 0 }, k, v;
  cli_json_members it;
  if (cli_json_members_init(&it, obj, len) == 0)
    while (cli_json_members_next(&it, &k, &v))
      if (cli_json_key_is(k, key))
        found = v;
  return found;
}

/* What a "data" or "metadata" value must have become. */
static void check_bytes(const void *got, size_t got_len, cli_json_span v,
                        int mode, int null_is_empty) {
  check(got_len == 0 || got != NULL);
  if (v.p == NULL || (null_is_empty && cli_json_span_kind(v) == CLI_JSON_NULL)) {
    check(got_len == 0);
    return;
  }
  if (cli_json_is_base64_object(v.p, v.len)) {
    check(got_len <= v.len);
    return;
  }
  if (mode == CLI_JSONL_IMPORT) {
    check(got_len == v.len && memcmp(got, v.p, v.len) == 0);
    return;
  }
  char *compact = malloc(v.len);
  check(compact != NULL);
  size_t n = cli_json_compact(compact, v.p, v.len);
  check(got_len == n && memcmp(got, compact, n) == 0);
  free(compact);
}

static void one_line(const char *line, size_t len, int mode) {
  cli_jevent ev;
  char err[256];
  memset(err, 0x5a, sizeof err);
  if (cli_jevent_parse(&ev, line, len, mode, err, sizeof err) != 0) {
    check(memchr(err, '\0', sizeof err) != NULL && strlen(err) > 5);
    /* Nothing is left allocated on failure. */
    check(ev.stream == NULL && ev.type == NULL && ev.data == NULL &&
          ev.metadata == NULL && ev.state == NULL && ev.custom == NULL);
    return;
  }
  cli_json_info info;
  check(cli_json_check(&info, line, len, NULL) == 0);
  check(info.kind == CLI_JSON_OBJECT);
  const char *obj = line + info.start;
  size_t obj_len = info.end - info.start;
  check(ev.stream == NULL || strlen(ev.stream) < len);
  check(ev.type == NULL || strlen(ev.type) < len);
  if (ev.has_version)
    check(ev.version >= -1);
  if (ev.has_id)
    check(!evs_uuid_is_nil(&ev.id));
  if (ev.is_state) {
    check(mode == CLI_JSONL_IMPORT);
    check(ev.state != NULL && ev.stream != NULL && ev.has_version);
    check(strcmp(ev.state, "active") == 0 ||
          strcmp(ev.state, "deleted") == 0 ||
          strcmp(ev.state, "tombstoned") == 0);
    if (ev.has_md) {
      cli_json_span md = last_member(obj, obj_len, "metadata");
      check(cli_json_span_kind(md) == CLI_JSON_OBJECT);
      check(ev.md.truncate_before >= -1);
      check(ev.md.custom_len == 0 || ev.md.custom == ev.custom);
      check_bytes(ev.md.custom, ev.md.custom_len,
                  last_member(md.p, md.len, "custom"), CLI_JSONL_IMPORT, 1);
    }
  } else {
    check(ev.type != NULL);
    if (mode == CLI_JSONL_IMPORT)
      check(ev.stream != NULL && ev.has_version && ev.version >= 0);
    cli_json_span d = last_member(obj, obj_len, "data");
    check(d.p != NULL);
    check_bytes(ev.data, ev.data_len, d, mode, 0);
    check_bytes(ev.metadata, ev.metadata_len,
                last_member(obj, obj_len, "metadata"), mode, 1);
  }
  cli_jevent_clear(&ev);
  check(is_zero(&ev, sizeof ev));
}

static void as_metadata(const uint8_t *data, size_t size) {
  cli_buf scratch = CLI_BUF_INIT;
  int64_t ts = 0;
  const void *orig = NULL;
  size_t orig_len = 0;
  if (cli_tsmeta_unwrap(&ts, &orig, &orig_len, &scratch, data, size)) {
    const uint8_t *o = (const uint8_t *)orig;
    int in_input = orig_len == 0 ||
                   (o >= data && orig_len <= size &&
                    (size_t)(o - data) <= size - orig_len);
    int in_scratch = orig_len == 0 ||
                     (o >= (const uint8_t *)scratch.data &&
                      orig_len <= scratch.len &&
                      (size_t)(o - (const uint8_t *)scratch.data) <=
                          scratch.len - orig_len);
    check(in_input || in_scratch);
  }
  cli_buf_free(&scratch);
}

/* The bytes as an event's data and metadata, exported then imported. */
static void as_event_bytes(const uint8_t *data, size_t size) {
  int64_t ts = 0;
  for (size_t i = 0; i < 8 && i < size; i++)
    ts = (int64_t)((uint64_t)ts << 8 | data[i]);
  char tbuf[CLI_TIME_BUFSZ];
  cli_buf line = CLI_BUF_INIT;
  cli_buf_puts(&line, "{\"stream\":\"s\",\"version\":7,\"type\":\"t\","
                      "\"timestamp\":\"");
  cli_buf_puts(&line, cli_time_format(tbuf, ts));
  cli_buf_puts(&line, "\",\"data\":");
  cli_buf_json_bytes(&line, data, size, CLI_BYTES_EXACT, 0);
  cli_buf_puts(&line, ",\"metadata\":");
  cli_buf_json_bytes(&line, data, size, CLI_BYTES_EXACT, 1);
  cli_buf_puts(&line, "}");

  cli_jevent ev;
  char err[256];
  int rc = cli_jevent_parse(&ev, line.data, line.len, CLI_JSONL_IMPORT, err,
                            sizeof err);
  check(rc == 0);
  check(ev.has_timestamp && ev.timestamp_ns == ts);
  check(ev.data_len == size && (size == 0 || memcmp(ev.data, data, size) == 0));
  check(ev.metadata_len == size &&
        (size == 0 || memcmp(ev.metadata, data, size) == 0));
  cli_jevent_clear(&ev);
  cli_buf_free(&line);

  /* import --timestamps metadata, then export. */
  cli_buf md = CLI_BUF_INIT, scratch = CLI_BUF_INIT;
  cli_tsmeta_wrap(&md, data, size, ts);
  int64_t ts2 = 0;
  const void *orig = NULL;
  size_t orig_len = 0;
  check(cli_tsmeta_unwrap(&ts2, &orig, &orig_len, &scratch, md.data, md.len));
  check(ts2 == ts);
  check(orig_len == size && (size == 0 || memcmp(orig, data, size) == 0));
  cli_buf_free(&md);
  cli_buf_free(&scratch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  one_line((const char *)data, size, CLI_JSONL_APPEND);
  one_line((const char *)data, size, CLI_JSONL_IMPORT);
  as_metadata(data, size);
  as_event_bytes(data, size);
  return 0;
}
