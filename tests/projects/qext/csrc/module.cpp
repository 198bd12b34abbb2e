// The Python module (nanobind): the same API from every backend.
#include <nanobind/nanobind.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "qext.h"

namespace nb = nanobind;

#define QEXT_STR2(x) #x
#define QEXT_STR(x) QEXT_STR2(x)

NB_MODULE(QEXT_MODULE_NAME, m) {
  m.attr("backend") = QEXT_STR(QEXT_MODULE_NAME);
  m.def(
      "quantize_int8",
      [](const std::vector<float>& x) {
        std::vector<int8_t> q;
        float scale = qext::quantize_int8(x, q);
        return std::make_pair(q, scale);
      },
      nb::arg("x"), "Absmax int8 quantization on the CPU: (values, scale).");
#ifdef QEXT_CUDA
  m.def("cuda_unavailable", &qext::cuda_unavailable, "Why the GPU cannot be used here ('' when it can).");
  m.def("cuda_runtime_version", &qext::cuda_runtime_version);
  m.def("cublas_version", &qext::cublas_version);
  m.def(
      "quantize_int8_cuda",
      [](const std::vector<float>& x) {
        std::vector<int8_t> q;
        float scale = qext::quantize_int8_cuda(x, q);
        return std::make_pair(q, scale);
      },
      nb::arg("x"), "Absmax int8 quantization on the GPU: (values, scale).");
#endif
}
