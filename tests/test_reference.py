"""The hand-designed reference space, ``search.enqueue``, the MobileNet-like space's stem
stride, and the Fashion-MNIST benchmark run end to end on its quick settings."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys

import optuna
import pandas as pd
import pytest
from conftest import REPO
from nas_space_reference import FAMILIES, ReferenceSearchSpace

from nas.graph import trace
from nas.hardware import load_profile


@pytest.mark.slow
def test_enqueued_references_run_first_and_match_tflm_bit_for_bit(cli, tmp_path):
    """Every family traces, quantizes and runs in TFLite Micro with outputs identical to the
    reference kernels; the enqueued architectures are the trials, in order."""
    specs = [{"family": f, "width": 16, "resolution": 8} for f in FAMILIES]
    enqueue = ",".join("{" + ",".join(f"{k}:{v}" for k, v in s.items()) + "}" for s in specs)
    r = cli(
        "search",
        "+hw=cortex_m4",
        "search_space=reference",
        f"search.enqueue=[{enqueue}]",
        f"search.n_trials={len(specs)}",
        "search.epochs=3",
        "pruner.enabled=false",
        f"hydra.run.dir={tmp_path}",
    )
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(tmp_path / "trials.csv")
    assert list(df["arch_family"]) == list(FAMILIES)
    assert (df["state"] == "COMPLETE").all(), df["reason"].tolist()
    assert df["tflm_ref_identical"].all()
    assert (df["acc_int8"] > 0.3).all(), df["acc_int8"].tolist()  # 10 classes: 0.1 is chance


@pytest.mark.slow
def test_enqueued_value_outside_the_space_is_refused_before_anything_runs(cli, tmp_path):
    r = cli(
        "search",
        "+hw=cortex_m4",
        "search_space=reference",
        "backend=estimate",
        "search.enqueue=[{family:resnet,width:4,resolution:8}]",
        "search.n_trials=2",
        "search.epochs=1",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: search.enqueue") and "resnet" in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()


def test_scaled_is_the_largest_version_that_fits():
    space = ReferenceSearchSpace()
    uno = load_profile("arduino_uno")
    for family in FAMILIES:
        spec, cost = space.scaled(family, uno, 1, 10)
        assert cost["sram_bytes"] <= uno.sram_bytes and cost["flash_bytes"] <= uno.flash_bytes
        widths = space.config.widths
        wider = widths[widths.index(spec["width"]) + 1 :]
        if wider:  # the next width at the same resolution breaks a limit
            module = space.build({**spec, "width": wider[0]}, 1, 10)
            size = spec["resolution"]
            graph = space.trace(module, (1, 1, size, size), "wider")
            assert space.cost(module, graph, uno).infeasible_reason(uno)
    tiny = dataclasses.replace(uno, sram_bytes=300)
    assert space.scaled("dscnn", tiny, 1, 10) is None


def test_stem_stride_is_a_choice_only_when_offered():
    from nas_space_mobilenet import MobileNetConfig, MobileNetSearchSpace

    trial = optuna.trial.FixedTrial
    base = {"resolution": 16, "stem_channels": 8}
    for i in (1, 2, 3):
        base |= {f"s{i}_width": 8, f"s{i}_depth": 1, f"s{i}_kernel": 3, f"s{i}_expand": 1}
        base[f"s{i}_stride"] = 1
    default = MobileNetSearchSpace()
    assert "stem_stride" not in default.sample(trial(base))
    space = MobileNetSearchSpace(MobileNetConfig(stem_strides=[1, 2]))
    spec = space.sample(trial({**base, "stem_stride": 2}))
    graph = trace(space.build(spec, 1, 10), (1, 1, 16, 16))
    assert spec["stem_stride"] == 2 and graph.ops[0].stride == 2
    assert graph.tensors[graph.ops[0].outputs[0]].shape == (1, 8, 8, 8)


@pytest.mark.slow
def test_fashion_mnist_benchmark_quick_on_the_uno(real_root, tmp_path):
    """One part of the benchmark on its quick settings: every method searches or is a
    point of the families space, every run is finalized (the first seed also without the
    teacher), a second call resumes without running anything again, and the report merges
    the parts."""
    out, runs = tmp_path / "results", tmp_path / "runs"
    cmd = [
        sys.executable,
        "benchmarks/fashion_mnist/run.py",
        "--quick",
        "--budgets",
        "uno",
        "--trials",
        "3",
        "--methods",
        "search",
        "random",
        "mlp",
        *("--val-fraction", "0.2", "--prune-after", "2"),  # a variant of the search recipe
        *("--search-epochs", "2"),
        *("--finalists", "1", "--screen", "2"),  # 2 of a search's top screened, 1 finalized
        *("--screen-pick", "front"),  # of its top 4, front after front of accuracy and MACs
        "--out",
        str(out),
        "--runs",
        str(runs),
    ]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    df = pd.read_csv(out / "results.csv")
    assert sorted(df["method"]) == ["mlp", "random", "search"]
    assert df["acc_int8_test"].between(0.0, 1.0).all() and df["fits"].all(), df["error"]
    assert df["acc_int8_test_noteacher"].between(0.0, 1.0).all()
    searched = df["method"].isin(["search", "random"])
    assert (df["search_cpu_s"] > 0).all() and (df["final_cpu_s"] > 0).all()
    assert (df["finalists"] == 1).all()
    # random search's other candidates are Bonsai trees, which the recipe cannot distil
    assert df.set_index("method")["screened"].to_dict() == {"search": 2, "random": 0, "mlp": 0}
    assert df.set_index("method")["screen_pick"].fillna("").to_dict() == {
        "search": "front",
        "random": "",
        "mlp": "",
    }
    assert list(df.loc[~searched, "family"]) == ["mlp"]  # the reference is its family's point
    for _, row in df.iterrows():
        final = pd.read_csv(runs / "uno" / f"{row['method']}-s0" / "final" / "trials.csv")
        assert row["acc_int8_val"] == final["acc_int8"].max()
        saved = out / "models" / "uno" / row["method"] / f"seed{row['seed']}"
        arch = json.loads((saved / "arch.json").read_text())["arch"]
        assert (saved / "model_int8.npz").is_file() and arch == json.loads(row["arch"])
    text = (out / "RESULTS.md").read_text()
    assert "## uno" in text and "## Targets" in text and "## What the teacher adds" in text
    assert "uno: search at least 0.875" in text
    assert "20% of them validate; the pruner may stop a candidate after epoch 2" in text
    search_log = (runs / "uno" / "search-s0" / "search.log").read_text()
    assert "dataset.val_fraction=0.2" in search_log and "pruner.n_warmup_epochs=2" in search_log
    assert "search.epochs=2" in search_log
    # each row says which search recipe chose its model; here all ran the one reported
    assert (df["search_epochs"] == 2).all() and (df["search_train"] == 2000).all()
    assert "Searches with another recipe" not in text
    final_log = (runs / "uno" / "search-s0" / "final.log").read_text()
    assert "dataset.val_fraction=0.1" in final_log.splitlines()[0]  # the final recipe's split
    screen = json.loads((runs / "uno" / "search-s0" / "final" / "finalize.json").read_text())
    assert (runs / "uno" / "search-s0" / "final-screen" / "trials.csv").is_file()
    assert len(screen["screened"]) == 2 and len(screen["candidates"]) == 1
    assert screen["screen"]["pick"] == "front"
    assert all(c["acc_int8_screen"] is not None for c in screen["screened"])
    # without the teacher, the same finalist from the same screen
    plain = runs / "uno" / "search-s0" / "final_noteacher"
    assert json.loads((plain / "finalize.json").read_text())["candidates"] == screen["candidates"]
    assert not plain.with_name("final_noteacher-screen").exists()
    table = [sys.executable, "benchmarks/fashion_mnist/screen_table.py", *runs.glob("uno/*-s0")]
    r = subprocess.run(table, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith("| search-s0 |")]
    assert len(lines) == 2 and sum(line.endswith("|  |  |") for line in lines) == 1, r.stdout
    logs = sorted(runs.glob("uno/*/*.log"))
    stamps = [p.stat().st_mtime for p in logs]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [p.stat().st_mtime for p in logs] == stamps  # resumed: nothing ran again
    assert len((out / "parts.jsonl").read_text().splitlines()) == 2
    # On a new machine the runs folder is gone: the report keeps the committed results,
    # and the hand-written reading of them.
    (out / "ANALYSIS.md").write_text("The MLP limited the search.\n")
    before = pd.read_csv(out / "results.csv")
    fresh = tmp_path / "new_machine_runs"
    report = [*cmd[:2], "--report-only", "--out", str(out), "--runs", str(fresh)]
    r = subprocess.run(report, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), before)
    assert len(list((out / "models" / "uno").glob("*/seed0/arch.json"))) == 3
    text = (out / "RESULTS.md").read_text()
    assert "## What the teacher adds" in text
    assert "## What limited it" in text and "The MLP limited the search." in text


def test_fashion_mnist_report_merges_parts_from_other_machines(monkeypatch, tmp_path):
    """A run measured on an earlier machine stays in the results until this machine's
    runs folder has a model for it; a run started again here replaces it only then."""
    path = REPO / "benchmarks" / "fashion_mnist" / "run.py"
    spec = importlib.util.spec_from_file_location("fashion_mnist_run", path)
    assert spec is not None and spec.loader is not None
    runner = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, runner)  # its dataclasses look it up
    spec.loader.exec_module(runner)
    merge, nan = runner.merge, float("nan")

    def runs(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
        budget, method, acc = zip(*rows, strict=True)
        return pd.DataFrame({"budget": budget, "method": method, "seed": 0, "acc_int8_test": acc})

    earlier = runs(
        [
            ("uno", "search", 0.89),
            ("uno", "mlp", 0.88),
            ("uno", "cnn", 0.85),
            ("m4-tight", "dscnn", nan),
        ]
    )
    new = runs(
        [
            ("uno", "search", nan),
            ("uno", "mlp", 0.87),
            ("m4-tight", "dscnn", 0.91),
            ("m4-tight", "mlp", nan),
        ]
    )
    merged = merge(earlier, new).set_index(["budget", "method", "seed"])["acc_int8_test"]
    assert merged.fillna(-1).to_dict() == {
        ("m4-tight", "dscnn", 0): 0.91,  # measured here
        ("m4-tight", "mlp", 0): -1,  # started here only
        ("uno", "cnn", 0): 0.85,  # only in the committed file
        ("uno", "mlp", 0): 0.87,  # measured again here
        ("uno", "search", 0): 0.89,  # kept: started again here, no model yet
    }
    # a file written before any run had its model has no accuracy column; duplicates
    no_acc = earlier.drop(columns="acc_int8_test")
    assert len(merge(no_acc, new)) == 5
    assert len(merge(pd.concat([earlier, earlier]), new.iloc[:0])) == 4
    assert merge(pd.DataFrame(), new).equals(new.sort_values(runner.KEY, ignore_index=True))
    # an empty report writes nothing, and leaves nothing that breaks the next one
    out, empty = tmp_path / "results", tmp_path / "runs"
    assert runner.main(["--report-only", "--out", str(out), "--runs", str(empty)]) == 0
    assert not out.exists()
    assert runner.read_results(out / "results.csv").empty
    # search and random search compared only over the same seeds
    rows = [("m4-tight", m, k, a) for m, k, a in [("search", 0, 0.93), ("search", 1, 0.92)]]
    rows.append(("m4-tight", "random", 0, 0.91))
    table = pd.DataFrame(rows, columns=["budget", "method", "seed", "acc_int8_test"])
    line = "- m4-tight: search above random search in the same space (mean): "
    verdicts = runner.targets(table, runner.FULL)
    assert line + "not decided yet, models for seeds [0, 1] (search) and [0] (random)" in verdicts
    table.loc[len(table)] = ["m4-tight", "random", 1, 0.93]
    assert line + "0.9250 vs 0.9200, **met** (+0.0050)" in runner.targets(table, runner.FULL)
    # so is the supernet with TPE given its CPU time
    table.loc[len(table)] = ["m4-tight", "supernet", 0, 0.91]
    table.loc[len(table)] = ["m4-tight", "supernet", 1, 0.92]
    table.loc[len(table)] = ["m4-tight", "search_long", 0, 0.93]
    line = (
        "- m4-tight: supernet search at least as accurate as TPE given its CPU time (issue 19): "
    )
    verdicts = runner.targets(table, runner.FULL)
    assert line + "not decided yet, models for seeds [0, 1] (supernet) and [0] (search_long)" in (
        verdicts
    )
    table.loc[len(table)] = ["m4-tight", "search_long", 1, 0.93]
    assert line + "0.9150 vs 0.9300, **MISSED** (-0.0150)" in runner.targets(table, runner.FULL)
    table = table[table["method"].isin(["search", "random"])].copy()
    # the runs whose search trained otherwise than the report's recipe are named
    args = ["search", "dataset.train_subset=20000", "search.epochs=3", "search.seed=1"]
    assert runner.search_options(args) == {"search_train": 20000, "search_epochs": 3}
    assert runner.other_search_recipes(table, runner.FULL) == []  # rows from before the columns
    table["search_train"], table["search_epochs"] = [20000, 20000, 10000, 10000], 3
    assert runner.other_search_recipes(table, runner.FULL) == [
        "- Searches with another recipe (columns `search_train`, `search_epochs`): "
        "m4-tight search (seeds 0, 1): 20,000 images."
    ]
