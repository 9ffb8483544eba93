/*
 * evstore — encoding and decoding of stored records.
 *
 * Records are msgpack (written with msgpack-c's packer). They are read back
 * with a small bounded reader instead of msgpack_unpack(): the reader never
 * allocates, checks every declared length against the bytes that remain,
 * and hands out slices that point into the LMDB map (zero-copy reads).
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
 */
#include <msgpack.h>
#include <xxhash.h>

#include "store/internal.h"

/* ---- writing ----------------------------------------------------------- */

typedef struct evs__wcur {
  uint8_t *p;
  size_t n;
} evs__wcur;

static int evs__count_cb(void *data, const char *buf, size_t len) {
  (void)buf;
  ((evs__wcur *)data)->n += len;
  return 0;
}

static int evs__copy_cb(void *data, const char *buf, size_t len) {
  evs__wcur *w = (evs__wcur *)data;
  memcpy(w->p + w->n, buf, len);
  w->n += len;
  return 0;
}

static void evs__pack_record(msgpack_packer *pk, const evs__record *r) {
  msgpack_pack_array(pk, 9);
  msgpack_pack_uint64(pk, r->stream_id);
  msgpack_pack_uint64(pk, r->version);
  msgpack_pack_int64(pk, r->timestamp_ns);
  msgpack_pack_uint64(pk, r->type_id);
  msgpack_pack_bin(pk, 16);
  msgpack_pack_bin_body(pk, r->id, 16);
  msgpack_pack_uint32(pk, r->flags);
  msgpack_pack_uint64(pk, r->raw_len);
  msgpack_pack_bin(pk, r->metadata_len);
  if (r->metadata_len)
    msgpack_pack_bin_body(pk, r->metadata, r->metadata_len);
  msgpack_pack_bin(pk, r->data_len);
  if (r->data_len)
    msgpack_pack_bin_body(pk, r->data, r->data_len);
}

static size_t evs__bin_hdr(size_t len) {
  return len < 256 ? 2 : len < 65536 ? 3 : 5;
}

size_t evs__record_size(size_t metadata_len, size_t data_len) {
  /* Worst case for the integers (9 bytes each) is computed exactly by
   * evs__record_encode's caller via evs__record_exact_size below; this
   * bound is used to size buffers. */
  return 1 + 5 * 9 + 2 + 16 + 5 + 9 + evs__bin_hdr(metadata_len) +
         metadata_len + evs__bin_hdr(data_len) + data_len +
         EVS__REC_CHECKSUM_LEN;
}

size_t evs__record_exact_size(const evs__record *r) {
  evs__wcur w = { NULL, 0 };
  msgpack_packer pk;
  msgpack_packer_init(&pk, &w, evs__count_cb);
  evs__pack_record(&pk, r);
  return w.n + EVS__REC_CHECKSUM_LEN;
}

size_t evs__record_encode(void *out, const evs__record *r) {
  evs__wcur w = { (uint8_t *)out, 0 };
  msgpack_packer pk;
  msgpack_packer_init(&pk, &w, evs__copy_cb);
  evs__pack_record(&pk, r);
  evs__put_be64(w.p + w.n, (uint64_t)XXH3_64bits(w.p, w.n));
  return w.n + EVS__REC_CHECKSUM_LEN;
}

static void evs__pack_stream(msgpack_packer *pk, const evs__stream_rec *s) {
  msgpack_pack_array(pk, 11);
  msgpack_pack_uint64(pk, s->stream_id);
  msgpack_pack_int64(pk, s->last_version);
  msgpack_pack_uint64(pk, s->last_position);
  msgpack_pack_uint32(pk, s->flags);
  msgpack_pack_int64(pk, s->start_version);
  msgpack_pack_uint64(pk, s->max_count);
  msgpack_pack_uint64(pk, s->max_age_sec);
  msgpack_pack_int64(pk, s->truncate_before);
  msgpack_pack_uint64(pk, s->category_id);
  msgpack_pack_int64(pk, s->last_ts);
  msgpack_pack_bin(pk, s->custom_len);
  if (s->custom_len)
    msgpack_pack_bin_body(pk, s->custom, s->custom_len);
}

size_t evs__stream_rec_size(const evs__stream_rec *s) {
  evs__wcur w = { NULL, 0 };
  msgpack_packer pk;
  msgpack_packer_init(&pk, &w, evs__count_cb);
  evs__pack_stream(&pk, s);
  return w.n;
}

size_t evs__stream_rec_encode(void *out, const evs__stream_rec *s) {
  evs__wcur w = { (uint8_t *)out, 0 };
  msgpack_packer pk;
  msgpack_packer_init(&pk, &w, evs__copy_cb);
  evs__pack_stream(&pk, s);
  return w.n;
}

/* ---- reading ----------------------------------------------------------- */

typedef struct evs__rcur {
  const uint8_t *p;
  const uint8_t *end;
} evs__rcur;

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

static int evs__rd_uint(evs__rcur *c, uint64_t *v) {
  int neg;
  if (evs__rd_int(c, v, &neg) != 0 || neg)
    return -1;
  return 0;
}

static int evs__rd_sint(evs__rcur *c, int64_t *v) {
  uint64_t u;
  int neg;
  if (evs__rd_int(c, &u, &neg) != 0)
    return -1;
  if (!neg && u > (uint64_t)INT64_MAX)
    return -1;
  *v = (int64_t)u;
  return 0;
}

static int evs__rd_bin(evs__rcur *c, const void **p, size_t *len) {
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

static int evs__record_parse(evs__record *r, const void *buf, size_t len,
                             int check) {
  if (buf == NULL || len < 1 + EVS__REC_CHECKSUM_LEN)
    return EVS_ECORRUPT;
  const uint8_t *b = (const uint8_t *)buf;
  size_t body = len - EVS__REC_CHECKSUM_LEN;
  if (check && (uint64_t)XXH3_64bits(b, body) != evs__get_be64(b + body))
    return EVS_ECORRUPT;
  evs__rcur c = { b, b + body };
  uint32_t n;
  uint64_t flags;
  const void *idp;
  size_t idlen;
  if (evs__rd_array(&c, &n) || n < 9 || evs__rd_uint(&c, &r->stream_id) ||
      evs__rd_uint(&c, &r->version) || evs__rd_sint(&c, &r->timestamp_ns) ||
      evs__rd_uint(&c, &r->type_id) || evs__rd_bin(&c, &idp, &idlen) ||
      idlen != 16 || evs__rd_uint(&c, &flags) || flags > UINT32_MAX ||
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
  if (buf == NULL)
    return EVS_ECORRUPT;
  evs__rcur c = { (const uint8_t *)buf, (const uint8_t *)buf + len };
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
