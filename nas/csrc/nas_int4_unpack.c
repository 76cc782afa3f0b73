/* int4 weights, packed two per byte (the first of each pair in the low nibble), unpacked
 * to int8 the way TensorFlow Lite Micro's kernels do before an op runs: what the
 * decoder calibration times for the int4 entry of a profile's latency table. */
#include "nas_weight_decode.h"

void nas_int4_unpack(const uint8_t *packed, int32_t n, int8_t *out) {
    int32_t i = 0;
    for (; i + 1 < n; i += 2) {
        int8_t b = (int8_t)packed[i >> 1];
        out[i] = (int8_t)((int8_t)(b << 4) >> 4);
        out[i + 1] = (int8_t)(b >> 4);
    }
    if (i < n) out[i] = (int8_t)((int8_t)(packed[i >> 1] << 4) >> 4);
}
