"""Training data: a corpus tokenized once into compact token files, and batches drawn from them.

A corpus (Tiny Shakespeare, any local text file, or the known-entropy Markov language of the
probability chapter) is tokenized once and written as two flat ``uint16`` files, ``train.bin``
and ``val.bin`` (2 bytes per token, so 65,536 ids at most), with a ``meta.json`` that records
the tokenizer, the vocabulary size and how many characters and bytes a token stands for (to
turn nats per token into bits per character or per byte). The files are memory-mapped, so a
corpus larger than memory trains the same way.

:class:`Batches` cuts windows of ``block_size + 1`` tokens out of a split: ``x`` is a window's
first ``T`` tokens and ``y`` the same window shifted by one, the next-token targets. Windows start
at random offsets (``order="random"``, nanoGPT's sampler) or walk the split in order
(``order="sequential"``). Either way the whole state (the generator, the position) is a small
dict saved in every checkpoint, so a resumed run sees the very batches an uninterrupted one would.

Data parallelism: every process draws the *global* batch of ``world_size * batch_size`` windows
from the same seeded generator and keeps rows ``rank * batch_size`` to ``(rank + 1) * batch_size``.
The processes together therefore train on exactly the batch one process with
``world_size * batch_size`` rows would see.

References: nanoGPT's ``prepare.py`` and ``get_batch`` (Karpathy 2022).
Leaves out: document boundaries and end-of-text tokens, shuffled epochs over fixed chunks,
background prefetching threads, vocabularies above 65,536.

Book: :doc:`/notebooks/12_training`
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib

import numpy as np
import torch

from .bpe import BPETokenizer
from .char_tokenizer import CharTokenizer
from .checks import check_positive_int
from .corpus import load_text

CORPORA = ("tinyshakespeare", "file", "markov")
TOKENIZERS = ("char", "bpe")
ORDERS = ("random", "sequential")
META_FILE = "meta.json"
MAX_VOCAB = 2 ** 16  # uint16 token files


# ---------------------------------------------------------------------------- tokenizers
def tokenizer_to_dict(tok) -> dict:
    """A tokenizer as plain JSON-able data (stored in ``meta.json`` and in checkpoints)."""
    if isinstance(tok, CharTokenizer):
        return {"type": "char", "chars": list(tok.chars)}
    if isinstance(tok, BPETokenizer):
        return {"type": "bpe", "merges": [list(p) for p in tok.merges], "special_tokens": list(tok.special_tokens)}
    raise TypeError(f"expected a CharTokenizer or BPETokenizer, got {type(tok).__name__}")


def tokenizer_from_dict(data: dict | None):
    """Inverse of :func:`tokenizer_to_dict`; ``None`` stays ``None`` (a corpus of raw ids)."""
    if data is None:
        return None
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "char":
        return CharTokenizer(data["chars"])
    if kind == "bpe":
        return BPETokenizer([tuple(p) for p in data["merges"]], data.get("special_tokens", ()))
    raise ValueError(f"not a saved tokenizer: expected a dict with type 'char' or 'bpe', got type={kind!r}")


# ---------------------------------------------------------------------------- token files
def _write_atomic(path: pathlib.Path, payload: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class TokenData:
    """The train and validation token ids of a corpus, memory-mapped from ``directory``.

    Attributes: ``train`` and ``val`` (1-d ``uint16`` arrays), ``vocab_size``, ``tokenizer``
    (or None for a corpus of raw ids), ``chars_per_token`` and ``bytes_per_token`` (None when
    the corpus is not text), ``meta`` (everything in ``meta.json``).

    Book: :doc:`/notebooks/12_training`
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = pathlib.Path(directory)
        meta_path = self.directory / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.directory} holds no {META_FILE}: write token files with "
                                    f"TokenData.write, TokenData.from_text or prepare() first")
        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self.vocab_size = int(self.meta["vocab_size"])
        self.tokenizer = tokenizer_from_dict(self.meta.get("tokenizer"))
        self.chars_per_token = self.meta.get("chars_per_token")
        self.bytes_per_token = self.meta.get("bytes_per_token")
        self.train = self._open("train")
        self.val = self._open("val")

    def _open(self, split: str) -> np.ndarray:
        path = self.directory / f"{split}.bin"
        n = self.meta[f"{split}_tokens"]
        if not path.is_file() or path.stat().st_size != 2 * n:
            raise ValueError(f"{path} should hold {n} uint16 tokens ({2 * n} bytes); it is missing or "
                             f"truncated: delete {self.directory} and prepare the data again")
        return np.memmap(path, dtype=np.uint16, mode="r", shape=(n,))

    def split(self, name: str) -> np.ndarray:
        """The tokens of split ``"train"`` or ``"val"``."""
        if name not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {name!r}")
        return self.train if name == "train" else self.val

    def decode(self, ids) -> str:
        """Text of token ids (the ids themselves, space separated, for a corpus without tokenizer)."""
        if self.tokenizer is None:
            return " ".join(str(int(i)) for i in ids)
        return self.tokenizer.decode([int(i) for i in ids])

    @classmethod
    def write(cls, directory: str | os.PathLike, train_ids, val_ids, *, vocab_size: int, tokenizer=None,
              source: str = "", chars_per_token: float | None = None,
              bytes_per_token: float | None = None, **extra) -> "TokenData":
        """Write ``train_ids`` and ``val_ids`` (sequences of ints in ``[0, vocab_size)``) as token files.

        Each file is written to a temporary name and renamed, ``meta.json`` last, so a crash
        never leaves a half-written data set that looks complete.
        """
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not 0 < vocab_size <= MAX_VOCAB:
            raise ValueError(f"vocab_size must be an int in [1, {MAX_VOCAB}] (uint16 token files), got {vocab_size!r}")
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / META_FILE).unlink(missing_ok=True)  # the data set is incomplete until meta.json is back
        counts = {}
        for split, ids in (("train", train_ids), ("val", val_ids)):
            arr = np.asarray(ids, dtype=np.int64)
            if arr.ndim != 1 or arr.size < 2:
                raise ValueError(f"{split}_ids must be a 1-d sequence of at least 2 token ids, got shape {arr.shape}")
            if arr.min() < 0 or arr.max() >= vocab_size:
                raise ValueError(f"{split}_ids holds id {arr.min() if arr.min() < 0 else arr.max()}, "
                                 f"outside the vocabulary [0, {vocab_size})")
            _write_atomic(directory / f"{split}.bin", arr.astype(np.uint16).tobytes())
            counts[f"{split}_tokens"] = int(arr.size)
        meta = {"source": source, "vocab_size": vocab_size, **counts,
                "tokenizer": None if tokenizer is None else tokenizer_to_dict(tokenizer),
                "chars_per_token": chars_per_token, "bytes_per_token": bytes_per_token, **extra}
        _write_atomic(directory / META_FILE, json.dumps(meta, indent=1).encode("utf-8"))
        return cls(directory)

    @classmethod
    def from_text(cls, directory: str | os.PathLike, text: str, tokenizer, *, val_fraction: float = 0.1,
                  source: str = "", **extra) -> "TokenData":
        """Tokenize ``text`` (the first ``1 - val_fraction`` of it for training, the rest for validation).

        The split is by characters, before tokenizing, as nanoGPT's ``prepare.py`` does.
        """
        if not isinstance(text, str) or len(text) < 4:
            raise ValueError("text must be a str of at least 4 characters")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
        cut = int(len(text) * (1.0 - val_fraction))
        train_ids, val_ids = tokenizer.encode(text[:cut]), tokenizer.encode(text[cut:])
        val_text = text[cut:]
        return cls.write(directory, train_ids, val_ids, vocab_size=tokenizer.vocab_size, tokenizer=tokenizer,
                         source=source, chars_per_token=len(val_text) / len(val_ids),
                         bytes_per_token=len(val_text.encode("utf-8")) / len(val_ids), **extra)


def prepare(corpus: str, directory: str | os.PathLike, *, path: str | os.PathLike | None = None,
            tokenizer: str = "char", bpe_vocab_size: int = 512, val_fraction: float = 0.1,
            markov=None, markov_tokens: int = 1_000_000, seed: int = 0) -> TokenData:
    """Tokenize a corpus into ``directory`` once; later calls with the same request reuse the files.

    Args:
        corpus: ``"tinyshakespeare"``, ``"file"`` (the UTF-8 text at ``path``) or ``"markov"``
            (``markov_tokens`` symbols of :class:`mathllm.markov_source.MarkovSource` ``(markov)``,
            the first ``1 - val_fraction`` for training; each symbol is a token).
        tokenizer: ``"char"`` or ``"bpe"`` (byte-level BPE trained on the training text up to
            ``bpe_vocab_size``); ignored for ``"markov"``.

    Returns:
        the :class:`TokenData` in ``directory``.

    Book: :doc:`/notebooks/12_training`
    """
    if corpus not in CORPORA:
        raise ValueError(f"corpus must be one of {', '.join(CORPORA)}, got {corpus!r}")
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
    directory = pathlib.Path(directory)
    if corpus == "markov":
        from .markov_source import MarkovSource, MarkovSourceConfig
        markov = MarkovSourceConfig() if markov is None else markov
        request = {"corpus": corpus, "markov": repr(markov), "tokens": markov_tokens,
                   "val_fraction": val_fraction, "seed": seed}
    else:
        text = load_text(corpus, path)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        request = {"corpus": corpus, "sha256": digest, "tokenizer": tokenizer, "val_fraction": val_fraction,
                   "bpe_vocab_size": bpe_vocab_size if tokenizer == "bpe" else None}
    if (directory / META_FILE).is_file():
        try:
            data = TokenData(directory)
            if data.meta.get("request") == request:
                return data
        except (ValueError, KeyError, json.JSONDecodeError):
            pass  # a stale or broken data set is rewritten below
    if corpus == "markov":
        source = MarkovSource(markov)
        ids = np.asarray(source.sample(markov_tokens, seed=seed), dtype=np.int64).reshape(-1)
        cut = int(len(ids) * (1.0 - val_fraction))
        # symbol i prints as alphabet[i]: a character tokenizer over the alphabet, in its order
        return TokenData.write(directory, ids[:cut], ids[cut:], vocab_size=int(markov.vocab_size),
                               tokenizer=CharTokenizer(list(source.alphabet)), source=f"markov {markov!r}",
                               chars_per_token=1.0, bytes_per_token=1.0, request=request,
                               entropy_rate=float(source.entropy_rate()))
    if tokenizer == "char":
        tok = CharTokenizer.train(text)
    else:
        tok = BPETokenizer.train(text[:int(len(text) * (1.0 - val_fraction))], bpe_vocab_size)
    return TokenData.from_text(directory, text, tok, val_fraction=val_fraction,
                               source=str(path) if corpus == "file" else corpus, request=request)


# ---------------------------------------------------------------------------- batches
def _token_array(tokens) -> np.ndarray:
    """``tokens`` as a 1-d integer NumPy array: a :class:`TokenData` split (a memory map) as it is, an
    integer tensor viewed without a copy (on the CPU). Floats, bools and other shapes are refused."""
    if isinstance(tokens, torch.Tensor):
        if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
            raise TypeError(f"tokens must be integer token ids, got a tensor of dtype {str(tokens.dtype).replace('torch.', '')}")
        tokens = tokens.cpu().numpy()
    if not isinstance(tokens, np.ndarray):
        raise TypeError(f"tokens must be a 1-d integer array or tensor of token ids, got {type(tokens).__name__}")
    if tokens.dtype.kind not in "iu":
        raise TypeError(f"tokens must be integer token ids, got an array of dtype {tokens.dtype}")
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be 1-d, got shape {tokens.shape}")
    return tokens


class Batches:
    """Batches ``(x, y)`` of shape (B, T) int64 from a 1-d token array, ``y`` = ``x`` shifted by one.

    Args:
        tokens: 1-d integer array of token ids (a :class:`TokenData` split) or integer tensor.
        batch_size: B, rows per process.
        block_size: T, tokens per row.
        order: ``"random"`` (windows at uniform random offsets) or ``"sequential"`` (consecutive
            windows, wrapping around at the end; ``position`` is the next offset).
        seed: seeds this loader's own generator; every process must use the same seed.
        rank, world_size: this process's rows of the global batch (see the module docstring).
        device: where the batches go (pinned memory and a non-blocking copy for CUDA).

    Book: :doc:`/notebooks/12_training`
    """

    def __init__(self, tokens, batch_size: int, block_size: int, *, order: str = "random", seed: int = 0,
                 rank: int = 0, world_size: int = 1, device: str | torch.device = "cpu"):
        tokens = _token_array(tokens)
        for name, value in (("batch_size", batch_size), ("block_size", block_size), ("world_size", world_size)):
            check_positive_int(value, name)
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank!r}")
        if len(tokens) < block_size + 2:
            raise ValueError(f"{len(tokens)} tokens are too few for windows of block_size + 1 = {block_size + 1}")
        self.tokens, self.B, self.T, self.order = tokens, batch_size, block_size, order
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)
        self.position = 0
        self._offsets = np.arange(block_size + 1)  # (T+1,)

    def _starts(self) -> np.ndarray:
        n_rows = self.world_size * self.B  # the global batch; this process keeps its slice
        if self.order == "random":
            starts = torch.randint(len(self.tokens) - self.T, (n_rows,), generator=self.generator).numpy()
        else:
            span = len(self.tokens) - 1  # last usable start is span - T
            starts = (self.position + self.T * np.arange(n_rows)) % (span - self.T + 1)
            self.position = int((self.position + self.T * n_rows) % (span - self.T + 1))
        return starts[self.rank * self.B:(self.rank + 1) * self.B]

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch: ``x`` (B, T) and ``y`` (B, T), int64 on ``device``."""
        rows = self.tokens[self._starts()[:, None] + self._offsets]  # (B, 1) + (T+1,) -> (B, T+1) uint16
        xy = torch.from_numpy(rows.astype(np.int64))  # (B, T+1)
        x, y = xy[:, :-1].contiguous(), xy[:, 1:].contiguous()  # (B, T), (B, T)
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device), y.to(self.device)

    def state_dict(self) -> dict:
        """Everything that decides the next batches: the generator state and the position."""
        return {"generator": self.generator.get_state(), "position": self.position, "order": self.order}

    def load_state_dict(self, state: dict) -> None:
        if state.get("order") != self.order:
            raise ValueError(f"batch state is for order={state.get('order')!r}, this loader has order={self.order!r}")
        self.generator.set_state(state["generator"])
        self.position = int(state["position"])


def eval_batches(tokens, n_batches: int, batch_size: int, block_size: int, *, seed: int = 1,
                 device: str | torch.device = "cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed list of ``n_batches`` random batches for evaluation.

    Evaluating on the same windows every time gives a smooth curve and touches no training
    generator, so evaluation never changes what the model trains on.
    """
    check_positive_int(n_batches, "n_batches")
    loader = Batches(tokens, batch_size, block_size, seed=seed, device=device)
    return [loader.next() for _ in range(n_batches)]
