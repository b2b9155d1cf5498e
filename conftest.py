"""Shared test setup.

Tests never touch the network. Tiny Shakespeare comes from MATHLLM_DATA_DIR; when it is unset and
the team's shared data folder sits beside the repository (as on the developers' machines and in CI),
it is used, so `pytest` works without extra setup there.
"""
import os
import pathlib

import matplotlib
import pytest
import torch

matplotlib.use("Agg")  # figures in unit tests are drawn off-screen (never via MPLBACKEND: it would empty the book)

ROOT = pathlib.Path(__file__).resolve().parent
_SHARED = ROOT.parent / "shared" / "data"
if not os.environ.get("MATHLLM_DATA_DIR") and (_SHARED / "tinyshakespeare.txt").is_file():
    os.environ["MATHLLM_DATA_DIR"] = str(_SHARED)


@pytest.fixture
def repo_root() -> pathlib.Path:
    return ROOT


@pytest.fixture
def shakespeare_available() -> bool:
    d = os.environ.get("MATHLLM_DATA_DIR")
    return bool(d) and (pathlib.Path(d) / "tinyshakespeare.txt").is_file()


def pytest_collection_modifyitems(config, items):
    """Every notebook cell is numerics-sensitive (trained models, fits, sampled text): mark them so
    `pytest -m numerics` runs the chapters beside the unit tests marked by hand."""
    for item in items:
        if item.nodeid.split("::")[0].endswith(".ipynb"):
            item.add_marker(pytest.mark.numerics)


@pytest.fixture(autouse=True)
def one_thread():
    """Every test runs torch on OMP_NUM_THREADS threads (one when unset), restored afterwards: the
    tests use tiny tensors, for which one thread is faster, and on a busy 2-core machine two threads
    were measured 7-20x slower. The numerics matrix sets OMP_NUM_THREADS=2 to check the other
    reduction order."""
    n = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 1))
    yield
    torch.set_num_threads(n)
