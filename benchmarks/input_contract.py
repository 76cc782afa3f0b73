"""Does the firmware's input code compute what training fed the model?

For every test image of digits and Fashion-MNIST and several model resolutions, the raw
pixel values go through ``nas_preprocess`` (the C that `nas.firmware` writes into every
firmware project, compiled with the host's gcc) and through the Python pipeline (the
dataset's scaling, `nas.data.resize`, int8 quantization); the int8 bytes are compared.

Usage: python benchmarks/input_contract.py [--out benchmarks/results/input_contract.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "fashion_mnist"))

from run import provenance  # noqa: E402

from nas import firmware  # noqa: E402
from nas.backends import CSource  # noqa: E402
from nas.errors import ConfigError  # noqa: E402
from nas.int8 import QParams  # noqa: E402
from nas.plugin_manager import get_plugin_manager  # noqa: E402

SIZES = (8, 12, 16, 20, 28, 32)


def compare(data, size: int, folder: Path) -> tuple[int, int, int, int]:
    """(bytes, differing bytes, largest difference, images) at ``size``."""
    at = data if size == data.resolution else data.resized(size)
    qp = QParams.from_range(at.x_train.min(), at.x_train.max())
    n_in = size * size * data.in_channels
    src = CSource("", n_in, 10, 0, input_scale=qp.scale, input_zero_point=qp.zero_point)
    files = firmware.io_c(firmware.input_contract(data, size, src), src)
    raw = firmware.raw_values(data.x_test, data.raw_scale).transpose(0, 2, 3, 1)
    got = firmware.preprocess_on_host(folder, files, raw, n_in).astype(np.int32)
    want = qp.quantize(at.x_test.transpose(0, 2, 3, 1)).reshape(len(raw), -1)
    diff = np.abs(got - want.astype(np.int32))
    return diff.size, int((diff > 0).sum()), int(diff.max()), len(raw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/input_contract.md"))
    opts = ap.parse_args(argv)
    prov = provenance()
    cpu0 = time.process_time()
    rows = []
    pm = get_plugin_manager()
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("digits", "fashion_mnist"):
            try:
                data = pm.get("dataset", name)().load()
            except ConfigError as exc:
                print(f"{name}: skipped ({exc})")
                continue
            for size in SIZES:
                n, bad, worst, images = compare(data, size, Path(tmp) / f"{name}_{size}")
                rows.append(
                    f"| {name} | {data.resolution} -> {size} | {images:,} | {n:,} | {bad} "
                    f"| {worst} |"
                )
                print(rows[-1], flush=True)
    text = [
        "# Input contract: firmware C vs the Python preprocessing",
        "",
        "- Command: `python benchmarks/input_contract.py`",
        f"- Commit {prov['commit']}, {prov['date']}; {prov['machine']}; torch "
        f"{torch.__version__}; CPU time {time.process_time() - cpu0:.0f} s (this process; "
        "the compiled C runs in child processes)",
        "",
        "Every test image's raw pixels through `nas_preprocess` (`firmware/nas_io.c`, "
        "gcc -O2 on the host) and through the training pipeline (dataset scaling, "
        "`torch.nn.functional.interpolate(mode='bilinear', align_corners=False)`, int8 "
        "quantization with the calibrated scale and zero point); int8 bytes compared.",
        "",
        "| dataset | resize | images | int8 bytes | bytes differing | largest difference |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "The C follows torch's CPU kernel operation by operation: the source index as one "
        "fused multiply-add, the four bilinear weights as products, summed with fused "
        "multiply-adds in torch's order. A first version written as plain products and "
        "sums (no fused operations) differed by 1 in 0.005% to 0.67% of the bytes at the "
        "resizes that interpolate (same images, measured while writing it).",
        "",
    ]
    Path(opts.out).write_text("\n".join(text))
    print(f"written: {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
