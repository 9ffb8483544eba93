/*
 * evstore-cli — strict JSON scanner (see json.h).
 */
#include "json.h"

#include <stdlib.h>
#include <string.h>

typedef struct scan {
  const unsigned char *p, *end, *base;
  unsigned depth, max_depth;
  int has_space, has_newline;
  const char *err;
} scan;

static int fail(scan *s, const char *msg) {
  if (s->err == NULL)
    s->err = msg;
  return -1;
}

static void skip_ws(scan *s) {
  while (s->p < s->end) {
    unsigned char c = *s->p;
    if (c == ' ' || c == '\t') {
      s->has_space = 1;
    } else if (c == '\n' || c == '\r') {
      s->has_space = 1;
      s->has_newline = 1;
    } else {
      return;
    }
    s->p++;
  }
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Reads 4 hex digits at p (p + 4 <= end checked by the caller). */
static long hex4(const unsigned char *p) {
  long v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(p[i]);
    if (h < 0)
      return -1;
    v = v * 16 + h;
  }
  return v;
}

/* Length of a valid UTF-8 sequence at p (lead byte >= 0x80), or 0. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end) {
  unsigned char c = p[0];
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0)
      lo = 0xA0;
    else if (c == 0xED)
      hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0)
      lo = 0x90;
    else if (c == 0xF4)
      hi = 0x8F;
  } else {
    return 0;
  }
  if ((size_t)(end - p) < n)
    return 0;
  if (p[1] < lo || p[1] > hi)
    return 0;
  for (size_t i = 2; i < n; i++)
    if (p[i] < 0x80 || p[i] > 0xBF)
      return 0;
  return n;
}

static int scan_string(scan *s) {
  s->p++; /* opening quote */
  while (s->p < s->end) {
    unsigned char c = *s->p;
    if (c == '"') {
      s->p++;
      return 0;
    }
    if (c < 0x20)
      return fail(s, "control character in a string (escape it)");
    if (c == '\\') {
      if (s->end - s->p < 2)
        break;
      unsigned char e = s->p[1];
      if (e == 'u') {
        if (s->end - s->p < 6)
          return fail(s, "truncated \\u escape");
        long u = hex4(s->p + 2);
        if (u < 0)
          return fail(s, "bad \\u escape");
        s->p += 6;
        if (u >= 0xDC00 && u <= 0xDFFF)
          return fail(s, "lone low surrogate in a \\u escape");
        if (u >= 0xD800 && u <= 0xDBFF) {
          if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u')
            return fail(s, "lone high surrogate in a \\u escape");
          long u2 = hex4(s->p + 2);
          if (u2 < 0xDC00 || u2 > 0xDFFF)
            return fail(s, "lone high surrogate in a \\u escape");
          s->p += 6;
        }
        continue;
      }
      if (!strchr("\"\\/bfnrt", e) || e == '\0')
        return fail(s, "bad escape in a string");
      s->p += 2;
      continue;
    }
    if (c >= 0x80) {
      size_t n = utf8_seq(s->p, s->end);
      if (n == 0)
        return fail(s, "invalid UTF-8 in a string");
      s->p += n;
      continue;
    }
    s->p++;
  }
  return fail(s, "unterminated string");
}

static int is_digit(const scan *s) {
  return s->p < s->end && *s->p >= '0' && *s->p <= '9';
}

static int scan_number(scan *s) {
  if (*s->p == '-')
    s->p++;
  if (!is_digit(s))
    return fail(s, "expected a digit");
  if (*s->p == '0') {
    s->p++;
    if (is_digit(s))
      return fail(s, "numbers may not have leading zeros");
  } else {
    while (is_digit(s))
      s->p++;
  }
  if (s->p < s->end && *s->p == '.') {
    s->p++;
    if (!is_digit(s))
      return fail(s, "expected a digit after the decimal point");
    while (is_digit(s))
      s->p++;
  }
  if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
    s->p++;
    if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
      s->p++;
    if (!is_digit(s))
      return fail(s, "expected a digit in the exponent");
    while (is_digit(s))
      s->p++;
  }
  return 0;
}

static int scan_literal(scan *s, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
    return fail(s, "unexpected word (expected true, false or null)");
  s->p += n;
  return 0;
}

static int scan_value(scan *s, cli_json_kind *kind);

static int scan_object(scan *s) {
  s->p++; /* '{' */
  skip_ws(s);
  if (s->p < s->end && *s->p == '}') {
    s->p++;
    return 0;
  }
  for (;;) {
    if (s->p >= s->end || *s->p != '"')
      return fail(s, "expected a member name (a string)");
    if (scan_string(s))
      return -1;
    skip_ws(s);
    if (s->p >= s->end || *s->p != ':')
      return fail(s, "expected ':' after a member name");
    s->p++;
    skip_ws(s);
    cli_json_kind k;
    if (scan_value(s, &k))
      return -1;
    skip_ws(s);
    if (s->p < s->end && *s->p == ',') {
      s->p++;
      skip_ws(s);
      continue;
    }
    if (s->p < s->end && *s->p == '}') {
      s->p++;
      return 0;
    }
    return fail(s, "expected ',' or '}' in an object");
  }
}

static int scan_array(scan *s) {
  s->p++; /* '[' */
  skip_ws(s);
  if (s->p < s->end && *s->p == ']') {
    s->p++;
    return 0;
  }
  for (;;) {
    cli_json_kind k;
    if (scan_value(s, &k))
      return -1;
    skip_ws(s);
    if (s->p < s->end && *s->p == ',') {
      s->p++;
      skip_ws(s);
      continue;
    }
    if (s->p < s->end && *s->p == ']') {
      s->p++;
      return 0;
    }
    return fail(s, "expected ',' or ']' in an array");
  }
}

static int scan_value(scan *s, cli_json_kind *kind) {
  if (s->p >= s->end)
    return fail(s, "unexpected end of input");
  int rc;
  switch (*s->p) {
  case '{':
  case '[':
    if (++s->depth > s->max_depth)
      return fail(s, "nested too deeply");
    if (*s->p == '{') {
      *kind = CLI_JSON_OBJECT;
      rc = scan_object(s);
    } else {
      *kind = CLI_JSON_ARRAY;
      rc = scan_array(s);
    }
    s->depth--;
    return rc;
  case '"':
    *kind = CLI_JSON_STRING;
    return scan_string(s);
  case 't':
    *kind = CLI_JSON_TRUE;
    return scan_literal(s, "true");
  case 'f':
    *kind = CLI_JSON_FALSE;
    return scan_literal(s, "false");
  case 'n':
    *kind = CLI_JSON_NULL;
    return scan_literal(s, "null");
  default:
    if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) {
      *kind = CLI_JSON_NUMBER;
      return scan_number(s);
    }
    return fail(s, "unexpected character");
  }
}

int cli_json_check(cli_json_info *info, const void *buf, size_t len,
                   const char **err) {
  return cli_json_check_depth(info, buf, len, CLI_JSON_MAX_DEPTH, err);
}

int cli_json_check_depth(cli_json_info *info, const void *buf, size_t len,
                         unsigned max_depth, const char **err) {
  scan s = { buf, (const unsigned char *)buf + len, buf, 0, max_depth, 0, 0,
             NULL };
  cli_json_info dummy;
  if (info == NULL)
    info = &dummy;
  memset(info, 0, sizeof *info);
  if (buf == NULL && len) {
    s.err = "no input";
    goto failed;
  }
  skip_ws(&s);
  if (s.p >= s.end) {
    s.err = "empty (no JSON value)";
    goto failed;
  }
  info->start = (size_t)(s.p - s.base);
  cli_json_kind kind;
  if (scan_value(&s, &kind))
    goto failed;
  info->end = (size_t)(s.p - s.base);
  skip_ws(&s);
  if (s.p != s.end) {
    s.err = "unexpected characters after the JSON value";
    goto failed;
  }
  info->kind = kind;
  info->has_space = s.has_space;
  info->has_newline = s.has_newline;
  if (err)
    *err = NULL;
  return 0;
failed:
  info->kind = CLI_JSON_INVALID;
  info->error_offset = (size_t)(s.p - s.base);
  if (err)
    *err = s.err ? s.err : "invalid JSON";
  return -1;
}

size_t cli_json_compact(char *out, const void *buf, size_t len) {
  const char *in = buf;
  size_t o = 0;
  int in_string = 0;
  for (size_t i = 0; i < len; i++) {
    char c = in[i];
    if (in_string) {
      out[o++] = c;
      if (c == '\\' && i + 1 < len) {
        out[o++] = in[++i];
      } else if (c == '"') {
        in_string = 0;
      }
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      continue;
    } else {
      out[o++] = c;
      if (c == '"')
        in_string = 1;
    }
  }
  return o;
}

int cli_json_members_init(cli_json_members *it, const char *obj, size_t len) {
  memset(it, 0, sizeof *it);
  if (obj == NULL || len < 2 || obj[0] != '{')
    return -1;
  it->p = obj + 1;
  it->end = obj + len;
  return 0;
}

int cli_json_members_next(cli_json_members *it, cli_json_span *key,
                          cli_json_span *value) {
  if (it->done || it->p == NULL)
    return 0;
  scan s = { (const unsigned char *)it->p,
             (const unsigned char *)it->end,
             (const unsigned char *)it->p,
             1,
             CLI_JSON_MAX_DEPTH,
             0,
             0,
             NULL };
  skip_ws(&s);
  if (it->started) {
    if (s.p >= s.end || *s.p != ',') {
      it->done = 1;
      return 0;
    }
    s.p++;
    skip_ws(&s);
  }
  it->started = 1;
  if (s.p >= s.end || *s.p != '"') {
    it->done = 1;
    return 0;
  }
  const unsigned char *k = s.p;
  if (scan_string(&s)) {
    it->done = 1;
    return 0;
  }
  key->p = (const char *)k;
  key->len = (size_t)(s.p - k);
  skip_ws(&s);
  if (s.p >= s.end || *s.p != ':') {
    it->done = 1;
    return 0;
  }
  s.p++;
  skip_ws(&s);
  const unsigned char *v = s.p;
  cli_json_kind kind;
  if (scan_value(&s, &kind)) {
    it->done = 1;
    return 0;
  }
  value->p = (const char *)v;
  value->len = (size_t)(s.p - v);
  it->p = (const char *)s.p;
  return 1;
}

cli_json_kind cli_json_span_kind(cli_json_span v) {
  if (v.p == NULL || v.len == 0)
    return CLI_JSON_INVALID;
  switch (v.p[0]) {
  case '{':
    return CLI_JSON_OBJECT;
  case '[':
    return CLI_JSON_ARRAY;
  case '"':
    return CLI_JSON_STRING;
  case 't':
    return CLI_JSON_TRUE;
  case 'f':
    return CLI_JSON_FALSE;
  case 'n':
    return CLI_JSON_NULL;
  default:
    return CLI_JSON_NUMBER;
  }
}

static size_t put_utf8(char *o, unsigned long cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

int cli_json_string(char **out, size_t *out_len, cli_json_span lit) {
  *out = NULL;
  if (lit.p == NULL || lit.len < 2 || lit.p[0] != '"' ||
      lit.p[lit.len - 1] != '"')
    return -1;
  /* A decoded string is never longer than its literal. */
  char *o = malloc(lit.len);
  if (o == NULL)
    return -1;
  const unsigned char *p = (const unsigned char *)lit.p + 1;
  const unsigned char *end = (const unsigned char *)lit.p + lit.len - 1;
  size_t n = 0;
  while (p < end) {
    if (*p != '\\') {
      o[n++] = (char)*p++;
      continue;
    }
    if (end - p < 2)
      goto bad;
    unsigned char e = p[1];
    p += 2;
    switch (e) {
    case '"':
    case '\\':
    case '/':
      o[n++] = (char)e;
      break;
    case 'b':
      o[n++] = '\b';
      break;
    case 'f':
      o[n++] = '\f';
      break;
    case 'n':
      o[n++] = '\n';
      break;
    case 'r':
      o[n++] = '\r';
      break;
    case 't':
      o[n++] = '\t';
      break;
    case 'u': {
      if (end - p < 4)
        goto bad;
      long u = hex4(p);
      if (u < 0)
        goto bad;
      p += 4;
      unsigned long cp = (unsigned long)u;
      if (u >= 0xD800 && u <= 0xDBFF) {
        long u2;
        if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
            (u2 = hex4(p + 2)) < 0xDC00 || u2 > 0xDFFF)
          goto bad;
        p += 6;
        cp = 0x10000 + (((unsigned long)u - 0xD800) << 10) +
             ((unsigned long)u2 - 0xDC00);
      } else if (u >= 0xDC00 && u <= 0xDFFF) {
        goto bad;
      }
      n += put_utf8(o + n, cp);
      break;
    }
    default:
      goto bad;
    }
  }
  o[n] = '\0';
  *out = o;
  if (out_len)
    *out_len = n;
  return 0;
bad:
  free(o);
  return -1;
}

int cli_json_key_is(cli_json_span lit, const char *name) {
  size_t n = strlen(name);
  if (lit.len < 2)
    return 0;
  if (memchr(lit.p, '\\', lit.len) == NULL)
    return lit.len == n + 2 && memcmp(lit.p + 1, name, n) == 0;
  char *s;
  size_t len;
  if (cli_json_string(&s, &len, lit))
    return 0;
  int eq = len == n && memcmp(s, name, n) == 0;
  free(s);
  return eq;
}

int cli_json_int64(int64_t *out, cli_json_span v) {
  if (v.p == NULL || v.len == 0 || v.len > 20)
    return -1;
  size_t i = 0;
  int neg = 0;
  if (v.p[0] == '-') {
    neg = 1;
    i = 1;
  }
  if (i >= v.len)
    return -1;
  uint64_t mag = 0;
  for (; i < v.len; i++) {
    char c = v.p[i];
    if (c < '0' || c > '9')
      return -1;
    unsigned d = (unsigned)(c - '0');
    if (mag > (UINT64_MAX - d) / 10)
      return -1;
    mag = mag * 10 + d;
  }
  if (neg) {
    if (mag > (uint64_t)INT64_MAX + 1)
      return -1;
    *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
  } else {
    if (mag > (uint64_t)INT64_MAX)
      return -1;
    *out = (int64_t)mag;
  }
  return 0;
}

int cli_json_is_base64_object(const void *buf, size_t len) {
  cli_json_info info;
  if (cli_json_check(&info, buf, len, NULL) || info.kind != CLI_JSON_OBJECT)
    return 0;
  cli_json_members it;
  cli_json_span k, v;
  cli_json_members_init(&it, (const char *)buf + info.start,
                        info.end - info.start);
  if (!cli_json_members_next(&it, &k, &v) || !cli_json_key_is(k, "$base64"))
    return 0;
  return !cli_json_members_next(&it, &k, &v);
}
