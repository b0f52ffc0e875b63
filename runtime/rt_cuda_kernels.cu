/* rt_cuda_kernels.cu: the device library that generated CUDA kernels call
 * (the counterpart of the C runtime's kernel library), copied at the top
 * of every <model>_kernels.cu. Compiled by NVRTC with no include path:
 * nothing here includes a header, bf16 conversion and tensor-core MMA
 * are inline PTX (sm_80 and later).
 *
 * Each mc_* device function computes what the C runtime function of the
 * same name (modelc_rt_*) computes, with the same formulas; sums may run
 * in a different order, so results agree to rounding, not to the bit.
 * Shapes are in the comments; everything is row major. */

#ifdef __CUDACC_RTC__ /* NVRTC: no system headers */
typedef int int32_t;
typedef long long int64_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
#else /* nvcc, for checking this file by hand */
#include <stdint.h>
#endif
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif
#ifndef NAN
#define NAN __int_as_float(0x7fffffff)
#endif
#define MC_BLOCK 256

/* Grid-stride loop over [0, n). */
#define MC_FOR(i, n)                                                                   \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (int64_t)(n); \
       i += (int64_t)gridDim.x * blockDim.x)

/* ---- scalar functions, as modelc_rt.h defines them ---- */

__device__ __forceinline__ float mc_relu(float x) { return x > 0.0f ? x : 0.0f; }
__device__ __forceinline__ float mc_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float mc_silu(float x) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float mc_gelu(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}
__device__ __forceinline__ float mc_one_plus_tanh(float u) { return 2.0f / (1.0f + expf(-2.0f * u)); }
__device__ __forceinline__ float mc_gelu_tanh(float x) {
  return 0.5f * x * mc_one_plus_tanh(0.79788456080286536f * (x + 0.044715f * x * x * x));
}
__device__ __forceinline__ float mc_softplus(float x) {
  return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)));
}
__device__ __forceinline__ float mc_sign(float x) { return (float)((x > 0.0f) - (x < 0.0f)); }
__device__ __forceinline__ float mc_gelu_grad(float x) {
  float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
  float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
  return cdf + x * pdf;
}
__device__ __forceinline__ float mc_gelu_tanh_grad(float x) {
  const float c = 0.79788456080286536f;
  float u = c * (x + 0.044715f * x * x * x);
  float t = mc_one_plus_tanh(u) - 1.0f;
  float du = c * (1.0f + 3.0f * 0.044715f * x * x);
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}
__device__ __forceinline__ float mc_silu_grad(float x) {
  float s = mc_sigmoid(x);
  return s * (1.0f + x * (1.0f - s));
}

/* Round to bfloat16 (nearest, ties to even), kept in a float: the C
 * runtime's modelc_rt_round_bf16 bit for bit. */
__device__ __forceinline__ float mc_round_bf16(float x) {
  uint32_t bits = __float_as_uint(x);
  if ((bits & 0x7f800000u) == 0x7f800000u) {
    if (bits & 0x007fffffu) bits |= 0x00400000u;
  } else {
    bits += 0x7fffu + ((bits >> 16) & 1u);
  }
  return __uint_as_float(bits & 0xffff0000u);
}

/* ---- counter-based RNG (rt_random.c) ---- */

__device__ __forceinline__ uint64_t mc_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
__device__ __forceinline__ uint64_t mc_hash(uint64_t seed, uint64_t stream, uint64_t index) {
  uint64_t h = mc_mix(seed + 0x9e3779b97f4a7c15ull);
  h = mc_mix(h ^ (stream * 0xd1b54a32d192ed03ull + 0x2545f4914f6cdd1dull));
  return mc_mix(h ^ (index * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull));
}
__device__ __forceinline__ float mc_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  return (float)(mc_hash(seed, stream, index) >> 40) * (1.0f / 16777216.0f);
}

/* mask [n]: 0 with probability p, else 1/(1-p). */
__device__ __noinline__ void mc_dropout_mask(float *mask, int64_t n, float p, uint64_t seed, uint64_t stream) {
  float keep = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  MC_FOR(i, n) mask[i] = mc_uniform(seed, stream, (uint64_t)i) < p ? 0.0f : keep;
}

/* ---- block reductions (blockDim.x == MC_BLOCK) ---- */

__device__ double mc_block_sum(double v) {
  __shared__ double part[MC_BLOCK / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  double total = 0.0;
  for (int w = 0; w < MC_BLOCK / 32; w++) total += part[w];
  return total;
}

/* NaN wins, as in the C runtime's max. */
__device__ __forceinline__ float mc_max2(float m, float v) { return (v > m || v != v) ? v : m; }

__device__ float mc_block_max(float v) {
  __shared__ float part[MC_BLOCK / 32];
  for (int o = 16; o > 0; o >>= 1) v = mc_max2(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  float m = part[0];
  for (int w = 1; w < MC_BLOCK / 32; w++) m = mc_max2(m, part[w]);
  return m;
}

/* ---- softmax family: one block per row of [outer, n, inner] ---- */

__device__ __noinline__ void mc_softmax(float *y, const float *x, int64_t outer, int64_t n, int64_t inner,
                           int take_log) {
  for (int64_t row = blockIdx.x; row < outer * inner; row += gridDim.x) {
    int64_t base = row / inner * n * inner + row % inner;
    float mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) mx = mc_max2(mx, x[base + i * inner]);
    mx = mc_block_max(mx);
    double sum = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += expf(x[base + i * inner] - mx);
    sum = mc_block_sum(sum);
    if (take_log) {
      float log_sum = (float)log(sum);
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        y[base + i * inner] = (x[base + i * inner] - mx) - log_sum;
    } else {
      float scale = (float)(1.0 / sum);
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        y[base + i * inner] = expf(x[base + i * inner] - mx) * scale;
    }
  }
}

/* softmax: dx = y (g - sum g y); log_softmax: dx = g - exp(y) sum g. */
__device__ __noinline__ void mc_softmax_grad(float *dx, const float *y, const float *g, int64_t outer,
                                int64_t n, int64_t inner, int take_log) {
  for (int64_t row = blockIdx.x; row < outer * inner; row += gridDim.x) {
    int64_t base = row / inner * n * inner + row % inner;
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      int64_t at = base + i * inner;
      s += take_log ? (double)g[at] : (double)g[at] * y[at];
    }
    float d = (float)mc_block_sum(s);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      int64_t at = base + i * inner;
      dx[at] = take_log ? g[at] - expf(y[at]) * d : y[at] * (g[at] - d);
    }
  }
}

/* ---- reductions over any axes: one block per output element ---- */

/* Offsets of output `o` (kept dims) and of reduced element `r` in x. */
__device__ int64_t mc_kept_offset(int64_t o, int rank, const int64_t *dims, const int *reduce) {
  int64_t off = 0, stride = 1;
  for (int d = rank - 1; d >= 0; d--) {
    if (!reduce[d]) {
      off += o % dims[d] * stride;
      o /= dims[d];
    }
    stride *= dims[d];
  }
  return off;
}
__device__ int64_t mc_reduced_offset(int64_t r, int rank, const int64_t *dims, const int *reduce) {
  int64_t off = 0, stride = 1;
  for (int d = rank - 1; d >= 0; d--) {
    if (reduce[d]) {
      off += r % dims[d] * stride;
      r /= dims[d];
    }
    stride *= dims[d];
  }
  return off;
}

/* y [kept dims] = sum (is_max 0) or max (1) of x [dims] over reduced axes;
 * a sum is multiplied by scale (1/count for a mean). */
__device__ __noinline__ void mc_reduce(float *y, const float *x, int rank, const int64_t *dims,
                          const int *reduce, int is_max, float scale) {
  int64_t outs = 1, count = 1;
  for (int d = 0; d < rank; d++) (reduce[d] ? count : outs) *= dims[d];
  for (int64_t o = blockIdx.x; o < outs; o += gridDim.x) {
    int64_t base = mc_kept_offset(o, rank, dims, reduce);
    if (is_max) {
      float m = -INFINITY;
      for (int64_t r = threadIdx.x; r < count; r += blockDim.x)
        m = mc_max2(m, x[base + mc_reduced_offset(r, rank, dims, reduce)]);
      m = mc_block_max(m);
      if (threadIdx.x == 0) y[o] = m;
    } else {
      double s = 0.0;
      for (int64_t r = threadIdx.x; r < count; r += blockDim.x)
        s += x[base + mc_reduced_offset(r, rank, dims, reduce)];
      s = mc_block_sum(s);
      if (threadIdx.x == 0) y[o] = (float)s * scale; /* mean: the sum, then scaled */
    }
  }
}

/* dx [dims] = g routed to the first maximum of each reduced group (a
 * thread per group: the scan order decides ties, as in the C runtime). */
__device__ __noinline__ void mc_reduce_max_grad(float *dx, const float *x, const float *g, int rank,
                                   const int64_t *dims, const int *reduce) {
  int64_t outs = 1, count = 1;
  for (int d = 0; d < rank; d++) (reduce[d] ? count : outs) *= dims[d];
  MC_FOR(o, outs) {
    int64_t base = mc_kept_offset(o, rank, dims, reduce), at = base;
    float m = -INFINITY;
    for (int64_t r = 0; r < count; r++) {
      int64_t i = base + mc_reduced_offset(r, rank, dims, reduce);
      if (x[i] > m || (x[i] != x[i] && m == m)) {
        m = x[i];
        at = i;
      }
      dx[i] = 0.0f;
    }
    dx[at] = g[o];
  }
}

/* ---- loss ---- */

/* One block: mean of -logp[r, t_r] over rows whose target is not
 * ignored; NaN when a target is out of range. */
__device__ __noinline__ void mc_nll_loss(float *loss, const float *logp, const int32_t *targets, int64_t rows,
                            int64_t classes, int64_t ignore) {
  double sum = 0.0, kept = 0.0, bad = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    int64_t t = targets[r];
    if (t == ignore) continue;
    if (t < 0 || t >= classes) {
      bad += 1.0;
      continue;
    }
    sum -= logp[r * classes + t];
    kept += 1.0;
  }
  sum = mc_block_sum(sum);
  kept = mc_block_sum(kept);
  bad = mc_block_sum(bad);
  if (threadIdx.x == 0) loss[0] = bad > 0.0 ? NAN : kept > 0.0 ? (float)(sum / kept) : 0.0f;
}

/* dlogp [rows, classes] = -g / kept at each kept row's target, else 0. */
__device__ __noinline__ void mc_nll_loss_grad(float *dlogp, const int32_t *targets, const float *g,
                                 int64_t rows, int64_t classes, int64_t ignore) {
  __shared__ float d;
  double kept = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) kept += targets[r] != ignore;
  kept = mc_block_sum(kept);
  if (threadIdx.x == 0) d = kept > 0.0 ? (float)(-(double)g[0] / kept) : 0.0f;
  __syncthreads();
  MC_FOR(i, rows * classes) {
    int64_t t = targets[i / classes];
    dlogp[i] = t != ignore && t == i % classes ? d : 0.0f;
  }
}

/* ---- embedding ---- */

/* out [count, dim] = table rows at ids; an id outside [0, num) gives a
 * zero row and records `site` in *error (the host reports it). */
__device__ __noinline__ void mc_gather(float *out, const float *table, const int32_t *ids, int64_t count,
                          int64_t dim, int64_t num, int *error, int site) {
  MC_FOR(i, count * dim) {
    int64_t id = ids[i / dim];
    if (id < 0 || id >= num) {
      out[i] = 0.0f;
      atomicExch(error, site);
    } else {
      out[i] = table[id * dim + i % dim];
    }
  }
}

/* dtable [num, dim] += g rows at ids (dtable zeroed before the launch). */
__device__ __noinline__ void mc_gather_grad(float *dtable, const int32_t *ids, const float *g, int64_t count,
                               int64_t dim) {
  MC_FOR(i, count * dim) {
    int64_t id = ids[i / dim];
    if (id >= 0) atomicAdd(&dtable[id * dim + i % dim], g[i]);
  }
}

/* ---- rotary embedding, rotate-half, x [outer, t, hd]; sign -1: gradient ---- */

__device__ __noinline__ void mc_rope(float *y, const float *x, int64_t outer, int64_t t, int64_t hd, float base,
                        float sign) {
  int64_t h = hd / 2;
  MC_FOR(k, outer * t * h) {
    int64_t i = k % h, row = k / h, pos = row % t;
    double a = (double)pos * pow((double)base, -2.0 * (double)i / (double)hd);
    float cs = (float)cos(a), sn = sign * (float)sin(a);
    const float *xr = x + row * hd;
    float *yr = y + row * hd;
    float lo = xr[i], hi = xr[i + h];
    yr[i] = lo * cs - hi * sn;
    yr[i + h] = hi * cs + lo * sn;
    if (hd % 2 && i == 0) yr[hd - 1] = xr[hd - 1];
  }
}

/* mask [tq, tk]: 1 where i may attend to j. */
__device__ __noinline__ void mc_attention_mask(uint8_t *mask, int64_t tq, int64_t tk, int causal,
                                  int64_t window, int64_t global) {
  MC_FOR(k, tq * tk) {
    int64_t i = k / tk, j = k % tk, dist = i > j ? i - j : j - i;
    mask[k] = (uint8_t)((!causal || j <= i) &&
                        (window == 0 || dist < window || i < global || j < global));
  }
}

/* ---- convolution NCHW, direct; bf16 rounds both operands ----
 * The input is read through a fetcher: the plain conv's tensor, or
 * conv_concat's parts (nearest-upsampled, concatenated on the channels:
 * runtime/rt_conv.c has the CPU's), so each loop is written once. */

struct mc_conv {
  int64_t n, c, h, w, o, kh, kw, oh, ow;
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
};

struct mc_conv_cat {
  mc_conv conv;
  int64_t parts, channels[3], up[3];
};

__device__ __forceinline__ float mc_operand(float v, int bf16) { return bf16 ? mc_round_bf16(v) : v; }

/* x [N,C,H,W]: value (b, c, iy, ix). */
struct mc_plain_input {
  const float *x;
  mc_conv p;
  __device__ float operator()(int64_t b, int64_t c, int64_t iy, int64_t ix) const {
    return x[((b * p.c + c) * p.h + iy) * p.w + ix];
  }
};

/* Channel c at (iy, ix) of the concatenation of the upsampled parts. */
struct mc_cat_input {
  const float *x0, *x1, *x2;
  mc_conv_cat q;
  __device__ float operator()(int64_t b, int64_t c, int64_t iy, int64_t ix) const {
    int i = 0;
    while (i + 1 < q.parts && c >= q.channels[i]) c -= q.channels[i++];
    const float *x = i == 0 ? x0 : i == 1 ? x1 : x2;
    int64_t up = q.up[i], h = q.conv.h / up, w = q.conv.w / up;
    return x[((b * q.channels[i] + c) * h + iy / up) * w + ix / up];
  }
};

/* y [N,O,OH,OW] = x * w [O,C/groups,KH,KW]: a thread per output. */
template <class X>
__device__ void mc_conv_forward(float *y, X x, const float *w, const mc_conv &p, int bf16) {
  int64_t cg = p.c / p.groups, og = p.o / p.groups;
  MC_FOR(i, p.n * p.o * p.oh * p.ow) {
    int64_t ox = i % p.ow, oy = i / p.ow % p.oh, oc = i / (p.ow * p.oh) % p.o;
    int64_t b = i / (p.ow * p.oh * p.o), c0 = oc / og * cg;
    float acc = 0.0f;
    for (int64_t c = 0; c < cg; c++)
      for (int64_t ky = 0; ky < p.kh; ky++) {
        int64_t iy = oy * p.stride_h - p.pad_h + ky * p.dil_h;
        if (iy < 0 || iy >= p.h) continue;
        for (int64_t kx = 0; kx < p.kw; kx++) {
          int64_t ix = ox * p.stride_w - p.pad_w + kx * p.dil_w;
          if (ix < 0 || ix >= p.w) continue;
          acc += mc_operand(x(b, c0 + c, iy, ix), bf16) *
                 mc_operand(w[((oc * cg + c) * p.kh + ky) * p.kw + kx], bf16);
        }
      }
    y[i] = acc;
  }
}

/* d.x at input (b, ci, iy, ix): the sum over the outputs it fed. */
__device__ float mc_conv_dx_at(const float *g, const float *w, const mc_conv &p, int64_t b, int64_t ci,
                               int64_t iy, int64_t ix, int bf16) {
  int64_t cg = p.c / p.groups, og = p.o / p.groups, grp = ci / cg, c = ci % cg;
  float acc = 0.0f;
  for (int64_t oc = grp * og; oc < (grp + 1) * og; oc++)
    for (int64_t ky = 0; ky < p.kh; ky++) {
      int64_t ty = iy + p.pad_h - ky * p.dil_h;
      if (ty < 0 || ty % p.stride_h) continue;
      int64_t oy = ty / p.stride_h;
      if (oy >= p.oh) continue;
      for (int64_t kx = 0; kx < p.kw; kx++) {
        int64_t tx = ix + p.pad_w - kx * p.dil_w;
        if (tx < 0 || tx % p.stride_w) continue;
        int64_t ox = tx / p.stride_w;
        if (ox >= p.ow) continue;
        acc += mc_operand(g[((b * p.o + oc) * p.oh + oy) * p.ow + ox], bf16) *
               mc_operand(w[((oc * cg + c) * p.kh + ky) * p.kw + kx], bf16);
      }
    }
  return acc;
}

/* dw [O,C/groups,KH,KW] from x and g: a block per weight, summing over
 * N*OH*OW. */
template <class X>
__device__ void mc_conv_weight_grad(float *dw, X x, const float *g, const mc_conv &p, int bf16) {
  int64_t cg = p.c / p.groups, og = p.o / p.groups;
  for (int64_t i = blockIdx.x; i < p.o * cg * p.kh * p.kw; i += gridDim.x) {
    int64_t kx = i % p.kw, ky = i / p.kw % p.kh, c = i / (p.kw * p.kh) % cg, oc = i / (p.kw * p.kh * cg);
    int64_t ci = oc / og * cg + c;
    double acc = 0.0;
    for (int64_t k = threadIdx.x; k < p.n * p.oh * p.ow; k += blockDim.x) {
      int64_t ox = k % p.ow, oy = k / p.ow % p.oh, b = k / (p.ow * p.oh);
      int64_t iy = oy * p.stride_h - p.pad_h + ky * p.dil_h, ix = ox * p.stride_w - p.pad_w + kx * p.dil_w;
      if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
      acc += mc_operand(x(b, ci, iy, ix), bf16) *
             mc_operand(g[((b * p.o + oc) * p.oh + oy) * p.ow + ox], bf16);
    }
    acc = mc_block_sum(acc);
    if (threadIdx.x == 0) dw[i] = (float)acc;
  }
}

__device__ __noinline__ void mc_conv2d(float *y, const float *x, const float *w, const mc_conv p, int bf16) {
  mc_conv_forward(y, mc_plain_input{x, p}, w, p, bf16);
}

/* dx [N,C,H,W] from g [N,O,OH,OW] and w: a thread per input element. */
__device__ __noinline__ void mc_conv2d_grad_input(float *dx, const float *g, const float *w, const mc_conv p,
                                     int bf16) {
  MC_FOR(i, p.n * p.c * p.h * p.w) {
    int64_t ix = i % p.w, iy = i / p.w % p.h, ci = i / (p.w * p.h) % p.c, b = i / (p.w * p.h * p.c);
    dx[i] = mc_conv_dx_at(g, w, p, b, ci, iy, ix, bf16);
  }
}

__device__ __noinline__ void mc_conv2d_grad_weight(float *dw, const float *x, const float *g, const mc_conv p,
                                      int bf16) {
  mc_conv_weight_grad(dw, mc_plain_input{x, p}, g, p, bf16);
}

__device__ __noinline__ void mc_conv2d_cat(float *y, const float *w, const mc_conv_cat q, const float *x0,
                                           const float *x1, const float *x2, int bf16) {
  mc_conv_forward(y, mc_cat_input{x0, x1, x2, q}, w, q.conv, bf16);
}

/* dx of one part [N, channels[part], H/up, W/up]: a thread per element,
 * summing over its up x up copies in the concatenation. */
__device__ __noinline__ void mc_conv2d_cat_grad_input(float *dx, const float *g, const float *w,
                                                      const mc_conv_cat q, int64_t part, int bf16) {
  const mc_conv &p = q.conv;
  int64_t first = 0;
  for (int64_t i = 0; i < part; i++) first += q.channels[i];
  int64_t up = q.up[part], cp = q.channels[part], sh = p.h / up, sw = p.w / up;
  MC_FOR(i, p.n * cp * sh * sw) {
    int64_t sx = i % sw, sy = i / sw % sh, c = i / (sw * sh) % cp, b = i / (sw * sh * cp);
    float acc = 0.0f;
    for (int64_t iy = sy * up; iy < (sy + 1) * up; iy++)
      for (int64_t ix = sx * up; ix < (sx + 1) * up; ix++)
        acc += mc_conv_dx_at(g, w, p, b, first + c, iy, ix, bf16);
    dx[i] = acc;
  }
}

__device__ __noinline__ void mc_conv2d_cat_grad_weight(float *dw, const float *g, const mc_conv_cat q,
                                                       const float *x0, const float *x1, const float *x2,
                                                       int bf16) {
  mc_conv_weight_grad(dw, mc_cat_input{x0, x1, x2, q}, g, q.conv, bf16);
}

/* ---- fused_norm: layernorm / rmsnorm, a block per row (rt_norm.c has
 * the formulas) ---- */

__device__ __noinline__ void mc_norm(float *y, float *mean, float *rstd, const float *x, const float *w,
                                     const float *b, int64_t rows, int64_t d, float eps, int rms) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *xr = x + r * d;
    double part = 0.0;
    for (int64_t j = threadIdx.x; !rms && j < d; j += blockDim.x) part += xr[j];
    double mu = rms ? 0.0 : mc_block_sum(part) / (double)d;
    part = 0.0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) part += (xr[j] - mu) * (xr[j] - mu);
    double var = mc_block_sum(part) / (double)d;
    float m = (float)mu, s = (float)(1.0 / sqrt(var + (double)eps));
    if (threadIdx.x == 0) mean[r] = m, rstd[r] = s;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x)
      y[r * d + j] = (xr[j] - m) * s * w[j] + (b ? b[j] : 0.0f);
  }
}

/* Blocks [0, rows): d.x of a row; blocks [rows, rows + d): d.w and d.b
 * of a column, summed over the rows. */
__device__ __noinline__ void mc_norm_grad(float *dx, float *dw, float *db, const float *dy, const float *x,
                                          const float *mean, const float *rstd, const float *w,
                                          const float *dr, int64_t rows, int64_t d, int rms) {
  for (int64_t i = blockIdx.x; i < rows + d; i += gridDim.x) {
    if (i >= rows) {
      int64_t j = i - rows;
      double sw = 0.0, sb = 0.0;
      for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
        sw += (double)dy[r * d + j] * ((x[r * d + j] - mean[r]) * rstd[r]);
        sb += dy[r * d + j];
      }
      sw = mc_block_sum(sw);
      sb = mc_block_sum(sb);
      if (threadIdx.x == 0) dw[j] = (float)sw, db[j] = (float)sb;
      continue;
    }
    const float *xr = x + i * d, *gr = dy + i * d;
    float m = mean[i], s = rstd[i];
    double pg = 0.0, pgx = 0.0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      double g = (double)gr[j] * w[j];
      pg += g;
      pgx += g * ((xr[j] - m) * s);
    }
    double sg = mc_block_sum(pg), sgx = mc_block_sum(pgx);
    float a = rms ? 0.0f : (float)(sg / (double)d), c = (float)(sgx / (double)d);
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x)
      dx[i * d + j] = s * (gr[j] * w[j] - a - (xr[j] - m) * s * c) + (dr ? dr[i * d + j] : 0.0f);
  }
}

/* ---- pooling NCHW ---- */

struct mc_pool {
  int64_t n, c, h, w, oh, ow, kh, kw, stride_h, stride_w, pad_h, pad_w;
};

/* Index in the plane of the window's max (first max, NaN wins), -1 if empty. */
__device__ int64_t mc_pool_argmax(const float *xc, const mc_pool p, int64_t oy, int64_t ox) {
  int64_t hs = oy * p.stride_h - p.pad_h, ws = ox * p.stride_w - p.pad_w;
  int64_t h0 = hs > 0 ? hs : 0, h1 = hs + p.kh < p.h ? hs + p.kh : p.h;
  int64_t w0 = ws > 0 ? ws : 0, w1 = ws + p.kw < p.w ? ws + p.kw : p.w;
  if (h0 >= h1 || w0 >= w1) return -1;
  int64_t at = h0 * p.w + w0;
  float mx = -INFINITY;
  for (int64_t iy = h0; iy < h1; iy++)
    for (int64_t ix = w0; ix < w1; ix++) {
      float v = xc[iy * p.w + ix];
      if (v > mx || v != v) {
        mx = v;
        at = iy * p.w + ix;
      }
    }
  return at;
}

__device__ __noinline__ void mc_maxpool2d(float *y, const float *x, const mc_pool p) {
  MC_FOR(i, p.n * p.c * p.oh * p.ow) {
    int64_t ox = i % p.ow, oy = i / p.ow % p.oh, pl = i / (p.ow * p.oh);
    const float *xc = x + pl * p.h * p.w;
    int64_t at = mc_pool_argmax(xc, p, oy, ox);
    y[i] = at < 0 ? -INFINITY : xc[at];
  }
}

/* dx zeroed before the launch; windows may overlap: atomics. */
__device__ __noinline__ void mc_maxpool2d_grad(float *dx, const float *x, const float *g, const mc_pool p) {
  MC_FOR(i, p.n * p.c * p.oh * p.ow) {
    int64_t ox = i % p.ow, oy = i / p.ow % p.oh, pl = i / (p.ow * p.oh);
    int64_t at = mc_pool_argmax(x + pl * p.h * p.w, p, oy, ox);
    if (at >= 0) atomicAdd(&dx[pl * p.h * p.w + at], g[i]);
  }
}

__device__ float mc_pool_divisor(const mc_pool p, int64_t oy, int64_t ox) {
  int64_t hs = oy * p.stride_h - p.pad_h, ws = ox * p.stride_w - p.pad_w;
  int64_t he = hs + p.kh < p.h + p.pad_h ? hs + p.kh : p.h + p.pad_h;
  int64_t we = ws + p.kw < p.w + p.pad_w ? ws + p.kw : p.w + p.pad_w;
  return (float)((he - hs) * (we - ws));
}

__device__ __noinline__ void mc_avgpool2d(float *y, const float *x, const mc_pool p, int grad) {
  MC_FOR(i, p.n * p.c * p.oh * p.ow) {
    int64_t ox = i % p.ow, oy = i / p.ow % p.oh, pl = i / (p.ow * p.oh);
    int64_t hs = oy * p.stride_h - p.pad_h, ws = ox * p.stride_w - p.pad_w;
    int64_t h0 = hs > 0 ? hs : 0, h1 = hs + p.kh < p.h ? hs + p.kh : p.h;
    int64_t w0 = ws > 0 ? ws : 0, w1 = ws + p.kw < p.w ? ws + p.kw : p.w;
    if (grad) { /* y is dx (zeroed), x is g */
      float share = x[i] / mc_pool_divisor(p, oy, ox);
      for (int64_t iy = h0; iy < h1; iy++)
        for (int64_t ix = w0; ix < w1; ix++) atomicAdd(&y[pl * p.h * p.w + iy * p.w + ix], share);
    } else {
      float sum = 0.0f;
      for (int64_t iy = h0; iy < h1; iy++)
        for (int64_t ix = w0; ix < w1; ix++) sum += x[pl * p.h * p.w + iy * p.w + ix];
      y[i] = sum / mc_pool_divisor(p, oy, ox);
    }
  }
}

/* ---- upsampling by an integer scale, [planes, H, W] -> [planes, H*s, W*s] ---- */

__device__ __noinline__ void mc_upsample_nearest(float *y, const float *x, int64_t planes, int64_t h,
                                    int64_t w, int64_t s) {
  MC_FOR(i, planes * h * s * w * s) {
    int64_t ox = i % (w * s), oy = i / (w * s) % (h * s), pl = i / (w * s * h * s);
    y[i] = x[(pl * h + oy / s) * w + ox / s];
  }
}

__device__ __noinline__ void mc_upsample_nearest_grad(float *dx, const float *g, int64_t planes, int64_t h,
                                         int64_t w, int64_t s) {
  MC_FOR(i, planes * h * w) {
    int64_t ix = i % w, iy = i / w % h, pl = i / (w * h);
    float sum = 0.0f;
    for (int64_t dy = 0; dy < s; dy++)
      for (int64_t dxi = 0; dxi < s; dxi++) sum += g[(pl * h * s + iy * s + dy) * w * s + ix * s + dxi];
    dx[i] = sum;
  }
}

struct mc_taps {
  int64_t i0, i1;
  float l0, l1;
};

__device__ mc_taps mc_linear_taps(int64_t o, int64_t size, int64_t scale) {
  float inv = (float)(1.0 / (double)scale);
  float src = (float)((double)inv * ((double)o + 0.5) - 0.5);
  if (src < 0.0f) src = 0.0f;
  mc_taps t;
  t.i0 = (int64_t)src;
  if (t.i0 > size - 1) t.i0 = size - 1;
  t.i1 = t.i0 + (t.i0 < size - 1 ? 1 : 0);
  t.l1 = src - (float)t.i0;
  if (t.l1 > 1.0f) t.l1 = 1.0f;
  t.l0 = 1.0f - t.l1;
  return t;
}

/* grad 0: y = bilinear(x); grad 1: y is dx (zeroed), x is g, spread. */
__device__ __noinline__ void mc_upsample_bilinear(float *y, const float *x, int64_t planes, int64_t h,
                                     int64_t w, int64_t s, int grad) {
  int64_t oh = h * s, ow = w * s;
  MC_FOR(i, planes * oh * ow) {
    int64_t ox = i % ow, oy = i / ow % oh, pl = i / (ow * oh);
    mc_taps ty = mc_linear_taps(oy, h, s), tx = mc_linear_taps(ox, w, s);
    int64_t r0 = (pl * h + ty.i0) * w, r1 = (pl * h + ty.i1) * w;
    if (grad) {
      float v = x[i];
      atomicAdd(&y[r0 + tx.i0], ty.l0 * tx.l0 * v);
      atomicAdd(&y[r0 + tx.i1], ty.l0 * tx.l1 * v);
      atomicAdd(&y[r1 + tx.i0], ty.l1 * tx.l0 * v);
      atomicAdd(&y[r1 + tx.i1], ty.l1 * tx.l1 * v);
    } else {
      y[i] = ty.l0 * (tx.l0 * x[r0 + tx.i0] + tx.l1 * x[r0 + tx.i1]) +
             ty.l1 * (tx.l0 * x[r1 + tx.i0] + tx.l1 * x[r1 + tx.i1]);
    }
  }
}

/* ---- GEMM: C[M,N] = op(A) op(B); blockIdx.x/y tile C, z is the batch ---- */

/* Element (r, c) of op(X) for a row-major X with row stride ld. */
__device__ __forceinline__ float mc_at(const float *x, int64_t ld, int trans, int64_t r, int64_t c) {
  return trans ? x[c * ld + r] : x[r * ld + c];
}

/* f32: 64x64 tiles, 256 threads, 4x4 outputs a thread. */
__device__ __noinline__ void mc_gemm_f32(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                            int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc) {
  __shared__ float as[16][64 + 1];
  __shared__ float bs[16][64 + 1];
  int64_t row0 = (int64_t)blockIdx.y * 64, col0 = (int64_t)blockIdx.x * 64;
  int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
  float acc[4][4];
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
  for (int64_t k0 = 0; k0 < k; k0 += 16) {
    /* neighbouring threads read neighbouring addresses (coalesced): along
     * k for a row-major A and a transposed B, along m or n otherwise */
    for (int e = threadIdx.x; e < 16 * 64; e += blockDim.x) {
      int ka = ta ? e / 64 : e % 16, ma = ta ? e % 64 : e / 16;
      int kb = tb ? e % 16 : e / 64, nb = tb ? e / 16 : e % 64;
      int64_t r = row0 + ma, kc = k0 + ka, cc = col0 + nb, kd = k0 + kb;
      as[ka][ma] = r < m && kc < k ? mc_at(a, lda, ta, r, kc) : 0.0f;
      bs[kb][nb] = cc < n && kd < k ? mc_at(b, ldb, tb, kd, cc) : 0.0f;
    }
    __syncthreads();
    for (int kk = 0; kk < 16; kk++) {
      float av[4], bv[4];
      for (int i = 0; i < 4; i++) av[i] = as[kk][tr + 16 * i];
      for (int j = 0; j < 4; j++) bv[j] = bs[kk][tc + 16 * j];
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++) {
      int64_t r = row0 + tr + 16 * i, cc = col0 + tc + 16 * j;
      if (r < m && cc < n) c[r * ldc + cc] = acc[i][j];
    }
}

#if __CUDA_ARCH__ >= 800 && !defined(MC_EMU_MMA) /* tests/cuda_emu brings its own */
/* Two floats to a bf16x2 register (round to nearest even): lo in the low half. */
__device__ __forceinline__ uint32_t mc_pack_bf16(float lo, float hi) {
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

/* acc[16x8] += a[16x16] b[16x8] on the tensor cores, the fragments laid
 * out as the PTX ISA's mma.m16n8k16 (.bf16, row.col, f32 accumulate). */
__device__ __forceinline__ void mc_mma_bf16_16816(float *acc, const uint32_t *a, const uint32_t *b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif

/* bf16 tensor cores (mma.sync m16n8k16, f32 accumulate): 64x64 tiles,
 * 128 threads = 4 warps of 32x32, K in steps of 16. Operands are
 * rounded to bf16 as the C runtime's modelc_rt_gemm_bf16 rounds them. */
__device__ __noinline__ void mc_gemm_bf16(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                             int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc) {
  __shared__ float as[64][16 + 1]; /* [m][k], already rounded */
  __shared__ float bs[16][64 + 1]; /* [k][n] */
  int64_t row0 = (int64_t)blockIdx.y * 64, col0 = (int64_t)blockIdx.x * 64;
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int wm = warp / 2 * 32, wn = warp % 2 * 32, group = lane / 4, quad = lane % 4;
  float acc[2][4][4];
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 4; j++)
      for (int q = 0; q < 4; q++) acc[i][j][q] = 0.0f;
  for (int64_t k0 = 0; k0 < k; k0 += 16) {
    for (int e = threadIdx.x; e < 16 * 64; e += blockDim.x) { /* coalesced, as in mc_gemm_f32 */
      int kk = ta ? e / 64 : e % 16, mm = ta ? e % 64 : e / 16;
      int kb = tb ? e % 16 : e / 64, nn = tb ? e / 16 : e % 64;
      int64_t r = row0 + mm, ka = k0 + kk, kc = k0 + kb, cc = col0 + nn;
      as[mm][kk] = r < m && ka < k ? mc_at(a, lda, ta, r, ka) : 0.0f;
      bs[kb][nn] = cc < n && kc < k ? mc_at(b, ldb, tb, kc, cc) : 0.0f;
    }
    __syncthreads();
#if __CUDA_ARCH__ >= 800
    uint32_t af[2][4], bf[4][2];
    for (int i = 0; i < 2; i++) {
      int r = wm + i * 16 + group;
      af[i][0] = mc_pack_bf16(as[r][quad * 2], as[r][quad * 2 + 1]);
      af[i][1] = mc_pack_bf16(as[r + 8][quad * 2], as[r + 8][quad * 2 + 1]);
      af[i][2] = mc_pack_bf16(as[r][quad * 2 + 8], as[r][quad * 2 + 9]);
      af[i][3] = mc_pack_bf16(as[r + 8][quad * 2 + 8], as[r + 8][quad * 2 + 9]);
    }
    for (int j = 0; j < 4; j++) {
      int col = wn + j * 8 + group;
      bf[j][0] = mc_pack_bf16(bs[quad * 2][col], bs[quad * 2 + 1][col]);
      bf[j][1] = mc_pack_bf16(bs[quad * 2 + 8][col], bs[quad * 2 + 9][col]);
    }
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 4; j++) mc_mma_bf16_16816(acc[i][j], af[i], bf[j]);
#else /* no bf16 MMA before sm_80: the same products on the FMA units */
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 4; j++)
        for (int q = 0; q < 4; q++) {
          int r = wm + i * 16 + group + (q >= 2 ? 8 : 0), col = wn + j * 8 + quad * 2 + (q & 1);
          for (int kk = 0; kk < 16; kk++)
            acc[i][j][q] = fmaf(mc_round_bf16(as[r][kk]), mc_round_bf16(bs[kk][col]), acc[i][j][q]);
        }
#endif
    __syncthreads();
  }
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 4; j++)
      for (int q = 0; q < 4; q++) {
        int64_t r = row0 + wm + i * 16 + group + (q >= 2 ? 8 : 0);
        int64_t cc = col0 + wn + j * 8 + quad * 2 + (q & 1);
        if (r < m && cc < n) c[r * ldc + cc] = acc[i][j][q];
      }
}

/* ---- the optimizer step, all on the device ---- */

/* *sumsq += sum of (g * scale)^2 over the gradients, which are scaled in
 * place when scale != 1 (the average over micro-batches). */
extern "C" __global__ void __launch_bounds__(MC_BLOCK)
    modelc_grad_sumsq(float *g, int64_t n, float scale, double *sumsq) {
  double s = 0.0;
  MC_FOR(i, n) {
    float v = g[i];
    if (scale != 1.0f) g[i] = v = v * scale;
    s += (double)v * v;
  }
  s = mc_block_sum(s);
  if (threadIdx.x == 0) atomicAdd(sumsq, s);
}

/* The clip factor of torch.nn.utils.clip_grad_norm_, from the norm on
 * the device: no round trip to the host. */
__device__ __forceinline__ float mc_clip(const double *sumsq, double max_norm) {
  if (max_norm <= 0.0) return 1.0f;
  float clip = (float)(max_norm / (sqrt(*sumsq) + 1e-6));
  return clip < 1.0f ? clip : 1.0f;
}

/* torch.optim.AdamW on one tensor (modelc_rt_adamw), the gradient clipped
 * first and zeroed after. Scalars derived from the step on the host. */
extern "C" __global__ void __launch_bounds__(MC_BLOCK)
    modelc_adamw(float *param, float *grad, float *m, float *v, int64_t n, float decay, float w1,
                 float b2, float w2, float neg_step_size, float correction2_sqrt, float eps,
                 const double *sumsq, double max_norm) {
  float clip = mc_clip(sumsq, max_norm);
  MC_FOR(i, n) {
    float g = clip < 1.0f ? grad[i] * clip : grad[i];
    float p = param[i] * decay;
    float mi = w1 < 0.5f ? fmaf(w1, g - m[i], m[i]) : fmaf(w1 - 1.0f, g - m[i], g);
    float vi = fmaf(w2 * g, g, v[i] * b2);
    float denom = sqrtf(vi) / correction2_sqrt;
    denom = denom + eps;
    param[i] = p + (neg_step_size * mi) / denom;
    m[i] = mi;
    v[i] = vi;
    grad[i] = 0.0f;
  }
}

/* torch.optim.SGD (modelc_rt_sgd), clipped first, gradient zeroed after. */
extern "C" __global__ void __launch_bounds__(MC_BLOCK)
    modelc_sgd(float *param, float *grad, float *buf, int64_t n, float lr, float momentum,
               int nesterov, float weight_decay, int first_step, const double *sumsq,
               double max_norm) {
  float clip = mc_clip(sumsq, max_norm);
  MC_FOR(i, n) {
    float d = clip < 1.0f ? grad[i] * clip : grad[i];
    if (weight_decay != 0.0f) d = fmaf(param[i], weight_decay, d);
    if (momentum != 0.0f) {
      float b = d;
      if (!first_step) {
        b = buf[i] * momentum;
        b = b + d;
      }
      buf[i] = b;
      d = nesterov ? fmaf(b, momentum, d) : b;
    }
    param[i] = fmaf(d, -lr, param[i]);
    grad[i] = 0.0f;
  }
}

/* ---- attention: flash-style forward and backward ----
 * The fused flash_attention op (docs/fusion.md) and its gradient, as the
 * C runtime's modelc_rt_flash_attention(_grad) compute them.
 *
 * Layout "bhtd": q, o, do, dq [B, H, T, D]; k, v, dk, dv [B, HKV, T, D];
 * "bthd": the same with T before the heads ([B, T, H, D]). H is a multiple
 * of HKV (grouped-query attention: head h reads kv head h / (H / HKV));
 * lse [B, H, T]. Scores are scale * q.k, masked by the rule of
 * mc_attention_mask (causal, window, global tokens); a row with no
 * allowed key gives zeros and lse -inf. rope > 0 rotates q and k
 * (rotate-half, that base, as mc_rope) as they are read, and dq, dk are
 * rotated back before they are written. The softmax is online (running
 * max and sum), so no [T, T] matrix is stored: the forward keeps lse per
 * row and the backward recomputes the probabilities from it.
 *
 * A warp per query (or key) row, lanes splitting D (D <= 128, four
 * values a lane), K/V (or Q/dO) tiles of 32 rows in shared memory. f32
 * throughout; the rotation's angles are computed as they are read (in
 * double, like the C tables): simple, not fast. */

#define MC_ATTN_TILE 32
#define MC_ATTN_ROWS 4 /* warps, hence rows, a block */
#define MC_ATTN_MAXD 128

typedef struct mc_flash {
  int64_t b, h, kv_h, t, d;
  int causal, bthd;
  int64_t window, global;
  float scale, rope;
} mc_flash;

__device__ __forceinline__ int mc_attn_allowed(int64_t i, int64_t j, int causal, int64_t window,
                                               int64_t global) {
  int64_t dist = i > j ? i - j : j - i;
  return (!causal || j <= i) && (window == 0 || dist < window || i < global || j < global);
}

__device__ __forceinline__ float mc_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/* Element offset of row i of head h (of `heads`) of batch b. */
__device__ __forceinline__ int64_t mc_fa_row(const mc_flash &p, int64_t b, int64_t h, int64_t heads,
                                             int64_t i) {
  return p.bthd ? ((b * p.t + i) * heads + h) * p.d : ((b * heads + h) * p.t + i) * p.d;
}

/* Element c of a row at position pos, rotated by pos (sign 1) or back
 * (sign -1); the element itself without rope. */
__device__ float mc_fa_read(const float *row, int64_t c, int64_t pos, const mc_flash &p, float sign) {
  int64_t half = p.d / 2;
  if (p.rope <= 0.0f || (p.d % 2 && c == p.d - 1)) return row[c];
  int64_t i = c < half ? c : c - half;
  double a = (double)pos * pow((double)p.rope, -2.0 * (double)i / (double)p.d);
  float cs = (float)cos(a), sn = sign * (float)sin(a);
  return c < half ? row[c] * cs - row[c + half] * sn : row[c] * cs + row[c - half] * sn;
}

/* Writes a warp's row (four values a lane in v) to dst, rotated back by
 * pos; row is the warp's [MC_ATTN_MAXD] scratch. Every thread of the
 * block calls it (it synchronises); write = 0 for rows past T. */
__device__ void mc_fa_write_back(float *dst, const float *v, float *row, int64_t pos, const mc_flash &p,
                                 int lane, int write) {
  for (int c = 0; c < 4; c++) row[lane + 32 * c] = v[c];
  __syncthreads();
  if (write)
    for (int c = 0; c < 4; c++)
      if (lane + 32 * c < p.d) dst[lane + 32 * c] = mc_fa_read(row, lane + 32 * c, pos, p, -1.0f);
  __syncthreads();
}

/* Rows [r0, r0 + MC_ATTN_TILE) of one head into a [32][128] tile, rotated
 * when rotate (q or k), zero past T. */
__device__ void mc_fa_load(float (*tile)[MC_ATTN_MAXD], const float *x, int64_t b, int64_t h,
                           int64_t heads, int64_t r0, const mc_flash &p, int rotate) {
  for (int e = threadIdx.x; e < MC_ATTN_TILE * MC_ATTN_MAXD; e += blockDim.x) {
    int r = e / MC_ATTN_MAXD, c = e % MC_ATTN_MAXD;
    int64_t i = r0 + r;
    tile[r][c] = i < p.t && c < p.d
                     ? (rotate ? mc_fa_read(x + mc_fa_row(p, b, h, heads, i), c, i, p, 1.0f)
                               : x[mc_fa_row(p, b, h, heads, i) + c])
                     : 0.0f;
  }
}

/* out, lse: grid (ceil(T / 4), H, B), block 128. */
__device__ __noinline__ void mc_flash_attention(float *o, float *lse, const float *q, const float *k,
                                                const float *v, mc_flash p) {
  __shared__ float ks[MC_ATTN_TILE][MC_ATTN_MAXD], vs[MC_ATTN_TILE][MC_ATTN_MAXD];
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int64_t b = blockIdx.z, h = blockIdx.y, hk = h / (p.h / p.kv_h), t = p.t, d = p.d;
  int64_t i = (int64_t)blockIdx.x * MC_ATTN_ROWS + warp, ic = i < t ? i : 0;
  const float *qi = q + mc_fa_row(p, b, h, p.h, ic);
  float qr[4], acc[4] = {0.0f, 0.0f, 0.0f, 0.0f}, mx = -INFINITY, sum = 0.0f;
  for (int c = 0; c < 4; c++) qr[c] = lane + 32 * c < d ? mc_fa_read(qi, lane + 32 * c, ic, p, 1.0f) : 0.0f;
  /* the last key any row of this block may see */
  int64_t last_row = (int64_t)blockIdx.x * MC_ATTN_ROWS + MC_ATTN_ROWS - 1;
  int64_t keys = p.causal && p.global == 0 ? (last_row + 1 < t ? last_row + 1 : t) : t;
  for (int64_t j0 = 0; j0 < keys; j0 += MC_ATTN_TILE) {
    __syncthreads();
    mc_fa_load(ks, k, b, hk, p.kv_h, j0, p, 1);
    mc_fa_load(vs, v, b, hk, p.kv_h, j0, p, 0);
    __syncthreads();
    if (i >= t) continue;
    for (int r = 0; r < MC_ATTN_TILE && j0 + r < t; r++) {
      if (!mc_attn_allowed(i, j0 + r, p.causal, p.window, p.global)) continue;
      float s = 0.0f;
      for (int c = 0; c < 4; c++) s += qr[c] * ks[r][lane + 32 * c];
      s = mc_warp_sum(s) * p.scale;
      float new_max = fmaxf(mx, s);
      float keep = expf(mx - new_max), e = expf(s - new_max);
      sum = sum * keep + e;
      for (int c = 0; c < 4; c++) acc[c] = acc[c] * keep + e * vs[r][lane + 32 * c];
      mx = new_max;
    }
  }
  if (i >= t) return;
  float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  float *oi = o + mc_fa_row(p, b, h, p.h, i);
  for (int c = 0; c < 4; c++)
    if (lane + 32 * c < d) oi[lane + 32 * c] = acc[c] * inv;
  if (lane == 0) lse[(b * p.h + h) * t + i] = sum > 0.0f ? mx + logf(sum) : -INFINITY;
}

/* delta = rowsum(dout * o) of query row i of head h, by one thread but
 * summed in the order of a warp's lanes and shuffles (as mc_fa_dq sums it
 * and as dP is summed), so that dP - delta is exactly 0 where it should
 * be (a row that sees one key). */
__device__ float mc_fa_delta(const float *o, const float *dout, int64_t b, int64_t h, int64_t i,
                             const mc_flash &p) {
  const float *orow = o + mc_fa_row(p, b, h, p.h, i), *drow = dout + mc_fa_row(p, b, h, p.h, i);
  float part[32];
  for (int lane = 0; lane < 32; lane++) {
    part[lane] = 0.0f;
    for (int c = 0; c < 4; c++)
      if (lane + 32 * c < p.d) part[lane] += drow[lane + 32 * c] * orow[lane + 32 * c];
  }
  for (int off = 16; off > 0; off >>= 1) {
    float next[32];
    for (int lane = 0; lane < 32; lane++) next[lane] = part[lane] + part[lane ^ off];
    for (int lane = 0; lane < 32; lane++) part[lane] = next[lane];
  }
  return part[0];
}

/* dq rows of head blockIdx.y (a warp each); the tiles are the caller's
 * shared memory. */
__device__ void mc_fa_dq(float *dq, const float *q, const float *k, const float *v, const float *o,
                         const float *dout, const float *lse, const mc_flash &p,
                         float (*ks)[MC_ATTN_MAXD], float (*vs)[MC_ATTN_MAXD],
                         float (*scratch)[MC_ATTN_MAXD]) {
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int64_t b = blockIdx.z, h = blockIdx.y, hk = h / (p.h / p.kv_h), t = p.t, d = p.d;
  int64_t i = (int64_t)blockIdx.x * MC_ATTN_ROWS + warp, ic = i < t ? i : 0;
  int64_t at = mc_fa_row(p, b, h, p.h, ic);
  float qr[4], dor[4], acc[4] = {0.0f, 0.0f, 0.0f, 0.0f}, dd = 0.0f;
  for (int c = 0; c < 4; c++) {
    int in = lane + 32 * c < d;
    qr[c] = in ? mc_fa_read(q + at, lane + 32 * c, ic, p, 1.0f) : 0.0f;
    dor[c] = in ? dout[at + lane + 32 * c] : 0.0f;
    dd += in ? dor[c] * o[at + lane + 32 * c] : 0.0f;
  }
  dd = mc_warp_sum(dd);
  float l = lse[(b * p.h + h) * t + ic];
  for (int64_t j0 = 0; j0 < t; j0 += MC_ATTN_TILE) {
    __syncthreads();
    mc_fa_load(ks, k, b, hk, p.kv_h, j0, p, 1);
    mc_fa_load(vs, v, b, hk, p.kv_h, j0, p, 0);
    __syncthreads();
    if (i >= t || l == -INFINITY) continue;
    for (int r = 0; r < MC_ATTN_TILE && j0 + r < t; r++) {
      if (!mc_attn_allowed(i, j0 + r, p.causal, p.window, p.global)) continue;
      float s = 0.0f, dp = 0.0f;
      for (int c = 0; c < 4; c++) {
        s += qr[c] * ks[r][lane + 32 * c];
        dp += dor[c] * vs[r][lane + 32 * c];
      }
      s = mc_warp_sum(s) * p.scale;
      dp = mc_warp_sum(dp);
      float ds = expf(s - l) * (dp - dd); /* dS = P (dP - delta) */
      for (int c = 0; c < 4; c++) acc[c] += ds * ks[r][lane + 32 * c];
    }
  }
  for (int c = 0; c < 4; c++) acc[c] *= p.scale;
  mc_fa_write_back(dq + at, acc, scratch[warp], ic, p, lane, i < t);
}

/* dk, dv rows of kv head hk (a warp per key row), summing over the query
 * rows of every head of its group (no atomics). */
__device__ void mc_fa_dkv(float *dk, float *dv, const float *q, const float *k, const float *v,
                          const float *o, const float *dout, const float *lse, const mc_flash &p,
                          int64_t hk, float (*qs)[MC_ATTN_MAXD], float (*dos)[MC_ATTN_MAXD],
                          float (*scratch)[MC_ATTN_MAXD], float *ls, float *deltas) {
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int64_t b = blockIdx.z, group = p.h / p.kv_h, t = p.t, d = p.d;
  int64_t j = (int64_t)blockIdx.x * MC_ATTN_ROWS + warp, jc = j < t ? j : 0;
  int64_t krow = mc_fa_row(p, b, hk, p.kv_h, jc);
  float kr[4], vr[4], dka[4] = {0.0f, 0.0f, 0.0f, 0.0f}, dva[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int c = 0; c < 4; c++) {
    int in = lane + 32 * c < d;
    kr[c] = in ? mc_fa_read(k + krow, lane + 32 * c, jc, p, 1.0f) : 0.0f;
    vr[c] = in ? v[krow + lane + 32 * c] : 0.0f;
  }
  for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
    for (int64_t i0 = 0; i0 < t; i0 += MC_ATTN_TILE) {
      __syncthreads();
      mc_fa_load(qs, q, b, h, p.h, i0, p, 1);
      mc_fa_load(dos, dout, b, h, p.h, i0, p, 0);
      if (threadIdx.x < MC_ATTN_TILE) {
        int64_t i = i0 + threadIdx.x;
        ls[threadIdx.x] = i < t ? lse[(b * p.h + h) * t + i] : -INFINITY;
        deltas[threadIdx.x] = i < t ? mc_fa_delta(o, dout, b, h, i, p) : 0.0f;
      }
      __syncthreads();
      if (j >= t) continue;
      for (int r = 0; r < MC_ATTN_TILE && i0 + r < t; r++) {
        if (ls[r] == -INFINITY || !mc_attn_allowed(i0 + r, j, p.causal, p.window, p.global)) continue;
        float s = 0.0f, dp = 0.0f;
        for (int c = 0; c < 4; c++) {
          s += qs[r][lane + 32 * c] * kr[c];
          dp += dos[r][lane + 32 * c] * vr[c];
        }
        s = mc_warp_sum(s) * p.scale;
        dp = mc_warp_sum(dp);
        float e = expf(s - ls[r]), ds = e * (dp - deltas[r]);
        for (int c = 0; c < 4; c++) {
          dva[c] += e * dos[r][lane + 32 * c];
          dka[c] += ds * qs[r][lane + 32 * c];
        }
      }
    }
  }
  if (j < t)
    for (int c = 0; c < 4; c++)
      if (lane + 32 * c < d) dv[krow + lane + 32 * c] = dva[c];
  for (int c = 0; c < 4; c++) dka[c] *= p.scale;
  mc_fa_write_back(dk + krow, dka, scratch[warp], jc, p, lane, j < t);
}

/* dq, dk, dv in one launch: grid (ceil(T / 4), H + HKV, B), block 128;
 * blocks y < H compute dq of head y, the others dk and dv of kv head
 * y - H (each recomputes its rows' delta, so neither waits for the
 * other). */
__device__ __noinline__ void mc_flash_attention_grad(float *dq, float *dk, float *dv, const float *q,
                                                     const float *k, const float *v, const float *o,
                                                     const float *lse, const float *dout, mc_flash p) {
  __shared__ float ta[MC_ATTN_TILE][MC_ATTN_MAXD], tb[MC_ATTN_TILE][MC_ATTN_MAXD];
  __shared__ float scratch[MC_ATTN_ROWS][MC_ATTN_MAXD], ls[MC_ATTN_TILE], deltas[MC_ATTN_TILE];
  if ((int64_t)blockIdx.y < p.h)
    mc_fa_dq(dq, q, k, v, o, dout, lse, p, ta, tb, scratch);
  else
    mc_fa_dkv(dk, dv, q, k, v, o, dout, lse, p, (int64_t)blockIdx.y - p.h, ta, tb, scratch, ls, deltas);
}

/* The kernels on their own, bhtd and no rope (tests/cuda_emu/attention_test.cc). */
extern "C" __global__ void __launch_bounds__(MC_ATTN_ROWS * 32)
    modelc_flash_attention_forward(const float *q, const float *k, const float *v, float *o,
                                   float *lse, int64_t heads, int64_t kv_heads, int64_t t, int64_t d,
                                   float scale, int causal, int64_t window, int64_t global) {
  mc_flash p = {gridDim.z, heads, kv_heads, t, d, causal, 0, window, global, scale, 0.0f};
  mc_flash_attention(o, lse, q, k, v, p);
}

/* dq and delta = rowsum(do * o): grid (ceil(T / 4), H, B), block 128. */
extern "C" __global__ void __launch_bounds__(MC_ATTN_ROWS * 32)
    modelc_flash_attention_backward_dq(const float *q, const float *k, const float *v,
                                       const float *o, const float *dout, const float *lse,
                                       float *delta, float *dq, int64_t heads, int64_t kv_heads,
                                       int64_t t, int64_t d, float scale, int causal,
                                       int64_t window, int64_t global) {
  __shared__ float ta[MC_ATTN_TILE][MC_ATTN_MAXD], tb[MC_ATTN_TILE][MC_ATTN_MAXD];
  __shared__ float scratch[MC_ATTN_ROWS][MC_ATTN_MAXD];
  mc_flash p = {gridDim.z, heads, kv_heads, t, d, causal, 0, window, global, scale, 0.0f};
  mc_fa_dq(dq, q, k, v, o, dout, lse, p, ta, tb, scratch);
  int64_t i = (int64_t)blockIdx.x * MC_ATTN_ROWS + threadIdx.x / 32;
  if (i < t && threadIdx.x % 32 == 0)
    delta[((int64_t)blockIdx.z * heads + blockIdx.y) * t + i] = mc_fa_delta(o, dout, blockIdx.z, blockIdx.y, i, p);
}

/* dk, dv: grid (ceil(T / 4), HKV, B), block 128. delta is recomputed
 * from o here, so the argument is unused (kept for the test's call). */
extern "C" __global__ void __launch_bounds__(MC_ATTN_ROWS * 32)
    modelc_flash_attention_backward_dkv(const float *q, const float *k, const float *v,
                                        const float *o, const float *dout, const float *lse,
                                        const float *delta, float *dk, float *dv, int64_t heads,
                                        int64_t kv_heads, int64_t t, int64_t d, float scale,
                                        int causal, int64_t window, int64_t global) {
  __shared__ float ta[MC_ATTN_TILE][MC_ATTN_MAXD], tb[MC_ATTN_TILE][MC_ATTN_MAXD];
  __shared__ float scratch[MC_ATTN_ROWS][MC_ATTN_MAXD], ls[MC_ATTN_TILE], deltas[MC_ATTN_TILE];
  (void)delta;
  mc_flash p = {gridDim.z, heads, kv_heads, t, d, causal, 0, window, global, scale, 0.0f};
  mc_fa_dkv(dk, dv, q, k, v, o, dout, lse, p, blockIdx.y, ta, tb, scratch, ls, deltas);
}

/* ---- fused loss and gating (rt_loss.c) ---- */

/* One block: lse [rows] of logits [rows, classes], and the mean over
 * kept rows of lse - logits[r, t_r] into loss[0]; NaN when a target is
 * out of range or a row has a NaN. */
__device__ __noinline__ void mc_softmax_ce(float *loss, float *lse, const float *logits,
                                           const int32_t *targets, int64_t rows, int64_t classes,
                                           int64_t ignore) {
  double total = 0.0, kept = 0.0, bad = 0.0;
  for (int64_t r = 0; r < rows; r++) {
    const float *x = logits + r * classes;
    float mx = -INFINITY;
    int nan = 0;
    for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) {
      mx = x[c] > mx ? x[c] : mx;
      nan |= x[c] != x[c];
    }
    mx = mc_block_max(mx);
    double part = 0.0;
    for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) part += (double)expf(x[c] - mx);
    double sum = mc_block_sum(part);
    float nans = (float)mc_block_sum((double)nan);
    float l = nans > 0.0f ? NAN : mx + (float)log(sum);
    if (threadIdx.x == 0) {
      lse[r] = l;
      int64_t t = targets[r];
      if (t != ignore) {
        if (t < 0 || t >= classes) bad += 1.0;
        else {
          total += (double)l - (double)x[t];
          kept += 1.0;
        }
      }
    }
  }
  if (threadIdx.x == 0) loss[0] = bad > 0.0 ? NAN : kept > 0.0 ? (float)(total / kept) : 0.0f;
}

/* dlogits [rows, classes] = (softmax - onehot(target)) * g / kept; zero
 * rows for ignored targets. A thread per element. */
__device__ __noinline__ void mc_softmax_ce_grad(float *dx, const float *logits, const float *lse,
                                                const int32_t *targets, const float *g,
                                                int64_t rows, int64_t classes, int64_t ignore) {
  __shared__ float scale;
  double kept = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) kept += targets[r] != ignore;
  kept = mc_block_sum(kept);
  if (threadIdx.x == 0) scale = kept > 0.0 ? (float)((double)g[0] / kept) : 0.0f;
  __syncthreads();
  MC_FOR(i, rows * classes) {
    int64_t r = i / classes, c = i % classes, t = targets[r];
    if (t == ignore || kept == 0.0) {
      dx[i] = 0.0f;
      continue;
    }
    float d = expf(logits[i] - lse[r]) * scale;
    dx[i] = c == t ? d - scale : d;
  }
}

/* act 0 silu, 1 gelu, 2 gelu_tanh, 3 sigmoid. */
__device__ __forceinline__ float mc_glu_act(float a, int act) {
  return act == 0 ? mc_silu(a) : act == 1 ? mc_gelu(a) : act == 2 ? mc_gelu_tanh(a) : mc_sigmoid(a);
}
__device__ __forceinline__ float mc_glu_act_grad(float a, int act) {
  if (act == 0) return mc_silu_grad(a);
  if (act == 1) return mc_gelu_grad(a);
  if (act == 2) return mc_gelu_tanh_grad(a);
  float s = mc_sigmoid(a);
  return s * (1.0f - s);
}

/* y [rows, f] = act(h[:, :f]) * h[:, f:] of h [rows, 2f]. */
__device__ __noinline__ void mc_glu(float *y, const float *h, int64_t rows, int64_t f, int act) {
  MC_FOR(i, rows * f) {
    int64_t r = i / f, c = i % f;
    y[i] = mc_glu_act(h[r * 2 * f + c], act) * h[r * 2 * f + f + c];
  }
}

/* dh [rows, 2f] from h and the output's gradient g [rows, f]. */
__device__ __noinline__ void mc_glu_grad(float *dh, const float *h, const float *g, int64_t rows,
                                         int64_t f, int act) {
  MC_FOR(i, rows * f) {
    int64_t r = i / f, c = i % f;
    float a = h[r * 2 * f + c], b = h[r * 2 * f + f + c];
    dh[r * 2 * f + c] = g[i] * b * mc_glu_act_grad(a, act);
    dh[r * 2 * f + f + c] = g[i] * mc_glu_act(a, act);
  }
}
