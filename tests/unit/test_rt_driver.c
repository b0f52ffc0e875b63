/* test_rt_driver.c: the generic driver (runtime/rt_driver.c) through
 * modelc_rt_main, with two small hand-written models: a softmax
 * classifier (images f32 [8,4] -> logits [8,3], labels i32 [8] for the
 * loss) and a bigram token model (tokens/targets i32 [2,8] -> logits
 * [2,8,8]). Both are softmax regressions trained with AdamW; hooks in
 * backward raise SIGINT, produce a NaN loss or fail at a chosen call. */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "modelc_rt.h"

/* ---- the test models ---- */

enum { CLS_B = 8, CLS_D = 4, CLS_C = 3, TOK_B = 2, TOK_T = 8, TOK_V = 8 };
enum { MAX_ROWS = 16, MAX_D = 8, MAX_C = 8 };

/* logits [rows, c] = x [rows, d] w [d, c] + b [c]; loss = mean CE. */
typedef struct test_model {
  int tokens; /* the token model: x = one-hot(tokens) */
  int64_t rows, d, c;
  float w[MAX_D * MAX_C], b[MAX_C];
  float gw[MAX_D * MAX_C], gb[MAX_C];
  float mw[MAX_D * MAX_C], vw[MAX_D * MAX_C], mb[MAX_C], vb[MAX_C];
  int64_t step, micro;
  float x[MAX_ROWS * MAX_D], logits[MAX_ROWS * MAX_C], probs[MAX_ROWS * MAX_C];
  char err[512];
} test_model;

/* Hooks, counted in backward calls since the last reset (1-based). */
static int backward_calls, hook_sigint_at, hook_nan_at, hook_fail_at, hook_nan_norm_at;
static int saves;
static int64_t saved_steps[64];

static void reset_hooks(void) {
  backward_calls = hook_sigint_at = hook_nan_at = hook_fail_at = hook_nan_norm_at = 0;
  saves = 0;
}

static const modelc_rt_tensor_desc cls_inputs[] = {
    {"images", MODELC_RT_F32, 2, {CLS_B, CLS_D}},
    {"labels", MODELC_RT_I32, 1, {CLS_B}},
};
static const int cls_loss_only[] = {0, 1};
static const modelc_rt_tensor_desc cls_outputs[] = {{"logits", MODELC_RT_F32, 2, {CLS_B, CLS_C}}};
static const modelc_rt_tensor_desc cls_params[] = {
    {"w", MODELC_RT_F32, 2, {CLS_D, CLS_C}},
    {"b", MODELC_RT_F32, 1, {CLS_C}},
};
static const modelc_rt_tensor_desc tok_inputs[] = {
    {"tokens", MODELC_RT_I32, 2, {TOK_B, TOK_T}},
    {"targets", MODELC_RT_I32, 2, {TOK_B, TOK_T}},
};
static const int tok_loss_only[] = {0, 1};
static const modelc_rt_tensor_desc tok_outputs[] = {
    {"logits", MODELC_RT_F32, 3, {TOK_B, TOK_T, TOK_V}}};
static const modelc_rt_tensor_desc tok_params[] = {
    {"w", MODELC_RT_F32, 2, {TOK_V, TOK_V}},
    {"b", MODELC_RT_F32, 1, {TOK_V}},
};

static const modelc_rt_model classifier, token_model;

static const modelc_rt_model *desc_of(const test_model *t) {
  return t->tokens ? &token_model : &classifier;
}

static void *create_classifier(void) {
  test_model *t = calloc(1, sizeof *t);
  if (t) t->rows = CLS_B, t->d = CLS_D, t->c = CLS_C;
  return t;
}

static void *create_token_model(void) {
  test_model *t = calloc(1, sizeof *t);
  if (t) t->tokens = 1, t->rows = TOK_B * TOK_T, t->d = TOK_V, t->c = TOK_V;
  return t;
}

static void destroy(void *model) { free(model); }
static const char *model_error(const void *model) { return ((const test_model *)model)->err; }

static int init(void *model, uint64_t seed) {
  test_model *t = model;
  for (int64_t i = 0; i < t->d * t->c; i++) t->w[i] = 0.1f * sinf((float)(seed * 31 + (uint64_t)i));
  for (int64_t i = 0; i < t->c; i++) t->b[i] = 0.0f;
  return 0;
}

static float *param_data(test_model *t, int i) { return i == 0 ? t->w : t->b; }

static int load(void *model, const char *path) {
  test_model *t = model;
  const modelc_rt_model *m = desc_of(t);
  modelc_rt_st_file f;
  if (modelc_rt_st_open(&f, path, t->err, sizeof t->err) != 0) return -1;
  int rc = 0;
  for (int i = 0; i < m->num_params && rc == 0; i++) {
    const modelc_rt_st_tensor *s = modelc_rt_st_find(&f, m->params[i].name);
    int64_t n = m->params[i].rank == 2 ? t->d * t->c : t->c;
    if (!s) {
      snprintf(t->err, sizeof t->err, "%s: missing tensor '%s'", path, m->params[i].name);
      rc = -1;
    } else if (s->rank != m->params[i].rank || s->shape[0] != m->params[i].shape[0]) {
      snprintf(t->err, sizeof t->err, "%s: tensor '%s' has the wrong shape", path, s->name);
      rc = -1;
    } else {
      rc = modelc_rt_st_read_real(&f, s, 0, n, param_data(t, i), t->err, sizeof t->err);
    }
  }
  if (rc == 0 && f.count != m->num_params) {
    snprintf(t->err, sizeof t->err, "%s: unexpected tensors", path);
    rc = -1;
  }
  modelc_rt_st_close(&f);
  return rc;
}

static int save(const void *model, const char *path) {
  const test_model *t = model;
  const modelc_rt_model *m = desc_of(t);
  modelc_rt_st_entry e[2] = {
      {"w", MODELC_RT_F32, 2, m->params[0].shape, t->w},
      {"b", MODELC_RT_F32, 1, m->params[1].shape, t->b},
  };
  if (saves < 64) saved_steps[saves] = t->step;
  saves++;
  return modelc_rt_st_write(path, e, 2, (char *)t->err, sizeof t->err);
}

static int state(void *model, modelc_rt_st_entry *entries, int max) {
  test_model *t = model;
  const modelc_rt_model *m = desc_of(t);
  static const int64_t scalar[1] = {1};
  modelc_rt_st_entry all[6] = {
      {"opt.m.w", MODELC_RT_F32, 2, m->params[0].shape, t->mw},
      {"opt.v.w", MODELC_RT_F32, 2, m->params[0].shape, t->vw},
      {"opt.m.b", MODELC_RT_F32, 1, m->params[1].shape, t->mb},
      {"opt.v.b", MODELC_RT_F32, 1, m->params[1].shape, t->vb},
      {"opt.step", MODELC_RT_I64, 0, scalar, &t->step},
      {"micro_batches", MODELC_RT_I64, 0, scalar, &t->micro},
  };
  int n = max < 6 ? max : 6;
  memcpy(entries, all, (size_t)n * sizeof *entries);
  return n;
}

/* x and the labels (row targets) from the inputs. */
static int set_rows(test_model *t, const void *const *inputs, const int32_t **labels) {
  if (!t->tokens) {
    memcpy(t->x, inputs[0], sizeof(float) * (size_t)(t->rows * t->d));
    *labels = inputs[1];
    return 0;
  }
  const int32_t *tokens = inputs[0];
  memset(t->x, 0, sizeof t->x);
  for (int64_t r = 0; r < t->rows; r++) {
    if (tokens[r] < 0 || tokens[r] >= t->d) {
      snprintf(t->err, sizeof t->err, "token %d out of range", (int)tokens[r]);
      return -1;
    }
    t->x[r * t->d + tokens[r]] = 1.0f;
  }
  *labels = inputs[1];
  return 0;
}

static int forward(void *model, const void *const *inputs, const float **outputs, int with_loss,
                   float *loss) {
  test_model *t = model;
  const int32_t *labels;
  if (set_rows(t, inputs, &labels) != 0) return -1;
  double total = 0;
  for (int64_t r = 0; r < t->rows; r++) {
    float *z = &t->logits[r * t->c], *p = &t->probs[r * t->c], max = -INFINITY;
    for (int64_t k = 0; k < t->c; k++) {
      z[k] = t->b[k];
      for (int64_t j = 0; j < t->d; j++) z[k] += t->x[r * t->d + j] * t->w[j * t->c + k];
      if (z[k] > max) max = z[k];
    }
    float sum = 0;
    for (int64_t k = 0; k < t->c; k++) sum += p[k] = expf(z[k] - max);
    for (int64_t k = 0; k < t->c; k++) p[k] /= sum;
    if (with_loss) {
      if (labels[r] < 0 || labels[r] >= t->c) {
        snprintf(t->err, sizeof t->err, "label %d out of range", (int)labels[r]);
        return -1;
      }
      total -= log(p[labels[r]]);
    }
  }
  outputs[0] = t->logits;
  if (with_loss) *loss = (float)(total / (double)t->rows);
  return 0;
}

static int backward(void *model, const void *const *inputs, const float **outputs, float *loss) {
  test_model *t = model;
  backward_calls++;
  if (backward_calls == hook_sigint_at) raise(SIGINT);
  if (backward_calls == hook_fail_at) {
    snprintf(t->err, sizeof t->err, "backward failed on purpose");
    return -1;
  }
  if (forward(model, inputs, outputs, 1, loss) != 0) return -1;
  const int32_t *labels = inputs[1];
  for (int64_t r = 0; r < t->rows; r++)
    for (int64_t k = 0; k < t->c; k++) {
      float g = (t->probs[r * t->c + k] - (labels[r] == k)) / (float)t->rows;
      t->gb[k] += g;
      for (int64_t j = 0; j < t->d; j++) t->gw[j * t->c + k] += t->x[r * t->d + j] * g;
    }
  t->micro++;
  if (backward_calls == hook_nan_at) *loss = NAN;
  return 0;
}

static int update(void *model, int64_t micro_batches, double *grad_norm, double *lr) {
  test_model *t = model;
  const modelc_rt_train_config *c = &desc_of(t)->train;
  int64_t nw = t->d * t->c, nb = t->c;
  modelc_rt_scale(t->gw, nw, 1.0f / (float)micro_batches);
  modelc_rt_scale(t->gb, nb, 1.0f / (float)micro_batches);
  double norm = sqrt(modelc_rt_sum_squares(t->gw, nw) + modelc_rt_sum_squares(t->gb, nb));
  if (c->grad_clip > 0 && norm > c->grad_clip) {
    float f = (float)(c->grad_clip / (norm + 1e-6));
    modelc_rt_scale(t->gw, nw, f);
    modelc_rt_scale(t->gb, nb, f);
  }
  double rate = modelc_rt_lr_at(&c->schedule, t->step);
  t->step++;
  modelc_rt_adamw(t->w, t->gw, t->mw, t->vw, nw, (float)rate, (float)c->beta1, (float)c->beta2,
                  (float)c->eps, (float)c->weight_decay, t->step);
  modelc_rt_adamw(t->b, t->gb, t->mb, t->vb, nb, (float)rate, (float)c->beta1, (float)c->beta2,
                  (float)c->eps, 0.0f, t->step);
  memset(t->gw, 0, sizeof t->gw);
  memset(t->gb, 0, sizeof t->gb);
  *grad_norm = t->step == hook_nan_norm_at ? NAN : norm;
  *lr = rate;
  return 0;
}

static const float *grad(const void *model, int param) {
  const test_model *t = model;
  return param == 0 ? t->gw : t->gb;
}

static int64_t step_of(const void *model) { return ((const test_model *)model)->step; }

static const modelc_rt_model classifier = {
    .name = "classifier",
    .num_inputs = 2,
    .inputs = cls_inputs,
    .num_outputs = 1,
    .outputs = cls_outputs,
    .num_params = 2,
    .params = cls_params,
    .trains = 1,
    .train = {.optimizer = 0,
              .lr = 0.05,
              .beta1 = 0.9,
              .beta2 = 0.999,
              .eps = 1e-8,
              .weight_decay = 0.01,
              .schedule = {MODELC_RT_COSINE, 0.05, 0.005, 2, 40},
              .grad_clip = 1.0,
              .accumulate = 2,
              .seed = 7},
    .input_loss_only = cls_loss_only,
    .create = create_classifier,
    .destroy = destroy,
    .error = model_error,
    .init = init,
    .load = load,
    .save = save,
    .state = state,
    .forward = forward,
    .backward = backward,
    .update = update,
    .grad = grad,
    .step = step_of,
};

static const modelc_rt_model token_model = {
    .name = "bigram",
    .num_inputs = 2,
    .inputs = tok_inputs,
    .num_outputs = 1,
    .outputs = tok_outputs,
    .num_params = 2,
    .params = tok_params,
    .trains = 1,
    .train = {.optimizer = 0,
              .lr = 0.1,
              .beta1 = 0.9,
              .beta2 = 0.999,
              .eps = 1e-8,
              .weight_decay = 0.0,
              .schedule = {MODELC_RT_CONSTANT, 0.1, 0.0, 0, 0},
              .grad_clip = 0.0,
              .accumulate = 1,
              .seed = 3},
    .input_loss_only = tok_loss_only,
    .create = create_token_model,
    .destroy = destroy,
    .error = model_error,
    .init = init,
    .load = load,
    .save = save,
    .state = state,
    .forward = forward,
    .backward = backward,
    .update = update,
    .grad = grad,
    .step = step_of,
};

/* ---- files and running main ---- */

static char root[256];
static char out_text[1 << 16], err_text[1 << 16];

static void remove_tree(const char *path) {
  DIR *d = opendir(path);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      char sub[1024];
      snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
      remove_tree(sub);
    }
    closedir(d);
    rmdir(path);
  } else {
    unlink(path);
  }
}

static void setup(void) {
  strcpy(root, "/tmp/test_rt_driver.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(root));
  reset_hooks();
}

static void teardown(void) { remove_tree(root); }

/* A path under the test's folder (a rotating set of buffers). */
static const char *P(const char *name) {
  static char bufs[16][512];
  static int next;
  char *b = bufs[next++ % 16];
  snprintf(b, 512, "%s/%s", root, name);
  return b;
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static void read_text(const char *path, char *buf, size_t n) {
  FILE *f = fopen(path, "r");
  size_t got = f ? fread(buf, 1, n - 1, f) : 0;
  buf[got] = '\0';
  if (f) fclose(f);
}

/* modelc_rt_main(m, "name", args..., NULL) with stdout and stderr captured
 * into out_text and err_text. */
static int run_main(const modelc_rt_model *m, ...) {
  char *argv[64];
  int argc = 0;
  argv[argc++] = (char *)m->name;
  va_list ap;
  va_start(ap, m);
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL) argv[argc++] = (char *)a;
  va_end(ap);
  argv[argc] = NULL;
  char out_path[600], err_path[600];
  snprintf(out_path, sizeof out_path, "%s/.stdout", root);
  snprintf(err_path, sizeof err_path, "%s/.stderr", root);
  fflush(stdout);
  fflush(stderr);
  int saved_out = dup(1), saved_err = dup(2);
  int fo = open(out_path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
  int fe = open(err_path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
  dup2(fo, 1);
  dup2(fe, 2);
  close(fo);
  close(fe);
  int rc = modelc_rt_main(argc, argv, m);
  fflush(stdout);
  fflush(stderr);
  dup2(saved_out, 1);
  dup2(saved_err, 2);
  close(saved_out);
  close(saved_err);
  read_text(out_path, out_text, sizeof out_text);
  read_text(err_path, err_text, sizeof err_text);
  unlink(out_path);
  unlink(err_path);
  return rc;
}

static void write_st(const char *path, const modelc_rt_st_entry *e, int n) {
  char err[512];
  ck_assert_msg(modelc_rt_st_write(path, e, n, err, sizeof err) == 0, "%s", err);
}

/* A deterministic value in [-1, 1). */
static float noise(uint32_t i) {
  uint32_t x = i * 2654435761u + 12345u;
  x ^= x >> 13;
  x *= 0x5bd1e995u;
  x ^= x >> 15;
  return (float)(x & 0xffff) / 32768.0f - 1.0f;
}

/* A learnable set: label = argmax of images x a fixed matrix. */
static void write_dataset(const char *path, int64_t n, uint32_t salt) {
  static const float truth[CLS_D][CLS_C] = {{2, -1, 0}, {-1, 2, 0}, {0, 0, 1}, {1, 1, -2}};
  float *images = malloc(sizeof(float) * (size_t)(n * CLS_D));
  int32_t *labels = malloc(sizeof(int32_t) * (size_t)n);
  for (int64_t s = 0; s < n; s++) {
    float best = -INFINITY;
    for (int j = 0; j < CLS_D; j++) images[s * CLS_D + j] = noise((uint32_t)(s * CLS_D + j) + salt);
    for (int k = 0; k < CLS_C; k++) {
      float z = 0;
      for (int j = 0; j < CLS_D; j++) z += images[s * CLS_D + j] * truth[j][k];
      if (z > best) best = z, labels[s] = k;
    }
  }
  int64_t ishape[2] = {n, CLS_D}, lshape[1] = {n};
  modelc_rt_st_entry e[2] = {{"images", MODELC_RT_F32, 2, ishape, images},
                             {"labels", MODELC_RT_I32, 1, lshape, labels}};
  write_st(path, e, 2);
  free(images);
  free(labels);
}

/* An llm.c token file: a repeating pattern a bigram model can learn. */
static void write_tokens(const char *path, int32_t count) {
  int32_t header[256] = {20240520, 1, count};
  static const uint16_t pattern[] = {0, 1, 2, 3, 4, 5, 6, 7, 6, 5, 4, 3, 2, 1};
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  fwrite(header, sizeof header, 1, f);
  for (int32_t i = 0; i < count; i++) {
    uint16_t t = pattern[i % 14];
    if (i % 14 == 7) t = (uint16_t)(i % 3 == 0 ? 7 : 0); /* a little noise */
    fwrite(&t, 2, 1, f);
  }
  fclose(f);
}

/* The classifier's weights and a batch of 8, labels optional. */
static const float W0[CLS_D * CLS_C] = {0.5f, -0.2f, 0.1f,  -0.3f, 0.4f,  0.0f,
                                        0.2f, 0.2f,  -0.1f, 0.0f,  -0.5f, 0.3f};
static const float B0[CLS_C] = {0.1f, -0.1f, 0.05f};

static void write_weights(const char *path) {
  int64_t wshape[2] = {CLS_D, CLS_C}, bshape[1] = {CLS_C};
  modelc_rt_st_entry e[2] = {{"w", MODELC_RT_F32, 2, wshape, W0},
                             {"b", MODELC_RT_F32, 1, bshape, B0}};
  write_st(path, e, 2);
}

static float batch_images[CLS_B * CLS_D];
static int32_t batch_labels[CLS_B];

static void write_batch(const char *path, int with_labels, const char *extra) {
  for (int i = 0; i < CLS_B * CLS_D; i++) batch_images[i] = noise((uint32_t)i + 999);
  for (int i = 0; i < CLS_B; i++) batch_labels[i] = i % CLS_C;
  int64_t ishape[2] = {CLS_B, CLS_D}, lshape[1] = {CLS_B};
  modelc_rt_st_entry e[3] = {{"images", MODELC_RT_F32, 2, ishape, batch_images},
                             {"labels", MODELC_RT_I32, 1, lshape, batch_labels}};
  int n = with_labels ? 2 : 1;
  if (extra) e[n++] = (modelc_rt_st_entry){extra, MODELC_RT_I32, 1, lshape, batch_labels};
  write_st(path, e, n);
}

/* Reference logits, probabilities and loss in double. */
static double reference(double logits[CLS_B][CLS_C], double probs[CLS_B][CLS_C]) {
  double loss = 0;
  for (int r = 0; r < CLS_B; r++) {
    double sum = 0, max = -INFINITY;
    for (int k = 0; k < CLS_C; k++) {
      logits[r][k] = B0[k];
      for (int j = 0; j < CLS_D; j++)
        logits[r][k] += batch_images[r * CLS_D + j] * W0[j * CLS_C + k];
      if (logits[r][k] > max) max = logits[r][k];
    }
    for (int k = 0; k < CLS_C; k++) sum += probs[r][k] = exp(logits[r][k] - max);
    for (int k = 0; k < CLS_C; k++) probs[r][k] /= sum;
    loss -= log(probs[r][batch_labels[r]]);
  }
  return loss / CLS_B;
}

/* Reads tensor `name` of a safetensors file as f32 into dst (n values);
 * checks rank and, when shape is given, the shape. */
static void read_tensor(const char *path, const char *name, int rank, const int64_t *shape,
                        float *dst, int64_t n) {
  modelc_rt_st_file f;
  char err[512];
  ck_assert_msg(modelc_rt_st_open(&f, path, err, sizeof err) == 0, "%s", err);
  const modelc_rt_st_tensor *t = modelc_rt_st_find(&f, name);
  ck_assert_msg(t != NULL, "%s has no tensor %s", path, name);
  ck_assert_int_eq(t->rank, rank);
  for (int i = 0; shape && i < rank; i++) ck_assert_int_eq(t->shape[i], shape[i]);
  ck_assert_msg(modelc_rt_st_read_real(&f, t, 0, n, dst, err, sizeof err) == 0, "%s", err);
  modelc_rt_st_close(&f);
}

static int64_t read_i64(const char *path, const char *name) {
  modelc_rt_st_file f;
  char err[512];
  ck_assert_msg(modelc_rt_st_open(&f, path, err, sizeof err) == 0, "%s", err);
  const modelc_rt_st_tensor *t = modelc_rt_st_find(&f, name);
  ck_assert_msg(t != NULL, "%s has no tensor %s", path, name);
  ck_assert_int_eq(t->dtype, MODELC_RT_I64);
  int64_t v;
  memcpy(&v, f.data + t->offset, 8);
  modelc_rt_st_close(&f);
  return v;
}

static int tensor_count(const char *path) {
  modelc_rt_st_file f;
  char err[512];
  ck_assert_msg(modelc_rt_st_open(&f, path, err, sizeof err) == 0, "%s", err);
  int n = f.count;
  modelc_rt_st_close(&f);
  return n;
}

static int has_tensor(const char *path, const char *name) {
  modelc_rt_st_file f;
  char err[512];
  ck_assert_msg(modelc_rt_st_open(&f, path, err, sizeof err) == 0, "%s", err);
  int found = modelc_rt_st_find(&f, name) != NULL;
  modelc_rt_st_close(&f);
  return found;
}

static int same_file(const char *a, const char *b) {
  static char x[1 << 16], y[1 << 16];
  FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
  ck_assert_ptr_nonnull(fa);
  ck_assert_ptr_nonnull(fb);
  size_t na = fread(x, 1, sizeof x, fa), nb = fread(y, 1, sizeof y, fb);
  fclose(fa);
  fclose(fb);
  return na == nb && memcmp(x, y, na) == 0;
}

/* ---- metrics.jsonl ---- */

typedef struct metric_line {
  long long step;
  int is_val;
  char loss[40], lr[40], grad_norm[40], val_loss[40], val_accuracy[40];
  double time_s, rate;
} metric_line;

/* The text of "key": VALUE up to the next ',' or '}'. */
static int field(const char *line, const char *key, char *value, size_t n) {
  char pattern[64];
  snprintf(pattern, sizeof pattern, "\"%s\": ", key);
  const char *p = strstr(line, pattern);
  if (!p) return 0;
  p += strlen(pattern);
  size_t len = strcspn(p, ",}");
  if (len >= n) len = n - 1;
  memcpy(value, p, len);
  value[len] = '\0';
  return 1;
}

/* Parses every line, checking the shape of each; returns the count. */
static int read_metrics(const char *path, metric_line *lines, int max, const char *rate_key) {
  static char text[1 << 18];
  read_text(path, text, sizeof text);
  int n = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    ck_assert_int_lt(n, max);
    metric_line *m = &lines[n++];
    memset(m, 0, sizeof *m);
    ck_assert_msg(sscanf(line, "{\"step\": %lld", &m->step) == 1, "bad line: %s", line);
    ck_assert_msg(line[strlen(line) - 1] == '}', "bad line: %s", line);
    char v[64];
    if (field(line, "val_loss", m->val_loss, sizeof m->val_loss)) {
      m->is_val = 1;
      field(line, "val_accuracy", m->val_accuracy, sizeof m->val_accuracy);
      continue;
    }
    ck_assert_msg(field(line, "loss", m->loss, sizeof m->loss), "no loss: %s", line);
    ck_assert_msg(field(line, "lr", m->lr, sizeof m->lr), "no lr: %s", line);
    ck_assert_msg(field(line, "grad_norm", m->grad_norm, sizeof m->grad_norm), "%s", line);
    ck_assert_msg(field(line, "time_s", v, sizeof v), "no time_s: %s", line);
    m->time_s = strtod(v, NULL);
    ck_assert_msg(field(line, rate_key, v, sizeof v), "no %s: %s", rate_key, line);
    m->rate = strtod(v, NULL);
    ck_assert_msg(isfinite(strtod(m->loss, NULL)), "%s", line);
  }
  return n;
}

static int step_lines(const metric_line *lines, int n, metric_line *steps) {
  int k = 0;
  for (int i = 0; i < n; i++)
    if (!lines[i].is_val) steps[k++] = lines[i];
  return k;
}

/* ---- run ---- */

START_TEST(run_writes_outputs_and_loss) {
  write_weights(P("w.safetensors"));
  write_batch(P("in.safetensors"), 1, NULL);
  int rc = run_main(&classifier, "run", "--weights", P("w.safetensors"), "--input",
                    P("in.safetensors"), "--output", P("out.safetensors"), NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, err_text);
  ck_assert_int_eq(tensor_count(P("out.safetensors")), 2);
  double logits[CLS_B][CLS_C], probs[CLS_B][CLS_C];
  double loss = reference(logits, probs);
  float got[CLS_B * CLS_C], got_loss;
  int64_t shape[2] = {CLS_B, CLS_C};
  read_tensor(P("out.safetensors"), "logits", 2, shape, got, CLS_B * CLS_C);
  for (int r = 0; r < CLS_B; r++)
    for (int k = 0; k < CLS_C; k++) ck_assert_double_eq_tol(got[r * CLS_C + k], logits[r][k], 1e-5);
  read_tensor(P("out.safetensors"), "loss", 0, NULL, &got_loss, 1);
  ck_assert_double_eq_tol(got_loss, loss, 1e-5);
}
END_TEST

START_TEST(run_without_loss_inputs) {
  write_weights(P("w.safetensors"));
  write_batch(P("in.safetensors"), 0, NULL);
  int rc = run_main(&classifier, "run", "--weights", P("w.safetensors"), "--input",
                    P("in.safetensors"), "--output", P("out.safetensors"), NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, err_text);
  ck_assert_int_eq(tensor_count(P("out.safetensors")), 1);
  ck_assert(has_tensor(P("out.safetensors"), "logits"));
  ck_assert(!has_tensor(P("out.safetensors"), "loss"));
}
END_TEST

START_TEST(run_grads) {
  write_weights(P("w.safetensors"));
  write_batch(P("in.safetensors"), 1, NULL);
  int rc = run_main(&classifier, "run", "--weights", P("w.safetensors"), "--input",
                    P("in.safetensors"), "--output", P("out.safetensors"), "--grads", NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, err_text);
  ck_assert_int_eq(tensor_count(P("out.safetensors")), 4);
  double logits[CLS_B][CLS_C], probs[CLS_B][CLS_C];
  double loss = reference(logits, probs);
  float gw[CLS_D * CLS_C], gb[CLS_C], got_loss;
  int64_t wshape[2] = {CLS_D, CLS_C}, bshape[1] = {CLS_C};
  read_tensor(P("out.safetensors"), "grad.w", 2, wshape, gw, CLS_D * CLS_C);
  read_tensor(P("out.safetensors"), "grad.b", 1, bshape, gb, CLS_C);
  read_tensor(P("out.safetensors"), "loss", 0, NULL, &got_loss, 1);
  ck_assert_double_eq_tol(got_loss, loss, 1e-5);
  for (int k = 0; k < CLS_C; k++) {
    double want_b = 0;
    for (int r = 0; r < CLS_B; r++) want_b += (probs[r][k] - (batch_labels[r] == k)) / CLS_B;
    ck_assert_double_eq_tol(gb[k], want_b, 1e-5);
    for (int j = 0; j < CLS_D; j++) {
      double want = 0;
      for (int r = 0; r < CLS_B; r++)
        want += batch_images[r * CLS_D + j] * (probs[r][k] - (batch_labels[r] == k)) / CLS_B;
      ck_assert_double_eq_tol(gw[j * CLS_C + k], want, 1e-5);
    }
  }
}
END_TEST

START_TEST(run_converts_dtypes) {
  /* labels as I64 and images as F64 are converted */
  write_weights(P("w.safetensors"));
  write_batch(P("in.safetensors"), 1, NULL);
  double images[CLS_B * CLS_D];
  int64_t labels[CLS_B];
  for (int i = 0; i < CLS_B * CLS_D; i++) images[i] = batch_images[i];
  for (int i = 0; i < CLS_B; i++) labels[i] = batch_labels[i];
  int64_t ishape[2] = {CLS_B, CLS_D}, lshape[1] = {CLS_B};
  modelc_rt_st_entry e[2] = {{"images", MODELC_RT_F64, 2, ishape, images},
                             {"labels", MODELC_RT_I64, 1, lshape, labels}};
  write_st(P("in64.safetensors"), e, 2);
  ck_assert_int_eq(run_main(&classifier, "run", "--weights", P("w.safetensors"), "--input",
                            P("in.safetensors"), "--output", P("a.safetensors"), NULL),
                   0);
  ck_assert_int_eq(run_main(&classifier, "run", "--weights", P("w.safetensors"), "--input",
                            P("in64.safetensors"), "--output", P("b.safetensors"), NULL),
                   0);
  ck_assert(same_file(P("a.safetensors"), P("b.safetensors")));
}
END_TEST

START_TEST(run_input_errors) {
  char want[1024];
  write_weights(P("w.safetensors"));
  /* missing input */
  float labels_only[CLS_B];
  int64_t lshape[1] = {CLS_B};
  modelc_rt_st_entry e = {"labels", MODELC_RT_F32, 1, lshape, labels_only};
  memset(labels_only, 0, sizeof labels_only);
  write_st(P("missing.safetensors"), &e, 1);
  int rc = run_main(&classifier, "run", "--weights", P("w.safetensors"), "--input",
                    P("missing.safetensors"), "--output", P("out.safetensors"), NULL);
  ck_assert_int_eq(rc, 1);
  snprintf(want, sizeof want,
           "classifier run: error: %s: missing tensor 'images' (the model takes f32 [8,4])\n",
           P("missing.safetensors"));
  ck_assert_str_eq(err_text, want);
  ck_assert(!exists(P("out.safetensors")));
  /* extra input */
  write_batch(P("extra.safetensors"), 1, "mask");
  rc = run_main(&classifier, "run", "--weights", P("w.safetensors"), "--input",
                P("extra.safetensors"), "--output", P("out.safetensors"), NULL);
  ck_assert_int_eq(rc, 1);
  snprintf(want, sizeof want,
           "classifier run: error: %s: tensor 'mask' is not an input of the model (its inputs: "
           "images, labels)\n",
           P("extra.safetensors"));
  ck_assert_str_eq(err_text, want);
  ck_assert(!exists(P("out.safetensors")));
  /* misshaped input */
  int32_t tokens[2 * 4] = {0};
  int64_t tshape[2] = {2, 4};
  modelc_rt_st_entry t[2] = {{"tokens", MODELC_RT_I32, 2, tshape, tokens},
                             {"targets", MODELC_RT_I32, 2, tshape, tokens}};
  write_st(P("tok.safetensors"), t, 2);
  int64_t wshape[2] = {TOK_V, TOK_V}, bshape[1] = {TOK_V};
  float w[TOK_V * TOK_V] = {0}, b[TOK_V] = {0};
  modelc_rt_st_entry we[2] = {{"w", MODELC_RT_F32, 2, wshape, w},
                              {"b", MODELC_RT_F32, 1, bshape, b}};
  write_st(P("tw.safetensors"), we, 2);
  rc = run_main(&token_model, "run", "--weights", P("tw.safetensors"), "--input",
                P("tok.safetensors"), "--output", P("out.safetensors"), NULL);
  ck_assert_int_eq(rc, 1);
  snprintf(want, sizeof want,
           "bigram run: error: %s: tensor 'tokens' is i32 [2,4] but the model takes i32 [2,8]\n",
           P("tok.safetensors"));
  ck_assert_str_eq(err_text, want);
  ck_assert(!exists(P("out.safetensors")));
  /* a dtype that cannot be converted: the reader's message names the file */
  int64_t ishape[2] = {CLS_B, CLS_D};
  int32_t ints[CLS_B * CLS_D] = {0};
  modelc_rt_st_entry bad = {"images", MODELC_RT_I32, 2, ishape, ints};
  write_st(P("ints.safetensors"), &bad, 1);
  rc = run_main(&classifier, "run", "--weights", P("w.safetensors"), "--input",
                P("ints.safetensors"), "--output", P("out.safetensors"), NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_ptr_nonnull(strstr(err_text, P("ints.safetensors")));
  /* --grads without the labels the loss needs */
  write_batch(P("nolabels.safetensors"), 0, NULL);
  rc = run_main(&classifier, "run", "--weights", P("w.safetensors"), "--input",
                P("nolabels.safetensors"), "--output", P("out.safetensors"), "--grads", NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_ptr_nonnull(strstr(err_text, "--grads needs the loss"));
  ck_assert(!exists(P("out.safetensors")));
  /* an input file that does not exist */
  rc = run_main(&classifier, "run", "--weights", P("w.safetensors"), "--input", P("nope"),
                "--output", P("out.safetensors"), NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_ptr_nonnull(strstr(err_text, P("nope")));
  ck_assert(!exists(P("out.safetensors")));
}
END_TEST

START_TEST(run_weight_errors) {
  int64_t wshape[2] = {CLS_D, CLS_C};
  modelc_rt_st_entry e = {"w", MODELC_RT_F32, 2, wshape, W0};
  write_st(P("w.safetensors"), &e, 1);
  write_batch(P("in.safetensors"), 1, NULL);
  int rc = run_main(&classifier, "run", "--weights", P("w.safetensors"), "--input",
                    P("in.safetensors"), "--output", P("out.safetensors"), NULL);
  ck_assert_int_eq(rc, 1);
  char want[1024];
  snprintf(want, sizeof want, "classifier run: error: %s: missing tensor 'b'\n",
           P("w.safetensors"));
  ck_assert_str_eq(err_text, want);
  ck_assert(!exists(P("out.safetensors")));
}
END_TEST

START_TEST(run_model_failure_is_internal) {
  write_weights(P("w.safetensors"));
  write_batch(P("in.safetensors"), 1, NULL);
  hook_fail_at = 1;
  int rc = run_main(&classifier, "run", "--weights", P("w.safetensors"), "--input",
                    P("in.safetensors"), "--output", P("out.safetensors"), "--grads", NULL);
  ck_assert_int_eq(rc, 2);
  ck_assert_str_eq(err_text, "classifier run: error: backward failed on purpose\n");
  ck_assert(!exists(P("out.safetensors")));
}
END_TEST

START_TEST(run_arguments) {
  ck_assert_int_eq(run_main(&classifier, "run", "--weights", "w", "--input", "i", NULL), 1);
  ck_assert_str_eq(err_text,
                   "classifier run: error: --output is required (see 'classifier run --help')\n");
  ck_assert_int_eq(run_main(&classifier, "run", "--weigths", "w", NULL), 1);
  ck_assert_str_eq(err_text, "classifier run: error: unknown option '--weigths' (see 'classifier "
                             "run --help')\n");
  ck_assert_int_eq(run_main(&classifier, "run", "--weights", NULL), 1);
  ck_assert_str_eq(err_text, "classifier run: error: --weights: missing value\n");
  ck_assert_int_eq(run_main(&classifier, "run", "--grads=1", NULL), 1);
  ck_assert_int_eq(run_main(&classifier, "run", "stray", NULL), 1);
  ck_assert_int_eq(run_main(&classifier, "run", "--help", NULL), 0);
  ck_assert_ptr_nonnull(strstr(out_text, "usage: classifier run --weights"));
  ck_assert_ptr_nonnull(strstr(out_text, "inputs: images f32 [8,4], labels i32 [8]"));
  ck_assert_str_eq(err_text, "");
}
END_TEST

START_TEST(main_commands) {
  ck_assert_int_eq(run_main(&classifier, NULL), 1);
  ck_assert_ptr_nonnull(strstr(err_text, "usage: classifier COMMAND"));
  ck_assert_int_eq(run_main(&classifier, "--help", NULL), 0);
  ck_assert_ptr_nonnull(strstr(out_text, "usage: classifier COMMAND"));
  ck_assert_int_eq(run_main(&classifier, "fly", NULL), 1);
  ck_assert_str_eq(err_text,
                   "classifier: error: unknown command 'fly' (see 'classifier --help')\n");
}
END_TEST

/* ---- train ---- */

START_TEST(train_learns_and_logs) {
  write_dataset(P("train.safetensors"), 64, 0);
  write_dataset(P("val.safetensors"), 20, 5000); /* 20 = 2 batches + a padded one */
  int rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--val",
                    P("val.safetensors"), "--steps", "40", "--out", P("run"), NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, err_text);
  metric_line lines[128], steps[128];
  int n = read_metrics(P("run/metrics.jsonl"), lines, 128, "samples_per_s");
  int ns = step_lines(lines, n, steps);
  ck_assert_int_eq(ns, 40);
  ck_assert_int_eq(n, 50); /* eval every 4 steps */
  for (int i = 0; i < ns; i++) {
    ck_assert_int_eq(steps[i].step, i + 1);
    ck_assert(steps[i].time_s >= 0);
    ck_assert(steps[i].rate > 0);
  }
  double first = strtod(steps[0].loss, NULL), last = strtod(steps[39].loss, NULL);
  ck_assert_msg(last < 0.6 * first, "loss %g -> %g", first, last);
  /* the schedule: warmup 2, cosine to 0.005 at step 40 */
  ck_assert_double_eq_tol(strtod(steps[0].lr, NULL), 0.025, 1e-9);
  ck_assert_double_eq_tol(strtod(steps[1].lr, NULL), 0.05, 1e-9);
  ck_assert_double_eq_tol(strtod(steps[39].lr, NULL),
                          0.005 + 0.045 * (1 + cos(3.14159265358979323846 * 37 / 38)) / 2, 1e-7);
  metric_line *val = &lines[n - 1];
  ck_assert(val->is_val);
  ck_assert_int_eq(val->step, 40);
  double accuracy = strtod(val->val_accuracy, NULL);
  ck_assert_msg(accuracy > 0.8 && accuracy <= 1.0, "accuracy %s", val->val_accuracy);
  /* accuracy counts the 20 real samples only: a multiple of 1/20 */
  ck_assert_double_eq_tol(accuracy * 20, round(accuracy * 20), 1e-6);
  ck_assert(strtod(val->val_loss, NULL) < first);
  /* the checkpoint: model loadable by run, state with the driver's entries */
  ck_assert_int_eq(tensor_count(P("run/model.safetensors")), 2);
  ck_assert_int_eq(read_i64(P("run/state.safetensors"), "checkpoint.step"), 40);
  ck_assert_int_eq(read_i64(P("run/state.safetensors"), "opt.step"), 40);
  ck_assert_int_eq(read_i64(P("run/state.safetensors"), "micro_batches"), 80);
  ck_assert_int_eq(read_i64(P("run/state.safetensors"), "data.cursor"), (40 * 2 * 8) % 64);
  ck_assert(!exists(P("run/.ckpt-model.safetensors")));
  ck_assert(!exists(P("run/.ckpt-state.safetensors")));
  /* progress: not a terminal, so every 4 steps (N/10) and val lines */
  ck_assert_msg(strstr(err_text, "step 4/40 | loss ") != NULL, "%s", err_text);
  ck_assert_ptr_nonnull(strstr(err_text, " samples/s | ETA "));
  ck_assert_ptr_nonnull(strstr(err_text, "step 40/40 | val_loss "));
  ck_assert_ptr_null(strstr(err_text, "step 3/40"));
  ck_assert_ptr_null(strstr(err_text, "\r"));
  write_batch(P("in.safetensors"), 1, NULL);
  rc = run_main(&classifier, "run", "--weights", P("run/model.safetensors"), "--input",
                P("in.safetensors"), "--output", P("out.safetensors"), NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, err_text);
}
END_TEST

START_TEST(train_quiet_and_log_every) {
  write_dataset(P("train.safetensors"), 64, 0);
  int rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "6", "--out",
                    P("run"), "--quiet", NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, err_text);
  ck_assert_str_eq(err_text, "");
  rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "7", "--out",
                P("run2"), "--log-every=3", NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, err_text);
  ck_assert_ptr_nonnull(strstr(err_text, "step 3/7 | loss "));
  ck_assert_ptr_nonnull(strstr(err_text, "step 6/7 | loss "));
  ck_assert_ptr_nonnull(strstr(err_text, "step 7/7 | loss "));
  ck_assert_ptr_null(strstr(err_text, "step 5/7"));
}
END_TEST

START_TEST(train_tokens) {
  write_tokens(P("train.bin"), 1000);
  write_tokens(P("val.bin"), 300);
  int rc = run_main(&token_model, "train", "--data", P("train.bin"), "--val", P("val.bin"),
                    "--eval-batches", "3", "--eval-every", "10", "--steps", "30", "--out", P("run"),
                    NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, err_text);
  metric_line lines[64], steps[64];
  int n = read_metrics(P("run/metrics.jsonl"), lines, 64, "tokens_per_s");
  ck_assert_int_eq(step_lines(lines, n, steps), 30);
  ck_assert_int_eq(n, 33);
  ck_assert(lines[n - 1].is_val && lines[n - 1].val_accuracy[0] == '\0');
  double first = strtod(steps[0].loss, NULL), last = strtod(steps[29].loss, NULL);
  ck_assert_msg(last < 0.5 * first, "loss %g -> %g", first, last);
  ck_assert_int_eq(read_i64(P("run/state.safetensors"), "data.cursor"), 30 * TOK_B * TOK_T);
  ck_assert_ptr_nonnull(strstr(err_text, " tok/s | ETA "));
  /* a token file too short for one batch */
  write_tokens(P("short.bin"), 10);
  rc = run_main(&token_model, "train", "--data", P("short.bin"), "--out", P("run2"), NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_ptr_nonnull(strstr(err_text, P("short.bin")));
  ck_assert(!exists(P("run2")));
}
END_TEST

/* The loss, lr and grad_norm of every step line of two files are equal
 * as text (9 significant digits), and both have `count` of them. */
static void same_losses(const char *a, const char *b, int count) {
  metric_line la[128], lb[128], sa[128], sb[128];
  int na = step_lines(la, read_metrics(a, la, 128, "samples_per_s"), sa);
  int nb = step_lines(lb, read_metrics(b, lb, 128, "samples_per_s"), sb);
  ck_assert_int_eq(na, count);
  ck_assert_int_eq(nb, count);
  for (int i = 0; i < count; i++) {
    ck_assert_int_eq(sa[i].step, sb[i].step);
    ck_assert_str_eq(sa[i].loss, sb[i].loss);
    ck_assert_str_eq(sa[i].lr, sb[i].lr);
    ck_assert_str_eq(sa[i].grad_norm, sb[i].grad_norm);
  }
}

START_TEST(train_resume_is_exact) {
  write_dataset(P("train.safetensors"), 36, 0); /* 36: the cursor wraps mid-batch */
  int rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "10",
                    "--out", P("straight"), NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, err_text);
  rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "5", "--out",
                P("halves"), NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, err_text);
  ck_assert_int_eq(read_i64(P("halves/state.safetensors"), "checkpoint.step"), 5);
  rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "10", "--resume",
                P("halves"), NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, err_text);
  same_losses(P("straight/metrics.jsonl"), P("halves/metrics.jsonl"), 10);
  ck_assert(same_file(P("straight/model.safetensors"), P("halves/model.safetensors")));
  ck_assert(same_file(P("straight/state.safetensors"), P("halves/state.safetensors")));
  /* resuming a finished run does nothing */
  rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--resume", P("halves"),
                NULL);
  ck_assert_int_eq(rc, 0);
  ck_assert_ptr_nonnull(strstr(err_text, "nothing to do"));
  same_losses(P("straight/metrics.jsonl"), P("halves/metrics.jsonl"), 10);
}
END_TEST

START_TEST(train_checkpoint_every) {
  write_dataset(P("train.safetensors"), 64, 0);
  int rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "5",
                    "--checkpoint-every", "2", "--out", P("run"), NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, err_text);
  ck_assert_int_eq(saves, 3);
  ck_assert_int_eq(saved_steps[0], 2);
  ck_assert_int_eq(saved_steps[1], 4);
  ck_assert_int_eq(saved_steps[2], 5);
  ck_assert_int_eq(read_i64(P("run/state.safetensors"), "checkpoint.step"), 5);
  reset_hooks();
  rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "5", "--out",
                P("run2"), NULL);
  ck_assert_int_eq(rc, 0);
  ck_assert_int_eq(saves, 1);
}
END_TEST

START_TEST(train_sigint_checkpoints_and_resumes) {
  write_dataset(P("train.safetensors"), 64, 0);
  struct sigaction before, after;
  sigaction(SIGINT, NULL, &before);
  hook_sigint_at = 5; /* accumulate 2: the first micro-batch of step 3 */
  int rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "8", "--out",
                    P("run"), NULL);
  ck_assert_int_eq(rc, 130);
  char want[1024];
  snprintf(want, sizeof want, "interrupted at step 3; checkpoint in %s\n", P("run"));
  ck_assert_ptr_nonnull(strstr(err_text, want));
  ck_assert_int_eq(read_i64(P("run/state.safetensors"), "checkpoint.step"), 3);
  ck_assert_int_eq(tensor_count(P("run/model.safetensors")), 2);
  reset_hooks();
  rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--resume", P("run"), NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, err_text);
  rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "8", "--out",
                P("straight"), NULL);
  ck_assert_int_eq(rc, 0);
  same_losses(P("straight/metrics.jsonl"), P("run/metrics.jsonl"), 8);
  ck_assert(same_file(P("straight/model.safetensors"), P("run/model.safetensors")));
  /* the handler from before is back */
  sigaction(SIGINT, NULL, &after);
  ck_assert(after.sa_handler == before.sa_handler);
}
END_TEST

START_TEST(train_nan_loss_stops) {
  write_dataset(P("train.safetensors"), 64, 0);
  hook_nan_at = 8; /* step 4 */
  int rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "10",
                    "--out", P("run"), NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_ptr_nonnull(
      strstr(err_text, "classifier train: error: step 4: the loss is nan; stopping"));
  metric_line lines[16];
  ck_assert_int_eq(read_metrics(P("run/metrics.jsonl"), lines, 16, "samples_per_s"), 3);
  ck_assert(!exists(P("run/model.safetensors")));
  ck_assert(!exists(P("run/state.safetensors")));
  ck_assert_int_eq(saves, 0);
}
END_TEST

START_TEST(train_metrics_write_nan_as_null) {
  write_dataset(P("train.safetensors"), 64, 0);
  hook_nan_norm_at = 2;
  int rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "3", "--out",
                    P("run"), NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, err_text);
  metric_line lines[8];
  ck_assert_int_eq(read_metrics(P("run/metrics.jsonl"), lines, 8, "samples_per_s"), 3);
  ck_assert_str_eq(lines[1].grad_norm, "null");
  ck_assert(isfinite(strtod(lines[2].grad_norm, NULL)));
}
END_TEST

START_TEST(train_model_failure_is_internal) {
  write_dataset(P("train.safetensors"), 64, 0);
  hook_fail_at = 3;
  int rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "10",
                    "--out", P("run"), NULL);
  ck_assert_int_eq(rc, 2);
  ck_assert_ptr_nonnull(strstr(err_text, "step 2: backward failed on purpose"));
}
END_TEST

/* A checkpoint cut short at each point of its commit (see rt_driver.c). */
START_TEST(train_checkpoint_recovery) {
  write_dataset(P("train.safetensors"), 64, 0);
  ck_assert_int_eq(run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "3",
                            "--out", P("a"), NULL),
                   0);
  ck_assert_int_eq(run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "4",
                            "--out", P("b"), NULL),
                   0);
  ck_assert_int_eq(run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "6",
                            "--out", P("full"), NULL),
                   0);
  /* crash before the pending state was written: the old pair stands */
  rename(P("b/model.safetensors"), P("a/.ckpt-model.safetensors"));
  ck_assert_int_eq(run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "6",
                            "--resume", P("a"), "--out", P("a1"), NULL),
                   0);
  ck_assert(!exists(P("a/.ckpt-model.safetensors")));
  ck_assert(same_file(P("full/model.safetensors"), P("a1/model.safetensors")));
  /* crash between the two renames: the new model is in place and the
   * pending state matches it, so the commit is finished (resume at 4) */
  ck_assert_int_eq(run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "4",
                            "--out", P("b"), NULL),
                   0);
  rename(P("b/model.safetensors"), P("a/model.safetensors"));
  rename(P("b/state.safetensors"), P("a/.ckpt-state.safetensors"));
  ck_assert_int_eq(run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "4",
                            "--resume", P("a"), NULL),
                   0);
  ck_assert_ptr_nonnull(strstr(err_text, "at step 4 of 4; nothing to do"));
  ck_assert_int_eq(read_i64(P("a/state.safetensors"), "checkpoint.step"), 4);
  ck_assert(!exists(P("a/.ckpt-state.safetensors")));
  /* a model from another checkpoint is refused */
  rename(P("full/model.safetensors"), P("a/model.safetensors"));
  int rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "6",
                    "--resume", P("a"), "--out", P("a2"), NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_ptr_nonnull(strstr(err_text, "come from different checkpoints"));
  ck_assert(!exists(P("a2")));
}
END_TEST

START_TEST(train_resume_errors) {
  write_dataset(P("train.safetensors"), 64, 0);
  int rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--resume",
                    P("nothing"), NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_ptr_nonnull(strstr(err_text, P("nothing/model.safetensors")));
  ck_assert(!exists(P("nothing")));
  ck_assert_int_eq(run_main(&classifier, "train", "--data", P("train.safetensors"), "--steps", "2",
                            "--out", P("run"), NULL),
                   0);
  /* a state file that lacks the model's entries */
  float m[2] = {0};
  int64_t shape[1] = {2};
  modelc_rt_st_entry e = {"opt.m.b", MODELC_RT_F32, 1, shape, m};
  write_st(P("run/state.safetensors"), &e, 1);
  rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--resume", P("run"), NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_ptr_nonnull(strstr(err_text, "missing tensor 'opt.m.w'"));
}
END_TEST

START_TEST(train_init_weights) {
  write_dataset(P("train.safetensors"), 64, 0);
  write_weights(P("w.safetensors"));
  int rc = run_main(&classifier, "train", "--data", P("train.safetensors"), "--init",
                    P("w.safetensors"), "--steps", "1", "--out", P("run"), NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, err_text);
  float w[CLS_D * CLS_C];
  read_tensor(P("run/model.safetensors"), "w", 2, NULL, w, CLS_D * CLS_C);
  for (int i = 0; i < CLS_D * CLS_C; i++) ck_assert(fabsf(w[i] - W0[i]) < 0.05f);
}
END_TEST

START_TEST(train_arguments) {
  write_dataset(P("train.safetensors"), 64, 0);
  const char *d = P("train.safetensors");
  ck_assert_int_eq(run_main(&classifier, "train", "--data", d, "--steps", "x", NULL), 1);
  ck_assert_str_eq(err_text,
                   "classifier train: error: --steps: expected a positive integer, got 'x'\n");
  ck_assert_int_eq(run_main(&classifier, "train", "--data", d, "--steps", "0", NULL), 1);
  ck_assert_str_eq(err_text,
                   "classifier train: error: --steps: expected a positive integer, got '0'\n");
  ck_assert_int_eq(run_main(&classifier, "train", "--data", d, "--steps", "-3", NULL), 1);
  ck_assert_int_eq(run_main(&classifier, "train", "--data", d, "--steps", "5k", NULL), 1);
  ck_assert_int_eq(run_main(&classifier, "train", "--data", d, "--checkpoint-every", "-1", NULL),
                   1);
  ck_assert_str_eq(err_text, "classifier train: error: --checkpoint-every: expected a "
                             "non-negative integer, got '-1'\n");
  ck_assert_int_eq(run_main(&classifier, "train", "--data", d, "--steps", NULL), 1);
  ck_assert_str_eq(err_text, "classifier train: error: --steps: missing value\n");
  ck_assert_int_eq(run_main(&classifier, "train", "--data", d, "--fast", NULL), 1);
  ck_assert_str_eq(err_text, "classifier train: error: unknown option '--fast' (see 'classifier "
                             "train --help')\n");
  ck_assert_int_eq(run_main(&classifier, "train", "--steps", "3", NULL), 1);
  ck_assert_str_eq(err_text,
                   "classifier train: error: --data is required (see 'classifier train --help')\n");
  ck_assert_int_eq(
      run_main(&classifier, "train", "--data", d, "--init", "w", "--resume", "r", NULL), 1);
  ck_assert_int_eq(run_main(&classifier, "train", "--help", NULL), 0);
  ck_assert_ptr_nonnull(strstr(out_text, "usage: classifier train --data DATA"));
  /* bad data: the runtime's message, which names the file; no output */
  ck_assert_int_eq(
      run_main(&classifier, "train", "--data", P("none.safetensors"), "--out", P("run"), NULL), 1);
  ck_assert_ptr_nonnull(strstr(err_text, P("none.safetensors")));
  write_batch(P("nolabels.safetensors"), 0, NULL);
  ck_assert_int_eq(
      run_main(&classifier, "train", "--data", P("nolabels.safetensors"), "--out", P("run"), NULL),
      1);
  char want[1024];
  snprintf(want, sizeof want,
           "classifier train: error: %s: missing tensor 'labels' (the model takes i32 [8] a "
           "batch)\n",
           P("nolabels.safetensors"));
  ck_assert_str_eq(err_text, want);
  int64_t shape[2] = {10, 5};
  float x[50] = {0};
  modelc_rt_st_entry e[2] = {{"images", MODELC_RT_F32, 2, shape, x},
                             {"labels", MODELC_RT_I32, 1, shape, x}};
  write_st(P("wide.safetensors"), e, 2);
  ck_assert_int_eq(
      run_main(&classifier, "train", "--data", P("wide.safetensors"), "--out", P("run"), NULL), 1);
  snprintf(want, sizeof want,
           "classifier train: error: %s: tensor 'images' is f32 [10,5], but the model takes f32 "
           "[8,4] a batch, so the data set needs [N,4]\n",
           P("wide.safetensors"));
  ck_assert_str_eq(err_text, want);
  ck_assert(!exists(P("run")));
}
END_TEST

static Suite *driver_suite(void) {
  Suite *s = suite_create("rt_driver");
  TCase *run = tcase_create("run");
  tcase_add_checked_fixture(run, setup, teardown);
  tcase_add_test(run, run_writes_outputs_and_loss);
  tcase_add_test(run, run_without_loss_inputs);
  tcase_add_test(run, run_grads);
  tcase_add_test(run, run_converts_dtypes);
  tcase_add_test(run, run_input_errors);
  tcase_add_test(run, run_weight_errors);
  tcase_add_test(run, run_model_failure_is_internal);
  tcase_add_test(run, run_arguments);
  tcase_add_test(run, main_commands);
  suite_add_tcase(s, run);
  TCase *train = tcase_create("train");
  tcase_add_checked_fixture(train, setup, teardown);
  tcase_set_timeout(train, 120);
  tcase_add_test(train, train_learns_and_logs);
  tcase_add_test(train, train_quiet_and_log_every);
  tcase_add_test(train, train_tokens);
  tcase_add_test(train, train_resume_is_exact);
  tcase_add_test(train, train_checkpoint_every);
  tcase_add_test(train, train_sigint_checkpoints_and_resumes);
  tcase_add_test(train, train_nan_loss_stops);
  tcase_add_test(train, train_metrics_write_nan_as_null);
  tcase_add_test(train, train_model_failure_is_internal);
  tcase_add_test(train, train_checkpoint_recovery);
  tcase_add_test(train, train_resume_errors);
  tcase_add_test(train, train_init_weights);
  tcase_add_test(train, train_arguments);
  suite_add_tcase(s, train);
  return s;
}

int main(void) {
  SRunner *r = srunner_create(driver_suite());
  srunner_run_all(r, CK_NORMAL);
  int failed = srunner_ntests_failed(r);
  srunner_free(r);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
