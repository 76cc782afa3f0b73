"""``image_folder``: your own images, one sub-folder per class.

``dataset.root=DIR`` holds either class folders (``person/``, ``not_person/``), split by
class with ``dataset.val_fraction`` / ``dataset.test_fraction`` and ``dataset.seed``, or
``train/``, ``val/`` and ``test/`` folders that each hold the class folders (a missing
``val/`` or ``test/`` is split from ``train/``). PNG, JPEG and BMP files of any size are
decoded with Pillow, converted to gray (``dataset.channels=1``) or RGB (``3``) and
resized to ``dataset.size`` x ``dataset.size`` (bilinear, the whole image); each
candidate then resizes them to its own resolution, a searched choice. Class labels
follow the sorted folder names (``class_names`` in ``arch.json``).

Decoding happens once: the decoded images are cached in ``dataset.cache_dir`` (default
``~/.cache/mcu-nas/image_folder``) under a key made of every file's path, size and
modification time and the options, so workers and later searches load the cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas import hookimpl
from nas.data import (
    UINT8_SCALE,
    Arrays,
    BaseDataset,
    DatasetConfig,
    cached,
    check_fraction,
    file_key,
    fill_splits,
)
from nas.errors import ConfigError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
SPLITS = ("train", "val", "test")


@dataclass
class ImageFolderConfig(DatasetConfig):
    root: str = ""
    channels: int = 1
    size: int = 32
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    cache_dir: str = "~/.cache/mcu-nas/image_folder"


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def _classes(folder: Path) -> dict[str, list[Path]]:
    """Class name -> its image files, for the class folders directly under ``folder``."""
    found = {d.name: _images(d) for d in sorted(folder.iterdir()) if d.is_dir()}
    found = {k: v for k, v in found.items() if not k.startswith(".")}
    if not found:
        raise ConfigError(
            f"dataset.root: {folder} holds no class folders; put each class's images in "
            "a folder of its own (e.g. person/ and not_person/)"
        )
    for name, files in found.items():
        if not files:
            raise ConfigError(
                f"dataset.root: class folder {folder / name} holds no images "
                f"({', '.join(EXTENSIONS)})"
            )
    return found


def layout(root: Path) -> dict[str, dict[str, list[Path]]]:
    """Split name -> class name -> files; ``train`` always, ``val`` / ``test`` when the
    root has them as folders."""
    if not root.is_dir():
        raise ConfigError(
            f"dataset.root={root}: not a folder; give the folder that holds one "
            "sub-folder of images per class (or train/, val/, test/ folders of them)"
        )
    if (root / "train").is_dir():
        splits = {s: _classes(root / s) for s in SPLITS if (root / s).is_dir()}
        known = set(splits["train"])
        for s, classes in splits.items():
            extra = sorted(set(classes) - known)
            if extra:
                raise ConfigError(
                    f"dataset.root: {root / s / extra[0]} is a class that {root / 'train'} "
                    "does not have"
                )
        return splits
    return {"train": _classes(root)}


def decode(path: Path, channels: int, size: int) -> np.ndarray:
    """One image as uint8 (size, size, channels), or a `ConfigError` naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            img = img.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot decode the image ({exc})") from None
    return arr.reshape(size, size, channels)


class ImageFolderDataset(BaseDataset):
    """Images from class folders, as N x C x size x size in [0, 1]."""

    name = "image_folder"
    augment = "crop"  # a mirror may change the class (text, arrows): not assumed
    Config = ImageFolderConfig

    def load(self) -> Arrays:
        c = self.config
        if c.channels not in (1, 3):
            raise ConfigError(f"dataset.channels={c.channels}; valid: 1 (gray) or 3 (RGB)")
        if not 4 <= c.size <= 512:
            raise ConfigError(f"dataset.size={c.size}; valid: 4 to 512 pixels")
        check_fraction("val_fraction", c.val_fraction)
        check_fraction("test_fraction", c.test_fraction)
        if not c.root:
            raise ConfigError(
                "dataset.root=(unset): not a folder; give the folder that holds one "
                "sub-folder of images per class: dataset.root=DIR"
            )
        root = Path(c.root).expanduser()
        splits = layout(root)
        names = sorted(splits["train"])
        files = {
            s: [(p, names.index(k)) for k in sorted(cl) for p in cl[k]] for s, cl in splits.items()
        }
        x, y = self._decoded(root, files)
        fill_splits(x, y, (c.val_fraction, c.test_fraction), c.seed, f"dataset.root={root}")

        def images(split: str) -> np.ndarray:  # NHWC uint8 -> NCHW float32 in [0, 1]
            return x[split].transpose(0, 3, 1, 2).astype(np.float32) * np.float32(UINT8_SCALE)

        return Arrays(
            images("train"), y["train"], images("val"), y["val"], images("test"), y["test"],
            num_classes=len(names), raw_scale=UINT8_SCALE, class_names=tuple(names),
            raw_source=(
                f"image files decoded with Pillow, converted to "
                f"{'gray (L)' if c.channels == 1 else 'RGB'} and resized to {c.size} x "
                f"{c.size} (Image.resize, bilinear, the whole image) when loaded"
            ),
        )  # fmt: skip

    def _decoded(
        self, root: Path, files: dict[str, list[tuple[Path, int]]]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The images of every split, from the cache when it holds them."""
        c = self.config
        every = [p for f in files.values() for p, _ in f]
        labels = {s: [label for _, label in f] for s, f in files.items()}
        key = file_key(root, every, {"options": [c.channels, c.size], "labels": labels})

        def decode_all() -> dict[str, np.ndarray]:
            out = {}
            for s, f in files.items():
                out[f"x_{s}"] = np.stack([decode(p, c.channels, c.size) for p, _ in f])
                out[f"y_{s}"] = np.array([label for _, label in f], dtype=np.int64)
            return out

        arrays = cached(c.cache_dir, key, decode_all)
        return {s: arrays[f"x_{s}"] for s in files}, {s: arrays[f"y_{s}"] for s in files}


@hookimpl
def nas_register_datasets():
    return [ImageFolderDataset]
