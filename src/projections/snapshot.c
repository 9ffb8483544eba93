/*
 * evstore — aggregate snapshots, kept in the views environment's
 * `$snapshots` database (never in the event log): stream name ->
 *   i64 version · i64 saved_ns · u8 schema length · schema · state bytes
 * (big-endian). One snapshot per stream: the newest.
 */
#include <stdlib.h>
#include <string.h>

#include "projections/internal.h"
#include "store/internal.h"

#define EVS__SNAP_HDR 17u

typedef struct evs__snap_ctx {
  const char *stream;
  size_t stream_len;
  int64_t version;
  const char *schema;
  size_t schema_len;
  const void *data;
  size_t len;
  int older; /* a later snapshot was already stored */
} evs__snap_ctx;

static int evs__snap_save_fn(evs_views *v, MDB_txn *txn, void *vctx) {
  evs__snap_ctx *c = vctx;
  MDB_dbi dbi = evs__views_snapshots_dbi(v);
  MDB_val k = { c->stream_len, (void *)c->stream }, d;
  c->older = 0;
  int rc = mdb_get(txn, dbi, &k, &d);
  if (rc == 0 && d.mv_size >= EVS__SNAP_HDR &&
      (int64_t)evs__get_be64(d.mv_data) > c->version) {
    c->older = 1;
    return 0;
  }
  if (rc && rc != MDB_NOTFOUND)
    return evs__views_lmdb_err(rc, "reading a snapshot");
  d.mv_size = EVS__SNAP_HDR + c->schema_len + c->len;
  rc = mdb_put(txn, dbi, &k, &d, MDB_RESERVE);
  if (rc == MDB_MAP_FULL)
    return EVS_EMAPFULL;
  if (rc)
    return evs__views_lmdb_err(rc, "writing a snapshot");
  uint8_t *p = d.mv_data;
  evs__put_be64(p, (uint64_t)c->version);
  evs__put_be64(p + 8, (uint64_t)evs__now_ns());
  p[16] = (uint8_t)c->schema_len;
  memcpy(p + EVS__SNAP_HDR, c->schema, c->schema_len);
  if (c->len)
    memcpy(p + EVS__SNAP_HDR + c->schema_len, c->data, c->len);
  return 0;
}

int evs_snapshot_save(evs_views *v, const char *stream, int64_t version,
                      const char *schema, const void *data, size_t len) {
  evs__clear_error();
  if (v == NULL || schema == NULL || (data == NULL && len))
    return evs__err(EVS_EINVAL, "NULL views, schema or data");
  size_t slen;
  int rc = evs__check_stream_name(stream, &slen);
  if (rc)
    return rc;
  size_t tlen = strlen(schema);
  if (tlen == 0 || tlen > 255)
    return evs__err(EVS_EINVAL, "schema tags are 1..255 bytes");
  if (version < 0)
    return evs__err(EVS_EINVAL, "snapshot version must be >= 0");
  if (len > EVS_HARD_MAX_EVENT_SIZE)
    return evs__err(EVS_ETOOLARGE, "snapshot of %zu bytes (at most %u)", len,
                    EVS_HARD_MAX_EVENT_SIZE);
  evs__snap_ctx c = { stream, slen, version, schema, tlen, data, len, 0 };
  rc = evs__views_write(v, evs__snap_save_fn, &c);
  if (rc)
    return rc;
  return c.older ? 1 : 0;
}

int evs_snapshot_load(evs_snapshot **out, evs_views *v, const char *stream) {
  evs__clear_error();
  if (out == NULL || v == NULL)
    return evs__err(EVS_EINVAL, "NULL output or views");
  *out = NULL;
  size_t slen;
  int rc = evs__check_stream_name(stream, &slen);
  if (rc)
    return rc;
  MDB_txn *txn;
  rc = evs__views_read_begin(v, &txn);
  if (rc)
    return rc;
  MDB_val k = { slen, (void *)stream }, d;
  int mrc = mdb_get(txn, evs__views_snapshots_dbi(v), &k, &d);
  if (mrc == MDB_NOTFOUND) {
    evs__views_read_end(v, txn);
    return evs__err(EVS_ENOTFOUND, "no snapshot of '%s'", stream);
  }
  if (mrc) {
    evs__views_read_end(v, txn);
    return evs__views_lmdb_err(mrc, "reading a snapshot");
  }
  const uint8_t *p = d.mv_data;
  size_t tlen = d.mv_size >= EVS__SNAP_HDR ? p[16] : 0;
  if (d.mv_size < EVS__SNAP_HDR || d.mv_size - EVS__SNAP_HDR < tlen) {
    evs__views_read_end(v, txn);
    return evs__err(EVS_ECORRUPT, "snapshot of '%s' is damaged", stream);
  }
  size_t len = d.mv_size - EVS__SNAP_HDR - tlen;
  evs_snapshot *s = calloc(1, sizeof *s);
  if (s) {
    s->stream = strdup(stream);
    s->schema = malloc(tlen + 1);
    s->data = malloc(len ? len : 1);
  }
  if (s == NULL || s->stream == NULL || s->schema == NULL || s->data == NULL) {
    evs__views_read_end(v, txn);
    evs_snapshot_free(s);
    return evs__err(EVS_ENOMEM, "out of memory");
  }
  s->version = (int64_t)evs__get_be64(p);
  s->saved_ns = (int64_t)evs__get_be64(p + 8);
  memcpy(s->schema, p + EVS__SNAP_HDR, tlen);
  s->schema[tlen] = '\0';
  if (len)
    memcpy(s->data, p + EVS__SNAP_HDR + tlen, len);
  s->len = len;
  evs__views_read_end(v, txn);
  *out = s;
  return 0;
}

void evs_snapshot_free(evs_snapshot *s) {
  if (s == NULL)
    return;
  free(s->stream);
  free(s->schema);
  free(s->data);
  free(s);
}

static int evs__snap_del_fn(evs_views *v, MDB_txn *txn, void *vctx) {
  evs__snap_ctx *c = vctx;
  MDB_val k = { c->stream_len, (void *)c->stream };
  int rc = mdb_del(txn, evs__views_snapshots_dbi(v), &k, NULL);
  if (rc == MDB_NOTFOUND)
    return 0;
  return rc ? evs__views_lmdb_err(rc, "deleting a snapshot") : 0;
}

int evs_snapshot_delete(evs_views *v, const char *stream) {
  evs__clear_error();
  if (v == NULL)
    return evs__err(EVS_EINVAL, "NULL views");
  size_t slen;
  int rc = evs__check_stream_name(stream, &slen);
  if (rc)
    return rc;
  evs__snap_ctx c;
  memset(&c, 0, sizeof c);
  c.stream = stream;
  c.stream_len = slen;
  return evs__views_write(v, evs__snap_del_fn, &c);
}

/* ---- loading an aggregate
 * ------------------------------------------------------ */

static int evs__cb_rc(int r, const char *what) {
  if (r > 0)
    return evs__err(EVS_EHANDLER, "%s returned %d", what, r);
  return r;
}

int evs_aggregate_load(evs_aggregate_info *out, evs_store *store,
                       evs_views *views, const char *stream, const char *schema,
                       evs_agg_restore_cb restore, evs_agg_apply_cb apply,
                       void *payload) {
  evs__clear_error();
  evs_aggregate_info info = { EVS_VERSION_NONE, EVS_VERSION_NONE, 0 };
  if (out)
    *out = info;
  if (store == NULL || apply == NULL || (views && (!schema || !restore)))
    return evs__err(EVS_EINVAL, "NULL store or callback (with views, a "
                                "schema and a restore callback are needed)");
  int rc = evs__check_stream_name(stream, NULL);
  if (rc)
    return rc;
  evs_stream_info si;
  rc = evs_stream_info_get(store, stream, &si);
  if (rc == EVS_ENOSTREAM) {
    evs__clear_error();
    return 0;
  }
  if (rc)
    return rc;
  int64_t start_version = si.start_version;
  int64_t last_version = si.version;
  unsigned flags = si.flags;
  evs_stream_info_clear(&si);
  if (flags & EVS_STREAM_TOMBSTONED)
    return evs__err(EVS_ESTREAMDELETED, "stream '%s' is tombstoned", stream);
  if ((flags & EVS_STREAM_DELETED) || last_version < 0)
    return 0;

  int64_t from = 0;
  if (views) {
    evs_snapshot *snap = NULL;
    rc = evs_snapshot_load(&snap, views, stream);
    if (rc == 0) {
      /* Usable: same schema, from the stream's current life, not ahead of
       * the stream. */
      if (strcmp(snap->schema, schema) == 0 && snap->version >= start_version &&
          snap->version <= last_version) {
        rc = evs__cb_rc(restore(snap->data, snap->len, snap->version, payload),
                        "restore callback");
        if (rc == 0) {
          info.snapshot_version = snap->version;
          info.version = snap->version;
          from = snap->version + 1;
        }
      }
      evs_snapshot_free(snap);
      if (rc)
        return rc;
    } else if (rc != EVS_ENOTFOUND) {
      return rc;
    }
    evs__clear_error();
  }
  evs_read_options ro = EVS_READ_OPTIONS_INIT;
  ro.from_version = from;
  evs_iter *it = NULL;
  rc = evs_read_stream(&it, store, stream, &ro);
  if (rc == EVS_ENOSTREAM) {
    evs__clear_error();
    rc = 0;
  } else if (rc == 0) {
    const evs_event *ev;
    while ((rc = evs_iter_next(it, &ev)) == 1) {
      rc = evs__cb_rc(apply(ev, payload), "apply callback");
      if (rc)
        break;
      info.version = ev->version;
      info.events_read++;
    }
    evs_iter_free(it);
  }
  if (out)
    *out = info;
  return rc;
}
