/* drv.h: the modelc commands. Each returns the process exit code:
 * 0 success, 1 an error in the user's input, 2 an internal error. */
#ifndef MODELC_DRV_H
#define MODELC_DRV_H

#include <stdbool.h>
#include <stdio.h>

#include "codegen/cg.h"
#include "compiler/fe.h"

enum { DRV_OK = 0, DRV_USER_ERROR = 1, DRV_INTERNAL_ERROR = 2 };

/* Parsed command line: the command's positional arguments and options. */
typedef struct drv_args {
  const char *command;
  int num_positional;
  const char *positional[8];
  int num_options;
  const char *option_names[32];
  const char *option_values[32]; /* NULL for a flag */
  bool help;
} drv_args;

/* One accepted option of a command. */
typedef struct drv_option {
  const char *name;  /* without the dashes */
  bool takes_value;
} drv_option_spec;

/* Splits argv (after the command) by the command's option table; reports
 * unknown options and missing values on stderr. */
bool drv_parse_args(const char *command, int argc, char **argv, const drv_option_spec *options,
                    int num_options, drv_args *out);
const char *drv_option(const drv_args *args, const char *name);
bool drv_flag(const drv_args *args, const char *name);

/* --mode=infer|train, defaulting to train when the spec trains. */
bool drv_mode(const drv_args *args, const fe_spec *spec, fe_mode *out);
/* Reads a whole file into the arena (NUL-terminated); reports on stderr. */
char *drv_read_file(ir_arena *arena, const char *path, size_t *len);

/* --no-fuse=LIST for the compilations that follow (drv_build.c): false,
 * with a message, when a word names no fusion. */
bool drv_set_no_fuse(const char *command, const char *list);
/* Spec -> lowered and planned program (drv_build.c). */
int drv_compile(ir_arena *arena, const char *spec_path, cg_program **out, cg_spec_info *info);
/* -t cuda output in dir (drv_build.c); --aot compiles the kernels with
 * NVRTC for arch (default sm_80). Returns an exit code. */
int drv_write_cuda(const cg_program *p, const cg_spec_info *info, const char *arch, bool aot,
                   const char *dir);
/* sm_80, sm_90, sm_90a, ... */
bool drv_valid_arch(const char *arch);
/* mkdir -p; false if it cannot be made. */
bool drv_make_dirs(const char *path);

int drv_check(int argc, char **argv);
int drv_ir(int argc, char **argv);
int drv_build(int argc, char **argv);
int drv_run(int argc, char **argv);
int drv_train(int argc, char **argv);
int drv_sample(int argc, char **argv);
int drv_bench(int argc, char **argv);
int drv_data(int argc, char **argv);
/* run, train, sample or bench through the LLVM JIT (drv_jit.c), in this process. */
int drv_jit_exec(const char *spec, const char *command, int argc, char **argv);

#endif
