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

/* ---- scalar functions, as PyTorch defines them ---- */

static inline float modelc_rt_relu(float x) { return x > 0.0f ? x : 0.0f; }
static inline float modelc_rt_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
static inline float modelc_rt_silu(float x) { return x / (1.0f + expf(-x)); }
/* F.gelu(x), the exact form with erf. */
static inline float modelc_rt_gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
/* 1 + tanh(u) = 2 / (1 + e^(-2u)): through expf, which vectorises and is
 * several times faster than tanhf; the sum with 1 hides the cancellation
 * that would make it inexact for tanh alone. */
static inline float modelc_rt_one_plus_tanh(float u) { return 2.0f / (1.0f + expf(-2.0f * u)); }
/* F.gelu(x, approximate="tanh"). */
static inline float modelc_rt_gelu_tanh(float x) {
  return 0.5f * x * modelc_rt_one_plus_tanh(0.79788456080286536f * (x + 0.044715f * x * x * x));
}
/* log(1 + e^x) without overflow: max(x, 0) + log1p(e^-|x|). */
static inline float modelc_rt_softplus(float x) { return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }
static inline float modelc_rt_sign(float x) { return (float)((x > 0.0f) - (x < 0.0f)); }
float modelc_rt_gelu_grad(float x);      /* d gelu / dx */
float modelc_rt_gelu_tanh_grad(float x); /* d gelu_tanh / dx */
/* d silu / dx = s (1 + x (1 - s)), s = sigmoid(x) */
static inline float modelc_rt_silu_grad(float x) {
  float s = modelc_rt_sigmoid(x);
  return s * (1.0f + x * (1.0f - s));
}

/* A parallel loop in generated code when OpenMP is on (plain pragmas
 * would warn under -Wall without -fopenmp). */
#ifdef _OPENMP
#define MODELC_RT_PARALLEL_FOR _Pragma("omp parallel for")
#else
#define MODELC_RT_PARALLEL_FOR
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
/* Reads a tensor converted to f32 (from F32, BF16, F16, F64) or i32
 * (from I32, I64 in range, U8); `count` must equal its element count.
 * Starting at element `first` and reading `count` elements reads a slice
 * of the first dimension (data sets). */
int modelc_rt_st_read_f32(const modelc_rt_st_file *f, const modelc_rt_st_tensor *t, int64_t first,
                          int64_t count, float *dst, char *err, size_t errlen);
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
int modelc_rt_st_write(const char *path, const modelc_rt_st_entry *entries, int count,
                       char *err, size_t errlen);

/* Whole files (rt_safetensors.c), for the data tools: a file read into
 * memory (*data malloc'd, the caller frees it), and a file written
 * atomically from `count` parts as modelc_rt_st_write does. */
int modelc_rt_read_file(const char *path, unsigned char **data, size_t *size, char *err,
                        size_t errlen);
int modelc_rt_write_file_atomic(const char *path, const void *const *parts, const size_t *sizes,
                                int count, char *err, size_t errlen);

/* Loading a model's tensors (rt_model.c): tensor `want` from f into dst
 * (f32, or i64 for scalars such as num_batches_tracked): a missing or
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
void modelc_rt_fill_normal(float *x, int64_t n, float mean, float std, uint64_t seed,
                           uint64_t stream);
void modelc_rt_fill_uniform(float *x, int64_t n, float low, float high, uint64_t seed,
                            uint64_t stream);
void modelc_rt_fill(float *x, int64_t n, float value);
/* Inverted dropout: mask[i] = 0 with probability p, else 1/(1-p). */
void modelc_rt_dropout_mask(float *mask, int64_t n, float p, uint64_t seed, uint64_t stream);

/* ---- optimizers and schedules (PyTorch's formulas) ---- */

/* torch.optim.AdamW for one tensor; step is 1-based (after increment).
 * param *= 1 - lr*wd; m = lerp(m, g, 1-b1); v = b2 v + (1-b2) g^2;
 * param -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). */
void modelc_rt_adamw(float *param, const float *grad, float *m, float *v, int64_t n, float lr,
                     float beta1, float beta2, float eps, float weight_decay, int64_t step);
/* torch.optim.SGD: d = g + wd*param; with momentum: buf = d on the first
 * step, else momentum*buf + d; nesterov: d += momentum*buf, else d = buf;
 * param -= lr*d. */
void modelc_rt_sgd(float *param, const float *grad, float *buf, int64_t n, float lr,
                   float momentum, int nesterov, float weight_decay, int first_step);

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

/* Sum of squares of n floats, in double. */
double modelc_rt_sum_squares(const float *x, int64_t n);
void modelc_rt_scale(float *x, int64_t n, float factor);

/* ---- kernels used by generated code ----
 * Row-major f32 throughout. Shapes in the comments. */

/* C[M,N] = alpha * op(A) op(B) + beta * C; op transposes when trans_*;
 * lda/ldb/ldc are row strides. cblas_sgemm, or loops with MODELC_NO_BLAS. */
void modelc_rt_gemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                    int64_t ldc);

/* Softmax family over the middle dim of [outer, n, inner]. */
void modelc_rt_softmax(float *y, const float *x, int64_t outer, int64_t n, int64_t inner);
void modelc_rt_log_softmax(float *y, const float *x, int64_t outer, int64_t n, int64_t inner);
void modelc_rt_softmax_grad(float *dx, const float *y, const float *g, int64_t outer, int64_t n,
                            int64_t inner);
void modelc_rt_log_softmax_grad(float *dx, const float *y, const float *g, int64_t outer,
                                int64_t n, int64_t inner);

/* Reductions of x [dims] over the axes with reduce[i] != 0; the result
 * has the kept dims in order (keepdim only changes the shape). */
void modelc_rt_reduce_sum(float *y, const float *x, int rank, const int64_t *dims,
                          const int *reduce);
void modelc_rt_reduce_max(float *y, const float *x, int rank, const int64_t *dims,
                          const int *reduce);
/* dx [dims] = g routed to the first maximum of each reduced group. */
void modelc_rt_reduce_max_grad(float *dx, const float *x, const float *g, int rank,
                               const int64_t *dims, const int *reduce);

/* logp [rows, classes], targets [rows]: mean of -logp[target] over rows
 * whose target != ignore_index (0 if none); targets out of range other
 * than ignore_index make it return NaN. */
float modelc_rt_nll_loss(const float *logp, const int32_t *targets, int64_t rows, int64_t classes,
                         int64_t ignore_index);
void modelc_rt_nll_loss_grad(float *dlogp, const int32_t *targets, float g, int64_t rows,
                             int64_t classes, int64_t ignore_index);

/* 2-D convolution NCHW (conv1d is H = 1, kernel height 1): x [N,C,H,W],
 * w [O,C/groups,KH,KW] -> y [N,O,OH,OW]; no bias. */
typedef struct modelc_rt_conv {
  int64_t n, c, h, w, o, kh, kw, oh, ow;
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
} modelc_rt_conv;
void modelc_rt_conv2d(float *y, const float *x, const float *w, const modelc_rt_conv *p);
void modelc_rt_conv2d_grad_input(float *dx, const float *g, const float *w, const modelc_rt_conv *p);
void modelc_rt_conv2d_grad_weight(float *dw, const float *x, const float *g,
                                  const modelc_rt_conv *p);

/* precision: bf16 (rt_lowp.c): the same products with both operands
 * rounded to bfloat16 (nearest, ties to even) and f32 accumulation. */
float modelc_rt_round_bf16(float x);
void modelc_rt_gemm_bf16(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                         const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                         float *c, int64_t ldc);
void modelc_rt_conv2d_bf16(float *y, const float *x, const float *w, const modelc_rt_conv *p);
void modelc_rt_conv2d_grad_input_bf16(float *dx, const float *g, const float *w,
                                      const modelc_rt_conv *p);
void modelc_rt_conv2d_grad_weight_bf16(float *dw, const float *x, const float *g,
                                       const modelc_rt_conv *p);

/* Pooling NCHW x [N,C,H,W] -> y [N,C,OH,OW]; avgpool counts padding
 * (count_include_pad=True, PyTorch's default). */
typedef struct modelc_rt_pool {
  int64_t n, c, h, w, oh, ow, kh, kw, stride_h, stride_w, pad_h, pad_w;
} modelc_rt_pool;
void modelc_rt_maxpool2d(float *y, const float *x, const modelc_rt_pool *p);
void modelc_rt_maxpool2d_grad(float *dx, const float *x, const float *g, const modelc_rt_pool *p);
void modelc_rt_avgpool2d(float *y, const float *x, const modelc_rt_pool *p);
void modelc_rt_avgpool2d_grad(float *dx, const float *g, const modelc_rt_pool *p);

/* Upsampling NCHW by an integer scale: nearest, or bilinear with
 * align_corners=false. x [N*C, H, W] -> y [N*C, H*s, W*s]. */
void modelc_rt_upsample_nearest(float *y, const float *x, int64_t planes, int64_t h, int64_t w,
                                int64_t scale);
void modelc_rt_upsample_nearest_grad(float *dx, const float *g, int64_t planes, int64_t h,
                                     int64_t w, int64_t scale);
void modelc_rt_upsample_bilinear(float *y, const float *x, int64_t planes, int64_t h, int64_t w,
                                 int64_t scale);
void modelc_rt_upsample_bilinear_grad(float *dx, const float *g, int64_t planes, int64_t h,
                                      int64_t w, int64_t scale);

/* Embedding: out [count, dim] = table[ids[i]]. The check returns 0 when
 * every id is in [0, num), else -1; generated code calls it first. */
int64_t modelc_rt_check_ids(const int32_t *ids, int64_t count, int64_t num);
void modelc_rt_gather(float *out, const float *table, const int32_t *ids, int64_t count,
                      int64_t dim);
/* dtable [num, dim] += g rows at ids (dtable zeroed by the caller). */
void modelc_rt_gather_grad(float *dtable, const int32_t *ids, const float *g, int64_t count,
                           int64_t dim);

/* Rotary embedding, rotate-half: x [outer, T, hd], pairs (i, i + hd/2)
 * rotated by angle t * base^(-2i/hd). The gradient rotates back. */
void modelc_rt_rope(float *y, const float *x, int64_t outer, int64_t t, int64_t hd, float base);
void modelc_rt_rope_grad(float *dx, const float *g, int64_t outer, int64_t t, int64_t hd,
                         float base);

/* Attention mask [tq, tk]: 1 where i may attend to j. */
void modelc_rt_attention_mask(uint8_t *mask, int64_t tq, int64_t tk, int causal, int64_t window,
                              int64_t global);

/* y = x permuted: y's dim i is x's dim perm[i]. */
void modelc_rt_permute(float *y, const float *x, int rank, const int64_t *dims,
                       const int64_t *perm);

/* ---- --check-numerics (rt_numerics.c) ----
 * While the checks are on (off by default), generated code checks the
 * output of every kernel: the first NaN or infinity fails the step with
 * "--check-numerics: nan at element I of VALUE, computed by OP at
 * SPEC:LINE:COL (forward|backward)" in the model's error. */
void modelc_rt_set_check_numerics(int on);
int modelc_rt_check_numerics_on(void);
int modelc_rt_check_finite(const float *x, int64_t count, const char *value, const char *op,
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
  /* inputs[i] points at the data of input i (f32 or i32 as described);
   * outputs[i] receives a pointer into the model, valid until the next
   * call; *loss is set when with_loss (all inputs given). */
  int (*forward)(void *model, const void *const *inputs, const float **outputs, int with_loss,
                 float *loss);
  /* Training mode: forward and backward; gradients accumulate into the
   * model's buffers; returns 0 and sets *loss. */
  int (*backward)(void *model, const void *const *inputs, const float **outputs, float *loss);
  /* The optimizer step over accumulated gradients: average over
   * `micro_batches`, clip, update, zero the gradients; returns the
   * gradient norm before clipping in *grad_norm and the lr used. */
  int (*update)(void *model, int64_t micro_batches, double *grad_norm, double *lr);
  const float *(*grad)(const void *model, int param); /* current gradient buffer */
  int64_t (*step)(const void *model);                  /* optimizer steps done */
} modelc_rt_model;

/* `<model>_main train|run ...`: argument parsing, data, progress line,
 * metrics JSONL, checkpoints, Ctrl-C. Returns the process exit code (0,
 * 1 for bad input, 2 internal). */
int modelc_rt_main(int argc, char **argv, const modelc_rt_model *model);
/* `sample`: text from a byte-level language model (rt_sample.c). */
int modelc_rt_sample_main(int argc, char **argv, const modelc_rt_model *model);

#ifdef __cplusplus
}
#endif

#endif
