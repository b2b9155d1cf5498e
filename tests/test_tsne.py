"""mathllm.tsne: perplexity calibration, the hand-derived gradient against torch.autograd, trustworthiness against a
brute-force loop, and an embedding of separated clusters; scikit-learn's exact t-SNE pieces when it is installed."""
import math

import pytest
import torch

from mathllm.tsne import (TSNEConfig, conditional_affinities, joint_affinities, kl_gradient, kl_loss, squared_distances,
                          student_t_affinities, trustworthiness, tsne)

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds

F64 = dict(dtype=torch.float64)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _clusters(n_per=40, n_clusters=4, dim=10, sep=6.0, seed=0):
    g = _gen(seed)
    centres = sep * torch.eye(dim, **F64)[:n_clusters]
    X = torch.cat([torch.randn(n_per, dim, generator=g, **F64) + c for c in centres])
    return X, torch.arange(n_clusters).repeat_interleave(n_per)


# ---------------------------------------------------------------------------- affinities
@pytest.mark.parametrize("N,perplexity,seed", [(20, 2.0, 0), (50, 10.0, 1), (120, 30.0, 2), (30, 29.0, 3)])
def test_conditional_rows_have_the_target_entropy(N, perplexity, seed):
    X = torch.randn(N, 7, generator=_gen(seed), **F64) * 3
    P, beta = conditional_affinities(squared_distances(X), perplexity)
    assert torch.all(P.diagonal() == 0) and torch.all(beta > 0)
    torch.testing.assert_close(P.sum(1), torch.ones(N, **F64), rtol=0, atol=1e-12)
    H = -(P * torch.log(P.clamp_min(1e-300))).sum(1)
    torch.testing.assert_close(H, torch.full((N,), math.log(perplexity), **F64), rtol=0, atol=1e-8)
    # Gaussian form: log p_(j|i) + beta_i d_ij is the same for every j != i
    D = squared_distances(X)
    logit = torch.log(P[0, 1:]) + beta[0] * D[0, 1:]
    torch.testing.assert_close(logit, logit[0].expand_as(logit), rtol=0, atol=1e-8)


def test_joint_affinities_are_a_symmetric_distribution():
    X = torch.randn(40, 5, generator=_gen(), **F64)
    P = joint_affinities(X, 8.0)
    torch.testing.assert_close(P, P.T, rtol=0, atol=0)
    assert float(P.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(P.sum(1).min()) >= 1 / (2 * 40) - 1e-15             # every point keeps a share of at least 1/2N
    Q = student_t_affinities(torch.randn(40, 2, generator=_gen(1), **F64))
    assert float(Q.sum()) == pytest.approx(1.0, abs=1e-12) and torch.all(Q.diagonal() == 0)


def test_squared_distances_match_a_broadcast():
    X = torch.randn(25, 6, generator=_gen(), **F64)
    torch.testing.assert_close(squared_distances(X), (X[:, None] - X[None]).square().sum(-1), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- the gradient
@pytest.mark.parametrize("N,k,seed", [(5, 1, 0), (30, 2, 1), (60, 3, 2)])
def test_gradient_matches_autograd(N, k, seed):
    g = _gen(seed)
    P = joint_affinities(torch.randn(N, 8, generator=g, **F64), min(5.0, N - 1))
    Y = torch.randn(N, k, generator=g, **F64).requires_grad_()
    (ref,) = torch.autograd.grad(kl_loss(P, Y), Y)
    torch.testing.assert_close(kl_gradient(P, Y.detach()), ref, rtol=1e-10, atol=1e-13)


def test_loss_passes_gradcheck_and_is_zero_at_q_equal_p():
    P = joint_affinities(torch.randn(8, 4, generator=_gen(), **F64), 3.0)
    Y = torch.randn(8, 2, generator=_gen(1), **F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y: kl_loss(P, y), (Y,), eps=1e-6, atol=1e-8)
    Y2 = torch.randn(8, 2, generator=_gen(2), **F64)
    assert abs(kl_loss(student_t_affinities(Y2), Y2).item()) < 1e-14  # KL(Q || Q) = 0
    assert kl_gradient(student_t_affinities(Y2), Y2).abs().max() < 1e-15


def test_gradient_has_no_net_force():
    """Pair forces are equal and opposite, so the gradient sums to zero: the embedding's centre never moves."""
    P = joint_affinities(torch.randn(30, 4, generator=_gen(), **F64), 5.0)
    grad = kl_gradient(P, torch.randn(30, 2, generator=_gen(1), **F64))
    torch.testing.assert_close(grad.sum(0), torch.zeros(2, **F64), rtol=0, atol=1e-15)


# ---------------------------------------------------------------------------- trustworthiness
def _trustworthiness_loop(X, Y, k):
    N = X.shape[0]
    Dx, Dy = squared_distances(X), squared_distances(Y)
    total = 0
    for i in range(N):
        order_in = [j for j in torch.argsort(Dx[i], stable=True).tolist() if j != i]
        rank = {j: r + 1 for r, j in enumerate(order_in)}
        knn_out = [j for j in torch.argsort(Dy[i], stable=True).tolist() if j != i][:k]
        total += sum(max(0, rank[j] - k) for j in knn_out)
    return 1 - 2 / (N * k * (2 * N - 3 * k - 1)) * total


@pytest.mark.parametrize("k,seed", [(1, 0), (5, 1), (10, 2)])
def test_trustworthiness_matches_a_loop(k, seed):
    g = _gen(seed)
    X = torch.randn(40, 6, generator=g, **F64)
    Y = X[:, :2] + 0.5 * torch.randn(40, 2, generator=g, **F64)
    assert trustworthiness(X, Y, k) == pytest.approx(_trustworthiness_loop(X, Y, k), abs=1e-12)
    assert trustworthiness(X, X, k) == 1.0


# ---------------------------------------------------------------------------- the optimiser
def test_tsne_separates_clusters_and_lowers_the_loss():
    X, labels = _clusters()
    res = tsne(X, TSNEConfig(perplexity=15, n_iter=400))
    Y = res.embedding
    assert Y.shape == (160, 2)
    D = squared_distances(Y) + torch.diag(torch.full((160,), float("inf"), **F64))
    assert torch.equal(labels[D.argmin(1)], labels)                  # every nearest neighbour is in its own cluster
    assert trustworthiness(X, Y, 5) > 0.9
    kls = [kl for step, kl in res.history if step > 250]            # after early exaggeration
    assert all(b <= a + 1e-9 for a, b in zip(kls, kls[1:]))
    assert res.kl == pytest.approx(kls[-1]) and res.kl < 1.0
    assert torch.equal(tsne(X, TSNEConfig(perplexity=15, n_iter=400)).embedding, Y)   # PCA init: deterministic


# ---------------------------------------------------------------------------- scikit-learn, when installed
def test_affinities_loss_and_gradient_match_scikit_learn():
    t_sne = pytest.importorskip("sklearn.manifold._t_sne",
                                reason="scikit-learn is not installed: its exact t-SNE is the optional reference")
    from scipy.spatial.distance import squareform
    X = torch.randn(40, 5, generator=_gen(), **F64)
    P = joint_affinities(X, 10.0)
    P_ref = squareform(t_sne._joint_probabilities(squared_distances(X).numpy(), 10.0, 0))
    torch.testing.assert_close(P, torch.tensor(P_ref, **F64), rtol=1e-3, atol=1e-8)  # sklearn bisects in float32
    Y = torch.randn(40, 2, generator=_gen(1), **F64)
    kl_ref, grad_ref = t_sne._kl_divergence(Y.numpy().ravel(), squareform(P.numpy(), checks=False), 1, 40, 2)
    assert kl_loss(P, Y).item() == pytest.approx(kl_ref, rel=1e-10)
    torch.testing.assert_close(kl_gradient(P, Y), torch.tensor(grad_ref, **F64).view(40, 2), rtol=1e-10, atol=1e-14)


def test_trustworthiness_matches_scikit_learn():
    manifold = pytest.importorskip("sklearn.manifold", reason="scikit-learn is not installed: optional reference")
    X = torch.randn(50, 6, generator=_gen(), **F64)
    Y = torch.randn(50, 2, generator=_gen(1), **F64)
    assert trustworthiness(X, Y, 5) == pytest.approx(manifold.trustworthiness(X.numpy(), Y.numpy(), n_neighbors=5),
                                                     abs=1e-12)


# ---------------------------------------------------------------------------- bad input
def test_bad_input_raises():
    X = torch.randn(10, 3, **F64)
    with pytest.raises(ValueError, match=r"perplexity must lie in \[1, N - 1\]"):
        conditional_affinities(squared_distances(X), 10.0)
    with pytest.raises(ValueError, match="D must have shape"):
        conditional_affinities(torch.zeros(3, 4), 2.0)
    with pytest.raises(ValueError, match="P must have shape"):
        kl_gradient(torch.zeros(4, 4, **F64), torch.zeros(5, 2, **F64))
    with pytest.raises(ValueError, match="k must be an int"):
        trustworthiness(X, X[:, :2], 5)
    with pytest.raises(ValueError, match="perplexity <= N - 1"):
        tsne(X, TSNEConfig(perplexity=30.0))
    with pytest.raises(ValueError, match="init must be 'pca' or 'random'"):
        TSNEConfig(init="spectral")
    with pytest.raises(ValueError, match="n_iter must be a positive int"):
        TSNEConfig(n_iter=0)
    with pytest.raises(TypeError, match="config must be a TSNEConfig"):
        tsne(X, {"perplexity": 5})


def test_hostile_input_gets_a_clear_error():
    """Issue 15 (the API fuzz test): a boolean X reached cdist ("cdist only supports floating-point
    dtypes"), and the affinities of a single point were 0 / 0 = NaN (there is no pair i != j)."""
    for f in (squared_distances, joint_affinities, student_t_affinities):
        with pytest.raises(TypeError, match=r"(X|Y) must be a floating-point tensor, got dtype bool"):
            f(torch.ones(4, 3, dtype=torch.bool))
    for f in (student_t_affinities, lambda Y: kl_gradient(torch.ones(1, 1, **F64), Y)):
        with pytest.raises(ValueError, match=r"Y must have at least 2 rows \(points\), got shape \(1, 3\)"):
            f(torch.tensor([[0.5, 1.5, 2.0]], **F64))
    with pytest.raises(TypeError, match="perplexity must be a number, got str"):
        conditional_affinities(squared_distances(torch.randn(5, 2, **F64)), "2")
    # two points: q_12 = q_21 = 1/2 whatever their distance (the only pair, counted twice)
    torch.testing.assert_close(student_t_affinities(torch.tensor([[0.0, 0.0], [3.0, 4.0]], **F64)),
                               torch.tensor([[0.0, 0.5], [0.5, 0.0]], **F64), rtol=0, atol=1e-15)

