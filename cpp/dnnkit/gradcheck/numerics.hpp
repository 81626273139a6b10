// Pure numerics of the gradient checker: cancellation-free differences of activations and losses. No state,
// no threads, no BLAS: each is a function of its arguments only (unit-tested on their own, tests/test_gc_numerics.py).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "../activations.hpp"

namespace dnnkit {

// Kink flags of a coordinate's check: an activation kink within reach, an L1 kink (|w| < eps).
enum : uint8_t { KINK_ACT = 1, KINK_L1 = 2 };

// g(z + d) - g(z) without cancellation; gz = g(z). Sets `crossed` when a kink lies within [z, z + d].
inline double act_delta(Act a, double z, double gz, double d, double alpha, bool& crossed) {
    switch (a) {
        case Act::linear: return d;
        case Act::relu: {
            const double zd = z + d;
            const bool p0 = z > 0.0, p1 = zd > 0.0;
            if (p0 && p1) return d;
            if (!p0 && !p1) {
                if (d != 0.0 && (z == 0.0 || zd == 0.0)) crossed = true;
                return 0.0;
            }
            crossed = true;
            return (p1 ? zd : 0.0) - (p0 ? z : 0.0);
        }
        case Act::leaky_relu: {
            const double zd = z + d;
            const bool p0 = z > 0.0, p1 = zd > 0.0;
            if (p0 && p1) return d;
            if (!p0 && !p1) {
                if (d != 0.0 && (z == 0.0 || zd == 0.0)) crossed = true;
                return alpha * d;
            }
            crossed = true;
            return (p1 ? zd : alpha * zd) - (p0 ? z : alpha * z);
        }
        case Act::tanh: return std::tanh(d) * (1.0 - gz * std::tanh(z + d));
        case Act::sigmoid: {
            // s(z+d) - s(z) = -s q expm1(-d) / (1 + q expm1(-d)), q = 1 - s computed without cancellation
            const double s = gz, q = z >= 0.0 ? std::exp(-z) * s : 1.0 - s;
            const double em = std::expm1(-d);
            return -s * q * em / (1.0 + q * em);
        }
        case Act::softmax: break;
    }
    throw std::logic_error("softmax is not a hidden activation");
}

// expm1 / log1p for the tiny arguments a perturbation produces (|x| <= 2^-9): Taylor polynomials whose
// remainders (x^7/5040, x^7/7) are below 2^-54 relative there, so they are exact to rounding like libm's, at a
// fraction of the cost (the loss change of every perturbed example goes through them). Larger x: libm.
inline double expm1_fast(double x) {
    if (!(std::fabs(x) <= 1.0 / 512)) return std::expm1(x);
    return x * (1.0 + x * (1.0 / 2 + x * (1.0 / 6 + x * (1.0 / 24 + x * (1.0 / 120 + x * (1.0 / 720))))));
}
inline double log1p_fast(double x) {
    if (!(std::fabs(x) <= 1.0 / 512)) return std::log1p(x);
    return x * (1.0 - x * (1.0 / 2 - x * (1.0 / 3 - x * (1.0 / 4 - x * (1.0 / 5 - x * (1.0 / 6))))));
}

inline bool has_kinks(Act a) { return a == Act::relu || a == Act::leaky_relu; }

// |w + e v| - |w - e v| without cancellation
inline double abs_diff(double w, double v, double e) {
    const double ev = e * std::fabs(v);
    if (std::fabs(w) >= ev) return 2.0 * e * v * (w > 0 ? 1.0 : -1.0);
    return 2.0 * w * (v > 0 ? 1.0 : -1.0);
}

// log1p(x) for |x| <= 2^-7: the series to x^8 (remainder x^9/9: below 2^-60 relative there)
inline double log1p_poly(double x) {
    return x * (1.0 - x * (1.0 / 2 - x * (1.0 / 3 - x * (1.0 / 4 - x * (1.0 / 5 - x * (1.0 / 6 - x * (1.0 / 7 - x * (1.0 / 8))))))));
}

// The change of the loss of an output layer when its pre-activations change: loss(zL + d) - loss(zL), per
// example, in cancellation-free forms (softplus(z+d) - softplus(z) = log1p(s(z) expm1(d)); logsumexp(z+d) -
// logsumexp(z) = log1p(sum_k p_k expm1(d_k))). A view of the cached output layer: Z = Z[L], G = g(Z[L]) (the
// probabilities / sigmoids / outputs), Y the labels, each (nL, m) row-major.
struct OutputLoss {
    Loss loss = Loss::bce;
    Act output = Act::sigmoid;
    int nL = 0, m = 0;
    const double* Z = nullptr;
    const double* G = nullptr;
    const double* Y = nullptr;

    // the change when only output unit i of example c changes (by d)
    double unit(int i, int c, double d) const {
        const size_t o = size_t(i) * m + c;
        const double gz = G[o], y = Y[o];
        if (loss == Loss::ce) return log1p_fast(gz * expm1_fast(d)) - y * d;
        if (loss == Loss::bce) return log1p_fast(gz * expm1_fast(d)) - y * d;  // gz = sigmoid(z)
        double da = d;
        if (output == Act::sigmoid) {
            bool cr = false;
            da = act_delta(Act::sigmoid, Z[o], gz, d, 0.0, cr);
        }
        return da * (gz - y) + 0.5 * da * da;  // 0.5(a+da-y)^2 - 0.5(a-y)^2
    }

    // loss(zL + d) - loss(zL) of example c; d[i*ld] is the change of output unit i.
    double col(int c, const double* d, size_t ld) const {
        double s = 0.0;
        if (loss == Loss::ce) {
            double e = 0.0, yd = 0.0;
            for (int i = 0; i < nL; ++i) {
                const double di = d[size_t(i) * ld];
                e += G[size_t(i) * m + c] * expm1_fast(di);
                yd += Y[size_t(i) * m + c] * di;
            }
            return log1p_fast(e) - yd;
        }
        for (int i = 0; i < nL; ++i) s += unit(i, c, d[size_t(i) * ld]);
        return s;
    }

    // sum over examples of loss(zL + d) - loss(zL) for one perturbation; d is (nL, m) with row stride ld.
    // Row-wise (contiguous) loops; the per-example sums are added in example order (deterministic).
    // e, yd: scratch of m values each (ce only).
    double block(const double* d, size_t ld, std::vector<double>& e_, std::vector<double>& yd_) const {
        if (loss != Loss::ce) {
            double s = 0.0;
            for (int c = 0; c < m; ++c) s += col(c, d + c, ld);
            return s;
        }
        e_.assign(size_t(m), 0.0);
        yd_.assign(size_t(m), 0.0);
        double* e = e_.data();
        double* yd = yd_.data();
        for (int i = 0; i < nL; ++i) {
            const double* di = d + size_t(i) * ld;
            const double* g = G + size_t(i) * m;
            const double* y = Y + size_t(i) * m;
            for (int c = 0; c < m; ++c) {
                e[c] += g[c] * expm1_fast(di[c]);
                yd[c] += y[c] * di[c];
            }
        }
        double s = 0.0;
        for (int c = 0; c < m; ++c) s += log1p_fast(e[c]) - yd[c];
        return s;
    }
};

}  // namespace dnnkit
