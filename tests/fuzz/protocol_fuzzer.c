/*
 * libFuzzer target for the wire protocol decoders (src/protocol/).
 *
 * The input is read as a byte stream of frames, as evstored reads a
 * socket: each frame's body goes through the request decoder, the reply
 * decoder and the rid peeker. A request that decodes is encoded again and
 * must decode to the same request (a round-trip oracle). The whole input
 * is also tried as one body.
 *
 * Built as a libFuzzer binary with clang (protocol_fuzzer), and replayed over
 * tests/fuzz/corpus/protocol/ by fuzz_replay in every build.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond) {
  if (!cond)
    abort();
}

static int slice_same(evs_slice a, evs_slice b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static void one_body(const uint8_t *body, size_t len) {
  evs__proto_limits lim = { 64, 8 };
  evs__proto_request req;
  char err[160];
  int rc = evs__proto_decode_request(&req, body, len, &lim, err, sizeof err);
  check(memchr(err, 0, sizeof err) != NULL);
  if (rc == 0) {
    /* Round trip: what decoded must encode and decode to the same thing. */
    evs__buf b = EVS__BUF_INIT;
    int erc = evs__proto_encode_request(&b, &req);
    check(erc == 0 || erc == EVS_ENOMEM);
    if (erc == 0) {
      uint32_t n;
      check(evs__proto_frame_header(b.data, b.len, &n));
      check((size_t)n + 4 == b.len);
      evs__proto_request again;
      int rc2 = evs__proto_decode_request(&again, b.data + 4, n, &lim, err,
                                          sizeof err);
      check(rc2 == 0);
      check(again.op == req.op);
      check(again.rid == req.rid);
      check(again.nevents == req.nevents);
      check(again.nparts == req.nparts);
      for (uint32_t p = 0; p < req.nparts; p++) {
        check(slice_same(again.parts[p].stream, req.parts[p].stream));
        check(again.parts[p].expected == req.parts[p].expected);
        for (uint32_t i = 0; i < req.parts[p].nevents; i++) {
          const evs__proto_event *x = &req.parts[p].events[i];
          const evs__proto_event *y = &again.parts[p].events[i];
          check(slice_same(x->type, y->type));
          check(slice_same(x->data, y->data));
          check(slice_same(x->metadata, y->metadata));
          check(x->has_id == y->has_id);
        }
      }
      if (req.op == EVS__P_READ_STREAM || req.op == EVS__P_STREAM_INFO ||
          req.op == EVS__P_DELETE || req.op == EVS__P_SET_METADATA)
        check(slice_same(again.stream, req.stream));
      evs__proto_request_free(&again);
    }
    evs__buf_free(&b);
  }
  evs__proto_request_free(&req);

  evs__proto_reply rep;
  if (evs__proto_decode_reply(&rep, body, len, err, sizeof err) == 0) {
    /* Every array the decoder accepted walks to its end without error. */
    evs__proto_cursor c;
    evs__proto_event ev;
    evs__proto_cursor_init(&c, rep.events_raw, rep.nevents);
    uint32_t k = 0;
    while ((rc = evs__proto_next_event(&c, &ev)) == 1)
      k++;
    check(rc == 0 && k == rep.nevents);
    evs__proto_stream_entry st;
    evs__proto_cursor_init(&c, rep.streams_raw, rep.nstreams);
    k = 0;
    while ((rc = evs__proto_next_stream(&c, &st)) == 1)
      k++;
    check(rc == 0 && k == rep.nstreams);
    evs__proto_result res;
    evs__proto_cursor_init(&c, rep.results_raw, rep.nresults);
    k = 0;
    while ((rc = evs__proto_next_result(&c, &res)) == 1)
      k++;
    check(rc == 0 && k == rep.nresults);
  }
  uint64_t rid;
  (void)evs__proto_peek_rid(body, len, &rid);
  evs__mp_reader r;
  evs__mp_reader_init(&r, body, len);
  if (evs__mp_skip(&r) == 0)
    check(r.p <= r.end);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  one_body(data, size);
  size_t off = 0;
  uint32_t n;
  while (evs__proto_frame_header(data + off, size - off, &n)) {
    off += 4;
    size_t len = n < size - off ? n : size - off;
    one_body(data + off, len);
    off += len;
  }
  return 0;
}
