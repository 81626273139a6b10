// The architecture of a net: layer sizes, activations, loss, and where each W[l], b[l] sits in the flat
// parameter buffer theta = [W1, b1, W2, b2, ...] (W[l] is (n[l], n[l-1]) row-major, b[l] is (n[l])).
#pragma once
#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <vector>

#include "activations.hpp"

namespace dnnkit {

// Size limits, checked where sizes enter (Arch, the bindings): every index and partition computation is then
// safe in int (chunk ends, Philox block counts, the gradient checker's 2*P*m batch columns), with headroom.
constexpr int MAX_UNITS = 1 << 30;     // per layer (exported to Python as _core.MAX_LAYER_UNITS)
constexpr int MAX_EXAMPLES = 1 << 30;  // columns m of one pass

struct Arch {
    std::vector<int> dims;
    Act hidden = Act::relu, output = Act::sigmoid;
    Loss loss = Loss::bce;
    double alpha = 0.01;  // leaky_relu slope
    std::vector<size_t> woff, boff;
    size_t nparams = 0;

    Arch() = default;
    Arch(std::vector<int> d, Act h, Act o, Loss l, double a) : dims(std::move(d)), hidden(h), output(o), loss(l), alpha(a) {
        if (dims.size() < 2) throw std::invalid_argument("need at least an input and an output layer");
        // softmax is column-wise and fused with the loss: valid as the output only (a hidden one would throw
        // from act_backward / act_delta inside an OpenMP region, i.e. std::terminate)
        if (h == Act::softmax) throw std::invalid_argument("softmax is not a hidden activation");
        size_t off = 0;
        woff.assign(dims.size(), 0);
        boff.assign(dims.size(), 0);
        for (int l = 1; l < int(dims.size()); ++l) {
            if (dims[l] < 1 || dims[l - 1] < 1) throw std::invalid_argument("layer sizes must be >= 1");
            if (dims[l] > MAX_UNITS || dims[l - 1] > MAX_UNITS)
                throw std::invalid_argument("layer sizes must be <= 2^30");
            woff[l] = off;
            off += size_t(dims[l]) * dims[l - 1];
            boff[l] = off;
            off += size_t(dims[l]);
        }
        nparams = off;
    }
    int L() const { return int(dims.size()) - 1; }
    int n(int l) const { return dims[l]; }
    int max_width() const {
        int w = 0;
        for (int d : dims) w = std::max(w, d);
        return w;
    }
};

}  // namespace dnnkit
