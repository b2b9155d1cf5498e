"""Token embeddings, a lookup table that is also a matrix product, and learned absolute positions.

Row ``t`` of the embedding matrix ``E`` (shape ``(V, C)``) is the vector of token ``t``. Writing
the tokens as one-hot rows, ``X = one_hot(ids) @ E``: the lookup ``E[ids]`` is the same
product, computed without multiplying by zeros. Its gradient ``one_hot(ids)^T dX`` touches only
the rows of tokens that occur.

Learned absolute positions (GPT-2, BERT) are a second table ``P`` of shape ``(max_len, C)``:
position ``p`` adds row ``p``, so a model cannot see positions beyond ``max_len``. References:
Vaswani et al. 2017 (section 3.4); Radford et al. 2019 (GPT-2).

Leaves out: scaling the embedding by sqrt(C) (Vaswani et al. 2017), factorised embeddings (ALBERT).
Sinusoidal and rotary positions live in :mod:`mathllm.positional`.

Book: :doc:`/notebooks/09_embeddings`
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .checks import check_ids, check_positive, check_positive_int, check_shape


def one_hot(ids: torch.Tensor, vocab_size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot rows: ``ids`` of shape ``(...)`` -> ``(..., V)`` with a single 1 per row."""
    check_ids(ids, vocab_size)
    out = torch.zeros(*ids.shape, vocab_size, dtype=dtype, device=ids.device)
    return out.scatter_(-1, ids.long().unsqueeze(-1), 1.0)


def embed(ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Look up embeddings: ``ids`` (...) and ``weight`` (V, C) -> (..., C), equal to ``one_hot(ids) @ weight``."""
    V, C = check_shape(weight, "V C", name="weight")
    check_ids(ids, V)
    return weight[ids.long()]


class LearnedPositionalEmbedding(nn.Module):
    """A learned vector per absolute position: ``forward(T, offset)`` -> (T, C), rows offset .. offset + T - 1.

    ``weight`` has shape (max_len, C), initialised from N(0, 0.02^2) as in GPT-2. Add the result
    to token embeddings of shape (B, T, C); it broadcasts over the batch.
    """

    def __init__(self, max_len: int, n_embd: int, std: float = 0.02):
        super().__init__()
        check_positive_int(max_len, "max_len")
        check_positive_int(n_embd, "n_embd")
        check_positive(std, "std")
        self.max_len, self.n_embd = max_len, n_embd
        self.weight = nn.Parameter(torch.randn(max_len, n_embd) * std)  # (max_len, C)

    def forward(self, T: int, offset: int = 0) -> torch.Tensor:
        if isinstance(T, bool) or not isinstance(T, int) or T < 0:
            raise TypeError(f"T must be a non-negative int (the number of positions), got {T!r}")
        if offset < 0 or offset + T > self.max_len:
            raise ValueError(f"positions {offset}..{offset + T - 1} do not fit in max_len={self.max_len}: "
                             f"a learned table has no rows past its length")
        return self.weight[offset:offset + T]  # (T, C)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, n_embd={self.n_embd}"
