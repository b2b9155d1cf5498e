"""GPT-2's tokenizer files: reading and writing ``vocab.json`` and ``merges.txt``, and fetching GPT-2's.

OpenAI released GPT-2's byte-level BPE as two files, which Hugging Face and most tools keep:

* ``vocab.json``: token -> id, each token written in GPT-2's printable byte alphabet
  (:func:`mathllm.bpe.gpt2_bytes_to_unicode`: ``"Ġthe"`` is the bytes ``b" the"``);
  ``<|endoftext|>`` is id 50256;
* ``merges.txt``: the 50,000 merges in rank order, one ``left right`` pair per line, after a
  ``#version: 0.2`` header line (some copies leave the header out).

GPT-2 numbers its 256 byte tokens in the order of that alphabet (``"!"`` is 0, the byte 0 is 188),
then merge ``k`` makes id ``256 + k``. :class:`mathllm.bpe.BPETokenizer` takes any such numbering
through its ``vocab`` argument, so the ids equal ``tiktoken``'s ``gpt2`` encoding and Hugging Face
``tokenizers`` (the tests check both on Tiny Shakespeare, Unicode, code and whitespace).

Where :func:`gpt2_files` finds GPT-2's files, in order: the folder ``$MATHLLM_DATA_DIR/gpt2``; the
cache folder ``~/.cache/mathllm/gpt2`` (:func:`mathllm.corpus.cache_dir`); a download from the
Hugging Face Hub into that cache. Every copy is checked against its SHA-256, as
:mod:`mathllm.corpus` checks the corpus.

References: Radford et al. 2019 (``openai/gpt-2`` ``encoder.py``); ``tiktoken``'s
``data_gym_to_mergeable_bpe_ranks`` (the same two files and digests).
Leaves out: the GPT-4 and later vocabularies (another pre-tokenizer), SentencePiece models.

Book: :doc:`/notebooks/08_tokenization`
"""
from __future__ import annotations

import json
import os
import pathlib
import urllib.error
from collections.abc import Iterable

from .bpe import gpt2_bytes_to_unicode
from .checks import check_str
from .corpus import DATA_DIR_ENV, cache_dir, check_digest, download

GPT2_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")  # one tokenizer for all four sizes
HUB_URL = "https://huggingface.co/openai-community/gpt2/resolve/main/{file}"
# file -> accepted SHA-256 digests. vocab.json is OpenAI's encoder.json; merges.txt is OpenAI's
# vocab.bpe (with its "#version: 0.2" header, as on the Hub), or the same lines without the header.
GPT2_SHA256 = {
    "vocab.json": ("196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",),
    "merges.txt": ("1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
                   "ac33235097fe06d4a8fff0feac994644809e6eb6ab70669e1e9fd40ae032428e"),
}
MERGES_HEADER = "#version: 0.2"


# ---------------------------------------------------------------------------- the byte alphabet
_TEXT_OF = gpt2_bytes_to_unicode()
_BYTE_OF = {c: b for b, c in _TEXT_OF.items()}


def token_bytes(token: str) -> bytes:
    """The bytes a token of ``vocab.json`` stands for: ``token_bytes("Ġthe") == b" the"``."""
    check_str(token, "token")
    try:
        return bytes(_BYTE_OF[c] for c in token)
    except KeyError as e:
        raise ValueError(f"token {token!r} has the character {e.args[0]!r}, which is not in GPT-2's byte "
                         f"alphabet (a special token such as '<|endoftext|>' is written as it is)") from None


def token_text(b: bytes) -> str:
    """The inverse of :func:`token_bytes`: ``token_text(b" the") == "Ġthe"``."""
    if not isinstance(b, (bytes, bytearray)):
        raise TypeError(f"b must be bytes, got {type(b).__name__}")
    return "".join([_TEXT_OF[c] for c in b])


# ---------------------------------------------------------------------------- reading and writing
def read_vocab(path: str | os.PathLike) -> dict[str, int]:
    """``vocab.json`` as a dict token -> id."""
    with open(path, encoding="utf-8") as f:
        vocab = json.load(f)
    if not isinstance(vocab, dict) or not all(isinstance(i, int) and not isinstance(i, bool) for i in vocab.values()):
        raise ValueError(f"{path} is not a vocab.json: expected a JSON object of token -> int id")
    return vocab


def read_merges(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``merges.txt`` as a list of ``(left, right)`` token pairs in rank order (header and blank lines skipped)."""
    merges = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line or (n == 1 and line.startswith("#version")):
                continue
            pair = line.split(" ")
            if len(pair) != 2 or not all(pair):
                raise ValueError(f"{path}, line {n}: expected 'left right' (two tokens and one space), got {line!r}")
            merges.append((pair[0], pair[1]))
    return merges


def read_tokenizer_files(cls, vocab_path, merges_path, special_tokens: Iterable[str] | None = None):
    """Build ``cls`` (:class:`~mathllm.bpe.BPETokenizer`) from ``vocab.json`` and ``merges.txt``.

    ``special_tokens=None``: every vocabulary entry that is neither a byte nor made by a merge.
    """
    vocab, merges = read_vocab(vocab_path), read_merges(merges_path)
    made = {left + right for left, right in merges} | set(_TEXT_OF.values())
    if special_tokens is None:
        special_tokens = sorted((t for t in vocab if t not in made), key=vocab.get)
    elif isinstance(special_tokens, str):
        raise TypeError(f"special_tokens must be a list of strings, got the single string {special_tokens!r}")
    special_tokens = list(special_tokens)
    special = {}
    after = max(vocab.values(), default=-1) + 1
    for s in special_tokens:
        if not isinstance(s, str):
            raise TypeError(f"each special token must be a str, got {type(s).__name__} {s!r}")
        if s in vocab:
            special[s] = vocab[s]
        else:  # not in the file: the next free id
            special[s], after = after, after + 1
    ids = {t: i for t, i in vocab.items() if t not in special}
    for k, (left, right) in enumerate(merges):
        for t in (left, right):
            if t not in ids:
                raise ValueError(f"{merges_path}: merge {k} ({left!r}, {right!r}) uses {t!r}, which is not in {vocab_path}")
    return cls([(ids[left], ids[right]) for left, right in merges], special,
               vocab={i: token_bytes(t) for t, i in ids.items()})


def write_tokenizer_files(tok, vocab_path, merges_path) -> None:
    """Write ``tok`` as ``vocab.json`` (ids in order) and ``merges.txt`` (with the ``#version`` header)."""
    special = {i: s for s, i in tok.special_ids.items()}
    vocab = {(special[i] if i in special else token_text(tok.vocab[i])): i for i in sorted(tok.vocab)}
    if len(vocab) != len(tok.vocab):
        raise ValueError("two ids have the same bytes (or a special token's text): vocab.json maps each token "
                         "text to one id and cannot hold them")
    lines = [MERGES_HEADER] + [f"{token_text(tok.vocab[a])} {token_text(tok.vocab[b])}" for a, b in tok.merges]
    with open(vocab_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(vocab))  # ASCII with \u escapes, as OpenAI's encoder.json
    with open(merges_path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------- GPT-2's files
def _check(path: pathlib.Path, name: str) -> pathlib.Path:
    return check_digest(path, GPT2_SHA256[name], what=f"GPT-2's {name}")


def _download(url: str, dest: pathlib.Path, name: str, timeout: float = 30.0) -> pathlib.Path:
    """Download ``url`` to ``dest`` with a progress bar, keeping it only if its SHA-256 is GPT-2's."""
    return download(url, dest, GPT2_SHA256[name], timeout=timeout, what=f"GPT-2's {name}")


def gpt2_files(*, download_ok: bool = True, url: str | None = None) -> tuple[pathlib.Path, pathlib.Path]:
    """Paths of verified copies of GPT-2's ``vocab.json`` and ``merges.txt``, downloading them once.

    Looks in ``$MATHLLM_DATA_DIR/gpt2``, then in the cache ``~/.cache/mathllm/gpt2``, then
    downloads ``url`` (default ``HUB_URL``; ``{file}`` is replaced by the file name) into the cache.
    """
    url = HUB_URL if url is None else url
    env = os.environ.get(DATA_DIR_ENV)
    if env and all((pathlib.Path(env) / "gpt2" / n).is_file() for n in GPT2_SHA256):
        folder = pathlib.Path(env) / "gpt2"
        return tuple(_check(folder / n, n) for n in GPT2_SHA256)
    cached = cache_dir() / "gpt2"
    paths = []
    for name in GPT2_SHA256:
        path = cached / name
        if path.is_file():
            paths.append(_check(path, name))
            continue
        how = (f"Supply the files in one of these ways: save {url.format(file='vocab.json')} and "
               f"{url.format(file='merges.txt')} into {cached}/; or put them in a folder gpt2/ inside "
               f"${DATA_DIR_ENV}; or pass the path of a folder holding vocab.json and merges.txt. "
               f"SHA-256: {GPT2_SHA256}.")
        if not download_ok:
            raise FileNotFoundError(f"GPT-2's {name} is not on this machine and downloading is off. {how}")
        try:
            paths.append(_download(url.format(file=name), path, name))
        except (urllib.error.URLError, OSError) as e:
            raise FileNotFoundError(f"GPT-2's {name} is not on this machine and could not be downloaded "
                                    f"from {url.format(file=name)} ({e}). {how}") from e
    return tuple(paths)


def pretrained_files(name_or_path: str | os.PathLike, *, download_ok: bool = True) -> tuple[pathlib.Path, pathlib.Path]:
    """``(vocab.json, merges.txt)`` of a GPT-2 name (``GPT2_NAMES``) or of a folder that holds both."""
    if isinstance(name_or_path, str) and name_or_path in GPT2_NAMES:
        return gpt2_files(download_ok=download_ok)
    folder = pathlib.Path(name_or_path)
    if folder.is_dir():
        paths = folder / "vocab.json", folder / "merges.txt"
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"the folder {str(folder)!r} has no {' and no '.join(missing)}")
        return paths
    raise ValueError(f"{str(name_or_path)!r} is neither one of {GPT2_NAMES} nor a folder holding vocab.json and merges.txt")
