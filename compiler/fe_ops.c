/* fe_ops.c: the spec language's ops: signatures, argument binding, and
 * one emitter per op that makes the IR nodes (a layer op node with its
 * parameters, or primitives directly).
 *
 * Parameter initialisation follows PyTorch's module defaults (Linear and
 * Conv: uniform in +-1/sqrt(fan_in) for weight and bias; norms: ones and
 * zeros), except embeddings and learned positions, which use
 * normal(0, 0.02) as GPT-2 does, because N(0, 1) makes a tied head start
 * with huge logits. Loaded weights override all of it. */
#include <math.h>
#include <string.h>

#include "compiler/fe_build.h"

typedef ir_value *(*emit_fn)(fe_builder *b, const fe_call *call);

typedef struct op_entry {
  const char *name;
  const char *usage;           /* for messages: "linear(x, out, bias=true, ...)" */
  const char *params[FE_MAX_ARGS]; /* positional order; NULL-terminated */
  int required;                /* the first `required` params must be given */
  bool variadic;               /* extra positionals go to call->rest */
  bool layer;                  /* creates parameters */
  emit_fn emit;
} op_entry;

/* ---- argument access ---- */

static int param_index(const fe_call *call, const char *name) {
  for (int i = 0; i < call->num_params; i++)
    if (strcmp(call->params[i], name) == 0) return i;
  return -1;
}

bool fe_arg_present(const fe_call *call, const char *name) { return fe_arg_expr(call, name) != NULL; }

const fe_expr *fe_arg_expr(const fe_call *call, const char *name) {
  int i = param_index(call, name);
  return i < 0 ? NULL : call->args[i];
}

/* A constant number: literals, dims, + - * / and negation. */
static bool const_number(fe_builder *b, const fe_expr *e, double *out) {
  int64_t dim;
  double l, r;
  switch (e->kind) {
  case FE_EXPR_NUMBER: *out = e->is_integer ? (double)e->int_value : e->number; return true;
  case FE_EXPR_NAME:
    if (fe_spec_dim(b->spec, e->name, &dim)) {
      *out = (double)dim;
      return true;
    }
    diag_error(b->diag, e->loc, "expected a number, found '%s'", e->name);
    return false;
  case FE_EXPR_NEG:
    if (!const_number(b, e->lhs, &l)) return false;
    *out = -l;
    return true;
  case FE_EXPR_BINARY:
    if (e->op == '@' || !const_number(b, e->lhs, &l) || !const_number(b, e->rhs, &r)) {
      if (e->op == '@') diag_error(b->diag, e->loc, "expected a number");
      return false;
    }
    if (e->op == '/' && r == 0) {
      diag_error(b->diag, e->loc, "division by zero");
      return false;
    }
    *out = e->op == '+' ? l + r : e->op == '-' ? l - r : e->op == '*' ? l * r : l / r;
    return true;
  default: diag_error(b->diag, e->loc, "expected a number"); return false;
  }
}

bool fe_arg_int(fe_builder *b, const fe_call *call, const char *name, int64_t def, int64_t *out) {
  const fe_expr *e = fe_arg_expr(call, name);
  if (!e) {
    *out = def;
    return true;
  }
  return fe_eval_int(b->diag, b->spec, e, out);
}

bool fe_arg_float(fe_builder *b, const fe_call *call, const char *name, double def, double *out) {
  const fe_expr *e = fe_arg_expr(call, name);
  if (!e) {
    *out = def;
    return true;
  }
  return const_number(b, e, out);
}

bool fe_arg_bool(fe_builder *b, const fe_call *call, const char *name, bool def, bool *out) {
  const fe_expr *e = fe_arg_expr(call, name);
  if (!e) {
    *out = def;
    return true;
  }
  if (e->kind == FE_EXPR_NAME && (!strcmp(e->name, "true") || !strcmp(e->name, "false"))) {
    *out = e->name[0] == 't';
    return true;
  }
  diag_error(b->diag, e->loc, "'%s' expects true or false", name);
  return false;
}

bool fe_arg_word(fe_builder *b, const fe_call *call, const char *name, const char *def,
                 const char *const *allowed, int num_allowed, const char **out) {
  const fe_expr *e = fe_arg_expr(call, name);
  if (!e) {
    *out = def;
    return true;
  }
  if (e->kind == FE_EXPR_NAME)
    for (int i = 0; i < num_allowed; i++)
      if (strcmp(e->name, allowed[i]) == 0) {
        *out = allowed[i];
        return true;
      }
  char list[256] = "";
  for (int i = 0; i < num_allowed; i++) {
    strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
    strncat(list, allowed[i], sizeof list - strlen(list) - 1);
  }
  diag_error(b->diag, e->loc, "'%s' expects one of: %s", name, list);
  return false;
}

/* An int, or a list of ints (kernel=3, kernel=[3, 3]); up to max. */
static int arg_ints(fe_builder *b, const fe_call *call, const char *name, int64_t def,
                    int64_t *out, int max) {
  const fe_expr *e = fe_arg_expr(call, name);
  if (!e) {
    out[0] = def;
    return 1;
  }
  if (e->kind != FE_EXPR_LIST) return fe_eval_int(b->diag, b->spec, e, &out[0]) ? 1 : -1;
  if (e->num_args > max || e->num_args == 0) {
    diag_error(b->diag, e->loc, "'%s' expects 1 to %d integers, got %d", name, max, e->num_args);
    return -1;
  }
  for (int i = 0; i < e->num_args; i++)
    if (!fe_eval_int(b->diag, b->spec, e->args[i].value, &out[i])) return -1;
  return e->num_args;
}

static ir_value *arg_tensor(fe_builder *b, const fe_call *call, const char *name) {
  return fe_eval_tensor(b, fe_arg_expr(call, name));
}

static ir_loc arg_loc(const fe_call *call, const char *name) {
  const fe_expr *e = fe_arg_expr(call, name);
  return e ? e->loc : call->expr->loc;
}

/* ---- helpers for emitters ---- */

static ir_value *finish(fe_builder *b, const fe_call *call, ir_node *node) {
  char err[IR_ERR_LEN];
  if (ir_node_infer(node, err, sizeof err)) return node->results[0];
  diag_error(b->diag, call->expr->loc, "%s", err);
  ir_node_remove(b->graph, node);
  return NULL;
}

static ir_type type_of(ir_dtype dtype, int rank, int64_t d0, int64_t d1) {
  int64_t dims[2] = {d0, d1};
  return ir_type_make(dtype, rank, dims);
}

static bool require_float(fe_builder *b, const fe_call *call, ir_value *x, const char *what) {
  char buf[96];
  if (ir_dtype_is_float(x->type.dtype)) return true;
  diag_error(b->diag, call->expr->loc, "%s expects a floating-point tensor, got %s", what,
             ir_type_format(&x->type, buf, sizeof buf));
  return false;
}

static bool require_rank(fe_builder *b, const fe_call *call, ir_value *x, int lo, int hi,
                         const char *what) {
  char buf[96];
  if (x->type.rank >= lo && x->type.rank <= hi) return true;
  if (lo == hi)
    diag_error(b->diag, call->expr->loc, "%s expects a tensor of rank %d, got %s", what, lo,
               ir_type_format(&x->type, buf, sizeof buf));
  else
    diag_error(b->diag, call->expr->loc, "%s expects a tensor of rank %d to %d, got %s", what, lo,
               hi, ir_type_format(&x->type, buf, sizeof buf));
  return false;
}

static bool require_positive(fe_builder *b, const fe_call *call, const char *name, int64_t v) {
  if (v > 0) return true;
  diag_error(b->diag, arg_loc(call, name), "'%s' must be positive, got %lld", name, (long long)v);
  return false;
}

static int64_t last_dim(const ir_value *x) { return x->type.rank ? x->type.dims[x->type.rank - 1] : 1; }

/* Parameters of a linear map [out, in] with PyTorch's default init. */
static ir_value *linear_weight(fe_builder *b, const fe_call *call, const char *prefix,
                               const char *name, int64_t out, int64_t in) {
  double bound = 1.0 / sqrt((double)in);
  return fe_make_param(b, call, prefix, name, IR_OP_param, type_of(IR_f32, 2, out, in),
                       "uniform", -bound, bound);
}

static ir_value *vector_param(fe_builder *b, const fe_call *call, const char *prefix,
                              const char *name, int64_t n, const char *init, double bound) {
  return fe_make_param(b, call, prefix, name, IR_OP_param, type_of(IR_f32, 1, n, 0), init,
                       -bound, bound);
}

static ir_node *layer_node(fe_builder *b, const fe_call *call, ir_op op, int n,
                           ir_value *const *inputs) {
  for (int i = 0; i < n; i++)
    if (!inputs[i]) return NULL;
  return fe_emit(b, call->expr, op, n, inputs);
}

/* ---- elementwise and simple ops ---- */

static ir_op unary_op_of(const char *name) {
  ir_op op = IR_OP_relu;
  ir_op_lookup(name, &op);
  return op;
}

static ir_value *emit_unary(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  if (!x) return NULL;
  if (!require_float(b, call, x, call->op)) return NULL;
  return finish(b, call, fe_emit(b, call->expr, unary_op_of(call->op), 1, &x));
}

static ir_value *emit_softmax(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  int64_t axis;
  if (!x || !fe_arg_int(b, call, "axis", -1, &axis)) return NULL;
  if (!require_float(b, call, x, call->op)) return NULL;
  ir_node *node = fe_emit(b, call->expr, unary_op_of(call->op), 1, &x);
  ir_set_int(b->graph, node, "axis", axis);
  return finish(b, call, node);
}

static ir_value *emit_reduce(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  int64_t axes[IR_MAX_RANK];
  bool keepdim;
  if (!x) return NULL;
  int n = arg_ints(b, call, "axis", 0, axes, IR_MAX_RANK);
  if (n < 0 || !fe_arg_bool(b, call, "keepdim", false, &keepdim)) return NULL;
  ir_node *node = fe_emit(b, call->expr, unary_op_of(call->op), 1, &x);
  ir_set_ints(b->graph, node, "axes", n, axes);
  ir_set_bool(b->graph, node, "keepdim", keepdim);
  return finish(b, call, node);
}

static ir_value *emit_dropout(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  double p;
  if (!x || !fe_arg_float(b, call, "p", 0, &p)) return NULL;
  if (p < 0 || p >= 1) {
    diag_error(b->diag, arg_loc(call, "p"), "dropout probability must be in [0, 1), got %g", p);
    return NULL;
  }
  ir_node *node = fe_emit(b, call->expr, IR_OP_dropout, 1, &x);
  ir_set_float(b->graph, node, "p", p);
  ir_set_bool(b->graph, node, "training", b->mode == FE_MODE_TRAIN);
  ir_set_int(b->graph, node, "stream", b->dropout_streams++);
  return finish(b, call, node);
}

/* reshape(x, [..]) with one -1 inferred. */
static bool resolve_shape(fe_builder *b, const fe_call *call, ir_value *x, const fe_expr *list,
                          int64_t *dims, int *rank) {
  if (list->kind != FE_EXPR_LIST || list->num_args > IR_MAX_RANK) {
    diag_error(b->diag, list->loc, "expected a list of at most %d dims, like [B, T, D]",
               IR_MAX_RANK);
    return false;
  }
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < list->num_args; i++) {
    if (!fe_eval_int(b->diag, b->spec, list->args[i].value, &dims[i])) return false;
    if (dims[i] == -1 && infer < 0) {
      infer = i;
      continue;
    }
    if (dims[i] <= 0) {
      diag_error(b->diag, list->args[i].value->loc, "dim must be positive or a single -1, got %lld",
                 (long long)dims[i]);
      return false;
    }
    known *= dims[i];
  }
  *rank = list->num_args;
  int64_t numel = ir_type_numel(&x->type);
  char buf[96];
  if (infer >= 0) {
    if (numel % known != 0) {
      diag_error(b->diag, call->expr->loc, "cannot reshape %s: %lld elements do not divide by %lld",
                 ir_type_format(&x->type, buf, sizeof buf), (long long)numel, (long long)known);
      return false;
    }
    dims[infer] = numel / known;
  }
  return true;
}

static ir_value *reshape_to(fe_builder *b, const fe_call *call, ir_value *x, int rank,
                            const int64_t *dims) {
  ir_node *node = fe_emit(b, call->expr, IR_OP_reshape, 1, &x);
  ir_set_ints(b->graph, node, "shape", rank, dims);
  return finish(b, call, node);
}

static ir_value *emit_reshape(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  int64_t dims[IR_MAX_RANK];
  int rank;
  if (!x || !resolve_shape(b, call, x, fe_arg_expr(call, "shape"), dims, &rank)) return NULL;
  return reshape_to(b, call, x, rank, dims);
}

static ir_value *emit_flatten(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  int64_t start;
  if (!x || !fe_arg_int(b, call, "start", 1, &start)) return NULL;
  int rank = x->type.rank;
  if (start < 0) start += rank;
  if (start < 0 || start >= rank) {
    diag_error(b->diag, arg_loc(call, "start"), "flatten start %lld is out of range for rank %d",
               (long long)start, rank);
    return NULL;
  }
  int64_t dims[IR_MAX_RANK];
  for (int i = 0; i < start; i++) dims[i] = x->type.dims[i];
  dims[start] = 1;
  for (int i = (int)start; i < rank; i++) dims[start] *= x->type.dims[i];
  return reshape_to(b, call, x, (int)start + 1, dims);
}

static ir_value *permute_to(fe_builder *b, const fe_call *call, ir_value *x, int n,
                            const int64_t *perm) {
  ir_node *node = fe_emit(b, call->expr, IR_OP_permute, 1, &x);
  ir_set_ints(b->graph, node, "perm", n, perm);
  return finish(b, call, node);
}

static ir_value *emit_transpose(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  int64_t a, c;
  if (!x || !fe_arg_int(b, call, "a", 0, &a) || !fe_arg_int(b, call, "b", 0, &c)) return NULL;
  int rank = x->type.rank;
  if (a < 0) a += rank;
  if (c < 0) c += rank;
  if (a < 0 || a >= rank || c < 0 || c >= rank) {
    diag_error(b->diag, call->expr->loc, "transpose axes out of range for rank %d", rank);
    return NULL;
  }
  int64_t perm[IR_MAX_RANK];
  for (int i = 0; i < rank; i++) perm[i] = i;
  perm[a] = c;
  perm[c] = a;
  return permute_to(b, call, x, rank, perm);
}

static ir_value *emit_permute(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  int64_t perm[IR_MAX_RANK];
  if (!x) return NULL;
  const fe_expr *list = fe_arg_expr(call, "dims");
  if (list->kind != FE_EXPR_LIST || list->num_args > IR_MAX_RANK) {
    diag_error(b->diag, list->loc, "permute expects a list of axes, like [0, 2, 1]");
    return NULL;
  }
  for (int i = 0; i < list->num_args; i++) {
    if (!fe_eval_int(b->diag, b->spec, list->args[i].value, &perm[i])) return NULL;
    if (perm[i] < 0) perm[i] += x->type.rank;
  }
  return permute_to(b, call, x, list->num_args, perm);
}

static ir_value *emit_concat(fe_builder *b, const fe_call *call) {
  ir_value *ins[FE_MAX_ARGS];
  int64_t axis;
  bool ok = fe_arg_int(b, call, "axis", 1, &axis);
  for (int i = 0; i < call->num_rest; i++) ok = (ins[i] = fe_eval_tensor(b, call->rest[i])) && ok;
  if (!ok) return NULL;
  if (call->num_rest < 2) {
    diag_error(b->diag, call->expr->loc, "concat needs at least two tensors");
    return NULL;
  }
  ir_node *node = fe_emit(b, call->expr, IR_OP_concat, call->num_rest, ins);
  ir_set_int(b->graph, node, "axis", axis);
  return finish(b, call, node);
}

static ir_value *emit_slice(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  int64_t axis, start, end;
  if (!x || !fe_arg_int(b, call, "axis", 0, &axis) || !fe_arg_int(b, call, "start", 0, &start) ||
      !fe_arg_int(b, call, "end", 0, &end))
    return NULL;
  int rank = x->type.rank;
  if (axis < 0) axis += rank;
  if (axis >= 0 && axis < rank) {
    /* Python-style negative indices; end past the dim is clamped. */
    int64_t dim = x->type.dims[axis];
    if (start < 0) start += dim;
    if (end < 0) end += dim;
    if (end > dim) end = dim;
  }
  ir_node *node = fe_emit(b, call->expr, IR_OP_slice, 1, &x);
  ir_set_int(b->graph, node, "axis", axis);
  ir_set_int(b->graph, node, "start", start);
  ir_set_int(b->graph, node, "end", end);
  return finish(b, call, node);
}

static ir_value *emit_upsample(fe_builder *b, const fe_call *call) {
  static const char *const modes[] = {"nearest", "bilinear"};
  ir_value *x = arg_tensor(b, call, "x");
  int64_t scale;
  const char *mode;
  if (!x || !fe_arg_int(b, call, "scale", 2, &scale) ||
      !fe_arg_word(b, call, "mode", "nearest", modes, 2, &mode))
    return NULL;
  if (!require_positive(b, call, "scale", scale)) return NULL;
  ir_node *node = fe_emit(b, call->expr, IR_OP_upsample, 1, &x);
  ir_set_int(b->graph, node, "scale", scale);
  ir_set_str(b->graph, node, "mode", mode);
  return finish(b, call, node);
}

static void expand_pair(int n, int64_t *v) {
  if (n == 1) v[1] = v[0];
}

static ir_value *emit_pool(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  int64_t kernel[2], stride[2], padding[2];
  if (!x) return NULL;
  int nk = arg_ints(b, call, "kernel", 0, kernel, 2);
  if (nk < 0) return NULL;
  expand_pair(nk, kernel);
  int ns = fe_arg_present(call, "stride") ? arg_ints(b, call, "stride", 0, stride, 2) : 2;
  if (ns < 0) return NULL;
  if (!fe_arg_present(call, "stride")) memcpy(stride, kernel, sizeof stride);
  expand_pair(ns, stride);
  int np = arg_ints(b, call, "padding", 0, padding, 2);
  if (np < 0) return NULL;
  expand_pair(np, padding);
  if (!require_rank(b, call, x, 4, 4, call->op)) return NULL;
  bool is_max = strcmp(call->op, "maxpool2d") == 0;
  ir_node *node = fe_emit(b, call->expr, is_max ? IR_OP_maxpool : IR_OP_avgpool, 1, &x);
  ir_set_ints(b->graph, node, "kernel", 2, kernel);
  ir_set_ints(b->graph, node, "stride", 2, stride);
  ir_set_ints(b->graph, node, "padding", 2, padding);
  return finish(b, call, node);
}

/* global_avgpool(x [N,C,H,W]) -> [N,C]: mean over the spatial dims. */
static ir_value *emit_global_avgpool(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  if (!x || !require_rank(b, call, x, 3, 4, "global_avgpool")) return NULL;
  int64_t axes[2] = {2, 3};
  ir_node *node = fe_emit(b, call->expr, IR_OP_mean, 1, &x);
  ir_set_ints(b->graph, node, "axes", x->type.rank - 2, axes);
  ir_set_bool(b->graph, node, "keepdim", false);
  return finish(b, call, node);
}

/* causal_mask(T), and window_mask(T, window, global=0, causal=true): a
 * [T, T] u8 mask source with the attention layer's mask semantics. */
static ir_value *emit_causal_mask(fe_builder *b, const fe_call *call) {
  int64_t t, window = 0, global = 0;
  bool causal = true, windowed = strcmp(call->op, "window_mask") == 0;
  if (!fe_arg_int(b, call, "T", 0, &t) || !require_positive(b, call, "T", t)) return NULL;
  if (windowed && (!fe_arg_int(b, call, "window", 0, &window) ||
                   !require_positive(b, call, "window", window) ||
                   !fe_arg_int(b, call, "global", 0, &global) ||
                   !fe_arg_bool(b, call, "causal", true, &causal)))
    return NULL;
  if (global < 0) {
    diag_error(b->diag, call->expr->loc, "global must be non-negative, got %lld", (long long)global);
    return NULL;
  }
  ir_node *node = ir_source_new(b->graph, IR_OP_mask, type_of(IR_u8, 2, t, t),
                                ir_arena_printf(b->arena, "%s%s", b->scope->prefix,
                                                call->expr == b->stmt->expr ? b->stmt->name
                                                    : ir_arena_printf(b->arena, "%s.mask",
                                                                      b->stmt->name)));
  ir_set_bool(b->graph, node, "causal", causal);
  ir_set_int(b->graph, node, "window", window);
  ir_set_int(b->graph, node, "global", global);
  node->loc = call->expr->loc;
  node->scope = b->scope->label;
  return node->results[0];
}

static ir_value *emit_where(fe_builder *b, const fe_call *call) {
  ir_value *m = arg_tensor(b, call, "mask");
  ir_value *x = arg_tensor(b, call, "a");
  ir_value *y = arg_tensor(b, call, "b");
  if (!m || !x || !y) return NULL;
  /* A number on one side takes the other side's dtype. */
  ir_value *ins[3] = {m, x, y};
  ir_node *node = fe_emit(b, call->expr, IR_OP_where, 3, ins);
  return finish(b, call, node);
}

static ir_value *emit_loss(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, call->params[0]);
  ir_value *y = arg_tensor(b, call, call->params[1]);
  int64_t ignore = -100;
  if (!x || !y) return NULL;
  ir_op op = IR_OP_mse;
  if (strcmp(call->op, "cross_entropy") == 0) {
    op = IR_OP_cross_entropy;
    if (!fe_arg_int(b, call, "ignore_index", -100, &ignore)) return NULL;
  } else if (strcmp(call->op, "bce_logits") == 0) {
    op = IR_OP_bce_logits;
  }
  ir_value *ins[2] = {x, y};
  ir_node *node = fe_emit(b, call->expr, op, 2, ins);
  if (op == IR_OP_cross_entropy) ir_set_int(b->graph, node, "ignore_index", ignore);
  return finish(b, call, node);
}

/* ---- layer ops ---- */

static ir_value *emit_linear(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  int64_t out, rank;
  bool bias;
  if (!x || !fe_arg_int(b, call, "out", 0, &out) || !fe_arg_bool(b, call, "bias", true, &bias) ||
      !fe_arg_int(b, call, "rank", 0, &rank))
    return NULL;
  if (!require_positive(b, call, "out", out) || !require_float(b, call, x, "linear")) return NULL;
  if (rank < 0) {
    diag_error(b->diag, arg_loc(call, "rank"), "'rank' must be 0 or positive, got %lld",
               (long long)rank);
    return NULL;
  }
  const char *prefix = fe_layer_prefix(b, call);
  int64_t in = last_dim(x);
  ir_value *ins[4] = {x};
  int n = 1;
  const fe_expr *tied = fe_arg_expr(call, "tied");
  if (tied) {
    if (rank > 0) {
      diag_error(b->diag, tied->loc, "'tied' and 'rank' cannot be used together");
      return NULL;
    }
    if (tied->kind != FE_EXPR_NAME) {
      diag_error(b->diag, tied->loc, "'tied' expects the name of a node that holds a weight");
      return NULL;
    }
    const char *wname = ir_arena_printf(b->arena, "%s%s.weight", b->scope->prefix, tied->name);
    ir_value *w = ir_graph_find(b->graph, wname);
    if (!w || w->def->op != IR_OP_param) {
      diag_error(b->diag, tied->loc, "'%s' holds no weight to tie to", tied->name);
      return NULL;
    }
    char buf[96];
    if (w->type.rank != 2 || w->type.dims[0] != out || w->type.dims[1] != in) {
      diag_error(b->diag, tied->loc, "tied weight '%s' is %s, but this linear needs f32[%lld,%lld]",
                 wname, ir_type_format(&w->type, buf, sizeof buf), (long long)out, (long long)in);
      return NULL;
    }
    ins[n++] = w;
  } else if (rank > 0) {
    ins[n++] = linear_weight(b, call, prefix, "down.weight", rank, in);
    ins[n++] = linear_weight(b, call, prefix, "up.weight", out, rank);
  } else {
    ins[n++] = linear_weight(b, call, prefix, "weight", out, in);
  }
  if (bias) ins[n++] = vector_param(b, call, prefix, "bias", out, "uniform", 1.0 / sqrt((double)in));
  ir_node *node = layer_node(b, call, IR_OP_linear, n, ins);
  if (!node) return NULL;
  ir_set_bool(b->graph, node, "bias", bias);
  ir_set_int(b->graph, node, "rank", rank);
  return finish(b, call, node);
}

static ir_value *emit_embedding(fe_builder *b, const fe_call *call) {
  ir_value *ids = arg_tensor(b, call, "ids");
  int64_t num, dim;
  if (!ids || !fe_arg_int(b, call, "num", 0, &num) || !fe_arg_int(b, call, "dim", 0, &dim))
    return NULL;
  if (!require_positive(b, call, "num", num) || !require_positive(b, call, "dim", dim)) return NULL;
  ir_value *w = fe_make_param(b, call, fe_layer_prefix(b, call), "weight", IR_OP_param,
                              type_of(IR_f32, 2, num, dim), "normal", 0.0, 0.02);
  ir_value *ins[2] = {ids, w};
  ir_node *node = layer_node(b, call, IR_OP_embedding, 2, ins);
  return node ? finish(b, call, node) : NULL;
}

/* position(T, D): a learned [T, D] table, broadcast over the batch. */
static ir_value *emit_position(fe_builder *b, const fe_call *call) {
  int64_t t, d;
  if (!fe_arg_int(b, call, "T", 0, &t) || !fe_arg_int(b, call, "D", 0, &d)) return NULL;
  if (!require_positive(b, call, "T", t) || !require_positive(b, call, "D", d)) return NULL;
  return fe_make_param(b, call, fe_layer_prefix(b, call), "weight", IR_OP_param,
                       type_of(IR_f32, 2, t, d), "normal", 0.0, 0.02);
}

static ir_value *emit_param(fe_builder *b, const fe_call *call) {
  const fe_expr *shape = fe_arg_expr(call, "shape");
  int64_t dims[IR_MAX_RANK];
  if (shape->kind != FE_EXPR_LIST || shape->num_args > IR_MAX_RANK) {
    diag_error(b->diag, shape->loc, "param expects a shape list, like [D, D]");
    return NULL;
  }
  for (int i = 0; i < shape->num_args; i++) {
    if (!fe_eval_int(b->diag, b->spec, shape->args[i].value, &dims[i])) return NULL;
    if (dims[i] <= 0) {
      diag_error(b->diag, shape->args[i].value->loc, "dim must be positive, got %lld",
                 (long long)dims[i]);
      return NULL;
    }
  }
  const char *init = "normal";
  double a = 0, c = 0.02;
  const fe_expr *ie = fe_arg_expr(call, "init");
  if (ie) {
    bool ok = ie->kind == FE_EXPR_CALL;
    const char *kind = ok ? ie->name : "";
    if (ok && !strcmp(kind, "normal") && ie->num_args >= 1 && ie->num_args <= 2) {
      /* normal(std) or normal(mean, std) */
      ok = const_number(b, ie->args[ie->num_args - 1].value, &c) &&
           (ie->num_args == 1 || const_number(b, ie->args[0].value, &a));
    } else if (ok && !strcmp(kind, "uniform") && ie->num_args == 2) {
      ok = const_number(b, ie->args[0].value, &a) && const_number(b, ie->args[1].value, &c);
    } else if (ok && (!strcmp(kind, "zeros") || !strcmp(kind, "ones")) && ie->num_args == 0) {
      ok = true;
    } else {
      diag_error(b->diag, ie->loc,
                 "'init' expects normal(std), normal(mean, std), uniform(low, high), zeros() or ones()");
      return NULL;
    }
    if (!ok) return NULL;
    init = kind;
  }
  return fe_make_param(b, call, fe_layer_prefix(b, call), "weight", IR_OP_param,
                       ir_type_make(IR_f32, shape->num_args, dims), init, a, c);
}

static ir_value *emit_norm(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  bool rms = strcmp(call->op, "rmsnorm") == 0;
  double eps;
  bool bias = !rms;
  if (!x || !fe_arg_float(b, call, "eps", rms ? 1e-6 : 1e-5, &eps)) return NULL;
  if (!rms && !fe_arg_bool(b, call, "bias", true, &bias)) return NULL;
  if (!require_float(b, call, x, call->op) || !require_rank(b, call, x, 1, IR_MAX_RANK, call->op))
    return NULL;
  const char *prefix = fe_layer_prefix(b, call);
  int64_t d = last_dim(x);
  ir_value *ins[3] = {x, vector_param(b, call, prefix, "weight", d, "ones", 0)};
  if (bias) ins[2] = vector_param(b, call, prefix, "bias", d, "zeros", 0);
  ir_node *node = layer_node(b, call, rms ? IR_OP_rmsnorm : IR_OP_layernorm, bias ? 3 : 2, ins);
  if (!node) return NULL;
  ir_set_float(b->graph, node, "eps", eps);
  if (!rms) ir_set_bool(b->graph, node, "bias", bias);
  return finish(b, call, node);
}

static const char *const activations[] = {"relu", "gelu", "gelu_tanh", "silu", "sigmoid", "tanh"};

static ir_value *emit_mlp(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  int64_t hidden;
  const char *act;
  if (!x || !fe_arg_int(b, call, "hidden", 0, &hidden) ||
      !fe_arg_word(b, call, "act", "gelu", activations, 6, &act))
    return NULL;
  if (!require_positive(b, call, "hidden", hidden) || !require_float(b, call, x, "mlp") ||
      !require_rank(b, call, x, 1, IR_MAX_RANK, "mlp"))
    return NULL;
  const char *prefix = fe_layer_prefix(b, call);
  int64_t d = last_dim(x);
  /* Statements, not an initialiser list: its order of evaluation is
   * unspecified, and parameters must be made in a fixed order. */
  ir_value *ins[5] = {x};
  ins[1] = linear_weight(b, call, prefix, "up.weight", hidden, d);
  ins[2] = vector_param(b, call, prefix, "up.bias", hidden, "uniform", 1.0 / sqrt((double)d));
  ins[3] = linear_weight(b, call, prefix, "down.weight", d, hidden);
  ins[4] = vector_param(b, call, prefix, "down.bias", d, "uniform", 1.0 / sqrt((double)hidden));
  ir_node *node = layer_node(b, call, IR_OP_mlp, 5, ins);
  if (!node) return NULL;
  ir_set_str(b->graph, node, "act", act);
  return finish(b, call, node);
}

static ir_value *emit_glu(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  int64_t hidden;
  if (!x || !fe_arg_int(b, call, "hidden", 0, &hidden)) return NULL;
  if (!require_positive(b, call, "hidden", hidden) || !require_float(b, call, x, call->op) ||
      !require_rank(b, call, x, 1, IR_MAX_RANK, call->op))
    return NULL;
  const char *prefix = fe_layer_prefix(b, call);
  int64_t d = last_dim(x);
  ir_value *ins[4] = {x};
  ins[1] = linear_weight(b, call, prefix, "gate.weight", hidden, d);
  ins[2] = linear_weight(b, call, prefix, "up.weight", hidden, d);
  ins[3] = linear_weight(b, call, prefix, "down.weight", d, hidden);
  bool swiglu = strcmp(call->op, "swiglu") == 0;
  ir_node *node = layer_node(b, call, swiglu ? IR_OP_swiglu : IR_OP_geglu, 4, ins);
  return node ? finish(b, call, node) : NULL;
}

typedef struct attention_args {
  int64_t heads, kv_heads, head_dim, window, global;
  bool causal, rope, bias;
  double rope_base;
  const char *gate;
} attention_args;

static bool attention_read(fe_builder *b, const fe_call *call, ir_value *x, attention_args *a) {
  static const char *const gates[] = {"none", "sigmoid"};
  if (!fe_arg_int(b, call, "heads", 0, &a->heads) || !require_positive(b, call, "heads", a->heads))
    return false;
  int64_t d = last_dim(x);
  if (!fe_arg_present(call, "head_dim") && d % a->heads != 0) {
    diag_error(b->diag, arg_loc(call, "heads"),
               "head_dim defaults to D/heads, but %lld is not divisible by %lld heads",
               (long long)d, (long long)a->heads);
    return false;
  }
  if (!fe_arg_int(b, call, "kv_heads", a->heads, &a->kv_heads) ||
      !fe_arg_int(b, call, "head_dim", d / a->heads, &a->head_dim) ||
      !fe_arg_bool(b, call, "causal", false, &a->causal) ||
      !fe_arg_int(b, call, "window", 0, &a->window) ||
      !fe_arg_int(b, call, "global", 0, &a->global) ||
      !fe_arg_word(b, call, "gate", "none", gates, 2, &a->gate) ||
      !fe_arg_bool(b, call, "rope", false, &a->rope) ||
      !fe_arg_float(b, call, "rope_base", 10000.0, &a->rope_base) ||
      !fe_arg_bool(b, call, "bias", true, &a->bias))
    return false;
  if (!require_positive(b, call, "kv_heads", a->kv_heads) ||
      !require_positive(b, call, "head_dim", a->head_dim))
    return false;
  if (a->heads % a->kv_heads != 0) {
    diag_error(b->diag, arg_loc(call, "kv_heads"),
               "heads (%lld) must be a multiple of kv_heads (%lld)", (long long)a->heads,
               (long long)a->kv_heads);
    return false;
  }
  if (a->window < 0 || a->global < 0) {
    diag_error(b->diag, arg_loc(call, a->window < 0 ? "window" : "global"),
               "'%s' must be 0 or positive", a->window < 0 ? "window" : "global");
    return false;
  }
  if (a->rope && a->head_dim % 2 != 0) {
    diag_error(b->diag, arg_loc(call, "rope"), "rope needs an even head_dim, got %lld",
               (long long)a->head_dim);
    return false;
  }
  return true;
}

static ir_value *emit_attention(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  attention_args a;
  if (!x || !require_rank(b, call, x, 3, 3, "attention") || !require_float(b, call, x, "attention"))
    return NULL;
  if (!attention_read(b, call, x, &a)) return NULL;
  const char *prefix = fe_layer_prefix(b, call);
  int64_t d = last_dim(x), qd = a.heads * a.head_dim, kvd = a.kv_heads * a.head_dim;
  double bd = 1.0 / sqrt((double)d), bq = 1.0 / sqrt((double)qd);
  /* Created in the contract's order q, k, v, o, gate; the node's inputs
   * are x, q, k, v, o, gate (each weight then its bias). */
  ir_value *ins[11] = {x};
  int n = 1;
  static const char *const names[] = {"q", "k", "v", "o", "gate"};
  for (int i = 0; i < 5; i++) {
    if (i == 4 && strcmp(a.gate, "sigmoid") != 0) break;
    int64_t out = i == 0 || i == 4 ? qd : i == 3 ? d : kvd;
    int64_t in = i == 3 ? qd : d;
    ins[n++] = linear_weight(b, call, prefix, ir_arena_printf(b->arena, "%s.weight", names[i]), out, in);
    if (a.bias)
      ins[n++] = vector_param(b, call, prefix, ir_arena_printf(b->arena, "%s.bias", names[i]), out,
                              "uniform", i == 3 ? bq : bd);
  }
  ir_node *node = layer_node(b, call, IR_OP_attention, n, ins);
  if (!node) return NULL;
  ir_graph *g = b->graph;
  ir_set_int(g, node, "heads", a.heads);
  ir_set_int(g, node, "kv_heads", a.kv_heads);
  ir_set_int(g, node, "head_dim", a.head_dim);
  ir_set_bool(g, node, "causal", a.causal);
  ir_set_int(g, node, "window", a.window);
  ir_set_int(g, node, "global", a.global);
  ir_set_str(g, node, "gate", a.gate);
  ir_set_bool(g, node, "rope", a.rope);
  ir_set_float(g, node, "rope_base", a.rope_base);
  ir_set_bool(g, node, "bias", a.bias);
  return finish(b, call, node);
}

static ir_value *emit_conv(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  int spatial = strcmp(call->op, "conv1d") == 0 ? 1 : 2;
  int64_t out, kernel[2], stride[2], padding[2], dilation[2], groups;
  bool bias;
  if (!x || !fe_arg_int(b, call, "out", 0, &out) || !fe_arg_int(b, call, "groups", 1, &groups) ||
      !fe_arg_bool(b, call, "bias", true, &bias))
    return NULL;
  int nk = arg_ints(b, call, "kernel", 0, kernel, spatial);
  int ns = arg_ints(b, call, "stride", 1, stride, spatial);
  int np = arg_ints(b, call, "padding", 0, padding, spatial);
  int nd = arg_ints(b, call, "dilation", 1, dilation, spatial);
  if (nk < 0 || ns < 0 || np < 0 || nd < 0) return NULL;
  expand_pair(nk, kernel);
  expand_pair(ns, stride);
  expand_pair(np, padding);
  expand_pair(nd, dilation);
  if (!require_positive(b, call, "out", out) || !require_positive(b, call, "groups", groups) ||
      !require_rank(b, call, x, spatial + 2, spatial + 2, call->op) ||
      !require_float(b, call, x, call->op))
    return NULL;
  for (int i = 0; i < spatial; i++)
    if (!require_positive(b, call, "kernel", kernel[i]) ||
        !require_positive(b, call, "stride", stride[i]) ||
        !require_positive(b, call, "dilation", dilation[i]))
      return NULL;
  int64_t in = x->type.dims[1];
  if (in % groups != 0 || out % groups != 0) {
    diag_error(b->diag, arg_loc(call, "groups"),
               "groups (%lld) must divide both the input channels (%lld) and out (%lld)",
               (long long)groups, (long long)in, (long long)out);
    return NULL;
  }
  const char *prefix = fe_layer_prefix(b, call);
  int64_t dims[4] = {out, in / groups, kernel[0], kernel[1]};
  int64_t fan_in = in / groups * kernel[0] * (spatial == 2 ? kernel[1] : 1);
  double bound = 1.0 / sqrt((double)fan_in);
  ir_value *ins[3] = {x, fe_make_param(b, call, prefix, "weight", IR_OP_param,
                                       ir_type_make(IR_f32, 2 + spatial, dims), "uniform", -bound,
                                       bound)};
  if (bias) ins[2] = vector_param(b, call, prefix, "bias", out, "uniform", bound);
  ir_node *node = layer_node(b, call, IR_OP_conv_layer, bias ? 3 : 2, ins);
  if (!node) return NULL;
  ir_set_ints(b->graph, node, "stride", spatial, stride);
  ir_set_ints(b->graph, node, "padding", spatial, padding);
  ir_set_ints(b->graph, node, "dilation", spatial, dilation);
  ir_set_int(b->graph, node, "groups", groups);
  ir_set_bool(b->graph, node, "bias", bias);
  return finish(b, call, node);
}

static ir_value *emit_batchnorm(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  double eps, momentum;
  if (!x || !fe_arg_float(b, call, "eps", 1e-5, &eps) ||
      !fe_arg_float(b, call, "momentum", 0.1, &momentum))
    return NULL;
  if (!require_rank(b, call, x, 2, 4, "batchnorm") || !require_float(b, call, x, "batchnorm"))
    return NULL;
  const char *prefix = fe_layer_prefix(b, call);
  int64_t c = x->type.dims[1];
  /* num_batches_tracked is kept because PyTorch's state_dict has it. */
  ir_value *ins[6] = {x};
  ins[1] = vector_param(b, call, prefix, "weight", c, "ones", 0);
  ins[2] = vector_param(b, call, prefix, "bias", c, "zeros", 0);
  ins[3] = fe_make_param(b, call, prefix, "running_mean", IR_OP_buffer, type_of(IR_f32, 1, c, 0),
                         "zeros", 0, 0);
  ins[4] = fe_make_param(b, call, prefix, "running_var", IR_OP_buffer, type_of(IR_f32, 1, c, 0),
                         "ones", 0, 0);
  ins[5] = fe_make_param(b, call, prefix, "num_batches_tracked", IR_OP_buffer,
                         ir_type_make(IR_i64, 0, NULL), "zeros", 0, 0);
  ir_node *node = layer_node(b, call, IR_OP_batchnorm, 6, ins);
  if (!node) return NULL;
  ir_set_float(b->graph, node, "eps", eps);
  ir_set_float(b->graph, node, "momentum", momentum);
  ir_set_bool(b->graph, node, "training", b->mode == FE_MODE_TRAIN);
  return finish(b, call, node);
}

static ir_value *emit_groupnorm(fe_builder *b, const fe_call *call) {
  ir_value *x = arg_tensor(b, call, "x");
  int64_t groups;
  double eps;
  if (!x || !fe_arg_int(b, call, "groups", 0, &groups) ||
      !fe_arg_float(b, call, "eps", 1e-5, &eps))
    return NULL;
  if (!require_rank(b, call, x, 2, IR_MAX_RANK, "groupnorm") ||
      !require_float(b, call, x, "groupnorm") || !require_positive(b, call, "groups", groups))
    return NULL;
  int64_t c = x->type.dims[1];
  if (c % groups != 0) {
    diag_error(b->diag, arg_loc(call, "groups"), "groups (%lld) must divide the channels (%lld)",
               (long long)groups, (long long)c);
    return NULL;
  }
  const char *prefix = fe_layer_prefix(b, call);
  ir_value *ins[3] = {x};
  ins[1] = vector_param(b, call, prefix, "weight", c, "ones", 0);
  ins[2] = vector_param(b, call, prefix, "bias", c, "zeros", 0);
  ir_node *node = layer_node(b, call, IR_OP_groupnorm, 3, ins);
  if (!node) return NULL;
  ir_set_int(b->graph, node, "groups", groups);
  ir_set_float(b->graph, node, "eps", eps);
  return finish(b, call, node);
}

/* ---- blocks: direct calls and repeat ---- */

static ir_value *emit_repeat(fe_builder *b, const fe_call *call) {
  const fe_expr *be = fe_arg_expr(call, "block");
  int64_t count;
  bool shared;
  if (!fe_arg_int(b, call, "n", 0, &count) || !fe_arg_bool(b, call, "shared", false, &shared))
    return NULL;
  if (be->kind != FE_EXPR_NAME) {
    diag_error(b->diag, be->loc, "repeat expects a block name first");
    return NULL;
  }
  const fe_block *block = fe_find_block(b, be->name);
  if (!block) {
    const char *names[256];
    int n = 0;
    for (int i = 0; i < b->spec->num_blocks && n < 256; i++) names[n++] = b->spec->blocks[i].name;
    const char *hint = diag_suggest(be->name, names, n);
    if (hint)
      diag_error(b->diag, be->loc, "unknown block '%s'; did you mean '%s'?", be->name, hint);
    else
      diag_error(b->diag, be->loc, "unknown block '%s'", be->name);
    return NULL;
  }
  if (!require_positive(b, call, "n", count)) return NULL;
  ir_value *args[FE_MAX_ARGS];
  bool ok = true;
  for (int i = 0; i < call->num_rest; i++) ok = (args[i] = fe_eval_tensor(b, call->rest[i])) && ok;
  if (!ok) return NULL;
  if (block->num_returns > call->num_rest) {
    diag_error(b->diag, call->expr->loc,
               "repeat feeds block '%s''s %d returns back as its first arguments, but only %d "
               "arguments are given",
               block->name, block->num_returns, call->num_rest);
    return NULL;
  }
  const char *node = fe_layer_prefix(b, call);
  ir_value *first = NULL;
  for (int64_t it = 0; it < count; it++) {
    const char *prefix = shared ? node : ir_arena_printf(b->arena, "%s%lld.", node, (long long)it);
    ir_value *returns[FE_MAX_ARGS];
    /* Shared iterations after the first reuse the first's parameters. */
    const char *label = ir_arena_printf(b->arena, "%s%lld", node, (long long)it);
    first = fe_call_block(b, block, call->expr, prefix, label, shared && it > 0, args,
                          call->num_rest, returns);
    if (!first) return NULL;
    for (int r = 0; r < block->num_returns; r++) {
      char t1[96], t2[96];
      if (!ir_type_equal(&returns[r]->type, &args[r]->type)) {
        diag_error(b->diag, call->expr->loc,
                   "repeat: block '%s' returns %s for argument '%s', which is %s", block->name,
                   ir_type_format(&returns[r]->type, t1, sizeof t1), block->args[r].name,
                   ir_type_format(&args[r]->type, t2, sizeof t2));
        return NULL;
      }
      args[r] = returns[r];
    }
  }
  return first;
}

static ir_value *call_block_directly(fe_builder *b, const fe_expr *e, const fe_block *block) {
  ir_value *args[FE_MAX_ARGS];
  bool ok = true;
  for (int i = 0; i < e->num_args; i++) {
    if (e->args[i].keyword) {
      diag_error(b->diag, e->args[i].keyword_loc, "block '%s' takes no keyword arguments",
                 block->name);
      return NULL;
    }
    ok = (args[i] = fe_eval_tensor(b, e->args[i].value)) && ok;
  }
  if (!ok) return NULL;
  fe_call call = {.expr = e, .op = block->name};
  const char *prefix = fe_layer_prefix(b, &call);
  return fe_call_block(b, block, e, prefix, NULL, false, args, e->num_args, NULL);
}

/* ---- the table ---- */

#define UNARY(n) {n, n "(x)", {"x"}, 1, false, false, emit_unary}
static const op_entry ops[] = {
    UNARY("relu"), UNARY("gelu"), UNARY("gelu_tanh"), UNARY("silu"), UNARY("sigmoid"),
    UNARY("tanh"), UNARY("exp"), UNARY("log"), UNARY("sqrt"), UNARY("rsqrt"), UNARY("abs"),
    {"softmax", "softmax(x, axis=-1)", {"x", "axis"}, 1, false, false, emit_softmax},
    {"log_softmax", "log_softmax(x, axis=-1)", {"x", "axis"}, 1, false, false, emit_softmax},
    {"dropout", "dropout(x, p)", {"x", "p"}, 2, false, false, emit_dropout},
    {"sum", "sum(x, axis, keepdim=false)", {"x", "axis", "keepdim"}, 2, false, false, emit_reduce},
    {"mean", "mean(x, axis, keepdim=false)", {"x", "axis", "keepdim"}, 2, false, false, emit_reduce},
    {"max", "max(x, axis, keepdim=false)", {"x", "axis", "keepdim"}, 2, false, false, emit_reduce},
    {"reshape", "reshape(x, [dims])", {"x", "shape"}, 2, false, false, emit_reshape},
    {"transpose", "transpose(x, a, b)", {"x", "a", "b"}, 3, false, false, emit_transpose},
    {"permute", "permute(x, [dims])", {"x", "dims"}, 2, false, false, emit_permute},
    {"flatten", "flatten(x, start=1)", {"x", "start"}, 1, false, false, emit_flatten},
    {"concat", "concat(a, b, ..., axis=1)", {"axis"}, 0, true, false, emit_concat},
    {"slice", "slice(x, axis, start, end)", {"x", "axis", "start", "end"}, 4, false, false, emit_slice},
    {"upsample", "upsample(x, scale=2, mode=nearest)", {"x", "scale", "mode"}, 1, false, false,
     emit_upsample},
    {"maxpool2d", "maxpool2d(x, kernel, stride=kernel, padding=0)",
     {"x", "kernel", "stride", "padding"}, 2, false, false, emit_pool},
    {"avgpool2d", "avgpool2d(x, kernel, stride=kernel, padding=0)",
     {"x", "kernel", "stride", "padding"}, 2, false, false, emit_pool},
    {"global_avgpool", "global_avgpool(x)", {"x"}, 1, false, false, emit_global_avgpool},
    {"causal_mask", "causal_mask(T)", {"T"}, 1, false, false, emit_causal_mask},
    {"window_mask", "window_mask(T, window, global=0, causal=true)",
     {"T", "window", "global", "causal"}, 2, false, false, emit_causal_mask},
    {"where", "where(mask, a, b)", {"mask", "a", "b"}, 3, false, false, emit_where},
    {"cross_entropy", "cross_entropy(logits, targets, ignore_index=-100)",
     {"logits", "targets", "ignore_index"}, 2, false, false, emit_loss},
    {"mse", "mse(a, b)", {"a", "b"}, 2, false, false, emit_loss},
    {"bce_logits", "bce_logits(a, b)", {"a", "b"}, 2, false, false, emit_loss},
    {"linear", "linear(x, out, bias=true, rank=0, tied=NODE)", {"x", "out", "bias", "rank", "tied"},
     2, false, true, emit_linear},
    {"embedding", "embedding(ids, num, dim)", {"ids", "num", "dim"}, 3, false, true, emit_embedding},
    {"position", "position(T, D)", {"T", "D"}, 2, false, true, emit_position},
    {"layernorm", "layernorm(x, eps=1e-5, bias=true)", {"x", "eps", "bias"}, 1, false, true,
     emit_norm},
    {"rmsnorm", "rmsnorm(x, eps=1e-6)", {"x", "eps"}, 1, false, true, emit_norm},
    {"mlp", "mlp(x, hidden, act=gelu)", {"x", "hidden", "act"}, 2, false, true, emit_mlp},
    {"swiglu", "swiglu(x, hidden)", {"x", "hidden"}, 2, false, true, emit_glu},
    {"geglu", "geglu(x, hidden)", {"x", "hidden"}, 2, false, true, emit_glu},
    {"attention",
     "attention(x, heads, kv_heads=heads, head_dim=D/heads, causal=false, window=0, global=0, "
     "gate=none, rope=false, rope_base=10000, bias=true)",
     {"x", "heads", "kv_heads", "head_dim", "causal", "window", "global", "gate", "rope",
      "rope_base", "bias"},
     2, false, true, emit_attention},
    {"conv1d", "conv1d(x, out, kernel, stride=1, padding=0, dilation=1, groups=1, bias=true)",
     {"x", "out", "kernel", "stride", "padding", "dilation", "groups", "bias"}, 3, false, true,
     emit_conv},
    {"conv2d", "conv2d(x, out, kernel, stride=1, padding=0, dilation=1, groups=1, bias=true)",
     {"x", "out", "kernel", "stride", "padding", "dilation", "groups", "bias"}, 3, false, true,
     emit_conv},
    {"batchnorm", "batchnorm(x, eps=1e-5, momentum=0.1)", {"x", "eps", "momentum"}, 1, false, true,
     emit_batchnorm},
    {"groupnorm", "groupnorm(x, groups, eps=1e-5)", {"x", "groups", "eps"}, 2, false, true,
     emit_groupnorm},
    {"param", "param(shape, init=normal(0.02))", {"shape", "init"}, 1, false, true, emit_param},
    {"repeat", "repeat(block, n, args..., shared=false)", {"block", "n", "shared"}, 2, true, true,
     emit_repeat},
};
#undef UNARY

enum { NUM_OPS = sizeof ops / sizeof ops[0] };

static const op_entry *find_op(const char *name) {
  for (int i = 0; i < NUM_OPS; i++)
    if (strcmp(ops[i].name, name) == 0) return &ops[i];
  return NULL;
}

int fe_op_names(const char **out, int max) {
  int n = 0;
  for (int i = 0; i < NUM_OPS && n < max; i++) out[n++] = ops[i].name;
  return n;
}

bool fe_is_layer_call(const fe_builder *b, const fe_expr *e) {
  const op_entry *op = find_op(e->name);
  return op ? op->layer : fe_find_block(b, e->name) != NULL;
}

/* ---- binding a call's arguments to the signature ---- */

static int count_params(const op_entry *op) {
  int n = 0;
  while (n < FE_MAX_ARGS && op->params[n]) n++;
  return n;
}

static bool bind_keyword(fe_builder *b, const op_entry *op, fe_call *call, const fe_arg *arg) {
  if (strcmp(arg->keyword, "name") == 0 && op->layer) {
    if (arg->value->kind != FE_EXPR_STRING) {
      diag_error(b->diag, arg->value->loc, "'name' expects a string, like name=\"head\"");
      return false;
    }
    call->name_override = arg->value;
    return true;
  }
  int i = param_index(call, arg->keyword);
  /* With a variadic op the leading params are positional only. */
  if (i < 0 || (op->variadic && i < op->required)) {
    const char *names[FE_MAX_ARGS + 1];
    int n = 0;
    for (int j = op->variadic ? op->required : 0; j < call->num_params; j++)
      names[n++] = call->params[j];
    if (op->layer) names[n++] = "name";
    const char *hint = diag_suggest(arg->keyword, names, n);
    if (hint)
      diag_error(b->diag, arg->keyword_loc, "unknown keyword '%s' for %s; did you mean '%s'?",
                 arg->keyword, op->name, hint);
    else
      diag_error(b->diag, arg->keyword_loc, "unknown keyword '%s' for %s", arg->keyword, op->usage);
    return false;
  }
  if (call->args[i]) {
    diag_error(b->diag, arg->keyword_loc, "argument '%s' of %s is given twice", arg->keyword,
               op->name);
    diag_note(b->diag, call->arg_locs[i], "first given here");
    return false;
  }
  call->args[i] = arg->value;
  call->arg_locs[i] = arg->keyword_loc;
  return true;
}

static bool bind_call(fe_builder *b, const op_entry *op, const fe_expr *e, fe_call *call) {
  memset(call, 0, sizeof *call);
  call->expr = e;
  call->op = op->name;
  call->params = op->params;
  call->num_params = count_params(op);
  bool ok = true;
  int positional = 0;
  for (int i = 0; i < e->num_args; i++) {
    const fe_arg *arg = &e->args[i];
    if (arg->keyword) {
      ok = bind_keyword(b, op, call, arg) && ok;
      continue;
    }
    if (op->variadic && positional >= op->required) {
      if (call->num_rest == FE_MAX_ARGS) {
        diag_error(b->diag, arg->value->loc, "too many arguments to %s", op->name);
        return false;
      }
      call->rest[call->num_rest++] = arg->value;
    } else if (positional >= call->num_params || (op->variadic && positional >= op->required)) {
      diag_error(b->diag, arg->value->loc, "too many arguments to %s: it takes %d positional",
                 op->name, op->variadic ? op->required : call->num_params);
      diag_note(b->diag, e->loc, "%s", op->usage);
      return false;
    } else {
      call->args[positional] = arg->value;
      call->arg_locs[positional] = arg->value->loc;
    }
    positional++;
  }
  for (int i = 0; i < op->required && ok; i++) {
    if (call->args[i]) continue;
    diag_error(b->diag, e->loc, "%s is missing argument '%s': %s", op->name, op->params[i],
               op->usage);
    ok = false;
  }
  return ok;
}

ir_value *fe_eval_call(fe_builder *b, const fe_expr *e) {
  const op_entry *op = find_op(e->name);
  if (!op) {
    const fe_block *block = fe_find_block(b, e->name);
    if (block) return call_block_directly(b, e, block);
    const char *names[NUM_OPS + 64];
    int n = fe_op_names(names, NUM_OPS);
    for (int i = 0; i < b->spec->num_blocks && n < NUM_OPS + 64; i++)
      names[n++] = b->spec->blocks[i].name;
    const char *hint = diag_suggest(e->name, names, n);
    if (hint)
      diag_error(b->diag, e->loc, "unknown op '%s'; did you mean '%s'?", e->name, hint);
    else
      diag_error(b->diag, e->loc, "unknown op '%s'", e->name);
    return NULL;
  }
  fe_call call;
  if (!bind_call(b, op, e, &call)) return NULL;
  return op->emit(b, &call);
}
