"""The audio front-end of keyword spotting: 16-bit audio to an MFCC feature map.

MLPerf Tiny's keyword-spotting defaults (`MfccConfig`): 16 kHz audio, 1 s clips, 30 ms
windows every 20 ms (49 frames), a 512-point FFT, 40 mel bands from 20 Hz to 4 kHz and
10 cepstral coefficients: a 49 x 10 feature map per clip.

The chip runs this front-end too, so the integer steps are defined here once and both
sides use them: the periodic Hann window as Q15 integers (`hann_q15`) applied with an
arithmetic shift, the triangular mel filters as Q15 weights (`mel_weights_q15`) and the
orthonormal DCT-II (``scipy.fft.dct``). `mfcc` computes the training features in float64
from the windowed integer frames (NumPy's FFT); the firmware's fixed-point C computes
the same steps in integers and is checked against `mfcc` within a stated tolerance.

Per frame: ``w[n] = (x[n] * hann_q15[n]) >> 15``; ``P[k] = |rfft(w, 512)[k]|^2``;
``mel[b] = sum_k P[k] * weight[b, k] / 2^15 / 2^16`` (the units the C accumulates in);
``log_mel = ln(max(mel, 1))``; ``mfcc = dct_ii_ortho(log_mel)[:coefficients]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from nas.errors import ConfigError

#: Power is shifted right by this many bits before the mel sums (keeps them in 64 bits).
POWER_SHIFT = 16
Q15 = 1 << 15


@dataclass(frozen=True)
class MfccConfig:
    """The front-end's parameters (MLPerf Tiny KWS defaults)."""

    sample_rate: int = 16000
    clip_ms: int = 1000
    window_ms: int = 30
    stride_ms: int = 20
    mel_bands: int = 40
    coefficients: int = 10
    lower_hz: float = 20.0
    upper_hz: float = 4000.0

    @property
    def clip_samples(self) -> int:
        return self.sample_rate * self.clip_ms // 1000

    @property
    def window(self) -> int:
        return self.sample_rate * self.window_ms // 1000

    @property
    def stride(self) -> int:
        return self.sample_rate * self.stride_ms // 1000

    @property
    def frames(self) -> int:
        return 1 + (self.clip_samples - self.window) // self.stride

    @property
    def fft_size(self) -> int:
        return 1 << (self.window - 1).bit_length()

    @property
    def shape(self) -> tuple[int, int]:
        """(frames, coefficients): the feature map's height and width."""
        return (self.frames, self.coefficients)

    def check(self, where: str = "dataset") -> None:
        """A one-line `ConfigError` for parameters that make no feature map."""
        if not 0 < self.window_ms <= self.clip_ms or self.stride_ms <= 0:
            raise ConfigError(
                f"{where}.window_ms={self.window_ms}, stride_ms={self.stride_ms}: the window "
                f"must be 1 to {self.clip_ms} ms and the stride positive"
            )
        if not 1 <= self.coefficients <= self.mel_bands:
            raise ConfigError(
                f"{where}.coefficients={self.coefficients} must be 1 to mel_bands={self.mel_bands}"
            )
        nyquist = self.sample_rate / 2
        if not 0 <= self.lower_hz < self.upper_hz <= nyquist:
            raise ConfigError(
                f"{where}.lower_hz={self.lower_hz}, upper_hz={self.upper_hz}: need 0 <= "
                f"lower < upper <= {nyquist:g} (half the sample rate)"
            )
        if self.fft_size > 4096:
            raise ConfigError(f"{where}.window_ms={self.window_ms}: at most 4096 samples")


def hann_q15(n: int) -> np.ndarray:
    """The periodic Hann window of ``n`` samples as Q15 integers (int32)."""
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    return np.minimum(np.round(w * Q15), Q15 - 1).astype(np.int32)


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_weights_q15(c: MfccConfig) -> np.ndarray:
    """Triangular filters equally spaced on the mel scale (HTK's 1127 ln(1 + f/700)),
    ``mel_bands x (fft_size // 2 + 1)``, as Q15 integers (int32); bins outside
    ``lower_hz..upper_hz`` weigh 0."""
    bins = c.fft_size // 2 + 1
    hz = np.arange(bins) * c.sample_rate / c.fft_size
    mel = _hz_to_mel(hz)
    edges = np.linspace(_hz_to_mel(c.lower_hz), _hz_to_mel(c.upper_hz), c.mel_bands + 2)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (mel[None, :] - lo) / (mid - lo)
    falling = (hi - mel[None, :]) / (hi - mid)
    w = np.clip(np.minimum(rising, falling), 0.0, 1.0)
    return np.round(w * (Q15 - 1)).astype(np.int32)


def dct_matrix(c: MfccConfig) -> np.ndarray:
    """The orthonormal DCT-II rows ``coefficients x mel_bands`` (scipy.fft.dct of the
    identity): ``mfcc = dct_matrix @ log_mel``."""
    eye = np.eye(c.mel_bands)
    return scipy.fft.dct(eye, type=2, norm="ortho", axis=0)[: c.coefficients]


def frames_of(audio: np.ndarray, c: MfccConfig) -> np.ndarray:
    """(N, frames, window) int64 frames of (N, clip_samples) int16 audio."""
    idx = np.arange(c.frames)[:, None] * c.stride + np.arange(c.window)[None, :]
    return np.asarray(audio, dtype=np.int64)[:, idx]


def windowed(audio: np.ndarray, c: MfccConfig) -> np.ndarray:
    """The frames times the Q15 Hann window, shifted back (integers, as the C computes)."""
    return (frames_of(audio, c) * hann_q15(c.window)) >> 15


def log_mel(audio: np.ndarray, c: MfccConfig) -> np.ndarray:
    """(N, frames, mel_bands) float64 ``ln(max(mel, 1))`` of int16 audio."""
    spectrum = np.fft.rfft(windowed(audio, c).astype(np.float64), n=c.fft_size, axis=-1)
    power = spectrum.real**2 + spectrum.imag**2
    mel = power @ mel_weights_q15(c).T.astype(np.float64) / float(1 << (15 + POWER_SHIFT))
    return np.log(np.maximum(mel, 1.0))


def mfcc(audio: np.ndarray, c: MfccConfig) -> np.ndarray:
    """(N, frames, coefficients) float32 MFCC of (N, clip_samples) int16 audio."""
    audio = np.asarray(audio)
    if audio.ndim != 2 or audio.shape[1] != c.clip_samples:
        raise ValueError(f"audio must be (N, {c.clip_samples}), got {audio.shape}")
    return (log_mel(audio, c) @ dct_matrix(c).T).astype(np.float32)


def frame_work(c: MfccConfig) -> int:
    """Multiply-accumulates of one frame as the fixed-point C computes it (`nas.frontend_c`):
    the window, the N/2-point complex FFT (4 per radix-2 butterfly), the real split (4 per
    bin), the power (2 per bin), the nonzero mel weights and the DCT. With the number of
    mel bands and a per-frame constant, a profile's ``latency_lut.mfcc_frame`` entry turns
    it into instructions (`frontend_cost`)."""
    half = c.fft_size // 2
    butterflies = half // 2 * (half.bit_length() - 1)
    bins = half + 1
    mel = int((mel_weights_q15(c) > 0).sum())
    return c.window + 4 * butterflies + 4 * half + 2 * bins + mel + c.mel_bands * c.coefficients
