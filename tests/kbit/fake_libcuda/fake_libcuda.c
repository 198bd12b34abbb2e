/* A stand-in for the NVIDIA driver library (libcuda.so.1), for tests on machines without a GPU.
 *
 * It exports the driver API calls kbit's probe makes, with the real signatures, and answers from
 * environment variables read at each call:
 *   FAKE_CUDA_DRIVER  cuDriverGetVersion's answer (default 12040)
 *   FAKE_CUDA_INIT    cuInit's CUresult (default 0; 100 = CUDA_ERROR_NO_DEVICE)
 *   FAKE_CUDA_GPUS    comma-separated compute capabilities as arch numbers, e.g. "86,90"
 * The probe's ctypes code runs for real against it; only the driver's answers are scripted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int env_int(const char *name, int fallback) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : fallback;
}

static int gpu_arch(int index) {
    const char *v = getenv("FAKE_CUDA_GPUS");
    int i = 0;
    if (!v) return -1;
    while (*v) {
        if (i == index) return atoi(v);
        v = strchr(v, ',');
        if (!v) break;
        v++;
        i++;
    }
    return -1;
}

int cuDriverGetVersion(int *version) { *version = env_int("FAKE_CUDA_DRIVER", 12040); return 0; }
int cuInit(unsigned int flags) { (void)flags; return env_int("FAKE_CUDA_INIT", 0); }

int cuDeviceGetCount(int *count) {
    int n = 0;
    while (gpu_arch(n) >= 0) n++;
    *count = n;
    return 0;
}

int cuDeviceGet(int *device, int ordinal) {
    if (gpu_arch(ordinal) < 0) return 101; /* CUDA_ERROR_INVALID_DEVICE */
    *device = ordinal;
    return 0;
}

int cuDeviceGetAttribute(int *value, int attribute, int device) {
    int arch = gpu_arch(device);
    if (arch < 0) return 101;
    if (attribute == 75) { *value = arch / 10; return 0; }
    if (attribute == 76) { *value = arch % 10; return 0; }
    return 1; /* CUDA_ERROR_INVALID_VALUE */
}

int cuDeviceGetName(char *name, int len, int device) {
    snprintf(name, (size_t)len, "Fake GPU sm_%d", gpu_arch(device));
    return 0;
}

int cuGetErrorName(int error, const char **text) {
    switch (error) {
    case 100: *text = "CUDA_ERROR_NO_DEVICE"; return 0;
    case 101: *text = "CUDA_ERROR_INVALID_DEVICE"; return 0;
    default: return 1;
    }
}
