/* gradcheck: the autodiff pass's gradients against central differences.
 *
 *   gradcheck SPEC [--seed S] [--samples N] [--rtol R]
 *
 * Builds SPEC's training graph through the whole pipeline (expand,
 * autodiff, dce), fills inputs and params with seeded random data and
 * evaluates it in double precision with the reference interpreter
 * (ir/interp.h). For N random elements of every param with a gradient,
 * (L(p+h) - L(p-h)) / 2h with h = 1e-6 max(1, |p|) must match the
 * analytic gradient: |fd - an| <= atol + rtol max(|fd|, |an|), atol 1e-7.
 * An element next to a kink (relu, abs, max) can fail for no fault of the
 * gradient; a failing element is retried with up to 5 other elements
 * before the param fails. Prints one line per param and a summary.
 *
 * Data: float inputs uniform in [0.5, 1.5] (log and sqrt stay defined);
 * integer inputs uniform in [0, n) with n the rows of the table they index
 * (gather) or the classes (nll_loss, whose first target is set to the
 * ignore_index when there are several), else 2; params N(0, 0.5), the
 * std halved (at most 5 times) while the loss is not finite (log or sqrt
 * of input + param); buffers by their init (ones or zeros).
 *
 * Exit: 0 all pass, 1 a mismatch or an error, 2 not checkable (active
 * dropout, or a loss that depends on no param). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/diag.h"
#include "compiler/fe.h"
#include "ir/interp.h"
#include "ir/ir.h"

enum { EXIT_PASS = 0, EXIT_MISMATCH = 1, EXIT_SKIP = 2, MAX_RETRIES = 5 };

static const double ATOL = 1e-7;
static const double PARAM_STD = 0.5;
static const double REL_FLOOR = 1e-4;

typedef struct options {
  const char *spec;
  uint64_t seed;
  int samples;
  double rtol;
} options;

/* ---- random numbers: splitmix64 ---- */

static uint64_t rng_state;

static uint64_t rng_next(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* In [0, 1). */
static double rng_uniform(void) { return (double)(rng_next() >> 11) * 0x1.0p-53; }

static int64_t rng_below(int64_t n) { return (int64_t)(rng_uniform() * (double)n); }

static double rng_normal(double std) {
  double u = 1.0 - rng_uniform(), v = rng_uniform();
  return std * sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* ---- arguments ---- */

static bool parse_args(int argc, char **argv, options *o) {
  *o = (options){.seed = 1, .samples = 3, .rtol = 1e-5};
  for (int i = 1; i < argc; i++) {
    bool has_value = i + 1 < argc;
    if (strcmp(argv[i], "--seed") == 0 && has_value)
      o->seed = strtoull(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--samples") == 0 && has_value)
      o->samples = atoi(argv[++i]);
    else if (strcmp(argv[i], "--rtol") == 0 && has_value)
      o->rtol = atof(argv[++i]);
    else if (argv[i][0] != '-' && !o->spec)
      o->spec = argv[i];
    else
      return false;
  }
  return o->spec && o->samples > 0 && o->rtol >= 0;
}

/* ---- the graph ---- */

static ir_graph *build_graph(ir_arena *arena, const char *path) {
  diag_engine *d = diag_new(arena, stderr);
  const fe_spec *spec = fe_spec_load(arena, d, path);
  ir_graph *g = spec ? fe_build_graph(arena, d, spec, FE_MODE_TRAIN) : NULL;
  diag_finish(d);
  if (!g) return NULL;
  char err[IR_ERR_LEN];
  ir_pass_options opts = {.verify_each = true};
  if (ir_run_pipeline(g, &opts, err, sizeof err)) return g;
  fprintf(stderr, "gradcheck: %s: %s\n", path, err);
  return NULL;
}

static const ir_value *loss_of(const ir_graph *g) {
  for (const ir_node *n = g->first; n; n = n->next)
    if (n->op == IR_OP_output && strcmp(ir_get_str(n, "name", ""), "loss") == 0)
      return n->inputs[0];
  return NULL;
}

/* Why the graph cannot be checked, or NULL. */
static const char *unchecked_reason(const ir_graph *g) {
  bool grads = false;
  for (const ir_node *n = g->first; n; n = n->next) {
    if (n->op == IR_OP_dropout_mask && ir_get_float(n, "p", 0.0) > 0) return "dropout";
    grads |= n->op == IR_OP_grad;
  }
  if (!loss_of(g)) return "no loss";
  return grads ? NULL : "the loss depends on no param";
}

/* ---- data ---- */

/* The exclusive bound for integer input v, from the op it feeds (through
 * layout ops); *ignore set to nll_loss's ignore_index when it feeds one. */
static int64_t id_bound(const ir_graph *g, const ir_value *v, int64_t *ignore, bool *is_target) {
  for (const ir_node *n = g->first; n; n = n->next)
    for (int i = 0; i < n->num_inputs; i++) {
      if (n->inputs[i] != v) continue;
      if (n->op == IR_OP_gather && i == 1) return n->inputs[0]->type.dims[0];
      if (n->op == IR_OP_nll_loss && i == 1) {
        const ir_type *t = &n->inputs[0]->type;
        *ignore = ir_get_int(n, "ignore_index", -100);
        *is_target = true;
        return t->dims[t->rank - 1];
      }
      bool layout = n->op == IR_OP_reshape || n->op == IR_OP_permute || n->op == IR_OP_slice ||
                    n->op == IR_OP_cast || n->op == IR_OP_broadcast;
      if (layout) return id_bound(g, n->results[0], ignore, is_target);
    }
  return 2;
}

static void fill_input(const ir_graph *g, const ir_value *v, double *p) {
  int64_t count = ir_type_numel(&v->type), ignore = 0;
  if (ir_dtype_is_float(v->type.dtype)) {
    for (int64_t i = 0; i < count; i++) p[i] = 0.5 + rng_uniform();
    return;
  }
  bool is_target = false;
  int64_t bound = id_bound(g, v, &ignore, &is_target);
  for (int64_t i = 0; i < count; i++) p[i] = (double)rng_below(bound);
  if (is_target && count > 2) p[0] = (double)ignore;
}

static void fill_data(const ir_graph *g, ir_interp *in, double param_std) {
  for (const ir_node *n = g->first; n; n = n->next) {
    if (n->num_results != 1) continue;
    const ir_value *v = n->results[0];
    double *p = ir_interp_value(in, v);
    int64_t count = ir_type_numel(&v->type);
    if (n->op == IR_OP_input) fill_input(g, v, p);
    if (n->op == IR_OP_param)
      for (int64_t i = 0; i < count; i++) p[i] = rng_normal(param_std);
    if (n->op == IR_OP_buffer) {
      double init = strcmp(ir_get_str(n, "init", "zeros"), "ones") == 0 ? 1.0 : 0.0;
      for (int64_t i = 0; i < count; i++) p[i] = init;
    }
  }
}

/* ---- checking ---- */

typedef struct checker {
  const ir_graph *g;
  ir_interp *in;
  const ir_value *loss;
  double rtol;
} checker;

static bool loss_at(checker *c, double *out) {
  char err[IR_ERR_LEN];
  if (!ir_interp_run(c->in, err, sizeof err)) {
    fprintf(stderr, "gradcheck: %s\n", err);
    return false;
  }
  *out = ir_interp_value(c->in, c->loss)[0];
  return true;
}

/* The central difference of the loss at element i of param. */
static bool central_difference(checker *c, const ir_value *param, int64_t i, double *fd) {
  double *p = ir_interp_value(c->in, param), saved = p[i], h = 1e-6 * fmax(1.0, fabs(saved));
  double plus = 0, minus = 0;
  p[i] = saved + h;
  bool ok = loss_at(c, &plus);
  p[i] = saved - h;
  ok = ok && loss_at(c, &minus);
  p[i] = saved;
  *fd = (plus - minus) / (2.0 * h);
  return ok;
}

typedef struct param_result {
  int passed, retried;
  bool has_rel;
  double worst_rel, worst_tol; /* |fd - an| / max(|fd|, |an|), / the tolerance */
  bool error;
} param_result;

/* Whether element i matches; updates the worst relative error on success. */
static bool check_element(checker *c, const ir_value *param, const double *grad, int64_t i,
                          param_result *r) {
  double fd;
  if (!central_difference(c, param, i, &fd)) {
    r->error = true;
    return false;
  }
  double an = grad[i], diff = fabs(fd - an), scale = fmax(fabs(fd), fabs(an));
  bool ok = diff <= ATOL + c->rtol * scale;
  if (!ok) {
    char name[IR_ERR_LEN];
    fprintf(stderr, "  %s[%lld]: finite difference %.10g, analytic %.10g\n",
            ir_value_format(param, name, sizeof name), (long long)i, fd, an);
  }
  if (!ok) return false;
  /* below REL_FLOOR, atol decides and a relative error says little */
  if (scale >= REL_FLOOR) r->worst_rel = fmax(r->worst_rel, diff / scale), r->has_rel = true;
  r->worst_tol = fmax(r->worst_tol, diff / (ATOL + c->rtol * scale));
  return true;
}

/* `samples` random elements, each retried on other elements on failure. */
static param_result check_param(checker *c, const ir_value *param, const double *grad,
                                int samples) {
  param_result r = {0};
  int64_t count = ir_type_numel(&param->type);
  for (int s = 0; s < samples && !r.error; s++) {
    bool ok = false;
    for (int attempt = 0; attempt <= MAX_RETRIES && !ok && !r.error; attempt++) {
      ok = check_element(c, param, grad, rng_below(count), &r);
      if (attempt > 0 && ok) r.retried++;
    }
    if (ok) r.passed++;
  }
  return r;
}

/* Checks every param with a gradient; returns the number that failed. */
static int check_params(checker *c, const char *model, const char **error_out, int samples) {
  int failed = 0;
  for (const ir_node *n = c->g->first; n; n = n->next) {
    if (n->op != IR_OP_param) continue;
    const ir_value *param = n->results[0];
    const double *analytic = ir_interp_grad(c->in, param);
    if (!analytic) continue;
    /* the last run was at a perturbed point: run at the data again, and
     * copy the gradient, which the finite differences' runs overwrite */
    double loss;
    if (!loss_at(c, &loss)) return *error_out = "interpreter error", failed + 1;
    int64_t count = ir_type_numel(&param->type);
    double *grad = malloc((size_t)count * sizeof *grad);
    if (!grad) return *error_out = "out of memory", failed + 1;
    memcpy(grad, analytic, (size_t)count * sizeof *grad);
    param_result r = check_param(c, param, grad, samples);
    free(grad);
    if (r.error) return *error_out = "interpreter error", failed + 1;
    bool ok = r.passed == samples;
    failed += !ok;
    char rel[32] = "-";
    if (r.has_rel) snprintf(rel, sizeof rel, "%.1e", r.worst_rel);
    if (ok)
      printf("ok %s %s: %d samples, worst rel %s, worst err/tol %.2f%s\n", model, param->name,
             samples, rel, r.worst_tol, r.retried ? ", retried next to a kink" : "");
    else
      printf("FAIL %s %s: %d of %d samples passed\n", model, param->name, r.passed, samples);
  }
  return failed;
}

static int run_check(const ir_graph *g, ir_interp *in, const options *o) {
  checker c = {.g = g, .in = in, .loss = loss_of(g), .rtol = o->rtol};
  double loss = NAN, std = 2 * PARAM_STD;
  for (int tries = 0; tries < 6 && !isfinite(loss); tries++) {
    std /= 2;
    fill_data(g, in, std);
    if (!loss_at(&c, &loss)) return EXIT_MISMATCH;
  }
  if (!isfinite(loss)) {
    printf("FAIL %s: loss is %g\n", g->name, loss);
    return EXIT_MISMATCH;
  }
  if (std != PARAM_STD) printf("note: params drawn with std %g for a finite loss\n", std);
  const char *error = NULL;
  int failed = check_params(&c, g->name, &error, o->samples);
  if (error) printf("FAIL %s: %s\n", g->name, error);
  printf("%s %s: loss %.6g, %d param%s failed\n", failed ? "FAIL" : "PASS", g->name, loss, failed,
         failed == 1 ? "" : "s");
  return failed ? EXIT_MISMATCH : EXIT_PASS;
}

int main(int argc, char **argv) {
  options o;
  if (!parse_args(argc, argv, &o)) {
    fprintf(stderr, "usage: gradcheck SPEC [--seed S] [--samples N] [--rtol R]\n");
    return EXIT_MISMATCH;
  }
  rng_state = o.seed;
  ir_arena *arena = ir_arena_new();
  ir_graph *g = arena ? build_graph(arena, o.spec) : NULL;
  int rc = g ? EXIT_PASS : EXIT_MISMATCH;
  const char *reason = g ? unchecked_reason(g) : NULL;
  if (reason) {
    printf("skipped: %s\n", reason);
    rc = EXIT_SKIP;
  }
  ir_interp *in = rc == EXIT_PASS ? ir_interp_new(g) : NULL;
  if (rc == EXIT_PASS && !in) {
    fprintf(stderr, "gradcheck: out of memory\n");
    rc = EXIT_MISMATCH;
  }
  if (in) rc = run_check(g, in, &o);
  ir_interp_free(in);
  ir_arena_free(arena);
  return rc;
}
