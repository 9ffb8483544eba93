/*
 * UUID helpers: parse, format, v7 generation.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/evstore.h"
#include "testutil.h"

TestSuite(store_uuid, .timeout = 30);

Test(store_uuid, format_and_parse_round_trip) {
  static const char *texts[] = {
      "00000000-0000-0000-0000-000000000000",
      "01890a5d-ac96-774b-bcce-b302099a8057",
      "ffffffff-ffff-ffff-ffff-ffffffffffff",
      "123e4567-e89b-12d3-a456-426614174000",
  };
  for (size_t i = 0; i < 4; i++) {
    evs_uuid u;
    int rc = evs_uuid_parse(&u, texts[i], 36);
    cr_assert_eq(rc, 0, "%s: %s", texts[i], evs_err_name(rc));
    char out[37];
    memset(out, 'x', sizeof out);
    evs_uuid_format(out, &u);
    cr_assert_eq(out[36], '\0');
    cr_assert_str_eq(out, texts[i]);
  }
  evs_uuid u;
  cr_assert_eq(evs_uuid_parse(&u, texts[1], 36), 0);
  static const uint8_t want[16] = {0x01, 0x89, 0x0a, 0x5d, 0xac, 0x96,
                                   0x77, 0x4b, 0xbc, 0xce, 0xb3, 0x02,
                                   0x09, 0x9a, 0x80, 0x57};
  cr_assert_eq(memcmp(u.bytes, want, 16), 0, "byte order");
}

Test(store_uuid, parse_accepts_upper_case_and_formats_lower) {
  evs_uuid u;
  cr_assert_eq(evs_uuid_parse(&u, "01890A5D-AC96-774B-BCCE-B302099A8057", 36),
               0);
  char out[37];
  evs_uuid_format(out, &u);
  cr_assert_str_eq(out, "01890a5d-ac96-774b-bcce-b302099a8057");
}

Test(store_uuid, parse_uses_exactly_len_bytes) {
  /* Not NUL-terminated: the text is followed by garbage. */
  char buf[64];
  memcpy(buf, "01890a5d-ac96-774b-bcce-b302099a8057zzzz", 40);
  evs_uuid u;
  cr_assert_eq(evs_uuid_parse(&u, buf, 36), 0);
  cr_assert_eq(evs_uuid_parse(&u, buf, 40), EVS_EINVAL);
  cr_assert_eq(evs_uuid_parse(&u, buf, 35), EVS_EINVAL);
}

Test(store_uuid, parse_rejects_bad_strings) {
  static const char *bad[] = {
      "",
      "01890a5d",
      "01890a5dac96774bbcceb302099a8057",          /* no dashes */
      "01890a5d-ac96-774b-bcce-b302099a805",       /* short */
      "01890a5d-ac96-774b-bcce-b302099a80577",     /* long */
      "01890a5d-ac96-774b-bcce-b302099a805g",      /* not hex */
      "01890a5d-ac96-774b-bcceb-302099a8057",      /* dash misplaced */
      "01890a5dxac96-774b-bcce-b302099a8057",      /* separator */
      "{01890a5d-ac96-774b-bcce-b302099a8057}",    /* braces */
      " 1890a5d-ac96-774b-bcce-b302099a8057",      /* space */
      "01890a5d-ac96-774b-bcce-b302099a805\xc3",   /* non-ASCII */
      "01890a5d-+c96-774b-bcce-b302099a8057",      /* sign */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    evs_uuid u;
    int rc = evs_uuid_parse(&u, bad[i], strlen(bad[i]));
    cr_assert_eq(rc, EVS_EINVAL, "accepted '%s'", bad[i]);
  }
}

Test(store_uuid, v7_is_strictly_increasing_and_well_formed) {
  enum { N = 10000 };
  evs_uuid prev, cur;
  evs_uuid_v7(&prev);
  int64_t now_ms = tu_now_ns() / 1000000;
  for (int i = 0; i < N; i++) {
    evs_uuid_v7(&cur);
    cr_assert_gt(memcmp(cur.bytes, prev.bytes, 16), 0,
                 "uuid %d not greater than the previous one", i);
    cr_assert_eq(cur.bytes[6] >> 4, 7, "version nibble of uuid %d", i);
    cr_assert_eq(cur.bytes[8] & 0xc0, 0x80, "variant of uuid %d", i);
    cr_assert_not(evs_uuid_is_nil(&cur));
    prev = cur;
  }
  /* The first 48 bits are the Unix time in ms. */
  uint64_t ms = 0;
  for (int i = 0; i < 6; i++)
    ms = ms << 8 | cur.bytes[i];
  cr_assert((int64_t)ms >= now_ms - 5000 && (int64_t)ms <= now_ms + 5000,
            "timestamp %llu ms vs clock %lld ms", (unsigned long long)ms,
            (long long)now_ms);
}

Test(store_uuid, is_nil) {
  evs_uuid u;
  memset(&u, 0, sizeof u);
  cr_assert(evs_uuid_is_nil(&u));
  u.bytes[15] = 1;
  cr_assert_not(evs_uuid_is_nil(&u));
  u.bytes[15] = 0;
  u.bytes[0] = 0x80;
  cr_assert_not(evs_uuid_is_nil(&u));
}
