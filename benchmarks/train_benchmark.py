"""Training throughput: tokens/s, milliseconds per step, MFU and the final validation loss.

Runs the trainer of ``mathllm.train`` for a number of steps with any preset and overrides (the
same options as ``python -m mathllm.train``) and reports:

- the median time per optimizer step and tokens/s = tokens per step / that median;
- MFU = FLOPs per token x tokens/s / peak FLOP/s, with FLOPs per token = 6 N + 12 L T C
  (``mathllm.transformer.flops_per_token``: N the matmul weights, PaLM appendix B), for a GPU
  whose peak is known or a ``--peak_tflops`` you give;
- the validation loss at the last step (on ``--eval_batches`` fixed batches, and on 200).

With ``--nanogpt_dir DIR`` it also runs nanoGPT's own ``train.py`` from DIR (a checkout of
karpathy/nanoGPT with ``data/shakespeare_char`` prepared; it is not part of this repository)
with the same model, optimizer and schedule, alternating ``--rounds`` runs of each so that both
see the same load, and prints the medians and their ratio. Each run is a fresh process. The
default preset is ``shakespeare_cpu``, the CPU model of nanoGPT's README with a tuned learning rate.

Examples (the first two are the CPU comparison of benchmarks/README.md)::

    python benchmarks/train_benchmark.py --device cpu --nanogpt_dir /tmp/nanogpt --rounds 3
    python benchmarks/train_benchmark.py --device cpu --nanogpt_dir /tmp/nanogpt --lr 1e-3 --min_lr 1e-4
    python benchmarks/train_benchmark.py --preset gpt2_small --synthetic --steps 50 --batch_size 16 --grad_accum 1
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULT_PRESET = "shakespeare_cpu"  # the CPU comparison of benchmarks/README.md
# nanoGPT's README command for a CPU: its shakespeare_char config shrunk to 4 layers of 128, fp32, eager
NANOGPT_ARGS = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--log_interval=1",
                "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--dropout=0.0"]


def nanogpt_args(config) -> list[str]:
    """nanoGPT's command line for the optimizer and schedule of a TrainConfig (the model is NANOGPT_ARGS')."""
    from mathllm.train import PRESETS
    cpu = PRESETS[DEFAULT_PRESET]()
    for name, want, got in (("model", cpu.model, config.model), ("batch_size", 12, config.batch_size),
                            ("grad_accum", 1, config.grad_accum), ("seed", 1337, config.seed)):
        if got != want:
            raise ValueError(f"the nanoGPT comparison is for the CPU model of nanoGPT's README (4 layers of 128, "
                             f"context 64, batch 12, no dropout, no biases, nanoGPT's seed 1337): {name} must be "
                             f"{want}, got {got}")
    return [*NANOGPT_ARGS, f"--learning_rate={config.lr}", f"--min_lr={config.min_lr}",
            f"--warmup_iters={config.warmup_steps}", f"--lr_decay_iters={config.decay_steps_resolved}",
            f"--weight_decay={config.weight_decay}", f"--beta2={config.beta2}", f"--grad_clip={config.grad_clip}",
            f"--eval_interval={config.eval_interval}", f"--eval_iters={config.eval_batches}"]


def bench_config(argv: list[str], steps: int | None = None):
    """The TrainConfig of the benchmark: DEFAULT_PRESET unless argv names one, then argv's overrides."""
    from mathllm.train import parse_config
    preset_given = any(a.startswith("--preset") for a in argv)
    config, _ = parse_config(argv if preset_given else [f"--preset={DEFAULT_PRESET}", *argv])
    # a shorter run keeps the preset's schedule (the cosine still ends at the preset's last step)
    return dataclasses.replace(config, out_dir="", progress=False, max_steps=steps or config.max_steps,
                               decay_steps=config.decay_steps_resolved)


def run_ours(argv: list[str], steps: int | None, synthetic: bool) -> dict:
    """Train in this process; time every step (one synchronisation per step on a GPU)."""
    from dataclasses import replace

    import torch

    from mathllm.data import TokenData
    from mathllm.train import Trainer, peak_flops
    config = bench_config(argv, steps)
    out = tempfile.mkdtemp(prefix="mathllm-bench-")
    config = replace(config, data_dir=config.data_dir or os.path.join(out, "data"))
    data = None
    if synthetic:  # uniform random ids: the speed does not depend on the text
        g = torch.Generator().manual_seed(0)
        V = config.model.vocab_size
        data = TokenData.write(os.path.join(out, "synthetic"), torch.randint(V, (2_000_000,), generator=g).tolist(),
                               torch.randint(V, (200_000,), generator=g).tolist(), vocab_size=V, source="synthetic")
    trainer = Trainer(config, data)
    cuda = trainer.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times = []
    for _ in range(config.max_steps):
        if config.eval_interval and trainer.step % config.eval_interval == 0:
            trainer.evaluate()  # nanoGPT's schedule: every eval_interval steps, from step 0
        sync()
        t = time.perf_counter()
        trainer.train_step()
        if trainer.step % config.log_interval == 0:
            trainer._flush()
        sync()
        times.append(time.perf_counter() - t)
    trainer._flush()
    final = trainer.evaluate() if config.eval_interval else None
    ms = 1000 * statistics.median(times[5:] if len(times) > 10 else times)
    tps = trainer.tokens_per_step / (ms / 1000)
    fpt = trainer.model.flops_per_token()
    peak = peak_flops(trainer.device, config.peak_tflops)
    result = {"who": "mathllm", "device": str(trainer.device), "dtype": str(trainer.dtype).replace("torch.", ""),
              "compiled": trainer.compiled, "steps": config.max_steps, "ms_per_step": ms, "tokens_per_s": tps,
              "flops_per_token": fpt, "mfu": None if not peak else fpt * tps / peak,
              "params": trainer.model.num_params(), "tokens_per_step": trainer.tokens_per_step,
              "torch_threads": torch.get_num_threads(), "last_loss": trainer.losses[-1]}
    if final is not None:
        result["val_loss"] = final["val_loss"]
        trainer.config, trainer._eval_data = replace(trainer.config, eval_batches=200), None
        result["val_loss_200"] = trainer.evaluate()["val_loss"]  # a finer estimate of the same quantity
    return result


def run_nanogpt(directory: str, config) -> dict:
    """nanoGPT's train.py as its README runs it on a CPU, with ``config``'s optimizer and schedule."""
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "train.py", *nanogpt_args(config), f"--max_iters={config.max_steps}",
                           f"--out_dir={tempfile.mkdtemp()}"],
                          cwd=directory, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode:
        raise RuntimeError(f"nanoGPT failed:\n{done.stderr[-3000:]}")
    times = [float(m) for m in re.findall(r"^iter \d+: loss [\d.]+, time ([\d.]+)ms", done.stdout, re.M)]
    val = re.findall(r"^step (\d+): train loss [\d.]+, val loss ([\d.]+)", done.stdout, re.M)
    ms = statistics.median(times[5:])
    return {"who": "nanoGPT", "ms_per_step": ms, "tokens_per_s": 12 * 64 / (ms / 1000), "wall_s": wall,
            "val_loss": float(val[-1][1]), "steps": int(val[-1][0])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the config's max_steps)")
    p.add_argument("--nanogpt_dir", default=None, help="a nanoGPT checkout to compare with (CPU config only)")
    p.add_argument("--rounds", type=int, default=1, help="alternating runs of each trainer")
    p.add_argument("--synthetic", action="store_true", help="train on uniform random token ids (speed only)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help="also write the results to this file")
    args, rest = p.parse_known_args()
    if args.worker:
        print("RESULT " + json.dumps(run_ours(rest, args.steps, args.synthetic)))
        return
    config = bench_config(rest, args.steps)  # also checks the options before the first run
    if args.nanogpt_dir:
        nanogpt_args(config)
    results = []
    for r in range(args.rounds):
        order = ["ours", "nano"] if r % 2 == 0 else ["nano", "ours"]
        for who in order:
            if who == "nano" and not args.nanogpt_dir:
                continue
            if who == "nano":
                res = run_nanogpt(args.nanogpt_dir, config)
            else:
                cmd = [sys.executable, __file__, "--worker", *(["--steps", str(args.steps)] if args.steps else []),
                       *(["--synthetic"] if args.synthetic else []), *rest]
                t = time.perf_counter()
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode:
                    raise RuntimeError(f"mathllm run failed:\n{done.stderr[-3000:]}")
                res = json.loads(done.stdout.split("RESULT ", 1)[1])
                res["wall_s"] = time.perf_counter() - t  # the whole process, as for nanoGPT
            res["round"] = r
            results.append(res)
            print(json.dumps(res), flush=True)
    for who in ("mathllm", "nanoGPT"):
        rows = [x for x in results if x["who"] == who]
        if rows:
            ms = statistics.median(x["ms_per_step"] for x in rows)
            tps = statistics.median(x["tokens_per_s"] for x in rows)
            wall = statistics.median(x["wall_s"] for x in rows)
            vals = ", ".join(f"{x['val_loss']:.4f}" for x in rows if "val_loss" in x)
            print(f"{who:8s} median of {len(rows)} runs: {ms:.2f} ms/step, {tps:,.0f} tokens/s, wall {wall:.0f} s; "
                  f"val loss {vals}")
    ours = [x["ms_per_step"] for x in results if x["who"] == "mathllm"]
    nano = [x["ms_per_step"] for x in results if x["who"] == "nanoGPT"]
    if ours and nano:
        print(f"throughput ratio mathllm / nanoGPT = {statistics.median(nano) / statistics.median(ours):.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
