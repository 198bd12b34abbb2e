// qext's kernels: plain C++ (and CUDA), no Python.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qext {

// Absmax int8 quantization: scale = max|x| / 127, q[i] = round(x[i] / scale) clamped to [-127, 127].
float quantize_int8(const std::vector<float>& x, std::vector<int8_t>& q);

#ifdef QEXT_CUDA
// What the CUDA backend can do here: an empty string when a GPU is usable, else why not.
std::string cuda_unavailable();
int cuda_runtime_version();  // CUDART_VERSION the module was built with
int cublas_version();        // cuBLAS major*10000 + minor*100 + patch, from the loaded libcublas
float quantize_int8_cuda(const std::vector<float>& x, std::vector<int8_t>& q);
#endif

}  // namespace qext
