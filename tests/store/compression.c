/*
 * Compression of event data, and detection of corrupted records.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/evstore.h"
#include "testutil.h"

TestSuite(store_compression, .init = tu_setup_dir, .fini = tu_teardown,
          .timeout = 60);

static evs_store_options compress_opts(uint32_t threshold, int level) {
  evs_store_options o = EVS_STORE_OPTIONS_INIT;
  o.compress_threshold = threshold;
  o.compress_level = level;
  return o;
}

static evs_stats full_stats(void) {
  evs_stats st;
  memset(&st, 0, sizeof st);
  int rc = evs_store_stats(tu_store, &st, 1);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  return st;
}

/* Appends one event per size (text or random) to `stream` and reads them
 * back byte for byte. Returns the sum of the sizes. */
static uint64_t round_trip(const char *stream, const size_t *sizes, size_t n,
                           int random) {
  uint64_t total = 0;
  uint8_t **bufs = calloc(n, sizeof *bufs);
  evs_event_data *ev = calloc(n, sizeof *ev);
  cr_assert(bufs && ev);
  for (size_t i = 0; i < n; i++) {
    bufs[i] = malloc(sizes[i] ? sizes[i] : 1);
    cr_assert_not_null(bufs[i]);
    if (random)
      tu_fill_random(bufs[i], sizes[i], i + 1);
    else
      tu_fill_text(bufs[i], sizes[i], i + 1);
    tu_event(&ev[i], "Sized", bufs[i], sizes[i]);
    total += sizes[i];
  }
  int rc = evs_append(tu_store, stream, EVS_EXPECT_ANY, ev, n, NULL);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  tu_evlist l = tu_stream(tu_store, stream, NULL);
  cr_assert_eq(l.n, n);
  for (size_t i = 0; i < n; i++) {
    cr_assert_eq(l.ev[i].data_len, sizes[i], "event %zu: %zu bytes, want %zu",
                 i, l.ev[i].data_len, sizes[i]);
    cr_assert_eq(memcmp(l.ev[i].data, bufs[i], sizes[i]), 0,
                 "event %zu (%zu bytes) differs", i, sizes[i]);
    free(bufs[i]);
  }
  tu_evlist_free(&l);
  free(bufs);
  free(ev);
  return total;
}

Test(store_compression, compressible_data_round_trips_compressed) {
  evs_store_options o = compress_opts(64, 0);
  tu_store = tu_open(tu_dir, &o);
  static const size_t sizes[] = {100, 10 * 1024, 1024 * 1024, 64, 5000};
  uint64_t total = round_trip("c", sizes, 5, 0);
  evs_stats st = full_stats();
  cr_assert_eq(st.events, 5);
  cr_assert_eq(st.data_bytes_raw, total);
  cr_assert_gt(st.compressed_events, 0);
  cr_assert_lt(st.data_bytes_stored, st.data_bytes_raw,
               "stored %llu of %llu raw bytes",
               (unsigned long long)st.data_bytes_stored,
               (unsigned long long)st.data_bytes_raw);
  /* The 1 MiB of repetitive text must shrink a lot. */
  cr_assert_lt(st.data_bytes_stored, total / 4);
  /* Still readable after reopening (decompression does not depend on
   * in-memory state). */
  tu_reopen(&o);
  tu_evlist l = tu_stream(tu_store, "c", NULL);
  cr_assert_eq(l.n, 5);
  cr_assert_eq(l.ev[2].data_len, 1024 * 1024);
  uint8_t *want = malloc(1024 * 1024);
  tu_fill_text(want, 1024 * 1024, 3);
  cr_assert_eq(memcmp(l.ev[2].data, want, 1024 * 1024), 0);
  free(want);
  tu_evlist_free(&l);
}

Test(store_compression, default_options_compress_large_text) {
  tu_store = tu_open(tu_dir, NULL); /* threshold 0 = 256 */
  static const size_t sizes[] = {100, 1024, 10 * 1024};
  round_trip("c", sizes, 3, 0);
  evs_stats st = full_stats();
  cr_assert_geq(st.compressed_events, 2, "the 1 KiB and 10 KiB events");
  cr_assert_leq(st.compressed_events, 2, "100 B is under the threshold");
}

Test(store_compression, threshold_never_disables_compression) {
  evs_store_options o = compress_opts(UINT32_MAX, 0);
  tu_store = tu_open(tu_dir, &o);
  static const size_t sizes[] = {100, 10 * 1024, 1024 * 1024};
  uint64_t total = round_trip("c", sizes, 3, 0);
  evs_stats st = full_stats();
  cr_assert_eq(st.compressed_events, 0);
  cr_assert_eq(st.data_bytes_stored, total);
  cr_assert_eq(st.data_bytes_raw, total);
}

Test(store_compression, below_threshold_is_not_compressed) {
  evs_store_options o = compress_opts(1024, 0);
  tu_store = tu_open(tu_dir, &o);
  static const size_t sizes[] = {500, 1023};
  round_trip("c", sizes, 2, 0);
  evs_stats st = full_stats();
  cr_assert_eq(st.compressed_events, 0);
  static const size_t more[] = {1024};
  round_trip("d", more, 1, 0);
  st = full_stats();
  cr_assert_eq(st.compressed_events, 1, "data of exactly the threshold");
}

Test(store_compression, incompressible_data_is_stored_raw) {
  evs_store_options o = compress_opts(64, 0);
  tu_store = tu_open(tu_dir, &o);
  static const size_t sizes[] = {100, 10 * 1024, 1024 * 1024};
  uint64_t total = round_trip("r", sizes, 3, 1);
  evs_stats st = full_stats();
  cr_assert_eq(st.compressed_events, 0, "compression that does not pay");
  cr_assert_eq(st.data_bytes_stored, total);
}

Test(store_compression, levels_round_trip) {
  static const int levels[] = {1, 3, 9, 19, 22};
  static const size_t sizes[] = {2000, 20000, 200000};
  for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
    evs_store_options o = compress_opts(128, levels[i]);
    if (tu_store)
      evs_store_close(tu_store);
    tu_store = tu_open(tu_dir, &o);
    char stream[16];
    snprintf(stream, sizeof stream, "lvl%d", levels[i]);
    round_trip(stream, sizes, 3, 0);
  }
  evs_stats st = full_stats();
  cr_assert_eq(st.events, 15);
  cr_assert_eq(st.compressed_events, 15);
}

Test(store_compression, metadata_and_empty_data_with_compression) {
  evs_store_options o = compress_opts(1, 0);
  tu_store = tu_open(tu_dir, &o);
  char meta[2000];
  tu_fill_text(meta, sizeof meta, 9);
  evs_event_data ev[3];
  tu_event(&ev[0], "Empty", NULL, 0);
  tu_event(&ev[1], "OneByte", "z", 1);
  tu_event(&ev[2], "MetaOnly", NULL, 0);
  ev[2].metadata = meta;
  ev[2].metadata_len = sizeof meta;
  int rc = evs_append(tu_store, "m", EVS_EXPECT_ANY, ev, 3, NULL);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  tu_evlist l = tu_stream(tu_store, "m", NULL);
  cr_assert_eq(l.n, 3);
  cr_assert_eq(l.ev[0].data_len, 0);
  cr_assert_eq(l.ev[1].data_len, 1);
  cr_assert_eq(((char *)l.ev[1].data)[0], 'z');
  cr_assert_eq(l.ev[2].metadata_len, sizeof meta);
  cr_assert_eq(memcmp(l.ev[2].metadata, meta, sizeof meta), 0);
  tu_evlist_free(&l);
}

/* Writes: p1 small, p2 a compressible 10 KiB event, p3 small. Closes the
 * store, flips a byte in the middle of record `victim` and reopens it;
 * returns the code of that open (tu_store is NULL if it failed). */
static int write_and_corrupt(uint64_t victim, int compressible) {
  evs_store_options o = compress_opts(64, 0);
  tu_store = tu_open(tu_dir, &o);
  char *big = malloc(10 * 1024);
  cr_assert_not_null(big);
  if (compressible)
    tu_fill_text(big, 10 * 1024, 5);
  else
    tu_fill_random(big, 10 * 1024, 5);
  evs_event_data ev[3];
  tu_event(&ev[0], "Small", "{\"a\":1}", 7);
  tu_event(&ev[1], "Big", big, 10 * 1024);
  tu_event(&ev[2], "Small", "{\"a\":3}", 7);
  int rc = evs_append(tu_store, "victim-1", EVS_EXPECT_ANY, ev, 3, NULL);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  evs_stats st = full_stats();
  if (compressible)
    cr_assert_eq(st.compressed_events, 1);
  evs_store_close(tu_store);
  tu_store = NULL;
  free(big);
  uint8_t key[8];
  tu_be64(key, victim);
  size_t len = tu_lmdb_flip_byte(tu_dir, "events", key, 8, SIZE_MAX);
  cr_log_info("flipped byte %zu of the %zu-byte record %llu", len / 2, len,
              (unsigned long long)victim);
  tu_store = NULL;
  rc = evs_store_open(&tu_store, tu_dir, &o);
  if (rc != 0)
    tu_store = NULL;
  return rc;
}

/* Reads $all and asserts: position 1 fine, then EVS_ECORRUPT, sticky. */
static void assert_corrupt_read_at_2(void) {
  evs_iter *it = NULL;
  evs_read_all_options o = EVS_READ_ALL_OPTIONS_INIT;
  cr_assert_eq(evs_read_all(&it, tu_store, &o), 0);
  const evs_event *ev;
  cr_assert_eq(evs_iter_next(it, &ev), 1);
  cr_assert_eq(ev->position, 1);
  int rc = evs_iter_next(it, &ev);
  cr_assert_eq(rc, EVS_ECORRUPT, "reading the damaged record: %s (%d)",
               evs_err_name(rc), rc);
  rc = evs_iter_next(it, &ev);
  cr_assert_eq(rc, EVS_ECORRUPT, "the error is sticky: %s", evs_err_name(rc));
  evs_iter_free(it);

  evs_event *e = NULL;
  rc = evs_read_event(tu_store, 2, &e);
  cr_assert_eq(rc, EVS_ECORRUPT, "evs_read_event: %s", evs_err_name(rc));
  cr_assert_eq(evs_read_event(tu_store, 3, &e), 0);
  evs_event_free(e);

  evs_verify_report vr;
  memset(&vr, 0, sizeof vr);
  rc = evs_store_verify(tu_store, &vr, NULL, NULL);
  cr_assert_eq(rc, 0, "verify ran: %s", evs_err_name(rc));
  cr_assert_gt(vr.errors, 0, "verify missed the damaged record");
}

Test(store_compression, corrupt_compressed_record_is_detected) {
  cr_assert_eq(write_and_corrupt(2, 1), 0, "%s", evs_last_error());
  assert_corrupt_read_at_2();
}

Test(store_compression, corrupt_raw_record_is_detected) {
  cr_assert_eq(write_and_corrupt(2, 0), 0, "%s", evs_last_error());
  assert_corrupt_read_at_2();
}

Test(store_compression, corrupt_small_record_is_detected) {
  cr_assert_eq(write_and_corrupt(1, 1), 0, "%s", evs_last_error());
  evs_iter *it = NULL;
  evs_read_options o = EVS_READ_OPTIONS_INIT;
  int rc = evs_read_stream(&it, tu_store, "victim-1", &o);
  if (rc == 0) {
    const evs_event *ev;
    rc = evs_iter_next(it, &ev);
    evs_iter_free(it);
  }
  cr_assert_eq(rc, EVS_ECORRUPT, "%s", evs_err_name(rc));
  evs_verify_report vr;
  cr_assert_eq(evs_store_verify(tu_store, &vr, NULL, NULL), 0);
  cr_assert_gt(vr.errors, 0);
}

Test(store_compression, every_byte_of_a_record_is_protected) {
  /* Flip each byte of a small record in turn (one at a time, restoring
   * the previous one): every damaged version must read as EVS_ECORRUPT,
   * never as garbage, never crash. */
  evs_store_options o = compress_opts(64, 0);
  tu_store = tu_open(tu_dir, &o);
  char text[300];
  tu_fill_text(text, sizeof text, 1);
  evs_event_data ev;
  tu_event(&ev, "T", text, sizeof text);
  ev.metadata = "meta";
  ev.metadata_len = 4;
  cr_assert_eq(evs_append(tu_store, "b", EVS_EXPECT_ANY, &ev, 1, NULL), 0);
  /* Record 1 must not be the head: opening a store reads its head record,
   * and evs_store_open may refuse a damaged head with EVS_ECORRUPT. */
  tu_append_ok(tu_store, "after", EVS_EXPECT_ANY, 1, NULL);
  evs_store_close(tu_store);
  tu_store = NULL;
  uint8_t key[8];
  tu_be64(key, 1);
  size_t len = tu_lmdb_value_len(tu_dir, "events", key, 8);
  cr_assert_neq(len, SIZE_MAX);
  for (size_t i = 0; i < len; i++) {
    tu_lmdb_flip_byte(tu_dir, "events", key, 8, i);
    tu_store = tu_open(tu_dir, &o);
    evs_event *e = NULL;
    int rc = evs_read_event(tu_store, 1, &e);
    if (rc == 0) {
      /* Only acceptable if the damage did not change what is read. */
      int same = e->data.len == sizeof text &&
                 memcmp(e->data.data, text, sizeof text) == 0 &&
                 e->metadata.len == 4 &&
                 memcmp(e->metadata.data, "meta", 4) == 0 &&
                 e->type.len == 1 && ((const char *)e->type.data)[0] == 'T' &&
                 e->version == 0;
      evs_event_free(e);
      cr_assert(same, "byte %zu of %zu flipped: read succeeded with changed "
                "content", i, len);
    } else {
      cr_assert_eq(rc, EVS_ECORRUPT, "byte %zu of %zu: %s", i, len,
                   evs_err_name(rc));
    }
    evs_store_close(tu_store);
    tu_store = NULL;
    tu_lmdb_flip_byte(tu_dir, "events", key, 8, i); /* restore */
  }
  tu_store = tu_open(tu_dir, &o);
  evs_verify_report vr;
  cr_assert_eq(evs_store_verify(tu_store, &vr, NULL, NULL), 0);
  cr_assert_eq(vr.errors, 0, "restored record still flagged");
}

Test(store_compression, corrupt_head_record_never_crashes) {
  /* The head record is read at open. A damaged head may make the open fail
   * (EVS_ECORRUPT is documented for evs_store_open) or the read fail; it
   * must never crash or hand out garbage. */
  int rc = write_and_corrupt(3, 1);
  if (rc != 0) {
    cr_assert_eq(rc, EVS_ECORRUPT, "open: %s", evs_err_name(rc));
    return;
  }
  evs_event *e = NULL;
  rc = evs_read_event(tu_store, 3, &e);
  if (rc == 0) {
    int same = e->data.len == 7 && memcmp(e->data.data, "{\"a\":3}", 7) == 0;
    evs_event_free(e);
    cr_assert(same, "damaged head read back with changed content");
  } else {
    cr_assert_eq(rc, EVS_ECORRUPT, "%s", evs_err_name(rc));
  }
}

/* ---- trained dictionaries ------------------------------------------------ */

/* A small JSON order event, like the benchmark's: similar field names and
 * values, different numbers. */
static size_t order_json(char *out, size_t cap, unsigned i) {
  static const char *const notes[] = { "leave at the door", "gift wrap",
                                       "call before delivery", "fragile" };
  return (size_t)snprintf(
      out, cap,
      "{\"orderId\":\"ord-%08u\",\"customerId\":\"cust-%05u\","
      "\"amount\":%u.%02u,\"currency\":\"EUR\",\"items\":%u,"
      "\"status\":\"placed\",\"note\":\"%s\"}",
      i * 7919u % 100000000u, i * 31u % 100000u, i * 13u % 1000u, i % 100u,
      1u + i % 9u, notes[i % 4]);
}

/* Appends n order events (numbers from `first`) to `stream`, in calls of
 * 100. Returns the bytes of data appended. */
static uint64_t append_orders(const char *stream, unsigned first, unsigned n) {
  static char bufs[100][256];
  evs_event_data ev[100];
  uint64_t bytes = 0;
  for (unsigned done = 0; done < n;) {
    unsigned k = n - done < 100 ? n - done : 100;
    for (unsigned i = 0; i < k; i++) {
      size_t len = order_json(bufs[i], sizeof bufs[i], first + done + i);
      tu_event(&ev[i], "OrderPlaced", bufs[i], len);
      bytes += len;
    }
    int rc = evs_append(tu_store, stream, EVS_EXPECT_ANY, ev, k, NULL);
    cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
    done += k;
  }
  return bytes;
}

/* Reads `stream` and checks every event against order_json(first + i). */
static void check_orders(const char *stream, unsigned first, unsigned n) {
  tu_evlist l = tu_stream(tu_store, stream, NULL);
  cr_assert_eq(l.n, n, "%s: %zu events, want %u", stream, l.n, n);
  char want[256];
  for (unsigned i = 0; i < n; i++) {
    size_t len = order_json(want, sizeof want, first + i);
    cr_assert_eq(l.ev[i].data_len, len, "event %u: length", i);
    cr_assert_eq(memcmp(l.ev[i].data, want, len), 0, "event %u differs", i);
  }
  tu_evlist_free(&l);
}

Test(store_compression, trained_dictionary_shrinks_small_events) {
  tu_store = tu_open(tu_dir, NULL);
  uint64_t before = append_orders("train", 0, 3000);
  evs_stats s0 = full_stats();
  /* ~170-byte events: under the default threshold, stored as they are. */
  cr_assert_eq(s0.compressed_events, 0);
  uint32_t id = 0;
  int rc = evs_store_train_dictionary(tu_store, 0, 0, &id);
  cr_assert_eq(rc, 0, "%s: %s", evs_err_name(rc), evs_last_error());
  cr_assert_geq(id, 32768u);
  uint64_t after = append_orders("after", 3000, 3000);
  evs_stats s1 = full_stats();
  cr_assert_eq(s1.compressed_events, 3000, "%llu compressed",
               (unsigned long long)s1.compressed_events);
  uint64_t stored_after = s1.data_bytes_stored - s0.data_bytes_stored;
  cr_log_info("dictionary %u: %llu bytes of data stored as %llu (%.2fx)", id,
              (unsigned long long)after, (unsigned long long)stored_after,
              (double)stored_after / (double)after);
  cr_assert_lt(stored_after * 2, after, "a dictionary should halve the data");
  (void)before;
  check_orders("train", 0, 3000);
  check_orders("after", 3000, 3000);
  /* The dictionary is the store's: after a reopen, reads decode and new
   * appends still use it. */
  evs_store_close(tu_store);
  tu_store = tu_open(tu_dir, NULL);
  check_orders("after", 3000, 3000);
  append_orders("reopened", 6000, 200);
  evs_stats s2 = full_stats();
  cr_assert_eq(s2.compressed_events, 3200);
  check_orders("reopened", 6000, 200);
  evs_verify_report vr;
  cr_assert_eq(evs_store_verify(tu_store, &vr, NULL, NULL), 0);
  cr_assert_eq(vr.errors, 0);
}

Test(store_compression, a_new_dictionary_keeps_old_events_readable) {
  tu_store = tu_open(tu_dir, NULL);
  append_orders("a", 0, 1000);
  uint32_t id1 = 0, id2 = 0;
  cr_assert_eq(evs_store_train_dictionary(tu_store, 4096, 500, &id1), 0, "%s",
               evs_last_error());
  append_orders("b", 1000, 1000);
  cr_assert_eq(evs_store_train_dictionary(tu_store, 8192, 0, &id2), 0, "%s",
               evs_last_error());
  cr_assert_neq(id1, id2);
  append_orders("c", 2000, 1000);
  check_orders("a", 0, 1000);
  check_orders("b", 1000, 1000);
  check_orders("c", 2000, 1000);
  /* A second handle (read-only) decodes both dictionaries' events. */
  evs_store_close(tu_store);
  evs_store_options ro = EVS_STORE_OPTIONS_INIT;
  ro.read_only = 1;
  tu_store = tu_open(tu_dir, &ro);
  check_orders("b", 1000, 1000);
  check_orders("c", 2000, 1000);
  int rc = evs_store_train_dictionary(tu_store, 0, 0, NULL);
  cr_assert_eq(rc, EVS_EINVAL, "read-only: %s", evs_err_name(rc));
}

Test(store_compression, dictionary_arguments_and_empty_store) {
  tu_store = tu_open(tu_dir, NULL);
  cr_assert_eq(evs_store_train_dictionary(NULL, 0, 0, NULL), EVS_EINVAL);
  int rc = evs_store_train_dictionary(tu_store, 0, 0, NULL);
  cr_assert_eq(rc, EVS_EINVAL, "empty store: %s", evs_err_name(rc));
  cr_assert(strstr(evs_last_error(), "append more") != NULL, "%s",
            evs_last_error());
  cr_assert_eq(evs_store_train_dictionary(tu_store, 100, 0, NULL), EVS_EINVAL);
  cr_assert_eq(evs_store_train_dictionary(tu_store, 2u << 20, 0, NULL),
               EVS_EINVAL);
  cr_assert_eq(evs_store_train_dictionary(tu_store, 0, 2000000, NULL),
               EVS_EINVAL);
  /* A failed training leaves appends as they were. */
  append_orders("s", 0, 10);
  evs_stats st = full_stats();
  cr_assert_eq(st.compressed_events, 0);
}

Test(store_compression, damaged_dictionary_is_detected) {
  tu_store = tu_open(tu_dir, NULL);
  append_orders("s", 0, 2000);
  uint32_t id = 0;
  cr_assert_eq(evs_store_train_dictionary(tu_store, 4096, 0, &id), 0);
  /* A second dictionary becomes the active one, so that the first one is
   * only needed to read "t". */
  append_orders("t", 2000, 500);
  uint32_t id2 = 0;
  cr_assert_eq(evs_store_train_dictionary(tu_store, 4096, 0, &id2), 0);
  evs_store_close(tu_store);
  tu_store = NULL;
  uint8_t key[4] = { (uint8_t)(id >> 24), (uint8_t)(id >> 16),
                     (uint8_t)(id >> 8), (uint8_t)id };
  cr_assert_eq(tu_lmdb_del(tu_dir, "dicts", key, 4), 1);
  tu_store = tu_open(tu_dir, NULL);
  /* Events stored without it still read; those that need it fail clearly. */
  check_orders("s", 0, 2000);
  evs_iter *it = NULL;
  const evs_event *ev;
  cr_assert_eq(evs_read_stream(&it, tu_store, "t", NULL), 0);
  int rc = evs_iter_next(it, &ev);
  cr_assert_eq(rc, EVS_ECORRUPT, "%s", evs_err_name(rc));
  cr_assert(strstr(evs_last_error(), "dictionary") != NULL, "%s",
            evs_last_error());
  evs_iter_free(it);
  evs_verify_report vr;
  cr_assert_eq(evs_store_verify(tu_store, &vr, NULL, NULL), 0);
  cr_assert_gt(vr.errors, 0, "verify missed the events it cannot decode");
}
