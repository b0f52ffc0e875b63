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

#endif
