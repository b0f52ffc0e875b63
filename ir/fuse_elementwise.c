/* fuse_elementwise.c: chains of elementwise ops into fused_elementwise.
 *
 * Walking the graph in order, an elementwise node U (f32; not cast)
 * absorbs each input produced by another elementwise node P (or by an
 * earlier fused_elementwise) when U is P's only user and P has U's shape,
 * so P's result is never stored: one loop computes the whole tree. Scalar
 * constants become literals of the expression. A tree keeps at most
 * FUSE_MAX_LEAVES distinct inputs (the kernel's operand limit); beyond
 * that a producer stays a separate node. It runs after autodiff, so the
 * forward and the backward chains (activation gradients, norm backward,
 * residual adds of gradients, the optimizer-free update math) fuse alike.
 * The fused node takes U's name, location and scope. */
#include <stdio.h>
#include <string.h>

#include "ir.h"

enum { FUSE_MAX_LEAVES = 12, FUSE_MAX_ABSORBED = 256 };

typedef struct builder {
  ir_graph *g;
  const int *uses;
  const ir_type *shape; /* U's result type */
  ir_value *leaves[FUSE_MAX_LEAVES];
  int num_leaves;
  ir_node *absorbed[FUSE_MAX_ABSORBED];
  int num_absorbed;
  bool overflow;
} builder;

static bool fusable(const ir_node *n) {
  if (n->num_results != 1 || n->results[0]->type.dtype != IR_f32) return false;
  if (n->op == IR_OP_fused_elementwise) return true;
  if (!(ir_op_get(n->op)->flags & IR_OPF_ELEMENTWISE) || n->op == IR_OP_cast) return false;
  for (int i = 0; i < n->num_inputs; i++) {
    ir_dtype d = n->inputs[i]->type.dtype;
    if (d != IR_f32 && !(n->op == IR_OP_where && i == 0 && d == IR_u8)) return false;
  }
  return true;
}

static ir_fexpr *fexpr_new(builder *b, ir_fexpr_kind kind) {
  ir_fexpr *x = ir_arena_alloc(b->g->arena, sizeof *x);
  if (x) x->kind = kind;
  return x;
}

static ir_fexpr *leaf(builder *b, ir_value *v) {
  int i = 0;
  while (i < b->num_leaves && b->leaves[i] != v) i++;
  if (i == b->num_leaves) {
    if (i == FUSE_MAX_LEAVES) {
      b->overflow = true;
      return NULL;
    }
    b->leaves[b->num_leaves++] = v;
  }
  ir_fexpr *x = fexpr_new(b, IR_FEXPR_INPUT);
  if (x) x->input = i;
  return x;
}

static ir_fexpr *tree_of(builder *b, ir_node *n);

/* An input of a node being absorbed: a constant, an absorbed producer's
 * tree, or a leaf. */
static ir_fexpr *child(builder *b, ir_value *v) {
  ir_node *p = v->def;
  if (p->op == IR_OP_const && v->type.rank == 0 && v->type.dtype == IR_f32) {
    ir_fexpr *x = fexpr_new(b, IR_FEXPR_CONST);
    if (x) x->value = ir_get_float(p, "value", 0);
    return x;
  }
  if (fusable(p) && b->uses[v->id] == 1 && ir_type_equal(&v->type, b->shape) &&
      b->num_absorbed < FUSE_MAX_ABSORBED) {
    int leaves = b->num_leaves, absorbed = b->num_absorbed;
    b->absorbed[b->num_absorbed++] = p;
    ir_fexpr *x = tree_of(b, p);
    if (x || !b->overflow) return x;
    /* too many inputs below: keep p as a node of its own */
    b->overflow = false;
    b->num_leaves = leaves, b->num_absorbed = absorbed;
  }
  return leaf(b, v);
}

/* Substitutes the inputs of a parsed expression of node n. */
static ir_fexpr *substitute(builder *b, const ir_fexpr *x, ir_node *n) {
  if (x->kind == IR_FEXPR_INPUT) return child(b, n->inputs[x->input]);
  ir_fexpr *y = fexpr_new(b, x->kind);
  if (!y) return NULL;
  *y = *x;
  for (int i = 0; x->kind == IR_FEXPR_OP && i < x->num_args; i++)
    if (!(y->args[i] = substitute(b, x->args[i], n))) return NULL;
  return y;
}

static ir_fexpr *tree_of(builder *b, ir_node *n) {
  if (n->op == IR_OP_fused_elementwise) {
    ir_fexpr *x = ir_fexpr_parse(b->g->arena, ir_get_str(n, "expr", ""), n->num_inputs, NULL, 0);
    return x ? substitute(b, x, n) : NULL;
  }
  ir_fexpr *x = fexpr_new(b, IR_FEXPR_OP);
  if (!x) return NULL;
  x->op = n->op;
  x->num_args = n->num_inputs;
  for (int i = 0; i < n->num_inputs; i++)
    if (!(x->args[i] = child(b, n->inputs[i]))) return NULL;
  return x;
}

/* Replaces u (and what it absorbed) by one fused node; returns it, or u
 * when there is nothing to fuse. */
static ir_node *fuse_at(ir_graph *g, const int *uses, ir_node *u, char *err, size_t errlen) {
  builder b = {.g = g, .uses = uses, .shape = &u->results[0]->type};
  ir_fexpr *x = tree_of(&b, u);
  if (!x || b.num_absorbed == 0) return u;
  ir_node *f = ir_node_insert(g, u, IR_OP_fused_elementwise, b.num_leaves, b.leaves, NULL);
  const char *text = ir_fexpr_text(g->arena, x);
  if (!f || !text) {
    snprintf(err, errlen, "fuse_elementwise: out of memory");
    return NULL;
  }
  f->loc = u->loc;
  f->scope = u->scope;
  ir_set_str(g, f, "expr", text);
  char msg[IR_ERR_LEN];
  if (!ir_node_infer(f, msg, sizeof msg) || !ir_type_equal(&f->results[0]->type, b.shape)) {
    ir_node_remove(g, f); /* not expected: keep the graph as it was */
    return u;
  }
  ir_value *y = u->results[0];
  ir_replace_uses(g, y, f->results[0]);
  const char *name = y->name;
  ir_node_remove(g, u);
  for (int i = 0; i < b.num_absorbed; i++) ir_node_remove(g, b.absorbed[i]);
  ir_value_rename(g, f->results[0], name);
  return f;
}

bool ir_pass_fuse_elementwise(ir_graph *g, char *err, size_t errlen) {
  int nodes = 0;
  for (ir_node *n = g->first; n; n = n->next) nodes++;
  /* each fusion makes one value: room for them all */
  size_t cap = (size_t)g->next_value_id + (size_t)nodes + 1;
  int *uses = ir_arena_alloc(g->arena, cap * sizeof *uses);
  if (!uses) {
    snprintf(err, errlen, "fuse_elementwise: out of memory");
    return false;
  }
  for (ir_node *n = g->first; n; n = n->next)
    for (int i = 0; i < n->num_inputs; i++) uses[n->inputs[i]->id]++;
  for (ir_node *n = g->first; n; n = n->next) {
    if (!fusable(n)) continue;
    int before = uses[n->results[0]->id];
    ir_node *f = fuse_at(g, uses, n, err, errlen);
    if (!f) return false;
    if (f != n) {
      uses[f->results[0]->id] = before;
      for (int i = 0; i < f->num_inputs; i++) uses[f->inputs[i]->id] = ir_count_uses(g, f->inputs[i]);
      n = f;
    }
  }
  return true;
}
