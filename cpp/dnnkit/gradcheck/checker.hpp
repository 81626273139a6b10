// The gradient checker: the cached unperturbed pass and the helpers every algorithm shares (locating a
// coordinate, propagating a block of deltas through a hidden layer, the closed-form regularization change).
// The algorithms are member functions defined each in its own file: general.hpp (per-coordinate delta
// propagation), directional.hpp (directions), fast_path.hpp (linear-region shortcut), dispatch.hpp (coords:
// which coordinates go to which path). Include ../gradcheck.hpp, which pulls them all in.
#pragma once
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "../mlp.hpp"
#include "../parallel.hpp"
#include "../simd.hpp"
#include "numerics.hpp"
#include "smooth.hpp"

namespace dnnkit {

class GradChecker {
   public:
    using Poll = std::function<bool()>;

    // grad != nullptr: the cached pass is the network's forward + backward (MLP::backward, the same pass and
    // bits as Network.backward on these inputs) and writes the analytic gradient there (nparams values), so a
    // check of the network's own gradient (directional mode) runs the forward pass once, not twice.
    GradChecker(const Arch& arch, const double* theta, const double* X, const double* Y, int m,
                const Dropout<double>& dp, double l2, double l1, double* grad = nullptr)
        : arch_(arch), theta_(theta), Y_(Y), m_(m), l2_(l2), l1_(l1) {
        const int L = arch.L();
        MLP<double> net(arch);
        J0_ = grad ? net.backward(theta, X, Y, m, dp, l2, l1, grad) : net.forward(theta, X, m, dp, Y, l2, l1);
        Z_.assign(L + 1, {});
        A_.assign(L + 1, {});
        G_.assign(L + 1, {});
        D_.assign(L + 1, {});
        if (dp.on(0)) A_[0] = std::move(net.A[0]);  // else A[0] is X itself (not copied)
        A0_ = dp.on(0) ? A_[0].data() : X;
        for (int l = 1; l <= L; ++l) {
            Z_[l] = std::move(net.Z[l]);
            A_[l] = std::move(net.A[l]);
            const Act act = l < L ? arch.hidden : arch.output;
            // A[l] = g(Z[l]) computed by the same act_forward (bias_activation) unless dropout scaled it: reuse
            // it for tanh / sigmoid (one transcendental per unit and example saved, same bits) and softmax
            if (act == Act::softmax || ((act == Act::tanh || act == Act::sigmoid) && (l == L || !dp.on(l)))) {
                G_[l] = A_[l];
            } else {
                G_[l].resize(Z_[l].size());
                act_forward(act, Z_[l].data(), G_[l].data(), Z_[l].size(), arch.alpha);
            }
        }
        for (int l = 0; l < L; ++l) {
            if (!dp.on(l)) continue;
            // the masks the cached pass drew (or was given): 1 -> 1/keep, 0 -> 0
            const uint8_t* bits = net.drawn_masks().get(l);
            const double inv = 1.0 / double(dp.keep[l]);
            D_[l].resize(size_t(arch.n(l)) * m);
            for (size_t q = 0; q < D_[l].size(); ++q) D_[l][q] = bits[q] ? inv : 0.0;
        }
        // tanh / sigmoid: polynomial deltas (smooth.hpp), prepared on first use (init_poly): the directional mode
        // prepares them in parallel with its first products
        poly_wanted_ = ActPoly::applies(arch.hidden) && L > 1;
        if (piecewise_linear()) {
            S_.assign(L + 1, {});
            absW_.assign(L + 1, {});
            for (int l = 1; l < L; ++l) {
                const size_t n = size_t(arch.n(l)) * m;
                S_[l].resize(n);
                const double lo = arch.hidden == Act::linear ? 1.0 : arch.hidden == Act::relu ? 0.0 : arch.alpha;
                for (size_t q = 0; q < n; ++q) {
                    const double g = arch.hidden == Act::linear || Z_[l][q] > 0.0 ? 1.0 : lo;
                    S_[l][q] = D_[l].empty() ? g : g * D_[l][q];
                }
                if (l >= 3) {
                    const double* w = theta + arch.woff[l];
                    absW_[l].resize(size_t(arch.n(l)) * arch.n(l - 1));
                    for (size_t q = 0; q < absW_[l].size(); ++q) absW_[l][q] = std::fabs(w[q]);
                }
            }
        }
        out_ = OutputLoss{arch.loss, arch.output, arch.n(L), m, Z_[L].data(), G_[L].data(), Y};
    }

    GradChecker(const GradChecker&) = delete;  // out_ points into the cached vectors
    GradChecker& operator=(const GradChecker&) = delete;

    double cost() const { return J0_; }

    // What the last coords() call did: coordinates done by the piecewise-linear fast path, and by the general
    // (delta-propagation) path, the latter including the fast path's routed ones (kinks within reach).
    // series: of the fast ones, those done by a series (smooth.hpp: every smooth one, and the piecewise-linear
    // ones whose tail bound holds; the others by the fast path's exact loss pairs).
    struct Stats {
        int64_t fast = 0, general = 0, routed = 0, series = 0;
    };


    // Centered differences for the flat coordinates idx[0..n): approx[k] and kink flags[k].
    // fast_path: use the exact linear-region shortcut for relu / leaky_relu / linear hidden layers (see
    // fast_unit); false forces the general path for every coordinate (the tests' escape hatch).
    // Returns false when `poll` asked to stop (outputs then partly written).
    bool coords(const int64_t* idx, size_t n, double eps, double* approx, uint8_t* flags, const Poll& poll,
                bool fast_path = true, Stats* stats = nullptr) const;

    // Directional derivatives along dirs[k] (k < K, each of length nparams):
    // (J(theta + eps d) - J(theta - eps d)) / 2eps, and how many (unit, example) kinks were crossed.
    // Batched: directions whose first nonzero layer is the same (l0) run together, both signs of every
    // direction side by side as the column blocks of one (n, 2*g*m) block, so the suffix is a few wide GEMMs;
    // nothing below l0 is recomputed (the cached forward), and the l0 product D[l0] A[l0-1] is formed once for
    // both signs. Chunks of directions depend on sizes only: identical results for any thread count.
    // (directional.hpp)
    bool directions(const double* dirs, int K, double eps, double* approx, int64_t* nkinks, const Poll& poll) const;

    // The same for directions given as rows[k] (length nparams) restricted to the blocks with wpart[k*(L+1)+l]
    // (W[l]) and bpart[k*(L+1)+l] (b[l]) set: the other blocks of rows[k] are read as zeros. One row can so carry
    // a direction for every component at once (components are disjoint), without a dense (K, nparams) matrix.
    bool directions(const double* const* rows, const uint8_t* wnz, const uint8_t* bnz, int K, double eps,
                    double* approx, int64_t* nkinks, const Poll& poll) const;

    // The directional mode's random directions (dk.gradcheck(mode="directional")): r unit directions per component
    // (W1, b1, W2, b2, ... in theta's order); row t of V (r, nparams) holds the t-th direction of every component
    // (components are disjoint). Component c's t-th direction: the standard normals of the streams
    // (seed; t, c, block) of normals.hpp, blocks of dir_draw_block entries, divided by their norm; gd[c*r + t] =
    // g . that direction. Blocks are the tasks and their partial sums are added in block order: the same bits for
    // any thread count. Returns false when `poll` asked to stop. (directional.hpp)
    bool draw_directions(uint64_t seed, int r, const double* g, double* V, double* gd, const Poll& poll) const;

   private:
    static constexpr int dir_draw_block = 8192;
    static constexpr int target_cols = 4096;       // columns of one batched suffix GEMM (2P*m)
    static constexpr int target_dir_cols = 16384;  // columns of one batched directional block (2g*m)
    // directional phase 1 (directional.hpp): l0 products cut into column pieces of about this many flops, when all
    // of them fit in this many doubles (128 MB)
    static constexpr double dir_piece_flops = 8e6;
    static constexpr size_t dir_pre_doubles = size_t(1) << 24;

    struct Coord {
        int l = 1, i = 0, j = -1;  // j < 0: bias
        size_t out = 0;
    };
    struct Scratch {
        std::vector<double> row, bufA, bufB, e, yd;
        std::vector<uint8_t> kink;
    };
    struct RawBuf {  // an uninitialized buffer that grows (no zero-fill of a fresh std::vector)
        std::unique_ptr<double[]> p;
        size_t n = 0;
        double* get(size_t k) {
            if (k > n) {
                p.reset(new double[k]);
                n = k;
            }
            return p.get();
        }
    };
    struct DirScratch {  // per-thread buffers of the directional mode
        Scratch sc;
        RawBuf bufZ, bufA;
        std::vector<double> base, tmp;
        std::vector<int64_t> cnt;
    };

    const Arch& arch_;
    const double* theta_;
    const double* Y_;
    int m_;
    double l2_, l1_, J0_ = 0.0;
    const double* A0_ = nullptr;
    std::vector<std::vector<double>> Z_, A_, G_, D_;
    // piecewise-linear hidden layers (fast path): S[l] = g'(Z[l]) * dropout scale; |W[l]| for the margin bounds
    std::vector<std::vector<double>> S_, absW_;
    // tanh / sigmoid hidden layers: the general path's polynomial activation deltas (smooth.hpp), prepared once on
    // first use by init_poly (hidden_delta calls it; thread-safe)
    mutable ActPoly poly_;
    mutable std::once_flag poly_once_;
    bool poly_wanted_ = false;
    void init_poly() const {
        if (!poly_wanted_) return;
        std::call_once(poly_once_, [this] {
            const int L = arch_.L();
            std::vector<const double*> zs(L + 1, nullptr), gs(L + 1, nullptr);
            for (int l = 1; l <= L; ++l) {
                zs[l] = Z_[l].data();
                gs[l] = G_[l].data();
            }
            poly_.init(arch_.hidden, L, zs, gs, arch_.dims, m_);
        });
    }
    OutputLoss out_;  // loss deltas of the cached output layer (views into Z_[L], G_[L], Y)

    const double* W(int l) const { return theta_ + arch_.woff[l]; }
    const double* act(int l) const { return l == 0 ? A0_ : A_[l].data(); }  // A[l] after dropout

    static bool is_zero(const double* p, size_t n) {
        for (size_t q = 0; q < n; ++q)
            if (p[q] != 0.0) return false;
        return true;
    }

    Coord locate(int64_t q, size_t out) const {
        if (q < 0 || size_t(q) >= arch_.nparams) throw std::out_of_range("coordinate index out of range");
        const int L = arch_.L();
        Coord c;
        c.out = out;
        for (int l = L; l >= 1; --l) {
            if (size_t(q) >= arch_.woff[l]) {
                c.l = l;
                if (size_t(q) >= arch_.boff[l]) {
                    c.i = int(size_t(q) - arch_.boff[l]);
                    c.j = -1;
                } else {
                    const size_t r = size_t(q) - arch_.woff[l];
                    c.i = int(r / size_t(arch_.n(l - 1)));
                    c.j = int(r % size_t(arch_.n(l - 1)));
                }
                return c;
            }
        }
        return c;
    }

    // dA = (g(Z + dZ) - g(Z)) * D for hidden layer l on a (n_l, reps*m) block of deltas (column p*m + c
    // pairs with example c). Flags crossed kinks per column block into kink[p] and counts them into counts[p].
    void hidden_delta(int l, const double* dZ, int ld, int reps, double* dA, int64_t* counts,
                      uint8_t* kink = nullptr) const {
        const int nl = arch_.n(l), mm = m_;
        const Act act = arch_.hidden;
        const double* Z = Z_[l].data();
        const double* G = G_[l].data();
        const double* D = D_[l].empty() ? nullptr : D_[l].data();
        const double alpha = arch_.alpha;
        init_poly();
        for (int h = 0; h < nl; ++h) {
            const double* z = Z + size_t(h) * mm;
            const double* g = G + size_t(h) * mm;
            const double* dd = D ? D + size_t(h) * mm : nullptr;
            for (int p = 0; p < reps; ++p) {
                const double* dz = dZ + size_t(h) * ld + size_t(p) * mm;
                double* da = dA + size_t(h) * ld + size_t(p) * mm;
                if (act == Act::relu && !dd) {  // the common case: a SIMD kernel (relu_delta_row)
                    if (relu_delta_row(z, dz, da, mm)) {
                        int64_t cnt = 0;
                        for (int c = 0; c < mm; ++c) {
                            bool cr = false;
                            act_delta(act, z[c], g[c], dz[c], alpha, cr);
                            cnt += cr;
                        }
                        if (kink) kink[p] |= KINK_ACT;
                        if (counts) counts[p] += cnt;
                    }
                    continue;
                }
                if (poly_.ready()) {  // tanh / sigmoid: polynomial deltas (smooth.hpp); no kinks
                    poly_.row(l, h, dz, dd, da, mm, [&](int c) {
                        bool cr = false;
                        return act_delta(act, z[c], g[c], dz[c], alpha, cr);
                    });
                    continue;
                }
                int64_t cnt = 0;
                for (int c = 0; c < mm; ++c) {
                    const double sc = dd ? dd[c] : 1.0;
                    if (sc == 0.0) {
                        da[c] = 0.0;
                        continue;
                    }
                    bool cr = false;
                    da[c] = act_delta(act, z[c], g[c], dz[c], alpha, cr) * sc;
                    cnt += cr;
                }
                if (cnt) {
                    if (kink) kink[p] |= KINK_ACT;
                    if (counts) counts[p] += cnt;
                }
            }
        }
    }

    // relu rows: da[c] = relu(z + d) - relu(z), exactly d where both sides are active; returns whether some column
    // crossed the kink ([z, z+d] contains 0 and d != 0). Compiled per SIMD level (simd.hpp): compares, selects and
    // one subtraction, the same IEEE operations on every path (same bits); the scalar form was ~40 % of a relu
    // directional check (branches on random signs).
    static inline __attribute__((always_inline)) bool relu_delta_body(const double* __restrict z,
                                                                      const double* __restrict dz,
                                                                      double* __restrict da, int mm) {
        uint64_t any = 0;
#pragma omp simd reduction(| : any)
        for (int c = 0; c < mm; ++c) {
            const double zz = z[c], d = dz[c], zd = zz + d;
            const double r = std::max(zd, 0.0) - std::max(zz, 0.0);
            da[c] = (zz > 0.0) & (zd > 0.0) ? d : r;  // both active: exactly d
            // a kink is crossed iff [z, z+d] contains 0 (and the unit moves)
            any |= uint64_t((std::min(zz, zd) <= 0.0) & (std::max(zz, zd) >= 0.0) & (d != 0.0));
        }
        return any != 0;
    }
    __attribute__((noinline)) static bool relu_delta_base(const double* z, const double* dz, double* da, int mm) {
        return relu_delta_body(z, dz, da, mm);
    }
#if DNNKIT_HAS_SIMD_CLONES
    DNNKIT_TARGET_AVX2 static bool relu_delta_avx2(const double* z, const double* dz, double* da, int mm) {
        return relu_delta_body(z, dz, da, mm);
    }
    DNNKIT_TARGET_AVX512 static bool relu_delta_avx512(const double* z, const double* dz, double* da, int mm) {
        return relu_delta_body(z, dz, da, mm);
    }
#endif
    static bool relu_delta_row(const double* z, const double* dz, double* da, int mm) {
#if DNNKIT_HAS_SIMD_CLONES
        switch (simd::level()) {
            case simd::avx512: return relu_delta_avx512(z, dz, da, mm);
            case simd::avx2: return relu_delta_avx2(z, dz, da, mm);
            default: break;
        }
#endif
        return relu_delta_base(z, dz, da, mm);
    }

    double reg_term(const Coord& c, double eps, uint8_t& flag) const {
        if (c.j < 0) return 0.0;
        const double w = W(c.l)[size_t(c.i) * arch_.n(c.l - 1) + c.j];
        double r = (l2_ / m_) * w;  // (l2/2m)((w+e)^2 - (w-e)^2) / 2e, exactly
        if (l1_ != 0.0) {
            r += (l1_ / (2.0 * m_)) * abs_diff(w, 1.0, eps) / (2.0 * eps);
            if (std::fabs(w) < eps) flag |= KINK_L1;
        }
        return r;
    }

    // ---- general path (general.hpp)
    // The general path: per-coordinate delta propagation with batched suffix GEMMs (any activation).
    bool general_coords(std::vector<Coord> cs, double eps, double* approx, uint8_t* flags, const Poll& poll) const;
    void run_batch(const Coord* cs, size_t B, double eps, double* approx, uint8_t* flags, Scratch& sc) const;

    // tanh / sigmoid hidden layers (dispatch.hpp): hidden-layer coordinates by the smooth path (smooth.hpp), those
    // whose tail bound fails and the output layer's by the general path
    bool smooth_dispatch(std::vector<Coord> cs, double eps, double* approx, uint8_t* flags, const Poll& poll,
                         Stats* stats) const;
    SmoothPath::View smooth_view() const;  // the cached pass as the series see it (dispatch.hpp)

    // ---- fast path (fast_path.hpp): linear-region shortcut for piecewise-linear hidden layers
    static constexpr double tau = 1e-9;  // relative safety of the downstream kink margins
    static constexpr double vpoly = 1.0 / 512;  // |v| below this: polynomial expm1 / log1p (exact to rounding)
    struct FastScratch;

    bool piecewise_linear() const {
        return arch_.hidden == Act::relu || arch_.hidden == Act::leaky_relu || arch_.hidden == Act::linear;
    }
    // the loss pair l(z + v) - l(z - v) of example k for the output change v[c] (stride 1); exact, any |v|
    double loss_pair_scalar(int k, const double* v, double* neg) const;
    // Prepares unit (l, i): G, margins, thresholds T (per example), the active examples (S[l][i,k] != 0) and the
    // loss coefficients gathered on them (Gs = eps S G, output probabilities / sigmoids P, labels).
    void fast_prepare(int l, int i, double eps, FastScratch& f) const;
    void fast_gather(int l, int i, double eps, FastScratch& f) const;  // the loss pairs' inputs (fast_path.hpp)
    // margin of hidden layer lp, unit u, with a Jacobian constant over the examples (layer l+1): aw = |J| (1 + tau)
    void margin_row(int lp, int u, double aw, double* M) const;
    // margin of hidden layer lp from per-example Jacobians J (n_lp, m) and their |.| bounds Ja
    void margin_block(int lp, const double* J, const double* Ja, double* M) const;
    // sum over the active examples of l(z + v) - l(z - v), v_c = Gs[c][q] a[q], for one coordinate
    double fast_loss_sum(FastScratch& f, const double* a, int na, double vmax, double* tmp) const;
    // all coordinates of unit (l, i): cs[0..B) (same l, i). Writes approx / flags of those it handles and
    // sets routed[b] = 1 for the others (kinks within reach: the general path does them), 2 where the series did it.
    // Returns false when stopped (poll asked, or another thread saw it).
    bool fast_unit(const Coord* cs, size_t B, double eps, double* approx, uint8_t* flags, uint8_t* routed,
                   FastScratch& f, const Poll* poll, const std::atomic<bool>& stop) const;
};

}  // namespace dnnkit
