/* test_rt_attention.c: the flash attention kernels (rt_attention.c)
 * against the plain formulas in double (every score, softmax, products)
 * for each mask kind, GQA, RoPE, both layouts, lengths that are not a
 * multiple of the blocks, and windows narrower and wider than a block:
 * out, lse, and dq, dk, dv for a random gradient of out. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "modelc_rt.h"

static uint64_t rng_state = 1;

static float rng_float(void) { /* [-1, 1) */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  uint32_t r = (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
  return (float)(r >> 8) / 8388608.0f - 1.0f;
}

static float *randoms(int64_t n, float scale) {
  float *x = malloc(sizeof *x * (size_t)n);
  for (int64_t i = 0; i < n; i++) x[i] = scale * rng_float();
  return x;
}

static int64_t off(const modelc_rt_flash *p, int64_t b, int64_t h, int64_t heads, int64_t t) {
  return p->bthd ? ((b * p->t + t) * heads + h) * p->d : ((b * heads + h) * p->t + t) * p->d;
}

static int allowed(const modelc_rt_flash *p, int64_t i, int64_t j) {
  if (p->causal && j > i) return 0;
  int64_t dist = i > j ? i - j : j - i;
  return p->window == 0 || dist < p->window || i < p->global || j < p->global;
}

/* Row of q or k at position t rotated by sign (rope as modelc_rt_rope). */
static void rotate(const modelc_rt_flash *p, const double *src, int64_t t, double sign,
                   double *dst) {
  int64_t h = p->d / 2;
  for (int64_t i = 0; i < p->d; i++) dst[i] = src[i];
  if (p->rope <= 0) return;
  for (int64_t i = 0; i < h; i++) {
    double a = (double)t * pow((double)p->rope, -2.0 * (double)i / (double)p->d);
    double c = cos(a), s = sign * sin(a);
    dst[i] = src[i] * c - src[i + h] * s;
    dst[i + h] = src[i + h] * c + src[i] * s;
  }
}

typedef struct reference {
  double *out, *lse, *dq, *dk, *dv;
} reference;

static reference naive(const modelc_rt_flash *p, const float *q, const float *k, const float *v,
                       const float *dout) {
  int64_t nq = p->b * p->h * p->t * p->d, nk = p->b * p->kv_h * p->t * p->d, d = p->d;
  reference r = {calloc((size_t)nq, 8), calloc((size_t)(p->b * p->h * p->t), 8),
                 calloc((size_t)nq, 8), calloc((size_t)nk, 8), calloc((size_t)nk, 8)};
  double *kr = malloc(sizeof(double) * (size_t)(p->t * d)), *pr = malloc(sizeof(double) * (size_t)p->t);
  double qr[MODELC_RT_FLASH_MAX_HEAD], raw[MODELC_RT_FLASH_MAX_HEAD], dqr[MODELC_RT_FLASH_MAX_HEAD];
  double *dp = malloc(sizeof(double) * (size_t)p->t);
  for (int64_t b = 0; b < p->b; b++)
    for (int64_t h = 0; h < p->h; h++) {
      int64_t g = h / (p->h / p->kv_h);
      for (int64_t j = 0; j < p->t; j++) {
        for (int64_t x = 0; x < d; x++) raw[x] = k[off(p, b, g, p->kv_h, j) + x];
        rotate(p, raw, j, 1, kr + j * d);
      }
      for (int64_t i = 0; i < p->t; i++) {
        int64_t qo = off(p, b, h, p->h, i);
        for (int64_t x = 0; x < d; x++) raw[x] = q[qo + x];
        rotate(p, raw, i, 1, qr);
        double mx = -INFINITY, sum = 0, dsum = 0;
        for (int64_t j = 0; j < p->t; j++) {
          double s = 0;
          for (int64_t x = 0; x < d; x++) s += qr[x] * kr[j * d + x];
          pr[j] = allowed(p, i, j) ? s * p->scale : -INFINITY;
          mx = fmax(mx, pr[j]);
        }
        for (int64_t j = 0; j < p->t; j++) sum += pr[j] = isinf(pr[j]) ? 0 : exp(pr[j] - mx);
        r.lse[(b * p->h + h) * p->t + i] = mx + log(sum);
        for (int64_t j = 0; j < p->t; j++) {
          pr[j] /= sum;
          int64_t vo = off(p, b, g, p->kv_h, j);
          dp[j] = 0;
          for (int64_t x = 0; x < d; x++) {
            r.out[qo + x] += pr[j] * v[vo + x];
            r.dv[vo + x] += pr[j] * dout[qo + x];
            dp[j] += (double)dout[qo + x] * v[vo + x];
          }
          dsum += pr[j] * dp[j];
        }
        for (int64_t x = 0; x < d; x++) dqr[x] = 0;
        for (int64_t j = 0; j < p->t; j++) {
          double ds = pr[j] * (dp[j] - dsum) * p->scale;
          for (int64_t x = 0; x < d; x++) dqr[x] += ds * kr[j * d + x];
          for (int64_t x = 0; x < d; x++) raw[x] = ds * qr[x];
          double back[MODELC_RT_FLASH_MAX_HEAD];
          rotate(p, raw, j, -1, back);
          for (int64_t x = 0; x < d; x++) r.dk[off(p, b, g, p->kv_h, j) + x] += back[x];
        }
        rotate(p, dqr, i, -1, raw);
        for (int64_t x = 0; x < d; x++) r.dq[qo + x] = raw[x];
      }
    }
  free(kr), free(pr), free(dp);
  return r;
}

static void close_to(const float *got, const double *want, int64_t n, double tol, const char *what,
                     int config) {
  double scale = 0;
  for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
  for (int64_t i = 0; i < n; i++)
    ck_assert_msg(fabs(got[i] - want[i]) <= tol * fmax(scale, 1e-3),
                  "config %d: %s[%lld] = %.9g, want %.9g", config, what, (long long)i,
                  (double)got[i], want[i]);
}

static const modelc_rt_flash configs[] = {
    /* b, h, kv_h, t, d, causal, bthd, window, global, scale, rope */
    {2, 2, 2, 37, 8, 0, 0, 0, 0, 0.35f, 0},       /* full, one partial block */
    {1, 3, 3, 130, 16, 1, 0, 0, 0, 0.25f, 0},     /* causal, 3 query blocks */
    {1, 4, 2, 150, 12, 1, 1, 20, 3, 0.3f, 500},   /* causal window + global, GQA, rope, bthd */
    {2, 2, 1, 97, 10, 0, 1, 7, 0, 0.3f, 0},       /* two-sided window, MQA */
    {1, 2, 2, 200, 8, 0, 0, 70, 5, 0.3f, 10000},  /* window wider than a block, global */
    {1, 1, 1, 5, 7, 1, 1, 2, 2, 0.4f, 100},       /* tiny, odd head size with rope */
};

START_TEST(matches_plain_attention) {
  int c = _i;
  const modelc_rt_flash *p = &configs[c];
  rng_state = 0x1234567ull + (uint64_t)c;
  int64_t nq = p->b * p->h * p->t * p->d, nk = p->b * p->kv_h * p->t * p->d;
  float *q = randoms(nq, 1.5f), *k = randoms(nk, 1.5f), *v = randoms(nk, 1.0f);
  float *dout = randoms(nq, 1.0f);
  float *out = malloc(sizeof(float) * (size_t)nq), *lse = malloc(sizeof(float) * (size_t)(p->b * p->h * p->t));
  float *dq = malloc(sizeof(float) * (size_t)nq), *dk = malloc(sizeof(float) * (size_t)nk);
  float *dv = malloc(sizeof(float) * (size_t)nk);
  ck_assert_int_eq(modelc_rt_flash_attention(out, lse, q, k, v, p), 0);
  ck_assert_int_eq(modelc_rt_flash_attention_grad(dq, dk, dv, q, k, v, out, lse, dout, p), 0);
  reference r = naive(p, q, k, v, dout);
  close_to(out, r.out, nq, 2e-6, "out", c);
  close_to(lse, r.lse, p->b * p->h * p->t, 2e-6, "lse", c);
  close_to(dq, r.dq, nq, 1e-5, "dq", c);
  close_to(dk, r.dk, nk, 1e-5, "dk", c);
  close_to(dv, r.dv, nk, 1e-5, "dv", c);
  free(q), free(k), free(v), free(dout), free(out), free(lse), free(dq), free(dk), free(dv);
  free(r.out), free(r.lse), free(r.dq), free(r.dk), free(r.dv);
}
END_TEST

START_TEST(rejects_what_it_cannot_do) {
  modelc_rt_flash p = {1, 3, 2, 4, 8, 0, 0, 0, 0, 1.0f, 0}; /* 3 heads over 2 kv heads */
  float x[3 * 4 * 8] = {0}, l[12];
  ck_assert_int_eq(modelc_rt_flash_attention(x, l, x, x, x, &p), -1);
  p.kv_h = 3;
  p.d = MODELC_RT_FLASH_MAX_HEAD + 1;
  ck_assert_int_eq(modelc_rt_flash_attention(x, l, x, x, x, &p), -1);
}
END_TEST

START_TEST(nan_propagates) {
  modelc_rt_flash p = {1, 1, 1, 3, 4, 1, 0, 0, 0, 0.5f, 0};
  float q[12], k[12], v[12], out[12], lse[3];
  for (int i = 0; i < 12; i++) q[i] = k[i] = v[i] = 0.1f * (float)i;
  k[4] = NAN; /* key 1: rows 1 and 2 see it, row 0 does not */
  ck_assert_int_eq(modelc_rt_flash_attention(out, lse, q, k, v, &p), 0);
  ck_assert(!isnan(out[0]));
  ck_assert(isnan(out[4]) && isnan(out[8]));
}
END_TEST

int main(void) {
  Suite *s = suite_create("rt_attention");
  TCase *tc = tcase_create("flash");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, matches_plain_attention, 0, (int)(sizeof configs / sizeof configs[0]));
  tcase_add_test(tc, rejects_what_it_cannot_do);
  tcase_add_test(tc, nan_propagates);
  suite_add_tcase(s, tc);
  SRunner *r = srunner_create(s);
  srunner_run_all(r, CK_NORMAL);
  int failed = srunner_ntests_failed(r);
  srunner_free(r);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
