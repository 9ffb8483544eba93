/*
 * evstore-cli — TIME parsing and formatting (see timeparse.h).
 *
 * Calendar arithmetic uses Howard Hinnant's days_from_civil and
 * civil_from_days, which are exact for the proleptic Gregorian calendar and
 * need no tables or libc time functions.
 */
#include "timeparse.h"

#include <stdio.h>
#include <string.h>

#define NS_PER_SEC 1000000000LL
/* INT64_MAX = 9223372036.854775807 s; INT64_MIN = -9223372036.854775808 s */
#define MAX_SECS 9223372036LL
#define MAX_FRAC_POS 854775807LL
#define MAX_FRAC_NEG 854775808LL

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = (unsigned)(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = (unsigned)(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int is_leap(int64_t y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m) {
  static const unsigned char dim[12] = {31, 28, 31, 30, 31, 30,
                                        31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29u : dim[m - 1];
}

/* Reads exactly `n` decimal digits at text[*i]. */
static int digits(const char *text, size_t len, size_t *i, unsigned n,
                  unsigned *out) {
  unsigned v = 0;
  if (len - *i < n)
    return -1;
  for (unsigned k = 0; k < n; k++) {
    unsigned char c = (unsigned char)text[*i + k];
    if (c < '0' || c > '9')
      return -1;
    v = v * 10 + (c - '0');
  }
  *i += n;
  *out = v;
  return 0;
}

/* Reads '.' and 1..9 digits at text[*i] (if there is a '.') into *frac_ns. */
static int fraction(const char *text, size_t len, size_t *i, int64_t *frac_ns,
                    const char **err) {
  *frac_ns = 0;
  if (*i >= len || text[*i] != '.')
    return 0;
  (*i)++;
  unsigned n = 0;
  int64_t v = 0;
  while (*i < len && text[*i] >= '0' && text[*i] <= '9') {
    if (++n > 9) {
      *err = "the fraction of a second has more than 9 digits";
      return -1;
    }
    v = v * 10 + (text[*i] - '0');
    (*i)++;
  }
  if (n == 0) {
    *err = "expected digits after the decimal point";
    return -1;
  }
  for (; n < 9; n++)
    v *= 10;
  *frac_ns = v;
  return 0;
}

/* Combines a sign, whole seconds and nanoseconds, checking the range. */
static int combine(int64_t *out, int negative, int64_t secs, int64_t frac,
                   const char **err) {
  /* secs may itself be negative (RFC 3339 before 1970); normalise to a
   * magnitude and a sign. */
  if (secs < 0) {
    negative = !negative;
    if (frac) {
      secs = -secs - 1;
      frac = NS_PER_SEC - frac;
    } else {
      secs = -secs;
    }
  }
  if (secs > MAX_SECS ||
      (secs == MAX_SECS && frac > (negative ? MAX_FRAC_NEG : MAX_FRAC_POS))) {
    *err = "out of range (1677-09-21 .. 2262-04-11)";
    return -1;
  }
  uint64_t mag = (uint64_t)secs * (uint64_t)NS_PER_SEC + (uint64_t)frac;
  if (negative)
    *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
  else
    *out = (int64_t)mag;
  return 0;
}

static int parse_unix(int64_t *out, const char *text, size_t len,
                      const char **err) {
  size_t i = 1; /* after '@' */
  int negative = 0;
  if (i < len && (text[i] == '-' || text[i] == '+')) {
    negative = text[i] == '-';
    i++;
  }
  int64_t secs = 0;
  unsigned n = 0;
  while (i < len && text[i] >= '0' && text[i] <= '9') {
    secs = secs * 10 + (text[i] - '0');
    if (secs > MAX_SECS) {
      *err = "out of range (1677-09-21 .. 2262-04-11)";
      return -1;
    }
    n++;
    i++;
  }
  if (n == 0) {
    *err = "expected Unix seconds after '@' (like @1764237600.5)";
    return -1;
  }
  int64_t frac;
  if (fraction(text, len, &i, &frac, err))
    return -1;
  if (i != len) {
    *err = "unexpected characters after the Unix seconds";
    return -1;
  }
  return combine(out, negative, secs, frac, err);
}

static int parse_rfc3339(int64_t *out, const char *text, size_t len,
                         const char **err) {
  size_t i = 0;
  unsigned year, month, day, hour, minute, second;
  if (digits(text, len, &i, 4, &year) || i >= len || text[i++] != '-' ||
      digits(text, len, &i, 2, &month) || i >= len || text[i++] != '-' ||
      digits(text, len, &i, 2, &day)) {
    *err = "expected a date YYYY-MM-DD";
    return -1;
  }
  if (month < 1 || month > 12) {
    *err = "month out of range";
    return -1;
  }
  if (day < 1 || day > days_in_month(year, month)) {
    *err = "day out of range for that month";
    return -1;
  }
  if (i >= len) {
    *err = "expected a time after the date (like 2026-11-27T10:00:00Z)";
    return -1;
  }
  if (text[i] != 'T' && text[i] != 't' && text[i] != ' ') {
    *err = "expected 'T' between the date and the time";
    return -1;
  }
  i++;
  if (digits(text, len, &i, 2, &hour) || i >= len || text[i++] != ':' ||
      digits(text, len, &i, 2, &minute) || i >= len || text[i++] != ':' ||
      digits(text, len, &i, 2, &second)) {
    *err = "expected a time HH:MM:SS";
    return -1;
  }
  if (hour > 23 || minute > 59 || second > 60 ||
      (second == 60 && minute != 59)) {
    *err = "time of day out of range";
    return -1;
  }
  int64_t frac;
  if (fraction(text, len, &i, &frac, err))
    return -1;
  if (i >= len) {
    *err = "expected a zone: 'Z' or an offset like +02:00";
    return -1;
  }
  int64_t offset = 0;
  if (text[i] == 'Z' || text[i] == 'z') {
    i++;
  } else if (text[i] == '+' || text[i] == '-') {
    int sign = text[i] == '-' ? -1 : 1;
    unsigned oh, om;
    i++;
    if (digits(text, len, &i, 2, &oh) || i >= len || text[i++] != ':' ||
        digits(text, len, &i, 2, &om)) {
      *err = "expected a zone offset +HH:MM or -HH:MM";
      return -1;
    }
    if (oh > 23 || om > 59) {
      *err = "zone offset out of range";
      return -1;
    }
    offset = sign * (int64_t)(oh * 3600 + om * 60);
  } else {
    *err = "expected a zone: 'Z' or an offset like +02:00";
    return -1;
  }
  if (i != len) {
    *err = "unexpected characters after the zone";
    return -1;
  }
  int64_t secs = days_from_civil(year, month, day) * 86400 +
                 (int64_t)hour * 3600 + (int64_t)minute * 60 +
                 (int64_t)second - offset;
  return combine(out, 0, secs, frac, err);
}

int cli_time_parse(int64_t *out_ns, const char *text, size_t len,
                   const char **err) {
  const char *dummy;
  if (err == NULL)
    err = &dummy;
  *err = NULL;
  if (out_ns == NULL || (text == NULL && len)) {
    *err = "no output or text";
    return -1;
  }
  if (len == 0) {
    *err = "empty time";
    return -1;
  }
  int64_t v;
  int rc = text[0] == '@' ? parse_unix(&v, text, len, err)
                          : parse_rfc3339(&v, text, len, err);
  if (rc == 0)
    *out_ns = v;
  return rc;
}

char *cli_time_format(char out[CLI_TIME_BUFSZ], int64_t ns) {
  int64_t secs = ns / NS_PER_SEC;
  int64_t frac = ns % NS_PER_SEC;
  if (frac < 0) {
    frac += NS_PER_SEC;
    secs--;
  }
  int64_t days = secs / 86400;
  int64_t sod = secs % 86400;
  if (sod < 0) {
    sod += 86400;
    days--;
  }
  int64_t y;
  unsigned m, d;
  civil_from_days(days, &y, &m, &d);
  /* Every int64_t gives a year in 1677..2262: 30 characters. The wide
   * buffer only keeps the compiler's truncation analysis quiet. */
  char tmp[96];
  snprintf(tmp, sizeof tmp, "%04lld-%02u-%02uT%02u:%02u:%02u.%09lldZ",
           (long long)y, m, d, (unsigned)(sod / 3600),
           (unsigned)(sod / 60 % 60), (unsigned)(sod % 60), (long long)frac);
  memcpy(out, tmp, CLI_TIME_BUFSZ - 1);
  out[CLI_TIME_BUFSZ - 1] = '\0';
  return out;
}
