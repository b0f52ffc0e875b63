/* rt_numerics.c: `--check-numerics`. Generated code calls
 * modelc_rt_check_finite after each kernel while the checks are on
 * (modelc_rt_set_check_numerics; the driver turns them on for the flag): the first NaN or infinity
 * stops the step with a message naming the value, the op, the spec's
 * file:line:col and whether it came up in forward or backward. */
#include "modelc_rt.h"

/* A function rather than a variable: the header renames functions
 * per model (MODEL_rt_*), so each model keeps its own setting. */
static int rt_check_numerics;

void modelc_rt_set_check_numerics(int on) { rt_check_numerics = on != 0; }
int modelc_rt_check_numerics_on(void) { return rt_check_numerics; }

int modelc_rt_check_finite(const modelc_rt_real *x, int64_t count, const char *value, const char *op,
                           const char *where, const char *phase, char *err, size_t errlen) {
  for (int64_t i = 0; i < count; i++) {
    if (isfinite(x[i])) continue;
    return modelc_rt_fail(err, errlen,
                          "--check-numerics: %s at element %lld of %s, computed by %s at %s (%s)",
                          isnan(x[i]) ? "nan" : x[i] > 0 ? "inf" : "-inf", (long long)i, value, op,
                          where, phase);
  }
  return 0;
}
