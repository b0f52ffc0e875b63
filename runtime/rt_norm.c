/* rt_norm.c: layernorm and rmsnorm as one kernel each way (fused_norm,
 * made by ir/fuse_norm.c), over rows of d values.
 *
 *   forward   mean = sum(x) / d (0 for rms), var = sum((x - mean)^2) / d
 *             (rms: sum(x^2) / d), rstd = 1 / sqrt(var + eps),
 *             y = (x - mean) * rstd * w (+ b); mean and rstd are kept
 *             per row for the backward.
 *   backward  xhat = (x - mean) * rstd, dxhat = dy * w,
 *             dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat xhat))
 *             (rms: without the mean(dxhat) term), plus dr when given
 *             (the residual stream's gradient, folded in);
 *             dw = column sums of dy * xhat, db = column sums of dy.
 *
 * Row sums accumulate in double. Rows are independent (OpenMP over
 * rows); the column sums go over blocks of columns, each summing every
 * row in order, so the result does not depend on the thread count. */
#include "modelc_rt.h"

#include <math.h>

#ifdef _OPENMP
#define NORM_OMP(directive) _Pragma(directive)
#else
#define NORM_OMP(directive)
#endif

enum { NORM_PARALLEL_MIN = 1 << 14, NORM_COLUMN_BLOCK = 64 };

void modelc_rt_norm(modelc_rt_real *y, modelc_rt_real *mean, modelc_rt_real *rstd,
                    const modelc_rt_real *x, const modelc_rt_real *w, const modelc_rt_real *b,
                    int64_t rows, int64_t d, double eps, int rms) {
  NORM_OMP("omp parallel for if(rows * d >= NORM_PARALLEL_MIN)")
  for (int64_t r = 0; r < rows; r++) {
    const modelc_rt_real *xr = x + r * d;
    modelc_rt_real *yr = y + r * d;
    double mu = 0.0, var = 0.0;
    if (!rms) {
      for (int64_t j = 0; j < d; j++) mu += xr[j];
      mu /= (double)d;
    }
    for (int64_t j = 0; j < d; j++) {
      double c = xr[j] - mu;
      var += c * c;
    }
    modelc_rt_real m = (modelc_rt_real)mu;
    modelc_rt_real s = (modelc_rt_real)(1.0 / sqrt(var / (double)d + eps));
    mean[r] = m;
    rstd[r] = s;
    if (b)
      for (int64_t j = 0; j < d; j++) yr[j] = (xr[j] - m) * s * w[j] + b[j];
    else
      for (int64_t j = 0; j < d; j++) yr[j] = (xr[j] - m) * s * w[j];
  }
}

void modelc_rt_norm_grad(modelc_rt_real *dx, modelc_rt_real *dw, modelc_rt_real *db,
                         const modelc_rt_real *dy, const modelc_rt_real *x,
                         const modelc_rt_real *mean, const modelc_rt_real *rstd,
                         const modelc_rt_real *w, const modelc_rt_real *dr, int64_t rows, int64_t d,
                         int rms) {
  NORM_OMP("omp parallel for if(rows * d >= NORM_PARALLEL_MIN)")
  for (int64_t r = 0; r < rows; r++) {
    const modelc_rt_real *xr = x + r * d, *gr = dy + r * d;
    modelc_rt_real *out = dx + r * d, m = mean[r], s = rstd[r];
    double sum_g = 0.0, sum_gx = 0.0; /* of dxhat and dxhat * xhat */
    for (int64_t j = 0; j < d; j++) {
      double g = (double)gr[j] * w[j];
      sum_g += g;
      sum_gx += g * ((xr[j] - m) * s);
    }
    modelc_rt_real a = rms ? 0.0f : (modelc_rt_real)(sum_g / (double)d);
    modelc_rt_real c = (modelc_rt_real)(sum_gx / (double)d);
    if (dr) {
      const modelc_rt_real *rr = dr + r * d;
      for (int64_t j = 0; j < d; j++)
        out[j] = s * (gr[j] * w[j] - a - (xr[j] - m) * s * c) + rr[j];
    } else {
      for (int64_t j = 0; j < d; j++) out[j] = s * (gr[j] * w[j] - a - (xr[j] - m) * s * c);
    }
  }
  int64_t blocks = (d + NORM_COLUMN_BLOCK - 1) / NORM_COLUMN_BLOCK;
  NORM_OMP("omp parallel for if(rows * d >= NORM_PARALLEL_MIN)")
  for (int64_t blk = 0; blk < blocks; blk++) {
    int64_t j0 = blk * NORM_COLUMN_BLOCK;
    int64_t n = d - j0 < NORM_COLUMN_BLOCK ? d - j0 : NORM_COLUMN_BLOCK;
    double sw[NORM_COLUMN_BLOCK] = {0}, sb[NORM_COLUMN_BLOCK] = {0};
    for (int64_t r = 0; r < rows; r++) {
      const modelc_rt_real *xr = x + r * d + j0, *gr = dy + r * d + j0;
      modelc_rt_real m = mean[r], s = rstd[r];
      for (int64_t j = 0; j < n; j++) {
        sw[j] += (double)gr[j] * ((xr[j] - m) * s);
        sb[j] += gr[j];
      }
    }
    for (int64_t j = 0; j < n; j++) {
      dw[j0 + j] = (modelc_rt_real)sw[j];
      db[j0 + j] = (modelc_rt_real)sb[j];
    }
  }
}
