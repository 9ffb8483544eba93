/*
 * evstore protocol — a bounded msgpack reader and a growable writer.
 *
 * The reader walks untrusted bytes without allocating: every declared
 * length is checked against the bytes that remain, and every declared
 * array or map count against the smallest number of bytes its elements
 * could take (one per element), before anything is read. msgpack-c's
 * unpacker is not used on the wire because it allocates
 * count * sizeof(msgpack_object) for a declared count before the elements
 * arrive (five bytes can ask for gigabytes).
 *
 * The writer appends to an evs__buf, a growable byte buffer. Allocation
 * failures are sticky: the buffer records them in `oom` and every later
 * write is a no-op, so a sequence of writes needs one check at the end.
 *
 * Pure code: no I/O, no globals, no store internals. Shared by evstored and
 * the client library.
 */
#ifndef EVSTORE_PROTOCOL_MSGPACK_H
#define EVSTORE_PROTOCOL_MSGPACK_H

#include <stddef.h>
#include <stdint.h>

#include "evstore/errors.h"
#include "evstore/types.h"

/* ---- growable buffer ---------------------------------------------------- */

typedef struct evs__buf {
  uint8_t *data;
  size_t len;
  size_t cap;
  int oom; /* an allocation failed; the contents are incomplete */
} evs__buf;

#define EVS__BUF_INIT                                                          \
  { NULL, 0, 0, 0 }

/* Makes room for `extra` more bytes. Returns 0 or EVS_ENOMEM (and sets
 * oom). */
int evs__buf_reserve(evs__buf *b, size_t extra);
/* Appends bytes. */
void evs__buf_put(evs__buf *b, const void *p, size_t n);
/* Frees the bytes; the buffer is empty and usable again. Accepts NULL. */
void evs__buf_free(evs__buf *b);
/* Hands the bytes over to the caller (malloc'd, free with free()) and
 * empties the buffer. */
uint8_t *evs__buf_take(evs__buf *b, size_t *len);

/* ---- reader ------------------------------------------------------------- */

typedef struct evs__mp_reader {
  const uint8_t *p;
  const uint8_t *end;
} evs__mp_reader;

typedef enum evs__mp_type {
  EVS__MP_NONE = 0, /* no bytes left */
  EVS__MP_NIL,
  EVS__MP_BOOL,
  EVS__MP_INT, /* any integer format, signed or unsigned */
  EVS__MP_FLOAT,
  EVS__MP_STR,
  EVS__MP_BIN,
  EVS__MP_ARRAY,
  EVS__MP_MAP,
  EVS__MP_EXT,
  EVS__MP_INVALID /* 0xc1, the one byte msgpack never uses */
} evs__mp_type;

static inline void evs__mp_reader_init(evs__mp_reader *r, const void *p,
                                       size_t len) {
  r->p = (const uint8_t *)p;
  r->end = p ? r->p + len : r->p; /* no arithmetic on NULL */
}

static inline size_t evs__mp_left(const evs__mp_reader *r) {
  return (size_t)(r->end - r->p);
}

/* The type of the next object, without consuming it. */
evs__mp_type evs__mp_peek(const evs__mp_reader *r);

/*
 * Each reader consumes one object of the named type and returns 0, or
 * returns EVS_EPROTO and leaves the reader where it was when the bytes are
 * of another type, truncated, or out of range for the output.
 */
int evs__mp_read_nil(evs__mp_reader *r);
int evs__mp_read_bool(evs__mp_reader *r, int *out);
/* Any integer in [INT64_MIN, INT64_MAX]. */
int evs__mp_read_int(evs__mp_reader *r, int64_t *out);
/* Any integer in [0, UINT64_MAX]. */
int evs__mp_read_uint(evs__mp_reader *r, uint64_t *out);
/* str only; the slice points into the reader's bytes. */
int evs__mp_read_str(evs__mp_reader *r, evs_slice *out);
/* bin only. */
int evs__mp_read_bin(evs__mp_reader *r, evs_slice *out);
/* bin or str: opaque bytes. */
int evs__mp_read_bytes(evs__mp_reader *r, evs_slice *out);
/* Array/map headers: the count is checked against the bytes left (at least
 * one byte per element, two per map entry). */
int evs__mp_read_array(evs__mp_reader *r, uint32_t *count);
int evs__mp_read_map(evs__mp_reader *r, uint32_t *count);
/* Skips one complete object of any type, however deeply nested, without
 * recursion. */
int evs__mp_skip(evs__mp_reader *r);

/* ---- writer ------------------------------------------------------------- */

void evs__mp_w_nil(evs__buf *b);
void evs__mp_w_bool(evs__buf *b, int v);
void evs__mp_w_uint(evs__buf *b, uint64_t v);
void evs__mp_w_int(evs__buf *b, int64_t v);
void evs__mp_w_str(evs__buf *b, const void *s, size_t len);
void evs__mp_w_cstr(evs__buf *b, const char *s);
void evs__mp_w_bin(evs__buf *b, const void *p, size_t len);
void evs__mp_w_array(evs__buf *b, uint32_t n);
void evs__mp_w_map(evs__buf *b, uint32_t n);

/*
 * A map or array whose count is known only at the end: open writes a
 * 32-bit header with a placeholder count, each key (or element) bumps the
 * count, close patches it. (A wider-than-needed header is valid msgpack.)
 */
typedef struct evs__mp_open {
  size_t off;
  uint32_t n;
} evs__mp_open;

evs__mp_open evs__mp_w_map_open(evs__buf *b);
/* Writes `key` as a str and counts one entry; the value follows. */
void evs__mp_w_key(evs__buf *b, evs__mp_open *m, const char *key);
void evs__mp_w_map_close(evs__buf *b, const evs__mp_open *m);
evs__mp_open evs__mp_w_array_open(evs__buf *b);
void evs__mp_w_array_close(evs__buf *b, const evs__mp_open *a);

#endif /* EVSTORE_PROTOCOL_MSGPACK_H */
