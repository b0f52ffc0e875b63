/* rt_gradcheck.c: `MODEL_main gradcheck`, in the double build only
 * (MODELC_DOUBLE): the generated backward against central differences of
 * the generated loss.
 *
 *   MODEL_main gradcheck --input IN [--weights W] [--samples N] [--seed S]
 *                        [--rtol R] [--atol A]
 *
 * Loads W (else the model's own init from seed S), reads every input from
 * IN, and runs the training entry once for the analytic gradients. Then,
 * for up to N elements of every parameter (all of them when it has no
 * more), (L(p+h) - L(p-h)) / 2h with h = 1e-6 max(1, |p|) must match:
 * |fd - an| <= atol + rtol max(|fd|, |an|). Every loss is the training
 * entry's (batchnorm in train mode) with the micro-batch counter put back
 * first, so dropout draws the same mask in every evaluation. An element
 * next to a kink (relu, abs, max) can fail for no fault of the gradient:
 * a failing element is retried on up to 5 others before the parameter
 * fails. Prints one line per parameter and a summary; exits 0 (pass),
 * 1 (a mismatch or bad input) or 2 (internal error). */
#ifdef MODELC_DOUBLE

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelc_rt.h"

enum { GC_MAX_RETRIES = 5, GC_ERRLEN = 512 };

/* Below this gradient size atol decides, and a relative error says little. */
static const double GC_REL_FLOOR = 1e-4;

typedef struct gc_options {
  const char *input, *weights;
  int samples;
  uint64_t seed;
  double rtol, atol;
} gc_options;

typedef struct gc_run {
  const modelc_rt_model *m;
  void *model;
  const void **inputs;
  const modelc_rt_real **outputs;
  int64_t *micro_step; /* the counter that seeds dropout */
  int64_t micro_step_at_start;
  const gc_options *o;
} gc_run;

typedef struct gc_result {
  int checked, passed, retried;
  double worst_rel, worst_tol; /* |fd - an| / max(|fd|, |an|); / the tolerance */
} gc_result;

static int gc_parse(int argc, char **argv, gc_options *o) {
  *o = (gc_options){.samples = 8, .seed = 1, .rtol = 1e-5, .atol = 1e-8};
  for (int i = 0; i < argc; i += 2) { /* --name value pairs */
    const char *value = i + 1 < argc ? argv[i + 1] : NULL;
    if (!value) return -1;
    if (strcmp(argv[i], "--input") == 0)
      o->input = value;
    else if (strcmp(argv[i], "--weights") == 0)
      o->weights = value;
    else if (strcmp(argv[i], "--samples") == 0)
      o->samples = atoi(value);
    else if (strcmp(argv[i], "--seed") == 0)
      o->seed = strtoull(value, NULL, 10);
    else if (strcmp(argv[i], "--rtol") == 0)
      o->rtol = atof(value);
    else if (strcmp(argv[i], "--atol") == 0)
      o->atol = atof(value);
    else
      return -1;
  }
  return o->input && o->samples > 0 && o->rtol >= 0 && o->atol >= 0 ? 0 : -1;
}

static int64_t gc_elements(const modelc_rt_tensor_desc *d) {
  int64_t n = 1;
  for (int i = 0; i < d->rank; i++) n *= d->shape[i];
  return n;
}

/* Every input from IN, as the model takes it (modelc_rt_real or i32). */
static int gc_read_inputs(const modelc_rt_model *m, const char *path, const void **inputs,
                          char *err, size_t errlen) {
  modelc_rt_st_file f;
  if (modelc_rt_st_open(&f, path, err, errlen) != 0) return -1;
  int rc = 0;
  for (int i = 0; i < m->num_inputs && rc == 0; i++) {
    const modelc_rt_tensor_desc *d = &m->inputs[i];
    const modelc_rt_st_tensor *t = modelc_rt_st_find(&f, d->name);
    int64_t n = gc_elements(d);
    void *data = calloc((size_t)(n > 0 ? n : 1), sizeof(modelc_rt_real));
    inputs[i] = data;
    if (!t)
      rc = modelc_rt_fail(err, errlen, "%s: missing input '%s'", path, d->name);
    else if (!data)
      rc = modelc_rt_fail(err, errlen, "out of memory");
    else if (d->dtype == MODELC_RT_I32)
      rc = modelc_rt_st_read_i32(&f, t, 0, n, data, err, errlen);
    else
      rc = modelc_rt_st_read_real(&f, t, 0, n, data, err, errlen);
  }
  modelc_rt_st_close(&f);
  return rc;
}

/* The training entry's loss at the current parameters, with dropout's
 * micro-batch counter as it was at the start. */
static int gc_loss(gc_run *r, double *loss) {
  *r->micro_step = r->micro_step_at_start;
  modelc_rt_real value = 0;
  if (r->m->backward(r->model, r->inputs, r->outputs, &value) != 0) return -1;
  *loss = (double)value;
  return 0;
}

static int gc_central_difference(gc_run *r, modelc_rt_real *p, double *fd) {
  modelc_rt_real saved = *p;
  double h = 1e-6 * fmax(1.0, fabs((double)saved)), plus = 0, minus = 0;
  *p = saved + h;
  int rc = gc_loss(r, &plus);
  *p = saved - h;
  if (rc == 0) rc = gc_loss(r, &minus);
  *p = saved;
  *fd = (plus - minus) / (2.0 * h);
  return rc;
}

/* Whether element k of parameter i matches its analytic gradient. */
static int gc_element(gc_run *r, int i, int64_t k, double analytic, gc_result *res, int *error) {
  double fd;
  if (gc_central_difference(r, r->m->param(r->model, i) + k, &fd) != 0) {
    *error = 1;
    return 0;
  }
  double diff = fabs(fd - analytic), scale = fmax(fabs(fd), fabs(analytic));
  double tol = r->o->atol + r->o->rtol * scale;
  if (diff > tol) {
    printf("  %s[%lld]: finite difference %.10g, analytic %.10g\n", r->m->params[i].name,
           (long long)k, fd, analytic);
    return 0;
  }
  if (scale >= GC_REL_FLOOR && diff / scale > res->worst_rel) res->worst_rel = diff / scale;
  if (diff / tol > res->worst_tol) res->worst_tol = diff / tol;
  return 1;
}

/* Up to `samples` elements of parameter i (distinct when it has more),
 * each retried on others on failure. */
static gc_result gc_param(gc_run *r, int i, const modelc_rt_real *analytic, int *error) {
  gc_result res = {0};
  int64_t count = gc_elements(&r->m->params[i]), draws = 0;
  int samples = count < r->o->samples ? (int)count : r->o->samples;
  for (int s = 0; s < samples && !*error; s++) {
    int ok = 0;
    for (int attempt = 0; attempt <= GC_MAX_RETRIES && !ok && !*error; attempt++) {
      int64_t k = count <= r->o->samples && attempt == 0
                      ? s
                      : (int64_t)(modelc_rt_hash(r->o->seed, (uint64_t)i, (uint64_t)draws++) %
                                  (uint64_t)count);
      ok = gc_element(r, i, k, (double)analytic[k], &res, error);
      if (ok && attempt > 0) res.retried++;
    }
    res.checked++;
    res.passed += ok;
  }
  return res;
}

/* Checks every parameter; returns how many failed, or -1 on error. */
static int gc_check(gc_run *r, double loss) {
  const modelc_rt_model *m = r->m;
  int failed = 0, elements = 0, error = 0;
  double worst_rel = 0, worst_tol = 0;
  for (int i = 0; i < m->num_params && !error; i++) {
    int64_t count = gc_elements(&m->params[i]);
    modelc_rt_real *analytic = malloc((size_t)(count > 0 ? count : 1) * sizeof *analytic);
    if (!analytic) return -1;
    /* zero every gradient, run at the data, keep this parameter's */
    for (int k = 0; k < m->num_params; k++)
      memset((modelc_rt_real *)m->grad(r->model, k), 0,
             (size_t)gc_elements(&m->params[k]) * sizeof(modelc_rt_real));
    double again;
    if (gc_loss(r, &again) != 0) {
      free(analytic);
      return -1;
    }
    memcpy(analytic, m->grad(r->model, i), (size_t)count * sizeof *analytic);
    gc_result res = gc_param(r, i, analytic, &error);
    free(analytic);
    if (error) return -1;
    int ok = res.passed == res.checked;
    failed += !ok;
    elements += res.checked;
    worst_rel = fmax(worst_rel, res.worst_rel);
    worst_tol = fmax(worst_tol, res.worst_tol);
    if (ok)
      printf("ok %s: %d elements, worst rel %.1e, worst err/tol %.2f%s\n", m->params[i].name,
             res.checked, res.worst_rel, res.worst_tol,
             res.retried ? ", retried next to a kink" : "");
    else
      printf("FAIL %s: %d of %d elements match\n", m->params[i].name, res.passed, res.checked);
  }
  printf("%s %s: loss %.10g, %d params, %d elements, worst rel %.1e, worst err/tol %.2f, "
         "%d failed\n",
         failed ? "FAIL" : "PASS", m->name, loss, m->num_params, elements, worst_rel, worst_tol,
         failed);
  return failed;
}

static int gc_prepare(gc_run *r, const gc_options *o, char *err, size_t errlen) {
  const modelc_rt_model *m = r->m;
  if (!m->trains || !m->backward || !m->param)
    return modelc_rt_fail(err, errlen, "the model has no train: section, so no gradients");
  if (o->weights ? m->load(r->model, o->weights) != 0 : m->init(r->model, o->seed) != 0)
    return modelc_rt_fail(err, errlen, "%s", m->error(r->model));
  if (gc_read_inputs(m, o->input, r->inputs, err, errlen) != 0) return -1;
  modelc_rt_st_entry entries[64];
  int n = m->state(r->model, entries, 64);
  for (int i = 0; i < n; i++)
    if (strcmp(entries[i].name, "micro_step") == 0) r->micro_step = (int64_t *)entries[i].data;
  if (!r->micro_step) return modelc_rt_fail(err, errlen, "the model lists no micro_step");
  r->micro_step_at_start = *r->micro_step;
  return 0;
}

int modelc_rt_gradcheck_main(int argc, char **argv, const modelc_rt_model *m) {
  gc_options o;
  if (gc_parse(argc, argv, &o) != 0) {
    fprintf(stderr,
            "usage: %s_main gradcheck --input IN [--weights W] [--samples N] [--seed S] "
            "[--rtol R] [--atol A]\n",
            m->name);
    return 1;
  }
  gc_run r = {.m = m, .o = &o};
  r.model = modelc_rt_model_create(m);
  r.inputs = calloc((size_t)m->num_inputs + 1, sizeof *r.inputs);
  r.outputs = calloc((size_t)m->num_outputs + 1, sizeof *r.outputs);
  char err[GC_ERRLEN] = "out of memory";
  int rc = r.model && r.inputs && r.outputs ? gc_prepare(&r, &o, err, sizeof err) : -1;
  double loss = NAN;
  if (rc == 0 && gc_loss(&r, &loss) != 0) {
    snprintf(err, sizeof err, "%s", m->error(r.model));
    rc = -1;
  }
  if (rc == 0 && !isfinite(loss)) rc = modelc_rt_fail(err, sizeof err, "the loss is %g", loss);
  int failed = rc == 0 ? gc_check(&r, loss) : -1;
  if (rc == 0 && failed < 0) snprintf(err, sizeof err, "%s", m->error(r.model));
  if (failed < 0) fprintf(stderr, "%s gradcheck: error: %s\n", m->name, err);
  for (int i = 0; r.inputs && i < m->num_inputs; i++) free((void *)r.inputs[i]);
  free(r.inputs);
  free(r.outputs);
  if (r.model) m->destroy(r.model);
  return failed < 0 ? (rc != 0 ? 1 : 2) : failed > 0;
}

#else
/* ISO C wants a declaration in every translation unit. */
typedef int modelc_rt_gradcheck_unused;
#endif
