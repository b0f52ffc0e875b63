/* fuse_gating.c: SwiGLU/GEGLU gate and up projections as one GEMM.
 *
 *   g = matmul x, Wg transpose_b      Wg, Wu [F, D]
 *   u = matmul x, Wu transpose_b
 *   h = mul act(g), u                 (act silu, gelu, gelu_tanh or
 *                                      sigmoid; either operand order)
 * with g, u and act(g) used once becomes
 *   W  = concat Wg, Wu axis=0         [2F, D]
 *   gu = matmul x, W transpose_b      [..., 2F]: one GEMM, x read once
 *   h  = glu gu act=...               the act(a) * b epilogue
 * so the forward makes one pass over x and the backward one GEMM for d.x
 * (the gradients of Wg and Wu are slices of one weight gradient). It
 * fires on swiglu()/geglu() and on the same product spelled out. Runs
 * before autodiff. */
#include <stdio.h>

#include "ir.h"

static bool is_projection(const ir_value *v, const ir_value *x) {
  const ir_node *n = v->def;
  return n->op == IR_OP_matmul && n->inputs[0] == x && ir_get_bool(n, "transpose_b", false) &&
         !ir_get_bool(n, "transpose_a", false) && n->inputs[1]->type.rank == 2;
}

static bool gate_act(ir_op op) {
  return op == IR_OP_silu || op == IR_OP_gelu || op == IR_OP_gelu_tanh || op == IR_OP_sigmoid;
}

/* h = mul a, u (or u, a) with a = act(g): the gate's matmul, the up's. */
static bool match(ir_graph *g, ir_node *h, ir_node **gate, ir_node **up, ir_node **act) {
  for (int side = 0; side < 2; side++) {
    ir_value *a = h->inputs[side], *u = h->inputs[1 - side];
    if (!gate_act(a->def->op) || a->def->inputs[0]->def->op != IR_OP_matmul) continue;
    ir_value *gv = a->def->inputs[0], *x = gv->def->inputs[0];
    if (u->def->op != IR_OP_matmul || !is_projection(gv, x) || !is_projection(u, x)) continue;
    if (gv == u || !ir_type_equal(&gv->def->inputs[1]->type, &u->def->inputs[1]->type)) continue;
    if (gv->type.dtype != IR_f32 || ir_count_uses(g, gv) != 1 || ir_count_uses(g, u) != 1 ||
        ir_count_uses(g, a) != 1)
      continue;
    *gate = gv->def, *up = u->def, *act = a->def;
    return true;
  }
  return false;
}

static ir_node *node_at(ir_graph *g, ir_node *before, ir_op op, int n, ir_value **ins,
                        const char *name, const ir_node *like) {
  ir_node *node = ir_node_insert(g, before, op, n, ins, name);
  if (node) node->loc = like->loc, node->scope = like->scope;
  return node;
}

bool ir_pass_fuse_gating(ir_graph *g, char *err, size_t errlen) {
  bool changed = false;
  char msg[IR_ERR_LEN];
  for (ir_node *h = g->first; h; h = h->next) {
    ir_node *gate, *up, *act;
    if (h->op != IR_OP_mul || !match(g, h, &gate, &up, &act)) continue;
    const char *base = h->results[0]->name;
    ir_value *ws[2] = {gate->inputs[1], up->inputs[1]};
    /* after the later projection: both weights and x exist there */
    ir_node *at = gate->id > up->id ? gate->next : up->next;
    ir_node *w = node_at(g, at, IR_OP_concat, 2, ws, ir_arena_printf(g->arena, "%s.gate_up_weight", base), h);
    if (!w) goto oom;
    ir_set_int(g, w, "axis", 0);
    if (!ir_node_infer(w, msg, sizeof msg)) goto bad;
    ir_value *mm_in[2] = {gate->inputs[0], w->results[0]};
    ir_node *mm = node_at(g, at, IR_OP_matmul, 2, mm_in, ir_arena_printf(g->arena, "%s.gate_up", base), h);
    if (!mm) goto oom;
    ir_set_bool(g, mm, "transpose_a", false);
    ir_set_bool(g, mm, "transpose_b", true);
    if (!ir_node_infer(mm, msg, sizeof msg)) goto bad;
    ir_value *glu_in = mm->results[0];
    ir_node *glu = node_at(g, h, IR_OP_glu, 1, &glu_in, NULL, h);
    if (!glu) goto oom;
    ir_set_str(g, glu, "act", ir_op_get(act->op)->name);
    if (!ir_node_infer(glu, msg, sizeof msg)) goto bad;
    ir_node_replace(g, h, glu);
    h = glu;
    changed = true;
  }
  return !changed || ir_pass_dce(g, err, errlen);
oom:
  snprintf(err, errlen, "fuse_gating: out of memory");
  return false;
bad:
  snprintf(err, errlen, "fuse_gating: internal error: %s", msg);
  return false;
}
