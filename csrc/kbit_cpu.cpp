/* kbit CPU backend: portable C++17, threads from pthreads (Win32 threads on Windows), no C++
 * runtime. The per-element rules come from kbit_common.h, shared with the CUDA backend. */
#include <stdlib.h>

#include "kbit_common.h"

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
static const float k_nf4_mid[15] = KBIT_NF4_MID;
static const float k_fp4_mid[15] = KBIT_FP4_MID;
static const uint8_t k_nf4_order[16] = KBIT_NF4_ORDER;
static const uint8_t k_fp4_order[16] = KBIT_FP4_ORDER;
static const float k_nf4_values[16] = KBIT_NF4_VALUES;
static const float k_fp4_values[16] = KBIT_FP4_VALUES;

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
    t->fn(t->ctx, t->begin, t->end);
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
        fn(ctx, 0, items);
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

/* ---------------------------------------------------------------- kernels */

struct kbit_job {
    const void *in;
    uint8_t *codes;
    float *absmax;
    void *out;
    const uint8_t *cin;
    const float *absmax_in;
    const float *mid;
    const float *values;
    const uint8_t *order;
    int64_t n;
    int blocksize;
};

template <int DT>
static inline float block_absmax(const void *in, int64_t start, int64_t end) {
    float m = 0.0f;
    for (int64_t i = start; i < end; ++i) {
        float a = kbit_abs_finite(kbit_load(DT, in, i));
        m = a > m ? a : m;
    }
    return m;
}

template <int DT>
static void quantize8_range(const void *p, int64_t b0, int64_t b1) {
    const kbit_job &j = *(const kbit_job *)p;
    for (int64_t b = b0; b < b1; ++b) {
        int64_t start = b * j.blocksize;
        int64_t end = start + j.blocksize < j.n ? start + j.blocksize : j.n;
        float am = block_absmax<DT>(j.in, start, end);
        j.absmax[b] = am;
        for (int64_t i = start; i < end; ++i)
            j.codes[i] = kbit_index8(kbit_normalise(kbit_load(DT, j.in, i), am), j.mid);
    }
}

template <int DT>
static void dequantize8_range(const void *p, int64_t b0, int64_t b1) {
    const kbit_job &j = *(const kbit_job *)p;
    for (int64_t b = b0; b < b1; ++b) {
        int64_t start = b * j.blocksize;
        int64_t end = start + j.blocksize < j.n ? start + j.blocksize : j.n;
        float am = j.absmax_in[b];
        for (int64_t i = start; i < end; ++i) kbit_store(DT, j.out, i, j.values[j.cin[i]] * am);
    }
}

template <int DT>
static void quantize4_range(const void *p, int64_t b0, int64_t b1) {
    const kbit_job &j = *(const kbit_job *)p;
    for (int64_t b = b0; b < b1; ++b) {
        int64_t start = b * j.blocksize; /* even: blocksize is even */
        int64_t end = start + j.blocksize < j.n ? start + j.blocksize : j.n;
        float am = block_absmax<DT>(j.in, start, end);
        j.absmax[b] = am;
        for (int64_t i = start; i < end; i += 2) {
            uint8_t hi = kbit_index4(kbit_normalise(kbit_load(DT, j.in, i), am), j.mid, j.order);
            uint8_t lo = 0;
            if (i + 1 < end)
                lo = kbit_index4(kbit_normalise(kbit_load(DT, j.in, i + 1), am), j.mid, j.order);
            j.codes[i >> 1] = (uint8_t)((hi << 4) | lo);
        }
    }
}

template <int DT>
static void dequantize4_range(const void *p, int64_t b0, int64_t b1) {
    const kbit_job &j = *(const kbit_job *)p;
    for (int64_t b = b0; b < b1; ++b) {
        int64_t start = b * j.blocksize;
        int64_t end = start + j.blocksize < j.n ? start + j.blocksize : j.n;
        float am = j.absmax_in[b];
        for (int64_t i = start; i < end; i += 2) {
            uint8_t byte = j.cin[i >> 1];
            kbit_store(DT, j.out, i, j.values[byte >> 4] * am);
            if (i + 1 < end) kbit_store(DT, j.out, i + 1, j.values[byte & 15] * am);
        }
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
    j.mid = code == KBIT_CODE_DYNAMIC ? k_dynamic_mid : k_linear_mid;
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
    j.mid = code == KBIT_NF4 ? k_nf4_mid : k_fp4_mid;
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
    j.values = code == KBIT_NF4 ? k_nf4_values : k_fp4_values;
    kbit_parallel_for(kbit_num_blocks(n, blocksize), blocksize,
                      KBIT_PICK(dequantize4_range, dtype), &j);
    return KBIT_OK;
}

} /* extern "C" */
