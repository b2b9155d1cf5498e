"""The runtime switch: device, mixed-precision dtype, seeding and the compute budget.

Every chapter reads its sizes through :func:`pick`, so the same notebook runs a small
configuration on a laptop CPU (and in CI) and the full one on a GPU, with no edits.
The budget is chosen automatically (``full`` when CUDA is available, else ``small``) and
overridden by one environment variable, ``MATHLLM_BUDGET``. A second one, ``MATHLLM_SEED`` (an
integer, default 0), shifts every seed a chapter uses (:func:`seed`), so that every claim of the
book can be checked on other random draws without an edit. This module is the only place in the
package that reads an environment variable for configuration.

Book: book/intro.md, section "The budget switch".
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

BUDGETS = ("small", "full")
BUDGET_ENV = "MATHLLM_BUDGET"
DEVICES = ("auto", "cuda", "mps", "cpu")


# ---------------------------------------------------------------------------- device
def _mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def get_device(name: str = "auto") -> torch.device:
    """The device to compute on.

    ``"auto"`` picks CUDA, then Apple's MPS, then the CPU. A device asked for by name that is
    not available is an error, never a silent fallback to the CPU. ``"cuda:1"`` style indices
    are accepted.
    """
    if not isinstance(name, str):
        raise TypeError(f"device name must be a str such as 'auto' or 'cuda', got {type(name).__name__}")
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise ValueError(f"unknown device {name!r}: expected one of {', '.join(DEVICES)} (optionally 'cuda:N')")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for, but torch.cuda.is_available() is False "
                           f"(torch {torch.__version__}); use device='auto' or 'cpu'")
    if kind == "mps" and not _mps_available():
        raise RuntimeError("device 'mps' was asked for, but torch.backends.mps.is_available() is False; "
                           "use device='auto' or 'cpu'")
    return torch.device(name)


def autocast_dtype(device: torch.device | str) -> torch.dtype:
    """The mixed-precision dtype for ``device``: bf16 where the GPU supports it, else fp16, else fp32.

    fp16 has a 5-bit exponent (largest finite value 65504, smallest normal 6.1e-5), so small
    gradients underflow; it is used with a gradient scaler (:func:`needs_grad_scaler`). bf16 keeps
    fp32's 8-bit exponent and needs no scaling. On the CPU we train in fp32. A GPU that only
    emulates bf16 (a T4 or a V100, compute capability below 8.0) counts as without it: emulated
    bf16 matmuls are several times slower than its fp16 tensor cores.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if _native_bf16() else torch.float16
    return torch.float32


def _native_bf16() -> bool:
    try:  # torch >= 2.3 reports emulated bf16 as supported unless asked not to
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:
        return torch.cuda.is_bf16_supported()


def needs_grad_scaler(dtype: torch.dtype) -> bool:
    """Whether training in ``dtype`` needs loss scaling (only fp16: its range is too narrow)."""
    return dtype == torch.float16


# ---------------------------------------------------------------------------- seeding
SEED_ENV = "MATHLLM_SEED"
SEED_STRIDE = 1_000_003  # a prime: shifted seeds of one run never coincide with another run's small seeds


def seed_offset() -> int:
    """``MATHLLM_SEED`` as an int (0 when unset): which draw of the book's randomness to run."""
    raw = os.environ.get(SEED_ENV, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{SEED_ENV}={raw!r} is not a seed: expected a non-negative integer") from None
    if value < 0:
        raise ValueError(f"{SEED_ENV}={raw!r} is not a seed: expected a non-negative integer")
    return value


def seed(n: int) -> int:
    """The seed a chapter should use where it writes ``n``: ``n`` itself unless ``MATHLLM_SEED`` is set.

    With ``MATHLLM_SEED=k`` every seed becomes ``n + k * SEED_STRIDE``: each chapter's random
    streams stay distinct from one another, and the whole book runs on a different draw.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"seed must be a non-negative int, got {n!r}")
    k = seed_offset()
    return n if k == 0 else n + k * SEED_STRIDE


def generator(n: int, device: torch.device | str | None = None) -> torch.Generator:
    """A torch Generator seeded with :func:`seed` ``(n)``, on ``device`` (the CPU by default)."""
    g = torch.Generator() if device is None else torch.Generator(device=device)
    return g.manual_seed(seed(n))


def manual_seed(n: int) -> torch.Generator:
    """``torch.manual_seed(seed(n))``: seed torch's global generators (CPU and every CUDA device)."""
    return torch.manual_seed(seed(n))


def seed_everything(n: int, *, shift: bool = True) -> torch.Generator:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) generators; return a fresh torch Generator.

    The seed is :func:`seed` ``(n)`` (shifted by ``MATHLLM_SEED``) unless ``shift=False``, which a
    program with its own ``--seed`` option uses so that the number it was given is the one used.
    The returned generator is seeded with the same value; pass it to functions that take a
    ``generator=`` argument to keep their randomness independent of everything else.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"seed must be a non-negative int, got {n!r}")
    value = seed(n) if shift else n
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)  # also seeds every CUDA device
    return torch.Generator().manual_seed(value)


# ---------------------------------------------------------------------------- budget
def budget() -> str:
    """The compute budget: ``MATHLLM_BUDGET`` if set, else ``"full"`` with CUDA and ``"small"`` without.

    An unknown value is an error: a typo must not silently run the wrong size.
    """
    value = os.environ.get(BUDGET_ENV, "").strip().lower()
    if not value:
        return "full" if torch.cuda.is_available() else "small"
    if value not in BUDGETS:
        raise ValueError(f"{BUDGET_ENV}={os.environ[BUDGET_ENV]!r} is not a budget: expected one of {', '.join(BUDGETS)}")
    return value


def pick(*, small, full):
    """Return ``small`` or ``full`` according to :func:`budget`.

    Chapters write their sizes as ``steps = pick(small=200, full=5000)``.
    """
    return small if budget() == "small" else full


def describe() -> str:
    """One line saying what this runtime will use, for the top of each chapter."""
    dev = get_device()
    line = (f"torch {torch.__version__} | device {dev} | "
            f"autocast {str(autocast_dtype(dev)).replace('torch.', '')} | budget {budget()}")
    k = seed_offset()
    return line if k == 0 else f"{line} | {SEED_ENV}={k}"
