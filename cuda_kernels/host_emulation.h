// Host emulation of the little CUDA the kernels in this folder use, so that the very
// same .cu source compiles with g++ and runs on the CPU (tests/test_kernels_emulated.py).
//
// A "launch" (see host_launcher.cpp) runs every thread of the grid one after the
// other, setting blockIdx/threadIdx before each call. That is only faithful for
// kernels whose threads do not talk to each other: no __shared__, no
// __syncthreads, no warp intrinsics, no atomics. Each kernel here writes its own
// output elements from inputs nobody writes during the launch, so running threads
// in any order gives the result a GPU gives.
//
// Float arithmetic: x86-64 SSE (and aarch64) floats are IEEE binary32 like the
// GPU's. The kernels spell the sums whose rounding matters with __fmul_rn /
// __fadd_rn (never contracted to FMA by nvcc) and __fmaf_rn (always fused; std::fma
// is correctly rounded, in hardware or software); build with -ffp-contract=off so
// that g++ does not contract the others.
#pragma once

#include <cmath>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

// One emulated thread runs at a time per OS thread; thread_local lets two host
// threads run two launches at once (ctypes releases the GIL).
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

// Integer min/max as CUDA's device overloads.
__device__ inline int min(int a, int b) { return a < b ? a : b; }
__device__ inline int max(int a, int b) { return a > b ? a : b; }
__device__ inline long long min(long long a, long long b) { return a < b ? a : b; }
__device__ inline long long max(long long a, long long b) { return a > b ? a : b; }

// The single-precision maths the kernels call (fminf, fmaxf, floorf, fabsf, rintf,
// hypotf, atan2f) are the C library's, declared by <cmath> in the global namespace.
// (The GPU's hypotf and atan2f may differ from glibc's in the last bits: the tests
// compare those results within 1e-5, not exactly.)

__device__ inline float __saturatef(float x) {  // clamp to [0, 1], NaN -> 0
    return x >= 1.0f ? 1.0f : (x > 0.0f ? x : 0.0f);
}
__device__ inline float __fmul_rn(float a, float b) { return a * b; }
__device__ inline float __fadd_rn(float a, float b) { return a + b; }
__device__ inline float __fdiv_rn(float a, float b) { return a / b; }
__device__ inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
__device__ inline int __float2int_rd(float x) { return static_cast<int>(std::floor(x)); }
__device__ inline int __float2int_rn(float x) { return static_cast<int>(std::nearbyint(x)); }
