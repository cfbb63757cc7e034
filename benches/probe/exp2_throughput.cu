// Throughput probe for the attention softmax's per-score work on one SM: x = s·scale − m,
// p = 2^x, l += p, P packed to 16 bits. Variants: every exp2 on the MUFU (`ex2.approx.f32`),
// `k` of every 16 scores' exp2 on the FMA pipe (round-to-nearest split 2^j·2^f, degree-3
// minimax polynomial for 2^f on [-0.5, 0.5], j added to the exponent bits), and exp2 of f16
// pairs on the MUFU (`ex2.approx.f16x2`, P already packed, unpacked to f32 for l).
// Reports SM cycles per score (clock64 around the loop, 384 threads = 3 warpgroups, 1 block
// per SM) and the max relative error of each form against exp2 in double on [-30, 0].
//
// Build and run (sm_90a): nvcc -O3 -gencode=arch=compute_90a,code=sm_90a exp2_throughput.cu -o p && ./p
// Measured on the H200 (2026-12-02, with the attention kernels at 2ee4b91 beside it):
// benches/results/attention-fma-exp2-2026-12-02-h200-2ee4b91.json. The FMA share speeds this
// probe up (18.1 vs 15.8 scores a cycle) and slows the attention kernels down (they are not
// MUFU-bound), so codegen keeps every exponential on the MUFU.
#include <cstdio>
#include <cmath>
#include <cuda_fp16.h>

__device__ __forceinline__ float mufu_exp2(float x) {
  float y; asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x)); return y;
}
__device__ __forceinline__ float fma_exp2(float x) {
  x = fmaxf(x, -126.f);  // j >= -126: the exponent field stays >= 0 (2^-126 or less reads as ~0)
  const float t = x + 12582912.f;  // 1.5 * 2^23: j = round(x) in the low mantissa bits
  const float f = x - (t - 12582912.f);
  const float p = fmaf(fmaf(fmaf(0.0551716691f, f, 0.242611122f), f, 0.693260985f), f, 0.999928074f);
  return __int_as_float(__float_as_int(p) + (__float_as_int(t) << 23));
}
__device__ __forceinline__ unsigned pack(float lo, float hi) {
  unsigned r; asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r;
}
__device__ __forceinline__ unsigned mufu_exp2_h2(unsigned x) {
  unsigned y; asm("ex2.approx.f16x2 %0, %1;" : "=r"(y) : "r"(x)); return y;
}

constexpr int N = 64;  // scores per thread (one 64 x 128 S tile of a warpgroup)

// MODE 0: FMA-pipe exp2 for K of every 16 scores, MUFU for the rest. MODE 1: f16x2 MUFU.
template <int MODE, int K>
__global__ void __launch_bounds__(384, 1) probe(const float* in, unsigned* sink, long long* cycles, int iters) {
  float s[N];
#pragma unroll
  for (int i = 0; i < N; ++i) s[i] = in[(threadIdx.x * N + i) % 4096];
  float m = 8.f, l = 0.f;
  unsigned acc = 0;
  const float sl2 = 0.18033688f;
  __syncthreads();
  const long long t0 = clock64();
  for (int it = 0; it < iters; ++it) {
    m += 1e-3f;
    unsigned pa[N / 2];
    if (MODE == 0) {
      float p[N];
#pragma unroll
      for (int i = 0; i < N; ++i) {
        const float x = fmaf(s[i], sl2, -m);
        p[i] = (i % 16) < K ? fma_exp2(x) : mufu_exp2(x);
        l += p[i];
      }
#pragma unroll
      for (int i = 0; i < N / 2; ++i) pa[i] = pack(p[2 * i], p[2 * i + 1]);
    } else {
#pragma unroll
      for (int i = 0; i < N / 2; ++i) {
        const unsigned h = mufu_exp2_h2(pack(fmaf(s[2 * i], sl2, -m), fmaf(s[2 * i + 1], sl2, -m)));
        pa[i] = h;
        const __half2 hh = *reinterpret_cast<const __half2*>(&h);
        l += __low2float(hh) + __high2float(hh);
      }
    }
#pragma unroll
    for (int i = 0; i < N / 2; ++i) acc ^= pa[i];
  }
  const long long t1 = clock64();
  sink[blockIdx.x * blockDim.x + threadIdx.x] = acc ^ __float_as_uint(l);
  if (threadIdx.x == 0) cycles[blockIdx.x] = t1 - t0;
}

__global__ void accuracy(float* err) {
  // err[0]: MUFU f32, err[1]: FMA polynomial, err[2]: MUFU f16x2 (relative, vs exp2 in double)
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const float x = -30.f * (float)i / (float)(gridDim.x * blockDim.x);
  const double ref = exp2((double)x);
  const float a = mufu_exp2(x), b = fma_exp2(x);
  const unsigned h = mufu_exp2_h2(pack(x, x));
  const float c = __low2float(*reinterpret_cast<const __half2*>(&h));
  // only where the f16 result is normal (2^-14): below it f16 has fewer bits
  const float ea = fabs(a / ref - 1.0), eb = fabs(b / ref - 1.0), ec = ref > 6.2e-5 ? fabs(c / ref - 1.0) : 0.0;
  atomicMax(reinterpret_cast<int*>(err), __float_as_int(ea));
  atomicMax(reinterpret_cast<int*>(err + 1), __float_as_int(eb));
  atomicMax(reinterpret_cast<int*>(err + 2), __float_as_int(ec));
  // -inf (a masked key) must give 0
  if (i == 0) err[3] = fma_exp2(-INFINITY) + fma_exp2(-200.f);
}

template <int MODE, int K>
void run(const char* name, const float* in, unsigned* sink, long long* cyc, int sms) {
  const int iters = 2000;
  probe<MODE, K><<<sms, 384>>>(in, sink, cyc, iters);
  probe<MODE, K><<<sms, 384>>>(in, sink, cyc, iters);
  cudaDeviceSynchronize();
  long long h[1024];
  cudaMemcpy(h, cyc, sms * sizeof(long long), cudaMemcpyDeviceToHost);
  double mean = 0;
  for (int i = 0; i < sms; ++i) mean += h[i];
  mean /= sms;
  const double scores = 384.0 * N * iters;
  printf("{\"variant\": \"%s\", \"cycles_per_score_per_sm\": %.5f, \"scores_per_cycle_per_sm\": %.2f}\n", name,
         mean / scores, scores / mean);
}

int main() {
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  float* in; unsigned* sink; long long* cyc; float* err;
  cudaMalloc(&in, 4096 * sizeof(float));
  cudaMalloc(&sink, sms * 384 * sizeof(unsigned));
  cudaMalloc(&cyc, sms * sizeof(long long));
  cudaMalloc(&err, 4 * sizeof(float));
  float hin[4096];
  for (int i = 0; i < 4096; ++i) hin[i] = (float)((i * 7919) % 1000) * 0.01f;
  cudaMemcpy(in, hin, sizeof(hin), cudaMemcpyHostToDevice);
  run<0, 0>("mufu_f32", in, sink, cyc, sms);
  run<0, 2>("fma_2_of_16", in, sink, cyc, sms);
  run<0, 4>("fma_4_of_16", in, sink, cyc, sms);
  run<0, 6>("fma_6_of_16", in, sink, cyc, sms);
  run<0, 8>("fma_8_of_16", in, sink, cyc, sms);
  run<0, 16>("fma_16_of_16", in, sink, cyc, sms);
  run<1, 0>("mufu_f16x2", in, sink, cyc, sms);
  cudaMemset(err, 0, 4 * sizeof(float));
  accuracy<<<1024, 256>>>(err);
  float he[4];
  cudaMemcpy(he, err, sizeof(he), cudaMemcpyDeviceToHost);
  printf("{\"max_rel_err\": {\"mufu_f32\": %.3g, \"fma_poly3\": %.3g, \"mufu_f16x2\": %.3g}, \"fma_exp2_of_-inf_plus_-200\": %.3g}\n",
         he[0], he[1], he[2], he[3]);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) { printf("CUDA error: %s\n", cudaGetErrorString(e)); return 1; }
  return 0;
}
