"""Character-level tokenizer: one id per distinct character of a training text.

The simplest map from text to integers, used by the first training chapters (it is what
nanoGPT's ``shakespeare_char`` uses: 65 symbols for Tiny Shakespeare). Ids follow the sorted
order of the characters, so the same text always gives the same vocabulary.

Book: :doc:`/notebooks/01_tour` (first use) and :doc:`/notebooks/08_tokenization`
"""
from __future__ import annotations

import json
import os


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
        if len(set(chars)) != len(chars) or any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError("chars must be a list of distinct single characters")
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
        """The text of a sequence of ids; an id outside ``[0, vocab_size)`` is an error."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
            out.append(self.chars[i])
        return "".join(out)

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
