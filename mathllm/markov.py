"""Finite Markov chains: transition matrices, the stationary distribution, mixing, entropy rate.

Shape legend: S states. A transition matrix P (S, S) has P[i, j] = P(X_{t+1} = j | X_t = i): every
entry is >= 0 and every row sums to 1 (row-stochastic). A distribution over states is a row vector
p (S,), and one step maps it to p P, so t steps give p P^t.

A **stationary distribution** pi satisfies pi P = pi: it is a left eigenvector of P (an eigenvector
of P^T) for the eigenvalue 1, scaled to sum to 1. When the chain is irreducible it is unique; when
it is also aperiodic every starting distribution converges to it, and the distance to it,
d(t) = max_i TV(P^t[i], pi), shrinks roughly like ``|lambda_2|^t``, lambda_2 the second-largest
eigenvalue in modulus (Levin & Peres 2017, ch. 4 and 12).

Leaves out: continuous state spaces, absorbing-chain analysis, coupling arguments.

Book: :doc:`/notebooks/03_probability`
"""
from __future__ import annotations

import bisect

import numpy as np
import torch

from .checks import check_positive, check_positive_int, check_tensor
from .probability import check_distribution, entropy


# ---------------------------------------------------------------------------- checks
def check_transition_matrix(P: torch.Tensor, name: str = "P") -> int:
    """Raise unless ``P`` is a square (S, S) float matrix with rows that are distributions; return S."""
    check_tensor(P, name)
    if P.dim() != 2 or P.shape[0] != P.shape[1]:
        raise ValueError(f"{name} must be a square transition matrix (S, S), got shape {tuple(P.shape)}")
    check_distribution(P, name)
    return P.shape[0]


def total_variation(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``TV(p, q) = max_A |p(A) - q(A)| = (1/2) sum_i |p_i - q_i|``: (..., S), (..., S) -> (...)."""
    check_distribution(p, "p"), check_distribution(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    return 0.5 * (p - q).abs().sum(-1)


# ---------------------------------------------------------------------------- evolution
def evolve(p0: torch.Tensor, P: torch.Tensor, steps: int) -> torch.Tensor:
    """The distributions p0, p0 P, ..., p0 P^steps: (S,), (S, S) -> (steps + 1, S)."""
    S = check_transition_matrix(P)
    check_distribution(p0, "p0")
    if p0.shape != (S,):
        raise ValueError(f"p0 must have shape (S,) = ({S},), got {tuple(p0.shape)}")
    check_positive(steps, "steps", allow_zero=True)
    out = [p0.to(P.dtype)]
    for _ in range(steps):
        out.append(out[-1] @ P)  # (S,) x (S, S) -> (S,)
    return torch.stack(out)


def stationary_distribution(P: torch.Tensor, method: str = "eig", tol: float = 1e-12,
                            max_iter: int = 100_000) -> torch.Tensor:
    """The pi (S,) with pi P = pi and sum(pi) = 1.

    ``method="eig"``: the eigenvector of P^T for the eigenvalue closest to 1 (``torch.linalg.eig``),
    real part, divided by its sum. A chain whose eigenvalue 1 is repeated is reducible and has more
    than one stationary distribution: that is an error.
    ``method="power"``: iterate p <- p P from the uniform distribution until the L1 change is below
    ``tol``. Converges only for aperiodic chains; a periodic one (which never settles) is an error.
    """
    S = check_transition_matrix(P)
    if method == "eig":
        evals, evecs = torch.linalg.eig(P.T)  # right eigenvectors of P^T = left eigenvectors of P
        dist = (evals - 1).abs()
        ones = int((dist < 1e-8).sum())
        if ones > 1:
            raise ValueError(f"P has the eigenvalue 1 with multiplicity {ones}: the chain is reducible and "
                             f"has no unique stationary distribution")
        v = evecs[:, dist.argmin()].real  # (S,)
        return (v / v.sum()).clamp_min(0)  # the Perron vector has one sign; clamp rounding noise
    if method == "power":
        return stationary_by_power(lambda p: p @ P, S, dtype=P.dtype, tol=tol, max_iter=max_iter)  # (S,) x (S, S)
    raise ValueError(f"method must be 'eig' or 'power', got {method!r}")


def stationary_by_power(step, S: int, *, dtype: torch.dtype = torch.float64, tol: float = 1e-12,
                        max_iter: int = 100_000) -> torch.Tensor:
    """pi = lim_t u P^t from the uniform distribution u (S,), for a chain given by its step ``p -> p P``.

    The power method of :func:`stationary_distribution` (``method="power"``), written once and also
    used by :class:`mathllm.markov_source.MarkovSource`, whose chain on V^k contexts is too large for
    a dense P and is stepped without forming it. Stops when the L1 change is below ``tol``; a chain
    that never settles (a periodic one) is an error. Returns pi scaled to sum to 1.
    """
    if not callable(step):
        raise TypeError(f"step must be a callable p -> p P on (S,) distributions, got {type(step).__name__}")
    check_positive_int(S, "S")
    check_positive_int(max_iter, "max_iter")
    p = torch.full((S,), 1.0 / S, dtype=dtype)
    for _ in range(max_iter):
        nxt = step(p)
        if (nxt - p).abs().sum() < tol:
            return nxt / nxt.sum()
        p = nxt
    raise ValueError(f"power iteration did not converge in {max_iter} steps (L1 change "
                     f"{(nxt - p).abs().sum().item():.3g}): the chain may be periodic; use method='eig'")


def eigenvalue_moduli(P: torch.Tensor) -> torch.Tensor:
    """The eigenvalue moduli ``|lambda_1| >= |lambda_2| >= ...`` of P: (S,) float; for a stochastic matrix the first is 1."""
    check_transition_matrix(P)
    return torch.sort(torch.linalg.eigvals(P).abs(), descending=True).values


def spectral_gap(P: torch.Tensor) -> float:
    """``1 - |lambda_2|``, the gap between 1 and the second-largest eigenvalue modulus (1 when S = 1)."""
    mods = eigenvalue_moduli(P)
    return 1.0 - (mods[1].item() if mods.numel() > 1 else 0.0)


def mixing_profile(P: torch.Tensor, steps: int) -> torch.Tensor:
    """d(t) = max_i TV(P^t[i, :], pi) for t = 0..steps: (steps + 1,). Non-increasing in t."""
    S = check_transition_matrix(P)
    check_positive(steps, "steps", allow_zero=True)
    pi = stationary_distribution(P)
    Pt = torch.eye(S, dtype=P.dtype)
    out = []
    for _ in range(steps + 1):
        out.append(total_variation(Pt, pi.expand(S, S)).max())
        Pt = Pt @ P  # (S, S) x (S, S) -> (S, S)
    return torch.stack(out)


def mixing_time(P: torch.Tensor, eps: float = 0.25, max_steps: int = 10_000) -> int:
    """The first t with d(t) <= eps (the textbook mixing time for eps = 1/4)."""
    S = check_transition_matrix(P)
    if not 0 < eps < 1:
        raise ValueError(f"eps must be in (0, 1), got {eps!r}")
    pi = stationary_distribution(P)
    Pt = torch.eye(S, dtype=P.dtype)
    for t in range(max_steps + 1):
        if total_variation(Pt, pi.expand(S, S)).max() <= eps:
            return t
        Pt = Pt @ P
    raise ValueError(f"the chain did not mix to eps={eps} in {max_steps} steps (periodic or very slow)")


# ---------------------------------------------------------------------------- sampling and estimation
def run_chain(cdf_rows: list[list[float]], state: int, uniforms: np.ndarray, n_symbols: int) -> list[int]:
    """Emit one symbol per uniform: y = first j with cdf_rows[state][j] > u, then state <- (state * n_symbols + y) mod S.

    With S = n_symbols this is an ordinary chain (the state is the last symbol); with S = V^k the
    state is the last k symbols (:class:`mathllm.markov_source.MarkovSource`). Plain Python: the
    steps depend on each other, and ``bisect`` on short lists is faster than a tensor call per step.
    """
    if not isinstance(cdf_rows, (list, tuple)) or not cdf_rows or not all(isinstance(r, (list, tuple)) and r for r in cdf_rows):
        raise TypeError(f"cdf_rows must be a non-empty list of non-empty lists (one cumulative distribution per state), "
                        f"got {type(cdf_rows).__name__}")
    S = len(cdf_rows)
    check_positive_int(n_symbols, "n_symbols")
    if isinstance(state, bool) or not isinstance(state, (int, np.integer)) or not 0 <= state < S:
        raise ValueError(f"state must be an int in [0, {S}), got {state!r}")
    if not isinstance(uniforms, np.ndarray) or uniforms.ndim != 1:
        raise TypeError(f"uniforms must be a 1-d numpy array of draws in [0, 1), got {type(uniforms).__name__}")
    out = []
    for u in uniforms.tolist():
        y = bisect.bisect_right(cdf_rows[state], u)
        out.append(y)
        state = (state * n_symbols + y) % S
    return out


def _cdf_rows(P: torch.Tensor) -> list[list[float]]:
    cdf = P.double().cumsum(-1)
    return (cdf / cdf[:, -1:]).tolist()  # last entry exactly 1: every u in [0, 1) lands


def simulate(P: torch.Tensor, n: int, start: int | None = None, seed: int = 0) -> torch.Tensor:
    """A path X_0, ..., X_{n-1} of the chain: (n,) int64, deterministic given ``seed``.

    ``start=None`` draws X_0 from the stationary distribution (the path is then stationary).
    """
    S = check_transition_matrix(P)
    check_positive(n, "n", allow_zero=True)
    rng = np.random.default_rng(seed)
    if start is None:
        pi = stationary_distribution(P)
        start = bisect.bisect_right(_cdf_rows(pi[None])[0], rng.random())
    elif not (isinstance(start, int) and 0 <= start < S):
        raise ValueError(f"start must be a state in [0, {S}), got {start!r}")
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    rest = run_chain(_cdf_rows(P), start, rng.random(n - 1), S)
    return torch.tensor([start] + rest, dtype=torch.int64)


def estimate_transition_matrix(states: torch.Tensor, n_states: int) -> torch.Tensor:
    """Maximum-likelihood P from a path (N,): transition counts divided by row totals, (S, S) float64.

    A state never left in the path gets the uniform row (the likelihood says nothing about it).
    """
    from .checks import check_ids
    check_ids(states, n_states, "states")
    if states.dim() != 1:
        raise ValueError(f"states must have shape (N,), got {tuple(states.shape)}")
    pairs = states[:-1].long() * n_states + states[1:].long()  # (N-1,) codes of (from, to)
    counts = torch.bincount(pairs, minlength=n_states * n_states).double().view(n_states, n_states)
    totals = counts.sum(1, keepdim=True)
    return torch.where(totals > 0, counts / totals.clamp_min(1), torch.full_like(counts, 1.0 / n_states))


def entropy_rate(P: torch.Tensor) -> float:
    """H = sum_i pi_i H(P[i, :]) nats per step: the entropy of the next state given the current one, on average."""
    pi = stationary_distribution(P)
    return float((pi.double() * entropy(P.double())).sum())
