/* modelc_rt.h: the runtime copied into every generated model.
 *
 * Plain C11 with no dependency beyond libc, libm and (unless
 * MODELC_NO_BLAS is defined) cblas; OpenMP pragmas are used when the
 * compiler enables OpenMP. Every external name starts with modelc_rt_.
 * Functions that can fail return 0 on success and -1 on failure, with a
 * message in a caller's buffer (err, errlen): never exit() or abort().
 *
 * Contents: dtypes and scalar math, safetensors, data sets, RNG and
 * initialisation, optimizers and schedules, the kernel library used by
 * generated code, and the generic driver behind `<model>_main.c`. */
#ifndef MODELC_RT_H
#define MODELC_RT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- dtypes: the same order as the compiler's IR_DTYPES ---- */

typedef enum {
  MODELC_RT_F32,
  MODELC_RT_BF16,
  MODELC_RT_F16,
  MODELC_RT_F64,
  MODELC_RT_I32,
  MODELC_RT_I64,
  MODELC_RT_U8,
} modelc_rt_dtype;

enum { MODELC_RT_MAX_RANK = 8 };

/* ---- the real-number type of tensor data ----
 * float, or double when MODELC_DOUBLE is defined: the double build of a
 * generated model, whose gradients are checked against central finite
 * differences (tests/run_gradcheck_c.sh). MODELC_RT_REAL is its dtype in
 * safetensors files the runtime writes (F32, or F64 in the double build).
 * The whole program must agree on MODELC_DOUBLE. */
#ifndef MODELC_RT_REAL_DEFINED /* the generated MODEL.h defines it too */
#define MODELC_RT_REAL_DEFINED
#ifdef MODELC_DOUBLE
typedef double modelc_rt_real;
#else
typedef float modelc_rt_real;
#endif
#endif
#ifdef MODELC_DOUBLE
#define MODELC_RT_REAL MODELC_RT_F64
#else
#define MODELC_RT_REAL MODELC_RT_F32
#endif

/* A tensor a model expects: name, dtype and shape. */
typedef struct modelc_rt_tensor_desc {
  const char *name;
  modelc_rt_dtype dtype;
  int rank;
  int64_t shape[MODELC_RT_MAX_RANK];
} modelc_rt_tensor_desc;

const char *modelc_rt_dtype_name(modelc_rt_dtype dtype); /* "F32" as safetensors spells it */
size_t modelc_rt_dtype_size(modelc_rt_dtype dtype);
float modelc_rt_bf16_to_f32(uint16_t v);
float modelc_rt_f16_to_f32(uint16_t v);

/* Writes a message into err (when given) and returns -1: the failure
 * path of every runtime function. */
int modelc_rt_fail(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- libm at the precision of modelc_rt_real ----
 * In the float build each is the f-suffixed function itself (expf,
 * sqrtf, ...): inlined, a loop calling modelc_rt_exp vectorises exactly
 * as one calling expf. */
#ifdef MODELC_DOUBLE
static inline double modelc_rt_exp(double x) { return exp(x); }
static inline double modelc_rt_log(double x) { return log(x); }
static inline double modelc_rt_log1p(double x) { return log1p(x); }
static inline double modelc_rt_sqrt(double x) { return sqrt(x); }
static inline double modelc_rt_tanh(double x) { return tanh(x); }
static inline double modelc_rt_erf(double x) { return erf(x); }
static inline double modelc_rt_abs(double x) { return fabs(x); }
static inline double modelc_rt_max(double x, double y) { return fmax(x, y); }
static inline double modelc_rt_fma(double x, double y, double z) { return fma(x, y, z); }
#else
static inline float modelc_rt_exp(float x) { return expf(x); }
static inline float modelc_rt_log(float x) { return logf(x); }
static inline float modelc_rt_log1p(float x) { return log1pf(x); }
static inline float modelc_rt_sqrt(float x) { return sqrtf(x); }
static inline float modelc_rt_tanh(float x) { return tanhf(x); }
static inline float modelc_rt_erf(float x) { return erff(x); }
static inline float modelc_rt_abs(float x) { return fabsf(x); }
static inline float modelc_rt_max(float x, float y) { return fmaxf(x, y); }
static inline float modelc_rt_fma(float x, float y, float z) { return fmaf(x, y, z); }
#endif

/* e^x in a form that vectorises (the f32 build), unlike expf without
 * -ffast-math: x = n ln2 + r, |r| <= ln2/2, e^r by its Taylor series to
 * r^6 (within about 1 ulp of expf), times 2^n built in the exponent bits.
 * modelc_rt_exp_fast takes x in [-87, 88] (beyond: e^-87 and e^88, which
 * the activations that use it, 1 / (1 + e^x), cannot tell from 0 and inf);
 * modelc_rt_exp_neg is for x <= 0 (a score minus its row maximum) and
 * gives 0 below -87 and for -inf. NaN stays NaN. The double build calls
 * exp. */
#ifdef MODELC_DOUBLE
static inline modelc_rt_real modelc_rt_exp_fast(modelc_rt_real x) { return exp(x); }
static inline modelc_rt_real modelc_rt_exp_neg(modelc_rt_real x) { return exp(x); }
#else
static inline float modelc_rt_exp_fast(float x) {
  float c = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
  c = c == c ? c : 0.0f;
  float n = floorf(c * 1.44269504f + 0.5f);
  float r = c - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  float p = 1.3888889e-3f;
  p = p * r + 8.3333333e-3f;
  p = p * r + 4.1666667e-2f;
  p = p * r + 1.6666667e-1f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  union {
    int32_t i;
    float f;
  } scale;
  scale.i = ((int32_t)n + 127) << 23;
  return x == x ? p * scale.f : x;
}
static inline float modelc_rt_exp_neg(float x) {
  float y = modelc_rt_exp_fast(x);
  return x < -87.0f ? 0.0f : y;
}
#endif

/* ---- scalar functions, as PyTorch defines them ---- */

static inline modelc_rt_real modelc_rt_relu(modelc_rt_real x) { return x > 0.0f ? x : 0.0f; }
static inline modelc_rt_real modelc_rt_sigmoid(modelc_rt_real x) {
  return 1.0f / (1.0f + modelc_rt_exp_fast(-x));
}
static inline modelc_rt_real modelc_rt_silu(modelc_rt_real x) {
  return x / (1.0f + modelc_rt_exp_fast(-x));
}
/* F.gelu(x), the exact form with erf. */
static inline modelc_rt_real modelc_rt_gelu(modelc_rt_real x) {
  return 0.5f * x * (1.0f + modelc_rt_erf(x * 0.70710678118654752f));
}
/* 1 + tanh(u) = 2 / (1 + e^(-2u)): through an exp that vectorises,
 * several times faster than tanhf; the sum with 1 hides the cancellation
 * that would make it inexact for tanh alone. */
static inline modelc_rt_real modelc_rt_one_plus_tanh(modelc_rt_real u) {
  return 2.0f / (1.0f + modelc_rt_exp_fast(-2.0f * u));
}
/* F.gelu(x, approximate="tanh"). */
static inline modelc_rt_real modelc_rt_gelu_tanh(modelc_rt_real x) {
  return 0.5f * x * modelc_rt_one_plus_tanh(0.79788456080286536f * (x + 0.044715f * x * x * x));
}
/* log(1 + e^x) without overflow: max(x, 0) + log1p(e^-|x|). */
static inline modelc_rt_real modelc_rt_softplus(modelc_rt_real x) {
  return modelc_rt_max(x, 0.0f) + modelc_rt_log1p(modelc_rt_exp(-modelc_rt_abs(x)));
}
static inline modelc_rt_real modelc_rt_sign(modelc_rt_real x) {
  return (modelc_rt_real)((x > 0.0f) - (x < 0.0f));
}
modelc_rt_real modelc_rt_gelu_grad(modelc_rt_real x);      /* d gelu / dx */
/* d gelu_tanh / dx; the _inline form lets the loops of generated code
 * vectorise, the function is for callers that need its address (the
 * LLVM backend). */
modelc_rt_real modelc_rt_gelu_tanh_grad(modelc_rt_real x);
static inline modelc_rt_real modelc_rt_gelu_tanh_grad_inline(modelc_rt_real x) {
  const modelc_rt_real c = 0.79788456080286536f;
  modelc_rt_real u = c * (x + 0.044715f * x * x * x);
  modelc_rt_real t = modelc_rt_one_plus_tanh(u) - 1.0f;
  modelc_rt_real du = c * (1.0f + 3.0f * 0.044715f * x * x);
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}
/* d silu / dx = s (1 + x (1 - s)), s = sigmoid(x) */
static inline modelc_rt_real modelc_rt_silu_grad(modelc_rt_real x) {
  modelc_rt_real s = modelc_rt_sigmoid(x);
  return s * (1.0f + x * (1.0f - s));
}

/* A parallel loop in generated code when OpenMP is on (plain pragmas
 * would warn under -Wall without -fopenmp), and an innermost loop whose
 * iterations are independent (omp simd): GCC's -O2 vectorises no loop
 * whose trip count it cannot see, and OpenMP splits a parallel loop's
 * count at run time. GCC also needs -fno-trapping-math to turn the
 * choices of modelc_rt_exp_fast and the activations into selects, and
 * -fno-math-errno for sqrtf and fmaf in a vector loop: the C path
 * compiles with both (compiler/drv_exec.c, the generated CMakeLists.txt).
 * Without them the code is the same, one float at a time. */
/* MODELC_RT_OMP_SIMD: whether simd pragmas are used. Not by Clang, which
 * vectorises such loops at -O2 by itself and warns about an omp simd loop
 * it cannot (a call to tanhf), an error under -Werror. */
#if defined(_OPENMP) && !defined(__clang__)
#define MODELC_RT_OMP_SIMD 1
#else
#define MODELC_RT_OMP_SIMD 0
#endif
#if MODELC_RT_OMP_SIMD
#define MODELC_RT_PARALLEL_FOR _Pragma("omp parallel for")
#define MODELC_RT_PARALLEL_FOR_SIMD _Pragma("omp parallel for simd")
#define MODELC_RT_SIMD _Pragma("omp simd")
#elif defined(_OPENMP)
#define MODELC_RT_PARALLEL_FOR _Pragma("omp parallel for")
#define MODELC_RT_PARALLEL_FOR_SIMD _Pragma("omp parallel for")
#define MODELC_RT_SIMD
#else
#define MODELC_RT_PARALLEL_FOR
#define MODELC_RT_PARALLEL_FOR_SIMD
#define MODELC_RT_SIMD
#endif

/* ---- safetensors ----
 * The format: 8-byte little-endian header length N, N bytes of JSON
 * ({"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]},
 * "__metadata__": {...}}), then the data. The reader checks everything:
 * length past the end, invalid JSON, unknown dtype, offsets past the
 * end, overflowing, overlapping or not matching dtype x shape, duplicate
 * names; each error names the file and, where there is one, the tensor. */

typedef struct modelc_rt_st_tensor {
  char *name;
  modelc_rt_dtype dtype;
  int rank;
  int64_t shape[MODELC_RT_MAX_RANK];
  size_t offset, nbytes; /* into data: the tensor starts at data + offset */
} modelc_rt_st_tensor;

typedef struct modelc_rt_st_file {
  char *path;
  int count;
  modelc_rt_st_tensor *tensors; /* in file order */
  unsigned char *data;          /* the whole file, read into memory */
  size_t size;
  size_t data_start; /* 8 + N */
} modelc_rt_st_file;

int modelc_rt_st_open(modelc_rt_st_file *f, const char *path, char *err, size_t errlen);
void modelc_rt_st_close(modelc_rt_st_file *f);
const modelc_rt_st_tensor *modelc_rt_st_find(const modelc_rt_st_file *f, const char *name);
/* Reads a tensor converted to modelc_rt_real (from F32, BF16, F16, F64) or i32
 * (from I32, I64 in range, U8); `count` must equal its element count.
 * Starting at element `first` and reading `count` elements reads a slice
 * of the first dimension (data sets). */
int modelc_rt_st_read_real(const modelc_rt_st_file *f, const modelc_rt_st_tensor *t, int64_t first,
                           int64_t count, modelc_rt_real *dst, char *err, size_t errlen);
int modelc_rt_st_read_i32(const modelc_rt_st_file *f, const modelc_rt_st_tensor *t, int64_t first,
                          int64_t count, int32_t *dst, char *err, size_t errlen);

typedef struct modelc_rt_st_entry {
  const char *name;
  modelc_rt_dtype dtype;
  int rank;
  const int64_t *shape;
  const void *data;
} modelc_rt_st_entry;

/* Writes entries in the order the safetensors Python package uses, which
 * keeps each tensor aligned: by dtype (I64, F64, F32, I32, BF16, F16, U8),
 * then by name (the same bytes as its save_file), atomically: a temporary
 * file in the same directory, fsync, rename, fsync of the directory. On
 * failure nothing is left. */
int modelc_rt_st_write(const char *path, const modelc_rt_st_entry *entries, int count, char *err,
                       size_t errlen);

/* Whole files (rt_safetensors.c), for the data tools: a file read into
 * memory (*data malloc'd, the caller frees it), and a file written
 * atomically from `count` parts as modelc_rt_st_write does. */
int modelc_rt_read_file(const char *path, unsigned char **data, size_t *size, char *err,
                        size_t errlen);
int modelc_rt_write_file_atomic(const char *path, const void *const *parts, const size_t *sizes,
                                int count, char *err, size_t errlen);

/* Loading a model's tensors (rt_model.c): tensor `want` from f into dst
 * (modelc_rt_real for F32 tensors, or i64 for scalars such as num_batches_tracked): a missing or
 * misshaped tensor is an error naming file and tensor. */
int modelc_rt_load_tensor(const modelc_rt_st_file *f, const modelc_rt_tensor_desc *want, void *dst,
                          char *err, size_t errlen);
/* An error naming the first tensor of f that is not among `known`. */
int modelc_rt_check_no_extra(const modelc_rt_st_file *f, const modelc_rt_tensor_desc *known,
                             int count, char *err, size_t errlen);

/* ---- data sets ---- */

/* Tokens: an llm.c file (header of 256 int32: magic 20240520, version 1,
 * token count; then uint16 tokens) or, without that magic, raw uint16. */
typedef struct modelc_rt_tokens {
  uint16_t *tokens;
  int64_t count;
  int64_t cursor; /* next token to read */
} modelc_rt_tokens;

int modelc_rt_tokens_open(modelc_rt_tokens *d, const char *path, char *err, size_t errlen);
void modelc_rt_tokens_close(modelc_rt_tokens *d);
/* The next B*T+1 consecutive tokens from the cursor (wrapping to the
 * start when fewer remain): inputs are the first B*T, targets the same
 * shifted by one; the cursor advances by B*T. */
void modelc_rt_tokens_next(modelc_rt_tokens *d, int64_t batch, int64_t time, int32_t *inputs,
                           int32_t *targets);
/* Byte-level tokens of a text file (each byte one token), llm.c format. */
int modelc_rt_tokens_from_text(const char *text_path, const char *out_path, char *err,
                               size_t errlen);

/* Fashion-MNIST IDX files (gzip is not read: pass the decompressed
 * files) to a safetensors data set with `images` f32 [N,1,28,28] scaled
 * to [0,1] and `labels` i32 [N]. */
int modelc_rt_idx_to_safetensors(const char *images_idx, const char *labels_idx,
                                 const char *out_path, char *err, size_t errlen);

/* ---- RNG and initialisation ----
 * Counter based: a value depends only on (seed, stream, index), so runs
 * are reproducible and resumable without saving generator state beyond
 * the step counter. */

uint64_t modelc_rt_hash(uint64_t seed, uint64_t stream, uint64_t index);
float modelc_rt_uniform(uint64_t seed, uint64_t stream, uint64_t index); /* [0, 1) */
void modelc_rt_fill_normal(modelc_rt_real *x, int64_t n, float mean, float std, uint64_t seed,
                           uint64_t stream);
void modelc_rt_fill_uniform(modelc_rt_real *x, int64_t n, float low, float high, uint64_t seed,
                            uint64_t stream);
void modelc_rt_fill(modelc_rt_real *x, int64_t n, modelc_rt_real value);
/* Inverted dropout: mask[i] = 0 with probability p, else 1/(1-p). */
void modelc_rt_dropout_mask(modelc_rt_real *mask, int64_t n, float p, uint64_t seed,
                            uint64_t stream);

/* ---- optimizers and schedules (PyTorch's formulas) ---- */

/* torch.optim.AdamW for one tensor; step is 1-based (after increment).
 * param *= 1 - lr*wd; m = lerp(m, g, 1-b1); v = b2 v + (1-b2) g^2;
 * param -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). */
void modelc_rt_adamw(modelc_rt_real *param, const modelc_rt_real *grad, modelc_rt_real *m,
                     modelc_rt_real *v, int64_t n, modelc_rt_real lr, modelc_rt_real beta1,
                     modelc_rt_real beta2, modelc_rt_real eps, modelc_rt_real weight_decay,
                     int64_t step);
/* torch.optim.SGD: d = g + wd*param; with momentum: buf = d on the first
 * step, else momentum*buf + d; nesterov: d += momentum*buf, else d = buf;
 * param -= lr*d. */
void modelc_rt_sgd(modelc_rt_real *param, const modelc_rt_real *grad, modelc_rt_real *buf,
                   int64_t n, modelc_rt_real lr, modelc_rt_real momentum, int nesterov,
                   modelc_rt_real weight_decay, int first_step);
/* The optimizer step of generated code, one pass per tensor: the same
 * update on g = (grad * scale) * clip (averaging over micro-batches and
 * clipping, rounded as if done in place first), then grad = 0. */
void modelc_rt_adamw_step(modelc_rt_real *param, modelc_rt_real *grad, modelc_rt_real *m,
                          modelc_rt_real *v, int64_t n, modelc_rt_real lr, modelc_rt_real beta1,
                          modelc_rt_real beta2, modelc_rt_real eps, modelc_rt_real weight_decay,
                          int64_t step, modelc_rt_real scale, modelc_rt_real clip);
void modelc_rt_sgd_step(modelc_rt_real *param, modelc_rt_real *grad, modelc_rt_real *buf,
                        int64_t n, modelc_rt_real lr, modelc_rt_real momentum, int nesterov,
                        modelc_rt_real weight_decay, int first_step, modelc_rt_real scale,
                        modelc_rt_real clip);

typedef enum { MODELC_RT_CONSTANT, MODELC_RT_COSINE, MODELC_RT_LINEAR } modelc_rt_schedule_kind;

typedef struct modelc_rt_schedule {
  modelc_rt_schedule_kind kind;
  double lr, min_lr;
  int64_t warmup, steps;
} modelc_rt_schedule;

/* The learning rate at optimizer step s (0-based), per the spec
 * language's contract (warmup lr*(s+1)/W, then cosine/linear to min_lr at
 * s = steps, min_lr after; warmup == steps is guarded). */
double modelc_rt_lr_at(const modelc_rt_schedule *s, int64_t step);

/* Sum of squares of n floats, in double; _scaled squares x * scale (the
 * product rounded first). */
double modelc_rt_sum_squares(const modelc_rt_real *x, int64_t n);
double modelc_rt_sum_squares_scaled(const modelc_rt_real *x, int64_t n, modelc_rt_real scale);
void modelc_rt_scale(modelc_rt_real *x, int64_t n, modelc_rt_real factor);

/* ---- kernels used by generated code ----
 * Row-major modelc_rt_real throughout. Shapes in the comments. */

/* C[M,N] = alpha * op(A) op(B) + beta * C; op transposes when trans_*;
 * lda/ldb/ldc are row strides. cblas_sgemm (cblas_dgemm in the double
 * build), or loops with MODELC_NO_BLAS. */
void modelc_rt_gemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, modelc_rt_real alpha,
                    const modelc_rt_real *a, int64_t lda, const modelc_rt_real *b, int64_t ldb,
                    modelc_rt_real beta, modelc_rt_real *c, int64_t ldc);

/* Softmax family over the middle dim of [outer, n, inner]. */
void modelc_rt_softmax(modelc_rt_real *y, const modelc_rt_real *x, int64_t outer, int64_t n,
                       int64_t inner);
void modelc_rt_log_softmax(modelc_rt_real *y, const modelc_rt_real *x, int64_t outer, int64_t n,
                           int64_t inner);
void modelc_rt_softmax_grad(modelc_rt_real *dx, const modelc_rt_real *y, const modelc_rt_real *g,
                            int64_t outer, int64_t n, int64_t inner);
void modelc_rt_log_softmax_grad(modelc_rt_real *dx, const modelc_rt_real *y,
                                const modelc_rt_real *g, int64_t outer, int64_t n, int64_t inner);

/* Reductions of x [dims] over the axes with reduce[i] != 0; the result
 * has the kept dims in order (keepdim only changes the shape). */
void modelc_rt_reduce_sum(modelc_rt_real *y, const modelc_rt_real *x, int rank, const int64_t *dims,
                          const int *reduce);
void modelc_rt_reduce_max(modelc_rt_real *y, const modelc_rt_real *x, int rank, const int64_t *dims,
                          const int *reduce);
/* dx [dims] = g routed to the first maximum of each reduced group. */
void modelc_rt_reduce_max_grad(modelc_rt_real *dx, const modelc_rt_real *x, const modelc_rt_real *g,
                               int rank, const int64_t *dims, const int *reduce);

/* logp [rows, classes], targets [rows]: mean of -logp[target] over rows
 * whose target != ignore_index (0 if none); targets out of range other
 * than ignore_index make it return NaN. */
modelc_rt_real modelc_rt_nll_loss(const modelc_rt_real *logp, const int32_t *targets, int64_t rows,
                                  int64_t classes, int64_t ignore_index);
void modelc_rt_nll_loss_grad(modelc_rt_real *dlogp, const int32_t *targets, modelc_rt_real g,
                             int64_t rows, int64_t classes, int64_t ignore_index);
/* Gated linear unit (rt_loss.c): y [rows, F] = act(h[:, :F]) * h[:, F:]
 * for h [rows, 2F]; act 0 silu, 1 gelu, 2 gelu_tanh, 3 sigmoid. The
 * gradient dh [rows, 2F] from g [rows, F]. */
void modelc_rt_glu(modelc_rt_real *y, const modelc_rt_real *h, int64_t rows, int64_t f, int act);
void modelc_rt_glu_grad(modelc_rt_real *dh, const modelc_rt_real *h, const modelc_rt_real *g,
                        int64_t rows, int64_t f, int act);
/* Fused softmax cross-entropy (rt_loss.c): nll_loss(log_softmax(logits))
 * with lse [rows] = each row's log-sum-exp, and its gradient
 * dlogits = (softmax - onehot) * g / kept rows (ignored rows 0). */
modelc_rt_real modelc_rt_softmax_ce(modelc_rt_real *lse, const modelc_rt_real *logits,
                                    const int32_t *targets, int64_t rows, int64_t classes,
                                    int64_t ignore_index);
void modelc_rt_softmax_ce_grad(modelc_rt_real *dlogits, const modelc_rt_real *logits,
                               const modelc_rt_real *lse, const int32_t *targets, modelc_rt_real g,
                               int64_t rows, int64_t classes, int64_t ignore_index);

/* fused_norm (rt_norm.c): layernorm (rms 0) or rmsnorm (rms 1) over rows
 * of d values: y = (x - mean) * rstd * w (+ b, when not NULL), keeping
 * mean (0 for rms) and rstd per row; the gradient gives dx (plus dr, the
 * residual stream's gradient, when not NULL), dw and db (overwritten). */
void modelc_rt_norm(modelc_rt_real *y, modelc_rt_real *mean, modelc_rt_real *rstd,
                    const modelc_rt_real *x, const modelc_rt_real *w, const modelc_rt_real *b,
                    int64_t rows, int64_t d, double eps, int rms);
void modelc_rt_norm_grad(modelc_rt_real *dx, modelc_rt_real *dw, modelc_rt_real *db,
                         const modelc_rt_real *dy, const modelc_rt_real *x,
                         const modelc_rt_real *mean, const modelc_rt_real *rstd,
                         const modelc_rt_real *w, const modelc_rt_real *dr, int64_t rows, int64_t d,
                         int rms);

/* 2-D convolution NCHW (conv1d is H = 1, kernel height 1): x [N,C,H,W],
 * w [O,C/groups,KH,KW] -> y [N,O,OH,OW]; no bias. */
typedef struct modelc_rt_conv {
  int64_t n, c, h, w, o, kh, kw, oh, ow;
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
} modelc_rt_conv;
void modelc_rt_conv2d(modelc_rt_real *y, const modelc_rt_real *x, const modelc_rt_real *w,
                      const modelc_rt_conv *p);
void modelc_rt_conv2d_grad_input(modelc_rt_real *dx, const modelc_rt_real *g,
                                 const modelc_rt_real *w, const modelc_rt_conv *p);
void modelc_rt_conv2d_grad_weight(modelc_rt_real *dw, const modelc_rt_real *x,
                                  const modelc_rt_real *g, const modelc_rt_conv *p);

/* conv_concat (fuse_conv): the convolution of concat(upsample(x0, up[0]),
 * x1, ..., axis 1) with nearest upsampling, reading each part in place:
 * part i is [N, channels[i], H/up[i], W/up[i]] (up 1: not upsampled),
 * conv.c the channels' sum and conv.h, conv.w the concatenation's size;
 * groups 1. Absent parts are NULL. grad_input writes the gradient of one
 * part (its own shape); grad_weight reads the parts like the forward. */
enum { MODELC_RT_CONV_PARTS = 3 };
typedef struct modelc_rt_conv_cat {
  modelc_rt_conv conv;
  int64_t parts, channels[MODELC_RT_CONV_PARTS], up[MODELC_RT_CONV_PARTS];
} modelc_rt_conv_cat;
void modelc_rt_conv2d_cat(modelc_rt_real *y, const modelc_rt_real *w, const modelc_rt_conv_cat *q,
                          const modelc_rt_real *x0, const modelc_rt_real *x1,
                          const modelc_rt_real *x2);
void modelc_rt_conv2d_cat_grad_input(modelc_rt_real *dx, const modelc_rt_real *g,
                                     const modelc_rt_real *w, const modelc_rt_conv_cat *q,
                                     int64_t part);
void modelc_rt_conv2d_cat_grad_weight(modelc_rt_real *dw, const modelc_rt_real *g,
                                      const modelc_rt_conv_cat *q, const modelc_rt_real *x0,
                                      const modelc_rt_real *x1, const modelc_rt_real *x2);

/* precision: bf16 (rt_lowp.c): the same products with both operands
 * rounded to bfloat16 (nearest, ties to even) and f32 accumulation (in
 * the double build: rounded the same way, accumulated in double). */
modelc_rt_real modelc_rt_round_bf16(modelc_rt_real x);
void modelc_rt_gemm_bf16(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                         modelc_rt_real alpha, const modelc_rt_real *a, int64_t lda,
                         const modelc_rt_real *b, int64_t ldb, modelc_rt_real beta,
                         modelc_rt_real *c, int64_t ldc);
void modelc_rt_conv2d_bf16(modelc_rt_real *y, const modelc_rt_real *x, const modelc_rt_real *w,
                           const modelc_rt_conv *p);
void modelc_rt_conv2d_grad_input_bf16(modelc_rt_real *dx, const modelc_rt_real *g,
                                      const modelc_rt_real *w, const modelc_rt_conv *p);
void modelc_rt_conv2d_grad_weight_bf16(modelc_rt_real *dw, const modelc_rt_real *x,
                                       const modelc_rt_real *g, const modelc_rt_conv *p);
void modelc_rt_conv2d_cat_bf16(modelc_rt_real *y, const modelc_rt_real *w,
                               const modelc_rt_conv_cat *q, const modelc_rt_real *x0,
                               const modelc_rt_real *x1, const modelc_rt_real *x2);
void modelc_rt_conv2d_cat_grad_input_bf16(modelc_rt_real *dx, const modelc_rt_real *g,
                                          const modelc_rt_real *w, const modelc_rt_conv_cat *q,
                                          int64_t part);
void modelc_rt_conv2d_cat_grad_weight_bf16(modelc_rt_real *dw, const modelc_rt_real *g,
                                           const modelc_rt_conv_cat *q, const modelc_rt_real *x0,
                                           const modelc_rt_real *x1, const modelc_rt_real *x2);

/* Pooling NCHW x [N,C,H,W] -> y [N,C,OH,OW]; avgpool counts padding
 * (count_include_pad=True, PyTorch's default). */
typedef struct modelc_rt_pool {
  int64_t n, c, h, w, oh, ow, kh, kw, stride_h, stride_w, pad_h, pad_w;
} modelc_rt_pool;
void modelc_rt_maxpool2d(modelc_rt_real *y, const modelc_rt_real *x, const modelc_rt_pool *p);
void modelc_rt_maxpool2d_grad(modelc_rt_real *dx, const modelc_rt_real *x, const modelc_rt_real *g,
                              const modelc_rt_pool *p);
void modelc_rt_avgpool2d(modelc_rt_real *y, const modelc_rt_real *x, const modelc_rt_pool *p);
void modelc_rt_avgpool2d_grad(modelc_rt_real *dx, const modelc_rt_real *g, const modelc_rt_pool *p);

/* Upsampling NCHW by an integer scale: nearest, or bilinear with
 * align_corners=false. x [N*C, H, W] -> y [N*C, H*s, W*s]. */
void modelc_rt_upsample_nearest(modelc_rt_real *y, const modelc_rt_real *x, int64_t planes,
                                int64_t h, int64_t w, int64_t scale);
void modelc_rt_upsample_nearest_grad(modelc_rt_real *dx, const modelc_rt_real *g, int64_t planes,
                                     int64_t h, int64_t w, int64_t scale);
void modelc_rt_upsample_bilinear(modelc_rt_real *y, const modelc_rt_real *x, int64_t planes,
                                 int64_t h, int64_t w, int64_t scale);
void modelc_rt_upsample_bilinear_grad(modelc_rt_real *dx, const modelc_rt_real *g, int64_t planes,
                                      int64_t h, int64_t w, int64_t scale);

/* Embedding: out [count, dim] = table[ids[i]]. The check returns 0 when
 * every id is in [0, num), else -1; generated code calls it first. */
int64_t modelc_rt_check_ids(const int32_t *ids, int64_t count, int64_t num);
void modelc_rt_gather(modelc_rt_real *out, const modelc_rt_real *table, const int32_t *ids,
                      int64_t count, int64_t dim);
/* dtable [num, dim] += g rows at ids (dtable zeroed by the caller). */
void modelc_rt_gather_grad(modelc_rt_real *dtable, const int32_t *ids, const modelc_rt_real *g,
                           int64_t count, int64_t dim);

/* Rotary embedding, rotate-half: x [outer, T, hd], pairs (i, i + hd/2)
 * rotated by angle t * base^(-2i/hd). The gradient rotates back. */
void modelc_rt_rope(modelc_rt_real *y, const modelc_rt_real *x, int64_t outer, int64_t t,
                    int64_t hd, modelc_rt_real base);
void modelc_rt_rope_grad(modelc_rt_real *dx, const modelc_rt_real *g, int64_t outer, int64_t t,
                         int64_t hd, modelc_rt_real base);

/* Attention mask [tq, tk]: 1 where i may attend to j. */
void modelc_rt_attention_mask(uint8_t *mask, int64_t tq, int64_t tk, int causal, int64_t window,
                              int64_t global);

/* Flash attention (rt_attention.c): out = softmax(q k^T * scale + mask) v
 * per (batch, head) without storing the T x T scores; lse [B,H,T] gets
 * each row's log-sum-exp for the backward. bthd: tensors are [B,T,H,hd]
 * instead of [B,H,T,hd]; k and v have kv_h heads (GQA: h % kv_h == 0).
 * rope > 0 rotates q and k rows as modelc_rt_rope does with that base.
 * The mask is modelc_rt_attention_mask's. Head sizes up to
 * MODELC_RT_FLASH_MAX_HEAD; returns -1 beyond it or out of memory. */
enum { MODELC_RT_FLASH_MAX_HEAD = 256 };
typedef struct modelc_rt_flash {
  int64_t b, h, kv_h, t, d;
  int causal, bthd;
  int64_t window, global;
  float scale, rope;
} modelc_rt_flash;
int modelc_rt_flash_attention(modelc_rt_real *out, modelc_rt_real *lse, const modelc_rt_real *q,
                              const modelc_rt_real *k, const modelc_rt_real *v,
                              const modelc_rt_flash *p);
/* dq, dk, dv (overwritten) from out, lse and the output's gradient dout. */
int modelc_rt_flash_attention_grad(modelc_rt_real *dq, modelc_rt_real *dk, modelc_rt_real *dv,
                                   const modelc_rt_real *q, const modelc_rt_real *k,
                                   const modelc_rt_real *v, const modelc_rt_real *out,
                                   const modelc_rt_real *lse, const modelc_rt_real *dout,
                                   const modelc_rt_flash *p);

/* y = x permuted: y's dim i is x's dim perm[i]. */
void modelc_rt_permute(modelc_rt_real *y, const modelc_rt_real *x, int rank, const int64_t *dims,
                       const int64_t *perm);

/* ---- --check-numerics (rt_numerics.c) ----
 * While the checks are on (off by default), generated code checks the
 * output of every kernel: the first NaN or infinity fails the step with
 * "--check-numerics: nan at element I of VALUE, computed by OP at
 * SPEC:LINE:COL (forward|backward)" in the model's error. */
void modelc_rt_set_check_numerics(int on);
int modelc_rt_check_numerics_on(void);
int modelc_rt_check_finite(const modelc_rt_real *x, int64_t count, const char *value, const char *op,
                           const char *where, const char *phase, char *err, size_t errlen);

/* ---- timing ---- */
double modelc_rt_seconds(void); /* monotonic */

/* ---- the generic driver (behind <model>_main.c) ----
 * A generated model describes itself with a modelc_rt_model; the driver
 * implements `train` and `run` for any model through it. */

typedef struct modelc_rt_train_config {
  int optimizer; /* 0 adamw, 1 sgd */
  double lr, beta1, beta2, eps, weight_decay, momentum;
  int nesterov;
  modelc_rt_schedule schedule;
  double grad_clip; /* 0: off */
  int64_t accumulate;
  uint64_t seed;
} modelc_rt_train_config;

typedef struct modelc_rt_model {
  const char *name;
  int num_inputs;
  const modelc_rt_tensor_desc *inputs; /* the spec's inputs, in order */
  int num_outputs;
  const modelc_rt_tensor_desc *outputs; /* the spec's outputs */
  int num_params;
  const modelc_rt_tensor_desc *params; /* trainable parameters, in order */
  int trains;                          /* the spec has a train: section */
  modelc_rt_train_config train;
  /* An input used only by the loss: `run` may leave it out. */
  const int *input_loss_only;

  void *(*create)(void);
  void (*destroy)(void *model);
  const char *(*error)(const void *model);
  int (*init)(void *model, uint64_t seed);
  int (*load)(void *model, const char *path);
  int (*save)(const void *model, const char *path);
  /* The training state beside the parameters (optimizer moments, the
   * optimizer step, the micro-batch counter that seeds dropout) as named
   * tensors whose data points into the model: the driver writes them to
   * state.safetensors and reads them back in place (through a cast) on
   * --resume. Returns the count written to entries (at most max). */
  int (*state)(void *model, modelc_rt_st_entry *entries, int max);
  /* inputs[i] points at the data of input i (modelc_rt_real for F32
   * inputs, or i32, as described);
   * outputs[i] receives a pointer into the model, valid until the next
   * call; *loss is set when with_loss (all inputs given). */
  int (*forward)(void *model, const void *const *inputs, const modelc_rt_real **outputs,
                 int with_loss, modelc_rt_real *loss);
  /* Training mode: forward and backward; gradients accumulate into the
   * model's buffers; returns 0 and sets *loss. */
  int (*backward)(void *model, const void *const *inputs, const modelc_rt_real **outputs,
                  modelc_rt_real *loss);
  /* The optimizer step over accumulated gradients: average over
   * `micro_batches`, clip, update, zero the gradients; returns the
   * gradient norm before clipping in *grad_norm and the lr used. */
  int (*update)(void *model, int64_t micro_batches, double *grad_norm, double *lr);
  const modelc_rt_real *(*grad)(const void *model, int param); /* current gradient buffer */
  int64_t (*step)(const void *model);                          /* optimizer steps done */
  /* The values of a trainable parameter, in the model (the gradient
   * check perturbs them in place). */
  modelc_rt_real *(*param)(void *model, int param);
  /* A table-driven model (rt_table.c) leaves create NULL: instances are
   * made from this table by modelc_rt_model_create. */
  const void *table;
} modelc_rt_model;

/* m->create(), or a new instance of a table-driven model. */
void *modelc_rt_model_create(const modelc_rt_model *m);

/* ---- table-driven models (rt_table.c) ----
 * The LLVM backend renders only the kernels and a table that describes
 * the model (tensors, places, inputs, outputs, training configuration,
 * as text); the runtime implements the model around them: the arena,
 * init, load/save, the entry points, the optimizer step and the driver's
 * descriptor. An entry point (forward, evaluate, train) is a list of
 * steps, each a kernel and where its buffers are: the runtime calls them
 * in order, so the backend compiles each distinct kernel once and no
 * code per call. Every field is 8 bytes, so the layout is the same on
 * every 64-bit target. */
typedef struct modelc_rt_kernel_args {
  unsigned char *state, *grads, *act;
  uint64_t seed;
  int64_t micro_step;
  const void *in[32];
} modelc_rt_kernel_args;

/* buffers[0] is the output, buffers[1..] the operands; returns 0, or
 * non-zero when a check failed (an id outside the embedding table). */
typedef int (*modelc_rt_kernel_fn)(modelc_rt_kernel_args *args, void *const *buffers);

enum { MODELC_RT_MAX_BUFFERS = 13 };
/* Where a buffer is: region << 56 | byte offset (region 0 state, 1
 * gradients, 2 activations; 3 input, the offset its index). */
#define MODELC_RT_LOCATION(region, offset) (((int64_t)(region) << 56) | (int64_t)(offset))

typedef struct modelc_rt_step {
  modelc_rt_kernel_fn kernel; /* NULL: copy count bytes from buffer 1 to buffer 0 (state update) */
  int64_t check;              /* the check's index (table records `check`) when the kernel fails */
  int64_t count;              /* buffers used, or bytes to copy */
  int64_t buffers[MODELC_RT_MAX_BUFFERS];
} modelc_rt_step;

/* fn(buffers, begin, end) over [0, n) split into one range per OpenMP
 * thread (all of it at once without OpenMP): the LLVM backend's large
 * elementwise kernels, as the C backend's MODELC_RT_PARALLEL_FOR. */
void modelc_rt_parallel_rows(void (*fn)(void *const *buffers, int64_t begin, int64_t end),
                             void *const *buffers, int64_t n);

/* What the backend emits as MODEL_table. */
typedef struct modelc_rt_table_source {
  const char *text;
  const modelc_rt_step *steps[3]; /* forward, evaluate, train (NULL without training) */
  int64_t num_steps[3];
} modelc_rt_table_source;

typedef struct modelc_rt_table_model modelc_rt_table_model;

/* The driver's descriptor for a table (freed with modelc_rt_table_release);
 * NULL with a message in err when the table is malformed. */
modelc_rt_model *modelc_rt_table_describe(const modelc_rt_table_source *src, char *err, size_t errlen);
void modelc_rt_table_release(modelc_rt_model *m);
/* The public API of a table-driven model (MODEL_new etc. call these);
 * inputs and outputs are the MODEL_inputs / MODEL_outputs structs: a
 * pointer per input; a pointer per output, then the loss (modelc_rt_real). */
modelc_rt_table_model *modelc_rt_table_new(const modelc_rt_table_source *src);
void modelc_rt_table_free(modelc_rt_table_model *m);
const char *modelc_rt_table_error(const modelc_rt_table_model *m);
int modelc_rt_table_init(modelc_rt_table_model *m, uint64_t seed);
int modelc_rt_table_load(modelc_rt_table_model *m, const char *path);
int modelc_rt_table_save(const modelc_rt_table_model *m, const char *path);
int modelc_rt_table_forward(modelc_rt_table_model *m, const void *inputs, void *outputs);
int modelc_rt_table_evaluate(modelc_rt_table_model *m, const void *inputs, void *outputs);
modelc_rt_real modelc_rt_table_train_step(modelc_rt_table_model *m, const void *inputs);

/* `<model>_main train|run ...`: argument parsing, data, progress line,
 * metrics JSONL, checkpoints, Ctrl-C. Returns the process exit code (0,
 * 1 for bad input, 2 internal). */
int modelc_rt_main(int argc, char **argv, const modelc_rt_model *model);
/* `sample`: text from a byte-level language model (rt_sample.c). */
int modelc_rt_sample_main(int argc, char **argv, const modelc_rt_model *model);
/* `bench`: times forward and training step on a synthetic batch (rt_bench.c). */
int modelc_rt_bench_main(int argc, char **argv, const modelc_rt_model *model);
#ifdef MODELC_DOUBLE
/* `gradcheck` (double build only, rt_gradcheck.c): every parameter's
 * gradient from the generated backward against central differences of
 * the generated loss. */
int modelc_rt_gradcheck_main(int argc, char **argv, const modelc_rt_model *model);
#endif

#ifdef __cplusplus
}
#endif

#endif
