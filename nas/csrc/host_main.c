/* Host harness: int8 inputs on stdin (NAS_INPUT_BYTES each), int8 outputs on stdout. */
#include <stdio.h>

#include "nas_model.h"

int main(void) {
    static int8_t in[NAS_INPUT_BYTES], out[NAS_OUTPUT_BYTES];
    while (fread(in, 1, NAS_INPUT_BYTES, stdin) == NAS_INPUT_BYTES) {
        nas_model_run(in, out);
        if (fwrite(out, 1, NAS_OUTPUT_BYTES, stdout) != NAS_OUTPUT_BYTES) return 1;
    }
    return 0;
}
