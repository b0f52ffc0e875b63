/* shape_grad.c: shape rules of the gradient ops that autodiff makes.
 * Each checks what its kernel relies on and gives the gradient the shape
 * of the forward value it belongs to. */
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

static const char *name_of(const ir_node *node) { return ir_op_get(node->op)->name; }

static bool same_types(const ir_node *node, int a, int b, char *err, size_t errlen) {
  const ir_type *x = &node->inputs[a]->type, *y = &node->inputs[b]->type;
  if (ir_type_equal(x, y)) return true;
  char t1[96], t2[96];
  return fail(err, errlen, "%s: operands differ: %s and %s", name_of(node),
              ir_type_format(x, t1, sizeof t1), ir_type_format(y, t2, sizeof t2));
}

/* (x or y, g) of one type -> that type. */
bool ir_shape_grad_like(ir_node *node, char *err, size_t errlen) {
  if (!same_types(node, 0, 1, err, errlen)) return false;
  if (!ir_dtype_is_float(node->inputs[0]->type.dtype))
    return fail(err, errlen, "%s needs floating-point operands", name_of(node));
  node->results[0]->type = node->inputs[0]->type;
  return true;
}

/* (x, y, g): y and g alike; the result is x's type. */
bool ir_shape_max_grad(ir_node *node, char *err, size_t errlen) {
  if (!same_types(node, 1, 2, err, errlen)) return false;
  node->results[0]->type = node->inputs[0]->type;
  return true;
}

/* (logp [..., C], targets [...], g []) -> logp's type. */
bool ir_shape_nll_loss_grad(ir_node *node, char *err, size_t errlen) {
  const ir_type *logp = &node->inputs[0]->type, *t = &node->inputs[1]->type;
  const ir_type *g = &node->inputs[2]->type;
  if (logp->rank < 1 || t->rank != logp->rank - 1 || g->rank != 0)
    return fail(err, errlen, "nll_loss_grad: expected logp [..., C], targets [...], g []");
  for (int i = 0; i < t->rank; i++)
    if (t->dims[i] != logp->dims[i])
      return fail(err, errlen, "nll_loss_grad: targets do not match logp");
  node->results[0]->type = *logp;
  return true;
}

/* The result shape is an attribute (input_shape / weight_shape). */
bool ir_shape_conv_grad(ir_node *node, char *err, size_t errlen) {
  const char *attr = node->op == IR_OP_conv_grad_input ? "input_shape" : "weight_shape";
  const int64_t *dims;
  int n = ir_get_ints(node, attr, &dims);
  if (n < 3 || n > 4) return fail(err, errlen, "%s: '%s' must have 3 or 4 dims", name_of(node), attr);
  for (int i = 0; i < n; i++)
    if (dims[i] <= 0) return fail(err, errlen, "%s: '%s' dims must be positive", name_of(node), attr);
  node->results[0]->type = ir_type_make(node->inputs[0]->type.dtype, n, dims);
  return true;
}

bool ir_shape_first_input(ir_node *node, char *err, size_t errlen) {
  (void)err;
  (void)errlen;
  node->results[0]->type = node->inputs[0]->type;
  return true;
}

/* (ids [...], g [..., D]) -> [num, D]. */
bool ir_shape_gather_grad(ir_node *node, char *err, size_t errlen) {
  const ir_type *ids = &node->inputs[0]->type, *g = &node->inputs[1]->type;
  int64_t num = ir_get_int(node, "num", 0);
  if (num <= 0) return fail(err, errlen, "gather_grad: 'num' must be positive");
  if (g->rank != ids->rank + 1) return fail(err, errlen, "gather_grad: g must be ids' shape + [D]");
  for (int i = 0; i < ids->rank; i++)
    if (ids->dims[i] != g->dims[i]) return fail(err, errlen, "gather_grad: g does not match ids");
  int64_t dims[2] = {num, g->dims[g->rank - 1]};
  node->results[0]->type = ir_type_make(g->dtype, 2, dims);
  return true;
}

/* pad(x) along axis by before/after zeros. */
bool ir_shape_pad(ir_node *node, char *err, size_t errlen) {
  const ir_type *x = &node->inputs[0]->type;
  int64_t axis = ir_get_int(node, "axis", 0);
  int64_t before = ir_get_int(node, "before", 0), after = ir_get_int(node, "after", 0);
  if (axis < 0) axis += x->rank;
  if (axis < 0 || axis >= x->rank) return fail(err, errlen, "pad: axis out of range");
  if (before < 0 || after < 0) return fail(err, errlen, "pad: negative padding");
  ir_type t = *x;
  t.dims[axis] += before + after;
  node->results[0]->type = t;
  return true;
}
