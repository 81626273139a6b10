// Forward, cost and backward of a fully-connected net of any depth, on one flat parameter buffer.
//
// Layout (the contract): theta = [W1, b1, W2, b2, ...], W[l] is (n[l], n[l-1]) row-major, b[l] is (n[l]).
// Activations are (n[l], m) row-major: examples are columns, as in the course and in dnnkit.reference.
// GEMMs go through BLAS (single-threaded). ONE implementation of the passes serves Network.forward/cost/backward
// (bindings), the training loop (train.hpp) and the gradient checker's setup (gradcheck.hpp):
//   - dropout masks are drawn once per pass as bytes (draw_keep_mask, dropout.hpp: vectorised Philox keyed by
//     (seed, step, layer, unit, example), or explicit 0/1 masks converted) and used by forward and backward;
//   - the lean path (small problems: one column chunk, whole-matrix BLAS calls, no OpenMP) or the wide path
//     (column chunks through all layers, then balanced dW tiles and dA column chunks, on OpenMP; with 2+ chunks
//     all in one OpenMP region per pass, the caller's update included) is chosen by sizes only (partition.hpp), so
//     results are bit-identical for any thread count.
// Building blocks: arch.hpp (sizes, offsets), dropout.hpp (masks), kernels.hpp (elementwise), partition.hpp.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <utility>
#include <vector>

#include "activations.hpp"
#include "arch.hpp"
#include "blas.hpp"
#include "dropout.hpp"
#include "kernels.hpp"
#include "parallel.hpp"
#include "partition.hpp"
#include "simd.hpp"

namespace dnnkit {

template <class T>
class MLP {
   public:
    explicit MLP(Arch a) : arch(std::move(a)) {}
    Arch arch;
    int m = 0;
    // Z[l] (l = 1..L), A[l] (l = 0..L; A[0] holds the dropped-out input, empty without input dropout),
    // dZ[l] (l = 1..L), one dA scratch. A[l] is post-dropout.
    std::vector<std::vector<T>> Z, A, dZ;
    std::vector<T> dA;

    const T* W(const T* theta, int l) const { return theta + arch.woff[l]; }
    const T* b(const T* theta, int l) const { return theta + arch.boff[l]; }

    void resize(int m_) {
        const int L = arch.L();
        if (m_ == m && int(Z.size()) == L + 1) return;
        m = 0;  // set once every buffer is allocated: after a bad_alloc, cache() sees an empty workspace
        Z.assign(L + 1, {});
        A.assign(L + 1, {});
        dZ.assign(L + 1, {});
        for (int l = 1; l <= L; ++l) {
            Z[l].assign(size_t(arch.n(l)) * m_, T(0));
            A[l].assign(size_t(arch.n(l)) * m_, T(0));
            dZ[l].assign(size_t(arch.n(l)) * m_, T(0));
        }
        dA.assign(size_t(arch.max_width()) * m_, T(0));
        m = m_;
    }
    void release() {
        Z.clear(); A.clear(); dZ.clear(); dA.clear(); dA.shrink_to_fit(); m = 0;
        masks_.clear();
    }

    // Data part of the cost, (1/m) sum of per-example losses. Requires forward() on the same X.
    DNNKIT_ALWAYS_INLINE double data_cost_columns(const T* Y, int j0, int j1) const {  // inlined: AVX2 in the lean pass
        const int L = arch.L(), nL = arch.n(L);
        const T* ZL = Z[L].data();
        const T* AL = A[L].data();
        double s = 0.0;
        if (arch.loss == Loss::bce) {
            for (int i = 0; i < nL; ++i)
                for (int jb = j0; jb < j1; jb += 64) {  // bce_logit in blocks: the log1p loop vectorises
                    const int n = std::min(64, j1 - jb);
                    const T* z = ZL + size_t(i) * m + jb;
                    const T* y = Y + size_t(i) * m + jb;
                    double e[64], lp[64];
                    for (int t = 0; t < n; ++t) e[t] = std::exp(-std::fabs(double(z[t])));
                    for (int t = 0; t < n; ++t) lp[t] = log1p_unit(e[t]);
                    for (int t = 0; t < n; ++t) {  // the same values, summed in the same order, as bce_logit
                        const double zd = z[t], yd = y[t];
                        s += std::max(zd, 0.0) - zd * yd + lp[t];
                    }
                }
        } else if (arch.loss == Loss::ce) {
            for (int j = j0; j < j1; ++j) {  // logsumexp(z) - sum_k y_k z_k, per column
                double mx = -INFINITY;
                for (int i = 0; i < nL; ++i) mx = std::max(mx, double(ZL[size_t(i) * m + j]));
                double se = 0.0, yz = 0.0;
                for (int i = 0; i < nL; ++i) {
                    const double z = ZL[size_t(i) * m + j];
                    se += std::exp(z - mx);
                    yz += double(Y[size_t(i) * m + j]) * z;
                }
                s += mx + std::log(se) - yz;
            }
        } else {  // mse: 0.5 * ||a - y||^2 per example
            for (int i = 0; i < nL; ++i)
                for (int j = j0; j < j1; ++j) {
                    const double d = double(AL[size_t(i) * m + j]) - double(Y[size_t(i) * m + j]);
                    s += 0.5 * d * d;
                }
        }
        return s;
    }

    // (l2/(2m)) sum ||W||_F^2 + (l1/(2m)) sum |W|
    double reg_cost(const T* theta, int m_, double l2, double l1) const {
        if (l2 == 0.0 && l1 == 0.0) return 0.0;
        double s2 = 0.0, s1 = 0.0;
        for (int l = 1; l <= arch.L(); ++l) {
            const T* w = W(theta, l);
            const size_t n = size_t(arch.n(l)) * arch.n(l - 1);
            for (size_t k = 0; k < n; ++k) {
                s2 += double(w[k]) * double(w[k]);
                s1 += std::fabs(double(w[k]));
            }
        }
        return (l2 * s2 + l1 * s1) / (2.0 * m_);
    }

    // The masks of one pass over m examples as bytes (dropout.hpp: explicit 0/1 masks converted, the others
    // drawn by draw_keep_mask under (dp.seed, dp.step)); they stay available as drawn_masks() after the pass.
    const ByteMasks& masks(const Dropout<T>& dp, int m_) { return masks_.draw(dp, arch.dims, m_, dp.step); }
    const ByteMasks& drawn_masks() const { return masks_.masks(); }

    // Forward pass over m examples (X is n0 x m). Returns J (with regularization) when Y != nullptr.
    double forward(const T* theta, const T* X, int m_, const Dropout<T>& dp, const T* Y = nullptr, double l2 = 0.0,
                   double l1 = 0.0) {
        return run(theta, X, Y, m_, masks(dp, m_), l2, l1, nullptr, true);
    }

    // Forward (with cost) and backward; writes the flat gradient (same layout as theta) into grad.
    // with_cost = false skips the cost (returns 0): the training loop needs it only in the epochs it reports.
    double backward(const T* theta, const T* X, const T* Y, int m_, const Dropout<T>& dp, double l2, double l1,
                    T* grad, bool with_cost = true) {
        return run(theta, X, Y, m_, masks(dp, m_), l2, l1, grad, with_cost);
    }

    // The shared pass on given byte masks: forward, the cost when Y && with_cost, backward when grad.
    double run(const T* theta, const T* X, const T* Y, int m_, const ByteMasks& bm, double l2, double l1, T* grad,
               bool with_cost);

    // Work to run after the gradient is complete, inside the pass's own OpenMP region (train.hpp: the optimizer
    // update, which may then overwrite theta): `n` tasks fn(ctx, i), dynamically scheduled, each writing only its
    // own outputs. Only the wide path's one-region schedule runs them, and it sets post_done; otherwise the caller
    // runs them itself. run() clears post_done on entry; the caller sets and clears `post`.
    struct PostTasks {
        int n = 0;
        void (*fn)(void*, int) = nullptr;
        void* ctx = nullptr;
    };
    PostTasks post;
    bool post_done = false;

   private:
    PassMasks masks_;
};

// ---------------------------------------------------------------------------------------------------------
// Lean path: one column chunk (3 whole-matrix BLAS calls per layer), no OpenMP.
template <class T>
DNNKIT_ALWAYS_INLINE double lean_pass(MLP<T>& net, const T* theta, const T* X, const T* Y, int m, const ByteMasks& bm,
                                      double l2, double l1, T* grad, bool with_cost) {
    const Arch& a = net.arch;
    const int L = a.L(), nL = a.n(L);
    const T alpha = T(a.alpha);
    const T* Aprev = X;
    if (const uint8_t* D = bm.get(0)) {  // input dropout on a copy of X
        const size_t n = size_t(a.n(0)) * m;
        T* A0 = net.A[0].data();
        std::copy(X, X + n, A0);
        byte_dropout(D, T(bm.scale[0]), A0, n);
        Aprev = A0;
    }
    for (int l = 1; l <= L; ++l) {
        const int nl = a.n(l), np = a.n(l - 1);
        T* Zl = net.Z[l].data();  // (nl x m)
        T* Al = net.A[l].data();  // (nl x m)
        gemm(false, false, nl, m, np, T(1), net.W(theta, l), np, Aprev, m, T(0), Zl, m);  // Z = W A_prev
        bias_activation(l < L ? a.hidden : a.output, net.b(theta, l), nl, m, 0, m, alpha, Zl, Al);
        if (l < L)
            if (const uint8_t* D = bm.get(l)) byte_dropout(D, T(bm.scale[l]), Al, size_t(nl) * m);
        Aprev = Al;
    }
    const double J = (Y && with_cost) ? net.data_cost_columns(Y, 0, m) / m + net.reg_cost(theta, m, l2, l1) : 0.0;
    if (!grad) return J;

    output_delta(a.output, a.loss, net.A[L].data(), Y, size_t(nL) * m, T(1) / T(m), net.dZ[L].data());
    const T cl2 = T(l2 / m), cl1 = T(l1 / (2.0 * m));
    for (int l = L; l >= 1; --l) {
        const int nl = a.n(l), np = a.n(l - 1);
        const T* Ap = (l == 1) ? (bm.get(0) ? net.A[0].data() : X) : net.A[l - 1].data();  // (np x m)
        const T* dz = net.dZ[l].data();                                                      // (nl x m)
        const T* Wl = net.W(theta, l);
        T* dW = grad + a.woff[l];
        T* db = grad + a.boff[l];
        gemm(false, true, nl, np, m, T(1), dz, m, Ap, m, T(0), dW, np);  // dW = dZ A_prev^T (1/m in dZ)
        add_reg_grad(Wl, dW, np, 0, nl, 0, np, cl2, cl1);
        for (int i = 0; i < nl; ++i) db[i] = row_sum(dz + size_t(i) * m, m);
        if (l > 1) {
            T* da = net.dA.data();  // (np x m)
            gemm(true, false, np, m, nl, T(1), Wl, np, dz, m, T(0), da, m);  // dA = W^T dZ
            const uint8_t* D = bm.get(l - 1);
            if (D) byte_dropout(D, T(bm.scale[l - 1]), da, size_t(np) * m);
            if (a.hidden == Act::relu) relu_backward(net.Z[l - 1].data(), da, net.dZ[l - 1].data(), size_t(np) * m);
            else if (!D && act_has_stored_derivative(a.hidden))  // A = g(Z) bit for bit (no dropout on it)
                act_backward_from_a(a.hidden, net.A[l - 1].data(), da, net.dZ[l - 1].data(), size_t(np) * m);
            else act_backward(a.hidden, net.Z[l - 1].data(), da, net.dZ[l - 1].data(), size_t(np) * m, alpha);
        }
    }
    return J;
}

// The lean pass compiled twice: for the baseline ISA and for AVX2 (chosen at run time). AVX2 only widens the
// vectorised elementwise loops; no FMA is enabled, so both produce the same bits.
template <class T>
__attribute__((noinline)) double lean_pass_base(MLP<T>& net, const T* theta, const T* X, const T* Y, int m,
                                                const ByteMasks& bm, double l2, double l1, T* grad, bool with_cost) {
    return lean_pass(net, theta, X, Y, m, bm, l2, l1, grad, with_cost);
}
#if defined(__x86_64__) || defined(__i386__)
template <class T>
__attribute__((noinline, target("avx2"))) double lean_pass_avx2(MLP<T>& net, const T* theta, const T* X, const T* Y,
                                                                int m, const ByteMasks& bm, double l2, double l1,
                                                                T* grad, bool with_cost) {
    return lean_pass(net, theta, X, Y, m, bm, l2, l1, grad, with_cost);
}
#endif

// ---------------------------------------------------------------------------------------------------------
// Wide path: forward over column chunks (each through all layers), then per layer dW tiles (each a full
// reduction over m in one BLAS call, plus db) and dA column chunks (dA = W^T dZ, dropout, g'), all on OpenMP.
// With 2+ column chunks the dA chunks go with their chunk's forward and every layer's dW tiles follow in one list,
// all in ONE region per pass (wide_pass); measured on the shared 2-core machine, fit on the medium net at 2 threads
// ran 1.3-1.5x faster than with L + 2 regions per step, at the same CPU time: each fork/join wakes a passively
// waiting worker, and under load a wake-up is late.
// The tasks (one chunk's forward, one backward tile or chunk) are compiled for the baseline ISA and for AVX2,
// chosen at run time like the lean pass (simd::level(): DNNKIT_SIMD / _core.set_simd force the baseline in tests): AVX2 only widens their elementwise loops (bias + activation, dropout,
// g', the cost), no FMA is enabled, so both give the same bits. (The OpenMP regions call the tasks: a region's
// body is outlined with its enclosing function's ISA, so the clones are the task functions, not wide_pass.)
template <class T>
struct WideArgs {
    MLP<T>& net;
    const T* theta;
    const T* X;
    const T* Y;
    int m;
    const ByteMasks& bm;
    bool cost;
    T alpha;
};

template <class T>
DNNKIT_ALWAYS_INLINE double wide_forward_chunk(const WideArgs<T>& w, int j0, int j1) {
    MLP<T>& net = w.net;
    const Arch& a = net.arch;
    const int L = a.L(), n0 = a.n(0), m = w.m, cw = j1 - j0;
    const ByteMasks& bm = w.bm;
    const T* X = w.X;
    const T* Aprev = X;
    if (const uint8_t* D0 = bm.get(0)) {
        T* A0 = net.A[0].data();
        for (int i = 0; i < n0; ++i) {
            const size_t o = size_t(i) * m + j0;
            std::copy(X + o, X + o + cw, A0 + o);
            byte_dropout(D0 + o, T(bm.scale[0]), A0 + o, size_t(cw));
        }
        Aprev = A0;
    }
    for (int l = 1; l <= L; ++l) {
        const int nl = a.n(l), np = a.n(l - 1);
        T* Zl = net.Z[l].data();
        T* Al = net.A[l].data();
        gemm(false, false, nl, cw, np, T(1), net.W(w.theta, l), np, Aprev + j0, m, T(0), Zl + j0, m);
        bias_activation(l < L ? a.hidden : a.output, net.b(w.theta, l), nl, m, j0, j1, w.alpha, Zl, Al);
        if (l < L)
            if (const uint8_t* D = bm.get(l))
                for (int i = 0; i < nl; ++i)
                    byte_dropout(D + size_t(i) * m + j0, T(bm.scale[l]), Al + size_t(i) * m + j0, size_t(cw));
        Aprev = Al;
    }
    return w.cost ? net.data_cost_columns(w.Y, j0, j1) : 0.0;
}
template <class T>
__attribute__((noinline)) double wide_forward_chunk_base(const WideArgs<T>& w, int j0, int j1) {
    return wide_forward_chunk(w, j0, j1);
}

// One backward task of layer l: t < ntiles a dW tile (+ db with the first column tile), else a dA column chunk.
template <class T>
struct WideLayer {
    int l, ntiles;
    Chunks rows, cols, ch;
    T cl2, cl1;
    T* grad;
};
// Layer l's backward tasks: dW tiles of at most WIDE_TILE_ROWS x WIDE_TILE_COLS (sizes only), dA over the chunks ch.
template <class T>
WideLayer<T> wide_layer(const Arch& a, int l, const Chunks& ch, T cl2, T cl1, T* grad) {
    const Chunks rows = balanced_chunks(a.n(l), WIDE_TILE_ROWS), cols = balanced_chunks(a.n(l - 1), WIDE_TILE_COLS);
    return WideLayer<T>{l, rows.count() * cols.count(), rows, cols, ch, cl2, cl1, grad};
}
template <class T>
DNNKIT_ALWAYS_INLINE void wide_backward_task(const WideArgs<T>& w, const WideLayer<T>& y, int t) {
    MLP<T>& net = w.net;
    const Arch& a = net.arch;
    const int l = y.l, nl = a.n(l), np = a.n(l - 1), m = w.m;
    const ByteMasks& bm = w.bm;
    const T* dz = net.dZ[l].data();
    const T* Wl = net.W(w.theta, l);
    if (t < y.ntiles) {
        const T* Ap = (l == 1) ? (bm.get(0) ? net.A[0].data() : w.X) : net.A[l - 1].data();
        T* dW = y.grad + a.woff[l];
        T* db = y.grad + a.boff[l];
        const int rc = t / y.cols.count(), cc = t % y.cols.count();
        const int r0 = y.rows.begin(rc), r1 = y.rows.end(rc), c0 = y.cols.begin(cc), c1 = y.cols.end(cc);
        gemm(false, true, r1 - r0, c1 - c0, m, T(1), dz + size_t(r0) * m, m, Ap + size_t(c0) * m, m, T(0),
             dW + size_t(r0) * np + c0, np);
        add_reg_grad(Wl, dW, np, r0, r1, c0, c1, y.cl2, y.cl1);
        if (cc == 0)
            for (int i = r0; i < r1; ++i) db[i] = row_sum(dz + size_t(i) * m, m);
    } else {
        const uint8_t* D = bm.get(l - 1);
        const int c = t - y.ntiles, j0 = y.ch.begin(c), cw = y.ch.end(c) - j0;
        T* da = net.dA.data();
        gemm(true, false, np, cw, nl, T(1), Wl, np, dz + j0, m, T(0), da + j0, m);
        const T* zp = net.Z[l - 1].data();
        const T* ap = net.A[l - 1].data();
        T* dzp = net.dZ[l - 1].data();
        const bool from_a = !D && act_has_stored_derivative(a.hidden);  // A = g(Z) bit for bit (no dropout on it)
        for (int i = 0; i < np; ++i) {
            const size_t o = size_t(i) * m + j0;
            if (D) byte_dropout(D + o, T(bm.scale[l - 1]), da + o, size_t(cw));
            if (a.hidden == Act::relu) relu_backward(zp + o, da + o, dzp + o, size_t(cw));
            else if (from_a) act_backward_from_a(a.hidden, ap + o, da + o, dzp + o, size_t(cw));
            else act_backward(a.hidden, zp + o, da + o, dzp + o, size_t(cw), w.alpha);
        }
    }
}
template <class T>
__attribute__((noinline)) void wide_backward_task_base(const WideArgs<T>& w, const WideLayer<T>& y, int t) {
    wide_backward_task(w, y, t);
}
#if defined(__x86_64__) || defined(__i386__)
template <class T>
__attribute__((noinline, target("avx2"))) double wide_forward_chunk_avx2(const WideArgs<T>& w, int j0, int j1) {
    return wide_forward_chunk(w, j0, j1);
}
template <class T>
__attribute__((noinline, target("avx2"))) void wide_backward_task_avx2(const WideArgs<T>& w, const WideLayer<T>& y,
                                                                       int t) {
    wide_backward_task(w, y, t);
}
#endif

// The column-local part of the backward pass of one column chunk, right after its forward (wide_forward_chunk):
// dZ[L] on the chunk's columns, then for l = L..2 the chunk's dA task (dA = W^T dZ, dropout, g' into dZ[l-1]).
// Every value is the one the per-layer tasks compute (the same elementwise ops and the same dA column chunks), so
// running it this way changes no bit; it only lets a chunk go from its forward to its dA without a barrier.
template <class T>
DNNKIT_ALWAYS_INLINE void wide_chunk_backward(const WideArgs<T>& w, const WideLayer<T>* ys, int c) {
    MLP<T>& net = w.net;
    const Arch& a = net.arch;
    const int L = a.L(), nL = a.n(L), m = w.m;
    const Chunks& ch = ys[L].ch;
    const int j0 = ch.begin(c), cw = ch.end(c) - j0;
    const T* AL = net.A[L].data();
    T* dZL = net.dZ[L].data();
    for (int i = 0; i < nL; ++i) {
        const size_t o = size_t(i) * m + j0;
        output_delta(a.output, a.loss, AL + o, w.Y + o, size_t(cw), T(1) / T(m), dZL + o);
    }
    for (int l = L; l >= 2; --l) wide_backward_task(w, ys[l], ys[l].ntiles + c);
}
// One column chunk's task of the one-region schedule: its forward, then (with grad) its column-local backward.
template <class T>
DNNKIT_ALWAYS_INLINE double wide_chunk(const WideArgs<T>& w, const WideLayer<T>* ys, int c) {
    const double J = wide_forward_chunk(w, ys[1].ch.begin(c), ys[1].ch.end(c));
    if (ys[1].grad) wide_chunk_backward(w, ys, c);
    return J;
}
template <class T>
__attribute__((noinline)) double wide_chunk_base(const WideArgs<T>& w, const WideLayer<T>* ys, int c) {
    return wide_chunk(w, ys, c);
}
#if defined(__x86_64__) || defined(__i386__)
template <class T>
__attribute__((noinline, target("avx2"))) double wide_chunk_avx2(const WideArgs<T>& w, const WideLayer<T>* ys, int c) {
    return wide_chunk(w, ys, c);
}
#endif

template <class T>
double wide_pass(MLP<T>& net, const T* theta, const T* X, const T* Y, int m, const ByteMasks& bm, double l2,
                 double l1, T* grad, bool with_cost) {
    const Arch& a = net.arch;
    const int L = a.L(), nL = a.n(L);
    const Chunks ch = wide_chunks(m);
    const int nth = num_threads();
    const bool cost = Y && with_cost;
    std::vector<double> part(ch.count(), 0.0);
    const bool avx2 = simd::level() >= simd::avx2;  // the CPU's, or DNNKIT_SIMD / _core.set_simd's (tests)
    const WideArgs<T> w{net, theta, X, Y, m, bm, cost, T(a.alpha)};

    const T cl2 = T(l2 / m), cl1 = T(l1 / (2.0 * m));
    if (ch.count() >= 2 && wide_fused().load(std::memory_order_relaxed)) {
        // Two or more column chunks: ONE parallel region per pass. Phase 1, one task per column chunk: its forward
        // through all layers, then (with grad) its column-local backward, dZ[L] and the dA chunks of layers L..2
        // (wide_chunk_backward); the chunks are independent, so no barrier between the layers. Phase 2 (after the
        // region's one barrier): every layer's dW tiles (+ db) in one dynamically scheduled list, largest first.
        // The tasks are the per-layer path's (below) with the same partitions, so the same bits; one fork/join and
        // one barrier per pass instead of L + 1 fork/joins, and a thread that finishes its chunks early starts on
        // the dW tiles of every layer instead of waiting at each layer's end.
        std::vector<WideLayer<T>> ys(size_t(L) + 1);
        std::vector<std::pair<int, int>> tiles;  // (layer, tile)
        for (int l = 1; l <= L; ++l) {
            ys[size_t(l)] = wide_layer(a, l, ch, cl2, cl1, grad);
            if (grad)
                for (int t = 0; t < ys[size_t(l)].ntiles; ++t) tiles.emplace_back(l, t);
        }
        auto tile_size = [&](const std::pair<int, int>& p) {
            const WideLayer<T>& y = ys[size_t(p.first)];
            const int rc = p.second / y.cols.count(), cc = p.second % y.cols.count();
            return double(y.rows.end(rc) - y.rows.begin(rc)) * double(y.cols.end(cc) - y.cols.begin(cc));
        };
        std::stable_sort(tiles.begin(), tiles.end(), [&](const std::pair<int, int>& p, const std::pair<int, int>& q) {
            return tile_size(p) > tile_size(q);
        });
        const WideLayer<T>* yp = ys.data();
        const int nt = int(tiles.size());
        const double reg = cost ? net.reg_cost(theta, m, l2, l1) : 0.0;  // before the post tasks may change theta
        const typename MLP<T>::PostTasks post = grad ? net.post : typename MLP<T>::PostTasks{};
#pragma omp parallel num_threads(nth) if (nth > 1)
        {
#pragma omp for schedule(dynamic, 1)
            for (int c = 0; c < ch.count(); ++c) {
#if defined(__x86_64__) || defined(__i386__)
                if (avx2) {
                    part[c] = wide_chunk_avx2(w, yp, c);
                    continue;
                }
#endif
                part[c] = wide_chunk_base(w, yp, c);
            }
#pragma omp for schedule(dynamic, 1)
            for (int i = 0; i < nt; ++i) {
                const WideLayer<T>& y = yp[tiles[size_t(i)].first];
#if defined(__x86_64__) || defined(__i386__)
                if (avx2) {
                    wide_backward_task_avx2(w, y, tiles[size_t(i)].second);
                    continue;
                }
#endif
                wide_backward_task_base(w, y, tiles[size_t(i)].second);
            }
            // (the implicit barrier above: the gradient is complete, nothing reads theta any more)
            if (post.n > 0) {
#pragma omp for schedule(dynamic, 1)
                for (int i = 0; i < post.n; ++i) post.fn(post.ctx, i);
            }
        }
        net.post_done = post.n > 0;
        double J = 0.0;
        if (cost) {
            for (double p : part) J += p;  // fixed order
            J = J / m + reg;
        }
        return J;
    }

    // ---- one column chunk (small m): forward, then the backward layer by layer, each layer's dW tiles and dA
    // chunks in one region
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if (nth > 1 && ch.count() > 1)
    for (int c = 0; c < ch.count(); ++c) {
#if defined(__x86_64__) || defined(__i386__)
        if (avx2) {
            part[c] = wide_forward_chunk_avx2(w, ch.begin(c), ch.end(c));
            continue;
        }
#endif
        part[c] = wide_forward_chunk_base(w, ch.begin(c), ch.end(c));
    }
    double J = 0.0;
    if (cost) {
        for (double p : part) J += p;  // fixed order
        J = J / m + net.reg_cost(theta, m, l2, l1);
    }
    if (!grad) return J;

    // ---- backward
    output_delta(a.output, a.loss, net.A[L].data(), Y, size_t(nL) * m, T(1) / T(m), net.dZ[L].data());
    for (int l = L; l >= 1; --l) {
        const WideLayer<T> y = wide_layer(a, l, ch, cl2, cl1, grad);
        const int ntasks = y.ntiles + (l > 1 ? ch.count() : 0);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if (nth > 1 && ntasks > 1)
        for (int t = 0; t < ntasks; ++t) {
#if defined(__x86_64__) || defined(__i386__)
            if (avx2) {
                wide_backward_task_avx2(w, y, t);
                continue;
            }
#endif
            wide_backward_task_base(w, y, t);
        }
    }
    return J;
}

template <class T>
double MLP<T>::run(const T* theta, const T* X, const T* Y, int m_, const ByteMasks& bm, double l2, double l1, T* grad,
                   bool with_cost) {
    resize(m_);
    post_done = false;
    if (bm.get(0)) A[0].resize(size_t(arch.n(0)) * m);
    else A[0].clear();  // the cache holds A0 only with input dropout (else it is X)
    if (!lean_worth(arch, m)) return wide_pass(*this, theta, X, Y, m, bm, l2, l1, grad, with_cost);
#if defined(__x86_64__) || defined(__i386__)
    if (simd::level() >= simd::avx2) return lean_pass_avx2(*this, theta, X, Y, m, bm, l2, l1, grad, with_cost);
#endif
    return lean_pass_base(*this, theta, X, Y, m, bm, l2, l1, grad, with_cost);
}

}  // namespace dnnkit
