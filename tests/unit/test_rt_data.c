/* test_rt_data.c: token files (llm.c and raw uint16), batches with
 * wrapping, byte-level tokens of a text, IDX to safetensors, and the
 * message of each malformed file. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modelc_rt.h"

static char dir[64];
static char path[128];
static char err[512];

static void setup(void) {
  snprintf(dir, sizeof dir, "/tmp/test_rt_data_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/tokens.bin", dir);
  err[0] = '\0';
}

static void teardown(void) {
  DIR *d = opendir(dir);
  char file[512];
  for (struct dirent *e; (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(file, sizeof file, "%s/%s", dir, e->d_name);
    unlink(file);
  }
  closedir(d);
  rmdir(dir);
}

static void in_dir(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

static void write_bytes(const char *file, const void *bytes, size_t n) {
  FILE *f = fopen(file, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(bytes, 1, n, f), n);
  fclose(f);
}

/* An llm.c file: header (magic, version, declared count), then tokens. */
static void write_llmc(int32_t magic, int32_t version, int32_t declared, const uint16_t *tokens,
                       size_t n) {
  size_t size = 1024 + 2 * n;
  unsigned char *buf = calloc(size, 1);
  int32_t head[3] = {magic, version, declared};
  memcpy(buf, head, sizeof head);
  if (n) memcpy(buf + 1024, tokens, 2 * n);
  write_bytes(path, buf, size);
  free(buf);
}

static void expect_tokens_error(const char *message) {
  modelc_rt_tokens d;
  char want[512];
  snprintf(want, sizeof want, "%s: %s", path, message);
  ck_assert_int_eq(modelc_rt_tokens_open(&d, path, err, sizeof err), -1);
  ck_assert_str_eq(err, want);
  ck_assert_ptr_null(d.tokens);
  modelc_rt_tokens_close(&d);
}

START_TEST(llmc_file) {
  uint16_t t[5] = {50256, 1, 2, 65535, 4};
  write_llmc(20240520, 1, 5, t, 5);
  modelc_rt_tokens d;
  ck_assert_int_eq(modelc_rt_tokens_open(&d, path, err, sizeof err), 0);
  ck_assert_int_eq(d.count, 5);
  ck_assert_int_eq(d.cursor, 0);
  ck_assert_int_eq(memcmp(d.tokens, t, sizeof t), 0);
  int32_t in[4], tg[4];
  modelc_rt_tokens_next(&d, 2, 2, in, tg);
  ck_assert(in[0] == 50256 && in[3] == 65535 && tg[0] == 1 && tg[3] == 4);
  modelc_rt_tokens_close(&d);
  ck_assert_ptr_null(d.tokens);
}
END_TEST

START_TEST(raw_file) {
  uint16_t t[3] = {7, 8, 9};
  write_bytes(path, t, sizeof t);
  modelc_rt_tokens d;
  ck_assert_int_eq(modelc_rt_tokens_open(&d, path, err, sizeof err), 0);
  ck_assert_int_eq(d.count, 3);
  ck_assert(d.tokens[0] == 7 && d.tokens[2] == 9);
  modelc_rt_tokens_close(&d);
  /* a raw file whose first bytes are not the magic, even at 1024+ bytes */
  uint16_t *many = calloc(600, sizeof *many);
  many[0] = 1;
  write_bytes(path, many, 600 * sizeof *many);
  ck_assert_int_eq(modelc_rt_tokens_open(&d, path, err, sizeof err), 0);
  ck_assert_int_eq(d.count, 600);
  modelc_rt_tokens_close(&d);
  free(many);
}
END_TEST

/* 10 tokens, B*T = 4: windows at 0 and 4, then 8 + 5 > 10 restarts at 0. */
START_TEST(batches_wrap) {
  uint16_t t[10];
  for (int i = 0; i < 10; i++) t[i] = (uint16_t)(100 + i);
  write_llmc(20240520, 1, 10, t, 10);
  modelc_rt_tokens d;
  ck_assert_int_eq(modelc_rt_tokens_open(&d, path, err, sizeof err), 0);
  int32_t in[4], tg[4];
  const int starts[4] = {0, 4, 0, 4};
  for (int call = 0; call < 4; call++) {
    modelc_rt_tokens_next(&d, 2, 2, in, tg);
    for (int i = 0; i < 4; i++) {
      ck_assert_int_eq(in[i], 100 + starts[call] + i);
      ck_assert_int_eq(tg[i], 101 + starts[call] + i);
    }
  }
  ck_assert_int_eq(d.cursor, 8);
  /* exactly B*T+1 remaining is enough: 9 tokens from 1 */
  d.cursor = 1;
  int32_t in8[8], tg8[8];
  modelc_rt_tokens_next(&d, 1, 8, in8, tg8);
  ck_assert_int_eq(in8[0], 101);
  ck_assert_int_eq(tg8[7], 109);
  ck_assert_int_eq(d.cursor, 9);
  modelc_rt_tokens_close(&d);
}
END_TEST

/* A window longer than the file reads it cyclically. */
START_TEST(window_longer_than_file) {
  uint16_t t[3] = {1, 2, 3};
  write_bytes(path, t, sizeof t);
  modelc_rt_tokens d;
  ck_assert_int_eq(modelc_rt_tokens_open(&d, path, err, sizeof err), 0);
  int32_t in[4], tg[4];
  modelc_rt_tokens_next(&d, 1, 4, in, tg);
  const int32_t want_in[4] = {1, 2, 3, 1}, want_tg[4] = {2, 3, 1, 2};
  ck_assert_int_eq(memcmp(in, want_in, sizeof in), 0);
  ck_assert_int_eq(memcmp(tg, want_tg, sizeof tg), 0);
  ck_assert_int_eq(d.cursor, 1);
  modelc_rt_tokens_next(&d, 1, 4, in, tg);
  ck_assert_int_eq(memcmp(in, want_in, sizeof in), 0);
  modelc_rt_tokens_close(&d);
}
END_TEST

START_TEST(malformed_token_files) {
  uint16_t t[4] = {1, 2, 3, 4};
  write_llmc(20240520, 2, 4, t, 4);
  expect_tokens_error("llm.c token file version 2; only version 1 (uint16 tokens) is read");
  write_llmc(20240520, 1, 5, t, 4);
  expect_tokens_error("header says 5 tokens but the file holds 8 bytes of tokens (4 tokens)");
  write_llmc(20240520, 1, -1, t, 4);
  expect_tokens_error("header says -1 tokens but the file holds 8 bytes of tokens (4 tokens)");
  write_llmc(20240520, 1, 1, t, 1);
  expect_tokens_error("1 tokens; at least 2 are needed (an input and its target)");
  int32_t magic_only[25] = {20240520, 1, 0};
  write_bytes(path, magic_only, sizeof magic_only);
  expect_tokens_error("llm.c token file is 100 bytes, shorter than its 1024-byte header");
  write_bytes(path, "abcde", 5);
  expect_tokens_error(
      "not an llm.c token file, and its size (5 bytes) is odd for raw uint16 tokens");
  write_bytes(path, "ab", 2);
  expect_tokens_error("1 tokens; at least 2 are needed (an input and its target)");
  write_bytes(path, "", 0);
  expect_tokens_error("0 tokens; at least 2 are needed (an input and its target)");
  char want[256];
  in_dir(path, sizeof path, "none.bin");
  snprintf(want, sizeof want, "cannot read '%s': No such file or directory", path);
  modelc_rt_tokens d;
  ck_assert_int_eq(modelc_rt_tokens_open(&d, path, err, sizeof err), -1);
  ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(tokens_from_text) {
  char text[160];
  in_dir(text, sizeof text, "in.txt");
  write_bytes(text, "hi\n\xc3\xa9!", 6);
  ck_assert_int_eq(modelc_rt_tokens_from_text(text, path, err, sizeof err), 0);
  unsigned char *bytes;
  size_t size;
  ck_assert_int_eq(modelc_rt_read_file(path, &bytes, &size, err, sizeof err), 0);
  ck_assert_uint_eq(size, 1024 + 12);
  int32_t head[256];
  memcpy(head, bytes, sizeof head);
  ck_assert(head[0] == 20240520 && head[1] == 1 && head[2] == 6);
  for (int i = 3; i < 256; i++) ck_assert_int_eq(head[i], 0);
  free(bytes);
  modelc_rt_tokens d;
  ck_assert_int_eq(modelc_rt_tokens_open(&d, path, err, sizeof err), 0);
  const uint16_t want[6] = {'h', 'i', '\n', 0xc3, 0xa9, '!'};
  ck_assert_int_eq(d.count, 6);
  ck_assert_int_eq(memcmp(d.tokens, want, sizeof want), 0);
  modelc_rt_tokens_close(&d);
}
END_TEST

START_TEST(tokens_from_bad_text) {
  char text[160], want[512];
  in_dir(text, sizeof text, "in.txt");
  write_bytes(text, "x", 1);
  snprintf(want, sizeof want,
           "%s: 1 bytes of text; at least 2 are needed (an input and its target)", text);
  ck_assert_int_eq(modelc_rt_tokens_from_text(text, path, err, sizeof err), -1);
  ck_assert_str_eq(err, want);
  ck_assert_int_eq(access(path, F_OK), -1);
  write_bytes(text, "xy", 2);
  char out[160];
  in_dir(out, sizeof out, "missing/out.bin");
  snprintf(want, sizeof want, "cannot write '%s': No such file or directory", out);
  ck_assert_int_eq(modelc_rt_tokens_from_text(text, out, err, sizeof err), -1);
  ck_assert_str_eq(err, want);
  in_dir(text, sizeof text, "none.txt");
  snprintf(want, sizeof want, "cannot read '%s': No such file or directory", text);
  ck_assert_int_eq(modelc_rt_tokens_from_text(text, path, err, sizeof err), -1);
  ck_assert_str_eq(err, want);
}
END_TEST

/* ---- IDX ---- */

static char images[160], labels[160], out[160];

static void put_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

/* n images of rows x cols with pixel (k, i) = (k * 31 + i) % 256, and
 * labels k * 3 % 10; `extra` bytes appended to the images. */
static void write_idx(uint32_t n_images, uint32_t rows, uint32_t cols, uint32_t n_labels,
                      size_t extra) {
  in_dir(images, sizeof images, "images-idx3-ubyte");
  in_dir(labels, sizeof labels, "labels-idx1-ubyte");
  in_dir(out, sizeof out, "fashion.safetensors");
  size_t pixels = (size_t)n_images * rows * cols;
  unsigned char *im = calloc(16 + pixels + extra, 1), *lb = calloc(8 + n_labels, 1);
  put_be32(im, 0x803);
  put_be32(im + 4, n_images);
  put_be32(im + 8, rows);
  put_be32(im + 12, cols);
  for (size_t k = 0; k < n_images; k++)
    for (size_t i = 0; i < (size_t)rows * cols; i++)
      im[16 + k * rows * cols + i] = (unsigned char)((k * 31 + i) % 256);
  put_be32(lb, 0x801);
  put_be32(lb + 4, n_labels);
  for (uint32_t k = 0; k < n_labels; k++) lb[8 + k] = (unsigned char)(k * 3 % 10);
  write_bytes(images, im, 16 + pixels + extra);
  write_bytes(labels, lb, 8 + n_labels);
  free(im);
  free(lb);
}

START_TEST(idx_to_safetensors) {
  write_idx(3, 28, 28, 3, 0);
  ck_assert_int_eq(modelc_rt_idx_to_safetensors(images, labels, out, err, sizeof err), 0);
  modelc_rt_st_file f;
  ck_assert_int_eq(modelc_rt_st_open(&f, out, err, sizeof err), 0);
  ck_assert_int_eq(f.count, 2);
  const modelc_rt_st_tensor *im = modelc_rt_st_find(&f, "images"),
                            *lb = modelc_rt_st_find(&f, "labels");
  ck_assert_ptr_nonnull(im);
  ck_assert_ptr_nonnull(lb);
  ck_assert_int_eq(im->dtype, MODELC_RT_F32);
  ck_assert_int_eq(im->rank, 4);
  ck_assert(im->shape[0] == 3 && im->shape[1] == 1 && im->shape[2] == 28 && im->shape[3] == 28);
  ck_assert_int_eq(lb->dtype, MODELC_RT_I32);
  ck_assert_int_eq(lb->rank, 1);
  ck_assert_int_eq(lb->shape[0], 3);
  float *px = malloc(3 * 784 * sizeof *px);
  ck_assert_int_eq(modelc_rt_st_read_real(&f, im, 0, 3 * 784, px, err, sizeof err), 0);
  int bad = 0;
  for (int k = 0; k < 3; k++)
    for (int i = 0; i < 784; i++) bad += px[k * 784 + i] != (float)((k * 31 + i) % 256) / 255.0f;
  ck_assert_int_eq(bad, 0);
  ck_assert_float_eq(px[255], 1.0f);
  ck_assert_float_eq(px[0], 0.0f);
  int32_t cls[3];
  ck_assert_int_eq(modelc_rt_st_read_i32(&f, lb, 0, 3, cls, err, sizeof err), 0);
  ck_assert(cls[0] == 0 && cls[1] == 3 && cls[2] == 6);
  /* one sample: a slice of the first dimension */
  ck_assert_int_eq(modelc_rt_st_read_real(&f, im, 784, 784, px, err, sizeof err), 0);
  ck_assert_float_eq(px[0], 31.0f / 255.0f);
  free(px);
  modelc_rt_st_close(&f);
}
END_TEST

START_TEST(idx_other_sizes) {
  write_idx(2, 4, 5, 2, 0);
  ck_assert_int_eq(modelc_rt_idx_to_safetensors(images, labels, out, err, sizeof err), 0);
  modelc_rt_st_file f;
  ck_assert_int_eq(modelc_rt_st_open(&f, out, err, sizeof err), 0);
  const modelc_rt_st_tensor *im = modelc_rt_st_find(&f, "images");
  ck_assert(im->shape[0] == 2 && im->shape[1] == 1 && im->shape[2] == 4 && im->shape[3] == 5);
  modelc_rt_st_close(&f);
}
END_TEST

static void expect_idx_error(const char *want) {
  ck_assert_int_eq(modelc_rt_idx_to_safetensors(images, labels, out, err, sizeof err), -1);
  ck_assert_str_eq(err, want);
  ck_assert_int_eq(access(out, F_OK), -1);
}

START_TEST(malformed_idx) {
  char want[512];
  write_idx(3, 28, 28, 2, 0);
  snprintf(want, sizeof want, "%s has 3 images but %s has 2 labels", images, labels);
  expect_idx_error(want);
  write_idx(3, 28, 28, 3, 1);
  snprintf(want, sizeof want,
           "%s: the IDX header announces 2352 bytes of data but the file holds 2353", images);
  expect_idx_error(want);
  write_idx(0, 28, 28, 0, 0);
  snprintf(want, sizeof want, "%s: no images", images);
  expect_idx_error(want);
  /* the two files swapped */
  write_idx(3, 28, 28, 3, 0);
  char swapped[160];
  in_dir(swapped, sizeof swapped, "tmp");
  rename(images, swapped);
  rename(labels, images);
  rename(swapped, labels);
  snprintf(want, sizeof want,
           "%s: IDX magic 0x00000801, expected 0x00000803 (u8 images [N, rows, cols])", images);
  expect_idx_error(want);
  write_idx(3, 28, 28, 3, 0);
  write_bytes(images, "\0\0\x08\x03\0\0\0\x03", 8);
  snprintf(want, sizeof want, "%s: 8 bytes, shorter than an IDX header (16 bytes)", images);
  expect_idx_error(want);
  write_idx(3, 28, 28, 3, 0);
  write_bytes(labels, "\0\0\x08\x03\0\0\0\x03zzz", 11);
  snprintf(want, sizeof want, "%s: IDX magic 0x00000803, expected 0x00000801 (u8 labels [N])",
           labels);
  expect_idx_error(want);
  write_bytes(labels, "\0\0\x08\x01\xff\xff\xff\xff", 8);
  snprintf(want, sizeof want,
           "%s: the IDX header announces 4294967295 bytes of data but the file holds 0", labels);
  expect_idx_error(want);
  unsigned char huge[16] = {0,    0,    8,    3,    0xff, 0xff, 0xff, 0xff,
                            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  write_bytes(images, huge, 16);
  snprintf(want, sizeof want, "%s: the IDX header's sizes multiply past 2^64", images);
  expect_idx_error(want);
  write_idx(3, 28, 28, 3, 0);
  in_dir(labels, sizeof labels, "none");
  snprintf(want, sizeof want, "cannot read '%s': No such file or directory", labels);
  expect_idx_error(want);
}
END_TEST

static Suite *data_suite(void) {
  Suite *s = suite_create("rt_data");
  TCase *tok = tcase_create("tokens");
  tcase_add_checked_fixture(tok, setup, teardown);
  tcase_add_test(tok, llmc_file);
  tcase_add_test(tok, raw_file);
  tcase_add_test(tok, batches_wrap);
  tcase_add_test(tok, window_longer_than_file);
  tcase_add_test(tok, malformed_token_files);
  tcase_add_test(tok, tokens_from_text);
  tcase_add_test(tok, tokens_from_bad_text);
  suite_add_tcase(s, tok);
  TCase *idx = tcase_create("idx");
  tcase_add_checked_fixture(idx, setup, teardown);
  tcase_add_test(idx, idx_to_safetensors);
  tcase_add_test(idx, idx_other_sizes);
  tcase_add_test(idx, malformed_idx);
  suite_add_tcase(s, idx);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(data_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
