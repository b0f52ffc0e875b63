/* rt_random.c: a counter-based RNG and the fills built on it.
 *
 * modelc_rt_hash(seed, stream, index) passes each word through the
 * splitmix64 finaliser in turn, so for a fixed (seed, stream) it is a
 * bijection of index: no two indices of one stream collide. Every value
 * depends only on its index, so the loops split across threads freely
 * and give the same bits with any thread count. */
#include "modelc_rt.h"

#define RNG_GOLDEN 0x9e3779b97f4a7c15ull
#define RNG_PARALLEL_MIN 65536

/* splitmix64's finaliser: a bijection of 64-bit words with full avalanche. */
static uint64_t rng_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t modelc_rt_hash(uint64_t seed, uint64_t stream, uint64_t index) {
  uint64_t h = rng_mix(seed + RNG_GOLDEN);
  h = rng_mix(h ^ (stream * 0xd1b54a32d192ed03ull + 0x2545f4914f6cdd1dull));
  return rng_mix(h ^ (index * RNG_GOLDEN + 0x632be59bd9b4e019ull));
}

/* The top 24 bits: every value is a float exactly, and < 1. */
float modelc_rt_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  return (float)(modelc_rt_hash(seed, stream, index) >> 40) * (1.0f / 16777216.0f);
}

/* Box-Muller from the uniforms at 2i and 2i + 1: sqrt(-2 ln u1) cos(2 pi u2)
 * with u1 in (0, 1] so the log is finite. */
static float rng_normal(uint64_t seed, uint64_t stream, uint64_t i) {
  double u1 = 1.0 - (double)modelc_rt_uniform(seed, stream, 2 * i);
  double u2 = (double)modelc_rt_uniform(seed, stream, 2 * i + 1);
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586477 * u2));
}

void modelc_rt_fill_normal(modelc_rt_real *x, int64_t n, float mean, float std, uint64_t seed,
                           uint64_t stream) {
#ifdef _OPENMP
#pragma omp parallel for if (n >= RNG_PARALLEL_MIN)
#endif
  for (int64_t i = 0; i < n; i++) {
    double scaled = (double)std * rng_normal(seed, stream, (uint64_t)i); /* not fused: */
    x[i] = (float)((double)mean + scaled); /* the same bits with any compiler flags */
  }
}

void modelc_rt_fill_uniform(modelc_rt_real *x, int64_t n, float low, float high, uint64_t seed,
                            uint64_t stream) {
  double width = (double)high - (double)low;
#ifdef _OPENMP
#pragma omp parallel for if (n >= RNG_PARALLEL_MIN)
#endif
  for (int64_t i = 0; i < n; i++) {
    double offset = width * modelc_rt_uniform(seed, stream, (uint64_t)i);
    float v = (float)((double)low + offset);
    x[i] = v >= high && high > low ? nextafterf(high, low) : v; /* [low, high) despite rounding */
  }
}

void modelc_rt_fill(modelc_rt_real *x, int64_t n, modelc_rt_real value) {
#ifdef _OPENMP
#pragma omp parallel for if (n >= RNG_PARALLEL_MIN)
#endif
  for (int64_t i = 0; i < n; i++) x[i] = value;
}

void modelc_rt_dropout_mask(modelc_rt_real *mask, int64_t n, float p, uint64_t seed,
                            uint64_t stream) {
  float keep = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; /* p = 1 drops everything */
#ifdef _OPENMP
#pragma omp parallel for if (n >= RNG_PARALLEL_MIN)
#endif
  for (int64_t i = 0; i < n; i++)
    mask[i] = modelc_rt_uniform(seed, stream, (uint64_t)i) < p ? 0.0f : keep;
}
