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
// - Fast path (relu / leaky_relu / linear hidden layers, on by default): in a linear region the perturbed forward
//   is exactly linear propagation, so per hidden unit the Jacobian G = dZ[L]/dA[l][i] (per example) is formed
//   once and each of the unit's coordinates costs O(n_L m); coordinates with a kink within reach (own unit, or
//   any downstream unit by precomputed margins) are routed to the general path above. See fast_unit.
// - Directional mode: directions grouped by their first layer l0, both signs of all of them side by side as one
//   wide block, nothing below l0 recomputed.
#pragma once
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
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
        if (dp.on(0)) A_[0] = std::move(net.A[0]);  // else A[0] is X itself (not copied)
        A0_ = dp.on(0) ? A_[0].data() : X;
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
    }

    double cost() const { return J0_; }

    // What the last coords() call did: coordinates done by the piecewise-linear fast path, and by the general
    // (delta-propagation) path, the latter including the fast path's routed ones (kinks within reach).
    struct Stats {
        int64_t fast = 0, general = 0, routed = 0;
    };

    // Centered differences for the flat coordinates idx[0..n): approx[k] and kink flags[k].
    // fast_path: use the exact linear-region shortcut for relu / leaky_relu / linear hidden layers (see
    // fast_unit); false forces the general path for every coordinate (the tests' escape hatch).
    // Returns false when `poll` asked to stop (outputs then partly written).
    bool coords(const int64_t* idx, size_t n, double eps, double* approx, uint8_t* flags, const Poll& poll,
                bool fast_path = true, Stats* stats = nullptr) const {
        const int L = arch_.L();
        std::vector<Coord> cs(n);
        for (size_t k = 0; k < n; ++k) cs[k] = locate(idx[k], k);
        Stats st;
        if (!(fast_path && piecewise_linear())) {
            st.general = int64_t(n);
            if (stats) *stats = st;
            return general_coords(std::move(cs), eps, approx, flags, poll);
        }
        // fast candidates: hidden-layer coordinates, grouped by unit (l, i); output-layer ones are already O(m)
        std::vector<Coord> fast, rest;
        for (const Coord& c : cs) (c.l < L ? fast : rest).push_back(c);
        std::stable_sort(fast.begin(), fast.end(),
                         [](const Coord& a, const Coord& b) { return a.l != b.l ? a.l < b.l : a.i < b.i; });
        std::vector<std::pair<size_t, size_t>> units;
        for (size_t s = 0; s < fast.size();) {
            size_t e = s;
            while (e < fast.size() && fast[e].l == fast[s].l && fast[e].i == fast[s].i) ++e;
            units.emplace_back(s, e);
            s = e;
        }
        std::vector<uint8_t> routed(fast.size(), 0);
        std::atomic<bool> stop{false};
        const int nu = int(units.size());
#pragma omp parallel num_threads(num_threads()) if (nu > 1)
        {
            FastScratch fs;
#pragma omp for schedule(dynamic, 1)
            for (int u = 0; u < nu; ++u) {
                if (stop.load(std::memory_order_relaxed)) continue;
                if (poll && omp_get_thread_num() == 0 && poll()) {
                    stop.store(true);
                    continue;
                }
                // a unit with many coordinates (wide inputs) also polls between them, on the polling thread only
                const bool poller = poll && omp_get_thread_num() == 0;
                if (!fast_unit(fast.data() + units[u].first, units[u].second - units[u].first, eps, approx, flags,
                               routed.data() + units[u].first, fs, poller ? &poll : nullptr, stop))
                    stop.store(true);
            }
        }
        if (stop.load()) return false;
        for (size_t k = 0; k < fast.size(); ++k) {
            if (routed[k]) {
                rest.push_back(fast[k]);
                ++st.routed;
            } else {
                ++st.fast;
            }
        }
        st.general = int64_t(rest.size());
        if (stats) *stats = st;
        return general_coords(std::move(rest), eps, approx, flags, poll);
    }

    // Directional derivatives along dirs[k] (k < K, each of length nparams):
    // (J(theta + eps d) - J(theta - eps d)) / 2eps, and how many (unit, example) kinks were crossed.
    // Batched: directions whose first nonzero layer is the same (l0) run together, both signs of every
    // direction side by side as the column blocks of one (n, 2*g*m) block, so the suffix is a few wide GEMMs;
    // nothing below l0 is recomputed (the cached forward), and the l0 product D[l0] A[l0-1] is formed once for
    // both signs. Chunks of directions depend on sizes only: identical results for any thread count.
    bool directions(const double* dirs, int K, double eps, double* approx, int64_t* nkinks, const Poll& poll) const {
        const int L = arch_.L();
        const size_t N = arch_.nparams;
        // which parts (W[l], b[l]) each direction touches: its nonzero blocks
        std::vector<const double*> rows(K);
        std::vector<uint8_t> wnz(size_t(K) * (L + 1), 0), bnz(size_t(K) * (L + 1), 0);
        for (int k = 0; k < K; ++k) {
            const double* d = rows[k] = dirs + size_t(k) * N;
            for (int l = 1; l <= L; ++l) {
                wnz[size_t(k) * (L + 1) + l] = !is_zero(d + arch_.woff[l], size_t(arch_.n(l)) * arch_.n(l - 1));
                bnz[size_t(k) * (L + 1) + l] = !is_zero(d + arch_.boff[l], size_t(arch_.n(l)));
            }
        }
        return directions(rows.data(), wnz.data(), bnz.data(), K, eps, approx, nkinks, poll);
    }

    // The same for directions given as rows[k] (length nparams) restricted to the blocks with wpart[k*(L+1)+l]
    // (W[l]) and bpart[k*(L+1)+l] (b[l]) set: the other blocks of rows[k] are read as zeros. One row can so carry
    // a direction for every component at once (components are disjoint), without a dense (K, nparams) matrix.
    bool directions(const double* const* rows, const uint8_t* wnz, const uint8_t* bnz, int K, double eps,
                    double* approx, int64_t* nkinks, const Poll& poll) const {
        const int L = arch_.L(), mm = m_;
        std::vector<int> l0(K, L + 1);
        for (int k = 0; k < K; ++k)
            for (int l = L; l >= 1; --l)
                if (wnz[size_t(k) * (L + 1) + l] || bnz[size_t(k) * (L + 1) + l]) l0[k] = l;
        std::vector<int> order(K);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return l0[a] < l0[b]; });
        const int gmax = std::max(1, target_dir_cols / (2 * mm));
        std::vector<std::pair<int, int>> chunks;  // [s, e) into order, same l0, at most gmax directions
        for (int s = 0; s < K;) {
            int e = s;
            while (e < K && l0[order[e]] == l0[order[s]] && e - s < gmax) ++e;
            if (l0[order[s]] <= L) chunks.emplace_back(s, e);
            s = e;
        }
        std::vector<double> part(size_t(2) * K, 0.0);
        std::vector<int64_t> kk(size_t(2) * K, 0);
        std::atomic<bool> stop{false};
        const int nc = int(chunks.size());
#pragma omp parallel num_threads(num_threads()) if (nc > 1)
        {
            Scratch sc;
            std::vector<double> bufZ, bufA, base, tmp;
            std::vector<int64_t> cnt;
#pragma omp for schedule(dynamic, 1)
            for (int ci = 0; ci < nc; ++ci) {
                if (stop.load(std::memory_order_relaxed)) continue;
                if (poll && omp_get_thread_num() == 0 && poll()) {
                    stop.store(true);
                    continue;
                }
                const int* ks = order.data() + chunks[ci].first;
                const int g = chunks[ci].second - chunks[ci].first, lz = l0[ks[0]];
                const int NP = 2 * g, ld = NP * mm;
                size_t big = 0;
                for (int l = lz; l <= L; ++l) big = std::max(big, size_t(arch_.n(l)) * ld);
                bufZ.resize(big);  // layer l0 writes every block
                bufA.resize(big);
                cnt.assign(size_t(NP), 0);
                // layer l0: dZ = +-eps (D_W A[l0-1] + D_b), one product for both signs
                {
                    const int nl = arch_.n(lz), np = arch_.n(lz - 1);
                    base.resize(size_t(nl) * mm);
                    for (int t = 0; t < g; ++t) {
                        const double* d = rows[ks[t]];
                        const size_t f = size_t(ks[t]) * (L + 1) + lz;
                        if (wnz[f])
                            gemm(false, false, nl, mm, np, 1.0, d + arch_.woff[lz], np, act(lz - 1), mm, 0.0,
                                 base.data(), mm);
                        else
                            std::fill(base.begin(), base.end(), 0.0);
                        const double* db = d + arch_.boff[lz];
                        for (int r = 0; r < nl; ++r) {
                            const double bb = bnz[f] ? db[r] : 0.0;
                            const double* br = base.data() + size_t(r) * mm;
                            double* zp = bufZ.data() + size_t(r) * ld + size_t(2 * t) * mm;
                            double* zn = zp + mm;
                            for (int c = 0; c < mm; ++c) {
                                const double v = eps * (br[c] + bb);
                                zp[c] = v;
                                zn[c] = -v;
                            }
                        }
                    }
                }
                double* dZ = bufZ.data();
                double* dA = bufA.data();
                for (int l = lz + 1; l <= L; ++l) {
                    const int nl = arch_.n(l), np = arch_.n(l - 1);
                    hidden_delta(l - 1, dZ, ld, NP, dA, cnt.data());
                    gemm(false, false, nl, ld, np, 1.0, W(l), np, dA, ld, 0.0, dZ, ld);
                    for (int t = 0; t < g; ++t) {  // directions that also move layer l: + se (D_W (A + dA) + D_b)
                        const double* d = rows[ks[t]];
                        const size_t f = size_t(ks[t]) * (L + 1) + l;
                        if (!wnz[f] && !bnz[f]) continue;
                        for (int s = 0; s < 2; ++s) {
                            const double se = s == 0 ? eps : -eps;
                            const size_t off = size_t(2 * t + s) * mm;
                            if (wnz[f]) {
                                tmp.resize(size_t(np) * mm);
                                const double* Ap = act(l - 1);
                                for (int r = 0; r < np; ++r)
                                    for (int c = 0; c < mm; ++c)
                                        tmp[size_t(r) * mm + c] = Ap[size_t(r) * mm + c] + dA[size_t(r) * ld + off + c];
                                gemm(false, false, nl, mm, np, se, d + arch_.woff[l], np, tmp.data(), mm, 1.0,
                                     dZ + off, ld);
                            }
                            if (bnz[f]) {
                                const double* db = d + arch_.boff[l];
                                for (int r = 0; r < nl; ++r)
                                    for (int c = 0; c < mm; ++c) dZ[size_t(r) * ld + off + c] += se * db[r];
                            }
                        }
                    }
                }
                for (int t = 0; t < g; ++t)
                    for (int s = 0; s < 2; ++s) {
                        part[size_t(2) * ks[t] + s] = loss_delta_block(dZ + size_t(2 * t + s) * mm, size_t(ld), sc);
                        kk[size_t(2) * ks[t] + s] = cnt[size_t(2 * t + s)];
                    }
            }
        }
        for (int k = 0; k < K; ++k) {
            const double* d = rows[k];
            double reg = 0.0;
            if (l2_ != 0.0 || l1_ != 0.0) {
                for (int l = 1; l <= L; ++l) {
                    if (!wnz[size_t(k) * (L + 1) + l]) continue;
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
    static constexpr int target_cols = 4096;       // columns of one batched suffix GEMM (2P*m)
    static constexpr int target_dir_cols = 16384;  // columns of one batched directional block (2g*m)

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
    const double* A0_ = nullptr;
    std::vector<std::vector<double>> Z_, A_, G_, D_;
    // piecewise-linear hidden layers (fast path): S[l] = g'(Z[l]) * dropout scale; |W[l]| for the margin bounds
    std::vector<std::vector<double>> S_, absW_;

    const double* W(int l) const { return theta_ + arch_.woff[l]; }
    const double* act(int l) const { return l == 0 ? A0_ : A_[l].data(); }  // A[l] after dropout

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
    // pairs with example c). Flags crossed kinks per column block into kink[p] and counts them into counts[p].
    void hidden_delta(int l, const double* dZ, int ld, int reps, double* dA, int64_t* counts,
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
                        if (counts) counts[p] += cnt;
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
                    if (counts) counts[p] += cnt;
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
            const double* Ap = act(L - 1);
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
            const double* Ap = act(l - 1);
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

    // ------------------------------------------------------------------ fast path (piecewise-linear hidden)
    //
    // With relu / leaky_relu / linear hidden layers the perturbed forward is LINEAR in the perturbation as long
    // as no unit crosses its kink, so it is computed exactly (to rounding) by linear propagation: perturbing
    // W[l][i,j] (b[l][i]) by s*eps changes A[l][i,k] by s*delta_k, delta_k = eps * A[l-1][j,k] (eps) * S[l][i,k]
    // (S = g'(Z) times the dropout scale), and Z[L][:,k] by s*G[:,k]*delta_k with G = dZ[L]/dA[l][i] per example,
    // formed once per unit by propagating a unit seed through the suffix. The loss change of example k is then a
    // function of delta_k alone: l_k(z + v) - l_k(z - v), v = G delta, in the cancellation-free forms below, so
    // a coordinate costs O(n_L m) instead of O(n_{l+1} m + suffix GEMMs). This is still a finite difference of
    // J (both perturbed costs, their O(eps^2) truncation included), not the analytic gradient.
    //
    // Exactness needs every unit on the path to stay on its side of the kink for both signs:
    // - the perturbed unit itself: |eps a_jk| < |Z[l][i,k]| (the general path flags exactly the complement);
    // - downstream units u of hidden layers l' in (l, L): |J_u,k delta_k| < |Z[l'][u,k]|, J = dZ[l'][u]/dA[l][i],
    //   checked through the margin M_k = min_u |Z| / (|J| + tau |J|abs) (|J|abs: the same propagation with |W|, a
    //   bound on the rounding of the general path's own dZ) with a relative safety tau.
    // Coordinates failing either test (for any example with a_jk != 0) are routed to the general path, which
    // computes and flags them exactly as before. Dropped units (mask 0) pass nothing on and are never flagged.
    static constexpr double tau = 1e-9;
    static constexpr double vpoly = 1.0 / 512;  // |v| below this: polynomial expm1 / log1p (exact to rounding)

    struct FastScratch {
        std::vector<double> G, dZ, dA, dZa, dAa, Mg, T, Gs, P, Yq, YG, gmax, a, f, So, Se;
        std::vector<int> act;
    };

    bool piecewise_linear() const {
        return arch_.hidden == Act::relu || arch_.hidden == Act::leaky_relu || arch_.hidden == Act::linear;
    }

    // the loss pair l(z + v) - l(z - v) of example k for the output change v[c] (stride 1); exact, any |v|
    double loss_pair_scalar(int k, const double* v, double* neg) const {
        const int nL = arch_.n(arch_.L());
        for (int c = 0; c < nL; ++c) neg[c] = -v[c];
        return loss_delta_col(k, v, 1) - loss_delta_col(k, neg, 1);
    }

    // Prepares unit (l, i): G, margins, thresholds T (per example), the active examples (S[l][i,k] != 0) and the
    // loss coefficients gathered on them (Gs = eps S G, output probabilities / sigmoids P, labels).
    void fast_prepare(int l, int i, double eps, FastScratch& f) const {
        const int L = arch_.L(), mm = m_, nL = arch_.n(L), nl = arch_.n(l);
        const bool kinks = has_kinks(arch_.hidden);
        const double inf = std::numeric_limits<double>::infinity();
        const double* s = S_[l].data() + size_t(i) * mm;
        f.G.resize(size_t(nL) * mm);
        f.Mg.assign(size_t(mm), inf);
        if (l + 1 == L) {
            const double* WL = W(L);
            for (int c = 0; c < nL; ++c) std::fill_n(f.G.data() + size_t(c) * mm, mm, WL[size_t(c) * nl + i]);
        } else {
            // layer l+1: dZ[l+1][u,k] = W[l+1][u,i] for every example
            const int n1 = arch_.n(l + 1);
            const double* W1 = W(l + 1);
            f.dA.resize(size_t(n1) * mm);
            f.dAa.resize(size_t(n1) * mm);
            double* M = f.Mg.data();
            for (int u = 0; u < n1; ++u) {
                const double w = W1[size_t(u) * nl + i], aw = std::fabs(w) * (1.0 + tau);
                const double* su = S_[l + 1].data() + size_t(u) * mm;
                double* da = f.dA.data() + size_t(u) * mm;
                double* daa = f.dAa.data() + size_t(u) * mm;
                for (int k = 0; k < mm; ++k) {
                    da[k] = su[k] * w;
                    daa[k] = std::fabs(da[k]);
                }
                if (kinks && aw > 0.0) margin_row(l + 1, u, aw, M);
            }
            for (int lp = l + 2; lp <= L; ++lp) {
                const int n = arch_.n(lp), np = arch_.n(lp - 1);
                double* out = lp == L ? f.G.data() : (f.dZ.resize(size_t(n) * mm), f.dZ.data());
                gemm(false, false, n, mm, np, 1.0, W(lp), np, f.dA.data(), mm, 0.0, out, mm);
                if (lp == L) break;
                f.dZa.resize(size_t(n) * mm);
                gemm(false, false, n, mm, np, 1.0, absW_[lp].data(), np, f.dAa.data(), mm, 0.0, f.dZa.data(), mm);
                if (kinks) margin_block(lp, f.dZ.data(), f.dZa.data(), M);
                f.dA.resize(size_t(n) * mm);
                f.dAa.resize(size_t(n) * mm);
                const double* S = S_[lp].data();
                for (size_t q = 0; q < size_t(n) * mm; ++q) {
                    f.dA[q] = S[q] * f.dZ[q];
                    f.dAa[q] = std::fabs(S[q]) * f.dZa[q];
                }
            }
        }
        // thresholds on eps*|a_jk|: own kink (strict) and downstream margin; dropped units: none
        f.T.resize(size_t(mm));
        const double* z = Z_[l].data() + size_t(i) * mm;
        const double* D = D_[l].empty() ? nullptr : D_[l].data() + size_t(i) * mm;
        for (int k = 0; k < mm; ++k) {
            double t = inf;
            if (kinks && !(D && D[k] == 0.0)) {
                t = std::fabs(z[k]);
                if (s[k] != 0.0) t = std::min(t, f.Mg[k] / (std::fabs(s[k]) * (1.0 + tau)));
            }
            f.T[k] = t;
        }
        // active examples (delta_k != 0 possible) and the loss coefficients gathered on them
        f.act.clear();
        for (int k = 0; k < mm; ++k)
            if (s[k] != 0.0) f.act.push_back(k);
        const int na = int(f.act.size());
        f.Gs.resize(size_t(nL) * na);
        f.P.resize(size_t(nL) * na);
        f.Yq.resize(size_t(nL) * na);
        f.YG.assign(size_t(na), 0.0);
        f.gmax.assign(size_t(na), 0.0);
        const double* PL = G_[L].data();
        for (int c = 0; c < nL; ++c) {
            const double* g = f.G.data() + size_t(c) * mm;
            const double* p = PL + size_t(c) * mm;
            const double* y = Y_ + size_t(c) * mm;
            double* gs = f.Gs.data() + size_t(c) * na;
            double* pq = f.P.data() + size_t(c) * na;
            double* yq = f.Yq.data() + size_t(c) * na;
            for (int q = 0; q < na; ++q) {
                const int k = f.act[q];
                gs[q] = eps * s[k] * g[k];
                pq[q] = p[k];
                yq[q] = y[k];
                // ce: sum_c y_c v_c; mse (linear output): sum_c v_c (a_c - y_c)
                f.YG[q] += (arch_.loss == Loss::mse ? p[k] - y[k] : y[k]) * gs[q];
                f.gmax[q] = std::max(f.gmax[q], std::fabs(gs[q]));
            }
        }
        f.a.resize(size_t(std::max(na, 1)));
        f.So.resize(size_t(std::max(na, 1)));
        f.Se.resize(size_t(std::max(na, 1)));
        f.f.resize(size_t(std::max(nL, 1)) * 2);
    }

    // margin of hidden layer lp, unit u, with a Jacobian constant over the examples (layer l+1): aw = |J| (1 + tau)
    void margin_row(int lp, int u, double aw, double* M) const {
        const int mm = m_;
        const double* z = Z_[lp].data() + size_t(u) * mm;
        const double* D = D_[lp].empty() ? nullptr : D_[lp].data() + size_t(u) * mm;
        const double inv = 1.0 / aw;
        for (int k = 0; k < mm; ++k) {
            const double r = (D && D[k] == 0.0) ? std::numeric_limits<double>::infinity() : std::fabs(z[k]) * inv;
            M[k] = std::min(M[k], r);
        }
    }
    // margin of hidden layer lp from per-example Jacobians J (n_lp, m) and their |.| bounds Ja
    void margin_block(int lp, const double* J, const double* Ja, double* M) const {
        const int mm = m_, n = arch_.n(lp);
        const double inf = std::numeric_limits<double>::infinity();
        for (int u = 0; u < n; ++u) {
            const double* z = Z_[lp].data() + size_t(u) * mm;
            const double* D = D_[lp].empty() ? nullptr : D_[lp].data() + size_t(u) * mm;
            for (int k = 0; k < mm; ++k) {
                const size_t o = size_t(u) * mm + k;
                const double den = (std::fabs(J[o]) + tau * Ja[o]) * (1.0 + tau);
                const double r = (D && D[k] == 0.0) || !(den > 0.0) ? inf : std::fabs(z[k]) / den;
                M[k] = std::min(M[k], r);
            }
        }
    }

    // sum over the active examples of l(z + v) - l(z - v), v_c = Gs[c][q] a[q], for one coordinate
    double fast_loss_sum(FastScratch& f, const double* a, int na, double vmax, double* tmp) const {
        const int L = arch_.L(), nL = arch_.n(L);
        const double* Gs = f.Gs.data();
        const double* P = f.P.data();
        const double* YG = f.YG.data();
        double sum = 0.0;
        if (arch_.loss == Loss::mse && arch_.output == Act::linear) {
            // 0.5|a + v - y|^2 - 0.5|a - v - y|^2 = 2 v.(a - y), exactly
#pragma omp simd reduction(+ : sum)
            for (int q = 0; q < na; ++q) sum += 2.0 * a[q] * YG[q];
            return sum;
        }
        if (vmax <= vpoly && (arch_.loss == Loss::ce || arch_.loss == Loss::bce)) {
            // Rows c outer, examples q inner (contiguous, branch-free: vectorizes). expm1(+-v) = +-o + e with o, e
            // the odd and even parts of its series (to v^6: exact to rounding for |v| <= 2^-9).
            // ce:  log(sum_c p_c e^{v_c}) - log(sum_c p_c e^{-v_c}) - 2 y.v
            //      = log1p(So + Se) - log1p(Se - So) - 2 y.v = log1p(2 So / (1 + Se - So)) - 2 y.v
            // bce: per output, log1p(2 s o / (1 + s (e - o))) - 2 y v  (s = sigmoid(z))
            double* So = f.So.data();
            double* Se = f.Se.data();
            const bool ce = arch_.loss == Loss::ce;
            for (int q = 0; q < na; ++q) So[q] = Se[q] = 0.0;
            for (int c = 0; c < nL; ++c) {
                const double* __restrict g = Gs + size_t(c) * na;
                const double* __restrict p = P + size_t(c) * na;
                const double* __restrict y = f.Yq.data() + size_t(c) * na;
                if (ce) {
#pragma omp simd
                    for (int q = 0; q < na; ++q) {
                        const double v = g[q] * a[q], v2 = v * v;
                        So[q] += p[q] * (v + v * v2 * (1.0 / 6 + v2 * (1.0 / 120)));
                        Se[q] += p[q] * (v2 * (0.5 + v2 * (1.0 / 24 + v2 * (1.0 / 720))));
                    }
                } else {
#pragma omp simd
                    for (int q = 0; q < na; ++q) {
                        const double v = g[q] * a[q], v2 = v * v;
                        const double o = v + v * v2 * (1.0 / 6 + v2 * (1.0 / 120));
                        const double e = v2 * (0.5 + v2 * (1.0 / 24 + v2 * (1.0 / 720)));
                        So[q] += log1p_poly(2.0 * p[q] * o / (1.0 + p[q] * (e - o))) - 2.0 * y[q] * v;
                    }
                }
            }
            if (ce) {
#pragma omp simd reduction(+ : sum)
                for (int q = 0; q < na; ++q)
                    sum += log1p_poly(2.0 * So[q] / (1.0 + (Se[q] - So[q]))) - 2.0 * a[q] * YG[q];
            } else {
#pragma omp simd reduction(+ : sum)
                for (int q = 0; q < na; ++q) sum += So[q];
            }
            return sum;
        }
        // large |v| (large eps) or mse through a sigmoid: the scalar exact forms (libm where needed)
        double* v = tmp;
        double* neg = tmp + nL;
        for (int q = 0; q < na; ++q) {
            for (int c = 0; c < nL; ++c) v[c] = Gs[size_t(c) * na + q] * a[q];
            sum += loss_pair_scalar(f.act[q], v, neg);
        }
        return sum;
    }

    // log1p(x) for |x| <= 2^-7: the series to x^8 (remainder x^9/9: below 2^-60 relative there)
    static double log1p_poly(double x) {
        return x * (1.0 - x * (1.0 / 2 - x * (1.0 / 3 - x * (1.0 / 4 - x * (1.0 / 5 - x * (1.0 / 6 - x * (1.0 / 7 - x * (1.0 / 8))))))));
    }

    // all coordinates of unit (l, i): cs[0..B) (same l, i). Writes approx / flags of those it handles and
    // sets routed[b] for the others (kinks within reach: the general path does them).
    // Returns false when stopped (poll asked, or another thread saw it).
    bool fast_unit(const Coord* cs, size_t B, double eps, double* approx, uint8_t* flags, uint8_t* routed,
                   FastScratch& f, const Poll* poll, const std::atomic<bool>& stop) const {
        const int l = cs[0].l, i = cs[0].i, mm = m_;
        fast_prepare(l, i, eps, f);
        const bool kinks = has_kinks(arch_.hidden);
        const int na = int(f.act.size());
        const double inv = 1.0 / (2.0 * eps * mm);
        const double* T = f.T.data();
        const double* gmax = f.gmax.data();
        const int* actk = f.act.data();
        double* a = f.a.data();
        for (size_t b = 0; b < B; ++b) {
            if (b % 2048 == 2047) {
                if (stop.load(std::memory_order_relaxed)) return false;
                if (poll && (*poll)()) return false;
            }
            const Coord& c = cs[b];
            const double* ar = c.j < 0 ? nullptr : act(l - 1) + size_t(c.j) * mm;
            if (kinks) {
                int bad = 0;
                if (ar) {
#pragma omp simd reduction(| : bad)
                    for (int k = 0; k < mm; ++k) bad |= int(eps * std::fabs(ar[k]) >= T[k]) & int(ar[k] != 0.0);
                } else {
#pragma omp simd reduction(| : bad)
                    for (int k = 0; k < mm; ++k) bad |= int(eps >= T[k]);
                }
                if (bad) {
                    routed[b] = 1;
                    continue;
                }
            }
            double vmax = 0.0;
            if (ar) {
                for (int q = 0; q < na; ++q) a[q] = ar[actk[q]];
#pragma omp simd reduction(max : vmax)
                for (int q = 0; q < na; ++q) vmax = std::max(vmax, std::fabs(a[q]) * gmax[q]);
            } else {
                for (int q = 0; q < na; ++q) a[q] = 1.0;
#pragma omp simd reduction(max : vmax)
                for (int q = 0; q < na; ++q) vmax = std::max(vmax, gmax[q]);
            }
            const double s = fast_loss_sum(f, a, na, vmax, f.f.data());
            uint8_t fl = 0;
            approx[c.out] = s * inv + reg_term(c, eps, fl);
            flags[c.out] = fl;
        }
        return true;
    }

    // The general path: per-coordinate delta propagation with batched suffix GEMMs (any activation).
    bool general_coords(std::vector<Coord> cs, double eps, double* approx, uint8_t* flags, const Poll& poll) const {
        const int L = arch_.L();
        const size_t n = cs.size();
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

    double loss_delta_unit_or_col(int i, int c, double d) const { return loss_delta_unit(i, c, d); }
};

}  // namespace dnnkit
