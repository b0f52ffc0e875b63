/* rt_sample.c: `MODEL_main sample`: text from a byte-level language model.
 *
 * The model must take `tokens` i32 [B, T] and give `logits` f32 [B, T, V]
 * with V >= 256 (bytes). The shapes are static, so the context is the
 * last T tokens, left-aligned in row 0 with the rest zero: a causal model's
 * logits at position t depend on tokens 0..t only, so the padding is
 * never seen. Each new byte is drawn from softmax(logits / temperature)
 * (top-k optional) with the counter-based RNG, so a seed repeats a text. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelc_rt.h"

typedef struct sample_options {
  const char *weights, *prompt;
  int64_t count, top_k;
  double temperature;
  uint64_t seed;
} sample_options;

static int sample_parse(const char *prog, int argc, char **argv, sample_options *o) {
  o->weights = NULL;
  o->prompt = "\n";
  o->count = 200;
  o->top_k = 0;
  o->temperature = 0.8;
  o->seed = 1;
  for (int i = 0; i < argc; i += 2) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *end = NULL;
    if (!v && strncmp(a, "--", 2) == 0) {
      fprintf(stderr, "%s sample: error: %s: missing value\n", prog, a);
      return -1;
    }
    if (strcmp(a, "--weights") == 0) {
      o->weights = v;
    } else if (strcmp(a, "--prompt") == 0) {
      o->prompt = v;
    } else if (strcmp(a, "--tokens") == 0) {
      o->count = strtoll(v, &end, 10);
    } else if (strcmp(a, "--top-k") == 0) {
      o->top_k = strtoll(v, &end, 10);
    } else if (strcmp(a, "--temperature") == 0) {
      o->temperature = strtod(v, &end);
    } else if (strcmp(a, "--seed") == 0) {
      o->seed = strtoull(v, &end, 10);
    } else {
      fprintf(stderr, "%s sample: error: unknown option '%s' (see '%s sample --help')\n", prog, a, prog);
      return -1;
    }
    if (end && (*end || o->count < 1 || o->top_k < 0 || !(o->temperature > 0))) {
      fprintf(stderr, "%s sample: error: %s: bad value '%s'\n", prog, a, v);
      return -1;
    }
  }
  if (!o->weights) {
    fprintf(stderr, "%s sample: error: --weights is required\n", prog);
    return -1;
  }
  return 0;
}

/* Index of the tensor named `name` among descs, or -1. */
static int sample_find(const modelc_rt_tensor_desc *descs, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(descs[i].name, name) == 0) return i;
  return -1;
}

static int sample_descending(const void *a, const void *b) {
  modelc_rt_real x = *(const modelc_rt_real *)a, y = *(const modelc_rt_real *)b;
  return (x < y) - (x > y);
}

/* Draws a byte from softmax(logits / temperature) over the first 256
 * logits, keeping only the top k when k > 0. */
static int sample_draw(const modelc_rt_real *logits, const sample_options *o, uint64_t index,
                       double *probs) {
  modelc_rt_real sorted[256];
  memcpy(sorted, logits, sizeof sorted);
  qsort(sorted, 256, sizeof(modelc_rt_real), sample_descending);
  double most = sorted[0];
  double cut = o->top_k > 0 && o->top_k < 256 ? sorted[o->top_k - 1] : -INFINITY;
  double total = 0;
  for (int i = 0; i < 256; i++) {
    probs[i] = logits[i] < cut ? 0 : exp((logits[i] - most) / o->temperature);
    total += probs[i];
  }
  double r = modelc_rt_uniform(o->seed, 0x73616d70u, index) * total;
  for (int i = 0; i < 256; i++) {
    r -= probs[i];
    if (r < 0) return i;
  }
  return 255;
}

static void sample_help(const char *prog) {
  printf("usage: %s sample --weights W.safetensors [--prompt TEXT] [--tokens N]\n"
         "                 [--temperature T] [--top-k K] [--seed S]\n\n"
         "Generates N bytes (default 200) after TEXT from a byte-level language\n"
         "model (input tokens [B,T], output logits [B,T,V], V >= 256), drawing\n"
         "each from softmax(logits / T) (default 0.8). The text goes to stdout.\n",
         prog);
}

int modelc_rt_sample_main(int argc, char **argv, const modelc_rt_model *m) {
  for (int i = 0; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      sample_help(m->name);
      return 0;
    }
  sample_options o;
  if (sample_parse(m->name, argc, argv, &o) != 0) return 1;
  int ti = sample_find(m->inputs, m->num_inputs, "tokens");
  int li = sample_find(m->outputs, m->num_outputs, "logits");
  if (ti < 0 || li < 0 || m->inputs[ti].rank != 2 || m->outputs[li].rank != 3 ||
      m->outputs[li].shape[2] < 256) {
    fprintf(stderr, "%s sample: error: the model is not a byte-level language model (it needs "
                    "input tokens [B,T] and output logits [B,T,V] with V >= 256)\n", m->name);
    return 1;
  }
  int64_t batch = m->inputs[ti].shape[0], time = m->inputs[ti].shape[1];
  int64_t vocab = m->outputs[li].shape[2];
  void *model = modelc_rt_model_create(m);
  int rc = model ? 0 : 2;
  if (model && m->load(model, o.weights) != 0) {
    fprintf(stderr, "%s sample: error: %s\n", m->name, m->error(model));
    rc = 1;
  }
  void **inputs = calloc((size_t)m->num_inputs, sizeof(void *));
  int32_t *context = calloc((size_t)(batch * time), sizeof(int32_t));
  const modelc_rt_real **outputs =
      calloc((size_t)(m->num_outputs ? m->num_outputs : 1), sizeof(modelc_rt_real *));
  /* other inputs (targets) get zeros: the forward pass does not read them */
  for (int i = 0; i < m->num_inputs && rc == 0; i++) {
    int64_t n = 1;
    for (int d = 0; d < m->inputs[i].rank; d++) n *= m->inputs[i].shape[d];
    inputs[i] = i == ti ? (void *)context : calloc((size_t)n, sizeof(modelc_rt_real));
    if (!inputs[i]) rc = 2;
  }
  if (!inputs || !context || !outputs) rc = 2;
  size_t plen = strlen(o.prompt);
  int64_t len = 0;
  double probs[256];
  fputs(o.prompt, stdout);
  for (size_t i = 0; i < plen && rc == 0; i++) {
    if (len == time) {
      memmove(context, context + 1, sizeof(int32_t) * (size_t)(time - 1));
      len--;
    }
    context[len++] = (unsigned char)o.prompt[i];
  }
  for (int64_t step = 0; step < o.count && rc == 0; step++) {
    modelc_rt_real loss;
    if (len == 0) context[len++] = '\n';
    if (m->forward(model, (const void *const *)inputs, outputs, 0, &loss) != 0) {
      fprintf(stderr, "%s sample: error: %s\n", m->name, m->error(model));
      rc = 2;
      break;
    }
    int next = sample_draw(outputs[li] + (len - 1) * vocab, &o, (uint64_t)step, probs);
    putchar(next);
    if (len == time) {
      memmove(context, context + 1, sizeof(int32_t) * (size_t)(time - 1));
      len--;
    }
    context[len++] = next;
  }
  if (rc == 0) putchar('\n');
  fflush(stdout);
  for (int i = 0; inputs && i < m->num_inputs; i++)
    if (i != ti) free(inputs[i]);
  free(inputs);
  free(context);
  free((void *)outputs);
  if (model) m->destroy(model);
  return rc;
}
