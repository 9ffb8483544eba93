/*
 * libFuzzer target for the CLI's TIME parser (tools/cli/timeparse.c,
 * cli_time_parse): command-line arguments and the "timestamp" of imported
 * lines are untrusted text.
 *
 * Oracles: a failure leaves the output alone and says why; a success
 * formats (cli_time_format, as export writes it) to text that parses back
 * to the same instant; and the first 8 bytes of the input, read as any
 * int64_t, format to 30 characters that parse back to the same value (the
 * export -> import round trip of every representable time).
 *
 * Built as a libFuzzer binary with clang (timeparse_fuzzer), and replayed
 * over tests/fuzz/corpus/timeparse/ by fuzz_replay_timeparse in every build.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "timeparse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond) {
  if (!cond)
    abort();
}

static void round_trip(int64_t ns) {
  char text[CLI_TIME_BUFSZ];
  cli_time_format(text, ns);
  check(strlen(text) == 30);
  int64_t back = 0;
  const char *err = "unset";
  check(cli_time_parse(&back, text, strlen(text), &err) == 0);
  check(err == NULL);
  check(back == ns);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const int64_t canary = 0x0123456789abcdefLL;
  int64_t ns = canary;
  const char *err = "unset";
  if (cli_time_parse(&ns, (const char *)data, size, &err) == 0) {
    check(err == NULL);
    round_trip(ns);
  } else {
    check(ns == canary);
    check(err != NULL && strcmp(err, "unset") != 0 && strlen(err) > 5);
  }
  /* The parser does not need a message. */
  int64_t ns2 = canary;
  int rc2 = cli_time_parse(&ns2, (const char *)data, size, NULL);
  check(rc2 == 0 ? ns2 == ns : ns2 == canary);

  if (size >= 8) {
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
      u = u << 8 | data[i];
    round_trip((int64_t)u);
  }
  return 0;
}
