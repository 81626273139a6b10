// Dropout masks: the keep threshold, the one function that draws a layer's mask (keep_mask, from the Philox
// generator of philox.hpp), the masks of one pass as bytes, and the dropout settings of a pass.
#pragma once
#include <cstdint>
#include <vector>

#include "parallel.hpp"
#include "philox.hpp"

namespace dnnkit {

// keep_prob -> 32-bit threshold: keep when bits < threshold (P = threshold / 2^32, exact to 2^-32).
inline uint64_t keep_threshold(double keep_prob) {
    if (keep_prob >= 1.0) return uint64_t(1) << 32;
    if (!(keep_prob > 0.0)) return 0;  // <= 0 or NaN: drop all (converting a negative double to uint64 is UB)
    return uint64_t(keep_prob * 4294967296.0);
}

// The 0/1 keep decisions of one layer, units [0, n) x examples [0, m), into out (n x m, row-major): the same
// bits as dropout_bits. Rows are independent (each thread owns its rows): identical for any thread count.
inline void keep_mask(uint64_t seed, uint32_t step, uint32_t layer, int n, int m, double keep_prob, uint8_t* out) {
    const uint64_t thr = keep_threshold(keep_prob);
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (double(n) * m > 65536.0 && num_threads() > 1)
    for (int i = 0; i < n; ++i) philox_keep_row(seed, uint32_t(i), layer, step, m, thr, out + size_t(i) * m);
}

// The masks of one pass, drawn once and used by forward and backward: 0/1 bytes per layer (n[l] x m,
// row-major), or nullptr where the layer has no dropout.
struct ByteMasks {
    std::vector<const uint8_t*> bits;
    std::vector<double> scale;  // 1 / keep_prob
    const uint8_t* get(int l) const { return l < int(bits.size()) ? bits[l] : nullptr; }
};

// Dropout settings of one pass. keep[l] for l = 0 (input) .. L-1 (hidden); never the output.
// masks[l] (optional): explicit 0/1 masks (n[l] x m, row-major); nullptr -> counter-based RNG.
template <class T>
struct Dropout {
    std::vector<double> keep;
    uint64_t seed = 0;
    uint32_t step = 0;
    std::vector<const T*> masks;
    bool on(int l) const { return l < int(keep.size()) && keep[l] < 1.0; }
    const T* mask(int l) const { return l < int(masks.size()) ? masks[l] : nullptr; }
};

// Applies inverted dropout of layer l to columns [j0, j1) of a (n x ld) row-major block:
// v = keep ? v / keep_prob : 0, element by element. The passes use byte masks (MLP::masks); the gradient
// checker uses this on a block of ones to get its per-element dropout factors.
template <class T>
inline void apply_dropout(const Dropout<T>& dp, int l, int n, int ld, int j0, int j1, T* v) {
    const T kp = T(dp.keep[l]);
    if (const T* D = dp.mask(l)) {
        for (int i = 0; i < n; ++i)
            for (int j = j0; j < j1; ++j) {
                T& x = v[size_t(i) * ld + j];
                x = D[size_t(i) * ld + j] != T(0) ? x / kp : T(0);
            }
        return;
    }
    dropout_bits(dp.seed, dp.step, uint32_t(l), n, j0, j1, keep_threshold(dp.keep[l]), [&](int i, int j, bool keep) {
        T& x = v[size_t(i) * ld + j];
        x = keep ? x / kp : T(0);
    });
}

}  // namespace dnnkit
