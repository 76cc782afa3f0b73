"""Your own data, end to end: a drawn image folder, images and sensor windows in .npz files,
searched as a user would.

Makes three small data sets offline (deterministic for ``--seed``):

- an image folder of coloured circles, squares and triangles on noise (3 classes, PNG /
  JPEG / BMP of random sizes), searched with ``dataset=image_folder dataset.channels=3``;
- an ``.npz`` of 16 x 16 gray stripes (horizontal, vertical, two diagonals; 4 classes,
  random phase and noise), searched with ``dataset=arrays``;
- an ``.npz`` of accelerometer windows (64 samples x 3 axes at 50 Hz; still, walk, shake,
  pick up: `nas.synthetic.motion_windows`), searched with ``dataset=arrays`` and window
  lengths 16, 32 and 64 as the resolution choice.

Each search runs as ``python -m nas search +hw=cortex_m4 ... backend=tflm``; the best
model's firmware is then built and run in QEMU (``make -C best/firmware run``) when the
Arm toolchain is installed. The result file gives the command lines, the best model's
int8 accuracy (TFLite Micro), its size and the firmware's output.

Usage: python benchmarks/own_data_demo.py [--trials 6] [--epochs 6] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "fashion_mnist"))

from run import provenance  # noqa: E402

from nas.synthetic import MOTIONS, motion_windows  # noqa: E402

WORK = ROOT / "outputs" / "own_data_demo"


def draw_shapes(root: Path, per_class: int, seed: int) -> None:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for cls in ("circle", "square", "triangle"):
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            w, h = (int(v) for v in rng.integers(32, 96, 2))
            img = Image.fromarray(rng.integers(0, 90, (h, w, 3)).astype(np.uint8))
            d = ImageDraw.Draw(img)
            r = int(rng.integers(min(w, h) // 6, min(w, h) // 2))
            cx, cy = int(rng.integers(r, w - r + 1)), int(rng.integers(r, h - r + 1))
            colour = tuple(int(v) for v in rng.integers(110, 256, 3))
            if cls == "circle":
                d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
            elif cls == "square":
                d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
            else:
                d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
            img.save(folder / f"{i:04d}.{('png', 'jpg', 'bmp')[i % 3]}")


def stripes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gray 16 x 16 stripes in 4 orientations, random period, phase and noise (uint8)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:16, 0:16].astype(np.float64)
    x = np.empty((n, 16, 16, 1), dtype=np.uint8)
    y = rng.integers(0, 4, n)
    for i, label in enumerate(y):
        period, phase = rng.uniform(3, 7), rng.uniform(0, 2 * np.pi)
        axis = (yy, xx, xx + yy, xx - yy)[label]
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * axis / period + phase)
        img = 255 * np.clip(wave + rng.normal(0, 0.25, wave.shape), 0, 1)
        x[i, :, :, 0] = img.astype(np.uint8)
    return x, y.astype(np.int64)


def search(name: str, args: list[str], opts) -> dict:
    run = WORK / name
    shutil.rmtree(run, ignore_errors=True)
    cmd = [
        sys.executable, "-m", "nas", "search", "+hw=cortex_m4", *args, "backend=tflm",
        f"search.n_trials={opts.trials}", f"search.epochs={opts.epochs}",
        f"search.seed={opts.seed}", f"hydra.run.dir={run}",
    ]  # fmt: skip
    started, cpu = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    if proc.returncode != 0:
        raise SystemExit(f"{name}: search failed: {proc.stderr[-2000:]}")
    info = json.loads((run / "best" / "arch.json").read_text())
    firmware = "arm-none-eabi-gcc or qemu-system-arm not installed: not run"
    if shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm"):
        fw = subprocess.run(
            ["make", "-C", str(run / "best" / "firmware"), "run"], capture_output=True, text=True
        )
        lines = [
            ln for ln in (fw.stdout + fw.stderr).splitlines() if ln.startswith(("class", "input"))
        ]
        firmware = "; ".join(lines) + ("" if fw.returncode == 0 else f" (exit {fw.returncode})")
    shown = " ".join(["python -m nas search", *cmd[4:-1]]).replace(str(ROOT) + "/", "")
    return {
        "name": name, "command": shown, "wall_s": wall, "cpu_s": cpu_s, "info": info,
        "firmware": firmware,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/own_data_demo.md"))
    opts = ap.parse_args(argv)
    prov = provenance()
    shapes = WORK / "data" / "shapes"
    shutil.rmtree(shapes, ignore_errors=True)
    draw_shapes(shapes, 150, opts.seed)
    x, y = stripes(1200, opts.seed)
    npz = WORK / "data" / "stripes.npz"
    np.savez(npz, x_train=x, y_train=y)
    xw, yw = motion_windows(1200, length=64, seed=opts.seed)
    motion = WORK / "data" / "motion.npz"
    np.savez(motion, x_train=xw, y_train=yw, class_names=np.array(MOTIONS))
    cache = WORK / "data" / "cache"
    runs = [
        search(
            "image_folder",
            [
                "dataset=image_folder",
                f"dataset.root={shapes}",
                "dataset.channels=3",
                "dataset.size=32",
                f"dataset.cache_dir={cache}",
            ],
            opts,
        ),  # fmt: skip
        search("arrays", ["dataset=arrays", f"dataset.path={npz}"], opts),
        search(
            "windows",
            ["dataset=arrays", f"dataset.path={motion}", "search_space.resolutions=[16,32,64]"],
            opts,
        ),
    ]
    rows = []
    for r in runs:
        m, cost, contract = r["info"]["metrics"], r["info"]["cost"], r["info"]["input"]
        rows.append(
            f"| {r['name']} | {contract['raw_shape']} -> {contract['model_shape']} | "
            f"{m['acc_int8']:.3f} / {m['acc_int8_test']:.3f} | {cost['sram_bytes']:,} | "
            f"{cost['flash_bytes']:,} | {cost['latency_ms']:.2f} | {r['wall_s'] / 60:.1f} | "
            f"{r['cpu_s'] / 60:.1f} | "
            f"{r['firmware']} |"
        )
    text = [
        "# Your own data, end to end (synthetic data drawn offline)",
        "",
        "- Command: `python benchmarks/own_data_demo.py "
        f"--trials {opts.trials} --epochs {opts.epochs} --seed {opts.seed}`",
        f"- Commit {prov['commit']}, {prov['date']}; {prov['machine']}",
        "- Data: 450 drawn images (circles, squares, triangles; 3 classes, 32 to 95 pixels, "
        "PNG/JPEG/BMP), 1,200 gray 16 x 16 stripe images (4 orientations) in an .npz, "
        "and 1,200 accelerometer windows (64 samples x 3 axes; still, walk, shake, pick up) "
        "in an .npz; splits held out per class (15% validation, 15% test).",
        "",
        "Searches:",
        "",
        *[f"- `{r['command']}`" for r in runs],
        "",
        "| data | raw -> model input | val / test acc (int8, TFLM) | SRAM B | flash B | "
        "latency ms (est.) | search min (wall) | search CPU min | firmware in QEMU |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "The firmware line is what `make -C best/firmware run` printed: the model's class "
        "for one embedded test sample next to the Python int8 model's.",
        "",
    ]
    Path(opts.out).write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
