// Forward, cost and backward of a fully-connected net of any depth, on one flat parameter buffer.
//
// Layout (the contract): theta = [W1, b1, W2, b2, ...], W[l] is (n[l], n[l-1]) row-major, b[l] is (n[l]).
// Activations are (n[l], m) row-major: examples are columns, as in the course and in dnnkit.reference.
// GEMMs go through BLAS (single-threaded); the work is split into size-determined chunks run on OpenMP.
#pragma once
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "activations.hpp"
#include "blas.hpp"
#include "parallel.hpp"
#include "rng.hpp"

namespace dnnkit {

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
        size_t off = 0;
        woff.assign(dims.size(), 0);
        boff.assign(dims.size(), 0);
        for (int l = 1; l < int(dims.size()); ++l) {
            if (dims[l] < 1 || dims[l - 1] < 1) throw std::invalid_argument("layer sizes must be >= 1");
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

// Dropout settings of one pass. keep[l] for l = 0 (input) .. L-1 (hidden); never the output.
// masks[l] (optional): explicit 0/1 masks (n[l] x m, row-major); nullptr -> counter-based RNG.
template <class T>
struct Dropout {
    std::vector<double> keep;
    uint64_t seed = 0;
    uint32_t step = 0;
    std::vector<const T*> masks;
    bool on(int l) const { return l < int(keep.size()) && keep[l] < 1.0; }
    const T* mask(int l) const { return l < int(masks.size()) ? masks[l] : nullptr; }
};

// Applies inverted dropout of layer l to columns [j0, j1) of a (n x ld) row-major block:
// v = keep ? v / keep_prob : 0. Used on A in forward and on dA in backward (same decisions).
template <class T>
inline void apply_dropout(const Dropout<T>& dp, int l, int n, int ld, int j0, int j1, T* v) {
    const T kp = T(dp.keep[l]);
    if (const T* D = dp.mask(l)) {
        for (int i = 0; i < n; ++i)
            for (int j = j0; j < j1; ++j) {
                T& x = v[size_t(i) * ld + j];
                x = D[size_t(i) * ld + j] != T(0) ? x / kp : T(0);
            }
        return;
    }
    dropout_bits(dp.seed, dp.step, uint32_t(l), n, j0, j1, keep_threshold(dp.keep[l]), [&](int i, int j, bool keep) {
        T& x = v[size_t(i) * ld + j];
        x = keep ? x / kp : T(0);
    });
}

template <class T>
class MLP {
   public:
    explicit MLP(Arch a) : arch(std::move(a)) {}
    Arch arch;
    int m = 0;
    // Z[l] (l = 1..L), A[l] (l = 0..L; A[0] is used only with input dropout), dZ[l] (l = 1..L), one dA scratch.
    std::vector<std::vector<T>> Z, A, dZ;
    std::vector<T> dA;

    const T* W(const T* theta, int l) const { return theta + arch.woff[l]; }
    const T* b(const T* theta, int l) const { return theta + arch.boff[l]; }

    void resize(int m_) {
        const int L = arch.L();
        if (m_ == m && int(Z.size()) == L + 1) return;
        m = m_;
        Z.assign(L + 1, {});
        A.assign(L + 1, {});
        dZ.assign(L + 1, {});
        for (int l = 1; l <= L; ++l) {
            Z[l].assign(size_t(arch.n(l)) * m, T(0));
            A[l].assign(size_t(arch.n(l)) * m, T(0));
            dZ[l].assign(size_t(arch.n(l)) * m, T(0));
        }
        dA.assign(size_t(arch.max_width()) * m, T(0));
    }
    void release() {
        Z.clear(); A.clear(); dZ.clear(); dA.clear(); dA.shrink_to_fit(); m = 0;
    }

    // Data part of the cost, (1/m) sum of per-example losses. Requires forward() on the same X.
    double data_cost_columns(const T* Y, int j0, int j1) const {
        const int L = arch.L(), nL = arch.n(L);
        const T* ZL = Z[L].data();
        const T* AL = A[L].data();
        double s = 0.0;
        if (arch.loss == Loss::bce) {
            for (int i = 0; i < nL; ++i)
                for (int j = j0; j < j1; ++j) s += bce_logit(ZL[size_t(i) * m + j], Y[size_t(i) * m + j]);
        } else if (arch.loss == Loss::ce) {
            for (int j = j0; j < j1; ++j) {  // logsumexp(z) - sum_k y_k z_k, per column
                double mx = -INFINITY;
                for (int i = 0; i < nL; ++i) mx = std::max(mx, double(ZL[size_t(i) * m + j]));
                double se = 0.0, yz = 0.0;
                for (int i = 0; i < nL; ++i) {
                    const double z = ZL[size_t(i) * m + j];
                    se += std::exp(z - mx);
                    yz += double(Y[size_t(i) * m + j]) * z;
                }
                s += mx + std::log(se) - yz;
            }
        } else {  // mse: 0.5 * ||a - y||^2 per example
            for (int i = 0; i < nL; ++i)
                for (int j = j0; j < j1; ++j) {
                    const double d = double(AL[size_t(i) * m + j]) - double(Y[size_t(i) * m + j]);
                    s += 0.5 * d * d;
                }
        }
        return s;
    }

    // (l2/(2m)) sum ||W||_F^2 + (l1/(2m)) sum |W|
    double reg_cost(const T* theta, int m_, double l2, double l1) const {
        if (l2 == 0.0 && l1 == 0.0) return 0.0;
        double s2 = 0.0, s1 = 0.0;
        for (int l = 1; l <= arch.L(); ++l) {
            const T* w = W(theta, l);
            const size_t n = size_t(arch.n(l)) * arch.n(l - 1);
            for (size_t k = 0; k < n; ++k) {
                s2 += double(w[k]) * double(w[k]);
                s1 += std::fabs(double(w[k]));
            }
        }
        return (l2 * s2 + l1 * s1) / (2.0 * m_);
    }

    // Forward pass over m examples (X is n0 x m). Returns J (with regularization) when Y != nullptr.
    double forward(const T* theta, const T* X, int m_, const Dropout<T>& dp, const T* Y = nullptr, double l2 = 0.0,
                   double l1 = 0.0) {
        resize(m_);
        const int L = arch.L();
        const Chunks ch = column_chunks(m);
        std::vector<double> part(ch.count(), 0.0);
        double flops = 0.0;
        for (int l = 1; l <= L; ++l) flops += 2.0 * arch.n(l) * arch.n(l - 1) * m;
        const bool input_drop = dp.on(0);
        if (input_drop) A[0].assign(size_t(arch.n(0)) * m, T(0));
        const T alpha = T(arch.alpha);

#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads()) if (worth_parallel(flops))
        for (int c = 0; c < ch.count(); ++c) {
            const int j0 = ch.begin(c), j1 = ch.end(c), w = j1 - j0;
            const T* Aprev = X;
            if (input_drop) {
                const int n0 = arch.n(0);
                for (int i = 0; i < n0; ++i)
                    for (int j = j0; j < j1; ++j) A[0][size_t(i) * m + j] = X[size_t(i) * m + j];
                apply_dropout(dp, 0, n0, m, j0, j1, A[0].data());
                Aprev = A[0].data();
            }
            for (int l = 1; l <= L; ++l) {
                const int nl = arch.n(l), np = arch.n(l - 1);
                T* Zl = Z[l].data();
                T* Al = A[l].data();
                gemm(false, false, nl, w, np, T(1), W(theta, l), np, Aprev + j0, m, T(0), Zl + j0, m);
                const T* bl = b(theta, l);
                for (int i = 0; i < nl; ++i) {
                    T* zr = Zl + size_t(i) * m + j0;
                    const T bi = bl[i];
                    for (int j = 0; j < w; ++j) zr[j] += bi;
                }
                const Act act = l < L ? arch.hidden : arch.output;
                if (act == Act::softmax) {
                    for (int j = j0; j < j1; ++j) {
                        T mx = Zl[j];
                        for (int i = 1; i < nl; ++i) mx = std::max(mx, Zl[size_t(i) * m + j]);
                        T s = T(0);
                        for (int i = 0; i < nl; ++i) {
                            const T e = std::exp(Zl[size_t(i) * m + j] - mx);
                            Al[size_t(i) * m + j] = e;
                            s += e;
                        }
                        const T inv = T(1) / s;
                        for (int i = 0; i < nl; ++i) Al[size_t(i) * m + j] *= inv;
                    }
                } else {
                    for (int i = 0; i < nl; ++i)
                        act_forward(act, Zl + size_t(i) * m + j0, Al + size_t(i) * m + j0, size_t(w), alpha);
                }
                if (l < L && dp.on(l)) apply_dropout(dp, l, nl, m, j0, j1, Al);
                Aprev = Al;
            }
            if (Y) part[c] = data_cost_columns(Y, j0, j1);
        }
        if (!Y) return 0.0;
        double s = 0.0;
        for (double p : part) s += p;  // fixed order: deterministic
        return s / m + reg_cost(theta, m, l2, l1);
    }

    // Forward (with cost) and backward; writes the flat gradient (same layout as theta) into grad.
    double backward(const T* theta, const T* X, const T* Y, int m_, const Dropout<T>& dp, double l2, double l1,
                    T* grad) {
        const double J = forward(theta, X, m_, dp, Y, l2, l1);
        const int L = arch.L(), nL = arch.n(L);
        const T invm = T(1) / T(m);
        // dZ[L]: canonical pairs give (A - Y) / m; sigmoid + mse adds the sigmoid derivative.
        {
            const T* AL = A[L].data();
            T* d = dZ[L].data();
            const size_t n = size_t(nL) * m;
            if (arch.loss == Loss::mse && arch.output == Act::sigmoid) {
                for (size_t k = 0; k < n; ++k) d[k] = (AL[k] - Y[k]) * AL[k] * (T(1) - AL[k]) * invm;
            } else {
                for (size_t k = 0; k < n; ++k) d[k] = (AL[k] - Y[k]) * invm;
            }
        }
        const T alpha = T(arch.alpha);
        const T cl2 = T(l2 / m), cl1 = T(l1 / (2.0 * m));
        const Chunks ch = column_chunks(m);
        for (int l = L; l >= 1; --l) {
            const int nl = arch.n(l), np = arch.n(l - 1);
            const T* Aprev = (l == 1) ? (dp.on(0) ? A[0].data() : X) : A[l - 1].data();
            const T* dz = dZ[l].data();
            const T* Wl = W(theta, l);
            T* dW = grad + arch.woff[l];
            T* db = grad + arch.boff[l];
            // dW tiles (rows x cols of dW, each a full reduction over m in one BLAS call) ...
            const Chunks rows{nl, 64}, cols{np, 256};
            const int ntiles = rows.count() * cols.count();
            // ... and column chunks of dA[l-1] = W^T dZ[l], then dZ[l-1] = dA * mask / keep * g'(Z[l-1]).
            const int nchunks = l > 1 ? ch.count() : 0;
            const double flops = 4.0 * nl * np * m;
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads()) if (worth_parallel(flops))
            for (int t = 0; t < ntiles + nchunks; ++t) {
                if (t < ntiles) {
                    const int rc = t / cols.count(), cc = t % cols.count();
                    const int r0 = rows.begin(rc), r1 = rows.end(rc), c0 = cols.begin(cc), c1 = cols.end(cc);
                    gemm(false, true, r1 - r0, c1 - c0, m, T(1), dz + size_t(r0) * m, m, Aprev + size_t(c0) * m, m,
                         T(0), dW + size_t(r0) * np + c0, np);
                    if (cl2 != T(0) || cl1 != T(0)) {
                        for (int i = r0; i < r1; ++i)
                            for (int j = c0; j < c1; ++j) {
                                const T w = Wl[size_t(i) * np + j];
                                const T sg = w > T(0) ? T(1) : (w < T(0) ? T(-1) : T(0));
                                dW[size_t(i) * np + j] += cl2 * w + cl1 * sg;
                            }
                    }
                    if (cc == 0) {
                        for (int i = r0; i < r1; ++i) {
                            T s = T(0);
                            const T* row = dz + size_t(i) * m;
                            for (int j = 0; j < m; ++j) s += row[j];
                            db[i] = s;
                        }
                    }
                } else {
                    const int c = t - ntiles, j0 = ch.begin(c), j1 = ch.end(c), w = j1 - j0;
                    T* da = dA.data();
                    gemm(true, false, np, w, nl, T(1), Wl, np, dz + j0, m, T(0), da + j0, m);
                    if (dp.on(l - 1)) apply_dropout(dp, l - 1, np, m, j0, j1, da);
                    const T* zp = Z[l - 1].data();
                    T* dzp = dZ[l - 1].data();
                    for (int i = 0; i < np; ++i) {
                        const size_t o = size_t(i) * m + j0;
                        act_backward(arch.hidden, zp + o, da + o, dzp + o, size_t(w), alpha);
                    }
                }
            }
        }
        return J;
    }
};

}  // namespace dnnkit
