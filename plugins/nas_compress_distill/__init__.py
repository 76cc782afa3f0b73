"""``distill``: knowledge distillation from a teacher (a training-stage step).

The student (the trained candidate) is fine-tuned for ``epochs`` on
``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy`` with temperature
``T`` (Hinton, Vinyals, Dean 2015). The teacher is either a saved trial folder
(``teacher=path/to/best`` holding ``arch.json`` and ``model_float.pt``, as every run
writes) or, by default, a larger float network trained once per dataset, input
resolution and recipe, and cached (in memory and under ``cache_dir``), so a study trains
it once and later runs reuse it. ``teacher_arch`` picks it: ``cnn`` (the default: the
reference small CNN at width 64, two 3x3 convolutions of 64 and 128 channels; on a
2-core CPU about 2 minutes an epoch on 54,000 Fashion-MNIST images) or ``mobilenet`` (a
wide MobileNet-like network, about ten times slower to train). With an augmented recipe
(``search.augment``) the teacher is trained on augmented batches too, and the student is
distilled on augmented batches, the teacher labelling each as it comes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas import hookimpl
from nas.compression import BaseCompressionMethod, Candidate
from nas.data import IMAGES, Arrays
from nas.errors import ConfigError, check_option
from nas.plugin_manager import get_plugin_manager
from nas.spaces import build_model
from nas.train import DEFAULT_SETTINGS, TrainSettings, accuracy, augment, batches, fit

TEACHER_SPEC = {
    "stem_channels": 32,
    "s1_width": 32,
    "s1_depth": 2,
    "s1_kernel": 3,
    "s1_expand": 4,
    "s1_stride": 1,
    "s2_width": 64,
    "s2_depth": 2,
    "s2_kernel": 3,
    "s2_expand": 4,
    "s2_stride": 2,
}
#: ``teacher_arch`` -> (search space, spec without the resolution).
TEACHERS = {
    "cnn": ("reference", {"family": "cnn", "width": 64}),
    "mobilenet": ("mobilenet", TEACHER_SPEC),
}
_CACHE: dict[str, nn.Module] = {}


@dataclass
class DistillConfig:
    teacher: str = ""
    #: The default teacher's network (`TEACHERS`), when ``teacher`` names no trial folder.
    teacher_arch: str = "cnn"
    temperature: float = 4.0
    alpha: float = 0.7
    epochs: int = 4
    lr_scale: float = 0.3
    teacher_epochs: int = 15
    cache_dir: str = ".nas_cache/teachers"

    def __post_init__(self) -> None:
        check_option(
            "compression.distill.temperature", self.temperature, self.temperature > 0, "above 0"
        )
        check_option("compression.distill.alpha", self.alpha, 0 <= self.alpha <= 1, "in [0, 1]")
        check_option("compression.distill.epochs", self.epochs, self.epochs >= 0, "0 or more")
        check_option("compression.distill.lr_scale", self.lr_scale, self.lr_scale > 0, "above 0")
        check_option(
            "compression.distill.teacher_arch",
            self.teacher_arch,
            self.teacher_arch in TEACHERS,
            " or ".join(TEACHERS),
        )
        check_option(
            "compression.distill.teacher_epochs",
            self.teacher_epochs,
            self.teacher_epochs >= 1,
            "1 or more",
        )


def _fingerprint(data: Arrays) -> str:
    h = hashlib.sha1()
    for a in (data.x_train[:64], data.y_train, data.x_train.shape):
        h.update(np.asarray(a).tobytes())
    return h.hexdigest()[:12]


def load_teacher(path: Path, data: Arrays) -> nn.Module:
    """A teacher from a trial folder (``arch.json`` + ``model_float.pt``)."""
    try:
        info = json.loads((path / "arch.json").read_text())
        space = get_plugin_manager().get("search_space", info["search_space"])()
        kind = info.get("input_kind", IMAGES)
        module, shape = build_model(
            space,
            info["arch"],
            info["in_channels"],
            info["num_classes"],
            kind,
            info.get("input_hw"),
        )
        module.load_state_dict(torch.load(path / "model_float.pt", weights_only=True))
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"compression.distill.teacher '{path}': cannot load a teacher "
            f"(need arch.json and model_float.pt of a trial): {exc}"
        ) from None
    if shape != data.input_shape or kind != data.kind:
        raise ConfigError(
            f"compression.distill.teacher '{path}': its input, {kind} of NCHW shape "
            f"{list(shape)}, is not the candidate's, {data.kind} of {list(data.input_shape)}"
        )
    return module.eval()


def default_teacher(data: Arrays, cfg: DistillConfig, base: TrainSettings) -> nn.Module:
    """A larger network for this dataset, resolution and recipe, trained once and cached."""
    key = (
        f"{cfg.teacher_arch}-{_fingerprint(data)}-r{data.resolution}-e{cfg.teacher_epochs}"
        f"-b{base.batch_size}-lr{base.lr:g}-{base.augment}"
    )
    if key in _CACHE:
        return _CACHE[key]
    space_name, arch = TEACHERS[cfg.teacher_arch]
    space = get_plugin_manager().get("search_space", space_name)()
    spec = {"resolution": data.resolution, **arch}
    module, _ = build_model(
        space, spec, data.in_channels, data.num_classes, data.kind, data.fixed_hw
    )
    file = Path(cfg.cache_dir).expanduser() / f"{key}.pt"
    if not file.is_file():
        # Workers and parallel finalize runs that need the same teacher wait for the one
        # that trains it, then read its file: the teacher is trained once.
        with _exclusive(file.with_suffix(".lock")):
            if not file.is_file():
                torch.manual_seed(0)
                settings = TrainSettings(
                    cfg.teacher_epochs,
                    base.batch_size,
                    base.lr,
                    base.weight_decay,
                    0,
                    base.augment,
                )
                fit(module, data, settings)
                _save(module.state_dict(), file)
                _CACHE[key] = module.eval()
                return _CACHE[key]
    module.load_state_dict(torch.load(file, weights_only=True))
    _CACHE[key] = module.eval()
    return _CACHE[key]


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (other processes wait); without one where the
    cache cannot be written: a read-only cache only costs training again."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path, "w")
    except OSError:
        lock = None
    if lock is None:
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _save(state: dict[str, torch.Tensor], file: Path) -> None:
    """Write ``state`` whole, then rename: a reader never sees half of it. A cache that
    cannot be written is skipped."""
    tmp = file.with_suffix(".pt.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, file)
    except OSError:
        tmp.unlink(missing_ok=True)


def distill(
    student: nn.Module,
    teacher: nn.Module,
    data: Arrays,
    cfg: DistillConfig,
    settings: TrainSettings,
) -> None:
    """Fine-tune ``student`` on the distillation loss."""
    gen = torch.Generator().manual_seed(settings.seed)
    aug = torch.Generator().manual_seed(settings.seed + 1)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    soft = None
    if settings.augment == "none":  # the same images every epoch: label them once
        with torch.no_grad():
            soft = torch.cat([teacher(x[s : s + 512]) for s in range(0, len(x), 512)])
    t = cfg.temperature
    opt = torch.optim.Adam(
        student.parameters(), lr=settings.lr * cfg.lr_scale, weight_decay=settings.weight_decay
    )
    steps = cfg.epochs * math.ceil(len(x) / settings.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    for _ in range(cfg.epochs):
        student.train()
        for idx in batches(len(x), settings.batch_size, gen):
            inputs = augment(x[idx], settings.augment, aug)
            if soft is None:
                with torch.no_grad():
                    target = teacher(inputs)
            else:
                target = soft[idx]
            logits = student(inputs)
            kd = (
                F.kl_div(
                    F.log_softmax(logits / t, 1),
                    F.softmax(target / t, 1),
                    reduction="batchmean",
                )
                * t
                * t
            )
            loss = cfg.alpha * kd + (1 - cfg.alpha) * F.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    student.eval()


class Distillation(BaseCompressionMethod):
    """Fine-tune the candidate against a teacher's soft labels."""

    name = "distill"
    stage = "training"
    Config = DistillConfig

    def apply(self, candidate: Candidate) -> Candidate:
        c, data = self.config, candidate.data
        base = candidate.train or DEFAULT_SETTINGS
        if c.teacher:
            teacher, label = load_teacher(Path(c.teacher), data), c.teacher
        else:
            teacher, label = default_teacher(data, c, base), f"{c.teacher_arch} (cached)"
        before = accuracy(candidate.module, data.x_val, data.y_val)
        distill(candidate.module, teacher, data, c, base)
        candidate.retrace()
        candidate.metrics.update(
            distill_teacher=label,
            distill_teacher_acc=accuracy(teacher, data.x_val, data.y_val),
            distill_acc_before=before,
            distill_acc_after=accuracy(candidate.module, data.x_val, data.y_val),
        )
        return candidate


@hookimpl
def nas_register_compression_methods():
    return [Distillation]
