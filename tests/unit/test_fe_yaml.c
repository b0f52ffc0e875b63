/* test_fe_yaml.c: the located YAML tree, offsets inside scalars, and YAML
 * errors; garbage input must never crash. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/fe.h"

#include "diag_fixture.h"

static fe_yaml_node *load_n(const char *text, size_t n) {
  diag_add_file(diag, "s.yaml", text, n);
  return fe_yaml_load(arena, diag, "s.yaml", text, n);
}

static fe_yaml_node *load(const char *text) { return load_n(text, strlen(text)); }

static void assert_loc(ir_loc loc, int line, int col) {
  ck_assert_msg(loc.line == line && loc.col == col, "expected %d:%d, got %d:%d", line, col,
                loc.line, loc.col);
}

/* The position of the first occurrence of needle in a scalar's value. */
static ir_loc loc_of(const fe_yaml_node *scalar, const char *needle) {
  const char *hit = strstr(scalar->value, needle);
  ck_assert_msg(hit != NULL, "'%s' not in '%s'", needle, scalar->value);
  return fe_yaml_offset_loc(scalar, (size_t)(hit - scalar->value));
}

/* ---- the tree ---- */

START_TEST(node_locations) {
  fe_yaml_node *root = load("# comment\n"
                            "model: tiny\n"
                            "dims:\n"
                            "  B: 8\n"
                            "outputs: [a, 'b']\n"
                            "graph:\n"
                            "  - x: relu(y)\n"
                            "  -   z: \"w\"\n");
  ck_assert_ptr_nonnull(root);
  ck_assert_int_eq(root->kind, FE_YAML_MAPPING);
  ck_assert_int_eq(root->count, 4);
  assert_loc(root->loc, 2, 1);
  assert_loc(root->keys[0]->loc, 2, 1);
  ck_assert_str_eq(root->keys[0]->value, "model");
  assert_loc(root->values[0]->loc, 2, 8);
  fe_yaml_node *dims = fe_yaml_get(root, "dims");
  ck_assert_int_eq(dims->kind, FE_YAML_MAPPING);
  assert_loc(dims->loc, 4, 3);
  assert_loc(dims->values[0]->loc, 4, 6);
  ck_assert_str_eq(dims->values[0]->value, "8");
  ck_assert_int_eq(dims->values[0]->style, FE_YAML_PLAIN);
  fe_yaml_node *outputs = fe_yaml_get(root, "outputs");
  ck_assert_int_eq(outputs->kind, FE_YAML_SEQUENCE);
  ck_assert_int_eq(outputs->count, 2);
  assert_loc(outputs->loc, 5, 10);
  assert_loc(outputs->items[1]->loc, 5, 14);
  ck_assert_int_eq(outputs->items[1]->style, FE_YAML_SINGLE_QUOTED);
  fe_yaml_node *graph = fe_yaml_get(root, "graph");
  assert_loc(graph->loc, 7, 3);
  assert_loc(graph->items[0]->loc, 7, 5);
  assert_loc(graph->items[0]->values[0]->loc, 7, 8);
  assert_loc(graph->items[1]->loc, 8, 7);
  assert_loc(graph->items[1]->values[0]->loc, 8, 10);
  ck_assert_int_eq(graph->items[1]->values[0]->style, FE_YAML_DOUBLE_QUOTED);
  ck_assert_str_eq(output(), "");
}
END_TEST

START_TEST(get) {
  fe_yaml_node *root = load("a: 1\nb: [2]\n");
  ck_assert_str_eq(fe_yaml_get(root, "a")->value, "1");
  ck_assert_int_eq(fe_yaml_get(root, "b")->kind, FE_YAML_SEQUENCE);
  ck_assert_ptr_null(fe_yaml_get(root, "c"));
  ck_assert_ptr_null(fe_yaml_get(root, "a1"));
  ck_assert_ptr_null(fe_yaml_get(fe_yaml_get(root, "a"), "a"));
  ck_assert_ptr_null(fe_yaml_get(NULL, "a"));
}
END_TEST

START_TEST(null_values_and_styles) {
  fe_yaml_node *root = load("a:\nb: |\n  x\n  y\nc: >\n  x\n  y\nd: ''\n");
  fe_yaml_node *a = fe_yaml_get(root, "a");
  ck_assert_int_eq(a->kind, FE_YAML_SCALAR);
  ck_assert_uint_eq(a->length, 0);
  ck_assert_str_eq(a->value, "");
  ck_assert_int_eq(fe_yaml_get(root, "b")->style, FE_YAML_LITERAL);
  ck_assert_str_eq(fe_yaml_get(root, "b")->value, "x\ny\n");
  ck_assert_int_eq(fe_yaml_get(root, "c")->style, FE_YAML_FOLDED);
  ck_assert_str_eq(fe_yaml_get(root, "c")->value, "x y\n");
  ck_assert_int_eq(fe_yaml_get(root, "d")->style, FE_YAML_SINGLE_QUOTED);
}
END_TEST

START_TEST(crlf_and_bom) {
  fe_yaml_node *root = load("\xEF\xBB\xBF"
                            "a: 1\r\nb: x + y\r\n");
  ck_assert_ptr_nonnull(root);
  assert_loc(root->keys[0]->loc, 1, 1);
  fe_yaml_node *b = fe_yaml_get(root, "b");
  assert_loc(b->loc, 2, 4);
  assert_loc(loc_of(b, "y"), 2, 8);
}
END_TEST

START_TEST(embedded_nul_in_double_quotes) {
  fe_yaml_node *root = load("a: \"x\\0y\"\n");
  fe_yaml_node *a = fe_yaml_get(root, "a");
  ck_assert_uint_eq(a->length, 3);
  ck_assert(memcmp(a->value, "x\0y", 3) == 0);
}
END_TEST

/* ---- offsets inside scalars ---- */

START_TEST(offset_plain) {
  fe_yaml_node *root = load("graph:\n  - attn: attention(ln1, heads=H)\n");
  fe_yaml_node *v = fe_yaml_get(root, "graph")->items[0]->values[0];
  assert_loc(fe_yaml_offset_loc(v, 0), 2, 11);
  assert_loc(loc_of(v, "heads"), 2, 26);
  assert_loc(fe_yaml_offset_loc(v, v->length), 2, 11 + (int)v->length);
  assert_loc(fe_yaml_offset_loc(v, 1000), 2, 11 + (int)v->length);
}
END_TEST

START_TEST(offset_utf8) {
  fe_yaml_node *root = load("\xC3\xA9t\xC3\xA9: f(\xC3\xA9, $)\n");
  fe_yaml_node *v = root->values[0];
  assert_loc(v->loc, 1, 6);
  assert_loc(loc_of(v, "$"), 1, 11);
}
END_TEST

START_TEST(offset_single_quoted) {
  fe_yaml_node *root = load("a: 'f(x, name=''p'') $'\n");
  fe_yaml_node *v = fe_yaml_get(root, "a");
  ck_assert_str_eq(v->value, "f(x, name='p') $");
  assert_loc(v->loc, 1, 4);
  assert_loc(fe_yaml_offset_loc(v, 0), 1, 5);
  assert_loc(loc_of(v, "p"), 1, 17);
  assert_loc(loc_of(v, "$"), 1, 22);
}
END_TEST

START_TEST(offset_double_quoted) {
  fe_yaml_node *root = load("a: \"f(\\\"x\\\", \\t\\u00e9 \\x41 $)\"\n");
  fe_yaml_node *v = fe_yaml_get(root, "a");
  ck_assert_str_eq(v->value, "f(\"x\", \t\xC3\xA9 A $)");
  assert_loc(fe_yaml_offset_loc(v, 0), 1, 5);
  assert_loc(loc_of(v, "x"), 1, 9);
  assert_loc(loc_of(v, "\t"), 1, 14);
  assert_loc(loc_of(v, "\xC3\xA9"), 1, 16);
  assert_loc(loc_of(v, "A"), 1, 23);
  assert_loc(loc_of(v, "$"), 1, 28);
}
END_TEST

START_TEST(offset_multiline_plain) {
  const char *text = "graph:\n"
                     "  - attn: attention(x, heads=4,   \n"
                     "      causal=yes,\n"
                     "\n"
                     "         window=2 $)\n";
  fe_yaml_node *root = load(text);
  fe_yaml_node *v = fe_yaml_get(root, "graph")->items[0]->values[0];
  ck_assert_str_eq(v->value, "attention(x, heads=4, causal=yes,\nwindow=2 $)");
  assert_loc(loc_of(v, "heads"), 2, 24);
  assert_loc(loc_of(v, "causal"), 3, 7);
  assert_loc(loc_of(v, "yes"), 3, 14);
  assert_loc(loc_of(v, "window"), 5, 10);
  assert_loc(loc_of(v, "$"), 5, 19);
  /* the space that stands for the fold points at the end of the line */
  assert_loc(loc_of(v, " causal"), 2, 32);
}
END_TEST

START_TEST(offset_multiline_quoted) {
  const char *text = "a: \"f(x,\n"
                     "    y) \\\n"
                     "    + $\"\n"
                     "b: 'g(a,\n"
                     "\n"
                     "  b'\n";
  fe_yaml_node *root = load(text);
  fe_yaml_node *a = fe_yaml_get(root, "a");
  ck_assert_str_eq(a->value, "f(x, y) + $");
  assert_loc(loc_of(a, "y"), 2, 5);
  assert_loc(loc_of(a, "+"), 3, 5);
  assert_loc(loc_of(a, "$"), 3, 7);
  fe_yaml_node *b = fe_yaml_get(root, "b");
  ck_assert_str_eq(b->value, "g(a,\nb");
  assert_loc(loc_of(b, "b"), 6, 3);
}
END_TEST

START_TEST(offset_block_scalars) {
  const char *text = "a: |\n"
                     "  f(x,\n"
                     "    y) $\n"
                     "b: >-\n"
                     "  g(x,\n"
                     "  y)\n"
                     "\n"
                     "  z $\n";
  fe_yaml_node *root = load(text);
  fe_yaml_node *a = fe_yaml_get(root, "a");
  ck_assert_str_eq(a->value, "f(x,\n  y) $\n");
  assert_loc(loc_of(a, "f"), 2, 3);
  assert_loc(loc_of(a, "y"), 3, 5);
  assert_loc(loc_of(a, "$"), 3, 8);
  fe_yaml_node *b = fe_yaml_get(root, "b");
  ck_assert_str_eq(b->value, "g(x, y)\nz $");
  assert_loc(loc_of(b, "y"), 6, 3);
  assert_loc(loc_of(b, "z"), 8, 3);
  assert_loc(loc_of(b, "$"), 8, 5);
}
END_TEST

START_TEST(offset_without_source) {
  fe_yaml_node n = {.kind = FE_YAML_SCALAR, .value = "a + b", .length = 5, .loc = {"x.yaml", 3, 7}};
  assert_loc(fe_yaml_offset_loc(&n, 4), 3, 11);
  fe_yaml_node m = {.kind = FE_YAML_MAPPING, .loc = {"x.yaml", 2, 2}};
  assert_loc(fe_yaml_offset_loc(&m, 4), 2, 2);
}
END_TEST

/* ---- errors ---- */

START_TEST(duplicate_key) {
  ck_assert_ptr_null(load("model: a\ndims:\n  B: 1\n  B: 2\nmodel: b\n"));
  ck_assert_str_eq(output(), "s.yaml:4:3: error: duplicate key 'B'\n"
                             "   4 |   B: 2\n"
                             "     |   ^\n"
                             "s.yaml:3:3: note: first defined here\n"
                             "   3 |   B: 1\n"
                             "     |   ^\n"
                             "s.yaml:5:1: error: duplicate key 'model'\n"
                             "   5 | model: b\n"
                             "     | ^\n"
                             "s.yaml:1:1: note: first defined here\n"
                             "   1 | model: a\n"
                             "     | ^\n");
}
END_TEST

START_TEST(duplicate_key_quoted) {
  ck_assert_ptr_null(load("{a: 1, 'a': 2}"));
  ck_assert_str_eq(output(), "s.yaml:1:8: error: duplicate key 'a'\n"
                             "   1 | {a: 1, 'a': 2}\n"
                             "     |        ^\n"
                             "s.yaml:1:2: note: first defined here\n"
                             "   1 | {a: 1, 'a': 2}\n"
                             "     |  ^\n");
}
END_TEST

START_TEST(anchors_and_aliases) {
  ck_assert_ptr_null(load("a: &x 1\nb: *x\n"));
  ck_assert_str_eq(output(), "s.yaml:1:4: error: YAML anchors and aliases are not supported\n"
                             "   1 | a: &x 1\n"
                             "     |    ^\n"
                             "s.yaml:2:4: error: YAML anchors and aliases are not supported\n"
                             "   2 | b: *x\n"
                             "     |    ^\n");
}
END_TEST

START_TEST(tags) {
  ck_assert_ptr_null(load("a: !!str 1\nb: !foo [1]\n"));
  ck_assert_str_eq(output(), "s.yaml:1:4: error: YAML tags are not supported\n"
                             "   1 | a: !!str 1\n"
                             "     |    ^\n"
                             "s.yaml:2:4: error: YAML tags are not supported\n"
                             "   2 | b: !foo [1]\n"
                             "     |    ^\n");
}
END_TEST

START_TEST(complex_keys) {
  ck_assert_ptr_null(load("? [a, b]\n: 1\n{x: 1}: 2\n"));
  ck_assert_str_eq(output(), "s.yaml:1:3: error: YAML mapping keys must be scalars\n"
                             "   1 | ? [a, b]\n"
                             "     |   ^\n"
                             "s.yaml:3:1: error: YAML mapping keys must be scalars\n"
                             "   3 | {x: 1}: 2\n"
                             "     | ^\n");
}
END_TEST

START_TEST(multiple_documents) {
  ck_assert_ptr_null(load("a: 1\n---\nb: 2\n"));
  ck_assert_str_eq(output(), "s.yaml:2:1: error: a spec must be a single YAML document\n"
                             "   2 | ---\n"
                             "     | ^\n");
}
END_TEST

START_TEST(empty_documents) {
  const char *empty = "empty spec: expected a mapping with model, dims, inputs, graph, ...";
  ck_assert_ptr_null(load(""));
  ck_assert_ptr_null(load("# only a comment\n"));
  ck_assert_ptr_null(load("---\n"));
  char *want = ir_arena_printf(arena,
                               "s.yaml:1:1: error: %s\n"
                               "s.yaml:1:1: error: %s\n"
                               "   1 | # only a comment\n"
                               "     | ^\n"
                               "s.yaml:1:1: error: %s\n"
                               "   1 | ---\n"
                               "     | ^\n",
                               empty, empty, empty);
  ck_assert_str_eq(output(), want);
}
END_TEST

START_TEST(scalar_document_is_a_tree) {
  fe_yaml_node *root = load("hello\n");
  ck_assert_ptr_nonnull(root);
  ck_assert_int_eq(root->kind, FE_YAML_SCALAR);
}
END_TEST

START_TEST(syntax_error) {
  ck_assert_ptr_null(load("graph:\n  - y: linear(x, D)\n   - z: relu(y)\n"));
  ck_assert_str_eq(output(),
                   "s.yaml:3:4: error: YAML: did not find expected '-' indicator (while parsing "
                   "a block collection)\n"
                   "   3 |    - z: relu(y)\n"
                   "     |    ^\n"
                   "s.yaml:2:3: note: the block collection started here\n"
                   "   2 |   - y: linear(x, D)\n"
                   "     |   ^\n");
}
END_TEST

START_TEST(colon_in_plain_scalar) {
  ck_assert_ptr_null(load("graph:\n  - y: f(a: 1)\n"));
  ck_assert_str_eq(output(),
                   "s.yaml:2:11: error: YAML: mapping values are not allowed in this context\n"
                   "   2 |   - y: f(a: 1)\n"
                   "     |           ^\n");
}
END_TEST

START_TEST(unclosed_quote) {
  ck_assert_ptr_null(load("a: \"abc\nb: 1\n"));
  ck_assert_str_eq(output(),
                   "s.yaml:3:1: error: YAML: found unexpected end of stream (while scanning a "
                   "quoted scalar)\n"
                   "s.yaml:1:4: note: the quoted scalar started here\n"
                   "   1 | a: \"abc\n"
                   "     |    ^\n");
}
END_TEST

START_TEST(invalid_utf8) {
  ck_assert_ptr_null(load("a: 1\nb: x\xFFy\n"));
  ck_assert_str_eq(output(), "s.yaml:2:5: error: YAML: invalid leading UTF-8 octet\n"
                             "   2 | b: x\xFFy\n"
                             "     |     ^\n");
}
END_TEST

START_TEST(nul_byte) {
  const char text[] = "a: 1\nb: x\0y\n";
  ck_assert_ptr_null(load_n(text, sizeof text - 1));
  ck_assert_str_eq(output(), "s.yaml:2:5: error: YAML: control characters are not allowed\n"
                             "   2 | b: x?y\n"
                             "     |     ^\n");
}
END_TEST

START_TEST(too_deep) {
  size_t n = 100000;
  char *text = ir_arena_alloc(arena, n + 1);
  memset(text, '[', n);
  ck_assert_ptr_null(load_n(text, n));
  ck_assert_int_eq(diag_error_count(diag), 1);
  ck_assert_ptr_nonnull(strstr(output(), "s.yaml:1:65: error: YAML nesting is too deep\n"));
}
END_TEST

/* xorshift: the same garbage on every run */
static uint64_t rng = 88172645463325252ull;
static uint64_t next_random(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

START_TEST(garbage_does_not_crash) {
  static const char alphabet[] = "ab:- \n\t[]{},'\"&*!|>#%@?\\\r\x00\xC3\xA9\xFF";
  for (int round = 0; round < 3000; round++) {
    size_t n = next_random() % 80;
    char *text = ir_arena_alloc(arena, n + 1);
    for (size_t i = 0; i < n; i++)
      text[i] =
          round % 3 == 0 ? (char)next_random() : alphabet[next_random() % (sizeof alphabet - 1)];
    fe_yaml_node *root = load_n(text, n);
    if (root && root->kind == FE_YAML_SCALAR) {
      for (size_t k = 0; k <= root->length + 1; k++) fe_yaml_offset_loc(root, k);
    }
    if (round % 100 == 99) { /* keep the captured output small */
      teardown();
      setup();
    }
  }
}
END_TEST

START_TEST(garbage_offsets_do_not_crash) {
  /* every scalar of many small valid documents, every offset */
  static const char *const docs[] = {
      "a: \"\\x\\u12\\U0010FFFF\\\n  \\N\\_\\L\\P \\\\\"\n",
      "a: 'x''\n\n\n  ''y'\n",
      "a: |2-\n   x\n\n  y\n",
      "a: >+\n\n  x\n   y\n  z\n\n",
      "- a\n  b\n\n  c\n",
      "a: \"\t \n\t\n x\"\n",
  };
  for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
    fe_yaml_node *root = load(docs[i]);
    if (!root) continue;
    fe_yaml_node *v = root->kind == FE_YAML_MAPPING ? root->values[0] : root->items[0];
    for (size_t k = 0; k <= v->length + 2; k++) {
      ir_loc loc = fe_yaml_offset_loc(v, k);
      ck_assert_int_ge(loc.line, 1);
      ck_assert_int_ge(loc.col, 1);
    }
  }
}
END_TEST

static Suite *yaml_suite(void) {
  Suite *s = suite_create("fe_yaml");
  TCase *tc = tcase_create("tree");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, node_locations);
  tcase_add_test(tc, get);
  tcase_add_test(tc, null_values_and_styles);
  tcase_add_test(tc, crlf_and_bom);
  tcase_add_test(tc, embedded_nul_in_double_quotes);
  tcase_add_test(tc, scalar_document_is_a_tree);
  suite_add_tcase(s, tc);
  TCase *off = tcase_create("offsets");
  tcase_add_checked_fixture(off, setup, teardown);
  tcase_add_test(off, offset_plain);
  tcase_add_test(off, offset_utf8);
  tcase_add_test(off, offset_single_quoted);
  tcase_add_test(off, offset_double_quoted);
  tcase_add_test(off, offset_multiline_plain);
  tcase_add_test(off, offset_multiline_quoted);
  tcase_add_test(off, offset_block_scalars);
  tcase_add_test(off, offset_without_source);
  suite_add_tcase(s, off);
  TCase *errors = tcase_create("errors");
  tcase_add_checked_fixture(errors, setup, teardown);
  tcase_add_test(errors, duplicate_key);
  tcase_add_test(errors, duplicate_key_quoted);
  tcase_add_test(errors, anchors_and_aliases);
  tcase_add_test(errors, tags);
  tcase_add_test(errors, complex_keys);
  tcase_add_test(errors, multiple_documents);
  tcase_add_test(errors, empty_documents);
  tcase_add_test(errors, syntax_error);
  tcase_add_test(errors, colon_in_plain_scalar);
  tcase_add_test(errors, unclosed_quote);
  tcase_add_test(errors, invalid_utf8);
  tcase_add_test(errors, nul_byte);
  tcase_add_test(errors, too_deep);
  suite_add_tcase(s, errors);
  TCase *garbage = tcase_create("garbage");
  tcase_add_checked_fixture(garbage, setup, teardown);
  tcase_set_timeout(garbage, 60);
  tcase_add_test(garbage, garbage_does_not_crash);
  tcase_add_test(garbage, garbage_offsets_do_not_crash);
  suite_add_tcase(s, garbage);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(yaml_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
