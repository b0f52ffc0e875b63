/* interp.c: the reference interpreter (interp.h).
 *
 * One small function per op family, dispatched by the table `ops`.
 * Indexing is done the simple way: an element's linear index in the
 * result is split into coordinates and mapped through the strides of
 * the operand (0 along broadcast or reduced axes). Formulas are the
 * exact ones (gelu with erf, softmax with the row maximum subtracted). */
#include "interp.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ir_interp {
  const ir_graph *g;
  int num_values;
  double **data;  /* by value id */
  double **grads; /* by value id of a param with a grad effect */
};

/* The node being evaluated. */
typedef struct exec {
  ir_interp *in;
  const ir_node *n;
  double *y;         /* result 0, NULL for effects */
  const ir_type *yt; /* its type */
  char *err;
  size_t errlen;
} exec;

typedef bool (*op_fn)(exec *e);

static bool fail(exec *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool fail(exec *e, const char *fmt, ...) {
  int k = snprintf(e->err, e->errlen, "%s: ", ir_op_get(e->n->op)->name);
  va_list ap;
  va_start(ap, fmt);
  if (k >= 0 && (size_t)k < e->errlen) vsnprintf(e->err + k, e->errlen - (size_t)k, fmt, ap);
  va_end(ap);
  return false;
}

static const double *arg(const exec *e, int i) { return e->in->data[e->n->inputs[i]->id]; }
static const ir_type *arg_type(const exec *e, int i) { return &e->n->inputs[i]->type; }
static int64_t numel(const ir_type *t) { return ir_type_numel(t); }

static void fill(double *p, int64_t n, double v) {
  for (int64_t i = 0; i < n; i++) p[i] = v;
}

/* ---- indexing ---- */

static void contiguous_strides(const ir_type *t, int64_t st[IR_MAX_RANK]) {
  int64_t s = 1;
  for (int d = t->rank - 1; d >= 0; d--) {
    st[d] = s;
    s *= t->dims[d];
  }
}

/* Strides of t read as a tensor of shape out, dims aligned on the right:
 * 0 along the dims t lacks or has as 1. */
static void broadcast_strides(const ir_type *t, const ir_type *out, int64_t st[IR_MAX_RANK]) {
  int64_t s = 1;
  for (int d = out->rank - 1; d >= 0; d--) {
    int j = d - (out->rank - t->rank);
    st[d] = j < 0 || t->dims[j] == 1 ? 0 : s;
    if (j >= 0) s *= t->dims[j];
  }
}

/* Offset, under strides st, of the element at linear index i of shape t. */
static int64_t offset_of(int64_t i, const ir_type *t, const int64_t *st) {
  int64_t off = 0;
  for (int d = t->rank - 1; d >= 0; d--) {
    off += (i % t->dims[d]) * st[d];
    i /= t->dims[d];
  }
  return off;
}

static int norm_axis(int64_t axis, int rank) { return (int)(axis < 0 ? axis + rank : axis); }

/* ---- elementwise ---- */

static double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  double z = exp(x);
  return z / (1.0 + z);
}

static const double GELU_K = 0.7978845608028654;       /* sqrt(2/pi) */
static const double SQRT1_2 = 0.7071067811865476;      /* 1/sqrt(2) */
static const double INV_SQRT_2PI = 0.3989422804014327; /* 1/sqrt(2 pi) */

static double gelu_tanh_inner(double x) { return GELU_K * (x + 0.044715 * x * x * x); }

static double op_neg(double x) { return -x; }
static double op_relu(double x) { return x > 0 ? x : 0; }
static double op_gelu(double x) { return 0.5 * x * (1.0 + erf(x * SQRT1_2)); }
static double op_gelu_tanh(double x) { return 0.5 * x * (1.0 + tanh(gelu_tanh_inner(x))); }
static double op_silu(double x) { return x * sigmoid(x); }
static double op_rsqrt(double x) { return 1.0 / sqrt(x); }
static double op_softplus(double x) { return fmax(x, 0.0) + log1p(exp(-fabs(x))); }
static double op_sign(double x) { return (x > 0) - (x < 0); }
static double op_identity(double x) { return x; }

static double op_add(double a, double b) { return a + b; }
static double op_sub(double a, double b) { return a - b; }
static double op_mul(double a, double b) { return a * b; }
static double op_div(double a, double b) { return a / b; }

static double op_relu_grad(double x, double g) { return x > 0 ? g : 0.0; }
static double op_gelu_grad(double x, double g) {
  double cdf = 0.5 * (1.0 + erf(x * SQRT1_2));
  double pdf = exp(-0.5 * x * x) * INV_SQRT_2PI;
  return g * (cdf + x * pdf);
}
static double op_gelu_tanh_grad(double x, double g) {
  double t = tanh(gelu_tanh_inner(x));
  double du = GELU_K * (1.0 + 3.0 * 0.044715 * x * x);
  return g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du);
}
static double op_silu_grad(double x, double g) {
  double s = sigmoid(x);
  return g * s * (1.0 + x * (1.0 - s));
}
static double op_softplus_grad(double x, double g) { return g * sigmoid(x); }
static double op_sigmoid_grad(double y, double g) { return g * y * (1.0 - y); }
static double op_tanh_grad(double y, double g) { return g * (1.0 - y * y); }

static double (*const unary[IR_OP_COUNT])(double) = {
    [IR_OP_neg] = op_neg,
    [IR_OP_relu] = op_relu,
    [IR_OP_gelu] = op_gelu,
    [IR_OP_gelu_tanh] = op_gelu_tanh,
    [IR_OP_silu] = op_silu,
    [IR_OP_sigmoid] = sigmoid,
    [IR_OP_tanh] = tanh,
    [IR_OP_exp] = exp,
    [IR_OP_log] = log,
    [IR_OP_sqrt] = sqrt,
    [IR_OP_rsqrt] = op_rsqrt,
    [IR_OP_abs] = fabs,
    [IR_OP_softplus] = op_softplus,
    [IR_OP_sign] = op_sign,
    [IR_OP_broadcast] = op_identity,
};

static double (*const binary[IR_OP_COUNT])(double, double) = {
    [IR_OP_add] = op_add,
    [IR_OP_sub] = op_sub,
    [IR_OP_mul] = op_mul,
    [IR_OP_div] = op_div,
    [IR_OP_relu_grad] = op_relu_grad,
    [IR_OP_gelu_grad] = op_gelu_grad,
    [IR_OP_gelu_tanh_grad] = op_gelu_tanh_grad,
    [IR_OP_silu_grad] = op_silu_grad,
    [IR_OP_softplus_grad] = op_softplus_grad,
    [IR_OP_sigmoid_grad] = op_sigmoid_grad,
    [IR_OP_tanh_grad] = op_tanh_grad,
};

/* Element i of the result from the operands' elements v. */
static double pointwise_one(const exec *e, const double *v) {
  ir_op op = e->n->op;
  if (op == IR_OP_where) return v[0] != 0 ? v[1] : v[2];
  if (binary[op]) return binary[op](v[0], v[1]);
  return unary[op](v[0]);
}

/* Elementwise ops, where, broadcast: operands broadcast to the result. */
static bool run_pointwise(exec *e) {
  int64_t st[3][IR_MAX_RANK];
  int k = e->n->num_inputs;
  for (int i = 0; i < k; i++) broadcast_strides(arg_type(e, i), e->yt, st[i]);
  for (int64_t j = 0, n = numel(e->yt); j < n; j++) {
    double v[3];
    for (int i = 0; i < k; i++) v[i] = arg(e, i)[offset_of(j, e->yt, st[i])];
    e->y[j] = pointwise_one(e, v);
  }
  return true;
}

/* fused_elementwise: its expression per element, the inputs broadcast. */
static double fexpr_eval(const ir_fexpr *x, const double *leaf) {
  if (x->kind == IR_FEXPR_INPUT) return leaf[x->input];
  if (x->kind == IR_FEXPR_CONST) return x->value;
  double v[3];
  for (int i = 0; i < x->num_args; i++) v[i] = fexpr_eval(x->args[i], leaf);
  if (x->op == IR_OP_where) return v[0] != 0 ? v[1] : v[2];
  if (binary[x->op]) return binary[x->op](v[0], v[1]);
  return unary[x->op](v[0]);
}

static bool run_fused(exec *e) {
  enum { MAX_IN = 64 };
  int k = e->n->num_inputs;
  if (k > MAX_IN) return fail(e, "more than %d inputs", MAX_IN);
  ir_arena *arena = ir_arena_new();
  char msg[IR_ERR_LEN];
  const ir_fexpr *x = arena ? ir_fexpr_parse(arena, ir_get_str(e->n, "expr", ""), k, msg, sizeof msg) : NULL;
  if (!x) {
    ir_arena_free(arena);
    return fail(e, "%s", arena ? msg : "out of memory");
  }
  int64_t st[MAX_IN][IR_MAX_RANK];
  for (int i = 0; i < k; i++) broadcast_strides(arg_type(e, i), e->yt, st[i]);
  double leaf[MAX_IN];
  for (int64_t j = 0, n = numel(e->yt); j < n; j++) {
    for (int i = 0; i < k; i++) leaf[i] = arg(e, i)[offset_of(j, e->yt, st[i])];
    e->y[j] = fexpr_eval(x, leaf);
  }
  ir_arena_free(arena);
  return true;
}

/* cast: to an integer dtype truncates (u8 also wraps); floats stay exact. */
static bool run_cast(exec *e) {
  const double *x = arg(e, 0);
  ir_dtype to = e->yt->dtype;
  for (int64_t j = 0, n = numel(e->yt); j < n; j++) {
    double v = ir_dtype_is_float(to) ? x[j] : trunc(x[j]);
    e->y[j] = to == IR_u8 ? (double)((uint8_t)(int64_t)v) : v;
  }
  return true;
}

/* ---- reductions ---- */

/* Strides that send an element of x to its element of the reduction
 * (keepdim or not, the layout is the same): 0 along reduced axes. */
static int64_t reduce_strides(const ir_node *n, const ir_type *x, int64_t st[IR_MAX_RANK]) {
  const int64_t *axes;
  int count = ir_get_ints(n, "axes", &axes);
  bool reduced[IR_MAX_RANK] = {false};
  for (int i = 0; i < x->rank; i++) reduced[i] = count == 0;
  for (int i = 0; i < count && x->rank > 0; i++) reduced[norm_axis(axes[i], x->rank)] = true;
  int64_t s = 1, covered = 1;
  for (int d = x->rank - 1; d >= 0; d--) {
    st[d] = reduced[d] ? 0 : s;
    if (reduced[d])
      covered *= x->dims[d];
    else
      s *= x->dims[d];
  }
  return covered;
}

/* sum, mean, max over axes. */
static bool run_reduce(exec *e) {
  const ir_type *xt = arg_type(e, 0);
  const double *x = arg(e, 0);
  int64_t st[IR_MAX_RANK], covered = reduce_strides(e->n, xt, st), n = numel(e->yt);
  bool is_max = e->n->op == IR_OP_max;
  fill(e->y, n, is_max ? -INFINITY : 0.0);
  for (int64_t j = 0, m = numel(xt); j < m; j++) {
    double *o = &e->y[offset_of(j, xt, st)];
    *o = is_max ? fmax(*o, x[j]) : *o + x[j];
  }
  if (e->n->op == IR_OP_mean)
    for (int64_t j = 0; j < n; j++) e->y[j] /= (double)covered;
  return true;
}

/* max_grad(x, y, g): g to the first element of x (in row-major order)
 * that equals its maximum y. */
static bool run_max_grad(exec *e) {
  const ir_type *xt = arg_type(e, 0);
  const double *x = arg(e, 0), *y = arg(e, 1), *g = arg(e, 2);
  int64_t st[IR_MAX_RANK];
  reduce_strides(e->n, xt, st);
  bool *taken = calloc((size_t)numel(arg_type(e, 1)) + 1, sizeof *taken);
  if (!taken) return fail(e, "out of memory");
  for (int64_t j = 0, m = numel(xt); j < m; j++) {
    int64_t o = offset_of(j, xt, st);
    bool first = !taken[o] && x[j] == y[o];
    e->y[j] = first ? g[o] : 0.0;
    if (first) taken[o] = true;
  }
  free(taken);
  return true;
}

/* ---- along one axis: softmax, log_softmax and their gradients ---- */

typedef struct row {
  int64_t len, stride; /* elements along the axis, and their distance */
} row;

/* Calls fn on every row of the node's input 0 along attribute "axis". */
static bool for_rows(exec *e, void (*fn)(exec *, int64_t base, row r)) {
  const ir_type *t = arg_type(e, 0);
  if (t->rank == 0) {
    fn(e, 0, (row){1, 1});
    return true;
  }
  int axis = norm_axis(ir_get_int(e->n, "axis", -1), t->rank);
  int64_t inner = 1;
  for (int d = axis + 1; d < t->rank; d++) inner *= t->dims[d];
  int64_t len = t->dims[axis], outer = numel(t) / (len * inner);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) fn(e, o * len * inner + i, (row){len, inner});
  return true;
}

static void softmax_row(exec *e, int64_t base, row r) {
  const double *x = arg(e, 0) + base;
  double *y = e->y + base, m = -INFINITY, s = 0;
  for (int64_t k = 0; k < r.len; k++) m = fmax(m, x[k * r.stride]);
  for (int64_t k = 0; k < r.len; k++) s += exp(x[k * r.stride] - m);
  bool log_form = e->n->op == IR_OP_log_softmax;
  for (int64_t k = 0; k < r.len; k++) {
    double z = x[k * r.stride] - m;
    y[k * r.stride] = log_form ? z - log(s) : exp(z) / s;
  }
}

/* softmax_grad(y, g) = y (g - sum(g y)); log_softmax_grad(y, g) = g - exp(y) sum(g). */
static void softmax_grad_row(exec *e, int64_t base, row r) {
  const double *y = arg(e, 0) + base, *g = arg(e, 1) + base;
  double *dx = e->y + base, s = 0;
  bool log_form = e->n->op == IR_OP_log_softmax_grad;
  for (int64_t k = 0; k < r.len; k++)
    s += log_form ? g[k * r.stride] : g[k * r.stride] * y[k * r.stride];
  for (int64_t k = 0; k < r.len; k++) {
    int64_t i = k * r.stride;
    dx[i] = log_form ? g[i] - exp(y[i]) * s : y[i] * (g[i] - s);
  }
}

static bool run_softmax(exec *e) { return for_rows(e, softmax_row); }
static bool run_softmax_grad(exec *e) { return for_rows(e, softmax_grad_row); }

/* ---- nll_loss ---- */

/* The class of position p, or -1 when ignored; -2 when out of range. */
static int64_t target_at(const exec *e, int64_t p, int64_t classes) {
  int64_t t = (int64_t)arg(e, 1)[p];
  if (t == ir_get_int(e->n, "ignore_index", -100)) return -1;
  return t >= 0 && t < classes ? t : -2;
}

/* nll_loss(logp [P, C], t [P]) and nll_loss_grad(logp, t, g[]). */
static bool run_nll(exec *e) {
  const ir_type *lt = arg_type(e, 0);
  int64_t classes = lt->dims[lt->rank - 1], positions = numel(lt) / classes, kept = 0;
  bool grad = e->n->op == IR_OP_nll_loss_grad;
  double sum = 0;
  for (int64_t p = 0; p < positions; p++) {
    int64_t t = target_at(e, p, classes);
    if (t == -2)
      return fail(e, "target %g out of range [0,%lld)", arg(e, 1)[p], (long long)classes);
    if (t >= 0) kept++, sum -= arg(e, 0)[p * classes + t];
  }
  if (!grad) {
    e->y[0] = sum / (double)kept;
    return true;
  }
  fill(e->y, numel(lt), 0.0);
  for (int64_t p = 0; p < positions; p++) {
    int64_t t = target_at(e, p, classes);
    if (t >= 0) e->y[p * classes + t] = -arg(e, 2)[0] / (double)kept;
  }
  return true;
}

/* softmax_cross_entropy (loss, lse) and its gradient, from the logits. */
static bool run_softmax_ce(exec *e) {
  const ir_type *lt = arg_type(e, 0);
  bool grad = e->n->op == IR_OP_softmax_cross_entropy_grad;
  int64_t classes = lt->dims[lt->rank - 1], rows = numel(lt) / classes, kept = 0;
  const double *x = arg(e, 0), *targets = arg(e, grad ? 2 : 1);
  int64_t ignore = ir_get_int(e->n, "ignore_index", -100);
  double sum = 0;
  double *lse = grad ? NULL : e->in->data[e->n->results[1]->id];
  for (int64_t r = 0; r < rows; r++) {
    const double *row = x + r * classes;
    double mx = -INFINITY, s = 0;
    for (int64_t c = 0; c < classes; c++) mx = fmax(mx, row[c]);
    for (int64_t c = 0; c < classes; c++) s += exp(row[c] - mx);
    double l = mx + log(s);
    if (lse) lse[r] = l;
    int64_t t = (int64_t)targets[r];
    if (t == ignore) continue;
    if (t < 0 || t >= classes) return fail(e, "target %lld out of range [0,%lld)", (long long)t, (long long)classes);
    kept++;
    sum += l - row[t];
  }
  if (!grad) {
    e->y[0] = sum / (double)kept;
    return true;
  }
  double gk = kept ? arg(e, 3)[0] / (double)kept : 0;
  for (int64_t r = 0; r < rows; r++) {
    const double *row = x + r * classes;
    int64_t t = (int64_t)targets[r];
    double l = arg(e, 1)[r];
    for (int64_t c = 0; c < classes; c++)
      e->y[r * classes + c] = t == ignore ? 0 : (exp(row[c] - l) - (c == t)) * gk;
  }
  return true;
}

/* glu(h) = act(a) * b with h = [a | b] along the last dim; glu_grad. */
static bool run_glu(exec *e) {
  const ir_type *ht = arg_type(e, 0);
  int64_t f = ht->dims[ht->rank - 1] / 2, rows = numel(ht) / (2 * f);
  ir_op act = IR_OP_silu;
  ir_op_lookup(ir_get_str(e->n, "act", "silu"), &act);
  double (*grad)(double, double) = act == IR_OP_sigmoid ? NULL : binary[act == IR_OP_silu ? IR_OP_silu_grad
                                                                     : act == IR_OP_gelu ? IR_OP_gelu_grad
                                                                                         : IR_OP_gelu_tanh_grad];
  const double *h = arg(e, 0);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < f; i++) {
      double a = h[r * 2 * f + i], b = h[r * 2 * f + f + i], y = unary[act](a);
      if (e->n->op == IR_OP_glu) {
        e->y[r * f + i] = y * b;
        continue;
      }
      double g = arg(e, 1)[r * f + i];
      e->y[r * 2 * f + i] = grad ? grad(a, g * b) : g * b * y * (1 - y);
      e->y[r * 2 * f + f + i] = g * y;
    }
  return true;
}

/* fused_norm(x, w, b?) -> y, mean, rstd and fused_norm_grad(d.y, x,
 * mean, rstd, w, dr?) -> d.x, d.w, d.b (runtime/rt_norm.c's formulas). */
static bool run_fused_norm(exec *e) {
  bool grad = e->n->op == IR_OP_fused_norm_grad, rms = ir_get_bool(e->n, "rms", false);
  const ir_type *xt = arg_type(e, grad ? 1 : 0);
  int64_t d = xt->dims[xt->rank - 1], rows = numel(xt) / d;
  const double *x = arg(e, grad ? 1 : 0), *w = arg(e, grad ? 4 : 1);
  double *r1 = e->in->data[e->n->results[1]->id], *r2 = e->in->data[e->n->results[2]->id];
  if (!grad) {
    const double *b = e->n->num_inputs == 3 ? arg(e, 2) : NULL;
    double eps = ir_get_float(e->n, "eps", 1e-5);
    for (int64_t r = 0; r < rows; r++) {
      const double *xr = x + r * d;
      double mu = 0, var = 0;
      for (int64_t j = 0; !rms && j < d; j++) mu += xr[j] / (double)d;
      for (int64_t j = 0; j < d; j++) var += (xr[j] - mu) * (xr[j] - mu) / (double)d;
      double s = 1.0 / sqrt(var + eps);
      r1[r] = mu, r2[r] = s;
      for (int64_t j = 0; j < d; j++) e->y[r * d + j] = (xr[j] - mu) * s * w[j] + (b ? b[j] : 0.0);
    }
    return true;
  }
  const double *dy = arg(e, 0), *mean = arg(e, 2), *rstd = arg(e, 3);
  const double *dr = e->n->num_inputs == 6 ? arg(e, 5) : NULL;
  fill(r1, d, 0.0);
  fill(r2, d, 0.0);
  for (int64_t r = 0; r < rows; r++) {
    const double *xr = x + r * d, *gr = dy + r * d;
    double sum_g = 0, sum_gx = 0, m = mean[r], s = rstd[r];
    for (int64_t j = 0; j < d; j++) {
      sum_g += gr[j] * w[j];
      sum_gx += gr[j] * w[j] * (xr[j] - m) * s;
      r1[j] += gr[j] * (xr[j] - m) * s;
      r2[j] += gr[j];
    }
    double a = rms ? 0.0 : sum_g / (double)d, c = sum_gx / (double)d;
    for (int64_t j = 0; j < d; j++)
      e->y[r * d + j] = s * (gr[j] * w[j] - a - (xr[j] - m) * s * c) + (dr ? dr[r * d + j] : 0.0);
  }
  return true;
}

/* ---- matmul ---- */

/* An operand as a batch of matrices: element (i, k) of matrix b at
 * p + b * size + i * rs + k * cs. 1-D operands are a row (lhs) or a
 * column (rhs) with no batch. */
typedef struct matrix {
  const double *p;
  int64_t rows, cols, rs, cs, size;
  ir_type batch;
} matrix;

static matrix matrix_of(const double *p, const ir_type *t, bool transpose, bool rhs) {
  matrix m = {.p = p, .batch = *t};
  if (t->rank == 1) {
    m.batch.rank = 0;
    m.size = t->dims[0];
    m.rows = rhs ? m.size : 1, m.cols = rhs ? 1 : m.size;
    m.rs = rhs ? 1 : 0, m.cs = rhs ? 0 : 1;
    return m;
  }
  int64_t r = t->dims[t->rank - 2], c = t->dims[t->rank - 1];
  m.batch.rank = t->rank - 2;
  m.size = r * c;
  m.rows = transpose ? c : r, m.cols = transpose ? r : c;
  m.rs = transpose ? 1 : c, m.cs = transpose ? c : 1;
  return m;
}

static void matmul_one(const matrix *a, const matrix *b, int64_t ao, int64_t bo, double *y) {
  for (int64_t i = 0; i < a->rows; i++)
    for (int64_t j = 0; j < b->cols; j++) {
      double s = 0;
      for (int64_t k = 0; k < a->cols; k++)
        s += a->p[ao + i * a->rs + k * a->cs] * b->p[bo + k * b->rs + j * b->cs];
      y[i * b->cols + j] = s;
    }
}

static bool run_matmul(exec *e) {
  matrix a = matrix_of(arg(e, 0), arg_type(e, 0), ir_get_bool(e->n, "transpose_a", false), false);
  matrix b = matrix_of(arg(e, 1), arg_type(e, 1), ir_get_bool(e->n, "transpose_b", false), true);
  ir_type batch = *e->yt;
  batch.rank -= (arg_type(e, 0)->rank > 1) + (arg_type(e, 1)->rank > 1);
  int64_t sa[IR_MAX_RANK], sb[IR_MAX_RANK];
  broadcast_strides(&a.batch, &batch, sa);
  broadcast_strides(&b.batch, &batch, sb);
  int64_t mn = a.rows * b.cols;
  for (int64_t k = 0, n = numel(&batch); k < n; k++)
    matmul_one(&a, &b, offset_of(k, &batch, sa) * a.size, offset_of(k, &batch, sb) * b.size,
               e->y + k * mn);
  return true;
}

/* ---- convolution and pooling: NCL is NCHW with H = 1 ---- */

typedef struct window {
  int64_t n, c, h, w; /* input */
  int64_t o, oh, ow;  /* output channels and size */
  int64_t kh, kw, sh, sw, ph, pw, dh, dw, groups;
} window;

/* Value i (of `spatial`) of a per-dim list attribute, fallback if absent. */
static int64_t list_at(const ir_node *n, const char *name, int spatial, int i, int64_t fallback) {
  const int64_t *v;
  int count = ir_get_ints(n, name, &v);
  if (count == 0) return fallback;
  return v[count == 1 ? 0 : (spatial == 1 ? 0 : i)];
}

/* Geometry from the input x, output y and kernel sizes k (rank-2 dims). */
static window window_of(const ir_node *n, const ir_type *x, const ir_type *y, const int64_t *k,
                        int64_t default_stride_h, int64_t default_stride_w) {
  int sp = x->rank - 2;
  bool two = sp == 2;
  window q = {.n = x->dims[0],
              .c = x->dims[1],
              .h = two ? x->dims[2] : 1,
              .w = x->dims[x->rank - 1],
              .o = y->dims[1],
              .oh = two ? y->dims[2] : 1,
              .ow = y->dims[y->rank - 1],
              .kh = two ? k[0] : 1,
              .kw = k[sp - 1],
              .groups = ir_get_int(n, "groups", 1)};
  q.sh = two ? list_at(n, "stride", sp, 0, default_stride_h) : 1;
  q.sw = list_at(n, "stride", sp, sp - 1, default_stride_w);
  q.ph = two ? list_at(n, "padding", sp, 0, 0) : 0;
  q.pw = list_at(n, "padding", sp, sp - 1, 0);
  q.dh = two ? list_at(n, "dilation", sp, 0, 1) : 1;
  q.dw = list_at(n, "dilation", sp, sp - 1, 1);
  return q;
}

typedef enum { CONV_FORWARD, CONV_GRAD_INPUT, CONV_GRAD_WEIGHT } conv_mode;

typedef struct conv_args {
  const double *x, *w, *y; /* the two read in this mode; the third unused */
  double *out;
} conv_args;

/* Every (input, weight) pair feeding output element (nn, o, oy, ox). */
static void conv_point(const window *q, conv_mode mode, const conv_args *a, int64_t yi, int64_t nn,
                       int64_t o, int64_t oy, int64_t ox) {
  int64_t cg = q->c / q->groups, grp = o / (q->o / q->groups);
  for (int64_t c = 0; c < cg; c++)
    for (int64_t ky = 0; ky < q->kh; ky++)
      for (int64_t kx = 0; kx < q->kw; kx++) {
        int64_t iy = oy * q->sh - q->ph + ky * q->dh, ix = ox * q->sw - q->pw + kx * q->dw;
        if (iy < 0 || iy >= q->h || ix < 0 || ix >= q->w) continue;
        int64_t xi = ((nn * q->c + grp * cg + c) * q->h + iy) * q->w + ix;
        int64_t wi = ((o * cg + c) * q->kh + ky) * q->kw + kx;
        if (mode == CONV_FORWARD) a->out[yi] += a->x[xi] * a->w[wi];
        if (mode == CONV_GRAD_INPUT) a->out[xi] += a->y[yi] * a->w[wi];
        if (mode == CONV_GRAD_WEIGHT) a->out[wi] += a->x[xi] * a->y[yi];
      }
}

static void conv_loop(const window *q, conv_mode mode, const conv_args *a) {
  int64_t yi = 0;
  for (int64_t nn = 0; nn < q->n; nn++)
    for (int64_t o = 0; o < q->o; o++)
      for (int64_t oy = 0; oy < q->oh; oy++)
        for (int64_t ox = 0; ox < q->ow; ox++, yi++) conv_point(q, mode, a, yi, nn, o, oy, ox);
}

/* conv(x, w), conv_grad_input(g, w) -> x, conv_grad_weight(x, g) -> w. */
static bool run_conv(exec *e) {
  ir_op op = e->n->op;
  const ir_type *x = op == IR_OP_conv_grad_input ? e->yt : arg_type(e, 0);
  const ir_type *w = op == IR_OP_conv_grad_weight ? e->yt : arg_type(e, 1);
  const ir_type *y = op == IR_OP_conv ? e->yt : arg_type(e, op == IR_OP_conv_grad_input ? 0 : 1);
  window q = window_of(e->n, x, y, w->dims + 2, 1, 1);
  fill(e->y, numel(e->yt), 0.0);
  conv_args a = {.out = e->y};
  if (op == IR_OP_conv) a.x = arg(e, 0), a.w = arg(e, 1);
  if (op == IR_OP_conv_grad_input) a.y = arg(e, 0), a.w = arg(e, 1);
  if (op == IR_OP_conv_grad_weight) a.x = arg(e, 0), a.y = arg(e, 1);
  conv_loop(&q,
            op == IR_OP_conv              ? CONV_FORWARD
            : op == IR_OP_conv_grad_input ? CONV_GRAD_INPUT
                                          : CONV_GRAD_WEIGHT,
            &a);
  return true;
}

/* conv_concat and its gradients, as the unfused graph computes them: the
 * concatenation of the upsampled parts is materialised (this is the
 * reference the fused kernels are checked against). `first` is the
 * index of the first part among the inputs. */
static double *concat_parts(exec *e, int first, const ir_type *x) {
  const int64_t *scales;
  ir_get_ints(e->n, "scales", &scales);
  double *cat = calloc((size_t)numel(x), sizeof *cat);
  if (!cat) return NULL;
  int64_t h = x->dims[2], w = x->dims[3], c0 = 0;
  for (int i = 0; first + i < e->n->num_inputs; i++) {
    const ir_type *t = arg_type(e, first + i);
    const double *src = arg(e, first + i);
    int64_t s = scales[i], c = t->dims[1];
    for (int64_t nn = 0; nn < x->dims[0]; nn++)
      for (int64_t ch = 0; ch < c; ch++)
        for (int64_t iy = 0; iy < h; iy++)
          for (int64_t ix = 0; ix < w; ix++)
            cat[((nn * x->dims[1] + c0 + ch) * h + iy) * w + ix] =
                src[((nn * c + ch) * (h / s) + iy / s) * (w / s) + ix / s];
    c0 += c;
  }
  return cat;
}

static bool run_conv_concat(exec *e) {
  ir_op op = e->n->op;
  const int64_t *scales, *dims;
  ir_get_ints(e->n, "scales", &scales);
  ir_type x;
  if (op == IR_OP_conv_concat_grad_input) {
    ir_get_ints(e->n, "input_shape", &dims);
    x = ir_type_make(IR_f32, 4, dims);
  } else {
    const ir_type *x0 = arg_type(e, 1);
    int64_t c = 0;
    for (int i = 1; i < e->n->num_inputs; i++) c += arg_type(e, i)->dims[1];
    int64_t d[4] = {x0->dims[0], c, x0->dims[2] * scales[0], x0->dims[3] * scales[0]};
    x = ir_type_make(IR_f32, 4, d);
  }
  const ir_type *w = op == IR_OP_conv_concat ? arg_type(e, 0)
                     : op == IR_OP_conv_concat_grad_input ? arg_type(e, 1) : e->yt;
  const ir_type *y = op == IR_OP_conv_concat ? e->yt : arg_type(e, 0);
  window q = window_of(e->n, &x, y, w->dims + 2, 1, 1);
  double *cat = op == IR_OP_conv_concat_grad_input ? calloc((size_t)numel(&x), sizeof *cat)
                                                   : concat_parts(e, 1, &x);
  if (!cat) return fail(e, "out of memory");
  conv_args a = {.out = op == IR_OP_conv_concat_grad_input ? cat : e->y};
  fill(e->y, numel(e->yt), 0.0);
  if (op == IR_OP_conv_concat) a.x = cat, a.w = arg(e, 0);
  if (op == IR_OP_conv_concat_grad_input) a.y = arg(e, 0), a.w = arg(e, 1);
  if (op == IR_OP_conv_concat_grad_weight) a.x = cat, a.y = arg(e, 0);
  conv_loop(&q,
            op == IR_OP_conv_concat              ? CONV_FORWARD
            : op == IR_OP_conv_concat_grad_input ? CONV_GRAD_INPUT
                                                 : CONV_GRAD_WEIGHT,
            &a);
  if (op == IR_OP_conv_concat_grad_input) { /* this part's channels, copies summed */
    const int64_t *channels;
    ir_get_ints(e->n, "channels", &channels);
    int64_t part = ir_get_int(e->n, "part", 0), c0 = 0;
    for (int64_t i = 0; i < part; i++) c0 += channels[i];
    int64_t s = scales[part], c = channels[part], h = x.dims[2], wd = x.dims[3];
    for (int64_t nn = 0; nn < x.dims[0]; nn++)
      for (int64_t ch = 0; ch < c; ch++)
        for (int64_t iy = 0; iy < h; iy++)
          for (int64_t ix = 0; ix < wd; ix++)
            e->y[((nn * c + ch) * (h / s) + iy / s) * (wd / s) + ix / s] +=
                cat[((nn * x.dims[1] + c0 + ch) * h + iy) * wd + ix];
  }
  free(cat);
  return true;
}

static window pool_window(const exec *e) {
  const int64_t *k;
  int count = ir_get_ints(e->n, "kernel", &k);
  int64_t kernel[2] = {k[0], k[count == 1 ? 0 : 1]};
  const ir_type *x = arg_type(e, 0), *y = e->n->num_inputs == 2 ? arg_type(e, 1) : e->yt;
  return window_of(e->n, x, y, kernel, kernel[0], kernel[1]);
}

/* Offset in x's plane of the first maximum of window (oy, ox), or -1. */
static int64_t pool_argmax(const window *q, const double *plane, int64_t oy, int64_t ox) {
  int64_t at = -1;
  for (int64_t ky = 0; ky < q->kh; ky++)
    for (int64_t kx = 0; kx < q->kw; kx++) {
      int64_t iy = oy * q->sh - q->ph + ky, ix = ox * q->sw - q->pw + kx;
      if (iy < 0 || iy >= q->h || ix < 0 || ix >= q->w) continue;
      if (at < 0 || plane[iy * q->w + ix] > plane[at]) at = iy * q->w + ix;
    }
  return at;
}

/* PyTorch's count_include_pad divisor: the window clipped to the padded
 * input. */
static double pool_divisor(const window *q, int64_t oy, int64_t ox) {
  int64_t hs = oy * q->sh - q->ph, ws = ox * q->sw - q->pw;
  int64_t he = hs + q->kh < q->h + q->ph ? hs + q->kh : q->h + q->ph;
  int64_t we = ws + q->kw < q->w + q->pw ? ws + q->kw : q->w + q->pw;
  return (double)((he - hs) * (we - ws));
}

/* avgpool (scale = 1, gather) or avgpool_grad (scatter) of one window. */
static void avg_window(const window *q, const double *src, double *dst, int64_t oy, int64_t ox,
                       bool grad) {
  double inv = 1.0 / pool_divisor(q, oy, ox), sum = 0;
  for (int64_t iy = oy * q->sh - q->ph; iy < oy * q->sh - q->ph + q->kh; iy++)
    for (int64_t ix = ox * q->sw - q->pw; ix < ox * q->sw - q->pw + q->kw; ix++) {
      if (iy < 0 || iy >= q->h || ix < 0 || ix >= q->w) continue;
      if (grad)
        dst[iy * q->w + ix] += src[oy * q->ow + ox] * inv;
      else
        sum += src[iy * q->w + ix];
    }
  if (!grad) dst[oy * q->ow + ox] = sum * inv;
}

/* maxpool(x), avgpool(x), maxpool_grad(x, g), avgpool_grad(x, g). */
static bool run_pool(exec *e) {
  window q = pool_window(e);
  ir_op op = e->n->op;
  bool grad = op == IR_OP_maxpool_grad || op == IR_OP_avgpool_grad;
  bool max = op == IR_OP_maxpool || op == IR_OP_maxpool_grad;
  int64_t in_plane = q.h * q.w, out_plane = q.oh * q.ow;
  fill(e->y, numel(e->yt), 0.0);
  for (int64_t p = 0; p < q.n * q.c; p++)
    for (int64_t oy = 0; oy < q.oh; oy++)
      for (int64_t ox = 0; ox < q.ow; ox++) {
        const double *x = arg(e, 0) + p * in_plane;
        const double *g = grad ? arg(e, 1) + p * out_plane : NULL;
        double *y = e->y + p * (grad ? in_plane : out_plane);
        int64_t at = max ? pool_argmax(&q, x, oy, ox) : 0;
        if (max && grad && at >= 0) y[at] += g[oy * q.ow + ox];
        if (max && !grad) y[oy * q.ow + ox] = at >= 0 ? x[at] : -INFINITY;
        if (!max) avg_window(&q, grad ? g : x, y, oy, ox, grad);
      }
  return true;
}

/* ---- upsample ---- */

/* Source index and weight pair along one dim, PyTorch's align_corners=
 * false: src = max((o + 0.5) / s - 0.5, 0), i1 = min(i0 + 1, len - 1). */
static void bilinear_taps(int64_t o, int64_t s, int64_t len, int64_t i[2], double w[2]) {
  double src = ((double)o + 0.5) / (double)s - 0.5;
  if (src < 0) src = 0;
  i[0] = (int64_t)src;
  i[1] = i[0] < len - 1 ? i[0] + 1 : i[0];
  w[1] = src - (double)i[0];
  w[0] = 1.0 - w[1];
}

/* upsample(x) (gather into each output) or upsample_grad(x, g) (scatter
 * g back), per plane. */
static bool run_upsample(exec *e) {
  const ir_type *x = arg_type(e, 0);
  bool grad = e->n->op == IR_OP_upsample_grad;
  bool bilinear = strcmp(ir_get_str(e->n, "mode", "nearest"), "bilinear") == 0;
  int64_t s = ir_get_int(e->n, "scale", 1), h = x->dims[2], w = x->dims[3];
  int64_t oh = h * s, ow = w * s, planes = x->dims[0] * x->dims[1];
  const double *src = arg(e, grad ? 1 : 0);
  fill(e->y, numel(e->yt), 0.0);
  for (int64_t p = 0; p < planes; p++)
    for (int64_t oy = 0; oy < oh; oy++)
      for (int64_t ox = 0; ox < ow; ox++) {
        int64_t iy[2] = {oy / s, oy / s}, ix[2] = {ox / s, ox / s};
        double wy[2] = {1, 0}, wx[2] = {1, 0};
        if (bilinear) bilinear_taps(oy, s, h, iy, wy), bilinear_taps(ox, s, w, ix, wx);
        int64_t out = (p * oh + oy) * ow + ox;
        for (int a = 0; a < 4; a++) {
          int64_t in = (p * h + iy[a / 2]) * w + ix[a % 2];
          double weight = wy[a / 2] * wx[a % 2];
          if (grad)
            e->y[in] += weight * src[out];
          else
            e->y[out] += weight * src[in];
        }
      }
  return true;
}

/* ---- embeddings and rotary positions ---- */

/* gather(table [N,D], ids) -> [..., D]; gather_grad(ids, g) -> [num, D]. */
static bool run_gather(exec *e) {
  bool grad = e->n->op == IR_OP_gather_grad;
  const ir_type *table = grad ? e->yt : arg_type(e, 0);
  const double *ids = arg(e, grad ? 0 : 1), *src = arg(e, grad ? 1 : 0);
  int64_t rows = table->dims[0], d = table->dims[1], count = numel(arg_type(e, grad ? 0 : 1));
  if (grad) fill(e->y, numel(e->yt), 0.0);
  for (int64_t p = 0; p < count; p++) {
    int64_t id = (int64_t)ids[p];
    if (id < 0 || id >= rows)
      return fail(e, "id %g out of range [0,%lld)", ids[p], (long long)rows);
    for (int64_t k = 0; k < d; k++) {
      if (grad)
        e->y[id * d + k] += src[p * d + k];
      else
        e->y[p * d + k] = src[id * d + k];
    }
  }
  return true;
}

/* rope(x [..., T, hd]): pairs (i, i + hd/2) rotated by t base^(-2i/hd);
 * rope_grad rotates back. An odd last element passes through. */
static bool run_rope(exec *e) {
  const ir_type *t = arg_type(e, 0);
  int64_t len = t->dims[t->rank - 2], hd = t->dims[t->rank - 1], half = hd / 2;
  int64_t rows = numel(t) / hd;
  double base = ir_get_float(e->n, "base", 10000.0), sign = e->n->op == IR_OP_rope ? 1 : -1;
  const double *x = arg(e, 0);
  memcpy(e->y, x, (size_t)numel(t) * sizeof *x);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < half; i++) {
      double a = (double)(r % len) * pow(base, -2.0 * (double)i / (double)hd);
      double c = cos(a), s = sign * sin(a), lo = x[r * hd + i], hi = x[r * hd + i + half];
      e->y[r * hd + i] = lo * c - hi * s;
      e->y[r * hd + i + half] = hi * c + lo * s;
    }
  return true;
}

/* ---- layout ---- */

static bool run_reshape(exec *e) {
  memcpy(e->y, arg(e, 0), (size_t)numel(e->yt) * sizeof *e->y);
  return true;
}

static bool run_permute(exec *e) {
  const int64_t *perm;
  int rank = ir_get_ints(e->n, "perm", &perm);
  int64_t in_st[IR_MAX_RANK], st[IR_MAX_RANK];
  contiguous_strides(arg_type(e, 0), in_st);
  for (int d = 0; d < rank; d++) st[d] = in_st[norm_axis(perm[d], rank)];
  for (int64_t j = 0, n = numel(e->yt); j < n; j++) e->y[j] = arg(e, 0)[offset_of(j, e->yt, st)];
  return true;
}

/* Copies input i into the result at `start` along axis (pad, concat). */
static void place(exec *e, int i, int axis, int64_t start) {
  const ir_type *xt = arg_type(e, i);
  int64_t st[IR_MAX_RANK];
  contiguous_strides(e->yt, st);
  for (int64_t j = 0, n = numel(xt); j < n; j++)
    e->y[offset_of(j, xt, st) + start * st[axis]] = arg(e, i)[j];
}

static bool run_slice(exec *e) {
  const ir_type *xt = arg_type(e, 0);
  int axis = norm_axis(ir_get_int(e->n, "axis", 0), xt->rank);
  int64_t st[IR_MAX_RANK], start = ir_get_int(e->n, "start", 0);
  contiguous_strides(xt, st);
  for (int64_t j = 0, n = numel(e->yt); j < n; j++)
    e->y[j] = arg(e, 0)[offset_of(j, e->yt, st) + start * st[axis]];
  return true;
}

static bool run_pad(exec *e) {
  fill(e->y, numel(e->yt), 0.0);
  place(e, 0, norm_axis(ir_get_int(e->n, "axis", 0), e->yt->rank), ir_get_int(e->n, "before", 0));
  return true;
}

static bool run_concat(exec *e) {
  int axis = norm_axis(ir_get_int(e->n, "axis", 0), e->yt->rank);
  int64_t start = 0;
  for (int i = 0; i < e->n->num_inputs; i++) {
    place(e, i, axis, start);
    start += arg_type(e, i)->dims[axis];
  }
  return true;
}

/* ---- sources and effects ---- */

/* ---- fused attention: the plain formulas, row by row ---- */

typedef struct flash_geom {
  int64_t b, h, kv, t, d;
  bool bthd;
} flash_geom;

static flash_geom flash_geom_of(const exec *e) {
  const ir_type *q = arg_type(e, 0), *k = arg_type(e, 1);
  bool bthd = strcmp(ir_get_str(e->n, "layout", "bhtd"), "bthd") == 0;
  return (flash_geom){q->dims[0], q->dims[bthd ? 2 : 1], k->dims[bthd ? 2 : 1],
                      q->dims[bthd ? 1 : 2], q->dims[3], bthd};
}

static int64_t flash_off(const flash_geom *f, int64_t b, int64_t h, int64_t heads, int64_t t) {
  return f->bthd ? ((b * f->t + t) * heads + h) * f->d : ((b * heads + h) * f->t + t) * f->d;
}

static bool flash_allowed(const ir_node *n, int64_t i, int64_t j) {
  int64_t window = ir_get_int(n, "window", 0), global = ir_get_int(n, "global", 0);
  if (ir_get_bool(n, "causal", false) && j > i) return false;
  int64_t dist = i > j ? i - j : j - i;
  return window == 0 || dist < window || i < global || j < global;
}

/* Row t of a q or k head, rotated by rope (sign +1) or back (-1). */
static void flash_row(const exec *e, const flash_geom *f, const double *src, int64_t t,
                      double sign, double *dst) {
  double base = ir_get_float(e->n, "rope", 0.0);
  int64_t half = f->d / 2;
  memmove(dst, src, (size_t)f->d * sizeof *dst);
  if (base <= 0) return;
  for (int64_t i = 0; i < half; i++) {
    double a = (double)t * pow(base, -2.0 * (double)i / (double)f->d);
    double c = cos(a), s = sign * sin(a), lo = src[i], hi = src[i + half];
    dst[i] = lo * c - hi * s;
    dst[i + half] = hi * c + lo * s;
  }
}

/* Probabilities p[j] of row i of head h, and the row's log-sum-exp;
 * q and k rows are rotated into qr and kr [T][d] (scratch). */
static double flash_probs(const exec *e, const flash_geom *f, int64_t b, int64_t h, int64_t i,
                          double *kr, double *qr, double *p) {
  const double scale = ir_get_float(e->n, "scale", 1.0);
  int64_t kvh = h / (f->h / f->kv);
  flash_row(e, f, arg(e, 0) + flash_off(f, b, h, f->h, i), i, 1, qr);
  double mx = -INFINITY;
  for (int64_t j = 0; j < f->t; j++) {
    flash_row(e, f, arg(e, 1) + flash_off(f, b, kvh, f->kv, j), j, 1, kr + j * f->d);
    double s = 0;
    for (int64_t x = 0; x < f->d; x++) s += qr[x] * kr[j * f->d + x];
    p[j] = flash_allowed(e->n, i, j) ? s * scale : -INFINITY;
    if (p[j] > mx) mx = p[j];
  }
  double sum = 0;
  for (int64_t j = 0; j < f->t; j++) sum += p[j] = p[j] == -INFINITY ? 0 : exp(p[j] - mx);
  for (int64_t j = 0; j < f->t; j++) p[j] /= sum;
  return mx + log(sum);
}

static bool run_flash(exec *e) {
  flash_geom f = flash_geom_of(e);
  bool grad = e->n->op == IR_OP_flash_attention_grad;
  double *kr = calloc((size_t)(f.t * f.d), sizeof *kr), *p = calloc((size_t)f.t, sizeof *p);
  double *qr = calloc((size_t)f.d, sizeof *qr), *dp = calloc((size_t)f.t, sizeof *dp);
  double *dq = calloc((size_t)f.d, sizeof *dq), *tmp = calloc((size_t)f.d, sizeof *tmp);
  bool ok = kr && p && qr && dp && dq && tmp;
  const double scale = ir_get_float(e->n, "scale", 1.0);
  double *lse = grad ? NULL : e->in->data[e->n->results[1]->id];
  double *dk = grad ? e->in->data[e->n->results[1]->id] : NULL;
  double *dv = grad ? e->in->data[e->n->results[2]->id] : NULL;
  if (ok && grad) {
    fill(e->y, numel(e->yt), 0);
    fill(dk, numel(arg_type(e, 1)), 0);
    fill(dv, numel(arg_type(e, 2)), 0);
  }
  for (int64_t b = 0; ok && b < f.b; b++)
    for (int64_t h = 0; h < f.h; h++) {
      int64_t kvh = h / (f.h / f.kv);
      for (int64_t i = 0; i < f.t; i++) {
        double l = flash_probs(e, &f, b, h, i, kr, qr, p);
        int64_t qo = flash_off(&f, b, h, f.h, i);
        if (!grad) {
          for (int64_t x = 0; x < f.d; x++) {
            double acc = 0;
            for (int64_t j = 0; j < f.t; j++) acc += p[j] * arg(e, 2)[flash_off(&f, b, kvh, f.kv, j) + x];
            e->y[qo + x] = acc;
          }
          lse[(b * f.h + h) * f.t + i] = l;
          continue;
        }
        /* dv += p^T dout; dp = dout . v; ds = p (dp - sum p dp); the
         * rotated q and k get ds k * scale and ds q * scale. */
        const double *dout = arg(e, 5) + qo;
        double dsum = 0;
        for (int64_t j = 0; j < f.t; j++) {
          int64_t vo = flash_off(&f, b, kvh, f.kv, j);
          dp[j] = 0;
          for (int64_t x = 0; x < f.d; x++) {
            dp[j] += dout[x] * arg(e, 2)[vo + x];
            dv[vo + x] += p[j] * dout[x];
          }
          dsum += p[j] * dp[j];
        }
        fill(dq, f.d, 0);
        for (int64_t j = 0; j < f.t; j++) {
          double ds = p[j] * (dp[j] - dsum) * scale;
          if (ds == 0) continue;
          for (int64_t x = 0; x < f.d; x++) dq[x] += ds * kr[j * f.d + x];
          for (int64_t x = 0; x < f.d; x++) tmp[x] = ds * qr[x];
          flash_row(e, &f, tmp, j, -1, tmp);
          for (int64_t x = 0; x < f.d; x++) dk[flash_off(&f, b, kvh, f.kv, j) + x] += tmp[x];
        }
        flash_row(e, &f, dq, i, -1, tmp);
        for (int64_t x = 0; x < f.d; x++) e->y[qo + x] = tmp[x];
      }
    }
  free(kr), free(p), free(qr), free(dp), free(dq), free(tmp);
  return ok || fail(e, "out of memory");
}

static bool run_nothing(exec *e) {
  (void)e;
  return true;
}

static bool run_const(exec *e) {
  fill(e->y, numel(e->yt), ir_get_float(e->n, "value", 0.0));
  return true;
}

/* Query i sees key j when (!causal || j <= i) && (window == 0 ||
 * |i - j| < window || i < global || j < global). */
static bool run_mask(exec *e) {
  bool causal = ir_get_bool(e->n, "causal", false);
  int64_t window = ir_get_int(e->n, "window", 0), global = ir_get_int(e->n, "global", 0);
  int64_t tq = e->yt->dims[0], tk = e->yt->dims[1];
  for (int64_t i = 0; i < tq; i++)
    for (int64_t j = 0; j < tk; j++) {
      bool near = window == 0 || llabs(i - j) < window || i < global || j < global;
      e->y[i * tk + j] = (!causal || j <= i) && near;
    }
  return true;
}

static bool run_dropout_mask(exec *e) {
  if (ir_get_float(e->n, "p", 0.0) > 0) return fail(e, "dropout");
  fill(e->y, numel(e->yt), 1.0);
  return true;
}

static bool run_grad(exec *e) {
  double *acc = e->in->grads[e->n->inputs[0]->id];
  const double *g = arg(e, 1);
  for (int64_t j = 0, n = numel(arg_type(e, 1)); j < n; j++) acc[j] += g[j];
  return true;
}

/* ---- the table ---- */

static const op_fn ops[IR_OP_COUNT] = {
    [IR_OP_input] = run_nothing,
    [IR_OP_param] = run_nothing,
    [IR_OP_buffer] = run_nothing,
    [IR_OP_const] = run_const,
    [IR_OP_mask] = run_mask,
    [IR_OP_dropout_mask] = run_dropout_mask,
    [IR_OP_neg] = run_pointwise,
    [IR_OP_relu] = run_pointwise,
    [IR_OP_gelu] = run_pointwise,
    [IR_OP_gelu_tanh] = run_pointwise,
    [IR_OP_silu] = run_pointwise,
    [IR_OP_sigmoid] = run_pointwise,
    [IR_OP_tanh] = run_pointwise,
    [IR_OP_exp] = run_pointwise,
    [IR_OP_log] = run_pointwise,
    [IR_OP_sqrt] = run_pointwise,
    [IR_OP_rsqrt] = run_pointwise,
    [IR_OP_abs] = run_pointwise,
    [IR_OP_softplus] = run_pointwise,
    [IR_OP_cast] = run_cast,
    [IR_OP_add] = run_pointwise,
    [IR_OP_sub] = run_pointwise,
    [IR_OP_mul] = run_pointwise,
    [IR_OP_div] = run_pointwise,
    [IR_OP_where] = run_pointwise,
    [IR_OP_sum] = run_reduce,
    [IR_OP_mean] = run_reduce,
    [IR_OP_max] = run_reduce,
    [IR_OP_softmax] = run_softmax,
    [IR_OP_log_softmax] = run_softmax,
    [IR_OP_nll_loss] = run_nll,
    [IR_OP_matmul] = run_matmul,
    [IR_OP_conv] = run_conv,
    [IR_OP_maxpool] = run_pool,
    [IR_OP_avgpool] = run_pool,
    [IR_OP_upsample] = run_upsample,
    [IR_OP_gather] = run_gather,
    [IR_OP_rope] = run_rope,
    [IR_OP_sign] = run_pointwise,
    [IR_OP_reshape] = run_reshape,
    [IR_OP_permute] = run_permute,
    [IR_OP_broadcast] = run_pointwise,
    [IR_OP_slice] = run_slice,
    [IR_OP_concat] = run_concat,
    [IR_OP_relu_grad] = run_pointwise,
    [IR_OP_gelu_grad] = run_pointwise,
    [IR_OP_gelu_tanh_grad] = run_pointwise,
    [IR_OP_silu_grad] = run_pointwise,
    [IR_OP_softplus_grad] = run_pointwise,
    [IR_OP_sigmoid_grad] = run_pointwise,
    [IR_OP_tanh_grad] = run_pointwise,
    [IR_OP_softmax_grad] = run_softmax_grad,
    [IR_OP_log_softmax_grad] = run_softmax_grad,
    [IR_OP_max_grad] = run_max_grad,
    [IR_OP_nll_loss_grad] = run_nll,
    [IR_OP_conv_grad_input] = run_conv,
    [IR_OP_conv_grad_weight] = run_conv,
    [IR_OP_conv_concat] = run_conv_concat,
    [IR_OP_conv_concat_grad_input] = run_conv_concat,
    [IR_OP_conv_concat_grad_weight] = run_conv_concat,
    [IR_OP_maxpool_grad] = run_pool,
    [IR_OP_avgpool_grad] = run_pool,
    [IR_OP_upsample_grad] = run_upsample,
    [IR_OP_gather_grad] = run_gather,
    [IR_OP_rope_grad] = run_rope,
    [IR_OP_pad] = run_pad,
    [IR_OP_assign] = run_nothing,
    [IR_OP_output] = run_nothing,
    [IR_OP_grad] = run_grad,
    [IR_OP_flash_attention] = run_flash,
    [IR_OP_fused_norm] = run_fused_norm,
    [IR_OP_fused_norm_grad] = run_fused_norm,
    [IR_OP_flash_attention_grad] = run_flash,
    [IR_OP_fused_elementwise] = run_fused,
    [IR_OP_softmax_cross_entropy] = run_softmax_ce,
    [IR_OP_softmax_cross_entropy_grad] = run_softmax_ce,
    [IR_OP_glu] = run_glu,
    [IR_OP_glu_grad] = run_glu,
};

/* ---- the interpreter ---- */

static bool known(const ir_interp *in, const ir_value *v) {
  return v->id >= 0 && v->id < in->num_values;
}

static bool alloc_node(ir_interp *in, const ir_node *n) {
  for (int i = 0; i < n->num_results; i++) {
    const ir_value *v = n->results[i];
    int64_t count = numel(&v->type);
    in->data[v->id] = calloc((size_t)(count > 0 ? count : 1), sizeof(double));
    if (!in->data[v->id]) return false;
  }
  if (n->op != IR_OP_grad || in->grads[n->inputs[0]->id]) return true;
  int64_t count = numel(&n->inputs[0]->type);
  in->grads[n->inputs[0]->id] = calloc((size_t)(count > 0 ? count : 1), sizeof(double));
  return in->grads[n->inputs[0]->id] != NULL;
}

ir_interp *ir_interp_new(const ir_graph *g) {
  ir_interp *in = calloc(1, sizeof *in);
  if (!in) return NULL;
  in->g = g;
  in->num_values = g->next_value_id;
  in->data = calloc((size_t)in->num_values + 1, sizeof *in->data);
  in->grads = calloc((size_t)in->num_values + 1, sizeof *in->grads);
  bool ok = in->data && in->grads;
  for (const ir_node *n = g->first; n && ok; n = n->next) ok = alloc_node(in, n);
  if (ok) return in;
  ir_interp_free(in);
  return NULL;
}

void ir_interp_free(ir_interp *in) {
  if (!in) return;
  for (int i = 0; i < in->num_values; i++) {
    if (in->data) free(in->data[i]);
    if (in->grads) free(in->grads[i]);
  }
  free(in->data);
  free(in->grads);
  free(in);
}

double *ir_interp_value(ir_interp *in, const ir_value *v) {
  return known(in, v) ? in->data[v->id] : NULL;
}

const double *ir_interp_grad(ir_interp *in, const ir_value *param) {
  return known(in, param) ? in->grads[param->id] : NULL;
}

static bool run_node(ir_interp *in, const ir_node *n, char *err, size_t errlen) {
  exec e = {.in = in, .n = n, .err = err, .errlen = errlen};
  if (n->num_results > 0) e.y = in->data[n->results[0]->id], e.yt = &n->results[0]->type;
  for (int i = 0; i < n->num_inputs; i++)
    if (!known(in, n->inputs[i]) || !in->data[n->inputs[i]->id])
      return fail(&e, "input %d was not allocated", i);
  if (n->num_results > 0 && (!known(in, n->results[0]) || !e.y))
    return fail(&e, "node added after the interpreter was made");
  if (!ops[n->op]) return fail(&e, "not supported by the interpreter (a layer op?)");
  return ops[n->op](&e);
}

bool ir_interp_run(ir_interp *in, char *err, size_t errlen) {
  for (const ir_node *n = in->g->first; n; n = n->next)
    if (n->op == IR_OP_grad && known(in, n->inputs[0]) && in->grads[n->inputs[0]->id])
      fill(in->grads[n->inputs[0]->id], numel(&n->inputs[0]->type), 0.0);
  for (const ir_node *n = in->g->first; n; n = n->next)
    if (!run_node(in, n, err, errlen)) return false;
  return true;
}
