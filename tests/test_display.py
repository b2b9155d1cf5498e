"""Tests of mathllm.display: source display, timing and log-log fitting helpers."""
import math

import matplotlib

matplotlib.use("Agg")  # tests draw off-screen; never set for notebooks
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from mathllm.display import best_time, label_lengths, slope, source_of  # noqa: E402


def test_source_of_returns_the_code():
    assert source_of(slope).startswith("def slope(")
    with pytest.raises(TypeError, match="cannot show the source"):
        source_of(3)


@pytest.mark.parametrize("p, c", [(2.0, 1e-6), (-0.5, 3.0), (1.5, 1.0)])
def test_slope_recovers_a_power_law_like_numpy(p, c):
    xs = [16, 64, 256, 1024]
    ys = [c * x**p for x in xs]
    assert math.isclose(slope(xs, ys), p, rel_tol=1e-12, abs_tol=1e-12)
    noisy = [y * f for y, f in zip(ys, (1.1, 0.9, 1.05, 1.0))]
    want = np.polyfit(np.log(xs), np.log(noisy), 1)[0]  # numpy's least-squares line as the reference
    assert math.isclose(slope(xs, noisy), want, rel_tol=1e-12)


@pytest.mark.parametrize("xs, ys, err", [
    ([1, 2], [1], ValueError), ([1], [1], ValueError), ([1, 2], [1, 0], ValueError),
    ([2, 2], [1, 3], ValueError), ([1, float("nan")], [1, 2], ValueError), ("ab", [1, 2], TypeError),
])
def test_slope_rejects_bad_input(xs, ys, err):
    with pytest.raises(err):
        slope(xs, ys)


def test_best_time_is_the_minimum_and_restores_threads():
    threads = torch.get_num_threads()
    calls = []
    t = best_time(lambda: calls.append(torch.get_num_threads()), repeat=4)
    assert calls == [1, 1, 1, 1] and 0 <= t < 1
    assert torch.get_num_threads() == threads
    with pytest.raises(TypeError, match="f must be callable"):
        best_time(3)
    with pytest.raises(ValueError, match="repeat"):
        best_time(lambda: None, repeat=0)


def test_best_time_restores_threads_when_f_raises():
    threads = torch.get_num_threads()
    with pytest.raises(ZeroDivisionError):
        best_time(lambda: 1 / 0)
    assert torch.get_num_threads() == threads


def test_label_lengths_sets_plain_labels():
    fig, ax = plt.subplots()
    ax.loglog([256, 512, 1024], [1, 2, 4])
    label_lengths(ax, [256, 512, 1024])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["256", "512", "1024"]
    assert list(ax.get_xticks()) == [256, 512, 1024]
    plt.close(fig)
