/* qblas C API. Every function returns QBLAS_OK (0) or a QBLAS_ERR_* code unless noted. */
#ifndef QBLAS_H
#define QBLAS_H

#include <stdint.h>

#ifdef __cplusplus
#define QBLAS_API extern "C" __attribute__((visibility("default")))
#else
#define QBLAS_API __attribute__((visibility("default")))
#endif

enum {
  QBLAS_OK = 0,
  QBLAS_ERR_INVALID_ARGUMENT = 1,
  QBLAS_ERR_NO_DEVICE = 2,
  QBLAS_ERR_CUDA = 3,
  QBLAS_ERR_CUBLAS = 4,
};

/* 0 = cpu, 1 = cuda. */
QBLAS_API int qblas_backend(void);
/* CUDART_VERSION the library was built with (e.g. 13000); 0 for cpu. */
QBLAS_API int qblas_cuda_runtime_version(void);
/* Loaded cuBLAS version as major*10000 + minor*100 + patch (needs no GPU); 0 for cpu, -1 on error. */
QBLAS_API int qblas_blas_version(void);
/* Human-readable text for a return code (static storage). */
QBLAS_API const char* qblas_error_string(int code);

/* Symmetric int8: *scale = max|x| / 127, q[i] = clamp(round_half_away(x[i] / *scale), -127, 127).
   All pointers are host memory. An all-zero input gives *scale = 0 and q = 0. */
QBLAS_API int qblas_absmax_quantize_int8(const float* x, int n, int8_t* q, float* scale);

/* Column-major C = alpha * A(m x k) * B(k x n) + beta * C(m x n); host memory. */
QBLAS_API int qblas_sgemm(int m, int n, int k, float alpha, const float* A, int lda,
                          const float* B, int ldb, float beta, float* C, int ldc);

#ifdef __cplusplus
/* Internal helpers shared by the backends (not exported). */
#include <math.h>
#if defined(__CUDACC__)
#define QBLAS_HD __host__ __device__
#else
#define QBLAS_HD
#endif
namespace qblas_detail {
inline QBLAS_HD int8_t quantize_one(float x, float scale) {
  if (scale == 0.0f) return 0;
  float r = roundf(x / scale); /* roundf rounds halves away from zero */
  r = fminf(fmaxf(r, -127.0f), 127.0f);
  return static_cast<int8_t>(r);
}
inline float scale_from_absmax(float absmax) { return absmax / 127.0f; }
bool quantize_args_ok(const float* x, int n, const int8_t* q, const float* scale);
bool sgemm_args_ok(int m, int n, int k, const float* A, int lda, const float* B, int ldb,
                   const float* C, int ldc);
}  // namespace qblas_detail
#endif

#endif /* QBLAS_H */
