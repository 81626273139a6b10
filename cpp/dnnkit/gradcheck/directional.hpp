// Directional mode of the gradient checker: (J(theta + eps d) - J(theta - eps d)) / 2eps along directions d,
// grouped by their first layer l0, both signs of all of them side by side as one wide block, nothing below l0
// recomputed. Part of the gradient checker (see ../gradcheck.hpp for the overview); GradChecker is declared in checker.hpp.
#pragma once
#include "checker.hpp"
#include "normals.hpp"

namespace dnnkit {

inline bool GradChecker::draw_directions(uint64_t seed, int r, const double* g, double* V, double* gd,
                                         const Poll& poll) const {
    const int L = arch_.L();
    const size_t N = arch_.nparams;
    struct Block {
        int c, t;
        size_t start, b0, b1;  // component start in theta; the block's entries [b0, b1)
        uint32_t index;        // block number within the component
    };
    std::vector<Block> blocks;
    for (int c = 0; c < 2 * L; ++c) {
        const int l = c / 2 + 1;
        const size_t start = c % 2 == 0 ? arch_.woff[l] : arch_.boff[l];
        const size_t size = c % 2 == 0 ? size_t(arch_.n(l)) * arch_.n(l - 1) : size_t(arch_.n(l));
        for (int t = 0; t < r; ++t)
            for (size_t b0 = 0, q = 0; b0 < size; b0 += dir_draw_block, ++q)
                blocks.push_back({c, t, start, start + b0, start + std::min(size, b0 + dir_draw_block), uint32_t(q)});
    }
    const int nb = int(blocks.size());
    std::vector<double> part(size_t(nb), 0.0);
    const Ziggurat& zig = Ziggurat::get();
    if (!parallel_tasks<int>(nb, poll, [&](int q, int&, bool, const std::atomic<bool>&) {
            const Block& b = blocks[size_t(q)];
            double* v = V + size_t(b.t) * N + b.b0;
            const int n = int(b.b1 - b.b0);
            zig.fill(seed, (uint64_t(uint32_t(b.t)) << 40) ^ (uint64_t(uint32_t(b.c)) << 24) ^ b.index, n, v);
            double ss = 0.0;
            for (int k = 0; k < n; ++k) ss += v[k] * v[k];
            part[size_t(q)] = ss;
            return true;
        }))
        return false;
    std::vector<double> norm(size_t(2 * L) * r, 0.0);
    for (int q = 0; q < nb; ++q) norm[size_t(blocks[q].c) * r + blocks[q].t] += part[size_t(q)];  // block order
    for (double& x : norm) x = std::sqrt(x);
    if (!parallel_tasks<int>(nb, poll, [&](int q, int&, bool, const std::atomic<bool>&) {
            const Block& b = blocks[size_t(q)];
            double* v = V + size_t(b.t) * N + b.b0;
            const double* gg = g + b.b0;
            const int n = int(b.b1 - b.b0);
            const double nr = norm[size_t(b.c) * r + b.t];
            double dot = 0.0;
            for (int k = 0; k < n; ++k) {
                v[k] /= nr;
                dot += v[k] * gg[k];
            }
            part[size_t(q)] = dot;
            return true;
        }))
        return false;
    std::fill(gd, gd + size_t(2 * L) * r, 0.0);
    for (int q = 0; q < nb; ++q) gd[size_t(blocks[q].c) * r + blocks[q].t] += part[size_t(q)];
    return true;
}

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
    // [s, e) into order, same l0, at most gmax directions, and a group of several directions in at least two
    // chunks (W1 and b1 of one row apart: the suffix of the largest group is shared by two threads; sizes only)
    std::vector<std::pair<int, int>> chunks;
    for (int gs = 0; gs < K;) {  // the group [gs, ge) of one l0
        int ge = gs;
        while (ge < K && l0[order[ge]] == l0[order[gs]]) ++ge;
        const int cap = std::max(1, std::min(gmax, (ge - gs + 1) / 2));
        if (l0[order[gs]] <= L)
            for (int s = gs; s < ge; s += cap) chunks.emplace_back(s, std::min(ge, s + cap));
        gs = ge;
    }
    std::vector<double> part(size_t(2) * K, 0.0);
    std::vector<int64_t> kk(size_t(2) * K, 0);
    // Phase 1: the l0 products D_W[l0] A[l0-1] (nl x m) of the directions, each cut into column pieces of about
    // dir_piece_flops, so that one large product (W1 of a wide input: most of the flops of a directional check) is
    // shared by the threads instead of leaving them idle; cut by sizes only. Skipped (the products are then formed
    // inside phase 2) when they would take more than dir_pre_doubles of memory.
    std::vector<size_t> boff(size_t(K), SIZE_MAX);
    size_t total = 0;
    for (int k = 0; k < K; ++k)
        if (l0[k] <= L && wnz[size_t(k) * (L + 1) + l0[k]]) {
            boff[k] = total;
            total += size_t(arch_.n(l0[k])) * mm;
        }
    const bool pre = total > 0 && total <= dir_pre_doubles;
    std::unique_ptr<double[]> preb(pre ? new double[total] : nullptr);  // every element written by a piece
    struct Piece {
        int k, c0, c1;
    };
    std::vector<Piece> pieces;
    if (pre)
        for (int k = 0; k < K; ++k) {
            if (boff[k] == SIZE_MAX) continue;
            const double flops = 2.0 * arch_.n(l0[k]) * arch_.n(l0[k] - 1) * mm;
            int parts = 1;
            while (parts * 2 <= mm / 32 && flops / (parts * 2) >= dir_piece_flops) parts *= 2;
            const int w = ((mm + parts - 1) / parts + 7) / 8 * 8;
            for (int c0 = 0; c0 < mm; c0 += w) pieces.push_back({k, c0, std::min(mm, c0 + w)});
        }
    // and, as task 0, the tanh / sigmoid polynomial deltas' preparation (one thread's work, ~an l0 product)
    const int t0 = poly_wanted_ ? 1 : 0;
    if (!pieces.empty() &&
        !parallel_tasks<int>(int(pieces.size()) + t0, poll, [&](int pi, int&, bool, const std::atomic<bool>&) {
            if (pi < t0) {
                init_poly();
                return true;
            }
            const Piece& pc = pieces[size_t(pi - t0)];
            const int lz = l0[pc.k], nl = arch_.n(lz), np = arch_.n(lz - 1);
            gemm(false, false, nl, pc.c1 - pc.c0, np, 1.0, rows[pc.k] + arch_.woff[lz], np, act(lz - 1) + pc.c0, mm,
                 0.0, preb.get() + boff[pc.k] + pc.c0, mm);
            return true;
        }))
        return false;
    const int nc = int(chunks.size());
    const bool done = parallel_tasks<DirScratch>(nc, poll, [&](int ci, DirScratch& ds, bool, const std::atomic<bool>&) {
            Scratch& sc = ds.sc;
            std::vector<double>&base = ds.base, &tmp = ds.tmp;
            std::vector<int64_t>& cnt = ds.cnt;
            const int* ks = order.data() + chunks[ci].first;
            const int g = chunks[ci].second - chunks[ci].first, lz = l0[ks[0]];
            const int NP = 2 * g, ld = NP * mm;
            size_t big = 0;
            for (int l = lz; l <= L; ++l) big = std::max(big, size_t(arch_.n(l)) * ld);
            double* const Zb = ds.bufZ.get(big);  // layer l0 writes every block (uninitialized: no memset)
            double* const Ab = ds.bufA.get(big);  // hidden_delta writes every block before a GEMM reads it
            cnt.assign(size_t(NP), 0);
            // layer l0: dZ = +-eps (D_W A[l0-1] + D_b), one product for both signs
            {
                const int nl = arch_.n(lz), np = arch_.n(lz - 1);
                base.resize(size_t(nl) * mm);
                for (int t = 0; t < g; ++t) {
                    const double* d = rows[ks[t]];
                    const size_t f = size_t(ks[t]) * (L + 1) + lz;
                    const double* bp = base.data();
                    if (wnz[f] && pre)
                        bp = preb.get() + boff[ks[t]];
                    else if (wnz[f])
                        gemm(false, false, nl, mm, np, 1.0, d + arch_.woff[lz], np, act(lz - 1), mm, 0.0,
                             base.data(), mm);
                    else
                        std::fill(base.begin(), base.end(), 0.0);
                    const double* db = d + arch_.boff[lz];
                    for (int r = 0; r < nl; ++r) {
                        const double bb = bnz[f] ? db[r] : 0.0;
                        const double* br = bp + size_t(r) * mm;
                        double* zp = Zb + size_t(r) * ld + size_t(2 * t) * mm;
                        double* zn = zp + mm;
                        for (int c = 0; c < mm; ++c) {
                            const double v = eps * (br[c] + bb);
                            zp[c] = v;
                            zn[c] = -v;
                        }
                    }
                }
            }
            double* dZ = Zb;
            double* dA = Ab;
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
