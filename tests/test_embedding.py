"""Tests for mathllm.embedding: one-hot product = lookup = torch.nn.Embedding; learned positions."""
import pytest
import torch
import torch.nn.functional as F

from mathllm.embedding import LearnedPositionalEmbedding, TokenEmbedding, embed, one_hot

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
    torch.testing.assert_close(embed(ids, W), W[ids], rtol=0, atol=0)  # row ids[...] of the table


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


def test_token_embedding_is_embed_as_a_module():
    """TokenEmbedding is an nn.Embedding (same init, same key) whose forward is embed: equal to
    torch's nn.Embedding with the same weights, values and gradients, and checked like embed."""
    torch.manual_seed(0)
    ours = TokenEmbedding(11, 4)
    torch.manual_seed(0)
    ref = torch.nn.Embedding(11, 4)
    torch.testing.assert_close(ours.weight, ref.weight, rtol=0, atol=0)  # the same draw
    ids = torch.tensor([[1, 3, 3, 10], [0, 1, 3, 2]])
    dY = torch.randn(2, 4, 4)
    ours(ids).backward(dY)
    ref(ids).backward(dY)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=0, atol=0)
    assert list(ours.state_dict()) == ["weight"]
    with pytest.raises(ValueError, match=r"ids holds token id 11, outside the vocabulary \[0, 11\)"):
        ours(torch.tensor([11]))
    with pytest.raises(ValueError, match="vocab_size must be a positive int, got 0"):
        TokenEmbedding(0, 4)


def test_embed_gradient_is_deterministic_with_threads():
    """The lookup's backward sums a repeated token's rows in a fixed order: the same bits on every run.
    (Indexing's backward, W[ids], uses atomic adds on a multi-threaded CPU and varies in the last bits.)"""
    W = torch.randn(7, 64, requires_grad=True)
    ids = torch.randint(0, 7, (20000,), generator=torch.Generator().manual_seed(1))
    dY = torch.randn(20000, 64, generator=torch.Generator().manual_seed(2))
    grads = []
    for _ in range(3):
        W.grad = None
        embed(ids, W).backward(dY)
        grads.append(W.grad.clone())
    assert all(torch.equal(grads[0], g) for g in grads[1:])


def test_learned_positions_at_explicit_positions():
    """forward(positions) with an integer tensor (...) gives rows (..., C), as nn.Embedding; explicit
    positions per sequence (left padding)."""
    torch.manual_seed(0)
    pos = LearnedPositionalEmbedding(8, 6)
    p = torch.tensor([[0, 0, 1, 2], [4, 5, 6, 7]])
    torch.testing.assert_close(pos(p), pos.weight[p], rtol=0, atol=0)
    torch.testing.assert_close(pos(torch.arange(3, 7)), pos(4, 3), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"positions must be in \[0, 8\).*got 0..8"):
        pos(torch.tensor([0, 8]))
    with pytest.raises(TypeError, match="positions must be an integer tensor, got dtype float32"):
        pos(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="either positions or T and offset"):
        pos(torch.tensor([0, 1]), 2)


def test_learned_positions_under_no_grad_hold_no_graph():
    """Generation runs under no_grad; the rows must then be a plain tensor. A slice of the parameter
    was a view that required grad without a grad_fn, and FlopCounterMode's autograd hooks raised
    "Expected gradient function to be set" (chapter 11 counts generation FLOPs this way)."""
    from torch.utils.flop_counter import FlopCounterMode
    pos = LearnedPositionalEmbedding(8, 4)
    with torch.no_grad():
        assert not pos(3, 2).requires_grad
        with FlopCounterMode(display=False):
            pos(3, 2)
    assert pos(3, 2).requires_grad  # with grad, the rows are in the graph
