/*
 * orders: event sourcing and CQRS with evstore, end to end.
 *
 *  - Write side: an Order aggregate. A command loads the order (from its
 *    newest snapshot plus the events after it), decides which events to
 *    append, and appends them with the version it loaded as the expected
 *    version. If another writer got there first, the append fails with
 *    EVS_EWRONGVERSION and the command is retried on the fresh state.
 *  - Read side: a projection ("orders") maintains two views in one
 *    transaction per batch with its checkpoint: orders by customer, and
 *    revenue by day.
 *  - Queries: a prefix scan (the orders of one customer) and a range scan
 *    (revenue between two days) while the runner keeps writing.
 *
 * Usage: evstore-orders <store directory>   (use a fresh directory)
 * Uses only the public API plus jansson for JSON.
 */
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <evstore/evstore.h>

static int fail(const char *what, int rc) {
  char detail[512];
  snprintf(detail, sizeof detail, "%s", evs_last_error());
  fprintf(stderr, "evstore-orders: %s: %s%s%s\n", what, evs_strerror(rc),
          detail[0] ? ": " : "", detail);
  return 1;
}

/* ------------------------------------------------------------------------
 * The aggregate: its state is the fold of its events.
 * ------------------------------------------------------------------------ */

typedef struct order {
  int placed, cancelled;
  char customer[64];
  char day[16];
  int64_t total; /* cents */
} order;

static int str_is(evs_slice s, const char *lit) {
  return s.len == strlen(lit) && memcmp(s.data, lit, s.len) == 0;
}

/* Applies one event to the state (evs_agg_apply_cb). */
static int order_apply(const evs_event *ev, void *payload) {
  order *o = payload;
  json_t *d = json_loadb(ev->data.data, ev->data.len, 0, NULL);
  if (d == NULL)
    return EVS_ECORRUPT;
  if (str_is(ev->type, "OrderPlaced")) {
    o->placed = 1;
    snprintf(o->customer, sizeof o->customer, "%s",
             json_string_value(json_object_get(d, "customer")));
    snprintf(o->day, sizeof o->day, "%s",
             json_string_value(json_object_get(d, "day")));
  } else if (str_is(ev->type, "ItemAdded")) {
    o->total += json_integer_value(json_object_get(d, "cents"));
  } else if (str_is(ev->type, "OrderCancelled")) {
    o->cancelled = 1;
  }
  json_decref(d);
  return 0;
}

/* Snapshots store the state as bytes with a schema tag: bump the tag when
 * the struct changes and old snapshots are ignored (evs_agg_restore_cb). */
#define ORDER_SCHEMA "order/v1"

static int order_restore(const void *data, size_t len, int64_t version,
                         void *payload) {
  (void)version;
  if (len != sizeof(order))
    return EVS_ECORRUPT;
  memcpy(payload, data, len);
  return 0;
}

/* ------------------------------------------------------------------------
 * Commands: load, decide, append with the expected version, retry.
 * ------------------------------------------------------------------------ */

typedef enum {
  PLACE,
  ADD_ITEM,
  CANCEL
} cmd_kind;

typedef struct command {
  cmd_kind kind;
  const char *order_id; /* stream "order-<id>" */
  const char *customer; /* PLACE */
  const char *day;      /* PLACE, YYYY-MM-DD */
  int64_t cents;        /* ADD_ITEM */
} command;

typedef struct app {
  evs_store *store;
  evs_views *views;
  pthread_mutex_t mu;
  int retries; /* conflicts resolved by retrying */
  uint64_t last_position;
} app;

/* Decides the event for `c` given the state, or returns an error code. */
static int decide(const order *o, const command *c, const char **type,
                  char *data, size_t cap) {
  switch (c->kind) {
  case PLACE:
    if (o->placed)
      return EVS_EINVAL; /* already placed */
    *type = "OrderPlaced";
    snprintf(data, cap, "{\"customer\":\"%s\",\"day\":\"%s\"}", c->customer,
             c->day);
    return 0;
  case ADD_ITEM:
    if (!o->placed || o->cancelled)
      return EVS_EINVAL;
    *type = "ItemAdded";
    snprintf(data, cap, "{\"cents\":%" PRId64 "}", c->cents);
    return 0;
  case CANCEL:
    if (!o->placed || o->cancelled)
      return EVS_EINVAL;
    *type = "OrderCancelled";
    snprintf(data, cap, "{}");
    return 0;
  }
  return EVS_EINVAL;
}

static int handle(app *a, const command *c) {
  char stream[80];
  snprintf(stream, sizeof stream, "order-%s", c->order_id);
  for (int attempt = 0; attempt < 1000; attempt++) {
    order o;
    memset(&o, 0, sizeof o);
    evs_aggregate_info info;
    int rc = evs_aggregate_load(&info, a->store, a->views, stream, ORDER_SCHEMA,
                                order_restore, order_apply, &o);
    if (rc)
      return rc;
    /* Keep loads short: snapshot every 20 events read. */
    if (info.events_read >= 20)
      evs_snapshot_save(a->views, stream, info.version, ORDER_SCHEMA, &o,
                        sizeof o);
    const char *type;
    char data[256];
    rc = decide(&o, c, &type, data, sizeof data);
    if (rc)
      return rc;
    evs_event_data ev;
    memset(&ev, 0, sizeof ev);
    ev.type = type;
    ev.data = data;
    ev.data_len = strlen(data);
    /* The expected version is the one we decided on: a NO_STREAM append
     * for a new order, the loaded version otherwise. */
    int64_t expected =
        info.version == EVS_VERSION_NONE ? EVS_EXPECT_NO_STREAM : info.version;
    evs_append_result res;
    rc = evs_append(a->store, stream, expected, &ev, 1, &res);
    if (rc == EVS_EWRONGVERSION) {
      pthread_mutex_lock(&a->mu);
      a->retries++;
      pthread_mutex_unlock(&a->mu);
      /* Someone else appended first: back off a little (growing, with
       * jitter, so that contenders spread out), then decide again. */
      static _Thread_local unsigned seed;
      if (seed == 0)
        seed = (unsigned)(uintptr_t)&seed | 1u;
      long us =
          (long)(rand_r(&seed) % 100 + 1) * (attempt < 10 ? attempt + 1 : 10);
      struct timespec pause = { 0, us * 1000L };
      nanosleep(&pause, NULL);
      continue;
    }
    if (rc == 0) {
      pthread_mutex_lock(&a->mu);
      if (res.last_position > a->last_position)
        a->last_position = res.last_position;
      pthread_mutex_unlock(&a->mu);
    }
    return rc;
  }
  return EVS_EBUSY;
}

/* ------------------------------------------------------------------------
 * The projection: two views in one key space, by prefix.
 *   by-customer/<customer>/<order id>  -> order total (cents, decimal)
 *   revenue/<day>                      -> revenue of the day (cents)
 *   order/<order id>                   -> {"customer","day","total"}: what
 *                                         the projection needs to remember
 * ------------------------------------------------------------------------ */

static int64_t get_num(evs_view_txn *t, const char *key) {
  evs_slice v;
  if (evs_view_get(t, key, strlen(key), &v) != 0)
    return 0;
  char buf[32];
  snprintf(buf, sizeof buf, "%.*s", (int)v.len, (const char *)v.data);
  return strtoll(buf, NULL, 10);
}

static int put_num(evs_view_txn *t, const char *key, int64_t n) {
  char buf[32];
  int len = snprintf(buf, sizeof buf, "%" PRId64, n);
  return evs_view_put(t, key, strlen(key), buf, (size_t)len);
}

static int orders_handler(evs_view_txn *t, const evs_event *ev, void *p) {
  (void)p;
  /* The order id is the stream name after "order-". */
  char id[64], key[256];
  if (ev->stream.len <= 6)
    return 0; /* a stream named just "order": not an order */
  snprintf(id, sizeof id, "%.*s", (int)ev->stream.len - 6,
           (const char *)ev->stream.data + 6);
  snprintf(key, sizeof key, "order/%s", id);
  json_t *d = json_loadb(ev->data.data, ev->data.len, 0, NULL);
  if (d == NULL)
    return EVS_ECORRUPT;
  json_t *rec = NULL;
  int rc = 0;
  if (str_is(ev->type, "OrderPlaced")) {
    rec = json_pack("{s:O,s:O,s:i}", "customer", json_object_get(d, "customer"),
                    "day", json_object_get(d, "day"), "total", 0);
  } else {
    evs_slice cur;
    rc = evs_view_get(t, key, strlen(key), &cur);
    if (rc == 0)
      rec = json_loadb(cur.data, cur.len, 0, NULL);
  }
  if (rc || rec == NULL) {
    json_decref(d);
    return rc ? rc : EVS_ECORRUPT;
  }
  const char *customer = json_string_value(json_object_get(rec, "customer"));
  const char *day = json_string_value(json_object_get(rec, "day"));
  int64_t total = json_integer_value(json_object_get(rec, "total"));
  char ckey[256], rkey[64];
  snprintf(ckey, sizeof ckey, "by-customer/%s/%s", customer, id);
  snprintf(rkey, sizeof rkey, "revenue/%s", day);

  if (str_is(ev->type, "OrderPlaced")) {
    rc = put_num(t, ckey, 0);
  } else if (str_is(ev->type, "ItemAdded")) {
    int64_t cents = json_integer_value(json_object_get(d, "cents"));
    total += cents;
    json_object_set_new(rec, "total", json_integer(total));
    rc = put_num(t, ckey, total);
    if (rc == 0)
      rc = put_num(t, rkey, get_num(t, rkey) + cents);
  } else if (str_is(ev->type, "OrderCancelled")) {
    rc = evs_view_del(t, ckey, strlen(ckey));
    if (rc == 0)
      rc = put_num(t, rkey, get_num(t, rkey) - total);
  }
  if (rc == 0) {
    char *text = json_dumps(rec, JSON_COMPACT);
    rc = text ? evs_view_put(t, key, strlen(key), text, strlen(text))
              : EVS_ENOMEM;
    free(text);
  }
  json_decref(rec);
  json_decref(d);
  return rc;
}

/* ------------------------------------------------------------------------
 * Queries
 * ------------------------------------------------------------------------ */

static int print_kv(evs_slice key, evs_slice val, void *payload) {
  size_t skip = strlen((const char *)payload);
  printf("  %.*s %.*s\n", (int)(key.len - skip), (const char *)key.data + skip,
         (int)val.len, (const char *)val.data);
  return 0;
}

static int query(evs_views *views) {
  evs_view_txn *t = NULL;
  int rc = evs_view_read_begin(&t, views, "orders");
  if (rc)
    return fail("opening the orders view", rc);
  printf("orders of alice:\n");
  const char *prefix = "by-customer/alice/";
  rc =
      evs_view_scan_prefix(t, prefix, strlen(prefix), print_kv, (void *)prefix);
  if (rc == 0) {
    printf("revenue from 2024-05-01 to 2024-05-02:\n");
    const char *lo = "revenue/2024-05-01", *hi = "revenue/2024-05-03";
    rc = evs_view_scan(t, lo, strlen(lo), hi, strlen(hi), 0, print_kv,
                       (void *)"revenue/");
  }
  evs_view_read_end(t);
  return rc ? fail("querying", rc) : 0;
}

/* ------------------------------------------------------------------------
 * Main: a few commands, four clerks adding items to one order at once,
 * then the queries.
 * ------------------------------------------------------------------------ */

typedef struct clerk {
  app *a;
  int rc;
} clerk;

static void *clerk_main(void *arg) {
  clerk *c = arg;
  command add = { ADD_ITEM, "4", NULL, NULL, 100 };
  for (int i = 0; i < 25 && c->rc == 0; i++)
    c->rc = handle(c->a, &add);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: evstore-orders <store directory>\n");
    return 2;
  }
  app a;
  memset(&a, 0, sizeof a);
  pthread_mutex_init(&a.mu, NULL);
  int rc = evs_store_open(&a.store, argv[1], NULL);
  if (rc)
    return fail(argv[1], rc);
  rc = evs_views_open(&a.views, a.store, NULL); /* <store>/views */
  if (rc)
    return fail("opening the views", rc);

  /* The read side runs in its own threads from the start. */
  evs_runner *runner = NULL;
  rc = evs_runner_create(&runner, a.views, NULL);
  evs_projection proj = EVS_PROJECTION_INIT;
  proj.name = "orders";
  proj.category = "order";
  proj.handler = orders_handler;
  if (rc == 0)
    rc = evs_runner_add(runner, &proj);
  if (rc == 0)
    rc = evs_runner_start(runner);
  if (rc)
    return fail("starting the projection", rc);

  const command script[] = {
    { PLACE, "1", "alice", "2024-05-01", 0 },
    { ADD_ITEM, "1", NULL, NULL, 1250 },
    { ADD_ITEM, "1", NULL, NULL, 250 },
    { PLACE, "2", "bob", "2024-05-01", 0 },
    { ADD_ITEM, "2", NULL, NULL, 4000 },
    { PLACE, "3", "alice", "2024-05-02", 0 },
    { ADD_ITEM, "3", NULL, NULL, 999 },
    { PLACE, "4", "alice", "2024-05-02", 0 },
    { PLACE, "5", "carol", "2024-05-03", 0 },
    { ADD_ITEM, "5", NULL, NULL, 700 },
    { PLACE, "6", "bob", "2024-05-02", 0 },
    { ADD_ITEM, "6", NULL, NULL, 5000 },
    { CANCEL, "6", NULL, NULL, 0 },
  };
  for (size_t i = 0; i < sizeof script / sizeof *script; i++) {
    rc = handle(&a, &script[i]);
    if (rc)
      return fail("a command", rc);
  }
  /* A command the aggregate refuses: order 6 is already cancelled. */
  command again = { CANCEL, "6", NULL, NULL, 0 };
  if (handle(&a, &again) != EVS_EINVAL)
    return fail("cancelling twice should be refused", EVS_EINVAL);

  /* Four clerks add 25 items of 1.00 to order 4 at the same time: they
   * conflict, and the expected-version check plus retry keeps every item. */
  pthread_t th[4];
  clerk clerks[4];
  for (int i = 0; i < 4; i++) {
    clerks[i].a = &a;
    clerks[i].rc = 0;
    pthread_create(&th[i], NULL, clerk_main, &clerks[i]);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    if (clerks[i].rc)
      return fail("a clerk", clerks[i].rc);
  }
  fprintf(stderr, "conflicts retried: %d\n", a.retries);

  /* Read your writes: wait until the projection has applied our last
   * append, then query. */
  rc = evs_runner_wait(runner, "orders", a.last_position, 10000);
  if (rc)
    return fail("waiting for the projection", rc);
  if (query(a.views))
    return 1;

  evs_proj_status st;
  if (evs_runner_status(runner, "orders", &st) == 0)
    printf("projection orders: checkpoint %" PRIu64 ", %" PRIu64 " behind\n",
           st.checkpoint, st.behind);
  evs_runner_free(runner);
  evs_views_close(a.views);
  evs_store_close(a.store);
  pthread_mutex_destroy(&a.mu);
  return 0;
}
