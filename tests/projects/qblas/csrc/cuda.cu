// CUDA backend: a small quantization kernel and cuBLAS SGEMM, host-memory API.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <string.h>

#include "qblas.h"

namespace {

// Non-negative floats order like their bit patterns, so atomicMax on the bits is a float max.
__global__ void absmax_kernel(const float* x, int n, unsigned int* absmax_bits) {
  unsigned int local = 0;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    unsigned int bits = __float_as_uint(fabsf(x[i]));
    if (bits > local) local = bits;
  }
  atomicMax(absmax_bits, local);
}

__global__ void quantize_kernel(const float* x, int n, float scale, int8_t* q) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    q[i] = qblas_detail::quantize_one(x[i], scale);
}

bool device_usable() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

// Device buffers freed on every return path.
struct DeviceBuffers {
  void* ptr[3] = {nullptr, nullptr, nullptr};
  ~DeviceBuffers() {
    for (void* p : ptr)
      if (p) cudaFree(p);
  }
};

}  // namespace

QBLAS_API int qblas_backend(void) { return 1; }
QBLAS_API int qblas_cuda_runtime_version(void) { return CUDART_VERSION; }

QBLAS_API int qblas_blas_version(void) {
  int major = 0, minor = 0, patch = 0;
  if (cublasGetProperty(MAJOR_VERSION, &major) != CUBLAS_STATUS_SUCCESS ||
      cublasGetProperty(MINOR_VERSION, &minor) != CUBLAS_STATUS_SUCCESS ||
      cublasGetProperty(PATCH_LEVEL, &patch) != CUBLAS_STATUS_SUCCESS)
    return -1;
  return major * 10000 + minor * 100 + patch;
}

QBLAS_API int qblas_absmax_quantize_int8(const float* x, int n, int8_t* q, float* scale) {
  if (!qblas_detail::quantize_args_ok(x, n, q, scale)) return QBLAS_ERR_INVALID_ARGUMENT;
  if (!device_usable()) return QBLAS_ERR_NO_DEVICE;
  if (n == 0) {
    *scale = 0.0f;
    return QBLAS_OK;
  }
  DeviceBuffers buf;
  float* d_x;
  int8_t* d_q;
  unsigned int* d_bits;
  if (cudaMalloc(&buf.ptr[0], sizeof(float) * n) != cudaSuccess ||
      cudaMalloc(&buf.ptr[1], sizeof(int8_t) * n) != cudaSuccess ||
      cudaMalloc(&buf.ptr[2], sizeof(unsigned int)) != cudaSuccess)
    return QBLAS_ERR_CUDA;
  d_x = static_cast<float*>(buf.ptr[0]);
  d_q = static_cast<int8_t*>(buf.ptr[1]);
  d_bits = static_cast<unsigned int*>(buf.ptr[2]);

  const int threads = 256;
  const int blocks = (n + threads - 1) / threads < 1024 ? (n + threads - 1) / threads : 1024;
  unsigned int bits = 0;
  if (cudaMemcpy(d_x, x, sizeof(float) * n, cudaMemcpyHostToDevice) != cudaSuccess ||
      cudaMemset(d_bits, 0, sizeof(unsigned int)) != cudaSuccess)
    return QBLAS_ERR_CUDA;
  absmax_kernel<<<blocks, threads>>>(d_x, n, d_bits);
  if (cudaGetLastError() != cudaSuccess ||
      cudaMemcpy(&bits, d_bits, sizeof(bits), cudaMemcpyDeviceToHost) != cudaSuccess)
    return QBLAS_ERR_CUDA;
  float absmax;
  memcpy(&absmax, &bits, sizeof(absmax));
  const float s = qblas_detail::scale_from_absmax(absmax);  // same host arithmetic as the CPU backend
  quantize_kernel<<<blocks, threads>>>(d_x, n, s, d_q);
  if (cudaGetLastError() != cudaSuccess ||
      cudaMemcpy(q, d_q, sizeof(int8_t) * n, cudaMemcpyDeviceToHost) != cudaSuccess)
    return QBLAS_ERR_CUDA;
  *scale = s;
  return QBLAS_OK;
}

QBLAS_API int qblas_sgemm(int m, int n, int k, float alpha, const float* A, int lda,
                          const float* B, int ldb, float beta, float* C, int ldc) {
  if (!qblas_detail::sgemm_args_ok(m, n, k, A, lda, B, ldb, C, ldc))
    return QBLAS_ERR_INVALID_ARGUMENT;
  if (!device_usable()) return QBLAS_ERR_NO_DEVICE;
  if (m == 0 || n == 0) return QBLAS_OK;
  const size_t a_n = static_cast<size_t>(lda) * (k > 0 ? k : 1);
  const size_t b_n = static_cast<size_t>(ldb) * n, c_n = static_cast<size_t>(ldc) * n;
  DeviceBuffers buf;
  if (cudaMalloc(&buf.ptr[0], sizeof(float) * a_n) != cudaSuccess ||
      cudaMalloc(&buf.ptr[1], sizeof(float) * b_n) != cudaSuccess ||
      cudaMalloc(&buf.ptr[2], sizeof(float) * c_n) != cudaSuccess)
    return QBLAS_ERR_CUDA;
  float* d_a = static_cast<float*>(buf.ptr[0]);
  float* d_b = static_cast<float*>(buf.ptr[1]);
  float* d_c = static_cast<float*>(buf.ptr[2]);
  if ((k > 0 && (cudaMemcpy(d_a, A, sizeof(float) * a_n, cudaMemcpyHostToDevice) != cudaSuccess ||
                 cudaMemcpy(d_b, B, sizeof(float) * b_n, cudaMemcpyHostToDevice) != cudaSuccess)) ||
      cudaMemcpy(d_c, C, sizeof(float) * c_n, cudaMemcpyHostToDevice) != cudaSuccess)
    return QBLAS_ERR_CUDA;

  cublasHandle_t handle;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) return QBLAS_ERR_CUBLAS;
  cublasStatus_t st = cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, d_a, lda,
                                  d_b, ldb, &beta, d_c, ldc);
  cublasDestroy(handle);
  if (st != CUBLAS_STATUS_SUCCESS) return QBLAS_ERR_CUBLAS;
  if (cudaMemcpy(C, d_c, sizeof(float) * c_n, cudaMemcpyDeviceToHost) != cudaSuccess)
    return QBLAS_ERR_CUDA;
  return QBLAS_OK;
}
