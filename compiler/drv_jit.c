/* drv_jit.c: `modelc run`, `train`, `sample` and `bench` through LLVM's ORC JIT:
 * the spec's kernels are rendered to LLVM IR (cg_render_llvm.c),
 * optimised for this CPU and compiled in memory; the model around them
 * is the runtime's table model, and the runtime is the one linked into
 * modelc itself (the JIT resolves modelc_rt_* and libm through this
 * process's symbols). The runtime's driver then does the work in this
 * process, as MODEL_main does on the C path. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>

#include "codegen/cg_llvm.h"
#include "compiler/drv.h"
#include "modelc_rt.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool failed(LLVMErrorRef e, const char *what) {
  if (!e) return false;
  char *text = LLVMGetErrorMessage(e);
  fprintf(stderr, "modelc: internal error: %s: %s\n", what, text);
  LLVMDisposeErrorMessage(text);
  return true;
}

typedef struct jit_model {
  LLVMOrcLLJITRef jit;
  const modelc_rt_table_source *table;
} jit_model;

/* Spec -> IR -> optimised module -> JIT; the address of MODEL_table. */
static int jit_compile(ir_arena *a, const char *spec_path, jit_model *out) {
  double start = now();
  cg_program *p;
  cg_spec_info info;
  int rc = drv_compile(a, spec_path, &p, &info);
  if (rc != DRV_OK) return rc;
  double lowered = now();
  char err[512];
  LLVMTargetMachineRef tm = cg_llvm_target_machine(NULL, NULL, NULL, err, sizeof err);
  if (!tm) {
    fprintf(stderr, "modelc: internal error: %s\n", err);
    return DRV_INTERNAL_ERROR;
  }
  LLVMOrcJITTargetMachineBuilderRef jtmb;
  LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
  if (failed(LLVMOrcJITTargetMachineBuilderDetectHost(&jtmb), "the JIT's target")) return DRV_INTERNAL_ERROR;
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, jtmb);
  if (failed(LLVMOrcCreateLLJIT(&out->jit, builder), "creating the JIT")) return DRV_INTERNAL_ERROR;
  LLVMOrcDefinitionGeneratorRef generator;
  if (failed(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&generator, LLVMOrcLLJITGetGlobalPrefix(out->jit),
                                                                   NULL, NULL),
             "the process's symbols"))
    return DRV_INTERNAL_ERROR;
  LLVMOrcJITDylibRef dylib = LLVMOrcLLJITGetMainJITDylib(out->jit);
  LLVMOrcJITDylibAddGenerator(dylib, generator);

  LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
  LLVMModuleRef module = cg_render_llvm(p, &info, LLVMOrcThreadSafeContextGetContext(tsc), tm, false);
  double rendered = now();
  bool ok = cg_llvm_optimize(module, tm, err, sizeof err);
  LLVMDisposeTargetMachine(tm);
  if (!ok) {
    fprintf(stderr, "modelc: internal error: %s\n", err);
    return DRV_INTERNAL_ERROR;
  }
  double optimised = now();
  LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(module, tsc);
  LLVMOrcDisposeThreadSafeContext(tsc);
  if (failed(LLVMOrcLLJITAddLLVMIRModule(out->jit, dylib, tsm), "adding the module")) return DRV_INTERNAL_ERROR;
  LLVMOrcExecutorAddress address = 0;
  const char *name = ir_arena_printf(a, "%s_table", p->model);
  if (failed(LLVMOrcLLJITLookup(out->jit, &address, name), "compiling the model")) return DRV_INTERNAL_ERROR;
  out->table = (const modelc_rt_table_source *)(uintptr_t)address;
  double done = now();
  const char *show = getenv("MODELC_TIME");
  if (show && *show && strcmp(show, "0") != 0)
    fprintf(stderr,
            "modelc: %s: spec to runnable code %.3f s (front end and lowering %.3f, LLVM IR %.3f, "
            "O3 %.3f, machine code %.3f)\n",
            p->model, done - start, lowered - start, rendered - lowered, optimised - rendered, done - optimised);
  return DRV_OK;
}

int drv_jit_exec(const char *spec, const char *command, int argc, char **argv) {
  ir_arena *a = ir_arena_new();
  jit_model jm = {0};
  int rc = jit_compile(a, spec, &jm);
  ir_arena_free(a);
  if (rc == DRV_OK) {
    char err[512];
    modelc_rt_model *model = modelc_rt_table_describe(jm.table, err, sizeof err);
    if (!model) {
      fprintf(stderr, "modelc: internal error: %s\n", err);
      rc = DRV_INTERNAL_ERROR;
    } else {
      char **args = malloc(sizeof(char *) * (size_t)(argc + 3));
      if (!args) return DRV_INTERNAL_ERROR;
      args[0] = "modelc";
      args[1] = (char *)command;
      for (int i = 0; i < argc; i++) args[i + 2] = argv[i];
      args[argc + 2] = NULL;
      fflush(stdout);
      rc = modelc_rt_main(argc + 2, args, model); /* run, train, sample or bench */
      free(args);
      modelc_rt_table_release(model);
    }
  }
  if (jm.jit) LLVMOrcDisposeLLJIT(jm.jit);
  return rc;
}
