// Bindings of cpp/dnnkit/gradcheck.hpp: the native gradient-checking engine (float64 only, by design:
// a check in float32 would measure float32 rounding, not the gradient).
#include <climits>
#include <cmath>
#include <memory>
#include <mutex>
#include <string>

#include "dnnkit/gradcheck.hpp"
#include "problem.hpp"

using namespace dnnkit;

namespace {

using Arr = dnnkit_py::Arr<double>;  // no forcecast: dnnkit.gradient_check converts first
using IArr = py::array_t<int64_t, py::array::c_style>;

// One gradient-check problem (_core.GradcheckProblem): the network, theta, X, Y, dropout and regularization,
// validated once when it is built; the arrays are kept alive here while the GIL is released. The engine's
// cached unperturbed pass (GradChecker) is built on first use and shared by every later call on this problem
// (the Python layer calls the engine in chunks), so the problem's arrays must not change while it lives.
struct Problem {
    Arch arch;
    Arr theta, X, Y;
    std::vector<Arr> hold;
    Dropout<double> dp;
    int m = 0;
    double l2 = 0.0, l1 = 0.0;

    Problem(const std::vector<int>& dims, const std::string& hidden, const std::string& output,
            const std::string& loss, double alpha, Arr theta_, Arr X_, Arr Y_, const std::vector<double>& keep,
            uint64_t seed, uint32_t step, const py::list& masks, double l2_, double l1_)
        : arch(dnnkit_py::make_arch(dims, hidden, output, loss, alpha)), theta(std::move(theta_)), X(std::move(X_)),
          Y(std::move(Y_)), l2(l2_), l1(l1_) {
        dnnkit_py::check_theta(theta, arch);
        m = dnnkit_py::check_x(X, arch);
        dnnkit_py::check_y(Y, arch, m);
        dp = dnnkit_py::make_dropout(arch, keep, seed, step, masks, m, hold);
    }
    Problem(const Problem&) = delete;

    // The engine on this problem; call with the GIL released (the first call runs the cached forward pass).
    // grad != nullptr: also the network's analytic gradient (Network.backward's pass and bits) into grad; the
    // first call gets it from the cached pass itself (forward + backward, one forward), a later one by a backward.
    const GradChecker& checker(double* grad = nullptr) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!gc_) {
            gc_ = std::make_unique<GradChecker>(arch, theta.data(), X.data(), Y.data(), m, dp, l2, l1, grad);
        } else if (grad) {
            MLP<double> net(arch);
            net.backward(theta.data(), X.data(), Y.data(), m, dp, l2, l1, grad);
        }
        return *gc_;
    }

   private:
    std::mutex mu_;
    std::unique_ptr<GradChecker> gc_;
};

void check_eps(double eps) {
    if (!(eps > 0.0) || !std::isfinite(eps)) throw py::value_error("eps must be finite and > 0");
}

// Ctrl-C: the engine calls this from the caller's thread only (OpenMP thread 0); it takes the GIL briefly.
bool poll_signals() { return dnnkit_py::interrupted(); }

py::tuple coords(Problem& p, double eps, const IArr& idx, bool fast_path, bool stats) {
    if (idx.ndim() != 1) throw py::value_error("indices must be 1-D");
    check_eps(eps);
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
        // Releasing the GIL is safe: every array is owned by this frame (approx, flags) or by the problem p, which
        // the caller's reference keeps alive; the engine reads and writes only raw buffers; Python is re-entered
        // only through poll_signals, which re-acquires the GIL.
        py::gil_scoped_release nogil;
        const GradChecker& gc = p.checker();
        J0 = gc.cost();
        done = gc.coords(ix, n, eps, a, f, poll_signals, fast_path, &st);
    }
    if (!done) throw py::error_already_set();  // the KeyboardInterrupt set by PyErr_CheckSignals
    if (stats) {
        py::dict d;
        d["fast"] = st.fast;
        d["general"] = st.general;
        d["routed"] = st.routed;
        d["series"] = st.series;
        return py::make_tuple(approx, flags, J0, d);
    }
    return py::make_tuple(approx, flags, J0);
}

// Runs `check(gc, approx, kinks)` for K directions on a GradChecker of problem p with the GIL released;
// returns (approx, kinks, J0). Shared by the two direction layouts below.
// with_grad: (approx, kinks, J0, grad) with the network's analytic gradient from the same pass (Problem::checker).
template <class F>
py::tuple run_directions(Problem& p, double eps, int K, F&& check, bool with_grad = false) {
    check_eps(eps);
    Arr approx(std::vector<py::ssize_t>{K});
    py::array_t<int64_t> kinks(std::vector<py::ssize_t>{K});
    Arr grad(std::vector<py::ssize_t>{with_grad ? py::ssize_t(p.arch.nparams) : 0});
    double* a = approx.mutable_data();
    int64_t* kk = kinks.mutable_data();
    bool done = true;
    double J0 = 0.0;
    {
        py::gil_scoped_release nogil;  // safe: as in coords
        const GradChecker& gc = p.checker(with_grad ? grad.mutable_data() : nullptr);
        J0 = gc.cost();
        done = check(gc, a, kk);
    }
    if (!done) throw py::error_already_set();
    if (with_grad) return py::make_tuple(approx, kinks, J0, grad);
    return py::make_tuple(approx, kinks, J0);
}

py::tuple directions(Problem& p, double eps, const Arr& dirs) {
    if (dirs.ndim() != 2 || size_t(dirs.shape(1)) != p.arch.nparams)
        throw py::value_error("directions must be (K, n_params)");
    if (dirs.shape(0) > INT_MAX / 2) throw py::value_error("too many directions");
    const int K = int(dirs.shape(0));
    return run_directions(p, eps, K, [&](const GradChecker& gc, double* a, int64_t* kk) {
        return gc.directions(dirs.data(), K, eps, a, kk, poll_signals);
    });
}

// One direction per component and row: V is (r, n_params); direction (c, t) is row t of V restricted to component c
// (W1, b1, W2, b2, ... in theta's order). Results are ordered component-major: index c*r + t.
py::tuple component_directions(Problem& p, double eps, const Arr& V, bool with_grad) {
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
    return run_directions(p, eps, K, [&](const GradChecker& gc, double* a, int64_t* kk) {
        return gc.directions(rows.data(), wpart.data(), bpart.data(), K, eps, a, kk, poll_signals);
    }, with_grad);
}

// dk.gradcheck(mode="directional") in one call: r random unit directions per component drawn natively from `seed`
// (GradChecker::draw_directions), g . d with the given gradient (grads: (n_params,) float64) or, grads None, with
// the network's own gradient from the engine's cached pass (one forward), and the directional differences.
// -> (approx, kinks, J0, gd, V, g), index c*r + t as in component_directions; V (r, n_params) the directions.
py::tuple directional(Problem& p, double eps, int r, uint64_t seed, const py::object& grads) {
    check_eps(eps);
    const int L = p.arch.L();
    if (r < 1 || r > INT_MAX / (4 * L)) throw py::value_error("n_directions out of range");
    const size_t N = p.arch.nparams;
    Arr gin;
    const bool given = !grads.is_none();
    if (given) {
        gin = grads.cast<Arr>();
        if (gin.ndim() != 1 || size_t(gin.shape(0)) != N) throw py::value_error("grads must be (n_params,)");
    }
    const int K = 2 * L * r;
    Arr approx(std::vector<py::ssize_t>{K}), gd(std::vector<py::ssize_t>{K});
    py::array_t<int64_t> kinks(std::vector<py::ssize_t>{K});
    Arr V({py::ssize_t(r), py::ssize_t(N)});
    Arr gout(std::vector<py::ssize_t>{given ? 0 : py::ssize_t(N)});
    double* a = approx.mutable_data();
    int64_t* kk = kinks.mutable_data();
    double* v = V.mutable_data();
    double* gdp = gd.mutable_data();
    double* go = given ? nullptr : gout.mutable_data();
    const double* g = given ? gin.data() : go;
    std::vector<const double*> rows(static_cast<size_t>(K));
    std::vector<uint8_t> wpart(size_t(K) * (L + 1), 0), bpart(size_t(K) * (L + 1), 0);
    for (int c = 0; c < 2 * L; ++c)
        for (int t = 0; t < r; ++t) {
            const int k = c * r + t, l = c / 2 + 1;
            rows[size_t(k)] = v + size_t(t) * N;
            (c % 2 == 0 ? wpart : bpart)[size_t(k) * (L + 1) + l] = 1;
        }
    bool done = true;
    double J0 = 0.0;
    {
        py::gil_scoped_release nogil;  // safe: as in coords (every array is owned by this frame or by p)
        const GradChecker& gc = p.checker(go);
        J0 = gc.cost();
        done = gc.draw_directions(seed, r, g, v, gdp, poll_signals) &&
               gc.directions(rows.data(), wpart.data(), bpart.data(), K, eps, a, kk, poll_signals);
    }
    if (!done) throw py::error_already_set();
    return py::make_tuple(approx, kinks, J0, gd, V, given ? py::object(gin) : py::object(gout));
}

// Test-only access to the pure numerics of gradcheck/numerics.hpp (tests/test_gc_numerics.py).
void bind_numerics(py::module_ sub) {
    sub.def("act_delta", [](const std::string& act, double z, double d, double alpha) {
        const Act a = parse_act(act);
        double gz = 0.0;
        act_forward(a, &z, &gz, 1, alpha);
        bool crossed = false;
        const double v = act_delta(a, z, gz, d, alpha, crossed);
        return py::make_tuple(v, crossed);
    });
    sub.def("expm1_fast", &expm1_fast);
    sub.def("log1p_fast", &log1p_fast);
    sub.def("log1p_poly", &log1p_poly);
    sub.def("abs_diff", &abs_diff);
    // (unit[i, c], col[c], block): the loss change when only unit i of example c changes by D[i, c]; when
    // every unit of example c changes by D[:, c]; and the sum of the latter over the examples.
    sub.def("loss_delta", [](const std::string& loss, const std::string& output, const Arr& Z, const Arr& G,
                             const Arr& Y, const Arr& D) {
        if (Z.ndim() != 2 || G.ndim() != 2 || Y.ndim() != 2 || D.ndim() != 2) throw py::value_error("2-D arrays");
        const int nL = int(Z.shape(0)), mm = int(Z.shape(1));
        for (const Arr* a : {&G, &Y, &D})
            if (a->shape(0) != nL || a->shape(1) != mm) throw py::value_error("Z, G, Y, D must have one shape");
        const OutputLoss ol{parse_loss(loss), parse_act(output), nL, mm, Z.data(), G.data(), Y.data()};
        Arr unit({nL, mm});
        Arr col(std::vector<py::ssize_t>{mm});
        for (int i = 0; i < nL; ++i)
            for (int c = 0; c < mm; ++c) unit.mutable_data()[size_t(i) * mm + c] = ol.unit(i, c, D.data()[size_t(i) * mm + c]);
        for (int c = 0; c < mm; ++c) col.mutable_data()[c] = ol.col(c, D.data() + c, size_t(mm));
        std::vector<double> e, yd;
        const double block = ol.block(D.data(), size_t(mm), e, yd);
        return py::make_tuple(unit, col, block);
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
    m.def(
        "_set_pwl_series",
        [](bool on) { return dnnkit::pwl_series_flag().exchange(on); },
        py::arg("on"),
        "Test / benchmark switch: False makes the relu / leaky_relu / linear fast path use its exact loss pairs for\n"
        "every coordinate (as before the series, smooth.hpp); True (the default) the series where its bound holds.\n"
        "Returns the previous setting. The numbers agree to rounding; the kink flags and routing are the same.");
    bind_numerics(m.def_submodule("gc_numerics", "test-only: the gradient checker's pure numerics"));
    py::class_<Problem>(m, "GradcheckProblem",
                        "One gradient-check problem, validated once: the network, theta, X, Y, dropout, l2/l1.")
        .def(py::init<const std::vector<int>&, const std::string&, const std::string&, const std::string&, double, Arr,
                      Arr, Arr, const std::vector<double>&, uint64_t, uint32_t, const py::list&, double, double>(),
             py::arg("dims"), py::arg("hidden"), py::arg("output"), py::arg("loss"), py::arg("alpha"), py::arg("theta"),
             py::arg("X"), py::arg("Y"), py::arg("keep") = std::vector<double>{}, py::arg("seed") = 0,
             py::arg("step") = 0, py::arg("masks") = py::list(), py::arg("l2") = 0.0, py::arg("l1") = 0.0)
        .def_property_readonly("n_params", [](const Problem& p) { return p.arch.nparams; })
        .def_property_readonly("m", [](const Problem& p) { return p.m; });
    m.def("gradcheck_coords", &coords, py::arg("problem"), py::arg("eps"), py::arg("indices"),
          py::arg("fast_path") = true, py::arg("stats") = false,
          "Centered differences for flat coordinates -> (approx, kink_flags, J0[, stats]). Flags: 1 activation kink,\n"
          "2 L1 kink. fast_path=False forces the general delta-propagation path for every coordinate (the exact\n"
          "linear-region shortcut for relu/leaky_relu/linear hidden layers is otherwise used where no kink is within\n"
          "reach). stats=True also returns {'fast', 'general', 'routed', 'series'}: coordinates done by each path,\n"
          "those the fast path handed to the general one, and those of 'fast' done by a series (smooth.hpp).");
    m.def("gradcheck_directions", &directions, py::arg("problem"), py::arg("eps"), py::arg("directions"),
          "Centered directional differences (J(t+e d) - J(t-e d)) / 2e for each row d -> (approx, kinks, J0).");
    m.def("gradcheck_directional", &directional, py::arg("problem"), py::arg("eps"), py::arg("n_directions"),
          py::arg("seed"), py::arg("grads") = py::none(),
          "dk.gradcheck(mode='directional') in one native call: n_directions random unit directions per component\n"
          "(W1, b1, W2, ...) drawn from seed (Philox4x32-10 + ziggurat), g . d with grads (None: the network's own\n"
          "gradient from the engine's cached pass) and the directional differences -> (approx, kinks, J0, gd, V, g);\n"
          "index c*r + t; V (r, n_params): row t holds the t-th direction of every component.");
    m.def("gradcheck_component_directions", &component_directions, py::arg("problem"), py::arg("eps"), py::arg("V"),
          py::arg("with_grad") = false,
          "Directional differences along row t of V restricted to each component c (W1, b1, W2, ...): one native\n"
          "call for all 2L*r directions, no dense direction matrix -> (approx, kinks, J0), index c*r + t.\n"
          "with_grad=True: (approx, kinks, J0, grad), grad the network's analytic gradient (Network.backward's\n"
          "pass and bits), from the engine's own cached pass when it is the problem's first call (one forward).");
}
