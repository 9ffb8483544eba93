/*
 * evstore — library version and export macros.
 */
#ifndef EVSTORE_VERSION_H
#define EVSTORE_VERSION_H

#define EVS_VERSION_MAJOR 0
#define EVS_VERSION_MINOR 1
#define EVS_VERSION_PATCH 0
#define EVS_VERSION_STRING "0.1.0"

/* Version of the on-disk format written by this library (2: stream records
 * carry a checksum; 3: an append no longer rewrites its stream's record, the
 * head is the last entry of the stream's index). Format 2 stores open, and
 * are marked format 3 by the first writable open. */
#define EVS_FORMAT_VERSION 3

#if defined(__GNUC__) || defined(__clang__)
#define EVS_EXTERN __attribute__((visibility("default")))
#else
#define EVS_EXTERN
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Returns EVS_VERSION_STRING of the linked library. */
EVS_EXTERN const char *evs_version_string(void);

#ifdef __cplusplus
}
#endif

#endif /* EVSTORE_VERSION_H */
