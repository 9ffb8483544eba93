/*
 * evstore-cli — a progress bar on stderr for long operations.
 *
 * Drawn only when enabled (the caller passes whether stderr is a terminal
 * and the output does not go to the same terminal); otherwise every call is
 * a no-op, so scripts and pipes see nothing extra.
 */
#ifndef EVSTORE_CLI_PROGRESS_H
#define EVSTORE_CLI_PROGRESS_H

#include <stdint.h>

typedef struct cli_progress {
  int enabled;
  int bytes;         /* counts are bytes: print sizes */
  const char *label; /* "import", "verify", ... */
  uint64_t total;    /* 0 = unknown */
  uint64_t done;
  int64_t start_ns, last_ns;
  int drawn;
} cli_progress;

void cli_progress_start(cli_progress *p, const char *label, uint64_t total,
                        int bytes, int enabled);
/* Records progress; redraws at most ten times a second. */
void cli_progress_update(cli_progress *p, uint64_t done);
/* Erases the bar. */
void cli_progress_finish(cli_progress *p);

#endif /* EVSTORE_CLI_PROGRESS_H */
