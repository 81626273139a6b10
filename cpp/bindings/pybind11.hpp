// The one place that includes pybind11 (as iminuit's src/pybind11.hpp): every binding file includes this.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "dnnkit/arch.hpp"

namespace py = pybind11;

namespace dnnkit_py {
// Polled from long native loops (with the GIL released): re-acquires the GIL briefly and lets Python
// run its signal handlers, so Ctrl-C raises KeyboardInterrupt instead of being ignored.
inline bool interrupted() {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
}

// Boundary checks shared by the bindings (the kernels trust their sizes; see dnnkit::MAX_EXAMPLES).
// Number of examples (columns) of an array: >= 1 and small enough for the kernels' int arithmetic.
inline int check_columns(py::ssize_t m, const char* what) {
    if (m < 1) throw py::value_error(std::string(what) + " must have m >= 1 columns (examples)");
    if (m > py::ssize_t(dnnkit::MAX_EXAMPLES)) throw py::value_error(std::string(what) + " has more than 2^30 columns");
    return int(m);
}
// Dropout keep probabilities: each in (0, 1] (1 = no dropout on that layer).
inline void check_keep(const std::vector<double>& keep) {
    for (double k : keep)
        if (!(k > 0.0 && k <= 1.0)) throw py::value_error("keep probabilities must lie in (0, 1]");
}
// An array the native code writes in place: it must already be a C-contiguous array of T. Converting it (as
// array_t's caster would for a float32 or strided argument) would write into a temporary copy, silently lost.
template <class T>
inline py::array_t<T, py::array::c_style> out_array(const py::handle& a, const char* what) {
    if (!py::isinstance<py::array_t<T, py::array::c_style>>(a))
        throw py::type_error(std::string(what) + " must be a C-contiguous " + py::str(py::dtype::of<T>()).cast<std::string>() +
                             " array (it is written in place)");
    auto arr = py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(a);
    if (!arr.writeable()) throw py::value_error(std::string(what) + " is read-only");
    return arr;
}
}  // namespace dnnkit_py

void bind_mlp(py::module_& m);
void bind_gradcheck(py::module_& m);
void bind_train(py::module_& m);
