// Gradient checking engine: centered differences (J(theta + eps e_k) - J(theta - eps e_k)) / 2eps for many
// coordinates k, and along directions d, without running a full forward pass per perturbation.
//
// How (ARCHITECTURE.md, "Gradient checking engine"):
// - The unperturbed pass is cached once: Z[l], A[l] (after dropout), g(Z[l]) and the dropout scales D[l].
// - Perturbing W[l][i,j] (b[l][i]) by s*eps changes only row i of Z[l], by s*eps*A[l-1][j,:] (s*eps).
//   Row i of A[l] changes by dA = g(Z + dz) - g(Z), times the same dropout scale (fixed masks: J is
//   deterministic). Z[l+1] changes by the rank-1 product W[l+1][:,i] x dA; deeper layers get full products,
//   batched: P perturbations (both signs) side by side as a (n, 2P*m) block, so the suffix runs as wide GEMMs.
// - Everything is propagated as DELTAS, never as perturbed totals: dZ[k+1] = W[k+1] dA[k]; dA[k] from
//   cancellation-free identities (relu: exactly dz or 0; tanh(a)-tanh(b) = tanh(a-b)(1 - tanh a tanh b);
//   sigmoid via expm1); the loss change per example from log1p/expm1 forms (softplus(z+d) - softplus(z) =
//   log1p(s(z) expm1(d)); logsumexp(z+d) - logsumexp(z) = log1p(sum_k p_k expm1(d_k))). So
//   J(theta+eps) - J(theta-eps) is computed to a relative accuracy near the unit roundoff, not to u*J/eps
//   as with two totals: only the O(eps^2) truncation of the centered difference remains.
// - The L2/L1 change for the one weight is in closed form.
// - Kinks: a relu/leaky unit whose pre-activation changes sign (or starts at 0) under the +-eps perturbation
//   (and is not dropped) makes that coordinate unreliable: flagged (KINK_ACT). L1 at |w| < eps: KINK_L1.
// - Batches depend on sizes only and each writes its own outputs: identical results for any thread count.
//   BLAS is single-threaded; parallelism is OpenMP over batches with per-thread scratch.
#pragma once
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "mlp.hpp"

namespace dnnkit {

enum : uint8_t { KINK_ACT = 1, KINK_L1 = 2 };

// g(z + d) - g(z) without cancellation; gz = g(z). Sets `crossed` when a kink lies within [z, z + d].
inline double act_delta(Act a, double z, double gz, double d, double alpha, bool& crossed) {
    switch (a) {
        case Act::linear: return d;
        case Act::relu: {
            const double zd = z + d;
            const bool p0 = z > 0.0, p1 = zd > 0.0;
            if (p0 && p1) return d;
            if (!p0 && !p1) {
                if (d != 0.0 && (z == 0.0 || zd == 0.0)) crossed = true;
                return 0.0;
            }
            crossed = true;
            return (p1 ? zd : 0.0) - (p0 ? z : 0.0);
        }
        case Act::leaky_relu: {
            const double zd = z + d;
            const bool p0 = z > 0.0, p1 = zd > 0.0;
            if (p0 && p1) return d;
            if (!p0 && !p1) {
                if (d != 0.0 && (z == 0.0 || zd == 0.0)) crossed = true;
                return alpha * d;
            }
            crossed = true;
            return (p1 ? zd : alpha * zd) - (p0 ? z : alpha * z);
        }
        case Act::tanh: return std::tanh(d) * (1.0 - gz * std::tanh(z + d));
        case Act::sigmoid: {
            // s(z+d) - s(z) = -s q expm1(-d) / (1 + q expm1(-d)), q = 1 - s computed without cancellation
            const double s = gz, q = z >= 0.0 ? std::exp(-z) * s : 1.0 - s;
            const double em = std::expm1(-d);
            return -s * q * em / (1.0 + q * em);
        }
        case Act::softmax: break;
    }
    throw std::logic_error("softmax is not a hidden activation");
}

// expm1 / log1p for the tiny arguments a perturbation produces (|x| <= 2^-9): Taylor polynomials whose
// remainders (x^7/5040, x^7/7) are below 2^-54 relative there, so they are exact to rounding like libm's, at a
// fraction of the cost (the loss change of every perturbed example goes through them). Larger x: libm.
inline double expm1_fast(double x) {
    if (!(std::fabs(x) <= 1.0 / 512)) return std::expm1(x);
    return x * (1.0 + x * (1.0 / 2 + x * (1.0 / 6 + x * (1.0 / 24 + x * (1.0 / 120 + x * (1.0 / 720))))));
}
inline double log1p_fast(double x) {
    if (!(std::fabs(x) <= 1.0 / 512)) return std::log1p(x);
    return x * (1.0 - x * (1.0 / 2 - x * (1.0 / 3 - x * (1.0 / 4 - x * (1.0 / 5 - x * (1.0 / 6))))));
}

inline bool has_kinks(Act a) { return a == Act::relu || a == Act::leaky_relu; }

class GradChecker {
   public:
    using Poll = std::function<bool()>;

    GradChecker(const Arch& arch, const double* theta, const double* X, const double* Y, int m,
                const Dropout<double>& dp, double l2, double l1)
        : arch_(arch), theta_(theta), Y_(Y), m_(m), l2_(l2), l1_(l1) {
        const int L = arch.L();
        MLP<double> net(arch);
        J0_ = net.forward(theta, X, m, dp, Y, l2, l1);
        Z_.assign(L + 1, {});
        A_.assign(L + 1, {});
        G_.assign(L + 1, {});
        D_.assign(L + 1, {});
        A_[0] = dp.on(0) ? net.A[0] : std::vector<double>(X, X + size_t(arch.n(0)) * m);
        for (int l = 1; l <= L; ++l) {
            Z_[l] = std::move(net.Z[l]);
            A_[l] = std::move(net.A[l]);
            G_[l].resize(Z_[l].size());
            const Act act = l < L ? arch.hidden : arch.output;
            if (act != Act::softmax) act_forward(act, Z_[l].data(), G_[l].data(), Z_[l].size(), arch.alpha);
            else G_[l] = A_[l];
        }
        for (int l = 0; l < L; ++l) {
            if (!dp.on(l)) continue;
            D_[l].assign(size_t(arch.n(l)) * m, 1.0);
            apply_dropout(dp, l, arch.n(l), m, 0, m, D_[l].data());  // 1 -> 1/keep or 0
        }
    }

    double cost() const { return J0_; }

    // Centered differences for the flat coordinates idx[0..n): approx[k] and kink flags[k].
    // Returns false when `poll` asked to stop (outputs then partly written).
    bool coords(const int64_t* idx, size_t n, double eps, double* approx, uint8_t* flags, const Poll& poll) const {
        const int L = arch_.L();
        std::vector<Coord> cs(n);
        for (size_t k = 0; k < n; ++k) cs[k] = locate(idx[k], k);
        // group by layer (stable), then cut into batches whose size depends only on the sizes
        std::stable_sort(cs.begin(), cs.end(), [](const Coord& a, const Coord& b) { return a.l < b.l; });
        std::vector<std::pair<size_t, size_t>> batches;
        const int P = std::max(1, std::min(64, target_cols / (2 * m_)));
        for (size_t s = 0; s < n;) {
            size_t e = s;
            const int cap = cs[s].l == L ? 256 : P;
            while (e < n && cs[e].l == cs[s].l && int(e - s) < cap) ++e;
            batches.emplace_back(s, e);
            s = e;
        }
        std::atomic<bool> stop{false};
        const int nb = int(batches.size());
#pragma omp parallel num_threads(num_threads()) if (nb > 1)
        {
            Scratch sc;
#pragma omp for schedule(dynamic, 1)
            for (int b = 0; b < nb; ++b) {
                if (stop.load(std::memory_order_relaxed)) continue;
                // Ctrl-C: polled by one thread only (the caller's, which may take the GIL); the others see the flag.
                if (poll && omp_get_thread_num() == 0 && poll()) {
                    stop.store(true);
                    continue;
                }
                run_batch(cs.data() + batches[b].first, batches[b].second - batches[b].first, eps, approx, flags, sc);
            }
        }
        return !stop.load();
    }

    // Directional derivatives along dirs[k] (k < K, each of length nparams):
    // (J(theta + eps d) - J(theta - eps d)) / 2eps, and how many (unit, example) kinks were crossed.
    bool directions(const double* dirs, int K, double eps, double* approx, int64_t* nkinks, const Poll& poll) const {
        const int L = arch_.L();
        const size_t N = arch_.nparams;
        std::vector<double> part(size_t(2) * K, 0.0);
        std::vector<int64_t> kk(size_t(2) * K, 0);
        std::atomic<bool> stop{false};
#pragma omp parallel num_threads(num_threads()) if (K > 0)
        {
            std::vector<double> dAp, dAn, dZ, tmp;
#pragma omp for schedule(dynamic, 1)
            for (int t = 0; t < 2 * K; ++t) {
                if (stop.load(std::memory_order_relaxed)) continue;
                if (poll && omp_get_thread_num() == 0 && poll()) {
                    stop.store(true);
                    continue;
                }
                const double* d = dirs + size_t(t / 2) * N;
                const double se = (t % 2 == 0 ? 1.0 : -1.0) * eps;
                int l0 = 1;
                while (l0 <= L && is_zero(d + arch_.woff[l0], size_t(arch_.n(l0)) * (arch_.n(l0 - 1) + 1))) ++l0;
                if (l0 > L) continue;  // zero direction: the difference is 0
                const int mm = m_;
                int64_t kinks = 0;
                dAp.assign(size_t(arch_.n(l0 - 1)) * mm, 0.0);
                for (int l = l0; l <= L; ++l) {
                    const int nl = arch_.n(l), np = arch_.n(l - 1);
                    dZ.assign(size_t(nl) * mm, 0.0);
                    const double* Ap = A_[l - 1].data();
                    if (l > l0) {
                        gemm(false, false, nl, mm, np, 1.0, W(l), np, dAp.data(), mm, 0.0, dZ.data(), mm);
                        tmp.resize(dAp.size());
                        for (size_t q = 0; q < dAp.size(); ++q) tmp[q] = Ap[q] + dAp[q];
                        Ap = tmp.data();
                    }
                    gemm(false, false, nl, mm, np, se, d + arch_.woff[l], np, Ap, mm, 1.0, dZ.data(), mm);
                    const double* db = d + arch_.boff[l];
                    for (int i = 0; i < nl; ++i)
                        for (int c = 0; c < mm; ++c) dZ[size_t(i) * mm + c] += se * db[i];
                    if (l == L) break;
                    dAn.resize(dZ.size());
                    hidden_delta(l, dZ.data(), mm, 1, dAn.data(), &kinks);
                    std::swap(dAp, dAn);
                }
                double s = 0.0;
                for (int c = 0; c < mm; ++c) s += loss_delta_col(c, dZ.data() + c, mm);
                part[t] = s;
                kk[t] = kinks;
            }
        }
        for (int k = 0; k < K; ++k) {
            const double* d = dirs + size_t(k) * N;
            double reg = 0.0;
            if (l2_ != 0.0 || l1_ != 0.0) {
                for (int l = 1; l <= L; ++l) {
                    const double* w = W(l);
                    const double* v = d + arch_.woff[l];
                    const size_t nw = size_t(arch_.n(l)) * arch_.n(l - 1);
                    for (size_t q = 0; q < nw; ++q) {
                        reg += (l2_ / m_) * w[q] * v[q];  // (l2/2m)((w+ev)^2 - (w-ev)^2) / 2e
                        if (l1_ != 0.0) reg += (l1_ / (2.0 * m_)) * abs_diff(w[q], v[q], eps) / (2.0 * eps);
                    }
                }
            }
            approx[k] = (part[2 * k] - part[2 * k + 1]) / (2.0 * eps * m_) + reg;
            nkinks[k] = kk[2 * k] + kk[2 * k + 1];
        }
        return !stop.load();
    }

   private:
    static constexpr int target_cols = 4096;  // columns of one batched suffix GEMM (2P*m)

    struct Coord {
        int l = 1, i = 0, j = -1;  // j < 0: bias
        size_t out = 0;
    };
    struct Scratch {
        std::vector<double> row, bufA, bufB, e, yd;
        std::vector<uint8_t> kink;
    };

    const Arch& arch_;
    const double* theta_;
    const double* Y_;
    int m_;
    double l2_, l1_, J0_ = 0.0;
    std::vector<std::vector<double>> Z_, A_, G_, D_;

    const double* W(int l) const { return theta_ + arch_.woff[l]; }

    static bool is_zero(const double* p, size_t n) {
        for (size_t q = 0; q < n; ++q)
            if (p[q] != 0.0) return false;
        return true;
    }
    // |w + e v| - |w - e v| without cancellation
    static double abs_diff(double w, double v, double e) {
        const double ev = e * std::fabs(v);
        if (std::fabs(w) >= ev) return 2.0 * e * v * (w > 0 ? 1.0 : -1.0);
        return 2.0 * w * (v > 0 ? 1.0 : -1.0);
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
    // pairs with example c). Counts crossed kinks per column block into kink[p] (or *total).
    void hidden_delta(int l, const double* dZ, int ld, int reps, double* dA, int64_t* total,
                      uint8_t* kink = nullptr) const {
        const int nl = arch_.n(l), mm = m_;
        const Act act = arch_.hidden;
        const double* Z = Z_[l].data();
        const double* G = G_[l].data();
        const double* D = D_[l].empty() ? nullptr : D_[l].data();
        const double alpha = arch_.alpha;
        for (int h = 0; h < nl; ++h) {
            const double* z = Z + size_t(h) * mm;
            const double* g = G + size_t(h) * mm;
            const double* dd = D ? D + size_t(h) * mm : nullptr;
            for (int p = 0; p < reps; ++p) {
                const double* dz = dZ + size_t(h) * ld + size_t(p) * mm;
                double* da = dA + size_t(h) * ld + size_t(p) * mm;
                if (act == Act::relu && !dd) {  // the common case, written branch-free so that it vectorizes
                    int any = 0;
#pragma omp simd reduction(| : any)
                    for (int c = 0; c < mm; ++c) {
                        const double zz = z[c], d = dz[c], zd = zz + d;
                        const double r = std::max(zd, 0.0) - std::max(zz, 0.0);
                        da[c] = (int(zz > 0.0) & int(zd > 0.0)) ? d : r;  // both active: exactly d
                        // a kink is crossed iff [z, z+d] contains 0 (and the unit moves)
                        any |= int(std::min(zz, zd) <= 0.0) & int(std::max(zz, zd) >= 0.0) & int(d != 0.0);
                    }
                    if (any) {
                        int64_t cnt = 0;
                        for (int c = 0; c < mm; ++c) {
                            bool cr = false;
                            act_delta(act, z[c], g[c], dz[c], alpha, cr);
                            cnt += cr;
                        }
                        if (kink) kink[p] |= KINK_ACT;
                        if (total) *total += cnt;
                    }
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
                    if (total) *total += cnt;
                }
            }
        }
    }

    // loss(zL + d) - loss(zL) of example c; d[i*ld] is the change of output unit i.
    double loss_delta_col(int c, const double* d, size_t ld) const {
        const int L = arch_.L(), nL = arch_.n(L), mm = m_;
        const double* G = G_[L].data();
        double s = 0.0;
        if (arch_.loss == Loss::ce) {
            double e = 0.0, yd = 0.0;
            for (int i = 0; i < nL; ++i) {
                const double di = d[size_t(i) * ld];
                e += G[size_t(i) * mm + c] * expm1_fast(di);
                yd += Y_[size_t(i) * mm + c] * di;
            }
            return log1p_fast(e) - yd;
        }
        for (int i = 0; i < nL; ++i) s += loss_delta_unit(i, c, d[size_t(i) * ld]);
        return s;
    }
    // sum over examples of loss(zL + d) - loss(zL) for one perturbation; d is (n_L, m) with row stride ld.
    // Row-wise (contiguous) loops; the per-example sums are added in example order (deterministic).
    double loss_delta_block(const double* d, size_t ld, Scratch& sc) const {
        const int L = arch_.L(), nL = arch_.n(L), mm = m_;
        if (arch_.loss != Loss::ce) {
            double s = 0.0;
            for (int c = 0; c < mm; ++c) s += loss_delta_col(c, d + c, ld);
            return s;
        }
        sc.e.assign(size_t(mm), 0.0);
        sc.yd.assign(size_t(mm), 0.0);
        double* e = sc.e.data();
        double* yd = sc.yd.data();
        for (int i = 0; i < nL; ++i) {
            const double* di = d + size_t(i) * ld;
            const double* g = G_[L].data() + size_t(i) * mm;
            const double* y = Y_ + size_t(i) * mm;
            for (int c = 0; c < mm; ++c) {
                e[c] += g[c] * expm1_fast(di[c]);
                yd[c] += y[c] * di[c];
            }
        }
        double s = 0.0;
        for (int c = 0; c < mm; ++c) s += log1p_fast(e[c]) - yd[c];
        return s;
    }

    // the same when only output unit i changes (by d)
    double loss_delta_unit(int i, int c, double d) const {
        const int L = arch_.L(), mm = m_;
        const size_t o = size_t(i) * mm + c;
        const double gz = G_[L][o], y = Y_[o];
        if (arch_.loss == Loss::ce) return log1p_fast(gz * expm1_fast(d)) - y * d;
        if (arch_.loss == Loss::bce) return log1p_fast(gz * expm1_fast(d)) - y * d;  // gz = sigmoid(z)
        double da = d;
        if (arch_.output == Act::sigmoid) {
            bool cr = false;
            da = act_delta(Act::sigmoid, Z_[L][o], gz, d, 0.0, cr);
        }
        return da * (gz - y) + 0.5 * da * da;  // 0.5(a+da-y)^2 - 0.5(a-y)^2
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

    void run_batch(const Coord* cs, size_t B, double eps, double* approx, uint8_t* flags, Scratch& sc) const {
        const int L = arch_.L(), l = cs[0].l, mm = m_;
        const double inv = 1.0 / (2.0 * eps * mm);
        if (l == L) {  // output layer: only row i of Z[L] changes; no products at all
            const double* Ap = A_[L - 1].data();
            for (size_t b = 0; b < B; ++b) {
                const Coord& c = cs[b];
                double sp = 0.0, sn = 0.0;
                for (int e = 0; e < mm; ++e) {
                    const double a = c.j < 0 ? 1.0 : Ap[size_t(c.j) * mm + e];
                    sp += loss_delta_unit_or_col(c.i, e, eps * a);
                    sn += loss_delta_unit_or_col(c.i, e, -eps * a);
                }
                uint8_t f = 0;
                approx[c.out] = (sp - sn) * inv + reg_term(c, eps, f);
                flags[c.out] = f;
            }
            return;
        }
        const int NP = int(2 * B), ld = NP * mm;
        const int nl = arch_.n(l), n1 = arch_.n(l + 1);
        size_t big = 0;
        for (int k = l + 1; k <= L; ++k) big = std::max(big, size_t(arch_.n(k)) * ld);
        sc.row.resize(size_t(ld));
        sc.bufA.resize(big);
        sc.bufB.resize(big);
        sc.kink.assign(size_t(NP), 0);
        // row i of dA[l] for each perturbation p = 2b + (0: +eps, 1: -eps)
        {
            const double* Ap = A_[l - 1].data();
            const double* z = Z_[l].data();
            const double* g = G_[l].data();
            const double* D = D_[l].empty() ? nullptr : D_[l].data();
            for (int p = 0; p < NP; ++p) {
                const Coord& c = cs[p / 2];
                const double se = (p % 2 == 0) ? eps : -eps;
                const size_t o = size_t(c.i) * mm;
                double* r = sc.row.data() + size_t(p) * mm;
                bool cr = false;
                for (int e = 0; e < mm; ++e) {
                    const double sc_ = D ? D[o + e] : 1.0;
                    const double dz = c.j < 0 ? se : se * Ap[size_t(c.j) * mm + e];
                    if (sc_ == 0.0) {
                        r[e] = 0.0;
                        continue;
                    }
                    r[e] = act_delta(arch_.hidden, z[o + e], g[o + e], dz, arch_.alpha, cr) * sc_;
                }
                if (cr) sc.kink[p] |= KINK_ACT;
            }
        }
        (void)nl;
        // dZ[l+1] = W[l+1][:, i] x dA[l][i, :] (rank 1 per perturbation)
        {
            const double* W1 = W(l + 1);
            double* out = sc.bufA.data();
            for (int h = 0; h < n1; ++h)
                for (int p = 0; p < NP; ++p) {
                    const double w = W1[size_t(h) * nl + cs[p / 2].i];
                    const double* r = sc.row.data() + size_t(p) * mm;
                    double* o = out + size_t(h) * ld + size_t(p) * mm;
#pragma omp simd
                    for (int e = 0; e < mm; ++e) o[e] = w * r[e];
                }
        }
        // suffix: dA[k] from dZ[k], then dZ[k+1] = W[k+1] dA[k], as wide GEMMs
        double* dZ = sc.bufA.data();
        double* dA = sc.bufB.data();
        for (int k = l + 1; k < L; ++k) {
            hidden_delta(k, dZ, ld, NP, dA, nullptr, sc.kink.data());
            gemm(false, false, arch_.n(k + 1), ld, arch_.n(k), 1.0, W(k + 1), arch_.n(k), dA, ld, 0.0, dZ, ld);
        }
        for (size_t b = 0; b < B; ++b) {
            const Coord& c = cs[b];
            double s[2] = {0.0, 0.0};
            for (int t = 0; t < 2; ++t) {
                const size_t p = 2 * b + t;
                s[t] = loss_delta_block(dZ + p * mm, size_t(ld), sc);
            }
            uint8_t f = uint8_t(sc.kink[2 * b] | sc.kink[2 * b + 1]);
            approx[c.out] = (s[0] - s[1]) * inv + reg_term(c, eps, f);
            flags[c.out] = f;
        }
    }

    double loss_delta_unit_or_col(int i, int c, double d) const { return loss_delta_unit(i, c, d); }
};

}  // namespace dnnkit
