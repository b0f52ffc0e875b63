/* cg_render_llvm.c: kernels as LLVM IR, through the LLVM C API.
 *
 * Each kernel becomes an internal function `i32 NAME(i8* args)` where
 * args points at a modelc_rt_kernel_args (state, grads, act, seed,
 * micro_step, in[]: every field 8 bytes). Elementwise kernels are loop
 * nests over the collapsed output shape with the scalar expression
 * spelled by llvm_op() below, in the same order of operations as the C
 * renderer's table, so that both backends compute the same floats; the
 * other kernels call the runtime (GEMM, softmax, conv, ...). Kernels that
 * render to the same C are emitted once. One exported function per entry
 * point calls them in order; the model around them is a table read by
 * the runtime (cg_table.c, runtime/rt_table.c). cg_llvm_target.c
 * optimises the module (O3, vectorising for the target CPU) and writes
 * objects. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cg_llvm.h"

typedef struct llvm_renderer {
  const cg_program *p;
  LLVMContextRef c;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMTypeRef i8, i32, i64, f32, f64, ptr, kernel_type;
  LLVMValueRef fn, args; /* the function being rendered and its argument */
  const cg_kernel *kernel; /* inside a kernel: its buffers are its parameters */
  LLVMValueRef status;     /* what the kernel returns, NULL: 0 (see cg_kernel_returns_status) */
} llvm_renderer;

/* ---- helpers ---- */

static LLVMValueRef i64c(llvm_renderer *r, int64_t v) { return LLVMConstInt(r->i64, (unsigned long long)v, 1); }
static LLVMValueRef i32c(llvm_renderer *r, int v) { return LLVMConstInt(r->i32, (unsigned long long)v, 1); }
static LLVMValueRef f32c(llvm_renderer *r, double v) { return LLVMConstReal(r->f32, (double)(float)v); }

static LLVMTypeRef scalar_type(llvm_renderer *r, ir_dtype t) {
  switch (t) {
  case IR_f64: return r->f64;
  case IR_i32: return r->i32;
  case IR_i64: return r->i64;
  case IR_u8: return r->i8;
  default: return r->f32;
  }
}

/* A function of the module by name, declared on first use. */
static LLVMValueRef function(llvm_renderer *r, const char *name, LLVMTypeRef ret, LLVMTypeRef *params,
                             unsigned n, LLVMTypeRef *type_out) {
  LLVMTypeRef type = LLVMFunctionType(ret, params, n, 0);
  LLVMValueRef f = LLVMGetNamedFunction(r->mod, name);
  if (!f) f = LLVMAddFunction(r->mod, name, type);
  *type_out = type;
  return f;
}

/* call NAME(args...) with the argument types of the values given. */
static LLVMValueRef call(llvm_renderer *r, LLVMTypeRef ret, const char *name, LLVMValueRef *args, unsigned n) {
  LLVMTypeRef params[16], type;
  for (unsigned i = 0; i < n; i++) params[i] = LLVMTypeOf(args[i]);
  LLVMValueRef f = function(r, name, ret, params, n, &type);
  return LLVMBuildCall2(r->b, type, f, args, n, "");
}

static LLVMValueRef call1(llvm_renderer *r, const char *name, LLVMValueRef x) {
  return call(r, LLVMTypeOf(x), name, &x, 1);
}

static LLVMValueRef arg_i64(llvm_renderer *r, int index) {
  LLVMValueRef slots = LLVMBuildBitCast(r->b, r->args, LLVMPointerType(r->i64, 0), "");
  LLVMValueRef at = LLVMBuildGEP2(r->b, r->i64, slots, (LLVMValueRef[]){i64c(r, index)}, 1, "");
  return LLVMBuildLoad2(r->b, r->i64, at, "");
}

static const cg_buffer *root(const cg_program *p, int b) {
  while (p->buffers[b].alias_of >= 0) b = p->buffers[b].alias_of;
  return &p->buffers[b];
}

static void add_attribute(llvm_renderer *r, LLVMValueRef f, unsigned index, const char *name) {
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(f, index, LLVMCreateEnumAttribute(r->c, kind, 0));
}

/* Whether elementwise kernel k overwrites operand o in place (the memory
 * plan gives an output the block of an operand that dies there, when the
 * operand is read at the index written, cg_plan.c): the operand is then
 * read through the output's pointer, which stays noalias. */
static bool reads_in_place(const cg_program *p, const cg_kernel *k, int o) {
  if (k->kind != CG_K_ELEMENTWISE || k->out < 0 || k->base[o] != 0) return false;
  const cg_buffer *out = root(p, k->out), *in = root(p, k->operands[o]);
  if (in->kind != out->kind || in->kind == CG_BUF_INPUT || in->offset != out->offset ||
      ir_type_bytes(&p->buffers[k->operands[o]].type) != ir_type_bytes(&p->buffers[k->out].type))
    return false;
  int64_t stride = 1;
  for (int d = k->loop_rank - 1; d >= 0; d--) {
    if (k->strides[o][d] != stride) return false;
    stride *= k->loop_dims[d];
  }
  return true;
}

/* Whether the output shares bytes with an operand not read in place
 * (never, with today's memory plan; checked, because the kernel promises
 * otherwise). */
static bool output_overlaps(const cg_program *p, const cg_kernel *k) {
  if (k->out < 0) return true;
  const cg_buffer *o = root(p, k->out);
  int64_t ob = ir_type_bytes(&p->buffers[k->out].type);
  for (int i = 0; i < k->num_operands; i++) {
    if (reads_in_place(p, k, i)) continue;
    const cg_buffer *b = root(p, k->operands[i]);
    if (b->kind != o->kind || (b->kind == CG_BUF_INPUT && b->index != o->index)) continue;
    if (b->kind == CG_BUF_INPUT) return true;
    int64_t bb = ir_type_bytes(&p->buffers[k->operands[i]].type);
    if (b->offset < o->offset + ob && o->offset < b->offset + bb) return true;
  }
  return false;
}

/* Inside a kernel, its buffers are its parameters: operand i (-1: the
 * output) as bytes, or as a pointer to its element type. Operands are
 * told apart by position, never by buffer, because the function also
 * serves kernels whose operands are other buffers. */
static LLVMValueRef param_bytes(llvm_renderer *r, int operand) {
  return LLVMGetParam(r->fn, (unsigned)(2 + operand));
}

/* Result i + 1 of a kernel with several (flash_attention's lse): its
 * buffer comes after the operands. */
static LLVMValueRef more_out_bytes(llvm_renderer *r, int i) {
  return LLVMGetParam(r->fn, (unsigned)(2 + r->kernel->num_operands + i));
}

/* modelc_rt.h's MODELC_RT_MAX_BUFFERS: the buffers a step can pass. */
enum { KERNEL_MAX_BUFFERS = 13 };

/* Buffers a kernel takes: the output, the operands, the other results. */
static int kernel_buffers(const cg_kernel *k) { return 1 + k->num_operands + k->num_more_outs; }

static LLVMValueRef param(llvm_renderer *r, int operand) {
  const cg_kernel *k = r->kernel;
  int b = operand < 0 ? k->out : k->operands[operand];
  LLVMTypeRef t = scalar_type(r, r->p->buffers[b].type.dtype);
  return LLVMBuildBitCast(r->b, param_bytes(r, operand), LLVMPointerType(t, 0), r->p->buffers[b].name);
}

/* A private constant array of i64 (or i32) values, as a byte pointer. */
static LLVMValueRef const_array(llvm_renderer *r, LLVMTypeRef t, const int64_t *v, int n) {
  LLVMValueRef items[32];
  for (int i = 0; i < n; i++) items[i] = LLVMConstInt(t, (unsigned long long)v[i], 1);
  LLVMValueRef init = LLVMConstArray(t, items, (unsigned)n);
  LLVMValueRef g = LLVMAddGlobal(r->mod, LLVMTypeOf(init), "");
  LLVMSetInitializer(g, init);
  LLVMSetGlobalConstant(g, 1);
  LLVMSetLinkage(g, LLVMPrivateLinkage);
  LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
  return LLVMConstBitCast(g, r->ptr);
}

/* ---- loops: for (i = 0; i < n; i++), n >= 1 ---- */

typedef struct loop {
  LLVMBasicBlockRef header;
  LLVMValueRef index, end;
} loop;

/* for (i = begin; i < end; i++), begin < end */
static loop loop_range(llvm_renderer *r, LLVMValueRef begin, LLVMValueRef end) {
  loop l = {LLVMAppendBasicBlockInContext(r->c, r->fn, "loop"), NULL, end};
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(r->b);
  LLVMBuildBr(r->b, l.header);
  LLVMPositionBuilderAtEnd(r->b, l.header);
  l.index = LLVMBuildPhi(r->b, r->i64, "i");
  LLVMAddIncoming(l.index, &begin, &pre, 1);
  return l;
}

static loop loop_begin(llvm_renderer *r, int64_t n) { return loop_range(r, i64c(r, 0), i64c(r, n)); }

static void loop_end(llvm_renderer *r, loop *l) {
  LLVMValueRef next = LLVMBuildAdd(r->b, l->index, i64c(r, 1), "");
  LLVMValueRef more = LLVMBuildICmp(r->b, LLVMIntSLT, next, l->end, "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(r->b);
  LLVMBasicBlockRef exit = LLVMAppendBasicBlockInContext(r->c, r->fn, "done");
  LLVMBuildCondBr(r->b, more, l->header, exit);
  LLVMAddIncoming(l->index, &next, &latch, 1);
  LLVMPositionBuilderAtEnd(r->b, exit);
}

/* ---- scalars ---- */

static bool is_float(LLVMTypeRef t) {
  LLVMTypeKind k = LLVMGetTypeKind(t);
  return k == LLVMFloatTypeKind || k == LLVMDoubleTypeKind;
}

/* C's conversion of v to type t (u8 values are unsigned). */
static LLVMValueRef convert(llvm_renderer *r, LLVMValueRef v, bool is_unsigned, LLVMTypeRef t) {
  LLVMTypeRef from = LLVMTypeOf(v);
  if (from == t) return v;
  if (is_float(from) && is_float(t)) return LLVMBuildFPCast(r->b, v, t, "");
  if (is_float(from)) return LLVMBuildFPToSI(r->b, v, t, "");
  if (is_float(t)) return is_unsigned ? LLVMBuildUIToFP(r->b, v, t, "") : LLVMBuildSIToFP(r->b, v, t, "");
  return LLVMBuildIntCast2(r->b, v, t, !is_unsigned, "");
}

static LLVMValueRef truth(llvm_renderer *r, LLVMValueRef v) {
  LLVMTypeRef t = LLVMTypeOf(v);
  if (is_float(t)) return LLVMBuildFCmp(r->b, LLVMRealUNE, v, LLVMConstReal(t, 0), "");
  return LLVMBuildICmp(r->b, LLVMIntNE, v, LLVMConstInt(t, 0, 0), "");
}

static LLVMValueRef fone(LLVMValueRef like) { return LLVMConstReal(LLVMTypeOf(like), 1.0); }
/* A literal of like's type: a float literal is rounded to float, as C's 0.5f. */
static LLVMValueRef fconst(LLVMValueRef like, double v) {
  LLVMTypeRef t = LLVMTypeOf(like);
  return LLVMConstReal(t, LLVMGetTypeKind(t) == LLVMFloatTypeKind ? (double)(float)v : v);
}

/* expf, logf, ... for f32; exp, log, ... for f64. */
static LLVMValueRef libm(llvm_renderer *r, const char *name, LLVMValueRef x) {
  bool single = LLVMTypeOf(x) == r->f32;
  char buf[32];
  snprintf(buf, sizeof buf, "%s%s", name, single ? "f" : "");
  return call1(r, buf, x);
}

static LLVMValueRef intrinsic(llvm_renderer *r, const char *name, LLVMValueRef *args, unsigned n) {
  char buf[48];
  snprintf(buf, sizeof buf, "llvm.%s.%s", name, LLVMTypeOf(args[0]) == r->f32 ? "f32" : "f64");
  return call(r, LLVMTypeOf(args[0]), buf, args, n);
}

static LLVMValueRef sigmoid(llvm_renderer *r, LLVMValueRef x) { /* 1 / (1 + exp(-x)) */
  LLVMValueRef e = libm(r, "exp", LLVMBuildFNeg(r->b, x, ""));
  return LLVMBuildFDiv(r->b, fone(x), LLVMBuildFAdd(r->b, fone(x), e, ""), "");
}

/* 0.5 x (1 + tanh(u)), with 1 + tanh(u) = 2 / (1 + exp(-2u)), u = c (x + 0.044715 x^3) */
static LLVMValueRef gelu_tanh(llvm_renderer *r, LLVMValueRef x) {
  LLVMBuilderRef b = r->b;
  LLVMValueRef cube = LLVMBuildFMul(b, LLVMBuildFMul(b, LLVMBuildFMul(b, fconst(x, 0.044715), x, ""), x, ""), x, "");
  LLVMValueRef u = LLVMBuildFMul(b, fconst(x, 0.79788456080286536), LLVMBuildFAdd(b, x, cube, ""), "");
  LLVMValueRef e = libm(r, "exp", LLVMBuildFMul(b, fconst(x, -2.0), u, ""));
  LLVMValueRef t = LLVMBuildFDiv(b, fconst(x, 2.0), LLVMBuildFAdd(b, fone(x), e, ""), "");
  return LLVMBuildFMul(b, LLVMBuildFMul(b, fconst(x, 0.5), x, ""), t, "");
}

/* A unary op of x (float). */
static LLVMValueRef unary(llvm_renderer *r, ir_op op, LLVMValueRef x) {
  LLVMBuilderRef b = r->b;
  LLVMValueRef zero = LLVMConstReal(LLVMTypeOf(x), 0);
  switch (op) {
  case IR_OP_neg: return LLVMBuildFNeg(b, x, "");
  case IR_OP_relu: return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, x, zero, ""), x, zero, "");
  case IR_OP_gelu: { /* 0.5 x (1 + erf(x / sqrt 2)) */
    LLVMValueRef e = libm(r, "erf", LLVMBuildFMul(b, x, fconst(x, 0.70710678118654752), ""));
    return LLVMBuildFMul(b, LLVMBuildFMul(b, fconst(x, 0.5), x, ""), LLVMBuildFAdd(b, fone(x), e, ""), "");
  }
  case IR_OP_gelu_tanh: return gelu_tanh(r, x);
  case IR_OP_silu: {
    LLVMValueRef e = libm(r, "exp", LLVMBuildFNeg(b, x, ""));
    return LLVMBuildFDiv(b, x, LLVMBuildFAdd(b, fone(x), e, ""), "");
  }
  case IR_OP_sigmoid: return sigmoid(r, x);
  case IR_OP_tanh: return libm(r, "tanh", x);
  case IR_OP_exp: return libm(r, "exp", x);
  case IR_OP_log: return libm(r, "log", x);
  case IR_OP_sqrt: return intrinsic(r, "sqrt", &x, 1);
  case IR_OP_rsqrt: return LLVMBuildFDiv(b, fone(x), intrinsic(r, "sqrt", &x, 1), "");
  case IR_OP_abs: return intrinsic(r, "fabs", &x, 1);
  case IR_OP_softplus: { /* max(x, 0) + log1p(exp(-|x|)) */
    LLVMValueRef mx[2] = {x, zero};
    LLVMValueRef a = intrinsic(r, "fabs", &x, 1);
    LLVMValueRef l = libm(r, "log1p", libm(r, "exp", LLVMBuildFNeg(b, a, "")));
    return LLVMBuildFAdd(b, intrinsic(r, "maxnum", mx, 2), l, "");
  }
  case IR_OP_sign: {
    LLVMValueRef gt = LLVMBuildZExt(b, LLVMBuildFCmp(b, LLVMRealOGT, x, zero, ""), r->i32, "");
    LLVMValueRef lt = LLVMBuildZExt(b, LLVMBuildFCmp(b, LLVMRealOLT, x, zero, ""), r->i32, "");
    return LLVMBuildSIToFP(b, LLVMBuildSub(b, gt, lt, ""), LLVMTypeOf(x), "");
  }
  default: return x;
  }
}

/* A gradient op: x the saved value (input or output of the forward op), g the incoming gradient. */
static LLVMValueRef gradient(llvm_renderer *r, ir_op op, LLVMValueRef x, LLVMValueRef g) {
  LLVMBuilderRef b = r->b;
  LLVMValueRef zero = LLVMConstReal(LLVMTypeOf(x), 0);
  switch (op) {
  case IR_OP_relu_grad: return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, x, zero, ""), g, zero, "");
  case IR_OP_gelu_grad:
    return LLVMBuildFMul(b, g, call(r, r->f32, "modelc_rt_gelu_grad", &x, 1), "");
  case IR_OP_gelu_tanh_grad:
    return LLVMBuildFMul(b, g, call(r, r->f32, "modelc_rt_gelu_tanh_grad", &x, 1), "");
  case IR_OP_silu_grad: { /* s (1 + x (1 - s)) */
    LLVMValueRef s = sigmoid(r, x);
    LLVMValueRef inner = LLVMBuildFMul(b, x, LLVMBuildFSub(b, fone(x), s, ""), "");
    return LLVMBuildFMul(b, g, LLVMBuildFMul(b, s, LLVMBuildFAdd(b, fone(x), inner, ""), ""), "");
  }
  case IR_OP_softplus_grad: return LLVMBuildFMul(b, g, sigmoid(r, x), "");
  case IR_OP_sigmoid_grad: /* g y (1 - y) */
    return LLVMBuildFMul(b, LLVMBuildFMul(b, g, x, ""), LLVMBuildFSub(b, fone(x), x, ""), "");
  case IR_OP_tanh_grad: /* g (1 - y^2) */
    return LLVMBuildFMul(b, g, LLVMBuildFSub(b, fone(x), LLVMBuildFMul(b, x, x, ""), ""), "");
  default: return g;
  }
}

static LLVMValueRef arithmetic(llvm_renderer *r, ir_op op, LLVMValueRef a, LLVMValueRef c) {
  LLVMBuilderRef b = r->b;
  bool fl = is_float(LLVMTypeOf(a));
  switch (op) {
  case IR_OP_add: return fl ? LLVMBuildFAdd(b, a, c, "") : LLVMBuildAdd(b, a, c, "");
  case IR_OP_sub: return fl ? LLVMBuildFSub(b, a, c, "") : LLVMBuildSub(b, a, c, "");
  case IR_OP_mul: return fl ? LLVMBuildFMul(b, a, c, "") : LLVMBuildMul(b, a, c, "");
  default: return fl ? LLVMBuildFDiv(b, a, c, "") : LLVMBuildSDiv(b, a, c, "");
  }
}

/* ---- elementwise ---- */

typedef struct element_context {
  llvm_renderer *r;
  const cg_kernel *k;
  LLVMValueRef operands[CG_MAX_OPERANDS];
  LLVMValueRef index[IR_MAX_RANK];
} element_context;

static LLVMValueRef linear_index(element_context *x, const int64_t *strides, int64_t base) {
  llvm_renderer *r = x->r;
  LLVMValueRef at = i64c(r, base);
  for (int d = 0; d < x->k->loop_rank; d++)
    if (strides[d])
      at = LLVMBuildAdd(r->b, at, LLVMBuildMul(r->b, x->index[d], i64c(r, strides[d]), ""), "");
  return at;
}

static LLVMValueRef expr_value(element_context *x, const cg_expr *e) {
  llvm_renderer *r = x->r;
  LLVMTypeRef t = scalar_type(r, e->dtype);
  if (e->kind == CG_EXPR_CONST)
    return is_float(t) ? LLVMConstReal(t, t == r->f32 ? (double)(float)e->value : e->value)
                       : LLVMConstInt(t, (unsigned long long)(long long)e->value, 1);
  if (e->kind == CG_EXPR_LOAD) {
    const cg_kernel *k = x->k;
    LLVMTypeRef bt = scalar_type(r, r->p->buffers[k->operands[e->operand]].type.dtype);
    LLVMValueRef at = linear_index(x, k->strides[e->operand], k->base[e->operand]);
    LLVMValueRef ptr = LLVMBuildGEP2(r->b, bt, x->operands[e->operand], &at, 1, "");
    return LLVMBuildLoad2(r->b, bt, ptr, "");
  }
  LLVMValueRef args[3] = {0};
  bool unsigned_arg[3] = {0};
  for (int i = 0; i < e->num_args; i++) {
    args[i] = expr_value(x, e->args[i]);
    unsigned_arg[i] = e->args[i]->dtype == IR_u8;
  }
  switch (e->op) {
  case IR_OP_cast: return convert(r, args[0], unsigned_arg[0], t);
  case IR_OP_where:
    return LLVMBuildSelect(r->b, truth(r, args[0]), convert(r, args[1], unsigned_arg[1], t),
                           convert(r, args[2], unsigned_arg[2], t), "");
  case IR_OP_add:
  case IR_OP_sub:
  case IR_OP_mul:
  case IR_OP_div:
    return arithmetic(r, e->op, convert(r, args[0], unsigned_arg[0], t), convert(r, args[1], unsigned_arg[1], t));
  case IR_OP_relu_grad:
  case IR_OP_gelu_grad:
  case IR_OP_gelu_tanh_grad:
  case IR_OP_silu_grad:
  case IR_OP_softplus_grad:
  case IR_OP_sigmoid_grad:
  case IR_OP_tanh_grad:
    return gradient(r, e->op, convert(r, args[0], unsigned_arg[0], r->f32), convert(r, args[1], unsigned_arg[1], r->f32));
  default:
    if (e->num_args == 0) return LLVMConstNull(t);
    if (!is_float(t)) {
      if (e->op == IR_OP_neg) return LLVMBuildNeg(r->b, convert(r, args[0], unsigned_arg[0], t), "");
      return convert(r, args[0], unsigned_arg[0], t);
    }
    return unary(r, e->op, convert(r, args[0], unsigned_arg[0], t));
  }
}

/* The loop nest over output rows [lo, hi) of the outermost dim (NULL:
 * all of them); out and operands as byte pointers. */
static void elementwise_loops(llvm_renderer *r, const cg_kernel *k, LLVMValueRef out_bytes,
                              const LLVMValueRef *operand_bytes, LLVMValueRef lo, LLVMValueRef hi) {
  element_context x = {r, k, {0}, {0}};
  for (int o = 0; o < k->num_operands; o++) {
    LLVMTypeRef t = scalar_type(r, r->p->buffers[k->operands[o]].type.dtype);
    LLVMValueRef bytes = reads_in_place(r->p, k, o) ? out_bytes : operand_bytes[o];
    x.operands[o] = LLVMBuildBitCast(r->b, bytes, LLVMPointerType(t, 0), "");
  }
  const cg_buffer *ob = &r->p->buffers[k->out];
  LLVMTypeRef ot = scalar_type(r, ob->type.dtype);
  LLVMValueRef out = LLVMBuildBitCast(r->b, out_bytes, LLVMPointerType(ot, 0), "out");
  int64_t ostr[IR_MAX_RANK], numel = 1;
  for (int d = k->loop_rank - 1; d >= 0; d--) {
    ostr[d] = numel;
    numel *= k->loop_dims[d];
  }
  if (numel <= 0) return;
  loop loops[IR_MAX_RANK];
  for (int d = 0; d < k->loop_rank; d++) {
    loops[d] = d == 0 && lo ? loop_range(r, lo, hi) : loop_begin(r, k->loop_dims[d]);
    x.index[d] = loops[d].index;
  }
  LLVMValueRef v = convert(r, expr_value(&x, k->expr), k->expr->dtype == IR_u8, ot);
  LLVMValueRef at = linear_index(&x, ostr, 0);
  LLVMBuildStore(r->b, v, LLVMBuildGEP2(r->b, ot, out, &at, 1, ""));
  for (int d = k->loop_rank - 1; d >= 0; d--) loop_end(r, &loops[d]);
}

/* void NAME.rows(i8** buffers, i64 lo, i64 hi): rows [lo, hi) of a large
 * elementwise kernel, which the runtime spreads over its OpenMP threads
 * (modelc_rt_parallel_rows), as the C backend's MODELC_RT_PARALLEL_FOR. */
static LLVMValueRef rows_function(llvm_renderer *r, const cg_kernel *k) {
  int n = 1 + k->num_operands;
  LLVMTypeRef params[2 + CG_MAX_OPERANDS];
  for (int i = 0; i < n; i++) params[i] = r->ptr;
  params[n] = params[n + 1] = r->i64;
  LLVMTypeRef ltype = LLVMFunctionType(LLVMVoidTypeInContext(r->c), params, (unsigned)n + 2, 0);
  LLVMValueRef loops = LLVMAddFunction(r->mod, ir_arena_printf(r->p->arena, "%s.loops", k->name), ltype);
  LLVMSetLinkage(loops, LLVMInternalLinkage);
  add_attribute(r, loops, LLVMAttributeFunctionIndex, "alwaysinline");
  if (!output_overlaps(r->p, k)) add_attribute(r, loops, 1, "noalias");
  r->fn = loops;
  LLVMPositionBuilderAtEnd(r->b, LLVMAppendBasicBlockInContext(r->c, loops, "entry"));
  LLVMValueRef ops[CG_MAX_OPERANDS];
  for (int o = 0; o < k->num_operands; o++) ops[o] = LLVMGetParam(loops, 1 + (unsigned)o);
  elementwise_loops(r, k, LLVMGetParam(loops, 0), ops, LLVMGetParam(loops, (unsigned)n),
                    LLVMGetParam(loops, (unsigned)n + 1));
  LLVMBuildRetVoid(r->b);

  LLVMTypeRef slot = LLVMPointerType(r->ptr, 0);
  LLVMTypeRef rtype = LLVMFunctionType(LLVMVoidTypeInContext(r->c), (LLVMTypeRef[]){slot, r->i64, r->i64}, 3, 0);
  LLVMValueRef rows = LLVMAddFunction(r->mod, ir_arena_printf(r->p->arena, "%s.rows", k->name), rtype);
  LLVMSetLinkage(rows, LLVMInternalLinkage);
  r->fn = rows;
  LLVMPositionBuilderAtEnd(r->b, LLVMAppendBasicBlockInContext(r->c, rows, "entry"));
  LLVMValueRef args[2 + CG_MAX_OPERANDS];
  for (int i = 0; i < n; i++) {
    LLVMValueRef at = LLVMBuildGEP2(r->b, r->ptr, LLVMGetParam(rows, 0), (LLVMValueRef[]){i64c(r, i)}, 1, "");
    args[i] = LLVMBuildLoad2(r->b, r->ptr, at, "");
  }
  args[n] = LLVMGetParam(rows, 1);
  args[n + 1] = LLVMGetParam(rows, 2);
  LLVMBuildCall2(r->b, ltype, loops, args, (unsigned)n + 2, "");
  LLVMBuildRetVoid(r->b);
  return rows;
}

static void render_elementwise(llvm_renderer *r, const cg_kernel *k) {
  LLVMValueRef ops[CG_MAX_OPERANDS];
  for (int o = 0; o < k->num_operands; o++) ops[o] = param_bytes(r, o);
  int64_t numel = 1;
  for (int d = 0; d < k->loop_rank; d++) numel *= k->loop_dims[d];
  if (numel < 32768 || k->loop_rank == 0 || k->loop_dims[0] <= 1) {
    elementwise_loops(r, k, param_bytes(r, -1), ops, NULL, NULL);
    return;
  }
  /* the same threshold as the C renderer's */
  LLVMValueRef fn = r->fn;
  LLVMBasicBlockRef at = LLVMGetInsertBlock(r->b);
  int n = 1 + k->num_operands;
  LLVMValueRef buffers = LLVMBuildArrayAlloca(r->b, r->ptr, i64c(r, n), "buffers");
  for (int i = 0; i < n; i++)
    LLVMBuildStore(r->b, param_bytes(r, i - 1), LLVMBuildGEP2(r->b, r->ptr, buffers, (LLVMValueRef[]){i64c(r, i)}, 1, ""));
  LLVMValueRef rows = rows_function(r, k);
  r->fn = fn;
  LLVMPositionBuilderAtEnd(r->b, at);
  LLVMValueRef args[3] = {LLVMConstBitCast(rows, r->ptr), LLVMBuildBitCast(r->b, buffers, r->ptr, ""),
                          i64c(r, k->loop_dims[0])};
  call(r, LLVMVoidTypeInContext(r->c), "modelc_rt_parallel_rows", args, 3);
}

/* ---- GEMM ---- */

static LLVMValueRef float_at(llvm_renderer *r, LLVMValueRef base, LLVMValueRef index) {
  LLVMValueRef f = LLVMBuildBitCast(r->b, base, LLVMPointerType(r->f32, 0), "");
  return LLVMBuildBitCast(r->b, LLVMBuildGEP2(r->b, r->f32, f, &index, 1, ""), r->ptr, "");
}

static void gemm_call(llvm_renderer *r, const cg_gemm_shape *g, int64_t m, LLVMValueRef a, LLVMValueRef b,
                      LLVMValueRef c) {
  int64_t lda = g->ta ? g->m : g->k, ldb = g->tb ? g->k : g->n;
  LLVMValueRef args[13] = {i32c(r, g->ta), i32c(r, g->tb), i64c(r, m), i64c(r, g->n), i64c(r, g->k),
                           f32c(r, 1.0), a, i64c(r, lda), b, i64c(r, ldb), f32c(r, 0.0), c, i64c(r, g->n)};
  call(r, LLVMVoidTypeInContext(r->c), r->p->bf16 ? "modelc_rt_gemm_bf16" : "modelc_rt_gemm", args, 13);
}

static void render_gemm(llvm_renderer *r, const cg_kernel *k) {
  cg_gemm_shape g = cg_gemm_of(k->node);
  LLVMValueRef a = param_bytes(r, 0), b = param_bytes(r, 1), c = param_bytes(r, -1);
  if (cg_gemm_folds(&g)) {
    gemm_call(r, &g, g.batch * g.m, a, b, c);
    return;
  }
  loop loops[IR_MAX_RANK];
  LLVMValueRef ao = i64c(r, 0), bo = i64c(r, 0), co = i64c(r, 0);
  for (int d = 0; d < g.batch_rank; d++) loops[d] = loop_begin(r, g.dims[d]);
  int64_t cs = g.m * g.n;
  for (int d = g.batch_rank - 1; d >= 0; d--) {
    LLVMValueRef i = loops[d].index;
    ao = LLVMBuildAdd(r->b, ao, LLVMBuildMul(r->b, i, i64c(r, g.a_strides[d]), ""), "");
    bo = LLVMBuildAdd(r->b, bo, LLVMBuildMul(r->b, i, i64c(r, g.b_strides[d]), ""), "");
    co = LLVMBuildAdd(r->b, co, LLVMBuildMul(r->b, i, i64c(r, cs), ""), "");
    cs *= g.dims[d];
  }
  gemm_call(r, &g, g.m, float_at(r, a, ao), float_at(r, b, bo), float_at(r, c, co));
  for (int d = g.batch_rank - 1; d >= 0; d--) loop_end(r, &loops[d]);
}

/* ---- runtime calls ---- */

static LLVMValueRef out_bytes(llvm_renderer *r, const cg_kernel *k) { (void)k; return param_bytes(r, -1); }
static LLVMValueRef in_bytes(llvm_renderer *r, const cg_kernel *k, int i) { (void)k; return param_bytes(r, i); }
static LLVMTypeRef void_type(llvm_renderer *r) { return LLVMVoidTypeInContext(r->c); }

static void render_reduce(llvm_renderer *r, const cg_kernel *k) {
  const ir_node *n = k->node;
  const ir_type *x = &n->inputs[0]->type;
  int mask[IR_MAX_RANK];
  int64_t mask64[IR_MAX_RANK], one = 1;
  cg_reduce_mask(n, x, mask);
  for (int i = 0; i < IR_MAX_RANK; i++) mask64[i] = mask[i];
  LLVMValueRef dims = const_array(r, r->i64, x->rank ? x->dims : &one, x->rank ? x->rank : 1);
  LLVMValueRef reduce = const_array(r, r->i32, mask64, x->rank ? x->rank : 1);
  LLVMValueRef out = out_bytes(r, k);
  LLVMValueRef args[5] = {out, in_bytes(r, k, 0), i32c(r, x->rank), dims, reduce};
  call(r, void_type(r), n->op == IR_OP_max ? "modelc_rt_reduce_max" : "modelc_rt_reduce_sum", args, 5);
  if (n->op == IR_OP_mean) {
    int64_t count = ir_type_numel(x) / ir_type_numel(&n->results[0]->type);
    LLVMValueRef s[3] = {out, i64c(r, ir_type_numel(&n->results[0]->type)), f32c(r, 1.0 / (double)count)};
    call(r, void_type(r), "modelc_rt_scale", s, 3);
  }
}

static void render_softmax(llvm_renderer *r, const cg_kernel *k) {
  const ir_node *n = k->node;
  int64_t outer, len, inner;
  cg_around_axis(&n->results[0]->type, ir_get_int(n, "axis", -1), &outer, &len, &inner);
  const char *fn = n->op == IR_OP_softmax ? "modelc_rt_softmax" : n->op == IR_OP_log_softmax ? "modelc_rt_log_softmax"
                   : n->op == IR_OP_softmax_grad ? "modelc_rt_softmax_grad" : "modelc_rt_log_softmax_grad";
  LLVMValueRef args[8];
  unsigned na = 0;
  args[na++] = out_bytes(r, k);
  for (int i = 0; i < k->num_operands; i++) args[na++] = in_bytes(r, k, i);
  args[na++] = i64c(r, outer);
  args[na++] = i64c(r, len);
  args[na++] = i64c(r, inner);
  call(r, void_type(r), fn, args, na);
}

static void render_conv(llvm_renderer *r, const cg_kernel *k) {
  const ir_node *n = k->node;
  int64_t v[16];
  const char *fn;
  if (n->op == IR_OP_conv) {
    cg_conv_params(n, &n->inputs[0]->type, &n->inputs[1]->type, &n->results[0]->type, v);
    fn = "modelc_rt_conv2d";
  } else if (n->op == IR_OP_conv_grad_input) {
    cg_conv_params(n, &n->results[0]->type, &n->inputs[1]->type, &n->inputs[0]->type, v);
    fn = "modelc_rt_conv2d_grad_input";
  } else {
    cg_conv_params(n, &n->inputs[0]->type, &n->results[0]->type, &n->inputs[1]->type, v);
    fn = "modelc_rt_conv2d_grad_weight";
  }
  char name[64];
  snprintf(name, sizeof name, "%s%s", fn, r->p->bf16 ? "_bf16" : "");
  LLVMValueRef args[4] = {out_bytes(r, k), in_bytes(r, k, 0), in_bytes(r, k, 1), const_array(r, r->i64, v, 16)};
  call(r, void_type(r), name, args, 4);
}

/* fused_norm and its gradient: as cg_render_c.c (runtime/rt_norm.c). */
static void render_norm(llvm_renderer *r, const cg_kernel *k) {
  const ir_node *n = k->node;
  bool grad = n->op == IR_OP_fused_norm_grad;
  const ir_type *x = &n->inputs[grad ? 1 : 0]->type;
  int64_t d = ir_type_numel(x) ? x->dims[x->rank - 1] : 1, rows = ir_type_numel(x) / d;
  LLVMValueRef rms = i32c(r, ir_get_bool(n, "rms", false)), null = LLVMConstNull(r->ptr);
  if (!grad) {
    LLVMValueRef args[10] = {out_bytes(r, k), more_out_bytes(r, 0), more_out_bytes(r, 1), in_bytes(r, k, 0),
                             in_bytes(r, k, 1), k->num_operands == 3 ? in_bytes(r, k, 2) : null, i64c(r, rows),
                             i64c(r, d), LLVMConstReal(LLVMDoubleTypeInContext(r->c), ir_get_float(n, "eps", 1e-5)),
                             rms};
    call(r, void_type(r), "modelc_rt_norm", args, 10);
    return;
  }
  LLVMValueRef args[12] = {out_bytes(r, k), more_out_bytes(r, 0), more_out_bytes(r, 1), in_bytes(r, k, 0),
                           in_bytes(r, k, 1), in_bytes(r, k, 2), in_bytes(r, k, 3), in_bytes(r, k, 4),
                           k->num_operands == 6 ? in_bytes(r, k, 5) : null, i64c(r, rows), i64c(r, d), rms};
  call(r, void_type(r), "modelc_rt_norm_grad", args, 12);
}

/* conv_concat and its gradients: as cg_render_c.c's render_conv_concat;
 * modelc_rt_conv_cat is 23 int64 fields, an i64 array. */
static void render_conv_concat(llvm_renderer *r, const cg_kernel *k) {
  const ir_node *n = k->node;
  int64_t v[CG_CONV_CAT_FIELDS];
  cg_conv_concat_params(n, v);
  LLVMValueRef q = const_array(r, r->i64, v, CG_CONV_CAT_FIELDS);
  const char *lowp = r->p->bf16 ? "_bf16" : "";
  char name[64];
  if (n->op == IR_OP_conv_concat_grad_input) {
    snprintf(name, sizeof name, "modelc_rt_conv2d_cat_grad_input%s", lowp);
    LLVMValueRef args[5] = {out_bytes(r, k), in_bytes(r, k, 0), in_bytes(r, k, 1), q,
                            i64c(r, ir_get_int(n, "part", 0))};
    call(r, void_type(r), name, args, 5);
    return;
  }
  snprintf(name, sizeof name, "modelc_rt_conv2d_cat%s%s",
           n->op == IR_OP_conv_concat ? "" : "_grad_weight", lowp);
  LLVMValueRef args[6] = {out_bytes(r, k), in_bytes(r, k, 0), q, LLVMConstNull(r->ptr),
                          LLVMConstNull(r->ptr), LLVMConstNull(r->ptr)};
  for (int i = 1; i < k->num_operands && i <= 3; i++) args[2 + i] = in_bytes(r, k, i);
  call(r, void_type(r), name, args, 6);
}

static void render_pool(llvm_renderer *r, const cg_kernel *k) {
  const ir_node *n = k->node;
  int64_t v[12];
  cg_pool_params(n, v);
  LLVMValueRef p = const_array(r, r->i64, v, 12), out = out_bytes(r, k), a = in_bytes(r, k, 0);
  switch (n->op) {
  case IR_OP_maxpool: call(r, void_type(r), "modelc_rt_maxpool2d", (LLVMValueRef[]){out, a, p}, 3); break;
  case IR_OP_avgpool: call(r, void_type(r), "modelc_rt_avgpool2d", (LLVMValueRef[]){out, a, p}, 3); break;
  case IR_OP_maxpool_grad:
    call(r, void_type(r), "modelc_rt_maxpool2d_grad", (LLVMValueRef[]){out, a, in_bytes(r, k, 1), p}, 4);
    break;
  default: call(r, void_type(r), "modelc_rt_avgpool2d_grad", (LLVMValueRef[]){out, in_bytes(r, k, 1), p}, 3);
  }
}

static void render_upsample(llvm_renderer *r, const cg_kernel *k) {
  const ir_node *n = k->node;
  const ir_type *x = &n->inputs[0]->type;
  bool nearest = strcmp(ir_get_str(n, "mode", "nearest"), "bilinear") != 0;
  bool grad = n->op == IR_OP_upsample_grad;
  char name[64];
  snprintf(name, sizeof name, "modelc_rt_upsample_%s%s", nearest ? "nearest" : "bilinear", grad ? "_grad" : "");
  LLVMValueRef args[6] = {out_bytes(r, k), in_bytes(r, k, grad ? 1 : 0), i64c(r, x->dims[0] * x->dims[1]),
                          i64c(r, x->dims[2]), i64c(r, x->dims[3]), i64c(r, ir_get_int(n, "scale", 2))};
  call(r, void_type(r), name, args, 6);
}

/* gather returns 1 when an id is out of range (the entry maps it to its check). */
static void render_gather(llvm_renderer *r, const cg_kernel *k) {
  const ir_node *n = k->node;
  if (n->op == IR_OP_gather) {
    const ir_type *table = &n->inputs[0]->type, *ids = &n->inputs[1]->type;
    LLVMValueRef ip = in_bytes(r, k, 1);
    LLVMValueRef ok = call(r, r->i64, "modelc_rt_check_ids",
                           (LLVMValueRef[]){ip, i64c(r, ir_type_numel(ids)), i64c(r, table->dims[0])}, 3);
    LLVMBasicBlockRef bad = LLVMAppendBasicBlockInContext(r->c, r->fn, "bad_ids");
    LLVMBasicBlockRef good = LLVMAppendBasicBlockInContext(r->c, r->fn, "ids_ok");
    LLVMBuildCondBr(r->b, LLVMBuildICmp(r->b, LLVMIntNE, ok, i64c(r, 0), ""), bad, good);
    LLVMPositionBuilderAtEnd(r->b, bad);
    LLVMBuildRet(r->b, i32c(r, 1));
    LLVMPositionBuilderAtEnd(r->b, good);
    call(r, void_type(r), "modelc_rt_gather",
         (LLVMValueRef[]){out_bytes(r, k), in_bytes(r, k, 0), ip, i64c(r, ir_type_numel(ids)), i64c(r, table->dims[1])}, 5);
  } else { /* gather_grad(ids, g) */
    const ir_type *out = &n->results[0]->type, *ids = &n->inputs[0]->type;
    LLVMBuildMemSet(r->b, out_bytes(r, k), LLVMConstInt(r->i8, 0, 0), i64c(r, ir_type_bytes(out)), 4);
    call(r, void_type(r), "modelc_rt_gather_grad",
         (LLVMValueRef[]){out_bytes(r, k), in_bytes(r, k, 0), in_bytes(r, k, 1), i64c(r, ir_type_numel(ids)),
                          i64c(r, out->dims[1])}, 5);
  }
}

static void render_nll(llvm_renderer *r, const cg_kernel *k) {
  const ir_node *n = k->node;
  const ir_type *logp = &n->inputs[0]->type;
  int64_t classes = logp->dims[logp->rank - 1], rows = ir_type_numel(logp) / classes;
  LLVMValueRef ignore = i64c(r, ir_get_int(n, "ignore_index", -100));
  if (n->op == IR_OP_nll_loss) {
    LLVMValueRef loss = call(r, r->f32, "modelc_rt_nll_loss",
                             (LLVMValueRef[]){in_bytes(r, k, 0), in_bytes(r, k, 1), i64c(r, rows), i64c(r, classes), ignore}, 5);
    LLVMBuildStore(r->b, loss, param(r, -1));
  } else {
    LLVMValueRef g = LLVMBuildLoad2(r->b, r->f32, param(r, 2), "");
    call(r, void_type(r), "modelc_rt_nll_loss_grad",
         (LLVMValueRef[]){out_bytes(r, k), in_bytes(r, k, 1), g, i64c(r, rows), i64c(r, classes), ignore}, 6);
  }
}

/* A private constant of a struct type made of i64, i32 and float fields,
 * laid out as C lays out the same fields (the target's ABI alignment). */
static LLVMValueRef const_struct(llvm_renderer *r, LLVMValueRef *fields, unsigned n) {
  LLVMValueRef init = LLVMConstStructInContext(r->c, fields, n, 0);
  LLVMValueRef g = LLVMAddGlobal(r->mod, LLVMTypeOf(init), "");
  LLVMSetInitializer(g, init);
  LLVMSetGlobalConstant(g, 1);
  LLVMSetLinkage(g, LLVMPrivateLinkage);
  LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
  return LLVMConstBitCast(g, r->ptr);
}

/* flash_attention(q, k, v) -> out, lse; flash_attention_grad(q, k, v,
 * out, lse, d.out) -> d.q, d.k, d.v. The runtime's status (it allocates
 * its rope tables) is the kernel's. As cg_render_c.c's render_flash. */
static void render_flash(llvm_renderer *r, const cg_kernel *k) {
  const ir_node *n = k->node;
  bool bthd = strcmp(ir_get_str(n, "layout", "bhtd"), "bthd") == 0;
  const ir_type *q = &n->inputs[0]->type, *kv = &n->inputs[1]->type;
  int hd = bthd ? 2 : 1, td = bthd ? 1 : 2;
  /* modelc_rt_flash: b, h, kv_h, t, d, causal, bthd, window, global, scale, rope */
  LLVMValueRef fields[11] = {i64c(r, q->dims[0]), i64c(r, q->dims[hd]), i64c(r, kv->dims[hd]), i64c(r, q->dims[td]),
                             i64c(r, q->dims[3]), i32c(r, ir_get_bool(n, "causal", false)), i32c(r, bthd),
                             i64c(r, ir_get_int(n, "window", 0)), i64c(r, ir_get_int(n, "global", 0)),
                             f32c(r, ir_get_float(n, "scale", 1.0)), f32c(r, ir_get_float(n, "rope", 0.0))};
  LLVMValueRef params = const_struct(r, fields, 11);
  if (n->op == IR_OP_flash_attention) {
    LLVMValueRef args[6] = {out_bytes(r, k), more_out_bytes(r, 0), in_bytes(r, k, 0), in_bytes(r, k, 1),
                            in_bytes(r, k, 2), params};
    r->status = call(r, r->i32, "modelc_rt_flash_attention", args, 6);
  } else {
    LLVMValueRef args[10] = {out_bytes(r, k),    more_out_bytes(r, 0), more_out_bytes(r, 1), in_bytes(r, k, 0),
                             in_bytes(r, k, 1),  in_bytes(r, k, 2),    in_bytes(r, k, 3),    in_bytes(r, k, 4),
                             in_bytes(r, k, 5),  params};
    r->status = call(r, r->i32, "modelc_rt_flash_attention_grad", args, 10);
  }
}

/* glu(h) -> y, glu_grad(h, g) -> dh; act 0 silu, 1 gelu, 2 gelu_tanh, 3 sigmoid. */
static void render_glu(llvm_renderer *r, const cg_kernel *k) {
  const ir_node *n = k->node;
  const ir_type *h = &n->inputs[0]->type;
  int64_t f = h->dims[h->rank - 1] / 2, rows = ir_type_numel(h) / (2 * f);
  const char *act = ir_get_str(n, "act", "silu");
  int code = strcmp(act, "silu") == 0 ? 0 : strcmp(act, "gelu") == 0 ? 1 : strcmp(act, "gelu_tanh") == 0 ? 2 : 3;
  if (n->op == IR_OP_glu)
    call(r, void_type(r), "modelc_rt_glu",
         (LLVMValueRef[]){out_bytes(r, k), in_bytes(r, k, 0), i64c(r, rows), i64c(r, f), i32c(r, code)}, 5);
  else
    call(r, void_type(r), "modelc_rt_glu_grad",
         (LLVMValueRef[]){out_bytes(r, k), in_bytes(r, k, 0), in_bytes(r, k, 1), i64c(r, rows), i64c(r, f),
                          i32c(r, code)}, 6);
}

/* softmax_cross_entropy(logits, targets) -> loss, lse;
 * softmax_cross_entropy_grad(logits, lse, targets, g) -> dlogits. */
static void render_softmax_ce(llvm_renderer *r, const cg_kernel *k) {
  const ir_node *n = k->node;
  const ir_type *x = &n->inputs[0]->type;
  int64_t classes = x->dims[x->rank - 1], rows = ir_type_numel(x) / classes;
  LLVMValueRef ignore = i64c(r, ir_get_int(n, "ignore_index", -100));
  if (n->op == IR_OP_softmax_cross_entropy) {
    LLVMValueRef loss = call(r, r->f32, "modelc_rt_softmax_ce",
                             (LLVMValueRef[]){more_out_bytes(r, 0), in_bytes(r, k, 0), in_bytes(r, k, 1),
                                              i64c(r, rows), i64c(r, classes), ignore}, 6);
    LLVMBuildStore(r->b, loss, param(r, -1));
  } else {
    LLVMValueRef g = LLVMBuildLoad2(r->b, r->f32, param(r, 3), "");
    call(r, void_type(r), "modelc_rt_softmax_ce_grad",
         (LLVMValueRef[]){out_bytes(r, k), in_bytes(r, k, 0), in_bytes(r, k, 1), in_bytes(r, k, 2), g,
                          i64c(r, rows), i64c(r, classes), ignore}, 8);
  }
}

static void render_call(llvm_renderer *r, const cg_kernel *k) {
  const ir_node *n = k->node;
  const ir_type *t = n->num_results ? &n->results[0]->type : NULL;
  switch (n->op) {
  case IR_OP_sum:
  case IR_OP_mean:
  case IR_OP_max: render_reduce(r, k); return;
  case IR_OP_softmax:
  case IR_OP_log_softmax:
  case IR_OP_softmax_grad:
  case IR_OP_log_softmax_grad: render_softmax(r, k); return;
  case IR_OP_max_grad: {
    const ir_type *x = &n->inputs[0]->type;
    int mask[IR_MAX_RANK];
    int64_t mask64[IR_MAX_RANK];
    cg_reduce_mask(n, x, mask);
    for (int i = 0; i < IR_MAX_RANK; i++) mask64[i] = mask[i];
    LLVMValueRef args[6] = {out_bytes(r, k), in_bytes(r, k, 0), in_bytes(r, k, 2), i32c(r, x->rank),
                            const_array(r, r->i64, x->dims, x->rank), const_array(r, r->i32, mask64, x->rank)};
    call(r, void_type(r), "modelc_rt_reduce_max_grad", args, 6);
    return;
  }
  case IR_OP_nll_loss:
  case IR_OP_nll_loss_grad: render_nll(r, k); return;
  case IR_OP_gather:
  case IR_OP_gather_grad: render_gather(r, k); return;
  case IR_OP_conv:
  case IR_OP_conv_grad_input:
  case IR_OP_conv_grad_weight: render_conv(r, k); return;
  case IR_OP_conv_concat:
  case IR_OP_conv_concat_grad_input:
  case IR_OP_conv_concat_grad_weight: render_conv_concat(r, k); return;
  case IR_OP_fused_norm:
  case IR_OP_fused_norm_grad: render_norm(r, k); return;
  case IR_OP_maxpool:
  case IR_OP_avgpool:
  case IR_OP_maxpool_grad:
  case IR_OP_avgpool_grad: render_pool(r, k); return;
  case IR_OP_upsample:
  case IR_OP_upsample_grad: render_upsample(r, k); return;
  case IR_OP_flash_attention:
  case IR_OP_flash_attention_grad: render_flash(r, k); return;
  case IR_OP_glu:
  case IR_OP_glu_grad: render_glu(r, k); return;
  case IR_OP_softmax_cross_entropy:
  case IR_OP_softmax_cross_entropy_grad: render_softmax_ce(r, k); return;
  case IR_OP_rope:
  case IR_OP_rope_grad: {
    int64_t tt = t->dims[t->rank - 2], hd = t->dims[t->rank - 1];
    LLVMValueRef args[6] = {out_bytes(r, k), in_bytes(r, k, 0), i64c(r, ir_type_numel(t) / (tt * hd)), i64c(r, tt),
                            i64c(r, hd), f32c(r, ir_get_float(n, "base", 10000.0))};
    call(r, void_type(r), n->op == IR_OP_rope ? "modelc_rt_rope" : "modelc_rt_rope_grad", args, 6);
    return;
  }
  case IR_OP_mask: {
    LLVMValueRef args[6] = {out_bytes(r, k), i64c(r, t->dims[0]), i64c(r, t->dims[1]),
                            i32c(r, ir_get_bool(n, "causal", false)), i64c(r, ir_get_int(n, "window", 0)),
                            i64c(r, ir_get_int(n, "global", 0))};
    call(r, void_type(r), "modelc_rt_attention_mask", args, 6);
    return;
  }
  case IR_OP_dropout_mask: {
    /* the stream mixes the site and the micro-batch counter, as in C */
    LLVMValueRef h = call(r, r->i64, "modelc_rt_hash",
                          (LLVMValueRef[]){i64c(r, ir_get_int(n, "stream", 0)), i64c(r, 0x64726f70), arg_i64(r, 4)}, 3);
    LLVMValueRef args[5] = {out_bytes(r, k), i64c(r, ir_type_numel(t)), f32c(r, ir_get_float(n, "p", 0)),
                            arg_i64(r, 3), h};
    call(r, void_type(r), "modelc_rt_dropout_mask", args, 5);
    return;
  }
  default: return; /* cg_lower only makes the calls above */
  }
}

/* ---- concat, pad, gradients, constants ---- */

static void copy_rows(llvm_renderer *r, LLVMValueRef out, int64_t out_stride, int64_t at, LLVMValueRef in,
                      int64_t part, int64_t outer) {
  loop l = loop_begin(r, outer);
  LLVMValueRef dst = float_at(r, out, LLVMBuildAdd(r->b, LLVMBuildMul(r->b, l.index, i64c(r, out_stride), ""), i64c(r, at), ""));
  LLVMValueRef src = float_at(r, in, LLVMBuildMul(r->b, l.index, i64c(r, part), ""));
  LLVMBuildMemCpy(r->b, dst, 4, src, 4, i64c(r, part * 4));
  loop_end(r, &l);
}

static void render_concat(llvm_renderer *r, const cg_kernel *k) {
  const ir_node *n = k->node;
  const ir_type *t = &n->results[0]->type;
  int64_t axis = ir_get_int(n, "axis", 0), outer, len, inner, at = 0;
  cg_around_axis(t, axis, &outer, &len, &inner);
  LLVMValueRef out = out_bytes(r, k);
  for (int i = 0; i < k->num_operands; i++) {
    int64_t part = n->inputs[i]->type.dims[(axis + t->rank) % t->rank] * inner;
    if (outer > 0 && part > 0) copy_rows(r, out, len * inner, at, in_bytes(r, k, i), part, outer);
    at += part;
  }
}

static void render_pad(llvm_renderer *r, const cg_kernel *k) {
  const ir_node *n = k->node;
  const ir_type *t = &n->results[0]->type, *x = &n->inputs[0]->type;
  int64_t axis = ir_get_int(n, "axis", 0), outer, len, inner;
  cg_around_axis(t, axis, &outer, &len, &inner);
  int64_t before = ir_get_int(n, "before", 0) * inner;
  int64_t part = x->dims[(axis + t->rank) % t->rank] * inner;
  LLVMValueRef out = out_bytes(r, k);
  LLVMBuildMemSet(r->b, out, LLVMConstInt(r->i8, 0, 0), i64c(r, ir_type_bytes(t)), 4);
  if (outer > 0 && part > 0) copy_rows(r, out, len * inner, before, in_bytes(r, k, 0), part, outer);
}

static void render_grad(llvm_renderer *r, const cg_kernel *k) {
  int64_t count = ir_type_numel(&r->p->buffers[k->out].type);
  LLVMValueRef grad = param(r, -1), g = param(r, 0);
  LLVMTypeRef ft = LLVMFloatTypeInContext(r->c);
  grad = LLVMBuildBitCast(r->b, grad, LLVMPointerType(ft, 0), "");
  g = LLVMBuildBitCast(r->b, g, LLVMPointerType(ft, 0), "");
  if (count <= 0) return;
  loop l = loop_begin(r, count);
  LLVMValueRef dst = LLVMBuildGEP2(r->b, ft, grad, &l.index, 1, "");
  LLVMValueRef sum = LLVMBuildFAdd(r->b, LLVMBuildLoad2(r->b, ft, dst, ""),
                                   LLVMBuildLoad2(r->b, ft, LLVMBuildGEP2(r->b, ft, g, &l.index, 1, ""), ""), "");
  LLVMBuildStore(r->b, sum, dst);
  loop_end(r, &l);
}

static void render_const(llvm_renderer *r, const cg_kernel *k) {
  const ir_value *v = k->node->results[0];
  LLVMTypeRef t = scalar_type(r, v->type.dtype);
  double value = ir_get_float(k->node, "value", 0);
  LLVMValueRef c = is_float(t) ? LLVMConstReal(t, t == r->f32 ? (double)(float)value : value)
                               : LLVMConstInt(t, (unsigned long long)(long long)value, 1);
  LLVMBuildStore(r->b, c, LLVMBuildBitCast(r->b, param_bytes(r, -1), LLVMPointerType(t, 0), ""));
}

/* ---- kernels and entries ---- */

static LLVMTypeRef body_type(llvm_renderer *r, const cg_kernel *k) {
  LLVMTypeRef params[KERNEL_MAX_BUFFERS + 1];
  for (int i = 0; i < 1 + kernel_buffers(k); i++) params[i] = r->ptr;
  return LLVMFunctionType(r->i32, params, 1 + (unsigned)kernel_buffers(k), 0);
}

/* i32 NAME(i8* args, i8** buffers) calls the body, i32 NAME.body(i8*
 * args, i8* out, i8* operands...), inlined into it: the buffers come as
 * parameters, so that the same kernel on other buffers (the next layer)
 * is the same function, and the output is noalias, so that loops
 * vectorise without run-time checks. */
static LLVMValueRef render_kernel(llvm_renderer *r, const cg_kernel *k) {
  LLVMTypeRef btype = body_type(r, k);
  LLVMValueRef f = LLVMAddFunction(r->mod, ir_arena_printf(r->p->arena, "%s.body", k->name), btype);
  LLVMSetLinkage(f, LLVMInternalLinkage);
  add_attribute(r, f, LLVMAttributeFunctionIndex, "alwaysinline");
  add_attribute(r, f, LLVMAttributeFunctionIndex, "nounwind");
  if (!output_overlaps(r->p, k)) add_attribute(r, f, 2, "noalias");
  r->fn = f;
  r->kernel = k;
  r->status = NULL;
  r->args = LLVMGetParam(f, 0);
  LLVMPositionBuilderAtEnd(r->b, LLVMAppendBasicBlockInContext(r->c, f, "entry"));
  switch (k->kind) {
  case CG_K_ELEMENTWISE: render_elementwise(r, k); break;
  case CG_K_GEMM: render_gemm(r, k); break;
  case CG_K_CALL: render_call(r, k); break;
  case CG_K_CONCAT: render_concat(r, k); break;
  case CG_K_PAD: render_pad(r, k); break;
  case CG_K_CONST: render_const(r, k); break;
  case CG_K_GRAD: render_grad(r, k); break;
  default: break;
  }
  LLVMBuildRet(r->b, r->status ? r->status : i32c(r, 0));
  r->kernel = NULL;
  r->status = NULL;

  LLVMValueRef w = LLVMAddFunction(r->mod, k->name, r->kernel_type);
  LLVMSetLinkage(w, LLVMInternalLinkage);
  add_attribute(r, w, LLVMAttributeFunctionIndex, "nounwind");
  LLVMPositionBuilderAtEnd(r->b, LLVMAppendBasicBlockInContext(r->c, w, "entry"));
  LLVMValueRef args[KERNEL_MAX_BUFFERS + 1] = {LLVMGetParam(w, 0)};
  LLVMTypeRef slot = LLVMPointerType(r->ptr, 0);
  for (int i = 0; i < kernel_buffers(k); i++) {
    LLVMValueRef at = LLVMBuildGEP2(r->b, r->ptr, LLVMGetParam(w, 1), (LLVMValueRef[]){i64c(r, i)}, 1, "");
    args[1 + i] = LLVMBuildLoad2(r->b, r->ptr, LLVMBuildBitCast(r->b, at, slot, ""), "");
  }
  LLVMBuildRet(r->b, LLVMBuildCall2(r->b, btype, f, args, 1 + (unsigned)kernel_buffers(k), ""));
  return w;
}

/* Kernels with the same C text, up to where their buffers are, are the
 * same kernel: one function. */
typedef struct kernel_seen {
  const char *text;
  uint64_t hash;
  LLVMValueRef fn;
} kernel_seen;

typedef struct kernel_set {
  kernel_seen *items;
  int count, cap;
} kernel_set;

static uint64_t text_hash(const char *s) {
  uint64_t h = 14695981039346656037ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* Every `from` in s replaced by `to`, no longer than it (in place). */
static void replace_all(char *s, const char *from, const char *to) {
  size_t len = strlen(from), to_len = strlen(to);
  char *w = s;
  for (const char *at = s; *at;) {
    if (strncmp(at, from, len) == 0) {
      memmove(w, to, to_len);
      w += to_len;
      at += len;
      continue;
    }
    *w++ = *at++;
  }
  *w = 0;
}

/* The C text without comments and with every buffer address spelled P
 * (m->act + 1024, m->in[0], ...), and whether the output may overlap. */
static const char *kernel_key(const cg_program *p, const cg_entry *entry, const cg_kernel *k) {
  cg_emitter tmp;
  cg_emit_init(&tmp, p->arena);
  cg_kernel named = *k;
  named.name = "K";
  cg_render_c_kernel(&tmp, p, entry, &named);
  const char *text = cg_emit_text(&tmp);
  char *key = ir_arena_alloc(p->arena, strlen(text) + 2 + (size_t)k->num_operands);
  size_t n = 0;
  /* (m->act + 1024), (m->state + 0), (m->grads + 64), m->in[0]: P */
  static const char *const bases[] = {"(m->act + ", "(m->state + ", "(m->grads + ", "m->in["};
  static const char closing[] = {')', ')', ')', ']'};
  for (const char *s = text; *s;) {
    if (s[0] == '/' && s[1] == '*') {
      const char *end = strstr(s + 2, "*/");
      s = end ? end + 2 : s + strlen(s);
      continue;
    }
    bool replaced = false;
    for (int i = 0; i < 4 && !replaced; i++) {
      size_t len = strlen(bases[i]);
      if (strncmp(s, bases[i], len) != 0) continue;
      const char *d = s + len;
      while (*d >= '0' && *d <= '9') d++;
      if (*d != closing[i]) continue;
      s = d + 1;
      key[n++] = 'P';
      replaced = true;
    }
    if (!replaced) key[n++] = *s++;
  }
  key[n] = 0;
  /* an input's pointer is cast, an activation's is not: the same P */
  replace_all(key, "((const modelc_rt_real *)P)", "P");
  replace_all(key, "((modelc_rt_real *)P)", "P");
  n = strlen(key);
  key[n++] = output_overlaps(p, k) ? '!' : '.';
  for (int o = 0; o < k->num_operands; o++) key[n++] = reads_in_place(p, k, o) ? 'o' : '-';
  key[n] = 0;
  return key;
}

static LLVMValueRef kernel_function(llvm_renderer *r, kernel_set *set, const cg_entry *entry, const cg_kernel *k) {
  const char *text = kernel_key(r->p, entry, k);
  uint64_t h = text_hash(text);
  for (int i = 0; i < set->count; i++)
    if (set->items[i].hash == h && strcmp(set->items[i].text, text) == 0) {
      return set->items[i].fn;
    }
  if (set->count == set->cap) {
    int cap = set->cap ? 2 * set->cap : 256;
    set->items = ir_arena_grow(r->p->arena, set->items, sizeof(kernel_seen) * (size_t)set->cap,
                               sizeof(kernel_seen) * (size_t)cap);
    set->cap = cap;
  }
  LLVMValueRef f = render_kernel(r, k);
  set->items[set->count++] = (kernel_seen){text, h, f};
  return f;
}

/* Where a buffer is, as modelc_rt_step spells it. */
static int64_t location(const cg_program *p, int b) {
  const cg_buffer *rb = root(p, b);
  switch (rb->kind) {
  case CG_BUF_INPUT: return ((int64_t)3 << 56) | rb->index;
  case CG_BUF_GRAD: return ((int64_t)1 << 56) | rb->offset;
  case CG_BUF_TEMP: return ((int64_t)2 << 56) | rb->offset;
  default: return rb->offset;
  }
}

/* The entry point as steps (modelc_rt_step): the kernels in order, then
 * the state assignments as copies. */
static LLVMValueRef render_steps(llvm_renderer *r, kernel_set *set, const cg_entry *entry, LLVMTypeRef step_type,
                                 int *count) {
  LLVMValueRef *steps = ir_arena_alloc(r->p->arena, sizeof(LLVMValueRef) * (size_t)(entry->num_kernels + 1));
  int n = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < entry->num_kernels; i++) {
      const cg_kernel *k = &entry->kernels[i];
      if ((k->kind == CG_K_ASSIGN) != (pass == 1)) continue;
      int64_t buffers[KERNEL_MAX_BUFFERS] = {0}, check = -1, used;
      LLVMValueRef fn;
      if (pass == 0) {
        fn = LLVMConstBitCast(kernel_function(r, set, entry, k), r->ptr);
        if (cg_kernel_checks(k)) check = cg_check_index(r->p, entry, i);
        used = kernel_buffers(k);
        buffers[0] = k->out >= 0 ? location(r->p, k->out) : 0;
        for (int o = 0; o < k->num_operands; o++) buffers[1 + o] = location(r->p, k->operands[o]);
        for (int o = 0; o < k->num_more_outs; o++)
          buffers[1 + k->num_operands + o] = location(r->p, k->more_outs[o]);
      } else {
        fn = LLVMConstNull(r->ptr);
        used = ir_type_bytes(&r->p->buffers[k->operands[0]].type);
        buffers[0] = location(r->p, k->operands[0]);
        buffers[1] = location(r->p, k->operands[1]);
      }
      LLVMValueRef items[KERNEL_MAX_BUFFERS];
      for (int j = 0; j < KERNEL_MAX_BUFFERS; j++) items[j] = i64c(r, buffers[j]);
      LLVMValueRef fields[4] = {fn, i64c(r, check), i64c(r, used), LLVMConstArray(r->i64, items, KERNEL_MAX_BUFFERS)};
      steps[n++] = LLVMConstNamedStruct(step_type, fields, 4);
    }
  LLVMValueRef init = LLVMConstArray(step_type, steps, (unsigned)n);
  LLVMValueRef g = LLVMAddGlobal(r->mod, LLVMTypeOf(init), ir_arena_printf(r->p->arena, "%s_%s_steps", r->p->model, entry->name));
  LLVMSetInitializer(g, init);
  LLVMSetGlobalConstant(g, 1);
  LLVMSetLinkage(g, LLVMPrivateLinkage);
  *count = n;
  return LLVMConstBitCast(g, r->ptr);
}

/* ---- the table and the API ---- */

static LLVMValueRef string_constant(llvm_renderer *r, const char *text, const char *name) {
  LLVMValueRef init = LLVMConstStringInContext(r->c, text, (unsigned)strlen(text), 0);
  LLVMValueRef g = LLVMAddGlobal(r->mod, LLVMTypeOf(init), name);
  LLVMSetInitializer(g, init);
  LLVMSetGlobalConstant(g, 1);
  LLVMSetLinkage(g, LLVMPrivateLinkage);
  return LLVMConstBitCast(g, r->ptr);
}

static const cg_entry *entry_named(const cg_program *p, const char *name) {
  for (int i = 0; i < p->num_entries; i++)
    if (strcmp(p->entries[i].name, name) == 0) return &p->entries[i];
  return NULL;
}

/* MODEL_NAME(params) { return modelc_rt_table_NAME(params); }, with
 * MODEL_table in front for `new`. */
static void api_function(llvm_renderer *r, LLVMValueRef table, const char *name, LLVMTypeRef ret,
                         LLVMTypeRef *params, unsigned n) {
  const char *own = ir_arena_printf(r->p->arena, "%s_%s", r->p->model, name);
  LLVMTypeRef type = LLVMFunctionType(ret, params, n, 0);
  LLVMValueRef f = LLVMAddFunction(r->mod, own, type);
  LLVMPositionBuilderAtEnd(r->b, LLVMAppendBasicBlockInContext(r->c, f, "entry"));
  LLVMValueRef args[4];
  unsigned na = 0;
  if (strcmp(name, "new") == 0) args[na++] = table;
  for (unsigned i = 0; i < n; i++) args[na++] = LLVMGetParam(f, i);
  LLVMValueRef v = call(r, ret, ir_arena_printf(r->p->arena, "modelc_rt_table_%s", name), args, na);
  if (LLVMGetTypeKind(ret) == LLVMVoidTypeKind) LLVMBuildRetVoid(r->b);
  else LLVMBuildRet(r->b, v);
}

static void render_api(llvm_renderer *r, LLVMValueRef table, bool trains) {
  LLVMTypeRef P = r->ptr, V = LLVMVoidTypeInContext(r->c), I = r->i32;
  api_function(r, table, "new", P, NULL, 0);
  api_function(r, table, "free", V, (LLVMTypeRef[]){P}, 1);
  api_function(r, table, "error", P, (LLVMTypeRef[]){P}, 1);
  api_function(r, table, "init", I, (LLVMTypeRef[]){P, r->i64}, 2);
  api_function(r, table, "load", I, (LLVMTypeRef[]){P, P}, 2);
  api_function(r, table, "save", I, (LLVMTypeRef[]){P, P}, 2);
  api_function(r, table, "forward", I, (LLVMTypeRef[]){P, P, P}, 3);
  if (!trains) return;
  api_function(r, table, "evaluate", I, (LLVMTypeRef[]){P, P, P}, 3);
  api_function(r, table, "train_step", r->f32, (LLVMTypeRef[]){P, P}, 2);
}

LLVMModuleRef cg_render_llvm(const cg_program *p, const cg_spec_info *info, LLVMContextRef c,
                             LLVMTargetMachineRef tm, bool api) {
  llvm_renderer r = {.p = p, .c = c};
  r.mod = LLVMModuleCreateWithNameInContext(p->model, c);
  r.b = LLVMCreateBuilderInContext(c);
  r.i8 = LLVMInt8TypeInContext(c);
  r.i32 = LLVMInt32TypeInContext(c);
  r.i64 = LLVMInt64TypeInContext(c);
  r.f32 = LLVMFloatTypeInContext(c);
  r.f64 = LLVMDoubleTypeInContext(c);
  r.ptr = LLVMPointerType(r.i8, 0);
  r.kernel_type = LLVMFunctionType(r.i32, (LLVMTypeRef[]){r.ptr, LLVMPointerType(r.ptr, 0)}, 2, 0);
  if (tm) {
    char *triple = LLVMGetTargetMachineTriple(tm);
    LLVMSetTarget(r.mod, triple);
    LLVMDisposeMessage(triple);
    LLVMTargetDataRef layout = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(r.mod, layout);
    LLVMDisposeTargetData(layout);
  }
  kernel_set set = {0};
  /* modelc_rt_step and modelc_rt_table_source */
  LLVMTypeRef step_type = LLVMStructCreateNamed(c, "modelc_rt_step");
  LLVMStructSetBody(step_type, (LLVMTypeRef[]){r.ptr, r.i64, r.i64, LLVMArrayType(r.i64, KERNEL_MAX_BUFFERS)}, 4, 0);
  const char *names[3] = {"forward", "evaluate", "train"};
  LLVMValueRef fields[7] = {string_constant(&r, cg_table_text(p, info), "table_text")};
  for (int i = 0; i < 3; i++) {
    const cg_entry *e = entry_named(p, names[i]);
    int count = 0;
    fields[1 + i] = e ? render_steps(&r, &set, e, step_type, &count) : LLVMConstNull(r.ptr);
    fields[4 + i] = i64c(&r, count);
  }
  bool trains = entry_named(p, "train") != NULL;
  LLVMValueRef init = LLVMConstStructInContext(c, fields, 7, 0);
  LLVMValueRef table = LLVMAddGlobal(r.mod, LLVMTypeOf(init), ir_arena_printf(p->arena, "%s_table", p->model));
  LLVMSetInitializer(table, init);
  LLVMSetGlobalConstant(table, 1);
  if (api) render_api(&r, LLVMConstBitCast(table, r.ptr), trains);
  LLVMDisposeBuilder(r.b);
  return r.mod;
}
