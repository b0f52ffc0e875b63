/* fuzz_common.c: see fuzz.h. */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { FUZZ_MAX_TEMPS = 8 };
static char fuzz_temps[FUZZ_MAX_TEMPS][96];
static int fuzz_num_temps;

FILE *fuzz_null_stream(void) {
  static FILE *null_stream;
  if (!null_stream) null_stream = fopen("/dev/null", "w");
  return null_stream ? null_stream : stderr;
}

static void fuzz_remove_temps(void) {
  for (int i = 0; i < fuzz_num_temps; i++) {
    unlink(fuzz_temps[i]);
    /* the atomic writer's leftovers, should a write fail halfway */
    char tmp[sizeof fuzz_temps[0] + 32];
    snprintf(tmp, sizeof tmp, "%.95s.tmp.%ld", fuzz_temps[i], (long)getpid());
    unlink(tmp);
  }
}

const char *fuzz_temp_path(const char *suffix) {
  for (int i = 0; i < fuzz_num_temps; i++)
    if (strstr(fuzz_temps[i], suffix)) return fuzz_temps[i];
  if (fuzz_num_temps == FUZZ_MAX_TEMPS) abort();
  struct stat st;
  const char *dir = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
  char *path = fuzz_temps[fuzz_num_temps++];
  snprintf(path, sizeof fuzz_temps[0], "%s/modelc-fuzz-%ld-%s", dir, (long)getpid(), suffix);
  if (fuzz_num_temps == 1) atexit(fuzz_remove_temps);
  return path;
}

int fuzz_write(const char *path, const uint8_t *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  int bad = size && fwrite(data, 1, size, f) != size;
  bad |= fclose(f) != 0;
  return bad ? -1 : 0;
}
