// The counter-based generator of dropout masks: Philox4x32-10 (Salmon et al., SC'11), scalar and AVX2.
// A mask bit is a pure function of (seed, step, layer, unit, example): the same for any thread count and
// any chunking of the work, reproducible by seed, and regenerable instead of being stored. The ONE function
// that draws a layer's mask from it is draw_keep_mask (dropout.hpp); the training loop's shuffle (train.hpp)
// uses Philox::block under a different key.
#pragma once
#include <algorithm>
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

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

// Philox4x32-10 for one row of a dropout mask: out[j] = (bits of example j) < thr, j in [0, mb).
// Counter (example / 4, unit, layer, step), lane example % 4, under the key `key` (the seed).
// The AVX2 version runs 8 counters side by side (_mm256_mul_epu32 on even and odd lanes); it is chosen at
// run time when the CPU has AVX2, else the scalar Philox::block loop runs. Same bits either way.
inline void philox_keep_row_scalar(uint64_t key, uint32_t unit, uint32_t layer, uint32_t step, int mb,
                                   uint64_t thr, uint8_t* out) {
    uint32_t r[4];
    for (int j = 0; j < mb; j += 4) {
        Philox::block(key, uint32_t(j >> 2), unit, layer, step, r);
        const int lanes = std::min(4, mb - j);
        for (int t = 0; t < lanes; ++t) out[j + t] = uint64_t(r[t]) < thr;
    }
}

#if defined(__x86_64__) || defined(__i386__)
struct Philox8 {  // 8 Philox counters side by side, word t of block k in lane k of c[t]
    __m256i c[4];
};

__attribute__((target("avx2"), always_inline)) inline void philox8_init(Philox8& g, uint32_t b0, uint32_t unit,
                                                                        uint32_t layer, uint32_t step) {
    g.c[0] = _mm256_add_epi32(_mm256_set1_epi32(int(b0)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    g.c[1] = _mm256_set1_epi32(int(unit));
    g.c[2] = _mm256_set1_epi32(int(layer));
    g.c[3] = _mm256_set1_epi32(int(step));
}

__attribute__((target("avx2"), always_inline)) inline void philox8_round(Philox8& g, __m256i k0, __m256i k1) {
    const __m256i M0 = _mm256_set1_epi64x(0xD2511F53u), M1 = _mm256_set1_epi64x(0xCD9E8D57u);
    // 32x32 -> 64 products of the even lanes and of the odd lanes, then hi / lo words back in place
    const __m256i pe0 = _mm256_mul_epu32(g.c[0], M0), po0 = _mm256_mul_epu32(_mm256_srli_epi64(g.c[0], 32), M0);
    const __m256i pe1 = _mm256_mul_epu32(g.c[2], M1), po1 = _mm256_mul_epu32(_mm256_srli_epi64(g.c[2], 32), M1);
    const __m256i hi0 = _mm256_blend_epi32(_mm256_srli_epi64(pe0, 32), po0, 0xAA);
    const __m256i lo0 = _mm256_blend_epi32(pe0, _mm256_slli_epi64(po0, 32), 0xAA);
    const __m256i hi1 = _mm256_blend_epi32(_mm256_srli_epi64(pe1, 32), po1, 0xAA);
    const __m256i lo1 = _mm256_blend_epi32(pe1, _mm256_slli_epi64(po1, 32), 0xAA);
    g.c[0] = _mm256_xor_si256(_mm256_xor_si256(hi1, g.c[1]), k0);
    g.c[1] = lo1;
    g.c[2] = _mm256_xor_si256(_mm256_xor_si256(hi0, g.c[3]), k1);
    g.c[3] = lo0;
}

// out[j] = bits of example (4 * first block + j) < thr, for j < n <= 32.
__attribute__((target("avx2"), always_inline)) inline void philox8_out(const Philox8& g, uint64_t thr, int n,
                                                                       uint8_t* out) {
    if (n == 32 && thr <= 0xFFFFFFFFull) {
        // transpose (block k, lane t) -> example 4k + t, compare, pack to 32 bytes of 0/1
        const __m256i t0 = _mm256_unpacklo_epi32(g.c[0], g.c[1]), t1 = _mm256_unpacklo_epi32(g.c[2], g.c[3]);
        const __m256i t2 = _mm256_unpackhi_epi32(g.c[0], g.c[1]), t3 = _mm256_unpackhi_epi32(g.c[2], g.c[3]);
        const __m256i u0 = _mm256_unpacklo_epi64(t0, t1), u1 = _mm256_unpackhi_epi64(t0, t1);  // ex 0-3|16-19, 4-7|20-23
        const __m256i u2 = _mm256_unpacklo_epi64(t2, t3), u3 = _mm256_unpackhi_epi64(t2, t3);  // ex 8-11|24-27, 12-15|28-31
        const __m256i v0 = _mm256_permute2x128_si256(u0, u1, 0x20), v1 = _mm256_permute2x128_si256(u2, u3, 0x20);
        const __m256i v2 = _mm256_permute2x128_si256(u0, u1, 0x31), v3 = _mm256_permute2x128_si256(u2, u3, 0x31);
        const __m256i sign = _mm256_set1_epi32(int(0x80000000u));
        const __m256i th = _mm256_xor_si256(_mm256_set1_epi32(int(uint32_t(thr))), sign);
        // v < thr (unsigned) as a signed compare of sign-flipped values: -1 / 0 per 32-bit lane
        const __m256i l0 = _mm256_cmpgt_epi32(th, _mm256_xor_si256(v0, sign));
        const __m256i l1 = _mm256_cmpgt_epi32(th, _mm256_xor_si256(v1, sign));
        const __m256i l2 = _mm256_cmpgt_epi32(th, _mm256_xor_si256(v2, sign));
        const __m256i l3 = _mm256_cmpgt_epi32(th, _mm256_xor_si256(v3, sign));
        const __m256i p01 = _mm256_packs_epi32(l0, l1), p23 = _mm256_packs_epi32(l2, l3);
        __m256i b = _mm256_packs_epi16(p01, p23);
        b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        b = _mm256_and_si256(b, _mm256_set1_epi8(1));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), b);
        return;
    }
    alignas(32) uint32_t a[4][8];
    for (int t = 0; t < 4; ++t) _mm256_store_si256(reinterpret_cast<__m256i*>(a[t]), g.c[t]);
    for (int j = 0; j < n; ++j) out[j] = uint64_t(a[j & 3][j >> 2]) < thr;
}

// Two groups of 8 counters per iteration: independent dependency chains, so the multiplies overlap.
__attribute__((target("avx2"))) inline void philox_keep_row_avx2(uint64_t key, uint32_t unit, uint32_t layer,
                                                                 uint32_t step, int mb, uint64_t thr,
                                                                 uint8_t* out) {
    const int nblocks = (mb + 3) / 4;
    for (int b0 = 0; b0 < nblocks; b0 += 16) {
        Philox8 g, h;
        philox8_init(g, uint32_t(b0), unit, layer, step);
        philox8_init(h, uint32_t(b0 + 8), unit, layer, step);
        uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
        for (int r = 0; r < 10; ++r) {
            const __m256i K0 = _mm256_set1_epi32(int(k0)), K1 = _mm256_set1_epi32(int(k1));
            philox8_round(g, K0, K1);
            philox8_round(h, K0, K1);
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        const int jb = b0 * 4;
        philox8_out(g, thr, std::min(mb - jb, 32), out + jb);
        if (mb - jb > 32) philox8_out(h, thr, std::min(mb - jb - 32, 32), out + jb + 32);
    }
}
#endif

inline void philox_keep_row(uint64_t key, uint32_t unit, uint32_t layer, uint32_t step, int mb, uint64_t thr,
                            uint8_t* out) {
#if defined(__x86_64__) || defined(__i386__)
    static const bool avx2 = __builtin_cpu_supports("avx2");
    if (avx2) return philox_keep_row_avx2(key, unit, layer, step, mb, thr, out);
#endif
    philox_keep_row_scalar(key, unit, layer, step, mb, thr, out);
}

}  // namespace dnnkit
