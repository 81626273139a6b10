// Bindings of cpp/dnnkit/gradcheck.hpp.
#include "pybind11.hpp"

void bind_gradcheck(py::module_& m) { (void)m; }
