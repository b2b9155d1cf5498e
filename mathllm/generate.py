"""Autoregressive generation: greedy decoding, temperature, top-k and top-p (nucleus) sampling, a KV cache.

Shape legend (book/notation.md): B batch, T time, V vocabulary.

A language model gives logits z (B, V) for the next token. Sampling draws from
``softmax(z / tau)``: ``tau -> 0`` is greedy (argmax), ``tau = 1`` the model's distribution, ``tau > 1``
flatter. **Top-k** keeps the k largest logits (Fan et al. 2018); **top-p** keeps the smallest set
of most likely tokens whose probability adds up to at least p (Holtzman et al. 2020). The
filters are applied in that order (temperature, top-k, top-p), as in Hugging Face's samplers.

A **KV cache** stores the keys and values of the positions already seen, so each step runs the
model on one new token instead of the whole prefix: O(T) work per token instead of O(T^2), and
the same tokens (the cached keys are the ones the full pass would recompute). Once the text is
longer than the context, the uncached model sees a window that slides: each window starts at
position 0 again, so the cache is refilled from the window (the tokens stay identical).

:func:`generate` drives any model with ``block_size``, ``new_kv_caches()`` and
``next_logits(idx, kv_caches)``: :class:`mathllm.transformer.GPT`, and the decoder of
:class:`mathllm.encoder_decoder.EncoderDecoder` with its encoder output bound.
Leaves out: beam search, repetition penalties, min-p, speculative decoding, stop tokens.

Book: :doc:`/notebooks/11_transformer`
"""
from __future__ import annotations

import torch

from .checks import check_float_tensor, check_positive, check_positive_int, check_shape


# ---------------------------------------------------------------------------- filters
def _check_logits(logits: torch.Tensor) -> None:
    """(B, V) floating logits with no NaN or +inf and at least one finite entry per row."""
    check_shape(logits, "B V", name="logits")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got dtype {str(logits.dtype).replace('torch.', '')}")
    if logits.shape[-1] == 0:
        raise ValueError(f"logits must have at least one token, got shape {tuple(logits.shape)}")
    if torch.isnan(logits).any() or (logits == float("inf")).any():
        raise ValueError("logits hold NaN or +inf: no distribution to sample from (check the model's output)")
    if (logits == float("-inf")).all(dim=-1).any():
        raise ValueError("a row of logits is all -inf: no token is possible")


def top_k_logits(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest of ``logits`` (..., V), set the rest to -inf (ties with the k-th are kept)."""
    check_float_tensor(logits, "logits")
    check_positive_int(k, "top_k")
    if logits.dim() == 0 or logits.shape[-1] == 0:
        raise ValueError(f"logits must have shape (..., V) with V >= 1, got {tuple(logits.shape)}")
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1): the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_logits(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability sums to at least ``p``; the rest -> -inf.

    Sorted by probability, token i is kept when the mass of the tokens before it is below ``p``:
    the most likely token is always kept. ``logits`` (..., V) -> (..., V).
    """
    check_float_tensor(logits, "logits")
    if logits.dim() == 0 or logits.shape[-1] == 0:
        raise ValueError(f"logits must have shape (..., V) with V >= 1, got {tuple(logits.shape)}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p!r}")
    if p == 1.0:  # everything; a rounded cumulative sum could otherwise reach 1 early
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (..., V)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # (..., V): probability of the more likely tokens
    remove_sorted = mass_before >= p
    remove = remove_sorted.scatter(-1, order, remove_sorted)  # back to vocabulary order
    return logits.masked_fill(remove, float("-inf"))


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row from ``logits`` (B, V) -> (B,) int64.

    ``temperature=0`` is greedy decoding (argmax; top-k and top-p then change nothing); a tiny
    positive temperature tends to it without overflowing (z - max z is divided, never z).
    ``generator`` makes the draw reproducible; it must live on the device of ``logits``.
    """
    _check_logits(logits)
    check_positive(temperature, "temperature", allow_zero=True)
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float()
    # shift so the largest logit is 0, then divide: z / 1e-39 overflows to inf and softmax(inf) is nan,
    # (z - max z) / T only reaches -inf, where exp is 0; the ratio of probabilities is unchanged
    # a T below float32's smallest normal number would round to 0 (and 0 / 0 = nan): at that T the
    # draw is already greedy up to ties closer than 1e-38, so it is used instead
    temperature = max(temperature, torch.finfo(torch.float32).tiny)
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature
    if top_k is not None:
        logits = top_k_logits(logits, top_k)
    if top_p is not None:
        logits = top_p_logits(logits, top_p)
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)  # (B,)


# ---------------------------------------------------------------------------- the loop
@torch.no_grad()
def generate(model, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, use_cache: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Extend ``idx`` (B, T) by ``max_new_tokens`` tokens drawn with :func:`sample_next` -> (B, T + max_new_tokens).

    Without the cache every step reruns the model on the last ``block_size`` tokens; with it,
    on the new token only. Both give the same tokens (up to floating-point ties). The model's
    mode is left as it is: call ``model.eval()`` first if it has dropout.
    """
    missing = [a for a in ("block_size", "new_kv_caches", "next_logits") if not hasattr(model, a)]
    if missing:
        raise TypeError(f"model must have block_size, new_kv_caches() and next_logits() (a GPT), "
                        f"got {type(model).__name__} without {', '.join(missing)}")
    check_shape(idx, "B T", name="idx")
    check_positive(max_new_tokens, "max_new_tokens", allow_zero=True)
    check_positive(temperature, "temperature", allow_zero=True)
    if idx.shape[1] == 0:
        raise ValueError("idx must hold at least one token to condition on, got shape "
                         f"{tuple(idx.shape)}")
    block = model.block_size
    caches = model.new_kv_caches() if use_cache else None
    for _ in range(max_new_tokens):
        window = idx[:, -block:]  # (B, min(T, block)): what the model may see
        if caches is None:
            logits = model.next_logits(window)  # (B, V), the whole window recomputed
        else:
            seen = caches[0].length
            if seen == 0 or idx.shape[1] > block:  # first step, or the window slid: refill
                for c in caches:
                    c.reset()
                logits = model.next_logits(window, caches)
            else:
                logits = model.next_logits(idx[:, seen:], caches)  # (B, V): only the uncached tokens
        nxt = sample_next(logits, temperature, top_k, top_p, generator)  # (B,)
        idx = torch.cat([idx, nxt[:, None]], dim=1)  # (B, T) -> (B, T + 1)
    return idx
