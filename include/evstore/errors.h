/*
 * evstore — error codes.
 *
 * Every fallible evstore call returns an int: 0 (or a documented positive
 * value) on success, a negative EVS_E* code on failure. Codes from the
 * operating system are reported as -errno (for example -ENOSPC); evstore's
 * own codes live in a block far away from errno values.
 *
 * evs_strerror() and evs_err_name() describe a code; evs_last_error() gives
 * the calling thread's detail message for the last failed call (for example
 * "stream 'order-1': expected version 4, actual 7").
 */
#ifndef EVSTORE_ERRORS_H
#define EVSTORE_ERRORS_H

#include "evstore/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, message) — the one list of evstore's own codes. */
#define EVS_ERRNO_MAP(XX)                                                     \
  XX(EINVAL, -20001, "invalid argument")                                      \
  XX(ENOMEM, -20002, "out of memory")                                         \
  XX(EWRONGVERSION, -20003, "wrong expected version")                         \
  XX(EIDCONFLICT, -20004, "event id already used elsewhere")                  \
  XX(ENOSTREAM, -20005, "stream not found")                                   \
  XX(ESTREAMDELETED, -20006, "stream is tombstoned (hard-deleted)")           \
  XX(EBADNAME, -20007, "invalid stream or event type name")                   \
  XX(ETOOLARGE, -20008, "event or append too large")                          \
  XX(EMAPFULL, -20009, "store is full (map size limit reached)")              \
  XX(ECORRUPT, -20010, "store data is corrupt")                               \
  XX(EFORMAT, -20011, "store format not supported by this library")          \
  XX(EBUSY, -20012, "resource busy")                                          \
  XX(ECLOSED, -20013, "store is closing")                                     \
  XX(EIO, -20014, "input/output error")                                       \
  XX(ETIMEDOUT, -20015, "timed out")                                          \
  XX(ENOTFOUND, -20016, "not found")                                          \
  XX(ECANCELED, -20017, "operation canceled")                                 \
  XX(EPROTO, -20018, "protocol error")                                        \
  XX(EAUTH, -20019, "not authorized")                                         \
  XX(ECONN, -20020, "connection error")                                       \
  XX(EHANDLER, -20021, "projection handler failed")                           \
  XX(ESTOPPED, -20022, "stopped")

typedef enum evs_errno {
#define EVS__ERRNO_ENUM(name, value, msg) EVS_##name = (value),
  EVS_ERRNO_MAP(EVS__ERRNO_ENUM)
#undef EVS__ERRNO_ENUM
  EVS__ERRNO_END = -20000
} evs_errno;

/*
 * Returns a static, human-readable description of `code`: evstore's own
 * codes, -errno values and 0. Never NULL.
 */
EVS_EXTERN const char *evs_strerror(int code);

/*
 * Returns the symbolic name of `code` ("EVS_EWRONGVERSION", "ENOSPC",
 * "OK"), or "EVS_EUNKNOWN". Never NULL.
 */
EVS_EXTERN const char *evs_err_name(int code);

/*
 * Returns the calling thread's detail message for the most recent failed
 * evstore call made by this thread, or "" if none. The string is owned by
 * the library and valid until this thread's next evstore call.
 */
EVS_EXTERN const char *evs_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* EVSTORE_ERRORS_H */
