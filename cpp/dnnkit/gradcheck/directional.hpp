// Directional mode of the gradient checker: (J(theta + eps d) - J(theta - eps d)) / 2eps along directions d,
// grouped by their first layer l0, both signs of all of them side by side as one wide block, nothing below l0
// recomputed. Part of the gradient checker (see ../gradcheck.hpp for the overview); GradChecker is declared in checker.hpp.
#pragma once
#include "checker.hpp"

namespace dnnkit {

inline bool GradChecker::directions(const double* dirs, int K, double eps, double* approx, int64_t* nkinks, const Poll& poll) const {
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

inline bool GradChecker::directions(const double* const* rows, const uint8_t* wnz, const uint8_t* bnz, int K, double eps,
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
    const int nc = int(chunks.size());
    const bool done = parallel_tasks<DirScratch>(nc, poll, [&](int ci, DirScratch& ds, bool, const std::atomic<bool>&) {
            Scratch& sc = ds.sc;
            std::vector<double>&bufZ = ds.bufZ, &bufA = ds.bufA, &base = ds.base, &tmp = ds.tmp;
            std::vector<int64_t>& cnt = ds.cnt;
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
                    part[size_t(2) * ks[t] + s] = out_.block(dZ + size_t(2 * t + s) * mm, size_t(ld), sc.e, sc.yd);
                    kk[size_t(2) * ks[t] + s] = cnt[size_t(2 * t + s)];
                }
            return true;
        });
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
    return done;
}

}  // namespace dnnkit
