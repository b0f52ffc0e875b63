/* stats.c: parameter counts, memory and FLOPs, for `modelc check`.
 *
 * FLOPs count a multiply-add as 2. Layer ops are counted from their
 * shapes so that the numbers before and after expansion agree in order of
 * magnitude: elementwise 1 per output element, reductions 1 per input
 * element, softmax ~5 per element, layernorm/groupnorm/batchnorm ~8 and
 * rmsnorm ~4 per element. Attention counts full T x T scores and P @ V
 * even when causal (what the expanded graph computes; a fused kernel may
 * skip masked blocks). Arithmetic is in double, so shapes from untrusted
 * text cannot overflow; results saturate at INT64_MAX. */
#include <string.h>

#include "ir.h"

static int64_t to_count(double v) {
  if (!(v > 0)) return 0;
  return v >= 9.2e18 ? INT64_MAX : (int64_t)v;
}

static int64_t add_saturating(int64_t a, int64_t b) {
  return a > INT64_MAX - b ? INT64_MAX : a + b;
}

static double numel(const ir_value *v) { return (double)ir_type_numel(&v->type); }

/* Dimension i, counted from the end when negative; 1 when absent. */
static double dim(const ir_value *v, int i) {
  int rank = v->type.rank;
  if (i < 0) i += rank;
  return i >= 0 && i < rank ? (double)v->type.dims[i] : 1;
}

static double out_numel(const ir_node *n) { return n->num_results ? numel(n->results[0]) : 0; }

static double matmul_flops(const ir_node *n) {
  const ir_value *a = n->inputs[0];
  bool ta = ir_get_bool(n, "transpose_a", false) && a->type.rank >= 2;
  double k = dim(a, ta ? -2 : -1);
  return 2 * out_numel(n) * k;
}

/* Per output element: (C/groups) * kernel volume multiply-adds. */
static double conv_flops(const ir_node *n) {
  const ir_value *w = n->inputs[1];
  double per_out = 1;
  for (int i = 1; i < w->type.rank; i++) per_out *= dim(w, i);
  double flops = 2 * out_numel(n) * per_out;
  if (n->op == IR_OP_conv_layer && n->num_inputs > 2) flops += out_numel(n);
  return flops;
}

static double pool_flops(const ir_node *n) {
  const int64_t *k;
  int count = ir_get_ints(n, "kernel", &k);
  double window = 1;
  for (int i = 0; i < 2 && count > 0; i++) window *= (double)k[count == 1 ? 0 : i < count ? i : 0];
  return out_numel(n) * window;
}

/* x [..., in] -> [..., out]; rank r goes through [..., r]. */
static double linear_flops(const ir_node *n) {
  const ir_value *x = n->inputs[0];
  double in = dim(x, -1), tokens = numel(x) / (in > 0 ? in : 1);
  double out = n->num_results ? dim(n->results[0], -1) : 0;
  int64_t rank = ir_get_int(n, "rank", 0);
  double flops = rank > 0 ? 2 * tokens * (double)rank * (in + out) : 2 * tokens * in * out;
  if (ir_get_bool(n, "bias", false)) flops += tokens * out;
  return flops;
}

/* The hidden width of mlp/swiglu/geglu: the other dim of a weight. */
static double hidden_width(const ir_node *n, double d) {
  for (int i = 1; i < n->num_inputs; i++) {
    const ir_value *w = n->inputs[i];
    if (w->type.rank == 2) return dim(w, 0) == d ? dim(w, 1) : dim(w, 0);
  }
  return d;
}

static double ffn_flops(const ir_node *n) {
  const ir_value *x = n->inputs[0];
  double d = dim(x, -1), tokens = numel(x) / (d > 0 ? d : 1), f = hidden_width(n, d);
  if (n->op == IR_OP_mlp) return 4 * tokens * d * f + 2 * tokens * f + tokens * d;
  return 6 * tokens * d * f + 2 * tokens * f; /* gate, up, down; act and product */
}

/* x [B,T,D]: projections, scores q k^T and P v, softmax. */
static double attention_flops(const ir_node *n) {
  const ir_value *x = n->inputs[0];
  double d = dim(x, -1), tokens = numel(x) / (d > 0 ? d : 1);
  double t = x->type.rank >= 2 ? dim(x, -2) : tokens, batch = tokens / (t > 0 ? t : 1);
  double heads = (double)ir_get_int(n, "heads", 1);
  double kv = (double)ir_get_int(n, "kv_heads", 0), hd = (double)ir_get_int(n, "head_dim", 0);
  if (heads <= 0) heads = 1;
  if (kv <= 0) kv = heads;
  if (hd <= 0) hd = d / heads;
  double q = heads * hd, k = kv * hd;
  bool gate = strcmp(ir_get_str(n, "gate", "none"), "sigmoid") == 0;
  double proj = 2 * tokens * d * (q + 2 * k + q + (gate ? q : 0));
  double core = 4 * batch * heads * t * t * hd + 5 * batch * heads * t * t;
  double extra = (gate ? 2 * tokens * q : 0);
  if (ir_get_bool(n, "bias", false)) extra += tokens * (q + 2 * k + d + (gate ? q : 0));
  return proj + core + extra;
}

static double layer_flops(const ir_node *n) {
  double x = numel(n->inputs[0]);
  switch (n->op) {
  case IR_OP_linear: return linear_flops(n);
  case IR_OP_mlp:
  case IR_OP_swiglu:
  case IR_OP_geglu: return ffn_flops(n);
  case IR_OP_attention: return attention_flops(n);
  case IR_OP_conv_layer: return conv_flops(n);
  case IR_OP_layernorm:
  case IR_OP_groupnorm:
  case IR_OP_batchnorm: return 8 * x;
  case IR_OP_rmsnorm: return 4 * x;
  case IR_OP_dropout: return x;
  case IR_OP_cross_entropy: return 5 * x + numel(n->inputs[1]);
  case IR_OP_mse: return 3 * x;
  case IR_OP_bce_logits: return 6 * x;
  default: return 0; /* embedding: a lookup */
  }
}

static double primitive_flops(const ir_node *n, unsigned flags) {
  switch (n->op) {
  case IR_OP_softmax:
  case IR_OP_log_softmax: return 5 * numel(n->inputs[0]);
  case IR_OP_nll_loss: return numel(n->inputs[1]);
  case IR_OP_matmul: return matmul_flops(n);
  case IR_OP_conv: return conv_flops(n);
  case IR_OP_maxpool:
  case IR_OP_avgpool: return pool_flops(n);
  case IR_OP_upsample: return out_numel(n);
  case IR_OP_rope: return 3 * numel(n->inputs[0]);
  default: break;
  }
  if (flags & IR_OPF_ELEMENTWISE) return out_numel(n);
  if (flags & IR_OPF_REDUCE) return numel(n->inputs[0]);
  return 0; /* layout, gather, effects */
}

int64_t ir_node_flops(const ir_node *node) {
  const ir_op_info *info = ir_op_get(node->op);
  if (!info || (info->flags & IR_OPF_SOURCE) || node->num_inputs < info->min_inputs ||
      node->num_inputs < 1)
    return 0;
  for (int i = 0; i < node->num_inputs; i++)
    if (!node->inputs[i]) return 0;
  if (info->flags & IR_OPF_LAYER) return to_count(layer_flops(node));
  return to_count(primitive_flops(node, info->flags));
}

void ir_graph_stats(const ir_graph *g, ir_stats *out) {
  memset(out, 0, sizeof *out);
  for (const ir_node *n = g->first; n; n = n->next) {
    const ir_op_info *info = ir_op_get(n->op);
    if (!info) continue;
    for (int i = 0; i < n->num_results; i++) {
      const ir_type *t = &n->results[i]->type;
      int64_t bytes = ir_type_bytes(t);
      if (n->op == IR_OP_param) {
        out->num_params = add_saturating(out->num_params, ir_type_numel(t));
        out->param_bytes = add_saturating(out->param_bytes, bytes);
      } else if (n->op == IR_OP_buffer) {
        out->buffer_bytes = add_saturating(out->buffer_bytes, bytes);
      } else if (n->op == IR_OP_input) {
        out->input_bytes = add_saturating(out->input_bytes, bytes);
      } else if (!(info->flags & IR_OPF_SOURCE)) {
        out->activation_bytes = add_saturating(out->activation_bytes, bytes);
      }
    }
    out->flops = add_saturating(out->flops, ir_node_flops(n));
  }
}
