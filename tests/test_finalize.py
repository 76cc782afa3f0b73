"""``python -m nas finalize``: a search's best candidates trained again with a longer
recipe (whole training split, augmentation, a teacher); and the augmentation itself."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from nas.__main__ import main
from nas.finalize import replaced
from nas.train import augment


def test_crop_shifts_within_an_eighth_and_flip_mirrors():
    x = torch.arange(1, 2 * 16 * 16 + 1, dtype=torch.float32).view(2, 1, 16, 16)
    gen = torch.Generator().manual_seed(0)
    assert augment(x, "none", gen) is x
    for _ in range(20):
        out = augment(x, "crop", gen)
        assert out.shape == x.shape
        for img, orig in zip(out, x, strict=True):
            # a shift by (dy, dx) with |dy|, |dx| <= 2: the kept pixels are the original's
            found = [
                (dy, dx)
                for dy in range(-2, 3)
                for dx in range(-2, 3)
                if torch.equal(_shift(orig, dy, dx), img)
            ]
            assert found, img
    mirrored_only = [augment(x, "flip", gen) for _ in range(20)]
    assert all(torch.equal(f[0], x[0]) or torch.equal(f[0], x[0].flip(2)) for f in mirrored_only)
    assert 0 < sum(torch.equal(f[0], x[0].flip(2)) for f in mirrored_only) < 20
    flips = [augment(x, "crop_flip", gen) for _ in range(20)]
    mirrored = sum(
        bool(
            any(
                torch.equal(_shift(x[0].flip(2), dy, dx), f[0])
                for dy in range(-2, 3)
                for dx in range(-2, 3)
            )
        )
        for f in flips
    )
    assert 0 < mirrored < 20  # about half
    a = augment(x, "crop_flip", torch.Generator().manual_seed(5))
    assert torch.equal(a, augment(x, "crop_flip", torch.Generator().manual_seed(5)))


def _shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``img`` (C, H, W) moved by (dy, dx), zeros where nothing moved in."""
    out = torch.zeros_like(img)
    h, w = img.shape[1:]
    src = img[:, max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    out[:, max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] = src
    return out


@pytest.mark.slow
def test_finalize_trains_the_top_candidates_again_and_keeps_the_best(cli, tmp_path):
    from nas.finalize import screen_pool

    run = tmp_path / "run"
    r = cli(
        "search",
        "+hw=cortex_m4",
        "search_space=families",
        "search_space.families=[mlp,cnn]",
        "search_space.widths=[4,8,16]",
        "search_space.resolutions=[8]",
        "search.n_trials=5",
        "search.epochs=1",
        "compression.ptq.calibration_samples=128",
        f"hydra.run.dir={run}",
    )
    assert r.returncode == 0, r.stderr
    searched = pd.read_csv(run / "trials.csv")
    done = searched[(searched["state"] == "COMPLETE") & searched["feasible"]]
    top = done.sort_values("acc_int8", ascending=False, kind="stable").drop_duplicates(
        [c for c in searched if c.startswith("arch_")]
    )
    teachers = f"compression.distill.cache_dir={tmp_path / 'teachers'}"
    r = cli(
        "finalize",
        str(run),
        *("--top", "2", "--epochs", "3", "--augment", "auto"),
        *(teachers, "compression.distill.teacher_epochs=3", "search.batch_size=64"),
    )
    assert r.returncode == 0, r.stderr
    out = run / "final"
    recipe = json.loads((out / "finalize.json").read_text())
    assert [c["number"] for c in recipe["candidates"]] == list(top["number"][:2])
    assert (recipe["epochs"], recipe["distill_epochs"], recipe["augment"]) == (3, 2, "crop")
    assert "compression.distill.lr_scale=1.0" in recipe["command"]
    assert "compression.ptq.calibration_samples=128" in recipe["command"]  # carried over
    final = pd.read_csv(out / "trials.csv")
    assert len(final) == 2 and (final["state"] == "COMPLETE").all(), final["reason"].tolist()
    assert list(final["family"]) == list(top["family"][:2])
    assert final["distill_teacher"].str.startswith("cnn").all()
    assert (final["distill_teacher_acc"] > 0.5).all()
    # the float accuracy is the distilled model's, the one quantization starts from
    assert (final["acc_float"] == final["distill_acc_after"]).all()
    assert (final["compress_s"] > 0).all()  # the distillation epochs: compression time
    assert (out / "best" / "arch.json").is_file()
    for rec in final.itertuples():
        assert (
            json.loads((out / "trials" / f"{rec.number:05d}" / "arch.json").read_text())["arch"]
            == recipe["candidates"][rec.number]["arch"]
        )
    assert "finalized (int8 accuracy" in r.stdout
    assert list((tmp_path / "teachers").glob("cnn-*.pt"))  # trained once, cached

    # the same students without a teacher, for comparison
    r = cli(
        "finalize",
        str(run),
        "--top",
        "2",
        "--epochs",
        "3",
        "--teacher",
        "none",
        "--out",
        str(tmp_path / "plain"),
    )
    assert r.returncode == 0, r.stderr
    plain = pd.read_csv(tmp_path / "plain" / "trials.csv")
    assert "distill_teacher" not in plain and len(plain) == 2

    # screened: 3 of the top 6 (fronts of accuracy and MACs) trained one epoch each
    # without the teacher, the best goes on
    r = cli(
        "finalize",
        str(run),
        *("--top", "1", "--screen", "3", "--screen-epochs", "1", "--epochs", "3"),
        *("--screen-pick", "front"),
        *(teachers, "compression.distill.teacher_epochs=3", "--out", str(tmp_path / "sc")),
    )
    assert r.returncode == 0, r.stderr
    recipe = json.loads((tmp_path / "sc" / "finalize.json").read_text())
    pool = top[["number", "acc_int8", "macs"]].head(6).to_dict("records")
    assert [c["number"] for c in recipe["screened"]] == [c["number"] for c in screen_pool(pool, 3)]
    screen = pd.read_csv(tmp_path / "sc-screen" / "trials.csv")
    assert len(screen) == 3 and "distill_teacher" not in screen
    assert "search.epochs=1" in recipe["screen"]["command"]
    best = screen.sort_values("acc_int8", ascending=False, kind="stable").iloc[0]
    (finalist,) = recipe["candidates"]
    assert finalist["number"] == recipe["screened"][int(best["number"])]["number"]
    assert finalist["acc_int8_screen"] == pytest.approx(best["acc_int8"])
    got = [c["acc_int8_screen"] for c in recipe["screened"]]  # every screened one's score
    assert got == pytest.approx(list(screen.sort_values("number")["acc_int8"]))
    assert recipe["screen"]["pick"] == "front"
    final = pd.read_csv(tmp_path / "sc" / "trials.csv")
    assert len(final) == 1 and final["distill_teacher"].str.startswith("cnn").all()
    assert "-> screen" in r.stdout
    assert json.loads((tmp_path / "sc-screen" / "screen.json").read_text())["candidates"] == [
        {k: v for k, v in c.items() if k != "acc_int8_screen"} for c in recipe["screened"]
    ]
    # the same finalist again without the teacher, from that screen: no screen runs
    again = ["finalize", str(run), "--top", "1", "--epochs", "3", "--teacher", "none"]
    r = cli(*again, "--screen-from", str(tmp_path / "sc-screen"), "--out", str(tmp_path / "nt"))
    assert r.returncode == 0, r.stderr
    assert "screening" not in r.stdout and not (tmp_path / "nt-screen").exists()
    plain = json.loads((tmp_path / "nt" / "finalize.json").read_text())
    assert plain["candidates"] == [finalist] and plain["screened"] == recipe["screened"]
    assert plain["screen"]["pick"] == "front" and plain["screen"]["reused"]  # the screen's
    # a second screen into the same place is refused: it names the earlier one
    r = cli(*again, "--screen", "3", "--out", str(tmp_path / "sc"))
    assert r.returncode == 2 and "exists" in r.stderr
    (tmp_path / "x-screen").mkdir()
    r = cli(*again, "--screen", "3", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "x-screen' exists, an earlier screen" in r.stderr
    r = cli(*again, "--screen-from", str(run), "--out", str(tmp_path / "y"))
    assert r.returncode == 2 and "no screen of an earlier finalize" in r.stderr


def test_augmenting_what_is_not_an_image_is_refused(capsys, tmp_path):
    rng = np.random.default_rng(0)
    windows = tmp_path / "windows.npz"
    np.savez(windows, x_train=rng.normal(size=(90, 16, 3)), y_train=np.arange(90) % 3)
    run = tmp_path / "run"
    args = ["search", "+hw=cortex_m4", "dataset=arrays", f"dataset.path={windows}"]
    assert main([*args, "search.augment=crop", f"hydra.run.dir={run}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: search.augment=crop shifts and mirrors images; dataset 'arrays' gives "
        "windows: use search.augment=none"
    ]
    assert not run.exists()


def test_the_front_pick_screens_larger_networks_the_proxy_ranked_a_little_lower():
    """``--screen-pick front``: front after front of (search accuracy, MACs). The proxy's
    favourite and the largest network are in; a network that both scored lower and
    computes less than another waits for the next front; a front larger than the room
    left is taken at evenly spaced places, both ends in."""
    from nas.finalize import screen_pool

    def cand(number, acc, macs):
        return {"number": number, "acc_int8": acc, "macs": macs}

    pool = [
        cand(0, 0.90, 1e6),  # the proxy's favourite, small: first front
        cand(1, 0.89, 0.9e6),  # beaten by 0 on both: second front
        cand(2, 0.88, 4e6),  # the largest: first front
        cand(3, 0.885, 2e6),  # between them: first front
        cand(4, 0.87, 3e6),  # beaten by 2 on both: second front
        cand(5, 0.86, 0.5e6),  # beaten by 0, 1 and 3: third front
    ]
    assert [c["number"] for c in screen_pool(pool, 3)] == [0, 3, 2]
    assert [c["number"] for c in screen_pool(pool, 4)] == [0, 3, 2, 1]  # best of front 2
    assert [c["number"] for c in screen_pool(pool, 6)] == [0, 3, 2, 1, 4, 5]
    assert [c["number"] for c in screen_pool(pool[:2], 6)] == [0, 1]
    # a front with more candidates than room: spread along it, both ends in
    line = [cand(n, 0.90 - n / 100, (n + 1) * 1e6) for n in range(5)]  # one front
    assert [c["number"] for c in screen_pool(line, 2)] == [0, 4]
    assert [c["number"] for c in screen_pool(line, 3)] == [0, 2, 4]
    assert [c["number"] for c in screen_pool(line, 1)] == [0]
    # no MACs recorded: the smallest
    assert [c["number"] for c in screen_pool([cand(0, 0.9, None), cand(1, 0.8, 1)], 1)] == [0]
    assert [c["number"] for c in screen_pool([cand(0, 0.8, None), cand(1, 0.8, 1)], 1)] == [1]


def test_the_recipe_replaces_the_search_s_own_settings():
    for override in (
        "search.epochs=3",
        "+search.enqueue=[{a:1}]",
        "dataset.train_subset=10000",
        "storage.url=sqlite:///x.db",
        "search.supernet.epochs=8",
        "compression=[ptq]",
        "hydra.run.dir=out",
    ):
        assert replaced(override), override
    for override in (
        "search.lr=0.01",
        "dataset=fashion_mnist",
        "search_space.widths=[8]",
        "compression.distill.temperature=4",  # a method's options carry over
    ):
        assert not replaced(override), override


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "run directory '{missing}' does not exist"),
        (["{run}", "--top", "0"], "--top 0 must be 1 or more"),
        (["{run}", "--augment", "rotate"], "--augment rotate is not valid"),
        (["{run}", "--top", "2", "--screen", "2"], "--screen 2 must be more than --top 2"),
        (["{run}", "--screen", "5", "--screen-epochs", "0"], "--screen-epochs 0 must be 1"),
        (["{run}", "--screen-epochs", "2"], "--screen-epochs needs --screen N"),
        (["{run}", "--screen-pick", "front"], "--screen-pick needs --screen N"),
        (["{run}", "--screen-from", "{run}", "--screen-pick", "top"], "keeps the earlier"),
        (["{run}", "--screen", "5", "--screen-pick", "big"], "--screen-pick big is not valid"),
        (["{run}", "--screen", "5", "--screen-from", "{run}"], "cannot go with --screen"),
        (["{run}", "--teacher", "{missing}"], "--teacher {missing}: use auto, none"),
        (["{run}", "--frobnicate"], "unknown argument '--frobnicate'"),
        (["{run}", "--top", "many"], "argument --top: invalid int value: 'many'"),
        (["{run}", "--out"], "argument --out: expected one argument"),
        (["{run}"], "cannot read the search's configuration"),
    ],
)
def test_bad_finalize_input_is_one_line_and_writes_nothing(capsys, tmp_path, args, message):
    run = tmp_path / "run"
    run.mkdir()
    names = {"run": run, "missing": tmp_path / "missing"}
    assert main(["finalize", *[a.format(**names) for a in args]]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: finalize"), lines
    assert message.format(**names) in lines[0]
    assert list(run.iterdir()) == []
