// Thin, typed wrappers over the OpenBLAS shipped as scipy-openblas32 (symbols prefixed scipy_).
// All matrices are row-major (C order), matching NumPy's default layout.
#pragma once
#include <cblas.h>

namespace dnnkit {

inline void blas_set_threads(int n) { scipy_openblas_set_num_threads(n); }
inline int blas_get_threads() { return scipy_openblas_get_num_threads(); }
inline const char* blas_corename() { return scipy_openblas_get_corename(); }
inline const char* blas_config() { return scipy_openblas_get_config(); }

// C(MxN) = alpha * op(A) * op(B) + beta * C, row-major.
inline void gemm(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda,
                 const double* B, int ldb, double beta, double* C, int ldc) {
    if (M <= 0 || N <= 0) return;
    scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
                      alpha, A, lda, B, ldb, beta, C, ldc);
}
inline void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc) {
    if (M <= 0 || N <= 0) return;
    scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
                      alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace dnnkit
