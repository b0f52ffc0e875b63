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
 * The tile products (S = Qs K^T, P V, P^T dO, dO V^T, dS^T Qs, dS K) are
 * GEMMs through modelc_rt_gemm (one thread each inside the parallel
 * loop; k, v and dout rows are read in place with their row stride);
 * the row work between them vectorises, exp included
 * (modelc_rt_exp_neg). */
#include "modelc_rt.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#define FA_PARALLEL_FOR _Pragma("omp parallel for schedule(dynamic, 1)")
#else
#define FA_PARALLEL_FOR
#endif

enum { FA_BQ = 64, FA_BK = 128, FA_MAXD = MODELC_RT_FLASH_MAX_HEAD };

typedef struct fa_ctx {
  const modelc_rt_flash *p;
  int64_t group;                 /* query heads per key/value head */
  int64_t q_row, kv_row;         /* element distance between rows t and t+1 */
  const modelc_rt_real *cs, *sn; /* rope: [T, hd/2] tables, or NULL */
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
static void fa_rotate(const fa_ctx *c, modelc_rt_real *dst, const modelc_rt_real *src, int64_t t,
                      modelc_rt_real sign) {
  int64_t d = c->p->d, h = d / 2;
  if (!c->cs) {
    memcpy(dst, src, (size_t)d * sizeof *dst);
    return;
  }
  const modelc_rt_real *cs = c->cs + t * h, *sn = c->sn + t * h;
  for (int64_t i = 0; i < h; i++) {
    modelc_rt_real lo = src[i], hi = src[i + h], s = sign * sn[i];
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
static void fa_load_q(const fa_ctx *c, modelc_rt_real *qs, const modelc_rt_real *q, int64_t b,
                      int64_t h, int64_t i0, int64_t n) {
  const modelc_rt_flash *p = c->p;
  for (int64_t r = 0; r < n; r++) {
    modelc_rt_real *row = qs + r * p->d;
    fa_rotate(c, row, q + fa_off(c, b, h, p->h, i0 + r), i0 + r, 1.0f);
    for (int64_t k = 0; k < p->d; k++) row[k] *= p->scale;
  }
}

/* Rows [j0, j0+n) of k for head kvh: a pointer into k with its row
 * stride, or, with rope, rotated into kr [n][d]. */
static const modelc_rt_real *fa_keys(const fa_ctx *c, modelc_rt_real *kr, const modelc_rt_real *k,
                                     int64_t b, int64_t kvh, int64_t j0, int64_t n, int64_t *ld) {
  const modelc_rt_flash *p = c->p;
  if (!c->cs) {
    *ld = c->kv_row;
    return k + fa_off(c, b, kvh, p->kv_h, j0);
  }
  for (int64_t j = 0; j < n; j++)
    fa_rotate(c, kr + j * p->d, k + fa_off(c, b, kvh, p->kv_h, j0 + j), j0 + j, 1.0f);
  *ld = p->d;
  return kr;
}

/* Masked entries of the tile s [nq][FA_BK] (rows i0.., keys j0..) to
 * -inf. Tiles wholly inside the allowed region (all four corners allowed
 * and, with a window, every pair within it) skip the per-entry test. */
static void fa_mask_tile(const modelc_rt_flash *p, modelc_rt_real *s, int64_t i0, int64_t nq,
                         int64_t j0, int64_t nk) {
  int64_t i1 = i0 + nq - 1, j1 = j0 + nk - 1;
  if (fa_allowed(p, i0, j0) && fa_allowed(p, i0, j1) && fa_allowed(p, i1, j0) &&
      fa_allowed(p, i1, j1) && (p->window == 0 || (i1 - j0 < p->window && j1 - i0 < p->window)))
    return;
  for (int64_t r = 0; r < nq; r++) {
    /* row i sees the keys [lo, hi] and, beyond a window, those below g */
    int64_t i = i0 + r, lo = 0, hi = p->causal ? i : p->t - 1, g = 0;
    if (p->window > 0 && i >= p->global) {
      lo = i - p->window + 1 > 0 ? i - p->window + 1 : 0;
      if (!p->causal) hi = i + p->window - 1 < p->t - 1 ? i + p->window - 1 : p->t - 1;
      g = p->global;
    }
    modelc_rt_real *row = s + r * FA_BK;
    for (int64_t j = 0; j < nk; j++) {
      int64_t key = j0 + j;
      int seen = (key >= lo && key <= hi) || key < g;
      row[j] = seen ? row[j] : -INFINITY;
    }
  }
}

/* One block of query rows of head h: the online softmax over the key
 * blocks it may see, two GEMMs per key block (S = Qs K^T, acc += P V). */
/* The online softmax of one query block's rows [r0, r1) (block row r is
 * query i0 + r) over the key ranges [lo, hi) in r: scores, running max m
 * and sum l, and the accumulated P V in acc. */
static void fa_forward_rows(const fa_ctx *c, const modelc_rt_real *qs, modelc_rt_real *kr,
                            modelc_rt_real *s, modelc_rt_real *acc, modelc_rt_real *m,
                            modelc_rt_real *l, const modelc_rt_real *k, const modelc_rt_real *v,
                            int64_t b, int64_t kvh, int64_t i0, int64_t r0, int64_t r1,
                            const int64_t *ranges, int count) {
  const modelc_rt_flash *p = c->p;
  int64_t d = p->d, nq = r1 - r0;
  qs += r0 * d, s += r0 * FA_BK, acc += r0 * d, m += r0, l += r0;
  for (int g = 0; g < count; g++)
    for (int64_t j0 = ranges[2 * g]; j0 < ranges[2 * g + 1]; j0 += FA_BK) {
      int64_t nk = ranges[2 * g + 1] - j0 < FA_BK ? ranges[2 * g + 1] - j0 : FA_BK, ldk;
      const modelc_rt_real *kp = fa_keys(c, kr, k, b, kvh, j0, nk, &ldk);
      modelc_rt_gemm(0, 1, nq, nk, d, 1.0f, qs, d, kp, ldk, 0.0f, s, FA_BK);
      fa_mask_tile(p, s, i0 + r0, nq, j0, nk);
      for (int64_t r = 0; r < nq; r++) {
        modelc_rt_real *sr = s + r * FA_BK, mx = m[r];
        for (int64_t j = 0; j < nk; j++) mx = sr[j] > mx ? sr[j] : mx;
        if (mx == -INFINITY) { /* nothing visible yet: P = 0 */
          memset(sr, 0, sizeof(modelc_rt_real) * (size_t)nk);
          continue;
        }
        for (int64_t j = 0; j < nk; j++)
          sr[j] = sr[j] == -INFINITY ? 0.0f : modelc_rt_exp_neg(sr[j] - mx);
        modelc_rt_real sum = 0.0f;
        for (int64_t j = 0; j < nk; j++) sum += sr[j];
        modelc_rt_real corr = m[r] == -INFINITY ? 0.0f : modelc_rt_exp_neg(m[r] - mx);
        l[r] = l[r] * corr + sum;
        m[r] = mx;
        if (corr != 1.0f)
          for (int64_t x = 0; x < d; x++) acc[r * d + x] *= corr;
      }
      modelc_rt_gemm(0, 0, nq, d, nk, 1.0f, s, FA_BK, v + fa_off(c, b, kvh, p->kv_h, j0), c->kv_row,
                     1.0f, acc, d);
    }
}

static void fa_forward_block(const fa_ctx *c, modelc_rt_real *out, modelc_rt_real *lse,
                             const modelc_rt_real *q, const modelc_rt_real *k,
                             const modelc_rt_real *v, int64_t b, int64_t h, int64_t i0) {
  const modelc_rt_flash *p = c->p;
  int64_t d = p->d, nq = p->t - i0 < FA_BQ ? p->t - i0 : FA_BQ, kvh = h / c->group;
  modelc_rt_real qs[FA_BQ * FA_MAXD], kr[FA_BK * FA_MAXD], s[FA_BQ * FA_BK], acc[FA_BQ * FA_MAXD];
  modelc_rt_real m[FA_BQ], l[FA_BQ];
  fa_load_q(c, qs, q, b, h, i0, nq);
  for (int64_t r = 0; r < nq; r++) m[r] = -INFINITY, l[r] = 0.0f;
  memset(acc, 0, sizeof(modelc_rt_real) * (size_t)(nq * d));
  int64_t ranges[4];
  /* With a window, a block holding global query rows runs those over
   * every key and its other rows over their window only (not the whole
   * block over every key). */
  int64_t split = p->window > 0 && i0 < p->global ? p->global - i0 : 0;
  if (split > nq) split = nq;
  if (split > 0) {
    int count = fa_key_ranges(p, i0, i0 + split, ranges);
    fa_forward_rows(c, qs, kr, s, acc, m, l, k, v, b, kvh, i0, 0, split, ranges, count);
  }
  if (split < nq) {
    int count = fa_key_ranges(p, i0 + split, i0 + nq, ranges);
    fa_forward_rows(c, qs, kr, s, acc, m, l, k, v, b, kvh, i0, split, nq, ranges, count);
  }
  for (int64_t r = 0; r < nq; r++) {
    modelc_rt_real *o = out + fa_off(c, b, h, p->h, i0 + r);
    modelc_rt_real inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    for (int64_t x = 0; x < d; x++) o[x] = acc[r * d + x] * inv;
    lse[(b * p->h + h) * p->t + i0 + r] = l[r] > 0.0f ? m[r] + modelc_rt_log(l[r]) : INFINITY;
  }
}

/* Rope tables cos/sin [T, hd/2] as modelc_rt_rope computes them; NULL
 * when there is no rope or no memory (then *failed is set). */
static modelc_rt_real *fa_rope_tables(const modelc_rt_flash *p, int *failed) {
  *failed = 0;
  if (p->rope <= 0.0f) return NULL;
  int64_t h = p->d / 2;
  modelc_rt_real *t = malloc(sizeof(modelc_rt_real) * (size_t)(2 * p->t * h + 1));
  if (!t) {
    *failed = 1;
    return NULL;
  }
  for (int64_t i = 0; i < h; i++) {
    double freq = pow((double)p->rope, -2.0 * (double)i / (double)p->d);
    for (int64_t pos = 0; pos < p->t; pos++) {
      double a = (double)pos * freq;
      t[pos * h + i] = (modelc_rt_real)cos(a);
      t[p->t * h + pos * h + i] = (modelc_rt_real)sin(a);
    }
  }
  return t;
}

static int fa_setup(fa_ctx *c, const modelc_rt_flash *p, modelc_rt_real **tables) {
  int failed;
  if (p->d > FA_MAXD || p->d < 1 || p->kv_h < 1 || p->h % p->kv_h != 0) return -1;
  *tables = fa_rope_tables(p, &failed);
  if (failed) return -1;
  *c = (fa_ctx){
      p, p->h / p->kv_h, p->bthd ? p->h * p->d : p->d, p->bthd ? p->kv_h * p->d : p->d, NULL, NULL};
  if (*tables) c->cs = *tables, c->sn = *tables + p->t * (p->d / 2);
  return 0;
}

int modelc_rt_flash_attention(modelc_rt_real *out, modelc_rt_real *lse, const modelc_rt_real *q,
                              const modelc_rt_real *k, const modelc_rt_real *v,
                              const modelc_rt_flash *p) {
  fa_ctx c;
  modelc_rt_real *tables;
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

/* Query rows [i0, i0+nq) of head h: qs (rotated, scaled), a pointer to
 * their dout rows (row stride q_row), lse and D = rowsum(dout * out). */
typedef struct fa_rows {
  modelc_rt_real qs[FA_BQ * FA_MAXD];
  const modelc_rt_real *dout;
  modelc_rt_real lse[FA_BQ], dsum[FA_BQ];
} fa_rows;

static void fa_load_rows(const fa_ctx *c, fa_rows *w, const modelc_rt_real *q,
                         const modelc_rt_real *out, const modelc_rt_real *lse,
                         const modelc_rt_real *dout, int64_t b, int64_t h, int64_t i0, int64_t nq) {
  const modelc_rt_flash *p = c->p;
  int64_t d = p->d;
  fa_load_q(c, w->qs, q, b, h, i0, nq);
  w->dout = dout + fa_off(c, b, h, p->h, i0);
  for (int64_t r = 0; r < nq; r++) {
    int64_t off = fa_off(c, b, h, p->h, i0 + r);
    double sum = 0.0;
    for (int64_t x = 0; x < d; x++) sum += (double)dout[off + x] * out[off + x];
    w->dsum[r] = (modelc_rt_real)sum;
    w->lse[r] = lse[(b * p->h + h) * p->t + i0 + r];
  }
}

/* The tile's probabilities P (into s) and dS = P (dP - D) (into ds), for
 * rows w against keys kp (row stride ldk) and their values vp. */
static void fa_tile_grads(const fa_ctx *c, const fa_rows *w, const modelc_rt_real *kp, int64_t ldk,
                          const modelc_rt_real *vp, modelc_rt_real *s, modelc_rt_real *ds,
                          int64_t i0, int64_t nq, int64_t j0, int64_t nk) {
  const modelc_rt_flash *p = c->p;
  modelc_rt_gemm(0, 1, nq, nk, p->d, 1.0f, w->qs, p->d, kp, ldk, 0.0f, s, FA_BK);
  fa_mask_tile(p, s, i0, nq, j0, nk);
  modelc_rt_gemm(0, 1, nq, nk, p->d, 1.0f, w->dout, c->q_row, vp, c->kv_row, 0.0f, ds, FA_BK);
  for (int64_t r = 0; r < nq; r++) {
    modelc_rt_real *sr = s + r * FA_BK, *dr = ds + r * FA_BK, lr = w->lse[r], dsum = w->dsum[r];
    for (int64_t j = 0; j < nk; j++) {
      modelc_rt_real pj = sr[j] != -INFINITY ? modelc_rt_exp_neg(sr[j] - lr) : 0.0f;
      sr[j] = pj;
      dr[j] = pj * (dr[j] - dsum);
    }
  }
}

/* dk, dv of keys [j0, j0+nk) of head kvh: every query head of its group,
 * every query block that sees them (dV += P^T dO, dK += dS^T Qs). */
static void fa_backward_keys(const fa_ctx *c, modelc_rt_real *dk, modelc_rt_real *dv,
                             const modelc_rt_real *q, const modelc_rt_real *k,
                             const modelc_rt_real *v, const modelc_rt_real *out,
                             const modelc_rt_real *lse, const modelc_rt_real *dout, int64_t b,
                             int64_t kvh, int64_t j0) {
  const modelc_rt_flash *p = c->p;
  int64_t d = p->d, nk = p->t - j0 < FA_BK ? p->t - j0 : FA_BK, ldk;
  modelc_rt_real kr[FA_BK * FA_MAXD], s[FA_BQ * FA_BK], ds[FA_BQ * FA_BK];
  modelc_rt_real dka[FA_BK * FA_MAXD], dva[FA_BK * FA_MAXD];
  fa_rows w;
  const modelc_rt_real *kp = fa_keys(c, kr, k, b, kvh, j0, nk, &ldk);
  const modelc_rt_real *vp = v + fa_off(c, b, kvh, p->kv_h, j0);
  memset(dka, 0, sizeof(modelc_rt_real) * (size_t)(nk * d));
  memset(dva, 0, sizeof(modelc_rt_real) * (size_t)(nk * d));
  int64_t ranges[4];
  int count = fa_query_ranges(p, j0, j0 + nk, ranges);
  for (int64_t h = kvh * c->group; h < (kvh + 1) * c->group; h++)
    for (int g = 0; g < count; g++)
      for (int64_t i0 = ranges[2 * g]; i0 < ranges[2 * g + 1]; i0 += FA_BQ) {
        int64_t nq = ranges[2 * g + 1] - i0 < FA_BQ ? ranges[2 * g + 1] - i0 : FA_BQ;
        fa_load_rows(c, &w, q, out, lse, dout, b, h, i0, nq);
        fa_tile_grads(c, &w, kp, ldk, vp, s, ds, i0, nq, j0, nk);
        modelc_rt_gemm(1, 0, nk, d, nq, 1.0f, s, FA_BK, w.dout, c->q_row, 1.0f, dva, d);
        modelc_rt_gemm(1, 0, nk, d, nq, 1.0f, ds, FA_BK, w.qs, d, 1.0f, dka, d);
      }
  for (int64_t j = 0; j < nk; j++) {
    int64_t off = fa_off(c, b, kvh, p->kv_h, j0 + j);
    fa_rotate(c, dk + off, dka + j * d, j0 + j, -1.0f);
    memcpy(dv + off, dva + j * d, (size_t)d * sizeof(modelc_rt_real));
  }
}

/* dq of query rows [i0, i0+FA_BQ) of head h: dQ += dS K, times scale. */
static void fa_backward_queries(const fa_ctx *c, modelc_rt_real *dq, const modelc_rt_real *q,
                                const modelc_rt_real *k, const modelc_rt_real *v,
                                const modelc_rt_real *out, const modelc_rt_real *lse,
                                const modelc_rt_real *dout, int64_t b, int64_t h, int64_t i0) {
  const modelc_rt_flash *p = c->p;
  int64_t d = p->d, nq = p->t - i0 < FA_BQ ? p->t - i0 : FA_BQ, kvh = h / c->group;
  modelc_rt_real kr[FA_BK * FA_MAXD], s[FA_BQ * FA_BK], ds[FA_BQ * FA_BK], dqa[FA_BQ * FA_MAXD];
  fa_rows w;
  fa_load_rows(c, &w, q, out, lse, dout, b, h, i0, nq);
  memset(dqa, 0, sizeof(modelc_rt_real) * (size_t)(nq * d));
  int64_t ranges[4];
  int count = fa_key_ranges(p, i0, i0 + nq, ranges);
  for (int g = 0; g < count; g++)
    for (int64_t j0 = ranges[2 * g]; j0 < ranges[2 * g + 1]; j0 += FA_BK) {
      int64_t nk = ranges[2 * g + 1] - j0 < FA_BK ? ranges[2 * g + 1] - j0 : FA_BK, ldk;
      const modelc_rt_real *kp = fa_keys(c, kr, k, b, kvh, j0, nk, &ldk);
      fa_tile_grads(c, &w, kp, ldk, v + fa_off(c, b, kvh, p->kv_h, j0), s, ds, i0, nq, j0, nk);
      modelc_rt_gemm(0, 0, nq, d, nk, p->scale, ds, FA_BK, kp, ldk, 1.0f, dqa, d);
    }
  for (int64_t r = 0; r < nq; r++)
    fa_rotate(c, dq + fa_off(c, b, h, p->h, i0 + r), dqa + r * d, i0 + r, -1.0f);
}

int modelc_rt_flash_attention_grad(modelc_rt_real *dq, modelc_rt_real *dk, modelc_rt_real *dv,
                                   const modelc_rt_real *q, const modelc_rt_real *k,
                                   const modelc_rt_real *v, const modelc_rt_real *out,
                                   const modelc_rt_real *lse, const modelc_rt_real *dout,
                                   const modelc_rt_flash *p) {
  fa_ctx c;
  modelc_rt_real *tables;
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
