/* Int8 kernels of the generated models: C99, no library, NHWC activations, TFLite layouts
 * (conv OHWI, depthwise 1HWC, fully connected OI). Requantization follows the TFLite int8
 * specification exactly (SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT), so
 * the outputs are bit-identical to nas.int8.run_int8 and to TFLite Micro's reference
 * kernels. Written for this project. */
#ifndef NAS_KERNELS_H
#define NAS_KERNELS_H

#include <stdint.h>
#include <string.h>

/* Profiling builds (-DNAS_PROFILE) let the firmware record the time after each op. */
#ifdef NAS_PROFILE
void nas_mark(int op);
#define NAS_MARK(i) nas_mark(i)
#else
#define NAS_MARK(i)
#endif

#if defined(__ARM_FEATURE_SIMD32)
#include <arm_acle.h>
#define NAS_DSP 1 /* Cortex-M4/M7: dual 16-bit multiply-accumulate (SMLAD) */
#endif

/* acc + sum of (x[i] - zp) * w[i]. With the DSP extension, four products per step: SXTAB16
 * widens bytes 0 and 2 (and, rotated, 1 and 3) to 16 bits while subtracting the zero
 * point, SMLAD multiplies both halves and adds them. The sums are exact integers, so the
 * result is the same with or without it. */
static inline int32_t nas_dot(const int8_t *x, const int8_t *w, int n, int32_t zp,
                              int32_t acc) {
    int i = 0;
#ifdef NAS_DSP
    const uint32_t off = ((uint32_t)(uint16_t)(-zp)) * 0x00010001u;
    for (; i + 4 <= n; i += 4) {
        uint32_t xv, wv;
        memcpy(&xv, x + i, 4); /* one unaligned LDR on Cortex-M4 */
        memcpy(&wv, w + i, 4);
        const int16x2_t x02 = __sxtab16((int16x2_t)off, (int8x4_t)xv);
        const int16x2_t x13 = __sxtab16((int16x2_t)off, (int8x4_t)((xv >> 8) | (xv << 24)));
        const int16x2_t w02 = __sxtb16((int8x4_t)wv);
        const int16x2_t w13 = __sxtb16((int8x4_t)((wv >> 8) | (wv << 24)));
        acc = __smlad(x02, w02, acc);
        acc = __smlad(x13, w13, acc);
    }
#endif
    for (; i < n; ++i) acc += ((int32_t)x[i] - zp) * w[i];
    return acc;
}

#ifdef __AVR__
/* SaturatingRoundingDoublingHighMul on an 8-bit core: |a| * |b| from four 16x16-bit
 * hardware multiplies summed in 16-bit limbs. avr-libgcc's 64-bit multiply loops over an
 * operand's bits, so its time depends on the values; this one's does not. Then the same
 * rounding as the generic version below. */
static inline int32_t nas_srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    const uint8_t neg = (uint8_t)((a < 0) != (b < 0));
    const uint32_t ua = a < 0 ? 0u - (uint32_t)a : (uint32_t)a;
    const uint32_t ub = b < 0 ? 0u - (uint32_t)b : (uint32_t)b;
    const uint16_t a0 = (uint16_t)ua, a1 = (uint16_t)(ua >> 16);
    const uint16_t b0 = (uint16_t)ub, b1 = (uint16_t)(ub >> 16);
    const uint32_t p00 = (uint32_t)a0 * b0, p01 = (uint32_t)a0 * b1;
    const uint32_t p10 = (uint32_t)a1 * b0, p11 = (uint32_t)a1 * b1;
    /* m = |ab| + 2**30 - neg (the rounding nudge), limb by limb with carries; limb 0
     * only contributes its carry: + 0xFFFF there and - 1 on limb 1 is - 1 in all */
    uint32_t t = (p00 & 0xFFFFu) + (neg ? 0xFFFFu : 0u);
    t = (t >> 16) + (p00 >> 16) + (p01 & 0xFFFFu) + (p10 & 0xFFFFu) + 0x4000u - neg;
    const uint16_t l1 = (uint16_t)t;
    t = (t >> 16) + (p01 >> 16) + (p10 >> 16) + (p11 & 0xFFFFu);
    const uint16_t l2 = (uint16_t)t;
    t = (t >> 16) + (p11 >> 16);
    const uint16_t l3 = (uint16_t)t;
    /* m >> 31 fits 31 bits: |ab| < 2**62 */
    const int32_t q = (int32_t)(((uint32_t)l3 << 17) | ((uint32_t)l2 << 1) | (l1 >> 15));
    return neg ? -q : q;
}
#else
static inline int32_t nas_srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t t = ab + (ab >= 0 ? (1ll << 30) : (1 - (1ll << 30)));
    /* t / 2**31 truncated toward zero: |t| >> 31 from its two 32-bit halves (no 64-bit
     * division or shift routine on 8-bit cores), then the sign */
    const uint64_t m = (uint64_t)(t >= 0 ? t : -t);
    const uint32_t hi = (uint32_t)(m >> 32), lo = (uint32_t)m;
    const int32_t q = (int32_t)((hi << 1) | (lo >> 31));
    return t >= 0 ? q : -q;
}
#endif

#ifdef __AVR__
/* 8-bit cores have no barrel shifter: a variable shift is a loop of one-bit steps, whose
 * cost would depend on each model's requantization shifts. Shifting by the exponent's
 * bits (16 and 8 are byte moves) costs nearly the same for every exponent. */
static inline int32_t nas_asr(int32_t x, uint8_t e) {
    if (e & 16) x >>= 16;
    if (e & 8) x >>= 8;
    if (e & 4) x >>= 4;
    if (e & 2) x >>= 2;
    if (e & 1) x >>= 1;
    return x;
}
static inline uint32_t nas_shl(uint32_t x, uint8_t e) {
    if (e & 16) x <<= 16;
    if (e & 8) x <<= 8;
    if (e & 4) x <<= 4;
    if (e & 2) x <<= 2;
    if (e & 1) x <<= 1;
    return x;
}

static inline int32_t nas_rdbpot(int32_t x, int exponent) { /* exponent in [0, 31] */
    const int32_t mask = (int32_t)(nas_shl(1u, (uint8_t)exponent) - 1u);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return nas_asr(x, (uint8_t)exponent) + (remainder > threshold ? 1 : 0);
}

static inline int32_t nas_requant(int32_t x, int32_t multiplier, int shift) {
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    return nas_rdbpot(nas_srdhm((int32_t)nas_shl((uint32_t)x, (uint8_t)left), multiplier),
                      right);
}
#else
static inline int32_t nas_rdbpot(int32_t x, int exponent) { /* exponent in [0, 31] */
    const int32_t mask = (int32_t)((UINT32_C(1) << exponent) - 1u);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

static inline int32_t nas_requant(int32_t x, int32_t multiplier, int shift) {
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    return nas_rdbpot(nas_srdhm(x * ((int32_t)1 << left), multiplier), right);
}
#endif

static inline int8_t nas_clamp(int32_t v, int32_t lo, int32_t hi) {
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

typedef struct {
    int16_t in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w, stride, pad_top, pad_left;
    int32_t in_zp, out_zp, act_min, act_max;
} nas_conv_t;

/* Standard convolution; padding is real zero, so padded taps are skipped. The parameters
 * are copied to locals: int8 stores may alias the struct, which would force reloads. */
static inline void nas_conv2d(const nas_conv_t *p, const int8_t *in, const int8_t *w,
                              const int32_t *bias, const int32_t *mult, const int8_t *shift,
                              int8_t *out) {
    const int in_h = p->in_h, in_w = p->in_w, in_c = p->in_c, out_h = p->out_h;
    const int out_w = p->out_w, out_c = p->out_c, k_h = p->k_h, k_w = p->k_w;
    const int stride = p->stride, pad_top = p->pad_top, pad_left = p->pad_left;
    const int32_t in_zp = p->in_zp, out_zp = p->out_zp;
    const int32_t act_min = p->act_min, act_max = p->act_max;
    for (int oy = 0; oy < out_h; ++oy) {
        for (int ox = 0; ox < out_w; ++ox) {
            const int y0 = oy * stride - pad_top, x0 = ox * stride - pad_left;
            /* taps inside the input only: the zero padding adds nothing */
            const int ky0 = y0 < 0 ? -y0 : 0, ky1 = in_h - y0 < k_h ? in_h - y0 : k_h;
            const int kx0 = x0 < 0 ? -x0 : 0, kx1 = in_w - x0 < k_w ? in_w - x0 : k_w;
            if (k_h == 1 && k_w == 1 && ky0 == 0 && kx0 == 0) { /* pointwise: one dot each */
                const int8_t *px = in + ((int32_t)y0 * in_w + x0) * in_c;
                for (int o = 0; o < out_c; ++o) {
                    const int32_t acc = nas_dot(px, w + (int32_t)o * in_c, in_c, in_zp, bias[o]);
                    *out++ = nas_clamp(nas_requant(acc, mult[o], shift[o]) + out_zp, act_min,
                                       act_max);
                }
                continue;
            }
            for (int o = 0; o < out_c; ++o) {
                int32_t acc = bias[o];
                const int8_t *wo = w + (int32_t)o * k_h * k_w * in_c;
                for (int ky = ky0; ky < ky1; ++ky) {
                    const int8_t *row = in + (int32_t)(y0 + ky) * in_w * in_c;
                    for (int kx = kx0; kx < kx1; ++kx)
                        acc = nas_dot(row + (x0 + kx) * in_c, wo + (ky * k_w + kx) * in_c, in_c,
                                      in_zp, acc);
                }
                acc = nas_requant(acc, mult[o], shift[o]) + out_zp;
                *out++ = nas_clamp(acc, act_min, act_max);
            }
        }
    }
}

/* Depthwise convolution, channel multiplier 1. Per output pixel, the taps are walked once
 * and each tap's channels (contiguous in NHWC) are accumulated into a stack buffer of
 * int32 sums, one per channel: unit-stride loads in the inner loop. */
static inline void nas_depthwise(const nas_conv_t *p, const int8_t *in, const int8_t *w,
                                 const int32_t *bias, const int32_t *mult,
                                 const int8_t *shift, int8_t *out) {
    const int in_h = p->in_h, in_w = p->in_w, c_n = p->in_c, out_h = p->out_h;
    const int out_w = p->out_w, k_h = p->k_h, k_w = p->k_w;
    const int stride = p->stride, pad_top = p->pad_top, pad_left = p->pad_left;
    const int32_t in_zp = p->in_zp, out_zp = p->out_zp;
    const int32_t act_min = p->act_min, act_max = p->act_max;
    int32_t acc[c_n]; /* C99 variable-length array: 4 bytes per channel of stack */
    for (int oy = 0; oy < out_h; ++oy) {
        for (int ox = 0; ox < out_w; ++ox) {
            const int y0 = oy * stride - pad_top, x0 = ox * stride - pad_left;
            const int ky0 = y0 < 0 ? -y0 : 0, ky1 = in_h - y0 < k_h ? in_h - y0 : k_h;
            const int kx0 = x0 < 0 ? -x0 : 0, kx1 = in_w - x0 < k_w ? in_w - x0 : k_w;
            for (int c = 0; c < c_n; ++c) acc[c] = bias[c];
            for (int ky = ky0; ky < ky1; ++ky) {
                for (int kx = kx0; kx < kx1; ++kx) {
                    const int8_t *px = in + ((int32_t)(y0 + ky) * in_w + x0 + kx) * c_n;
                    const int8_t *wk = w + (ky * k_w + kx) * c_n;
                    for (int c = 0; c < c_n; ++c) acc[c] += ((int32_t)px[c] - in_zp) * wk[c];
                }
            }
            for (int c = 0; c < c_n; ++c)
                *out++ = nas_clamp(nas_requant(acc[c], mult[c], shift[c]) + out_zp, act_min,
                                   act_max);
        }
    }
}

/* Fully connected: one multiplier for the tensor (TFLite spec). */
static inline void nas_fully_connected(int n_in, int n_out, const int8_t *in, const int8_t *w,
                                const int32_t *bias, int32_t mult, int shift, int32_t in_zp,
                                int32_t out_zp, int32_t act_min, int32_t act_max,
                                int8_t *out) {
    for (int o = 0; o < n_out; ++o) {
        int32_t acc = nas_dot(in, w + (int32_t)o * n_in, n_in, in_zp, 0);
        acc = nas_requant(acc + bias[o], mult, shift) + out_zp;
        out[o] = nas_clamp(acc, act_min, act_max);
    }
}

/* Average pool without padding; rounds half away from zero like TFLite. */
static inline void nas_average_pool(int in_w, int c_n, int out_h, int out_w, int k_h,
                             int k_w, int stride, int32_t act_min, int32_t act_max,
                             const int8_t *in, int8_t *out) {
    const int32_t count = k_h * k_w, half = count / 2;
    for (int oy = 0; oy < out_h; ++oy)
        for (int ox = 0; ox < out_w; ++ox)
            for (int c = 0; c < c_n; ++c) {
                int32_t acc = 0;
                for (int ky = 0; ky < k_h; ++ky)
                    for (int kx = 0; kx < k_w; ++kx)
                        acc += in[(((int32_t)oy * stride + ky) * in_w + ox * stride + kx) * c_n +
                                  c];
                acc = acc > 0 ? (acc + half) / count : -((-acc + half) / count);
                out[((int32_t)oy * out_w + ox) * c_n + c] = nas_clamp(acc, act_min, act_max);
            }
}

typedef struct {
    int32_t zp1, zp2, out_zp, m1, m2, mo, act_min, act_max;
    int8_t s1, s2, so;
} nas_add_t;

/* Element-wise add with TFLite's 20-bit pre-shift and three requantizations. */
static inline void nas_add(const nas_add_t *p, int32_t n, const int8_t *a, const int8_t *b,
                    int8_t *out) {
    for (int32_t i = 0; i < n; ++i) {
        const int32_t x1 = ((int32_t)a[i] - p->zp1) * ((int32_t)1 << 20);
        const int32_t x2 = ((int32_t)b[i] - p->zp2) * ((int32_t)1 << 20);
        const int32_t y = nas_requant(x1, p->m1, p->s1) + nas_requant(x2, p->m2, p->s2);
        out[i] = nas_clamp(nas_requant(y, p->mo, p->so) + p->out_zp, p->act_min, p->act_max);
    }
}

#endif
