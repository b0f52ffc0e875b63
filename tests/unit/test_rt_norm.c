/* test_rt_norm.c: the fused layernorm / rmsnorm kernels (runtime/rt_norm.c)
 * against the formulas in double, the gradient against central
 * differences of the forward (through a random projection of y), the
 * residual gradient dr added into d.x, and the weight and bias gradients
 * the same bit for bit on one thread and on several. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "modelc_rt.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static uint64_t rng = 7;

static float uniform(void) { /* [-1, 1) */
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static float *floats(int64_t n, float scale, float offset) {
  float *x = malloc((size_t)n * sizeof *x);
  for (int64_t i = 0; i < n; i++) x[i] = uniform() * scale + offset;
  return x;
}

typedef struct norm_case {
  int64_t rows, d;
  int rms, bias;
  double eps;
} norm_case;

static const norm_case cases[] = {
    {7, 33, 0, 1, 1e-5}, {5, 64, 1, 0, 1e-6}, {300, 130, 0, 0, 1e-3}, {2, 1, 0, 1, 1e-5},
};

/* y and the row statistics in double. */
static void reference(const norm_case *k, const float *x, const float *w, const float *b, double *y,
                      double *mean, double *rstd) {
  for (int64_t r = 0; r < k->rows; r++) {
    double mu = 0, var = 0;
    for (int64_t j = 0; !k->rms && j < k->d; j++) mu += x[r * k->d + j];
    mu /= (double)k->d;
    for (int64_t j = 0; j < k->d; j++) var += (x[r * k->d + j] - mu) * (x[r * k->d + j] - mu);
    double s = 1.0 / sqrt(var / (double)k->d + k->eps);
    mean[r] = mu, rstd[r] = s;
    for (int64_t j = 0; j < k->d; j++)
      y[r * k->d + j] = (x[r * k->d + j] - mu) * s * w[j] + (b ? b[j] : 0.0);
  }
}

START_TEST(forward_against_formula) {
  for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
    const norm_case *k = &cases[t];
    int64_t n = k->rows * k->d;
    float *x = floats(n, 2.0f, 0.5f), *w = floats(k->d, 1.0f, 1.0f), *b = k->bias ? floats(k->d, 1.0f, 0.0f) : NULL;
    float *y = malloc((size_t)n * sizeof *y), *mean = malloc((size_t)k->rows * sizeof *mean);
    float *rstd = malloc((size_t)k->rows * sizeof *rstd);
    double *ry = malloc((size_t)n * sizeof *ry), *rm = malloc((size_t)k->rows * sizeof *rm);
    double *rs = malloc((size_t)k->rows * sizeof *rs);
    modelc_rt_norm(y, mean, rstd, x, w, b, k->rows, k->d, k->eps, k->rms);
    reference(k, x, w, b, ry, rm, rs);
    for (int64_t i = 0; i < n; i++)
      ck_assert_msg(fabs(y[i] - ry[i]) <= 1e-5 * fmax(1.0, fabs(ry[i])), "case %zu y[%lld]: %.9g vs %.9g",
                    t, (long long)i, (double)y[i], ry[i]);
    for (int64_t r = 0; r < k->rows; r++) {
      ck_assert(fabs(mean[r] - rm[r]) <= 1e-6 * fmax(1.0, fabs(rm[r])));
      ck_assert(fabs(rstd[r] - rs[r]) <= 1e-5 * rs[r]);
      if (k->rms) ck_assert(mean[r] == 0.0f);
    }
    free(x), free(w), free(b), free(y), free(mean), free(rstd), free(ry), free(rm), free(rs);
  }
}
END_TEST

/* L = sum(y * p) for a fixed random p: dL/dy = p. */
static double loss_of(const norm_case *k, const float *x, const float *w, const float *b,
                      const float *p) {
  int64_t n = k->rows * k->d;
  double *y = malloc((size_t)n * sizeof *y), *m = malloc((size_t)k->rows * sizeof *m);
  double *s = malloc((size_t)k->rows * sizeof *s), total = 0;
  reference(k, x, w, b, y, m, s);
  for (int64_t i = 0; i < n; i++) total += y[i] * p[i];
  free(y), free(m), free(s);
  return total;
}

START_TEST(gradients_against_differences) {
  for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
    const norm_case *k = &cases[t];
    int64_t n = k->rows * k->d;
    float *x = floats(n, 2.0f, 0.5f), *w = floats(k->d, 1.0f, 1.0f), *b = floats(k->d, 1.0f, 0.0f);
    float *p = floats(n, 1.0f, 0.0f), *dr = floats(n, 1.0f, 0.0f);
    float *y = malloc((size_t)n * sizeof *y), *mean = malloc((size_t)k->rows * sizeof *mean);
    float *rstd = malloc((size_t)k->rows * sizeof *rstd), *dx = malloc((size_t)n * sizeof *dx);
    float *dx_r = malloc((size_t)n * sizeof *dx_r), *dw = malloc((size_t)k->d * sizeof *dw);
    float *db = malloc((size_t)k->d * sizeof *db);
    const float *bias = k->bias ? b : NULL;
    modelc_rt_norm(y, mean, rstd, x, w, bias, k->rows, k->d, k->eps, k->rms);
    modelc_rt_norm_grad(dx, dw, db, p, x, mean, rstd, w, NULL, k->rows, k->d, k->rms);
    modelc_rt_norm_grad(dx_r, dw, db, p, x, mean, rstd, w, dr, k->rows, k->d, k->rms);
    for (int64_t i = 0; i < n; i++) /* dr is added into d.x */
      ck_assert(fabs(dx_r[i] - (dx[i] + dr[i])) <= 1e-6 * fmax(1.0, fabs(dx_r[i])));
    /* central differences in double of the double forward, on a few entries */
    float *params[3] = {x, w, b};
    float *grads[3] = {dx, dw, db};
    int64_t sizes[3] = {n, k->d, k->d};
    for (int which = 0; which < 3; which++) {
      if (which == 2 && !k->bias) continue;
      for (int64_t i = 0; i < sizes[which]; i += sizes[which] / 5 + 1) {
        float keep = params[which][i], h = 1e-2f * fmaxf(1.0f, fabsf(keep));
        params[which][i] = keep + h;
        double up = loss_of(k, x, w, bias, p);
        params[which][i] = keep - h;
        double down = loss_of(k, x, w, bias, p);
        params[which][i] = keep;
        double want = (up - down) / (2.0 * ((double)(keep + h) - (double)keep));
        ck_assert_msg(fabs(grads[which][i] - want) <= 2e-3 * fmax(1.0, fabs(want)),
                      "case %zu input %d [%lld]: %.7g vs %.7g", t, which, (long long)i,
                      (double)grads[which][i], want);
      }
    }
    free(x), free(w), free(b), free(p), free(dr), free(y), free(mean), free(rstd), free(dx);
    free(dx_r), free(dw), free(db);
  }
}
END_TEST

START_TEST(weight_gradients_independent_of_threads) {
#ifdef _OPENMP
  const norm_case k = {1000, 96, 0, 1, 1e-5};
  int64_t n = k.rows * k.d;
  float *x = floats(n, 2.0f, 0.5f), *w = floats(k.d, 1.0f, 1.0f), *g = floats(n, 1.0f, 0.0f);
  float *y = malloc((size_t)n * sizeof *y), *mean = malloc((size_t)k.rows * sizeof *mean);
  float *rstd = malloc((size_t)k.rows * sizeof *rstd), *dx = malloc((size_t)n * sizeof *dx);
  float dw[2][96], db[2][96];
  modelc_rt_norm(y, mean, rstd, x, w, NULL, k.rows, k.d, k.eps, 0);
  int saved = omp_get_max_threads();
  for (int run = 0; run < 2; run++) {
    omp_set_num_threads(run == 0 ? 1 : 3);
    modelc_rt_norm_grad(dx, dw[run], db[run], g, x, mean, rstd, w, NULL, k.rows, k.d, 0);
  }
  omp_set_num_threads(saved);
  ck_assert(memcmp(dw[0], dw[1], sizeof dw[0]) == 0);
  ck_assert(memcmp(db[0], db[1], sizeof db[0]) == 0);
  free(x), free(w), free(g), free(y), free(mean), free(rstd), free(dx);
#endif
}
END_TEST

int main(void) {
  Suite *s = suite_create("rt_norm");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, forward_against_formula);
  tcase_add_test(tc, gradients_against_differences);
  tcase_add_test(tc, weight_gradients_independent_of_threads);
  suite_add_tcase(s, tc);
  SRunner *runner = srunner_create(s);
  srunner_run_all(runner, CK_NORMAL);
  int failed = srunner_ntests_failed(runner);
  srunner_free(runner);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
