"""Tests for mathllm.error_analysis: character classes and the confusion matrix against hand counts."""
import numpy as np
import pytest
import torch

from mathllm.error_analysis import CHAR_CLASSES, char_class, char_classes, confusion_matrix


# ---------------------------------------------------------------------------- error analysis
def test_char_classes_known_answers():
    assert [char_class(c) for c in "aZ \n,3é"] == ["lower", "upper", "space", "newline", "punct", "other", "lower"]
    assert char_classes("a!").tolist() == [CHAR_CLASSES.index("lower"), CHAR_CLASSES.index("punct")]


@pytest.mark.parametrize("N,K", [(1, 1), (100, 3), (1000, 6)])
def test_confusion_matrix_against_a_loop(N, K):
    g = torch.Generator().manual_seed(K)
    t, p = torch.randint(0, K, (N,), generator=g), torch.randint(0, K, (N,), generator=g)
    want = np.zeros((K, K), dtype=np.int64)
    np.add.at(want, (t.numpy(), p.numpy()), 1)
    got = confusion_matrix(t, p, K)
    assert np.array_equal(got.numpy(), want) and int(got.sum()) == N


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="one character"):
        char_class("ab")
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        confusion_matrix(torch.tensor([0]), torch.tensor([0]), 0)


# ---------------------------------------------------------------------------- hostile input (issue 15)
@pytest.mark.parametrize("chars,error,message", [
    (1.5, TypeError, "chars must be a str or a list of single characters, got float"),
    (None, TypeError, "chars must be a str or a list of single characters, got NoneType"),
    (torch.tensor(1.0), TypeError, "got Tensor"),
    (["a", "bc"], ValueError, "chars must hold single characters, got 'bc'"),
])
def test_char_classes_refuses_what_is_not_an_alphabet(chars, error, message):
    """Issue 15: "'float' object is not iterable" or "iteration over a 0-d tensor" before the fix."""
    with pytest.raises(error, match=message):
        char_classes(chars)
