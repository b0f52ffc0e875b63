/* test_fe_lex.c: tokens of the expression language and lexer errors. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/fe.h"

#include "diag_fixture.h"
static fe_lexer lx;

/* Lexes text (no YAML node: positions count from column 1 of e.txt). */
static void lex(const char *text) {
  fe_lexer_init(&lx, diag, text, strlen(text), NULL, (ir_loc){"e.txt", 1, 1});
}

static fe_token next(void) { return fe_lex_next(&lx); }

static void expect_punct(char c) {
  fe_token t = next();
  ck_assert_int_eq(t.kind, FE_TOK_PUNCT);
  ck_assert_int_eq(t.punct, c);
}

static void expect_name(const char *name) {
  fe_token t = next();
  ck_assert_int_eq(t.kind, FE_TOK_NAME);
  ck_assert_uint_eq(t.length, strlen(name));
  ck_assert(memcmp(lx.text + t.offset, name, t.length) == 0);
}

START_TEST(punctuation_and_names) {
  lex("attention(ln1, heads=H) + x_2 - y*z/w@v [a]");
  expect_name("attention");
  expect_punct('(');
  expect_name("ln1");
  expect_punct(',');
  expect_name("heads");
  expect_punct('=');
  expect_name("H");
  expect_punct(')');
  expect_punct('+');
  expect_name("x_2");
  expect_punct('-');
  expect_name("y");
  expect_punct('*');
  expect_name("z");
  expect_punct('/');
  expect_name("w");
  expect_punct('@');
  expect_name("v");
  expect_punct('[');
  expect_name("a");
  expect_punct(']');
  ck_assert_int_eq(next().kind, FE_TOK_EOF);
  ck_assert_int_eq(next().kind, FE_TOK_EOF);
  ck_assert_str_eq(output(), "");
}
END_TEST

START_TEST(offsets) {
  lex("  ab\t+\n _c");
  fe_token t = next();
  ck_assert_uint_eq(t.offset, 2);
  ck_assert_uint_eq(t.length, 2);
  t = next();
  ck_assert_uint_eq(t.offset, 5);
  t = next();
  ck_assert_uint_eq(t.offset, 8);
  ck_assert_uint_eq(t.length, 2);
  t = next();
  ck_assert_int_eq(t.kind, FE_TOK_EOF);
  ck_assert_uint_eq(t.offset, 10);
}
END_TEST

START_TEST(integers) {
  lex("0 123 9223372036854775807");
  fe_token t = next();
  ck_assert_int_eq(t.kind, FE_TOK_NUMBER);
  ck_assert(t.is_integer);
  ck_assert_int_eq(t.int_value, 0);
  t = next();
  ck_assert(t.is_integer);
  ck_assert_int_eq(t.int_value, 123);
  ck_assert(t.number == 123.0);
  t = next();
  ck_assert(t.is_integer);
  ck_assert_int_eq(t.int_value, INT64_MAX);
  ck_assert_str_eq(output(), "");
}
END_TEST

START_TEST(reals) {
  lex("1.5 3e-4 1e-8 1E+8 0.1 1. 2.5e3");
  double want[] = {1.5, 3e-4, 1e-8, 1e8, 0.1, 1.0, 2.5e3};
  for (int i = 0; i < 7; i++) {
    fe_token t = next();
    ck_assert_int_eq(t.kind, FE_TOK_NUMBER);
    ck_assert(!t.is_integer);
    ck_assert(t.number == want[i]);
  }
  ck_assert_int_eq(next().kind, FE_TOK_EOF);
  ck_assert_str_eq(output(), "");
}
END_TEST

START_TEST(minus_is_separate) {
  lex("-3");
  expect_punct('-');
  fe_token t = next();
  ck_assert_int_eq(t.int_value, 3);
}
END_TEST

START_TEST(integer_too_large) {
  lex("x + 9223372036854775808");
  next();
  next();
  ck_assert_int_eq(next().kind, FE_TOK_ERROR);
  ck_assert_str_eq(output(), "e.txt:1:5: error: integer '9223372036854775808' is too large\n");
}
END_TEST

START_TEST(real_out_of_range) {
  lex("1e999");
  ck_assert_int_eq(next().kind, FE_TOK_ERROR);
  ck_assert_str_eq(output(), "e.txt:1:1: error: number '1e999' is out of range\n");
}
END_TEST

START_TEST(malformed_numbers) {
  lex("3x 1e 1.2.3 .5");
  fe_token t = next();
  ck_assert_int_eq(t.kind, FE_TOK_ERROR);
  ck_assert_uint_eq(t.length, 2);
  ck_assert_int_eq(next().kind, FE_TOK_ERROR);
  ck_assert_int_eq(next().kind, FE_TOK_ERROR);
  ck_assert_int_eq(next().kind, FE_TOK_ERROR);
  ck_assert_int_eq(next().kind, FE_TOK_EOF);
  ck_assert_str_eq(output(), "e.txt:1:1: error: malformed number '3x'\n"
                             "e.txt:1:4: error: malformed number '1e'\n"
                             "e.txt:1:7: error: malformed number '1.2.3'\n"
                             "e.txt:1:13: error: malformed number '.5'; write 0.5\n");
}
END_TEST

START_TEST(strings) {
  lex("\"gelu\" 'a \"b\"' \"\"");
  fe_token t = next();
  ck_assert_int_eq(t.kind, FE_TOK_STRING);
  ck_assert_uint_eq(t.offset, 0);
  ck_assert_uint_eq(t.length, 6);
  t = next();
  ck_assert_int_eq(t.kind, FE_TOK_STRING);
  ck_assert_uint_eq(t.length, 7);
  t = next();
  ck_assert_int_eq(t.kind, FE_TOK_STRING);
  ck_assert_uint_eq(t.length, 2);
  ck_assert_int_eq(next().kind, FE_TOK_EOF);
}
END_TEST

START_TEST(unterminated_string) {
  lex("f(name=\"abc)");
  next();
  next();
  next();
  next();
  ck_assert_int_eq(next().kind, FE_TOK_ERROR);
  ck_assert_int_eq(next().kind, FE_TOK_EOF);
  ck_assert_str_eq(output(), "e.txt:1:8: error: unterminated string\n");
}
END_TEST

START_TEST(bad_characters) {
  lex("x $ y ; a:b \xC3\xA9 \xFF \x01 .");
  expect_name("x");
  ck_assert_int_eq(next().kind, FE_TOK_ERROR);
  expect_name("y");
  ck_assert_int_eq(next().kind, FE_TOK_ERROR);
  expect_name("a");
  ck_assert_int_eq(next().kind, FE_TOK_ERROR);
  expect_name("b");
  fe_token t = next();
  ck_assert_int_eq(t.kind, FE_TOK_ERROR);
  ck_assert_uint_eq(t.length, 2);
  ck_assert_int_eq(next().kind, FE_TOK_ERROR);
  ck_assert_int_eq(next().kind, FE_TOK_ERROR);
  ck_assert_int_eq(next().kind, FE_TOK_ERROR);
  ck_assert_int_eq(next().kind, FE_TOK_EOF);
  ck_assert_str_eq(output(),
                   "e.txt:1:3: error: unexpected character '$'\n"
                   "e.txt:1:7: error: unexpected character ';'\n"
                   "e.txt:1:10: error: unexpected character ':'; keyword arguments are written "
                   "name=value\n"
                   "e.txt:1:13: error: unexpected character U+00E9\n"
                   "e.txt:1:15: error: unexpected byte 0xFF\n"
                   "e.txt:1:17: error: unexpected byte 0x01\n"
                   "e.txt:1:19: error: unexpected character '.'\n");
}
END_TEST

START_TEST(embedded_nul) {
  const char text[] = "a\0b";
  fe_lexer_init(&lx, diag, text, 3, NULL, (ir_loc){"e.txt", 2, 5});
  expect_name("a");
  ck_assert_int_eq(next().kind, FE_TOK_ERROR);
  expect_name("b");
  ck_assert_int_eq(next().kind, FE_TOK_EOF);
  ck_assert_str_eq(output(), "e.txt:2:6: error: unexpected byte 0x00\n");
}
END_TEST

START_TEST(truncated_text) {
  /* the length bounds the lexer, not a terminator */
  const char *text = "abc(def";
  fe_lexer_init(&lx, diag, text, 2, NULL, (ir_loc){"e.txt", 1, 1});
  expect_name("ab");
  ck_assert_int_eq(next().kind, FE_TOK_EOF);
  fe_lexer_init(&lx, diag, "12345", 2, NULL, (ir_loc){"e.txt", 1, 1});
  fe_token t = next();
  ck_assert_int_eq(t.int_value, 12);
  fe_lexer_init(&lx, diag, "1.5e10", 3, NULL, (ir_loc){"e.txt", 1, 1});
  t = next();
  ck_assert(t.number == 1.5);
  fe_lexer_init(&lx, diag, "'ab'", 3, NULL, (ir_loc){"e.txt", 1, 1});
  ck_assert_int_eq(next().kind, FE_TOK_ERROR);
}
END_TEST

START_TEST(loc_without_origin) {
  lex("ab\xC3\xA9 cd");
  ir_loc loc = fe_lexer_loc(&lx, 5);
  ck_assert_str_eq(loc.file, "e.txt");
  ck_assert_int_eq(loc.line, 1);
  ck_assert_int_eq(loc.col, 5); /* a b é space: 4 characters before */
  loc = fe_lexer_loc(&lx, 100);
  ck_assert_int_eq(loc.col, 7);
}
END_TEST

START_TEST(loc_through_yaml_node) {
  const char *text = "k: \"  a $\"\n";
  fe_yaml_node *root = fe_yaml_load(arena, diag, "q.yaml", text, strlen(text));
  ck_assert_ptr_nonnull(root);
  fe_yaml_node *v = fe_yaml_get(root, "k");
  fe_lexer_init(&lx, diag, v->value, v->length, v, v->loc);
  expect_name("a");
  ck_assert_int_eq(next().kind, FE_TOK_ERROR);
  ck_assert_str_eq(output(), "q.yaml:1:9: error: unexpected character '$'\n");
}
END_TEST

static Suite *lex_suite(void) {
  Suite *s = suite_create("fe_lex");
  TCase *tc = tcase_create("tokens");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, punctuation_and_names);
  tcase_add_test(tc, offsets);
  tcase_add_test(tc, integers);
  tcase_add_test(tc, reals);
  tcase_add_test(tc, minus_is_separate);
  tcase_add_test(tc, strings);
  tcase_add_test(tc, truncated_text);
  suite_add_tcase(s, tc);
  TCase *errors = tcase_create("errors");
  tcase_add_checked_fixture(errors, setup, teardown);
  tcase_add_test(errors, integer_too_large);
  tcase_add_test(errors, real_out_of_range);
  tcase_add_test(errors, malformed_numbers);
  tcase_add_test(errors, unterminated_string);
  tcase_add_test(errors, bad_characters);
  tcase_add_test(errors, embedded_nul);
  suite_add_tcase(s, errors);
  TCase *locs = tcase_create("locations");
  tcase_add_checked_fixture(locs, setup, teardown);
  tcase_add_test(locs, loc_without_origin);
  tcase_add_test(locs, loc_through_yaml_node);
  suite_add_tcase(s, locs);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(lex_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
