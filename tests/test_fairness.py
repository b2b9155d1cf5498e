"""Tests for mathllm.fairness: the WEAT against a literal implementation of its definition, and its null."""
import itertools
import math

import numpy as np
import pytest
import torch

from mathllm.fairness import association, effect_size, weat, weat_test
from mathllm.word_vectors import WordVectors

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds


def _literal_weat(X, Y, A, B):
    """Caliskan et al. (2017), written as in the paper with numpy loops."""
    cos = lambda u, v: float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
    s = lambda w: np.mean([cos(w, a) for a in A]) - np.mean([cos(w, b) for b in B])
    sx, sy = [s(x) for x in X], [s(y) for y in Y]
    stat = sum(sx) - sum(sy)
    d = (np.mean(sx) - np.mean(sy)) / np.std(sx + sy, ddof=1)
    both, k = sx + sy, len(sx)
    null = [sum(both[i] for i in c) - sum(both[i] for i in range(len(both)) if i not in c)
            for c in itertools.combinations(range(len(both)), k)]
    p = np.mean([v >= stat - 1e-12 for v in null])
    return np.array(sx), stat, d, p


@pytest.mark.parametrize("nx,ny,na,nb,C", [(3, 3, 2, 2, 5), (4, 5, 3, 4, 8), (6, 6, 5, 5, 16)])
def test_weat_matches_the_literal_definition(nx, ny, na, nb, C):
    g = torch.Generator().manual_seed(nx * 100 + C)
    X, Y, A, B = (torch.randn(n, C, generator=g, dtype=torch.float64) for n in (nx, ny, na, nb))
    r = weat_test(X, Y, A, B)
    sx, stat, d, p = _literal_weat(*(M.numpy() for M in (X, Y, A, B)))
    np.testing.assert_allclose(r.s_x.numpy(), sx, atol=1e-12, rtol=0)
    assert r.statistic == pytest.approx(stat, abs=1e-12)
    assert r.effect_size == pytest.approx(d, abs=1e-12)
    assert r.exact and r.n_permutations == math.comb(nx + ny, nx) and r.p_value == pytest.approx(p, abs=1e-12)


def test_association_and_effect_size_signs():
    g = torch.Generator().manual_seed(1)
    X, Y, A, B = (torch.randn(4, 6, generator=g) for _ in range(4))
    torch.testing.assert_close(association(X, A, B), -association(X, B, A))
    r, swapped = weat_test(X, Y, A, B), weat_test(Y, X, A, B)
    assert r.effect_size == pytest.approx(-swapped.effect_size, abs=1e-12)
    assert effect_size(r.s_x, r.s_y) == r.effect_size
    assert abs(r.effect_size) <= 2 * math.sqrt((len(X) + len(Y) - 1) / (len(X) + len(Y)))  # d of two groups is bounded


def test_perfectly_separated_sets_get_the_smallest_exact_p_value():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    X = torch.tensor([[1.0, 0.1], [1.0, 0.2], [1.0, 0.3], [1.0, 0.05]])   # all near A
    Y = torch.tensor([[0.1, 1.0], [0.2, 1.0], [0.3, 1.0], [0.05, 1.0]])   # all near B
    r = weat_test(X, Y, a, b)
    assert r.p_value == pytest.approx(1 / math.comb(8, 4)) and r.effect_size > 1.5


def test_monte_carlo_p_value_agrees_with_the_exact_one():
    g = torch.Generator().manual_seed(2)
    X, Y, A, B = (torch.randn(7, 10, generator=g) for _ in range(4))
    X = X + 0.3 * A.mean(0)                                               # a weak association
    exact = weat_test(X, Y, A, B)
    mc = weat_test(X, Y, A, B, n_perm=20_000, generator=torch.Generator().manual_seed(3))
    assert exact.exact and not mc.exact and mc.n_permutations == 20_000
    assert mc.p_value == pytest.approx(exact.p_value, abs=0.01)
    assert math.comb(14, 7) <= 200_000 and not weat_test(X, Y, A, B, max_exact=100).exact   # falls back to sampling


def test_p_values_are_uniform_under_the_null():
    """Random vectors carry no association: P(p <= alpha) should be about alpha."""
    g = torch.Generator().manual_seed(4)
    ps = []
    for _ in range(300):
        X, Y, A, B = (torch.randn(5, 20, generator=g) for _ in range(4))
        ps.append(weat_test(X, Y, A, B).p_value)
    ps = np.array(ps)
    assert 0.02 <= np.mean(ps <= 0.05) <= 0.09 and 0.15 <= np.mean(ps <= 0.2) <= 0.26 and abs(ps.mean() - 0.5) < 0.06


def _toy_vectors():
    vocab = ("he", "him", "she", "her", "sword", "war", "love", "kiss", "table")
    g = torch.Generator().manual_seed(5)
    E = torch.randn(len(vocab), 4, generator=g, dtype=torch.float64)
    return WordVectors(vocab=vocab, counts=torch.ones(len(vocab), dtype=torch.int64),
                       vectors=E / E.norm(dim=1, keepdim=True), singular_values=torch.ones(4))


def test_weat_on_words_looks_the_vectors_up():
    wv = _toy_vectors()
    r = weat(wv, ["he", "him"], ["she", "her"], ["sword", "war"], ["love", "kiss"])
    E = wv.vectors
    ref = weat_test(E[[0, 1]], E[[2, 3]], E[[4, 5]], E[[6, 7]])
    assert r.statistic == ref.statistic and r.p_value == ref.p_value


def test_bad_inputs_raise():
    wv = _toy_vectors()
    with pytest.raises(KeyError, match="queen"):
        weat(wv, ["he", "queen"], ["she", "her"], ["sword"], ["love"])
    with pytest.raises(ValueError, match="must not share"):
        weat(wv, ["he", "him"], ["she", "him"], ["sword"], ["love"])
    with pytest.raises(ValueError, match="non-empty"):
        weat(wv, [], ["she"], ["sword"], ["love"])
    with pytest.raises(ValueError, match="zero vector"):
        association(torch.zeros(1, 3), torch.ones(1, 3), torch.ones(1, 3))
    with pytest.raises(ValueError, match="same width"):
        association(torch.ones(1, 3), torch.ones(1, 4), torch.ones(1, 3))
    with pytest.raises(ValueError, match="n_perm"):
        weat_test(torch.ones(2, 3), -torch.ones(2, 3), torch.ones(1, 3), torch.eye(3)[:1], n_perm=0)


# ---------------------------------------------------------------------------- hostile input (issue 15)
def test_effect_size_checks_its_associations():
    """Before issue 15: an empty s_x gave NaN (the mean of nothing), a 2-d or 0-d tensor an error from
    inside torch.cat, and equal associations 0 / 0."""
    with pytest.raises(ValueError, match=r"s_x must hold the association of at least one target word"):
        effect_size(torch.zeros(0), torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match=r"s_x must have shape \(n\)"):
        effect_size(torch.zeros(2, 3), torch.tensor([0.1, 0.2]))
    with pytest.raises(TypeError, match="s_y must be a floating-point tensor, got dtype bool"):
        effect_size(torch.tensor([0.1, 0.2]), torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="standard deviation 0"):
        effect_size(torch.full((3,), 0.5), torch.full((2,), 0.5))
    x, y = torch.tensor([0.3, 0.5]), torch.tensor([0.1, 0.2, 0.0])
    pooled = np.std(np.r_[x.numpy(), y.numpy()], ddof=1)           # numpy as the reference
    assert effect_size(x, y) == pytest.approx((0.4 - 0.1) / pooled, rel=1e-6)
