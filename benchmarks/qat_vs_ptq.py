"""QAT against PTQ on a small, tight network, paired over seeds.

For each seed one float network is trained, then three int8 models are made from it:

- ``ptq``: the trained network, calibrated and quantized (`nas.int8.quantize`);
- ``ft+ptq``: the same network fine-tuned in float for as many epochs as QAT gets, then
  quantized the same way (the control: does QAT win only because it trains longer?);
- ``qat``: the ``qat`` plugin's fake-quantized fine-tuning, then the same quantization.

All three are scored by the int8 reference kernels on the test split. The paired
differences (qat minus the others, same seed) are what the table reports.

    python benchmarks/qat_vs_ptq.py                 # digits, 5 seeds (about 2 minutes)
    python benchmarks/qat_vs_ptq.py --dataset fashion_mnist --train-subset 6000
    python benchmarks/qat_vs_ptq.py --per-tensor    # one weight scale per convolution
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from nas_compress_qat import QatConfig, fold_batchnorm, qat_finetune

from nas.cost import estimate
from nas.data import Arrays, calibration_batch, resize
from nas.graph import trace
from nas.hardware import load_profile
from nas.int8 import accuracy_int8, quantize
from nas.plugin_manager import get_plugin_manager
from nas.train import TrainSettings, accuracy, fit

#: A tight MobileNet-like network: 4-channel stem, 8-channel stages, 8x8 input.
TIGHT = {
    "resolution": 8,
    "stem_channels": 4,
    "s1_width": 8,
    "s1_depth": 1,
    "s1_kernel": 3,
    "s1_expand": 1,
    "s1_stride": 2,
    "s2_width": 8,
    "s2_depth": 1,
    "s2_kernel": 3,
    "s2_expand": 1,
    "s2_stride": 1,
    "s3_width": 8,
    "s3_depth": 0,
    "s3_kernel": 3,
    "s3_expand": 1,
    "s3_stride": 1,
}


def _at(data: Arrays, size: int) -> Arrays:
    return replace(
        data,
        x_train=resize(data.x_train, size),
        x_val=resize(data.x_val, size),
        x_test=resize(data.x_test, size),
    )


def one_seed(space, data: Arrays, seed: int, args) -> dict[str, float]:
    settings = TrainSettings(
        epochs=args.epochs, batch_size=64, lr=0.01, weight_decay=1e-4, seed=seed
    )
    tune = replace(settings, epochs=args.tune_epochs, lr=settings.lr * 0.1)
    torch.manual_seed(seed)
    module = space.build(TIGHT, data.in_channels, data.num_classes)
    fit(module, data, settings)
    module.eval()
    shape = (1, data.in_channels, TIGHT["resolution"], TIGHT["resolution"])
    calib = calibration_batch(data.x_train, args.calibration, seed)

    def int8_acc(m: torch.nn.Module) -> float:
        qg = quantize(trace(m.eval(), shape, "qat_vs_ptq"), calib, not args.per_tensor)
        return accuracy_int8(qg, data.x_test, data.y_test)

    row = {"float": accuracy(module, data.x_test, data.y_test), "ptq": int8_acc(module)}
    control = fold_batchnorm(module)
    torch.manual_seed(seed)
    fit(control, data, tune)
    row["ft+ptq"] = int8_acc(control)
    qat = fold_batchnorm(module)
    torch.manual_seed(seed)
    qat_cfg = QatConfig(epochs=args.tune_epochs, seed=seed, per_channel=not args.per_tensor)
    qat_finetune(qat, data, tune, qat_cfg)
    row["qat"] = int8_acc(qat)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--train-subset", type=int, default=0, help="fashion_mnist only")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--tune-epochs", type=int, default=4)
    p.add_argument("--calibration", type=int, default=256)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--arch", default="{}", help="JSON changes to the network's choices")
    p.add_argument(
        "--per-tensor",
        action="store_true",
        help="one weight scale per convolution (ptq and qat per_channel=false)",
    )
    p.add_argument("--out", help="default benchmarks/results/qat_vs_ptq[_per_tensor].md")
    args = p.parse_args()
    suffix = "_per_tensor" if args.per_tensor else ""
    args.out = args.out or f"benchmarks/results/qat_vs_ptq{suffix}.md"
    TIGHT.update(json.loads(args.arch))

    pm = get_plugin_manager()
    space = pm.get("search_space", "mobilenet")()
    ds_cls = pm.get("dataset", args.dataset)
    cfg = ds_cls.Config()
    if args.train_subset:
        cfg = replace(cfg, train_subset=args.train_subset)
    data = _at(ds_cls(cfg).load(), TIGHT["resolution"])
    torch.set_num_threads(args.threads)
    commit = subprocess.run(  # when the run starts: the code it runs
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    start = time.process_time()
    rows = [one_seed(space, data, s, args) for s in range(args.seeds)]
    cpu_s = time.process_time() - start

    module = space.build(TIGHT, data.in_channels, data.num_classes).eval()
    shape = (1, data.in_channels, TIGHT["resolution"], TIGHT["resolution"])
    cost = estimate(trace(module, shape, "tight"), load_profile("cortex_m4"))
    cols = ["float", "ptq", "ft+ptq", "qat"]
    lines = [
        f"# QAT vs PTQ on a tight network{', per-tensor weights' if args.per_tensor else ''}",
        "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- date: {datetime.date.today()}, commit {commit}, {platform.machine()} "
        f"{platform.processor() or ''} ({torch.get_num_threads()} threads), "
        f"{cpu_s:.0f} CPU-s",
        f"- dataset: {args.dataset} (train subset {args.train_subset or 'all'}), "
        f"test accuracy on {len(data.y_test)} samples; {args.epochs} float epochs, "
        f"{args.tune_epochs} fine-tuning epochs at a tenth of the learning rate, "
        f"{args.calibration} calibration samples; convolution weights "
        f"{'per tensor' if args.per_tensor else 'per channel'}",
        f"- network: `{TIGHT}`; on cortex_m4: {cost.macs:,} MACs, model "
        f"{cost.model_bytes:,} B, arena {cost.arena_bytes:,} B",
        "",
        "| seed | " + " | ".join(cols) + " | qat - ptq | qat - (ft+ptq) |",
        "|---" * (len(cols) + 3) + "|",
    ]
    for seed, r in enumerate(rows):
        vals = " | ".join(f"{r[c]:.4f}" for c in cols)
        lines.append(
            f"| {seed} | {vals} | {r['qat'] - r['ptq']:+.4f} | {r['qat'] - r['ft+ptq']:+.4f} |"
        )
    mean = {c: statistics.mean(r[c] for r in rows) for c in cols}
    d_ptq = [r["qat"] - r["ptq"] for r in rows]
    d_ft = [r["qat"] - r["ft+ptq"] for r in rows]
    lines.append(
        "| mean | "
        + " | ".join(f"{mean[c]:.4f}" for c in cols)
        + f" | {statistics.mean(d_ptq):+.4f} | {statistics.mean(d_ft):+.4f} |"
    )
    lines += [
        "",
        f"QAT beats PTQ on {sum(d > 0 for d in d_ptq)} of {len(rows)} seeds and the "
        f"equally long float fine-tuning on {sum(d > 0 for d in d_ft)} of {len(rows)}; "
        f"spread of qat - ptq: {min(d_ptq):+.4f} to {max(d_ptq):+.4f}.",
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
