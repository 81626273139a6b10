// The general path of the gradient checker: per-coordinate delta propagation with batched suffix GEMMs, for
// any activation. Coordinates are grouped by layer and cut into batches whose size depends only on the
// sizes; a batch perturbs row i of Z[l] for each of its coordinates (both signs side by side) and carries
// the deltas through the layers above as wide GEMMs. Part of the gradient checker (see ../gradcheck.hpp for the overview); GradChecker is declared in checker.hpp.
#pragma once
#include "checker.hpp"

namespace dnnkit {

inline bool GradChecker::general_coords(std::vector<Coord> cs, double eps, double* approx, uint8_t* flags, const Poll& poll) const {
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
    const int nb = int(batches.size());
    // Ctrl-C: polled by one thread only (the caller's, which may take the GIL); the others see the flag.
    return parallel_tasks<Scratch>(nb, poll, [&](int b, Scratch& sc, bool, const std::atomic<bool>&) {
        run_batch(cs.data() + batches[b].first, batches[b].second - batches[b].first, eps, approx, flags, sc);
        return true;
    });
}

inline void GradChecker::run_batch(const Coord* cs, size_t B, double eps, double* approx, uint8_t* flags, Scratch& sc) const {
    const int L = arch_.L(), l = cs[0].l, mm = m_;
    const double inv = 1.0 / (2.0 * eps * mm);
    if (l == L) {  // output layer: only row i of Z[L] changes; no products at all
        const double* Ap = act(L - 1);
        for (size_t b = 0; b < B; ++b) {
            const Coord& c = cs[b];
            double sp = 0.0, sn = 0.0;
            for (int e = 0; e < mm; ++e) {
                const double a = c.j < 0 ? 1.0 : Ap[size_t(c.j) * mm + e];
                sp += out_.unit(c.i, e, eps * a);
                sn += out_.unit(c.i, e, -eps * a);
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
            s[t] = out_.block(dZ + p * mm, size_t(ld), sc.e, sc.yd);
        }
        uint8_t f = uint8_t(sc.kink[2 * b] | sc.kink[2 * b + 1]);
        approx[c.out] = (s[0] - s[1]) * inv + reg_term(c, eps, f);
        flags[c.out] = f;
    }
}

}  // namespace dnnkit
