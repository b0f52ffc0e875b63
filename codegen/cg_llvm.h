/* cg_llvm.h: the LLVM backend (cg_render_llvm.c renders, cg_llvm_target.c
 * optimises and writes objects). Kept out of cg.h so
 * that only the files that use LLVM see its headers.
 *
 * The module holds the kernels (one function per distinct kernel), each
 * entry point as a list of steps (modelc_rt_step, see modelc_rt.h), the
 * model's table (cg_table.c) and `MODEL_table`, a modelc_rt_table_source; with
 * `api`, also the public functions of MODEL.h, each a call into the
 * runtime's table model (runtime/rt_table.c). */
#ifndef MODELC_CG_LLVM_H
#define MODELC_CG_LLVM_H

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "codegen/cg.h"

/* ---- cg_llvm_target.c ---- */

/* Initialises LLVM's targets once (all of them, for cross objects). */
void cg_llvm_init(void);

/* A target machine for triple/cpu/features (NULL: the host's), PIC, -O3
 * code generation; NULL with a message in err. */
LLVMTargetMachineRef cg_llvm_target_machine(const char *triple, const char *cpu,
                                            const char *features, char *err, size_t errlen);

/* The O3 pipeline, vectorising for tm's CPU. */
bool cg_llvm_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm, char *err, size_t errlen);

/* `modelc build -t obj`: DIR/MODEL.o (for triple/cpu, NULL for the
 * host) and DIR/MODEL.h; with emit_llvm also DIR/MODEL.ll, the
 * optimised module as text. */
bool cg_write_obj(const cg_program *p, const cg_spec_info *info, const char *dir,
                  const char *triple, const char *cpu, bool emit_llvm, char *err, size_t errlen);

/* ---- cg_render_llvm.c ---- */

/* Renders the program into a new module of context c, for the target of
 * tm (its triple and data layout). */
LLVMModuleRef cg_render_llvm(const cg_program *p, const cg_spec_info *info, LLVMContextRef c,
                             LLVMTargetMachineRef tm, bool api);

#endif
