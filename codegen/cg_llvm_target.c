/* cg_llvm_target.c: the LLVM side of the backend that is not rendering:
 * target machines (the host's CPU and features, or a cross triple), the
 * O3 pipeline, and `modelc build -t obj`'s files. */
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "codegen/cg_llvm.h"

void cg_llvm_init(void) {
  static bool done;
  if (done) return;
  done = true;
  LLVMInitializeAllTargetInfos();
  LLVMInitializeAllTargets();
  LLVMInitializeAllTargetMCs();
  LLVMInitializeAllAsmPrinters();
}

LLVMTargetMachineRef cg_llvm_target_machine(const char *triple, const char *cpu, const char *features,
                                            char *err, size_t errlen) {
  cg_llvm_init();
  char *host_triple = LLVMGetDefaultTargetTriple(), *host_cpu = NULL, *host_features = NULL;
  bool host = !triple;
  if (host) {
    triple = host_triple;
    /* The host's CPU with its features (AVX2, AVX-512, ...); a CPU named
     * by the caller brings its own. */
    if (!cpu) {
      host_cpu = LLVMGetHostCPUName();
      host_features = LLVMGetHostCPUFeatures();
      cpu = host_cpu;
      if (!features) features = host_features;
    }
  }
  /* An unknown CPU name is ignored by LLVM with a warning; on x86-64 it
   * would also lose the 64-bit feature and abort code generation. */
  if (!features && cpu && strncmp(triple, "x86_64", 6) == 0) features = "+64bit";
  LLVMTargetRef target;
  char *message = NULL;
  LLVMTargetMachineRef tm = NULL;
  if (LLVMGetTargetFromTriple(triple, &target, &message) != 0) {
    snprintf(err, errlen, "no LLVM target for '%s': %s", triple, message ? message : "");
  } else {
    tm = LLVMCreateTargetMachine(target, triple, cpu ? cpu : "generic", features ? features : "",
                                 LLVMCodeGenLevelAggressive, LLVMRelocPIC, LLVMCodeModelDefault);
    if (!tm) snprintf(err, errlen, "cannot make a target machine for '%s' (cpu %s)", triple, cpu ? cpu : "generic");
  }
  /* The step and argument records (modelc_rt.h) are 8-byte fields. */
  if (tm) {
    LLVMTargetDataRef layout = LLVMCreateTargetDataLayout(tm);
    unsigned pointer = LLVMPointerSize(layout);
    LLVMDisposeTargetData(layout);
    if (pointer != 8) {
      snprintf(err, errlen, "no LLVM target for '%s': the LLVM backend needs a 64-bit target", triple);
      LLVMDisposeTargetMachine(tm);
      tm = NULL;
    }
  }
  LLVMDisposeMessage(message);
  LLVMDisposeMessage(host_triple);
  LLVMDisposeMessage(host_cpu);
  LLVMDisposeMessage(host_features);
  return tm;
}

bool cg_llvm_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm, char *err, size_t errlen) {
  char *message = NULL;
  if (LLVMVerifyModule(m, LLVMReturnStatusAction, &message) != 0) {
    snprintf(err, errlen, "invalid LLVM module: %.400s", message ? message : "");
    LLVMDisposeMessage(message);
    return false;
  }
  LLVMDisposeMessage(message);
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMPassBuilderOptionsSetLoopVectorization(opts, 1);
  LLVMPassBuilderOptionsSetSLPVectorization(opts, 1);
  LLVMPassBuilderOptionsSetLoopInterleaving(opts, 1);
  /* Unrolling off: the vectoriser already interleaves the loops, and
   * unrolling on top made specs/gpt2.yaml take 3.4 s instead of 0.5 s
   * to compile (docs/performance.md). */
  LLVMPassBuilderOptionsSetLoopUnrolling(opts, 0);
  LLVMErrorRef e = LLVMRunPasses(m, "default<O3>", tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  if (e) {
    char *text = LLVMGetErrorMessage(e);
    snprintf(err, errlen, "LLVM optimisation failed: %s", text);
    LLVMDisposeErrorMessage(text);
    return false;
  }
  return true;
}

static bool write_text(const char *path, const char *text, char *err, size_t errlen) {
  FILE *f = fopen(path, "wb");
  size_t n = strlen(text);
  bool ok = f && fwrite(text, 1, n, f) == n;
  if (f) ok = fclose(f) == 0 && ok;
  if (!ok) snprintf(err, errlen, "cannot write '%s'", path);
  return ok;
}

bool cg_write_obj(const cg_program *p, const cg_spec_info *info, const char *dir, const char *triple,
                  const char *cpu, bool emit_llvm, char *err, size_t errlen) {
  ir_arena *a = p->arena;
  LLVMTargetMachineRef tm = cg_llvm_target_machine(triple, cpu, NULL, err, errlen);
  if (!tm) return false;
  LLVMContextRef c = LLVMContextCreate();
  LLVMModuleRef m = cg_render_llvm(p, info, c, tm, true);
  bool ok = cg_llvm_optimize(m, tm, err, errlen);
  /* Written to temporary names and renamed: no partial file on failure. */
  const char *obj = ir_arena_printf(a, "%s/%s.o", dir, p->model), *tmp_obj = ir_arena_printf(a, "%s/.%s.o.tmp", dir, p->model);
  const char *hdr = ir_arena_printf(a, "%s/%s.h", dir, p->model), *tmp_hdr = ir_arena_printf(a, "%s/.%s.h.tmp", dir, p->model);
  char *message = NULL;
  if (ok && LLVMTargetMachineEmitToFile(tm, m, (char *)tmp_obj, LLVMObjectFile, &message) != 0) {
    snprintf(err, errlen, "cannot write '%s': %s", obj, message ? message : "");
    ok = false;
  }
  LLVMDisposeMessage(message);
  const char *ll = ir_arena_printf(a, "%s/%s.ll", dir, p->model), *tmp_ll = ir_arena_printf(a, "%s/.%s.ll.tmp", dir, p->model);
  message = NULL;
  if (ok && emit_llvm && LLVMPrintModuleToFile(m, tmp_ll, &message) != 0) {
    snprintf(err, errlen, "cannot write '%s': %s", ll, message ? message : "");
    ok = false;
  }
  LLVMDisposeMessage(message);
  const char *header = cg_c_header(p, info);
  ok = ok && header && write_text(tmp_hdr, header, err, errlen);
  if (ok && (rename(tmp_obj, obj) != 0 || rename(tmp_hdr, hdr) != 0 || (emit_llvm && rename(tmp_ll, ll) != 0))) {
    snprintf(err, errlen, "cannot write '%s'", obj);
    ok = false;
  }
  if (!ok) {
    remove(tmp_obj);
    remove(tmp_hdr);
    remove(tmp_ll);
  }
  LLVMDisposeModule(m);
  LLVMContextDispose(c);
  LLVMDisposeTargetMachine(tm);
  return ok;
}
