"""Run the notebooks and the numerics-sensitive tests under several rounding and seeding configurations.

A claim that holds on one CPU's rounding trajectory is not verified: CI machines, readers' laptops
and Colab round differently (AMD or Intel, AVX-512 or AVX2 kernels, MKL's code paths, one thread or
two), and MATHLLM_SEED runs every chapter on another random draw. Each configuration below runs
`pytest --nbval-lax` over the notebooks and the tests marked `numerics` (`--all-tests`: every test)
in a fresh process tree with its environment set, and a table of the results is printed at the end.

Usage:
    python tools/numerics_matrix.py                    # the matrix (every configuration but ci)
    python tools/numerics_matrix.py default seed1      # some of them
    python tools/numerics_matrix.py ci                 # what .ci/run adds: default kernels, MATHLLM_SEED=1
    python tools/numerics_matrix.py --list

Run by `make test-numerics`; documented in CONTRIBUTING.md ("The numerics matrix").
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

# name -> (environment, what it runs: "all" = notebooks and numerics tests, "notebooks" = notebooks only)
CONFIGS: dict[str, tuple[dict[str, str], str]] = {
    "native": ({}, "all"),
    "default": ({"ATEN_CPU_CAPABILITY": "default"}, "all"),
    "avx2": ({"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}, "all"),
    "threads2": ({"OMP_NUM_THREADS": "2"}, "all"),
    "seed1": ({"MATHLLM_SEED": "1"}, "all"),
    "seed2": ({"MATHLLM_SEED": "2"}, "all"),
    "seed3": ({"MATHLLM_SEED": "3"}, "notebooks"),
    "seed4": ({"MATHLLM_SEED": "4"}, "notebooks"),
    # what .ci/run adds after the README's commands: another kernel path and another draw at once
    "ci": ({"ATEN_CPU_CAPABILITY": "default", "MATHLLM_SEED": "1"}, "all"),
}
MATRIX = [name for name in CONFIGS if name != "ci"]  # `make test-numerics`
SUMMARY = re.compile(r"=+ (.*?) in ([\d.]+)s")


def command(what: str, all_tests: bool, workers: int) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", str(workers), "--dist", "loadfile",
           "--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=900", "-p", "no:randomly"]
    if what == "notebooks":
        return cmd + ["notebooks"]
    return cmd + (["tests", "notebooks"] if all_tests else ["-m", "numerics", "tests", "notebooks"])


def environment(name: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment configuration `name` runs in: `base` (default os.environ) with its settings."""
    env = {**(os.environ if base is None else base), "OMP_NUM_THREADS": "1", **CONFIGS[name][0]}
    # Each configuration compiles into its own inductor cache. With one shared cache, kernels that
    # torch.compile built under one ATEN_CPU_CAPABILITY and read back under another broke the compiled-training
    # test (tests/test_train.py; torch 2.13.0+cpu): a cache filled under avx2 aborted the native run with
    # "corrupted size vs. prev_size", and native then avx2 gave NaN losses. Each passes with its own cache.
    if name != "native":
        env["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), f"mathllm-inductor-{name}")
    return env


def run(name: str, all_tests: bool, workers: int) -> tuple[int, str, float]:
    env_extra, what = CONFIGS[name]
    env = environment(name)
    shown = " ".join(f"{k}={v}" for k, v in env_extra.items()) or "(native kernels)"
    print(f"== {name}: {shown}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(command(what, all_tests, workers), env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    tail = proc.stdout.strip().splitlines()
    failures = [line for line in tail if line.startswith(("FAILED", "ERROR"))]
    for line in failures:
        print("   ", line[:300], flush=True)
    match = next((SUMMARY.search(line) for line in reversed(tail) if SUMMARY.search(line)), None)
    summary = match.group(1) if match else (tail[-1] if tail else "no output")
    print(f"   {summary} ({seconds:.0f} s)", flush=True)
    return proc.returncode, summary, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("configs", nargs="*", metavar="CONFIG",
                        help=f"configurations to run, of {', '.join(CONFIGS)} (default: all but ci)")
    parser.add_argument("--all-tests", action="store_true", help="run every unit test, not only those marked numerics")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers")
    parser.add_argument("--list", action="store_true", help="list the configurations and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (env, what) in CONFIGS.items():
            print(f"{name:9s} {what:9s} {' '.join(f'{k}={v}' for k, v in env.items()) or '(native kernels)'}")
        return 0
    unknown = [name for name in args.configs if name not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration {', '.join(unknown)}: expected some of {', '.join(CONFIGS)}")
    names = args.configs or MATRIX
    rows = [(name, *run(name, args.all_tests, args.workers)) for name in names]
    print("\n| configuration | environment | runs | result | seconds |\n|---|---|---|---|---|")
    for name, rc, summary, seconds in rows:
        env, what = CONFIGS[name]
        shown = " ".join(f"`{k}={v}`" for k, v in env.items()) or "native kernels"
        print(f"| {name} | {shown} | {what} | {summary} | {seconds:.0f} |")
    return 0 if all(rc == 0 for _, rc, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
