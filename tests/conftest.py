from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    """Under pytest-xdist (``-n``, on by default) the test processes share the CPUs: each
    one, and every command line it starts, uses its share of them (``OMP_NUM_THREADS``
    where it is not set already), so that they do not contend for the same cores."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        share = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ.setdefault("OMP_NUM_THREADS", str(share))
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``python -m nas <args>`` in a subprocess, the way a user runs it."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "nas", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or REPO,
        timeout=timeout,
    )


def need_tools(tools: tuple[str, ...], packages: str) -> None:
    """Skip when a compiler or simulator is missing, or fail under NAS_REQUIRE_SIMULATORS=1
    (CI installs them all)."""
    import shutil

    absent = [t for t in tools if shutil.which(t) is None]
    if absent:
        if os.environ.get("NAS_REQUIRE_SIMULATORS") == "1":
            pytest.fail(f"NAS_REQUIRE_SIMULATORS=1 but {', '.join(absent)} not found")
        pytest.skip(f"{', '.join(absent)} not found (apt-get install {packages})")


def random_bn(module):  # noqa: ANN001, ANN201 - a torch module, returned
    """``module`` in eval mode with non-trivial batch-norm statistics (random, from torch's
    generator), as after training: folding them into the convolutions is then tested."""
    from torch import nn

    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return module.eval()


def run_firmware(folder: Path, arm: bool = True) -> str:
    """``make -C folder run`` (a trial's firmware project) must succeed, print the class
    the Python int8 model gives for its sample and, on Cortex-M (``arm``), 0 input bytes
    differing from the Python preprocessing; its output, colour codes removed."""
    import re

    proc = subprocess.run(["make", "-C", str(folder), "run"], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    assert proc.returncode == 0, text[-3000:]
    if arm:
        assert "input bytes differing from the Python preprocessing: 0" in text, text[-2000:]
    m = re.search(r"class (\d+) \(expected (\d+), label (\d+)\)", text)
    assert m and m.group(1) == m.group(2), text[-2000:]
    return text


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def real_root():
    """Where the Debian package ``dataset-fashion-mnist`` put the IDX files."""
    from nas_dataset_fashion_mnist import DEFAULT_ROOT, FILES

    if not all(os.path.isfile(f"{DEFAULT_ROOT}/{name}.gz") for name in FILES.values()):
        if os.environ.get("NAS_REQUIRE_DATASETS") == "1":
            pytest.fail(f"Fashion-MNIST files missing under {DEFAULT_ROOT}")
        pytest.skip("apt-get install dataset-fashion-mnist to run this test")
    return DEFAULT_ROOT


@pytest.fixture
def postgres_url():
    """A PostgreSQL URL for the multi-worker tests (``.ci/run`` starts the server)."""
    url = os.environ.get("NAS_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("NAS_REQUIRE_POSTGRES") == "1":
            pytest.fail("NAS_TEST_POSTGRES_URL is not set but NAS_REQUIRE_POSTGRES=1")
        pytest.skip("no PostgreSQL server (set NAS_TEST_POSTGRES_URL; .ci/run starts one)")
    return url


def _default_sigint() -> None:
    # A shell that runs the suite as a background job ignores SIGINT in its children, and
    # Python then installs no KeyboardInterrupt handler: give the CLI a terminal's Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``python -m nas <args>`` started in the background, Ctrl-C (SIGINT) handled as in a
    terminal however the test run itself was started."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "nas", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=REPO,
        preexec_fn=_default_sigint,
    )


#: Fixtures that run the command line or a search: a test that uses one is end-to-end.
END_TO_END_FIXTURES = {"cli"}


def pytest_collection_modifyitems(config, items):
    """Every end-to-end test carries the ``slow`` mark, so ``-m "not slow"`` stays fast."""
    unmarked = [
        item.nodeid
        for item in items
        if END_TO_END_FIXTURES & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("slow") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "end-to-end tests (they use the cli fixture) must be marked @pytest.mark.slow: "
            + ", ".join(unmarked)
        )
