/* recompute.c: `recompute: blocks`, activation checkpointing by block.
 *
 * In a training graph marked recompute=blocks (after autodiff), every
 * forward value computed inside a repeat iteration (scope "NAME.i") that
 * the backward reads is recomputed instead of kept: the iteration's
 * forward nodes that lead to it are cloned, from the values the iteration
 * received (its checkpoint: values of other scopes, params, inputs), and
 * placed just before the first backward node that reads the iteration's
 * activations; backward reads go to the clones. The originals then die
 * inside the forward, so the memory plan keeps one iteration's
 * activations at a time instead of all of them, for one more forward
 * pass of the blocks. Values that leave an iteration (its output, read by
 * the next one) and effects are never cloned; dropout masks are
 * recomputed (the same draw: the seed, stream and step are the same). */
#include <stdio.h>
#include <string.h>

#include "ir.h"

/* "layers.3": a repeat iteration's scope, NAME.DIGITS. */
static bool iteration_scope(const char *scope) {
  const char *dot = scope ? strrchr(scope, '.') : NULL;
  if (!dot || !dot[1]) return false;
  for (const char *c = dot + 1; *c; c++)
    if (*c < '0' || *c > '9') return false;
  return true;
}

typedef struct recompute {
  ir_graph *g;
  ir_value **clone;   /* by value id: its recomputed copy */
  bool *forward;      /* by node id: a forward node */
  bool *leaves;       /* by value id: used outside its own iteration's forward */
  int num_values;
  char *err;
  size_t errlen;
} recompute;

static bool same_scope(const ir_node *a, const ir_node *b) {
  return a->scope && b->scope && strcmp(a->scope, b->scope) == 0;
}

/* Whether v (a forward value) is recomputed rather than kept. */
static bool recomputable(const recompute *r, const ir_value *v) {
  const ir_node *n = v->def;
  if (!r->forward[n->id] || !iteration_scope(n->scope) || r->leaves[v->id]) return false;
  if (ir_op_get(n->op)->flags & IR_OPF_EFFECT) return false;
  return n->op != IR_OP_param && n->op != IR_OP_input && n->op != IR_OP_buffer &&
         n->op != IR_OP_const;
}

/* The copy of v, cloning its node (and what it needs) before `at`. */
static ir_value *clone_of(recompute *r, ir_value *v, ir_node *at) {
  if (!recomputable(r, v)) return v;
  if (v->id < r->num_values && r->clone[v->id]) return r->clone[v->id];
  ir_node *n = v->def;
  ir_value *ins[64];
  if (n->num_inputs > 64) return v;
  for (int i = 0; i < n->num_inputs; i++)
    if (!(ins[i] = clone_of(r, n->inputs[i], at))) return NULL;
  ir_node *c = ir_node_insert(r->g, at, n->op, n->num_inputs, ins,
                              ir_arena_printf(r->g->arena, "%s.re", n->results[0]->name));
  if (!c) return NULL;
  c->loc = n->loc;
  c->scope = n->scope;
  for (int i = 0; i < n->num_attrs; i++) {
    const ir_attr *a = &n->attrs[i];
    switch (a->kind) {
    case IR_ATTR_INT: ir_set_int(r->g, c, a->name, a->u.i); break;
    case IR_ATTR_FLOAT: ir_set_float(r->g, c, a->name, a->u.f); break;
    case IR_ATTR_BOOL: ir_set_bool(r->g, c, a->name, a->u.b); break;
    case IR_ATTR_STR: ir_set_str(r->g, c, a->name, a->u.s); break;
    case IR_ATTR_INTS: ir_set_ints(r->g, c, a->name, a->u.ints.n, a->u.ints.v); break;
    case IR_ATTR_FLOATS: ir_set_floats(r->g, c, a->name, a->u.floats.n, a->u.floats.v); break;
    }
  }
  if (ir_op_get(n->op)->flags & IR_OPF_SOURCE) {
    for (int i = 0; i < n->num_results; i++) c->results[i]->type = n->results[i]->type;
  } else {
    char msg[IR_ERR_LEN];
    if (!ir_node_infer(c, msg, sizeof msg)) {
      snprintf(r->err, r->errlen, "recompute: %s", msg);
      return NULL;
    }
  }
  for (int i = 0; i < n->num_results; i++) r->clone[n->results[i]->id] = c->results[i];
  return r->clone[v->id];
}

bool ir_pass_recompute(ir_graph *g, char *err, size_t errlen) {
  if (!g->training || !g->recompute_blocks) return true;
  /* the backward starts at the first node autodiff made: after the
   * forward's last node, which the seed %d.LOSS follows */
  ir_node *start = NULL;
  for (ir_node *n = g->first; n && !start; n = n->next)
    if (n->op == IR_OP_output && strcmp(ir_get_str(n, "name", ""), "loss") == 0) {
      const char *seed = ir_arena_printf(g->arena, "d.%s", n->inputs[0]->name);
      ir_value *s = ir_graph_find(g, seed);
      if (s) start = s->def;
    }
  if (!start) return true; /* nothing differentiated */
  recompute r = {.g = g, .num_values = g->next_value_id, .err = err, .errlen = errlen};
  size_t nodes = (size_t)g->next_node_id + 1, values = (size_t)g->next_value_id + 1;
  r.clone = ir_arena_alloc(g->arena, values * sizeof *r.clone);
  r.forward = ir_arena_alloc(g->arena, nodes * sizeof *r.forward);
  r.leaves = ir_arena_alloc(g->arena, values * sizeof *r.leaves);
  if (!r.clone || !r.forward || !r.leaves) {
    snprintf(err, errlen, "recompute: out of memory");
    return false;
  }
  for (ir_node *n = g->first; n != start; n = n->next) r.forward[n->id] = true;
  /* a value leaves its iteration when a forward node of another scope,
   * or an effect (output, assign), reads it */
  for (ir_node *n = g->first; n != start; n = n->next)
    for (int i = 0; i < n->num_inputs; i++) {
      ir_value *v = n->inputs[i];
      if (!same_scope(v->def, n) || (ir_op_get(n->op)->flags & IR_OPF_EFFECT)) r.leaves[v->id] = true;
    }
  /* where each iteration's recomputation goes: before the first backward
   * node that reads one of its activations */
  ir_node *last = g->last;
  for (ir_node *b = start; b; b = b->next) {
    for (int i = 0; i < b->num_inputs; i++) {
      ir_value *v = b->inputs[i];
      if (v->id >= r.num_values || !recomputable(&r, v)) continue;
      /* every activation of this iteration is cloned at its first use
       * in the backward; later ones reuse the clones */
      ir_value *c = clone_of(&r, v, b);
      if (!c) {
        if (!err[0]) snprintf(err, errlen, "recompute: out of memory");
        return false;
      }
      b->inputs[i] = c;
    }
    if (b == last) break;
  }
  return ir_pass_dce(g, err, errlen);
}
