"""``fashion_mnist``: Zalando's Fashion-MNIST (28x28 grey images, 10 classes) from the
original IDX files.

Files are read from ``dataset.root``: by default where the Debian package
``dataset-fashion-mnist`` installs them (``/usr/share/datasets/fashion-mnist``). Nothing is
downloaded. The validation split is held out from the 60,000 training images (stratified,
``dataset.seed``); the 10,000 test images are only used for final numbers.
``train_subset`` / ``test_subset`` (0 = all) keep quick runs and tests small.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas import hookimpl
from nas.data import (
    UINT8_SCALE,
    Arrays,
    BaseDataset,
    DatasetConfig,
    check_fraction,
    stratified_split,
)
from nas.errors import ConfigError

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_UBYTE = 0x08


@dataclass
class FashionMnistConfig(DatasetConfig):
    root: str = DEFAULT_ROOT
    val_fraction: float = 0.1
    train_subset: int = 0
    test_subset: int = 0


def read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX array (``.gz`` or plain); corrupt files raise `ConfigError`."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE or not 1 <= raw[3] <= 4:
        raise ConfigError(f"{path}: not an unsigned-byte IDX file (header {raw[:4].hex()})")
    ndim = raw[3]
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise ConfigError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(raw) - head != size:
        raise ConfigError(
            f"{path}: corrupt IDX file: header says {shape} = {size} bytes of data, "
            f"found {len(raw) - head}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(shape)


def find(root: Path, name: str) -> Path:
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"dataset 'fashion_mnist': {name}(.gz) not found under {root}; install the files "
        "with `apt-get install dataset-fashion-mnist` or point dataset.root=DIR at a folder "
        "holding the four original IDX files"
    )


class FashionMnistDataset(BaseDataset):
    """Fashion-MNIST as 1x28x28 images in [0, 1]."""

    name = "fashion_mnist"
    augment = "crop_flip"  # clothing mirrored is the same garment
    Config = FashionMnistConfig

    def load(self) -> Arrays:
        c = self.config
        check_fraction("val_fraction", c.val_fraction)
        for key in ("train_subset", "test_subset"):
            if getattr(c, key) < 0:
                raise ConfigError(f"dataset.{key}={getattr(c, key)} must be >= 0 (0: all)")
        root = Path(c.root)
        arrays = {key: read_idx(find(root, name)) for key, name in FILES.items()}
        for split in ("train", "test"):
            x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
            if x.ndim != 3 or y.ndim != 1 or len(x) != len(y) or (y > 9).any():
                raise ConfigError(
                    f"dataset 'fashion_mnist' under {root}: {split} images {x.shape} and labels "
                    f"{y.shape} do not match (expected N x 28 x 28 and N labels 0-9)"
                )
        x_tr, y_tr = self._subset(arrays["x_train"], arrays["y_train"], c.train_subset)
        x_te, y_te = self._subset(arrays["x_test"], arrays["y_test"], c.test_subset)
        tr, va, _ = stratified_split(y_tr, (c.val_fraction, 0.0), c.seed)
        scale = np.float32(UINT8_SCALE)
        x_tr = x_tr.astype(np.float32)[:, None] * scale
        x_te = x_te.astype(np.float32)[:, None] * scale
        return Arrays(
            x_tr[tr],
            y_tr[tr].astype(np.int64),
            x_tr[va],
            y_tr[va].astype(np.int64),
            x_te,
            y_te.astype(np.int64),
            num_classes=10,
            raw_scale=float(scale),
        )

    def _subset(self, x: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        if n <= 0 or n >= len(y):
            return x, y
        keep, _, _ = stratified_split(y, (0.0, 1.0 - n / len(y)), self.config.seed)
        return x[keep], y[keep]


@hookimpl
def nas_register_datasets():
    return [FashionMnistDataset]
