"""Probability and information: distributions, their moments, entropy, cross-entropy, KL, sampling.

Shape legend (book/notation.md): V vocabulary (the number of outcomes). A *distribution* is a
float tensor ``p`` of shape (..., V), non-negative, each row summing to 1 (checked by
:func:`check_distribution`; every function here that takes a distribution calls it).

What is here, in the chapter's order:

* the six textbook distributions as sympy expressions, with their means and variances derived by
  summation (Bernoulli, binomial, Poisson: discrete, with a pmf) and by integration (Gaussian,
  exponential, Weibull: continuous, with a pdf; a pdf is a density, not a probability, and can
  exceed 1); the law of large numbers and the central limit theorem as small helpers;
* Bayes' theorem and (conditional) mutual information of a joint table;
* entropy H(p), KL(p || q) = H(p, q) - H(p), perplexity exp(H(p, q)), nats/bits and bits per
  character (Shannon 1948; Cover & Thomas 2006, ch. 2); the cross-entropy H(p, q) itself is
  :func:`mathllm.losses.cross_entropy` (``cross_entropy(q.log(), p, "none")``), the one definition;
* temperature, top-k and top-p (Holtzman et al. 2020) as maps from a distribution to a
  distribution, and inverse-CDF sampling.

Leaves out: distributions beyond the six, continuous entropies (differential entropy), estimators of
entropy from samples beyond the plug-in one. Logit-level filters used when generating text live in
``mathllm.generate``.

Book: :doc:`/notebooks/03_probability`
"""
from __future__ import annotations

import math

import torch

from .checks import check_positive, check_positive_int, check_tensor

DISCRETE = ("bernoulli", "binomial", "poisson")
CONTINUOUS = ("gaussian", "exponential", "weibull")


# ---------------------------------------------------------------------------- checks
def check_distribution(p: torch.Tensor, name: str = "p", atol: float | None = None) -> torch.Tensor:
    """Raise unless ``p`` (..., V) is a float tensor of probabilities whose last axis sums to 1.

    ``atol`` is the tolerance on each row sum: 1e-9 for float64, 1e-4 for lower precision by default.
    Returns ``p`` unchanged.
    """
    check_tensor(p, name)
    if not p.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor of probabilities, got dtype "
                        f"{str(p.dtype).replace('torch.', '')}")
    if p.dim() == 0 or p.numel() == 0:
        raise ValueError(f"{name} must have shape (..., V) with at least one row and V >= 1, got shape {tuple(p.shape)}")
    if not torch.isfinite(p).all():
        raise ValueError(f"{name} holds NaN or infinite values; probabilities must be finite")
    if (p < 0).any():
        raise ValueError(f"{name} holds negative probabilities (smallest {p.min().item():.3g}); "
                         f"probabilities must be >= 0")
    atol = atol if atol is not None else (1e-9 if p.dtype == torch.float64 else 1e-4)
    sums = p.sum(-1)
    worst = (sums - 1).abs().max().item()
    if worst > atol:
        bad = sums.flatten()[(sums - 1).abs().flatten().argmax()].item()
        raise ValueError(f"{name} must sum to 1 along its last axis (V={p.shape[-1]}); a row sums to "
                         f"{bad:.6g} (tolerance {atol:g})")
    return p


def _check_same_shape(p: torch.Tensor, q: torch.Tensor) -> None:
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape (..., V), got {tuple(p.shape)} and {tuple(q.shape)}")


def _scale(base: float | None) -> float:
    if base is None:
        return 1.0
    check_positive(base, "base")
    if base == 1:
        raise ValueError("base must be > 0 and != 1 (use 2 for bits, None for nats)")
    return math.log(base)


# ---------------------------------------------------------------------------- information
def entropy(p: torch.Tensor, base: float | None = None) -> torch.Tensor:
    """H(p) = -sum_i p_i log p_i over the last axis, with 0 log 0 = 0: (..., V) -> (...).

    In nats by default; ``base=2`` gives bits.
    """
    check_distribution(p)
    return -torch.special.xlogy(p, p).sum(-1) / _scale(base)


def kl_divergence(p: torch.Tensor, q: torch.Tensor, base: float | None = None) -> torch.Tensor:
    """KL(p || q) = sum_i p_i log(p_i / q_i) >= 0, zero only when p = q: (..., V) -> (...).

    Computed directly (not as a difference), so H(p, q) = H(p) + KL(p || q), with H(p, q) from
    :func:`mathllm.losses.cross_entropy` (the one cross-entropy), is a check, not a tautology.
    Argument order: the reference distribution ``p`` first, as in the notation KL(p || q); note that
    ``F.kl_div(input, target)`` takes the model's log-probabilities first and computes KL(target || input).
    This is the only KL in mathllm: for logits z and targets q, KL(q || softmax(z)) is ``kl_divergence(q, softmax(z))``.
    """
    check_distribution(p, "p"), check_distribution(q, "q"), _check_same_shape(p, q)
    terms = torch.special.xlogy(p, p) - torch.special.xlogy(p, q)  # p log p - p log q, 0 where p = 0
    return terms.sum(-1) / _scale(base)


def _check_real(x, name: str):
    """A real number or a floating tensor: the input of the unit conversions below."""
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a number or a floating tensor, got dtype {str(x.dtype).replace('torch.', '')}")
    elif isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{name} must be a number or a floating tensor, got {type(x).__name__}")
    return x


def perplexity(cross_entropy_nats):
    """exp(cross-entropy in nats): the size of a uniform distribution that is as hard to predict."""
    if isinstance(_check_real(cross_entropy_nats, "cross_entropy_nats"), torch.Tensor):
        return cross_entropy_nats.exp()
    return math.exp(cross_entropy_nats) if cross_entropy_nats < 709.0 else math.inf  # exp(710) overflows a double


def nats_to_bits(x):
    """Divide by ln 2: one nat is 1/ln 2 = 1.4427 bits."""
    return _check_real(x, "x") / math.log(2)


def bits_to_nats(x):
    """Multiply by ln 2."""
    return _check_real(x, "x") * math.log(2)


def bits_per_character(nats_per_token: float, n_tokens: int, n_characters: int) -> float:
    """Bits per character of a text of ``n_characters`` coded as ``n_tokens`` tokens at ``nats_per_token``.

    The total code length n_tokens * nats_per_token does not depend on how the text was cut, so
    bits per character compares models with different tokenizers; nats per token does not.
    """
    _check_real(nats_per_token, "nats_per_token")
    check_positive(n_tokens, "n_tokens"), check_positive(n_characters, "n_characters")
    return nats_to_bits(nats_per_token * n_tokens / n_characters)


def empirical_distribution(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Relative frequencies of the ids (N,) in [0, V): (V,) float64, the maximum-likelihood categorical."""
    from .checks import check_ids
    check_ids(ids, vocab_size)
    if ids.numel() == 0:
        raise ValueError("ids is empty: the empirical distribution of no data is undefined")
    return torch.bincount(ids.flatten().long(), minlength=vocab_size).double() / ids.numel()


def bayes_posterior(prior: torch.Tensor, likelihood: torch.Tensor) -> torch.Tensor:
    """P(h | e) = P(e | h) P(h) / sum_h' P(e | h') P(h') for hypotheses h: (..., K), (..., K) -> (..., K).

    ``likelihood[k]`` is P(e | h_k), a number in [0, 1] for each hypothesis (it need not sum to 1).
    """
    check_distribution(prior, "prior")
    check_tensor(likelihood, "likelihood")
    if likelihood.shape != prior.shape:
        raise ValueError(f"likelihood must have the prior's shape {tuple(prior.shape)}, got {tuple(likelihood.shape)}")
    if (likelihood < 0).any() or (likelihood > 1).any():
        raise ValueError("likelihood must hold probabilities P(e | h) in [0, 1]")
    joint = prior * likelihood  # P(h, e)
    evidence = joint.sum(-1, keepdim=True)  # P(e)
    if (evidence == 0).any():
        raise ValueError("the evidence has probability 0 under every hypothesis; the posterior is undefined")
    return joint / evidence


def mutual_information(joint: torch.Tensor) -> torch.Tensor:
    """I(X; Y) = sum p(x, y) log p(x, y) / (p(x) p(y)) of a joint table (A, B), in nats."""
    check_distribution(check_tensor(joint, "joint").flatten(), "joint")
    if joint.dim() != 2:
        raise ValueError(f"joint must have shape (A, B), got {tuple(joint.shape)}")
    px, py = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    return (torch.special.xlogy(joint, joint) - torch.special.xlogy(joint, px * py)).sum()


def conditional_mutual_information(joint: torch.Tensor) -> torch.Tensor:
    """I(X; Z | Y) of a joint table p(x, y, z) of shape (A, B, C), in nats; zero iff X, Z independent given Y.

    I(X; Z | Y) = sum p(x, y, z) log [ p(y) p(x, y, z) / (p(x, y) p(y, z)) ].
    """
    check_distribution(check_tensor(joint, "joint").flatten(), "joint")
    if joint.dim() != 3:
        raise ValueError(f"joint must have shape (A, B, C) for p(x, y, z), got {tuple(joint.shape)}")
    pxy, pyz = joint.sum(2, keepdim=True), joint.sum(0, keepdim=True)  # (A, B, 1), (1, B, C)
    py = joint.sum((0, 2), keepdim=True)  # (1, B, 1)
    num = torch.special.xlogy(joint, joint) + torch.special.xlogy(joint, py.expand_as(joint))
    return (num - torch.special.xlogy(joint, pxy * pyz)).sum()


# ---------------------------------------------------------------------------- transformations and sampling
def apply_temperature(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """p_T proportional to p^(1/T), i.e. softmax(log p / T): (..., V) -> (..., V).

    T < 1 sharpens (T -> 0: all mass on the argmax), T > 1 flattens (T -> inf: uniform on the
    support). Applied to a model's softmax(z) it equals softmax(z / T). Computed in the log domain.
    """
    check_distribution(p)
    check_positive(temperature, "temperature")
    z = torch.log(p) / temperature  # -inf where p = 0 stays -inf
    z = z - z.amax(-1, keepdim=True)
    e = z.exp()
    return e / e.sum(-1, keepdim=True)


def top_k_filter(p: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` most likely outcomes (and any tied with the k-th), renormalise: (..., V) -> (..., V)."""
    check_distribution(p)
    check_positive_int(k, "k")
    k = min(k, p.shape[-1])
    kth = torch.topk(p, k, dim=-1).values[..., -1:]  # (..., 1)
    kept = torch.where(p >= kth, p, torch.zeros_like(p))
    return kept / kept.sum(-1, keepdim=True)


def top_p_filter(p: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus: keep the smallest set of most likely outcomes whose mass is >= ``top_p``, renormalise.

    Sorted in decreasing order, outcome i is kept when the mass strictly before it is < top_p, so the
    outcome that crosses the threshold is kept and the most likely one always is: (..., V) -> (..., V).
    """
    check_distribution(p)
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ValueError(f"top_p must be a number in (0, 1], got {top_p!r}")
    sorted_p, order = torch.sort(p, dim=-1, descending=True)
    mass_before = sorted_p.cumsum(-1) - sorted_p  # (..., V): mass of the outcomes ranked above
    keep_sorted = mass_before < top_p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    kept = torch.where(keep, p, torch.zeros_like(p))
    return kept / kept.sum(-1, keepdim=True)


def sample(p: torch.Tensor, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``num_samples`` outcomes from each row of ``p`` by inverting its CDF: (..., V) -> (..., num_samples).

    With U uniform on [0, 1), the outcome is the first i with F(i) > U, where F is the cumulative sum;
    P(i) = F(i) - F(i-1) = p_i. Outcomes with p_i = 0 are never drawn. Returns int64 ids.
    """
    check_distribution(p)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
        raise ValueError(f"num_samples must be a non-negative int, got {num_samples!r}")
    cdf = p.double().cumsum(-1)
    cdf = cdf / cdf[..., -1:]  # the last entry is exactly 1, so every U < 1 finds an outcome
    u = torch.rand(*p.shape[:-1], num_samples, generator=generator, dtype=torch.float64)
    return torch.searchsorted(cdf.contiguous(), u, right=True)


def binomial_count_band(p: torch.Tensor, n: int, tail: float = 1e-7) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact bounds (lo, hi) on the count of each outcome in ``n`` draws from ``p``: (..., V) -> 2 x (..., V).

    The count of outcome i is Binomial(n, p_i); lo and hi are its ``tail`` and 1 - ``tail`` quantiles,
    so P(count < lo) < tail and P(count > hi) <= tail. A correct sampler leaves the band of some
    outcome with probability below 2 V tail. Unlike a band of +-5 standard errors, this holds for
    outcomes whose expected count n p_i is near or below 1, where the normal approximation fails
    (one draw of a p = 1e-7 outcome is 4.5 standard errors away at n = 2e5).
    """
    import scipy.stats
    check_tensor(p, "p")
    if not p.is_floating_point() or not torch.isfinite(p).all() or ((p < 0) | (p > 1)).any():
        raise ValueError("p must be a floating tensor of probabilities in [0, 1]")
    check_positive_int(n, "n")
    if isinstance(tail, bool) or not isinstance(tail, (int, float)) or not 0 < tail < 0.5:
        raise ValueError(f"tail must be a number in (0, 0.5), got {tail!r}")
    pn = p.detach().double().cpu().numpy()
    lo = torch.as_tensor(scipy.stats.binom.ppf(tail, n, pn), dtype=torch.float64)
    hi = torch.as_tensor(scipy.stats.binom.isf(tail, n, pn), dtype=torch.float64)
    return lo, hi


# ---------------------------------------------------------------------------- limit theorems
def running_mean(x: torch.Tensor) -> torch.Tensor:
    """Sample means of the first 1, 2, ..., N values: (N,) -> (N,). The law of large numbers says they converge to E[X]."""
    check_tensor(x, "x")
    if x.dim() != 1 or x.numel() == 0:
        raise ValueError(f"x must have shape (N,) with N >= 1, got {tuple(x.shape)}")
    x = x.double()
    return x.cumsum(0) / torch.arange(1, x.numel() + 1, dtype=torch.float64)


def standardized_means(samples: torch.Tensor, mean: float, variance: float) -> torch.Tensor:
    """sqrt(n) (mean of each row - mean) / sd for samples (R, n) -> (R,). The CLT: approximately N(0, 1)."""
    check_tensor(samples, "samples")
    if samples.dim() != 2:
        raise ValueError(f"samples must have shape (R, n): R repetitions of n draws, got {tuple(samples.shape)}")
    check_positive(variance, "variance")
    n = samples.shape[1]
    return math.sqrt(n) * (samples.double().mean(1) - mean) / math.sqrt(variance)


def ks_distance(samples: torch.Tensor, cdf) -> float:
    """Kolmogorov-Smirnov distance ``sup_x |F_n(x) - F(x)|`` between the samples (N,) and a CDF (a torch function)."""
    check_tensor(samples, "samples")
    if samples.dim() != 1 or samples.numel() == 0:
        raise ValueError(f"samples must have shape (N,) with N >= 1, got {tuple(samples.shape)}")
    x, _ = torch.sort(samples.double())
    n = x.numel()
    F = cdf(x)  # (N,)
    above = torch.arange(1, n + 1, dtype=torch.float64) / n - F  # F_n jumps to i/n at x_(i)
    below = F - torch.arange(0, n, dtype=torch.float64) / n
    return max(above.max().item(), below.max().item())


# ---------------------------------------------------------------------------- symbolic distributions
def symbolic_distribution(name: str):
    """The pmf or pdf of a named distribution as a sympy expression.

    Returns ``(density, x, support, params)``: ``density`` in the variable ``x`` (an integer symbol
    for the discrete ones, a real one for the continuous ones), ``support`` a pair (lo, hi) to sum
    or integrate over, ``params`` the parameter symbols in the order torch.distributions takes them
    (bernoulli: p; binomial: n, p; poisson: lambda; gaussian: mu, sigma; exponential: lambda (rate);
    weibull: lambda (scale), k (shape)).
    """
    import sympy as sp
    if name in DISCRETE:
        x = sp.Symbol("x", integer=True, nonnegative=True)
    elif name in CONTINUOUS:
        x = sp.Symbol("x", real=True) if name == "gaussian" else sp.Symbol("x", positive=True)
    else:
        raise ValueError(f"unknown distribution: name must be one of {', '.join(DISCRETE + CONTINUOUS)}, got {name!r}")
    p, lam, k = sp.Symbol("p", positive=True), sp.Symbol("lambda", positive=True), sp.Symbol("k", positive=True)
    n = sp.Symbol("n", integer=True, positive=True)
    mu, sigma = sp.Symbol("mu", real=True), sp.Symbol("sigma", positive=True)
    table = {
        "bernoulli": (p**x * (1 - p) ** (1 - x), (0, 1), (p,)),
        "binomial": (sp.binomial(n, x) * p**x * (1 - p) ** (n - x), (0, n), (n, p)),
        "poisson": (lam**x * sp.exp(-lam) / sp.factorial(x), (0, sp.oo), (lam,)),
        "gaussian": (sp.exp(-(x - mu) ** 2 / (2 * sigma**2)) / sp.sqrt(2 * sp.pi * sigma**2), (-sp.oo, sp.oo), (mu, sigma)),
        "exponential": (lam * sp.exp(-lam * x), (0, sp.oo), (lam,)),
        "weibull": ((k / lam) * (x / lam) ** (k - 1) * sp.exp(-((x / lam) ** k)), (0, sp.oo), (lam, k)),
    }
    density, support, params = table[name]
    return density, x, support, params


def derive_moments(name: str):
    """Total mass, mean and variance of a named distribution, derived by sympy: ``(total, mean, variance)``.

    Discrete: through the probability generating function G(t) = E[t^X] = sum_x t^x P(X = x), one
    sum, then E[X] = G'(1) and Var X = G''(1) + G'(1) - G'(1)^2. Continuous: E[X^j] as integrals
    of x^j f(x). Var X = E[X^2] - E[X]^2 in both cases.
    """
    import sympy as sp
    density, x, (lo, hi), _ = symbolic_distribution(name)
    if name in DISCRETE:
        t = sp.Symbol("t", positive=True)
        G = sp.summation(t**x * density, (x, lo, hi))
        if isinstance(G, sp.Piecewise):
            # the binomial theorem holds for every p and t; sympy's hypergeometric summation attaches
            # a convergence condition that a finite sum does not need, so take its closed-form branch
            G = G.args[0][0]
        G = sp.simplify(G)
        total = sp.simplify(G.subs(t, 1))
        mean = sp.simplify(sp.diff(G, t).subs(t, 1))
        variance = sp.factor(sp.simplify(sp.diff(G, t, 2).subs(t, 1) + mean - mean**2))
        return total, mean, variance
    moments = [sp.simplify(sp.integrate(x**j * density, (x, lo, hi))) for j in range(3)]
    total, mean, second = moments
    variance = sp.simplify(second - mean**2)
    return total, mean, variance
