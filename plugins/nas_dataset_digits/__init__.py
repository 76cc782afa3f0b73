"""The default dataset: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes).

It ships inside scikit-learn, so it works offline on any machine. Pixels (0..16) are scaled
to [0, 1]; the split is stratified per class and fixed by ``dataset.seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nas import hookimpl
from nas.data import Arrays, BaseDataset, DatasetConfig, check_fraction, stratified_split
from nas.errors import ConfigError


@dataclass
class DigitsConfig(DatasetConfig):
    val_fraction: float = 0.15
    test_fraction: float = 0.15


class DigitsDataset(BaseDataset):
    """scikit-learn ``load_digits`` as 1x8x8 images."""

    name = "digits"
    augment = "crop"  # a mirrored digit is another symbol
    Config = DigitsConfig

    def load(self) -> Arrays:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
        y = bunch.target.astype(np.int64)
        c = self.config
        check_fraction("val_fraction", c.val_fraction)
        check_fraction("test_fraction", c.test_fraction)
        if c.val_fraction + c.test_fraction >= 1:
            raise ConfigError(
                f"dataset.val_fraction={c.val_fraction} + dataset.test_fraction="
                f"{c.test_fraction} leaves no training images; their sum must be < 1"
            )
        tr, va, te = stratified_split(y, (c.val_fraction, c.test_fraction), c.seed)
        return Arrays(x[tr], y[tr], x[va], y[va], x[te], y[te], num_classes=10, raw_scale=1 / 16)


@hookimpl
def nas_register_datasets():
    return [DigitsDataset]
