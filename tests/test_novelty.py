"""Tests for mathllm.novelty: Good-Turing against a simulated source, n-gram overlap against Python sets."""
import numpy as np
import pytest
import torch

from mathllm.novelty import good_turing_missing_mass, ngram_overlap, ngram_seen

pytestmark = pytest.mark.numerics  # statistical claims: rerun under other kernels and seeds


# ---------------------------------------------------------------------------- what was never seen
def test_good_turing_known_answer():
    assert good_turing_missing_mass("abracadabra") == pytest.approx(2 / 11)   # c and d once
    assert good_turing_missing_mass([1, 1, 2, 2]) == 0.0


def test_good_turing_estimates_the_missing_mass_of_a_zipf_source():
    V, N = 5000, 20_000
    p = 1 / torch.arange(1, V + 1, dtype=torch.float64)
    p /= p.sum()
    g = torch.Generator().manual_seed(0)
    gaps = []
    for _ in range(20):
        draws = torch.multinomial(p, N, replacement=True, generator=g)
        seen = torch.zeros(V, dtype=torch.bool)
        seen[draws] = True
        gaps.append(good_turing_missing_mass(draws.tolist()) - float(p[~seen].sum()))
    assert abs(np.mean(gaps)) < 0.003 and np.std(gaps) < 0.01   # unbiased up to O(1/N), small spread


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("big", [False, True])
def test_ngram_overlap_against_python_sets(n, big):
    g = torch.Generator().manual_seed(n)
    hi = 70_000 if big else 4
    a, b = torch.randint(0, hi, (300,), generator=g).tolist(), torch.randint(0, hi, (120,), generator=g).tolist()
    if big:
        b[:40] = a[10:50]                                            # some shared n-grams
    seen = {tuple(a[i:i + n]) for i in range(len(a) - n + 1)}
    grams = [tuple(b[i:i + n]) for i in range(len(b) - n + 1)]
    assert ngram_seen(a, b, n).tolist() == [x in seen for x in grams]
    assert ngram_overlap(a, b, n) == pytest.approx(sum(x in seen for x in grams) / len(grams), abs=1e-12)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="items must hold at least one draw"):
        good_turing_missing_mass([])
    with pytest.raises(ValueError, match="n must be"):
        ngram_overlap([1, 2], [1, 2], 0)


# ---------------------------------------------------------------------------- hostile input (issue 15)
def test_good_turing_counts_the_values_of_a_tensor_not_its_elements():
    """Before issue 15 a tensor was counted by its 0-d elements, which hash by identity: every draw
    looked new and [1, 1, 2] gave 1.0 instead of 1/3 (only the 2 is seen once)."""
    assert good_turing_missing_mass(torch.tensor([1, 1, 2])) == pytest.approx(1 / 3)
    assert good_turing_missing_mass(np.array([1, 1, 2])) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match=r"items must be 1-d draws, got shape \(2, 3\)"):
        good_turing_missing_mass(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="items must be an iterable of draws, got float"):
        good_turing_missing_mass(0.5)


@pytest.mark.parametrize("ids,error,message", [
    (None, TypeError, "train_ids must be 1-d integer token ids .*, got NoneType"),  # was: int() of None
    ("a", TypeError, "train_ids must be 1-d integer token ids .*, got str"),       # was: int("a")
    (torch.tensor([0.5, 1.5, 2.0]), TypeError, "train_ids must hold integer token ids, got dtype float32"),
    (torch.ones(3, dtype=torch.bool), TypeError, "got dtype bool"),
    (torch.zeros(2, 3, dtype=torch.long), ValueError, r"train_ids must be 1-d token ids, got shape \(2, 3\)"),
])
def test_ngram_seen_refuses_what_is_not_token_ids(ids, error, message):
    with pytest.raises(error, match=message):
        ngram_seen(ids, [1, 2, 3], 2)
    with pytest.raises(error, match=message.replace("train_ids", "heldout_ids")):
        ngram_seen([1, 2, 3], ids, 2)
