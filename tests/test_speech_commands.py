"""Keyword spotting: a Speech Commands folder (synthesised with espeak-ng) loads as the
standard 12-class task of 49 x 10 MFCC maps, wrong clips are named in one line, the
spaces build the non-square input (the DS-CNN with its 10 x 4 first kernel), and a search
on it ends in a model that fits and firmware that runs."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import optuna
import pandas as pd
import pytest
import scipy.io.wavfile
import torch
from conftest import need_tools, random_bn, run_firmware
from nas_backend_c_sim import sim
from nas_backend_tflm.runtime import invoke_all, load, min_arena_bytes
from nas_dataset_speech_commands import SpeechCommandsConfig, SpeechCommandsDataset

from nas.cost import tflm_arena
from nas.data import FEATURES, calibration_batch
from nas.errors import ConfigError
from nas.frontend import MfccConfig, mfcc
from nas.frontend_c import frontend_cost
from nas.hardware import load_profile
from nas.int8 import quantize, run_int8
from nas.plugin_manager import get_plugin_manager
from nas.spaces import build_model, pin_resolution
from nas.synthetic import KEYWORDS, speech_commands_folder
from nas.tflite import export

OTHERS = ("bed", "cat", "happy")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    need_tools(("espeak-ng",), "espeak-ng")
    root = tmp_path_factory.mktemp("sc") / "speech"
    return speech_commands_folder(root, per_word=8, seed=3, others=OTHERS, per_other=6)


def _load(root, tmp_path, **options):
    cfg = SpeechCommandsConfig(root=str(root), cache_dir=str(tmp_path / "cache"), **options)
    return SpeechCommandsDataset(cfg).load()


def test_the_synthetic_folder_has_the_speech_commands_layout(folder):
    for word in (*KEYWORDS, *OTHERS):
        clips = sorted((folder / word).glob("*.wav"))
        assert len(clips) == (8 if word in KEYWORDS else 6)
        rate, audio = scipy.io.wavfile.read(clips[0])
        assert rate == 16000 and audio.dtype == np.int16 and audio.ndim == 1
        assert len(audio) <= 16000 and np.abs(audio).max() > 1000  # a word, not silence
    listed = (folder / "validation_list.txt").read_text().split()
    assert listed and all((folder / rel).is_file() for rel in listed)
    assert not set(listed) & set((folder / "testing_list.txt").read_text().split())
    assert len(list((folder / "_background_noise_").glob("*.wav"))) == 3


def test_twelve_classes_of_mfcc_maps_split_by_the_lists(folder, tmp_path):
    data = _load(folder, tmp_path)
    assert data.kind == FEATURES and data.fixed_hw == (49, 10)
    assert data.class_names == ("_silence_", "_unknown_", *KEYWORDS)
    assert data.x_train.shape[1:] == (1, 49, 10) and data.num_classes == 12
    val = set((folder / "validation_list.txt").read_text().split())
    n_val_keywords = sum(1 for rel in val if rel.split("/")[0] in KEYWORDS)
    assert (data.y_val >= 2).sum() == n_val_keywords  # keywords by the list, no more
    counts = np.bincount(data.y_train, minlength=12)
    assert counts[0] == counts[1] > 0  # as many silence as unknown clips: 10% each
    # one augmented copy of every training clip: the same labels twice, other features
    half = len(data.y_train) // 2
    assert (data.y_train[:half] == data.y_train[half:]).all()
    assert not np.allclose(data.x_train[:half], data.x_train[half:])
    plain = _load(folder, tmp_path, augment=0)
    assert len(plain.y_train) == half and np.allclose(plain.x_train, data.x_train[:half])
    # features are the front-end's MFCC of the clip
    rel = sorted(val)[0]
    _, audio = scipy.io.wavfile.read(folder / rel)
    clip = np.zeros((1, 16000), np.int16)
    clip[0, : len(audio)] = audio
    assert any(np.allclose(mfcc(clip, MfccConfig())[0], x[0]) for x in data.x_val)


def test_features_are_cached(folder, tmp_path, monkeypatch):
    first = _load(folder, tmp_path)
    monkeypatch.setattr("nas_dataset_speech_commands.read_wav", _fail)
    again = _load(folder, tmp_path)
    assert np.array_equal(first.x_train, again.x_train)


def _fail(*args):
    raise AssertionError("read again")


def test_other_front_end_parameters_change_the_map(folder, tmp_path):
    data = _load(folder, tmp_path, window_ms=40, stride_ms=25, coefficients=13, augment=0)
    assert data.fixed_hw == (39, 13)


@pytest.mark.parametrize(
    ("damage", "needles"),
    [
        ("rate", ["8000 Hz", "valid: 16000 Hz"]),
        ("stereo", ["2 channels", "mono"]),
        ("corrupt", ["cannot read as a WAV file"]),
        ("long", ["1.500 s long", "at most 1 s"]),
        ("float", ["float32 samples", "16-bit PCM"]),
    ],
)
def test_a_wrong_clip_is_named_in_one_line(folder, tmp_path, damage, needles):
    root = tmp_path / "copy"
    shutil.copytree(folder, root)
    bad = sorted((root / "yes").glob("*.wav"))[0]
    tone = (np.sin(np.arange(8000) / 5) * 9000).astype(np.int16)
    if damage == "rate":
        scipy.io.wavfile.write(bad, 8000, tone)
    elif damage == "stereo":
        scipy.io.wavfile.write(bad, 16000, np.stack([tone, tone], axis=1))
    elif damage == "corrupt":
        bad.write_bytes(b"RIFF\x00\x00junk" + bytes(40))
    elif damage == "long":
        scipy.io.wavfile.write(bad, 16000, np.zeros(24000, np.int16))
    else:
        scipy.io.wavfile.write(bad, 16000, tone.astype(np.float32))
    with pytest.raises(ConfigError) as exc:
        _load(root, tmp_path)
    text = str(exc.value)
    assert "\n" not in text and str(bad) in text
    for needle in needles:
        assert needle in text, text


def test_a_wrong_folder_says_what_to_do(folder, tmp_path):
    with pytest.raises(ConfigError, match="not a folder; download Speech Commands v2"):
        _load(tmp_path / "none", tmp_path)
    with pytest.raises(ConfigError, match="dataset.words: no folder .*sheila"):
        _load(folder, tmp_path, words=["yes", "sheila"])
    root = tmp_path / "nolists"
    shutil.copytree(folder, root)
    (root / "testing_list.txt").unlink()
    with pytest.raises(ConfigError, match="testing_list.txt: not found"):
        _load(root, tmp_path)
    shutil.rmtree(root / "_background_noise_")
    with pytest.raises(ConfigError, match="no .wav noise recordings"):
        _load(root, tmp_path)
    with pytest.raises(ConfigError, match="dataset.coefficients=50"):
        _load(folder, tmp_path, coefficients=50)


@pytest.mark.parametrize("family", ["dscnn", "mobilenet"])
def test_a_49_by_10_map_runs_the_same_in_tflm_and_the_int8_reference(family):
    """Non-square inputs, rectangular kernels (the DS-CNN's 10 x 4, stride 2)."""
    name = "reference" if family == "dscnn" else "mobilenet"
    space = get_plugin_manager().get("search_space", name)()
    spec = space.sample(optuna.create_study(sampler=optuna.samplers.RandomSampler(0)).ask())
    if family == "dscnn":
        spec = {**spec, "family": "dscnn", "width": 16}
    torch.manual_seed(0)
    module, shape = build_model(space, spec, 1, 12, FEATURES, (49, 10))
    graph = space.trace(random_bn(module), shape, family)
    assert graph is not None and graph.input_shape == (1, 49, 10, 1)
    if family == "dscnn":
        first = graph.ops[0]
        assert first.kernel == (10, 4) and first.stride == 2
        assert graph.tensors[first.outputs[0]].shape == (1, 25, 5, 16)  # TF SAME
    x = np.random.default_rng(0).normal(0, 5, (32, 1, 49, 10)).astype(np.float32)
    qg = quantize(graph, calibration_batch(x, 16, 0))
    x_q = qg.input_params.quantize(x.transpose(0, 2, 3, 1))
    model = export(qg)
    estimate = tflm_arena(graph, "reference", 8).min_bytes
    assert min_arena_bytes(model, guess=estimate) == estimate
    got = invoke_all(load(model, 1 << 20), x_q).reshape(len(x), -1).astype(np.int32)
    ref = run_int8(qg, x_q).reshape(len(x), -1).astype(np.int32)
    assert np.abs(got - ref).max() <= 1 and (got == ref).all(axis=1).mean() >= 0.9


def test_feature_maps_pin_the_resolution_choice(folder, tmp_path):
    data = _load(folder, tmp_path, augment=0)
    space = get_plugin_manager().get("search_space", "mobilenet")()
    pin_resolution(space, data)
    assert space.config.resolutions == [49]


@pytest.mark.slow
def test_search_on_speech_commands_ends_in_firmware_that_runs(cli, folder, tmp_path):
    need_tools(sim.ARM_TOOLS, sim.ARM_TOOLS_PACKAGES)
    run = tmp_path / "run"
    proc = cli(
        "search", "+hw=cortex_m4", "dataset=speech_commands", f"dataset.root={folder}",
        f"dataset.cache_dir={tmp_path / 'cache'}", "search_space=reference",
        "search_space.families=[dscnn]", "search_space.widths=[8]", "search.n_trials=1",
        "search.epochs=2", "backend=tflm", f"hydra.run.dir={run}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((run / "best" / "arch.json").read_text())
    assert info["arch"]["resolution"] == 49 and info["input_hw"] == [49, 10]
    assert info["input"]["kind"] == FEATURES and info["input"]["model_shape"] == [49, 10, 1]
    assert "MFCC" in info["input"]["raw_source"]
    assert info["input"]["class_names"][:2] == ["_silence_", "_unknown_"]
    # the front-end is in the budget: its figures, included in the totals
    fe = frontend_cost(MfccConfig(), load_profile("cortex_m4"))
    trials = pd.read_csv(run / "trials.csv")
    assert (trials["frontend_sram_bytes"] == fe["frontend_sram_bytes"]).all()
    assert (trials["frontend_flash_bytes"] == fe["frontend_flash_bytes"]).all()
    assert np.allclose(trials["frontend_latency_ms"], fe["frontend_latency_ms"])
    assert (trials["sram_bytes"] >= trials["arena_bytes"] + fe["frontend_sram_bytes"]).all()
    report = (run / "report.md").read_text()
    assert "## Model and front-end" in report and f"| {fe['frontend_sram_bytes']:,} |" in report
    # the firmware reads audio: the C front-end, then the model
    assert {"nas_frontend.c", "nas_frontend.h"} <= {
        f.name for f in (run / "best" / "firmware").iterdir()
    }
    run_firmware(run / "best" / "firmware")
    # a chip whose front-end cost was never measured is refused before anything is written
    bad = cli(
        "search", "+hw=esp32", "dataset=speech_commands", f"dataset.root={folder}",
        f"dataset.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'esp'}",
    )  # fmt: skip
    assert bad.returncode == 2 and "no measured cost of the MFCC front-end" in bad.stderr
    assert not (tmp_path / "esp").exists()


def test_front_end_settings_can_be_searched(folder, tmp_path):
    cfg = SpeechCommandsConfig(
        root=str(folder), cache_dir=str(tmp_path / "c"), augment=0,
        search_coefficients=[10, 13], search_window_ms=[20, 40],
    )  # fmt: skip
    dataset = SpeechCommandsDataset(cfg)
    assert dataset.choices() == [
        ("frontend_window_ms", [20, 40]),
        ("frontend_coefficients", [10, 13]),
    ]
    other = dataset.variant({"frontend_window_ms": 40, "frontend_coefficients": 13})
    assert other.fixed_hw == (49, 13)
    assert other.frontend == MfccConfig(window_ms=40, coefficients=13)
    with pytest.raises(ConfigError, match=r"dataset.search_coefficients=\[10, 10\]"):
        SpeechCommandsDataset(replace(cfg, search_coefficients=[10, 10])).load()
    with pytest.raises(ConfigError, match="dataset.search_window_ms=2000"):
        SpeechCommandsDataset(replace(cfg, search_window_ms=[30, 2000])).load()


@pytest.mark.slow
def test_a_search_over_front_end_settings_costs_and_deploys_each(cli, folder, tmp_path):
    run = tmp_path / "run"
    common = [
        "search", "+hw=cortex_m4", "dataset=speech_commands", f"dataset.root={folder}",
        f"dataset.cache_dir={tmp_path / 'cache'}", "dataset.search_coefficients=[10,13]",
        "search_space=reference", "search_space.families=[dscnn]", "search_space.widths=[8]",
    ]  # fmt: skip
    proc = cli(*common, "search.n_trials=2", "search.epochs=1", "backend=tflm",
               "search.enqueue=[{frontend_coefficients:10},{frontend_coefficients:13}]",
               f"hydra.run.dir={run}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = pd.read_csv(run / "trials.csv").set_index("arch_frontend_coefficients")
    assert list(trials["input_hw"]) == ["[49, 10]", "[49, 13]"]
    hw = load_profile("cortex_m4")
    for k in (10, 13):
        fe = frontend_cost(MfccConfig(coefficients=k), hw)
        assert trials.loc[k, "frontend_flash_bytes"] == fe["frontend_flash_bytes"]
        assert trials.loc[k, "frontend_sram_bytes"] == fe["frontend_sram_bytes"]
    best = json.loads((run / "best" / "arch.json").read_text())
    k = best["arch"]["frontend_coefficients"]
    assert best["input"]["frontend"]["coefficients"] == k and best["input_hw"] == [49, k]
    assert (
        f"#define NAS_FRONTEND_COEFFICIENTS {k}"
        in (run / "best" / "firmware" / "nas_frontend.h").read_text()
    )
    for bad, needle in (
        (["search.strategy=supernet"], "search.strategy=supernet trains on one data set"),
        (["search.enqueue=[{frontend_coefficients:12}]"], "frontend_coefficients=12"),
    ):
        refused = cli(*common, *bad, f"hydra.run.dir={tmp_path / 'bad'}")
        assert refused.returncode == 2 and needle in refused.stderr, refused.stderr
        assert not (tmp_path / "bad").exists()
