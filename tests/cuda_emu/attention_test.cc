// attention_test.cc: the flash-attention kernels of the device library
// (runtime/rt_cuda_kernels.cu) on the CPU emulation (emu.h, sched.inc),
// against attention computed naively in double: outputs, log-sum-exp and
// the gradients of q, k and v, for causal, window and global-token masks
// and grouped-query heads. The kernels are not called by generated code
// yet; this is what checks them until a GPU and the fused op come.
//
//   g++ -std=c++20 -O1 -U_FORTIFY_SOURCE -I tests/cuda_emu -include emu.h \
//       tests/cuda_emu/attention_test.cc -o attention_test && ./attention_test
#include <functional>
#include <random>
#include <vector>

#include "../../runtime/rt_cuda_kernels.cu"
#include "sched.inc"

struct config {
  int64_t b, h, hkv, t, d;
  int causal;
  int64_t window, global;
};

static void body(void *f) { (*(std::function<void()> *)f)(); }

static void launch(unsigned gx, unsigned gy, unsigned gz, unsigned threads, std::function<void()> f) {
  emu_launch(gx, gy, gz, threads, body, &f);
}

static int allowed(int64_t i, int64_t j, const config &c) {
  int64_t dist = i > j ? i - j : j - i;
  return (!c.causal || j <= i) && (c.window == 0 || dist < c.window || i < c.global || j < c.global);
}

/* max |a - e| / max |e|, the error relative to the tensor's scale */
static double error_of(const std::vector<float> &a, const std::vector<double> &e) {
  double worst = 0, scale = 1e-30;
  for (size_t i = 0; i < e.size(); i++) {
    worst = fmax(worst, fabs((double)a[i] - e[i]));
    scale = fmax(scale, fabs(e[i]));
  }
  return worst / scale;
}

static int check(const config &c, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int64_t nq = c.b * c.h * c.t * c.d, nk = c.b * c.hkv * c.t * c.d, group = c.h / c.hkv;
  std::vector<float> q(nq), k(nk), v(nk), dout(nq);
  for (auto *x : {&q, &k, &v, &dout})
    for (auto &e : *x) e = normal(rng);
  float scale = 1.0f / sqrtf((float)c.d);

  /* reference, in double */
  std::vector<double> o(nq, 0), dq(nq, 0), dk(nk, 0), dv(nk, 0), lse(c.b * c.h * c.t, -INFINITY);
  for (int64_t b = 0; b < c.b; b++)
    for (int64_t h = 0; h < c.h; h++) {
      int64_t hk = h / group;
      for (int64_t i = 0; i < c.t; i++) {
        const float *qi = &q[((b * c.h + h) * c.t + i) * c.d];
        const float *gi = &dout[((b * c.h + h) * c.t + i) * c.d];
        std::vector<double> p(c.t, 0), dp(c.t, 0);
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < c.t; j++) {
          if (!allowed(i, j, c)) continue;
          const float *kj = &k[((b * c.hkv + hk) * c.t + j) * c.d];
          double s = 0;
          for (int64_t x = 0; x < c.d; x++) s += (double)qi[x] * kj[x];
          p[j] = s * scale;
          mx = fmax(mx, p[j]);
        }
        if (mx == -INFINITY) continue;
        for (int64_t j = 0; j < c.t; j++) sum += allowed(i, j, c) ? exp(p[j] - mx) : 0;
        lse[(b * c.h + h) * c.t + i] = mx + log(sum);
        double delta = 0;
        for (int64_t j = 0; j < c.t; j++) {
          p[j] = allowed(i, j, c) ? exp(p[j] - mx) / sum : 0;
          const float *vj = &v[((b * c.hkv + hk) * c.t + j) * c.d];
          for (int64_t x = 0; x < c.d; x++) {
            o[((b * c.h + h) * c.t + i) * c.d + x] += p[j] * vj[x];
            dp[j] += (double)gi[x] * vj[x];
          }
          delta += p[j] * dp[j];
        }
        for (int64_t j = 0; j < c.t; j++) {
          double ds = p[j] * (dp[j] - delta);
          int64_t kv = ((b * c.hkv + hk) * c.t + j) * c.d;
          for (int64_t x = 0; x < c.d; x++) {
            dq[((b * c.h + h) * c.t + i) * c.d + x] += ds * k[kv + x] * scale;
            dk[kv + x] += ds * qi[x] * scale;
            dv[kv + x] += p[j] * gi[x];
          }
        }
      }
    }

  /* the kernels */
  std::vector<float> ko(nq), kl(c.b * c.h * c.t), kd(c.b * c.h * c.t), kdq(nq), kdk(nk), kdv(nk);
  unsigned rows = (unsigned)((c.t + 3) / 4);
  launch(rows, (unsigned)c.h, (unsigned)c.b, 128, [&] {
    modelc_flash_attention_forward(q.data(), k.data(), v.data(), ko.data(), kl.data(), c.h, c.hkv, c.t,
                                   c.d, scale, c.causal, c.window, c.global);
  });
  launch(rows, (unsigned)c.h, (unsigned)c.b, 128, [&] {
    modelc_flash_attention_backward_dq(q.data(), k.data(), v.data(), ko.data(), dout.data(), kl.data(),
                                       kd.data(), kdq.data(), c.h, c.hkv, c.t, c.d, scale, c.causal,
                                       c.window, c.global);
  });
  launch(rows, (unsigned)c.hkv, (unsigned)c.b, 128, [&] {
    modelc_flash_attention_backward_dkv(q.data(), k.data(), v.data(), ko.data(), dout.data(), kl.data(),
                                        kd.data(), kdk.data(), kdv.data(), c.h, c.hkv, c.t, c.d, scale, c.causal,
                                        c.window, c.global);
  });
  std::vector<double> lse_finite(lse), kl_d(kl.begin(), kl.end());
  double e_lse = 0;
  for (size_t i = 0; i < lse.size(); i++) {
    if (lse[i] == -INFINITY) {
      if (kl[i] != -INFINITY) e_lse = 1;
      continue;
    }
    e_lse = fmax(e_lse, fabs(kl[i] - lse[i]) / fmax(1.0, fabs(lse[i])));
  }
  double errors[5] = {error_of(ko, o), e_lse, error_of(kdq, dq), error_of(kdk, dk), error_of(kdv, dv)};
  const char *names[5] = {"o", "lse", "dq", "dk", "dv"};
  int ok = 1;
  printf("B=%lld H=%lld HKV=%lld T=%lld D=%lld causal=%d window=%lld global=%lld:", (long long)c.b,
         (long long)c.h, (long long)c.hkv, (long long)c.t, (long long)c.d, c.causal, (long long)c.window,
         (long long)c.global);
  for (int i = 0; i < 5; i++) {
    printf(" %s %.1e", names[i], errors[i]);
    ok = ok && errors[i] < 1e-4;
  }
  printf(" %s\n", ok ? "ok" : "FAIL");
  return ok;
}

int main() {
  const config configs[] = {
      {2, 4, 2, 37, 40, 1, 0, 0},   /* causal, GQA, ragged T and D */
      {1, 2, 2, 50, 64, 0, 0, 0},   /* no mask */
      {1, 3, 1, 45, 32, 0, 8, 3},   /* window and global tokens, MQA */
      {2, 2, 1, 33, 128, 1, 5, 2},  /* causal window with globals, D = 128 */
      {1, 1, 1, 9, 16, 1, 1, 0},    /* a window of 1: the diagonal alone */
  };
  int ok = 1;
  unsigned seed = 1;
  for (const config &c : configs) ok = check(c, seed++) && ok;
  printf("attention_test: %s\n", ok ? "all match" : "MISMATCH");
  return ok ? 0 : 1;
}
