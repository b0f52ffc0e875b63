/* test_ir_text.c: the IR text form. print -> parse -> print is the
 * identity; parse errors are "line:col: message"; garbage never crashes
 * the parser. */
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

static ir_arena *arena;
static ir_graph *g;
static char err[IR_ERR_LEN];

static void setup(void) {
  arena = ir_arena_new();
  g = ir_graph_new(arena, "gpt_mini");
  err[0] = 0;
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

static ir_value *src(ir_op op, ir_type t, const char *name) {
  return ir_source_new(g, op, t, name)->results[0];
}

static ir_node *op(ir_op o, const char *name, int n, ...) {
  ir_value *in[8];
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < n; i++) in[i] = va_arg(ap, ir_value *);
  va_end(ap);
  return ir_node_new(g, o, n, in, name);
}

static void infer(ir_node *n) {
  char msg[IR_ERR_LEN];
  ck_assert_msg(ir_node_infer(n, msg, sizeof msg), "%s", msg);
}

/* print, parse, print again: the same text; returns the first print. */
static const char *round_trip(const ir_graph *graph) {
  const char *text = ir_print_to_string(arena, graph);
  ir_graph *back = ir_parse(arena, text, "rt.ir", err, sizeof err);
  ck_assert_msg(back != NULL, "parse failed: %s\n%s", err, text);
  const char *again = ir_print_to_string(arena, back);
  ck_assert_str_eq(again, text);
  return text;
}

static const char *parse_error(const char *text) {
  ir_graph *parsed = ir_parse(arena, text, "bad.ir", err, sizeof err);
  ck_assert_msg(parsed == NULL, "parsed unexpectedly: %s", text);
  return err;
}

/* ---- printing ---- */

START_TEST(print_example) {
  ir_value *tokens = src(IR_OP_input, T(IR_i32, 2, 8, 128), "tokens");
  ir_node *w = ir_source_new(g, IR_OP_param, T(IR_f32, 2, 512, 256), "tok.weight");
  ir_set_str(g, w, "init", "normal");
  ir_set_float(g, w, "b", 0.02);
  ir_set_float(g, w, "a", 0);
  ir_node *tok = op(IR_OP_gather, "tok", 2, w->results[0], tokens);
  tok->loc = (ir_loc){"spec.yaml", 12, 11};
  infer(tok);
  ir_node *out = op(IR_OP_output, NULL, 1, tok->results[0]);
  ir_set_str(g, out, "name", "logits");
  const char *want =
      "graph gpt_mini {\n"
      "  %tokens: i32[8,128] = input\n"
      "  %tok.weight: f32[512,256] = param init=\"normal\" a=0.0 b=0.02\n"
      "  %tok: f32[8,128,256] = gather %tok.weight, %tokens @12:11\n"
      "  output %tok name=\"logits\"\n"
      "}\n";
  ck_assert_str_eq(round_trip(g), want);
  /* the parser keeps the location with its own file name */
  ir_graph *back = ir_parse(arena, want, "x.ir", err, sizeof err);
  ir_node *n = back->first->next->next;
  ck_assert_str_eq(n->loc.file, "x.ir");
  ck_assert_int_eq(n->loc.line, 12);
  ck_assert_int_eq(n->loc.col, 11);
  ck_assert_ptr_null(back->first->loc.file);
  back = ir_parse(arena, want, NULL, err, sizeof err);
  ck_assert_str_eq(back->first->next->next->loc.file, "<input>");
}
END_TEST

START_TEST(print_node_and_values) {
  ir_value *x = src(IR_OP_input, T(IR_f32, 1, 4), "x");
  ir_node *r = op(IR_OP_relu, "odd name", 1, x);
  infer(r);
  r->scope = "layers.3";
  char buf[64];
  ck_assert_str_eq(ir_value_format(x, buf, sizeof buf), "%x");
  ck_assert_str_eq(ir_value_format(r->results[0], buf, sizeof buf), "%\"odd name\"");
  ck_assert_str_eq(ir_value_format(r->results[0], buf, 5), "%\"od");
  char *text = NULL;
  size_t size = 0;
  FILE *f = open_memstream(&text, &size);
  ir_print_node(f, r);
  fclose(f);
  ck_assert_str_eq(text, "%\"odd name\": f32[4] = relu %x scope=\"layers.3\"\n");
  free(text);
}
END_TEST

START_TEST(every_attribute_kind) {
  ir_value *x = src(IR_OP_input, T(IR_f32, 3, 2, 3, 4), "x");
  ir_node *p = ir_source_new(g, IR_OP_param, T(IR_f32, 1, 4), "w");
  ir_set_str(g, p, "init", "uniform");
  ir_set_float(g, p, "a", -0.5);
  ir_set_float(g, p, "b", 3e-4);
  ir_node *m = ir_source_new(g, IR_OP_mask, T(IR_u8, 2, 4, 4), "mask");
  ir_set_bool(g, m, "causal", true);
  ir_set_int(g, m, "window", 0);
  ir_set_int(g, m, "global", -2);
  ir_node *d = ir_source_new(g, IR_OP_dropout_mask, T(IR_u8, 1, 4), "drop");
  ir_set_float(g, d, "p", 0.1);
  ir_set_int(g, d, "stream", 9223372036854775807LL);
  ir_node *s = op(IR_OP_sum, "s", 1, x);
  int64_t axes[2] = {-1, 0};
  ir_set_ints(g, s, "axes", 2, axes);
  ir_set_bool(g, s, "keepdim", false);
  infer(s);
  ir_node *all = op(IR_OP_mean, "all", 1, x);
  ir_set_ints(g, all, "axes", 0, NULL);
  ir_set_bool(g, all, "keepdim", true);
  infer(all);
  ir_node *sl = op(IR_OP_slice, "sl", 1, x);
  ir_set_int(g, sl, "end", 3); /* printed in op-table order regardless */
  ir_set_int(g, sl, "axis", -1);
  ir_set_int(g, sl, "start", 1);
  infer(sl);
  ir_node *nl = op(IR_OP_log_softmax, "lp", 1, x);
  ir_set_int(g, nl, "axis", -1);
  infer(nl);
  const char *text = round_trip(g);
  ck_assert_ptr_nonnull(strstr(text, "%w: f32[4] = param init=\"uniform\" a=-0.5 b=0.0003\n"));
  ck_assert_ptr_nonnull(
      strstr(text, "%mask: u8[4,4] = mask causal=true window=0 global=-2\n"));
  ck_assert_ptr_nonnull(strstr(text, "dropout_mask p=0.1 stream=9223372036854775807\n"));
  ck_assert_ptr_nonnull(strstr(text, "%s: f32[3] = sum %x axes=[-1,0] keepdim=false\n"));
  ck_assert_ptr_nonnull(strstr(text, "%all: f32[1,1,1] = mean %x axes=[] keepdim=true\n"));
  ck_assert_ptr_nonnull(strstr(text, "%sl: f32[2,3,2] = slice %x axis=-1 start=1 end=3\n"));
}
END_TEST

static const char *float_text(double v) {
  ir_graph *fg = ir_graph_new(arena, "f");
  ir_node *c = ir_source_new(fg, IR_OP_const, T(IR_f32, 0), "c");
  ir_set_float(fg, c, "value", v);
  const char *text = ir_print_to_string(arena, fg);
  const char *eq = strstr(text, "value=");
  ck_assert_ptr_nonnull(eq);
  char *copy = ir_arena_strdup(arena, eq + 6);
  copy[strcspn(copy, "\n")] = 0;
  /* and it reads back as the same double */
  ir_graph *back = ir_parse(arena, text, "f.ir", err, sizeof err);
  ck_assert_msg(back != NULL, "%s", err);
  double r = ir_get_float(back->first, "value", -123);
  ck_assert_int_eq(ir_get_attr(back->first, "value")->kind, IR_ATTR_FLOAT);
  if (isnan(v))
    ck_assert(isnan(r));
  else
    ck_assert(memcmp(&r, &v, sizeof r) == 0);
  return copy;
}

START_TEST(floats) {
  ck_assert_str_eq(float_text(1e-5), "1e-05");
  ck_assert_str_eq(float_text(0.1), "0.1");
  ck_assert_str_eq(float_text(3e-4), "0.0003");
  ck_assert_str_eq(float_text(0.02), "0.02");
  ck_assert_str_eq(float_text(1.0), "1.0");
  ck_assert_str_eq(float_text(0.0), "0.0");
  ck_assert_str_eq(float_text(-0.0), "-0.0");
  ck_assert_str_eq(float_text(-100), "-100.0");
  ck_assert_str_eq(float_text(10000), "10000.0");
  ck_assert_str_eq(float_text(1e20), "1e+20");
  ck_assert_str_eq(float_text(1e-300), "1e-300");
  ck_assert_str_eq(float_text(1.0 / 3), "0.33333333333333331");
  ck_assert_str_eq(float_text(0.1f), "0.10000000149011612");
  ck_assert_str_eq(float_text(1.0000001), "1.0000001");
  ck_assert_str_eq(float_text(1.7976931348623157e308), "1.7976931348623157e+308");
  ck_assert_str_eq(float_text(5e-324), "4.94066e-324");
  ck_assert_str_eq(float_text(INFINITY), "inf");
  ck_assert_str_eq(float_text(-INFINITY), "-inf");
  ck_assert_str_eq(float_text(NAN), "nan");
}
END_TEST

START_TEST(float_attr_accepts_int_literal) {
  const char *text =
      "graph g {\n"
      "  %c: f32[] = const value=2\n"
      "  %d: f32[] = const value=-7\n"
      "}\n";
  ir_graph *back = ir_parse(arena, text, "f.ir", err, sizeof err);
  ck_assert_msg(back != NULL, "%s", err);
  ck_assert(ir_get_float(back->first, "value", 0) == 2.0);
  ck_assert_int_eq(ir_get_attr(back->first, "value")->kind, IR_ATTR_FLOAT);
  ck_assert_str_eq(ir_print_to_string(arena, back),
                   "graph g {\n  %c: f32[] = const value=2.0\n  %d: f32[] = const value=-7.0\n}\n");
}
END_TEST

START_TEST(strings_and_quoted_names) {
  g->name = "my model";
  ir_value *x = src(IR_OP_input, T(IR_f32, 1, 2), "a b");
  ir_value *q = src(IR_OP_input, T(IR_f32, 1, 2), "quote\"back\\slash");
  ir_value *e = src(IR_OP_input, T(IR_f32, 1, 2), "");
  ir_value *u = src(IR_OP_input, T(IR_f32, 1, 2), "caf\xc3\xa9\ttab\x01");
  ir_value *dots = src(IR_OP_input, T(IR_f32, 1, 2), "0.layers.3_x");
  ir_node *add = op(IR_OP_add, "sum-1", 2, x, q);
  infer(add);
  ir_node *out = op(IR_OP_output, NULL, 1, add->results[0]);
  ir_set_str(g, out, "name", "say \"hi\"\\ #not a comment // nor this\nline2");
  out->scope = "blocks.0";
  out->loc = (ir_loc){"f", 3, 4};
  ir_node *o2 = op(IR_OP_output, NULL, 1, e);
  ir_set_str(g, o2, "name", "");
  ir_node *o3 = op(IR_OP_output, NULL, 1, u);
  ir_set_str(g, o3, "name", "u");
  ir_node *o4 = op(IR_OP_output, NULL, 1, dots);
  ir_set_str(g, o4, "name", "d");
  const char *text = round_trip(g);
  const char *want =
      "graph \"my model\" {\n"
      "  %\"a b\": f32[2] = input\n"
      "  %\"quote\\\"back\\\\slash\": f32[2] = input\n"
      "  %\"\": f32[2] = input\n"
      "  %\"caf\xc3\xa9\\ttab\\x01\": f32[2] = input\n"
      "  %0.layers.3_x: f32[2] = input\n"
      "  %\"sum-1\": f32[2] = add %\"a b\", %\"quote\\\"back\\\\slash\"\n"
      "  output %\"sum-1\" name=\"say \\\"hi\\\"\\\\ #not a comment // nor this\\nline2\" @3:4 "
      "scope=\"blocks.0\"\n"
      "  output %\"\" name=\"\"\n"
      "  output %\"caf\xc3\xa9\\ttab\\x01\" name=\"u\"\n"
      "  output %0.layers.3_x name=\"d\"\n"
      "}\n";
  ck_assert_str_eq(text, want);
  ir_graph *back = ir_parse(arena, text, "q.ir", err, sizeof err);
  ck_assert_str_eq(back->name, "my model");
  ck_assert_ptr_nonnull(ir_graph_find(back, "quote\"back\\slash"));
  ck_assert_ptr_nonnull(ir_graph_find(back, "caf\xc3\xa9\ttab\x01"));
  ck_assert_str_eq(ir_get_str(back->last->prev->prev->prev, "name", NULL),
                   "say \"hi\"\\ #not a comment // nor this\nline2");
}
END_TEST

START_TEST(graph_names) {
  static const char *const names[] = {"gpt_mini", "_x", "a.b", "9lives", ".dot", "", "graph"};
  static const char *const printed[] = {"gpt_mini", "_x", "a.b", "\"9lives\"", "\".dot\"", "\"\"",
                                        "graph"};
  for (int i = 0; i < 7; i++) {
    ir_graph *ng = ir_graph_new(arena, names[i]);
    char want[64];
    snprintf(want, sizeof want, "graph %s {\n}\n", printed[i]);
    ck_assert_str_eq(round_trip(ng), want);
  }
}
END_TEST

/* g->training prints as `mode=train` after the name and reads back. */
START_TEST(training_mode) {
  g->training = true;
  src(IR_OP_input, T(IR_f32, 1, 2), "x");
  ck_assert_str_eq(round_trip(g), "graph gpt_mini mode=train {\n"
                                  "  %x: f32[2] = input\n"
                                  "}\n");
  ir_graph *back = ir_parse(arena, "graph t mode=train {\n}\n", "m.ir", err, sizeof err);
  ck_assert_msg(back != NULL, "%s", err);
  ck_assert(back->training);
  back = ir_parse(arena, "graph t mode=infer {\n}\n", "m.ir", err, sizeof err);
  ck_assert_msg(back != NULL, "%s", err);
  ck_assert(!back->training);
  ck_assert_str_eq(ir_print_to_string(arena, back), "graph t {\n}\n");
  /* a graph may be called mode */
  back = ir_parse(arena, "graph mode mode=train {\n}\n", "m.ir", err, sizeof err);
  ck_assert_msg(back != NULL, "%s", err);
  ck_assert_str_eq(back->name, "mode");
  ck_assert(back->training);
  ck_assert_str_eq(parse_error("graph t mode=eval {\n}\n"),
                   "1:14: expected 'train' or 'infer', found 'eval'");
  ck_assert_str_eq(parse_error("graph t mode {\n}\n"), "1:14: expected '=', found '{'");
  ck_assert_str_eq(parse_error("graph t mode=\"train\" {\n}\n"),
                   "1:14: expected 'train' or 'infer', found '\"train\"'");
  ck_assert_str_eq(parse_error("graph t train {\n}\n"), "1:9: expected '{', found 'train'");
}
END_TEST

START_TEST(multi_result_printing) {
  /* no op has two results yet; the printer's form for them */
  ir_value *x = src(IR_OP_input, T(IR_f32, 1, 2), "x");
  ir_node *n = op(IR_OP_relu, "a", 1, x);
  infer(n);
  ir_value *second = ir_arena_alloc(arena, sizeof *second);
  *second = *n->results[0];
  second->name = "b";
  second->result_index = 1;
  ir_value **results = ir_arena_alloc(arena, 2 * sizeof *results);
  results[0] = n->results[0];
  results[1] = second;
  n->results = results;
  n->num_results = 2;
  const char *text = ir_print_to_string(arena, g);
  ck_assert_str_eq(text,
                   "graph gpt_mini {\n"
                   "  %x: f32[2] = input\n"
                   "  %a: f32[2], %b: f32[2] = relu %x\n"
                   "}\n");
  ck_assert_str_eq(parse_error(text), "3:28: relu has 1 result, 2 written");
}
END_TEST

START_TEST(comments_and_blank_lines) {
  const char *text =
      "# RUN: modelc ir %s | FileCheck %s\n"
      "// CHECK: graph g\n"
      "\n"
      "graph g {   # trailing comment\n"
      "\r\n"
      "  %x: f32[2,3] = input   // CHECK: %x\n"
      "  # a comment line inside\n"
      "\t%y: f32[2,3] = relu %x\n"
      "  output %y name=\"y\"\n"
      "}\n"
      "// CHECK-NEXT: }\n"
      "\n";
  ir_graph *parsed = ir_parse(arena, text, "c.ir", err, sizeof err);
  ck_assert_msg(parsed != NULL, "%s", err);
  ck_assert_str_eq(ir_print_to_string(arena, parsed),
                   "graph g {\n"
                   "  %x: f32[2,3] = input\n"
                   "  %y: f32[2,3] = relu %x\n"
                   "  output %y name=\"y\"\n"
                   "}\n");
  /* no trailing newline at all */
  ck_assert_ptr_nonnull(ir_parse(arena, "graph g {\n}", "c.ir", err, sizeof err));
  ck_assert_str_eq(parse_error("graph g {\n  %x: f32[] = input}"),
                   "2:20: expected an attribute or the end of the line, found '}'");
}
END_TEST

START_TEST(parsed_graph_is_typed) {
  const char *text =
      "graph g {\n"
      "  %a: f32[8,128,256] = input\n"
      "  %w: f32[512,256] = param init=\"normal\"\n"
      "  %y: f32[8,128,512] = matmul %a, %w transpose_a=false transpose_b=true\n"
      "  %c: f32[8,128,512,1] = concat %y axis=-1\n"
      "}\n";
  ir_graph *parsed = ir_parse(arena, text, "t.ir", err, sizeof err);
  ck_assert_ptr_null(parsed);
  ck_assert_str_eq(err, "5:3: %c: type f32[8,128,512,1] does not match the inferred f32[8,128,512]");
  ir_graph *ok = ir_parse(arena,
                          "graph g {\n"
                          "  %a: f32[8,128,256] = input\n"
                          "  %w: f32[512,256] = param init=\"normal\"\n"
                          "  %y: f32[8,128,512] = matmul %a, %w transpose_a=false transpose_b=true\n"
                          "}\n",
                          "t.ir", err, sizeof err);
  ck_assert_msg(ok != NULL, "%s", err);
  ck_assert_int_eq(ok->last->results[0]->type.dims[2], 512);
  ck_assert_ptr_eq(ok->last->inputs[1], ir_graph_find(ok, "w"));
  ck_assert_int_eq(ir_verify(ok, true, NULL), 0);
}
END_TEST

/* ---- parse errors ---- */

START_TEST(errors_values_and_ops) {
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input\n"
                               "  %y: f32[2] = relu %foo\n"
                               "}\n"),
                   "3:21: use of undefined value %foo");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = addd %x\n"
                               "}\n"),
                   "2:16: unknown op 'addd'");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input\n"
                               "  %x: f32[2] = relu %x\n"
                               "}\n"),
                   "3:3: redefinition of value %x");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input\n"
                               "  %y: f32[2] = relu %y\n"
                               "}\n"),
                   "3:21: use of undefined value %y");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input\n"
                               "  %y: f32[3] = relu %x\n"
                               "}\n"),
                   "3:3: %y: type f32[3] does not match the inferred f32[2]");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input\n"
                               "  %z: f32[3] = input\n"
                               "  %y: f32[2] = add %x, %z\n"
                               "}\n"),
                   "4:16: cannot broadcast f32[2] with f32[3]");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input\n"
                               "  %y: f32[2] = add %x\n"
                               "}\n"),
                   "3:16: add takes 2 inputs, got 1");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input %x\n"
                               "}\n"),
                   "2:22: use of undefined value %x");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input\n"
                               "  %y: f32[2] = input %x\n"
                               "}\n"),
                   "3:16: input takes 0 inputs, got 1");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  input\n"
                               "}\n"),
                   "2:3: input has 1 result, 0 written");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input\n"
                               "  %o: f32[2] = output %x name=\"o\"\n"
                               "}\n"),
                   "3:16: output has no results");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input\n"
                               "  %y: f32[2] = concat axis=0\n"
                               "}\n"),
                   "3:16: concat takes at least 1 input, got 0");
}
END_TEST

START_TEST(errors_attributes) {
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input\n"
                               "  %y: f32[2] = softmax %x axis=1.5\n"
                               "}\n"),
                   "3:32: attribute 'axis' expects int");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input\n"
                               "  %y: f32[2] = softmax %x axis=\"a\"\n"
                               "}\n"),
                   "3:32: attribute 'axis' expects int");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input\n"
                               "  %y: f32[2] = softmax %x axis=0 axis=0\n"
                               "}\n"),
                   "3:34: attribute 'axis' given twice");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input\n"
                               "  %y: f32[2] = softmax %x dim=0\n"
                               "}\n"),
                   "3:27: unknown attribute 'dim' for softmax");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input\n"
                               "  %y: f32[2] = softmax %x\n"
                               "}\n"),
                   "3:16: softmax: missing attribute 'axis'");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2,2] = input\n"
                               "  %y: f32[2] = sum %x axes=[0,1.0] keepdim=false\n"
                               "}\n"),
                   "3:31: attribute 'axes' expects ints");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2,2] = input\n"
                               "  %y: f32[2] = sum %x axes=1 keepdim=false\n"
                               "}\n"),
                   "3:28: attribute 'axes' expects ints");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2,2] = input\n"
                               "  %y: f32[2] = sum %x axes=[0] keepdim=1\n"
                               "}\n"),
                   "3:40: attribute 'keepdim' expects bool");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = const value=true\n"
                               "}\n"),
                   "2:28: attribute 'value' expects float");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = param init=normal\n"
                               "}\n"),
                   "2:27: attribute 'init' expects str");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input\n"
                               "  %y: f32[2] = sum %x axes=[0 keepdim=false\n"
                               "}\n"),
                   "3:31: expected ',', found 'keepdim'");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input\n"
                               "  %y: f32[2] = relu %x @3\n"
                               "}\n"),
                   "3:26: expected ':', found end of line");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input scope=1\n"
                               "}\n"),
                   "2:28: expected a scope string, found '1'");
  ck_assert_str_eq(parse_error("graph g {\n"
                               "  %x: f32[2] = input @1:1 @1:1\n"
                               "}\n"),
                   "2:27: location given twice");
}
END_TEST

START_TEST(errors_lexical) {
  ck_assert_str_eq(parse_error(""), "1:1: expected 'graph', found end of input");
  ck_assert_str_eq(parse_error("graf g {\n}\n"), "1:1: expected 'graph', found 'graf'");
  ck_assert_str_eq(parse_error("graph {\n}\n"), "1:7: expected a graph name, found '{'");
  ck_assert_str_eq(parse_error("graph g\n}\n"), "1:8: expected '{', found end of line");
  ck_assert_str_eq(parse_error("graph g { %x: f32[] = input\n}\n"),
                   "1:11: expected the end of the line, found '%x'");
  ck_assert_str_eq(parse_error("graph g {\n  %x: f32[2] = input\n"),
                   "3:1: expected '}', found end of input");
  ck_assert_str_eq(parse_error("graph g {\n}\ngraph h {\n}\n"),
                   "3:1: expected the end of the input after the graph, found 'graph'");
  ck_assert_str_eq(parse_error("graph g {\n  %x: f31[2] = input\n}\n"), "2:7: unknown dtype 'f31'");
  ck_assert_str_eq(parse_error("graph g {\n  %x: f32[2,-1] = input\n}\n"),
                   "2:13: dimension must be non-negative");
  ck_assert_str_eq(parse_error("graph g {\n  %x: f32[1,1,1,1,1,1,1,1,1] = input\n}\n"),
                   "2:27: more than 8 dimensions");
  ck_assert_str_eq(parse_error("graph g {\n  %x: f32 = input\n}\n"),
                   "2:11: expected '[', found '='");
  ck_assert_str_eq(parse_error("graph g {\n  %x f32[2] = input\n}\n"),
                   "2:6: expected ':', found 'f32'");
  ck_assert_str_eq(parse_error("graph g {\n  %: f32[2] = input\n}\n"),
                   "2:3: expected a value name after '%'");
  ck_assert_str_eq(parse_error("graph g {\n  %x: f32[2] = param init=\"abc\n}\n"),
                   "2:27: unterminated string");
  ck_assert_str_eq(parse_error("graph g {\n  %x: f32[2] = param init=\"a\\qb\"\n}\n"),
                   "2:27: invalid escape in string");
  ck_assert_str_eq(parse_error("graph g {\n  %x: f32[2] = param init=\"a\\x00\"\n}\n"),
                   "2:27: invalid escape in string");
  ck_assert_str_eq(parse_error("graph g {\n  %x: f32[2] = input $\n}\n"),
                   "2:22: unexpected character '$'");
  ck_assert_str_eq(parse_error("graph g {\n  %x: f32[2] = input \x01\n}\n"),
                   "2:22: unexpected character byte 0x01");
  ck_assert_str_eq(parse_error("graph g {\n  %x: f32[99999999999999999999] = input\n}\n"),
                   "2:11: integer out of range");
  ck_assert_str_eq(parse_error("graph g {\n  %x: f32[12abc] = input\n}\n"),
                   "2:11: malformed number");
  ck_assert_str_eq(parse_error("graph g {\n  %x: f32[] = const value=1.5.2\n}\n"),
                   "2:27: malformed number");
  ck_assert_str_eq(parse_error("graph g {\n  %x: f32[2] = / input\n}\n"),
                   "2:16: unexpected character '/'");
  ck_assert_str_eq(parse_error("graph g {\n  = input\n}\n"),
                   "2:3: expected a value or an op, found '='");
  ck_assert_str_eq(parse_error("graph g {\n  %x: f32[2], = input\n}\n"),
                   "2:15: expected a result value, found '='");
  ck_assert_str_eq(parse_error("graph g {\n  %x: f32[2] = input\n  output %x, name=\"\"\n}\n"),
                   "3:14: expected an input value, found 'name'");
}
END_TEST

START_TEST(int_limits) {
  const char *text =
      "graph g {\n"
      "  %m: u8[2,2] = mask causal=false window=9223372036854775807 "
      "global=-9223372036854775808\n"
      "}\n";
  ir_graph *parsed = ir_parse(arena, text, "i.ir", err, sizeof err);
  ck_assert_msg(parsed != NULL, "%s", err);
  ck_assert(ir_get_int(parsed->first, "window", 0) == INT64_MAX);
  ck_assert(ir_get_int(parsed->first, "global", 0) == INT64_MIN);
  ck_assert_str_eq(ir_print_to_string(arena, parsed), text);
  ck_assert_str_eq(parse_error("graph g {\n  %m: u8[] = mask causal=false window=9223372036854775808 global=0\n}\n"),
                   "2:39: integer out of range");
}
END_TEST

/* ---- robustness ---- */

static const char *sample =
    "graph sample {\n"
    "  %x: f32[2,3,4] = input @1:2 scope=\"s\"\n"
    "  %w: f32[5,4] = param init=\"normal\" a=0.0 b=0.02\n"
    "  %m: u8[3,3] = mask causal=true window=0 global=0\n"
    "  %y: f32[2,3,5] = matmul %x, %w transpose_a=false transpose_b=true\n"
    "  %s: f32[2,5] = sum %y axes=[-2] keepdim=false\n"
    "  %\"q x\": f32[2,5] = softmax %s axis=-1\n"
    "  %c: f32[] = const value=-inf\n"
    "  output %\"q x\" name=\"out\\n\"\n"
    "}\n";

static void parse_quietly(const char *text) {
  ir_arena *a = ir_arena_new();
  char e[IR_ERR_LEN];
  ir_graph *parsed = ir_parse(a, text, "fuzz.ir", e, sizeof e);
  if (parsed) ir_print_to_string(a, parsed);
  ir_arena_free(a);
}

START_TEST(sample_round_trips) {
  ir_graph *parsed = ir_parse(arena, sample, "s.ir", err, sizeof err);
  ck_assert_msg(parsed != NULL, "%s", err);
  ck_assert_str_eq(ir_print_to_string(arena, parsed), sample);
  ck_assert_int_eq(ir_verify(parsed, true, NULL), 0);
}
END_TEST

START_TEST(garbage_does_not_crash) {
  size_t len = strlen(sample);
  char *buf = malloc(len + 1);
  /* every prefix */
  for (size_t cut = 0; cut <= len; cut++) {
    memcpy(buf, sample, cut);
    buf[cut] = 0;
    parse_quietly(buf);
  }
  /* random byte changes, deletions and duplications */
  unsigned seed = 12345;
  static const char alphabet[] = "%\"\\[]{},:=@-#/ \n\tax019.eE+-_";
  for (int round = 0; round < 3000; round++) {
    memcpy(buf, sample, len + 1);
    for (int k = 0; k < 1 + round % 4; k++) {
      seed = seed * 1103515245u + 12345u;
      size_t at = (seed >> 8) % len;
      seed = seed * 1103515245u + 12345u;
      unsigned r = seed >> 8;
      buf[at] = r % 3 ? alphabet[r % (sizeof alphabet - 1)] : (char)(r & 0xff);
      if (!buf[at]) buf[at] = 'x';
    }
    parse_quietly(buf);
  }
  free(buf);
  /* odd inputs */
  parse_quietly("graph g {\n  %\"");
  parse_quietly("graph g {\n  %\"\\");
  parse_quietly("graph g {\n  %\"\\x");
  parse_quietly("graph g {\n  %\"\\x4");
  parse_quietly("graph \"\\x4\"");
  parse_quietly("graph g {\n  %x: f32[2] = const value=-");
  parse_quietly("graph g {\n  %x: f32[2] = const value=1e");
  parse_quietly("graph g {\n  %x: f32[2] = const value=1e+");
  parse_quietly("graph g {\n  %x: f32[2] = input @");
  parse_quietly("graph g {\n  %x: f32[2] = input @1:");
  parse_quietly("graph g {\n  %x: f32[");
  parse_quietly("graph g {\n  %x: f32[2");
  parse_quietly("graph g {\n  %x: u8[2] = mask causal=");
  parse_quietly("graph g {\n  %x: f32[2,2] = input\n  %y: f32[2] = sum %x axes=[");
  parse_quietly("/");
  parse_quietly("#");
  parse_quietly("-");
  parse_quietly("\xff\xfe");
  ck_assert_ptr_null(ir_parse(arena, NULL, NULL, err, sizeof err));
  ck_assert_ptr_null(ir_parse(arena, "", NULL, NULL, 0));
  char tiny[4];
  ck_assert_ptr_null(ir_parse(arena, "garbage", NULL, tiny, sizeof tiny));
  ck_assert_str_eq(tiny, "1:1");
}
END_TEST

START_TEST(shape_errors_from_text) {
  /* hostile attribute values reach the shape rules */
  static const char *const texts[] = {
      "graph g {\n  %x: f32[2,3] = input\n  %y: f32[2] = reshape %x shape=[-9223372036854775808]\n}\n",
      "graph g {\n  %x: f32[2,3] = input\n  %y: f32[2] = reshape %x shape=[4611686018427387904,4]\n}\n",
      "graph g {\n  %x: f32[2,3] = input\n  %y: f32[2] = permute %x perm=[-9223372036854775808,0]\n}\n",
      "graph g {\n  %x: f32[1,1,9223372036854775807] = input\n  %w: f32[1,1,9223372036854775807] = input\n"
      "  %y: f32[1] = conv %x, %w stride=[9223372036854775807] padding=[9223372036854775807] "
      "dilation=[9223372036854775807] groups=-9223372036854775808\n}\n",
      "graph g {\n  %x: f32[1,1,9223372036854775807] = input\n  %w: f32[1,1,9223372036854775807] = input\n"
      "  %y: f32[1] = conv %x, %w stride=[1] padding=[0] dilation=[9223372036854775807] groups=1\n}\n",
      "graph g {\n  %x: f32[1,1,2,2] = input\n  %y: f32[1] = maxpool %x kernel=[9223372036854775807] "
      "stride=[1] padding=[4611686018427387903]\n}\n",
      "graph g {\n  %x: f32[9223372036854775807,9223372036854775807] = input\n"
      "  %y: f32[1] = concat %x, %x axis=0\n}\n",
      "graph g {\n  %x: f32[4] = input\n  %y: f32[1] = slice %x axis=-9223372036854775808 start=0 end=1\n}\n",
  };
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    ck_assert_ptr_null(ir_parse(arena, texts[i], "h.ir", err, sizeof err));
    ck_assert(strlen(err) > 0);
  }
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("ir_text");
  TCase *tc = tcase_create("text");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, print_example);
  tcase_add_test(tc, print_node_and_values);
  tcase_add_test(tc, every_attribute_kind);
  tcase_add_test(tc, floats);
  tcase_add_test(tc, float_attr_accepts_int_literal);
  tcase_add_test(tc, strings_and_quoted_names);
  tcase_add_test(tc, graph_names);
  tcase_add_test(tc, training_mode);
  tcase_add_test(tc, multi_result_printing);
  tcase_add_test(tc, comments_and_blank_lines);
  tcase_add_test(tc, parsed_graph_is_typed);
  tcase_add_test(tc, errors_values_and_ops);
  tcase_add_test(tc, errors_attributes);
  tcase_add_test(tc, errors_lexical);
  tcase_add_test(tc, int_limits);
  tcase_add_test(tc, sample_round_trips);
  tcase_add_test(tc, garbage_does_not_crash);
  tcase_add_test(tc, shape_errors_from_text);
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
