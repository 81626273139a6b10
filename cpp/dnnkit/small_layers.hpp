// Fused training step for tiny nets (every layer at most SMALL_MAX_WIDTH units, at most SMALL_MAX_WEIGHTS weights):
// forward, cost and backward of all layers on blocks of SMALL_LANES examples, everything in L1 / registers.
//
// Why: on such nets a step is a few hundred thousand flops, and the BLAS path (mlp.hpp lean_pass: 8 whole-matrix
// GEMM calls for [2, 20, 3, 1] plus ~10 elementwise passes over (n_l x m) arrays) is dominated by call and memory
// overhead, not arithmetic. Measured on the course's [2, 20, 3, 1], m = 300 (2-core Xeon, OpenBLAS SkylakeX
// small-matrix kernels, perf): the 8 GEMM calls took ~36 % of a step for ~25 k flops each, i.e. ~0.5 us per
// call; the elementwise passes another ~30 %, in float64 bound by L1 misses (Z1, A1, dA, dZ1 are 48 KB each at
// m = 300, the L1 is 48 KB): that is why float64 ran at half the float32 speed. Here one block of 16 examples
// goes through all layers and back (a few KB), the dW sums are kept per lane and reduced once per step, and the
// output's exp / log1p / sigmoid run vectorised in one pass with the cost, the derivative and the error count.
// Where the time goes (small11b, callgrind on [2, 20, 3, 1], m = 300, AVX2 float64, fit with a history row per
// epoch: ~123 k instructions a step, was ~220 k): the loops are specialised on the hidden activation and on
// dropout (a run-time test per vector was ~1/3 of the instructions); z = W a + b and g(z), and dA = W^T dZ,
// dropout and g'(z), are each one register loop per unit (no round trip of z or dA through L1); layer 1's dW / db
// are summed as its dZ rows are made; 2 (float64) or 4 (float32) blocks of 16 examples go through the layers per
// iteration on AVX2 (W = 8 vectors per row), so each per-lane accumulator row is loaded and stored once per 32 or
// 64 examples, and a short rest goes block by block instead of padded to S blocks. What remains (float64, ~123 k
// instructions a step): the forward ~30 %, dA with g' ~19 %, layer 2's dW accumulation (mul, add, the accumulator's
// load and store per vector) ~15 %, layer 1's dW / db ~13 %, the output's exp / log1p / cost ~8 %; the rest is
// loop overhead of the tiny trip counts.
// BLAS stays the path for everything larger (house rule: a real BLAS for real-sized layers): past a few thousand
// weights the per-lane accumulators leave L1 and BLAS's blocking wins.
//
// Exactness: every lane performs the same IEEE operations in the same order (no FMA: the translation unit is
// compiled with -ffp-contract=off; no libm call in the vectorised loops: exp_nonpos below and log1p_unit), and
// the lane sums are reduced in a fixed tree, so the result is bit-identical on the baseline, AVX2 and AVX-512
// paths (simd.hpp), hence on any x86-64 machine. From SMALL_SPLIT_MIN examples a step is two parts of examples,
// [0, h) and [h, m) with h fixed by m (SmallNet::split_at), each with its own lane sums and lane tree, the two
// results then added: a second thread (Trainer::run's helper) takes part 1 when there is one, and who runs a part
// never changes its bits, so they are the same for any thread count (session 5; the split changed the last bits of
// nets trained on batches of >= 128 examples, dev/BITCHECK.md). It is NOT bit-identical to the BLAS path
// (different summation order of the dW / dA sums; BLAS uses FMA): the gradient agrees to rounding (tests/
// test_small_layers.py), and fit() on such nets trains to parameters that differ in the last bits from the
// BLAS path (dev/BITCHECK.md). Network.forward / cost / backward and the gradient checker keep the BLAS path.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "mlp.hpp"
#include "simd.hpp"

namespace dnnkit {

constexpr int SMALL_LANES = 16;         // examples per block (one AVX-512 float vector, two double vectors)
constexpr int SMALL_MAX_WIDTH = 64;     // units per layer
constexpr int SMALL_MAX_WEIGHTS = 512;  // sum of n_l * n_{l-1}: the per-lane dW sums (x16 lanes) stay in L1
constexpr int SMALL_SPLIT_MIN = 128;    // examples from which a step is two parts (SmallNet::split_at)

namespace small {
// Switch for tests and benchmarks (_core.set_small_layers; DNNKIT_SMALL_LAYERS=0 / 1 at start-up), read when a
// Trainer is built: -1 automatic (the default: the fused step on CPUs with AVX2 or AVX-512F, where it was measured
// faster than the BLAS path: ~2x on the course's net on a 2-core AVX2 EPYC in both dtypes, bench/RESULTS.md
// "small11b"; SSE2-only CPUs keep BLAS), 0 off, 1 on whatever the CPU. The choice uses the CPU's capability
// (simd::detected), not a forced SIMD level, so DNNKIT_SIMD / set_simd change only which clone runs, never which
// algorithm (the bits).
inline std::atomic<int>& mode() {
    static std::atomic<int> on{[] {
        const char* s = std::getenv("DNNKIT_SMALL_LAYERS");
        if (s && std::strcmp(s, "0") == 0) return 0;
        if (s && std::strcmp(s, "1") == 0) return 1;
        return -1;
    }()};
    return on;
}
inline bool wanted() {
    const int m = mode().load(std::memory_order_relaxed);
    return m > 0 || (m < 0 && simd::detected() >= simd::avx2);
}
}  // namespace small

// ---------------------------------------------------------------------------------------------------------
// The kernel on native vectors of BYTES bytes (16: SSE2, 32: AVX2, 64: AVX-512): NL = BYTES / sizeof(T) lanes of
// T, ND = BYTES / 8 lanes of double. Examples are processed in blocks of SMALL_LANES columns (U = SMALL_LANES / NL
// native vectors per row); column j's contributions to the dW / db / cost sums go to lane j % SMALL_LANES of
// per-weight accumulators of SMALL_LANES lanes, which are summed in a fixed tree at the end. Every lane performs
// the same operations whatever NL is, so the three instantiations give the same bits. (Vectors wider than the ISA's registers are not used: GCC keeps those in
// memory.) Types are members, never template arguments (GCC drops vector attributes on template arguments).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
// The lane types per (T, BYTES) (GCC does not apply vector_size with a template-dependent size, so they are spelled
// out): V = NL x T, VT = ND x T, VD = ND x double, VU = ND x uint64, VB = NL x uint8; element-aligned.
template <class T, int BYTES>
struct SmallLaneTypes;
#define DNNKIT_SMALL_TYPES(T_, BYTES_, NL_, ND_)                                                          \
    template <>                                                                                         \
    struct SmallLaneTypes<T_, BYTES_> {                                                                 \
        typedef T_ V __attribute__((vector_size(NL_ * sizeof(T_)), aligned(sizeof(T_))));              \
        typedef T_ VT __attribute__((vector_size(ND_ * sizeof(T_)), aligned(sizeof(T_))));             \
        typedef double VD __attribute__((vector_size(ND_ * 8), aligned(8)));                            \
        typedef uint64_t VU __attribute__((vector_size(ND_ * 8), aligned(8)));                          \
        typedef uint8_t VB __attribute__((vector_size(NL_), aligned(1)));                               \
    };
DNNKIT_SMALL_TYPES(double, 16, 2, 2)
DNNKIT_SMALL_TYPES(double, 32, 4, 4)
DNNKIT_SMALL_TYPES(double, 64, 8, 8)
DNNKIT_SMALL_TYPES(float, 16, 4, 2)
DNNKIT_SMALL_TYPES(float, 32, 8, 4)
DNNKIT_SMALL_TYPES(float, 64, 16, 8)
#undef DNNKIT_SMALL_TYPES

// Allocator of 64-byte aligned (cache-line aligned) storage, for the fused step's working rows.
template <class T>
struct CacheAligned {
    using value_type = T;
    CacheAligned() = default;
    template <class U>
    CacheAligned(const CacheAligned<U>&) noexcept {}
    T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
    void deallocate(T* p, size_t) noexcept { ::operator delete(p, std::align_val_t(64)); }
    template <class U>
    bool operator==(const CacheAligned<U>&) const noexcept { return true; }
    template <class U>
    bool operator!=(const CacheAligned<U>&) const noexcept { return false; }
};

template <class T, int BYTES>
struct SmallKernel {
    static constexpr int NL = BYTES / int(sizeof(T)), ND = BYTES / 8, B = SMALL_LANES;
    static_assert(B % NL == 0, "lanes");
    typedef typename SmallLaneTypes<T, BYTES>::V V;
    typedef typename SmallLaneTypes<T, BYTES>::VT VT;
    typedef typename SmallLaneTypes<T, BYTES>::VD VD;
    typedef typename SmallLaneTypes<T, BYTES>::VU VU;
    typedef typename SmallLaneTypes<T, BYTES>::VB VB;

    static DNNKIT_ALWAYS_INLINE VD splat_d(double x) {
        VD v;
        for (int t = 0; t < ND; ++t) v[t] = x;
        return v;
    }
    // exp(x) for x <= 0 and NaN: fdlibm's exp (reduction by k ln2 in two parts, degree-5 remez kernel), branch-free,
    // no libm, within 1 ulp of libm's exp; results below e^-708 (~3.3e-308, subnormal) are flushed to 0.
    static DNNKIT_ALWAYS_INLINE VD exp_nonpos(VD x) {
        constexpr double invln2 = 1.44269504088896338700e+00, ln2_hi = 6.93147180369123816490e-01,
                         ln2_lo = 1.90821492927058770002e-10;
        constexpr double P1 = 1.66666666666666019037e-01, P2 = -2.77777777770155933842e-03,
                         P3 = 6.61375632143793436117e-05, P4 = -1.65339022054652515390e-06,
                         P5 = 4.13813679705723846039e-08;
        constexpr double magic = 6755399441055744.0;  // 1.5 * 2^52: (v + magic) - magic rounds v to an integer
        const VD lim = splat_d(-708.0);
        const VD xc = x < lim ? lim : x;
        const VD tk = xc * invln2 + magic;  // k = round(x / ln2) in [-1021, 0], held in tk's low mantissa bits
        const VD kd = tk - magic;
        const VD hi = xc - kd * ln2_hi;
        const VD lo = kd * ln2_lo;
        const VD r = hi - lo;
        const VD t = r * r;
        const VD c = r - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
        const VD y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
        const VU sb = ((VU)tk + (uint64_t(1023) - 0x4338000000000000ull)) << 52;  // 2^k
        const VD e = y * (VD)sb;
        return x < lim ? splat_d(0.0) : (x != x ? x : e);
    }
    // log1p_unit (activations.hpp) on lanes: the same operations, hence the same bits.
    static DNNKIT_ALWAYS_INLINE VD log1p_unit_v(VD x) {
        constexpr double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01,
                         Lg3 = 2.857142874366239149e-01, Lg4 = 2.222219843214978396e-01,
                         Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
                         Lg7 = 1.479819860511658591e-01;
        constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
        const VD u = 1.0 + x;
        const VD c = (x - (u - 1.0)) / u;
        const auto big = u > 1.4142135623730951;
        const VD k = big ? splat_d(1.0) : splat_d(0.0);
        const VD f = (big ? u * 0.5 : u) - 1.0;
        const VD s = f / (2.0 + f);
        const VD z = s * s, w = z * z;
        const VD t1 = w * (Lg2 + w * (Lg4 + w * Lg6));
        const VD t2 = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7)));
        const VD R = t2 + t1;
        const VD hfsq = 0.5 * f * f;
        return (k * ln2_hi - ((hfsq - (s * (hfsq + R) + k * ln2_lo)) - f)) + c;
    }

    // NL values from src (w < NL: the first w, the rest 0).
    static DNNKIT_ALWAYS_INLINE V load(const T* src, int w) {
        V v;
        if (w == NL) {
            std::memcpy(&v, src, sizeof(V));
        } else {
            v = V{};
            for (int t = 0; t < w; ++t) v[t] = src[t];
        }
        return v;
    }
    // Inverted dropout on one row (as byte_dropout: v * (D * scale)); padded lanes get D = 0.
    static DNNKIT_ALWAYS_INLINE V drop(V v, const uint8_t* D, int w, T scale) {
        VB d;
        if (w == NL) {
            std::memcpy(&d, D, sizeof(VB));
        } else {
            d = VB{};
            for (int t = 0; t < w; ++t) d[t] = D[t];
        }
        return v * (__builtin_convertvector(d, V) * scale);
    }
    // Workspaces (plain arrays accessed through the lane types: GCC's vector types alias their element type), all
    // in rows of CB examples (W native vectors): act / z (offsets aoff / zoff in rows), dz / dz2 (max-width rows,
    // the dZ of two adjacent layers), accW / accb (woff / boff; rows of B = SMALL_LANES lanes: U native vectors),
    // cost: B doubles. AL_out: the (nL x m) output activations.
    // A block of B examples is U native vectors per row: U independent dependency chains, one broadcast per weight.
    // S blocks go through the layers together, so that each accumulator row is loaded and stored once per S blocks
    // (block s adds its terms after block s - 1's: the same order as S = 1, hence the same bits for any S).
    static constexpr int U = B / NL;  // native vectors per accumulator row (B lanes)
    // Vectors per working row wanted: AVX2 8 (2 blocks in float64, 4 in float32; 16 registers: the per-unit loops
    // hold 8 sums); AVX-512 float64 8 too (4 blocks; session 4, A/B on an AVX-512 Xeon: 1.17x the step with 4, same
    // bits); AVX-512 float32 4 (4 blocks; 8 blocks measured no faster); SSE2 4 (one block already has 4 or more).
    static constexpr int WANT = BYTES == 32 || (BYTES == 64 && sizeof(T) == 8) ? 8 : 4;
    static constexpr int S = U >= WANT ? 1 : WANT / U;
    static constexpr int W = U * S, CB = S * B;  // native vectors / examples per working row
    static_assert(CB <= 4 * SMALL_LANES, "SmallNet sizes its working rows for 4 blocks");
    // The hidden activation (HID) and whether any layer has dropout (DROP) are template arguments: the per-vector
    // loops then carry no run-time tests (a few instructions per vector, measured ~1/3 of the AVX2 step).
    template <Act HID>
    static DNNKIT_ALWAYS_INLINE V act_fwd_t(V z, T alpha) {
        const V zero = V{};
        if (HID == Act::relu) return z > zero ? z : zero;
        if (HID == Act::leaky_relu) return z > zero ? z : alpha * z;
        return z;
    }
    template <Act HID>
    static DNNKIT_ALWAYS_INLINE V act_back_t(V z, V da, T alpha) {
        const V zero = V{};
        if (HID == Act::relu) return z > zero ? da : zero;
        if (HID == Act::leaky_relu) return z > zero ? da : alpha * da;
        return da;
    }
    // small_lane_sum's tree (the same adds, hence the same bits) on native vectors while a level's half spans at
    // least NL lanes, then on scalars
    static DNNKIT_ALWAYS_INLINE T lane_sum(const T* v) {
        T buf[B];
        // the first level reads straight from v: copying v to buf first (GCC: 16-byte moves) made the wider loads
        // that followed wait for store forwarding (~10% of a one-step call, perf annotate)
        const T* src = v;
#pragma GCC unroll 8
        for (int h = B / 2; h >= 1; h /= 2, src = buf) {
            if (h >= NL) {
#pragma GCC unroll 8
                for (int g = 0; g < h; g += NL) {
                    V x, y;
                    std::memcpy(&x, src + g, sizeof(V));
                    std::memcpy(&y, src + h + g, sizeof(V));
                    x = x + y;
                    std::memcpy(buf + g, &x, sizeof(V));
                }
            } else {
#pragma GCC unroll 8
                for (int t = 0; t < h; ++t) buf[t] = src[t] + src[t + h];
            }
        }
        return buf[0];
    }
    // dW / db lane sums of one layer from its dZ rows (dz) and the previous layer's activations (ap)
    template <int W_>
    static DNNKIT_ALWAYS_INLINE void accumulate(int nl, int np, const V* __restrict dz, const V* __restrict ap,
                                                V* __restrict awl, V* __restrict abl) {
        for (int u = 0; u < nl; ++u) {
            V sb[U];
            for (int g = 0; g < U; ++g) sb[g] = abl[u * U + g];
            for (int h = 0; h < W_; ++h) sb[h % U] = sb[h % U] + dz[u * W_ + h];
            for (int g = 0; g < U; ++g) abl[u * U + g] = sb[g];
        }
        if (np >= nl) {  // the longer loop inside (each accumulator is updated once per iteration either way)
            for (int u = 0; u < nl; ++u) {
                V d[W_];
                for (int h = 0; h < W_; ++h) d[h] = dz[u * W_ + h];
                V* awr = awl + size_t(u) * np * U;
#pragma GCC unroll 2
                for (int k = 0; k < np; ++k) {
                    V sw[U];
                    for (int g = 0; g < U; ++g) sw[g] = awr[k * U + g];
                    for (int h = 0; h < W_; ++h) sw[h % U] = sw[h % U] + d[h] * ap[k * W_ + h];
                    for (int g = 0; g < U; ++g) awr[k * U + g] = sw[g];
                }
            }
        } else {
            for (int k = 0; k < np; ++k) {
                V x[W_];
                for (int h = 0; h < W_; ++h) x[h] = ap[k * W_ + h];
#pragma GCC unroll 2
                for (int u = 0; u < nl; ++u) {
                    V* q = awl + (size_t(u) * np + k) * U;
                    V sw[U];
                    for (int g = 0; g < U; ++g) sw[g] = q[g];
                    for (int h = 0; h < W_; ++h) sw[h % U] = sw[h % U] + dz[u * W_ + h] * x[h];
                    for (int g = 0; g < U; ++g) q[g] = sw[g];
                }
            }
        }
    }
    // Examples [jb, je) in iterations of SS blocks (the caller runs the whole iterations with SS = S and a short
    // rest with SS = 1, so that it is not padded to S blocks; the lanes see the blocks in the same order).
    template <Act HID, bool DROP, int SS>
    static DNNKIT_ALWAYS_INLINE void body(const Arch& a, const size_t* aoff, const size_t* zoff, const size_t* woff,
                                          const size_t* boff, T* act_, T* z_, T* dz_, T* da_, T* accW_, T* accb_,
                                          double* cost, double* wrong, T* AL_out, const T* theta, const T* X,
                                          const T* Y, int m, int jb, int je, const ByteMasks& bm, bool with_cost) {
        constexpr int W_ = U * SS, CB_ = SS * B;  // native vectors / examples per working row
        const int L = a.L(), nL = a.n(L), n0 = a.n(0);
        const T alpha = T(a.alpha), invm = T(1) / T(m);
        const bool count = with_cost && a.loss == Loss::bce;  // misclassified outputs (Trainer::errors' count)
        V* __restrict act = reinterpret_cast<V*>(act_);
        V* __restrict zs = reinterpret_cast<V*>(z_);
        V* __restrict dzA = reinterpret_cast<V*>(dz_);
        V* __restrict dzB = reinterpret_cast<V*>(da_);
        V* __restrict accW = reinterpret_cast<V*>(accW_);
        V* __restrict accb = reinterpret_cast<V*>(accb_);
        for (int j0 = jb; j0 < je; j0 += CB_) {
            const int wb = std::min(CB_, je - j0);  // je, not m: a part ends inside the examples (SmallNet::split_at)
            int wh[W_];  // valid lanes of each native vector
            for (int h = 0; h < W_; ++h) wh[h] = std::max(0, std::min(NL, wb - h * NL));
            // ---- forward
            {
                V* a0 = act + aoff[0] * W_;
                const uint8_t* D = DROP ? bm.get(0) : nullptr;
                for (int k = 0; k < n0; ++k)
                    for (int h = 0; h < W_; ++h) {
                        const size_t o = size_t(k) * m + j0 + size_t(h) * NL;
                        V x = load(X + o, wh[h]);
                        if (DROP && D) x = drop(x, D + o, wh[h], T(bm.scale[0]));
                        a0[k * W_ + h] = x;
                    }
            }
            for (int l = 1; l <= L; ++l) {
                const int nl = a.n(l), np = a.n(l - 1);
                const T* Wl = theta + a.woff[l];
                const T* bl = theta + a.boff[l];
                const V* ap = act + aoff[l - 1] * W_;
                V* zl = zs + zoff[l] * W_;
                V* al = act + aoff[l] * W_;
                const uint8_t* D = DROP && l < L ? bm.get(l) : nullptr;
                // z[u] = sum_k W[u][k] a[k] in k order, then + b[u], then the activation: per unit in registers
                for (int u = 0; u < nl; ++u) {
                    const T* wr = Wl + size_t(u) * np;
                    V acc[W_];
                    const T w0 = wr[0];
                    for (int h = 0; h < W_; ++h) acc[h] = w0 * ap[h];
#pragma GCC unroll 4
                    for (int k = 1; k < np; ++k) {
                        const T wk = wr[k];
                        for (int h = 0; h < W_; ++h) acc[h] = acc[h] + wk * ap[k * W_ + h];
                    }
                    const T bu = bl[u];
                    for (int h = 0; h < W_; ++h) {
                        const V z = acc[h] + bu;
                        zl[u * W_ + h] = z;
                        if (l < L) {
                            V av = act_fwd_t<HID>(z, alpha);
                            if (DROP && D)
                                av = drop(av, D + size_t(u) * m + j0 + size_t(h) * NL, wh[h], T(bm.scale[l]));
                            al[u * W_ + h] = av;
                        }
                    }
                }
            }
            // ---- output: activation, cost, dZ[L] (0 on padded lanes) in one pass, in pieces of ND lanes (double)
            {
                const T* zl = reinterpret_cast<const T*>(zs + zoff[L] * W_);
                T* dzt = reinterpret_cast<T*>(dzA);
                const VD zero = splat_d(0.0);
                // block by block, then unit by unit: the cost lanes get the (block, unit) terms in the order of
                // the one-block iteration (S = 1), so the bits do not depend on S
                for (int sb = 0; sb < CB_; sb += B)
                for (int u = 0; u < nL; ++u) {
                    const T* yr = Y + size_t(u) * m + j0;
                    for (int p = sb; p < sb + B; p += ND) {
                        VT zt, yt;
                        std::memcpy(&zt, zl + size_t(u) * CB_ + p, sizeof(VT));
                        const int wp = std::max(0, std::min(ND, wb - p));
                        if (wp == ND) {
                            std::memcpy(&yt, yr + p, sizeof(VT));
                        } else {
                            yt = VT{};
                            for (int t = 0; t < wp; ++t) yt[t] = yr[p + t];
                        }
                        VD valid;
                        for (int t = 0; t < ND; ++t) valid[t] = t < wp ? 1.0 : 0.0;
                        const VD zd = __builtin_convertvector(zt, VD), yd = __builtin_convertvector(yt, VD);
                        VT av, d;
                        VD c = zero;
                        if (a.output == Act::sigmoid) {
                            const VD e = exp_nonpos(zero - (zd < zero ? zero - zd : zd));  // exp(-|z|)
                            // one division (the numerator, 1 or e, picked first): each lane's quotient as before
                            const VD sg = (zd >= zero ? splat_d(1.0) : e) / (1.0 + e);
                            av = __builtin_convertvector(sg, VT);
                            if (with_cost) {
                                if (a.loss == Loss::bce) {  // bce_logit from the same exp(-|z|)
                                    c = (zd > zero ? zd : zero) - zd * yd + log1p_unit_v(e);
                                } else {
                                    const VD df = __builtin_convertvector(av, VD) - yd;
                                    c = 0.5 * df * df;
                                }
                            }
                            if (a.loss == Loss::mse) d = (av - yt) * av * (T(1) - av) * invm;
                            else d = (av - yt) * invm;
                        } else {  // linear + mse
                            av = zt;
                            if (with_cost) {
                                const VD df = zd - yd;
                                c = 0.5 * df * df;
                            }
                            d = (av - yt) * invm;
                        }
                        if (with_cost) {
                            VD cs;
                            std::memcpy(&cs, cost + p % B, sizeof(VD));
                            cs = cs + (valid > zero ? c : zero);
                            std::memcpy(cost + p % B, &cs, sizeof(VD));
                        }
                        if (count) {  // (A > 0.5) != (Y > 0.5) on valid lanes, counted exactly in double lanes
                            const VT half = VT{} + T(0.5);
                            const auto miss = (av > half) != (yt > half);
                            const VD one = __builtin_convertvector(miss ? VT{} + T(1) : VT{}, VD);
                            VD ws;
                            std::memcpy(&ws, wrong + p % B, sizeof(VD));
                            ws = ws + (valid > zero ? one : zero);
                            std::memcpy(wrong + p % B, &ws, sizeof(VD));
                        }
                        if (wp < ND) d = __builtin_convertvector(valid, VT) > VT{} ? d : VT{};
                        std::memcpy(dzt + size_t(u) * CB_ + p, &d, sizeof(VT));
                        if (wp == ND) std::memcpy(AL_out + size_t(u) * m + j0 + p, &av, sizeof(VT));
                        else
                            for (int t = 0; t < wp; ++t) AL_out[size_t(u) * m + j0 + p + t] = av[t];
                    }
                }
            }
            // ---- backward: dW / db lane sums, dA = W^T dZ, g'. dz holds layer l's dZ; the next layer's goes to
            // the other buffer. Layer 1's sums are taken as its dZ rows are made (the same operations per lane).
            V* dz = dzA;
            V* dn = dzB;
            for (int l = L; l >= 2; --l) {
                const int nl = a.n(l), np = a.n(l - 1);
                const T* Wl = theta + a.woff[l];
                accumulate<W_>(nl, np, dz, act + aoff[l - 1] * W_, accW + woff[l] * U, accb + boff[l] * U);
                const uint8_t* D = DROP ? bm.get(l - 1) : nullptr;
                const V* zp = zs + zoff[l - 1] * W_;
                const bool last = l == 2;  // dn is layer 1's dZ: its dW / db sums here
                const int n1 = a.n(0);
                const V* a0 = act + aoff[0] * W_;
                V* aw1 = accW + woff[1] * U;
                V* ab1 = accb + boff[1] * U;
                // da[k] = sum_u W[u][k] dz[u] in u order, in registers; then dropout and g'
                for (int k = 0; k < np; ++k) {
                    V acc[W_];
                    const T w0 = Wl[k];
                    for (int h = 0; h < W_; ++h) acc[h] = w0 * dz[h];
#pragma GCC unroll 4
                    for (int u = 1; u < nl; ++u) {
                        const T wu = Wl[size_t(u) * np + k];
                        for (int h = 0; h < W_; ++h) acc[h] = acc[h] + wu * dz[u * W_ + h];
                    }
                    for (int h = 0; h < W_; ++h) {
                        V v = acc[h];
                        if (DROP && D) v = drop(v, D + size_t(k) * m + j0 + size_t(h) * NL, wh[h], T(bm.scale[l - 1]));
                        acc[h] = act_back_t<HID>(zp[k * W_ + h], v, alpha);
                    }
                    if (!last) {
                        for (int h = 0; h < W_; ++h) dn[k * W_ + h] = acc[h];
                        continue;
                    }
                    {  // layer 1, unit k: db and dW[k][:] (the order of accumulate's k-outer branch per lane)
                        V sb[U];
                        for (int g = 0; g < U; ++g) sb[g] = ab1[k * U + g];
                        for (int h = 0; h < W_; ++h) sb[h % U] = sb[h % U] + acc[h];
                        for (int g = 0; g < U; ++g) ab1[k * U + g] = sb[g];
                    }
                    V* q = aw1 + size_t(k) * n1 * U;
                    for (int i = 0; i < n1; ++i) {
                        V sw[U];
                        for (int g = 0; g < U; ++g) sw[g] = q[i * U + g];
                        for (int h = 0; h < W_; ++h) sw[h % U] = sw[h % U] + acc[h] * a0[i * W_ + h];
                        for (int g = 0; g < U; ++g) q[i * U + g] = sw[g];
                    }
                }
                std::swap(dz, dn);
            }
            if (L == 1) accumulate<W_>(a.n(1), n0, dz, act + aoff[0] * W_, accW + woff[1] * U, accb + boff[1] * U);
        }
    }
};
#pragma GCC diagnostic pop

// Sum of SMALL_LANES values in a fixed tree (the same on every path): v[t] + v[t + 8], then + the one 4 further,
// then + the one 2 further, then the two (elementwise steps: vectorised within each SIMD clone, the same adds).
template <class S>
DNNKIT_ALWAYS_INLINE S small_lane_sum(const S* v) {
    static_assert(SMALL_LANES == 16, "tree");
    S s8[8], s4[4], s2[2];
    for (int t = 0; t < 8; ++t) s8[t] = v[t] + v[t + 8];
    for (int t = 0; t < 4; ++t) s4[t] = s8[t] + s8[t + 4];
    for (int t = 0; t < 2; ++t) s2[t] = s4[t] + s4[t + 2];
    return s2[0] + s2[1];
}

template <class T>
class SmallNet {
   public:
    static constexpr int B = SMALL_LANES;

    // The fused step covers these nets (sizes and activations only: the same path for any thread count).
    static bool eligible(const Arch& a) {
        if (!small::wanted()) return false;
        if (a.hidden != Act::relu && a.hidden != Act::leaky_relu && a.hidden != Act::linear) return false;
        const bool out_ok = (a.output == Act::sigmoid && (a.loss == Loss::bce || a.loss == Loss::mse)) ||
                            (a.output == Act::linear && a.loss == Loss::mse);
        if (!out_ok) return false;
        size_t w = 0;
        for (int l = 0; l <= a.L(); ++l)
            if (a.n(l) > SMALL_MAX_WIDTH) return false;
        for (int l = 1; l <= a.L(); ++l) w += size_t(a.n(l)) * a.n(l - 1);
        return w <= size_t(SMALL_MAX_WEIGHTS);
    }

    // Examples [0, h) and [h, m) are two parts, each summed in its own lanes and lane tree, the two results then
    // added: the helper thread (Trainer::run, serve) takes part 1 when it is there in time, else the training
    // thread runs it after part 0 on the same (zeroed) lanes. h depends on m alone (a multiple of 2B: each column
    // keeps its lane, and whole iterations of 32 examples on AVX2), hence the bits are the same for any thread
    // count and any SIMD level. Below SMALL_SPLIT_MIN examples one part: handing a part over costs more than half
    // a step saves.
    static int split_at(int m) { return m >= SMALL_SPLIT_MIN ? (m / 2 + B) / (2 * B) * (2 * B) : m; }

    explicit SmallNet(const Arch& a) : a_(a) {
        const int L = a.L();
        aoff_.assign(L + 1, 0);
        zoff_.assign(L + 1, 0);
        woff_.assign(L + 1, 0);
        boff_.assign(L + 1, 0);
        size_t na = 0, nz = 0, nw = 0, nb = 0;
        for (int l = 0; l <= L; ++l) {
            aoff_[l] = na;
            na += size_t(a.n(l));
        }
        for (int l = 1; l <= L; ++l) {
            zoff_[l] = nz;
            nz += size_t(a.n(l));
            woff_[l] = nw;
            nw += size_t(a.n(l)) * a.n(l - 1);
            boff_[l] = nb;
            nb += size_t(a.n(l));
        }
        constexpr size_t CBmax = 4 * B;  // examples per working row of the widest iteration (SmallKernel::CB)
        for (int pi = 0; pi < 2; ++pi) {
            Part& P = parts_[pi];
            P.act.assign(na * CBmax, T(0));
            P.z.assign(nz * CBmax, T(0));
            P.dz.assign(size_t(a.max_width()) * CBmax, T(0));
            P.da.assign(size_t(a.max_width()) * CBmax, T(0));
            P.accW.assign(nw * B, T(0));
            P.accb.assign(nb * B, T(0));
            P.g.assign(a.nparams, T(0));
        }
    }

    // One training pass over m examples (X n0 x m, Y nL x m): the cost when with_cost (else 0), the flat gradient
    // into grad; A[L] of `net` holds the output activations afterwards (the other caches are not written).
    double run(MLP<T>& net, const T* theta, const T* X, const T* Y, int m, const ByteMasks& bm, double l2, double l1,
               T* grad, bool with_cost) {
        net.resize(m);
        with_cost = with_cost && Y;
        T* AL = net.A[a_.L()].data();
        const int h = split_at(m), np = h < m ? 2 : 1;
        T* g1 = parts_[1].g.data();
        Part& P0 = parts_[0];  // this thread's working rows and lanes (part 0, and part 1 when it runs it too)
        double c[2] = {0.0, 0.0}, w[2] = {0.0, 0.0};
        bool mine = true;  // part 1 runs on this thread
        if (np == 2 && offering_) {  // part 1 to the helper thread (serve), or to this one if it has not taken it
            const uint64_t s = ++seq_;
            offer_.args = PartArgs{h, m, theta, X, Y, m, &bm, with_cost, AL, g1};
            offer_.state.store(2 * s, std::memory_order_release);
            part(P0, 0, h, theta, X, Y, m, bm, with_cost, AL, grad);
            c[0] = P0.cost_sum, w[0] = P0.wrong_sum;
            uint64_t posted = 2 * s;
            mine = offer_.state.compare_exchange_strong(posted, 2 * s + 1, std::memory_order_acq_rel);
            if (!mine) {
                for (int spin = 0; offer_.finished.load(std::memory_order_acquire) != s; ++spin) spin_relax(spin);
                c[1] = parts_[1].cost_sum, w[1] = parts_[1].wrong_sum;
            }
        } else {
            part(P0, 0, h, theta, X, Y, m, bm, with_cost, AL, grad);
            c[0] = P0.cost_sum, w[0] = P0.wrong_sum;
        }
        if (np == 2 && mine) {  // the same lanes again: part 0's were summed and zeroed (one L1 footprint)
            part(P0, h, m, theta, X, Y, m, bm, with_cost, AL, g1);
            c[1] = P0.cost_sum, w[1] = P0.wrong_sum;
        }
        if (np == 2)
            for (size_t q = 0; q < parts_[1].g.size(); ++q) grad[q] = grad[q] + g1[q];
        const double cost = np == 2 ? c[0] + c[1] : c[0];
        const double wrong = np == 2 ? w[0] + w[1] : w[0];
        wrong_ = with_cost && a_.loss == Loss::bce ? wrong : -1.0;
        // the lanes were reduced into the flat gradient (reduce, in the clone); regularization as the BLAS path
        const Arch& a = a_;
        const T cl2 = T(l2 / m), cl1 = T(l1 / (2.0 * m));
        if (l2 != 0.0 || l1 != 0.0)
            for (int l = 1; l <= a.L(); ++l)
                add_reg_grad(theta + a.woff[l], grad + a.woff[l], a.n(l - 1), 0, a.n(l), 0, a.n(l - 1), cl2, cl1);
        if (!with_cost) return 0.0;
        return cost / m + net.reg_cost(theta, m, l2, l1);
    }

    // Misclassified outputs (bce) of the last run with the cost: the count Trainer::errors would make from its
    // outputs (an integer, exact in double); < 0 when not counted (no cost, or not bce).
    double wrong() const { return wrong_; }

    // The helper thread (Trainer::run): offer_parts(true) before the steps, on the training thread, makes run()
    // offer part 1 of each two-part step; serve(done), on the helper thread, takes the offers until done.
    void offer_parts(bool on) {
        if (on) {
            seq_ = 0;
            offer_.finished.store(0, std::memory_order_relaxed);
            offer_.state.store(0, std::memory_order_release);
        }
        offering_ = on;
    }
    void serve(const std::atomic<bool>& done) {
        uint64_t last = 0;
        for (int spin = 0; !done.load(std::memory_order_acquire);) {
            uint64_t s = offer_.state.load(std::memory_order_acquire);
            if (s % 2 == 0 && s / 2 > last) {
                last = s / 2;
                spin = 0;
                if (offer_.state.compare_exchange_strong(s, s + 1, std::memory_order_acq_rel)) {
                    const PartArgs& r = offer_.args;
                    part(parts_[1], r.jb, r.je, r.theta, r.X, r.Y, r.m, *r.bm, r.with_cost, r.AL, r.out);
                    offer_.finished.store(last, std::memory_order_release);
                }
            } else {
                spin_relax(spin++);
            }
        }
    }

   private:
    double wrong_ = -1.0;
    Arch a_;
    std::vector<size_t> aoff_, zoff_, woff_, boff_;
    // One part's working rows and lane sums. 64-byte aligned: an AVX-512 vector of a working row never straddles
    // two cache lines (with malloc's 16-byte alignment it did or did not, by the luck of the heap: the same build
    // measured up to 15% apart); the two parts' cost / wrong lanes on cache lines of their own (two threads).
    struct alignas(64) Part {
        std::vector<T, CacheAligned<T>> act, z, dz, da, accW, accb;  // accW, accb: zero between runs
        std::vector<T, CacheAligned<T>> g;  // part 1's gradient (part 0 sums straight into the caller's)
        double cost[B], wrong[B];
        double cost_sum = 0.0, wrong_sum = 0.0;  // the lane trees of cost and wrong
    };
    Part parts_[2];
    // The offer of part 1 to the helper thread: state 2s = step s's part 1 offered, 2s + 1 = taken (by either
    // thread, one compare-exchange); finished = s once the helper has run it.
    struct PartArgs {
        int jb, je;
        const T* theta;
        const T* X;
        const T* Y;
        int m;
        const ByteMasks* bm;
        bool with_cost;
        T* AL;
        T* out;
    };
    struct alignas(64) Offer {
        std::atomic<uint64_t> state{0};
        alignas(64) std::atomic<uint64_t> finished{0};
        PartArgs args{};
    } offer_;
    uint64_t seq_ = 0;
    bool offering_ = false;

    // Examples [jb, je) on the working rows and lanes of P (parts_[0]: the training thread's, parts_[1]: the
    // helper's), on this CPU's SIMD level, then their lane trees: the gradient into out (flat, as the net's
    // parameters), the cost and error count into P.cost_sum / P.wrong_sum. The thread that ran the part sums its
    // lanes (in its own L1) and leaves them zero for the next part (no separate clearing pass).
    void part(Part& P, int jb, int je, const T* theta, const T* X, const T* Y, int m, const ByteMasks& bm,
              bool with_cost, T* AL, T* out) {
        if (&P == &parts_[1])  // the parameters (updated by the other thread) and out (read by it): every line at once
            for (size_t q = 0; q < a_.nparams; q += 64 / sizeof(T)) {
                __builtin_prefetch(theta + q, 0, 3);
                __builtin_prefetch(out + q, 1, 3);
            }
        for (int i = 0; i < B; ++i) P.cost[i] = P.wrong[i] = 0.0;
#if DNNKIT_HAS_SIMD_CLONES
        switch (simd::level()) {
            case simd::avx512: part_avx512(P, jb, je, theta, X, Y, m, bm, with_cost, AL, out); break;
            case simd::avx2: part_avx2(P, jb, je, theta, X, Y, m, bm, with_cost, AL, out); break;
            default: part_base(P, jb, je, theta, X, Y, m, bm, with_cost, AL, out); break;
        }
#else
        part_base(P, jb, je, theta, X, Y, m, bm, with_cost, AL, out);
#endif
        P.cost_sum = small_lane_sum(P.cost);
        P.wrong_sum = small_lane_sum(P.wrong);
    }

    template <int BYTES>
    DNNKIT_ALWAYS_INLINE void call(Part& P, int jb, int je, const T* theta, const T* X, const T* Y, int m,
                                   const ByteMasks& bm, bool with_cost, T* AL) {
        bool drop = false;
        for (int l = 0; l < a_.L(); ++l) drop = drop || bm.get(l);
        switch (a_.hidden) {
            case Act::relu: return drop ? go<BYTES, Act::relu, true>(P, jb, je, theta, X, Y, m, bm, with_cost, AL)
                                        : go<BYTES, Act::relu, false>(P, jb, je, theta, X, Y, m, bm, with_cost, AL);
            case Act::leaky_relu:
                return drop ? go<BYTES, Act::leaky_relu, true>(P, jb, je, theta, X, Y, m, bm, with_cost, AL)
                            : go<BYTES, Act::leaky_relu, false>(P, jb, je, theta, X, Y, m, bm, with_cost, AL);
            default: return drop ? go<BYTES, Act::linear, true>(P, jb, je, theta, X, Y, m, bm, with_cost, AL)
                                 : go<BYTES, Act::linear, false>(P, jb, je, theta, X, Y, m, bm, with_cost, AL);
        }
    }
    template <int BYTES, Act HID, bool DROP>
    DNNKIT_ALWAYS_INLINE void go(Part& P, int jb, int je, const T* theta, const T* X, const T* Y, int m,
                                 const ByteMasks& bm, bool with_cost, T* AL) {
        typedef SmallKernel<T, BYTES> K;
        // whole iterations of S blocks; a rest of at most S / 2 blocks then goes block by block (a longer one is
        // padded to S blocks: one block at a time costs more per example than the padding saves)
        int whole = jb + (je - jb) / K::CB * K::CB;
        if (K::S == 1 || (je - whole + B - 1) / B > K::S / 2) whole = je;
        K::template body<HID, DROP, K::S>(a_, aoff_.data(), zoff_.data(), woff_.data(), boff_.data(), P.act.data(),
                                          P.z.data(), P.dz.data(), P.da.data(), P.accW.data(), P.accb.data(), P.cost,
                                          P.wrong, AL, theta, X, Y, m, jb, whole, bm, with_cost);
        if (K::S > 1 && whole < je)  // the rest block by block
            K::template body<HID, DROP, 1>(a_, aoff_.data(), zoff_.data(), woff_.data(), boff_.data(), P.act.data(),
                                           P.z.data(), P.dz.data(), P.da.data(), P.accW.data(), P.accb.data(), P.cost,
                                           P.wrong, AL, theta, X, Y, m, whole, je, bm, with_cost);
    }
    // a part's lane sums into the flat gradient out (dW, db of every layer), the accumulators zeroed after
    template <int BYTES>
    DNNKIT_ALWAYS_INLINE void reduce(Part& P, T* out) const {
        const Arch& a = a_;
        for (int l = 1; l <= a.L(); ++l) {
            const size_t nw = size_t(a.n(l)) * a.n(l - 1);
            T* dW = out + a.woff[l];
            T* db = out + a.boff[l];
            T* aw = P.accW.data() + woff_[l] * B;
            T* ab = P.accb.data() + boff_[l] * B;
            for (size_t q = 0; q < nw; ++q) dW[q] = SmallKernel<T, BYTES>::lane_sum(aw + q * B);
            for (size_t u = 0; u < size_t(a.n(l)); ++u) db[u] = SmallKernel<T, BYTES>::lane_sum(ab + u * B);
        }
        // zero for the next part, in two passes (a memset per 16-lane row compiled to `rep stos`: ~30 cycles each)
        std::memset(P.accW.data(), 0, P.accW.size() * sizeof(T));
        std::memset(P.accb.data(), 0, P.accb.size() * sizeof(T));
    }
    __attribute__((noinline)) void part_base(Part& P, int jb, int je, const T* theta, const T* X, const T* Y, int m,
                                             const ByteMasks& bm, bool with_cost, T* AL, T* out) {
        call<16>(P, jb, je, theta, X, Y, m, bm, with_cost, AL);
        reduce<16>(P, out);
    }
#if DNNKIT_HAS_SIMD_CLONES
    DNNKIT_TARGET_AVX2 void part_avx2(Part& P, int jb, int je, const T* theta, const T* X, const T* Y, int m,
                                      const ByteMasks& bm, bool with_cost, T* AL, T* out) {
        call<32>(P, jb, je, theta, X, Y, m, bm, with_cost, AL);
        reduce<32>(P, out);
    }
    DNNKIT_TARGET_AVX512 void part_avx512(Part& P, int jb, int je, const T* theta, const T* X, const T* Y, int m,
                                          const ByteMasks& bm, bool with_cost, T* AL, T* out) {
        call<64>(P, jb, je, theta, X, Y, m, bm, with_cost, AL);
        reduce<64>(P, out);
    }
#endif
};

}  // namespace dnnkit
