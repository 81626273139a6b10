// Fused and branch-free elementwise kernels of the forward/backward passes (mlp.hpp). Each one works on a
// range of values given by the caller; none depends on the thread count.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "activations.hpp"

namespace dnnkit {

#define DNNKIT_ALWAYS_INLINE inline __attribute__((always_inline))

// Inverted dropout from byte masks: v *= D * (1/keep), one vectorisable multiply per value.
// (v * (1/keep) may differ from the reference's v / keep in the last bit.)
template <class T>
DNNKIT_ALWAYS_INLINE void byte_dropout(const uint8_t* __restrict D, T scale, T* __restrict v, size_t n) {
    for (size_t k = 0; k < n; ++k) v[k] *= T(D[k]) * scale;
}

// Sum of n values with 8 interleaved partial sums (vectorisable, fixed order: same bits on every run).
template <class T>
DNNKIT_ALWAYS_INLINE T row_sum(const T* x, int n) {
    T p[8] = {T(0), T(0), T(0), T(0), T(0), T(0), T(0), T(0)};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int t = 0; t < 8; ++t) p[t] += x[j + t];
    for (; j < n; ++j) p[j & 7] += x[j];
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

// Branch-free ReLU and its derivative (random signs make the branchy form mispredict half the time);
// the same values as act_forward / act_backward.
template <class T>
DNNKIT_ALWAYS_INLINE void bias_relu_forward(T* __restrict z, T bias, T* __restrict a, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        const T v = z[i] + bias;
        z[i] = v;
        a[i] = v > T(0) ? v : T(0);
    }
}
template <class T>
DNNKIT_ALWAYS_INLINE void relu_backward(const T* __restrict z, const T* __restrict da, T* __restrict dz, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        const T d = da[i];
        dz[i] = z[i] > T(0) ? d : T(0);
    }
}

// Z += b and A = g(Z) on columns [j0, j1) of an (nl x ld) layer; softmax column by column (max-shifted).
template <class T>
DNNKIT_ALWAYS_INLINE void bias_activation(Act act, const T* b, int nl, int ld, int j0, int j1, T alpha, T* Z, T* A) {
    const size_t w = size_t(j1 - j0);
    if (act == Act::relu) {  // fused: one pass
        for (int i = 0; i < nl; ++i) bias_relu_forward(Z + size_t(i) * ld + j0, b[i], A + size_t(i) * ld + j0, w);
        return;
    }
    for (int i = 0; i < nl; ++i) {
        T* zr = Z + size_t(i) * ld + j0;
        const T bi = b[i];
        for (size_t j = 0; j < w; ++j) zr[j] += bi;
    }
    if (act != Act::softmax) {
        if (size_t(ld) == w) act_forward(act, Z, A, size_t(nl) * w, alpha);  // one call over the whole layer
        else
            for (int i = 0; i < nl; ++i) act_forward(act, Z + size_t(i) * ld + j0, A + size_t(i) * ld + j0, w, alpha);
        return;
    }
    for (int j = j0; j < j1; ++j) {
        T mx = Z[j];
        for (int i = 1; i < nl; ++i) mx = std::max(mx, Z[size_t(i) * ld + j]);
        T s = T(0);
        for (int i = 0; i < nl; ++i) {
            const T e = std::exp(Z[size_t(i) * ld + j] - mx);
            A[size_t(i) * ld + j] = e;
            s += e;
        }
        const T inv = T(1) / s;
        for (int i = 0; i < nl; ++i) A[size_t(i) * ld + j] *= inv;
    }
}

// dZ[L] of n output values: canonical pairs give (A - Y) / m; sigmoid + mse adds the sigmoid derivative.
template <class T>
DNNKIT_ALWAYS_INLINE void output_delta(Act output, Loss loss, const T* AL, const T* Y, size_t n, T invm, T* d) {
    if (loss == Loss::mse && output == Act::sigmoid) {
        for (size_t k = 0; k < n; ++k) d[k] = (AL[k] - Y[k]) * AL[k] * (T(1) - AL[k]) * invm;
    } else {
        for (size_t k = 0; k < n; ++k) d[k] = (AL[k] - Y[k]) * invm;
    }
}

// dW += (l2/m) W + (l1/(2m)) sign(W) on rows [r0, r1) x columns [c0, c1) of an (. x ld) weight matrix.
template <class T>
DNNKIT_ALWAYS_INLINE void add_reg_grad(const T* W, T* dW, int ld, int r0, int r1, int c0, int c1, T cl2, T cl1) {
    if (cl2 == T(0) && cl1 == T(0)) return;
    for (int i = r0; i < r1; ++i)
        for (int j = c0; j < c1; ++j) {
            const T w = W[size_t(i) * ld + j];
            const T sg = w > T(0) ? T(1) : (w < T(0) ? T(-1) : T(0));
            dW[size_t(i) * ld + j] += cl2 * w + cl1 * sg;
        }
}

}  // namespace dnnkit
