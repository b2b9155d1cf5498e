"""mathllm.checks: each check passes good input through and names what it expected of bad input."""
import pytest
import torch

from mathllm.checks import check_dtype, check_ids, check_positive, check_positive_int, check_shape, check_tensor


def test_check_tensor():
    x = torch.zeros(2)
    assert check_tensor(x) is x
    with pytest.raises(TypeError, match="w must be a torch.Tensor, got list"):
        check_tensor([1.0], "w")


def test_check_shape_reads_named_sizes_and_checks_them():
    x = torch.zeros(2, 3, 3)
    assert check_shape(x, "B T T", T=3) == (2, 3, 3)
    with pytest.raises(ValueError, match=r"q must have shape \(B, T, C\), a 3-d tensor; got 2-d shape \(2, 3\)"):
        check_shape(torch.zeros(2, 3), "B T C", name="q")
    with pytest.raises(ValueError, match=r"with C=4; got shape \(2, 3, 3\)"):
        check_shape(x, "B T C", C=4)
    with pytest.raises(ValueError, match=r"with T=3; got shape \(2, 3, 5\)"):  # a repeated name must agree
        check_shape(torch.zeros(2, 3, 5), "B T T")


def test_check_dtype():
    x = torch.zeros(2, dtype=torch.float16)
    assert check_dtype(x, (torch.float16, torch.bfloat16)) is x
    with pytest.raises(TypeError, match="x must have dtype float32 or float64, got float16"):
        check_dtype(x, (torch.float32, torch.float64))


def test_check_ids():
    ids = torch.tensor([[0, 4], [2, 1]])
    assert check_ids(ids, 5) is ids and check_ids(torch.zeros(0, dtype=torch.long), 1).numel() == 0
    with pytest.raises(ValueError, match=r"idx holds token id 5, outside the vocabulary \[0, 5\)"):
        check_ids(torch.tensor([5]), 5, name="idx")
    with pytest.raises(ValueError, match="token id -2, outside"):
        check_ids(torch.tensor([1, -2]), 5)
    with pytest.raises(TypeError, match="integer tensor of token ids, got dtype float32"):
        check_ids(torch.zeros(2), 5)


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, "4", None])
def test_check_positive_int_refuses_what_is_not_a_count(bad):
    with pytest.raises(ValueError, match=rf"n_layer must be a positive int, got {bad!r}"):
        check_positive_int(bad, "n_layer")


def test_check_positive():
    assert check_positive_int(3, "n") == 3
    assert check_positive(0.5, "lr") == 0.5 and check_positive(0, "dropout", allow_zero=True) == 0
    with pytest.raises(ValueError, match="lr must be > 0, got 0"):
        check_positive(0, "lr")
    with pytest.raises(ValueError, match="p must be >= 0, got -0.1"):
        check_positive(-0.1, "p", allow_zero=True)
    with pytest.raises(TypeError, match="eps must be a number, got str"):
        check_positive("1e-5", "eps")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_check_positive_refuses_non_finite(bad):
    """NaN compares False with everything, so a bare ``value <= 0`` test lets it through."""
    with pytest.raises(ValueError, match=rf"delta must be a finite number > 0, got {bad}"):
        check_positive(bad, "delta")
    with pytest.raises(ValueError, match=rf"dropout must be a finite number >= 0, got {bad}"):
        check_positive(bad, "dropout", allow_zero=True)
    assert check_positive(10 ** 400, "n") == 10 ** 400  # a huge int is finite
