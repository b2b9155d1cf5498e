"""The kill soak (tools/kill_soak.py), short: a tiny run SIGKILLed 5 times at random moments and resumed
each time ends bitwise where an uninterrupted run ends (weights, optimizer, samples, metrics files)."""
import importlib.util
import pathlib
import sys

import pytest

TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "kill_soak.py"


@pytest.fixture(scope="module")
def kill_soak():
    sys.path.insert(0, str(TOOL.parent))  # the forkserver's children import the tool by name
    try:
        spec = importlib.util.spec_from_file_location("kill_soak", TOOL)
        module = importlib.util.module_from_spec(spec)
        sys.modules["kill_soak"] = module
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(TOOL.parent))
        sys.modules.pop("kill_soak", None)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and forkserver are POSIX")
def test_five_kills_end_where_an_uninterrupted_run_ends(tmp_path, kill_soak):
    stats = kill_soak.soak(kills=5, steps=60, workdir=tmp_path, seed=1, verbose=False)
    assert stats["parts"] == {name: True for name in stats["parts"]}, stats
    assert stats["equal"] and stats["broken_checkpoint_files"] == 0
    assert stats["kills"] + stats["finished_before_kill"] == 5 and stats["kills"] >= 3, stats
    assert stats["launches"] == 6 and stats["resumes"] >= 1, stats
