"""Token embeddings: a lookup table that is also a matrix product.

Row ``t`` of the embedding matrix ``E`` (shape ``(V, C)``) is the vector of token ``t``. Writing
the tokens as one-hot rows, ``X = one_hot(ids) @ E``: the lookup ``E[ids]`` is the same
product, computed without multiplying by zeros.

Book: notebooks/01_tour.ipynb, section "Embedding".
"""
from __future__ import annotations

import torch

from .checks import check_ids, check_shape


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
