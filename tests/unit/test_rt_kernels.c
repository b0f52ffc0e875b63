/* test_rt_kernels.c: GEMM, softmax family, reductions, NLL loss,
 * embedding gather, rope, attention masks and permutes, each against a
 * naive reference in double on random shapes (size-1 dims, odd sizes,
 * transposes, padded strides), gradients against central finite
 * differences of the forward kernel, and rope against PyTorch. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelc_rt.h"

/* ---- helpers ---- */

static uint64_t rng_state = 1;

static void rng_seed(uint64_t seed) { rng_state = seed * 0x9E3779B97F4A7C15ull + 1; }

static uint32_t rng_next(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static int64_t rng_int(int64_t lo, int64_t hi) { /* [lo, hi] */
  return lo + (int64_t)(rng_next() % (uint32_t)(hi - lo + 1));
}

static float rng_float(void) { return (float)(rng_next() >> 8) / 8388608.0f - 1.0f; } /* [-1, 1) */

static float *random_floats(int64_t n, float scale) {
  float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
  for (int64_t i = 0; i < n; i++) x[i] = scale * rng_float();
  return x;
}

static double *new_doubles(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(double)); }

/* |got - want| <= tol * max(scale, |want|) everywhere; NaN must match NaN. */
static void check_close_scaled(const float *got, const double *want, int64_t n, double tol,
                               double scale, const char *what) {
  for (int64_t i = 0; i < n; i++) {
    if (isnan(want[i])) {
      ck_assert_msg(isnan(got[i]), "%s[%lld]: got %.9g, want NaN", what, (long long)i,
                    (double)got[i]);
      continue;
    }
    double err = fabs((double)got[i] - want[i]);
    double lim = tol * fmax(scale, fabs(want[i]));
    ck_assert_msg(err <= lim || (isinf(want[i]) && got[i] == want[i]),
                  "%s[%lld]: got %.9g, want %.9g (err %.3g > %.3g)", what, (long long)i,
                  (double)got[i], want[i], err, lim);
  }
}

static void check_close(const float *got, const double *want, int64_t n, double tol,
                        const char *what) {
  check_close_scaled(got, want, n, tol, 1.0, what);
}

static void check_close_f(const float *got, const float *want, int64_t n, double tol,
                          const char *what) {
  double *w = new_doubles(n);
  for (int64_t i = 0; i < n; i++) w[i] = want[i];
  check_close(got, w, n, tol, what);
  free(w);
}

static int64_t product(int rank, const int64_t *dims) {
  int64_t p = 1;
  for (int i = 0; i < rank; i++) p *= dims[i];
  return p;
}

/* ---- gemm ---- */

/* C = alpha op(A) op(B) + beta C in double; scale[i] = sum |terms|. */
static void ref_gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, double alpha, const float *a,
                     int64_t lda, const float *b, int64_t ldb, double beta, const float *c,
                     int64_t ldc, double *out, double *scale) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double s = 0.0, mag = 0.0;
      for (int64_t p = 0; p < k; p++) {
        double av = ta ? a[p * lda + i] : a[i * lda + p];
        double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
        s += av * bv;
        mag += fabs(av * bv);
      }
      double cv = beta == 0.0 ? 0.0 : beta * c[i * ldc + j];
      out[i * n + j] = alpha * s + cv;
      scale[i * n + j] = fabs(alpha) * mag + fabs(cv);
    }
}

static void run_gemm_case(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                          int64_t pad) {
  int64_t a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
  int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = n + pad;
  float *a = random_floats(a_rows * lda, 1.0f), *b = random_floats(b_rows * ldb, 1.0f);
  float *c = random_floats(m * ldc, 1.0f);
  if (beta == 0.0f) /* beta = 0 must overwrite, NaN included */
    for (int64_t i = 0; i < m * ldc; i++) c[i] = NAN;
  double *want = new_doubles(m * n), *scale = new_doubles(m * n);
  ref_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, want, scale);
  float *pad_before = malloc((size_t)(m * ldc) * sizeof *pad_before);
  memcpy(pad_before, c, (size_t)(m * ldc) * sizeof *c);
  modelc_rt_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  char what[128];
  snprintf(what, sizeof what, "gemm ta=%d tb=%d m=%lld n=%lld k=%lld alpha=%g beta=%g", ta, tb,
           (long long)m, (long long)n, (long long)k, (double)alpha, (double)beta);
  for (int64_t i = 0; i < m; i++) {
    for (int64_t j = 0; j < n; j++) {
      double err = fabs((double)c[i * ldc + j] - want[i * n + j]);
      double tol = (k > 1000 ? 1e-4 : 1e-5) * fmax(scale[i * n + j], 1e-30);
      ck_assert_msg(err <= tol, "%s: C[%lld,%lld] = %.9g, want %.9g", what, (long long)i,
                    (long long)j, (double)c[i * ldc + j], want[i * n + j]);
    }
    for (int64_t j = n; j < ldc; j++) /* the padding between rows is not touched */
      ck_assert_msg(memcmp(&c[i * ldc + j], &pad_before[i * ldc + j], sizeof(float)) == 0,
                    "%s: wrote past the row", what);
  }
  free(a);
  free(b);
  free(c);
  free(want);
  free(scale);
  free(pad_before);
}

START_TEST(gemm_against_reference) {
  rng_seed(11);
  /* k > 256 and n > 2048 cross the fallback's cache blocks; {3, 1000,
   * 500} has fewer row blocks than threads, so its columns are split. */
  static const int64_t shapes[][3] = {
      {1, 1, 1},     {1, 7, 3},     {5, 1, 9},      {3, 4, 1},    {17, 33, 65},
      {4, 16, 8},    {64, 50, 300}, {130, 37, 257}, {7, 2100, 5}, {97, 13, 11},
      {2, 300, 600}, {1, 129, 70},  {3, 1000, 500},
  };
  static const float alphas[] = {1.0f, 0.5f, -2.0f}, betas[] = {0.0f, 1.0f, 0.25f};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        int v = (int)(s + ta * 2 + tb);
        run_gemm_case(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], alphas[v % 3],
                      betas[(v / 3 + ta) % 3], v % 2 ? 3 : 0);
      }
}
END_TEST

START_TEST(gemm_long_k) {
  rng_seed(12);
  run_gemm_case(0, 1, 3, 5, 5000, 1.0f, 0.0f, 0);
  run_gemm_case(1, 0, 6, 4, 3000, 1.0f, 1.0f, 2);
}
END_TEST

START_TEST(gemm_degenerate) {
  float c[6] = {NAN, 1, 2, 3, 4, 5}, a[1] = {1}, b[1] = {1};
  modelc_rt_gemm(0, 0, 2, 3, 0, 1.0f, a, 1, b, 3, 0.0f, c, 3); /* k = 0, beta = 0: zeros */
  for (int i = 0; i < 6; i++) ck_assert(c[i] == 0.0f);
  float d[4] = {1, 2, 3, 4};
  modelc_rt_gemm(0, 0, 2, 2, 0, 1.0f, a, 1, b, 2, 0.5f, d, 2); /* k = 0: C *= beta */
  ck_assert(d[0] == 0.5f && d[3] == 2.0f);
  float e[2] = {NAN, 3}, a2[2] = {NAN, 1}, b2[2] = {1, 1};
  modelc_rt_gemm(0, 0, 1, 2, 1, 0.0f, a2, 1, b2, 2, 1.0f, e, 2); /* alpha = 0: A not read */
  ck_assert(isnan(e[0]) && e[1] == 3.0f);
  modelc_rt_gemm(0, 0, 0, 5, 3, 1.0f, a, 3, b, 5, 0.0f, c, 5); /* m = 0: nothing */
  /* one row: lda of 0 is fine (unused) */
  float x[3] = {1, 2, 3}, w[6] = {1, 0, 0, 1, 1, 1}, out[2];
  modelc_rt_gemm(0, 0, 1, 2, 3, 1.0f, x, 0, w, 2, 0.0f, out, 0);
  ck_assert(out[0] == 4.0f && out[1] == 5.0f);
}
END_TEST

/* ---- softmax family ---- */

static void ref_softmax(double *y, const float *x, int64_t outer, int64_t n, int64_t inner,
                        int take_log) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < inner; j++) {
      const float *xs = x + o * n * inner + j;
      double mx = -INFINITY, sum = 0.0;
      for (int64_t r = 0; r < n; r++) mx = fmax(mx, xs[r * inner]);
      for (int64_t r = 0; r < n; r++) sum += exp(xs[r * inner] - mx);
      for (int64_t r = 0; r < n; r++) {
        double v = xs[r * inner] - mx;
        y[o * n * inner + j + r * inner] = take_log ? v - log(sum) : exp(v) / sum;
      }
    }
}

static void ref_softmax_grad(double *dx, const float *y, const float *g, int64_t outer, int64_t n,
                             int64_t inner, int take_log) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < inner; j++) {
      int64_t b = o * n * inner + j;
      double dot = 0.0;
      for (int64_t r = 0; r < n; r++)
        dot += take_log ? g[b + r * inner] : (double)g[b + r * inner] * y[b + r * inner];
      for (int64_t r = 0; r < n; r++) {
        int64_t i = b + r * inner;
        dx[i] = take_log ? g[i] - exp((double)y[i]) * dot : y[i] * (g[i] - dot);
      }
    }
}

static const int64_t softmax_shapes[][3] = {
    {3, 7, 1}, {2, 5, 3}, {1, 1, 1}, {4, 300, 1}, {2, 3, 300}, {1, 5000, 1}, {5, 1, 4}, {3, 64, 65},
};

START_TEST(softmax_against_reference) {
  rng_seed(21);
  for (size_t s = 0; s < sizeof softmax_shapes / sizeof softmax_shapes[0]; s++)
    for (int take_log = 0; take_log < 2; take_log++) {
      int64_t outer = softmax_shapes[s][0], n = softmax_shapes[s][1], inner = softmax_shapes[s][2];
      int64_t count = outer * n * inner;
      float *x = random_floats(count, s % 2 ? 40.0f : 3.0f); /* large logits: stability */
      float *y = malloc((size_t)count * sizeof *y), *g = random_floats(count, 1.0f);
      float *dx = malloc((size_t)count * sizeof *dx);
      double *want = new_doubles(count);
      ref_softmax(want, x, outer, n, inner, take_log);
      (take_log ? modelc_rt_log_softmax : modelc_rt_softmax)(y, x, outer, n, inner);
      check_close(y, want, count, n > 1000 ? 1e-4 : 1e-5, take_log ? "log_softmax" : "softmax");
      ref_softmax_grad(want, y, g, outer, n, inner, take_log);
      (take_log ? modelc_rt_log_softmax_grad : modelc_rt_softmax_grad)(dx, y, g, outer, n, inner);
      check_close(dx, want, count, n > 1000 ? 1e-4 : 1e-5, "softmax grad");
      /* in place gives the same */
      float *z = malloc((size_t)count * sizeof *z);
      memcpy(z, x, (size_t)count * sizeof *z);
      (take_log ? modelc_rt_log_softmax : modelc_rt_softmax)(z, z, outer, n, inner);
      ck_assert(memcmp(z, y, (size_t)count * sizeof *z) == 0);
      free(x);
      free(y);
      free(g);
      free(dx);
      free(z);
      free(want);
    }
}
END_TEST

START_TEST(softmax_infinities) {
  /* rows [outer=3, n=3]: all -inf gives NaN (as PyTorch); one -inf gives 0 / -inf */
  float x[9] = {-INFINITY, -INFINITY, -INFINITY, 1.0f, -INFINITY, 1.0f, 0.0f, 0.0f, NAN};
  float y[9], ly[9];
  modelc_rt_softmax(y, x, 3, 3, 1);
  modelc_rt_log_softmax(ly, x, 3, 3, 1);
  for (int i = 0; i < 3; i++) ck_assert(isnan(y[i]) && isnan(ly[i]));
  ck_assert(y[3] == 0.5f && y[4] == 0.0f && y[5] == 0.5f);
  ck_assert(isinf(ly[4]) && ly[4] < 0 && fabsf(ly[3] + logf(2.0f)) < 1e-6f);
  for (int i = 6; i < 9; i++) ck_assert(isnan(y[i]) && isnan(ly[i])); /* NaN spreads */
  /* the same down a strided middle dim: [1, 3, 2] */
  float xs[6] = {-INFINITY, 1.0f, -INFINITY, -INFINITY, -INFINITY, 1.0f}, ys[6];
  modelc_rt_softmax(ys, xs, 1, 3, 2);
  ck_assert(isnan(ys[0]) && isnan(ys[2]) && isnan(ys[4]));
  ck_assert(ys[1] == 0.5f && ys[3] == 0.0f && ys[5] == 0.5f);
}
END_TEST

/* d/dx_i sum_k g_k f(x)_k by central differences of the forward kernel. */
static void check_softmax_fd(int take_log, int64_t outer, int64_t n, int64_t inner) {
  int64_t count = outer * n * inner;
  float *x = random_floats(count, 2.0f), *g = random_floats(count, 1.0f);
  float *y = malloc((size_t)count * sizeof *y), *dx = malloc((size_t)count * sizeof *dx);
  void (*fwd)(float *, const float *, int64_t, int64_t, int64_t) =
      take_log ? modelc_rt_log_softmax : modelc_rt_softmax;
  fwd(y, x, outer, n, inner);
  (take_log ? modelc_rt_log_softmax_grad : modelc_rt_softmax_grad)(dx, y, g, outer, n, inner);
  double *fd = new_doubles(count);
  const float h = 1e-2f;
  for (int64_t i = 0; i < count; i++) {
    float keep = x[i];
    double lp = 0.0, lm = 0.0;
    x[i] = keep + h;
    fwd(y, x, outer, n, inner);
    for (int64_t k = 0; k < count; k++) lp += (double)g[k] * y[k];
    x[i] = keep - h;
    fwd(y, x, outer, n, inner);
    for (int64_t k = 0; k < count; k++) lm += (double)g[k] * y[k];
    x[i] = keep;
    fd[i] = (lp - lm) / (2.0 * h);
  }
  check_close(dx, fd, count, 2e-3, take_log ? "log_softmax grad vs fd" : "softmax grad vs fd");
  free(x);
  free(g);
  free(y);
  free(dx);
  free(fd);
}

START_TEST(softmax_grad_finite_differences) {
  rng_seed(22);
  check_softmax_fd(0, 2, 5, 3);
  check_softmax_fd(1, 3, 4, 1);
}
END_TEST

/* ---- reductions ---- */

/* The output index of x's flat index i: kept dims in order. */
static int64_t kept_index(int64_t i, int rank, const int64_t *dims, const int *reduce) {
  int64_t out = 0, mul = 1;
  for (int d = rank - 1; d >= 0; d--) {
    int64_t id = i % dims[d];
    i /= dims[d];
    if (!reduce[d]) {
      out += id * mul;
      mul *= dims[d];
    }
  }
  return out;
}

static void check_reduce_case(int rank, const int64_t *dims, const int *reduce, int ties) {
  int64_t count = product(rank, dims), out = 1;
  for (int d = 0; d < rank; d++) out *= reduce[d] ? 1 : dims[d];
  float *x = random_floats(count, 1.0f);
  if (ties) /* few distinct values: many ties for the max */
    for (int64_t i = 0; i < count; i++) x[i] = (float)rng_int(-3, 3);
  double *sum = new_doubles(out), *mx = new_doubles(out), *mag = new_doubles(out);
  int64_t *first = malloc((size_t)(out > 0 ? out : 1) * sizeof *first);
  for (int64_t o = 0; o < out; o++) {
    mx[o] = -INFINITY;
    first[o] = -1;
  }
  for (int64_t i = 0; i < count; i++) { /* row-major: the first maximum wins ties */
    int64_t o = kept_index(i, rank, dims, reduce);
    sum[o] += x[i];
    mag[o] += fabs(x[i]);
    if (first[o] < 0 || x[i] > mx[o]) {
      mx[o] = x[i];
      first[o] = i;
    }
  }
  float *y = malloc((size_t)(out > 0 ? out : 1) * sizeof *y);
  char what[64];
  snprintf(what, sizeof what, "reduce_sum rank %d", rank);
  modelc_rt_reduce_sum(y, x, rank, dims, reduce);
  for (int64_t o = 0; o < out; o++)
    ck_assert_msg(fabs(y[o] - sum[o]) <= 1e-5 * fmax(1.0, mag[o]), "%s[%lld]: %.9g vs %.9g", what,
                  (long long)o, (double)y[o], sum[o]);
  modelc_rt_reduce_max(y, x, rank, dims, reduce);
  check_close(y, mx, out, 0.0, "reduce_max");
  float *g = random_floats(out, 1.0f), *dx = random_floats(count, 1.0f);
  modelc_rt_reduce_max_grad(dx, x, g, rank, dims, reduce);
  double *want = new_doubles(count);
  for (int64_t o = 0; o < out; o++)
    if (first[o] >= 0) want[first[o]] = g[o];
  check_close(dx, want, count, 0.0, "reduce_max_grad");
  free(x);
  free(sum);
  free(mx);
  free(mag);
  free(first);
  free(y);
  free(g);
  free(dx);
  free(want);
}

START_TEST(reduce_random_shapes) {
  rng_seed(31);
  for (int iter = 0; iter < 300; iter++) {
    int rank = (int)rng_int(1, 6);
    int64_t dims[8];
    int reduce[8];
    for (int d = 0; d < rank; d++) {
      dims[d] = rng_int(0, 4) == 0 ? 1 : rng_int(2, rank > 4 ? 4 : 9);
      reduce[d] = (int)rng_int(0, 1);
    }
    check_reduce_case(rank, dims, reduce, iter % 3 == 0);
  }
}
END_TEST

START_TEST(reduce_common_and_long) {
  rng_seed(32);
  int64_t last[2] = {37, 300}, lead[3] = {300, 4, 70}, lone[1] = {10000}, tall[2] = {5000, 3};
  int r01[2] = {0, 1}, r10[2] = {1, 0}, r110[3] = {1, 1, 0}, r1[1] = {1};
  check_reduce_case(2, last, r01, 0);  /* the last dim */
  check_reduce_case(3, lead, r110, 1); /* the leading dims */
  check_reduce_case(1, lone, r1, 0);   /* everything, 10000 long */
  check_reduce_case(2, tall, r10, 0);  /* down 5000 rows, in bands */
  check_reduce_case(2, tall, r10, 1);  /* ties across bands: the first wins */
  int64_t bn[3] = {100, 3, 50};        /* BatchNorm-like: keep the middle dim */
  int r101[3] = {1, 0, 1};
  check_reduce_case(3, bn, r101, 0);
  check_reduce_case(3, bn, r101, 1);
  int64_t many[3] = {9, 700, 5}; /* more than one block of outputs */
  check_reduce_case(3, many, r101, 1);
  int64_t wide[2] = {3, 600}; /* kept inner dim wider than a chunk */
  check_reduce_case(2, wide, r10, 1);
  int64_t odd[4] = {3, 1, 5, 1};
  int none[4] = {0, 0, 0, 0}, all[4] = {1, 1, 1, 1}, mixed[4] = {1, 0, 0, 1};
  check_reduce_case(4, odd, none, 0); /* nothing reduced: a copy */
  check_reduce_case(4, odd, all, 0);
  check_reduce_case(4, odd, mixed, 0);
  int64_t alt[5] = {3, 4, 5, 6, 7};
  int pattern[5] = {1, 0, 1, 0, 1};
  check_reduce_case(5, alt, pattern, 1);
  check_reduce_case(0, alt, pattern, 0); /* rank 0: one element */
}
END_TEST

START_TEST(reduce_nan_and_empty) {
  int64_t dims[2] = {2, 3};
  int r01[2] = {0, 1};
  float x[6] = {1, NAN, 5, 2, 7, NAN}, y[2], g[2] = {10, 20}, dx[6];
  modelc_rt_reduce_max(y, x, 2, dims, r01);
  ck_assert(isnan(y[0]) && isnan(y[1])); /* NaN propagates, as in PyTorch */
  modelc_rt_reduce_max_grad(dx, x, g, 2, dims, r01);
  ck_assert(dx[1] == 10.0f && dx[5] == 20.0f && dx[0] == 0.0f && dx[4] == 0.0f);
  int64_t empty[2] = {3, 0};
  float ys[3] = {9, 9, 9};
  modelc_rt_reduce_sum(ys, x, 2, empty, r01);
  ck_assert(ys[0] == 0.0f && ys[2] == 0.0f);
  modelc_rt_reduce_max(ys, x, 2, empty, r01);
  ck_assert(isinf(ys[1]) && ys[1] < 0);
}
END_TEST

START_TEST(reduce_max_grad_finite_differences) {
  rng_seed(33);
  int64_t dims[3] = {3, 4, 5};
  int reduce[3] = {0, 1, 0};
  int64_t count = 60, out = 15;
  float *x = random_floats(count, 1.0f), *g = random_floats(out, 1.0f), y[15], dx[60];
  modelc_rt_reduce_max_grad(dx, x, g, 3, dims, reduce);
  double fd[60];
  const float h = 1e-3f; /* random values are far apart compared with h */
  for (int64_t i = 0; i < count; i++) {
    float keep = x[i];
    double lp = 0.0, lm = 0.0;
    x[i] = keep + h;
    modelc_rt_reduce_max(y, x, 3, dims, reduce);
    for (int k = 0; k < out; k++) lp += (double)g[k] * y[k];
    x[i] = keep - h;
    modelc_rt_reduce_max(y, x, 3, dims, reduce);
    for (int k = 0; k < out; k++) lm += (double)g[k] * y[k];
    x[i] = keep;
    fd[i] = (lp - lm) / (2.0 * h);
  }
  check_close(dx, fd, count, 1e-3, "reduce_max_grad vs fd");
  free(x);
  free(g);
}
END_TEST

/* ---- NLL loss ---- */

START_TEST(nll_loss_values) {
  rng_seed(41);
  int64_t rows = 6, classes = 5;
  float *logp = random_floats(rows * classes, 3.0f);
  int32_t t[6] = {0, 4, -100, 2, 4, -100};
  double want = -((double)logp[0] + logp[9] + logp[17] + logp[24]) / 4.0;
  float got = modelc_rt_nll_loss(logp, t, rows, classes, -100);
  ck_assert_msg(fabs(got - want) <= 1e-6 * fmax(1.0, fabs(want)), "%g vs %g", (double)got, want);
  /* gradient: -g/kept at each kept target, against finite differences */
  float dl[30];
  modelc_rt_nll_loss_grad(dl, t, 2.0f, rows, classes, -100);
  double fd[30];
  for (int i = 0; i < 30; i++) {
    float keep = logp[i];
    logp[i] = keep + 0.25f;
    double lp = modelc_rt_nll_loss(logp, t, rows, classes, -100);
    logp[i] = keep - 0.25f;
    double lm = modelc_rt_nll_loss(logp, t, rows, classes, -100);
    logp[i] = keep;
    fd[i] = 2.0 * (lp - lm) / 0.5;
  }
  check_close(dl, fd, 30, 1e-5, "nll grad vs fd");
  ck_assert(dl[0] == -0.5f && dl[1] == 0.0f && dl[10] == 0.0f);
  /* all ignored: 0 and a zero gradient */
  int32_t none[2] = {-1, -1};
  ck_assert(modelc_rt_nll_loss(logp, none, 2, classes, -1) == 0.0f);
  modelc_rt_nll_loss_grad(dl, none, 1.0f, 2, classes, -1);
  for (int i = 0; i < 10; i++) ck_assert(dl[i] == 0.0f);
  /* out of range and not ignore_index: NaN */
  int32_t bad[2] = {1, 5}, neg[2] = {-3, 1};
  ck_assert(isnan(modelc_rt_nll_loss(logp, bad, 2, classes, -100)));
  ck_assert(isnan(modelc_rt_nll_loss(logp, neg, 2, classes, -100)));
  free(logp);
}
END_TEST

/* ---- embedding ---- */

START_TEST(gather_and_grad) {
  rng_seed(51);
  int64_t num = 7, dim = 300, count = 9;
  float *table = random_floats(num * dim, 1.0f), *out = malloc((size_t)(count * dim) * 4);
  int32_t ids[9] = {3, 0, 6, 3, 3, 1, 6, 0, 5};
  ck_assert_int_eq(modelc_rt_check_ids(ids, count, num), 0);
  int32_t bad[3] = {1, 7, 2}, neg[2] = {0, -1};
  ck_assert_int_eq(modelc_rt_check_ids(bad, 3, num), -1);
  ck_assert_int_eq(modelc_rt_check_ids(neg, 2, num), -1);
  ck_assert_int_eq(modelc_rt_check_ids(ids, 0, num), 0);
  modelc_rt_gather(out, table, ids, count, dim);
  for (int64_t i = 0; i < count; i++)
    ck_assert(memcmp(out + i * dim, table + ids[i] * dim, (size_t)dim * 4) == 0);
  /* gather_grad adds g rows; repeated ids sum */
  float *g = random_floats(count * dim, 1.0f), *dt = calloc((size_t)(num * dim), 4);
  double *want = new_doubles(num * dim);
  for (int64_t i = 0; i < num * dim; i++) dt[i] = 0.5f;
  for (int64_t i = 0; i < num * dim; i++) want[i] = 0.5;
  for (int64_t i = 0; i < count; i++)
    for (int64_t j = 0; j < dim; j++) want[ids[i] * dim + j] += g[i * dim + j];
  modelc_rt_gather_grad(dt, ids, g, count, dim);
  check_close(dt, want, num * dim, 1e-6, "gather_grad");
  /* finite differences of sum(g * gather(table)) for a few table entries */
  for (int64_t e = 0; e < num * dim; e += 97) {
    float keep = table[e];
    double lp = 0, lm = 0;
    table[e] = keep + 0.5f;
    modelc_rt_gather(out, table, ids, count, dim);
    for (int64_t k = 0; k < count * dim; k++) lp += (double)g[k] * out[k];
    table[e] = keep - 0.5f;
    modelc_rt_gather(out, table, ids, count, dim);
    for (int64_t k = 0; k < count * dim; k++) lm += (double)g[k] * out[k];
    table[e] = keep;
    double fd = (lp - lm) / 1.0;
    ck_assert_msg(fabs(fd - (dt[e] - 0.5)) < 1e-4, "gather fd at %lld", (long long)e);
  }
  free(table);
  free(out);
  free(g);
  free(dt);
  free(want);
}
END_TEST

/* ---- rope ---- */

static void ref_rope(double *y, const float *x, int64_t outer, int64_t t, int64_t hd, double base,
                     double sign) {
  int64_t h = hd / 2;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t p = 0; p < t; p++) {
      const float *xr = x + (o * t + p) * hd;
      double *yr = y + (o * t + p) * hd;
      for (int64_t i = 0; i < h; i++) {
        double a = (double)p * pow(base, -2.0 * (double)i / (double)hd);
        double c = cos(a), s = sign * sin(a);
        yr[i] = xr[i] * c - xr[i + h] * s;
        yr[i + h] = xr[i + h] * c + xr[i] * s;
      }
      if (hd % 2) yr[hd - 1] = xr[hd - 1];
    }
}

/* PyTorch 1.13, float64, by this script (x[i] = ((7 i + 3) % 13 - 6) / 4):
 *   x = seq([2, 5, 6], 7, 3, 13, 4).double(); T, hd = 5, 6
 *   inv = 10000.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
 *   ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
 *   cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
 *   rot = torch.cat([-x[..., hd // 2:], x[..., :hd // 2]], -1)
 *   print((x * cos + rot * sin).float()) */
static const float torch_rope_y[60] = {
    -0.75,
    1,
    -0.5,
    1.25,
    -0.25,
    1.5,
    1.05183876,
    -1.52158403,
    0.252153844,
    -0.675377905,
    0.429862648,
    -0.999459088,
    0.142538592,
    -0.862643778,
    1.00106788,
    0.890046477,
    1.17509389,
    -0.245688826,
    -1.5202688,
    0.173497632,
    -1.50320029,
    -0.0358181112,
    -1.23790085,
    0.490294665,
    1.41044617,
    0.829409838,
    -0.760744214,
    0.103158876,
    -0.352957934,
    1.24349034,
    -0.25,
    1.5,
    0,
    -1.5,
    0.25,
    -1.25,
    0.901254416,
    -1.04532218,
    0.751075447,
    0.0155087626,
    0.952523768,
    -0.498383015,
    -0.520183563,
    -0.109875806,
    1.49890888,
    1.13662183,
    -1.516716,
    0.256460965,
    1.13165057,
    0.5992589,
    -1.00644243,
    -0.91889441,
    -0.673341453,
    0.993515849,
    1.46202552,
    1.22851741,
    -0.237064272,
    -0.602064192,
    0.2307484,
    -1.50209868,
};

START_TEST(rope_against_torch_and_reference) {
  float x[60], y[60];
  for (int i = 0; i < 60; i++) x[i] = (float)((7 * i + 3) % 13 - 6) / 4.0f;
  modelc_rt_rope(y, x, 2, 5, 6, 10000.0f);
  check_close_f(y, torch_rope_y, 60, 1e-5, "rope vs torch");
  rng_seed(61);
  static const int64_t shapes[][3] = {{3, 7, 8}, {1, 1, 2}, {2, 33, 64}, {4, 5, 7}, {1, 9, 600}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int64_t outer = shapes[s][0], t = shapes[s][1], hd = shapes[s][2], count = outer * t * hd;
    float *xs = random_floats(count, 1.0f), *ys = malloc((size_t)count * 4);
    double *want = new_doubles(count);
    ref_rope(want, xs, outer, t, hd, 500.0, 1.0);
    modelc_rt_rope(ys, xs, outer, t, hd, 500.0f);
    check_close(ys, want, count, 1e-5, "rope");
    ref_rope(want, xs, outer, t, hd, 500.0, -1.0);
    modelc_rt_rope_grad(ys, xs, outer, t, hd, 500.0f);
    check_close(ys, want, count, 1e-5, "rope_grad");
    /* the gradient undoes the rotation; in place works */
    modelc_rt_rope(ys, xs, outer, t, hd, 500.0f);
    modelc_rt_rope_grad(ys, ys, outer, t, hd, 500.0f);
    check_close_f(ys, xs, count, 1e-5, "rope_grad(rope(x))");
    free(xs);
    free(ys);
    free(want);
  }
}
END_TEST

START_TEST(rope_grad_finite_differences) {
  rng_seed(62);
  int64_t outer = 2, t = 4, hd = 6, count = 48;
  float *x = random_floats(count, 1.0f), *g = random_floats(count, 1.0f), y[48], dx[48];
  modelc_rt_rope_grad(dx, g, outer, t, hd, 100.0f);
  double fd[48];
  for (int64_t i = 0; i < count; i++) {
    float keep = x[i];
    double lp = 0, lm = 0;
    x[i] = keep + 0.125f;
    modelc_rt_rope(y, x, outer, t, hd, 100.0f);
    for (int k = 0; k < count; k++) lp += (double)g[k] * y[k];
    x[i] = keep - 0.125f;
    modelc_rt_rope(y, x, outer, t, hd, 100.0f);
    for (int k = 0; k < count; k++) lm += (double)g[k] * y[k];
    x[i] = keep;
    fd[i] = (lp - lm) / 0.25; /* rope is linear: exact up to rounding */
  }
  check_close(dx, fd, count, 1e-5, "rope_grad vs fd");
  free(x);
  free(g);
}
END_TEST

/* ---- attention mask ---- */

START_TEST(attention_mask_cases) {
  static const int64_t cases[][5] = {
      /* tq, tk, causal, window, global */
      {5, 5, 1, 0, 0}, {4, 6, 0, 0, 0}, {7, 7, 1, 3, 0},
      {7, 7, 0, 2, 1}, {6, 9, 1, 2, 2}, {1, 1, 1, 1, 0},
  };
  uint8_t mask[81];
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    int64_t tq = cases[c][0], tk = cases[c][1], window = cases[c][3], global = cases[c][4];
    int causal = (int)cases[c][2];
    memset(mask, 7, sizeof mask);
    modelc_rt_attention_mask(mask, tq, tk, causal, window, global);
    for (int64_t i = 0; i < tq; i++)
      for (int64_t j = 0; j < tk; j++) {
        int want = 1;
        if (causal && j > i) want = 0;
        if (window && llabs(i - j) >= window && i >= global && j >= global) want = 0;
        ck_assert_msg(mask[i * tk + j] == want, "case %zu mask[%lld,%lld]", c, (long long)i,
                      (long long)j);
      }
  }
  modelc_rt_attention_mask(mask, 3, 3, 1, 0, 0);
  static const uint8_t lower[9] = {1, 0, 0, 1, 1, 0, 1, 1, 1};
  ck_assert(memcmp(mask, lower, 9) == 0);
}
END_TEST

/* ---- permute ---- */

static void check_permute_case(int rank, const int64_t *dims, const int64_t *perm) {
  int64_t count = product(rank, dims);
  float *x = calloc((size_t)(count > 0 ? count : 1), 4),
        *y = calloc((size_t)(count > 0 ? count : 1), 4);
  for (int64_t i = 0; i < count; i++) x[i] = (float)i;
  modelc_rt_permute(y, x, rank, dims, perm);
  int64_t ydims[8], xstride[8], s = 1;
  for (int d = rank - 1; d >= 0; d--) {
    xstride[d] = s;
    s *= dims[d];
  }
  for (int d = 0; d < rank; d++) ydims[d] = dims[perm[d]];
  for (int64_t i = 0; i < count; i++) { /* y's index i -> x's offset */
    int64_t rest = i, off = 0;
    for (int d = rank - 1; d >= 0; d--) {
      off += rest % ydims[d] * xstride[perm[d]];
      rest /= ydims[d];
    }
    ck_assert_msg(y[i] == x[off], "permute rank %d: y[%lld] = %g, want %g", rank, (long long)i,
                  (double)y[i], (double)x[off]);
  }
  free(x);
  free(y);
}

START_TEST(permute_cases) {
  int64_t mat[2] = {100, 70}, p10[2] = {1, 0}, p01[2] = {0, 1};
  check_permute_case(2, mat, p10); /* 2-D transpose, tiles with edges */
  check_permute_case(2, mat, p01); /* identity */
  int64_t bthd[4] = {2, 33, 4, 16}, p0213[4] = {0, 2, 1, 3}, p0231[4] = {0, 2, 3, 1};
  check_permute_case(4, bthd, p0213); /* [B,T,H,D] -> [B,H,T,D] */
  check_permute_case(4, bthd, p0231);
  int64_t batch[3] = {3, 40, 37}, p021[3] = {0, 2, 1}, p120[3] = {1, 2, 0}, p201[3] = {2, 0, 1};
  check_permute_case(3, batch, p021); /* batched transpose of the last two */
  check_permute_case(3, batch, p120);
  check_permute_case(3, batch, p201);
  int64_t ones[4] = {1, 5, 1, 3}, p3120[4] = {3, 1, 2, 0};
  check_permute_case(4, ones, p3120);
  int64_t scalar[1] = {1}, p0[1] = {0};
  check_permute_case(1, scalar, p0);
  check_permute_case(0, scalar, p0);
  int64_t empty[3] = {2, 0, 3};
  check_permute_case(3, empty, p201);
  rng_seed(71);
  for (int iter = 0; iter < 200; iter++) {
    int rank = (int)rng_int(1, 7);
    int64_t dims[8], perm[8];
    for (int d = 0; d < rank; d++) {
      dims[d] = rng_int(0, 3) == 0 ? 1 : rng_int(2, rank > 4 ? 3 : 12);
      perm[d] = d;
    }
    for (int d = rank - 1; d > 0; d--) { /* Fisher-Yates */
      int e = (int)rng_int(0, d);
      int64_t t = perm[d];
      perm[d] = perm[e];
      perm[e] = t;
    }
    check_permute_case(rank, dims, perm);
  }
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("rt_kernels");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, gemm_against_reference);
  tcase_add_test(tc, gemm_long_k);
  tcase_add_test(tc, gemm_degenerate);
  tcase_add_test(tc, softmax_against_reference);
  tcase_add_test(tc, softmax_infinities);
  tcase_add_test(tc, softmax_grad_finite_differences);
  tcase_add_test(tc, reduce_random_shapes);
  tcase_add_test(tc, reduce_common_and_long);
  tcase_add_test(tc, reduce_nan_and_empty);
  tcase_add_test(tc, reduce_max_grad_finite_differences);
  tcase_add_test(tc, nll_loss_values);
  tcase_add_test(tc, gather_and_grad);
  tcase_add_test(tc, rope_against_torch_and_reference);
  tcase_add_test(tc, rope_grad_finite_differences);
  tcase_add_test(tc, attention_mask_cases);
  tcase_add_test(tc, permute_cases);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *runner = srunner_create(suite());
  srunner_run_all(runner, CK_NORMAL);
  int failed = srunner_ntests_failed(runner);
  srunner_free(runner);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
