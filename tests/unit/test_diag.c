/* test_diag.c: the exact text of diagnostics, the error limit, suggestions. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/diag.h"

#include "diag_fixture.h"

static ir_loc at(const char *file, int line, int col) { return (ir_loc){file, line, col}; }

START_TEST(error_with_caret) {
  const char *text = "model: tiny\ngraph:\n  - attn: atention(ln1, heads=H)\n";
  diag_add_file(diag, "spec.yaml", text, strlen(text));
  diag_error(diag, at("spec.yaml", 3, 11), "unknown op '%s'; did you mean '%s'?", "atention",
             "attention");
  ck_assert_str_eq(output(),
                   "spec.yaml:3:11: error: unknown op 'atention'; did you mean 'attention'?\n"
                   "   3 |   - attn: atention(ln1, heads=H)\n"
                   "     |           ^\n");
  ck_assert_int_eq(diag_error_count(diag), 1);
}
END_TEST

START_TEST(warning_and_note) {
  const char *text = "a: 1\nb: 2\n";
  diag_add_file(diag, "f.yaml", text, strlen(text));
  diag_warning(diag, at("f.yaml", 2, 4), "odd value");
  diag_note(diag, at("f.yaml", 1, 1), "first defined here");
  ck_assert_str_eq(output(), "f.yaml:2:4: warning: odd value\n"
                             "   2 | b: 2\n"
                             "     |    ^\n"
                             "f.yaml:1:1: note: first defined here\n"
                             "   1 | a: 1\n"
                             "     | ^\n");
  ck_assert_int_eq(diag_error_count(diag), 0);
}
END_TEST

START_TEST(tabs_are_copied) {
  const char *text = "\tx:\t\tvalue\n";
  diag_add_file(diag, "t.yaml", text, strlen(text));
  diag_error(diag, at("t.yaml", 1, 6), "here");
  ck_assert_str_eq(output(), "t.yaml:1:6: error: here\n"
                             "   1 | \tx:\t\tvalue\n"
                             "     | \t  \t\t^\n");
}
END_TEST

START_TEST(utf8_counts_characters) {
  const char *text = "n\xC3\xA9: x $\n";
  diag_add_file(diag, "u.yaml", text, strlen(text));
  diag_error(diag, at("u.yaml", 1, 7), "bad");
  ck_assert_str_eq(output(), "u.yaml:1:7: error: bad\n"
                             "   1 | n\xC3\xA9: x $\n"
                             "     |       ^\n");
}
END_TEST

START_TEST(crlf_and_last_line_without_newline) {
  const char *text = "a: 1\r\nb: 2";
  diag_add_file(diag, "c.yaml", text, strlen(text));
  diag_error(diag, at("c.yaml", 1, 4), "one");
  diag_error(diag, at("c.yaml", 2, 5), "past the end");
  ck_assert_str_eq(output(), "c.yaml:1:4: error: one\n"
                             "   1 | a: 1\n"
                             "     |    ^\n"
                             "c.yaml:2:5: error: past the end\n"
                             "   2 | b: 2\n"
                             "     |     ^\n");
}
END_TEST

START_TEST(no_file_no_text_no_line) {
  const char *text = "only: line\n";
  diag_add_file(diag, "s.yaml", text, strlen(text));
  diag_error(diag, (ir_loc){0}, "cannot read '%s': %s", "x.yaml", "No such file or directory");
  diag_error(diag, at("other.yaml", 3, 2), "not registered");
  diag_error(diag, at("s.yaml", 7, 1), "line out of range");
  diag_error(diag, at("s.yaml", 0, 0), "no line");
  ck_assert_str_eq(output(), "modelc: error: cannot read 'x.yaml': No such file or directory\n"
                             "other.yaml:3:2: error: not registered\n"
                             "s.yaml:7:1: error: line out of range\n"
                             "s.yaml: error: no line\n");
}
END_TEST

START_TEST(message_is_one_line) {
  diag_error(diag, (ir_loc){0}, "unknown key '%s'", "a\nb\tc");
  ck_assert_str_eq(output(), "modelc: error: unknown key 'a b c'\n");
}
END_TEST

START_TEST(control_characters_in_source) {
  const char text[] = "a: \x01\x1b[31m x\n";
  diag_add_file(diag, "b.yaml", text, sizeof text - 1);
  diag_error(diag, at("b.yaml", 1, 4), "bad");
  ck_assert_str_eq(output(), "b.yaml:1:4: error: bad\n"
                             "   1 | a: ??[31m x\n"
                             "     |    ^\n");
}
END_TEST

START_TEST(wide_line_numbers) {
  char *text = ir_arena_alloc(arena, 20000 * 2 + 1);
  for (int i = 0; i < 20000; i++) text[2 * i] = 'x', text[2 * i + 1] = '\n';
  text[40000] = 0;
  diag_add_file(diag, "w.yaml", text, 40000);
  diag_error(diag, at("w.yaml", 12345, 1), "deep");
  ck_assert_str_eq(output(), "w.yaml:12345:1: error: deep\n"
                             "12345 | x\n"
                             "      | ^\n");
}
END_TEST

START_TEST(long_message) {
  char word[1001];
  memset(word, 'w', 1000);
  word[1000] = 0;
  diag_error(diag, (ir_loc){0}, "%s!", word);
  const char *s = output();
  ck_assert_uint_eq(strlen(s), strlen("modelc: error: ") + 1001 + 1);
  ck_assert_str_eq(s + strlen(s) - 3, "w!\n");
}
END_TEST

START_TEST(error_limit) {
  for (int i = 1; i <= 25; i++) {
    ck_assert(!diag_full(diag));
    diag_error(diag, (ir_loc){0}, "error %d", i);
    diag_note(diag, (ir_loc){0}, "note %d", i);
    if (i == DIAG_MAX_ERRORS) ck_assert(diag_full(diag));
    if (i == DIAG_MAX_ERRORS) break;
  }
  for (int i = 21; i <= 25; i++) {
    diag_error(diag, (ir_loc){0}, "error %d", i);
    diag_note(diag, (ir_loc){0}, "note %d", i);
  }
  diag_finish(diag);
  const char *s = output();
  ck_assert_ptr_nonnull(strstr(s, "modelc: error: error 20\nmodelc: note: note 20\n"));
  ck_assert_ptr_null(strstr(s, "error 21"));
  ck_assert_ptr_null(strstr(s, "note 21"));
  ck_assert_str_eq(strstr(s, "modelc: error: error 20"), "modelc: error: error 20\n"
                                                         "modelc: note: note 20\n"
                                                         "modelc: note: 5 more errors not shown\n");
  ck_assert_int_eq(diag_error_count(diag), 25);
  ck_assert(diag_full(diag));
}
END_TEST

START_TEST(finish_singular_and_silent) {
  diag_finish(diag);
  ck_assert_str_eq(output(), "");
  for (int i = 0; i < 21; i++) diag_error(diag, (ir_loc){0}, "e");
  diag_finish(diag);
  const char *s = output();
  ck_assert_str_eq(s + strlen(s) - strlen("modelc: note: 1 more error not shown\n"),
                   "modelc: note: 1 more error not shown\n");
}
END_TEST

START_TEST(warnings_do_not_count) {
  for (int i = 0; i < 30; i++) diag_warning(diag, (ir_loc){0}, "w");
  ck_assert_int_eq(diag_error_count(diag), 0);
  ck_assert(!diag_full(diag));
}
END_TEST

START_TEST(null_engine_is_harmless) {
  diag_error(NULL, (ir_loc){0}, "x");
  diag_note(NULL, (ir_loc){0}, "x");
  diag_finish(NULL);
  ck_assert_int_eq(diag_error_count(NULL), 0);
}
END_TEST

START_TEST(suggest) {
  const char *keys[] = {"model", "dims", "inputs", "blocks", "graph", "outputs", "train"};
  ck_assert_str_eq(diag_suggest("dim", keys, 7), "dims");
  ck_assert_str_eq(diag_suggest("grap", keys, 7), "graph");
  /* plain Levenshtein: a transposition costs 2, over the limit of 1 for 5 letters */
  ck_assert_ptr_null(diag_suggest("grpah", keys, 7));
  ck_assert_str_eq(diag_suggest("output", keys, 7), "outputs");
  ck_assert_str_eq(diag_suggest("Model", keys, 7), "model");
  ck_assert_ptr_null(diag_suggest("foo", keys, 7));
  ck_assert_ptr_null(diag_suggest("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", keys, 7));
  ck_assert_ptr_null(diag_suggest("x", keys, 0));
  ck_assert_ptr_null(diag_suggest(NULL, keys, 7));
}
END_TEST

START_TEST(suggest_threshold_and_ties) {
  const char *ops[] = {"attention", "relu", "gelu", "silu"};
  /* len 8: up to distance 2 */
  ck_assert_str_eq(diag_suggest("atention", ops, 4), "attention");
  ck_assert_str_eq(diag_suggest("attentoin", ops, 4), "attention");
  ck_assert_ptr_null(diag_suggest("atentxyz", ops, 4));
  /* relu, gelu and silu are all one edit from "xelu" or "selu": a tie */
  ck_assert_ptr_null(diag_suggest("xelu", ops, 4));
  /* len 4: distance 1 */
  ck_assert_str_eq(diag_suggest("rel", ops, 4), "relu");
  const char *dup[] = {"heads", "heads"};
  ck_assert_str_eq(diag_suggest("head", dup, 2), "heads");
  /* one letter for another is no typo; a different case is */
  const char *short_names[] = {"B", "T"};
  ck_assert_str_eq(diag_suggest("b", short_names, 2), "B");
  ck_assert_ptr_null(diag_suggest("x", short_names, 2));
  const char *both_cases[] = {"b", "B"};
  ck_assert_ptr_null(diag_suggest("x", both_cases, 2));
  const char *other_names[] = {"B", "DD"};
  ck_assert_str_eq(diag_suggest("b", other_names, 2), "B");
}
END_TEST

static Suite *diag_suite(void) {
  Suite *s = suite_create("diag");
  TCase *tc = tcase_create("format");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, error_with_caret);
  tcase_add_test(tc, warning_and_note);
  tcase_add_test(tc, tabs_are_copied);
  tcase_add_test(tc, utf8_counts_characters);
  tcase_add_test(tc, crlf_and_last_line_without_newline);
  tcase_add_test(tc, no_file_no_text_no_line);
  tcase_add_test(tc, message_is_one_line);
  tcase_add_test(tc, control_characters_in_source);
  tcase_add_test(tc, wide_line_numbers);
  tcase_add_test(tc, long_message);
  suite_add_tcase(s, tc);
  TCase *limit = tcase_create("limit");
  tcase_add_checked_fixture(limit, setup, teardown);
  tcase_add_test(limit, error_limit);
  tcase_add_test(limit, finish_singular_and_silent);
  tcase_add_test(limit, warnings_do_not_count);
  tcase_add_test(limit, null_engine_is_harmless);
  suite_add_tcase(s, limit);
  TCase *sug = tcase_create("suggest");
  tcase_add_test(sug, suggest);
  tcase_add_test(sug, suggest_threshold_and_ties);
  suite_add_tcase(s, sug);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(diag_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
