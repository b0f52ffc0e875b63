/* test_rt_lowp.c: bf16 rounding and the bf16 GEMM of precision: bf16. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "modelc_rt.h"

static float from_bits(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static uint32_t bits_of(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  return bits;
}

START_TEST(rounds_to_nearest_even) {
  /* exactly representable values stay */
  ck_assert_uint_eq(bits_of(modelc_rt_round_bf16(1.0f)), 0x3f800000u);
  ck_assert_uint_eq(bits_of(modelc_rt_round_bf16(-2.5f)), bits_of(-2.5f));
  /* below half an ulp rounds down, above rounds up */
  ck_assert_uint_eq(bits_of(modelc_rt_round_bf16(from_bits(0x3f807fffu))), 0x3f800000u);
  ck_assert_uint_eq(bits_of(modelc_rt_round_bf16(from_bits(0x3f808001u))), 0x3f810000u);
  /* ties go to the even mantissa */
  ck_assert_uint_eq(bits_of(modelc_rt_round_bf16(from_bits(0x3f808000u))), 0x3f800000u);
  ck_assert_uint_eq(bits_of(modelc_rt_round_bf16(from_bits(0x3f818000u))), 0x3f820000u);
  /* 1 + 2^-8 is half way between bf16 neighbours 1 and 1 + 2^-7: even wins */
  ck_assert_float_eq(modelc_rt_round_bf16(1.0f + 1.0f / 256.0f), 1.0f);
  /* the largest finite value rounds up to infinity, as IEEE rounding does */
  ck_assert(isinf(modelc_rt_round_bf16(from_bits(0x7f7fffffu))));
  ck_assert(isinf(modelc_rt_round_bf16(INFINITY)));
  ck_assert(isnan(modelc_rt_round_bf16(NAN)));
}
END_TEST

START_TEST(gemm_rounds_both_operands) {
  /* [1,2] x [2,1]: operands chosen so that rounding changes the product */
  float a[2] = {1.0f + 1.0f / 512.0f, 3.0f}, b[2] = {1.0f, 1.0f + 3.0f / 512.0f}, c = 0;
  modelc_rt_gemm_bf16(0, 0, 1, 1, 2, 1.0f, a, 2, b, 1, 0.0f, &c, 1);
  float want = modelc_rt_round_bf16(a[0]) * modelc_rt_round_bf16(b[0]) +
               modelc_rt_round_bf16(a[1]) * modelc_rt_round_bf16(b[1]);
  ck_assert_float_eq_tol(c, want, 1e-6f);
  ck_assert(fabsf(c - (a[0] * b[0] + a[1] * b[1])) > 1e-4f);
}
END_TEST

int main(void) {
  Suite *s = suite_create("rt_lowp");
  TCase *tc = tcase_create("bf16");
  tcase_add_test(tc, rounds_to_nearest_even);
  tcase_add_test(tc, gemm_rounds_both_operands);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
