/* cg_render_cuda.c: kernels as CUDA C for NVRTC.
 *
 * Each kernel of the kernel IR becomes `extern "C" __global__ void
 * NAME(mc_args m)`, with the node and its shapes in a comment, and a
 * launch (grid, block) for the host. Pointers are spelled as in the C
 * launch's addresses (q.p[]), given by the host; shapes are constants in
 * the code. Elementwise kernels
 * are grid-stride loops over the output with the same strides as the C
 * loop nests; the rest call the device library (runtime/rt_cuda_kernels.cu,
 * mc_*), which mirrors the C runtime's kernels. How each scalar op is
 * spelled is one table, cuda_spelling(). */
#include <string.h>

#include "codegen/cg.h"

enum { BLOCK = 256, MAX_GRID = 65535 };

/* f32 is float on the device, whatever MODELC_DOUBLE makes of the C
 * backend's modelc_rt_real (cg_c_type). */
static const char *device_type(ir_dtype dtype) {
  return dtype == IR_f32 ? "float" : cg_c_type(dtype);
}

/* %0, %1, %2 are the arguments, %T the result's type. */
static const char *cuda_spelling(ir_op op) {
  switch (op) {
  case IR_OP_neg: return "(-%0)";
  case IR_OP_relu: return "mc_relu(%0)";
  case IR_OP_gelu: return "mc_gelu(%0)";
  case IR_OP_gelu_tanh: return "mc_gelu_tanh(%0)";
  case IR_OP_silu: return "mc_silu(%0)";
  case IR_OP_sigmoid: return "mc_sigmoid(%0)";
  case IR_OP_tanh: return "tanhf(%0)";
  case IR_OP_exp: return "expf(%0)";
  case IR_OP_log: return "logf(%0)";
  case IR_OP_sqrt: return "sqrtf(%0)";
  case IR_OP_rsqrt: return "(1.0f / sqrtf(%0))";
  case IR_OP_abs: return "fabsf(%0)";
  case IR_OP_softplus: return "mc_softplus(%0)";
  case IR_OP_sign: return "mc_sign(%0)";
  case IR_OP_cast: return "(%T)(%0)";
  case IR_OP_add: return "(%0 + %1)";
  case IR_OP_sub: return "(%0 - %1)";
  case IR_OP_mul: return "(%0 * %1)";
  case IR_OP_div: return "(%0 / %1)";
  case IR_OP_where: return "(%0 ? %1 : %2)";
  case IR_OP_relu_grad: return "(%0 > 0.0f ? %1 : 0.0f)";
  case IR_OP_gelu_grad: return "(%1 * mc_gelu_grad(%0))";
  case IR_OP_gelu_tanh_grad: return "(%1 * mc_gelu_tanh_grad(%0))";
  case IR_OP_silu_grad: return "(%1 * mc_silu_grad(%0))";
  case IR_OP_softplus_grad: return "(%1 * mc_sigmoid(%0))";
  case IR_OP_sigmoid_grad: return "(%1 * %0 * (1.0f - %0))";
  case IR_OP_tanh_grad: return "(%1 * (1.0f - %0 * %0))";
  default: return NULL;
  }
}

/* ---- launches ---- */

static int64_t blocks_for(int64_t threads) {
  int64_t b = (threads + BLOCK - 1) / BLOCK;
  return b < 1 ? 1 : b > MAX_GRID ? MAX_GRID : b;
}

static void elementwise_launch(cg_cuda_launch *l, int64_t threads) {
  *l = (cg_cuda_launch){blocks_for(threads), 1, 1, BLOCK, 0};
}

/* A block per row (reductions): rows blocks, capped, grid-stride. */
static void row_launch(cg_cuda_launch *l, int64_t rows) {
  *l = (cg_cuda_launch){rows < 1 ? 1 : rows > MAX_GRID ? MAX_GRID : rows, 1, 1, BLOCK, 0};
}

/* ---- pointers ----
 * A kernel reads its operands through q.p[i] and writes its output
 * through q.p[CG_MAX_OPERANDS]: addresses the host passes per launch, so
 * that the same kernel serves every layer and entry point with the same
 * shapes (one function in the module, compiled once). */

static const char *in_ptr(const cg_program *p, const cg_kernel *k, int i) {
  return ir_arena_printf(p->arena, "((const %s *)q.p[%d])", device_type(p->buffers[k->operands[i]].type.dtype), i);
}

static const char *out_ptr(const cg_program *p, const cg_kernel *k) {
  return ir_arena_printf(p->arena, "((%s *)q.p[%d])", device_type(p->buffers[k->out].type.dtype), CG_MAX_OPERANDS);
}

/* Results after the first (flash attention's lse, its gradient's dk and
 * dv) take the slots after the operands. */
static const char *more_out_ptr(const cg_program *p, const cg_kernel *k, int i) {
  return ir_arena_printf(p->arena, "((%s *)q.p[%d])", device_type(p->buffers[k->more_outs[i]].type.dtype),
                         k->num_operands + i);
}

static const char *type_text(ir_arena *a, const ir_type *t) {
  char buf[128];
  return ir_arena_strdup(a, ir_type_format(t, buf, sizeof buf));
}

void cg_render_cuda_comment(cg_emitter *e, const cg_program *p, const cg_kernel *k) {
  const ir_node *n = k->node;
  cg_emitf(e, "/* ");
  if (n->num_results)
    cg_emitf(e, "%%%s: %s = ", n->results[0]->name, type_text(p->arena, &n->results[0]->type));
  cg_emitf(e, "%s", ir_op_get(n->op)->name);
  for (int i = 0; i < n->num_inputs && i < 6; i++)
    cg_emitf(e, "%s %%%s %s", i ? "," : "", n->inputs[i]->name, type_text(p->arena, &n->inputs[i]->type));
  if (n->num_inputs > 6) cg_emitf(e, ", ...");
  cg_emitf(e, " */\n");
}

static int64_t numel(const ir_type *t) { return ir_type_numel(t); }

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

static const char *expr_text(ir_arena *a, const cg_kernel *k, const cg_expr *x) {
  if (x->kind == CG_EXPR_CONST) return cg_c_literal(a, x->value, x->dtype);
  if (x->kind == CG_EXPR_LOAD)
    return ir_arena_printf(a, "in%d[%s]", x->operand,
                           index_expr(a, k, k->strides[x->operand], k->base[x->operand]));
  const char *args[3] = {0};
  for (int i = 0; i < x->num_args; i++) args[i] = expr_text(a, k, x->args[i]);
  const char *fmt = cuda_spelling(x->op);
  char *out = "";
  for (const char *c = fmt ? fmt : "%0"; *c; c++) {
    if (c[0] == '%' && c[1] >= '0' && c[1] <= '2') {
      out = ir_arena_printf(a, "%s%s", out, args[c[1] - '0'] ? args[c[1] - '0'] : "0");
      c++;
    } else if (c[0] == '%' && c[1] == 'T') {
      out = ir_arena_printf(a, "%s%s", out, device_type(x->dtype));
      c++;
    } else {
      out = ir_arena_printf(a, "%s%c", out, *c);
    }
  }
  return out;
}

/* The output is contiguous: element i of the grid-stride loop; the loop
 * indices i0..iN are i split by the (collapsed) loop dims. */
static void render_elementwise(cg_emitter *e, const cg_program *p, const cg_kernel *k,
                               cg_cuda_launch *l) {
  ir_arena *a = p->arena;
  for (int o = 0; o < k->num_operands; o++)
    cg_emitf(e, "const %s *in%d = %s;\n", device_type(p->buffers[k->operands[o]].type.dtype), o,
             in_ptr(p, k, o));
  cg_emitf(e, "%s *out = %s;\n", device_type(p->buffers[k->out].type.dtype), out_ptr(p, k));
  int64_t n = 1;
  for (int d = 0; d < k->loop_rank; d++) n *= k->loop_dims[d];
  /* only the indices some operand steps through */
  bool used[IR_MAX_RANK] = {0};
  int last = -1;
  for (int o = 0; o < k->num_operands; o++)
    for (int d = 0; d < k->loop_rank; d++)
      if (k->strides[o][d]) used[d] = true;
  for (int d = 0; d < k->loop_rank; d++)
    if (used[d] && last < 0) last = d;
  cg_emit_open(e, "MC_FOR(i, %lldLL)", (long long)n);
  if (k->loop_rank == 1 && used[0]) {
    cg_emitf(e, "int64_t i0 = i;\n");
  } else if (last >= 0) {
    cg_emitf(e, "int64_t r = i;\n");
    for (int d = k->loop_rank - 1; d > last; d--) {
      if (used[d]) cg_emitf(e, "int64_t i%d = r %% %lldLL;\n", d, (long long)k->loop_dims[d]);
      if (k->loop_dims[d] != 1) cg_emitf(e, "r /= %lldLL;\n", (long long)k->loop_dims[d]);
    }
    cg_emitf(e, "int64_t i%d = r%s;\n", last, last > 0 ? ir_arena_printf(a, " %% %lldLL", (long long)k->loop_dims[last]) : "");
  }
  cg_emitf(e, "out[i] = %s;\n", expr_text(a, k, k->expr));
  cg_emit_close(e, NULL);
  elementwise_launch(l, n);
}

/* ---- GEMM ---- */

typedef struct gemm_shape {
  int64_t m, n, k, batch;
  int ta, tb;
  int64_t a_matrix, b_matrix;
  int batch_rank;
  int64_t dims[IR_MAX_RANK], a_strides[IR_MAX_RANK], b_strides[IR_MAX_RANK];
} gemm_shape;

static void batch_strides(const ir_type *t, int matrix_dims, int64_t matrix, const gemm_shape *g,
                          int64_t *out) {
  int rank = t->rank - matrix_dims;
  int64_t s = matrix, own[IR_MAX_RANK];
  for (int i = rank - 1; i >= 0; i--) {
    own[i] = s;
    s *= t->dims[i];
  }
  for (int d = 0; d < g->batch_rank; d++) {
    int i = d - (g->batch_rank - rank);
    out[d] = i >= 0 && t->dims[i] != 1 ? own[i] : 0;
  }
}

/* The same reading of a matmul node as the C renderer's. */
static gemm_shape gemm_of(const ir_node *n) {
  const ir_type *a = &n->inputs[0]->type, *b = &n->inputs[1]->type, *c = &n->results[0]->type;
  gemm_shape g = {0};
  g.ta = ir_get_bool(n, "transpose_a", false) && a->rank > 1;
  g.tb = ir_get_bool(n, "transpose_b", false) && b->rank > 1;
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
  batch_strides(a, a->rank > 1 ? 2 : 1, g.a_matrix, &g, g.a_strides);
  batch_strides(b, b->rank > 1 ? 2 : 1, g.b_matrix, &g, g.b_strides);
  return g;
}

static bool shared_weight(const gemm_shape *g) {
  for (int d = 0; d < g->batch_rank; d++)
    if (g->b_strides[d]) return false;
  int64_t s = g->a_matrix;
  for (int d = g->batch_rank - 1; d >= 0; d--) {
    if (g->a_strides[d] != s) return false;
    s *= g->dims[d];
  }
  return !g->ta;
}

/* blockIdx.x, y tile C in 64x64; blockIdx.z is the batch element, split
 * into the batch dims to offset A, B and C. */
static void render_gemm(cg_emitter *e, const cg_program *p, const cg_kernel *k, cg_cuda_launch *l) {
  gemm_shape g = gemm_of(k->node);
  const char *fn = p->bf16 ? "mc_gemm_bf16" : "mc_gemm_f32";
  long long lda = g.ta ? g.m : g.k, ldb = g.tb ? g.k : g.n;
  cg_emitf(e, "const float *a = %s;\nconst float *b = %s;\nfloat *c = %s;\n", in_ptr(p, k, 0),
           in_ptr(p, k, 1), out_ptr(p, k));
  int64_t rows = g.m, batch = g.batch;
  if (shared_weight(&g)) { /* rows of every batch element stacked: one product */
    rows = g.batch * g.m;
    batch = 1;
    cg_emitf(e, "%s(0, %d, %lldLL, %lldLL, %lldLL, a, %lld, b, %lld, c, %lld);\n", fn, g.tb,
             (long long)rows, (long long)g.n, (long long)g.k, lda, ldb, (long long)g.n);
  } else if (g.batch_rank == 0) {
    cg_emitf(e, "%s(%d, %d, %lldLL, %lldLL, %lldLL, a, %lld, b, %lld, c, %lld);\n", fn, g.ta, g.tb,
             (long long)g.m, (long long)g.n, (long long)g.k, lda, ldb, (long long)g.n);
  } else {
    cg_emitf(e, "int64_t z = blockIdx.z, ao = 0, bo = 0;\n");
    for (int d = g.batch_rank - 1; d >= 0; d--) {
      cg_emitf(e, "{\n");
      cg_emitf(e, "  int64_t id = z %% %lld;\n", (long long)g.dims[d]);
      if (g.a_strides[d]) cg_emitf(e, "  ao += id * %lldLL;\n", (long long)g.a_strides[d]);
      if (g.b_strides[d]) cg_emitf(e, "  bo += id * %lldLL;\n", (long long)g.b_strides[d]);
      cg_emitf(e, "  z /= %lld;\n}\n", (long long)g.dims[d]);
    }
    cg_emitf(e, "%s(%d, %d, %lldLL, %lldLL, %lldLL, a + ao, %lld, b + bo, %lld, c + (int64_t)blockIdx.z * %lldLL, %lld);\n",
             fn, g.ta, g.tb, (long long)g.m, (long long)g.n, (long long)g.k, lda, ldb,
             (long long)(g.m * g.n), (long long)g.n);
  }
  *l = (cg_cuda_launch){(g.n + 63) / 64, (rows + 63) / 64, batch, p->bf16 ? 128 : BLOCK, 0};
}

/* ---- library calls ---- */

static void around_axis(const ir_type *t, int64_t axis, int64_t *outer, int64_t *n, int64_t *inner) {
  if (axis < 0) axis += t->rank;
  *outer = *inner = 1;
  *n = t->rank ? t->dims[axis] : 1;
  for (int i = 0; i < axis; i++) *outer *= t->dims[i];
  for (int i = (int)axis + 1; i < t->rank; i++) *inner *= t->dims[i];
}

static void emit_dims(cg_emitter *e, const ir_type *t) {
  cg_emitf(e, "const int64_t dims[%d] = {", t->rank ? t->rank : 1);
  for (int i = 0; i < t->rank; i++) cg_emitf(e, "%s%lldLL", i ? ", " : "", (long long)t->dims[i]);
  cg_emitf(e, "%s};\n", t->rank ? "" : "1");
}

static int64_t emit_reduce_mask(cg_emitter *e, const ir_node *n, const ir_type *x) {
  const int64_t *axes;
  int na = ir_get_ints(n, "axes", &axes);
  int mask[IR_MAX_RANK] = {0};
  for (int i = 0; i < na; i++) mask[(axes[i] % x->rank + x->rank) % x->rank] = 1;
  if (na == 0)
    for (int i = 0; i < x->rank; i++) mask[i] = 1;
  int64_t outs = 1;
  cg_emitf(e, "const int reduce[%d] = {", x->rank ? x->rank : 1);
  for (int i = 0; i < x->rank; i++) {
    cg_emitf(e, "%s%d", i ? ", " : "", mask[i]);
    if (!mask[i]) outs *= x->dims[i];
  }
  cg_emitf(e, "%s};\n", x->rank ? "" : "0");
  return outs;
}

static void render_reduce(cg_emitter *e, const cg_program *p, const cg_kernel *k, cg_cuda_launch *l) {
  const ir_node *n = k->node;
  const ir_type *x = &n->inputs[0]->type;
  emit_dims(e, x);
  int64_t outs = emit_reduce_mask(e, n, x);
  const char *scale = "1.0f";
  if (n->op == IR_OP_mean)
    scale = cg_c_literal(p->arena, 1.0 / (double)(numel(x) / numel(&n->results[0]->type)), IR_f32);
  if (n->op == IR_OP_max_grad) {
    cg_emitf(e, "mc_reduce_max_grad(%s, %s, %s, %d, dims, reduce);\n", out_ptr(p, k), in_ptr(p, k, 0),
             in_ptr(p, k, 2), x->rank);
    elementwise_launch(l, outs);
    return;
  }
  cg_emitf(e, "mc_reduce(%s, %s, %d, dims, reduce, %d, %s);\n", out_ptr(p, k), in_ptr(p, k, 0),
           x->rank, n->op == IR_OP_max, scale);
  row_launch(l, outs);
}

static void render_softmax(cg_emitter *e, const cg_program *p, const cg_kernel *k, cg_cuda_launch *l) {
  const ir_node *n = k->node;
  int64_t outer, len, inner;
  around_axis(&n->results[0]->type, ir_get_int(n, "axis", -1), &outer, &len, &inner);
  bool grad = n->op == IR_OP_softmax_grad || n->op == IR_OP_log_softmax_grad;
  int take_log = n->op == IR_OP_log_softmax || n->op == IR_OP_log_softmax_grad;
  cg_emitf(e, "mc_softmax%s(%s", grad ? "_grad" : "", out_ptr(p, k));
  for (int i = 0; i < k->num_operands; i++) cg_emitf(e, ", %s", in_ptr(p, k, i));
  cg_emitf(e, ", %lldLL, %lldLL, %lldLL, %d);\n", (long long)outer, (long long)len, (long long)inner,
           take_log);
  row_launch(l, outer * inner);
}

static void render_conv_params(cg_emitter *e, const ir_node *n, const ir_type *x, const ir_type *w,
                               const ir_type *y) {
  const int64_t *s, *pd, *dl;
  int ns = ir_get_ints(n, "stride", &s), np = ir_get_ints(n, "padding", &pd);
  int nd = ir_get_ints(n, "dilation", &dl);
  bool two = x->rank == 4;
  int64_t sw = ns ? s[ns - 1] : 1, pw = np ? pd[np - 1] : 0, dw = nd ? dl[nd - 1] : 1;
  int64_t sh = two && ns ? s[0] : 1, ph = two && np ? pd[0] : 0, dh = two && nd ? dl[0] : 1;
  cg_emitf(e,
           "const mc_conv p = {%lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, "
           "%lld, %lld, %lld, %lld, %lld};\n",
           (long long)x->dims[0], (long long)x->dims[1], (long long)(two ? x->dims[2] : 1),
           (long long)x->dims[x->rank - 1], (long long)w->dims[0], (long long)(two ? w->dims[2] : 1),
           (long long)w->dims[w->rank - 1], (long long)(two ? y->dims[2] : 1),
           (long long)y->dims[y->rank - 1], (long long)sh, (long long)sw, (long long)ph,
           (long long)pw, (long long)dh, (long long)dw, (long long)ir_get_int(n, "groups", 1));
}

static void render_conv(cg_emitter *e, const cg_program *p, const cg_kernel *k, cg_cuda_launch *l) {
  const ir_node *n = k->node;
  const char *out = out_ptr(p, k), *a = in_ptr(p, k, 0), *b = in_ptr(p, k, 1);
  if (n->op == IR_OP_conv) {
    render_conv_params(e, n, &n->inputs[0]->type, &n->inputs[1]->type, &n->results[0]->type);
    cg_emitf(e, "mc_conv2d(%s, %s, %s, p, %d);\n", out, a, b, p->bf16);
    elementwise_launch(l, numel(&n->results[0]->type));
  } else if (n->op == IR_OP_conv_grad_input) { /* (g, w) -> x */
    render_conv_params(e, n, &n->results[0]->type, &n->inputs[1]->type, &n->inputs[0]->type);
    cg_emitf(e, "mc_conv2d_grad_input(%s, %s, %s, p, %d);\n", out, a, b, p->bf16);
    elementwise_launch(l, numel(&n->results[0]->type));
  } else { /* conv_grad_weight (x, g) -> w: a block per weight */
    render_conv_params(e, n, &n->inputs[0]->type, &n->results[0]->type, &n->inputs[1]->type);
    cg_emitf(e, "mc_conv2d_grad_weight(%s, %s, %s, p, %d);\n", out, a, b, p->bf16);
    row_launch(l, numel(&n->results[0]->type));
  }
}

/* conv_concat and its gradients (mc_conv_cat: the conv over the
 * concatenation, then the parts). */
static void render_conv_concat(cg_emitter *e, const cg_program *p, const cg_kernel *k,
                               cg_cuda_launch *l) {
  const ir_node *n = k->node;
  cg_emitf(e, "const mc_conv_cat cq = %s;\n", cg_conv_concat_literal(p->arena, n, "LL"));
  if (n->op == IR_OP_conv_concat_grad_input) {
    cg_emitf(e, "mc_conv2d_cat_grad_input(%s, %s, %s, cq, %lldLL, %d);\n", out_ptr(p, k),
             in_ptr(p, k, 0), in_ptr(p, k, 1), (long long)ir_get_int(n, "part", 0), p->bf16);
    elementwise_launch(l, numel(&n->results[0]->type));
    return;
  }
  const char *parts[3] = {"nullptr", "nullptr", "nullptr"};
  for (int i = 1; i < k->num_operands && i <= 3; i++) parts[i - 1] = in_ptr(p, k, i);
  bool fwd = n->op == IR_OP_conv_concat;
  cg_emitf(e, "mc_conv2d_cat%s(%s, %s, cq, %s, %s, %s, %d);\n", fwd ? "" : "_grad_weight",
           out_ptr(p, k), in_ptr(p, k, 0), parts[0], parts[1], parts[2], p->bf16);
  if (fwd)
    elementwise_launch(l, numel(&n->results[0]->type));
  else /* a block per weight */
    row_launch(l, numel(&n->results[0]->type));
}

static void render_pool(cg_emitter *e, const cg_program *p, const cg_kernel *k, cg_cuda_launch *l) {
  const ir_node *n = k->node;
  const ir_type *x = &n->inputs[0]->type;
  const ir_type *y = n->op == IR_OP_maxpool || n->op == IR_OP_avgpool ? &n->results[0]->type
                                                                       : &n->inputs[1]->type;
  const int64_t *kr, *st, *pd;
  int nk = ir_get_ints(n, "kernel", &kr), ns = ir_get_ints(n, "stride", &st);
  int np = ir_get_ints(n, "padding", &pd);
  int64_t kh = kr[0], kw = kr[nk - 1], sh = ns ? st[0] : kh, sw = ns ? st[ns - 1] : kw;
  int64_t ph = np ? pd[0] : 0, pw = np ? pd[np - 1] : 0;
  const ir_type *xt = x; /* every pooling op's first input is the forward input x */
  cg_emitf(e,
           "const mc_pool p = {%lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld};\n",
           (long long)xt->dims[0], (long long)xt->dims[1], (long long)xt->dims[2],
           (long long)xt->dims[3], (long long)y->dims[2], (long long)y->dims[3], (long long)kh,
           (long long)kw, (long long)sh, (long long)sw, (long long)ph, (long long)pw);
  const char *out = out_ptr(p, k), *a = in_ptr(p, k, 0);
  int64_t windows = y->dims[0] * y->dims[1] * y->dims[2] * y->dims[3];
  elementwise_launch(l, windows);
  switch (n->op) {
  case IR_OP_maxpool: cg_emitf(e, "mc_maxpool2d(%s, %s, p);\n", out, a); break;
  case IR_OP_avgpool: cg_emitf(e, "mc_avgpool2d(%s, %s, p, 0);\n", out, a); break;
  case IR_OP_maxpool_grad:
    cg_emitf(e, "mc_maxpool2d_grad(%s, %s, %s, p);\n", out, a, in_ptr(p, k, 1));
    l->zero_bytes = ir_type_bytes(&n->results[0]->type);
    break;
  default:
    cg_emitf(e, "mc_avgpool2d(%s, %s, p, 1);\n", out, in_ptr(p, k, 1));
    l->zero_bytes = ir_type_bytes(&n->results[0]->type);
  }
}

static void render_upsample(cg_emitter *e, const cg_program *p, const cg_kernel *k, cg_cuda_launch *l) {
  const ir_node *n = k->node;
  const ir_type *x = &n->inputs[0]->type;
  bool nearest = strcmp(ir_get_str(n, "mode", "nearest"), "bilinear") != 0;
  bool grad = n->op == IR_OP_upsample_grad;
  int64_t planes = x->dims[0] * x->dims[1], h = x->dims[2], w = x->dims[3];
  int64_t s = ir_get_int(n, "scale", 2);
  const char *args = ir_arena_printf(p->arena, "%s, %s, %lldLL, %lldLL, %lldLL, %lldLL", out_ptr(p, k),
                                     in_ptr(p, k, grad ? 1 : 0), (long long)planes, (long long)h,
                                     (long long)w, (long long)s);
  if (nearest) {
    cg_emitf(e, "mc_upsample_nearest%s(%s);\n", grad ? "_grad" : "", args);
    elementwise_launch(l, grad ? planes * h * w : planes * h * w * s * s);
  } else {
    cg_emitf(e, "mc_upsample_bilinear(%s, %d);\n", args, grad);
    elementwise_launch(l, planes * h * w * s * s);
    if (grad) l->zero_bytes = ir_type_bytes(&n->results[0]->type);
  }
}

static void render_gather(cg_emitter *e, const cg_program *p, const cg_kernel *k, cg_cuda_launch *l) {
  const ir_node *n = k->node;
  if (n->op == IR_OP_gather) {
    const ir_type *table = &n->inputs[0]->type, *ids = &n->inputs[1]->type;
    /* a bad id reports the launch's site (q.site: the ids' buffer + 1) */
    cg_emitf(e, "mc_gather(%s, %s, %s, %lldLL, %lldLL, %lldLL, m.error, (int)q.site);\n", out_ptr(p, k),
             in_ptr(p, k, 0), in_ptr(p, k, 1), (long long)numel(ids), (long long)table->dims[1],
             (long long)table->dims[0]);
    elementwise_launch(l, numel(ids) * table->dims[1]);
  } else { /* gather_grad(ids, g): zeroed, then atomics */
    const ir_type *out = &n->results[0]->type, *ids = &n->inputs[0]->type;
    cg_emitf(e, "mc_gather_grad(%s, %s, %s, %lldLL, %lldLL);\n", out_ptr(p, k), in_ptr(p, k, 0),
             in_ptr(p, k, 1), (long long)numel(ids), (long long)out->dims[1]);
    elementwise_launch(l, numel(ids) * out->dims[1]);
    l->zero_bytes = ir_type_bytes(out);
  }
}

static void render_nll(cg_emitter *e, const cg_program *p, const cg_kernel *k, cg_cuda_launch *l) {
  const ir_node *n = k->node;
  const ir_type *logp = &n->inputs[0]->type;
  int64_t classes = logp->dims[logp->rank - 1], rows = numel(logp) / classes;
  long long ignore = (long long)ir_get_int(n, "ignore_index", -100);
  if (n->op == IR_OP_nll_loss) {
    cg_emitf(e, "mc_nll_loss(%s, %s, %s, %lldLL, %lldLL, %lldLL);\n", out_ptr(p, k), in_ptr(p, k, 0),
             in_ptr(p, k, 1), (long long)rows, (long long)classes, ignore);
    row_launch(l, 1);
  } else {
    cg_emitf(e, "mc_nll_loss_grad(%s, %s, %s, %lldLL, %lldLL, %lldLL);\n", out_ptr(p, k),
             in_ptr(p, k, 1), in_ptr(p, k, 2), (long long)rows, (long long)classes, ignore);
    elementwise_launch(l, rows * classes);
  }
}

static bool render_misc(cg_emitter *e, const cg_program *p, const cg_kernel *k, cg_cuda_launch *l) {
  const ir_node *n = k->node;
  const ir_type *t = n->num_results ? &n->results[0]->type : NULL;
  switch (n->op) {
  case IR_OP_rope:
  case IR_OP_rope_grad: {
    int64_t tt = t->dims[t->rank - 2], hd = t->dims[t->rank - 1];
    cg_emitf(e, "mc_rope(%s, %s, %lldLL, %lldLL, %lldLL, %s, %s);\n", out_ptr(p, k), in_ptr(p, k, 0),
             (long long)(numel(t) / (tt * hd)), (long long)tt, (long long)hd,
             cg_c_literal(p->arena, ir_get_float(n, "base", 10000.0), IR_f32),
             n->op == IR_OP_rope ? "1.0f" : "-1.0f");
    elementwise_launch(l, numel(t) / 2);
    return true;
  }
  case IR_OP_mask:
    cg_emitf(e, "mc_attention_mask(%s, %lldLL, %lldLL, %d, %lldLL, %lldLL);\n", out_ptr(p, k),
             (long long)t->dims[0], (long long)t->dims[1], ir_get_bool(n, "causal", false),
             (long long)ir_get_int(n, "window", 0), (long long)ir_get_int(n, "global", 0));
    elementwise_launch(l, numel(t));
    return true;
  case IR_OP_dropout_mask:
    /* the stream as the C backend draws it: site and micro-batch */
    cg_emitf(e, "mc_dropout_mask(%s, %lldLL, %s, m.seed, mc_hash(%lldull, 0x64726f70ull, (uint64_t)m.micro_step));\n",
             out_ptr(p, k), (long long)numel(t), cg_c_literal(p->arena, ir_get_float(n, "p", 0), IR_f32),
             (long long)ir_get_int(n, "stream", 0));
    elementwise_launch(l, numel(t));
    return true;
  default: return false;
  }
}

/* flash_attention(q, k, v) -> out, lse; flash_attention_grad(q, k, v,
 * out, lse, d.out) -> d.q, d.k, d.v (mc_flash_attention*). */
static void render_flash(cg_emitter *e, const cg_program *p, const cg_kernel *k, cg_cuda_launch *l) {
  const ir_node *n = k->node;
  bool bthd = strcmp(ir_get_str(n, "layout", "bhtd"), "bthd") == 0;
  const ir_type *q = &n->inputs[0]->type, *kv = &n->inputs[1]->type;
  int hd = bthd ? 2 : 1, td = bthd ? 1 : 2;
  int64_t b = q->dims[0], h = q->dims[hd], kv_h = kv->dims[hd], t = q->dims[td], d = q->dims[3];
  if (d > 128) {
    cg_emitf(e, "#error \"flash attention on CUDA: head size %lld > 128\"\n", (long long)d);
    return;
  }
  cg_emitf(e, "const mc_flash f = {%lldLL, %lldLL, %lldLL, %lldLL, %lldLL, %d, %d, %lldLL, %lldLL, %s, %s};\n",
           (long long)b, (long long)h, (long long)kv_h, (long long)t, (long long)d,
           ir_get_bool(n, "causal", false), bthd, (long long)ir_get_int(n, "window", 0),
           (long long)ir_get_int(n, "global", 0),
           cg_c_literal(p->arena, ir_get_float(n, "scale", 1.0), IR_f32),
           cg_c_literal(p->arena, ir_get_float(n, "rope", 0.0), IR_f32));
  int64_t row_blocks = (t + 3) / 4; /* MC_ATTN_ROWS query rows a block */
  if (n->op == IR_OP_flash_attention) {
    cg_emitf(e, "mc_flash_attention(%s, %s, %s, %s, %s, f);\n", out_ptr(p, k), more_out_ptr(p, k, 0),
             in_ptr(p, k, 0), in_ptr(p, k, 1), in_ptr(p, k, 2));
    *l = (cg_cuda_launch){row_blocks, h, b, 128, 0};
  } else {
    cg_emitf(e, "mc_flash_attention_grad(%s, %s, %s,\n", out_ptr(p, k), more_out_ptr(p, k, 0),
             more_out_ptr(p, k, 1));
    cg_emitf(e, "    %s, %s, %s, %s, %s, %s, f);\n", in_ptr(p, k, 0), in_ptr(p, k, 1), in_ptr(p, k, 2),
             in_ptr(p, k, 3), in_ptr(p, k, 4), in_ptr(p, k, 5));
    *l = (cg_cuda_launch){row_blocks, h + kv_h, b, 128, 0};
  }
}

/* glu(h) act -> [..., F]; glu_grad(h, d.out) -> d.h [..., 2F]. */
static void render_glu(cg_emitter *e, const cg_program *p, const cg_kernel *k, cg_cuda_launch *l) {
  const ir_node *n = k->node;
  const ir_type *h = &n->inputs[0]->type;
  int64_t f = h->dims[h->rank - 1] / 2, rows = numel(h) / (2 * f);
  const char *act = ir_get_str(n, "act", "silu");
  int code = strcmp(act, "silu") == 0 ? 0 : strcmp(act, "gelu") == 0 ? 1 : strcmp(act, "gelu_tanh") == 0 ? 2 : 3;
  if (n->op == IR_OP_glu)
    cg_emitf(e, "mc_glu(%s, %s, %lldLL, %lldLL, %d); /* %s */\n", out_ptr(p, k), in_ptr(p, k, 0),
             (long long)rows, (long long)f, code, act);
  else
    cg_emitf(e, "mc_glu_grad(%s, %s, %s, %lldLL, %lldLL, %d); /* %s */\n", out_ptr(p, k), in_ptr(p, k, 0),
             in_ptr(p, k, 1), (long long)rows, (long long)f, code, act);
  elementwise_launch(l, rows * f);
}

/* fused_norm(x, w, b?) -> y, mean, rstd: a block per row;
 * fused_norm_grad: a block per row of d.x, then one per column of d.w
 * and d.b. */
static void render_norm(cg_emitter *e, const cg_program *p, const cg_kernel *k, cg_cuda_launch *l) {
  const ir_node *n = k->node;
  bool grad = n->op == IR_OP_fused_norm_grad;
  const ir_type *x = &n->inputs[grad ? 1 : 0]->type;
  int64_t d = x->dims[x->rank - 1], rows = numel(x) / d;
  int rms = ir_get_bool(n, "rms", false);
  if (!grad) {
    cg_emitf(e, "mc_norm(%s, %s, %s, %s, %s, %s, %lldLL, %lldLL, %.9gf, %d);\n", out_ptr(p, k),
             more_out_ptr(p, k, 0), more_out_ptr(p, k, 1), in_ptr(p, k, 0), in_ptr(p, k, 1),
             k->num_operands == 3 ? in_ptr(p, k, 2) : "nullptr", (long long)rows, (long long)d,
             ir_get_float(n, "eps", 1e-5), rms);
    row_launch(l, rows);
    return;
  }
  cg_emitf(e, "mc_norm_grad(%s, %s, %s, %s, %s, %s, %s, %s, %s, %lldLL, %lldLL, %d);\n", out_ptr(p, k),
           more_out_ptr(p, k, 0), more_out_ptr(p, k, 1), in_ptr(p, k, 0), in_ptr(p, k, 1), in_ptr(p, k, 2),
           in_ptr(p, k, 3), in_ptr(p, k, 4), k->num_operands == 6 ? in_ptr(p, k, 5) : "nullptr",
           (long long)rows, (long long)d, rms);
  row_launch(l, rows + d);
}

/* softmax_cross_entropy(logits, targets) -> loss, lse;
 * softmax_cross_entropy_grad(logits, lse, targets, d.loss). */
static void render_softmax_ce(cg_emitter *e, const cg_program *p, const cg_kernel *k, cg_cuda_launch *l) {
  const ir_node *n = k->node;
  const ir_type *x = &n->inputs[0]->type;
  int64_t classes = x->dims[x->rank - 1], rows = numel(x) / classes;
  long long ignore = (long long)ir_get_int(n, "ignore_index", -100);
  if (n->op == IR_OP_softmax_cross_entropy) {
    cg_emitf(e, "mc_softmax_ce(%s, %s, %s, %s, %lldLL, %lldLL, %lldLL);\n", out_ptr(p, k),
             more_out_ptr(p, k, 0), in_ptr(p, k, 0), in_ptr(p, k, 1), (long long)rows, (long long)classes,
             ignore);
    row_launch(l, 1);
  } else {
    cg_emitf(e, "mc_softmax_ce_grad(%s, %s, %s, %s, %s, %lldLL, %lldLL, %lldLL);\n", out_ptr(p, k),
             in_ptr(p, k, 0), in_ptr(p, k, 1), in_ptr(p, k, 2), in_ptr(p, k, 3), (long long)rows,
             (long long)classes, ignore);
    elementwise_launch(l, rows * classes);
  }
}

static void render_call(cg_emitter *e, const cg_program *p, const cg_kernel *k, cg_cuda_launch *l) {
  switch (k->node->op) {
  case IR_OP_sum:
  case IR_OP_mean:
  case IR_OP_max:
  case IR_OP_max_grad: render_reduce(e, p, k, l); return;
  case IR_OP_softmax:
  case IR_OP_log_softmax:
  case IR_OP_softmax_grad:
  case IR_OP_log_softmax_grad: render_softmax(e, p, k, l); return;
  case IR_OP_nll_loss:
  case IR_OP_nll_loss_grad: render_nll(e, p, k, l); return;
  case IR_OP_gather:
  case IR_OP_gather_grad: render_gather(e, p, k, l); return;
  case IR_OP_conv:
  case IR_OP_conv_grad_input:
  case IR_OP_conv_grad_weight: render_conv(e, p, k, l); return;
  case IR_OP_conv_concat:
  case IR_OP_conv_concat_grad_input:
  case IR_OP_conv_concat_grad_weight: render_conv_concat(e, p, k, l); return;
  case IR_OP_maxpool:
  case IR_OP_avgpool:
  case IR_OP_maxpool_grad:
  case IR_OP_avgpool_grad: render_pool(e, p, k, l); return;
  case IR_OP_upsample:
  case IR_OP_upsample_grad: render_upsample(e, p, k, l); return;
  case IR_OP_flash_attention:
  case IR_OP_flash_attention_grad: render_flash(e, p, k, l); return;
  case IR_OP_glu:
  case IR_OP_glu_grad: render_glu(e, p, k, l); return;
  case IR_OP_fused_norm:
  case IR_OP_fused_norm_grad: render_norm(e, p, k, l); return;
  case IR_OP_softmax_cross_entropy:
  case IR_OP_softmax_cross_entropy_grad: render_softmax_ce(e, p, k, l); return;
  default:
    if (render_misc(e, p, k, l)) return;
    cg_emitf(e, "#error \"no CUDA lowering for op %s\"\n", ir_op_get(k->node->op)->name);
  }
}

/* ---- concat, pad, gradients, constants ---- */

/* A thread per output element; the input is found by the position on
 * the axis. */
static void render_concat(cg_emitter *e, const cg_program *p, const cg_kernel *k, cg_cuda_launch *l) {
  const ir_node *n = k->node;
  const ir_type *t = &n->results[0]->type;
  int64_t axis = ir_get_int(n, "axis", 0), outer, len, inner;
  around_axis(t, axis, &outer, &len, &inner);
  cg_emitf(e, "float *out = %s;\n", out_ptr(p, k));
  cg_emit_open(e, "MC_FOR(i, %lldLL)", (long long)numel(t));
  cg_emitf(e, "int64_t o = i / %lldLL, at = i %% %lldLL;\n", (long long)(len * inner), (long long)(len * inner));
  int64_t start = 0;
  for (int i = 0; i < k->num_operands; i++) {
    int64_t part = n->inputs[i]->type.dims[(axis + t->rank) % t->rank] * inner;
    cg_emitf(e, "%sif (at < %lldLL) out[i] = %s[o * %lldLL + at - %lldLL];\n", i ? "else " : "",
             (long long)(start + part), in_ptr(p, k, i), (long long)part, (long long)start);
    start += part;
  }
  cg_emit_close(e, NULL);
  elementwise_launch(l, numel(t));
}

static void render_pad(cg_emitter *e, const cg_program *p, const cg_kernel *k, cg_cuda_launch *l) {
  const ir_node *n = k->node;
  const ir_type *t = &n->results[0]->type, *x = &n->inputs[0]->type;
  int64_t axis = ir_get_int(n, "axis", 0), outer, len, inner;
  around_axis(t, axis, &outer, &len, &inner);
  int64_t before = ir_get_int(n, "before", 0) * inner;
  int64_t part = x->dims[(axis + t->rank) % t->rank] * inner;
  cg_emitf(e, "float *out = %s;\nconst float *in = %s;\n", out_ptr(p, k), in_ptr(p, k, 0));
  cg_emit_open(e, "MC_FOR(i, %lldLL)", (long long)numel(t));
  cg_emitf(e, "int64_t o = i / %lldLL, at = i %% %lldLL - %lldLL;\n", (long long)(len * inner),
           (long long)(len * inner), (long long)before);
  cg_emitf(e, "out[i] = at >= 0 && at < %lldLL ? in[o * %lldLL + at] : 0.0f;\n", (long long)part,
           (long long)part);
  cg_emit_close(e, NULL);
  elementwise_launch(l, numel(t));
}

void cg_render_cuda_kernel(cg_emitter *e, const cg_program *p, const cg_kernel *k,
                           cg_cuda_launch *launch) {
  *launch = (cg_cuda_launch){1, 1, 1, BLOCK, 0};
  if (k->kind == CG_K_ASSIGN) return;
  cg_emit_open(e, "extern \"C\" __global__ void __launch_bounds__(MC_BLOCK) %s(mc_args m, mc_ptrs q)", k->name);
  switch (k->kind) {
  case CG_K_ELEMENTWISE: render_elementwise(e, p, k, launch); break;
  case CG_K_GEMM: render_gemm(e, p, k, launch); break;
  case CG_K_CALL: render_call(e, p, k, launch); break;
  case CG_K_CONCAT: render_concat(e, p, k, launch); break;
  case CG_K_PAD: render_pad(e, p, k, launch); break;
  case CG_K_CONST:
    cg_emitf(e, "if (blockIdx.x == 0 && threadIdx.x == 0) %s[0] = %s;\n", out_ptr(p, k),
             cg_c_literal(p->arena, ir_get_float(k->node, "value", 0), k->node->results[0]->type.dtype));
    launch->block = 32;
    break;
  case CG_K_GRAD: {
    int64_t count = numel(&p->buffers[k->out].type);
    cg_emitf(e, "float *grad = %s;\nconst float *g = %s;\n", out_ptr(p, k), in_ptr(p, k, 0));
    cg_emitf(e, "MC_FOR(i, %lldLL) grad[i] += g[i];\n", (long long)count);
    elementwise_launch(launch, count);
    break;
  }
  default: break;
  }
  cg_emit_close(e, "}\n\n");
}
