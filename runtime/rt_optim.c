/* rt_optim.c: AdamW and SGD as PyTorch computes them, learning-rate
 * schedules, and the helpers of gradient clipping.
 *
 * The updates follow PyTorch's CPU kernels operation by operation, so
 * that a run matches torch.optim to the last bit on the same inputs:
 * hyperparameter arithmetic (1 - lr*wd, lr / (1 - b1^t), ...) is done in
 * double, as Python does it, and rounded to float where PyTorch passes it
 * to a kernel; `add(x, alpha=a)`, `addcmul` and `lerp` are fused
 * multiply-adds in PyTorch's vectorised kernels, hence fmaf here, and
 * every other product is rounded in a statement of its own so that a
 * compiler contracting a*b + c within an expression (clang's default)
 * cannot fuse what PyTorch rounds twice. */
#include "modelc_rt.h"

#define OPTIM_PARALLEL_MIN 32768

/* The update loops over the threads and vectorised where simd pragmas
 * are used (MODELC_RT_OMP_SIMD in modelc_rt.h). */
#if MODELC_RT_OMP_SIMD
#define OPTIM_PARALLEL_FOR_SIMD _Pragma("omp parallel for simd if (parallel : n >= OPTIM_PARALLEL_MIN)")
#elif defined(_OPENMP)
#define OPTIM_PARALLEL_FOR_SIMD _Pragma("omp parallel for if (n >= OPTIM_PARALLEL_MIN)")
#else
#define OPTIM_PARALLEL_FOR_SIMD
#endif

/* torch.lerp(a, b, w) on CPU: a + w (b - a) for w < 0.5, else
 * b + (w - 1) (b - a), each one rounding. */
static modelc_rt_real optim_lerp(modelc_rt_real a, modelc_rt_real b, modelc_rt_real w) {
  return w < 0.5f ? modelc_rt_fma(w, b - a, a) : modelc_rt_fma(w - 1.0f, b - a, b);
}

/* AdamW over g = (grad * scale) * clip, each product rounded as when
 * the gradient was scaled in place first (multiplying by 1 is exact);
 * with `zero`, the gradient is cleared in the same pass. */
static void adamw_pass(modelc_rt_real *param, modelc_rt_real *grad, modelc_rt_real *m,
                       modelc_rt_real *v, int64_t n, modelc_rt_real lr, modelc_rt_real beta1,
                       modelc_rt_real beta2, modelc_rt_real eps, modelc_rt_real weight_decay,
                       int64_t step, modelc_rt_real scale, modelc_rt_real clip, int zero) {
  modelc_rt_real decay = (modelc_rt_real)(1.0 - (double)lr * (double)weight_decay);
  modelc_rt_real w1 = (modelc_rt_real)(1.0 - (double)beta1);
  modelc_rt_real b2 = beta2, w2 = (modelc_rt_real)(1.0 - (double)beta2);
  double correction1 = 1.0 - pow((double)beta1, (double)step);
  double correction2 = 1.0 - pow((double)beta2, (double)step);
  modelc_rt_real neg_step_size = (modelc_rt_real)(-((double)lr / correction1));
  modelc_rt_real correction2_sqrt = (modelc_rt_real)sqrt(correction2);
  OPTIM_PARALLEL_FOR_SIMD
  for (int64_t i = 0; i < n; i++) {
    modelc_rt_real g = grad[i] * scale;
    g = g * clip;
    modelc_rt_real p = param[i] * decay;
    modelc_rt_real mi = optim_lerp(m[i], g, w1);
    modelc_rt_real vi =
        modelc_rt_fma(w2 * g, g, v[i] * b2); /* v.mul_(b2).addcmul_(g, g, value=1-b2) */
    modelc_rt_real denom = modelc_rt_sqrt(vi) / correction2_sqrt;
    denom = denom + eps;
    modelc_rt_real update = neg_step_size * mi;
    param[i] = p + update / denom; /* p.addcdiv_(m, denom, value=-step_size) */
    m[i] = mi;
    v[i] = vi;
    if (zero) grad[i] = 0.0f;
  }
}

void modelc_rt_adamw(modelc_rt_real *param, const modelc_rt_real *grad, modelc_rt_real *m,
                     modelc_rt_real *v, int64_t n, modelc_rt_real lr, modelc_rt_real beta1,
                     modelc_rt_real beta2, modelc_rt_real eps, modelc_rt_real weight_decay,
                     int64_t step) {
  /* grad is only read: zero is 0 */
  adamw_pass(param, (modelc_rt_real *)grad, m, v, n, lr, beta1, beta2, eps, weight_decay, step,
             1.0f, 1.0f, 0);
}

void modelc_rt_adamw_step(modelc_rt_real *param, modelc_rt_real *grad, modelc_rt_real *m,
                          modelc_rt_real *v, int64_t n, modelc_rt_real lr, modelc_rt_real beta1,
                          modelc_rt_real beta2, modelc_rt_real eps, modelc_rt_real weight_decay,
                          int64_t step, modelc_rt_real scale, modelc_rt_real clip) {
  adamw_pass(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, step, scale, clip, 1);
}

static void sgd_pass(modelc_rt_real *param, modelc_rt_real *grad, modelc_rt_real *buf, int64_t n,
                     modelc_rt_real lr, modelc_rt_real momentum, int nesterov,
                     modelc_rt_real weight_decay, int first_step, modelc_rt_real scale,
                     modelc_rt_real clip, int zero) {
  modelc_rt_real neg_lr = -lr;
  OPTIM_PARALLEL_FOR_SIMD
  for (int64_t i = 0; i < n; i++) {
    modelc_rt_real d = grad[i] * scale;
    d = d * clip;
    if (weight_decay != 0.0f) d = modelc_rt_fma(param[i], weight_decay, d); /* g.add(p, alpha=wd) */
    if (momentum != 0.0f) {
      modelc_rt_real b = d;
      if (!first_step) { /* buf.mul_(momentum).add_(d): two roundings */
        b = buf[i] * momentum;
        b = b + d;
      }
      buf[i] = b;
      d = nesterov ? modelc_rt_fma(b, momentum, d) : b; /* d.add(buf, alpha=momentum) */
    }
    param[i] = modelc_rt_fma(d, neg_lr, param[i]); /* p.add_(d, alpha=-lr) */
    if (zero) grad[i] = 0.0f;
  }
}

void modelc_rt_sgd(modelc_rt_real *param, const modelc_rt_real *grad, modelc_rt_real *buf,
                   int64_t n, modelc_rt_real lr, modelc_rt_real momentum, int nesterov,
                   modelc_rt_real weight_decay, int first_step) {
  sgd_pass(param, (modelc_rt_real *)grad, buf, n, lr, momentum, nesterov, weight_decay, first_step,
           1.0f, 1.0f, 0);
}

void modelc_rt_sgd_step(modelc_rt_real *param, modelc_rt_real *grad, modelc_rt_real *buf,
                        int64_t n, modelc_rt_real lr, modelc_rt_real momentum, int nesterov,
                        modelc_rt_real weight_decay, int first_step, modelc_rt_real scale,
                        modelc_rt_real clip) {
  sgd_pass(param, grad, buf, n, lr, momentum, nesterov, weight_decay, first_step, scale, clip, 1);
}

double modelc_rt_lr_at(const modelc_rt_schedule *s, int64_t step) {
  if (step < s->warmup) return s->lr * (double)(step + 1) / (double)s->warmup;
  if (s->kind == MODELC_RT_CONSTANT) return s->lr;
  /* No room to decay (steps <= warmup) or past the end: the floor. */
  if (s->steps <= s->warmup || step >= s->steps) return s->min_lr;
  double progress = (double)(step - s->warmup) / (double)(s->steps - s->warmup);
  if (s->kind == MODELC_RT_COSINE)
    return s->min_lr + (s->lr - s->min_lr) * (1.0 + cos(3.14159265358979323846 * progress)) / 2.0;
  double drop = (s->min_lr - s->lr) * progress;
  return s->lr + drop;
}

/* In 64 fixed chunks summed in order, so the result does not depend on
 * the thread count. */
double modelc_rt_sum_squares(const modelc_rt_real *x, int64_t n) {
  return modelc_rt_sum_squares_scaled(x, n, 1.0f);
}

double modelc_rt_sum_squares_scaled(const modelc_rt_real *x, int64_t n, modelc_rt_real scale) {
  enum { CHUNKS = 64 };
  double partial[CHUNKS];
  int64_t chunk = (n + CHUNKS - 1) / CHUNKS;
#ifdef _OPENMP
#pragma omp parallel for if (n >= OPTIM_PARALLEL_MIN)
#endif
  for (int c = 0; c < CHUNKS; c++) {
    int64_t begin = c * chunk, end = begin + chunk < n ? begin + chunk : n;
    /* four running sums in a fixed order (element i goes to sum i % 4
     * of its chunk): four add chains in flight instead of one */
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int64_t i = begin;
    for (; i + 4 <= end; i += 4) {
      modelc_rt_real x0 = x[i] * scale, x1 = x[i + 1] * scale;
      modelc_rt_real x2 = x[i + 2] * scale, x3 = x[i + 3] * scale;
      s0 += (double)x0 * (double)x0;
      s1 += (double)x1 * (double)x1;
      s2 += (double)x2 * (double)x2;
      s3 += (double)x3 * (double)x3;
    }
    for (; i < end; i++) {
      modelc_rt_real xs = x[i] * scale;
      s0 += (double)xs * (double)xs;
    }
    partial[c] = (s0 + s1) + (s2 + s3);
  }
  double total = 0.0;
  for (int c = 0; c < CHUNKS; c++) total += partial[c];
  return total;
}

void modelc_rt_scale(modelc_rt_real *x, int64_t n, modelc_rt_real factor) {
  OPTIM_PARALLEL_FOR_SIMD
  for (int64_t i = 0; i < n; i++) x[i] *= factor;
}
