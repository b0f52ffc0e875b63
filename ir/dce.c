/* dce.c: dead-code elimination.
 *
 * A node is dead when none of its results is used and it has no effect.
 * The model's interface and state stay even when unused: input, param and
 * buffer nodes are kept, so the generated API and the state_dict do not
 * depend on what the graph happens to use. One backward walk suffices:
 * uses come after definitions, so by the time a node is reached every
 * later user has been decided. */
#include <stdio.h>

#include "ir.h"

static bool always_kept(const ir_node *node) {
  const ir_op_info *info = ir_op_get(node->op);
  if (!info || (info->flags & IR_OPF_EFFECT)) return true;
  return node->op == IR_OP_input || node->op == IR_OP_param || node->op == IR_OP_buffer;
}

static bool is_dead(const ir_node *node, const int *uses) {
  if (always_kept(node)) return false;
  for (int i = 0; i < node->num_results; i++)
    if (uses[node->results[i]->id]) return false;
  return true;
}

bool ir_pass_dce(ir_graph *g, char *err, size_t errlen) {
  int count = g->next_value_id;
  int *uses = ir_arena_alloc(g->arena, ((size_t)count + 1) * sizeof *uses);
  if (!uses) {
    snprintf(err, errlen, "dce: out of memory");
    return false;
  }
  for (ir_node *n = g->first; n; n = n->next)
    for (int i = 0; i < n->num_inputs; i++) uses[n->inputs[i]->id]++;
  for (ir_node *n = g->last, *prev; n; n = prev) {
    prev = n->prev;
    if (!is_dead(n, uses)) continue;
    for (int i = 0; i < n->num_inputs; i++) uses[n->inputs[i]->id]--;
    ir_node_remove(g, n);
  }
  return true;
}
