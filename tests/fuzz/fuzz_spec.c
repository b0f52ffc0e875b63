/* fuzz_spec.c: the spec front end and everything after it that `modelc
 * check` and `build` run, on arbitrary bytes as a spec file: YAML, the
 * top level, the graph in each mode, the pass pipeline with the verifier
 * after every pass, statistics, lowering to kernels, planning, and the C
 * rendering of every kernel.
 *
 * A spec the front end accepts must go through the rest: a pass, the
 * verifier or lowering failing on it is what `modelc` reports as an
 * internal error (exit 2), so the harness aborts there. */
#include <stdlib.h>
#include <string.h>

#include "codegen/cg.h"
#include "compiler/fe.h"
#include "fuzz.h"

static void fuzz_internal(const char *what, const char *err) {
  fprintf(stderr, "internal error on an accepted spec: %s: %s\n", what, err);
  abort();
}

static void fuzz_lower(ir_arena *arena, const fe_spec *spec, diag_engine *d) {
  static const fe_mode modes[3] = {FE_MODE_INFER, FE_MODE_EVAL, FE_MODE_TRAIN};
  static const char *const names[3] = {"forward", "evaluate", "train"};
  cg_program *p = cg_program_new(arena, spec->model);
  for (int i = 0; i < 3; i++) {
    if (i > 0 && !spec->has_train) break;
    ir_graph *g = fe_build_graph(arena, d, spec, modes[i]);
    if (!g) return; /* reported: an error in the spec */
    char err[IR_ERR_LEN];
    ir_pass_options opts = {.verify_each = true};
    if (!ir_run_pipeline(g, &opts, err, sizeof err)) fuzz_internal(names[i], err);
    ir_stats stats;
    ir_graph_stats(g, &stats);
    if (!cg_lower_entry(p, names[i], g, err, sizeof err)) {
      /* The C backend refuses some inputs it cannot take (dtypes other
       * than f32 and i32): `modelc` checks those before lowering. */
      for (int k = 0; k < spec->num_inputs; k++)
        if (spec->inputs[k].type.dtype != IR_f32 && spec->inputs[k].type.dtype != IR_i32) return;
      fuzz_internal(names[i], err);
    }
  }
  p->bf16 = spec->has_train && spec->train.precision == IR_bf16;
  cg_plan(p);
  for (int i = 0; i < p->num_entries; i++) {
    const cg_entry *entry = &p->entries[i];
    for (int k = 0; k < entry->num_kernels; k++) {
      if (entry->kernels[k].kind == CG_K_ASSIGN) continue;
      cg_emitter e;
      cg_emit_init(&e, arena);
      cg_render_c_kernel(&e, p, entry, &entry->kernels[k]);
      (void)cg_emit_text(&e);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ir_arena *arena = ir_arena_new();
  char *text = ir_arena_alloc(arena, size + 1);
  if (size) memcpy(text, data, size);
  text[size] = '\0';
  diag_engine *d = diag_new(arena, fuzz_null_stream());
  diag_add_file(d, "fuzz.yaml", text, size);
  fe_yaml_node *root = fe_yaml_load(arena, d, "fuzz.yaml", text, size);
  fe_spec *spec = root ? fe_spec_read(arena, d, "fuzz.yaml", root) : NULL;
  if (spec) fuzz_lower(arena, spec, d);
  diag_finish(d);
  ir_arena_free(arena);
  return 0;
}
