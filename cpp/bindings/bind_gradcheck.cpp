// Bindings of cpp/dnnkit/gradcheck.hpp: the native gradient-checking engine (float64 only, by design:
// a check in float32 would measure float32 rounding, not the gradient).
#include <climits>
#include <memory>
#include <string>

#include "dnnkit/gradcheck.hpp"
#include "pybind11.hpp"

using namespace dnnkit;

namespace {

using Arr = py::array_t<double, py::array::c_style>;  // no forcecast: dnnkit.gradient_check converts first
using IArr = py::array_t<int64_t, py::array::c_style>;

// Everything one check needs, with the arrays kept alive while the GIL is released.
struct Problem {
    Arch arch;
    Arr theta, X, Y;
    std::vector<Arr> hold;
    Dropout<double> dp;
    int m = 0;
    double l2 = 0.0, l1 = 0.0;
};

Problem make_problem(const std::vector<int>& dims, const std::string& hidden, const std::string& output,
                     const std::string& loss, double alpha, const Arr& theta, const Arr& X, const Arr& Y,
                     const std::vector<double>& keep, uint64_t seed, uint32_t step, const py::list& masks, double l2,
                     double l1) {
    Problem p;
    p.arch = Arch(dims, parse_act(hidden), parse_act(output), parse_loss(loss), alpha);
    if (theta.ndim() != 1 || size_t(theta.shape(0)) != p.arch.nparams)
        throw py::value_error("theta has the wrong size for this architecture");
    if (X.ndim() != 2 || X.shape(0) != p.arch.n(0) || X.shape(1) < 1) throw py::value_error("X must be (n_x, m)");
    p.m = dnnkit_py::check_columns(X.shape(1), "X");
    if (Y.ndim() != 2 || Y.shape(0) != p.arch.n(p.arch.L()) || Y.shape(1) != p.m)
        throw py::value_error("Y must be (n_y, m)");
    if (int(keep.size()) > p.arch.L()) throw py::value_error("keep has more entries than layers");
    dnnkit_py::check_keep(keep);
    if (masks.size() > size_t(p.arch.L())) throw py::value_error("masks has more entries than layers");
    p.theta = theta;
    p.X = X;
    p.Y = Y;
    p.dp.keep = keep;
    p.dp.seed = seed;
    p.dp.step = step;
    for (size_t l = 0; l < masks.size(); ++l) {
        if (masks[l].is_none()) {
            p.dp.masks.push_back(nullptr);
            continue;
        }
        Arr a = masks[l].cast<Arr>();
        if (a.ndim() != 2 || a.shape(0) != p.arch.n(int(l)) || a.shape(1) != p.m)
            throw py::value_error("mask " + std::to_string(l) + " has the wrong shape");
        p.dp.masks.push_back(a.data());
        p.hold.push_back(std::move(a));
    }
    p.l2 = l2;
    p.l1 = l1;
    return p;
}

// Ctrl-C: the engine calls this from the caller's thread only (OpenMP thread 0); it takes the GIL briefly.
bool poll_signals() { return dnnkit_py::interrupted(); }

py::tuple coords(const std::vector<int>& dims, const std::string& hidden, const std::string& output,
                 const std::string& loss, double alpha, const Arr& theta, const Arr& X, const Arr& Y,
                 const std::vector<double>& keep, uint64_t seed, uint32_t step, const py::list& masks, double l2,
                 double l1, double eps, const IArr& idx, bool fast_path, bool stats) {
    Problem p = make_problem(dims, hidden, output, loss, alpha, theta, X, Y, keep, seed, step, masks, l2, l1);
    if (idx.ndim() != 1) throw py::value_error("indices must be 1-D");
    if (!(eps > 0.0) || !std::isfinite(eps)) throw py::value_error("eps must be finite and > 0");
    const size_t n = size_t(idx.shape(0));
    Arr approx(std::vector<py::ssize_t>{py::ssize_t(n)});
    py::array_t<uint8_t> flags(std::vector<py::ssize_t>{py::ssize_t(n)});
    double* a = approx.mutable_data();
    uint8_t* f = flags.mutable_data();
    const int64_t* ix = idx.data();
    for (size_t k = 0; k < n; ++k)
        if (ix[k] < 0 || size_t(ix[k]) >= p.arch.nparams) throw py::index_error("coordinate index out of range");
    bool done = true;
    double J0 = 0.0;
    GradChecker::Stats st;
    {
        // Releasing the GIL is safe: every array is owned by this frame (p, approx, flags) and the engine reads and
        // writes only raw buffers; Python is re-entered only through poll_signals, which re-acquires the GIL.
        py::gil_scoped_release nogil;
        GradChecker gc(p.arch, p.theta.data(), p.X.data(), p.Y.data(), p.m, p.dp, p.l2, p.l1);
        J0 = gc.cost();
        done = gc.coords(ix, n, eps, a, f, poll_signals, fast_path, &st);
    }
    if (!done) throw py::error_already_set();  // the KeyboardInterrupt set by PyErr_CheckSignals
    if (stats) {
        py::dict d;
        d["fast"] = st.fast;
        d["general"] = st.general;
        d["routed"] = st.routed;
        return py::make_tuple(approx, flags, J0, d);
    }
    return py::make_tuple(approx, flags, J0);
}

// Runs `check(gc, approx, kinks)` for K directions on a GradChecker of problem p with the GIL released;
// returns (approx, kinks, J0). Shared by the two direction layouts below.
template <class F>
py::tuple run_directions(const Problem& p, double eps, int K, F&& check) {
    if (!(eps > 0.0) || !std::isfinite(eps)) throw py::value_error("eps must be finite and > 0");
    Arr approx(std::vector<py::ssize_t>{K});
    py::array_t<int64_t> kinks(std::vector<py::ssize_t>{K});
    double* a = approx.mutable_data();
    int64_t* kk = kinks.mutable_data();
    bool done = true;
    double J0 = 0.0;
    {
        py::gil_scoped_release nogil;  // safe: as in coords
        GradChecker gc(p.arch, p.theta.data(), p.X.data(), p.Y.data(), p.m, p.dp, p.l2, p.l1);
        J0 = gc.cost();
        done = check(gc, a, kk);
    }
    if (!done) throw py::error_already_set();
    return py::make_tuple(approx, kinks, J0);
}

py::tuple directions(const std::vector<int>& dims, const std::string& hidden, const std::string& output,
                     const std::string& loss, double alpha, const Arr& theta, const Arr& X, const Arr& Y,
                     const std::vector<double>& keep, uint64_t seed, uint32_t step, const py::list& masks, double l2,
                     double l1, double eps, const Arr& dirs) {
    Problem p = make_problem(dims, hidden, output, loss, alpha, theta, X, Y, keep, seed, step, masks, l2, l1);
    if (dirs.ndim() != 2 || size_t(dirs.shape(1)) != p.arch.nparams)
        throw py::value_error("directions must be (K, n_params)");
    if (dirs.shape(0) > INT_MAX / 2) throw py::value_error("too many directions");
    const int K = int(dirs.shape(0));
    return run_directions(p, eps, K, [&](GradChecker& gc, double* a, int64_t* kk) {
        return gc.directions(dirs.data(), K, eps, a, kk, poll_signals);
    });
}

// One direction per component and row: V is (r, n_params); direction (c, t) is row t of V restricted to component c
// (W1, b1, W2, b2, ... in theta's order). Results are ordered component-major: index c*r + t.
py::tuple component_directions(const std::vector<int>& dims, const std::string& hidden, const std::string& output,
                               const std::string& loss, double alpha, const Arr& theta, const Arr& X, const Arr& Y,
                               const std::vector<double>& keep, uint64_t seed, uint32_t step, const py::list& masks,
                               double l2, double l1, double eps, const Arr& V) {
    Problem p = make_problem(dims, hidden, output, loss, alpha, theta, X, Y, keep, seed, step, masks, l2, l1);
    if (V.ndim() != 2 || size_t(V.shape(1)) != p.arch.nparams) throw py::value_error("V must be (r, n_params)");
    if (V.shape(0) > INT_MAX / (4 * p.arch.L())) throw py::value_error("V has too many rows");
    const int L = p.arch.L(), r = int(V.shape(0)), K = 2 * L * r;
    std::vector<const double*> rows(static_cast<size_t>(K));
    std::vector<uint8_t> wpart(size_t(K) * (L + 1), 0), bpart(size_t(K) * (L + 1), 0);
    for (int c = 0; c < 2 * L; ++c)
        for (int t = 0; t < r; ++t) {
            const int k = c * r + t, l = c / 2 + 1;
            rows[size_t(k)] = V.data() + size_t(t) * p.arch.nparams;
            (c % 2 == 0 ? wpart : bpart)[size_t(k) * (L + 1) + l] = 1;
        }
    return run_directions(p, eps, K, [&](GradChecker& gc, double* a, int64_t* kk) {
        return gc.directions(rows.data(), wpart.data(), bpart.data(), K, eps, a, kk, poll_signals);
    });
}

}  // namespace

void bind_gradcheck(py::module_& m) {
    m.def(
        "simd_info",
        [] {
            py::dict d;
            d["detected"] = simd::name(simd::detected());
            d["active"] = simd::name(simd::level());
            py::list av;
            for (int l = 0; l <= simd::detected(); ++l) av.append(simd::name(l));
            d["available"] = av;
            return d;
        },
        "The SIMD paths of the native kernels: {'detected', 'active', 'available'} (names baseline, avx2, avx512).");
    m.def(
        "set_simd",
        [](const std::string& name) {
            const int l = name == "auto" ? -1 : simd::parse(name.c_str());
            if (l < 0 && name != "auto")
                throw py::value_error("simd must be 'auto', 'baseline', 'avx2' or 'avx512', got '" + name + "'");
            simd::force(l);
        },
        py::arg("name"),
        "Forces a SIMD path ('baseline', 'avx2', 'avx512'; one the CPU lacks falls back to the best below it) or\n"
        "'auto' (the best the CPU has). Every path gives the same bits; this is for tests and benchmarks.");
    m.def("gradcheck_coords", &coords, py::arg("dims"), py::arg("hidden"), py::arg("output"), py::arg("loss"),
          py::arg("alpha"), py::arg("theta"), py::arg("X"), py::arg("Y"), py::arg("keep"), py::arg("seed"),
          py::arg("step"), py::arg("masks"), py::arg("l2"), py::arg("l1"), py::arg("eps"), py::arg("indices"),
          py::arg("fast_path") = true, py::arg("stats") = false,
          "Centered differences for flat coordinates -> (approx, kink_flags, J0[, stats]). Flags: 1 activation kink,\n"
          "2 L1 kink. fast_path=False forces the general delta-propagation path for every coordinate (the exact\n"
          "linear-region shortcut for relu/leaky_relu/linear hidden layers is otherwise used where no kink is within\n"
          "reach). stats=True also returns {'fast', 'general', 'routed'}: coordinates done by each path, and those\n"
          "the fast path handed to the general one.");
    m.def("gradcheck_directions", &directions, py::arg("dims"), py::arg("hidden"), py::arg("output"),
          py::arg("loss"), py::arg("alpha"), py::arg("theta"), py::arg("X"), py::arg("Y"), py::arg("keep"),
          py::arg("seed"), py::arg("step"), py::arg("masks"), py::arg("l2"), py::arg("l1"), py::arg("eps"),
          py::arg("directions"),
          "Centered directional differences (J(t+e d) - J(t-e d)) / 2e for each row d -> (approx, kinks, J0).");
    m.def("gradcheck_component_directions", &component_directions, py::arg("dims"), py::arg("hidden"),
          py::arg("output"), py::arg("loss"), py::arg("alpha"), py::arg("theta"), py::arg("X"), py::arg("Y"),
          py::arg("keep"), py::arg("seed"), py::arg("step"), py::arg("masks"), py::arg("l2"), py::arg("l1"),
          py::arg("eps"), py::arg("V"),
          "Directional differences along row t of V restricted to each component c (W1, b1, W2, ...): one native\n"
          "call for all 2L*r directions, no dense direction matrix -> (approx, kinks, J0), index c*r + t.");
}
