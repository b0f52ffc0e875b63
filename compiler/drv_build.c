/* drv_build.c: `modelc build SPEC -t c -o DIR`, and the compilation
 * pipeline that `run` and `train` share: spec -> graphs (forward;
 * evaluate and train when the spec trains) -> kernels -> C sources. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codegen/cg.h"
#include "compiler/drv.h"
#ifdef MODELC_HAVE_LLVM
#include "codegen/cg_llvm.h"
#endif
#include "modelc_rt_cuda.h"

/* The fusions turned off by --no-fuse for this process's compilations. */
static const char *no_fuse;

bool drv_set_no_fuse(const char *command, const char *list) {
  char err[IR_ERR_LEN];
  if (!ir_fusion_list_ok(list, err, sizeof err)) {
    fprintf(stderr, "modelc %s: error: --no-fuse: %s\n", command, err);
    return false;
  }
  no_fuse = list;
  return true;
}

static bool run_pipeline(ir_graph *g, char *err, size_t errlen) {
  ir_pass_options opts = {.verify_each = true, .no_fuse = no_fuse};
  return ir_run_pipeline(g, &opts, err, errlen);
}

static cg_spec_info spec_info(const fe_spec *spec, const char *path) {
  const fe_train *t = &spec->train;
  cg_spec_info info = {
      .source_file = path,
      .optimizer = t->optimizer == FE_OPT_SGD,
      .lr = t->lr,
      .beta1 = t->beta1,
      .beta2 = t->beta2,
      .eps = t->eps,
      .weight_decay = t->weight_decay,
      .momentum = t->momentum,
      .nesterov = t->nesterov,
      .schedule = t->schedule == FE_SCHED_COSINE ? 1 : t->schedule == FE_SCHED_LINEAR ? 2 : 0,
      .warmup = t->warmup,
      .steps = t->steps,
      .min_lr = t->min_lr,
      .grad_clip = t->grad_clip,
      .accumulate = spec->has_train ? t->accumulate : 1,
      .seed = spec->has_train ? t->seed : 1337,
  };
  return info;
}

/* Builds, transforms and lowers one graph of the spec. */
static int add_entry(ir_arena *arena, diag_engine *d, const fe_spec *spec, cg_program *p,
                     const char *name, fe_mode mode) {
  ir_graph *g = fe_build_graph(arena, d, spec, mode);
  if (!g) return DRV_USER_ERROR;
  char err[IR_ERR_LEN];
  if (!run_pipeline(g, err, sizeof err) || !cg_lower_entry(p, name, g, err, sizeof err)) {
    fprintf(stderr, "modelc: internal error: %s: %s\n", name, err);
    return DRV_INTERNAL_ERROR;
  }
  return DRV_OK;
}

/* The model's name becomes a C type next to the C library and the
 * generated code's own names: a model may not take one of them. */
static const char *const reserved_names[] = {
    "abs", "acos", "asin", "atan", "atan2", "calloc", "ceil", "cos", "cosh", "div", "erf",
    "exit", "exp", "expf", "fabs", "floor", "fmax", "fmin", "fmod", "free", "frexp", "labs",
    "ldexp", "log", "log10", "log1p", "log2", "logf", "main", "malloc", "memcpy", "memset",
    "modf", "pow", "printf", "rand", "realloc", "remove", "rename", "round", "sin", "sinh",
    "snprintf", "sqrt", "sqrtf", "strlen", "tan", "tanh", "tanhf", "time", "trunc",
    "m", "model", "in", "out", "entries", "capacity", "n", "i", "s", "g", "x", "p", "e",
    "tensors", "places", "inputs", "outputs", "input_loss_only", "update", "scalar", "names",
    "loss", "bytes", "copy", "rc", "f", "path", "seed", "micro", "norm", "lr",
};

static bool reserved_model_name(diag_engine *d, const fe_spec *spec) {
  for (size_t i = 0; i < sizeof reserved_names / sizeof *reserved_names; i++)
    if (strcmp(spec->model, reserved_names[i]) == 0) {
      diag_error(d, spec->model_loc,
                 "model name '%s' is taken by the C library or the generated code; choose another",
                 spec->model);
      return true;
    }
  return false;
}

int drv_compile(ir_arena *arena, const char *path, cg_program **out, cg_spec_info *info) {
  diag_engine *d = diag_new(arena, stderr);
  const fe_spec *spec = fe_spec_load(arena, d, path);
  int rc = spec ? DRV_OK : DRV_USER_ERROR;
  if (spec && reserved_model_name(d, spec)) rc = DRV_USER_ERROR;
  for (int i = 0; spec && i < spec->num_inputs; i++) {
    ir_dtype t = spec->inputs[i].type.dtype;
    if (t == IR_f32 || t == IR_i32) continue;
    diag_error(d, spec->inputs[i].loc, "input '%s' is %s; the C backend takes f32 and i32 inputs",
               spec->inputs[i].name, ir_dtype_name(t));
    rc = DRV_USER_ERROR;
  }
  cg_program *p = spec ? cg_program_new(arena, spec->model) : NULL;
  if (rc == DRV_OK) rc = add_entry(arena, d, spec, p, "forward", FE_MODE_INFER);
  if (rc == DRV_OK && spec->has_train) rc = add_entry(arena, d, spec, p, "evaluate", FE_MODE_EVAL);
  if (rc == DRV_OK && spec->has_train) rc = add_entry(arena, d, spec, p, "train", FE_MODE_TRAIN);
  diag_finish(d);
  if (rc != DRV_OK) return rc;
  p->bf16 = spec->has_train && spec->train.precision == IR_bf16;
  cg_plan(p);
  *out = p;
  *info = spec_info(spec, path);
  return DRV_OK;
}

/* mkdir -p */
bool drv_make_dirs(const char *path) {
  char buf[4096];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof buf) return false;
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != 0) continue;
    char saved = buf[i];
    buf[i] = 0;
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return false;
    buf[i] = saved;
  }
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static const drv_option_spec build_options[] = {
    {"t", true},      {"target", true}, {"o", true},   {"out", true},    {"triple", true},
    {"cpu", true},    {"emit-llvm", false}, {"arch", true}, {"aot", false}, {"no-fuse", true}};

static void usage(FILE *out) {
  fprintf(out,
          "usage: modelc build SPEC -t c|obj|cuda -o DIR [--triple T] [--cpu C] [--emit-llvm]\n"
          "                    [--arch sm_NN] [--aot] [--no-fuse=LIST]\n"
          "\n"
          "Generates standalone C for SPEC in DIR: MODEL.h (the API), MODEL.c (the\n"
          "kernels and the training step), modelc_rt.h/.c (the runtime),\n"
          "MODEL_main.c (train/run driver) and a CMakeLists.txt usable through\n"
          "add_subdirectory(). Build by hand with\n"
          "  cc -std=c11 -O2 -fopenmp DIR/*.c -lopenblas -lm\n"
          "or without BLAS with -DMODELC_NO_BLAS.\n"
          "\n"
          "With -t obj (the LLVM backend), DIR gets MODEL.o (kernels and the API,\n"
          "compiled, O3, for the host or --triple/--cpu), MODEL.h, and for the host\n"
          "the runtime: modelc_rt.h and libmodelc_rt.a. Link with\n"
          "  cc -fopenmp app.c DIR/MODEL.o DIR/libmodelc_rt.a -lopenblas -lm\n"
          "\n"
          "With -t cuda: MODEL_kernels.cu (the CUDA kernels) and host C that\n"
          "opens the NVIDIA driver and NVRTC at run time (no CUDA needed to build;\n"
          "see docs/cuda-backend.md).\n"
          "\n"
          "  -t, --target=T      the backend: c, obj or cuda\n"
          "  -o, --out=DIR       the output folder, created if missing\n"
          "  --triple=T          obj: the target triple (e.g. aarch64-linux-gnu)\n"
          "  --cpu=C             obj: the target CPU (default: the host's, or generic)\n"
          "  --emit-llvm         obj: also MODEL.ll, the optimised LLVM IR as text\n"
          "  --arch=sm_NN        cuda: the GPU architecture to compile for (default: the\n"
          "                      GPU present at run time; sm_80 with --aot)\n"
          "  --aot               cuda: compile the kernels now with NVRTC and embed the\n"
          "                      cubin (and PTX), so the program needs no NVRTC\n"
          "  --no-fuse=LIST      turn fusions off (comma-separated: %s)\n", ir_fusion_names());
}

#ifdef MODELC_HAVE_LLVM
static bool copy_file(const char *from, const char *to) {
  FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
  bool ok = in && out;
  char buf[65536];
  size_t n;
  while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
  if (in) fclose(in);
  if (out) ok = fclose(out) == 0 && ok;
  return ok;
}

/* -t obj: MODEL.o and MODEL.h; for the host, the runtime modelc was built
 * with (a cross build compiles runtime/ with its own compiler). */
static int write_obj(ir_arena *a, const cg_program *p, const cg_spec_info *info, const char *dir,
                     const char *triple, const char *cpu, bool emit_llvm) {
  char err[512];
  if (!cg_write_obj(p, info, dir, triple, cpu, emit_llvm, err, sizeof err)) {
    fprintf(stderr, "modelc build: error: %s\n", err);
    return strncmp(err, "no LLVM target", 14) == 0 ? DRV_USER_ERROR : DRV_INTERNAL_ERROR;
  }
  if (triple) return DRV_OK;
  /* Temporary names, then renamed: no partial file on failure. */
  const char *header = ir_arena_printf(a, "%s/modelc_rt.h", dir), *library = ir_arena_printf(a, "%s/libmodelc_rt.a", dir);
  const char *tmp_header = ir_arena_printf(a, "%s/.modelc_rt.h.tmp", dir);
  const char *tmp_library = ir_arena_printf(a, "%s/.libmodelc_rt.a.tmp", dir);
  FILE *h = fopen(tmp_header, "wb");
  bool ok = h && fputs(cg_runtime_header, h) >= 0;
  if (h) ok = fclose(h) == 0 && ok;
#ifdef MODELC_RT_LIBRARY
  ok = ok && copy_file(MODELC_RT_LIBRARY, tmp_library);
#endif
  ok = ok && rename(tmp_header, header) == 0;
#ifdef MODELC_RT_LIBRARY
  ok = ok && rename(tmp_library, library) == 0;
#else
  (void)library;
#endif
  if (!ok) {
    remove(tmp_header);
    remove(tmp_library);
    fprintf(stderr, "modelc build: error: cannot write the runtime into '%s'\n", dir);
    return DRV_USER_ERROR;
  }
  return DRV_OK;
}
#endif

/* `-t c` and `-o DIR` are single-dash options: rewrite them to the
 * long form before the common parser sees them. */
static void long_forms(int argc, char **argv, char **out) {
  for (int i = 0; i < argc; i++) {
    out[i] = argv[i];
    if (strcmp(argv[i], "-t") == 0) out[i] = "--target";
    if (strcmp(argv[i], "-o") == 0) out[i] = "--out";
  }
}

bool drv_valid_arch(const char *arch) {
  if (strncmp(arch, "sm_", 3) != 0 || !arch[3]) return false;
  for (const char *c = arch + 3; *c; c++)
    if ((*c < '0' || *c > '9') && !(c[1] == 0 && *c >= 'a' && *c <= 'z' && c > arch + 4)) return false;
  return true;
}

/* -t cuda: with --aot, the kernels compiled here by NVRTC and embedded
 * (any message of NVRTC, warnings included, is shown). */
int drv_write_cuda(const cg_program *p, const cg_spec_info *info, const char *arch, bool aot,
                   const char *dir) {
  char err[2048];
  cg_cuda_image image = {0};
  void *cubin = NULL;
  char *ptx = NULL, *log = NULL;
  int rc = DRV_OK;
  if (aot) {
    if (!arch) arch = "sm_80";
    int count = 0, version = 0;
    const char *source = cg_cuda_kernels_source(p, &count);
    if (modelc_rt_cuda_nvrtc_compile(source, ir_arena_printf(p->arena, "%s_kernels.cu", p->model), arch,
                                     &cubin, &image.cubin_size, &ptx, &log, err, sizeof err) != 0) {
      fprintf(stderr, "modelc build: error: %s\n%s", err, log ? log : "");
      rc = DRV_USER_ERROR;
    } else {
      modelc_rt_cuda_nvrtc_version(&version, err, sizeof err);
      bool quiet = !log || !*log;
      fprintf(stderr, "modelc build: %d kernels compiled by NVRTC %d.%d for %s: %s\n%s", count,
              version / 1000, version % 1000 / 10, arch, quiet ? "no warnings" : "NVRTC says:",
              quiet ? "" : log);
      image = (cg_cuda_image){cubin, image.cubin_size, ptx, atoi(arch + 3)};
    }
  }
  if (rc == DRV_OK && !cg_write_cuda(p, info, arch, aot ? &image : NULL, dir, err, sizeof err)) {
    fprintf(stderr, "modelc build: error: %s\n", err);
    rc = DRV_USER_ERROR;
  }
  free(cubin);
  free(ptx);
  free(log);
  return rc;
}

int drv_build(int argc, char **argv) {
  drv_args args;
  char *argv2[64];
  if (argc > 64) {
    fprintf(stderr, "modelc build: error: too many arguments\n");
    return DRV_USER_ERROR;
  }
  long_forms(argc, argv, argv2);
  if (!drv_parse_args("build", argc, argv2, build_options, 10, &args)) return DRV_USER_ERROR;
  if (args.help) {
    usage(stdout);
    return DRV_OK;
  }
  const char *target = drv_option(&args, "target"), *dir = drv_option(&args, "out");
  if (!drv_set_no_fuse("build", drv_option(&args, "no-fuse"))) return DRV_USER_ERROR;
  if (args.num_positional != 1 || !target || !dir) {
    fprintf(stderr, "modelc build: error: %s\n",
            args.num_positional != 1 ? "expected one SPEC" : !target ? "missing -t TARGET" : "missing -o DIR");
    usage(stderr);
    return DRV_USER_ERROR;
  }
#ifdef MODELC_HAVE_LLVM
  bool obj = strcmp(target, "obj") == 0;
#else
  bool obj = false;
  if (strcmp(target, "obj") == 0) {
    fprintf(stderr, "modelc build: error: this modelc was built without LLVM: no target 'obj'\n");
    return DRV_USER_ERROR;
  }
#endif
  bool cuda = strcmp(target, "cuda") == 0;
  if (strcmp(target, "c") != 0 && !obj && !cuda) {
    fprintf(stderr, "modelc build: error: unknown target '%s' (targets: c, obj, cuda)\n", target);
    return DRV_USER_ERROR;
  }
  if (!obj && (drv_option(&args, "triple") || drv_option(&args, "cpu") || drv_flag(&args, "emit-llvm"))) {
    fprintf(stderr, "modelc build: error: --triple, --cpu and --emit-llvm are for -t obj\n");
    return DRV_USER_ERROR;
  }
  const char *arch = drv_option(&args, "arch");
  if ((arch || drv_flag(&args, "aot")) && !cuda) {
    fprintf(stderr, "modelc build: error: --arch and --aot are options of -t cuda\n");
    return DRV_USER_ERROR;
  }
  if (arch && !drv_valid_arch(arch)) {
    fprintf(stderr, "modelc build: error: --arch '%s' is not of the form sm_NN (sm_80, sm_90, ...)\n", arch);
    return DRV_USER_ERROR;
  }
  ir_arena *arena = ir_arena_new();
  cg_program *p = NULL;
  cg_spec_info info;
  char err[512];
  int rc = drv_compile(arena, args.positional[0], &p, &info);
  if (rc == DRV_OK && !drv_make_dirs(dir)) {
    fprintf(stderr, "modelc build: error: cannot create '%s': %s\n", dir, strerror(errno));
    rc = DRV_USER_ERROR;
  }
#ifdef MODELC_HAVE_LLVM
  if (rc == DRV_OK && obj) {
    rc = write_obj(arena, p, &info, dir, drv_option(&args, "triple"), drv_option(&args, "cpu"),
                   drv_flag(&args, "emit-llvm"));
    ir_arena_free(arena);
    return rc;
  }
#endif
  if (rc == DRV_OK && cuda) {
    rc = drv_write_cuda(p, &info, arch, drv_flag(&args, "aot"), dir);
  } else if (rc == DRV_OK && !cg_write_c(p, &info, dir, err, sizeof err)) {
    fprintf(stderr, "modelc build: error: %s\n", err);
    rc = DRV_USER_ERROR;
  }
  ir_arena_free(arena);
  return rc;
}
