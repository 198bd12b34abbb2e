// CUDA backend: an absmax quantization kernel; cuBLAS reports its version.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstring>
#include <stdexcept>

#include "qext.h"

namespace {

__global__ void absmax_kernel(const float* x, int n, unsigned int* bits) {
  unsigned int local = 0;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    unsigned int b = __float_as_uint(fabsf(x[i]));
    if (b > local) local = b;
  }
  atomicMax(bits, local);
}

__global__ void quantize_kernel(const float* x, int n, float scale, int8_t* q) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    float r = nearbyintf(x[i] / scale);
    q[i] = static_cast<int8_t>(fmaxf(-127.0f, fminf(127.0f, r)));
  }
}

void check(cudaError_t err) {
  if (err != cudaSuccess) throw std::runtime_error(cudaGetErrorString(err));
}

}  // namespace

namespace qext {

std::string cuda_unavailable() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) return std::string("no GPU: ") + cudaGetErrorString(err);
  if (count == 0) return "no GPU: no CUDA device is visible";
  return "";
}

int cuda_runtime_version() { return CUDART_VERSION; }

int cublas_version() {
  int major = 0, minor = 0, patch = 0;
  if (cublasGetProperty(MAJOR_VERSION, &major) != CUBLAS_STATUS_SUCCESS ||
      cublasGetProperty(MINOR_VERSION, &minor) != CUBLAS_STATUS_SUCCESS ||
      cublasGetProperty(PATCH_LEVEL, &patch) != CUBLAS_STATUS_SUCCESS)
    return -1;
  return major * 10000 + minor * 100 + patch;
}

float quantize_int8_cuda(const std::vector<float>& x, std::vector<int8_t>& q) {
  std::string why = cuda_unavailable();
  if (!why.empty()) throw std::runtime_error(why);
  const int n = static_cast<int>(x.size());
  q.assign(x.size(), 0);
  if (n == 0) return 0.0f;
  float* d_x = nullptr;
  int8_t* d_q = nullptr;
  unsigned int* d_bits = nullptr;
  unsigned int bits = 0;
  check(cudaMalloc(&d_x, sizeof(float) * n));
  check(cudaMalloc(&d_q, n));
  check(cudaMalloc(&d_bits, sizeof(unsigned int)));
  check(cudaMemcpy(d_x, x.data(), sizeof(float) * n, cudaMemcpyHostToDevice));
  check(cudaMemset(d_bits, 0, sizeof(unsigned int)));
  const int threads = 256, blocks = (n + threads - 1) / threads < 1024 ? (n + threads - 1) / threads : 1024;
  absmax_kernel<<<blocks, threads>>>(d_x, n, d_bits);
  check(cudaMemcpy(&bits, d_bits, sizeof(bits), cudaMemcpyDeviceToHost));
  float absmax;
  memcpy(&absmax, &bits, sizeof(float));
  float scale = absmax / 127.0f;
  if (absmax > 0.0f) {
    quantize_kernel<<<blocks, threads>>>(d_x, n, scale, d_q);
    check(cudaMemcpy(q.data(), d_q, n, cudaMemcpyDeviceToHost));
  } else {
    scale = 0.0f;
  }
  cudaFree(d_x);
  cudaFree(d_q);
  cudaFree(d_bits);
  return scale;
}

}  // namespace qext
