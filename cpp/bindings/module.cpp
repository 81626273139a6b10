// The _core module: process-wide setup and limits, then one bind_<area>() per area (bind_mlp.cpp,
// bind_gradcheck.cpp, bind_train.cpp).
#include "dnnkit/arch.hpp"
#include "dnnkit/blas.hpp"
#include "dnnkit/parallel.hpp"
#include "pybind11.hpp"

PYBIND11_MODULE(_core, m) {
    m.doc() = "dnnkit native core (private; use the dnnkit package)";
    // One thread pool: BLAS runs single-threaded, dnnkit splits work over OpenMP itself (parallel.hpp).
    dnnkit::blas_set_threads(1);
    // The limits the native core enforces, for the Python layer to check against (one source of truth).
    m.attr("MAX_LAYER_UNITS") = dnnkit::MAX_UNITS;        // units per layer (and input features)
    m.attr("MAX_EXAMPLES") = dnnkit::MAX_EXAMPLES;        // columns of one pass
    m.attr("MAX_THREADS") = dnnkit::max_threads();        // set_num_threads accepts 0 .. MAX_THREADS
    bind_mlp(m);
    bind_gradcheck(m);
    bind_train(m);
}
