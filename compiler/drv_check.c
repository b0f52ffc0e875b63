/* drv_check.c: `modelc check SPEC [--params] [--mode=infer|train]`.
 *
 * Validates a spec and prints a summary: parameters, forward FLOPs per
 * step and memory: weights, gradients and optimizer state, and the peak
 * of the activation region that the C backend plans (after fusion, reused
 * by liveness and in place), for inference and for a training step. */
#include <inttypes.h>
#include <string.h>

#include "compiler/drv.h"
#include "ir/arena.h"

static const drv_option_spec check_options[] = {{"params", false}, {"mode", true}, {"no-fuse", true}};

static void usage(FILE *out) {
  fprintf(out,
          "usage: modelc check SPEC [--params] [--mode=infer|train]\n"
          "\n"
          "Validates SPEC and prints a summary: parameter count, forward FLOPs per\n"
          "step and an estimate of memory for inference and training.\n"
          "\n"
          "  --params       list every parameter and buffer: name, shape, dtype\n"
          "  --mode=MODE    build the inference or the training graph (default:\n"
          "                 train when the spec has a train: section)\n"
          "  --no-fuse=LIST skip fusions (comma-separated: %s)\n", ir_fusion_names());
}

static char *with_commas(int64_t v, char *buf, size_t len) {
  char digits[32];
  snprintf(digits, sizeof digits, "%" PRId64, v < 0 ? -v : v);
  size_t n = strlen(digits), o = 0;
  if (v < 0 && o + 1 < len) buf[o++] = '-';
  for (size_t i = 0; i < n && o + 2 < len; i++) {
    if (i && (n - i) % 3 == 0) buf[o++] = ',';
    buf[o++] = digits[i];
  }
  buf[o] = 0;
  return buf;
}

static char *bytes_text(int64_t bytes, char *buf, size_t len) {
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)bytes;
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

static char *flops_text(int64_t flops, char *buf, size_t len) {
  static const char *const units[] = {"FLOP", "KFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP"};
  double v = (double)flops;
  int u = 0;
  while (v >= 1000 && u < 5) {
    v /= 1000;
    u++;
  }
  snprintf(buf, len, u ? "%.2f %s" : "%.0f %s", v, units[u]);
  return buf;
}

static bool expand(ir_graph *g) {
  char err[IR_ERR_LEN];
  ir_pass_options opts = {.stop_after_stage = "expanded"};
  if (ir_run_pipeline(g, &opts, err, sizeof err)) return true;
  fprintf(stderr, "modelc: internal error: %s\n", err);
  return false;
}

static void list_params(const ir_graph *g) {
  int width = 0, swidth = 0;
  char shape[128];
  for (const ir_node *n = g->first; n; n = n->next) {
    if (n->op != IR_OP_param && n->op != IR_OP_buffer) continue;
    int w = (int)strlen(n->results[0]->name);
    int s = (int)strlen(ir_shape_format(&n->results[0]->type, shape, sizeof shape));
    if (w > width) width = w;
    if (s > swidth) swidth = s;
  }
  for (const ir_node *n = g->first; n; n = n->next) {
    if (n->op != IR_OP_param && n->op != IR_OP_buffer) continue;
    const ir_value *v = n->results[0];
    ir_shape_format(&v->type, shape, sizeof shape);
    if (n->op == IR_OP_buffer)
      printf("%-*s  %-*s  %s  buffer\n", width, v->name, swidth, shape,
             ir_dtype_name(v->type.dtype));
    else
      printf("%-*s  %-*s  %s\n", width, v->name, swidth, shape, ir_dtype_name(v->type.dtype));
  }
}

static void print_values(const char *label, const ir_graph *g, bool inputs) {
  char type[128];
  int count = 0;
  printf("  %-12s", label);
  for (const ir_node *n = g->first; n; n = n->next) {
    const ir_value *v = NULL;
    const char *name = NULL;
    if (inputs && n->op == IR_OP_input) v = n->results[0], name = v->name;
    if (!inputs && n->op == IR_OP_output) v = n->inputs[0], name = ir_get_str(n, "name", "");
    if (!v) continue;
    printf("%s%s %s", count++ ? ", " : " ", name, ir_type_format(&v->type, type, sizeof type));
  }
  printf("%s\n", count ? "" : " none");
}

static const char *schedule_name(fe_schedule_kind k) {
  return k == FE_SCHED_COSINE ? "cosine" : k == FE_SCHED_LINEAR ? "linear" : "constant";
}

static void print_train(const fe_train *t) {
  printf("  %-12s %s(lr=%g", "train", t->optimizer == FE_OPT_ADAMW ? "adamw" : "sgd", t->lr);
  if (t->optimizer == FE_OPT_ADAMW)
    printf(", betas=[%g, %g], eps=%g", t->beta1, t->beta2, t->eps);
  else
    printf(", momentum=%g%s", t->momentum, t->nesterov ? ", nesterov" : "");
  printf(", weight_decay=%g), %s(warmup=%" PRId64, t->weight_decay, schedule_name(t->schedule),
         t->warmup);
  if (t->schedule != FE_SCHED_CONSTANT)
    printf(", steps=%" PRId64 ", min_lr=%g", t->steps, t->min_lr);
  printf("), grad_clip=%g, accumulate=%" PRId64 ", precision=%s, recompute=%s, seed=%" PRIu64 "\n",
         t->grad_clip, t->accumulate, ir_dtype_name(t->precision),
         t->recompute_blocks ? "blocks" : "none", t->seed);
}

/* Memory as the C backend plans it: state at fixed offsets, every
 * temporary placed by liveness in one activation region. A spec the C
 * backend cannot take (a reserved model name, a u8 input) is an error. */
static int planned_activations(const char *path, int64_t *act_infer, int64_t *act_train) {
  ir_arena *arena = ir_arena_new();
  cg_program *p = NULL;
  cg_spec_info info;
  *act_infer = 0;
  *act_train = -1;
  int rc = drv_compile(arena, path, &p, &info);
  for (int i = 0; rc == DRV_OK && i < p->num_entries; i++) {
    int64_t bytes = p->entries[i].activation_bytes;
    if (strcmp(p->entries[i].name, "train") == 0)
      *act_train = bytes;
    else if (bytes > *act_infer)
      *act_infer = bytes;
  }
  ir_arena_free(arena);
  return rc;
}

static void print_summary(const char *path, const fe_spec *spec, const ir_graph *g,
                          const ir_stats *infer, const ir_stats *train, int64_t act_infer,
                          int64_t act_train) {
  char a[64], b[64], c[64];
  printf("%s: ok\n", path);
  printf("  %-12s %s\n", "model", spec->model);
  print_values("inputs", g, true);
  print_values("outputs", g, false);
  int tensors = 0;
  for (const ir_node *n = g->first; n; n = n->next) tensors += n->op == IR_OP_param;
  printf("  %-12s %s in %d tensors (%s as f32)\n", "parameters",
         with_commas(infer->num_params, a, sizeof a), tensors, bytes_text(infer->param_bytes, b, sizeof b));
  if (infer->buffer_bytes) printf("  %-12s %s\n", "buffers", bytes_text(infer->buffer_bytes, a, sizeof a));
  const ir_stats *fwd = train ? train : infer;
  printf("  %-12s %s forward per step", "flops", flops_text(fwd->flops, a, sizeof a));
  if (train) printf(", about %s per training step (3x forward)", flops_text(3 * fwd->flops, b, sizeof b));
  printf("\n");
  int64_t inference = infer->param_bytes + infer->buffer_bytes + infer->input_bytes + act_infer;
  printf("  %-12s inference %s (weights %s, activations %s)\n", "memory",
         bytes_text(inference, a, sizeof a), bytes_text(infer->param_bytes, b, sizeof b),
         bytes_text(act_infer, c, sizeof c));
  if (train && act_train >= 0) {
    int64_t moments = spec->train.optimizer == FE_OPT_ADAMW ? 2 : spec->train.momentum != 0 ? 1 : 0;
    int64_t total = train->param_bytes * (2 + moments) + train->buffer_bytes + train->input_bytes + act_train;
    printf("  %-12s training %s (weights, gradients, %lld optimizer moment%s, activations %s)\n", "",
           bytes_text(total, a, sizeof a), (long long)moments, moments == 1 ? "" : "s",
           bytes_text(act_train, b, sizeof b));
  }
  printf("  %-12s activations as planned by the C backend: fused, reused by liveness and in place\n", "");
  if (spec->has_train) print_train(&spec->train);
}

static int run_check(const drv_args *args, const char *path) {
  ir_arena *arena = ir_arena_new();
  diag_engine *d = diag_new(arena, stderr);
  int rc = DRV_USER_ERROR;
  fe_mode mode;
  const fe_spec *spec = fe_spec_load(arena, d, path);
  if (!spec || !drv_mode(args, spec, &mode)) goto done;
  /* Both graphs are built so that errors of either mode are reported. */
  ir_graph *infer = fe_build_graph(arena, d, spec, FE_MODE_INFER);
  ir_graph *train = infer && spec->has_train ? fe_build_graph(arena, d, spec, FE_MODE_TRAIN) : NULL;
  if (!infer || (spec->has_train && !train)) goto done;
  if (drv_flag(args, "params")) {
    list_params(mode == FE_MODE_TRAIN ? train : infer);
    rc = DRV_OK;
    goto done;
  }
  ir_stats si, st;
  rc = DRV_INTERNAL_ERROR;
  if (!expand(infer) || (train && !expand(train))) goto done;
  ir_graph_stats(infer, &si);
  if (train) ir_graph_stats(train, &st);
  int64_t act_infer, act_train;
  rc = planned_activations(path, &act_infer, &act_train);
  if (rc != DRV_OK) goto done;
  print_summary(path, spec, train ? train : infer, &si, train ? &st : NULL, act_infer, act_train);
done:
  diag_finish(d);
  ir_arena_free(arena);
  return rc;
}

int drv_check(int argc, char **argv) {
  drv_args args;
  if (!drv_parse_args("check", argc, argv, check_options, 3, &args)) return DRV_USER_ERROR;
  if (args.help) {
    usage(stdout);
    return DRV_OK;
  }
  if (args.num_positional != 1) {
    fprintf(stderr, "modelc check: error: %s\n",
            args.num_positional ? "expected one SPEC" : "missing SPEC");
    usage(stderr);
    return DRV_USER_ERROR;
  }
  if (!drv_set_no_fuse("check", drv_option(&args, "no-fuse"))) return DRV_USER_ERROR;
  return run_check(&args, args.positional[0]);
}
