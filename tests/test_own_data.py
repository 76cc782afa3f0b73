"""Your own data: image folders and array files load as a user lays them out, and wrong
data is refused with one line naming the file or value, before any training."""

from __future__ import annotations

import json

import nas_dataset_image_folder
import numpy as np
import pytest
from nas_dataset_arrays import ArraysConfig, ArraysDataset
from nas_dataset_image_folder import ImageFolderConfig, ImageFolderDataset
from PIL import Image, ImageDraw

from nas.errors import ConfigError

SHAPES = ("circle", "square", "triangle")


def draw_folder(root, n=12, seed=0, layout=None):
    """Coloured shapes on noise, of several sizes and formats, one folder per class."""
    rng = np.random.default_rng(seed)
    for cls in SHAPES:
        folder = root / (layout or "") / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            w, h = (int(v) for v in rng.integers(20, 60, 2))
            img = Image.fromarray(rng.integers(0, 60, (h, w, 3)).astype(np.uint8))
            d, r = ImageDraw.Draw(img), min(w, h) // 3
            box = [w // 2 - r, h // 2 - r, w // 2 + r, h // 2 + r]
            colour = tuple(int(v) for v in rng.integers(150, 256, 3))
            if cls == "circle":
                d.ellipse(box, fill=colour)
            elif cls == "square":
                d.rectangle(box, fill=colour)
            else:
                d.polygon([(w // 2, box[1]), (box[0], box[3]), (box[2], box[3])], fill=colour)
            img.save(folder / f"{i:03d}.{('png', 'jpg', 'bmp')[i % 3]}")
    return root


def folder_data(root, tmp_path, **options):
    cfg = ImageFolderConfig(root=str(root), cache_dir=str(tmp_path / "cache"), **options)
    return ImageFolderDataset(cfg).load()


def test_class_folders_split_per_class_in_gray_and_rgb(tmp_path):
    root = draw_folder(tmp_path / "shapes")
    gray = folder_data(root, tmp_path, size=16)
    assert gray.class_names == SHAPES and gray.num_classes == 3
    assert gray.x_train.shape[1:] == (1, 16, 16) and gray.raw_scale == pytest.approx(1 / 255)
    assert len(gray.y_train) + len(gray.y_val) + len(gray.y_test) == 36
    for y in (gray.y_train, gray.y_val, gray.y_test):  # stratified: every class everywhere
        assert set(y) == {0, 1, 2}
    rgb = folder_data(root, tmp_path, size=16, channels=3)
    assert rgb.x_train.shape[1:] == (3, 16, 16) and rgb.x_train.max() <= 1.0
    # the pixels are the decoded image's, scaled: the input contract's raw values
    first = sorted((root / "circle").iterdir())[0]
    with Image.open(first) as img:
        want = np.asarray(img.convert("RGB").resize((16, 16), Image.Resampling.BILINEAR))
    all_x = np.concatenate([rgb.x_train, rgb.x_val, rgb.x_test])
    found = np.round(all_x.transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    assert any((f == want).all() for f in found)


def test_train_val_test_folders_and_the_cache(tmp_path, monkeypatch):
    root = tmp_path / "split"
    draw_folder(root, n=6, layout="train")
    draw_folder(root, n=2, seed=1, layout="test")  # no val/: held out from train/
    data = folder_data(root, tmp_path, size=12, val_fraction=0.5)
    assert len(data.y_test) == 6 and len(data.y_val) == 9 and len(data.y_train) == 9
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(nas_dataset_image_folder, "decode", no_decoding)
    again = folder_data(root, tmp_path, size=12, val_fraction=0.5)  # workers, later searches
    assert (again.x_train == data.x_train).all() and (again.y_test == data.y_test).all()
    with pytest.raises(AssertionError, match="decoded again"):  # other options: other key
        folder_data(root, tmp_path, size=14, val_fraction=0.5)


def _one_line(exc: pytest.ExceptionInfo, *needles: str) -> None:
    text = str(exc.value)
    assert "\n" not in text
    for n in needles:
        assert n in text, text


def test_wrong_image_folders_are_one_line(tmp_path):
    with pytest.raises(ConfigError) as exc:
        folder_data(tmp_path / "missing", tmp_path)
    _one_line(exc, "missing", "not a folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as exc:
        folder_data(tmp_path / "empty", tmp_path)
    _one_line(exc, "no class folders")
    root = draw_folder(tmp_path / "a", n=6)
    (root / "blank").mkdir()
    with pytest.raises(ConfigError) as exc:
        folder_data(root, tmp_path)
    _one_line(exc, str(root / "blank"), "holds no images")
    (root / "blank").rmdir()
    bad = root / "square" / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ConfigError) as exc:
        folder_data(root, tmp_path)
    _one_line(exc, str(bad), "cannot decode")
    bad.unlink()
    few = draw_folder(tmp_path / "few", n=2)
    with pytest.raises(ConfigError) as exc:
        folder_data(few, tmp_path)
    _one_line(exc, "class 0 has 2 samples", "too few to split")
    with pytest.raises(ConfigError) as exc:
        folder_data(root, tmp_path, channels=2)
    _one_line(exc, "dataset.channels=2", "1 (gray) or 3 (RGB)")


def _arrays(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return ArraysDataset(ArraysConfig(path=str(path))).load()


def test_arrays_from_npz_and_npy(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 10, 10, 3)).astype(np.uint8)
    y = np.arange(60) % 3
    data = _arrays(tmp_path, x_train=x, y_train=y)
    assert data.x_train.shape[1:] == (3, 10, 10) and data.num_classes == 3
    assert data.raw_scale == pytest.approx(1 / 255) and data.x_train.max() <= 1.0
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 60
    folder = tmp_path / "npy"
    folder.mkdir()
    xf = rng.normal(size=(30, 6, 6, 1)).astype(np.float32)  # floats, gray
    for key, value in {"x_train": xf, "y_train": y[:30], "x_val": xf[:9], "y_val": y[:9],
                       "x_test": xf[:6], "y_test": y[:6]}.items():  # fmt: skip
        np.save(folder / f"{key}.npy", value)
    data = ArraysDataset(ArraysConfig(path=str(folder))).load()
    assert data.x_train.shape == (30, 1, 6, 6) and data.raw_scale == 1.0
    assert len(data.y_val) == 9 and len(data.y_test) == 6
    assert np.allclose(data.x_test[:, 0], xf[:6, :, :, 0])


@pytest.mark.parametrize(
    ("arrays", "needles"),
    [
        ({"x_train": np.zeros((9, 4, 4, 1)), "y_train": np.zeros(8, int)}, ["9 samples", "has 8"]),
        ({"x_train": np.full((9, 4, 4, 1), np.nan), "y_train": np.arange(9) % 3}, ["NaN"]),
        ({"x_train": np.zeros((9, 4, 4, 1)), "y_train": np.zeros(9)}, ["integers", "float64"]),
        (
            {
                "x_train": np.zeros((9, 4, 4, 1)),
                "y_train": np.arange(9) % 3,
                "x_val": np.zeros((2, 4, 4, 1)),
                "y_val": np.array([0, 5]),
            },
            ["y_val holds label 5", "0..2"],
        ),
        (
            {
                "x_train": np.zeros((9, 4, 4, 1)),
                "y_train": np.arange(9) % 2 * 2,
                "x_val": np.zeros((2, 4, 4, 1)),
                "y_val": np.array([1, 2]),
            },
            ["y_val holds label 1, which y_train lacks"],
        ),
        ({"x_train": np.zeros((9, 16)), "y_train": np.arange(9) % 3}, ["(9, 16)", "(N, H, W, C)"]),
        ({"x_train": np.zeros((9, 4, 6, 1)), "y_train": np.arange(9) % 3}, ["not square"]),
        ({"x_train": np.zeros((9, 4, 4, 1))}, ["no y_train"]),
        ({"x_train": np.zeros((4, 4, 4, 1)), "y_train": np.arange(4) % 2}, ["too few to split"]),
    ],
)
def test_wrong_arrays_are_one_line(tmp_path, arrays, needles):
    with pytest.raises(ConfigError) as exc:
        _arrays(tmp_path, **arrays)
    _one_line(exc, str(tmp_path / "data.npz"), *needles)


@pytest.mark.slow
def test_search_on_an_image_folder_writes_the_class_names(cli, tmp_path):
    root = draw_folder(tmp_path / "shapes", n=10)
    run = tmp_path / "run"
    proc = cli(
        "search", "+hw=cortex_m4", "dataset=image_folder", f"dataset.root={root}",
        "dataset.channels=3", "dataset.size=16", f"dataset.cache_dir={tmp_path / 'c'}",
        "search.n_trials=1", "search.epochs=1", "search_space.resolutions=[8]",
        f"hydra.run.dir={run}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    contract = json.loads((run / "best" / "arch.json").read_text())["input"]
    assert contract["class_names"] == list(SHAPES)
    assert contract["raw_shape"] == [16, 16, 3] and contract["channels"] == "RGB"
    bad = cli(
        "search", "+hw=cortex_m4", "dataset=image_folder", f"dataset.root={tmp_path / 'no'}",
        f"hydra.run.dir={tmp_path / 'bad'}",
    )  # fmt: skip
    assert bad.returncode == 2 and "not a folder" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "bad").exists()
