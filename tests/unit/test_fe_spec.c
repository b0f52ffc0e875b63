/* test_fe_spec.c: the top level of a spec: dims in order, inputs, blocks,
 * graph, outputs, the train section's defaults and every error. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/fe.h"

#include "diag_fixture.h"

/* check's own messages are size-limited: long texts are compared here and
 * shown on stderr. */
#define assert_text(got, want)                                            \
  do {                                                                    \
    const char *got_ = (got), *want_ = (want);                            \
    if (strcmp(got_, want_) != 0) {                                       \
      fprintf(stderr, "--- expected:\n%s--- got:\n%s---\n", want_, got_); \
      ck_abort_msg("diagnostics differ (see stderr)");                    \
    }                                                                     \
  } while (0)

static fe_spec *read_text(const char *text) {
  diag_add_file(diag, "s.yaml", text, strlen(text));
  fe_yaml_node *root = fe_yaml_load(arena, diag, "s.yaml", text, strlen(text));
  ck_assert_msg(root != NULL, "YAML failed: %s", output());
  return fe_spec_read(arena, diag, "s.yaml", root);
}

static fe_spec *read_ok(const char *text) {
  fe_spec *spec = read_text(text);
  ck_assert_msg(spec != NULL, "spec failed:\n%s", output());
  assert_text(output(), "");
  return spec;
}

/* Reads a spec that must fail; returns the diagnostics. */
static const char *read_bad(const char *text) {
  ck_assert_msg(read_text(text) == NULL, "spec should fail:\n%s", text);
  return output();
}

/* A minimal valid spec around the given middle part. */
static const char *with(const char *middle) {
  return ir_arena_printf(arena,
                         "model: tiny\n"
                         "%s"
                         "graph:\n"
                         "  - y: relu(x)\n"
                         "outputs: [y]\n",
                         middle);
}

/* The first line of the diagnostics only. */
static const char *first_line(const char *s) {
  const char *nl = strchr(s, '\n');
  return ir_arena_strndup(arena, s, nl ? (size_t)(nl - s) : strlen(s));
}

/* ---- a whole spec ---- */

static const char *const gpt_mini =
    "model: gpt_mini\n"
    "dims:\n"
    "  B: 8\n"
    "  T: 128\n"
    "  V: 512\n"
    "  D: 256\n"
    "  H: 8\n"
    "  L: 4\n"
    "  F: 4*D\n"
    "inputs:\n"
    "  tokens:  i32[B, T]\n"
    "  targets: i32[B, T]\n"
    "blocks:\n"
    "  block:\n"
    "    args: [x]\n"
    "    body:\n"
    "      - ln1:  layernorm(x)\n"
    "      - attn: attention(ln1, heads=H, causal=true)\n"
    "      - x:    x + attn\n"
    "      - ln2:  layernorm(x)\n"
    "      - ffn:  mlp(ln2, F, act=gelu_tanh)\n"
    "      - x:    x + ffn\n"
    "    returns: x\n"
    "graph:\n"
    "  - tok:    embedding(tokens, V, D)\n"
    "  - pos:    position(T, D)\n"
    "  - x:      tok + pos\n"
    "  - layers: repeat(block, L, x)\n"
    "  - lnf:    layernorm(layers)\n"
    "  - logits: linear(lnf, V, bias=false, tied=tok)\n"
    "  - loss:   cross_entropy(logits, targets)\n"
    "outputs: [logits]\n"
    "train:\n"
    "  loss: loss\n"
    "  optimizer: adamw(lr=3e-4, betas=[0.9, 0.95], eps=1e-8, weight_decay=0.1)\n"
    "  schedule: cosine(warmup=100, steps=5000, min_lr=3e-5)\n"
    "  grad_clip: 1.0\n"
    "  accumulate: 2\n"
    "  precision: bf16\n"
    "  recompute: blocks\n"
    "  seed: 42\n";

START_TEST(whole_spec) {
  fe_spec *s = read_ok(gpt_mini);
  assert_text(s->file, "s.yaml");
  assert_text(s->model, "gpt_mini");
  ck_assert_int_eq(s->model_loc.line, 1);
  ck_assert_int_eq(s->model_loc.col, 8);
  ck_assert_int_eq(s->num_dims, 7);
  assert_text(s->dims[6].name, "F");
  ck_assert_int_eq(s->dims[6].value, 1024);
  ck_assert_int_eq(s->dims[6].loc.line, 9);
  int64_t v;
  ck_assert(fe_spec_dim(s, "V", &v));
  ck_assert_int_eq(v, 512);
  ck_assert(!fe_spec_dim(s, "X", &v));
  ck_assert_int_eq(s->num_inputs, 2);
  assert_text(s->inputs[1].name, "targets");
  ck_assert_int_eq(s->inputs[1].type.dtype, IR_i32);
  ck_assert_int_eq(s->inputs[1].type.rank, 2);
  ck_assert_int_eq(s->inputs[1].type.dims[0], 8);
  ck_assert_int_eq(s->inputs[1].type.dims[1], 128);
  ck_assert_int_eq(s->inputs[1].loc.line, 12);
  ck_assert_int_eq(s->num_blocks, 1);
  fe_block *b = &s->blocks[0];
  assert_text(b->name, "block");
  ck_assert_int_eq(b->loc.line, 14);
  ck_assert_int_eq(b->num_args, 1);
  assert_text(b->args[0].name, "x");
  ck_assert_int_eq(b->num_body, 6);
  assert_text(b->body[1].name, "attn");
  assert_text(fe_expr_format(arena, b->body[1].expr), "attention(ln1, heads=H, causal=true)");
  ck_assert_int_eq(b->num_returns, 1);
  assert_text(b->returns[0].name, "x");
  ck_assert_int_eq(s->num_graph, 7);
  assert_text(s->graph[5].name, "logits");
  ck_assert_int_eq(s->graph[5].name_loc.line, 30);
  ck_assert_int_eq(s->graph[5].name_loc.col, 5);
  ck_assert_int_eq(s->graph[5].expr->loc.col, 13);
  ck_assert_int_eq(s->num_outputs, 1);
  assert_text(s->outputs[0].name, "logits");
  ck_assert(s->has_train);
  fe_train *t = &s->train;
  assert_text(t->loss.name, "loss");
  ck_assert_int_eq(t->optimizer, FE_OPT_ADAMW);
  ck_assert(t->lr == 3e-4 && t->beta1 == 0.9 && t->beta2 == 0.95);
  ck_assert(t->eps == 1e-8 && t->weight_decay == 0.1);
  ck_assert_int_eq(t->schedule, FE_SCHED_COSINE);
  ck_assert_int_eq(t->warmup, 100);
  ck_assert_int_eq(t->steps, 5000);
  ck_assert(t->min_lr == 3e-5);
  ck_assert(t->grad_clip == 1.0);
  ck_assert_int_eq(t->accumulate, 2);
  ck_assert_int_eq(t->precision, IR_bf16);
  ck_assert(t->recompute_blocks);
  ck_assert_uint_eq(t->seed, 42);
  ck_assert_int_eq(t->optimizer_loc.line, 35);
  ck_assert_int_eq(t->schedule_loc.line, 36);
}
END_TEST

START_TEST(minimal_spec) {
  fe_spec *s = read_ok("model: m\ngraph:\n  - y: param([2])\noutputs: y\n");
  ck_assert_int_eq(s->num_dims, 0);
  ck_assert_int_eq(s->num_inputs, 0);
  ck_assert_int_eq(s->num_blocks, 0);
  ck_assert_int_eq(s->num_outputs, 1);
  assert_text(s->outputs[0].name, "y");
  ck_assert(!s->has_train);
}
END_TEST

/* Every spec in specs/ reads without a diagnostic. */
START_TEST(shipped_specs) {
  const char *src = getenv("MODELC_SOURCE_DIR");
  if (!src) src = ".";
  char *dir_path = ir_arena_printf(arena, "%s/specs", src);
  DIR *dir = opendir(dir_path);
  if (!dir) return; /* run outside the tree */
  struct dirent *ent;
  int count = 0;
  while ((ent = readdir(dir))) {
    size_t n = strlen(ent->d_name);
    if (n < 5 || strcmp(ent->d_name + n - 5, ".yaml") != 0) continue;
    char *path = ir_arena_printf(arena, "%s/%s", dir_path, ent->d_name);
    fe_spec *spec = fe_spec_load(arena, diag, path);
    ck_assert_msg(spec != NULL, "%s:\n%s", path, output());
    count++;
  }
  closedir(dir);
  assert_text(output(), "");
  ck_assert_int_gt(count, 0);
}
END_TEST

/* ---- dims ---- */

START_TEST(dims_in_order) {
  fe_spec *s = read_ok(with("dims:\n  D: 256\n  H: 8\n  HD: D/H\n  X: (D - 6) * 2 + -H\n"
                            "  Y: \"HD*2\"\n"));
  ck_assert_int_eq(s->num_dims, 5);
  ck_assert_int_eq(s->dims[2].value, 32);
  ck_assert_int_eq(s->dims[3].value, 492);
  ck_assert_int_eq(s->dims[4].value, 64);
}
END_TEST

START_TEST(dim_not_divisible) {
  assert_text(read_bad(with("dims:\n  D: 256\n  H: 3\n  HD: D/H\n")),
              "s.yaml:5:8: error: D/H: 256 is not divisible by 3\n"
              "   5 |   HD: D/H\n"
              "     |        ^\n");
}
END_TEST

START_TEST(dim_not_divisible_compound) {
  assert_text(first_line(read_bad(with("dims:\n  D: 10\n  X: (D + 1) / (D - 7)\n"))),
              "s.yaml:4:14: error: (D + 1)/(D - 7): 11 is not divisible by 3");
}
END_TEST

START_TEST(dim_zero_and_negative) {
  assert_text(read_bad(with("dims:\n  H: 0\n  D: 4 - 12\n")),
              "s.yaml:3:6: error: dim 'H' must be positive, got 0\n"
              "   3 |   H: 0\n"
              "     |      ^\n"
              "s.yaml:4:6: error: dim 'D' must be positive, got -8\n"
              "   4 |   D: 4 - 12\n"
              "     |      ^\n");
}
END_TEST

START_TEST(dim_used_before_definition) {
  assert_text(read_bad(with("dims:\n  B: 2\n  F: 4*D\n  D: 8\n")),
              "s.yaml:4:8: error: dim 'D' used before its definition\n"
              "   4 |   F: 4*D\n"
              "     |        ^\n"
              "s.yaml:5:3: note: 'D' is defined here\n"
              "   5 |   D: 8\n"
              "     |   ^\n");
}
END_TEST

START_TEST(dim_used_in_own_definition) {
  assert_text(first_line(read_bad(with("dims:\n  F: F + 1\n"))),
              "s.yaml:3:6: error: dim 'F' used in its own definition");
}
END_TEST

START_TEST(dim_unknown) {
  assert_text(first_line(read_bad(with("dims:\n  D: 8\n  F: 4*DD\n"))),
              "s.yaml:4:8: error: unknown dim 'DD'; did you mean 'D'?");
  teardown();
  setup();
  assert_text(first_line(read_bad(with("dims:\n  F: 4*Q\n"))),
              "s.yaml:3:8: error: unknown dim 'Q'");
}
END_TEST

START_TEST(dim_failure_is_reported_once) {
  /* H has no value, so HD and X that use it say nothing more */
  const char *s = read_bad(with("dims:\n  D: 256\n  H: 0\n  HD: D/H\n  X: HD + H\n"));
  assert_text(first_line(s), "s.yaml:4:6: error: dim 'H' must be positive, got 0");
  ck_assert_int_eq(diag_error_count(diag), 1);
}
END_TEST

START_TEST(dim_bad_values) {
  const char *s = read_bad(with("dims:\n  A: 2.5\n  B:\n  C: [1, 2]\n  D: relu(3)\n  E: \"x\"\n"
                                "  G: 2 @ 3\n  I: 9223372036854775807 * 2\n  J: 4 / (2 - 2)\n"
                                "  K: 4 +\n"));
  assert_text(s, "s.yaml:3:6: error: expected an integer, got 2.5\n"
                 "   3 |   A: 2.5\n"
                 "     |      ^\n"
                 "s.yaml:4:3: error: dim 'B' must be an integer expression, found nothing\n"
                 "   4 |   B:\n"
                 "     |   ^\n"
                 "s.yaml:5:6: error: dim 'C' must be an integer expression, found a list\n"
                 "   5 |   C: [1, 2]\n"
                 "     |      ^\n"
                 "s.yaml:6:6: error: expected an integer expression, found a call to 'relu'\n"
                 "   6 |   D: relu(3)\n"
                 "     |      ^\n"
                 "s.yaml:7:7: error: unknown dim 'x'\n"
                 "   7 |   E: \"x\"\n"
                 "     |       ^\n"
                 "s.yaml:8:8: error: '@' cannot be used in an integer expression\n"
                 "   8 |   G: 2 @ 3\n"
                 "     |        ^\n"
                 "s.yaml:9:26: error: integer overflow\n"
                 "   9 |   I: 9223372036854775807 * 2\n"
                 "     |                          ^\n"
                 "s.yaml:10:8: error: division by zero\n"
                 "  10 |   J: 4 / (2 - 2)\n"
                 "     |        ^\n"
                 "s.yaml:11:9: error: expected an expression, found end of expression\n"
                 "  11 |   K: 4 +\n"
                 "     |         ^\n");
}
END_TEST

START_TEST(dim_bad_names) {
  const char *s = read_bad(with("dims:\n  a-b: 1\n  f32: 2\n  \"\": 3\n  bf16: 4\n"));
  assert_text(s, "s.yaml:3:3: error: dim name 'a-b' is not an identifier\n"
                 "   3 |   a-b: 1\n"
                 "     |   ^\n"
                 "s.yaml:4:3: error: dim name 'f32' is a dtype name\n"
                 "   4 |   f32: 2\n"
                 "     |   ^\n"
                 "s.yaml:5:3: error: dim name '' is not an identifier\n"
                 "   5 |   \"\": 3\n"
                 "     |   ^\n"
                 "s.yaml:6:3: error: dim name 'bf16' is a dtype name\n"
                 "   6 |   bf16: 4\n"
                 "     |   ^\n");
}
END_TEST

START_TEST(dims_not_a_mapping) {
  assert_text(first_line(read_bad(with("dims: [B, T]\n"))),
              "s.yaml:2:7: error: 'dims' must be a mapping of name: value, found a list");
  teardown();
  setup();
  read_ok(with("dims:\n"));
}
END_TEST

/* ---- inputs ---- */

START_TEST(inputs) {
  fe_spec *s = read_ok(with("dims:\n  B: 2\n  T: 3\ninputs:\n  x: f32[B, T*2]\n"
                            "  ids: i64[B]\n  s: bf16[]\n  m: u8[1, 1, 1, 1, 1, 1, 1, 1]\n"
                            "  h: f16[B]\n  q: \"i32[T]\"\n"));
  ck_assert_int_eq(s->num_inputs, 6);
  ck_assert_int_eq(s->inputs[0].type.dtype, IR_f32);
  ck_assert_int_eq(s->inputs[0].type.dims[1], 6);
  ck_assert_int_eq(s->inputs[1].type.dtype, IR_i64);
  ck_assert_int_eq(s->inputs[2].type.dtype, IR_bf16);
  ck_assert_int_eq(s->inputs[2].type.rank, 0);
  ck_assert_int_eq(s->inputs[3].type.dtype, IR_u8);
  ck_assert_int_eq(s->inputs[3].type.rank, 8);
  ck_assert_int_eq(s->inputs[4].type.dtype, IR_f16);
  ck_assert_int_eq(s->inputs[5].type.dtype, IR_i32);
}
END_TEST

START_TEST(input_errors) {
  const char *s = read_bad(with("dims:\n  B: 2\ninputs:\n  x: f33[B]\n  y: float32[B]\n"
                                "  z: f64[B]\n  w: f32[B, 0]\n  v: f32[1,1,1,1,1,1,1,1,1]\n"
                                "  u: f32\n  B: f32[2]\n  t:\n  r: f32[Q]\n"));
  assert_text(s, "s.yaml:5:6: error: unknown dtype 'f33'; did you mean 'f32'?\n"
                 "   5 |   x: f33[B]\n"
                 "     |      ^\n"
                 "s.yaml:6:6: error: unknown dtype 'float32'; expected one of f32, bf16, f16, "
                 "i32, i64, u8\n"
                 "   6 |   y: float32[B]\n"
                 "     |      ^\n"
                 "s.yaml:7:6: error: unknown dtype 'f64'; expected one of f32, bf16, f16, i32, "
                 "i64, u8\n"
                 "   7 |   z: f64[B]\n"
                 "     |      ^\n"
                 "s.yaml:8:13: error: dimension of input 'w' must be positive, got 0\n"
                 "   8 |   w: f32[B, 0]\n"
                 "     |             ^\n"
                 "s.yaml:9:9: error: input 'v' has 9 dims; at most 8 are supported\n"
                 "   9 |   v: f32[1,1,1,1,1,1,1,1,1]\n"
                 "     |         ^\n"
                 "s.yaml:10:9: error: expected '[' after the dtype, found end of expression\n"
                 "  10 |   u: f32\n"
                 "     |         ^\n"
                 "s.yaml:11:3: error: input 'B' has the same name as a dim\n"
                 "  11 |   B: f32[2]\n"
                 "     |   ^\n"
                 "s.yaml:3:3: note: dim 'B' is defined here\n"
                 "   3 |   B: 2\n"
                 "     |   ^\n"
                 "s.yaml:12:3: error: input 't' must be a type such as i32[B, T], found nothing\n"
                 "  12 |   t:\n"
                 "     |   ^\n"
                 "s.yaml:13:10: error: unknown dim 'Q'\n"
                 "  13 |   r: f32[Q]\n"
                 "     |          ^\n");
}
END_TEST

/* ---- blocks ---- */

START_TEST(blocks) {
  fe_spec *s = read_ok(with("blocks:\n  a:\n    args: []\n    body:\n      - h: param([2])\n"
                            "    returns: [h, h2]\n  b:\n    args:\n      - x\n      - y\n"
                            "    body: [{z: x + y}]\n    returns: z\n"));
  ck_assert_int_eq(s->num_blocks, 2);
  ck_assert_int_eq(s->blocks[0].num_args, 0);
  ck_assert_int_eq(s->blocks[0].num_returns, 2);
  assert_text(s->blocks[0].returns[1].name, "h2");
  ck_assert_int_eq(s->blocks[1].num_args, 2);
  assert_text(s->blocks[1].args[1].name, "y");
  ck_assert_int_eq(s->blocks[1].num_body, 1);
  assert_text(s->blocks[1].body[0].name, "z");
}
END_TEST

START_TEST(block_unknown_key) {
  assert_text(read_bad(with("blocks:\n  block:\n    arg: [x]\n    body:\n"
                            "      - h: relu(x)\n    returns: h\n")),
              "s.yaml:4:5: error: unknown key 'arg' in block 'block'; did you mean 'args'?\n"
              "   4 |     arg: [x]\n"
              "     |     ^\n");
}
END_TEST

START_TEST(block_errors) {
  const char *s = read_bad(with("blocks:\n  a:\n    args: x\n    body: []\n    returns: [h, h]\n"
                                "    extra: 1\n  b: 3\n  c:\n    args: [x, x, 1y]\n"));
  assert_text(s, "s.yaml:7:5: error: unknown key 'extra' in block 'a'; expected one of args, "
                 "body, returns\n"
                 "   7 |     extra: 1\n"
                 "     |     ^\n"
                 "s.yaml:4:11: error: 'args' must be a list of names, found a scalar\n"
                 "   4 |     args: x\n"
                 "     |           ^\n"
                 "s.yaml:5:11: error: the body of block 'a' must be a list of '- name: "
                 "expression' entries, found an empty list\n"
                 "   5 |     body: []\n"
                 "     |           ^\n"
                 "s.yaml:6:18: error: duplicate return 'h'\n"
                 "   6 |     returns: [h, h]\n"
                 "     |                  ^\n"
                 "s.yaml:6:15: note: first listed here\n"
                 "   6 |     returns: [h, h]\n"
                 "     |               ^\n"
                 "s.yaml:8:6: error: block 'b' must be a mapping with args, body and returns, "
                 "found a scalar\n"
                 "   8 |   b: 3\n"
                 "     |      ^\n"
                 "s.yaml:9:3: error: block 'c' is missing 'body'\n"
                 "   9 |   c:\n"
                 "     |   ^\n"
                 "s.yaml:9:3: error: block 'c' is missing 'returns'\n"
                 "   9 |   c:\n"
                 "     |   ^\n"
                 "s.yaml:10:15: error: duplicate argument 'x'\n"
                 "  10 |     args: [x, x, 1y]\n"
                 "     |               ^\n"
                 "s.yaml:10:12: note: first listed here\n"
                 "  10 |     args: [x, x, 1y]\n"
                 "     |            ^\n"
                 "s.yaml:10:18: error: argument name '1y' is not an identifier\n"
                 "  10 |     args: [x, x, 1y]\n"
                 "     |                  ^\n");
}
END_TEST

/* ---- graph and outputs ---- */

START_TEST(graph_entry_errors) {
  const char *s = read_bad("model: m\n"
                           "graph:\n"
                           "  - y relu(x)\n"
                           "  - a: relu(x)\n"
                           "    b: relu(x)\n"
                           "  - c:\n"
                           "  - d: [a, b]\n"
                           "  - e: {f: 1}\n"
                           "  - g.h: relu(x)\n"
                           "  - {}\n"
                           "  - i: relu(x,)\n"
                           "outputs: [y]\n");
  assert_text(s, "s.yaml:3:5: error: a graph entry must be '- name: expression', found a scalar\n"
                 "   3 |   - y relu(x)\n"
                 "     |     ^\n"
                 "s.yaml:5:5: error: a graph entry holds one 'name: expression'; start a new "
                 "'- ' item for 'b'\n"
                 "   5 |     b: relu(x)\n"
                 "     |     ^\n"
                 "s.yaml:6:5: error: missing expression for 'c'\n"
                 "   6 |   - c:\n"
                 "     |     ^\n"
                 "s.yaml:7:8: error: the value of 'd' must be an expression, found a list; quote "
                 "an expression that starts with '['\n"
                 "   7 |   - d: [a, b]\n"
                 "     |        ^\n"
                 "s.yaml:8:8: error: the value of 'e' must be an expression, found a mapping\n"
                 "   8 |   - e: {f: 1}\n"
                 "     |        ^\n"
                 "s.yaml:9:5: error: node name 'g.h' is not an identifier\n"
                 "   9 |   - g.h: relu(x)\n"
                 "     |     ^\n"
                 "s.yaml:10:5: error: a graph entry must be '- name: expression', found an "
                 "empty mapping\n"
                 "  10 |   - {}\n"
                 "     |     ^\n"
                 "s.yaml:11:15: error: expected an expression, found ')'\n"
                 "  11 |   - i: relu(x,)\n"
                 "     |               ^\n");
}
END_TEST

START_TEST(graph_missing_or_empty) {
  assert_text(read_bad("model: m\noutputs: [y]\n"), "s.yaml:1:1: error: missing 'graph'\n"
                                                    "   1 | model: m\n"
                                                    "     | ^\n");
  teardown();
  setup();
  assert_text(first_line(read_bad("model: m\ngraph: []\noutputs: [y]\n")),
              "s.yaml:2:8: error: 'graph' must be a list of '- name: expression' entries, "
              "found an empty list");
  teardown();
  setup();
  assert_text(first_line(read_bad("model: m\ngraph:\noutputs: [y]\n")),
              "s.yaml:2:7: error: 'graph' must be a list of '- name: expression' entries, "
              "found nothing");
}
END_TEST

START_TEST(quoted_graph_expressions) {
  fe_spec *s = read_ok("model: m\ngraph:\n  - y: '[1, 2]'\n  - z: \"-y @ y\"\noutputs: [z]\n");
  ck_assert_int_eq(s->graph[0].expr->kind, FE_EXPR_LIST);
  assert_text(fe_expr_format(arena, s->graph[1].expr), "-y @ y");
}
END_TEST

START_TEST(output_errors) {
  const char *s = read_bad("model: m\ngraph:\n  - y: relu(x)\noutputs: [y, y, a b, [c]]\n");
  assert_text(s, "s.yaml:4:14: error: duplicate output 'y'\n"
                 "   4 | outputs: [y, y, a b, [c]]\n"
                 "     |              ^\n"
                 "s.yaml:4:11: note: first listed here\n"
                 "   4 | outputs: [y, y, a b, [c]]\n"
                 "     |           ^\n"
                 "s.yaml:4:17: error: output name 'a b' is not an identifier\n"
                 "   4 | outputs: [y, y, a b, [c]]\n"
                 "     |                 ^\n"
                 "s.yaml:4:22: error: expected the name of the output, found a list\n"
                 "   4 | outputs: [y, y, a b, [c]]\n"
                 "     |                      ^\n");
  teardown();
  setup();
  assert_text(first_line(read_bad("model: m\ngraph:\n  - y: relu(x)\noutputs: []\n")),
              "s.yaml:4:10: error: 'outputs' is empty");
  teardown();
  setup();
  assert_text(first_line(read_bad("model: m\ngraph:\n  - y: relu(x)\n")),
              "s.yaml:1:1: error: missing 'outputs'");
  teardown();
  setup();
  assert_text(first_line(read_bad("model: m\ngraph:\n  - y: relu(x)\noutputs: {a: 1}\n")),
              "s.yaml:4:10: error: 'outputs' must be a list of names, found a mapping");
}
END_TEST

/* ---- the top level ---- */

START_TEST(top_level_keys) {
  const char *s = read_bad("model: m\ndim:\n  B: 2\ngraphs:\n  - y: relu(x)\nfoo: 1\noutputs: y\n");
  assert_text(s, "s.yaml:2:1: error: unknown top-level key 'dim'; did you mean 'dims'?\n"
                 "   2 | dim:\n"
                 "     | ^\n"
                 "s.yaml:4:1: error: unknown top-level key 'graphs'; did you mean 'graph'?\n"
                 "   4 | graphs:\n"
                 "     | ^\n"
                 "s.yaml:6:1: error: unknown top-level key 'foo'; expected one of model, dims, "
                 "inputs, blocks, graph, outputs, train\n"
                 "   6 | foo: 1\n"
                 "     | ^\n");
}
END_TEST

START_TEST(top_level_not_a_mapping) {
  diag_add_file(diag, "s.yaml", "- a\n", 4);
  fe_yaml_node *root = fe_yaml_load(arena, diag, "s.yaml", "- a\n", 4);
  ck_assert_ptr_null(fe_spec_read(arena, diag, "s.yaml", root));
  assert_text(first_line(output()),
              "s.yaml:1:1: error: a spec must be a mapping with model, dims, inputs, graph, "
              "..., found a list");
  ck_assert_ptr_null(fe_spec_read(arena, diag, "s.yaml", NULL));
}
END_TEST

START_TEST(model_names) {
  assert_text(first_line(read_bad("model: 3tiny-model\ngraph:\n  - y: relu(x)\noutputs: y\n")),
              "s.yaml:1:8: error: model name '3tiny-model' is not a C identifier");
  teardown();
  setup();
  assert_text(first_line(read_bad("model: int\ngraph:\n  - y: relu(x)\noutputs: y\n")),
              "s.yaml:1:8: error: model name 'int' is a C keyword");
  teardown();
  setup();
  assert_text(first_line(read_bad("model:\ngraph:\n  - y: relu(x)\noutputs: y\n")),
              "s.yaml:1:7: error: 'model' must be a C identifier, found nothing");
  teardown();
  setup();
  assert_text(first_line(read_bad("graph:\n  - y: relu(x)\noutputs: y\n")),
              "s.yaml:1:1: error: missing 'model'");
}
END_TEST

START_TEST(stops_when_full) {
  char *text = ir_arena_strdup(arena, "model: m\ndims:\n");
  for (int i = 0; i < 40; i++) text = ir_arena_printf(arena, "%s  D%d: 0\n", text, i);
  text = ir_arena_printf(arena, "%sgraph: 1\noutputs: 2\ntrain: 3\n", text);
  ck_assert_ptr_null(read_text(text));
  ck_assert_int_eq(diag_error_count(diag), DIAG_MAX_ERRORS);
}
END_TEST

/* ---- train ---- */

static fe_train *train_ok(const char *train) {
  fe_spec *s = read_ok(with(ir_arena_printf(arena, "dims:\n  B: 4\ntrain:\n%s", train)));
  ck_assert(s->has_train);
  return &s->train;
}

static const char *train_bad(const char *train) {
  return read_bad(with(ir_arena_printf(arena, "dims:\n  B: 4\ntrain:\n%s", train)));
}

START_TEST(train_defaults) {
  fe_train *t = train_ok("  loss: y\n");
  assert_text(t->loss.name, "y");
  ck_assert_int_eq(t->loss.loc.line, 5);
  ck_assert_int_eq(t->loc.line, 4);
  ck_assert_int_eq(t->optimizer, FE_OPT_ADAMW);
  ck_assert(t->lr == 1e-3 && t->beta1 == 0.9 && t->beta2 == 0.999);
  ck_assert(t->eps == 1e-8 && t->weight_decay == 0.01);
  ck_assert_int_eq(t->schedule, FE_SCHED_CONSTANT);
  ck_assert_int_eq(t->warmup, 0);
  ck_assert(t->min_lr == 0);
  ck_assert(t->grad_clip == 0);
  ck_assert_int_eq(t->accumulate, 1);
  ck_assert_int_eq(t->precision, IR_f32);
  ck_assert(!t->recompute_blocks);
  ck_assert_uint_eq(t->seed, 1337);
}
END_TEST

START_TEST(train_sgd) {
  fe_train *t = train_ok("  loss: y\n  optimizer: sgd(0.1, momentum=0.9, nesterov=true)\n");
  ck_assert_int_eq(t->optimizer, FE_OPT_SGD);
  ck_assert(t->lr == 0.1 && t->momentum == 0.9 && t->nesterov);
  ck_assert(t->weight_decay == 0);
  t = train_ok("  loss: y\n  optimizer: sgd(lr=1e-2, weight_decay=1e-4)\n");
  ck_assert(t->lr == 1e-2 && t->weight_decay == 1e-4 && t->momentum == 0 && !t->nesterov);
}
END_TEST

START_TEST(train_values_from_dims) {
  fe_train *t = train_ok("  loss: y\n  optimizer: adamw(1e-3 * B, weight_decay=0)\n"
                         "  schedule: linear(B, B * 100, 1e-5)\n  accumulate: B / 2\n  seed: 0\n"
                         "  grad_clip: 0.5\n");
  ck_assert(t->lr == 4e-3);
  ck_assert(t->weight_decay == 0);
  ck_assert_int_eq(t->schedule, FE_SCHED_LINEAR);
  ck_assert_int_eq(t->warmup, 4);
  ck_assert_int_eq(t->steps, 400);
  ck_assert(t->min_lr == 1e-5);
  ck_assert_int_eq(t->accumulate, 2);
  ck_assert_uint_eq(t->seed, 0);
  ck_assert(t->grad_clip == 0.5);
  t = train_ok("  loss: y\n  optimizer: adamw\n  schedule: constant(warmup=10)\n");
  ck_assert_int_eq(t->warmup, 10);
  ck_assert_int_eq(t->schedule, FE_SCHED_CONSTANT);
  t = train_ok("  loss: y\n  schedule: cosine(steps=10, warmup=10)\n");
  ck_assert_int_eq(t->schedule, FE_SCHED_COSINE);
}
END_TEST

START_TEST(train_value_errors) {
  const char *s = train_bad("  loss: y\n"
                            "  optimizer: sgd(momentum=0.9)\n"
                            "  grad_clip: -1\n"
                            "  accumulate: 0\n"
                            "  precision: f64\n"
                            "  recompute: everything\n"
                            "  seed: -1\n");
  assert_text(s, "s.yaml:6:14: error: sgd() requires lr\n"
                 "   6 |   optimizer: sgd(momentum=0.9)\n"
                 "     |              ^\n"
                 "s.yaml:7:14: error: grad_clip must be non-negative, got -1\n"
                 "   7 |   grad_clip: -1\n"
                 "     |              ^\n"
                 "s.yaml:8:15: error: accumulate must be at least 1, got 0\n"
                 "   8 |   accumulate: 0\n"
                 "     |               ^\n"
                 "s.yaml:9:14: error: precision must be f32 or bf16, got 'f64'\n"
                 "   9 |   precision: f64\n"
                 "     |              ^\n"
                 "s.yaml:10:14: error: recompute must be none or blocks, got 'everything'\n"
                 "  10 |   recompute: everything\n"
                 "     |              ^\n"
                 "s.yaml:11:9: error: seed must be non-negative, got -1\n"
                 "  11 |   seed: -1\n"
                 "     |         ^\n");
}
END_TEST

START_TEST(train_optimizer_errors) {
  assert_text(first_line(train_bad("  loss: y\n  optimizer: adam(lr=1e-3)\n")),
              "s.yaml:6:14: error: unknown optimizer 'adam'; expected adamw or sgd");
  teardown();
  setup();
  const char *s =
      train_bad("  loss: y\n"
                "  optimizer: adamw(1e-3, 0.9, lr=1, weight_decy=0.1, amsgrad=true, betas=[0.9], "
                "eps=-1)\n");
  assert_text(s, "s.yaml:6:26: error: too many positional arguments for adamw(): expected at "
                 "most 1\n"
                 "   6 |   optimizer: adamw(1e-3, 0.9, lr=1, weight_decy=0.1, amsgrad=true, "
                 "betas=[0.9], eps=-1)\n"
                 "     |                          ^\n"
                 "s.yaml:6:31: error: 'lr' is given both by position and by keyword\n"
                 "   6 |   optimizer: adamw(1e-3, 0.9, lr=1, weight_decy=0.1, amsgrad=true, "
                 "betas=[0.9], eps=-1)\n"
                 "     |                               ^\n"
                 "s.yaml:6:37: error: unknown keyword argument 'weight_decy' for adamw(); did "
                 "you mean 'weight_decay'?\n"
                 "   6 |   optimizer: adamw(1e-3, 0.9, lr=1, weight_decy=0.1, amsgrad=true, "
                 "betas=[0.9], eps=-1)\n"
                 "     |                                     ^\n"
                 "s.yaml:6:54: error: unknown keyword argument 'amsgrad' for adamw(); expected "
                 "one of lr, betas, eps, weight_decay\n"
                 "   6 |   optimizer: adamw(1e-3, 0.9, lr=1, weight_decy=0.1, amsgrad=true, "
                 "betas=[0.9], eps=-1)\n"
                 "     |                                                      ^\n");
  teardown();
  setup();
  s = train_bad("  loss: y\n  optimizer: adamw(betas=[0.9, 1.0], eps=-1, lr=x)\n");
  assert_text(s, "s.yaml:6:49: error: unknown dim 'x'\n"
                 "   6 |   optimizer: adamw(betas=[0.9, 1.0], eps=-1, lr=x)\n"
                 "     |                                                 ^\n"
                 "s.yaml:6:32: error: betas[1] must be in [0, 1), got 1\n"
                 "   6 |   optimizer: adamw(betas=[0.9, 1.0], eps=-1, lr=x)\n"
                 "     |                                ^\n"
                 "s.yaml:6:42: error: eps must be non-negative, got -1\n"
                 "   6 |   optimizer: adamw(betas=[0.9, 1.0], eps=-1, lr=x)\n"
                 "     |                                          ^\n");
}
END_TEST

START_TEST(train_optimizer_shape_errors) {
  assert_text(first_line(train_bad("  loss: y\n  optimizer: adamw(betas=0.9)\n")),
              "s.yaml:6:26: error: betas must be a list of two numbers, such as [0.9, 0.999]");
  teardown();
  setup();
  assert_text(first_line(train_bad("  loss: y\n  optimizer: sgd(0.1, nesterov=true)\n")),
              "s.yaml:6:32: error: nesterov=true requires momentum > 0");
  teardown();
  setup();
  assert_text(first_line(train_bad("  loss: y\n  optimizer: sgd(0.1, nesterov=1)\n")),
              "s.yaml:6:32: error: nesterov must be true or false, got 1");
  teardown();
  setup();
  assert_text(first_line(train_bad("  loss: y\n  optimizer: 0.1\n")),
              "s.yaml:6:14: error: optimizer must be a call such as adamw(lr=3e-4), found "
              "0.1");
  teardown();
  setup();
  assert_text(first_line(train_bad("  loss: y\n  optimizer: \"adamw(lr=1e-3\"\n")),
              "s.yaml:6:28: error: expected ',' or ')' to close '('");
}
END_TEST

START_TEST(train_schedule_errors) {
  assert_text(first_line(train_bad("  loss: y\n  schedule: cosin(warmup=10, steps=100)\n")),
              "s.yaml:6:13: error: unknown schedule 'cosin'; expected constant, cosine or "
              "linear");
  teardown();
  setup();
  assert_text(first_line(train_bad("  loss: y\n  schedule: cosine(warmup=10)\n")),
              "s.yaml:6:13: error: cosine() requires steps");
  teardown();
  setup();
  assert_text(first_line(train_bad("  loss: y\n  schedule: linear(200, 100)\n")),
              "s.yaml:6:20: error: warmup (200) must not exceed steps (100)");
  teardown();
  setup();
  assert_text(first_line(train_bad("  loss: y\n  schedule: constant(steps=100)\n")),
              "s.yaml:6:22: error: unknown keyword argument 'steps' for constant(); expected "
              "one of warmup");
  teardown();
  setup();
  assert_text(first_line(train_bad("  loss: y\n  schedule: cosine(warmup=-1, steps=0)\n")),
              "s.yaml:6:27: error: warmup must be non-negative, got -1");
  ck_assert_int_eq(diag_error_count(diag), 2);
  teardown();
  setup();
  assert_text(first_line(train_bad("  loss: y\n  schedule: linear(1, 2, 3, 4)\n")),
              "s.yaml:6:29: error: too many positional arguments for linear(): expected at "
              "most 3");
  teardown();
  setup();
  assert_text(first_line(train_bad("  loss: y\n  schedule: cosine(warmup=2.5, steps=10)\n")),
              "s.yaml:6:27: error: expected an integer, got 2.5");
}
END_TEST

START_TEST(train_keys) {
  const char *s = train_bad("  los: y\n  optimiser: adamw()\n");
  assert_text(s, "s.yaml:5:3: error: unknown key 'los' in train; did you mean 'loss'?\n"
                 "   5 |   los: y\n"
                 "     |   ^\n"
                 "s.yaml:6:3: error: unknown key 'optimiser' in train; did you mean "
                 "'optimizer'?\n"
                 "   6 |   optimiser: adamw()\n"
                 "     |   ^\n");
  teardown();
  setup();
  assert_text(first_line(train_bad("  optimizer: adamw()\n")),
              "s.yaml:4:1: error: missing 'loss' in train");
  teardown();
  setup();
  assert_text(first_line(train_bad("")),
              "s.yaml:4:1: error: 'train' must be a mapping with at least 'loss', found "
              "nothing");
  teardown();
  setup();
  assert_text(first_line(train_bad("  loss: [y]\n")),
              "s.yaml:5:9: error: expected the name of the loss, found a list");
}
END_TEST

/* ---- loading files, evaluating ---- */

START_TEST(load_missing_file) {
  ck_assert_ptr_null(fe_spec_load(arena, diag, "/nonexistent/x.yaml"));
  assert_text(output(),
              "modelc: error: cannot read '/nonexistent/x.yaml': No such file or directory\n");
}
END_TEST

START_TEST(load_directory) {
  ck_assert_ptr_null(fe_spec_load(arena, diag, "/"));
  assert_text(output(), "modelc: error: cannot read '/': Is a directory\n");
}
END_TEST

START_TEST(load_file) {
  char path[] = "/tmp/modelc_test_spec_XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  FILE *f = fdopen(fd, "w");
  /* big enough to need several reads */
  fputs("model: m\ngraph:\n", f);
  for (int i = 0; i < 500; i++) fprintf(f, "  - y%d: relu(x)  # a comment to make it long\n", i);
  fputs("outputs: [y0]\ndims:\n  D: 0\n", f);
  fclose(f);
  ck_assert_ptr_null(fe_spec_load(arena, diag, path));
  char *want = ir_arena_printf(arena,
                               "%s:505:6: error: dim 'D' must be positive, got 0\n"
                               " 505 |   D: 0\n"
                               "     |      ^\n",
                               path);
  assert_text(output(), want);
  remove(path);
}
END_TEST

START_TEST(eval_int) {
  fe_spec *s = read_ok(with("dims:\n  D: 12\n  H: 4\n"));
  int64_t v = 0;
  fe_expr *e = fe_parse_expression(arena, diag, "D / H * 2 - -1", 14, NULL, (ir_loc){"e", 1, 1});
  ck_assert(fe_eval_int(diag, s, e, &v));
  ck_assert_int_eq(v, 7);
  e = fe_parse_expression(arena, diag, "D / 5", 5, NULL, (ir_loc){"e", 1, 1});
  ck_assert(!fe_eval_int(diag, s, e, &v));
  e = fe_parse_expression(arena, diag, "Q", 1, NULL, (ir_loc){"e", 1, 1});
  ck_assert(!fe_eval_int(diag, s, e, &v));
  ck_assert(!fe_eval_int(diag, NULL, e, &v));
  ck_assert(!fe_eval_int(diag, s, NULL, &v));
  assert_text(output(), "e:1:3: error: D/5: 12 is not divisible by 5\n"
                        "e:1:1: error: unknown dim 'Q'\n"
                        "e:1:1: error: unknown dim 'Q'\n");
}
END_TEST

static Suite *spec_suite(void) {
  Suite *s = suite_create("fe_spec");
  TCase *tc = tcase_create("spec");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, whole_spec);
  tcase_add_test(tc, minimal_spec);
  tcase_add_test(tc, shipped_specs);
  tcase_add_test(tc, top_level_keys);
  tcase_add_test(tc, top_level_not_a_mapping);
  tcase_add_test(tc, model_names);
  tcase_add_test(tc, stops_when_full);
  suite_add_tcase(s, tc);
  TCase *dims = tcase_create("dims");
  tcase_add_checked_fixture(dims, setup, teardown);
  tcase_add_test(dims, dims_in_order);
  tcase_add_test(dims, dim_not_divisible);
  tcase_add_test(dims, dim_not_divisible_compound);
  tcase_add_test(dims, dim_zero_and_negative);
  tcase_add_test(dims, dim_used_before_definition);
  tcase_add_test(dims, dim_used_in_own_definition);
  tcase_add_test(dims, dim_unknown);
  tcase_add_test(dims, dim_failure_is_reported_once);
  tcase_add_test(dims, dim_bad_values);
  tcase_add_test(dims, dim_bad_names);
  tcase_add_test(dims, dims_not_a_mapping);
  tcase_add_test(dims, eval_int);
  suite_add_tcase(s, dims);
  TCase *parts = tcase_create("sections");
  tcase_add_checked_fixture(parts, setup, teardown);
  tcase_add_test(parts, inputs);
  tcase_add_test(parts, input_errors);
  tcase_add_test(parts, blocks);
  tcase_add_test(parts, block_unknown_key);
  tcase_add_test(parts, block_errors);
  tcase_add_test(parts, graph_entry_errors);
  tcase_add_test(parts, graph_missing_or_empty);
  tcase_add_test(parts, quoted_graph_expressions);
  tcase_add_test(parts, output_errors);
  suite_add_tcase(s, parts);
  TCase *train = tcase_create("train");
  tcase_add_checked_fixture(train, setup, teardown);
  tcase_add_test(train, train_defaults);
  tcase_add_test(train, train_sgd);
  tcase_add_test(train, train_values_from_dims);
  tcase_add_test(train, train_value_errors);
  tcase_add_test(train, train_optimizer_errors);
  tcase_add_test(train, train_optimizer_shape_errors);
  tcase_add_test(train, train_schedule_errors);
  tcase_add_test(train, train_keys);
  suite_add_tcase(s, train);
  TCase *files = tcase_create("files");
  tcase_add_checked_fixture(files, setup, teardown);
  tcase_add_test(files, load_missing_file);
  tcase_add_test(files, load_directory);
  tcase_add_test(files, load_file);
  suite_add_tcase(s, files);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(spec_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
