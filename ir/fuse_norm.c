/* fuse_norm.c: layernorm and rmsnorm as one kernel each way.
 *
 * Before autodiff, the primitives that layernorm() expands to, or the
 * same written out in a spec,
 *   mu = mean x axes=[-1] keepdim      xc = sub x, mu
 *   var = mean (mul xc, xc) ...        rstd = rsqrt (add var, eps)
 *   y = add (mul (mul xc, rstd), w), b          (b optional)
 * and rmsnorm's (no mean: ms = mean (mul x, x), y = mul (mul x, r), w),
 * with every intermediate used only inside the pattern, become
 *   %y, %y.norm_mean, %y.norm_rstd = fused_norm %x, %w, %b eps=... rms=...
 * one pass per row (runtime/rt_norm.c) that keeps only mean and rstd per
 * row for the backward: no centered, squared or normalised tensor is
 * stored. Autodiff's rule is fused_norm_grad, one pass for d.x and one
 * for the weight and bias gradients. Multiplications and additions are
 * matched in either operand order; w and b must be [D].
 *
 * After autodiff (ir_pass_fuse_norm_residual, the same --no-fuse name):
 * d.x of a norm is usually summed with the residual stream's gradient
 * (add d.x_norm, d.rest); fused_norm_grad takes that as its sixth input
 * and adds it as it writes d.x, so the sum is not another pass.
 *
 * The residual add before a norm is left to fuse_elementwise, which puts
 * it in the preceding projection's bias epilogue (one pass writing the
 * residual stream, which the norm then reads); moving it into the norm
 * would read both operands there and write the stream anyway, more
 * traffic, not less. */
#include <stdio.h>
#include <string.h>

#include "ir.h"

static ir_node *def(const ir_value *v) { return v->def; }

/* n is op(a, b) in either order with a satisfying `want`: *other = b. */
static bool either(const ir_node *n, ir_op op, const ir_value *want, ir_value **other) {
  if (n->op != op || n->num_inputs != 2) return false;
  for (int s = 0; s < 2; s++)
    if (n->inputs[s] == want) {
      *other = n->inputs[1 - s];
      return true;
    }
  return false;
}

/* mean v axes=[-1] (or the last axis) keepdim=true */
static bool mean_last(const ir_value *m, const ir_value *v) {
  const ir_node *n = def(m);
  const int64_t *axes;
  if (n->op != IR_OP_mean || n->inputs[0] != v || !ir_get_bool(n, "keepdim", false)) return false;
  int count = ir_get_ints(n, "axes", &axes);
  return count == 1 && (axes[0] == -1 || axes[0] == v->type.rank - 1);
}

static bool used_once(const ir_graph *g, const ir_value *v, int times) {
  return ir_count_uses(g, v) == times;
}

/* A scalar f32 constant: its value. */
static bool scalar_const(const ir_value *v, double *value) {
  if (def(v)->op != IR_OP_const || v->type.rank != 0 || v->type.dtype != IR_f32) return false;
  *value = ir_get_float(def(v), "value", 0.0);
  return true;
}

/* rstd = rsqrt(add(mean(mul(c, c)), eps)) over c, intermediates used once. */
static bool rstd_of(const ir_graph *g, const ir_value *rstd, const ir_value *c, double *eps) {
  if (def(rstd)->op != IR_OP_rsqrt || !used_once(g, rstd, 1)) return false;
  ir_value *sum = def(rstd)->inputs[0], *var = NULL, *e;
  if (def(sum)->op != IR_OP_add || !used_once(g, sum, 1)) return false;
  for (int s = 0; s < 2 && !var; s++)
    if (scalar_const(def(sum)->inputs[1 - s], eps)) var = def(sum)->inputs[s];
  if (!var || !used_once(g, var, 1) || def(var)->op != IR_OP_mean) return false;
  ir_value *sq = def(var)->inputs[0];
  if (!mean_last(var, sq) || !used_once(g, sq, 1) || !either(def(sq), IR_OP_mul, c, &e) || e != c)
    return false;
  return true;
}

typedef struct norm_match {
  ir_value *x, *w, *b;
  double eps;
  bool rms;
} norm_match;

static bool vector_of(const ir_value *v, const ir_value *x) {
  return v->type.dtype == IR_f32 && v->type.rank == 1 && v->type.dims[0] == x->type.dims[x->type.rank - 1];
}

/* normed = mul(c, rstd): layernorm when c = sub(x, mean(x)), else rms over c. */
static bool match_normed(const ir_graph *g, const ir_value *normed, norm_match *m) {
  const ir_node *n = def(normed);
  if (n->op != IR_OP_mul || !used_once(g, normed, 1)) return false;
  for (int s = 0; s < 2; s++) {
    ir_value *c = n->inputs[s], *rstd = n->inputs[1 - s];
    const ir_node *cd = def(c);
    bool centered = cd->op == IR_OP_sub && mean_last(cd->inputs[1], cd->inputs[0]) &&
                    used_once(g, cd->inputs[1], 1) && used_once(g, c, 3);
    if (!rstd_of(g, rstd, c, &m->eps)) continue;
    m->rms = !centered;
    m->x = centered ? cd->inputs[0] : c;
    return m->x->type.dtype == IR_f32 && m->x->type.rank >= 1;
  }
  return false;
}

/* y = add(mul(normed, w), b) or y = mul(normed, w). */
static bool match(const ir_graph *g, const ir_node *y, norm_match *m) {
  memset(m, 0, sizeof *m);
  if (y->op == IR_OP_add) {
    for (int s = 0; s < 2; s++) {
      ir_value *scaled = y->inputs[s], *b = y->inputs[1 - s];
      if (def(scaled)->op != IR_OP_mul || !used_once(g, scaled, 1)) continue;
      norm_match inner;
      if (!match(g, def(scaled), &inner) || inner.b || !vector_of(b, inner.x)) continue;
      *m = inner;
      m->b = b;
      return true;
    }
    return false;
  }
  if (y->op != IR_OP_mul) return false;
  for (int s = 0; s < 2; s++)
    if (match_normed(g, y->inputs[s], m) && vector_of(y->inputs[1 - s], m->x)) {
      m->w = y->inputs[1 - s];
      return true;
    }
  return false;
}

bool ir_pass_fuse_norm(ir_graph *g, char *err, size_t errlen) {
  bool changed = false;
  char msg[IR_ERR_LEN];
  /* Last to first: the bias add is seen before the weight's mul. */
  for (ir_node *y = g->last; y; y = y->prev) {
    norm_match m;
    if ((y->op != IR_OP_add && y->op != IR_OP_mul) || !match(g, y, &m)) continue;
    ir_value *ins[3] = {m.x, m.w, m.b};
    ir_node *fused = ir_node_insert(g, y, IR_OP_fused_norm, m.b ? 3 : 2, ins, NULL);
    if (!fused) {
      snprintf(err, errlen, "fuse_norm: out of memory");
      return false;
    }
    fused->loc = y->loc, fused->scope = y->scope;
    ir_set_float(g, fused, "eps", m.eps);
    ir_set_bool(g, fused, "rms", m.rms);
    if (!ir_node_infer(fused, msg, sizeof msg)) {
      snprintf(err, errlen, "fuse_norm: internal error: %s", msg);
      return false;
    }
    ir_node_replace(g, y, fused);
    const char *name = fused->results[0]->name;
    ir_value_rename(g, fused->results[1], ir_arena_printf(g->arena, "%s.norm_mean", name));
    ir_value_rename(g, fused->results[2], ir_arena_printf(g->arena, "%s.norm_rstd", name));
    y = fused;
    changed = true;
  }
  return !changed || ir_pass_dce(g, err, errlen);
}

/* Whether a node in [from, to) reads v. */
static bool read_between(const ir_node *from, const ir_node *to, const ir_value *v) {
  for (const ir_node *n = from; n && n != to; n = n->next)
    for (int i = 0; i < n->num_inputs; i++)
      if (n->inputs[i] == v) return true;
  return false;
}

/* Whether a comes before b in the graph. */
static bool precedes(const ir_node *a, const ir_node *b) {
  for (const ir_node *n = a; n; n = n->next)
    if (n == b) return true;
  return false;
}

/* add(d.x of a fused_norm_grad without dr, other), that d.x used only by
 * the add and other of its type: a fused_norm_grad with dr = other
 * replaces both. It is placed after the later of the old grad and
 * other's definition, when nothing in between reads the old grad's
 * weight and bias gradients. */
bool ir_pass_fuse_norm_residual(ir_graph *g, char *err, size_t errlen) {
  char msg[IR_ERR_LEN];
  for (ir_node *add = g->first; add; add = add->next) {
    if (add->op != IR_OP_add) continue;
    for (int s = 0; s < 2; s++) {
      ir_value *dx = add->inputs[s], *other = add->inputs[1 - s];
      ir_node *grad = def(dx);
      if (grad->op != IR_OP_fused_norm_grad || grad->num_inputs != 5 || dx != grad->results[0] ||
          other == dx || !ir_type_equal(&other->type, &dx->type) ||
          !ir_type_equal(&add->results[0]->type, &dx->type) || !used_once(g, dx, 1))
        continue;
      ir_node *last = precedes(grad, other->def) ? other->def : grad;
      if (read_between(grad->next, last->next, grad->results[1]) ||
          read_between(grad->next, last->next, grad->results[2]))
        continue;
      ir_value *ins[6];
      for (int i = 0; i < 5; i++) ins[i] = grad->inputs[i];
      ins[5] = other;
      ir_node *fused = ir_node_insert(g, last->next, IR_OP_fused_norm_grad, 6, ins, NULL);
      if (!fused) {
        snprintf(err, errlen, "fuse_norm: out of memory");
        return false;
      }
      fused->loc = grad->loc, fused->scope = grad->scope;
      ir_set_float(g, fused, "eps", ir_get_float(grad, "eps", 1e-5));
      ir_set_bool(g, fused, "rms", ir_get_bool(grad, "rms", false));
      if (!ir_node_infer(fused, msg, sizeof msg)) {
        snprintf(err, errlen, "fuse_norm: internal error: %s", msg);
        return false;
      }
      const char *names[3] = {add->results[0]->name, grad->results[1]->name, grad->results[2]->name};
      ir_replace_uses(g, add->results[0], fused->results[0]);
      for (int i = 1; i < 3; i++) ir_replace_uses(g, grad->results[i], fused->results[i]);
      ir_node_remove(g, add);
      ir_node_remove(g, grad);
      for (int i = 0; i < 3; i++) ir_value_rename(g, fused->results[i], names[i]);
      add = fused;
      break;
    }
  }
  return true;
}
