/* types.c: dtypes and tensor types (dtype + static shape). */
#include <stdio.h>
#include <string.h>

#include "ir.h"

typedef struct dtype_info {
  const char *name;
  int bytes;
  bool is_float;
} dtype_info;

static const dtype_info dtypes[IR_DTYPE_COUNT] = {
#define X(name, bytes, is_float) {#name, bytes, is_float},
    IR_DTYPES(X)
#undef X
};

static bool dtype_valid(ir_dtype dtype) { return (unsigned)dtype < IR_DTYPE_COUNT; }

const char *ir_dtype_name(ir_dtype dtype) {
  return dtype_valid(dtype) ? dtypes[dtype].name : "?";
}

bool ir_dtype_parse(const char *name, ir_dtype *out) {
  for (int i = 0; i < IR_DTYPE_COUNT; i++) {
    if (strcmp(dtypes[i].name, name) == 0) {
      *out = (ir_dtype)i;
      return true;
    }
  }
  return false;
}

int ir_dtype_bytes(ir_dtype dtype) { return dtype_valid(dtype) ? dtypes[dtype].bytes : 0; }

bool ir_dtype_is_float(ir_dtype dtype) {
  return dtype_valid(dtype) && dtypes[dtype].is_float;
}

/* Saturates at INT64_MAX instead of overflowing: shapes can come from
 * untrusted text, and a saturated count is still "too big" everywhere. */
static int64_t mul_saturating(int64_t a, int64_t b) {
  if (a <= 0 || b <= 0) return 0; /* negative dims are invalid anyway */
  if (a > INT64_MAX / b) return INT64_MAX;
  return a * b;
}

int64_t ir_type_numel(const ir_type *type) {
  int64_t n = 1;
  for (int i = 0; i < type->rank && i < IR_MAX_RANK; i++) n = mul_saturating(n, type->dims[i]);
  return n;
}

int64_t ir_type_bytes(const ir_type *type) {
  return mul_saturating(ir_type_numel(type), ir_dtype_bytes(type->dtype));
}

bool ir_type_equal(const ir_type *a, const ir_type *b) {
  if (a->dtype != b->dtype || a->rank != b->rank) return false;
  for (int i = 0; i < a->rank && i < IR_MAX_RANK; i++)
    if (a->dims[i] != b->dims[i]) return false;
  return true;
}

char *ir_shape_format(const ir_type *type, char *buf, size_t len) {
  if (!len) return buf;
  size_t used = 0;
  buf[0] = 0;
  used += (size_t)snprintf(buf, len, "[");
  for (int i = 0; i < type->rank && i < IR_MAX_RANK && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? "," : "",
                             (long long)type->dims[i]);
  if (used < len) snprintf(buf + used, len - used, "]");
  return buf;
}

char *ir_type_format(const ir_type *type, char *buf, size_t len) {
  if (!len) return buf;
  int n = snprintf(buf, len, "%s", ir_dtype_name(type->dtype));
  if (n >= 0 && (size_t)n < len) ir_shape_format(type, buf + n, len - (size_t)n);
  return buf;
}

ir_type ir_type_make(ir_dtype dtype, int rank, const int64_t *dims) {
  ir_type t;
  memset(&t, 0, sizeof t);
  t.dtype = dtype;
  if (rank < 0) rank = 0;
  if (rank > IR_MAX_RANK) rank = IR_MAX_RANK;
  t.rank = rank;
  for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
  return t;
}
