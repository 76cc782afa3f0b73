"""The keyword-spotting front-end (`nas.frontend`) as fixed-point C99 for the chip.

Cortex-M0+ and AVR have no FPU, so `frontend_c` writes the MFCC front-end in integers
only (``<stdint.h>``, no libm, no division): the steps of `nas.frontend.mfcc` with these
number formats, per frame (a block floating point: the frame's own level sets two shifts):

1. window: ``w[n] = (x[n] * hann_q15[n]) >> 15`` exactly as Python; the frame's
   ``S = sum |w|`` and ``E = sum w^2`` (uint64); an all-zero frame gives MFCC 0;
2. FFT: ``w * 2^g`` with the largest ``g`` that keeps ``2 S 2^g`` below 2^31 - 2^24 (every
   FFT value, and ``2 X[k]``, is within ``2 S 2^g``: no int32 overflow, and quiet frames
   keep their precision); the N-point real FFT as an N/2-point complex radix-2 FFT of
   (even, odd) sample pairs on int32, twiddles in Q30 (a quarter-wave cosine table),
   products in int64 rounded back to int32; then the split step gives ``2^g 2 X[k]``;
3. power: ``|2^g 2 X[k]|^2`` in uint64 (below 2^63), shifted right (rounded) by
   ``s = max(0, bits(E) + 2 g + log2 N - 46)``: Parseval bounds every mel sum of Q15
   weights below 2^64 then;
4. mel: ``acc[b] = sum_k power[k] * weight_q15[b, k]`` in uint64, the filters stored
   sparsely (first bin, count, Q15 weights); ``mel = acc / 2^f`` with ``f = 2 g + 33 - s``;
5. log: ``ln(max(mel, 1))`` in Q24: 0 when ``acc <= 2^f`` (the Python clamp), otherwise
   ``(e - f) ln 2 + ln(m)``, ``e`` the highest set bit of ``acc`` and ``m`` its Q31
   mantissa in [1, 2); ``ln(m) = ln(m c) - ln(c)`` with ``c`` the Q32 reciprocal of the
   middle of one of 32 sub-intervals (a table of ``c`` and ``ln c``) and ``ln(1 + r)``,
   ``|r| < 1/64``, a degree-4 series in Q30 (truncation error below 2e-10);
6. DCT: the orthonormal DCT-II rows in Q``dct_q`` (30 for the defaults) times the Q24
   log-mels, summed in int64, rounded to **Q16** (`MFCC_Q`): ``round(mfcc * 2^16)``;
7. int8: ``q = clamp(round_half_even(mfcc_fixed * M / 2^T) + zero_point, -128, 127)``
   with ``M / 2^T = 1 / (input_scale * 2^16)``, ``M`` in [2^30, 2^31]: integers too.

The C relies on ``>>`` of a negative signed integer being an arithmetic shift (floor
division by a power of two), as `nas.frontend` does in Python. C99 leaves that
implementation-defined; gcc, clang, IAR and Arm's compilers shift arithmetically. No step
can overflow (the bounds above), ``int`` may be 16 bits (AVR), and it needs no libm and
no libgcc division.

`frontend_on_host` compiles it with the host's gcc and runs clips through it; the c_sim
backend's `nas_backend_c_sim.frontend.frontend_on_arm` builds it for a Cortex-M and runs
it in QEMU.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from nas.backends import c_array
from nas.codegen import write_files
from nas.errors import ConfigError
from nas.frontend import MfccConfig, dct_matrix, frame_work, hann_q15, mel_weights_q15
from nas.hardware import HardwareProfile

#: The fixed-point MFCC of `nas_frontend_frame`: ``round(mfcc * 2^MFCC_Q)`` in int32.
MFCC_Q = 16
#: The log-mels' Q format inside the C.
LOG_Q = 24
#: Entries of the logarithm's reciprocal table (5 mantissa bits).
LOG_TABLE = 32


def _plan(cfg: MfccConfig) -> dict[str, Any]:
    """The DCT's Q format, the largest that keeps its int64 sums below 2^62 for any
    log-mel the C can produce."""
    cfg.check("frontend")
    n = cfg.fft_size
    if n < 8:
        raise ValueError(f"frontend: the FFT needs at least 8 points, got {n}")
    hann = hann_q15(cfg.window).astype(np.int64)
    # the smallest f (mel = acc / 2^f) of any frame: |w[n]| <= hann[n] bounds its energy
    energy_bits = int((hann**2).sum()).bit_length()
    min_frac = min(33, 79 - n.bit_length() + 1 - energy_bits)
    log_max = math.ceil((64 - min_frac) * math.log(2) * (1 << LOG_Q)) + 1
    dct = dct_matrix(cfg)
    dct_q = 30
    while np.abs(np.round(dct * (1 << dct_q))).sum(axis=1).max() * log_max >= 1 << 62:
        dct_q -= 1
    return {"dct_q": dct_q, "dct": np.round(dct * (1 << dct_q)).astype(np.int64), "hann": hann}


def _quantizer(input_scale: float, input_zero_point: int) -> tuple[int, int]:
    """(M, T) with ``M / 2^T = 1 / (input_scale * 2^MFCC_Q)``, M in [2^30, 2^31]."""
    if not (math.isfinite(input_scale) and input_scale > 0):
        raise ValueError(f"frontend: input_scale must be positive, got {input_scale}")
    if not -128 <= input_zero_point <= 127:
        raise ValueError(f"frontend: input_zero_point {input_zero_point} is not int8")
    real = 1.0 / (input_scale * (1 << MFCC_Q))
    shift = 30 - math.floor(math.log2(real))
    if shift < 1:
        raise ValueError(f"frontend: input_scale {input_scale} is too small")
    if shift > 62:
        return round(real * 2.0**62), 62
    return round(real * 2.0**shift), shift


def _mel_tables(cfg: MfccConfig) -> tuple[list[int], list[int], list[int]]:
    """(first bin, count, weights) of every band: its nonzero Q15 weights only."""
    first, count, weights = [], [], []
    for row in mel_weights_q15(cfg):
        nz = np.flatnonzero(row)
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 0)
        first.append(lo)
        count.append(hi - lo)
        weights += [int(v) for v in row[lo:hi]]
    return first, count, weights


def _log_tables() -> tuple[list[int], list[int]]:
    """Q32 reciprocals of the sub-interval middles of [1, 2) and Q30 ``-ln`` of each."""
    inv = [round(2.0**32 / (1 + (i + 0.5) / LOG_TABLE)) for i in range(LOG_TABLE)]
    ln = [round(math.log(2.0**32 / v) * 2.0**30) for v in inv]
    return inv, ln


def _header(cfg: MfccConfig, input_scale: float, input_zero_point: int) -> str:
    c = cfg
    return f"""/* Keyword-spotting MFCC front-end in fixed point, by mcu-nas (nas/frontend_c.py).
 * {c.sample_rate} Hz int16 audio, {c.clip_samples}-sample clips, {c.window}-sample windows
 * every {c.stride} samples ({c.frames} frames), {c.fft_size}-point FFT, {c.mel_bands} mel bands
 * ({c.lower_hz:g}-{c.upper_hz:g} Hz), {c.coefficients} cepstral coefficients.
 * int8 features: q = clamp(round_half_even(mfcc / {input_scale!r}) + {input_zero_point},
 *                          -128, 127). */
#ifndef NAS_FRONTEND_H
#define NAS_FRONTEND_H
#include <stdint.h>

#define NAS_FRONTEND_SAMPLE_RATE {c.sample_rate}
#define NAS_FRONTEND_CLIP_SAMPLES {c.clip_samples}
#define NAS_FRONTEND_WINDOW {c.window}
#define NAS_FRONTEND_STRIDE {c.stride}
#define NAS_FRONTEND_FRAMES {c.frames}
#define NAS_FRONTEND_COEFFICIENTS {c.coefficients}
#define NAS_FRONTEND_FEATURE_BYTES {c.frames * c.coefficients}
/* nas_frontend_frame's output: round(mfcc * 2^NAS_FRONTEND_Q) */
#define NAS_FRONTEND_Q {MFCC_Q}

#ifdef __cplusplus
extern "C" {{
#endif
/* One frame: NAS_FRONTEND_WINDOW samples to NAS_FRONTEND_COEFFICIENTS Q16 MFCC values.
 * Uses a static FFT buffer: not reentrant. */
void nas_frontend_frame(const int16_t *samples, int32_t *mfcc_fixed);
/* A clip: NAS_FRONTEND_CLIP_SAMPLES samples to the NAS_FRONTEND_FRAMES x
 * NAS_FRONTEND_COEFFICIENTS int8 feature map, row-major (frame-major). */
void nas_frontend(const int16_t *audio, int8_t *features);
#ifdef __cplusplus
}}
#endif
#endif
"""


_SOURCE = """\
/* Fixed-point MFCC front-end, generated by mcu-nas (nas/frontend_c.py explains the number
 * formats). Integers only; ">>" of a negative value is taken to shift arithmetically. */
#include "nas_frontend.h"

#define FFT_N {n}u
#define HALF {half}u    /* the complex FFT's size */
#define QUARTER {quarter}u
#define LOG2_N {log2n}
#define FFT_LIMIT ((UINT32_C(1) << 31) - (UINT32_C(1) << 24)) /* FFT values stay below */
#define DCT_SHIFT {dct_shift} /* Q{log_q} log-mel x Q{dct_q} DCT to Q{mfcc_q} */
#define QUANT_MULT INT64_C({qmult})
#define QUANT_SHIFT {qshift}
#define ZERO_POINT {zero_point}
#define BANDS {bands}
#define COEFFS {coeffs}
#define LN2_Q32 INT64_C(2977044472)

{tables}
/* the FFT's data, then (after the split step) the power of bins 0..N/2 */
typedef union {{
    int32_t c[2];
    uint64_t p;
}} slot_t;
static slot_t buf[HALF + 1];

/* round(x / 2^30) */
static int32_t q30(int64_t x) {{ return (int32_t)((x + (INT64_C(1) << 29)) >> 30); }}

/* W_N^k = cs - i sn for k < N/2, from the quarter-wave cosine table */
static void twiddle(uint32_t k, int32_t *cs, int32_t *sn) {{
    if (k <= QUARTER) {{
        *cs = cos_q30[k];
        *sn = cos_q30[QUARTER - k];
    }} else {{
        *cs = -cos_q30[HALF - k];
        *sn = cos_q30[k - QUARTER];
    }}
}}

/* (x[n] * hann[n]) >> 15, 0 past the window */
static int32_t windowed(const int16_t *x, uint32_t n) {{
    if (n >= NAS_FRONTEND_WINDOW) return 0;
    return ((int32_t)x[n] * (int32_t)hann_q15[n]) >> 15;
}}

/* radix-2 decimation in time over buf[0..HALF) (input in bit-reversed order) */
static void fft(void) {{
    uint32_t h, i, j, stride = FFT_N; /* twiddle step W_N^(stride j) = W_2h^j */
    for (h = 1; h < HALF; h <<= 1) {{
        stride >>= 1;
        for (i = 0; i < HALF; i += 2 * h) {{ /* j = 0: W = 1 */
            slot_t *a = &buf[i], *b = &buf[i + h];
            int32_t tr = b->c[0], ti = b->c[1];
            b->c[0] = a->c[0] - tr;
            b->c[1] = a->c[1] - ti;
            a->c[0] += tr;
            a->c[1] += ti;
        }}
        for (j = 1; j < h; ++j) {{
            int32_t cs, sn;
            twiddle(j * stride, &cs, &sn);
            for (i = j; i < HALF; i += 2 * h) {{
                slot_t *a = &buf[i], *b = &buf[i + h];
                int32_t tr = q30((int64_t)b->c[0] * cs + (int64_t)b->c[1] * sn);
                int32_t ti = q30((int64_t)b->c[1] * cs - (int64_t)b->c[0] * sn);
                b->c[0] = a->c[0] - tr;
                b->c[1] = a->c[1] - ti;
                a->c[0] += tr;
                a->c[1] += ti;
            }}
        }}
    }}
}}

/* |re + i im|^2 / 2^shift, rounded (re, im below 2^31: the sum is below 2^63) */
static uint64_t power(int64_t re, int64_t im, int32_t shift) {{
    uint64_t p = (uint64_t)(re * re) + (uint64_t)(im * im);
    return (p + ((UINT64_C(1) << shift) >> 1)) >> shift;
}}

/* index of the highest set bit of x > 0 */
static int32_t msb64(uint64_t x) {{
    int32_t e = 0;
    if (x >> 32) {{ x >>= 32; e += 32; }}
    if (x >> 16) {{ x >>= 16; e += 16; }}
    if (x >> 8) {{ x >>= 8; e += 8; }}
    if (x >> 4) {{ x >>= 4; e += 4; }}
    if (x >> 2) {{ x >>= 2; e += 2; }}
    if (x >> 1) e += 1;
    return e;
}}

/* ln(max(acc / 2^frac, 1)) in Q24 */
static int32_t log_q24(uint64_t acc, int32_t frac) {{
    if (frac >= 64 || acc <= (UINT64_C(1) << frac)) return 0;
    int32_t e = msb64(acc);
    uint32_t m = (uint32_t)((acc << (63 - e)) >> 32); /* Q31 mantissa in [1, 2) */
    uint32_t i = (m >> 26) & {log_mask}u;
    uint64_t mc = (uint64_t)m * log_inv[i];          /* Q63, within 1/64 of 1 */
    int32_t r = mc >= (UINT64_C(1) << 63)
                    ? (int32_t)((mc - (UINT64_C(1) << 63) + (UINT64_C(1) << 32)) >> 33)
                    : -(int32_t)(((UINT64_C(1) << 63) - mc + (UINT64_C(1) << 32)) >> 33);
    /* ln(1 + r) = r (1 - r (1/2 - r (1/3 - r / 4))), Q30 */
    int32_t t = INT32_C(357913941) - q30((int64_t)r * INT32_C(268435456));
    t = INT32_C(536870912) - q30((int64_t)r * t);
    t = INT32_C(1073741824) - q30((int64_t)r * t);
    int64_t ln_m = (int64_t)q30((int64_t)r * t) + log_ln[i];
    int64_t total = (int64_t)(e - frac) * LN2_Q32 + ln_m * 4; /* Q32 */
    int32_t out = (int32_t)((total + 128) >> 8);
    return out < 0 ? 0 : out;
}}

void nas_frontend_frame(const int16_t *samples, int32_t *mfcc_fixed) {{
    uint32_t n, r = 0, k, b, sum_abs = 0;
    uint64_t energy = 0;
    int32_t g = 0, shift, frac;
    /* window and pack sample pairs as complex values, in bit-reversed order */
    for (n = 0; n < HALF; ++n) {{
        uint32_t bit = HALF >> 1;
        int32_t re = windowed(samples, 2 * n), im = windowed(samples, 2 * n + 1);
        buf[r].c[0] = re;
        buf[r].c[1] = im;
        sum_abs += (uint32_t)(re < 0 ? -re : re) + (uint32_t)(im < 0 ? -im : im);
        energy += (uint64_t)(re * re) + (uint64_t)(im * im);
        while (r & bit) {{
            r ^= bit;
            bit >>= 1;
        }}
        r |= bit;
    }}
    if (sum_abs == 0) {{ /* silence: mel 0, log 0, MFCC 0 */
        for (k = 0; k < COEFFS; ++k) mfcc_fixed[k] = 0;
        return;
    }}
    /* block floating point: the largest 2^g with every FFT value below FFT_LIMIT */
    while (((2 * (uint64_t)sum_abs + 1) << (g + 1)) <= FFT_LIMIT) ++g;
    for (n = 0; n < HALF; ++n) {{
        buf[n].c[0] *= (int32_t)1 << g;
        buf[n].c[1] *= (int32_t)1 << g;
    }}
    shift = msb64(energy) + 1 + 2 * g + LOG2_N - 46; /* Parseval: mel sums below 2^64 */
    if (shift < 0) shift = 0;
    frac = 2 * g + 33 - shift;
    fft();
    /* split: 2 X[k] = A + W^k B, A = Z[k] + conj Z[M-k], B = -i (Z[k] - conj Z[M-k]) */
    {{
        int64_t zr = buf[0].c[0], zi = buf[0].c[1];
        buf[0].p = power(2 * (zr + zi), 0, shift);
        buf[HALF].p = power(2 * (zr - zi), 0, shift);
    }}
    for (k = 1; k <= QUARTER; ++k) {{
        uint32_t m = HALF - k;
        int32_t zr = buf[k].c[0], zi = buf[k].c[1], mr = buf[m].c[0], mi = buf[m].c[1];
        int32_t ar = zr + mr, ai = zi - mi, br = zi + mi, bi = mr - zr, cs, sn;
        twiddle(k, &cs, &sn);
        int32_t tr = q30((int64_t)br * cs + (int64_t)bi * sn);
        int32_t ti = q30((int64_t)bi * cs - (int64_t)br * sn);
        buf[k].p = power((int64_t)ar + tr, (int64_t)ai + ti, shift);
        if (m != k) buf[m].p = power((int64_t)ar - tr, (int64_t)ti - ai, shift);
    }}
    /* mel sums and their logarithms */
    int32_t log_mel[BANDS];
    const uint16_t *w = mel_weight;
    for (b = 0; b < BANDS; ++b) {{
        uint64_t acc = 0;
        uint32_t count = mel_count[b];
        const slot_t *p = &buf[mel_first[b]];
        for (n = 0; n < count; ++n) acc += p[n].p * w[n];
        w += count;
        log_mel[b] = log_q24(acc, frac);
    }}
    /* DCT-II rows */
    for (k = 0; k < COEFFS; ++k) {{
        int64_t acc = 0;
        for (b = 0; b < BANDS; ++b) acc += (int64_t)dct[k][b] * log_mel[b];
        mfcc_fixed[k] = (int32_t)((acc + (INT64_C(1) << (DCT_SHIFT - 1))) >> DCT_SHIFT);
    }}
}}

/* clamp(round_half_even(v * QUANT_MULT / 2^QUANT_SHIFT) + ZERO_POINT, -128, 127) */
static int8_t quantize(int32_t v) {{
    int64_t p = (int64_t)v * QUANT_MULT;
    int64_t q = p >> QUANT_SHIFT;
    uint64_t rem = (uint64_t)p & ((UINT64_C(1) << QUANT_SHIFT) - 1u);
    uint64_t half = UINT64_C(1) << (QUANT_SHIFT - 1);
    if (rem > half || (rem == half && (q & 1))) q += 1;
    q += ZERO_POINT;
    return (int8_t)(q < -128 ? -128 : (q > 127 ? 127 : q));
}}

void nas_frontend(const int16_t *audio, int8_t *features) {{
    int32_t mfcc[COEFFS];
    uint32_t f, k;
    for (f = 0; f < NAS_FRONTEND_FRAMES; ++f) {{
        nas_frontend_frame(audio + (uint32_t)f * NAS_FRONTEND_STRIDE, mfcc);
        for (k = 0; k < COEFFS; ++k) features[f * COEFFS + k] = quantize(mfcc[k]);
    }}
}}
"""


def frontend_c(cfg: MfccConfig, input_scale: float, input_zero_point: int) -> dict[str, str]:
    """``nas_frontend.h`` and ``nas_frontend.c`` for ``cfg``: the fixed-point MFCC of the
    module docstring, ending in int8 features with the model's input scale and zero point."""
    plan = _plan(cfg)
    qmult, qshift = _quantizer(float(input_scale), int(input_zero_point))
    n = cfg.fft_size
    quarter = n // 4
    cos_q30 = np.round(np.cos(2 * np.pi * np.arange(quarter + 1) / n) * 2.0**30)
    first, count, weights = _mel_tables(cfg)
    log_inv, log_ln = _log_tables()
    dct = plan["dct"]
    dct_rows = ",\n".join("    {" + ", ".join(str(int(v)) for v in row) + "}" for row in dct)
    tables = "".join(
        [
            c_array("int16_t", "hann_q15", plan["hann"]),
            c_array("int32_t", "cos_q30", cos_q30.astype(np.int64)),
            c_array("uint16_t", "mel_first", first),
            c_array("uint16_t", "mel_count", count),
            c_array("uint16_t", "mel_weight", weights),
            c_array("uint32_t", "log_inv", log_inv),
            c_array("int32_t", "log_ln", log_ln),
            f"static const int32_t dct[{cfg.coefficients}][{cfg.mel_bands}] = {{\n{dct_rows}}};\n",
        ]
    )
    source = _SOURCE.format(
        n=n,
        half=n // 2,
        quarter=quarter,
        log2n=n.bit_length() - 1,
        dct_shift=LOG_Q + plan["dct_q"] - MFCC_Q,
        log_q=LOG_Q,
        dct_q=plan["dct_q"],
        mfcc_q=MFCC_Q,
        qmult=qmult,
        qshift=qshift,
        zero_point=int(input_zero_point),
        bands=cfg.mel_bands,
        coeffs=cfg.coefficients,
        tables=tables,
        log_mask=LOG_TABLE - 1,
    )
    return {
        "nas_frontend.h": _header(cfg, float(input_scale), int(input_zero_point)),
        "nas_frontend.c": source,
    }


def table_bytes(cfg: MfccConfig) -> int:
    """Bytes of the constant tables `frontend_c` writes for ``cfg`` (flash, besides the
    code): the Hann window, the quarter-wave cosines, the sparse mel filters, the
    logarithm's tables and the DCT rows."""
    first, count, weights = _mel_tables(cfg)
    return (
        2 * cfg.window
        + 4 * (cfg.fft_size // 4 + 1)
        + 2 * (len(first) + len(count) + len(weights))
        + 8 * LOG_TABLE
        + 4 * cfg.coefficients * cfg.mel_bands
    )


def buffer_bytes(cfg: MfccConfig) -> int:
    """Static RAM of the C besides the stack: the FFT's complex int32 buffer of
    ``fft_size / 2`` points and 8 bytes of state."""
    return 4 * cfg.fft_size + 8


_HOST_MAIN = """\
/* Host harness of nas_frontend.c: int16 clips on stdin, int8 features on stdout; with
 * the argument "frames", int16 windows on stdin and int32 Q16 MFCC values on stdout. */
#include <stdio.h>
#include <string.h>

#include "nas_frontend.h"

int main(int argc, char **argv) {
    static int16_t audio[NAS_FRONTEND_CLIP_SAMPLES];
    static int8_t features[NAS_FRONTEND_FEATURE_BYTES];
    static int32_t mfcc[NAS_FRONTEND_COEFFICIENTS];
    if (argc > 1 && strcmp(argv[1], "frames") == 0) {
        while (fread(audio, sizeof audio[0], NAS_FRONTEND_WINDOW, stdin) == NAS_FRONTEND_WINDOW) {
            nas_frontend_frame(audio, mfcc);
            if (fwrite(mfcc, sizeof mfcc[0], NAS_FRONTEND_COEFFICIENTS, stdout) !=
                NAS_FRONTEND_COEFFICIENTS)
                return 1;
        }
        return 0;
    }
    while (fread(audio, sizeof audio[0], NAS_FRONTEND_CLIP_SAMPLES, stdin) ==
           NAS_FRONTEND_CLIP_SAMPLES) {
        nas_frontend(audio, features);
        if (fwrite(features, 1, NAS_FRONTEND_FEATURE_BYTES, stdout) != NAS_FRONTEND_FEATURE_BYTES)
            return 1;
    }
    return 0;
}
"""

#: Host compiler flags: those of the c_sim backend's host build, plus ``-pedantic``.
HOST_CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic"]


def build_host(
    folder: Path,
    cfg: MfccConfig,
    input_scale: float = 1.0,
    input_zero_point: int = 0,
    extra_flags: tuple[str, ...] = (),
) -> Path:
    """Write the front-end and its host harness into ``folder`` and compile them with
    gcc (``extra_flags``, e.g. ``-fsanitize=undefined``); the executable's path."""
    write_files(
        folder, {**frontend_c(cfg, input_scale, input_zero_point), "host_main.c": _HOST_MAIN}
    )
    exe = folder / "frontend_host"
    cmd = ["gcc", *HOST_CFLAGS, *extra_flags, "-o", str(exe), "host_main.c", "nas_frontend.c"]
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"gcc failed on the front-end: {proc.stderr.strip()[-2000:]}")
    return exe


def _run_host(exe: Path, data: np.ndarray, *args: str) -> bytes:
    proc = subprocess.run(
        [str(exe), *args],
        input=np.ascontiguousarray(data, dtype="<i2").tobytes(),
        capture_output=True,
        timeout=600,
    )
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-2000:]
        raise RuntimeError(f"{exe.name} exited with {proc.returncode}: {err}")
    return proc.stdout


def frontend_on_host(
    folder: Path, cfg: MfccConfig, input_scale: float, input_zero_point: int, audio: np.ndarray
) -> np.ndarray:
    """The C front-end compiled with the host's gcc (in ``folder``) run on ``audio``
    ((N, clip_samples) int16): (N, frames * coefficients) int8 features."""
    audio = np.asarray(audio).reshape(-1, cfg.clip_samples)
    exe = build_host(folder, cfg, input_scale, input_zero_point)
    out = _run_host(exe, audio)
    return np.frombuffer(out, dtype=np.int8).reshape(len(audio), cfg.frames * cfg.coefficients)


def frames_on_host(folder: Path, cfg: MfccConfig, frames: np.ndarray) -> np.ndarray:
    """``nas_frontend_frame`` on the host for (N, window) int16 frames: (N, coefficients)
    int32 MFCC in Q16 (`MFCC_Q`), the fixed-point values before the int8 step."""
    frames = np.asarray(frames).reshape(-1, cfg.window)
    out = _run_host(build_host(folder, cfg), frames, "frames")
    return np.frombuffer(out, dtype="<i4").reshape(len(frames), cfg.coefficients)


# ----------------------------------------------------------------- audio to check it on

#: The kinds of `varied_audio`, in the order it cycles through them.
AUDIO_KINDS = ("silence", "sweep", "square", "noise", "bursts", "speech", "extreme")


def _speech(rng: np.random.Generator, cfg: MfccConfig) -> np.ndarray:
    """A speech-like float clip: syllables of a pulse train at a wandering pitch through
    three or four formant resonators, fricatives of filtered noise, pauses and a noise
    floor."""
    import scipy.signal

    sr, total = cfg.sample_rate, cfg.clip_samples
    out = rng.normal(0, rng.uniform(0.0, 0.002), total)
    pos = int(rng.integers(0, sr // 10))
    while pos < total:
        length = int(rng.uniform(0.06, 0.3) * sr)
        n = min(length, total - pos)
        t = np.arange(n) / sr
        if rng.random() < 0.75:  # voiced
            f0 = rng.uniform(80, 280) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(1, 6) * t))
            phase = np.cumsum(f0 / sr)
            src = np.diff(np.floor(phase), prepend=np.floor(phase[0])) + rng.normal(0, 0.02, n)
            src = scipy.signal.lfilter([1.0], [1.0, -0.9], src)
            centres = [rng.uniform(250, 900), rng.uniform(800, 2500), rng.uniform(2000, 3500)]
            if rng.random() < 0.5:
                centres.append(rng.uniform(3300, min(4500, sr / 2 - 200)))
        else:  # fricative
            src = rng.normal(0, 0.3, n)
            centres = [rng.uniform(2500, min(7000, sr / 2 - 500))]
        sig = np.zeros(n)
        for fc in centres:
            r = np.exp(-np.pi * rng.uniform(60, 250) / sr)
            a = [1.0, -2 * r * np.cos(2 * np.pi * fc / sr), r * r]
            sig += scipy.signal.lfilter([1 - r], a, src)
        env = np.sin(np.pi * np.arange(n) / max(n, 2)) ** rng.uniform(0.5, 2)
        out[pos : pos + n] += sig * env / (np.abs(sig).max() + 1e-12)
        pos += n + int(rng.uniform(0, 0.15) * sr)
    return out / np.abs(out).max()


def varied_audio(n: int, cfg: MfccConfig, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """``n`` clips of deterministic synthetic audio (int16, (n, clip_samples)) cycling
    through `AUDIO_KINDS` at random levels, and each clip's kind: the signals the tests
    and ``benchmarks/frontend_agreement.py`` check the C against `nas.frontend.mfcc` on.
    Silence; full-scale sine sweeps; clipped square waves; white noise from 1 to 30,000
    rms; short tone bursts; speech-like formant signals (some quiet, some clipped); and
    extremes (random full-scale samples, a constant -32768, full-scale Nyquist)."""
    rng = np.random.default_rng(seed)
    sr, total = cfg.sample_rate, cfg.clip_samples
    t = np.arange(total) / sr
    clips, kinds = [], []
    for i in range(n):
        kind = AUDIO_KINDS[i % len(AUDIO_KINDS)]
        if kind == "silence":
            x = np.zeros(total)
        elif kind == "sweep":
            f0, f1 = rng.uniform(20, 500), rng.uniform(1000, sr / 2)
            x = 32767 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1])))
        elif kind == "square":
            f = rng.uniform(50, 2000)
            x = rng.uniform(1.0, 4.0) * 32767 * np.sign(np.sin(2 * np.pi * f * t + rng.random()))
        elif kind == "noise":
            x = rng.normal(0, 10 ** rng.uniform(0, 4.5), total)
        elif kind == "bursts":
            x = np.zeros(total)
            for _ in range(int(rng.integers(1, 6))):
                start, length = int(rng.integers(0, total)), int(rng.uniform(0.005, 0.08) * sr)
                seg = np.arange(min(length, total - start))
                x[start : start + seg.size] += (
                    10 ** rng.uniform(2, 4.5)
                    * np.sin(2 * np.pi * rng.uniform(100, sr / 2) * seg / sr)
                    * np.hanning(seg.size)
                )
        elif kind == "speech":
            x = _speech(rng, cfg) * 10 ** rng.uniform(1.5, 4.8)  # peaks 30 to 2x full scale
        else:
            x = [
                rng.choice([-32768.0, 32767.0], total),
                np.full(total, -32768.0),
                np.resize([32767.0, -32768.0], total),
            ][(i // len(AUDIO_KINDS)) % 3]
        clips.append(np.clip(np.round(x), -32768, 32767).astype(np.int16))
        kinds.append(kind)
    return np.stack(clips), kinds


# ------------------------------------------------------------------------ its cost


def frontend_cost(cfg: MfccConfig, hw: HardwareProfile) -> dict[str, float]:
    """The front-end's share of a chip's budget, per inference: ``frontend_sram_bytes``
    (the audio of one window, which a firmware fills as samples arrive and hands to
    ``nas_frontend_frame``; the FFT buffer; the int8 feature map kept between inferences;
    the measured stack; a whole clip kept in RAM, 2 bytes a sample, is not counted),
    ``frontend_flash_bytes`` (the measured code and `table_bytes`),
    ``frontend_latency_ms`` (every frame of a clip, as ``nas_frontend`` computes them: the
    profile's ``latency_lut.mfcc_frame`` entry, fitted on QEMU instruction counts; a
    streaming firmware computes only the new frames) and ``frontend_energy_uj``. A
    `ConfigError` when the profile has no measured figures."""
    if not hw.frontend_code_bytes:
        raise ConfigError(
            f"{hw.source_file or hw.name}: no measured cost of the MFCC front-end on "
            f"{hw.core} (frontend_code_bytes, frontend_stack_bytes, latency_lut.mfcc_frame); "
            "measure them: python benchmarks/frontend_calibration.py --mcpu <core>"
        )
    entry = hw.latency_entry("mfcc_frame")
    per_frame = entry.cycles(frame_work(cfg), cfg.mel_bands)
    latency = hw.instructions_to_ms(per_frame * cfg.frames)
    return {
        "frontend_sram_bytes": 2 * cfg.window
        + buffer_bytes(cfg)
        + cfg.frames * cfg.coefficients
        + hw.frontend_stack_bytes,
        "frontend_flash_bytes": hw.frontend_code_bytes + table_bytes(cfg),
        "frontend_latency_ms": latency,
        "frontend_energy_uj": latency * hw.active_power_mw,
    }
