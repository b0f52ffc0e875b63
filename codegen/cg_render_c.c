/* cg_render_c.c: kernels as C functions.
 *
 * Each kernel is `static void NAME(MODEL *m)` (int for those that check
 * their inputs), with the node it computes and its shapes in a comment.
 * Elementwise kernels are loop nests over the collapsed output shape;
 * the rest call the runtime's kernels (modelc_rt.h). How each scalar op
 * is spelled is one table, c_spelling().
 *
 * f32 tensors are modelc_rt_real in C: float, or double when the output
 * is compiled with MODELC_DOUBLE. Math goes through the runtime's
 * wrappers of that precision (modelc_rt_exp is expf in the float build);
 * offsets into the arena count elements of modelc_rt_real, so that the
 * same text lays out either build. */
#include <math.h>
#include <string.h>

#include "codegen/cg.h"

const char *cg_c_type(ir_dtype dtype) {
  switch (dtype) {
  case IR_f64: return "double";
  case IR_i32: return "int32_t";
  case IR_i64: return "int64_t";
  case IR_u8: return "uint8_t";
  default: return "modelc_rt_real";
  }
}

/* Arena offsets and sizes are planned in bytes of the float build (every
 * offset 64-byte aligned); the C counts them in modelc_rt_real elements,
 * 4 of those bytes each, which the double build doubles. Integer tensors
 * use the first bytes of their span. */
int64_t cg_c_elements(int64_t bytes) { return (bytes + 3) / 4; }

/* %0, %1, %2 are the arguments, %T the result's C type. */
static const char *c_spelling(ir_op op) {
  switch (op) {
  case IR_OP_neg: return "(-%0)";
  case IR_OP_relu: return "modelc_rt_relu(%0)";
  case IR_OP_gelu: return "modelc_rt_gelu(%0)";
  case IR_OP_gelu_tanh: return "modelc_rt_gelu_tanh(%0)";
  case IR_OP_silu: return "modelc_rt_silu(%0)";
  case IR_OP_sigmoid: return "modelc_rt_sigmoid(%0)";
  case IR_OP_tanh: return "modelc_rt_tanh(%0)";
  case IR_OP_exp: return "modelc_rt_exp(%0)";
  case IR_OP_log: return "modelc_rt_log(%0)";
  case IR_OP_sqrt: return "modelc_rt_sqrt(%0)";
  case IR_OP_rsqrt: return "(1.0f / modelc_rt_sqrt(%0))";
  case IR_OP_abs: return "modelc_rt_abs(%0)";
  case IR_OP_softplus: return "modelc_rt_softplus(%0)";
  case IR_OP_sign: return "modelc_rt_sign(%0)";
  case IR_OP_cast: return "(%T)(%0)";
  case IR_OP_add: return "(%0 + %1)";
  case IR_OP_sub: return "(%0 - %1)";
  case IR_OP_mul: return "(%0 * %1)";
  case IR_OP_div: return "(%0 / %1)";
  case IR_OP_where: return "(%0 ? %1 : %2)";
  case IR_OP_relu_grad: return "(%0 > 0.0f ? %1 : 0.0f)";
  case IR_OP_gelu_grad: return "(%1 * modelc_rt_gelu_grad(%0))";
  case IR_OP_gelu_tanh_grad: return "(%1 * modelc_rt_gelu_tanh_grad_inline(%0))";
  case IR_OP_silu_grad: return "(%1 * modelc_rt_silu_grad(%0))";
  case IR_OP_softplus_grad: return "(%1 * modelc_rt_sigmoid(%0))";
  case IR_OP_sigmoid_grad: return "(%1 * %0 * (1.0f - %0))";
  case IR_OP_tanh_grad: return "(%1 * (1.0f - %0 * %0))";
  default: return NULL;
  }
}

const char *cg_c_literal(ir_arena *a, double v, ir_dtype dtype) {
  if (!ir_dtype_is_float(dtype)) return ir_arena_printf(a, "%lld", (long long)v);
  if (isnan(v)) return "NAN";
  if (isinf(v)) return v > 0 ? "INFINITY" : "(-INFINITY)";
  char buf[64];
  snprintf(buf, sizeof buf, "%.9g", v);
  if (!strpbrk(buf, ".e")) strcat(buf, ".0");
  return ir_arena_printf(a, dtype == IR_f64 ? "%s" : "%sf", buf);
}

/* ---- pointers ---- */

static const cg_buffer *root(const cg_program *p, int b) {
  while (p->buffers[b].alias_of >= 0) b = p->buffers[b].alias_of;
  return &p->buffers[b];
}

/* (m->act + 256) for a real, ((const int32_t *)(m->act + 256)) else. */
static const char *region_pointer(const cg_program *p, const char *region, const char *cst,
                                  const char *type, int64_t offset) {
  long long at = (long long)cg_c_elements(offset);
  if (strcmp(type, "modelc_rt_real") == 0) return ir_arena_printf(p->arena, "(m->%s + %lld)", region, at);
  return ir_arena_printf(p->arena, "((%s%s *)(m->%s + %lld))", cst, type, region, at);
}

/* The C expression for a buffer's first element. */
static const char *pointer(const cg_program *p, int b, bool writable) {
  const cg_buffer *r = root(p, b);
  const char *type = cg_c_type(p->buffers[b].type.dtype);
  const char *cst = writable ? "" : "const ";
  switch (r->kind) {
  case CG_BUF_INPUT: return ir_arena_printf(p->arena, "((%s%s *)m->in[%d])", cst, type, r->index);
  case CG_BUF_GRAD: return region_pointer(p, "grads", cst, type, r->offset);
  case CG_BUF_TEMP: return region_pointer(p, "act", cst, type, r->offset);
  default: return region_pointer(p, "state", cst, type, r->offset);
  }
}

const char *cg_c_pointer(const cg_program *p, int b, bool writable) { return pointer(p, b, writable); }

static const char *type_text(ir_arena *a, const ir_type *t) {
  char buf[128];
  return ir_arena_strdup(a, ir_type_format(t, buf, sizeof buf));
}

/* The comment above a kernel: the node as the IR prints it, shortened. */
static void node_comment(cg_emitter *e, const cg_program *p, const ir_node *n) {
  cg_emitf(e, "/* ");
  if (n->num_results) cg_emitf(e, "%%%s: %s = ", n->results[0]->name, type_text(p->arena, &n->results[0]->type));
  cg_emitf(e, "%s", ir_op_get(n->op)->name);
  for (int i = 0; i < n->num_inputs && i < 6; i++)
    cg_emitf(e, "%s %%%s %s", i ? "," : "", n->inputs[i]->name,
             type_text(p->arena, &n->inputs[i]->type));
  if (n->num_inputs > 6) cg_emitf(e, ", ...");
  cg_emitf(e, " */\n");
}

/* ---- elementwise ---- */

static const char *index_expr(ir_arena *a, const cg_kernel *k, const int64_t *strides, int64_t base) {
  char *s = base ? ir_arena_printf(a, "%lld", (long long)base) : "";
  for (int d = 0; d < k->loop_rank; d++) {
    if (strides[d] == 0) continue;
    const char *term = strides[d] == 1 ? ir_arena_printf(a, "i%d", d)
                                       : ir_arena_printf(a, "i%d * %lld", d, (long long)strides[d]);
    s = *s ? ir_arena_printf(a, "%s + %s", s, term) : (char *)term;
  }
  return *s ? s : "0";
}

/* The C text of an expression: constants and loads inline; an op's
 * value goes into a local (t0, t1, ...) declared before it is used, so a
 * fused tree is a readable sequence of statements and an argument that
 * a formula uses twice (sigmoid_grad) is computed once. */
static const char *expr_text(cg_emitter *e, ir_arena *a, const cg_kernel *k, const cg_expr *x,
                             int *temps) {
  if (x->kind == CG_EXPR_CONST) return cg_c_literal(a, x->value, x->dtype);
  if (x->kind == CG_EXPR_LOAD)
    return ir_arena_printf(a, "in%d[%s]", x->operand,
                           index_expr(a, k, k->strides[x->operand], k->base[x->operand]));
  const char *args[3] = {0};
  for (int i = 0; i < x->num_args; i++) args[i] = expr_text(e, a, k, x->args[i], temps);
  const char *fmt = c_spelling(x->op);
  char *out = "";
  for (const char *c = fmt ? fmt : "%0"; *c; c++) {
    if (c[0] == '%' && c[1] >= '0' && c[1] <= '2') {
      out = ir_arena_printf(a, "%s%s", out, args[c[1] - '0'] ? args[c[1] - '0'] : "0");
      c++;
    } else if (c[0] == '%' && c[1] == 'T') {
      out = ir_arena_printf(a, "%s%s", out, cg_c_type(x->dtype));
      c++;
    } else {
      out = ir_arena_printf(a, "%s%c", out, *c);
    }
  }
  const char *name = ir_arena_printf(a, "t%d", (*temps)++);
  cg_emitf(e, "const %s %s = %s;\n", cg_c_type(x->dtype), name, out);
  return name;
}

static void render_elementwise(cg_emitter *e, const cg_program *p, const cg_kernel *k) {
  ir_arena *a = p->arena;
  for (int o = 0; o < k->num_operands; o++)
    cg_emitf(e, "const %s *in%d = %s; /* %%%s */\n", cg_c_type(p->buffers[k->operands[o]].type.dtype),
             o, pointer(p, k->operands[o], false), p->buffers[k->operands[o]].name);
  cg_emitf(e, "%s *out = %s;\n", cg_c_type(p->buffers[k->out].type.dtype), pointer(p, k->out, true));
  int64_t numel = 1, ostr[IR_MAX_RANK];
  for (int d = k->loop_rank - 1; d >= 0; d--) {
    ostr[d] = numel;
    numel *= k->loop_dims[d];
  }
  /* The outer loop over the threads, the innermost one vectorised (the
   * output never overlaps an operand except element for element: the
   * memory plan's in-place rule). */
  bool parallel = numel >= 32768 && k->loop_dims[0] > 1;
  if (parallel) cg_emitf(e, k->loop_rank == 1 ? "MODELC_RT_PARALLEL_FOR_SIMD\n" : "MODELC_RT_PARALLEL_FOR\n");
  for (int d = 0; d < k->loop_rank; d++) {
    if (d == k->loop_rank - 1 && !(parallel && d == 0)) cg_emitf(e, "MODELC_RT_SIMD\n");
    cg_emit_open(e, "for (int64_t i%d = 0; i%d < %lld; i%d++)", d, d, (long long)k->loop_dims[d], d);
  }
  if (k->loop_rank == 0) cg_emitf(e, "{\n");
  int temps = 0;
  const char *value = expr_text(e, a, k, k->expr, &temps);
  cg_emitf(e, "out[%s] = %s;\n", index_expr(a, k, ostr, 0), value);
  for (int d = 0; d < k->loop_rank; d++) cg_emit_close(e, NULL);
  if (k->loop_rank == 0) cg_emitf(e, "}\n");
}

/* ---- GEMM ---- */

typedef cg_gemm_shape gemm_shape;

/* Batch strides (in elements) of an operand against the output batch. */
static void batch_strides(const ir_type *t, int matrix_dims, int64_t matrix, const gemm_shape *g,
                          int64_t *out) {
  int rank = t->rank - matrix_dims;
  int64_t s = matrix;
  int64_t own[IR_MAX_RANK];
  for (int i = rank - 1; i >= 0; i--) {
    own[i] = s;
    s *= t->dims[i];
  }
  for (int d = 0; d < g->batch_rank; d++) {
    int i = d - (g->batch_rank - rank);
    out[d] = i >= 0 && t->dims[i] != 1 ? own[i] : 0;
  }
}

cg_gemm_shape cg_gemm_of(const ir_node *n) {
  const ir_type *a = &n->inputs[0]->type, *b = &n->inputs[1]->type, *c = &n->results[0]->type;
  gemm_shape g = {0};
  g.ta = ir_get_bool(n, "transpose_a", false) && a->rank > 1;
  g.tb = ir_get_bool(n, "transpose_b", false) && b->rank > 1;
  int am = a->rank > 1 ? 2 : 1, bm = b->rank > 1 ? 2 : 1;
  g.k = a->rank > 1 ? a->dims[a->rank - (g.ta ? 2 : 1)] : a->dims[0];
  g.m = a->rank > 1 ? a->dims[a->rank - (g.ta ? 1 : 2)] : 1;
  g.n = b->rank > 1 ? b->dims[b->rank - (g.tb ? 2 : 1)] : 1;
  g.a_matrix = g.m * g.k;
  g.b_matrix = g.k * g.n;
  g.batch_rank = c->rank - (a->rank > 1 ? 1 : 0) - (b->rank > 1 ? 1 : 0);
  g.batch = 1;
  for (int d = 0; d < g.batch_rank; d++) {
    g.dims[d] = c->dims[d];
    g.batch *= c->dims[d];
  }
  batch_strides(a, am, g.a_matrix, &g, g.a_strides);
  batch_strides(b, bm, g.b_matrix, &g, g.b_strides);
  return g;
}

static bool all_zero(const int64_t *v, int n) {
  for (int i = 0; i < n; i++)
    if (v[i]) return false;
  return true;
}

static bool contiguous_batch(const gemm_shape *g) {
  int64_t s = g->a_matrix;
  for (int d = g->batch_rank - 1; d >= 0; d--) {
    if (g->a_strides[d] != s) return false;
    s *= g->dims[d];
  }
  return true;
}

bool cg_gemm_folds(const cg_gemm_shape *g) {
  return !g->ta && all_zero(g->b_strides, g->batch_rank) && contiguous_batch(g);
}

static void render_gemm(cg_emitter *e, const cg_program *p, const cg_kernel *k) {
  gemm_shape g = cg_gemm_of(k->node);
  const char *gemm = p->bf16 ? "modelc_rt_gemm_bf16" : "modelc_rt_gemm";
  cg_emitf(e, "const modelc_rt_real *a = %s;\n", pointer(p, k->operands[0], false));
  cg_emitf(e, "const modelc_rt_real *b = %s;\n", pointer(p, k->operands[1], false));
  cg_emitf(e, "modelc_rt_real *c = %s;\n", pointer(p, k->out, true));
  long long lda = g.ta ? g.m : g.k, ldb = g.tb ? g.k : g.n;
  /* A weight shared by every batch row, and rows stacked in memory:
   * one GEMM over all of them. */
  if (cg_gemm_folds(&g)) {
    cg_emitf(e, "%s(0, %d, %lld, %lld, %lld, 1.0f, a, %lld, b, %lld, 0.0f, c, %lld);\n", gemm,
             g.tb, (long long)(g.batch * g.m), (long long)g.n, (long long)g.k, lda, ldb,
             (long long)g.n);
    return;
  }
  for (int d = 0; d < g.batch_rank; d++)
    cg_emit_open(e, "for (int64_t i%d = 0; i%d < %lld; i%d++)", d, d, (long long)g.dims[d], d);
  char *ao = "0", *bo = "0", *co = "0";
  int64_t cs = g.m * g.n;
  for (int d = g.batch_rank - 1; d >= 0; d--) {
    if (g.a_strides[d]) ao = ir_arena_printf(p->arena, "%s + i%d * %lld", ao, d, (long long)g.a_strides[d]);
    if (g.b_strides[d]) bo = ir_arena_printf(p->arena, "%s + i%d * %lld", bo, d, (long long)g.b_strides[d]);
    co = ir_arena_printf(p->arena, "%s + i%d * %lld", co, d, (long long)cs);
    cs *= g.dims[d];
  }
  cg_emitf(e, "%s(%d, %d, %lld, %lld, %lld, 1.0f, a + (%s), %lld, b + (%s), %lld, 0.0f, c + (%s), %lld);\n",
           gemm, g.ta, g.tb, (long long)g.m, (long long)g.n, (long long)g.k, ao, lda, bo, ldb, co,
           (long long)g.n);
  for (int d = 0; d < g.batch_rank; d++) cg_emit_close(e, NULL);
}

/* ---- runtime calls ---- */

static int64_t numel(const ir_type *t) { return ir_type_numel(t); }

/* [outer, n, inner] around an axis. */
void cg_around_axis(const ir_type *t, int64_t axis, int64_t *outer, int64_t *n, int64_t *inner) {
  if (axis < 0) axis += t->rank;
  *outer = *inner = 1;
  *n = t->rank ? t->dims[axis] : 1;
  for (int i = 0; i < axis; i++) *outer *= t->dims[i];
  for (int i = (int)axis + 1; i < t->rank; i++) *inner *= t->dims[i];
}

static void emit_dims_array(cg_emitter *e, const char *name, const ir_type *t) {
  cg_emitf(e, "static const int64_t %s[%d] = {", name, t->rank ? t->rank : 1);
  for (int i = 0; i < t->rank; i++) cg_emitf(e, "%s%lld", i ? ", " : "", (long long)t->dims[i]);
  cg_emitf(e, "%s};\n", t->rank ? "" : "1");
}

/* reduce[i] = 1 for each reduced axis of x (axes absent = all). */
void cg_reduce_mask(const ir_node *n, const ir_type *x, int mask[IR_MAX_RANK]) {
  const int64_t *axes;
  int na = ir_get_ints(n, "axes", &axes);
  for (int i = 0; i < IR_MAX_RANK; i++) mask[i] = 0;
  for (int i = 0; i < na; i++) mask[(axes[i] % x->rank + x->rank) % x->rank] = 1;
  if (na == 0)
    for (int i = 0; i < x->rank; i++) mask[i] = 1;
}

static void emit_reduce_mask(cg_emitter *e, const ir_node *n, const ir_type *x) {
  int mask[IR_MAX_RANK];
  cg_reduce_mask(n, x, mask);
  cg_emitf(e, "static const int reduce[%d] = {", x->rank ? x->rank : 1);
  for (int i = 0; i < x->rank; i++) cg_emitf(e, "%s%d", i ? ", " : "", mask[i]);
  cg_emitf(e, "%s};\n", x->rank ? "" : "0");
}

static void render_reduce(cg_emitter *e, const cg_program *p, const cg_kernel *k) {
  const ir_node *n = k->node;
  const ir_type *x = &n->inputs[0]->type;
  emit_dims_array(e, "dims", x);
  emit_reduce_mask(e, n, x);
  const char *in = pointer(p, k->operands[0], false), *out = pointer(p, k->out, true);
  if (n->op == IR_OP_max) {
    cg_emitf(e, "modelc_rt_reduce_max(%s, %s, %d, dims, reduce);\n", out, in, x->rank);
    return;
  }
  cg_emitf(e, "modelc_rt_reduce_sum(%s, %s, %d, dims, reduce);\n", out, in, x->rank);
  if (n->op == IR_OP_mean) {
    int64_t count = numel(x) / numel(&n->results[0]->type);
    cg_emitf(e, "modelc_rt_scale(%s, %lld, %s);\n", out, (long long)numel(&n->results[0]->type),
             cg_c_literal(p->arena, 1.0 / (double)count, IR_f32));
  }
}

static void render_softmax(cg_emitter *e, const cg_program *p, const cg_kernel *k) {
  const ir_node *n = k->node;
  int64_t outer, len, inner;
  cg_around_axis(&n->results[0]->type, ir_get_int(n, "axis", -1), &outer, &len, &inner);
  const char *fn = n->op == IR_OP_softmax ? "softmax" : n->op == IR_OP_log_softmax ? "log_softmax"
                   : n->op == IR_OP_softmax_grad ? "softmax_grad" : "log_softmax_grad";
  cg_emitf(e, "modelc_rt_%s(%s", fn, pointer(p, k->out, true));
  for (int i = 0; i < k->num_operands; i++) cg_emitf(e, ", %s", pointer(p, k->operands[i], false));
  cg_emitf(e, ", %lld, %lld, %lld);\n", (long long)outer, (long long)len, (long long)inner);
}

/* The runtime's conv is 2-D: a 1-D conv is one with height 1. */
void cg_conv_params(const ir_node *n, const ir_type *x, const ir_type *w, const ir_type *y,
                    int64_t out[16]) {
  const int64_t *s, *pd, *dl;
  int ns = ir_get_ints(n, "stride", &s), np = ir_get_ints(n, "padding", &pd);
  int nd = ir_get_ints(n, "dilation", &dl);
  bool two = x->rank == 4;
  int64_t sw = ns ? s[ns - 1] : 1, pw = np ? pd[np - 1] : 0, dw = nd ? dl[nd - 1] : 1;
  int64_t sh = two && ns ? s[0] : 1, ph = two && np ? pd[0] : 0, dh = two && nd ? dl[0] : 1;
  int64_t v[16] = {x->dims[0], x->dims[1], two ? x->dims[2] : 1, x->dims[x->rank - 1], w->dims[0],
                   two ? w->dims[2] : 1, w->dims[w->rank - 1], two ? y->dims[2] : 1,
                   y->dims[y->rank - 1], sh, sw, ph, pw, dh, dw, ir_get_int(n, "groups", 1)};
  memcpy(out, v, sizeof v);
}

void cg_conv_concat_params(const ir_node *n, int64_t out[CG_CONV_CAT_FIELDS]) {
  const int64_t *scales, *channels, *dims;
  ir_get_ints(n, "scales", &scales);
  int64_t v[CG_CONV_CAT_FIELDS] = {0};
  ir_type x, w, y;
  if (n->op == IR_OP_conv_concat_grad_input) {
    int parts = ir_get_ints(n, "channels", &channels);
    ir_get_ints(n, "input_shape", &dims);
    x = ir_type_make(IR_f32, 4, dims);
    w = n->inputs[1]->type, y = n->inputs[0]->type;
    v[16] = parts;
    for (int i = 0; i < parts; i++) v[17 + i] = channels[i], v[20 + i] = scales[i];
  } else {
    int parts = n->num_inputs - 1;
    const ir_type *x0 = &n->inputs[1]->type;
    int64_t c = 0;
    v[16] = parts;
    for (int i = 0; i < parts; i++) {
      v[17 + i] = n->inputs[1 + i]->type.dims[1], v[20 + i] = scales[i];
      c += v[17 + i];
    }
    int64_t d[4] = {x0->dims[0], c, x0->dims[2] * scales[0], x0->dims[3] * scales[0]};
    x = ir_type_make(IR_f32, 4, d);
    bool fwd = n->op == IR_OP_conv_concat;
    w = fwd ? n->inputs[0]->type : n->results[0]->type;
    y = fwd ? n->results[0]->type : n->inputs[0]->type;
  }
  cg_conv_params(n, &x, &w, &y, v);
  memcpy(out, v, sizeof v);
}

const char *cg_conv_concat_literal(ir_arena *a, const ir_node *n, const char *suffix) {
  int64_t v[CG_CONV_CAT_FIELDS];
  cg_conv_concat_params(n, v);
  char text[1024];
  size_t used = 0;
  for (int i = 0; i < CG_CONV_CAT_FIELDS && used < sizeof text; i++) {
    /* {{conv fields}, parts, {channels}, {up}} */
    const char *open = i == 0 ? "{{" : i == 17 || i == 20 ? ", {" : ", ";
    const char *close = i == 15 || i == 19 ? "}" : i == 22 ? "}}" : "";
    used += (size_t)snprintf(text + used, sizeof text - used, "%s%lld%s%s", open, (long long)v[i],
                             suffix, close);
  }
  return ir_arena_printf(a, "%s", text);
}

static void render_conv_params(cg_emitter *e, const ir_node *n, const ir_type *x, const ir_type *w,
                               const ir_type *y) {
  int64_t v[16];
  cg_conv_params(n, x, w, y, v);
  cg_emitf(e, "static const modelc_rt_conv p = {");
  for (int i = 0; i < 16; i++) cg_emitf(e, "%s%lld", i ? ", " : "", (long long)v[i]);
  cg_emitf(e, "};\n");
}

static void render_conv(cg_emitter *e, const cg_program *p, const cg_kernel *k) {
  const ir_node *n = k->node;
  const char *out = pointer(p, k->out, true);
  const char *a = pointer(p, k->operands[0], false), *b = pointer(p, k->operands[1], false);
  const char *lowp = p->bf16 ? "_bf16" : "";
  if (n->op == IR_OP_conv) {
    render_conv_params(e, n, &n->inputs[0]->type, &n->inputs[1]->type, &n->results[0]->type);
    cg_emitf(e, "modelc_rt_conv2d%s(%s, %s, %s, &p);\n", lowp, out, a, b);
  } else if (n->op == IR_OP_conv_grad_input) { /* (g, w) -> x */
    render_conv_params(e, n, &n->results[0]->type, &n->inputs[1]->type, &n->inputs[0]->type);
    cg_emitf(e, "modelc_rt_conv2d_grad_input%s(%s, %s, %s, &p);\n", lowp, out, a, b);
  } else { /* conv_grad_weight (x, g) -> w */
    render_conv_params(e, n, &n->inputs[0]->type, &n->results[0]->type, &n->inputs[1]->type);
    cg_emitf(e, "modelc_rt_conv2d_grad_weight%s(%s, %s, %s, &p);\n", lowp, out, a, b);
  }
}

/* conv_concat and its gradients: modelc_rt_conv_cat, the parts' pointers
 * (NULL where absent) and, for grad_input, the part. */
static void render_conv_concat(cg_emitter *e, const cg_program *p, const cg_kernel *k) {
  const ir_node *n = k->node;
  cg_emitf(e, "static const modelc_rt_conv_cat p = %s;\n", cg_conv_concat_literal(p->arena, n, ""));
  const char *out = pointer(p, k->out, true), *lowp = p->bf16 ? "_bf16" : "";
  if (n->op == IR_OP_conv_concat_grad_input) {
    cg_emitf(e, "modelc_rt_conv2d_cat_grad_input%s(%s, %s, %s, &p, %lld);\n", lowp, out,
             pointer(p, k->operands[0], false), pointer(p, k->operands[1], false),
             (long long)ir_get_int(n, "part", 0));
    return;
  }
  const char *parts[3] = {"NULL", "NULL", "NULL"};
  for (int i = 1; i < k->num_operands && i <= 3; i++) parts[i - 1] = pointer(p, k->operands[i], false);
  cg_emitf(e, "modelc_rt_conv2d_cat%s%s(%s, %s, &p, %s, %s, %s);\n",
           n->op == IR_OP_conv_concat ? "" : "_grad_weight", lowp, out,
           pointer(p, k->operands[0], false), parts[0], parts[1], parts[2]);
}

void cg_pool_params(const ir_node *n, int64_t out[12]) {
  const ir_type *x = &n->inputs[0]->type;
  const ir_type *y = n->op == IR_OP_maxpool || n->op == IR_OP_avgpool ? &n->results[0]->type
                                                                       : &n->inputs[1]->type;
  const int64_t *kr, *st, *pd;
  int nk = ir_get_ints(n, "kernel", &kr), ns = ir_get_ints(n, "stride", &st);
  int np = ir_get_ints(n, "padding", &pd);
  int64_t kh = kr[0], kw = kr[nk - 1], sh = ns ? st[0] : kh, sw = ns ? st[ns - 1] : kw;
  int64_t ph = np ? pd[0] : 0, pw = np ? pd[np - 1] : 0;
  int64_t v[12] = {x->dims[0], x->dims[1], x->dims[2], x->dims[3], y->dims[2], y->dims[3],
                   kh, kw, sh, sw, ph, pw};
  memcpy(out, v, sizeof v);
}

static void render_pool(cg_emitter *e, const cg_program *p, const cg_kernel *k) {
  const ir_node *n = k->node;
  int64_t v[12];
  cg_pool_params(n, v);
  cg_emitf(e, "static const modelc_rt_pool p = {");
  for (int i = 0; i < 12; i++) cg_emitf(e, "%s%lld", i ? ", " : "", (long long)v[i]);
  cg_emitf(e, "};\n");
  const char *out = pointer(p, k->out, true), *a = pointer(p, k->operands[0], false);
  switch (n->op) {
  case IR_OP_maxpool: cg_emitf(e, "modelc_rt_maxpool2d(%s, %s, &p);\n", out, a); break;
  case IR_OP_avgpool: cg_emitf(e, "modelc_rt_avgpool2d(%s, %s, &p);\n", out, a); break;
  case IR_OP_maxpool_grad:
    cg_emitf(e, "modelc_rt_maxpool2d_grad(%s, %s, %s, &p);\n", out, a, pointer(p, k->operands[1], false));
    break;
  default:
    cg_emitf(e, "modelc_rt_avgpool2d_grad(%s, %s, &p);\n", out, pointer(p, k->operands[1], false));
  }
}

static void render_upsample(cg_emitter *e, const cg_program *p, const cg_kernel *k) {
  const ir_node *n = k->node;
  const ir_type *x = &n->inputs[0]->type;
  bool nearest = strcmp(ir_get_str(n, "mode", "nearest"), "bilinear") != 0;
  bool grad = n->op == IR_OP_upsample_grad;
  cg_emitf(e, "modelc_rt_upsample_%s%s(%s, %s, %lld, %lld, %lld, %lld);\n",
           nearest ? "nearest" : "bilinear", grad ? "_grad" : "", pointer(p, k->out, true),
           pointer(p, k->operands[grad ? 1 : 0], false), (long long)(x->dims[0] * x->dims[1]),
           (long long)x->dims[2], (long long)x->dims[3], (long long)ir_get_int(n, "scale", 2));
}

/* Kernels that check their inputs return non-zero on bad ids. */
static void render_gather(cg_emitter *e, const cg_program *p, const cg_kernel *k) {
  const ir_node *n = k->node;
  if (n->op == IR_OP_gather) {
    const ir_type *table = &n->inputs[0]->type, *ids = &n->inputs[1]->type;
    const char *ip = pointer(p, k->operands[1], false);
    cg_emitf(e, "if (modelc_rt_check_ids(%s, %lld, %lld) != 0) return -1;\n", ip,
             (long long)numel(ids), (long long)table->dims[0]);
    cg_emitf(e, "modelc_rt_gather(%s, %s, %s, %lld, %lld);\n", pointer(p, k->out, true),
             pointer(p, k->operands[0], false), ip, (long long)numel(ids), (long long)table->dims[1]);
    cg_emitf(e, "return 0;\n");
  } else { /* gather_grad(ids, g) */
    const ir_type *out = &n->results[0]->type, *ids = &n->inputs[0]->type;
    cg_emitf(e, "memset(%s, 0, %lld * sizeof(modelc_rt_real));\n", pointer(p, k->out, true),
             (long long)numel(out));
    cg_emitf(e, "modelc_rt_gather_grad(%s, %s, %s, %lld, %lld);\n", pointer(p, k->out, true),
             pointer(p, k->operands[0], false), pointer(p, k->operands[1], false),
             (long long)numel(ids), (long long)out->dims[1]);
  }
}

static void render_nll(cg_emitter *e, const cg_program *p, const cg_kernel *k) {
  const ir_node *n = k->node;
  const ir_type *logp = &n->inputs[0]->type;
  int64_t classes = logp->dims[logp->rank - 1], rows = numel(logp) / classes;
  long long ignore = (long long)ir_get_int(n, "ignore_index", -100);
  if (n->op == IR_OP_nll_loss) {
    cg_emitf(e, "%s[0] = modelc_rt_nll_loss(%s, %s, %lld, %lld, %lld);\n", pointer(p, k->out, true),
             pointer(p, k->operands[0], false), pointer(p, k->operands[1], false), (long long)rows,
             (long long)classes, ignore);
  } else {
    cg_emitf(e, "modelc_rt_nll_loss_grad(%s, %s, %s[0], %lld, %lld, %lld);\n", pointer(p, k->out, true),
             pointer(p, k->operands[1], false), pointer(p, k->operands[2], false), (long long)rows,
             (long long)classes, ignore);
  }
}

/* flash_attention(q, k, v) -> out, lse; flash_attention_grad(q, k, v,
 * out, lse, d.out) -> d.q, d.k, d.v. */
static void render_flash(cg_emitter *e, const cg_program *p, const cg_kernel *k) {
  const ir_node *n = k->node;
  bool bthd = strcmp(ir_get_str(n, "layout", "bhtd"), "bthd") == 0;
  const ir_type *q = &n->inputs[0]->type, *kv = &n->inputs[1]->type;
  int hd = bthd ? 2 : 1, td = bthd ? 1 : 2;
  cg_emitf(e, "static const modelc_rt_flash f = {%lld, %lld, %lld, %lld, %lld, %d, %d, %lld, %lld, %s, %s};\n",
           (long long)q->dims[0], (long long)q->dims[hd], (long long)kv->dims[hd], (long long)q->dims[td],
           (long long)q->dims[3], ir_get_bool(n, "causal", false), bthd,
           (long long)ir_get_int(n, "window", 0), (long long)ir_get_int(n, "global", 0),
           cg_c_literal(p->arena, ir_get_float(n, "scale", 1.0), IR_f32),
           cg_c_literal(p->arena, ir_get_float(n, "rope", 0.0), IR_f32));
  if (n->op == IR_OP_flash_attention) {
    cg_emitf(e, "return modelc_rt_flash_attention(%s, %s, %s, %s, %s, &f);\n", pointer(p, k->out, true),
             pointer(p, k->more_outs[0], true), pointer(p, k->operands[0], false),
             pointer(p, k->operands[1], false), pointer(p, k->operands[2], false));
  } else {
    cg_emitf(e, "return modelc_rt_flash_attention_grad(%s, %s, %s,\n", pointer(p, k->out, true),
             pointer(p, k->more_outs[0], true), pointer(p, k->more_outs[1], true));
    cg_emitf(e, "    %s, %s, %s, %s, %s, %s, &f);\n", pointer(p, k->operands[0], false),
             pointer(p, k->operands[1], false), pointer(p, k->operands[2], false),
             pointer(p, k->operands[3], false), pointer(p, k->operands[4], false),
             pointer(p, k->operands[5], false));
  }
}

static void render_call(cg_emitter *e, const cg_program *p, const cg_entry *entry, const cg_kernel *k) {
  const ir_node *n = k->node;
  const ir_type *t = n->num_results ? &n->results[0]->type : NULL;
  (void)entry;
  switch (n->op) {
  case IR_OP_sum:
  case IR_OP_mean:
  case IR_OP_max: render_reduce(e, p, k); return;
  case IR_OP_softmax:
  case IR_OP_log_softmax:
  case IR_OP_softmax_grad:
  case IR_OP_log_softmax_grad: render_softmax(e, p, k); return;
  case IR_OP_max_grad: {
    const ir_type *x = &n->inputs[0]->type;
    emit_dims_array(e, "dims", x);
    emit_reduce_mask(e, n, x);
    cg_emitf(e, "modelc_rt_reduce_max_grad(%s, %s, %s, %d, dims, reduce);\n", pointer(p, k->out, true),
             pointer(p, k->operands[0], false), pointer(p, k->operands[2], false), x->rank);
    return;
  }
  case IR_OP_nll_loss:
  case IR_OP_nll_loss_grad: render_nll(e, p, k); return;
  case IR_OP_gather:
  case IR_OP_gather_grad: render_gather(e, p, k); return;
  case IR_OP_conv:
  case IR_OP_conv_grad_input:
  case IR_OP_conv_grad_weight: render_conv(e, p, k); return;
  case IR_OP_conv_concat:
  case IR_OP_conv_concat_grad_input:
  case IR_OP_conv_concat_grad_weight: render_conv_concat(e, p, k); return;
  case IR_OP_maxpool:
  case IR_OP_avgpool:
  case IR_OP_maxpool_grad:
  case IR_OP_avgpool_grad: render_pool(e, p, k); return;
  case IR_OP_upsample:
  case IR_OP_upsample_grad: render_upsample(e, p, k); return;
  case IR_OP_flash_attention:
  case IR_OP_flash_attention_grad: render_flash(e, p, k); return;
  case IR_OP_glu:
  case IR_OP_glu_grad: {
    const ir_type *h = &n->inputs[0]->type;
    int64_t f = h->dims[h->rank - 1] / 2, rows = numel(h) / (2 * f);
    const char *act = ir_get_str(n, "act", "silu");
    int code = strcmp(act, "silu") == 0 ? 0 : strcmp(act, "gelu") == 0 ? 1 : strcmp(act, "gelu_tanh") == 0 ? 2 : 3;
    if (n->op == IR_OP_glu)
      cg_emitf(e, "modelc_rt_glu(%s, %s, %lld, %lld, %d); /* %s */\n", pointer(p, k->out, true),
               pointer(p, k->operands[0], false), (long long)rows, (long long)f, code, act);
    else
      cg_emitf(e, "modelc_rt_glu_grad(%s, %s, %s, %lld, %lld, %d); /* %s */\n", pointer(p, k->out, true),
               pointer(p, k->operands[0], false), pointer(p, k->operands[1], false), (long long)rows,
               (long long)f, code, act);
    return;
  }
  case IR_OP_fused_norm:
  case IR_OP_fused_norm_grad: {
    bool grad = n->op == IR_OP_fused_norm_grad;
    const ir_type *x = &n->inputs[grad ? 1 : 0]->type;
    int64_t d = x->dims[x->rank - 1], rows = numel(x) / d;
    int rms = ir_get_bool(n, "rms", false);
    if (!grad)
      cg_emitf(e, "modelc_rt_norm(%s, %s, %s, %s, %s, %s, %lld, %lld, %s, %d);\n", pointer(p, k->out, true),
               pointer(p, k->more_outs[0], true), pointer(p, k->more_outs[1], true),
               pointer(p, k->operands[0], false), pointer(p, k->operands[1], false),
               k->num_operands == 3 ? pointer(p, k->operands[2], false) : "NULL", (long long)rows,
               (long long)d, cg_c_literal(p->arena, ir_get_float(n, "eps", 1e-5), IR_f64), rms);
    else
      cg_emitf(e, "modelc_rt_norm_grad(%s, %s, %s, %s, %s, %s, %s, %s, %s, %lld, %lld, %d);\n",
               pointer(p, k->out, true), pointer(p, k->more_outs[0], true), pointer(p, k->more_outs[1], true),
               pointer(p, k->operands[0], false), pointer(p, k->operands[1], false),
               pointer(p, k->operands[2], false), pointer(p, k->operands[3], false),
               pointer(p, k->operands[4], false), k->num_operands == 6 ? pointer(p, k->operands[5], false) : "NULL",
               (long long)rows, (long long)d, rms);
    return;
  }
  case IR_OP_softmax_cross_entropy:
  case IR_OP_softmax_cross_entropy_grad: {
    const ir_type *x = &n->inputs[0]->type;
    int64_t classes = x->dims[x->rank - 1], rows = numel(x) / classes;
    long long ignore = (long long)ir_get_int(n, "ignore_index", -100);
    if (n->op == IR_OP_softmax_cross_entropy)
      cg_emitf(e, "%s[0] = modelc_rt_softmax_ce(%s, %s, %s, %lld, %lld, %lld);\n", pointer(p, k->out, true),
               pointer(p, k->more_outs[0], true), pointer(p, k->operands[0], false),
               pointer(p, k->operands[1], false), (long long)rows, (long long)classes, ignore);
    else
      cg_emitf(e, "modelc_rt_softmax_ce_grad(%s, %s, %s, %s, %s[0], %lld, %lld, %lld);\n",
               pointer(p, k->out, true), pointer(p, k->operands[0], false), pointer(p, k->operands[1], false),
               pointer(p, k->operands[2], false), pointer(p, k->operands[3], false), (long long)rows,
               (long long)classes, ignore);
    return;
  }
  case IR_OP_rope:
  case IR_OP_rope_grad: {
    int64_t tt = t->dims[t->rank - 2], hd = t->dims[t->rank - 1];
    cg_emitf(e, "modelc_rt_%s(%s, %s, %lld, %lld, %lld, %s);\n", n->op == IR_OP_rope ? "rope" : "rope_grad",
             pointer(p, k->out, true), pointer(p, k->operands[0], false),
             (long long)(numel(t) / (tt * hd)), (long long)tt, (long long)hd,
             cg_c_literal(p->arena, ir_get_float(n, "base", 10000.0), IR_f32));
    return;
  }
  case IR_OP_mask:
    cg_emitf(e, "modelc_rt_attention_mask(%s, %lld, %lld, %d, %lld, %lld);\n", pointer(p, k->out, true),
             (long long)t->dims[0], (long long)t->dims[1], ir_get_bool(n, "causal", false),
             (long long)ir_get_int(n, "window", 0), (long long)ir_get_int(n, "global", 0));
    return;
  case IR_OP_dropout_mask:
    /* A fresh mask per micro-batch: the stream mixes the site and the
     * micro-batch counter, so a resumed run draws the same masks. */
    cg_emitf(e, "modelc_rt_dropout_mask(%s, %lld, %s, m->seed, modelc_rt_hash(%lldu, 0x64726f70u, (uint64_t)m->micro_step));\n",
             pointer(p, k->out, true), (long long)numel(t),
             cg_c_literal(p->arena, ir_get_float(n, "p", 0), IR_f32), (long long)ir_get_int(n, "stream", 0));
    return;
  default:
    cg_emitf(e, "#error \"no C lowering for op %s\"\n", ir_op_get(n->op)->name);
  }
}

/* ---- concat, pad, gradients, state ---- */

static void render_concat(cg_emitter *e, const cg_program *p, const cg_kernel *k) {
  const ir_node *n = k->node;
  const ir_type *t = &n->results[0]->type;
  int64_t axis = ir_get_int(n, "axis", 0), outer, len, inner;
  cg_around_axis(t, axis, &outer, &len, &inner);
  cg_emitf(e, "modelc_rt_real *out = %s;\n", pointer(p, k->out, true));
  int64_t at = 0;
  for (int i = 0; i < k->num_operands; i++) {
    const ir_type *it = &n->inputs[i]->type;
    int64_t part = it->dims[(axis + t->rank) % t->rank] * inner;
    cg_emitf(e, "const modelc_rt_real *in%d = %s;\n", i, pointer(p, k->operands[i], false));
    cg_emit_open(e, "for (int64_t i = 0; i < %lld; i++)", (long long)outer);
    cg_emitf(e, "memcpy(out + i * %lld + %lld, in%d + i * %lld, %lld * sizeof(modelc_rt_real));\n",
             (long long)(len * inner), (long long)at, i, (long long)part, (long long)part);
    cg_emit_close(e, NULL);
    at += part;
  }
}

static void render_pad(cg_emitter *e, const cg_program *p, const cg_kernel *k) {
  const ir_node *n = k->node;
  const ir_type *t = &n->results[0]->type, *x = &n->inputs[0]->type;
  int64_t axis = ir_get_int(n, "axis", 0), outer, len, inner;
  cg_around_axis(t, axis, &outer, &len, &inner);
  int64_t before = ir_get_int(n, "before", 0) * inner;
  int64_t part = x->dims[(axis + t->rank) % t->rank] * inner;
  cg_emitf(e, "modelc_rt_real *out = %s;\n", pointer(p, k->out, true));
  cg_emitf(e, "const modelc_rt_real *in = %s;\n", pointer(p, k->operands[0], false));
  cg_emitf(e, "memset(out, 0, %lld * sizeof(modelc_rt_real));\n", (long long)numel(t));
  cg_emit_open(e, "for (int64_t i = 0; i < %lld; i++)", (long long)outer);
  cg_emitf(e, "memcpy(out + i * %lld + %lld, in + i * %lld, %lld * sizeof(modelc_rt_real));\n",
           (long long)(len * inner), (long long)before, (long long)part, (long long)part);
  cg_emit_close(e, NULL);
}

bool cg_kernel_returns_status(const cg_kernel *k) {
  return k->kind == CG_K_CALL && (k->node->op == IR_OP_gather || k->node->op == IR_OP_flash_attention ||
                                  k->node->op == IR_OP_flash_attention_grad);
}

void cg_render_c_kernel(cg_emitter *e, const cg_program *p, const cg_entry *entry,
                        const cg_kernel *k) {
  if (k->kind == CG_K_ASSIGN) return; /* done at the end of the entry */
  node_comment(e, p, k->node);
  cg_emit_open(e, "MODELC_KERNEL %s %s(%s *m)", cg_kernel_returns_status(k) ? "int" : "void", k->name, p->model);
  switch (k->kind) {
  case CG_K_ELEMENTWISE: render_elementwise(e, p, k); break;
  case CG_K_GEMM: render_gemm(e, p, k); break;
  case CG_K_CALL: render_call(e, p, entry, k); break;
  case CG_K_CONCAT: render_concat(e, p, k); break;
  case CG_K_PAD: render_pad(e, p, k); break;
  case CG_K_CONST: {
    const ir_value *v = k->node->results[0];
    cg_emitf(e, "%s[0] = %s;\n", pointer(p, k->out, true),
             cg_c_literal(p->arena, ir_get_float(k->node, "value", 0), v->type.dtype));
    break;
  }
  case CG_K_GRAD: {
    int64_t count = numel(&p->buffers[k->out].type);
    cg_emitf(e, "modelc_rt_real *grad = %s;\n", pointer(p, k->out, true));
    cg_emitf(e, "const modelc_rt_real *g = %s;\n", pointer(p, k->operands[0], false));
    cg_emitf(e, "for (int64_t i = 0; i < %lld; i++) grad[i] += g[i];\n", (long long)count);
    break;
  }
  default: break;
  }
  cg_emit_close(e, "}\n\n");
}
