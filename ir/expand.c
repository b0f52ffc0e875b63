/* expand.c: every layer op into primitives.
 *
 * After this pass the graph holds only matmul, elementwise, reduce,
 * gather, softmax, conv, ... so that fusion finds the same patterns
 * whether the spec wrote attention(...) or spelled it out. Each layer
 * node is replaced by nodes inserted just before it, named after it
 * (%attn.q, %attn.scores, ...); the last one takes the layer's own name. */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "ir.h"

typedef struct expander {
  ir_graph *g;
  ir_node *at;      /* the layer node being replaced */
  const char *base; /* its result's name */
  char *err;
  size_t errlen;
  bool failed;
} expander;

static const char *name_for(expander *x, const char *suffix) {
  if (!suffix) return x->base;
  return ir_arena_printf(x->g->arena, "%s.%s", x->base, suffix);
}

/* A node before the layer node; NULL if any input is missing. */
static ir_node *make(expander *x, ir_op op, const char *suffix, int n, ...) {
  ir_value *ins[8];
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < n; i++) ins[i] = va_arg(ap, ir_value *);
  va_end(ap);
  for (int i = 0; i < n; i++)
    if (!ins[i]) return NULL;
  ir_node *node = ir_node_insert(x->g, x->at, op, n, ins, name_for(x, suffix));
  node->loc = x->at->loc;
  node->scope = x->at->scope;
  return node;
}

static ir_value *done(expander *x, ir_node *node) {
  if (!node) return NULL;
  char msg[IR_ERR_LEN];
  if (ir_node_infer(node, msg, sizeof msg)) return node->num_results ? node->results[0] : NULL;
  if (!x->failed) snprintf(x->err, x->errlen, "expanding %%%s: %s", x->base, msg);
  x->failed = true;
  return NULL;
}

static ir_value *op1(expander *x, ir_op op, const char *suffix, ir_value *a) {
  return done(x, make(x, op, suffix, 1, a));
}

static ir_value *op2(expander *x, ir_op op, const char *suffix, ir_value *a, ir_value *b) {
  return done(x, make(x, op, suffix, 2, a, b));
}

static ir_value *source(expander *x, ir_op op, const char *suffix, ir_type type) {
  ir_node *node = ir_node_insert(x->g, x->at, op, 0, NULL, name_for(x, suffix));
  node->results[0]->type = type;
  node->loc = x->at->loc;
  node->scope = x->at->scope;
  return node->results[0];
}

static ir_value *constant(expander *x, const char *suffix, ir_dtype dtype, double value) {
  ir_value *v = source(x, IR_OP_const, suffix, ir_type_make(dtype, 0, NULL));
  ir_set_float(x->g, v->def, "value", value);
  return v;
}

/* a @ w.T: the PyTorch layout of every weight [out, in]. */
static ir_value *matmul_t(expander *x, const char *suffix, ir_value *a, ir_value *w) {
  ir_node *node = make(x, IR_OP_matmul, suffix, 2, a, w);
  if (!node) return NULL;
  ir_set_bool(x->g, node, "transpose_a", false);
  ir_set_bool(x->g, node, "transpose_b", true);
  return done(x, node);
}

static ir_value *matmul(expander *x, const char *suffix, ir_value *a, ir_value *b, bool tb) {
  ir_node *node = make(x, IR_OP_matmul, suffix, 2, a, b);
  if (!node) return NULL;
  ir_set_bool(x->g, node, "transpose_a", false);
  ir_set_bool(x->g, node, "transpose_b", tb);
  return done(x, node);
}

static ir_value *reduce(expander *x, ir_op op, const char *suffix, ir_value *a, int n,
                        const int64_t *axes, bool keepdim) {
  ir_node *node = make(x, op, suffix, 1, a);
  if (!node) return NULL;
  ir_set_ints(x->g, node, "axes", n, axes);
  ir_set_bool(x->g, node, "keepdim", keepdim);
  return done(x, node);
}

static ir_value *mean_last(expander *x, const char *suffix, ir_value *a) {
  int64_t axis = -1;
  return reduce(x, IR_OP_mean, suffix, a, 1, &axis, true);
}

/* Mean over every axis: a scalar. */
static ir_value *mean_all(expander *x, const char *suffix, ir_value *a) {
  if (!a) return NULL;
  int64_t axes[IR_MAX_RANK];
  for (int i = 0; i < a->type.rank; i++) axes[i] = i;
  return reduce(x, IR_OP_mean, suffix, a, a->type.rank, axes, false);
}

static ir_value *reshape(expander *x, const char *suffix, ir_value *a, int rank,
                         const int64_t *dims) {
  ir_node *node = make(x, IR_OP_reshape, suffix, 1, a);
  if (!node) return NULL;
  ir_set_ints(x->g, node, "shape", rank, dims);
  return done(x, node);
}

static ir_value *permute(expander *x, const char *suffix, ir_value *a, int rank,
                         const int64_t *perm) {
  ir_node *node = make(x, IR_OP_permute, suffix, 1, a);
  if (!node) return NULL;
  ir_set_ints(x->g, node, "perm", rank, perm);
  return done(x, node);
}

static ir_value *add_eps(expander *x, const char *suffix, ir_value *a, double eps) {
  if (!a) return NULL;
  return op2(x, IR_OP_add, suffix, a, constant(x, "eps", a->type.dtype, eps));
}

/* A per-channel vector [C] viewed as [1, C, 1, ...] against x of rank r. */
static ir_value *channel_view(expander *x, const char *suffix, ir_value *v, int rank) {
  int64_t dims[IR_MAX_RANK];
  for (int i = 0; i < rank; i++) dims[i] = 1;
  dims[1] = v->type.dims[0];
  return reshape(x, suffix, v, rank, dims);
}

/* ---- one function per layer op; each returns the replacing value ---- */

static ir_value *expand_linear(expander *x, ir_node *n) {
  bool bias = ir_get_bool(n, "bias", false);
  int64_t rank = ir_get_int(n, "rank", 0);
  ir_value *y;
  if (rank > 0) {
    ir_value *h = matmul_t(x, "down", n->inputs[0], n->inputs[1]);
    y = matmul_t(x, bias ? "up" : NULL, h, n->inputs[2]);
  } else {
    y = matmul_t(x, bias ? "matmul" : NULL, n->inputs[0], n->inputs[1]);
  }
  if (bias) y = op2(x, IR_OP_add, NULL, y, n->inputs[n->num_inputs - 1]);
  return y;
}

static ir_value *expand_embedding(expander *x, ir_node *n) {
  /* embedding(ids, weight) -> gather(table, ids) */
  return op2(x, IR_OP_gather, NULL, n->inputs[1], n->inputs[0]);
}

/* layernorm over the last dim: (x - mean) * rsqrt(var + eps) * w + b,
 * var biased as in PyTorch. */
static ir_value *expand_layernorm(expander *x, ir_node *n) {
  bool bias = n->num_inputs == 3;
  ir_value *mu = mean_last(x, "mean", n->inputs[0]);
  ir_value *xc = op2(x, IR_OP_sub, "centered", n->inputs[0], mu);
  ir_value *var = mean_last(x, "var", op2(x, IR_OP_mul, "square", xc, xc));
  ir_value *rstd = op1(x, IR_OP_rsqrt, "rstd", add_eps(x, "var_eps", var, ir_get_float(n, "eps", 1e-5)));
  ir_value *y = op2(x, IR_OP_mul, bias ? "scaled" : NULL,
                    op2(x, IR_OP_mul, "normed", xc, rstd), n->inputs[1]);
  if (bias) y = op2(x, IR_OP_add, NULL, y, n->inputs[2]);
  return y;
}

static ir_value *expand_rmsnorm(expander *x, ir_node *n) {
  ir_value *in = n->inputs[0];
  ir_value *ms = mean_last(x, "mean_square", op2(x, IR_OP_mul, "square", in, in));
  ir_value *r = op1(x, IR_OP_rsqrt, "rrms", add_eps(x, "ms_eps", ms, ir_get_float(n, "eps", 1e-6)));
  return op2(x, IR_OP_mul, NULL, op2(x, IR_OP_mul, "normed", in, r), n->inputs[1]);
}

static ir_op activation(const char *name) {
  ir_op op = IR_OP_gelu;
  if (name) ir_op_lookup(name, &op);
  return op;
}

static ir_value *expand_mlp(expander *x, ir_node *n) {
  ir_value *h = op2(x, IR_OP_add, "up", matmul_t(x, "up_matmul", n->inputs[0], n->inputs[1]),
                    n->inputs[2]);
  ir_value *a = op1(x, activation(ir_get_str(n, "act", "gelu")), "act", h);
  return op2(x, IR_OP_add, NULL, matmul_t(x, "down", a, n->inputs[3]), n->inputs[4]);
}

/* down(act(gate(x)) * up(x)), act silu for swiglu, gelu for geglu. */
static ir_value *expand_glu(expander *x, ir_node *n) {
  ir_value *gate = matmul_t(x, "gate", n->inputs[0], n->inputs[1]);
  ir_value *up = matmul_t(x, "up", n->inputs[0], n->inputs[2]);
  ir_op act = n->op == IR_OP_swiglu ? IR_OP_silu : IR_OP_gelu;
  ir_value *h = op2(x, IR_OP_mul, "gated", op1(x, act, "act", gate), up);
  return matmul_t(x, NULL, h, n->inputs[3]);
}

typedef struct attention_shape {
  int64_t batch, time, heads, kv_heads, head_dim;
} attention_shape;

/* x [B,T,D] -> linear -> [B,T,h,hd] -> [B,h,T,hd], rotated if rope. */
static ir_value *attention_heads(expander *x, ir_node *n, const attention_shape *s,
                                 const char *name, ir_value *w, ir_value *b, int64_t heads) {
  ir_value *p = matmul_t(x, name, n->inputs[0], w);
  if (b) p = op2(x, IR_OP_add, ir_arena_printf(x->g->arena, "%s_bias", name), p, b);
  int64_t split[4] = {s->batch, s->time, heads, s->head_dim};
  int64_t perm[4] = {0, 2, 1, 3};
  ir_value *h = permute(x, ir_arena_printf(x->g->arena, "%s_heads", name),
                        reshape(x, ir_arena_printf(x->g->arena, "%s_split", name), p, 4, split), 4,
                        perm);
  if (!h || !ir_get_bool(n, "rope", false) || name[0] == 'v') return h;
  ir_node *rope = make(x, IR_OP_rope, ir_arena_printf(x->g->arena, "%s_rope", name), 1, h);
  if (!rope) return NULL;
  ir_set_float(x->g, rope, "base", ir_get_float(n, "rope_base", 10000.0));
  return done(x, rope);
}

/* GQA: [B,KV,T,hd] -> [B,KV,G,T,hd] (broadcast) -> [B,H,T,hd]. */
static ir_value *repeat_kv(expander *x, const attention_shape *s, const char *name, ir_value *kv) {
  int64_t group = s->heads / s->kv_heads;
  if (group == 1 || !kv) return kv;
  int64_t one[5] = {s->batch, s->kv_heads, 1, s->time, s->head_dim};
  int64_t wide[5] = {s->batch, s->kv_heads, group, s->time, s->head_dim};
  int64_t flat[4] = {s->batch, s->heads, s->time, s->head_dim};
  ir_value *r = reshape(x, ir_arena_printf(x->g->arena, "%s_unsqueeze", name), kv, 5, one);
  ir_node *bc = make(x, IR_OP_broadcast, ir_arena_printf(x->g->arena, "%s_repeat", name), 1, r);
  if (!bc) return NULL;
  ir_set_ints(x->g, bc, "shape", 5, wide);
  return reshape(x, ir_arena_printf(x->g->arena, "%s_grouped", name), done(x, bc), 4, flat);
}

static ir_value *attention_scores(expander *x, ir_node *n, const attention_shape *s, ir_value *q,
                                  ir_value *k) {
  ir_value *scores = matmul(x, "scores", q, k, true);
  ir_value *scaled = op2(x, IR_OP_mul, "scaled", scores,
                         constant(x, "scale", IR_f32, 1.0 / sqrt((double)s->head_dim)));
  bool causal = ir_get_bool(n, "causal", false);
  int64_t window = ir_get_int(n, "window", 0);
  if (!causal && window == 0) return scaled;
  int64_t dims[2] = {s->time, s->time};
  ir_value *mask = source(x, IR_OP_mask, "mask", ir_type_make(IR_u8, 2, dims));
  ir_set_bool(x->g, mask->def, "causal", causal);
  ir_set_int(x->g, mask->def, "window", window);
  ir_set_int(x->g, mask->def, "global", ir_get_int(n, "global", 0));
  ir_value *minus_inf = constant(x, "neg_inf", IR_f32, -INFINITY);
  return done(x, make(x, IR_OP_where, "masked_scores", 3, mask, scaled, minus_inf));
}

/* Inputs: x, q.w [q.b], k.w [k.b], v.w [v.b], o.w [o.b], [gate.w [gate.b]]. */
static ir_value *expand_attention(expander *x, ir_node *n) {
  bool bias = ir_get_bool(n, "bias", true);
  bool gated = strcmp(ir_get_str(n, "gate", "none"), "sigmoid") == 0;
  ir_value *w[5] = {0}, *b[5] = {0};
  int k = 1;
  for (int i = 0; i < (gated ? 5 : 4); i++) {
    w[i] = n->inputs[k++];
    if (bias) b[i] = n->inputs[k++];
  }
  const ir_type *xt = &n->inputs[0]->type;
  attention_shape s = {xt->dims[0], xt->dims[1], ir_get_int(n, "heads", 1),
                       ir_get_int(n, "kv_heads", 1), ir_get_int(n, "head_dim", 1)};
  ir_value *q = attention_heads(x, n, &s, "q", w[0], b[0], s.heads);
  ir_value *kk = repeat_kv(x, &s, "k", attention_heads(x, n, &s, "k", w[1], b[1], s.kv_heads));
  ir_value *v = repeat_kv(x, &s, "v", attention_heads(x, n, &s, "v", w[2], b[2], s.kv_heads));
  ir_node *sm = make(x, IR_OP_softmax, "probs", 1, attention_scores(x, n, &s, q, kk));
  if (sm) ir_set_int(x->g, sm, "axis", -1);
  ir_value *heads = matmul(x, "context", done(x, sm), v, false);
  int64_t perm[4] = {0, 2, 1, 3};
  int64_t merged[3] = {s.batch, s.time, s.heads * s.head_dim};
  ir_value *o = reshape(x, "merged", permute(x, "context_t", heads, 4, perm), 3, merged);
  if (gated) {
    ir_value *g = matmul_t(x, "gate", n->inputs[0], w[4]);
    if (bias) g = op2(x, IR_OP_add, "gate_bias", g, b[4]);
    o = op2(x, IR_OP_mul, "gated", o, op1(x, IR_OP_sigmoid, "gate_sigmoid", g));
  }
  ir_value *y = matmul_t(x, bias ? "o" : NULL, o, w[3]);
  return bias ? op2(x, IR_OP_add, NULL, y, b[3]) : y;
}

static ir_value *expand_conv(expander *x, ir_node *n) {
  ir_node *conv = make(x, IR_OP_conv, n->num_inputs == 3 ? "conv" : NULL, 2, n->inputs[0],
                       n->inputs[1]);
  if (!conv) return NULL;
  const int64_t *v;
  int len = ir_get_ints(n, "stride", &v);
  ir_set_ints(x->g, conv, "stride", len, v);
  len = ir_get_ints(n, "padding", &v);
  ir_set_ints(x->g, conv, "padding", len, v);
  len = ir_get_ints(n, "dilation", &v);
  ir_set_ints(x->g, conv, "dilation", len, v);
  ir_set_int(x->g, conv, "groups", ir_get_int(n, "groups", 1));
  ir_value *y = done(x, conv);
  if (n->num_inputs < 3 || !y) return y;
  return op2(x, IR_OP_add, NULL, y, channel_view(x, "bias_view", n->inputs[2], y->type.rank));
}

/* Training: batch statistics over every axis but 1, and running
 * statistics updated as PyTorch does (unbiased variance, momentum). */
static ir_value *batchnorm_train(expander *x, ir_node *n, ir_value *in, int rank) {
  int64_t axes[IR_MAX_RANK], c = in->type.dims[1];
  int na = 0;
  for (int i = 0; i < rank; i++)
    if (i != 1) axes[na++] = i;
  double m = ir_get_float(n, "momentum", 0.1);
  double count = (double)(ir_type_numel(&in->type) / c);
  ir_value *mu = reduce(x, IR_OP_mean, "mean", in, na, axes, true);
  ir_value *xc = op2(x, IR_OP_sub, "centered", in, mu);
  ir_value *var = reduce(x, IR_OP_mean, "var", op2(x, IR_OP_mul, "square", xc, xc), na, axes, true);
  ir_value *rstd = op1(x, IR_OP_rsqrt, "rstd", add_eps(x, "var_eps", var, ir_get_float(n, "eps", 1e-5)));
  ir_value *xn = op2(x, IR_OP_mul, "normed", xc, rstd);
  ir_value *rm = n->inputs[3], *rv = n->inputs[4], *nbt = n->inputs[5];
  /* One node per statement: C leaves the order of argument evaluation
   * open, and the printed IR must not depend on the compiler. */
  ir_value *keep = constant(x, "keep", IR_f32, 1.0 - m);
  ir_value *old_mean = op2(x, IR_OP_mul, "old_mean", rm, keep);
  ir_value *mean_flat = reshape(x, "mean_flat", mu, 1, &c);
  ir_value *momentum = constant(x, "momentum", IR_f32, m);
  ir_value *batch_mean = op2(x, IR_OP_mul, "batch_mean", mean_flat, momentum);
  ir_value *new_mean = op2(x, IR_OP_add, "new_mean", old_mean, batch_mean);
  double unbias = count > 1 ? count / (count - 1) : 1.0;
  ir_value *old_var = op2(x, IR_OP_mul, "old_var", rv, keep);
  ir_value *var_flat = reshape(x, "var_flat", var, 1, &c);
  ir_value *var_momentum = constant(x, "var_momentum", IR_f32, m * unbias);
  ir_value *batch_var = op2(x, IR_OP_mul, "batch_var", var_flat, var_momentum);
  ir_value *new_var = op2(x, IR_OP_add, "new_var", old_var, batch_var);
  done(x, make(x, IR_OP_assign, "update_mean", 2, rm, new_mean));
  done(x, make(x, IR_OP_assign, "update_var", 2, rv, new_var));
  ir_value *one = constant(x, "one", IR_i64, 1);
  done(x, make(x, IR_OP_assign, "update_count", 2, nbt, op2(x, IR_OP_add, "count", nbt, one)));
  return xn;
}

static ir_value *expand_batchnorm(expander *x, ir_node *n) {
  ir_value *in = n->inputs[0];
  int rank = in->type.rank;
  ir_value *xn;
  if (ir_get_bool(n, "training", false)) {
    xn = batchnorm_train(x, n, in, rank);
  } else {
    ir_value *rm = channel_view(x, "mean_view", n->inputs[3], rank);
    ir_value *rv = channel_view(x, "var_view", n->inputs[4], rank);
    ir_value *rstd = op1(x, IR_OP_rsqrt, "rstd", add_eps(x, "var_eps", rv, ir_get_float(n, "eps", 1e-5)));
    xn = op2(x, IR_OP_mul, "normed", op2(x, IR_OP_sub, "centered", in, rm), rstd);
  }
  ir_value *y = op2(x, IR_OP_mul, "scaled", xn, channel_view(x, "weight_view", n->inputs[1], rank));
  return op2(x, IR_OP_add, NULL, y, channel_view(x, "bias_view", n->inputs[2], rank));
}

/* x [N,C,*] -> [N,G,rest] normalised over rest -> back, then affine. */
static ir_value *expand_groupnorm(expander *x, ir_node *n) {
  ir_value *in = n->inputs[0];
  const ir_type *t = &in->type;
  int64_t groups = ir_get_int(n, "groups", 1);
  int64_t grouped[3] = {t->dims[0], groups, ir_type_numel(t) / (t->dims[0] * groups)};
  int64_t axis = 2;
  ir_value *xr = reshape(x, "grouped", in, 3, grouped);
  ir_value *mu = reduce(x, IR_OP_mean, "mean", xr, 1, &axis, true);
  ir_value *xc = op2(x, IR_OP_sub, "centered", xr, mu);
  ir_value *var = reduce(x, IR_OP_mean, "var", op2(x, IR_OP_mul, "square", xc, xc), 1, &axis, true);
  ir_value *rstd = op1(x, IR_OP_rsqrt, "rstd", add_eps(x, "var_eps", var, ir_get_float(n, "eps", 1e-5)));
  ir_value *xn = reshape(x, "normed", op2(x, IR_OP_mul, "normed_grouped", xc, rstd), t->rank, t->dims);
  ir_value *y = op2(x, IR_OP_mul, "scaled", xn, channel_view(x, "weight_view", n->inputs[1], t->rank));
  return op2(x, IR_OP_add, NULL, y, channel_view(x, "bias_view", n->inputs[2], t->rank));
}

/* Inverted dropout: x * mask, mask 0 or 1/(1-p); identity in inference. */
static ir_value *expand_dropout(expander *x, ir_node *n) {
  double p = ir_get_float(n, "p", 0);
  if (!ir_get_bool(n, "training", false) || p == 0) return n->inputs[0];
  ir_value *mask = source(x, IR_OP_dropout_mask, "mask", n->inputs[0]->type);
  ir_set_float(x->g, mask->def, "p", p);
  ir_set_int(x->g, mask->def, "stream", ir_get_int(n, "stream", 0));
  return op2(x, IR_OP_mul, NULL, n->inputs[0], mask);
}

static ir_value *expand_cross_entropy(expander *x, ir_node *n) {
  ir_node *ls = make(x, IR_OP_log_softmax, "log_probs", 1, n->inputs[0]);
  if (!ls) return NULL;
  ir_set_int(x->g, ls, "axis", -1);
  ir_node *nll = make(x, IR_OP_nll_loss, NULL, 2, done(x, ls), n->inputs[1]);
  if (!nll) return NULL;
  ir_set_int(x->g, nll, "ignore_index", ir_get_int(n, "ignore_index", -100));
  return done(x, nll);
}

static ir_value *expand_mse(expander *x, ir_node *n) {
  ir_value *d = op2(x, IR_OP_sub, "diff", n->inputs[0], n->inputs[1]);
  return mean_all(x, NULL, op2(x, IR_OP_mul, "square", d, d));
}

/* mean(softplus(x) - x*y): log(1 + e^x) - x y, stable in the kernel. */
static ir_value *expand_bce_logits(expander *x, ir_node *n) {
  ir_value *sp = op1(x, IR_OP_softplus, "softplus", n->inputs[0]);
  ir_value *xy = op2(x, IR_OP_mul, "xy", n->inputs[0], n->inputs[1]);
  return mean_all(x, NULL, op2(x, IR_OP_sub, "terms", sp, xy));
}

static ir_value *expand_node(expander *x, ir_node *n) {
  switch (n->op) {
  case IR_OP_linear: return expand_linear(x, n);
  case IR_OP_embedding: return expand_embedding(x, n);
  case IR_OP_layernorm: return expand_layernorm(x, n);
  case IR_OP_rmsnorm: return expand_rmsnorm(x, n);
  case IR_OP_mlp: return expand_mlp(x, n);
  case IR_OP_swiglu:
  case IR_OP_geglu: return expand_glu(x, n);
  case IR_OP_attention: return expand_attention(x, n);
  case IR_OP_conv_layer: return expand_conv(x, n);
  case IR_OP_batchnorm: return expand_batchnorm(x, n);
  case IR_OP_groupnorm: return expand_groupnorm(x, n);
  case IR_OP_dropout: return expand_dropout(x, n);
  case IR_OP_cross_entropy: return expand_cross_entropy(x, n);
  case IR_OP_mse: return expand_mse(x, n);
  case IR_OP_bce_logits: return expand_bce_logits(x, n);
  default: return NULL;
  }
}

bool ir_pass_expand(ir_graph *g, char *err, size_t errlen) {
  ir_node *next;
  for (ir_node *n = g->first; n; n = next) {
    next = n->next;
    if (!(ir_op_get(n->op)->flags & IR_OPF_LAYER)) continue;
    ir_value *old = n->results[0];
    expander x = {g, n, old->name, err, errlen, false};
    /* The replacement takes the layer's name; the layer gives it up. */
    ir_value_rename(g, old, ir_graph_unique_name(g, ir_arena_printf(g->arena, "%s.layer", old->name)));
    ir_value *y = expand_node(&x, n);
    if (!y) {
      if (!x.failed) snprintf(err, errlen, "cannot expand %s %%%s", ir_op_get(n->op)->name, x.base);
      return false;
    }
    ir_replace_uses(g, old, y);
    ir_node_remove(g, n);
  }
  return true;
}
