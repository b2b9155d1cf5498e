"""Bootstrap confidence intervals of a ratio of sums: the mean loss, nats per byte, and paired differences.

A held-out loss is an average over tokens that are not independent, so its spread is estimated by
resampling: each replicate draws contiguous blocks of the sequence with replacement and recomputes
``sum(num) / sum(den)`` (the mean when ``den`` is None). ``block=1`` is Efron's (1979) bootstrap of
independent observations; longer blocks keep the dependence between neighbouring tokens inside each
block (the non-overlapping block bootstrap, Carlstein 1986). Several statistics resampled with the
*same* blocks give a paired bootstrap, whose difference accounts for two models' errors being
correlated (used by :func:`mathllm.evaluate.compare_bits_per_byte`). The interval is the percentile
interval of the replicates (Efron and Tibshirani 1993, ch. 13).

All of these cover the evaluation sample of one trained model. :func:`seed_spread` adds the second
source of uncertainty, the training seed: for ``k`` models trained alike but for the seed and scored on
the same sample, the variance of their mean loss is about ``s^2 / k + se^2`` (the spread over seeds
and the bootstrap standard error from the text), with a Student-t factor on ``k - 1`` degrees of
freedom (:func:`t_critical`).

Leaves out: BCa and studentized intervals, the moving-block and stationary bootstraps, choosing the
block length from the data, mixed-effects models of seeds and passages (the seed-by-text interaction).

Book: notebooks/17_evaluation.ipynb, sections "How sure are we of the loss?", "A bootstrap
checked against the truth" and "How much does the training seed matter?".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .checks import check_positive_int, check_shape, check_tensor


def _check_level(level) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)):
        raise TypeError(f"level must be a number in (0, 1), got {type(level).__name__}")
    if not 0 < level < 1:  # NaN fails this too
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return float(level)


# ---------------------------------------------------------------------------- replicates
def bootstrap(num: torch.Tensor, den: torch.Tensor | None = None, *, n_boot: int = 1000, block: int = 1,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Bootstrap replicates of the ratio of sums ``sum(num) / sum(den)`` (the mean when ``den`` is None).

    The sequence is cut into ``n // block`` contiguous blocks (a remainder shorter than ``block`` is
    dropped), and each replicate draws that many blocks with replacement (the non-overlapping block
    bootstrap of Carlstein 1986). ``block=1`` is Efron's bootstrap of
    independent observations; tokens of a text are not independent, and blocks longer than the
    dependence keep it inside each block.

    Args:
        num: (n,) or (k, n) values; k statistics resampled with the *same* blocks (a paired bootstrap).
        den: the same shape, or None for ones.
        n_boot: replicates.  block: observations per block.

    Returns:
        (n_boot,) or (n_boot, k) float64 replicates.

    Raises:
        ValueError: fewer than 2 blocks (an empty sample has no estimate, one block no spread).

    Book: :doc:`/notebooks/17_evaluation`, section "How sure are we of the loss?"
    """
    check_tensor(num, "num")
    if num.dim() not in (1, 2):
        raise ValueError(f"num must have shape (n,) or (k, n), got {tuple(num.shape)}")
    if num.dim() == 2 and num.shape[0] == 0:
        raise ValueError(f"num must hold at least one statistic (k >= 1), got shape {tuple(num.shape)}")
    den = torch.ones_like(num, dtype=torch.float64) if den is None else den
    check_tensor(den, "den")
    if den.shape != num.shape:
        raise ValueError(f"den must have the shape of num {tuple(num.shape)}, got {tuple(den.shape)}")
    for name, value in (("n_boot", n_boot), ("block", block)):
        check_positive_int(value, name)
    single = num.dim() == 1
    n = num.shape[-1]
    n_blocks = n // block
    if n_blocks < 2:  # checked before any reshape: an empty sample has no blocks to draw
        raise ValueError(f"num must hold at least 2 blocks of block={block} observations, "
                         f"got {n} observations ({n_blocks} block(s))")
    num, den = num.double().reshape(-1, n), den.double().reshape(-1, n)   # (k, n)
    k = num.shape[0]
    nb = num[:, :n_blocks * block].reshape(k, n_blocks, block).sum(-1)   # (k, n_blocks) block sums
    db = den[:, :n_blocks * block].reshape(k, n_blocks, block).sum(-1)
    reps = []
    chunk = max(1, 2 ** 22 // n_blocks)                                   # replicates per step: bounded memory
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = torch.randint(n_blocks, (m, n_blocks), generator=generator)  # (m, n_blocks) drawn blocks
        counts = torch.zeros(m, n_blocks, dtype=torch.float64).scatter_add_(
            1, idx, torch.ones(m, n_blocks, dtype=torch.float64))          # times each block was drawn
        reps.append((counts @ nb.T) / (counts @ db.T))                     # (m, n_blocks) x (n_blocks, k) -> (m, k)
    out = torch.cat(reps)
    return out[:, 0] if single else out


# ---------------------------------------------------------------------------- intervals
@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with a percentile interval at ``level`` (see :func:`bootstrap_ci`)."""

    estimate: float
    low: float
    high: float
    level: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def map(self, f) -> "ConfidenceInterval":
        """The interval of ``f(statistic)`` for an increasing ``f`` (percentile intervals are equivariant)."""
        return ConfidenceInterval(f(self.estimate), f(self.low), f(self.high), self.level)


def percentile_interval(replicates: torch.Tensor, level: float = 0.95) -> tuple[float, float]:
    """The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of (n_boot,) replicates.

    Book: :doc:`/notebooks/17_evaluation`, section "How sure are we of the loss?"
    """
    check_shape(replicates, "R", name="replicates")
    if replicates.numel() == 0:
        raise ValueError("replicates must hold at least one replicate, got shape (0,)")
    level = _check_level(level)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    low, high = torch.quantile(replicates.double(), q).tolist()
    return low, high


def bootstrap_ci(num: torch.Tensor, den: torch.Tensor | None = None, *, level: float = 0.95, n_boot: int = 1000,
                 block: int = 1, generator: torch.Generator | None = None) -> ConfidenceInterval:
    """Percentile bootstrap interval of ``sum(num) / sum(den)`` for (n,) values (see :func:`bootstrap`).

    Book: :doc:`/notebooks/17_evaluation`, section "How sure are we of the loss?"
    """
    check_shape(num, "n", name="num")
    if num.numel() < 2:  # one observation has no spread to resample; none has no estimate
        raise ValueError(f"num must hold at least 2 observations, got shape {tuple(num.shape)}")
    level = _check_level(level)
    reps = bootstrap(num, den, n_boot=n_boot, block=block, generator=generator)
    estimate = float(num.double().sum() / (den.double().sum() if den is not None else num.numel()))
    return ConfidenceInterval(estimate, *percentile_interval(reps, level), level)



# ---------------------------------------------------------------------------- training seeds
def t_critical(level: float, dof: int) -> float:
    """The two-sided Student-t critical value ``c`` with ``P(|T| <= c) = level`` for ``dof`` degrees of freedom.

    ``P(|T| <= t)`` has a finite closed form for integer ``dof`` (Abramowitz and Stegun 26.7.3-4) in
    ``theta = atan(t / sqrt(dof))``; ``c`` is found from it by bisection.

    Book: :doc:`/notebooks/17_evaluation`, section "How much does the training seed matter?"
    """
    level = _check_level(level)
    check_positive_int(dof, "dof")

    def inside(t: float) -> float:  # P(|T| <= t)
        th = math.atan(t / math.sqrt(dof))
        s, c2, term, total = math.sin(th), math.cos(th) ** 2, 1.0, 1.0
        if dof % 2 == 0:  # sin(th) (1 + c2/2 + 1*3 c2^2/(2*4) + ...), dof/2 terms
            for j in range(1, dof // 2):
                term *= c2 * (2 * j - 1) / (2 * j)
                total += term
            return s * total
        if dof == 1:
            return 2 * th / math.pi
        for j in range(1, (dof - 1) // 2):  # (2/pi)(th + sin cos (1 + 2/3 c2 + 2*4/(3*5) c2^2 + ...))
            term *= c2 * (2 * j) / (2 * j + 1)
            total += term
        return 2 / math.pi * (th + s * math.cos(th) * total)

    lo, hi = 0.0, 1.0
    while inside(hi) < level:  # bracket: P(|T| <= t) increases to 1
        lo, hi = hi, 2 * hi
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if inside(mid) < level else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class SeedSpread:
    """One metric of ``k`` models trained alike but for the seed, all on one evaluation sample.

    Each interval covers one source of uncertainty, or both (see :func:`seed_spread`).
    """

    per_seed: torch.Tensor        # (k,) float64 metric of each seed's model on the sample
    seed_sd: float                # standard deviation over the seeds (k - 1 in the denominator)
    sample_se: float              # bootstrap standard error of the seed mean, from resampling the sample
    sample: ConfidenceInterval    # the sample only: percentile bootstrap of the seed mean
    seeds: ConfidenceInterval     # the seeds only: mean +- t_{k-1} sd / sqrt(k)
    total: ConfidenceInterval     # both: mean +- t_{k-1} sqrt(sd^2 / k + sample_se^2)


def seed_spread(num: torch.Tensor, den: torch.Tensor | None = None, *, level: float = 0.95, n_boot: int = 1000,
                block: int = 1, generator: torch.Generator | None = None) -> SeedSpread:
    """Separate the two uncertainties of a metric of a training recipe: the evaluation sample and the seed.

    Row ``s`` of ``num`` (k, n) holds the per-token values (nats) of the model trained with seed ``s``
    on the *same* n tokens; its metric is ``sum(num[s]) / sum(den[s])``. The recipe's metric is the
    mean over seeds, ``m``. Two things would change ``m`` on a rerun:

    - another evaluation sample: the block bootstrap resamples the tokens, the same blocks for every
      seed (:func:`bootstrap`), giving ``sample`` and its standard error ``se``;
    - other seeds: the seed metrics scatter with standard deviation ``sd``; with ``k`` seeds the
      Student-t interval ``m +- t_{k-1} sd / sqrt(k)`` is ``seeds``.

    They are independent, so their variances add: ``total`` is ``m +- t_{k-1} sqrt(sd^2 / k + se^2)``
    (k - 1 degrees of freedom: conservative when the sample term dominates).

    Args:
        num: (k, n) values, k >= 2 seeds.  den: (k, n) or None for ones.
        level, n_boot, block, generator: as :func:`bootstrap_ci`.

    Book: :doc:`/notebooks/17_evaluation`, section "How much does the training seed matter?"
    """
    k, n = check_shape(num, "k n", name="num")
    if k < 2:
        raise ValueError(f"num must hold at least 2 seeds (rows) to have a spread over seeds, got shape {(k, n)}")
    if den is not None:
        check_shape(den, "k n", name="den", k=k, n=n)
    level = _check_level(level)
    reps = bootstrap(num, den, n_boot=n_boot, block=block, generator=generator).mean(1)  # (n_boot,) seed means
    d = den.double() if den is not None else torch.ones_like(num, dtype=torch.float64)
    per_seed = num.double().sum(1) / d.sum(1)                                          # (k,)
    m, sd, se = float(per_seed.mean()), float(per_seed.std()), float(reps.std())
    t = t_critical(level, k - 1)
    half_seeds, half_total = t * sd / math.sqrt(k), t * math.sqrt(sd ** 2 / k + se ** 2)
    return SeedSpread(per_seed, sd, se, ConfidenceInterval(m, *percentile_interval(reps, level), level),
                      ConfidenceInterval(m, m - half_seeds, m + half_seeds, level),
                      ConfidenceInterval(m, m - half_total, m + half_total, level))
