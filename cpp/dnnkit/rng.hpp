// Counter-based RNG for dropout masks: Philox4x32-10 (Salmon et al., SC'11).
// A mask bit is a pure function of (seed, step, layer, unit, example): the same for any thread count and
// any chunking of the work, reproducible by seed, and regenerable in backward instead of being stored.
#pragma once
#include <cstdint>

namespace dnnkit {

struct Philox {
    static inline void round(uint32_t c[4], const uint32_t k[2]) {
        const uint64_t p0 = uint64_t(0xD2511F53u) * c[0];
        const uint64_t p1 = uint64_t(0xCD9E8D57u) * c[2];
        const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
        const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
        const uint32_t n0 = hi1 ^ c[1] ^ k[0], n1 = lo1, n2 = hi0 ^ c[3] ^ k[1], n3 = lo0;
        c[0] = n0; c[1] = n1; c[2] = n2; c[3] = n3;
    }
    // 4 x 32 random bits for counter (c0..c3) under a 64-bit key.
    static inline void block(uint64_t key, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t out[4]) {
        uint32_t c[4] = {c0, c1, c2, c3};
        uint32_t k[2] = {uint32_t(key), uint32_t(key >> 32)};
        for (int r = 0; r < 10; ++r) {
            round(c, k);
            k[0] += 0x9E3779B9u;
            k[1] += 0xBB67AE85u;
        }
        out[0] = c[0]; out[1] = c[1]; out[2] = c[2]; out[3] = c[3];
    }
};

// keep_prob -> 32-bit threshold: keep when bits < threshold (P = threshold / 2^32, exact to 2^-32).
inline uint64_t keep_threshold(double keep_prob) {
    if (keep_prob >= 1.0) return uint64_t(1) << 32;
    if (!(keep_prob > 0.0)) return 0;  // <= 0 or NaN: drop all (converting a negative double to uint64 is UB)
    return uint64_t(keep_prob * 4294967296.0);
}

// Writes the 0/1 keep decisions for units [0, n) x examples [j0, j1) of one layer into `out`
// (row-major, row stride ld, column j at out[i*ld + (j-j0)]). Counter = (example/4, unit, layer, step),
// lane = example % 4, so any column range gives the same bits for the same (unit, example).
template <class F>
inline void dropout_bits(uint64_t seed, uint32_t step, uint32_t layer, int n, int j0, int j1, uint64_t thr, F&& put) {
    for (int i = 0; i < n; ++i) {
        int j = j0;
        while (j < j1) {
            uint32_t r[4];
            const uint32_t blk = uint32_t(j >> 2);
            Philox::block(seed, blk, uint32_t(i), layer, step, r);
            const int lane0 = j & 3;
            const int lanes = (j1 - j < 4 - lane0) ? (j1 - j) : (4 - lane0);
            for (int t = 0; t < lanes; ++t) put(i, j + t, uint64_t(r[lane0 + t]) < thr);
            j += lanes;
        }
    }
}

}  // namespace dnnkit
