/* test_ir_shape.c: every shape rule in shape.h, good cases and each error
 * message word for word (they become compiler diagnostics). */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "ir/shape.h"

static ir_arena *arena;
static ir_graph *g;
static char result[512];

static void setup(void) {
  arena = ir_arena_new();
  g = ir_graph_new(arena, "t");
}

static void teardown(void) { ir_arena_free(arena); }

/* "f32[2,3]" -> a type; tests only write well-formed types. */
static ir_type ty(const char *s) {
  ir_type t = {0};
  const char *bracket = strchr(s, '[');
  char name[8] = {0};
  memcpy(name, s, (size_t)(bracket - s));
  ck_assert(ir_dtype_parse(name, &t.dtype));
  for (const char *p = bracket + 1; *p != ']';) {
    char *end;
    t.dims[t.rank++] = strtoll(p, &end, 10);
    p = *end == ',' ? end + 1 : end;
  }
  return t;
}

/* A node of op whose inputs are fresh inputs of the space-separated
 * types. */
static ir_node *mk(ir_op op, const char *types) {
  ir_value *inputs[16];
  int n = 0;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", types);
  for (char *word = strtok(buf, " "); word; word = strtok(NULL, " "))
    inputs[n++] = ir_source_new(g, IR_OP_input, ty(word), "in")->results[0];
  return ir_node_new(g, op, n, inputs, "r");
}

/* The result type, "ok" for no results, or "error: MESSAGE". */
static const char *infer(ir_node *n) {
  char err[IR_ERR_LEN];
  if (!ir_node_infer(n, err, sizeof err)) {
    snprintf(result, sizeof result, "error: %s", err);
    return result;
  }
  if (!n->num_results) return "ok";
  return ir_type_format(&n->results[0]->type, result, sizeof result);
}

static void ints(ir_node *n, const char *name, int count, ...) {
  int64_t v[16];
  va_list ap;
  va_start(ap, count);
  for (int i = 0; i < count; i++) v[i] = va_arg(ap, int);
  va_end(ap);
  ir_set_ints(g, n, name, count, v);
}

#define EXPECT(node, text) ck_assert_str_eq(infer(node), text)

/* ---- elementwise ---- */

START_TEST(unary) {
  EXPECT(mk(IR_OP_relu, "f32[2,3]"), "f32[2,3]");
  EXPECT(mk(IR_OP_neg, "i32[4]"), "i32[4]");
  EXPECT(mk(IR_OP_exp, "bf16[]"), "bf16[]");
  EXPECT(mk(IR_OP_rope, "f32[2,8,16]"), "f32[2,8,16]");
  EXPECT(mk(IR_OP_layernorm, "f32[8,128,256] f32[256] f32[256]"), "f32[8,128,256]");
  EXPECT(mk(IR_OP_dropout, "f16[4,4]"), "f16[4,4]");
  ir_node *s = mk(IR_OP_softmax, "f32[2,3]");
  ir_set_int(g, s, "axis", -1);
  EXPECT(s, "f32[2,3]");
  ir_set_int(g, s, "axis", 1);
  EXPECT(s, "f32[2,3]");
  ir_set_int(g, s, "axis", -2);
  EXPECT(s, "f32[2,3]");
  ir_set_int(g, s, "axis", 2);
  EXPECT(s, "error: softmax: axis 2 out of range for f32[2,3] (rank 2)");
  ir_node *l = mk(IR_OP_log_softmax, "f32[2,3]");
  ir_set_int(g, l, "axis", -3);
  EXPECT(l, "error: log_softmax: axis -3 out of range for f32[2,3] (rank 2)");
}
END_TEST

START_TEST(cast) {
  ir_node *n = mk(IR_OP_cast, "f32[2,3]");
  EXPECT(n, "error: cast: missing attribute 'to'");
  ir_set_str(g, n, "to", "bf16");
  EXPECT(n, "bf16[2,3]");
  ir_set_str(g, n, "to", "i64");
  EXPECT(n, "i64[2,3]");
  ir_set_str(g, n, "to", "f31");
  EXPECT(n, "error: cast: unknown dtype 'f31'");
}
END_TEST

START_TEST(broadcast) {
  EXPECT(mk(IR_OP_add, "f32[8,1,256] f32[128,1]"), "f32[8,128,256]");
  EXPECT(mk(IR_OP_mul, "f32[] f32[3]"), "f32[3]");
  EXPECT(mk(IR_OP_sub, "f32[3] f32[]"), "f32[3]");
  EXPECT(mk(IR_OP_div, "f32[2,3] f32[2,3]"), "f32[2,3]");
  EXPECT(mk(IR_OP_add, "f32[0] f32[1]"), "f32[0]");
  EXPECT(mk(IR_OP_add, "i32[4,1] i32[1,5]"), "i32[4,5]");
  EXPECT(mk(IR_OP_add, "f32[8,128,256] f32[8,64,256]"),
         "error: cannot broadcast f32[8,128,256] with f32[8,64,256]");
  EXPECT(mk(IR_OP_mul, "f32[8] i32[8]"), "error: mul: operands have different dtypes: f32[8] and i32[8]");
  ir_type a = ty("f32[5,1,3]"), b = ty("f16[4,1]"), out;
  ck_assert(ir_broadcast_shapes(&a, &b, &out));
  ck_assert_str_eq(ir_type_format(&out, result, sizeof result), "f32[5,4,3]");
  ir_type c = ty("f32[2]");
  ck_assert(!ir_broadcast_shapes(&a, &c, &out));
}
END_TEST

START_TEST(where) {
  EXPECT(mk(IR_OP_where, "u8[4,1] f32[1,3] f32[3]"), "f32[4,3]");
  EXPECT(mk(IR_OP_where, "u8[] f32[2,2] f32[2,2]"), "f32[2,2]");
  EXPECT(mk(IR_OP_where, "u8[2,3,1] f32[] f32[4]"), "f32[2,3,4]");
  EXPECT(mk(IR_OP_where, "f32[4] f32[4] f32[4]"), "error: where: condition must be u8, got f32[4]");
  EXPECT(mk(IR_OP_where, "u8[3] f32[3] f16[3]"),
         "error: where: branches have different dtypes: f32[3] and f16[3]");
  EXPECT(mk(IR_OP_where, "u8[4] f32[3] f32[4]"),
         "error: where: cannot broadcast u8[4], f32[3] and f32[4]");
  EXPECT(mk(IR_OP_where, "u8[4] f32[4] f32[3]"),
         "error: where: cannot broadcast u8[4], f32[4] and f32[3]");
}
END_TEST

/* ---- reductions ---- */

START_TEST(reduce) {
  ir_node *n = mk(IR_OP_sum, "f32[2,3,4]");
  ints(n, "axes", 1, 1);
  ir_set_bool(g, n, "keepdim", false);
  EXPECT(n, "f32[2,4]");
  ints(n, "axes", 2, -1, 0);
  ir_set_bool(g, n, "keepdim", true);
  EXPECT(n, "f32[1,3,1]");
  ints(n, "axes", 0);
  EXPECT(n, "f32[1,1,1]"); /* no axes: all of them */
  ir_set_bool(g, n, "keepdim", false);
  EXPECT(n, "f32[]");
  ints(n, "axes", 1, 3);
  EXPECT(n, "error: sum: axis 3 out of range for f32[2,3,4] (rank 3)");
  ints(n, "axes", 1, -4);
  EXPECT(n, "error: sum: axis -4 out of range for f32[2,3,4] (rank 3)");
  ints(n, "axes", 2, 1, -2);
  EXPECT(n, "error: sum: axis 1 appears twice in axes [1,-2]");
  ir_node *m = mk(IR_OP_max, "i32[5,6]");
  ints(m, "axes", 1, -1);
  ir_set_bool(g, m, "keepdim", false);
  EXPECT(m, "i32[5]");
  ir_node *mean = mk(IR_OP_mean, "f32[]");
  ints(mean, "axes", 1, 0);
  EXPECT(mean, "f32[]");
  ir_node *none = mk(IR_OP_mean, "f32[7,2]");
  EXPECT(none, "f32[]");
}
END_TEST

START_TEST(nll_loss) {
  EXPECT(mk(IR_OP_nll_loss, "f32[8,10] i64[8]"), "f32[]");
  EXPECT(mk(IR_OP_nll_loss, "f32[4,8,10] i32[4,8]"), "f32[]");
  EXPECT(mk(IR_OP_nll_loss, "f16[10] i32[]"), "f32[]");
  EXPECT(mk(IR_OP_nll_loss, "i32[8,10] i32[8]"),
         "error: nll_loss: log-probabilities must be floating-point, got i32[8,10]");
  EXPECT(mk(IR_OP_nll_loss, "f32[] i32[]"),
         "error: nll_loss: log-probabilities need a class dimension, got f32[]");
  EXPECT(mk(IR_OP_nll_loss, "f32[8,10] f32[8]"),
         "error: nll_loss: targets must be i32 or i64, got f32[8]");
  EXPECT(mk(IR_OP_nll_loss, "f32[8,10] i32[8,3]"),
         "error: nll_loss: targets i32[8,3] do not match log-probabilities f32[8,10] (expected "
         "shape [8])");
}
END_TEST

START_TEST(cross_entropy) {
  EXPECT(mk(IR_OP_cross_entropy, "f32[8,128,512] i32[8,128]"), "f32[]");
  EXPECT(mk(IR_OP_cross_entropy, "f32[8,128,512] i32[8]"),
         "error: cross_entropy: targets i32[8] do not match logits f32[8,128,512] (expected "
         "shape [8,128])");
  EXPECT(mk(IR_OP_cross_entropy, "f32[8,4] u8[8]"),
         "error: cross_entropy: targets must be i32 or i64, got u8[8]");
  EXPECT(mk(IR_OP_cross_entropy, "i64[8,4] i64[8]"),
         "error: cross_entropy: logits must be floating-point, got i64[8,4]");
}
END_TEST

START_TEST(loss_pair) {
  EXPECT(mk(IR_OP_mse, "f32[8,4] f32[8,4]"), "f32[]");
  EXPECT(mk(IR_OP_bce_logits, "bf16[3] bf16[3]"), "f32[]");
  EXPECT(mk(IR_OP_mse, "f32[8,4] f32[8,3]"),
         "error: mse: operands must have the same type, got f32[8,4] and f32[8,3]");
  EXPECT(mk(IR_OP_bce_logits, "f32[3] f16[3]"),
         "error: bce_logits: operands must have the same type, got f32[3] and f16[3]");
  EXPECT(mk(IR_OP_mse, "f32[3] i32[3]"), "error: mse needs floating-point operands, got i32[3]");
}
END_TEST

/* ---- matmul ---- */

static ir_node *matmul(const char *types, bool ta, bool tb) {
  ir_node *n = mk(IR_OP_matmul, types);
  ir_set_bool(g, n, "transpose_a", ta);
  ir_set_bool(g, n, "transpose_b", tb);
  return n;
}

START_TEST(matmul_shapes) {
  EXPECT(matmul("f32[8,128,256] f32[256,512]", false, false), "f32[8,128,512]");
  EXPECT(matmul("f32[8,128,256] f32[512,256]", false, true), "f32[8,128,512]");
  EXPECT(matmul("f32[4,3] f32[4,5]", true, false), "f32[3,5]");
  EXPECT(matmul("f32[2,4,3] f32[2,5,4]", true, true), "f32[2,3,5]");
  /* 1-D operands as torch.matmul */
  EXPECT(matmul("f32[3] f32[3]", false, false), "f32[]");
  EXPECT(matmul("f32[3] f32[3,4]", false, false), "f32[4]");
  EXPECT(matmul("f32[2,3] f32[3]", false, false), "f32[2]");
  EXPECT(matmul("f32[5,2,3] f32[3]", false, false), "f32[5,2]");
  EXPECT(matmul("f32[3] f32[5,3,4]", false, false), "f32[5,4]");
  EXPECT(matmul("f32[3] f32[4,3]", false, true), "f32[4]");
  /* batch broadcasting */
  EXPECT(matmul("f32[2,1,3,4] f32[5,4,6]", false, false), "f32[2,5,3,6]");
  EXPECT(matmul("f16[1,3,4] f16[7,4,2]", false, false), "f16[7,3,2]");
  /* no attributes: no transposes */
  EXPECT(mk(IR_OP_matmul, "f32[2,3] f32[3,4]"), "f32[2,4]");
}
END_TEST

START_TEST(matmul_errors) {
  EXPECT(matmul("f32[8,128,256] f32[512,256]", false, false),
         "error: matmul: inner dimensions differ: f32[8,128,256] @ f32[512,256] (256 vs 512)");
  EXPECT(matmul("f32[8,128,256] f32[256,512]", false, true),
         "error: matmul: inner dimensions differ: f32[8,128,256] @ f32[256,512].T (256 vs 512)");
  EXPECT(matmul("f32[3,4] f32[3,4]", true, true),
         "error: matmul: inner dimensions differ: f32[3,4].T @ f32[3,4].T (3 vs 4)");
  EXPECT(matmul("f32[3] f32[4]", false, false),
         "error: matmul: inner dimensions differ: f32[3] @ f32[4] (3 vs 4)");
  EXPECT(matmul("i32[8,128] f32[128,4]", false, false),
         "error: matmul needs floating-point operands, got i32[8,128]");
  EXPECT(matmul("f32[8,128] i64[128,4]", false, false),
         "error: matmul needs floating-point operands, got i64[128,4]");
  EXPECT(matmul("f32[2,3] f16[3,2]", false, false),
         "error: matmul: operands have different dtypes: f32[2,3] and f16[3,2]");
  EXPECT(matmul("f32[2,3,4] f32[5,4,6]", false, false),
         "error: matmul: batch dimensions do not broadcast: f32[2,3,4] @ f32[5,4,6]");
  EXPECT(matmul("f32[] f32[3]", false, false),
         "error: matmul: operands must have at least 1 dimension, got f32[]");
  EXPECT(matmul("f32[3] f32[]", false, false),
         "error: matmul: operands must have at least 1 dimension, got f32[]");
  EXPECT(matmul("f32[2,3] f32[3]", false, true),
         "error: matmul: transpose_b needs at least 2 dimensions, got f32[3]");
  EXPECT(matmul("f32[3] f32[3,2]", true, false),
         "error: matmul: transpose_a needs at least 2 dimensions, got f32[3]");
}
END_TEST

/* ---- convolution, pooling, upsample, gather ---- */

static ir_node *conv(ir_op op, const char *types, int stride, int padding, int dilation,
                     int groups) {
  ir_node *n = mk(op, types);
  ints(n, "stride", 1, stride);
  ints(n, "padding", 1, padding);
  ints(n, "dilation", 1, dilation);
  ir_set_int(g, n, "groups", groups);
  return n;
}

START_TEST(conv_shapes) {
  EXPECT(conv(IR_OP_conv, "f32[8,3,32,32] f32[16,3,3,3]", 1, 1, 1, 1), "f32[8,16,32,32]");
  EXPECT(conv(IR_OP_conv, "f32[8,3,32,32] f32[16,3,3,3]", 2, 1, 1, 1), "f32[8,16,16,16]");
  EXPECT(conv(IR_OP_conv, "f32[8,3,32,32] f32[16,3,3,3]", 1, 0, 2, 1), "f32[8,16,28,28]");
  EXPECT(conv(IR_OP_conv, "f32[4,6,100] f32[12,3,5]", 1, 0, 1, 2), "f32[4,12,96]");
  EXPECT(conv(IR_OP_conv, "f32[1,4,8,8] f32[4,1,3,3]", 1, 0, 1, 4), "f32[1,4,6,6]");
  EXPECT(conv(IR_OP_conv, "f32[1,1,7,7] f32[1,1,3,3]", 3, 0, 1, 1), "f32[1,1,2,2]");
  ir_node *n = conv(IR_OP_conv, "f32[1,3,32,20] f32[8,3,3,5]", 1, 0, 1, 1);
  ints(n, "stride", 2, 1, 2);
  ints(n, "padding", 2, 1, 0);
  EXPECT(n, "f32[1,8,32,8]");
  /* without attributes: PyTorch's defaults */
  EXPECT(mk(IR_OP_conv, "f32[2,3,5,5] f32[4,3,5,5]"), "f32[2,4,1,1]");
  /* the layer op, with and without bias */
  ir_node *l = conv(IR_OP_conv_layer, "f32[8,3,32,32] f32[16,3,3,3] f32[16]", 1, 1, 1, 1);
  ir_set_bool(g, l, "bias", true);
  EXPECT(l, "f32[8,16,32,32]");
  ir_node *nb = conv(IR_OP_conv_layer, "f32[8,3,32,32] f32[16,3,3,3]", 1, 1, 1, 1);
  ir_set_bool(g, nb, "bias", false);
  EXPECT(nb, "f32[8,16,32,32]");
}
END_TEST

START_TEST(conv_errors) {
  EXPECT(conv(IR_OP_conv, "f32[3,4] f32[3,4]", 1, 0, 1, 1),
         "error: conv: input must be [N,C,L] or [N,C,H,W], got f32[3,4]");
  EXPECT(conv(IR_OP_conv, "i32[1,3,8,8] f32[4,3,3,3]", 1, 0, 1, 1),
         "error: conv needs floating-point operands, got i32[1,3,8,8]");
  EXPECT(conv(IR_OP_conv, "f32[1,3,8,8] f16[4,3,3,3]", 1, 0, 1, 1),
         "error: conv: input and weight have different dtypes: f32[1,3,8,8] and f16[4,3,3,3]");
  EXPECT(conv(IR_OP_conv, "f32[8,3,32,32] f32[16,3,3]", 1, 0, 1, 1),
         "error: conv: weight must have rank 4 like the input f32[8,3,32,32], got f32[16,3,3]");
  EXPECT(conv(IR_OP_conv, "f32[1,4,8,8] f32[4,4,3,3]", 1, 0, 1, 0),
         "error: conv: groups must be positive, got 0");
  EXPECT(conv(IR_OP_conv, "f32[1,6,8,8] f32[4,1,3,3]", 1, 0, 1, 4),
         "error: conv: input channels 6 are not divisible by groups 4");
  EXPECT(conv(IR_OP_conv, "f32[1,8,8,8] f32[6,2,3,3]", 1, 0, 1, 4),
         "error: conv: output channels 6 are not divisible by groups 4");
  EXPECT(conv(IR_OP_conv, "f32[8,6,32,32] f32[16,3,3,3]", 1, 0, 1, 1),
         "error: conv: weight f32[16,3,3,3] expects 3 input channels per group, input "
         "f32[8,6,32,32] has 6 (groups 1)");
  EXPECT(conv(IR_OP_conv, "f32[1,3,2,2] f32[4,3,3,3]", 1, 0, 1, 1),
         "error: conv: output size 0 along dim 2 of f32[1,3,2,2] (kernel 3, stride 1, padding 0, "
         "dilation 1)");
  EXPECT(conv(IR_OP_conv, "f32[1,3,8,8] f32[4,3,3,3]", 0, 0, 1, 1),
         "error: conv: stride must be positive, got [0]");
  EXPECT(conv(IR_OP_conv, "f32[1,3,8,8] f32[4,3,3,3]", 1, -1, 1, 1),
         "error: conv: padding must be non-negative, got [-1]");
  EXPECT(conv(IR_OP_conv, "f32[1,3,8,8] f32[4,3,3,3]", 1, 0, 0, 1),
         "error: conv: dilation must be positive, got [0]");
  EXPECT(conv(IR_OP_conv, "f32[1,3,8,8] f32[4,3,0,3]", 1, 0, 1, 1),
         "error: conv: weight f32[4,3,0,3] has an empty kernel");
  ir_node *n = conv(IR_OP_conv, "f32[1,3,8,8] f32[4,3,3,3]", 1, 0, 1, 1);
  ints(n, "stride", 3, 1, 1, 1);
  EXPECT(n, "error: conv: stride must have 1 or 2 values, got 3");
  ints(n, "stride", 0);
  EXPECT(n, "error: conv: stride must have 1 or 2 values, got 0");
  ir_node *one = conv(IR_OP_conv, "f32[1,3,8] f32[4,3,3]", 1, 0, 1, 1);
  ints(one, "padding", 2, 1, 1);
  EXPECT(one, "error: conv: padding must have 1 value, got 2");
  ir_node *huge = conv(IR_OP_conv, "f32[1,3,8] f32[4,3,3]", 1, 0, 1, 1);
  int64_t big = INT64_MAX / 2;
  ir_set_ints(g, huge, "padding", 1, &big);
  EXPECT(huge, "error: conv: sizes overflow for f32[1,3,8]");
}
END_TEST

START_TEST(conv_layer_bias) {
  ir_node *n = conv(IR_OP_conv_layer, "f32[8,3,32,32] f32[16,3,3,3] f32[8]", 1, 1, 1, 1);
  ir_set_bool(g, n, "bias", true);
  EXPECT(n, "error: conv_layer: bias must be f32[16], got f32[8]");
  ir_set_bool(g, n, "bias", false);
  EXPECT(n, "error: conv_layer: bias=false but a bias input");
  ir_node *m = conv(IR_OP_conv_layer, "f32[8,3,32,32] f32[16,3,3,3]", 1, 1, 1, 1);
  ir_set_bool(g, m, "bias", true);
  EXPECT(m, "error: conv_layer: bias=true but no bias input");
}
END_TEST

START_TEST(pool) {
  ir_node *n = mk(IR_OP_maxpool, "f32[1,3,32,32]");
  EXPECT(n, "error: maxpool: missing attribute 'kernel'");
  ints(n, "kernel", 1, 2);
  EXPECT(n, "f32[1,3,16,16]"); /* stride defaults to the kernel */
  ints(n, "stride", 0);
  EXPECT(n, "f32[1,3,16,16]");
  ints(n, "kernel", 1, 3);
  ints(n, "stride", 1, 1);
  ints(n, "padding", 1, 1);
  EXPECT(n, "f32[1,3,32,32]");
  ints(n, "kernel", 2, 2, 3);
  ints(n, "stride", 2, 2, 1);
  ints(n, "padding", 1, 0);
  EXPECT(n, "f32[1,3,16,30]");
  ints(n, "kernel", 1, 3);
  ints(n, "padding", 1, 2);
  EXPECT(n, "error: maxpool: padding 2 is more than half the kernel 3");
  ints(n, "kernel", 3, 1, 1, 1);
  EXPECT(n, "error: maxpool: kernel must have 1 or 2 values, got 3");
  ir_node *a = mk(IR_OP_avgpool, "f32[2,3,7,7]");
  ints(a, "kernel", 1, 2);
  ints(a, "stride", 1, 2);
  ints(a, "padding", 1, 0);
  EXPECT(a, "f32[2,3,3,3]");
  ir_node *tiny = mk(IR_OP_avgpool, "f32[1,1,1,1]");
  ints(tiny, "kernel", 1, 4);
  EXPECT(tiny, "error: avgpool: output size 0 along dim 2 of f32[1,1,1,1] (kernel 4, stride 4, "
               "padding 0, dilation 1)");
  ir_node *i = mk(IR_OP_avgpool, "i32[1,1,4,4]");
  ints(i, "kernel", 1, 2);
  EXPECT(i, "error: avgpool needs a floating-point input, got i32[1,1,4,4]");
  ir_node *r = mk(IR_OP_maxpool, "f32[3,32,32]");
  ints(r, "kernel", 1, 2);
  EXPECT(r, "error: maxpool: input must be [N,C,H,W], got f32[3,32,32]");
  ir_node *k0 = mk(IR_OP_maxpool, "f32[1,1,4,4]");
  ints(k0, "kernel", 1, 0);
  EXPECT(k0, "error: maxpool: kernel must be positive, got [0]");
}
END_TEST

START_TEST(upsample) {
  ir_node *n = mk(IR_OP_upsample, "f32[1,3,8,8]");
  EXPECT(n, "error: upsample: missing attribute 'scale'");
  ir_set_int(g, n, "scale", 2);
  EXPECT(n, "f32[1,3,16,16]");
  ir_set_str(g, n, "mode", "bilinear");
  ir_set_int(g, n, "scale", 3);
  EXPECT(n, "f32[1,3,24,24]");
  ir_set_str(g, n, "mode", "cubic");
  EXPECT(n, "error: upsample: unknown mode 'cubic' (modes: nearest, bilinear)");
  ir_set_str(g, n, "mode", "nearest");
  ir_set_int(g, n, "scale", 0);
  EXPECT(n, "error: upsample: scale must be a positive integer, got 0");
  ir_node *u = mk(IR_OP_upsample, "u8[1,1,2,2]");
  ir_set_int(g, u, "scale", 2);
  ir_set_str(g, u, "mode", "nearest");
  EXPECT(u, "u8[1,1,4,4]");
  ir_set_str(g, u, "mode", "bilinear");
  EXPECT(u, "error: upsample: bilinear needs a floating-point input, got u8[1,1,2,2]");
  ir_node *r = mk(IR_OP_upsample, "f32[3,8,8]");
  ir_set_int(g, r, "scale", 2);
  EXPECT(r, "error: upsample: input must be [N,C,H,W], got f32[3,8,8]");
  ir_node *big = mk(IR_OP_upsample, "f32[1,1,4611686018427387904,1]");
  ir_set_int(g, big, "scale", 4);
  EXPECT(big, "error: upsample: sizes overflow for f32[1,1,4611686018427387904,1]");
}
END_TEST

START_TEST(gather) {
  EXPECT(mk(IR_OP_gather, "f32[512,256] i32[8,128]"), "f32[8,128,256]");
  EXPECT(mk(IR_OP_gather, "bf16[10,4] i64[]"), "bf16[4]");
  EXPECT(mk(IR_OP_embedding, "i32[8,128] f32[512,256]"), "f32[8,128,256]");
  EXPECT(mk(IR_OP_gather, "f32[512,256] f32[8]"),
         "error: gather: ids must be i32 or i64, got f32[8]");
  EXPECT(mk(IR_OP_gather, "f32[512] i32[8]"), "error: gather: table must be [N,D], got f32[512]");
  EXPECT(mk(IR_OP_embedding, "f32[8] f32[512,256]"),
         "error: embedding: ids must be i32 or i64, got f32[8]");
  EXPECT(mk(IR_OP_gather, "f32[4,2] i32[1,1,1,1,1,1,1,1]"),
         "error: gather: ids i32[1,1,1,1,1,1,1,1] have too many dimensions");
}
END_TEST

/* ---- layout ---- */

START_TEST(reshape) {
  ir_node *n = mk(IR_OP_reshape, "f32[2,3,4]");
  EXPECT(n, "error: reshape: missing attribute 'shape'");
  ints(n, "shape", 2, 6, 4);
  EXPECT(n, "f32[6,4]");
  ints(n, "shape", 4, 1, 24, 1, 1);
  EXPECT(n, "f32[1,24,1,1]");
  ints(n, "shape", 2, 4, 2);
  EXPECT(n, "error: reshape: cannot reshape f32[2,3,4] (24 elements) to [4,2] (8 elements)");
  ints(n, "shape", 2, 2, -1);
  EXPECT(n, "error: reshape: shape [2,-1] is not fully resolved");
  ints(n, "shape", 9, 1, 1, 1, 1, 1, 1, 1, 1, 24);
  EXPECT(n, "error: reshape: shape [1,1,1,1,1,1,1,1,...] has more than 8 dims");
  ir_node *s = mk(IR_OP_reshape, "i64[1,1]");
  ints(s, "shape", 0);
  EXPECT(s, "i64[]");
  ir_node *big = mk(IR_OP_reshape, "f32[2]");
  ints(big, "shape", 3, 1 << 30, 1 << 30, 1 << 30);
  EXPECT(big, "error: reshape: shape [1073741824,1073741824,1073741824] has too many elements");
}
END_TEST

START_TEST(permute) {
  ir_node *n = mk(IR_OP_permute, "f32[2,3,4]");
  EXPECT(n, "error: permute: missing attribute 'perm'");
  ints(n, "perm", 3, 2, 0, 1);
  EXPECT(n, "f32[4,2,3]");
  ints(n, "perm", 3, -1, 0, 1);
  EXPECT(n, "f32[4,2,3]");
  ints(n, "perm", 2, 1, 0);
  EXPECT(n, "error: permute: perm [1,0] is not a permutation of the dims of f32[2,3,4]");
  ints(n, "perm", 3, 0, 0, 1);
  EXPECT(n, "error: permute: perm [0,0,1] is not a permutation of the dims of f32[2,3,4]");
  ints(n, "perm", 3, 0, 1, 3);
  EXPECT(n, "error: permute: perm [0,1,3] is not a permutation of the dims of f32[2,3,4]");
  ir_node *s = mk(IR_OP_permute, "f32[]");
  ints(s, "perm", 0);
  EXPECT(s, "f32[]");
}
END_TEST

START_TEST(broadcast_to) {
  ir_node *n = mk(IR_OP_broadcast, "f32[3,1]");
  EXPECT(n, "error: broadcast: missing attribute 'shape'");
  ints(n, "shape", 3, 2, 3, 4);
  EXPECT(n, "f32[2,3,4]");
  ints(n, "shape", 2, 3, 1);
  EXPECT(n, "f32[3,1]");
  ints(n, "shape", 3, 2, 5, 4);
  EXPECT(n, "error: broadcast: cannot broadcast f32[3,1] to [2,5,4]");
  ints(n, "shape", 1, 3);
  EXPECT(n, "error: broadcast: cannot broadcast f32[3,1] to [3]");
  ir_node *s = mk(IR_OP_broadcast, "u8[]");
  ints(s, "shape", 1, 5);
  EXPECT(s, "u8[5]");
}
END_TEST

static ir_node *slice(const char *type, int axis, int start, int end) {
  ir_node *n = mk(IR_OP_slice, type);
  ir_set_int(g, n, "axis", axis);
  ir_set_int(g, n, "start", start);
  ir_set_int(g, n, "end", end);
  return n;
}

START_TEST(slice_rule) {
  EXPECT(slice("f32[4,10]", 1, 2, 5), "f32[4,3]");
  EXPECT(slice("f32[4,10]", -1, 0, 10), "f32[4,10]");
  EXPECT(slice("f32[4,10]", 0, 3, 4), "f32[1,10]");
  EXPECT(slice("f32[4,10]", 1, 5, 5),
         "error: slice: range [5,5) is invalid for axis 1 of f32[4,10] (need 0 <= start < end "
         "<= 10)");
  EXPECT(slice("f32[4,10]", 1, 2, 11),
         "error: slice: range [2,11) is invalid for axis 1 of f32[4,10] (need 0 <= start < end "
         "<= 10)");
  EXPECT(slice("f32[4,10]", -2, -1, 2),
         "error: slice: range [-1,2) is invalid for axis 0 of f32[4,10] (need 0 <= start < end "
         "<= 4)");
  EXPECT(slice("f32[4,10]", 2, 0, 1), "error: slice: axis 2 out of range for f32[4,10] (rank 2)");
  EXPECT(slice("f32[]", 0, 0, 1), "error: slice: cannot slice a scalar f32[]");
  ir_node *n = mk(IR_OP_slice, "f32[4]");
  ir_set_int(g, n, "axis", 0);
  ir_set_int(g, n, "start", 0);
  EXPECT(n, "error: slice: missing attribute 'end'");
}
END_TEST

START_TEST(concat) {
  ir_node *n = mk(IR_OP_concat, "f32[2,3] f32[2,5] f32[2,1]");
  ir_set_int(g, n, "axis", 1);
  EXPECT(n, "f32[2,9]");
  ir_set_int(g, n, "axis", -1);
  EXPECT(n, "f32[2,9]");
  ir_set_int(g, n, "axis", 0);
  EXPECT(n, "error: concat: input 1 f32[2,5] does not match input 0 f32[2,3] outside axis 0");
  ir_set_int(g, n, "axis", 2);
  EXPECT(n, "error: concat: axis 2 out of range for f32[2,3] (rank 2)");
  ir_node *one = mk(IR_OP_concat, "f32[7]");
  ir_set_int(g, one, "axis", 0);
  EXPECT(one, "f32[7]");
  ir_node *d = mk(IR_OP_concat, "f32[2,3] f16[2,3]");
  ir_set_int(g, d, "axis", 0);
  EXPECT(d, "error: concat: input 1 f16[2,3] has another dtype than input 0 f32[2,3]");
  ir_node *r = mk(IR_OP_concat, "f32[2,3] f32[2,3] f32[6]");
  ir_set_int(g, r, "axis", 0);
  EXPECT(r, "error: concat: input 2 f32[6] has another rank than input 0 f32[2,3]");
  ir_node *s = mk(IR_OP_concat, "f32[] f32[]");
  ir_set_int(g, s, "axis", 0);
  EXPECT(s, "error: concat: cannot concatenate scalars");
}
END_TEST

/* ---- effects ---- */

START_TEST(effects) {
  EXPECT(mk(IR_OP_assign, "f32[4] f32[4]"), "ok");
  EXPECT(mk(IR_OP_assign, "f32[4] f32[3]"), "error: assign: value f32[3] does not match state f32[4]");
  EXPECT(mk(IR_OP_assign, "f32[4] f16[4]"), "error: assign: value f16[4] does not match state f32[4]");
  EXPECT(mk(IR_OP_output, "f32[4]"), "ok");
  ck_assert(ir_shape_none(NULL, NULL, 0));
}
END_TEST

/* ---- linear ---- */

static ir_node *linear(const char *types, bool bias, int rank) {
  ir_node *n = mk(IR_OP_linear, types);
  ir_set_bool(g, n, "bias", bias);
  ir_set_int(g, n, "rank", rank);
  return n;
}

START_TEST(linear_rule) {
  EXPECT(linear("f32[8,128,256] f32[512,256] f32[512]", true, 0), "f32[8,128,512]");
  EXPECT(linear("f32[8,128,256] f32[512,256]", false, 0), "f32[8,128,512]");
  EXPECT(linear("f32[256] f32[10,256]", false, 0), "f32[10]");
  EXPECT(linear("f32[8,256] f32[16,256] f32[512,16]", false, 16), "f32[8,512]");
  EXPECT(linear("f32[8,256] f32[16,256] f32[512,16] f32[512]", true, 16), "f32[8,512]");
  EXPECT(linear("f32[8,256] f32[512,256]", true, 0),
         "error: linear: bias=true rank=0 takes 3 inputs, got 2");
  EXPECT(linear("f32[8,256] f32[512,256] f32[512]", false, 16),
         "error: linear: down.weight must be f32[16,256], got f32[512,256]");
}
END_TEST

START_TEST(linear_errors) {
  EXPECT(linear("f32[8,128,256] f32[512,128]", false, 0),
         "error: linear: weight must be f32[512,256], got f32[512,128]");
  EXPECT(linear("f32[8,128,256] f32[512,256] f32[256]", true, 0),
         "error: linear: bias must be f32[512], got f32[256]");
  EXPECT(linear("f32[8,256] f32[16,128] f32[512,16]", false, 16),
         "error: linear: down.weight must be f32[16,256], got f32[16,128]");
  EXPECT(linear("f32[8,256] f32[16,256] f32[512,8]", false, 16),
         "error: linear: up.weight must be f32[512,16], got f32[512,8]");
  EXPECT(linear("f32[8,256] f32[16,256] f32[512,16]", true, 16),
         "error: linear: bias=true rank=16 takes 4 inputs, got 3");
  EXPECT(linear("i32[8] f32[4,8]", false, 0),
         "error: linear: input must be a floating-point [..., in], got i32[8]");
  EXPECT(linear("f32[] f32[4,8]", false, 0),
         "error: linear: input must be a floating-point [..., in], got f32[]");
  EXPECT(linear("f32[8] f32[8]", false, 0), "error: linear: weight must be [out,in], got f32[8]");
  EXPECT(linear("f32[8] f32[2,8] f32[8]", false, 2),
         "error: linear: up.weight must be [out,rank], got f32[8]");
  EXPECT(linear("f32[8] f16[4,8]", false, 0),
         "error: linear: weight must be f32[4,8], got f16[4,8]");
  EXPECT(linear("f32[8] f32[4,8]", false, -1), "error: linear: rank must be non-negative, got -1");
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("ir_shape");
  TCase *tc = tcase_create("rules");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, unary);
  tcase_add_test(tc, cast);
  tcase_add_test(tc, broadcast);
  tcase_add_test(tc, where);
  tcase_add_test(tc, reduce);
  tcase_add_test(tc, nll_loss);
  tcase_add_test(tc, cross_entropy);
  tcase_add_test(tc, loss_pair);
  tcase_add_test(tc, matmul_shapes);
  tcase_add_test(tc, matmul_errors);
  tcase_add_test(tc, conv_shapes);
  tcase_add_test(tc, conv_errors);
  tcase_add_test(tc, conv_layer_bias);
  tcase_add_test(tc, pool);
  tcase_add_test(tc, upsample);
  tcase_add_test(tc, gather);
  tcase_add_test(tc, reshape);
  tcase_add_test(tc, permute);
  tcase_add_test(tc, broadcast_to);
  tcase_add_test(tc, slice_rule);
  tcase_add_test(tc, concat);
  tcase_add_test(tc, effects);
  tcase_add_test(tc, linear_rule);
  tcase_add_test(tc, linear_errors);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *runner = srunner_create(suite());
  srunner_run_all(runner, CK_NORMAL);
  int failed = srunner_ntests_failed(runner);
  srunner_free(runner);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
