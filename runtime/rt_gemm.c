/* rt_gemm.c: matrix multiply in modelc_rt_real (float; double with
 * MODELC_DOUBLE), C = alpha op(A) op(B) + beta C.
 *
 * Row-major throughout: op(A) is [M,K], op(B) is [K,N], C is [M,N] with
 * row strides lda, ldb, ldc. cblas_sgemm (cblas_dgemm) does the work unless
 * MODELC_NO_BLAS is defined; then a blocked implementation in the
 * Goto style packs op(B) into [KC, NR] column panels and op(A) into
 * [MR, KC] row panels so that a register-tiled micro-kernel streams
 * through both, and OpenMP splits the row blocks.
 *
 * Both paths keep BLAS's contract: beta == 0 overwrites C without
 * reading it (NaN in C does not survive), and k == 0 or alpha == 0
 * only scales C by beta. */
#include "modelc_rt.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#ifndef MODELC_NO_BLAS
#include <cblas.h>
#ifdef MODELC_DOUBLE
#define GEMM_BLAS cblas_dgemm
#else
#define GEMM_BLAS cblas_sgemm
#endif
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

/* C[M,N] *= beta, with beta == 0 writing exact zeros. */
static void gemm_scale_c(int64_t m, int64_t n, modelc_rt_real beta, modelc_rt_real *c,
                         int64_t ldc) {
  for (int64_t i = 0; i < m; i++) {
    modelc_rt_real *row = c + i * ldc;
    if (beta == 0.0f)
      memset(row, 0, (size_t)n * sizeof *row);
    else if (beta != 1.0f)
      for (int64_t j = 0; j < n; j++) row[j] *= beta;
  }
}

/* ---- the blocked fallback ---- */

/* Register tile MR x NR and cache blocks: a [MC, KC] block of A (96 KiB)
 * stays in L2, a [KC, NR] panel of B (16 KiB) in L1. */
enum { GEMM_MR = 4, GEMM_NR = 16, GEMM_MC = 96, GEMM_KC = 256, GEMM_NC = 2048 };

/* Fully unrolled tile loops keep acc in registers (gcc does not unroll
 * them at -O2 by itself; clang does). */
#if defined(__GNUC__) && !defined(__clang__)
#define GEMM_UNROLL _Pragma("GCC unroll 8")
#else
#define GEMM_UNROLL
#endif

typedef struct gemm_args {
  int trans_a, trans_b;
  int64_t m, n, k;
  modelc_rt_real alpha, beta;
  const modelc_rt_real *a, *b;
  int64_t lda, ldb, ldc;
  modelc_rt_real *c;
} gemm_args;

/* Packs op(A)[i0:i0+mc, p0:p0+kc] as ceil(mc/MR) panels [kc, MR], rows
 * past mc zero-filled so the micro-kernel needs no edge case. */
static void gemm_pack_a(modelc_rt_real *dst, const gemm_args *g, int64_t i0, int64_t mc, int64_t p0,
                        int64_t kc) {
  for (int64_t ir = 0; ir < mc; ir += GEMM_MR) {
    int64_t rows = mc - ir < GEMM_MR ? mc - ir : GEMM_MR;
    for (int64_t p = 0; p < kc; p++) {
      modelc_rt_real *d = dst + p * GEMM_MR;
      for (int64_t r = 0; r < rows; r++) {
        int64_t i = i0 + ir + r, q = p0 + p;
        d[r] = g->trans_a ? g->a[q * g->lda + i] : g->a[i * g->lda + q];
      }
      for (int64_t r = rows; r < GEMM_MR; r++) d[r] = 0.0f;
    }
    dst += kc * GEMM_MR;
  }
}

/* Packs op(B)[p0:p0+kc, j0 + panel*NR ...] panel `panel` as [kc, NR]. */
static void gemm_pack_b_panel(modelc_rt_real *dst, const gemm_args *g, int64_t p0, int64_t kc,
                              int64_t j0, int64_t cols) {
  for (int64_t p = 0; p < kc; p++) {
    modelc_rt_real *d = dst + p * GEMM_NR;
    int64_t q = p0 + p;
    if (!g->trans_b) {
      const modelc_rt_real *s = g->b + q * g->ldb + j0;
      for (int64_t c = 0; c < cols; c++) d[c] = s[c];
    } else {
      for (int64_t c = 0; c < cols; c++) d[c] = g->b[(j0 + c) * g->ldb + q];
    }
    for (int64_t c = cols; c < GEMM_NR; c++) d[c] = 0.0f;
  }
}

/* acc[MR,NR] = Ap [kc, MR]^T Bp [kc, NR]; then C tile = alpha acc + beta C
 * for the rows x cols that exist (beta == 0: C is not read). */
static void gemm_micro(int64_t kc, const modelc_rt_real *ap, const modelc_rt_real *bp,
                       modelc_rt_real alpha, modelc_rt_real beta, modelc_rt_real *c, int64_t ldc,
                       int64_t rows, int64_t cols) {
  modelc_rt_real acc[GEMM_MR][GEMM_NR] = {{0}};
  for (int64_t p = 0; p < kc; p++) {
    const modelc_rt_real *a = ap + p * GEMM_MR, *b = bp + p * GEMM_NR;
    /* clang-format off */
    GEMM_UNROLL
    for (int r = 0; r < GEMM_MR; r++)
      GEMM_UNROLL
      for (int j = 0; j < GEMM_NR; j++) acc[r][j] += a[r] * b[j];
    /* clang-format on */
  }
  for (int64_t r = 0; r < rows; r++) {
    modelc_rt_real *crow = c + r * ldc;
    if (beta == 0.0f)
      for (int64_t j = 0; j < cols; j++) crow[j] = alpha * acc[r][j];
    else
      for (int64_t j = 0; j < cols; j++) crow[j] = alpha * acc[r][j] + beta * crow[j];
  }
}

/* C[i0:i0+mc, j0+jr0 : j0+jr1] from packed A [mc, kc] and packed B
 * [kc, nc]; jr0 is a multiple of NR. */
static void gemm_macro(const gemm_args *g, const modelc_rt_real *ap, const modelc_rt_real *bp,
                       int64_t i0, int64_t mc, int64_t j0, int64_t jr0, int64_t jr1, int64_t kc,
                       modelc_rt_real beta) {
  for (int64_t jr = jr0; jr < jr1; jr += GEMM_NR) {
    int64_t cols = jr1 - jr < GEMM_NR ? jr1 - jr : GEMM_NR;
    const modelc_rt_real *bpanel = bp + (jr / GEMM_NR) * kc * GEMM_NR;
    for (int64_t ir = 0; ir < mc; ir += GEMM_MR) {
      int64_t rows = mc - ir < GEMM_MR ? mc - ir : GEMM_MR;
      gemm_micro(kc, ap + (ir / GEMM_MR) * kc * GEMM_MR, bpanel, g->alpha, beta,
                 g->c + (i0 + ir) * g->ldc + j0 + jr, g->ldc, rows, cols);
    }
  }
}

/* Without memory for the packed blocks: the plain triple loop. */
static void gemm_naive(const gemm_args *g) {
  for (int64_t i = 0; i < g->m; i++)
    for (int64_t j = 0; j < g->n; j++) {
      modelc_rt_real s = 0.0f;
      for (int64_t p = 0; p < g->k; p++) {
        modelc_rt_real av = g->trans_a ? g->a[p * g->lda + i] : g->a[i * g->lda + p];
        modelc_rt_real bv = g->trans_b ? g->b[j * g->ldb + p] : g->b[p * g->ldb + j];
        s += av * bv;
      }
      modelc_rt_real *cv = g->c + i * g->ldc + j;
      *cv = g->beta == 0.0f ? g->alpha * s : g->alpha * s + g->beta * *cv;
    }
}

static void gemm_blocked(const gemm_args *g) {
  int threads = 1;
#ifdef _OPENMP
  /* Nested inside a parallel region (a caller parallel over images) the
   * inner team would have one thread anyway. */
  if (!omp_in_parallel() && (double)g->m * (double)g->n * (double)g->k > 1e6)
    threads = omp_get_max_threads();
#endif
  /* Row blocks: at most MC rows, and small enough to give each thread
   * work; a multiple of MR. */
  int64_t mc = (g->m + threads - 1) / threads;
  mc = (mc + GEMM_MR - 1) / GEMM_MR * GEMM_MR;
  if (mc > GEMM_MC) mc = GEMM_MC;
  int64_t kc_max = g->k < GEMM_KC ? g->k : GEMM_KC;
  int64_t nc_max = g->n < GEMM_NC ? g->n : GEMM_NC;
  int64_t nc_pad = (nc_max + GEMM_NR - 1) / GEMM_NR * GEMM_NR;
  size_t b_size = (size_t)(kc_max * nc_pad), a_size = (size_t)(kc_max * mc);
  modelc_rt_real *buf = malloc((b_size + a_size * (size_t)threads) * sizeof *buf);
  if (!buf) {
    gemm_naive(g);
    return;
  }
  modelc_rt_real *bp = buf;
  int64_t row_blocks = (g->m + mc - 1) / mc;

#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
  {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    modelc_rt_real *ap = buf + b_size + a_size * (size_t)tid;
    for (int64_t j0 = 0; j0 < g->n; j0 += GEMM_NC) {
      int64_t nc = g->n - j0 < GEMM_NC ? g->n - j0 : GEMM_NC;
      int64_t panels = (nc + GEMM_NR - 1) / GEMM_NR;
      for (int64_t p0 = 0; p0 < g->k; p0 += GEMM_KC) {
        int64_t kc = g->k - p0 < GEMM_KC ? g->k - p0 : GEMM_KC;
        /* Later K blocks add to what the first one wrote. */
        modelc_rt_real beta = p0 == 0 ? g->beta : 1.0f;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t jp = 0; jp < panels; jp++) {
          int64_t cols = nc - jp * GEMM_NR < GEMM_NR ? nc - jp * GEMM_NR : GEMM_NR;
          gemm_pack_b_panel(bp + jp * kc * GEMM_NR, g, p0, kc, j0 + jp * GEMM_NR, cols);
        }
        /* Work items: a row block times a share of the column panels (more
         * than one share only when there are fewer row blocks than threads). */
        int64_t parts = row_blocks < threads ? (threads + row_blocks - 1) / row_blocks : 1;
        if (parts > panels) parts = panels;
        int64_t packed = -1; /* the row block now in ap */
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t item = 0; item < row_blocks * parts; item++) {
          int64_t ib = item / parts, part = item % parts;
          int64_t i0 = ib * mc, rows = g->m - i0 < mc ? g->m - i0 : mc;
          int64_t jr0 = panels * part / parts * GEMM_NR;
          int64_t jr1 = panels * (part + 1) / parts * GEMM_NR;
          if (jr1 > nc) jr1 = nc;
          if (packed != ib) gemm_pack_a(ap, g, i0, rows, p0, kc);
          packed = ib;
          gemm_macro(g, ap, bp, i0, rows, j0, jr0, jr1, kc, beta);
        }
      }
    }
  }
  free(buf);
}

/* ---- entry point ---- */

#if !defined(MODELC_NO_BLAS) && defined(_OPENMP)
/* OpenBLAS's own threads and OpenMP's fight over the cores when both are
 * busy (measured 5x slower on 2 cores), so OpenBLAS runs one thread and
 * large products are split across the OpenMP threads instead: by rows
 * of C, or by columns when there are fewer rows than columns. Weak, so
 * that a BLAS without this function links too. */
extern void openblas_set_num_threads(int threads) __attribute__((weak));

static int gemm_blas_split(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                           modelc_rt_real alpha, const modelc_rt_real *a, int64_t lda,
                           const modelc_rt_real *b, int64_t ldb, modelc_rt_real beta,
                           modelc_rt_real *c, int64_t ldc) {
  static int single_threaded;
  int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (!single_threaded) {
    if (openblas_set_num_threads) openblas_set_num_threads(1);
    single_threaded = 1;
  }
  if (threads < 2 || (double)m * (double)n * (double)k < 262144.0 || m > INT_MAX || n > INT_MAX ||
      k > INT_MAX || lda > INT_MAX || ldb > INT_MAX || ldc > INT_MAX)
    return 0;
  int by_rows = m >= n;
  int64_t total = by_rows ? m : n;
  if (total < threads) return 0;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < threads; t++) {
    int64_t lo = total * t / threads, hi = total * (t + 1) / threads;
    if (hi <= lo) continue;
    const modelc_rt_real *pa = a, *pb = b;
    modelc_rt_real *pc = c;
    int64_t rows = m, cols = n;
    if (by_rows) {
      pa = trans_a ? a + lo : a + lo * lda;
      pc = c + lo * ldc;
      rows = hi - lo;
    } else {
      pb = trans_b ? b + lo * ldb : b + lo;
      pc = c + lo;
      cols = hi - lo;
    }
    GEMM_BLAS(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, (int)rows, (int)cols, (int)k, alpha, pa,
              (int)lda, pb, (int)ldb, beta, pc, (int)ldc);
  }
  return 1;
}
#endif

void modelc_rt_gemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, modelc_rt_real alpha,
                    const modelc_rt_real *a, int64_t lda, const modelc_rt_real *b, int64_t ldb,
                    modelc_rt_real beta, modelc_rt_real *c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.0f) {
    gemm_scale_c(m, n, beta, c, ldc);
    return;
  }
#if !defined(MODELC_NO_BLAS) && defined(_OPENMP)
  if (gemm_blas_split(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
#endif
#ifndef MODELC_NO_BLAS
  /* cblas checks strides even where they are unused (one row): give it
   * the smallest legal ones there. */
  int64_t a_cols = trans_a ? m : k, a_rows = trans_a ? k : m;
  int64_t b_cols = trans_b ? k : n, b_rows = trans_b ? n : k;
  if (a_rows == 1) lda = a_cols;
  if (b_rows == 1) ldb = b_cols;
  if (m == 1) ldc = n;
  if (m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
      ldc <= INT_MAX) {
    GEMM_BLAS(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, alpha, a, (int)lda, b,
              (int)ldb, beta, c, (int)ldc);
    return;
  }
#endif
  gemm_args g = {trans_a, trans_b, m, n, k, alpha, beta, a, b, lda, ldb, ldc, c};
  gemm_blocked(&g);
}
