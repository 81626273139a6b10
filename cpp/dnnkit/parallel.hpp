// One thread pool (OpenMP) and work partitions that depend only on problem sizes, never on the thread
// count: every chunk is computed by the same code whichever thread runs it, so results are bit-identical
// for any number of threads. BLAS runs single-threaded inside (set once at module import, module.cpp).
#pragma once
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <thread>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace dnnkit {

// The most threads set_num_threads accepts: OpenMP aborts or crashes when it cannot create the threads asked
// for (10^6 threads: SIGSEGV). Exported to Python as _core.MAX_THREADS.
inline int max_threads() { return std::max(1024, 4 * omp_get_num_procs()); }

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

// One round of a spin-wait: a pause instruction for the first 4096 rounds, then a yield of the core.
inline void spin_relax(int spin) {
    if (spin < 4096) {
#if defined(__x86_64__) || defined(__i386__)
        _mm_pause();
#endif
    } else {
        std::this_thread::yield();
    }
}

// A 1-D partition of [0, n) into chunks of a fixed width.
struct Chunks {
    int n = 0, width = 1;
    int count() const { return n <= 0 ? 0 : (n + width - 1) / width; }
    int begin(int c) const { return c * width; }
    int end(int c) const { return std::min(n, (c + 1) * width); }
};

// Runs task(t, state, poller, stop) for t in [0, n) on the OpenMP pool, dynamically scheduled one task at a
// time, with one default-constructed State (scratch buffers) per thread. Interruption: `poll` (anything
// contextually convertible to bool and callable, e.g. std::function<bool()>; empty = never) is called before
// each task by OpenMP thread 0 only (the caller's thread, which may take the GIL); when it returns true, or a
// task returns false, the shared stop flag is set and every remaining task is skipped. `poller` tells a task
// that it runs on thread 0 (so may call poll itself between its own steps); `stop` lets a long task give up
// early. Returns false when stopped (outputs then partly written). Each task writes only its own outputs, so
// results do not depend on which thread ran what.
template <class State, class Poll, class Task>
bool parallel_tasks(int n, const Poll& poll, Task&& task) {
    std::atomic<bool> stop{false};
#pragma omp parallel num_threads(num_threads()) if (n > 1)
    {
        State state;
        const bool poller = poll && omp_get_thread_num() == 0;
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < n; ++t) {
            if (stop.load(std::memory_order_relaxed)) continue;
            if (poller && poll()) {
                stop.store(true);
                continue;
            }
            if (!task(t, state, poller, static_cast<const std::atomic<bool>&>(stop))) stop.store(true);
        }
    }
    return !stop.load();
}

}  // namespace dnnkit
