"""Token embeddings, a lookup table that is also a matrix product, and learned absolute positions.

Row ``t`` of the embedding matrix ``E`` (shape ``(V, C)``) is the vector of token ``t``. Writing
the tokens as one-hot rows, ``X = one_hot(ids) @ E``: the lookup ``E[ids]`` is the same
product, computed without multiplying by zeros. Its gradient ``one_hot(ids)^T dX`` touches only
the rows of tokens that occur.

Learned absolute positions (GPT-2, BERT) are a second table ``P`` of shape ``(max_len, C)``:
position ``p`` adds row ``p``, so a model cannot see positions beyond ``max_len``. References:
Vaswani et al. 2017 (section 3.4); Radford et al. 2019 (GPT-2).

:class:`TokenEmbedding` and :class:`LearnedPositionalEmbedding` are the modules that
:class:`mathllm.transformer.GPT` and :mod:`mathllm.encoder_decoder` build their input from, so the
model runs the lookup this chapter proves.

Leaves out: scaling the embedding by sqrt(C) (Vaswani et al. 2017), factorised embeddings (ALBERT).
Sinusoidal and rotary positions live in :mod:`mathllm.positional`.

Book: :doc:`/notebooks/09_embeddings`
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import check_dtype, check_ids, check_positive, check_positive_int, check_shape, check_tensor

ID_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8)


def one_hot(ids: torch.Tensor, vocab_size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot rows: ``ids`` of shape ``(...)`` -> ``(..., V)`` with a single 1 per row."""
    check_ids(ids, vocab_size)
    out = torch.zeros(*ids.shape, vocab_size, dtype=dtype, device=ids.device)
    return out.scatter_(-1, ids.long().unsqueeze(-1), 1.0)


def embed(ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Look up embeddings: ``ids`` (...) and ``weight`` (V, C) -> (..., C), equal to ``one_hot(ids) @ weight``.

    Row ``ids[...]`` of ``weight``, as ``weight[ids]``. ``F.embedding`` does the lookup: its backward sums
    the rows of a repeated token in a fixed order, where indexing's backward adds them with atomic
    adds on a multi-threaded CPU, which makes the last bits of the gradient vary from run to run.
    """
    V, C = check_shape(weight, "V C", name="weight")
    check_tensor(ids, "ids")
    if ids.is_cuda or torch.compiler.is_compiling():  # min/max would synchronise the GPU or split the graph
        check_dtype(ids, ID_DTYPES, "ids")  # the range goes unchecked: CUDA asserts on a bad id by itself
    else:
        check_ids(ids, V)
    return F.embedding(ids.long(), weight)  # (...) -> (..., C)


class TokenEmbedding(nn.Embedding):
    """The token table ``weight`` (V, C) as a module: ``forward(ids)`` is :func:`embed` ``(ids, weight)``.

    An ``nn.Embedding`` (same parameter, initialisation and state-dict key), so hooks and code that
    expect one keep working; only the forward is this chapter's lookup.
    """

    def __init__(self, vocab_size: int, n_embd: int):
        check_positive_int(vocab_size, "vocab_size")
        check_positive_int(n_embd, "n_embd")
        super().__init__(vocab_size, n_embd)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids`` (...) integer token ids -> (..., C)."""
        return embed(ids, self.weight)


class LearnedPositionalEmbedding(nn.Module):
    """A learned vector per absolute position: ``forward(T, offset)`` -> (T, C), rows offset .. offset + T - 1.

    ``weight`` has shape (max_len, C), initialised from N(0, 0.02^2) as in GPT-2. Add the result
    to token embeddings of shape (B, T, C); it broadcasts over the batch. ``forward(positions)``
    with an integer tensor of positions (...), as ``nn.Embedding``, returns their rows (..., C):
    explicit positions per token (packed sequences, left padding).
    """

    def __init__(self, max_len: int, n_embd: int, std: float = 0.02):
        super().__init__()
        check_positive_int(max_len, "max_len")
        check_positive_int(n_embd, "n_embd")
        check_positive(std, "std")
        self.max_len, self.n_embd = max_len, n_embd
        self.weight = nn.Parameter(torch.randn(max_len, n_embd) * std)  # (max_len, C)

    def forward(self, T: int | torch.Tensor, offset: int = 0) -> torch.Tensor:
        if isinstance(T, torch.Tensor):  # explicit positions (...) -> (..., C)
            if offset != 0:
                raise ValueError("give either positions or T and offset, not both")
            if T.dtype not in ID_DTYPES:
                raise TypeError(f"positions must be an integer tensor, got dtype {str(T.dtype).replace('torch.', '')}")
            if not T.is_cuda and not torch.compiler.is_compiling() and T.numel() and \
                    (int(T.min()) < 0 or int(T.max()) >= self.max_len):
                raise ValueError(f"positions must be in [0, {self.max_len}) (a learned table has no rows past its "
                                 f"length), got {int(T.min())}..{int(T.max())}")
            return F.embedding(T.long(), self.weight)  # (...) -> (..., C)
        if isinstance(T, bool) or not isinstance(T, int) or T < 0:
            raise TypeError(f"T must be a non-negative int (the number of positions), got {T!r}")
        if offset < 0 or offset + T > self.max_len:
            raise ValueError(f"positions {offset}..{offset + T - 1} do not fit in max_len={self.max_len}: "
                             f"a learned table has no rows past its length")
        pos = torch.arange(offset, offset + T, device=self.weight.device)  # (T,)
        # a lookup, not the slice weight[offset:offset + T]: under no_grad a slice of a parameter is a
        # view that requires grad without a grad_fn, which trips autograd hooks (FlopCounterMode's)
        return F.embedding(pos, self.weight)  # (T, C): rows offset .. offset + T - 1

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, n_embd={self.n_embd}"
