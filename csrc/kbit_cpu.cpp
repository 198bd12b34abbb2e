/* kbit CPU backend: portable C++17, threads from pthreads (Win32 threads on Windows), no C++
 * runtime. The per-element rules come from kbit_common.h, shared with the CUDA backend. */
#include <stdlib.h>

#include "kbit_common.h"

#if defined(__x86_64__) || defined(_M_X64)
#  include <xmmintrin.h>
#endif
#if defined(_WIN32)
#  include <windows.h>
#else
#  include <pthread.h>
#  include <sched.h>
#  include <unistd.h>
#endif

static const float k_dynamic_mid[256] = KBIT_DYNAMIC_MID;
static const float k_linear_mid[256] = KBIT_LINEAR_MID;
static const float k_dynamic_values[256] = KBIT_DYNAMIC_VALUES;
static const float k_linear_values[256] = KBIT_LINEAR_VALUES;
/* 4-bit midpoints with a 16th +inf sentinel for the bucket scan below. */
static float k_nf4_mid[16] = KBIT_NF4_MID;
static float k_fp4_mid[16] = KBIT_FP4_MID;
static const uint8_t k_nf4_order[16] = KBIT_NF4_ORDER;
static const uint8_t k_fp4_order[16] = KBIT_FP4_ORDER;
static const float k_nf4_values[16] = KBIT_NF4_VALUES;
static const float k_fp4_values[16] = KBIT_FP4_VALUES;

/* ---------------------------------------------------------------- midpoint search
 *
 * The count k = #{i : n > m_i} by binary search is a chain of dependent loads. The CPU backend
 * gets the same k faster: a table indexed by the top 16 bits of n (sign, exponent, 7 mantissa
 * bits) gives a lower bound lo <= k (the count for the smallest value in that bucket), then
 * `while (mid[k] < n) ++k` finishes it (at most a step or two for kbit's codes). The scan
 * ends at the +inf sentinel, and any lo <= k gives the exact k, so the result is the
 * definition's count whatever the table holds. */
static uint8_t g_lo_dynamic[65536], g_lo_linear[65536], g_lo_nf4[65536], g_lo_fp4[65536];

static void kbit_build_lower_bounds(uint8_t *lo, const float *mid) {
    int k = 0; /* positive keys: bucket minimum = key << 16, increasing with the key */
    for (uint32_t key = 0; key < 0x8000u; ++key) {
        float v = kbit_bits_f32(key << 16);
        while (mid[k] < v) ++k;
        lo[key] = (uint8_t)k;
    }
    k = 0; /* negative keys, from -inf up to -0: bucket minimum = (key << 16) | 0xffff */
    for (uint32_t key = 0xffffu; key >= 0x8000u; --key) {
        uint32_t bits = (key << 16) | 0xffffu;
        if ((bits & 0x7fffffffu) > 0x7f800000u) bits = key << 16; /* the -inf bucket */
        float v = kbit_bits_f32(bits);
        while (mid[k] < v) ++k; /* NaN buckets: no step, lo stays 0 (never used) */
        lo[key] = (uint8_t)k;
    }
}

static inline int kbit_count_below(float n, const float *mid, const uint8_t *lo) {
    int k = lo[kbit_f32_bits(n) >> 16];
    k += mid[k] < n ? 1 : 0; /* branch-free: no bucket of kbit's codes holds two midpoints */
    while (mid[k] < n) ++k;  /* never taken for kbit's codes; keeps the count exact regardless */
    return k;
}

/* ---------------------------------------------------------------- threads */

enum { KBIT_MAX_THREADS = 64 };
/* Elements a thread must have before another thread is worth starting (~0.1 ms of work). */
static const int64_t k_min_elems_per_thread = 1 << 17;

static int kbit_cpu_threads(void) {
    const char *env = getenv("KBIT_NUM_THREADS");
    if (env != nullptr && env[0] != '\0') {
        long v = strtol(env, nullptr, 10);
        if (v >= 1) return v > KBIT_MAX_THREADS ? KBIT_MAX_THREADS : (int)v;
    }
    int n = 1;
#if defined(_WIN32)
    SYSTEM_INFO info;
    GetSystemInfo(&info);
    n = (int)info.dwNumberOfProcessors;
#elif defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    else
        n = (int)sysconf(_SC_NPROCESSORS_ONLN);
#else
    n = (int)sysconf(_SC_NPROCESSORS_ONLN);
#endif
    if (n < 1) n = 1;
    return n > KBIT_MAX_THREADS ? KBIT_MAX_THREADS : n;
}

struct kbit_task {
    void (*fn)(const void *ctx, int64_t begin, int64_t end);
    const void *ctx;
    int64_t begin, end;
};

#if defined(_WIN32)
static DWORD WINAPI kbit_thread_main(LPVOID p) {
#else
static void *kbit_thread_main(void *p) {
#endif
    const kbit_task *t = (const kbit_task *)p;
#if defined(__x86_64__) || defined(_M_X64)
    /* IEEE float32 as docs/kbit-formats.md defines it, whatever the caller's floating-point
     * state: no flush-to-zero (bit 15), no denormals-are-zero (bit 6), round to nearest (bits
     * 13-14 = 0). A library built with -ffast-math in the same process may have set them. */
    unsigned saved = _mm_getcsr();
    _mm_setcsr(saved & ~(0x8000u | 0x0040u | 0x6000u));
    t->fn(t->ctx, t->begin, t->end);
    _mm_setcsr(saved);
#else
    t->fn(t->ctx, t->begin, t->end);
#endif
    return 0;
}

/* Runs fn over [0, items) in contiguous chunks on up to kbit_cpu_threads() threads; the calling
 * thread takes the first chunk. If a thread cannot be started its chunk runs here. */
static void kbit_parallel_for(int64_t items, int64_t elems_per_item,
                              void (*fn)(const void *, int64_t, int64_t), const void *ctx) {
    if (items <= 0) return;
    int64_t want = (items * elems_per_item) / k_min_elems_per_thread;
    int threads = kbit_cpu_threads();
    if (want < threads) threads = want < 1 ? 1 : (int)want;
    if (threads > items) threads = (int)items;
    if (threads <= 1) {
        kbit_task task = {fn, ctx, 0, items};
        kbit_thread_main(&task);
        return;
    }
    kbit_task tasks[KBIT_MAX_THREADS];
#if defined(_WIN32)
    HANDLE handles[KBIT_MAX_THREADS];
#else
    pthread_t handles[KBIT_MAX_THREADS];
#endif
    bool started[KBIT_MAX_THREADS];
    for (int t = 0; t < threads; ++t) {
        tasks[t].fn = fn;
        tasks[t].ctx = ctx;
        tasks[t].begin = items * t / threads;
        tasks[t].end = items * (t + 1) / threads;
        started[t] = false;
    }
    for (int t = 1; t < threads; ++t) {
#if defined(_WIN32)
        handles[t] = CreateThread(nullptr, 0, kbit_thread_main, &tasks[t], 0, nullptr);
        started[t] = handles[t] != nullptr;
#else
        started[t] = pthread_create(&handles[t], nullptr, kbit_thread_main, &tasks[t]) == 0;
#endif
    }
    kbit_thread_main(&tasks[0]);
    for (int t = 1; t < threads; ++t) {
        if (!started[t]) {
            kbit_thread_main(&tasks[t]);
            continue;
        }
#if defined(_WIN32)
        WaitForSingleObject(handles[t], INFINITE);
        CloseHandle(handles[t]);
#else
        pthread_join(handles[t], nullptr);
#endif
    }
}

/* ---------------------------------------------------------------- dtype conversion
 *
 * Each block is converted to float32 in a stack buffer (in) or from one (out). float16 uses the
 * F16C instructions where the CPU has them: VCVTPH2PS is exact and VCVTPS2PH with
 * _MM_FROUND_TO_NEAREST_INT rounds to nearest even with subnormals, Inf and quiet NaN exactly as
 * kbit_float_to_half does (tests compare both paths; KBIT_CPU_PORTABLE=1 forces the portable
 * one). Everything else is the portable code of kbit_common.h. */
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#  define KBIT_F16C 1
#  include <cpuid.h>
#  include <immintrin.h>

__attribute__((target("avx,f16c"))) static void kbit_f16_to_f32_f16c(const uint16_t *in, float *out,
                                                                      int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + i))));
    for (; i < n; ++i) out[i] = kbit_half_to_float(in[i]);
}

__attribute__((target("avx,f16c"))) static void kbit_f32_to_f16_f16c(const float *in, uint16_t *out,
                                                                      int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(in + i),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; ++i) out[i] = kbit_float_to_half(in[i]);
}

static bool kbit_detect_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const unsigned osxsave = 1u << 27, avx = 1u << 28, f16c = 1u << 29;
    if ((c & (osxsave | avx | f16c)) != (osxsave | avx | f16c)) return false;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6u) == 6u; /* the OS saves XMM and YMM state */
}
#endif

static bool g_has_f16c = false;

static bool kbit_use_f16c(void) {
    if (!g_has_f16c) return false;
    const char *env = getenv("KBIT_CPU_PORTABLE");
    return env == nullptr || env[0] == '\0' || env[0] == '0';
}

template <int DT>
static inline void to_f32(const void *in, int64_t start, int64_t count, float *buf, bool f16c) {
    if (DT == KBIT_FLOAT16) {
        const uint16_t *h = (const uint16_t *)in + start;
#if defined(KBIT_F16C)
        if (f16c) {
            kbit_f16_to_f32_f16c(h, buf, count);
            return;
        }
#endif
        (void)f16c;
        for (int64_t i = 0; i < count; ++i) buf[i] = kbit_half_to_float(h[i]);
    } else {
        const uint16_t *h = (const uint16_t *)in + start;
        for (int64_t i = 0; i < count; ++i) buf[i] = kbit_bf16_to_float(h[i]);
    }
}

template <int DT>
static inline void from_f32(const float *buf, int64_t count, void *out, int64_t start, bool f16c) {
    if (DT == KBIT_FLOAT16) {
        uint16_t *h = (uint16_t *)out + start;
#if defined(KBIT_F16C)
        if (f16c) {
            kbit_f32_to_f16_f16c(buf, h, count);
            return;
        }
#endif
        (void)f16c;
        for (int64_t i = 0; i < count; ++i) h[i] = kbit_float_to_half(buf[i]);
    } else {
        uint16_t *h = (uint16_t *)out + start;
        for (int64_t i = 0; i < count; ++i) h[i] = kbit_float_to_bf16(buf[i]);
    }
}

/* Load time: code lookup tables and the CPU feature check (no C++ runtime: a plain ELF/PE
 * constructor). */
__attribute__((constructor)) static void kbit_cpu_init(void) {
#if defined(KBIT_F16C)
    g_has_f16c = kbit_detect_f16c();
#endif
    k_nf4_mid[15] = KBIT_INF;
    k_fp4_mid[15] = KBIT_INF;
    kbit_build_lower_bounds(g_lo_dynamic, k_dynamic_mid);
    kbit_build_lower_bounds(g_lo_linear, k_linear_mid);
    kbit_build_lower_bounds(g_lo_nf4, k_nf4_mid);
    kbit_build_lower_bounds(g_lo_fp4, k_fp4_mid);
}

/* ---------------------------------------------------------------- kernels */

struct kbit_job {
    const void *in;
    uint8_t *codes;
    float *absmax;
    void *out;
    const uint8_t *cin;
    const float *absmax_in;
    const float *mid;
    const uint8_t *lo;
    const float *values;
    const uint8_t *order;
    int64_t n;
    int blocksize;
    bool f16c;
};

enum { KBIT_MAX_BLOCK = 4096 };

/* Largest |x| over the finite elements (kbit_abs_finite, max). Done on the bit patterns: for
 * non-negative floats integer order is float order, and the loop has no data-dependent branch
 * (random signs made the float version mispredict) and vectorises. */
static inline float block_absmax(const float *x, int64_t count) {
    uint32_t m = 0;
    for (int64_t i = 0; i < count; ++i) {
        uint32_t a = kbit_f32_bits(x[i]) & 0x7fffffffu;
        a = a < 0x7f800000u ? a : 0u; /* Inf and NaN count as 0 */
        m = a > m ? a : m;
    }
    return kbit_bits_f32(m);
}

/* kbit_normalise over a block, written so that the compiler vectorises the division: with
 * absmax > 0 and finite, x / absmax is NaN exactly when x is NaN, which then becomes 0. */
static inline void normalise_block(const float *x, int64_t count, float am, float *out) {
    if (am == 0.0f) {
        for (int64_t i = 0; i < count; ++i) out[i] = 0.0f;
        return;
    }
    for (int64_t i = 0; i < count; ++i) {
        float v = x[i] / am;
        out[i] = v == v ? v : 0.0f;
    }
}

/* The block's values as float32: the input itself for float32, else converted into buf. */
template <int DT>
static inline const float *block_in(const kbit_job &j, int64_t start, int64_t count, float *buf) {
    if (DT == KBIT_FLOAT32) return (const float *)j.in + start;
    to_f32<DT>(j.in, start, count, buf, j.f16c);
    return buf;
}

template <int DT>
static void quantize8_range(const void *p, int64_t b0, int64_t b1) {
    const kbit_job j = *(const kbit_job *)p;
    float buf[KBIT_MAX_BLOCK], nbuf[KBIT_MAX_BLOCK];
    for (int64_t b = b0; b < b1; ++b) {
        int64_t start = b * j.blocksize;
        int64_t count = start + j.blocksize < j.n ? j.blocksize : j.n - start;
        const float *x = block_in<DT>(j, start, count, buf);
        float am = block_absmax(x, count);
        j.absmax[b] = am;
        normalise_block(x, count, am, nbuf);
        uint8_t *c = j.codes + start;
        for (int64_t i = 0; i < count; ++i) c[i] = (uint8_t)kbit_count_below(nbuf[i], j.mid, j.lo);
    }
}

template <int DT>
static void quantize4_range(const void *p, int64_t b0, int64_t b1) {
    const kbit_job j = *(const kbit_job *)p;
    float buf[KBIT_MAX_BLOCK], nbuf[KBIT_MAX_BLOCK];
    for (int64_t b = b0; b < b1; ++b) {
        int64_t start = b * j.blocksize; /* even: blocksize is even */
        int64_t count = start + j.blocksize < j.n ? j.blocksize : j.n - start;
        const float *x = block_in<DT>(j, start, count, buf);
        float am = block_absmax(x, count);
        j.absmax[b] = am;
        normalise_block(x, count, am, nbuf);
        uint8_t *c = j.codes + start / 2;
        for (int64_t i = 0; i < count; i += 2) {
            uint8_t hi = j.order[kbit_count_below(nbuf[i], j.mid, j.lo)];
            uint8_t lo = 0;
            if (i + 1 < count) lo = j.order[kbit_count_below(nbuf[i + 1], j.mid, j.lo)];
            c[i / 2] = (uint8_t)((hi << 4) | lo);
        }
    }
}

template <int DT>
static void dequantize8_range(const void *p, int64_t b0, int64_t b1) {
    const kbit_job j = *(const kbit_job *)p;
    float buf[KBIT_MAX_BLOCK];
    for (int64_t b = b0; b < b1; ++b) {
        int64_t start = b * j.blocksize;
        int64_t count = start + j.blocksize < j.n ? j.blocksize : j.n - start;
        float am = j.absmax_in[b];
        const uint8_t *c = j.cin + start;
        float *y = DT == KBIT_FLOAT32 ? (float *)j.out + start : buf;
        for (int64_t i = 0; i < count; ++i) y[i] = j.values[c[i]] * am;
        if (DT != KBIT_FLOAT32) from_f32<DT>(buf, count, j.out, start, j.f16c);
    }
}

template <int DT>
static void dequantize4_range(const void *p, int64_t b0, int64_t b1) {
    const kbit_job j = *(const kbit_job *)p;
    float buf[KBIT_MAX_BLOCK];
    for (int64_t b = b0; b < b1; ++b) {
        int64_t start = b * j.blocksize;
        int64_t count = start + j.blocksize < j.n ? j.blocksize : j.n - start;
        float am = j.absmax_in[b];
        const uint8_t *c = j.cin + start / 2;
        float *y = DT == KBIT_FLOAT32 ? (float *)j.out + start : buf;
        int64_t i = 0;
        for (; i + 1 < count; i += 2) {
            uint8_t byte = c[i / 2];
            y[i] = j.values[byte >> 4] * am;
            y[i + 1] = j.values[byte & 15] * am;
        }
        if (i < count) y[i] = j.values[c[i / 2] >> 4] * am;
        if (DT != KBIT_FLOAT32) from_f32<DT>(buf, count, j.out, start, j.f16c);
    }
}

typedef void (*kbit_range_fn)(const void *, int64_t, int64_t);

#define KBIT_PICK(fn, dtype)                                                                     \
    ((dtype) == KBIT_FLOAT32 ? (kbit_range_fn)fn<KBIT_FLOAT32>                                   \
     : (dtype) == KBIT_FLOAT16 ? (kbit_range_fn)fn<KBIT_FLOAT16>                                 \
                               : (kbit_range_fn)fn<KBIT_BFLOAT16>)

/* ---------------------------------------------------------------- ABI */

extern "C" {

KBIT_API const char *kbit_backend(void) { return "cpu"; }
KBIT_API int kbit_cuda_version(void) { return 0; }
KBIT_API int kbit_cuda_runtime_version(void) { return 0; }
KBIT_API const char *kbit_sass_archs(void) { return ""; }
KBIT_API const char *kbit_ptx_archs(void) { return ""; }
KBIT_API int kbit_device_count(void) { return 0; }

KBIT_API int kbit_quantize_blockwise(int dtype, int code, const void *in, uint8_t *out,
                                     float *absmax, int64_t n, int blocksize) {
    int st = kbit_check_args("kbit_quantize_blockwise", 8, dtype, code, in, out, absmax, n,
                             blocksize);
    if (st != KBIT_OK || n == 0) return st;
    kbit_job j = {};
    j.in = in;
    j.codes = out;
    j.absmax = absmax;
    j.n = n;
    j.blocksize = blocksize;
    j.f16c = kbit_use_f16c();
    j.mid = code == KBIT_CODE_DYNAMIC ? k_dynamic_mid : k_linear_mid;
    j.lo = code == KBIT_CODE_DYNAMIC ? g_lo_dynamic : g_lo_linear;
    kbit_parallel_for(kbit_num_blocks(n, blocksize), blocksize, KBIT_PICK(quantize8_range, dtype),
                      &j);
    return KBIT_OK;
}

KBIT_API int kbit_dequantize_blockwise(int dtype, int code, const uint8_t *in,
                                       const float *absmax, void *out, int64_t n, int blocksize) {
    int st = kbit_check_args("kbit_dequantize_blockwise", 8, dtype, code, out, in, absmax, n,
                             blocksize);
    if (st != KBIT_OK || n == 0) return st;
    kbit_job j = {};
    j.cin = in;
    j.absmax_in = absmax;
    j.out = out;
    j.n = n;
    j.blocksize = blocksize;
    j.f16c = kbit_use_f16c();
    j.values = code == KBIT_CODE_DYNAMIC ? k_dynamic_values : k_linear_values;
    kbit_parallel_for(kbit_num_blocks(n, blocksize), blocksize,
                      KBIT_PICK(dequantize8_range, dtype), &j);
    return KBIT_OK;
}

KBIT_API int kbit_quantize_4bit(int dtype, int code, const void *in, uint8_t *out, float *absmax,
                                int64_t n, int blocksize) {
    int st = kbit_check_args("kbit_quantize_4bit", 4, dtype, code, in, out, absmax, n, blocksize);
    if (st != KBIT_OK || n == 0) return st;
    kbit_job j = {};
    j.in = in;
    j.codes = out;
    j.absmax = absmax;
    j.n = n;
    j.blocksize = blocksize;
    j.f16c = kbit_use_f16c();
    j.mid = code == KBIT_NF4 ? k_nf4_mid : k_fp4_mid;
    j.lo = code == KBIT_NF4 ? g_lo_nf4 : g_lo_fp4;
    j.order = code == KBIT_NF4 ? k_nf4_order : k_fp4_order;
    kbit_parallel_for(kbit_num_blocks(n, blocksize), blocksize, KBIT_PICK(quantize4_range, dtype),
                      &j);
    return KBIT_OK;
}

KBIT_API int kbit_dequantize_4bit(int dtype, int code, const uint8_t *in, const float *absmax,
                                  void *out, int64_t n, int blocksize) {
    int st =
        kbit_check_args("kbit_dequantize_4bit", 4, dtype, code, out, in, absmax, n, blocksize);
    if (st != KBIT_OK || n == 0) return st;
    kbit_job j = {};
    j.cin = in;
    j.absmax_in = absmax;
    j.out = out;
    j.n = n;
    j.blocksize = blocksize;
    j.f16c = kbit_use_f16c();
    j.values = code == KBIT_NF4 ? k_nf4_values : k_fp4_values;
    kbit_parallel_for(kbit_num_blocks(n, blocksize), blocksize,
                      KBIT_PICK(dequantize4_range, dtype), &j);
    return KBIT_OK;
}

} /* extern "C" */
