"""t-SNE from its objective: perplexity-calibrated affinities, Student-t similarities, the KL gradient.

Shape legend (book/notation.md): N points, n input dimensions, k output dimensions (2 for a figure)::

    p_(j|i) = exp(-beta_i |x_i - x_j|^2) / sum_(l != i) exp(-beta_i |x_i - x_l|^2),  beta_i such that
              the entropy H(p_(.|i)) = ln(perplexity)                              (affinities in R^n)
    p_ij    = (p_(j|i) + p_(i|j)) / (2N)                                         (symmetric, sums to 1)
    q_ij    = (1 + |y_i - y_j|^2)^-1 / sum_(l != m) (1 + |y_l - y_m|^2)^-1        (Student t, one dof, in R^k)
    C       = KL(P || Q) = sum_(i != j) p_ij ln(p_ij / q_ij)
    dC/dy_i = 4 sum_j (p_ij - q_ij) (1 + |y_i - y_j|^2)^-1 (y_i - y_j)

The optimiser is the one of van der Maaten & Hinton (2008) and scikit-learn: gradient descent with
momentum (0.5, then 0.8), per-coordinate gains (delta-bar-delta), and "early exaggeration" (P x 12
for the first 250 steps) so that clusters form before they are spread out. The initialisation is
PCA scaled to a standard deviation of 1e-4 (Kobak & Linderman 2021), which is deterministic.

References: van der Maaten & Hinton, "Visualizing Data using t-SNE" (JMLR 2008); scikit-learn's
``sklearn/manifold/_t_sne.py`` (exact method); Venna & Kaski (2001) for trustworthiness.
Leaves out: the Barnes-Hut and FFT approximations (this is the exact O(N^2) method, for N up to a
few thousand), other degrees of freedom, metrics other than the Euclidean one.

Book: :doc:`/notebooks/16_interpretability`
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .checks import check_float_tensor, check_number, check_positive_int, check_shape
from .spectral import pca


# ---------------------------------------------------------------------------- affinities
def squared_distances(X: torch.Tensor) -> torch.Tensor:
    """``|x_i - x_j|^2`` for the rows of ``X`` (N, n): (N, N), computed without the cancellation of ``|x|^2 + |y|^2 - 2 x.y``."""
    check_shape(X, "N n", name="X")
    check_float_tensor(X, "X")  # cdist takes floats only
    return torch.cdist(X, X, compute_mode="donot_use_mm_for_euclid_dist").square()


def conditional_affinities(D: torch.Tensor, perplexity: float, *, tol: float = 1e-10,
                           max_iter: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``p_(.|i)`` of Gaussian affinities with entropy ``ln(perplexity)``, from squared distances ``D`` (N, N).

    Each precision ``beta_i = 1 / (2 sigma_i^2)`` is found by bisection (doubling until the entropy
    is bracketed), all rows at once: the entropy ``H_i = ln Z_i + beta_i E[d]`` decreases in beta_i.

    Returns:
        ``(P, beta)``: P (N, N) with zero diagonal and rows summing to 1; beta (N,).
    """
    N, _ = check_shape(D, "N N", name="D")
    check_number(perplexity, "perplexity")
    if not 1.0 <= perplexity <= N - 1:
        raise ValueError(f"perplexity must lie in [1, N - 1] = [1, {N - 1}] (each point has N - 1 neighbours), "
                         f"got {perplexity}")
    target = math.log(perplexity)
    off = ~torch.eye(N, dtype=torch.bool, device=D.device)
    d = D - D.masked_fill(~off, float("inf")).min(1, keepdim=True).values  # (N, N): shift so the nearest is 0
    beta = torch.ones(N, 1, dtype=D.dtype, device=D.device)
    lo, hi = torch.zeros_like(beta), torch.full_like(beta, float("inf"))
    for _ in range(max_iter):
        w = torch.exp(-beta * d) * off  # (N, N): unnormalised, 0 on the diagonal
        Z = w.sum(1, keepdim=True)  # (N, 1)
        P = w / Z
        H = torch.log(Z) + beta * (P * d).sum(1, keepdim=True)  # (N, 1): entropy in nats
        if (H - target).abs().max() < tol:
            break
        too_flat = H > target  # entropy too high: sharpen (larger beta)
        lo = torch.where(too_flat, beta, lo)
        hi = torch.where(too_flat, hi, beta)
        beta = torch.where(torch.isinf(hi), beta * 2, (lo + hi) / 2)
    return P, beta[:, 0]


def joint_affinities(X: torch.Tensor, perplexity: float = 30.0) -> torch.Tensor:
    """The symmetric input affinities ``p_ij = (p_(j|i) + p_(i|j)) / 2N`` of the rows of ``X`` (N, n): (N, N), sum 1.

    Symmetrising gives every point, outliers included, a total affinity of at least 1 / 2N, so
    each point pulls on the embedding.
    """
    P_cond, _ = conditional_affinities(squared_distances(X), perplexity)
    N = X.shape[0]
    return (P_cond + P_cond.T) / (2 * N)


def student_t_affinities(Y: torch.Tensor) -> torch.Tensor:
    """The output similarities ``q_ij`` of the embedding ``Y`` (N, k): (N, N), zero diagonal, sum 1."""
    N, _ = check_shape(Y, "N k", name="Y")
    if N < 2:  # q_ij is a distribution over the pairs i != j: one point has none
        raise ValueError(f"Y must have at least 2 rows (points), got shape {tuple(Y.shape)}")
    W = 1.0 / (1.0 + squared_distances(Y))  # (N, N): Cauchy kernel
    W = W.masked_fill(torch.eye(N, dtype=torch.bool, device=Y.device), 0.0)
    return W / W.sum()


def _check_pair(P: torch.Tensor, Y: torch.Tensor) -> None:
    N, _ = check_shape(Y, "N k", name="Y")
    check_shape(P, "N N", name="P", N=N)
    if N < 2:
        raise ValueError(f"Y must have at least 2 rows (points), got shape {tuple(Y.shape)}")


def kl_loss(P: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """The t-SNE objective ``KL(P || Q(Y)) = sum_(i != j) p_ij ln(p_ij / q_ij)``, a scalar (differentiable in Y).

    ``P`` (N, N) joint affinities, ``Y`` (N, k) the embedding. Terms with ``p_ij = 0`` contribute 0.
    """
    _check_pair(P, Y)
    Q = student_t_affinities(Y)
    mask = P > 0
    return (P[mask] * (torch.log(P[mask]) - torch.log(Q[mask]))).sum()


def kl_gradient(P: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``dC/dy_i = 4 sum_j (p_ij - q_ij) (1 + |y_i - y_j|^2)^-1 (y_i - y_j)``, derived by hand: (N, k).

    Each pair acts as a spring along ``y_i - y_j``: attractive with strength ``p_ij``, repulsive with
    ``q_ij``, both weighted by the Cauchy kernel.
    """
    _check_pair(P, Y)
    W = 1.0 / (1.0 + squared_distances(Y))  # (N, N)
    W = W.masked_fill(torch.eye(Y.shape[0], dtype=torch.bool, device=Y.device), 0.0)
    Q = W / W.sum()
    M = (P - Q) * W  # (N, N): spring constants
    return 4.0 * (M.sum(1, keepdim=True) * Y - M @ Y)  # sum_j M_ij (y_i - y_j): (N, 1) * (N, k) - (N, N) x (N, k)


# ---------------------------------------------------------------------------- quality of an embedding
def _neighbour_ranks(D: torch.Tensor) -> torch.Tensor:
    """ranks[i, j] = the rank of j among the neighbours of i (1 = nearest), 0 on the diagonal."""
    N = D.shape[0]
    order = torch.argsort(D.masked_fill(torch.eye(N, dtype=torch.bool, device=D.device), -1.0), dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(N, device=D.device).expand(N, N))
    return ranks


def trustworthiness(X: torch.Tensor, Y: torch.Tensor, k: int = 5) -> float:
    """Venna & Kaski's trustworthiness of the embedding ``Y`` (N, k_out) of ``X`` (N, n), in [0, 1].

    ``T = 1 - 2 / (N k (2N - 3k - 1)) sum_i sum_(j in kNN_Y(i)) max(0, r(i, j) - k)``, r(i, j) the rank
    of j among the neighbours of i in the input: points that look close in the embedding but were
    far in the input are penalised by how far. 1 means every embedded neighbour is a true neighbour.
    """
    N, _ = check_shape(X, "N n", name="X")
    check_shape(Y, "N k", name="Y", N=N)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < N / 2:
        raise ValueError(f"k must be an int in [1, N/2) = [1, {N / 2}), got {k!r}")
    r_in = _neighbour_ranks(squared_distances(X))  # (N, N)
    r_out = _neighbour_ranks(squared_distances(Y))
    in_knn_out = (r_out >= 1) & (r_out <= k)  # (N, N): j among the k nearest of i in the embedding
    penalty = (r_in - k).clamp_min(0)[in_knn_out].sum().item()
    return 1.0 - 2.0 / (N * k * (2 * N - 3 * k - 1)) * penalty


# ---------------------------------------------------------------------------- the optimiser
@dataclass(frozen=True)
class TSNEConfig:
    """Settings of :func:`tsne`; the defaults are scikit-learn's for the exact method.

    Book: :doc:`/notebooks/16_interpretability`
    """

    n_components: int = 2          # k, the dimension of the embedding
    perplexity: float = 30.0       # effective number of neighbours, exp(entropy) of each p_(.|i)
    n_iter: int = 1000             # gradient steps in all
    learning_rate: float = 0.0     # 0 = "auto": max(N / early_exaggeration / 4, 50) (Belkina et al. 2019)
    early_exaggeration: float = 12.0  # P is multiplied by this for the first exaggeration_iters steps
    exaggeration_iters: int = 250
    momentum: float = 0.5          # during early exaggeration
    final_momentum: float = 0.8    # afterwards
    min_gain: float = 0.01         # floor of the per-coordinate step multipliers
    init: str = "pca"              # "pca" (deterministic) or "random" (N(0, 1e-4^2), from seed)
    seed: int = 0

    def __post_init__(self):
        for name in ("n_components", "n_iter"):
            check_positive_int(getattr(self, name), name)
        if isinstance(self.exaggeration_iters, bool) or not isinstance(self.exaggeration_iters, int) \
                or self.exaggeration_iters < 0:
            raise ValueError(f"exaggeration_iters must be an int >= 0, got {self.exaggeration_iters!r}")
        if self.perplexity < 1:
            raise ValueError(f"perplexity must be >= 1, got {self.perplexity}")
        if self.learning_rate < 0 or self.early_exaggeration < 1 or self.min_gain <= 0:
            raise ValueError("need learning_rate >= 0, early_exaggeration >= 1 and min_gain > 0, got "
                             f"{self.learning_rate}, {self.early_exaggeration}, {self.min_gain}")
        if not (0 <= self.momentum < 1 and 0 <= self.final_momentum < 1):
            raise ValueError(f"momenta must lie in [0, 1), got {self.momentum}, {self.final_momentum}")
        if self.init not in ("pca", "random"):
            raise ValueError(f"init must be 'pca' or 'random', got {self.init!r}")


@dataclass(frozen=True)
class TSNEResult:
    """What :func:`tsne` returns: the embedding, its final KL divergence and the KL every 50 steps."""

    embedding: torch.Tensor                 # (N, k)
    kl: float                               # KL(P || Q) at the end, exaggeration off
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, KL(P || Q)) every 50 steps


def tsne(X: torch.Tensor, config: TSNEConfig = TSNEConfig()) -> TSNEResult:
    """Embed the rows of ``X`` (N, n) in ``config.n_components`` dimensions by minimising :func:`kl_loss`.

    Runs in float64 on X's device. See the module docstring for the update rule.
    """
    N, n = check_shape(X, "N n", name="X")
    if not isinstance(config, TSNEConfig):
        raise TypeError(f"config must be a TSNEConfig, got {type(config).__name__}")
    c = config
    if N < 3 or c.perplexity > N - 1:
        raise ValueError(f"t-SNE of {N} points needs N >= 3 and perplexity <= N - 1, got perplexity {c.perplexity}")
    X = X.detach().double()
    P = joint_affinities(X, c.perplexity)
    if c.init == "pca":
        if c.n_components > min(N, n):
            raise ValueError(f"init='pca' needs n_components <= min(N, n) = {min(N, n)}, got {c.n_components}")
        Y = pca(X, c.n_components).transform(X)  # (N, k)
        Y = Y / Y[:, 0].std() * 1e-4
    else:
        g = torch.Generator().manual_seed(c.seed)
        Y = 1e-4 * torch.randn(N, c.n_components, generator=g, dtype=torch.float64).to(X.device)
    lr = c.learning_rate or max(N / c.early_exaggeration / 4, 50.0)
    update, gains = torch.zeros_like(Y), torch.ones_like(Y)
    history = []
    for step in range(c.n_iter):
        early = step < c.exaggeration_iters
        P_step = P * c.early_exaggeration if early else P
        grad = kl_gradient(P_step, Y)  # (N, k)
        # delta-bar-delta: grow the gain where the gradient keeps its sign relative to the last update
        same_direction = update * grad < 0
        gains = torch.where(same_direction, gains + 0.2, gains * 0.8).clamp_min(c.min_gain)
        update = (c.momentum if early else c.final_momentum) * update - lr * gains * grad
        Y = Y + update
        if step % 50 == 49 or step == c.n_iter - 1:
            history.append((step + 1, kl_loss(P, Y).item()))
    return TSNEResult(embedding=Y, kl=kl_loss(P, Y).item(), history=history)
