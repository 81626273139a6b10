// Bindings of cpp/dnnkit/train.hpp.
#include "pybind11.hpp"

void bind_train(py::module_& m) { (void)m; }
