"""Mutation testing of the book: does each chapter (and each unit test) catch a realistic bug?

For every mutant of ``tools/mutants_catalogue.py`` (an exact replacement of one snippet of one
module of ``mathllm/``) this copies the repository to a temporary folder, applies the replacement
and runs, with the copy's package imported (``PYTHONPATH`` = the copy, working directory = the copy):

(a) the chapter that teaches the concept under nbval:
    ``pytest -q -x --nbval-lax --nbval-current-env notebooks/NN_name.ipynb``;
(b) the unit tests that guard it: ``pytest -q -x <test files or node ids>``.

A run that fails (or times out) has *caught* the mutant; one that passes let it *survive*: some
claim of the book or the tests is not checked. The repository is snapshotted once at the start
(git-tracked and untracked-but-not-ignored files, as they are in the working tree; never ``.venv``
or ``_build``), so edits made while it runs do not mix into the copies.

An unmutated baseline runs first: unit tests that fail without any mutant are deselected in the
mutant runs (and reported), and a chapter that fails without any mutant is reported as broken and
its mutants are not run through it.

A catalogue entry whose ``old`` snippet no longer occurs exactly once in its module is STALE: it is
reported loudly, not run, and the tool exits with status 1.

Usage (``make mutants`` runs the whole catalogue; hours on two cores)::

    python tools/mutants.py --list                 # the catalogue and its staleness
    python tools/mutants.py --tests-only -j 2      # unit tests only (minutes)
    python tools/mutants.py --chapter 06           # one chapter's mutants, chapter and tests
    python tools/mutants.py --mutant lora. --notebooks-only --json out.json
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from mutants_catalogue import CATALOGUE, Mutant  # noqa: E402

EXCLUDED_DIRS = (".venv", "_build", ".git")
CAUGHT, SURVIVED, TIMEOUT, ERROR, BROKEN, SKIPPED = "caught", "survived", "timeout", "error", "broken", "-"


# ---------------------------------------------------------------------------- the catalogue
def chapter_notebook(chapter: str, root: pathlib.Path = ROOT) -> str:
    """``"06"`` -> ``"notebooks/06_optimization.ipynb"`` (relative to ``root``); exactly one must exist."""
    hits = sorted((root / "notebooks").glob(f"{chapter}_*.ipynb"))
    if len(hits) != 1:
        raise ValueError(f"chapter {chapter!r}: expected one notebook notebooks/{chapter}_*.ipynb, found {len(hits)}")
    return hits[0].relative_to(root).as_posix()


def stale_reason(m: Mutant, root: pathlib.Path = ROOT) -> str | None:
    """Why ``m`` cannot be applied to the tree at ``root`` (None if its snippet occurs exactly once)."""
    path = root / m.module
    if not path.is_file():
        return f"{m.module} does not exist"
    n = path.read_text(encoding="utf-8").count(m.old)
    if n != 1:
        return f"the snippet occurs {n} times in {m.module} (must be exactly once)"
    if m.old == m.new:
        return "old and new are the same"
    return None


def check_catalogue(mutants=CATALOGUE, root: pathlib.Path = ROOT) -> list[str]:
    """Every problem of the catalogue against the tree at ``root``: stale snippets, missing notebooks
    or test paths, duplicate names. Empty when the catalogue is well formed."""
    problems, seen = [], set()
    for m in mutants:
        if m.name in seen:
            problems.append(f"{m.name}: duplicate name")
        seen.add(m.name)
        reason = stale_reason(m, root)
        if reason:
            problems.append(f"{m.name}: STALE: {reason}")
        try:
            chapter_notebook(m.chapter, root)
        except ValueError as e:
            problems.append(f"{m.name}: {e}")
        if not m.tests:
            problems.append(f"{m.name}: no unit tests tagged")
        for t in m.tests:
            if not (root / t.split("::")[0]).is_file():
                problems.append(f"{m.name}: test path {t} does not exist")
        if not m.description.strip() or "\n" in m.description:
            problems.append(f"{m.name}: the description must be one line")
    return problems


# ---------------------------------------------------------------------------- copies of the tree
def repo_files(root: pathlib.Path = ROOT) -> list[str]:
    """Tracked and untracked-but-not-ignored files that exist in the working tree, minus .venv and _build."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         check=True, capture_output=True).stdout.decode()
    files = []
    for f in sorted(set(filter(None, out.split("\0")))):
        if f.split("/")[0] in EXCLUDED_DIRS:
            continue
        if (root / f).is_file() or (root / f).is_symlink():
            files.append(f)
    return files


def snapshot(root: pathlib.Path, dest: pathlib.Path) -> int:
    """Copy the working-tree version of every repository file to ``dest``; returns the number of files."""
    files = repo_files(root)
    for f in files:
        target = dest / f
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / f, target, follow_symlinks=True)
    return len(files)


def apply(m: Mutant, copy: pathlib.Path) -> None:
    path = copy / m.module
    src = path.read_text(encoding="utf-8")
    if src.count(m.old) != 1:
        raise RuntimeError(f"{m.name}: STALE in the copy")
    path.write_text(src.replace(m.old, m.new), encoding="utf-8")


def environment(copy: pathlib.Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(copy)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    shared = ROOT.parent / "shared" / "data"   # what conftest.py finds beside the real checkout
    if not env.get("MATHLLM_DATA_DIR") and (shared / "tinyshakespeare.txt").is_file():
        env["MATHLLM_DATA_DIR"] = str(shared)
    return env


def check_import(copy: pathlib.Path) -> None:
    """Fail loudly unless ``import mathllm`` in the copy's environment imports the copy (not the editable install)."""
    out = subprocess.run([sys.executable, "-c", "import mathllm; print(mathllm.__file__)"], cwd=copy,
                         env=environment(copy), capture_output=True, text=True, timeout=120)
    where = pathlib.Path(out.stdout.strip() or "?").resolve()
    if out.returncode or copy.resolve() not in where.parents:
        raise RuntimeError(f"the copy at {copy} imports mathllm from {where} ({out.stderr.strip()[-300:]})")


# ---------------------------------------------------------------------------- running pytest
@dataclass
class Run:
    status: str = SKIPPED      # caught, survived, timeout, error, broken (baseline fails) or "-" (not run)
    seconds: float = 0.0
    detail: str = ""           # the first failing test, or why it is an error


def _first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line[:200]
    for line in reversed(output.splitlines()):
        if re.search(r"Error|error|Exception", line):
            return line.strip()[:200]
    return ""


def run_pytest(args: list[str], copy: pathlib.Path, timeout: float) -> tuple[Run, str]:
    """``python -m pytest args`` in ``copy``; the process group is killed on timeout."""
    cmd = [sys.executable, "-m", "pytest", *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=copy, env=environment(copy), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return Run(TIMEOUT, time.perf_counter() - t0, f"no result after {timeout:.0f} s"), output
    dt = time.perf_counter() - t0
    rc = proc.returncode
    if rc == 0:
        return Run(SURVIVED, dt), output
    if rc in (1, 2, 3):  # failures, interrupted (a collection error: the mutant broke an import), internal error
        return Run(CAUGHT, dt, _first_failure(output) or f"pytest exit status {rc}"), output
    return Run(ERROR, dt, f"pytest exit status {rc}: {_first_failure(output)}"), output


def unit_test_args(m: Mutant, deselect: list[str]) -> list[str]:
    args = ["-q", "-x", "-rfE", "--no-header"]
    for d in deselect:
        if d.split("::")[0] in {t.split("::")[0] for t in m.tests}:
            args += ["--deselect", d]
    return args + list(m.tests)


def notebook_args(chapter: str) -> list[str]:
    return ["-q", "-x", "--nbval-lax", "--nbval-current-env", "--no-header", chapter_notebook(chapter)]


# ---------------------------------------------------------------------------- the driver
@dataclass
class Result:
    name: str
    chapter: str
    module: str
    description: str
    tests: Run = field(default_factory=Run)
    notebook: Run = field(default_factory=Run)


class Printer:
    def __init__(self, total: int):
        self.total, self.done, self.lock = total, 0, threading.Lock()

    def result(self, r: Result) -> None:
        with self.lock:
            self.done += 1
            print(f"[{self.done:3d}/{self.total}] ch{r.chapter} {r.name:<48} tests: {_fmt(r.tests):<22} "
                  f"chapter: {_fmt(r.notebook)}", flush=True)
            for label, run in (("tests", r.tests), ("chapter", r.notebook)):
                if run.detail:
                    print(f"        {label}: {run.detail}", flush=True)

    @staticmethod
    def say(text: str) -> None:
        print(text, flush=True)


def _fmt(run: Run) -> str:
    return run.status if run.status == SKIPPED else f"{run.status} ({run.seconds:.0f}s)"


def baseline(work: pathlib.Path, snap: pathlib.Path, mutants: list[Mutant], do_tests: bool, do_notebooks: bool,
             timeout: float, jobs: int) -> tuple[list[str], dict[str, Run]]:
    """The unmutated runs: failing unit tests (node ids) and each chapter's result."""
    failing: list[str] = []
    chapters: dict[str, Run] = {}
    tasks = []
    if do_tests:
        files = sorted({t.split("::")[0] for m in mutants for t in m.tests})
        tasks.append(("tests", files))
    if do_notebooks:
        tasks += [("chapter", ch) for ch in sorted({m.chapter for m in mutants})]

    def one(task):
        kind, what = task
        copy = work / f"baseline-{kind}-{what if kind == 'chapter' else 'all'}"
        shutil.copytree(snap, copy, symlinks=True)
        try:
            if kind == "tests":
                run, out = run_pytest(["-q", "-rfE", "--no-header", *what], copy, timeout * 4)
                ids = [line.split()[1] for line in out.splitlines() if line.startswith(("FAILED ", "ERROR "))]
                return kind, what, run, ids
            run, _ = run_pytest(notebook_args(what), copy, timeout)
            return kind, what, run, []
        finally:
            shutil.rmtree(copy, ignore_errors=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for kind, what, run, ids in pool.map(one, tasks):
            if kind == "tests":
                failing = ids
                Printer.say(f"baseline unit tests: {len(what)} files, {'pass' if run.status == SURVIVED else run.status}"
                            f" ({run.seconds:.0f}s)" + (f"; failing without any mutant (deselected): "
                                                        f"{', '.join(ids)}" if ids else ""))
                if run.status not in (SURVIVED, CAUGHT):
                    Printer.say(f"baseline unit tests did not finish: {run.status} {run.detail}")
            else:
                chapters[what] = run
                ok = run.status == SURVIVED
                Printer.say(f"baseline chapter {what}: {'pass' if ok else 'FAILS WITHOUT ANY MUTANT'} "
                            f"({run.seconds:.0f}s){'' if ok else ': ' + run.detail}")
    return failing, chapters


def _log(logs: pathlib.Path | None, name: str, output: str) -> None:
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        (logs / f"{name}.log").write_text(output)


def run_mutant(m: Mutant, work: pathlib.Path, snap: pathlib.Path, do_tests: bool, do_notebooks: bool,
               timeout: float, deselect: list[str], broken_chapters: set[str], keep: bool,
               logs: pathlib.Path | None = None) -> Result:
    r = Result(m.name, m.chapter, m.module, m.description)
    copy = work / m.name
    shutil.copytree(snap, copy, symlinks=True)
    try:
        apply(m, copy)
        if do_tests:
            args = unit_test_args(m, deselect)
            r.tests, out = run_pytest(args, copy, timeout)
            _log(logs, f"{m.name}.tests", out)
            n_out = args.count("--deselect")
            if n_out and r.tests.status == SURVIVED:  # the guarding tests may be among those left out
                r.tests.detail = f"with {n_out} test(s) deselected that fail without any mutant"
        if do_notebooks:
            if m.chapter in broken_chapters:
                r.notebook = Run(BROKEN, 0.0, "the chapter fails without any mutant")
            else:
                r.notebook, out = run_pytest(notebook_args(m.chapter), copy, timeout)
                _log(logs, f"{m.name}.chapter", out)
    except Exception as e:  # noqa: BLE001 - reported as the mutant's error, the others go on
        if do_tests and r.tests.status == SKIPPED:
            r.tests = Run(ERROR, 0.0, repr(e)[:200])
        if do_notebooks and r.notebook.status == SKIPPED:
            r.notebook = Run(ERROR, 0.0, repr(e)[:200])
    finally:
        if not keep:
            shutil.rmtree(copy, ignore_errors=True)
    return r


def summary(results: list[Result], do_tests: bool, do_notebooks: bool) -> None:
    say = Printer.say
    kinds = [k for k, on in (("tests", do_tests), ("notebook", do_notebooks)) if on]

    def count(rs, kind, statuses):
        return sum(getattr(r, kind).status in statuses for r in rs)

    say("\n==== totals")
    for kind in kinds:
        label = "unit tests" if kind == "tests" else "chapters  "
        caught = count(results, kind, (CAUGHT, TIMEOUT))
        surv = count(results, kind, (SURVIVED,))
        other = len(results) - caught - surv
        say(f"{label}: caught {caught}, survived {surv}" + (f", not judged {other} (error/broken)" if other else "")
            + (f"  -> {100 * caught / (caught + surv):.0f}% caught" if caught + surv else ""))
    say("\n==== per chapter")
    head = f"{'ch':<4}{'mutants':>8}"
    for kind in kinds:
        head += f"  {'tests c/s' if kind == 'tests' else 'chapter c/s':>12}"
    say(head + "   survivors")
    for ch in sorted({r.chapter for r in results}):
        rs = [r for r in results if r.chapter == ch]
        line = f"{ch:<4}{len(rs):>8}"
        for kind in kinds:
            line += f"  {count(rs, kind, (CAUGHT, TIMEOUT)):>6}/{count(rs, kind, (SURVIVED,)):<5}"
        surv = [f"{r.name}[{'+'.join(k[0] for k in kinds if getattr(r, k).status == SURVIVED)}]"
                for r in rs if any(getattr(r, k).status == SURVIVED for k in kinds)]
        say(line + "   " + ", ".join(surv))
    for kind in kinds:
        rs = [r for r in results if getattr(r, kind).status == SURVIVED]
        if rs:
            say(f"\n==== survived the {'unit tests' if kind == 'tests' else 'chapter'} ({len(rs)})")
            for r in rs:
                note = getattr(r, kind).detail
                say(f"  ch{r.chapter} {r.name}: {r.description}" + (f"  [{note}]" if note else ""))
    bad = [r for r in results for k in kinds if getattr(r, k).status in (ERROR,)]
    if bad:
        say("\n==== errors (not judged)")
        for r in bad:
            say(f"  {r.name}: {r.tests.detail or r.notebook.detail}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chapter", action="append", default=[],
                   help="run only this chapter's mutants (NN; repeat or comma-separate for several)")
    p.add_argument("--mutant", action="append", default=[], help="run only mutants whose name contains this")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--tests-only", action="store_true", help="skip the chapters (unit tests only)")
    what.add_argument("--notebooks-only", action="store_true", help="skip the unit tests (chapters only)")
    p.add_argument("--list", action="store_true", help="print the catalogue and its staleness, run nothing")
    p.add_argument("-j", "--jobs", type=int, default=1, help="mutants run at the same time (default 1)")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="seconds for one pytest run (a chapter or a mutant's tests); a timeout counts as caught")
    p.add_argument("--no-baseline", action="store_true", help="skip the unmutated baseline runs")
    p.add_argument("--json", type=pathlib.Path, help="write the results to this JSON file")
    p.add_argument("--keep", action="store_true", help="keep the temporary copies (for debugging)")
    p.add_argument("--logs", type=pathlib.Path, help="write each run's pytest output to this folder")
    a = p.parse_args(argv)

    chapters = {c.strip().zfill(2) for arg in a.chapter for c in arg.split(",") if c.strip()}
    mutants = [m for m in CATALOGUE if (not chapters or m.chapter in chapters)
               and (not a.mutant or any(s in m.name for s in a.mutant))]
    if chapters - {m.chapter for m in CATALOGUE}:
        p.error(f"no mutants for chapter(s) {', '.join(sorted(chapters - {m.chapter for m in CATALOGUE}))}")
    if not mutants:
        p.error("no mutant matches the selection")
    do_tests, do_notebooks = not a.notebooks_only, not a.tests_only

    work = pathlib.Path(tempfile.mkdtemp(prefix="mathllm-mutants-"))
    snap = work / "snapshot"
    try:
        n_files = snapshot(ROOT, snap)
        stale = {m.name: r for m in mutants if (r := stale_reason(m, snap))}
        if a.list:
            for m in mutants:
                tag = f"STALE ({stale[m.name]})" if m.name in stale else "ok"
                Printer.say(f"ch{m.chapter} {m.name:<48} {tag}\n      {m.description}\n      {m.module}; "
                            f"tests: {' '.join(m.tests)}")
            Printer.say(f"{len(mutants)} mutants, {len(stale)} stale")
        if stale:
            Printer.say("\n" + "!" * 78)
            for name, reason in stale.items():
                Printer.say(f"STALE {name}: {reason}")
            Printer.say("!" * 78 + "\nthese entries no longer match the code: re-target them in tools/mutants_catalogue.py\n")
        if a.list:
            return 1 if stale else 0
        runnable = [m for m in mutants if m.name not in stale]
        Printer.say(f"{len(runnable)} mutants ({len(stale)} stale skipped); snapshot of {n_files} files in {work}; "
                    f"{'unit tests' if do_tests else ''}{' and ' if do_tests and do_notebooks else ''}"
                    f"{'chapters' if do_notebooks else ''}; {a.jobs} job(s), timeout {a.timeout:.0f} s")
        check_import(snap)
        deselect, broken = [], set()
        if not a.no_baseline and runnable:
            deselect, base_ch = baseline(work, snap, runnable, do_tests, do_notebooks, a.timeout, a.jobs)
            broken = {ch for ch, run in base_ch.items() if run.status != SURVIVED}
        printer = Printer(len(runnable))
        t0 = time.perf_counter()
        results: list[Result] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
            futures = [pool.submit(run_mutant, m, work, snap, do_tests, do_notebooks, a.timeout, deselect, broken,
                                   a.keep, a.logs) for m in runnable]
            for f in concurrent.futures.as_completed(futures):
                results.append(f.result())
                printer.result(results[-1])
        order = {m.name: i for i, m in enumerate(CATALOGUE)}
        results.sort(key=lambda r: order[r.name])
        summary(results, do_tests, do_notebooks)
        Printer.say(f"\n{len(results)} mutants in {time.perf_counter() - t0:.0f} s")
        if a.json:
            a.json.write_text(json.dumps({"stale": stale, "deselected": deselect, "broken_chapters": sorted(broken),
                                          "results": [asdict(r) for r in results]}, indent=1))
        if stale:
            Printer.say(f"STALE: {len(stale)} catalogue entries no longer match the code: {', '.join(stale)}")
        errors = [r.name for r in results if ERROR in (r.tests.status, r.notebook.status)]
        return 1 if stale or errors else 0
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
