"""Kill soak: SIGKILL a training run at random moments, resume it each time, and check that it ends
exactly where an uninterrupted run ends.

    python tools/kill_soak.py                  # 50 kills over a 500-step run of a tiny model (make soak)
    python tools/kill_soak.py --kills 5 --steps 60 --workdir /tmp/soak

Each launch runs ``python -m mathllm.train ... --init_from resume`` (its ``main``) in a process of its
own: forked from a forkserver that imported torch once (default), or a fresh interpreter
(``--spawn``, slower: each start imports torch). A launch is killed with SIGKILL either while it
starts up (loading and checking checkpoints, truncating the metrics files) or, more often, at a
random moment of its training (steps, evaluations, samples, checkpoint saves). After every kill
every file under a checkpoint's name must load and verify. After the last kill one launch runs to
the end, and its final checkpoint (weights, optimizer state, losses, gradient norms, random
states, data position), its best-validation checkpoint, its samples and its ``metrics.jsonl`` and
``metrics.csv`` (without the wall-clock fields) must equal those of the uninterrupted run.

Prints a JSON summary and exits 0 when everything is equal, 1 otherwise.
"""
from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMING = ("tokens_per_s", "ms_per_step", "mfu")
RUN_FIELDS = ("out_dir", "init_from", "resume")  # config fields that differ between the two runs by design


def corpus_text(n_lines: int = 400) -> str:
    rng = random.Random(0)
    words = "to be or not that is the question whether tis nobler in mind suffer slings arrows".split()
    return "".join(" ".join(rng.choice(words) for _ in range(8)) + "\n" for _ in range(n_lines))


def train_argv(corpus: pathlib.Path, out_dir: pathlib.Path, steps: int) -> list[str]:
    return ["--preset=tiny", "--dataset=file", f"--data_path={corpus}", "--device=cpu", f"--out_dir={out_dir}",
            "--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=16", "--dropout=0.1", "--batch_size=4",
            f"--max_steps={steps}", f"--warmup_steps={min(10, steps)}", f"--eval_interval={max(steps // 10, 1)}",
            "--eval_batches=2", "--log_interval=5", f"--sample_interval={max(steps // 5, 1)}", "--sample_tokens=16",
            "--ckpt_interval=5", "--keep_last=2", "--progress=false", "--log_lines=true", "--init_from=resume"]


# ---------------------------------------------------------------------------- launching
def _child(argv: list[str], log: str) -> None:
    """A launch inside a forked process: stdout and stderr to ``log``, then ``main``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    import torch
    torch.set_num_threads(1)
    from mathllm.train import main
    os._exit(main(argv))


def _noop() -> None:
    pass


class Launch:
    """One training process: ``alive()``, ``ready()`` (past its start-up), ``kill()``, ``wait()``."""

    def __init__(self, argv: list[str], log: pathlib.Path, spawn: bool, ctx):
        self.log = log
        if spawn:
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
            with open(log, "w") as f:
                self.proc = subprocess.Popen([sys.executable, "-m", "mathllm.train", *argv], stdout=f, stderr=f,
                                             env=env, cwd=ROOT)
            self.pid = self.proc.pid
        else:
            self.proc = ctx.Process(target=_child, args=(argv, str(log)))
            self.proc.start()
            self.pid = self.proc.pid

    def alive(self) -> bool:
        return (self.proc.poll() is None) if isinstance(self.proc, subprocess.Popen) else self.proc.is_alive()

    def ready(self) -> bool:
        return self.log.is_file() and "| processes " in self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)

    def wait(self) -> int:
        if isinstance(self.proc, subprocess.Popen):
            return self.proc.wait()
        self.proc.join()
        return self.proc.exitcode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else ""


# ---------------------------------------------------------------------------- comparing
def _strip(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING}


def _metrics(folder: pathlib.Path) -> tuple[list, list]:
    rows = [_strip(json.loads(line)) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    with open(folder / "metrics.csv") as f:
        table = [_strip(r) for r in csv.DictReader(f)]
    return rows, table


def _same(a, b) -> bool:
    import torch
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def compare(reference: pathlib.Path, soaked: pathlib.Path, steps: int) -> dict:
    """Which parts of the two runs' final state are equal."""
    from mathllm.checkpoint import BEST_NAME, checkpoint_path, load_checkpoint
    a, b = (load_checkpoint(checkpoint_path(d, steps)) for d in (reference, soaked))
    for s in (a, b):
        s["history"] = [_strip(r) for r in s["history"]]
        s["config"] = {k: v for k, v in s["config"].items() if k not in RUN_FIELDS}
    ma, mb = _metrics(reference), _metrics(soaked)
    best_a, best_b = (load_checkpoint(d / BEST_NAME) for d in (reference, soaked))
    samples = lambda s: [r["text"] for r in s["history"] if r["kind"] == "sample"]
    parts = {
        "losses": _same(a["losses"], b["losses"]) and len(a["losses"]) == steps,
        "weights": _same(a["model"], b["model"]),
        "optimizer": _same(a["optimizer"], b["optimizer"]),
        "random_states": _same(a["rng"], b["rng"]) and _same(a["sample_rng"], b["sample_rng"]),
        "data_position": _same(a["data"], b["data"]),
        "samples": samples(a) == samples(b) and len(samples(a)) > 0,
        "metrics_jsonl": ma[0] == mb[0],
        "metrics_csv": ma[1] == mb[1],
        "best_checkpoint": best_a["step"] == best_b["step"] and _same(best_a["model"], best_b["model"]),
        "whole_state": _same(a, b),
    }
    return parts


# ---------------------------------------------------------------------------- the soak
def soak(kills: int = 50, steps: int = 500, workdir: str | os.PathLike | None = None, seed: int = 0,
         spawn: bool = False, startup_kills: float = 0.2, verbose: bool = True) -> dict:
    """Run the reference, then ``kills`` killed launches and a final one; return the summary."""
    rng = random.Random(seed)
    work = pathlib.Path(workdir) if workdir else pathlib.Path(tempfile.mkdtemp(prefix="mathllm-soak-"))
    for name in ("reference", "soaked", "logs"):
        shutil.rmtree(work / name, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    corpus = work / "corpus.txt"
    corpus.write_text(corpus_text())
    ctx = None
    if not spawn:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["torch", "torch._dynamo", "mathllm.train", "matplotlib.figure", "tqdm.auto"])
        warm = ctx.Process(target=_noop)  # start the server (it imports torch once) before anything is timed
        warm.start()
        warm.join()
    say = print if verbose else (lambda *a, **k: None)
    t_start = time.perf_counter()

    # the uninterrupted run, timed: start-up, then training
    ref = Launch(train_argv(corpus, work / "reference", steps), work / "logs" / "reference.txt", spawn, ctx)
    t0 = time.perf_counter()
    while not ref.ready() and ref.alive():
        time.sleep(0.01)
    t_ready = time.perf_counter()
    if ref.wait() != 0:
        raise RuntimeError(f"the reference run failed:\n{ref.output()[-3000:]}")
    startup, training = t_ready - t0, time.perf_counter() - t_ready
    say(f"reference: start-up {startup:.1f} s, training {training:.1f} s")

    from mathllm.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
    stats = {"kills": 0, "kills_during_startup": 0, "launches": 0, "resumes": 0, "fresh_starts": 0,
             "finished_before_kill": 0, "temp_files_left_by_kills": 0, "broken_checkpoint_files": 0,
             "steps_at_kills": []}
    soaked = work / "soaked"
    argv = train_argv(corpus, soaked, steps)
    window = 2 * training / max(kills, 1)  # kills spread over the run: on average one every training / kills
    for i in range(kills):
        stats["temp_files_left_by_kills"] += sum(p.name.endswith(".tmp") for p in soaked.glob("*")) \
            if soaked.is_dir() else 0
        launch = Launch(argv, work / "logs" / f"launch_{i:03d}.txt", spawn, ctx)
        stats["launches"] += 1
        early = rng.random() < startup_kills
        deadline = time.perf_counter() + (rng.uniform(0, startup) if early else 10 * (startup + training))
        while time.perf_counter() < deadline and launch.alive() and (early or not launch.ready()):
            time.sleep(0.005)
        if not early:
            time.sleep(rng.uniform(0, window))
        finished = not launch.alive()
        launch.kill()
        code = launch.wait()
        out = launch.output()
        stats["resumes"] += "resumed from" in out
        stats["fresh_starts"] += "no checkpoint in" in out
        if finished and code == 0:
            stats["finished_before_kill"] += 1
        elif code not in (-signal.SIGKILL, 128 + signal.SIGKILL) and not finished:
            raise RuntimeError(f"launch {i} ended with {code} before its kill:\n{out[-3000:]}")
        elif finished and code != 0:
            raise RuntimeError(f"launch {i} failed with {code}:\n{out[-3000:]}")
        else:
            stats["kills"] += 1
            stats["kills_during_startup"] += early
        found = list_checkpoints(soaked)
        for path in found:  # the atomic-write promise: every file under a checkpoint's name is whole
            try:
                load_checkpoint(path)
            except CheckpointError:
                stats["broken_checkpoint_files"] += 1
        stats["steps_at_kills"].append(int(found[-1].name[5:13]) if found else 0)
        say(f"kill {i + 1}/{kills}: {'start-up' if early else 'training'}, newest checkpoint at step "
            f"{stats['steps_at_kills'][-1]}")

    final = Launch(argv, work / "logs" / "final.txt", spawn, ctx)
    stats["launches"] += 1
    if final.wait() != 0:
        raise RuntimeError(f"the final launch failed:\n{final.output()[-3000:]}")
    stats["resumes"] += "resumed from" in final.output()
    parts = compare(work / "reference", soaked, steps)
    stats.update(steps=steps, parts=parts, equal=all(parts.values()), workdir=str(work),
                 reference_startup_s=round(startup, 2), reference_training_s=round(training, 2),
                 wall_s=round(time.perf_counter() - t_start, 1), mode="spawn" if spawn else "forkserver")
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--kills", type=int, default=50, help="SIGKILLs before the final launch")
    p.add_argument("--steps", type=int, default=500, help="optimizer steps of the run")
    p.add_argument("--workdir", default="", help="folder for the runs (default: a new temporary folder)")
    p.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    p.add_argument("--spawn", action="store_true", help="a fresh interpreter per launch instead of a forkserver")
    args = p.parse_args(argv)
    stats = soak(args.kills, args.steps, args.workdir or None, args.seed, args.spawn)
    print(json.dumps(stats, indent=1))
    return 0 if stats["equal"] and stats["broken_checkpoint_files"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
