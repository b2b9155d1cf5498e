"""The encoder-decoder transformer of Vaswani et al. (2017), and a synthetic task to train it on.

Shape legend (book/notation.md): B batch, S source positions, T target positions, C = n_embd, V vocab.
::

    memory = Encoder(src)             (B, S, C)   bidirectional self-attention + MLP
    logits = Decoder(tgt_in, memory)  (B, T, V)   causal self-attention, cross-attention to memory,
                                                  MLP; the head tied to the target embedding

The decoder is trained with *teacher forcing*: its input is the target shifted right behind a
beginning-of-sequence token, ``tgt_in = [BOS, y_1, ..., y_{T-1}]``, and it predicts
``y_1 .. y_T``. At test time it generates greedily from ``[BOS]`` (:meth:`EncoderDecoder.generate`).
Both stacks are built from :class:`mathllm.layers.Block`, the same block as :class:`mathllm.transformer.GPT`.

The task (:func:`seq2seq_batch`): copy a random string of digits reversed, or sorted. Token 0 is
BOS, tokens 1..V-1 are the digits. Reversal needs attention by position, sorting attention by
content. Leaves out: padding masks (every sequence here has the same length), label
smoothing, beam search.

Book: :doc:`/notebooks/11_transformer`
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import KVCache
from .checks import check_ids, check_instance, check_positive, check_positive_int, check_shape
from .embedding import LearnedPositionalEmbedding, TokenEmbedding
from .generate import generate
from .layers import MLPS, NORMS, Block, make_norm
from .positional import sinusoidal_encoding
from .transformer import gpt2_init_

BOS = 0
TASKS = ("reverse", "sort")


@dataclass(frozen=True)
class EncoderDecoderConfig:
    """Hyperparameters of :class:`EncoderDecoder`, checked when built.

    Book: :doc:`/notebooks/11_transformer`
    """

    vocab_size: int = 12      # shared by source and target; token 0 is BOS
    src_block_size: int = 16  # longest source
    tgt_block_size: int = 16  # longest decoder input
    n_layer: int = 2          # in each of the two stacks (Vaswani et al.: 6)
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0
    bias: bool = True
    mlp: str = "relu"         # the original transformer's
    norm: str = "layernorm"
    prenorm: bool = True
    positions: str = "learned"  # or "sinusoidal" (Vaswani et al.)

    def __post_init__(self):
        for name in ("vocab_size", "src_block_size", "tgt_block_size", "n_layer", "n_head", "n_embd"):
            check_positive_int(getattr(self, name), name)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        for value, choices, name in ((self.mlp, MLPS, "mlp"), (self.norm, NORMS, "norm"),
                                     (self.positions, ("learned", "sinusoidal"), "positions")):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        if self.positions == "sinusoidal" and self.n_embd % 2:
            raise ValueError(f"positions='sinusoidal' needs an even n_embd, got {self.n_embd}")


class _Embedding(nn.Module):
    """Token embedding plus learned or sinusoidal positions: (B, T) ids -> (B, T, C).

    The pieces are chapter 09's (:class:`~mathllm.embedding.TokenEmbedding`,
    :class:`~mathllm.embedding.LearnedPositionalEmbedding`, :func:`~mathllm.positional.sinusoidal_encoding`),
    as in :class:`mathllm.transformer.GPT`; this module only adds them and applies dropout.
    """

    def __init__(self, vocab_size: int, block_size: int, config: EncoderDecoderConfig):
        super().__init__()
        self.vocab_size, self.block_size = vocab_size, block_size
        self.token = TokenEmbedding(vocab_size, config.n_embd)
        self.position = LearnedPositionalEmbedding(block_size, config.n_embd) if config.positions == "learned" else None
        if self.position is None:
            self.register_buffer("sinusoid", sinusoidal_encoding(block_size, config.n_embd), persistent=False)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, idx: torch.Tensor, offset: int = 0, name: str = "idx") -> torch.Tensor:
        B, T = check_shape(idx, "B T", name=name)
        if offset + T > self.block_size:
            raise ValueError(f"{name} reaches position {offset + T - 1}: longer than block size {self.block_size}")
        check_ids(idx, self.vocab_size, name=name)
        x = self.token(idx)  # (B, T) -> (B, T, C)
        pe = self.position(T, offset) if self.position is not None else self.sinusoid[offset:offset + T]  # (T, C)
        return self.drop(x + pe)


class Encoder(nn.Module):
    """Source ids (B, S) -> memory (B, S, C): embeddings, then blocks with bidirectional self-attention.

    Book: :doc:`/notebooks/11_transformer`
    """

    def __init__(self, config: EncoderDecoderConfig):
        super().__init__()
        c = check_instance(config, EncoderDecoderConfig, "config")
        self.embed = _Embedding(c.vocab_size, c.src_block_size, c)
        self.blocks = nn.ModuleList(
            Block(c.n_embd, c.n_head, causal=False, mlp=c.mlp, norm=c.norm, prenorm=c.prenorm, bias=c.bias,
                  dropout=c.dropout) for _ in range(c.n_layer))
        self.norm_f = make_norm(c.norm, c.n_embd, bias=c.bias) if c.prenorm else nn.Identity()

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        x = self.embed(src, name="src")  # (B, S, C)
        for block in self.blocks:
            x = block(x)  # every position sees every other: no mask
        return self.norm_f(x)


class Decoder(nn.Module):
    """Target ids (B, T) and memory (B, S, C) -> logits (B, T, V): causal self-attention, cross-attention, MLP.

    Book: :doc:`/notebooks/11_transformer`
    """

    def __init__(self, config: EncoderDecoderConfig):
        super().__init__()
        c = check_instance(config, EncoderDecoderConfig, "config")
        self.embed = _Embedding(c.vocab_size, c.tgt_block_size, c)
        self.blocks = nn.ModuleList(
            Block(c.n_embd, c.n_head, causal=True, cross_attention=True, mlp=c.mlp, norm=c.norm,
                  prenorm=c.prenorm, bias=c.bias, dropout=c.dropout) for _ in range(c.n_layer))
        self.norm_f = make_norm(c.norm, c.n_embd, bias=c.bias) if c.prenorm else nn.Identity()
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.lm_head.weight = self.embed.token.weight  # tied, as in Vaswani et al. section 3.4

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, kv_caches: list[KVCache] | None = None) -> torch.Tensor:
        """With ``kv_caches`` (self-attention caches, then cross-attention caches, one per layer each),
        ``tgt`` holds only the new tokens, placed after the cached ones."""
        L = len(self.blocks)
        offset = 0 if kv_caches is None else kv_caches[0].length
        x = self.embed(tgt, offset, name="tgt")  # (B, T, C)
        for i, block in enumerate(self.blocks):
            caches = (None, None) if kv_caches is None else (kv_caches[i], kv_caches[L + i])
            x = block(x, context=memory, kv_cache=caches[0], cross_cache=caches[1])  # (B, T, C)
        return self.lm_head(self.norm_f(x))  # (B, T, C) x (C, V) -> (B, T, V)


class _BoundDecoder:
    """The decoder with its memory fixed: the interface :func:`mathllm.generate.generate` drives."""

    def __init__(self, decoder: Decoder, memory: torch.Tensor):
        self.decoder, self.memory = decoder, memory
        self.block_size = decoder.embed.block_size

    def new_kv_caches(self) -> list[KVCache]:
        return [KVCache() for _ in range(2 * len(self.decoder.blocks))]

    def next_logits(self, idx: torch.Tensor, kv_caches: list[KVCache] | None = None) -> torch.Tensor:
        return self.decoder(idx, self.memory, kv_caches)[:, -1]  # (B, V)


class EncoderDecoder(nn.Module):
    """The encoder-decoder transformer: ``forward(src, tgt_in, targets)`` -> ``(logits, loss)``.

    Book: :doc:`/notebooks/11_transformer`
    """

    def __init__(self, config: EncoderDecoderConfig):
        super().__init__()
        check_instance(config, EncoderDecoderConfig, "config")
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        gpt2_init_(self.encoder, n_residual=2 * config.n_layer)
        gpt2_init_(self.decoder, n_residual=3 * config.n_layer)  # three sublayers per decoder block

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, targets: torch.Tensor | None = None):
        """``src`` (B, S), ``tgt_in`` (B, T), ``targets`` (B, T) or None -> ``(logits (B, T, V), loss or None)``."""
        logits = self.decoder(tgt_in, self.encoder(src))  # (B, T, V)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))

    @torch.no_grad()
    def generate(self, src: torch.Tensor, max_new_tokens: int, *, temperature: float = 0.0, top_k: int | None = None,
                 top_p: float | None = None, use_cache: bool = True, generator: torch.Generator | None = None):
        """Decode from BOS given ``src`` (B, S) -> (B, max_new_tokens) tokens (BOS removed); greedy by default."""
        memory = self.encoder(src)  # (B, S, C), computed once
        start = torch.full((src.shape[0], 1), BOS, dtype=torch.long, device=src.device)  # (B, 1)
        out = generate(_BoundDecoder(self.decoder, memory), start, max_new_tokens, temperature=temperature,
                       top_k=top_k, top_p=top_p, use_cache=use_cache, generator=generator)
        return out[:, 1:]


# ---------------------------------------------------------------------------- the task
def seq2seq_batch(task: str, batch_size: int, length: int, vocab_size: int,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of the synthetic task: ``(src, tgt_in, targets)``, each (B, length) int64.

    ``src`` holds random digits 1..V-1; ``targets`` is ``src`` reversed (``task="reverse"``) or
    sorted (``task="sort"``); ``tgt_in`` is ``[BOS] + targets[:-1]`` (teacher forcing).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(map(repr, TASKS))}, got {task!r}")
    check_positive(batch_size, "batch_size")
    check_positive(length, "length")
    if vocab_size < 3:
        raise ValueError(f"vocab_size must be at least 3 (BOS and two digits), got {vocab_size}")
    src = torch.randint(1, vocab_size, (batch_size, length), generator=generator)  # (B, n)
    targets = src.flip(1) if task == "reverse" else src.sort(dim=1).values
    tgt_in = torch.cat([torch.full((batch_size, 1), BOS), targets[:, :-1]], dim=1)  # shift right
    return src, tgt_in, targets


@torch.no_grad()
def sequence_accuracy(model: EncoderDecoder, src: torch.Tensor, targets: torch.Tensor) -> float:
    """The fraction of sequences that greedy decoding gets entirely right."""
    check_instance(model, EncoderDecoder, "model")
    pred = model.generate(src, targets.shape[1])  # (B, n)
    return (pred == targets).all(dim=1).float().mean().item()
