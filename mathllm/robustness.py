"""Adversarial perturbations of a language model's input that change its next-token prediction.

Two attacks on the prediction at the last position of a context ``idx`` (T,):

1. **In embedding space** (:func:`deepfool`): the smallest offset ``delta`` (T, C) added to the input
   embeddings that changes the top-1 token, found by DeepFool (Moosavi-Dezfooli, Fawzi and Frossard,
   CVPR 2016). Linearise the logit differences ``f_k = z_k - z_{k0}`` around the current point; the
   nearest linearised boundary is at distance ``|f_k| / ||grad f_k||``; step there, repeat until the
   prediction changes. For an affine model one step is exact; for a network it gives an upper bound
   on the smallest perturbation, which :func:`shrink` tightens along the direction found.
2. **Token substitutions** (:func:`hotflip`): replacing token ``a`` at position ``i`` by ``v`` moves the
   input embedding by ``E[v] - E[a]``, so the first-order change of the margin
   ``m = z_{k0} - max_{k != k0} z_k`` is ``grad_i m . (E[v] - E[a])`` for every ``(i, v)`` at once
   (HotFlip, Ebrahimi, Rao, Lowd and Dou, ACL 2018). The best few are evaluated exactly and the best
   one is kept; this repeats until the prediction flips.

Both work through a forward hook on the token embedding (:func:`embedding_offset`), so the model's
own forward pass is used unchanged; the model needs a ``token_embedding`` (an ``nn.Embedding``) and a
forward that maps (B, T) ids to (B, T, V) logits (or a tuple starting with them), as
:class:`mathllm.transformer.GPT`.

Leaves out: projected gradient attacks with norm budgets, universal triggers (Wallace et al. 2019),
the greedy coordinate gradient attack on aligned chat models (Zou et al. 2023), certified defences.

Book: :doc:`/notebooks/17_evaluation`
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .checks import (check_float_tensor, check_ids, check_instance, check_int, check_positive_int, check_shape,
                     check_tensor)


# ---------------------------------------------------------------------------- helpers
def _check_model(model) -> torch.nn.Embedding:
    emb = getattr(model, "token_embedding", None)
    if not isinstance(emb, torch.nn.Embedding):
        raise TypeError(f"model must have a token_embedding nn.Embedding (as mathllm.transformer.GPT), "
                        f"got {type(model).__name__}")
    if model.training:
        raise ValueError("call model.eval() first: dropout would make every forward pass different")
    return emb


def _check_idx(model, idx: torch.Tensor) -> int:
    (T,) = check_shape(idx, "T", name="idx")
    check_ids(idx, _check_model(model).num_embeddings, name="idx")
    return T


@contextlib.contextmanager
def embedding_offset(model, delta: torch.Tensor):
    """Inside the ``with`` block, ``model.token_embedding(idx)`` returns ``E[idx] + delta``.

    ``delta`` broadcasts against the (B, T, C) embeddings: (T, C) offsets every row alike, (B, T, C)
    each row by its own. Gradients flow to ``delta``.
    """
    emb = _check_model(model)
    check_tensor(delta, "delta")
    if delta.dim() not in (2, 3) or delta.shape[-1] != emb.embedding_dim:
        raise ValueError(f"delta must have shape (T, C) or (B, T, C) with C={emb.embedding_dim}, got {tuple(delta.shape)}")
    handle = emb.register_forward_hook(lambda module, inputs, out: out + delta)
    try:
        yield
    finally:
        handle.remove()


def last_logits(model, idx: torch.Tensor) -> torch.Tensor:
    """Logits (B, V) of the token after each row of ``idx`` (B, T)."""
    check_instance(model, torch.nn.Module, "model")
    out = model(idx)
    logits = out[0] if isinstance(out, tuple) else out
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        raise ValueError(f"model must map (B, T) ids to (B, T, V) logits (or a tuple starting with them), "
                         f"got {tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
    return logits[:, -1]


def margin(logits: torch.Tensor, label: int) -> torch.Tensor:
    """``z_label - max_{k != label} z_k`` for each row of (B, V) logits: (B,); negative once another token wins."""
    check_float_tensor(logits, "logits")
    B, V = check_shape(logits, "B V", name="logits")
    check_int(label, "label")
    if V < 2 or not 0 <= label < V:
        raise ValueError(f"label must be a token id in [0, V) of V >= 2 logits (a margin needs a rival), "
                         f"got label {label} for logits of shape {(B, V)}")
    others = logits.clone()
    others[:, label] = -float("inf")
    return logits[:, label] - others.max(-1).values


# ---------------------------------------------------------------------------- embedding space
@dataclass(frozen=True)
class EmbeddingAttack:
    """The outcome of :func:`deepfool`."""

    delta: torch.Tensor    # (T, C) offset added to the input embeddings
    norm: float            # ||delta||_F
    relative_norm: float   # ||delta||_F / ||E[idx]||_F
    original: int          # top-1 token of the clean input
    adversarial: int       # top-1 token with the offset (differs from original when success)
    iterations: int
    success: bool


@torch.no_grad()
def _top1(model, idx: torch.Tensor, delta: torch.Tensor) -> int:
    with embedding_offset(model, delta):
        return int(last_logits(model, idx[None]).argmax(-1))


def shrink(model, idx: torch.Tensor, delta: torch.Tensor, *, steps: int = 20) -> torch.Tensor:
    """The smallest multiple ``s delta`` (0 < s <= 1, by bisection) that still changes the top-1 token of ``idx``.

    Returns ``delta`` unchanged if it does not change the prediction.
    """
    _check_idx(model, idx)
    k0 = _top1(model, idx, torch.zeros_like(delta))
    if _top1(model, idx, delta) == k0:
        return delta
    lo, hi = 0.0, 1.0                          # invariant: s = hi flips, s = lo does not
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if _top1(model, idx, mid * delta) != k0 else (mid, hi)
    return hi * delta


def deepfool(model, idx: torch.Tensor, *, candidates: int = 10, overshoot: float = 0.02, max_iter: int = 50,
             refine: bool = True) -> EmbeddingAttack:
    """A small input-embedding offset that changes the model's next-token prediction after ``idx``.

    Args:
        model: a GPT-like model in eval mode (see the module docstring).
        idx: (T,) int64 context.
        candidates: the classes considered at each step: the ``candidates`` highest logits besides the
            current top-1 (all ``V - 1`` when ``candidates >= V - 1``).
        overshoot: each check uses ``(1 + overshoot) r``, so the point lands past the boundary.
        refine: shorten the final offset along its direction with :func:`shrink`.

    Book: :doc:`/notebooks/17_evaluation`
    """
    T = _check_idx(model, idx)
    emb = model.token_embedding
    C, V = emb.embedding_dim, emb.num_embeddings
    check_positive_int(candidates, "candidates")
    K = min(candidates, V - 1)
    r = torch.zeros(T, C, dtype=emb.weight.dtype, device=emb.weight.device)
    k0 = _top1(model, idx, r)
    it = 0
    for it in range(1, max_iter + 1):
        delta = ((1 + overshoot) * r)[None].repeat(K, 1, 1).requires_grad_(True)   # (K, T, C), one copy per class
        with torch.enable_grad(), embedding_offset(model, delta):
            z = last_logits(model, idx[None].repeat(K, 1))                          # (K, V), identical rows
            rivals = z[0].detach().clone()
            rivals[k0] = -float("inf")
            ks = rivals.topk(K).indices                                              # (K,) closest rival classes
            f = z[torch.arange(K), ks] - z[:, k0]                                    # (K,) f_k = z_k - z_k0
            (w,) = torch.autograd.grad(f.sum(), delta)                               # (K, T, C): row j is grad f_{k_j}
        f = f.detach()
        if (f > 0).any():
            break                                                                    # another class already wins
        wn = w.flatten(1).norm(dim=1).clamp(min=1e-12)                               # (K,)
        j = int((f.abs() / wn).argmin())                                             # nearest linearised boundary
        r = r + (f[j].abs() + 1e-6) / wn[j] ** 2 * w[j]                              # step onto it
        if _top1(model, idx, (1 + overshoot) * r) != k0:
            break
    delta = ((1 + overshoot) * r).detach()
    if refine:
        delta = shrink(model, idx, delta)
    adv = _top1(model, idx, delta)
    base = emb.weight.detach()[idx].norm()
    norm = float(delta.norm())
    return EmbeddingAttack(delta, norm, norm / float(base), k0, adv, it, adv != k0)


def flip_norm_along(model, idx: torch.Tensor, direction: torch.Tensor, max_norm: float, *, grid: int = 24,
                    steps: int = 20) -> float:
    """The smallest ``t <= max_norm`` at which the offset ``t * direction / ||direction||`` changes the
    top-1 token, found on a geometric grid and refined by bisection; ``inf`` if none up to ``max_norm``.

    Book: :doc:`/notebooks/17_evaluation`
    """
    _check_idx(model, idx)
    u = direction / direction.norm()
    k0 = _top1(model, idx, torch.zeros_like(u))
    ts = torch.logspace(-3, 0, grid).tolist()
    prev = 0.0
    for s in ts:
        if _top1(model, idx, s * max_norm * u) != k0:
            lo, hi = prev, s * max_norm
            for _ in range(steps):
                mid = (lo + hi) / 2
                lo, hi = (lo, mid) if _top1(model, idx, mid * u) != k0 else (mid, hi)
            return hi
        prev = s * max_norm
    return float("inf")


# ---------------------------------------------------------------------------- token substitutions
@torch.no_grad()
def substitution_margins(model, idx: torch.Tensor, label: int | None = None, batch_size: int = 512) -> torch.Tensor:
    """The exact margin of ``label`` (default: the clean top-1) after every single substitution.

    Returns:
        (T, V) float: entry ``[i, v]`` is the margin with ``idx[i]`` replaced by ``v`` (the clean margin
        where ``v == idx[i]``). ``T V`` forward passes, batched.
    """
    T = _check_idx(model, idx)
    V = model.token_embedding.num_embeddings
    if label is None:
        label = int(last_logits(model, idx[None]).argmax(-1))
    variants = idx[None, None].repeat(T, V, 1)                                      # (T, V, T)
    pos = torch.arange(T)
    variants[pos, :, pos] = torch.arange(V, device=idx.device)                       # row (i, v): idx with [i] = v
    flat = variants.reshape(T * V, T)
    out = torch.cat([margin(last_logits(model, flat[s:s + batch_size]), label)
                     for s in range(0, T * V, batch_size)])
    return out.view(T, V)


def first_order_margins(model, idx: torch.Tensor, label: int | None = None) -> torch.Tensor:
    """HotFlip's estimate of :func:`substitution_margins`: ``m + grad_i m . (E[v] - E[idx_i])``, (T, V)."""
    T = _check_idx(model, idx)
    E = model.token_embedding.weight                                                  # (V, C)
    delta = torch.zeros(T, E.shape[1], dtype=E.dtype, device=E.device, requires_grad=True)
    with torch.enable_grad(), embedding_offset(model, delta):
        z = last_logits(model, idx[None])                                             # (1, V)
        label = int(z.argmax(-1)) if label is None else label
        m = margin(z, label)[0]
        (g,) = torch.autograd.grad(m, delta)                                          # (T, C) d m / d e_i
    E = E.detach()
    change = g @ E.T - (g * E[idx]).sum(-1, keepdim=True)                             # (T, C) x (C, V) - (T, 1) -> (T, V)
    return m.detach() + change


@dataclass(frozen=True)
class TokenAttack:
    """The outcome of :func:`hotflip`."""

    ids: torch.Tensor             # (T,) the context after the substitutions
    positions: tuple[int, ...]    # positions changed, in order
    margins: tuple[float, ...]    # margin of the original top-1 after each substitution
    original: int                 # top-1 token of the clean context
    adversarial: int              # top-1 token of the attacked context
    success: bool


def hotflip(model, idx: torch.Tensor, *, max_flips: int = 3, beam: int = 8, allowed: torch.Tensor | None = None,
            positions: torch.Tensor | None = None) -> TokenAttack:
    """Substitute up to ``max_flips`` tokens of ``idx`` (T,), chosen by gradient, to change the next-token prediction.

    Each round ranks every ``(position, token)`` by :func:`first_order_margins`, evaluates the ``beam``
    best exactly and keeps the one with the lowest margin; a position is changed at most once.
    ``allowed`` (V,) bool restricts the replacement tokens and ``positions`` (T,) bool the positions.

    Book: :doc:`/notebooks/17_evaluation`
    """
    T = _check_idx(model, idx)
    V = model.token_embedding.num_embeddings
    for name, value in (("max_flips", max_flips), ("beam", beam)):
        check_positive_int(value, name)
    if allowed is not None:
        check_shape(allowed, "V", name="allowed", V=V)
    if positions is not None:
        check_shape(positions, "T", name="positions", T=T)
    with torch.no_grad():
        k0 = int(last_logits(model, idx[None]).argmax(-1))
    ids, changed, margins = idx.clone(), [], []
    for _ in range(max_flips):
        est = first_order_margins(model, ids, k0)                                     # (T, V)
        est[torch.arange(T), ids] = float("inf")                                      # not a substitution
        if changed:
            est[changed] = float("inf")
        if allowed is not None:
            est[:, ~allowed] = float("inf")
        if positions is not None:
            est[~positions] = float("inf")
        best = est.flatten().topk(min(beam, est.numel()), largest=False).indices      # (beam,) flat (i, v)
        best = best[torch.isfinite(est.flatten()[best])]
        if best.numel() == 0:
            break
        tries = ids[None].repeat(len(best), 1)                                        # (beam, T)
        tries[torch.arange(len(best)), best // V] = best % V
        with torch.no_grad():
            exact = margin(last_logits(model, tries), k0)                             # (beam,)
        j = int(exact.argmin())
        ids = tries[j]
        changed.append(int(best[j] // V))
        margins.append(float(exact[j]))
        if exact[j] < 0:
            break
    with torch.no_grad():
        adv = int(last_logits(model, ids[None]).argmax(-1))
    return TokenAttack(ids, tuple(changed), tuple(margins), k0, adv, adv != k0)
