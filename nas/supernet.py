"""``search.strategy=supernet``: train one weight-sharing network, then score candidates
with the weights they inherit from it.

The study keeps its shape (`nas.search`): Optuna proposes an architecture, the static
cost rejects what does not fit before any compute, and a feasible candidate is scored by
copying its subnet's weights into the space's own network (`Supernet.extract`),
recalibrating its batch-norm statistics on ``search.supernet.bn_images`` training images
(`recalibrate_bn`), int8 post-training quantization and int8 validation accuracy
(`int8_val_accuracy`): a fraction of a second to a few seconds, not minutes of training.
These trials carry ``scored_by=supernet``. The best ``search.supernet.finalists`` of them
are then trained, compressed and scored by the backend like any trial of
``search.strategy=train`` (``finalist_of`` names their source): only those reach the
Pareto front and ``best/``.

Training follows Once-for-All (Cai et al., ICLR 2020) and BigNAS (Yu et al., ECCV 2020):
every step runs the largest subnet on the labels, then the smallest and
``search.supernet.random_subnets`` random ones, which learn the largest one's soft labels
(in-place distillation; with ``distill=false``, the labels), and takes one optimizer step
on the summed gradients. Adam with a one-cycle schedule, as `nas.train.fit`. A checkpoint
is written after every epoch, with what it was trained for (`fingerprint`): a killed
training resumes from its last epoch, a finished one is reused by later searches
(``search.supernet.path``), and one trained for other options is refused with one line.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from nas import console
from nas.data import Arrays, calibration_batch
from nas.errors import ConfigError, NasError, TrialError
from nas.graph import Graph
from nas.int8 import accuracy_int8, quantize
from nas.interrupt import CTRL_C
from nas.spaces import ArchSpec, BaseSearchSpace, Supernet

log = logging.getLogger(__name__)

#: The checkpoint file in the run directory when ``search.supernet.path`` is unset.
DEFAULT_FILE = "supernet.pt"
#: Calibration images of the int8 quantization of a candidate (as ``ptq``'s default).
CALIBRATION_IMAGES = 256


def supernet_path(cfg: DictConfig, run_dir: Path) -> Path:
    """Where the supernet is (or is to be) saved."""
    given = cfg.search.supernet.path
    return Path(str(given)) if given else run_dir / DEFAULT_FILE


def fingerprint(cfg: DictConfig, data: Arrays) -> dict[str, Any]:
    """What a trained supernet depends on: the space and its options, the dataset (its
    options and a digest of the training images), the seed and the training options;
    with ``sample_feasible``, the chip and the search's limits too."""
    s = cfg.search
    options = OmegaConf.to_container(cfg.search.supernet, resolve=True)
    assert isinstance(options, dict)
    digest = hashlib.sha1(np.ascontiguousarray(data.x_train).tobytes())
    digest.update(np.ascontiguousarray(data.y_train).tobytes())
    chip: dict[str, Any] = {}
    if options["sample_feasible"]:  # what fits shapes the training: the chip and limits
        hw = OmegaConf.to_container(cfg.hw, resolve=True)
        assert isinstance(hw, dict)
        hw.pop("source_file", None)
        chip = {"hw": hw, "max_latency_ms": s.max_latency_ms, "min_macs": s.min_macs}
    return {
        **chip,
        "search_space": OmegaConf.to_container(cfg.search_space, resolve=True),
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "training_images": f"{len(data.x_train)} x {list(data.x_train.shape[1:])}, "
        f"sha1 {digest.hexdigest()[:16]}",
        "num_classes": data.num_classes,
        "seed": s.seed,
        "training": {
            "epochs": options["epochs"],
            "random_subnets": options["random_subnets"],
            "distill": options["distill"],
            "sample_feasible": options["sample_feasible"],
            "batch_size": s.batch_size,
            "lr": s.lr,
            "weight_decay": s.weight_decay,
        },
    }


def _difference(found: Any, wanted: Any, where: str = "") -> str | None:
    """The first key whose values differ, as ``key: found -> wanted``."""
    if isinstance(found, dict) and isinstance(wanted, dict):
        for key in sorted(set(found) | set(wanted)):
            diff = _difference(found.get(key), wanted.get(key), f"{where}.{key}".lstrip("."))
            if diff:
                return diff
        return None
    return None if found == wanted else f"{where}={found} (this search: {wanted})"


@dataclass
class Prepared:
    """A supernet ready to train or use: its network, file and the checkpoint found."""

    net: Supernet
    path: Path
    fingerprint: dict[str, Any]
    checkpoint: dict[str, Any] | None

    @property
    def trained(self) -> bool:
        return bool(self.checkpoint and self.checkpoint.get("complete"))

    @property
    def seed(self) -> int:
        """The seed it was trained with, which also seeds the scoring of candidates."""
        return int((self.checkpoint or {}).get("fingerprint", self.fingerprint)["seed"])


def open_supernet(
    cfg: DictConfig, space: BaseSearchSpace, data: Arrays, run_dir: Path, check: bool = True
) -> Prepared:
    """The space's supernet and the checkpoint at its path, if any; a `ConfigError` when
    the space has no supernet or the file is not one trained for this search. ``check``
    false skips the fingerprint: a worker uses the file its first process checked (with
    the first process's seed, not the worker's own)."""
    torch.manual_seed(cfg.search.seed)  # its initial weights
    net = space.supernet(data.in_channels, data.num_classes)
    if net is None:
        raise ConfigError(
            f"search.strategy=supernet: search space '{space.name}' has no supernet; "
            "use search.strategy=train"
        )
    path = supernet_path(cfg, run_dir)
    wanted = fingerprint(cfg, data)
    if not path.exists():
        return Prepared(net, path, wanted, None)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        found = ckpt["fingerprint"]
    except Exception as exc:
        raise ConfigError(
            f"search.supernet.path={path}: not a supernet checkpoint "
            f"({type(exc).__name__}); give another path or delete the file"
        ) from None
    if check and (diff := _difference(found, wanted)) is not None:
        raise ConfigError(
            f"search.supernet.path={path} was trained for other settings: {diff}; "
            "give another search.supernet.path to train a new one"
        )
    try:
        net.load_state_dict(ckpt["model"])
    except Exception as exc:
        raise ConfigError(
            f"search.supernet.path={path}: its weights do not fit this search space's "
            f"supernet ({type(exc).__name__}); give another path or delete the file"
        ) from None
    return Prepared(net, path, wanted, ckpt)


def _save(prep: Prepared, state: dict[str, Any]) -> None:
    """Write the checkpoint atomically (a kill leaves the previous one)."""
    tmp = prep.path.with_name(prep.path.name + ".tmp")
    try:
        prep.path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"fingerprint": prep.fingerprint, **state}, tmp)
        os.replace(tmp, prep.path)
    except OSError as exc:
        raise NasError(
            f"cannot write the supernet checkpoint {prep.path}: {exc.strerror or exc}"
        ) from None


def _soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def train_supernet(
    prep: Prepared,
    data_at: Callable[[int], Arrays],
    cfg: DictConfig,
    fits: Callable[[ArchSpec], bool] | None = None,
) -> Supernet:
    """Train (or finish training) the supernet with the sandwich rule and in-place
    distillation, one checkpoint per epoch; returns it in eval mode. With ``fits`` and
    ``search.supernet.sample_feasible``, the random subnets of each step are drawn
    among those that fit the chip (the candidates the search will score)."""
    net, sc, s = prep.net, cfg.search.supernet, cfg.search
    draw = _feasible_draw(net, fits) if fits and sc.sample_feasible else net.random
    if prep.trained:
        return net.eval()
    n = len(data_at(net.resolution(net.largest())).x_train)
    steps = max(1, math.ceil(n / s.batch_size))
    opt = torch.optim.Adam(net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=sc.epochs * steps)
    gen = torch.Generator().manual_seed(s.seed)
    rng = random.Random(s.seed)
    torch.manual_seed(s.seed)
    start, ckpt, spent = 0, prep.checkpoint, 0.0
    if ckpt is not None:  # resume after the last finished epoch
        start = int(ckpt["epoch"])
        spent = float(ckpt.get("cpu_s", 0.0))
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        gen.set_state(ckpt["generator"])
        rng.setstate(_as_tuple(ckpt["random"]))
        torch.set_rng_state(ckpt["torch_rng"])
    plain = not console.interactive()
    bar = tqdm(
        total=sc.epochs * steps,
        initial=start * steps,
        desc="supernet",
        unit="step",
        dynamic_ncols=True,
        disable=plain,
    )
    began, cpu0 = time.monotonic(), time.process_time()
    try:
        for epoch in range(start, sc.epochs):
            net.train()
            total = 0.0
            perm = torch.randperm(n, generator=gen)
            for k, s0 in enumerate(range(0, n, s.batch_size)):
                CTRL_C.check()
                idx = perm[s0 : s0 + s.batch_size].numpy()
                if len(idx) < 2:  # batch norm cannot train on one image at 1 x 1
                    continue
                opt.zero_grad()
                loss = _sandwich_step(net, data_at, idx, rng, draw, sc)
                if not torch.isfinite(loss):
                    raise TrialError(
                        f"supernet training diverged: loss {float(loss)} at epoch {epoch + 1}"
                    )
                opt.step()
                sched.step()
                total += float(loss)
                bar.update(1)
                bar.set_postfix_str(f"epoch {epoch + 1}/{sc.epochs} loss {total / (k + 1):.3f}")
            state = {
                "epoch": epoch + 1,
                "complete": epoch + 1 == sc.epochs,
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": gen.get_state(),
                "random": rng.getstate(),
                "torch_rng": torch.get_rng_state(),
                # CPU time of the training so far, all resumes included (this process's
                # user + system time, every thread).
                "cpu_s": spent + time.process_time() - cpu0,
            }
            _save(prep, state)
            done = (
                f"supernet epoch {epoch + 1}/{sc.epochs}: loss {total / max(steps, 1):.3f}, "
                f"{time.monotonic() - began:.0f} s, {state['cpu_s'] / 3600:.2f} CPU-h in all"
            )
            log.info(done)
            if plain:
                console.line(done)
    finally:
        bar.close()
    prep.checkpoint = {"complete": True, "fingerprint": prep.fingerprint}
    return net.eval()


def _as_tuple(value: Any) -> Any:
    """`random.Random.getstate` after a save and load: lists back to tuples."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


#: Draws of a random subnet before `_feasible_draw` settles for one that does not fit.
MAX_DRAWS = 50


def _feasible_draw(
    net: Supernet, fits: Callable[[ArchSpec], bool]
) -> Callable[[random.Random], ArchSpec]:
    """``net.random`` restricted to subnets for which ``fits`` holds (checked once per
    architecture), or the last draw after `MAX_DRAWS`."""
    known: dict[str, bool] = {}

    def draw(rng: random.Random) -> ArchSpec:
        for _ in range(MAX_DRAWS):
            spec = net.random(rng)
            key = repr(sorted(spec.items()))
            if key not in known:
                known[key] = fits(spec)
            if known[key]:
                return spec
        return spec

    return draw


def _sandwich_step(
    net: Supernet,
    data_at: Callable[[int], Arrays],
    idx: np.ndarray,
    rng: random.Random,
    draw: Callable[[random.Random], ArchSpec],
    sc: Any,
) -> torch.Tensor:
    """Backpropagate one batch through the largest, the smallest and
    ``sc.random_subnets`` subnets from ``draw`` (gradients add up); the summed loss."""
    distill = sc.distill

    def batch(spec: ArchSpec) -> tuple[torch.Tensor, torch.Tensor]:
        d = data_at(net.resolution(spec))
        return torch.from_numpy(d.x_train[idx]), torch.from_numpy(d.y_train[idx])

    x, y = batch(net.largest())
    logits = net(x, net.largest())
    loss = F.cross_entropy(logits, y)
    loss.backward()
    total = loss.detach()
    soft = F.softmax(logits.detach(), dim=1)
    for spec in [net.smallest(), *(draw(rng) for _ in range(sc.random_subnets))]:
        x, y = batch(spec)
        out = net(x, spec)
        loss = _soft_cross_entropy(out, soft) if distill else F.cross_entropy(out, y)
        loss.backward()
        total = total + loss.detach()
    return total


def recalibrate_bn(module: nn.Module, x: np.ndarray, batch: int = 256) -> None:
    """Replace every batch-norm layer's running statistics by those of ``x`` (NCHW
    training images): a subnet's channels are shared with others, so its inherited
    statistics are a mixture (Once-for-All recalibrates the same way)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    module.train()
    with torch.no_grad():  # equal chunks: none of one image, which batch norm refuses
        for chunk in np.array_split(x, max(1, math.ceil(len(x) / batch))):
            module(torch.from_numpy(chunk))
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    module.eval()


def bn_images(data: Arrays, n: int, seed: int) -> np.ndarray:
    """The ``n`` training images (NCHW) batch norm is recalibrated on, drawn with ``seed``."""
    return calibration_batch(data.x_train, n, seed).transpose(0, 3, 1, 2)


def int8_val_accuracy(graph: Graph | None, data: Arrays, seed: int) -> float:
    """Validation accuracy of ``graph`` after int8 post-training quantization (per-channel
    weights, activations calibrated on `CALIBRATION_IMAGES` training images)."""
    if graph is None:
        raise NasError("search.strategy=supernet scores layer graphs only")
    qg = quantize(graph, calibration_batch(data.x_train, CALIBRATION_IMAGES, seed))
    return accuracy_int8(qg, data.x_val, data.y_val)
