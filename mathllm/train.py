"""The training loop: a GPT trained on CPU, one GPU or several processes, resuming exactly.

One optimizer step, with G micro-batches of B rows of T tokens each (eq. numbers of the chapter):

    for g in 1..G:    loss_g = mean cross-entropy of micro-batch g;   backward(loss_g / G)
    clip:             g <- g * min(1, c / ||g||)          (projection onto the ball of radius c)
    AdamW:            theta <- AdamW(theta, g, lr_t)      lr_t = warmup_cosine(t)

Dividing each micro-batch loss by G makes the accumulated gradient the gradient of the mean over
all G B T tokens, the same as one batch of G B rows; without it the gradient grows with G and
the learning rate would silently mean something else for every G.

Mixed precision comes from the runtime: bf16 autocast (fp32's range, no scaling), fp16 autocast
with a gradient scaler (its range is too narrow for small gradients), or plain fp32 on the CPU.
``torch.compile`` is optional and falls back to eager execution when it cannot compile. Under
``torchrun`` the model is wrapped in ``DistributedDataParallel`` (see :mod:`mathllm.distributed`).

The hot loop keeps the host out of the device's way: no ``.item()`` except at log intervals
(losses stay on the device until then), gradients freed with ``set_to_none``, and the learning
rate a float written into the optimizer.

Command line: ``python -m mathllm.train --preset shakespeare_char --max_steps 1000`` (every field
of :class:`TrainConfig` and of :class:`mathllm.transformer.GPTConfig` is an option; ``--help``
lists them with the comments of the dataclasses).

References: nanoGPT's ``train.py`` and llm.c's ``train_gpt2.py`` (Karpathy); Loshchilov & Hutter
2019 (AdamW; cosine schedule 2017); Micikevicius et al. 2018 (mixed precision, loss scaling);
Pascanu et al. 2013 (gradient clipping); Chowdhery et al. 2022, appendix B (MFU).
Leaves out: FSDP and tensor parallelism, gradient checkpointing, data-loader worker processes,
curriculum and data mixtures, early stopping.

Book: :doc:`/notebooks/12_training`
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import inspect
import json
import math
import pathlib
import re
import sys
import time
import typing
import warnings
from dataclasses import dataclass, field, fields, replace

import torch

from . import distributed, runtime
from .checkpoint import capture_rng, latest_checkpoint, load_checkpoint, restore_rng, save_checkpoint
from .data import CORPORA, ORDERS, TOKENIZERS, Batches, TokenData, eval_batches, prepare
from .schedules import warmup_cosine
from .transformer import GPT, GPTConfig

DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
OPTIMIZERS = ("torch", "mathllm")
# dense bf16/fp16 tensor-core peak FLOP/s, for MFU (vendor data sheets, SXM parts)
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "V100": 125e12, "T4": 65e12}


# ---------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the data; the model is ``model``. Presets: ``PRESETS``.

    Book: :doc:`/notebooks/12_training`
    """

    model: GPTConfig = field(default_factory=GPTConfig)
    # data
    dataset: str = "tinyshakespeare"  # corpus: tinyshakespeare, file (data_path) or markov
    data_path: str = ""           # the UTF-8 text file for dataset=file
    data_dir: str = ""            # where token files are written once; "" = out_dir/data
    tokenizer: str = "char"       # char, or bpe (byte-level BPE trained on the training split)
    bpe_vocab_size: int = 512     # vocabulary of the BPE tokenizer
    val_fraction: float = 0.1     # the last 10% of the corpus is the validation split
    data_order: str = "random"    # random windows (as nanoGPT) or sequential windows
    vocab_from_data: bool = True  # model vocab_size := the data's, rounded up to vocab_multiple
    vocab_multiple: int = 1       # pad the vocabulary to a multiple of this (64 suits GPU matmuls)
    # batch
    batch_size: int = 12          # rows per micro-batch per process (B)
    grad_accum: int = 1           # micro-batches per optimizer step (G); the loss is divided by G
    # optimization
    max_steps: int = 2000         # optimizer steps of the whole run
    lr: float = 1e-3              # peak learning rate, reached at the end of the warm-up
    min_lr: float = 1e-4          # the cosine ends here (about lr / 10)
    warmup_steps: int = 100       # linear warm-up steps
    decay_steps: int = 0          # step at which the cosine reaches min_lr; 0 = max_steps
    weight_decay: float = 0.1     # decoupled (AdamW), on matrices only, never on biases and gains
    beta1: float = 0.9            # AdamW first-moment decay
    beta2: float = 0.99           # second-moment decay: 0.99 for small batches, 0.95 for GPT-2
    grad_clip: float = 1.0        # clip the global gradient norm to this; 0 = no clipping
    optimizer: str = "torch"      # torch (torch.optim.AdamW, fused on CUDA) or mathllm (mathllm.optim.AdamW)
    # evaluation, logging, samples
    eval_interval: int = 250      # evaluate every N steps (and at the first and last); 0 = never
    eval_batches: int = 20        # batches per split in an evaluation
    log_interval: int = 10        # read the losses back from the device every N steps
    sample_interval: int = 0      # print a sample every N steps; 0 = never
    sample_tokens: int = 200      # length of a sample
    # checkpoints
    out_dir: str = "out"          # checkpoints, metrics.jsonl and loss.png go here; "" = write no files
    ckpt_interval: int = 0        # save every N steps; 0 = only at the end
    keep_last: int = 3            # checkpoints kept; older ones are deleted after a good save
    resume: bool = False          # continue from the newest checkpoint in out_dir
    # system
    device: str = "auto"          # auto, cpu, cuda, cuda:N or mps
    dtype: str = "auto"           # auto (bf16 or fp16 on GPUs, fp32 on CPU), float32, bfloat16, float16
    compile: bool = False         # torch.compile the model (falls back to eager if it cannot)
    backend: str = "auto"         # process-group backend under torchrun: auto (nccl on GPUs, else gloo)
    seed: int = 1337              # seeds the initialisation, dropout and the data order
    progress: bool = True         # a tqdm progress bar
    peak_tflops: float = 0.0      # peak of the device for MFU; 0 = look the GPU up (no MFU on CPU)

    def __post_init__(self):
        if not isinstance(self.model, GPTConfig):
            raise TypeError(f"model must be a GPTConfig, got {type(self.model).__name__}")
        choices = {"dataset": CORPORA, "tokenizer": TOKENIZERS, "data_order": ORDERS, "dtype": tuple(DTYPES),
                   "optimizer": OPTIMIZERS, "backend": distributed.BACKENDS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("batch_size", "grad_accum", "max_steps", "eval_batches", "log_interval", "keep_last",
                     "vocab_multiple", "sample_tokens"):
            _check_int(getattr(self, name), name, low=1)
        for name in ("warmup_steps", "decay_steps", "eval_interval", "sample_interval", "seed",
                     "ckpt_interval"):
            _check_int(getattr(self, name), name, low=0)
        for name in ("lr", "min_lr", "weight_decay", "grad_clip", "peak_tflops"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a number >= 0, got {getattr(self, name)!r}")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr} must not exceed lr={self.lr}")
        if not 0 <= self.beta1 < 1 or not 0 <= self.beta2 < 1:
            raise ValueError(f"beta1 and beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")
        if self.warmup_steps > self.decay_steps_resolved:
            raise ValueError(f"warmup_steps={self.warmup_steps} must not exceed the decay steps "
                             f"({self.decay_steps_resolved})")
        if self.dataset == "file" and not self.data_path:
            raise ValueError("dataset='file' needs data_path, the UTF-8 text file to train on")

    @property
    def decay_steps_resolved(self) -> int:
        return self.decay_steps or self.max_steps


def _check_int(value, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


PRESETS = {
    # runs in seconds on a CPU: for tests and a first look
    "tiny": lambda: TrainConfig(model=GPTConfig.tiny(), batch_size=8, max_steps=100, lr=3e-3, min_lr=3e-4,
                                warmup_steps=10, eval_interval=50, eval_batches=4, log_interval=10),
    # nanoGPT's config/train_shakespeare_char.py: 10.7M parameters, about 3 minutes on a T4
    "shakespeare_char": lambda: TrainConfig(model=GPTConfig.shakespeare_char(), batch_size=64, max_steps=5000,
                                            lr=1e-3, min_lr=1e-4, warmup_steps=100, eval_interval=250,
                                            eval_batches=200, log_interval=10, sample_interval=1000),
    # the CPU model of nanoGPT's README (0.8M parameters, about a minute on 2 cores) with its learning rate
    # tuned: 3e-3 reaches a validation loss of 1.77 at step 2000, nanoGPT's 1e-3 only 1.90 (benchmarks/README.md)
    "shakespeare_cpu": lambda: TrainConfig(model=GPTConfig.shakespeare_char(block_size=64, n_layer=4, n_head=4,
                                                                            n_embd=128, dropout=0.0),
                                           batch_size=12, max_steps=2000, lr=3e-3, min_lr=3e-4, warmup_steps=100,
                                           eval_interval=250, eval_batches=20, log_interval=10),
    # GPT-2 small (124M) with nanoGPT's train_gpt2.py optimizer settings; for a GPU
    "gpt2_small": lambda: TrainConfig(model=GPTConfig.gpt2_small(), tokenizer="bpe", bpe_vocab_size=4096,
                                      vocab_from_data=False, vocab_multiple=64, batch_size=12, grad_accum=40,
                                      max_steps=600_000, lr=6e-4, min_lr=6e-5, warmup_steps=2000, beta2=0.95,
                                      eval_interval=2000, eval_batches=200, log_interval=10, compile=True),
}


def config_to_dict(config: TrainConfig) -> dict:
    """A TrainConfig as plain data (the model config nested under ``"model"``)."""
    return dataclasses.asdict(config)


def config_from_dict(data: dict) -> TrainConfig:
    """Inverse of :func:`config_to_dict`."""
    data = dict(data)
    return TrainConfig(model=GPTConfig(**data.pop("model")), **data)


# ---------------------------------------------------------------------------- pieces of a step
def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: matrices (embeddings, linear weights) decay; vectors (biases, gains) do not.

    Decay pulls weights toward 0; a gain pulled to 0 would switch its feature off, and a bias has
    no scale to regularise.
    """
    params = [p for p in model.parameters() if p.requires_grad]  # a tied matrix appears once
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over :func:`param_groups`: torch's (fused kernels on CUDA and CPU) or :class:`mathllm.optim.AdamW`."""
    groups = [g for g in param_groups(model, config.weight_decay) if g["params"]]
    betas = (config.beta1, config.beta2)
    if config.optimizer == "mathllm":
        from .optim import AdamW
        return AdamW(groups, lr=config.lr, betas=betas)
    fused = device.type in ("cuda", "cpu")  # one kernel for all tensors instead of one per tensor
    return torch.optim.AdamW(groups, lr=config.lr, betas=betas, fused=fused)


def mfu(flops_per_token: int, tokens_per_s: float, peak_flops: float | None) -> float | None:
    """Model FLOPs utilisation: achieved matmul FLOP/s (flops_per_token x tokens/s) over the peak."""
    return None if not peak_flops else flops_per_token * tokens_per_s / peak_flops


def peak_flops(device: torch.device, peak_tflops: float = 0.0) -> float | None:
    """The device's peak FLOP/s: ``peak_tflops`` if given, else a known GPU's bf16 peak, else None."""
    if peak_tflops:
        return peak_tflops * 1e12
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in PEAK_FLOPS.items():
            if key in name:
                return value
    return None


def compile_or_eager(model: torch.nn.Module, trial_batch, autocast) -> tuple[torch.nn.Module, bool]:
    """``torch.compile(model)`` if it compiles and runs a trial forward-backward, else ``model``.

    The trial runs under ``fork_rng`` and its gradients are dropped, so it changes nothing.
    Returns ``(model to train, compiled?)``.
    """
    if not hasattr(torch, "compile"):
        warnings.warn(f"torch {torch.__version__} has no torch.compile; training eagerly")
        return model, False
    x, y = trial_batch
    try:
        compiled = torch.compile(model)
        with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
            with autocast():
                _, loss = compiled(x, y)
            loss.backward()
    except Exception as e:  # no C++ compiler, an unsupported platform or Python version, ...
        warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); training eagerly")
        torch._dynamo.reset()
        compiled = model
    model.zero_grad(set_to_none=True)
    return compiled, compiled is not model


def plot_metrics(path: str | pathlib.Path, *, title: str = "training"):
    """A figure of the train and validation losses in a ``metrics.jsonl``; returns the Figure.

    Uses ``matplotlib.figure.Figure`` directly, so saving needs no display backend.
    """
    from matplotlib.figure import Figure
    rows = [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train), lw=0.8, alpha=0.7, label="train (logged mini-batches)")
    if evals:
        ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="validation")
    ax.set(xlabel="optimizer step", ylabel="cross-entropy (nats per token)", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- the trainer
class Trainer:
    """Trains ``GPT(config.model)`` on ``data`` (or on ``config.dataset``, tokenized into ``data_dir``).

    ``train()`` runs to ``config.max_steps``; ``evaluate()``, ``sample()`` and ``save()`` are
    available at any step. ``losses`` holds the training loss of every step, ``history`` every
    logged and evaluated record (the lines of ``metrics.jsonl``).

    Book: :doc:`/notebooks/12_training`
    """

    def __init__(self, config: TrainConfig, data: TokenData | None = None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = c = config
        self.dist, self.device = distributed.setup(runtime.get_device(c.device), c.backend)
        self.dtype = DTYPES[c.dtype] or runtime.autocast_dtype(self.device)
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 for the fp32 matmuls left outside autocast
        self.out_dir = pathlib.Path(c.out_dir)
        self.data = data if data is not None else self._prepare_data()
        self.model_config = self._model_config()
        runtime.seed_everything(c.seed)  # reseeds the global generators: the same initialisation on every rank
        self.model = GPT(self.model_config).to(self.device)
        self.optimizer = make_optimizer(self.model, c, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=runtime.needs_grad_scaler(self.dtype))
        self.batches = Batches(self.data.train, c.batch_size, self.model_config.block_size, order=c.data_order,
                               seed=c.seed, rank=self.dist.rank, world_size=self.dist.world_size, device=self.device)
        self.step, self.losses, self.history = 0, [], []
        self._pending: list[torch.Tensor] = []  # step losses still on the device
        self._eval_data = None
        self._sample_generator = torch.Generator(device=self.device).manual_seed(c.seed)
        if self.dist.world_size > 1:
            torch.manual_seed(c.seed + self.dist.rank)  # dropout masks differ between replicas
        if c.resume:
            path = latest_checkpoint(self.out_dir)
            if path is not None:
                self.load(path)
            else:
                distributed.print0(f"resume: no checkpoint in {self.out_dir}, starting from step 0", info=self.dist)
        self.compiled = False
        self.train_model = self.model
        if c.compile:
            self.train_model, self.compiled = compile_or_eager(self.model, self.fixed_batches("val")[0], self.autocast)
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            self.train_model = DDP(self.train_model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # ------------------------------------------------------------------ setup
    def _prepare_data(self) -> TokenData:
        c = self.config
        if not (c.data_dir or c.out_dir):
            raise ValueError("with out_dir='' (no files) pass the data to Trainer(config, data) or set data_dir")
        directory = pathlib.Path(c.data_dir) if c.data_dir else self.out_dir / "data"
        kwargs = dict(path=c.data_path or None, tokenizer=c.tokenizer, bpe_vocab_size=c.bpe_vocab_size,
                      val_fraction=c.val_fraction, seed=c.seed)
        if self.dist.is_main:  # one process writes the files, the others wait and read them
            data = prepare(c.dataset, directory, **kwargs)
        if self.dist.world_size > 1:
            torch.distributed.barrier()
        return data if self.dist.is_main else TokenData(directory)

    def _model_config(self) -> GPTConfig:
        c, m = self.config, self.config.model
        vocab = self.data.vocab_size if c.vocab_from_data else m.vocab_size
        if vocab < self.data.vocab_size:
            raise ValueError(f"the model's vocab_size={m.vocab_size} is smaller than the data's "
                             f"{self.data.vocab_size}; set vocab_from_data=True or a larger vocab_size")
        vocab = -(-vocab // c.vocab_multiple) * c.vocab_multiple
        return replace(m, vocab_size=vocab) if vocab != m.vocab_size else m

    def autocast(self):
        """The mixed-precision context: autocast to ``self.dtype``, or nothing for fp32."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (warm-up, then cosine to ``min_lr``)."""
        c = self.config
        return warmup_cosine(step, max_lr=c.lr, min_lr=c.min_lr, warmup_steps=c.warmup_steps,
                             decay_steps=c.decay_steps_resolved)

    @property
    def tokens_per_step(self) -> int:
        """The number of tokens in one optimizer step over all processes (G x world size x B x T)."""
        return self.config.grad_accum * self.dist.world_size * self.config.batch_size * self.model_config.block_size

    # ------------------------------------------------------------------ one step
    def train_step(self) -> None:
        """One optimizer step over ``grad_accum`` micro-batches. The loss stays on the device."""
        c, model, opt = self.config, self.train_model, self.optimizer
        lr = self.lr_at(self.step)
        for group in opt.param_groups:
            group["lr"] = lr
        G = c.grad_accum
        total = None
        for micro in range(G):
            x, y = self.batches.next()
            # under DDP, all-reduce the gradients only once, after the last micro-batch
            sync = micro == G - 1 or self.dist.world_size == 1
            with contextlib.nullcontext() if sync else model.no_sync():
                with self.autocast():
                    _, loss = model(x, y)
                if G > 1:
                    loss = loss / G  # eq. (accumulation): the sum of G means / G is the mean of all tokens
                if self.scaler.is_enabled():
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
            total = loss.detach() if total is None else total + loss.detach()
        if c.grad_clip > 0:
            if self.scaler.is_enabled():
                self.scaler.unscale_(opt)  # clip the true gradient, not the scaled one
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip, foreach=True)
        if self.scaler.is_enabled():
            self.scaler.step(opt)  # skips the step if the scaled gradients overflowed
            self.scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        self._pending.append(total)
        self.step += 1

    def _flush(self) -> list[float]:
        """Bring the pending step losses to the host (one synchronisation; under DDP, averaged over ranks)."""
        if not self._pending:
            return []
        values = distributed.all_reduce_mean(torch.stack(self._pending).float()).tolist()
        self._pending.clear()
        self.losses.extend(values)
        return values

    # ------------------------------------------------------------------ evaluation and samples
    def fixed_batches(self, split: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The ``eval_batches`` fixed batches ``(x, y)`` of split ``"train"`` or ``"val"`` that :meth:`evaluate` uses."""
        if self._eval_data is None:
            T, c = self.model_config.block_size, self.config
            self._eval_data = {s: eval_batches(self.data.split(s), c.eval_batches, c.batch_size, T,
                                               seed=c.seed + 1 + i, device=self.device)
                               for i, s in enumerate(("train", "val"))}
        return self._eval_data[split]

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Mean loss on fixed batches of both splits, with perplexity and bits per token, character and byte.

        Bits per character = nats per token / ln 2 / characters per token: the figure that
        compares models with different tokenizers.
        """
        model = self.model if not self.compiled else self.train_model
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module  # no collectives: only rank 0 evaluates
        model.eval()
        out = {"kind": "eval", "step": self.step}
        for split in ("train", "val"):
            losses = []
            for x, y in self.fixed_batches(split):
                with self.autocast():
                    losses.append(model(x, y)[1].float())
            out[f"{split}_loss"] = torch.stack(losses).mean().item()
        model.train()
        nats = out["val_loss"]
        out["val_perplexity"] = math.exp(nats)
        out["val_bits_per_token"] = nats / math.log(2)
        if self.data.chars_per_token:
            out["val_bits_per_char"] = nats / math.log(2) / self.data.chars_per_token
        if self.data.bytes_per_token:
            out["val_bits_per_byte"] = nats / math.log(2) / self.data.bytes_per_token
        return out

    @torch.no_grad()
    def sample(self, prompt: str | None = None, max_new_tokens: int | None = None, temperature: float = 0.8,
               top_k: int | None = 200) -> str:
        """Text generated from ``prompt`` (a newline, or token 0, when None) with this trainer's own generator."""
        tok = self.data.tokenizer
        if prompt is None:
            ids = tok.encode("\n") if tok is not None and "\n" in getattr(tok, "stoi", {"\n": 0}) else [0]
        else:
            if tok is None:
                raise ValueError("this data set has no tokenizer: a text prompt cannot be encoded")
            ids = tok.encode(prompt)
        idx = torch.tensor([ids], dtype=torch.long, device=self.device)
        self.model.eval()
        out = self.model.generate(idx, max_new_tokens or self.config.sample_tokens, temperature=temperature,
                                  top_k=top_k, generator=self._sample_generator)
        self.model.train()
        return self.data.decode(out[0].tolist())

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """The whole state of the run (see :mod:`mathllm.checkpoint`); collective under DDP."""
        self._flush()
        c = self.config
        return {
            "step": self.step,
            "config": config_to_dict(c),
            "model_config": dataclasses.asdict(self.model_config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "schedule": {"name": "warmup_cosine", "max_lr": c.lr, "min_lr": c.min_lr,
                         "warmup_steps": c.warmup_steps, "decay_steps": c.decay_steps_resolved},
            "rng": distributed.gather_objects(capture_rng(), self.dist),  # one entry per rank
            "data": self.batches.state_dict(),
            "tokenizer": self.data.meta.get("tokenizer"),
            "losses": list(self.losses),
            "history": json.loads(json.dumps(self.history)),
        }

    def save(self) -> pathlib.Path | None:
        """Write a checkpoint of the current step to ``out_dir`` (rank 0 writes; returns its path)."""
        state = self.state_dict()  # every rank takes part in gathering the random states
        if not self.dist.is_main:
            return None
        return save_checkpoint(state, self.out_dir, self.step, keep_last=self.config.keep_last)

    def load(self, path: str | pathlib.Path) -> None:
        """Continue from a checkpoint: the run goes on as if it had never stopped."""
        state = load_checkpoint(path)
        if state["model_config"] != dataclasses.asdict(self.model_config):
            raise ValueError(f"checkpoint {path} holds a model with config {state['model_config']}, "
                             f"this run builds {dataclasses.asdict(self.model_config)}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.batches.load_state_dict(state["data"])
        self.step, self.losses, self.history = state["step"], list(state["losses"]), list(state["history"])
        rngs = state["rng"]
        if len(rngs) != self.dist.world_size:
            warnings.warn(f"checkpoint was written by {len(rngs)} processes, this run has {self.dist.world_size}: "
                          f"the data order is unchanged, dropout masks are reseeded")
            torch.manual_seed(self.config.seed + self.step + self.dist.rank)
        else:
            restore_rng(rngs[self.dist.rank])

    # ------------------------------------------------------------------ the loop
    def _log(self, record: dict) -> None:
        self.history.append(record)
        if self.dist.is_main and self.config.out_dir:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def train(self, steps: int | None = None) -> dict | None:
        """Train for ``steps`` more steps (default: up to ``max_steps``); return the last evaluation."""
        from tqdm.auto import tqdm
        c, main = self.config, self.dist.is_main
        end = c.max_steps if steps is None else min(self.step + steps, c.max_steps)
        peak, fpt = peak_flops(self.device, c.peak_tflops), self.model.flops_per_token()
        bar = tqdm(total=end, initial=self.step, disable=not (c.progress and main), desc="train", unit="step")
        last_eval = None
        if c.eval_interval and self.step == 0 and main:
            last_eval = self.evaluate()
            self._log(last_eval)
        t0, s0 = time.perf_counter(), self.step
        while self.step < end:
            self.train_step()
            bar.update(1)
            done, final = self.step == end, self.step == c.max_steps
            if self.step % c.log_interval == 0 or done:
                losses = self._flush()  # also synchronises the device: the clock below is honest
                dt = time.perf_counter() - t0
                tps = self.tokens_per_step * (self.step - s0) / dt
                rec = {"kind": "train", "step": self.step, "loss": losses[-1], "lr": self.lr_at(self.step - 1),
                       "tokens_per_s": tps, "ms_per_step": 1000 * dt / (self.step - s0), "mfu": mfu(fpt, tps, peak)}
                if main:
                    self._log(rec)
                    bar.set_postfix(loss=f"{losses[-1]:.4f}", tok_s=f"{tps:,.0f}")
                t0, s0 = time.perf_counter(), self.step
            paused = False
            if c.eval_interval and (self.step % c.eval_interval == 0 or final) and main:
                last_eval = self.evaluate()
                self._log(last_eval)
                bar.set_postfix(val=f"{last_eval['val_loss']:.4f}")
                paused = True
            if c.sample_interval and self.step % c.sample_interval == 0 and main:
                text = self.sample()
                self._log({"kind": "sample", "step": self.step, "text": text})
                bar.write(f"--- sample at step {self.step} ---\n{text}")
                paused = True
            if c.out_dir and c.ckpt_interval and self.step % c.ckpt_interval == 0 and not done:
                self.save()
                paused = True
            if paused:
                t0, s0 = time.perf_counter(), self.step  # time training only
        bar.close()
        self._flush()
        if c.out_dir:
            self.save()
            if main and (self.out_dir / "metrics.jsonl").is_file():
                plot_metrics(self.out_dir / "metrics.jsonl").savefig(self.out_dir / "loss.png", dpi=120)
        return last_eval


# ---------------------------------------------------------------------------- command line
def field_comments(cls) -> dict[str, str]:
    """``{field: comment}`` read from the ``name: type = default  # comment`` lines of a dataclass."""
    out = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+)\s*:[^#]*#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _options(cls, skip=()):
    hints, comments = typing.get_type_hints(cls), field_comments(cls)
    for f in fields(cls):
        if f.name not in skip:
            yield f.name, hints[f.name], comments.get(f.name, "")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mathllm.train`` parser: ``--preset`` and one option per config field."""
    parser = argparse.ArgumentParser(
        prog="python -m mathllm.train", description="Train a GPT. A preset sets every field; options override it.",
        epilog="Under torchrun every process runs this same command (DDP).", allow_abbrev=False)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="named configuration (default: tiny)")
    parser.add_argument("--print_config", action="store_true", help="print the resolved configuration and exit")
    for cls, title, skip in ((TrainConfig, "training (TrainConfig)", ("model",)), (GPTConfig, "model (GPTConfig)", ())):
        group = parser.add_argument_group(title)
        for name, kind, comment in _options(cls, skip):
            if kind is bool:
                group.add_argument(f"--{name}", type=_parse_bool, nargs="?", const=True, default=argparse.SUPPRESS,
                                   metavar="BOOL", help=comment.replace("%", "%%"))
            else:
                group.add_argument(f"--{name}", type=kind, default=argparse.SUPPRESS, metavar=kind.__name__.upper(),
                                   help=comment.replace("%", "%%"))
    return parser


def parse_config(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """The TrainConfig of a command line: the preset, then each option given; errors exit with a message."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        known = [a for action in parser._actions for a in action.option_strings]
        hints = []
        options = [u for u in unknown if u.startswith("-")]  # the rest are their values, or stray words
        for u in options or unknown:
            close = difflib.get_close_matches(u.split("=")[0], known, n=1) if u.startswith("-") else []
            hints.append(f"{u} (did you mean {close[0]}?)" if close else u)
        parser.error(f"unknown {'option(s)' if options else 'argument(s)'}: {', '.join(hints)}; see --help")
    given = {k: v for k, v in vars(args).items() if k not in ("preset", "print_config")}
    model_fields = {f.name for f in fields(GPTConfig)}
    base = PRESETS[args.preset]()
    try:
        model = replace(base.model, **{k: v for k, v in given.items() if k in model_fields})
        config = replace(base, model=model, **{k: v for k, v in given.items() if k not in model_fields})
    except (ValueError, TypeError) as e:
        parser.error(f"invalid configuration: {e}")
    return config, args


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m mathllm.train`` and ``mathllm-train``."""
    config, args = parse_config(argv)
    if args.print_config:
        print(json.dumps(config_to_dict(config), indent=1))
        return 0
    trainer = Trainer(config)
    info = trainer.dist
    distributed.print0(f"{runtime.describe()} | dtype {str(trainer.dtype).replace('torch.', '')} | "
                       f"compiled {trainer.compiled} | processes {info.world_size}", info=info)
    distributed.print0(f"model: {trainer.model.num_params():,} parameters | "
                       f"{trainer.tokens_per_step:,} tokens per step", info=info)
    try:
        result = trainer.train()
    finally:
        distributed.cleanup()
    if result is not None:
        distributed.print0(json.dumps(result), info=info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
