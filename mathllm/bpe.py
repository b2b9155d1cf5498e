"""Byte-level byte-pair encoding (BPE): a tokenizer of ordered merges, trained from scratch.

Text is UTF-8 encoded, cut into GPT-2 pre-tokens (:mod:`mathllm.pretokenize`), and each
pre-token starts as a sequence of byte ids 0..255. Training (:mod:`mathllm.bpe_train`) greedily
merges the most frequent adjacent pair, again and again; the vocabulary is the 256 bytes, one
token per merge, then the special tokens. Encoding applies the merges to each pre-token lowest
rank first, which is the same as replaying the training merges in order, and decoding joins the
bytes of the ids. References: Sennrich et al. 2016; GPT-2 ``encoder.py`` (Radford et al. 2019);
minbpe (Karpathy); Hugging Face ``tokenizers`` (the tests compare against it).

Leaves out: dropout, reading GPT-2's vocabulary files (:func:`gpt2_bytes_to_unicode` gives their
byte alphabet), merges across pre-tokens (SentencePiece), Unicode normalization.

Book: :doc:`/notebooks/08_tokenization`
"""
from __future__ import annotations

import json
import operator
import os
from collections.abc import Iterable, Iterator

from .bpe_train import N_BYTES, train_incremental, train_naive
from .checks import check_positive_int
from .pretokenize import (GPT2_SPLIT_PATTERN, check_special_tokens, count_pretokens, pretokenize,
                          settled_length, split_special)

ALGORITHMS = ("incremental", "naive")
_CACHE_LIMIT = 1 << 17  # pre-tokens remembered by encode; cleared when full (bounded memory)


# ---------------------------------------------------------------------------- GPT-2's printable bytes
def gpt2_bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte, used in its vocabulary files and by HF ``tokenizers``.

    Printable Latin-1 bytes stand for themselves; the other 68 (controls, space, ...) are mapped in
    order to U+0100, U+0101, ..., so a space is shown as ``"Ġ"`` (U+0120) and a newline as ``"Ċ"``:
    ``"Ġthe"`` in a GPT-2 vocabulary is the token ``b" the"``. From openai/gpt-2 ``encoder.py``.

    >>> table = gpt2_bytes_to_unicode()
    >>> table[ord(" ")], table[ord("\\n")], table[ord("A")]
    ('Ġ', 'Ċ', 'A')
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(N_BYTES) if b not in printable]
    table = {b: chr(b) for b in printable}
    table.update({b: chr(N_BYTES + k) for k, b in enumerate(others)})
    return table


# ---------------------------------------------------------------------------- tokenizer
class BPETokenizer:
    """A byte-level BPE tokenizer: ordered merges plus special tokens.

    Ids ``0..255`` are the bytes, ``256 + k`` is the token made by ``merges[k]``, and the special
    tokens follow in the order given. ``vocab`` maps every id to its bytes (a special token to its
    UTF-8 encoding).

    >>> tok = BPETokenizer.train("aaabdaaabac", vocab_size=259)
    >>> tok.encode("aaabdaaabac")
    [258, 100, 258, 97, 99]
    >>> tok.decode([258, 100])
    'aaabd'

    Book: :doc:`/notebooks/08_tokenization`
    """

    def __init__(self, merges: Iterable[tuple[int, int]], special_tokens: Iterable[str] = (),
                 merge_counts: Iterable[int] | None = None):
        self.merges = [(int(a), int(b)) for a, b in merges]
        self.special_tokens = check_special_tokens(special_tokens)
        self.merge_counts = list(merge_counts) if merge_counts is not None else None
        self.vocab = {i: bytes([i]) for i in range(N_BYTES)}
        for k, (a, b) in enumerate(self.merges):
            new_id = N_BYTES + k
            if not (0 <= a < new_id and 0 <= b < new_id):
                raise ValueError(f"merge {k} is {(a, b)}: both ids must be in [0, {new_id}), "
                                 f"the bytes and the tokens of earlier merges")
            self.vocab[new_id] = self.vocab[a] + self.vocab[b]
        self.ranks = {pair: k for k, pair in enumerate(self.merges)}
        if len(self.ranks) != len(self.merges):
            raise ValueError("merges must be distinct pairs: a repeated pair could never be applied again")
        first = N_BYTES + len(self.merges)
        self.special_ids = {s: first + j for j, s in enumerate(self.special_tokens)}
        for s, i in self.special_ids.items():
            self.vocab[i] = s.encode("utf-8")
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens: Iterable[str] = (),
              algorithm: str = "incremental") -> "BPETokenizer":
        """Train on ``text`` until ``vocab_size`` = 256 + merges + special tokens (fewer merges
        if the text runs out of pairs). Special tokens in ``text`` are cut out, never merged.

        Book: :doc:`/notebooks/08_tokenization`
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
        special_tokens = check_special_tokens(special_tokens)
        if vocab_size < N_BYTES + len(special_tokens):
            raise ValueError(f"vocab_size must be at least 256 (the bytes) + {len(special_tokens)} "
                             f"special tokens = {N_BYTES + len(special_tokens)}, got {vocab_size}")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        trainer = train_incremental if algorithm == "incremental" else train_naive
        merges, counts = trainer(count_pretokens(text, special_tokens), vocab_size - N_BYTES - len(special_tokens))
        return cls(merges, special_tokens, counts)

    @property
    def vocab_size(self) -> int:
        return N_BYTES + len(self.merges) + len(self.special_tokens)

    def truncate(self, vocab_size: int) -> "BPETokenizer":
        """The tokenizer with only the first merges, as if trained to ``vocab_size``.

        Training is greedy, so its first ``k`` merges do not depend on how many come after:
        one run gives the tokenizers of every smaller vocabulary.
        """
        n = vocab_size - N_BYTES - len(self.special_tokens)
        if not 0 <= n <= len(self.merges):
            raise ValueError(f"vocab_size must be in [{N_BYTES + len(self.special_tokens)}, "
                             f"{self.vocab_size}], got {vocab_size}")
        counts = self.merge_counts[:n] if self.merge_counts is not None else None
        return BPETokenizer(self.merges[:n], self.special_tokens, counts)

    # ------------------------------------------------------------------------ encoding
    def _encode_piece(self, piece: str) -> list[int]:
        """Merge inside one pre-token, lowest rank first, and cache the result.

        Merging the leftmost occurrence of the lowest-ranked pair, again and again, replays the
        training merges in order: a pair made by merge ``k`` can only join with later merges.
        """
        ids = list(piece.encode("utf-8"))
        get, unmerged = self.ranks.get, len(self.merges)
        while len(ids) > 1:
            best = unmerged
            for i, pair in enumerate(zip(ids, ids[1:])):
                r = get(pair, unmerged)
                if r < best:
                    best, at = r, i
            if best == unmerged:
                break
            ids[at:at + 2] = [N_BYTES + best]
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[piece] = ids
        return ids

    def _encode_pieces(self, pieces: Iterable[str], out: list[int]) -> list[int]:
        cache = self._cache
        for piece in pieces:
            ids = cache.get(piece)
            out.extend(ids if ids is not None else self._encode_piece(piece))
        return out

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``. Special tokens are matched first; merges stay inside pre-tokens."""
        if not isinstance(text, str):
            raise TypeError(f"encode needs a str, got {type(text).__name__}")
        out: list[int] = []
        for segment, is_special in split_special(text, self.special_tokens):
            if is_special:
                out.append(self.special_ids[segment])
            else:
                self._encode_pieces(pretokenize(segment), out)
        return out

    def encode_iterable(self, lines: Iterable[str], chunk_chars: int = 1 << 16) -> Iterator[int]:
        """Stream the ids of ``"".join(lines)`` (e.g. an open text file) with bounded memory.

        Lines are gathered until ``chunk_chars`` characters have arrived; the settled pieces are
        encoded and only the unfinished tail (:func:`mathllm.pretokenize.settled_length`) is kept.
        The ids equal those of :meth:`encode` on the whole text, for any ``chunk_chars >= 1``.
        """
        check_positive_int(chunk_chars, "chunk_chars")
        parts: list[str] = []
        size = 0
        for line in lines:
            if not isinstance(line, str):
                raise TypeError(f"encode_iterable needs str lines, got {type(line).__name__}")
            parts.append(line)
            size += len(line)
            if size >= chunk_chars:
                buffer = "".join(parts)
                n = settled_length(buffer, self.special_tokens)
                yield from self.encode(buffer[:n])
                parts, size = [buffer[n:]], len(buffer) - n
        yield from self.encode("".join(parts))

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of a sequence of ids (accepts lists, NumPy arrays and torch tensors)."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        vocab = self.vocab
        try:
            return b"".join([vocab[operator.index(i)] for i in ids])
        except TypeError:
            bad = next(i for i in ids if isinstance(i, bool) or not hasattr(i, "__index__"))
            raise TypeError(f"token ids must be ints, got {type(bad).__name__} {bad!r}") from None
        except KeyError as e:
            raise ValueError(f"token id {e.args[0]} is outside the vocabulary [0, {self.vocab_size})") from None

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; bytes that are not valid UTF-8 become U+FFFD, never an error."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ------------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer as readable JSON: merges as id pairs and each token's text."""
        data = {
            "type": "bpe", "pattern": GPT2_SPLIT_PATTERN,
            "merges": [list(p) for p in self.merges],
            "merge_counts": self.merge_counts,
            "special_tokens": self.special_ids,
            # for people reading the file; load() rebuilds the vocabulary from the merges
            "tokens": {i: self.vocab[i].decode("utf-8", errors="backslashreplace")
                       for i in range(N_BYTES, N_BYTES + len(self.merges))},
        }
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=0)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BPETokenizer":
        """Read a tokenizer written by :meth:`save`."""
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict) or data.get("type") != "bpe":
            raise ValueError(f"{path} is not a saved BPETokenizer (type={data.get('type') if isinstance(data, dict) else None!r})")
        if data["pattern"] != GPT2_SPLIT_PATTERN:
            raise ValueError(f"{path} was saved with another pre-tokenization pattern: {data['pattern']!r}")
        specials = sorted(data["special_tokens"], key=data["special_tokens"].get)
        tok = cls(data["merges"], specials, data.get("merge_counts"))
        if tok.special_ids != data["special_tokens"]:
            raise ValueError(f"{path}: special token ids {data['special_tokens']} do not follow the "
                             f"{len(tok.merges)} merges")
        return tok
