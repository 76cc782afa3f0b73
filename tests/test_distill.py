"""Distillation: a cached default teacher, a teacher from a trial folder, and the gain."""

from __future__ import annotations

import json

import pytest
import torch
from nas_compress_distill import Distillation, DistillConfig, default_teacher, load_teacher

import nas
from nas.errors import ConfigError
from nas.testing import make_candidate
from nas.train import TrainSettings, accuracy, fit


def test_distillation_lifts_an_undertrained_student(tmp_path):
    import nas_compress_distill

    nas_compress_distill._CACHE.clear()  # another test may have trained the teacher already
    cand = make_candidate()
    space = nas.create_search_space("mobilenet")
    torch.manual_seed(1)
    cand.module = space.build(cand.spec, 1, 10)  # a fresh student, trained for 1 epoch only
    fit(cand.module, cand.data, TrainSettings(1, 32, 0.01, 1e-4, 1))
    cfg = DistillConfig(epochs=4, cache_dir=str(tmp_path))
    out = Distillation(cfg).apply(cand)
    m = out.metrics
    assert m["distill_teacher_acc"] > 0.9
    assert m["distill_acc_after"] > m["distill_acc_before"]
    assert list(tmp_path.glob("*.pt"))  # the teacher is cached on disk


def test_default_teacher_is_trained_once(tmp_path):
    data = make_candidate().data
    cfg = DistillConfig(cache_dir=str(tmp_path), teacher_epochs=2)
    base = TrainSettings(2, 32, 0.01, 1e-4, 0)
    assert default_teacher(data, cfg, base) is default_teacher(data, cfg, base)


def test_teacher_from_a_trial_folder(tmp_path):
    cand = make_candidate()
    info = {"arch": cand.spec, "search_space": "mobilenet", "in_channels": 1, "num_classes": 10}
    (tmp_path / "arch.json").write_text(json.dumps(info))
    torch.save(cand.module.state_dict(), tmp_path / "model_float.pt")
    teacher = load_teacher(tmp_path, cand.data)
    assert accuracy(teacher, cand.data.x_val, cand.data.y_val) == pytest.approx(
        accuracy(cand.module, cand.data.x_val, cand.data.y_val)
    )
    with pytest.raises(ConfigError, match="cannot load a teacher"):
        load_teacher(tmp_path / "missing", cand.data)
    with pytest.raises(ConfigError, match=r"is not the candidate.s, images of \[1, 1, 12, 12\]"):
        load_teacher(tmp_path, cand.data.resized(12))


CHILD = """
import sys, torch
from nas_compress_distill import DistillConfig, default_teacher
from nas.testing import make_candidate
from nas.train import TrainSettings
from nas.plugin_manager import get_plugin_manager
data = make_candidate().data
get_plugin_manager()  # loaded before "ready": the child goes straight to the teacher
print("ready", flush=True)
cfg = DistillConfig(cache_dir=sys.argv[1], teacher_epochs=1)
teacher = default_teacher(data, cfg, TrainSettings(2, 32, 0.01, 1e-4, 0))
print(sum(float(p.abs().sum()) for p in teacher.parameters()))
"""


def test_a_second_process_waits_for_the_teacher_being_trained_and_reads_it(tmp_path):
    """Parallel finalize runs and workers train a teacher once: the others wait for it."""
    import fcntl
    import subprocess
    import sys
    import time

    import nas_compress_distill

    nas_compress_distill._CACHE.clear()
    data = make_candidate().data
    cfg = DistillConfig(cache_dir=str(tmp_path), teacher_epochs=1)
    teacher = default_teacher(data, cfg, TrainSettings(2, 32, 0.01, 1e-4, 0))
    (file,) = tmp_path.glob("*.pt")
    with open(file.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as if this process were still training it
        file.unlink()
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(2)  # the child is at the lock now
        assert child.poll() is None and not list(tmp_path.glob("*.pt*"))  # waiting, not done
        torch.save({k: torch.zeros_like(v) for k, v in teacher.state_dict().items()}, file)
    out, _ = child.communicate(timeout=300)
    assert child.returncode == 0
    assert float(out.split()[-1]) == 0.0  # it read this file instead of training its own
