/* replay_main.c: runs a harness on each file named on the command line
 * (or every file of each folder named), once, as libFuzzer does when
 * given files: the regression corpus runs in builds without libFuzzer. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "replay: cannot read %s\n", path);
    return 1;
  }
  size_t cap = 4096, n = 0;
  unsigned char *buf = malloc(cap);
  for (;;) {
    if (!buf) abort();
    n += fread(buf + n, 1, cap - n, f);
    if (n < cap) break;
    cap *= 2;
    buf = realloc(buf, cap);
  }
  fclose(f);
  /* A copy of exactly n bytes, so that reads past the end are caught. */
  unsigned char *exact = malloc(n ? n : 1);
  if (!exact) abort();
  memcpy(exact, buf, n);
  free(buf);
  LLVMFuzzerTestOneInput(exact, n);
  free(exact);
  return 0;
}

int main(int argc, char **argv) {
  int failed = 0, count = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
      DIR *dir = opendir(argv[i]);
      struct dirent *ent;
      while (dir && (ent = readdir(dir))) {
        if (ent->d_name[0] == '.') continue;
        size_t len = strlen(argv[i]) + strlen(ent->d_name) + 2;
        char *path = malloc(len);
        if (!path) abort();
        snprintf(path, len, "%s/%s", argv[i], ent->d_name);
        failed |= replay_file(path);
        count++;
        free(path);
      }
      if (dir) closedir(dir);
    } else {
      failed |= replay_file(argv[i]);
      count++;
    }
  }
  printf("replayed %d inputs\n", count);
  return failed;
}
