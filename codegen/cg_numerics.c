/* cg_numerics.c: the check that `--check-numerics` turns on in generated
 * code. After each kernel that writes a float buffer, one line:
 *
 *   if (modelc_rt_check_numerics_on() &&
 *       modelc_rt_check_finite(OUT, COUNT, "%h", "matmul", "spec.yaml:12:9", "forward",
 *                              m->error, sizeof m->error) != 0) return -1;
 *
 * naming the IR op of the kernel (the first node when fused), where the
 * spec wrote it, and whether it belongs to the forward or the backward
 * part of the step. The checks are off unless the driver (or a program
 * embedding the model) turns them on, so each costs a call and a branch. */
#include <string.h>

#include "codegen/cg.h"

/* A C string literal of s: quotes, backslashes and control characters
 * escaped. */
static const char *c_string(ir_arena *a, const char *s) {
  size_t n = strlen(s);
  char *out = ir_arena_alloc(a, 4 * n + 3), *o = out;
  *o++ = '"';
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if (*c == '"' || *c == '\\') {
      *o++ = '\\';
      *o++ = (char)*c;
    } else if (*c < 0x20 || *c == 0x7f || *c == '?') { /* '?': no trigraphs */
      o += snprintf(o, 5, "\\%03o", *c);
    } else {
      *o++ = (char)*c;
    }
  }
  *o++ = '"';
  *o = '\0';
  return out;
}

int cg_backward_start(const cg_entry *entry) {
  /* Autodiff appends the backward graph after the forward graph's output
   * effects (expand rewrites in place, before them): kernels of nodes
   * placed after the last output are backward. */
  const ir_graph *g = entry->graph;
  if (!g->training) return entry->num_kernels;
  int *position = ir_arena_alloc(g->arena, sizeof(int) * (size_t)(g->next_node_id + 1));
  for (int i = 0; i <= g->next_node_id; i++) position[i] = -1; /* not in the graph: forward */
  int at = 0, last_output = -1;
  for (const ir_node *n = g->first; n; n = n->next, at++) {
    if (n->id >= 0 && n->id <= g->next_node_id) position[n->id] = at;
    if (n->op == IR_OP_output) last_output = at;
  }
  for (int i = 0; last_output >= 0 && i < entry->num_kernels; i++) {
    const ir_node *n = entry->kernels[i].node;
    if (n && n->id >= 0 && n->id <= g->next_node_id && position[n->id] > last_output) return i;
  }
  return entry->num_kernels;
}

void cg_emit_numerics_check(cg_emitter *e, const cg_program *p, const cg_kernel *k, bool backward) {
  if (k->out < 0 || !k->node) return;
  const cg_buffer *b = &p->buffers[k->out], *r = b;
  if (b->type.dtype != IR_f32) return;
  while (r->alias_of >= 0) r = &p->buffers[r->alias_of];
  if (r->kind == CG_BUF_INPUT) return;
  ir_arena *a = p->arena;
  const ir_loc *loc = &k->node->loc;
  const char *where = loc->file ? ir_arena_printf(a, "%s:%d:%d", loc->file, loc->line, loc->col)
                                : "(no spec location)";
  cg_emitf(e,
           "if (modelc_rt_check_numerics_on() && modelc_rt_check_finite(%s, "
           "%lld, %s, \"%s\", %s, \"%s\", m->error, sizeof m->error) != 0) return -1;\n",
           cg_c_pointer(p, k->out, false), (long long)ir_type_numel(&b->type), c_string(a, b->name ? b->name : "?"),
           ir_op_get(k->node->op)->name, c_string(a, where), backward ? "backward" : "forward");
}
