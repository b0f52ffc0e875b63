/* rt_model.c: loading a generated model's tensors from safetensors with
 * the checks PyTorch users expect from load_state_dict(strict=True). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "modelc_rt.h"

static void model_shape_text(int rank, const int64_t *shape, char *buf, size_t len) {
  size_t at = (size_t)snprintf(buf, len, "[");
  for (int i = 0; i < rank && at < len; i++)
    at += (size_t)snprintf(buf + at, len - at, "%s%lld", i ? "," : "", (long long)shape[i]);
  if (at < len) snprintf(buf + at, len - at, "]");
}

static int model_same_shape(const modelc_rt_st_tensor *t, const modelc_rt_tensor_desc *want) {
  if (t->rank != want->rank) return 0;
  for (int i = 0; i < t->rank; i++)
    if (t->shape[i] != want->shape[i]) return 0;
  return 1;
}

int modelc_rt_load_tensor(const modelc_rt_st_file *f, const modelc_rt_tensor_desc *want, void *dst,
                          char *err, size_t errlen) {
  char expect[160], got[160];
  model_shape_text(want->rank, want->shape, expect, sizeof expect);
  const modelc_rt_st_tensor *t = modelc_rt_st_find(f, want->name);
  if (!t) {
    snprintf(err, errlen, "%s: missing tensor '%s' (%s %s)", f->path, want->name,
             modelc_rt_dtype_name(want->dtype), expect);
    return -1;
  }
  if (!model_same_shape(t, want)) {
    model_shape_text(t->rank, t->shape, got, sizeof got);
    snprintf(err, errlen, "%s: tensor '%s' is %s %s but the model has %s %s", f->path, want->name,
             modelc_rt_dtype_name(t->dtype), got, modelc_rt_dtype_name(want->dtype), expect);
    return -1;
  }
  int64_t count = 1;
  for (int i = 0; i < want->rank; i++) count *= want->shape[i];
  if (want->dtype != MODELC_RT_I64) {
    if (modelc_rt_st_read_real(f, t, 0, count, dst, err, errlen) != 0) return -1;
    /* NaN or infinite weights are an error (docs/reliability.md): they
     * would only turn every output into NaN, far from the cause. */
    const modelc_rt_real *v = dst;
    for (int64_t i = 0; i < count; i++)
      if (!isfinite(v[i])) {
        snprintf(err, errlen, "%s: tensor '%s': element %lld is %s; weights must be finite",
                 f->path, want->name, (long long)i, isnan(v[i]) ? "nan" : v[i] > 0 ? "inf" : "-inf");
        return -1;
      }
    return 0;
  }
  /* Integer state (num_batches_tracked): read through i32, kept as i64. */
  int32_t small[64];
  if (count > 64) {
    snprintf(err, errlen, "%s: tensor '%s': integer state larger than 64 elements", f->path,
             want->name);
    return -1;
  }
  if (modelc_rt_st_read_i32(f, t, 0, count, small, err, errlen) != 0) return -1;
  for (int64_t i = 0; i < count; i++) ((int64_t *)dst)[i] = small[i];
  return 0;
}

int modelc_rt_check_no_extra(const modelc_rt_st_file *f, const modelc_rt_tensor_desc *known,
                             int count, char *err, size_t errlen) {
  for (int i = 0; i < f->count; i++) {
    int found = 0;
    for (int j = 0; j < count && !found; j++) found = strcmp(f->tensors[i].name, known[j].name) == 0;
    if (!found) {
      snprintf(err, errlen, "%s: unexpected tensor '%s': the model has no parameter of that name",
               f->path, f->tensors[i].name);
      return -1;
    }
  }
  return 0;
}
