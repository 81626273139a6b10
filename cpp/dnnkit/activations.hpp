// Activations, their derivatives, and numerically stable per-example losses. Pure C++.
#pragma once
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace dnnkit {

enum class Act : int { linear = 0, relu = 1, leaky_relu = 2, tanh = 3, sigmoid = 4, softmax = 5 };
enum class Loss : int { bce = 0, ce = 1, mse = 2 };

template <class T>
inline T sigmoid(T z) {
    // stable on both sides: never exp of a large positive number
    if (z >= T(0)) return T(1) / (T(1) + std::exp(-z));
    const T e = std::exp(z);
    return e / (T(1) + e);
}

// A = g(Z) elementwise on n values (softmax is handled column-wise by the caller).
template <class T>
inline void act_forward(Act a, const T* z, T* out, size_t n, T alpha) {
    switch (a) {
        case Act::linear: for (size_t i = 0; i < n; ++i) out[i] = z[i]; break;
        case Act::relu: for (size_t i = 0; i < n; ++i) out[i] = z[i] > T(0) ? z[i] : T(0); break;
        case Act::leaky_relu: for (size_t i = 0; i < n; ++i) out[i] = z[i] > T(0) ? z[i] : alpha * z[i]; break;
        case Act::tanh: for (size_t i = 0; i < n; ++i) out[i] = std::tanh(z[i]); break;
        case Act::sigmoid: for (size_t i = 0; i < n; ++i) out[i] = sigmoid(z[i]); break;
        case Act::softmax: throw std::logic_error("softmax is column-wise");
    }
}

// dz = da * g'(z) elementwise.
template <class T>
inline void act_backward(Act a, const T* z, const T* da, T* dz, size_t n, T alpha) {
    switch (a) {
        case Act::linear: for (size_t i = 0; i < n; ++i) dz[i] = da[i]; break;
        case Act::relu: for (size_t i = 0; i < n; ++i) dz[i] = z[i] > T(0) ? da[i] : T(0); break;
        case Act::leaky_relu: for (size_t i = 0; i < n; ++i) dz[i] = z[i] > T(0) ? da[i] : alpha * da[i]; break;
        case Act::tanh:
            for (size_t i = 0; i < n; ++i) { const T t = std::tanh(z[i]); dz[i] = da[i] * (T(1) - t * t); }
            break;
        case Act::sigmoid:
            for (size_t i = 0; i < n; ++i) { const T s = sigmoid(z[i]); dz[i] = da[i] * s * (T(1) - s); }
            break;
        case Act::softmax: throw std::logic_error("softmax backward is fused with the loss");
    }
}

// dz = da * g'(z) for tanh / sigmoid from the stored activation a = g(z) (act_forward's value, so the same bits
// as act_backward's recompute, without the libm call; the loop vectorises). Other activations: act_backward.
template <class T>
inline void act_backward_from_a(Act a, const T* act, const T* da, T* dz, size_t n) {
    if (a == Act::tanh)
        for (size_t i = 0; i < n; ++i) { const T t = act[i]; dz[i] = da[i] * (T(1) - t * t); }
    else
        for (size_t i = 0; i < n; ++i) { const T s = act[i]; dz[i] = da[i] * s * (T(1) - s); }
}
inline bool act_has_stored_derivative(Act a) { return a == Act::tanh || a == Act::sigmoid; }

// log1p(x) for x in [0, 1]: fdlibm's log kernel on u = 1 + x (reduced to sqrt(1/2) < u / 2^k < sqrt(2)) plus
// the rounding correction (x - (u - 1)) / u; branch-free and without libm calls, so loops over it vectorise.
// Within 1 ulp of libm's log1p (tests/test_training_native.py), which it replaces in the bce cost: libm's
// scalar log1p was ~20% of a small-net training step once the history records the cost every epoch.
inline double log1p_unit(double x) {
    constexpr double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01,
                     Lg3 = 2.857142874366239149e-01, Lg4 = 2.222219843214978396e-01,
                     Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
                     Lg7 = 1.479819860511658591e-01;
    constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double u = 1.0 + x;
    const double c = (x - (u - 1.0)) / u;
    const bool big = u > 1.4142135623730951;
    const double k = big ? 1.0 : 0.0;
    const double f = (big ? u * 0.5 : u) - 1.0;  // exact
    const double s = f / (2.0 + f);
    const double z = s * s, w = z * z;
    const double t1 = w * (Lg2 + w * (Lg4 + w * Lg6));
    const double t2 = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7)));
    const double R = t2 + t1;
    const double hfsq = 0.5 * f * f;
    return (k * ln2_hi - ((hfsq - (s * (hfsq + R) + k * ln2_lo)) - f)) + c;
}

// Stable binary cross-entropy from the logit z: -(y log s(z) + (1-y) log(1-s(z))).
template <class T>
inline double bce_logit(T z, T y) {
    const double zd = z, yd = y;
    return std::max(zd, 0.0) - zd * yd + log1p_unit(std::exp(-std::fabs(zd)));
}

inline Act parse_act(const std::string& s) {
    if (s == "linear") return Act::linear;
    if (s == "relu") return Act::relu;
    if (s == "leaky_relu") return Act::leaky_relu;
    if (s == "tanh") return Act::tanh;
    if (s == "sigmoid") return Act::sigmoid;
    if (s == "softmax") return Act::softmax;
    throw std::invalid_argument("unknown activation '" + s + "'");
}
inline Loss parse_loss(const std::string& s) {
    if (s == "bce") return Loss::bce;
    if (s == "ce") return Loss::ce;
    if (s == "mse") return Loss::mse;
    throw std::invalid_argument("unknown loss '" + s + "'");
}

}  // namespace dnnkit
