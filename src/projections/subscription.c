/*
 * evstore — subscriptions: a reader that follows the log.
 *
 * Each evs_sub_next() reads the head H, then one bounded batch of the
 * events after the checkpoint up to at most H (and at most EVS__SUB_WINDOW
 * positions, so that a sparse filter over a long log reports progress and
 * notices cancellation). The batch is copied into the subscription's own
 * buffer and the iterator lets go of its read transaction before the batch
 * is returned, so no snapshot outlives the call (the iterator itself, with
 * its caches of names, is kept for the next batch). At the head it waits for
 * the store's next commit (evs__wait_commit).
 *
 * Reading up to an H taken before the read is what makes the checkpoint of
 * an exhausted read exact: every position up to H is visible to the
 * iterator's later snapshot, and nothing above H is considered, so the next
 * read starting at H+1 has no gap and no duplicate.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "projections/internal.h"
#include "store/internal.h"

/* Positions covered by one read of $all at most. */
#define EVS__SUB_WINDOW 65536u

typedef struct evs__sub_off {
  size_t stream, type, data, meta;
} evs__sub_off;

struct evs_sub {
  evs_store *s;
  char *stream;
  char *category;
  char *prefix;
  char *type;
  size_t type_len;
  uint32_t group_size, group_member;
  uint32_t max_events, max_bytes;

  uint64_t cp;          /* checkpoint: last position considered */
  int64_t next_version; /* stream subscriptions: next version to read */
  int last_caught;      /* caught_up of the last batch returned */
  uint64_t returned_cp; /* checkpoint of the last batch returned */

  uint64_t tomb_seen;     /* the store's tomb_seq when the stream was read */
  volatile int wake;      /* the cancel flag of evs__wait_commit: set with
                             evs__set_wait_flag to wake a waiter */
  volatile int cancelled; /* sticky; set with wake */
  evs_iter *it;           /* $all and filtered reads: kept between batches */

  /* The batch. */
  evs_event *evs;
  evs__sub_off *offs;
  uint8_t *arena;
  size_t arena_cap, arena_used;
};

int64_t evs__mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int evs__dup_opt(char **dst, const char *src) {
  *dst = NULL;
  if (src == NULL || src[0] == '\0')
    return 0;
  *dst = strdup(src);
  return *dst ? 0 : evs__err(EVS_ENOMEM, "out of memory");
}

/* Copies `len` bytes into the arena (grown as needed); returns the offset
 * through *off. */
static int evs__arena_put(evs_sub *sub, const void *p, size_t len,
                          size_t *off) {
  if (sub->arena_used + len > sub->arena_cap) {
    size_t cap = sub->arena_cap ? sub->arena_cap : 4096;
    while (cap < sub->arena_used + len)
      cap *= 2;
    uint8_t *a = realloc(sub->arena, cap);
    if (a == NULL)
      return evs__err(EVS_ENOMEM, "out of memory (subscription batch)");
    sub->arena = a;
    sub->arena_cap = cap;
  }
  if (len)
    memcpy(sub->arena + sub->arena_used, p, len);
  *off = sub->arena_used;
  sub->arena_used += len;
  return 0;
}

static int evs__batch_add(evs_sub *sub, size_t n, const evs_event *ev) {
  evs__sub_off *o = &sub->offs[n];
  sub->evs[n] = *ev;
  int rc = evs__arena_put(sub, ev->stream.data, ev->stream.len, &o->stream);
  if (rc == 0)
    rc = evs__arena_put(sub, ev->type.data, ev->type.len, &o->type);
  if (rc == 0)
    rc = evs__arena_put(sub, ev->data.data, ev->data.len, &o->data);
  if (rc == 0)
    rc = evs__arena_put(sub, ev->metadata.data, ev->metadata.len, &o->meta);
  return rc;
}

/* Points the batch's slices into the (final) arena. */
static void evs__batch_fix(evs_sub *sub, size_t n) {
  for (size_t i = 0; i < n; i++) {
    evs_event *e = &sub->evs[i];
    e->stream.data = sub->arena + sub->offs[i].stream;
    e->type.data = sub->arena + sub->offs[i].type;
    e->data.data = sub->arena + sub->offs[i].data;
    e->metadata.data = sub->arena + sub->offs[i].meta;
  }
}

static void evs__batch_reset(evs_sub *sub) {
  sub->arena_used = 0;
  /* A huge event grew the arena far past the limit: give it back. */
  if (sub->arena_cap > 4 * (size_t)sub->max_bytes) {
    free(sub->arena);
    sub->arena = NULL;
    sub->arena_cap = 0;
  }
}

/*
 * Finds the first version of `stream` after position `p`: the version after
 * the last event at or before p. Streams that do not exist (yet) start at 0.
 */
static int evs__locate_stream(evs_sub *sub, uint64_t p) {
  sub->next_version = 0;
  if (p == 0)
    return 0;
  evs_read_options ro = EVS_READ_OPTIONS_INIT;
  ro.direction = EVS_BACKWARD;
  ro.from_version = EVS_FROM_END;
  ro.as_of_position = p;
  ro.limit = 1;
  evs_iter *it = NULL;
  int rc = evs_read_stream(&it, sub->s, sub->stream, &ro);
  if (rc == EVS_ENOSTREAM || rc == EVS_ESTREAMDELETED) {
    evs__clear_error();
    return 0; /* evs_sub_next() reports a tombstone */
  }
  if (rc)
    return rc;
  const evs_event *ev;
  rc = evs_iter_next(it, &ev);
  if (rc == 1)
    sub->next_version = ev->version + 1;
  evs_iter_free(it);
  return rc < 0 ? rc : 0;
}

int evs_sub_open(evs_sub **out, evs_store *s, const evs_sub_options *opts) {
  evs__clear_error();
  if (out == NULL || s == NULL)
    return evs__err(EVS_EINVAL, "NULL output or store");
  *out = NULL;
  evs_sub_options o = EVS_SUB_OPTIONS_INIT;
  if (opts) {
    if (opts->version != EVS_SUB_OPTIONS_VERSION)
      return evs__err(EVS_EINVAL, "unknown subscription options version %u",
                      opts->version);
    o = *opts;
  }
  int rc;
  if (o.stream && (rc = evs__check_stream_name(o.stream, NULL)))
    return rc;
  if (o.category && o.category[0] &&
      (rc = evs__check_name(o.category, "category", NULL)))
    return rc;
  if (o.event_type && o.event_type[0] &&
      (rc = evs__check_name(o.event_type, "event type", NULL)))
    return rc;
  if (o.stream_prefix && strlen(o.stream_prefix) > EVS_MAX_NAME_LEN)
    return evs__err(EVS_EBADNAME, "stream prefix longer than %u bytes",
                    EVS_MAX_NAME_LEN);
  if (o.stream && ((o.category && o.category[0]) ||
                   (o.stream_prefix && o.stream_prefix[0]) || o.group_size > 1))
    return evs__err(EVS_EINVAL, "a stream subscription takes no category, "
                                "prefix or consumer group");
  if (o.group_size > 1 && o.group_member >= o.group_size)
    return evs__err(EVS_EINVAL, "consumer group member %u of %u",
                    o.group_member, o.group_size);
  if (o.start != EVS_SUB_FROM_CHECKPOINT && o.start != EVS_SUB_FROM_END)
    return evs__err(EVS_EINVAL, "bad start %d", (int)o.start);

  evs_sub *sub = calloc(1, sizeof *sub);
  if (sub == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  sub->s = s;
  sub->group_size = o.group_size > 1 ? o.group_size : 0;
  sub->group_member = o.group_member;
  sub->max_events =
      o.max_batch_events ? o.max_batch_events : EVS_SUB_DEFAULT_BATCH_EVENTS;
  sub->max_bytes =
      o.max_batch_bytes ? o.max_batch_bytes : EVS_SUB_DEFAULT_BATCH_BYTES;
  rc = evs__dup_opt(&sub->stream, o.stream);
  if (rc == 0)
    rc = evs__dup_opt(&sub->category, o.category);
  if (rc == 0)
    rc = evs__dup_opt(&sub->prefix, o.stream_prefix);
  if (rc == 0)
    rc = evs__dup_opt(&sub->type, o.event_type);
  if (rc == 0) {
    sub->type_len = sub->type ? strlen(sub->type) : 0;
    sub->evs = calloc(sub->max_events, sizeof *sub->evs);
    sub->offs = calloc(sub->max_events, sizeof *sub->offs);
    if (sub->evs == NULL || sub->offs == NULL)
      rc = evs__err(EVS_ENOMEM, "out of memory");
  }
  if (rc == 0) {
    if (o.start == EVS_SUB_FROM_END)
      rc = evs_head_position(s, &sub->cp);
    else
      sub->cp = o.checkpoint;
  }
  sub->returned_cp = sub->cp;
  sub->tomb_seen = __atomic_load_n(&s->tomb_seq, __ATOMIC_ACQUIRE);
  if (rc == 0 && sub->stream)
    rc = evs__locate_stream(sub, sub->cp);
  if (rc) {
    evs_sub_close(sub);
    return rc;
  }
  *out = sub;
  return 0;
}

void evs_sub_close(evs_sub *sub) {
  if (sub == NULL)
    return;
  evs_iter_free(sub->it);
  free(sub->stream);
  free(sub->category);
  free(sub->prefix);
  free(sub->type);
  free(sub->evs);
  free(sub->offs);
  free(sub->arena);
  free(sub);
}

uint64_t evs_sub_checkpoint(const evs_sub *sub) {
  return sub ? sub->cp : 0;
}

/*
 * The wake and cancel flags are published with evs__set_wait_flag, which
 * evs__wait_commit's event count orders against its test: a waiter either
 * sees the flag before it sleeps or is woken.
 */
static void evs__sub_flag(evs_sub *sub, int cancel) {
  if (cancel)
    __atomic_store_n(&sub->cancelled, 1, __ATOMIC_RELEASE);
  evs__set_wait_flag(sub->s, &sub->wake, 1);
}

static int evs__sub_take_wake(evs_sub *sub) {
  return __atomic_exchange_n(&sub->wake, 0, __ATOMIC_ACQ_REL) != 0;
}

static int evs__sub_cancelled(const evs_sub *sub) {
  return __atomic_load_n(&sub->cancelled, __ATOMIC_ACQUIRE);
}

void evs_sub_cancel(evs_sub *sub) {
  if (sub)
    evs__sub_flag(sub, 1);
}

void evs__sub_interrupt(evs_sub *sub) {
  if (sub)
    evs__sub_flag(sub, 0);
}

static int evs__batch_full(const evs_sub *sub, size_t n) {
  return n >= sub->max_events || sub->arena_used >= sub->max_bytes;
}

/*
 * Reads one batch of events after sub->cp and up to `head`. Sets *n and
 * advances sub->cp to the last position considered.
 */
static int evs__read_batch(evs_sub *sub, uint64_t head, size_t *n) {
  evs_iter *it = NULL;
  uint64_t hi = head;
  int rc;
  *n = 0;
  evs__batch_reset(sub);
  if (sub->stream) {
    evs_read_options ro = EVS_READ_OPTIONS_INIT;
    ro.from_version = sub->next_version;
    ro.as_of_position = hi;
    rc = evs_read_stream(&it, sub->s, sub->stream, &ro);
    if (rc == EVS_ENOSTREAM) {
      /* Not created yet, or soft-deleted: nothing up to the head. */
      evs__clear_error();
      sub->cp = hi;
      return 0;
    }
  } else {
    if (hi - sub->cp > EVS__SUB_WINDOW)
      hi = sub->cp + EVS__SUB_WINDOW;
    /* The iterator of the last batch reads on from the newest snapshot,
     * keeping its stream and type caches (a live subscription reads a few
     * events per commit: opening a read for each costs more than them). */
    rc = EVS_EINVAL;
    if (sub->it) {
      rc = evs__iter_restart(sub->it, sub->cp + 1, hi);
      if (rc) {
        evs_iter_free(sub->it);
        sub->it = NULL;
        if (rc != EVS_EINVAL)
          return rc;
      }
    }
    if (rc) {
      evs_read_all_options ao = EVS_READ_ALL_OPTIONS_INIT;
      ao.from_position = sub->cp + 1;
      ao.until_position = hi;
      ao.category = sub->category;
      ao.stream_prefix = sub->prefix;
      ao.event_type = sub->type;
      ao.group_size = sub->group_size;
      ao.group_member = sub->group_member;
      rc = evs_read_all(&sub->it, sub->s, &ao);
    }
    it = sub->it;
  }
  if (rc)
    return rc;
  size_t k = 0;
  uint64_t last = sub->cp;
  int64_t next_version = sub->next_version;
  int exhausted = 0;
  for (;;) {
    if (evs__batch_full(sub, k))
      break;
    const evs_event *ev;
    rc = evs_iter_next(it, &ev);
    if (rc == 0) {
      exhausted = 1;
      break;
    }
    if (rc < 0)
      break;
    if (sub->stream) {
      next_version = ev->version + 1;
      last = ev->position;
      if (sub->type && (ev->type.len != sub->type_len ||
                        memcmp(ev->type.data, sub->type, sub->type_len) != 0))
        continue;
    } else {
      last = ev->position;
    }
    rc = evs__batch_add(sub, k, ev);
    if (rc)
      break;
    k++;
  }
  if (it != sub->it || rc < 0) {
    evs_iter_free(it);
    if (it == sub->it)
      sub->it = NULL;
  } else {
    evs__iter_release(it); /* no snapshot held between batches */
  }
  if (rc < 0) {
    /* Deliver nothing of a failed read: the checkpoint stays before it. */
    return rc;
  }
  evs__batch_fix(sub, k);
  sub->next_version = next_version;
  /* An exhausted read considered every position up to hi. */
  sub->cp = exhausted ? (hi > sub->cp ? hi : sub->cp) : last;
  *n = k;
  return 0;
}

static int evs__store_closing(evs_store *s) {
  return __atomic_load_n(&s->closing, __ATOMIC_ACQUIRE);
}

/* evs_sub_next(); `seen` is a head this process's writer published (0 =
 * none known): read up to it without asking LMDB. */
static int evs__sub_next(evs_sub *sub, evs_sub_batch *out, int timeout_ms,
                         uint64_t seen) {
  memset(out, 0, sizeof *out);
  out->checkpoint = sub->cp;
  int64_t deadline = timeout_ms >= 0 ? evs__mono_ms() + timeout_ms : 0;
  for (;;) {
    if (evs__sub_cancelled(sub))
      return evs__err(EVS_ECANCELED, "subscription canceled");
    if (evs__store_closing(sub->s))
      return evs__err(EVS_ECLOSED, "store is closing");
    uint64_t head = seen;
    seen = 0;
    int rc = 0;
    /* A stream was tombstoned since this one was read (the head does not
     * move): read it again, to end if it was this one. */
    int recheck = 0;
    if (sub->stream) {
      uint64_t t = __atomic_load_n(&sub->s->tomb_seq, __ATOMIC_ACQUIRE);
      recheck = t != sub->tomb_seen;
      sub->tomb_seen = t;
    }
    /* A head published by this process's writer is committed: read up to
     * it without asking LMDB again (other processes' commits are found
     * here, when the wait ends without one). */
    if (head <= sub->cp && (rc = evs_head_position(sub->s, &head)))
      return rc;
    if (head > sub->cp || recheck) {
      size_t n;
      rc = evs__read_batch(sub, head > sub->cp ? head : sub->cp, &n);
      if (rc)
        return rc;
      int caught = sub->cp >= head;
      if (n > 0 ||
          (caught && (!sub->last_caught || sub->cp > sub->returned_cp))) {
        out->events = sub->evs;
        out->count = n;
        out->checkpoint = sub->cp;
        out->head = head;
        out->caught_up = caught;
        sub->last_caught = caught;
        sub->returned_cp = sub->cp;
        return (int)n;
      }
      if (!caught) {
        /* A window with nothing for us: go on unless the time is up. */
        if (timeout_ms >= 0 && evs__mono_ms() >= deadline) {
          out->checkpoint = sub->cp;
          return EVS_ETIMEDOUT;
        }
        continue;
      }
    } else if (!sub->last_caught || sub->cp > sub->returned_cp) {
      sub->last_caught = 1;
      sub->returned_cp = sub->cp;
      out->checkpoint = sub->cp;
      out->head = head;
      out->caught_up = 1;
      return 0;
    }
    /* At the head: wait for a commit. */
    int wait_ms = -1;
    if (timeout_ms >= 0) {
      int64_t left = deadline - evs__mono_ms();
      if (left <= 0) {
        out->checkpoint = sub->cp;
        return EVS_ETIMEDOUT;
      }
      wait_ms = left > INT32_MAX ? INT32_MAX : (int)left;
    }
    seen = evs__wait_commit_tomb(sub->s, sub->cp, wait_ms, &sub->wake,
                                 sub->stream ? sub->tomb_seen : UINT64_MAX);
    if (evs__sub_cancelled(sub))
      return evs__err(EVS_ECANCELED, "subscription canceled");
    if (evs__sub_take_wake(sub)) {
      out->checkpoint = sub->cp;
      return EVS_ETIMEDOUT;
    }
  }
}

int evs_sub_next(evs_sub *sub, evs_sub_batch *out, int timeout_ms) {
  evs__clear_error();
  if (sub == NULL || out == NULL)
    return evs__err(EVS_EINVAL, "NULL subscription or output");
  return evs__sub_next(sub, out, timeout_ms, 0);
}

/* Delivers batch b to the callbacks; 0 to go on, or what the run returns. */
static int evs__deliver(const evs_sub_batch *b, const evs_sub_callbacks *cbs,
                        void *payload, int *prev_caught) {
  for (size_t i = 0; i < b->count; i++) {
    if (cbs->on_event) {
      int r = cbs->on_event(&b->events[i], payload);
      if (r)
        return r > 0 ? evs__err(EVS_ESTOPPED, "stopped by on_event") : r;
    }
  }
  if (cbs->on_batch_end) {
    int r = cbs->on_batch_end(b->checkpoint, b->caught_up, payload);
    if (r)
      return r > 0 ? evs__err(EVS_ESTOPPED, "stopped by on_batch_end") : r;
  }
  if (b->caught_up && !*prev_caught && cbs->on_caught_up) {
    int r = cbs->on_caught_up(b->checkpoint, payload);
    if (r)
      return r > 0 ? evs__err(EVS_ESTOPPED, "stopped by on_caught_up") : r;
  }
  *prev_caught = b->caught_up;
  return 0;
}

int evs_sub_run(evs_sub *sub, const evs_sub_callbacks *cbs, void *payload) {
  evs__clear_error();
  if (sub == NULL || cbs == NULL)
    return evs__err(EVS_EINVAL, "NULL subscription or callbacks");
  if (cbs->version != EVS_SUB_CALLBACKS_VERSION)
    return evs__err(EVS_EINVAL, "unknown callbacks version %u", cbs->version);
  int prev_caught = 0;
  for (;;) {
    evs_sub_batch b;
    /* Commits of this process wake the wait at once; another process's are
     * found when it times out and looks at the log, as in
     * evs_sub_run_many(). */
    int rc = evs_sub_next(sub, &b, EVS__FOREIGN_CHECK_MS);
    if (rc == EVS_ETIMEDOUT)
      continue;
    if (rc < 0)
      return rc;
    rc = evs__deliver(&b, cbs, payload, &prev_caught);
    if (rc)
      return rc;
  }
}

int evs_sub_run_many(evs_sub *const *subs, const evs_sub_callbacks *const *cbs,
                     void *const *payloads, size_t n, int *results) {
  evs__clear_error();
  if (subs == NULL || cbs == NULL || n == 0)
    return evs__err(EVS_EINVAL, "NULL subscriptions or callbacks, or none");
  evs_store *s = subs[0] ? subs[0]->s : NULL;
  for (size_t i = 0; i < n; i++) {
    if (subs[i] == NULL || cbs[i] == NULL)
      return evs__err(EVS_EINVAL, "subscription %zu: NULL", i);
    if (subs[i]->s != s)
      return evs__err(EVS_EINVAL, "subscription %zu belongs to another store",
                      i);
    if (cbs[i]->version != EVS_SUB_CALLBACKS_VERSION)
      return evs__err(EVS_EINVAL,
                      "subscription %zu: unknown callbacks "
                      "version %u",
                      i, cbs[i]->version);
  }
  /* Per subscription: 0 = running, 1 = ended; and the caught-up edge. */
  unsigned char *st = calloc(n, 2);
  if (st == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  int first_err = 0;
  char first_msg[512] = "";
  size_t running = n;
  while (running > 0) {
    /* The event count before the round: a commit, cancel or close after
     * this load ends the wait below at once. */
    uint32_t seq = __atomic_load_n(&s->c_seq, __ATOMIC_ACQUIRE);
    uint64_t head = __atomic_load_n(&s->committed_head, __ATOMIC_ACQUIRE);
    int progressed = 0;
    for (size_t i = 0; i < n; i++) {
      if (st[2 * i])
        continue;
      evs_sub *sub = subs[i];
      uint64_t cp0 = sub->cp;
      evs_sub_batch b;
      int rc = evs__sub_next(sub, &b, 0, head);
      if (rc == EVS_ETIMEDOUT) {
        /* At the head, an interrupt, or a window with nothing for it. */
        progressed |= sub->cp != cp0;
        continue;
      }
      int stopped = 0; /* by a callback */
      if (rc >= 0) {
        progressed = 1;
        int caught = st[2 * i + 1];
        rc = evs__deliver(&b, cbs[i], payloads ? payloads[i] : NULL, &caught);
        st[2 * i + 1] = (unsigned char)caught;
        if (rc == 0)
          continue;
        stopped = 1;
      }
      /* Subscription i ends with rc. */
      st[2 * i] = 1;
      running--;
      if (results)
        results[i] = rc;
      if (!stopped && rc != EVS_ECANCELED && first_err == 0) {
        first_err = rc;
        snprintf(first_msg, sizeof first_msg, "subscription %zu: %s", i,
                 evs_last_error());
      }
      evs__clear_error();
    }
    if (running > 0 && !progressed)
      evs__wait_seq(s, seq, EVS__FOREIGN_CHECK_MS);
  }
  free(st);
  if (first_err)
    return evs__err(first_err, "%s", first_msg);
  return 0;
}
