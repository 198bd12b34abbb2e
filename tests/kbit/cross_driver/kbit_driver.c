/* A driver for kbit's CPU library on another architecture (tests/kbit/test_cross_platforms.py).
 *
 * Linked against the shipped libkbit_cpu.so (-lkbit_cpu, RPATH $ORIGIN), so it exercises the
 * library exactly as the wheel carries it, through the C ABI of csrc/include/kbit.h alone.
 *
 *   kbit_driver DTYPE N IN OUT
 *
 * DTYPE: 0 float32, 1 float16, 2 bfloat16 (kbit_dtype); IN holds N raw elements of DTYPE. For each
 * blocksize (64, 4096) and each format (dynamic, linear: 8-bit; NF4, FP4: 4-bit), in that order,
 * OUT receives: the codes (N bytes, or ceil(N/2) for 4-bit), absmax (ceil(N/blocksize) float32),
 * then the dequantized values (N elements of DTYPE). Everything in the target's byte order
 * (little-endian on aarch64, as on x86_64).
 *
 * stdout: the library's identity, then what two refused/empty calls report (checked by the test).
 * Exit status: 0, or 2 (usage, I/O, allocation) / 3 (a call failed; its kbit_last_error printed).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbit.h"

static const int k_blocksizes[] = {64, 4096};
static const struct { int bits, code; const char *name; } k_formats[] = {
    {8, KBIT_CODE_DYNAMIC, "dynamic"},
    {8, KBIT_CODE_LINEAR, "linear"},
    {4, KBIT_NF4, "nf4"},
    {4, KBIT_FP4, "fp4"},
};

static int fail(const char *what) {
    fprintf(stderr, "kbit_driver: %s\n", what);
    return 2;
}

static int put(FILE *out, const void *data, size_t size, size_t count) {
    return count == 0 || fwrite(data, size, count, out) == count;
}

int main(int argc, char **argv) {
    if (argc != 5) return fail("usage: kbit_driver DTYPE N IN OUT");
    int dtype = atoi(argv[1]);
    int64_t n = atoll(argv[2]);
    if (dtype < 0 || dtype > 2 || n < 1) return fail("bad DTYPE or N");
    size_t esize = dtype == KBIT_FLOAT32 ? 4 : 2;

    printf("abi=%d version=%s backend=%s cuda=%d devices=%d\n", kbit_abi_version(), kbit_version(),
           kbit_backend(), kbit_cuda_version(), kbit_device_count());

    void *x = malloc((size_t)n * esize), *y = malloc((size_t)n * esize);
    uint8_t *codes = malloc((size_t)n);
    float *absmax = malloc(((size_t)n / 64 + 1) * sizeof(float));
    if (!x || !y || !codes || !absmax) return fail("out of memory");
    FILE *in = fopen(argv[3], "rb");
    if (!in || fread(x, esize, (size_t)n, in) != (size_t)n) return fail("cannot read IN");
    fclose(in);

    /* an invalid blocksize is refused with a message (thread-local storage of the library) */
    int status = kbit_quantize_blockwise(dtype, KBIT_CODE_DYNAMIC, x, codes, absmax, n, 100);
    printf("bad-blocksize status=%d error=%s\n", status, kbit_last_error());
    /* n == 0: nothing read or written, NULL pointers allowed */
    status = kbit_quantize_4bit(dtype, KBIT_NF4, NULL, NULL, NULL, 0, 64);
    printf("empty status=%d\n", status);

    FILE *out = fopen(argv[4], "wb");
    if (!out) return fail("cannot open OUT");
    for (size_t b = 0; b < sizeof k_blocksizes / sizeof *k_blocksizes; ++b) {
        int bs = k_blocksizes[b];
        size_t blocks = (size_t)((n + bs - 1) / bs);
        for (size_t f = 0; f < sizeof k_formats / sizeof *k_formats; ++f) {
            int bits = k_formats[f].bits, code = k_formats[f].code;
            size_t ncodes = bits == 8 ? (size_t)n : (size_t)((n + 1) / 2);
            memset(codes, 0xAA, (size_t)n); /* garbage, so an unwritten byte shows */
            memset(absmax, 0xAA, blocks * sizeof(float));
            memset(y, 0xAA, (size_t)n * esize);
            status = bits == 8 ? kbit_quantize_blockwise(dtype, code, x, codes, absmax, n, bs)
                               : kbit_quantize_4bit(dtype, code, x, codes, absmax, n, bs);
            if (status == KBIT_OK)
                status = bits == 8 ? kbit_dequantize_blockwise(dtype, code, codes, absmax, y, n, bs)
                                   : kbit_dequantize_4bit(dtype, code, codes, absmax, y, n, bs);
            if (status != KBIT_OK) {
                printf("%s blocksize=%d failed: %d %s\n", k_formats[f].name, bs, status, kbit_last_error());
                return 3;
            }
            if (!put(out, codes, 1, ncodes) || !put(out, absmax, sizeof(float), blocks) ||
                !put(out, y, esize, (size_t)n))
                return fail("cannot write OUT");
        }
    }
    if (fclose(out) != 0) return fail("cannot write OUT");
    printf("done\n");
    return 0;
}
