// Bindings of the forward/backward core (cpp/dnnkit/mlp.hpp), the dropout RNG and the thread settings.
#include <algorithm>
#include <mutex>
#include <string>

#include "dnnkit/mlp.hpp"
#include "problem.hpp"

using namespace dnnkit;

namespace {

using dnnkit_py::Arr;

// Python-side owner of one MLP workspace. The mutex serialises calls from several Python threads, since
// the work runs with the GIL released and shares the workspace.
template <class T>
struct PyMLP {
    MLP<T> net;
    std::mutex mu;
    PyMLP(std::vector<int> dims, const std::string& hidden, const std::string& output, const std::string& loss,
          double alpha)
        : net(dnnkit_py::make_arch(std::move(dims), hidden, output, loss, alpha)) {}

    void check_theta(const Arr<T>& theta) const { dnnkit_py::check_theta(theta, net.arch); }
    int check_x(const Arr<T>& X) const { return dnnkit_py::check_x(X, net.arch); }
    void check_y(const Arr<T>& Y, int m) const { dnnkit_py::check_y(Y, net.arch, m); }
    Dropout<T> dropout(const std::vector<double>& keep, uint64_t seed, uint32_t step, const py::list& masks, int m,
                       std::vector<Arr<T>>& hold) const {
        return dnnkit_py::make_dropout(net.arch, keep, seed, step, masks, m, hold);
    }
};

py::array_t<uint8_t> dropout_mask(int n, int m, double keep, uint64_t seed, uint32_t step, uint32_t layer) {
    if (n < 0 || m < 0 || m > MAX_EXAMPLES) throw py::value_error("n and m must be >= 0 (and m <= 2^30)");
    dnnkit_py::check_keep({keep});
    py::array_t<uint8_t> out({n, m});
    uint8_t* p = out.mutable_data();
    {
        py::gil_scoped_release nogil;  // safe: writes only into `out`, which we own; no Python objects touched
        draw_keep_mask(seed, step, layer, n, m, keep, p);  // the one mask function the passes use (dropout.hpp)
    }
    return out;
}

template <class T>
void register_mlp(py::module_& m, const char* name) {
    using P = PyMLP<T>;
    py::class_<P>(m, name)
        .def(py::init<std::vector<int>, const std::string&, const std::string&, const std::string&, double>())
        .def_property_readonly("n_params", [](const P& p) { return p.net.arch.nparams; })
        .def("forward",
             [](P& p, const Arr<T>& theta, const Arr<T>& X, const std::vector<double>& keep, uint64_t seed,
                uint32_t step, const py::list& masks) {
                 p.check_theta(theta);
                 const int mm = p.check_x(X);
                 std::vector<Arr<T>> hold;
                 auto dp = p.dropout(keep, seed, step, masks, mm, hold);
                 const int L = p.net.arch.L();
                 Arr<T> out({p.net.arch.n(L), mm});
                 {
                     // Releasing the GIL is safe: the arrays are kept alive by this frame and `hold`, and the
                     // native code only reads/writes raw buffers and the workspace guarded by p.mu.
                     py::gil_scoped_release nogil;
                     std::lock_guard<std::mutex> lock(p.mu);
                     p.net.forward(theta.data(), X.data(), mm, dp);
                     std::copy(p.net.A[L].begin(), p.net.A[L].end(), out.mutable_data());
                 }
                 return out;
             })
        .def("cost",
             [](P& p, const Arr<T>& theta, const Arr<T>& X, const Arr<T>& Y, const std::vector<double>& keep,
                uint64_t seed, uint32_t step, const py::list& masks, double l2, double l1) {
                 p.check_theta(theta);
                 const int mm = p.check_x(X);
                 p.check_y(Y, mm);
                 std::vector<Arr<T>> hold;
                 auto dp = p.dropout(keep, seed, step, masks, mm, hold);
                 py::gil_scoped_release nogil;  // safe: see forward
                 std::lock_guard<std::mutex> lock(p.mu);
                 return p.net.forward(theta.data(), X.data(), mm, dp, Y.data(), l2, l1);
             })
        .def("backward",
             [](P& p, const Arr<T>& theta, const Arr<T>& X, const Arr<T>& Y, const std::vector<double>& keep,
                uint64_t seed, uint32_t step, const py::list& masks, double l2, double l1, const py::object& g_) {
                 p.check_theta(theta);
                 const int mm = p.check_x(X);
                 p.check_y(Y, mm);
                 Arr<T> grad = dnnkit_py::out_array<T>(g_, "grad");
                 if (grad.ndim() != 1 || size_t(grad.shape(0)) != p.net.arch.nparams)
                     throw py::value_error("grad buffer has the wrong size");
                 std::vector<Arr<T>> hold;
                 auto dp = p.dropout(keep, seed, step, masks, mm, hold);
                 T* g = grad.mutable_data();
                 py::gil_scoped_release nogil;  // safe: see forward
                 std::lock_guard<std::mutex> lock(p.mu);
                 return p.net.backward(theta.data(), X.data(), Y.data(), mm, dp, l2, l1, g);
             })
        .def("cache",
             [](P& p) {
                 // Copies of Z[l] and A[l] of the last forward pass (A0 only when the input was dropped out).
                 std::lock_guard<std::mutex> lock(p.mu);
                 py::dict d;
                 const int L = p.net.arch.L(), mm = p.net.m;
                 if (mm == 0) return d;
                 for (int l = 0; l <= L; ++l) {
                     const int nl = p.net.arch.n(l);
                     if (l > 0) {
                         Arr<T> z({nl, mm});
                         std::copy(p.net.Z[l].begin(), p.net.Z[l].end(), z.mutable_data());
                         d[("Z" + std::to_string(l)).c_str()] = z;
                     }
                     if (!p.net.A[l].empty()) {
                         Arr<T> a({nl, mm});
                         std::copy(p.net.A[l].begin(), p.net.A[l].end(), a.mutable_data());
                         d[("A" + std::to_string(l)).c_str()] = a;
                     }
                 }
                 return d;
             })
        .def("release", [](P& p) {
            std::lock_guard<std::mutex> lock(p.mu);
            p.net.release();
        });
}

}  // namespace

void bind_mlp(py::module_& m) {
    register_mlp<double>(m, "MLP64");
    register_mlp<float>(m, "MLP32");
    m.def("dropout_mask", &dropout_mask, py::arg("n"), py::arg("m"), py::arg("keep_prob"), py::arg("seed"),
          py::arg("step"), py::arg("layer"),
          "0/1 keep decisions of layer `layer` for units x examples, as the native passes draw them");
    m.def("set_num_threads", [](int n) {
        if (n < 0) throw py::value_error("n must be >= 0 (0 = default)");
        const int most = max_threads();  // see parallel.hpp
        if (n > most) throw py::value_error("n must be <= " + std::to_string(most));
        set_num_threads(n);
    });
    m.def("get_num_threads", []() { return num_threads(); });
    m.def(
        "set_wide_fused", [](bool on) { return wide_fused().exchange(on); }, py::arg("on"),
        "The wide path's schedule with 2+ column chunks: True (the default) one OpenMP region per pass, False one\n"
        "for the forward and one per backward layer. The same bits either way; for tests and benchmarks.\n"
        "Returns the previous setting.");
    m.def("blas_info", []() {
        py::dict d;
        d["corename"] = std::string(blas_corename());
        d["config"] = std::string(blas_config());
        d["threads"] = blas_get_threads();
        return d;
    });
}
