/* test_rt_conv.c: conv2d and its gradients, max and average pooling,
 * nearest and bilinear upsampling, each against a naive reference in
 * double on shapes with groups, strides, padding, dilation, non-square
 * kernels and size-1 dims; gradients against finite differences of the
 * forward kernel and (for the linear ops) the adjoint identity
 * <f(x), g> = <x, f'(g)>; and small cases against PyTorch. conv_concat's
 * kernels against conv2d over the materialised concatenation of the
 * upsampled parts. */
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

static float rng_float(void) { return (float)(rng_next() >> 8) / 8388608.0f - 1.0f; } /* [-1, 1) */

static float *random_floats(int64_t n) {
  float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
  for (int64_t i = 0; i < n; i++) x[i] = rng_float();
  return x;
}

/* The inputs of the PyTorch cases: x[i] = ((i a + b) % m - m/2) / d. */
static float *seq(int64_t n, int a, int b, int m, float d) {
  float *x = malloc((size_t)n * sizeof *x);
  for (int64_t i = 0; i < n; i++) x[i] = (float)((i * a + b) % m - m / 2) / d;
  return x;
}

static double *new_doubles(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(double)); }

/* |got - want| <= tol * max(scale[i] or 1, |want|). */
static void check_close_scaled(const float *got, const double *want, const double *scale, int64_t n,
                               double tol, const char *what) {
  for (int64_t i = 0; i < n; i++) {
    double err = fabs((double)got[i] - want[i]);
    double lim = tol * fmax(scale ? scale[i] : 1.0, fabs(want[i]));
    ck_assert_msg(err <= lim || (isinf(want[i]) && got[i] == want[i]),
                  "%s[%lld]: got %.9g, want %.9g (err %.3g)", what, (long long)i, (double)got[i],
                  want[i], err);
  }
}

static void check_close(const float *got, const double *want, int64_t n, double tol,
                        const char *what) {
  check_close_scaled(got, want, NULL, n, tol, what);
}

static void check_close_f(const float *got, const float *want, int64_t n, double tol,
                          const char *what) {
  double *w = new_doubles(n);
  for (int64_t i = 0; i < n; i++) w[i] = want[i];
  check_close(got, w, n, tol, what);
  free(w);
}

static double dot(const float *a, const float *b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

/* ---- convolution ---- */

static modelc_rt_conv conv_make(int64_t n, int64_t c, int64_t h, int64_t w, int64_t o, int64_t kh,
                                int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                                int64_t dh, int64_t dw, int64_t groups) {
  modelc_rt_conv p = {n, c, h, w, o, kh, kw, 0, 0, sh, sw, ph, pw, dh, dw, groups};
  p.oh = (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
  p.ow = (w + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
  return p;
}

static int64_t conv_x_count(const modelc_rt_conv *p) { return p->n * p->c * p->h * p->w; }
static int64_t conv_w_count(const modelc_rt_conv *p) {
  return p->o * (p->c / p->groups) * p->kh * p->kw;
}
static int64_t conv_y_count(const modelc_rt_conv *p) { return p->n * p->o * p->oh * p->ow; }

/* y, dx, dw in double, with |terms| sums for the tolerance. */
static void ref_conv(const modelc_rt_conv *p, const float *x, const float *w, const float *g,
                     double *y, double *ymag, double *dx, double *dxmag, double *dw,
                     double *dwmag) {
  int64_t cg = p->c / p->groups, og = p->o / p->groups;
  for (int64_t n = 0; n < p->n; n++)
    for (int64_t oc = 0; oc < p->o; oc++)
      for (int64_t c = 0; c < cg; c++)
        for (int64_t i = 0; i < p->kh; i++)
          for (int64_t j = 0; j < p->kw; j++)
            for (int64_t oy = 0; oy < p->oh; oy++)
              for (int64_t ox = 0; ox < p->ow; ox++) {
                int64_t iy = oy * p->stride_h - p->pad_h + i * p->dil_h;
                int64_t ix = ox * p->stride_w - p->pad_w + j * p->dil_w;
                if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue;
                int64_t xi = ((n * p->c + oc / og * cg + c) * p->h + iy) * p->w + ix;
                int64_t wi = ((oc * cg + c) * p->kh + i) * p->kw + j;
                int64_t yi = ((n * p->o + oc) * p->oh + oy) * p->ow + ox;
                y[yi] += (double)x[xi] * w[wi];
                ymag[yi] += fabs((double)x[xi] * w[wi]);
                dx[xi] += (double)g[yi] * w[wi];
                dxmag[xi] += fabs((double)g[yi] * w[wi]);
                dw[wi] += (double)x[xi] * g[yi];
                dwmag[wi] += fabs((double)x[xi] * g[yi]);
              }
}

static void check_conv_case(const modelc_rt_conv *p) {
  int64_t nx = conv_x_count(p), nw = conv_w_count(p), ny = conv_y_count(p);
  float *x = random_floats(nx), *w = random_floats(nw), *g = random_floats(ny);
  double *y = new_doubles(ny), *ym = new_doubles(ny), *dx = new_doubles(nx);
  double *dxm = new_doubles(nx), *dw = new_doubles(nw), *dwm = new_doubles(nw);
  ref_conv(p, x, w, g, y, ym, dx, dxm, dw, dwm);
  /* outputs start as NaN: every element must be written */
  float *got_y = malloc((size_t)ny * 4), *got_dx = malloc((size_t)nx * 4);
  float *got_dw = malloc((size_t)nw * 4);
  for (int64_t i = 0; i < ny; i++) got_y[i] = NAN;
  for (int64_t i = 0; i < nx; i++) got_dx[i] = NAN;
  for (int64_t i = 0; i < nw; i++) got_dw[i] = NAN;
  char what[160];
  snprintf(what, sizeof what,
           "conv n%lld c%lld %lldx%lld o%lld k%lldx%lld s%lld,%lld p%lld,%lld d%lld,%lld g%lld",
           (long long)p->n, (long long)p->c, (long long)p->h, (long long)p->w, (long long)p->o,
           (long long)p->kh, (long long)p->kw, (long long)p->stride_h, (long long)p->stride_w,
           (long long)p->pad_h, (long long)p->pad_w, (long long)p->dil_h, (long long)p->dil_w,
           (long long)p->groups);
  modelc_rt_conv2d(got_y, x, w, p);
  check_close_scaled(got_y, y, ym, ny, 1e-5, what);
  modelc_rt_conv2d_grad_input(got_dx, g, w, p);
  check_close_scaled(got_dx, dx, dxm, nx, 1e-5, "conv grad input");
  modelc_rt_conv2d_grad_weight(got_dw, x, g, p);
  check_close_scaled(got_dw, dw, dwm, nw, 1e-5, "conv grad weight");
  free(x);
  free(w);
  free(g);
  free(y);
  free(ym);
  free(dx);
  free(dxm);
  free(dw);
  free(dwm);
  free(got_y);
  free(got_dx);
  free(got_dw);
}

START_TEST(conv_against_reference) {
  rng_seed(1);
  modelc_rt_conv cases[] = {
      conv_make(1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1),     /* one element */
      conv_make(2, 3, 5, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1),     /* same padding, odd sizes */
      conv_make(2, 4, 9, 8, 6, 3, 2, 2, 1, 2, 1, 2, 1, 2),     /* groups, stride, dilation */
      conv_make(1, 6, 7, 7, 6, 3, 3, 2, 2, 1, 1, 1, 1, 6),     /* depthwise */
      conv_make(3, 4, 6, 5, 8, 1, 1, 1, 1, 0, 0, 1, 1, 2),     /* pointwise, groups */
      conv_make(2, 4, 6, 5, 8, 1, 1, 2, 2, 0, 0, 1, 1, 1),     /* 1x1 with stride 2 */
      conv_make(1, 2, 10, 3, 3, 5, 1, 3, 1, 2, 0, 2, 1, 1),    /* non-square kernel */
      conv_make(2, 3, 4, 4, 2, 2, 2, 1, 1, 2, 2, 2, 2, 1),     /* padding 2 and dilation 2 */
      conv_make(2, 3, 1, 17, 4, 1, 5, 1, 2, 0, 2, 1, 1, 1),    /* conv1d: H = 1 */
      conv_make(1, 2, 3, 3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1),     /* windows mostly padding */
      conv_make(20, 16, 28, 28, 8, 3, 3, 1, 1, 1, 1, 1, 1, 2), /* several image chunks */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_conv_case(&cases[i]);
}
END_TEST

/* PyTorch 1.13, by this script (seq as in seq() above):
 *   x = seq([2, 4, 5, 6], 7, 3, 13, 4).requires_grad_()
 *   w = seq([6, 2, 3, 2], 5, 1, 11, 8).requires_grad_()
 *   y = F.conv2d(x, w, stride=(2, 1), padding=(2, 1), dilation=(2, 1), groups=2)
 *   g = seq(list(y.shape), 3, 2, 7, 2); (y * g).sum().backward()
 *   print(y, x.grad, w.grad) */
static const float torch_conv_y[252] = {
    -0.625,   0.8125,   -1.46875, 1.9375,   -1.15625, 1.03125,  -1.5,     -0.125,   -1.375,
    1,        -0.6875,  0.46875,  -0.40625, -0.71875, -0.03125, 0.1875,   0.09375,  0,
    0.71875,  -0.59375, -1.09375, 0,        -0.03125, 0.03125,  -0.71875, 0.96875,  1.03125,
    0.375,    0.59375,  -0.1875,  0.03125,  -1.375,   0.0625,   -0.53125, 1,        -0.75,
    1.125,    -1.09375, 1.15625,  -2.28125, 1.1875,   0.46875,  -0.75,    -0.53125, -0.53125,
    1.09375,  0.6875,   0.6875,   0.53125,  -0.0625,  -0.71875, -0.59375, 0.34375,  -0.34375,
    1.40625,  -1.0625,  -0.09375, -1.375,   0.8125,   -1.46875, 1.9375,   -1.15625, 0.65625,
    -0.34375, -0.03125, -0.09375, -0.15625, -0.21875, -0.28125, -0.75,    -0.53125, -1.21875,
    0.8125,   -1.21875, 0.8125,   -1.21875, -0.0625,  -1.125,   -0.40625, -0.34375, -0.28125,
    -0.21875, -0.15625, -0.09375, -0.59375, 0.8125,   -1.375,   0.90625,  -1.28125, 1,
    -0.125,   0.90625,  -0.59375, -0.71875, -0.4375,  -0.5625,  -0.28125, -0.375,   0.375,
    -0.53125, -0.53125, -0.53125, -0.53125, -0.53125, 0.21875,  -0.15625, -1.09375, 1.125,
    -1.125,   1.09375,  -1.15625, 0.84375,  -0.40625, 0.03125,  -0.1875,  0,        -0.21875,
    -0.03125, -0.6875,  -0.875,   0.03125,  -0.03125, -0.09375, -0.15625, -0.21875, -0.15625,
    0.625,    -1.15625, 1.03125,  -1.25,    0.9375,   1.09375,  -1.0625,  -0.34375, 0.46875,
    -0.40625, -0.46875, -0.9375,  1.03125,  0.9375,   -0.625,   0.71875,  -0.59375, -0.6875,
    -0.78125, -1.28125, 0.4375,   0.15625,  0.96875,  1.03125,  1.09375,  -0.875,   -0.40625,
    0.40625,  -0.96875, 0.0625,   -0.53125, 1.71875,  1.53125,  -0.6875,  -0.03125, 1.3125,
    -2.28125, 1.1875,   -1.03125, 1.21875,  1.03125,  -0.125,   0.71875,  0.6875,   0.6875,
    0.6875,   1.09375,  -0.53125, -0.53125, -0.5625,  -0.34375, 1.40625,  -0.90625, 1.25,
    1.375,    -1,       -0.875,   1.9375,   -1.15625, 1.03125,  -1.25,    0.9375,   0.6875,
    -0.375,   -0.21875, -0.28125, -0.34375, -0.40625, -0.875,   0.71875,  -0.84375, 0.8125,
    -1.21875, 0.8125,   -1.21875, 0,        -0.5625,  -0.15625, -0.21875, -0.15625, -0.09375,
    -0.03125, 0.03125,  -0.875,   1,        -1.28125, 1,        -1.1875,  1.09375,  0.9375,
    0.25,     -0.375,   -0.5625,  -0.28125, -0.40625, -0.125,   1.375,    0.53125,  0.21875,
    -0.53125, -0.53125, -0.53125, -0.53125, -0.53125, 0.375,    -0.375,   1.09375,  -1.15625,
    1.0625,   -1.1875,  1.03125,  0.8125,   -0.59375, -0.21875, -0.03125, -0.25,    -0.0625,
    -0.6875,  1.28125,  -0.09375, -0.15625, -0.21875, -0.28125, -0.34375, -0.40625, -1.125,
};
static const float torch_conv_dx[240] = {
    -1,      1,     -0.5,    1.5,    0,       -1.5,    0,       0,       0,       0,
    0,       0,     -0.0625, 0.125,  -0.125,  0.0625,  -0.1875, 0,       0,       0,
    0,       0,     0,       0,      0.6875,  -0.375,  -0.125,  -1.1875, -0.9375, 1.5,
    1.3125,  -1.75, 1.3125,  -1.75,  1.3125,  1.3125,  0,       0,       0,       0,
    0,       0,     1.6875,  -2.625, 2.25,    -2.0625, 2.8125,  1.125,   0,       0,
    0,       0,     0,       0,      0.9375,  -1.75,   1.6875,  -1,      2.4375,  0.1875,
    -0.1875, 1,     -1.3125, -0.125, -2.4375, 0.9375,  0,       0,       0,       0,
    0,       0,     -0.5625, 1.5,    -1.6875, 0.375,   -2.8125, 0.5625,  0,       0,
    0,       0,     0,       0,      -0.5625, 1,       -0.9375, 0.625,   -1.3125, -0.1875,
    -1.3125, 1,     -0.1875, 2.125,  0.9375,  -2.4375, 0,       0,       0,       0,
    0,       0,     -1.5625, 1.5,    -0.6875, 2.375,   0.1875,  -2.4375, 0,       0,
    0,       0,     0,       0,      -1,      1,       -0.5,    1.5,     0,       -1.5,
    -1,      1,     -0.5,    1.5,    0,       -1.5,    0,       0,       0,       0,
    0,       0,     -0.0625, 0.125,  -0.125,  0.0625,  -0.1875, 0,       0,       0,
    0,       0,     0,       0,      0.6875,  -0.375,  -0.125,  -1.1875, -0.9375, 1.5,
    1.3125,  -1.75, 1.3125,  -1.75,  1.3125,  1.3125,  0,       0,       0,       0,
    0,       0,     1.6875,  -2.625, 2.25,    -2.0625, 2.8125,  1.125,   0,       0,
    0,       0,     0,       0,      0.9375,  -1.75,   1.6875,  -1,      2.4375,  0.1875,
    -0.1875, 1,     -1.3125, -0.125, -2.4375, 0.9375,  0,       0,       0,       0,
    0,       0,     -0.5625, 1.5,    -1.6875, 0.375,   -2.8125, 0.5625,  0,       0,
    0,       0,     0,       0,      -0.5625, 1,       -0.9375, 0.625,   -1.3125, -0.1875,
    -1.3125, 1,     -0.1875, 2.125,  0.9375,  -2.4375, 0,       0,       0,       0,
    0,       0,     -1.5625, 1.5,    -0.6875, 2.375,   0.1875,  -2.4375, 0,       0,
    0,       0,     0,       0,      -1,      1,       -0.5,    1.5,     0,       -1.5,
};
static const float torch_conv_dw[72] = {
    -3,    1,      -2.25, -0.375, -3.25, -3.125, 1.25,  1.25,   -4,     6.5,    -0.625, 2,
    -3,    1,      -2.25, -0.375, -3.25, -3.125, 1.25,  1.25,   -4,     6.5,    -0.625, 2,
    -3,    1,      -2.25, -0.375, -3.25, -3.125, 1.25,  1.25,   -4,     6.5,    -0.625, 2,
    0.625, -0.125, 0.75,  0.375,  0.375, 0.625,  -3.25, -3.125, -2.625, -4.125, 1.375,  -2.375,
    0.625, -0.125, 0.75,  0.375,  0.375, 0.625,  -3.25, -3.125, -2.625, -4.125, 1.375,  -2.375,
    0.625, -0.125, 0.75,  0.375,  0.375, 0.625,  -3.25, -3.125, -2.625, -4.125, 1.375,  -2.375,
};

START_TEST(conv_against_torch) {
  modelc_rt_conv p = conv_make(2, 4, 5, 6, 6, 3, 2, 2, 1, 2, 1, 2, 1, 2);
  ck_assert(p.oh == 3 && p.ow == 7);
  float *x = seq(240, 7, 3, 13, 4), *w = seq(72, 5, 1, 11, 8), *g = seq(252, 3, 2, 7, 2);
  float y[252], dx[240], dw[72];
  modelc_rt_conv2d(y, x, w, &p);
  check_close_f(y, torch_conv_y, 252, 1e-5, "conv y vs torch");
  modelc_rt_conv2d_grad_input(dx, g, w, &p);
  check_close_f(dx, torch_conv_dx, 240, 1e-5, "conv dx vs torch");
  modelc_rt_conv2d_grad_weight(dw, x, g, &p);
  check_close_f(dw, torch_conv_dw, 72, 1e-5, "conv dw vs torch");
  free(x);
  free(w);
  free(g);
}
END_TEST

/* Central differences of sum(g * conv(x, w)) in x and in w. Conv is
 * linear in each, so the differences are exact up to rounding. */
START_TEST(conv_grads_finite_differences) {
  rng_seed(2);
  modelc_rt_conv p = conv_make(2, 4, 5, 4, 4, 3, 2, 2, 1, 1, 2, 1, 2, 2);
  int64_t nx = conv_x_count(&p), nw = conv_w_count(&p), ny = conv_y_count(&p);
  float *x = random_floats(nx), *w = random_floats(nw), *g = random_floats(ny);
  float *y = malloc((size_t)ny * 4), *dx = malloc((size_t)nx * 4), *dw = malloc((size_t)nw * 4);
  modelc_rt_conv2d_grad_input(dx, g, w, &p);
  modelc_rt_conv2d_grad_weight(dw, x, g, &p);
  double *fdx = new_doubles(nx), *fdw = new_doubles(nw);
  const float h = 0.25f;
  for (int64_t i = 0; i < nx; i++) {
    float keep = x[i];
    x[i] = keep + h;
    modelc_rt_conv2d(y, x, w, &p);
    double lp = dot(g, y, ny);
    x[i] = keep - h;
    modelc_rt_conv2d(y, x, w, &p);
    double lm = dot(g, y, ny);
    x[i] = keep;
    fdx[i] = (lp - lm) / (2.0 * h);
  }
  for (int64_t i = 0; i < nw; i++) {
    float keep = w[i];
    w[i] = keep + h;
    modelc_rt_conv2d(y, x, w, &p);
    double lp = dot(g, y, ny);
    w[i] = keep - h;
    modelc_rt_conv2d(y, x, w, &p);
    double lm = dot(g, y, ny);
    w[i] = keep;
    fdw[i] = (lp - lm) / (2.0 * h);
  }
  check_close(dx, fdx, nx, 1e-4, "conv dx vs fd");
  check_close(dw, fdw, nw, 1e-4, "conv dw vs fd");
  free(x);
  free(w);
  free(g);
  free(y);
  free(dx);
  free(dw);
  free(fdx);
  free(fdw);
}
END_TEST

/* ---- pooling ---- */

/* PyTorch's output size, with ceil_mode's rule that the last window
 * starts inside the input or the left padding. */
static modelc_rt_pool pool_make(int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
                                int64_t sh, int64_t sw, int64_t ph, int64_t pw, int ceil_mode) {
  modelc_rt_pool p = {n, c, h, w, 0, 0, kh, kw, sh, sw, ph, pw};
  int64_t span_h = h + 2 * ph - kh, span_w = w + 2 * pw - kw;
  p.oh = (ceil_mode ? (span_h + sh - 1) / sh : span_h / sh) + 1;
  p.ow = (ceil_mode ? (span_w + sw - 1) / sw : span_w / sw) + 1;
  if (ceil_mode && (p.oh - 1) * sh >= h + ph) p.oh--;
  if (ceil_mode && (p.ow - 1) * sw >= w + pw) p.ow--;
  return p;
}

/* Max (first maximum in row-major window order wins; padding is -inf)
 * and average (divisor counts padding, not what lies past it). */
static void ref_pool(const modelc_rt_pool *p, const float *x, const float *g, double *ymax,
                     double *dxmax, double *yavg, double *dxavg) {
  for (int64_t pl = 0; pl < p->n * p->c; pl++)
    for (int64_t oy = 0; oy < p->oh; oy++)
      for (int64_t ox = 0; ox < p->ow; ox++) {
        int64_t hs = oy * p->stride_h - p->pad_h, ws = ox * p->stride_w - p->pad_w;
        int64_t he = hs + p->kh < p->h + p->pad_h ? hs + p->kh : p->h + p->pad_h;
        int64_t we = ws + p->kw < p->w + p->pad_w ? ws + p->kw : p->w + p->pad_w;
        double divisor = (double)((he - hs) * (we - ws)), sum = 0.0, mx = -INFINITY;
        int64_t at = -1, yi = (pl * p->oh + oy) * p->ow + ox;
        for (int64_t iy = hs; iy < hs + p->kh; iy++)
          for (int64_t ix = ws; ix < ws + p->kw; ix++) {
            if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue;
            int64_t xi = (pl * p->h + iy) * p->w + ix;
            sum += x[xi];
            if (at < 0 || x[xi] > mx) {
              mx = x[xi];
              at = xi;
            }
          }
        ymax[yi] = mx;
        yavg[yi] = sum / divisor;
        if (at >= 0) dxmax[at] += g[yi];
        for (int64_t iy = hs; iy < hs + p->kh; iy++)
          for (int64_t ix = ws; ix < ws + p->kw; ix++)
            if (iy >= 0 && iy < p->h && ix >= 0 && ix < p->w)
              dxavg[(pl * p->h + iy) * p->w + ix] += g[yi] / divisor;
      }
}

static void check_pool_case(const modelc_rt_pool *p, int ties) {
  int64_t nx = p->n * p->c * p->h * p->w, ny = p->n * p->c * p->oh * p->ow;
  float *x = random_floats(nx), *g = random_floats(ny);
  if (ties)
    for (int64_t i = 0; i < nx; i++) x[i] = (float)(rng_next() % 3);
  double *ymax = new_doubles(ny), *dxmax = new_doubles(nx), *yavg = new_doubles(ny);
  double *dxavg = new_doubles(nx);
  ref_pool(p, x, g, ymax, dxmax, yavg, dxavg);
  float *y = malloc((size_t)ny * 4), *dx = malloc((size_t)nx * 4);
  for (int64_t i = 0; i < nx; i++) dx[i] = NAN;
  modelc_rt_maxpool2d(y, x, p);
  check_close(y, ymax, ny, 0.0, "maxpool");
  modelc_rt_maxpool2d_grad(dx, x, g, p);
  check_close(dx, dxmax, nx, 1e-6, "maxpool grad");
  modelc_rt_avgpool2d(y, x, p);
  check_close(y, yavg, ny, 1e-6, "avgpool");
  for (int64_t i = 0; i < nx; i++) dx[i] = NAN;
  modelc_rt_avgpool2d_grad(dx, g, p);
  check_close(dx, dxavg, nx, 1e-6, "avgpool grad");
  free(x);
  free(g);
  free(ymax);
  free(dxmax);
  free(yavg);
  free(dxavg);
  free(y);
  free(dx);
}

START_TEST(pool_against_reference) {
  rng_seed(3);
  modelc_rt_pool cases[] = {
      pool_make(2, 3, 8, 8, 2, 2, 2, 2, 0, 0, 0), /* the usual 2x2 */
      pool_make(1, 2, 5, 6, 3, 3, 2, 2, 1, 1, 0), /* padding */
      pool_make(1, 2, 5, 6, 3, 3, 2, 2, 1, 1, 1), /* ceil mode */
      pool_make(2, 1, 7, 5, 3, 2, 1, 2, 1, 1, 1), /* non-square, overlapping */
      pool_make(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0), /* one element */
      pool_make(1, 3, 9, 4, 4, 2, 3, 1, 2, 1, 1), /* padding 2, ceil mode */
      pool_make(3, 2, 6, 6, 6, 6, 6, 6, 0, 0, 0), /* global */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    check_pool_case(&cases[i], 0);
    check_pool_case(&cases[i], 1);
  }
}
END_TEST

/* PyTorch 1.13, by this script (seq as above):
 *   x = seq([1, 2, 5, 6], 4, 1, 5, 1).requires_grad_()   # values -2..2, many ties
 *   y = F.max_pool2d(x, 3, stride=2, padding=1)
 *   g = seq(list(y.shape), 3, 1, 7, 2); (y * g).sum().backward(); print(y, x.grad)
 *   x = seq([1, 2, 5, 6], 7, 3, 13, 4)
 *   print(F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=True)) */
static const float torch_maxpool_y[18] = {
    2, 2, 1, 2, 2, 2, 1, 2, 2, 2, 2, 1, 2, 2, 2, 1, 2, 2,
};
static const float torch_maxpool_dx[60] = {
    0, 0, 0.5, -1.5, 0, 0, 0, 0.5, 0,   0, 0, 0, 0, 0,   0, 0, 0, -0.5, 1, 0,
    0, 0, 0.5, 0,    0, 0, 0, -1,  0,   0, 0, 0, 0, 1.5, 0, 0, 0, -1,   0, 0,
    0, 0, 0,   0,    0, 0, 0, -1,  0.5, 0, 0, 0, 0, 0,   0, 0, 0, -1.5, 0, 0,
};
static const float torch_avgpool_y[24] = {
    -0.138888896,
    -0.0833333358,
    0.0833333358,
    0.0833333358,
    0,
    -0.444444448,
    -0.194444448,
    -0.125,
    0.138888896,
    -0.027777778,
    0.138888896,
    0.291666657,
    0.0833333358,
    -0.111111112,
    -0.305555552,
    -0.291666657,
    -0.027777778,
    0.055555556,
    -0.055555556,
    0.125,
    0,
    0.305555552,
    0.111111112,
    -0.0833333358,
};

START_TEST(pool_against_torch) {
  modelc_rt_pool p = pool_make(1, 2, 5, 6, 3, 3, 2, 2, 1, 1, 0);
  ck_assert(p.oh == 3 && p.ow == 3);
  float *x = seq(60, 4, 1, 5, 1), *g = seq(18, 3, 1, 7, 2), y[24], dx[60];
  modelc_rt_maxpool2d(y, x, &p);
  check_close_f(y, torch_maxpool_y, 18, 0.0, "maxpool vs torch");
  modelc_rt_maxpool2d_grad(dx, x, g, &p);
  check_close_f(dx, torch_maxpool_dx, 60, 0.0, "maxpool grad vs torch");
  free(x);
  modelc_rt_pool q = pool_make(1, 2, 5, 6, 3, 3, 2, 2, 1, 1, 1);
  ck_assert(q.oh == 3 && q.ow == 4);
  x = seq(60, 7, 3, 13, 4);
  modelc_rt_avgpool2d(y, x, &q);
  check_close_f(y, torch_avgpool_y, 24, 1e-6, "avgpool vs torch");
  free(x);
  free(g);
}
END_TEST

START_TEST(pool_nan_and_grads_finite_differences) {
  /* NaN wins the max (PyTorch) */
  modelc_rt_pool p = pool_make(1, 1, 2, 2, 2, 2, 2, 2, 0, 0, 0);
  float x[4] = {1, NAN, 3, 2}, y[1];
  modelc_rt_maxpool2d(y, x, &p);
  ck_assert(isnan(y[0]));
  /* finite differences with distinct values */
  rng_seed(4);
  modelc_rt_pool q = pool_make(2, 2, 5, 4, 3, 2, 2, 1, 1, 1, 1);
  int64_t nx = 80, ny = q.n * q.c * q.oh * q.ow;
  float *xs = random_floats(nx), *g = random_floats(ny), *ys = malloc((size_t)ny * 4), dx[80];
  for (int avg = 0; avg < 2; avg++) {
    if (avg)
      modelc_rt_avgpool2d_grad(dx, g, &q);
    else
      modelc_rt_maxpool2d_grad(dx, xs, g, &q);
    double fd[80];
    const float h = 1e-3f;
    for (int64_t i = 0; i < nx; i++) {
      float keep = xs[i];
      xs[i] = keep + h;
      (avg ? modelc_rt_avgpool2d : modelc_rt_maxpool2d)(ys, xs, &q);
      double lp = dot(g, ys, ny);
      xs[i] = keep - h;
      (avg ? modelc_rt_avgpool2d : modelc_rt_maxpool2d)(ys, xs, &q);
      double lm = dot(g, ys, ny);
      xs[i] = keep;
      fd[i] = (lp - lm) / (2.0 * h);
    }
    check_close(dx, fd, nx, 2e-3, avg ? "avgpool grad vs fd" : "maxpool grad vs fd");
  }
  free(xs);
  free(g);
  free(ys);
}
END_TEST

/* ---- upsampling ---- */

/* PyTorch's taps for align_corners=false given a scale factor. */
static void ref_taps(int64_t o, int64_t size, int64_t scale, int64_t *i0, int64_t *i1, double *l1) {
  float inv = (float)(1.0 / (double)scale);
  float src = (float)((double)inv * ((double)o + 0.5) - 0.5);
  if (src < 0.0f) src = 0.0f;
  *i0 = (int64_t)src;
  *i1 = *i0 < size - 1 ? *i0 + 1 : *i0;
  *l1 = (double)src - (double)*i0;
}

static void ref_upsample(double *y, const float *x, int64_t planes, int64_t h, int64_t w, int64_t s,
                         int bilinear) {
  int64_t oh = h * s, ow = w * s;
  for (int64_t pl = 0; pl < planes; pl++)
    for (int64_t oy = 0; oy < oh; oy++)
      for (int64_t ox = 0; ox < ow; ox++) {
        const float *xp = x + pl * h * w;
        double *out = y + (pl * oh + oy) * ow + ox;
        if (!bilinear) {
          *out = xp[oy / s * w + ox / s];
          continue;
        }
        int64_t y0, y1, x0, x1;
        double ly, lx;
        ref_taps(oy, h, s, &y0, &y1, &ly);
        ref_taps(ox, w, s, &x0, &x1, &lx);
        *out = (1 - ly) * ((1 - lx) * xp[y0 * w + x0] + lx * xp[y0 * w + x1]) +
               ly * ((1 - lx) * xp[y1 * w + x0] + lx * xp[y1 * w + x1]);
      }
}

START_TEST(upsample_against_reference) {
  rng_seed(5);
  static const int64_t cases[][4] = {
      {2, 3, 4, 2}, {1, 1, 1, 3}, {3, 5, 2, 3}, {1, 7, 9, 4}, {2, 1, 6, 2}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    int64_t planes = cases[c][0], h = cases[c][1], w = cases[c][2], s = cases[c][3];
    int64_t nx = planes * h * w, ny = nx * s * s;
    float *x = random_floats(nx), *g = random_floats(ny);
    float *y = malloc((size_t)ny * 4), *dx = malloc((size_t)nx * 4);
    double *want = new_doubles(ny);
    for (int bilinear = 0; bilinear < 2; bilinear++) {
      ref_upsample(want, x, planes, h, w, s, bilinear);
      (bilinear ? modelc_rt_upsample_bilinear : modelc_rt_upsample_nearest)(y, x, planes, h, w, s);
      check_close(y, want, ny, 1e-6, bilinear ? "bilinear" : "nearest");
      /* the gradient is the adjoint: <up(x), g> = <x, up_grad(g)> */
      for (int64_t i = 0; i < nx; i++) dx[i] = NAN;
      (bilinear ? modelc_rt_upsample_bilinear_grad : modelc_rt_upsample_nearest_grad)(dx, g, planes,
                                                                                      h, w, s);
      double lhs = dot(y, g, ny), rhs = dot(x, dx, nx);
      ck_assert_msg(fabs(lhs - rhs) <= 1e-5 * fmax(1.0, fabs(lhs)), "%s adjoint: %g vs %g",
                    bilinear ? "bilinear" : "nearest", lhs, rhs);
    }
    /* and elementwise: dx[i] = <up(e_i), g> */
    for (int64_t i = 0; i < nx; i++) {
      float *e = calloc((size_t)nx, 4);
      e[i] = 1.0f;
      modelc_rt_upsample_bilinear(y, e, planes, h, w, s);
      double col = dot(y, g, ny);
      free(e);
      ck_assert_msg(fabs(col - dx[i]) <= 1e-5 * fmax(1.0, fabs(col)), "bilinear grad[%lld]",
                    (long long)i);
    }
    free(x);
    free(g);
    free(y);
    free(dx);
    free(want);
  }
}
END_TEST

/* PyTorch 1.13, by this script (seq as above):
 *   x = seq([1, 2, 3, 4], 5, 2, 9, 4).requires_grad_()
 *   y = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
 *   g = seq(list(y.shape), 3, 1, 7, 2); (y * g).sum().backward(); print(y, x.grad)
 *   x = seq([1, 1, 2, 3], 5, 2, 9, 4)
 *   print(F.interpolate(x, scale_factor=3, mode="bilinear", align_corners=False)) */
static const float torch_bilinear2_y[96] = {
    -0.5,      -0.1875,   0.4375,    0.5,       0,         0.0625,    0.6875,   1,       -0.375,
    -0.203125, 0.140625,  0.203125,  -0.015625, 0.046875,  0.390625,  0.5625,   -0.125,  -0.234375,
    -0.453125, -0.390625, -0.046875, 0.015625,  -0.203125, -0.3125,   0.125,    -0.125,  -0.625,
    -0.5625,   0.0625,    0.125,     -0.375,    -0.625,    0.375,     0.125,    -0.375,  -0.3125,
    0.3125,    0.375,     -0.125,    -0.375,    0.5,       0.25,      -0.25,    -0.1875, 0.4375,
    0.5,       0,         -0.25,     1,         0.75,      0.25,      -0.25,    -0.75,   -0.6875,
    -0.0625,   0.25,      0.5625,    0.453125,  0.234375,  -0.125,    -0.625,   -0.5625, 0.0625,
    0.375,     -0.3125,   -0.140625, 0.203125,  0.125,     -0.375,    -0.3125,  0.3125,  0.625,
    -0.625,    -0.3125,   0.3125,    0.375,     -0.125,    -0.203125, 0.140625, 0.3125,  -0.375,
    -0.0625,   0.5625,    0.625,     0.125,     -0.234375, -0.453125, -0.5625,  -0.25,   0.0625,
    0.6875,    0.75,      0.25,      -0.25,     -0.75,     -1,
};
static const float torch_bilinear2_dx[24] = {
    -1.75,   0.09375, 1.375, -0.71875, 0.09375,  1.28125, -0.5,   -1.5,
    1.28125, -0.375,  -1.5,  1.21875,  -0.53125, -1.3125, 1.5,    0.71875,
    -1.3125, 1.1875,  0.5,   -1.375,   1.84375,  0.625,   -1.375, 0.03125,
};
static const float torch_bilinear3_y[54] = {
    -0.5,
    -0.5,
    -0.0833332837,
    0.333333373,
    0.74999994,
    0.416666627,
    0.0833332539,
    -0.25,
    -0.25,
    -0.5,
    -0.49999997,
    -0.0833332762,
    0.333333373,
    0.74999994,
    0.416666627,
    0.0833332464,
    -0.25000003,
    -0.25,
    5.96046448e-08,
    6.70552254e-08,
    0.166666716,
    0.333333343,
    0.499999911,
    0.166666597,
    -0.166666776,
    -0.5,
    -0.5,
    0.5,
    0.50000006,
    0.416666657,
    0.333333313,
    0.249999925,
    -0.083333388,
    -0.416666746,
    -0.75,
    -0.75,
    1,
    1,
    0.666666567,
    0.333333284,
    -4.47034836e-08,
    -0.333333373,
    -0.666666746,
    -1,
    -0.99999994,
    1,
    1,
    0.666666627,
    0.333333313,
    -4.47034836e-08,
    -0.333333373,
    -0.666666746,
    -1,
    -1,
};

START_TEST(upsample_against_torch) {
  float *x = seq(24, 5, 2, 9, 4), *g = seq(96, 3, 1, 7, 2), y[96], dx[24];
  modelc_rt_upsample_bilinear(y, x, 2, 3, 4, 2);
  check_close_f(y, torch_bilinear2_y, 96, 1e-6, "bilinear x2 vs torch");
  modelc_rt_upsample_bilinear_grad(dx, g, 2, 3, 4, 2);
  check_close_f(dx, torch_bilinear2_dx, 24, 1e-6, "bilinear x2 grad vs torch");
  free(x);
  x = seq(6, 5, 2, 9, 4);
  modelc_rt_upsample_bilinear(y, x, 1, 2, 3, 3);
  check_close_f(y, torch_bilinear3_y, 54, 1e-6, "bilinear x3 vs torch");
  /* nearest: each value repeated in an s x s block */
  modelc_rt_upsample_nearest(y, x, 1, 2, 3, 3);
  for (int i = 0; i < 54; i++) ck_assert(y[i] == x[(i / 9 / 3) * 3 + (i % 9) / 3]);
  free(x);
  free(g);
}
END_TEST

START_TEST(upsample_grads_finite_differences) {
  rng_seed(6);
  int64_t planes = 2, h = 3, w = 2, s = 3, nx = 12, ny = 108;
  float *x = random_floats(nx), *g = random_floats(ny), y[108], dx[12];
  for (int bilinear = 0; bilinear < 2; bilinear++) {
    void (*fwd)(float *, const float *, int64_t, int64_t, int64_t, int64_t) =
        bilinear ? modelc_rt_upsample_bilinear : modelc_rt_upsample_nearest;
    (bilinear ? modelc_rt_upsample_bilinear_grad : modelc_rt_upsample_nearest_grad)(dx, g, planes,
                                                                                    h, w, s);
    double fd[12];
    for (int64_t i = 0; i < nx; i++) {
      float keep = x[i];
      x[i] = keep + 0.25f;
      fwd(y, x, planes, h, w, s);
      double lp = dot(g, y, ny);
      x[i] = keep - 0.25f;
      fwd(y, x, planes, h, w, s);
      double lm = dot(g, y, ny);
      x[i] = keep;
      fd[i] = (lp - lm) / 0.5;
    }
    check_close(dx, fd, nx, 1e-5, bilinear ? "bilinear grad vs fd" : "nearest grad vs fd");
  }
  free(x);
  free(g);
}
END_TEST

/* ---- conv_concat: against conv2d over the materialised concatenation ---- */

typedef struct cat_case {
  int64_t n, h, w, o, kh, kw, sh, sw, ph, pw, dh, dw;
  int parts;
  int64_t c[3], up[3];
} cat_case;

static void check_close_floats(const float *got, const float *want, int64_t n, double tol,
                               const char *what) {
  for (int64_t i = 0; i < n; i++)
    ck_assert_msg(fabs((double)got[i] - want[i]) <= tol * fmax(1.0, fabs((double)want[i])),
                  "%s[%lld]: got %.9g, want %.9g", what, (long long)i, (double)got[i],
                  (double)want[i]);
}

START_TEST(conv_cat_against_materialised) {
  static const cat_case cases[] = {
      /* the U-Net decoder: upsample(a) by 2, then the skip */
      {3, 6, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 2, {3, 2}, {2, 1}},
      /* three parts, two upsampled by 3, strided, dilated, rectangular */
      {2, 6, 9, 3, 3, 2, 2, 1, 1, 0, 1, 2, 3, {2, 1, 1}, {3, 1, 3}},
      /* one part: upsample alone; 1x1 kernel (not the pointwise shortcut) */
      {2, 4, 6, 5, 1, 1, 1, 1, 0, 0, 1, 1, 1, {3}, {2}},
      /* concat alone, stride 2, padding 2 */
      {1, 5, 5, 2, 3, 3, 2, 2, 2, 2, 1, 1, 2, {1, 4}, {1, 1}},
      /* many images: col is split into chunks */
      {40, 28, 28, 8, 3, 3, 1, 1, 1, 1, 1, 1, 2, {16, 8}, {2, 1}},
  };
  rng_seed(17);
  for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
    const cat_case *k = &cases[t];
    modelc_rt_conv_cat q = {.parts = k->parts};
    int64_t c = 0;
    for (int i = 0; i < k->parts; i++) q.channels[i] = k->c[i], q.up[i] = k->up[i], c += k->c[i];
    int64_t oh = (k->h + 2 * k->ph - k->dh * (k->kh - 1) - 1) / k->sh + 1;
    int64_t ow = (k->w + 2 * k->pw - k->dw * (k->kw - 1) - 1) / k->sw + 1;
    q.conv = (modelc_rt_conv){k->n, c, k->h, k->w, k->o, k->kh, k->kw, oh, ow,
                              k->sh, k->sw, k->ph, k->pw, k->dh, k->dw, 1};
    int64_t plane = k->h * k->w, nx = k->n * c * plane, ny = k->n * k->o * oh * ow;
    int64_t nw = k->o * c * k->kh * k->kw;
    float *parts[3] = {NULL, NULL, NULL}, *cat = malloc((size_t)nx * sizeof *cat);
    float *up = malloc((size_t)nx * sizeof *up);
    int64_t c0 = 0;
    for (int i = 0; i < k->parts; i++) { /* cat = concat(upsample(part i)) */
      int64_t ph = k->h / k->up[i], pw = k->w / k->up[i];
      parts[i] = random_floats(k->n * k->c[i] * ph * pw);
      modelc_rt_upsample_nearest(up, parts[i], k->n * k->c[i], ph, pw, k->up[i]);
      for (int64_t img = 0; img < k->n; img++)
        memcpy(cat + (img * c + c0) * plane, up + img * k->c[i] * plane,
               (size_t)(k->c[i] * plane) * sizeof *cat);
      c0 += k->c[i];
    }
    float *w = random_floats(nw), *g = random_floats(ny);
    float *y = malloc((size_t)ny * sizeof *y), *y_ref = malloc((size_t)ny * sizeof *y);
    modelc_rt_conv2d(y_ref, cat, w, &q.conv);
    modelc_rt_conv2d_cat(y, w, &q, parts[0], parts[1], parts[2]);
    check_close_floats(y, y_ref, ny, 1e-5, "conv2d_cat");
    float *dw = malloc((size_t)nw * sizeof *dw), *dw_ref = malloc((size_t)nw * sizeof *dw);
    modelc_rt_conv2d_grad_weight(dw_ref, cat, g, &q.conv);
    modelc_rt_conv2d_cat_grad_weight(dw, g, &q, parts[0], parts[1], parts[2]);
    check_close_floats(dw, dw_ref, nw, 1e-5, "conv2d_cat_grad_weight");
    float *dcat = malloc((size_t)nx * sizeof *dcat);
    modelc_rt_conv2d_grad_input(dcat, g, w, &q.conv);
    c0 = 0;
    for (int i = 0; i < k->parts; i++) { /* part i's channels of dcat, copies summed */
      int64_t ph = k->h / k->up[i], pw = k->w / k->up[i], np = k->n * k->c[i] * ph * pw;
      for (int64_t img = 0; img < k->n; img++)
        memcpy(up + img * k->c[i] * plane, dcat + (img * c + c0) * plane,
               (size_t)(k->c[i] * plane) * sizeof *up);
      float *dx = malloc((size_t)np * sizeof *dx), *dx_ref = malloc((size_t)np * sizeof *dx);
      modelc_rt_upsample_nearest_grad(dx_ref, up, k->n * k->c[i], ph, pw, k->up[i]);
      modelc_rt_conv2d_cat_grad_input(dx, g, w, &q, i);
      check_close_floats(dx, dx_ref, np, 1e-5, "conv2d_cat_grad_input");
      free(dx);
      free(dx_ref);
      c0 += k->c[i];
    }
    for (int i = 0; i < 3; i++) free(parts[i]);
    free(cat), free(up), free(w), free(g), free(y), free(y_ref), free(dw), free(dw_ref), free(dcat);
  }
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("rt_conv");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, conv_against_reference);
  tcase_add_test(tc, conv_against_torch);
  tcase_add_test(tc, conv_grads_finite_differences);
  tcase_add_test(tc, pool_against_reference);
  tcase_add_test(tc, pool_against_torch);
  tcase_add_test(tc, pool_nan_and_grads_finite_differences);
  tcase_add_test(tc, upsample_against_reference);
  tcase_add_test(tc, upsample_against_torch);
  tcase_add_test(tc, upsample_grads_finite_differences);
  tcase_add_test(tc, conv_cat_against_materialised);
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
