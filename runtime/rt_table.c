/* rt_table.c: a model described by a table, around kernels compiled
 * elsewhere (the LLVM backend). The backend emits the kernels, one
 * function per entry point, and a text table; this file does what the C
 * backend generates as C (codegen/cg_model_c.c): the arena, init,
 * load/save, forward/evaluate/train_step, the optimizer step and the
 * driver's descriptor, with the same arithmetic in the same order.
 * Offsets in the table are in bytes; tensor data is modelc_rt_real (the
 * LLVM backend renders f32 kernels, so it pairs with the float build).
 *
 * The table, one record a line, tokens separated by spaces:
 *   model NAME
 *   bytes STATE GRAD OPT ACT
 *   train OPT LR B1 B2 EPS WD MOMENTUM NESTEROV SCHEDULE MIN_LR WARMUP STEPS CLIP ACCUMULATE SEED
 *   tensor NAME DTYPE RANK DIMS... OFFSET COUNT INIT A B DECAY PARAM
 *   input NAME DTYPE RANK DIMS... LOSS_ONLY
 *   output NAME RANK DIMS...
 *   entry E USED...           (E: 0 forward, 1 evaluate, 2 train; a flag per input)
 *   out E I REGION OFFSET     (REGION: s state, g grads, a activations, i input)
 *   loss E REGION OFFSET
 *   check NAME                (the n-th: what failed when an entry returns n)
 *   status NAME               (also the n-th check: a kernel that allocates, NAME its result) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelc_rt.h"
#ifdef _OPENMP
#include <omp.h>
#endif

enum { TABLE_MAX_INPUTS = 32, TABLE_MAX_OUTPUTS = 32, TABLE_MAX_CHECKS = 64 };

typedef struct table_place {
  int64_t offset, count;
  int init; /* 0 normal(a, b), 1 uniform(a, b), 2 zeros, 3 ones */
  float a, b;
  int decay;
} table_place;

typedef struct table_loc {
  char region;
  int64_t offset;
} table_loc;

typedef struct table_entry {
  int present;
  int used[TABLE_MAX_INPUTS];
  table_loc out[TABLE_MAX_OUTPUTS];
  table_loc loss;
  int has_loss;
} table_entry;

typedef struct table {
  modelc_rt_model desc; /* first: the descriptor points back at the table */
  const modelc_rt_table_source *src;
  char *name;
  int64_t state_bytes, grad_bytes, opt_bytes, act_bytes;
  int num_tensors, num_params;
  modelc_rt_tensor_desc *tensors; /* parameters then buffers */
  table_place *places;
  int num_inputs, num_outputs;
  modelc_rt_tensor_desc inputs[TABLE_MAX_INPUTS], outputs[TABLE_MAX_OUTPUTS];
  int loss_only[TABLE_MAX_INPUTS];
  table_entry entries[3];
  int num_checks;
  char *checks[TABLE_MAX_CHECKS];
  int check_is_status[TABLE_MAX_CHECKS]; /* 0 ids out of range, 1 out of memory */
  char **state_names; /* optimizer moments, for the driver's state */
} table;

struct modelc_rt_table_model {
  const table *t;
  table *owned; /* made by modelc_rt_table_new */
  unsigned char *arena, *state, *grads, *opt, *act;
  int64_t step, pending;
  modelc_rt_kernel_args args; /* seed and micro_step live here */
  char error[512];
};

void modelc_rt_parallel_rows(void (*fn)(void *const *buffers, int64_t begin, int64_t end),
                             void *const *buffers, int64_t n) {
#ifdef _OPENMP
#pragma omp parallel
  {
    int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t begin = n * t / threads, end = n * (t + 1) / threads;
    if (begin < end) fn(buffers, begin, end);
  }
#else
  fn(buffers, 0, n);
#endif
}

/* ---- parsing ---- */

typedef struct table_reader {
  const char *at;
  int bad;
} table_reader;

static int table_token(table_reader *r, char *buf, size_t len) {
  while (*r->at == ' ' || *r->at == '\n' || *r->at == '\t') r->at++;
  size_t n = 0;
  while (*r->at && *r->at != ' ' && *r->at != '\n' && *r->at != '\t') {
    if (n + 1 < len) buf[n++] = *r->at;
    r->at++;
  }
  buf[n] = 0;
  if (n == 0) r->bad = 1;
  return n > 0;
}

static int64_t table_int(table_reader *r) {
  char buf[64];
  table_token(r, buf, sizeof buf);
  char *end;
  long long v = strtoll(buf, &end, 10);
  if (*end) r->bad = 1;
  return (int64_t)v;
}

static double table_double(table_reader *r) {
  char buf[64];
  table_token(r, buf, sizeof buf);
  char *end;
  double v = strtod(buf, &end);
  if (*end) r->bad = 1;
  return v;
}

static char *table_name(table_reader *r) {
  char buf[512];
  table_token(r, buf, sizeof buf);
  char *s = malloc(strlen(buf) + 1);
  if (s) strcpy(s, buf);
  else r->bad = 1;
  return s;
}

static void table_shape(table_reader *r, modelc_rt_tensor_desc *d) {
  d->rank = (int)table_int(r);
  if (d->rank < 0 || d->rank > MODELC_RT_MAX_RANK) {
    r->bad = 1;
    d->rank = 0;
  }
  for (int i = 0; i < d->rank; i++) d->shape[i] = table_int(r);
}

static table_loc table_location(table_reader *r) {
  char buf[8];
  table_token(r, buf, sizeof buf);
  table_loc l = {buf[0], table_int(r)};
  if (!strchr("sgai", l.region) || buf[1]) r->bad = 1;
  return l;
}

static int table_entry_index(table_reader *r) {
  int64_t e = table_int(r);
  if (e < 0 || e > 2) {
    r->bad = 1;
    return 0;
  }
  return (int)e;
}

static void table_read_train(table_reader *r, modelc_rt_train_config *c) {
  c->optimizer = (int)table_int(r);
  c->lr = table_double(r);
  c->beta1 = table_double(r);
  c->beta2 = table_double(r);
  c->eps = table_double(r);
  c->weight_decay = table_double(r);
  c->momentum = table_double(r);
  c->nesterov = (int)table_int(r);
  c->schedule.kind = (modelc_rt_schedule_kind)table_int(r);
  c->schedule.lr = c->lr;
  c->schedule.min_lr = table_double(r);
  c->schedule.warmup = table_int(r);
  c->schedule.steps = table_int(r);
  c->grad_clip = table_double(r);
  c->accumulate = table_int(r);
  c->seed = (uint64_t)table_int(r);
}

static void table_read_tensor(table_reader *r, table *t) {
  int i = t->num_tensors++;
  t->tensors = realloc(t->tensors, sizeof *t->tensors * (size_t)t->num_tensors);
  t->places = realloc(t->places, sizeof *t->places * (size_t)t->num_tensors);
  if (!t->tensors || !t->places) {
    r->bad = 1;
    t->num_tensors = 0;
    return;
  }
  modelc_rt_tensor_desc *d = &t->tensors[i];
  table_place *p = &t->places[i];
  memset(d, 0, sizeof *d);
  d->name = table_name(r);
  d->dtype = (modelc_rt_dtype)table_int(r);
  table_shape(r, d);
  p->offset = table_int(r);
  p->count = table_int(r);
  p->init = (int)table_int(r);
  p->a = (float)table_double(r);
  p->b = (float)table_double(r);
  p->decay = (int)table_int(r);
  if (table_int(r)) t->num_params = i + 1;
}

static void table_read_line(table_reader *r, table *t, const char *key) {
  if (!strcmp(key, "model")) {
    t->name = table_name(r);
  } else if (!strcmp(key, "bytes")) {
    t->state_bytes = table_int(r);
    t->grad_bytes = table_int(r);
    t->opt_bytes = table_int(r);
    t->act_bytes = table_int(r);
  } else if (!strcmp(key, "train")) {
    t->desc.trains = 1;
    table_read_train(r, &t->desc.train);
  } else if (!strcmp(key, "tensor")) {
    table_read_tensor(r, t);
  } else if (!strcmp(key, "input") && t->num_inputs < TABLE_MAX_INPUTS) {
    modelc_rt_tensor_desc *d = &t->inputs[t->num_inputs];
    d->name = table_name(r);
    d->dtype = (modelc_rt_dtype)table_int(r);
    table_shape(r, d);
    t->loss_only[t->num_inputs++] = (int)table_int(r);
  } else if (!strcmp(key, "output") && t->num_outputs < TABLE_MAX_OUTPUTS) {
    modelc_rt_tensor_desc *d = &t->outputs[t->num_outputs++];
    d->name = table_name(r);
    d->dtype = MODELC_RT_F32;
    table_shape(r, d);
  } else if (!strcmp(key, "entry")) {
    table_entry *e = &t->entries[table_entry_index(r)];
    e->present = 1;
    for (int i = 0; i < t->num_inputs; i++) e->used[i] = (int)table_int(r);
  } else if (!strcmp(key, "out")) {
    table_entry *e = &t->entries[table_entry_index(r)];
    int64_t i = table_int(r);
    if (i < 0 || i >= TABLE_MAX_OUTPUTS) r->bad = 1;
    else e->out[i] = table_location(r);
  } else if (!strcmp(key, "loss")) {
    table_entry *e = &t->entries[table_entry_index(r)];
    e->loss = table_location(r);
    e->has_loss = 1;
  } else if ((!strcmp(key, "check") || !strcmp(key, "status")) && t->num_checks < TABLE_MAX_CHECKS) {
    t->check_is_status[t->num_checks] = key[0] == 's';
    t->checks[t->num_checks++] = table_name(r);
  } else {
    r->bad = 1;
  }
}

static void table_destroy(table *t) {
  if (!t) return;
  free(t->name);
  for (int i = 0; i < t->num_tensors; i++) free((char *)t->tensors[i].name);
  for (int i = 0; i < t->num_inputs; i++) free((char *)t->inputs[i].name);
  for (int i = 0; i < t->num_outputs; i++) free((char *)t->outputs[i].name);
  for (int i = 0; i < t->num_checks; i++) free(t->checks[i]);
  if (t->state_names)
    for (int i = 0; i < 2 * t->num_params; i++) free(t->state_names[i]);
  free(t->state_names);
  free(t->tensors);
  free(t->places);
  free(t);
}

static void table_fill_descriptor(table *t);

static table *table_parse(const modelc_rt_table_source *src, char *err, size_t errlen) {
  table *t = calloc(1, sizeof *t);
  if (!t) return modelc_rt_fail(err, errlen, "out of memory"), NULL;
  t->src = src;
  table_reader r = {src->text, 0};
  char key[32];
  int line = 0;
  while (!r.bad) {
    while (*r.at == ' ' || *r.at == '\n') r.at++;
    if (!*r.at) break;
    line++;
    table_token(&r, key, sizeof key);
    table_read_line(&r, t, key);
  }
  int slots = t->desc.trains ? 2 : 0;
  t->state_names = calloc((size_t)(2 * t->num_params + 1), sizeof(char *));
  for (int s = 0; s < slots && t->state_names; s++)
    for (int i = 0; i < t->num_params; i++) {
      const char *prefix = t->desc.train.optimizer == 0 ? (s ? "adamw.exp_avg_sq." : "adamw.exp_avg.")
                                                        : "sgd.momentum_buffer.";
      size_t n = strlen(prefix) + strlen(t->tensors[i].name) + 1;
      char *name = malloc(n);
      if (name) snprintf(name, n, "%s%s", prefix, t->tensors[i].name);
      t->state_names[s * t->num_params + i] = name;
    }
  if (r.bad || !t->name || !t->entries[0].present || !src->steps[0] || !t->state_names ||
      (t->desc.trains && (!src->steps[1] || !src->steps[2]))) {
    modelc_rt_fail(err, errlen, "malformed model table (record %d)", line);
    table_destroy(t);
    return NULL;
  }
  table_fill_descriptor(t);
  return t;
}

/* ---- the model ---- */

typedef modelc_rt_table_model table_model;

static table_model *table_model_new(const table *t) {
  table_model *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->t = t;
  size_t bytes = (size_t)(t->state_bytes + t->grad_bytes + t->opt_bytes + t->act_bytes) + 64;
  m->arena = calloc(1, bytes);
  if (!m->arena) {
    free(m);
    return NULL;
  }
  m->state = m->arena;
  m->grads = m->state + t->state_bytes;
  m->opt = m->grads + t->grad_bytes;
  m->act = m->opt + t->opt_bytes;
  m->args.state = m->state;
  m->args.grads = m->grads;
  m->args.act = m->act;
  modelc_rt_table_init(m, t->desc.train.seed);
  return m;
}

modelc_rt_table_model *modelc_rt_table_new(const modelc_rt_table_source *src) {
  table *t = table_parse(src, NULL, 0);
  if (!t) return NULL;
  table_model *m = table_model_new(t);
  if (!m) table_destroy(t);
  else m->owned = t;
  return m;
}

void modelc_rt_table_free(modelc_rt_table_model *m) {
  if (!m) return;
  table_destroy(m->owned);
  free(m->arena);
  free(m);
}

const char *modelc_rt_table_error(const modelc_rt_table_model *m) {
  return m ? m->error : "out of memory";
}

/* Parameters from the seed, each its own RNG stream (as cg_model_c.c). */
int modelc_rt_table_init(modelc_rt_table_model *m, uint64_t seed) {
  const table *t = m->t;
  for (int i = 0; i < t->num_tensors; i++) {
    const table_place *p = &t->places[i];
    modelc_rt_real *x = (modelc_rt_real *)(m->state + p->offset);
    if (t->tensors[i].dtype == MODELC_RT_I64) {
      memset(x, 0, 8);
      continue;
    }
    switch (p->init) {
    case 0: modelc_rt_fill_normal(x, p->count, p->a, p->b, seed, (uint64_t)i); break;
    case 1: modelc_rt_fill_uniform(x, p->count, p->a, p->b, seed, (uint64_t)i); break;
    case 3: modelc_rt_fill(x, p->count, 1); break;
    default: modelc_rt_fill(x, p->count, 0);
    }
  }
  memset(m->grads, 0, (size_t)(t->grad_bytes + t->opt_bytes));
  m->step = m->args.micro_step = m->pending = 0;
  m->args.seed = seed;
  m->error[0] = 0;
  return 0;
}

/* All or nothing, as the generated C. */
int modelc_rt_table_load(modelc_rt_table_model *m, const char *path) {
  const table *t = m->t;
  modelc_rt_st_file f;
  if (modelc_rt_st_open(&f, path, m->error, sizeof m->error) != 0) return -1;
  unsigned char *copy = malloc((size_t)t->state_bytes + 1);
  int rc = copy ? 0 : -1;
  if (!copy) snprintf(m->error, sizeof m->error, "out of memory");
  for (int i = 0; i < t->num_tensors && rc == 0; i++)
    rc = modelc_rt_load_tensor(&f, &t->tensors[i], copy + t->places[i].offset, m->error, sizeof m->error);
  if (rc == 0) rc = modelc_rt_check_no_extra(&f, t->tensors, t->num_tensors, m->error, sizeof m->error);
  if (rc == 0) memcpy(m->state, copy, (size_t)t->state_bytes);
  free(copy);
  modelc_rt_st_close(&f);
  return rc;
}

int modelc_rt_table_save(const modelc_rt_table_model *m, const char *path) {
  const table *t = m->t;
  modelc_rt_st_entry *entries = calloc((size_t)t->num_tensors + 1, sizeof *entries);
  table_model *mm = (table_model *)m;
  if (!entries) return modelc_rt_fail(mm->error, sizeof mm->error, "out of memory");
  for (int i = 0; i < t->num_tensors; i++) {
    modelc_rt_dtype dtype = t->tensors[i].dtype == MODELC_RT_F32 ? MODELC_RT_REAL : t->tensors[i].dtype;
    entries[i] = (modelc_rt_st_entry){t->tensors[i].name, dtype, t->tensors[i].rank, t->tensors[i].shape,
                                      m->state + t->places[i].offset};
  }
  int rc = modelc_rt_st_write(path, entries, t->num_tensors, mm->error, sizeof mm->error);
  free(entries);
  return rc;
}

static const modelc_rt_real *table_pointer(const table_model *m, table_loc l) {
  switch (l.region) {
  case 'i': return (const modelc_rt_real *)m->args.in[l.offset];
  case 'g': return (const modelc_rt_real *)(m->grads + l.offset);
  case 'a': return (const modelc_rt_real *)(m->act + l.offset);
  default: return (const modelc_rt_real *)(m->state + l.offset);
  }
}

static int table_require(table_model *m, int entry) {
  const table *t = m->t;
  for (int i = 0; i < t->num_inputs; i++)
    if (t->entries[entry].used[i] && !m->args.in[i])
      return modelc_rt_fail(m->error, sizeof m->error, "input '%s' is missing", t->inputs[i].name);
  return 0;
}

static void *table_address(table_model *m, int64_t location) {
  int64_t offset = location & (((int64_t)1 << 56) - 1);
  switch (location >> 56) {
  case 0: return m->state + offset;
  case 1: return m->grads + offset;
  case 2: return m->act + offset;
  default: return (void *)m->args.in[offset];
  }
}

/* Runs entry point `entry` (0 forward, 1 evaluate, 2 train) on the bound
 * inputs: its steps in order. */
static int table_run(table_model *m, int entry) {
  const modelc_rt_table_source *src = m->t->src;
  const modelc_rt_step *steps = src->steps[entry];
  void *buffers[MODELC_RT_MAX_BUFFERS];
  for (int64_t i = 0; i < src->num_steps[entry]; i++) {
    const modelc_rt_step *s = &steps[i];
    if (!s->kernel) {
      memcpy(table_address(m, s->buffers[0]), table_address(m, s->buffers[1]), (size_t)s->count);
      continue;
    }
    for (int64_t b = 0; b < s->count && b < MODELC_RT_MAX_BUFFERS; b++) buffers[b] = table_address(m, s->buffers[b]);
    if (s->kernel(&m->args, buffers) == 0) continue;
    if (s->check >= 0 && s->check < m->t->num_checks && m->t->check_is_status[s->check])
      return modelc_rt_fail(m->error, sizeof m->error, "out of memory in '%s'", m->t->checks[s->check]);
    if (s->check >= 0 && s->check < m->t->num_checks)
      return modelc_rt_fail(m->error, sizeof m->error, "an index of '%s' is outside the embedding table",
                            m->t->checks[s->check]);
    return modelc_rt_fail(m->error, sizeof m->error, "a kernel of step %lld failed", (long long)i);
  }
  return 0;
}

static void table_bind(table_model *m, const void *const *in) {
  for (int i = 0; i < m->t->num_inputs; i++) m->args.in[i] = in[i];
}

/* The MODEL_outputs struct: a pointer per output, then the loss. */
static void table_set_outputs(table_model *m, int entry, void *outputs, modelc_rt_real loss) {
  const modelc_rt_real **out = outputs;
  for (int i = 0; i < m->t->num_outputs; i++) out[i] = table_pointer(m, m->t->entries[entry].out[i]);
  memcpy((char *)outputs + sizeof(const modelc_rt_real *) * (size_t)m->t->num_outputs, &loss, sizeof loss);
}

int modelc_rt_table_forward(modelc_rt_table_model *m, const void *inputs, void *outputs) {
  table_bind(m, inputs);
  if (table_require(m, 0) != 0 || table_run(m, 0) != 0) return -1;
  table_set_outputs(m, 0, outputs, NAN);
  return 0;
}

int modelc_rt_table_evaluate(modelc_rt_table_model *m, const void *inputs, void *outputs) {
  if (!m->t->desc.trains) return modelc_rt_fail(m->error, sizeof m->error, "the model does not train");
  table_bind(m, inputs);
  if (table_require(m, 1) != 0 || table_run(m, 1) != 0) return -1;
  table_set_outputs(m, 1, outputs, table_pointer(m, m->t->entries[1].loss)[0]);
  return 0;
}

/* The optimizer step: average over the micro-batches, clip by the global
 * norm, update, zero the gradients, one pass for the norm and one for the
 * rest (cg_model_c.c's update(), the same calls: the JIT and the C path
 * agree bit for bit). Hyperparameters are rounded to f32 first, as the
 * generated C spells them as f32 literals. */
static int table_update(table_model *m, int64_t micro_batches, double *norm_out, double *lr_out) {
  const table *t = m->t;
  const modelc_rt_train_config *c = &t->desc.train;
  modelc_rt_real scale = 1.0f / (modelc_rt_real)(micro_batches > 0 ? micro_batches : 1);
  double squares = 0;
  for (int i = 0; i < t->num_params; i++)
    squares += modelc_rt_sum_squares_scaled((const modelc_rt_real *)(m->grads + t->places[i].offset),
                                            t->places[i].count, scale);
  double norm = sqrt(squares);
  modelc_rt_real clip = 1.0f;
  if (c->grad_clip > 0) {
    clip = (modelc_rt_real)(c->grad_clip / (norm + 1e-6));
    if (!(clip < 1.0f)) clip = 1.0f;
  }
  double lr = modelc_rt_lr_at(&c->schedule, m->step);
  for (int i = 0; i < t->num_params; i++) {
    const table_place *p = &t->places[i];
    modelc_rt_real *param = (modelc_rt_real *)(m->state + p->offset);
    modelc_rt_real *g = (modelc_rt_real *)(m->grads + p->offset);
    modelc_rt_real decay = p->decay ? (float)c->weight_decay : 0.0f;
    if (c->optimizer == 0) {
      modelc_rt_real *m1 = (modelc_rt_real *)(m->opt + p->offset);
      modelc_rt_real *m2 = (modelc_rt_real *)(m->opt + t->grad_bytes + p->offset);
      modelc_rt_adamw_step(param, g, m1, m2, p->count, (modelc_rt_real)lr, (float)c->beta1, (float)c->beta2,
                           (float)c->eps, decay, m->step + 1, scale, clip);
    } else {
      modelc_rt_real *buf = c->momentum != 0 ? (modelc_rt_real *)(m->opt + p->offset) : NULL;
      modelc_rt_sgd_step(param, g, buf, p->count, (modelc_rt_real)lr, (float)c->momentum, c->nesterov, decay,
                         m->step == 0, scale, clip);
    }
  }
  m->step++;
  m->pending = 0;
  if (norm_out) *norm_out = norm;
  if (lr_out) *lr_out = lr;
  return 0;
}

modelc_rt_real modelc_rt_table_train_step(modelc_rt_table_model *m, const void *inputs) {
  const table *t = m->t;
  if (!t->desc.trains) return modelc_rt_fail(m->error, sizeof m->error, "the model does not train"), NAN;
  table_bind(m, inputs);
  for (int i = 0; i < t->num_inputs; i++)
    if (!m->args.in[i]) {
      snprintf(m->error, sizeof m->error, "input '%s' is missing", t->inputs[i].name);
      return NAN;
    }
  if (table_run(m, 2) != 0) return NAN;
  modelc_rt_real loss = table_pointer(m, t->entries[2].loss)[0];
  m->args.micro_step++;
  if (++m->pending >= t->desc.train.accumulate) table_update(m, m->pending, NULL, NULL);
  return loss;
}

/* ---- the driver's descriptor ---- */

static void d_destroy(void *m) { modelc_rt_table_free(m); }
static const char *d_error(const void *m) { return modelc_rt_table_error(m); }
static int d_init(void *m, uint64_t seed) { return modelc_rt_table_init(m, seed); }
static int d_load(void *m, const char *path) { return modelc_rt_table_load(m, path); }
static int d_save(const void *m, const char *path) { return modelc_rt_table_save(m, path); }
static int64_t d_step(const void *m) { return ((const table_model *)m)->step; }

static int d_forward(void *model, const void *const *in, const modelc_rt_real **out, int with_loss,
                     modelc_rt_real *loss) {
  table_model *m = model;
  int entry = with_loss && m->t->desc.trains ? 1 : 0;
  table_bind(m, in);
  if (table_require(m, entry) != 0 || table_run(m, entry) != 0) return -1;
  for (int i = 0; i < m->t->num_outputs; i++) out[i] = table_pointer(m, m->t->entries[entry].out[i]);
  *loss = entry ? table_pointer(m, m->t->entries[1].loss)[0] : NAN;
  return 0;
}

static int d_backward(void *model, const void *const *in, const modelc_rt_real **out, modelc_rt_real *loss) {
  table_model *m = model;
  table_bind(m, in);
  if (table_require(m, 2) != 0 || table_run(m, 2) != 0) return -1;
  for (int i = 0; i < m->t->num_outputs; i++) out[i] = table_pointer(m, m->t->entries[2].out[i]);
  *loss = table_pointer(m, m->t->entries[2].loss)[0];
  m->args.micro_step++;
  m->pending++;
  return 0;
}

static int d_update(void *m, int64_t micro, double *norm, double *lr) { return table_update(m, micro, norm, lr); }

static const modelc_rt_real *d_grad(const void *model, int i) {
  const table_model *m = model;
  return (const modelc_rt_real *)(m->grads + m->t->places[i].offset);
}

static modelc_rt_real *d_param(void *model, int i) {
  table_model *m = model;
  return (modelc_rt_real *)(m->state + m->t->places[i].offset);
}

static int d_state(void *model, modelc_rt_st_entry *entries, int capacity) {
  table_model *m = model;
  const table *t = m->t;
  static const int64_t scalar[1] = {1};
  int n = 0;
  if (n < capacity) entries[n++] = (modelc_rt_st_entry){"step", MODELC_RT_I64, 0, scalar, &m->step};
  if (n < capacity)
    entries[n++] = (modelc_rt_st_entry){"micro_step", MODELC_RT_I64, 0, scalar, &m->args.micro_step};
  int slots = !t->desc.trains ? 0 : t->desc.train.optimizer == 0 ? 2 : t->desc.train.momentum != 0 ? 1 : 0;
  for (int s = 0; s < slots; s++)
    for (int i = 0; i < t->num_params && n < capacity; i++)
      entries[n++] = (modelc_rt_st_entry){t->state_names[s * t->num_params + i], MODELC_RT_REAL,
                                          t->tensors[i].rank, t->tensors[i].shape,
                                          m->opt + s * t->grad_bytes + t->places[i].offset};
  return n;
}

static void table_fill_descriptor(table *t) {
  modelc_rt_model *d = &t->desc;
  d->name = t->name;
  d->num_inputs = t->num_inputs;
  d->inputs = t->inputs;
  d->num_outputs = t->num_outputs;
  d->outputs = t->outputs;
  d->num_params = t->num_params;
  d->params = t->tensors;
  if (!d->trains) {
    d->train.accumulate = 1;
    d->train.seed = 1337;
  }
  d->input_loss_only = t->loss_only;
  d->create = NULL;
  d->destroy = d_destroy;
  d->error = d_error;
  d->init = d_init;
  d->load = d_load;
  d->save = d_save;
  d->state = d_state;
  d->forward = d_forward;
  if (d->trains) {
    d->backward = d_backward;
    d->update = d_update;
    d->grad = d_grad;
  }
  d->step = d_step;
  d->param = d_param;
  d->table = t;
}

modelc_rt_model *modelc_rt_table_describe(const modelc_rt_table_source *src, char *err, size_t errlen) {
  table *t = table_parse(src, err, errlen);
  return t ? &t->desc : NULL;
}

void modelc_rt_table_release(modelc_rt_model *m) {
  if (m) table_destroy((table *)m->table);
}

void *modelc_rt_model_create(const modelc_rt_model *m) {
  if (m->create) return m->create();
  return m->table ? table_model_new(m->table) : NULL;
}
