/* emu.h: just enough CUDA to run a generated MODEL_kernels.cu on the CPU,
 * for testing the CUDA backend where there is no GPU (tests/cuda_emu/).
 *
 * Included before the kernels (g++ -include emu.h). Each block's threads
 * are fibers (ucontext) on one OS thread: __syncthreads and warp shuffles
 * switch to the next fiber, so shared memory (static storage here),
 * barriers and shuffles behave as on a GPU for kernels whose barriers and
 * shuffles every thread of the block reaches (all the generated kernels
 * and the block reductions of the device library). Blocks run one after
 * another. __CUDA_ARCH__ is undefined, so the bf16 GEMM takes its FMA
 * path: the tensor-core path is not emulated. */
#ifndef MODELC_CUDA_EMU_H
#define MODELC_CUDA_EMU_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <atomic>

struct dim3 {
  unsigned x, y, z;
};
extern dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(n)
#define __shared__ static

void emu_barrier(void);      /* every thread of the block reaches it */
void emu_warp_barrier(void); /* every lane of the warp reaches it */
#define __syncthreads() emu_barrier()

/* Exchange through a per-block buffer, between two warp barriers. */
extern uint64_t emu_exchange[1024];
template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int offset) {
  uint64_t bits = 0;
  memcpy(&bits, &v, sizeof v);
  emu_exchange[threadIdx.x] = bits;
  emu_warp_barrier();
  unsigned partner = (threadIdx.x & ~31u) | ((threadIdx.x & 31u) ^ (unsigned)offset);
  bits = emu_exchange[partner];
  emu_warp_barrier();
  T r;
  memcpy(&r, &bits, sizeof r);
  return r;
}

/* One OS thread runs every fiber: plain read-modify-write is atomic. */
template <typename T> static inline T atomicAdd(T *at, T v) {
  T old = *at;
  *at = old + v;
  return old;
}
static inline int atomicExch(int *at, int v) {
  int old = *at;
  *at = v;
  return old;
}
static inline float __int_as_float(int v) {
  float f;
  memcpy(&f, &v, sizeof f);
  return f;
}
static inline float __uint_as_float(unsigned v) {
  float f;
  memcpy(&f, &v, sizeof f);
  return f;
}
static inline unsigned __float_as_uint(float f) {
  unsigned v;
  memcpy(&v, &f, sizeof v);
  return v;
}


/* With MC_EMU_MMA, the sm_80 path of the bf16 GEMM: mma.m16n8k16 and
 * cvt.bf16x2 emulated from the PTX ISA's fragment tables (written here
 * from the tables, apart from the kernel that loads the fragments), so
 * the tensor-core code is run, not its FMA fallback. */
#ifdef MC_EMU_MMA
#define __CUDA_ARCH__ 800

static inline uint32_t emu_bf16_bits(float x) { /* round to nearest even, as cvt.rn */
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7f800000u) == 0x7f800000u) return (bits >> 16) | ((bits & 0xffffu) ? 0x40u : 0u);
  return (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
}
static inline float emu_bf16_value(uint32_t half) {
  uint32_t bits = half << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}
/* cvt.rn.bf16x2.f32 d, hi, lo: lo in the low half */
static inline uint32_t mc_pack_bf16(float lo, float hi) { return emu_bf16_bits(lo) | (emu_bf16_bits(hi) << 16); }

/* A warp's registers, exchanged: a[4], b[2] a lane. */
extern uint32_t emu_mma_a[1024][4], emu_mma_b[1024][2];
/* mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, per the PTX ISA:
 * groupID g = lane >> 2, t = lane % 4; A element a_i (i = 0..7, two a
 * register, low half first) is row g + 8 * ((i >> 1) & 1), column
 * 2 t + (i & 1) + 8 * (i >> 2); B element b_i (i = 0..3) is row
 * 2 t + (i & 1) + 8 * (i >> 1), column g; C element c_i is row
 * g + 8 * (i >> 1), column 2 t + (i & 1). */
static inline void mc_mma_bf16_16816(float *acc, const uint32_t *a, const uint32_t *b) {
  unsigned lane = threadIdx.x & 31u, base = threadIdx.x & ~31u;
  for (int r = 0; r < 4; r++) emu_mma_a[threadIdx.x][r] = a[r];
  for (int r = 0; r < 2; r++) emu_mma_b[threadIdx.x][r] = b[r];
  emu_warp_barrier();
  float A[16][16], B[16][8];
  for (unsigned l = 0; l < 32; l++) {
    unsigned g = l >> 2, t = l & 3u;
    for (unsigned i = 0; i < 8; i++) {
      uint32_t reg = emu_mma_a[base + l][i >> 1], half = i & 1u ? reg >> 16 : reg & 0xffffu;
      A[g + 8 * ((i >> 1) & 1u)][2 * t + (i & 1u) + 8 * (i >> 2)] = emu_bf16_value(half);
    }
    for (unsigned i = 0; i < 4; i++) {
      uint32_t reg = emu_mma_b[base + l][i >> 1], half = i & 1u ? reg >> 16 : reg & 0xffffu;
      B[2 * t + (i & 1u) + 8 * (i >> 1)][g] = emu_bf16_value(half);
    }
  }
  emu_warp_barrier();
  unsigned g = lane >> 2, t = lane & 3u;
  for (unsigned i = 0; i < 4; i++) {
    unsigned row = g + 8 * (i >> 1), col = 2 * t + (i & 1u);
    float sum = acc[i];
    for (int k = 0; k < 16; k++) sum = fmaf(A[row][k], B[k][col], sum);
    acc[i] = sum;
  }
}
#endif
#endif
