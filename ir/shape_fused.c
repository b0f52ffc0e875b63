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
