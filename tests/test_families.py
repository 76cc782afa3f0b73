"""One space across model families (``search_space=families``): the hand designs are
points of it, each family is scored by a backend that runs it, and a family that cannot
run is left out with a note."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest
import torch
from nas_space_families import FAMILIES, FamiliesConfig, FamiliesSearchSpace
from nas_space_reference import ReferenceSearchSpace

from nas.cost import estimate
from nas.errors import ConfigError
from nas.finalize import top_candidates
from nas.graph import trace
from nas.hardware import load_profile
from nas.validate import reproduces

#: Each reference network of the benchmark and its point in the families space.
REFERENCE_POINTS = [
    (
        {"family": "dscnn", "width": 48, "resolution": 28},
        {"dscnn_width": 48, "dscnn_blocks": 4, "dscnn_kernel": 3},
    ),
    (
        {"family": "cnn", "width": 48, "resolution": 16},
        {"cnn_width": 48, "cnn_layers": 2, "cnn_convs": 1, "cnn_kernel": 3, "cnn_hidden": 0},
    ),
    ({"family": "mlp", "width": 128, "resolution": 20}, {"mlp_width": 128, "mlp_layers": 1}),
    ({"family": "mobilenet_v1", "width": 2, "resolution": 28}, {"mobilenet_v1_width": 2}),
]


@pytest.mark.parametrize(("ref", "own"), REFERENCE_POINTS, ids=lambda v: str(v))
def test_every_reference_network_is_a_point_of_the_space(ref, own):
    """The same layers, the same outputs with the same weights, the same static cost; and
    the point is one the space samples when it is enqueued."""
    spec = {"family": ref["family"], "resolution": ref["resolution"], **own}
    space = FamiliesSearchSpace()
    assert reproduces(space, spec, complete=True) is None
    torch.manual_seed(0)
    alone = ReferenceSearchSpace().build(ref, 1, 10).eval()
    point = space.build(spec, 1, 10).eval()
    point.load_state_dict(alone.state_dict())  # same names and shapes, or this raises
    x = torch.randn(4, 1, ref["resolution"], ref["resolution"])
    assert torch.equal(alone(x), point(x))
    shape = (1, 1, ref["resolution"], ref["resolution"])
    hw = load_profile("cortex_m4")
    a = estimate(trace(alone, shape, "ref"), hw)
    b = space.cost(point, space.trace(point, shape, "point"), hw)
    assert a == b


def test_cnn_hidden_layer_sits_between_the_last_pooling_and_the_classifier():
    """LeNet's shape: ``cnn_hidden`` units after the flattened features; its MACs count."""
    base = {"family": "cnn", "resolution": 20, "cnn_width": 3, "cnn_layers": 1}
    base |= {"cnn_kernel": 5}
    space, hw = FamiliesSearchSpace(), load_profile("arduino_uno")
    shape = (1, 1, 20, 20)
    costs = {}
    for hidden in (0, 64):
        net = space.build(base | {"cnn_hidden": hidden}, 1, 10)
        linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
        assert [(m.in_features, m.out_features) for m in linears] == (
            [(300, 64), (64, 10)] if hidden else [(300, 10)]
        )
        costs[hidden] = space.cost(net, space.trace(net, shape, str(hidden)), hw)
    assert costs[64].macs - costs[0].macs == 300 * 64 + 64 * 10 - 300 * 10


def test_cnn_convs_puts_that_many_convolutions_before_each_pooling():
    """VGG's stage: ``cnn_convs=2`` adds a convolution at the stage's width before each
    pooling; the arena holds its input and output together; its MACs count."""
    base = {"family": "cnn", "resolution": 28, "cnn_width": 16, "cnn_layers": 2}
    base |= {"cnn_kernel": 3, "cnn_hidden": 0}
    space, hw = FamiliesSearchSpace(), load_profile("cortex_m4")
    shape = (1, 1, 28, 28)
    costs = {}
    for convs in (1, 2):
        net = space.build(base | {"cnn_convs": convs}, 1, 10)
        kinds = [type(m).__name__ for m in net if not isinstance(m, torch.nn.BatchNorm2d)]
        stage = ["Conv2d", "ReLU"] * convs + ["AvgPool2d"]
        assert kinds == [*stage, *stage, "Flatten", "Linear"]
        costs[convs] = space.cost(net, space.trace(net, shape, str(convs)), hw)
    # the second convolution of each stage: 16 -> 16 channels at 28 px, 32 -> 32 at 14 px
    assert costs[2].macs - costs[1].macs == 28 * 28 * 16 * 16 * 9 + 14 * 14 * 32 * 32 * 9
    # two 16-channel 28 x 28 maps live at once
    assert costs[1].arena_bytes < 2 * 28 * 28 * 16 <= costs[2].arena_bytes


def test_an_architecture_that_leaves_out_a_choice_is_not_reproduced_when_complete():
    """An architecture that names no value for ``cnn_convs`` or ``cnn_hidden``: with
    ``complete=True`` the sampler must not draw one (finalize fills them first)."""
    spec = {"family": "cnn", "resolution": 16, "cnn_width": 8, "cnn_layers": 2}
    spec |= {"cnn_kernel": 3}
    space = FamiliesSearchSpace()
    assert reproduces(space, spec) is None
    why = reproduces(space, spec, complete=True)
    assert why is not None and "also chooses cnn_convs, cnn_hidden" in why


def test_finalize_fills_a_choice_the_space_gained_since_the_run(tmp_path):
    """A run made before ``cnn_convs`` and ``cnn_hidden`` existed: its small CNN is
    finalized as what it trained (one convolution per stage, no hidden layer), a
    MobileNet-like candidate missing a choice is left out with the reason, and a
    candidate naming the defaults is the same architecture, not a second one."""
    old_cnn = {"family": "cnn", "resolution": 16, "cnn_width": 8, "cnn_layers": 2}
    old_cnn |= {"cnn_kernel": 5}
    mobilenet = {"family": "mobilenet", "resolution": 16, "mobilenet_stem_channels": 8}
    dscnn = {"family": "dscnn", "resolution": 16, "dscnn_width": 8, "dscnn_blocks": 2}
    rows = [
        (0, mobilenet, 0.95),
        (1, old_cnn, 0.90),
        (2, old_cnn | {"cnn_convs": 1, "cnn_hidden": 0}, 0.89),
        (3, dscnn, 0.80),
    ]
    pd.DataFrame(
        {
            "number": n,
            "state": "COMPLETE",
            "feasible": True,
            "acc_int8": acc,
            **{f"arch_{k}": v for k, v in arch.items()},
        }
        for n, arch, acc in rows
    ).to_csv(tmp_path / "trials.csv", index=False)
    picked, notes = top_candidates(tmp_path, 3, FamiliesSearchSpace())
    assert [p["number"] for p in picked] == [1, 3]
    assert picked[0]["arch"] == old_cnn | {"cnn_convs": 1, "cnn_hidden": 0}
    assert picked[1]["arch"] == dscnn | {"dscnn_kernel": 3}
    assert len(notes) == 1 and notes[0].startswith("trial 0 (mobilenet) left out: ")
    assert "also chooses mobilenet_s1_width" in notes[0]
    space = FamiliesSearchSpace()
    assert space.complete({"family": "bonsai", "resolution": 8}) == {
        "family": "bonsai",
        "resolution": 8,
    }


def test_a_trial_holds_only_its_own_familys_choices():
    space = FamiliesSearchSpace()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        spec = space.sample(trial)
        family = spec["family"]
        seen.add(family)
        own = {k for k in trial.params if k not in ("family", "resolution")}
        assert own and all(k.startswith(f"{family}_") for k in own), (family, own)
        assert spec == trial.params
        study.tell(trial, 0.0)
    assert seen == set(FAMILIES)


def test_unknown_family_and_nested_option_are_refused():
    with pytest.raises(ConfigError, match="unknown family 'resnet'; valid: mobilenet"):
        FamiliesConfig(families=["resnet"])
    with pytest.raises(ConfigError, match=r"search_space.mobilenet.widthz is not an option"):
        FamiliesConfig(mobilenet={"widthz": [8]})  # type: ignore[arg-type]


def test_families_restricted_to_one_use_only_it():
    space = FamiliesSearchSpace(FamiliesConfig(families=["mlp"]))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    assert {space.sample(study.ask())["family"] for _ in range(5)} == {"mlp"}


@pytest.mark.slow
def test_each_family_is_scored_by_a_backend_that_runs_it(cli, tmp_path):
    """One trial per family (enqueued): Bonsai on the int8 reference (``estimate``), the
    layer networks in TFLite Micro; the ``family`` column in trials.csv, report.md and the
    HTML report's Pareto plot, coloured by family."""
    specs = [
        {"family": "mobilenet", "resolution": 8, "mobilenet_stem_channels": 4}
        | {f"mobilenet_s{i}_{k}": v for i in (1, 2, 3) for k, v in _stage().items()},
        {"family": "dscnn", "resolution": 8, "dscnn_width": 8, "dscnn_blocks": 2}
        | {"dscnn_kernel": 3},
        {"family": "cnn", "resolution": 8, "cnn_width": 8, "cnn_layers": 1, "cnn_kernel": 3}
        | {"cnn_convs": 2, "cnn_hidden": 16},
        {"family": "mlp", "resolution": 8, "mlp_width": 16, "mlp_layers": 2},
        {"family": "mobilenet_v1", "resolution": 8, "mobilenet_v1_width": 2},
        {"family": "bonsai", "resolution": 8, "bonsai_proj_dim": 8, "bonsai_depth": 1}
        | {f"bonsai_{g}_density": 1.0 for g in ("z", "w", "v", "theta")}
        | {"bonsai_sigma": 1.0, "bonsai_path_sigma_end": 16.0},
    ]
    enqueue = ",".join("{" + ",".join(f"{k}:{v}" for k, v in s.items()) + "}" for s in specs)
    run = tmp_path / "run"
    r = cli(
        "search",
        "+hw=cortex_m4",
        "search_space=families",
        f"search.enqueue=[{enqueue}]",
        f"search.n_trials={len(specs)}",
        "search.epochs=2",
        "search.cheap_first=false",
        "pruner.enabled=false",
        f"hydra.run.dir={run}",
    )
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(run / "trials.csv")
    assert list(df["family"]) == [s["family"] for s in specs]
    assert (df["state"] == "COMPLETE").all(), df["reason"].tolist()
    by = dict(zip(df["family"], df["scored_by"], strict=True))
    assert by.pop("bonsai") == "estimate"
    assert set(by.values()) == {"tflm"}
    assert df.loc[df["family"] != "bonsai", "tflm_ref_identical"].all()
    assert "| family |" in (run / "report.md").read_text()
    r = cli("report", str(run), "--out", str(tmp_path / "cmp"))
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert "by model family" in html
    assert all(f'"legendgroup":"{s["family"]}' in html for s in specs)


def _stage() -> dict[str, int]:
    return {"width": 8, "depth": 1, "kernel": 3, "expand": 1, "stride": 1}


@pytest.mark.slow
def test_a_family_that_cannot_run_is_left_out_with_a_note(cli, tmp_path):
    r = cli(
        "search",
        "+hw=cortex_m4",
        "search_space=families",
        "compression=[prune,ptq]",
        "search.n_trials=3",
        "search.epochs=1",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert r.returncode == 0, r.stderr
    note = "family 'bonsai' left out: search space 'bonsai' supports compression"
    assert note in r.stdout + r.stderr
    assert note in (tmp_path / "run" / "search.log").read_text()
    assert "bonsai" not in set(pd.read_csv(tmp_path / "run" / "trials.csv")["family"])
    r = cli(
        "search",
        "+hw=cortex_m4",
        "search_space=families",
        "search_space.families=[bonsai]",
        "compression=[prune,ptq]",
        f"hydra.run.dir={tmp_path / 'none'}",
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: search_space=families: no family can run here; family 'bonsai' left out: "
        "search space 'bonsai' supports compression methods ptq; 'prune' cannot compress "
        "its models"
    ], r.stderr
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
def test_the_random_start_is_drawn_among_architectures_that_fit(cli, tmp_path):
    """On the Uno 3 of the first 4 draws of this families space do not fit: the random
    start passes over them, so the sampler's first observations are trained models, not
    rejections that teach it nothing about accuracy. And it holds every family."""
    run = tmp_path / "run"
    r = cli(
        "search",
        "+hw=arduino_uno",
        "search_space=families",
        "search_space.families=[mlp,cnn,bonsai]",
        "search.n_trials=4",
        "sampler.n_startup_trials=4",
        "search.epochs=1",
        "pruner.enabled=false",
        f"hydra.run.dir={run}",
    )
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(run / "trials.csv").sort_values("number")
    assert df["feasible"].all() and len(df) == 4, df[["number", "family", "reason"]]
    assert (df["state"] == "COMPLETE").all()
    assert df["macs"].tolist() == sorted(df["macs"])  # and still cheapest first
    assert set(df["family"]) == {"mlp", "cnn", "bonsai"}, df[["number", "family"]]
