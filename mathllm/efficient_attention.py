"""Efficient attention: sparse patterns, low-rank and random-feature approximations, and exact blockwise attention.

Shape legend (book/notation.md): ``...`` batch and head dimensions, T query positions, S key
positions, hs head size, hv value size. Dense attention costs O(T S hs) time and O(T S) memory.

* Sliding-window and strided sparse attention (Child et al. 2019, Sparse Transformer): each query
  attends to a fixed set of K keys, gathered by index, so time and memory are O(T K hs). With a
  window of ``stride`` and every ``stride``-th earlier key, K is about 2 sqrt(T) when
  ``stride = sqrt(T)``: O(T sqrt(T)). Exact on the pattern, approximate as attention.
* Linformer (Wang et al. 2020): project keys and values along the sequence with (r, S) matrices,
  softmax(Q (E K)^T / sqrt(hs)) (F V): O(T r hs), linear in T for fixed r. Non-causal.
* Performer FAVOR+ (Choromanski et al. 2021): positive random features with
  E[phi(x)^T phi(y)] = exp(x^T y), so softmax attention becomes phi(Q) (phi(K)^T V) normalised:
  O(T m hs) for m features, linear in T.
* Blockwise attention with an online softmax (Milakov and Gimelshein 2018; Rabe and Staats 2021;
  Dao et al. 2022, FlashAttention): the exact result, computed block by block with a running
  maximum and sum, so no (T, S) matrix is ever stored. Time stays O(T S hs); memory is
  O(block^2 + T hv).

:func:`peak_memory` measures the bytes of tensors alive during a call, on any device.

Leaves out: learned projections and features (the chapter fixes them at random), fused kernels,
causal Linformer, the backward pass of blockwise attention (autograd differentiates the loop).

Book: :doc:`/notebooks/10_attention`
"""
from __future__ import annotations

import math
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .attention import _check_qkv, masked_softmax
from .checks import check_dtype, check_float_tensor, check_positive_int, check_tensor


# ---------------------------------------------------------------------------- sparse patterns
def sliding_window_mask(T: int, window: int) -> torch.Tensor:
    """(T, T) bool: query t may attend to keys t - window + 1 .. t (causal, ``window`` keys)."""
    check_positive_int(T, "T"), check_positive_int(window, "window")
    d = torch.arange(T)[:, None] - torch.arange(T)[None, :]  # (T, T): t - j
    return (d >= 0) & (d < window)


def strided_mask(T: int, stride: int) -> torch.Tensor:
    """(T, T) bool: the causal strided pattern, keys within ``stride`` of t or a multiple of ``stride`` back."""
    check_positive_int(T, "T"), check_positive_int(stride, "stride")
    d = torch.arange(T)[:, None] - torch.arange(T)[None, :]  # (T, T): t - j
    return (d >= 0) & ((d < stride) | (d % stride == 0))


def sliding_window_index(T: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (T, window) of the keys of each query in :func:`sliding_window_mask`, and which are valid."""
    check_positive_int(T, "T"), check_positive_int(window, "window")
    idx = torch.arange(T)[:, None] - torch.arange(window)[None, :]  # (T, window): t, t-1, ..., t-window+1
    return idx.clamp(min=0), idx >= 0


def strided_index(T: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (T, K) and validity of the keys of :func:`strided_mask`; K = stride + ceil(T / stride) - 1."""
    check_positive_int(T, "T"), check_positive_int(stride, "stride")
    back = torch.cat([torch.arange(stride), stride * torch.arange(1, math.ceil(T / stride))])  # (K,): offsets t - j
    idx = torch.arange(T)[:, None] - back[None, :]  # (T, K)
    return idx.clamp(min=0), idx >= 0


def sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     index: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Attention of each query t over the keys ``index[t]`` only (those with ``valid[t]`` True).

    q (..., T, hs), k (..., S, hs), v (..., S, hv), index and valid (T, K). Returns (..., T, hv).
    Time and memory O(T K hs): the (T, S) score matrix is never formed.
    """
    _check_qkv(q, k, v)
    check_dtype(check_tensor(index, "index"), (torch.int64, torch.int32), "index")
    check_dtype(check_tensor(valid, "valid"), torch.bool, "valid")
    if index.shape != valid.shape or index.dim() != 2 or index.shape[0] != q.shape[-2]:
        raise ValueError(f"index and valid must both have shape (T={q.shape[-2]}, K), got {tuple(index.shape)} and {tuple(valid.shape)}")
    kk, vv = k[..., index, :], v[..., index, :]  # (..., S, hs)[index] -> (..., T, K, hs), (..., T, K, hv)
    att = (q.unsqueeze(-2) @ kk.transpose(-2, -1)).squeeze(-2)  # (..., T, 1, hs) x (..., T, hs, K) -> (..., T, K)
    att = masked_softmax(att / math.sqrt(q.shape[-1]), valid)  # a query with no valid key gets weight 0
    return (att.unsqueeze(-2) @ vv).squeeze(-2)  # (..., T, 1, K) x (..., T, K, hv) -> (..., T, hv)


# ---------------------------------------------------------------------------- low rank
def linformer_projection(r: int, S: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(r, S) random projection with N(0, 1/r) entries (Johnson-Lindenstrauss); Linformer learns it."""
    check_positive_int(r, "r"), check_positive_int(S, "S")
    return torch.randn(r, S, generator=generator) / math.sqrt(r)


def linformer_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        E: torch.Tensor, F: torch.Tensor) -> torch.Tensor:
    """softmax(Q (E K)^T / sqrt(hs)) (F V): q (..., T, hs), k (..., S, hs), v (..., S, hv), E, F (r, S)."""
    _check_qkv(q, k, v)
    check_float_tensor(E, "E"), check_float_tensor(F, "F")
    S = k.shape[-2]
    if E.shape[-1] != S or F.shape[-1] != S:
        raise ValueError(f"E and F must have shape (r, S={S}), got {tuple(E.shape)} and {tuple(F.shape)}")
    k_r = E.to(k.dtype) @ k  # (r, S) x (..., S, hs) -> (..., r, hs): r mixtures of the keys
    v_r = F.to(v.dtype) @ v  # (r, S) x (..., S, hv) -> (..., r, hv)
    att = torch.softmax(q @ k_r.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)  # (..., T, hs) x (..., hs, r) -> (..., T, r)
    return att @ v_r  # (..., T, r) x (..., r, hv) -> (..., T, hv)


# ---------------------------------------------------------------------------- random features
def orthogonal_gaussian(m: int, d: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(m, d) rows omega_i, each marginally N(0, I_d), orthogonal within blocks of d rows (Performer's ORF)."""
    check_positive_int(m, "m"), check_positive_int(d, "d")
    n = math.ceil(m / d)  # blocks of d orthogonal rows
    Q, _ = torch.linalg.qr(torch.randn(n, d, d, generator=generator, dtype=torch.float64))  # (n, d, d) orthonormal columns
    norms = torch.randn(n, d, d, generator=generator, dtype=torch.float64).norm(dim=-1)  # (n, d) chi(d) lengths
    rows = Q.transpose(-2, -1) * norms[..., None]  # (n, d, d): orthogonal directions with Gaussian lengths
    return rows.reshape(n * d, d)[:m]  # (m, d)


def favor_features(x: torch.Tensor, omega: torch.Tensor, shift_dims: tuple[int, ...] | None = None) -> torch.Tensor:
    """Positive random features ``phi(x) = exp(omega x - ||x||^2 / 2) / sqrt(m)``: x (..., L, d) -> (..., L, m).

    For omega ~ N(0, I): ``E[phi(x)^T phi(y)] = exp(x^T y)``, the softmax kernel. ``shift_dims``:
    subtract the largest exponent over these dimensions first, so exp cannot overflow; this divides
    phi by one positive factor per slice over ``shift_dims``, which cancels in the ratio of
    :func:`performer_attention`.
    """
    check_float_tensor(x, "x"), check_float_tensor(omega, "omega")
    if x.dim() < 1 or omega.dim() != 2 or omega.shape[1] != x.shape[-1]:
        raise ValueError(f"x must be (..., L, d) and omega (m, d), got {tuple(x.shape)} and {tuple(omega.shape)}")
    m = omega.shape[0]
    proj = x @ omega.to(x.dtype).T  # (..., L, d) x (d, m) -> (..., L, m)
    log_phi = proj - (x * x).sum(-1, keepdim=True) / 2  # (..., L, m): log(phi sqrt(m))
    if shift_dims is not None:
        log_phi = log_phi - log_phi.amax(shift_dims, keepdim=True)
    return torch.exp(log_phi) / math.sqrt(m)


def performer_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, omega: torch.Tensor,
                        causal: bool = False) -> torch.Tensor:
    """FAVOR+ estimate of softmax attention: q (..., T, hs), k (..., S, hs), v (..., S, hv), omega (m, hs).

    Non-causal: phi(Q) (phi(K)^T V) / phi(Q) (phi(K)^T 1). Causal (T = S): prefix sums over keys.
    Constant factors that cancel in the ratio are removed for numerical stability.
    """
    _check_qkv(q, k, v)
    check_float_tensor(omega, "omega")
    if omega.dim() != 2 or omega.shape[1] != q.shape[-1]:
        raise ValueError(f"omega must have shape (m, hs={q.shape[-1]}), got {tuple(omega.shape)}")
    if causal and q.shape[-2] != k.shape[-2]:
        raise ValueError(f"causal performer attention needs T = S, got T={q.shape[-2]}, S={k.shape[-2]}")
    scale = q.shape[-1] ** -0.25  # q k^T / sqrt(hs) = (q scale)(k scale)^T
    q, k = q * scale, k * scale
    phi_q = favor_features(q, omega, shift_dims=(-1,))  # (..., T, m); a factor per query row cancels
    phi_k = favor_features(k, omega, shift_dims=(-2, -1))  # (..., S, m); one factor for all keys cancels
    if not causal:
        kv = phi_k.transpose(-2, -1) @ v  # (..., m, S) x (..., S, hv) -> (..., m, hv)
        num = phi_q @ kv  # (..., T, m) x (..., m, hv) -> (..., T, hv)
        den = phi_q @ phi_k.sum(-2).unsqueeze(-1)  # (..., T, m) x (..., m, 1) -> (..., T, 1)
        return num / den
    kv = torch.cumsum(phi_k.unsqueeze(-1) * v.unsqueeze(-2), dim=-3)  # (..., S, m, 1) * (..., S, 1, hv) -> (..., S, m, hv)
    num = (phi_q.unsqueeze(-2) @ kv).squeeze(-2)  # (..., T, 1, m) x (..., T, m, hv) -> (..., T, hv)
    den = (phi_q * torch.cumsum(phi_k, dim=-2)).sum(-1, keepdim=True)  # (..., T, 1)
    return num / den


# ---------------------------------------------------------------------------- blockwise (exact)
def online_softmax(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """softmax over the last dimension, reading it in blocks with a running max ``m`` and sum ``l``.

    After each block: ``m' = max(m, max(block))``, ``l' = l exp(m - m') + sum(exp(block - m'))``.
    """
    check_float_tensor(x, "x")
    check_positive_int(block_size, "block_size")
    if x.dim() == 0 or x.shape[-1] == 0:
        raise ValueError(f"x must have shape (..., n) with n >= 1, got {tuple(x.shape)}")
    m = torch.full(x.shape[:-1] + (1,), float("-inf"), dtype=x.dtype, device=x.device)  # (..., 1)
    l = torch.zeros_like(m)
    for j in range(0, x.shape[-1], block_size):
        xb = x[..., j:j + block_size]  # (..., b)
        m_new = torch.maximum(m, xb.amax(-1, keepdim=True))
        l = l * torch.exp(m - m_new) + torch.exp(xb - m_new).sum(-1, keepdim=True)
        m = m_new
    return torch.exp(x - m) / l


def blockwise_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_size: int = 64,
                        causal: bool = False) -> torch.Tensor:
    """Exact attention, computed over (block_size x block_size) tiles with an online softmax.

    q (..., T, hs), k (..., S, hs), v (..., S, hv) -> (..., T, hv). ``causal``: the queries are the
    last T of S positions, so ``causal`` needs S >= T. Never stores more than one (..., block, block)
    tile of scores.
    """
    _check_qkv(q, k, v)
    check_positive_int(block_size, "block_size")
    T, S = q.shape[-2], k.shape[-2]
    if causal and S < T:
        raise ValueError(f"causal blockwise attention needs S >= T (the queries are the last T of S positions); "
                         f"got T={T}, S={S}")
    scale = 1.0 / math.sqrt(q.shape[-1])
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=v.dtype, device=v.device)  # (..., T, hv)
    for i in range(0, T, block_size):
        qi = q[..., i:i + block_size, :] * scale  # (..., bq, hs)
        rows = torch.arange(i, i + qi.shape[-2], device=q.device)[:, None] + (S - T)  # (bq, 1) absolute positions
        m = torch.full(qi.shape[:-1] + (1,), float("-inf"), dtype=q.dtype, device=q.device)  # (..., bq, 1) running max
        l = torch.zeros_like(m)  # running sum of exp(score - m)
        acc = torch.zeros(*qi.shape[:-1], v.shape[-1], dtype=v.dtype, device=v.device)  # (..., bq, hv)
        for j in range(0, S, block_size):
            if causal and j > rows[-1, 0]:
                break  # every key of this tile and later ones is in the future
            s = qi @ k[..., j:j + block_size, :].transpose(-2, -1)  # (..., bq, hs) x (..., hs, bk) -> (..., bq, bk)
            if causal:
                cols = torch.arange(j, j + s.shape[-1], device=q.device)[None, :]  # (1, bk)
                s = s.masked_fill(cols > rows, float("-inf"))
            m_new = torch.maximum(m, s.amax(-1, keepdim=True))
            p = torch.exp(s - m_new)  # (..., bq, bk)
            corr = torch.exp(m - m_new)  # rescales what was summed under the old maximum
            l = l * corr + p.sum(-1, keepdim=True)
            acc = acc * corr + p @ v[..., j:j + block_size, :]  # (..., bq, bk) x (..., bk, hv) -> (..., bq, hv)
            m = m_new
        out[..., i:i + block_size, :] = acc / l
    return out


# ---------------------------------------------------------------------------- measuring memory
class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of every tensor storage created inside the mode, until it is freed."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()

    def _free(self, key: int, n: int) -> None:
        self._seen.discard(key)
        self.live -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                key, n = st.data_ptr(), st.nbytes()
                if n and key not in self._seen and key not in inputs:  # new storage: not a view, not in place
                    self._seen.add(key)
                    self.live += n
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(st, self._free, key, n)
        return out


def peak_memory(fn, *args, **kwargs) -> tuple[object, int]:
    """Call ``fn(*args, **kwargs)``; return its result and the peak bytes of tensors it allocated.

    Tensors that existed before the call are not counted; the result is (it is alive at the end).
    Works on any device, by watching every torch operation (it slows the call down).
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    with _LiveBytes() as tracker:
        out = fn(*args, **kwargs)
    return out, tracker.peak
