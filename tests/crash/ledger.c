/*
 * Ledger records and deterministic event payloads (see crash.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crash.h"

_Static_assert(sizeof(cr_rec) == 184, "cr_rec must have no padding");

const char *const cr_types[CR_NTYPES] = {
    "OrderPlaced", "OrderPaid",   "ItemAdded",
    "ItemRemoved", "OrderShipped", "Probe"};

uint64_t cr_hash(const void *buf, size_t len) {
  const uint8_t *p = buf;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

uint64_t cr_rand(uint64_t *state) {
  uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 2685821657736338717ull;
}

void cr_rec_seal(cr_rec *r) {
  r->magic = CR_MAGIC;
  r->check = cr_hash(r, offsetof(cr_rec, check));
}

int cr_rec_valid(const cr_rec *r) {
  return r->magic == CR_MAGIC &&
         r->check == cr_hash(r, offsetof(cr_rec, check)) &&
         r->kind >= CR_INTENT && r->kind <= CR_NACK &&
         r->type_idx < CR_NTYPES &&
         memchr(r->stream, '\0', sizeof r->stream) != NULL;
}

int cr_ledger_write(int fd, const cr_rec *recs, size_t n, int sync) {
  const char *p = (const char *)recs;
  size_t left = n * sizeof *recs;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += w;
    left -= (size_t)w;
  }
  if (sync && fdatasync(fd) != 0)
    return -errno;
  return 0;
}

int cr_ledger_read(const char *path, cr_rec **out, size_t *n, size_t *torn) {
  *out = NULL;
  *n = 0;
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    if (errno == ENOENT)
      return 0;
    perror(path);
    return -1;
  }
  size_t cap = 0;
  cr_rec r;
  size_t got;
  int bad = 0;
  while ((got = fread(&r, 1, sizeof r, f)) > 0) {
    if (bad) {
      /* A damaged record followed by more data: not a torn tail. */
      fprintf(stderr, "evs_crash: %s: damaged record in the middle of the "
                      "ledger\n",
              path);
      fclose(f);
      free(*out);
      *out = NULL;
      *n = 0;
      return -1;
    }
    if (got < sizeof r || !cr_rec_valid(&r)) {
      bad = 1;
      (*torn)++;
      continue;
    }
    if (*n == cap) {
      cap = cap ? cap * 2 : 256;
      cr_rec *nr = realloc(*out, cap * sizeof *nr);
      if (nr == NULL) {
        fclose(f);
        free(*out);
        *out = NULL;
        return -1;
      }
      *out = nr;
    }
    (*out)[(*n)++] = r;
  }
  fclose(f);
  return 0;
}

void cr_ledger_path(char *out, size_t cap, const char *dir, unsigned iteration,
                    unsigned thread, int intent) {
  snprintf(out, cap, "%s/%06u-%02u.%s", dir, iteration, thread,
           intent ? "intent" : "ack");
}

void cr_fill_payload(void *buf, size_t len, const uint8_t id[16], int which) {
  static const char *const words[] = {
      "order", "customer", "amount", "currency", "EUR",   "placed",
      "shipped", "item",   "sku",    "quantity", "price", "note"};
  uint64_t x = cr_hash(id, 16) ^ (which ? 0x5bd1e9955bd1e995ull : 0);
  uint8_t *p = buf;
  if (which == 0 && (x & 3) == 0) {
    for (size_t i = 0; i < len; i++) {
      if ((i & 7) == 0)
        (void)cr_rand(&x);
      p[i] = (uint8_t)(x >> ((i & 7) * 8));
    }
    return;
  }
  size_t i = 0;
  while (i < len) {
    char tmp[64];
    uint64_t r = cr_rand(&x);
    int k = snprintf(tmp, sizeof tmp, "{\"%s\":%u},", words[(r >> 33) % 12],
                     (unsigned)((r >> 40) % 1000));
    size_t take = (size_t)k < len - i ? (size_t)k : len - i;
    memcpy(p + i, tmp, take);
    i += take;
  }
}
