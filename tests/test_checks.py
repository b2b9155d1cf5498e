"""mathllm.checks: each check passes good input through and names what it expected of bad input."""
import numpy as np
import pytest
import torch

from mathllm import checks
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


# ---------------------------------------------------------------------------- the shared validators added for the fuzz test
@pytest.mark.parametrize("value,kw,ok", [
    (0.5, dict(low=0, high=1), True), (0, dict(low=0, high=1), True), (1, dict(low=0, high=1), True),
    (0, dict(low=0, high=1, low_open=True), False), (1, dict(low=0, high=1, high_open=True), False),
    (1.5, dict(low=0, high=1), False), (-1e-9, dict(low=0), False), (1e308, {}, True),
    (float("nan"), {}, False), (float("inf"), {}, False), (-float("inf"), dict(high=0), False),
])
def test_check_number_interval_and_non_finite(value, kw, ok):
    """Closed and open ends, and NaN/inf refused even where the interval is unbounded."""
    if ok:
        assert checks.check_number(value, "lr", **kw) == value
    else:
        with pytest.raises(ValueError, match=r"lr must be a finite number in .*, got"):
            checks.check_number(value, "lr", **kw)


@pytest.mark.parametrize("bad", [True, "0.1", None, torch.tensor(0.1), [0.1]])
def test_check_number_refuses_non_numbers(bad):
    with pytest.raises(TypeError, match="lr must be a number, got"):
        checks.check_number(bad, "lr")


def test_check_number_keeps_numpy_scalars():
    """A float32 step stays float32 (the check returns its argument, not float(value))."""
    x = np.float32(0.25)
    assert checks.check_number(x, "h", low=0, low_open=True) is x
    with pytest.raises(ValueError, match="h must be a finite number"):
        checks.check_number(np.float32("nan"), "h")


def test_check_int_and_check_nonnegative_int():
    assert checks.check_int(np.int64(3), "k", low=1, high=3) == 3 and type(checks.check_int(np.int64(3), "k")) is int
    for bad, kw in [(0, dict(low=1)), (4, dict(low=1, high=3)), (True, {}), (2.0, {}), ("2", {})]:
        with pytest.raises(ValueError, match=r"k must be an int (>=|in) .*, got"):
            checks.check_int(bad, "k", **kw)
    assert checks.check_nonnegative_int(0, "seed") == 0
    for bad in (-1, True, 1.0, None):
        with pytest.raises(ValueError, match="seed must be an int >= 0, got"):
            checks.check_nonnegative_int(bad, "seed")


def test_check_str_sequence_instance_callable():
    assert checks.check_str("a", "text") == "a"
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        checks.check_str(b"a", "text")
    assert checks.check_sequence((1, 2), "words") == (1, 2)
    for bad in ("ab", torch.zeros(2), 3):  # a str is a sequence of characters, not of words
        with pytest.raises(TypeError, match="words must be a list or tuple, got"):
            checks.check_sequence(bad, "words")
    layer = torch.nn.Linear(2, 2)
    assert checks.check_instance(layer, torch.nn.Module, "model") is layer
    with pytest.raises(TypeError, match="model must be a Module, got str"):
        checks.check_instance("gpt", torch.nn.Module, "model")
    with pytest.raises(TypeError, match="cfg must be an int or float, got str"):
        checks.check_instance("x", (int, float), "cfg")
    assert checks.check_callable(len, "f") is len
    with pytest.raises(TypeError, match="loss_fn must be callable, got int"):
        checks.check_callable(3, "loss_fn")


def test_check_finite_counts_the_bad_entries():
    x = torch.tensor([1.0, float("nan"), float("inf"), -float("inf")])
    with pytest.raises(ValueError, match="A must be finite, got 3 NaN or infinite entries of 4"):
        checks.check_finite(x, "A")
    assert checks.check_finite(torch.arange(3), "ids") is not None  # integers are always finite
    with pytest.raises(TypeError):
        checks.check_finite([1.0], "A")
