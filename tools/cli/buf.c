/*
 * evstore-cli — growable buffer and JSON writers (see buf.h).
 */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "json.h"

static void oom(void) {
  fputs("evstore-cli: out of memory\n", stderr);
  exit(1);
}

void *cli_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL)
    oom();
  return p;
}

char *cli_xstrndup(const char *s, size_t n) {
  char *p = cli_xmalloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

void cli_buf_free(cli_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void cli_buf_reserve(cli_buf *b, size_t extra) {
  if (extra > SIZE_MAX - b->len - 1)
    oom();
  size_t need = b->len + extra + 1; /* room for a NUL */
  if (need <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  char *p = realloc(b->data, cap);
  if (p == NULL)
    oom();
  b->data = p;
  b->cap = cap;
}

void cli_buf_put(cli_buf *b, const void *p, size_t n) {
  if (n == 0)
    return;
  cli_buf_reserve(b, n);
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

void cli_buf_putc(cli_buf *b, char c) {
  cli_buf_reserve(b, 1);
  b->data[b->len++] = c;
}

void cli_buf_puts(cli_buf *b, const char *s) {
  cli_buf_put(b, s, strlen(s));
}

void cli_buf_printf(cli_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char small[256];
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n < sizeof small) {
    cli_buf_put(b, small, (size_t)n);
    return;
  }
  cli_buf_reserve(b, (size_t)n);
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

const char *cli_buf_cstr(cli_buf *b) {
  cli_buf_reserve(b, 0);
  b->data[b->len] = '\0';
  return b->data;
}

/* Length of a valid UTF-8 sequence at s[i], or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t k;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF)
    k = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    k = 3;
    if (c == 0xE0)
      lo = 0xA0;
    else if (c == 0xED)
      hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    k = 4;
    if (c == 0xF0)
      lo = 0x90;
    else if (c == 0xF4)
      hi = 0x8F;
  } else
    return 0;
  if (n < k || s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < k; i++)
    if (s[i] < 0x80 || s[i] > 0xBF)
      return 0;
  return k;
}

void cli_buf_json_str(cli_buf *b, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  cli_buf_reserve(b, n + 2);
  cli_buf_putc(b, '"');
  size_t run = 0; /* start of a run of bytes copied as they are */
  for (size_t i = 0; i < n;) {
    unsigned char c = s[i];
    const char *esc = NULL;
    char u[8];
    size_t skip = 1;
    if (c == '"')
      esc = "\\\"";
    else if (c == '\\')
      esc = "\\\\";
    else if (c == '\n')
      esc = "\\n";
    else if (c == '\r')
      esc = "\\r";
    else if (c == '\t')
      esc = "\\t";
    else if (c == '\b')
      esc = "\\b";
    else if (c == '\f')
      esc = "\\f";
    else if (c < 0x20 || c == 0x7f) {
      snprintf(u, sizeof u, "\\u%04x", c);
      esc = u;
    } else if (c >= 0x80) {
      size_t k = utf8_len(s + i, n - i);
      if (k) {
        i += k;
        continue;
      }
      esc = "\xEF\xBF\xBD"; /* U+FFFD for a byte that is not UTF-8 */
    } else {
      i++;
      continue;
    }
    cli_buf_put(b, s + run, i - run);
    cli_buf_puts(b, esc);
    i += skip;
    run = i;
  }
  cli_buf_put(b, s + run, n - run);
  cli_buf_putc(b, '"');
}

void cli_buf_json_cstr(cli_buf *b, const char *s) {
  cli_buf_json_str(b, s, strlen(s));
}

void cli_buf_json_real(cli_buf *b, double v) {
  char tmp[40];
  if (v != v || v - v != 0) { /* NaN or infinite: not JSON */
    cli_buf_puts(b, "null");
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    if (strtod(tmp, NULL) == v)
      break;
  }
  cli_buf_puts(b, tmp);
  /* Keep it a real: "2" would read back as an integer. */
  if (strpbrk(tmp, ".eEn") == NULL)
    cli_buf_puts(b, ".0");
}

void cli_buf_json_value(cli_buf *b, const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: {
    const char *key;
    size_t key_len;
    json_t *val;
    int first = 1;
    cli_buf_putc(b, '{');
    json_object_keylen_foreach((json_t *)v, key, key_len, val) {
      if (!first)
        cli_buf_putc(b, ',');
      first = 0;
      cli_buf_json_str(b, key, key_len);
      cli_buf_putc(b, ':');
      cli_buf_json_value(b, val);
    }
    cli_buf_putc(b, '}');
    break;
  }
  case JSON_ARRAY: {
    cli_buf_putc(b, '[');
    for (size_t i = 0; i < json_array_size(v); i++) {
      if (i)
        cli_buf_putc(b, ',');
      cli_buf_json_value(b, json_array_get(v, i));
    }
    cli_buf_putc(b, ']');
    break;
  }
  case JSON_STRING:
    cli_buf_json_str(b, json_string_value(v), json_string_length(v));
    break;
  case JSON_INTEGER:
    cli_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    break;
  case JSON_REAL:
    cli_buf_json_real(b, json_real_value(v));
    break;
  case JSON_TRUE:
    cli_buf_puts(b, "true");
    break;
  case JSON_FALSE:
    cli_buf_puts(b, "false");
    break;
  case JSON_NULL:
  default:
    cli_buf_puts(b, "null");
    break;
  }
}

static void json_newline(cli_buf *b, int indent, size_t depth) {
  size_t n = (size_t)indent * depth;
  cli_buf_reserve(b, n + 1);
  b->data[b->len++] = '\n';
  memset(b->data + b->len, ' ', n);
  b->len += n;
}

void cli_buf_json_text(cli_buf *b, const char *json, size_t len, int indent) {
  size_t depth = 0;
  size_t i = 0;
  while (i < len) {
    char c = json[i];
    switch (c) {
    case ' ':
    case '\t':
    case '\n':
    case '\r':
      i++;
      break;
    case '"': {
      size_t j = i + 1;
      while (j < len && json[j] != '"')
        j += json[j] == '\\' ? 2 : 1;
      j = j < len ? j + 1 : len;
      if (indent) {
        cli_buf_put(b, json + i, j - i);
      } else {
        cli_json_span lit = { json + i, j - i };
        char *s = NULL;
        size_t n = 0;
        if (cli_json_string(&s, &n, lit) == 0)
          cli_buf_json_str(b, s, n);
        else /* only out of memory, for valid text */
          oom();
        free(s);
      }
      i = j;
      break;
    }
    case '{':
    case '[': {
      char close = c == '{' ? '}' : ']';
      size_t j = i + 1;
      while (j < len && strchr(" \t\n\r", json[j]) && json[j] != '\0')
        j++;
      cli_buf_putc(b, c);
      if (j < len && json[j] == close) {
        cli_buf_putc(b, close);
        i = j + 1;
        break;
      }
      depth++;
      if (indent)
        json_newline(b, indent, depth);
      i++;
      break;
    }
    case '}':
    case ']':
      if (depth)
        depth--;
      if (indent)
        json_newline(b, indent, depth);
      cli_buf_putc(b, c);
      i++;
      break;
    case ',':
      cli_buf_putc(b, ',');
      if (indent)
        json_newline(b, indent, depth);
      i++;
      break;
    case ':':
      cli_buf_puts(b, indent ? ": " : ":");
      i++;
      break;
    default: { /* a number or a literal, as written */
      size_t j = i + 1;
      while (j < len && json[j] != '\0' && !strchr(" \t\n\r,:]}", json[j]))
        j++;
      cli_buf_put(b, json + i, j - i);
      i = j;
      break;
    }
    }
  }
}

void cli_buf_json_base64(cli_buf *b, const void *p, size_t n) {
  size_t elen = cli_base64_encoded_len(n);
  cli_buf_reserve(b, elen + 16);
  cli_buf_puts(b, "{\"$base64\":\"");
  cli_base64_encode(b->data + b->len, p, n);
  b->len += elen;
  cli_buf_puts(b, "\"}");
}

void cli_buf_json_bytes(cli_buf *b, const void *p, size_t n, int mode,
                        int empty_is_null) {
  if (n == 0) {
    if (empty_is_null)
      cli_buf_puts(b, "null");
    else
      cli_buf_json_base64(b, p, 0);
    return;
  }
  cli_json_info info;
  if (cli_json_check(&info, p, n, NULL) != 0 ||
      cli_json_is_base64_object(p, n)) {
    cli_buf_json_base64(b, p, n);
    return;
  }
  int surrounded = info.start != 0 || info.end != n;
  if (mode == CLI_BYTES_EXACT) {
    if (info.has_newline || surrounded ||
        (empty_is_null && info.kind == CLI_JSON_NULL)) {
      cli_buf_json_base64(b, p, n);
      return;
    }
    cli_buf_put(b, p, n);
    return;
  }
  if (!info.has_newline && !surrounded) {
    cli_buf_put(b, p, n);
    return;
  }
  cli_buf_reserve(b, n);
  b->len += cli_json_compact(b->data + b->len, p, n);
}
