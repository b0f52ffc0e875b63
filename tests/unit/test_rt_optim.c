/* test_rt_optim.c: AdamW and SGD against PyTorch, learning-rate schedules
 * at their boundaries, and the clipping helpers.
 *
 * The constants below were printed by this script (torch 1.13.1, CPU with
 * AVX2; hyperparameters rounded to float32 so that C and Python start
 * from the same numbers), "%.9g" being exact for float32:
 *
 *   import math, torch, numpy as np
 *   f = lambda x: float(np.float32(x))
 *   N = 11                                  # one AVX2 vector of 8, a tail of 3
 *   g = torch.Generator().manual_seed(1234)
 *   p0 = torch.randn(N, generator=g)
 *   grads = [torch.randn(N, generator=g) * s for s in (1.0, 0.01, 100.0)]
 *   lr, b1, b2, eps, wd = f(1e-3), f(0.9), f(0.999), f(1e-8), f(0.1)
 *   # adamw_113: torch.optim.AdamW(lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
 *   # over the three grads (1.13 computes m = m*b1 + (1-b1) g).
 *   # adamw_2, adamw_m, adamw_v: the formulas of torch >= 2.0 and modelc_rt.h
 *   # with the same tensor kernels:
 *   p = p0.clone(); m = torch.zeros(N); v = torch.zeros(N)
 *   for k, gr in enumerate(grads):
 *       t = k + 1
 *       p.mul_(1 - lr * wd); m.lerp_(gr, 1 - b1); v.mul_(b2).addcmul_(gr, gr, value=1 - b2)
 *       bc1 = 1 - b1 ** t; bc2 = 1 - b2 ** t
 *       denom = (v.sqrt() / math.sqrt(bc2)).add_(eps)
 *       p.addcdiv_(m, denom, value=-(lr / bc1))
 *   # sgd_*: torch.optim.SGD(lr=f(0.05), momentum, nesterov, weight_decay) with
 *   # (f(0.9), False, f(0.01)), (f(0.9), True, 0), (0, False, f(0.1));
 *   # the momentum buffer after the third step.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "modelc_rt.h"

#define N 11
#define PI 3.14159265358979323846

static const float param0[N] = {0.0461304635f, 0.402402818f, -1.01152909f, 0.216738239f,
                                -0.612273097f, 0.50361073f,  0.230966806f, 0.693077326f,
                                -0.266860574f, 2.17846584f,  0.102137297f};
static const float grads[3][N] = {
    {-0.259009689f, -0.154900402f, -1.3705889f, -0.131920427f, 0.884839773f, -0.261076808f,
     0.610417068f, -0.00984232128f, -1.44734037f, -0.203899279f, 0.873753369f},
    {-0.00681610918f, 0.0063386932f, 0.00192202267f, 0.0009182223f, -0.00862494204f, 0.00159590668f,
     0.00818413217f, -0.00764891505f, 0.00804167613f, -0.00138319097f, 0.00319567369f},
    {-101.872787f, -131.474579f, 252.277252f, 45.0092812f, 27.0922756f, -80.8718414f, -2.16995859f,
     -104.130638f, 7.02459049f, 57.965477f, -5.99104071f}};
static const float adamw_113[3][N] = {
    {0.0471258461f, 0.403362572f, -1.01042783f, 0.21771656f, -0.61321187f, 0.504560351f,
     0.229943708f, 0.694007993f, -0.265833884f, 2.17924786f, 0.101127081f},
    {0.0478105471f, 0.403961271f, -1.00965774f, 0.218359649f, -0.613813281f, 0.505175352f,
     0.22924073f, 0.694924295f, -0.265141398f, 2.17970514f, 0.100444183f},
    {0.0484459288f, 0.404560268f, -1.01019275f, 0.217700496f, -0.614407063f, 0.505765259f,
     0.229690567f, 0.695493698f, -0.265636802f, 2.17885017f, 0.100991301f}};
static const float adamw_2[3][N] = {
    {0.0471258461f, 0.403362572f, -1.01042783f, 0.21771656f, -0.61321187f, 0.504560351f,
     0.229943708f, 0.694007993f, -0.265833884f, 2.17924786f, 0.101127081f},
    {0.0478105471f, 0.403961271f, -1.00965774f, 0.218359649f, -0.613813281f, 0.505175352f,
     0.22924073f, 0.694924295f, -0.265141398f, 2.17970514f, 0.100444183f},
    {0.0484459288f, 0.404560268f, -1.01019275f, 0.217700496f, -0.614407063f, 0.505765259f,
     0.229690567f, 0.695493698f, -0.265636802f, 2.17885017f, 0.100991301f}};
static const float adamw_m[N] = {-10.2088737f, -13.1594372f, 25.1168861f,   4.49032593f,
                                 2.78012395f,  -8.10818958f, -0.166815534f, -10.4145517f,
                                 0.585948408f, 5.77990866f,  -0.528042614f};
static const float adamw_v[N] = {10.3779984f,  17.2853661f, 63.6448669f,    2.02582669f,
                                 0.734763384f, 6.54023838f, 0.00508058583f, 10.843051f,
                                 0.051434882f, 3.35999489f, 0.0366540253f};
static const float sgd_momentum[3][N] = {
    {0.0590578839f, 0.40994665f, -0.942493856f, 0.223225892f, -0.656208932f, 0.516412795f,
     0.200330466f, 0.69322288f, -0.194360122f, 2.18757153f, 0.0583985597f},
    {0.0710038394f, 0.416214168f, -0.879987001f, 0.228907257f, -0.694991827f, 0.527596653f,
     0.172248393f, 0.693389714f, -0.129414618f, 2.19474196f, 0.0188447144f},
    {5.17535925f, 6.99537516f, -13.4371538f, -2.01655817f, -2.08416271f, 4.58099031f, 0.255386323f,
     5.89972544f, -0.422128499f, -0.698175728f, 0.282788873f}};
static const float sgd_momentum_buf[N] = {-102.087105f, -131.583221f, 251.143326f,  44.9093056f,
                                          27.7834167f,  -81.0678711f, -1.66275859f, -104.126709f,
                                          5.85427761f,  57.8583527f,  -5.27888298f};
static const float sgd_nesterov[3][N] = {
    {0.0707363859f, 0.417118371f, -0.881323159f, 0.229270682f, -0.696332872f, 0.528412998f,
     0.172977179f, 0.694012344f, -0.129363239f, 2.19783616f, 0.0191307291f},
    {0.0818738118f, 0.422789663f, -0.825996876f, 0.234526232f, -0.731349528f, 0.538834989f,
     0.147477791f, 0.69513762f, -0.0715099052f, 2.2062254f, -0.0165598709f},
    {9.7695055f, 12.9182644f, -24.7424545f, -4.0365839f, -3.33701873f, 8.23111153f, 0.331042707f,
     10.5882168f, -0.686416149f, -3.2930069f, 0.520611286f}};
static const float sgd_nesterov_buf[N] = {-102.088722f, -131.594345f, 251.168808f,  44.9032516f,
                                          27.8012333f,  -81.0818787f, -1.66815507f, -104.145493f,
                                          5.85948229f,  57.7990723f,  -5.28042412f};
static const float sgd_plain[3][N] = {
    {0.0588502958f, 0.408135831f, -0.937941968f, 0.222250566f, -0.653453708f, 0.514146507f,
     0.199291125f, 0.690104067f, -0.193159252f, 2.17776847f, 0.0579389408f},
    {0.0588968508f, 0.405778229f, -0.933348358f, 0.221093401f, -0.64975518f, 0.511496007f,
     0.197885469f, 0.687035978f, -0.192595541f, 2.1669488f, 0.0574894622f},
    {5.15224171f, 6.9774785f, -13.5425444f, -2.03047609f, -2.00112009f, 4.55253077f, 0.305393964f,
     5.8901329f, -0.542862117f, -0.742159784f, 0.356754065f}};

/* Units in the last place between two floats of the same sign. */
static int64_t ulps(float a, float b) {
  int32_t x, y;
  memcpy(&x, &a, 4);
  memcpy(&y, &b, 4);
  int64_t d = (int64_t)x - (int64_t)y;
  return d < 0 ? -d : d;
}

static void expect_equal(const float *got, const float *want, int64_t max_ulps) {
  for (int i = 0; i < N; i++)
    ck_assert_msg(ulps(got[i], want[i]) <= max_ulps, "element %d: %.9g, expected %.9g", i,
                  (double)got[i], (double)want[i]);
}

static void expect_close(const float *got, const float *want, double rel) {
  for (int i = 0; i < N; i++)
    ck_assert_msg(fabs((double)got[i] - want[i]) <= rel * fabs((double)want[i]),
                  "element %d: %.9g, expected %.9g", i, (double)got[i], (double)want[i]);
}

START_TEST(adamw_matches_pytorch) {
  float p[N], m[N] = {0}, v[N] = {0};
  memcpy(p, param0, sizeof p);
  for (int k = 0; k < 3; k++) {
    modelc_rt_adamw(p, grads[k], m, v, N, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, k + 1);
    expect_equal(p, adamw_2[k], 0);      /* the same operations, the same bits */
    expect_close(p, adamw_113[k], 1e-6); /* torch.optim.AdamW of 1.13 itself */
  }
  expect_equal(m, adamw_m, 0);
  expect_equal(v, adamw_v, 0);
}
END_TEST

/* No decay and beta2 = 0: one step is p - lr g / (|g| + eps) exactly. */
START_TEST(adamw_first_step_is_sign_descent) {
  float p[2] = {1.0f, -1.0f}, g[2] = {4.0f, -0.5f}, m[2] = {0}, v[2] = {0};
  modelc_rt_adamw(p, g, m, v, 2, 0.5f, 0.5f, 0.0f, 0.0f, 0.0f, 1);
  ck_assert_float_eq(p[0], 0.5f);
  ck_assert_float_eq(p[1], -0.5f);
  ck_assert_float_eq(m[0], 2.0f);
  ck_assert_float_eq(v[0], 16.0f);
}
END_TEST

static void run_sgd(float momentum, int nesterov, float wd, const float (*want)[N],
                    const float *want_buf) {
  float p[N], buf[N];
  memcpy(p, param0, sizeof p);
  memset(buf, 0xff, sizeof buf); /* NaN: the first step must not read it */
  for (int k = 0; k < 3; k++) {
    modelc_rt_sgd(p, grads[k], momentum != 0.0f ? buf : NULL, N, 0.05f, momentum, nesterov, wd,
                  k == 0);
    expect_equal(p, want[k], 0);
  }
  if (want_buf) expect_equal(buf, want_buf, 0);
}

START_TEST(sgd_momentum_matches_pytorch) {
  run_sgd(0.9f, 0, 0.01f, sgd_momentum, sgd_momentum_buf);
}
END_TEST

START_TEST(sgd_nesterov_matches_pytorch) { run_sgd(0.9f, 1, 0.0f, sgd_nesterov, sgd_nesterov_buf); }
END_TEST

START_TEST(sgd_plain_matches_pytorch) { run_sgd(0.0f, 0, 0.1f, sgd_plain, NULL); }
END_TEST

/* A large tensor goes through the parallel loop: the same bits as the
 * sequential one, element by element. */
START_TEST(parallel_equals_serial) {
  enum { BIG = 200003 };
  float *p = malloc(BIG * sizeof *p), *g = malloc(BIG * sizeof *g), *m = calloc(BIG, sizeof *m),
        *v = calloc(BIG, sizeof *v);
  for (int i = 0; i < BIG; i++) {
    p[i] = param0[i % N] * (float)(1 + i % 7);
    g[i] = grads[i % 3][i % N];
  }
  modelc_rt_adamw(p, g, m, v, BIG, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, 1);
  for (int i = 0; i < BIG; i += 997) {
    float q = param0[i % N] * (float)(1 + i % 7), mq = 0, vq = 0;
    modelc_rt_adamw(&q, &g[i], &mq, &vq, 1, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, 1);
    ck_assert(q == p[i] && mq == m[i] && vq == v[i]);
  }
  free(p);
  free(g);
  free(m);
  free(v);
}
END_TEST

/* ---- schedules: lr 1, min_lr 0.1, warmup 2, steps 10 unless said ---- */

static modelc_rt_schedule schedule(modelc_rt_schedule_kind kind, int64_t warmup, int64_t steps) {
  return (modelc_rt_schedule){kind, 1.0, 0.1, warmup, steps};
}

#define EXPECT_LR(s, step, want) ck_assert_double_eq_tol(modelc_rt_lr_at(&(s), step), want, 1e-12)

START_TEST(constant_schedule) {
  modelc_rt_schedule s = schedule(MODELC_RT_CONSTANT, 0, 0);
  EXPECT_LR(s, 0, 1.0);
  EXPECT_LR(s, 1000000, 1.0);
  s = schedule(MODELC_RT_CONSTANT, 4, 0);
  EXPECT_LR(s, 0, 0.25);
  EXPECT_LR(s, 3, 1.0);
  EXPECT_LR(s, 4, 1.0);
  EXPECT_LR(s, 50, 1.0);
}
END_TEST

START_TEST(cosine_schedule) {
  modelc_rt_schedule s = schedule(MODELC_RT_COSINE, 2, 10);
  EXPECT_LR(s, 0, 0.5);
  EXPECT_LR(s, 1, 1.0);
  EXPECT_LR(s, 2, 1.0); /* W: the top of the cosine */
  EXPECT_LR(s, 4, 0.1 + 0.9 * (1 + cos(PI / 4)) / 2);
  EXPECT_LR(s, 6, 0.55); /* halfway */
  EXPECT_LR(s, 9, 0.1 + 0.9 * (1 + cos(PI * 7 / 8)) / 2);
  EXPECT_LR(s, 10, 0.1); /* S */
  EXPECT_LR(s, 11, 0.1);
  EXPECT_LR(s, 1000, 0.1);
  s = schedule(MODELC_RT_COSINE, 0, 4);
  EXPECT_LR(s, 0, 1.0);
  EXPECT_LR(s, 2, 0.55);
  EXPECT_LR(s, 4, 0.1);
}
END_TEST

START_TEST(linear_schedule) {
  modelc_rt_schedule s = schedule(MODELC_RT_LINEAR, 2, 10);
  EXPECT_LR(s, 0, 0.5);
  EXPECT_LR(s, 1, 1.0);
  EXPECT_LR(s, 2, 1.0);
  EXPECT_LR(s, 4, 1.0 - 0.9 * 2 / 8);
  EXPECT_LR(s, 6, 0.55);
  EXPECT_LR(s, 10, 0.1);
  EXPECT_LR(s, 11, 0.1);
  s = schedule(MODELC_RT_LINEAR, 0, 9);
  EXPECT_LR(s, 0, 1.0);
  EXPECT_LR(s, 3, 0.7);
}
END_TEST

/* steps == warmup (and steps < warmup): warmup, then min_lr at once. */
START_TEST(schedule_without_decay_phase) {
  modelc_rt_schedule kinds[2] = {schedule(MODELC_RT_COSINE, 3, 3),
                                 schedule(MODELC_RT_LINEAR, 3, 3)};
  for (int k = 0; k < 2; k++) {
    EXPECT_LR(kinds[k], 0, 1.0 / 3);
    EXPECT_LR(kinds[k], 2, 1.0);
    EXPECT_LR(kinds[k], 3, 0.1);
    EXPECT_LR(kinds[k], 4, 0.1);
    kinds[k].steps = 1;
    EXPECT_LR(kinds[k], 2, 1.0);
    EXPECT_LR(kinds[k], 3, 0.1);
  }
  modelc_rt_schedule z = schedule(MODELC_RT_COSINE, 0, 0);
  EXPECT_LR(z, 0, 0.1);
}
END_TEST

START_TEST(sum_squares_and_scale) {
  float x[5] = {1, -2, 3, 0.5f, 0};
  ck_assert_double_eq(modelc_rt_sum_squares(x, 5), 14.25);
  ck_assert_double_eq(modelc_rt_sum_squares(x, 0), 0.0);
  modelc_rt_scale(x, 5, -2.0f);
  ck_assert(x[0] == -2 && x[1] == 4 && x[3] == -1 && x[4] == 0);
  /* large: exact in double for these values, and chunking loses nothing */
  enum { BIG = 1000001 };
  float *y = malloc(BIG * sizeof *y);
  for (int i = 0; i < BIG; i++) y[i] = (float)(i % 5);
  ck_assert_double_eq(modelc_rt_sum_squares(y, BIG), 6000000.0);
  modelc_rt_scale(y, BIG, 0.5f);
  ck_assert_double_eq(modelc_rt_sum_squares(y, BIG), 1500000.0);
  free(y);
}
END_TEST

static Suite *optim_suite(void) {
  Suite *s = suite_create("rt_optim");
  TCase *opt = tcase_create("optimizers");
  tcase_add_test(opt, adamw_matches_pytorch);
  tcase_add_test(opt, adamw_first_step_is_sign_descent);
  tcase_add_test(opt, sgd_momentum_matches_pytorch);
  tcase_add_test(opt, sgd_nesterov_matches_pytorch);
  tcase_add_test(opt, sgd_plain_matches_pytorch);
  tcase_add_test(opt, parallel_equals_serial);
  suite_add_tcase(s, opt);
  TCase *sched = tcase_create("schedules");
  tcase_add_test(sched, constant_schedule);
  tcase_add_test(sched, cosine_schedule);
  tcase_add_test(sched, linear_schedule);
  tcase_add_test(sched, schedule_without_decay_phase);
  tcase_add_test(sched, sum_squares_and_scale);
  suite_add_tcase(s, sched);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(optim_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
