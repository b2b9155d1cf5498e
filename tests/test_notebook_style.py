"""Chapter code on the page: within the text column, formatted alike, setup collapsed (issue 16).

The book's text column holds about 80 characters of code; wider lines make readers scroll sideways.
`notebooks/ruff.toml` sets the width; `ruff format` wraps code and comments and strings are wrapped by
hand until `ruff check` is clean. Each chapter's setup cell (imports and the runtime line) is tagged
`hide-input`, so a chapter opens with its introduction and the runtime's one-line description.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


def _ruff(*args: str) -> subprocess.CompletedProcess:
    if RUFF is None:
        pytest.fail("ruff is not installed: it is in the [test] extra (pip install -e '.[test]')")
    return subprocess.run([RUFF, *args], cwd=ROOT, capture_output=True, text=True)


def test_the_width_is_80_columns():
    assert "line-length = 80" in (ROOT / "notebooks" / "ruff.toml").read_text()


def test_chapter_code_fits_the_text_column():
    result = _ruff("check", "--no-cache", "--output-format", "concise", "notebooks")
    assert result.returncode == 0, "lines over 80 characters:\n" + result.stdout[-4000:]


def test_chapter_code_is_formatted():
    result = _ruff("format", "--no-cache", "--check", "notebooks")
    assert result.returncode == 0, "run `ruff format notebooks/NN_name.ipynb`:\n" + result.stdout[-4000:]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_setup_cell_is_collapsed(nb):
    code = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    setup = code[1]   # after the Colab install cell
    assert "runtime" in "".join(setup["source"]), "the second code cell is the setup (runtime) cell"
    assert "hide-input" in setup["metadata"].get("tags", []), "tag the setup cell hide-input"
