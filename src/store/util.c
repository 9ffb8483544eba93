/*
 * evstore — small helpers: UUIDs, UTF-8 validation, names, clocks.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <xxhash.h>

#include "store/internal.h"

const char *evs_version_string(void) {
  return EVS_VERSION_STRING;
}

int64_t evs__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void evs_uuid_format(char out[37], const evs_uuid *id) {
  static const char hex[] = "0123456789abcdef";
  size_t j = 0;
  for (size_t i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      out[j++] = '-';
    out[j++] = hex[id->bytes[i] >> 4];
    out[j++] = hex[id->bytes[i] & 0xf];
  }
  out[j] = '\0';
}

int evs__hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int evs_uuid_parse(evs_uuid *out, const char *text, size_t len) {
  evs__clear_error();
  if (out == NULL || text == NULL)
    return evs__err(EVS_EINVAL, "NULL uuid or text");
  if (len != 36)
    return evs__err(EVS_EINVAL, "a UUID is 36 characters, not %zu", len);
  size_t j = 0;
  for (size_t i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-')
        return evs__err(EVS_EINVAL, "UUID: '-' expected at offset %zu", i);
      continue;
    }
    int hi = evs__hexval(text[i]);
    int lo = evs__hexval(text[i + 1]);
    if (hi < 0 || lo < 0)
      return evs__err(EVS_EINVAL, "UUID: hex digit expected at offset %zu",
                      hi < 0 ? i : i + 1);
    out->bytes[j++] = (uint8_t)(hi << 4 | lo);
    i++;
  }
  return 0;
}

int evs_uuid_is_nil(const evs_uuid *id) {
  for (size_t i = 0; i < 16; i++)
    if (id->bytes[i])
      return 0;
  return 1;
}

/*
 * UUIDv7 (RFC 9562 §5.7, with method 1 of §6.2: a 12-bit counter in rand_a
 * seeded randomly each millisecond, so ids are strictly increasing within
 * the process). The 62 bits of rand_b come from a per-thread buffer
 * refilled from getrandom().
 */
static pthread_mutex_t evs__v7_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t evs__v7_last_ms;
static uint32_t evs__v7_counter;

static _Thread_local uint8_t evs__rnd[256];
static _Thread_local size_t evs__rnd_pos = sizeof evs__rnd;

static void evs__random(void *out, size_t n) {
  uint8_t *o = (uint8_t *)out;
  while (n > 0) {
    if (evs__rnd_pos == sizeof evs__rnd) {
      size_t got = 0;
      while (got < sizeof evs__rnd) {
        ssize_t r = getrandom(evs__rnd + got, sizeof evs__rnd - got, 0);
        if (r < 0) {
          if (errno == EINTR)
            continue;
          /* Fall back to a clock-seeded xorshift; never fail. */
          uint64_t x = (uint64_t)evs__now_ns() ^ (uint64_t)(uintptr_t)&got;
          for (size_t i = got; i < sizeof evs__rnd; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            evs__rnd[i] = (uint8_t)x;
          }
          break;
        }
        got += (size_t)r;
      }
      evs__rnd_pos = 0;
    }
    size_t k = sizeof evs__rnd - evs__rnd_pos;
    if (k > n)
      k = n;
    memcpy(o, evs__rnd + evs__rnd_pos, k);
    evs__rnd_pos += k;
    o += k;
    n -= k;
  }
}

void evs_uuid_v7(evs_uuid *out) {
  uint8_t r[10];
  evs__random(r, sizeof r);
  uint64_t ms = (uint64_t)(evs__now_ns() / 1000000);
  uint32_t counter;
  pthread_mutex_lock(&evs__v7_mu);
  if (ms > evs__v7_last_ms) {
    evs__v7_last_ms = ms;
    evs__v7_counter = ((uint32_t)r[0] << 8 | r[1]) & 0x7ff; /* leave room */
  } else {
    ms = evs__v7_last_ms;
    if (++evs__v7_counter > 0xfff) {
      /* Counter overflow: borrow the next millisecond. */
      evs__v7_last_ms = ++ms;
      evs__v7_counter = 0;
    }
  }
  counter = evs__v7_counter;
  pthread_mutex_unlock(&evs__v7_mu);
  uint8_t *b = out->bytes;
  b[0] = (uint8_t)(ms >> 40);
  b[1] = (uint8_t)(ms >> 32);
  b[2] = (uint8_t)(ms >> 24);
  b[3] = (uint8_t)(ms >> 16);
  b[4] = (uint8_t)(ms >> 8);
  b[5] = (uint8_t)ms;
  b[6] = (uint8_t)(0x70 | ((counter >> 8) & 0x0f));
  b[7] = (uint8_t)(counter & 0xff);
  b[8] = (uint8_t)(0x80 | (r[2] & 0x3f));
  memcpy(b + 9, r + 3, 7);
}

evs_slice evs_stream_category(const char *stream, size_t len) {
  evs_slice s = { stream, 0 };
  if (stream == NULL)
    return s;
  const char *dash = memchr(stream, '-', len);
  s.len = dash ? (size_t)(dash - stream) : len;
  return s;
}

int evs__utf8_valid(const void *p, size_t len) {
  const uint8_t *s = (const uint8_t *)p;
  size_t i = 0;
  while (i < len) {
    uint8_t c = s[i];
    if (c < 0x80) {
      if (c == 0)
        return 0;
      i++;
      continue;
    }
    size_t n;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return 0;
    }
    if (len - i <= n)
      return 0;
    for (size_t k = 1; k <= n; k++) {
      uint8_t cc = s[i + k];
      if ((cc & 0xc0) != 0x80)
        return 0;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) ||
        (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += n + 1;
  }
  return 1;
}

int evs__check_name(const char *name, const char *what, size_t *len_out) {
  if (name == NULL)
    return evs__err(EVS_EINVAL, "%s name is NULL", what);
  size_t len = strnlen(name, EVS_MAX_NAME_LEN + 1);
  if (len == 0)
    return evs__err(EVS_EBADNAME, "%s name is empty", what);
  if (len > EVS_MAX_NAME_LEN)
    return evs__err(EVS_EBADNAME, "%s name is longer than %u bytes", what,
                    EVS_MAX_NAME_LEN);
  if (!evs__utf8_valid(name, len))
    return evs__err(EVS_EBADNAME, "%s name is not valid UTF-8", what);
  if (len_out)
    *len_out = len;
  return 0;
}

int evs__check_stream_name(const char *name, size_t *len_out) {
  int rc = evs__check_name(name, "stream", len_out);
  if (rc == 0 && name[0] == '$')
    rc = evs__err(EVS_EBADNAME, "stream names starting with '$' are reserved%s",
                  strcmp(name, "$all") == 0
                      ? " ('$all', the global log, is read with "
                        "evs_read_all and subscribed to without a stream)"
                      : "");
  return rc;
}

uint64_t evs_stream_hash(const char *stream, size_t len) {
  if (stream == NULL)
    return 0;
  return (uint64_t)XXH3_64bits(stream, len);
}
