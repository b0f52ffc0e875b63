/* fuzz_data.c: the data readers on arbitrary bytes. The first byte picks
 * one: token files (llm.c format or raw uint16) read in windows of a
 * batch shape taken from the next bytes; a pair of IDX files (images,
 * labels; split where the next two bytes say) converted to safetensors;
 * or text converted to a token file and read back. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "modelc_rt.h"

static void fuzz_tokens(const uint8_t *data, size_t size) {
  if (size < 2) return;
  int64_t batch = 1 + data[0] % 4, time = 1 + data[1] % 16;
  const char *path = fuzz_temp_path("tokens.bin");
  if (fuzz_write(path, data + 2, size - 2) != 0) return;
  char err[512];
  modelc_rt_tokens d;
  if (modelc_rt_tokens_open(&d, path, err, sizeof err) != 0) return;
  int32_t inputs[64], targets[64];
  for (int i = 0; i < 5; i++) {
    modelc_rt_tokens_next(&d, batch, time, inputs, targets);
    if (d.cursor < 0 || d.cursor >= d.count) abort();
  }
  modelc_rt_tokens_close(&d);
}

static void fuzz_idx(const uint8_t *data, size_t size) {
  if (size < 2) return;
  size_t split = ((size_t)data[0] << 8 | data[1]) % (size - 1);
  data += 2;
  size -= 2;
  const char *images = fuzz_temp_path("images.idx"), *labels = fuzz_temp_path("labels.idx");
  const char *out = fuzz_temp_path("idx.safetensors");
  if (fuzz_write(images, data, split) != 0 || fuzz_write(labels, data + split, size - split) != 0)
    return;
  char err[512];
  if (modelc_rt_idx_to_safetensors(images, labels, out, err, sizeof err) != 0) return;
  modelc_rt_st_file f;
  if (modelc_rt_st_open(&f, out, err, sizeof err) != 0) {
    fprintf(stderr, "the converted IDX data does not read back: %s\n", err);
    abort();
  }
  modelc_rt_st_close(&f);
}

static void fuzz_text(const uint8_t *data, size_t size) {
  const char *text = fuzz_temp_path("text.txt"), *out = fuzz_temp_path("text.bin");
  if (fuzz_write(text, data, size) != 0) return;
  char err[512];
  if (modelc_rt_tokens_from_text(text, out, err, sizeof err) != 0) return;
  modelc_rt_tokens d;
  if (modelc_rt_tokens_open(&d, out, err, sizeof err) != 0 || d.count != (int64_t)size) {
    fprintf(stderr, "the token file of a text does not read back: %s\n", err);
    abort();
  }
  for (size_t i = 0; i < size; i++)
    if (d.tokens[i] != data[i]) abort();
  modelc_rt_tokens_close(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  switch (data[0] % 3) {
  case 0: fuzz_tokens(data + 1, size - 1); break;
  case 1: fuzz_idx(data + 1, size - 1); break;
  default: fuzz_text(data + 1, size - 1); break;
  }
  return 0;
}
