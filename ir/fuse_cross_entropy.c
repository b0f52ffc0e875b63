/* fuse_cross_entropy.c: log_softmax + nll_loss into softmax_cross_entropy.
 *
 *   logp = log_softmax x axis=-1      (used only by the loss)
 *   loss = nll_loss logp, targets
 * becomes `loss, lse = softmax_cross_entropy x, targets`, whether it came
 * from cross_entropy() or was spelled out. The log-probabilities (as large
 * as the logits: [B,T,V] for a language model) are never stored; the
 * gradient, from the fused rule in autodiff, recomputes the softmax from
 * the logits and each row's log-sum-exp. Runs before autodiff. */
#include <stdio.h>

#include "ir.h"

bool ir_pass_fuse_cross_entropy(ir_graph *g, char *err, size_t errlen) {
  bool changed = false;
  for (ir_node *n = g->first; n; n = n->next) {
    if (n->op != IR_OP_nll_loss) continue;
    ir_value *logp = n->inputs[0];
    ir_node *ls = logp->def;
    if (ls->op != IR_OP_log_softmax || ir_count_uses(g, logp) != 1) continue;
    int64_t axis = ir_get_int(ls, "axis", -1);
    if (axis != -1 && axis != logp->type.rank - 1) continue;
    if (logp->type.dtype != IR_f32 || n->inputs[1]->type.dtype != IR_i32) continue;
    ir_value *ins[2] = {ls->inputs[0], n->inputs[1]};
    ir_node *f = ir_node_insert(g, n, IR_OP_softmax_cross_entropy, 2, ins, NULL);
    if (!f) {
      snprintf(err, errlen, "fuse_cross_entropy: out of memory");
      return false;
    }
    f->loc = n->loc;
    f->scope = n->scope;
    ir_set_int(g, f, "ignore_index", ir_get_int(n, "ignore_index", -100));
    char msg[IR_ERR_LEN];
    if (!ir_node_infer(f, msg, sizeof msg)) {
      snprintf(err, errlen, "fuse_cross_entropy: %s", msg);
      return false;
    }
    ir_value *loss = n->results[0];
    const char *name = loss->name;
    ir_replace_uses(g, loss, f->results[0]);
    ir_node_remove(g, n);
    ir_value_rename(g, f->results[0], name);
    ir_value_rename(g, f->results[1], ir_graph_unique_name(g, ir_arena_printf(g->arena, "%s.lse", name)));
    n = f;
    changed = true;
  }
  return !changed || ir_pass_dce(g, err, errlen);
}
