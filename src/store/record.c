/*
 * evstore — encoding and decoding of stored records.
 *
 * Records are msgpack, written by a direct emitter (the bytes msgpack-c's
 * packer would write) and read back with a small bounded reader instead of
 * msgpack_unpack(): the reader never allocates, checks every declared length
 * against the bytes that remain, and hands out slices that point into the LMDB
 * map (zero-copy reads).
 *
 * Event record (value of the `events` database):
 *   fixarray(9) [ stream_id, version, timestamp_ns, type_id, bin(16) id,
 *                 flags, raw_len, bin metadata, bin data ]
 *   followed by an 8-byte big-endian XXH3-64 of all the bytes before it.
 *
 * Stream record (value of the `streams` database):
 *   fixarray(11) [ stream_id, last_version, last_position, flags,
 *                  start_version, max_count, max_age_sec, truncate_before,
 *                  category_id, last_ts, bin custom ]
 *   followed by the same 8-byte checksum (since format 2).
 */
#include <xxhash.h>

#include "store/internal.h"

/* ---- writing ----------------------------------------------------------- */

/*
 * A direct msgpack emitter: the same bytes msgpack-c's packer writes (each
 * integer in its smallest form), without a callback per item. The write
 * path encodes a record per event, and the packer's callbacks and the
 * separate sizing pass cost more than the rest of the encoding.
 */
static inline size_t evs__mp_uint_len(uint64_t v) {
  return v < 128 ? 1 : v < 256 ? 2 : v < 65536 ? 3 : v <= 0xffffffffu ? 5 : 9;
}

static inline size_t evs__mp_int_len(int64_t v) {
  if (v >= 0)
    return evs__mp_uint_len((uint64_t)v);
  return v >= -32         ? 1
         : v >= -128      ? 2
         : v >= -32768    ? 3
         : v >= INT32_MIN ? 5
                          : 9;
}

static inline size_t evs__mp_bin_len(size_t n) {
  return (n < 256 ? 2 : n < 65536 ? 3 : 5) + n;
}

static inline uint8_t *evs__mp_uint(uint8_t *p, uint64_t v) {
  if (v < 128) {
    *p++ = (uint8_t)v;
  } else if (v < 256) {
    *p++ = 0xcc;
    *p++ = (uint8_t)v;
  } else if (v < 65536) {
    *p++ = 0xcd;
    *p++ = (uint8_t)(v >> 8);
    *p++ = (uint8_t)v;
  } else if (v <= 0xffffffffu) {
    *p++ = 0xce;
    evs__put_be32(p, (uint32_t)v);
    p += 4;
  } else {
    *p++ = 0xcf;
    evs__put_be64(p, v);
    p += 8;
  }
  return p;
}

static inline uint8_t *evs__mp_int(uint8_t *p, int64_t v) {
  if (v >= 0)
    return evs__mp_uint(p, (uint64_t)v);
  if (v >= -32) {
    *p++ = (uint8_t)(int8_t)v;
  } else if (v >= -128) {
    *p++ = 0xd0;
    *p++ = (uint8_t)(int8_t)v;
  } else if (v >= -32768) {
    *p++ = 0xd1;
    *p++ = (uint8_t)((uint16_t)v >> 8);
    *p++ = (uint8_t)(uint16_t)v;
  } else if (v >= INT32_MIN) {
    *p++ = 0xd2;
    evs__put_be32(p, (uint32_t)v);
    p += 4;
  } else {
    *p++ = 0xd3;
    evs__put_be64(p, (uint64_t)v);
    p += 8;
  }
  return p;
}

static inline uint8_t *evs__mp_bin(uint8_t *p, const void *d, size_t n) {
  if (n < 256) {
    *p++ = 0xc4;
    *p++ = (uint8_t)n;
  } else if (n < 65536) {
    *p++ = 0xc5;
    *p++ = (uint8_t)(n >> 8);
    *p++ = (uint8_t)n;
  } else {
    *p++ = 0xc6;
    evs__put_be32(p, (uint32_t)n);
    p += 4;
  }
  if (n)
    memcpy(p, d, n);
  return p + n;
}

size_t evs__record_size(size_t metadata_len, size_t data_len) {
  /* An upper bound (every integer in its 9-byte form), to size buffers. */
  return 1 + 6 * 9 + evs__mp_bin_len(16) + evs__mp_bin_len(metadata_len) +
         evs__mp_bin_len(data_len) + EVS__REC_CHECKSUM_LEN;
}

size_t evs__record_exact_size(const evs__record *r) {
  return 1 + evs__mp_uint_len(r->stream_id) + evs__mp_uint_len(r->version) +
         evs__mp_int_len(r->timestamp_ns) + evs__mp_uint_len(r->type_id) +
         evs__mp_bin_len(16) + evs__mp_uint_len(r->flags) +
         evs__mp_uint_len(r->raw_len) + evs__mp_bin_len(r->metadata_len) +
         evs__mp_bin_len(r->data_len) + EVS__REC_CHECKSUM_LEN;
}

size_t evs__record_encode(void *out, const evs__record *r) {
  uint8_t *b = (uint8_t *)out, *p = b;
  *p++ = 0x99; /* fixarray(9) */
  p = evs__mp_uint(p, r->stream_id);
  p = evs__mp_uint(p, r->version);
  p = evs__mp_int(p, r->timestamp_ns);
  p = evs__mp_uint(p, r->type_id);
  p = evs__mp_bin(p, r->id, 16);
  p = evs__mp_uint(p, r->flags);
  p = evs__mp_uint(p, r->raw_len);
  p = evs__mp_bin(p, r->metadata, r->metadata_len);
  p = evs__mp_bin(p, r->data, r->data_len);
  size_t n = (size_t)(p - b);
  evs__put_be64(p, (uint64_t)XXH3_64bits(b, n));
  return n + EVS__REC_CHECKSUM_LEN;
}

size_t evs__stream_rec_size(const evs__stream_rec *s) {
  return 1 + evs__mp_uint_len(s->stream_id) + evs__mp_int_len(s->last_version) +
         evs__mp_uint_len(s->last_position) + evs__mp_uint_len(s->flags) +
         evs__mp_int_len(s->start_version) + evs__mp_uint_len(s->max_count) +
         evs__mp_uint_len(s->max_age_sec) +
         evs__mp_int_len(s->truncate_before) +
         evs__mp_uint_len(s->category_id) + evs__mp_int_len(s->last_ts) +
         evs__mp_bin_len(s->custom_len) + EVS__REC_CHECKSUM_LEN;
}

size_t evs__stream_rec_encode(void *out, const evs__stream_rec *s) {
  uint8_t *b = (uint8_t *)out, *p = b;
  *p++ = 0x9b; /* fixarray(11) */
  p = evs__mp_uint(p, s->stream_id);
  p = evs__mp_int(p, s->last_version);
  p = evs__mp_uint(p, s->last_position);
  p = evs__mp_uint(p, s->flags);
  p = evs__mp_int(p, s->start_version);
  p = evs__mp_uint(p, s->max_count);
  p = evs__mp_uint(p, s->max_age_sec);
  p = evs__mp_int(p, s->truncate_before);
  p = evs__mp_uint(p, s->category_id);
  p = evs__mp_int(p, s->last_ts);
  p = evs__mp_bin(p, s->custom, s->custom_len);
  size_t n = (size_t)(p - b);
  evs__put_be64(p, (uint64_t)XXH3_64bits(b, n));
  return n + EVS__REC_CHECKSUM_LEN;
}

/* ---- reading ----------------------------------------------------------- */

/*
 * The reader below runs once per event on every read, so each field has an
 * inline fast path for the encodings msgpack-c's packer produces (positive
 * fixint, uint 8/16/32/64, bin 8/16) and falls back to the general readers
 * for every other encoding. Both paths accept exactly the same inputs: the
 * fast path only handles a subset, with the same bounds checks.
 */

typedef struct evs__rcur {
  const uint8_t *p;
  const uint8_t *end;
} evs__rcur;

static inline uint64_t evs__ld_be(const uint8_t *p, unsigned n) {
  switch (n) {
  case 1:
    return p[0];
  case 2: {
    uint16_t v;
    memcpy(&v, p, 2);
    return __builtin_bswap16(v);
  }
  case 4: {
    uint32_t v;
    memcpy(&v, p, 4);
    return __builtin_bswap32(v);
  }
  default: {
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
  }
  }
}

static int evs__rd_array(evs__rcur *c, uint32_t *n) {
  if (c->p >= c->end)
    return -1;
  uint8_t t = *c->p++;
  if ((t & 0xf0) == 0x90) {
    *n = t & 0x0f;
    return 0;
  }
  if (t == 0xdc) {
    if (c->end - c->p < 2)
      return -1;
    *n = (uint32_t)c->p[0] << 8 | c->p[1];
    c->p += 2;
    return 0;
  }
  if (t == 0xdd) {
    if (c->end - c->p < 4)
      return -1;
    *n = evs__get_be32(c->p);
    c->p += 4;
    return 0;
  }
  return -1;
}

/* Reads any msgpack integer into a 64-bit two's complement value.
 * *neg is set when the encoding was a negative integer. */
static int evs__rd_int(evs__rcur *c, uint64_t *v, int *neg) {
  if (c->p >= c->end)
    return -1;
  uint8_t t = *c->p++;
  *neg = 0;
  if (t <= 0x7f) {
    *v = t;
    return 0;
  }
  if (t >= 0xe0) {
    *v = (uint64_t)(int64_t)(int8_t)t;
    *neg = 1;
    return 0;
  }
  size_t n;
  int is_signed = 0;
  switch (t) {
  case 0xcc:
    n = 1;
    break;
  case 0xcd:
    n = 2;
    break;
  case 0xce:
    n = 4;
    break;
  case 0xcf:
    n = 8;
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
    return -1;
  }
  if ((size_t)(c->end - c->p) < n)
    return -1;
  uint64_t x = 0;
  for (size_t i = 0; i < n; i++)
    x = (x << 8) | c->p[i];
  c->p += n;
  if (is_signed && n < 8 && (x >> (n * 8 - 1)) & 1)
    x |= ~(uint64_t)0 << (n * 8); /* sign-extend */
  if (is_signed && (int64_t)x < 0)
    *neg = 1;
  *v = x;
  return 0;
}

static __attribute__((noinline)) int evs__rd_uint_slow(evs__rcur *c,
                                                       uint64_t *v) {
  int neg;
  if (evs__rd_int(c, v, &neg) != 0 || neg)
    return -1;
  return 0;
}

/* An unsigned integer (a negative one is an error). */
static inline int evs__rd_uint(evs__rcur *c, uint64_t *v) {
  const uint8_t *p = c->p;
  if (EVS__LIKELY(p < c->end)) {
    uint8_t t = *p;
    if (t <= 0x7f) {
      *v = t;
      c->p = p + 1;
      return 0;
    }
    if (t >= 0xcc && t <= 0xcf) {
      unsigned n = 1u << (t - 0xcc);
      if (EVS__UNLIKELY((size_t)(c->end - p) <= n))
        return -1;
      *v = evs__ld_be(p + 1, n);
      c->p = p + 1 + n;
      return 0;
    }
  }
  return evs__rd_uint_slow(c, v);
}

static __attribute__((noinline)) int evs__rd_sint_slow(evs__rcur *c,
                                                       int64_t *v) {
  uint64_t u;
  int neg;
  if (evs__rd_int(c, &u, &neg) != 0)
    return -1;
  if (!neg && u > (uint64_t)INT64_MAX)
    return -1;
  *v = (int64_t)u;
  return 0;
}

/* A signed integer that fits int64_t. */
static inline int evs__rd_sint(evs__rcur *c, int64_t *v) {
  const uint8_t *p = c->p;
  if (EVS__LIKELY(p < c->end)) {
    uint8_t t = *p;
    if (t <= 0x7f) {
      *v = t;
      c->p = p + 1;
      return 0;
    }
    if (t >= 0xcc && t <= 0xcf) {
      unsigned n = 1u << (t - 0xcc);
      if (EVS__UNLIKELY((size_t)(c->end - p) <= n))
        return -1;
      uint64_t u = evs__ld_be(p + 1, n);
      if (EVS__UNLIKELY(u > (uint64_t)INT64_MAX))
        return -1;
      *v = (int64_t)u;
      c->p = p + 1 + n;
      return 0;
    }
  }
  return evs__rd_sint_slow(c, v);
}

static __attribute__((noinline)) int
evs__rd_bin_slow(evs__rcur *c, const void **p, size_t *len) {
  if (c->p >= c->end)
    return -1;
  uint8_t t = *c->p++;
  size_t n;
  if (t == 0xc4 || t == 0xd9) {
    if (c->end - c->p < 1)
      return -1;
    n = c->p[0];
    c->p += 1;
  } else if (t == 0xc5 || t == 0xda) {
    if (c->end - c->p < 2)
      return -1;
    n = (size_t)c->p[0] << 8 | c->p[1];
    c->p += 2;
  } else if (t == 0xc6 || t == 0xdb) {
    if (c->end - c->p < 4)
      return -1;
    n = evs__get_be32(c->p);
    c->p += 4;
  } else if ((t & 0xe0) == 0xa0) {
    n = t & 0x1f;
  } else {
    return -1;
  }
  if ((size_t)(c->end - c->p) < n)
    return -1;
  *p = c->p;
  *len = n;
  c->p += n;
  return 0;
}

/* A bin (or, leniently, str) of any size: a slice into the buffer. */
static inline int evs__rd_bin(evs__rcur *c, const void **p, size_t *len) {
  const uint8_t *q = c->p;
  size_t left = (size_t)(c->end - q);
  if (EVS__LIKELY(left >= 2 && q[0] == 0xc4)) {
    size_t n = q[1];
    if (EVS__UNLIKELY(left - 2 < n))
      return -1;
    *p = q + 2;
    *len = n;
    c->p = q + 2 + n;
    return 0;
  }
  if (left >= 3 && q[0] == 0xc5) {
    size_t n = (size_t)q[1] << 8 | q[2];
    if (EVS__UNLIKELY(left - 3 < n))
      return -1;
    *p = q + 3;
    *len = n;
    c->p = q + 3 + n;
    return 0;
  }
  return evs__rd_bin_slow(c, p, len);
}

static inline __attribute__((always_inline)) int
evs__record_parse(evs__record *r, const void *buf, size_t len, int check) {
  if (buf == NULL || len < 1 + EVS__REC_CHECKSUM_LEN)
    return EVS_ECORRUPT;
  const uint8_t *b = (const uint8_t *)buf;
  size_t body = len - EVS__REC_CHECKSUM_LEN;
  if (check && (uint64_t)XXH3_64bits(b, body) != evs__ld_be(b + body, 8))
    return EVS_ECORRUPT;
  evs__rcur c = { b, b + body };
  uint32_t n;
  uint64_t flags;
  const void *idp;
  size_t idlen;
  if (EVS__LIKELY(b[0] == 0x99)) { /* fixarray(9), what the packer writes */
    n = 9;
    c.p++;
  } else if (evs__rd_array(&c, &n) || n < 9) {
    return EVS_ECORRUPT;
  }
  if (evs__rd_uint(&c, &r->stream_id) || evs__rd_uint(&c, &r->version) ||
      evs__rd_sint(&c, &r->timestamp_ns) || evs__rd_uint(&c, &r->type_id) ||
      evs__rd_bin(&c, &idp, &idlen) || idlen != 16 ||
      evs__rd_uint(&c, &flags) || flags > UINT32_MAX ||
      evs__rd_uint(&c, &r->raw_len) ||
      evs__rd_bin(&c, &r->metadata, &r->metadata_len) ||
      evs__rd_bin(&c, &r->data, &r->data_len))
    return EVS_ECORRUPT;
  r->id = (const uint8_t *)idp;
  r->flags = (uint32_t)flags;
  if (!(r->flags & EVS__REC_COMPRESSED) && r->raw_len != r->data_len)
    return EVS_ECORRUPT;
  /* Readers hand the version out as an int64_t (evs_event.version). */
  if (r->version > (uint64_t)INT64_MAX)
    return EVS_ECORRUPT;
  if (check && n == 9 && c.p != c.end)
    return EVS_ECORRUPT;
  return 0;
}

int evs__record_decode(evs__record *r, const void *buf, size_t len) {
  return evs__record_parse(r, buf, len, 1);
}

int evs__record_peek(evs__record *r, const void *buf, size_t len) {
  return evs__record_parse(r, buf, len, 0);
}

int evs__stream_rec_decode(evs__stream_rec *s, const void *buf, size_t len) {
  if (buf == NULL || len < 1 + EVS__REC_CHECKSUM_LEN)
    return EVS_ECORRUPT;
  size_t body = len - EVS__REC_CHECKSUM_LEN;
  if ((uint64_t)XXH3_64bits(buf, body) !=
      evs__get_be64((const uint8_t *)buf + body))
    return EVS_ECORRUPT;
  evs__rcur c = { (const uint8_t *)buf, (const uint8_t *)buf + body };
  uint32_t n;
  uint64_t flags;
  if (evs__rd_array(&c, &n) || n < 11 || evs__rd_uint(&c, &s->stream_id) ||
      evs__rd_sint(&c, &s->last_version) ||
      evs__rd_uint(&c, &s->last_position) || evs__rd_uint(&c, &flags) ||
      flags > UINT32_MAX || evs__rd_sint(&c, &s->start_version) ||
      evs__rd_uint(&c, &s->max_count) || evs__rd_uint(&c, &s->max_age_sec) ||
      evs__rd_sint(&c, &s->truncate_before) ||
      evs__rd_uint(&c, &s->category_id) || evs__rd_sint(&c, &s->last_ts) ||
      evs__rd_bin(&c, &s->custom, &s->custom_len))
    return EVS_ECORRUPT;
  s->flags = (uint32_t)flags;
  if (s->last_version < -1 || s->start_version < 0)
    return EVS_ECORRUPT;
  /* The limits evs_stream_set_metadata() accepts: the readers compute
   * last_version - max_count + 1 and now - max_age_sec * 10^9 in int64_t. */
  if (s->max_count > (uint64_t)INT64_MAX ||
      s->max_age_sec > (uint64_t)INT64_MAX / 1000000000u)
    return EVS_ECORRUPT;
  return 0;
}
