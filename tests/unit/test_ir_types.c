/* test_ir_types.c: dtypes, tensor types, the op table, and building and
 * editing graphs (names, uses, attributes). */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

static ir_arena *arena;
static ir_graph *g;

static void setup(void) {
  arena = ir_arena_new();
  g = ir_graph_new(arena, "t");
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

static ir_value *source(ir_op op, ir_type t, const char *name) {
  return ir_source_new(g, op, t, name)->results[0];
}

/* ---- dtypes and types ---- */

START_TEST(dtype_table) {
  ck_assert_str_eq(ir_dtype_name(IR_f32), "f32");
  ck_assert_str_eq(ir_dtype_name(IR_bf16), "bf16");
  ck_assert_str_eq(ir_dtype_name(IR_u8), "u8");
  ck_assert_int_eq(ir_dtype_bytes(IR_f32), 4);
  ck_assert_int_eq(ir_dtype_bytes(IR_bf16), 2);
  ck_assert_int_eq(ir_dtype_bytes(IR_f64), 8);
  ck_assert_int_eq(ir_dtype_bytes(IR_i64), 8);
  ck_assert_int_eq(ir_dtype_bytes(IR_u8), 1);
  ck_assert(ir_dtype_is_float(IR_f16));
  ck_assert(ir_dtype_is_float(IR_bf16));
  ck_assert(!ir_dtype_is_float(IR_i32));
  ck_assert(!ir_dtype_is_float(IR_u8));
  for (int i = 0; i < IR_DTYPE_COUNT; i++) {
    ir_dtype d;
    ck_assert(ir_dtype_parse(ir_dtype_name((ir_dtype)i), &d));
    ck_assert_int_eq(d, i);
  }
  ir_dtype d;
  ck_assert(!ir_dtype_parse("f31", &d));
  ck_assert(!ir_dtype_parse("", &d));
  ck_assert(!ir_dtype_parse("F32", &d));
}
END_TEST

START_TEST(type_format) {
  char buf[64];
  ir_type t = T(IR_f32, 3, 8, 128, 256);
  ck_assert_str_eq(ir_type_format(&t, buf, sizeof buf), "f32[8,128,256]");
  ck_assert_str_eq(ir_shape_format(&t, buf, sizeof buf), "[8,128,256]");
  ir_type s = T(IR_f32, 0);
  ck_assert_str_eq(ir_type_format(&s, buf, sizeof buf), "f32[]");
  ck_assert_str_eq(ir_shape_format(&s, buf, sizeof buf), "[]");
  ir_type i = T(IR_i64, 1, 7);
  ck_assert_str_eq(ir_type_format(&i, buf, sizeof buf), "i64[7]");
  /* truncation is safe and terminated */
  char small[6];
  ir_type_format(&t, small, sizeof small);
  ck_assert_str_eq(small, "f32[8");
  ir_shape_format(&t, small, 1);
  ck_assert_str_eq(small, "");
}
END_TEST

START_TEST(type_numel_bytes_equal) {
  ir_type t = T(IR_bf16, 3, 2, 3, 4);
  ck_assert_int_eq(ir_type_numel(&t), 24);
  ck_assert_int_eq(ir_type_bytes(&t), 48);
  ir_type s = T(IR_f64, 0);
  ck_assert_int_eq(ir_type_numel(&s), 1);
  ck_assert_int_eq(ir_type_bytes(&s), 8);
  ir_type z = T(IR_f32, 2, 0, 5);
  ck_assert_int_eq(ir_type_numel(&z), 0);
  ir_type huge = T(IR_f32, 2, 2, 2);
  huge.dims[0] = INT64_MAX / 2;
  huge.dims[1] = 4;
  ck_assert_int_eq(ir_type_numel(&huge), INT64_MAX); /* saturates */
  ck_assert_int_eq(ir_type_bytes(&huge), INT64_MAX);
  ir_type a = T(IR_f32, 2, 2, 3), b = T(IR_f32, 2, 2, 3), c = T(IR_f16, 2, 2, 3),
          d = T(IR_f32, 2, 3, 2), e = T(IR_f32, 3, 2, 3, 1);
  ck_assert(ir_type_equal(&a, &b));
  ck_assert(!ir_type_equal(&a, &c));
  ck_assert(!ir_type_equal(&a, &d));
  ck_assert(!ir_type_equal(&a, &e));
  /* dims past the rank do not matter */
  a.dims[5] = 99;
  ck_assert(ir_type_equal(&a, &b));
}
END_TEST

/* ---- op table ---- */

static int count_words(const char *s) {
  int n = 0;
  for (const char *p = s; *p;) {
    while (*p == ' ') p++;
    if (!*p) break;
    n++;
    while (*p && *p != ' ') p++;
  }
  return n;
}

START_TEST(op_table_complete) {
  static const struct {
    const char *name, *attrs;
    int min, max, results;
  } expected[] = {
#define OP(id, min_in, max_in, results, flags, attrs, shape) {#id, attrs, min_in, max_in, results},
#include "ir/ops.def"
#undef OP
  };
  ck_assert_int_eq(sizeof expected / sizeof expected[0], IR_OP_COUNT);
  for (int i = 0; i < IR_OP_COUNT; i++) {
    const ir_op_info *info = ir_op_get((ir_op)i);
    ck_assert_ptr_nonnull(info);
    ck_assert_str_eq(info->name, expected[i].name);
    ck_assert_int_eq(info->min_inputs, expected[i].min);
    ck_assert_int_eq(info->max_inputs, expected[i].max);
    ck_assert_int_eq(info->num_results, expected[i].results);
    /* every word of the spec became an attribute */
    ck_assert_int_eq(info->num_attrs, count_words(expected[i].attrs));
    ir_op op;
    ck_assert(ir_op_lookup(expected[i].name, &op));
    ck_assert_int_eq(op, i);
    ck_assert((info->flags & IR_OPF_SOURCE) ? info->shape == NULL : info->shape != NULL);
  }
  ck_assert_ptr_null(ir_op_get(IR_OP_COUNT));
  ir_op op;
  ck_assert(!ir_op_lookup("addd", &op));
  ck_assert(!ir_op_lookup("", &op));
}
END_TEST

START_TEST(op_attr_specs) {
  const ir_op_info *param = ir_op_get(IR_OP_param);
  ck_assert_int_eq(param->num_attrs, 3);
  ck_assert_str_eq(param->attrs[0].name, "init");
  ck_assert_int_eq(param->attrs[0].kind, IR_ATTR_STR);
  ck_assert(!param->attrs[0].optional);
  ck_assert_str_eq(param->attrs[1].name, "a");
  ck_assert_int_eq(param->attrs[1].kind, IR_ATTR_FLOAT);
  ck_assert(param->attrs[1].optional);
  const ir_op_info *sum = ir_op_get(IR_OP_sum);
  ck_assert_str_eq(sum->attrs[0].name, "axes");
  ck_assert_int_eq(sum->attrs[0].kind, IR_ATTR_INTS);
  ck_assert_str_eq(sum->attrs[1].name, "keepdim");
  ck_assert_int_eq(sum->attrs[1].kind, IR_ATTR_BOOL);
  const ir_op_info *attn = ir_op_get(IR_OP_attention);
  ck_assert_int_eq(attn->num_attrs, 10);
  ck_assert_str_eq(attn->attrs[8].name, "rope_base");
  ck_assert_int_eq(attn->attrs[8].kind, IR_ATTR_FLOAT);
  ck_assert_int_eq(ir_op_get(IR_OP_input)->num_attrs, 0);
  ck_assert(ir_op_get(IR_OP_output)->flags & IR_OPF_EFFECT);
  ck_assert_int_eq(ir_op_get(IR_OP_concat)->max_inputs, -1);
}
END_TEST

/* ---- graphs ---- */

START_TEST(node_names) {
  ir_value *x = source(IR_OP_input, T(IR_f32, 1, 4), "x");
  ck_assert_str_eq(x->name, "x");
  ck_assert_int_eq(x->id, 0);
  ck_assert_ptr_eq(x->def->results[0], x);
  ir_value *x1 = source(IR_OP_input, T(IR_f32, 1, 4), "x");
  ck_assert_str_eq(x1->name, "x.1");
  ir_value *x2 = source(IR_OP_input, T(IR_f32, 1, 4), "x");
  ck_assert_str_eq(x2->name, "x.2");
  /* unnamed: t<value id> */
  ir_node *n = ir_node_new(g, IR_OP_relu, 1, &x, NULL);
  ck_assert_str_eq(n->results[0]->name, "t3");
  ck_assert_int_eq(n->results[0]->id, 3);
  ck_assert_int_eq(n->id, 3);
  /* t<id> already taken by a user name: made unique */
  source(IR_OP_input, T(IR_f32, 0), "t5");
  ir_node *m = ir_node_new(g, IR_OP_relu, 1, &x, NULL);
  ck_assert_str_eq(m->results[0]->name, "t5.1");
  ck_assert_ptr_eq(ir_graph_find(g, "x.1"), x1);
  ck_assert_ptr_null(ir_graph_find(g, "y"));
  ck_assert_str_eq(ir_graph_unique_name(g, "x"), "x.3");
  ck_assert_str_eq(ir_graph_unique_name(g, "fresh"), "fresh");
}
END_TEST

START_TEST(node_order_and_remove) {
  ir_value *x = source(IR_OP_input, T(IR_f32, 1, 4), "x");
  ir_node *b = ir_node_new(g, IR_OP_relu, 1, &x, "b");
  ir_node *a = ir_node_insert(g, b, IR_OP_exp, 1, &x, "a");
  ir_node *c = ir_node_insert(g, NULL, IR_OP_neg, 1, &x, "c");
  ck_assert_ptr_eq(g->first, x->def);
  ck_assert_ptr_eq(x->def->next, a);
  ck_assert_ptr_eq(a->next, b);
  ck_assert_ptr_eq(b->next, c);
  ck_assert_ptr_eq(g->last, c);
  ck_assert_ptr_eq(c->prev, b);
  ir_node *first = ir_node_insert(g, x->def, IR_OP_input, 0, NULL, "first");
  ck_assert_ptr_eq(g->first, first);
  ck_assert_ptr_eq(x->def->prev, first);
  ir_node_remove(g, b);
  ck_assert_ptr_eq(a->next, c);
  ck_assert_ptr_eq(c->prev, a);
  ck_assert_ptr_null(ir_graph_find(g, "b")); /* the name is free again */
  ck_assert_str_eq(ir_graph_unique_name(g, "b"), "b");
  ir_node_remove(g, c);
  ck_assert_ptr_eq(g->last, a);
  ir_node_remove(g, first);
  ck_assert_ptr_eq(g->first, x->def);
  ck_assert_ptr_null(x->def->prev);
}
END_TEST

START_TEST(rename_values) {
  ir_value *x = source(IR_OP_input, T(IR_f32, 1, 4), "x");
  ir_value *y = source(IR_OP_input, T(IR_f32, 1, 4), "y");
  ir_value_rename(g, x, "renamed");
  ck_assert_str_eq(x->name, "renamed");
  ck_assert_ptr_eq(ir_graph_find(g, "renamed"), x);
  ck_assert_ptr_null(ir_graph_find(g, "x"));
  /* a taken name is made unique rather than duplicated */
  ir_value_rename(g, x, "y");
  ck_assert_str_eq(x->name, "y.1");
  ck_assert_ptr_eq(ir_graph_find(g, "y"), y);
  ir_value_rename(g, x, "y.1"); /* its own name: nothing changes */
  ck_assert_str_eq(x->name, "y.1");
}
END_TEST

START_TEST(many_names) {
  /* the name table grows and survives many removals */
  ir_value *x = source(IR_OP_input, T(IR_f32, 1, 4), "x");
  char name[32];
  for (int i = 0; i < 20000; i++) {
    snprintf(name, sizeof name, "v%d", i);
    ir_node *n = ir_node_new(g, IR_OP_relu, 1, &x, name);
    ck_assert_str_eq(n->results[0]->name, name);
    if (i % 3 == 0) ir_node_remove(g, n);
  }
  for (int i = 0; i < 20000; i++) {
    snprintf(name, sizeof name, "v%d", i);
    ir_value *v = ir_graph_find(g, name);
    if (i % 3 == 0)
      ck_assert_ptr_null(v);
    else
      ck_assert_str_eq(v->name, name);
  }
  for (int i = 0; i < 200; i++) ir_node_new(g, IR_OP_relu, 1, &x, "same");
  ck_assert_ptr_nonnull(ir_graph_find(g, "same.199"));
  ck_assert_ptr_null(ir_graph_find(g, "same.200"));
}
END_TEST

START_TEST(uses) {
  ir_value *x = source(IR_OP_input, T(IR_f32, 1, 4), "x");
  ir_value *in2[2] = {x, x};
  ir_node *add = ir_node_new(g, IR_OP_add, 2, in2, "sum");
  ir_node *r = ir_node_new(g, IR_OP_relu, 1, &x, "r");
  ck_assert_int_eq(ir_count_uses(g, x), 3);
  ck_assert_int_eq(ir_count_uses(g, add->results[0]), 0);
  /* y = neg(x) then every other use of x reads y */
  ir_node *y = ir_node_insert(g, add, IR_OP_neg, 1, &x, "y");
  ir_replace_uses(g, x, y->results[0]);
  ck_assert_ptr_eq(y->inputs[0], x);
  ck_assert_ptr_eq(add->inputs[0], y->results[0]);
  ck_assert_ptr_eq(add->inputs[1], y->results[0]);
  ck_assert_ptr_eq(r->inputs[0], y->results[0]);
  ck_assert_int_eq(ir_count_uses(g, x), 1);
  ck_assert_int_eq(ir_count_uses(g, y->results[0]), 3);
}
END_TEST

START_TEST(attributes) {
  ir_value *x = source(IR_OP_input, T(IR_f32, 2, 4, 4), "x");
  ir_node *n = ir_node_new(g, IR_OP_sum, 1, &x, "s");
  ck_assert_ptr_null(ir_get_attr(n, "axes"));
  ck_assert_int_eq(ir_get_int(n, "axis", 42), 42);
  int64_t axes[2] = {0, -1};
  ir_set_ints(g, n, "axes", 2, axes);
  axes[0] = 7; /* copied */
  ir_set_bool(g, n, "keepdim", true);
  const int64_t *v;
  ck_assert_int_eq(ir_get_ints(n, "axes", &v), 2);
  ck_assert_int_eq(v[0], 0);
  ck_assert_int_eq(v[1], -1);
  ck_assert(ir_get_bool(n, "keepdim", false));
  ck_assert_ptr_eq(ir_get_attr(n, "axes")->name, ir_op_get(IR_OP_sum)->attrs[0].name);
  ir_set_bool(g, n, "keepdim", false); /* replaces */
  ck_assert_int_eq(n->num_attrs, 2);
  ck_assert(!ir_get_bool(n, "keepdim", true));
  /* wrong kind: getters fall back */
  ck_assert_int_eq(ir_get_int(n, "keepdim", 5), 5);
  ck_assert_int_eq(ir_get_ints(n, "keepdim", &v), 0);
  ck_assert_ptr_null(v);

  ir_node *p = ir_source_new(g, IR_OP_param, T(IR_f32, 1, 4), "w");
  char init[] = "normal";
  ir_set_str(g, p, "init", init);
  init[0] = 'X';
  ck_assert_str_eq(ir_get_str(p, "init", NULL), "normal");
  ir_set_float(g, p, "a", 0.5);
  ir_set_int(g, p, "b", 2);
  ck_assert(ir_get_float(p, "a", 0) == 0.5);
  ck_assert(ir_get_float(p, "b", 0) == 2.0); /* an int reads as a float */
  ck_assert(ir_get_float(p, "missing", 1.5) == 1.5);
  double fs[3] = {0.9, 0.95, 1e-8};
  ir_set_floats(g, p, "betas", 3, fs);
  const ir_attr *a = ir_get_attr(p, "betas");
  ck_assert_int_eq(a->kind, IR_ATTR_FLOATS);
  ck_assert_int_eq(a->u.floats.n, 3);
  ck_assert(a->u.floats.v[2] == 1e-8);
  ck_assert_str_eq(a->name, "betas"); /* unknown names are kept for the verifier */
  ir_set_ints(g, p, "empty", 0, NULL);
  ck_assert_int_eq(ir_get_attr(p, "empty")->u.ints.n, 0);
  ck_assert_int_eq(p->num_attrs, 5);
  ck_assert_str_eq(ir_get_str(p, "init", NULL), "normal");
}
END_TEST

START_TEST(infer_checks_counts) {
  ir_value *x = source(IR_OP_input, T(IR_f32, 1, 4), "x");
  char err[IR_ERR_LEN];
  ir_node *n = ir_node_new(g, IR_OP_add, 1, &x, "bad");
  ck_assert(!ir_node_infer(n, err, sizeof err));
  ck_assert_str_eq(err, "add takes 2 inputs, got 1");
  ir_value *three[3] = {x, x, x};
  n = ir_node_new(g, IR_OP_relu, 3, three, "bad");
  ck_assert(!ir_node_infer(n, err, sizeof err));
  ck_assert_str_eq(err, "relu takes 1 input, got 3");
  n = ir_node_new(g, IR_OP_concat, 0, NULL, "bad");
  ck_assert(!ir_node_infer(n, err, sizeof err));
  ck_assert_str_eq(err, "concat takes at least 1 input, got 0");
  ir_value *five[5] = {x, x, x, x, x};
  n = ir_node_new(g, IR_OP_linear, 5, five, "bad");
  ck_assert(!ir_node_infer(n, err, sizeof err));
  ck_assert_str_eq(err, "linear takes 2 to 4 inputs, got 5");
  ir_value *holes[2] = {x, NULL};
  n = ir_node_new(g, IR_OP_add, 2, holes, "bad");
  ck_assert(!ir_node_infer(n, err, sizeof err));
  ck_assert_str_eq(err, "add: input 1 is missing");
  /* sources check nothing */
  ck_assert(ir_node_infer(x->def, err, sizeof err));
  n = ir_node_new(g, IR_OP_relu, 1, &x, "ok");
  ck_assert(ir_node_infer(n, err, sizeof err));
  ck_assert(ir_type_equal(&n->results[0]->type, &x->type));
  ck_assert_int_eq(ir_node_new(g, IR_OP_output, 1, &x, NULL)->num_results, 0);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("ir_types");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, dtype_table);
  tcase_add_test(tc, type_format);
  tcase_add_test(tc, type_numel_bytes_equal);
  tcase_add_test(tc, op_table_complete);
  tcase_add_test(tc, op_attr_specs);
  tcase_add_test(tc, node_names);
  tcase_add_test(tc, node_order_and_remove);
  tcase_add_test(tc, rename_values);
  tcase_add_test(tc, many_names);
  tcase_add_test(tc, uses);
  tcase_add_test(tc, attributes);
  tcase_add_test(tc, infer_checks_counts);
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
