"""Make a synthetic keyword-spotting folder in the Speech Commands layout, offline.

The ten keywords and other words ("unknown"), spoken by espeak-ng (Debian package
``espeak-ng``) with voices, variants, pitches and speeds drawn per synthetic speaker, 16 kHz
mono 16-bit clips of 1 s with the word at a random offset and gain;
``validation_list.txt`` / ``testing_list.txt`` by speaker, white noise under every clip at
a random signal-to-noise ratio of 5 to 30 dB; ``_background_noise_/`` with
white, pink and hum noise. Deterministic for ``--seed``. The speech is synthetic: a
model trained on it is no keyword spotter for people; the same commands run unchanged on
the real Speech Commands v2 folder.

Usage: python benchmarks/kws/make_dataset.py DIR [--per-word 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from nas.synthetic import speech_commands_folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--per-word", type=int, default=300, help="clips per keyword")
    ap.add_argument("--per-other", type=int, default=None, help="clips per other word")
    ap.add_argument("--seed", type=int, default=0)
    opts = ap.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("espeak-ng not found: apt-get install espeak-ng", file=sys.stderr)
        return 2
    if opts.per_word < 1:
        print(f"--per-word={opts.per_word}: give 1 or more", file=sys.stderr)
        return 2
    started = time.monotonic()
    speech_commands_folder(opts.root, opts.per_word, opts.seed, per_other=opts.per_other)
    clips = sum(1 for _ in opts.root.glob("*/*.wav"))
    print(f"{opts.root}: {clips} clips in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
