/* drv_exec.c: `modelc run`, `train`, `sample` and `bench`: through the LLVM
 * JIT (drv_jit.c) by default, or (--via cc) generate C for the spec,
 * compile it with the system compiler into a cache keyed by the hash of
 * the generated sources, the compiler and its flags (nothing is rebuilt
 * when nothing changed; the runtime is compiled once for all specs), then
 * hand over to the generated program's driver (MODEL_main run|train),
 * which does the work and decides the exit code. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "compiler/drv.h"

#ifndef MODELC_BLAS_CFLAGS
#define MODELC_BLAS_CFLAGS ""
#endif
#ifndef MODELC_BLAS_LIBS
#define MODELC_BLAS_LIBS "-lopenblas"
#endif

/* FNV-1a over every file the generator wrote, in a fixed order. */
static uint64_t hash_file(uint64_t h, const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return h;
  unsigned char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0)
    for (size_t i = 0; i < n; i++) h = (h ^ buf[i]) * 1099511628211ull;
  fclose(f);
  return h;
}

static const char *cache_root(ir_arena *a) {
  const char *env = getenv("MODELC_CACHE");
  if (env && *env) return env;
  env = getenv("XDG_CACHE_HOME");
  if (env && *env) return ir_arena_printf(a, "%s/modelc", env);
  env = getenv("HOME");
  if (env && *env) return ir_arena_printf(a, "%s/.cache/modelc", env);
  return "/tmp/modelc-cache";
}

static bool exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static void remove_tree(ir_arena *a, const char *dir, const char *model) {
  static const char *const files[] = {".h", ".c", "_main.c", "_main", "_kernels.cu", "_kernels.c"};
  for (int i = 0; i < 6; i++) remove(ir_arena_printf(a, "%s/%s%s", dir, model, files[i]));
  remove(ir_arena_printf(a, "%s/modelc_rt.h", dir));
  remove(ir_arena_printf(a, "%s/modelc_rt.c", dir));
  remove(ir_arena_printf(a, "%s/modelc_rt_cuda.h", dir));
  remove(ir_arena_printf(a, "%s/modelc_rt_cuda.c", dir));
  remove(ir_arena_printf(a, "%s/CMakeLists.txt", dir));
  remove(ir_arena_printf(a, "%s/compile.log", dir));
  rmdir(dir);
}

/* Splits a flags string on spaces into argv (modifies a copy). */
static int split_flags(ir_arena *a, const char *flags, char **out, int max) {
  char *copy = ir_arena_strdup(a, flags);
  int n = 0;
  for (char *tok = strtok(copy, " "); tok && n < max; tok = strtok(NULL, " ")) out[n++] = tok;
  return n;
}

/* Neither errno nor floating-point exceptions are read, and without
 * them GCC vectorises the loops of the kernels and the runtime (see
 * MODELC_RT_SIMD in modelc_rt.h); the values computed are the same. */
static const char *const cc_flags[] = {"-std=c11",         "-O2",
                                       "-march=native",    "-fopenmp",
                                       "-fno-math-errno",  "-fno-trapping-math",
                                       "-D_POSIX_C_SOURCE=200809L", "-w"};
enum { CC_FLAGS = sizeof cc_flags / sizeof cc_flags[0] };

static const char *cc_name(void) {
  const char *cc = getenv("CC");
  return cc && *cc ? cc : "cc";
}

/* argv's start for every compile: the compiler, its flags, OpenBLAS's. */
static int cc_command(ir_arena *a, char **argv) {
  int n = 0;
  argv[n++] = (char *)cc_name();
  for (int i = 0; i < CC_FLAGS; i++) argv[n++] = (char *)cc_flags[i];
  return n + split_flags(a, MODELC_BLAS_CFLAGS, argv + n, 8);
}

static uint64_t hash_text(uint64_t h, const char *text) {
  for (const unsigned char *c = (const unsigned char *)text; *c; c++) h = (h ^ *c) * 1099511628211ull;
  return h;
}

/* The compile command into a cache key: another compiler or other flags
 * make other code. */
static uint64_t hash_cc_command(ir_arena *a, uint64_t h) {
  char *argv[32];
  int n = cc_command(a, argv);
  for (int i = 0; i < n; i++) h = hash_text(h, argv[i]);
  return h;
}

/* Runs argv with stdout and stderr to `log`; returns the exit status. */
static int run_logged(char **argv, const char *log) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    FILE *f = freopen(log, "w", stdout);
    if (f) dup2(fileno(stdout), 2);
    execvp(argv[0], argv);
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* cc ... > dir/compile.log; returns the exit status. With `runtime` (an
 * object from shared_runtime) the model's code is compiled against the
 * runtime's own names and linked with it; else the model's renamed copy
 * of the runtime is compiled too. -t cuda output adds its kernels (as
 * data) and the CUDA loader, which needs libdl. */
static int run_compiler(ir_arena *a, const char *dir, const char *model, bool cuda,
                        const char *runtime) {
  char *argv[64];
  int n = cc_command(a, argv);
  argv[n++] = ir_arena_printf(a, "-I%s", dir);
  argv[n++] = ir_arena_printf(a, "%s/%s.c", dir, model);
  argv[n++] = ir_arena_printf(a, "%s/%s_main.c", dir, model);
  if (runtime) {
    argv[n++] = "-DMODELC_RT_KEEP_NAMES";
    argv[n++] = (char *)runtime;
  } else {
    argv[n++] = ir_arena_printf(a, "%s/modelc_rt.c", dir);
  }
  if (cuda) {
    argv[n++] = ir_arena_printf(a, "%s/%s_kernels.c", dir, model);
    argv[n++] = ir_arena_printf(a, "%s/modelc_rt_cuda.c", dir);
    argv[n++] = "-ldl";
  }
  argv[n++] = "-o";
  argv[n++] = ir_arena_printf(a, "%s/%s_main", dir, model);
  n += split_flags(a, MODELC_BLAS_LIBS, argv + n, 8);
  argv[n++] = "-lm";
  argv[n] = NULL;
  return run_logged(argv, ir_arena_printf(a, "%s/compile.log", dir));
}

/* The runtime compiled once for every model: ROOT/rt-HASH/modelc_rt.o,
 * keyed by the runtime's text, the compiler and its flags, with the
 * runtime's own names (a cached program holds one model, so nothing
 * clashes). The runtime is most of the C that a small spec generates
 * (280 kB, 5 of the 6 seconds of a reference case's compile), so a new
 * spec then compiles only its own code. NULL when it cannot be built or
 * stored: the caller compiles the model's own copy instead, as before. */
static const char *shared_runtime(ir_arena *a, const char *root, const char *src_dir) {
  uint64_t h = hash_file(14695981039346656037ull, ir_arena_printf(a, "%s/modelc_rt.c", src_dir));
  h = hash_cc_command(a, hash_text(h, cg_runtime_header));
  const char *dir = ir_arena_printf(a, "%s/rt-%016llx", root, (unsigned long long)h);
  const char *obj = ir_arena_printf(a, "%s/modelc_rt.o", dir);
  if (exists(obj)) return obj;
  const char *tmp = ir_arena_printf(a, "%s/.tmp-rt-%ld", root, (long)getpid());
  const char *src = ir_arena_printf(a, "%s/modelc_rt.c", tmp), *hdr = ir_arena_printf(a, "%s/modelc_rt.h", tmp);
  const char *tmp_obj = ir_arena_printf(a, "%s/modelc_rt.o", tmp), *log = ir_arena_printf(a, "%s/compile.log", tmp);
  bool ok = drv_make_dirs(tmp) && link(ir_arena_printf(a, "%s/modelc_rt.c", src_dir), src) == 0;
  FILE *f = ok ? fopen(hdr, "w") : NULL;
  ok = f && fputs(cg_runtime_header, f) >= 0;
  if (f) ok = fclose(f) == 0 && ok;
  if (ok) {
    char *argv[32];
    int n = cc_command(a, argv);
    argv[n++] = ir_arena_printf(a, "-I%s", tmp);
    argv[n++] = "-c";
    argv[n++] = (char *)src;
    argv[n++] = "-o";
    argv[n++] = (char *)tmp_obj;
    argv[n] = NULL;
    ok = run_logged(argv, log) == 0 && exists(tmp_obj);
  }
  /* Another process may have stored the same object first: its is as good. */
  if (!ok || rename(tmp, dir) != 0) {
    remove(src);
    remove(hdr);
    remove(tmp_obj);
    remove(log);
    rmdir(tmp);
  }
  return exists(obj) ? obj : NULL;
}

static void show_log(ir_arena *a, const char *dir) {
  FILE *f = fopen(ir_arena_printf(a, "%s/compile.log", dir), "r");
  if (!f) return;
  char line[512];
  for (int i = 0; i < 30 && fgets(line, sizeof line, f); i++) fprintf(stderr, "  | %s", line);
  fclose(f);
}

/* The compiled driver for a spec, from the cache or freshly built;
 * NULL after reporting. *rc is the exit code to use then. */
static const char *compiled_driver(ir_arena *a, const char *spec_path, bool cuda, int *rc) {
  cg_program *p;
  cg_spec_info info;
  char err[512];
  *rc = drv_compile(a, spec_path, &p, &info);
  if (*rc != DRV_OK) return NULL;
  *rc = DRV_INTERNAL_ERROR;
  const char *root = cache_root(a);
  const char *tmp = ir_arena_printf(a, "%s/.tmp-%ld", root, (long)getpid());
  if (!drv_make_dirs(tmp)) {
    fprintf(stderr, "modelc: error: cannot create the cache folder '%s': %s\n", tmp, strerror(errno));
    *rc = DRV_USER_ERROR;
    return NULL;
  }
  if (cuda ? !cg_write_cuda(p, &info, NULL, NULL, tmp, err, sizeof err)
           : !cg_write_c(p, &info, tmp, err, sizeof err)) {
    fprintf(stderr, "modelc: error: %s\n", err);
    remove_tree(a, tmp, p->model);
    return NULL;
  }
  uint64_t h = 14695981039346656037ull;
  static const char *const parts[] = {".h", ".c", "_main.c"};
  for (int i = 0; i < 3; i++) h = hash_file(h, ir_arena_printf(a, "%s/%s%s", tmp, p->model, parts[i]));
  h = hash_file(h, ir_arena_printf(a, "%s/modelc_rt.c", tmp));
  /* the runtime header (its inline functions are compiled into the
   * model's code), the compiler and its flags */
  h = hash_cc_command(a, hash_file(h, ir_arena_printf(a, "%s/modelc_rt.h", tmp)));
  if (cuda) {
    h = hash_file(h, ir_arena_printf(a, "%s/modelc_rt_cuda.h", tmp));
    h = hash_file(h, ir_arena_printf(a, "%s/%s_kernels.c", tmp, p->model));
    h = hash_file(h, ir_arena_printf(a, "%s/modelc_rt_cuda.c", tmp));
  }
  const char *dir = ir_arena_printf(a, "%s/%s-%s%016llx", root, p->model, cuda ? "cuda-" : "",
                                    (unsigned long long)h);
  const char *exe = ir_arena_printf(a, "%s/%s_main", dir, p->model);
  if (exists(exe)) {
    remove_tree(a, tmp, p->model);
    *rc = DRV_OK;
    return exe;
  }
  fprintf(stderr, "modelc: compiling %s (%s) ...", p->model, spec_path);
  double start = 0;
  {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    start = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
  }
  int status = run_compiler(a, tmp, p->model, cuda, cuda ? NULL : shared_runtime(a, root, tmp));
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  fprintf(stderr, " %.1f s\n", (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec - start);
  if (status != 0) {
    fprintf(stderr, "modelc: internal error: the generated code did not compile (exit %d):\n", status);
    show_log(a, tmp);
    fprintf(stderr, "modelc: the sources are kept in %s\n", tmp);
    return NULL;
  }
  /* Another process may have finished the same build first. */
  if (rename(tmp, dir) != 0) remove_tree(a, tmp, p->model);
  *rc = DRV_OK;
  return exists(exe) ? exe : NULL;
}

/* Replaces this process with the driver: `MODEL_main COMMAND args...`. */
static int hand_over(ir_arena *a, const char *spec, const char *command, int argc, char **argv,
                     bool cuda) {
  int rc;
  const char *exe = compiled_driver(a, spec, cuda, &rc);
  if (!exe) return rc;
  char **args = ir_arena_alloc(a, sizeof(char *) * (size_t)(argc + 3));
  args[0] = (char *)exe;
  args[1] = (char *)command;
  for (int i = 0; i < argc; i++) args[i + 2] = argv[i];
  args[argc + 2] = NULL;
  /* Threads: OpenBLAS runs single-threaded (large GEMMs are split over
   * the OpenMP threads by the runtime), and idle OpenMP threads spin only
   * briefly before sleeping. Measured on 2 cores for charlm: 0.21 s a
   * step, against 1.0 s with libgomp's default spinning and 0.38 s on
   * one thread. A user's own settings win. */
  setenv("OPENBLAS_NUM_THREADS", "1", 0);
  setenv("GOMP_SPINCOUNT", "10000", 0);
  fflush(stdout);
  fflush(stderr);
  execv(exe, args);
  fprintf(stderr, "modelc: internal error: cannot run '%s': %s\n", exe, strerror(errno));
  return DRV_INTERNAL_ERROR;
}

#ifdef MODELC_HAVE_LLVM
/* Threads: OpenBLAS runs single-threaded and idle OpenMP threads spin
 * briefly (see hand_over). Both libraries read these when they load, so
 * the JIT, which runs in this process, sets them and starts modelc again
 * when they are missing. */
static void reexec_with_thread_settings(const char *command, int argc, char **argv) {
  if (getenv("OPENBLAS_NUM_THREADS") && getenv("GOMP_SPINCOUNT")) return;
  setenv("OPENBLAS_NUM_THREADS", "1", 0);
  setenv("GOMP_SPINCOUNT", "10000", 0);
  char **args = malloc(sizeof(char *) * (size_t)(argc + 3));
  if (!args) return;
  args[0] = "/proc/self/exe";
  args[1] = (char *)command;
  for (int i = 0; i < argc; i++) args[i + 2] = argv[i];
  args[argc + 2] = NULL;
  fflush(stdout);
  fflush(stderr);
  execv(args[0], args);
  free(args); /* no /proc: go on with the libraries' defaults */
}
#endif

/* The spec is the first argument that is not an option (or an option's
 * value); --target and --via are ours, the rest goes to the driver. */
static int exec_command(const char *command, int argc, char **argv, const char *usage) {
  const char *spec = NULL, *target = "cpu";
#ifdef MODELC_HAVE_LLVM
  const char *via = "llvm";
#else
  const char *via = "cc";
#endif
  char **rest = malloc(sizeof(char *) * (size_t)(argc + 1));
  int n = 0;
  bool via_given = false, numerics = false;
  const char *no_fuse = NULL;
  if (!rest) return DRV_INTERNAL_ERROR;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      printf("%s", usage);
      free(rest);
      return DRV_OK;
    }
    if (strncmp(argv[i], "--target=", 9) == 0) {
      target = argv[i] + 9;
    } else if (strcmp(argv[i], "--target") == 0 && i + 1 < argc) {
      target = argv[++i];
    } else if (strncmp(argv[i], "--no-fuse", 9) == 0 && (argv[i][9] == '=' || argv[i][9] == 0)) {
      no_fuse = argv[i][9] == '=' ? argv[i] + 10 : i + 1 < argc ? argv[++i] : "";
    } else if (strncmp(argv[i], "--via=", 6) == 0) {
      via = argv[i] + 6;
      via_given = true;
    } else if (strcmp(argv[i], "--via") == 0 && i + 1 < argc) {
      via = argv[++i];
      via_given = true;
    } else if (!spec && argv[i][0] != '-') {
      spec = argv[i];
    } else {
      rest[n++] = argv[i];
      /* an option's value is passed along with it */
      bool flag = strchr(argv[i], '=') || strcmp(argv[i], "--grads") == 0 ||
                  strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "--json") == 0 ||
                  strcmp(argv[i], "--forward-only") == 0 ||
                  strcmp(argv[i], "--check-numerics") == 0 || argv[i][0] != '-';
      if (!flag && i + 1 < argc) rest[n++] = argv[++i];
      numerics = numerics || strcmp(argv[i], "--check-numerics") == 0;
    }
  }
  /* The checks are in the generated C (codegen/cg_numerics.c); the JIT's
   * kernels have none, so the flag takes the C path. It also keeps every
   * elementwise op a kernel of its own, so that each op's value is
   * checked (a fused chain stores only its last). */
  /* CUDA: the host code is C, built by cc; the JIT is for the CPU. */
  bool cuda = strcmp(target, "cuda") == 0;
  if ((numerics || cuda) && !via_given) via = "cc";
  static char with_elementwise[512];
  if (numerics && no_fuse && *no_fuse) {
    snprintf(with_elementwise, sizeof with_elementwise, "%s,elementwise", no_fuse);
    no_fuse = with_elementwise;
  } else if (numerics) {
    no_fuse = "elementwise";
  }
  if (no_fuse && !drv_set_no_fuse(command, no_fuse)) {
    free(rest);
    return DRV_USER_ERROR;
  }
  int rc = DRV_USER_ERROR;
  if (!spec) {
    fprintf(stderr, "modelc %s: error: missing SPEC\n%s", command, usage);
  } else if (strcmp(target, "cpu") != 0 && strcmp(target, "cuda") != 0) {
    fprintf(stderr, "modelc %s: error: unknown target '%s' (targets: cpu, cuda)\n", command, target);
  } else if (strcmp(via, "cc") != 0 && strcmp(via, "llvm") != 0) {
    fprintf(stderr, "modelc %s: error: unknown --via '%s' (cc, or llvm: the JIT)\n", command, via);
  } else if (numerics && strcmp(via, "llvm") == 0) {
    fprintf(stderr, "modelc %s: error: --check-numerics needs the C path (--via cc)\n", command);
  } else if (cuda && strcmp(via, "llvm") == 0) {
    fprintf(stderr, "modelc %s: error: --target cuda builds host C with cc (--via cc)\n", command);
  } else if (strcmp(via, "llvm") == 0) {
#ifdef MODELC_HAVE_LLVM
    reexec_with_thread_settings(command, argc, argv);
    rc = drv_jit_exec(spec, command, n, rest);
#else
    fprintf(stderr, "modelc %s: error: this modelc was built without LLVM (use --via cc)\n", command);
#endif
  } else {
    /* cuda: the same driver, built from -t cuda output; it reports "no
     * GPU" (exit 1) itself where there is none. */
    ir_arena *a = ir_arena_new();
    rc = hand_over(a, spec, command, n, rest, cuda);
    ir_arena_free(a);
  }
  free(rest);
  return rc;
}

int drv_run(int argc, char **argv) {
  return exec_command("run", argc, argv,
                      "usage: modelc run SPEC --weights W.safetensors --input IN.safetensors\n"
                      "                  --output OUT.safetensors [--grads] [--check-numerics]\n"
                      "                  [--target cpu|cuda] [--via llvm|cc]\n"
                      "\n"
                      "Runs one batch: OUT gets every output of the spec under its name, `loss`\n"
                      "when the spec trains and IN holds what the loss needs, and with --grads\n"
                      "the gradient of the loss for every parameter as grad.NAME (training mode:\n"
                      "batch statistics, dropout on). Without --grads it runs in inference mode.\n"
                      "The model is compiled in memory by LLVM (--via llvm, the default with LLVM),\n"
                      "or as C by the system compiler (--via cc).\n");
}

int drv_sample(int argc, char **argv) {
  return exec_command("sample", argc, argv,
                      "usage: modelc sample SPEC --weights W.safetensors [--prompt TEXT]\n"
                      "                     [--tokens N] [--temperature T] [--top-k K] [--seed S]\n"
                      "\n"
                      "Generates text from a byte-level language model (a spec with input\n"
                      "tokens [B,T] and output logits [B,T,V], V >= 256) trained by\n"
                      "`modelc train`: N bytes (default 200) after TEXT, to stdout.\n");
}

int drv_train(int argc, char **argv) {
  return exec_command("train", argc, argv,
                      "usage: modelc train SPEC --data DATA [--val DATA] [--init W.safetensors]\n"
                      "                    [--steps N] [--out DIR] [--resume DIR] [--target cpu|cuda]\n"
                      "                    [--via llvm|cc]\n"
                      "                    [--eval-every K] [--eval-batches M]\n"
                      "                    [--checkpoint-every K] [--log-every K] [--quiet]\n"
                      "                    [--check-numerics]\n"
                      "\n"
                      "Trains SPEC per its train: section. DATA is a token file (specs whose\n"
                      "inputs are tokens and targets) or a safetensors data set (a tensor per\n"
                      "input, first dim = samples). DIR (default out/) receives model.safetensors,\n"
                      "state.safetensors (to --resume) and metrics.jsonl. The model is compiled\n"
                      "in memory by LLVM (--via llvm, the default with LLVM), or as C by the system\n"
                      "compiler (--via cc), once into a cache ($MODELC_CACHE, else ~/.cache/modelc).\n");
}

int drv_bench(int argc, char **argv) {
  return exec_command("bench", argc, argv,
                      "usage: modelc bench SPEC [--steps N] [--warmup N] [--forward-only] [--json]\n"
                      "                    [--no-fuse=LIST] [--target cpu|cuda] [--via llvm|cc]\n"
                      "\n"
                      "Compiles SPEC (as `train` does: by LLVM in memory, the default with LLVM,\n"
                      "or as C through the cache with --via cc) and times its compiled\n"
                      "code on a synthetic batch of the spec's shapes: the inference forward pass\n"
                      "and, when the spec trains, the training step (forward, backward, update).\n"
                      "Prints the median and fastest of N timed steps (default 10) after the\n"
                      "warm-up (default 2) and items/s (tokens for a tokens/targets model, else\n"
                      "samples); --json prints one JSON object per entry instead. bench/ compares\n"
                      "these figures with PyTorch and the machine's sgemm ceiling.\n");
}
