// STRATA_HD marks an inline function that compiles for the host and, under nvcc, for the device
// too (__host__ __device__), so the CPU and the CUDA kernels share one definition of their
// element math. Such functions avoid the standard library's host-only calls (bit casts and
// unaligned access go through __builtin_memcpy).
#pragma once

#if defined(__CUDACC__)
#define STRATA_HD __host__ __device__
#else
#define STRATA_HD
#endif
