// Building blocks of the forward/backward passes of mlp.hpp: dropout masks as bytes from a vectorised Philox,
// fused and branch-free elementwise kernels, and the work partitions. Everything here depends on sizes only,
// never on the thread count, so results are bit-identical for any number of threads.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "activations.hpp"
#include "parallel.hpp"
#include "rng.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace dnnkit {

#define DNNKIT_ALWAYS_INLINE inline __attribute__((always_inline))

// ---------------------------------------------------------------------------------------------------------
// Dropout masks
// Philox4x32-10 for one row of a dropout mask: out[j] = (bits of example j) < thr, j in [0, mb).
// Bit-identical to dropout_bits (rng.hpp): counter (example / 4, unit, layer, step), lane example % 4.
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

// Inverted dropout from byte masks: v *= D * (1/keep), one vectorisable multiply per value.
// (v * (1/keep) may differ from the reference's v / keep in the last bit.)
template <class T>
DNNKIT_ALWAYS_INLINE void byte_dropout(const uint8_t* __restrict D, T scale, T* __restrict v, size_t n) {
    for (size_t k = 0; k < n; ++k) v[k] *= T(D[k]) * scale;
}

// ---------------------------------------------------------------------------------------------------------
// Elementwise kernels

// Sum of n values with 8 interleaved partial sums (vectorisable, fixed order: same bits on every run).
template <class T>
DNNKIT_ALWAYS_INLINE T row_sum(const T* x, int n) {
    T p[8] = {T(0), T(0), T(0), T(0), T(0), T(0), T(0), T(0)};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int t = 0; t < 8; ++t) p[t] += x[j + t];
    for (; j < n; ++j) p[j & 7] += x[j];
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

// Branch-free ReLU and its derivative (random signs make the branchy form mispredict half the time);
// the same values as act_forward / act_backward.
template <class T>
DNNKIT_ALWAYS_INLINE void bias_relu_forward(T* __restrict z, T bias, T* __restrict a, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        const T v = z[i] + bias;
        z[i] = v;
        a[i] = v > T(0) ? v : T(0);
    }
}
template <class T>
DNNKIT_ALWAYS_INLINE void relu_backward(const T* __restrict z, const T* __restrict da, T* __restrict dz, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        const T d = da[i];
        dz[i] = z[i] > T(0) ? d : T(0);
    }
}

// Z += b and A = g(Z) on columns [j0, j1) of an (nl x ld) layer; softmax column by column (max-shifted).
template <class T>
DNNKIT_ALWAYS_INLINE void bias_activation(Act act, const T* b, int nl, int ld, int j0, int j1, T alpha, T* Z, T* A) {
    const size_t w = size_t(j1 - j0);
    if (act == Act::relu) {  // fused: one pass
        for (int i = 0; i < nl; ++i) bias_relu_forward(Z + size_t(i) * ld + j0, b[i], A + size_t(i) * ld + j0, w);
        return;
    }
    for (int i = 0; i < nl; ++i) {
        T* zr = Z + size_t(i) * ld + j0;
        const T bi = b[i];
        for (size_t j = 0; j < w; ++j) zr[j] += bi;
    }
    if (act != Act::softmax) {
        if (size_t(ld) == w) act_forward(act, Z, A, size_t(nl) * w, alpha);  // one call over the whole layer
        else
            for (int i = 0; i < nl; ++i) act_forward(act, Z + size_t(i) * ld + j0, A + size_t(i) * ld + j0, w, alpha);
        return;
    }
    for (int j = j0; j < j1; ++j) {
        T mx = Z[j];
        for (int i = 1; i < nl; ++i) mx = std::max(mx, Z[size_t(i) * ld + j]);
        T s = T(0);
        for (int i = 0; i < nl; ++i) {
            const T e = std::exp(Z[size_t(i) * ld + j] - mx);
            A[size_t(i) * ld + j] = e;
            s += e;
        }
        const T inv = T(1) / s;
        for (int i = 0; i < nl; ++i) A[size_t(i) * ld + j] *= inv;
    }
}

// dZ[L] of n output values: canonical pairs give (A - Y) / m; sigmoid + mse adds the sigmoid derivative.
template <class T>
DNNKIT_ALWAYS_INLINE void output_delta(Act output, Loss loss, const T* AL, const T* Y, size_t n, T invm, T* d) {
    if (loss == Loss::mse && output == Act::sigmoid) {
        for (size_t k = 0; k < n; ++k) d[k] = (AL[k] - Y[k]) * AL[k] * (T(1) - AL[k]) * invm;
    } else {
        for (size_t k = 0; k < n; ++k) d[k] = (AL[k] - Y[k]) * invm;
    }
}

// dW += (l2/m) W + (l1/(2m)) sign(W) on rows [r0, r1) x columns [c0, c1) of an (. x ld) weight matrix.
template <class T>
DNNKIT_ALWAYS_INLINE void add_reg_grad(const T* W, T* dW, int ld, int r0, int r1, int c0, int c1, T cl2, T cl1) {
    if (cl2 == T(0) && cl1 == T(0)) return;
    for (int i = r0; i < r1; ++i)
        for (int j = c0; j < c1; ++j) {
            const T w = W[size_t(i) * ld + j];
            const T sg = w > T(0) ? T(1) : (w < T(0) ? T(-1) : T(0));
            dW[size_t(i) * ld + j] += cl2 * w + cl1 * sg;
        }
}

// ---------------------------------------------------------------------------------------------------------
// Partitions (sizes only)

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

// [0, n) in ceil(n / max_width) chunks of (nearly) equal width, multiples of 16 (balanced tasks).
inline Chunks balanced_chunks(int n, int max_width) {
    const int k = std::max(1, (n + max_width - 1) / max_width);
    return {n, std::max(1, ((n + k - 1) / k + 15) / 16 * 16)};
}

}  // namespace dnnkit
