/* rt_bench.c: `<model>_main bench`: times the generated code.
 *
 * The model is initialised from a seed and fed a synthetic batch (f32
 * inputs uniform in [-1, 1), i32 inputs 0 and 1 alternating, valid for
 * any embedding table and class count); the inference forward pass and,
 * when the model trains, the training step (forward, backward, optimizer
 * update) run `warmup` times untimed and then `steps` times, each timed
 * alone. It prints the median and the fastest per step and the items
 * per second (tokens for a tokens/targets model, else the batch), and
 * with --json one JSON object per measured entry for scripts (with the
 * process's peak RSS so far). */
#include "modelc_rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct bench_options {
  int64_t steps, warmup;
  int json, forward_only;
} bench_options;

static int bench_int(const char *prog, const char *name, const char *text, int64_t min, int64_t *out) {
  char *end;
  long long v = strtoll(text ? text : "", &end, 10);
  if (!text || !*text || *end || v < min) {
    fprintf(stderr, "%s bench: error: %s must be an integer >= %lld, got '%s'\n", prog, name,
            (long long)min, text ? text : "");
    return -1;
  }
  *out = v;
  return 0;
}

static int bench_parse(const char *prog, int argc, char **argv, bench_options *o) {
  *o = (bench_options){.steps = 10, .warmup = 2};
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    const char *eq = strchr(a, '=');
    size_t len = eq ? (size_t)(eq - a) : strlen(a);
    const char *value = eq ? eq + 1 : i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--json") == 0) {
      o->json = 1;
    } else if (strcmp(a, "--forward-only") == 0) {
      o->forward_only = 1;
    } else if (len == 7 && strncmp(a, "--steps", 7) == 0) {
      if (bench_int(prog, "--steps", value, 1, &o->steps) != 0) return -1;
      if (!eq) i++;
    } else if (len == 8 && strncmp(a, "--warmup", 8) == 0) {
      if (bench_int(prog, "--warmup", value, 0, &o->warmup) != 0) return -1;
      if (!eq) i++;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      printf("usage: %s bench [--steps N] [--warmup N] [--forward-only] [--json]\n\n"
             "Times the inference forward pass and the training step on a synthetic\n"
             "batch: median and fastest of N timed steps after N warm-up steps.\n",
             prog);
      return 1;
    } else {
      fprintf(stderr, "%s bench: error: unknown option '%s'\n", prog, a);
      return -1;
    }
  }
  return 0;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Items per step: B*T tokens for a tokens/targets model, else B. */
static double bench_items(const modelc_rt_model *m) {
  if (m->num_inputs == 0 || m->inputs[0].rank == 0) return 1;
  const modelc_rt_tensor_desc *in = &m->inputs[0];
  int tokens = strcmp(in->name, "tokens") == 0 && in->dtype == MODELC_RT_I32 && in->rank == 2;
  return (double)in->shape[0] * (tokens ? (double)in->shape[1] : 1.0);
}

typedef int (*bench_fn)(const modelc_rt_model *m, void *model, void **batch);

static int bench_forward(const modelc_rt_model *m, void *model, void **batch) {
  const modelc_rt_real *outputs[64];
  modelc_rt_real loss;
  return m->forward(model, (const void *const *)batch, outputs, 0, &loss);
}

static int bench_train(const modelc_rt_model *m, void *model, void **batch) {
  const modelc_rt_real *outputs[64];
  modelc_rt_real loss;
  double norm, lr;
  if (m->backward(model, (const void *const *)batch, outputs, &loss) != 0) return -1;
  return m->update(model, 1, &norm, &lr);
}

static int bench_one(const modelc_rt_model *m, void *model, void **batch, const bench_options *o,
                     const char *what, bench_fn fn) {
  double *t = malloc(sizeof *t * (size_t)o->steps);
  int progress = !o->json && isatty(fileno(stderr));
  if (!t) return -1;
  for (int64_t i = 0; i < o->warmup; i++)
    if (fn(m, model, batch) != 0) goto failed;
  for (int64_t i = 0; i < o->steps; i++) {
    double start = modelc_rt_seconds();
    if (fn(m, model, batch) != 0) goto failed;
    t[i] = modelc_rt_seconds() - start;
    if (progress) fprintf(stderr, "\r%s: step %lld/%lld", what, (long long)(i + 1), (long long)o->steps);
  }
  if (progress) fprintf(stderr, "\r\033[K");
  qsort(t, (size_t)o->steps, sizeof *t, by_value);
  double median = t[o->steps / 2], best = t[0], items = bench_items(m);
  struct rusage ru;
  double rss_mb = getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : 0.0;
  if (o->json)
    printf("{\"model\": \"%s\", \"entry\": \"%s\", \"median_ms\": %.4f, \"min_ms\": %.4f, "
           "\"items_per_s\": %.2f, \"steps\": %lld, \"maxrss_mb\": %.1f}\n",
           m->name, what, median * 1e3, best * 1e3, items / median, (long long)o->steps, rss_mb);
  else
    printf("%-8s %10.3f ms/step median  %10.3f ms fastest  %12.1f items/s\n", what, median * 1e3,
           best * 1e3, items / median);
  free(t);
  return 0;
failed:
  free(t);
  fprintf(stderr, "%s bench: error: %s failed: %s\n", m->name, what, m->error(model));
  return -1;
}

int modelc_rt_bench_main(int argc, char **argv, const modelc_rt_model *m) {
  bench_options o;
  int rc = bench_parse(m->name, argc, argv, &o);
  if (rc != 0) return rc > 0 ? 0 : 1;
  void *model = modelc_rt_model_create(m);
  void **batch = calloc((size_t)m->num_inputs + 1, sizeof *batch);
  int failed = !model || !batch || m->init(model, 1337) != 0;
  for (int i = 0; i < m->num_inputs && !failed; i++) {
    int64_t n = 1;
    for (int d = 0; d < m->inputs[i].rank; d++) n *= m->inputs[i].shape[d];
    int i32 = m->inputs[i].dtype == MODELC_RT_I32;
    batch[i] = malloc((size_t)(n > 0 ? n : 1) * (i32 ? sizeof(int32_t) : sizeof(modelc_rt_real)));
    if (!batch[i]) {
      failed = 1;
      break;
    }
    for (int64_t j = 0; j < n; j++) {
      if (i32)
        ((int32_t *)batch[i])[j] = (int32_t)(j % 2);
      else
        ((modelc_rt_real *)batch[i])[j] =
            2.0f * (modelc_rt_real)modelc_rt_uniform(1337, (uint64_t)i, (uint64_t)j) - 1.0f;
    }
  }
  if (failed) {
    fprintf(stderr, "%s bench: error: out of memory\n", m->name);
  } else {
    failed = bench_one(m, model, batch, &o, "forward", bench_forward) != 0;
    if (!failed && m->trains && !o.forward_only)
      failed = bench_one(m, model, batch, &o, "train", bench_train) != 0;
  }
  for (int i = 0; batch && i < m->num_inputs; i++) free(batch[i]);
  free(batch);
  if (model) m->destroy(model);
  return failed ? 1 : 0;
}
