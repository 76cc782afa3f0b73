/* Canonical Huffman decoding, one bit at a time (see nas_weight_decode.h). */
#include "nas_weight_decode.h"

int nas_huffman_decode(const uint8_t *stream, const uint8_t *table, int32_t n, uint8_t *out) {
    const int max_len = table[0];
    const uint8_t *counts = table + 1; /* counts[l - 1]: codes of length l */
    const uint8_t *symbols = table + 1 + max_len;
    uint32_t pos = 0;
    for (int32_t i = 0; i < n; ++i) {
        int32_t code = 0, first = 0, index = 0;
        int len = 1;
        for (; len <= max_len; ++len) {
            code |= (stream[pos >> 3] >> (7 - (pos & 7))) & 1;
            ++pos;
            int32_t count = counts[len - 1];
            if (code - first < count) {
                out[i] = symbols[index + code - first];
                break;
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        if (len > max_len) return -1;
    }
    return 0;
}
