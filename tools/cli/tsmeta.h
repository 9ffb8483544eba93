/*
 * evstore-cli — keeping an imported event's original timestamp in its
 * metadata.
 *
 * The store stamps every event with its own commit time, and its public API
 * has no way to append with another timestamp. `import` therefore records
 * the original commit time of each event inside the metadata it stores,
 * and `export` takes it back out, so that export -> import -> export gives
 * the same lines. The stored metadata is one of these (T is the original
 * time as written by cli_time_format(), always 30 characters):
 *
 *   original metadata empty:
 *     {"$original_timestamp":"T"}
 *   original metadata a non-empty JSON object without those two keys:
 *     the object with ,"$original_timestamp":"T" added as its last member
 *   anything else (another JSON value, {}, bytes that are not JSON):
 *     {"$original_timestamp":"T","$original_metadata":V}
 *     where V is the JSON value, or {"$base64":"..."} for other bytes
 *
 * Both functions are pure.
 */
#ifndef EVSTORE_CLI_TSMETA_H
#define EVSTORE_CLI_TSMETA_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define CLI_TSMETA_KEY "$original_timestamp"
#define CLI_TSMETA_MD_KEY "$original_metadata"

/* Appends to `out` the metadata to store for (md[0..md_len), ts_ns). */
void cli_tsmeta_wrap(cli_buf *out, const void *md, size_t md_len,
                     int64_t ts_ns);

/*
 * If md[0..md_len) was made by cli_tsmeta_wrap(), returns 1, sets *ts_ns
 * and sets *orig / *orig_len to the original metadata (pointing into md or
 * into `scratch`, which is reset first). Otherwise returns 0.
 */
int cli_tsmeta_unwrap(int64_t *ts_ns, const void **orig, size_t *orig_len,
                      cli_buf *scratch, const void *md, size_t md_len);

#endif /* EVSTORE_CLI_TSMETA_H */
