/*
 * The TIME parser of evstore-cli (tools/cli/timeparse.c), tested directly,
 * plus a deterministic random-input run standing in for a fuzzer.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "timeparse.h"

static int64_t parse_ok(const char *s) {
  int64_t ns = 0;
  const char *err = NULL;
  int rc = cli_time_parse(&ns, s, strlen(s), &err);
  cr_assert_eq(rc, 0, "'%s' rejected: %s", s, err ? err : "?");
  cr_assert_null(err);
  return ns;
}

static const char *parse_err(const char *s) {
  int64_t ns = 12345;
  const char *err = NULL;
  int rc = cli_time_parse(&ns, s, strlen(s), &err);
  cr_assert_eq(rc, -1, "'%s' accepted as %lld", s, (long long)ns);
  cr_assert_eq(ns, 12345, "output changed on failure");
  cr_assert_not_null(err);
  cr_assert_gt(strlen(err), 5);
  return err;
}

Test(cli_time, rfc3339_utc) {
  cr_assert_eq(parse_ok("1970-01-01T00:00:00Z"), 0);
  cr_assert_eq(parse_ok("2026-11-27T10:00:00Z"), 1795773600LL * 1000000000LL);
  cr_assert_eq(parse_ok("2026-11-27T10:00:00.123456789Z"),
               1795773600LL * 1000000000LL + 123456789);
  cr_assert_eq(parse_ok("2026-11-27T10:00:00.5Z"),
               1795773600LL * 1000000000LL + 500000000);
  cr_assert_eq(parse_ok("2026-11-27t10:00:00z"), 1795773600LL * 1000000000LL);
  cr_assert_eq(parse_ok("2026-11-27 10:00:00Z"), 1795773600LL * 1000000000LL);
}

Test(cli_time, rfc3339_offsets) {
  int64_t utc = parse_ok("2026-11-27T10:00:00Z");
  cr_assert_eq(parse_ok("2026-11-27T12:00:00+02:00"), utc);
  cr_assert_eq(parse_ok("2026-11-27T04:30:00-05:30"), utc);
  cr_assert_eq(parse_ok("2026-11-27T10:00:00-00:00"), utc);
  cr_assert_eq(parse_ok("2026-11-28T09:59:00+23:59"), utc);
}

Test(cli_time, calendar) {
  cr_assert_eq(parse_ok("2024-02-29T00:00:00Z"), 1709164800LL * 1000000000LL);
  cr_assert_eq(parse_ok("2000-02-29T00:00:00Z"), 951782400LL * 1000000000LL);
  parse_err("2023-02-29T00:00:00Z");
  parse_err("1900-02-29T00:00:00Z");
  parse_err("2026-04-31T00:00:00Z");
  parse_err("2026-13-01T00:00:00Z");
  parse_err("2026-00-01T00:00:00Z");
  parse_err("2026-01-00T00:00:00Z");
  parse_err("2026-01-01T24:00:00Z");
  parse_err("2026-01-01T23:60:00Z");
  parse_err("2026-01-01T23:58:60Z");
  /* A leap second counts as the next minute's first instant. */
  cr_assert_eq(parse_ok("2016-12-31T23:59:60Z"),
               parse_ok("2017-01-01T00:00:00Z"));
}

Test(cli_time, before_epoch) {
  cr_assert_eq(parse_ok("1969-12-31T23:59:59Z"), -1000000000LL);
  cr_assert_eq(parse_ok("1969-12-31T23:59:59.5Z"), -500000000LL);
  cr_assert_eq(parse_ok("1969-12-31T23:59:59.000000001Z"), -999999999LL);
}

Test(cli_time, unix_seconds) {
  cr_assert_eq(parse_ok("@0"), 0);
  cr_assert_eq(parse_ok("@1764237600"), 1764237600LL * 1000000000LL);
  cr_assert_eq(parse_ok("@1764237600.5"),
               1764237600LL * 1000000000LL + 500000000);
  cr_assert_eq(parse_ok("@1764237600.000000001"),
               1764237600LL * 1000000000LL + 1);
  cr_assert_eq(parse_ok("@-1.25"), -1250000000LL);
  cr_assert_eq(parse_ok("@+5"), 5000000000LL);
  cr_assert_eq(parse_ok("@0001"), 1000000000LL);
}

Test(cli_time, range_limits) {
  cr_assert_eq(parse_ok("@9223372036.854775807"), INT64_MAX);
  cr_assert_eq(parse_ok("@-9223372036.854775808"), INT64_MIN);
  parse_err("@9223372036.854775808");
  parse_err("@-9223372036.854775809");
  parse_err("@99999999999999999999999999");
  cr_assert_eq(parse_ok("2262-04-11T23:47:16.854775807Z"), INT64_MAX);
  cr_assert_eq(parse_ok("1677-09-21T00:12:43.145224192Z"), INT64_MIN);
  parse_err("2262-04-11T23:47:16.854775808Z");
  parse_err("1677-09-21T00:12:43.145224191Z");
  parse_err("9999-12-31T23:59:59Z");
  parse_err("0000-01-01T00:00:00Z");
}

Test(cli_time, garbage) {
  const char *bad[] = {
      "",
      "now",
      "@",
      "@-",
      "@.5",
      "@1.",
      "@1.1234567891",
      "@1e9",
      "@ 1",
      "@1 ",
      "2026",
      "2026-11-27",
      "2026-11-27T",
      "2026-11-27T10:00",
      "2026-11-27T10:00:00",
      "2026-11-27T10:00:00.Z",
      "2026-11-27T10:00:00.1234567890Z",
      "2026-11-27T10:00:00+2:00",
      "2026-11-27T10:00:00+02",
      "2026-11-27T10:00:00+0200",
      "2026-11-27T10:00:00+24:00",
      "2026-11-27T10:00:00+02:60",
      "2026-11-27T10:00:00ZZ",
      "2026-11-27T10:00:00Z ",
      " 2026-11-27T10:00:00Z",
      "2026-11-27X10:00:00Z",
      "26-11-27T10:00:00Z",
      "2026/11/27T10:00:00Z",
      "+2026-11-27T10:00:00Z",
      "２０２６-11-27T10:00:00Z",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    parse_err(bad[i]);
  cr_assert_str_eq(parse_err("2026-11-27T10:00:00.1234567890Z"),
                   "the fraction of a second has more than 9 digits");
}

Test(cli_time, embedded_nul_and_length) {
  int64_t ns;
  const char *err;
  /* The length is authoritative: bytes after it are not read, and a NUL
   * inside it is garbage. */
  cr_assert_eq(cli_time_parse(&ns, "@12junk", 3, &err), 0);
  cr_assert_eq(ns, 12000000000LL);
  cr_assert_eq(cli_time_parse(&ns, "@1\0002", 4, &err), -1);
  cr_assert_eq(cli_time_parse(&ns, NULL, 0, &err), -1);
  cr_assert_eq(cli_time_parse(&ns, "@1", 2, NULL), 0);
}

Test(cli_time, format) {
  char buf[CLI_TIME_BUFSZ];
  cr_assert_str_eq(cli_time_format(buf, 0), "1970-01-01T00:00:00.000000000Z");
  cr_assert_str_eq(cli_time_format(buf, 1795773600LL * 1000000000LL +
                                            123456789),
                   "2026-11-27T10:00:00.123456789Z");
  cr_assert_str_eq(cli_time_format(buf, -1), "1969-12-31T23:59:59.999999999Z");
  cr_assert_str_eq(cli_time_format(buf, INT64_MAX),
                   "2262-04-11T23:47:16.854775807Z");
  cr_assert_str_eq(cli_time_format(buf, INT64_MIN),
                   "1677-09-21T00:12:43.145224192Z");
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void) {
  uint64_t x = rng_state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rng_state = x;
  return x * 0x2545F4914F6CDD1Dull;
}

Test(cli_time, format_parse_round_trip) {
  char buf[CLI_TIME_BUFSZ];
  for (int i = 0; i < 200000; i++) {
    int64_t ns = (int64_t)rng();
    if (i % 3 == 0)
      ns %= 4000000000000000000LL; /* around now */
    cli_time_format(buf, ns);
    cr_assert_eq(strlen(buf), 30);
    int64_t back;
    cr_assert_eq(cli_time_parse(&back, buf, strlen(buf), NULL), 0, "%s",
                 buf);
    cr_assert_eq(back, ns, "%s: %lld != %lld", buf, (long long)back,
                 (long long)ns);
  }
}

/* A poor man's fuzzer: random bytes and mutations of valid times must be
 * rejected or accepted without crashing, and every accepted text formats
 * back to a time that parses to the same value. */
Test(cli_time, random_inputs) {
  static const char *seeds[] = {"2026-11-27T10:00:00.123456789+02:00",
                                "@1764237600.5", "1969-12-31T23:59:59Z",
                                "@-9223372036.854775808"};
  static const char alphabet[] = "0123456789-+:.TtZz@ \x00\xff";
  char text[64];
  for (int i = 0; i < 500000; i++) {
    size_t len;
    if (i % 2) {
      const char *s = seeds[rng() % 4];
      len = strlen(s);
      memcpy(text, s, len);
      for (int m = (int)(rng() % 3) + 1; m > 0; m--) {
        size_t at = rng() % (len + 1);
        switch (rng() % 3) {
        case 0: /* replace */
          if (at < len)
            text[at] = alphabet[rng() % (sizeof alphabet - 1)];
          break;
        case 1: /* delete */
          if (at < len) {
            memmove(text + at, text + at + 1, len - at - 1);
            len--;
          }
          break;
        default: /* insert */
          if (len < sizeof text - 1) {
            memmove(text + at + 1, text + at, len - at);
            text[at] = alphabet[rng() % (sizeof alphabet - 1)];
            len++;
          }
        }
      }
    } else {
      len = rng() % 40;
      for (size_t k = 0; k < len; k++)
        text[k] = (char)(rng() & 0xff);
    }
    int64_t ns;
    const char *err = NULL;
    if (cli_time_parse(&ns, text, len, &err) == 0) {
      char buf[CLI_TIME_BUFSZ];
      int64_t back;
      cli_time_format(buf, ns);
      cr_assert_eq(cli_time_parse(&back, buf, strlen(buf), NULL), 0);
      cr_assert_eq(back, ns);
    } else {
      cr_assert_not_null(err);
    }
  }
}
