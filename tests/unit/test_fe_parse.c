/* test_fe_parse.c: the expression grammar, printing back, and every parse
 * error with its position. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/fe.h"

#include "diag_fixture.h"

/* Positions count from column 1 of e.txt, which has no registered text,
 * so messages are one line each. */
static fe_expr *parse(const char *text) {
  return fe_parse_expression(arena, diag, text, strlen(text), NULL, (ir_loc){"e.txt", 1, 1});
}

static const char *format(const char *text) {
  fe_expr *e = parse(text);
  ck_assert_msg(e != NULL, "parse failed: %s: %s", text, output());
  return fe_expr_format(arena, e);
}

static void roundtrip(const char *text) { ck_assert_str_eq(format(text), text); }

/* Parses text that must fail, and returns the messages. */
static const char *parse_error(const char *text) {
  fe_expr *e = parse(text);
  ck_assert_msg(e == NULL, "parse of '%s' should fail", text);
  return output();
}

/* ---- structure ---- */

START_TEST(precedence) {
  fe_expr *e = parse("a + b * c");
  ck_assert_int_eq(e->kind, FE_EXPR_BINARY);
  ck_assert_int_eq(e->op, '+');
  ck_assert_int_eq(e->rhs->kind, FE_EXPR_BINARY);
  ck_assert_int_eq(e->rhs->op, '*');
  e = parse("x @ w + b");
  ck_assert_int_eq(e->op, '+');
  ck_assert_int_eq(e->lhs->op, '@');
  e = parse("-a @ b");
  ck_assert_int_eq(e->op, '@');
  ck_assert_int_eq(e->lhs->kind, FE_EXPR_NEG);
  ck_assert_str_eq(output(), "");
}
END_TEST

START_TEST(left_associative) {
  fe_expr *e = parse("a - b - c");
  ck_assert_int_eq(e->op, '-');
  ck_assert_int_eq(e->lhs->kind, FE_EXPR_BINARY);
  ck_assert_str_eq(e->rhs->name, "c");
  e = parse("a / b * c");
  ck_assert_int_eq(e->op, '*');
  ck_assert_int_eq(e->lhs->op, '/');
}
END_TEST

START_TEST(locations) {
  fe_expr *e = parse("  tok + f(x, k=2)");
  ck_assert_int_eq(e->loc.col, 7); /* a binary node is at its operator */
  ck_assert_int_eq(e->lhs->loc.col, 3);
  ck_assert_int_eq(e->rhs->kind, FE_EXPR_CALL);
  ck_assert_int_eq(e->rhs->loc.col, 9);
  ck_assert_int_eq(e->rhs->args[1].keyword_loc.col, 14);
  ck_assert_int_eq(e->rhs->args[1].value->loc.col, 16);
  e = parse("[a, -1]");
  ck_assert_int_eq(e->loc.col, 1);
  ck_assert_int_eq(e->args[1].value->loc.col, 5);
}
END_TEST

START_TEST(calls_with_keywords) {
  fe_expr *e = parse("attention(ln1, heads=H, causal=true)");
  ck_assert_int_eq(e->kind, FE_EXPR_CALL);
  ck_assert_str_eq(e->name, "attention");
  ck_assert_int_eq(e->num_args, 3);
  ck_assert_ptr_null(e->args[0].keyword);
  ck_assert_str_eq(e->args[0].value->name, "ln1");
  ck_assert_str_eq(e->args[1].keyword, "heads");
  ck_assert_str_eq(e->args[1].value->name, "H");
  ck_assert_str_eq(e->args[2].keyword, "causal");
  e = parse("causal_mask()");
  ck_assert_int_eq(e->kind, FE_EXPR_CALL);
  ck_assert_int_eq(e->num_args, 0);
  e = parse("f(g(h(x)), k=[1, 2])");
  ck_assert_int_eq(e->args[0].value->kind, FE_EXPR_CALL);
  ck_assert_int_eq(e->args[1].value->kind, FE_EXPR_LIST);
}
END_TEST

START_TEST(lists) {
  fe_expr *e = parse("[B, -1, 5]");
  ck_assert_int_eq(e->kind, FE_EXPR_LIST);
  ck_assert_int_eq(e->num_args, 3);
  ck_assert_int_eq(e->args[1].value->kind, FE_EXPR_NUMBER);
  ck_assert_int_eq(e->args[1].value->int_value, -1);
  e = parse("[]");
  ck_assert_int_eq(e->kind, FE_EXPR_LIST);
  ck_assert_int_eq(e->num_args, 0);
  e = parse("[[1, 2], [3]]");
  ck_assert_int_eq(e->args[0].value->num_args, 2);
}
END_TEST

START_TEST(strings) {
  fe_expr *e = parse("linear(x, 3, name=\"proj\")");
  ck_assert_int_eq(e->args[2].value->kind, FE_EXPR_STRING);
  ck_assert_str_eq(e->args[2].value->name, "proj");
  e = parse("'it''s'");
  ck_assert_ptr_null(e); /* two strings side by side */
  e = parse("''");
  ck_assert_str_eq(e->name, "");
}
END_TEST

START_TEST(negative_numbers) {
  fe_expr *e = parse("-3");
  ck_assert_int_eq(e->kind, FE_EXPR_NUMBER);
  ck_assert(e->is_integer);
  ck_assert_int_eq(e->int_value, -3);
  ck_assert_int_eq(e->loc.col, 1);
  e = parse("- -3");
  ck_assert_int_eq(e->int_value, 3);
  e = parse("-1e-8");
  ck_assert(!e->is_integer);
  ck_assert(e->number == -1e-8);
  e = parse("-(4)");
  ck_assert_int_eq(e->int_value, -4);
  e = parse("-x");
  ck_assert_int_eq(e->kind, FE_EXPR_NEG);
  ck_assert_str_eq(e->lhs->name, "x");
  e = parse("a - -1");
  ck_assert_int_eq(e->rhs->int_value, -1);
  e = parse("-9223372036854775807");
  ck_assert_int_eq(e->int_value, -INT64_MAX);
}
END_TEST

/* ---- printing ---- */

START_TEST(format_canonical) {
  roundtrip("attention(ln1, heads=H, causal=true)");
  roundtrip("a + b * c");
  roundtrip("(a + b) * c");
  roundtrip("a - b - c");
  roundtrip("a - (b - c)");
  roundtrip("a / (b * c)");
  roundtrip("x @ w + b");
  roundtrip("-a @ b");
  roundtrip("-(a + b)");
  roundtrip("a * -3");
  roundtrip("reshape(x, [B, -1, 5])");
  roundtrip("f()");
  roundtrip("[]");
  roundtrip("linear(x, 3, name=\"proj\")");
  ck_assert_str_eq(format("a+b*c"), "a + b * c");
  ck_assert_str_eq(format("((a))"), "a");
  ck_assert_str_eq(format("(a * b) + c"), "a * b + c");
  ck_assert_str_eq(format("f( x ,k = 1 )"), "f(x, k=1)");
  ck_assert_str_eq(format("f('a')"), "f(\"a\")");
  ck_assert_str_eq(format("'say \"hi\"'"), "'say \"hi\"'");
  /* "--x" rather than "-(-x)": the parentheses would count against the
   * nesting limit, so a long chain that parses would format into one
   * that does not (found by tests/fuzz/fuzz_expr). */
  ck_assert_str_eq(format("- - x"), "--x");
  ck_assert_str_eq(format("-(a + b)"), "-(a + b)");
}
END_TEST

START_TEST(format_numbers) {
  ck_assert_str_eq(format("3e-4"), "0.0003");
  ck_assert_str_eq(format("1e-8"), "1e-8");
  ck_assert_str_eq(format("1.0"), "1.0");
  ck_assert_str_eq(format("1."), "1.0");
  ck_assert_str_eq(format("0.1"), "0.1");
  ck_assert_str_eq(format("2.5e3"), "2500.0");
  ck_assert_str_eq(format("1e20"), "1e20");
  ck_assert_str_eq(format("100.0"), "100.0");
  ck_assert_str_eq(format("1e16"), "1e16");
  ck_assert_str_eq(format("1.5e-5"), "1.5e-5");
  ck_assert_str_eq(format("0.0"), "0.0");
  ck_assert_str_eq(format("123456.789"), "123456.789");
  ck_assert_str_eq(format("0.999"), "0.999");
  ck_assert_str_eq(format("-1e-5"), "-1e-5");
  ck_assert_str_eq(format("1337"), "1337");
  ck_assert_str_eq(format("0.30000000000000004"), "0.30000000000000004");
}
END_TEST

/* ---- errors ---- */

START_TEST(unclosed_call) {
  ck_assert_str_eq(parse_error("relu(linear(x, D)"),
                   "e.txt:1:18: error: expected ',' or ')' to close '('\n"
                   "e.txt:1:5: note: '(' opened here\n");
}
END_TEST

START_TEST(unclosed_group) {
  ck_assert_str_eq(parse_error("(a + b"), "e.txt:1:7: error: expected ')' to close '('\n"
                                          "e.txt:1:1: note: '(' opened here\n");
}
END_TEST

START_TEST(unclosed_list) {
  ck_assert_str_eq(parse_error("reshape(x, [B, T)"),
                   "e.txt:1:17: error: expected ',' or ']' to close '['\n"
                   "e.txt:1:12: note: '[' opened here\n");
}
END_TEST

START_TEST(missing_comma) {
  ck_assert_str_eq(parse_error("f(a b, c)"), "e.txt:1:5: error: expected ',' or ')' to close '('\n"
                                             "e.txt:1:2: note: '(' opened here\n");
}
END_TEST

START_TEST(expected_expression) {
  ck_assert_str_eq(parse_error("f(a, , b)"),
                   "e.txt:1:6: error: expected an expression, found ','\n");
}
END_TEST

START_TEST(trailing_comma) {
  ck_assert_str_eq(parse_error("f(a,)"), "e.txt:1:5: error: expected an expression, found ')'\n");
}
END_TEST

START_TEST(operator_at_end) {
  ck_assert_str_eq(parse_error("a +"),
                   "e.txt:1:4: error: expected an expression, found end of expression\n");
}
END_TEST

START_TEST(lone_minus) {
  ck_assert_str_eq(parse_error("-"),
                   "e.txt:1:2: error: expected an expression, found end of expression\n");
}
END_TEST

START_TEST(positional_after_keyword) {
  ck_assert_str_eq(parse_error("linear(x=1, y)"),
                   "e.txt:1:13: error: positional argument after keyword argument\n");
}
END_TEST

START_TEST(duplicate_keyword) {
  ck_assert_str_eq(parse_error("attention(x, heads=4, heads=8)"),
                   "e.txt:1:23: error: duplicate keyword argument 'heads'\n"
                   "e.txt:1:14: note: first given here\n");
}
END_TEST

START_TEST(keyword_in_list) {
  ck_assert_str_eq(parse_error("[a=1]"), "e.txt:1:3: error: expected ',' or ']' to close '['\n"
                                         "e.txt:1:1: note: '[' opened here\n");
}
END_TEST

START_TEST(keyword_needs_name) {
  ck_assert_str_eq(parse_error("f(1=2)"), "e.txt:1:4: error: expected ',' or ')' to close '('\n"
                                          "e.txt:1:2: note: '(' opened here\n");
}
END_TEST

START_TEST(extra_tokens) {
  ck_assert_str_eq(parse_error("a b"), "e.txt:1:3: error: expected an operator, found 'b'\n");
}
END_TEST

START_TEST(assignment_is_not_an_expression) {
  ck_assert_str_eq(parse_error("x = 3"), "e.txt:1:3: error: expected an operator, found '='\n");
}
END_TEST

START_TEST(unmatched_close) {
  ck_assert_str_eq(parse_error("relu(x))"), "e.txt:1:8: error: unmatched ')'\n");
}
END_TEST

START_TEST(call_of_group) {
  ck_assert_str_eq(parse_error("(f)(x)"), "e.txt:1:4: error: expected an operator, found '('\n");
}
END_TEST

START_TEST(empty) {
  ck_assert_str_eq(parse_error(""), "e.txt:1:1: error: empty expression\n");
  ck_assert_str_eq(parse_error("   "), "e.txt:1:1: error: empty expression\n"
                                       "e.txt:1:1: error: empty expression\n");
}
END_TEST

START_TEST(lexer_error_reported_once) {
  ck_assert_str_eq(parse_error("x $ x"), "e.txt:1:3: error: unexpected character '$'\n");
}
END_TEST

START_TEST(unterminated_string_once) {
  ck_assert_str_eq(parse_error("f(x, name=\"abc)"), "e.txt:1:11: error: unterminated string\n");
}
END_TEST

START_TEST(several_errors) {
  ck_assert_str_eq(parse_error("f(a $, b c, d, , g(1 2))"),
                   "e.txt:1:5: error: unexpected character '$'\n"
                   "e.txt:1:10: error: expected ',' or ')' to close '('\n"
                   "e.txt:1:2: note: '(' opened here\n"
                   "e.txt:1:16: error: expected an expression, found ','\n"
                   "e.txt:1:22: error: expected ',' or ')' to close '('\n"
                   "e.txt:1:19: note: '(' opened here\n");
}
END_TEST

START_TEST(long_name_in_message) {
  ck_assert_str_eq(parse_error("a abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"),
                   "e.txt:1:3: error: expected an operator, found "
                   "'abcdefghijklmnopqrstuvwxyzabcdefghijk...'\n");
}
END_TEST

START_TEST(too_deep) {
  char text[2 * 150 + 2];
  memset(text, '(', 150);
  text[150] = 'x';
  memset(text + 151, ')', 150);
  text[301] = 0;
  ck_assert_str_eq(parse_error(text), "e.txt:1:101: error: expression is nested too deeply\n");
}
END_TEST

START_TEST(very_deep_does_not_crash) {
  size_t n = 200000;
  char *text = ir_arena_alloc(arena, n + 1);
  for (size_t i = 0; i < n; i++) text[i] = "[(-"[i % 3];
  ck_assert_ptr_null(fe_parse_expression(arena, diag, text, n, NULL, (ir_loc){"e.txt", 1, 1}));
  ck_assert_int_eq(diag_error_count(diag), 1);
}
END_TEST

START_TEST(errors_through_yaml) {
  const char *text = "graph:\n"
                     "  - attn: attention(x, heads=4,\n"
                     "      causal=yes $)\n"
                     "  - y: \"relu(x,, 2)\"\n";
  diag_add_file(diag, "spec.yaml", text, strlen(text));
  fe_yaml_node *root = fe_yaml_load(arena, diag, "spec.yaml", text, strlen(text));
  ck_assert_ptr_nonnull(root);
  fe_yaml_node *graph = fe_yaml_get(root, "graph");
  ck_assert_ptr_null(fe_parse_scalar(arena, diag, graph->items[0]->values[0]));
  ck_assert_ptr_null(fe_parse_scalar(arena, diag, graph->items[1]->values[0]));
  ck_assert_str_eq(output(), "spec.yaml:3:18: error: unexpected character '$'\n"
                             "   3 |       causal=yes $)\n"
                             "     |                  ^\n"
                             "spec.yaml:4:16: error: expected an expression, found ','\n"
                             "   4 |   - y: \"relu(x,, 2)\"\n"
                             "     |                ^\n");
}
END_TEST

START_TEST(parse_scalar_rejects_collections) {
  const char *text = "a: [x, y]\n";
  diag_add_file(diag, "s.yaml", text, strlen(text));
  fe_yaml_node *root = fe_yaml_load(arena, diag, "s.yaml", text, strlen(text));
  ck_assert_ptr_null(fe_parse_scalar(arena, diag, fe_yaml_get(root, "a")));
  ck_assert_str_eq(output(), "s.yaml:1:4: error: expected an expression, found a list\n"
                             "   1 | a: [x, y]\n"
                             "     |    ^\n");
}
END_TEST

/* ---- input types ---- */

static bool input_type(const char *text, fe_expr **dtype, fe_expr **dims) {
  fe_yaml_node *n = ir_arena_alloc(arena, sizeof *n);
  n->kind = FE_YAML_SCALAR;
  n->value = text;
  n->length = strlen(text);
  n->loc = (ir_loc){"e.txt", 1, 1};
  return fe_parse_input_type(arena, diag, n, dtype, dims);
}

START_TEST(input_types) {
  fe_expr *dtype, *dims;
  ck_assert(input_type("i32[B, T]", &dtype, &dims));
  ck_assert_str_eq(dtype->name, "i32");
  ck_assert_int_eq(dims->kind, FE_EXPR_LIST);
  ck_assert_int_eq(dims->num_args, 2);
  ck_assert(input_type("f32[]", &dtype, &dims));
  ck_assert_int_eq(dims->num_args, 0);
  ck_assert(input_type("bf16[B, T*2, D/H]", &dtype, &dims));
  ck_assert_int_eq(dims->args[1].value->kind, FE_EXPR_BINARY);
  ck_assert_str_eq(output(), "");
}
END_TEST

START_TEST(input_type_errors) {
  fe_expr *dtype, *dims;
  ck_assert(!input_type("f32", &dtype, &dims));
  ck_assert(!input_type("[B, T]", &dtype, &dims));
  ck_assert(!input_type("i32[B] x", &dtype, &dims));
  ck_assert(!input_type("i32(B)", &dtype, &dims));
  ck_assert(!input_type("i32[B,", &dtype, &dims));
  ck_assert(!input_type("", &dtype, &dims));
  ck_assert_ptr_null(dtype);
  ck_assert_str_eq(output(),
                   "e.txt:1:4: error: expected '[' after the dtype, found end of expression\n"
                   "e.txt:1:1: error: expected a dtype such as f32, found '['\n"
                   "e.txt:1:8: error: unexpected 'x' after the input type\n"
                   "e.txt:1:1: error: expected an input type such as i32[B, T]\n"
                   "e.txt:1:7: error: expected an expression, found end of expression\n"
                   "e.txt:1:1: error: expected a dtype such as f32, found end of expression\n");
}
END_TEST

static Suite *parse_suite(void) {
  Suite *s = suite_create("fe_parse");
  TCase *tc = tcase_create("structure");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, precedence);
  tcase_add_test(tc, left_associative);
  tcase_add_test(tc, locations);
  tcase_add_test(tc, calls_with_keywords);
  tcase_add_test(tc, lists);
  tcase_add_test(tc, strings);
  tcase_add_test(tc, negative_numbers);
  tcase_add_test(tc, format_canonical);
  tcase_add_test(tc, format_numbers);
  tcase_add_test(tc, input_types);
  suite_add_tcase(s, tc);
  TCase *errors = tcase_create("errors");
  tcase_add_checked_fixture(errors, setup, teardown);
  tcase_add_test(errors, unclosed_call);
  tcase_add_test(errors, unclosed_group);
  tcase_add_test(errors, unclosed_list);
  tcase_add_test(errors, missing_comma);
  tcase_add_test(errors, expected_expression);
  tcase_add_test(errors, trailing_comma);
  tcase_add_test(errors, operator_at_end);
  tcase_add_test(errors, lone_minus);
  tcase_add_test(errors, positional_after_keyword);
  tcase_add_test(errors, duplicate_keyword);
  tcase_add_test(errors, keyword_in_list);
  tcase_add_test(errors, keyword_needs_name);
  tcase_add_test(errors, extra_tokens);
  tcase_add_test(errors, assignment_is_not_an_expression);
  tcase_add_test(errors, unmatched_close);
  tcase_add_test(errors, call_of_group);
  tcase_add_test(errors, empty);
  tcase_add_test(errors, lexer_error_reported_once);
  tcase_add_test(errors, unterminated_string_once);
  tcase_add_test(errors, several_errors);
  tcase_add_test(errors, long_name_in_message);
  tcase_add_test(errors, too_deep);
  tcase_add_test(errors, very_deep_does_not_crash);
  tcase_add_test(errors, errors_through_yaml);
  tcase_add_test(errors, parse_scalar_rejects_collections);
  tcase_add_test(errors, input_type_errors);
  suite_add_tcase(s, errors);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(parse_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
