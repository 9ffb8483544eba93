/*
 * evstore client — sockets with deadlines: connect, write all, read one
 * frame. Sockets are non-blocking and every wait is a poll() bounded by a
 * deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client/internal.h"

uint64_t evs__cl_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t evs__cl_deadline(int timeout_ms) {
  if (timeout_ms < 0)
    return UINT64_MAX;
  return evs__cl_now_ms() + (uint64_t)timeout_ms;
}

int evs__cl_remaining(uint64_t deadline) {
  if (deadline == UINT64_MAX)
    return -1;
  uint64_t now = evs__cl_now_ms();
  if (now >= deadline)
    return 0;
  uint64_t left = deadline - now;
  return left > 86400000u ? 86400000 : (int)left;
}

/* Waits for `events` on fd. 1 ready, 0 timeout, EVS_ECONN on error. */
static int wait_fd(int fd, short events, uint64_t deadline) {
  for (;;) {
    struct pollfd p = { fd, events, 0 };
    int ms = evs__cl_remaining(deadline);
    int rc = poll(&p, 1, ms);
    if (rc > 0)
      return 1;
    if (rc == 0)
      return 0;
    if (errno != EINTR)
      return evs__cl_err(EVS_ECONN, "poll: %s", strerror(errno));
  }
}

int evs__cl_split_address(const char *address, char *host, size_t hostlen,
                          char *port, size_t portlen) {
  if (address == NULL || address[0] == '\0')
    return evs__cl_err(EVS_EINVAL, "empty address");
  const char *p = NULL;
  size_t hl;
  const char *h = address;
  if (address[0] == '[') {
    const char *close = strchr(address, ']');
    if (close == NULL)
      return evs__cl_err(EVS_EINVAL, "bad address '%s'", address);
    h = address + 1;
    hl = (size_t)(close - h);
    if (close[1] == ':')
      p = close + 2;
    else if (close[1] != '\0')
      return evs__cl_err(EVS_EINVAL, "bad address '%s'", address);
  } else {
    const char *colon = strrchr(address, ':');
    if (colon && strchr(address, ':') != colon)
      colon = NULL; /* a bare IPv6 address: no port */
    hl = colon ? (size_t)(colon - address) : strlen(address);
    if (colon)
      p = colon + 1;
  }
  if (hl == 0 || hl >= hostlen)
    return evs__cl_err(EVS_EINVAL, "bad host in '%s'", address);
  memcpy(host, h, hl);
  host[hl] = '\0';
  if (p == NULL || *p == '\0') {
    snprintf(port, portlen, "%d", EVS_CLIENT_DEFAULT_PORT);
  } else {
    if (strlen(p) >= portlen || strspn(p, "0123456789") != strlen(p))
      return evs__cl_err(EVS_EINVAL, "bad port in '%s'", address);
    snprintf(port, portlen, "%s", p);
  }
  return 0;
}

int evs__cl_connect(const char *host, const char *port, uint64_t deadline) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int g = getaddrinfo(host, port, &hints, &res);
  if (g != 0)
    return evs__cl_err(EVS_ECONN, "cannot resolve '%s': %s", host,
                       gai_strerror(g));
  int last = EVS_ECONN;
  char why[128] = "no address";
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
               ai->ai_protocol);
    if (fd < 0) {
      snprintf(why, sizeof why, "socket: %s", strerror(errno));
      continue;
    }
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      int w = wait_fd(fd, POLLOUT, deadline);
      if (w == 1) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        rc = soerr ? -1 : 0;
        errno = soerr;
      } else {
        rc = -1;
        if (w == 0) {
          last = EVS_ETIMEDOUT;
          errno = ETIMEDOUT;
        }
      }
    }
    if (rc == 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      freeaddrinfo(res);
      return fd;
    }
    snprintf(why, sizeof why, "%s", strerror(errno));
    close(fd);
  }
  freeaddrinfo(res);
  return evs__cl_err(last, "cannot connect to %s:%s: %s", host, port, why);
}

int evs__cl_write_all(int fd, const void *p, size_t n, uint64_t deadline) {
  const uint8_t *b = p;
  while (n > 0) {
    ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
    if (w > 0) {
      b += w;
      n -= (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int r = wait_fd(fd, POLLOUT, deadline);
      if (r == 0)
        return evs__cl_err(EVS_ETIMEDOUT, "timed out sending to the server");
      if (r < 0)
        return r;
      continue;
    }
    return evs__cl_err(EVS_ECONN, "send: %s",
                       w < 0 ? strerror(errno) : "connection closed");
  }
  return 0;
}

/* Reads exactly n bytes before the deadline. */
static int read_exact(int fd, uint8_t *b, size_t n, uint64_t deadline) {
  while (n > 0) {
    ssize_t r = recv(fd, b, n, 0);
    if (r > 0) {
      b += r;
      n -= (size_t)r;
      continue;
    }
    if (r == 0)
      return evs__cl_err(EVS_ECONN, "the server closed the connection");
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      int w = wait_fd(fd, POLLIN, deadline);
      if (w == 0)
        return evs__cl_err(EVS_ETIMEDOUT, "timed out reading a frame");
      if (w < 0)
        return w;
      continue;
    }
    return evs__cl_err(EVS_ECONN, "recv: %s", strerror(errno));
  }
  return 0;
}

int evs__cl_read_frame(int fd, uint32_t max_len, uint64_t deadline,
                       uint64_t body_deadline, uint8_t **body, uint32_t *len) {
  *body = NULL;
  *len = 0;
  int w = wait_fd(fd, POLLIN, deadline);
  if (w == 0)
    return evs__cl_err(EVS_ETIMEDOUT, "timed out waiting for the server");
  if (w < 0)
    return w;
  uint8_t hdr[4];
  int rc = read_exact(fd, hdr, 4, body_deadline);
  if (rc)
    return rc == EVS_ETIMEDOUT ? EVS_ECONN : rc;
  uint32_t n;
  evs__proto_frame_header(hdr, 4, &n);
  if (n == 0 || n > max_len)
    return evs__cl_err(EVS_EPROTO,
                       "the server sent a frame of %u bytes (limit %u)", n,
                       max_len);
  uint8_t *p = malloc(n);
  if (p == NULL)
    return evs__cl_err(EVS_ENOMEM, "out of memory for a %u-byte frame", n);
  rc = read_exact(fd, p, n, body_deadline);
  if (rc) {
    free(p);
    /* Part of a frame was read: the stream is out of sync. */
    return rc == EVS_ETIMEDOUT ? EVS_ECONN : rc;
  }
  *body = p;
  *len = n;
  return 0;
}

void evs__cl_uuid_v7(uint8_t out[16]) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  uint8_t rnd[10];
  size_t got = 0;
  while (got < sizeof rnd) {
    ssize_t r = getrandom(rnd + got, sizeof rnd - got, 0);
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  if (got < sizeof rnd) {
    /* No entropy source: mix the clock and the address of a local. */
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)(uintptr_t)&got << 16);
    for (size_t i = 0; i < sizeof rnd; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      rnd[i] = (uint8_t)x;
    }
  }
  for (int i = 5; i >= 0; i--) {
    out[i] = (uint8_t)ms;
    ms >>= 8;
  }
  memcpy(out + 6, rnd, 10);
  out[6] = (uint8_t)(0x70 | (out[6] & 0x0f)); /* version 7 */
  out[8] = (uint8_t)(0x80 | (out[8] & 0x3f)); /* RFC 4122 variant */
}
