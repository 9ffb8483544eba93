/*
 * evstore — catch-up and live subscriptions.
 *
 * A subscription is a reader that follows the log. It reads from its
 * checkpoint in bounded batches (copying each batch out of the store, so no
 * read transaction is held while the consumer works or while it waits) and,
 * once it has reached the head, sleeps until a commit moves the head on.
 * Catch-up and live delivery are one mechanism: events arrive in log order
 * with no gap and no duplicate, whether the subscriber is fast or slow.
 *
 *  - Memory is bounded: a batch holds at most max_batch_events events and
 *    about max_batch_bytes bytes (one event larger than that is still
 *    delivered, alone). A slow subscriber simply falls behind the head and
 *    catches up from disk; there is no per-subscriber queue.
 *  - An idle subscriber costs almost no CPU: it waits on the store's commit
 *    condition variable and is woken by commits made through the same
 *    evs_store handle. Commits made by another process that has the store
 *    open are seen at the next local commit, at the next timeout of
 *    evs_sub_next() (evs_sub_run() and evs_sub_run_many() time out once a
 *    second while idle), or at once when the subscriber is behind.
 *  - Checkpoints are positions and resuming is exclusive: a subscription
 *    opened at checkpoint P delivers P+1 onwards. A filtered subscription
 *    advances its checkpoint across the events it skips.
 *
 * Thread safety: a subscription belongs to one thread at a time, except
 * evs_sub_cancel(), which may be called from any thread at any time. Close
 * every subscription before closing its store.
 */
#ifndef EVSTORE_SUBSCRIPTION_H
#define EVSTORE_SUBSCRIPTION_H

#include "evstore/read.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct evs_sub evs_sub;

/* Where a subscription starts. */
typedef enum evs_sub_start {
  EVS_SUB_FROM_CHECKPOINT = 0, /* after opts.checkpoint (0 = the start) */
  EVS_SUB_FROM_END = 1         /* after the head at evs_sub_open() time */
} evs_sub_start;

#define EVS_SUB_DEFAULT_BATCH_EVENTS 256u
#define EVS_SUB_DEFAULT_BATCH_BYTES (1024u * 1024u)

#define EVS_SUB_OPTIONS_VERSION 1

/*
 * Options of evs_sub_open(). The filters combine with AND.
 *
 * `stream` set: a one-stream subscription (only `event_type` may be
 * combined with it); its checkpoint is still a position in $all.
 * `stream` NULL: $all, optionally narrowed to a category, a stream prefix,
 * an event type and one member of a consumer group.
 */
typedef struct evs_sub_options {
  unsigned version;          /* EVS_SUB_OPTIONS_VERSION */
  const char *stream;        /* one stream; NULL = $all */
  const char *category;      /* only this category ("order" for order-42) */
  const char *stream_prefix; /* only streams whose name starts with this */
  const char *event_type;    /* only this event type */
  uint32_t group_size;       /* consumer group of n members; 0 or 1 = off */
  uint32_t group_member;     /* this member, 0..n-1: receives the streams
                                whose evs_stream_hash() % n == member */
  evs_sub_start start;       /* EVS_SUB_FROM_CHECKPOINT by default */
  uint64_t checkpoint;       /* with FROM_CHECKPOINT: deliver from
                                checkpoint + 1 */
  uint32_t max_batch_events; /* 0 = EVS_SUB_DEFAULT_BATCH_EVENTS */
  uint32_t max_batch_bytes;  /* 0 = EVS_SUB_DEFAULT_BATCH_BYTES: names,
                                data and metadata copied into one batch */
} evs_sub_options;

#define EVS_SUB_OPTIONS_INIT                                                   \
  {                                                                            \
    EVS_SUB_OPTIONS_VERSION, NULL, NULL, NULL, NULL, 0, 0,                     \
        EVS_SUB_FROM_CHECKPOINT, 0, 0, 0                                       \
  }

/*
 * One batch of events, as returned by evs_sub_next(). Everything it points
 * to is owned by the subscription and valid until the next call of
 * evs_sub_next(), evs_sub_run() or evs_sub_close() on it.
 */
typedef struct evs_sub_batch {
  const evs_event *events; /* `count` events in log order */
  size_t count;
  uint64_t checkpoint; /* the last position considered (delivered or
                          skipped): save it once the batch is handled
                          and resume from it later */
  uint64_t head;       /* the head of the log when the batch was read */
  int caught_up;       /* 1 when the batch reached that head */
} evs_sub_batch;

/*
 * Opens a subscription. `opts` may be NULL (all of $all from the start).
 * Nothing is read until evs_sub_next() or evs_sub_run().
 *
 * Errors: EVS_EINVAL (NULL arguments, unknown options version, a stream
 * combined with category/prefix/group, group_member >= group_size),
 * EVS_EBADNAME (bad stream, category or type name), EVS_ENOMEM, and read
 * errors while locating the start of a stream subscription.
 * Ownership: *out is the caller's; release it with evs_sub_close().
 */
EVS_EXTERN int evs_sub_open(evs_sub **out, evs_store *store,
                            const evs_sub_options *opts);

/*
 * Pull API: waits up to `timeout_ms` (-1 = forever, 0 = do not wait) for
 * the next batch and fills *out.
 *
 * Returns:
 *  - n > 0: a batch of n events;
 *  - 0: no event, but the subscription has reached the head and either
 *    the previous batch it returned did not have caught_up set (so a
 *    consumer learns when live processing starts), or its filter skipped
 *    events since then (so a consumer can save the checkpoint it moved
 *    to): out->caught_up is 1 and out->checkpoint is the head;
 *  - EVS_ETIMEDOUT: nothing to deliver within the timeout (the checkpoint
 *    may still have advanced over skipped events; see evs_sub_checkpoint);
 *  - EVS_ECANCELED: evs_sub_cancel() was called (and every later call
 *    returns it too);
 *  - EVS_ECLOSED: the store is closing;
 *  - EVS_ESTREAMDELETED: the subscribed stream was tombstoned (a blocked
 *    call returns it as soon as a tombstone by this process commits; one
 *    by another process is seen when the next event of the log is);
 *  - read errors (EVS_ECORRUPT, EVS_ENOMEM, ...): the checkpoint is left
 *    before the failed event, so the call may be retried.
 */
EVS_EXTERN int evs_sub_next(evs_sub *sub, evs_sub_batch *out, int timeout_ms);

/*
 * The subscription's checkpoint: the last position it has considered and
 * delivered or skipped (after the batch returned last). Save it to resume
 * later with EVS_SUB_FROM_CHECKPOINT.
 */
EVS_EXTERN uint64_t evs_sub_checkpoint(const evs_sub *sub);

/*
 * Cancels the subscription from any thread: a call blocked in
 * evs_sub_next() or evs_sub_run() returns EVS_ECANCELED promptly, and so
 * does every later call. The subscription must still be closed.
 */
EVS_EXTERN void evs_sub_cancel(evs_sub *sub);

/* Closes the subscription and frees its batch. Accepts NULL. */
EVS_EXTERN void evs_sub_close(evs_sub *sub);

/*
 * Callbacks of evs_sub_run(). Each returns 0 to go on; any other value
 * stops the run, which returns it (positive values are turned into
 * EVS_ESTOPPED). Unused callbacks may be NULL.
 */
typedef struct evs_sub_callbacks {
  unsigned version; /* EVS_SUB_CALLBACKS_VERSION */
  /* One event; the pointer is valid during the call only. */
  int (*on_event)(const evs_event *ev, void *payload);
  /* After each batch: the checkpoint to save (position after which a
   * restart resumes), and whether the subscription is at the head. */
  int (*on_batch_end)(uint64_t checkpoint, int caught_up, void *payload);
  /* The subscription has just reached the head (live from now on). */
  int (*on_caught_up)(uint64_t checkpoint, void *payload);
} evs_sub_callbacks;

#define EVS_SUB_CALLBACKS_VERSION 1
#define EVS_SUB_CALLBACKS_INIT                                                 \
  { EVS_SUB_CALLBACKS_VERSION, NULL, NULL, NULL }

/*
 * Callback-driven runner: delivers every event to cbs->on_event, in log
 * order, in the calling thread, until a callback stops it or
 * evs_sub_cancel() is called (then it returns EVS_ECANCELED). A commit of
 * this process wakes it at once; while idle it also looks at the log once
 * a second, so commits of other processes are noticed within a second.
 * Returns a callback's non-zero value, EVS_ECANCELED, or an error of
 * evs_sub_next(); never EVS_ETIMEDOUT.
 */
EVS_EXTERN int evs_sub_run(evs_sub *sub, const evs_sub_callbacks *cbs,
                           void *payload);

/*
 * Runs n subscriptions of one store in the calling thread, as evs_sub_run()
 * runs one: every event of subs[i] goes to cbs[i] with payloads[i], in log
 * order. A commit wakes this one thread, which then delivers each
 * subscription's new events in turn, one batch per subscription per round
 * (one far behind does not hold up the others). With many subscribers and
 * few cores, n threads that each wake up and read cost more than the reads
 * themselves: this is the way to run many subscriptions of one process
 * (several threads can each run a share of them).
 *
 * Subscription i ends when one of its callbacks returns non-zero, when it
 * is canceled (evs_sub_cancel(), from any thread) or on an error of its
 * read; results[i] (results may be NULL) then receives what evs_sub_run()
 * would have returned, and the others go on. All callbacks run in this
 * thread, one at a time. Commits of other processes are noticed within a
 * second (this process's own at once). Returns when every subscription has
 * ended: 0 if each was stopped by a callback or canceled, otherwise the
 * first other error (a read error, say). Stop it with evs_sub_cancel() on
 * its subscriptions: the store may be closed only after it returned.
 * Errors: EVS_EINVAL (a NULL argument, n = 0, subscriptions of different
 * stores, unknown callbacks version), EVS_ENOMEM.
 */
EVS_EXTERN int evs_sub_run_many(evs_sub *const *subs,
                                const evs_sub_callbacks *const *cbs,
                                void *const *payloads, size_t n, int *results);

#ifdef __cplusplus
}
#endif

#endif /* EVSTORE_SUBSCRIPTION_H */
