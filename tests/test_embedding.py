"""Tests for mathllm.embedding: one-hot product = lookup = torch.nn.Embedding; learned positions."""
import pytest
import torch
import torch.nn.functional as F

from mathllm.embedding import LearnedPositionalEmbedding, embed, one_hot

D = dict(dtype=torch.float64)


@pytest.mark.parametrize("shape,V,C", [((7,), 5, 3), ((2, 9), 50, 16), ((0,), 4, 2), ((3, 1, 4), 1, 8)])
def test_one_hot_product_equals_lookup_and_nn_embedding(shape, V, C):
    ids = torch.randint(0, V, shape)
    W = torch.randn(V, C, **D)
    X = one_hot(ids, V, dtype=torch.float64)
    assert X.shape == (*shape, V)
    torch.testing.assert_close(X.sum(-1), torch.ones(shape, **D))
    torch.testing.assert_close(X, F.one_hot(ids, V).double())
    torch.testing.assert_close(embed(ids, W), X @ W, rtol=0, atol=0)
    torch.testing.assert_close(embed(ids, W), F.embedding(ids, W), rtol=0, atol=0)


def test_lookup_gradient_is_one_hot_transpose_times_upstream():
    V, C = 10, 4
    ids = torch.tensor([[1, 3, 3], [9, 1, 3]])
    W = torch.randn(V, C, **D, requires_grad=True)
    dY = torch.randn(2, 3, C, **D)
    embed(ids, W).backward(dY)
    X = one_hot(ids, V, dtype=torch.float64)
    ref = X.reshape(-1, V).T @ dY.reshape(-1, C)  # (V, N) x (N, C): rows of unused tokens are zero
    torch.testing.assert_close(W.grad, ref, rtol=1e-12, atol=1e-12)
    unused = [t for t in range(V) if t not in (1, 3, 9)]
    assert W.grad[unused].abs().max() == 0 and W.grad[3].abs().max() > 0


def test_embedding_bad_input():
    W = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"token id 5, outside the vocabulary \[0, 5\)"):
        embed(torch.tensor([0, 5]), W)
    with pytest.raises(ValueError, match="token id -1"):
        one_hot(torch.tensor([-1]), 5)
    with pytest.raises(TypeError, match="integer tensor"):
        embed(torch.tensor([0.0, 1.0]), W)
    with pytest.raises(ValueError, match=r"weight must have shape \(V, C\)"):
        embed(torch.tensor([0]), torch.randn(5))


@pytest.mark.parametrize("T,offset", [(4, 0), (3, 5), (8, 0), (0, 2)])
def test_learned_positions_are_rows_of_a_table(T, offset):
    torch.manual_seed(0)
    pos = LearnedPositionalEmbedding(8, 6)
    ref = torch.nn.Embedding(8, 6)
    ref.weight.data.copy_(pos.weight.data)
    out = pos(T, offset)
    assert out.shape == (T, 6)
    torch.testing.assert_close(out, ref(torch.arange(offset, offset + T)), rtol=0, atol=0)
    x = torch.randn(2, T, 6)
    assert (x + out).shape == (2, T, 6)  # broadcasts over the batch


def test_learned_positions_init_and_errors():
    torch.manual_seed(0)
    pos = LearnedPositionalEmbedding(1024, 64)
    assert abs(pos.weight.std().item() - 0.02) < 1e-3
    assert sum(p.numel() for p in pos.parameters()) == 1024 * 64
    with pytest.raises(ValueError, match=r"positions 1020..1027 do not fit in max_len=1024"):
        pos(8, offset=1020)
    with pytest.raises(TypeError, match="non-negative int"):
        pos(2.0)
    with pytest.raises(ValueError, match="max_len must be a positive int, got 0"):
        LearnedPositionalEmbedding(0, 4)
    # issue 15: a float size reached torch.randn, "randn() received an invalid combination of arguments"
    with pytest.raises(ValueError, match="max_len must be a positive int, got 1e[+]308"):
        LearnedPositionalEmbedding(1e308, 4)
    with pytest.raises(ValueError, match="n_embd must be a positive int, got 4.0"):
        LearnedPositionalEmbedding(8, 4.0)
    with pytest.raises(ValueError, match="std must be a finite number > 0, got nan"):
        LearnedPositionalEmbedding(8, 4, std=float("nan"))
