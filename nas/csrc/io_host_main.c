/* Host harness of nas_io.c: raw sensor values on stdin (one NAS_RAW_H x NAS_RAW_W x
 * NAS_RAW_C block each), the model's int8 input bytes on stdout (argv[1] per block). */
#include <stdio.h>
#include <stdlib.h>

#include "nas_io.h"

#define N_RAW (NAS_RAW_H * NAS_RAW_W * NAS_RAW_C)

int main(int argc, char **argv) {
    static nas_raw_t raw[N_RAW];
    static int8_t input[1 << 20];
    long n = argc > 1 ? atol(argv[1]) : 0;
    if (n < 0 || n > (long)sizeof input) return 2;
    while (fread(raw, sizeof raw[0], N_RAW, stdin) == N_RAW) {
        nas_preprocess(raw, input);
        if (fwrite(input, 1, (size_t)n, stdout) != (size_t)n) return 1;
    }
    return 0;
}
