// The smooth path of the gradient checker (tanh / sigmoid hidden layers): every centered difference of a hidden
// layer's coordinate from a short series per (unit, example), with a proven truncation bound, no transcendental
// per coordinate. Part of the gradient checker (see ../gradcheck.hpp for the overview): the dispatcher
// (dispatch.hpp) sends tanh/sigmoid hidden-layer coordinates here and the ones whose bound fails to the general
// path. Also ActPoly: the general path's and the directional mode's polynomial tanh/sigmoid deltas.
//
// Why it is the same number. Perturbing W[l][i,j] (b[l][i]) by s*eps shifts only Z[l][i,k], by t_k = s*eps*a_k
// (a_k = A[l-1][j,k] after dropout; 1 for the bias). Examples are independent, so the cost change is
// (1/m) sum_k (f_k(t_k) - f_k(0)), where f_k(t) is the loss of example k with Z[l][i,k] shifted by t: one
// scalar function per (unit, example), the same for every coordinate of the unit. f_k is analytic and
//      (f_k(r) - f_k(-r)) / 2 = c1 r + c3 r^3 + sum_{odd n >= 5} c_n r^n,
// so the centered difference (J(+) - J(-)) / 2eps equals
//      (1/m) sum_k (c1_k a_k + eps^2 c3_k a_k^3)  +  (1/m) sum_k tail_k / eps.
// c1_k, c3_k are the exact Taylor coefficients of f_k, computed once per unit by truncated Taylor arithmetic
// (orders 1..3: value shifts p1 t + p2 t^2 + p3 t^3 pushed through every downstream layer; hidden layers compose
// with g', g''/2, g'''/6 precomputed at the unperturbed Z; the suffix products are (n, 3m) GEMMs; the loss series
// from p = softmax / sigmoid and its derivatives). Each coordinate then costs a few fused sums over the m
// examples (coord_sums): no exp, no tanh, no suffix pass.
//
// The tail bound (Cauchy). Let R_k be a radius such that for every complex t with |t| <= R_k every hidden
// pre-activation downstream moves by at most rho0 = 1/2 and every output by at most 1/4 (computed from gains
// gamma: |dZ[l+1][u]| <= |W[l+1][u,i]| Lam_i |t|, |dZ[l'+1]| <= |W[l'+1]| (Lam gamma)[l'], where
// Lam = D sup_{|w| <= rho0} |g'(z + w)| in closed form: tanh: 1 / (sinh^2(max(|z| - rho0, 0)) + cos^2 rho0),
// sigmoid: 1 / (4 (sinh^2(max(|z| - rho0, 0) / 2) + cos^2(rho0 / 2))), from |cosh(x + iy)|^2 = sinh^2 x + cos^2 y).
// Then f_k is holomorphic on |t| <= R_k (no pole of tanh / sigmoid reached, the loss's log argument within 0.33
// of 1) and |f_k(t) - f_k(0)| <= M_k = mu_k R_k there, mu_k from the loss: ce: 2 e^{1/4} sum_c p_c gamma_c +
// sum_c |y_c| gamma_c (|log(1+w)| <= 2|w| for |w| <= 1/2, |e^v - 1| <= e^{1/4} |v|); bce likewise with s_c;
// mse: sum_c (|a_c - y_c| + 1/8) gamma_c; mse through a sigmoid: (|a - y| + 0.04) Lam_out gamma. Cauchy's
// estimate |c_n| <= M_k / R_k^n gives, for r = eps |a_k| <= R_k / 2,
//      |tail_k / eps| <= (4/3) mu_k eps^4 |a_k|^5 / R_k^4 =: beta_k eps^4 |a_k|^5 / 2   (beta: 2x safety).
// A coordinate is accepted when eps max_k |a_k| / R_k <= 1/2 and eps^4 sum_k beta_k |a_k|^5 <= 2^-56 sum_k |c1_k a_k|:
// the neglected tail is below the rounding error that summing the m per-example terms already has (and below
// the general path's). The others go to the general path, which computes them as before. With eps = 1e-7 the
// tail is ~1e-24 of the sum on ordinary nets, saturated ones included (saturation shrinks gamma and mu with g').
//
// Same results on every thread count (units are independent tasks, sizes-only GEMM shapes) and on every SIMD
// path (simd.hpp: the per-unit work is compiled for baseline / AVX2 / AVX-512, without FMA contraction, with
// fixed-order 8-lane sums).
#pragma once
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <vector>

#include "../mlp.hpp"
#include "../parallel.hpp"
#include "../simd.hpp"

namespace dnnkit {

class SmoothPath {
   public:
    // Views of the checker's cached unperturbed pass (they must outlive this object).
    struct View {
        const Arch* arch = nullptr;
        const double* theta = nullptr;
        const double* Y = nullptr;
        int m = 0;
        std::vector<const double*> Z, G, D, A;  // per layer l: Z[l], g(Z[l]) (softmax p at L), dropout scales or
                                                // nullptr, A[l] after dropout (A[0]: the network's input)
    };
    static bool applies(const Arch& a) { return a.hidden == Act::tanh || a.hidden == Act::sigmoid; }

    static constexpr double rho0 = 0.5;     // hidden pre-activations stay within rho0 (complex) on |t| <= R
    static constexpr double rho_out = 0.25;  // outputs within 1/4
    static constexpr double tol = 0x1p-53;   // tail <= u * sum_k (|c1_k a_k| + eps |c2_k| a_k^2)

    explicit SmoothPath(const View& v) : v_(v) {
        const Arch& a = *v.arch;
        const int L = a.L(), m = v.m;
        const size_t M = size_t(m);
        g1_.assign(L + 1, {});
        g2_.assign(L + 1, {});
        g3_.assign(L + 1, {});
        lam_.assign(L + 1, {});
        absW_.assign(L + 1, {});
        const bool th = a.hidden == Act::tanh;
        const int Lh = applies(a) ? L : 0;  // piecewise-linear hidden layers (pwl_unit): the loss part only
        const double c0 = th ? std::cos(rho0) : std::cos(rho0 / 2), cc = c0 * c0;
        for (int l = 1; l < Lh; ++l) {
            const size_t n = size_t(a.n(l)) * M;
            g1_[l].resize(n);
            g2_[l].resize(n);
            g3_[l].resize(n);
            lam_[l].resize(n);
            const double* z = v.Z[l];
            const double* g = v.G[l];
            const double* D = v.D[l];
            for (size_t q = 0; q < n; ++q) {
                double d1, d2, d3, lam;
                const double az = std::fabs(z[q]), x = std::max(az - rho0, 0.0);
                if (th) {
                    const double T = g[q], e = std::exp(-2.0 * az), S = 4.0 * e / ((1.0 + e) * (1.0 + e));  // sech^2
                    d1 = S;
                    d2 = -T * S;                  // g''/2
                    d3 = S * (T * T - 1.0 / 3);  // g'''/6
                    const double sh = std::sinh(x);
                    lam = 1.0 / (sh * sh + cc);
                } else {
                    const double s = g[q], qq = z[q] >= 0.0 ? std::exp(-z[q]) * s : 1.0 - s, sq = s * qq;
                    d1 = sq;
                    d2 = sq * (qq - s) / 2;
                    d3 = sq * (1.0 - 6.0 * sq) / 6;
                    const double sh = std::sinh(x / 2);
                    lam = 1.0 / (4.0 * (sh * sh + cc));
                }
                lam *= 1.0 + 1e-6;  // covers the rounding of the closed form
                const double dd = D ? D[q] : 1.0;
                g1_[l][q] = dd * d1;
                g2_[l][q] = dd * d2;
                g3_[l][q] = dd * d3;
                lam_[l][q] = dd * lam;
            }
        }
        for (int l = 3; l <= Lh; ++l) {
            const double* w = W(l);
            absW_[l].resize(size_t(a.n(l)) * a.n(l - 1));
            for (size_t q = 0; q < absW_[l].size(); ++q) absW_[l][q] = std::fabs(w[q]);
        }
        if (!applies(a)) {  // piecewise-linear (pwl_unit): the rows' max |a|, for the cheap routing test
            amax_.assign(L, {});
            for (int l = 0; l + 1 < L; ++l) {
                const int n = a.n(l);
                amax_[l].assign(size_t(n), 0.0);
                for (int j = 0; j < n; ++j) {
                    const double* x = v.A[l] + size_t(j) * M;
                    double mx = 0.0;
                    for (size_t k = 0; k < M; ++k) mx = std::max(mx, std::fabs(x[k]));
                    amax_[l][j] = mx;
                }
            }
        }
        // the loss at the output, per (c, k)
        const int nL = a.n(L);
        const size_t no = size_t(nL) * M;
        o0_.assign(no, 0.0);
        o1_.assign(no, 0.0);
        o2_.assign(no, 0.0);
        o3_.assign(no, 0.0);
        w1_.assign(no, 0.0);
        w2_.assign(no, 0.0);
        const double* zL = v.Z[L];
        const double* gL = v.G[L];
        const double* Y = v.Y;
        const double sf = 1.0 + 1e-6;  // covers the rounding of the bound coefficients
        if (a.loss == Loss::ce) {
            for (int k = 0; k < m; ++k) {
                int cs = 0;
                for (int c = 1; c < nL; ++c)
                    if (gL[size_t(c) * M + k] > gL[size_t(cs) * M + k]) cs = c;
                double rest = 0.0;  // 1 - p_cs, from the others (no cancellation when p_cs is near 1)
                for (int c = 0; c < nL; ++c) {
                    const size_t o = size_t(c) * M + k;
                    o0_[o] = gL[o];
                    w2_[o] = 0.65 * sf * gL[o];
                    if (c != cs) {
                        o1_[o] = gL[o] - Y[o];
                        rest += gL[o];
                    }
                }
                const size_t o = size_t(cs) * M + k;
                o1_[o] = (1.0 - Y[o]) - rest;  // p - y
                for (int c = 0; c < nL; ++c) w1_[size_t(c) * M + k] = sf * std::fabs(o1_[size_t(c) * M + k]);
            }
        } else {
            const double cs8 = std::cos(rho_out / 2) * std::cos(rho_out / 2);
            for (size_t o = 0; o < no; ++o) {
                const double y = Y[o];
                if (a.output == Act::linear) {  // mse
                    o0_[o] = gL[o] - y;
                    w1_[o] = sf * std::fabs(gL[o] - y);
                    w2_[o] = sf * 0.5;
                    continue;
                }
                const double s = gL[o], z = zL[o], q = z >= 0.0 ? std::exp(-z) * s : 1.0 - s, sq = s * q;
                if (a.loss == Loss::bce) {
                    o0_[o] = s * (1.0 - y) - y * q;  // s - y
                    o1_[o] = sq;
                    o2_[o] = sq * (q - s) / 6;
                    w1_[o] = sf * std::fabs(o0_[o]);
                    w2_[o] = sf * (1.25 * s * s + 0.65 * s);
                } else {  // mse through a sigmoid
                    o0_[o] = s - y;
                    o1_[o] = sq;
                    o2_[o] = sq * (q - s) / 2;
                    o3_[o] = sq * (1.0 - 6.0 * sq) / 6;
                    const double sh = std::sinh(std::max(std::fabs(z) - rho_out, 0.0) / 2);
                    const double ls = sf / (4.0 * (sh * sh + cs8));  // sup |sigma'| on the disk of radius 1/4
                    w1_[o] = sf * std::fabs(s - y) * ls;
                    w2_[o] = sf * 0.5 * ls * ls;
                }
            }
        }
    }

    struct Scratch {
        std::vector<double> P, P2, Gm, Gm2, S, SG, c1, c2, ac1, ac2, c3, beta, invR, gmax, gout, A1, A2, pg, ex, ey,
            ones;
    };

    // Unit (l, i), l < L: for its coordinates js[b] (j < 0: the bias), out[b] = the centered difference of the data
    // part of the cost (the caller adds the closed-form L2/L1 change) and ok[b] = 1 where the tail bound holds
    // (else out[b] is meaningless and the caller routes the coordinate to the general path).
    // Polls `poll` (when given) every 4096 coordinates; returns false when it asked to stop.
    bool unit(int l, int i, double eps, const int* js, size_t B, double* out, uint8_t* ok, Scratch& s,
              const std::function<bool()>* poll) const {
#if DNNKIT_HAS_SIMD_CLONES
        switch (simd::level()) {
            case simd::avx512: return unit_avx512(l, i, eps, js, B, out, ok, s, poll);
            case simd::avx2: return unit_avx2(l, i, eps, js, B, out, ok, s, poll);
            default: break;
        }
#endif
        return unit_base(l, i, eps, js, B, out, ok, s, poll);
    }

    // Piecewise-linear hidden layers (relu / leaky_relu / linear; called by the fast path, fast_path.hpp).
    // Inside the linear region around the unperturbed point, f_k(t) equals F_k(t) = loss_k(Z[L][:,k] + t x_k),
    // x_k = dZ[L][:,k] / dZ[l][i,k] the region's exact Jacobian column (the fast path's G times S[l][i,k]). F_k is
    // analytic, and the linear hidden layers add no singularity, so the series and the Cauchy tail bound above hold
    // as they are, with g^(n) = 0 for n >= 2 and the radius set by the outputs alone: R_k = min(rho0, 1/4 / max_c
    // gx_c,k) with gx = |x| (the Jacobian is constant on the disk: no sup over it is needed). f_k = F_k on the real interval |t| <= eps |a_k| when no unit
    // crosses its kink there, i.e. when eps |a_k| < T_k for every example with a_k != 0: exactly the fast path's
    // routing test (T: its thresholds, the unit's own kink and the downstream margins).
    // x, gx: (nL, m) rows; T: (m). For the coordinates js[b] of unit (l, .): st[b] = 0: out[b] = the series'
    // centered difference of the data part of the cost; 1: a kink may be within reach (the caller routes it to the
    // general path, as before); 2: no kink within reach, but the tail bound failed (the caller uses its exact
    // loss-pair form). Polls `poll` (when given) every 4096 coordinates; returns false when it asked to stop.
    bool pwl_unit(int l, double eps, const double* x, const double* gx, const double* T, const int* js, size_t B,
                  double* out, uint8_t* st, Scratch& s, const std::function<bool()>* poll) const {
#if DNNKIT_HAS_SIMD_CLONES
        switch (simd::level()) {
            case simd::avx512: return pwl_avx512(l, eps, x, gx, T, js, B, out, st, s, poll);
            case simd::avx2: return pwl_avx2(l, eps, x, gx, T, js, B, out, st, s, poll);
            default: break;
        }
#endif
        return pwl_base(l, eps, x, gx, T, js, B, out, st, s, poll);
    }

   private:
    View v_;
    std::vector<std::vector<double>> g1_, g2_, g3_, lam_, absW_;  // D g', D g''/2, D g'''/6, D Lam; |W|
    std::vector<double> o0_, o1_, o2_, o3_, w1_, w2_;               // loss coefficients per (c, k), see ctor
    std::vector<std::vector<double>> amax_;  // piecewise-linear: max_k |A[l][j,k]| per row (l < L - 1), see ctor

    const double* W(int l) const { return v_.theta + v_.arch->woff[l]; }

    __attribute__((noinline)) bool unit_base(int l, int i, double eps, const int* js, size_t B, double* out,
                                             uint8_t* ok, Scratch& s, const std::function<bool()>* poll) const {
        return unit_body(l, i, eps, js, B, out, ok, s, poll);
    }
#if DNNKIT_HAS_SIMD_CLONES
    DNNKIT_TARGET_AVX2 bool unit_avx2(int l, int i, double eps, const int* js, size_t B, double* out, uint8_t* ok,
                                      Scratch& s, const std::function<bool()>* poll) const {
        return unit_body(l, i, eps, js, B, out, ok, s, poll);
    }
    DNNKIT_TARGET_AVX512 bool unit_avx512(int l, int i, double eps, const int* js, size_t B, double* out,
                                          uint8_t* ok, Scratch& s, const std::function<bool()>* poll) const {
        return unit_body(l, i, eps, js, B, out, ok, s, poll);
    }
#endif

    __attribute__((noinline)) bool pwl_base(int l, double eps, const double* x, const double* gx, const double* T,
                                            const int* js, size_t B, double* out, uint8_t* st, Scratch& s,
                                            const std::function<bool()>* poll) const {
        return pwl_body(l, eps, x, gx, T, js, B, out, st, s, poll);
    }
#if DNNKIT_HAS_SIMD_CLONES
    DNNKIT_TARGET_AVX2 bool pwl_avx2(int l, double eps, const double* x, const double* gx, const double* T,
                                     const int* js, size_t B, double* out, uint8_t* st, Scratch& s,
                                     const std::function<bool()>* poll) const {
        return pwl_body(l, eps, x, gx, T, js, B, out, st, s, poll);
    }
    DNNKIT_TARGET_AVX512 bool pwl_avx512(int l, double eps, const double* x, const double* gx, const double* T,
                                         const int* js, size_t B, double* out, uint8_t* st, Scratch& s,
                                         const std::function<bool()>* poll) const {
        return pwl_body(l, eps, x, gx, T, js, B, out, st, s, poll);
    }
#endif

    // 8 fixed lanes, combined in a fixed tree: the same sum whatever the vector width
    static inline __attribute__((always_inline)) double tree8(const double* p) {
        return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
    }

    inline __attribute__((always_inline)) bool unit_body(int l, int i, double eps, const int* js, size_t B,
                                                         double* out, uint8_t* ok, Scratch& s,
                                                         const std::function<bool()>* poll) const {
        const Arch& a = *v_.arch;
        const int L = a.L(), m = v_.m, nl = a.n(l);
        const size_t M = size_t(m), M3 = 3 * M;
        const double* __restrict e1 = g1_[l].data() + size_t(i) * M;
        const double* __restrict e2 = g2_[l].data() + size_t(i) * M;
        const double* __restrict e3 = g3_[l].data() + size_t(i) * M;
        const double* __restrict lam = lam_[l].data() + size_t(i) * M;
        s.gmax.assign(M, 0.0);
        // layer l+1: rank one, dZ[l+1][u] = W[l+1][u, i] (e1 t + e2 t^2 + e3 t^3), gain |W[l+1][u, i]| Lam
        {
            const int n1 = a.n(l + 1);
            const double* W1 = W(l + 1);
            s.P.resize(size_t(n1) * M3);
            s.Gm.resize(size_t(n1) * M);
            for (int u = 0; u < n1; ++u) {
                const double w = W1[size_t(u) * nl + i], aw = std::fabs(w);
                double* __restrict p = s.P.data() + size_t(u) * M3;
                double* __restrict gm = s.Gm.data() + size_t(u) * M;
                for (size_t k = 0; k < M; ++k) {
                    p[k] = w * e1[k];
                    p[M + k] = w * e2[k];
                    p[2 * M + k] = w * e3[k];
                    gm[k] = aw * lam[k];
                }
            }
        }
        // hidden layers l+1 .. L-1: compose with g, then the next product (one (n, 3m) GEMM for the three orders)
        for (int lp = l + 1; lp < L; ++lp) {
            const int n = a.n(lp), nn = a.n(lp + 1);
            s.S.resize(size_t(n) * M3);
            s.SG.resize(size_t(n) * M);
            double* __restrict gmax = s.gmax.data();
            for (int u = 0; u < n; ++u) {
                const double* __restrict p = s.P.data() + size_t(u) * M3;
                const double* __restrict gm = s.Gm.data() + size_t(u) * M;
                const double* __restrict h1 = g1_[lp].data() + size_t(u) * M;
                const double* __restrict h2 = g2_[lp].data() + size_t(u) * M;
                const double* __restrict h3 = g3_[lp].data() + size_t(u) * M;
                const double* __restrict lm = lam_[lp].data() + size_t(u) * M;
                double* __restrict q = s.S.data() + size_t(u) * M3;
                double* __restrict sg = s.SG.data() + size_t(u) * M;
                for (size_t k = 0; k < M; ++k) {
                    const double p1 = p[k], p2 = p[M + k], p3 = p[2 * M + k];
                    q[k] = h1[k] * p1;
                    q[M + k] = h1[k] * p2 + h2[k] * (p1 * p1);
                    q[2 * M + k] = (h1[k] * p3 + (2.0 * h2[k]) * (p1 * p2)) + h3[k] * (p1 * (p1 * p1));
                    sg[k] = lm[k] * gm[k];
                    gmax[k] = std::max(gmax[k], gm[k]);
                }
            }
            s.P2.resize(size_t(nn) * M3);
            s.Gm2.resize(size_t(nn) * M);
            gemm(false, false, nn, int(M3), n, 1.0, W(lp + 1), n, s.S.data(), int(M3), 0.0, s.P2.data(), int(M3));
            const double* aw = lp + 1 >= 3 ? absW_[lp + 1].data() : nullptr;  // lp + 1 >= 3 always here
            gemm(false, false, nn, m, n, 1.0, aw, n, s.SG.data(), m, 0.0, s.Gm2.data(), m);
            std::swap(s.P, s.P2);
            std::swap(s.Gm, s.Gm2);
        }
        loss_coefs(s);
        if (!series_coords(l, eps, nullptr, nullptr, js, B, out, ok, s, poll)) return false;
        for (size_t b = 0; b < B; ++b) ok[b] = uint8_t(ok[b] == 0);  // series_coords' codes -> ok
        return true;
    }

    // 8 fixed lanes as one GCC vector (lowered to 4 SSE2 / 2 AVX2 / 1 AVX-512 registers: the same lanes, the same
    // elementwise operations in the same order, so the same bits on every path; no reassociation needed)
// -Wpsabi: the helpers below are always inlined into each ISA's clone, no call passes a vector; GCC reports at
// the end of the translation unit, so the suppression cannot be popped
#pragma GCC diagnostic ignored "-Wpsabi"
    typedef double v8d __attribute__((vector_size(64)));
    typedef long long v8l __attribute__((vector_size(64)));
    static inline __attribute__((always_inline)) v8d ld8(const double* p) {
        v8d v;
        std::memcpy(&v, p, sizeof v);
        return v;
    }
    static inline __attribute__((always_inline)) v8d abs8(v8d v) {
        return (v8d)((v8l)v & (v8l){0x7fffffffffffffffLL, 0x7fffffffffffffffLL, 0x7fffffffffffffffLL,
                                       0x7fffffffffffffffLL, 0x7fffffffffffffffLL, 0x7fffffffffffffffLL,
                                       0x7fffffffffffffffLL, 0x7fffffffffffffffLL});
    }

    // sum c1 a, sum c3 a^3 alone, in the same lanes and tree as pwl_sums (the same bits)
    static inline __attribute__((always_inline)) void pwl_sums2(const double* __restrict x, const double* __restrict c1,
                                                                const double* __restrict c3, size_t M, double* r) {
        v8d S1 = {0, 0, 0, 0, 0, 0, 0, 0}, S3 = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t k = 0;
        for (; k + 8 <= M; k += 8) {
            const v8d v = ld8(x + k), v2 = v * v;
            S1 += ld8(c1 + k) * v;
            S3 += ld8(c3 + k) * (v2 * v);
        }
        double s1[8], s3[8];
        std::memcpy(s1, &S1, sizeof s1);
        std::memcpy(s3, &S3, sizeof s3);
        for (; k < M; ++k) {
            const int t = int(k & 7);
            const double v = x[k], v2 = v * v;
            s1[t] += c1[k] * v;
            s3[t] += c3[k] * (v2 * v);
        }
        r[0] = tree8(s1);
        r[1] = tree8(s3);
    }

    // one coordinate's sums (8 fixed lanes, fixed tree): r = sum c1 a, sum c3 a^3, sum |c1 a|, sum |c2| a^2,
    // sum beta |a|^5, max |a| / R; returns the routing test (Kink: per example; else known to pass: 0)
    template <bool Kink>
    static inline __attribute__((always_inline)) int pwl_sums(const double* __restrict x, const double* __restrict T,
                                                              double eps, const double* __restrict c1,
                                                              const double* __restrict c3, const double* __restrict ac1,
                                                              const double* __restrict ac2, const double* __restrict beta,
                                                              const double* __restrict invR, size_t M, double* r) {
        const v8d Z = {0, 0, 0, 0, 0, 0, 0, 0};
        v8d S1 = Z, S3 = Z, SA = Z, SB = Z, SE = Z, SX = Z;
        v8l KB = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t k = 0;
        for (; k + 8 <= M; k += 8) {
            const v8d v = ld8(x + k), av = abs8(v), v2 = v * v, rr = av * ld8(invR + k);
            if constexpr (Kink) KB |= (eps * av >= ld8(T + k)) & (v != Z);  // fast_path.hpp's test
            S1 += ld8(c1 + k) * v;
            S3 += ld8(c3 + k) * (v2 * v);
            SA += ld8(ac1 + k) * av;
            SB += ld8(ac2 + k) * v2;
            SE += ld8(beta + k) * ((v2 * v2) * av);
            SX = SX < rr ? rr : SX;
        }
        double s1[8], s3[8], sa[8], sb[8], se[8], sx[8];
        long long kl[8];
        std::memcpy(s1, &S1, sizeof s1);
        std::memcpy(s3, &S3, sizeof s3);
        std::memcpy(sa, &SA, sizeof sa);
        std::memcpy(sb, &SB, sizeof sb);
        std::memcpy(se, &SE, sizeof se);
        std::memcpy(sx, &SX, sizeof sx);
        std::memcpy(kl, &KB, sizeof kl);
        int kb[8];
        for (int t = 0; t < 8; ++t) kb[t] = kl[t] != 0;
        for (; k < M; ++k) {
            const int t = int(k & 7);
            const double v = x[k], av = std::fabs(v), v2 = v * v, rr = av * invR[k];
            if constexpr (Kink) kb[t] |= int(eps * av >= T[k]) & int(v != 0.0);
            s1[t] += c1[k] * v;
            s3[t] += c3[k] * (v2 * v);
            sa[t] += ac1[k] * av;
            sb[t] += ac2[k] * v2;
            se[t] += beta[k] * ((v2 * v2) * av);
            sx[t] = sx[t] < rr ? rr : sx[t];
        }
        double X = 0.0;
        int bad = 0;
        for (int t = 0; t < 8; ++t) {
            X = X < sx[t] ? sx[t] : X;
            bad |= kb[t];
        }
        r[0] = tree8(s1);
        r[1] = tree8(s3);
        r[2] = tree8(sa);
        r[3] = tree8(sb);
        r[4] = tree8(se);
        r[5] = X;
        return bad;
    }

    // The coordinates of one unit, after loss_coefs: a few fused sums over the examples each (shared by the smooth
    // and the piecewise-linear series). T: the per-example kink thresholds of the routing test (nullptr: no kinks);
    // amax: the row maxima of |A[l-1]| for the cheap pre-tests (nullptr: always the full sums). st[b]: 0 accepted,
    // 1 a kink in reach, 2 the tail bound fails; out[b] the series value either way.
    inline __attribute__((always_inline)) bool series_coords(int l, double eps, const double* __restrict T,
                                                             const double* amax, const int* js, size_t B, double* out,
                                                             uint8_t* st, Scratch& s,
                                                             const std::function<bool()>* poll) const {
        const size_t M = size_t(v_.m);
        if (s.ones.size() != M) s.ones.assign(M, 1.0);
        const double* Aprev = v_.A[l - 1];
        const double eps2 = eps * eps, eps4 = eps2 * eps2, invm = 1.0 / double(v_.m);
        const double* __restrict c1 = s.c1.data();
        const double* __restrict c3 = s.c3.data();
        const double* __restrict ac1 = s.ac1.data();
        const double* __restrict ac2 = s.ac2.data();
        const double* __restrict beta = s.beta.data();
        const double* __restrict invR = s.invR.data();
        // the routing test, cheaply where it clearly passes: eps max_k |a_k| < min_k T_k implies eps |a_k| < T_k for
        // every k (rounding is monotone): the same verdict as the per-example test, which runs otherwise
        const double inf = std::numeric_limits<double>::infinity();
        double Tmin = inf;
        if (T)
            for (size_t k = 0; k < M; ++k) Tmin = T[k] < Tmin ? T[k] : Tmin;
        // the tail bound, cheaply where it clearly holds: with kappa = max_k beta_k / |c1_k| (inf if some beta_k > 0
        // has c1_k = 0), sum_k beta_k |a_k|^5 <= kappa max|a|^4 sum_k |c1_k a_k|, so eps^4 kappa max|a|^4 <= tol
        // (and eps max|a| max_k 1/R_k <= 1/2) implies the per-coordinate test; the full sums run otherwise. Either
        // way the number is the same sum (s1, s3 in the same lanes and tree).
        double kappa = 0.0, iRmax = 0.0;
        for (size_t k = 0; amax && k < M; ++k) {
            const double q = beta[k] > 0.0 ? (ac1[k] > 0.0 ? beta[k] / ac1[k] : inf) : 0.0;
            kappa = kappa < q ? q : kappa;
            iRmax = iRmax < invR[k] ? invR[k] : iRmax;
        }
        kappa *= 1.0 + 1e-9;  // covers the rounding of the quotients and of the test below
        for (size_t b = 0; b < B; ++b) {
            if (poll && b % 4096 == 4095 && (*poll)()) return false;
            const double* __restrict x = js[b] < 0 ? s.ones.data() : Aprev + size_t(js[b]) * M;
            const double am = js[b] < 0 || !amax ? 1.0 : amax[js[b]], am2 = am * am;
            const bool nokink = eps * am < Tmin;
            if (amax && nokink && eps * am * iRmax * (1.0 + 1e-9) <= 0.5 && eps4 * (kappa * (am2 * am2)) <= tol) {
                double r[2];
                pwl_sums2(x, c1, c3, M, r);
                out[b] = (r[0] + eps2 * r[1]) * invm;
                st[b] = 0;
                continue;
            }
            double r[6];
            const int bad = nokink ? pwl_sums<false>(x, T, eps, c1, c3, ac1, ac2, beta, invR, M, r)
                                   : pwl_sums<true>(x, T, eps, c1, c3, ac1, ac2, beta, invR, M, r);
            const double S = r[2] + eps * r[3];
            out[b] = (r[0] + eps2 * r[1]) * invm;
            st[b] = bad ? uint8_t(1) : uint8_t(eps * r[5] <= 0.5 && eps4 * r[4] <= tol * S ? 0 : 2);
        }
        return true;
    }

    inline __attribute__((always_inline)) bool pwl_body(int l, double eps, const double* __restrict xs,
                                                        const double* __restrict gx, const double* __restrict T,
                                                        const int* js, size_t B, double* out, uint8_t* st,
                                                        Scratch& s, const std::function<bool()>* poll) const {
        const int nL = v_.arch->n(v_.arch->L());
        const size_t M = size_t(v_.m), M3 = 3 * M;
        // the output series: order 1 only (the hidden layers are linear in the region); no hidden gains
        s.gmax.assign(M, 0.0);
        s.P.assign(size_t(nL) * M3, 0.0);
        s.Gm.resize(size_t(nL) * M);
        for (int c = 0; c < nL; ++c) {
            std::copy_n(xs + size_t(c) * M, M, s.P.data() + size_t(c) * M3);
            std::copy_n(gx + size_t(c) * M, M, s.Gm.data() + size_t(c) * M);
        }
        loss_coefs(s);
        return series_coords(l, eps, T, amax_[l - 1].data(), js, B, out, st, s, poll);
        return true;
    }

    // loss_coefs' first pass over the outputs, K: 0 ce, 1 bce, 2 mse, 3 mse through a sigmoid
    template <int K>
    inline __attribute__((always_inline)) void loss_pass1(const Scratch& s, double* __restrict c1,
                                                          double* __restrict c2, double* __restrict c3,
                                                          double* __restrict A1, double* __restrict A2,
                                                          double* __restrict pg, double* __restrict go,
                                                          double* __restrict ex, double* __restrict ey) const {
        const int nL = v_.arch->n(v_.arch->L());
        const size_t M = size_t(v_.m), M3 = 3 * M;
        for (int c = 0; c < nL; ++c) {
            const double* __restrict p = s.P.data() + size_t(c) * M3;
            const double* __restrict gm = s.Gm.data() + size_t(c) * M;
            const double* __restrict f0 = o0_.data() + size_t(c) * M;
            const double* __restrict f1 = o1_.data() + size_t(c) * M;
            const double* __restrict f2 = o2_.data() + size_t(c) * M;
            const double* __restrict f3 = o3_.data() + size_t(c) * M;
            const double* __restrict u1 = w1_.data() + size_t(c) * M;
            const double* __restrict u2 = w2_.data() + size_t(c) * M;
            for (size_t k = 0; k < M; ++k) {
                const double x = p[k], y = p[M + k], w = p[2 * M + k], g = gm[k];
                A1[k] += u1[k] * g;
                A2[k] += u2[k] * (g * g);
                go[k] = std::max(go[k], g);
                if constexpr (K == 0) {  // f0 = p, f1 = p - y; first pass: means, linear parts
                    c1[k] += f1[k] * x;
                    c2[k] += f1[k] * y;
                    c3[k] += f1[k] * w;
                    ex[k] += f0[k] * x;
                    ey[k] += f0[k] * y;
                    pg[k] += f0[k] * g;
                } else if constexpr (K == 1) {  // f0 = s - y, f1 = s q, f2 = s q (q - s) / 6
                    c1[k] += f0[k] * x;
                    c2[k] += f0[k] * y + (0.5 * f1[k]) * (x * x);
                    c3[k] += (f0[k] * w + f1[k] * (x * y)) + f2[k] * (x * (x * x));
                } else if constexpr (K == 2) {  // mse: f0 = a - y
                    c1[k] += f0[k] * x;
                    c2[k] += f0[k] * y + 0.5 * (x * x);
                    c3[k] += f0[k] * w + x * y;
                } else {  // mse through a sigmoid: f0 = a - y, f1..f3 = sigma', sigma''/2, sigma'''/6
                    const double b1 = f1[k] * x, b2 = f1[k] * y + f2[k] * (x * x);
                    const double b3 = (f1[k] * w + (2.0 * f2[k]) * (x * y)) + f3[k] * (x * (x * x));
                    c1[k] += f0[k] * b1;
                    c2[k] += f0[k] * b2 + 0.5 * (b1 * b1);
                    c3[k] += f0[k] * b3 + b1 * b2;
                }
            }
        }
    }

    // The loss part of a unit (shared by the smooth and the piecewise-linear series): from the output series
    // (nL, 3m) in s.P (orders 1..3 per example), its gains s.Gm (nL, m) and the hidden gains s.gmax (m), the
    // coefficients c1, c3 (s.c1, s.c3), |c1|, |c2| (s.ac1, s.ac2), the tail coefficient beta and 1 / R per example.
    inline __attribute__((always_inline)) void loss_coefs(Scratch& s) const {
        const Arch& a = *v_.arch;
        const int nL = a.n(a.L());
        const size_t M = size_t(v_.m), M3 = 3 * M;
        // the loss: c1, c3 and the bound coefficient mu per example, from the output series (nL, 3m) in s.P
        s.c1.assign(M, 0.0);
        s.c2.assign(M, 0.0);
        s.c3.assign(M, 0.0);
        s.A1.assign(M, 0.0);
        s.A2.assign(M, 0.0);
        s.pg.assign(M, 0.0);
        s.gout.assign(M, 0.0);
        {
            double* __restrict c1 = s.c1.data();
            double* __restrict c2 = s.c2.data();
            double* __restrict c3 = s.c3.data();
            double* __restrict A1 = s.A1.data();
            double* __restrict A2 = s.A2.data();
            double* __restrict pg = s.pg.data();
            double* __restrict go = s.gout.data();
            const bool ce = a.loss == Loss::ce, bce = a.loss == Loss::bce, lin = a.output == Act::linear;
            if (ce) {
                s.ex.assign(M, 0.0);
                s.ey.assign(M, 0.0);
            }
            double* __restrict ex = s.ex.data();
            double* __restrict ey = s.ey.data();
            // the loss kind as a template parameter: each kind's loop is branch-free (vectorizes; same bits)
            if (ce) loss_pass1<0>(s, c1, c2, c3, A1, A2, pg, go, ex, ey);
            else if (bce) loss_pass1<1>(s, c1, c2, c3, A1, A2, pg, go, ex, ey);
            else if (lin) loss_pass1<2>(s, c1, c2, c3, A1, A2, pg, go, ex, ey);
            else loss_pass1<3>(s, c1, c2, c3, A1, A2, pg, go, ex, ey);
            if (ce) {  // log sum p e^v: + Var_p(q1) / 2 (t^2), + Cov_p(q1, q2) + kappa3_p(q1) / 6 (t^3)
                s.S.assign(2 * M, 0.0);  // reused: Var | Cov, then kappa3 in SG
                s.SG.assign(M, 0.0);
                double* __restrict var = s.S.data();
                double* __restrict cov = s.S.data() + M;
                double* __restrict k3 = s.SG.data();
                for (int c = 0; c < nL; ++c) {
                    const double* __restrict p = s.P.data() + size_t(c) * M3;
                    const double* __restrict f0 = o0_.data() + size_t(c) * M;
                    for (size_t k = 0; k < M; ++k) {
                        const double dx = p[k] - ex[k], dy = p[M + k] - ey[k];
                        var[k] += f0[k] * (dx * dx);
                        cov[k] += f0[k] * (dx * dy);
                        k3[k] += f0[k] * (dx * (dx * dx));
                    }
                }
                for (size_t k = 0; k < M; ++k) {
                    c2[k] += 0.5 * var[k];
                    c3[k] += cov[k] + k3[k] * (1.0 / 6);
                    A2[k] += (1.25 * (1.0 + 1e-6)) * (pg[k] * pg[k]);
                }
            }
        }
        // radius R_k, bound coefficient beta_k = 2 (4/3) M_k / R_k^5 with M_k <= R_k A1_k + R_k^2 A2_k; |c1|, |c2|
        s.beta.resize(M);
        s.invR.resize(M);
        s.ac1.resize(M);
        s.ac2.resize(M);
        {
            const double big = std::numeric_limits<double>::max();
            const double* __restrict gmax = s.gmax.data();
            const double* __restrict go = s.gout.data();
            const double* __restrict A1 = s.A1.data();
            const double* __restrict A2 = s.A2.data();
            const double* __restrict c1 = s.c1.data();
            const double* __restrict c2 = s.c2.data();
            double* __restrict beta = s.beta.data();
            double* __restrict invR = s.invR.data();
            double* __restrict ac1 = s.ac1.data();
            double* __restrict ac2 = s.ac2.data();
            for (size_t k = 0; k < M; ++k) {
                double R = rho0;
                if (gmax[k] > 0.0) R = std::min(R, rho0 / gmax[k]);
                if (go[k] > 0.0) R = std::min(R, rho_out / go[k]);
                R *= 1.0 - 1e-6;
                const double r2 = R * R, bt = (8.0 / 3) * (A1[k] + R * A2[k]) / (r2 * r2), ir = 1.0 / R;
                beta[k] = bt <= big ? bt : big;  // also NaN -> big
                invR[k] = ir <= big ? ir : big;
                ac1[k] = std::fabs(c1[k]);
                ac2[k] = std::fabs(c2[k]);
            }
        }
    }
};

// g(z + d) - g(z) for tanh / sigmoid hidden layers without a transcendental per element (the general path's and
// the directional mode's suffix deltas): a degree-5 Taylor polynomial in d at the unperturbed z, exact to
// rounding where |d| <= dmax, libm's cancellation-free form (act_delta) elsewhere.
// sigmoid(z + d) - sigmoid(z) = (tanh(z/2 + d/2) - tanh(z/2)) / 2 (exact scalings), so one tanh polynomial:
// with T = tanh z, S = sech^2 z (sigmoid: T = s - q, S = 4 s q at z/2), the coefficients g^(n)/n! are
//   S, -T S, S (T^2 - 1/3), S T (2 - 3 T^2) / 3, S (2 - 15 T^2 + 15 T^4) / 15.
// Bound: on the disk |w| <= rho0 = 1/2, |tanh(z + w) - tanh(z)| <= Lam rho0 (Lam = sup |sech^2|, closed form in
// SmoothPath), so by Cauchy the tail after degree 5 is <= 2 Lam rho0 (|x| / rho0)^6 for |x| <= rho0 / 2; it is
// <= 2^-54 |S x| (below the rounding of the result) when |x| <= rho0 / 2 and |x|^5 Lam <= rho0^5 2^-55 S, tested
// per element (S, T, Lam precomputed per (unit, example): one exp and one sqrt each). The same bits on every SIMD
// path (the same test on every path, no FMA contraction, the libm fallback scalar on all paths).
class ActPoly {
   public:
    static bool applies(Act a) { return a == Act::tanh || a == Act::sigmoid; }

    void init(Act act, int L, const std::vector<const double*>& Z, const std::vector<const double*>& G,
              const std::vector<int>& n, int m) {
        sig_ = act == Act::sigmoid;
        S_.assign(L + 1, {});
        T_.assign(L + 1, {});
        lam_.assign(L + 1, {});
        const double cc = std::cos(rho0) * std::cos(rho0), c1 = std::exp(-rho0), c2 = std::exp(rho0);
        for (int l = 1; l < L; ++l) {
            const size_t N = size_t(n[l]) * size_t(m);
            S_[l].resize(N);
            T_[l].resize(N);
            lam_[l].resize(N);
            for (size_t q = 0; q < N; ++q) {
                const double z = sig_ ? Z[l][q] / 2 : Z[l][q], az = std::fabs(z);
                const double e = std::exp(-2.0 * az);  // sigmoid: exp(-|Z|)
                double T, S;
                if (sig_) {
                    const double s = G[l][q], qq = Z[l][q] >= 0.0 ? e * s : 1.0 - s;
                    T = s - qq;
                    S = 4.0 * s * qq;
                } else {
                    T = G[l][q];
                    S = 4.0 * e / ((1.0 + e) * (1.0 + e));
                }
                // sinh(|z| - rho0) from e: (e^{-rho0} / sqrt(e) - e^{rho0} sqrt(e)) / 2 (inf / 0 when e underflows)
                const double r = std::sqrt(e);
                const double sh = az > rho0 ? (c1 / r - c2 * r) / 2 : 0.0;
                S_[l][q] = S;
                T_[l][q] = T;
                lam_[l][q] = (1.0 + 1e-5) / (sh * sh + cc);
            }
        }
    }
    bool ready() const { return !S_.empty(); }

    // da[c] = (g(z[c] + dz[c]) - g(z[c])) * sc[c] (sc: dropout scales or nullptr) for c < mm, row h of layer l;
    // exact(c) is the exact difference g(z + dz) - g(z) of element c, used beyond dmax.
    template <class Exact>
    void row(int l, int h, const double* dz, const double* sc, double* da, int mm, Exact&& exact) const {
#if DNNKIT_HAS_SIMD_CLONES
        bool all_within;
        switch (simd::level()) {
            case simd::avx512: all_within = row_avx512(l, h, dz, sc, da, mm); break;
            case simd::avx2: all_within = row_avx2(l, h, dz, sc, da, mm); break;
            default: all_within = row_base(l, h, dz, sc, da, mm); break;
        }
#else
        const bool all_within = row_base(l, h, dz, sc, da, mm);
#endif
        if (all_within) return;  // the body's test (exact operations, the same as `within`) found none outside
        // outside the bound: the exact form, scalar on every path
        const double* S = S_[l].data() + size_t(h) * mm;
        const double* lam = lam_[l].data() + size_t(h) * mm;
        for (int c = 0; c < mm; ++c) {
            if (within(dz[c], S[c], lam[c])) continue;
            const double s = sc ? sc[c] : 1.0;
            da[c] = s == 0.0 ? 0.0 : exact(c) * s;
        }
    }

   private:
    static constexpr double rho0 = 0.5;
    bool sig_ = false;
    std::vector<std::vector<double>> S_, T_, lam_;

    // the tail bound holds for the pre-activation change d (x = d, sigmoid: d / 2)
    inline __attribute__((always_inline)) bool within(double d, double S, double lam) const {
        const double x = std::fabs(sig_ ? d * 0.5 : d), x2 = x * x;
        return x <= rho0 / 2 && (x2 * x2) * x * lam <= (0x1p-55 * (rho0 * rho0) * (rho0 * rho0) * rho0) * S;
    }

    // Also runs `within` on every element (the same exact operations: fabs, products, comparisons, so the
    // same answer on every path); true when all are within, so `row` can skip its scalar fallback loop.
    inline __attribute__((always_inline)) bool row_body(int l, int h, const double* __restrict dz,
                                                        const double* __restrict sc, double* __restrict da,
                                                        int mm) const {
        const double* __restrict S = S_[l].data() + size_t(h) * mm;
        const double* __restrict T = T_[l].data() + size_t(h) * mm;
        const double* __restrict lam = lam_[l].data() + size_t(h) * mm;
        const double half = sig_ ? 0.5 : 1.0;
        constexpr double kb = 0x1p-55 * (rho0 * rho0) * (rho0 * rho0) * rho0;
        int out = 0;
        for (int c = 0; c < mm; ++c) {
            const double xa = std::fabs(dz[c] * half), xa2 = xa * xa;  // = within's x (d * 1.0 = d exactly)
            out |= int(!((xa <= rho0 / 2) & ((xa2 * xa2) * xa * lam[c] <= kb * S[c])));
        }
        for (int c = 0; c < mm; ++c) {
            const double s = S[c], t = T[c], t2 = t * t, x = dz[c] * half;
            const double h1 = s, h2 = -(t * s), h3 = s * (t2 - 1.0 / 3), h4 = (s * t) * (2.0 - 3.0 * t2) * (1.0 / 3);
            const double h5 = s * ((2.0 - 15.0 * t2) + 15.0 * (t2 * t2)) * (1.0 / 15);
            const double p = x * (h1 + x * (h2 + x * (h3 + x * (h4 + x * h5)))) * half;
            const double f = sc ? sc[c] : 1.0;
            da[c] = f == 0.0 ? 0.0 : p * f;
        }
        return out == 0;
    }
    __attribute__((noinline)) bool row_base(int l, int h, const double* dz, const double* sc, double* da, int mm) const {
        return row_body(l, h, dz, sc, da, mm);
    }
#if DNNKIT_HAS_SIMD_CLONES
    DNNKIT_TARGET_AVX2 bool row_avx2(int l, int h, const double* dz, const double* sc, double* da, int mm) const {
        return row_body(l, h, dz, sc, da, mm);
    }
    DNNKIT_TARGET_AVX512 bool row_avx512(int l, int h, const double* dz, const double* sc, double* da, int mm) const {
        return row_body(l, h, dz, sc, da, mm);
    }
#endif
};

// Runs the smooth path on hidden-layer coordinates cs[0..n) (Coord: .l, .i, .j, .out), grouped by unit, units in
// parallel (OpenMP, per-thread scratch; a unit's result does not depend on which thread or which other
// coordinates): approx[cs[q].out] = data part of the centered difference where ok, routed[q] = 1 where the bound
// failed. Ctrl-C: `poll` on OpenMP thread 0 only, between units and every 4096 coordinates. False when stopped.
template <class Coord>
bool smooth_coords(const SmoothPath& sp, const Coord* cs, size_t n, double eps, double* approx, uint8_t* routed,
                   const std::function<bool()>& poll) {
    std::vector<size_t> ord(n);
    std::iota(ord.begin(), ord.end(), size_t(0));
    std::stable_sort(ord.begin(), ord.end(), [&](size_t x, size_t y) {
        return cs[x].l != cs[y].l ? cs[x].l < cs[y].l : cs[x].i < cs[y].i;
    });
    std::vector<std::pair<size_t, size_t>> units;
    for (size_t s = 0; s < n;) {
        size_t e = s;
        while (e < n && cs[ord[e]].l == cs[ord[s]].l && cs[ord[e]].i == cs[ord[s]].i) ++e;
        units.emplace_back(s, e);
        s = e;
    }
    std::vector<int> js(n);
    for (size_t q = 0; q < n; ++q) js[q] = cs[ord[q]].j;
    std::vector<double> out(n);
    std::vector<uint8_t> ok(n, 0);
    std::atomic<bool> stop{false};
    const int nu = int(units.size());
#pragma omp parallel num_threads(num_threads()) if (nu > 1)
    {
        SmoothPath::Scratch sc;
        const bool poller = poll && omp_get_thread_num() == 0;
#pragma omp for schedule(dynamic, 1)
        for (int u = 0; u < nu; ++u) {
            if (stop.load(std::memory_order_relaxed)) continue;
            if (poller && poll()) {
                stop.store(true);
                continue;
            }
            const size_t s0 = units[u].first, B = units[u].second - s0;
            const Coord& c = cs[ord[s0]];
            if (!sp.unit(c.l, c.i, eps, js.data() + s0, B, out.data() + s0, ok.data() + s0, sc,
                         poller ? &poll : nullptr))
                stop.store(true);
        }
    }
    if (stop.load()) return false;
    for (size_t q = 0; q < n; ++q) {
        const size_t k = ord[q];
        routed[k] = !ok[q];
        if (ok[q]) approx[cs[k].out] = out[q];
    }
    return true;
}

}  // namespace dnnkit
