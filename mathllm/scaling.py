"""Scaling laws: the loss of a language model as a function of its size N and its training tokens D.

Two published forms, with the constants of the papers:

* Kaplan et al. (2020), eq. (1.5): ``L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D``
  (:class:`KaplanLaw`), N the non-embedding parameters;
* Hoffmann et al. (2022), "Chinchilla", approach 3: ``L(N, D) = E + A / N^alpha + B / D^beta``
  (:class:`ChinchillaLaw`), and its compute-optimal allocation under ``C = 6 N D``
  (:meth:`ChinchillaLaw.compute_optimal`), the closed form of the Lagrange conditions.

The training compute is ``C = 6 N D`` FLOPs: every weight that multiplies an activation costs 2
FLOPs per token forward and 4 backward (:func:`mathllm.transformer.flops_per_token` adds the
attention term 12 L T C). :class:`ComputeLaw` is Kaplan et al.'s power law in compute alone along
the compute-efficient frontier. :func:`train_point` and :func:`sweep` train the runs with
:class:`mathllm.train.Trainer`. Fitting a law to the runs, with its uncertainty, is
:mod:`mathllm.scaling_fit` (its names are importable from here too, where they used to live).

References: Kaplan et al. 2020 (arXiv:2001.08361), eqs. (1.1), (1.2), (1.4), (1.5) and Table 2;
Hoffmann et al. 2022 (arXiv:2203.15556), section 3.3; Besiroglu et al. 2024 (arXiv:2404.10102), the
replication of approach 3; Yang et al. 2022 (arXiv:2203.03466), muP. Leaves out: Hoffmann et al.'s
approaches 1 and 2 (IsoFLOP profiles), Kaplan's L(N, S) form with the critical batch size, repeated
data (Muennighoff et al. 2023), learning-rate and batch-size laws, and muP itself (the sweep scales
one learning rate for all weights).

Book: :doc:`/notebooks/13_scaling_laws`
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from .checks import check_positive_int
from .data import TokenData
from .train import TrainConfig, Trainer
from .transformer import GPTConfig, flops_per_token, matmul_params

# moved to mathllm.scaling_fit; still importable from here (module __getattr__ at the end)
_MOVED_TO_FIT = ("PARAM_NAMES", "ScalingFit", "fit_chinchilla", "log_loss_and_jacobian")


def _check_positive_values(x, name: str):
    """``x`` (a number, array or tensor) must be finite and > 0 everywhere."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.ndarray, np.number, torch.Tensor)):
        raise TypeError(f"{name} must be a number, a numpy array or a tensor, got {type(x).__name__}")
    values = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)
    if not (np.all(np.isfinite(values)) and np.all(values > 0)):
        raise ValueError(f"{name} must be finite and > 0, got {x!r}")
    return x


def _check_fields_positive(obj, may_be_zero: tuple[str, ...] = ()) -> None:
    for f in fields(obj):
        value = getattr(obj, f.name)
        is_number = not isinstance(value, bool) and isinstance(value, (int, float))  # before comparing: "a" > 0 raises
        if not (is_number and math.isfinite(value) and (value >= 0 if f.name in may_be_zero else value > 0)):
            bound = ">= 0" if f.name in may_be_zero else "> 0"
            raise ValueError(f"{type(obj).__name__}.{f.name} must be a finite number {bound}, got {value!r}")


# ---------------------------------------------------------------------------- compute
def approx_compute(N, D):
    """C = 6 N D: training FLOPs of N matmul weights on D tokens (2 forward + 4 backward per weight and token).

    Book: :doc:`/notebooks/13_scaling_laws`
    """
    _check_positive_values(N, "N")
    _check_positive_values(D, "D")
    return 6 * N * D


def training_compute(config: GPTConfig, tokens: int) -> int:
    """Training FLOPs of ``GPT(config)`` on ``tokens`` tokens at full context: (6 N + 12 L T C) D.

    The 6 N D of :func:`approx_compute` plus attention's scores and weighted sums, a fraction
    12 L T C / 6 N, about T / (6 C) of 6 N for a wide model (N about 12 L C^2).

    Book: :doc:`/notebooks/13_scaling_laws`
    """
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"tokens must be an int >= 1, got {tokens!r}")
    return flops_per_token(config) * tokens


# ---------------------------------------------------------------------------- the laws
@dataclass(frozen=True)
class KaplanLaw:
    """Kaplan et al. (2020), eq. (1.5): L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D.

    L in nats per token (WebText2, GPT-2's BPE), N non-embedding parameters, D tokens. As D -> oo
    it becomes eq. (1.1), L = (N_c / N)^alpha_N; as N -> oo, eq. (1.2), L = (D_c / D)^alpha_D. The
    defaults are the constants of those two limits; :meth:`kaplan2020_joint` holds the joint fit
    of Table 2. No irreducible term: the loss tends to 0 as N and D grow.

    Book: :doc:`/notebooks/13_scaling_laws`
    """

    N_c: float = 8.8e13    # non-embedding parameters, eq. (1.1)
    D_c: float = 5.4e13    # tokens, eq. (1.2)
    alpha_N: float = 0.076
    alpha_D: float = 0.095

    def __post_init__(self):
        _check_fields_positive(self)

    @classmethod
    def kaplan2020(cls) -> "KaplanLaw":
        """The constants of eqs. (1.1) and (1.2): alpha_N = 0.076, alpha_D = 0.095."""
        return cls()

    @classmethod
    def kaplan2020_joint(cls) -> "KaplanLaw":
        """Table 2, the joint fit of L(N, D): alpha_N = 0.076, alpha_D = 0.103, N_c = 6.4e13, D_c = 1.8e13."""
        return cls(N_c=6.4e13, D_c=1.8e13, alpha_N=0.076, alpha_D=0.103)

    def loss(self, N, D):
        """The predicted loss (nats per token) of N parameters trained on D tokens; broadcasts."""
        _check_positive_values(N, "N")
        _check_positive_values(D, "D")
        return ((self.N_c / N) ** (self.alpha_N / self.alpha_D) + self.D_c / D) ** self.alpha_D


@dataclass(frozen=True)
class ChinchillaLaw:
    """Hoffmann et al. (2022), approach 3: L(N, D) = E + A / N^alpha + B / D^beta.

    E is the loss of an ideal model on infinite data (the entropy of the text), A / N^alpha what a
    finite model loses, B / D^beta what finite data loses. The defaults are the published fit
    (MassiveText, nats per token, N all parameters); :meth:`besiroglu2024` the replication's.

    Book: :doc:`/notebooks/13_scaling_laws`
    """

    E: float = 1.69
    A: float = 406.4
    B: float = 410.7
    alpha: float = 0.34
    beta: float = 0.28

    def __post_init__(self):
        _check_fields_positive(self, may_be_zero=("E",))  # E = 0: no irreducible loss (a fit at its bound)

    @classmethod
    def hoffmann2022(cls) -> "ChinchillaLaw":
        """The published approach-3 fit: E = 1.69, A = 406.4, B = 410.7, alpha = 0.34, beta = 0.28."""
        return cls()

    @classmethod
    def besiroglu2024(cls) -> "ChinchillaLaw":
        """Besiroglu et al. (2024), approach 3 refitted to the data read off Hoffmann et al.'s figure."""
        return cls(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)

    def loss(self, N, D):
        """The predicted loss of N parameters trained on D tokens; broadcasts over arrays and tensors."""
        _check_positive_values(N, "N")
        _check_positive_values(D, "D")
        return self.E + self.A / N ** self.alpha + self.B / D ** self.beta

    def compute_optimal(self, C):
        """The N*, D* that minimise :meth:`loss` subject to 6 N D = C.

        The Lagrange conditions give alpha A / N^alpha = beta B / D^beta, so (eq. scaling-optimal)::

            N* = G (C / 6)^(beta / (alpha + beta)),   D* = (C / 6) / N*,
            G = (alpha A / (beta B))^(1 / (alpha + beta)).

        Args:
            C: compute in FLOPs, a number, array or tensor > 0.
        Returns:
            ``(N_opt, D_opt)``, shaped as ``C``.
        """
        _check_positive_values(C, "C")
        s = self.alpha + self.beta
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1 / s)
        N_opt = G * (C / 6) ** (self.beta / s)
        return N_opt, (C / 6) / N_opt


@dataclass(frozen=True)
class ComputeLaw:
    """Kaplan et al. (2020), eq. (1.4): L(C) = (C_c / C)^alpha_C, the loss of the best run for compute C.

    A power law in compute alone, along the compute-efficient frontier; it says nothing about how C
    is split between N and D. The defaults are the paper's, alpha_C = 0.050 and C_c = 3.1e8
    PF-days, here in FLOPs (1 PF-day = 8.64e19 FLOPs); :func:`mathllm.scaling_fit.fit_compute_law`
    fits one to measured runs.

    Book: :doc:`/notebooks/13_scaling_laws`
    """

    C_c: float = 3.1e8 * 8.64e19     # FLOPs
    alpha_C: float = 0.050

    def __post_init__(self):
        _check_fields_positive(self)

    def loss(self, C):
        """The predicted loss of the best run of C FLOPs; broadcasts."""
        _check_positive_values(C, "C")
        return (self.C_c / C) ** self.alpha_C


# ---------------------------------------------------------------------------- measuring
def train_point(config: TrainConfig, data: TokenData) -> dict:
    """Train ``GPT(config.model)`` for ``config.max_steps`` steps and measure its validation loss.

    Returns:
        ``{"n_embd", "n_layer", "steps", "lr", "N", "D", "C", "C_exact", "loss", "train_loss"}``: N the matmul
        weights (:func:`mathllm.transformer.matmul_params`), D the training tokens, C = 6 N D,
        C_exact from :func:`training_compute`, the losses in nats per token.

    Book: :doc:`/notebooks/13_scaling_laws`
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    trainer = Trainer(config, data)
    trainer.train()
    ev = trainer.evaluate()
    m = trainer.model_config
    N, D = matmul_params(m), trainer.tokens_per_step * config.max_steps
    return {"n_embd": m.n_embd, "n_layer": m.n_layer, "steps": config.max_steps, "lr": config.lr, "N": N, "D": D,
            "C": approx_compute(N, D), "C_exact": training_compute(m, D), "loss": ev["val_loss"],
            "train_loss": ev["train_loss"]}


def run_config(base: TrainConfig, width: int, steps: int, *, warmup_fraction: float = 0.1,
               lr_exponent: float = 1.0) -> TrainConfig:
    """``base`` resized to one point of a sweep: ``n_embd`` = width, ``max_steps`` = steps.

    The cosine schedule ends at the run's last step (Hoffmann et al.: a run read off in the middle of
    a longer schedule overestimates the loss at its D), the warm-up is ``warmup_fraction`` of the
    steps, and ``lr``, ``min_lr`` are those of ``base`` times (``base.model.n_embd`` / width)^
    ``lr_exponent``: with the default 1 the rate falls as 1 / width for *every* parameter, so that no
    size runs with a rate tuned for another. This is not muP (Yang et al. 2022, Table 3): muP scales
    Adam's rate as 1 / width only for the hidden and output matrices, keeps it O(1) for the
    embedding, the biases and the LayerNorm gains, initialises the output layer with variance
    1 / width^2 (a 1 / width multiplier on the logits) and scores attention with 1 / d, not
    1 / sqrt(d). Only the rule for the matrices is borrowed here.

    Book: :doc:`/notebooks/13_scaling_laws`
    """
    if not isinstance(base, TrainConfig):
        raise TypeError(f"base must be a TrainConfig, got {type(base).__name__}")
    check_positive_int(width, "width"), check_positive_int(steps, "steps")  # width = 0 divided by zero
    if isinstance(lr_exponent, bool) or not isinstance(lr_exponent, (int, float)) or not math.isfinite(lr_exponent):
        raise ValueError(f"lr_exponent must be a finite number, got {lr_exponent!r}")
    if not 0 <= warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction!r}")
    scale = (base.model.n_embd / width) ** lr_exponent
    return replace(base, model=replace(base.model, n_embd=width), max_steps=steps, decay_steps=0,
                   warmup_steps=int(warmup_fraction * steps), lr=base.lr * scale, min_lr=base.min_lr * scale)


def sweep(base: TrainConfig, data: TokenData, widths, steps, **kwargs) -> list[dict]:
    """Train :func:`run_config` ``(base, width, steps, **kwargs)`` for every pair of the grid.

    Returns:
        the :func:`train_point` records, widths in the outer loop and steps in the inner one.

    Book: :doc:`/notebooks/13_scaling_laws`
    """
    from tqdm.auto import tqdm
    grid = [(w, s) for w in widths for s in steps]
    if not grid:
        raise ValueError("widths and steps must both be non-empty")
    return [train_point(run_config(base, w, s, **kwargs), data) for w, s in tqdm(grid, desc="sweep", unit="run")]


def __getattr__(name: str):
    """The fit moved to :mod:`mathllm.scaling_fit`; ``from mathllm.scaling import fit_chinchilla`` still works."""
    if name in _MOVED_TO_FIT:
        from . import scaling_fit
        return getattr(scaling_fit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
