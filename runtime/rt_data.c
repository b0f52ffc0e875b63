/* rt_data.c: data sets: token files (llm.c's format or raw uint16) and
 * the conversion of IDX image/label pairs (Fashion-MNIST) to safetensors. */
#include "modelc_rt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  DATA_LLMC_MAGIC = 20240520,
  DATA_LLMC_VERSION = 1,
  DATA_LLMC_HEADER = 256 * 4, /* bytes: 256 int32 */
  DATA_IDX_IMAGES = 0x00000803,
  DATA_IDX_LABELS = 0x00000801,
};


static uint32_t data_le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t data_be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* ---- tokens ---- */

/* Where the tokens are in a file of `size` bytes, by its format. */
static int data_token_layout(const char *path, const unsigned char *bytes, size_t size,
                             size_t *start, int64_t *count, char *err, size_t errlen) {
  if (size >= 4 && (int32_t)data_le32(bytes) == DATA_LLMC_MAGIC) {
    if (size < DATA_LLMC_HEADER)
      return modelc_rt_fail(err, errlen,
                       "%s: llm.c token file is %zu bytes, shorter than its %d-byte header", path,
                       size, DATA_LLMC_HEADER);
    int32_t version = (int32_t)data_le32(bytes + 4), declared = (int32_t)data_le32(bytes + 8);
    if (version != DATA_LLMC_VERSION)
      return modelc_rt_fail(err, errlen,
                       "%s: llm.c token file version %d; only version 1 (uint16 tokens) is read",
                       path, version);
    size_t held = size - DATA_LLMC_HEADER;
    if (declared < 0 || held % 2 != 0 || (uint64_t)declared != held / 2)
      return modelc_rt_fail(
          err, errlen,
          "%s: header says %d tokens but the file holds %zu bytes of tokens (%zu tokens)", path,
          declared, held, held / 2);
    *start = DATA_LLMC_HEADER;
    *count = declared;
  } else {
    if (size % 2 != 0)
      return modelc_rt_fail(
          err, errlen,
          "%s: not an llm.c token file, and its size (%zu bytes) is odd for raw uint16 tokens",
          path, size);
    *start = 0;
    *count = (int64_t)(size / 2);
  }
  if (*count < 2)
    return modelc_rt_fail(err, errlen,
                     "%s: %lld tokens; at least 2 are needed (an input and its target)", path,
                     (long long)*count);
  return 0;
}

int modelc_rt_tokens_open(modelc_rt_tokens *d, const char *path, char *err, size_t errlen) {
  memset(d, 0, sizeof *d);
  unsigned char *bytes;
  size_t size, start = 0;
  int64_t count = 0;
  if (modelc_rt_read_file(path, &bytes, &size, err, errlen) != 0) return -1;
  if (data_token_layout(path, bytes, size, &start, &count, err, errlen) != 0) {
    free(bytes);
    return -1;
  }
  /* The tokens are moved to the front of the buffer (malloc'd, so aligned
   * for uint16_t) rather than copied: token files can be large. */
  memmove(bytes, bytes + start, (size_t)count * 2); /* little-endian host */
  d->tokens = (uint16_t *)(void *)bytes;
  d->count = count;
  d->cursor = 0;
  return 0;
}

void modelc_rt_tokens_close(modelc_rt_tokens *d) {
  if (!d) return;
  free(d->tokens);
  memset(d, 0, sizeof *d);
}

/* When fewer than B*T+1 tokens remain the window restarts at token 0; a
 * window longer than the whole file reads it cyclically. */
void modelc_rt_tokens_next(modelc_rt_tokens *d, int64_t batch, int64_t time, int32_t *inputs,
                           int32_t *targets) {
  int64_t n = batch * time;
  if (d->cursor + n + 1 > d->count) d->cursor = 0;
  int64_t at = d->cursor;
  for (int64_t i = 0; i < n; i++) {
    inputs[i] = d->tokens[at];
    at = at + 1 == d->count ? 0 : at + 1;
    targets[i] = d->tokens[at];
  }
  d->cursor = (d->cursor + n) % d->count;
}

int modelc_rt_tokens_from_text(const char *text_path, const char *out_path, char *err,
                               size_t errlen) {
  unsigned char *text;
  size_t size;
  if (modelc_rt_read_file(text_path, &text, &size, err, errlen) != 0) return -1;
  if (size < 2) {
    free(text);
    return modelc_rt_fail(err, errlen,
                     "%s: %zu bytes of text; at least 2 are needed (an input and its target)",
                     text_path, size);
  }
  if (size > INT32_MAX) {
    free(text);
    return modelc_rt_fail(err, errlen,
                     "%s: %zu bytes of text; an llm.c token file holds at most %d tokens",
                     text_path, size, INT32_MAX);
  }
  int32_t header[256] = {DATA_LLMC_MAGIC, DATA_LLMC_VERSION, (int32_t)size};
  uint16_t *tokens = malloc(size * sizeof *tokens);
  if (!tokens) {
    free(text);
    return modelc_rt_fail(err, errlen, "%s: out of memory for %zu tokens", text_path, size);
  }
  for (size_t i = 0; i < size; i++) tokens[i] = text[i];
  free(text);
  const void *parts[2] = {header, tokens};
  size_t sizes[2] = {sizeof header, size * sizeof *tokens};
  int rc = modelc_rt_write_file_atomic(out_path, parts, sizes, 2, err, errlen);
  free(tokens);
  return rc;
}

/* ---- IDX ---- */

/* An IDX file's items: magic, then `dims` big-endian uint32 sizes, then
 * u8 data that must fill the rest of the file exactly. */
static int data_idx_layout(const char *path, const unsigned char *bytes, size_t size,
                           uint32_t magic, int dims, uint32_t *shape, char *err, size_t errlen) {
  size_t header = 4 + 4 * (size_t)dims;
  uint32_t got = size >= 4 ? data_be32(bytes) : 0;
  if (size >= 4 && got != magic) /* first, so that swapped files say so */
    return modelc_rt_fail(err, errlen, "%s: IDX magic 0x%08x, expected 0x%08x (%s)", path, got, magic,
                     magic == DATA_IDX_IMAGES ? "u8 images [N, rows, cols]" : "u8 labels [N]");
  if (size < header)
    return modelc_rt_fail(err, errlen, "%s: %zu bytes, shorter than an IDX header (%zu bytes)", path,
                     size, header);
  uint64_t items = 1;
  int overflow = 0;
  for (int i = 0; i < dims; i++) {
    shape[i] = data_be32(bytes + 4 + 4 * i);
    if (shape[i] && items > UINT64_MAX / shape[i]) overflow = 1;
    items *= shape[i];
  }
  if (overflow)
    return modelc_rt_fail(err, errlen, "%s: the IDX header's sizes multiply past 2^64", path);
  if (items != size - header)
    return modelc_rt_fail(err, errlen,
                     "%s: the IDX header announces %llu bytes of data but the file holds %zu", path,
                     (unsigned long long)items, size - header);
  return 0;
}

int modelc_rt_idx_to_safetensors(const char *images_idx, const char *labels_idx,
                                 const char *out_path, char *err, size_t errlen) {
  unsigned char *images = NULL, *labels = NULL;
  size_t images_size, labels_size;
  uint32_t image_shape[3] = {0, 0, 0}, label_shape[1] = {0};
  float *pixels = NULL;
  int32_t *classes = NULL;
  int rc = -1;
  if (modelc_rt_read_file(images_idx, &images, &images_size, err, errlen) != 0) goto done;
  if (modelc_rt_read_file(labels_idx, &labels, &labels_size, err, errlen) != 0) goto done;
  if (data_idx_layout(images_idx, images, images_size, DATA_IDX_IMAGES, 3, image_shape, err,
                      errlen) != 0 ||
      data_idx_layout(labels_idx, labels, labels_size, DATA_IDX_LABELS, 1, label_shape, err,
                      errlen) != 0)
    goto done;
  if (image_shape[0] != label_shape[0]) {
    modelc_rt_fail(err, errlen, "%s has %u images but %s has %u labels", images_idx, image_shape[0],
              labels_idx, label_shape[0]);
    goto done;
  }
  if (image_shape[0] == 0) {
    modelc_rt_fail(err, errlen, "%s: no images", images_idx);
    goto done;
  }
  size_t n = image_shape[0], pixel_count = images_size - 16;
  pixels = malloc(pixel_count * sizeof *pixels);
  classes = malloc(n * sizeof *classes);
  if (!pixels || !classes) {
    modelc_rt_fail(err, errlen, "%s: out of memory", images_idx);
    goto done;
  }
  for (size_t i = 0; i < pixel_count; i++) pixels[i] = (float)images[16 + i] / 255.0f;
  for (size_t i = 0; i < n; i++) classes[i] = labels[8 + i];
  int64_t images_dims[4] = {(int64_t)n, 1, image_shape[1], image_shape[2]};
  int64_t labels_dims[1] = {(int64_t)n};
  modelc_rt_st_entry entries[2] = {
      {"images", MODELC_RT_F32, 4, images_dims, pixels},
      {"labels", MODELC_RT_I32, 1, labels_dims, classes},
  };
  rc = modelc_rt_st_write(out_path, entries, 2, err, errlen);
done:
  free(images);
  free(labels);
  free(pixels);
  free(classes);
  return rc;
}
