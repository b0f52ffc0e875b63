/* fuse_conv.c: a convolution reads its upsampled and concatenated input
 * in place.
 *
 *   u = upsample a scale=s mode="nearest"       (used only by the concat)
 *   x = concat u, b axis=1                      (used only by the conv)
 *   y = conv x, w groups=1
 * becomes
 *   y = conv_concat w, a, b scales=[s, 1]
 * whose kernels read each part through the upsampling's index map: the
 * upsampled and the concatenated tensors are never stored, in the
 * forward or (autodiff runs after this pass) in the backward, where
 * conv_concat_grad_input writes each part's gradient directly (an
 * upsampled part sums its copies) and conv_concat_grad_weight reads the
 * parts like the forward. A conv over an upsample alone, or over a
 * concat alone, fuses the same way (one part, or scales all 1). The U-Net
 * decoder's conv(concat(upsample(x), skip)) is the case it is for.
 *
 * It does not fire when the concat or the upsample has another use (the
 * tensor must exist anyway), for bilinear upsampling, for a concat on
 * another axis or of more than three parts, or for grouped or 1-D
 * convolutions. Bias, activation and residual after the conv are
 * fuse_elementwise's (one pass over the conv's output). Runs before
 * autodiff. */
#include <stdio.h>
#include <string.h>

#include "ir.h"

enum { MAX_PARTS = 3 };

static bool nearest_upsample(const ir_graph *g, const ir_value *v) {
  const ir_node *n = v->def;
  return n->op == IR_OP_upsample && strcmp(ir_get_str(n, "mode", "nearest"), "nearest") == 0 &&
         ir_count_uses(g, v) == 1;
}

/* One part: the upsample's input and scale, or the value itself. */
static void part_of(const ir_graph *g, ir_value *v, ir_value **x, int64_t *scale) {
  if (nearest_upsample(g, v)) {
    *x = v->def->inputs[0];
    *scale = ir_get_int(v->def, "scale", 1);
  } else {
    *x = v;
    *scale = 1;
  }
}

/* The parts of conv's input; 0 when the pattern is absent. */
static int match(const ir_graph *g, const ir_node *conv, ir_value *parts[MAX_PARTS],
                 int64_t scales[MAX_PARTS]) {
  ir_value *x = conv->inputs[0];
  if (x->type.rank != 4 || x->type.dtype != IR_f32 || ir_get_int(conv, "groups", 1) != 1 ||
      ir_count_uses(g, x) != 1)
    return 0;
  const ir_node *d = x->def;
  if (d->op == IR_OP_upsample) {
    if (!nearest_upsample(g, x)) return 0;
    part_of(g, x, &parts[0], &scales[0]);
    return 1;
  }
  int64_t axis = ir_get_int(d, "axis", 0);
  if (d->op != IR_OP_concat || (axis != 1 && axis != -3) || d->num_inputs > MAX_PARTS) return 0;
  for (int i = 0; i < d->num_inputs; i++) part_of(g, d->inputs[i], &parts[i], &scales[i]);
  return d->num_inputs;
}

static void copy_window(ir_graph *g, const ir_node *from, ir_node *to) {
  static const char *const names[3] = {"stride", "padding", "dilation"};
  for (int i = 0; i < 3; i++) {
    const int64_t *v;
    int n = ir_get_ints(from, names[i], &v);
    if (n) ir_set_ints(g, to, names[i], n, v);
  }
}

bool ir_pass_fuse_conv(ir_graph *g, char *err, size_t errlen) {
  bool changed = false;
  char msg[IR_ERR_LEN];
  for (ir_node *conv = g->first; conv; conv = conv->next) {
    ir_value *parts[MAX_PARTS];
    int64_t scales[MAX_PARTS];
    int count = conv->op == IR_OP_conv ? match(g, conv, parts, scales) : 0;
    if (count == 0) continue;
    ir_value *ins[1 + MAX_PARTS] = {conv->inputs[1]};
    for (int i = 0; i < count; i++) ins[1 + i] = parts[i];
    ir_node *fused = ir_node_insert(g, conv, IR_OP_conv_concat, 1 + count, ins, NULL);
    if (!fused) {
      snprintf(err, errlen, "fuse_conv: out of memory");
      return false;
    }
    fused->loc = conv->loc, fused->scope = conv->scope;
    copy_window(g, conv, fused);
    ir_set_ints(g, fused, "scales", count, scales);
    if (!ir_node_infer(fused, msg, sizeof msg)) {
      snprintf(err, errlen, "fuse_conv: internal error: %s", msg);
      return false;
    }
    ir_node_replace(g, conv, fused);
    conv = fused;
    changed = true;
  }
  return !changed || ir_pass_dce(g, err, errlen);
}
