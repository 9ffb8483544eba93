/*
 * A consumer of an installed evstore: checks that the headers and the
 * library agree on the version, and that a store opens, takes an event and
 * gives it back.
 */
#include <stdio.h>
#include <string.h>

#include <evstore/evstore.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: consumer <store directory>\n");
    return 2;
  }
  if (strcmp(evs_version_string(), EVS_VERSION_STRING) != 0) {
    fprintf(stderr, "consumer: library %s, headers %s\n", evs_version_string(),
            EVS_VERSION_STRING);
    return 1;
  }

  evs_store *store = NULL;
  int rc = evs_store_open(&store, argv[1], NULL);
  if (rc < 0) {
    fprintf(stderr, "consumer: open: %s\n", evs_strerror(rc));
    return 1;
  }
  evs_event_data ev;
  memset(&ev, 0, sizeof(ev));
  ev.type = "Installed";
  ev.data = "{}";
  ev.data_len = 2;
  rc = evs_append(store, "consumer-1", EVS_EXPECT_NO_STREAM, &ev, 1, NULL);
  if (rc < 0) {
    fprintf(stderr, "consumer: append: %s\n", evs_strerror(rc));
    evs_store_close(store);
    return 1;
  }

  evs_read_options opts = EVS_READ_OPTIONS_INIT;
  evs_iter *it = NULL;
  const evs_event *got = NULL;
  rc = evs_read_stream(&it, store, "consumer-1", &opts);
  if (rc == 0)
    rc = evs_iter_next(it, &got);
  int ok = rc == 1 && got->version == 0 && got->data.len == 2;
  evs_iter_free(it);
  evs_store_close(store);
  if (!ok) {
    fprintf(stderr, "consumer: read back failed (%d)\n", rc);
    return 1;
  }
  printf("consumer: evstore %s ok\n", evs_version_string());
  return 0;
}
