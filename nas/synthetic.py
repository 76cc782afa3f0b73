"""Small data sets drawn offline, for tests, demos and benchmarks (no download).

`speech_commands_folder`: a keyword-spotting folder in the Speech Commands layout,
spoken by espeak-ng's synthetic voices (Debian package ``espeak-ng``).

`motion_windows`: accelerometer windows of four motions, the phone-pick-up kind of task a
sensor model on a microcontroller solves. Three axes in g at ``rate_hz``, with gravity
along a random direction (the device's orientation), sensor noise and a random start:

0. ``still``: gravity and noise only;
1. ``walk``: steps at 1.6 to 2.4 Hz, mostly vertical, with a weaker second harmonic;
2. ``shake``: fast back-and-forth at 5 to 8 Hz along a random direction, stronger;
3. ``pick_up``: still, then the device turns (gravity moves to another axis) over half a
   second somewhere in the window, with a bump of lift.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import scipy.io.wavfile
import scipy.signal

MOTIONS = ("still", "walk", "shake", "pick_up")


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def motion_windows(
    n: int, length: int = 64, rate_hz: float = 50.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` windows as float32 (n, length, 3) in g, and their labels (int64, balanced
    round-robin over `MOTIONS`), deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / rate_hz
    x = np.empty((n, length, 3), dtype=np.float32)
    y = np.arange(n, dtype=np.int64) % len(MOTIONS)
    for i, label in enumerate(y):
        gravity = _unit(rng)
        signal = np.tile(gravity, (length, 1))
        if label == 1:
            f, phase = rng.uniform(1.6, 2.4), rng.uniform(0, 2 * np.pi)
            up = gravity * rng.uniform(0.2, 0.5)
            swing = _unit(rng) * rng.uniform(0.05, 0.15)
            wave = np.sin(2 * np.pi * f * t + phase)
            signal += np.outer(wave, up) + np.outer(np.sin(4 * np.pi * f * t + phase), swing)
        elif label == 2:
            f, phase = rng.uniform(5.0, 8.0), rng.uniform(0, 2 * np.pi)
            signal += np.outer(
                np.sin(2 * np.pi * f * t + phase), _unit(rng) * rng.uniform(0.6, 1.2)
            )
        elif label == 3:
            start, turn = rng.uniform(0.1, 0.6) * t[-1], 0.5
            ramp = np.clip((t - start) / turn, 0, 1)[:, None]
            signal = (1 - ramp) * gravity + ramp * _unit(rng)
            signal += np.outer(np.sin(np.pi * ramp[:, 0]), gravity * rng.uniform(0.2, 0.4))
        x[i] = signal + rng.normal(0, 0.04, signal.shape)
    return x, y


# --------------------------------------------------------------------------- speech

#: The ten keywords of the standard 12-class Speech Commands task.
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
#: Other words, spoken as Speech Commands v2's non-keywords are ("unknown").
OTHER_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "tree", "wow", "zero", "one",
               "two", "three", "four", "five", "learn", "follow")  # fmt: skip
#: espeak-ng voices (accents) and variants (speakers) the synthetic speakers draw from.
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
            "klatt", "klatt2", "klatt3", "croak", "grandma", "grandpa")  # fmt: skip
SAMPLE_RATE = 16000


def speak(word: str, voice: str, pitch: int, speed: int, work: Path) -> np.ndarray:
    """``word`` spoken by espeak-ng (Debian package ``espeak-ng``), resampled to 16 kHz
    int16 with SciPy (espeak-ng writes 22,050 Hz)."""
    out = work / "espeak.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(out), word],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    rate, audio = scipy.io.wavfile.read(out)
    audio = audio.astype(np.float64)
    if rate != SAMPLE_RATE:
        g = math.gcd(rate, SAMPLE_RATE)
        audio = scipy.signal.resample_poly(audio, SAMPLE_RATE // g, rate // g)
    return np.clip(np.round(audio), -32768, 32767).astype(np.int16)


def noise_clips(seconds: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Background noise recordings stand-ins: white, pink (1/f), and mains hum with
    harmonics under noise; int16 at 16 kHz."""
    n = seconds * SAMPLE_RATE
    white = rng.normal(0, 1, n)
    spectrum = np.fft.rfft(rng.normal(0, 1, n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    pink = np.fft.irfft(spectrum, n)
    t = np.arange(n) / SAMPLE_RATE
    hum = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in (1, 2, 3, 5)) + 0.3 * white
    out = {}
    for name, sig in (("white_noise", white), ("pink_noise", pink), ("hum", hum)):
        sig = sig / np.abs(sig).max() * 0.5 * 32767
        out[name] = sig.astype(np.int16)
    return out


def speech_commands_folder(
    root: Path,
    per_word: int,
    seed: int = 0,
    keywords: tuple[str, ...] = KEYWORDS,
    others: tuple[str, ...] = OTHER_WORDS,
    per_other: int | None = None,
    noise_seconds: int = 10,
    snr_db: tuple[float, float] = (5.0, 30.0),
) -> Path:
    """Write a Speech Commands-layout folder under ``root``, deterministic for ``seed``:
    one folder of 16 kHz mono int16 WAV clips (at most 1 s, the word at a random offset)
    per word, ``per_word`` clips per keyword and ``per_other`` (default a third of it) per
    other word, each by a synthetic speaker (an espeak-ng voice, variant, pitch and
    speed), at a random gain over white noise at a signal-to-noise ratio drawn from
    ``snr_db``. ``validation_list.txt`` and ``testing_list.txt`` hold the clips of about 10%
    of the speakers each (a speaker's clips stay in one split, as in Speech Commands), and
    ``_background_noise_/`` holds noise recordings. The speech is synthetic."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    per_other = max(1, per_word // 3) if per_other is None else per_other
    speakers = [
        (str(rng.choice(VOICES)) + "+" + str(rng.choice(VARIANTS)),
         int(rng.integers(20, 80)), int(rng.integers(110, 220)))
        for _ in range(max(10, per_word // 2))
    ]  # fmt: skip
    split_of = ["train"] * len(speakers)
    order = rng.permutation(len(speakers))
    k = max(1, round(0.1 * len(speakers)))
    for i in order[:k]:
        split_of[i] = "val"
    for i in order[k : 2 * k]:
        split_of[i] = "test"
    lists: dict[str, list[str]] = {"val": [], "test": []}
    with tempfile.TemporaryDirectory() as tmp:
        for word in (*keywords, *others):
            folder = root / word
            folder.mkdir(exist_ok=True)
            for i in range(per_word if word in keywords else per_other):
                s = int(rng.integers(len(speakers)))
                voice, pitch, speed = speakers[s]
                audio = speak(word, voice, pitch, speed, Path(tmp))[:SAMPLE_RATE]
                start = int(rng.integers(0, SAMPLE_RATE - len(audio) + 1))
                gain = rng.uniform(0.3, 1.0)
                voice_only = np.zeros(SAMPLE_RATE)
                voice_only[start : start + len(audio)] = audio * gain
                # a room: a noise floor at a random signal-to-noise ratio
                power = float(np.mean(voice_only[start : start + len(audio)] ** 2)) + 1e-9
                snr = rng.uniform(*snr_db)
                floor = rng.normal(0, np.sqrt(power / 10 ** (snr / 10)), SAMPLE_RATE)
                mixed = np.round(voice_only + floor)
                clip = np.clip(mixed, -32768, 32767).astype(np.int16)
                name = f"{s:04x}{seed:04x}_nohash_{i}.wav"
                scipy.io.wavfile.write(folder / name, SAMPLE_RATE, clip)
                if split_of[s] in lists:
                    lists[split_of[s]].append(f"{word}/{name}")
    (root / "validation_list.txt").write_text("".join(f"{p}\n" for p in lists["val"]))
    (root / "testing_list.txt").write_text("".join(f"{p}\n" for p in lists["test"]))
    noise = root / "_background_noise_"
    noise.mkdir(exist_ok=True)
    for name, sig in noise_clips(noise_seconds, rng).items():
        scipy.io.wavfile.write(noise / f"{name}.wav", SAMPLE_RATE, sig)
    return root
