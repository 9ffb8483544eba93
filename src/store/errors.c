/*
 * evstore — error codes, their names and messages, and the thread-local
 * detail of the last failure.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store/internal.h"

/* The analyzer's models of these two (store/internal.h) are for callers. */
#undef evs__err
#undef evs__lmdb_err

static _Thread_local char evs__detail[512];

const char *evs_strerror(int code) {
  switch (code) {
  case 0:
    return "success";
#define EVS__ERRNO_MSG(name, value, msg)                                       \
  case EVS_##name:                                                             \
    return msg;
    EVS_ERRNO_MAP(EVS__ERRNO_MSG)
#undef EVS__ERRNO_MSG
  default:
    break;
  }
  if (code < 0 && code > -4096)
    return strerror(-code);
  return "unknown error";
}

const char *evs_err_name(int code) {
  switch (code) {
  case 0:
    return "OK";
#define EVS__ERRNO_NAME(name, value, msg)                                      \
  case EVS_##name:                                                             \
    return "EVS_" #name;
    EVS_ERRNO_MAP(EVS__ERRNO_NAME)
#undef EVS__ERRNO_NAME
  case -ENOSPC:
    return "ENOSPC";
  case -ENOENT:
    return "ENOENT";
  case -EACCES:
    return "EACCES";
  case -EIO:
    return "EIO";
  case -ENOMEM:
    return "ENOMEM";
  case -EEXIST:
    return "EEXIST";
  case -ENOTDIR:
    return "ENOTDIR";
  case -EROFS:
    return "EROFS";
  case -EAGAIN:
    return "EAGAIN";
  case -EDQUOT:
    return "EDQUOT";
  default:
    return "EVS_EUNKNOWN";
  }
}

const char *evs_last_error(void) {
  return evs__detail;
}

void evs__clear_error(void) {
  evs__detail[0] = '\0';
}

void evs__set_detail(const char *detail) {
  snprintf(evs__detail, sizeof evs__detail, "%s", detail ? detail : "");
}

int evs__err(int code, const char *fmt, ...) {
  /* Format aside first: callers may pass evs_last_error() itself to wrap
   * a detail in context ("event at position N: %s"). */
  char buf[sizeof evs__detail];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  memcpy(evs__detail, buf, sizeof buf);
  return code;
}

int evs__lmdb_err(int rc) {
  switch (rc) {
  case MDB_SUCCESS:
    return 0;
  case MDB_NOTFOUND:
    return EVS_ENOTFOUND;
  case MDB_MAP_FULL:
    return EVS_EMAPFULL;
  case MDB_READERS_FULL:
    return EVS_EBUSY;
  case MDB_CORRUPTED:
  case MDB_PAGE_NOTFOUND:
  case MDB_INVALID:
    return EVS_ECORRUPT;
  case MDB_VERSION_MISMATCH:
    return EVS_EFORMAT;
  case MDB_TXN_FULL:
  case MDB_BAD_VALSIZE:
    return EVS_ETOOLARGE;
  case MDB_PANIC:
  case MDB_BAD_TXN:
    return EVS_EIO;
  case MDB_KEYEXIST:
    return EVS_ECORRUPT;
  default:
    if (rc > 0)
      return -rc; /* LMDB passes errno values through as positive ints */
    return EVS_EIO;
  }
}
