/* A tiny library with kbit's identity functions; the variant and archs come from -D flags. */
#include <stddef.h>
#ifdef WITH_THREADS
#include <pthread.h>
static void *kbit_noop(void *arg) { return arg; }
#endif
#if defined(_WIN32)
#define API __declspec(dllexport)
#else
#define API __attribute__((visibility("default")))
#endif
#ifndef KBIT_BACKEND
#define KBIT_BACKEND "cpu"
#endif
#ifndef KBIT_CUDA
#define KBIT_CUDA 0
#endif
#ifndef KBIT_SASS
#define KBIT_SASS ""
#endif
#ifdef KBIT_PAD
extern const unsigned char kbit_pad[];
extern const unsigned char kbit_pad_end[];
API size_t kbit_pad_size(void) { return (size_t)(kbit_pad_end - kbit_pad); }
#endif
API int kbit_abi_version(void) { return 1; }
API const char *kbit_version(void) { return "0.1.0"; }
API const char *kbit_backend(void) { return KBIT_BACKEND; }
API int kbit_cuda_version(void) { return KBIT_CUDA; }
API const char *kbit_sass_archs(void) { return KBIT_SASS; }
API int kbit_threads(void) {
#ifdef WITH_THREADS
    pthread_t t;
    if (pthread_create(&t, NULL, kbit_noop, NULL) != 0) return -1;
    return pthread_join(t, NULL) == 0 ? 1 : -1;
#else
    return 0;
#endif
}
