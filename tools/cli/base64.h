/*
 * evstore-cli — standard base64 (RFC 4648 section 4, with padding).
 */
#ifndef EVSTORE_CLI_BASE64_H
#define EVSTORE_CLI_BASE64_H

#include <stddef.h>

/* Length of the encoding of `n` bytes (without a NUL). */
size_t cli_base64_encoded_len(size_t n);

/* Encodes src[0..n) into out (cli_base64_encoded_len(n) bytes, no NUL). */
void cli_base64_encode(char *out, const void *src, size_t n);

/*
 * Decodes text[0..len) into out (at least len / 4 * 3 + 3 bytes; may be
 * `text` itself). Padding is optional; whitespace and other characters are
 * rejected. Returns 0 and sets *out_len, or -1 when the text is not base64.
 */
int cli_base64_decode(void *out, size_t *out_len, const char *text,
                      size_t len);

#endif /* EVSTORE_CLI_BASE64_H */
