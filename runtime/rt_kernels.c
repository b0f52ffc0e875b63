/* rt_kernels.c: softmax family, reductions, NLL loss, embedding gather,
 * rotary embedding, attention masks and permutes.
 *
 * Row-major f32. Softmax, log-softmax, rope and their gradients may run
 * in place (output == input). Sums accumulate in double (several
 * partial sums, so the loops pipeline): as cheap as modelc_rt_real for these
 * memory-bound loops and accurate for long reductions. Max follows
 * PyTorch: NaN propagates, and a row of -inf gives NaN in softmax. */
#include "modelc_rt.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#define KERN_OMP(directive) _Pragma(directive)
#else
#define KERN_OMP(directive)
#endif

/* Loops over fewer elements than this stay on one thread. */
enum { KERN_PARALLEL_MIN = 1 << 15, KERN_CHUNK = 256, KERN_WIDE = 1024, KERN_BANDS = 8 };

/* v is a new maximum over m: larger, or the first NaN. */
static inline int kern_is_new_max(modelc_rt_real v, modelc_rt_real m) {
  return v > m || (v != v && m == m);
}

/* Sum of x[0:n] in double with four partial sums. */
static double kern_sum_row(const modelc_rt_real *x, int64_t n) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += x[i];
    s1 += x[i + 1];
    s2 += x[i + 2];
    s3 += x[i + 3];
  }
  for (; i < n; i++) s0 += x[i];
  return (s0 + s1) + (s2 + s3);
}

/* PyTorch's max: NaN wins. Branch-free, so blocks of 8 vectorise. */
static inline modelc_rt_real kern_max2(modelc_rt_real m, modelc_rt_real v) {
  return ((v > m) | (v != v)) ? v : m;
}

/* Max of x[0:n] (-inf when n == 0), 8 lanes at a time. */
static modelc_rt_real kern_max_row(const modelc_rt_real *x, int64_t n) {
  modelc_rt_real lane[8];
  for (int u = 0; u < 8; u++) lane[u] = -INFINITY;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int u = 0; u < 8; u++) lane[u] = kern_max2(lane[u], x[i + u]);
  modelc_rt_real m = -INFINITY;
  for (int u = 0; u < 8; u++) m = kern_max2(m, lane[u]);
  for (; i < n; i++) m = kern_max2(m, x[i]);
  return m;
}

/* acc[0:n] += v[0:n] (to double); acc[0:n] = max(acc, v). Blocks of a
 * constant 8 and restrict let gcc -O2 vectorise (its cheap cost model
 * neither vectorises loops of unknown length nor adds alias checks). */
static void kern_add_into(double *restrict acc, const modelc_rt_real *restrict v, int64_t n) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int u = 0; u < 8; u++) acc[j + u] += v[j + u];
  for (; j < n; j++) acc[j] += v[j];
}

static void kern_max_into(modelc_rt_real *restrict acc, const modelc_rt_real *restrict v,
                          int64_t n) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int u = 0; u < 8; u++) acc[j + u] = kern_max2(acc[j + u], v[j + u]);
  for (; j < n; j++) acc[j] = kern_max2(acc[j], v[j]);
}

/* y[0:n] *= s. */
static void kern_scale_row(modelc_rt_real *y, modelc_rt_real s, int64_t n) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int u = 0; u < 8; u++) y[j + u] *= s;
  for (; j < n; j++) y[j] *= s;
}

/* ---- softmax family over the middle dim of [outer, n, inner] ---- */

/* One contiguous row x [n] (inner == 1). */
static void kern_softmax_row(modelc_rt_real *y, const modelc_rt_real *x, int64_t n, int take_log) {
  modelc_rt_real mx = kern_max_row(x, n);
  double sum = 0.0;
  if (take_log) {
    for (int64_t i = 0; i < n; i++) sum += modelc_rt_exp(x[i] - mx);
    modelc_rt_real log_sum = (modelc_rt_real)log(sum); /* (x - max) - log_sum, PyTorch's order */
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] - mx) - log_sum;
  } else {
    for (int64_t i = 0; i < n; i++) {
      y[i] = modelc_rt_exp(x[i] - mx);
      sum += y[i];
    }
    kern_scale_row(y, (modelc_rt_real)(1.0 / sum), n);
  }
}

/* Columns [0, len) of x [n, inner], len <= KERN_CHUNK. */
static void kern_softmax_cols(modelc_rt_real *y, const modelc_rt_real *x, int64_t n, int64_t inner,
                              int64_t len, int take_log) {
  modelc_rt_real mx[KERN_CHUNK];
  double sum[KERN_CHUNK];
  for (int64_t j = 0; j < len; j++) {
    mx[j] = -INFINITY;
    sum[j] = 0.0;
  }
  for (int64_t r = 0; r < n; r++) kern_max_into(mx, x + r * inner, len);
  if (take_log) {
    for (int64_t r = 0; r < n; r++)
      for (int64_t j = 0; j < len; j++) sum[j] += modelc_rt_exp(x[r * inner + j] - mx[j]);
    modelc_rt_real log_sum[KERN_CHUNK];
    for (int64_t j = 0; j < len; j++) log_sum[j] = (modelc_rt_real)log(sum[j]);
    for (int64_t r = 0; r < n; r++)
      for (int64_t j = 0; j < len; j++) y[r * inner + j] = (x[r * inner + j] - mx[j]) - log_sum[j];
  } else {
    for (int64_t r = 0; r < n; r++)
      for (int64_t j = 0; j < len; j++) {
        y[r * inner + j] = modelc_rt_exp(x[r * inner + j] - mx[j]);
        sum[j] += y[r * inner + j];
      }
    modelc_rt_real inv[KERN_CHUNK];
    for (int64_t j = 0; j < len; j++) inv[j] = (modelc_rt_real)(1.0 / sum[j]);
    for (int64_t r = 0; r < n; r++)
      for (int64_t j = 0; j < len; j++) y[r * inner + j] *= inv[j];
  }
}

static void kern_softmax_any(modelc_rt_real *y, const modelc_rt_real *x, int64_t outer, int64_t n,
                             int64_t inner, int take_log) {
  if (inner == 1) {
    KERN_OMP("omp parallel for if(outer * n * inner >= KERN_PARALLEL_MIN)")
    for (int64_t o = 0; o < outer; o++) kern_softmax_row(y + o * n, x + o * n, n, take_log);
    return;
  }
  int64_t chunks = (inner + KERN_CHUNK - 1) / KERN_CHUNK;
  KERN_OMP("omp parallel for if(outer * n * inner >= KERN_PARALLEL_MIN)")
  for (int64_t item = 0; item < outer * chunks; item++) {
    int64_t o = item / chunks, j0 = item % chunks * KERN_CHUNK;
    int64_t len = inner - j0 < KERN_CHUNK ? inner - j0 : KERN_CHUNK;
    int64_t off = o * n * inner + j0;
    kern_softmax_cols(y + off, x + off, n, inner, len, take_log);
  }
}

/* y [outer, n, inner] = exp(x - max) / sum exp(x - max) over n. */
void modelc_rt_softmax(modelc_rt_real *y, const modelc_rt_real *x, int64_t outer, int64_t n,
                       int64_t inner) {
  kern_softmax_any(y, x, outer, n, inner, 0);
}

/* y = x - max - log(sum exp(x - max)) over n. */
void modelc_rt_log_softmax(modelc_rt_real *y, const modelc_rt_real *x, int64_t outer, int64_t n,
                           int64_t inner) {
  kern_softmax_any(y, x, outer, n, inner, 1);
}

/* Softmax: dx = y (g - sum_n g y); log-softmax: dx = g - exp(y) sum_n g.
 * Columns [0, len) of [n, inner], len <= KERN_CHUNK. */
static void kern_softmax_grad_cols(modelc_rt_real *dx, const modelc_rt_real *y,
                                   const modelc_rt_real *g, int64_t n, int64_t inner, int64_t len,
                                   int take_log) {
  double dot[KERN_CHUNK];
  for (int64_t j = 0; j < len; j++) dot[j] = 0.0;
  for (int64_t r = 0; r < n; r++)
    for (int64_t j = 0; j < len; j++) {
      int64_t i = r * inner + j;
      dot[j] += take_log ? g[i] : (double)g[i] * y[i];
    }
  for (int64_t r = 0; r < n; r++)
    for (int64_t j = 0; j < len; j++) {
      int64_t i = r * inner + j;
      modelc_rt_real d = (modelc_rt_real)dot[j];
      dx[i] = take_log ? g[i] - modelc_rt_exp(y[i]) * d : y[i] * (g[i] - d);
    }
}

/* The same for one contiguous row [n] (inner == 1). */
static void kern_softmax_grad_row(modelc_rt_real *dx, const modelc_rt_real *y,
                                  const modelc_rt_real *g, int64_t n, int take_log) {
  double s0 = 0.0, s1 = 0.0;
  int64_t i = 0;
  if (take_log) {
    s0 = kern_sum_row(g, n);
  } else {
    for (; i + 2 <= n; i += 2) {
      s0 += (double)g[i] * y[i];
      s1 += (double)g[i + 1] * y[i + 1];
    }
    for (; i < n; i++) s0 += (double)g[i] * y[i];
  }
  modelc_rt_real d = (modelc_rt_real)(s0 + s1);
  if (take_log)
    for (i = 0; i < n; i++) dx[i] = g[i] - modelc_rt_exp(y[i]) * d;
  else
    for (i = 0; i < n; i++) dx[i] = y[i] * (g[i] - d);
}

static void kern_softmax_grad_any(modelc_rt_real *dx, const modelc_rt_real *y,
                                  const modelc_rt_real *g, int64_t outer, int64_t n, int64_t inner,
                                  int take_log) {
  if (inner == 1) {
    KERN_OMP("omp parallel for if(outer * n >= KERN_PARALLEL_MIN)")
    for (int64_t o = 0; o < outer; o++)
      kern_softmax_grad_row(dx + o * n, y + o * n, g + o * n, n, take_log);
    return;
  }
  int64_t chunks = (inner + KERN_CHUNK - 1) / KERN_CHUNK;
  KERN_OMP("omp parallel for if(outer * n * inner >= KERN_PARALLEL_MIN)")
  for (int64_t item = 0; item < outer * chunks; item++) {
    int64_t o = item / chunks, j0 = item % chunks * KERN_CHUNK;
    int64_t len = inner - j0 < KERN_CHUNK ? inner - j0 : KERN_CHUNK;
    int64_t off = o * n * inner + j0;
    kern_softmax_grad_cols(dx + off, y + off, g + off, n, inner, len, take_log);
  }
}

/* dx, y, g [outer, n, inner]; y is the softmax output. */
void modelc_rt_softmax_grad(modelc_rt_real *dx, const modelc_rt_real *y, const modelc_rt_real *g,
                            int64_t outer, int64_t n, int64_t inner) {
  kern_softmax_grad_any(dx, y, g, outer, n, inner, 0);
}

/* dx, y, g [outer, n, inner]; y is the log-softmax output. */
void modelc_rt_log_softmax_grad(modelc_rt_real *dx, const modelc_rt_real *y,
                                const modelc_rt_real *g, int64_t outer, int64_t n, int64_t inner) {
  kern_softmax_grad_any(dx, y, g, outer, n, inner, 1);
}

/* ---- reductions over arbitrary axes ---- */

/* Walks the multi-index of dims [nd] in row-major order, tracking the
 * offset sum(index * stride). */
typedef struct kern_odometer {
  int nd;
  int64_t dims[MODELC_RT_MAX_RANK], strides[MODELC_RT_MAX_RANK], index[MODELC_RT_MAX_RANK];
  int64_t offset;
} kern_odometer;

static void kern_odometer_start(kern_odometer *od, int64_t linear) {
  od->offset = 0;
  for (int d = od->nd - 1; d >= 0; d--) {
    od->index[d] = linear % od->dims[d];
    linear /= od->dims[d];
    od->offset += od->index[d] * od->strides[d];
  }
}

static void kern_odometer_next(kern_odometer *od) {
  for (int d = od->nd - 1; d >= 0; d--) {
    od->offset += od->strides[d];
    if (++od->index[d] < od->dims[d]) return;
    od->offset -= od->index[d] * od->strides[d];
    od->index[d] = 0;
  }
}

/* x [dims] with size-1 dims dropped and neighbours with the same reduce
 * flag merged; strides into x. `kept`/`red` list the merged kept and
 * reduced dims; the last merged dim is reduced or kept (`last_reduced`). */
typedef struct kern_reduction {
  int64_t out_count, red_count; /* elements of y; elements per group */
  kern_odometer kept, red;
  int last_reduced;
  int64_t last; /* size of the last merged dim, 1 if there is none */
} kern_reduction;

static void kern_reduction_plan(kern_reduction *p, int rank, const int64_t *dims,
                                const int *reduce) {
  int64_t d[MODELC_RT_MAX_RANK], stride[MODELC_RT_MAX_RANK];
  int flag[MODELC_RT_MAX_RANK], r = 0;
  int64_t s = 1;
  for (int i = rank - 1; i >= 0; i--) { /* inner to outer, so strides build up */
    if (dims[i] == 1) continue;
    int f = reduce[i] != 0;
    if (r > 0 && flag[r - 1] == f) {
      d[r - 1] *= dims[i];
    } else {
      d[r] = dims[i];
      stride[r] = s;
      flag[r] = f;
      r++;
    }
    s *= dims[i];
  }
  /* d, stride, flag are innermost first. */
  p->kept.nd = p->red.nd = 0;
  p->out_count = p->red_count = 1;
  for (int i = r - 1; i >= 0; i--) {
    kern_odometer *od = flag[i] ? &p->red : &p->kept;
    od->dims[od->nd] = d[i];
    od->strides[od->nd] = stride[i];
    od->nd++;
    *(flag[i] ? &p->red_count : &p->out_count) *= d[i];
  }
  p->last_reduced = r > 0 && flag[0];
  p->last = r > 0 ? d[0] : 1;
  /* The innermost dim is walked by the loops themselves. */
  if (r > 0) (flag[0] ? &p->red : &p->kept)->nd--;
}

typedef enum { KERN_SUM, KERN_MAX, KERN_MAX_GRAD } kern_reduce_op;

/* Partial results for `count` consecutive outputs: sums, maxima, and the
 * x offset of the first maximum (-1 before any element). */
typedef struct kern_partial {
  double sum[KERN_WIDE];
  modelc_rt_real mx[KERN_WIDE];
  int64_t at[KERN_WIDE];
} kern_partial;

static void kern_partial_clear(kern_partial *r, int64_t count) {
  for (int64_t k = 0; k < count; k++) {
    r->sum[k] = 0.0;
    r->mx[k] = -INFINITY;
    r->at[k] = -1;
  }
}

/* Last dim reduced: outputs [o0, o0+count) over the reduced rows [q0, q1)
 * (each a contiguous run of p->last). Rows outermost, so that for one
 * row the outputs' runs are read in memory order. */
static void kern_reduce_rows(const modelc_rt_real *x, const kern_reduction *p, kern_reduce_op op,
                             int64_t o0, int64_t count, int64_t q0, int64_t q1, kern_partial *r) {
  int64_t len = p->last;
  kern_odometer red = p->red;
  kern_odometer_start(&red, q0);
  for (int64_t q = q0; q < q1; q++, kern_odometer_next(&red)) {
    kern_odometer kept = p->kept;
    kern_odometer_start(&kept, o0);
    for (int64_t k = 0; k < count; k++, kern_odometer_next(&kept)) {
      const modelc_rt_real *row = x + kept.offset + red.offset;
      if (op == KERN_SUM) {
        r->sum[k] += kern_sum_row(row, len);
      } else if (op == KERN_MAX) {
        r->mx[k] = kern_max2(r->mx[k], kern_max_row(row, len));
      } else {
        for (int64_t i = 0; i < len; i++)
          if (r->at[k] < 0 || kern_is_new_max(row[i], r->mx[k])) {
            r->mx[k] = row[i];
            r->at[k] = row - x + i;
          }
      }
    }
  }
}

/* Last dim kept (p->last = inner): outputs [o0, o0+count), a strip of
 * one output row, over the reduced indices [q0, q1): contiguous vectors. */
static void kern_reduce_cols(const modelc_rt_real *x, const kern_reduction *p, kern_reduce_op op,
                             int64_t o0, int64_t count, int64_t q0, int64_t q1, kern_partial *r) {
  int64_t inner = p->last, j0 = o0 % inner;
  kern_odometer kept = p->kept, red = p->red;
  kern_odometer_start(&kept, o0 / inner);
  kern_odometer_start(&red, q0);
  for (int64_t q = q0; q < q1; q++, kern_odometer_next(&red)) {
    int64_t base = kept.offset + red.offset + j0;
    const modelc_rt_real *v = x + base;
    if (op == KERN_SUM) {
      kern_add_into(r->sum, v, count);
    } else if (op == KERN_MAX) {
      kern_max_into(r->mx, v, count);
    } else {
      for (int64_t k = 0; k < count; k++)
        if (r->at[k] < 0 || kern_is_new_max(v[k], r->mx[k])) {
          r->mx[k] = v[k];
          r->at[k] = base + k;
        }
    }
  }
}

/* The work is cut into units of consecutive outputs (blocks of
 * KERN_CHUNK outputs when the last dim is reduced; strips of up to
 * KERN_WIDE columns of one output row when it is kept). With fewer than
 * 8 units (the leading dims or everything reduced), the reduced range is
 * also cut into KERN_BANDS bands whose partial results are combined in
 * order: every thread gets work, reads long runs, and the result does
 * not depend on the thread count. For KERN_MAX_GRAD, y is dx (zeroed)
 * and g the output gradient. */
static void kern_reduce_run(modelc_rt_real *y, const modelc_rt_real *x, const modelc_rt_real *g,
                            const kern_reduction *p, kern_reduce_op op) {
  int rows_mode = p->last_reduced;
  int64_t inner = p->last, strips = (inner + KERN_WIDE - 1) / KERN_WIDE;
  int64_t units =
      rows_mode ? (p->out_count + KERN_CHUNK - 1) / KERN_CHUNK : p->out_count / inner * strips;
  int64_t steps = rows_mode ? p->red_count / p->last : p->red_count, bands = 1;
  double *part_sum = NULL;
  modelc_rt_real *part_mx = NULL;
  int64_t *part_at = NULL;
  if (units < 8 && steps >= 8 * KERN_BANDS) {
    size_t n = (size_t)(p->out_count * KERN_BANDS);
    part_sum = malloc(n * sizeof *part_sum);
    part_mx = malloc(n * sizeof *part_mx);
    part_at = malloc(n * sizeof *part_at);
    if (part_sum && part_mx && part_at) bands = KERN_BANDS;
  }
  KERN_OMP("omp parallel for if(p->out_count * p->red_count >= KERN_PARALLEL_MIN)")
  for (int64_t item = 0; item < units * bands; item++) {
    int64_t unit = item / bands, band = item % bands, o0, count;
    if (rows_mode) {
      o0 = unit * KERN_CHUNK;
      count = p->out_count - o0 < KERN_CHUNK ? p->out_count - o0 : KERN_CHUNK;
    } else {
      int64_t j0 = unit % strips * KERN_WIDE;
      o0 = unit / strips * inner + j0;
      count = inner - j0 < KERN_WIDE ? inner - j0 : KERN_WIDE;
    }
    int64_t q0 = steps * band / bands, q1 = steps * (band + 1) / bands;
    kern_partial r;
    kern_partial_clear(&r, count);
    (rows_mode ? kern_reduce_rows : kern_reduce_cols)(x, p, op, o0, count, q0, q1, &r);
    if (bands > 1) { /* part [bands, out_count] */
      int64_t off = band * p->out_count + o0;
      memcpy(part_sum + off, r.sum, (size_t)count * sizeof *part_sum);
      memcpy(part_mx + off, r.mx, (size_t)count * sizeof *part_mx);
      memcpy(part_at + off, r.at, (size_t)count * sizeof *part_at);
      continue;
    }
    for (int64_t k = 0; k < count; k++) {
      if (op == KERN_SUM)
        y[o0 + k] = (modelc_rt_real)r.sum[k];
      else if (op == KERN_MAX)
        y[o0 + k] = r.mx[k];
      else
        y[r.at[k]] = g[o0 + k];
    }
  }
  if (bands > 1)
    for (int64_t o = 0; o < p->out_count; o++) {
      double total = 0.0;
      int64_t best = o;
      for (int64_t b = 0; b < bands; b++) {
        int64_t i = b * p->out_count + o;
        total += part_sum[i];
        if (b > 0 && kern_is_new_max(part_mx[i], part_mx[best])) best = i;
      }
      if (op == KERN_SUM)
        y[o] = (modelc_rt_real)total;
      else if (op == KERN_MAX)
        y[o] = part_mx[best];
      else
        y[part_at[best]] = g[o];
    }
  free(part_sum);
  free(part_mx);
  free(part_at);
}

static void kern_reduce(modelc_rt_real *y, const modelc_rt_real *x, const modelc_rt_real *g,
                        int rank, const int64_t *dims, const int *reduce, kern_reduce_op op) {
  int64_t count = 1;
  for (int i = 0; i < rank; i++) count *= dims[i];
  kern_reduction p;
  kern_reduction_plan(&p, rank, dims, reduce);
  if (op == KERN_MAX_GRAD) memset(y, 0, (size_t)count * sizeof *y);
  if (count == 0) { /* empty groups: sum 0, max -inf (PyTorch refuses) */
    int64_t out = 1;
    for (int i = 0; i < rank; i++) out *= reduce[i] ? 1 : dims[i];
    if (op != KERN_MAX_GRAD)
      for (int64_t o = 0; o < out; o++) y[o] = op == KERN_SUM ? 0.0f : -INFINITY;
    return;
  }
  kern_reduce_run(y, x, g, &p, op);
}

/* y [kept dims of x] = sum of x [dims] over the reduced axes. */
void modelc_rt_reduce_sum(modelc_rt_real *y, const modelc_rt_real *x, int rank, const int64_t *dims,
                          const int *reduce) {
  kern_reduce(y, x, NULL, rank, dims, reduce, KERN_SUM);
}

/* y [kept dims of x] = max of x [dims] over the reduced axes. */
void modelc_rt_reduce_max(modelc_rt_real *y, const modelc_rt_real *x, int rank, const int64_t *dims,
                          const int *reduce) {
  kern_reduce(y, x, NULL, rank, dims, reduce, KERN_MAX);
}

/* dx [dims]: g [kept dims] at the first maximum of each group, else 0. */
void modelc_rt_reduce_max_grad(modelc_rt_real *dx, const modelc_rt_real *x, const modelc_rt_real *g,
                               int rank, const int64_t *dims, const int *reduce) {
  kern_reduce(dx, x, g, rank, dims, reduce, KERN_MAX_GRAD);
}

/* ---- negative log-likelihood ---- */

/* logp [rows, classes], targets [rows] -> mean -logp[r, target[r]] over
 * rows whose target is not ignore_index. */
modelc_rt_real modelc_rt_nll_loss(const modelc_rt_real *logp, const int32_t *targets, int64_t rows,
                                  int64_t classes, int64_t ignore_index) {
  double sum = 0.0;
  int64_t kept = 0;
  for (int64_t r = 0; r < rows; r++) {
    int64_t t = targets[r];
    if (t == ignore_index) continue;
    if (t < 0 || t >= classes) return NAN;
    sum -= logp[r * classes + t];
    kept++;
  }
  return kept ? (modelc_rt_real)(sum / (double)kept) : 0.0f;
}

/* dlogp [rows, classes] = -g / kept at each kept row's target, else 0. */
void modelc_rt_nll_loss_grad(modelc_rt_real *dlogp, const int32_t *targets, modelc_rt_real g,
                             int64_t rows, int64_t classes, int64_t ignore_index) {
  int64_t kept = 0;
  for (int64_t r = 0; r < rows; r++) kept += targets[r] != ignore_index;
  memset(dlogp, 0, (size_t)(rows * classes) * sizeof *dlogp);
  if (!kept) return;
  modelc_rt_real d = (modelc_rt_real)(-(double)g / (double)kept);
  for (int64_t r = 0; r < rows; r++) {
    int64_t t = targets[r];
    if (t != ignore_index && t >= 0 && t < classes) dlogp[r * classes + t] = d;
  }
}

/* ---- embedding ---- */

/* 0 when every ids[i] is in [0, num), else -1. */
int64_t modelc_rt_check_ids(const int32_t *ids, int64_t count, int64_t num) {
  for (int64_t i = 0; i < count; i++)
    if (ids[i] < 0 || ids[i] >= num) return -1;
  return 0;
}

/* out [count, dim] = table [num, dim] rows at ids [count]. The table's
 * size is not passed: ids must have been checked (a negative id gives a
 * zero row). */
void modelc_rt_gather(modelc_rt_real *out, const modelc_rt_real *table, const int32_t *ids,
                      int64_t count, int64_t dim) {
  KERN_OMP("omp parallel for if(count * dim >= KERN_PARALLEL_MIN)")
  for (int64_t i = 0; i < count; i++) {
    if (ids[i] < 0)
      memset(out + i * dim, 0, (size_t)dim * sizeof *out);
    else
      memcpy(out + i * dim, table + (int64_t)ids[i] * dim, (size_t)dim * sizeof *out);
  }
}

/* dtable [num, dim] += g [count, dim] rows at ids (repeated ids add up,
 * in order, so the result does not depend on the thread count). */
void modelc_rt_gather_grad(modelc_rt_real *dtable, const int32_t *ids, const modelc_rt_real *g,
                           int64_t count, int64_t dim) {
  int64_t chunks = (dim + KERN_CHUNK - 1) / KERN_CHUNK;
  KERN_OMP("omp parallel for if(count * dim >= KERN_PARALLEL_MIN)")
  for (int64_t c = 0; c < chunks; c++) {
    int64_t j0 = c * KERN_CHUNK, len = dim - j0 < KERN_CHUNK ? dim - j0 : KERN_CHUNK;
    for (int64_t i = 0; i < count; i++) {
      if (ids[i] < 0) continue;
      modelc_rt_real *dst = dtable + (int64_t)ids[i] * dim + j0;
      const modelc_rt_real *src = g + i * dim + j0;
      for (int64_t j = 0; j < len; j++) dst[j] += src[j];
    }
  }
}

/* ---- rotary embedding ---- */

/* x [outer, t, hd] -> y: for i < h = hd/2, with angle a = pos base^(-2i/hd)
 * (pos the row inside t; angles in double): y[i] = x[i] cos a - x[i+h]
 * sin a, y[i+h] = x[i+h] cos a + x[i] sin a. sign = -1 rotates back
 * (the gradient). An odd hd's last element passes through. */
static void kern_rope(modelc_rt_real *y, const modelc_rt_real *x, int64_t outer, int64_t t,
                      int64_t hd, modelc_rt_real base, modelc_rt_real sign) {
  int64_t h = hd / 2;
  for (int64_t i0 = 0; i0 < h; i0 += KERN_CHUNK) {
    int64_t len = h - i0 < KERN_CHUNK ? h - i0 : KERN_CHUNK;
    double freq[KERN_CHUNK]; /* base^(-2i/hd) */
    for (int64_t i = 0; i < len; i++)
      freq[i] = pow((double)base, -2.0 * (double)(i0 + i) / (double)hd);
    KERN_OMP("omp parallel for if(outer * t * len >= KERN_PARALLEL_MIN)")
    for (int64_t pos = 0; pos < t; pos++) {
      modelc_rt_real cs[KERN_CHUNK], sn[KERN_CHUNK];
      for (int64_t i = 0; i < len; i++) {
        double a = (double)pos * freq[i];
        cs[i] = (modelc_rt_real)cos(a);
        sn[i] = sign * (modelc_rt_real)sin(a);
      }
      for (int64_t o = 0; o < outer; o++) {
        const modelc_rt_real *xr = x + (o * t + pos) * hd + i0;
        modelc_rt_real *yr = y + (o * t + pos) * hd + i0;
        for (int64_t i = 0; i < len; i++) {
          modelc_rt_real lo = xr[i], hi = xr[i + h];
          yr[i] = lo * cs[i] - hi * sn[i];
          yr[i + h] = hi * cs[i] + lo * sn[i];
        }
      }
    }
  }
  if (hd % 2)
    for (int64_t row = 0; row < outer * t; row++) y[row * hd + hd - 1] = x[row * hd + hd - 1];
}

void modelc_rt_rope(modelc_rt_real *y, const modelc_rt_real *x, int64_t outer, int64_t t,
                    int64_t hd, modelc_rt_real base) {
  kern_rope(y, x, outer, t, hd, base, 1.0f);
}

/* dx = the transpose of the rotation applied to g: a rotation by -a. */
void modelc_rt_rope_grad(modelc_rt_real *dx, const modelc_rt_real *g, int64_t outer, int64_t t,
                         int64_t hd, modelc_rt_real base) {
  kern_rope(dx, g, outer, t, hd, base, -1.0f);
}

/* ---- attention mask ---- */

/* mask [tq, tk]: 1 where (!causal || j <= i) and (window == 0 ||
 * |i - j| < window || i < global || j < global). */
void modelc_rt_attention_mask(uint8_t *mask, int64_t tq, int64_t tk, int causal, int64_t window,
                              int64_t global) {
  for (int64_t i = 0; i < tq; i++)
    for (int64_t j = 0; j < tk; j++) {
      int64_t dist = i > j ? i - j : j - i;
      int ok = (!causal || j <= i) && (window == 0 || dist < window || i < global || j < global);
      mask[i * tk + j] = (uint8_t)ok;
    }
}

/* ---- permute ---- */

enum { KERN_TILE = 32 };

/* y [dims[perm[0]], ..., dims[perm[rank-1]]] = x [dims] permuted.
 * After dropping size-1 dims and merging y dims that are also adjacent
 * in x, either y's last dim is contiguous in x (copy rows) or it is a
 * transpose of y's last dim with x's last dim, done in 32x32 tiles. */
void modelc_rt_permute(modelc_rt_real *y, const modelc_rt_real *x, int rank, const int64_t *dims,
                       const int64_t *perm) {
  int64_t xstride[MODELC_RT_MAX_RANK], count = 1;
  for (int i = rank - 1; i >= 0; i--) {
    xstride[i] = count;
    count *= dims[i];
  }
  if (count == 0) return;
  /* ydim/ystep: y's dims (merged) and the x stride of each. */
  int64_t ydim[MODELC_RT_MAX_RANK], ystep[MODELC_RT_MAX_RANK];
  int r = 0;
  for (int i = 0; i < rank; i++) {
    int64_t d = dims[perm[i]], s = xstride[perm[i]];
    if (d == 1) continue;
    if (r > 0 && ystep[r - 1] == s * d) {
      ydim[r - 1] *= d;
      ystep[r - 1] = s;
    } else {
      ydim[r] = d;
      ystep[r] = s;
      r++;
    }
  }
  if (r == 0 || (r == 1 && ystep[0] == 1)) {
    memcpy(y, x, (size_t)count * sizeof *y);
    return;
  }
  if (ystep[r - 1] == 1) { /* rows of `len` contiguous in both */
    int64_t len = ydim[r - 1], rows = count / len;
    KERN_OMP("omp parallel for if(count >= KERN_PARALLEL_MIN)")
    for (int64_t c = 0; c < 64; c++) { /* 64 slices of the rows */
      int64_t r0 = rows * c / 64, r1 = rows * (c + 1) / 64;
      if (r0 == r1) continue;
      kern_odometer od = {.nd = r - 1};
      memcpy(od.dims, ydim, sizeof ydim);
      memcpy(od.strides, ystep, sizeof ystep);
      kern_odometer_start(&od, r0);
      for (int64_t row = r0; row < r1; row++, kern_odometer_next(&od))
        memcpy(y + row * len, x + od.offset, (size_t)len * sizeof *y);
    }
    return;
  }
  /* Transpose: q is the y dim that is x's innermost, p = r-1 is y's
   * innermost; the other dims are walked by an odometer. */
  int q = 0;
  while (ystep[q] != 1) q++;
  int64_t ystride[MODELC_RT_MAX_RANK], s = 1;
  for (int i = r - 1; i >= 0; i--) {
    ystride[i] = s;
    s *= ydim[i];
  }
  kern_odometer outer_x = {0}, outer_y = {0};
  for (int i = 0; i < r - 1; i++) {
    if (i == q) continue;
    outer_x.dims[outer_x.nd] = outer_y.dims[outer_y.nd] = ydim[i];
    outer_x.strides[outer_x.nd++] = ystep[i];
    outer_y.strides[outer_y.nd++] = ystride[i];
  }
  int64_t np = ydim[r - 1], nq = ydim[q], sp = ystep[r - 1], sq = ystride[q];
  int64_t tiles_q = (nq + KERN_TILE - 1) / KERN_TILE, outers = count / (np * nq);
  KERN_OMP("omp parallel for if(count >= KERN_PARALLEL_MIN)")
  for (int64_t item = 0; item < outers * tiles_q; item++) {
    kern_odometer ox = outer_x, oy = outer_y;
    kern_odometer_start(&ox, item / tiles_q);
    kern_odometer_start(&oy, item / tiles_q);
    int64_t q0 = item % tiles_q * KERN_TILE, q1 = q0 + KERN_TILE < nq ? q0 + KERN_TILE : nq;
    for (int64_t p0 = 0; p0 < np; p0 += KERN_TILE) {
      int64_t p1 = p0 + KERN_TILE < np ? p0 + KERN_TILE : np;
      for (int64_t iq = q0; iq < q1; iq++) {
        modelc_rt_real *yr = y + oy.offset + iq * sq;
        const modelc_rt_real *xr = x + ox.offset + iq;
        for (int64_t ip = p0; ip < p1; ip++) yr[ip] = xr[ip * sp];
      }
    }
  }
}
