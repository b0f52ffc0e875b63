/* sgemm_peak.c: the machine's sgemm ceiling for bench/, in GFLOP/s.
 *
 *   sgemm_peak THREADS [N]
 *
 * Times C = A B for square N x N matrices (default 2048) two ways and
 * prints the better: OpenBLAS with THREADS threads of its own, and the
 * way modelc's generated code calls it (OpenMP threads, each running a
 * single-threaded sgemm on a slice of the rows). Best of 5 after a
 * warm-up. Output: one line, `sgemm_gflops <value>`. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void openblas_set_num_threads(int num_threads);

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void split_gemm(int threads, int n, const float *a, const float *b, float *c) {
#pragma omp parallel for num_threads(threads)
  for (int t = 0; t < threads; t++) {
    int r0 = n * t / threads, r1 = n * (t + 1) / threads;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, n, n, 1.0f, a + (size_t)r0 * n,
                n, b, n, 0.0f, c + (size_t)r0 * n, n);
  }
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1, n = argc > 2 ? atoi(argv[2]) : 2048;
  if (threads < 1 || n < 16) {
    fprintf(stderr, "usage: sgemm_peak THREADS [N]\n");
    return 1;
  }
  float *a = malloc(sizeof(float) * (size_t)n * n), *b = malloc(sizeof(float) * (size_t)n * n);
  float *c = malloc(sizeof(float) * (size_t)n * n);
  if (!a || !b || !c) return 1;
  for (size_t i = 0; i < (size_t)n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
  double flops = 2.0 * n * (double)n * n, best = 0;
  for (int way = 0; way < 2; way++) {
    openblas_set_num_threads(way == 0 ? threads : 1);
    for (int rep = 0; rep < 6; rep++) {
      double t0 = now();
      if (way == 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
      else
        split_gemm(threads, n, a, b, c);
      double g = flops / (now() - t0) / 1e9;
      if (rep > 0 && g > best) best = g;
    }
  }
  printf("sgemm_gflops %.2f\n", best);
  free(a), free(b), free(c);
  return 0;
}
