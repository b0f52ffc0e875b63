/* rt_loss.c: softmax cross-entropy in one pass over the logits, and the
 * gated linear unit's epilogue.
 *
 * Forward: each row's log-sum-exp (max, then the sum of exponentials in
 * double; exponentials by modelc_rt_exp_neg), the loss the mean of lse - x[target]
 * over rows whose target is not ignore_index, NaN when a target is out of
 * range (as nll_loss). Backward: dlogits = (e^(x - lse) - onehot) * g /
 * kept, written in one pass; no [rows, classes] tensor besides the logits
 * and their gradient. Rows run in parallel. */
#include "modelc_rt.h"

#include <string.h>

#ifdef _OPENMP
#define LOSS_PARALLEL_FOR _Pragma("omp parallel for schedule(static)")
#else
#define LOSS_PARALLEL_FOR
#endif

/* classes per block of exponentials (a buffer on the stack) */
#define LOSS_BLOCK 512

modelc_rt_real modelc_rt_softmax_ce(modelc_rt_real *lse, const modelc_rt_real *logits,
                                    const int32_t *targets, int64_t rows, int64_t classes,
                                    int64_t ignore_index) {
  LOSS_PARALLEL_FOR
  for (int64_t r = 0; r < rows; r++) {
    const modelc_rt_real *x = logits + r * classes;
    /* the maximum in eight running maxima (the order does not matter
     * for a maximum; eight independent chains instead of one) */
    modelc_rt_real m8[8];
    for (int l = 0; l < 8; l++) m8[l] = -INFINITY;
    int nan = 0;
    int64_t c8 = 0;
    for (; c8 + 8 <= classes; c8 += 8)
      for (int l = 0; l < 8; l++) {
        modelc_rt_real v = x[c8 + l];
        m8[l] = v > m8[l] ? v : m8[l];
        nan |= v != v;
      }
    for (; c8 < classes; c8++) {
      m8[0] = x[c8] > m8[0] ? x[c8] : m8[0];
      nan |= x[c8] != x[c8];
    }
    modelc_rt_real mx = m8[0];
    for (int l = 1; l < 8; l++) mx = m8[l] > mx ? m8[l] : mx;
    /* The exponentials a block at a time into a buffer (a loop that
     * vectorises), then summed in double in four running sums of fixed
     * order (element c to sum c % 4, the last len % 4 to the first), so
     * the result depends on neither the vector width nor the thread
     * count. */
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    modelc_rt_real e[LOSS_BLOCK];
    for (int64_t c0 = 0; c0 < classes; c0 += LOSS_BLOCK) {
      int64_t len = classes - c0 < LOSS_BLOCK ? classes - c0 : LOSS_BLOCK;
      MODELC_RT_SIMD
      for (int64_t j = 0; j < len; j++) e[j] = modelc_rt_exp_neg(x[c0 + j] - mx);
      int64_t j = 0;
      for (; j + 4 <= len; j += 4) {
        s0 += (double)e[j];
        s1 += (double)e[j + 1];
        s2 += (double)e[j + 2];
        s3 += (double)e[j + 3];
      }
      for (; j < len; j++) s0 += (double)e[j];
    }
    double sum = (s0 + s1) + (s2 + s3);
    lse[r] = nan ? NAN : mx + (modelc_rt_real)log(sum);
  }
  double total = 0.0;
  int64_t kept = 0;
  for (int64_t r = 0; r < rows; r++) {
    int64_t t = targets[r];
    if (t == ignore_index) continue;
    if (t < 0 || t >= classes) return NAN;
    total += (double)lse[r] - (double)logits[r * classes + t];
    kept++;
  }
  return kept ? (modelc_rt_real)(total / (double)kept) : 0.0f;
}

void modelc_rt_softmax_ce_grad(modelc_rt_real *dlogits, const modelc_rt_real *logits,
                               const modelc_rt_real *lse, const int32_t *targets, modelc_rt_real g,
                               int64_t rows, int64_t classes, int64_t ignore_index) {
  int64_t kept = 0;
  for (int64_t r = 0; r < rows; r++) kept += targets[r] != ignore_index;
  modelc_rt_real scale = kept ? (modelc_rt_real)((double)g / (double)kept) : 0.0f;
  LOSS_PARALLEL_FOR
  for (int64_t r = 0; r < rows; r++) {
    const modelc_rt_real *x = logits + r * classes;
    modelc_rt_real *d = dlogits + r * classes, l = lse[r];
    int64_t t = targets[r];
    if (t == ignore_index || !kept) {
      memset(d, 0, sizeof(modelc_rt_real) * (size_t)classes);
      continue;
    }
    MODELC_RT_SIMD
    for (int64_t c = 0; c < classes; c++) d[c] = modelc_rt_exp_neg(x[c] - l) * scale;
    if (t >= 0 && t < classes) d[t] -= scale;
  }
}

/* ---- gated linear unit ---- */

static inline modelc_rt_real glu_act(modelc_rt_real a, int act) {
  switch (act) {
  case 0: return modelc_rt_silu(a);
  case 1: return modelc_rt_gelu(a);
  case 2: return modelc_rt_gelu_tanh(a);
  default: return modelc_rt_sigmoid(a);
  }
}

static inline modelc_rt_real glu_act_grad(modelc_rt_real a, int act) {
  switch (act) {
  case 0: return modelc_rt_silu_grad(a);
  case 1: return modelc_rt_gelu_grad(a);
  case 2: return modelc_rt_gelu_tanh_grad_inline(a);
  default: {
    modelc_rt_real s = modelc_rt_sigmoid(a);
    return s * (1.0f - s);
  }
  }
}

void modelc_rt_glu(modelc_rt_real *y, const modelc_rt_real *h, int64_t rows, int64_t f, int act) {
  LOSS_PARALLEL_FOR
  for (int64_t r = 0; r < rows; r++) {
    const modelc_rt_real *a = h + r * 2 * f, *b = a + f;
    modelc_rt_real *yr = y + r * f;
    for (int64_t i = 0; i < f; i++) yr[i] = glu_act(a[i], act) * b[i];
  }
}

void modelc_rt_glu_grad(modelc_rt_real *dh, const modelc_rt_real *h, const modelc_rt_real *g,
                        int64_t rows, int64_t f, int act) {
  LOSS_PARALLEL_FOR
  for (int64_t r = 0; r < rows; r++) {
    const modelc_rt_real *a = h + r * 2 * f, *b = a + f, *gr = g + r * f;
    modelc_rt_real *da = dh + r * 2 * f, *db = da + f;
    for (int64_t i = 0; i < f; i++) {
      da[i] = gr[i] * b[i] * glu_act_grad(a[i], act);
      db[i] = gr[i] * glu_act(a[i], act);
    }
  }
}
