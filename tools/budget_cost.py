"""What each chapter's full budget costs: FLOPs, and the time they take on a Colab T4 and on 2 CPU cores.

Every chapter reads its sizes through ``runtime.pick(small=..., full=...)``. This tool holds a
catalogue, one entry per chapter, of what the FULL budget computes (models trained, tokens seen,
sampling, matrix work), each size written as the literal ``pick(...)`` call of the notebook, so that
``tests/test_budget_cost.py`` fails when a chapter changes a size and the table has not followed.
FLOPs of a GPT come from the package's own counter, :func:`mathllm.transformer.flops_per_token`
(6 N + 12 L T C per token trained, Kaplan et al. 2020 and PaLM appendix B; a forward pass is a
third of it), never from a copy of the formula.

Time = FLOPs / throughput + steps x per-step latency. The second term matters for the small models of
this book: an eager training step of a model with 0.1M parameters launches hundreds of kernels whose
cost does not depend on the arithmetic. The throughputs (``ASSUMPTIONS``) are stated with their
source; the CPU ones were measured here with ``--measure`` on 2 shared cores under load (load
average about 9 on 2 cores), so the CPU times are upper bounds. No GPU was lent when the table was made:
the T4 column is an estimate from the FLOP count, not a measurement.

Work that stays on the host CPU whatever the device (NumPy, float64 checks, Python loops, BPE
training, processes of the parallel chapter) is marked ``on="host"``: on Colab it runs on the VM's
2 vCPUs, which we take to be as fast as the 2 cores here.

    python tools/budget_cost.py            # the table (Markdown), as pasted in book/status.md
    python tools/budget_cost.py --detail   # every workload of every chapter
    python tools/budget_cost.py --measure  # re-measure the CPU throughput and latencies on this machine

Book: book/status.md, section "What the full budget costs".
"""
from __future__ import annotations

import argparse
import ast
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mathllm.train_config import PRESETS, TrainConfig  # noqa: E402
from mathllm.trainer import PEAK_FLOPS  # noqa: E402
from mathllm.transformer import GPTConfig, flops_per_token  # noqa: E402

# ---------------------------------------------------------------------------- assumptions
TINY_SHAKESPEARE_CHARS = 1_115_394   # len(load_text("tinyshakespeare")); one token per character
CPU_LIMIT_S = 15 * 60                # issue 13 item 6: full budgets that fit in 15 minutes on 2 CPU cores

ASSUMPTIONS = {
    # Colab's T4: 65 TFLOP/s fp16 on tensor cores (NVIDIA T4 datasheet; mathllm.trainer.PEAK_FLOPS["T4"]),
    # 8.1 TFLOP/s fp32. The runtime trains in fp16 autocast on a T4 (runtime.autocast_dtype).
    "t4_peak_fp16": PEAK_FLOPS["T4"],
    "t4_peak_fp32": 8.1e12,
    # Utilisation for fp16 autocast training of small GPTs (C <= 384, T <= 256): 30%. nanoGPT's
    # shakespeare_char model reaches about 30-40% MFU on an A100 with torch.compile; a T4 runs at a
    # 70 W cap with a lower clock under sustained load, and at C = 64-128 the matmuls are too thin
    # to fill its 40 SMs. We take 30%, the middle of the 25-35% range.
    "t4_utilisation": 0.30,
    # Eager PyTorch on a GPU is launch-bound for these models: a training step of a 2-6 layer GPT
    # (forward, backward, AdamW, clipping) launches 300-600 kernels at 5-10 us each (CUDA launch latency):
    # 5 ms a step. A forward pass, or one generated token, is a third of that.
    "t4_step_s": 5e-3,
    # One iteration of a Python loop of a few small tensor operations (a sampler, an optimizer on a
    # toy problem): --measure times 5 operations and an .item() on 8 numbers, 50 us here (1 thread,
    # load about 9 on 2 cores); on a GPU such a loop costs about as much, so it is charged alike.
    "op_s": 50e-6,
    # CPU, as measured here: a shakespeare_cpu-sized GPT (4 layers, C = 128, T = 64, batch 12) forward +
    # backward + AdamW in fp32, FLOPs by flops_per_token, best of 8 steps: 15 GFLOP/s with 1 thread
    # (2026-12-03, load average 9-11 on 2 cores shared by seven engineers; 2 threads gave 2 GFLOP/s at that
    # load, the threads waiting for each other). An upper bound on time: a quiet machine is faster.
    # Checked: single steps of chapter 16's and 15's models took 0.34 and 3.2 s at that load (estimates 0.29
    # and 3.0 s); chapter 16's small budget at load 12-13 took 63 and 88 s in its two training cells
    # (estimates 38 and 58 s: 1.5 times, the load being heavier).
    "cpu_flops": 15e9,
    # CPU, quiet: the same model on the same kind of machine with 2 threads, by the trainer
    # (benchmarks/README.md, "CPU: the nanoGPT comparison": 5.16 MFLOPs x 22,844 tokens/s = 118 GFLOP/s).
    "cpu_flops_quiet": 118e9,
    # CPU: the same step of GPTConfig.tiny at batch 1, where the arithmetic is negligible: the latency
    # floor, 3 ms here (--measure). The tour's step (a gradient and three Hessian-vector products on one
    # sentence) took 12 ms here: 4 such units. Kept in both CPU columns, so the quiet column is still high.
    "cpu_step_s": 3e-3,
}

# seconds to start p gloo processes and run one ring all-reduce of 10,000 numbers (parallel.launch),
# measured here with 1 thread at load 9 (2026-12-03): process start-up (a fresh interpreter importing
# torch each) dominates, so this is host time in every budget
LAUNCH_S = {2: 12.7, 3: 25.1, 4: 29.5}


def t4_throughput() -> float:
    return ASSUMPTIONS["t4_peak_fp16"] * ASSUMPTIONS["t4_utilisation"]


# ---------------------------------------------------------------------------- the catalogue's vocabulary
@dataclass(frozen=True)
class Size:
    """One ``runtime.pick(...)`` call of a notebook, written as it stands there; ``full`` is its full value.

    ``env`` holds the names a non-literal ``full=`` expression reads (``len(text)``, a config built above).
    """

    name: str
    call: str
    env: dict = field(default_factory=dict, compare=False, hash=False)

    def value(self, budget: str = "full"):
        """The value the call returns in ``budget`` ("full" or "small")."""
        call = ast.parse(self.call, mode="eval").body
        node = next(k.value for k in call.keywords if k.arg == budget)
        try:
            return ast.literal_eval(node)
        except ValueError:
            return eval(compile(ast.Expression(node), "<pick>", "eval"), {"GPTConfig": GPTConfig, **self.env})

    @property
    def full(self):
        return self.value("full")


@dataclass(frozen=True)
class Workload:
    """What the full budget computes in one part of a chapter.

    ``flops``: arithmetic; ``steps``: sequential training steps (or forward passes / generated tokens
    counted as a third of one) that pay the per-step latency; ``ops``: light Python-loop iterations;
    ``host_s``: seconds of host work that FLOPs do not describe (pure-Python BPE, process start-up),
    from a measurement cited in ``how``; ``on``: "device" when it moves to the GPU with the budget, "host"
    when it stays on the CPU.
    """

    what: str
    how: str
    flops: float = 0.0
    steps: float = 0.0
    ops: float = 0.0
    host_s: float = 0.0
    on: str = "device"

    def cpu_seconds(self, quiet: bool = False) -> float:
        a = ASSUMPTIONS
        rate = a["cpu_flops_quiet"] if quiet else a["cpu_flops"]
        return self.flops / rate + self.steps * a["cpu_step_s"] + self.ops * a["op_s"] + self.host_s

    def t4_seconds(self) -> float:
        if self.on == "host":
            return self.cpu_seconds(quiet=True)  # Colab's 2 vCPUs, a VM to itself
        a = ASSUMPTIONS
        return self.flops / t4_throughput() + self.steps * a["t4_step_s"] + self.ops * a["op_s"] + self.host_s


def gpt_training(what: str, cfg: GPTConfig, steps: int, batch: int, *, eval_tokens: int = 0,
                 forwards: int = 0, copies: int = 1) -> Workload:
    """``steps`` optimizer steps of ``GPT(cfg)`` on ``batch`` rows of ``cfg.block_size`` tokens, plus
    ``eval_tokens`` tokens through the forward pass only (a third of the training FLOPs per token) in
    ``forwards`` forward calls; ``copies`` stacks of that size (an encoder-decoder is two)."""
    tokens = steps * batch * cfg.block_size
    flops = copies * flops_per_token(cfg) * (tokens + eval_tokens / 3)
    how = f"{copies} x " if copies > 1 else ""
    how += f"C={cfg.n_embd} L={cfg.n_layer} T={cfg.block_size} V={cfg.vocab_size}: "
    how += f"flops_per_token {flops_per_token(cfg):,} x ({steps:,} steps x {batch} x {cfg.block_size} = {tokens:,} tokens"
    how += f" + {eval_tokens:,} evaluated / 3)" if eval_tokens else ")"
    return Workload(what, how, flops=flops, steps=steps + forwards / 3)


def trainer_run(what: str, config: TrainConfig, *, vocab_size: int = 65, final_eval: bool = False) -> Workload:
    """A :class:`mathllm.train.Trainer` run of ``config``: its steps and its evaluations on both splits
    (at step 0, every ``eval_interval`` steps and at the last; or once at the end when ``final_eval``)."""
    cfg = replace(config.model, vocab_size=vocab_size) if config.vocab_from_data else config.model
    batch = config.batch_size * config.grad_accum
    if config.eval_interval:
        n_evals = 1 + math.ceil(config.max_steps / config.eval_interval)
    else:
        n_evals = 1 if final_eval else 0
    forwards = n_evals * 2 * config.eval_batches
    return gpt_training(what, cfg, config.max_steps, batch,
                        eval_tokens=forwards * config.batch_size * cfg.block_size, forwards=forwards)


def generation(what: str, cfg: GPTConfig, new_tokens: int, *, rows: int = 1) -> Workload:
    """``new_tokens`` tokens sampled with the KV cache: about one forward token each at full context."""
    flops = flops_per_token(cfg) / 3 * new_tokens * rows
    return Workload(what, f"flops_per_token / 3 x {new_tokens:,} tokens x {rows} rows", flops=flops,
                    steps=new_tokens / 3)


@dataclass(frozen=True)
class Chapter:
    notebook: str
    sizes: tuple[Size, ...]
    workloads: object            # callable: {name: full value} -> list[Workload]

    def full(self) -> dict:
        return {s.name: s.full for s in self.sizes}

    def work(self, budget: str = "full") -> list[Workload]:
        """The workloads of ``budget``; "small" is for calibration: the same formulas at the small sizes,
        to hold against a measured small-budget run (whose fixed cost they leave out)."""
        return self.workloads({s.name: s.value(budget) for s in self.sizes})

    def flops(self) -> float:
        return sum(w.flops for w in self.work())

    def cpu_seconds(self, quiet: bool = False) -> float:
        return sum(w.cpu_seconds(quiet) for w in self.work())

    def t4_seconds(self) -> float:
        return sum(w.t4_seconds() for w in self.work())


def P(name: str, call: str, **env) -> Size:
    return Size(name, call, env)


# ---------------------------------------------------------------------------- the chapters
def _ch01(s):
    n = s["steps"]
    # two descents (1/sharpness and fixed step) of n steps; each step one gradient and sharpness() with
    # 3 power iterations (20 at the first), each a Hessian-vector product: 12 ms a step measured here, 4 units
    return [Workload("gradient descent with the sharpness at every step", "2 runs x steps x 4 latency units (measured)",
                     steps=2 * n * 4, on="host")]


def _ch02(s):
    n, nw, it = s["n_cond"], s["n_w"], s["iters"]
    return [
        Workload("condition numbers: 17 matrices, QR x 2, solve, inverse (float64)",
                 "17 x 6 x 2 n^3", flops=17 * 6 * 2 * n**3, ops=17 * 10, on="host"),
        Workload("gradient descent on 3 quadratics", f"3 x {s['steps']:,} steps of a 30 x 30 matvec",
                 flops=3 * s["steps"] * 2 * 30**2, ops=3 * (s["steps"] + 200) * 3, on="host"),
        Workload("singular values of two n_w x n_w matrices (float64)", "2 x 10 n_w^3 (bidiagonalisation and QR)",
                 flops=2 * 10 * nw**3, ops=2 * nw, on="host"),
        Workload("CP-ALS: ranks 1..5, 3 starts each, on a 20^3 tensor", "15 runs x iters x 3 modes x (2 x 20^3 R + R^3)",
                 flops=sum(3 * it * 3 * (2 * 20**3 * R + R**3) for R in range(1, 6)), ops=15 * it * 3 * 5,
                 on="host"),
    ]


def _ch03(s):
    n, npath, R, nlong = s["N_SAMPLES"], s["N_path"], s["R"], s["n_long"]
    draws = sum(s["train_sizes"]) + s["held"]
    return [
        Workload("samples of each distribution", "about 10 distributions x N_SAMPLES x ~20 operations",
                 flops=10 * n * 20, ops=200, on="host"),
        Workload("law of large numbers and CLT", "5 N_path + R x (1 + 4 + 32 + 256) draws, ~20 operations each",
                 flops=20 * (5 * npath + R * (1 + 4 + 32 + 256)), on="host"),
        Workload("Markov source: 3 samples of n_long, n-grams on train_sizes + held",
                 "Python sampler: an op per 100 symbols",
                 flops=50 * (3 * nlong + draws), ops=(3 * nlong + draws * 4) / 100, on="host"),
        Workload(f"character n-grams n = 1..{s['n_range'] - 1} on the corpus, 3 smoothings",
                 "3 x (n_range - 1) fits and held-out scores of 1.1M characters, an op per 1000 characters",
                 flops=3 * (s["n_range"] - 1) * TINY_SHAKESPEARE_CHARS * 50,
                 ops=3 * (s["n_range"] - 1) * TINY_SHAKESPEARE_CHARS / 1000, on="host"),
        Workload("categorical draws", "n_draws x ~20 operations", flops=20 * s["n_draws"], on="host"),
    ]


def _ch04(s):
    T = s["T_steps"]
    # 20 RNN chains of T steps through mathllm's array autograd (tensor_autograd.rnn_states): per step 4 nodes
    # (W h, U x, +, tanh) of 32-vectors forward and 4 backward, NumPy calls of ~10 us: 2 op units a step
    return [Workload("backprop through time on 20 RNN chains (mathllm's array engine)",
                     "20 chains x T steps x 2 op units",
                     ops=20 * T * 2, on="host")]


def _ch05(s):
    return [
        Workload("three robust line fits with Adam", "3 x steps", ops=3 * s["steps"] * 8, on="host"),
        Workload("label smoothing: 2 x steps of Adam on 10 logits", "2 x steps", ops=2 * s["steps_ls"] * 8, on="host"),
        Workload("bias-variance: R least-squares fits per degree 0..14", "15 x R x (20 x 15^2 x 2)",
                 flops=15 * s["R"] * 20 * 15**2 * 2, ops=15 * 20, on="host"),
    ]


def _ch06(s):
    return [
        Workload("gradient noise: draws per batch size", "draws x (1+4+16+64+256) x 10 x 4",
                 flops=s["draws"] * 341 * 40, ops=5 * 4, on="host"),
        Workload("SGD at batch 4 and 64", "2 x sgd_steps (each also evaluates the full loss, 2000 x 10)",
                 flops=2 * s["sgd_steps"] * 2 * 2000 * 10 * 2, ops=2 * s["sgd_steps"] * 10, on="host"),
        Workload("optimizer step timings: 4 implementations, 1.6M parameters", "4 x reps x 1.6M x ~20 operations",
                 flops=4 * s["reps"] * 1.6e6 * 20, ops=4 * s["reps"] * 48, on="host"),
        # calibrated: this cell took 39 s in the small budget (IT = 2000) at load 12-13, 11 op units an
        # iteration; an upper bound, as the runs that stop at the tolerance are counted whole
        Workload("12 methods on three problems, up to IT iterations each",
                 "3 problems x 12 IT iterations (9 methods up to IT, annealing 2 IT, the evolution strategy IT/4 "
                 "steps of 20 evaluations ~ IT) x 11 op units (measured in the small budget)",
                 ops=3 * 12 * s["IT"] * 11, on="host"),
    ]


def _ch07(s):
    mlp_flops = lambda sizes, rows: 6 * rows * sum(a * b for a, b in zip(sizes, sizes[1:]))  # noqa: E731
    return [
        Workload("spiral MLP, scratch engine and torch", "2 x steps x 64 rows, 2-32-32-3",
                 flops=2 * mlp_flops((2, 32, 32, 3), 64) * s["steps"], ops=2 * s["steps"] * 15, on="host"),
        Workload("activation variances: 6 schemes, 50 layers of width x width, 256 inputs (float64)",
                 "6 x 50 x 2 x 256 x width^2", flops=6 * 50 * 2 * 256 * s["width"]**2, ops=6 * 50 * 3, on="host"),
        Workload("dropout and weight decay runs, scratch and torch", "4 x steps",
                 flops=4 * s["steps_drop"] * mlp_flops((2, 32, 32, 3), 64),
                 ops=4 * s["steps_drop"] * 15, on="host"),
        Workload("three 2-128-128-3 MLPs for n_chunks x 300 steps",
                 "3 x 300 n_chunks steps of 60 rows, + 2000-point tests",
                 flops=3 * 300 * s["n_chunks"] * mlp_flops((2, 128, 128, 3), 60), ops=3 * 300 * s["n_chunks"] * 15,
                 on="host"),
        Workload("MC dropout: n_masks passes of 200 points", "n_masks x 200 rows",
                 flops=s["n_masks"] * mlp_flops((2, 128, 128, 3), 200) / 3,
                 ops=s["n_masks"] * 8, on="host"),
    ]


def _ch08(s):
    # pure-Python BPE: not FLOPs. benchmarks/README.md ("Tokenizer"): the incremental trainer learns 4096
    # tokens on the whole corpus in 1.8 s; the naive trainer, 244 merges on 130 KB, in 5.4 s. Merges past
    # 4096 are cheaper (rarer pairs), so 8192 costs at most twice 4096; the naive trainer's time is
    # proportional to the text, times 300/244 merges.
    return [
        Workload("BPE training to VOCAB (ours and Hugging Face's)", "2 x 1.8 s x VOCAB / 4096 (benchmarks/README.md)",
                 host_s=2 * 1.8 * s["VOCAB"] / 4096, on="host"),
        Workload("naive trainer timed on NAIVE_CHARS", "5.4 s x NAIVE_CHARS / 130,000 x 300 / 244",
                 host_s=5.4 * s["NAIVE_CHARS"] / 130_000 * 300 / 244, on="host"),
        Workload("encoding the held-out text at each of 13 vocabularies", "13 x 0.11 MB at 2 MB/s",
                 host_s=13 * 0.11 / 2, on="host"),
    ]


def _ch09(s):
    # the only size: the text the character tokenizer is trained on (a set of characters); the rest of the
    # chapter works on fixed small tensors in every budget
    return [Workload("character tokenizer trained on the first `text` characters", "one op unit per 10,000 characters",
                     ops=s["text"] / 10_000, on="host")]


def _ch10(s):
    ts_cost, ts_eff = s["Ts_cost"], s["Ts_eff"]
    return [
        Workload("dot-product scaling: n_samples x 5 dimensions", "n_samples x sum(dims) x 2 x 3 (float64)",
                 flops=s["n_samples"] * (4 + 16 + 64 + 256 + 1024) * 6, on="host"),
        Workload("KV cache against recomputation for n_steps", "n_steps^3 C x 4 x 2 (C = 32, counted twice)",
                 flops=2 * s["n_steps"]**3 * 32 * 4 * 2, ops=4 * s["n_steps"] * 10, on="host"),
        Workload("attention cost for each T in Ts_cost (best of 5 timings)", "5 x 2 heads x 4 T^2 x 32",
                 flops=sum(6 * 2 * 4 * T**2 * 32 for T in ts_cost), ops=len(ts_cost) * 20, on="host"),
        Workload("Performer features: omega rows", "omega x 4 x (3 + 5) x 6", flops=s["omega"] * 4 * 8 * 6, on="host"),
        Workload("five efficient attentions for each T in Ts_eff (best of 5, dense and blockwise are T^2)",
                 "6 x 2 x (4 T^2 x 16 + 3 T x 64 x 16)",
                 flops=sum(6 * 2 * (4 * T**2 * 16 + 3 * T * 64 * 16) for T in ts_eff),
                 ops=len(ts_eff) * 5 * 30, on="host"),
    ]


def _ch11(s):
    char = GPTConfig(vocab_size=65, block_size=64, n_layer=6, n_head=4, n_embd=64)
    seq = GPTConfig(vocab_size=12, block_size=10, n_layer=2, n_head=4, n_embd=64)  # each stack of the encoder-decoder
    return [
        gpt_training("character GPT, pre-norm and post-norm, + post-norm with warm-up", char, 3 * s["steps_norm"], 16),
        generation("sampling n_new tokens, with and without the cache", char, 2 * s["n_new"]),
        gpt_training("encoder-decoder reversing digits (two 2-layer stacks)", seq, s["ed_steps"], 64, copies=2),
        Workload("tokenizing n_chars", "one op per 1000 characters", ops=s["n_chars"] / 1000, on="host"),
    ]


def _ch12(s):
    markov = TrainConfig(model=GPTConfig.tiny(block_size=16, n_embd=48), batch_size=64, max_steps=s["max_steps"],
                         lr=1e-2, min_lr=1e-3, warmup_steps=20, eval_interval=s["eval_interval"], eval_batches=10,
                         log_interval=50, out_dir="")
    return [
        Workload("Markov source: markov_tokens symbols", "Python sampler, an op per 100", ops=s["markov_tokens"] / 100,
                 on="host"),
        trainer_run("GPT on the order-2 Markov source (V = 8)", markov, vocab_size=8),
        trainer_run("the shakespeare_char preset (nanoGPT's): 10.7M parameters", s["config"]),
        generation("a 300-character sample", replace(s["config"].model, vocab_size=65), 300),
        Workload("small fixed runs: accumulation, optimizers, dtypes, resume (same in every budget)",
                 "about 120 steps of GPTConfig.tiny", steps=120, on="device"),
    ]


def _ch13(s):
    base = GPTConfig(block_size=32, n_layer=2, n_head=2, n_embd=32)
    runs = [(w, st) for w in s["WIDTHS"] for st in s["STEPS"]]
    runs += [(s["WIDTHS"][1], s["STEPS"][1])] * 2                       # two more seeds of one point
    runs += list(s["HOLDOUT"])                                          # the held-out predictions
    out = []
    for w, st in runs:
        cfg = replace(base, n_embd=w)
        out.append(gpt_training(f"width {w}, {st} steps", cfg, st, 16, eval_tokens=2 * 25 * 16 * 32, forwards=50))
    flops = sum(w.flops for w in out)
    steps = sum(w.steps for w in out)
    return [Workload(f"{len(runs)} training runs: the {len(s['WIDTHS'])} x {len(s['STEPS'])} sweep, 2 repeats, "
                     f"{len(s['HOLDOUT'])} held-out runs",
                     "; ".join(f"C={w} {st}" for w, st in runs) + " (batch 16 x 32, L = 2, eval 2 x 25 batches)",
                     flops=flops, steps=steps)]


def _ch14(s):
    return [Workload("ring all-reduce launched with p processes for each p", "LAUNCH_S[p] (measured) for each p",
                     host_s=sum(LAUNCH_S.get(p, 7.4 * p) for p in s["p"]), on="host")]


def _ch15(s):
    m, b = s["MODEL"], s["BATCH"]
    ev = s["EVAL_BATCHES"] * b * m.block_size                           # one mean_loss over fixed batches
    pre = TrainConfig(model=m, batch_size=b, max_steps=s["PRETRAIN_STEPS"], lr=3e-3, min_lr=3e-4, warmup_steps=20,
                      weight_decay=0.1, eval_interval=0, out_dir="")
    rows = replace(m, block_size=23)                                    # one question per row: 23 positions
    n_runs = s["SEEDS"] * sum(len(r) for r in s["RATES"].values())      # the sweep: both methods, every rate and seed
    per_run = ev + 100 * 23                                             # Shakespeare loss + the test answers' loss
    gpt2 = GPTConfig.gpt2_small(block_size=16)                          # BPE questions of about 16 tokens
    return [
        trainer_run("pre-training the base model", pre),
        gpt_training(f"the sweep: {n_runs} fine-tuning runs of FT_STEPS steps, 32 questions each, and their evaluations",
                     rows, n_runs * s["FT_STEPS"], 32, eval_tokens=n_runs * per_run,
                     forwards=n_runs * (s["EVAL_BATCHES"] + 1)),
        generation("greedy answers to 100 test questions, once per run (batched)", rows, (n_runs + 2) * 7, rows=100),
        gpt_training("truncated updates: 6 ranks x the test answers' loss", rows, 0, 1, eval_tokens=6 * 100 * 23,
                     forwards=6),
        gpt_training("GPT-2 small with rank-8 adapters: 100 steps of 16 questions (GPU)", gpt2, 100, 16,
                     eval_tokens=2 * 100 * 16, forwards=2),
    ]


def _ch16(s):
    char = TrainConfig(model=GPTConfig(block_size=64, n_layer=3, n_head=4, n_embd=64), out_dir="",
                       batch_size=s["batch_size"], max_steps=s["CHAR_STEPS"], eval_interval=0, eval_batches=8)
    ind = TrainConfig(model=GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=4, n_embd=64, positions="rope"),
                      out_dir="", batch_size=32, max_steps=s["INDUCTION_STEPS"], eval_interval=0)
    return [
        trainer_run("character GPT (3 layers, C = 64)", char, final_eval=True),
        trainer_run("attention-only model on repeated segments (its MLPs zeroed, still computed)", ind, vocab_size=64),
        Workload("analysis on the CPU (traces, patching, probes): the same in every budget",
                 "about 400 forward passes of the two models", steps=400 / 3, on="host"),
    ]


def _ch17(s):
    W = s["WIDTH"]
    char = GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=W)
    bpe = GPTConfig(vocab_size=512, block_size=32, n_layer=2, n_head=4, n_embd=W)
    val = TINY_SHAKESPEARE_CHARS // 10
    return [
        gpt_training("character GPT", char, s["STEPS"], 32, eval_tokens=2 * 25 * 32 * 64, forwards=50),
        gpt_training("BPE GPT (V = 512, T = 32)", bpe, s["STEPS"], 32, eval_tokens=2 * 25 * 32 * 32, forwards=50),
        gpt_training("per-token losses on the held-out text, both models", char, 0, 1, eval_tokens=2 * val * 64 // 32,
                     forwards=2 * val // 32 // 256),
        Workload("block bootstraps: 6 block lengths + resampling + comparison, N_BOOT replicates of 110k losses",
                 "8 x N_BOOT x 110k gathers and sums", flops=8 * s["N_BOOT"] * 111_539 * 2, ops=8 * s["N_BOOT"],
                 on="host"),
        Workload("coverage: COVERAGE_RUNS Markov texts, 400 bootstraps each", "runs x (2000-symbol sample + 400 x 2000)",
                 flops=s["COVERAGE_RUNS"] * 400 * 2000 * 2, ops=s["COVERAGE_RUNS"] * (20 + 400), on="host"),
        generation("a sample of n characters", char, s["n_sample"]),
        Workload("DeepFool on N_ATTACKS contexts, 3 random directions each (line searches)",
                 "per context ~5 DeepFool steps on 10 rows (forward + backward), ~30 forwards to shrink, 3 x 44 "
                 "line-search forwards: ~60 step latencies, ~230 forward rows of 64 tokens",
                 steps=s["N_ATTACKS"] * 60, flops=s["N_ATTACKS"] * (50 + 230 / 3) * flops_per_token(char) * 64),
        gpt_training("exact substitution margins: T x V forward passes of T tokens for n_brute contexts",
                     char, 0, 1, eval_tokens=s["n_brute"] * 64 * 65 * 64, forwards=s["n_brute"] * 64 * 65 // 512),
        gpt_training("seed study: SEEDS character GPTs of SEED_STEPS steps, each evaluated on the held-out text",
                     char, s["SEEDS"] * s["SEED_STEPS"], 32, eval_tokens=s["SEEDS"] * val * 64 // 32,
                     forwards=s["SEEDS"] * val // 32 // 64),
    ]


CHAPTERS = {
    "01": Chapter("01_tour.ipynb", (P("steps", "runtime.pick(small=200, full=2000)"),), _ch01),
    "02": Chapter("02_linear_algebra.ipynb", (
        P("n_cond", "runtime.pick(small=40, full=120)"),
        P("steps", "runtime.pick(small=300, full=1000)"),
        P("n_w", "runtime.pick(small=512, full=1024)"),
        P("iters", "runtime.pick(small=40, full=200)")), _ch02),
    "03": Chapter("03_probability.ipynb", (
        P("N_SAMPLES", "runtime.pick(small=200_000, full=2_000_000)"),
        P("N_path", "runtime.pick(small=100_000, full=1_000_000)"),
        P("R", "runtime.pick(small=20_000, full=100_000)"),
        P("n_long", "runtime.pick(small=200_000, full=2_000_000)"),
        P("train_sizes", "runtime.pick(small=[1_000, 5_000, 25_000, 125_000], full=[1_000, 10_000, 100_000, 1_000_000])"),
        P("held", "runtime.pick(small=50_000, full=500_000)"),
        P("n_range", "runtime.pick(small=7, full=9)"),
        P("n_draws", "runtime.pick(small=200_000, full=2_000_000)")), _ch03),
    "04": Chapter("04_calculus_autodiff.ipynb", (P("T_steps", "runtime.pick(small=60, full=200)"),), _ch04),
    "05": Chapter("05_loss_functions.ipynb", (
        P("steps", "runtime.pick(small=600, full=3000)"),
        P("steps_ls", "runtime.pick(small=800, full=4000)"),
        P("R", "runtime.pick(small=400, full=4000)")), _ch05),
    "06": Chapter("06_optimization.ipynb", (
        P("draws", "runtime.pick(small=2000, full=20000)"),
        P("sgd_steps", "runtime.pick(small=600, full=3000)"),
        P("reps", "runtime.pick(small=10, full=50)"),
        P("IT", "runtime.pick(small=2000, full=20000)")), _ch06),
    "07": Chapter("07_neural_networks.ipynb", (
        P("n_points", "runtime.pick(small=600, full=3000)"),
        P("steps", "runtime.pick(small=600, full=3000)"),
        P("width", "runtime.pick(small=256, full=1024)"),
        P("steps_drop", "runtime.pick(small=100, full=500)"),
        P("steps_wd", "runtime.pick(small=100, full=500)"),
        P("n_chunks", "runtime.pick(small=10, full=30)"),
        P("n_masks", "runtime.pick(small=300, full=2000)")), _ch07),
    "08": Chapter("08_tokenization.ipynb", (
        P("VOCAB", "runtime.pick(small=4096, full=8192)"),
        P("NAIVE_CHARS", "runtime.pick(small=20_000, full=130_000)")), _ch08),
    "09": Chapter("09_embeddings.ipynb", (P("text", "runtime.pick(small=20_000, full=200_000)"),), _ch09),
    "10": Chapter("10_attention.ipynb", (
        P("n_samples", "runtime.pick(small=4000, full=40000)"),
        P("n_steps", "runtime.pick(small=32, full=256)"),
        P("Ts_cost", "runtime.pick(small=[256, 512, 1024, 2048], full=[256, 512, 1024, 2048, 4096])"),
        P("omega", "runtime.pick(small=200_000, full=2_000_000)"),
        P("Ts_eff", "runtime.pick(small=[256, 512, 1024, 2048], full=[512, 1024, 2048, 4096, 8192])")), _ch10),
    "11": Chapter("11_transformer.ipynb", (
        P("n_chars", "runtime.pick(small=300_000, full=len(text))", len=len, text="x" * TINY_SHAKESPEARE_CHARS),
        P("steps_norm", "runtime.pick(small=100, full=600)"),
        P("n_new", "runtime.pick(small=150, full=600)"),
        P("ed_steps", "runtime.pick(small=300, full=2000)")), _ch11),
    "12": Chapter("12_training.ipynb", (
        P("markov_tokens", "runtime.pick(small=200_000, full=1_000_000)"),
        P("max_steps", "runtime.pick(small=300, full=3000)"),
        P("eval_interval", "runtime.pick(small=50, full=250)"),
        P("kl_bound", "runtime.pick(small=0.08, full=0.02)"),          # a tolerance, not a cost
        P("gap_bound", "runtime.pick(small=0.12, full=0.04)"),         # a tolerance, not a cost
        P("config", "runtime.pick(small=small, full=full)",
          full=replace(PRESETS["shakespeare_char"](), out_dir="", sample_interval=0),
          small=TrainConfig(model=GPTConfig(n_layer=2, n_head=4, n_embd=64, block_size=64, bias=False), batch_size=16,
                            max_steps=1000, lr=5e-3, min_lr=5e-4, warmup_steps=50, eval_interval=100, eval_batches=10,
                            log_interval=25, out_dir="")),
        P("context_gain", "runtime.pick(small=1.0, full=1.6)")), _ch12),   # a tolerance, not a cost
    "13": Chapter("13_scaling_laws.ipynb", (
        P("WIDTHS", "runtime.pick(small=[8, 16, 32, 48], full=[32, 64, 128, 256])"),
        P("STEPS", "runtime.pick(small=[250, 500, 1000], full=[250, 500, 1000])"),
        P("HOLDOUT", "runtime.pick(small=[(64, 1000), (48, 1500)], full=[(384, 1000), (256, 1500)])")), _ch13),
    "14": Chapter("14_parallel_training.ipynb", (P("p", "runtime.pick(small=(2, 3), full=(2, 3, 4))"),), _ch14),
    "15": Chapter("15_fine_tuning.ipynb", (
        P("MODEL", "runtime.pick(small=GPTConfig(block_size=64, n_layer=2, n_head=4, n_embd=64), "
                   "full=GPTConfig(block_size=128, n_layer=4, n_head=4, n_embd=128))"),
        P("BATCH", "runtime.pick(small=32, full=64)"),
        P("PRETRAIN_STEPS", "runtime.pick(small=400, full=3000)"),
        P("EVAL_BATCHES", "runtime.pick(small=8, full=32)"),
        P("FT_STEPS", "runtime.pick(small=100, full=400)"),
        P("RATES", "runtime.pick(small={'full': (1e-3, 3e-3, 1e-2, 3e-2), 'LoRA': (3e-3, 1e-2, 3e-2)}, "
                   "full={'full': (3e-4, 1e-3, 3e-3, 1e-2, 3e-2), 'LoRA': (1e-3, 3e-3, 1e-2, 3e-2)})"),
        P("SEEDS", "runtime.pick(small=2, full=3)"),
        P("gain_bound", "runtime.pick(small=0.8, full=0.5)")), _ch15),   # a tolerance, not a cost
    "16": Chapter("16_interpretability.ipynb", (
        P("CHAR_STEPS", "runtime.pick(small=500, full=3000)"),
        P("INDUCTION_STEPS", "runtime.pick(small=1200, full=3000)"),
        P("batch_size", "runtime.pick(small=16, full=64)")), _ch16),
    "17": Chapter("17_evaluation.ipynb", (
        P("STEPS", "runtime.pick(small=400, full=2000)"),
        P("WIDTH", "runtime.pick(small=64, full=128)"),
        P("N_BOOT", "runtime.pick(small=1000, full=5000)"),
        P("COVERAGE_RUNS", "runtime.pick(small=200, full=1000)"),
        P("N_ATTACKS", "runtime.pick(small=20, full=100)"),
        P("n_sample", "runtime.pick(small=2000, full=5000)"),
        P("n_brute", "runtime.pick(small=3, full=20)"),
        P("SEEDS", "runtime.pick(small=3, full=5)"),
        P("SEED_STEPS", "runtime.pick(small=100, full=400)")), _ch17),
}


# ---------------------------------------------------------------------------- checking against the notebooks
def pick_calls(notebook: dict) -> list[str]:
    """Every ``pick(...)`` call in the code cells of ``notebook`` (its JSON), as ``ast.unparse`` writes it, in order.

    IPython lines (``%pip``, ``!ls``) are blanked before parsing; a cell that still does not parse is an error.
    """
    calls = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        lines = "".join(cell["source"]).split("\n")
        src = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in lines)
        for node in ast.walk(ast.parse(src)):
            f = getattr(node, "func", None)
            if isinstance(node, ast.Call) and (getattr(f, "attr", None) == "pick" or getattr(f, "id", None) == "pick"):
                calls.append(ast.unparse(node))
    return sorted(calls)


def catalogue_calls(chapter: Chapter) -> list[str]:
    """The chapter's sizes as ``ast.unparse`` writes them, to compare with :func:`pick_calls`."""
    return sorted(ast.unparse(ast.parse(s.call, mode="eval").body) for s in chapter.sizes)


# ---------------------------------------------------------------------------- the table
def fmt_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.0f} s" if s >= 1 else "< 1 s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def fmt_flops(f: float) -> str:
    return "< 1e9" if f < 1e9 else f"{f:.1e}".replace("e+", "e")


def fits(ch: Chapter) -> str:
    """Whether the full budget fits in CPU_LIMIT_S on 2 cores: "yes" even at the loaded rate, "if quiet" only at
    the quiet one, else "no"."""
    if ch.cpu_seconds() <= CPU_LIMIT_S:
        return "yes"
    return "if quiet" if ch.cpu_seconds(quiet=True) <= CPU_LIMIT_S else "no"


def table() -> str:
    """The Markdown table of book/status.md: chapter, full-budget FLOPs, T4 and 2-core CPU estimates."""
    rows = ["| chapter | full-budget FLOPs | Colab T4 (estimate) | 2 CPU cores, quiet | 2 CPU cores, loaded as here "
            "(upper bound) | within 15 min on 2 cores |",
            "|---|---|---|---|---|---|"]
    for ch in CHAPTERS.values():
        rows.append(f"| {ch.notebook.removesuffix('.ipynb')} | {fmt_flops(ch.flops())} | "
                    f"{fmt_seconds(ch.t4_seconds())} | {fmt_seconds(ch.cpu_seconds(quiet=True))} | "
                    f"{fmt_seconds(ch.cpu_seconds())} | {fits(ch)} |")
    return "\n".join(rows)


def detail() -> str:
    out = []
    for ch in CHAPTERS.values():
        small = sum(w.cpu_seconds() for w in ch.work("small"))
        out.append(f"{ch.notebook}: {ch.flops():.2e} FLOPs, T4 {fmt_seconds(ch.t4_seconds())}, CPU quiet "
                   f"{fmt_seconds(ch.cpu_seconds(quiet=True))}, CPU loaded {fmt_seconds(ch.cpu_seconds())} "
                   f"(small budget, loaded: {fmt_seconds(small)} without the fixed cost)")
        for w in ch.work():
            out.append(f"    [{w.on}] {w.what}: {w.flops:.2e} FLOPs, {w.steps:,.0f} steps, {w.ops:,.0f} ops, "
                       f"{w.host_s:.1f} host s; T4 {w.t4_seconds():.1f} s, CPU quiet {w.cpu_seconds(True):.1f} s, "
                       f"loaded {w.cpu_seconds():.1f} s\n        {w.how}")
    return "\n".join(out)


# ---------------------------------------------------------------------------- measurement
def measure(steps: int = 8) -> dict:
    """Time GPT training steps on this CPU: the FLOP rate of a shakespeare_cpu-sized model and the latency
    floor of GPTConfig.tiny at batch 1, plus one light Python-loop iteration."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mathllm.transformer import GPT

    def step_time(cfg, batch):
        torch.manual_seed(0)
        model = GPT(cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size))
        with FlopCounterMode(display=False) as counter:
            _, loss = model(x, x)
            loss.backward()
        counted = counter.get_total_flops()
        times = []
        for _ in range(steps + 2):
            t0 = time.perf_counter()
            _, loss = model(x, x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        return min(times[2:]), counted  # the least-disturbed step: other jobs only ever slow a step down

    cfg = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False)
    t, counted = step_time(cfg, 12)
    formula = flops_per_token(cfg) * 12 * cfg.block_size
    t_tiny, _ = step_time(GPTConfig.tiny(), 1)
    a = torch.zeros(8)
    t0 = time.perf_counter()
    for _ in range(2000):
        a = (a * 0.5 + 1.0).clamp_(0, 10)
        a.sum().item()
    t_op = (time.perf_counter() - t0) / 2000
    return {"threads": torch.get_num_threads(), "step_s": t, "cpu_flops": formula / t, "counted_flops": counted,
            "formula_flops": formula, "cpu_step_s": t_tiny, "op_s": t_op}


# Small-budget execution time of each chapter, measured by `make book` from a fresh clone of 2439fac (two
# notebooks at a time on the 2-core build machine, AMD EPYC, torch 2.13.0+cpu, nothing else running; read from
# _build/.jupyter_cache), 2026-12-08.
SMALL_MEASURED_S = {
    "01": 9.1, "02": 17.9, "03": 24.9, "04": 11.1, "05": 13.0, "06": 41.0, "07": 19.9, "08": 16.0, "09": 10.0,
    "10": 13.8, "11": 63.1, "12": 38.6, "13": 80.7, "14": 52.0, "15": 44.1, "16": 49.5, "17": 78.9,
}


def fmt_small(s: float) -> str:
    """A measured time, rounded up: to 5 s below a minute, else to a tenth of a minute."""
    return f"{5 * math.ceil(s / 5):.0f} s" if s < 60 else f"{math.ceil(s / 6) / 10:.1f} min"


def running_time_line(key: str) -> str:
    """The line under each chapter's title (issue 17): the small budget measured, the full one estimated."""
    ch = CHAPTERS[key]

    def about(t: str) -> str:
        return "under 1 s" if t.startswith("<") else f"about {t}"

    return (f"*Running time: about {fmt_small(SMALL_MEASURED_S[key])} on 2 CPU cores with the small budget "
            f"(measured). The full budget computes for {about(fmt_seconds(ch.t4_seconds()))} on a Colab T4 GPU "
            f"and {about(fmt_seconds(ch.cpu_seconds(quiet=True)))} on 2 CPU cores (estimates from its FLOPs: "
            "{ref}`what each budget costs <what-the-full-budget-costs>`).*")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detail", action="store_true", help="every workload of every chapter")
    parser.add_argument("--measure", action="store_true", help="measure the CPU throughput and latencies here")
    args = parser.parse_args(argv)
    if args.measure:
        m = measure()
        print(f"{m['threads']} threads: shakespeare_cpu-sized step {m['step_s'] * 1e3:.1f} ms, "
              f"{m['cpu_flops'] / 1e9:.0f} GFLOP/s by flops_per_token "
              f"(FlopCounterMode counts {m['counted_flops'] / m['formula_flops']:.3f} x the formula); "
              f"GPTConfig.tiny batch-1 step {m['cpu_step_s'] * 1e3:.2f} ms; light op {m['op_s'] * 1e6:.0f} us")
        return
    print(detail() if args.detail else table())


if __name__ == "__main__":
    main()
