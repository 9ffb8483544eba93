/*
 * evstore — maintenance: stats, the verify pass and compaction.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>

#include "store/internal.h"

#define EVS__COMPACT_CHUNK 4096

/* ---- stats --------------------------------------------------------------- */

static uint64_t evs__entries(MDB_txn *txn, MDB_dbi dbi) {
  MDB_stat st;
  if (mdb_stat(txn, dbi, &st))
    return 0;
  return st.ms_entries;
}

int evs_store_stats(evs_store *s, evs_stats *out, int full) {
  evs__clear_error();
  if (s == NULL || out == NULL)
    return evs__err(EVS_EINVAL, "NULL argument");
  memset(out, 0, sizeof *out);
  MDB_txn *txn;
  int rc = evs__read_begin(s, &txn);
  if (rc)
    return rc;
  MDB_envinfo info;
  MDB_stat est;
  mdb_env_info(s->env, &info);
  mdb_env_stat(s->env, &est);
  out->map_size = info.me_mapsize;
  out->page_size = est.ms_psize;
  out->map_used = (uint64_t)(info.me_last_pgno + 1) * est.ms_psize;
  out->events = evs__entries(txn, s->db_events);
  out->streams = evs__entries(txn, s->db_streams);
  out->event_types = evs__entries(txn, s->db_types);
  out->categories = evs__entries(txn, s->db_cats);
  rc = evs__log_head(s, txn, &out->last_position, &out->last_timestamp_ns);
  if (rc == 0 && full) {
    MDB_cursor *c;
    int mrc = mdb_cursor_open(txn, s->db_events, &c);
    if (mrc == 0) {
      MDB_val k, v;
      for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0;
           mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        evs__record r;
        if (evs__record_peek(&r, v.mv_data, v.mv_size))
          continue;
        out->data_bytes_raw += r.raw_len;
        out->data_bytes_stored += r.data_len;
        if (r.flags & EVS__REC_COMPRESSED)
          out->compressed_events++;
      }
      mdb_cursor_close(c);
    }
  }
  evs__read_end(s, txn);
  char path[4096];
  struct stat fst;
  snprintf(path, sizeof path, "%s/data.mdb", s->path);
  if (stat(path, &fst) == 0)
    out->file_size = (uint64_t)fst.st_size;
  return rc;
}

/* ---- verify -------------------------------------------------------------- */

typedef struct evs__vctx {
  evs_verify_cb cb;
  void *payload;
  evs_verify_report *rep;
  uint64_t total;
  int stop;
} evs__vctx;

static void evs__problem(evs__vctx *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void evs__problem(evs__vctx *v, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  v->rep->errors++;
  if (v->cb && v->cb(buf, v->rep->events_checked, v->total, v->payload))
    v->stop = 1;
}

static int evs__has_dup(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl,
                        const void *d, size_t dl) {
  MDB_cursor *c;
  if (mdb_cursor_open(txn, dbi, &c))
    return 0;
  MDB_val key = { kl, (void *)k }, val = { dl, (void *)d };
  int rc = mdb_cursor_get(c, &key, &val, MDB_GET_BOTH);
  mdb_cursor_close(c);
  return rc == 0;
}

int evs_store_verify(evs_store *s, evs_verify_report *out, evs_verify_cb cb,
                     void *payload) {
  evs__clear_error();
  if (s == NULL || out == NULL)
    return evs__err(EVS_EINVAL, "NULL argument");
  memset(out, 0, sizeof *out);
  MDB_txn *txn;
  int rc = evs__read_begin(s, &txn);
  if (rc)
    return rc;
  evs__vctx v = { cb, payload, out, evs__entries(txn, s->db_events), 0 };
  MDB_cursor *c;
  int mrc = mdb_cursor_open(txn, s->db_events, &c);
  if (mrc) {
    evs__read_end(s, txn);
    return evs__err(evs__lmdb_err(mrc), "cursor: %s", mdb_strerror(mrc));
  }
  MDB_val k, val;
  uint64_t prev_pos = 0;
  int64_t prev_ts = INT64_MIN;
  /* A small cache of the last stream looked up. */
  uint64_t cached_sid = 0, cached_cid = 0;
  int64_t cached_last = -1;
  for (mrc = mdb_cursor_get(c, &k, &val, MDB_FIRST); mrc == 0 && !v.stop;
       mrc = mdb_cursor_get(c, &k, &val, MDB_NEXT)) {
    out->events_checked++;
    if (cb && (out->events_checked & 4095) == 0 &&
        cb(NULL, out->events_checked, v.total, payload))
      break;
    if (k.mv_size != 8) {
      evs__problem(&v, "log key of %zu bytes", k.mv_size);
      continue;
    }
    uint64_t pos = evs__get_be64(k.mv_data);
    {
      /* The cursor walk follows sibling order; a lookup by key descends
       * through the branch pages, so damaged branch keys show up here. */
      MDB_val lk = k, lv;
      if (mdb_get(txn, s->db_events, &lk, &lv) != 0 ||
          lv.mv_data != val.mv_data || lv.mv_size != val.mv_size)
        evs__problem(&v,
                     "position %llu cannot be looked up (damaged log "
                     "B-tree)",
                     (unsigned long long)pos);
    }
    if (pos <= prev_pos)
      evs__problem(&v, "position %llu does not increase",
                   (unsigned long long)pos);
    prev_pos = pos;
    evs__record r;
    if (evs__record_decode(&r, val.mv_data, val.mv_size)) {
      evs__problem(&v,
                   "record at position %llu is corrupt (checksum or "
                   "structure)",
                   (unsigned long long)pos);
      continue;
    }
    if (r.flags & EVS__REC_COMPRESSED) {
      void *buf = NULL, *dctx = NULL;
      size_t cap = 0;
      evs_slice d;
      if (evs__record_data(s, &r, &buf, &cap, &dctx, &d))
        evs__problem(&v,
                     "record at position %llu: data does not "
                     "decompress",
                     (unsigned long long)pos);
      free(buf);
      if (dctx)
        ZSTD_freeDCtx((ZSTD_DCtx *)dctx);
    }
    if (r.timestamp_ns < prev_ts)
      evs__problem(&v, "timestamp goes back at position %llu",
                   (unsigned long long)pos);
    prev_ts = r.timestamp_ns;
    evs_slice tname;
    if (evs__type_name(s, txn, r.type_id, &tname))
      evs__problem(&v, "position %llu: unknown type id %llu",
                   (unsigned long long)pos, (unsigned long long)r.type_id);
    if (r.stream_id != cached_sid) {
      evs_slice sname;
      evs__stream_rec st;
      if (evs__stream_name(s, txn, r.stream_id, &sname) ||
          evs__stream_get(s, txn, sname.data, sname.len, &st)) {
        evs__problem(&v, "position %llu: unknown stream id %llu",
                     (unsigned long long)pos, (unsigned long long)r.stream_id);
        continue;
      }
      cached_sid = r.stream_id;
      cached_cid = st.category_id;
      cached_last = st.last_version;
      if (st.stream_id != r.stream_id)
        evs__problem(&v,
                     "stream id %llu maps to a stream record with id "
                     "%llu",
                     (unsigned long long)r.stream_id,
                     (unsigned long long)st.stream_id);
    }
    if ((int64_t)r.version > cached_last)
      evs__problem(&v,
                   "position %llu: version %llu beyond its stream's "
                   "last version %lld",
                   (unsigned long long)pos, (unsigned long long)r.version,
                   (long long)cached_last);
    uint8_t kb[8], vb[16];
    evs__put_be64(kb, r.stream_id);
    evs__put_be64(vb, r.version);
    evs__put_be64(vb + 8, pos);
    if (!evs__has_dup(txn, s->db_stream_index, kb, 8, vb, 16))
      evs__problem(&v, "position %llu missing from the stream index",
                   (unsigned long long)pos);
    MDB_val ik = { 16, (void *)r.id }, iv;
    if (mdb_get(txn, s->db_ids, &ik, &iv) || iv.mv_size != 8 ||
        evs__get_be64(iv.mv_data) != pos)
      evs__problem(&v, "position %llu missing from the id index",
                   (unsigned long long)pos);
    evs__put_be64(kb, cached_cid);
    if (!evs__has_dup(txn, s->db_cat_index, kb, 8, k.mv_data, 8))
      evs__problem(&v, "position %llu missing from the category index",
                   (unsigned long long)pos);
    evs__put_be64(kb, r.type_id);
    if (!evs__has_dup(txn, s->db_type_index, kb, 8, k.mv_data, 8))
      evs__problem(&v, "position %llu missing from the type index",
                   (unsigned long long)pos);
  }
  mdb_cursor_close(c);
  /* A read error ends the walk early: what was not read is not verified
   * (and the index sizes cannot be compared with a partial count). */
  int log_failed = mrc != 0 && mrc != MDB_NOTFOUND;
  if (log_failed)
    evs__problem(&v, "reading the log failed after %llu events: %s",
                 (unsigned long long)out->events_checked, mdb_strerror(mrc));
  if (!v.stop && !log_failed) {
    uint64_t n = out->events_checked;
    struct {
      MDB_dbi dbi;
      const char *name;
    } idx[] = { { s->db_stream_index, "stream" },
                { s->db_ids, "id" },
                { s->db_cat_index, "category" },
                { s->db_type_index, "type" } };
    for (size_t i = 0; i < 4; i++) {
      uint64_t e = evs__entries(txn, idx[i].dbi);
      if (e != n)
        evs__problem(&v, "the %s index has %llu entries for %llu events",
                     idx[i].name, (unsigned long long)e, (unsigned long long)n);
    }
  }
  /* Streams: names agree both ways, the index tail matches the record. */
  if (!v.stop && (mrc = mdb_cursor_open(txn, s->db_streams, &c)) == 0) {
    MDB_cursor *ic = NULL;
    mdb_cursor_open(txn, s->db_stream_index, &ic);
    for (mrc = mdb_cursor_get(c, &k, &val, MDB_FIRST); mrc == 0 && !v.stop;
         mrc = mdb_cursor_get(c, &k, &val, MDB_NEXT)) {
      out->streams_checked++;
      evs__stream_rec st;
      if (evs__stream_rec_decode(&st, val.mv_data, val.mv_size)) {
        evs__problem(&v, "stream record '%.*s' is corrupt",
                     (int)(k.mv_size > 255 ? 255 : k.mv_size),
                     (const char *)k.mv_data);
        continue;
      }
      evs_slice name;
      if (evs__stream_name(s, txn, st.stream_id, &name) ||
          name.len != k.mv_size || memcmp(name.data, k.mv_data, name.len) != 0)
        evs__problem(&v, "stream '%.*s': id %llu does not map back to it",
                     (int)(k.mv_size > 255 ? 255 : k.mv_size),
                     (const char *)k.mv_data, (unsigned long long)st.stream_id);
      /* The record's head may lag its list (evs__stream_head), never
       * lead it, and the list's last entry must name the event there. */
      if (ic != NULL && evs__stream_head(s, txn, ic, &st) != 0) {
        evs__problem(&v, "stream '%.*s': %s",
                     (int)(k.mv_size > 255 ? 255 : k.mv_size),
                     (const char *)k.mv_data, evs_last_error());
        continue;
      }
      if (ic == NULL || st.last_version < 0)
        continue;
      uint8_t kb[8];
      evs__put_be64(kb, st.stream_id);
      MDB_val ikey = { 8, kb }, iv;
      int irc = mdb_cursor_get(ic, &ikey, &iv, MDB_SET);
      if (irc == MDB_NOTFOUND) {
        /* Compaction may remove every event of a stream that hides them
         * all; a visible stream always keeps its last event. */
        int all_hidden =
            (st.flags & (EVS_STREAM_DELETED | EVS_STREAM_TOMBSTONED)) ||
            st.max_age_sec || evs__visible_from(&st) > st.last_version;
        if (!all_hidden)
          evs__problem(&v, "stream '%.*s': version %lld but no index entry",
                       (int)(k.mv_size > 255 ? 255 : k.mv_size),
                       (const char *)k.mv_data, (long long)st.last_version);
        continue;
      }
      if (irc == 0)
        irc = mdb_cursor_get(ic, &ikey, &iv, MDB_LAST_DUP);
      if (irc || iv.mv_size != 16 ||
          (int64_t)evs__get_be64(iv.mv_data) != st.last_version ||
          evs__get_be64((uint8_t *)iv.mv_data + 8) != st.last_position) {
        evs__problem(&v,
                     "stream '%.*s': last version %lld at %llu does not "
                     "match its index",
                     (int)(k.mv_size > 255 ? 255 : k.mv_size),
                     (const char *)k.mv_data, (long long)st.last_version,
                     (unsigned long long)st.last_position);
        continue;
      }
      /* Versions in the index are consecutive. */
      size_t count = 0;
      if (mdb_cursor_count(ic, &count) == 0 && count > 0) {
        MDB_val fk = { 8, kb }, fv;
        if (mdb_cursor_get(ic, &fk, &fv, MDB_FIRST_DUP) == 0 &&
            fv.mv_size == 16) {
          int64_t first = (int64_t)evs__get_be64(fv.mv_data);
          if (st.last_version - first + 1 != (int64_t)count)
            evs__problem(&v,
                         "stream '%.*s': %zu index entries for versions "
                         "%lld..%lld (a gap)",
                         (int)(k.mv_size > 255 ? 255 : k.mv_size),
                         (const char *)k.mv_data, count, (long long)first,
                         (long long)st.last_version);
        }
      }
    }
    if (mrc != 0 && mrc != MDB_NOTFOUND)
      evs__problem(&v,
                   "reading the streams table failed after %llu "
                   "streams: %s",
                   (unsigned long long)out->streams_checked, mdb_strerror(mrc));
    if (ic)
      mdb_cursor_close(ic);
    mdb_cursor_close(c);
  } else if (!v.stop) {
    evs__problem(&v, "reading the streams table failed: %s", mdb_strerror(mrc));
  }
  /* Name tables (types, categories): both directions agree. */
  struct {
    MDB_dbi by_name, by_id;
    const char *what;
  } tabs[] = { { s->db_types, s->db_type_names, "type" },
               { s->db_cats, s->db_cat_names, "category" } };
  for (size_t t = 0; t < 2 && !v.stop; t++) {
    for (int dir = 0; dir < 2 && !v.stop; dir++) {
      MDB_dbi from = dir ? tabs[t].by_id : tabs[t].by_name;
      MDB_dbi to = dir ? tabs[t].by_name : tabs[t].by_id;
      if (mdb_cursor_open(txn, from, &c) != 0)
        continue;
      for (mrc = mdb_cursor_get(c, &k, &val, MDB_FIRST); mrc == 0 && !v.stop;
           mrc = mdb_cursor_get(c, &k, &val, MDB_NEXT)) {
        MDB_val back_k = val, back_v;
        if (mdb_get(txn, to, &back_k, &back_v) != 0 ||
            back_v.mv_size != k.mv_size ||
            memcmp(back_v.mv_data, k.mv_data, k.mv_size) != 0)
          evs__problem(&v, "the %s name table does not map back both ways",
                       tabs[t].what);
      }
      if (mrc != 0 && mrc != MDB_NOTFOUND)
        evs__problem(&v, "reading the %s table failed: %s", tabs[t].what,
                     mdb_strerror(mrc));
      mdb_cursor_close(c);
    }
  }
  evs__read_end(s, txn);
  return 0;
}

/* ---- compaction ---------------------------------------------------------- */

typedef struct evs__compact_state {
  /* committed progress */
  char resume[EVS_MAX_NAME_LEN + 1];
  size_t resume_len;
  int have_resume;
  uint64_t removed, visited;
  /* the chunk in flight (applied only once it commits) */
  char p_resume[EVS_MAX_NAME_LEN + 1];
  size_t p_resume_len;
  int p_have_resume;
  uint64_t p_removed, p_visited;
  int p_finished;
} evs__compact_state;

static int evs__del(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl,
                    const void *d, size_t dl) {
  MDB_val key = { kl, (void *)k }, val = { dl, (void *)d };
  int rc = mdb_del(txn, dbi, &key, d ? &val : NULL);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Removes hidden events of one stream, up to *budget. Returns an LMDB code;
 * *more is set when the budget ran out first. */
static int evs__compact_stream(evs_store *s, MDB_txn *txn,
                               const evs__stream_rec *st, uint64_t head,
                               uint64_t *budget, uint64_t *removed, int *more) {
  int all = (st->flags & EVS_STREAM_TOMBSTONED) != 0;
  int64_t lo = evs__visible_from(st);
  int64_t cut = st->max_age_sec
                    ? evs__now_ns() - (int64_t)st->max_age_sec * 1000000000LL
                    : INT64_MIN;
  uint8_t sk[8];
  evs__put_be64(sk, st->stream_id);
  MDB_cursor *c;
  int rc = mdb_cursor_open(txn, s->db_stream_index, &c);
  if (rc)
    return rc;
  *more = 0;
  for (;;) {
    MDB_val k = { 8, sk }, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET);
    if (rc == 0)
      rc = mdb_cursor_get(c, &k, &v, MDB_FIRST_DUP);
    if (rc == MDB_NOTFOUND) {
      rc = 0;
      break;
    }
    if (rc)
      break;
    if (v.mv_size != 16) {
      rc = MDB_CORRUPTED;
      break;
    }
    int64_t ver = (int64_t)evs__get_be64(v.mv_data);
    uint64_t pos = evs__get_be64((const uint8_t *)v.mv_data + 8);
    uint8_t pk[8];
    evs__put_be64(pk, pos);
    MDB_val ek = { 8, pk }, ev;
    evs__record r;
    int grc = mdb_get(txn, s->db_events, &ek, &ev);
    if (grc && grc != MDB_NOTFOUND) {
      rc = grc;
      break;
    }
    int have = grc == 0 && evs__record_peek(&r, ev.mv_data, ev.mv_size) == 0;
    int hidden = all || ver < lo || (have && r.timestamp_ns < cut);
    if (!hidden || pos == head)
      break; /* never remove the head: positions must not be reused */
    if (*budget == 0) {
      *more = 1;
      break;
    }
    uint8_t vb[16];
    memcpy(vb, v.mv_data, 16);
    if (have) {
      uint8_t id[16], kb[8];
      memcpy(id, r.id, 16);
      uint64_t tid = r.type_id;
      if ((rc = evs__del(txn, s->db_ids, id, 16, NULL, 0)))
        break;
      evs__put_be64(kb, st->category_id);
      if ((rc = evs__del(txn, s->db_cat_index, kb, 8, pk, 8)))
        break;
      evs__put_be64(kb, tid);
      if ((rc = evs__del(txn, s->db_type_index, kb, 8, pk, 8)))
        break;
      if ((rc = evs__del(txn, s->db_events, pk, 8, NULL, 0)))
        break;
    }
    if ((rc = evs__del(txn, s->db_stream_index, sk, 8, vb, 16)))
      break;
    (*budget)--;
    (*removed)++;
  }
  mdb_cursor_close(c);
  return rc;
}

int evs__apply_compact(evs_store *s, MDB_txn *txn, void *state, int *req_rc) {
  evs__compact_state *cs = (evs__compact_state *)state;
  memcpy(cs->p_resume, cs->resume, sizeof cs->resume);
  cs->p_resume_len = cs->resume_len;
  cs->p_have_resume = cs->have_resume;
  cs->p_removed = 0;
  cs->p_visited = 0;
  cs->p_finished = 0;
  uint64_t head;
  int64_t hts;
  int rc = evs__log_head(s, txn, &head, &hts);
  if (rc) {
    *req_rc = rc;
    return 0;
  }
  MDB_cursor *c;
  if ((rc = mdb_cursor_open(txn, s->db_streams, &c)))
    return rc;
  MDB_val k, v;
  if (cs->p_have_resume) {
    k.mv_size = cs->p_resume_len;
    k.mv_data = cs->p_resume;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
  } else {
    rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
  }
  uint64_t budget = EVS__COMPACT_CHUNK;
  for (; rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    evs__stream_rec st;
    if (evs__stream_rec_decode(&st, v.mv_data, v.mv_size) ||
        k.mv_size > EVS_MAX_NAME_LEN) {
      mdb_cursor_close(c);
      *req_rc = evs__err(EVS_ECORRUPT, "a stream record is corrupt");
      return 0;
    }
    if ((rc = evs__stream_head(s, txn, NULL, &st)) != 0) {
      mdb_cursor_close(c);
      *req_rc = rc;
      return 0;
    }
    /* Remember where we are before touching other databases. */
    memcpy(cs->p_resume, k.mv_data, k.mv_size);
    cs->p_resume_len = k.mv_size;
    cs->p_have_resume = 1;
    int restricted =
        (st.flags & (EVS_STREAM_TOMBSTONED | EVS_STREAM_DELETED)) ||
        st.max_count || st.max_age_sec || st.truncate_before > 0 ||
        st.start_version > 0;
    if (restricted && st.head_moved) {
      /* Compaction may remove the stream's last entries: the record then
       * holds its head (see evs__stream_head), so bring it up to date.
       * The key and value are copied first: both point into the page the
       * put rewrites. */
      size_t n = evs__stream_rec_size(&st);
      void *buf = malloc(n);
      if (buf == NULL) {
        mdb_cursor_close(c);
        return ENOMEM;
      }
      evs__stream_rec_encode(buf, &st);
      MDB_val nk = { cs->p_resume_len, cs->p_resume }, nv = { n, buf };
      rc = mdb_cursor_put(c, &nk, &nv, MDB_CURRENT);
      free(buf);
      if (rc) {
        mdb_cursor_close(c);
        return rc;
      }
      st.custom = NULL; /* pointed into the old value */
      st.custom_len = 0;
    }
    if (restricted) {
      int more = 0;
      int crc = evs__compact_stream(s, txn, &st, head, &budget, &cs->p_removed,
                                    &more);
      if (crc) {
        mdb_cursor_close(c);
        return crc;
      }
      if (more) {
        mdb_cursor_close(c);
        *req_rc = 0;
        return 0;
      }
    }
    cs->p_visited++;
    /* Keep the resume point just past this stream. */
    if (cs->p_resume_len < EVS_MAX_NAME_LEN + 1) {
      cs->p_resume[cs->p_resume_len] = '\0';
      cs->p_resume_len++; /* name + NUL sorts right after name */
    }
    if (budget == 0) {
      mdb_cursor_close(c);
      *req_rc = 0;
      return 0;
    }
  }
  mdb_cursor_close(c);
  if (rc != MDB_NOTFOUND)
    return rc;
  cs->p_finished = 1;
  *req_rc = 0;
  return 0;
}

int evs_store_compact(evs_store *s, evs_compact_report *out) {
  evs__clear_error();
  if (out)
    memset(out, 0, sizeof *out);
  if (s == NULL)
    return evs__err(EVS_EINVAL, "NULL store");
  if (s->read_only)
    return evs__err(EVS_EINVAL, "store was opened read-only");
  evs__compact_state *cs = calloc(1, sizeof *cs);
  if (cs == NULL)
    return evs__err(EVS_ENOMEM, "out of memory");
  int rc;
  for (;;) {
    rc = evs__submit_compact(s, cs);
    if (rc)
      break;
    memcpy(cs->resume, cs->p_resume, sizeof cs->resume);
    cs->resume_len = cs->p_resume_len;
    cs->have_resume = cs->p_have_resume;
    cs->removed += cs->p_removed;
    cs->visited += cs->p_visited;
    if (cs->p_finished)
      break;
  }
  if (out) {
    out->events_removed = cs->removed;
    out->streams_visited = cs->visited;
  }
  free(cs);
  return rc;
}
