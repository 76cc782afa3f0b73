/* Codebook (weight-sharing) decoding: packed indices to int8 (see nas_weight_decode.h). */
#include "nas_weight_decode.h"

void nas_cluster_decode(const uint8_t *packed, int bits, const int8_t *codebooks, int32_t n,
                        int32_t inner, int32_t books, int8_t *out) {
    uint32_t pos = 0;
    int32_t book = 0, left = inner; /* weights left in the current channel's run */
    for (int32_t i = 0; i < n; ++i) {
        uint32_t v = 0;
        for (int b = 0; b < bits; ++b, ++pos) v = (v << 1) | ((packed[pos >> 3] >> (7 - (pos & 7))) & 1u);
        out[i] = codebooks[(book << bits) + v];
        if (--left == 0) {
            left = inner;
            if (++book == books) book = 0;
        }
    }
}
