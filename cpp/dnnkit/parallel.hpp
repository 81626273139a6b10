// One thread pool (OpenMP) and work partitions that depend only on problem sizes, never on the thread
// count: every chunk is computed by the same code whichever thread runs it, so results are bit-identical
// for any number of threads. BLAS runs single-threaded inside (set at module import).
#pragma once
#include <omp.h>

#include <algorithm>
#include <atomic>

namespace dnnkit {

// Atomic: set_num_threads may run on one Python thread while native work (GIL released) reads it on another.
inline std::atomic<int>& thread_setting() {
    static std::atomic<int> n{0};  // 0: OpenMP's default (OMP_NUM_THREADS or the core count)
    return n;
}
inline int num_threads() {
    const int n = thread_setting().load(std::memory_order_relaxed);
    return n > 0 ? n : omp_get_max_threads();
}
inline void set_num_threads(int n) { thread_setting().store(n, std::memory_order_relaxed); }

// A 1-D partition of [0, n) into chunks of a fixed width.
struct Chunks {
    int n = 0, width = 1;
    int count() const { return n <= 0 ? 0 : (n + width - 1) / width; }
    int begin(int c) const { return c * width; }
    int end(int c) const { return std::min(n, (c + 1) * width); }
};

// Example (column) chunks: at most 8, multiples of 4 wide (Philox lanes), at least 32 columns.
inline Chunks column_chunks(int m) {
    if (m <= 64) return {m, std::max(m, 1)};
    const int w = std::max(32, ((m + 7) / 8 + 3) / 4 * 4);
    return {m, w};
}

// Parallelism only pays past some work; the decision depends on sizes only.
inline bool worth_parallel(double flops) { return flops > 4.0e5 && num_threads() > 1; }

}  // namespace dnnkit
