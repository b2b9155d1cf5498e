"""Error analysis of a character-level model: classes of characters and the confusion matrix between them.

Which mistakes does a model make? Sorting each target character and each prediction into a coarse
class (lower case, upper case, space, newline, ASCII punctuation, other) and counting the pairs
gives a confusion matrix whose off-diagonal entries name the errors that cost the most: a model that
has learnt words but not where they end confuses spaces with letters.

Leaves out: per-token confusion over the whole vocabulary, precision and recall per class, errors of
sub-word tokens (their classes are not single characters).

Book: notebooks/17_evaluation.ipynb, section "What the model gets wrong".
"""
from __future__ import annotations

import torch

from .checks import check_ids, check_positive_int, check_shape

CHAR_CLASSES = ("lower", "upper", "space", "newline", "punct", "other")


def char_class(ch: str) -> str:
    """The class of one character: lower, upper, space, newline, punct (ASCII punctuation), other."""
    if not isinstance(ch, str) or len(ch) != 1:
        raise ValueError(f"expected one character, got {ch!r}")
    if ch.islower():
        return "lower"
    if ch.isupper():
        return "upper"
    if ch == " ":
        return "space"
    if ch == "\n":
        return "newline"
    if ch.isascii() and not ch.isalnum() and ch.isprintable():
        return "punct"
    return "other"


def char_classes(chars: str | list[str]) -> torch.Tensor:
    """(V,) int64: the index in ``CHAR_CLASSES`` of the class of each character of an alphabet.

    Args:
        chars: the alphabet, a str or a list (or tuple) of single characters, such as
            ``CharTokenizer.chars``.

    Book: :doc:`/notebooks/17_evaluation`, section "What the model gets wrong"
    """
    if not isinstance(chars, (str, list, tuple)):
        raise TypeError(f"chars must be a str or a list of single characters, got {type(chars).__name__}")
    for c in chars:
        if not isinstance(c, str) or len(c) != 1:
            raise ValueError(f"chars must hold single characters, got {c!r}")
    return torch.tensor([CHAR_CLASSES.index(char_class(c)) for c in chars], dtype=torch.int64)


def confusion_matrix(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) int64 counts; entry ``[i, j]`` counts items of true class ``i`` predicted as class ``j``.

    Args:
        targets, predictions: (N,) integer class ids in ``[0, num_classes)``.  num_classes: K.

    Book: :doc:`/notebooks/17_evaluation`, section "What the model gets wrong"
    """
    (N,) = check_shape(targets, "N", name="targets")
    check_shape(predictions, "N", name="predictions", N=N)
    check_positive_int(num_classes, "num_classes")
    check_ids(targets, num_classes, name="targets"), check_ids(predictions, num_classes, name="predictions")
    flat = targets.long() * num_classes + predictions.long()              # (N,) index into the (K, K) matrix
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)
