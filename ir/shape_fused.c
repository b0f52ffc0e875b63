/* shape_fused.c: shape rules of the fused ops that the fusion passes
 * make (fuse_*.c). Each checks what its kernel relies on. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "shape.h"

static bool fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return false;
}

/* The dims of a flash_attention operand in [B, heads, T, hd] order,
 * whatever the layout. */
typedef struct heads_dims {
  int64_t b, h, t, d;
} heads_dims;

static bool bthd(const ir_node *n) { return strcmp(ir_get_str(n, "layout", "bhtd"), "bthd") == 0; }

static bool heads_of(const ir_node *n, int i, const char *what, heads_dims *out, char *err,
                     size_t errlen) {
  const ir_type *t = &n->inputs[i]->type;
  char text[128];
  if (t->rank != 4 || t->dtype != IR_f32)
    return fail(err, errlen, "%s: %s must be f32 of rank 4 ([%s]), got %s", ir_op_get(n->op)->name,
                what, bthd(n) ? "B,T,heads,hd" : "B,heads,T,hd",
                ir_type_format(t, text, sizeof text));
  bool swap = bthd(n);
  *out = (heads_dims){t->dims[0], t->dims[swap ? 2 : 1], t->dims[swap ? 1 : 2], t->dims[3]};
  return true;
}

/* Checks q, k, v and the attributes; *q is q's dims. */
static bool flash_operands(const ir_node *n, heads_dims *q, char *err, size_t errlen) {
  const char *name = ir_op_get(n->op)->name;
  const char *layout = ir_get_str(n, "layout", "bhtd");
  if (strcmp(layout, "bhtd") != 0 && strcmp(layout, "bthd") != 0)
    return fail(err, errlen, "%s: layout must be \"bhtd\" or \"bthd\", got \"%s\"", name, layout);
  heads_dims k, v;
  if (!heads_of(n, 0, "q", q, err, errlen) || !heads_of(n, 1, "k", &k, err, errlen) ||
      !heads_of(n, 2, "v", &v, err, errlen))
    return false;
  if (!ir_type_equal(&n->inputs[1]->type, &n->inputs[2]->type))
    return fail(err, errlen, "%s: k and v must have the same type", name);
  if (k.b != q->b || k.t != q->t || k.d != q->d)
    return fail(err, errlen, "%s: k must match q in batch, time and head size", name);
  if (k.h <= 0 || q->h % k.h != 0)
    return fail(err, errlen, "%s: q's %lld heads are not a multiple of k's %lld", name,
                (long long)q->h, (long long)k.h);
  if (ir_get_int(n, "window", 0) < 0 || ir_get_int(n, "global", 0) < 0)
    return fail(err, errlen, "%s: window and global must be non-negative", name);
  if (ir_get_float(n, "rope", 0.0) < 0)
    return fail(err, errlen, "%s: rope must be a base > 0, or 0 for none", name);
  return true;
}

bool ir_shape_flash_attention(ir_node *node, char *err, size_t errlen) {
  heads_dims q;
  if (!flash_operands(node, &q, err, errlen)) return false;
  node->results[0]->type = node->inputs[0]->type;
  int64_t lse[3] = {q.b, q.h, q.t};
  node->results[1]->type = ir_type_make(IR_f32, 3, lse);
  return true;
}

bool ir_shape_flash_attention_grad(ir_node *node, char *err, size_t errlen) {
  heads_dims q;
  if (!flash_operands(node, &q, err, errlen)) return false;
  const ir_type *qt = &node->inputs[0]->type;
  int64_t lse_dims[3] = {q.b, q.h, q.t};
  ir_type lse = ir_type_make(IR_f32, 3, lse_dims);
  if (!ir_type_equal(&node->inputs[3]->type, qt) || !ir_type_equal(&node->inputs[5]->type, qt))
    return fail(err, errlen, "flash_attention_grad: out and its gradient must have q's type");
  if (!ir_type_equal(&node->inputs[4]->type, &lse))
    return fail(err, errlen, "flash_attention_grad: lse must be f32[%lld,%lld,%lld]",
                (long long)q.b, (long long)q.h, (long long)q.t);
  for (int i = 0; i < 3; i++) node->results[i]->type = node->inputs[i]->type;
  return true;
}

/* Every input read as a number is f32; a where's condition u8 or f32. */
static bool fexpr_types(const ir_node *node, const ir_fexpr *x, bool condition, char *err,
                        size_t errlen) {
  if (x->kind == IR_FEXPR_INPUT) {
    ir_dtype d = node->inputs[x->input]->type.dtype;
    if (d == IR_f32 || (condition && d == IR_u8)) return true;
    return fail(err, errlen, "fused_elementwise: input %%%d is %s, expected f32%s", x->input,
                ir_dtype_name(d), condition ? " or u8" : "");
  }
  for (int i = 0; i < (x->kind == IR_FEXPR_OP ? x->num_args : 0); i++)
    if (!fexpr_types(node, x->args[i], x->op == IR_OP_where && i == 0, err, errlen)) return false;
  return true;
}

bool ir_shape_fused_elementwise(ir_node *node, char *err, size_t errlen) {
  ir_arena *arena = ir_arena_new();
  if (!arena) return fail(err, errlen, "fused_elementwise: out of memory");
  char msg[IR_ERR_LEN];
  ir_fexpr *x = ir_fexpr_parse(arena, ir_get_str(node, "expr", ""), node->num_inputs, msg, sizeof msg);
  bool ok = x ? fexpr_types(node, x, false, err, errlen)
              : fail(err, errlen, "fused_elementwise: %s", msg);
  ir_arena_free(arena);
  if (!ok) return false;
  ir_type t = node->inputs[0]->type;
  for (int i = 1; i < node->num_inputs; i++)
    if (!ir_broadcast_shapes(&t, &node->inputs[i]->type, &t))
      return fail(err, errlen, "fused_elementwise: input %%%d does not broadcast", i);
  t.dtype = IR_f32;
  node->results[0]->type = t;
  return true;
}

/* The loss as cross_entropy's; lse has one entry per target. */
bool ir_shape_softmax_cross_entropy(ir_node *node, char *err, size_t errlen) {
  if (!ir_shape_cross_entropy(node, err, errlen)) return false;
  int64_t rows = ir_type_numel(&node->inputs[1]->type);
  node->results[1]->type = ir_type_make(IR_f32, 1, &rows);
  return true;
}

bool ir_shape_softmax_cross_entropy_grad(ir_node *node, char *err, size_t errlen) {
  const ir_type *x = &node->inputs[0]->type, *lse = &node->inputs[1]->type;
  const ir_type *t = &node->inputs[2]->type, *g = &node->inputs[3]->type;
  bool ok = x->rank >= 1 && t->rank == x->rank - 1 && g->rank == 0 && lse->rank == 1 &&
            lse->dims[0] == ir_type_numel(t);
  for (int i = 0; ok && i < t->rank; i++) ok = t->dims[i] == x->dims[i];
  if (!ok)
    return fail(err, errlen,
                "softmax_cross_entropy_grad: expected logits [..., C], lse [rows], targets [...], g []");
  node->results[0]->type = *x;
  return true;
}

static bool glu_act_ok(const ir_node *node, char *err, size_t errlen) {
  static const char *const acts[] = {"silu", "gelu", "gelu_tanh", "sigmoid"};
  const char *act = ir_get_str(node, "act", "");
  for (int i = 0; i < 4; i++)
    if (strcmp(act, acts[i]) == 0) return true;
  return fail(err, errlen, "%s: act must be silu, gelu, gelu_tanh or sigmoid, got \"%s\"",
              ir_op_get(node->op)->name, act);
}

bool ir_shape_glu(ir_node *node, char *err, size_t errlen) {
  const ir_type *h = &node->inputs[0]->type;
  if (!glu_act_ok(node, err, errlen)) return false;
  if (h->dtype != IR_f32 || h->rank < 1 || h->dims[h->rank - 1] % 2 != 0)
    return fail(err, errlen, "glu: input must be f32 [..., 2F]");
  ir_type t = *h;
  t.dims[t.rank - 1] /= 2;
  node->results[0]->type = t;
  return true;
}

bool ir_shape_glu_grad(ir_node *node, char *err, size_t errlen) {
  const ir_type *h = &node->inputs[0]->type, *g = &node->inputs[1]->type;
  if (!glu_act_ok(node, err, errlen)) return false;
  bool ok = h->dtype == IR_f32 && h->rank >= 1 && h->dims[h->rank - 1] % 2 == 0 && g->rank == h->rank;
  for (int i = 0; ok && i < h->rank; i++)
    ok = g->dims[i] == (i == h->rank - 1 ? h->dims[i] / 2 : h->dims[i]);
  if (!ok) return fail(err, errlen, "glu_grad: expected h [..., 2F] and g [..., F]");
  node->results[0]->type = *h;
  return true;
}

/* ---- conv_concat ---- */

enum { CONV_CAT_MAX_PARTS = 3, CONV_CAT_LIMIT = 1 << 30 };

/* stride, padding, dilation as [h, w] pairs (absent: 1, 0, 1; one value
 * serves both), each in a range where the output-size arithmetic cannot
 * overflow. */
static bool conv_cat_windows(const ir_node *n, int64_t st[2], int64_t pd[2], int64_t dl[2],
                             char *err, size_t errlen) {
  static const char *const names[3] = {"stride", "padding", "dilation"};
  int64_t *outs[3] = {st, pd, dl};
  const int64_t lows[3] = {1, 0, 1}, defaults[3] = {1, 0, 1};
  for (int a = 0; a < 3; a++) {
    const int64_t *v;
    int count = ir_get_ints(n, names[a], &v);
    if (count > 2)
      return fail(err, errlen, "%s: '%s' must have 1 or 2 values", ir_op_get(n->op)->name, names[a]);
    for (int i = 0; i < 2; i++) {
      outs[a][i] = count == 0 ? defaults[a] : v[count == 1 ? 0 : i];
      if (outs[a][i] < lows[a] || outs[a][i] > CONV_CAT_LIMIT)
        return fail(err, errlen, "%s: '%s' out of range", ir_op_get(n->op)->name, names[a]);
    }
  }
  return true;
}

/* The parts' scales; *count of them, each in [1, 64]. */
static bool conv_cat_scales(const ir_node *n, int parts, const int64_t **scales, char *err,
                            size_t errlen) {
  const char *name = ir_op_get(n->op)->name;
  if (ir_get_ints(n, "scales", scales) != parts)
    return fail(err, errlen, "%s: 'scales' must have one value per part (%d)", name, parts);
  for (int i = 0; i < parts; i++)
    if ((*scales)[i] < 1 || (*scales)[i] > 64)
      return fail(err, errlen, "%s: scales must be in [1, 64]", name);
  return true;
}

static bool f32_rank4(const ir_type *t) { return t->dtype == IR_f32 && t->rank == 4; }

/* The convolution's output [N, O, OH, OW] from the concatenation's
 * shape x [N, C, H, W] and the weight w [O, C, KH, KW]. */
static bool conv_cat_output(const ir_node *n, const ir_type *x, const ir_type *w, ir_type *y,
                            char *err, size_t errlen) {
  const char *name = ir_op_get(n->op)->name;
  int64_t st[2], pd[2], dl[2];
  if (!conv_cat_windows(n, st, pd, dl, err, errlen)) return false;
  if (!f32_rank4(w) || w->dims[1] != x->dims[1])
    return fail(err, errlen, "%s: weight must be f32 [O, %lld, KH, KW]", name, (long long)x->dims[1]);
  *y = *x;
  y->dims[1] = w->dims[0];
  for (int i = 0; i < 2; i++) {
    int64_t len = x->dims[2 + i], k = w->dims[2 + i];
    if (len > CONV_CAT_LIMIT || k > CONV_CAT_LIMIT)
      return fail(err, errlen, "%s: sizes out of range", name);
    int64_t inner = len + 2 * pd[i] - dl[i] * (k - 1) - 1;
    if (inner < 0) return fail(err, errlen, "%s: the kernel does not fit the input", name);
    y->dims[2 + i] = inner / st[i] + 1;
  }
  return true;
}

/* (w, x0, x1?, x2?) -> y; *x is the concatenation's type. */
static bool conv_cat_input(const ir_node *n, int first, ir_type *x, char *err, size_t errlen) {
  const char *name = ir_op_get(n->op)->name;
  int parts = n->num_inputs - first;
  const int64_t *scales;
  if (!conv_cat_scales(n, parts, &scales, err, errlen)) return false;
  int64_t channels = 0;
  for (int i = 0; i < parts; i++) {
    const ir_type *t = &n->inputs[first + i]->type, *t0 = &n->inputs[first]->type;
    if (!f32_rank4(t)) return fail(err, errlen, "%s: part %d must be f32 [N, C, H, W]", name, i);
    if (t->dims[1] > CONV_CAT_LIMIT || t->dims[2] > CONV_CAT_LIMIT || t->dims[3] > CONV_CAT_LIMIT)
      return fail(err, errlen, "%s: sizes out of range", name);
    if (t->dims[0] != t0->dims[0] || t->dims[2] * scales[i] != t0->dims[2] * scales[0] ||
        t->dims[3] * scales[i] != t0->dims[3] * scales[0])
      return fail(err, errlen, "%s: part %d does not match part 0 once upsampled", name, i);
    channels += t->dims[1];
  }
  const ir_type *t0 = &n->inputs[first]->type;
  int64_t dims[4] = {t0->dims[0], channels, t0->dims[2] * scales[0], t0->dims[3] * scales[0]};
  *x = ir_type_make(IR_f32, 4, dims);
  return true;
}

bool ir_shape_conv_concat(ir_node *node, char *err, size_t errlen) {
  ir_type x, y;
  if (node->num_inputs - 1 > CONV_CAT_MAX_PARTS)
    return fail(err, errlen, "conv_concat: at most %d parts", CONV_CAT_MAX_PARTS);
  if (!conv_cat_input(node, 1, &x, err, errlen) ||
      !conv_cat_output(node, &x, &node->inputs[0]->type, &y, err, errlen))
    return false;
  node->results[0]->type = y;
  return true;
}

/* conv_concat_grad_input(g, w) -> part `part` of input_shape;
 * conv_concat_grad_weight(g, x0, ...) -> weight_shape. */
bool ir_shape_conv_concat_grad(ir_node *node, char *err, size_t errlen) {
  const char *name = ir_op_get(node->op)->name;
  const ir_type *g = &node->inputs[0]->type;
  ir_type x, w, y;
  if (node->op == IR_OP_conv_concat_grad_weight) {
    if (node->num_inputs - 1 > CONV_CAT_MAX_PARTS)
      return fail(err, errlen, "%s: at most %d parts", name, CONV_CAT_MAX_PARTS);
    const int64_t *ws;
    if (ir_get_ints(node, "weight_shape", &ws) != 4)
      return fail(err, errlen, "%s: 'weight_shape' must have 4 dims", name);
    for (int i = 0; i < 4; i++)
      if (ws[i] <= 0 || ws[i] > CONV_CAT_LIMIT)
        return fail(err, errlen, "%s: 'weight_shape' dims out of range", name);
    w = ir_type_make(IR_f32, 4, ws);
    if (!conv_cat_input(node, 1, &x, err, errlen)) return false;
    node->results[0]->type = w;
  } else {
    const int64_t *xs, *channels, *scales;
    int parts = ir_get_ints(node, "channels", &channels);
    int64_t part = ir_get_int(node, "part", -1);
    if (parts < 1 || parts > CONV_CAT_MAX_PARTS || part < 0 || part >= parts)
      return fail(err, errlen, "%s: 'channels' must list 1 to %d parts and 'part' one of them",
                  name, CONV_CAT_MAX_PARTS);
    if (!conv_cat_scales(node, parts, &scales, err, errlen)) return false;
    if (ir_get_ints(node, "input_shape", &xs) != 4)
      return fail(err, errlen, "%s: 'input_shape' must have 4 dims", name);
    int64_t sum = 0;
    for (int i = 0; i < 4; i++)
      if (xs[i] <= 0 || xs[i] > CONV_CAT_LIMIT)
        return fail(err, errlen, "%s: 'input_shape' dims out of range", name);
    for (int i = 0; i < parts; i++) {
      if (channels[i] <= 0 || channels[i] > CONV_CAT_LIMIT || xs[2] % scales[i] || xs[3] % scales[i])
        return fail(err, errlen, "%s: part %d does not divide the input", name, i);
      sum += channels[i];
    }
    if (sum != xs[1]) return fail(err, errlen, "%s: 'channels' must sum to the input's", name);
    x = ir_type_make(IR_f32, 4, xs);
    w = node->inputs[1]->type;
    int64_t dims[4] = {xs[0], channels[part], xs[2] / scales[part], xs[3] / scales[part]};
    node->results[0]->type = ir_type_make(IR_f32, 4, dims);
  }
  if (!conv_cat_output(node, &x, &w, &y, err, errlen)) return false;
  if (!ir_type_equal(g, &y))
    return fail(err, errlen, "%s: g must have the convolution's output shape", name);
  return true;
}

/* ---- fused_norm ---- */

/* x f32 [..., D] (rank >= 1) with w, and b or dr when given, checked;
 * *rows is the type of mean and rstd ([...]). */
static bool norm_operands(const ir_node *n, const ir_type *x, const ir_type *w, ir_type *rows,
                          char *err, size_t errlen) {
  const char *name = ir_op_get(n->op)->name;
  char text[128];
  if (x->dtype != IR_f32 || x->rank < 1)
    return fail(err, errlen, "%s: x must be f32 [..., D], got %s", name, ir_type_format(x, text, sizeof text));
  int64_t d = x->dims[x->rank - 1];
  if (w->dtype != IR_f32 || w->rank != 1 || w->dims[0] != d)
    return fail(err, errlen, "%s: the weight must be f32 [%lld], got %s", name, (long long)d,
                ir_type_format(w, text, sizeof text));
  *rows = ir_type_make(IR_f32, x->rank - 1, x->dims);
  return true;
}

bool ir_shape_fused_norm(ir_node *node, char *err, size_t errlen) {
  const ir_type *x = &node->inputs[0]->type, *w = &node->inputs[1]->type;
  ir_type rows;
  if (!norm_operands(node, x, w, &rows, err, errlen)) return false;
  if (node->num_inputs == 3 && !ir_type_equal(&node->inputs[2]->type, w))
    return fail(err, errlen, "fused_norm: the bias must have the weight's type");
  node->results[0]->type = *x;
  node->results[1]->type = rows;
  node->results[2]->type = rows;
  return true;
}

/* (d.y, x, mean, rstd, w, dr?) -> d.x, d.w, d.b */
bool ir_shape_fused_norm_grad(ir_node *node, char *err, size_t errlen) {
  const ir_type *x = &node->inputs[1]->type, *w = &node->inputs[4]->type;
  ir_type rows;
  if (!norm_operands(node, x, w, &rows, err, errlen)) return false;
  if (!ir_type_equal(&node->inputs[0]->type, x) ||
      (node->num_inputs == 6 && !ir_type_equal(&node->inputs[5]->type, x)))
    return fail(err, errlen, "fused_norm_grad: d.y and dr must have x's type");
  if (!ir_type_equal(&node->inputs[2]->type, &rows) || !ir_type_equal(&node->inputs[3]->type, &rows))
    return fail(err, errlen, "fused_norm_grad: mean and rstd must be [x's dims but the last]");
  node->results[0]->type = *x;
  node->results[1]->type = *w;
  node->results[2]->type = *w;
  return true;
}
