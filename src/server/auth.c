/*
 * evstored — token authentication and per-token stream-prefix grants
 * (file format in docs/protocol.md, "Authentication").
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "server/server.h"

#define EVSD_MAX_TOKEN 512

void evsd_auth_free(evsd_auth *a) {
  if (a == NULL)
    return;
  for (size_t i = 0; i < a->ntokens; i++) {
    evsd_token *t = &a->tokens[i];
    /* Tokens are secrets: clear them before handing the memory back. */
    if (t->token)
      memset(t->token, 0, t->len);
    free(t->token);
    free(t->label);
    for (size_t g = 0; g < t->ngrants; g++)
      free(t->grants[g].prefix);
    free(t->grants);
  }
  free(a->tokens);
  free(a);
}

/* Parses one grant ("read:P", "write:P", "rw:P"). */
static int parse_grant(const char *w, evsd_grant *g) {
  memset(g, 0, sizeof *g);
  const char *colon = strchr(w, ':');
  if (colon == NULL)
    return -1;
  size_t kl = (size_t)(colon - w);
  if (kl == 4 && strncmp(w, "read", 4) == 0)
    g->read = 1;
  else if (kl == 5 && strncmp(w, "write", 5) == 0)
    g->write = 1;
  else if (kl == 2 && strncmp(w, "rw", 2) == 0)
    g->read = g->write = 1;
  else
    return -1;
  const char *p = colon + 1;
  if (p[0] == '\0')
    return -1;
  if (strcmp(p, "*") == 0) {
    g->all = 1;
    p = "";
  }
  g->prefix = strdup(p);
  if (g->prefix == NULL)
    return -1;
  g->len = strlen(p);
  return 0;
}

/* Logs name a token by its line in the file, never by its bytes. */
static char *make_label(unsigned lineno) {
  char buf[32];
  snprintf(buf, sizeof buf, "line%u", lineno);
  return strdup(buf);
}

int evsd_auth_load(evsd_auth **out, const char *path, char *err,
                   size_t errlen) {
  *out = NULL;
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    snprintf(err, errlen, "cannot open tokens file '%s': %s", path,
             strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && (st.st_mode & 0004))
    evsd_log(EVSD_WARN, "event=tokens_file_world_readable path=%s", path);
  evsd_auth *a = calloc(1, sizeof *a);
  if (a == NULL) {
    fclose(f);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  char line[8192];
  unsigned lineno = 0;
  size_t cap = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    size_t ll = strlen(line);
    if (ll == sizeof line - 1 && line[ll - 1] != '\n') {
      snprintf(err, errlen, "%s:%u: line too long", path, lineno);
      goto fail;
    }
    char *hash = strchr(line, '#');
    if (hash)
      *hash = '\0';
    char *save = NULL;
    char *word = strtok_r(line, " \t\r\n", &save);
    if (word == NULL)
      continue;
    size_t tl = strlen(word);
    if (tl > EVSD_MAX_TOKEN) {
      snprintf(err, errlen, "%s:%u: token longer than %d bytes", path, lineno,
               EVSD_MAX_TOKEN);
      goto fail;
    }
    for (size_t i = 0; i < a->ntokens; i++) {
      if (a->tokens[i].len == tl && memcmp(a->tokens[i].token, word, tl) == 0) {
        snprintf(err, errlen, "%s:%u: token listed twice", path, lineno);
        goto fail;
      }
    }
    if (a->ntokens == cap) {
      size_t ncap = cap ? cap * 2 : 8;
      evsd_token *p = realloc(a->tokens, ncap * sizeof *p);
      if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
      }
      a->tokens = p;
      cap = ncap;
    }
    evsd_token *t = &a->tokens[a->ntokens++];
    memset(t, 0, sizeof *t);
    t->token = strdup(word);
    t->len = tl;
    t->label = make_label(lineno);
    if (t->token == NULL || t->label == NULL) {
      snprintf(err, errlen, "out of memory");
      goto fail;
    }
    while ((word = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
      evsd_grant *g = realloc(t->grants, (t->ngrants + 1) * sizeof *g);
      if (g == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
      }
      t->grants = g;
      if (parse_grant(word, &t->grants[t->ngrants])) {
        snprintf(err, errlen,
                 "%s:%u: bad grant '%s' (expected read:PREFIX, "
                 "write:PREFIX or rw:PREFIX, '*' for all streams)",
                 path, lineno, word);
        goto fail;
      }
      t->ngrants++;
    }
    if (t->ngrants == 0) {
      snprintf(err, errlen, "%s:%u: token without grants", path, lineno);
      goto fail;
    }
  }
  fclose(f);
  if (a->ntokens == 0) {
    snprintf(err, errlen, "tokens file '%s' lists no token", path);
    evsd_auth_free(a);
    return -1;
  }
  *out = a;
  return 0;
fail:
  fclose(f);
  evsd_auth_free(a);
  return -1;
}

/* Compares in time that depends only on the lengths. */
static int ct_equal(const char *a, size_t al, const void *b, size_t bl) {
  const unsigned char *x = (const unsigned char *)a;
  const unsigned char *y = (const unsigned char *)b;
  unsigned char diff = (unsigned char)(al != bl);
  for (size_t i = 0; i < al; i++)
    diff |= (unsigned char)(x[i] ^ (i < bl ? y[i] : 0));
  return diff == 0;
}

const evsd_token *evsd_auth_find(const evsd_auth *a, evs_slice token) {
  const evsd_token *found = NULL;
  if (token.len == 0 || token.len > EVSD_MAX_TOKEN)
    return NULL;
  /* Look at every token, so that the time does not say which matched. */
  for (size_t i = 0; i < a->ntokens; i++)
    if (ct_equal(a->tokens[i].token, a->tokens[i].len, token.data, token.len))
      found = &a->tokens[i];
  return found;
}

static int has_prefix(evs_slice s, const char *p, size_t pl) {
  return s.len >= pl && memcmp(s.data, p, pl) == 0;
}

int evsd_auth_stream(const evsd_token *tok, int write, evs_slice stream) {
  if (tok == NULL)
    return 1;
  for (size_t i = 0; i < tok->ngrants; i++) {
    const evsd_grant *g = &tok->grants[i];
    if (write ? !g->write : !g->read)
      continue;
    if (g->all || has_prefix(stream, g->prefix, g->len))
      return 1;
  }
  return 0;
}

int evsd_auth_scope(const evsd_token *tok, evs_slice prefix,
                    evs_slice category) {
  if (tok == NULL)
    return 1;
  for (size_t i = 0; i < tok->ngrants; i++) {
    const evsd_grant *g = &tok->grants[i];
    if (!g->read)
      continue;
    if (g->all)
      return 1;
    /* Every name starting with `prefix` starts with the grant. */
    if (prefix.len && has_prefix(prefix, g->prefix, g->len))
      return 1;
    /* Every stream of category C starts with C, so a grant that is a
     * prefix of C covers the category. */
    if (category.len && has_prefix(category, g->prefix, g->len))
      return 1;
  }
  return 0;
}

int evsd_auth_all(const evsd_token *tok, int write) {
  if (tok == NULL)
    return 1;
  for (size_t i = 0; i < tok->ngrants; i++) {
    const evsd_grant *g = &tok->grants[i];
    if (g->all && (write ? g->write : g->read))
      return 1;
  }
  return 0;
}
