"""Show package code inside a notebook, and the small timing and plotting helpers chapters share.

The rendered book includes source with Sphinx's ``literalinclude :pyobject:``; those directives do
not render in Jupyter, so chapters also call :func:`show_source`, which prints the same code.
:func:`best_time` times a call (the fastest of a few runs, on one thread), :func:`slope` fits the
exponent p of a power law y ~ x^p on log-log axes, and :func:`label_lengths` puts plain tick labels
on a logarithmic axis.

Leaves out: statistics of timings (a minimum is the least disturbed run, not a distribution).

Book: CONTRIBUTING.md, "The chapter checklist"; :doc:`/notebooks/10_attention` (timings).
"""
from __future__ import annotations

import inspect
import math
import timeit

import torch

from .checks import check_callable, check_positive_int, check_sequence


def source_of(obj) -> str:
    """The source code of a function, class or module, as a string."""
    try:
        return inspect.getsource(obj)
    except (TypeError, OSError) as e:
        raise TypeError(f"cannot show the source of {obj!r}: {e}") from e


def show_source(obj) -> None:
    """Display the source of ``obj`` as a highlighted code block (plain text outside IPython)."""
    text = source_of(obj)
    try:
        from IPython.display import Markdown, display
    except ImportError:  # plain Python: print it
        print(text)
        return
    display(Markdown(f"```python\n{text}```"))


# ---------------------------------------------------------------------------- timing and plots
def best_time(f, repeat: int = 5) -> float:
    """Seconds of the fastest of ``repeat`` calls of ``f()``, run on one thread.

    The minimum is the run least disturbed by other work on the machine; one thread makes the
    timing independent of how many cores happen to be free.
    """
    check_callable(f, "f")
    check_positive_int(repeat, "repeat")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return min(timeit.repeat(f, number=1, repeat=repeat))
    finally:
        torch.set_num_threads(threads)


def slope(xs, ys) -> float:
    """Least-squares slope of log y against log x: the exponent p in y ~ c x^p.

    ``xs``, ``ys``: sequences of positive numbers of the same length, at least two distinct xs.
    """
    check_sequence(xs, "xs")
    check_sequence(ys, "ys")
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(f"xs and ys must have the same length >= 2, got {len(xs)} and {len(ys)}")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in [*xs, *ys]):
        raise ValueError("xs and ys must hold finite positive numbers (their logarithms are fitted)")
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((a - mx) ** 2 for a in lx)
    if sxx == 0:
        raise ValueError(f"xs must hold at least two distinct values, got {list(xs)}")
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sxx


def label_lengths(ax, ticks) -> None:
    """Plain tick labels at ``ticks`` on a logarithmic x-axis of ``ax`` (no 10^k, no minor labels)."""
    check_sequence(ticks, "ticks")
    import matplotlib.ticker as mticker

    ax.set_xticks(list(ticks), [str(t) for t in ticks])
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())
