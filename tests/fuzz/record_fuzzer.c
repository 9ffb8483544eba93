/*
 * libFuzzer target for the decoders of stored records (src/store/record.c):
 * the bytes of an LMDB value are untrusted, because a damaged or hostile
 * data file can hold anything.
 *
 * Each input goes through
 *   - evs__record_decode() as it is (checksum checked), and again with its
 *     last 8 bytes replaced by the right checksum, so that mutations of the
 *     body reach the parser instead of stopping at the checksum;
 *   - evs__record_peek() (no checksum: the cheap probes of the write path);
 *   - evs__stream_rec_decode().
 * A record that decodes is handed to what reads it next: evs__record_data()
 * (the bounded zstd decompression; its store argument is NULL here, so a
 * record compressed with a trained dictionary must fail cleanly: the
 * regression input regress-dict-record-without-store), evs__visible_from() and the age cut of a stream.
 * Oracles: every slice lies inside the input; a decoded record satisfies
 * the bounds the writer guarantees; encoding what was decoded and decoding
 * that gives the same fields; evs__record_size() is an upper bound of the
 * exact encoded size (it sizes the writer's buffers).
 *
 * Built as a libFuzzer binary with clang (record_fuzzer), and replayed over
 * tests/fuzz/corpus/record/ by fuzz_replay_record in every build.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "store/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond) {
  if (!cond)
    abort();
}

static int inside(const void *p, size_t n, const uint8_t *buf, size_t len) {
  const uint8_t *q = (const uint8_t *)p;
  if (n == 0)
    return 1;
  return q != NULL && q >= buf && n <= len && (size_t)(q - buf) <= len - n;
}

/* Reads every byte of a slice, so that ASan sees a slice that escapes. */
static uint64_t touch(const void *p, size_t n) {
  return n ? (uint64_t)XXH3_64bits(p, n) : 0;
}

static volatile uint64_t sink;

/* What evs__record_data() reuses from one event to the next, as an
 * iterator does; kept across inputs like an iterator's buffers. */
static void *zbuf, *dctx;
static size_t zcap;

static void event_consumers(const evs__record *r, const uint8_t *buf,
                            size_t len, int checked) {
  check(inside(r->id, 16, buf, len));
  check(inside(r->metadata, r->metadata_len, buf, len));
  check(inside(r->data, r->data_len, buf, len));
  sink += touch(r->id, 16) + touch(r->metadata, r->metadata_len) +
          touch(r->data, r->data_len);
  /* evs_event.version is an int64_t, and idempotency checks add to it. */
  check(r->version <= (uint64_t)INT64_MAX);
  if (!(r->flags & EVS__REC_COMPRESSED))
    check(r->raw_len == r->data_len);
  if (!checked)
    return;

  evs_slice out = { NULL, 0 };
  int rc = evs__record_data(NULL, r, &zbuf, &zcap, &dctx, &out);
  check(rc == 0 || rc == EVS_ECORRUPT || rc == EVS_ENOMEM);
  if (rc == 0) {
    check(out.len == r->raw_len);
    if (!(r->flags & EVS__REC_COMPRESSED))
      check(out.data == r->data);
    sink += touch(out.data, out.len);
  }

  /* Round trip through the writer. */
  size_t exact = evs__record_exact_size(r);
  check(exact <= evs__record_size(r->metadata_len, r->data_len));
  uint8_t *enc = malloc(exact);
  check(enc != NULL);
  check(evs__record_encode(enc, r) == exact);
  evs__record again;
  check(evs__record_decode(&again, enc, exact) == 0);
  check(again.stream_id == r->stream_id);
  check(again.version == r->version);
  check(again.timestamp_ns == r->timestamp_ns);
  check(again.type_id == r->type_id);
  check(memcmp(again.id, r->id, 16) == 0);
  check(again.flags == r->flags);
  check(again.raw_len == r->raw_len);
  check(again.metadata_len == r->metadata_len);
  check(again.data_len == r->data_len);
  check(r->metadata_len == 0 ||
        memcmp(again.metadata, r->metadata, r->metadata_len) == 0);
  check(r->data_len == 0 || memcmp(again.data, r->data, r->data_len) == 0);
  free(enc);
}

static void stream_consumers(const evs__stream_rec *st, const uint8_t *buf,
                             size_t len) {
  check(inside(st->custom, st->custom_len, buf, len));
  sink += touch(st->custom, st->custom_len);
  /* What the readers compute from every stream record they load (read.c,
   * maint.c): UBSan reports an overflow here. */
  int64_t lo = evs__visible_from(st);
  int64_t cut = st->max_age_sec
                    ? evs__now_ns() - (int64_t)st->max_age_sec * 1000000000LL
                    : INT64_MIN;
  sink += (uint64_t)lo + (uint64_t)cut;
  /* The bounds the writer keeps (evs_stream_set_metadata() checks the
   * limits), which that arithmetic relies on. */
  check(st->last_version >= -1);
  check(st->start_version >= 0);
  check(st->max_count <= (uint64_t)INT64_MAX);
  check(st->max_age_sec <= (uint64_t)INT64_MAX / 1000000000u);

  size_t n = evs__stream_rec_size(st);
  uint8_t *enc = malloc(n);
  check(enc != NULL);
  check(evs__stream_rec_encode(enc, st) == n);
  evs__stream_rec again;
  check(evs__stream_rec_decode(&again, enc, n) == 0);
  check(again.stream_id == st->stream_id);
  check(again.last_version == st->last_version);
  check(again.last_position == st->last_position);
  check(again.flags == st->flags);
  check(again.start_version == st->start_version);
  check(again.max_count == st->max_count);
  check(again.max_age_sec == st->max_age_sec);
  check(again.truncate_before == st->truncate_before);
  check(again.category_id == st->category_id);
  check(again.last_ts == st->last_ts);
  check(again.custom_len == st->custom_len);
  check(st->custom_len == 0 ||
        memcmp(again.custom, st->custom, st->custom_len) == 0);
  free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  evs__record r;
  if (evs__record_decode(&r, data, size) == 0)
    event_consumers(&r, data, size, 1);
  if (evs__record_peek(&r, data, size) == 0)
    event_consumers(&r, data, size, 0);

  if (size >= 1 + EVS__REC_CHECKSUM_LEN) {
    uint8_t *fixed = malloc(size);
    check(fixed != NULL);
    memcpy(fixed, data, size);
    size_t body = size - EVS__REC_CHECKSUM_LEN;
    evs__put_be64(fixed + body, (uint64_t)XXH3_64bits(fixed, body));
    if (evs__record_decode(&r, fixed, size) == 0)
      event_consumers(&r, fixed, size, 1);
    free(fixed);
  }

  evs__stream_rec st;
  if (evs__stream_rec_decode(&st, data, size) == 0)
    stream_consumers(&st, data, size);
  return 0;
}
