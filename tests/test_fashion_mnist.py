"""Fashion-MNIST from the Debian package's IDX files; clear errors when missing or corrupt."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest
from nas_dataset_fashion_mnist import FILES

import nas
from nas.errors import ConfigError


def test_loads_a_stratified_subset(real_root):
    d = nas.create_dataset("fashion_mnist", train_subset=2000, test_subset=500).load()
    assert d.x_train.shape == (1800, 1, 28, 28) and d.x_val.shape == (200, 1, 28, 28)
    assert d.x_test.shape == (500, 1, 28, 28) and d.num_classes == 10
    assert np.bincount(d.y_test).tolist() == [50] * 10
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0


def test_validation_is_held_out_from_train_not_test(real_root):
    d = nas.create_dataset("fashion_mnist", train_subset=1000, test_subset=100).load()
    train = {x.tobytes() for x in d.x_train}
    assert not any(x.tobytes() in train for x in d.x_val)


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(ConfigError, match="apt-get install dataset-fashion-mnist.*dataset.root"):
        nas.create_dataset("fashion_mnist", root=str(tmp_path)).load()


def test_corrupt_files_are_named(real_root, tmp_path):
    for name in FILES.values():
        shutil.copy(f"{real_root}/{name}.gz", tmp_path / f"{name}.gz")
    bad = tmp_path / f"{FILES['y_test']}.gz"
    bad.write_bytes(gzip.compress(gzip.decompress(bad.read_bytes())[:-10]))
    with pytest.raises(ConfigError, match=f"{bad}: corrupt IDX file"):
        nas.create_dataset("fashion_mnist", root=str(tmp_path)).load()
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(ConfigError, match=f"{bad}: cannot read"):
        nas.create_dataset("fashion_mnist", root=str(tmp_path)).load()


@pytest.mark.slow
def test_cli_missing_dataset_is_one_line(cli, tmp_path):
    proc = cli(
        "search",
        "+hw=cortex_m4",
        "dataset=fashion_mnist",
        f"dataset.root={tmp_path}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "dataset-fashion-mnist" in err[0] and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_search_on_fashion_mnist_subset(cli, real_root, tmp_path):
    run = tmp_path / "run"
    proc = cli(
        "search",
        "+hw=cortex_m4",
        "dataset=fashion_mnist",
        "dataset.train_subset=1500",
        "dataset.test_subset=300",
        "search.n_trials=2",
        "search.epochs=2",
        "search_space.resolutions=[14]",
        "search_space.widths=[8,16]",
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(run / "trials.csv")
    assert len(df) == 2 and (df.state == "COMPLETE").all()
    assert study_name_in(run) == "cortex_m4-mobilenet-fashion_mnist"


def study_name_in(run) -> str:
    import optuna

    return optuna.get_all_study_names(storage=f"sqlite:///{run / 'study.db'}")[0]
