// Bindings of cpp/dnnkit/train.hpp: Trainer64 / Trainer32, one per fit() call.
#include <chrono>
#include <cmath>
#include <mutex>
#include <optional>
#include <string>

#include "dnnkit/train.hpp"
#include "problem.hpp"

using namespace dnnkit;

namespace {

using dnnkit_py::Arr;  // no forcecast: dnnkit.training converts deliberately

// Owns the native Trainer and keeps X and Y alive (the Trainer holds raw pointers into them).
template <class T>
struct PyTrainer {
    Arr<T> X, Y;
    Arr<T> Xd, Yd;  // validation data (optional)
    Trainer<T> tr;
    std::mutex mu;
    // arch and X, Y already checked (see the constructor binding below)
    PyTrainer(Arch arch, Arr<T> X_, Arr<T> Y_, int m, TrainOptions o)
        : X(std::move(X_)), Y(std::move(Y_)), tr(std::move(arch), std::move(o), X.data(), Y.data(), m) {}
};

template <class T>
void register_trainer(py::module_& m, const char* name) {
    using P = PyTrainer<T>;
    py::class_<P>(m, name)
        .def(py::init([](std::vector<int> dims, const std::string& hidden, const std::string& output,
                         const std::string& loss, double alpha, Arr<T> X, Arr<T> Y, const std::string& optimizer,
                         double lr, double beta, double beta1, double beta2, double eps, double l2, double l1,
                         std::vector<double> keep, uint64_t seed, int batch_size) {
                 Arch arch = dnnkit_py::make_arch(std::move(dims), hidden, output, loss, alpha);
                 const int mm = dnnkit_py::check_x(X, arch);
                 dnnkit_py::check_y(Y, arch, mm);
                 dnnkit_py::check_keep(keep, arch);
                 TrainOptions o;
                 o.optimizer = parse_optimizer(optimizer);
                 o.lr = lr; o.beta = beta; o.beta1 = beta1; o.beta2 = beta2; o.eps = eps;
                 o.l2 = l2; o.l1 = l1; o.keep = std::move(keep); o.seed = seed; o.batch_size = batch_size;
                 return new P(std::move(arch), std::move(X), std::move(Y), mm, std::move(o));
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
                 // the last history row (compatibility; fit reads history())
                 py::dict d;
                 std::unique_lock<std::mutex> lock(p.mu, std::try_to_lock);
                 if (!lock.owns_lock()) throw std::runtime_error("the trainer is running");
                 const HistoryLog& h = p.tr.history();
                 if (h.rows() == 0) return d;
                 const size_t r = h.rows() - 1;
                 for (const auto& s : h.series()) {
                     if (s.name == "grad_norms")
                         d["grad_norms"] = std::vector<double>(s.data.begin() + r * s.width, s.data.begin() + (r + 1) * s.width);
                     else if (s.name == "train_cost") d["cost"] = s.data[r];
                     else if (s.name == "train_error") d["error"] = s.data[r];
                 }
                 d["steps"] = p.tr.steps_per_epoch();
                 return d;
             })
        .def(
            "set_validation",
            [](P& p, Arr<T> Xd, Arr<T> Yd) {
                std::unique_lock<std::mutex> lock(p.mu, std::try_to_lock);
                if (!lock.owns_lock()) throw std::runtime_error("the trainer is running");
                if (Xd.ndim() != 2 || Yd.ndim() != 2 || Xd.shape(1) != Yd.shape(1) || Xd.shape(1) < 1 ||
                    Xd.shape(0) != p.X.shape(0) || Yd.shape(0) != p.Y.shape(0))
                    throw py::value_error("validation X (n_x, m_dev) and Y (n_y, m_dev) must match the training data's rows");
                const int md = dnnkit_py::check_columns(Xd.shape(1), "X_dev");
                p.Xd = std::move(Xd);  // kept alive here: the trainer holds raw pointers
                p.Yd = std::move(Yd);
                p.tr.set_validation(p.Xd.data(), p.Yd.data(), md);
            },
            py::arg("X"), py::arg("Y"), "Evaluate dev_cost / dev_error on (X, Y) at every reported epoch")
        .def(
            "set_train_eval_full",
            [](P& p, bool full) {
                std::unique_lock<std::mutex> lock(p.mu, std::try_to_lock);
                if (!lock.owns_lock()) throw std::runtime_error("the trainer is running");
                p.tr.set_train_eval_full(full);
            },
            py::arg("full"))
        .def(
            "set_early_stopping",
            [](P& p, const std::string& monitor, long long patience, double min_delta, bool restore_best) {
                std::unique_lock<std::mutex> lock(p.mu, std::try_to_lock);
                if (!lock.owns_lock()) throw std::runtime_error("the trainer is running");
                if (patience < 0) throw py::value_error("patience must be >= 0");
                if (!std::isfinite(min_delta) || min_delta < 0) throw py::value_error("min_delta must be finite and >= 0");
                p.tr.set_early_stopping(monitor, patience, min_delta, restore_best);
            },
            py::arg("monitor"), py::arg("patience"), py::arg("min_delta"), py::arg("restore_best"),
            "dnnkit.EarlyStopping's rule evaluated in the native loop on each reported row")
        .def("early_stopping_state",
             [](P& p) {
                 std::unique_lock<std::mutex> lock(p.mu, std::try_to_lock);
                 if (!lock.owns_lock()) throw std::runtime_error("the trainer is running");
                 const auto& es = p.tr.early_stopping();
                 py::dict d;
                 d["best"] = es.best;
                 d["best_epoch"] = es.best_epoch > 0 ? py::object(py::int_(es.best_epoch)) : py::object(py::none());
                 d["wait"] = es.wait;
                 if (es.best_epoch > 0 && !es.best_theta.empty()) {
                     Arr<T> th{py::ssize_t(es.best_theta.size())};
                     std::copy(es.best_theta.begin(), es.best_theta.end(), th.mutable_data());
                     d["best_theta"] = th;
                 } else {
                     d["best_theta"] = py::none();
                 }
                 return d;
             })
        .def(
            "history",
            [](P& p, py::ssize_t start) {
                // the recorded rows from `start` on, one array per series (grad_norms: rows x L)
                std::unique_lock<std::mutex> lock(p.mu, std::try_to_lock);
                if (!lock.owns_lock()) throw std::runtime_error("the trainer is running");
                const HistoryLog& h = p.tr.history();
                const size_t r0 = std::min(size_t(std::max<py::ssize_t>(start, 0)), h.rows()), n = h.rows() - r0;
                py::dict d;
                py::array_t<long long> ep{py::ssize_t(n)};
                std::copy(h.epochs().begin() + r0, h.epochs().end(), ep.mutable_data());
                d["epoch"] = ep;
                for (const auto& s : h.series()) {
                    py::array_t<double> a = s.width == 1 ? py::array_t<double>(py::ssize_t(n))
                                                         : py::array_t<double>({py::ssize_t(n), py::ssize_t(s.width)});
                    std::copy(s.data.begin() + r0 * s.width, s.data.end(), a.mutable_data());
                    d[py::str(s.name)] = a;
                }
                return d;
            },
            py::arg("start") = 0, "Recorded history rows from `start` on: {'epoch': int64, series: float64 arrays}")
        .def(
            "finish_row",
            [](P& p, const py::object& theta_, double t) {
                Arr<T> theta = dnnkit_py::out_array<T>(theta_, "theta");
                if (theta.ndim() != 1 || size_t(theta.shape(0)) != p.tr.grad().size())
                    throw py::value_error("theta has the wrong size");
                std::unique_lock<std::mutex> lock(p.mu, std::try_to_lock);
                if (!lock.owns_lock()) throw std::runtime_error("the trainer is running");
                p.tr.finish_row(theta.data(), t);
            },
            py::arg("theta"), py::arg("time"),
            "A row (training statistics NaN) for the last finished epoch if it has none")
        .def(
            "run",
            [](P& p, const py::object& theta_, int n_epochs, long long stop_at_step, double poll_interval,
               long long log_every, long long last_epoch, double time_budget, double t_offset) {
                Arr<T> theta = dnnkit_py::out_array<T>(theta_, "theta");
                if (theta.ndim() != 1 || size_t(theta.shape(0)) != p.tr.grad().size())
                    throw py::value_error("theta has the wrong size");
                if (n_epochs < 0) throw py::value_error("n_epochs must be >= 0");
                if (log_every < 0) throw py::value_error("log_every must be >= 0");
                if (!(time_budget > 0)) throw py::value_error("time_budget must be > 0");
                T* th = theta.mutable_data();
                RunResult res;
                bool signalled = false;
                const size_t rows_before = p.tr.history().rows();
                const uint64_t stop = stop_at_step < 0 ? std::numeric_limits<uint64_t>::max() : uint64_t(stop_at_step);
                ReportPlan plan;
                plan.log_every = log_every;
                plan.last_epoch = last_epoch;
                plan.time_budget = time_budget;
                plan.t_offset = t_offset;
                {
                    // Releasing the GIL is safe: the native loop touches no Python object, only raw buffers kept
                    // alive by this frame (theta) and by the trainer (X, Y, the validation data), and the trainer's
                    // own state guarded by p.mu (every other method only try-locks it, under the GIL, so none can
                    // wait for this call while holding the GIL it needs for its poll). The poll below re-acquires
                    // the GIL just long enough to run Python's signal handlers, on this (the calling) thread,
                    // between mini-batches, outside any OpenMP region.
                    py::gil_scoped_release nogil;
                    std::unique_lock<std::mutex> lock(p.mu, std::try_to_lock);
                    if (!lock.owns_lock()) throw std::runtime_error("the trainer is already running");
                    using clock = std::chrono::steady_clock;
                    auto next = clock::now() + std::chrono::duration<double>(poll_interval);
                    auto poll = [&]() {
                        const auto now = clock::now();
                        if (now < next) return false;
                        next = now + std::chrono::duration<double>(poll_interval);
                        signalled = dnnkit_py::interrupted();
                        return signalled;
                    };
                    res = p.tr.run(th, n_epochs, poll, plan, stop);
                }
                if (signalled) {
                    // A KeyboardInterrupt is reported as interrupted=True (dnnkit.training decides whether to
                    // re-raise); any other exception raised by a signal handler propagates as it is.
                    if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) PyErr_Clear();
                    else throw py::error_already_set();
                }
                py::dict d;
                d["epochs"] = res.epochs;
                d["interrupted"] = res.interrupted;
                d["stopped_early"] = res.stopped_early;
                d["rows"] = p.tr.history().rows() - rows_before;
                return d;
            },
            py::arg("theta"), py::arg("n_epochs"), py::arg("stop_at_step") = -1, py::arg("poll_interval") = 0.05,
            py::arg("log_every") = 0, py::arg("last_epoch") = 0,
            py::arg("time_budget") = std::numeric_limits<double>::infinity(), py::arg("t_offset") = 0.0,
            "Run up to n_epochs on theta in place, recording a history row for every reported epoch (global epoch "
            "e with e % log_every == 0 or e == last_epoch; defaults: the call's last epoch); returns after "
            "time_budget seconds at an epoch boundary. Returns {'epochs', 'interrupted', 'stopped_early', 'rows'}. "
            "On an interrupt theta holds the last finished epoch's parameters.");
}

}  // namespace

void bind_train(py::module_& m) {
    register_trainer<double>(m, "Trainer64");
    register_trainer<float>(m, "Trainer32");
    m.def(
        "set_small_layers",
        [](std::optional<bool> on) -> std::optional<bool> {
            const int prev = small::mode().exchange(on ? int(*on) : -1);
            if (prev < 0) return std::nullopt;
            return prev > 0;
        },
        py::arg("on"),
        "Turns the fused small-net training step (cpp/dnnkit/small_layers.hpp) on (True) or off (False) for\n"
        "Trainers built afterwards, or back to automatic (None: on for CPUs with AVX2 or AVX-512F); returns the\n"
        "previous setting. For tests and benchmarks (the BLAS path is the reference).");
    m.def(
        "small_layers_eligible",
        [](std::vector<int> dims, const std::string& hidden, const std::string& output, const std::string& loss) {
            return SmallNet<double>::eligible(dnnkit_py::make_arch(std::move(dims), hidden, output, loss, 0.01));
        },
        py::arg("dims"), py::arg("hidden"), py::arg("output"), py::arg("loss"),
        "Whether fit() on this net uses the fused small-net step (sizes and activations only).");
    m.def(
        "small_layers_auto", [] { return small::wanted(); },
        "Whether fit() would use the fused small-net step on an eligible net now (the setting of set_small_layers,\n"
        "or with None the automatic choice for this CPU).");
}
