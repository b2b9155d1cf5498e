"""Byte-level byte-pair encoding (BPE): a tokenizer of ordered merges, trained from scratch.

Text is UTF-8 encoded, cut into GPT-2 pre-tokens (:mod:`mathllm.pretokenize`), and each
pre-token starts as a sequence of byte ids 0..255. Training (:mod:`mathllm.bpe_train`) greedily
merges the most frequent adjacent pair, again and again; the vocabulary is the 256 bytes, one
token per merge, then the special tokens. Encoding applies the merges to each pre-token lowest
rank first, which is the same as replaying the training merges in order, and decoding joins the
bytes of the ids. References: Sennrich et al. 2016; GPT-2 ``encoder.py`` (Radford et al. 2019);
minbpe (Karpathy); Hugging Face ``tokenizers`` (the tests compare against it).

A tokenizer may also number its tokens in another order, as GPT-2's does (its ``"!"`` is id 0):
``BPETokenizer(merges, vocab=...)`` takes the ids from a vocabulary of id -> bytes, and
:meth:`BPETokenizer.from_files` / :meth:`BPETokenizer.from_pretrained` read GPT-2's ``vocab.json``
and ``merges.txt`` (module ``mathllm.gpt2_tokenizer``), giving ids identical to ``tiktoken``'s GPT-2
encoding and to Hugging Face ``tokenizers``.

Leaves out: dropout, merges across pre-tokens (SentencePiece), Unicode normalization.

Book: :doc:`/notebooks/08_tokenization`
"""
from __future__ import annotations

import json
import operator
import os
from collections.abc import Iterable, Iterator

from .bpe_train import N_BYTES, check_pair, train_incremental, train_naive
from .char_tokenizer import token_id_list
from .checks import check_positive_int, check_sequence
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

    Another numbering: pass ``vocab`` (id -> bytes, without the special tokens) and give ``merges``
    as pairs of its ids; merge ``k`` makes the token whose bytes are the pair's joined, which must
    be in ``vocab``. ``special_tokens`` may then be a dict token -> id. The ids must be
    ``0 .. vocab_size - 1`` with none missing. GPT-2's files are read this way (:meth:`from_files`).

    >>> tok = BPETokenizer.train("aaabdaaabac", vocab_size=259)
    >>> tok.encode("aaabdaaabac")
    [258, 100, 258, 97, 99]
    >>> tok.decode([258, 100])
    'aaabd'

    Book: :doc:`/notebooks/08_tokenization`
    """

    def __init__(self, merges: Iterable[tuple[int, int]], special_tokens: Iterable[str] | dict[str, int] | None = (),
                 merge_counts: Iterable[int] | None = None, *, vocab: dict[int, bytes] | None = None):
        check_sequence(merges, "merges")
        self.merges = [check_pair(p, f"merges[{k}]") for k, p in enumerate(merges)]  # a JSON [a, b] too
        self.special_tokens = check_special_tokens(special_tokens)
        if merge_counts is not None and len(check_sequence(merge_counts, "merge_counts")) != len(self.merges):
            raise ValueError(f"merge_counts must hold one count per merge ({len(self.merges)}), got {len(merge_counts)}")
        self.merge_counts = list(merge_counts) if merge_counts is not None else None
        if vocab is None:  # the training order: bytes, then one token per merge
            self.vocab = {i: bytes([i]) for i in range(N_BYTES)}
            for k, (a, b) in enumerate(self.merges):
                new_id = N_BYTES + k
                if not (0 <= a < new_id and 0 <= b < new_id):
                    raise ValueError(f"merge {k} is {(a, b)}: both ids must be in [0, {new_id}), "
                                     f"the bytes and the tokens of earlier merges")
                self.vocab[new_id] = self.vocab[a] + self.vocab[b]
            self._byte_ids = None  # byte b is id b
            self._merged = range(N_BYTES, N_BYTES + len(self.merges))  # merge k makes id 256 + k
        else:
            self.vocab, self._byte_ids, self._merged = _numbering(vocab, self.merges)
        self.ranks = {pair: k for k, pair in enumerate(self.merges)}
        if len(self.ranks) != len(self.merges):
            raise ValueError("merges must be distinct pairs: a repeated pair could never be applied again")
        if isinstance(special_tokens, dict):
            self.special_ids = {s: operator.index(i) for s, i in special_tokens.items()}
        else:
            first = max(self.vocab) + 1
            self.special_ids = {s: first + j for j, s in enumerate(self.special_tokens)}
        for s, i in self.special_ids.items():
            if i in self.vocab:
                raise ValueError(f"special token {s!r} has id {i}, which the vocabulary already gives to "
                                 f"{self.vocab[i]!r}")
            self.vocab[i] = s.encode("utf-8")
        if len(self.vocab) != max(self.vocab) + 1 or min(self.vocab) != 0:
            missing = sorted(set(range(max(self.vocab) + 1)) - set(self.vocab))
            raise ValueError(f"token ids must be 0 .. vocab_size - 1 with none missing; missing {missing[:8]}, "
                             f"smallest {min(self.vocab)}")
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

    @classmethod
    def from_files(cls, vocab_path: str | os.PathLike, merges_path: str | os.PathLike,
                   special_tokens: Iterable[str] | None = None) -> "BPETokenizer":
        """Read a GPT-2-style ``vocab.json`` and ``merges.txt`` (OpenAI's and Hugging Face's layout).

        ``special_tokens=None`` takes every entry of ``vocab.json`` that is neither a byte nor made
        by a merge (GPT-2: ``<|endoftext|>``, id 50256); a list names them, with their ids from
        ``vocab.json`` or, when absent there, new ids after it. See the module ``mathllm.gpt2_tokenizer``.
        """
        from .gpt2_tokenizer import read_tokenizer_files
        return read_tokenizer_files(cls, vocab_path, merges_path, special_tokens)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = "gpt2", special_tokens: Iterable[str] | None = None,
                        *, download_ok: bool = True) -> "BPETokenizer":
        """GPT-2's tokenizer (``"gpt2"``, ``"gpt2-medium"``, ``"gpt2-large"``, ``"gpt2-xl"`` share it), or a
        folder holding ``vocab.json`` and ``merges.txt``. The GPT-2 files are downloaded once into
        the cache and checked against their SHA-256 (``mathllm.gpt2_tokenizer.gpt2_files``).

        Book: :doc:`/notebooks/08_tokenization`
        """
        from .gpt2_tokenizer import pretrained_files
        vocab_path, merges_path = pretrained_files(name_or_path, download_ok=download_ok)
        return cls.from_files(vocab_path, merges_path, special_tokens)

    def save_files(self, vocab_path: str | os.PathLike, merges_path: str | os.PathLike) -> None:
        """Write ``vocab.json`` and ``merges.txt`` in GPT-2's layout (what :meth:`from_files` reads).

        GPT-2's own tokenizer is written back byte for byte: the files have the SHA-256 of the
        Hugging Face Hub's ``gpt2`` files.
        """
        from .gpt2_tokenizer import write_tokenizer_files
        write_tokenizer_files(self, vocab_path, merges_path)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

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
        if self._byte_ids is None:
            return BPETokenizer(self.merges[:n], self.special_tokens, counts)
        kept = [*self._byte_ids, *self._merged[:n]]
        return BPETokenizer(self.merges[:n], self.special_tokens, counts, vocab={i: self.vocab[i] for i in kept})

    # ------------------------------------------------------------------------ encoding
    def _encode_piece(self, piece: str) -> list[int]:
        """Merge inside one pre-token, lowest rank first, and cache the result.

        Merging the leftmost occurrence of the lowest-ranked pair, again and again, replays the
        training merges in order: a pair made by merge ``k`` can only join with later merges.
        """
        ids = list(piece.encode("utf-8"))
        if self._byte_ids is not None:
            ids = [self._byte_ids[b] for b in ids]
        get, merged, unmerged = self.ranks.get, self._merged, len(self.merges)
        while len(ids) > 1:
            best = unmerged
            for i, pair in enumerate(zip(ids, ids[1:])):
                r = get(pair, unmerged)
                if r < best:
                    best, at = r, i
            if best == unmerged:
                break
            ids[at:at + 2] = [merged[best]]
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

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        """Token ids of ``text``. Special tokens are matched first; merges stay inside pre-tokens.

        ``allow_special=False`` encodes the text of a special token as ordinary text, as
        ``tiktoken``'s ``encode_ordinary`` does (for text from users, who must not be able to
        write ``<|endoftext|>``).
        """
        if not isinstance(text, str):
            raise TypeError(f"encode needs a str, got {type(text).__name__}")
        if not isinstance(allow_special, bool):
            raise TypeError(f"allow_special must be a bool, got {type(allow_special).__name__}")
        out: list[int] = []
        for segment, is_special in split_special(text, self.special_tokens if allow_special else ()):
            if is_special:
                out.append(self.special_ids[segment])
            else:
                self._encode_pieces(pretokenize(segment), out)
        return out

    def encode_iterable(self, lines: Iterable[str], chunk_chars: int = 1 << 16, *,
                        allow_special: bool = True) -> Iterator[int]:
        """Stream the ids of ``"".join(lines)`` (e.g. an open text file) with bounded memory.

        Lines are gathered until ``chunk_chars`` characters have arrived; the settled pieces are
        encoded and only the unfinished tail (:func:`mathllm.pretokenize.settled_length`) is kept.
        The ids equal those of :meth:`encode` on the whole text, for any ``chunk_chars >= 1``.
        """
        check_positive_int(chunk_chars, "chunk_chars")
        if not isinstance(allow_special, bool):
            raise TypeError(f"allow_special must be a bool, got {type(allow_special).__name__}")
        specials = self.special_tokens if allow_special else ()
        parts: list[str] = []
        size = 0
        for line in lines:
            if not isinstance(line, str):
                raise TypeError(f"encode_iterable needs str lines, got {type(line).__name__}")
            parts.append(line)
            size += len(line)
            if size >= chunk_chars:
                buffer = "".join(parts)
                n = settled_length(buffer, specials)
                yield from self.encode(buffer[:n], allow_special=allow_special)
                parts, size = [buffer[n:]], len(buffer) - n
        yield from self.encode("".join(parts), allow_special=allow_special)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of a sequence of ids: a list, a generator, a 1-D integer NumPy array or torch
        tensor (any integer dtype). A bool or float id is a TypeError, an unknown id a ValueError."""
        vocab = self.vocab
        return b"".join([vocab[i] for i in token_id_list(ids, self.vocab_size)])

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; bytes that are not valid UTF-8 become U+FFFD, never an error."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ------------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer as readable JSON: merges as id pairs and each token's text."""
        data = {
            "type": "bpe", "pattern": GPT2_SPLIT_PATTERN,
            # another numbering than the training order (GPT-2's): every token's bytes, as GPT-2 writes them
            **({} if self._byte_ids is None else {"vocab": _printable_vocab(self)}),
            "merges": [list(p) for p in self.merges],
            "merge_counts": self.merge_counts,
            "special_tokens": self.special_ids,
            # for people reading the file; load() rebuilds the vocabulary from the merges
            "tokens": {i: self.vocab[i].decode("utf-8", errors="backslashreplace")
                       for i in self._merged},
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
        if "vocab" in data:
            from .gpt2_tokenizer import token_bytes
            vocab = {int(i): token_bytes(t) for i, t in data["vocab"].items()}
            return cls(data["merges"], data["special_tokens"], data.get("merge_counts"), vocab=vocab)
        tok = cls(data["merges"], specials, data.get("merge_counts"))
        if tok.special_ids != data["special_tokens"]:
            raise ValueError(f"{path}: special token ids {data['special_tokens']} do not follow the "
                             f"{len(tok.merges)} merges")
        return tok


# ---------------------------------------------------------------------------- another numbering
def _numbering(vocab: dict[int, bytes], merges: list[tuple[int, int]]):
    """Check a vocabulary (id -> bytes) against the merges; return it with the id of each byte
    (a list of 256) and the id each merge makes (a list, one per merge)."""
    if not isinstance(vocab, dict):
        raise TypeError(f"vocab must be a dict of id -> bytes, got {type(vocab).__name__}")
    vocab = {operator.index(i): t for i, t in vocab.items()}
    ids_of: dict[bytes, int] = {}
    for i, t in vocab.items():
        if not isinstance(t, bytes) or not t:
            raise TypeError(f"vocab[{i}] must be non-empty bytes, got {t!r}")
        if t in ids_of:
            raise ValueError(f"ids {ids_of[t]} and {i} have the same bytes {t!r}: encoding could not choose")
        ids_of[t] = i
    byte_ids = [ids_of.get(bytes([b])) for b in range(N_BYTES)]
    if None in byte_ids:
        raise ValueError(f"the vocabulary has no token for byte {byte_ids.index(None)}: every byte needs one")
    merged = []
    for k, (a, b) in enumerate(merges):
        if a not in vocab or b not in vocab:
            raise ValueError(f"merge {k} is {(a, b)}: id {a if a not in vocab else b} is not in the vocabulary")
        new = ids_of.get(vocab[a] + vocab[b])
        if new is None:
            raise ValueError(f"merge {k} makes {vocab[a] + vocab[b]!r}, which is not in the vocabulary")
        merged.append(new)
    return vocab, byte_ids, merged


def _printable_vocab(tok: BPETokenizer) -> dict[int, str]:
    table = gpt2_bytes_to_unicode()
    special = set(tok.special_ids.values())
    return {i: "".join(table[c] for c in t) for i, t in tok.vocab.items() if i not in special}
