// The gradient checker's dispatcher: coords() sends each coordinate to the fast path (fast_path.hpp: relu /
// leaky_relu / linear; inside it the series of smooth.hpp where its bound holds) or the smooth path (smooth.hpp: tanh / sigmoid) when it can, the others, and those a fast
// path routes back, to the general path (general.hpp).
// Part of the gradient checker (see ../gradcheck.hpp for the overview); GradChecker is declared in checker.hpp.
#pragma once
#include <memory>

#include "checker.hpp"
#include "fast_path.hpp"
#include "general.hpp"
#include "smooth.hpp"

namespace dnnkit {

inline bool GradChecker::coords(const int64_t* idx, size_t n, double eps, double* approx, uint8_t* flags, const Poll& poll,
            bool fast_path, Stats* stats) const {
    const int L = arch_.L();
    std::vector<Coord> cs(n);
    for (size_t k = 0; k < n; ++k) cs[k] = locate(idx[k], k);
    Stats st;
    if (fast_path && SmoothPath::applies(arch_)) return smooth_dispatch(std::move(cs), eps, approx, flags, poll, stats);
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
    const int nu = int(units.size());
    std::unique_ptr<SmoothPath> sp;  // the series for the coordinates the routing test lets through (fast_path.hpp)
    if (pwl_series_enabled() && !fast.empty()) sp = std::make_unique<SmoothPath>(smooth_view());
    const bool done = parallel_tasks<FastScratch>(
        nu, poll, [&](int u, FastScratch& fs, bool poller, const std::atomic<bool>& stop) {
            fs.sp = sp.get();
            // a unit with many coordinates (wide inputs) also polls between them, on the polling thread only
            return fast_unit(fast.data() + units[u].first, units[u].second - units[u].first, eps, approx, flags,
                             routed.data() + units[u].first, fs, poller ? &poll : nullptr, stop);
        });
    if (!done) return false;
    for (size_t k = 0; k < fast.size(); ++k) {
        if (routed[k] == 1) {
            rest.push_back(fast[k]);
            ++st.routed;
        } else {
            ++st.fast;
            st.series += routed[k] == 2;
        }
    }
    st.general = int64_t(rest.size());
    if (stats) *stats = st;
    return general_coords(std::move(rest), eps, approx, flags, poll);
}

// the cached pass as the series sees it (smooth.hpp)
inline SmoothPath::View GradChecker::smooth_view() const {
    const int L = arch_.L();
    SmoothPath::View v;
    v.arch = &arch_;
    v.theta = theta_;
    v.Y = Y_;
    v.m = m_;
    for (int l = 0; l <= L; ++l) {
        v.Z.push_back(l ? Z_[l].data() : nullptr);
        v.G.push_back(l ? G_[l].data() : nullptr);
        v.D.push_back(D_[l].empty() ? nullptr : D_[l].data());
        v.A.push_back(l < L ? act(l) : nullptr);
    }
    return v;
}

// Smooth coordinates count as "fast" (and "series") in the stats.
inline bool GradChecker::smooth_dispatch(std::vector<Coord> cs, double eps, double* approx, uint8_t* flags,
                                         const Poll& poll, Stats* stats) const {
    const int L = arch_.L();
    const SmoothPath::View v = smooth_view();
    std::vector<Coord> hid, rest;
    for (const Coord& c : cs) (c.l < L ? hid : rest).push_back(c);
    Stats st;
    if (!hid.empty()) {
        const SmoothPath sp(v);
        std::vector<uint8_t> routed(hid.size(), 0);
        if (!smooth_coords(sp, hid.data(), hid.size(), eps, approx, routed.data(), poll)) return false;
        for (size_t q = 0; q < hid.size(); ++q) {
            if (routed[q]) {
                rest.push_back(hid[q]);
                ++st.routed;
                continue;
            }
            uint8_t fl = 0;
            approx[hid[q].out] += reg_term(hid[q], eps, fl);
            flags[hid[q].out] = fl;
            ++st.fast;
            ++st.series;
        }
    }
    st.general = int64_t(rest.size());
    if (stats) *stats = st;
    return general_coords(std::move(rest), eps, approx, flags, poll);
}

}  // namespace dnnkit
