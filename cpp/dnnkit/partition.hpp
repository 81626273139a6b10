// Work partitions of the passes: which path (lean or wide) and how the wide path cuts its work. Every
// choice depends on sizes only, never on the thread count, so results are bit-identical for any number of threads.
#pragma once
#include <algorithm>
#include <atomic>

#include "arch.hpp"
#include "parallel.hpp"

namespace dnnkit {

// Lean path (small problems: one column chunk, whole-matrix BLAS calls, no OpenMP) up to this many flops of
// forward GEMMs; the wide path beyond.
constexpr double LEAN_MAX_FLOPS = 4.0e5;

// Wide path: column chunks of about WIDE_TARGET_COLS columns (at least 2 chunks once m >= 2 * WIDE_MIN_COLS),
// dW tiles of at most 512 x 512 — few, large BLAS calls, because each call re-packs the operand it shares
// with the other chunks (W in forward): at ~1 packed element per cycle against ~32 flops per cycle, a chunk
// of N columns spends ~16/N of its time packing, so narrow chunks cost more than their parallelism gains.
// Measured on [784, 1024, 1024, 10] m=1024 float64 (2-core dev machine): 8 chunks and 64 x 256 tiles
// 74 GFLOP/s; 4 chunks and 256 x 512 tiles 80-85; 2 chunks of 512 and 512 x 512 tiles 88-90.
// Every width depends on sizes only, never on the thread count.
constexpr int WIDE_MIN_COLS = 128, WIDE_TARGET_COLS = 512, WIDE_TILE_ROWS = 512, WIDE_TILE_COLS = 512;
inline Chunks wide_chunks(int m) {
    const int half = ((m + 1) / 2 + 3) / 4 * 4;
    const int w = std::max(WIDE_MIN_COLS, std::min(WIDE_TARGET_COLS, half));
    return {m, std::min(w, std::max(m, 1))};
}

// The wide path's schedule when it has 2+ column chunks (mlp.hpp, wide_pass): true (the default) one OpenMP region
// per pass (each chunk's forward and column-local backward, then every layer's dW tiles), false one region for the
// forward and one per layer of the backward. The same tasks either way, so the same bits: the switch exists so
// that tests can check that (_core.set_wide_fused) and benchmarks can compare the two.
inline std::atomic<bool>& wide_fused() {
    static std::atomic<bool> on{true};
    return on;
}

// [0, n) in ceil(n / max_width) chunks of (nearly) equal width, multiples of 16 (balanced tasks).
inline Chunks balanced_chunks(int n, int max_width) {
    const int k = std::max(1, (n + max_width - 1) / max_width);
    return {n, std::max(1, ((n + k - 1) / k + 15) / 16 * 16)};
}

// Lean when the forward GEMMs are at most LEAN_MAX_FLOPS (sizes only: the same path for any thread count).
inline bool lean_worth(const Arch& a, int m) {
    double flops = 0.0;
    for (int l = 1; l <= a.L(); ++l) flops += 2.0 * a.n(l) * a.n(l - 1) * m;
    return flops <= LEAN_MAX_FLOPS;
}

}  // namespace dnnkit
