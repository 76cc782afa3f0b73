"""Datasets: local arrays split into train / validation / test.

A dataset class has a unique ``name``, a ``Config`` dataclass and a ``load`` method that
returns `Arrays`. Nothing is downloaded at run time: a loader reads local files and, when
they are missing, raises `nas.errors.ConfigError` saying where to get them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from nas.errors import ConfigError
from nas.frontend import MfccConfig

#: ``raw_scale`` of 8-bit readings (pixels 0..255): the float32 nearest 1/255.
UINT8_SCALE = float(np.float32(1 / 255))


@dataclass
class DatasetConfig:
    """Options every dataset has (subclass it): ``seed`` fixes the split;
    ``positive_class`` turns the task into one-vs-rest binary classification (label 1 for
    that class, 0 for all others; see `one_vs_rest`)."""

    seed: int = 0
    positive_class: int | None = None


#: `Arrays.kind` of (N, C, H, W) images, which a candidate resizes to its square resolution.
IMAGES = "images"
#: `Arrays.kind` of sensor windows: (N, C, T, 1), T samples of C channels (accelerometer
#: axes, ...). A candidate resamples them to its resolution along time, and the spaces run
#: ``k x 1`` kernels along it.
WINDOWS = "windows"
#: `Arrays.kind` of feature maps a front-end computed, e.g. MFCC frames x coefficients of
#: audio (`nas.frontend`): their (H, W) is fixed, so the spaces' resolution choice is
#: pinned to H and nothing is resized.
FEATURES = "features"
KINDS = (IMAGES, WINDOWS, FEATURES)


def input_hw(kind: str, size: int, fixed_hw: tuple[int, int] | None = None) -> tuple[int, int]:
    """(height, width) of a ``kind`` input at a candidate's resolution ``size``; feature
    maps have their ``fixed_hw``."""
    if kind == FEATURES:
        assert fixed_hw is not None, "feature maps have a fixed size"
        return (int(fixed_hw[0]), int(fixed_hw[1]))
    return (size, 1) if kind == WINDOWS else (size, size)


@dataclass(frozen=True)
class Arrays:
    """Images (or sensor windows, ``kind``) as NCHW float32 and integer labels, already
    split. Images are in [0, 1]; windows hold the sensor's values as they are.

    ``raw_scale``: the images are the sensor's raw values times this float32 factor (1/16
    for digits' 0..16 pixels, 1/255 for 8-bit ones): part of the input contract a firmware
    follows (`nas.firmware`), with ``class_names``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    raw_scale: float = 1.0
    #: The name of each class, by label (from the folder names of ``image_folder``);
    #: empty when the dataset has none. Saved with the input contract.
    class_names: tuple[str, ...] = ()
    #: How the loader made the raw values from the files, when it changed them (decoded,
    #: converted, resized): the first step of the input contract.
    raw_source: str = ""
    #: `IMAGES`, `WINDOWS` or `FEATURES`.
    kind: str = IMAGES
    #: The front-end that computed feature maps from the raw signal on the chip too (its
    #: RAM, flash and time count in every candidate's budget), or None.
    frontend: MfccConfig | None = None
    #: The raw signal of the test split before the front-end (int16 audio), for the
    #: firmware's sample and checks of the chip's front-end; None without a front-end.
    raw_test: np.ndarray | None = None

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def resolution(self) -> int:
        """The image side, or the window length in samples."""
        return int(self.x_train.shape[2])

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """NCHW shape of one input (batch 1), as the model takes it."""
        _, c, h, w = self.x_train.shape
        return (1, int(c), int(h), int(w))

    @property
    def fixed_hw(self) -> tuple[int, int] | None:
        """(H, W) of feature maps, which candidates take as they are; None otherwise."""
        _, _, h, w = self.input_shape
        return (h, w) if self.kind == FEATURES else None

    def input_hw(self, size: int) -> tuple[int, int]:
        """(height, width) of the input at a candidate's resolution ``size``."""
        return input_hw(self.kind, size, self.fixed_hw)

    def resized(self, size: int) -> Arrays:
        """The same splits at resolution ``size`` (bilinear; windows along time only;
        feature maps as they are)."""
        hw = self.input_hw(size)
        if hw == self.input_shape[2:]:
            return self
        return replace(
            self,
            x_train=resize(self.x_train, hw),
            x_val=resize(self.x_val, hw),
            x_test=resize(self.x_test, hw),
        )


def one_vs_rest(data: Arrays, positive: int) -> Arrays:
    """The binary task "is it class ``positive``?" on the same splits."""
    if not 0 <= positive < data.num_classes:
        raise ConfigError(
            f"dataset.positive_class={positive} is not a class; valid: 0 to {data.num_classes - 1}"
        )

    def binary(y: np.ndarray) -> np.ndarray:
        return (y == positive).astype(np.int64)

    names = data.class_names
    return replace(
        data,
        class_names=(f"not {names[positive]}", names[positive]) if names else (),
        y_train=binary(data.y_train),
        y_val=binary(data.y_val),
        y_test=binary(data.y_test),
        num_classes=2,
    )


def check_arrays(data: Arrays, name: str) -> Arrays:
    """``data`` when a search can train, validate and test on it: no empty split, images and
    labels of the same length, labels in ``0..num_classes-1`` and two classes to train on."""
    splits = {
        "train": (data.x_train, data.y_train),
        "validation": (data.x_val, data.y_val),
        "test": (data.x_test, data.y_test),
    }
    sizes = ", ".join(f"{k} {len(y)}" for k, (_, y) in splits.items())
    for split, (x, y) in splits.items():
        if len(x) != len(y):
            raise ConfigError(f"dataset '{name}': {split} has {len(x)} images, {len(y)} labels")
        if len(y) == 0:
            raise ConfigError(
                f"dataset '{name}': the {split} split is empty ({sizes} images); use more "
                "images or other split fractions"
            )
        if y.min() < 0 or y.max() >= data.num_classes:
            raise ConfigError(
                f"dataset '{name}': {split} labels outside 0..{data.num_classes - 1}"
            )
    if len(np.unique(data.y_train)) < 2:
        raise ConfigError(
            f"dataset '{name}': the train split holds a single class ({sizes} images); a "
            "classifier needs at least two"
        )
    return data


def check_labels(y: np.ndarray, where: str) -> np.ndarray:
    """Integer class labels (one per sample) as int64, or a one-line `ConfigError`."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ConfigError(f"{where}: labels must be one per sample (shape (N,)), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(
            f"{where}: labels must be integers 0..n-1, got dtype {y.dtype}"
            + (" (class indices, not one-hot or probabilities)" if y.dtype.kind == "f" else "")
        )
    if len(y) and y.min() < 0:
        raise ConfigError(f"{where}: label {int(y.min())} is negative; valid: 0..n-1")
    return y.astype(np.int64)


def check_finite(x: np.ndarray, where: str) -> None:
    """No NaN or infinite value in ``x``."""
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ConfigError(
            f"{where}: sample {int(bad[0])} holds {x[tuple(bad)]} (NaN or infinite values "
            "cannot be trained on)"
        )


def split_sizes_ok(y: np.ndarray, fractions: tuple[float, float], where: str) -> None:
    """Every class has enough samples that the stratified split leaves one to train on and,
    when a fraction is asked for, one in that split."""
    for c, count in zip(*np.unique(y, return_counts=True), strict=True):
        n = int(count)
        n_val, n_test = round(n * fractions[0]), round(n * fractions[1])
        if n - n_val - n_test < 1 or (fractions[0] and not n_val) or (fractions[1] and not n_test):
            raise ConfigError(
                f"{where}: class {c} has {n} sample{'s' * (n != 1)}, too few to split "
                f"{fractions[0]:g} for validation and {fractions[1]:g} for test; add samples "
                "or provide the splits yourself"
            )


def fill_splits(
    x: dict[str, np.ndarray],
    y: dict[str, np.ndarray],
    fractions: tuple[float, float],
    seed: int,
    where: str,
) -> None:
    """Hold out the ``val`` / ``test`` splits that ``x`` and ``y`` (split name -> arrays)
    lack from ``train``, stratified by class: ``fractions`` are (val, test) of train."""
    if "val" in x and "test" in x:
        return
    frac = (0.0 if "val" in x else fractions[0], 0.0 if "test" in x else fractions[1])
    if frac[0] + frac[1] >= 1:
        raise ConfigError(
            f"dataset.val_fraction={fractions[0]} + dataset.test_fraction={fractions[1]} "
            "leaves no training samples; their sum must be < 1"
        )
    split_sizes_ok(y["train"], frac, where)
    tr, va, te = stratified_split(y["train"], frac, seed)
    xs, ys = x["train"], y["train"]
    x["train"], y["train"] = xs[tr], ys[tr]
    for name, idx in (("val", va), ("test", te)):
        if name not in x:
            x[name], y[name] = xs[idx], ys[idx]


def check_fraction(name: str, value: float) -> None:
    """A split fraction must be in [0, 1)."""
    if not 0 <= value < 1:
        raise ConfigError(f"dataset.{name}={value} must be >= 0 and < 1")


def calibration_batch(x_nchw: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` images drawn without replacement (in their original order), as NHWC: the
    calibration set int8 quantization measures activation ranges on."""
    n = min(n, len(x_nchw))
    idx = np.sort(np.random.default_rng(seed).choice(len(x_nchw), n, replace=False))
    return x_nchw[idx].transpose(0, 2, 3, 1)


def resize(x: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an NCHW float array to ``size`` x ``size`` (or (h, w))."""
    hw = (size, size) if isinstance(size, int) else size
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    out = F.interpolate(t, size=hw, mode="bilinear", align_corners=False)
    return out.numpy()


def stratified_split(
    y: np.ndarray, fractions: tuple[float, float], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train / val / test, each class split by ``fractions`` (val, test)."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = round(len(idx) * fractions[0])
        n_test = round(len(idx) * fractions[1])
        parts[1].extend(idx[:n_val])
        parts[2].extend(idx[n_val : n_val + n_test])
        parts[0].extend(idx[n_val + n_test :])
    return tuple(np.sort(np.array(p, dtype=np.int64)) for p in parts)  # type: ignore[return-value]


def file_key(root: Path, files: Iterable[Path], options: Any) -> str:
    """A cache key of every file's path under ``root``, size and modification time, and
    ``options`` (JSON): it changes when a file or an option does."""
    listing = [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    text = json.dumps({"options": options, "files": listing}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def cached(
    cache_dir: str, key: str, compute: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The arrays ``compute`` returns, stored in ``cache_dir/<key>.npz`` and read from it
    next time (decoded images, audio features), so workers and later searches skip the
    work. The file is written whole, then renamed: a worker never reads half of it. An
    empty ``cache_dir``, a read-only one or a damaged file only costs computing again."""
    cache = Path(cache_dir).expanduser() / f"{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        try:
            with np.load(cache) as z:
                return {k: z[k] for k in z.files}
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            pass
    arrays = compute()
    if cache is not None:
        tmp = None
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".npz.tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)  # type: ignore[arg-type]
            os.replace(tmp, cache)
            tmp = None
        except OSError:
            pass
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
    return arrays


class BaseDataset(ABC):
    """A dataset selectable with ``dataset=<name>``."""

    name: ClassVar[str]
    Config: ClassVar[type] = DatasetConfig
    #: The training augmentation that suits the data (`nas.train.AUGMENTS`), which
    #: ``python -m nas finalize`` uses: ``crop`` for images in general, ``crop_flip`` where a
    #: mirror keeps the class, ``none`` for anything that is not an image.
    augment: ClassVar[str] = "none"

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def load(self) -> Arrays:
        """Read the local files and return the splits."""

    def choices(self) -> list[tuple[str, list[Any]]]:
        """Choices of the data searched with the network (Optuna parameter, options), e.g.
        keyword spotting's front-end settings; none by default."""
        return []

    def variant(self, params: dict[str, Any]) -> Arrays:
        """The splits for values of `choices` (``params``: parameter -> value)."""
        raise NotImplementedError(f"dataset '{self.name}' has no choices to search")
