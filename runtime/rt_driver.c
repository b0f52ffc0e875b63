/* rt_driver.c: the generic driver behind <model>_main.c. For any model
 * described by a modelc_rt_model it implements
 *
 *   run    one batch from a safetensors file through the model; outputs,
 *          loss and (--grads) gradients to a safetensors file;
 *   train  data (token file or safetensors data set), optimizer steps
 *          with gradient accumulation, validation, a progress line,
 *          metrics.jsonl, checkpoints, --resume and Ctrl-C.
 *
 * Exit codes (docs/cli.md): 0 success, 1 an error in the user's input
 * (arguments, files, data; weights that do not fit the model), 2 an
 * internal error (the model failing in forward, backward or update), 130
 * when training was interrupted by SIGINT or SIGTERM (after a checkpoint).
 *
 * Checkpoints. DIR/model.safetensors (model->save: the parameters alone)
 * and DIR/state.safetensors (model->state plus the driver's entries) must
 * always form a pair from the same step, whenever the process dies. Each
 * file is written atomically by modelc_rt_st_write, but two renames
 * cannot be one, so a checkpoint is committed like a tiny journal:
 *
 *   1. model->save(DIR/.ckpt-model.safetensors)
 *   2. hash that file (drv_hash_file)
 *   3. write DIR/.ckpt-state.safetensors, which records the hash as
 *      `checkpoint.model_hash` (and the step as `checkpoint.step`)
 *   4. rename .ckpt-model -> model.safetensors
 *   5. rename .ckpt-state -> state.safetensors, fsync DIR
 *
 * A complete .ckpt-state exists only once its model is complete (step 3
 * follows 1), and names that model by its hash. drv_recover, run before
 * every resume and every checkpoint, finishes a commit cut short after
 * step 3 (promoting .ckpt-model when it has the recorded hash, then
 * .ckpt-state when model.safetensors has it) and otherwise discards the
 * pending files, which leaves the previous pair in place. A crash before
 * step 3 leaves the old pair untouched; after it, the new pair wins.
 * model.safetensors itself is never half written, so `run --weights`
 * can read it at any moment. On resume the hash of model.safetensors
 * must equal the one in state.safetensors: a pair from two different
 * checkpoints (or runs) is refused instead of resuming silently wrong. */
#include "modelc_rt.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { DRV_OK = 0, DRV_INPUT = 1, DRV_INTERNAL = 2, DRV_HELP = 3, DRV_INTERRUPTED = 130 };
enum { DRV_ERRLEN = 1024 };

static const char *const drv_dtype_names[] = {"f32", "bf16", "f16", "f64", "i32", "i64", "u8"};

/* ---- small helpers ---- */

#if defined(__GNUC__)
#define DRV_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DRV_PRINTF(f, a)
#endif

/* "PROG: error: MESSAGE" on stderr; returns rc (an exit code). */
DRV_PRINTF(3, 4) static int drv_fail(const char *prog, int rc, const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  fprintf(stderr, "%s: error: ", prog);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return rc;
}

/* A message into the caller's buffer; returns -1. */
DRV_PRINTF(3, 4) static int drv_error(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

static const char *drv_dtype_text(modelc_rt_dtype dtype) {
  return (unsigned)dtype <= MODELC_RT_U8 ? drv_dtype_names[dtype] : "?";
}

/* "[2,8]"; a scalar is "[]". */
static const char *drv_shape_text(char *buf, size_t n, int rank, const int64_t *shape) {
  size_t used = 0;
  buf[0] = '\0';
  used += (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < rank && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, i ? ",%lld" : "%lld", (long long)shape[i]);
  if (used < n) snprintf(buf + used, n - used, "]");
  return buf;
}

static int64_t drv_elements(int rank, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= shape[i];
  return n;
}

static char *drv_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *path = malloc(a + b + 2);
  if (!path) return NULL;
  memcpy(path, dir, a);
  path[a] = '/';
  memcpy(path + a + 1, name, b + 1);
  return path;
}

static int drv_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static int drv_ends_with(const char *text, const char *suffix) {
  size_t a = strlen(text), b = strlen(suffix);
  return a >= b && strcmp(text + a - b, suffix) == 0;
}

/* mkdir -p */
static int drv_mkdirs(const char *dir, char *err, size_t errlen) {
  char *path = malloc(strlen(dir) + 1);
  if (!path) return drv_error(err, errlen, "out of memory");
  strcpy(path, dir);
  for (char *p = path + 1;; p++) {
    if (*p != '/' && *p != '\0') continue;
    char saved = *p;
    *p = '\0';
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
      snprintf(err, errlen, "cannot create directory %s: %s", path, strerror(errno));
      free(path);
      return -1;
    }
    *p = saved;
    if (saved == '\0') break;
  }
  struct stat st;
  int ok = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
  if (!ok) snprintf(err, errlen, "%s is not a directory", dir);
  free(path);
  return ok ? 0 : -1;
}

static void drv_fsync_dir(const char *dir) {
  FILE *f = fopen(dir, "r");
  if (f) {
    fsync(fileno(f));
    fclose(f);
  }
}

/* A 64-bit hash of a file's bytes (word-wise multiply-xorshift): it only
 * has to tell two checkpoints apart, not resist an adversary. */
static int drv_hash_file(const char *path, uint64_t *hash, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) return drv_error(err, errlen, "cannot open %s: %s", path, strerror(errno));
  enum { CHUNK = 1 << 16 };
  unsigned char *buf = malloc(CHUNK);
  if (!buf) {
    fclose(f);
    return drv_error(err, errlen, "out of memory");
  }
  uint64_t h = 0x9e3779b97f4a7c15u, total = 0;
  size_t got;
  while ((got = fread(buf, 1, CHUNK, f)) > 0) {
    for (size_t i = 0; i < got; i += 8) {
      uint64_t w = 0;
      for (size_t j = 0; j < 8 && i + j < got; j++) w |= (uint64_t)buf[i + j] << (8 * j);
      h = (h ^ w) * 0xbf58476d1ce4e5b9u;
      h ^= h >> 31;
    }
    total += got;
  }
  int bad = ferror(f);
  free(buf);
  fclose(f);
  if (bad) return drv_error(err, errlen, "cannot read %s", path);
  h ^= total;
  h *= 0x94d049bb133111ebu;
  *hash = h ^ (h >> 29);
  return 0;
}

/* The raw bytes of a tensor in an open safetensors file (its offset
 * counts from the start of the file). */
static const unsigned char *drv_tensor_bytes(const modelc_rt_st_file *f,
                                             const modelc_rt_st_tensor *t) {
  return f->data + t->offset;
}

/* An I64 scalar (or [1]) written by the driver. */
static int drv_read_i64(const modelc_rt_st_file *f, const char *name, int64_t *value, char *err,
                        size_t errlen) {
  const modelc_rt_st_tensor *t = modelc_rt_st_find(f, name);
  if (!t) return drv_error(err, errlen, "%s: missing tensor '%s'", f->path, name);
  if (t->dtype != MODELC_RT_I64 || drv_elements(t->rank, t->shape) != 1)
    return drv_error(err, errlen, "%s: tensor '%s' is not an i64 scalar", f->path, name);
  memcpy(value, drv_tensor_bytes(f, t), sizeof *value);
  return 0;
}

/* A NaN or infinity that --check-numerics found: the data, the weights
 * or the learning rate made it, so exit 1 as for a non-finite loss. */
static int drv_numerics_failure(const char *message) {
  return strncmp(message, "--check-numerics:", 17) == 0 ? DRV_INPUT : DRV_INTERNAL;
}

/* The exit code for a model that failed in forward or backward: its
 * inputs checks (ids outside an embedding table, as the generated code
 * words it) are errors in the data, 1; anything else is internal, 2. */
static int drv_model_failure_code(const char *message) {
  return strstr(message, "outside the embedding table") ? DRV_INPUT : drv_numerics_failure(message);
}

/* "PATH: " before a message about ids, naming the file they came from;
 * "" before any other. */
static const char *drv_blame(const char *message, const char *path, char *buf, size_t n) {
  if (!strstr(message, "outside the embedding table")) return "";
  snprintf(buf, n, "%s: ", path);
  return buf;
}

/* ---- arguments ---- */

typedef enum { DRV_FLAG, DRV_TEXT, DRV_POSITIVE, DRV_COUNT } drv_option_kind;

typedef struct drv_option {
  const char *name; /* "--steps" */
  drv_option_kind kind;
  void *value; /* int * (flag), const char ** (text), int64_t * (numbers) */
} drv_option;

/* A decimal integer >= min, the whole text. */
static int drv_parse_int(const char *text, int64_t min, int64_t *value) {
  if (text[0] < '0' || text[0] > '9') return -1;
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno || *end || v < min) return -1;
  *value = v;
  return 0;
}

static int drv_set_option(const char *prog, const drv_option *o, const char *value) {
  if (o->kind == DRV_TEXT) {
    *(const char **)o->value = value;
    return DRV_OK;
  }
  int64_t min = o->kind == DRV_POSITIVE ? 1 : 0;
  if (drv_parse_int(value, min, (int64_t *)o->value) == 0) return DRV_OK;
  return drv_fail(prog, DRV_INPUT, "%s: expected a %s integer, got '%s'", o->name,
                  min ? "positive" : "non-negative", value);
}

/* Options as `--name value` or `--name=value`; --help/-h anywhere asks
 * for help. Returns DRV_OK, DRV_INPUT (message printed) or DRV_HELP. */
static int drv_parse_args(const char *prog, int argc, char **argv, const drv_option *opts,
                          int count) {
  for (int i = 0; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return DRV_HELP;
  for (int i = 0; i < argc; i++) {
    const char *arg = argv[i];
    if (strncmp(arg, "--", 2) != 0) {
      return drv_fail(prog, DRV_INPUT, "unexpected argument '%s' (see '%s --help')", arg, prog);
    }
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    const drv_option *o = NULL;
    for (int k = 0; k < count && !o; k++)
      if (strlen(opts[k].name) == len && strncmp(opts[k].name, arg, len) == 0) o = &opts[k];
    if (!o) {
      return drv_fail(prog, DRV_INPUT, "unknown option '%.*s' (see '%s --help')", (int)len, arg,
                      prog);
    }
    if (o->kind == DRV_FLAG) {
      if (eq) {
        return drv_fail(prog, DRV_INPUT, "%s takes no value", o->name);
      }
      *(int *)o->value = 1;
      continue;
    }
    const char *value = eq ? eq + 1 : NULL;
    if (!eq && i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) value = argv[++i];
    if (!value || !*value) {
      return drv_fail(prog, DRV_INPUT, "%s: missing value", o->name);
    }
    int rc = drv_set_option(prog, o, value);
    if (rc != DRV_OK) return rc;
  }
  return DRV_OK;
}

static int drv_require(const char *prog, const char *value, const char *name) {
  if (value) return DRV_OK;
  return drv_fail(prog, DRV_INPUT, "%s is required (see '%s --help')", name, prog);
}

static void drv_print_tensors(FILE *out, const char *title, int count,
                              const modelc_rt_tensor_desc *desc) {
  char shape[256];
  fprintf(out, "%s:", title);
  for (int i = 0; i < count; i++)
    fprintf(out, "%s %s %s %s", i ? "," : "", desc[i].name, drv_dtype_text(desc[i].dtype),
            drv_shape_text(shape, sizeof shape, desc[i].rank, desc[i].shape));
  fprintf(out, "\n");
}

static void drv_usage(FILE *out, const modelc_rt_model *m) {
  fprintf(out, "usage: %s COMMAND [OPTIONS]\n\nThe model '%s', compiled by modelc.\n\ncommands:\n",
          m->name, m->name);
  fprintf(out, "  run    run one batch: %s run --weights W --input IN --output OUT [--grads]\n",
          m->name);
  if (m->trains)
    fprintf(out, "  train  train the model: %s train --data DATA [--steps N] [--out DIR] ...\n",
            m->name);
  fprintf(out, "  sample generate text from a byte-level language model: %s sample --weights W\n",
          m->name);
  fprintf(out, "  bench  time forward and training step: %s bench [--steps N] [--json]\n", m->name);
#ifdef MODELC_DOUBLE
  if (m->trains)
    fprintf(out, "  gradcheck  gradients against central differences: %s gradcheck --input IN\n",
            m->name);
#endif
  fprintf(out, "\n'%s COMMAND --help' describes a command.\n", m->name);
}

static void drv_run_help(const modelc_rt_model *m) {
  printf("usage: %s run --weights W.safetensors --input IN.safetensors --output OUT.safetensors"
         " [--grads]\n\n"
         "Runs one batch through the model. IN holds a tensor per input, named as the\n"
         "input and of its shape (f32 inputs accept any float dtype, i32 inputs any\n"
         "integer dtype). OUT receives every output, `loss` (a scalar) when the model\n"
         "trains and IN holds what the loss needs, and with --grads the gradient of\n"
         "the loss for every parameter as `grad.NAME`.\n\n"
         "options:\n"
         "  --weights W   the parameters, as train writes them to DIR/model.safetensors\n"
         "  --input IN    the batch\n"
         "  --output OUT  written atomically; nothing is written on failure\n"
         "  --grads       run forward and backward in training mode, write gradients\n"
         "  --check-numerics  stop at the first NaN or infinity a kernel computes,\n"
         "                naming the op and its place in the spec\n\n",
         m->name);
  drv_print_tensors(stdout, "inputs", m->num_inputs, m->inputs);
  drv_print_tensors(stdout, "outputs", m->num_outputs, m->outputs);
}

static void drv_train_help(const modelc_rt_model *m) {
  printf("usage: %s train --data DATA [--val DATA] [--init W.safetensors] [--steps N]\n"
         "       [--out DIR] [--resume DIR] [--eval-every K] [--eval-batches M]\n"
         "       [--checkpoint-every K] [--log-every K] [--quiet]\n\n"
         "DATA is a safetensors file with a tensor per input whose first dimension\n"
         "counts samples (read in order, a batch at a time, wrapping around), or, for\n"
         "a model whose inputs are `tokens` and `targets`, a token file (llm.c format\n"
         "or raw uint16; any name not ending in .safetensors).\n\n"
         "options:\n"
         "  --data DATA           training data\n"
         "  --val DATA            validation data, evaluated every --eval-every steps\n"
         "                        and at the end\n"
         "  --init W              start from these weights instead of the seeded init\n"
         "  --steps N             optimizer steps in all (default: the schedule's steps,\n"
         "                        or 100; on --resume, the resumed run's N)\n"
         "  --out DIR             where model.safetensors, state.safetensors and\n"
         "                        metrics.jsonl go (default: out, or the --resume DIR)\n"
         "  --resume DIR          continue from DIR's checkpoint up to step N\n"
         "  --eval-every K        validate every K steps (default: N/10; 0: at the end)\n"
         "  --eval-batches M      batches of a token validation set (default 20)\n"
         "  --checkpoint-every K  checkpoint every K steps (default 0: at the end only)\n"
         "  --log-every K         progress line every K steps when stderr is not a\n"
         "                        terminal (default: N/10, at most 50)\n"
         "  --quiet               no progress lines\n"
         "  --check-numerics      stop at the first NaN or infinity a kernel computes\n"
         "                        in forward or backward: the op, the spec's\n"
         "                        file:line:col and the step\n\n"
         "Ctrl-C finishes the current step, writes a checkpoint and exits with 130.\n",
         m->name);
  drv_print_tensors(stdout, "inputs", m->num_inputs, m->inputs);
}

/* ---- the model's inputs ---- */

/* What the driver needs to know about the inputs, computed once. */
typedef struct drv_layout {
  int64_t *elements; /* per input */
  int64_t batch;     /* B: the first dim of the first input */
  int token_model;   /* inputs exactly tokens/targets, i32 [B,T] */
  int tokens_input, targets_input;
  int classifier; /* first output f32 [B,C] and an i32 [B] input */
  int label_input;
  int64_t classes;
} drv_layout;

static int drv_input_index(const modelc_rt_model *m, const char *name) {
  for (int i = 0; i < m->num_inputs; i++)
    if (strcmp(m->inputs[i].name, name) == 0) return i;
  return -1;
}

static int drv_layout_init(drv_layout *l, const modelc_rt_model *m) {
  memset(l, 0, sizeof *l);
  l->elements = calloc((size_t)m->num_inputs + 1, sizeof *l->elements);
  if (!l->elements) return -1;
  for (int i = 0; i < m->num_inputs; i++)
    l->elements[i] = drv_elements(m->inputs[i].rank, m->inputs[i].shape);
  const modelc_rt_tensor_desc *in = m->inputs;
  l->batch = m->num_inputs > 0 && in[0].rank > 0 ? in[0].shape[0] : 1;
  int tok = drv_input_index(m, "tokens"), tgt = drv_input_index(m, "targets");
  if (m->num_inputs == 2 && tok >= 0 && tgt >= 0 && in[tok].dtype == MODELC_RT_I32 &&
      in[tgt].dtype == MODELC_RT_I32 && in[tok].rank == 2 && in[tgt].rank == 2 &&
      in[tok].shape[0] == in[tgt].shape[0] && in[tok].shape[1] == in[tgt].shape[1]) {
    l->token_model = 1;
    l->tokens_input = tok;
    l->targets_input = tgt;
  }
  const modelc_rt_tensor_desc *out = m->num_outputs > 0 ? &m->outputs[0] : NULL;
  if (out && out->dtype == MODELC_RT_F32 && out->rank == 2 && out->shape[0] == l->batch) {
    for (int i = 0; i < m->num_inputs && !l->classifier; i++)
      if (in[i].dtype == MODELC_RT_I32 && in[i].rank == 1 && in[i].shape[0] == l->batch) {
        l->classifier = 1;
        l->label_input = i;
        l->classes = out->shape[1];
      }
  }
  return 0;
}

static void **drv_alloc_batch(const modelc_rt_model *m, const drv_layout *l) {
  void **batch = calloc((size_t)m->num_inputs + 1, sizeof *batch);
  if (!batch) return NULL;
  for (int i = 0; i < m->num_inputs; i++) {
    /* F32 inputs are read as modelc_rt_real (4 or 8 bytes), i32 as 4 */
    batch[i] = calloc((size_t)(l->elements[i] > 0 ? l->elements[i] : 1), sizeof(modelc_rt_real));
    if (!batch[i]) {
      for (int k = 0; k < i; k++) free(batch[k]);
      free(batch);
      return NULL;
    }
  }
  return batch;
}

static void drv_free_batch(void **batch, int count) {
  if (!batch) return;
  for (int i = 0; i < count; i++) free(batch[i]);
  free(batch);
}

/* Reads `count` elements of t from element `first` into dst, converted to
 * the input's dtype. */
static int drv_read_as(const modelc_rt_st_file *f, const modelc_rt_st_tensor *t,
                       modelc_rt_dtype dtype, int64_t first, int64_t count, void *dst, char *err,
                       size_t errlen) {
  if (dtype == MODELC_RT_F32)
    return modelc_rt_st_read_real(f, t, first, count, (modelc_rt_real *)dst, err, errlen);
  if (dtype == MODELC_RT_I32)
    return modelc_rt_st_read_i32(f, t, first, count, (int32_t *)dst, err, errlen);
  snprintf(err, errlen, "internal error: input '%s' has dtype %s; the driver feeds f32 and i32",
           t->name, drv_dtype_text(dtype));
  return -1;
}

/* ---- run ---- */

typedef struct drv_run_options {
  const char *weights, *input, *output;
  int grads, check_numerics;
} drv_run_options;

/* Every tensor of IN must be an input of the model. */
static int drv_check_extra(const char *prog, const modelc_rt_st_file *f, const modelc_rt_model *m) {
  for (int k = 0; k < f->count; k++) {
    if (drv_input_index(m, f->tensors[k].name) >= 0) continue;
    char names[512] = "";
    size_t used = 0;
    for (int i = 0; i < m->num_inputs && used < sizeof names; i++)
      used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                               m->inputs[i].name);
    return drv_fail(prog, DRV_INPUT,
                    "%s: tensor '%s' is not an input of the model (its inputs: %s)", f->path,
                    f->tensors[k].name, names);
  }
  return DRV_OK;
}

/* Reads every input of the batch from IN; *with_loss is cleared when a
 * loss-only input is absent. */
static int drv_read_batch_file(const char *prog, const modelc_rt_st_file *f,
                               const modelc_rt_model *m, void **batch, int *with_loss) {
  char err[DRV_ERRLEN], have[256], want[256];
  *with_loss = 1;
  for (int i = 0; i < m->num_inputs; i++) {
    const modelc_rt_tensor_desc *d = &m->inputs[i];
    const modelc_rt_st_tensor *t = modelc_rt_st_find(f, d->name);
    drv_shape_text(want, sizeof want, d->rank, d->shape);
    if (!t) {
      if (m->input_loss_only && m->input_loss_only[i]) {
        *with_loss = 0;
        continue;
      }
      return drv_fail(prog, DRV_INPUT, "%s: missing tensor '%s' (the model takes %s %s)", f->path,
                      d->name, drv_dtype_text(d->dtype), want);
    }
    int same = t->rank == d->rank;
    for (int k = 0; same && k < d->rank; k++) same = t->shape[k] == d->shape[k];
    if (!same) {
      return drv_fail(prog, DRV_INPUT, "%s: tensor '%s' is %s %s but the model takes %s %s",
                      f->path, d->name, drv_dtype_text(t->dtype),
                      drv_shape_text(have, sizeof have, t->rank, t->shape),
                      drv_dtype_text(d->dtype), want);
    }
    if (drv_read_as(f, t, d->dtype, 0, drv_elements(d->rank, d->shape), batch[i], err,
                    sizeof err) != 0) {
      return drv_fail(prog, DRV_INPUT, "%s", err);
    }
  }
  return DRV_OK;
}

/* OUT: outputs, loss, gradients. */
static int drv_write_run_output(const char *prog, const modelc_rt_model *m, void *model,
                                const drv_run_options *o, const modelc_rt_real **outputs,
                                int with_loss, const modelc_rt_real *loss) {
  int count = m->num_outputs + 1 + (o->grads ? m->num_params : 0), n = 0, rc = DRV_OK;
  modelc_rt_st_entry *entries = calloc((size_t)count, sizeof *entries);
  char **names = calloc((size_t)m->num_params + 1, sizeof *names);
  static const int64_t scalar_shape[1] = {1};
  if (!entries || !names) {
    rc = drv_fail(prog, DRV_INTERNAL, "out of memory");
    goto done;
  }
  for (int i = 0; i < m->num_outputs; i++)
    entries[n++] = (modelc_rt_st_entry){m->outputs[i].name, MODELC_RT_REAL, m->outputs[i].rank,
                                        m->outputs[i].shape, outputs[i]};
  if (with_loss) entries[n++] = (modelc_rt_st_entry){"loss", MODELC_RT_REAL, 0, scalar_shape, loss};
  for (int i = 0; o->grads && i < m->num_params; i++) {
    const modelc_rt_tensor_desc *p = &m->params[i];
    names[i] = malloc(strlen(p->name) + 6);
    if (!names[i]) {
      rc = drv_fail(prog, DRV_INTERNAL, "out of memory");
      goto done;
    }
    sprintf(names[i], "grad.%s", p->name);
    entries[n++] =
        (modelc_rt_st_entry){names[i], MODELC_RT_REAL, p->rank, p->shape, m->grad(model, i)};
  }
  char err[DRV_ERRLEN];
  if (modelc_rt_st_write(o->output, entries, n, err, sizeof err) != 0)
    rc = drv_fail(prog, DRV_INPUT, "%s", err);
done:
  for (int i = 0; names && i < m->num_params; i++) free(names[i]);
  free(names);
  free(entries);
  return rc;
}

/* Loads the weights, reads the batch, runs the model, writes OUT. */
static int drv_run_model(const char *prog, const modelc_rt_model *m, void *model,
                         const drv_run_options *o, void **batch) {
  if (m->load(model, o->weights) != 0) return drv_fail(prog, DRV_INPUT, "%s", m->error(model));
  char err[DRV_ERRLEN];
  modelc_rt_st_file f;
  if (modelc_rt_st_open(&f, o->input, err, sizeof err) != 0)
    return drv_fail(prog, DRV_INPUT, "%s", err);
  int with_loss = 0;
  int rc = drv_check_extra(prog, &f, m);
  if (rc == DRV_OK) rc = drv_read_batch_file(prog, &f, m, batch, &with_loss);
  modelc_rt_st_close(&f);
  if (rc != DRV_OK) return rc;
  with_loss = with_loss && m->trains;
  if (o->grads && !with_loss && m->trains)
    return drv_fail(prog, DRV_INPUT, "--grads needs the loss, and %s lacks an input the loss uses",
                    o->input);
  if (o->grads && !with_loss)
    return drv_fail(prog, DRV_INPUT, "--grads needs a loss, and the model has no train: section");
  const modelc_rt_real **outputs = calloc((size_t)m->num_outputs + 1, sizeof *outputs);
  if (!outputs) return drv_fail(prog, DRV_INTERNAL, "out of memory");
  modelc_rt_real loss = 0.0f;
  const void *const *inputs = (const void *const *)batch;
  int failed = o->grads ? m->backward(model, inputs, outputs, &loss)
                        : m->forward(model, inputs, outputs, with_loss, &loss);
  char blame[DRV_ERRLEN];
  if (failed)
    rc = drv_fail(prog, drv_model_failure_code(m->error(model)), "%s%s",
                  drv_blame(m->error(model), o->input, blame, sizeof blame), m->error(model));
  else
    rc = drv_write_run_output(prog, m, model, o, outputs, with_loss, &loss);
  free(outputs);
  return rc;
}

static int drv_run(const modelc_rt_model *m, int argc, char **argv) {
  char prog[256];
  snprintf(prog, sizeof prog, "%s run", m->name);
  drv_run_options o = {0};
  const drv_option opts[] = {
      {"--weights", DRV_TEXT, &o.weights},
      {"--input", DRV_TEXT, &o.input},
      {"--output", DRV_TEXT, &o.output},
      {"--grads", DRV_FLAG, &o.grads},
      {"--check-numerics", DRV_FLAG, &o.check_numerics},
  };
  int rc = drv_parse_args(prog, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]));
  if (rc == DRV_HELP) return drv_run_help(m), DRV_OK;
  if (rc == DRV_OK) rc = drv_require(prog, o.weights, "--weights");
  if (rc == DRV_OK) rc = drv_require(prog, o.input, "--input");
  if (rc == DRV_OK) rc = drv_require(prog, o.output, "--output");
  if (rc != DRV_OK) return rc;
  modelc_rt_set_check_numerics(o.check_numerics);
  drv_layout layout;
  if (drv_layout_init(&layout, m) != 0) return drv_fail(prog, DRV_INTERNAL, "out of memory");
  void **batch = drv_alloc_batch(m, &layout);
  void *model = batch ? modelc_rt_model_create(m) : NULL;
  if (!model) {
    rc = drv_fail(prog, DRV_INTERNAL, "out of memory creating the model");
  } else {
    rc = drv_run_model(prog, m, model, &o, batch);
    m->destroy(model);
  }
  drv_free_batch(batch, m->num_inputs);
  free(layout.elements);
  return rc;
}

/* ---- data sets ---- */

typedef struct drv_dataset {
  const char *path;
  int is_tokens;
  modelc_rt_tokens tokens;
  modelc_rt_st_file file;
  int opened;
  const modelc_rt_st_tensor **tensors; /* per model input */
  int64_t samples;                     /* tensor sets: the first dimension */
  int64_t cursor;                      /* tensor sets: the next sample */
} drv_dataset;

static int drv_tokens_open(drv_dataset *d, const modelc_rt_model *m, const drv_layout *l, char *err,
                           size_t errlen) {
  if (modelc_rt_tokens_open(&d->tokens, d->path, err, errlen) != 0) return -1;
  d->opened = 1;
  int64_t t = m->inputs[l->tokens_input].shape[1], need = l->batch * t + 1;
  if (d->tokens.count < need)
    return drv_error(err, errlen, "%s: %lld tokens, but a batch of [%lld,%lld] needs %lld", d->path,
                     (long long)d->tokens.count, (long long)l->batch, (long long)t,
                     (long long)need);
  return 0;
}

/* A tensor per input, of shape [N, the input's shape without B]. */
static int drv_tensors_check(drv_dataset *d, const modelc_rt_model *m, char *err, size_t errlen) {
  char have[256], want[256];
  for (int i = 0; i < m->num_inputs; i++) {
    const modelc_rt_tensor_desc *in = &m->inputs[i];
    const modelc_rt_st_tensor *t = modelc_rt_st_find(&d->file, in->name);
    drv_shape_text(want, sizeof want, in->rank, in->shape);
    if (in->rank < 1)
      return drv_error(err, errlen, "the model's input '%s' has no batch dimension", in->name);
    if (!t)
      return drv_error(err, errlen, "%s: missing tensor '%s' (the model takes %s %s a batch)",
                       d->path, in->name, drv_dtype_text(in->dtype), want);
    int same = t->rank == in->rank;
    for (int k = 1; same && k < in->rank; k++) same = t->shape[k] == in->shape[k];
    if (!same || t->shape[0] < 1)
      return drv_error(err, errlen,
                       "%s: tensor '%s' is %s %s, but the model takes %s %s a batch, so the data "
                       "set needs [N%s",
                       d->path, in->name, drv_dtype_text(t->dtype),
                       drv_shape_text(have, sizeof have, t->rank, t->shape),
                       drv_dtype_text(in->dtype), want,
                       strchr(want, ',') ? strchr(want, ',') : "]");
    if (i > 0 && t->shape[0] != d->samples)
      return drv_error(err, errlen, "%s: tensor '%s' has %lld samples but '%s' has %lld", d->path,
                       in->name, (long long)t->shape[0], m->inputs[0].name, (long long)d->samples);
    d->samples = t->shape[0];
    d->tensors[i] = t;
  }
  return 0;
}

static int drv_dataset_open(drv_dataset *d, const char *path, const modelc_rt_model *m,
                            const drv_layout *l, char *err, size_t errlen) {
  memset(d, 0, sizeof *d);
  d->path = path;
  d->is_tokens = l->token_model && !drv_ends_with(path, ".safetensors");
  if (d->is_tokens) return drv_tokens_open(d, m, l, err, errlen);
  d->tensors = calloc((size_t)m->num_inputs + 1, sizeof *d->tensors);
  if (!d->tensors) return drv_error(err, errlen, "out of memory");
  if (modelc_rt_st_open(&d->file, path, err, errlen) != 0) return -1;
  d->opened = 1;
  for (int i = 1; i < m->num_inputs; i++)
    if (m->inputs[i].rank < 1 || m->inputs[i].shape[0] != l->batch)
      return drv_error(err, errlen, "the model's inputs do not share a batch dimension");
  return drv_tensors_check(d, m, err, errlen);
}

static void drv_dataset_close(drv_dataset *d) {
  if (d->opened) {
    if (d->is_tokens)
      modelc_rt_tokens_close(&d->tokens);
    else
      modelc_rt_st_close(&d->file);
  }
  free(d->tensors);
  memset(d, 0, sizeof *d);
}

/* B samples of a tensor set starting at sample `first`, wrapping around
 * the end (as often as needed when B exceeds the set). */
static int drv_dataset_read(drv_dataset *d, const modelc_rt_model *m, const drv_layout *l,
                            int64_t first, void **batch, char *err, size_t errlen) {
  for (int i = 0; i < m->num_inputs; i++) {
    int64_t per = l->elements[i] / l->batch, filled = 0, at = first % d->samples;
    while (filled < l->batch) {
      int64_t take = l->batch - filled;
      if (take > d->samples - at) take = d->samples - at;
      size_t size = m->inputs[i].dtype == MODELC_RT_I32 ? 4 : sizeof(modelc_rt_real);
      char *dst = (char *)batch[i] + (size_t)(filled * per) * size;
      if (drv_read_as(&d->file, d->tensors[i], m->inputs[i].dtype, at * per, take * per, dst, err,
                      errlen) != 0)
        return -1;
      filled += take;
      at = (at + take) % d->samples;
    }
  }
  return 0;
}

/* The next training micro-batch; advances the cursor. */
static int drv_dataset_next(drv_dataset *d, const modelc_rt_model *m, const drv_layout *l,
                            void **batch, char *err, size_t errlen) {
  if (d->is_tokens) {
    const modelc_rt_tensor_desc *tok = &m->inputs[l->tokens_input];
    modelc_rt_tokens_next(&d->tokens, tok->shape[0], tok->shape[1],
                          (int32_t *)batch[l->tokens_input], (int32_t *)batch[l->targets_input]);
    return 0;
  }
  if (drv_dataset_read(d, m, l, d->cursor, batch, err, errlen) != 0) return -1;
  d->cursor = (d->cursor + l->batch) % d->samples;
  return 0;
}

static int64_t drv_dataset_cursor(const drv_dataset *d) {
  return d->is_tokens ? d->tokens.cursor : d->cursor;
}

static int drv_dataset_seek(drv_dataset *d, int64_t cursor, char *err, size_t errlen) {
  int64_t limit = d->is_tokens ? d->tokens.count : d->samples;
  if (cursor < 0 || cursor >= limit)
    return drv_error(err, errlen, "the checkpoint's data.cursor %lld is outside %s (%lld %s)",
                     (long long)cursor, d->path, (long long)limit,
                     d->is_tokens ? "tokens" : "samples");
  if (d->is_tokens)
    d->tokens.cursor = cursor;
  else
    d->cursor = cursor;
  return 0;
}

/* ---- train ---- */

typedef struct drv_train_options {
  const char *data, *val, *init, *out, *resume;
  int64_t steps, eval_every, eval_batches, checkpoint_every, log_every; /* -1: default */
  int quiet, check_numerics;
} drv_train_options;

typedef struct drv_trainer {
  const modelc_rt_model *m;
  const char *prog;
  drv_train_options o;
  drv_layout layout;
  void *model;
  drv_dataset data, val;
  int has_val;
  void **batch;
  const modelc_rt_real **outputs;
  const char *out_dir;
  char *metrics_path;
  FILE *metrics;
  modelc_rt_st_entry *state; /* the model's state entries */
  int state_count;
  int64_t steps, start_step, eval_every, log_every;
  int tty, line_pending;
  double started, last_print, train_seconds;
  double last_loss, last_lr; /* of the last step, for the progress line */
} drv_trainer;

static volatile sig_atomic_t drv_interrupted;
static volatile sig_atomic_t drv_first_signal_ms;

/* Monotonic milliseconds, wrapped to fit a sig_atomic_t; clock_gettime
 * is async-signal-safe. */
static sig_atomic_t drv_signal_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (sig_atomic_t)(((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000) & 0x3fffffff);
}

/* The first SIGINT/SIGTERM asks the loop to checkpoint and stop. A second
 * one stops at once (the default action; the last committed checkpoint
 * stays loadable), unless it comes within half a second of the first:
 * `timeout -s INT` and `kill -INT -PGID` deliver one request twice (to the
 * process and to its group), which must not lose the checkpoint. */
static void drv_on_signal(int sig) {
  sig_atomic_t now = drv_signal_ms();
  if (!drv_interrupted) {
    drv_interrupted = 1;
    drv_first_signal_ms = now;
    return;
  }
  if (((now - drv_first_signal_ms) & 0x3fffffff) < 500) return;
  signal(sig, SIG_DFL);
  raise(sig);
}

/* The model's state entries; grows the array until they fit. */
static int drv_collect_state(drv_trainer *t) {
  for (int max = 16 + 4 * t->m->num_params;; max *= 2) {
    modelc_rt_st_entry *entries = realloc(t->state, (size_t)max * sizeof *entries);
    if (!entries) return -1;
    t->state = entries;
    t->state_count = t->m->state(t->model, entries, max);
    if (t->state_count < max) return t->state_count < 0 ? -1 : 0;
  }
}

/* The driver's entries beside the model's state. */
enum { DRV_OWN_ENTRIES = 4 };
static const char *const drv_own_names[DRV_OWN_ENTRIES] = {
    "data.cursor", "checkpoint.step", "checkpoint.steps", "checkpoint.model_hash"};

static int drv_is_own_name(const char *name) {
  for (int i = 0; i < DRV_OWN_ENTRIES; i++)
    if (strcmp(name, drv_own_names[i]) == 0) return 1;
  return 0;
}

/* Finishes or discards a checkpoint commit cut short (see the top of the
 * file). Afterwards DIR holds no pending files. */
static void drv_recover(const char *dir) {
  char err[DRV_ERRLEN];
  char *pending_model = drv_join(dir, ".ckpt-model.safetensors");
  char *pending_state = drv_join(dir, ".ckpt-state.safetensors");
  char *model_path = drv_join(dir, "model.safetensors");
  char *state_path = drv_join(dir, "state.safetensors");
  modelc_rt_st_file f;
  int64_t want = 0;
  uint64_t have = 0;
  if (pending_model && pending_state && model_path && state_path && drv_exists(pending_state) &&
      modelc_rt_st_open(&f, pending_state, err, sizeof err) == 0) {
    int ok = drv_read_i64(&f, "checkpoint.model_hash", &want, err, sizeof err) == 0;
    modelc_rt_st_close(&f);
    if (ok && drv_exists(pending_model) &&
        drv_hash_file(pending_model, &have, err, sizeof err) == 0 && have == (uint64_t)want)
      rename(pending_model, model_path);
    if (ok && drv_hash_file(model_path, &have, err, sizeof err) == 0 && have == (uint64_t)want)
      rename(pending_state, state_path);
    drv_fsync_dir(dir);
  }
  if (pending_state) unlink(pending_state);
  if (pending_model) unlink(pending_model);
  free(pending_model);
  free(pending_state);
  free(model_path);
  free(state_path);
}

/* Writes state entries to `path`: the model's, then the driver's. */
static int drv_write_state(drv_trainer *t, const char *path, int64_t step, uint64_t hash, char *err,
                           size_t errlen) {
  int64_t values[DRV_OWN_ENTRIES] = {drv_dataset_cursor(&t->data), step, t->steps, (int64_t)hash};
  static const int64_t scalar_shape[1] = {1};
  if (drv_collect_state(t) != 0) return drv_error(err, errlen, "cannot list the model's state");
  modelc_rt_st_entry *entries = calloc((size_t)t->state_count + DRV_OWN_ENTRIES, sizeof *entries);
  if (!entries) return drv_error(err, errlen, "out of memory");
  memcpy(entries, t->state, (size_t)t->state_count * sizeof *entries);
  for (int i = 0; i < DRV_OWN_ENTRIES; i++)
    entries[t->state_count + i] =
        (modelc_rt_st_entry){drv_own_names[i], MODELC_RT_I64, 0, scalar_shape, &values[i]};
  int rc = modelc_rt_st_write(path, entries, t->state_count + DRV_OWN_ENTRIES, err, errlen);
  free(entries);
  return rc;
}

/* A test hook (tests/run_checkpoint.sh): MODELC_TEST_CRASH_CHECKPOINT=P
 * or P@S kills the process with SIGKILL at point P of a checkpoint's
 * commit (at step S only, when given): 1 once the pending model is
 * written, 2 once the pending state is, 3 between the two renames, 4
 * after them. */
static void drv_test_crash(int point, int64_t step) {
  const char *hook = getenv("MODELC_TEST_CRASH_CHECKPOINT");
  long p = 0;
  long long s = -1;
  if (!hook || sscanf(hook, "%ld@%lld", &p, &s) < 1) return;
  if (p == point && (s < 0 || s == step)) raise(SIGKILL);
}

/* A checkpoint of the model after `step` steps, committed as described
 * at the top of the file. */
static int drv_checkpoint(drv_trainer *t, int64_t step, char *err, size_t errlen) {
  drv_recover(t->out_dir);
  char *pending_model = drv_join(t->out_dir, ".ckpt-model.safetensors");
  char *pending_state = drv_join(t->out_dir, ".ckpt-state.safetensors");
  char *model_path = drv_join(t->out_dir, "model.safetensors");
  char *state_path = drv_join(t->out_dir, "state.safetensors");
  int rc = -1;
  uint64_t hash = 0;
  if (!pending_model || !pending_state || !model_path || !state_path) {
    snprintf(err, errlen, "out of memory");
  } else if (t->m->save(t->model, pending_model) != 0) {
    snprintf(err, errlen, "%s", t->m->error(t->model));
  } else if (drv_test_crash(1, step), drv_hash_file(pending_model, &hash, err, errlen) == 0 &&
             drv_write_state(t, pending_state, step, hash, err, errlen) == 0) {
    drv_test_crash(2, step);
    int renamed = rename(pending_model, model_path) == 0;
    if (renamed) drv_test_crash(3, step);
    if (!renamed || rename(pending_state, state_path) != 0)
      snprintf(err, errlen, "cannot rename a checkpoint file in %s: %s", t->out_dir,
               strerror(errno));
    else
      rc = 0;
    if (rc == 0) drv_test_crash(4, step);
    drv_fsync_dir(t->out_dir);
  }
  if (rc != 0 && pending_model) unlink(pending_model);
  free(pending_model);
  free(pending_state);
  free(model_path);
  free(state_path);
  return rc;
}

/* Copies every state entry from the file into the model, checking names,
 * dtypes and shapes; the driver's own entries are read by the caller. */
static int drv_load_state(drv_trainer *t, const modelc_rt_st_file *f, char *err, size_t errlen) {
  char have[256], want[256];
  if (drv_collect_state(t) != 0) return drv_error(err, errlen, "cannot list the model's state");
  for (int i = 0; i < t->state_count; i++) {
    const modelc_rt_st_entry *e = &t->state[i];
    const modelc_rt_st_tensor *s = modelc_rt_st_find(f, e->name);
    if (!s) return drv_error(err, errlen, "%s: missing tensor '%s'", f->path, e->name);
    int same = s->dtype == e->dtype && s->rank == e->rank;
    for (int k = 0; same && k < e->rank; k++) same = s->shape[k] == e->shape[k];
    if (!same)
      return drv_error(
          err, errlen, "%s: tensor '%s' is %s %s but the model's state is %s %s", f->path, e->name,
          drv_dtype_text(s->dtype), drv_shape_text(have, sizeof have, s->rank, s->shape),
          drv_dtype_text(e->dtype), drv_shape_text(want, sizeof want, e->rank, e->shape));
    memcpy((void *)e->data, drv_tensor_bytes(f, s), s->nbytes);
  }
  for (int k = 0; k < f->count; k++) {
    const char *name = f->tensors[k].name;
    int known = drv_is_own_name(name);
    for (int i = 0; i < t->state_count && !known; i++) known = strcmp(t->state[i].name, name) == 0;
    if (!known)
      return drv_error(err, errlen, "%s: tensor '%s' is not part of the model's state", f->path,
                       name);
  }
  return 0;
}

/* The driver's entries: step, data cursor, N, and the model file's hash. */
static int drv_load_own_state(drv_trainer *t, const modelc_rt_st_file *f, const char *model_path,
                              char *err, size_t errlen) {
  int64_t step, cursor, steps, want;
  uint64_t have;
  if (drv_read_i64(f, "checkpoint.step", &step, err, errlen) != 0 ||
      drv_read_i64(f, "checkpoint.steps", &steps, err, errlen) != 0 ||
      drv_read_i64(f, "data.cursor", &cursor, err, errlen) != 0 ||
      drv_read_i64(f, "checkpoint.model_hash", &want, err, errlen) != 0 ||
      drv_hash_file(model_path, &have, err, errlen) != 0)
    return -1;
  if (have != (uint64_t)want)
    return drv_error(err, errlen, "%s does not belong to %s (they come from different checkpoints)",
                     model_path, f->path);
  if (t->m->step(t->model) != step)
    return drv_error(err, errlen, "%s: the model's step is %lld but the checkpoint's is %lld",
                     f->path, (long long)t->m->step(t->model), (long long)step);
  if (t->o.steps < 0) t->o.steps = steps;
  t->start_step = step;
  return drv_dataset_seek(&t->data, cursor, err, errlen);
}

static int drv_resume(drv_trainer *t, char *err, size_t errlen) {
  drv_recover(t->o.resume);
  char *model_path = drv_join(t->o.resume, "model.safetensors");
  char *state_path = drv_join(t->o.resume, "state.safetensors");
  int rc = -1;
  modelc_rt_st_file f;
  if (!model_path || !state_path) {
    snprintf(err, errlen, "out of memory");
  } else if (t->m->load(t->model, model_path) != 0) {
    snprintf(err, errlen, "%s", t->m->error(t->model));
  } else if (modelc_rt_st_open(&f, state_path, err, errlen) == 0) {
    rc = drv_load_state(t, &f, err, errlen);
    if (rc == 0) rc = drv_load_own_state(t, &f, model_path, err, errlen);
    modelc_rt_st_close(&f);
  }
  free(model_path);
  free(state_path);
  return rc;
}

/* Drops the lines of metrics.jsonl after `step` (written after the
 * checkpoint we resume from), so the file reads as one run. */
static int drv_trim_metrics(const char *path, int64_t step, char *err, size_t errlen) {
  FILE *in = fopen(path, "r");
  if (!in) return 0;
  char *tmp = malloc(strlen(path) + 8);
  if (!tmp) {
    fclose(in);
    return drv_error(err, errlen, "out of memory");
  }
  sprintf(tmp, "%s.trim", path);
  FILE *out = fopen(tmp, "w");
  if (!out) {
    snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
    free(tmp);
    fclose(in);
    return -1;
  }
  char line[4096];
  int keep = 1;
  long long s;
  while (fgets(line, sizeof line, in)) {
    if (sscanf(line, "{\"step\": %lld", &s) == 1) keep = s <= step;
    if (keep) fputs(line, out); /* a continued long line goes with its start */
  }
  int bad = ferror(in) || fflush(out) != 0 || fsync(fileno(out)) != 0;
  fclose(in);
  bad |= fclose(out) != 0;
  if (bad || rename(tmp, path) != 0) {
    snprintf(err, errlen, "cannot rewrite %s", path);
    unlink(tmp);
    free(tmp);
    return -1;
  }
  free(tmp);
  return 0;
}

/* ---- progress and metrics ---- */

/* ", key: v" with `digits` significant digits (9 round-trip a float);
 * JSON has no NaN or infinity, so those are null. */
static void drv_json_number(FILE *f, const char *key, double v, int digits) {
  if (isfinite(v))
    fprintf(f, ", \"%s\": %.*g", key, digits, v);
  else
    fprintf(f, ", \"%s\": null", key);
}

/* 12345.6 -> "12,346" */
static const char *drv_grouped(char *buf, size_t n, double v) {
  char digits[32];
  snprintf(digits, sizeof digits, "%.0f", v < 0 || !isfinite(v) ? 0.0 : v);
  size_t len = strlen(digits), k = 0;
  for (size_t i = 0; i < len && k + 2 < n; i++) {
    if (i > 0 && (len - i) % 3 == 0) buf[k++] = ',';
    buf[k++] = digits[i];
  }
  buf[k] = '\0';
  return buf;
}

/* 83 -> "1m23s", 3725 -> "1h02m" */
static const char *drv_duration(char *buf, size_t n, double seconds) {
  long long s = isfinite(seconds) && seconds > 0 ? (long long)(seconds + 0.5) : 0;
  if (s < 60)
    snprintf(buf, n, "%llds", s);
  else if (s < 3600)
    snprintf(buf, n, "%lldm%02llds", s / 60, s % 60);
  else
    snprintf(buf, n, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  return buf;
}

/* Tokens or samples per optimizer step. */
static double drv_items_per_step(const drv_trainer *t) {
  double per_batch = (double)t->layout.batch;
  if (t->data.is_tokens) per_batch *= (double)t->m->inputs[t->layout.tokens_input].shape[1];
  return per_batch * (double)(t->m->train.accumulate > 0 ? t->m->train.accumulate : 1);
}

static void drv_end_line(drv_trainer *t) {
  if (t->line_pending) fputc('\n', stderr);
  t->line_pending = 0;
}

/* The progress line after `step`. On a terminal it is rewritten in place
 * (at most every 0.1 s, always for the last step and when `force`d);
 * elsewhere it is printed every --log-every steps and for the last. */
static void drv_progress(drv_trainer *t, int64_t step, int force) {
  double now = modelc_rt_seconds();
  int due = force || step == t->steps;
  if (t->o.quiet) return;
  if (!due && (t->tty ? now - t->last_print < 0.1 : step % t->log_every != 0)) return;
  t->last_print = now;
  int64_t done = step - t->start_step;
  double rate = t->train_seconds > 0 ? (double)done * drv_items_per_step(t) / t->train_seconds : 0;
  double eta = (double)(t->steps - step) * (now - t->started) / (double)done;
  char grouped[64], eta_text[32];
  fprintf(stderr, "%sstep %lld/%lld | loss %.4f | lr %.2e | %s %s | ETA %s%s", t->tty ? "\r" : "",
          (long long)step, (long long)t->steps, t->last_loss, t->last_lr,
          drv_grouped(grouped, sizeof grouped, rate), t->data.is_tokens ? "tok/s" : "samples/s",
          drv_duration(eta_text, sizeof eta_text, eta), t->tty ? "\033[K" : "\n");
  t->line_pending = t->tty;
  fflush(stderr);
}

static int drv_metrics_flush(drv_trainer *t, char *err, size_t errlen) {
  if (fflush(t->metrics) == 0 && !ferror(t->metrics)) return 0;
  return drv_error(err, errlen, "cannot write %s: %s", t->metrics_path, strerror(errno));
}

static int drv_log_step(drv_trainer *t, int64_t step, double loss, double lr, double grad_norm,
                        double seconds, char *err, size_t errlen) {
  fprintf(t->metrics, "{\"step\": %lld", (long long)step);
  drv_json_number(t->metrics, "loss", loss, 9);
  drv_json_number(t->metrics, "lr", lr, 9);
  drv_json_number(t->metrics, "grad_norm", grad_norm, 9);
  drv_json_number(t->metrics, "time_s", seconds, 6);
  drv_json_number(t->metrics, t->data.is_tokens ? "tokens_per_s" : "samples_per_s",
                  seconds > 0 ? drv_items_per_step(t) / seconds : NAN, 6);
  fprintf(t->metrics, "}\n");
  t->last_loss = loss;
  t->last_lr = lr;
  drv_progress(t, step, 0);
  return drv_metrics_flush(t, err, errlen);
}

/* ---- validation ---- */

/* Correct predictions among the first `rows` of the batch. */
static int64_t drv_correct(const drv_trainer *t, const modelc_rt_real *logits,
                           const int32_t *labels, int64_t rows) {
  int64_t correct = 0, c = t->layout.classes;
  for (int64_t r = 0; r < rows; r++) {
    int64_t best = 0;
    for (int64_t k = 1; k < c; k++)
      if (logits[r * c + k] > logits[r * c + best]) best = k;
    correct += best == labels[r];
  }
  return correct;
}

/* One forward pass with the loss, inference mode. */
static int drv_eval_batch(drv_trainer *t, modelc_rt_real *loss, char *err, size_t errlen) {
  const void *const *inputs = (const void *const *)t->batch;
  if (t->m->forward(t->model, inputs, t->outputs, 1, loss) == 0) return 0;
  snprintf(err, errlen, "%s", t->m->error(t->model));
  return -1;
}

/* Mean validation loss (and accuracy for classifiers). A token set gives
 * --eval-batches batches from its start; a tensor set is seen once, the
 * last batch padded by wrapping: its loss is weighted by its real
 * samples, and only those count towards the accuracy. */
static int drv_evaluate(drv_trainer *t, double *val_loss, double *accuracy) {
  char err[DRV_ERRLEN];
  drv_dataset *v = &t->val;
  int64_t batches =
      v->is_tokens ? t->o.eval_batches : (v->samples + t->layout.batch - 1) / t->layout.batch;
  double loss_sum = 0, weight = 0;
  int64_t correct = 0;
  if (v->is_tokens) v->tokens.cursor = 0;
  for (int64_t b = 0; b < batches; b++) {
    int64_t real = t->layout.batch;
    if (v->is_tokens) {
      drv_dataset_next(v, t->m, &t->layout, t->batch, err, sizeof err);
    } else {
      if (drv_dataset_read(v, t->m, &t->layout, b * real, t->batch, err, sizeof err) != 0)
        return drv_fail(t->prog, DRV_INPUT, "%s", err);
      if (v->samples - b * real < real) real = v->samples - b * real;
    }
    modelc_rt_real loss;
    if (drv_eval_batch(t, &loss, err, sizeof err) != 0) {
      char blame[DRV_ERRLEN];
      return drv_fail(t->prog, drv_model_failure_code(err), "%s%s",
                      drv_blame(err, v->path, blame, sizeof blame), err);
    }
    loss_sum += (double)loss * (double)real;
    weight += (double)real;
    if (t->layout.classifier)
      correct +=
          drv_correct(t, t->outputs[0], (const int32_t *)t->batch[t->layout.label_input], real);
  }
  *val_loss = loss_sum / weight;
  *accuracy = t->layout.classifier ? (double)correct / weight : NAN;
  return DRV_OK;
}

static int drv_validate(drv_trainer *t, int64_t step) {
  double loss = 0, accuracy = 0;
  char err[DRV_ERRLEN];
  int rc = drv_evaluate(t, &loss, &accuracy);
  if (rc != DRV_OK) return rc;
  fprintf(t->metrics, "{\"step\": %lld", (long long)step);
  drv_json_number(t->metrics, "val_loss", loss, 9);
  if (t->layout.classifier) drv_json_number(t->metrics, "val_accuracy", accuracy, 9);
  fprintf(t->metrics, "}\n");
  if (!t->o.quiet) {
    if (t->tty) drv_progress(t, step, 1); /* keep this step's line above the val line */
    drv_end_line(t);
    fprintf(stderr, "step %lld/%lld | val_loss %.4f", (long long)step, (long long)t->steps, loss);
    if (t->layout.classifier) fprintf(stderr, " | val_accuracy %.4f", accuracy);
    fprintf(stderr, "\n");
  }
  if (drv_metrics_flush(t, err, sizeof err) != 0) return drv_fail(t->prog, DRV_INPUT, "%s", err);
  return DRV_OK;
}

/* ---- the training loop ---- */

/* One optimizer step: `accumulate` micro-batches, then the update. A
 * non-finite loss stops before the update, so nothing of it is kept. */
static int drv_step(drv_trainer *t, int64_t step) {
  char err[DRV_ERRLEN];
  const void *const *inputs = (const void *const *)t->batch;
  int64_t accumulate = t->m->train.accumulate > 0 ? t->m->train.accumulate : 1;
  double started = modelc_rt_seconds(), loss_sum = 0, grad_norm = 0, lr = 0;
  for (int64_t k = 0; k < accumulate; k++) {
    modelc_rt_real loss = 0;
    if (drv_dataset_next(&t->data, t->m, &t->layout, t->batch, err, sizeof err) != 0)
      return drv_fail(t->prog, DRV_INPUT, "%s", err);
    if (t->m->backward(t->model, inputs, t->outputs, &loss) != 0)
      return drv_fail(t->prog, drv_model_failure_code(t->m->error(t->model)), "step %lld: %s%s",
                      (long long)step, drv_blame(t->m->error(t->model), t->data.path, err, sizeof err),
                      t->m->error(t->model));
    loss_sum += loss;
  }
  double loss = loss_sum / (double)accumulate;
  if (!isfinite(loss)) {
    drv_end_line(t);
    return drv_fail(t->prog, DRV_INPUT,
                    "step %lld: the loss is %s; stopping (nothing saved for this step)",
                    (long long)step, isnan(loss) ? "nan" : "infinite");
  }
  if (t->m->update(t->model, accumulate, &grad_norm, &lr) != 0)
    return drv_fail(t->prog, DRV_INTERNAL, "step %lld: %s", (long long)step, t->m->error(t->model));
  double seconds = modelc_rt_seconds() - started;
  t->train_seconds += seconds;
  if (drv_log_step(t, step, loss, lr, grad_norm, seconds, err, sizeof err) != 0)
    return drv_fail(t->prog, DRV_INPUT, "%s", err);
  return DRV_OK;
}

static int drv_save(drv_trainer *t, int64_t step) {
  char err[DRV_ERRLEN];
  if (drv_checkpoint(t, step, err, sizeof err) == 0) return DRV_OK;
  drv_end_line(t);
  return drv_fail(t->prog, DRV_INPUT, "checkpoint at step %lld: %s", (long long)step, err);
}

static int drv_loop(drv_trainer *t) {
  int rc = DRV_OK;
  int64_t step = t->start_step;
  t->started = modelc_rt_seconds();
  while (step < t->steps) {
    rc = drv_step(t, ++step);
    if (rc != DRV_OK) return rc;
    int last = step == t->steps;
    if (t->has_val && (last || (t->eval_every > 0 && step % t->eval_every == 0)))
      if ((rc = drv_validate(t, step)) != DRV_OK) return rc;
    int interrupted = drv_interrupted && !last;
    if (last || interrupted || (t->o.checkpoint_every > 0 && step % t->o.checkpoint_every == 0))
      if ((rc = drv_save(t, step)) != DRV_OK) return rc;
    if (interrupted) {
      drv_end_line(t);
      fprintf(stderr, "interrupted at step %lld; checkpoint in %s\n", (long long)step, t->out_dir);
      return DRV_INTERRUPTED;
    }
  }
  drv_end_line(t);
  if (!t->o.quiet)
    fprintf(stderr, "trained %lld steps in %.1fs; model in %s/model.safetensors\n",
            (long long)(t->steps - t->start_step), modelc_rt_seconds() - t->started, t->out_dir);
  return DRV_OK;
}

/* Defaults that depend on N. */
static void drv_defaults(drv_trainer *t) {
  const modelc_rt_schedule *s = &t->m->train.schedule;
  if (t->o.steps < 0)
    t->o.steps = (s->kind == MODELC_RT_COSINE || s->kind == MODELC_RT_LINEAR) && s->steps > 0
                     ? s->steps
                     : 100;
  t->steps = t->o.steps;
  int64_t tenth = (t->steps + 9) / 10;
  if (tenth < 1) tenth = 1;
  t->eval_every = t->o.eval_every >= 0 ? t->o.eval_every : tenth;
  t->log_every = t->o.log_every > 0 ? t->o.log_every : (tenth < 50 ? tenth : 50);
  if (t->o.eval_batches < 0) t->o.eval_batches = 20;
}

/* Data, the model (seeded, --init or --resume), and the output folder. */
static int drv_prepare(drv_trainer *t) {
  char err[DRV_ERRLEN];
  const modelc_rt_model *m = t->m;
  if (drv_dataset_open(&t->data, t->o.data, m, &t->layout, err, sizeof err) != 0 ||
      (t->has_val && drv_dataset_open(&t->val, t->o.val, m, &t->layout, err, sizeof err) != 0))
    return drv_fail(t->prog, DRV_INPUT, "%s", err);
  t->batch = drv_alloc_batch(m, &t->layout);
  t->outputs = calloc((size_t)m->num_outputs + 1, sizeof *t->outputs);
  t->model = t->batch && t->outputs ? modelc_rt_model_create(m) : NULL;
  if (!t->model) return drv_fail(t->prog, DRV_INTERNAL, "out of memory creating the model");
  if (t->o.resume) {
    if (drv_resume(t, err, sizeof err) != 0) return drv_fail(t->prog, DRV_INPUT, "%s", err);
  } else if (t->o.init) {
    if (m->load(t->model, t->o.init) != 0)
      return drv_fail(t->prog, DRV_INPUT, "%s", m->error(t->model));
  } else if (m->init(t->model, m->train.seed) != 0) {
    return drv_fail(t->prog, DRV_INTERNAL, "%s", m->error(t->model));
  }
  if (!t->o.resume) t->start_step = m->step(t->model);
  drv_defaults(t);
  if (drv_collect_state(t) != 0)
    return drv_fail(t->prog, DRV_INTERNAL, "cannot list the model's state");
  for (int i = 0; i < t->state_count; i++)
    if (drv_is_own_name(t->state[i].name))
      return drv_fail(t->prog, DRV_INTERNAL, "the model's state uses the driver's name '%s'",
                      t->state[i].name);
  return DRV_OK;
}

static int drv_open_metrics(drv_trainer *t) {
  char err[DRV_ERRLEN];
  if (drv_mkdirs(t->out_dir, err, sizeof err) != 0) return drv_fail(t->prog, DRV_INPUT, "%s", err);
  t->metrics_path = drv_join(t->out_dir, "metrics.jsonl");
  if (!t->metrics_path) return drv_fail(t->prog, DRV_INTERNAL, "out of memory");
  if (t->o.resume && drv_trim_metrics(t->metrics_path, t->start_step, err, sizeof err) != 0)
    return drv_fail(t->prog, DRV_INPUT, "%s", err);
  t->metrics = fopen(t->metrics_path, t->o.resume ? "a" : "w");
  if (!t->metrics)
    return drv_fail(t->prog, DRV_INPUT, "cannot write %s: %s", t->metrics_path, strerror(errno));
  return DRV_OK;
}

static void drv_trainer_free(drv_trainer *t) {
  if (t->metrics) fclose(t->metrics);
  free(t->metrics_path);
  if (t->model) t->m->destroy(t->model);
  drv_free_batch(t->batch, t->m->num_inputs);
  free((void *)t->outputs);
  free(t->state);
  drv_dataset_close(&t->data);
  drv_dataset_close(&t->val);
  free(t->layout.elements);
}

static int drv_train_run(drv_trainer *t) {
  int rc = drv_prepare(t);
  if (rc != DRV_OK) return rc;
  if (t->start_step >= t->steps) {
    if (!t->o.quiet)
      fprintf(stderr, "%s: the checkpoint is at step %lld of %lld; nothing to do\n", t->prog,
              (long long)t->start_step, (long long)t->steps);
    return DRV_OK;
  }
  rc = drv_open_metrics(t);
  if (rc != DRV_OK) return rc;
  if (t->o.resume && !t->o.quiet)
    fprintf(stderr, "resuming from %s at step %lld of %lld\n", t->o.resume,
            (long long)t->start_step, (long long)t->steps);
  struct sigaction action, old_int, old_term;
  memset(&action, 0, sizeof action);
  action.sa_handler = drv_on_signal;
  action.sa_flags = 0;
  sigemptyset(&action.sa_mask);
  drv_interrupted = 0;
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);
  rc = drv_loop(t);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  return rc;
}

static int drv_train(const modelc_rt_model *m, int argc, char **argv) {
  char prog[256];
  snprintf(prog, sizeof prog, "%s train", m->name);
  drv_trainer t;
  memset(&t, 0, sizeof t);
  t.m = m;
  t.prog = prog;
  t.o = (drv_train_options){
      .steps = -1, .eval_every = -1, .eval_batches = -1, .checkpoint_every = 0, .log_every = -1};
  const drv_option opts[] = {
      {"--data", DRV_TEXT, &t.o.data},
      {"--val", DRV_TEXT, &t.o.val},
      {"--init", DRV_TEXT, &t.o.init},
      {"--out", DRV_TEXT, &t.o.out},
      {"--resume", DRV_TEXT, &t.o.resume},
      {"--steps", DRV_POSITIVE, &t.o.steps},
      {"--eval-every", DRV_COUNT, &t.o.eval_every},
      {"--eval-batches", DRV_POSITIVE, &t.o.eval_batches},
      {"--checkpoint-every", DRV_COUNT, &t.o.checkpoint_every},
      {"--log-every", DRV_POSITIVE, &t.o.log_every},
      {"--quiet", DRV_FLAG, &t.o.quiet},
      {"--check-numerics", DRV_FLAG, &t.o.check_numerics},
  };
  int rc = drv_parse_args(prog, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]));
  if (rc == DRV_HELP) return drv_train_help(m), DRV_OK;
  if (rc == DRV_OK) rc = drv_require(prog, t.o.data, "--data");
  if (rc == DRV_OK && t.o.init && t.o.resume)
    rc = drv_fail(prog, DRV_INPUT, "--init and --resume exclude each other");
  if (rc == DRV_OK && !m->trains)
    rc = drv_fail(prog, DRV_INPUT, "the model has no train: section, so it cannot be trained");
  if (rc != DRV_OK) return rc;
  if (drv_layout_init(&t.layout, m) != 0) return drv_fail(prog, DRV_INTERNAL, "out of memory");
  modelc_rt_set_check_numerics(t.o.check_numerics);
  t.has_val = t.o.val != NULL;
  t.out_dir = t.o.out ? t.o.out : t.o.resume ? t.o.resume : "out";
  t.tty = isatty(fileno(stderr));
  rc = drv_train_run(&t);
  drv_trainer_free(&t);
  return rc;
}

/* ---- entry point ---- */

int modelc_rt_main(int argc, char **argv, const modelc_rt_model *model) {
  /* A file-size limit (ulimit -f) makes writes fail with EFBIG, reported
   * as any full disk is, instead of killing the process mid-checkpoint. */
  signal(SIGXFSZ, SIG_IGN);
  if (argc < 2) {
    drv_usage(stderr, model);
    return DRV_INPUT;
  }
  const char *command = argv[1];
  if (strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0 ||
      strcmp(command, "help") == 0) {
    drv_usage(stdout, model);
    return DRV_OK;
  }
  if (strcmp(command, "run") == 0) return drv_run(model, argc - 2, argv + 2);
  if (strcmp(command, "train") == 0) return drv_train(model, argc - 2, argv + 2);
  if (strcmp(command, "sample") == 0) return modelc_rt_sample_main(argc - 2, argv + 2, model);
  if (strcmp(command, "bench") == 0) return modelc_rt_bench_main(argc - 2, argv + 2, model);
#ifdef MODELC_DOUBLE
  if (strcmp(command, "gradcheck") == 0) return modelc_rt_gradcheck_main(argc - 2, argv + 2, model);
#endif
  fprintf(stderr, "%s: error: unknown command '%s' (see '%s --help')\n", model->name, command,
          model->name);
  return DRV_INPUT;
}
