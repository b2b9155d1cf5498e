"""Arrays, contractions and linear systems: the linear algebra every LLM layer runs on.

Implements, each in its plainest correct form and checked against torch in ``tests/test_linalg.py``:

- the broadcasting rule for shapes (:func:`broadcast_shape`, as ``torch.broadcast_shapes``);
- ``einsum`` as "multiply everything, sum what the output does not name" (:func:`einsum`), its
  operation count (:func:`einsum_flops`), and the cost of a matrix product counted scalar by scalar
  (:func:`matmul_counted`, :func:`matmul_flops`);
- the Kronecker (tensor) product (:func:`kron`);
- LU factorisation with partial pivoting, triangular solves, :func:`solve` and :func:`inverse`
  (Golub and Van Loan, *Matrix Computations*, 4th ed., sections 3.1-3.4), and the 2-norm condition
  number (:func:`condition_number`; Higham, *Accuracy and Stability of Numerical Algorithms*, ch. 7).

Leaves out: ellipsis (``...``) and implicit-output einsum; the pairwise contraction order that
``torch.einsum`` uses (our einsum materialises the full product, so it is for small tensors only);
blocked, cache-aware LU; complex numbers. Eigenvalues and the SVD are in :mod:`mathllm.spectral`.

Book: :doc:`/notebooks/02_linear_algebra`
"""
from __future__ import annotations

import math

import torch

from .checks import check_shape, check_tensor


# ---------------------------------------------------------------------------- shapes
def broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """The shape that ``shapes`` broadcast to, by NumPy's rule.

    Align the shapes at their last dimension; missing leading dimensions count as 1; in each
    position the sizes must be equal or one of them 1, and the result takes the larger.

    Args:
        shapes: tuples of non-negative ints, e.g. ``(B, T, C)`` and ``(C,)``.

    Returns:
        The broadcast shape, e.g. ``(B, T, C)``.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Arrays, shapes and broadcasting".
    """
    for s in shapes:
        if not isinstance(s, (tuple, list)) or not all(isinstance(d, int) and d >= 0 for d in s):
            raise TypeError(f"each shape must be a tuple of non-negative ints, got {s!r}")
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(-ndim, 0):  # walk from the left of the longest shape to the last dimension
        sizes = {s[axis] for s in shapes if len(s) >= -axis} - {1}
        if len(sizes) > 1:
            raise ValueError(f"shapes {', '.join(str(tuple(s)) for s in shapes)} do not broadcast: "
                             f"dimension {axis} has sizes {sorted(sizes)}; each must be equal or 1")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


# ---------------------------------------------------------------------------- einsum
def _parse(spec: str, n_operands: int) -> tuple[list[str], str]:
    if not isinstance(spec, str) or spec.count("->") != 1:
        raise ValueError(f"einsum spec must have the explicit form 'ij,jk->ik' with one '->', got {spec!r}")
    lhs, out = spec.replace(" ", "").split("->")
    inputs = lhs.split(",")
    if len(inputs) != n_operands:
        raise ValueError(f"einsum spec {spec!r} names {len(inputs)} operands, got {n_operands}")
    if not all(c.isalpha() for c in "".join(inputs) + out):
        raise ValueError(f"einsum indices must be letters, got {spec!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"einsum output {out!r} repeats an index")
    if set(out) - set("".join(inputs)):
        raise ValueError(f"einsum output index {sorted(set(out) - set(''.join(inputs)))} appears in no input of {spec!r}")
    return inputs, out


def _index_sizes(inputs: list[str], shapes: list[tuple[int, ...]], spec: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for k, (letters, shape) in enumerate(zip(inputs, shapes)):
        if len(letters) != len(shape):
            raise ValueError(f"einsum operand {k} is labelled {letters!r} ({len(letters)} dims), "
                             f"but has shape {tuple(shape)}")
        for c, n in zip(letters, shape):
            if sizes.setdefault(c, n) != n:
                raise ValueError(f"einsum index {c!r} of {spec!r} has size {sizes[c]} in one place and {n} in another")
    return sizes


def einsum(spec: str, *operands: torch.Tensor) -> torch.Tensor:
    r"""Einstein summation, written as its definition: multiply every operand, sum the free indices.

    ``out[o] = sum over the indices not in o of prod_k operand_k[its indices]``. An index repeated
    within one operand takes the diagonal (``"ii->"`` is the trace). The full product over every
    index is materialised, so memory grows as the product of all index sizes: a reference, not a
    fast path.

    Args:
        spec: explicit spec such as ``"bij,bjk->bik"`` (letters only, one ``->``).
        operands: tensors whose dimensions match the labels.

    Returns:
        Tensor with one dimension per output letter, in that order; equal to ``torch.einsum(spec, ...)``.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Einsum: one notation for every contraction".
    """
    for k, x in enumerate(operands):
        check_tensor(x, f"operand {k}")
    inputs, out = _parse(spec, len(operands))
    _index_sizes(inputs, [tuple(x.shape) for x in operands], spec)
    letters = list(dict.fromkeys("".join(inputs)))  # every index once, in order of appearance
    aligned = []
    for labels, x in zip(inputs, operands):
        labels = list(labels)
        while len(set(labels)) < len(labels):  # repeated index: keep the diagonal, moved to the end
            c = next(c for c in labels if labels.count(c) > 1)
            i, j = [p for p, d in enumerate(labels) if d == c][:2]
            x = torch.diagonal(x, dim1=i, dim2=j)
            labels = [d for p, d in enumerate(labels) if p not in (i, j)] + [c]
        x = x.permute(*[labels.index(c) for c in letters if c in labels])
        shape = [x.shape[[c for c in letters if c in labels].index(c)] if c in labels else 1 for c in letters]
        aligned.append(x.reshape(shape))  # one axis per index, size 1 where this operand lacks it
    prod = aligned[0]
    for x in aligned[1:]:
        prod = prod * x  # broadcasting multiply: the full product over all indices
    summed = [d for d, c in enumerate(letters) if c not in out]
    if summed:
        prod = prod.sum(dim=summed)
    kept = [c for c in letters if c in out]
    if not out:
        return prod
    return prod.permute(*[kept.index(c) for c in out])


def einsum_flops(spec: str, *shapes: tuple[int, ...]) -> int:
    """Scalar operations of the naive evaluation in :func:`einsum` (no repeated indices within an operand).

    With ``P`` the product of all index sizes and ``O`` that of the output: ``(n - 1) * P``
    multiplications for ``n`` operands and ``P - O`` additions to sum out the rest.

    Book: :doc:`/notebooks/02_linear_algebra`, section "The cost of a matrix product".
    """
    inputs, out = _parse(spec, len(shapes))
    if any(len(set(s)) < len(s) for s in inputs):
        raise ValueError(f"einsum_flops counts contractions without repeated indices in one operand, got {spec!r}")
    sizes = _index_sizes(inputs, [tuple(s) for s in shapes], spec)
    P = math.prod(sizes.values())
    O = math.prod(sizes[c] for c in out)
    return (len(shapes) - 1) * P + (P - O)


def matmul_flops(m: int, k: int, n: int) -> int:
    """FLOPs of an ``(m, k) x (k, n)`` product: ``m n`` dot products of length ``k``, each ``k`` multiplies
    and ``k - 1`` adds, so ``m n (2k - 1)``, which is ``2 m k n`` up to the ``- m n``.

    Book: :doc:`/notebooks/02_linear_algebra`, section "The cost of a matrix product".
    """
    for name, v in (("m", m), ("k", k), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"matmul_flops needs positive int sizes, got {name}={v!r}")
    return m * n * (2 * k - 1)


def matmul_counted(A: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """The textbook triple loop, counting every scalar multiplication and addition it performs.

    Args:
        A: (m, k) tensor (small: this is Python loops).
        B: (k, n) tensor.

    Returns:
        ``(C, n_mul, n_add)`` with ``C = A @ B`` of shape (m, n).

    Book: :doc:`/notebooks/02_linear_algebra`, section "The cost of a matrix product".
    """
    m, k = check_shape(A, "m k", name="A")
    check_shape(B, "k n", name="B", k=k)
    n = B.shape[1]
    C = torch.zeros(m, n, dtype=torch.result_type(A, B))
    n_mul = n_add = 0
    for i in range(m):
        for j in range(n):
            acc = A[i, 0] * B[0, j]
            n_mul += 1
            for p in range(1, k):
                acc = acc + A[i, p] * B[p, j]  # C_ij = sum_p A_ip B_pj
                n_mul += 1
                n_add += 1
            C[i, j] = acc
    return C, n_mul, n_add


def kron(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Kronecker product ``A ⊗ B``: (m, n) and (p, q) -> (m p, n q), block (i, j) equal to ``A[i, j] * B``.

    Vectors are (m, 1) columns (kets). The identity ``(A ⊗ B)(x ⊗ y) = (A x) ⊗ (B y)`` is why a
    Kronecker-structured weight applies in ``O(mn + pq)`` memory.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Bras, kets and the tensor product".
    """
    m, n = check_shape(A, "m n", name="A")
    p, q = check_shape(B, "p q", name="B")
    return einsum("ij,kl->ikjl", A, B).reshape(m * p, n * q)  # (m, p, n, q) -> (m p, n q)


# ---------------------------------------------------------------------------- linear systems
def _check_square(A: torch.Tensor, name: str = "A") -> int:
    check_tensor(A, name)
    if A.dim() != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) matrix, got shape {tuple(A.shape)}")
    if not A.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {str(A.dtype).replace('torch.', '')}")
    return A.shape[0]


def lu_factor(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gaussian elimination with partial pivoting: ``P A = L U``.

    At step ``j`` the row with the largest ``|A[i, j]|`` (``i >= j``) is swapped up, so every
    multiplier in ``L`` has ``|l| <= 1``; this is what keeps elimination stable in practice.

    Args:
        A: (n, n) floating tensor.

    Returns:
        ``(P, L, U)``: permutation matrix, unit lower-triangular ``L``, upper-triangular ``U``, all (n, n);
        ``A = P.T @ L @ U`` (``torch.linalg.lu`` returns ``P.T`` as its permutation).

    Book: :doc:`/notebooks/02_linear_algebra`, section "Solve, do not invert".
    """
    n = _check_square(A)
    U = A.clone()
    L = torch.eye(n, dtype=A.dtype)
    perm = list(range(n))
    for j in range(n - 1):
        p = j + int(torch.argmax(U[j:, j].abs()))
        if U[p, j] == 0:
            continue  # the column is already zero below the diagonal: singular, nothing to eliminate
        if p != j:
            U[[j, p]] = U[[p, j]]
            L[[j, p], :j] = L[[p, j], :j]
            perm[j], perm[p] = perm[p], perm[j]
        L[j + 1:, j] = U[j + 1:, j] / U[j, j]
        U[j + 1:] -= L[j + 1:, j:j + 1] * U[j:j + 1]  # (n-j-1, 1) * (1, n): rank-1 update
    P = torch.eye(n, dtype=A.dtype)[perm]
    return P, L, torch.triu(U)


def triangular_solve(T: torch.Tensor, b: torch.Tensor, *, lower: bool) -> torch.Tensor:
    """Solve ``T x = b`` for triangular ``T`` (n, n) and ``b`` (n,) or (n, k) by substitution."""
    n = _check_square(T, "T")
    if b.dim() not in (1, 2) or b.shape[0] != n:
        raise ValueError(f"b must have shape ({n},) or ({n}, k) to match T, got {tuple(b.shape)}")
    x = b.clone().to(T.dtype)
    order = range(n) if lower else range(n - 1, -1, -1)
    for i in order:
        done = slice(0, i) if lower else slice(i + 1, n)
        x[i] = (x[i] - T[i, done] @ x[done]) / T[i, i]  # forward or back substitution
    return x


def solve(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve ``A x = b`` by LU with partial pivoting: ``L y = P b``, then ``U x = y``.

    Costs ``2n^3/3`` FLOPs for the factorisation plus ``2n^2`` per right-hand side, against about
    ``2n^3`` to form ``A^{-1}``, and is backward stable: the computed ``x`` solves a system within
    rounding of ``A``.

    Args:
        A: (n, n) floating tensor, nonsingular.
        b: (n,) or (n, k) right-hand side(s).

    Returns:
        ``x`` with the shape of ``b``.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Solve, do not invert".
    """
    n = _check_square(A)
    check_tensor(b, "b")
    if b.dim() not in (1, 2) or b.shape[0] != n:
        raise ValueError(f"b must have shape ({n},) or ({n}, k) to match A of shape {tuple(A.shape)}, got {tuple(b.shape)}")
    P, L, U = lu_factor(A)
    if (U.diagonal() == 0).any():
        raise ValueError("A is singular: elimination produced a zero pivot")
    y = triangular_solve(L, P @ b.to(A.dtype), lower=True)
    return triangular_solve(U, y, lower=False)


def inverse(A: torch.Tensor) -> torch.Tensor:
    """``A^{-1}`` (n, n), as :func:`solve` with the identity as right-hand side. Prefer :func:`solve`.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Solve, do not invert".
    """
    n = _check_square(A)
    return solve(A, torch.eye(n, dtype=A.dtype))


def condition_number(A: torch.Tensor) -> float:
    r"""The 2-norm condition number ``sigma_max / sigma_min`` of a square matrix (``inf`` if singular).

    Perturbing ``b`` by a relative amount ``e`` can move the solution of ``A x = b`` by up to
    ``kappa(A) * e``: solving in precision ``u`` loses about ``log10(kappa)`` of its digits.

    Book: :doc:`/notebooks/02_linear_algebra`, section "Solve, do not invert".
    """
    _check_square(A)
    s = torch.linalg.svdvals(A)
    return float("inf") if s[-1] == 0 else float(s[0] / s[-1])


def hilbert(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The Hilbert matrix ``H_ij = 1 / (i + j + 1)`` (n, n): symmetric positive definite and
    notoriously ill-conditioned (``kappa`` grows like ``e^{3.5 n}``).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"hilbert needs a positive int n, got {n!r}")
    i = torch.arange(n, dtype=dtype)
    return 1.0 / (i[:, None] + i[None, :] + 1)
