/* autodiff.c: reverse-mode differentiation of the loss.
 *
 * In a training graph (g->training) with an output named "loss" that is
 * an f32 scalar, the pass appends the backward graph after every forward
 * node (outputs and assigns included): the seed %d.loss = 1, then, walking
 * the forward nodes backwards, the adjoints of each node's inputs from the
 * adjoint of its result by its op's rule (the table `rules`), and last one
 * `grad %param, %d.param` effect per param the loss depends on, in the
 * params' graph order.
 *
 * A value gets an adjoint only on a path from a param to the loss: it
 * "depends" on a param when one reaches it through floating-point values
 * (integer values, masks, consts, inputs and buffers are constants; assign
 * and output are not followed), and it is "live" when it reaches the loss.
 * A node is differentiated when its result is live, and it contributes
 * only to inputs that depend on a param. A node's result 0 is the one
 * differentiated; further results (flash_attention's log-sum-exp) are
 * auxiliary values that its gradient op reads.
 *
 * Names: the adjoint of %x is %d.x once complete. A value used several
 * times gets contributions %d.x.part, %d.x.part.1, ... summed by `add`
 * into %d.x.acc, ... and last %d.x. Temporaries of a rule are
 * %d.x.<role>. A gradient that passes through unchanged (both operands of
 * an add without broadcasting) is not copied: the adjoint of a in
 * y = a + b is %d.y itself. New nodes take the loc and scope of the
 * forward node they differentiate; the grad effects those of the param. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ir.h"

typedef struct autodiff {
  ir_graph *g;
  ir_node *at;        /* forward node being differentiated: loc and scope */
  int num_values;     /* forward values have ids below this */
  bool *depends;      /* by value id: a param reaches it */
  int *pending;       /* by value id: contributions still to come */
  ir_value **adjoint; /* by value id: the sum of contributions so far */
  int first_new;      /* first value id made by the rule now running */
  ir_value *renamed;  /* the last contribution named by contribute() */
  char *err;
  size_t errlen;
  bool failed;
} autodiff;

static bool fail(autodiff *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool fail(autodiff *a, const char *fmt, ...) {
  if (a->failed) return false;
  a->failed = true;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(a->err, a->errlen, fmt, ap);
  va_end(ap);
  return false;
}

static const char *op_name(ir_op op) { return ir_op_get(op)->name; }

static ir_value *in(const ir_node *n, int i) { return n->inputs[i]; }

/* Whether input i of n gets a contribution. */
static bool wants(const autodiff *a, const ir_node *n, int i) { return a->depends[in(n, i)->id]; }

/* "d.x" or "d.x.role". */
static const char *dname(autodiff *a, const ir_value *x, const char *role) {
  if (!role) return ir_arena_printf(a->g->arena, "d.%s", x->name);
  return ir_arena_printf(a->g->arena, "d.%s.%s", x->name, role);
}

/* ---- building nodes: appended at the end, located at a->at ---- */

/* NULL when an input is missing (an earlier step failed). */
static ir_node *make(autodiff *a, ir_op op, const char *name, int n, ir_value *const *ins) {
  for (int i = 0; i < n; i++)
    if (!ins[i]) return NULL;
  if (a->failed) return NULL;
  ir_node *node = ir_node_new(a->g, op, n, ins, name);
  if (!node) {
    fail(a, "autodiff: out of memory");
    return NULL;
  }
  node->loc = a->at->loc;
  node->scope = a->at->scope;
  return node;
}

static ir_value *done(autodiff *a, ir_node *node) {
  if (!node) return NULL;
  char msg[IR_ERR_LEN], name[IR_ERR_LEN];
  if (ir_node_infer(node, msg, sizeof msg)) return node->num_results ? node->results[0] : NULL;
  const ir_value *y = a->at->num_results ? a->at->results[0] : NULL;
  fail(a, "autodiff: differentiating %s %s: %s", op_name(a->at->op),
       y ? ir_value_format(y, name, sizeof name) : "", msg);
  return NULL;
}

static ir_value *op1(autodiff *a, ir_op op, const char *name, ir_value *x) {
  return done(a, make(a, op, name, 1, &x));
}

static ir_value *op2(autodiff *a, ir_op op, const char *name, ir_value *x, ir_value *y) {
  ir_value *ins[2] = {x, y};
  return done(a, make(a, op, name, 2, ins));
}

static ir_value *op3(autodiff *a, ir_op op, const char *name, ir_value *x, ir_value *y,
                     ir_value *z) {
  ir_value *ins[3] = {x, y, z};
  return done(a, make(a, op, name, 3, ins));
}

static ir_value *constant(autodiff *a, const char *name, ir_dtype dtype, double value) {
  if (a->failed) return NULL;
  ir_node *node = ir_source_new(a->g, IR_OP_const, ir_type_make(dtype, 0, NULL), name);
  if (!node) {
    fail(a, "autodiff: out of memory");
    return NULL;
  }
  node->loc = a->at->loc;
  node->scope = a->at->scope;
  ir_set_float(a->g, node, "value", value);
  return node->results[0];
}

static void set_attr(ir_graph *g, ir_node *node, const ir_attr *at) {
  switch (at->kind) {
  case IR_ATTR_INT: ir_set_int(g, node, at->name, at->u.i); break;
  case IR_ATTR_FLOAT: ir_set_float(g, node, at->name, at->u.f); break;
  case IR_ATTR_BOOL: ir_set_bool(g, node, at->name, at->u.b); break;
  case IR_ATTR_STR: ir_set_str(g, node, at->name, at->u.s); break;
  case IR_ATTR_INTS: ir_set_ints(g, node, at->name, at->u.ints.n, at->u.ints.v); break;
  case IR_ATTR_FLOATS: ir_set_floats(g, node, at->name, at->u.floats.n, at->u.floats.v); break;
  }
}

/* The forward node's attributes that the gradient op also has (axis,
 * stride, ignore_index, ...). */
static void copy_attrs(ir_graph *g, const ir_node *from, ir_node *to) {
  const ir_op_info *info = ir_op_get(to->op);
  for (int i = 0; i < from->num_attrs; i++)
    for (int j = 0; j < info->num_attrs; j++)
      if (strcmp(info->attrs[j].name, from->attrs[i].name) == 0) set_attr(g, to, &from->attrs[i]);
}

/* A gradient op taking the forward node's attributes. */
static ir_value *like(autodiff *a, ir_op op, const char *name, int n, ir_value *const *ins) {
  ir_node *node = make(a, op, name, n, ins);
  if (node) copy_attrs(a->g, a->at, node);
  return done(a, node);
}

static ir_value *with_ints(autodiff *a, ir_op op, const char *name, ir_value *x, const char *attr,
                           int n, const int64_t *v) {
  ir_node *node = make(a, op, name, 1, &x);
  if (node) ir_set_ints(a->g, node, attr, n, v);
  return done(a, node);
}

static ir_value *reshape(autodiff *a, const char *name, ir_value *x, const ir_type *to) {
  return with_ints(a, IR_OP_reshape, name, x, "shape", to->rank, to->dims);
}

static ir_value *sum(autodiff *a, const char *name, ir_value *x, int n, const int64_t *axes,
                     bool keepdim) {
  ir_node *node = make(a, IR_OP_sum, name, 1, &x);
  if (!node) return NULL;
  ir_set_ints(a->g, node, "axes", n, axes);
  ir_set_bool(a->g, node, "keepdim", keepdim);
  return done(a, node);
}

static ir_value *matmul(autodiff *a, const char *name, ir_value *x, ir_value *y, bool ta, bool tb) {
  ir_value *ins[2] = {x, y};
  ir_node *node = make(a, IR_OP_matmul, name, 2, ins);
  if (!node) return NULL;
  ir_set_bool(a->g, node, "transpose_a", ta);
  ir_set_bool(a->g, node, "transpose_b", tb);
  return done(a, node);
}

/* slice(x) along axis [start, end), or pad(x) with before/after zeros. */
static ir_value *range_op(autodiff *a, ir_op op, const char *name, ir_value *x, int64_t axis,
                          int64_t lo, int64_t hi) {
  ir_node *node = make(a, op, name, 1, &x);
  if (!node) return NULL;
  bool slice = op == IR_OP_slice;
  ir_set_int(a->g, node, "axis", axis);
  ir_set_int(a->g, node, slice ? "start" : "before", lo);
  ir_set_int(a->g, node, slice ? "end" : "after", hi);
  return done(a, node);
}

/* ---- adjoints ---- */

/* Adds v to the adjoint of x. A value made by this rule is renamed (once,
 * if contributed twice): %d.x when it completes the adjoint, else
 * %d.x.part; sums are %d.x.acc until the last, %d.x. */
static void contribute(autodiff *a, ir_value *x, ir_value *v) {
  if (!v) return;
  char want[IR_ERR_LEN], got[IR_ERR_LEN], name[IR_ERR_LEN];
  if (!ir_type_equal(&v->type, &x->type)) {
    fail(a, "autodiff: gradient of %s is %s, expected %s", ir_value_format(x, name, sizeof name),
         ir_type_format(&v->type, got, sizeof got), ir_type_format(&x->type, want, sizeof want));
    return;
  }
  bool last = --a->pending[x->id] == 0;
  ir_value *sum_so_far = a->adjoint[x->id];
  if (v->id >= a->first_new && v != a->renamed) {
    ir_value_rename(a->g, v, dname(a, x, last && !sum_so_far ? NULL : "part"));
    a->renamed = v;
  }
  if (!sum_so_far) {
    a->adjoint[x->id] = v;
    return;
  }
  a->adjoint[x->id] = op2(a, IR_OP_add, dname(a, x, last ? NULL : "acc"), sum_so_far, v);
}

/* g (of a broadcast result) summed to shape `to` as PyTorch's
 * broadcasting backward does: over the leading axes `to` lacks and the
 * axes where it has size 1, keeping dims when it has any of the latter;
 * then a reshape if the shapes still differ (a dim of size 1). Temporaries
 * are named after x, whose adjoint this becomes. */
static ir_value *reduce_to_type(autodiff *a, ir_value *g, const ir_value *x, const ir_type *to) {
  if (!g || ir_type_equal(&g->type, to)) return g;
  const ir_type *gt = &g->type;
  int lead = gt->rank - to->rank, n = 0;
  int64_t axes[IR_MAX_RANK];
  bool keepdim = false;
  for (int i = 0; i < gt->rank; i++) {
    if (gt->dims[i] == 1) continue;
    if (i < lead) {
      axes[n++] = i;
    } else if (i - lead >= 0 && to->dims[i - lead] == 1) {
      axes[n++] = i;
      keepdim = true;
    }
  }
  ir_value *s = n ? sum(a, dname(a, x, "reduce"), g, n, axes, keepdim) : g;
  if (!s || ir_type_equal(&s->type, to)) return s;
  return reshape(a, dname(a, x, "reshape"), s, to);
}

static ir_value *reduce_to(autodiff *a, ir_value *g, const ir_value *x) {
  return reduce_to_type(a, g, x, &x->type);
}

/* ---- rules: one per op family; each contributes to the inputs that
 * depend on a param, from g, the adjoint of the node's result ---- */

typedef void (*rule_fn)(autodiff *a, ir_node *n, ir_value *g);

typedef struct grad_rule {
  rule_fn fn;    /* NULL: the op has no gradient rule */
  ir_op grad_op; /* the gradient op, for rules that several ops share */
} grad_rule;

static const grad_rule *rule_of(ir_op op);

static void rule_neg(autodiff *a, ir_node *n, ir_value *g) {
  contribute(a, in(n, 0), op1(a, IR_OP_neg, dname(a, in(n, 0), NULL), g));
}

/* add, sub: g to a, g (negated for sub) to b, each summed to its shape. */
static void rule_add_sub(autodiff *a, ir_node *n, ir_value *g) {
  if (wants(a, n, 0)) contribute(a, in(n, 0), reduce_to(a, g, in(n, 0)));
  if (!wants(a, n, 1)) return;
  ir_value *gb = reduce_to(a, g, in(n, 1));
  if (n->op == IR_OP_sub) gb = op1(a, IR_OP_neg, dname(a, in(n, 1), NULL), gb);
  contribute(a, in(n, 1), gb);
}

/* y = a * b: d a = g * b, d b = g * a. For x * x both are g * x: one
 * product, contributed twice (so added to itself). */
static void rule_mul(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *grad = NULL;
  for (int i = 0; i < 2; i++) {
    if (!wants(a, n, i)) continue;
    ir_value *x = in(n, i);
    if (i == 0 || x != in(n, 0)) {
      ir_value *full = op2(a, IR_OP_mul, dname(a, x, "full"), g, in(n, 1 - i));
      grad = reduce_to(a, full, x);
    }
    contribute(a, x, grad);
  }
}

/* y = a / b: d a = g / b, d b = -g * a / (b * b). */
static void rule_div(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *x = in(n, 0), *b = in(n, 1);
  if (wants(a, n, 0)) {
    ir_value *full = op2(a, IR_OP_div, dname(a, x, "full"), g, b);
    contribute(a, x, reduce_to(a, full, x));
  }
  if (!wants(a, n, 1)) return;
  ir_value *ga = op2(a, IR_OP_mul, dname(a, b, "g_a"), g, x);
  ir_value *bb = op2(a, IR_OP_mul, dname(a, b, "square"), b, b);
  ir_value *full = op2(a, IR_OP_div, dname(a, b, "full"), ga, bb);
  ir_value *summed = reduce_to(a, full, b);
  contribute(a, b, op1(a, IR_OP_neg, dname(a, b, NULL), summed));
}

/* y = where(m, a, b): g where m holds to a, elsewhere to b. */
static void rule_where(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *zero = constant(a, dname(a, n->results[0], "zero"), g->type.dtype, 0.0);
  for (int i = 1; i < 3; i++) {
    if (!wants(a, n, i)) continue;
    ir_value *x = in(n, i);
    ir_value *full =
        op3(a, IR_OP_where, dname(a, x, "full"), in(n, 0), i == 1 ? g : zero, i == 1 ? zero : g);
    contribute(a, x, reduce_to(a, full, x));
  }
}

/* grad_op(x, g): relu gelu gelu_tanh silu softplus, pools, upsample. */
static void rule_of_input(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *ins[2] = {in(n, 0), g};
  contribute(a, in(n, 0), like(a, rule_of(n->op)->grad_op, dname(a, in(n, 0), NULL), 2, ins));
}

/* grad_op(y, g): sigmoid tanh softmax log_softmax. */
static void rule_of_output(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *ins[2] = {n->results[0], g};
  contribute(a, in(n, 0), like(a, rule_of(n->op)->grad_op, dname(a, in(n, 0), NULL), 2, ins));
}

/* y = exp(x): g * y. */
static void rule_exp(autodiff *a, ir_node *n, ir_value *g) {
  contribute(a, in(n, 0), op2(a, IR_OP_mul, dname(a, in(n, 0), NULL), g, n->results[0]));
}

/* y = log(x): g / x. */
static void rule_log(autodiff *a, ir_node *n, ir_value *g) {
  contribute(a, in(n, 0), op2(a, IR_OP_div, dname(a, in(n, 0), NULL), g, in(n, 0)));
}

/* y = sqrt(x): g * 0.5 / y. */
static void rule_sqrt(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *x = in(n, 0);
  ir_value *half = constant(a, dname(a, x, "half"), g->type.dtype, 0.5);
  ir_value *scaled = op2(a, IR_OP_mul, dname(a, x, "scaled"), g, half);
  contribute(a, x, op2(a, IR_OP_div, dname(a, x, NULL), scaled, n->results[0]));
}

/* y = rsqrt(x) = x^-1/2: g * -0.5 * y^3. */
static void rule_rsqrt(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *x = in(n, 0), *y = n->results[0];
  ir_value *y2 = op2(a, IR_OP_mul, dname(a, x, "y2"), y, y);
  ir_value *y3 = op2(a, IR_OP_mul, dname(a, x, "y3"), y2, y);
  ir_value *gy3 = op2(a, IR_OP_mul, dname(a, x, "g_y3"), g, y3);
  ir_value *factor = constant(a, dname(a, x, "factor"), g->type.dtype, -0.5);
  contribute(a, x, op2(a, IR_OP_mul, dname(a, x, NULL), gy3, factor));
}

/* y = |x|: g * sign(x). */
static void rule_abs(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *x = in(n, 0);
  ir_value *s = op1(a, IR_OP_sign, dname(a, x, "sign"), x);
  contribute(a, x, op2(a, IR_OP_mul, dname(a, x, NULL), g, s));
}

/* y = cast(x): g cast back to x's dtype. */
static void rule_cast(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *x = in(n, 0);
  ir_node *node = make(a, IR_OP_cast, dname(a, x, NULL), 1, &g);
  if (node) ir_set_str(a->g, node, "to", ir_dtype_name(x->type.dtype));
  contribute(a, x, done(a, node));
}

/* The axes a sum/mean/max reduces, as shape.c reads them (none given:
 * all); returns how many elements each result element covers. */
static int64_t reduced_axes(const ir_node *n, const ir_type *x, bool reduced[IR_MAX_RANK]) {
  const int64_t *axes;
  int count = ir_get_ints(n, "axes", &axes);
  int64_t covered = 1;
  for (int i = 0; i < IR_MAX_RANK; i++) reduced[i] = count == 0 && i < x->rank;
  for (int i = 0; i < count && x->rank > 0; i++)
    reduced[axes[i] < 0 ? axes[i] + x->rank : axes[i]] = true;
  for (int i = 0; i < x->rank; i++)
    if (reduced[i]) covered *= x->dims[i];
  return covered;
}

/* Whether t broadcasts like keep: the same dims once leading 1s are
 * dropped (a reduction that dropped only leading axes). */
static bool broadcasts_as(const ir_type *t, const ir_type *keep) {
  int i = 0, j = 0;
  while (i < t->rank && t->dims[i] == 1) i++;
  while (j < keep->rank && keep->dims[j] == 1) j++;
  if (t->rank - i != keep->rank - j) return false;
  for (; i < t->rank; i++, j++)
    if (t->dims[i] != keep->dims[j]) return false;
  return true;
}

/* sum, mean: g viewed with the reduced dims kept as 1 (when they were
 * dropped before a kept one), broadcast back to x's shape; mean scales by
 * 1/count first. */
static void rule_sum_mean(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *x = in(n, 0);
  bool reduced[IR_MAX_RANK];
  int64_t count = reduced_axes(n, &x->type, reduced);
  if (n->op == IR_OP_mean && count != 1) {
    ir_value *inv = constant(a, dname(a, x, "inv_count"), g->type.dtype, 1.0 / (double)count);
    g = op2(a, IR_OP_mul, dname(a, x, "scaled"), g, inv);
  }
  ir_type keep = x->type;
  for (int i = 0; i < keep.rank; i++)
    if (reduced[i]) keep.dims[i] = 1;
  if (g && !broadcasts_as(&g->type, &keep)) g = reshape(a, dname(a, x, "keepdim"), g, &keep);
  if (g && !ir_type_equal(&g->type, &x->type))
    g = with_ints(a, IR_OP_broadcast, dname(a, x, NULL), g, "shape", x->type.rank, x->type.dims);
  contribute(a, x, g);
}

/* max_grad(x, y, g): g to the first maximum. */
static void rule_max(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *ins[3] = {in(n, 0), n->results[0], g};
  contribute(a, in(n, 0), like(a, IR_OP_max_grad, dname(a, in(n, 0), NULL), 3, ins));
}

/* nll_loss_grad(logp, targets, g); targets are integers. */
static void rule_nll_loss(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *ins[3] = {in(n, 0), in(n, 1), g};
  contribute(a, in(n, 0), like(a, IR_OP_nll_loss_grad, dname(a, in(n, 0), NULL), 3, ins));
}

/* ---- matmul ----
 * y = A' @ B' with A' = A^T if transpose_a (B' likewise), batch dims
 * broadcast. dA' = g @ B'^T and dB' = A'^T @ g, taken back through the
 * transposes without materialising one:
 *   dA = ta ? B' @ g^T  = matmul(B, g, ta=tb,   tb=true)
 *          : g @ B'^T   = matmul(g, B, ta=false, tb=!tb)
 *   dB = tb ? g^T @ A'  = matmul(g, A, ta=true,  tb=ta)
 *          : A'^T @ g   = matmul(A, g, ta=!ta,  tb=false)
 * then summed over the batch dims the operand was broadcast along. 1-D
 * operands are first viewed as torch promotes them (A [K] as [1,K], B [K]
 * as [K,1], g with the dropped dim put back). */
typedef struct matmul_views {
  ir_value *a, *b, *g;
  bool ta, tb;
} matmul_views;

/* g [batch..., M?, N?] with the dims that 1-D operands dropped put back. */
static ir_value *promoted_grad(autodiff *a, ir_node *n, ir_value *g) {
  bool a1 = in(n, 0)->type.rank == 1, b1 = in(n, 1)->type.rank == 1;
  if (!a1 && !b1) return g;
  ir_type t = g->type;
  int batch = t.rank - !a1 - !b1;
  t.rank = batch;
  t.dims[t.rank++] = a1 ? 1 : g->type.dims[batch];
  t.dims[t.rank++] = b1 ? 1 : g->type.dims[g->type.rank - 1];
  return reshape(a, dname(a, n->results[0], "2d"), g, &t);
}

/* Operand i as a matrix: [K] -> [1,K] (i = 0) or [K,1] (i = 1). */
static ir_value *promoted_operand(autodiff *a, ir_node *n, int i) {
  ir_value *x = in(n, i);
  if (x->type.rank != 1) return x;
  ir_type t = x->type;
  t.rank = 2;
  t.dims[i == 0 ? 1 : 0] = x->type.dims[0];
  t.dims[i == 0 ? 0 : 1] = 1;
  return reshape(a, dname(a, in(n, 1 - i), i == 0 ? "lhs_2d" : "rhs_2d"), x, &t);
}

/* dB for a matrix B against a batched A (every linear layer's weight):
 * the batch folded into the rows, so one matmul gives B's shape without
 * a batched product to sum. */
static ir_value *weight_grad(autodiff *a, const matmul_views *v, const ir_value *b) {
  const ir_type *at = &v->a->type, *gt = &v->g->type;
  int64_t rows = ir_type_numel(at) / at->dims[at->rank - 1];
  int64_t a_dims[2] = {rows, at->dims[at->rank - 1]}, g_dims[2] = {rows, gt->dims[gt->rank - 1]};
  ir_type a_rows = ir_type_make(at->dtype, 2, a_dims), g_rows = ir_type_make(gt->dtype, 2, g_dims);
  ir_value *a2 = reshape(a, dname(a, b, "lhs_rows"), v->a, &a_rows);
  ir_value *g2 = reshape(a, dname(a, b, "g_rows"), v->g, &g_rows);
  if (v->tb) return matmul(a, dname(a, b, NULL), g2, a2, true, false);
  return matmul(a, dname(a, b, NULL), a2, g2, true, false);
}

/* The gradient of operand x summed over its broadcast batch dims; a
 * 1-D x through its matrix view ([1,K] or [K,1]). */
static ir_value *unpromote(autodiff *a, ir_value *grad, ir_value *x, bool lhs) {
  if (x->type.rank != 1 || !grad) return reduce_to(a, grad, x);
  ir_type matrix = x->type;
  matrix.rank = 2;
  matrix.dims[lhs ? 0 : 1] = 1;
  matrix.dims[lhs ? 1 : 0] = x->type.dims[0];
  ir_value *summed = reduce_to_type(a, grad, x, &matrix);
  return summed ? reshape(a, dname(a, x, "reshape"), summed, &x->type) : NULL;
}

static void rule_matmul(autodiff *a, ir_node *n, ir_value *g) {
  matmul_views v = {NULL, NULL, NULL, ir_get_bool(n, "transpose_a", false),
                    ir_get_bool(n, "transpose_b", false)};
  v.g = promoted_grad(a, n, g);
  ir_value *x = in(n, 0), *w = in(n, 1);
  if (wants(a, n, 0)) {
    v.b = promoted_operand(a, n, 1);
    ir_value *da = v.ta ? matmul(a, dname(a, x, "full"), v.b, v.g, v.tb, true)
                        : matmul(a, dname(a, x, "full"), v.g, v.b, false, !v.tb);
    contribute(a, x, unpromote(a, da, x, true));
  }
  if (!wants(a, n, 1)) return;
  v.a = promoted_operand(a, n, 0);
  if (!v.a || !v.g) return;
  ir_value *db;
  if (w->type.rank == 2 && v.a->type.rank > 2 && !v.ta)
    db = weight_grad(a, &v, w);
  else if (v.tb)
    db = matmul(a, dname(a, w, "full"), v.g, v.a, true, v.ta);
  else
    db = matmul(a, dname(a, w, "full"), v.a, v.g, !v.ta, false);
  contribute(a, w, unpromote(a, db, w, false));
}

/* ---- convolution, pooling, embeddings ---- */

/* conv_grad_input(g, w) and conv_grad_weight(x, g), shaped by an attribute. */
static void rule_conv(autodiff *a, ir_node *n, ir_value *g) {
  for (int i = 0; i < 2; i++) {
    if (!wants(a, n, i)) continue;
    ir_value *x = in(n, i);
    ir_value *ins[2] = {i == 0 ? g : in(n, 0), i == 0 ? in(n, 1) : g};
    ir_node *node =
        make(a, i == 0 ? IR_OP_conv_grad_input : IR_OP_conv_grad_weight, dname(a, x, NULL), 2, ins);
    if (node) {
      copy_attrs(a->g, n, node);
      ir_set_ints(a->g, node, i == 0 ? "input_shape" : "weight_shape", x->type.rank, x->type.dims);
    }
    contribute(a, x, done(a, node));
  }
}

/* conv_concat(w, x0, ...): a conv_concat_grad_input per part wanted (each
 * writes that part's gradient, summing an upsampled part's copies) and
 * conv_concat_grad_weight(g, x0, ...), which reads the parts in place
 * like the forward. */
static void rule_conv_concat(autodiff *a, ir_node *n, ir_value *g) {
  int parts = n->num_inputs - 1;
  int64_t channels[3], shape[4];
  const int64_t *scales;
  ir_get_ints(n, "scales", &scales);
  for (int i = 0; i < parts; i++) channels[i] = in(n, 1 + i)->type.dims[1];
  const ir_type *x0 = &in(n, 1)->type;
  shape[0] = x0->dims[0], shape[1] = in(n, 0)->type.dims[1];
  shape[2] = x0->dims[2] * scales[0], shape[3] = x0->dims[3] * scales[0];
  for (int i = 0; i < parts; i++) {
    if (!wants(a, n, 1 + i)) continue;
    ir_value *x = in(n, 1 + i), *ins[2] = {g, in(n, 0)};
    ir_node *node = make(a, IR_OP_conv_concat_grad_input, dname(a, x, NULL), 2, ins);
    if (node) {
      copy_attrs(a->g, n, node);
      ir_set_ints(a->g, node, "channels", parts, channels);
      ir_set_int(a->g, node, "part", i);
      ir_set_ints(a->g, node, "input_shape", 4, shape);
    }
    contribute(a, x, done(a, node));
  }
  if (!wants(a, n, 0)) return;
  ir_value *w = in(n, 0), *ins[4] = {g};
  for (int i = 0; i < parts; i++) ins[1 + i] = in(n, 1 + i);
  ir_node *node = make(a, IR_OP_conv_concat_grad_weight, dname(a, w, NULL), 1 + parts, ins);
  if (node) {
    copy_attrs(a->g, n, node);
    ir_set_ints(a->g, node, "weight_shape", w->type.rank, w->type.dims);
  }
  contribute(a, w, done(a, node));
}

/* gather(table, ids): gather_grad(ids, g) scatters rows into [num, D]. */
static void rule_gather(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *table = in(n, 0);
  ir_value *ins[2] = {in(n, 1), g};
  ir_node *node = make(a, IR_OP_gather_grad, dname(a, table, NULL), 2, ins);
  if (node) ir_set_int(a->g, node, "num", table->type.dims[0]);
  contribute(a, table, done(a, node));
}

static void rule_rope(autodiff *a, ir_node *n, ir_value *g) {
  contribute(a, in(n, 0), like(a, IR_OP_rope_grad, dname(a, in(n, 0), NULL), 1, &g));
}

/* ---- layout ---- */

static void rule_reshape(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *x = in(n, 0);
  contribute(a, x, reshape(a, dname(a, x, NULL), g, &x->type));
}

static void rule_permute(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *x = in(n, 0);
  const int64_t *perm;
  int rank = ir_get_ints(n, "perm", &perm);
  int64_t inverse[IR_MAX_RANK];
  for (int i = 0; i < rank; i++) inverse[perm[i] < 0 ? perm[i] + rank : perm[i]] = i;
  contribute(a, x, with_ints(a, IR_OP_permute, dname(a, x, NULL), g, "perm", rank, inverse));
}

static void rule_broadcast(autodiff *a, ir_node *n, ir_value *g) {
  contribute(a, in(n, 0), reduce_to(a, g, in(n, 0)));
}

static int normal_axis(const ir_node *n, int rank) {
  int64_t axis = ir_get_int(n, "axis", 0);
  return (int)(axis < 0 ? axis + rank : axis);
}

/* slice [start, end) of a dim of size d: pad with start before, d - end after. */
static void rule_slice(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *x = in(n, 0);
  int axis = normal_axis(n, x->type.rank);
  int64_t start = ir_get_int(n, "start", 0), end = ir_get_int(n, "end", 0);
  contribute(a, x,
             range_op(a, IR_OP_pad, dname(a, x, NULL), g, axis, start, x->type.dims[axis] - end));
}

/* pad: the slice of g where x was. */
static void rule_pad(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *x = in(n, 0);
  int axis = normal_axis(n, x->type.rank);
  int64_t before = ir_get_int(n, "before", 0);
  contribute(
      a, x,
      range_op(a, IR_OP_slice, dname(a, x, NULL), g, axis, before, before + x->type.dims[axis]));
}

/* concat: each input's slice of g. */
static void rule_concat(autodiff *a, ir_node *n, ir_value *g) {
  int axis = normal_axis(n, n->results[0]->type.rank);
  int64_t offset = 0;
  for (int i = 0; i < n->num_inputs; i++) {
    ir_value *x = in(n, i);
    int64_t size = x->type.dims[axis];
    if (wants(a, n, i))
      contribute(a, x, range_op(a, IR_OP_slice, dname(a, x, NULL), g, axis, offset, offset + size));
    offset += size;
  }
}

/* flash_attention: one fused gradient op gives d.q, d.k and d.v from
 * the output, its log-sum-exp (result 1, not differentiated) and d.out. */
static void rule_flash(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *ins[6] = {in(n, 0), in(n, 1), in(n, 2), n->results[0], n->results[1], g};
  ir_node *node = make(a, IR_OP_flash_attention_grad, dname(a, n->results[0], "flash"), 6, ins);
  if (!node) return;
  copy_attrs(a->g, n, node);
  if (!done(a, node)) return;
  for (int i = 0; i < 3; i++)
    if (wants(a, n, i)) contribute(a, in(n, i), node->results[i]);
}

/* softmax_cross_entropy: the fused gradient from the logits and each
 * row's log-sum-exp (result 1). */
static void rule_softmax_ce(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *ins[4] = {in(n, 0), n->results[1], in(n, 1), g};
  contribute(a, in(n, 0), like(a, IR_OP_softmax_cross_entropy_grad, dname(a, in(n, 0), NULL), 4, ins));
}

/* fused_norm(x, w, b?) -> y, mean, rstd: fused_norm_grad(d.y, x, mean,
 * rstd, w) gives d.x, d.w and d.b in two passes. */
static void rule_fused_norm(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *ins[5] = {g, in(n, 0), n->results[1], n->results[2], in(n, 1)};
  ir_node *node = make(a, IR_OP_fused_norm_grad, dname(a, n->results[0], "norm"), 5, ins);
  if (!node) return;
  copy_attrs(a->g, n, node);
  if (!done(a, node)) return;
  for (int i = 0; i < n->num_inputs; i++)
    if (wants(a, n, i)) contribute(a, in(n, i), node->results[i]);
}

static void rule_glu(autodiff *a, ir_node *n, ir_value *g) {
  ir_value *ins[2] = {in(n, 0), g};
  contribute(a, in(n, 0), like(a, IR_OP_glu_grad, dname(a, in(n, 0), NULL), 2, ins));
}

/* ---- the table ---- */

static const grad_rule rules[IR_OP_COUNT] = {
    [IR_OP_neg] = {.fn = rule_neg},
    [IR_OP_relu] = {.fn = rule_of_input, .grad_op = IR_OP_relu_grad},
    [IR_OP_gelu] = {.fn = rule_of_input, .grad_op = IR_OP_gelu_grad},
    [IR_OP_gelu_tanh] = {.fn = rule_of_input, .grad_op = IR_OP_gelu_tanh_grad},
    [IR_OP_silu] = {.fn = rule_of_input, .grad_op = IR_OP_silu_grad},
    [IR_OP_softplus] = {.fn = rule_of_input, .grad_op = IR_OP_softplus_grad},
    [IR_OP_sigmoid] = {.fn = rule_of_output, .grad_op = IR_OP_sigmoid_grad},
    [IR_OP_tanh] = {.fn = rule_of_output, .grad_op = IR_OP_tanh_grad},
    [IR_OP_exp] = {.fn = rule_exp},
    [IR_OP_log] = {.fn = rule_log},
    [IR_OP_sqrt] = {.fn = rule_sqrt},
    [IR_OP_rsqrt] = {.fn = rule_rsqrt},
    [IR_OP_abs] = {.fn = rule_abs},
    [IR_OP_cast] = {.fn = rule_cast},
    [IR_OP_add] = {.fn = rule_add_sub},
    [IR_OP_sub] = {.fn = rule_add_sub},
    [IR_OP_mul] = {.fn = rule_mul},
    [IR_OP_div] = {.fn = rule_div},
    [IR_OP_where] = {.fn = rule_where},
    [IR_OP_sum] = {.fn = rule_sum_mean},
    [IR_OP_mean] = {.fn = rule_sum_mean},
    [IR_OP_max] = {.fn = rule_max},
    [IR_OP_softmax] = {.fn = rule_of_output, .grad_op = IR_OP_softmax_grad},
    [IR_OP_log_softmax] = {.fn = rule_of_output, .grad_op = IR_OP_log_softmax_grad},
    [IR_OP_nll_loss] = {.fn = rule_nll_loss},
    [IR_OP_matmul] = {.fn = rule_matmul},
    [IR_OP_conv] = {.fn = rule_conv},
    [IR_OP_conv_concat] = {.fn = rule_conv_concat},
    [IR_OP_maxpool] = {.fn = rule_of_input, .grad_op = IR_OP_maxpool_grad},
    [IR_OP_avgpool] = {.fn = rule_of_input, .grad_op = IR_OP_avgpool_grad},
    [IR_OP_upsample] = {.fn = rule_of_input, .grad_op = IR_OP_upsample_grad},
    [IR_OP_gather] = {.fn = rule_gather},
    [IR_OP_rope] = {.fn = rule_rope},
    [IR_OP_reshape] = {.fn = rule_reshape},
    [IR_OP_permute] = {.fn = rule_permute},
    [IR_OP_broadcast] = {.fn = rule_broadcast},
    [IR_OP_slice] = {.fn = rule_slice},
    [IR_OP_concat] = {.fn = rule_concat},
    [IR_OP_pad] = {.fn = rule_pad},
    [IR_OP_flash_attention] = {.fn = rule_flash},
    [IR_OP_softmax_cross_entropy] = {.fn = rule_softmax_ce},
    [IR_OP_glu] = {.fn = rule_glu},
    [IR_OP_fused_norm] = {.fn = rule_fused_norm},
};

static const grad_rule *rule_of(ir_op op) { return &rules[op]; }

/* ---- the pass ---- */

/* A param reaches the node's result through floating-point values. sign
 * is piecewise constant: its gradient is zero, so nothing flows through. */
static bool result_depends(const autodiff *a, const ir_node *n) {
  if (n->num_results < 1 || !ir_dtype_is_float(n->results[0]->type.dtype)) return false;
  if (n->op == IR_OP_param) return true;
  if ((ir_op_get(n->op)->flags & IR_OPF_SOURCE) || n->op == IR_OP_sign) return false;
  for (int i = 0; i < n->num_inputs; i++)
    if (a->depends[in(n, i)->id]) return true;
  return false;
}

/* The value of the first `output ... name="loss"`, or NULL. */
static ir_value *loss_output(const ir_graph *g) {
  for (const ir_node *n = g->first; n; n = n->next)
    if (n->op == IR_OP_output && strcmp(ir_get_str(n, "name", ""), "loss") == 0) return in(n, 0);
  return NULL;
}

static bool already_differentiated(const ir_graph *g) {
  for (const ir_node *n = g->first; n; n = n->next)
    if (n->op == IR_OP_grad) return true;
  return false;
}

/* Backwards from the loss: counts the contributions each value will get,
 * and checks that every node to differentiate has a rule, before the
 * graph is touched. */
static bool count_contributions(autodiff *a, const ir_value *loss) {
  for (ir_node *n = a->g->last; n; n = n->prev) {
    if (n->num_results < 1 || n->op == IR_OP_param) continue;
    ir_value *y = n->results[0];
    if (y != loss && a->pending[y->id] == 0) continue;
    if (!rules[n->op].fn) {
      char name[IR_ERR_LEN];
      return fail(a, "autodiff: no gradient rule for op '%s' (%s)", op_name(n->op),
                  ir_value_format(y, name, sizeof name));
    }
    for (int i = 0; i < n->num_inputs; i++)
      if (a->depends[in(n, i)->id]) a->pending[in(n, i)->id]++;
  }
  return true;
}

static bool setup(autodiff *a, ir_graph *g, char *err, size_t errlen) {
  *a = (autodiff){.g = g, .num_values = g->next_value_id, .err = err, .errlen = errlen};
  size_t count = (size_t)a->num_values + 1;
  a->depends = ir_arena_alloc(g->arena, count * sizeof *a->depends);
  a->pending = ir_arena_alloc(g->arena, count * sizeof *a->pending);
  a->adjoint = ir_arena_alloc(g->arena, count * sizeof *a->adjoint);
  if (!a->depends || !a->pending || !a->adjoint) return fail(a, "autodiff: out of memory");
  for (ir_node *n = g->first; n; n = n->next)
    if (n->num_results >= 1) a->depends[n->results[0]->id] = result_depends(a, n);
  return true;
}

/* Walks the forward nodes from `last` back, running each live node's rule. */
static bool backward(autodiff *a, ir_node *last) {
  for (ir_node *n = last; n && !a->failed; n = n->prev) {
    if (n->num_results < 1 || n->op == IR_OP_param) continue;
    ir_value *y = n->results[0], *g = a->adjoint[y->id];
    if (!g) continue;
    if (a->pending[y->id] != 0) {
      char name[IR_ERR_LEN];
      return fail(a, "autodiff: internal error: %d contributions to %s missing", a->pending[y->id],
                  ir_value_format(y, name, sizeof name));
    }
    a->at = n;
    a->first_new = a->g->next_value_id;
    rules[n->op].fn(a, n, g);
  }
  return !a->failed;
}

/* One grad effect per param with an adjoint, in the params' order. */
static bool emit_grads(autodiff *a, ir_node *last) {
  for (ir_node *n = a->g->first; n; n = n->next) {
    if (n->op == IR_OP_param && a->adjoint[n->results[0]->id]) {
      a->at = n;
      ir_value *ins[2] = {n->results[0], a->adjoint[n->results[0]->id]};
      done(a, make(a, IR_OP_grad, NULL, 2, ins));
    }
    if (n == last) break;
  }
  return !a->failed;
}

bool ir_pass_autodiff(ir_graph *g, char *err, size_t errlen) {
  if (!g->training || already_differentiated(g)) return true;
  ir_value *loss = loss_output(g);
  if (!loss) {
    snprintf(err, errlen, "autodiff: the training graph has no output named \"loss\"");
    return false;
  }
  if (loss->type.dtype != IR_f32 || loss->type.rank != 0) return true;
  autodiff a;
  if (!setup(&a, g, err, errlen)) return false;
  if (!a.depends[loss->id]) return true; /* no param to train */
  if (!count_contributions(&a, loss)) return false;
  ir_node *last = g->last;
  a.at = loss->def;
  a.adjoint[loss->id] = constant(&a, dname(&a, loss, NULL), IR_f32, 1.0);
  return backward(&a, last) && emit_grads(&a, last);
}
