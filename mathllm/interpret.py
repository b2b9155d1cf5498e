"""Looking inside a trained GPT: attention maps, the residual stream as a sum, the logit lens, probes, induction heads.

Shape legend (book/notation.md): B batch, T time, C channels, L layers, nh heads, V vocabulary,
N examples of a probe, K classes.

All readings are taken from the package's own :class:`~mathllm.transformer.GPT` with forward hooks
(:func:`run_with_trace`); nothing is copied. In a pre-norm GPT the stream after the last block is::

    x_L = x_0 + sum_l (attn_l + mlp_l)                         (the residual stream is a sum)
    logits = W_U norm_f(x_L)

so each sublayer's output is one additive contribution. With the final norm's scale frozen at its
value on ``x_L`` the logits split exactly into per-contribution terms (direct logit attribution), and
reading an intermediate ``x_l`` through ``W_U norm_f`` is the **logit lens** (nostalgebraist 2020).
An **induction head** (Olsson et al. 2022) attends from a token to the position after that token's
previous occurrence; on a random sequence repeated twice its **prefix-matching score** is the mean
attention to that position. **Attention rollout** (Abnar & Zuidema 2020) multiplies the head-averaged
attention matrices, each mixed half and half with the identity of the residual connection. A
**linear probe** (Alain & Bengio 2016) is a logistic regression on hidden states; its **control task**
(Hewitt & Liang 2019) gives each token type a random label, and **selectivity** is the accuracy on the
real task minus the accuracy on the control task.

References: Elhage et al., "A Mathematical Framework for Transformer Circuits" (2021); Olsson et al.,
"In-context Learning and Induction Heads" (2022); nostalgebraist, "interpreting GPT: the logit lens"
(2020); Abnar & Zuidema (2020); Alain & Bengio (2016); Hewitt & Liang (2019).
Leaves out: activation patching and causal tracing, sparse autoencoders, attention-head ablation
studies beyond the one of the chapter, probing classifiers other than linear.

Book: :doc:`/notebooks/16_interpretability`
"""
from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import MultiHeadAttention, causal_mask
from .checks import check_float_tensor, check_ids, check_positive_int, check_sequence, check_shape
from .layers import LayerNorm, RMSNorm
from .transformer import GPT


def _check_gpt(model) -> GPT:
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a mathllm.transformer.GPT, got {type(model).__name__}")
    return model


def _check_prenorm(model: GPT, what: str) -> None:
    if not model.config.prenorm:
        raise ValueError(f"{what} needs a pre-norm GPT (prenorm=True): in a post-norm block the stream is "
                         f"normalised after each sum, so it is no longer a sum of contributions")


# ---------------------------------------------------------------------------- attention-only models
class _NoMLP(nn.Module):
    """A sublayer that adds nothing to the residual stream."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def make_attention_only_(model: GPT) -> GPT:
    """Remove every MLP of ``model`` in place (each block then adds only its attention); returns it.

    ``GPTConfig`` has no switch for this, so the MLP sublayers are replaced by a zero map: the model
    stays a :class:`~mathllm.transformer.GPT`, every hook and function of this module works on it.
    Build the optimizer after calling this, so that it holds only the remaining parameters.
    """
    _check_gpt(model)
    _check_prenorm(model, "make_attention_only_")
    for block in model.blocks:
        block.mlp = _NoMLP()
        block.norm_mlp = nn.Identity()
    return model


# ---------------------------------------------------------------------------- reading the model
def attention_weights(attn: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """The attention probabilities of a self-attention module on its input ``x`` (B, T, C): (B, nh, T, T).

    ``softmax(q k^T / sqrt(hs))`` with the module's own projections, rotary positions and causal mask;
    row t is the distribution over the keys that query t reads.
    """
    if not isinstance(attn, MultiHeadAttention):
        raise TypeError(f"attn must be a MultiHeadAttention, got {type(attn).__name__}")
    B, T, C = check_shape(x, "B T C", name="x", C=attn.n_embd)
    q, k, _ = attn.qkv(x).split(C, dim=2)  # (B, T, C) x (C, 3C) -> 3 x (B, T, C)
    q, k = attn._heads(q), attn._heads(k)  # (B, nh, T, hs)
    if attn.rope is not None:
        q, k = attn.rope(q), attn.rope(k)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, nh, T, hs) x (B, nh, hs, T) -> (B, nh, T, T)
    if attn.causal:
        scores = scores.masked_fill(~causal_mask(T, device=x.device), float("-inf"))
    return torch.softmax(scores, dim=-1)


@dataclass(frozen=True)
class Trace:
    """What :func:`run_with_trace` records in one forward pass (L layers).

    Book: :doc:`/notebooks/16_interpretability`
    """

    resid: list[torch.Tensor]         # L + 1 of (B, T, C): the stream before block l; the last is after block L-1
    attn_out: list[torch.Tensor]      # L of (B, T, C): what each attention sublayer adds
    mlp_out: list[torch.Tensor]       # L of (B, T, C): what each MLP adds (zeros in an attention-only model)
    attn_weights: list[torch.Tensor]  # L of (B, nh, T, T)
    logits: torch.Tensor              # (B, T, V)


def run_with_trace(model: GPT, idx: torch.Tensor) -> Trace:
    """Run ``model`` on ``idx`` (B, T) without gradients and record the stream, the sublayer outputs and
    the attention weights of every layer with forward hooks (removed afterwards)."""
    _check_gpt(model)
    check_shape(idx, "B T", name="idx")
    rec = {"resid": [], "attn_out": [], "mlp_out": [], "attn_weights": []}
    hooks = []

    def save(key, fn):
        return lambda module, args, *out: rec[key].append(fn(args, *out).detach())

    for i, block in enumerate(model.blocks):
        hooks.append(block.register_forward_pre_hook(save("resid", lambda a: a[0])))
        hooks.append(block.attn.register_forward_pre_hook(
            save("attn_weights", lambda a, attn=block.attn: attention_weights(attn, a[0]))))
        hooks.append(block.attn.register_forward_hook(save("attn_out", lambda a, out: out)))
        hooks.append(block.mlp.register_forward_hook(save("mlp_out", lambda a, out: out)))
        if i == len(model.blocks) - 1:
            hooks.append(block.register_forward_hook(save("resid", lambda a, out: out)))
    try:
        with torch.no_grad():
            logits, _ = model(idx)
    finally:
        for h in hooks:
            h.remove()
    return Trace(logits=logits, **rec)


def residual_decomposition(model: GPT, trace: Trace) -> dict[str, torch.Tensor]:
    """The final residual stream as an ordered sum: ``{"embed": x_0, "attn 0": ..., "mlp 0": ..., ...}``.

    Each value is (B, T, C) and together they add up to ``trace.resid[-1]`` (pre-norm models only).
    """
    _check_prenorm(_check_gpt(model), "residual_decomposition")
    parts = {"embed": trace.resid[0]}
    for layer, (a, m) in enumerate(zip(trace.attn_out, trace.mlp_out)):
        parts[f"attn {layer}"] = a
        parts[f"mlp {layer}"] = m
    return parts


def logit_lens(model: GPT, trace: Trace) -> torch.Tensor:
    """Each residual stream read through the unembedding, ``W_U norm_f(x_l)``: (L + 1, B, T, V).

    The last entry is the model's output; earlier ones show what the stream would predict if the
    network stopped after layer l.
    """
    _check_prenorm(_check_gpt(model), "logit_lens")
    with torch.no_grad():
        return torch.stack([model.lm_head(model.norm_f(x)) for x in trace.resid])  # (L+1, B, T, C) x (C, V)


def direct_logit_attribution(model: GPT, trace: Trace, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each contribution's share of the logit of ``targets`` (B, T), with the final norm's scale frozen.

    LayerNorm is ``gamma (x - mean x) / s + beta`` with ``s`` the standard deviation of the whole stream;
    holding s fixed it is linear in x, so ``logit = sum_c W_U[y] . gamma (c - mean c) / s + W_U[y] . beta``
    over the contributions c of :func:`residual_decomposition` (RMSNorm: no centring, no beta).
    Returns ``{name: (B, T)}`` with a final ``"bias"`` entry; the values add up to the logits.
    """
    parts = residual_decomposition(model, trace)
    x = trace.resid[-1]
    B, T, C = x.shape
    check_shape(targets, "B T", name="targets", B=B, T=T)
    check_ids(targets, model.config.vocab_size, name="targets")
    norm = model.norm_f
    if isinstance(norm, LayerNorm):
        scale = torch.sqrt(x.var(dim=-1, unbiased=False, keepdim=True) + norm.eps)  # (B, T, 1)
        centre = True
    elif isinstance(norm, RMSNorm):
        scale = torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + norm.eps)
        centre = False
    else:
        raise TypeError(f"direct_logit_attribution knows LayerNorm and RMSNorm, the model has {type(norm).__name__}")
    with torch.no_grad():
        w = model.lm_head.weight[targets] * norm.weight  # (B, T, C): W_U[y] scaled by gamma
        out = {}
        for name, c in parts.items():
            if centre:
                c = c - c.mean(dim=-1, keepdim=True)
            out[name] = (w * c / scale).sum(-1)  # (B, T)
        bias = getattr(norm, "bias", None)
        out["bias"] = (model.lm_head.weight[targets] * bias).sum(-1) if bias is not None else x.new_zeros(B, T)
    return out


def token_losses(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """Cross-entropy in nats of predicting ``idx[:, t + 1]`` from ``idx[:, :t + 1]``: (B, T - 1)."""
    _check_gpt(model)
    B, T = check_shape(idx, "B T", name="idx")
    if T < 2:
        raise ValueError(f"idx needs at least 2 positions to predict one, got shape {(B, T)}")
    with torch.no_grad():
        logits, _ = model(idx)
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), idx[:, 1:], reduction="none")  # (B, V, T-1) vs (B, T-1)


@contextlib.contextmanager
def ablate_heads(model: GPT, heads: Iterable[tuple[int, int]]):
    """Inside the ``with`` block, the heads ``(layer, head)`` of ``model`` write nothing to the stream.

    A forward pre-hook on each layer's output projection zeroes the head's ``hs`` channels of the
    concatenated head outputs (B, T, C), so only the projection's bias is left of it. The hooks are
    removed on exit. Attention weights are unchanged: the head still looks, it just does not write.
    """
    _check_gpt(model)
    L, nh = model.config.n_layer, model.config.n_head
    hs = model.config.n_embd // nh
    by_layer: dict[int, list[int]] = {}
    for pair in heads:
        layer, head = pair
        if not (0 <= layer < L and 0 <= head < nh):
            raise ValueError(f"head {pair} does not exist: the model has layers 0..{L - 1} and heads 0..{nh - 1}")
        by_layer.setdefault(layer, []).append(head)

    def zero(module, args, heads_here):
        y = args[0].clone()  # (B, T, C): the heads side by side, head h in channels h*hs .. (h+1)*hs - 1
        for h in heads_here:
            y[..., h * hs:(h + 1) * hs] = 0
        return (y,) + tuple(args[1:])

    hooks = [model.blocks[layer].attn.proj.register_forward_pre_hook(
        lambda m, a, hh=tuple(hl): zero(m, a, hh)) for layer, hl in by_layer.items()]
    try:
        yield model
    finally:
        for h in hooks:
            h.remove()


# ---------------------------------------------------------------------------- induction heads
def repeated_tokens(batch: int, length: int, vocab_size: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``batch`` sequences of ``length`` uniform random tokens, each followed by itself: (batch, 2 length).

    The first half cannot be predicted (a model can do no better than ln V nats); the second half can,
    by copying, once a model has an induction head.
    """
    for name, v in (("batch", batch), ("length", length), ("vocab_size", vocab_size)):
        check_positive_int(v, name)
    first = torch.randint(vocab_size, (batch, length), generator=generator)  # (B, n)
    return torch.cat([first, first], dim=1)  # (B, 2n)


def repeated_sequence_stream(n_tokens: int, vocab_size: int, min_len: int, max_len: int, *,
                             generator: torch.Generator | None = None) -> torch.Tensor:
    """A 1-d stream of ``n_tokens`` made of random segments, each written twice in a row: (n_tokens,) int64.

    Segment lengths are uniform in ``[min_len, max_len]``, so the distance to the earlier copy varies and
    only a match on content (an induction head), not a fixed positional offset, predicts the copy.
    """
    for name, v in (("n_tokens", n_tokens), ("vocab_size", vocab_size), ("min_len", min_len), ("max_len", max_len)):
        check_positive_int(v, name)  # a float such as inf used to loop for ever
    if not min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    pieces, total = [], 0
    while total < n_tokens:
        n = int(torch.randint(min_len, max_len + 1, (1,), generator=generator))
        seg = torch.randint(vocab_size, (n,), generator=generator)
        pieces += [seg, seg]
        total += 2 * n
    return torch.cat(pieces)[:n_tokens]


def _check_weights(attn_weights) -> list[torch.Tensor]:
    if not isinstance(attn_weights, (list, tuple)) or not attn_weights:
        raise TypeError("attn_weights must be a non-empty list of (B, nh, T, T) tensors, one per layer")
    for a in attn_weights:
        check_shape(a, "B nh T T", name="attention weights")
    return list(attn_weights)


def prefix_matching_scores(attn_weights: list[torch.Tensor], length: int) -> torch.Tensor:
    """Mean attention from each token of the second copy to the token after its first occurrence: (L, nh).

    For weights of :func:`repeated_tokens` inputs (T = 2 length) the query at t >= length matches
    the key ``t - length + 1``: the token that followed the current one last time.
    """
    ws = _check_weights(attn_weights)
    if ws[0].shape[-1] != 2 * length:
        raise ValueError(f"weights over T={ws[0].shape[-1]} positions do not come from sequences of 2 x {length}")
    t = torch.arange(length, 2 * length)  # queries in the second copy
    return torch.stack([a[:, :, t, t - length + 1].mean(dim=(0, 2)) for a in ws])  # (L, nh)


def previous_token_scores(attn_weights: list[torch.Tensor]) -> torch.Tensor:
    """Mean attention from each position t >= 1 to t - 1: (L, nh). A previous-token head scores near 1."""
    ws = _check_weights(attn_weights)
    t = torch.arange(1, ws[0].shape[-1])
    return torch.stack([a[:, :, t, t - 1].mean(dim=(0, 2)) for a in ws])


# ---------------------------------------------------------------------------- attention as a graph
def attention_rollout(attn_weights: list[torch.Tensor], residual: bool = True) -> torch.Tensor:
    """Attention rollout: ``R = A_(L-1) ... A_1 A_0`` with ``A_l`` the head mean, mixed as ``(A + I) / 2``.

    Entry ``R[b, t, s]`` sums, over every path through the layers from position s to position t, the
    product of the edge weights; each ``A_l`` is a stochastic matrix, so each row of R sums to 1.
    Returns (B, T, T).
    """
    ws = _check_weights(attn_weights)
    T = ws[0].shape[-1]
    eye = torch.eye(T, dtype=ws[0].dtype, device=ws[0].device)
    R = eye.expand(ws[0].shape[0], T, T)
    for a in ws:
        A = a.mean(dim=1)  # (B, T, T): heads averaged
        if residual:
            A = (A + eye) / 2  # the skip connection as an edge from every position to itself
        R = A @ R  # (B, T, T) x (B, T, T) -> (B, T, T)
    return R


def causal_path_counts(T: int, n_layers: int, window: int | None = None) -> torch.Tensor:
    """Number of paths from position s (input) to position t (after ``n_layers`` layers): (T, T) int64.

    Each layer is a graph with an edge s -> t when t may attend to s, ``t - window < s <= t`` (all
    ``s <= t`` if ``window`` is None; the edge s = t also stands for the residual connection). The
    counts are the ``n_layers``-th power of the adjacency matrix; for full causal attention they are
    ``binomial(t - s + L - 1, L - 1)``, and a window w lets t reach back ``L (w - 1)`` positions.
    """
    for name, v in (("T", T), ("n_layers", n_layers)):
        check_positive_int(v, name)
    M = causal_mask(T).to(torch.int64)  # (T, T): M[t, s] = 1 if s <= t
    if window is not None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive int or None, got {window!r}")
        M = M.triu(diagonal=-(window - 1))  # keep s > t - window
    return torch.linalg.matrix_power(M, n_layers)


# ---------------------------------------------------------------------------- linear probes
@dataclass(frozen=True)
class ProbeResult:
    """A fitted linear probe: weights (K, C), bias (K,), and its accuracy on the training and test examples.

    Book: :doc:`/notebooks/16_interpretability`
    """

    weight: torch.Tensor
    bias: torch.Tensor
    train_accuracy: float
    test_accuracy: float


def fit_probe(X_train: torch.Tensor, y_train: torch.Tensor, X_test: torch.Tensor, y_test: torch.Tensor, *,
              n_classes: int | None = None, weight_decay: float = 1e-4, steps: int = 100) -> ProbeResult:
    """Multinomial logistic regression ``y ~ softmax(W x + b)`` on features (N, C) and labels (N,).

    Minimises the mean cross-entropy plus ``weight_decay |W|^2`` with L-BFGS from zero weights (a
    convex problem, so the result does not depend on a seed). Features are standardised with the
    training mean and deviation; the returned weights act on the standardised features.
    """
    N, C = check_shape(X_train, "N C", name="X_train")
    check_shape(y_train, "N", name="y_train", N=N)
    M, _ = check_shape(X_test, "M C", name="X_test", C=C)
    check_shape(y_test, "M", name="y_test", M=M)
    K = int(max(y_train.max(), y_test.max())) + 1 if n_classes is None else n_classes
    check_ids(y_train, K, name="y_train")
    check_ids(y_test, K, name="y_test")
    mean, std = X_train.mean(0), X_train.std(0).clamp_min(1e-8)
    Xtr, Xte = ((X_train - mean) / std).double(), ((X_test - mean) / std).double()
    W = torch.zeros(K, C, dtype=torch.float64, device=Xtr.device, requires_grad=True)
    b = torch.zeros(K, dtype=torch.float64, device=Xtr.device, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(Xtr @ W.T + b, y_train) + weight_decay * W.square().sum()  # (N, C) x (C, K)
        loss.backward()
        return loss

    opt.step(closure)
    W, b = W.detach(), b.detach()
    acc = lambda X, y: ((X @ W.T + b).argmax(1) == y).double().mean().item()
    return ProbeResult(weight=W, bias=b, train_accuracy=acc(Xtr, y_train), test_accuracy=acc(Xte, y_test))


def control_labels(tokens: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Hewitt & Liang's control task: every token type gets one label drawn from the empirical label distribution.

    ``tokens`` (N,) token ids, ``labels`` (N,) the real task's labels. Returns (N,): the label of each
    example's token type. The control task has the same label frequencies as the real one but
    depends on nothing but the current token, so a probe can only solve it by memorising types.
    """
    N = check_shape(tokens, "N", name="tokens")[0]
    check_shape(labels, "N", name="labels", N=N)
    types = torch.unique(tokens)
    draws = labels[torch.randint(N, (len(types),), generator=generator).to(labels.device)]  # as often as in labels
    lookup = torch.zeros(int(tokens.max()) + 1, dtype=labels.dtype, device=labels.device)
    lookup[types] = draws
    return lookup[tokens]


def offset_analogy_accuracy(E: torch.Tensor, pairs: list[tuple[int, int]]) -> float:
    """Is a relation one direction? For each pair (a, b), add the mean offset ``E[b'] - E[a']`` of the
    *other* pairs to ``E[a]`` and check that the nearest row of ``E`` (V, C), by cosine, a excluded, is b.

    Returns the fraction of pairs predicted correctly (leave-one-out); chance is about 1 / V.
    """
    check_float_tensor(E, "E")
    V, _ = check_shape(E, "V C", name="E")
    check_sequence(pairs, "pairs")
    for p in pairs:
        if not isinstance(p, (tuple, list)) or len(p) != 2 or not all(
                isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in p):
            raise TypeError(f"pairs must hold (a, b) pairs of int row ids, got {p!r}"[:200])
    if len(pairs) < 2:
        raise ValueError(f"need at least 2 pairs for a leave-one-out offset, got {len(pairs)}")
    a = torch.tensor([p[0] for p in pairs], device=E.device)
    b = torch.tensor([p[1] for p in pairs], device=E.device)
    check_ids(a, V, name="pairs")
    check_ids(b, V, name="pairs")
    diffs = E[b] - E[a]  # (P, C)
    offsets = (diffs.sum(0) - diffs) / (len(pairs) - 1)  # (P, C): mean of the other pairs
    query = F.normalize(E[a] + offsets, dim=1)  # (P, C)
    sims = query @ F.normalize(E, dim=1).T  # (P, C) x (C, V) -> (P, V)
    sims[torch.arange(len(pairs), device=E.device), a] = float("-inf")
    return (sims.argmax(1) == b).double().mean().item()
