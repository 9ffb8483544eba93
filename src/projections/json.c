/*
 * evstore — the JSON document model of the merge-patch fold (see json.h).
 */
#include "projections/json.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore/errors.h"
#include "store/internal.h"

/* ---- nodes -----------------------------------------------------------------
 */

struct evs__json {
  uint8_t type; /* evs__json_type */
};

/* A number (its lexeme) or a string (decoded). */
typedef struct evs__jtext {
  evs__json h;
  size_t len;
  char s[];
} evs__jtext;

typedef struct evs__jarray {
  evs__json h;
  size_t n, cap;
  evs__json **v;
} evs__jarray;

typedef struct evs__jmember {
  char *key; /* decoded, may hold NUL bytes */
  size_t klen;
  uint64_t hash;
  evs__json *val;
} evs__jmember;

/*
 * Members in insertion order. Objects of more than EVS__JSON_INDEX_MIN
 * members also have a hash index (open addressing, member index + 1 per
 * slot, 0 for free), so that folding into a large state stays linear. The
 * index is only a shortcut: when it cannot be allocated, lookups scan.
 * Each object hashes with its own seed (from its address), so that the
 * keys of an event cannot be chosen to collide in every process.
 */
typedef struct evs__jobject {
  evs__json h;
  size_t n, cap;
  evs__jmember *m;
  uint32_t *index;
  size_t icap; /* a power of two, at least twice n; 0 without index */
  uint64_t seed;
} evs__jobject;

#define EVS__JSON_INDEX_MIN 8
#define EVS__JSON_NONE SIZE_MAX

static evs__json evs__jnull = { EVS__JSON_NULL };
static evs__json evs__jfalse = { EVS__JSON_FALSE };
static evs__json evs__jtrue = { EVS__JSON_TRUE };

evs__json *evs__json_null(void) {
  return &evs__jnull;
}

evs__json_type evs__json_typeof(const evs__json *v) {
  return (evs__json_type)v->type;
}

void evs__json_free(evs__json *v) {
  if (v == NULL || v == &evs__jnull || v == &evs__jfalse || v == &evs__jtrue)
    return;
  switch (v->type) {
  case EVS__JSON_NUMBER:
  case EVS__JSON_STRING:
    free(v);
    return;
  case EVS__JSON_ARRAY: {
    evs__jarray *a = (evs__jarray *)v;
    for (size_t i = 0; i < a->n; i++)
      evs__json_free(a->v[i]);
    free(a->v);
    free(a);
    return;
  }
  case EVS__JSON_OBJECT: {
    evs__jobject *o = (evs__jobject *)v;
    for (size_t i = 0; i < o->n; i++) {
      free(o->m[i].key);
      evs__json_free(o->m[i].val);
    }
    free(o->m);
    free(o->index);
    free(o);
    return;
  }
  default:
    return;
  }
}

static evs__jtext *evs__jtext_new(evs__json_type type, size_t cap) {
  if (cap > SIZE_MAX - sizeof(evs__jtext) - 1)
    return NULL;
  evs__jtext *t = malloc(sizeof *t + cap + 1);
  if (t == NULL)
    return NULL;
  t->h.type = (uint8_t)type;
  t->len = 0;
  return t;
}

static evs__json *evs__jtext_make(evs__json_type type, const char *s,
                                  size_t len) {
  evs__jtext *t = evs__jtext_new(type, len);
  if (t == NULL)
    return NULL;
  if (len)
    memcpy(t->s, s, len);
  t->s[len] = '\0';
  t->len = len;
  return &t->h;
}

evs__json *evs__json_string(const char *s, size_t len) {
  return evs__jtext_make(EVS__JSON_STRING, s, len);
}

evs__json *evs__json_int(int64_t v) {
  char num[24];
  int n = snprintf(num, sizeof num, "%" PRId64, v);
  return evs__jtext_make(EVS__JSON_NUMBER, num, (size_t)n);
}

evs__json *evs__json_uint(uint64_t v) {
  char num[24];
  int n = snprintf(num, sizeof num, "%" PRIu64, v);
  return evs__jtext_make(EVS__JSON_NUMBER, num, (size_t)n);
}

static evs__jarray *evs__jarray_new(void) {
  evs__jarray *a = calloc(1, sizeof *a);
  if (a)
    a->h.type = EVS__JSON_ARRAY;
  return a;
}

static int evs__jarray_push(evs__jarray *a, evs__json *v) {
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 4;
    if (cap > SIZE_MAX / sizeof(evs__json *))
      return EVS_ENOMEM;
    evs__json **nv = realloc(a->v, cap * sizeof(evs__json *));
    if (nv == NULL)
      return EVS_ENOMEM;
    a->v = nv;
    a->cap = cap;
  }
  a->v[a->n++] = v;
  return 0;
}

/* ---- objects ---------------------------------------------------------------
 */

evs__json *evs__json_object(void) {
  evs__jobject *o = calloc(1, sizeof *o);
  if (o == NULL)
    return NULL;
  o->h.type = EVS__JSON_OBJECT;
  o->seed = (uint64_t)(uintptr_t)o * 0x9E3779B97F4A7C15ull;
  return &o->h;
}

/* FNV-1a from the object's seed, then a final mix of the high bits into
 * the low ones, which the index uses. */
static uint64_t evs__jkey_hash(const evs__jobject *o, const char *k, size_t n) {
  uint64_t h = o->seed ^ 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)k[i];
    h *= 0x100000001b3ull;
  }
  h ^= h >> 32;
  h *= 0xd6e8feb86659fd93ull;
  h ^= h >> 32;
  return h;
}

static void evs__jindex_put(evs__jobject *o, size_t i) {
  size_t mask = o->icap - 1;
  size_t s = (size_t)o->m[i].hash & mask;
  while (o->index[s])
    s = (s + 1) & mask;
  o->index[s] = (uint32_t)(i + 1);
}

/* (Re)builds the index for the current members, or drops it when the
 * object is small or memory is short. */
static void evs__jindex_rebuild(evs__jobject *o) {
  free(o->index);
  o->index = NULL;
  o->icap = 0;
  if (o->n <= EVS__JSON_INDEX_MIN || o->n >= UINT32_MAX / 4)
    return;
  size_t cap = 32;
  while (cap < 2 * o->n)
    cap *= 2;
  o->index = calloc(cap, sizeof *o->index);
  if (o->index == NULL)
    return;
  o->icap = cap;
  for (size_t i = 0; i < o->n; i++)
    evs__jindex_put(o, i);
}

static size_t evs__jfind(const evs__jobject *o, const char *k, size_t klen,
                         uint64_t h) {
  if (o->index) {
    size_t mask = o->icap - 1;
    for (size_t s = (size_t)h & mask; o->index[s]; s = (s + 1) & mask) {
      const evs__jmember *m = &o->m[o->index[s] - 1];
      if (m->hash == h && m->klen == klen && memcmp(m->key, k, klen) == 0)
        return o->index[s] - 1;
    }
    return EVS__JSON_NONE;
  }
  for (size_t i = 0; i < o->n; i++) {
    const evs__jmember *m = &o->m[i];
    if (m->hash == h && m->klen == klen && memcmp(m->key, k, klen) == 0)
      return i;
  }
  return EVS__JSON_NONE;
}

/* Appends a member whose key (malloc'd, hashed for this object) and value
 * it takes on success only. Returns 0 or EVS_ENOMEM. */
static int evs__jappend(evs__jobject *o, char *key, size_t klen, uint64_t h,
                        evs__json *val) {
  if (o->n == o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 4;
    if (cap > SIZE_MAX / sizeof *o->m)
      return EVS_ENOMEM;
    evs__jmember *nm = realloc(o->m, cap * sizeof *nm);
    if (nm == NULL)
      return EVS_ENOMEM;
    o->m = nm;
    o->cap = cap;
  }
  o->m[o->n] = (evs__jmember){ key, klen, h, val };
  o->n++;
  if (o->index && 2 * o->n <= o->icap)
    evs__jindex_put(o, o->n - 1);
  else if (o->n > EVS__JSON_INDEX_MIN)
    evs__jindex_rebuild(o);
  return 0;
}

static void evs__jdelete(evs__jobject *o, size_t i) {
  assert(o->m != NULL && i < o->n);
  free(o->m[i].key);
  evs__json_free(o->m[i].val);
  memmove(&o->m[i], &o->m[i + 1], (o->n - i - 1) * sizeof *o->m);
  o->n--;
  if (o->index)
    evs__jindex_rebuild(o);
}

evs__json *evs__json_object_get(const evs__json *obj, const char *key,
                                size_t klen) {
  if (obj == NULL || obj->type != EVS__JSON_OBJECT)
    return NULL;
  const evs__jobject *o = (const evs__jobject *)obj;
  size_t i = evs__jfind(o, key, klen, evs__jkey_hash(o, key, klen));
  return i == EVS__JSON_NONE ? NULL : o->m[i].val;
}

int evs__json_object_set(evs__json *obj, const char *key, size_t klen,
                         evs__json *val) {
  if (val == NULL)
    return EVS_ENOMEM;
  evs__jobject *o = (evs__jobject *)obj;
  uint64_t h = evs__jkey_hash(o, key, klen);
  size_t i = evs__jfind(o, key, klen, h);
  if (i != EVS__JSON_NONE) {
    evs__json_free(o->m[i].val);
    o->m[i].val = val;
    return 0;
  }
  char *k = malloc(klen ? klen : 1);
  if (k && klen)
    memcpy(k, key, klen);
  if (k == NULL || evs__jappend(o, k, klen, h, val)) {
    free(k);
    evs__json_free(val);
    return EVS_ENOMEM;
  }
  return 0;
}

evs__json *evs__json_object_take(evs__json *obj, const char *key, size_t klen) {
  if (obj == NULL || obj->type != EVS__JSON_OBJECT)
    return NULL;
  evs__jobject *o = (evs__jobject *)obj;
  size_t i = evs__jfind(o, key, klen, evs__jkey_hash(o, key, klen));
  if (i == EVS__JSON_NONE)
    return NULL;
  evs__json *v = o->m[i].val;
  o->m[i].val = &evs__jnull;
  return v;
}

/* ---- RFC 7386 --------------------------------------------------------------
 */

evs__json *evs__json_merge(evs__json *target, evs__json *patch) {
  if (patch->type != EVS__JSON_OBJECT) {
    evs__json_free(target);
    return patch;
  }
  if (target == NULL || target->type != EVS__JSON_OBJECT) {
    evs__json_free(target);
    target = evs__json_object();
    if (target == NULL) {
      evs__json_free(patch);
      return NULL;
    }
  }
  evs__jobject *t = (evs__jobject *)target;
  evs__jobject *p = (evs__jobject *)patch;
  for (size_t j = 0; j < p->n; j++) {
    evs__jmember *pm = &p->m[j];
    uint64_t h = evs__jkey_hash(t, pm->key, pm->klen);
    size_t i = evs__jfind(t, pm->key, pm->klen, h);
    if (pm->val->type == EVS__JSON_NULL) {
      if (i != EVS__JSON_NONE)
        evs__jdelete(t, i);
      continue;
    }
    /* The patch's value moves into the target. */
    evs__json *v = pm->val;
    pm->val = NULL;
    if (i != EVS__JSON_NONE) {
      assert(t->m != NULL && i < t->n);
      evs__json *m = evs__json_merge(t->m[i].val, v);
      t->m[i].val = m ? m : &evs__jnull;
      if (m == NULL)
        goto oom;
      continue;
    }
    evs__json *m = evs__json_merge(NULL, v);
    if (m == NULL)
      goto oom;
    if (evs__jappend(t, pm->key, pm->klen, h, m)) {
      evs__json_free(m);
      goto oom;
    }
    pm->key = NULL; /* the target's now */
  }
  evs__json_free(patch);
  return target;
oom:
  evs__json_free(patch);
  evs__json_free(target);
  return NULL;
}

/* ---- parsing ---------------------------------------------------------------
 */

typedef struct evs__jparse {
  const unsigned char *p, *end, *base;
  unsigned depth, max_depth;
  const char *err;
  size_t err_at;
  int oom;
} evs__jparse;

static evs__json *evs__jfail(evs__jparse *s, const char *msg) {
  if (s->err == NULL && !s->oom) {
    s->err = msg;
    s->err_at = (size_t)(s->p - s->base);
  }
  return NULL;
}

static evs__json *evs__joom(evs__jparse *s) {
  s->oom = 1;
  return NULL;
}

static void evs__jskip_ws(evs__jparse *s) {
  while (s->p < s->end &&
         (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

/* 4 hex digits at p (the caller checked that they are there), or -1. */
static long evs__jhex4(const unsigned char *p) {
  long v = 0;
  for (int i = 0; i < 4; i++) {
    int h = evs__hexval(p[i]);
    if (h < 0)
      return -1;
    v = v * 16 + h;
  }
  return v;
}

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t evs__jutf8(const unsigned char *p, const unsigned char *end) {
  unsigned char c = p[0], lo = 0x80, hi = 0xBF;
  size_t n;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0)
      lo = 0xA0;
    else if (c == 0xED)
      hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0)
      lo = 0x90;
    else if (c == 0xF4)
      hi = 0x8F;
  } else {
    return 0;
  }
  if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
    return 0;
  for (size_t i = 2; i < n; i++)
    if (p[i] < 0x80 || p[i] > 0xBF)
      return 0;
  return n;
}

/* Checks the string literal at s->p and moves past it. */
static int evs__jscan_string(evs__jparse *s) {
  s->p++; /* the opening quote */
  while (s->p < s->end) {
    unsigned char c = *s->p;
    if (c == '"') {
      s->p++;
      return 0;
    }
    if (c < 0x20) {
      evs__jfail(s, "control character in a string");
      return -1;
    }
    if (c == '\\') {
      if (s->end - s->p < 2)
        break;
      unsigned char e = s->p[1];
      if (e == 'u') {
        if (s->end - s->p < 6 || evs__jhex4(s->p + 2) < 0) {
          evs__jfail(s, "bad \\u escape");
          return -1;
        }
        long u = evs__jhex4(s->p + 2);
        if (u >= 0xDC00 && u <= 0xDFFF) {
          evs__jfail(s, "lone low surrogate in a \\u escape");
          return -1;
        }
        if (u >= 0xD800 && u <= 0xDBFF) {
          long u2 = s->end - s->p >= 12 && s->p[6] == '\\' && s->p[7] == 'u'
                        ? evs__jhex4(s->p + 8)
                        : -1;
          if (u2 < 0xDC00 || u2 > 0xDFFF) {
            evs__jfail(s, "lone high surrogate in a \\u escape");
            return -1;
          }
          s->p += 6;
        }
        s->p += 6;
        continue;
      }
      if (e == '\0' || strchr("\"\\/bfnrt", e) == NULL) {
        evs__jfail(s, "bad escape in a string");
        return -1;
      }
      s->p += 2;
      continue;
    }
    if (c >= 0x80) {
      size_t n = evs__jutf8(s->p, s->end);
      if (n == 0) {
        evs__jfail(s, "invalid UTF-8 in a string");
        return -1;
      }
      s->p += n;
      continue;
    }
    s->p++;
  }
  evs__jfail(s, "unterminated string");
  return -1;
}

static size_t evs__jput_utf8(char *o, unsigned long cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Decodes the inside of a string literal that evs__jscan_string() accepted
 * into o (room for end - p bytes, never exceeded). Returns the length. */
static size_t evs__jdecode(char *o, const unsigned char *p,
                           const unsigned char *end) {
  size_t n = 0;
  while (p < end) {
    if (*p != '\\') {
      o[n++] = (char)*p++;
      continue;
    }
    unsigned char e = p[1];
    p += 2;
    switch (e) {
    case 'b':
      o[n++] = '\b';
      break;
    case 'f':
      o[n++] = '\f';
      break;
    case 'n':
      o[n++] = '\n';
      break;
    case 'r':
      o[n++] = '\r';
      break;
    case 't':
      o[n++] = '\t';
      break;
    case 'u': {
      unsigned long cp = (unsigned long)evs__jhex4(p);
      p += 4;
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        unsigned long lo = (unsigned long)evs__jhex4(p + 2);
        p += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      n += evs__jput_utf8(o + n, cp);
      break;
    }
    default: /* '"', '\\', '/' */
      o[n++] = (char)e;
      break;
    }
  }
  return n;
}

static int evs__jdigit(const evs__jparse *s) {
  return s->p < s->end && *s->p >= '0' && *s->p <= '9';
}

static evs__json *evs__jparse_number(evs__jparse *s) {
  const unsigned char *start = s->p;
  if (*s->p == '-')
    s->p++;
  if (!evs__jdigit(s))
    return evs__jfail(s, "expected a digit");
  if (*s->p == '0') {
    s->p++;
    if (evs__jdigit(s))
      return evs__jfail(s, "numbers may not have leading zeros");
  } else {
    while (evs__jdigit(s))
      s->p++;
  }
  if (s->p < s->end && *s->p == '.') {
    s->p++;
    if (!evs__jdigit(s))
      return evs__jfail(s, "expected a digit after the decimal point");
    while (evs__jdigit(s))
      s->p++;
  }
  if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
    s->p++;
    if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
      s->p++;
    if (!evs__jdigit(s))
      return evs__jfail(s, "expected a digit in the exponent");
    while (evs__jdigit(s))
      s->p++;
  }
  evs__json *v = evs__jtext_make(EVS__JSON_NUMBER, (const char *)start,
                                 (size_t)(s->p - start));
  return v ? v : evs__joom(s);
}

static evs__json *evs__jparse_string(evs__jparse *s) {
  const unsigned char *lit = s->p;
  if (evs__jscan_string(s))
    return NULL;
  evs__jtext *t = evs__jtext_new(EVS__JSON_STRING, (size_t)(s->p - lit) - 2);
  if (t == NULL)
    return evs__joom(s);
  t->len = evs__jdecode(t->s, lit + 1, s->p - 1);
  t->s[t->len] = '\0';
  return &t->h;
}

static evs__json *evs__jparse_literal(evs__jparse *s, const char *word,
                                      evs__json *v) {
  size_t n = strlen(word);
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
    return evs__jfail(s, "unexpected word (expected true, false or null)");
  s->p += n;
  return v;
}

static evs__json *evs__jparse_value(evs__jparse *s);

static evs__json *evs__jparse_array(evs__jparse *s) {
  evs__jarray *a = evs__jarray_new();
  if (a == NULL)
    return evs__joom(s);
  s->p++; /* '[' */
  evs__jskip_ws(s);
  if (s->p < s->end && *s->p == ']') {
    s->p++;
    return &a->h;
  }
  for (;;) {
    evs__json *v = evs__jparse_value(s);
    if (v == NULL)
      break;
    if (evs__jarray_push(a, v)) {
      evs__json_free(v);
      evs__joom(s);
      break;
    }
    evs__jskip_ws(s);
    if (s->p < s->end && *s->p == ',') {
      s->p++;
      evs__jskip_ws(s);
      continue;
    }
    if (s->p < s->end && *s->p == ']') {
      s->p++;
      return &a->h;
    }
    evs__jfail(s, "expected ',' or ']' in an array");
    break;
  }
  evs__json_free(&a->h);
  return NULL;
}

static evs__json *evs__jparse_object(evs__jparse *s) {
  evs__jobject *o = (evs__jobject *)evs__json_object();
  if (o == NULL)
    return evs__joom(s);
  s->p++; /* '{' */
  evs__jskip_ws(s);
  if (s->p < s->end && *s->p == '}') {
    s->p++;
    return &o->h;
  }
  for (;;) {
    if (s->p >= s->end || *s->p != '"') {
      evs__jfail(s, "expected a member name (a string)");
      break;
    }
    const unsigned char *lit = s->p;
    if (evs__jscan_string(s))
      break;
    size_t cap = (size_t)(s->p - lit) - 2;
    char *key = malloc(cap ? cap : 1);
    if (key == NULL) {
      evs__joom(s);
      break;
    }
    size_t klen = evs__jdecode(key, lit + 1, s->p - 1);
    evs__jskip_ws(s);
    if (s->p >= s->end || *s->p != ':') {
      free(key);
      evs__jfail(s, "expected ':' after a member name");
      break;
    }
    s->p++;
    evs__jskip_ws(s);
    evs__json *v = evs__jparse_value(s);
    if (v == NULL) {
      free(key);
      break;
    }
    /* A repeated name keeps its first place and takes the last value (as
     * jansson, which the fold used before, does). */
    uint64_t h = evs__jkey_hash(o, key, klen);
    size_t i = evs__jfind(o, key, klen, h);
    if (i != EVS__JSON_NONE) {
      evs__json_free(o->m[i].val);
      o->m[i].val = v;
      free(key);
    } else if (evs__jappend(o, key, klen, h, v)) {
      free(key);
      evs__json_free(v);
      evs__joom(s);
      break;
    }
    evs__jskip_ws(s);
    if (s->p < s->end && *s->p == ',') {
      s->p++;
      evs__jskip_ws(s);
      continue;
    }
    if (s->p < s->end && *s->p == '}') {
      s->p++;
      return &o->h;
    }
    evs__jfail(s, "expected ',' or '}' in an object");
    break;
  }
  evs__json_free(&o->h);
  return NULL;
}

static evs__json *evs__jparse_value(evs__jparse *s) {
  if (s->p >= s->end)
    return evs__jfail(s, "unexpected end of input");
  if (s->depth >= s->max_depth)
    return evs__jfail(s, "nested too deeply");
  s->depth++;
  evs__json *v;
  switch (*s->p) {
  case '{':
    v = evs__jparse_object(s);
    break;
  case '[':
    v = evs__jparse_array(s);
    break;
  case '"':
    v = evs__jparse_string(s);
    break;
  case 't':
    v = evs__jparse_literal(s, "true", &evs__jtrue);
    break;
  case 'f':
    v = evs__jparse_literal(s, "false", &evs__jfalse);
    break;
  case 'n':
    v = evs__jparse_literal(s, "null", &evs__jnull);
    break;
  default:
    if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
      v = evs__jparse_number(s);
    else
      v = evs__jfail(s, "unexpected character");
    break;
  }
  s->depth--;
  return v;
}

int evs__json_parse(evs__json **out, const void *text, size_t len,
                    unsigned max_depth, evs__json_error *err) {
  *out = NULL;
  const unsigned char *base = text ? text : (const unsigned char *)"";
  evs__jparse s = { .p = base,
                    .end = base + (text ? len : 0),
                    .base = base,
                    .max_depth = max_depth };
  evs__jskip_ws(&s);
  evs__json *v = NULL;
  if (s.p == s.end)
    evs__jfail(&s, "empty (no JSON value)");
  else
    v = evs__jparse_value(&s);
  if (v) {
    evs__jskip_ws(&s);
    if (s.p != s.end) {
      evs__json_free(v);
      v = evs__jfail(&s, "unexpected characters after the JSON value");
    }
  }
  if (v == NULL) {
    if (s.oom)
      return EVS_ENOMEM;
    if (err) {
      err->msg = s.err;
      err->offset = s.err_at;
    }
    return EVS_EINVAL;
  }
  *out = v;
  return 0;
}

/* ---- serializing -----------------------------------------------------------
 */

typedef struct evs__jout {
  char *p;
  size_t len, cap;
  int oom;
} evs__jout;

static int evs__jreserve(evs__jout *o, size_t n) {
  if (o->oom)
    return -1;
  if (n <= o->cap - o->len)
    return 0;
  size_t cap = o->cap ? o->cap : 256;
  while (cap - o->len < n) {
    if (cap > SIZE_MAX / 2) {
      o->oom = 1;
      return -1;
    }
    cap *= 2;
  }
  char *p = realloc(o->p, cap);
  if (p == NULL) {
    o->oom = 1;
    return -1;
  }
  o->p = p;
  o->cap = cap;
  return 0;
}

static void evs__jput(evs__jout *o, const void *p, size_t n) {
  if (n && evs__jreserve(o, n) == 0) {
    memcpy(o->p + o->len, p, n);
    o->len += n;
  }
}

static void evs__jputc(evs__jout *o, char c) {
  if (evs__jreserve(o, 1) == 0)
    o->p[o->len++] = c;
}

/* The escaping of jansson's dump_string() without JSON_ENSURE_ASCII or
 * JSON_ESCAPE_SLASH: the bytes of a valid UTF-8 string, byte for byte. */
static void evs__jdump_string(evs__jout *o, const char *str, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  const unsigned char *s = (const unsigned char *)str;
  evs__jputc(o, '"');
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    char esc[6] = { '\\', 0, 0, 0, 0, 0 };
    size_t elen = 2;
    switch (c) {
    case '"':
    case '\\':
      esc[1] = (char)c;
      break;
    case '\b':
      esc[1] = 'b';
      break;
    case '\f':
      esc[1] = 'f';
      break;
    case '\n':
      esc[1] = 'n';
      break;
    case '\r':
      esc[1] = 'r';
      break;
    case '\t':
      esc[1] = 't';
      break;
    default:
      if (c >= 0x20)
        continue;
      esc[1] = 'u';
      esc[2] = '0';
      esc[3] = '0';
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 15];
      elen = 6;
      break;
    }
    evs__jput(o, s + run, i - run);
    evs__jput(o, esc, elen);
    run = i + 1;
  }
  evs__jput(o, s + run, n - run);
  evs__jputc(o, '"');
}

static void evs__jdump(evs__jout *o, const evs__json *v) {
  switch (v->type) {
  case EVS__JSON_NULL:
    evs__jput(o, "null", 4);
    break;
  case EVS__JSON_FALSE:
    evs__jput(o, "false", 5);
    break;
  case EVS__JSON_TRUE:
    evs__jput(o, "true", 4);
    break;
  case EVS__JSON_NUMBER: {
    const evs__jtext *t = (const evs__jtext *)v;
    evs__jput(o, t->s, t->len);
    break;
  }
  case EVS__JSON_STRING: {
    const evs__jtext *t = (const evs__jtext *)v;
    evs__jdump_string(o, t->s, t->len);
    break;
  }
  case EVS__JSON_ARRAY: {
    const evs__jarray *a = (const evs__jarray *)v;
    evs__jputc(o, '[');
    for (size_t i = 0; i < a->n && !o->oom; i++) {
      if (i)
        evs__jputc(o, ',');
      evs__jdump(o, a->v[i]);
    }
    evs__jputc(o, ']');
    break;
  }
  default: {
    const evs__jobject *ob = (const evs__jobject *)v;
    evs__jputc(o, '{');
    for (size_t i = 0; i < ob->n && !o->oom; i++) {
      if (i)
        evs__jputc(o, ',');
      evs__jdump_string(o, ob->m[i].key, ob->m[i].klen);
      evs__jputc(o, ':');
      evs__jdump(o, ob->m[i].val);
    }
    evs__jputc(o, '}');
    break;
  }
  }
}

int evs__json_dump(char **out, size_t *len, const evs__json *v) {
  evs__jout o = { NULL, 0, 0, 0 };
  evs__jdump(&o, v);
  evs__jputc(&o, '\0');
  if (o.oom) {
    free(o.p);
    *out = NULL;
    return EVS_ENOMEM;
  }
  *out = o.p;
  if (len)
    *len = o.len - 1;
  return 0;
}
