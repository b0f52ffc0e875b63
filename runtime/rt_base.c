/* rt_base.c: dtypes, half-precision conversion, scalar derivatives, time. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "modelc_rt.h"

static const char *const dtype_names[] = {"F32", "BF16", "F16", "F64", "I32", "I64", "U8"};
static const size_t dtype_sizes[] = {4, 2, 2, 8, 4, 8, 1};

const char *modelc_rt_dtype_name(modelc_rt_dtype dtype) {
  return (unsigned)dtype <= MODELC_RT_U8 ? dtype_names[dtype] : "?";
}

size_t modelc_rt_dtype_size(modelc_rt_dtype dtype) {
  return (unsigned)dtype <= MODELC_RT_U8 ? dtype_sizes[dtype] : 0;
}

float modelc_rt_bf16_to_f32(uint16_t v) {
  uint32_t bits = (uint32_t)v << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

float modelc_rt_f16_to_f32(uint16_t v) {
  uint32_t sign = (uint32_t)(v >> 15) << 31, exp = (v >> 10) & 0x1f, mant = v & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13); /* inf or nan */
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else { /* subnormal: normalise */
    int e = -1;
    do {
      e++;
      mant <<= 1;
    } while (!(mant & 0x400));
    bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ff) << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* d/dx [x * Phi(x)] = Phi(x) + x * phi(x) */
modelc_rt_real modelc_rt_gelu_grad(modelc_rt_real x) {
  modelc_rt_real cdf = 0.5f * (1.0f + modelc_rt_erf(x * 0.70710678118654752f));
  modelc_rt_real pdf = 0.39894228040143268f * modelc_rt_exp(-0.5f * x * x);
  return cdf + x * pdf;
}

/* d/dx of 0.5 x (1 + tanh(u)), u = c (x + 0.044715 x^3) */
modelc_rt_real modelc_rt_gelu_tanh_grad(modelc_rt_real x) {
  return modelc_rt_gelu_tanh_grad_inline(x);
}

double modelc_rt_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int modelc_rt_fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}
