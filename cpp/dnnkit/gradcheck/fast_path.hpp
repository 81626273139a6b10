// The linear-region fast path of the gradient checker (relu / leaky_relu / linear hidden layers).
// Part of the gradient checker (see ../gradcheck.hpp for the overview); GradChecker is declared in checker.hpp.
#pragma once
#include "checker.hpp"

namespace dnnkit {

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

// The series (smooth.hpp, SmoothPath::pwl_unit): for the coordinates that pass the routing test above, the same
// centered difference from the loss's odd Taylor coefficients per (unit, example), (1/m) sum_k (c1_k a_k +
// eps^2 c3_k a_k^3), with a proven tail bound (a few fused sums over the examples per coordinate instead of the
// loss pair over n_L m terms). Where that bound fails (large eps, huge gains) the loss-pair form below does it.
// The routing test and so the kink flags are exactly the same with and without the series.

// Switch for tests and A/B timing (_core._set_pwl_series): false makes every fast coordinate take the loss-pair
// form (the fast path as it was before the series). Read once per coords() call.
inline std::atomic<bool>& pwl_series_flag() {
    static std::atomic<bool> on{true};
    return on;
}
inline bool pwl_series_enabled() { return pwl_series_flag().load(); }

struct GradChecker::FastScratch {
    std::vector<double> G, dZ, dA, dZa, dAa, Mg, T, Gs, P, Yq, YG, gmax, a, f, So, Se, X, GX, so;
    std::vector<int> act, js;
    std::vector<uint8_t> st;
    const SmoothPath* sp = nullptr;  // the series (nullptr: the loss-pair form for every coordinate)
    SmoothPath::Scratch ss;
    bool gathered = false;  // act, Gs, P, Yq, YG, gmax, a, So, Se, f are for this unit (fast_gather)
};

// the loss pair l(z + v) - l(z - v) of example k for the output change v[c] (stride 1); exact, any |v|
inline double GradChecker::loss_pair_scalar(int k, const double* v, double* neg) const {
    const int nL = arch_.n(arch_.L());
    for (int c = 0; c < nL; ++c) neg[c] = -v[c];
    return out_.col(k, v, 1) - out_.col(k, neg, 1);
}

// Prepares unit (l, i): G, margins, thresholds T (per example), the active examples (S[l][i,k] != 0) and the
// loss coefficients gathered on them (Gs = eps S G, output probabilities / sigmoids P, labels).
inline void GradChecker::fast_prepare(int l, int i, double eps, FastScratch& f) const {
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
    // the loss pairs' inputs: now, or (with the series) only if a coordinate needs them
    f.gathered = false;
    if (!f.sp) fast_gather(l, i, eps, f);
}

// The loss pairs' inputs for unit (l, i): the active examples (delta_k != 0 possible) and the loss coefficients
// gathered on them.
inline void GradChecker::fast_gather(int l, int i, double eps, FastScratch& f) const {
    const int L = arch_.L(), mm = m_, nL = arch_.n(L);
    const double* s = S_[l].data() + size_t(i) * mm;
    f.gathered = true;
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
inline void GradChecker::margin_row(int lp, int u, double aw, double* M) const {
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
inline void GradChecker::margin_block(int lp, const double* J, const double* Ja, double* M) const {
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
inline double GradChecker::fast_loss_sum(FastScratch& f, const double* a, int na, double vmax, double* tmp) const {
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

// all coordinates of unit (l, i): cs[0..B) (same l, i). Writes approx / flags of those it handles and
// sets routed[b] = 1 for the others (kinks within reach: the general path does them), 2 where the series did it.
// Returns false when stopped (poll asked, or another thread saw it).
inline bool GradChecker::fast_unit(const Coord* cs, size_t B, double eps, double* approx, uint8_t* flags, uint8_t* routed,
               FastScratch& f, const Poll* poll, const std::atomic<bool>& stop) const {
    const int l = cs[0].l, i = cs[0].i, mm = m_;
    fast_prepare(l, i, eps, f);
    const bool kinks = has_kinks(arch_.hidden);
    const double inv = 1.0 / (2.0 * eps * mm);
    const double* T = f.T.data();
    const uint8_t* st = nullptr;  // the series' verdicts: 0 done, 1 kink within reach, 2 the loss-pair form
    if (f.sp) {
        // the output Jacobian column per example, x = S[l][i,k] G[:,k] (as computed: the series expands the loss
        // along exactly this x, so |x| itself is the gain its tail bound needs; its rounding against the exact
        // Jacobian is the loss pairs' too)
        const int nL = arch_.n(arch_.L());
        const double* s = S_[l].data() + size_t(i) * mm;
        f.X.resize(size_t(nL) * mm);
        f.GX.resize(size_t(nL) * mm);
        for (int c = 0; c < nL; ++c)
            for (int k = 0; k < mm; ++k) {
                const size_t o = size_t(c) * mm + k;
                f.X[o] = s[k] * f.G[o];
                f.GX[o] = std::fabs(f.X[o]);
            }
        f.js.resize(B);
        f.so.resize(B);
        f.st.resize(B);
        for (size_t b = 0; b < B; ++b) f.js[b] = cs[b].j;
        if (stop.load(std::memory_order_relaxed)) return false;
        if (!f.sp->pwl_unit(l, eps, f.X.data(), f.GX.data(), T, f.js.data(), B, f.so.data(), f.st.data(), f.ss, poll))
            return false;
        st = f.st.data();
    }
    for (size_t b = 0; b < B; ++b) {
        if (b % 2048 == 2047) {
            if (stop.load(std::memory_order_relaxed)) return false;
            if (poll && (*poll)()) return false;
        }
        const Coord& c = cs[b];
        const double* ar = c.j < 0 ? nullptr : act(l - 1) + size_t(c.j) * mm;
        if (st && st[b] != 2) {
            if (st[b] == 1) {
                routed[b] = 1;
            } else {
                uint8_t fl = 0;
                approx[c.out] = f.so[b] + reg_term(c, eps, fl);
                flags[c.out] = fl;
                routed[b] = 2;  // done, by the series (counted in the stats)
            }
            continue;
        }
        if (kinks && !st) {
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
        if (!f.gathered) fast_gather(l, i, eps, f);
        const int na = int(f.act.size());
        const double* gmax = f.gmax.data();
        const int* actk = f.act.data();
        double* a = f.a.data();
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

}  // namespace dnnkit
