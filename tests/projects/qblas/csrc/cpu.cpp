// CPU backend: plain loops, no dependencies.
#include <math.h>

#include "qblas.h"

QBLAS_API int qblas_backend(void) { return 0; }
QBLAS_API int qblas_cuda_runtime_version(void) { return 0; }
QBLAS_API int qblas_blas_version(void) { return 0; }

QBLAS_API int qblas_absmax_quantize_int8(const float* x, int n, int8_t* q, float* scale) {
  if (!qblas_detail::quantize_args_ok(x, n, q, scale)) return QBLAS_ERR_INVALID_ARGUMENT;
  float absmax = 0.0f;
  for (int i = 0; i < n; ++i) {
    float a = fabsf(x[i]);
    if (a > absmax) absmax = a;
  }
  const float s = qblas_detail::scale_from_absmax(absmax);
  for (int i = 0; i < n; ++i) q[i] = qblas_detail::quantize_one(x[i], s);
  *scale = s;
  return QBLAS_OK;
}

QBLAS_API int qblas_sgemm(int m, int n, int k, float alpha, const float* A, int lda,
                          const float* B, int ldb, float beta, float* C, int ldc) {
  if (!qblas_detail::sgemm_args_ok(m, n, k, A, lda, B, ldb, C, ldc))
    return QBLAS_ERR_INVALID_ARGUMENT;
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      float acc = 0.0f;
      for (int p = 0; p < k; ++p) acc += A[i + p * lda] * B[p + j * ldb];
      float* c = &C[i + j * ldc];
      *c = alpha * acc + (beta == 0.0f ? 0.0f : beta * *c);
    }
  }
  return QBLAS_OK;
}
