/*
 * evstore-cli — a growable byte buffer and JSON text writers.
 *
 * Out of memory is fatal in the CLI: the buffer functions print a message
 * and exit(1) rather than return errors to every caller.
 */
#ifndef EVSTORE_CLI_BUF_H
#define EVSTORE_CLI_BUF_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cli_buf {
  char *data;
  size_t len, cap;
} cli_buf;

#define CLI_BUF_INIT                                                           \
  { NULL, 0, 0 }

void cli_buf_free(cli_buf *b);
void cli_buf_reserve(cli_buf *b, size_t extra);
void cli_buf_put(cli_buf *b, const void *p, size_t n);
void cli_buf_putc(cli_buf *b, char c);
void cli_buf_puts(cli_buf *b, const char *s);
void cli_buf_printf(cli_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Makes data a NUL-terminated string (the NUL is not counted in len). */
const char *cli_buf_cstr(cli_buf *b);

/* malloc that exits on failure. */
void *cli_xmalloc(size_t n);
char *cli_xstrndup(const char *s, size_t n);

/* A JSON string literal for s[0..n); invalid UTF-8 becomes U+FFFD. */
void cli_buf_json_str(cli_buf *b, const char *s, size_t n);
void cli_buf_json_cstr(cli_buf *b, const char *s);

/* A JSON number for a double: the shortest form that reads back exactly. */
void cli_buf_json_real(cli_buf *b, double v);

/* Serializes a jansson value compactly (with shortest-exact reals). */
void cli_buf_json_value(cli_buf *b, const json_t *v);

/*
 * Writes the JSON value json[0..len) again, keeping the text of every
 * number and literal as it is (a number is never read into a double or an
 * integer). The text must be valid JSON (cli_json_check_depth()).
 *  - indent 0: compact, each string re-encoded by cli_buf_json_str(), as
 *    cli_buf_json_value() writes values;
 *  - indent N: one member or element per line, N spaces per level, ": "
 *    after member names, {} and [] when empty, strings as they are: the
 *    layout of jansson's JSON_INDENT(N).
 * Does not recurse, whatever the nesting.
 */
void cli_buf_json_text(cli_buf *b, const char *json, size_t len, int indent);

/* {"$base64":"..."} for p[0..n). */
void cli_buf_json_base64(cli_buf *b, const void *p, size_t n);

/*
 * How stored bytes become a JSON value in an output line.
 *  CLI_BYTES_DISPLAY: JSON is written as JSON (compacted when it has line
 *    breaks); bytes that are not JSON as {"$base64":...}.
 *  CLI_BYTES_EXACT: like DISPLAY, but JSON that would not read back as the
 *    same bytes (line breaks, surrounding whitespace) is written as
 *    {"$base64":...}, so that export/import is byte-exact.
 * In both modes JSON text that is itself a {"$base64":...} object is
 * written as base64 so that it cannot be mistaken for encoded bytes.
 * With `empty_is_null`, zero bytes become null (metadata); in EXACT mode the
 * text "null" then becomes base64 so that it stays distinct.
 */
enum {
  CLI_BYTES_DISPLAY = 0,
  CLI_BYTES_EXACT = 1
};
void cli_buf_json_bytes(cli_buf *b, const void *p, size_t n, int mode,
                        int empty_is_null);

#endif /* EVSTORE_CLI_BUF_H */
