"""The mutation catalogue of ``tools/mutants.py`` is well formed against the current tree.

No mutant is run here (``make mutants`` does that, for hours): these checks catch a catalogue entry
whose snippet no longer matches the code it mutates (STALE) as soon as that code changes.
"""
import collections
import importlib.util
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load_tool():
    spec = importlib.util.spec_from_file_location("mathllm_mutants_tool", ROOT / "tools" / "mutants.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


tool = _load_tool()
CATALOGUE = tool.CATALOGUE
CHAPTERS = [f"{n:02d}" for n in range(1, 18)]


def test_catalogue_size_and_spread():
    assert len(CATALOGUE) >= 60
    per_chapter = collections.Counter(m.chapter for m in CATALOGUE)
    assert set(per_chapter) <= set(CHAPTERS), f"unknown chapters: {set(per_chapter) - set(CHAPTERS)}"
    thin = {ch: per_chapter[ch] for ch in CHAPTERS if per_chapter[ch] < 3}
    assert not thin, f"chapters with fewer than 3 mutants: {thin}"


def test_names_unique():
    dup = [n for n, c in collections.Counter(m.name for m in CATALOGUE).items() if c > 1]
    assert not dup


@pytest.mark.parametrize("m", CATALOGUE, ids=lambda m: m.name)
def test_snippet_matches_exactly_once(m):
    """STALE if not: the module changed; re-target the entry in tools/mutants_catalogue.py."""
    reason = tool.stale_reason(m, ROOT)
    assert reason is None, f"STALE {m.name}: {reason}"


@pytest.mark.parametrize("m", CATALOGUE, ids=lambda m: m.name)
def test_mutant_is_well_formed(m):
    assert m.module.startswith("mathllm/") and m.module.endswith(".py")
    assert tool.chapter_notebook(m.chapter, ROOT)  # exactly one notebooks/NN_*.ipynb
    assert m.tests, "tag the unit tests that guard the concept"
    for t in m.tests:
        assert (ROOT / t.split("::")[0]).is_file(), f"{t} does not exist"
    assert m.description.strip() and "\n" not in m.description
    # the mutant is a bug in the meaning, not in the syntax: the mutated module still compiles
    src = (ROOT / m.module).read_text(encoding="utf-8")
    if src.count(m.old) == 1:
        mutated = src.replace(m.old, m.new)
        assert mutated != src
        compile(mutated, m.module, "exec")


def test_check_catalogue_reports_nothing():
    assert tool.check_catalogue(CATALOGUE, ROOT) == []


def test_apply_and_stale_detection(tmp_path):
    (tmp_path / "mathllm").mkdir()
    (tmp_path / "mathllm" / "m.py").write_text("def f(x):\n    return x / 2\n\ndef g(x):\n    return x + 1\n")
    Mutant = type(CATALOGUE[0])
    ok = Mutant("m.half", "01", "mathllm/m.py", "return x / 2", "return x * 2", ("tests/x.py",), "d")
    twice = Mutant("m.ret", "01", "mathllm/m.py", "return x", "return -x", ("tests/x.py",), "d")
    gone = Mutant("m.gone", "01", "mathllm/m.py", "return x ** 2", "return x", ("tests/x.py",), "d")
    assert tool.stale_reason(ok, tmp_path) is None
    assert "2 times" in tool.stale_reason(twice, tmp_path)
    assert "0 times" in tool.stale_reason(gone, tmp_path)
    tool.apply(ok, tmp_path)
    assert "return x * 2" in (tmp_path / "mathllm" / "m.py").read_text()
    with pytest.raises(RuntimeError, match="STALE"):
        tool.apply(ok, tmp_path)  # applied already: the snippet is gone


def test_copies_leave_out_venv_and_build():
    files = tool.repo_files(ROOT)
    assert "mathllm/__init__.py" in files and "tools/mutants_catalogue.py" in files
    assert not [f for f in files if f.split("/")[0] in (".venv", "_build", ".git")]
