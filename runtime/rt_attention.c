/* rt_attention.c: flash attention on the CPU, forward and backward.
 *
 * softmax(q k^T * scale + mask) v for every (batch, head), a block of
 * FA_BQ query rows at a time against blocks of FA_BK keys, with the
 * online softmax (running max m and sum l per row, the accumulator
 * rescaled when the max grows): the T x T scores are never stored, only
 * an FA_BQ x FA_BK tile per thread. Only key blocks that some row of the
 * query block may see are visited, so a sliding window costs O(T * window)
 * and causal attention half of full.
 *
 * The backward (FlashAttention-2's) recomputes the probabilities of each
 * tile from the row's log-sum-exp saved by the forward, in two passes so
 * that no two threads write the same row and the result does not depend
 * on the thread count: one over key blocks for dk and dv, one over query
 * blocks for dq. D = rowsum(dout * out) replaces the softmax's row sum.
 *
 * Layouts: "bhtd" tensors [B,H,T,hd]; "bthd" [B,T,H,hd] (rows of one head
 * H*hd apart). GQA: query head h reads key/value head h / (H/KV). RoPE
 * (rotate-half, as modelc_rt_rope) is applied to q and k rows as they
 * are read, and the gradients are rotated back before they are written.
 *
 * Inner loops run along a tile row (FA_BK keys or hd features) with no
 * reduction inside, so they vectorise at -O2; exp is a polynomial that
 * vectorises too (fa_exp, about 1 ulp). */
#include "modelc_rt.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#define FA_PARALLEL_FOR _Pragma("omp parallel for schedule(dynamic, 1)")
#else
#define FA_PARALLEL_FOR
#endif

enum { FA_BQ = 32, FA_BK = 64, FA_MAXD = MODELC_RT_FLASH_MAX_HEAD };

/* e^x for x <= 0 (larger x are not needed: scores minus their row max):
 * x = n ln2 + r, |r| <= ln2/2, e^r by its Taylor series to r^6, times
 * 2^n built in the exponent bits. Below -87 it returns e^-87 (~1e-38):
 * callers zero masked entries themselves. NaN stays NaN. */
static inline float fa_exp(float x) {
  float c = x < -87.0f ? -87.0f : x;
  c = c == c ? c : 0.0f; /* NaN: computed on 0, returned as NaN below */
  float n = floorf(c * 1.44269504f + 0.5f);
  float r = c - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  float p = 1.3888889e-3f;
  p = p * r + 8.3333333e-3f;
  p = p * r + 4.1666667e-2f;
  p = p * r + 1.6666667e-1f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return x == x ? p * scale : x;
}

typedef struct fa_ctx {
  const modelc_rt_flash *p;
  int64_t group;        /* query heads per key/value head */
  const float *cs, *sn; /* rope: [T, hd/2] tables, or NULL */
} fa_ctx;

/* Offset of row t of head h of batch b. */
static inline int64_t fa_off(const fa_ctx *c, int64_t b, int64_t h, int64_t heads, int64_t t) {
  const modelc_rt_flash *p = c->p;
  if (p->bthd) return ((b * p->t + t) * heads + h) * p->d;
  return ((b * heads + h) * p->t + t) * p->d;
}

static inline int fa_allowed(const modelc_rt_flash *p, int64_t i, int64_t j) {
  if (p->causal && j > i) return 0;
  if (p->window == 0) return 1;
  int64_t dist = i > j ? i - j : j - i;
  return dist < p->window || i < p->global || j < p->global;
}

/* dst = src rotated by position t (sign +1) or back (-1); copies when
 * there is no rope. */
static void fa_rotate(const fa_ctx *c, float *dst, const float *src, int64_t t, float sign) {
  int64_t d = c->p->d, h = d / 2;
  if (!c->cs) {
    memcpy(dst, src, (size_t)d * sizeof *dst);
    return;
  }
  const float *cs = c->cs + t * h, *sn = c->sn + t * h;
  for (int64_t i = 0; i < h; i++) {
    float lo = src[i], hi = src[i + h], s = sign * sn[i];
    dst[i] = lo * cs[i] - hi * s;
    dst[i + h] = hi * cs[i] + lo * s;
  }
  if (d % 2) dst[d - 1] = src[d - 1];
}

/* Up to two key ranges [lo, hi) that rows [i0, i1) may see: the global
 * keys, and the window around the block (or everything up to the
 * diagonal). Returns the count. */
static int fa_key_ranges(const modelc_rt_flash *p, int64_t i0, int64_t i1, int64_t r[4]) {
  int64_t t = p->t, end = p->causal ? i1 : t;
  if (p->window == 0 || i0 < p->global) {
    r[0] = 0, r[1] = end;
    return 1;
  }
  int64_t lo = i0 - p->window + 1 > 0 ? i0 - p->window + 1 : 0;
  int64_t hi = p->causal ? i1 : (i1 + p->window - 1 < t ? i1 + p->window - 1 : t);
  int64_t g = p->global < lo ? p->global : lo;
  if (g == 0) {
    r[0] = lo, r[1] = hi;
    return 1;
  }
  if (g >= lo) {
    r[0] = 0, r[1] = hi;
    return 1;
  }
  r[0] = 0, r[1] = g, r[2] = lo, r[3] = hi;
  return 2;
}

/* The query rows that keys [j0, j1) may be seen by, as ranges. */
static int fa_query_ranges(const modelc_rt_flash *p, int64_t j0, int64_t j1, int64_t r[4]) {
  int64_t t = p->t, start = p->causal ? j0 : 0;
  if (p->window == 0 || j0 < p->global) {
    r[0] = start, r[1] = t;
    return 1;
  }
  int64_t lo = j0 - p->window + 1 > start ? j0 - p->window + 1 : start;
  int64_t hi = j1 + p->window - 1 < t ? j1 + p->window - 1 : t;
  /* global rows see every key (the earlier ones only, when causal) */
  int64_t g = p->global < lo ? p->global : lo;
  if (p->causal || g == 0) { /* causal: global rows precede j0 and see nothing here */
    r[0] = lo, r[1] = hi;
    return 1;
  }
  if (g >= lo) {
    r[0] = 0, r[1] = hi;
    return 1;
  }
  r[0] = 0, r[1] = g, r[2] = lo, r[3] = hi;
  return 2;
}

/* Loads rows [i0, i0+n) of q, rotated and scaled, into qs [n][d]. */
static void fa_load_q(const fa_ctx *c, float *qs, const float *q, int64_t b, int64_t h, int64_t i0,
                      int64_t n) {
  const modelc_rt_flash *p = c->p;
  for (int64_t r = 0; r < n; r++) {
    float *row = qs + r * p->d;
    fa_rotate(c, row, q + fa_off(c, b, h, p->h, i0 + r), i0 + r, 1.0f);
    for (int64_t k = 0; k < p->d; k++) row[k] *= p->scale;
  }
}

/* Keys [j0, j0+n) of head kvh: kt [d][FA_BK] transposed (rotated), and
 * when wanted the rows kr [n][d] (rotated) and vt [d][FA_BK]. Columns
 * past n are zero. */
static void fa_load_k(const fa_ctx *c, float *kt, float *kr, float *vt, const float *k,
                      const float *v, int64_t b, int64_t kvh, int64_t j0, int64_t n) {
  const modelc_rt_flash *p = c->p;
  int64_t d = p->d;
  float row[FA_MAXD];
  for (int64_t j = 0; j < FA_BK; j++) {
    if (j < n) {
      int64_t off = fa_off(c, b, kvh, p->kv_h, j0 + j);
      fa_rotate(c, row, k + off, j0 + j, 1.0f);
      if (kr) memcpy(kr + j * d, row, (size_t)d * sizeof *row);
      for (int64_t x = 0; x < d; x++) kt[x * FA_BK + j] = row[x];
      if (vt)
        for (int64_t x = 0; x < d; x++) vt[x * FA_BK + j] = v[off + x];
    } else {
      for (int64_t x = 0; x < d; x++) kt[x * FA_BK + j] = 0.0f;
      if (vt)
        for (int64_t x = 0; x < d; x++) vt[x * FA_BK + j] = 0.0f;
    }
  }
}

/* s [nq][FA_BK] = a [nq][d] . bt [d][FA_BK] */
static void fa_tile_product(float *restrict s, const float *restrict a, const float *restrict bt,
                            int64_t nq, int64_t d) {
  for (int64_t r = 0; r < nq; r++) {
    float *restrict sr = s + r * FA_BK;
    for (int64_t j = 0; j < FA_BK; j++) sr[j] = 0.0f;
    for (int64_t x = 0; x < d; x++) {
      float av = a[r * d + x];
      const float *restrict br = bt + x * FA_BK;
      for (int64_t j = 0; j < FA_BK; j++) sr[j] += av * br[j];
    }
  }
}

/* Masked entries of the tile (rows i0.., keys j0..) to -inf. Tiles
 * wholly inside the allowed region (all four corners allowed and, with a
 * window, every pair within it) skip the per-entry test. */
static void fa_mask_tile(const modelc_rt_flash *p, float *s, int64_t i0, int64_t nq, int64_t j0,
                         int64_t nk) {
  int64_t i1 = i0 + nq - 1, j1 = j0 + nk - 1;
  if (fa_allowed(p, i0, j0) && fa_allowed(p, i0, j1) && fa_allowed(p, i1, j0) &&
      fa_allowed(p, i1, j1) && (p->window == 0 || (i1 - j0 < p->window && j1 - i0 < p->window)))
    return;
  for (int64_t r = 0; r < nq; r++)
    for (int64_t j = 0; j < nk; j++)
      if (!fa_allowed(p, i0 + r, j0 + j)) s[r * FA_BK + j] = -INFINITY;
}

static void fa_forward_block(const fa_ctx *c, float *out, float *lse, const float *q,
                             const float *k, const float *v, int64_t b, int64_t h, int64_t i0) {
  const modelc_rt_flash *p = c->p;
  int64_t d = p->d, nq = p->t - i0 < FA_BQ ? p->t - i0 : FA_BQ, kvh = h / c->group;
  float qs[FA_BQ * FA_MAXD], kt[FA_MAXD * FA_BK], s[FA_BQ * FA_BK], acc[FA_BQ * FA_MAXD];
  float m[FA_BQ], l[FA_BQ];
  fa_load_q(c, qs, q, b, h, i0, nq);
  for (int64_t r = 0; r < nq; r++) m[r] = -INFINITY, l[r] = 0.0f;
  memset(acc, 0, sizeof(float) * (size_t)(nq * d));
  int64_t ranges[4];
  int count = fa_key_ranges(p, i0, i0 + nq, ranges);
  for (int g = 0; g < count; g++)
    for (int64_t j0 = ranges[2 * g]; j0 < ranges[2 * g + 1]; j0 += FA_BK) {
      int64_t nk = ranges[2 * g + 1] - j0 < FA_BK ? ranges[2 * g + 1] - j0 : FA_BK;
      fa_load_k(c, kt, NULL, NULL, k, v, b, kvh, j0, nk);
      fa_tile_product(s, qs, kt, nq, d);
      fa_mask_tile(p, s, i0, nq, j0, nk);
      for (int64_t r = 0; r < nq; r++) {
        float *sr = s + r * FA_BK, mx = m[r];
        for (int64_t j = 0; j < nk; j++) mx = sr[j] > mx ? sr[j] : mx;
        if (mx == -INFINITY) continue; /* nothing visible yet */
        for (int64_t j = 0; j < nk; j++) sr[j] = sr[j] == -INFINITY ? 0.0f : fa_exp(sr[j] - mx);
        float sum = 0.0f;
        for (int64_t j = 0; j < nk; j++) sum += sr[j];
        float corr = m[r] == -INFINITY ? 0.0f : fa_exp(m[r] - mx);
        l[r] = l[r] * corr + sum;
        m[r] = mx;
        float *restrict ar = acc + r * d;
        if (corr != 1.0f)
          for (int64_t x = 0; x < d; x++) ar[x] *= corr;
        for (int64_t j = 0; j < nk; j++) {
          float pj = sr[j];
          if (pj == 0.0f) continue;
          const float *restrict vr = v + fa_off(c, b, kvh, p->kv_h, j0 + j);
          for (int64_t x = 0; x < d; x++) ar[x] += pj * vr[x];
        }
      }
    }
  for (int64_t r = 0; r < nq; r++) {
    float *o = out + fa_off(c, b, h, p->h, i0 + r);
    float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    for (int64_t x = 0; x < d; x++) o[x] = acc[r * d + x] * inv;
    lse[(b * p->h + h) * p->t + i0 + r] = l[r] > 0.0f ? m[r] + logf(l[r]) : INFINITY;
  }
}

/* Rope tables cos/sin [T, hd/2] as modelc_rt_rope computes them; NULL
 * when there is no rope or no memory (then *failed is set). */
static float *fa_rope_tables(const modelc_rt_flash *p, int *failed) {
  *failed = 0;
  if (p->rope <= 0.0f) return NULL;
  int64_t h = p->d / 2;
  float *t = malloc(sizeof(float) * (size_t)(2 * p->t * h + 1));
  if (!t) {
    *failed = 1;
    return NULL;
  }
  for (int64_t i = 0; i < h; i++) {
    double freq = pow((double)p->rope, -2.0 * (double)i / (double)p->d);
    for (int64_t pos = 0; pos < p->t; pos++) {
      double a = (double)pos * freq;
      t[pos * h + i] = (float)cos(a);
      t[p->t * h + pos * h + i] = (float)sin(a);
    }
  }
  return t;
}

static int fa_setup(fa_ctx *c, const modelc_rt_flash *p, float **tables) {
  int failed;
  if (p->d > FA_MAXD || p->d < 1 || p->kv_h < 1 || p->h % p->kv_h != 0) return -1;
  *tables = fa_rope_tables(p, &failed);
  if (failed) return -1;
  *c = (fa_ctx){p, p->h / p->kv_h, NULL, NULL};
  if (*tables) c->cs = *tables, c->sn = *tables + p->t * (p->d / 2);
  return 0;
}

int modelc_rt_flash_attention(float *out, float *lse, const float *q, const float *k,
                              const float *v, const modelc_rt_flash *p) {
  fa_ctx c;
  float *tables;
  if (fa_setup(&c, p, &tables) != 0) return -1;
  int64_t blocks = (p->t + FA_BQ - 1) / FA_BQ, tasks = p->b * p->h * blocks;
  FA_PARALLEL_FOR
  for (int64_t task = 0; task < tasks; task++) {
    /* the last query blocks first: under a causal mask they cost most */
    int64_t blk = blocks - 1 - task % blocks, bh = task / blocks;
    fa_forward_block(&c, out, lse, q, k, v, bh / p->h, bh % p->h, blk * FA_BQ);
  }
  free(tables);
  return 0;
}

/* Query rows [i0, i0+nq) of head h: qs (rotated, scaled), their dout
 * rows dor [nq][d], lse and D = rowsum(dout * out). */
typedef struct fa_rows {
  float qs[FA_BQ * FA_MAXD], dor[FA_BQ * FA_MAXD];
  float lse[FA_BQ], dsum[FA_BQ];
} fa_rows;

static void fa_load_rows(const fa_ctx *c, fa_rows *w, const float *q, const float *out,
                         const float *lse, const float *dout, int64_t b, int64_t h, int64_t i0,
                         int64_t nq) {
  const modelc_rt_flash *p = c->p;
  int64_t d = p->d;
  fa_load_q(c, w->qs, q, b, h, i0, nq);
  for (int64_t r = 0; r < nq; r++) {
    int64_t off = fa_off(c, b, h, p->h, i0 + r);
    memcpy(w->dor + r * d, dout + off, (size_t)d * sizeof(float));
    double sum = 0.0;
    for (int64_t x = 0; x < d; x++) sum += (double)dout[off + x] * out[off + x];
    w->dsum[r] = (float)sum;
    w->lse[r] = lse[(b * p->h + h) * p->t + i0 + r];
  }
}

/* The tile's probabilities P (into s) and dS = P (dP - D) (into ds), for
 * rows w against keys kt/vt [j0, j0+nk). */
static void fa_tile_grads(const modelc_rt_flash *p, const fa_rows *w, const float *kt,
                          const float *vt, float *s, float *ds, int64_t i0, int64_t nq, int64_t j0,
                          int64_t nk) {
  fa_tile_product(s, w->qs, kt, nq, p->d);
  fa_mask_tile(p, s, i0, nq, j0, nk);
  fa_tile_product(ds, w->dor, vt, nq, p->d); /* dP */
  for (int64_t r = 0; r < nq; r++) {
    float *sr = s + r * FA_BK, *dr = ds + r * FA_BK, lr = w->lse[r], dsum = w->dsum[r];
    for (int64_t j = 0; j < FA_BK; j++) {
      float pj = j < nk && sr[j] != -INFINITY ? fa_exp(sr[j] - lr) : 0.0f;
      sr[j] = pj;
      dr[j] = pj * (dr[j] - dsum);
    }
  }
}

/* dk, dv of keys [j0, j0+nk) of head kvh: every query head of its group,
 * every query block that sees them. */
static void fa_backward_keys(const fa_ctx *c, float *dk, float *dv, const float *q, const float *k,
                             const float *v, const float *out, const float *lse,
                             const float *dout, int64_t b, int64_t kvh, int64_t j0) {
  const modelc_rt_flash *p = c->p;
  int64_t d = p->d, nk = p->t - j0 < FA_BK ? p->t - j0 : FA_BK;
  float kt[FA_MAXD * FA_BK], vt[FA_MAXD * FA_BK], s[FA_BQ * FA_BK], ds[FA_BQ * FA_BK];
  float dka[FA_BK * FA_MAXD], dva[FA_BK * FA_MAXD];
  fa_rows w;
  fa_load_k(c, kt, NULL, vt, k, v, b, kvh, j0, nk);
  memset(dka, 0, sizeof(float) * (size_t)(nk * d));
  memset(dva, 0, sizeof(float) * (size_t)(nk * d));
  int64_t ranges[4];
  int count = fa_query_ranges(p, j0, j0 + nk, ranges);
  for (int64_t h = kvh * c->group; h < (kvh + 1) * c->group; h++)
    for (int g = 0; g < count; g++)
      for (int64_t i0 = ranges[2 * g]; i0 < ranges[2 * g + 1]; i0 += FA_BQ) {
        int64_t nq = ranges[2 * g + 1] - i0 < FA_BQ ? ranges[2 * g + 1] - i0 : FA_BQ;
        fa_load_rows(c, &w, q, out, lse, dout, b, h, i0, nq);
        fa_tile_grads(p, &w, kt, vt, s, ds, i0, nq, j0, nk);
        for (int64_t r = 0; r < nq; r++)
          for (int64_t j = 0; j < nk; j++) {
            float pj = s[r * FA_BK + j], dj = ds[r * FA_BK + j];
            float *restrict va = dva + j * d, *restrict ka = dka + j * d;
            const float *restrict dor = w.dor + r * d, *restrict qr = w.qs + r * d;
            if (pj != 0.0f)
              for (int64_t x = 0; x < d; x++) va[x] += pj * dor[x];
            if (dj != 0.0f)
              for (int64_t x = 0; x < d; x++) ka[x] += dj * qr[x];
          }
      }
  for (int64_t j = 0; j < nk; j++) {
    int64_t off = fa_off(c, b, kvh, p->kv_h, j0 + j);
    fa_rotate(c, dk + off, dka + j * d, j0 + j, -1.0f);
    memcpy(dv + off, dva + j * d, (size_t)d * sizeof(float));
  }
}

/* dq of query rows [i0, i0+FA_BQ) of head h. */
static void fa_backward_queries(const fa_ctx *c, float *dq, const float *q, const float *k,
                                const float *v, const float *out, const float *lse,
                                const float *dout, int64_t b, int64_t h, int64_t i0) {
  const modelc_rt_flash *p = c->p;
  int64_t d = p->d, nq = p->t - i0 < FA_BQ ? p->t - i0 : FA_BQ, kvh = h / c->group;
  float kt[FA_MAXD * FA_BK], vt[FA_MAXD * FA_BK], kr[FA_BK * FA_MAXD];
  float s[FA_BQ * FA_BK], ds[FA_BQ * FA_BK], dqa[FA_BQ * FA_MAXD];
  fa_rows w;
  fa_load_rows(c, &w, q, out, lse, dout, b, h, i0, nq);
  memset(dqa, 0, sizeof(float) * (size_t)(nq * d));
  int64_t ranges[4];
  int count = fa_key_ranges(p, i0, i0 + nq, ranges);
  for (int g = 0; g < count; g++)
    for (int64_t j0 = ranges[2 * g]; j0 < ranges[2 * g + 1]; j0 += FA_BK) {
      int64_t nk = ranges[2 * g + 1] - j0 < FA_BK ? ranges[2 * g + 1] - j0 : FA_BK;
      fa_load_k(c, kt, kr, vt, k, v, b, kvh, j0, nk);
      fa_tile_grads(p, &w, kt, vt, s, ds, i0, nq, j0, nk);
      for (int64_t r = 0; r < nq; r++)
        for (int64_t j = 0; j < nk; j++) {
          float dj = ds[r * FA_BK + j];
          if (dj == 0.0f) continue;
          float *restrict qa = dqa + r * d;
          const float *restrict krow = kr + j * d;
          for (int64_t x = 0; x < d; x++) qa[x] += dj * krow[x];
        }
    }
  for (int64_t r = 0; r < nq; r++) {
    for (int64_t x = 0; x < d; x++) dqa[r * d + x] *= p->scale;
    fa_rotate(c, dq + fa_off(c, b, h, p->h, i0 + r), dqa + r * d, i0 + r, -1.0f);
  }
}

int modelc_rt_flash_attention_grad(float *dq, float *dk, float *dv, const float *q, const float *k,
                                   const float *v, const float *out, const float *lse,
                                   const float *dout, const modelc_rt_flash *p) {
  fa_ctx c;
  float *tables;
  if (fa_setup(&c, p, &tables) != 0) return -1;
  int64_t kblocks = (p->t + FA_BK - 1) / FA_BK, ktasks = p->b * p->kv_h * kblocks;
  FA_PARALLEL_FOR
  for (int64_t task = 0; task < ktasks; task++) {
    int64_t blk = task % kblocks, bh = task / kblocks;
    fa_backward_keys(&c, dk, dv, q, k, v, out, lse, dout, bh / p->kv_h, bh % p->kv_h, blk * FA_BK);
  }
  int64_t qblocks = (p->t + FA_BQ - 1) / FA_BQ, qtasks = p->b * p->h * qblocks;
  FA_PARALLEL_FOR
  for (int64_t task = 0; task < qtasks; task++) {
    int64_t blk = qblocks - 1 - task % qblocks, bh = task / qblocks;
    fa_backward_queries(&c, dq, q, k, v, out, lse, dout, bh / p->h, bh % p->h, blk * FA_BQ);
  }
  free(tables);
  return 0;
}
