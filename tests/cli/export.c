/*
 * evstore-cli export and import: byte-exact round trips (10k events with
 * 1 MiB events among them), original timestamps, idempotent re-import,
 * deleted/tombstoned streams and metadata, partial exports and errors.
 */
#include "clitest.h"

TestSuite(cli_export, .init = ct_setup, .fini = ct_teardown);

/* Runs against the store `db` instead of ct_db. */
static cu_result run_db(const char *db, const void *input, size_t len,
                        const char *const *args) {
  char env_db[4200];
  snprintf(env_db, sizeof env_db, "EVSTORE_DB=%s", db);
  const char *envv[] = { env_db, "EVSTORE_DURABILITY=nosync", NULL };
  cu_opts o = { tu_dir, envv, input, len, 300000 };
  return cu_run(EVSTORE_CLI_PATH, args, &o);
}

static char *db_path(const char *name) {
  static char paths[4][4200];
  static int k;
  char *p = paths[k++ % 4];
  snprintf(p, 4200, "%s/%s", tu_dir, name);
  return p;
}

static cu_result export_db(const char *db) {
  const char *args[] = { "export", NULL };
  cu_result r = run_db(db, NULL, 0, args);
  ct_assert_status(r, 0);
  cr_assert_eq(r.err_len, 0, "export wrote to stderr: %s", r.err);
  return r;
}

static json_t *import_db(const char *db, const char *text, size_t len) {
  const char *args[] = { "import", NULL };
  cu_result r = run_db(db, text, len, args);
  ct_assert_status(r, 0);
  cr_assert_eq(r.err_len, 0, "import wrote to stderr: %s", r.err);
  json_t *o = ct_json(r.out);
  cu_result_free(&r);
  return o;
}

static void append_jsonl(const char *stream, const char *text, size_t len) {
  cu_result r = ct_run_in(text, len, "append", stream, "--jsonl", "-", NULL);
  ct_assert_status(r, 0);
  cu_result_free(&r);
}

/* Removes "position":N, from every line (positions legitimately differ when
 * import had to add placeholders). */
static char *without_positions(const char *s) {
  char *out = malloc(strlen(s) + 1);
  size_t o = 0;
  while (*s) {
    if (strncmp(s, "{\"position\":", 12) == 0) {
      s += 12;
      while (*s >= '0' && *s <= '9')
        s++;
      s++; /* ',' */
      out[o++] = '{';
      continue;
    }
    out[o++] = *s++;
  }
  out[o] = '\0';
  return out;
}

Test(cli_export, round_trip_10k_events_with_1mib_events) {
  const size_t streams = 20, rounds = 5, per = 100;
  const size_t big = 1u << 20;
  size_t cap = 4 * big + (1u << 16);
  char *in = malloc(cap);
  size_t total = 0;
  for (size_t round = 0; round < rounds; round++) {
    for (size_t s = 0; s < streams; s++) {
      size_t n = 0;
      for (size_t i = 0; i < per; i++) {
        size_t k = round * per + i;
        int kind = (int)((s + k) % 5);
        if (n + 3 * big > cap) {
          cap = 2 * cap + 3 * big;
          in = realloc(in, cap);
        }
        if (round == 2 && i == 50 && s % 5 == 0) {
          /* 1 MiB events: JSON text, binary, and JSON metadata. */
          if (s == 0) {
            n += (size_t)sprintf(in + n, "{\"type\":\"Big\",\"data\":\"");
            for (size_t j = 0; j < big; j++)
              in[n++] = (char)('a' + (j * 7 + s) % 26);
            n += (size_t)sprintf(in + n, "\"}\n");
          } else if (s == 5) {
            unsigned char *raw = malloc(big);
            tu_fill_random(raw, big, 42);
            static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm"
                                      "nopqrstuvwxyz0123456789+/";
            n += (size_t)sprintf(
                in + n, "{\"type\":\"BigBin\",\"data\":{\"$base64\":\"");
            for (size_t j = 0; j + 3 <= big; j += 3) {
              uint32_t v = (uint32_t)raw[j] << 16 | (uint32_t)raw[j + 1] << 8 |
                           raw[j + 2];
              in[n++] = b64[v >> 18];
              in[n++] = b64[(v >> 12) & 63];
              in[n++] = b64[(v >> 6) & 63];
              in[n++] = b64[v & 63];
            }
            n += (size_t)sprintf(in + n, "\"}}\n"); /* 1 MiB - 1 byte */
            free(raw);
          } else if (s == 10) {
            n += (size_t)sprintf(in + n, "{\"type\":\"BigMeta\",\"data\":1,"
                                         "\"metadata\":{\"blob\":\"");
            for (size_t j = 0; j < big; j++)
              in[n++] = (char)('A' + j % 26);
            n += (size_t)sprintf(in + n, "\"}}\n");
          } else {
            n += (size_t)sprintf(in + n, "{\"type\":\"BigArr\",\"data\":[");
            for (size_t j = 0; j < big / 8; j++)
              n += (size_t)sprintf(in + n, "%s%zu", j ? "," : "", j % 1000000);
            n += (size_t)sprintf(in + n, "]}\n");
          }
          total++;
          continue;
        }
        switch (kind) {
        case 0:
          n += (size_t)sprintf(in + n,
                               "{\"type\":\"Deposited\",\"data\":{\"amount\":"
                               "%zu.5,\"note\":\"caf\xc3\xa9 \\\"%zu\\\"\"}}\n",
                               k, s);
          break;
        case 1:
          n += (size_t)sprintf(in + n,
                               "{\"type\":\"Withdrawn\",\"data\":{\"amount\":"
                               "0.1},\"metadata\":{\"user\":\"u%zu\"}}\n",
                               k);
          break;
        case 2:
          n += (size_t)sprintf(in + n,
                               "{\"type\":\"Noted\",\"data\":\"%zu\","
                               "\"metadata\":[%zu]}\n",
                               k, s);
          break;
        case 3:
          n += (size_t)sprintf(in + n,
                               "{\"type\":\"Raw\",\"data\":{\"$base64\":"
                               "\"AAEC%04zu\"}}\n",
                               k);
          break;
        default:
          n += (size_t)sprintf(in + n,
                               "{\"type\":\"Big-Number\",\"data\":"
                               "123456789012345678901234567890,"
                               "\"id\":\"0192f4c4-7a1b-7c3d-8e9f-%012zx\"}\n",
                               s * 1000000 + k);
        }
        total++;
      }
      char stream[32];
      snprintf(stream, sizeof stream, "acct-%zu", s);
      append_jsonl(stream, in, n);
    }
  }
  free(in);
  cr_assert_eq(total, streams * rounds * per);

  cu_result a = export_db(ct_db);
  cr_assert_eq(cu_count_lines(a.out), total);
  cr_assert_gt(a.out_len, 4 * big);

  char *b = db_path("b");
  json_t *o = import_db(b, a.out, a.out_len);
  cr_assert_eq(ct_int(o, "events"), (long long)total);
  cr_assert_eq(ct_int(o, "written"), (long long)total);
  cr_assert_eq(ct_int(o, "skipped"), 0);
  cr_assert_eq(ct_int(o, "placeholders"), 0);
  json_decref(o);

  cu_result a2 = export_db(b);
  cr_assert_eq(a2.out_len, a.out_len);
  cr_assert(memcmp(a.out, a2.out, a.out_len) == 0,
            "the export of the imported store differs");
  cu_result_free(&a2);

  /* Importing again writes nothing. */
  o = import_db(b, a.out, a.out_len);
  cr_assert_eq(ct_int(o, "written"), 0);
  cr_assert_eq(ct_int(o, "skipped"), (long long)total);
  json_decref(o);
  const char *stats[] = { "stats", NULL };
  cu_result r = run_db(b, NULL, 0, stats);
  o = ct_json(r.out);
  cr_assert_eq(ct_int(o, "events"), (long long)total);
  json_decref(o);
  cu_result_free(&r);
  const char *verify[] = { "verify", NULL };
  r = run_db(b, NULL, 0, verify);
  ct_assert_status(r, 0);
  cu_result_free(&r);

  /* The imported store reads the same data, ids and versions. */
  const char *rd[] = { "read", "acct-5", NULL };
  cu_result x = run_db(ct_db, NULL, 0, rd);
  cu_result y = run_db(b, NULL, 0, rd);
  json_t *xs = ct_lines(x.out), *ys = ct_lines(y.out);
  cr_assert_eq(json_array_size(xs), rounds * per);
  cr_assert_eq(json_array_size(ys), rounds * per);
  for (size_t i = 0; i < json_array_size(xs); i++) {
    json_t *e1 = json_array_get(xs, i), *e2 = json_array_get(ys, i);
    const char *same[] = {
      "position", "stream", "version", "id", "type", "data"
    };
    for (size_t k = 0; k < 6; k++)
      cr_assert(json_equal(json_object_get(e1, same[k]),
                           json_object_get(e2, same[k])),
                "event %zu: %s differs", i, same[k]);
  }
  json_decref(xs);
  json_decref(ys);
  cu_result_free(&x);
  cu_result_free(&y);
  cu_result_free(&a);
}

/* Two events in s-1, one in s-2; returns the export. */
static cu_result small_export(void) {
  json_decref(ct_append("s-1", "T", "{\"a\":1}"));
  cu_result r = ct_run("append", "s-1", "--type", "T", "--data", "2",
                       "--metadata", "{\"user\":\"bob\"}", NULL);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  json_decref(ct_append("s-2", "T", "3"));
  return export_db(ct_db);
}

static json_t *read_db(const char *db, const char *stream) {
  const char *rd[] = { "read", stream, NULL };
  cu_result r = run_db(db, NULL, 0, rd);
  ct_assert_status(r, 0);
  json_t *evs = ct_lines(r.out);
  cu_result_free(&r);
  return evs;
}

Test(cli_export, original_timestamps_in_the_records) {
  cu_result a = small_export();
  tu_sleep_ms(50);
  char *b = db_path("b");
  json_decref(import_db(b, a.out, a.out_len));
  /* Byte for byte: the imported events have their original times. */
  cu_result a2 = export_db(b);
  cr_assert_str_eq(a.out, a2.out);
  json_t *x = read_db(ct_db, "s-1"), *y = read_db(b, "s-1");
  cr_assert(json_equal(x, y));
  json_decref(x);
  json_decref(y);
  /* Time travel in the imported store uses the original times. */
  json_t *orig = ct_lines(a.out);
  const char *t1 = ct_str(json_array_get(orig, 0), "timestamp");
  const char *rd[] = { "read", "s-1", "--as-of", t1, NULL };
  cu_result r = run_db(b, NULL, 0, rd);
  ct_assert_status(r, 0);
  cr_assert_eq(cu_count_lines(r.out), 1);
  cu_result_free(&r);
  /* Appending after the import continues with the current time. */
  const char *app[] = { "append", "s-1", "--type", "T", "--data", "4", NULL };
  r = run_db(b, NULL, 0, app);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  /* Importing an older export into a store with newer events fails
   * (the original times cannot be kept)... */
  const char *one = "{\"stream\":\"old-1\",\"version\":0,\"type\":\"T\","
                    "\"data\":1,\"timestamp\":\"2001-01-01T00:00:00Z\"}\n";
  const char *imp[] = { "import", NULL };
  r = run_db(b, one, strlen(one), imp);
  ct_assert_status(r, 1);
  cr_assert_not_null(strstr(r.err, "--timestamps metadata"), "%s", r.err);
  cr_assert_not_null(strstr(r.err, "<stdin>:1"), "%s", r.err);
  cu_result_free(&r);
  /* ...unless the times go to the metadata or are dropped. */
  const char *imp_md[] = { "import", "--timestamps", "metadata", NULL };
  r = run_db(b, one, strlen(one), imp_md);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  const char *imp_now[] = { "import", "-", "--timestamps=now", NULL };
  const char *two = "{\"stream\":\"old-2\",\"version\":0,\"type\":\"T\","
                    "\"data\":1,\"timestamp\":\"2001-01-01T00:00:00Z\"}\n";
  r = run_db(b, two, strlen(two), imp_now);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  json_t *evs = read_db(b, "old-2");
  cr_assert(json_is_null(json_object_get(json_array_get(evs, 0), "metadata")));
  cr_assert_str_neq(ct_str(json_array_get(evs, 0), "timestamp"),
                    "2001-01-01T00:00:00.000000000Z");
  json_decref(evs);
  const char *bad[] = { "import", "--timestamps", "later", NULL };
  r = run_db(b, NULL, 0, bad);
  ct_assert_status(r, 2);
  cu_result_free(&r);
  json_decref(orig);
  cu_result_free(&a);
  cu_result_free(&a2);
}

Test(cli_export, original_timestamps_in_the_metadata) {
  cu_result a = small_export();
  tu_sleep_ms(50);
  char *b = db_path("b");
  const char *imp[] = { "import", "--timestamps", "metadata", NULL };
  cu_result r = run_db(b, a.out, a.out_len, imp);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  cu_result a2 = export_db(b);
  cr_assert_str_eq(a.out, a2.out);
  /* In the imported store the original time is in the metadata. */
  json_t *evs = read_db(b, "s-1");
  json_t *orig = ct_lines(a.out);
  for (size_t i = 0; i < 2; i++) {
    json_t *md = json_object_get(json_array_get(evs, i), "metadata");
    const char *ts = ct_str(json_array_get(orig, i), "timestamp");
    cr_assert_str_eq(ct_str(md, "$original_timestamp"), ts);
    cr_assert_str_neq(ct_str(json_array_get(evs, i), "timestamp"), ts);
  }
  cr_assert_str_eq(
      ct_str(json_object_get(json_array_get(evs, 1), "metadata"), "user"),
      "bob");
  json_decref(evs);
  json_decref(orig);
  /* A chain of imports keeps the first time, in either mode. */
  char *c = db_path("c");
  json_decref(import_db(c, a2.out, a2.out_len));
  cu_result a3 = export_db(c);
  cr_assert_str_eq(a.out, a3.out);
  char *d = db_path("d");
  r = run_db(d, a2.out, a2.out_len, imp);
  ct_assert_status(r, 0);
  cu_result_free(&r);
  cu_result a4 = export_db(d);
  cr_assert_str_eq(a.out, a4.out);
  cu_result_free(&a);
  cu_result_free(&a2);
  cu_result_free(&a3);
  cu_result_free(&a4);
}

Test(cli_export, deleted_tombstoned_and_metadata) {
  /* keep-1: plain. gone-1: soft-deleted at version 1. re-1: deleted and
   * recreated (visible from version 2). tomb-1: tombstoned. cap-1: max
   * count 2 of 4 events. meta-1: metadata only, no events. */
  json_decref(ct_append("keep-1", "T", "1"));
  json_decref(ct_append("gone-1", "T", "1"));
  json_decref(ct_append("gone-1", "T", "2"));
  json_decref(ct_obj(ct_run("delete", "gone-1", NULL)));
  json_decref(ct_append("re-1", "T", "1"));
  json_decref(ct_append("re-1", "T", "2"));
  json_decref(ct_obj(ct_run("delete", "re-1", NULL)));
  json_decref(ct_append("re-1", "T", "{\"again\":true}"));
  json_decref(ct_append("tomb-1", "T", "1"));
  json_decref(ct_obj(ct_run("delete", "tomb-1", "--hard", NULL)));
  for (int i = 0; i < 4; i++)
    json_decref(ct_append("cap-1", "T", "1"));
  json_decref(ct_obj(ct_run("metadata", "cap-1", "--max-count", "2", "--custom",
                            "{\"owner\":\"ann\"}", NULL)));
  json_decref(ct_obj(ct_run("metadata", "meta-1", "--max-age", "86400", NULL)));
  json_decref(ct_append("keep-1", "T", "2"));

  cu_result a = export_db(ct_db);
  char *b = db_path("b");
  json_t *o = import_db(b, a.out, a.out_len);
  cr_assert_gt(ct_int(o, "placeholders"), 0);
  cr_assert_eq(ct_int(o, "states"), 4);
  json_decref(o);
  cu_result a2 = export_db(b);
  char *p1 = without_positions(a.out), *p2 = without_positions(a2.out);
  cr_assert_str_eq(p1, p2);
  free(p1);
  free(p2);

  const char *info_gone[] = { "info", "gone-1", NULL };
  cu_result r = run_db(b, NULL, 0, info_gone);
  o = ct_json(r.out);
  cr_assert(json_is_true(json_object_get(o, "deleted")));
  cr_assert_eq(ct_int(o, "version"), 1);
  json_decref(o);
  cu_result_free(&r);
  const char *info_tomb[] = { "info", "tomb-1", NULL };
  r = run_db(b, NULL, 0, info_tomb);
  o = ct_json(r.out);
  cr_assert(json_is_true(json_object_get(o, "tombstoned")));
  json_decref(o);
  cu_result_free(&r);
  const char *read_re[] = { "read", "re-1", NULL };
  r = run_db(b, NULL, 0, read_re);
  ct_assert_status(r, 0);
  json_t *evs = ct_lines(r.out);
  cr_assert_eq(json_array_size(evs), 1);
  cr_assert_eq(ct_int(json_array_get(evs, 0), "version"), 2);
  json_decref(evs);
  cu_result_free(&r);
  const char *read_cap[] = { "read", "cap-1", NULL };
  r = run_db(b, NULL, 0, read_cap);
  evs = ct_lines(r.out);
  cr_assert_eq(json_array_size(evs), 2);
  cr_assert_eq(ct_int(json_array_get(evs, 0), "version"), 2);
  json_decref(evs);
  cu_result_free(&r);
  const char *md_meta[] = { "metadata", "meta-1", NULL };
  r = run_db(b, NULL, 0, md_meta);
  o = ct_json(r.out);
  cr_assert_eq(ct_int(o, "max_age"), 86400);
  json_decref(o);
  cu_result_free(&r);
  /* The new life of re-1 continues at version 3 as in the source. */
  const char *app[] = {
    "append", "re-1", "--type", "T", "--data", "3", "--expected-version",
    "2",      NULL
  };
  r = run_db(b, NULL, 0, app);
  ct_assert_status(r, 0);
  cu_result_free(&r);

  /* Idempotent, states included. */
  o = import_db(b, a.out, a.out_len);
  cr_assert_eq(ct_int(o, "written"), 0);
  cr_assert_eq(ct_int(o, "placeholders"), 0);
  json_decref(o);
  cu_result_free(&a);
  cu_result_free(&a2);
}

Test(cli_export, partial_exports_chain) {
  for (int i = 0; i < 6; i++)
    json_decref(ct_append(i % 2 ? "a-1" : "b-1", "T", "1"));
  cu_result all = export_db(ct_db);
  const char *first[] = { "export", "--until", "3", NULL };
  const char *rest[] = { "export", "--from", "4", NULL };
  cu_result r1 = run_db(ct_db, NULL, 0, first);
  cu_result r2 = run_db(ct_db, NULL, 0, rest);
  ct_assert_status(r1, 0);
  ct_assert_status(r2, 0);
  cr_assert_eq(cu_count_lines(r1.out), 3);
  cr_assert_eq(cu_count_lines(r2.out), 3);
  char *c = db_path("c");
  json_decref(import_db(c, r1.out, r1.out_len));
  json_decref(import_db(c, r2.out, r2.out_len));
  cu_result again = export_db(c);
  cr_assert_str_eq(all.out, again.out);
  /* Importing the whole file on top of the two halves writes nothing. */
  json_t *o = import_db(c, all.out, all.out_len);
  cr_assert_eq(ct_int(o, "written"), 0);
  json_decref(o);
  /* A later part imported alone gets placeholders for what is missing. */
  char *d = db_path("d");
  o = import_db(d, r2.out, r2.out_len);
  cr_assert_gt(ct_int(o, "placeholders"), 0);
  json_decref(o);
  cu_result part = export_db(d);
  char *p1 = without_positions(r2.out), *p2 = without_positions(part.out);
  cr_assert_str_eq(p1, p2);
  free(p1);
  free(p2);
  cu_result_free(&part);
  cu_result_free(&all);
  cu_result_free(&r1);
  cu_result_free(&r2);
  cu_result_free(&again);
}

Test(cli_export, import_errors) {
  const char *bad[] = {
    "{\"stream\":\"s-1\",\"version\":0,\"type\":\"T\",\"data\":1}\nnope\n",
    "{\"stream\":\"s-1\",\"type\":\"T\",\"data\":1}\n",
    "{\"version\":0,\"type\":\"T\",\"data\":1}\n",
    "{\"stream\":\"s-1\",\"version\":0,\"type\":\"T\"}\n",
    ("{\"stream\":\"s-1\",\"version\":0,\"type\":\"T\",\"data\":1,"
     "\"timestamp\":\"yesterday\"}\n"),
    "{\"stream\":\"s-1\",\"state\":\"gone\",\"version\":0}\n",
    "{\"stream\":\"$all\",\"version\":0,\"type\":\"T\",\"data\":1}\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cu_result r = ct_run_in(bad[i], strlen(bad[i]), "import", NULL);
    cr_assert_eq(r.status, 2, "case %zu: %d %s", i, r.status, r.err);
    cu_result_free(&r);
  }
  cu_result r = ct_run_in(bad[0], strlen(bad[0]), "import", "-", NULL);
  cr_assert_not_null(strstr(r.err, "<stdin>:2"), "%s", r.err);
  cu_result_free(&r);
  r = ct_run("import", "/nonexistent.jsonl", NULL);
  ct_assert_status(r, 2);
  cu_result_free(&r);
  r = ct_run("import", "a", "b", NULL);
  ct_assert_status(r, 2);
  cu_result_free(&r);

  /* The target already has a different s-1: wrong expected version. */
  json_decref(ct_append("s-1", "T", "1"));
  json_decref(ct_append("s-1", "T", "2"));
  const char *other = "{\"stream\":\"s-1\",\"version\":0,\"type\":\"T\","
                      "\"data\":1}\n";
  r = ct_run_in(other, strlen(other), "import", NULL);
  ct_assert_status(r, 3);
  cr_assert_not_null(strstr(r.err, "actual 1"), "%s", r.err);
  cu_result_free(&r);
  /* An id stored elsewhere. */
  cu_result ids = ct_run("read", "s-1", NULL);
  json_t *evs = ct_lines(ids.out);
  char line[256];
  snprintf(line, sizeof line,
           "{\"stream\":\"t-1\",\"version\":0,\"type\":\"T\",\"data\":1,"
           "\"id\":\"%s\"}\n",
           ct_str(json_array_get(evs, 0), "id"));
  json_decref(evs);
  cu_result_free(&ids);
  r = ct_run_in(line, strlen(line), "import", NULL);
  ct_assert_status(r, 1);
  cr_assert_not_null(strstr(r.err, "already used"), "%s", r.err);
  cu_result_free(&r);
  /* Into a tombstoned stream. */
  json_decref(ct_obj(ct_run("delete", "u-1", "--hard", NULL)));
  const char *tomb = "{\"stream\":\"u-1\",\"version\":0,\"type\":\"T\","
                     "\"data\":1}\n";
  r = ct_run_in(tomb, strlen(tomb), "import", NULL);
  ct_assert_status(r, 4);
  cu_result_free(&r);
}

/* Writes `text` to `name` in the test directory; returns its path. */
static const char *write_input(const char *name, const char *text) {
  const char *path = db_path(name);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

/* Asserts that stderr names `where` in the error and in the summary, and
 * gives no advice about options import does not have. */
static void assert_stopped_at(const cu_result *r, const char *where) {
  char want[4400];
  snprintf(want, sizeof want, "import: %s: ", where);
  cr_assert_not_null(strstr(r->err, want), "no '%s' in:\n%s", want, r->err);
  snprintf(want, sizeof want, "stopped at %s,", where);
  cr_assert_not_null(strstr(r->err, want), "no '%s' in:\n%s", want, r->err);
  cr_assert_null(strstr(r->err, "--expected-version"), "%s", r->err);
  cr_assert_null(strstr(r->err, "--id"), "%s", r->err);
}

/* Errors name the input line of the event that failed, FILE:FIRST-LAST for
 * a group refused as a whole, and the summary names the same place. */
Test(cli_export, import_errors_name_the_failing_lines) {
  json_decref(ct_append("order-1", "T", "1"));
  json_decref(ct_append("order-1", "T", "2"));
  /* order-1 exists with other events: its lines 2-3 cannot land at their
   * versions; the failure is found when line 5 (another stream) ends the
   * group. */
  const char *text =
      "\n"
      "{\"stream\":\"order-1\",\"version\":0,\"type\":\"T\",\"data\":1}\n"
      "{\"stream\":\"order-1\",\"version\":1,\"type\":\"T\",\"data\":2}\n"
      "\n"
      "{\"stream\":\"order-2\",\"version\":0,\"type\":\"T\",\"data\":3}\n";
  const char *file = write_input("exists.jsonl", text);
  cu_result r = ct_run("import", file, "--timestamps", "now", NULL);
  ct_assert_status(r, 3);
  char where[4300];
  snprintf(where, sizeof where, "%s:2", file);
  assert_stopped_at(&r, where);
  cr_assert_not_null(strstr(r.err, "expected no-stream, actual 1"), "%s",
                     r.err);
  cu_result_free(&r);
  r = ct_run_in(text, strlen(text), "import", "-", "--timestamps", "now", NULL);
  ct_assert_status(r, 3);
  assert_stopped_at(&r, "<stdin>:2");
  cu_result_free(&r);

  /* A time older than the store's newest event: the line of that event. */
  const char *old = "\n{\"stream\":\"old-1\",\"version\":0,\"type\":\"T\","
                    "\"data\":1,\"timestamp\":\"2001-01-01T00:00:00Z\"}\n"
                    "{\"stream\":\"old-2\",\"version\":0,\"type\":\"T\","
                    "\"data\":1,\"timestamp\":\"2001-01-01T00:00:01Z\"}\n";
  file = write_input("old.jsonl", old);
  r = ct_run("import", file, NULL);
  ct_assert_status(r, 1);
  snprintf(where, sizeof where, "%s:2", file);
  assert_stopped_at(&r, where);
  cu_result_free(&r);

  /* A group refused as a whole (an id twice in one append): its lines. */
  const char *dup =
      "{\"stream\":\"b-1\",\"version\":0,\"type\":\"T\",\"data\":1}\n"
      "{\"stream\":\"a-1\",\"version\":0,\"type\":\"T\",\"data\":1,"
      "\"id\":\"0192f4c4-7a1b-7c3d-8e9f-0000000000a1\"}\n"
      "\n"
      "{\"stream\":\"a-1\",\"version\":1,\"type\":\"T\",\"data\":2,"
      "\"id\":\"0192f4c4-7a1b-7c3d-8e9f-0000000000a1\"}\n";
  r = ct_run_in(dup, strlen(dup), "import", "--timestamps", "now", NULL);
  ct_assert_status(r, 2);
  assert_stopped_at(&r, "<stdin>:2-4");
  cr_assert_not_null(strstr(r.err, "after 1 events written"), "%s", r.err);
  cu_result_free(&r);

  /* A bad name: the line that has it. */
  const char *bad = "\n\n{\"stream\":\"c-1\",\"version\":0,\"type\":\"\","
                    "\"data\":1}\n";
  r = ct_run_in(bad, strlen(bad), "import", NULL);
  ct_assert_status(r, 2);
  assert_stopped_at(&r, "<stdin>:3");
  cr_assert_not_null(strstr(r.err, "type name is empty"), "%s", r.err);
  cu_result_free(&r);

  /* A state line that ends a stream below this store's version. */
  const char *state = "{\"stream\":\"order-1\",\"state\":\"deleted\","
                      "\"version\":0,\"metadata\":{\"max_count\":null,"
                      "\"max_age\":null,\"truncate_before\":null,"
                      "\"custom\":null}}\n";
  r = ct_run_in(state, strlen(state), "import", NULL);
  ct_assert_status(r, 3);
  assert_stopped_at(&r, "<stdin>:1");
  cu_result_free(&r);
}

Test(cli_export, export_options) {
  cu_result r = ct_run("export", NULL);
  ct_assert_status(r, 1); /* no store */
  cu_result_free(&r);
  json_decref(ct_append("s-1", "T", "1"));
  r = ct_run("export", "--from", "x", NULL);
  ct_assert_status(r, 2);
  cu_result_free(&r);
  r = ct_run("export", "out.jsonl", NULL);
  ct_assert_status(r, 2);
  cu_result_free(&r);
  r = ct_run("export", "--from", "2", NULL);
  ct_assert_status(r, 0);
  cr_assert_eq(r.out_len, 0);
  cu_result_free(&r);
  /* Export is JSON even with --table. */
  r = ct_run("export", "--table", NULL);
  ct_assert_status(r, 0);
  json_decref(ct_json(r.out));
  cu_result_free(&r);
}
