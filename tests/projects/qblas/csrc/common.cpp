// Backend-independent parts of the qblas C API.
#include "qblas.h"

namespace qblas_detail {

bool quantize_args_ok(const float* x, int n, const int8_t* q, const float* scale) {
  return n >= 0 && scale != nullptr && (n == 0 || (x != nullptr && q != nullptr));
}

bool sgemm_args_ok(int m, int n, int k, const float* A, int lda, const float* B, int ldb,
                   const float* C, int ldc) {
  if (m < 0 || n < 0 || k < 0) return false;
  if (lda < (m > 1 ? m : 1) || ldb < (k > 1 ? k : 1) || ldc < (m > 1 ? m : 1)) return false;
  if (m == 0 || n == 0) return true;
  return C != nullptr && (k == 0 || (A != nullptr && B != nullptr));
}

}  // namespace qblas_detail

QBLAS_API const char* qblas_error_string(int code) {
  switch (code) {
    case QBLAS_OK: return "ok";
    case QBLAS_ERR_INVALID_ARGUMENT: return "invalid argument";
    case QBLAS_ERR_NO_DEVICE: return "no usable CUDA device";
    case QBLAS_ERR_CUDA: return "CUDA runtime error";
    case QBLAS_ERR_CUBLAS: return "cuBLAS error";
    default: return "unknown error";
  }
}
