/* Int8 Bonsai inference, the arithmetic of nas_space_bonsai.quant.QBonsai: included by the
 * generated nas_model.c after its constants (z_data, z_bias, w_data, v_data, t_data,
 * multipliers, tanh_table) and NAS_* sizes. Written for this project. */
#ifndef NAS_BONSAI_H
#define NAS_BONSAI_H
#include "nas_kernels.h"

/* int8 x int8 -> int16: on AVR one MULS instruction (2 cycles, whatever the values; the
 * C expression would call a multiply routine whose time depends on them). */
static inline int16_t nas_mul8(int8_t a, int8_t b) {
#ifdef __AVR__
    int16_t r;
    __asm__("muls %1, %2\n\tmovw %0, r0\n\tclr r1" : "=r"(r) : "d"(a), "d"(b) : "r0");
    return r;
#else
    return (int16_t)(a * b);
#endif
}

/* One row of a stored matrix times z, dense (NAS_PROJ values) or sparse (count, then
 * index/value pairs); advances *pp past the row. */
static int32_t nas_row(const uint8_t **pp, int sparse, const int8_t *z) {
    const uint8_t *p = *pp;
    int32_t a = 0; /* 8x8 -> 16-bit products (one MUL on AVR), 32-bit sums */
    if (sparse) {
        for (uint8_t n = NAS_RD8(p++); n; --n, p += 2)
            a += nas_mul8((int8_t)NAS_RD8(p + 1), z[NAS_RD8(p)]);
    } else {
        for (int c = 0; c < NAS_PROJ; ++c) a += nas_mul8((int8_t)NAS_RD8(p++), z[c]);
    }
    *pp = p;
    return a;
}

static void nas_bonsai_run(const int8_t *input, int8_t *output) {
    /* SRAM: the int32 projection and the int32 scores, as the cost model counts */
    int32_t z[NAS_PROJ], score[NAS_SCORES];
    /* projection, streaming over the input: feature j is read once */
    for (int r = 0; r < NAS_PROJ; ++r) z[r] = NAS_RD32(&z_bias[r]);
    const uint8_t *p = z_data;
    for (int j = 0; j < NAS_FEATURES; ++j) {
        /* the raw int8 input: z_bias holds bias - zero_point * (row sum of Z), so every
         * product is int8 x int8 (one MULS on AVR, the same cost for any value) */
        const int8_t x = (int8_t)NAS_RD8(input + j);
        if (NAS_Z_SPARSE) {
            for (uint8_t n = NAS_RD8(p++); n; --n, p += 2)
                z[NAS_RD8(p)] += nas_mul8(x, (int8_t)NAS_RD8(p + 1));
        } else {
            for (int r = 0; r < NAS_PROJ; ++r) z[r] += nas_mul8(x, (int8_t)NAS_RD8(p++));
        }
    }
    /* int8 z written over the int32 accumulators: byte r of the buffer only overlaps
     * accumulators already read (r <= 4r) */
    int8_t *z8 = (int8_t *)z;
    for (int r = 0; r < NAS_PROJ; ++r)
        z8[r] = nas_clamp(nas_requant(z[r], NAS_Z_MULT, NAS_Z_SHIFT), -128, 127);
    for (int l = 0; l < NAS_SCORES; ++l) score[l] = 0;
    NAS_MARK(0); /* input read and projected */
    int node = 0;
    for (int level = 0; level <= NAS_DEPTH; ++level) {
        const uint8_t *pw = w_data + (uint16_t)node * NAS_W_BYTES;
        const uint8_t *pv = v_data + (uint16_t)node * NAS_V_BYTES;
        const int32_t wm = NAS_RD32(&w_mult[node]), vm = NAS_RD32(&v_mult[node]);
        const int ws = (int8_t)NAS_RD8(&w_shift[node]), vs = (int8_t)NAS_RD8(&v_shift[node]);
        for (int l = 0; l < NAS_SCORES; ++l) {
            const int32_t u = nas_clamp(nas_requant(nas_row(&pw, NAS_W_SPARSE, z8), wm, ws),
                                        -128, 127);
            const int32_t idx =
                nas_clamp(nas_requant(nas_row(&pv, NAS_V_SPARSE, z8), vm, vs), -128, 127) + 128;
            score[l] += u * (int8_t)NAS_RD8(&tanh_table[idx]);
        }
        if (level < NAS_DEPTH) {
            const uint8_t *pt = t_data + (uint16_t)node * NAS_T_BYTES;
            node = 2 * node + 1 + (nas_row(&pt, NAS_T_SPARSE, z8) > 0 ? 1 : 0);
        }
        NAS_MARK(level + 1);
    }
    memcpy(output, score, sizeof score); /* little-endian int32 on host and AVR */
}
#endif
