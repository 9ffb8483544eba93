/*
 * libFuzzer target for the CLI's base64 codec (tools/cli/base64.c): the
 * "$base64" strings of imported lines are untrusted text.
 *
 * Oracles: decoding writes at most len / 4 * 3 + 3 bytes (the documented
 * output size, checked with an exactly-sized heap buffer) and works in
 * place as the import parser uses it; whatever decodes encodes to text that
 * decodes to the same bytes; and any bytes encode to
 * cli_base64_encoded_len() characters that decode back to them.
 *
 * Built as a libFuzzer binary with clang (base64_fuzzer), and replayed over
 * tests/fuzz/corpus/base64/ by fuzz_replay_base64 in every build.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond) {
  if (!cond)
    abort();
}

/* Encodes src[0..n) and checks that it decodes back. */
static void round_trip(const uint8_t *src, size_t n) {
  size_t elen = cli_base64_encoded_len(n);
  check(elen % 4 == 0 && elen >= n && elen - n <= n / 2 + 4);
  char *text = malloc(elen ? elen : 1);
  uint8_t *back = malloc(elen / 4 * 3 + 3);
  check(text != NULL && back != NULL);
  cli_base64_encode(text, src, n);
  size_t blen = 0;
  check(cli_base64_decode(back, &blen, text, elen) == 0);
  check(blen == n && (n == 0 || memcmp(back, src, n) == 0));
  free(text);
  free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text = (const char *)data;
  size_t cap = size / 4 * 3 + 3;
  uint8_t *out = malloc(cap);
  check(out != NULL);
  size_t n = (size_t)-1;
  int rc = cli_base64_decode(out, &n, text, size);
  if (rc == 0) {
    check(n <= cap && n <= size / 4 * 3 + 2);
    round_trip(out, n);
    /* In place, as the import parser decodes. */
    char *inplace = malloc(size ? size : 1);
    check(inplace != NULL);
    memcpy(inplace, data, size);
    size_t n2 = 0;
    check(cli_base64_decode(inplace, &n2, inplace, size) == 0);
    check(n2 == n && (n == 0 || memcmp(inplace, out, n) == 0));
    free(inplace);
  } else {
    check(rc == -1 && n == (size_t)-1);
  }
  free(out);
  round_trip(data, size);
  return 0;
}
