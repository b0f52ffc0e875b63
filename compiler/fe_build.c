/* fe_build.c: the spec's statements into a typed graph.
 *
 * Scopes map names to SSA values: assigning a name again binds the new
 * value (the IR value is renamed x, x.1, x.2, ... by the graph). Blocks
 * are expanded inline: a direct call `y: block(x)` prefixes the block's
 * parameter names with "y.", `repeat(block, n, x)` unrolls n iterations
 * prefixed "NODE.i." (or "NODE." for all of them when shared). Every node
 * is typed as it is made, so shape errors point at the expression that
 * caused them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/fe_build.h"

/* ---- scopes ---- */

static fe_binding *scope_find(fe_scope *s, const char *name) {
  for (int i = s->count - 1; i >= 0; i--)
    if (strcmp(s->items[i].name, name) == 0) return &s->items[i];
  return NULL;
}

static fe_binding *scope_bind(fe_builder *b, const char *name, ir_value *value, ir_loc loc) {
  fe_scope *s = b->scope;
  if (s->count == s->cap) {
    int cap = s->cap ? 2 * s->cap : 16;
    s->items = ir_arena_grow(b->arena, s->items, sizeof(fe_binding) * (size_t)s->cap,
                             sizeof(fe_binding) * (size_t)cap);
    s->cap = cap;
  }
  fe_binding *bind = &s->items[s->count++];
  bind->name = name;
  bind->value = value;
  bind->loc = loc;
  bind->holds_params = false;
  return bind;
}

const fe_block *fe_find_block(const fe_builder *b, const char *name) {
  for (int i = 0; i < b->spec->num_blocks; i++)
    if (strcmp(b->spec->blocks[i].name, name) == 0) return &b->spec->blocks[i];
  return NULL;
}

/* ---- "used before its definition" and cycles ---- */

static bool expr_mentions(const fe_expr *e, const char *name) {
  if (!e) return false;
  switch (e->kind) {
  case FE_EXPR_NAME: return strcmp(e->name, name) == 0;
  case FE_EXPR_BINARY: return expr_mentions(e->lhs, name) || expr_mentions(e->rhs, name);
  case FE_EXPR_NEG: return expr_mentions(e->lhs, name);
  case FE_EXPR_CALL:
  case FE_EXPR_LIST:
    for (int i = 0; i < e->num_args; i++)
      if (expr_mentions(e->args[i].value, name)) return true;
    return false;
  default: return false;
  }
}

/* Does statement `from` (index) depend, through statements defined later
 * in the scope, on the name `target`? Bounded by the statement count. */
static bool depends_on(const fe_scope *s, int from, const char *target, int budget) {
  if (budget <= 0) return false;
  const fe_expr *e = s->stmts[from].expr;
  if (expr_mentions(e, target)) return true;
  for (int j = from + 1; j < s->num_stmts; j++)
    if (expr_mentions(e, s->stmts[j].name) && depends_on(s, j, target, budget - 1)) return true;
  return false;
}

static void report_undefined(fe_builder *b, const fe_expr *e) {
  fe_scope *s = b->scope;
  for (int j = s->current + 1; j < s->num_stmts; j++) {
    if (strcmp(s->stmts[j].name, e->name) != 0) continue;
    const char *self = s->stmts[s->current].name;
    if (depends_on(s, j, self, s->num_stmts))
      diag_error(b->diag, e->loc, "cycle: '%s' uses '%s', which depends on '%s'", self,
                 e->name, self);
    else
      diag_error(b->diag, e->loc, "'%s' is used before its definition", e->name);
    diag_note(b->diag, s->stmts[j].name_loc, "'%s' is defined here", e->name);
    return;
  }
  const char *names[512];
  int n = 0;
  for (int i = 0; i < s->count && n < 512; i++) names[n++] = s->items[i].name;
  for (int i = 0; i < b->spec->num_dims && n < 512; i++) names[n++] = b->spec->dims[i].name;
  const char *hint = diag_suggest(e->name, names, n);
  if (hint)
    diag_error(b->diag, e->loc, "undefined name '%s'; did you mean '%s'?", e->name, hint);
  else
    diag_error(b->diag, e->loc, "undefined name '%s'", e->name);
}

/* ---- node creation ---- */

static const char *node_name(fe_builder *b, const fe_expr *at, ir_op op) {
  const char *stmt = b->stmt ? b->stmt->name : "t";
  if (b->stmt && at == b->stmt->expr) return ir_arena_printf(b->arena, "%s%s", b->scope->prefix, stmt);
  return ir_arena_printf(b->arena, "%s%s.%s", b->scope->prefix, stmt, ir_op_get(op)->name);
}

ir_node *fe_emit(fe_builder *b, const fe_expr *at, ir_op op, int n, ir_value *const *inputs) {
  ir_node *node = ir_node_new(b->graph, op, n, inputs, node_name(b, at, op));
  node->loc = at->loc;
  node->scope = b->scope->label;
  return node;
}

ir_value *fe_emit_const(fe_builder *b, const fe_expr *at, ir_dtype dtype, double value) {
  ir_type type = ir_type_make(dtype, 0, NULL);
  ir_node *node = ir_source_new(b->graph, IR_OP_const, type, node_name(b, at, IR_OP_const));
  ir_set_float(b->graph, node, "value", value);
  node->loc = at->loc;
  node->scope = b->scope->label;
  return node->results[0];
}

/* ---- expressions ---- */

typedef struct operand {
  ir_value *tensor; /* or a number: */
  bool is_number;
  double number;
} operand;

static bool eval_operand(fe_builder *b, const fe_expr *e, operand *out);

static ir_op binary_op(char op) {
  switch (op) {
  case '+': return IR_OP_add;
  case '-': return IR_OP_sub;
  case '*': return IR_OP_mul;
  case '/': return IR_OP_div;
  default: return IR_OP_matmul;
  }
}

static bool fold_numbers(fe_builder *b, const fe_expr *e, double l, double r, double *out) {
  switch (e->op) {
  case '+': *out = l + r; return true;
  case '-': *out = l - r; return true;
  case '*': *out = l * r; return true;
  case '/':
    if (r == 0) {
      diag_error(b->diag, e->loc, "division by zero");
      return false;
    }
    *out = l / r;
    return true;
  default: diag_error(b->diag, e->loc, "'@' needs tensors on both sides"); return false;
  }
}

static bool node_checked(fe_builder *b, ir_node *node, const fe_expr *at) {
  char err[IR_ERR_LEN];
  if (ir_node_infer(node, err, sizeof err)) return true;
  diag_error(b->diag, at->loc, "%s", err);
  ir_node_remove(b->graph, node);
  return false;
}

static bool eval_binary(fe_builder *b, const fe_expr *e, operand *out) {
  operand l, r;
  /* Both sides are evaluated so that each reports its own errors. */
  bool left_ok = eval_operand(b, e->lhs, &l);
  bool right_ok = eval_operand(b, e->rhs, &r);
  if (!left_ok || !right_ok) return false;
  if (l.is_number && r.is_number) {
    out->is_number = true;
    return fold_numbers(b, e, l.number, r.number, &out->number);
  }
  if (e->op == '@' && (l.is_number || r.is_number)) {
    diag_error(b->diag, e->loc, "'@' needs tensors on both sides");
    return false;
  }
  ir_value *lt = l.is_number ? fe_emit_const(b, e->lhs, r.tensor->type.dtype, l.number) : l.tensor;
  ir_value *rt = r.is_number ? fe_emit_const(b, e->rhs, l.tensor->type.dtype, r.number) : r.tensor;
  ir_value *ins[2] = {lt, rt};
  ir_node *node = fe_emit(b, e, binary_op(e->op), 2, ins);
  if (node->op == IR_OP_matmul) {
    ir_set_bool(b->graph, node, "transpose_a", false);
    ir_set_bool(b->graph, node, "transpose_b", false);
  }
  if (!node_checked(b, node, e)) return false;
  out->is_number = false;
  out->tensor = node->results[0];
  return true;
}

static bool eval_name(fe_builder *b, const fe_expr *e, operand *out) {
  /* Block bodies see their own names and arguments, not the caller's. */
  fe_binding *bind = scope_find(b->scope, e->name);
  if (bind) {
    if (!bind->value) return false; /* poisoned: already reported */
    out->is_number = false;
    out->tensor = bind->value;
    return true;
  }
  int64_t dim;
  if (fe_spec_dim(b->spec, e->name, &dim)) {
    out->is_number = true;
    out->number = (double)dim;
    return true;
  }
  if (fe_find_block(b, e->name)) {
    diag_error(b->diag, e->loc, "'%s' is a block; call it as %s(...) or use repeat(%s, n, ...)",
               e->name, e->name, e->name);
    return false;
  }
  report_undefined(b, e);
  return false;
}

static bool eval_operand(fe_builder *b, const fe_expr *e, operand *out) {
  out->tensor = NULL;
  out->is_number = false;
  switch (e->kind) {
  case FE_EXPR_NUMBER:
    out->is_number = true;
    out->number = e->is_integer ? (double)e->int_value : e->number;
    return true;
  case FE_EXPR_NAME: return eval_name(b, e, out);
  case FE_EXPR_BINARY: return eval_binary(b, e, out);
  case FE_EXPR_NEG: {
    operand inner;
    if (!eval_operand(b, e->lhs, &inner)) return false;
    if (inner.is_number) {
      *out = inner;
      out->number = -inner.number;
      return true;
    }
    ir_node *node = fe_emit(b, e, IR_OP_neg, 1, &inner.tensor);
    if (!node_checked(b, node, e)) return false;
    out->tensor = node->results[0];
    return true;
  }
  case FE_EXPR_CALL:
    out->tensor = fe_eval_call(b, e);
    return out->tensor != NULL;
  case FE_EXPR_STRING:
    diag_error(b->diag, e->loc, "a string is not a tensor");
    return false;
  case FE_EXPR_LIST:
    diag_error(b->diag, e->loc, "a list is not a tensor");
    return false;
  }
  return false;
}

ir_value *fe_eval_tensor(fe_builder *b, const fe_expr *e) {
  operand v;
  if (!eval_operand(b, e, &v)) return NULL;
  if (v.is_number) return fe_emit_const(b, e, IR_f32, v.number);
  return v.tensor;
}

/* ---- parameters ---- */

const char *fe_layer_prefix(fe_builder *b, const fe_call *call) {
  const char *prefix = b->scope->prefix;
  if (call->name_override)
    return ir_arena_printf(b->arena, "%s%s.", prefix, call->name_override->name);
  if (call->expr == b->outermost)
    return ir_arena_printf(b->arena, "%s%s.", prefix, b->stmt->name);
  fe_counter *c = NULL;
  for (int i = 0; i < b->num_counters; i++)
    if (strcmp(b->counters[i].op, call->op) == 0) c = &b->counters[i];
  if (!c && b->num_counters < 32) {
    c = &b->counters[b->num_counters++];
    c->op = call->op;
    c->count = 0;
  }
  int k = c ? c->count++ : 0;
  if (k == 0) return ir_arena_printf(b->arena, "%s%s.%s.", prefix, b->stmt->name, call->op);
  return ir_arena_printf(b->arena, "%s%s.%s_%d.", prefix, b->stmt->name, call->op, k);
}

ir_value *fe_make_param(fe_builder *b, const fe_call *call, const char *prefix, const char *suffix,
                        ir_op kind, ir_type type, const char *init, double a, double bb) {
  const char *name = ir_arena_printf(b->arena, "%s%s", prefix, suffix);
  ir_value *old = ir_graph_find(b->graph, name);
  if (old && (old->def->op == IR_OP_param || old->def->op == IR_OP_buffer)) {
    if (b->scope->shared && ir_type_equal(&old->type, &type)) return old;
    char t1[64], t2[64];
    if (b->scope->shared)
      diag_error(b->diag, call->expr->loc,
                 "shared parameter '%s' is %s here but %s in an earlier iteration", name,
                 ir_type_format(&type, t1, sizeof t1), ir_type_format(&old->type, t2, sizeof t2));
    else
      diag_error(b->diag, call->expr->loc, "parameter '%s' is already defined", name);
    if (old->def->loc.file) diag_note(b->diag, old->def->loc, "first defined here");
    return NULL;
  }
  /* A value that happens to hold the name gives it up: parameter names
   * are the contract with PyTorch, value names are ours. */
  if (old) ir_value_rename(b->graph, old, ir_graph_unique_name(b->graph, name));
  ir_node *node = ir_source_new(b->graph, kind, type, name);
  ir_set_str(b->graph, node, "init", init);
  if (strcmp(init, "normal") == 0 || strcmp(init, "uniform") == 0) {
    ir_set_float(b->graph, node, "a", a);
    ir_set_float(b->graph, node, "b", bb);
  }
  node->loc = call->expr->loc;
  node->scope = b->scope->label;
  b->params_made++;
  return node->results[0];
}

/* ---- statements ---- */

static const fe_expr *find_outermost_layer(const fe_builder *b, const fe_expr *e) {
  if (!e) return NULL;
  if (e->kind == FE_EXPR_CALL && fe_is_layer_call(b, e)) return e;
  if (e->kind == FE_EXPR_BINARY) {
    const fe_expr *l = find_outermost_layer(b, e->lhs);
    return l ? l : find_outermost_layer(b, e->rhs);
  }
  if (e->kind == FE_EXPR_NEG) return find_outermost_layer(b, e->lhs);
  if (e->kind == FE_EXPR_CALL || e->kind == FE_EXPR_LIST)
    for (int i = 0; i < e->num_args; i++) {
      const fe_expr *found = find_outermost_layer(b, e->args[i].value);
      if (found) return found;
    }
  return NULL;
}

static bool is_reserved_name(const fe_builder *b, const fe_stmt *st) {
  int64_t dim;
  ir_dtype dt;
  if (fe_spec_dim(b->spec, st->name, &dim)) {
    diag_error(b->diag, st->name_loc, "'%s' is a dim; a node cannot take its name", st->name);
    return true;
  }
  if (ir_dtype_parse(st->name, &dt) || fe_find_block(b, st->name)) {
    diag_error(b->diag, st->name_loc, "'%s' names a %s; a node cannot take its name", st->name,
               fe_find_block(b, st->name) ? "block" : "dtype");
    return true;
  }
  return false;
}

/* A name that holds parameters must be assigned once in its scope. */
static void check_holder_reuse(fe_builder *b, const fe_stmt *st, bool holds) {
  fe_scope *s = b->scope;
  for (int i = 0; i < s->count - 1; i++) {
    fe_binding *prev = &s->items[i];
    if (strcmp(prev->name, st->name) != 0) continue;
    if (!holds && !prev->holds_params) continue;
    if (holds)
      diag_error(b->diag, st->name_loc,
                 "'%s' holds parameters, so it needs a name of its own, but it is already assigned",
                 st->name);
    else
      diag_error(b->diag, st->name_loc,
                 "'%s' holds parameters and cannot be assigned again", st->name);
    diag_note(b->diag, prev->loc, "'%s' is first assigned here", st->name);
    return;
  }
}

static void build_stmt(fe_builder *b, const fe_stmt *st) {
  if (is_reserved_name(b, st)) {
    scope_bind(b, st->name, NULL, st->name_loc);
    return;
  }
  const fe_stmt *saved_stmt = b->stmt;
  const fe_expr *saved_outer = b->outermost;
  int saved_counters = b->num_counters, saved_made = b->params_made;
  b->stmt = st;
  b->outermost = find_outermost_layer(b, st->expr);
  b->num_counters = 0;
  b->params_made = 0;

  /* A layer op under a name already taken would make parameters whose
   * names collide: say so once, instead of once per parameter. */
  fe_binding *prev = b->outermost ? scope_find(b->scope, st->name) : NULL;
  ir_value *v = NULL;
  if (prev) {
    diag_error(b->diag, st->name_loc,
               "'%s' holds parameters, so it needs a name of its own, but it is already assigned",
               st->name);
    diag_note(b->diag, prev->loc, "'%s' is first assigned here", st->name);
  } else if (st->expr) {
    operand o;
    if (eval_operand(b, st->expr, &o)) {
      if (o.is_number)
        diag_error(b->diag, st->expr->loc, "'%s' is a number, not a tensor", st->name);
      else
        v = o.tensor;
    }
  }
  bool holds = b->params_made > 0;
  fe_binding *bind = scope_bind(b, st->name, v, st->name_loc);
  bind->holds_params = holds || prev;
  if (!prev) check_holder_reuse(b, st, holds);

  b->stmt = saved_stmt;
  b->outermost = saved_outer;
  b->num_counters = saved_counters;
  b->params_made = saved_made + b->params_made;
}

static void build_stmts(fe_builder *b, const fe_stmt *stmts, int n) {
  fe_scope *s = b->scope;
  s->stmts = stmts;
  s->num_stmts = n;
  for (int i = 0; i < n && !diag_full(b->diag); i++) {
    s->current = i;
    build_stmt(b, &stmts[i]);
  }
}

/* ---- blocks ---- */

ir_value *fe_call_block(fe_builder *b, const fe_block *block, const fe_expr *at,
                        const char *prefix, const char *label, bool shared, ir_value **args,
                        int num_args, ir_value **returns) {
  for (int i = 0; i < b->depth; i++) {
    if (strcmp(b->call_stack[i], block->name) != 0) continue;
    diag_error(b->diag, at->loc, "cycle: block '%s' calls itself", block->name);
    diag_note(b->diag, block->loc, "block '%s' is defined here", block->name);
    return NULL;
  }
  if (b->depth == 64) {
    diag_error(b->diag, at->loc, "blocks nested more than 64 deep");
    return NULL;
  }
  if (num_args != block->num_args) {
    diag_error(b->diag, at->loc, "block '%s' takes %d argument%s, but %d %s given", block->name,
               block->num_args, block->num_args == 1 ? "" : "s", num_args,
               num_args == 1 ? "is" : "are");
    diag_note(b->diag, block->loc, "block '%s' is defined here", block->name);
    return NULL;
  }
  fe_scope scope = {0};
  scope.prefix = prefix;
  size_t len = strlen(prefix);
  scope.label = label ? label : len ? ir_arena_strndup(b->arena, prefix, len - 1) : NULL;
  scope.shared = shared;

  fe_scope *saved = b->scope;
  b->call_stack[b->depth++] = block->name;
  b->scope = &scope;
  for (int i = 0; i < num_args; i++) scope_bind(b, block->args[i].name, args[i], block->args[i].loc);
  int errors = diag_error_count(b->diag);
  const fe_stmt *saved_stmt = b->stmt;
  build_stmts(b, block->body, block->num_body);
  b->stmt = saved_stmt;

  ir_value *first = NULL;
  bool ok = true;
  for (int i = 0; i < block->num_returns; i++) {
    fe_binding *r = scope_find(&scope, block->returns[i].name);
    if (!r) {
      diag_error(b->diag, block->returns[i].loc, "block '%s' returns '%s', which it does not define",
                 block->name, block->returns[i].name);
      ok = false;
      continue;
    }
    if (!r->value) ok = false;
    if (returns) returns[i] = r->value;
    if (i == 0) first = r->value;
  }
  b->scope = saved;
  b->depth--;
  if (!ok || diag_error_count(b->diag) > errors) return NULL;
  return first;
}

/* ---- outputs and training ---- */

static ir_value *top_value(fe_builder *b, const fe_name_ref *ref, const char *what) {
  fe_binding *bind = scope_find(b->scope, ref->name);
  if (bind) return bind->value; /* NULL if poisoned */
  for (int i = 0; i < b->spec->num_inputs; i++)
    if (strcmp(b->spec->inputs[i].name, ref->name) == 0) return NULL;
  const char *names[512];
  int n = 0;
  for (int i = 0; i < b->scope->count && n < 512; i++) names[n++] = b->scope->items[i].name;
  const char *hint = diag_suggest(ref->name, names, n);
  if (hint)
    diag_error(b->diag, ref->loc, "%s '%s' is not a node of the graph; did you mean '%s'?", what,
               ref->name, hint);
  else
    diag_error(b->diag, ref->loc, "%s '%s' is not a node of the graph", what, ref->name);
  return NULL;
}

static void add_output(fe_builder *b, ir_value *v, const char *name, ir_loc loc) {
  ir_node *node = ir_node_new(b->graph, IR_OP_output, 1, &v, NULL);
  ir_set_str(b->graph, node, "name", name);
  node->loc = loc;
}

static void build_outputs(fe_builder *b) {
  for (int i = 0; i < b->spec->num_outputs; i++) {
    const fe_name_ref *ref = &b->spec->outputs[i];
    for (int j = 0; j < i; j++)
      if (strcmp(b->spec->outputs[j].name, ref->name) == 0) {
        diag_error(b->diag, ref->loc, "output '%s' is listed twice", ref->name);
        diag_note(b->diag, b->spec->outputs[j].loc, "first listed here");
      }
    ir_value *v = top_value(b, ref, "output");
    if (v) add_output(b, v, ref->name, ref->loc);
  }
  if (!b->spec->has_train) return;
  const fe_name_ref *loss = &b->spec->train.loss;
  ir_value *v = top_value(b, loss, "loss");
  if (!v) return;
  char buf[96];
  if (v->type.rank != 0 || !ir_dtype_is_float(v->type.dtype)) {
    diag_error(b->diag, loss->loc, "loss '%s' must be a floating-point scalar, but it is %s",
               loss->name, ir_type_format(&v->type, buf, sizeof buf));
    return;
  }
  if (b->mode != FE_MODE_INFER) add_output(b, v, "loss", loss->loc);
}

/* ---- entry ---- */

ir_graph *fe_build_graph(ir_arena *arena, diag_engine *d, const fe_spec *spec, fe_mode mode) {
  int errors = diag_error_count(d);
  fe_builder b = {0};
  b.arena = arena;
  b.diag = d;
  b.spec = spec;
  b.mode = mode;
  b.graph = ir_graph_new(arena, spec->model);
  b.graph->training = mode == FE_MODE_TRAIN;
  b.graph->recompute_blocks = mode == FE_MODE_TRAIN && spec->has_train && spec->train.recompute_blocks;
  fe_scope top = {0};
  top.prefix = "";
  b.scope = &top;

  for (int i = 0; i < spec->num_inputs; i++) {
    const fe_input *in = &spec->inputs[i];
    ir_node *node = ir_source_new(b.graph, IR_OP_input, in->type, in->name);
    node->loc = in->loc;
    scope_bind(&b, in->name, node->results[0], in->loc);
  }
  build_stmts(&b, spec->graph, spec->num_graph);
  if (!diag_full(d)) build_outputs(&b);
  if (diag_error_count(d) > errors) return NULL;
  return b.graph;
}
