"""``speech_commands``: keyword spotting on one-second clips, as MFCC feature maps.

``dataset.root=DIR`` is a folder in the layout of Google's Speech Commands (Warden 2018,
arXiv:1804.03209; v2 at http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz,
unpacked): one folder per word of 16 kHz mono 16-bit WAV clips of at most 1 s,
``validation_list.txt`` and ``testing_list.txt`` naming the clips of those splits (the
rest train), and ``_background_noise_/`` with longer noise recordings.

The task is the standard 12-class one: ``_silence_``, ``_unknown_`` and the words of
``dataset.words`` (default yes, no, up, down, left, right, on, off, stop, go). Every other
word folder is "unknown"; each split gets ``dataset.unknown_percent`` (10) percent of its
keyword clips' count as unknown clips and as many silence clips (cut from the noise
files at a random level), as TensorFlow's speech_commands example and MLPerf Tiny do.
Training clips get ``dataset.augment`` augmented copies each (Hello Edge's augmentation:
a random time shift of up to ``dataset.time_shift_ms``, background noise mixed in with
probability 0.8 at up to ``dataset.noise_volume``), drawn once with ``dataset.seed``.

Each clip becomes the MFCC map of `nas.frontend` (49 x 10 by default: 30 ms windows every
20 ms, 40 mel bands, 10 coefficients; ``dataset.window_ms``, ``stride_ms``,
``mel_bands``, ``coefficients``), a fixed-size feature map (`nas.data.FEATURES`).
Features are cached in ``dataset.cache_dir`` like decoded images. The chip runs the same
front-end (`nas.frontend_c`, fixed point): its RAM, flash and time per inference count in
every candidate's budget (``frontend_*`` columns), and the firmware feeds it audio.
``dataset.search_window_ms``, ``search_stride_ms``, ``search_mel_bands`` and
``search_coefficients`` search front-end settings with the network: each trial draws
them (``frontend_window_ms``, ...) and trains on the features they make.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io.wavfile

from nas import hookimpl
from nas.data import FEATURES, Arrays, BaseDataset, DatasetConfig, cached, file_key
from nas.errors import ConfigError
from nas.frontend import MfccConfig, mfcc

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
SILENCE, UNKNOWN = "_silence_", "_unknown_"
NOISE_DIR = "_background_noise_"
SPLITS = ("train", "val", "test")
DOWNLOAD = (
    "download Speech Commands v2 (http://download.tensorflow.org/data/"
    "speech_commands_v0.02.tar.gz) and unpack it there, or make a synthetic one: "
    "python benchmarks/kws/make_dataset.py DIR"
)


#: The front-end settings that may be searched (``dataset.search_<setting>=[...]``).
SEARCHABLE = ("window_ms", "stride_ms", "mel_bands", "coefficients")
PREFIX = "frontend_"


@dataclass
class SpeechCommandsConfig(DatasetConfig):
    root: str = ""
    words: list[str] = field(default_factory=lambda: list(KEYWORDS))
    unknown_percent: float = 10.0
    augment: int = 1
    time_shift_ms: int = 100
    noise_volume: float = 0.1
    # the front-end's settings, MLPerf Tiny's by default (`nas.frontend.MfccConfig`)
    window_ms: int = MfccConfig.window_ms
    stride_ms: int = MfccConfig.stride_ms
    mel_bands: int = MfccConfig.mel_bands
    coefficients: int = MfccConfig.coefficients
    cache_dir: str = "~/.cache/mcu-nas/speech_commands"
    #: Front-end settings searched with the network (empty: the one above), e.g.
    #: ``dataset.search_window_ms=[20,30,40]``; Optuna parameters ``frontend_<setting>``.
    search_window_ms: list[int] = field(default_factory=list)
    search_stride_ms: list[int] = field(default_factory=list)
    search_mel_bands: list[int] = field(default_factory=list)
    search_coefficients: list[int] = field(default_factory=list)

    def searched(self) -> dict[str, list[int]]:
        """Setting -> the values searched, for the settings with a search list."""
        lists = {k: getattr(self, "search_" + k) for k in SEARCHABLE}
        return {k: list(v) for k, v in lists.items() if v}

    def mfcc(self) -> MfccConfig:
        return MfccConfig(
            window_ms=self.window_ms,
            stride_ms=self.stride_ms,
            mel_bands=self.mel_bands,
            coefficients=self.coefficients,
        )


def read_wav(path: Path, rate: int) -> np.ndarray:
    """The samples of a mono 16-bit WAV file at ``rate``, or a `ConfigError` naming it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", scipy.io.wavfile.WavFileWarning)
            got_rate, audio = scipy.io.wavfile.read(path)
    except (OSError, ValueError, scipy.io.wavfile.WavFileWarning) as exc:
        raise ConfigError(f"{path}: cannot read as a WAV file ({exc})") from None
    if got_rate != rate:
        raise ConfigError(f"{path}: sample rate {got_rate} Hz; valid: {rate} Hz")
    if audio.ndim != 1:
        raise ConfigError(f"{path}: {audio.shape[1]} channels; valid: mono (1 channel)")
    if audio.dtype != np.int16:
        raise ConfigError(f"{path}: {audio.dtype} samples; valid: 16-bit PCM")
    return audio


def read_clip(path: Path, samples: int, rate: int) -> np.ndarray:
    """A clip as int16, zero-padded to ``samples``; longer clips are refused."""
    audio = read_wav(path, rate)
    if len(audio) > samples:
        raise ConfigError(
            f"{path}: {len(audio) / rate:.3f} s long; valid: at most {samples / rate:g} s"
        )
    out = np.zeros(samples, dtype=np.int16)
    out[: len(audio)] = audio
    return out


def _list(root: Path, name: str) -> set[str]:
    path = root / name
    if not path.is_file():
        raise ConfigError(f"{path}: not found; the Speech Commands layout has it; {DOWNLOAD}")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


class SpeechCommandsDataset(BaseDataset):
    """Speech Commands folders as N x 1 x frames x coefficients MFCC maps."""

    name = "speech_commands"
    Config = SpeechCommandsConfig

    def choices(self) -> list[tuple[str, list[Any]]]:
        return [(PREFIX + k, v) for k, v in self.config.searched().items()]

    def variant(self, params: dict[str, Any]) -> Arrays:
        settings = {k.removeprefix(PREFIX): v for k, v in params.items()}
        return type(self)(replace(self.config, **settings)).load()

    def _check_choices(self) -> None:
        """Every combination of the searched settings makes a valid front-end."""
        c = self.config
        for name, options in c.searched().items():
            if len(set(options)) != len(options):
                raise ConfigError(f"dataset.search_{name}={options}: give distinct values")
        grid = [[(k, v) for v in opts] for k, opts in c.searched().items()]
        for combo in itertools.product(*grid):
            where = "dataset.search_" + ", search_".join(f"{k}={v}" for k, v in combo)
            replace(c, **dict(combo)).mfcc().check(where)

    def load(self) -> Arrays:
        c = self.config
        fe = c.mfcc()
        fe.check("dataset")
        self._check_options()
        self._check_choices()
        root = Path(c.root).expanduser() if c.root else None
        if root is None or not root.is_dir():
            raise ConfigError(f"dataset.root={c.root or '(unset)'}: not a folder; {DOWNLOAD}")
        words = [d.name for d in sorted(root.iterdir()) if d.is_dir() and d.name != NOISE_DIR]
        missing = [w for w in c.words if w not in words]
        if missing:
            raise ConfigError(
                f"dataset.words: no folder {root / missing[0]}; the folders are: "
                f"{', '.join(words) or '(none)'}"
            )
        noise_files = (
            sorted((root / NOISE_DIR).glob("*.wav")) if (root / NOISE_DIR).is_dir() else []
        )
        if not noise_files:
            raise ConfigError(
                f"{root / NOISE_DIR}: no .wav noise recordings (they make the silence class "
                f"and the augmentation); {DOWNLOAD}"
            )
        val, test = _list(root, "validation_list.txt"), _list(root, "testing_list.txt")
        clips: dict[str, list[tuple[Path, str]]] = {s: [] for s in SPLITS}
        for word in words:
            files = sorted((root / word).glob("*.wav"))
            if word in c.words and not files:
                raise ConfigError(f"{root / word}: no .wav clips")
            for f in files:
                rel = f"{word}/{f.name}"
                split = "val" if rel in val else "test" if rel in test else "train"
                clips[split].append((f, word))
        names = (SILENCE, UNKNOWN, *c.words)
        every = [p for s in SPLITS for p, _ in clips[s]] + noise_files
        options = {"config": repr(c), "frontend": repr(fe)}
        key = file_key(root, every, options)
        arrays = cached(c.cache_dir, key, lambda: self._features(clips, noise_files, names, fe))
        x = {s: arrays[f"x_{s}"] for s in SPLITS}
        y = {s: arrays[f"y_{s}"] for s in SPLITS}
        return Arrays(
            x["train"], y["train"], x["val"], y["val"], x["test"], y["test"],
            num_classes=len(names), class_names=names, kind=FEATURES, frontend=fe,
            raw_test=arrays["raw_test"],
            raw_source=(
                f"MFCC of 16 kHz 16-bit mono audio, {fe.clip_ms} ms clips: "
                f"{fe.window_ms} ms Hann windows every {fe.stride_ms} ms, "
                f"{fe.fft_size}-point FFT, {fe.mel_bands} mel bands "
                f"{fe.lower_hz:g}-{fe.upper_hz:g} Hz, ln, DCT-II, {fe.coefficients} "
                f"coefficients ({fe.frames} x {fe.coefficients}; nas.frontend)"
            ),
        )  # fmt: skip

    def _check_options(self) -> None:
        c = self.config
        if not c.words or len(set(c.words)) != len(c.words):
            raise ConfigError(f"dataset.words={list(c.words)}: give distinct words, at least one")
        if not 0 <= c.unknown_percent <= 100:
            raise ConfigError(f"dataset.unknown_percent={c.unknown_percent}; valid: 0 to 100")
        if not 0 <= c.augment <= 10:
            raise ConfigError(f"dataset.augment={c.augment}; valid: 0 to 10 copies")
        if not 0 <= c.time_shift_ms <= 500:
            raise ConfigError(f"dataset.time_shift_ms={c.time_shift_ms}; valid: 0 to 500")
        if not 0 <= c.noise_volume <= 1:
            raise ConfigError(f"dataset.noise_volume={c.noise_volume}; valid: 0 to 1")

    def _features(
        self,
        clips: dict[str, list[tuple[Path, str]]],
        noise_files: list[Path],
        names: tuple[str, ...],
        fe: MfccConfig,
    ) -> dict[str, np.ndarray]:
        """Read, balance, augment and featurize every split (the cached computation)."""
        c = self.config
        rng = np.random.default_rng(c.seed)
        n, rate = fe.clip_samples, fe.sample_rate
        noise = [read_wav(p, rate).astype(np.float64) / 32768 for p in noise_files]
        noise = [z for z in noise if len(z) >= n]
        if not noise:
            raise ConfigError(
                f"{noise_files[0].parent}: every noise recording is shorter than "
                f"{fe.clip_ms} ms; give longer ones"
            )

        def noise_clip(volume: float) -> np.ndarray:
            z = noise[int(rng.integers(len(noise)))]
            start = int(rng.integers(0, len(z) - n + 1))
            return z[start : start + n] * volume

        out = {}
        for split in SPLITS:
            keyword = [(p, names.index(w)) for p, w in clips[split] if w in c.words]
            other = [p for p, w in clips[split] if w not in c.words]
            if not keyword:
                raise ConfigError(
                    f"dataset.root: the {split} split holds no clip of {', '.join(c.words)} "
                    "(check validation_list.txt and testing_list.txt)"
                )
            extra = round(len(keyword) * c.unknown_percent / 100)
            picked = rng.permutation(len(other))[: min(extra, len(other))]
            audio = [read_clip(p, n, rate) for p, _ in keyword]
            audio += [read_clip(other[i], n, rate) for i in picked]
            labels = [lab for _, lab in keyword] + [names.index(UNKNOWN)] * len(picked)
            for _ in range(extra):  # silence: noise at a random level
                audio.append(_int16(noise_clip(float(rng.uniform(0, 1)))))
                labels.append(names.index(SILENCE))
            batch = np.stack(audio)
            y = np.array(labels, dtype=np.int64)
            if split == "train" and c.augment:
                copies = [batch] + [
                    self._augment(batch, noise_clip, rng, fe) for _ in range(c.augment)
                ]
                batch, y = np.concatenate(copies), np.tile(y, c.augment + 1)
            out[f"x_{split}"] = mfcc(batch, fe)[:, None]
            out[f"y_{split}"] = y
            if split == "test":
                out["raw_test"] = batch
        return out

    def _augment(self, batch, noise_clip, rng: np.random.Generator, fe: MfccConfig) -> np.ndarray:  # noqa: ANN001
        """Each clip shifted in time by up to ``time_shift_ms`` (zero-filled), with a noise
        recording mixed in with probability 0.8 at up to ``noise_volume``."""
        c = self.config
        limit = fe.sample_rate * c.time_shift_ms // 1000
        out = np.empty_like(batch)
        for i, clip in enumerate(batch.astype(np.float64) / 32768):
            shift = int(rng.integers(-limit, limit + 1)) if limit else 0
            moved = np.zeros_like(clip)
            if shift >= 0:
                moved[shift:] = clip[: len(clip) - shift]
            else:
                moved[:shift] = clip[-shift:]
            if rng.random() < 0.8:
                moved = moved + noise_clip(float(rng.uniform(0, c.noise_volume)))
            out[i] = _int16(moved)
        return out


def _int16(x: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] as int16 (clipped)."""
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


@hookimpl
def nas_register_datasets():
    return [SpeechCommandsDataset]
