/*
 * hello: the smallest program that embeds evstore.
 *
 * It opens (creating it if needed) the store in the directory given as the
 * first argument, default ./var/hello, appends two events to the stream
 * "order-1" and reads the whole stream back. Run it twice: the second run
 * appends versions 2 and 3 after the two events of the first.
 *
 * Uses only the public API, <evstore/evstore.h>.
 */
#include <stdio.h>
#include <string.h>

#include <evstore/evstore.h>

/*
 * Prints what failed, with the library's detail message, and returns 1.
 * The detail is copied first: it is only valid until this thread's next
 * evstore call.
 */
static int fail(const char *what, int rc) {
  char detail[512];
  snprintf(detail, sizeof(detail), "%s", evs_last_error());
  fprintf(stderr, "evstore-hello: %s: %s%s%s\n", what, evs_strerror(rc),
          detail[0] ? ": " : "", detail);
  return 1;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "./var/hello";
  const char *placed = "{\"sku\":\"A-1\",\"qty\":2}";
  const char *paid = "{\"amount\":\"19.90\",\"currency\":\"EUR\"}";
  evs_store *store = NULL;
  int rc = evs_store_open(&store, path, NULL);
  if (rc < 0)
    return fail(path, rc);

  /* Zero ids: the store generates a UUIDv7 for each event. */
  evs_event_data events[2];
  memset(events, 0, sizeof(events));
  events[0].type = "OrderPlaced";
  events[0].data = placed;
  events[0].data_len = strlen(placed);
  events[1].type = "OrderPaid";
  events[1].data = paid;
  events[1].data_len = strlen(paid);

  evs_append_result res;
  rc = evs_append(store, "order-1", EVS_EXPECT_ANY, events, 2, &res);
  if (rc < 0) {
    fail("append", rc);
    evs_store_close(store);
    return 1;
  }
  printf("appended versions %lld..%lld at positions %llu..%llu\n",
         (long long)res.first_version, (long long)res.last_version,
         (unsigned long long)res.first_position,
         (unsigned long long)res.last_position);

  evs_read_options opts = EVS_READ_OPTIONS_INIT;
  evs_iter *it = NULL;
  rc = evs_read_stream(&it, store, "order-1", &opts);
  if (rc < 0) {
    fail("read", rc);
    evs_store_close(store);
    return 1;
  }
  const evs_event *ev;
  while ((rc = evs_iter_next(it, &ev)) == 1) {
    /* Slices are not NUL-terminated, and live until the next call. */
    printf("version %lld position %llu type %.*s data %.*s\n",
           (long long)ev->version, (unsigned long long)ev->position,
           (int)ev->type.len, (const char *)ev->type.data, (int)ev->data.len,
           (const char *)ev->data.data);
  }
  int status = rc < 0 ? fail("read", rc) : 0;
  evs_iter_free(it);
  evs_store_close(store);
  return status;
}
