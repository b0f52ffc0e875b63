/* test_ir_verify.c: the verifier finds each kind of broken invariant and
 * says where, one line per problem. */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

static ir_arena *arena;
static ir_graph *g;
static char report[4096];

static void setup(void) {
  arena = ir_arena_new();
  g = ir_graph_new(arena, "v");
}

static void teardown(void) { ir_arena_free(arena); }

static ir_type T(ir_dtype dtype, int rank, ...) {
  int64_t dims[IR_MAX_RANK] = {0};
  va_list ap;
  va_start(ap, rank);
  for (int i = 0; i < rank; i++) dims[i] = va_arg(ap, int);
  va_end(ap);
  return ir_type_make(dtype, rank, dims);
}

static ir_value *input(const char *name, ir_type t) {
  return ir_source_new(g, IR_OP_input, t, name)->results[0];
}

static ir_node *unary(ir_op op, const char *name, ir_value *x) {
  ir_node *n = ir_node_new(g, op, 1, &x, name);
  char err[IR_ERR_LEN];
  ck_assert_msg(ir_node_infer(n, err, sizeof err), "%s", err);
  return n;
}

/* Runs the verifier; its lines land in report. */
static int verify(bool expanded) {
  char *text = NULL;
  size_t size = 0;
  FILE *f = open_memstream(&text, &size);
  int problems = ir_verify(g, expanded, f);
  fclose(f);
  snprintf(report, sizeof report, "%s", text);
  free(text);
  ck_assert_int_eq(ir_verify(g, expanded, NULL), problems);
  return problems;
}

START_TEST(clean_graph) {
  ir_value *x = input("x", T(IR_f32, 2, 2, 3));
  ir_value *y = unary(IR_OP_relu, "y", x)->results[0];
  ir_node *s = ir_node_new(g, IR_OP_sum, 1, &y, "s");
  int64_t axes[1] = {-1};
  ir_set_ints(g, s, "axes", 1, axes);
  ir_set_bool(g, s, "keepdim", false);
  char err[IR_ERR_LEN];
  ck_assert(ir_node_infer(s, err, sizeof err));
  ir_node *out = ir_node_new(g, IR_OP_output, 1, &s->results[0], NULL);
  ir_set_str(g, out, "name", "s");
  ck_assert_int_eq(verify(true), 0);
  ck_assert_str_eq(report, "");
}
END_TEST

START_TEST(use_before_definition) {
  ir_value *x = input("x", T(IR_f32, 1, 2));
  ir_node *y = unary(IR_OP_relu, "y", x);
  ir_node *z = unary(IR_OP_relu, "z", y->results[0]);
  y->inputs[0] = z->results[0];
  ck_assert_int_eq(verify(false), 1);
  ck_assert_str_eq(report, "node 1 (relu %y): input 0 %z is used before its definition\n");
  /* its own result */
  y->inputs[0] = y->results[0];
  ck_assert_int_eq(verify(false), 1);
  ck_assert_str_eq(report, "node 1 (relu %y): input 0 %y is used before its definition\n");
}
END_TEST

START_TEST(undefined_and_missing_inputs) {
  ir_value *x = input("x", T(IR_f32, 1, 2));
  ir_node *y = unary(IR_OP_relu, "y", x);
  ir_node *z = unary(IR_OP_exp, "z", y->results[0]);
  ir_node_remove(g, y);
  ck_assert_int_eq(verify(false), 1);
  ck_assert_str_eq(report, "node 1 (exp %z): input 0 %y is not defined in the graph\n");
  z->inputs[0] = NULL;
  ck_assert_int_eq(verify(false), 1);
  ck_assert_str_eq(report, "node 1 (exp %z): input 0 is NULL\n");
  /* a value of another graph */
  ir_graph *other = ir_graph_new(arena, "other");
  ir_value *foreign = ir_source_new(other, IR_OP_input, T(IR_f32, 1, 2), "w")->results[0];
  z->inputs[0] = foreign;
  ck_assert_int_eq(verify(false), 1);
  ck_assert_str_eq(report, "node 1 (exp %z): input 0 %w is not defined in the graph\n");
}
END_TEST

START_TEST(input_and_result_counts) {
  ir_value *x = input("x", T(IR_f32, 1, 2));
  ir_node *a = ir_node_new(g, IR_OP_add, 1, &x, "a");
  ir_value *many[5] = {x, x, x, x, x};
  ir_node *l = ir_node_new(g, IR_OP_linear, 5, many, "l");
  ir_set_bool(g, l, "bias", false);
  ir_set_int(g, l, "rank", 0);
  ir_node *c = ir_node_new(g, IR_OP_concat, 0, NULL, "c");
  ir_set_int(g, c, "axis", 0);
  ck_assert_int_eq(verify(false), 3);
  ck_assert_str_eq(report,
                   "node 1 (add %a): takes 2 inputs, got 1\n"
                   "node 2 (linear %l): takes 2 to 4 inputs, got 5\n"
                   "node 3 (concat %c): takes at least 1 input, got 0\n");
  ir_node_remove(g, c);
  ir_node_remove(g, a->next);
  a->inputs = many;
  a->num_inputs = 2;
  a->num_results = 0;
  ck_assert_int_eq(verify(false), 1);
  ck_assert_str_eq(report, "node 1 (add): has 0 results, the op defines 1\n");
}
END_TEST

START_TEST(attributes) {
  ir_value *x = input("x", T(IR_f32, 2, 2, 3));
  ir_node *s = ir_node_new(g, IR_OP_softmax, 1, &x, "s");
  ck_assert_int_eq(verify(false), 1);
  ck_assert_str_eq(report, "node 1 (softmax %s): missing attribute 'axis'\n");
  ir_set_float(g, s, "axis", 1.0);
  ir_set_int(g, s, "dim", 1);
  ck_assert_int_eq(verify(false), 2);
  ck_assert_str_eq(report,
                   "node 1 (softmax %s): attribute 'axis' is float, expected int\n"
                   "node 1 (softmax %s): unknown attribute 'dim'\n");
  ir_set_int(g, s, "axis", 1);
  s->num_attrs = 1;
  ck_assert_int_eq(verify(false), 1);
  ck_assert_str_eq(report,
                   "node 1 (softmax %s): result 0 %s has type f32[] but the shape rule gives "
                   "f32[2,3]\n");
  s->results[0]->type = x->type;
  ck_assert_int_eq(verify(false), 0);
  /* two of one name (only reachable by editing attrs directly) */
  ir_attr *two = ir_arena_alloc(arena, 2 * sizeof *two);
  two[0] = two[1] = s->attrs[0];
  s->attrs = two;
  s->num_attrs = 2;
  ck_assert_int_eq(verify(false), 1);
  ck_assert_str_eq(report, "node 1 (softmax %s): attribute 'axis' given twice\n");
  /* optional attributes may be absent */
  ir_node *p = ir_source_new(g, IR_OP_param, T(IR_f32, 1, 3), "w");
  ir_set_str(g, p, "init", "zeros");
  s->num_attrs = 1;
  ck_assert_int_eq(verify(false), 0);
}
END_TEST

START_TEST(types) {
  ir_value *x = input("x", T(IR_f32, 1, 2));
  ir_value *w = input("w", T(IR_f32, 1, 3));
  ir_node *y = unary(IR_OP_relu, "y", x);
  y->results[0]->type = T(IR_f32, 1, 3);
  ck_assert_int_eq(verify(false), 1);
  ck_assert_str_eq(report, "node 2 (relu %y): result 0 %y has type f32[3] but the shape rule gives f32[2]\n");
  y->results[0]->type = x->type;
  ir_value *in[2] = {x, w};
  ir_node_new(g, IR_OP_add, 2, in, "sum");
  ck_assert_int_eq(verify(false), 1);
  ck_assert_str_eq(report, "node 3 (add %sum): cannot broadcast f32[2] with f32[3]\n");
  /* the verifier left the graph alone */
  ck_assert_int_eq(g->last->results[0]->type.rank, 0);
  ck_assert_int_eq(y->results[0]->type.dims[0], 2);
}
END_TEST

START_TEST(invalid_source_types) {
  ir_value *x = input("x", T(IR_f32, 1, 2));
  x->type.dims[0] = -1;
  ir_value *y = input("y", T(IR_f32, 1, 2));
  y->type.rank = 9;
  ir_value *z = input("z", T(IR_f32, 1, 2));
  z->type.dtype = IR_DTYPE_COUNT;
  ck_assert_int_eq(verify(false), 3);
  ck_assert_str_eq(report,
                   "node 0 (input %x): result 0 has an invalid type\n"
                   "node 1 (input %y): result 0 has an invalid type\n"
                   "node 2 (input %z): result 0 has an invalid type\n");
}
END_TEST

START_TEST(layer_ops_after_expansion) {
  ir_value *x = input("x", T(IR_f32, 2, 8, 16));
  ir_node *w = ir_source_new(g, IR_OP_param, T(IR_f32, 2, 4, 16), "w");
  ir_set_str(g, w, "init", "normal");
  ir_value *in[2] = {x, w->results[0]};
  ir_node *l = ir_node_new(g, IR_OP_linear, 2, in, "l");
  ir_set_bool(g, l, "bias", false);
  ir_set_int(g, l, "rank", 0);
  char err[IR_ERR_LEN];
  ck_assert_msg(ir_node_infer(l, err, sizeof err), "%s", err);
  ck_assert_int_eq(verify(false), 0);
  ck_assert_int_eq(verify(true), 1);
  ck_assert_str_eq(report, "node 2 (linear %l): layer op remains after expansion\n");
}
END_TEST

START_TEST(names_and_definitions) {
  ir_value *x = input("x", T(IR_f32, 1, 2));
  ir_node *y = unary(IR_OP_relu, "y", x);
  ir_node *z = unary(IR_OP_relu, "z", x);
  /* a name written directly: a duplicate, and a name the table lacks */
  z->results[0]->name = "x";
  y->results[0]->name = "fresh";
  ck_assert_int_eq(verify(false), 2);
  ck_assert_str_eq(report,
                   "node 1 (relu %fresh): result 0 %fresh is not registered under its name "
                   "(rename with ir_value_rename)\n"
                   "node 2 (relu %x): result 0 %x: name already used by node 0\n");
  y->results[0]->name = "y";
  z->results[0]->name = "z";
  ck_assert_int_eq(verify(false), 0);
  /* one value defined by two nodes */
  z->results[0] = y->results[0];
  ck_assert_int_eq(verify(false), 2);
  ck_assert_str_eq(report,
                   "node 2 (relu %y): result 0 does not point back at its node\n"
                   "node 2 (relu %y): result 0 %y is defined again (first by node 1)\n");
}
END_TEST

START_TEST(broken_links) {
  ir_value *x = input("x", T(IR_f32, 1, 2));
  ir_node *y = unary(IR_OP_relu, "y", x);
  unary(IR_OP_relu, "z", y->results[0]);
  y->prev = NULL;
  ck_assert_int_eq(verify(false), 1);
  ck_assert_str_eq(report, "node 1 (relu %y): its prev link does not point at node 0\n");
  y->prev = x->def;
  g->last = y;
  ck_assert_int_eq(verify(false), 1);
  ck_assert_str_eq(report,
                   "node 2 (relu %z): is the last node but the graph's last points elsewhere\n");
}
END_TEST

START_TEST(counts_every_problem) {
  ir_value *x = input("x", T(IR_f32, 1, 2));
  ir_node *a = ir_node_new(g, IR_OP_add, 1, &x, "a");
  ir_set_int(g, a, "bogus", 1);
  ir_node *s = ir_node_new(g, IR_OP_softmax, 1, &x, "s");
  (void)s;
  ck_assert_int_eq(verify(false), 3);
  ck_assert_str_eq(report,
                   "node 1 (add %a): takes 2 inputs, got 1\n"
                   "node 1 (add %a): unknown attribute 'bogus'\n"
                   "node 2 (softmax %s): missing attribute 'axis'\n");
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("ir_verify");
  TCase *tc = tcase_create("verify");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, clean_graph);
  tcase_add_test(tc, use_before_definition);
  tcase_add_test(tc, undefined_and_missing_inputs);
  tcase_add_test(tc, input_and_result_counts);
  tcase_add_test(tc, attributes);
  tcase_add_test(tc, types);
  tcase_add_test(tc, invalid_source_types);
  tcase_add_test(tc, layer_ops_after_expansion);
  tcase_add_test(tc, names_and_definitions);
  tcase_add_test(tc, broken_links);
  tcase_add_test(tc, counts_every_problem);
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
