"""Tests for mathllm.gumbel: the noise against scipy.stats.gumbel_r, Gumbel-max against softmax."""
import math

import pytest
import scipy.stats
import torch

from mathllm import gumbel

pytestmark = pytest.mark.numerics


def test_noise_is_standard_gumbel():
    g = gumbel.gumbel_noise((100_000,), generator=torch.Generator().manual_seed(0))
    # KS distance of 1e5 draws: 1.63 / sqrt(N) is the 1% critical value; 0.01 is above 3 times that
    assert scipy.stats.kstest(g.numpy(), "gumbel_r").statistic < 0.01
    assert abs(g.mean().item() - 0.5772156649) < 5 * math.pi / math.sqrt(6) / math.sqrt(1e5)


@pytest.mark.parametrize("seed", range(3))
def test_gumbel_max_frequencies_within_five_standard_errors(seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 7, generator=gen, dtype=torch.float64) * 2
    logits[1, 3] = float("-inf")  # a masked outcome is never drawn
    N = 100_000
    ids = gumbel.gumbel_max_sample(logits, N, generator=gen)
    assert ids.shape == (2, N)
    p = torch.softmax(logits, -1)
    for row in range(2):
        freq = torch.bincount(ids[row], minlength=7).double() / N
        assert ((freq - p[row]).abs() <= 5 * (p[row] * (1 - p[row]) / N).sqrt() + 1e-12).all()
    assert (ids[1] != 3).all()
    # a shift of the logits changes nothing (same noise)
    ids2 = gumbel.gumbel_max_sample(logits[0] + 7.0, 50, generator=torch.Generator().manual_seed(9))
    ids3 = gumbel.gumbel_max_sample(logits[0], 50, generator=torch.Generator().manual_seed(9))
    assert torch.equal(ids2, ids3)


def test_errors():
    with pytest.raises(ValueError, match="NaN"):
        gumbel.gumbel_max_sample(torch.tensor([0.0, float("nan")]), 3)
    with pytest.raises(ValueError, match="no outcome"):
        gumbel.gumbel_max_sample(torch.full((3,), float("-inf")), 3)
    with pytest.raises(TypeError, match="floating"):
        gumbel.gumbel_max_sample(torch.tensor([1, 2]), 3)
    with pytest.raises(ValueError, match="num_samples"):
        gumbel.gumbel_max_sample(torch.zeros(3), -1)
