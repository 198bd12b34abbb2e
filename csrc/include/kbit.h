/* kbit: k-bit blockwise quantization kernels.
 *
 * This header is the one ABI of every kbit library (libkbit_cpu, libkbit_cuda<MAJOR><MINOR>):
 * extern "C", plain C types only, loaded from Python with ctypes. Both backends export exactly
 * these symbols. Changing a signature means bumping KBIT_ABI_VERSION.
 *
 * Formats (the Python reference in tests/kbit/reference.py is written from these definitions):
 *  - 8-bit blockwise: the input is cut into blocks of `blocksize` elements; absmax[b] is the
 *    largest |x| over the finite elements of block b (float32); each x is normalised n = x / absmax[b] (float32 division;
 *    n = 0 when absmax is 0) and stored as the index of the code value chosen by the code's
 *    float32 midpoints: index = number of midpoints m_i = (c_i + c_{i+1}) / 2 with n > m_i,
 *    for the sorted 256-entry code c. Codes: KBIT_CODE_DYNAMIC (signed dynamic tree code,
 *    7 exponent bits, as bitsandbytes' create_dynamic_map(signed=True)), KBIT_CODE_LINEAR
 *    (256 values evenly spaced over [-1, 1]).
 *  - 4-bit: NF4 or FP4 code of 16 values (tables in the kernels and the reference), chosen the
 *    same way over the sorted values, stored as the 4-bit index; two values per byte, element
 *    2i in the high nibble, 2i+1 in the low nibble; an odd tail leaves the low nibble 0.
 *  - dequantize: x = code[index] * absmax[b], computed in float32 and rounded to the output
 *    dtype (round to nearest even).
 *  - blocksize is one of 64, 128, 256, 512, 1024, 2048, 4096; n may be 0.
 *  - NaN/Inf: see the "Special values" section of docs/kbit-formats.md.
 *
 * Pointers: the CPU backend takes host pointers. The CUDA backend takes host or device pointers
 * (it asks cudaPointerGetAttributes and stages host memory through the device itself; device and
 * managed pointers are used in place and must all be on one GPU). With n == 0 nothing is read or
 * written and the pointers may be NULL.
 * Calls are synchronous: the CUDA backend launches on the legacy default stream and synchronises
 * it before returning. CPU backend environment: KBIT_NUM_THREADS (threads, default: the CPUs this
 * process may run on), KBIT_CPU_PORTABLE=1 (no F16C instructions for float16).
 * All functions return KBIT_OK or an error code; kbit_last_error() gives the message
 * (thread-local, valid until the next call on the same thread).
 */
#ifndef KBIT_H
#define KBIT_H

#include <stdint.h>

#if defined(_WIN32)
#  define KBIT_API __declspec(dllexport)
#else
#  define KBIT_API __attribute__((visibility("default")))
#endif

#define KBIT_ABI_VERSION 1

#ifdef __cplusplus
extern "C" {
#endif

enum kbit_status {
    KBIT_OK = 0,
    KBIT_ERR_INVALID_ARGUMENT = 1, /* bad dtype, code, blocksize, null pointer, negative n */
    KBIT_ERR_UNSUPPORTED = 2,      /* valid request this build cannot serve */
    KBIT_ERR_CUDA = 3,             /* a CUDA runtime call failed; message has cudaGetErrorString */
    KBIT_ERR_NO_DEVICE = 4,        /* CUDA backend loaded but no usable GPU / driver */
    KBIT_ERR_OUT_OF_MEMORY = 5
};

enum kbit_dtype { KBIT_FLOAT32 = 0, KBIT_FLOAT16 = 1, KBIT_BFLOAT16 = 2 };
enum kbit_code8 { KBIT_CODE_DYNAMIC = 0, KBIT_CODE_LINEAR = 1 };
enum kbit_code4 { KBIT_NF4 = 0, KBIT_FP4 = 1 };

/* Identity: what this library is. Strings are static, never freed. */
KBIT_API int kbit_abi_version(void);
KBIT_API const char *kbit_version(void);      /* "0.1.0" */
KBIT_API const char *kbit_backend(void);      /* "cpu" or "cuda" */
KBIT_API int kbit_cuda_version(void);         /* CUDART_VERSION built with, e.g. 12040; 0 on cpu */
KBIT_API int kbit_cuda_runtime_version(void); /* cudaRuntimeGetVersion(); 0 on cpu */
KBIT_API const char *kbit_sass_archs(void);   /* "50;60;70;..." as built; "" on cpu */
KBIT_API const char *kbit_ptx_archs(void);    /* "90"; "" on cpu */
KBIT_API int kbit_device_count(void);         /* usable GPUs (cudaGetDeviceCount); 0 on cpu */
KBIT_API const char *kbit_last_error(void);

/* 8-bit blockwise. in: n elements of dtype; out: n bytes; absmax: ceil(n/blocksize) floats. */
KBIT_API int kbit_quantize_blockwise(int dtype, int code, const void *in, uint8_t *out,
                                     float *absmax, int64_t n, int blocksize);
KBIT_API int kbit_dequantize_blockwise(int dtype, int code, const uint8_t *in,
                                       const float *absmax, void *out, int64_t n, int blocksize);

/* 4-bit. out/in packed: ceil(n/2) bytes; absmax: ceil(n/blocksize) floats. */
KBIT_API int kbit_quantize_4bit(int dtype, int code, const void *in, uint8_t *out, float *absmax,
                                int64_t n, int blocksize);
KBIT_API int kbit_dequantize_4bit(int dtype, int code, const uint8_t *in, const float *absmax,
                                  void *out, int64_t n, int blocksize);

#ifdef __cplusplus
}
#endif

#endif /* KBIT_H */
