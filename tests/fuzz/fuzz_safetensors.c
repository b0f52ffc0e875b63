/* fuzz_safetensors.c: the safetensors reader on arbitrary bytes as a
 * file. Every tensor of a file that opens is read as f32 and i32 (one
 * of the two is refused by dtype), loaded as a model tensor, and the
 * file is written back and read again: the same names, dtypes, shapes
 * and bytes must come back. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "modelc_rt.h"

static void fuzz_check(int ok, const char *what) {
  if (ok) return;
  fprintf(stderr, "safetensors round trip: %s\n", what);
  abort();
}

static void fuzz_round_trip(const modelc_rt_st_file *f) {
  char err[512];
  modelc_rt_st_entry *entries = calloc((size_t)f->count + 1, sizeof *entries);
  if (!entries) abort();
  for (int i = 0; i < f->count; i++) {
    const modelc_rt_st_tensor *t = &f->tensors[i];
    entries[i] = (modelc_rt_st_entry){t->name, t->dtype, t->rank, t->shape, f->data + t->offset};
  }
  const char *path = fuzz_temp_path("written.safetensors");
  int rc = modelc_rt_st_write(path, entries, f->count, err, sizeof err);
  free(entries);
  if (rc != 0) return; /* a name the writer refuses (not valid UTF-8 never parses) */
  modelc_rt_st_file g;
  fuzz_check(modelc_rt_st_open(&g, path, err, sizeof err) == 0, err);
  fuzz_check(g.count == f->count, "tensor count");
  for (int i = 0; i < f->count; i++) {
    const modelc_rt_st_tensor *a = &f->tensors[i], *b = modelc_rt_st_find(&g, a->name);
    fuzz_check(b != NULL, "a tensor is missing");
    fuzz_check(a->dtype == b->dtype && a->rank == b->rank && a->nbytes == b->nbytes, "dtype or shape");
    fuzz_check(memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->rank) == 0, "shape");
    fuzz_check(a->nbytes == 0 || memcmp(f->data + a->offset, g.data + b->offset, a->nbytes) == 0, "data");
  }
  modelc_rt_st_close(&g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_temp_path("input.safetensors");
  if (fuzz_write(path, data, size) != 0) return 0;
  char err[512];
  modelc_rt_st_file f;
  if (modelc_rt_st_open(&f, path, err, sizeof err) != 0) return 0;
  for (int i = 0; i < f.count; i++) {
    const modelc_rt_st_tensor *t = &f.tensors[i];
    int64_t count = (int64_t)(t->nbytes / modelc_rt_dtype_size(t->dtype));
    void *dst = malloc((size_t)(count ? count : 1) * 8);
    if (!dst) abort();
    (void)modelc_rt_st_read_real(&f, t, 0, count, dst, err, sizeof err);
    (void)modelc_rt_st_read_i32(&f, t, 0, count, dst, err, sizeof err);
    /* a slice, as the data sets read them, and one past the end */
    (void)modelc_rt_st_read_real(&f, t, count / 2, count - count / 2, dst, err, sizeof err);
    (void)modelc_rt_st_read_i32(&f, t, count, 1, dst, err, sizeof err);
    modelc_rt_tensor_desc want = {t->name, MODELC_RT_F32, t->rank, {0}};
    memcpy(want.shape, t->shape, sizeof want.shape);
    (void)modelc_rt_load_tensor(&f, &want, dst, err, sizeof err);
    free(dst);
  }
  (void)modelc_rt_st_find(&f, "weight");
  fuzz_round_trip(&f);
  modelc_rt_st_close(&f);
  return 0;
}
