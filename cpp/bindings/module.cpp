#include "pybind11.hpp"

PYBIND11_MODULE(_core, m) {
    m.doc() = "dnnkit native core (private; use the dnnkit package)";
    bind_mlp(m);
    bind_gradcheck(m);
    bind_train(m);
}
