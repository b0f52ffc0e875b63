/* test_rt_random.c: the counter-based RNG: pinned values (a change would
 * silently change every initialisation), determinism, independence of
 * streams, the distributions of the fills and the dropout rate. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "modelc_rt.h"

enum { BIG = 1000000 };

static double mean_of(const float *x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += x[i];
  return s / (double)n;
}

/* The n-th central moment. */
static double moment_of(const float *x, int64_t n, double mean, int k) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += pow(x[i] - mean, k);
  return s / (double)n;
}

START_TEST(pinned_values) {
  ck_assert_uint_eq(modelc_rt_hash(0, 0, 0), 0xa02f6185e7c277deull);
  ck_assert_uint_eq(modelc_rt_hash(0, 0, 1), 0x1d27730456c5ebf9ull);
  ck_assert_uint_eq(modelc_rt_hash(1, 0, 0), 0xffc2205540f0be14ull);
  ck_assert_uint_eq(modelc_rt_hash(0, 1, 0), 0xaeeb536ec3111290ull);
  ck_assert_float_eq(modelc_rt_uniform(42, 7, 3), 0.576048493f);
  float x[4];
  modelc_rt_fill_normal(x, 4, 0.0f, 1.0f, 42, 7);
  ck_assert_float_eq(x[0], 0.538496912f);
  ck_assert_float_eq(x[1], -0.37650913f);
  ck_assert_float_eq(x[2], 1.82743227f);
  ck_assert_float_eq(x[3], -1.17241669f);
}
END_TEST

/* Box-Muller of the uniforms at 2i and 2i + 1, computed here in double. */
START_TEST(normal_is_box_muller_of_uniforms) {
  float x[64];
  modelc_rt_fill_normal(x, 64, 0.0f, 1.0f, 5, 9);
  for (int i = 0; i < 64; i++) {
    double u1 = 1.0 - modelc_rt_uniform(5, 9, 2 * (uint64_t)i);
    double u2 = modelc_rt_uniform(5, 9, 2 * (uint64_t)i + 1);
    ck_assert_float_eq(x[i],
                       (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2)));
  }
}
END_TEST

START_TEST(deterministic_and_parallel_safe) {
  float *a = malloc(BIG * sizeof *a), *b = malloc(BIG * sizeof *b), small[1000];
  modelc_rt_fill_normal(a, BIG, 0.0f, 1.0f, 3, 1);
  modelc_rt_fill_normal(b, BIG, 0.0f, 1.0f, 3, 1);
  ck_assert_int_eq(memcmp(a, b, BIG * sizeof *a), 0);
  /* a prefix filled alone (no threads) holds the same values */
  modelc_rt_fill_normal(small, 1000, 0.0f, 1.0f, 3, 1);
  ck_assert_int_eq(memcmp(a, small, sizeof small), 0);
  modelc_rt_dropout_mask(a, BIG, 0.3f, 3, 1);
  modelc_rt_dropout_mask(small, 1000, 0.3f, 3, 1);
  ck_assert_int_eq(memcmp(a, small, sizeof small), 0);
  free(a);
  free(b);
}
END_TEST

/* Each of seed, stream and index changes the value; within a stream the
 * hash is a bijection of the index, so no two indices collide. */
static int compare_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

START_TEST(inputs_all_matter) {
  uint64_t h = modelc_rt_hash(10, 20, 30);
  ck_assert_uint_ne(h, modelc_rt_hash(11, 20, 30));
  ck_assert_uint_ne(h, modelc_rt_hash(10, 21, 30));
  ck_assert_uint_ne(h, modelc_rt_hash(10, 20, 31));
  ck_assert_uint_ne(modelc_rt_hash(1, 2, 3), modelc_rt_hash(2, 1, 3)); /* no symmetry */
  ck_assert_uint_ne(modelc_rt_hash(0, 1, 0), modelc_rt_hash(0, 0, 1));
  enum { M = 100000 };
  uint64_t *v = malloc(M * sizeof *v);
  for (int i = 0; i < M; i++) v[i] = modelc_rt_hash(7, 0, (uint64_t)i);
  qsort(v, M, sizeof *v, compare_u64);
  for (int i = 1; i < M; i++) ck_assert_uint_ne(v[i - 1], v[i]);
  /* avalanche: flipping one index bit flips about half the output bits */
  double flipped = 0;
  for (int i = 0; i < 1000; i++)
    for (int bit = 0; bit < 64; bit++) {
      uint64_t d =
          modelc_rt_hash(7, 3, (uint64_t)i) ^ modelc_rt_hash(7, 3, (uint64_t)i ^ (1ull << bit));
      for (; d; d &= d - 1) flipped++;
    }
  ck_assert_double_eq_tol(flipped / (1000.0 * 64 * 64), 0.5, 0.01);
  free(v);
}
END_TEST

START_TEST(uniform_range_and_moments) {
  float *x = malloc(BIG * sizeof *x);
  int bad = 0; /* counted, not asserted one by one: each check assertion writes to a pipe */
  for (int i = 0; i < BIG; i++) {
    x[i] = modelc_rt_uniform(1, 2, (uint64_t)i);
    bad += !(x[i] >= 0.0f && x[i] < 1.0f);
    bad += x[i] * 16777216.0f != floorf(x[i] * 16777216.0f); /* 24 bits */
  }
  ck_assert_int_eq(bad, 0);
  double m = mean_of(x, BIG);
  ck_assert_double_eq_tol(m, 0.5, 0.002);
  ck_assert_double_eq_tol(moment_of(x, BIG, m, 2), 1.0 / 12, 0.001);
  /* ten bins, each within 2% of a tenth */
  int bins[10] = {0};
  for (int i = 0; i < BIG; i++) bins[(int)(x[i] * 10)]++;
  for (int b = 0; b < 10; b++) ck_assert_int_lt(abs(bins[b] - BIG / 10), BIG / 500);
  modelc_rt_fill_uniform(x, BIG, -3.0f, 5.0f, 1, 2);
  float lo = x[0], hi = x[0];
  for (int i = 0; i < BIG; i++) lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
  ck_assert(lo >= -3.0f && lo < -2.99f && hi < 5.0f && hi > 4.99f);
  ck_assert_double_eq_tol(mean_of(x, BIG), 1.0, 0.02);
  modelc_rt_fill_uniform(x, 10, 2.0f, 2.0f, 1, 2);
  ck_assert_float_eq(x[9], 2.0f);
  free(x);
}
END_TEST

START_TEST(normal_moments) {
  float *x = malloc(BIG * sizeof *x);
  modelc_rt_fill_normal(x, BIG, 0.0f, 1.0f, 123, 0);
  double m = mean_of(x, BIG), var = moment_of(x, BIG, m, 2);
  ck_assert_double_eq_tol(m, 0.0, 0.005); /* 5 standard errors */
  ck_assert_double_eq_tol(sqrt(var), 1.0, 0.005);
  ck_assert_double_eq_tol(moment_of(x, BIG, m, 3), 0.0, 0.02);
  ck_assert_double_eq_tol(moment_of(x, BIG, m, 4) / (var * var), 3.0, 0.03);
  int within1 = 0, within2 = 0;
  for (int i = 0; i < BIG; i++) {
    within1 += fabsf(x[i]) < 1.0f;
    within2 += fabsf(x[i]) < 2.0f;
  }
  ck_assert_double_eq_tol(within1 / (double)BIG, 0.682689, 0.003);
  ck_assert_double_eq_tol(within2 / (double)BIG, 0.954500, 0.002);
  modelc_rt_fill_normal(x, BIG, 2.0f, 0.02f, 123, 1);
  m = mean_of(x, BIG);
  ck_assert_double_eq_tol(m, 2.0, 0.0001);
  ck_assert_double_eq_tol(sqrt(moment_of(x, BIG, m, 2)), 0.02, 0.0001);
  free(x);
}
END_TEST

/* Streams (and seeds) give uncorrelated sequences. */
static double correlation(const float *a, const float *b, int64_t n) {
  double ma = mean_of(a, n), mb = mean_of(b, n), sab = 0, saa = 0, sbb = 0;
  for (int64_t i = 0; i < n; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return sab / sqrt(saa * sbb);
}

START_TEST(streams_are_independent) {
  float *a = malloc(BIG * sizeof *a), *b = malloc(BIG * sizeof *b);
  modelc_rt_fill_normal(a, BIG, 0.0f, 1.0f, 9, 0);
  modelc_rt_fill_normal(b, BIG, 0.0f, 1.0f, 9, 1);
  ck_assert_double_lt(fabs(correlation(a, b, BIG)), 0.005);
  modelc_rt_fill_normal(b, BIG, 0.0f, 1.0f, 10, 0);
  ck_assert_double_lt(fabs(correlation(a, b, BIG)), 0.005);
  /* neighbours within one stream */
  ck_assert_double_lt(fabs(correlation(a, a + 1, BIG - 1)), 0.005);
  int same = 0;
  for (int i = 0; i < BIG; i++) same += a[i] == b[i];
  ck_assert_int_lt(same, 10);
  free(a);
  free(b);
}
END_TEST

START_TEST(dropout_rate) {
  float *mask = malloc(BIG * sizeof *mask);
  const float ps[3] = {0.1f, 0.5f, 0.9f};
  for (int k = 0; k < 3; k++) {
    modelc_rt_dropout_mask(mask, BIG, ps[k], 77, (uint64_t)k);
    int zeros = 0, bad = 0;
    for (int i = 0; i < BIG; i++) {
      if (mask[i] == 0.0f)
        zeros++;
      else
        bad += mask[i] != 1.0f / (1.0f - ps[k]);
    }
    ck_assert_int_eq(bad, 0);
    ck_assert_double_eq_tol(zeros / (double)BIG, ps[k], 0.002);
    ck_assert_double_eq_tol(mean_of(mask, BIG), 1.0, 0.01); /* inverted dropout keeps the mean */
  }
  modelc_rt_dropout_mask(mask, 1000, 0.0f, 77, 0);
  for (int i = 0; i < 1000; i++) ck_assert_float_eq(mask[i], 1.0f);
  modelc_rt_dropout_mask(mask, 1000, 1.0f, 77, 0);
  for (int i = 0; i < 1000; i++) ck_assert_float_eq(mask[i], 0.0f);
  free(mask);
}
END_TEST

START_TEST(fill_constant) {
  float *x = malloc(BIG * sizeof *x);
  modelc_rt_fill(x, BIG, -0.25f);
  int bad = 0;
  for (int i = 0; i < BIG; i++) bad += x[i] != -0.25f;
  ck_assert_int_eq(bad, 0);
  modelc_rt_fill(x, 0, 1.0f);
  ck_assert_float_eq(x[0], -0.25f);
  free(x);
}
END_TEST

static Suite *random_suite(void) {
  Suite *s = suite_create("rt_random");
  TCase *tc = tcase_create("random");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, pinned_values);
  tcase_add_test(tc, normal_is_box_muller_of_uniforms);
  tcase_add_test(tc, deterministic_and_parallel_safe);
  tcase_add_test(tc, inputs_all_matter);
  tcase_add_test(tc, uniform_range_and_moments);
  tcase_add_test(tc, normal_moments);
  tcase_add_test(tc, streams_are_independent);
  tcase_add_test(tc, dropout_rate);
  tcase_add_test(tc, fill_constant);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(random_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
