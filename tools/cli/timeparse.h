/*
 * evstore-cli — parsing and formatting TIME arguments.
 *
 * A TIME is either an RFC 3339 date-time
 *
 *   2026-11-27T10:00:00Z
 *   2026-11-27T10:00:00.123456789+02:00
 *
 * (the separator may be 'T', 't' or one space; the zone 'Z', 'z' or an
 * offset +HH:MM / -HH:MM; the fraction has 1 to 9 digits; second 60 is
 * accepted only as a leap second at minute 59 and counts as the first
 * instant of the next minute), or '@' followed by Unix seconds with an
 * optional sign and an optional fraction of 1 to 9 digits
 * (@1764237600, @1764237600.5, @-1.25).
 *
 * The result is nanoseconds since the Unix epoch, UTC, as an int64_t: the
 * range is 1677-09-21T00:12:43.145224192Z .. 2262-04-11T23:47:16.854775807Z.
 *
 * Both functions are pure (no allocation, no global state, no locale), so
 * the parser can be fuzzed directly.
 */
#ifndef EVSTORE_CLI_TIMEPARSE_H
#define EVSTORE_CLI_TIMEPARSE_H

#include <stddef.h>
#include <stdint.h>

/* Size of the buffer cli_time_format() writes (30 characters and a NUL). */
#define CLI_TIME_BUFSZ 32

/*
 * Parses exactly `len` bytes of `text` (which need not be NUL-terminated
 * and may contain any bytes). Returns 0 and sets *out_ns, or -1 and sets
 * *err (may be NULL) to a static English message saying what is wrong;
 * *out_ns is left alone on failure.
 */
int cli_time_parse(int64_t *out_ns, const char *text, size_t len,
                   const char **err);

/*
 * Formats `ns` (nanoseconds since the epoch) as RFC 3339 in UTC with
 * exactly nine fraction digits: "2026-11-27T10:00:00.123456789Z". Every
 * int64_t value is accepted. Returns `out`.
 */
char *cli_time_format(char out[CLI_TIME_BUFSZ], int64_t ns);

#endif /* EVSTORE_CLI_TIMEPARSE_H */
