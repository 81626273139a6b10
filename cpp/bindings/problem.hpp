// One problem description across the binding: the network (dims, activations, loss, leaky slope -> Arch), the
// parameter and data arrays checked against it, and the dropout settings (keep, seed, step, explicit masks).
// bind_mlp.cpp, bind_train.cpp and bind_gradcheck.cpp all build their native problem through these helpers, so
// every rule and message lives here once.
#pragma once
#include <string>
#include <vector>

#include "dnnkit/activations.hpp"
#include "dnnkit/arch.hpp"
#include "dnnkit/dropout.hpp"
#include "pybind11.hpp"

namespace dnnkit_py {

template <class T>
using Arr = py::array_t<T, py::array::c_style>;  // no forcecast: the Python layer converts deliberately

// The architecture from its Python description; Arch validates sizes and the hidden activation.
inline dnnkit::Arch make_arch(std::vector<int> dims, const std::string& hidden, const std::string& output,
                              const std::string& loss, double alpha) {
    return dnnkit::Arch(std::move(dims), dnnkit::parse_act(hidden), dnnkit::parse_act(output), dnnkit::parse_loss(loss),
                        alpha);
}

template <class T>
void check_theta(const Arr<T>& theta, const dnnkit::Arch& a) {
    if (theta.ndim() != 1 || size_t(theta.shape(0)) != a.nparams)
        throw py::value_error("theta has the wrong size for this architecture");
}
// X is (n_0, m) with m >= 1 (and m within the kernels' int arithmetic); returns m.
template <class T>
int check_x(const Arr<T>& X, const dnnkit::Arch& a) {
    if (X.ndim() != 2 || X.shape(0) != a.n(0) || X.shape(1) < 1) throw py::value_error("X must be (n_x, m) with m >= 1");
    return check_columns(X.shape(1), "X");
}
template <class T>
void check_y(const Arr<T>& Y, const dnnkit::Arch& a, int m) {
    if (Y.ndim() != 2 || Y.shape(0) != a.n(a.L()) || Y.shape(1) != m) throw py::value_error("Y must be (n_y, m)");
}
// keep probabilities: at most one per non-output layer, each in (0, 1].
inline void check_keep(const std::vector<double>& keep, const dnnkit::Arch& a) {
    if (int(keep.size()) > a.L()) throw py::value_error("keep has more entries than layers");
    check_keep(keep);
}

// keep / seed / step / masks (a list of None or (n[l], m) 0/1 arrays, l = 0 .. L-1) -> Dropout, keeping the
// mask arrays alive in `hold` (the Dropout holds raw pointers into them).
template <class T>
dnnkit::Dropout<T> make_dropout(const dnnkit::Arch& a, const std::vector<double>& keep, uint64_t seed, uint32_t step,
                                const py::list& masks, int m, std::vector<Arr<T>>& hold) {
    check_keep(keep, a);
    // masks[l] for l = 0 (input) .. L-1 (hidden): a longer list would index past dims below
    if (masks.size() > size_t(a.L())) throw py::value_error("masks has more entries than layers");
    dnnkit::Dropout<T> dp;
    dp.keep = keep;
    dp.seed = seed;
    dp.step = step;
    for (size_t l = 0; l < masks.size(); ++l) {
        if (masks[l].is_none()) {
            dp.masks.push_back(nullptr);
            continue;
        }
        Arr<T> arr = masks[l].cast<Arr<T>>();
        if (arr.ndim() != 2 || arr.shape(0) != a.n(int(l)) || arr.shape(1) != m)
            throw py::value_error("mask " + std::to_string(l) + " has the wrong shape");
        dp.masks.push_back(arr.data());
        hold.push_back(std::move(arr));
    }
    return dp;
}

}  // namespace dnnkit_py
