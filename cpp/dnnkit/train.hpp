// The native training loop: epochs x mini-batches, forward + backward, optimizer update, all in C++.
//
// Python is touched once per reporting interval (Trainer::run(n_epochs)), never per layer or mini-batch.
//
//   theta (nparams)          the network's flat buffer, updated in place: W1, b1, W2, b2, ...
//   X (n0 x m), Y (nL x m)   row-major, examples are columns (as MLP<T>)
//   per step:  batch columns gathered into Xb (n0 x mb) / Yb (nL x mb) through a seeded permutation,
//              dropout masks drawn once per step (vectorised Philox, the same bits as rng.hpp's
//              dropout_bits for (seed, step, layer, unit, example)) as bytes, used by forward and backward,
//              J and grad by the lean path (small problems: whole-matrix BLAS calls, no OpenMP) or the wide
//              path (MLP<T>'s parallel structure with larger BLAS calls), both on MLP<T>'s workspace,
//              theta -= optimizer update (gd | momentum | adam).
//
// Reproducibility: the permutation of epoch e is a Fisher-Yates shuffle driven by Philox keyed by the seed
// (a key distinct from the dropout key) and counter (i, e): it depends on (seed, epoch, m) only. Every
// reduction runs in a fixed order and every partition of work depends on sizes only, so theta after
// training is bit-identical for any thread count.
//
// Interruption: the caller's poll() runs between mini-batches on the calling thread (never inside an
// OpenMP region). When it asks to stop, theta and the optimizer state go back to their values at the
// start of the unfinished epoch: the caller sees the parameters of the last FINISHED epoch.
#pragma once
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "mlp.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace dnnkit {

enum class Optimizer : int { gd = 0, momentum = 1, adam = 2 };

inline Optimizer parse_optimizer(const std::string& s) {
    if (s == "gd") return Optimizer::gd;
    if (s == "momentum") return Optimizer::momentum;
    if (s == "adam") return Optimizer::adam;
    throw std::invalid_argument("unknown optimizer '" + s + "'");
}

struct TrainOptions {
    Optimizer optimizer = Optimizer::gd;
    double lr = 0.01;
    double beta = 0.9;                                  // momentum: v = beta v + (1 - beta) g
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;      // adam (bias-corrected, course form)
    double l2 = 0.0, l1 = 0.0;
    std::vector<double> keep;                           // keep[l], l = 0 (input) .. L-1; empty = none
    uint64_t seed = 0;
    int batch_size = 0;                                 // <= 0 or >= m: full batch (no shuffle needed)
};

// Statistics of one epoch (Trainer::run gathers them for the last epoch of each call only; NaN for an
// epoch whose statistics were not gathered). cost / error are the means over the epoch's mini-batches (weighted by their
// sizes) of the values each step computed before its update, with dropout and regularization on
// (as Keras' running training metrics); error is NaN for mse. grad_norms[l-1] is the mean over the
// epoch's steps of ||dW[l]||_F.
struct EpochStats {
    double cost = 0.0, error = 0.0;
    std::vector<double> grad_norms;
    int steps = 0;
};

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

// Fisher-Yates permutation of [0, m) for one epoch, from Philox keyed by the seed (shuffle key).
inline void epoch_permutation(uint64_t seed, uint64_t epoch, std::vector<int>& perm) {
    const int m = int(perm.size());
    for (int i = 0; i < m; ++i) perm[i] = i;
    const uint64_t key = seed ^ 0x9E3779B97F4A7C15ull;  // independent of the dropout stream (key = seed)
    uint32_t r[4];
    for (int i = m - 1; i > 0; --i) {
        if (((m - 1 - i) & 1) == 0)
            Philox::block(key, uint32_t(i), uint32_t(epoch), uint32_t(epoch >> 32), 0x5348u /* "SH" */, r);
        const int lane = ((m - 1 - i) & 1) * 2;
        const uint64_t u = (uint64_t(r[lane]) << 32) | r[lane + 1];
        // j uniform in [0, i]: high 64 bits of u * (i + 1) (Lemire; bias < 2^-32)
        const int j = int((unsigned __int128)u * uint64_t(i + 1) >> 64);
        std::swap(perm[i], perm[j]);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Lean path for small problems: the same maths as MLP<T>::forward/backward on MLP<T>'s workspace, but as
// one column chunk (whole-matrix BLAS calls, 3 per layer instead of up to ~16) and no OpenMP. Chosen by
// sizes only (lean_worth), so results stay independent of the thread count.
inline bool lean_worth(const Arch& a, int m) {
    double flops = 0.0;
    for (int l = 1; l <= a.L(); ++l) flops += 2.0 * a.n(l) * a.n(l - 1) * m;
    return flops <= 4.0e5;  // where MLP<T> would not parallelise anyway (worth_parallel)
}

// Sum of n values with 8 interleaved partial sums (vectorisable, fixed order: same bits on every run).
#define DNNKIT_ALWAYS_INLINE inline __attribute__((always_inline))

template <class T>
DNNKIT_ALWAYS_INLINE T row_sum(const T* x, int n) {
    T p[8] = {T(0), T(0), T(0), T(0), T(0), T(0), T(0), T(0)};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int t = 0; t < 8; ++t) p[t] += x[j + t];
    for (; j < n; ++j) p[j & 7] += x[j];
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

// The masks of one training step, drawn once and used by forward and backward: 0/1 bytes per layer
// (n[l] x mb, row-major), or nullptr where the layer has no dropout.
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
template <class T>
DNNKIT_ALWAYS_INLINE void lean_dropout(const Dropout<T>& dp, const ByteMasks& bm, int l, int n, int m, T* v) {
    if (const uint8_t* D = bm.get(l)) byte_dropout(D, T(bm.scale[l]), v, size_t(n) * m);
    else apply_dropout(dp, l, n, m, 0, m, v);
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

template <class T>
DNNKIT_ALWAYS_INLINE double lean_forward(MLP<T>& net, const T* theta, const T* X, int m, const Dropout<T>& dp,
                                         const ByteMasks& bm, const T* Y, double l2,
                    double l1) {
    net.resize(m);
    const Arch& a = net.arch;
    const int L = a.L();
    const T alpha = T(a.alpha);
    const T* Aprev = X;
    if (dp.on(0)) {  // input dropout on a copy of X
        const int n0 = a.n(0);
        net.A[0].assign(X, X + size_t(n0) * m);
        lean_dropout(dp, bm, 0, n0, m, net.A[0].data());
        Aprev = net.A[0].data();
    }
    for (int l = 1; l <= L; ++l) {
        const int nl = a.n(l), np = a.n(l - 1);
        T* Zl = net.Z[l].data();   // (nl x m)
        T* Al = net.A[l].data();   // (nl x m)
        gemm(false, false, nl, m, np, T(1), net.W(theta, l), np, Aprev, m, T(0), Zl, m);  // Z = W A_prev
        const T* bl = net.b(theta, l);
        const Act act = l < L ? a.hidden : a.output;
        if (act == Act::relu) {  // Z += b and A = relu(Z) in one pass
            for (int i = 0; i < nl; ++i) bias_relu_forward(Zl + size_t(i) * m, bl[i], Al + size_t(i) * m, size_t(m));
        } else {
            for (int i = 0; i < nl; ++i) {
                T* zr = Zl + size_t(i) * m;
                const T bi = bl[i];
                for (int j = 0; j < m; ++j) zr[j] += bi;
            }
        }
        if (act == Act::relu) {
        } else if (act == Act::softmax) {
            for (int j = 0; j < m; ++j) {
                T mx = Zl[j];
                for (int i = 1; i < nl; ++i) mx = std::max(mx, Zl[size_t(i) * m + j]);
                T s = T(0);
                for (int i = 0; i < nl; ++i) {
                    const T e = std::exp(Zl[size_t(i) * m + j] - mx);
                    Al[size_t(i) * m + j] = e;
                    s += e;
                }
                const T inv = T(1) / s;
                for (int i = 0; i < nl; ++i) Al[size_t(i) * m + j] *= inv;
            }
        } else {
            act_forward(act, Zl, Al, size_t(nl) * m, alpha);
        }
        if (l < L && dp.on(l)) lean_dropout(dp, bm, l, nl, m, Al);
        Aprev = Al;
    }
    if (!Y) return 0.0;
    return net.data_cost_columns(Y, 0, m) / m + net.reg_cost(theta, m, l2, l1);
}

// with_cost = false skips the cost (J returned as 0): the trainer needs it only in epochs it reports.
template <class T>
DNNKIT_ALWAYS_INLINE double lean_backward(MLP<T>& net, const T* theta, const T* X, const T* Y, int m,
                                          const Dropout<T>& dp, const ByteMasks& bm, double l2, double l1, T* grad,
                                          bool with_cost) {
    const double J = lean_forward(net, theta, X, m, dp, bm, with_cost ? Y : nullptr, l2, l1);
    const Arch& a = net.arch;
    const int L = a.L(), nL = a.n(L);
    const T invm = T(1) / T(m);
    {
        const T* AL = net.A[L].data();
        T* d = net.dZ[L].data();
        const size_t n = size_t(nL) * m;
        if (a.loss == Loss::mse && a.output == Act::sigmoid) {
            for (size_t k = 0; k < n; ++k) d[k] = (AL[k] - Y[k]) * AL[k] * (T(1) - AL[k]) * invm;
        } else {
            for (size_t k = 0; k < n; ++k) d[k] = (AL[k] - Y[k]) * invm;
        }
    }
    const T alpha = T(a.alpha);
    const T cl2 = T(l2 / m), cl1 = T(l1 / (2.0 * m));
    for (int l = L; l >= 1; --l) {
        const int nl = a.n(l), np = a.n(l - 1);
        const T* Aprev = (l == 1) ? (dp.on(0) ? net.A[0].data() : X) : net.A[l - 1].data();  // (np x m)
        const T* dz = net.dZ[l].data();                                                     // (nl x m)
        const T* Wl = net.W(theta, l);
        T* dW = grad + a.woff[l];
        T* db = grad + a.boff[l];
        gemm(false, true, nl, np, m, T(1), dz, m, Aprev, m, T(0), dW, np);  // dW = dZ A_prev^T (1/m in dZ)
        if (cl2 != T(0) || cl1 != T(0)) {
            const size_t n = size_t(nl) * np;
            for (size_t k = 0; k < n; ++k) {
                const T w = Wl[k];
                const T sg = w > T(0) ? T(1) : (w < T(0) ? T(-1) : T(0));
                dW[k] += cl2 * w + cl1 * sg;
            }
        }
        for (int i = 0; i < nl; ++i) db[i] = row_sum(dz + size_t(i) * m, m);
        if (l > 1) {
            T* da = net.dA.data();  // (np x m)
            gemm(true, false, np, m, nl, T(1), Wl, np, dz, m, T(0), da, m);  // dA = W^T dZ
            if (dp.on(l - 1)) lean_dropout(dp, bm, l - 1, np, m, da);
            if (a.hidden == Act::relu) relu_backward(net.Z[l - 1].data(), da, net.dZ[l - 1].data(), size_t(np) * m);
            else act_backward(a.hidden, net.Z[l - 1].data(), da, net.dZ[l - 1].data(), size_t(np) * m, alpha);
        }
    }
    return J;
}

// ---------------------------------------------------------------------------------------------------------
// Wide path for larger problems: MLP<T>'s structure (forward over column chunks, backward over dW tiles and
// dA column chunks, all on OpenMP) with fewer, larger BLAS calls — at most 4 column chunks of at least
// WIDE_MIN_COLS columns, dW tiles of 256 x 512 — because each call re-packs its operands: with MLP<T>'s
// 8 chunks and 64 x 256 tiles, packing took ~20% of a [784, 1024, 1024, 10] m=1024 step (74 -> 87
// GFLOP/s float64 on the 2-core dev machine with these sizes). Also fused bias + ReLU, branch-free ReLU'
// and dropout (scaled masks), vectorisable bias-gradient sums. Partitions depend on sizes only:
// bit-identical for any thread count.
constexpr int WIDE_MIN_COLS = 128, WIDE_TILE_ROWS = 256, WIDE_TILE_COLS = 512;
inline Chunks wide_chunks(int m) {
    const int w = std::max(WIDE_MIN_COLS, ((m + 3) / 4 + 3) / 4 * 4);
    return {m, std::min(w, std::max(m, 1))};
}

// [0, n) in ceil(n / max_width) chunks of (nearly) equal width, multiples of 16 (balanced tasks).
inline Chunks balanced_chunks(int n, int max_width) {
    const int k = std::max(1, (n + max_width - 1) / max_width);
    return {n, std::max(1, ((n + k - 1) / k + 15) / 16 * 16)};
}

template <class T>
double wide_backward(MLP<T>& net, const T* theta, const T* X, const T* Y, int m, const Dropout<T>& dp,
                     const ByteMasks& bm, double l2, double l1, T* grad) {
    net.resize(m);
    const Arch& a = net.arch;
    const int L = a.L(), nL = a.n(L), n0 = a.n(0);
    const T alpha = T(a.alpha);
    const Chunks ch = wide_chunks(m);
    const int nth = num_threads();
    std::vector<double> part(ch.count(), 0.0);
    const bool input_drop = dp.on(0);
    if (input_drop && net.A[0].size() != size_t(n0) * m) net.A[0].assign(size_t(n0) * m, T(0));

    // ---- forward, one column chunk per task through all layers
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if (nth > 1 && ch.count() > 1)
    for (int c = 0; c < ch.count(); ++c) {
        const int j0 = ch.begin(c), w = ch.end(c) - j0;
        const T* Aprev = X;
        if (input_drop) {
            T* A0 = net.A[0].data();
            const uint8_t* D = bm.get(0);
            for (int i = 0; i < n0; ++i) {
                const size_t o = size_t(i) * m + j0;
                std::copy(X + o, X + o + w, A0 + o);
                if (D) byte_dropout(D + o, T(bm.scale[0]), A0 + o, size_t(w));
            }
            if (!D) apply_dropout(dp, 0, n0, m, j0, j0 + w, A0);
            Aprev = A0;
        }
        for (int l = 1; l <= L; ++l) {
            const int nl = a.n(l), np = a.n(l - 1);
            T* Zl = net.Z[l].data();
            T* Al = net.A[l].data();
            gemm(false, false, nl, w, np, T(1), net.W(theta, l), np, Aprev + j0, m, T(0), Zl + j0, m);
            const T* bl = net.b(theta, l);
            const Act act = l < L ? a.hidden : a.output;
            if (act == Act::relu) {
                for (int i = 0; i < nl; ++i) {
                    const size_t o = size_t(i) * m + j0;
                    bias_relu_forward(Zl + o, bl[i], Al + o, size_t(w));
                }
            } else {
                for (int i = 0; i < nl; ++i) {
                    T* zr = Zl + size_t(i) * m + j0;
                    for (int j = 0; j < w; ++j) zr[j] += bl[i];
                }
                if (act == Act::softmax) {
                    for (int j = j0; j < j0 + w; ++j) {
                        T mx = Zl[j];
                        for (int i = 1; i < nl; ++i) mx = std::max(mx, Zl[size_t(i) * m + j]);
                        T s = T(0);
                        for (int i = 0; i < nl; ++i) {
                            const T e = std::exp(Zl[size_t(i) * m + j] - mx);
                            Al[size_t(i) * m + j] = e;
                            s += e;
                        }
                        const T inv = T(1) / s;
                        for (int i = 0; i < nl; ++i) Al[size_t(i) * m + j] *= inv;
                    }
                } else {
                    for (int i = 0; i < nl; ++i)
                        act_forward(act, Zl + size_t(i) * m + j0, Al + size_t(i) * m + j0, size_t(w), alpha);
                }
            }
            if (l < L && dp.on(l)) {
                if (const uint8_t* D = bm.get(l)) {
                    for (int i = 0; i < nl; ++i)
                        byte_dropout(D + size_t(i) * m + j0, T(bm.scale[l]), Al + size_t(i) * m + j0, size_t(w));
                } else {
                    apply_dropout(dp, l, nl, m, j0, j0 + w, Al);
                }
            }
            Aprev = Al;
        }
        part[c] = net.data_cost_columns(Y, j0, j0 + w);
    }
    double J = 0.0;
    for (double p : part) J += p;  // fixed order
    J = J / m + net.reg_cost(theta, m, l2, l1);

    // ---- backward
    const T invm = T(1) / T(m);
    {
        const T* AL = net.A[L].data();
        T* d = net.dZ[L].data();
        const size_t n = size_t(nL) * m;
        if (a.loss == Loss::mse && a.output == Act::sigmoid) {
            for (size_t k = 0; k < n; ++k) d[k] = (AL[k] - Y[k]) * AL[k] * (T(1) - AL[k]) * invm;
        } else {
            for (size_t k = 0; k < n; ++k) d[k] = (AL[k] - Y[k]) * invm;
        }
    }
    const T cl2 = T(l2 / m), cl1 = T(l1 / (2.0 * m));
    for (int l = L; l >= 1; --l) {
        const int nl = a.n(l), np = a.n(l - 1);
        const T* Aprev = (l == 1) ? (input_drop ? net.A[0].data() : X) : net.A[l - 1].data();
        const T* dz = net.dZ[l].data();
        const T* Wl = net.W(theta, l);
        T* dW = grad + a.woff[l];
        T* db = grad + a.boff[l];
        const Chunks rows = balanced_chunks(nl, WIDE_TILE_ROWS), cols = balanced_chunks(np, WIDE_TILE_COLS);
        const int ntiles = rows.count() * cols.count();
        const int nchunks = l > 1 ? ch.count() : 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if (nth > 1 && ntiles + nchunks > 1)
        for (int t = 0; t < ntiles + nchunks; ++t) {
            if (t < ntiles) {
                const int rc = t / cols.count(), cc = t % cols.count();
                const int r0 = rows.begin(rc), r1 = rows.end(rc), c0 = cols.begin(cc), c1 = cols.end(cc);
                gemm(false, true, r1 - r0, c1 - c0, m, T(1), dz + size_t(r0) * m, m, Aprev + size_t(c0) * m, m,
                     T(0), dW + size_t(r0) * np + c0, np);
                if (cl2 != T(0) || cl1 != T(0)) {
                    for (int i = r0; i < r1; ++i)
                        for (int j = c0; j < c1; ++j) {
                            const T wv = Wl[size_t(i) * np + j];
                            const T sg = wv > T(0) ? T(1) : (wv < T(0) ? T(-1) : T(0));
                            dW[size_t(i) * np + j] += cl2 * wv + cl1 * sg;
                        }
                }
                if (cc == 0)
                    for (int i = r0; i < r1; ++i) db[i] = row_sum(dz + size_t(i) * m, m);
            } else {
                const int c = t - ntiles, j0 = ch.begin(c), w = ch.end(c) - j0;
                T* da = net.dA.data();
                gemm(true, false, np, w, nl, T(1), Wl, np, dz + j0, m, T(0), da + j0, m);
                const uint8_t* D = dp.on(l - 1) ? bm.get(l - 1) : nullptr;
                if (dp.on(l - 1) && !D) apply_dropout(dp, l - 1, np, m, j0, j0 + w, da);
                const T* zp = net.Z[l - 1].data();
                T* dzp = net.dZ[l - 1].data();
                for (int i = 0; i < np; ++i) {
                    const size_t o = size_t(i) * m + j0;
                    if (D) byte_dropout(D + o, T(bm.scale[l - 1]), da + o, size_t(w));
                    if (a.hidden == Act::relu) relu_backward(zp + o, da + o, dzp + o, size_t(w));
                    else act_backward(a.hidden, zp + o, da + o, dzp + o, size_t(w), alpha);
                }
            }
        }
    }
    return J;
}

// The lean step compiled twice: for the baseline ISA and for AVX2 (chosen at run time). AVX2 only widens the
// vectorised elementwise loops; no FMA is enabled, so both produce the same bits.
template <class T>
__attribute__((noinline)) double lean_step_base(MLP<T>& net, const T* theta, const T* X, const T* Y, int m,
                                                const Dropout<T>& dp, const ByteMasks& bm, double l2, double l1, T* grad, bool with_cost) {
    return lean_backward(net, theta, X, Y, m, dp, bm, l2, l1, grad, with_cost);
}
#if defined(__x86_64__) || defined(__i386__)
template <class T>
__attribute__((noinline, target("avx2"))) double lean_step_avx2(MLP<T>& net, const T* theta, const T* X,
                                                                const T* Y, int m, const Dropout<T>& dp,
                                                                const ByteMasks& bm, double l2, double l1, T* grad,
                                                                bool with_cost) {
    return lean_backward(net, theta, X, Y, m, dp, bm, l2, l1, grad, with_cost);
}
#endif
template <class T>
double lean_step(MLP<T>& net, const T* theta, const T* X, const T* Y, int m, const Dropout<T>& dp,
                 const ByteMasks& bm, double l2, double l1, T* grad, bool with_cost) {
#if defined(__x86_64__) || defined(__i386__)
    static const bool avx2 = __builtin_cpu_supports("avx2");
    if (avx2) return lean_step_avx2(net, theta, X, Y, m, dp, bm, l2, l1, grad, with_cost);
#endif
    return lean_step_base(net, theta, X, Y, m, dp, bm, l2, l1, grad, with_cost);
}

// ---------------------------------------------------------------------------------------------------------
template <class T>
class Trainer {
   public:
    Trainer(Arch arch, TrainOptions opt, const T* X, const T* Y, int m)
        : arch_(arch), o_(std::move(opt)), X_(X), Y_(Y), m_(m), main_(arch), tail_(arch) {
        if (m < 1) throw std::invalid_argument("need at least one example");
        if (!(o_.lr > 0.0) || !std::isfinite(o_.lr)) throw std::invalid_argument("learning rate must be > 0");
        if (int(o_.keep.size()) > arch_.L()) throw std::invalid_argument("keep has more entries than layers");
        bs_ = (o_.batch_size <= 0 || o_.batch_size >= m) ? m : o_.batch_size;
        full_ = bs_ == m;
        grad_.assign(arch_.nparams, T(0));
        if (o_.optimizer != Optimizer::gd) v_.assign(arch_.nparams, T(0));
        if (o_.optimizer == Optimizer::adam) s_.assign(arch_.nparams, T(0));
        if (!full_) {
            perm_.resize(m);
            Xb_.resize(size_t(arch_.n(0)) * bs_);
            Yb_.resize(size_t(arch_.n(arch_.L())) * bs_);
        }
        masks_.resize(arch_.L());
    }

    uint64_t step() const { return step_; }
    uint64_t epoch() const { return epoch_; }
    int batch_size() const { return bs_; }
    int steps_per_epoch() const { return (m_ + bs_ - 1) / bs_; }
    const std::vector<T>& grad() const { return grad_; }

    // Runs up to n epochs on theta (in place). poll() is called between mini-batches (the caller decides
    // how often it does real work); when it returns true, or when the global step reaches stop_at_step
    // (a test hook that simulates Ctrl-C), the unfinished epoch is rolled back and run returns early.
    // Returns the number of epochs finished; `last` holds the statistics of the last finished one.
    template <class Poll>
    int run(T* theta, int n, Poll&& poll, EpochStats& last, bool& stopped,
            uint64_t stop_at_step = std::numeric_limits<uint64_t>::max()) {
        stopped = false;
        const int L = arch_.L(), nL = arch_.n(L), n0 = arch_.n(0);
        const size_t P = arch_.nparams;
        for (int e = 0; e < n; ++e) {
            // snapshot: the parameters and optimizer state of the last finished epoch
            snap_theta_.assign(theta, theta + P);
            snap_v_ = v_;
            snap_s_ = s_;
            const uint64_t snap_step = step_;
            if (!full_) epoch_permutation(o_.seed, epoch_, perm_);
            // Statistics only for the epoch that run() reports (its last): the lean path then skips the cost.
            const bool stats = e == n - 1;
            with_cost_ = stats;
            EpochStats st;
            st.grad_norms.assign(L, 0.0);
            double cost_sum = 0.0, err_sum = 0.0;
            for (int j0 = 0; j0 < m_; j0 += bs_) {
                const int mb = std::min(bs_, m_ - j0);
                const T* Xp = X_;
                const T* Yp = Y_;
                if (!full_) {  // gather the batch's columns (row by row: contiguous writes)
                    for (int i = 0; i < n0; ++i) {
                        const T* src = X_ + size_t(i) * m_;
                        T* dst = Xb_.data() + size_t(i) * mb;
                        for (int j = 0; j < mb; ++j) dst[j] = src[perm_[j0 + j]];
                    }
                    for (int i = 0; i < nL; ++i) {
                        const T* src = Y_ + size_t(i) * m_;
                        T* dst = Yb_.data() + size_t(i) * mb;
                        for (int j = 0; j < mb; ++j) dst[j] = src[perm_[j0 + j]];
                    }
                    Xp = Xb_.data();
                    Yp = Yb_.data();
                }
                Dropout<T> dp = draw_masks(mb);
                MLP<T>& net = (mb == bs_) ? main_ : tail_;
                const double J = lean_worth(arch_, mb)
                                     ? lean_step(net, theta, Xp, Yp, mb, dp, bm_, o_.l2, o_.l1, grad_.data(), with_cost_)
                                     : wide_backward(net, theta, Xp, Yp, mb, dp, bm_, o_.l2, o_.l1, grad_.data());
                if (stats) {
                    cost_sum += J * mb;
                    err_sum += errors(net, Yp, mb);
                    for (int l = 1; l <= L; ++l) {
                        const T* g = grad_.data() + arch_.woff[l];
                        const size_t k = size_t(arch_.n(l)) * arch_.n(l - 1);
                        double s = 0.0;
                        for (size_t q = 0; q < k; ++q) s += double(g[q]) * double(g[q]);
                        st.grad_norms[l - 1] += std::sqrt(s);
                    }
                }
                update(theta);
                ++step_;
                ++st.steps;
                if (poll() || step_ >= stop_at_step) {
                    std::copy(snap_theta_.begin(), snap_theta_.end(), theta);
                    v_ = snap_v_;
                    s_ = snap_s_;
                    step_ = snap_step;
                    stopped = true;
                    if (e > 0) {  // epoch e-1 finished, but its statistics were not gathered (see `stats`)
                        const double nan = std::numeric_limits<double>::quiet_NaN();
                        last = EpochStats{nan, nan, std::vector<double>(L, nan), steps_per_epoch()};
                    }
                    return e;
                }
            }
            ++epoch_;
            st.cost = cost_sum / m_;
            st.error = arch_.loss == Loss::mse ? std::numeric_limits<double>::quiet_NaN()
                                               : err_sum / (arch_.loss == Loss::bce ? double(nL) * m_ : double(m_));
            for (double& g : st.grad_norms) g /= st.steps;
            last = std::move(st);
        }
        return n;
    }

   private:
    Arch arch_;
    TrainOptions o_;
    const T* X_;
    const T* Y_;
    int m_, bs_ = 0;
    bool full_ = true;
    MLP<T> main_, tail_;  // two workspaces: the full batches and the last, shorter one (no reallocation)
    std::vector<T> grad_, v_, s_, snap_theta_, snap_v_, snap_s_, Xb_, Yb_;
    std::vector<int> perm_;
    std::vector<std::vector<uint8_t>> masks_;
    ByteMasks bm_;
    uint64_t step_ = 0, epoch_ = 0;
    bool with_cost_ = true;

    // Masks of this step, drawn once (keyed by the global step) into bm_ and used by both forward and
    // backward. dp carries keep/seed/step only (its RNG path is the fallback of the passes).
    Dropout<T> draw_masks(int mb) {
        Dropout<T> dp;
        dp.keep = o_.keep;
        dp.seed = o_.seed;
        dp.step = uint32_t(step_);
        bm_.bits.assign(o_.keep.size(), nullptr);
        bm_.scale.assign(o_.keep.size(), 1.0);
        for (int l = 0; l < int(o_.keep.size()); ++l) {
            if (!dp.on(l)) continue;
            const int nl = arch_.n(l);
            std::vector<uint8_t>& D = masks_[l];
            D.resize(size_t(nl) * mb);
            uint8_t* p = D.data();
            const uint64_t thr = keep_threshold(o_.keep[l]);
            const double work = double(nl) * mb;
            // rows are independent (each thread owns its rows): identical bits for any thread count
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (work > 65536.0 && num_threads() > 1)
            for (int i = 0; i < nl; ++i) philox_keep_row(dp.seed, uint32_t(i), uint32_t(l), dp.step, mb, thr, p + size_t(i) * mb);
            bm_.bits[l] = p;
            bm_.scale[l] = 1.0 / o_.keep[l];
        }
        return dp;
    }

    // Misclassified entries (bce: output units; ce: examples) of the batch just computed by `net`.
    double errors(const MLP<T>& net, const T* Yp, int mb) const {
        const int L = arch_.L(), nL = arch_.n(L);
        const T* AL = net.A[L].data();
        if (arch_.loss == Loss::bce) {
            size_t wrong = 0;
            for (size_t k = 0; k < size_t(nL) * mb; ++k) wrong += (AL[k] > T(0.5)) != (Yp[k] > T(0.5));
            return double(wrong);
        }
        if (arch_.loss == Loss::ce) {
            size_t wrong = 0;
            for (int j = 0; j < mb; ++j) {
                int ia = 0, iy = 0;
                for (int i = 1; i < nL; ++i) {
                    if (AL[size_t(i) * mb + j] > AL[size_t(ia) * mb + j]) ia = i;
                    if (Yp[size_t(i) * mb + j] > Yp[size_t(iy) * mb + j]) iy = i;
                }
                wrong += ia != iy;
            }
            return double(wrong);
        }
        return 0.0;
    }

    // theta -= update(grad); elementwise, so any split over threads gives the same bits.
    void update(T* theta) {
        const long long P = (long long)arch_.nparams;
        const T* g = grad_.data();
        const bool par = P > 200000 && num_threads() > 1;
        if (o_.optimizer == Optimizer::gd) {
            const T lr = T(o_.lr);
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (par)
            for (long long k = 0; k < P; ++k) theta[k] -= lr * g[k];
        } else if (o_.optimizer == Optimizer::momentum) {
            const T lr = T(o_.lr), b = T(o_.beta), b1m = T(1.0 - o_.beta);
            T* v = v_.data();
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (par)
            for (long long k = 0; k < P; ++k) {
                v[k] = b * v[k] + b1m * g[k];
                theta[k] -= lr * v[k];
            }
        } else {
            const double t = double(step_ + 1);
            const T c1 = T(1.0 / (1.0 - std::pow(o_.beta1, t))), c2 = T(1.0 / (1.0 - std::pow(o_.beta2, t)));
            const T lr = T(o_.lr), b1 = T(o_.beta1), b2 = T(o_.beta2), b1m = T(1.0 - o_.beta1),
                    b2m = T(1.0 - o_.beta2), eps = T(o_.eps);
            T* v = v_.data();
            T* s = s_.data();
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (par)
            for (long long k = 0; k < P; ++k) {
                v[k] = b1 * v[k] + b1m * g[k];
                s[k] = b2 * s[k] + b2m * g[k] * g[k];
                theta[k] -= lr * (v[k] * c1) / (std::sqrt(s[k] * c2) + eps);
            }
        }
    }
};

}  // namespace dnnkit
