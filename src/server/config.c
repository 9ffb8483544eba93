/*
 * evstored — configuration: defaults, EVSTORE_* environment variables and
 * command-line flags (in increasing order of precedence).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/server.h"

static const char usage[] =
    "Usage: evstored [OPTIONS]\n"
    "\n"
    "Serves an evstore event store over TCP (protocol: docs/protocol.md) and\n"
    "exposes /health and /metrics over HTTP. Every option can also be set by\n"
    "the environment variable shown in brackets; a flag wins over it.\n"
    "\n"
    "Store:\n"
    "  --data DIR            store directory, created if missing\n"
    "                        [EVSTORE_DATA, default ./var/evstore]\n"
    "  --durability MODE     sync, nometasync or nosync (docs/storage.md).\n"
    "                        sync: an acknowledged append survives power\n"
    "                        loss; nometasync: an OS crash may undo the last\n"
    "                        commits; nosync: an OS crash may lose data and\n"
    "                        corrupt the store (benchmarks only). A process\n"
    "                        crash loses nothing acknowledged in any mode.\n"
    "                        [EVSTORE_DURABILITY, default sync]\n"
    "  --map-size BYTES      initial LMDB map size; it grows on demand\n"
    "                        [EVSTORE_MAP_SIZE, default 64M]\n"
    "\n"
    "Network:\n"
    "  --listen HOST:PORT    protocol listener; port 0 picks a free port\n"
    "                        [EVSTORE_LISTEN, default 127.0.0.1:4815]\n"
    "  --http HOST:PORT|off  /health and /metrics listener\n"
    "                        [EVSTORE_HTTP, default 127.0.0.1:4816]\n"
    "  --port-file FILE      after binding, write the bound addresses to\n"
    "                        FILE as \"listen=HOST:PORT http=HOST:PORT\"\n"
    "                        [EVSTORE_PORT_FILE]\n"
    "  --tokens FILE         require a token from FILE on every connection.\n"
    "                        One token per line: TOKEN GRANT...; a grant is\n"
    "                        read:PREFIX, write:PREFIX or rw:PREFIX ('*'\n"
    "                        for every stream); '#' starts a comment.\n"
    "                        [EVSTORE_TOKENS]\n"
    "  --allow-remote        without --tokens, allow non-loopback addresses\n"
    "                        (then anyone who connects can read and write)\n"
    "                        [EVSTORE_ALLOW_REMOTE=1]\n"
    "\n"
    "Limits (sizes take K, M or G suffixes):\n"
    "  --max-frame BYTES     largest request frame [EVSTORE_MAX_FRAME, 32M]\n"
    "  --max-events N        events per append [EVSTORE_MAX_EVENTS, 10000]\n"
    "  --max-event-size BYTES  data + metadata of one event, at most 64M\n"
    "                        [EVSTORE_MAX_EVENT_SIZE, 16M]\n"
    "  --max-connections N   open connections\n"
    "                        [EVSTORE_MAX_CONNECTIONS, 1024]\n"
    "  --max-inflight N      requests in progress per connection; more are\n"
    "                        read as these finish [EVSTORE_MAX_INFLIGHT, 64]\n"
    "  --max-subscriptions N subscriptions per connection\n"
    "                        [EVSTORE_MAX_SUBSCRIPTIONS, 16]\n"
    "  --idle-timeout SEC    close connections with no request, work or\n"
    "                        subscription for SEC seconds; 0 = never\n"
    "                        [EVSTORE_IDLE_TIMEOUT, 300]\n"
    "  --output-soft BYTES   unsent output above which a connection's\n"
    "                        subscriptions pause and its requests wait\n"
    "                        [EVSTORE_OUTPUT_SOFT, 8M]\n"
    "  --output-hard BYTES   unsent output that closes the connection\n"
    "                        [EVSTORE_OUTPUT_HARD, 64M]\n"
    "  --output-stall-timeout SEC  close a connection whose output stays\n"
    "                        over the soft limit without progress for SEC\n"
    "                        seconds [EVSTORE_OUTPUT_STALL_TIMEOUT, 120]\n"
    "  --page-events N       events per read reply or push\n"
    "                        [EVSTORE_PAGE_EVENTS, 1000]\n"
    "  --page-bytes BYTES    bytes of events per read reply or push\n"
    "                        [EVSTORE_PAGE_BYTES, 1M]\n"
    "\n"
    "Other:\n"
    "  --threads N           reader threads (libuv pool) [EVSTORE_THREADS, 8]\n"
    "  --slow-commit-ms MS   log appends slower than MS; 0 = never\n"
    "                        [EVSTORE_SLOW_COMMIT_MS, 200]\n"
    "  --log-level LEVEL     info or debug [EVSTORE_LOG_LEVEL, info]\n"
    "  -h, --help            this text\n"
    "  --version             the version\n"
    "\n"
    "Logs go to stderr, one key=value line per event. SIGINT and SIGTERM\n"
    "stop accepting, finish the appends in progress, reply, close and exit\n"
    "0. Exit codes: 0 after a clean stop, 1 when the server cannot start, 2\n"
    "for a usage error.\n";

enum {
  OPT_DATA = 256,
  OPT_LISTEN,
  OPT_HTTP,
  OPT_TOKENS,
  OPT_DURABILITY,
  OPT_ALLOW_REMOTE,
  OPT_PORT_FILE,
  OPT_MAP_SIZE,
  OPT_MAX_FRAME,
  OPT_MAX_EVENTS,
  OPT_MAX_EVENT_SIZE,
  OPT_MAX_CONNECTIONS,
  OPT_MAX_INFLIGHT,
  OPT_MAX_SUBSCRIPTIONS,
  OPT_IDLE_TIMEOUT,
  OPT_OUTPUT_SOFT,
  OPT_OUTPUT_HARD,
  OPT_OUTPUT_STALL,
  OPT_PAGE_EVENTS,
  OPT_PAGE_BYTES,
  OPT_THREADS,
  OPT_SLOW_COMMIT,
  OPT_LOG_LEVEL,
  OPT_HELP,
  OPT_VERSION
};

typedef struct opt_desc {
  const char *flag;
  const char *env;
  int id;
  int has_arg;
} opt_desc;

static const opt_desc opts[] = {
  { "data", "EVSTORE_DATA", OPT_DATA, 1 },
  { "listen", "EVSTORE_LISTEN", OPT_LISTEN, 1 },
  { "http", "EVSTORE_HTTP", OPT_HTTP, 1 },
  { "tokens", "EVSTORE_TOKENS", OPT_TOKENS, 1 },
  { "durability", "EVSTORE_DURABILITY", OPT_DURABILITY, 1 },
  { "allow-remote", "EVSTORE_ALLOW_REMOTE", OPT_ALLOW_REMOTE, 0 },
  { "port-file", "EVSTORE_PORT_FILE", OPT_PORT_FILE, 1 },
  { "map-size", "EVSTORE_MAP_SIZE", OPT_MAP_SIZE, 1 },
  { "max-frame", "EVSTORE_MAX_FRAME", OPT_MAX_FRAME, 1 },
  { "max-events", "EVSTORE_MAX_EVENTS", OPT_MAX_EVENTS, 1 },
  { "max-event-size", "EVSTORE_MAX_EVENT_SIZE", OPT_MAX_EVENT_SIZE, 1 },
  { "max-connections", "EVSTORE_MAX_CONNECTIONS", OPT_MAX_CONNECTIONS, 1 },
  { "max-inflight", "EVSTORE_MAX_INFLIGHT", OPT_MAX_INFLIGHT, 1 },
  { "max-subscriptions", "EVSTORE_MAX_SUBSCRIPTIONS", OPT_MAX_SUBSCRIPTIONS,
    1 },
  { "idle-timeout", "EVSTORE_IDLE_TIMEOUT", OPT_IDLE_TIMEOUT, 1 },
  { "output-soft", "EVSTORE_OUTPUT_SOFT", OPT_OUTPUT_SOFT, 1 },
  { "output-hard", "EVSTORE_OUTPUT_HARD", OPT_OUTPUT_HARD, 1 },
  { "output-stall-timeout", "EVSTORE_OUTPUT_STALL_TIMEOUT", OPT_OUTPUT_STALL,
    1 },
  { "page-events", "EVSTORE_PAGE_EVENTS", OPT_PAGE_EVENTS, 1 },
  { "page-bytes", "EVSTORE_PAGE_BYTES", OPT_PAGE_BYTES, 1 },
  { "threads", "EVSTORE_THREADS", OPT_THREADS, 1 },
  { "slow-commit-ms", "EVSTORE_SLOW_COMMIT_MS", OPT_SLOW_COMMIT, 1 },
  { "log-level", "EVSTORE_LOG_LEVEL", OPT_LOG_LEVEL, 1 },
  { "help", NULL, OPT_HELP, 0 },
  { "version", NULL, OPT_VERSION, 0 },
};

#define NOPTS (sizeof opts / sizeof opts[0])

/* Parses a size with an optional K/M/G (binary) suffix. */
static int parse_size(const char *s, uint64_t max, uint64_t *out) {
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || s[0] == '-')
    return -1;
  uint64_t mul = 1;
  if (*end == 'k' || *end == 'K')
    mul = 1024;
  else if (*end == 'm' || *end == 'M')
    mul = 1024 * 1024;
  else if (*end == 'g' || *end == 'G')
    mul = 1024ull * 1024 * 1024;
  if (mul != 1) {
    end++;
    if (*end == 'i' || *end == 'I')
      end++;
    if (*end == 'b' || *end == 'B')
      end++;
  }
  if (*end != '\0')
    return -1;
  if (v > max / mul)
    return -1;
  *out = (uint64_t)v * mul;
  return 0;
}

static int parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out) {
  uint64_t v;
  if (parse_size(s, max, &v) || v < min)
    return -1;
  *out = (uint32_t)v;
  return 0;
}

static int set_str(char **field, const char *v) {
  char *p = strdup(v);
  if (p == NULL)
    return -1;
  free(*field);
  *field = p;
  return 0;
}

static int truthy(const char *v) {
  return strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 ||
         strcasecmp(v, "yes") == 0 || strcasecmp(v, "on") == 0;
}

/* Applies one option; `src` names where it came from, for errors. */
static int apply(evsd_config *c, const opt_desc *o, const char *v,
                 const char *src) {
  uint64_t u64;
  int bad = 0;
  switch (o->id) {
  case OPT_DATA:
    bad = v[0] == '\0' || set_str(&c->data_dir, v);
    break;
  case OPT_LISTEN:
    bad = set_str(&c->listen, v);
    break;
  case OPT_HTTP:
    bad = set_str(&c->http, v);
    break;
  case OPT_TOKENS:
    bad = v[0] == '\0' || set_str(&c->tokens_file, v);
    break;
  case OPT_PORT_FILE:
    bad = v[0] == '\0' || set_str(&c->port_file, v);
    break;
  case OPT_DURABILITY:
    if (strcmp(v, "sync") == 0)
      c->durability = EVS_SYNC;
    else if (strcmp(v, "nometasync") == 0)
      c->durability = EVS_NOMETASYNC;
    else if (strcmp(v, "nosync") == 0)
      c->durability = EVS_NOSYNC;
    else
      bad = 1;
    break;
  case OPT_ALLOW_REMOTE:
    c->allow_remote = v ? truthy(v) : 1;
    break;
  case OPT_MAP_SIZE:
    bad = parse_size(v, UINT64_MAX, &u64) || u64 < (1u << 20);
    if (!bad)
      c->map_size = u64;
    break;
  case OPT_MAX_FRAME:
    bad = parse_u32(v, 64 * 1024, UINT32_MAX - 64, &c->max_frame);
    break;
  case OPT_MAX_EVENTS:
    bad = parse_u32(v, 1, EVS_MAX_EVENTS_PER_APPEND, &c->max_events);
    break;
  case OPT_MAX_EVENT_SIZE:
    bad = parse_u32(v, 1024, EVS_HARD_MAX_EVENT_SIZE, &c->max_event_size);
    break;
  case OPT_MAX_CONNECTIONS:
    bad = parse_u32(v, 1, 1000000, &c->max_connections);
    break;
  case OPT_MAX_INFLIGHT:
    bad = parse_u32(v, 1, 100000, &c->max_inflight);
    break;
  case OPT_MAX_SUBSCRIPTIONS:
    bad = parse_u32(v, 0, 100000, &c->max_subscriptions);
    break;
  case OPT_IDLE_TIMEOUT:
    bad = parse_u32(v, 0, 86400 * 365, &c->idle_timeout_s);
    break;
  case OPT_OUTPUT_SOFT:
    bad = parse_size(v, UINT64_MAX, &u64) || u64 < 4096;
    if (!bad)
      c->output_soft = u64;
    break;
  case OPT_OUTPUT_HARD:
    bad = parse_size(v, UINT64_MAX, &u64) || u64 < 4096;
    if (!bad)
      c->output_hard = u64;
    break;
  case OPT_OUTPUT_STALL:
    bad = parse_u32(v, 1, 86400 * 365, &c->output_stall_timeout_s);
    break;
  case OPT_PAGE_EVENTS:
    bad = parse_u32(v, 1, 100000, &c->page_events);
    break;
  case OPT_PAGE_BYTES:
    bad = parse_u32(v, 1024, 1u << 30, &c->page_bytes);
    break;
  case OPT_THREADS:
    bad = parse_u32(v, 1, 128, &c->threads);
    break;
  case OPT_SLOW_COMMIT:
    bad = parse_u32(v, 0, 3600 * 1000, &c->slow_commit_ms);
    break;
  case OPT_LOG_LEVEL:
    if (strcmp(v, "debug") == 0)
      c->log_debug = 1;
    else if (strcmp(v, "info") == 0)
      c->log_debug = 0;
    else
      bad = 1;
    break;
  default:
    bad = 1;
  }
  if (bad) {
    fprintf(stderr, "evstored: invalid value '%s' for %s\n", v ? v : "", src);
    return -1;
  }
  return 0;
}

static void defaults(evsd_config *c) {
  memset(c, 0, sizeof *c);
  c->data_dir = strdup("./var/evstore");
  c->listen = strdup("127.0.0.1:4815");
  c->http = strdup("127.0.0.1:4816");
  c->durability = EVS_SYNC;
  c->max_frame = EVS_PROTO_DEFAULT_MAX_FRAME;
  c->max_events = EVS_PROTO_DEFAULT_MAX_EVENTS;
  c->max_event_size = EVS_DEFAULT_MAX_EVENT_SIZE;
  c->max_connections = 1024;
  c->max_inflight = 64;
  c->max_subscriptions = 16;
  c->idle_timeout_s = 300;
  c->output_soft = 8u << 20;
  c->output_hard = 64u << 20;
  c->output_stall_timeout_s = 120;
  c->page_events = 1000;
  c->page_bytes = 1u << 20;
  c->threads = 8;
  c->slow_commit_ms = 200;
}

void evsd_config_free(evsd_config *c) {
  free(c->data_dir);
  free(c->listen);
  free(c->http);
  free(c->tokens_file);
  free(c->port_file);
  memset(c, 0, sizeof *c);
}

int evsd_config_parse(evsd_config *c, int argc, char **argv) {
  defaults(c);
  if (c->data_dir == NULL || c->listen == NULL || c->http == NULL) {
    fprintf(stderr, "evstored: out of memory\n");
    return -1;
  }
  for (size_t i = 0; i < NOPTS; i++) {
    if (opts[i].env == NULL)
      continue;
    const char *v = getenv(opts[i].env);
    if (v == NULL || (v[0] == '\0' && opts[i].has_arg))
      continue;
    if (apply(c, &opts[i], v, opts[i].env))
      return -1;
  }
  struct option longopts[NOPTS + 1];
  for (size_t i = 0; i < NOPTS; i++) {
    longopts[i].name = opts[i].flag;
    longopts[i].has_arg = opts[i].has_arg ? required_argument : no_argument;
    longopts[i].flag = NULL;
    longopts[i].val = opts[i].id;
  }
  memset(&longopts[NOPTS], 0, sizeof longopts[NOPTS]);
  /* getopt_long takes any unambiguous prefix of a long option (--vers for
   * --version): only the names --help lists are accepted. */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0)
      break;
    if (strncmp(a, "--", 2) != 0)
      continue;
    const char *eq = strchr(a + 2, '=');
    size_t len = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
    const opt_desc *o = NULL;
    for (size_t k = 0; k < NOPTS; k++)
      if (strlen(opts[k].flag) == len && memcmp(opts[k].flag, a + 2, len) == 0)
        o = &opts[k];
    if (o == NULL) {
      fprintf(stderr,
              "evstored: unknown option '%.*s'\n"
              "Try 'evstored --help'.\n",
              (int)(len + 2), a);
      return -1;
    }
    if (o->has_arg && eq == NULL)
      i++; /* its value */
  }
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    if (ch == 'h' || ch == OPT_HELP) {
      fputs(usage, stdout);
      return 1;
    }
    if (ch == OPT_VERSION) {
      printf("evstored %s (protocol %u)\n", EVS_VERSION_STRING,
             EVS_PROTO_VERSION);
      return 1;
    }
    const opt_desc *o = NULL;
    for (size_t i = 0; i < NOPTS; i++)
      if (opts[i].id == ch)
        o = &opts[i];
    if (o == NULL) {
      fprintf(stderr,
              "evstored: unknown or incomplete option '%s'\n"
              "Try 'evstored --help'.\n",
              argv[optind - 1]);
      return -1;
    }
    char src[64];
    snprintf(src, sizeof src, "--%s", o->flag);
    if (apply(c, o, o->has_arg ? optarg : NULL, src))
      return -1;
  }
  if (optind < argc) {
    fprintf(stderr,
            "evstored: unexpected argument '%s'\n"
            "Try 'evstored --help'.\n",
            argv[optind]);
    return -1;
  }
  if (c->max_event_size > c->max_frame - 4096) {
    fprintf(stderr,
            "evstored: --max-event-size (%u) must be smaller than "
            "--max-frame (%u) by at least 4 KiB\n",
            c->max_event_size, c->max_frame);
    return -1;
  }
  if (c->output_hard < c->output_soft) {
    fprintf(stderr, "evstored: --output-hard must be at least "
                    "--output-soft\n");
    return -1;
  }
  return 0;
}

/* ---- addresses ---------------------------------------------------------- */

int evsd_parse_addr(const char *hp, struct sockaddr_storage *out, char *err,
                    size_t errlen) {
  memset(out, 0, sizeof *out);
  char host[256];
  const char *port;
  if (hp[0] == '[') {
    const char *close = strchr(hp, ']');
    if (close == NULL || close[1] != ':' ||
        (size_t)(close - hp - 1) >= sizeof host) {
      snprintf(err, errlen, "'%s': expected [IPv6]:PORT", hp);
      return -1;
    }
    memcpy(host, hp + 1, (size_t)(close - hp - 1));
    host[close - hp - 1] = '\0';
    port = close + 2;
  } else {
    const char *colon = strrchr(hp, ':');
    if (colon == NULL || (size_t)(colon - hp) >= sizeof host) {
      snprintf(err, errlen, "'%s': expected HOST:PORT", hp);
      return -1;
    }
    memcpy(host, hp, (size_t)(colon - hp));
    host[colon - hp] = '\0';
    port = colon + 1;
  }
  char *end;
  errno = 0;
  long p = strtol(port, &end, 10);
  if (errno || end == port || *end || p < 0 || p > 65535) {
    snprintf(err, errlen, "'%s': bad port", hp);
    return -1;
  }
  if (strcmp(host, "localhost") == 0 || host[0] == '\0')
    strcpy(host, "127.0.0.1");
  struct sockaddr_in *v4 = (struct sockaddr_in *)out;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)p);
    return 0;
  }
  if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)p);
    return 0;
  }
  snprintf(err, errlen, "'%s': the host must be an IP address or 'localhost'",
           hp);
  return -1;
}

int evsd_addr_is_loopback(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)ss;
    return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
  }
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)ss;
    return IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
  }
  return 0;
}

void evsd_addr_format(const struct sockaddr *sa, char *out, size_t len) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
    unsigned port = ntohs(v4->sin_port);
    snprintf(out, len, "%s:%u", host, port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
    unsigned port = ntohs(v6->sin6_port);
    snprintf(out, len, "[%s]:%u", host, port);
  } else {
    snprintf(out, len, "?");
  }
}
