/*
 * evstore-cli — the remote backend (--connect HOST:PORT).
 *
 * The evstored server and its C client are not part of this build yet.
 * When they are, this file implements cli_backend_ops over the client
 * library, translating its replies into the same evs_* types and EVS_E*
 * codes as the local backend, so that every command prints the same output
 * in both modes.
 */
#include "backend.h"

int cli_backend_remote_open(cli_backend **out, const char *host_port,
                            const char *token, const char **detail) {
  (void)host_port;
  (void)token;
  *out = NULL;
  *detail = "remote stores (--connect, $EVSTORE_CONNECT) are not available "
            "yet in this build: evstore-cli was built without the evstored "
            "client; use --db DIR (or $EVSTORE_DB) for a local store";
  return EVS_ECONN;
}
