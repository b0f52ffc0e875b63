/* shape.c: the shape rules named in ops.def.
 *
 * Each rule reads its node's input types and attributes and writes the
 * result types, or writes a message (no location, no "error:") that the
 * caller turns into a diagnostic. Semantics are PyTorch's. Input counts
 * are checked by ir_node_infer before a rule runs; attribute values are
 * checked here, because graphs also come from parsed text. */
#include "shape.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { TYPE_TEXT = 200 };

/* A formatted type as a value, so messages can format two at once. */
typedef struct type_text {
  char s[TYPE_TEXT];
} type_text;

static type_text fmt_type(const ir_type *t) {
  type_text out;
  ir_type_format(t, out.s, sizeof out.s);
  return out;
}

static type_text fmt_ints(int n, const int64_t *v) {
  type_text out;
  ir_type t = {0};
  t.rank = n < IR_MAX_RANK ? n : IR_MAX_RANK;
  for (int i = 0; i < t.rank; i++) t.dims[i] = v[i];
  ir_shape_format(&t, out.s, sizeof out.s);
  if (n > IR_MAX_RANK) {
    size_t len = strlen(out.s);
    snprintf(out.s + len - 1, sizeof out.s - len + 1, ",...]");
  }
  return out;
}

static bool fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && errlen) vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return false;
}

static const char *op_name(const ir_node *node) {
  const ir_op_info *info = ir_op_get(node->op);
  return info ? info->name : "?";
}

static const ir_type *in_type(const ir_node *node, int i) { return &node->inputs[i]->type; }

static void set_result(ir_node *node, ir_type t) {
  if (node->num_results > 0) node->results[0]->type = t;
}

static ir_type scalar_f32(void) {
  ir_type t = {0};
  t.dtype = IR_f32;
  return t;
}

/* Sizes come from untrusted text too; arithmetic on them must not
 * overflow. */
static bool mul_ok(int64_t a, int64_t b, int64_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}

static bool add_ok(int64_t a, int64_t b, int64_t *out) {
  return !__builtin_add_overflow(a, b, out);
}

/* Negative axes count from the end; a scalar accepts 0 and -1 as PyTorch
 * does. */
static bool normalize_axis(int64_t axis, int rank, int *out) {
  int64_t n = rank > 0 ? rank : 1;
  if (axis < -n || axis >= n) return false;
  *out = (int)(axis < 0 ? axis + n : axis);
  return true;
}

static bool axis_error(const ir_node *node, int64_t axis, const ir_type *t, char *err,
                       size_t errlen) {
  return fail(err, errlen, "%s: axis %lld out of range for %s (rank %d)", op_name(node),
              (long long)axis, fmt_type(t).s, t->rank);
}

static bool missing(const ir_node *node, const char *attr, char *err, size_t errlen) {
  return fail(err, errlen, "%s: missing attribute '%s'", op_name(node), attr);
}

static const ir_attr *attr_of_kind(const ir_node *node, const char *name, ir_attr_kind kind) {
  const ir_attr *a = ir_get_attr(node, name);
  return a && a->kind == kind ? a : NULL;
}

/* ---- elementwise ---- */

/* attention: the inputs expand reads for its bias and gate attributes,
 * and the head counts it divides by (the text form can hold anything). */
static bool attention_attrs(const ir_node *node, char *err, size_t errlen) {
  int64_t heads = ir_get_int(node, "heads", 1), kv_heads = ir_get_int(node, "kv_heads", 1);
  int64_t head_dim = ir_get_int(node, "head_dim", 1);
  bool bias = ir_get_bool(node, "bias", true);
  bool gated = strcmp(ir_get_str(node, "gate", "none"), "sigmoid") == 0;
  int want = 1 + (gated ? 5 : 4) * (bias ? 2 : 1);
  if (node->num_inputs != want)
    return fail(err, errlen, "attention: %d inputs, but bias=%s and gate=%s take %d",
                node->num_inputs, bias ? "true" : "false", gated ? "sigmoid" : "none", want);
  if (in_type(node, 0)->rank != 3)
    return fail(err, errlen, "attention: input must be [B,T,D], got %s", fmt_type(in_type(node, 0)).s);
  if (heads < 1 || kv_heads < 1 || head_dim < 1 || heads % kv_heads != 0 ||
      (ir_get_bool(node, "rope", false) && head_dim % 2 != 0))
    return fail(err, errlen,
                "attention: heads=%lld, kv_heads=%lld, head_dim=%lld: each must be positive, "
                "kv_heads must divide heads, and rope needs an even head_dim",
                (long long)heads, (long long)kv_heads, (long long)head_dim);
  return true;
}

bool ir_shape_unary(ir_node *node, char *err, size_t errlen) {
  const ir_type *x = in_type(node, 0);
  /* A layer op's parameters (f32) and its input share a dtype, as in
   * PyTorch; expand would otherwise build mixed-dtype primitives. */
  if (node->op == IR_OP_attention && !attention_attrs(node, err, errlen)) return false;
  for (int i = 1; (ir_op_get(node->op)->flags & IR_OPF_LAYER) && i < node->num_inputs; i++) {
    const ir_type *w = in_type(node, i);
    if (ir_dtype_is_float(w->dtype) && w->dtype != x->dtype)
      return fail(err, errlen, "%s: input and parameters have different dtypes: %s and %s",
                  op_name(node), fmt_type(x).s, fmt_type(w).s);
  }
  if (node->op == IR_OP_softmax || node->op == IR_OP_log_softmax) {
    int64_t axis = ir_get_int(node, "axis", -1);
    int a;
    if (!normalize_axis(axis, x->rank, &a)) return axis_error(node, axis, x, err, errlen);
  }
  set_result(node, *x);
  return true;
}

bool ir_shape_cast(ir_node *node, char *err, size_t errlen) {
  const char *to = ir_get_str(node, "to", NULL);
  if (!to) return missing(node, "to", err, errlen);
  ir_type t = *in_type(node, 0);
  if (!ir_dtype_parse(to, &t.dtype)) return fail(err, errlen, "cast: unknown dtype '%s'", to);
  set_result(node, t);
  return true;
}

bool ir_broadcast_shapes(const ir_type *a, const ir_type *b, ir_type *out) {
  ir_type r = {0};
  r.dtype = a->dtype;
  r.rank = a->rank > b->rank ? a->rank : b->rank;
  for (int i = 1; i <= r.rank; i++) {
    int64_t da = i <= a->rank ? a->dims[a->rank - i] : 1;
    int64_t db = i <= b->rank ? b->dims[b->rank - i] : 1;
    if (da != db && da != 1 && db != 1) return false;
    r.dims[r.rank - i] = da == 1 ? db : da;
  }
  *out = r;
  return true;
}

bool ir_shape_broadcast(ir_node *node, char *err, size_t errlen) {
  const ir_type *a = in_type(node, 0), *b = in_type(node, 1);
  if (a->dtype != b->dtype)
    return fail(err, errlen, "%s: operands have different dtypes: %s and %s", op_name(node),
                fmt_type(a).s, fmt_type(b).s);
  ir_type r;
  if (!ir_broadcast_shapes(a, b, &r))
    return fail(err, errlen, "cannot broadcast %s with %s", fmt_type(a).s, fmt_type(b).s);
  set_result(node, r);
  return true;
}

/* where(cond u8, a, b): all three broadcast together. */
bool ir_shape_where(ir_node *node, char *err, size_t errlen) {
  const ir_type *c = in_type(node, 0), *a = in_type(node, 1), *b = in_type(node, 2);
  if (c->dtype != IR_u8)
    return fail(err, errlen, "where: condition must be u8, got %s", fmt_type(c).s);
  if (a->dtype != b->dtype)
    return fail(err, errlen, "where: branches have different dtypes: %s and %s",
                fmt_type(a).s, fmt_type(b).s);
  ir_type ca, r;
  if (!ir_broadcast_shapes(a, c, &ca) || !ir_broadcast_shapes(&ca, b, &r))
    return fail(err, errlen, "where: cannot broadcast %s, %s and %s", fmt_type(c).s,
                fmt_type(a).s, fmt_type(b).s);
  set_result(node, r);
  return true;
}

/* ---- reductions ---- */

/* Marks the reduced axes; absent or empty axes reduce every axis, like
 * PyTorch's dim=None. */
static bool reduced_axes(const ir_node *node, const ir_type *x, bool reduced[IR_MAX_RANK],
                         char *err, size_t errlen) {
  const int64_t *axes;
  int n = ir_get_ints(node, "axes", &axes);
  memset(reduced, 0, IR_MAX_RANK * sizeof reduced[0]);
  if (n == 0) {
    for (int i = 0; i < x->rank; i++) reduced[i] = true;
    return true;
  }
  for (int i = 0; i < n; i++) {
    int a;
    if (!normalize_axis(axes[i], x->rank, &a)) return axis_error(node, axes[i], x, err, errlen);
    if (x->rank == 0) continue;
    if (reduced[a])
      return fail(err, errlen, "%s: axis %d appears twice in axes %s", op_name(node), a,
                  fmt_ints(n, axes).s);
    reduced[a] = true;
  }
  return true;
}

bool ir_shape_reduce(ir_node *node, char *err, size_t errlen) {
  const ir_type *x = in_type(node, 0);
  bool reduced[IR_MAX_RANK];
  if (!reduced_axes(node, x, reduced, err, errlen)) return false;
  bool keepdim = ir_get_bool(node, "keepdim", false);
  ir_type r = {0};
  r.dtype = x->dtype;
  for (int i = 0; i < x->rank; i++) {
    if (!reduced[i])
      r.dims[r.rank++] = x->dims[i];
    else if (keepdim)
      r.dims[r.rank++] = 1;
  }
  set_result(node, r);
  return true;
}

/* logits or log-probabilities [..., C] with int targets [...] -> f32[]. */
static bool class_loss(ir_node *node, const char *what, char *err, size_t errlen) {
  const ir_type *x = in_type(node, 0), *t = in_type(node, 1);
  const char *op = op_name(node);
  if (!ir_dtype_is_float(x->dtype))
    return fail(err, errlen, "%s: %s must be floating-point, got %s", op, what, fmt_type(x).s);
  if (x->rank == 0)
    return fail(err, errlen, "%s: %s need a class dimension, got %s", op, what, fmt_type(x).s);
  if (t->dtype != IR_i32 && t->dtype != IR_i64)
    return fail(err, errlen, "%s: targets must be i32 or i64, got %s", op, fmt_type(t).s);
  ir_type want = *x;
  want.rank--;
  want.dtype = t->dtype;
  if (!ir_type_equal(&want, t)) {
    char shape[TYPE_TEXT];
    return fail(err, errlen, "%s: targets %s do not match %s %s (expected shape %s)", op,
                fmt_type(t).s, what, fmt_type(x).s, ir_shape_format(&want, shape, sizeof shape));
  }
  set_result(node, scalar_f32());
  return true;
}

bool ir_shape_nll_loss(ir_node *node, char *err, size_t errlen) {
  return class_loss(node, "log-probabilities", err, errlen);
}

bool ir_shape_cross_entropy(ir_node *node, char *err, size_t errlen) {
  return class_loss(node, "logits", err, errlen);
}

bool ir_shape_loss_pair(ir_node *node, char *err, size_t errlen) {
  const ir_type *a = in_type(node, 0), *b = in_type(node, 1);
  if (!ir_dtype_is_float(a->dtype) || !ir_dtype_is_float(b->dtype))
    return fail(err, errlen, "%s needs floating-point operands, got %s",
                op_name(node), fmt_type(ir_dtype_is_float(a->dtype) ? b : a).s);
  if (!ir_type_equal(a, b))
    return fail(err, errlen, "%s: operands must have the same type, got %s and %s",
                op_name(node), fmt_type(a).s, fmt_type(b).s);
  set_result(node, scalar_f32());
  return true;
}

/* ---- matmul ---- */

/* An operand as matmul sees it: transposed if asked, 1-D promoted to a
 * row (a) or a column (b) matrix. */
typedef struct operand {
  ir_type t;
  bool promoted;
} operand;

static type_text fmt_operand(const ir_type *t, bool transposed) {
  type_text s = fmt_type(t);
  if (transposed) strncat(s.s, ".T", sizeof s.s - strlen(s.s) - 1);
  return s;
}

static bool matmul_operand(const ir_node *node, int i, const char *flag, operand *out,
                           char *err, size_t errlen) {
  const ir_type *t = in_type(node, i);
  bool transpose = ir_get_bool(node, flag, false);
  out->t = *t;
  out->promoted = false;
  if (t->rank == 0)
    return fail(err, errlen, "matmul: operands must have at least 1 dimension, got %s",
                fmt_type(t).s);
  if (transpose && t->rank < 2)
    return fail(err, errlen, "matmul: %s needs at least 2 dimensions, got %s", flag,
                fmt_type(t).s);
  if (transpose) {
    int64_t last = out->t.dims[t->rank - 1];
    out->t.dims[t->rank - 1] = out->t.dims[t->rank - 2];
    out->t.dims[t->rank - 2] = last;
  }
  if (t->rank == 1) {
    /* a [K] -> [1,K]; b [K] -> [K,1] */
    out->t.rank = 2;
    out->t.dims[0] = i == 0 ? 1 : t->dims[0];
    out->t.dims[1] = i == 0 ? t->dims[0] : 1;
    out->promoted = true;
  }
  return true;
}

static ir_type batch_of(const ir_type *t) {
  ir_type b = *t;
  b.rank = t->rank - 2;
  return b;
}

bool ir_shape_matmul(ir_node *node, char *err, size_t errlen) {
  const ir_type *a = in_type(node, 0), *b = in_type(node, 1);
  bool ta = ir_get_bool(node, "transpose_a", false), tb = ir_get_bool(node, "transpose_b", false);
  if (!ir_dtype_is_float(a->dtype) || !ir_dtype_is_float(b->dtype))
    return fail(err, errlen, "matmul needs floating-point operands, got %s",
                fmt_type(ir_dtype_is_float(a->dtype) ? b : a).s);
  if (a->dtype != b->dtype)
    return fail(err, errlen, "matmul: operands have different dtypes: %s and %s",
                fmt_type(a).s, fmt_type(b).s);
  operand oa, ob;
  if (!matmul_operand(node, 0, "transpose_a", &oa, err, errlen) ||
      !matmul_operand(node, 1, "transpose_b", &ob, err, errlen))
    return false;
  int64_t ka = oa.t.dims[oa.t.rank - 1], kb = ob.t.dims[ob.t.rank - 2];
  if (ka != kb)
    return fail(err, errlen, "matmul: inner dimensions differ: %s @ %s (%lld vs %lld)",
                fmt_operand(a, ta).s, fmt_operand(b, tb).s, (long long)ka, (long long)kb);
  ir_type ba = batch_of(&oa.t), bb = batch_of(&ob.t), r;
  if (!ir_broadcast_shapes(&ba, &bb, &r))
    return fail(err, errlen, "matmul: batch dimensions do not broadcast: %s @ %s",
                fmt_operand(a, ta).s, fmt_operand(b, tb).s);
  /* [batch..., M, N], dropping the dims that 1-D operands gained. */
  if (!oa.promoted) r.dims[r.rank++] = oa.t.dims[oa.t.rank - 2];
  if (!ob.promoted) r.dims[r.rank++] = ob.t.dims[ob.t.rank - 1];
  r.dtype = a->dtype;
  set_result(node, r);
  return true;
}

/* ---- convolution and pooling ---- */

/* A per-spatial-dim list attribute: absent gives fallback, one value
 * applies to every spatial dim, else one value per spatial dim. */
static bool spatial_list(const ir_node *node, const char *name, int spatial, int64_t fallback,
                         int64_t min, int64_t out[2], char *err, size_t errlen) {
  const ir_attr *a = attr_of_kind(node, name, IR_ATTR_INTS);
  out[0] = out[1] = fallback;
  if (!a) return true;
  int n = a->u.ints.n;
  if (n != 1 && n != spatial) {
    if (spatial == 1)
      return fail(err, errlen, "%s: %s must have 1 value, got %d", op_name(node), name, n);
    return fail(err, errlen, "%s: %s must have 1 or %d values, got %d", op_name(node), name,
                spatial, n);
  }
  for (int i = 0; i < spatial; i++) {
    out[i] = a->u.ints.v[n == 1 ? 0 : i];
    if (out[i] < min)
      return fail(err, errlen, "%s: %s must be %s, got %s", op_name(node), name,
                  min ? "positive" : "non-negative", fmt_ints(n, a->u.ints.v).s);
  }
  return true;
}

typedef struct window {
  int64_t kernel, stride, padding, dilation;
} window;

/* floor((L + 2p - d*(k-1) - 1) / s) + 1, or -1 when it overflows. */
static int64_t window_out(int64_t len, const window *w) {
  int64_t pad2, span, total;
  if (!mul_ok(w->padding, 2, &pad2) || !add_ok(len, pad2, &total)) return -1;
  if (!mul_ok(w->dilation, w->kernel - 1, &span)) return -1;
  int64_t inner = total - span - 1;
  if (inner < 0) return 0;
  return inner / w->stride + 1;
}

static bool check_window_out(const ir_node *node, const ir_type *x, int dim, const window *w,
                             int64_t *out, char *err, size_t errlen) {
  *out = window_out(x->dims[dim], w);
  if (*out >= 1) return true;
  if (*out < 0) return fail(err, errlen, "%s: sizes overflow for %s", op_name(node),
                            fmt_type(x).s);
  return fail(err, errlen,
              "%s: output size %lld along dim %d of %s (kernel %lld, stride %lld, padding %lld, "
              "dilation %lld)",
              op_name(node), (long long)*out, dim, fmt_type(x).s, (long long)w->kernel,
              (long long)w->stride, (long long)w->padding, (long long)w->dilation);
}

static bool conv_types(const ir_node *node, const ir_type *x, const ir_type *w, char *err,
                       size_t errlen) {
  const char *op = op_name(node);
  if (x->rank != 3 && x->rank != 4)
    return fail(err, errlen, "%s: input must be [N,C,L] or [N,C,H,W], got %s", op,
                fmt_type(x).s);
  if (!ir_dtype_is_float(x->dtype) || !ir_dtype_is_float(w->dtype))
    return fail(err, errlen, "%s needs floating-point operands, got %s", op,
                fmt_type(ir_dtype_is_float(x->dtype) ? w : x).s);
  if (x->dtype != w->dtype)
    return fail(err, errlen, "%s: input and weight have different dtypes: %s and %s", op,
                fmt_type(x).s, fmt_type(w).s);
  if (w->rank != x->rank)
    return fail(err, errlen, "%s: weight must have rank %d like the input %s, got %s", op,
                x->rank, fmt_type(x).s, fmt_type(w).s);
  return true;
}

static bool conv_channels(const ir_node *node, const ir_type *x, const ir_type *w, int64_t groups,
                          char *err, size_t errlen) {
  const char *op = op_name(node);
  if (groups < 1) return fail(err, errlen, "%s: groups must be positive, got %lld", op,
                              (long long)groups);
  if (x->dims[1] % groups)
    return fail(err, errlen, "%s: input channels %lld are not divisible by groups %lld", op,
                (long long)x->dims[1], (long long)groups);
  if (w->dims[0] % groups)
    return fail(err, errlen, "%s: output channels %lld are not divisible by groups %lld", op,
                (long long)w->dims[0], (long long)groups);
  if (w->dims[1] != x->dims[1] / groups)
    return fail(err, errlen,
                "%s: weight %s expects %lld input channels per group, input %s has %lld "
                "(groups %lld)",
                op, fmt_type(w).s, (long long)w->dims[1], fmt_type(x).s,
                (long long)(x->dims[1] / groups), (long long)groups);
  return true;
}

/* conv_layer: bias [O] present exactly when attr bias says so. */
static bool conv_bias(const ir_node *node, const ir_type *w, char *err, size_t errlen) {
  bool has_input = node->num_inputs > 2;
  bool flag = ir_get_bool(node, "bias", has_input);
  if (flag != has_input)
    return fail(err, errlen, "conv_layer: bias=%s but %s bias input", flag ? "true" : "false",
                has_input ? "a" : "no");
  if (!has_input) return true;
  const ir_type *b = in_type(node, 2);
  ir_type want = {0};
  want.dtype = w->dtype;
  want.rank = 1;
  want.dims[0] = w->dims[0];
  if (!ir_type_equal(b, &want))
    return fail(err, errlen, "conv_layer: bias must be %s, got %s", fmt_type(&want).s,
                fmt_type(b).s);
  return true;
}

/* x [N,C,L...] with w [O,C/groups,k...] -> [N,O,L'...]. */
bool ir_shape_conv(ir_node *node, char *err, size_t errlen) {
  const ir_type *x = in_type(node, 0), *w = in_type(node, 1);
  if (!conv_types(node, x, w, err, errlen)) return false;
  int spatial = x->rank - 2;
  int64_t stride[2], padding[2], dilation[2];
  if (!spatial_list(node, "stride", spatial, 1, 1, stride, err, errlen) ||
      !spatial_list(node, "padding", spatial, 0, 0, padding, err, errlen) ||
      !spatial_list(node, "dilation", spatial, 1, 1, dilation, err, errlen))
    return false;
  if (!conv_channels(node, x, w, ir_get_int(node, "groups", 1), err, errlen)) return false;
  if (node->op == IR_OP_conv_layer && !conv_bias(node, w, err, errlen)) return false;
  ir_type r = *x;
  r.dims[1] = w->dims[0];
  for (int i = 0; i < spatial; i++) {
    window win = {w->dims[2 + i], stride[i], padding[i], dilation[i]};
    if (win.kernel < 1)
      return fail(err, errlen, "%s: weight %s has an empty kernel", op_name(node),
                  fmt_type(w).s);
    if (!check_window_out(node, x, 2 + i, &win, &r.dims[2 + i], err, errlen)) return false;
  }
  set_result(node, r);
  return true;
}

static bool pool_window(const ir_node *node, window win[2], char *err, size_t errlen) {
  int64_t kernel[2], stride[2], padding[2];
  if (!attr_of_kind(node, "kernel", IR_ATTR_INTS)) return missing(node, "kernel", err, errlen);
  if (!spatial_list(node, "kernel", 2, 1, 1, kernel, err, errlen)) return false;
  /* stride defaults to the kernel, as in PyTorch */
  const ir_attr *s = attr_of_kind(node, "stride", IR_ATTR_INTS);
  if (s && s->u.ints.n > 0) {
    if (!spatial_list(node, "stride", 2, 1, 1, stride, err, errlen)) return false;
  } else {
    stride[0] = kernel[0], stride[1] = kernel[1];
  }
  if (!spatial_list(node, "padding", 2, 0, 0, padding, err, errlen)) return false;
  for (int i = 0; i < 2; i++) {
    if (padding[i] > kernel[i] / 2)
      return fail(err, errlen, "%s: padding %lld is more than half the kernel %lld",
                  op_name(node), (long long)padding[i], (long long)kernel[i]);
    win[i] = (window){kernel[i], stride[i], padding[i], 1};
  }
  return true;
}

/* x [N,C,H,W] -> [N,C,H',W']. */
bool ir_shape_pool(ir_node *node, char *err, size_t errlen) {
  const ir_type *x = in_type(node, 0);
  if (x->rank != 4)
    return fail(err, errlen, "%s: input must be [N,C,H,W], got %s", op_name(node),
                fmt_type(x).s);
  if (node->op == IR_OP_avgpool && !ir_dtype_is_float(x->dtype))
    return fail(err, errlen, "avgpool needs a floating-point input, got %s", fmt_type(x).s);
  window win[2];
  if (!pool_window(node, win, err, errlen)) return false;
  ir_type r = *x;
  for (int i = 0; i < 2; i++)
    if (!check_window_out(node, x, 2 + i, &win[i], &r.dims[2 + i], err, errlen)) return false;
  set_result(node, r);
  return true;
}

/* x [N,C,H,W] -> [N,C,H*scale,W*scale]. */
bool ir_shape_upsample(ir_node *node, char *err, size_t errlen) {
  const ir_type *x = in_type(node, 0);
  if (x->rank != 4)
    return fail(err, errlen, "upsample: input must be [N,C,H,W], got %s", fmt_type(x).s);
  if (!attr_of_kind(node, "scale", IR_ATTR_INT)) return missing(node, "scale", err, errlen);
  int64_t scale = ir_get_int(node, "scale", 1);
  if (scale < 1)
    return fail(err, errlen, "upsample: scale must be a positive integer, got %lld",
                (long long)scale);
  const char *mode = ir_get_str(node, "mode", "nearest");
  bool bilinear = strcmp(mode, "bilinear") == 0;
  if (!bilinear && strcmp(mode, "nearest") != 0)
    return fail(err, errlen, "upsample: unknown mode '%s' (modes: nearest, bilinear)", mode);
  if (bilinear && !ir_dtype_is_float(x->dtype))
    return fail(err, errlen, "upsample: bilinear needs a floating-point input, got %s",
                fmt_type(x).s);
  ir_type r = *x;
  if (!mul_ok(x->dims[2], scale, &r.dims[2]) || !mul_ok(x->dims[3], scale, &r.dims[3]))
    return fail(err, errlen, "upsample: sizes overflow for %s", fmt_type(x).s);
  set_result(node, r);
  return true;
}

/* gather(table [N,D], ids int [...]) -> [..., D]; the embedding layer op
 * takes the same operands in the other order (data first, then its
 * weight). */
bool ir_shape_gather(ir_node *node, char *err, size_t errlen) {
  bool swapped = node->op == IR_OP_embedding;
  const ir_type *table = in_type(node, swapped ? 1 : 0), *ids = in_type(node, swapped ? 0 : 1);
  const char *op = op_name(node);
  if (table->rank != 2)
    return fail(err, errlen, "%s: table must be [N,D], got %s", op, fmt_type(table).s);
  if (ids->dtype != IR_i32 && ids->dtype != IR_i64)
    return fail(err, errlen, "%s: ids must be i32 or i64, got %s", op, fmt_type(ids).s);
  if (ids->rank >= IR_MAX_RANK)
    return fail(err, errlen, "%s: ids %s have too many dimensions", op, fmt_type(ids).s);
  ir_type r = *ids;
  r.dtype = table->dtype;
  r.dims[r.rank++] = table->dims[1];
  set_result(node, r);
  return true;
}

/* ---- layout ---- */

/* An ints attribute as a target shape: present, at most IR_MAX_RANK
 * dims, none negative (the front end resolves -1). */
static bool target_shape(const ir_node *node, ir_type *out, char *err, size_t errlen) {
  const ir_attr *a = attr_of_kind(node, "shape", IR_ATTR_INTS);
  if (!a) return missing(node, "shape", err, errlen);
  int n = a->u.ints.n;
  if (n > IR_MAX_RANK)
    return fail(err, errlen, "%s: shape %s has more than %d dims", op_name(node),
                fmt_ints(n, a->u.ints.v).s, IR_MAX_RANK);
  for (int i = 0; i < n; i++)
    if (a->u.ints.v[i] < 0)
      return fail(err, errlen, "%s: shape %s is not fully resolved", op_name(node),
                  fmt_ints(n, a->u.ints.v).s);
  *out = ir_type_make(in_type(node, 0)->dtype, n, a->u.ints.v);
  return true;
}

/* Element count, or -1 when it does not fit in int64. */
static int64_t numel_checked(const ir_type *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++)
    if (!mul_ok(n, t->dims[i], &n)) return -1;
  return n;
}

bool ir_shape_reshape(ir_node *node, char *err, size_t errlen) {
  const ir_type *x = in_type(node, 0);
  ir_type r;
  if (!target_shape(node, &r, err, errlen)) return false;
  int64_t from = numel_checked(x), to = numel_checked(&r);
  char shape[TYPE_TEXT];
  if (to < 0)
    return fail(err, errlen, "reshape: shape %s has too many elements",
                ir_shape_format(&r, shape, sizeof shape));
  if (from != to) {
    return fail(err, errlen, "reshape: cannot reshape %s (%lld elements) to %s (%lld elements)",
                fmt_type(x).s, (long long)from, ir_shape_format(&r, shape, sizeof shape),
                (long long)to);
  }
  set_result(node, r);
  return true;
}

bool ir_shape_permute(ir_node *node, char *err, size_t errlen) {
  const ir_type *x = in_type(node, 0);
  const ir_attr *a = attr_of_kind(node, "perm", IR_ATTR_INTS);
  if (!a) return missing(node, "perm", err, errlen);
  int n = a->u.ints.n;
  bool seen[IR_MAX_RANK] = {false};
  ir_type r = *x;
  bool ok = n == x->rank;
  for (int i = 0; ok && i < n; i++) {
    int axis;
    ok = normalize_axis(a->u.ints.v[i], x->rank, &axis) && x->rank > 0 && !seen[axis];
    if (ok) {
      seen[axis] = true;
      r.dims[i] = x->dims[axis];
    }
  }
  if (!ok)
    return fail(err, errlen, "permute: perm %s is not a permutation of the dims of %s",
                fmt_ints(n, a->u.ints.v).s, fmt_type(x).s);
  set_result(node, r);
  return true;
}

/* numpy rules, one way: x's dims align with the target's last dims and
 * are each 1 or equal. */
bool ir_shape_broadcast_to(ir_node *node, char *err, size_t errlen) {
  const ir_type *x = in_type(node, 0);
  ir_type r;
  if (!target_shape(node, &r, err, errlen)) return false;
  bool ok = x->rank <= r.rank;
  for (int i = 1; ok && i <= x->rank; i++) {
    int64_t d = x->dims[x->rank - i];
    ok = d == 1 || d == r.dims[r.rank - i];
  }
  if (!ok) {
    char shape[TYPE_TEXT];
    return fail(err, errlen, "broadcast: cannot broadcast %s to %s", fmt_type(x).s,
                ir_shape_format(&r, shape, sizeof shape));
  }
  set_result(node, r);
  return true;
}

bool ir_shape_slice(ir_node *node, char *err, size_t errlen) {
  const ir_type *x = in_type(node, 0);
  const char *names[] = {"axis", "start", "end"};
  for (int i = 0; i < 3; i++)
    if (!attr_of_kind(node, names[i], IR_ATTR_INT)) return missing(node, names[i], err, errlen);
  int64_t axis = ir_get_int(node, "axis", 0);
  int64_t start = ir_get_int(node, "start", 0), end = ir_get_int(node, "end", 0);
  int a;
  if (x->rank == 0) return fail(err, errlen, "slice: cannot slice a scalar %s", fmt_type(x).s);
  if (!normalize_axis(axis, x->rank, &a)) return axis_error(node, axis, x, err, errlen);
  if (start < 0 || start >= end || end > x->dims[a])
    return fail(err, errlen,
                "slice: range [%lld,%lld) is invalid for axis %d of %s (need 0 <= start < end "
                "<= %lld)",
                (long long)start, (long long)end, a, fmt_type(x).s, (long long)x->dims[a]);
  ir_type r = *x;
  r.dims[a] = end - start;
  set_result(node, r);
  return true;
}

static bool concat_input(const ir_node *node, int i, int axis, char *err, size_t errlen) {
  const ir_type *first = in_type(node, 0), *t = in_type(node, i);
  if (t->dtype != first->dtype)
    return fail(err, errlen, "concat: input %d %s has another dtype than input 0 %s", i,
                fmt_type(t).s, fmt_type(first).s);
  if (t->rank != first->rank)
    return fail(err, errlen, "concat: input %d %s has another rank than input 0 %s", i,
                fmt_type(t).s, fmt_type(first).s);
  for (int d = 0; d < t->rank; d++)
    if (d != axis && t->dims[d] != first->dims[d])
      return fail(err, errlen, "concat: input %d %s does not match input 0 %s outside axis %d",
                  i, fmt_type(t).s, fmt_type(first).s, axis);
  return true;
}

bool ir_shape_concat(ir_node *node, char *err, size_t errlen) {
  const ir_type *first = in_type(node, 0);
  if (first->rank == 0) return fail(err, errlen, "concat: cannot concatenate scalars");
  int64_t axis = ir_get_int(node, "axis", 0);
  int a;
  if (!normalize_axis(axis, first->rank, &a)) return axis_error(node, axis, first, err, errlen);
  ir_type r = *first;
  for (int i = 1; i < node->num_inputs; i++) {
    if (!concat_input(node, i, a, err, errlen)) return false;
    if (!add_ok(r.dims[a], in_type(node, i)->dims[a], &r.dims[a]))
      return fail(err, errlen, "concat: sizes overflow along axis %d", a);
  }
  set_result(node, r);
  return true;
}

/* ---- effects ---- */

bool ir_shape_assign(ir_node *node, char *err, size_t errlen) {
  const ir_type *state = in_type(node, 0), *value = in_type(node, 1);
  if (!ir_type_equal(state, value))
    return fail(err, errlen, "assign: value %s does not match state %s", fmt_type(value).s,
                fmt_type(state).s);
  return true;
}

bool ir_shape_none(ir_node *node, char *err, size_t errlen) {
  (void)node, (void)err, (void)errlen;
  return true;
}

/* ---- layer ops ---- */

static bool expect_type(const ir_node *node, int i, const char *what, const ir_type *want,
                        char *err, size_t errlen) {
  const ir_type *t = in_type(node, i);
  if (ir_type_equal(t, want)) return true;
  return fail(err, errlen, "%s: %s must be %s, got %s", op_name(node), what, fmt_type(want).s,
              fmt_type(t).s);
}

static ir_type matrix(ir_dtype dtype, int64_t rows, int64_t cols) {
  int64_t dims[2] = {rows, cols};
  return ir_type_make(dtype, 2, dims);
}

/* linear(x [..., in], weight [out,in] [, bias [out]]) or, with rank r,
 * (x, down.weight [r,in], up.weight [out,r] [, bias [out]]) -> [..., out]. */
bool ir_shape_linear(ir_node *node, char *err, size_t errlen) {
  const ir_type *x = in_type(node, 0);
  int64_t rank = ir_get_int(node, "rank", 0);
  int weights = rank > 0 ? 2 : 1;
  bool bias = ir_get_bool(node, "bias", node->num_inputs > 1 + weights);
  if (rank < 0) return fail(err, errlen, "linear: rank must be non-negative, got %lld",
                            (long long)rank);
  if (node->num_inputs != 1 + weights + bias)
    return fail(err, errlen, "linear: bias=%s rank=%lld takes %d inputs, got %d",
                bias ? "true" : "false", (long long)rank, 1 + weights + bias, node->num_inputs);
  if (x->rank == 0 || !ir_dtype_is_float(x->dtype))
    return fail(err, errlen, "linear: input must be a floating-point [..., in], got %s",
                fmt_type(x).s);
  int64_t in = x->dims[x->rank - 1];
  if (rank > 0) {
    ir_type down = matrix(x->dtype, rank, in);
    if (!expect_type(node, 1, "down.weight", &down, err, errlen)) return false;
  }
  const char *name = rank > 0 ? "up.weight" : "weight";
  const ir_type *last = in_type(node, weights); /* weight [out,in] or up [out,rank] */
  if (last->rank != 2)
    return fail(err, errlen, "linear: %s must be [out,%s], got %s", name,
                rank > 0 ? "rank" : "in", fmt_type(last).s);
  int64_t out = last->dims[0];
  ir_type want = matrix(x->dtype, out, rank > 0 ? rank : in);
  if (!expect_type(node, weights, name, &want, err, errlen)) return false;
  if (bias) {
    ir_type b = ir_type_make(x->dtype, 1, &out);
    if (!expect_type(node, 1 + weights, "bias", &b, err, errlen)) return false;
  }
  ir_type r = *x;
  r.dims[r.rank - 1] = out;
  set_result(node, r);
  return true;
}
