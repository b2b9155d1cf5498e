"""Training byte-pair encoding: the greedy merge loop, naive and incremental.

Each pre-token (a ``bytes`` string with its frequency, :func:`mathllm.pretokenize.count_pretokens`)
starts as its byte ids 0..255. One step counts every adjacent pair inside pre-tokens, weighting a
pre-token by how often it occurs::

    count(a, b) = sum_w f(w) * #{i : w_i = a, w_{i+1} = b}         (eq. bpe-pair-count)

and replaces the most frequent pair by a new id 256, 257, ... Ties go to the lexicographically
greatest pair of byte strings ``(bytes(a), bytes(b))``, then to the greatest pair of ids.

:func:`train_naive` recounts every pair after each merge, O(merges x corpus).
:func:`train_incremental` gives the same merges: it keeps the counts, an index of the pre-tokens
each pair occurs in and a heap of candidates, and after a merge updates only the pre-tokens that
held the merged pair (the method of Sennrich et al.'s reference code and of Hugging Face
``tokenizers``). References: Gage 1994; Sennrich et al. 2016; minbpe (Karpathy).

Leaves out: merges across pre-tokens, BPE dropout, parallel counting.

Book: :doc:`/notebooks/08_tokenization`
"""
from __future__ import annotations

import heapq
import operator
from collections import defaultdict

from .checks import check_nonnegative_int, check_sequence

N_BYTES = 256


# ---------------------------------------------------------------------------- input checks
def _token_id(value, what: str) -> int:
    """``value`` as an int id >= 0 (an int or a NumPy integer; never a bool or a float)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        i = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an int token id, got {type(value).__name__} {value!r}"[:200]) from None
    if i < 0:
        raise ValueError(f"{what} must be a token id >= 0, got {i}")
    return i


def check_pair(pair, name: str = "pair") -> tuple[int, int]:
    """``pair`` as a tuple of two int token ids; a list ``[a, b]`` (read from JSON) is accepted."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"{name} must be a pair of token ids (a, b), got {type(pair).__name__} {pair!r}"[:200])
    return _token_id(pair[0], name), _token_id(pair[1], name)


def _check_word_freqs(word_freqs) -> None:
    if not isinstance(word_freqs, dict):
        raise TypeError(f"word_freqs must be a dict of pre-token bytes -> count (count_pretokens gives one), "
                        f"got {type(word_freqs).__name__}")
    for w, f in word_freqs.items():
        if not isinstance(w, bytes):
            raise TypeError(f"word_freqs must map bytes to counts, got the key {type(w).__name__} {w!r}"[:200])
        if isinstance(f, bool) or not isinstance(f, int) or f < 1:
            raise ValueError(f"word_freqs must map each pre-token to a count >= 1, got {w!r}: {f!r}"[:200])


# ---------------------------------------------------------------------------- helpers
def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace each occurrence of ``pair`` in ``ids``, left to right, by ``new_id``.

    >>> merge([97, 97, 97, 98], (97, 97), 256)
    [256, 97, 98]
    """
    check_sequence(ids, "ids")
    return _merge(ids, check_pair(pair), _token_id(new_id, "new_id"))


def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    a, b = pair
    out, i, n = [], 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def pair_counts(words: list[list[int]], freqs: list[int]) -> dict[tuple[int, int], int]:
    """eq. (bpe-pair-count): each adjacent pair of each word, weighted by the word's frequency.

    Args:
        words: a list of words, each a list (or tuple) of token ids.  freqs: a count per word.

    >>> pair_counts([[97, 97, 98], [97, 98]], [1, 3])
    {(97, 97): 1, (97, 98): 4}
    """
    check_sequence(words, "words"), check_sequence(freqs, "freqs")
    if len(words) != len(freqs):
        raise ValueError(f"words and freqs must have one count per word, got {len(words)} words and {len(freqs)} counts")
    for k, (w, f) in enumerate(zip(words, freqs)):
        check_sequence(w, f"words[{k}]")
        if isinstance(f, bool) or not isinstance(f, int):
            raise TypeError(f"freqs must hold int counts, got {type(f).__name__} {f!r} at {k}")
    return _pair_counts(words, freqs)


def _pair_counts(words: list[list[int]], freqs: list[int]) -> dict[tuple[int, int], int]:
    counts: dict[tuple[int, int], int] = defaultdict(int)
    for w, f in zip(words, freqs):
        for pair in zip(w, w[1:]):
            counts[pair] += f
    return dict(counts)


def _initial(word_freqs: dict[bytes, int]) -> tuple[list[list[int]], list[int], dict[int, bytes]]:
    items = sorted(word_freqs.items())  # a fixed order, so results never depend on dict order
    return [list(w) for w, _ in items], [f for _, f in items], {i: bytes([i]) for i in range(N_BYTES)}


# ---------------------------------------------------------------------------- training
def train_naive(word_freqs: dict[bytes, int], n_merges: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Greedy BPE by recounting all pairs after every merge: O(merges x corpus). Returns
    ``(merges, counts)``, the merged pairs in order and the count of each when it was merged.
    Stops early when no pair is left.

    Worked example, the single pre-token ``aaabdaaabac`` (a=97, b=98, c=99, d=100): the pair
    counts are aa:4, ab:2, the rest 1, so ``aa`` -> 256 gives ``[256,97,98,100,256,97,98,97,99]``.
    Now ``(256,97)`` and ``(97,98)`` both occur twice; ``(b"aa", b"a") > (b"a", b"b")``, so
    ``(256,97)`` -> 257 = ``aaa``, leaving ``[257,98,100,257,98,97,99]``; then ``(257,98)`` -> 258.

    >>> train_naive({b"aaabdaaabac": 1}, 3)
    ([(97, 97), (256, 97), (257, 98)], [4, 2, 2])

    Book: :doc:`/notebooks/08_tokenization`
    """
    _check_word_freqs(word_freqs), check_nonnegative_int(n_merges, "n_merges")
    words, freqs, vocab = _initial(word_freqs)
    merges, counts_at_merge = [], []
    for step in range(n_merges):
        counts = _pair_counts(words, freqs)  # the inputs were checked once, above
        if not counts:
            break
        pair = max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]], p))
        new_id = N_BYTES + step
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        words = [_merge(w, pair, new_id) for w in words]
        merges.append(pair)
        counts_at_merge.append(counts[pair])
    return merges, counts_at_merge


def _descending(token: bytes) -> tuple[int, ...]:
    # a key whose ascending order is the descending order of byte strings: negate each byte and
    # end with 1, which sorts after any -byte, so a prefix sorts after its extensions
    return tuple(-c for c in token) + (1,)


def train_incremental(word_freqs: dict[bytes, int], n_merges: int) -> tuple[list[tuple[int, int]], list[int]]:
    """The merges of :func:`train_naive`, updating counts only where a merge changed something.

    ``where[pair]`` holds the indices of the words the pair has occurred in (a superset: entries
    are never removed, a word that no longer holds the pair is skipped). The heap holds
    ``(-count, key(a), key(b), -a, -b)`` so its smallest entry is the most frequent pair, ties to
    the greatest byte strings; an entry whose count is out of date is dropped when it surfaces.
    A merged pair can never occur again (merges only join neighbours), so its count stays 0.

    >>> train_incremental({b"aaabdaaabac": 1}, 3)
    ([(97, 97), (256, 97), (257, 98)], [4, 2, 2])

    Book: :doc:`/notebooks/08_tokenization`
    """
    _check_word_freqs(word_freqs), check_nonnegative_int(n_merges, "n_merges")
    words, freqs, vocab = _initial(word_freqs)
    keys = [_descending(vocab[i]) for i in range(N_BYTES)]
    counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for i, (w, f) in enumerate(zip(words, freqs)):
        for pair in zip(w, w[1:]):
            counts[pair] += f
            where[pair].add(i)
    heap = [(-c, keys[a], keys[b], -a, -b) for (a, b), c in counts.items()]
    heapq.heapify(heap)
    merges, counts_at_merge = [], []
    while len(merges) < n_merges and heap:
        neg, _, _, na, nb = heapq.heappop(heap)
        pair = (-na, -nb)
        if counts.get(pair, 0) != -neg:
            continue  # stale entry: the count changed after it was pushed
        new_id = N_BYTES + len(merges)
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        keys.append(_descending(vocab[new_id]))
        merges.append(pair)
        counts_at_merge.append(-neg)
        delta: dict[tuple[int, int], int] = defaultdict(int)
        for i in where.pop(pair):
            w = words[i]
            new_w = _merge(w, pair, new_id)
            if len(new_w) == len(w):
                continue  # the pair left this word in an earlier merge
            f = freqs[i]
            for p in zip(w, w[1:]):  # remove the word's old pairs, add its new ones
                delta[p] -= f
            for p in zip(new_w, new_w[1:]):
                delta[p] += f
                where[p].add(i)
            words[i] = new_w
        for p, d in delta.items():
            if d:
                c = counts[p] + d
                if c:
                    counts[p] = c
                    heapq.heappush(heap, (-c, keys[p[0]], keys[p[1]], -p[0], -p[1]))
                else:
                    del counts[p]
    return merges, counts_at_merge
