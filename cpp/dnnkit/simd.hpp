// Run-time choice of the SIMD instruction set for dnnkit's own vectorised kernels (the wheel is built for the
// baseline x86-64 ISA, without -march=native). A kernel is written once as an always-inline body and compiled
// three times through DNNKIT_SIMD_CLONES: baseline (SSE2), AVX2, AVX-512F; simd::level() picks one per call.
//
// Same bits on every path: the translation units holding such kernels are compiled with -ffp-contract=off
// (CMakeLists.txt; AVX-512F implies FMA and GCC would otherwise fuse a*b+c on that path only), the kernels use
// no reassociating reductions (fixed-order partial sums written out, see smooth.hpp) and no libm calls, so every
// path performs the same IEEE operations in the same order. tests/test_gradcheck_smooth.py forces each available
// path and compares bit for bit.
//
// Override (tests, benchmarks, debugging): the environment variable DNNKIT_SIMD=baseline|avx2|avx512 read at first
// use, or simd::force(level) (_core.set_simd); a level the CPU lacks falls back to the best it has below it.
#pragma once
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace dnnkit {
namespace simd {

enum Level : int { baseline = 0, avx2 = 1, avx512 = 2 };

inline const char* name(int l) { return l == avx512 ? "avx512" : l == avx2 ? "avx2" : "baseline"; }

inline int detected() {
#if defined(__x86_64__) || defined(__i386__)
    static const int d = __builtin_cpu_supports("avx512f") ? avx512 : __builtin_cpu_supports("avx2") ? avx2 : baseline;
    return d;
#else
    return baseline;
#endif
}

inline int parse(const char* s) {
    if (!s) return -1;
    if (!std::strcmp(s, "baseline")) return baseline;
    if (!std::strcmp(s, "avx2")) return avx2;
    if (!std::strcmp(s, "avx512")) return avx512;
    return -1;
}

// -1: automatic (DNNKIT_SIMD if set and valid, else the best the CPU has)
inline std::atomic<int>& forced() {
    static std::atomic<int> f{parse(std::getenv("DNNKIT_SIMD"))};
    return f;
}
inline void force(int l) { forced().store(l, std::memory_order_relaxed); }

inline int level() {
    const int f = forced().load(std::memory_order_relaxed);
    const int d = detected();
    return f < 0 ? d : (f < d ? f : d);
}

}  // namespace simd
}  // namespace dnnkit

#if defined(__x86_64__) || defined(__i386__)
#define DNNKIT_HAS_SIMD_CLONES 1
#define DNNKIT_TARGET_AVX2 __attribute__((noinline, target("avx2")))
#define DNNKIT_TARGET_AVX512 __attribute__((noinline, target("avx512f,avx512dq,avx512vl,avx2")))
#else
#define DNNKIT_HAS_SIMD_CLONES 0
#endif
