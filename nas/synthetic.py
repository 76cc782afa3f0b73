"""Small data sets drawn offline, for tests, demos and benchmarks (no download).

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

import numpy as np

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
