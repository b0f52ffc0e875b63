/* test_rt_safetensors.c: the safetensors reader's validation, with the
 * exact message of each malformed file; writer round trips, the bytes the
 * Python package writes, and atomic writes that fail cleanly. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "modelc_rt.h"

static char dir[64];
static char path[128]; /* dir/t.safetensors: the file each test writes */
static char err[512];

static void setup(void) {
  snprintf(dir, sizeof dir, "/tmp/test_rt_st_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/t.safetensors", dir);
  err[0] = '\0';
}

/* Every test must leave only the files it named: no temporary files. */
static int entries_in_dir(void) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

static void teardown(void) {
  DIR *d = opendir(dir);
  char file[512];
  for (struct dirent *e; (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(file, sizeof file, "%s/%s", dir, e->d_name);
    if (unlink(file) != 0) rmdir(file); /* write_over_a_folder's folder */
  }
  closedir(d);
  rmdir(dir);
}

static void write_bytes(const char *file, const void *bytes, size_t n) {
  FILE *f = fopen(file, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(bytes, 1, n, f), n);
  fclose(f);
}

/* A file of header length n, then `header`, then `data`. */
static void write_raw(uint64_t n, const char *header, size_t header_len, const void *data,
                      size_t data_len) {
  unsigned char *buf = malloc(8 + header_len + data_len + 1);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(n >> (8 * i));
  memcpy(buf + 8, header, header_len);
  if (data_len) memcpy(buf + 8 + header_len, data, data_len);
  write_bytes(path, buf, 8 + header_len + data_len);
  free(buf);
}

static void write_st(const char *header, size_t data_len) {
  unsigned char *data = calloc(data_len + 1, 1);
  write_raw(strlen(header), header, strlen(header), data, data_len);
  free(data);
}

/* Opening `path` fails with "<path>: <message>". */
static void expect_open_error(const char *message) {
  modelc_rt_st_file f;
  char want[1024];
  snprintf(want, sizeof want, "%s: %s", path, message);
  ck_assert_int_eq(modelc_rt_st_open(&f, path, err, sizeof err), -1);
  ck_assert_str_eq(err, want);
  ck_assert_int_eq(f.count, 0);
  ck_assert_ptr_null(f.data);
  modelc_rt_st_close(&f);
}

static void expect_header_error(const char *header, size_t data_len, const char *message) {
  write_st(header, data_len);
  expect_open_error(message);
}

#define F32_2X2 "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}"

/* ---- file-level errors ---- */

START_TEST(empty_and_short_files) {
  write_bytes(path, "", 0);
  expect_open_error("file is 0 bytes, too short for the 8-byte header length");
  write_bytes(path, "\x02\0\0\0\0", 5);
  expect_open_error("file is 5 bytes, too short for the 8-byte header length");
}
END_TEST

START_TEST(header_length_past_end) {
  char header[112];
  memset(header, ' ', sizeof header);
  write_raw(999999, header, sizeof header, NULL, 0);
  expect_open_error("header length 999999 runs past the end of the file (120 bytes)");
  write_raw(113, header, sizeof header, NULL, 0);
  expect_open_error("header length 113 runs past the end of the file (120 bytes)");
}
END_TEST

START_TEST(header_length_over_limit) {
  write_raw(200000000, "{}", 2, NULL, 0);
  expect_open_error("header length 200000000 is over the limit of 100000000 bytes");
  write_raw(UINT64_MAX, "{}", 2, NULL, 0);
  expect_open_error("header length 18446744073709551615 is over the limit of 100000000 bytes");
}
END_TEST

START_TEST(missing_file) {
  modelc_rt_st_file f;
  char want[256];
  snprintf(want, sizeof want, "cannot read '%s/none.safetensors': No such file or directory", dir);
  snprintf(path, sizeof path, "%s/none.safetensors", dir);
  ck_assert_int_eq(modelc_rt_st_open(&f, path, err, sizeof err), -1);
  ck_assert_str_eq(err, want);
  snprintf(want, sizeof want, "cannot read '%s': Is a directory", dir);
  ck_assert_int_eq(modelc_rt_st_open(&f, dir, err, sizeof err), -1);
  ck_assert_str_eq(err, want);
}
END_TEST

/* ---- invalid JSON ---- */

START_TEST(json_missing_colon) {
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\"[0,4]}}", 4,
                      "invalid JSON in header at byte 45: expected ':'");
  expect_header_error("{\"w\" {}}", 0, "invalid JSON in header at byte 5: expected ':'");
}
END_TEST

START_TEST(json_empty_header) {
  expect_header_error("", 0, "invalid JSON in header at byte 0: expected '{'");
  expect_header_error("   ", 0, "invalid JSON in header at byte 3: expected '{'");
  expect_header_error("x", 0, "invalid JSON in header at byte 0: expected '{'");
}
END_TEST

START_TEST(json_trailing_comma) {
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},}", 4,
                      "invalid JSON in header at byte 53: expected a string key");
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,],\"data_offsets\":[0,4]}}", 4,
                      "invalid JSON in header at byte 31: expected a value");
}
END_TEST

START_TEST(json_missing_comma) {
  expect_header_error("{\"w\":{\"dtype\":\"F32\" \"shape\":[],\"data_offsets\":[0,4]}}", 4,
                      "invalid JSON in header at byte 20: expected ',' or '}'");
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1 2],\"data_offsets\":[0,4]}}", 4,
                      "invalid JSON in header at byte 31: expected ',' or ']'");
}
END_TEST

START_TEST(json_unterminated) {
  expect_header_error("{\"w\":{\"dtype\":\"F32", 0,
                      "invalid JSON in header at byte 14: unterminated string");
  expect_header_error("{\"w\":{\"dtype\":\"F32\"", 0,
                      "invalid JSON in header at byte 19: expected ',' or '}'");
  expect_header_error("{\"w\\", 0, "invalid JSON in header at byte 1: unterminated string");
}
END_TEST

START_TEST(json_bad_strings) {
  expect_header_error("{\"a\\x\":{}}", 0,
                      "invalid JSON in header at byte 3: invalid escape in string");
  expect_header_error("{\"a\tb\":{}}", 0,
                      "invalid JSON in header at byte 3: control character in string");
  expect_header_error("{\"a\\u12G4\":{}}", 0,
                      "invalid JSON in header at byte 3: invalid \\u escape");
  expect_header_error("{\"a\\ud800\":{}}", 0,
                      "invalid JSON in header at byte 3: unpaired surrogate in \\u escape");
  expect_header_error("{\"a\\udc00\\ud800\":{}}", 0,
                      "invalid JSON in header at byte 3: unpaired surrogate in \\u escape");
  expect_header_error("{\"a\xff\":{}}", 0,
                      "invalid JSON in header at byte 3: invalid UTF-8 in string");
  expect_header_error("{\"a\xc0\xaf\":{}}", 0,
                      "invalid JSON in header at byte 3: invalid UTF-8 in string"); /* overlong */
  expect_header_error("{\"a\xed\xa0\x80\":{}}", 0,
                      "invalid JSON in header at byte 3: invalid UTF-8 in string"); /* surrogate */
}
END_TEST

START_TEST(json_bad_numbers) {
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4,
                      "invalid JSON in header at byte 29: invalid number (leading zero)");
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[-],\"data_offsets\":[0,4]}}", 4,
                      "invalid JSON in header at byte 29: invalid number");
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.],\"data_offsets\":[0,4]}}", 4,
                      "invalid JSON in header at byte 29: invalid number");
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1e],\"data_offsets\":[0,4]}}", 4,
                      "invalid JSON in header at byte 29: invalid number");
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[+1],\"data_offsets\":[0,4]}}", 4,
                      "invalid JSON in header at byte 29: expected a value");
}
END_TEST

START_TEST(json_trailing_data) {
  expect_header_error("{} x", 0,
                      "invalid JSON in header at byte 3: unexpected data after the header object");
  expect_header_error("{}{}", 0,
                      "invalid JSON in header at byte 2: unexpected data after the header object");
  write_raw(3, "{}\0", 3, NULL, 0);
  expect_open_error("invalid JSON in header at byte 2: unexpected data after the header object");
}
END_TEST

START_TEST(json_not_an_object) {
  expect_header_error("[1, 2]", 0, "header is not a JSON object");
  expect_header_error("\"w\"", 0, "header is not a JSON object");
  expect_header_error("null", 0, "header is not a JSON object");
  expect_header_error("nul", 0, "invalid JSON in header at byte 0: expected '{'");
}
END_TEST

/* Deep nesting is refused at its first bracket: no recursion to exhaust. */
START_TEST(json_nesting_bomb) {
  size_t n = 1 << 20;
  char *h = malloc(2 * n + 64);
  strcpy(h, "{\"__metadata__\":{\"k\":");
  size_t at = strlen(h);
  memset(h + at, '[', n);
  memset(h + at + n, ']', n);
  strcpy(h + at + 2 * n, "}}");
  expect_header_error(h, 0, "__metadata__ must be an object of string values");
  strcpy(h, "{\"w\":");
  at = strlen(h);
  memset(h + at, '[', n);
  memset(h + at + n, ']', n);
  strcpy(h + at + 2 * n, "}");
  expect_header_error(h, 0, "tensor 'w': entry must be an object");
  free(h);
}
END_TEST

/* ---- the schema ---- */

START_TEST(unknown_dtype) {
  expect_header_error(
      "{\"w\":{\"dtype\":\"BOOL\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
      "tensor 'w': unknown dtype 'BOOL' (expected F32, BF16, F16, F64, I32, I64 or U8)");
  expect_header_error(
      "{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
      "tensor 'w': unknown dtype 'f32' (expected F32, BF16, F16, F64, I32, I64 or U8)");
  expect_header_error("{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      "tensor 'w': dtype must be a string");
}
END_TEST

START_TEST(missing_keys) {
  expect_header_error("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      "tensor 'w': missing key 'dtype'");
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4,
                      "tensor 'w': missing key 'shape'");
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4,
                      "tensor 'w': missing key 'data_offsets'");
  expect_header_error("{\"w\":{}}", 0, "tensor 'w': missing key 'dtype'");
}
END_TEST

START_TEST(extra_and_duplicate_keys) {
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"foo\":1}}",
                      4, "tensor 'w': unexpected key 'foo'");
  expect_header_error(
      "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
      "tensor 'w': duplicate key 'dtype'");
  expect_header_error("{\"__metadata__\":{},\"__metadata__\":{}}", 0,
                      "duplicate key '__metadata__'");
}
END_TEST

START_TEST(duplicate_tensors) {
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"v\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12]},"
                      "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                      12, "duplicate tensor 'w'");
  /* the same name spelled with an escape */
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"\\u0077\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                      8, "duplicate tensor 'w'");
}
END_TEST

START_TEST(bad_shapes) {
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
                      "tensor 'w': shape must be an array of non-negative integers");
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8,
                      "tensor 'w': shape must be an array of non-negative integers");
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8,
                      "tensor 'w': shape must be an array of non-negative integers");
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[[2]],\"data_offsets\":[0,8]}}", 8,
                      "tensor 'w': shape must be an array of non-negative integers");
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}", 8,
                      "tensor 'w': shape must be an array of non-negative integers");
  expect_header_error(
      "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
      "tensor 'w': shape has more than 8 dimensions");
  expect_header_error(
      "{\"w\":{\"dtype\":\"F32\",\"shape\":[9223372036854775808],\"data_offsets\":[0,4]}}", 4,
      "tensor 'w': shape value 9223372036854775808 is too large");
  expect_header_error(
      "{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,0]"
      "}}",
      0, "tensor 'w': U8 [4294967296,4294967296,4294967296] has too many bytes to address");
}
END_TEST

START_TEST(rank_eight_and_negative_zero_are_fine) {
  write_st("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,-0],\"data_offsets\":[0,0]}}", 0);
  modelc_rt_st_file f;
  ck_assert_int_eq(modelc_rt_st_open(&f, path, err, sizeof err), 0);
  ck_assert_int_eq(f.tensors[0].rank, 8);
  ck_assert_int_eq(f.tensors[0].shape[7], 0);
  modelc_rt_st_close(&f);
}
END_TEST

START_TEST(bad_offsets) {
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8,
                      "tensor 'w': data_offsets must be an array of two non-negative integers");
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 8,
                      "tensor 'w': data_offsets must be an array of two non-negative integers");
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8,
                      "tensor 'w': data_offsets must be an array of two non-negative integers");
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"a\":1}}}", 8,
                      "tensor 'w': data_offsets must be an array of two non-negative integers");
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
                      "tensor 'w': data_offsets [8, 4] end before they begin");
}
END_TEST

START_TEST(offsets_past_end) {
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 8,
                      "tensor 'w': data_offsets [4, 12] run past the end of the data (8 bytes)");
  /* 2^63 + 4 - 2^63 = 4 bytes: only the range check catches it */
  expect_header_error(
      "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],"
      "\"data_offsets\":[9223372036854775808,9223372036854775812]}}",
      8,
      "tensor 'w': data_offsets [9223372036854775808, 9223372036854775812] run past "
      "the end of the data (8 bytes)");
  expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],"
                      "\"data_offsets\":[18446744073709551612,18446744073709551616]}}",
                      8, "tensor 'w': data_offsets value 18446744073709551616 is too large");
}
END_TEST

START_TEST(wrong_byte_count) {
  expect_header_error(
      "{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 16,
      "tensor 'fc.weight': data_offsets [0, 12] hold 12 bytes but F32 [2,2] needs 16");
  expect_header_error("{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,4]}}", 16,
                      "tensor 's': data_offsets [0, 4] hold 4 bytes but F64 [] needs 8");
  expect_header_error("{\"e\":{\"dtype\":\"BF16\",\"shape\":[3,0],\"data_offsets\":[0,2]}}", 16,
                      "tensor 'e': data_offsets [0, 2] hold 2 bytes but BF16 [3,0] needs 0");
}
END_TEST

START_TEST(overlapping_ranges) {
  expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                      24, "tensors 'a' and 'b' overlap: data_offsets [0, 16] and [8, 24]");
  /* listed out of order; an empty tensor inside another's range is fine */
  expect_header_error("{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]},"
                      "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                      24, "tensors 'a' and 'b' overlap: data_offsets [0, 16] and [12, 20]");
  expect_header_error("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                      "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                      4, "tensors 'a' and 'b' overlap: data_offsets [0, 4] and [0, 4]");
}
END_TEST

START_TEST(bad_metadata_and_entries) {
  expect_header_error("{\"__metadata__\":{\"format\":\"pt\",\"n\":3}}", 0,
                      "__metadata__ must be an object of string values");
  expect_header_error("{\"__metadata__\":[]}", 0,
                      "__metadata__ must be an object of string values");
  expect_header_error("{\"w\":[1]}", 0, "tensor 'w': entry must be an object");
  expect_header_error("{\"w\":\"F32\"}", 0, "tensor 'w': entry must be an object");
  expect_header_error("{\"a\\u0000b\":{}}", 0, "tensor 'a...' has a NUL character in its name");
}
END_TEST

/* Unordered ranges, gaps, metadata, escapes, empty and scalar tensors,
 * NaN data: all accepted. */
START_TEST(lenient_where_valid) {
  const char *h = " {\"__metadata__\":{\"format\":\"pt\",\"k\\n\":\"\\u00e9\\ud83d\\ude00\"},\r\n"
                  "\"b\":{\"data_offsets\":[12,20],\"shape\":[2],\"dtype\":\"F32\"},\t"
                  "\"a\\\"\\u00e9\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                  "\"z\":{\"dtype\":\"U8\",\"shape\":[0,5],\"data_offsets\":[20,20]}}   ";
  float data[5] = {1.5f, 0, 0, NAN, -INFINITY};
  write_raw(strlen(h), h, strlen(h), data, sizeof data);
  modelc_rt_st_file f;
  ck_assert_int_eq(modelc_rt_st_open(&f, path, err, sizeof err), 0);
  ck_assert_int_eq(f.count, 3);
  ck_assert_str_eq(f.tensors[0].name, "b");
  ck_assert_str_eq(f.tensors[1].name, "a\"\xc3\xa9");
  ck_assert_int_eq(f.tensors[1].rank, 0);
  ck_assert_uint_eq(f.data_start, 8 + strlen(h));
  ck_assert_uint_eq(f.tensors[0].offset, f.data_start + 12);
  ck_assert_uint_eq(f.tensors[0].nbytes, 8);
  const modelc_rt_st_tensor *b = modelc_rt_st_find(&f, "b");
  ck_assert_ptr_eq(b, &f.tensors[0]);
  ck_assert_ptr_null(modelc_rt_st_find(&f, "c"));
  float out[2];
  ck_assert_int_eq(modelc_rt_st_read_real(&f, b, 0, 2, out, err, sizeof err), 0);
  ck_assert(isnan(out[0]) && isinf(out[1]) && out[1] < 0);
  ck_assert_int_eq(modelc_rt_st_read_real(&f, &f.tensors[1], 0, 1, out, err, sizeof err), 0);
  ck_assert_float_eq(out[0], 1.5f);
  modelc_rt_st_close(&f);
  ck_assert_int_eq(f.count, 0);
  modelc_rt_st_close(&f); /* twice is harmless */
}
END_TEST

START_TEST(empty_file_set) {
  write_st("{}", 0);
  modelc_rt_st_file f;
  ck_assert_int_eq(modelc_rt_st_open(&f, path, err, sizeof err), 0);
  ck_assert_int_eq(f.count, 0);
  modelc_rt_st_close(&f);
}
END_TEST

/* ---- reading ---- */

START_TEST(read_conversions_and_ranges) {
  /* I64 [3]: 1, -2^31, 2^31; F32 [2,2]; U8 [2] */
  int64_t i64[3] = {1, INT32_MIN, (int64_t)INT32_MAX + 1};
  float f32[4] = {1, 2, 3, 4};
  uint8_t u8[2] = {0, 255};
  int64_t s3[1] = {3}, s22[2] = {2, 2}, s2[1] = {2};
  modelc_rt_st_entry e[3] = {{"big", MODELC_RT_I64, 1, s3, i64},
                             {"m", MODELC_RT_F32, 2, s22, f32},
                             {"u", MODELC_RT_U8, 1, s2, u8}};
  ck_assert_int_eq(modelc_rt_st_write(path, e, 3, err, sizeof err), 0);
  modelc_rt_st_file f;
  ck_assert_int_eq(modelc_rt_st_open(&f, path, err, sizeof err), 0);
  const modelc_rt_st_tensor *big = modelc_rt_st_find(&f, "big"), *m = modelc_rt_st_find(&f, "m"),
                            *u = modelc_rt_st_find(&f, "u");
  int32_t iv[4];
  float fv[4];
  char want[512];
  ck_assert_int_eq(modelc_rt_st_read_i32(&f, big, 0, 2, iv, err, sizeof err), 0);
  ck_assert_int_eq(iv[0], 1);
  ck_assert_int_eq(iv[1], INT32_MIN);
  snprintf(want, sizeof want, "%s: tensor 'big': element 2 is 2147483648, outside the int32 range",
           path);
  ck_assert_int_eq(modelc_rt_st_read_i32(&f, big, 1, 2, iv, err, sizeof err), -1);
  ck_assert_str_eq(err, want);
  ck_assert_int_eq(modelc_rt_st_read_i32(&f, u, 0, 2, iv, err, sizeof err), 0);
  ck_assert_int_eq(iv[1], 255);
  /* a slice of the first dimension */
  ck_assert_int_eq(modelc_rt_st_read_real(&f, m, 2, 2, fv, err, sizeof err), 0);
  ck_assert_float_eq(fv[0], 3.0f);
  ck_assert_float_eq(fv[1], 4.0f);
  ck_assert_int_eq(modelc_rt_st_read_real(&f, m, 4, 0, fv, err, sizeof err), 0);
  snprintf(want, sizeof want, "%s: tensor 'm': cannot read elements [3, 5) of its 4", path);
  ck_assert_int_eq(modelc_rt_st_read_real(&f, m, 3, 2, fv, err, sizeof err), -1);
  ck_assert_str_eq(err, want);
  snprintf(want, sizeof want, "%s: tensor 'm': cannot read elements [-1, 1) of its 4", path);
  ck_assert_int_eq(modelc_rt_st_read_real(&f, m, -1, 2, fv, err, sizeof err), -1);
  ck_assert_str_eq(err, want);
  ck_assert_int_eq(modelc_rt_st_read_real(&f, m, 0, INT64_MAX, fv, err, sizeof err), -1);
  snprintf(want, sizeof want, "%s: tensor 'm' is F32, not an integer dtype (I32, I64, U8)", path);
  ck_assert_int_eq(modelc_rt_st_read_i32(&f, m, 0, 4, iv, err, sizeof err), -1);
  ck_assert_str_eq(err, want);
  snprintf(want, sizeof want,
           "%s: tensor 'u' is U8, not a floating-point dtype (F32, BF16, F16, F64)", path);
  ck_assert_int_eq(modelc_rt_st_read_real(&f, u, 0, 2, fv, err, sizeof err), -1);
  ck_assert_str_eq(err, want);
  modelc_rt_st_close(&f);
}
END_TEST

/* ---- writing ---- */

/* Every dtype written and read back: same shapes, same bytes, and the
 * conversions to f32 and i32. */
START_TEST(round_trip_every_dtype) {
  float f32[3] = {1.0f, -2.5f, 3.25f};
  uint16_t bf16[3] = {0x3f80, 0xc020, 0x7fc0};        /* 1, -2.5, nan */
  uint16_t f16[4] = {0x3c00, 0xc100, 0x0001, 0x7c00}; /* 1, -2.5, 2^-24, inf */
  double f64[2] = {0.1, -1e300};
  int32_t i32[2] = {-7, 123456};
  int64_t i64[2] = {-9, 2147483647};
  uint8_t u8[5] = {0, 1, 2, 254, 255};
  int64_t s3[1] = {3}, s4[2] = {2, 2}, s21[2] = {2, 1}, s5[3] = {5, 1, 1};
  modelc_rt_st_entry e[8] = {
      {"u8", MODELC_RT_U8, 3, s5, u8},       {"f32", MODELC_RT_F32, 1, s3, f32},
      {"bf16", MODELC_RT_BF16, 1, s3, bf16}, {"f16", MODELC_RT_F16, 2, s4, f16},
      {"f64", MODELC_RT_F64, 2, s21, f64},   {"i32", MODELC_RT_I32, 1, s21, i32},
      {"i64", MODELC_RT_I64, 1, s21, i64},   {"scalar", MODELC_RT_F32, 0, NULL, f32},
  };
  ck_assert_int_eq(modelc_rt_st_write(path, e, 8, err, sizeof err), 0);
  ck_assert_int_eq(entries_in_dir(), 1);
  modelc_rt_st_file f;
  ck_assert_int_eq(modelc_rt_st_open(&f, path, err, sizeof err), 0);
  ck_assert_int_eq(f.count, 8);
  for (int i = 0; i < 8; i++) {
    const modelc_rt_st_tensor *t = modelc_rt_st_find(&f, e[i].name);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, e[i].dtype);
    ck_assert_int_eq(t->rank, e[i].rank);
    for (int d = 0; d < t->rank; d++) ck_assert_int_eq(t->shape[d], e[i].shape[d]);
    ck_assert_uint_eq(t->offset % modelc_rt_dtype_size(t->dtype), 0); /* aligned */
    ck_assert_int_eq(memcmp(f.data + t->offset, e[i].data, t->nbytes), 0);
  }
  float fv[5];
  int32_t iv[5];
  ck_assert_int_eq(
      modelc_rt_st_read_real(&f, modelc_rt_st_find(&f, "bf16"), 0, 3, fv, err, sizeof err), 0);
  ck_assert(fv[0] == 1.0f && fv[1] == -2.5f && isnan(fv[2]));
  ck_assert_int_eq(
      modelc_rt_st_read_real(&f, modelc_rt_st_find(&f, "f16"), 0, 4, fv, err, sizeof err), 0);
  ck_assert(fv[0] == 1.0f && fv[1] == -2.5f && fv[2] == ldexpf(1.0f, -24) && isinf(fv[3]));
  ck_assert_int_eq(
      modelc_rt_st_read_real(&f, modelc_rt_st_find(&f, "f64"), 0, 2, fv, err, sizeof err), 0);
  ck_assert(fv[0] == 0.1f && isinf(fv[1]) && fv[1] < 0);
  ck_assert_int_eq(
      modelc_rt_st_read_real(&f, modelc_rt_st_find(&f, "scalar"), 0, 1, fv, err, sizeof err), 0);
  ck_assert(fv[0] == 1.0f);
  ck_assert_int_eq(
      modelc_rt_st_read_i32(&f, modelc_rt_st_find(&f, "i64"), 0, 2, iv, err, sizeof err), 0);
  ck_assert(iv[0] == -9 && iv[1] == 2147483647);
  ck_assert_int_eq(
      modelc_rt_st_read_i32(&f, modelc_rt_st_find(&f, "i32"), 0, 2, iv, err, sizeof err), 0);
  ck_assert(iv[0] == -7 && iv[1] == 123456);
  ck_assert_int_eq(
      modelc_rt_st_read_i32(&f, modelc_rt_st_find(&f, "u8"), 0, 5, iv, err, sizeof err), 0);
  ck_assert(iv[0] == 0 && iv[3] == 254 && iv[4] == 255);
  modelc_rt_st_close(&f);
}
END_TEST

/* The exact bytes safetensors 0.8.0 writes: produced by
 *   from safetensors.torch import save
 *   save({'b': tensor([1,2,3], uint8), 'a': tensor([1.0,-2.5]), 'c': tensor([1.0], float16),
 *         'd': tensor([-5], int64), 'e': tensor(0.5, float64), 'f': tensor([[7],[-8]], int32),
 *         'g': zeros(0, bfloat16), 'h': tensor([1.0,-0.5], bfloat16),
 *         'i"\\\n\t\x01\u00e9': tensor([3.0])})
 * (header length 512, then the header, then the data printed in hex). */
START_TEST(same_bytes_as_python) {
  static const char header[] = "{\"d\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                               "\"e\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[8,16]},"
                               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]},"
                               "\"i\\\"\\\\\\n\\t\\u0001\xc3\xa9\":{\"dtype\":\"F32\",\"shape\":[1]"
                               ",\"data_offsets\":[24,28]},"
                               "\"f\":{\"dtype\":\"I32\",\"shape\":[2,1],\"data_offsets\":[28,36]},"
                               "\"g\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[36,36]},"
                               "\"h\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[36,40]},"
                               "\"c\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[40,42]},"
                               "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[42,45]}}";
  static const char data_hex[] = "fbffffffffffffff000000000000e03f0000803f000020c00000404007000000"
                                 "f8ffffff803f00bf003c010203";
  uint8_t b[3] = {1, 2, 3};
  float a[2] = {1.0f, -2.5f}, i[1] = {3.0f};
  uint16_t c[1] = {0x3c00}, h[2] = {0x3f80, 0xbf00};
  int64_t d[1] = {-5};
  double e_[1] = {0.5};
  int32_t f_[2] = {7, -8};
  int64_t s1[1] = {1}, s2[1] = {2}, s3[1] = {3}, s0[1] = {0}, s21[2] = {2, 1};
  modelc_rt_st_entry e[9] = {
      {"b", MODELC_RT_U8, 1, s3, b},
      {"a", MODELC_RT_F32, 1, s2, a},
      {"c", MODELC_RT_F16, 1, s1, c},
      {"d", MODELC_RT_I64, 1, s1, d},
      {"e", MODELC_RT_F64, 0, NULL, e_},
      {"f", MODELC_RT_I32, 2, s21, f_},
      {"g", MODELC_RT_BF16, 1, s0, NULL},
      {"h", MODELC_RT_BF16, 1, s2, h},
      {"i\"\\\n\t\x01\xc3\xa9", MODELC_RT_F32, 1, s1, i},
  };
  ck_assert_int_eq(modelc_rt_st_write(path, e, 9, err, sizeof err), 0);
  unsigned char *bytes;
  size_t size;
  ck_assert_int_eq(modelc_rt_read_file(path, &bytes, &size, err, sizeof err), 0);
  size_t hl = strlen(header), dl = strlen(data_hex) / 2;
  ck_assert_uint_eq(size, 8 + 512 + dl);
  ck_assert_int_eq(bytes[0], 0);
  ck_assert_int_eq(bytes[1], 2); /* 512 little-endian */
  ck_assert_int_eq(memcmp(bytes + 8, header, hl), 0);
  for (size_t k = hl; k < 512; k++) ck_assert_int_eq(bytes[8 + k], ' ');
  for (size_t k = 0; k < dl; k++) {
    unsigned v;
    sscanf(data_hex + 2 * k, "%2x", &v);
    ck_assert_uint_eq(bytes[8 + 512 + k], v);
  }
  free(bytes);
}
END_TEST

START_TEST(empty_write) {
  ck_assert_int_eq(modelc_rt_st_write(path, NULL, 0, err, sizeof err), 0);
  unsigned char *bytes;
  size_t size;
  ck_assert_int_eq(modelc_rt_read_file(path, &bytes, &size, err, sizeof err), 0);
  ck_assert_uint_eq(size, 16);
  ck_assert_int_eq(memcmp(bytes, "\x08\0\0\0\0\0\0\0{}      ", 16), 0);
  free(bytes);
}
END_TEST

static void expect_write_error(const modelc_rt_st_entry *e, int n, const char *message) {
  char want[512];
  snprintf(want, sizeof want, "cannot write '%s': %s", path, message);
  ck_assert_int_eq(modelc_rt_st_write(path, e, n, err, sizeof err), -1);
  ck_assert_str_eq(err, want);
  ck_assert_int_eq(entries_in_dir(), 0);
}

START_TEST(write_rejects_bad_entries) {
  float x[4] = {0};
  int64_t s1[1] = {1}, neg[1] = {-1}, s9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  int64_t huge[3] = {INT64_MAX, INT64_MAX, 2};
  modelc_rt_st_entry dup[2] = {{"w", MODELC_RT_F32, 1, s1, x}, {"w", MODELC_RT_U8, 1, s1, x}};
  expect_write_error(dup, 2, "duplicate tensor 'w'");
  modelc_rt_st_entry e = {"w", MODELC_RT_F32, 1, neg, x};
  expect_write_error(&e, 1, "tensor 'w' has a negative dimension");
  e = (modelc_rt_st_entry){"w", MODELC_RT_F32, 9, s9, x};
  expect_write_error(&e, 1, "tensor 'w' has rank 9 (0 to 8 allowed)");
  e = (modelc_rt_st_entry){"w", MODELC_RT_F32, 3, huge, x};
  expect_write_error(&e, 1, "tensor 'w' is too large");
  e = (modelc_rt_st_entry){"w", MODELC_RT_F32, 1, s1, NULL};
  expect_write_error(&e, 1, "tensor 'w' has no data");
  e = (modelc_rt_st_entry){"w", (modelc_rt_dtype)9, 1, s1, x};
  expect_write_error(&e, 1, "tensor 'w' has an invalid dtype (9)");
  e = (modelc_rt_st_entry){"__metadata__", MODELC_RT_F32, 1, s1, x};
  expect_write_error(&e, 1, "'__metadata__' is not a valid tensor name");
  e = (modelc_rt_st_entry){"\xff", MODELC_RT_F32, 1, s1, x};
  expect_write_error(&e, 1, "'\xff' is not a valid tensor name");
  e = (modelc_rt_st_entry){NULL, MODELC_RT_F32, 1, s1, x};
  expect_write_error(&e, 1, "entry 0 has no name");
}
END_TEST

/* An existing file is replaced whole, and only on success. */
static const float old_data[2] = {7.0f, 8.0f};

static void write_old(void) {
  int64_t s2[1] = {2};
  modelc_rt_st_entry e = {"old", MODELC_RT_F32, 1, s2, old_data};
  ck_assert_int_eq(modelc_rt_st_write(path, &e, 1, err, sizeof err), 0);
}

static void expect_old(void) {
  modelc_rt_st_file f;
  float v[2];
  ck_assert_int_eq(modelc_rt_st_open(&f, path, err, sizeof err), 0);
  ck_assert_int_eq(f.count, 1);
  ck_assert_int_eq(
      modelc_rt_st_read_real(&f, modelc_rt_st_find(&f, "old"), 0, 2, v, err, sizeof err), 0);
  ck_assert(v[0] == 7.0f && v[1] == 8.0f);
  modelc_rt_st_close(&f);
  ck_assert_int_eq(entries_in_dir(), 1);
}

START_TEST(overwrite_replaces) {
  write_old();
  expect_old();
  int64_t s1[1] = {1};
  modelc_rt_st_entry e = {"new", MODELC_RT_F32, 1, s1, old_data};
  ck_assert_int_eq(modelc_rt_st_write(path, &e, 1, err, sizeof err), 0);
  modelc_rt_st_file f;
  ck_assert_int_eq(modelc_rt_st_open(&f, path, err, sizeof err), 0);
  ck_assert_ptr_null(modelc_rt_st_find(&f, "old"));
  ck_assert_ptr_nonnull(modelc_rt_st_find(&f, "new"));
  modelc_rt_st_close(&f);
  ck_assert_int_eq(entries_in_dir(), 1);
}
END_TEST

START_TEST(write_into_missing_folder) {
  char missing[160], want[256];
  snprintf(missing, sizeof missing, "%s/nope/w.safetensors", dir);
  int64_t s1[1] = {1};
  modelc_rt_st_entry e = {"w", MODELC_RT_F32, 1, s1, old_data};
  snprintf(want, sizeof want, "cannot write '%s': No such file or directory", missing);
  ck_assert_int_eq(modelc_rt_st_write(missing, &e, 1, err, sizeof err), -1);
  ck_assert_str_eq(err, want);
  ck_assert_int_eq(entries_in_dir(), 0);
}
END_TEST

START_TEST(write_into_read_only_folder) {
  if (geteuid() == 0) return; /* root writes anyway */
  write_old();
  ck_assert_int_eq(chmod(dir, 0555), 0);
  int64_t s1[1] = {1};
  modelc_rt_st_entry e = {"w", MODELC_RT_F32, 1, s1, old_data};
  char want[256];
  snprintf(want, sizeof want, "cannot write '%s': Permission denied", path);
  int rc = modelc_rt_st_write(path, &e, 1, err, sizeof err);
  chmod(dir, 0755);
  ck_assert_int_eq(rc, -1);
  ck_assert_str_eq(err, want);
  expect_old();
}
END_TEST

/* A write that runs out of room (here the file-size limit: EFBIG, as a
 * full disk gives ENOSPC) leaves the old file and no temporary. */
START_TEST(write_past_file_size_limit) {
  write_old();
  struct rlimit saved, small;
  ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
  void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
  small = saved;
  small.rlim_cur = 4096;
  ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
  float *big = calloc(4096, sizeof *big);
  int64_t s[1] = {4096};
  modelc_rt_st_entry e = {"big", MODELC_RT_F32, 1, s, big};
  int rc = modelc_rt_st_write(path, &e, 1, err, sizeof err);
  setrlimit(RLIMIT_FSIZE, &saved);
  signal(SIGXFSZ, old_handler);
  free(big);
  char want[256];
  snprintf(want, sizeof want, "cannot write '%s': %s", path, strerror(EFBIG));
  ck_assert_int_eq(rc, -1);
  ck_assert_str_eq(err, want);
  expect_old();
}
END_TEST

START_TEST(write_over_a_folder) {
  char sub[160], want[256];
  snprintf(sub, sizeof sub, "%s/sub", dir);
  ck_assert_int_eq(mkdir(sub, 0755), 0);
  int64_t s1[1] = {1};
  modelc_rt_st_entry e = {"w", MODELC_RT_F32, 1, s1, old_data};
  snprintf(want, sizeof want, "cannot write '%s': %s", sub, strerror(EISDIR));
  ck_assert_int_eq(modelc_rt_st_write(sub, &e, 1, err, sizeof err), -1);
  ck_assert_str_eq(err, want);
  ck_assert_int_eq(entries_in_dir(), 1); /* the folder, no temporary */
}
END_TEST

START_TEST(error_buffer_optional) {
  write_bytes(path, "", 0);
  modelc_rt_st_file f;
  ck_assert_int_eq(modelc_rt_st_open(&f, path, NULL, 0), -1);
  char tiny[8];
  ck_assert_int_eq(modelc_rt_st_open(&f, path, tiny, sizeof tiny), -1);
  ck_assert_uint_eq(strlen(tiny), 7);
}
END_TEST

static Suite *safetensors_suite(void) {
  Suite *s = suite_create("rt_safetensors");
  TCase *file = tcase_create("file");
  tcase_add_checked_fixture(file, setup, teardown);
  tcase_add_test(file, empty_and_short_files);
  tcase_add_test(file, header_length_past_end);
  tcase_add_test(file, header_length_over_limit);
  tcase_add_test(file, missing_file);
  tcase_add_test(file, error_buffer_optional);
  suite_add_tcase(s, file);
  TCase *json = tcase_create("json");
  tcase_add_checked_fixture(json, setup, teardown);
  tcase_add_test(json, json_missing_colon);
  tcase_add_test(json, json_empty_header);
  tcase_add_test(json, json_trailing_comma);
  tcase_add_test(json, json_missing_comma);
  tcase_add_test(json, json_unterminated);
  tcase_add_test(json, json_bad_strings);
  tcase_add_test(json, json_bad_numbers);
  tcase_add_test(json, json_trailing_data);
  tcase_add_test(json, json_not_an_object);
  tcase_add_test(json, json_nesting_bomb);
  suite_add_tcase(s, json);
  TCase *schema = tcase_create("schema");
  tcase_add_checked_fixture(schema, setup, teardown);
  tcase_add_test(schema, unknown_dtype);
  tcase_add_test(schema, missing_keys);
  tcase_add_test(schema, extra_and_duplicate_keys);
  tcase_add_test(schema, duplicate_tensors);
  tcase_add_test(schema, bad_shapes);
  tcase_add_test(schema, rank_eight_and_negative_zero_are_fine);
  tcase_add_test(schema, bad_offsets);
  tcase_add_test(schema, offsets_past_end);
  tcase_add_test(schema, wrong_byte_count);
  tcase_add_test(schema, overlapping_ranges);
  tcase_add_test(schema, bad_metadata_and_entries);
  tcase_add_test(schema, lenient_where_valid);
  tcase_add_test(schema, empty_file_set);
  suite_add_tcase(s, schema);
  TCase *io = tcase_create("read_write");
  tcase_add_checked_fixture(io, setup, teardown);
  tcase_add_test(io, read_conversions_and_ranges);
  tcase_add_test(io, round_trip_every_dtype);
  tcase_add_test(io, same_bytes_as_python);
  tcase_add_test(io, empty_write);
  tcase_add_test(io, write_rejects_bad_entries);
  tcase_add_test(io, overwrite_replaces);
  tcase_add_test(io, write_into_missing_folder);
  tcase_add_test(io, write_into_read_only_folder);
  tcase_add_test(io, write_past_file_size_limit);
  tcase_add_test(io, write_over_a_folder);
  suite_add_tcase(s, io);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(safetensors_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
