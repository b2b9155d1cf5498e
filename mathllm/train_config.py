"""The configuration of a training run: :class:`TrainConfig`, its checks and the named presets.

A run is decided by its configuration, so every field is checked when the configuration is
built, before any data is prepared or any model is allocated: a count is an int in range, a
rate or a norm is a finite number in range (``nan`` and ``inf`` are refused, since ``nan < 0``
is False and would slip through a plain comparison), a choice is one of its choices.

Batch arithmetic (nanoGPT's convention): ``grad_accum`` counts the micro-batches of one optimizer
step over *all* processes. Under ``torchrun`` with K processes each process runs
``grad_accum / K`` micro-batches of ``batch_size`` rows, so one step always sees
``grad_accum x batch_size x block_size`` tokens, whatever K is; ``grad_accum`` must be a
multiple of K.

Resuming (``init_from="resume"``, or its alias ``resume=True``) continues the run of the
checkpoint only if every field in :data:`RESUME_FIXED` is the same: changing the batch, the
schedule, the seed or the data would silently make the resumed run a different experiment.
``allow_config_change=True`` overrides the check.

Book: :doc:`/notebooks/12_training`
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
from dataclasses import dataclass, field

import torch

from . import distributed
from .data import CORPORA, ORDERS, TOKENIZERS
from .gpt2_weights import GPT2_MODELS
from .transformer import GPTConfig

DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
OPTIMIZERS = ("torch", "mathllm")
INIT_FROM = ("scratch", "resume", *GPT2_MODELS)  # or the path of a checkpoint, or of a save_pretrained folder
# char, bpe (trained on the corpus), or gpt2: GPT-2's own byte-level BPE (50,257 tokens), not trained here
TRAIN_TOKENIZERS = (*TOKENIZERS, "gpt2")
# fields a resumed run may change: where files go, how often it reports, the hardware it runs on
RESUME_MAY_CHANGE = frozenset({"out_dir", "data_dir", "resume", "init_from", "allow_config_change", "eval_interval",
                               "eval_batches", "log_interval", "log_lines", "sample_interval", "sample_tokens",
                               "tensorboard", "ckpt_interval", "keep_last", "device", "compile", "backend", "progress",
                               "peak_tflops", "model"})


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
    tokenizer: str = "char"       # char; bpe (trained on the training split); gpt2 (GPT-2's, needs its files)
    bpe_vocab_size: int = 512     # vocabulary of the BPE tokenizer
    val_fraction: float = 0.1     # the last 10% of the corpus is the validation split
    data_order: str = "random"    # random windows (as nanoGPT) or sequential windows
    vocab_from_data: bool = True  # model vocab_size := the data's, rounded up to vocab_multiple
    vocab_multiple: int = 1       # pad the vocabulary to a multiple of this (64 suits GPU matmuls)
    # batch
    batch_size: int = 12          # rows per micro-batch per process (B)
    grad_accum: int = 1           # micro-batches per optimizer step over all processes (G); the loss is divided by G
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
    log_lines: bool = False       # print a line per log interval and evaluation (the command line turns it on)
    sample_interval: int = 0      # print a sample every N steps; 0 = never
    sample_tokens: int = 200      # length of a sample
    tensorboard: bool = False     # also write the logged scalars for TensorBoard into out_dir (mathllm[tensorboard])
    # checkpoints
    out_dir: str = "out"          # checkpoints, metrics.jsonl, metrics.csv and loss.png go here; "" = write no files
    ckpt_interval: int = 0        # save every N steps; 0 = only at the end
    keep_last: int = 3            # checkpoints kept; older ones are deleted after a good save
    init_from: str = "scratch"    # scratch, resume, a checkpoint (its weights), or GPT-2: gpt2* or a save_pretrained folder
    resume: bool = False          # the same as init_from=resume
    allow_config_change: bool = False  # resume even if the batch, schedule, seed or data differ from the checkpoint's
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
        choices = {"dataset": CORPORA, "tokenizer": TRAIN_TOKENIZERS, "data_order": ORDERS, "dtype": tuple(DTYPES),
                   "optimizer": OPTIMIZERS, "backend": distributed.BACKENDS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("batch_size", "grad_accum", "max_steps", "eval_batches", "log_interval", "keep_last",
                     "vocab_multiple", "sample_tokens", "bpe_vocab_size"):
            _check_int(getattr(self, name), name, low=1)
        for name in ("warmup_steps", "decay_steps", "eval_interval", "sample_interval", "seed",
                     "ckpt_interval"):
            _check_int(getattr(self, name), name, low=0)
        for name in ("vocab_from_data", "log_lines", "resume", "allow_config_change", "compile", "progress",
                     "tensorboard"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        _check_number(self.lr, "lr", low=0, low_open=True)
        for name in ("min_lr", "weight_decay", "grad_clip", "peak_tflops"):
            _check_number(getattr(self, name), name, low=0)
        _check_number(self.val_fraction, "val_fraction", low=0, high=1, low_open=True, high_open=True)
        _check_number(self.beta1, "beta1", low=0, high=1, high_open=True)
        _check_number(self.beta2, "beta2", low=0, high=1, high_open=True)
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr} must not exceed lr={self.lr}")
        if self.warmup_steps > self.decay_steps_resolved:
            raise ValueError(f"warmup_steps={self.warmup_steps} must not exceed the decay steps "
                             f"({self.decay_steps_resolved})")
        if self.dataset == "file" and not self.data_path:
            raise ValueError("dataset='file' needs data_path, the UTF-8 text file to train on")
        for name in ("out_dir", "data_dir", "data_path", "init_from", "device"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a str, got {getattr(self, name)!r}")
        if self.tensorboard and not self.out_dir:
            raise ValueError("tensorboard=True writes its event files into out_dir; out_dir='' writes no files")
        if not self.init_from:
            raise ValueError("init_from must be scratch, resume or the path of a checkpoint, got ''")
        # resume=True is an alias of init_from="resume": keep the two consistent
        if self.resume and self.init_from not in ("scratch", "resume"):
            raise ValueError(f"resume=True contradicts init_from={self.init_from!r}; give one of them")
        if pretrained_source(self.init_from) is not None:  # fine-tuning GPT-2 reads GPT-2's tokens
            if self.tokenizer == "char":  # the default: the pretrained model decides
                object.__setattr__(self, "tokenizer", "gpt2")
            elif self.tokenizer != "gpt2":
                raise ValueError(f"init_from={self.init_from!r} fine-tunes a pretrained GPT-2, which reads GPT-2's "
                                 f"tokens: tokenizer must be gpt2, got {self.tokenizer!r}")
        if self.tokenizer == "gpt2" and self.dataset == "markov":
            raise ValueError("tokenizer='gpt2' tokenizes text; dataset='markov' is a stream of symbols")
        if self.resume or self.init_from == "resume":
            object.__setattr__(self, "resume", True)
            object.__setattr__(self, "init_from", "resume")
            if not self.out_dir:
                raise ValueError("resuming needs out_dir, the folder of the checkpoints; out_dir='' writes and reads none")

    @property
    def decay_steps_resolved(self) -> int:
        return self.decay_steps or self.max_steps


def pretrained_source(init_from: str) -> str | None:
    """``init_from`` when it names a pretrained GPT-2 to fine-tune: one of ``GPT2_MODELS`` (``"gpt2"`` ...
    ``"gpt2-xl"``, from the Hugging Face cache or hub) or a folder written by ``save_pretrained`` (it
    holds ``config.json``); None for scratch, resume or a checkpoint of ours."""
    if init_from in GPT2_MODELS:
        return init_from
    if init_from not in ("scratch", "resume") and (pathlib.Path(init_from) / "config.json").is_file():
        return init_from
    return None


def _check_int(value, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def _check_number(value, name: str, *, low: float, high: float = math.inf, low_open: bool = False,
                  high_open: bool = False) -> None:
    """``value`` is a finite real number in the interval (or half-open interval) from ``low`` to ``high``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or high == math.inf else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")


# Each preset names its corpus (dataset) and tokenizer; the first line a run prints repeats them.
PRESETS = {
    # runs in seconds on a CPU: for tests and a first look
    "tiny": lambda: TrainConfig(model=GPTConfig.tiny(), dataset="tinyshakespeare", tokenizer="char", batch_size=8, max_steps=100, lr=3e-3, min_lr=3e-4,
                                warmup_steps=10, eval_interval=50, eval_batches=4, log_interval=10),
    # nanoGPT's config/train_shakespeare_char.py: 10.7M parameters, about 3 minutes on a T4
    "shakespeare_char": lambda: TrainConfig(model=GPTConfig.shakespeare_char(), dataset="tinyshakespeare",
                                            tokenizer="char", batch_size=64, max_steps=5000,
                                            lr=1e-3, min_lr=1e-4, warmup_steps=100, eval_interval=250,
                                            eval_batches=200, log_interval=10, sample_interval=1000),
    # the CPU model of nanoGPT's README (0.8M parameters, about a minute on 2 cores) with its learning rate
    # tuned: 3e-3 reaches a validation loss of 1.77 at step 2000, nanoGPT's 1e-3 only 1.90 (benchmarks/README.md)
    "shakespeare_cpu": lambda: TrainConfig(model=GPTConfig.shakespeare_char(block_size=64, n_layer=4, n_head=4,
                                                                            n_embd=128, dropout=0.0),
                                           dataset="tinyshakespeare", tokenizer="char", batch_size=12, max_steps=2000, lr=3e-3, min_lr=3e-4, warmup_steps=100,
                                           eval_interval=250, eval_batches=20, log_interval=10),
    # GPT-2 small (124M) with nanoGPT's train_gpt2.py optimizer settings; for a GPU. GPT-2's own tokenizer
    # (50,257 tokens, padded to 50,304 = 786 x 64 for the matmuls, as nanoGPT). grad_accum=40 counts
    # micro-batches over all processes, as nanoGPT's: 40 x 12 x 1024 = 491,520 tokens per step on 1 or 8 GPUs
    "gpt2_small": lambda: TrainConfig(model=GPTConfig.gpt2_small(), dataset="tinyshakespeare", tokenizer="gpt2",
                                      vocab_from_data=True, vocab_multiple=64, batch_size=12, grad_accum=40,
                                      max_steps=600_000, lr=6e-4, min_lr=6e-5, warmup_steps=2000, beta2=0.95,
                                      eval_interval=2000, eval_batches=200, log_interval=10, compile=True),
}


# what --help says of each preset
PRESET_NOTES = {
    "tiny": "28.6K parameters, Tiny Shakespeare, characters; seconds on a CPU",
    "shakespeare_char": "nanoGPT's 10.7M model, Tiny Shakespeare, characters; for a GPU",
    "shakespeare_cpu": "0.8M parameters, Tiny Shakespeare, characters; about 1.5 minutes on 2 CPU cores",
    "gpt2_small": "GPT-2 small (124M) from scratch on Tiny Shakespeare with GPT-2's tokenizer, vocabulary "
                  "50,257 padded to 50,304; needs GPT-2's vocab.json and merges.txt (downloaded once into "
                  "~/.cache/mathllm/gpt2, or put in $MATHLLM_DATA_DIR/gpt2); --tokenizer bpe --bpe_vocab_size 4096 "
                  "trains a BPE instead; for a GPU",
}


def config_to_dict(config: TrainConfig) -> dict:
    """A TrainConfig as plain data (the model config nested under ``"model"``)."""
    return dataclasses.asdict(config)


def config_from_dict(data: dict) -> TrainConfig:
    """Inverse of :func:`config_to_dict`. Fields a checkpoint of an older version lacks take their defaults."""
    data = dict(data)
    return TrainConfig(model=GPTConfig(**data.pop("model")), **data)


def resume_differences(saved: dict, config: TrainConfig) -> list[str]:
    """``["lr: 0.001 -> 0.002", ...]``: the fields outside :data:`RESUME_MAY_CHANGE` on which the
    configuration ``saved`` in a checkpoint (:func:`config_to_dict`) and ``config`` differ."""
    now = config_to_dict(config)
    defaults = config_to_dict(TrainConfig())
    out = []
    for name in now:
        if name in RESUME_MAY_CHANGE:
            continue
        before = saved.get(name, defaults[name])  # a field the checkpoint's version did not have yet
        if before != now[name]:
            out.append(f"{name}: {before!r} -> {now[name]!r}")
    return out
