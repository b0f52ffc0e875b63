/* test_ir_pass.c: the pass manager (stages, --print-after, verification
 * between passes), dead-code elimination, and graph statistics. */
#include <check.h>
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
  g = ir_graph_new(arena, "p");
  err[0] = 0;
}

static void teardown(void) { ir_arena_free(arena); }

static ir_graph *parse(const char *text) {
  ir_graph *parsed = ir_parse(arena, text, "p.ir", err, sizeof err);
  ck_assert_msg(parsed != NULL, "%s", err);
  return parsed;
}

static const char *print(const ir_graph *graph) { return ir_print_to_string(arena, graph); }

/* Runs the pipeline with output captured; returns what it printed. */
static const char *run(ir_graph *graph, ir_pass_options opts, bool expect_ok) {
  static char printed[8192];
  char *text = NULL;
  size_t size = 0;
  FILE *f = open_memstream(&text, &size);
  opts.print_out = f;
  bool ok = ir_run_pipeline(graph, &opts, err, sizeof err);
  fclose(f);
  ck_assert_msg(ok == expect_ok, "pipeline %s: %s", ok ? "succeeded" : "failed", err);
  snprintf(printed, sizeof printed, "%s", text);
  free(text);
  return printed;
}

/* x feeds a used chain and a dead chain; a const and a mask go unused. */
static const char *dead_code =
    "graph p {\n"
    "  %x: f32[2,3] = input\n"
    "  %unused_in: f32[4] = input\n"
    "  %w: f32[3] = param init=\"zeros\"\n"
    "  %st: f32[3] = buffer init=\"zeros\"\n"
    "  %c: f32[] = const value=1.0\n"
    "  %m: u8[3,3] = mask causal=true window=0 global=0\n"
    "  %d1: f32[2,3] = exp %x\n"
    "  %d2: f32[2,3] = neg %d1\n"
    "  %y: f32[2,3] = relu %x\n"
    "  %z: f32[2,3] = mul %y, %y\n"
    "  assign %st, %w\n"
    "  output %z name=\"z\"\n"
    "}\n";

static const char *dead_code_after =
    "graph p {\n"
    "  %x: f32[2,3] = input\n"
    "  %unused_in: f32[4] = input\n"
    "  %w: f32[3] = param init=\"zeros\"\n"
    "  %st: f32[3] = buffer init=\"zeros\"\n"
    "  %y: f32[2,3] = relu %x\n"
    "  %z: f32[2,3] = mul %y, %y\n"
    "  assign %st, %w\n"
    "  output %z name=\"z\"\n"
    "}\n";

/* ---- pipeline ---- */

START_TEST(pipeline_table) {
  static const ir_pass_info want[] = {
      {"expand", "expanded", ir_pass_expand},
      {"fuse_attention", "fused", ir_pass_fuse_attention},
      {"fuse_gating", "fused", ir_pass_fuse_gating},
      {"fuse_conv", "fused", ir_pass_fuse_conv},
      {"fuse_norm", "fused", ir_pass_fuse_norm},
      {"fuse_cross_entropy", "fused", ir_pass_fuse_cross_entropy},
      {"autodiff", "autodiff", ir_pass_autodiff},
      {"recompute", "final", ir_pass_recompute},
      {"dce", "final", ir_pass_dce},
      {"fuse_norm_residual", "final", ir_pass_fuse_norm_residual},
      {"fuse_elementwise", "final", ir_pass_fuse_elementwise},
  };
  int count = 0;
  const ir_pass_info *passes = ir_pipeline(&count);
  ck_assert_int_eq(count, (int)(sizeof want / sizeof *want));
  for (int i = 0; i < count; i++) {
    ck_assert_str_eq(passes[i].name, want[i].name);
    ck_assert_str_eq(passes[i].stage, want[i].stage);
    ck_assert_ptr_eq(passes[i].run, want[i].run);
  }
}
END_TEST

START_TEST(unknown_names) {
  ir_graph *graph = parse(dead_code);
  ir_pass_options opts = {.stop_after_stage = "lowered"};
  run(graph, opts, false);
  ck_assert_str_eq(err, "unknown stage 'lowered' (stages: parsed, expanded, fused, autodiff, final)");
  opts = (ir_pass_options){.print_after = "fuse"};
  run(graph, opts, false);
  ck_assert_str_eq(err, "unknown pass 'fuse' (passes: expand, fuse_attention, fuse_gating, fuse_conv, fuse_norm, fuse_cross_entropy, "
                "autodiff, recompute, dce, fuse_norm_residual, fuse_elementwise)");
  /* a stage name is not a pass name, nor the reverse */
  opts = (ir_pass_options){.print_after = "final"};
  run(graph, opts, false);
  ck_assert_str_eq(err, "unknown pass 'final' (passes: expand, fuse_attention, fuse_gating, fuse_conv, fuse_norm, fuse_cross_entropy, "
                "autodiff, recompute, dce, fuse_norm_residual, fuse_elementwise)");
  opts = (ir_pass_options){.stop_after_stage = "dce"};
  run(graph, opts, false);
  ck_assert_str_eq(err, "unknown stage 'dce' (stages: parsed, expanded, fused, autodiff, final)");
  /* nothing ran */
  ck_assert_str_eq(print(graph), dead_code);
}
END_TEST

START_TEST(stages) {
  ir_graph *graph = parse(dead_code);
  run(graph, (ir_pass_options){.stop_after_stage = "parsed"}, true);
  ck_assert_str_eq(print(graph), dead_code);
  run(graph, (ir_pass_options){.stop_after_stage = "expanded", .print_after = "dce"}, true);
  ck_assert_str_eq(print(graph), dead_code); /* no layer ops; dce did not run */
  run(graph, (ir_pass_options){.stop_after_stage = "final"}, true);
  ck_assert_str_eq(print(graph), dead_code_after);
  ir_graph *all = parse(dead_code);
  ck_assert(ir_run_pipeline(all, NULL, err, sizeof err));
  ck_assert_str_eq(print(all), dead_code_after);
}
END_TEST

START_TEST(print_after) {
  ir_graph *graph = parse(dead_code);
  const char *printed = run(graph, (ir_pass_options){.print_after = "dce"}, true);
  char want[4096];
  snprintf(want, sizeof want, "// ----- IR after dce -----\n%s", dead_code_after);
  ck_assert_str_eq(printed, want);

  graph = parse(dead_code);
  printed = run(graph, (ir_pass_options){.print_after_all = true, .verify_each = true}, true);
  snprintf(want, sizeof want,
           "// ----- IR after expand -----\n%s// ----- IR after fuse_attention -----\n%s"
           "// ----- IR after fuse_gating -----\n%s// ----- IR after fuse_conv -----\n%s"
           "// ----- IR after fuse_norm -----\n%s// ----- IR after fuse_cross_entropy -----\n%s"
           "// ----- IR after autodiff -----\n%s// ----- IR after recompute -----\n%s"
           "// ----- IR after dce -----\n%s// ----- IR after fuse_norm_residual -----\n%s"
           "// ----- IR after fuse_elementwise -----\n%s",
           dead_code, dead_code, dead_code, dead_code, dead_code, dead_code, dead_code, dead_code,
           dead_code_after, dead_code_after, dead_code_after);
  ck_assert_str_eq(printed, want);

  graph = parse(dead_code);
  printed = run(graph, (ir_pass_options){.print_after = "expand", .stop_after_stage = "parsed"},
                true);
  ck_assert_str_eq(printed, "");
}
END_TEST

START_TEST(verify_each) {
  ir_graph *graph = parse(dead_code);
  /* break the graph behind the builder's back */
  ir_node *z = ir_graph_find(graph, "z")->def;
  z->results[0]->type.dims[0] = 5;
  run(graph, (ir_pass_options){.verify_each = true}, false);
  ck_assert_str_eq(err, "invalid IR after pass 'expand': node 9 (mul %z): result 0 %z has type "
                        "f32[5,3] but the shape rule gives f32[2,3]");
  graph = parse(dead_code);
  /* %d1 is wrong, and so %d2 no longer matches what neg gives */
  ir_graph_find(graph, "d1")->type.dims[0] = 5;
  run(graph, (ir_pass_options){.verify_each = true}, false);
  ck_assert_str_eq(err, "invalid IR after pass 'expand': node 6 (exp %d1): result 0 %d1 has type "
                        "f32[5,3] but the shape rule gives f32[2,3] (and 1 more)");
  /* without verification the pipeline does not look */
  graph = parse(dead_code);
  ir_graph_find(graph, "z")->def->results[0]->type.dims[0] = 5;
  run(graph, (ir_pass_options){0}, true);
}
END_TEST

/* ---- dce ---- */

START_TEST(dce_chains_and_effects) {
  ir_graph *graph = parse(dead_code);
  ck_assert(ir_pass_dce(graph, err, sizeof err));
  ck_assert_str_eq(print(graph), dead_code_after);
  ck_assert_int_eq(ir_verify(graph, true, NULL), 0);
  /* names of removed values are free again */
  ck_assert_ptr_null(ir_graph_find(graph, "d1"));
  /* idempotent */
  ck_assert(ir_pass_dce(graph, err, sizeof err));
  ck_assert_str_eq(print(graph), dead_code_after);
}
END_TEST

START_TEST(dce_everything_dead) {
  ir_graph *graph = parse("graph p {\n"
                          "  %c: f32[2] = const value=0.5\n"
                          "  %a: f32[2] = exp %c\n"
                          "  %b: f32[2] = add %a, %c\n"
                          "  %e: f32[2] = neg %b\n"
                          "}\n");
  ck_assert(ir_pass_dce(graph, err, sizeof err));
  ck_assert_str_eq(print(graph), "graph p {\n}\n");
  ck_assert_ptr_null(graph->first);
  ck_assert_ptr_null(graph->last);
  ir_graph *empty = ir_graph_new(arena, "e");
  ck_assert(ir_pass_dce(empty, err, sizeof err));
}
END_TEST

START_TEST(dce_keeps_shared_values) {
  const char *text =
      "graph p {\n"
      "  %x: f32[4] = input\n"
      "  %a: f32[4] = exp %x\n"
      "  %dead: f32[4] = neg %a\n"
      "  %b: f32[4] = relu %a\n"
      "  output %b name=\"b\"\n"
      "}\n";
  ir_graph *graph = parse(text);
  ck_assert(ir_pass_dce(graph, err, sizeof err));
  ck_assert_str_eq(print(graph), "graph p {\n"
                                 "  %x: f32[4] = input\n"
                                 "  %a: f32[4] = exp %x\n"
                                 "  %b: f32[4] = relu %a\n"
                                 "  output %b name=\"b\"\n"
                                 "}\n");
}
END_TEST

/* ---- autodiff ---- */

static const char *train_graph =
    "graph t mode=train {\n"
    "  %x: f32[2,3] = input\n"
    "  %w: f32[3] = param init=\"ones\"\n"
    "  %y: f32[2,3] = mul %x, %w @3:4\n"
    "  %loss: f32[] = sum %y axes=[] keepdim=false\n"
    "  output %loss name=\"loss\"\n"
    "}\n";

static const char *train_graph_backward =
    "  %d.loss: f32[] = const value=1.0\n"
    "  %d.y: f32[2,3] = broadcast %d.loss shape=[2,3]\n"
    "  %d.w.full: f32[2,3] = mul %d.y, %x @3:4\n"
    "  %d.w: f32[3] = sum %d.w.full axes=[0] keepdim=false @3:4\n"
    "  grad %w, %d.w\n"
    "}\n";

/* train_graph with `from` replaced by `to`. */
static const char *edited(const char *from, const char *to) {
  static char text[1024];
  const char *at = strstr(train_graph, from);
  ck_assert_ptr_nonnull(at);
  snprintf(text, sizeof text, "%.*s%s%s", (int)(at - train_graph), train_graph, to,
           at + strlen(from));
  return text;
}

START_TEST(autodiff_stage) {
  ir_graph *graph = parse(train_graph);
  run(graph, (ir_pass_options){.stop_after_stage = "autodiff", .verify_each = true}, true);
  char want[2048];
  snprintf(want, sizeof want, "%.*s%s", (int)(strlen(train_graph) - 2), train_graph,
           train_graph_backward);
  ck_assert_str_eq(print(graph), want);
  /* a differentiated graph is left alone */
  ck_assert(ir_pass_autodiff(graph, err, sizeof err));
  ck_assert_str_eq(print(graph), want);
  /* dce keeps the grad effects and what they use */
  ck_assert(ir_pass_dce(graph, err, sizeof err));
  ck_assert_str_eq(print(graph), want);
}
END_TEST

START_TEST(autodiff_does_nothing) {
  /* inference graphs, non-f32-scalar losses, losses no param reaches */
  const char *texts[] = {
      edited(" mode=train", ""),
      edited("%loss: f32[] = sum %y axes=[] keepdim=false",
             "%loss: f32[2] = sum %y axes=[1] keepdim=false"),
      edited("%y: f32[2,3] = mul %x, %w", "%y: f32[2,3] = mul %x, %x"),
  };
  for (int i = 0; i < 3; i++) {
    char text[1024];
    snprintf(text, sizeof text, "%s", texts[i]);
    ir_graph *graph = parse(text);
    ck_assert_msg(ir_pass_autodiff(graph, err, sizeof err), "%s", err);
    ck_assert_str_eq(print(graph), text);
  }
}
END_TEST

START_TEST(autodiff_errors) {
  ir_graph *graph = parse(edited("name=\"loss\"", "name=\"total\""));
  ck_assert(!ir_pass_autodiff(graph, err, sizeof err));
  ck_assert_str_eq(err, "autodiff: the training graph has no output named \"loss\"");
  /* a layer op (before expand) has no rule; the graph is left as it was */
  char text[1024];
  snprintf(text, sizeof text, "%s",
           edited("%y: f32[2,3] = mul %x, %w @3:4\n",
                  "%v: f32[3,3] = param init=\"ones\"\n"
                  "  %y: f32[2,3] = linear %x, %v bias=false rank=0 @3:4\n"));
  graph = parse(text);
  ck_assert(!ir_pass_autodiff(graph, err, sizeof err));
  ck_assert_str_eq(err, "autodiff: no gradient rule for op 'linear' (%y)");
  ck_assert_str_eq(print(graph), text);
  ck_assert(ir_pass_expand(graph, err, sizeof err));
  ck_assert_msg(ir_pass_autodiff(graph, err, sizeof err), "%s", err);
  ck_assert_int_eq(ir_verify(graph, true, NULL), 0);
  ck_assert_ptr_nonnull(ir_graph_find(graph, "d.v"));
  ck_assert_int_eq(graph->last->op, IR_OP_grad);
}
END_TEST

/* ---- stats ---- */

START_TEST(stats_memory_and_params) {
  ir_graph *graph = parse("graph p {\n"
                          "  %tokens: i32[8,128] = input\n"
                          "  %emb: f32[512,256] = param init=\"normal\" a=0.0 b=0.02\n"
                          "  %rm: f32[256] = buffer init=\"zeros\"\n"
                          "  %c: f32[] = const value=1.0\n"
                          "  %x: f32[8,128,256] = gather %emb, %tokens\n"
                          "  %logits: f32[8,128,512] = matmul %x, %emb transpose_a=false "
                          "transpose_b=true\n"
                          "  output %logits name=\"logits\"\n"
                          "}\n");
  ir_stats s;
  ir_graph_stats(graph, &s);
  ck_assert_int_eq(s.num_params, 512 * 256); /* tied: counted once */
  ck_assert_int_eq(s.param_bytes, 512 * 256 * 4);
  ck_assert_int_eq(s.buffer_bytes, 256 * 4);
  ck_assert_int_eq(s.input_bytes, 8 * 128 * 4);
  ck_assert_int_eq(s.activation_bytes, (8 * 128 * 256 + 8 * 128 * 512) * 4);
  ck_assert_int_eq(s.flops, 2LL * 8 * 128 * 512 * 256);
}
END_TEST

static int64_t flops_of(const char *text, const char *value) {
  ir_graph *graph = parse(text);
  return ir_node_flops(ir_graph_find(graph, value)->def);
}

START_TEST(node_flops_primitives) {
  const char *text =
      "graph p {\n"
      "  %x: f32[4,8,16] = input\n"
      "  %w: f32[32,16] = input\n"
      "  %img: f32[2,3,8,8] = input\n"
      "  %k: f32[6,3,3,3] = input\n"
      "  %mm: f32[4,8,32] = matmul %x, %w transpose_a=false transpose_b=true\n"
      "  %mt: f32[4,16,16] = matmul %x, %x transpose_a=true transpose_b=false\n"
      "  %r: f32[4,8,16] = relu %x\n"
      "  %a: f32[4,8,16] = add %x, %r\n"
      "  %sm: f32[4,8,16] = softmax %x axis=-1\n"
      "  %s: f32[4] = sum %x axes=[1,2] keepdim=false\n"
      "  %cv: f32[2,6,6,6] = conv %img, %k stride=[1] padding=[0] dilation=[1] groups=1\n"
      "  %mp: f32[2,3,4,4] = maxpool %img kernel=[2] stride=[2] padding=[0]\n"
      "  %rs: f32[32,16] = reshape %x shape=[32,16]\n"
      "  %c: f32[] = const value=2.0\n"
      "  output %rs name=\"rs\"\n"
      "}\n";
  ck_assert_int_eq(flops_of(text, "mm"), 2 * 4 * 8 * 32 * 16);
  ck_assert_int_eq(flops_of(text, "mt"), 2 * 4 * 16 * 16 * 8);
  ck_assert_int_eq(flops_of(text, "r"), 4 * 8 * 16);
  ck_assert_int_eq(flops_of(text, "a"), 4 * 8 * 16);
  ck_assert_int_eq(flops_of(text, "sm"), 5 * 4 * 8 * 16);
  ck_assert_int_eq(flops_of(text, "s"), 4 * 8 * 16);
  ck_assert_int_eq(flops_of(text, "cv"), 2 * (2 * 6 * 6 * 6) * (3 * 3 * 3));
  ck_assert_int_eq(flops_of(text, "mp"), 2 * 3 * 4 * 4 * 4);
  ck_assert_int_eq(flops_of(text, "rs"), 0);
  ck_assert_int_eq(flops_of(text, "c"), 0);
  ck_assert_int_eq(flops_of(text, "x"), 0);
}
END_TEST

START_TEST(node_flops_layers) {
  const char *text =
      "graph p {\n"
      "  %x: f32[2,16,64] = input\n"
      "  %w: f32[128,64] = input\n"
      "  %b: f32[128] = input\n"
      "  %down: f32[8,64] = input\n"
      "  %up: f32[128,8] = input\n"
      "  %lin: f32[2,16,128] = linear %x, %w, %b bias=true rank=0\n"
      "  %low: f32[2,16,128] = linear %x, %down, %up bias=false rank=8\n"
      "  %g: f32[256,64] = input\n"
      "  %u: f32[256,64] = input\n"
      "  %d: f32[64,256] = input\n"
      "  %sw: f32[2,16,64] = swiglu %x, %g, %u, %d\n"
      "  %lnw: f32[64] = input\n"
      "  %ln: f32[2,16,64] = layernorm %x, %lnw, %lnw eps=1e-05 bias=true\n"
      "  %qw: f32[64,64] = input\n"
      "  %att: f32[2,16,64] = attention %x, %qw, %qw, %qw, %qw heads=4 kv_heads=4 head_dim=16 "
      "causal=true window=0 global=0 gate=\"none\" rope=false rope_base=10000.0 bias=false\n"
      "  %t: i32[2,16] = input\n"
      "  %ce: f32[] = cross_entropy %lin, %t ignore_index=-100\n"
      "}\n";
  int64_t tokens = 2 * 16;
  ck_assert_int_eq(flops_of(text, "lin"), 2 * tokens * 128 * 64 + tokens * 128);
  ck_assert_int_eq(flops_of(text, "low"), 2 * tokens * 8 * 64 + 2 * tokens * 128 * 8);
  ck_assert_int_eq(flops_of(text, "sw"), 6 * tokens * 64 * 256 + 2 * tokens * 256);
  ck_assert_int_eq(flops_of(text, "ln"), 8 * tokens * 64);
  /* 4 projections of 64x64, then q k^T and P v over 4 heads of 16, softmax */
  ck_assert_int_eq(flops_of(text, "att"),
                   4 * 2 * tokens * 64 * 64 + 4 * 2 * 4 * 16 * 16 * 16 + 5 * 2 * 4 * 16 * 16);
  ck_assert_int_eq(flops_of(text, "ce"), 5 * tokens * 128 + tokens);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("ir_pass");
  TCase *tc = tcase_create("pass");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, pipeline_table);
  tcase_add_test(tc, unknown_names);
  tcase_add_test(tc, stages);
  tcase_add_test(tc, print_after);
  tcase_add_test(tc, verify_each);
  tcase_add_test(tc, dce_chains_and_effects);
  tcase_add_test(tc, dce_everything_dead);
  tcase_add_test(tc, dce_keeps_shared_values);
  tcase_add_test(tc, autodiff_stage);
  tcase_add_test(tc, autodiff_does_nothing);
  tcase_add_test(tc, autodiff_errors);
  tcase_add_test(tc, stats_memory_and_params);
  tcase_add_test(tc, node_flops_primitives);
  tcase_add_test(tc, node_flops_layers);
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
