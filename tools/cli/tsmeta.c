/*
 * evstore-cli — original timestamps in metadata (see tsmeta.h).
 */
#include "tsmeta.h"

#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "json.h"
#include "timeparse.h"

#define TS_LEN 30 /* "2026-11-27T10:00:00.123456789Z" */

static const char prefix[] = "{\"" CLI_TSMETA_KEY "\":\"";     /* + T */
static const char md_part[] = "\",\"" CLI_TSMETA_MD_KEY "\":"; /* + V } */
static const char suffix[] = ",\"" CLI_TSMETA_KEY "\":\"";     /* + T "} */

/* 1 when the valid object obj[0..len) has a member named `name`. */
static int has_member(const char *obj, size_t len, const char *name) {
  cli_json_members it;
  cli_json_span k, v;
  if (cli_json_members_init(&it, obj, len))
    return 0;
  while (cli_json_members_next(&it, &k, &v))
    if (cli_json_key_is(k, name))
      return 1;
  return 0;
}

void cli_tsmeta_wrap(cli_buf *out, const void *md, size_t md_len,
                     int64_t ts_ns) {
  char ts[CLI_TIME_BUFSZ];
  cli_time_format(ts, ts_ns);
  if (md_len == 0) {
    cli_buf_printf(out, "%s%s\"}", prefix, ts);
    return;
  }
  cli_json_info info;
  int valid = cli_json_check(&info, md, md_len, NULL) == 0 &&
              info.start == 0 && info.end == md_len;
  if (valid && info.kind == CLI_JSON_OBJECT &&
      !has_member(md, md_len, CLI_TSMETA_KEY) &&
      !has_member(md, md_len, CLI_TSMETA_MD_KEY)) {
    cli_json_members it;
    cli_json_span k, v;
    cli_json_members_init(&it, md, md_len);
    if (cli_json_members_next(&it, &k, &v)) { /* not {} */
      cli_buf_put(out, md, md_len - 1);
      cli_buf_printf(out, "%s%s\"}", suffix, ts);
      return;
    }
  }
  cli_buf_printf(out, "%s%s%s", prefix, ts, md_part);
  if (valid && !cli_json_is_base64_object(md, md_len))
    cli_buf_put(out, md, md_len);
  else
    cli_buf_json_base64(out, md, md_len);
  cli_buf_putc(out, '}');
}

static int parse_ts(int64_t *ts_ns, const char *p) {
  return cli_time_parse(ts_ns, p, TS_LEN, NULL);
}

int cli_tsmeta_unwrap(int64_t *ts_ns, const void **orig, size_t *orig_len,
                      cli_buf *scratch, const void *md_, size_t md_len) {
  const char *md = md_;
  const size_t plen = sizeof prefix - 1, slen = sizeof suffix - 1;
  const size_t mlen = sizeof md_part - 1;
  scratch->len = 0;
  if (md_len < plen + TS_LEN + 2 || md[0] != '{' || md[md_len - 1] != '}')
    return 0;
  cli_json_info info;
  if (cli_json_check(&info, md, md_len, NULL) || info.kind != CLI_JSON_OBJECT)
    return 0;
  int64_t ts;
  if (memcmp(md, prefix, plen) == 0) {
    const char *t = md + plen;
    if (parse_ts(&ts, t))
      return 0;
    const char *rest = t + TS_LEN;
    size_t rest_len = md_len - plen - TS_LEN;
    if (rest_len == 2 && memcmp(rest, "\"}", 2) == 0) {
      *ts_ns = ts;
      *orig = md;
      *orig_len = 0;
      return 1;
    }
    if (rest_len > mlen + 1 && memcmp(rest, md_part, mlen) == 0) {
      const char *v = rest + mlen;
      size_t vlen = rest_len - mlen - 1;
      cli_json_info vi;
      if (cli_json_check(&vi, v, vlen, NULL) || vi.start || vi.end != vlen)
        return 0;
      if (cli_json_is_base64_object(v, vlen)) {
        cli_json_members it;
        cli_json_span k, b64;
        char *text;
        size_t text_len, n;
        cli_json_members_init(&it, v, vlen);
        if (!cli_json_members_next(&it, &k, &b64) ||
            cli_json_string(&text, &text_len, b64))
          return 0;
        cli_buf_reserve(scratch, text_len);
        int bad = cli_base64_decode(scratch->data, &n, text, text_len);
        free(text);
        if (bad)
          return 0;
        scratch->len = n;
        *orig = scratch->data;
        *orig_len = n;
      } else {
        *orig = v;
        *orig_len = vlen;
      }
      *ts_ns = ts;
      return 1;
    }
    return 0;
  }
  /* The extended form: ...,"$original_timestamp":"T"} */
  if (md_len < slen + TS_LEN + 2 + 2)
    return 0;
  const char *s = md + md_len - 2 - TS_LEN - slen;
  if (memcmp(s, suffix, slen) != 0 || memcmp(md + md_len - 2, "\"}", 2) != 0 ||
      parse_ts(&ts, s + slen))
    return 0;
  cli_buf_put(scratch, md, (size_t)(s - md));
  cli_buf_putc(scratch, '}');
  if (cli_json_check(&info, scratch->data, scratch->len, NULL) ||
      info.kind != CLI_JSON_OBJECT ||
      has_member(scratch->data, scratch->len, CLI_TSMETA_KEY)) {
    scratch->len = 0;
    return 0;
  }
  *ts_ns = ts;
  *orig = scratch->data;
  *orig_len = scratch->len;
  return 1;
}
