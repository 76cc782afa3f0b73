"""``arrays``: your own arrays, from ``dataset.path=FILE.npz`` or a folder of ``.npy`` files.

The arrays are ``x_train`` and ``y_train``, and optionally ``x_val``, ``y_val``,
``x_test``, ``y_test`` (a split that is missing is held out from the training arrays,
stratified, with ``dataset.val_fraction`` / ``dataset.test_fraction`` and
``dataset.seed``). ``x`` holds square images as ``(N, H, W, C)`` (gray: ``C == 1``) or
windows of sensor samples as ``(N, T, C)``: ``T`` samples of ``C`` channels (the three
axes of an accelerometer, ...), which the spaces take as a ``T x 1`` input with ``k x 1``
kernels and each candidate resamples to its resolution along time. ``y`` holds integer
class labels ``0..n-1``; an optional ``class_names`` array of ``n`` strings names them
(saved with the input contract, as an image folder's names are). Images of ``uint8``
are scaled by 1/255 (the input contract's ``raw_scale``); float images, and windows of
any numeric type, are used as they are.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas import hookimpl
from nas.data import (
    IMAGES,
    UINT8_SCALE,
    WINDOWS,
    Arrays,
    BaseDataset,
    DatasetConfig,
    check_finite,
    check_fraction,
    check_labels,
    fill_splits,
)
from nas.errors import ConfigError

KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "class_names")
SPLITS = ("train", "val", "test")


@dataclass
class ArraysConfig(DatasetConfig):
    path: str = ""
    val_fraction: float = 0.15
    test_fraction: float = 0.15


def read(path: Path) -> dict[str, np.ndarray]:
    """The arrays of ``path`` (``.npz``, or a folder of ``<key>.npy``) by key."""
    if path.is_dir():
        found = {k: path / f"{k}.npy" for k in KEYS if (path / f"{k}.npy").is_file()}
        out = {}
        for k, f in found.items():
            try:
                out[k] = np.load(f, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{f}: cannot read a .npy array ({exc})") from None
        return out
    if not path.is_file():
        raise ConfigError(
            f"dataset.path={path}: no such file or folder; give an .npz file "
            "(x_train, y_train, optional x_val, y_val, x_test, y_test) or a folder of "
            "those as .npy files"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files if k in KEYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ConfigError(f"{path}: cannot read as .npz ({exc})") from None


def samples(x: np.ndarray, where: str) -> np.ndarray:
    """``x`` as N x H x W x C images or N x T x C windows, or a `ConfigError` saying which
    shapes are valid."""
    if x.ndim not in (3, 4):
        raise ConfigError(
            f"{where}: shape {x.shape} is not supported; valid: (N, H, W, C) images or "
            "(N, T, C) windows of T samples of C channels"
        )
    if x.ndim == 4 and x.shape[1] != x.shape[2]:
        raise ConfigError(
            f"{where}: images of {x.shape[1]} x {x.shape[2]} are not square; the search "
            "spaces take square images (resize or pad them)"
        )
    if x.ndim == 3 and x.shape[1] == x.shape[2]:
        raise ConfigError(
            f"{where}: shape {x.shape} reads as (N, T, C) windows of {x.shape[1]} samples of "
            f"{x.shape[2]} channels, which looks like gray images without their channel axis; "
            "give images as (N, H, W, 1) (x[..., None])"
        )
    if x.ndim == 3 and x.shape[1] < 2:
        raise ConfigError(f"{where}: windows of {x.shape[1]} sample; valid: 2 samples or more")
    if 0 in x.shape[1:]:
        raise ConfigError(f"{where}: shape {x.shape} has an empty axis")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ConfigError(f"{where}: dtype {x.dtype} is not numeric")
    if x.ndim == 4 and np.issubdtype(x.dtype, np.integer) and x.dtype != np.uint8:
        raise ConfigError(f"{where}: integer images must be uint8 (0..255), got {x.dtype}")
    check_finite(x, where)
    return x


def class_names(names: np.ndarray | None, n: int, where: str) -> tuple[str, ...]:
    """The ``class_names`` array as a tuple (empty when absent), or a `ConfigError`."""
    if names is None:
        return ()
    if names.ndim != 1 or names.dtype.kind not in "US" or len(names) != n:
        raise ConfigError(
            f"{where}: class_names must be {n} strings, one per label 0..{n - 1}; got "
            f"shape {names.shape} of {names.dtype}"
        )
    return tuple(str(v.decode() if isinstance(v, bytes) else v) for v in names)


class ArraysDataset(BaseDataset):
    """Images or sensor windows from NumPy arrays, as N x C x H x W (windows: W = 1)."""

    name = "arrays"
    Config = ArraysConfig

    def load(self) -> Arrays:
        c = self.config
        check_fraction("val_fraction", c.val_fraction)
        check_fraction("test_fraction", c.test_fraction)
        if not c.path:
            raise ConfigError(
                "dataset.path=(unset): give an .npz file (x_train, y_train, optional x_val, "
                "y_val, x_test, y_test) or a folder of those as .npy files"
            )
        path = Path(c.path).expanduser()
        found = read(path)
        for split in SPLITS:
            has_x, has_y = f"x_{split}" in found, f"y_{split}" in found
            if has_x != has_y or (split == "train" and not has_x):
                missing = f"x_{split}" if not has_x else f"y_{split}"
                raise ConfigError(
                    f"{path}: no {missing} (it needs x_train and y_train; x_val with "
                    "y_val and x_test with y_test when given)"
                )
        x = {s: samples(found[f"x_{s}"], f"{path}: x_{s}") for s in SPLITS if f"x_{s}" in found}
        y = {s: check_labels(found[f"y_{s}"], f"{path}: y_{s}") for s in x}
        for s in x:
            if len(x[s]) != len(y[s]):
                raise ConfigError(
                    f"{path}: x_{s} has {len(x[s])} samples but y_{s} has {len(y[s])}"
                )
        shapes = {x[s].shape[1:] for s in x}
        dtypes = {x[s].dtype.kind for s in x}
        if len(shapes) > 1 or len(dtypes) > 1:
            raise ConfigError(f"{path}: the splits differ in sample shape or type ({shapes})")
        n = int(y["train"].max()) + 1 if len(y["train"]) else 0
        trained = set(np.unique(y["train"]).tolist())
        for s in y:
            missing = sorted(set(np.unique(y[s]).tolist()) - trained)
            if missing:
                raise ConfigError(
                    f"{path}: y_{s} holds label {missing[0]}, which y_train lacks (it holds "
                    f"{', '.join(map(str, sorted(trained)))} of 0..{n - 1}): every class "
                    "needs training samples"
                )
        names = class_names(found.get("class_names"), n, str(path))
        fill_splits(x, y, (c.val_fraction, c.test_fraction), c.seed, str(path))
        windows = x["train"].ndim == 3
        uint8 = x["train"].dtype == np.uint8 and not windows
        scale = UINT8_SCALE if uint8 else 1.0

        def nchw(a: np.ndarray) -> np.ndarray:
            if windows:  # N, T, C -> N, C, T, 1
                return a.transpose(0, 2, 1)[..., None].astype(np.float32)
            a = a.transpose(0, 3, 1, 2).astype(np.float32)
            return a * np.float32(scale) if uint8 else a

        return Arrays(
            nchw(x["train"]), y["train"], nchw(x["val"]), y["val"], nchw(x["test"]), y["test"],
            num_classes=n, raw_scale=scale, kind=WINDOWS if windows else IMAGES,
            class_names=names,
            raw_source=(
                f"windows of {x['train'].shape[1]} samples x {x['train'].shape[2]} channels "
                f"({x['train'].dtype}) from {path.name}"
                if windows
                else ""
            ),
        )  # fmt: skip


@hookimpl
def nas_register_datasets():
    return [ArraysDataset]
