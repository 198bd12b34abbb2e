/* kbit internals shared by the CPU (kbit_cpu.cpp) and CUDA (kbit_cuda.cu) backends.
 *
 * Everything that decides a result bit lives here, once: dtype conversions (round to nearest
 * even, by bit manipulation), the normalisation rule, the midpoint search. The CUDA kernels call
 * the very same functions (KBIT_HD = __host__ __device__), which is what makes the two backends
 * agree bit for bit. The formats are defined in docs/kbit-formats.md.
 */
#ifndef KBIT_COMMON_H
#define KBIT_COMMON_H

#include <stdint.h>
#include <string.h>

#include "kbit.h"
#include "kbit_codes.h"

#if defined(__CUDACC__)
#  define KBIT_HD __host__ __device__ __forceinline__
#elif defined(_MSC_VER)
#  define KBIT_HD static __forceinline
#else
#  define KBIT_HD static inline __attribute__((always_inline))
#endif

#define KBIT_FLT_MAX 3.402823466e38f

KBIT_HD uint32_t kbit_f32_bits(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
#endif
}

KBIT_HD float kbit_bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
#endif
}

/* IEEE binary16 -> float32, exact (subnormals, Inf, NaN payload kept). */
KBIT_HD float kbit_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1fu) return kbit_bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0u) {
        float f = (float)mant * 0x1p-24f; /* exact: mant < 2^10 */
        return sign ? -f : f;
    }
    return kbit_bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

/* float32 -> IEEE binary16, round to nearest even; overflow -> Inf; NaN -> quiet NaN. */
KBIT_HD uint16_t kbit_float_to_half(float f) {
    uint32_t x = kbit_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* Inf or NaN */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? (0x200u | ((ax >> 13) & 0x3ffu)) : 0u));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520: rounds to Inf */
    if (ax >= 0x38800000u) {                                  /* normal half */
        uint32_t base = (ax >> 13) - (112u << 10);
        uint32_t rem = ax & 0x1fffu;
        base += (rem > 0x1000u || (rem == 0x1000u && (base & 1u))) ? 1u : 0u;
        return (uint16_t)(sign | base);
    }
    uint32_t e = ax >> 23; /* half subnormal or zero: q = value / 2^-24 */
    if (e < 102u) return (uint16_t)sign; /* < 2^-25 (float subnormals included): rounds to 0 */
    uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
    uint32_t s = 126u - e; /* 14..24 */
    uint32_t q = mant >> s;
    uint32_t rem = mant & ((1u << s) - 1u);
    uint32_t half = 1u << (s - 1u);
    q += (rem > half || (rem == half && (q & 1u))) ? 1u : 0u;
    return (uint16_t)(sign | q);
}

KBIT_HD float kbit_bf16_to_float(uint16_t h) { return kbit_bits_f32((uint32_t)h << 16); }

/* float32 -> bfloat16, round to nearest even; NaN -> quiet NaN. */
KBIT_HD uint16_t kbit_float_to_bf16(float f) {
    uint32_t x = kbit_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* Element access by dtype (the pointer is the start of the array). */
KBIT_HD float kbit_load(int dtype, const void *p, int64_t i) {
    if (dtype == KBIT_FLOAT32) return ((const float *)p)[i];
    if (dtype == KBIT_FLOAT16) return kbit_half_to_float(((const uint16_t *)p)[i]);
    return kbit_bf16_to_float(((const uint16_t *)p)[i]);
}

KBIT_HD void kbit_store(int dtype, void *p, int64_t i, float v) {
    if (dtype == KBIT_FLOAT32)
        ((float *)p)[i] = v;
    else if (dtype == KBIT_FLOAT16)
        ((uint16_t *)p)[i] = kbit_float_to_half(v);
    else
        ((uint16_t *)p)[i] = kbit_float_to_bf16(v);
}

/* Contribution of one element to its block's absmax: |x| if finite, else 0. */
KBIT_HD float kbit_abs_finite(float x) {
    float a = x < 0.0f ? -x : x;
    return (a <= KBIT_FLT_MAX) ? a : 0.0f; /* NaN and Inf fail the test */
}

/* The normalisation rule: n = x / absmax; 0 when absmax is 0 or x is NaN. */
KBIT_HD float kbit_normalise(float x, float absmax) {
    if (absmax == 0.0f || x != x) return 0.0f;
    return x / absmax;
}

/* 8-bit codes: number of midpoints m_i with n > m_i; mid has 256 entries, mid[255] = +inf. */
KBIT_HD uint8_t kbit_index8(float n, const float *mid) {
    int pos = 0;
    for (int s = 128; s > 0; s >>= 1) pos += (mid[pos + s - 1] < n) ? s : 0;
    return (uint8_t)pos;
}

/* 4-bit codes: midpoint count over 15 (padded) midpoints, then sorted position -> storage index. */
KBIT_HD uint8_t kbit_index4(float n, const float *mid, const uint8_t *order) {
    int k = 0;
#if defined(__CUDACC__)
#  pragma unroll
#endif
    for (int i = 0; i < 15; ++i) k += (n > mid[i]) ? 1 : 0;
    return order[k];
}

/* Host-side checks and error reporting, shared by both backends (kbit_shared.cpp). */
#ifdef __cplusplus
extern "C" {
#endif
void kbit_clear_error(void);
int kbit_set_error(int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Validates a call; returns KBIT_OK or sets the error and returns its status.
 * bits: 8 or 4. Pointers may be NULL only when n == 0. */
int kbit_check_args(const char *fn, int bits, int dtype, int code, const void *data,
                    const void *packed, const void *absmax, int64_t n, int blocksize);
int64_t kbit_num_blocks(int64_t n, int blocksize);
#ifdef __cplusplus
}
#endif

#endif /* KBIT_COMMON_H */
