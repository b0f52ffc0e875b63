/* rt_lowp.c: bf16 compute for `precision: bf16`: the operands of matrix
 * products and convolutions are rounded to bfloat16 (round to nearest,
 * ties to even, as a tensor core receives them) and the products are
 * accumulated in f32; everything else, and the master weights, stay f32.
 * In the double build (MODELC_DOUBLE) the operands are rounded the same
 * way and everything else is double. */
#include <stdlib.h>
#include <string.h>

#include "modelc_rt.h"

modelc_rt_real modelc_rt_round_bf16(modelc_rt_real value) {
  float x = (float)value; /* exact in the float build; the double build rounds twice */
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7f800000u) == 0x7f800000u) { /* inf and nan keep their class */
    if (bits & 0x007fffffu) bits |= 0x00400000u;
  } else {
    bits += 0x7fffu + ((bits >> 16) & 1u);
  }
  bits &= 0xffff0000u;
  memcpy(&x, &bits, sizeof x);
  return x;
}

/* A rounded copy of a [rows, cols] matrix with row stride ld. */
static modelc_rt_real *lowp_copy(const modelc_rt_real *x, int64_t rows, int64_t cols, int64_t ld) {
  modelc_rt_real *y = malloc(sizeof(modelc_rt_real) * (size_t)(rows * cols > 0 ? rows * cols : 1));
  if (!y) return NULL;
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++) y[i * cols + j] = modelc_rt_round_bf16(x[i * ld + j]);
  return y;
}

void modelc_rt_gemm_bf16(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                         modelc_rt_real alpha, const modelc_rt_real *a, int64_t lda,
                         const modelc_rt_real *b, int64_t ldb, modelc_rt_real beta,
                         modelc_rt_real *c, int64_t ldc) {
  int64_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
  int64_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
  modelc_rt_real *a16 = lowp_copy(a, a_rows, a_cols, lda), *b16 = lowp_copy(b, b_rows, b_cols, ldb);
  if (a16 && b16)
    modelc_rt_gemm(trans_a, trans_b, m, n, k, alpha, a16, a_cols, b16, b_cols, beta, c, ldc);
  else /* out of memory: the f32 product rather than none */
    modelc_rt_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  free(a16);
  free(b16);
}

static modelc_rt_real *lowp_all(const modelc_rt_real *x, int64_t n) {
  return lowp_copy(x, 1, n, n);
}

void modelc_rt_conv2d_bf16(modelc_rt_real *y, const modelc_rt_real *x, const modelc_rt_real *w,
                           const modelc_rt_conv *p) {
  modelc_rt_real *x16 = lowp_all(x, p->n * p->c * p->h * p->w);
  modelc_rt_real *w16 = lowp_all(w, p->o * (p->c / p->groups) * p->kh * p->kw);
  modelc_rt_conv2d(y, x16 ? x16 : x, w16 ? w16 : w, p);
  free(x16);
  free(w16);
}

void modelc_rt_conv2d_grad_input_bf16(modelc_rt_real *dx, const modelc_rt_real *g,
                                      const modelc_rt_real *w, const modelc_rt_conv *p) {
  modelc_rt_real *g16 = lowp_all(g, p->n * p->o * p->oh * p->ow);
  modelc_rt_real *w16 = lowp_all(w, p->o * (p->c / p->groups) * p->kh * p->kw);
  modelc_rt_conv2d_grad_input(dx, g16 ? g16 : g, w16 ? w16 : w, p);
  free(g16);
  free(w16);
}

void modelc_rt_conv2d_grad_weight_bf16(modelc_rt_real *dw, const modelc_rt_real *x,
                                       const modelc_rt_real *g, const modelc_rt_conv *p) {
  modelc_rt_real *x16 = lowp_all(x, p->n * p->c * p->h * p->w);
  modelc_rt_real *g16 = lowp_all(g, p->n * p->o * p->oh * p->ow);
  modelc_rt_conv2d_grad_weight(dw, x16 ? x16 : x, g16 ? g16 : g, p);
  free(x16);
  free(g16);
}

/* conv_concat's parts rounded one by one (part i holds N * channels[i] *
 * (H/up[i]) * (W/up[i]) values). */
static void lowp_parts(const modelc_rt_conv_cat *q, const modelc_rt_real *const x[3],
                       modelc_rt_real *x16[3]) {
  const modelc_rt_conv *p = &q->conv;
  for (int i = 0; i < 3; i++) {
    x16[i] = NULL;
    if (i < q->parts && x[i])
      x16[i] = lowp_all(x[i], p->n * q->channels[i] * (p->h / q->up[i]) * (p->w / q->up[i]));
  }
}

void modelc_rt_conv2d_cat_bf16(modelc_rt_real *y, const modelc_rt_real *w,
                               const modelc_rt_conv_cat *q, const modelc_rt_real *x0,
                               const modelc_rt_real *x1, const modelc_rt_real *x2) {
  const modelc_rt_conv *p = &q->conv;
  const modelc_rt_real *x[3] = {x0, x1, x2};
  modelc_rt_real *x16[3];
  lowp_parts(q, x, x16);
  modelc_rt_real *w16 = lowp_all(w, p->o * p->c * p->kh * p->kw);
  modelc_rt_conv2d_cat(y, w16 ? w16 : w, q, x16[0] ? x16[0] : x0, x16[1] ? x16[1] : x1,
                       x16[2] ? x16[2] : x2);
  for (int i = 0; i < 3; i++) free(x16[i]);
  free(w16);
}

void modelc_rt_conv2d_cat_grad_input_bf16(modelc_rt_real *dx, const modelc_rt_real *g,
                                          const modelc_rt_real *w, const modelc_rt_conv_cat *q,
                                          int64_t part) {
  const modelc_rt_conv *p = &q->conv;
  modelc_rt_real *g16 = lowp_all(g, p->n * p->o * p->oh * p->ow);
  modelc_rt_real *w16 = lowp_all(w, p->o * p->c * p->kh * p->kw);
  modelc_rt_conv2d_cat_grad_input(dx, g16 ? g16 : g, w16 ? w16 : w, q, part);
  free(g16);
  free(w16);
}

void modelc_rt_conv2d_cat_grad_weight_bf16(modelc_rt_real *dw, const modelc_rt_real *g,
                                           const modelc_rt_conv_cat *q, const modelc_rt_real *x0,
                                           const modelc_rt_real *x1, const modelc_rt_real *x2) {
  const modelc_rt_conv *p = &q->conv;
  const modelc_rt_real *x[3] = {x0, x1, x2};
  modelc_rt_real *x16[3];
  lowp_parts(q, x, x16);
  modelc_rt_real *g16 = lowp_all(g, p->n * p->o * p->oh * p->ow);
  modelc_rt_conv2d_cat_grad_weight(dw, g16 ? g16 : g, q, x16[0] ? x16[0] : x0,
                                   x16[1] ? x16[1] : x1, x16[2] ? x16[2] : x2);
  for (int i = 0; i < 3; i++) free(x16[i]);
  free(g16);
}
