/* drv_ir.c: `modelc ir SPEC|FILE.ir [options]`: prints the graph IR.
 *
 * For a spec the pipeline runs up to --stage (default: all of it); for a
 * .ir file the text is parsed and the passes named by --passes run, so a
 * pass can be tested on hand-written IR. */
#include <string.h>

#include "compiler/drv.h"

static const drv_option_spec ir_options[] = {
    {"stage", true}, {"mode", true}, {"print-after", true}, {"print-after-all", false},
    {"passes", true}, {"no-verify", false}, {"no-fuse", true},
};

static void usage(FILE *out) {
  int n;
  const ir_pass_info *passes = ir_pipeline(&n);
  fprintf(out,
          "usage: modelc ir SPEC [--stage=STAGE] [--mode=infer|train]\n"
          "                 [--print-after=PASS | --print-after-all]\n"
          "       modelc ir FILE.ir [--passes=PASS,...]\n"
          "\n"
          "Prints the graph IR of SPEC after the pipeline has run up to STAGE, or\n"
          "parses FILE.ir, runs the listed passes and prints the result.\n"
          "\n"
          "  --stage=STAGE       parsed");
  for (int i = 0; i < n; i++)
    if (i == 0 || strcmp(passes[i].stage, passes[i - 1].stage) != 0)
      fprintf(out, ", %s", passes[i].stage);
  fprintf(out,
          " (default: the last)\n"
          "  --mode=MODE         infer or train (default: train when the spec trains)\n"
          "  --print-after=PASS  print the graph after PASS instead of at the end\n"
          "  --print-after-all   print the graph after every pass\n"
          "  --passes=LIST       passes to run on a .ir file, in order\n"
          "  --no-verify         skip the verifier between passes\n"
          "  --no-fuse=LIST      skip fusions (comma-separated: %s)\n"
          "\n"
          "passes:", ir_fusion_names());
  for (int i = 0; i < n; i++) fprintf(out, " %s", passes[i].name);
  fprintf(out, "\n");
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static const ir_pass_info *find_pass(const char *name, size_t len) {
  int n;
  const ir_pass_info *passes = ir_pipeline(&n);
  for (int i = 0; i < n; i++)
    if (strlen(passes[i].name) == len && strncmp(passes[i].name, name, len) == 0) return &passes[i];
  return NULL;
}

/* Runs a comma-separated list of passes on a parsed graph. */
static int run_pass_list(ir_graph *g, const char *list, bool verify) {
  char err[IR_ERR_LEN];
  while (list && *list) {
    const char *comma = strchr(list, ',');
    size_t len = comma ? (size_t)(comma - list) : strlen(list);
    const ir_pass_info *pass = find_pass(list, len);
    if (!pass) {
      fprintf(stderr, "modelc ir: error: unknown pass '%.*s'\n", (int)len, list);
      return DRV_USER_ERROR;
    }
    if (!pass->run(g, err, sizeof err)) {
      fprintf(stderr, "modelc ir: error: pass %s failed: %s\n", pass->name, err);
      return DRV_USER_ERROR;
    }
    if (verify && ir_verify(g, false, stderr) > 0) {
      fprintf(stderr, "modelc ir: error: the graph is invalid after pass %s\n", pass->name);
      return DRV_INTERNAL_ERROR;
    }
    list = comma ? comma + 1 : NULL;
  }
  return DRV_OK;
}

static int ir_of_text(const drv_args *args, const char *path, ir_arena *arena) {
  size_t len;
  char err[IR_ERR_LEN];
  char *text = drv_read_file(arena, path, &len);
  if (!text) return DRV_USER_ERROR;
  if (strlen(text) != len) {
    fprintf(stderr, "%s: error: the file contains a NUL byte\n", path);
    return DRV_USER_ERROR;
  }
  ir_graph *g = ir_parse(arena, text, path, err, sizeof err);
  if (!g) {
    fprintf(stderr, "%s:%s\n", path, err);
    return DRV_USER_ERROR;
  }
  int rc = run_pass_list(g, drv_option(args, "passes"), !drv_flag(args, "no-verify"));
  if (rc == DRV_OK) ir_print(stdout, g);
  return rc;
}

static int ir_of_spec(const drv_args *args, const char *path, ir_arena *arena) {
  diag_engine *d = diag_new(arena, stderr);
  fe_mode mode;
  int rc = DRV_USER_ERROR;
  const fe_spec *spec = fe_spec_load(arena, d, path);
  ir_graph *g = NULL;
  if (spec && drv_mode(args, spec, &mode)) g = fe_build_graph(arena, d, spec, mode);
  diag_finish(d);
  if (!g) return rc;
  if (drv_option(args, "passes")) {
    fprintf(stderr, "modelc ir: error: --passes applies to .ir files; use --stage for a spec\n");
    return DRV_USER_ERROR;
  }
  ir_pass_options opts = {
      .stop_after_stage = drv_option(args, "stage"),
      .print_after = drv_option(args, "print-after"),
      .print_after_all = drv_flag(args, "print-after-all"),
      .verify_each = !drv_flag(args, "no-verify"),
      .print_out = stdout,
      .no_fuse = drv_option(args, "no-fuse"),
  };
  if (opts.print_after && !find_pass(opts.print_after, strlen(opts.print_after))) {
    fprintf(stderr, "modelc ir: error: unknown pass '%s'\n", opts.print_after);
    return DRV_USER_ERROR;
  }
  char err[IR_ERR_LEN];
  if (opts.stop_after_stage && strcmp(opts.stop_after_stage, "parsed") == 0) {
    if (!opts.print_after && !opts.print_after_all) ir_print(stdout, g);
    return DRV_OK;
  }
  if (!ir_run_pipeline(g, &opts, err, sizeof err)) {
    bool user = strncmp(err, "unknown", 7) == 0;
    fprintf(stderr, "modelc ir: %s: %s\n", user ? "error" : "internal error", err);
    return user ? DRV_USER_ERROR : DRV_INTERNAL_ERROR;
  }
  if (!opts.print_after && !opts.print_after_all) ir_print(stdout, g);
  return DRV_OK;
}

int drv_ir(int argc, char **argv) {
  drv_args args;
  if (!drv_parse_args("ir", argc, argv, ir_options, 7, &args)) return DRV_USER_ERROR;
  if (args.help) {
    usage(stdout);
    return DRV_OK;
  }
  if (args.num_positional != 1) {
    fprintf(stderr, "modelc ir: error: %s\n", args.num_positional ? "expected one SPEC" : "missing SPEC");
    usage(stderr);
    return DRV_USER_ERROR;
  }
  if (drv_option(&args, "print-after") && drv_flag(&args, "print-after-all")) {
    fprintf(stderr, "modelc ir: error: --print-after and --print-after-all exclude each other\n");
    return DRV_USER_ERROR;
  }
  ir_arena *arena = ir_arena_new();
  int rc = ends_with(args.positional[0], ".ir") ? ir_of_text(&args, args.positional[0], arena)
                                                : ir_of_spec(&args, args.positional[0], arena);
  fflush(stdout);
  ir_arena_free(arena);
  return rc;
}
