/*
 * The checker: what the parent verifies after each kill.
 *
 * The model holds every intent, ack and refusal the ledgers recorded since
 * the store was created (one "generation" of iterations), plus the parent's
 * own probe appends. After a kill the store is reopened and:
 *
 *  1. evs_store_verify reports no problem (checksums, indexes, streams);
 *  2. $all is read from the start: positions are 1..head without a gap,
 *     every event is one some thread intended, with exactly the intended
 *     stream, type, data and metadata bytes, and each stream's versions
 *     count up from 0 without a gap;
 *  3. every append is all there or not at all, each part's events have
 *     consecutive versions and positions, placed where its exact expected
 *     version said;
 *  4. every acknowledged event is there, at the acknowledged version and
 *     position (nothing acknowledged is lost); every refused append is
 *     absent;
 *  5. the streams table, the stream index, the id index and the category
 *     and type indexes agree with what $all holds;
 *  6. the store takes an append again (a probe, read back).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crash.h"

/* ---- a small hash table: byte-string keys to uint64 values --------------- */

typedef struct cr_map {
  struct cr_slot {
    uint64_t hash; /* 0 = empty */
    char *key;
    size_t len;
    uint64_t val;
  } *slot;
  size_t cap; /* power of two */
  size_t n;
} cr_map;

static uint64_t cr_key_hash(const void *k, size_t len) {
  uint64_t h = cr_hash(k, len);
  return h ? h : 1;
}

static void cr_map_free(cr_map *m) {
  for (size_t i = 0; i < m->cap; i++)
    free(m->slot[i].key);
  free(m->slot);
  memset(m, 0, sizeof *m);
}

static struct cr_slot *cr_map_find(const cr_map *m, const void *k, size_t len) {
  if (m->cap == 0)
    return NULL;
  uint64_t h = cr_key_hash(k, len);
  for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    struct cr_slot *s = &m->slot[i];
    if (s->hash == 0)
      return NULL;
    if (s->hash == h && s->len == len && memcmp(s->key, k, len) == 0)
      return s;
  }
}

/* Inserts (or finds) `k`; returns its slot, NULL when out of memory. */
static struct cr_slot *cr_map_put(cr_map *m, const void *k, size_t len,
                                  int *created) {
  *created = 0;
  struct cr_slot *s = cr_map_find(m, k, len);
  if (s)
    return s;
  if ((m->n + 1) * 2 > m->cap) {
    size_t ncap = m->cap ? m->cap * 2 : 1024;
    struct cr_slot *ns = calloc(ncap, sizeof *ns);
    if (ns == NULL)
      return NULL;
    for (size_t i = 0; i < m->cap; i++) {
      if (m->slot[i].hash == 0)
        continue;
      size_t j = m->slot[i].hash & (ncap - 1);
      while (ns[j].hash)
        j = (j + 1) & (ncap - 1);
      ns[j] = m->slot[i];
    }
    free(m->slot);
    m->slot = ns;
    m->cap = ncap;
  }
  uint64_t h = cr_key_hash(k, len);
  size_t i = h & (m->cap - 1);
  while (m->slot[i].hash)
    i = (i + 1) & (m->cap - 1);
  s = &m->slot[i];
  s->key = malloc(len ? len : 1);
  if (s->key == NULL)
    return NULL;
  memcpy(s->key, k, len);
  s->len = len;
  s->hash = h;
  s->val = 0;
  m->n++;
  *created = 1;
  return s;
}

/* ---- the model ----------------------------------------------------------- */

typedef struct cr_ev {
  cr_rec intent;
  int acked;
  int nacked;
  int64_t ack_version;
  uint64_t ack_position; /* 0: not claimed */
  /* Where the last check found it (found_pos 0: absent). */
  uint64_t found_pos;
  int64_t found_ver;
} cr_ev;

typedef struct cr_app {
  uint64_t append_id;
  unsigned iteration;
  size_t first; /* index of its first event in cr_model.ev */
  uint32_t n;   /* intent records present */
  uint32_t count;
} cr_app;

typedef struct cr_stream {
  int64_t last_version;
  uint64_t last_position;
  uint64_t count;
} cr_stream;

struct cr_model {
  cr_ev *ev;
  size_t nev, cap_ev;
  cr_app *app;
  size_t napp, cap_app;
  cr_map ids;       /* event id -> index in ev */
  unsigned last_iteration;
  size_t first_app_of_last; /* appends of the last loaded iteration */
  int64_t probe_version;
  uint64_t probes;
};

cr_model *cr_model_new(void) {
  cr_model *m = calloc(1, sizeof *m);
  if (m)
    m->probe_version = EVS_VERSION_NONE;
  return m;
}

void cr_model_free(cr_model *m) {
  if (m == NULL)
    return;
  free(m->ev);
  free(m->app);
  cr_map_free(&m->ids);
  free(m);
}

uint64_t cr_stats_errors(const cr_stats *s) {
  return s->lost + s->mismatched + s->partial + s->misplaced + s->unknown +
         s->failed_visible + s->verify_errors + s->hung + s->other;
}

static int cr_model_add_intent(cr_model *m, const cr_rec *r,
                               unsigned iteration) {
  if (r->index == 0) {
    if (m->napp == m->cap_app) {
      m->cap_app = m->cap_app ? m->cap_app * 2 : 1024;
      cr_app *na = realloc(m->app, m->cap_app * sizeof *na);
      if (na == NULL)
        return -1;
      m->app = na;
    }
    cr_app *a = &m->app[m->napp++];
    a->append_id = r->append_id;
    a->iteration = iteration;
    a->first = m->nev;
    a->n = 0;
    a->count = r->count;
  } else if (m->napp == 0 || m->app[m->napp - 1].append_id != r->append_id ||
             m->app[m->napp - 1].n != r->index) {
    fprintf(stderr, "evs_crash: intent ledger out of order (append %llx, "
                    "event %u)\n",
            (unsigned long long)r->append_id, r->index);
    return -1;
  }
  if (m->nev == m->cap_ev) {
    m->cap_ev = m->cap_ev ? m->cap_ev * 2 : 4096;
    cr_ev *ne = realloc(m->ev, m->cap_ev * sizeof *ne);
    if (ne == NULL)
      return -1;
    m->ev = ne;
  }
  int created;
  struct cr_slot *s = cr_map_put(&m->ids, r->id, 16, &created);
  if (s == NULL)
    return -1;
  if (!created) {
    fprintf(stderr, "evs_crash: the same event id was intended twice\n");
    return -1;
  }
  s->val = m->nev;
  cr_ev *e = &m->ev[m->nev++];
  memset(e, 0, sizeof *e);
  e->intent = *r;
  m->app[m->napp - 1].n++;
  return 0;
}

static int cr_model_add_outcome(cr_model *m, const cr_rec *r) {
  struct cr_slot *s = cr_map_find(&m->ids, r->id, 16);
  if (s == NULL || m->ev[s->val].intent.append_id != r->append_id) {
    fprintf(stderr, "evs_crash: an ack without an intent (append %llx)\n",
            (unsigned long long)r->append_id);
    return -1;
  }
  cr_ev *e = &m->ev[s->val];
  if (r->kind == CR_ACK) {
    e->acked = 1;
    e->ack_version = r->version;
    e->ack_position = r->position;
  } else {
    e->nacked = 1;
  }
  return 0;
}

int cr_model_load(cr_model *m, const char *ledger_dir, unsigned iteration,
                  unsigned threads, cr_stats *st) {
  m->last_iteration = iteration;
  m->first_app_of_last = m->napp;
  char path[4096];
  for (unsigned t = 0; t < threads; t++) {
    for (int intent = 1; intent >= 0; intent--) {
      cr_rec *recs;
      size_t n, torn = 0;
      cr_ledger_path(path, sizeof path, ledger_dir, iteration, t, intent);
      if (cr_ledger_read(path, &recs, &n, &torn))
        return -1;
      st->torn_records += torn;
      for (size_t i = 0; i < n; i++) {
        int bad = intent ? recs[i].kind != CR_INTENT
                         : recs[i].kind == CR_INTENT;
        if (bad || (intent ? cr_model_add_intent(m, &recs[i], iteration)
                           : cr_model_add_outcome(m, &recs[i]))) {
          fprintf(stderr, "evs_crash: %s: record %zu rejected\n", path, i);
          free(recs);
          return -1;
        }
      }
      free(recs);
    }
  }
  return 0;
}

int cr_model_add_acked(cr_model *m, const cr_rec *intent, int64_t version,
                       uint64_t position) {
  if (cr_model_add_intent(m, intent, m->last_iteration))
    return -1;
  cr_rec r = *intent;
  r.kind = CR_ACK;
  r.version = version;
  r.position = position;
  cr_rec_seal(&r);
  return cr_model_add_outcome(m, &r);
}

uint64_t cr_model_in_flight(const cr_model *m) {
  uint64_t n = 0;
  for (size_t a = m->first_app_of_last; a < m->napp; a++) {
    const cr_app *ap = &m->app[a];
    int outcome = 0;
    for (uint32_t i = 0; i < ap->n; i++)
      outcome |= m->ev[ap->first + i].acked | m->ev[ap->first + i].nacked;
    n += !outcome;
  }
  return n;
}

/* ---- the check ----------------------------------------------------------- */

typedef struct cr_ctx {
  cr_model *m;
  evs_store *s;
  cr_stats *st;
  unsigned max_report;
  unsigned reported;
  cr_map streams;    /* name -> index in sv */
  cr_stream *sv;
  size_t nsv, cap_sv;
  uint64_t per_type[CR_NTYPES];
  uint64_t own_events, shared_events;
  uint8_t *buf;
  size_t cap_buf;
} cr_ctx;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void cr_problem(cr_ctx *c, uint64_t *counter, const char *fmt, ...) {
  (*counter)++;
  if (c->reported++ >= c->max_report)
    return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "evs_crash: PROBLEM: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static int cr_verify_cb(const char *problem, uint64_t done, uint64_t total,
                        void *payload) {
  (void)done;
  (void)total;
  cr_ctx *c = payload;
  if (problem && c->reported++ < c->max_report)
    fprintf(stderr, "evs_crash: PROBLEM: verify: %s\n", problem);
  return 0;
}

static int cr_slice_is(evs_slice s, const char *str) {
  size_t n = strlen(str);
  return s.len == n && memcmp(s.data, str, n) == 0;
}

static const uint8_t *cr_expected_payload(cr_ctx *c, const cr_rec *r,
                                          size_t len, int which) {
  if (c->cap_buf < len) {
    free(c->buf);
    c->cap_buf = len * 2;
    c->buf = malloc(c->cap_buf);
    if (c->buf == NULL) {
      c->cap_buf = 0;
      return NULL;
    }
  }
  cr_fill_payload(c->buf, len, r->id, which);
  return c->buf;
}

/* Compares a stored event with its intent. Returns 0 when identical. */
static int cr_compare(cr_ctx *c, const cr_rec *r, const evs_event *e,
                      const char **what) {
  *what = NULL;
  if (!cr_slice_is(e->stream, r->stream))
    *what = "stream";
  else if (!cr_slice_is(e->type, cr_types[r->type_idx]))
    *what = "type";
  else if (e->data.len != r->data_len ||
           cr_hash(e->data.data, e->data.len) != r->data_hash)
    *what = "data (length or hash)";
  else if (e->metadata.len != r->meta_len)
    *what = "metadata length";
  else {
    const uint8_t *want = cr_expected_payload(c, r, r->data_len, 0);
    if (want == NULL || (r->data_len &&
                         memcmp(want, e->data.data, r->data_len) != 0))
      *what = "data bytes";
    else if ((want = cr_expected_payload(c, r, r->meta_len, 1)) == NULL ||
             (r->meta_len &&
              memcmp(want, e->metadata.data, r->meta_len) != 0))
      *what = "metadata bytes";
  }
  return *what != NULL;
}

static cr_stream *cr_stream_of(cr_ctx *c, const void *name, size_t len) {
  int created;
  struct cr_slot *s = cr_map_put(&c->streams, name, len, &created);
  if (s == NULL)
    return NULL;
  if (created) {
    if (c->nsv == c->cap_sv) {
      c->cap_sv = c->cap_sv ? c->cap_sv * 2 : 256;
      cr_stream *n = realloc(c->sv, c->cap_sv * sizeof *n);
      if (n == NULL)
        return NULL;
      c->sv = n;
    }
    s->val = c->nsv;
    c->sv[c->nsv++] = (cr_stream){EVS_VERSION_NONE, 0, 0};
  }
  return &c->sv[s->val];
}

/* Step 2: reads $all. Returns the head it saw. */
static uint64_t cr_scan_all(cr_ctx *c) {
  cr_model *m = c->m;
  cr_stats *st = c->st;
  evs_iter *it = NULL;
  evs_read_all_options ro = EVS_READ_ALL_OPTIONS_INIT;
  int rc = evs_read_all(&it, c->s, &ro);
  if (rc) {
    cr_problem(c, &st->other, "evs_read_all: %s: %s", evs_err_name(rc),
               evs_last_error());
    return 0;
  }
  const evs_event *e;
  uint64_t prev = 0;
  while ((rc = evs_iter_next(it, &e)) == 1) {
    st->events_scanned++;
    if (e->position != prev + 1)
      cr_problem(c, &st->misplaced, "$all: position %llu follows %llu",
                 (unsigned long long)e->position, (unsigned long long)prev);
    prev = e->position;
    cr_stream *sv = cr_stream_of(c, e->stream.data, e->stream.len);
    if (sv == NULL) {
      cr_problem(c, &st->other, "out of memory");
      break;
    }
    if (e->version != sv->last_version + 1)
      cr_problem(c, &st->misplaced,
                 "stream '%.*s': version %lld at position %llu follows "
                 "version %lld",
                 (int)e->stream.len, (const char *)e->stream.data,
                 (long long)e->version, (unsigned long long)e->position,
                 (long long)sv->last_version);
    sv->last_version = e->version;
    sv->last_position = e->position;
    sv->count++;
    struct cr_slot *slot = cr_map_find(&m->ids, e->id.bytes, 16);
    if (slot == NULL) {
      char id[37];
      evs_uuid_format(id, &e->id);
      cr_problem(c, &st->unknown,
                 "position %llu: event %s in '%.*s' was never intended",
                 (unsigned long long)e->position, id, (int)e->stream.len,
                 (const char *)e->stream.data);
      continue;
    }
    cr_ev *ev = &m->ev[slot->val];
    const char *what;
    if (cr_compare(c, &ev->intent, e, &what)) {
      cr_problem(c, &st->mismatched,
                 "position %llu (stream '%s'): the %s differs from what was "
                 "appended",
                 (unsigned long long)e->position, ev->intent.stream, what);
    }
    ev->found_pos = e->position;
    ev->found_ver = e->version;
    c->per_type[ev->intent.type_idx]++;
    if (strncmp(ev->intent.stream, "own-", 4) == 0)
      c->own_events++;
    else if (strncmp(ev->intent.stream, "shared-", 7) == 0)
      c->shared_events++;
  }
  if (rc < 0)
    cr_problem(c, &st->other, "reading $all after position %llu: %s: %s",
               (unsigned long long)prev, evs_err_name(rc), evs_last_error());
  evs_iter_free(it);
  uint64_t head = 0;
  rc = evs_head_position(c->s, &head);
  if (rc || head != prev)
    cr_problem(c, &st->other, "head position %llu, $all ends at %llu (%s)",
               (unsigned long long)head, (unsigned long long)prev,
               evs_err_name(rc));
  return prev;
}

/* Steps 3 and 4: appends against the ledgers. */
static void cr_check_appends(cr_ctx *c) {
  cr_model *m = c->m;
  cr_stats *st = c->st;
  for (size_t a = 0; a < m->napp; a++) {
    const cr_app *ap = &m->app[a];
    cr_ev *ev = &m->ev[ap->first];
    int last = a >= m->first_app_of_last;
    uint32_t found = 0, acked = 0, nacked = 0;
    for (uint32_t i = 0; i < ap->n; i++) {
      found += ev[i].found_pos != 0;
      acked += ev[i].acked;
      nacked += ev[i].nacked;
    }
    if (found && (found < ap->count)) {
      cr_problem(c, &st->partial,
                 "append %llx: %u of its %u events are visible (stream '%s')",
                 (unsigned long long)ap->append_id, found, ap->count,
                 ev[0].intent.stream);
    }
    if (found == ap->count) {
      /* Consecutive versions and positions inside each part, where the
       * expected version put them. */
      for (uint32_t i = 0; i < ap->n; i++) {
        const cr_rec *r = &ev[i].intent;
        if (r->part_index == 0) {
          if (r->expected >= EVS_EXPECT_NO_STREAM &&
              ev[i].found_ver != r->expected + 1)
            cr_problem(c, &st->misplaced,
                       "append %llx: '%s' expected version %lld, the first "
                       "event has version %lld",
                       (unsigned long long)ap->append_id, r->stream,
                       (long long)r->expected, (long long)ev[i].found_ver);
        } else if (ev[i].found_pos != ev[i - 1].found_pos + 1 ||
                   ev[i].found_ver != ev[i - 1].found_ver + 1) {
          cr_problem(c, &st->misplaced,
                     "append %llx: event %u of '%s' at %llu v%lld does not "
                     "follow %llu v%lld",
                     (unsigned long long)ap->append_id, i, r->stream,
                     (unsigned long long)ev[i].found_pos,
                     (long long)ev[i].found_ver,
                     (unsigned long long)ev[i - 1].found_pos,
                     (long long)ev[i - 1].found_ver);
        }
      }
    }
    if (nacked && found)
      cr_problem(c, &st->failed_visible,
                 "append %llx to '%s' was refused (%s) but %u of its events "
                 "are visible",
                 (unsigned long long)ap->append_id, ev[0].intent.stream,
                 evs_err_name(ev[0].intent.rc), found);
    int intact = acked > 0;
    for (uint32_t i = 0; i < ap->n; i++) {
      if (!ev[i].acked)
        continue;
      const cr_rec *r = &ev[i].intent;
      if (ev[i].found_pos == 0) {
        char id[37];
        evs_uuid id_u;
        memcpy(id_u.bytes, r->id, 16);
        evs_uuid_format(id, &id_u);
        cr_problem(c, &st->lost,
                   "LOST: acknowledged event %s ('%s' version %lld, position "
                   "%llu) is missing",
                   id, r->stream, (long long)ev[i].ack_version,
                   (unsigned long long)ev[i].ack_position);
        intact = 0;
      } else if (ev[i].found_ver != ev[i].ack_version ||
                 (ev[i].ack_position &&
                  ev[i].found_pos != ev[i].ack_position)) {
        cr_problem(c, &st->mismatched,
                   "acknowledged '%s' v%lld at %llu, found v%lld at %llu",
                   r->stream, (long long)ev[i].ack_version,
                   (unsigned long long)ev[i].ack_position,
                   (long long)ev[i].found_ver,
                   (unsigned long long)ev[i].found_pos);
        intact = 0;
      } else {
        st->events_acked++;
        st->events_acked_new += last;
      }
    }
    if (!last)
      continue;
    if (intact)
      st->appends_acked++;
    if (nacked && !found)
      st->nacked++;
    if (!acked && !nacked) {
      st->in_flight++;
      if (found == ap->count)
        st->in_flight_committed++;
    }
  }
}

/* Step 5: the streams table and the indexes against $all. */
static void cr_check_indexes(cr_ctx *c) {
  cr_model *m = c->m;
  cr_stats *st = c->st;
  for (size_t i = 0; i < c->streams.cap; i++) {
    struct cr_slot *slot = &c->streams.slot[i];
    if (slot->hash == 0)
      continue;
    const cr_stream *sv = &c->sv[slot->val];
    char name[EVS_MAX_NAME_LEN + 1];
    snprintf(name, sizeof name, "%.*s", (int)slot->len, slot->key);
    evs_stream_info info;
    int rc = evs_stream_info_get(c->s, name, &info);
    if (rc) {
      cr_problem(c, &st->other, "stream '%s': info: %s", name,
                 evs_err_name(rc));
      continue;
    }
    if (info.version != sv->last_version ||
        info.last_position != sv->last_position)
      cr_problem(c, &st->other,
                 "stream '%s': the streams table says v%lld at %llu, $all "
                 "says v%lld at %llu",
                 name, (long long)info.version,
                 (unsigned long long)info.last_position,
                 (long long)sv->last_version,
                 (unsigned long long)sv->last_position);
    evs_stream_info_clear(&info);
    /* The stream index: the stream read yields exactly what $all held. */
    evs_iter *it = NULL;
    evs_read_options ro = EVS_READ_OPTIONS_INIT;
    rc = evs_read_stream(&it, c->s, name, &ro);
    if (rc) {
      cr_problem(c, &st->other, "stream '%s': read: %s", name,
                 evs_err_name(rc));
      continue;
    }
    const evs_event *e;
    uint64_t n = 0;
    while ((rc = evs_iter_next(it, &e)) == 1) {
      struct cr_slot *es = cr_map_find(&m->ids, e->id.bytes, 16);
      if (es && (m->ev[es->val].found_pos != e->position ||
                 m->ev[es->val].found_ver != e->version ||
                 e->version != (int64_t)n))
        cr_problem(c, &st->other,
                   "stream '%s': the stream read gives v%lld at %llu",
                   name, (long long)e->version,
                   (unsigned long long)e->position);
      n++;
    }
    if (rc < 0 || n != sv->count)
      cr_problem(c, &st->other,
                 "stream '%s': the stream read gave %llu events (%s), $all "
                 "holds %llu",
                 name, (unsigned long long)n, evs_err_name(rc),
                 (unsigned long long)sv->count);
    evs_iter_free(it);
  }
  /* The id index, for the events of the last iteration. */
  size_t first = m->first_app_of_last < m->napp
                     ? m->app[m->first_app_of_last].first
                     : m->nev;
  for (size_t i = first; i < m->nev; i++) {
    if (m->ev[i].found_pos == 0)
      continue;
    evs_uuid id;
    memcpy(id.bytes, m->ev[i].intent.id, 16);
    uint64_t pos = 0;
    int rc = evs_find_event_id(c->s, &id, &pos);
    if (rc || pos != m->ev[i].found_pos)
      cr_problem(c, &st->other, "id index: %s position %llu, $all %llu",
                 evs_err_name(rc), (unsigned long long)pos,
                 (unsigned long long)m->ev[i].found_pos);
  }
  /* The category and type indexes: filtered reads count the same. */
  typedef struct cr_filter {
    const char *category;
    const char *type;
    uint64_t want;
  } cr_filter;
  cr_filter q[2 + CR_NTYPES];
  size_t nq = 0;
  q[nq++] = (cr_filter){"own", NULL, c->own_events};
  q[nq++] = (cr_filter){"shared", NULL, c->shared_events};
  for (unsigned t = 0; t < CR_NTYPES; t++)
    q[nq++] = (cr_filter){NULL, cr_types[t], c->per_type[t]};
  for (size_t i = 0; i < nq; i++) {
    evs_iter *it = NULL;
    evs_read_all_options ro = EVS_READ_ALL_OPTIONS_INIT;
    ro.category = q[i].category;
    ro.event_type = q[i].type;
    int rc = evs_read_all(&it, c->s, &ro);
    uint64_t n = 0, prev = 0;
    const evs_event *e;
    if (rc == 0) {
      while ((rc = evs_iter_next(it, &e)) == 1 && e->position > prev) {
        prev = e->position;
        n++;
      }
      if (rc == 1)
        n = UINT64_MAX; /* positions out of order */
    }
    evs_iter_free(it);
    if (rc < 0 || n != q[i].want)
      cr_problem(c, &st->other,
                 "%s index '%s': a filtered read gave %llu events (%s), $all "
                 "holds %llu",
                 q[i].category ? "category" : "type",
                 q[i].category ? q[i].category : q[i].type,
                 (unsigned long long)n, evs_err_name(rc),
                 (unsigned long long)q[i].want);
  }
}

/* Step 6: a probe append, read back, recorded in the model. */
static void cr_probe(cr_ctx *c, uint64_t head) {
  cr_model *m = c->m;
  cr_stats *st = c->st;
  cr_rec r;
  memset(&r, 0, sizeof r);
  r.kind = CR_INTENT;
  r.type_idx = CR_NTYPES - 1;
  r.append_id = ((uint64_t)m->last_iteration << 40) | (0xffull << 32);
  r.count = 1;
  r.nparts = 1;
  r.part_count = 1;
  r.data_len = 64;
  r.expected = m->probe_version;
  r.version = -1;
  uint64_t k = ++m->probes;
  memcpy(r.id, "probe-id", 8);
  memcpy(r.id + 8, &k, 8);
  snprintf(r.stream, sizeof r.stream, "probe");
  uint8_t data[64];
  cr_fill_payload(data, sizeof data, r.id, 0);
  r.data_hash = cr_hash(data, sizeof data);
  cr_rec_seal(&r);
  evs_event_data ev;
  memset(&ev, 0, sizeof ev);
  memcpy(ev.id.bytes, r.id, 16);
  ev.type = cr_types[r.type_idx];
  ev.data = data;
  ev.data_len = sizeof data;
  evs_append_result res;
  int rc = evs_append(c->s, "probe", m->probe_version, &ev, 1, &res);
  if (rc) {
    cr_problem(c, &st->other, "the store refuses appends after the crash: "
                              "%s: %s",
               evs_err_name(rc), evs_last_error());
    return;
  }
  if (res.first_position != head + 1 ||
      res.first_version != m->probe_version + 1)
    cr_problem(c, &st->misplaced, "probe landed at %llu v%lld, head was %llu",
               (unsigned long long)res.first_position,
               (long long)res.first_version, (unsigned long long)head);
  evs_event *back = NULL;
  rc = evs_read_event(c->s, res.first_position, &back);
  const char *what = NULL;
  if (rc || cr_compare(c, &r, back, &what))
    cr_problem(c, &st->mismatched, "probe read back: %s %s", evs_err_name(rc),
               what ? what : "");
  evs_event_free(back);
  m->probe_version = res.first_version;
  /* The probe joins the model as an acknowledged append of its own. */
  if (cr_model_add_intent(m, &r, m->last_iteration) == 0) {
    r.kind = CR_ACK;
    r.version = res.first_version;
    r.position = res.first_position;
    cr_rec_seal(&r);
    cr_model_add_outcome(m, &r);
  }
}

int cr_check(cr_model *m, const char *store_dir, evs_durability durability,
             unsigned iteration, cr_stats *st, unsigned max_report) {
  (void)iteration;
  cr_ctx c;
  memset(&c, 0, sizeof c);
  c.m = m;
  c.st = st;
  c.max_report = max_report;
  evs_store_options so = cr_store_options(durability);
  int rc = evs_store_open(&c.s, store_dir, &so);
  if (rc) {
    cr_problem(&c, &st->other, "reopening the store after the kill: %s: %s",
               evs_err_name(rc), evs_last_error());
    return 0;
  }
  evs_verify_report vr;
  rc = evs_store_verify(c.s, &vr, cr_verify_cb, &c);
  if (rc)
    cr_problem(&c, &st->other, "evs_store_verify: %s: %s", evs_err_name(rc),
               evs_last_error());
  else
    st->verify_errors += vr.errors;
  for (size_t i = 0; i < m->nev; i++)
    m->ev[i].found_pos = 0;
  uint64_t head = cr_scan_all(&c);
  cr_check_appends(&c);
  cr_check_indexes(&c);
  cr_probe(&c, head);
  evs_store_close(c.s);
  cr_map_free(&c.streams);
  free(c.sv);
  free(c.buf);
  return 0;
}
