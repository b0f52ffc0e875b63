/* drv_data.c: `modelc data`: real data sets into the files `train` reads.
 *
 *   modelc data text IN... -o OUT.bin [--val VAL.bin] [--val-fraction F]
 *       bytes of the text files as tokens (llm.c format: V = 256); with
 *       --val the last fraction F (default 0.1) goes to VAL instead
 *   modelc data fmnist IMAGES LABELS -o OUT.safetensors
 *       Fashion-MNIST IDX files (.gz is decompressed) into a data set with
 *       `images` f32 [N,1,28,28] in [0,1] and `labels` i32 [N]
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compiler/drv.h"
#include "modelc_rt.h"

static const char usage_text[] =
    "usage: modelc data text IN... -o OUT.bin [--val VAL.bin] [--val-fraction F]\n"
    "       modelc data fmnist IMAGES LABELS -o OUT.safetensors\n"
    "\n"
    "text:   the bytes of the files, concatenated, as byte-level tokens in\n"
    "        llm.c's token format (for specs with V = 256); --val puts the\n"
    "        last F (default 0.1) of them into a second file\n"
    "fmnist: Fashion-MNIST IDX files (gzip-compressed or not) as a safetensors\n"
    "        data set: images f32 [N,1,28,28] scaled to [0,1], labels i32 [N]\n";

/* Writes tokens [begin, end) of text as an llm.c token file, atomically. */
static bool write_tokens(const char *path, const unsigned char *text, size_t count) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    fprintf(stderr, "modelc data: error: cannot write '%s': %s\n", path, strerror(errno));
    return false;
  }
  int32_t header[256] = {20240520, 1, (int32_t)count};
  bool ok = fwrite(header, sizeof header, 1, f) == 1;
  uint16_t chunk[4096];
  for (size_t i = 0; i < count && ok; i += 4096) {
    size_t n = count - i < 4096 ? count - i : 4096;
    for (size_t j = 0; j < n; j++) chunk[j] = text[i + j];
    ok = fwrite(chunk, sizeof(uint16_t), n, f) == n;
  }
  ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
  ok = fclose(f) == 0 && ok;
  if (!ok || rename(tmp, path) != 0) {
    fprintf(stderr, "modelc data: error: cannot write '%s': %s\n", path, strerror(errno));
    remove(tmp);
    return false;
  }
  return true;
}

static int data_text(int argc, char **argv) {
  const char *out = NULL, *val = NULL;
  double fraction = 0.1;
  const char *inputs[256];
  int n = 0;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
      out = argv[++i];
    } else if (strcmp(argv[i], "--val") == 0 && i + 1 < argc) {
      val = argv[++i];
    } else if (strcmp(argv[i], "--val-fraction") == 0 && i + 1 < argc) {
      char *end;
      fraction = strtod(argv[++i], &end);
      if (*end || !(fraction > 0 && fraction < 1)) {
        fprintf(stderr, "modelc data: error: --val-fraction: expected a number in (0, 1), got '%s'\n", argv[i]);
        return DRV_USER_ERROR;
      }
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "modelc data: error: unknown option '%s'\n%s", argv[i], usage_text);
      return DRV_USER_ERROR;
    } else if (n < 256) {
      inputs[n++] = argv[i];
    }
  }
  if (!out || n == 0) {
    fprintf(stderr, "modelc data: error: %s\n%s", out ? "no input files" : "missing -o OUT", usage_text);
    return DRV_USER_ERROR;
  }
  ir_arena *a = ir_arena_new();
  unsigned char *all = NULL;
  size_t total = 0;
  int rc = DRV_OK;
  for (int i = 0; i < n && rc == DRV_OK; i++) {
    size_t len;
    char *text = drv_read_file(a, inputs[i], &len);
    if (!text) {
      rc = DRV_USER_ERROR;
      break;
    }
    unsigned char *grown = ir_arena_grow(a, all, total, total + len + 1);
    memcpy(grown + total, text, len);
    all = grown;
    total += len;
  }
  if (rc == DRV_OK && (total < 2 || total > INT32_MAX)) {
    fprintf(stderr, "modelc data: error: the text has %zu bytes; need 2 to 2^31\n", total);
    rc = DRV_USER_ERROR;
  }
  size_t train = val ? (size_t)((double)total * (1.0 - fraction)) : total;
  if (rc == DRV_OK && val && (train < 2 || total - train < 2)) {
    fprintf(stderr, "modelc data: error: too little text to split\n");
    rc = DRV_USER_ERROR;
  }
  if (rc == DRV_OK && !write_tokens(out, all, train)) rc = DRV_USER_ERROR;
  if (rc == DRV_OK && val && !write_tokens(val, all + train, total - train)) {
    remove(out);
    rc = DRV_USER_ERROR;
  }
  if (rc == DRV_OK)
    fprintf(stderr, "modelc data: %zu tokens to %s%s%s\n", train, out, val ? ", the rest to " : "",
            val ? val : "");
  ir_arena_free(a);
  return rc;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A .gz file decompressed with gzip into a temporary file. */
static const char *plain_file(ir_arena *a, const char *path, char *tmpl) {
  if (!ends_with(path, ".gz")) return path;
  int fd = mkstemp(tmpl);
  if (fd < 0) return NULL;
  close(fd);
  char *cmd = ir_arena_printf(a, "gzip -dc -- '%s' > '%s'", path, tmpl);
  if (strchr(path, '\'') || system(cmd) != 0) {
    fprintf(stderr, "modelc data: error: cannot decompress '%s'\n", path);
    remove(tmpl);
    return NULL;
  }
  return tmpl;
}

static int data_fmnist(int argc, char **argv) {
  const char *out = NULL, *files[2];
  int n = 0;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
      out = argv[++i];
    } else if (argv[i][0] == '-' || n == 2) {
      fprintf(stderr, "modelc data: error: unexpected argument '%s'\n%s", argv[i], usage_text);
      return DRV_USER_ERROR;
    } else {
      files[n++] = argv[i];
    }
  }
  if (!out || n != 2) {
    fprintf(stderr, "modelc data: error: expected IMAGES LABELS -o OUT\n%s", usage_text);
    return DRV_USER_ERROR;
  }
  ir_arena *a = ir_arena_new();
  char t1[] = "/tmp/modelc-idx-XXXXXX", t2[] = "/tmp/modelc-idx-XXXXXX";
  const char *images = plain_file(a, files[0], t1);
  const char *labels = images ? plain_file(a, files[1], t2) : NULL;
  char err[512];
  int rc = DRV_USER_ERROR;
  if (images && labels && modelc_rt_idx_to_safetensors(images, labels, out, err, sizeof err) == 0) {
    fprintf(stderr, "modelc data: wrote %s\n", out);
    rc = DRV_OK;
  } else if (images && labels) {
    fprintf(stderr, "modelc data: error: %s\n", err);
  }
  if (images && images != files[0]) remove(images);
  if (labels && labels != files[1]) remove(labels);
  ir_arena_free(a);
  return rc;
}

int drv_data(int argc, char **argv) {
  if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
    fprintf(argc < 1 ? stderr : stdout, "%s", usage_text);
    return argc < 1 ? DRV_USER_ERROR : DRV_OK;
  }
  if (strcmp(argv[0], "text") == 0) return data_text(argc - 1, argv + 1);
  if (strcmp(argv[0], "fmnist") == 0) return data_fmnist(argc - 1, argv + 1);
  fprintf(stderr, "modelc data: error: unknown kind '%s' (kinds: text, fmnist)\n", argv[0]);
  return DRV_USER_ERROR;
}
