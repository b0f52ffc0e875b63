/* cg_lower.c: a graph's nodes into kernels over buffers.
 *
 * Elementwise ops and layout moves (broadcast, slice, permute) become
 * loop nests: the output shape, collapsed where every operand is
 * contiguous across neighbouring dims, and each operand's strides in it
 * (0 where it is broadcast). Scalar constants are folded into the
 * expression. Reshape makes no kernel: its buffer views its input's. */
#include <string.h>

#include "codegen/cg.h"

cg_program *cg_program_new(ir_arena *arena, const char *model) {
  cg_program *p = ir_arena_alloc(arena, sizeof *p);
  p->arena = arena;
  p->model = model;
  return p;
}

/* ---- buffers ---- */

static int new_buffer(cg_program *p, cg_buffer_kind kind, const ir_value *v, ir_type type) {
  if (p->num_buffers == p->cap_buffers) {
    int cap = p->cap_buffers ? 2 * p->cap_buffers : 256;
    p->buffers = ir_arena_grow(p->arena, p->buffers, sizeof(cg_buffer) * (size_t)p->cap_buffers,
                               sizeof(cg_buffer) * (size_t)cap);
    p->cap_buffers = cap;
  }
  cg_buffer *b = &p->buffers[p->num_buffers];
  memset(b, 0, sizeof *b);
  b->id = p->num_buffers;
  b->kind = kind;
  b->value = v;
  b->name = v ? v->name : NULL;
  b->type = type;
  b->alias_of = -1;
  b->first_use = b->last_use = -1;
  return p->num_buffers++;
}

typedef struct lowering {
  cg_program *p;
  cg_entry *entry;
  int *buffer_of; /* value id -> buffer, -1 */
  int num_values;
  int cap_kernels;
  char *err;
  size_t errlen;
} lowering;

/* State and inputs are shared by every entry: found by name. */
static int shared_buffer(lowering *l, const ir_value *v, cg_buffer_kind kind) {
  cg_program *p = l->p;
  for (int i = 0; i < p->num_buffers; i++) {
    cg_buffer *b = &p->buffers[i];
    if (b->kind == kind && b->value && strcmp(b->name, v->name) == 0) {
      if (!ir_type_equal(&b->type, &v->type)) return -1;
      return i;
    }
  }
  return -2;
}

static bool fail(lowering *l, const char *msg, const ir_value *v) {
  snprintf(l->err, l->errlen, "%s: %%%s", msg, v ? v->name : "?");
  return false;
}

static bool lower_source(lowering *l, const ir_node *n) {
  cg_program *p = l->p;
  const ir_value *v = n->results[0];
  cg_buffer_kind kind = n->op == IR_OP_param ? CG_BUF_PARAM
                        : n->op == IR_OP_buffer ? CG_BUF_STATE
                                                : CG_BUF_INPUT;
  int b = shared_buffer(l, v, kind);
  if (b == -1) return fail(l, "type differs between entry points", v);
  if (b == -2) {
    if (p->num_entries > 0) return fail(l, "not present in the first entry point", v);
    b = new_buffer(p, kind, v, v->type);
    if (kind == CG_BUF_PARAM) {
      if (p->num_params == 1024) return fail(l, "more than 1024 parameters", v);
      p->buffers[b].index = p->num_params;
      p->param_buffers[p->num_params] = b;
      int g = new_buffer(p, CG_BUF_GRAD, NULL, v->type);
      p->buffers[g].name = v->name;
      p->buffers[g].index = p->num_params;
      p->grad_buffers[p->num_params++] = g;
    } else if (kind == CG_BUF_STATE) {
      if (p->num_states == 256) return fail(l, "more than 256 buffers", v);
      p->buffers[b].index = p->num_states;
      p->state_buffers[p->num_states++] = b;
    } else {
      if (p->num_inputs == 32) return fail(l, "more than 32 inputs", v);
      if (v->type.dtype != IR_f32 && v->type.dtype != IR_i32)
        return fail(l, "the C backend takes f32 and i32 inputs only", v);
      p->buffers[b].index = p->num_inputs;
      p->inputs[p->num_inputs++] = v;
    }
  }
  l->buffer_of[v->id] = b;
  return true;
}

/* ---- kernels ---- */

static cg_kernel *new_kernel(lowering *l, cg_kernel_kind kind, const ir_node *n, int out) {
  cg_entry *e = l->entry;
  if (e->num_kernels == l->cap_kernels) {
    int cap = l->cap_kernels ? 2 * l->cap_kernels : 256;
    e->kernels = ir_arena_grow(l->p->arena, e->kernels, sizeof(cg_kernel) * (size_t)l->cap_kernels,
                               sizeof(cg_kernel) * (size_t)cap);
    l->cap_kernels = cap;
  }
  cg_kernel *k = &e->kernels[e->num_kernels];
  memset(k, 0, sizeof *k);
  k->id = e->num_kernels++;
  k->kind = kind;
  k->node = n;
  k->out = out;
  /* A C identifier from the value's name: k12_layers_0_attn_scores */
  const char *name = n->num_results ? n->results[0]->name : ir_op_get(n->op)->name;
  size_t len = strlen(name);
  char *id = ir_arena_alloc(l->p->arena, len + 32);
  int w = snprintf(id, len + 32, "%s_k%d_", e->name, k->id);
  for (size_t i = 0; i < len && i < 48; i++) {
    char c = name[i];
    id[w++] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ? c : '_';
  }
  id[w] = 0;
  k->name = id;
  return k;
}

static int temp_for(lowering *l, const ir_value *v) {
  int b = new_buffer(l->p, CG_BUF_TEMP, v, v->type);
  l->buffer_of[v->id] = b;
  return b;
}

static int operand_of(lowering *l, const ir_value *v) { return l->buffer_of[v->id]; }

/* Contiguous element strides of a type. */
static void contiguous(const ir_type *t, int64_t *strides) {
  int64_t s = 1;
  for (int i = t->rank - 1; i >= 0; i--) {
    strides[i] = s;
    s *= t->dims[i];
  }
}

/* Strides of an operand broadcast (aligned right) to the output shape. */
static void broadcast_strides(const ir_type *in, const ir_type *out, int64_t *strides) {
  int64_t own[IR_MAX_RANK];
  contiguous(in, own);
  int shift = out->rank - in->rank;
  for (int d = 0; d < out->rank; d++) {
    int i = d - shift;
    strides[d] = i >= 0 && in->dims[i] != 1 ? own[i] : 0;
  }
}

/* Merges dims d, d+1 wherever every operand and the output step through
 * them as one: fewer, longer loops. */
static void collapse(cg_kernel *k, const ir_type *out) {
  int64_t dims[IR_MAX_RANK], ostr[IR_MAX_RANK];
  int rank = out->rank;
  memcpy(dims, out->dims, sizeof dims);
  contiguous(out, ostr);
  int d = rank - 2;
  while (d >= 0) {
    bool ok = ostr[d] == ostr[d + 1] * dims[d + 1];
    for (int o = 0; o < k->num_operands && ok; o++)
      ok = k->strides[o][d] == k->strides[o][d + 1] * dims[d + 1];
    if (ok) {
      dims[d] *= dims[d + 1];
      ostr[d] = ostr[d + 1];
      for (int o = 0; o < k->num_operands; o++) k->strides[o][d] = k->strides[o][d + 1];
      for (int j = d + 1; j < rank - 1; j++) {
        dims[j] = dims[j + 1];
        ostr[j] = ostr[j + 1];
        for (int o = 0; o < k->num_operands; o++) k->strides[o][j] = k->strides[o][j + 1];
      }
      rank--;
    }
    d--;
  }
  k->loop_rank = rank;
  memcpy(k->loop_dims, dims, sizeof dims);
}

static cg_expr *expr_new(ir_arena *a, cg_expr_kind kind, ir_dtype dtype) {
  cg_expr *x = ir_arena_alloc(a, sizeof *x);
  x->kind = kind;
  x->dtype = dtype;
  return x;
}

/* An operand: a folded scalar constant, or a load with its strides. */
static cg_expr *operand_expr(lowering *l, cg_kernel *k, const ir_value *v, const ir_type *out) {
  if (v->def->op == IR_OP_const && v->type.rank == 0) {
    cg_expr *c = expr_new(l->p->arena, CG_EXPR_CONST, v->type.dtype);
    c->value = ir_get_float(v->def, "value", 0);
    return c;
  }
  cg_expr *x = expr_new(l->p->arena, CG_EXPR_LOAD, v->type.dtype);
  x->operand = k->num_operands;
  k->operands[k->num_operands] = operand_of(l, v);
  broadcast_strides(&v->type, out, k->strides[k->num_operands]);
  k->num_operands++;
  return x;
}

static bool lower_elementwise(lowering *l, const ir_node *n) {
  const ir_value *v = n->results[0];
  cg_kernel *k = new_kernel(l, CG_K_ELEMENTWISE, n, temp_for(l, v));
  cg_expr *x = expr_new(l->p->arena, CG_EXPR_OP, v->type.dtype);
  x->op = n->op;
  x->num_args = n->num_inputs;
  for (int i = 0; i < n->num_inputs; i++) x->args[i] = operand_expr(l, k, n->inputs[i], &v->type);
  k->expr = x;
  collapse(k, &v->type);
  return true;
}

/* fused_elementwise: its expression over loads of its inputs (each
 * input one operand, however often the expression reads it). */
static cg_expr *fexpr_to_cg(lowering *l, const ir_fexpr *x, cg_expr *const *inputs) {
  if (x->kind == IR_FEXPR_INPUT) return inputs[x->input];
  cg_expr *y = expr_new(l->p->arena, x->kind == IR_FEXPR_CONST ? CG_EXPR_CONST : CG_EXPR_OP, IR_f32);
  y->value = x->value;
  y->op = x->op;
  y->num_args = x->num_args;
  for (int i = 0; x->kind == IR_FEXPR_OP && i < x->num_args; i++)
    if (!(y->args[i] = fexpr_to_cg(l, x->args[i], inputs))) return NULL;
  return y;
}

static bool lower_fused(lowering *l, const ir_node *n) {
  const ir_value *v = n->results[0];
  if (n->num_inputs > CG_MAX_OPERANDS) return fail(l, "too many operands", v);
  char msg[IR_ERR_LEN];
  const ir_fexpr *x = ir_fexpr_parse(l->p->arena, ir_get_str(n, "expr", ""), n->num_inputs, msg, sizeof msg);
  if (!x) return fail(l, msg, v);
  cg_kernel *k = new_kernel(l, CG_K_ELEMENTWISE, n, temp_for(l, v));
  cg_expr *inputs[CG_MAX_OPERANDS];
  for (int i = 0; i < n->num_inputs; i++) inputs[i] = operand_expr(l, k, n->inputs[i], &v->type);
  if (!(k->expr = fexpr_to_cg(l, x, inputs))) return fail(l, "out of memory", v);
  collapse(k, &v->type);
  return true;
}

/* A copy whose operand is read through explicit strides (permute, slice,
 * broadcast): the expression is a bare load. */
static cg_kernel *copy_kernel(lowering *l, const ir_node *n) {
  const ir_value *v = n->results[0];
  cg_kernel *k = new_kernel(l, CG_K_ELEMENTWISE, n, temp_for(l, v));
  cg_expr *x = expr_new(l->p->arena, CG_EXPR_LOAD, v->type.dtype);
  x->operand = 0;
  k->expr = x;
  k->num_operands = 1;
  k->operands[0] = operand_of(l, n->inputs[0]);
  return k;
}

static bool lower_permute(lowering *l, const ir_node *n) {
  cg_kernel *k = copy_kernel(l, n);
  const int64_t *perm;
  int rank = ir_get_ints(n, "perm", &perm);
  int64_t in_strides[IR_MAX_RANK];
  contiguous(&n->inputs[0]->type, in_strides);
  for (int d = 0; d < rank; d++) k->strides[0][d] = in_strides[perm[d]];
  collapse(k, &n->results[0]->type);
  return true;
}

static bool lower_slice(lowering *l, const ir_node *n) {
  cg_kernel *k = copy_kernel(l, n);
  const ir_type *in = &n->inputs[0]->type;
  int64_t axis = ir_get_int(n, "axis", 0);
  if (axis < 0) axis += in->rank;
  contiguous(in, k->strides[0]);
  k->base[0] = ir_get_int(n, "start", 0) * k->strides[0][axis];
  collapse(k, &n->results[0]->type);
  return true;
}

static bool lower_broadcast(lowering *l, const ir_node *n) {
  cg_kernel *k = copy_kernel(l, n);
  broadcast_strides(&n->inputs[0]->type, &n->results[0]->type, k->strides[0]);
  collapse(k, &n->results[0]->type);
  return true;
}

/* reshape: a view of its input's memory. */
static bool lower_reshape(lowering *l, const ir_node *n) {
  const ir_value *v = n->results[0];
  int base = operand_of(l, n->inputs[0]);
  int b = new_buffer(l->p, CG_BUF_TEMP, v, v->type);
  while (l->p->buffers[base].alias_of >= 0) base = l->p->buffers[base].alias_of;
  l->p->buffers[b].alias_of = base;
  l->buffer_of[v->id] = b;
  return true;
}

static bool lower_generic(lowering *l, const ir_node *n, cg_kernel_kind kind) {
  int out = n->num_results ? temp_for(l, n->results[0]) : -1;
  cg_kernel *k = new_kernel(l, kind, n, out);
  if (n->num_inputs > CG_MAX_OPERANDS) return fail(l, "too many operands", n->results[0]);
  if (n->num_results > 3) return fail(l, "more than three results", n->results[0]);
  for (int i = 1; i < n->num_results; i++) k->more_outs[k->num_more_outs++] = temp_for(l, n->results[i]);
  for (int i = 0; i < n->num_inputs; i++) k->operands[k->num_operands++] = operand_of(l, n->inputs[i]);
  return true;
}

static bool lower_grad(lowering *l, const ir_node *n) {
  cg_kernel *k = new_kernel(l, CG_K_GRAD, n, -1);
  int param = operand_of(l, n->inputs[0]);
  if (l->p->buffers[param].kind != CG_BUF_PARAM) return fail(l, "grad of a non-parameter", n->inputs[0]);
  k->out = l->p->grad_buffers[l->p->buffers[param].index];
  k->operands[k->num_operands++] = operand_of(l, n->inputs[1]);
  return true;
}

static bool lower_output(lowering *l, const ir_node *n) {
  cg_entry *e = l->entry;
  const char *name = ir_get_str(n, "name", "");
  int b = operand_of(l, n->inputs[0]);
  if (strcmp(name, "loss") == 0) {
    e->loss_buffer = b;
    return true;
  }
  if (e->num_outputs == 32) return fail(l, "more than 32 outputs", n->inputs[0]);
  e->output_names[e->num_outputs] = name;
  e->output_buffers[e->num_outputs++] = b;
  return true;
}

static bool lower_node(lowering *l, const ir_node *n) {
  unsigned flags = ir_op_get(n->op)->flags;
  switch (n->op) {
  case IR_OP_input:
  case IR_OP_param:
  case IR_OP_buffer: return lower_source(l, n);
  case IR_OP_const: return lower_generic(l, n, CG_K_CONST);
  case IR_OP_reshape: return lower_reshape(l, n);
  case IR_OP_permute: return lower_permute(l, n);
  case IR_OP_slice: return lower_slice(l, n);
  case IR_OP_broadcast: return lower_broadcast(l, n);
  case IR_OP_concat: return lower_generic(l, n, CG_K_CONCAT);
  case IR_OP_pad: return lower_generic(l, n, CG_K_PAD);
  case IR_OP_matmul: return lower_generic(l, n, CG_K_GEMM);
  case IR_OP_grad: return lower_grad(l, n);
  case IR_OP_assign: return lower_generic(l, n, CG_K_ASSIGN);
  case IR_OP_output: return lower_output(l, n);
  case IR_OP_fused_elementwise: return lower_fused(l, n);
  default: break;
  }
  if (flags & IR_OPF_LAYER) return fail(l, "layer op left unexpanded", n->results[0]);
  if (flags & IR_OPF_ELEMENTWISE) return lower_elementwise(l, n);
  return lower_generic(l, n, CG_K_CALL);
}

static void mark_input(const cg_program *p, cg_entry *e, int b) {
  if (b < 0) return;
  while (p->buffers[b].alias_of >= 0) b = p->buffers[b].alias_of;
  if (p->buffers[b].kind == CG_BUF_INPUT) e->input_used[p->buffers[b].index] = true;
}

bool cg_lower_entry(cg_program *p, const char *name, const ir_graph *g, char *err, size_t errlen) {
  if (p->num_entries == 3) {
    snprintf(err, errlen, "too many entry points");
    return false;
  }
  cg_entry *e = &p->entries[p->num_entries];
  memset(e, 0, sizeof *e);
  e->name = name;
  e->graph = g;
  e->loss_buffer = -1;
  lowering l = {p, e, NULL, g->next_value_id, 0, err, errlen};
  l.buffer_of = ir_arena_alloc(p->arena, sizeof(int) * (size_t)(g->next_value_id + 1));
  for (int i = 0; i <= g->next_value_id; i++) l.buffer_of[i] = -1;
  for (const ir_node *n = g->first; n; n = n->next)
    if (!lower_node(&l, n)) return false;
  /* An input is needed when a kernel or an output reads it (dead-code
   * elimination keeps input nodes, so their presence says nothing). */
  for (int i = 0; i < e->num_kernels; i++)
    for (int o = 0; o < e->kernels[i].num_operands; o++) mark_input(p, e, e->kernels[i].operands[o]);
  for (int i = 0; i < e->num_outputs; i++) mark_input(p, e, e->output_buffers[i]);
  p->num_entries++;
  return true;
}
