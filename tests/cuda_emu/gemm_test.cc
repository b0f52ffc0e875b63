// gemm_test.cc: the device library's GEMMs on the CPU emulation against a
// double-precision product: mc_gemm_f32, and mc_gemm_bf16 through its
// tensor-core path (built with -DMC_EMU_MMA, so mma.m16n8k16 is emulated
// from the PTX ISA's fragment tables) or its FMA fallback (without), with
// both operands rounded to bf16 in the reference. Every transpose, sizes
// that are not multiples of the tiles, and row strides wider than a row.
#include <functional>
#include <random>
#include <vector>

#include "../../runtime/rt_cuda_kernels.cu"
#include "sched.inc"

static void body(void *f) { (*(std::function<void()> *)f)(); }

static int check(int bf16, int ta, int tb, int64_t m, int64_t n, int64_t k, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2;
  std::vector<float> a((ta ? k : m) * lda), b((tb ? n : k) * ldb), c(m * ldc, -7.0f);
  for (auto &x : a) x = normal(rng);
  for (auto &x : b) x = normal(rng);
  double worst = 0, scale = 1e-30;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double s = 0, mag = 0;
      for (int64_t p = 0; p < k; p++) {
        float x = ta ? a[p * lda + i] : a[i * lda + p], y = tb ? b[j * ldb + p] : b[p * ldb + j];
        if (bf16) {
          x = mc_round_bf16(x);
          y = mc_round_bf16(y);
        }
        s += (double)x * y;
        mag += fabs((double)x * y);
      }
      c[i * ldc + j] = (float)s; /* the expected value, until the kernel overwrites it */
      scale = fmax(scale, mag);
    }
  std::vector<float> expect(c);
  for (auto &x : c) x = -7.0f;
  std::function<void()> f = [&] {
    if (bf16) mc_gemm_bf16(ta, tb, m, n, k, a.data(), lda, b.data(), ldb, c.data(), ldc);
    else mc_gemm_f32(ta, tb, m, n, k, a.data(), lda, b.data(), ldb, c.data(), ldc);
  };
  emu_launch((unsigned)((n + 63) / 64), (unsigned)((m + 63) / 64), 1, bf16 ? 128 : 256, body, &f);
  int padding_kept = 1;
  for (int64_t i = 0; i < m; i++) {
    for (int64_t j = 0; j < n; j++) worst = fmax(worst, fabs((double)c[i * ldc + j] - expect[i * ldc + j]));
    for (int64_t j = n; j < ldc; j++) padding_kept = padding_kept && c[i * ldc + j] == -7.0f;
  }
  int ok = worst / scale < 1e-6 && padding_kept;
  printf("%s ta=%d tb=%d M=%lld N=%lld K=%lld: error %.1e of the scale%s %s\n", bf16 ? "bf16" : "f32 ", ta,
         tb, (long long)m, (long long)n, (long long)k, worst / scale, padding_kept ? "" : ", wrote past N",
         ok ? "ok" : "FAIL");
  return ok;
}

int main() {
  int ok = 1;
  unsigned seed = 1;
  for (int bf16 = 0; bf16 < 2; bf16++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        ok = check(bf16, ta, tb, 70, 45, 37, seed++) && ok;
        ok = check(bf16, ta, tb, 128, 64, 32, seed++) && ok;
      }
  ok = check(1, 0, 1, 1, 200, 100, seed++) && ok;
#ifdef MC_EMU_MMA
  printf("gemm_test (tensor-core path, emulated mma.m16n8k16): %s\n", ok ? "all match" : "MISMATCH");
#else
  printf("gemm_test (bf16 on the FMA fallback): %s\n", ok ? "all match" : "MISMATCH");
#endif
  return ok ? 0 : 1;
}
