"""Eigenvalues, the singular value decomposition and low-rank structure.

Implements, each checked against ``torch.linalg`` in ``tests/test_spectral.py``:

- power iteration for the dominant eigenpair of a symmetric matrix (:func:`power_iteration`);
  Trefethen and Bau, *Numerical Linear Algebra*, lecture 27;
- the SVD read off the eigendecomposition of ``A^T A`` (:func:`svd_via_eigh`), and a randomized
  truncated SVD by subspace iteration (:func:`truncated_svd`; Halko, Martinsson and Tropp, 2011);
- the Eckart-Young theorem: the best rank-``k`` approximation and its error
  (:func:`low_rank_approx`, :func:`eckart_young_error`, :func:`low_rank_params`; Eckart and Young, 1936);
- principal component analysis by the SVD of centred data (:func:`pca`).

Leaves out: gradient descent on quadratics, whose speed the Hessian's eigenvalues set (derived in
the chapter; the package code is ``mathllm.quadratic``); the QR algorithm and Golub-Kahan
bidiagonalisation that LAPACK (and so ``torch.linalg``) really uses; nonsymmetric and complex
eigenproblems. :func:`svd_via_eigh` squares the condition number, so singular values below about
``sqrt(eps) * sigma_max`` come out inaccurate: it explains the SVD, ``torch.linalg.svd`` computes it.

Book: :doc:`/notebooks/02_linear_algebra`
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import check_positive_int, check_shape, check_tensor


# ---------------------------------------------------------------------------- checks
def _check_matrix(A: torch.Tensor, name: str = "A") -> tuple[int, int]:
    check_tensor(A, name)
    if A.dim() != 2:
        raise ValueError(f"{name} must be a 2-d (m, n) matrix, got shape {tuple(A.shape)}")
    if not A.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {str(A.dtype).replace('torch.', '')}")
    if A.numel() == 0:
        raise ValueError(f"{name} must have at least one row and one column, got shape {tuple(A.shape)}")
    return A.shape[0], A.shape[1]


def _check_symmetric(A: torch.Tensor, name: str = "A") -> int:
    m, n = _check_matrix(A, name)
    if m != n:
        raise ValueError(f"{name} must be a square symmetric (n, n) matrix, got shape {(m, n)}")
    tol = 1e3 * torch.finfo(A.dtype).eps * max(float(A.abs().max()), 1e-300)
    if float((A - A.T).abs().max()) > tol:
        raise ValueError(f"{name} must be symmetric: max |A - A^T| = {float((A - A.T).abs().max()):.3g} > {tol:.3g}")
    return n


def _check_rank(k, limit: int, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"{name} must be an int, got {type(k).__name__}")
    if not 1 <= k <= limit:
        raise ValueError(f"{name} must be in [1, {limit}] (at most min(m, n) = {limit}), got {k}")
    return k


def _check_spectrum(S: torch.Tensor, name: str = "S") -> None:
    """Singular values: floating, finite, >= 0 and in descending order (as torch.linalg.svd returns them)."""
    if not S.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {str(S.dtype).replace('torch.', '')}")
    if not torch.isfinite(S).all():
        raise ValueError(f"{name} must be finite, got a NaN or infinite singular value")
    if S.numel() and float(S.min()) < 0:
        raise ValueError(f"{name} must hold singular values >= 0, got a value {float(S.min()):g}")
    if (S[1:] > S[:-1]).any():
        raise ValueError(f"{name} must hold singular values in descending order (as torch.linalg.svd returns them); "
                         f"got S[i] < S[i + 1] at i = {int((S[1:] > S[:-1]).nonzero()[0])}")


# ---------------------------------------------------------------------------- eigenvalues
@dataclass(frozen=True)
class PowerIterationResult:
    """What :func:`power_iteration` found."""

    value: float                 # Rayleigh quotient v^T A v of the last iterate: the eigenvalue estimate
    vector: torch.Tensor         # (n,) unit eigenvector estimate
    iterations: int              # matrix-vector products used
    history: tuple[float, ...]   # the Rayleigh quotient after each iteration
    converged: bool              # False: the residual never fell below tol (e.g. |lambda_1| = |lambda_2|)


def power_iteration(A: torch.Tensor, *, iters: int = 1000, tol: float = 1e-12,
                    generator: torch.Generator | None = None) -> PowerIterationResult:
    r"""Dominant eigenpair of a symmetric matrix by repeated multiplication, ``v <- A v / ||A v||``.

    Writing the start vector in the eigenbasis, ``A^t v_0 = sum_i c_i lambda_i^t q_i``: every
    component shrinks relative to the first by ``|lambda_i / lambda_1|^t``. So the iterate converges
    to ``q_1`` (up to sign) at rate ``|lambda_2 / lambda_1|`` per step and the Rayleigh quotient at
    the squared rate, provided ``|lambda_1| > |lambda_2|`` and ``c_1 != 0`` (true with probability 1
    for a random start). Stops when the residual ``||A v - lambda v||`` falls below ``tol * ||A||_F``.
    When it does not within ``iters`` (two eigenvalues of equal magnitude and opposite sign, such as
    diag(1, -1), never converge; a small gap converges slowly), ``converged`` is False and ``value``
    is only the last Rayleigh quotient: check the flag before trusting it.

    Args:
        A: (n, n) symmetric floating tensor.
        iters: maximum number of iterations.
        tol: relative residual at which to stop.
        generator: seeds the random start vector.

    Returns:
        :class:`PowerIterationResult` with the eigenvalue of largest magnitude (with its sign) and
        the ``converged`` flag.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Eigenvalues and power iteration".
    """
    n = _check_symmetric(A)
    check_positive_int(iters, "iters")
    v = torch.randn(n, generator=generator, dtype=A.dtype).to(A.device)
    v = v / v.norm()
    scale = float(A.norm())
    history = []
    converged = False
    for t in range(1, iters + 1):
        w = A @ v                      # (n, n) x (n,) -> (n,)
        if float(w.norm()) == 0.0:     # v lies in the null space: an eigenvector of eigenvalue 0
            history.append(0.0)
            return PowerIterationResult(value=0.0, vector=v, iterations=t, history=tuple(history), converged=True)
        v = w / w.norm()
        Av = A @ v
        lam = float(v @ Av)            # Rayleigh quotient
        history.append(lam)
        if float((Av - lam * v).norm()) <= tol * scale:
            converged = True
            break
    return PowerIterationResult(value=lam, vector=v, iterations=t, history=tuple(history), converged=converged)


# ---------------------------------------------------------------------------- SVD
def svd_via_eigh(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Thin SVD ``A = U diag(S) Vh`` read off the eigendecomposition of the Gram matrix ``A^T A``.

    ``A^T A = V diag(sigma^2) V^T`` is symmetric positive semidefinite (spectral theorem), so its
    eigenvectors are the right singular vectors and ``sigma_i = sqrt(lambda_i)``; then
    ``u_i = A v_i / sigma_i``. Where ``sigma_i`` is too small for that division to be trusted
    (below ``sqrt(eps) * sigma_1``), ``u_i`` is completed to an orthonormal basis instead.

    Args:
        A: (m, n) floating tensor.

    Returns:
        ``(U, S, Vh)`` of shapes (m, r), (r,), (r, n), ``r = min(m, n)``, ``S`` descending.

    Book: :doc:`/notebooks/02_linear_algebra`, section "The singular value decomposition".
    """
    m, n = _check_matrix(A)
    if m < n:  # A^T = V S U^T
        U, S, Vh = svd_via_eigh(A.T)
        return Vh.T, S, U.T
    lam, V = torch.linalg.eigh(A.T @ A)       # (n,), (n, n), ascending
    lam, V = lam.flip(0), V.flip(1)           # descending
    S = lam.clamp(min=0).sqrt()
    U = A @ V                                 # (m, n) x (n, n) -> (m, n), column i = sigma_i u_i
    good = S > torch.finfo(A.dtype).eps ** 0.5 * S[0]
    r = int(good.sum())
    U[:, :r] = U[:, :r] / S[:r]
    if r < n:  # complete with an orthonormal basis of the complement of the good columns
        Q = torch.linalg.qr(U[:, :r], mode="complete").Q   # (m, m)
        U[:, r:] = Q[:, r:n]
    return U, S, V.T


def truncated_svd(A: torch.Tensor, k: int, *, oversample: int = 10, iters: int = 4,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The top-``k`` singular triplets by randomized subspace iteration (Halko et al. 2011, alg. 4.4).

    Power iteration on a block of ``l = k + oversample`` random vectors: ``Q`` spans
    ``(A A^T)^q A Omega``, re-orthonormalised after every product; then the exact SVD of the small
    ``(l, n)`` matrix ``Q^T A`` gives the triplets. Each extra iteration shrinks the error factor
    ``(sigma_{l+1} / sigma_k)^{2q+1}``.

    Args:
        A: (m, n) floating tensor.
        k: rank, ``1 <= k <= min(m, n)``.
        oversample: extra random vectors beyond ``k``.
        iters: subspace iterations ``q``.
        generator: seeds the random start block ``Omega``.

    Returns:
        ``(U, S, Vh)`` of shapes (m, k), (k,), (k, n).

    Book: :doc:`/notebooks/02_linear_algebra`, section "Word vectors from co-occurrence counts".
    """
    m, n = _check_matrix(A)
    _check_rank(k, min(m, n))
    l = min(k + oversample, min(m, n))
    Omega = torch.randn(n, l, generator=generator, dtype=A.dtype).to(A.device)
    Q = torch.linalg.qr(A @ Omega).Q          # (m, n) x (n, l) -> (m, l)
    for _ in range(iters):
        Q = torch.linalg.qr(A.T @ Q).Q        # (n, m) x (m, l) -> (n, l)
        Q = torch.linalg.qr(A @ Q).Q          # (m, n) x (n, l) -> (m, l)
    Ub, S, Vh = torch.linalg.svd(Q.T @ A, full_matrices=False)   # (l, n) -> (l, l), (l,), (l, n)
    return (Q @ Ub)[:, :k], S[:k], Vh[:k]


# ---------------------------------------------------------------------------- low rank
def low_rank_approx(A: torch.Tensor, k: int) -> torch.Tensor:
    r"""The best rank-``k`` approximation ``A_k = sum_{i<=k} sigma_i u_i v_i^T`` (m, n).

    Eckart-Young: no rank-``k`` matrix is closer to ``A`` in the Frobenius or the spectral norm;
    the errors are given by :func:`eckart_young_error`.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Eckart-Young: the best low-rank approximation".
    """
    m, n = _check_matrix(A)
    _check_rank(k, min(m, n))
    U, S, Vh = torch.linalg.svd(A, full_matrices=False)
    return (U[:, :k] * S[:k]) @ Vh[:k]        # (m, k) x (k, n) -> (m, n)


def eckart_young_error(S: torch.Tensor, k: int, norm: str = "fro") -> float:
    r"""Error of the best rank-``k`` approximation from the singular values ``S`` (descending).

    ``||A - A_k||_F = sqrt(sigma_{k+1}^2 + ... + sigma_r^2)`` and ``||A - A_k||_2 = sigma_{k+1}``
    (0 when ``k`` is the full rank).

    Book: :doc:`/notebooks/02_linear_algebra`, section "Eckart-Young: the best low-rank approximation".
    """
    check_shape(S, "r", name="S")
    _check_spectrum(S)
    _check_rank(k, S.shape[0])
    if norm not in ("fro", "spectral"):
        raise ValueError(f"norm must be 'fro' or 'spectral', got {norm!r}")
    tail = S[k:]
    if tail.numel() == 0:
        return 0.0
    return float(tail.square().sum().sqrt()) if norm == "fro" else float(tail[0])


def low_rank_params(m: int, n: int, k: int) -> int:
    """Parameters of a rank-``k`` factorisation ``W = L R`` of an (m, n) matrix: ``k (m + n)``,
    fewer than ``m n`` exactly when ``k < m n / (m + n)``.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Compressing a weight matrix".
    """
    for name, v in (("m", m), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"low_rank_params needs positive int sizes, got {name}={v!r}")
    _check_rank(k, min(m, n))
    return k * (m + n)


# ---------------------------------------------------------------------------- PCA
@dataclass(frozen=True)
class PCA:
    """A fitted principal component analysis (see :func:`pca`)."""

    mean: torch.Tensor                # (C,) the data mean that is subtracted
    components: torch.Tensor          # (k, C) orthonormal rows: the principal directions
    explained_variance: torch.Tensor  # (k,) variance of the data along each direction
    total_variance: float             # sum of the variances of all C coordinates

    def transform(self, X: torch.Tensor) -> torch.Tensor:
        """Coordinates of ``X`` (N, C) in the principal directions: (N, k)."""
        check_shape(X, "N C", name="X", C=self.mean.shape[0])
        return (X - self.mean) @ self.components.T   # (N, C) x (C, k) -> (N, k)

    def inverse_transform(self, Z: torch.Tensor) -> torch.Tensor:
        """Back from principal coordinates (N, k) to the data space (N, C)."""
        check_shape(Z, "N k", name="Z", k=self.components.shape[0])
        return Z @ self.components + self.mean       # (N, k) x (k, C) -> (N, C)


def pca(X: torch.Tensor, k: int) -> PCA:
    r"""PCA of the rows of ``X`` (N, C) by the SVD of the centred data ``X - mean = U S V^T``.

    The covariance is ``V diag(S^2 / (N - 1)) V^T``, so the rows of ``V^T`` are the principal
    directions and ``S^2 / (N - 1)`` the variances along them, without ever forming the (C, C)
    covariance. Signs are fixed so that each direction's largest-magnitude entry is positive.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Principal component analysis".
    """
    N, C = _check_matrix(X, "X")
    if N < 2:
        raise ValueError(f"pca needs at least 2 rows (samples), got X of shape {(N, C)}")
    _check_rank(k, min(N, C))
    mean = X.mean(0)
    U, S, Vh = torch.linalg.svd(X - mean, full_matrices=False)   # (N, r), (r,), (r, C)
    comps = Vh[:k]
    sign = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))   # (k, 1)
    var = S.square() / (N - 1)
    return PCA(mean=mean, components=comps * sign, explained_variance=var[:k], total_variance=float(var.sum()))
