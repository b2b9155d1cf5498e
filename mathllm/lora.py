"""Low-rank adaptation (LoRA): fine-tune a frozen ``nn.Linear`` through a trainable rank-r update.

A pre-trained weight W (d_out, d_in) stays frozen; the layer learns only the update
::

    h = W x + b + (alpha / r) B A x         A (r, d_in), B (d_out, r),  r << min(d_in, d_out)
    Delta W = (alpha / r) B A               rank at most r: r (d_in + d_out) numbers instead of d_in d_out

A starts Gaussian, B starts at zero, so Delta W = 0 and the adapted model is the pre-trained model
until the first step. The scale alpha / r keeps the size of the update roughly independent of r,
so the learning rate need not be retuned when r changes. For inference the update is merged,
W <- W + Delta W, and the layer costs exactly what it cost before; subtracting it again (unmerge)
gives back the base weight, up to one rounding per entry.

:func:`apply_lora` wraps the linear layers of a model chosen by name (``"attn.qkv"``,
``"attn.proj"``, ``"mlp.fc"``, ``"mlp.proj"`` in :class:`mathllm.transformer.GPT`) and freezes
everything else; :func:`count_parameters`, :func:`lora_param_count` and
:func:`optimizer_state_bytes` give the savings; :func:`fine_tune_trainer` hands a pre-trained
model to :class:`mathllm.train.Trainer` (which resumes it exactly).

References: Hu et al. 2022 (LoRA, ICLR; arXiv 2021: the init, the alpha / r scale, merging); Microsoft's
``loralib`` (wrapping ``nn.Linear``); Aghajanyan et al. 2021 (the low intrinsic dimension of
fine-tuning). Leaves out: dropout on the adapter's input, adapters on embeddings and
convolutions, quantized bases (QLoRA), several adapters on one layer, and the rank-stabilised
scale alpha / sqrt(r).

Book: :doc:`/notebooks/15_fine_tuning`
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from .checks import check_instance, check_positive, check_positive_int
from .data import TokenData
from .train_config import TrainConfig
from .trainer import Trainer
from .transformer import GPT


# ---------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class LoRAConfig:
    """Which layers get an adapter, of which rank and scale. Checked when built.

    Book: :doc:`/notebooks/15_fine_tuning`
    """

    rank: int = 8                                  # r, the rank of Delta W = B A
    alpha: float = 16.0                            # Delta W is scaled by alpha / r (Hu et al.: alpha fixed, r varied)
    targets: tuple[str, ...] = ("attn.qkv", "attn.proj")  # module-name suffixes; Hu et al. adapt W_q and W_v
    init_std: float | None = None                  # std of A; None = 1 / sqrt(d_in), so A x has unit-size entries

    def __post_init__(self):
        check_positive_int(self.rank, "rank")
        check_positive(self.alpha, "alpha")
        if isinstance(self.targets, str) or not isinstance(self.targets, tuple) or not self.targets \
                or not all(isinstance(t, str) and t for t in self.targets):
            raise TypeError(f"targets must be a non-empty tuple of module names, got {self.targets!r}")
        if self.init_std is not None:
            check_positive(self.init_std, "init_std")

    @property
    def scaling(self) -> float:
        """alpha / r."""
        return self.alpha / self.rank


# ---------------------------------------------------------------------------- the layer
class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update: ``base(x) + (alpha / r) (x A^T) B^T``.

    Parameters ``A`` (r, d_in), Gaussian, and ``B`` (d_out, r), zero; the wrapped layer is ``base``
    (its weight and bias are frozen by :func:`freeze_base`). ``merged`` says whether Delta W has
    been added into ``base.weight`` (:meth:`merge`), in which case the forward pass is ``base``'s alone.

    Book: :doc:`/notebooks/15_fine_tuning`
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, *, init_std: float | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        d_out, d_in = base.weight.shape
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= min(d_in, d_out):
            raise ValueError(f"rank must be an int in [1, min(d_in, d_out)] = [1, {min(d_in, d_out)}] for a "
                             f"({d_out}, {d_in}) weight, got {rank!r}")
        check_positive(alpha, "alpha")
        self.base, self.rank, self.alpha = base, rank, float(alpha)
        self.scaling = self.alpha / rank
        std = 1.0 / math.sqrt(d_in) if init_std is None else check_positive(init_std, "init_std")
        w = base.weight
        if w.device.type == "meta":  # shapes only, for counting: nothing to draw
            A = torch.empty(rank, d_in, dtype=w.dtype, device="meta")
        else:  # drawn on the CPU with the caller's generator, then moved: the same A on every device
            A = std * torch.randn(rank, d_in, generator=generator, dtype=w.dtype)
        self.A = nn.Parameter(A.to(w.device))  # (r, d_in)
        self.B = nn.Parameter(torch.zeros(d_out, rank, dtype=w.dtype, device=w.device))  # (d_out, r): Delta W = 0
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, merged={self.merged}"

    def delta_weight(self) -> torch.Tensor:
        """Delta W = (alpha / r) B A, shape (d_out, d_in)."""
        return self.scaling * (self.B @ self.A)  # (d_out, r) x (r, d_in) -> (d_out, d_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., d_out). Two thin matmuls; W + Delta W is never formed."""
        y = self.base(x)  # (..., d_in) x (d_in, d_out) -> (..., d_out)
        if self.merged:
            return y
        # (..., d_in) x (d_in, r) -> (..., r) x (r, d_out) -> (..., d_out): 2 r (d_in + d_out) FLOPs per row
        return y + self.scaling * ((x @ self.A.T) @ self.B.T)

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + Delta W: the layer becomes a plain linear layer with the adapted weight."""
        if self.merged:
            raise RuntimeError("this LoRALinear is merged already; unmerge() it first")
        self.base.weight += self.delta_weight().to(self.base.weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - Delta W: back to the frozen base weight (up to one rounding per entry)."""
        if not self.merged:
            raise RuntimeError("this LoRALinear is not merged; merge() it first")
        self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
        self.merged = False


# ---------------------------------------------------------------------------- choosing layers
def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def lora_targets(model: nn.Module, targets: tuple[str, ...] | list[str]) -> list[str]:
    """The names of the ``nn.Linear`` modules of ``model`` that ``targets`` select, in model order.

    A target selects every module whose dotted name equals it or ends with ``"." + target``
    (``"attn.qkv"`` selects ``blocks.0.attn.qkv``, ``blocks.1.attn.qkv``, ...). A target that
    selects nothing, or selects a module that is not an ``nn.Linear``, is an error naming the
    linear layers that exist.
    """
    check_instance(model, nn.Module, "model")
    if isinstance(targets, str):
        raise TypeError(f"targets must be a tuple or list of module names, got the str {targets!r}")
    modules = dict(model.named_modules())
    linear = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
    chosen = []
    for t in targets:
        hits = [n for n in modules if n and _matches(n, t)]
        if not hits:
            kinds = sorted({re.sub(r"^.*\.\d+\.", "", n) for n in linear})  # blocks.0.attn.qkv -> attn.qkv
            raise ValueError(f"no module of the model is named {t!r} (or ends with '.{t}'); "
                             f"its linear layers are {', '.join(kinds)}")
        for n in hits:
            if not isinstance(modules[n], nn.Linear):
                raise TypeError(f"target {t!r} selects {n}, a {type(modules[n]).__name__}; "
                                f"LoRA adapts nn.Linear layers only")
        chosen += [n for n in hits if n not in chosen]
    return [n for n in linear if n in chosen]


def _check_untied(model: nn.Module, name: str, layer: nn.Linear) -> None:
    for other, p in model.named_parameters(remove_duplicate=False):
        if p is layer.weight and not other.startswith(name + "."):
            raise ValueError(f"{name}.weight is the same tensor as {other} (tied weights): merging an adapter "
                             f"into it would change both; leave {name} out of the targets")


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


# ---------------------------------------------------------------------------- the model
def freeze_base(model: nn.Module) -> nn.Module:
    """Freeze every parameter of ``model`` except the adapters' ``A`` and ``B``; returns ``model``."""
    check_instance(model, nn.Module, "model")
    adapters = {id(p) for m in model.modules() if isinstance(m, LoRALinear) for p in (m.A, m.B)}
    for p in model.parameters():
        p.requires_grad_(id(p) in adapters)
    return model


def apply_lora(model: nn.Module, config: LoRAConfig, *, freeze: bool = True,
               generator: torch.Generator | None = None) -> nn.Module:
    """Wrap the linear layers that ``config.targets`` select in :class:`LoRALinear`, in place.

    Args:
        model: e.g. a :class:`mathllm.transformer.GPT`; it must hold no adapters yet.
        config: rank, alpha and target names (see :func:`lora_targets`).
        freeze: freeze everything but the adapters (:func:`freeze_base`).
        generator: draws the A matrices (the default generator when None).

    Returns:
        ``model``, whose outputs are unchanged (every B is zero).

    Book: :doc:`/notebooks/15_fine_tuning`
    """
    if not isinstance(config, LoRAConfig):
        raise TypeError(f"config must be a LoRAConfig, got {type(config).__name__}")
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("the model holds LoRA adapters already; apply_lora wraps a model without adapters")
    names = lora_targets(model, config.targets)
    for name in names:
        layer = model.get_submodule(name)
        _check_untied(model, name, layer)
        _set_module(model, name, LoRALinear(layer, config.rank, config.alpha, init_std=config.init_std,
                                            generator=generator))
    return freeze_base(model) if freeze else model


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """``{name: LoRALinear}`` for every adapter of ``model``."""
    check_instance(model, nn.Module, "model")
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every adapter into its weight (W <- W + Delta W), for inference; returns ``model``."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model holds no LoRA adapters to merge")
    for layer in layers.values():
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Undo :func:`merge_lora` (W <- W - Delta W), to train the adapters further; returns ``model``."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model holds no LoRA adapters to unmerge")
    for layer in layers.values():
        layer.unmerge()
    return model


def remove_lora(model: nn.Module) -> nn.Module:
    """Merge the adapters and put the plain ``nn.Linear`` layers back: the model of the base architecture
    with the fine-tuned weights (its ``state_dict`` loads into a fresh model). Returns ``model``."""
    for name, layer in lora_layers(model).items():
        if not layer.merged:
            layer.merge()
        _set_module(model, name, layer.base)
    return model


# ---------------------------------------------------------------------------- counting
def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameters of ``model``, a tied tensor counted once."""
    check_instance(model, nn.Module, "model")
    params = list(model.parameters())  # deduplicated by torch
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def lora_param_count(model: nn.Module, config: LoRAConfig) -> int:
    """Adapter parameters :func:`apply_lora` would add: sum of r (d_in + d_out) over the targets.

    The formula, read off the shapes; nothing is modified.
    """
    if not isinstance(config, LoRAConfig):
        raise TypeError(f"config must be a LoRAConfig, got {type(config).__name__}")
    total = 0
    for name in lora_targets(model, config.targets):
        d_out, d_in = model.get_submodule(name).weight.shape
        if config.rank > min(d_in, d_out):
            raise ValueError(f"rank {config.rank} exceeds min(d_in, d_out) = {min(d_in, d_out)} of {name}")
        total += config.rank * (d_in + d_out)
    return total


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor an optimizer keeps (AdamW: m and v per trainable parameter, a step count per tensor).

    Measured, not computed: an optimizer holds state only for parameters it has stepped.
    """
    check_instance(optimizer, torch.optim.Optimizer, "optimizer")
    return sum(v.numel() * v.element_size() for state in optimizer.state.values()
               for v in state.values() if isinstance(v, torch.Tensor))


# ---------------------------------------------------------------------------- training
def fine_tune_trainer(model: GPT, config: TrainConfig, data: TokenData, lora: LoRAConfig | None = None, *,
                      generator: torch.Generator | None = None, batches=None) -> Trainer:
    """A :class:`mathllm.train.Trainer` that continues from ``model``'s weights on ``data``.

    The trainer builds ``GPT(model.config)``, copies ``model``'s weights into it, wraps it with
    adapters when ``lora`` is given (:func:`apply_lora`, base frozen) and builds its AdamW over the
    parameters that remain trainable. ``config`` (a :class:`mathllm.train.TrainConfig`) carries the
    fine-tuning schedule; its ``model`` field is replaced by ``model.config``. ``model`` itself is
    left untouched. One process, eager execution (``compile=False``).

    The copy and the adapters are the trainer's ``init`` hook, run before a checkpoint loads: with
    ``config.resume`` (or ``init_from="resume"``) a killed fine-tuning run, full or LoRA, continues
    from its newest checkpoint exactly (adapters, optimizer moments, data order, random state).

    ``batches``, when given, is where the training batches come from instead of windows of
    ``data.train``: any object with the interface of :class:`mathllm.data.Batches` (``next``,
    ``state_dict``, ``load_state_dict``), such as the prompt-masked rows of
    :class:`mathllm.sft.SFTBatches`. ``data`` still serves :meth:`~mathllm.train.Trainer.evaluate`.
    Such a run does not resume (the trainer would restore its own windows' state).

    Book: :doc:`/notebooks/15_fine_tuning`
    """
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a mathllm.transformer.GPT, got {type(model).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if lora_layers(model):
        raise ValueError("model holds LoRA adapters: pass the base model (remove_lora() merges them)")
    if config.compile:
        raise ValueError("fine_tune_trainer trains eagerly: set compile=False")
    if batches is not None:
        if not all(callable(getattr(batches, f, None)) for f in ("next", "state_dict", "load_state_dict")):
            raise TypeError(f"batches must have the methods next, state_dict and load_state_dict of "
                            f"mathllm.data.Batches, got {type(batches).__name__}")
        if config.resume or config.init_from == "resume":
            raise ValueError("a run with its own batches does not resume: leave resume off")
    if data.vocab_size > model.config.vocab_size:
        raise ValueError(f"the data has {data.vocab_size} token ids, the model only {model.config.vocab_size}: "
                         f"fine-tuning data must use the pre-trained model's tokenizer")
    weights = model.state_dict()
    if generator is not None:
        start = generator.get_state()  # the same A matrices however often the hook runs

    def init(fresh: GPT) -> None:
        fresh.load_state_dict(weights)
        if lora is not None:
            if generator is not None:
                generator.set_state(start)
            apply_lora(fresh, lora, generator=generator)  # in place, base frozen: the optimizer sees A and B only

    trainer = Trainer(replace(config, model=model.config, vocab_from_data=False), data, init=init)
    if trainer.dist.world_size > 1:
        raise ValueError("fine_tune_trainer runs in one process; under torchrun wrap the model yourself")
    if batches is not None:
        trainer.batches = batches
    return trainer
