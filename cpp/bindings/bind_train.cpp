// Bindings of cpp/dnnkit/train.hpp: Trainer64 / Trainer32, one per fit() call.
#include <chrono>
#include <mutex>
#include <string>

#include "dnnkit/train.hpp"
#include "pybind11.hpp"

using namespace dnnkit;

namespace {

template <class T>
using Arr = py::array_t<T, py::array::c_style>;  // no forcecast: dnnkit.training converts deliberately

// Owns the native Trainer and keeps X and Y alive (the Trainer holds raw pointers into them).
template <class T>
struct PyTrainer {
    Arr<T> X, Y;
    Trainer<T> tr;
    EpochStats last;  // of the last finished epoch (kept for a caller interrupted between run() calls)
    bool has_last = false;
    std::mutex mu;
    PyTrainer(std::vector<int> dims, const std::string& hidden, const std::string& output, const std::string& loss,
              double alpha, Arr<T> X_, Arr<T> Y_, TrainOptions o)
        : X(std::move(X_)), Y(std::move(Y_)),
          tr(Arch(std::move(dims), parse_act(hidden), parse_act(output), parse_loss(loss), alpha), std::move(o),
             X.data(), Y.data(), check(X, Y)) {}

    static int check(const Arr<T>& X, const Arr<T>& Y) {
        if (X.ndim() != 2 || Y.ndim() != 2 || X.shape(1) != Y.shape(1) || X.shape(1) < 1)
            throw py::value_error("X (n_x, m) and Y (n_y, m) must have the same m >= 1");
        return dnnkit_py::check_columns(X.shape(1), "X");
    }
};

template <class T>
void register_trainer(py::module_& m, const char* name) {
    using P = PyTrainer<T>;
    py::class_<P>(m, name)
        .def(py::init([](std::vector<int> dims, const std::string& hidden, const std::string& output,
                         const std::string& loss, double alpha, Arr<T> X, Arr<T> Y, const std::string& optimizer,
                         double lr, double beta, double beta1, double beta2, double eps, double l2, double l1,
                         std::vector<double> keep, uint64_t seed, int batch_size) {
                 if (dims.size() < 2) throw py::value_error("need at least an input and an output layer");
                 if (X.ndim() != 2 || X.shape(0) != dims.front()) throw py::value_error("X must be (n_x, m)");
                 dnnkit_py::check_keep(keep);
                 if (Y.ndim() != 2 || Y.shape(0) != dims.back()) throw py::value_error("Y must be (n_y, m)");
                 TrainOptions o;
                 o.optimizer = parse_optimizer(optimizer);
                 o.lr = lr; o.beta = beta; o.beta1 = beta1; o.beta2 = beta2; o.eps = eps;
                 o.l2 = l2; o.l1 = l1; o.keep = std::move(keep); o.seed = seed; o.batch_size = batch_size;
                 return new P(std::move(dims), hidden, output, loss, alpha, std::move(X), std::move(Y), std::move(o));
             }),
             py::arg("dims"), py::arg("hidden"), py::arg("output"), py::arg("loss"), py::arg("alpha"), py::arg("X"),
             py::arg("Y"), py::arg("optimizer"), py::arg("lr"), py::arg("beta"), py::arg("beta1"), py::arg("beta2"),
             py::arg("eps"), py::arg("l2"), py::arg("l1"), py::arg("keep"), py::arg("seed"), py::arg("batch_size"))
        .def_property_readonly("step", [](const P& p) { return p.tr.step(); })
        .def_property_readonly("epoch", [](const P& p) { return p.tr.epoch(); })
        .def_property_readonly("batch_size", [](const P& p) { return p.tr.batch_size(); })
        .def_property_readonly("steps_per_epoch", [](const P& p) { return p.tr.steps_per_epoch(); })
        .def("last_stats",
             [](P& p) {
                 py::dict d;
                 if (!p.has_last) return d;
                 d["cost"] = p.last.cost;
                 d["error"] = p.last.error;
                 d["grad_norms"] = p.last.grad_norms;
                 d["steps"] = p.last.steps;
                 return d;
             })
        .def(
            "run",
            [](P& p, const py::object& theta_, int n_epochs, long long stop_at_step, double poll_interval) {
                Arr<T> theta = dnnkit_py::out_array<T>(theta_, "theta");
                if (theta.ndim() != 1 || size_t(theta.shape(0)) != p.tr.grad().size())
                    throw py::value_error("theta has the wrong size");
                if (n_epochs < 0) throw py::value_error("n_epochs must be >= 0");
                T* th = theta.mutable_data();
                EpochStats st;
                bool stopped = false, signalled = false;
                int done = 0;
                const uint64_t stop = stop_at_step < 0 ? std::numeric_limits<uint64_t>::max() : uint64_t(stop_at_step);
                {
                    // Releasing the GIL is safe: the native loop touches no Python object, only raw buffers kept
                    // alive by this frame (theta) and by the trainer (X, Y), and the trainer's own state guarded
                    // by p.mu. The poll below re-acquires the GIL just long enough to run Python's signal
                    // handlers, on this (the calling) thread, between mini-batches, outside any OpenMP region.
                    py::gil_scoped_release nogil;
                    std::lock_guard<std::mutex> lock(p.mu);
                    using clock = std::chrono::steady_clock;
                    auto next = clock::now() + std::chrono::duration<double>(poll_interval);
                    auto poll = [&]() {
                        const auto now = clock::now();
                        if (now < next) return false;
                        next = now + std::chrono::duration<double>(poll_interval);
                        signalled = dnnkit_py::interrupted();
                        return signalled;
                    };
                    done = p.tr.run(th, n_epochs, poll, st, stopped, stop);
                }
                // With the GIL held again: last_stats() reads p.last under the GIL (from any Python thread), so
                // writing it with the GIL released would race with that read (a vector being reassigned).
                if (done > 0) {
                    p.last = st;
                    p.has_last = true;
                }
                if (signalled) {
                    // A KeyboardInterrupt is reported as interrupted=True (dnnkit.training decides whether to
                    // re-raise); any other exception raised by a signal handler propagates as it is.
                    if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) PyErr_Clear();
                    else throw py::error_already_set();
                }
                py::dict d;
                d["epochs"] = done;
                d["interrupted"] = stopped;
                if (done > 0) {
                    d["cost"] = st.cost;
                    d["error"] = st.error;
                    d["grad_norms"] = st.grad_norms;
                    d["steps"] = st.steps;
                }
                return d;
            },
            py::arg("theta"), py::arg("n_epochs"), py::arg("stop_at_step") = -1, py::arg("poll_interval") = 0.05,
            "Run up to n_epochs on theta in place; returns {'epochs', 'interrupted', and the last finished "
            "epoch's 'cost', 'error', 'grad_norms', 'steps'}. On an interrupt theta holds the last finished "
            "epoch's parameters.");
}

}  // namespace

void bind_train(py::module_& m) {
    register_trainer<double>(m, "Trainer64");
    register_trainer<float>(m, "Trainer32");
    m.def(
        "train_keep_mask",
        [](int n, int mm, double keep, uint64_t seed, uint32_t step, uint32_t layer) {
            if (n < 1 || mm < 1 || mm > MAX_EXAMPLES) throw py::value_error("n and m must be >= 1 (and m <= 2^30)");
            dnnkit_py::check_keep({keep});
            py::array_t<uint8_t> out({n, mm});
            uint8_t* p = out.mutable_data();
            {
                py::gil_scoped_release nogil;  // safe: writes only into `out`, owned by this frame
                keep_mask(seed, step, layer, n, mm, keep, p);  // the generator MLP<T> draws its masks with
            }
            return out;
        },
        py::arg("n"), py::arg("m"), py::arg("keep_prob"), py::arg("seed"), py::arg("step"), py::arg("layer"),
        "The passes' mask generator (vectorised Philox), as the training loop draws masks: the same 0/1 bits as dropout_mask");
}
