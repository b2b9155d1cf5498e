"""Character-level tokenizer: one id per distinct character of a training text.

The simplest map from text to integers, used by the first training chapters (it is what
nanoGPT's ``shakespeare_char`` uses: 65 symbols for Tiny Shakespeare). Ids follow the sorted
order of the characters, so the same text always gives the same vocabulary.

Book: :doc:`/notebooks/01_tour` (first use) and :doc:`/notebooks/08_tokenization`
"""
from __future__ import annotations

import json
import operator
import os
from collections.abc import Iterable


# ---------------------------------------------------------------------------- token ids
def token_id_list(ids: Iterable[int], vocab_size: int) -> list[int]:
    """``ids`` as a list of Python ints in ``[0, vocab_size)``, for a tokenizer's ``decode``.

    Accepts a list or any iterable of ints (a generator too), or a 1-D integer NumPy array or
    torch tensor of any integer dtype (uint8, int16, ...). A bool, a float or a string is a
    TypeError, never silently rounded or read as 0/1; an id outside the vocabulary is a ValueError.

    >>> token_id_list(range(3), 5)
    [0, 1, 2]
    """
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"token ids must be a sequence of ints, got {type(ids).__name__} {ids!r}")
    dtype = getattr(ids, "dtype", None)
    if dtype is not None and hasattr(ids, "tolist"):  # a torch tensor or a NumPy array
        kind = getattr(dtype, "kind", None)  # NumPy: "i" signed, "u" unsigned, "b" bool, "f" float
        integer = kind in ("i", "u") if kind is not None else not (
            dtype.is_floating_point or dtype.is_complex or str(dtype) == "torch.bool")
        if not integer:
            raise TypeError(f"token ids must have an integer dtype, got a {type(ids).__name__} of dtype {dtype}")
        if ids.ndim != 1:
            raise ValueError(f"token ids must be 1-D, got shape {tuple(ids.shape)}")
        ids = ids.tolist()
    elif not isinstance(ids, Iterable):
        raise TypeError(f"token ids must be a sequence of ints, got {type(ids).__name__}")
    out = []
    for i in ids:  # one pass: a generator is read once
        try:
            if isinstance(i, bool):
                raise TypeError
            i = operator.index(i)  # an int, a NumPy integer, a 0-d integer tensor; never a float
        except TypeError:
            raise TypeError(f"token ids must be ints, got {type(i).__name__} {i!r}") from None
        if not 0 <= i < vocab_size:
            raise ValueError(f"token id {i} is outside the vocabulary [0, {vocab_size})")
        out.append(i)
    return out


# ---------------------------------------------------------------------------- tokenizer


class CharTokenizer:
    """Maps each character of a fixed alphabet to an id in ``[0, vocab_size)``.

    >>> tok = CharTokenizer.train("hello")
    >>> tok.chars
    ['e', 'h', 'l', 'o']
    >>> tok.encode("hole")
    [1, 3, 2, 0]
    >>> tok.decode([1, 0, 2, 2, 3])
    'hello'
    """

    def __init__(self, chars: list[str]):
        if not isinstance(chars, (list, tuple, str)):
            raise TypeError(f"chars must be a list of distinct single characters, got {type(chars).__name__}")
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(f"chars must be a list of distinct single characters, got {bad[0]!r}"[:200])
        if len(set(chars)) != len(chars):
            twice = sorted(c for c in set(chars) if chars.count(c) > 1)
            raise ValueError(f"chars must be a list of distinct single characters, got {twice[0]!r} twice")
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def train(cls, text: str) -> "CharTokenizer":
        """The tokenizer whose alphabet is every distinct character of ``text``, sorted."""
        if not isinstance(text, str) or not text:
            raise ValueError("CharTokenizer.train needs a non-empty str")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """Ids of the characters of ``text``; a character outside the alphabet is an error."""
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in this tokenizer's alphabet "
                             f"of {self.vocab_size} characters") from None

    def decode(self, ids) -> str:
        """The text of a sequence of ids (a list, a generator, a 1-D integer array or tensor).

        An id outside ``[0, vocab_size)`` is a ValueError; a float or bool id is a TypeError
        (:func:`token_id_list`).
        """
        chars = self.chars
        return "".join([chars[i] for i in token_id_list(ids, self.vocab_size)])

    def save(self, path: str | os.PathLike) -> None:
        """Write the alphabet as readable JSON."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"type": "char", "chars": self.chars}, f, ensure_ascii=False, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CharTokenizer":
        """Read a tokenizer written by :meth:`save`."""
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("type") != "char":
            raise ValueError(f"{path} is not a saved CharTokenizer (type={data.get('type')!r})")
        return cls(data["chars"])
