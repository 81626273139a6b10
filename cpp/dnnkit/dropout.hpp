// Dropout masks, in one place: the keep threshold, THE function that draws a layer's mask (draw_keep_mask, from
// the Philox generator of philox.hpp), the dropout settings of a pass, and the byte masks of one pass.
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

// THE function that draws a layer's dropout mask: the 0/1 keep decisions of layer `layer` for units [0, n) x
// examples [0, m), into out (n x m, row-major). Counter (example / 4, unit, layer, step), lane example % 4, key
// seed (philox_keep_row). Everything that needs a mask calls this: the passes (PassMasks below, for
// Network.forward/backward and the training loop), the gradient checker (through the masks of its cached pass)
// and dk.dropout_mask. Rows are independent (each thread owns its rows): identical for any thread count.
// parallel = false: on the calling thread only (the training loop's mask prefetch thread).
inline void draw_keep_mask(uint64_t seed, uint32_t step, uint32_t layer, int n, int m, double keep_prob,
                           uint8_t* out, bool parallel = true) {
    const uint64_t thr = keep_threshold(keep_prob);
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (parallel && double(n) * m > 65536.0 && num_threads() > 1)
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
// masks[l] (optional): explicit 0/1 masks (n[l] x m, row-major); nullptr -> drawn by draw_keep_mask.
template <class T>
struct Dropout {
    std::vector<double> keep;
    uint64_t seed = 0;
    uint32_t step = 0;
    std::vector<const T*> masks;
    bool on(int l) const { return l < int(keep.size()) && keep[l] < 1.0; }
    const T* mask(int l) const { return l < int(masks.size()) ? masks[l] : nullptr; }
};

// Owner of the byte masks of one pass: for each layer with dropout, the explicit 0/1 mask converted to bytes,
// or the mask drawn by draw_keep_mask under (seed, step). dims[l] = units of layer l.
class PassMasks {
   public:
    template <class T>
    const ByteMasks& draw(const Dropout<T>& dp, const std::vector<int>& dims, int m, uint32_t step,
                          bool parallel = true) {
        const int nk = int(dp.keep.size());
        bm_.bits.assign(nk, nullptr);
        bm_.scale.assign(nk, 1.0);
        bytes_.resize(nk);
        for (int l = 0; l < nk; ++l) {
            if (!dp.on(l)) continue;
            const int nl = dims[l];
            std::vector<uint8_t>& D = bytes_[l];
            D.resize(size_t(nl) * m);
            if (const T* src = dp.mask(l)) {
                for (size_t k = 0; k < D.size(); ++k) D[k] = src[k] != T(0);
            } else {
                draw_keep_mask(dp.seed, step, uint32_t(l), nl, m, dp.keep[l], D.data(), parallel);
            }
            bm_.bits[l] = D.data();
            bm_.scale[l] = 1.0 / dp.keep[l];
        }
        return bm_;
    }
    const ByteMasks& masks() const { return bm_; }
    void clear() {
        bytes_.clear();
        bm_ = ByteMasks{};
    }

   private:
    std::vector<std::vector<uint8_t>> bytes_;
    ByteMasks bm_;
};

}  // namespace dnnkit
