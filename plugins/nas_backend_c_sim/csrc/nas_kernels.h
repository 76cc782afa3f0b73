/* Int8 kernels of the generated models: C99, no library, NHWC activations, TFLite layouts
 * (conv OHWI, depthwise 1HWC, fully connected OI). Requantization follows the TFLite int8
 * specification exactly (SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT), so
 * the outputs are bit-identical to nas.int8.run_int8 and to TFLite Micro's reference
 * kernels. Written for this project. */
#ifndef NAS_KERNELS_H
#define NAS_KERNELS_H

#include <stdint.h>
#include <string.h>

static inline int32_t nas_srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1ll << 30) : (1 - (1ll << 30));
    return (int32_t)((ab + nudge) / (1ll << 31)); /* C division truncates toward zero */
}

static inline int32_t nas_rdbpot(int32_t x, int exponent) {
    int32_t mask = (int32_t)((1ll << exponent) - 1);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

static inline int32_t nas_requant(int32_t x, int32_t multiplier, int shift) {
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    return nas_rdbpot(nas_srdhm(x * (1 << left), multiplier), right);
}

static inline int8_t nas_clamp(int32_t v, int32_t lo, int32_t hi) {
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

typedef struct {
    int16_t in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w, stride, pad_top, pad_left;
    int32_t in_zp, out_zp, act_min, act_max;
} nas_conv_t;

/* Standard convolution; padding is real zero, so padded taps are skipped. */
static inline void nas_conv2d(const nas_conv_t *p, const int8_t *in, const int8_t *w,
                       const int32_t *bias, const int32_t *mult, const int8_t *shift,
                       int8_t *out) {
    for (int oy = 0; oy < p->out_h; ++oy) {
        for (int ox = 0; ox < p->out_w; ++ox) {
            const int y0 = oy * p->stride - p->pad_top, x0 = ox * p->stride - p->pad_left;
            for (int o = 0; o < p->out_c; ++o) {
                int32_t acc = 0;
                const int8_t *wo = w + (int32_t)o * p->k_h * p->k_w * p->in_c;
                for (int ky = 0; ky < p->k_h; ++ky) {
                    const int y = y0 + ky;
                    if (y < 0 || y >= p->in_h) continue;
                    for (int kx = 0; kx < p->k_w; ++kx) {
                        const int x = x0 + kx;
                        if (x < 0 || x >= p->in_w) continue;
                        const int8_t *src = in + ((int32_t)y * p->in_w + x) * p->in_c;
                        const int8_t *wk = wo + (ky * p->k_w + kx) * p->in_c;
                        for (int i = 0; i < p->in_c; ++i)
                            acc += ((int32_t)src[i] - p->in_zp) * wk[i];
                    }
                }
                acc = nas_requant(acc + bias[o], mult[o], shift[o]) + p->out_zp;
                out[((int32_t)oy * p->out_w + ox) * p->out_c + o] =
                    nas_clamp(acc, p->act_min, p->act_max);
            }
        }
    }
}

/* Depthwise convolution, channel multiplier 1. */
static inline void nas_depthwise(const nas_conv_t *p, const int8_t *in, const int8_t *w,
                          const int32_t *bias, const int32_t *mult, const int8_t *shift,
                          int8_t *out) {
    const int c_n = p->in_c;
    for (int oy = 0; oy < p->out_h; ++oy) {
        for (int ox = 0; ox < p->out_w; ++ox) {
            const int y0 = oy * p->stride - p->pad_top, x0 = ox * p->stride - p->pad_left;
            for (int c = 0; c < c_n; ++c) {
                int32_t acc = 0;
                for (int ky = 0; ky < p->k_h; ++ky) {
                    const int y = y0 + ky;
                    if (y < 0 || y >= p->in_h) continue;
                    for (int kx = 0; kx < p->k_w; ++kx) {
                        const int x = x0 + kx;
                        if (x < 0 || x >= p->in_w) continue;
                        acc += ((int32_t)in[((int32_t)y * p->in_w + x) * c_n + c] - p->in_zp) *
                               w[(ky * p->k_w + kx) * c_n + c];
                    }
                }
                acc = nas_requant(acc + bias[c], mult[c], shift[c]) + p->out_zp;
                out[((int32_t)oy * p->out_w + ox) * c_n + c] =
                    nas_clamp(acc, p->act_min, p->act_max);
            }
        }
    }
}

/* Fully connected: one multiplier for the tensor (TFLite spec). */
static inline void nas_fully_connected(int n_in, int n_out, const int8_t *in, const int8_t *w,
                                const int32_t *bias, int32_t mult, int shift, int32_t in_zp,
                                int32_t out_zp, int32_t act_min, int32_t act_max,
                                int8_t *out) {
    for (int o = 0; o < n_out; ++o) {
        int32_t acc = 0;
        const int8_t *wo = w + (int32_t)o * n_in;
        for (int i = 0; i < n_in; ++i) acc += ((int32_t)in[i] - in_zp) * wo[i];
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
        const int32_t x1 = ((int32_t)a[i] - p->zp1) * (1 << 20);
        const int32_t x2 = ((int32_t)b[i] - p->zp2) * (1 << 20);
        const int32_t y = nas_requant(x1, p->m1, p->s1) + nas_requant(x2, p->m2, p->s2);
        out[i] = nas_clamp(nas_requant(y, p->mo, p->so) + p->out_zp, p->act_min, p->act_max);
    }
}

#endif
