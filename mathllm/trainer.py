"""The training loop: a GPT trained on CPU, one GPU or several processes, resuming exactly.

One optimizer step, with G micro-batches of B rows of T tokens each over all processes:

    for g in 1..G:    loss_g = mean cross-entropy of micro-batch g;   backward(loss_g / G)
    clip:             g <- g * min(1, c / ||g||)          (projection onto the ball of radius c)
    AdamW:            theta <- AdamW(theta, g, lr_t)      lr_t = warmup_cosine(t)

Dividing each micro-batch loss by G makes the accumulated gradient the gradient of the mean over
all G B T tokens, the same as one batch of G B rows; without it the gradient grows with G and
the learning rate would silently mean something else for every G. Under ``torchrun`` with K
processes each runs G / K of the micro-batches and ``DistributedDataParallel`` averages the K
gradients, so G counts micro-batches over all processes (as nanoGPT's
``gradient_accumulation_steps``) and K processes train as one process with the same G.

Mixed precision comes from the runtime: bf16 autocast (fp32's range, no scaling), fp16 autocast
with a gradient scaler (its range is too narrow for small gradients), or plain fp32 on the CPU.
``torch.compile`` is optional and falls back to eager execution when it cannot compile.

The hot loop keeps the host out of the device's way: no ``.item()`` except at log intervals
(losses and gradient norms stay on the device until then), gradients freed with
``set_to_none``, and the learning rate a float written into the optimizer. At each log interval
the losses are checked: a ``nan`` or ``inf`` stops the run with :class:`TrainingDiverged`, and a
checkpoint is never written from non-finite weights, so the newest checkpoint stays a good one.

Fine-tuning GPT-2 (``init_from="gpt2"`` ... ``"gpt2-xl"`` or a ``save_pretrained`` folder): the
model is GPT-2's (:meth:`GPT.from_pretrained <mathllm.transformer.GPT.from_pretrained>`) with the
run's dropout, and the corpus is tokenized with GPT-2's tokenizer (:func:`prepare_gpt2_data`); a
resumed fine-tuning run rebuilds that model from its checkpoint.

What is written to ``out_dir``: checkpoints (:mod:`mathllm.checkpoint`), ``ckpt_best.pt`` at
the lowest validation loss so far, and the records of :mod:`mathllm.train_log`.

References: nanoGPT's ``train.py`` and llm.c's ``train_gpt2.py`` (Karpathy); Loshchilov & Hutter
2019 (AdamW; cosine schedule 2017); Micikevicius et al. 2018 (mixed precision, loss scaling);
Pascanu et al. 2013 (gradient clipping, ``mathllm.clip``); Chowdhery et al. 2022, appendix B (MFU).
Leaves out: FSDP and tensor parallelism, gradient checkpointing, data-loader worker processes,
curriculum and data mixtures, early stopping.

Book: :doc:`/notebooks/12_training`
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import pathlib
import time
import warnings
from dataclasses import replace
from typing import Callable

import torch

from . import distributed, runtime
from .bpe import BPETokenizer
from .checkpoint import (BEST_NAME, capture_rng, latest_checkpoint, load_checkpoint, load_latest_good,
                         remove_stale_temp_files, restore_rng, save_checkpoint, write_checkpoint)
from .clip import clip_grad_norm
from .corpus import load_text
from .data import Batches, TokenData, eval_batches, prepare
from .gpt2_weights import GPT2_MODELS
from .sample import tokenizer_from_state, tokenizer_state
from .schedules import warmup_cosine
from .train_config import DTYPES, TrainConfig, config_to_dict, pretrained_source, resume_differences
from .train_log import METRICS_FILES, MetricsLog, TensorBoardLog, format_record, plot_metrics
from .transformer import GPT, GPTConfig

# dense bf16/fp16 tensor-core peak FLOP/s, for MFU (vendor data sheets, SXM parts)
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "V100": 125e12, "T4": 65e12}


class TrainingDiverged(RuntimeError):
    """The loss or the weights became ``nan`` or ``inf``; no checkpoint was written from that state."""


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


def grad_norm(parameters) -> torch.Tensor:
    """The global gradient norm ||g|| = sqrt(sum over tensors of ||g_i||^2), on the device (no sync)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))


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
        first = (str(e).splitlines() or [""])[0][:200]
        warnings.warn(f"torch.compile failed ({type(e).__name__}: {first}); training eagerly")
        torch._dynamo.reset()
        compiled = model
    model.zero_grad(set_to_none=True)
    return compiled, compiled is not model


def prepare_gpt2_data(config: TrainConfig, directory: pathlib.Path, pretrained: str | None,
                      info: distributed.DistInfo) -> TokenData:
    """``config.dataset`` tokenized with GPT-2's tokenizer into ``directory`` (once; later runs reuse it).

    The tokenizer is that of ``pretrained`` when it is a folder holding ``vocab.json`` and
    ``merges.txt``, else GPT-2's own (:meth:`~mathllm.bpe.BPETokenizer.from_pretrained`: 50,257 tokens, read from
    ``$MATHLLM_DATA_DIR/gpt2`` or the cache, or downloaded once). Its vocabulary keeps GPT-2's
    numbering, which ``meta.json`` stores as ``pretrained_tokenizer`` (:func:`mathllm.sample.tokenizer_state`).
    """
    folder = pathlib.Path(pretrained) if pretrained and pretrained not in GPT2_MODELS else None
    source = str(folder) if folder is not None and (folder / "vocab.json").is_file() else "gpt2"
    if info.is_main:  # one process writes the files, the others wait and read them
        tok = BPETokenizer.from_pretrained(source)
        state = tokenizer_state(tok)
        text = load_text(config.dataset, config.data_path or None)
        request = {"corpus": config.dataset, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                   "tokenizer": "gpt2", "tokenizer_sha256": hashlib.sha256(json.dumps(state).encode()).hexdigest(),
                   "val_fraction": config.val_fraction}
        try:
            reuse = TokenData(directory).meta.get("request") == request
        except (OSError, ValueError, KeyError):
            reuse = False
        if not reuse:
            cut = int(len(text) * (1.0 - config.val_fraction))  # split by characters, as data.TokenData.from_text
            train_ids, val_ids, val_text = tok.encode(text[:cut]), tok.encode(text[cut:]), text[cut:]
            TokenData.write(directory, train_ids, val_ids, vocab_size=tok.vocab_size, tokenizer=None,
                            source=str(config.data_path) if config.dataset == "file" else config.dataset,
                            chars_per_token=len(val_text) / len(val_ids),
                            bytes_per_token=len(val_text.encode("utf-8")) / len(val_ids),
                            request=request, pretrained_tokenizer=state, tokenizer_source=source)
    if info.world_size > 1:
        torch.distributed.barrier()
    data = TokenData(directory)
    data.tokenizer = tokenizer_from_state(data.meta["pretrained_tokenizer"])  # meta's "tokenizer" is None
    return data


# ---------------------------------------------------------------------------- the trainer
class Trainer:
    """Trains ``GPT(config.model)`` on ``data`` (or on ``config.dataset``, tokenized into ``data_dir``).

    ``train()`` runs to ``config.max_steps``; ``evaluate()``, ``sample()`` and ``save()`` are
    available at any step. ``losses`` holds the training loss of every step, ``history`` every
    logged and evaluated record (the lines of ``metrics.jsonl``).

    ``init(model)``, if given, runs on the freshly built model before the optimizer is built and
    before a checkpoint is loaded: it may load pre-trained weights, add adapters or freeze
    parameters (see :func:`mathllm.lora.fine_tune_trainer`). Because it runs again on every
    resume, a fine-tuning run resumes exactly like a pre-training run.

    Where the weights come from (``config.init_from``): ``"scratch"``; ``"resume"``, the newest good
    checkpoint in ``out_dir`` (the whole state: the run goes on as if it had never stopped; a
    damaged newer checkpoint is skipped with a warning); or the path of a checkpoint file or
    folder, whose weights start a new run at step 0.

    Book: :doc:`/notebooks/12_training`
    """

    def __init__(self, config: TrainConfig, data: TokenData | None = None, *,
                 init: Callable[[GPT], object] | None = None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if init is not None and not callable(init):
            raise TypeError(f"init must be a function of the model, got {type(init).__name__}")
        self.config = c = config
        self.dist, self.device = distributed.setup(runtime.get_device(c.device), c.backend)
        if c.grad_accum % self.dist.world_size:
            raise ValueError(f"grad_accum={c.grad_accum} counts micro-batches over all {self.dist.world_size} "
                             f"processes and must be a multiple of {self.dist.world_size}")
        self.micro_steps = c.grad_accum // self.dist.world_size  # micro-batches of this process per step
        self.dtype = DTYPES[c.dtype] or runtime.autocast_dtype(self.device)
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 for the fp32 matmuls left outside autocast
        self.out_dir = pathlib.Path(c.out_dir)
        # init_from="resume": find the checkpoint first, since a fine-tuning run's model is the checkpoint's
        self._resume_found = self._find_resume() if c.init_from == "resume" else None
        # the GPT-2 this run fine-tunes (a name or a save_pretrained folder), kept across resumes; None if none
        self.pretrained = (pretrained_source(c.init_from) if self._resume_found is None
                           else self._resume_found[1].get("pretrained"))
        self.data = data if data is not None else self._prepare_data()
        runtime.seed_everything(c.seed, shift=False)  # the seed as given (a chapter shifts it itself); same init on every rank
        if self.pretrained is None:
            self.model_config = self._model_config()
            self.model = GPT(self.model_config).to(self.device)
        else:
            self.model = self._pretrained_model().to(self.device)
            self.model_config = self.model.config
        if init is not None:
            init(self.model)
        self.optimizer = make_optimizer(self.model, c, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=runtime.needs_grad_scaler(self.dtype))
        self.batches = Batches(self.data.train, c.batch_size, self.model_config.block_size, order=c.data_order,
                               seed=c.seed, rank=self.dist.rank, world_size=self.dist.world_size, device=self.device)
        self.step, self.losses, self.history = 0, [], []
        self.grad_norms: list[float] = []  # the gradient norm before clipping of every step
        self.best_val_loss = math.inf
        self.resumed_from: pathlib.Path | None = None
        self._pending: list[torch.Tensor] = []  # step losses still on the device
        self._pending_norms: list[torch.Tensor] = []
        self._eval_data = None
        self._metrics = MetricsLog(self.out_dir if c.out_dir and self.dist.is_main else None)
        self._metrics_started = False
        # fails here, before any step, when tensorboard is not installed
        self._tensorboard = TensorBoardLog(self.out_dir) if c.tensorboard and self.dist.is_main else None
        self._sample_generator = torch.Generator(device=self.device).manual_seed(c.seed)
        if self.dist.world_size > 1:
            torch.manual_seed(c.seed + self.dist.rank)  # dropout masks differ between replicas
        if c.init_from == "resume":
            self._resume()
        elif c.init_from != "scratch" and self.pretrained is None:
            self._init_weights(c.init_from)
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
        if c.tokenizer == "gpt2":
            return prepare_gpt2_data(c, directory, self.pretrained, self.dist)
        kwargs = dict(path=c.data_path or None, tokenizer=c.tokenizer, bpe_vocab_size=c.bpe_vocab_size,
                      val_fraction=c.val_fraction, seed=c.seed)
        if self.dist.is_main:  # one process writes the files, the others wait and read them
            data = prepare(c.dataset, directory, **kwargs)
        if self.dist.world_size > 1:
            torch.distributed.barrier()
        return data if self.dist.is_main else TokenData(directory)

    def _pretrained_model(self) -> GPT:
        """GPT-2's architecture with this run's dropout: its weights (a new run) or the checkpoint's (a resume)."""
        if self._resume_found is not None:  # the weights come from the checkpoint in _resume
            return GPT(GPTConfig(**self._resume_found[1]["model_config"]))
        loaded = GPT.from_pretrained(self.pretrained)
        model = GPT(replace(loaded.config, dropout=self.config.model.dropout))
        model.load_state_dict(loaded.state_dict())
        if self.data.vocab_size > model.config.vocab_size:
            raise ValueError(f"the data's vocabulary ({self.data.vocab_size} tokens) is larger than the vocabulary "
                             f"of {self.pretrained!r} ({model.config.vocab_size}): tokenize with the model's tokenizer")
        return model  # the command line names it in its first line (``weights ...``)

    def _model_config(self) -> GPTConfig:
        c, m = self.config, self.config.model
        vocab = self.data.vocab_size if c.vocab_from_data else m.vocab_size
        if vocab < self.data.vocab_size:
            raise ValueError(f"the model's vocab_size={m.vocab_size} is smaller than the data's "
                             f"{self.data.vocab_size}; set vocab_from_data=True or a larger vocab_size")
        vocab = -(-vocab // c.vocab_multiple) * c.vocab_multiple
        return replace(m, vocab_size=vocab) if vocab != m.vocab_size else m

    def _say(self, text: str) -> None:
        """Print ``text`` on rank 0 when the run prints lines (``log_lines``)."""
        if self.config.log_lines:
            distributed.print0(text, info=self.dist, flush=True)

    def _find_resume(self) -> tuple[pathlib.Path, dict] | None:
        warn = (lambda m: warnings.warn(m, stacklevel=4)) if self.dist.is_main else (lambda m: None)
        return load_latest_good(self.out_dir, warn=warn)

    def _resume(self) -> None:
        found, self._resume_found = self._resume_found, None  # the state is not kept beyond loading it
        if found is None:
            self._say(f"resume: no checkpoint in {self.out_dir}, starting from step 0")
            return
        path, state = found
        self.load(path, _state=state)
        self._say(f"resumed from {path} at step {self.step}")

    def _init_weights(self, source: str) -> None:
        path = pathlib.Path(source)
        if path.is_dir():
            found = load_latest_good(path)
            if found is None:
                raise FileNotFoundError(f"init_from={source!r}: no checkpoint (ckpt_*.pt) in that folder")
            path, state = found
        else:
            state = load_checkpoint(path)
        self._check_model(state, path)
        self.model.load_state_dict(state["model"])
        self._say(f"initialised the weights from {path} (step {state['step']} of its run); starting at step 0")

    def _check_model(self, state: dict, path) -> None:
        if state["model_config"] != dataclasses.asdict(self.model_config):
            raise ValueError(f"checkpoint {path} holds a model with config {state['model_config']}, "
                             f"this run builds {dataclasses.asdict(self.model_config)}")

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
        """The number of tokens in one optimizer step over all processes (G x B x T, G over all processes)."""
        return self.config.grad_accum * self.config.batch_size * self.model_config.block_size

    # ------------------------------------------------------------------ one step
    def train_step(self) -> None:
        """One optimizer step over ``grad_accum`` micro-batches (this process's share of them).
        The loss and the gradient norm stay on the device."""
        c, model, opt = self.config, self.train_model, self.optimizer
        lr = self.lr_at(self.step)
        for group in opt.param_groups:
            group["lr"] = lr
        G = self.micro_steps
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
        if self.scaler.is_enabled():
            self.scaler.unscale_(opt)  # clip and report the true gradient, not the scaled one
        if c.grad_clip > 0:  # returns the norm before clipping
            norm = clip_grad_norm(self.model.parameters(), c.grad_clip)
        else:
            norm = grad_norm(self.model.parameters())
        if self.scaler.is_enabled():
            self.scaler.step(opt)  # skips the step if the scaled gradients overflowed
            self.scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        self._pending.append(total)
        self._pending_norms.append(norm.detach())
        self.step += 1

    def _flush(self) -> list[float]:
        """Bring the pending step losses to the host (one synchronisation; under DDP, averaged over ranks).

        Raises:
            TrainingDiverged: a loss is ``nan`` or ``inf``.
        """
        if not self._pending:
            return []
        values = distributed.all_reduce_mean(torch.stack(self._pending).float()).tolist()
        norms = torch.stack([n.float().to(self.device) for n in self._pending_norms]).tolist()  # one copy
        first = self.step - len(values) + 1
        self._pending.clear()
        self._pending_norms.clear()
        for i, v in enumerate(values):
            if not math.isfinite(v):
                newest = latest_checkpoint(self.out_dir) if self.config.out_dir else None
                keep = f"; the newest checkpoint, {newest}, is from before" if newest else ""
                raise TrainingDiverged(
                    f"the training loss is {v} at step {first + i} (lr {self.lr_at(first + i - 1):.3g}, gradient "
                    f"norm {norms[i]:.3g}): training stopped{keep}; lower lr or set grad_clip")
        self.losses.extend(values)
        self.grad_norms.extend(norms)
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
        out["val_perplexity"] = math.inf if nats > 700 else math.exp(nats)  # exp overflows past e^709
        out["val_bits_per_token"] = nats / math.log(2)
        if self.data.chars_per_token:
            out["val_bits_per_char"] = nats / math.log(2) / self.data.chars_per_token
        if self.data.bytes_per_token:
            out["val_bits_per_byte"] = nats / math.log(2) / self.data.bytes_per_token
        return out

    @torch.no_grad()
    def sample(self, prompt: str | None = None, max_new_tokens: int | None = None, temperature: float = 0.8,
               top_k: int | None = 200) -> str:
        """Text generated from ``prompt`` (a newline, or token 0, when None) with this trainer's own generator
        (saved in checkpoints, so samples after a resume are those of an uninterrupted run)."""
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
            "sample_rng": self._sample_generator.get_state(),
            "data": self.batches.state_dict(),
            "tokenizer": self.data.meta.get("tokenizer") or self.data.meta.get("pretrained_tokenizer"),
            "pretrained": self.pretrained,
            "losses": list(self.losses),
            "grad_norms": list(self.grad_norms),
            "history": json.loads(json.dumps(self.history)),
        }

    def _check_finite_weights(self) -> None:
        bad = [name for name, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise TrainingDiverged(f"the weights hold nan or inf at step {self.step} ({', '.join(bad[:3])}"
                                   f"{', ...' if len(bad) > 3 else ''}): training stopped without saving; "
                                   f"lower lr or set grad_clip")

    def save(self, *, best: bool = False) -> pathlib.Path | None:
        """Write a checkpoint of the current step to ``out_dir`` (rank 0 writes; returns its path);
        ``best=True`` writes ``ckpt_best.pt`` instead, outside the numbered, rotated checkpoints.

        Raises:
            TrainingDiverged: the loss or the weights are not finite (nothing is written).
            OSError: the file cannot be written (``errno.ENOSPC``: the disk is full).
        """
        state = self.state_dict()  # every rank takes part in gathering the random states
        self._check_finite_weights()
        if not self.dist.is_main:
            return None
        if best:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            return write_checkpoint(state, self.out_dir / BEST_NAME)
        return save_checkpoint(state, self.out_dir, self.step, keep_last=self.config.keep_last)

    def load(self, path: str | pathlib.Path, *, _state: dict | None = None) -> None:
        """Continue from a checkpoint: the run goes on as if it had never stopped.

        Raises:
            ValueError: the checkpoint's model, batch, schedule, seed or data differ from this run's
                (the message lists the fields; ``allow_config_change=True`` accepts them).
        """
        state = load_checkpoint(path) if _state is None else _state
        self._check_model(state, path)
        differences = resume_differences(state["config"], self.config)
        if differences and not self.config.allow_config_change:
            raise ValueError(f"checkpoint {path} is of a run with another configuration ({'; '.join(differences)}): "
                             f"resume with the same values, or set allow_config_change=True "
                             f"(--allow_config_change) to continue with the new ones")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.batches.load_state_dict(state["data"])
        self.step, self.losses, self.history = state["step"], list(state["losses"]), list(state["history"])
        self.grad_norms = list(state.get("grad_norms", []))
        if "sample_rng" in state:
            self._sample_generator.set_state(state["sample_rng"])
        vals = [r["val_loss"] for r in self.history if r.get("kind") == "eval" and r["step"] > 0]
        self.best_val_loss = min(vals, default=math.inf)
        rngs = state["rng"]
        if len(rngs) != self.dist.world_size:
            warnings.warn(f"checkpoint was written by {len(rngs)} processes, this run has {self.dist.world_size}: "
                          f"the data order is unchanged, dropout masks are reseeded")
            torch.manual_seed(self.config.seed + self.step + self.dist.rank)
        else:
            restore_rng(rngs[self.dist.rank])
        self.resumed_from = pathlib.Path(path)

    # ------------------------------------------------------------------ the loop
    def _log(self, record: dict, bar=None) -> None:
        self.history.append(record)
        if not self.dist.is_main:
            return
        self._metrics.append(record)
        if self._tensorboard is not None:
            self._tensorboard.append(record)
        if self.config.log_lines:
            line = format_record(record, self.config.max_steps)
            if line is not None:
                if bar is not None and not bar.disable:
                    bar.write(line)
                else:
                    print(line, flush=True)

    def _start_metrics(self) -> None:
        """Once per trainer: drop stale temporary files and the records after this trainer's first step."""
        if self._metrics_started or not (self.dist.is_main and self.config.out_dir):
            return
        self._metrics_started = True
        remove_stale_temp_files(self.out_dir, METRICS_FILES)
        self._metrics.truncate(self.step)
        if self._tensorboard is not None:  # TensorBoard drops what metrics.jsonl just dropped: steps > self.step
            self._tensorboard.purge_step = self.step + 1 if self.step else 0

    def _evaluate_and_keep_best(self, bar) -> dict | None:
        """Evaluate on rank 0, log it, and write ``ckpt_best.pt`` when the validation loss is the lowest yet."""
        record = None
        self._flush()  # a diverged run stops here, before it evaluates nan weights
        if self.dist.is_main:
            record = self.evaluate()
            self._log(record, bar)
        improved = record is not None and self.step > 0 and record["val_loss"] < self.best_val_loss
        if self.config.out_dir and distributed.broadcast_object(improved, self.dist):
            self.best_val_loss = record["val_loss"] if record is not None else self.best_val_loss
            self.save(best=True)
        return record

    def train(self, steps: int | None = None) -> dict | None:
        """Train for ``steps`` more steps (default: up to ``max_steps``); return the last evaluation.

        Raises:
            TrainingDiverged: the loss became ``nan`` or ``inf``; the newest checkpoint is one from before.
        """
        from tqdm.auto import tqdm
        c, main = self.config, self.dist.is_main
        end = c.max_steps if steps is None else min(self.step + steps, c.max_steps)
        peak, fpt = peak_flops(self.device, c.peak_tflops), self.model.flops_per_token()
        self._start_metrics()
        bar = tqdm(total=end, initial=self.step, disable=not (c.progress and main), desc="train", unit="step")
        try:
            last_eval = None
            if c.eval_interval and self.step == 0:
                last_eval = self._evaluate_and_keep_best(bar)
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
                           "grad_norm": self.grad_norms[-1], "tokens_per_s": tps,
                           "ms_per_step": 1000 * dt / (self.step - s0), "mfu": mfu(fpt, tps, peak)}
                    if main:
                        self._log(rec, bar)
                        bar.set_postfix(loss=f"{losses[-1]:.4f}", tok_s=f"{tps:,.0f}")
                    t0, s0 = time.perf_counter(), self.step
                paused = False
                if c.eval_interval and (self.step % c.eval_interval == 0 or final):
                    last_eval = self._evaluate_and_keep_best(bar)
                    if main:
                        bar.set_postfix(val=f"{last_eval['val_loss']:.4f}")
                    paused = True
                if c.sample_interval and self.step % c.sample_interval == 0 and main:
                    text = self.sample()
                    self._log({"kind": "sample", "step": self.step, "text": text}, bar)
                    bar.write(f"--- sample at step {self.step} ---\n{text}")
                    paused = True
                if c.out_dir and c.ckpt_interval and self.step % c.ckpt_interval == 0 and not done:
                    self.save()
                    paused = True
                if paused:
                    t0, s0 = time.perf_counter(), self.step  # time training only
        finally:
            bar.close()
            if self._tensorboard is not None:
                self._tensorboard.close()
        self._flush()
        if c.out_dir:
            self.save()
            if main and self._metrics.jsonl.is_file():
                plot_metrics(self._metrics.jsonl).savefig(self.out_dir / "loss.png", dpi=120)
        return last_eval
