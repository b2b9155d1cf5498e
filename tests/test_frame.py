"""The frame: table of contents, notebook pattern, and configuration files that must agree."""
from __future__ import annotations

import json
import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"]
BRANCH = CONFIG["repository"]["branch"]
# chapters whose full budget trains models that want a GPU: Colab opens them on a GPU runtime
GPU_CHAPTERS = {"11", "12", "13", "15", "16", "17"}


def toc_files() -> list[str]:
    """Every `file:` entry of _toc.yml (the root included), without suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def cells(nb: pathlib.Path) -> list[dict]:
    return json.loads(nb.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def test_every_notebook_is_in_the_toc_and_every_toc_entry_exists():
    listed = toc_files()
    assert len(listed) == len(set(listed)), f"duplicate entries in _toc.yml: {listed}"
    on_disk = {f"notebooks/{nb.stem}" for nb in NOTEBOOKS}
    missing = on_disk - set(listed)
    assert not missing, f"notebooks not in _toc.yml: {sorted(missing)}"
    for entry in listed:
        candidates = [ROOT / f"{entry}{ext}" for ext in (".md", ".ipynb")]
        assert any(c.is_file() for c in candidates), f"_toc.yml lists {entry!r}, which does not exist"


def test_notebooks_are_numbered_in_reading_order():
    listed = [f for f in toc_files() if f.startswith("notebooks/")]
    numbers = [int(re.match(r"notebooks/(\d+)_", f).group(1)) for f in listed]
    assert numbers[0] == 1 and all(a < b for a, b in zip(numbers, numbers[1:])), listed


def test_each_part_is_named_once_and_its_opener_lists_its_chapters():
    """The navigation shows a part's name once (its caption); the opener, titled "Overview" there,
    links to exactly the chapters the part holds, in order (a chapter moved in _toc.yml and not in
    the opener, or the reverse, fails)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    openers = 0
    for part in toc["parts"]:
        entries = part["chapters"]
        if not entries[0]["file"].startswith("book/part"):
            continue
        openers += 1
        opener = entries[0]
        assert opener.get("title") == "Overview", f"{opener['file']}: its navigation title repeats the caption"
        assert not any("sections" in e for e in entries), f"{part['caption']}: chapters must be siblings"
        text = (ROOT / f"{opener['file']}.md").read_text()
        assert text.startswith(f"# {part['caption']}\n"), f"{opener['file']} must open with '# {part['caption']}'"
        linked = re.findall(r"<\.\./(notebooks/[\w]+)>", text)
        assert linked == [e["file"] for e in entries[1:]], (opener["file"], linked)
    assert openers == 4


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_follows_the_chapter_pattern(nb):
    cs = cells(nb)
    first = source(cs[0])
    assert cs[0]["cell_type"] == "markdown" and first.startswith("# "), "first cell must be a markdown '# Title'"
    colab = (f"https://colab.research.google.com/github/{REPO_URL.removeprefix('https://github.com/')}"
             f"/blob/{BRANCH}/notebooks/{nb.name}")
    assert colab in first, f"first cell must link to {colab}"
    assert "colab-badge.svg" not in first, "the badge image is external and breaks the offline site: use a text link"
    code = [c for c in cs if c["cell_type"] == "code"]
    install = [c for c in code if '"google.colab" in sys.modules' in source(c)]
    assert install, "no install cell guarded by 'google.colab' in sys.modules"
    assert f"git+{REPO_URL}@{BRANCH}\"" in source(install[0]), \
        f"the Colab install cell must install from {REPO_URL} at {BRANCH}, the ref its Colab link opens"
    assert "print(" in source(install[0]), "the install cell says in one line what it installed"
    assert "hide-cell" in install[0]["metadata"].get("tags", []), "the Colab install cell must be tagged hide-cell"
    assert any(re.search(r"\bassert\b|assert_close", source(c)) for c in code), "the notebook asserts nothing"
    md = "\n".join(source(c) for c in cs if c["cell_type"] == "markdown")
    assert re.search(r"(?m)^## Summary", md), "no '## Summary' section"
    assert re.search(r"(?m)^## Exercises", md), "no '## Exercises' section"
    assert ":class: dropdown" in md, "exercise solutions must sit in dropdowns"
    for c in code:
        assert not c.get("outputs") and c.get("execution_count") is None, "notebooks are committed without outputs"
        assert "MPLBACKEND" not in source(c), "never set MPLBACKEND: it removes every figure from the book"
        assert "sys.path" not in source(c), "import the installed package; no sys.path hacks"


def test_no_stored_error_outputs():
    for nb in NOTEBOOKS:
        for c in cells(nb):
            errors = [o for o in c.get("outputs", []) if o.get("output_type") == "error"]
            assert not errors, f"{nb.name} stores an error output"


def _pyproject() -> dict:
    import tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirement(spec: str) -> tuple[str, str]:
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", spec)
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_yml_says_what_pyproject_says():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(_requirement(d) for d in env["dependencies"] if isinstance(d, str))
    conda["torch"] = conda.pop("pytorch")  # conda-forge names torch 'pytorch'
    project = _pyproject()["project"]
    for dep in project["dependencies"]:
        name, bound = _requirement(dep)
        assert conda.get(name) == bound, f"environment.yml has {name}{conda.get(name)}, pyproject.toml {dep}"
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    extras = set(project["optional-dependencies"])
    assert any(re.fullmatch(rf"-e \.\[{','.join(sorted(extras))}\]", p) for p in pip), \
        f"environment.yml must pip-install the package with its extras {sorted(extras)}, got {pip}"
    assert set(conda) - {"python", "pip"} == {_requirement(d)[0] for d in project["dependencies"]}


def test_torch_is_a_range_for_colab():
    deps = dict(_requirement(d) for d in _pyproject()["project"]["dependencies"])
    assert deps["torch"].startswith(">="), "torch must be a range so Colab's preinstalled torch is used"


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    commands = [line.strip() for b in blocks for line in b.splitlines()]
    for target in ("make test", "make book"):
        assert target in commands, f"README must give the command {target!r}"
        assert re.search(rf"(?m)^{target}$", ci), f".ci/run must run {target!r} exactly as the README does"
    assert "tools/check_site.py" in ci, ".ci/run must check the built site in a browser"


def test_config_renders_math_offline_and_links_to_colab():
    assert "sphinx-mathjax-offline" in CONFIG["sphinx"]["extra_extensions"]
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    # the cache is filled from scratch by `make book`, which always empties _build first
    assert CONFIG["execute"]["execute_notebooks"] == "cache"
    book = re.search(r"(?ms)^book:.*?(?=^\S|\Z)", (ROOT / "Makefile").read_text()).group(0)
    assert book.index("rm -rf _build") < book.index("prefill_cache.py") < book.index("jupyter-book build")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_gpu_chapters_open_on_a_colab_gpu(nb):
    meta = json.loads(nb.read_text())["metadata"]
    if nb.name[:2] in GPU_CHAPTERS:
        assert meta.get("accelerator") == "GPU" and meta.get("colab", {}).get("gpuType") == "T4", \
            "a chapter whose full budget wants a GPU carries Colab's accelerator metadata"
    else:
        assert "accelerator" not in meta, "a CPU chapter should not ask Colab for a GPU"


def test_every_module_is_in_the_api_reference():
    api = (ROOT / "book" / "api.md").read_text()
    documented = set(re.findall(r"automodule:: mathllm\.(\w+)", api))
    modules = {p.stem for p in (ROOT / "mathllm").glob("*.py") if p.stem != "__init__"}
    # train_config, trainer and train_log are re-exported by mathllm.train (its __all__), which the
    # API page documents; listing them too would document every name twice
    missing = modules - documented - {"train_config", "trainer", "train_log"}
    assert not missing, f"modules missing from book/api.md: {sorted(missing)}"
