// Host emulation of the CUDA subset the generated row-wise kernels use: one std::thread per
// GPU thread, a std::barrier per block (__syncthreads) and per warp (__shfl_xor_sync).
// Used by codegen/tests/rows_host.rs to check results on the CPU; not a GPU model.
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

struct TsrDim { unsigned x = 0, y = 0, z = 0; };
thread_local TsrDim threadIdx;
TsrDim blockIdx;
static std::barrier<>* tsr_block_barrier;
struct TsrWarp { float slot[32]; std::unique_ptr<std::barrier<>> bar; };
static std::vector<TsrWarp>* tsr_warps;

#define __global__
#define __launch_bounds__(...)
#define __shared__ static
#define __restrict__
#define __forceinline__ inline
#define __device__
#define __align__(n) alignas(n)

static inline void __syncthreads() { tsr_block_barrier->arrive_and_wait(); }
static inline float __shfl_xor_sync(unsigned, float v, int mask) {
  TsrWarp& w = (*tsr_warps)[threadIdx.x / 32];
  const unsigned lane = threadIdx.x % 32;
  w.slot[lane] = v;
  w.bar->arrive_and_wait();
  const float r = w.slot[lane ^ (unsigned)mask];
  w.bar->arrive_and_wait();
  return r;
}
static inline float tsr_host_expf(float x) { return std::exp(x); }
#define __expf tsr_host_expf
static inline float __fdividef(float a, float b) { return a / b; }
static inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
struct uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };

static inline float tsr_f16_to_f32(unsigned short h) { _Float16 v; std::memcpy(&v, &h, 2); return (float)v; }
static inline unsigned short tsr_f32_to_f16(float f) { _Float16 v = (_Float16)f; unsigned short h; std::memcpy(&h, &v, 2); return h; }
static inline float tsr_bf16_to_f32(unsigned short h) { unsigned u = ((unsigned)h) << 16; float f; std::memcpy(&f, &u, 4); return f; }
static inline unsigned short tsr_f32_to_bf16(float f) {
  unsigned u; std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (unsigned short)(u >> 16);
}

// Run `kernel` over `blocks` blocks of `threads` threads.
static void tsr_launch(unsigned blocks, unsigned threads, const std::function<void()>& kernel) {
  for (unsigned b = 0; b < blocks; ++b) {
    blockIdx.x = b;
    std::barrier<> block(threads);
    tsr_block_barrier = &block;
    std::vector<TsrWarp> warps(threads / 32);
    for (auto& w : warps) w.bar = std::make_unique<std::barrier<>>(32);
    tsr_warps = &warps;
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
      pool.emplace_back([t, &kernel] { threadIdx.x = t; kernel(); });
    for (auto& th : pool) th.join();
  }
}

// Deterministic inputs in [-2, 2).
static std::vector<unsigned short> tsr_fill(size_t n, unsigned seed, bool bf16) {
  std::vector<unsigned short> v(n);
  unsigned s = seed * 2654435761u + 1;
  for (auto& e : v) {
    s = s * 1664525u + 1013904223u;
    const float f = ((s >> 8) & 0xffff) / 16384.0f - 2.0f;
    e = bf16 ? tsr_f32_to_bf16(f) : tsr_f32_to_f16(f);
  }
  return v;
}
