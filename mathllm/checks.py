"""Input checks that fail with a message naming what was expected and what arrived.

``check_shape(x, "B T C", C=64)`` reads the shape legend of book/notation.md: each name is one
dimension, names bound by keyword must match exactly, repeated names must agree, and the
function returns the sizes it read so callers can unpack them (``B, T, C = check_shape(...)``).
Used by every public function that takes tensors; ``assert`` is kept for internal invariants.

Book: book/notation.md.
"""
from __future__ import annotations

import math
import numbers

import torch


def check_tensor(x, name: str = "x") -> torch.Tensor:
    """Raise TypeError unless ``x`` is a torch.Tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_float_tensor(x, name: str = "x") -> torch.Tensor:
    """Raise TypeError unless ``x`` is a floating-point torch.Tensor (not bool, not integer ids)."""
    check_tensor(x, name)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {str(x.dtype).replace('torch.', '')}")
    return x


def check_shape(x: torch.Tensor, dims: str, name: str = "x", **sizes: int) -> tuple[int, ...]:
    """Check that ``x`` has the dimensions named in ``dims`` (space separated) and return their sizes.

    Example: ``B, T = check_shape(idx, "B T", name="idx", T=8)``.
    """
    check_tensor(x, name)
    if not isinstance(dims, str):
        raise TypeError(f"dims must be a str of dimension names such as 'B T C', got {type(dims).__name__}")
    names = dims.split()
    if x.dim() != len(names):
        raise ValueError(f"{name} must have shape ({', '.join(names)}), a {len(names)}-d tensor; "
                         f"got {x.dim()}-d shape {tuple(x.shape)}")
    seen: dict[str, int] = {}
    for dim_name, size in zip(names, x.shape):
        want = sizes.get(dim_name, seen.get(dim_name))
        if want is not None and size != want:
            raise ValueError(f"{name} must have shape ({', '.join(names)}) with {dim_name}={want}; "
                             f"got shape {tuple(x.shape)}")
        seen[dim_name] = size
    return tuple(x.shape)


def check_dtype(x: torch.Tensor, allowed: tuple[torch.dtype, ...] | torch.dtype, name: str = "x") -> torch.Tensor:
    """Raise TypeError unless ``x.dtype`` is one of ``allowed``."""
    check_tensor(x, name)
    allowed = allowed if isinstance(allowed, tuple) else (allowed,)
    if x.dtype not in allowed:
        want = " or ".join(str(d).replace("torch.", "") for d in allowed)
        raise TypeError(f"{name} must have dtype {want}, got {str(x.dtype).replace('torch.', '')}")
    return x


def check_ids(ids: torch.Tensor, vocab_size: int, name: str = "ids") -> torch.Tensor:
    """Token ids must be an integer tensor with every value in ``[0, vocab_size)``."""
    check_tensor(ids, name)
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"{name} must be an integer tensor of token ids, got dtype {str(ids.dtype).replace('torch.', '')}")
    if ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= vocab_size:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name} holds token id {bad}, outside the vocabulary [0, {vocab_size})")
    return ids


def check_positive_int(value, name: str) -> int:
    """Raise ValueError unless ``value`` is an int >= 1 (a bool is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_positive(value, name: str, *, allow_zero: bool = False):
    """Raise unless ``value`` is a finite number > 0 (or >= 0 with ``allow_zero``).

    NaN and +-inf are rejected: NaN fails every comparison, so ``value < 0`` alone would let it through.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):  # an int is always finite
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


# ---------------------------------------------------------------------------- more checks
def check_str(value, name: str) -> str:
    """Raise TypeError unless ``value`` is a str."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    return value


def check_nonnegative_int(value, name: str) -> int:
    """Raise ValueError unless ``value`` is an int >= 0 (a seed, an index; a bool is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


def check_sequence(value, name: str) -> list | tuple:
    """Raise TypeError unless ``value`` is a list or a tuple (not a str, a tensor or a number)."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list or tuple, got {type(value).__name__}")
    return value


def check_instance(value, types: type | tuple[type, ...], name: str):
    """Raise TypeError unless ``value`` is an instance of ``types`` (e.g. ``nn.Module``, a config class)."""
    if not isinstance(value, types):
        want = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        article = "an" if want[0].lower() in "aeiou" else "a"
        raise TypeError(f"{name} must be {article} {want}, got {type(value).__name__}")
    return value


def check_number(value, name: str, *, low: float = -math.inf, high: float = math.inf,
                 low_open: bool = False, high_open: bool = False):
    """Raise unless ``value`` is a finite real number in the interval from ``low`` to ``high``.

    ``low_open``/``high_open`` exclude the end point. TypeError for a non-number (a bool is not a
    number); ValueError for NaN, +-inf or a value outside. numpy scalars pass and are returned as
    given, so a float32 step keeps a float32 computation in float32.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    inside = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not (math.isfinite(value) and inside):  # NaN fails every comparison; inf is refused explicitly
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or high == math.inf else ']'}"
        if low == -math.inf:
            interval = "(-inf" + interval[interval.index(","):]
        raise ValueError(f"{name} must be a finite number in {interval}, got {value}")
    return value


def check_int(value, name: str, *, low: int = 0, high: int | None = None) -> int:
    """Raise ValueError unless ``value`` is an int in ``[low, high]`` (a bool is not a count), as check_positive_int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
            high is not None and value > high):
        want = f"an int >= {low}" if high is None else f"an int in [{low}, {high}]"
        raise ValueError(f"{name} must be {want}, got {value!r}")
    return int(value)


def check_callable(f, name: str = "f"):
    """Raise TypeError unless ``f`` is callable (a function, a module, an object with ``__call__``)."""
    if not callable(f):
        raise TypeError(f"{name} must be callable, got {type(f).__name__}")
    return f


def check_finite(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Raise ValueError if the tensor ``x`` holds NaN or +-inf (for inputs an SVD or solver cannot take)."""
    check_tensor(x, name)
    if x.is_floating_point() or x.is_complex():
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise ValueError(f"{name} must be finite, got {bad} NaN or infinite entries of {x.numel()}")
    return x


# (add new shared validators above this line)
