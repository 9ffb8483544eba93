/*
 * evstore protocol — bounded msgpack reader and writer (see msgpack.h).
 */
#include "protocol/msgpack.h"

#include <stdlib.h>
#include <string.h>

/* ---- buffer ------------------------------------------------------------- */

int evs__buf_reserve(evs__buf *b, size_t extra) {
  if (b->oom)
    return EVS_ENOMEM;
  if (extra <= b->cap - b->len)
    return 0;
  if (extra > SIZE_MAX / 2 - b->len) {
    b->oom = 1;
    return EVS_ENOMEM;
  }
  size_t need = b->len + extra;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap *= 2;
  uint8_t *p = realloc(b->data, cap);
  if (p == NULL) {
    b->oom = 1;
    return EVS_ENOMEM;
  }
  b->data = p;
  b->cap = cap;
  return 0;
}

void evs__buf_put(evs__buf *b, const void *p, size_t n) {
  if (n == 0 || evs__buf_reserve(b, n))
    return;
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

void evs__buf_free(evs__buf *b) {
  if (b == NULL)
    return;
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
  b->oom = 0;
}

uint8_t *evs__buf_take(evs__buf *b, size_t *len) {
  uint8_t *p = b->data;
  if (len)
    *len = b->len;
  b->data = NULL;
  b->len = b->cap = 0;
  b->oom = 0;
  return p;
}

/* ---- reader ------------------------------------------------------------- */

static inline uint64_t be(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v = (v << 8) | p[i];
  return v;
}

evs__mp_type evs__mp_peek(const evs__mp_reader *r) {
  if (r->p >= r->end)
    return EVS__MP_NONE;
  uint8_t c = *r->p;
  if (c <= 0x7f || c >= 0xe0)
    return EVS__MP_INT;
  if (c <= 0x8f)
    return EVS__MP_MAP;
  if (c <= 0x9f)
    return EVS__MP_ARRAY;
  if (c <= 0xbf)
    return EVS__MP_STR;
  switch (c) {
  case 0xc0:
    return EVS__MP_NIL;
  case 0xc1:
    return EVS__MP_INVALID;
  case 0xc2:
  case 0xc3:
    return EVS__MP_BOOL;
  case 0xc4:
  case 0xc5:
  case 0xc6:
    return EVS__MP_BIN;
  case 0xc7:
  case 0xc8:
  case 0xc9:
  case 0xd4:
  case 0xd5:
  case 0xd6:
  case 0xd7:
  case 0xd8:
    return EVS__MP_EXT;
  case 0xca:
  case 0xcb:
    return EVS__MP_FLOAT;
  case 0xcc:
  case 0xcd:
  case 0xce:
  case 0xcf:
  case 0xd0:
  case 0xd1:
  case 0xd2:
  case 0xd3:
    return EVS__MP_INT;
  case 0xd9:
  case 0xda:
  case 0xdb:
    return EVS__MP_STR;
  case 0xdc:
  case 0xdd:
    return EVS__MP_ARRAY;
  default: /* 0xde, 0xdf */
    return EVS__MP_MAP;
  }
}

int evs__mp_read_nil(evs__mp_reader *r) {
  if (r->p >= r->end || *r->p != 0xc0)
    return EVS_EPROTO;
  r->p++;
  return 0;
}

int evs__mp_read_bool(evs__mp_reader *r, int *out) {
  if (r->p >= r->end || (*r->p != 0xc2 && *r->p != 0xc3))
    return EVS_EPROTO;
  *out = *r->p == 0xc3;
  r->p++;
  return 0;
}

/*
 * Reads any integer as a sign flag and magnitude: *neg = 1 and *mag the
 * two's-complement value for negative numbers.
 */
static int read_integer(evs__mp_reader *r, int *neg, uint64_t *val) {
  size_t left = evs__mp_left(r);
  if (left == 0)
    return EVS_EPROTO;
  uint8_t c = r->p[0];
  if (c <= 0x7f) {
    *neg = 0;
    *val = c;
    r->p++;
    return 0;
  }
  if (c >= 0xe0) {
    *neg = 1;
    *val = (uint64_t)(int64_t)(int8_t)c;
    r->p++;
    return 0;
  }
  int n;
  int is_signed;
  switch (c) {
  case 0xcc:
    n = 1;
    is_signed = 0;
    break;
  case 0xcd:
    n = 2;
    is_signed = 0;
    break;
  case 0xce:
    n = 4;
    is_signed = 0;
    break;
  case 0xcf:
    n = 8;
    is_signed = 0;
    break;
  case 0xd0:
    n = 1;
    is_signed = 1;
    break;
  case 0xd1:
    n = 2;
    is_signed = 1;
    break;
  case 0xd2:
    n = 4;
    is_signed = 1;
    break;
  case 0xd3:
    n = 8;
    is_signed = 1;
    break;
  default:
    return EVS_EPROTO;
  }
  if (left < (size_t)n + 1)
    return EVS_EPROTO;
  uint64_t v = be(r->p + 1, n);
  if (is_signed) {
    /* Sign-extend an n-byte two's-complement value. */
    int shift = 64 - 8 * n;
    int64_t s = (int64_t)(v << shift) >> shift;
    *neg = s < 0;
    *val = (uint64_t)s;
  } else {
    *neg = 0;
    *val = v;
  }
  r->p += 1 + n;
  return 0;
}

int evs__mp_read_int(evs__mp_reader *r, int64_t *out) {
  const uint8_t *save = r->p;
  int neg;
  uint64_t v;
  if (read_integer(r, &neg, &v))
    return EVS_EPROTO;
  if (!neg && v > (uint64_t)INT64_MAX) {
    r->p = save;
    return EVS_EPROTO;
  }
  *out = (int64_t)v;
  return 0;
}

int evs__mp_read_uint(evs__mp_reader *r, uint64_t *out) {
  const uint8_t *save = r->p;
  int neg;
  uint64_t v;
  if (read_integer(r, &neg, &v))
    return EVS_EPROTO;
  if (neg) {
    r->p = save;
    return EVS_EPROTO;
  }
  *out = v;
  return 0;
}

/* Reads a str (want_str) or bin (want_bin) header and its bytes. */
static int read_blob(evs__mp_reader *r, int want_str, int want_bin,
                     evs_slice *out) {
  size_t left = evs__mp_left(r);
  if (left == 0)
    return EVS_EPROTO;
  uint8_t c = r->p[0];
  size_t hdr;
  uint64_t len;
  if (c >= 0xa0 && c <= 0xbf && want_str) {
    hdr = 1;
    len = c & 0x1f;
  } else if ((c == 0xd9 && want_str) || (c == 0xc4 && want_bin)) {
    hdr = 2;
    if (left < hdr)
      return EVS_EPROTO;
    len = r->p[1];
  } else if ((c == 0xda && want_str) || (c == 0xc5 && want_bin)) {
    hdr = 3;
    if (left < hdr)
      return EVS_EPROTO;
    len = be(r->p + 1, 2);
  } else if ((c == 0xdb && want_str) || (c == 0xc6 && want_bin)) {
    hdr = 5;
    if (left < hdr)
      return EVS_EPROTO;
    len = be(r->p + 1, 4);
  } else {
    return EVS_EPROTO;
  }
  if (len > left - hdr)
    return EVS_EPROTO;
  out->data = r->p + hdr;
  out->len = (size_t)len;
  r->p += hdr + (size_t)len;
  return 0;
}

int evs__mp_read_str(evs__mp_reader *r, evs_slice *out) {
  return read_blob(r, 1, 0, out);
}

int evs__mp_read_bin(evs__mp_reader *r, evs_slice *out) {
  return read_blob(r, 0, 1, out);
}

int evs__mp_read_bytes(evs__mp_reader *r, evs_slice *out) {
  return read_blob(r, 1, 1, out);
}

/* Reads an array (map = 0) or map (map = 1) header. */
static int read_container(evs__mp_reader *r, int map, uint32_t *count) {
  size_t left = evs__mp_left(r);
  if (left == 0)
    return EVS_EPROTO;
  uint8_t c = r->p[0];
  size_t hdr;
  uint64_t n;
  if ((!map && c >= 0x90 && c <= 0x9f) || (map && c >= 0x80 && c <= 0x8f)) {
    /* fixarray, fixmap */
    hdr = 1;
    n = c & 0x0f;
  } else if ((!map && c == 0xdc) || (map && c == 0xde)) {
    hdr = 3;
    if (left < hdr)
      return EVS_EPROTO;
    n = be(r->p + 1, 2);
  } else if ((!map && c == 0xdd) || (map && c == 0xdf)) {
    hdr = 5;
    if (left < hdr)
      return EVS_EPROTO;
    n = be(r->p + 1, 4);
  } else {
    return EVS_EPROTO;
  }
  /* Every element takes at least one byte; a map entry two. */
  uint64_t min = map ? 2 * n : n;
  if (min > left - hdr)
    return EVS_EPROTO;
  *count = (uint32_t)n;
  r->p += hdr;
  return 0;
}

int evs__mp_read_array(evs__mp_reader *r, uint32_t *count) {
  return read_container(r, 0, count);
}

int evs__mp_read_map(evs__mp_reader *r, uint32_t *count) {
  return read_container(r, 1, count);
}

int evs__mp_skip(evs__mp_reader *r) {
  const uint8_t *save = r->p;
  /* Objects still to skip: containers add their elements to the count, so
   * nesting needs no stack. The count never exceeds the bytes left, because
   * each container's count was checked against them. */
  uint64_t pending = 1;
  while (pending > 0) {
    pending--;
    size_t left = evs__mp_left(r);
    if (left == 0)
      goto bad;
    uint8_t c = r->p[0];
    evs__mp_type t = evs__mp_peek(r);
    uint32_t n;
    evs_slice s;
    uint64_t u;
    switch (t) {
    case EVS__MP_NIL:
    case EVS__MP_BOOL:
      r->p++;
      break;
    case EVS__MP_INT: {
      int neg;
      if (read_integer(r, &neg, &u))
        goto bad;
      break;
    }
    case EVS__MP_FLOAT: {
      size_t sz = c == 0xca ? 5 : 9;
      if (left < sz)
        goto bad;
      r->p += sz;
      break;
    }
    case EVS__MP_STR:
    case EVS__MP_BIN:
      if (evs__mp_read_bytes(r, &s))
        goto bad;
      break;
    case EVS__MP_ARRAY:
      if (evs__mp_read_array(r, &n))
        goto bad;
      pending += n;
      break;
    case EVS__MP_MAP:
      if (evs__mp_read_map(r, &n))
        goto bad;
      pending += 2 * (uint64_t)n;
      break;
    case EVS__MP_EXT: {
      size_t hdr;
      uint64_t len;
      switch (c) {
      case 0xd4:
        hdr = 2;
        len = 1;
        break;
      case 0xd5:
        hdr = 2;
        len = 2;
        break;
      case 0xd6:
        hdr = 2;
        len = 4;
        break;
      case 0xd7:
        hdr = 2;
        len = 8;
        break;
      case 0xd8:
        hdr = 2;
        len = 16;
        break;
      case 0xc7:
        hdr = 3;
        if (left < hdr)
          goto bad;
        len = r->p[1];
        break;
      case 0xc8:
        hdr = 4;
        if (left < hdr)
          goto bad;
        len = be(r->p + 1, 2);
        break;
      default: /* 0xc9 */
        hdr = 6;
        if (left < hdr)
          goto bad;
        len = be(r->p + 1, 4);
        break;
      }
      if (left < hdr || len > left - hdr)
        goto bad;
      r->p += hdr + (size_t)len;
      break;
    }
    default:
      goto bad;
    }
    if (pending > evs__mp_left(r))
      goto bad;
  }
  return 0;
bad:
  r->p = save;
  return EVS_EPROTO;
}

/* ---- writer ------------------------------------------------------------- */

static void put_be(evs__buf *b, uint8_t tag, uint64_t v, int n) {
  uint8_t tmp[9];
  tmp[0] = tag;
  for (int i = n; i >= 1; i--) {
    tmp[i] = (uint8_t)v;
    v >>= 8;
  }
  evs__buf_put(b, tmp, (size_t)n + 1);
}

void evs__mp_w_nil(evs__buf *b) {
  uint8_t c = 0xc0;
  evs__buf_put(b, &c, 1);
}

void evs__mp_w_bool(evs__buf *b, int v) {
  uint8_t c = v ? 0xc3 : 0xc2;
  evs__buf_put(b, &c, 1);
}

void evs__mp_w_uint(evs__buf *b, uint64_t v) {
  if (v <= 0x7f) {
    uint8_t c = (uint8_t)v;
    evs__buf_put(b, &c, 1);
  } else if (v <= 0xff) {
    put_be(b, 0xcc, v, 1);
  } else if (v <= 0xffff) {
    put_be(b, 0xcd, v, 2);
  } else if (v <= 0xffffffffu) {
    put_be(b, 0xce, v, 4);
  } else {
    put_be(b, 0xcf, v, 8);
  }
}

void evs__mp_w_int(evs__buf *b, int64_t v) {
  if (v >= 0) {
    evs__mp_w_uint(b, (uint64_t)v);
  } else if (v >= -32) {
    uint8_t c = (uint8_t)(int8_t)v;
    evs__buf_put(b, &c, 1);
  } else if (v >= INT8_MIN) {
    put_be(b, 0xd0, (uint64_t)v, 1);
  } else if (v >= INT16_MIN) {
    put_be(b, 0xd1, (uint64_t)v, 2);
  } else if (v >= INT32_MIN) {
    put_be(b, 0xd2, (uint64_t)v, 4);
  } else {
    put_be(b, 0xd3, (uint64_t)v, 8);
  }
}

void evs__mp_w_str(evs__buf *b, const void *s, size_t len) {
  if (len <= 31) {
    uint8_t c = (uint8_t)(0xa0 | len);
    evs__buf_put(b, &c, 1);
  } else if (len <= 0xff) {
    put_be(b, 0xd9, len, 1);
  } else if (len <= 0xffff) {
    put_be(b, 0xda, len, 2);
  } else {
    put_be(b, 0xdb, len, 4);
  }
  evs__buf_put(b, s, len);
}

void evs__mp_w_cstr(evs__buf *b, const char *s) {
  evs__mp_w_str(b, s, s ? strlen(s) : 0);
}

void evs__mp_w_bin(evs__buf *b, const void *p, size_t len) {
  if (len <= 0xff)
    put_be(b, 0xc4, len, 1);
  else if (len <= 0xffff)
    put_be(b, 0xc5, len, 2);
  else
    put_be(b, 0xc6, len, 4);
  evs__buf_put(b, p, len);
}

void evs__mp_w_array(evs__buf *b, uint32_t n) {
  if (n <= 15) {
    uint8_t c = (uint8_t)(0x90 | n);
    evs__buf_put(b, &c, 1);
  } else if (n <= 0xffff) {
    put_be(b, 0xdc, n, 2);
  } else {
    put_be(b, 0xdd, n, 4);
  }
}

void evs__mp_w_map(evs__buf *b, uint32_t n) {
  if (n <= 15) {
    uint8_t c = (uint8_t)(0x80 | n);
    evs__buf_put(b, &c, 1);
  } else if (n <= 0xffff) {
    put_be(b, 0xde, n, 2);
  } else {
    put_be(b, 0xdf, n, 4);
  }
}

static evs__mp_open open_container(evs__buf *b, uint8_t tag) {
  evs__mp_open o = { b->len, 0 };
  put_be(b, tag, 0, 4);
  return o;
}

static void close_container(evs__buf *b, const evs__mp_open *o) {
  if (b->oom || o->off + 5 > b->len)
    return;
  uint32_t n = o->n;
  b->data[o->off + 1] = (uint8_t)(n >> 24);
  b->data[o->off + 2] = (uint8_t)(n >> 16);
  b->data[o->off + 3] = (uint8_t)(n >> 8);
  b->data[o->off + 4] = (uint8_t)n;
}

evs__mp_open evs__mp_w_map_open(evs__buf *b) {
  return open_container(b, 0xdf);
}

void evs__mp_w_key(evs__buf *b, evs__mp_open *m, const char *key) {
  evs__mp_w_cstr(b, key);
  m->n++;
}

void evs__mp_w_map_close(evs__buf *b, const evs__mp_open *m) {
  close_container(b, m);
}

evs__mp_open evs__mp_w_array_open(evs__buf *b) {
  return open_container(b, 0xdd);
}

void evs__mp_w_array_close(evs__buf *b, const evs__mp_open *a) {
  close_container(b, a);
}
