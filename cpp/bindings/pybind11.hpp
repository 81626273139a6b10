// The one place that includes pybind11 (as iminuit's src/pybind11.hpp): every binding file includes this.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

namespace py = pybind11;

namespace dnnkit_py {
// Polled from long native loops (with the GIL released): re-acquires the GIL briefly and lets Python
// run its signal handlers, so Ctrl-C raises KeyboardInterrupt instead of being ignored.
inline bool interrupted() {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
}
}  // namespace dnnkit_py

void bind_mlp(py::module_& m);
void bind_gradcheck(py::module_& m);
void bind_train(py::module_& m);
