/*
 * Replays fuzzer corpora as an ordinary test, in every build (with or
 * without clang): every file under the directories given on the command
 * line goes through LLVMFuzzerTestOneInput, and so do a fixed number of
 * deterministic mutations of each (bit flips, truncations, splices,
 * interesting integers), so that a build without libFuzzer still explores
 * the neighbourhood of the seeds. A crash aborts the test.
 *
 * Usage: fuzz_replay [-m MUTATIONS] DIR_OR_FILE...
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 2685821657736338717ull;
}

static void run(const uint8_t *p, size_t n) {
  /* A private copy so that a read past the end is caught by ASan. */
  uint8_t *copy = malloc(n ? n : 1);
  if (copy == NULL)
    abort();
  memcpy(copy, p, n);
  LLVMFuzzerTestOneInput(copy, n);
  free(copy);
}

static void mutate_and_run(const uint8_t *seed, size_t n, unsigned count) {
  static const uint8_t interesting[] = { 0x00, 0x7f, 0x80, 0xc0, 0xc1,
                                         0xc4, 0xcf, 0xd3, 0xd9, 0xdb,
                                         0xdc, 0xdd, 0xde, 0xdf, 0xff };
  size_t cap = n + 64;
  uint8_t *buf = malloc(cap);
  if (buf == NULL)
    abort();
  for (unsigned m = 0; m < count; m++) {
    memcpy(buf, seed, n);
    size_t len = n;
    unsigned edits = 1 + (unsigned)(next_rand() % 4);
    for (unsigned e = 0; e < edits; e++) {
      switch (next_rand() % 5) {
      case 0: /* flip a bit */
        if (len)
          buf[next_rand() % len] ^= (uint8_t)(1u << (next_rand() % 8));
        break;
      case 1: /* an interesting byte */
        if (len)
          buf[next_rand() % len] =
              interesting[next_rand() % sizeof interesting];
        break;
      case 2: /* truncate */
        if (len)
          len = (size_t)(next_rand() % len);
        break;
      case 3: /* insert a byte */
        if (len < cap) {
          size_t at = len ? (size_t)(next_rand() % len) : 0;
          memmove(buf + at + 1, buf + at, len - at);
          buf[at] = (uint8_t)next_rand();
          len++;
        }
        break;
      default: /* big-endian 0xffffffff somewhere (a huge length) */
        if (len >= 4) {
          size_t at = (size_t)(next_rand() % (len - 3));
          memset(buf + at, 0xff, 4);
        }
        break;
      }
    }
    run(buf, len);
  }
  free(buf);
}

static int replay_file(const char *path, unsigned mutations) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    perror(path);
    return -1;
  }
  uint8_t *data = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len == cap) {
      cap = cap ? cap * 2 : 4096;
      uint8_t *p = realloc(data, cap);
      if (p == NULL)
        abort();
      data = p;
    }
    size_t got = fread(data + len, 1, cap - len, f);
    if (got == 0)
      break;
    len += got;
  }
  fclose(f);
  run(data, len);
  mutate_and_run(data, len, mutations);
  free(data);
  return 0;
}

int main(int argc, char **argv) {
  unsigned mutations = 1000;
  unsigned files = 0, failed = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) {
      mutations = (unsigned)strtoul(argv[++i], NULL, 10);
      continue;
    }
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      failed++;
      continue;
    }
    if (!S_ISDIR(st.st_mode)) {
      failed += replay_file(argv[i], mutations) != 0;
      files++;
      continue;
    }
    DIR *d = opendir(argv[i]);
    if (d == NULL) {
      perror(argv[i]);
      failed++;
      continue;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
      if (de->d_name[0] == '.')
        continue;
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", argv[i], de->d_name);
      failed += replay_file(path, mutations) != 0;
      files++;
    }
    closedir(d);
  }
  if (files == 0) {
    fprintf(stderr, "fuzz_replay: no corpus files\n");
    return 1;
  }
  printf("fuzz_replay: %u inputs, %u mutations each\n", files, mutations);
  printf("%u passed, %u failed\n", files - failed, failed);
  return failed != 0;
}
