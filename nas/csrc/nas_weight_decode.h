/* Weight decoders of the firmware (mcu-nas): a layer's stored weights are decoded into one
 * int8 scratch buffer just before the layer runs (nas/compression.py, decoding_cost).
 *
 * nas_huffman_decode: canonical Huffman, bit stream MSB first; the table is the maximum
 *   code length L, the number of codes of each length 1..L, then the symbols in code
 *   order (nas_compress_huffman). Returns 0, or -1 on an invalid stream.
 * nas_cluster_decode: n weights of `bits`-bit codebook indices, packed MSB first; weight i
 *   takes entry index of codebook ((i / inner) % books), each 2^bits int8 values
 *   (nas_compress_cluster: one codebook per output channel).
 * nas_int4_unpack: n int4 weights, two per byte, low nibble first, to int8 (what
 *   TensorFlow Lite Micro does with an int4 filter before the op; timed, not shipped). */
#ifndef NAS_WEIGHT_DECODE_H
#define NAS_WEIGHT_DECODE_H
#include <stdint.h>

int nas_huffman_decode(const uint8_t *stream, const uint8_t *table, int32_t n, uint8_t *out);
void nas_cluster_decode(const uint8_t *packed, int bits, const int8_t *codebooks, int32_t n,
                        int32_t inner, int32_t books, int8_t *out);
void nas_int4_unpack(const uint8_t *packed, int32_t n, int8_t *out);
#endif
