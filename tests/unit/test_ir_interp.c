/* test_ir_interp.c: the reference interpreter (ir/interp.h) against
 * numbers worked out by hand (or printed by PyTorch, quoted), so that
 * gradcheck does not only compare the interpreter with itself. */
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "ir/interp.h"
#include "ir/ir.h"

static ir_arena *arena;
static ir_graph *g;
static ir_interp *interp;

static void setup(void) {
  arena = ir_arena_new();
  g = ir_graph_new(arena, "t");
  interp = NULL;
}

static void teardown(void) {
  ir_interp_free(interp);
  ir_arena_free(arena);
}

/* An f32 input of the given dims (rank, then dims). */
static ir_value *input(ir_dtype dtype, int rank, ...) {
  int64_t dims[IR_MAX_RANK];
  va_list ap;
  va_start(ap, rank);
  for (int i = 0; i < rank; i++) dims[i] = va_arg(ap, int);
  va_end(ap);
  return ir_source_new(g, IR_OP_input, ir_type_make(dtype, rank, dims), "in")->results[0];
}

static ir_node *node(ir_op op, int n, ir_value *a, ir_value *b) {
  ir_value *ins[2] = {a, b};
  return ir_node_new(g, op, n, ins, "r");
}

static void set_ints(ir_node *n, const char *name, int count, ...) {
  int64_t v[IR_MAX_RANK];
  va_list ap;
  va_start(ap, count);
  for (int i = 0; i < count; i++) v[i] = va_arg(ap, int);
  va_end(ap);
  ir_set_ints(g, n, name, count, v);
}

/* Types the last node, makes the interpreter and writes the inputs. */
static void prepare(ir_node *last, int num_inputs, ir_value *const *ins,
                    const double *const *data) {
  char err[IR_ERR_LEN];
  ck_assert_msg(ir_node_infer(last, err, sizeof err), "%s", err);
  interp = ir_interp_new(g);
  ck_assert_ptr_nonnull(interp);
  for (int i = 0; i < num_inputs; i++)
    memcpy(ir_interp_value(interp, ins[i]), data[i],
           (size_t)ir_type_numel(&ins[i]->type) * sizeof(double));
}

static const double *run(ir_node *last) {
  char err[IR_ERR_LEN];
  ck_assert_msg(ir_interp_run(interp, err, sizeof err), "%s", err);
  return ir_interp_value(interp, last->results[0]);
}

static void expect(const double *got, const double *want, int n) {
  for (int i = 0; i < n; i++)
    ck_assert_msg(fabs(got[i] - want[i]) < 1e-9, "element %d: got %.12g, want %.12g", i, got[i],
                  want[i]);
}

/* ---- matmul ---- */

static const double A23[] = {1, 2, 3, 4, 5, 6};
static const double B32[] = {7, 8, 9, 10, 11, 12};
static const double AB[] = {58, 64, 139, 154};

START_TEST(matmul_plain) {
  ir_value *a = input(IR_f32, 2, 2, 3), *b = input(IR_f32, 2, 3, 2);
  ir_node *n = node(IR_OP_matmul, 2, a, b);
  ir_value *ins[] = {a, b};
  const double *data[] = {A23, B32};
  prepare(n, 2, ins, data);
  expect(run(n), AB, 4);
}
END_TEST

/* a @ bt.T with bt = b transposed. */
START_TEST(matmul_transpose_b) {
  static const double bt[] = {7, 9, 11, 8, 10, 12};
  ir_value *a = input(IR_f32, 2, 2, 3), *b = input(IR_f32, 2, 2, 3);
  ir_node *n = node(IR_OP_matmul, 2, a, b);
  ir_set_bool(g, n, "transpose_b", true);
  ir_value *ins[] = {a, b};
  const double *data[] = {A23, bt};
  prepare(n, 2, ins, data);
  expect(run(n), AB, 4);
}
END_TEST

/* [3] @ [2,3,2]: the vector against each matrix of the batch -> [2,2]. */
START_TEST(matmul_vector_batch) {
  static const double v[] = {1, 0, -1};
  static const double b[] = {7, 8, 9, 10, 11, 12, 1, 2, 3, 4, 5, 6};
  static const double want[] = {-4, -4, -4, -4};
  ir_value *x = input(IR_f32, 1, 3), *w = input(IR_f32, 3, 2, 3, 2);
  ir_node *n = node(IR_OP_matmul, 2, x, w);
  ir_value *ins[] = {x, w};
  const double *data[] = {v, b};
  prepare(n, 2, ins, data);
  expect(run(n), want, 4);
}
END_TEST

/* ---- softmax ---- */

#define LOG3 1.0986122886681098

START_TEST(softmax_row) {
  static const double x[] = {1, 2, 3, 1, 1, 1};
  /* torch.softmax(torch.tensor([1., 2., 3.]), 0) */
  static const double want[] = {
      0.0900305731703805, 0.2447284710547976, 0.6652409557748219, 1.0 / 3, 1.0 / 3, 1.0 / 3};
  ir_value *in = input(IR_f32, 2, 2, 3);
  ir_node *n = node(IR_OP_softmax, 1, in, NULL);
  ir_set_int(g, n, "axis", -1);
  const double *data[] = {x};
  prepare(n, 1, &in, data);
  expect(run(n), want, 6);
}
END_TEST

START_TEST(log_softmax_axis0) {
  static const double x[] = {1, 5, 2, 5, 3, 5};
  static const double want[] = {-2.4076059644443806, -LOG3, -1.4076059644443806, -LOG3,
                                -0.4076059644443806, -LOG3};
  ir_value *in = input(IR_f32, 2, 3, 2);
  ir_node *n = node(IR_OP_log_softmax, 1, in, NULL);
  ir_set_int(g, n, "axis", 0);
  const double *data[] = {x};
  prepare(n, 1, &in, data);
  expect(run(n), want, 6);
}
END_TEST

/* ---- convolution, pooling, upsampling ---- */

static const double X33[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
static const double W22[] = {1, 2, 3, 4};

START_TEST(conv2d_valid) {
  /* 1*1 + 2*2 + 3*4 + 4*5 = 37, ... */
  static const double want[] = {37, 47, 67, 77};
  ir_value *x = input(IR_f32, 4, 1, 1, 3, 3), *w = input(IR_f32, 4, 1, 1, 2, 2);
  ir_node *n = node(IR_OP_conv, 2, x, w);
  ir_value *ins[] = {x, w};
  const double *data[] = {X33, W22};
  prepare(n, 2, ins, data);
  expect(run(n), want, 4);
}
END_TEST

/* padding 1, stride 2: windows at rows/cols -1 and 1. */
START_TEST(conv2d_padded_strided) {
  /* (0,0): x00*w11 = 4; (0,1): x01*w10 + x02*w11 = 2*3 + 3*4 = 18;
   * (1,0): x10*w01 + x20*w11 = 4*2 + 7*4 = 36;
   * (1,1): x11*w00 + x12*w01 + x21*w10 + x22*w11 = 5 + 12 + 24 + 36 = 77 */
  static const double want[] = {4, 18, 36, 77};
  ir_value *x = input(IR_f32, 4, 1, 1, 3, 3), *w = input(IR_f32, 4, 1, 1, 2, 2);
  ir_node *n = node(IR_OP_conv, 2, x, w);
  set_ints(n, "padding", 1, 1);
  set_ints(n, "stride", 1, 2);
  ir_value *ins[] = {x, w};
  const double *data[] = {X33, W22};
  prepare(n, 2, ins, data);
  expect(run(n), want, 4);
}
END_TEST

/* avg_pool2d(x, 2, stride=1, padding=1), count_include_pad: corner 1/4. */
START_TEST(avgpool_padded) {
  static const double want[] = {0.25, 0.75, 1.25, 0.75, 1.25, 3,    4,    2.25,
                                2.75, 6,    7,    3.75, 1.75, 3.75, 4.25, 2.25};
  ir_value *x = input(IR_f32, 4, 1, 1, 3, 3);
  ir_node *n = node(IR_OP_avgpool, 1, x, NULL);
  set_ints(n, "kernel", 1, 2);
  set_ints(n, "stride", 1, 1);
  set_ints(n, "padding", 1, 1);
  const double *data[] = {X33};
  prepare(n, 1, &x, data);
  expect(run(n), want, 16);
}
END_TEST

/* F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False) */
START_TEST(upsample_bilinear) {
  static const double x[] = {1, 2, 3, 4};
  static const double want[] = {1,   1.25, 1.75, 2,   1.5, 1.75, 2.25, 2.5,
                                2.5, 2.75, 3.25, 3.5, 3,   3.25, 3.75, 4};
  ir_value *in = input(IR_f32, 4, 1, 1, 2, 2);
  ir_node *n = node(IR_OP_upsample, 1, in, NULL);
  ir_set_int(g, n, "scale", 2);
  ir_set_str(g, n, "mode", "bilinear");
  const double *data[] = {x};
  prepare(n, 1, &in, data);
  expect(run(n), want, 16);
}
END_TEST

/* ---- broadcasting, losses, rope, grad ---- */

START_TEST(broadcast_add) {
  static const double b[] = {10, 20, 30};
  static const double want[] = {11, 22, 33, 14, 25, 36};
  ir_value *x = input(IR_f32, 2, 2, 3), *y = input(IR_f32, 1, 3);
  ir_node *n = node(IR_OP_add, 2, x, y);
  ir_value *ins[] = {x, y};
  const double *data[] = {A23, b};
  prepare(n, 2, ins, data);
  expect(run(n), want, 6);
}
END_TEST

/* [2,1] - [1,3] -> [2,3]. */
START_TEST(broadcast_both) {
  static const double col[] = {10, 20}, row[] = {1, 2, 3};
  static const double want[] = {9, 8, 7, 19, 18, 17};
  ir_value *x = input(IR_f32, 2, 2, 1), *y = input(IR_f32, 2, 1, 3);
  ir_node *n = node(IR_OP_sub, 2, x, y);
  ir_value *ins[] = {x, y};
  const double *data[] = {col, row};
  prepare(n, 2, ins, data);
  expect(run(n), want, 6);
}
END_TEST

/* mean of -logp[target] over the kept positions (the second is ignored). */
START_TEST(nll_loss_ignore) {
  static const double logp[] = {-1, -2, -3, -4, -5, -6, -0.5, -0.25, -7};
  static const double targets[] = {2, -100, 1};
  static const double want[] = {(3 + 0.25) / 2};
  ir_value *x = input(IR_f32, 2, 3, 3), *t = input(IR_i32, 1, 3);
  ir_node *n = node(IR_OP_nll_loss, 2, x, t);
  ir_set_int(g, n, "ignore_index", -100);
  ir_value *ins[] = {x, t};
  const double *data[] = {logp, targets};
  prepare(n, 2, ins, data);
  expect(run(n), want, 1);
}
END_TEST

/* x [T=2, hd=4]: row 0 unrotated; row 1 pairs (0,2) by 1 rad, (1,3) by
 * 1/sqrt(base) = 0.01 rad (base 10000). */
START_TEST(rope_rotate_half) {
  static const double x[] = {1, 2, 3, 4, 1, 1, 0, 0};
  double want[] = {1, 2, 3, 4, cos(1.0), cos(0.01), sin(1.0), sin(0.01)};
  ir_value *in = input(IR_f32, 2, 2, 4);
  ir_node *n = node(IR_OP_rope, 1, in, NULL);
  ir_set_float(g, n, "base", 10000.0);
  const double *data[] = {x};
  prepare(n, 1, &in, data);
  expect(run(n), want, 8);
}
END_TEST

/* grad effects store their gradient; max_grad routes to the first max. */
START_TEST(grad_effect) {
  static const double x[] = {3, 1, 3, 2, 5, 5};
  static const double want[] = {1, 0, 0, 0, 1, 0};
  ir_value *p =
      ir_source_new(g, IR_OP_param, ir_type_make(IR_f32, 2, (int64_t[]){2, 3}), "p")->results[0];
  ir_node *m = node(IR_OP_max, 1, p, NULL);
  set_ints(m, "axes", 1, 1);
  ir_node_infer(m, NULL, 0);
  ir_value *one = ir_source_new(g, IR_OP_const, m->results[0]->type, "one")->results[0];
  ir_set_float(g, one->def, "value", 1.0);
  ir_value *ins[3] = {p, m->results[0], one};
  ir_node *mg = ir_node_new(g, IR_OP_max_grad, 3, ins, "dp");
  set_ints(mg, "axes", 1, 1);
  ir_node_infer(mg, NULL, 0);
  ir_node *eff = node(IR_OP_grad, 2, p, mg->results[0]);
  const double *data[] = {x};
  prepare(eff, 1, &p, data);
  char err[IR_ERR_LEN];
  ck_assert_msg(ir_interp_run(interp, err, sizeof err), "%s", err);
  expect(ir_interp_grad(interp, p), want, 6);
  ck_assert_ptr_null(ir_interp_grad(interp, one));
}
END_TEST

/* A layer op is not interpreted; an active dropout mask fails with "dropout". */
START_TEST(unsupported_fail) {
  ir_value *x = input(IR_f32, 2, 2, 3);
  ir_node *n = node(IR_OP_layernorm, 2, x, input(IR_f32, 1, 3));
  const double *data[] = {A23};
  prepare(n, 1, &x, data);
  char err[IR_ERR_LEN];
  ck_assert(!ir_interp_run(interp, err, sizeof err));
  ck_assert_ptr_nonnull(strstr(err, "layernorm"));
  ir_interp_free(interp);
  ir_node_remove(g, n);
  ir_node *mask = ir_source_new(g, IR_OP_dropout_mask, x->type, "mask");
  ir_set_float(g, mask, "p", 0.5);
  prepare(mask, 1, &x, data);
  ck_assert(!ir_interp_run(interp, err, sizeof err));
  ck_assert_str_eq(err, "dropout_mask: dropout");
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("ir_interp");
  TCase *tc = tcase_create("ops");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, matmul_plain);
  tcase_add_test(tc, matmul_transpose_b);
  tcase_add_test(tc, matmul_vector_batch);
  tcase_add_test(tc, softmax_row);
  tcase_add_test(tc, log_softmax_axis0);
  tcase_add_test(tc, conv2d_valid);
  tcase_add_test(tc, conv2d_padded_strided);
  tcase_add_test(tc, avgpool_padded);
  tcase_add_test(tc, upsample_bilinear);
  tcase_add_test(tc, broadcast_add);
  tcase_add_test(tc, broadcast_both);
  tcase_add_test(tc, nll_loss_ignore);
  tcase_add_test(tc, rope_rotate_half);
  tcase_add_test(tc, grad_effect);
  tcase_add_test(tc, unsupported_fail);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *runner = srunner_create(suite());
  srunner_run_all(runner, CK_NORMAL);
  int failed = srunner_ntests_failed(runner);
  srunner_free(runner);
  return failed ? 1 : 0;
}
