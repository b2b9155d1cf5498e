"""The decoder-only transformer (GPT): configuration, model, parameter count and FLOPs per token.

Shape legend (book/notation.md): B batch, T time, C = n_embd, L = n_layer, V = vocab_size, H MLP width.
::

    x_0 = E[idx] + P[0..T-1]                  token and position embeddings     (B, T, C)
    x_l = Block_l(x_{l-1}),  l = 1..L          causal self-attention + MLP       (B, T, C)
    logits = norm_f(x_L) E^T                   output head tied to E             (B, T, V)

References: Radford et al. 2019 (GPT-2: pre-norm, a final norm, the scaled residual init);
Vaswani et al. 2017; Press & Wolf 2017 (weight tying); nanoGPT's ``model.py`` for the lean
training path (one fused qkv matmul, ``F.scaled_dot_product_attention(is_causal=True)``,
``F.layer_norm``). FLOPs per token follow Kaplan et al. 2020 (6N) and Chowdhery et al. 2022
(PaLM, appendix B: the attention term 12 L T C), as nanoGPT's ``estimate_mfu`` does.

Leaves out: grouped-query attention, mixture of experts, ``torch.compile`` (the trainer's
choice), an optimizer configuration (``mathllm.train``).

Book: :doc:`/notebooks/11_transformer`
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import KVCache
from .embedding import LearnedPositionalEmbedding, TokenEmbedding
from .checks import check_ids, check_instance, check_positive_int, check_shape, check_tensor
from .generate import generate
from .layers import MLPS, NORMS, Block, FeedForward, make_norm, mlp_hidden
from .positional import RoPE, sinusoidal_encoding

POSITIONS = ("learned", "sinusoidal", "rope")
ATTN_IMPLS = ("sdpa", "manual")


def _choice(value, choices, name):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


# ---------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class GPTConfig:
    """Hyperparameters of :class:`GPT`, checked when built. Presets: :meth:`tiny`, :meth:`shakespeare_char`, :meth:`gpt2_small`.

    Book: :doc:`/notebooks/11_transformer`
    """

    vocab_size: int = 65     # Tiny Shakespeare's characters
    block_size: int = 64     # context length: the most positions the model sees at once
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True        # biases in Linear and LayerNorm (GPT-2: True)
    mlp: str = "gelu"        # "relu", "gelu" (exact), "gelu_tanh" (GPT-2's), "swiglu"
    norm: str = "layernorm"  # or "rmsnorm" (no bias, no centring)
    prenorm: bool = True     # x + f(norm(x)) as GPT-2; False: norm(x + f(x)) as Vaswani et al.
    positions: str = "learned"  # "learned" (GPT-2), "sinusoidal" (fixed), "rope" (rotary, in attention)
    tie_weights: bool = True    # output head = token embedding matrix (Press & Wolf 2017)
    attn_impl: str = "sdpa"     # "sdpa": torch's fused kernel; "manual": the formula written out
    d_ff: int | None = None     # MLP width H; None: 4C (SwiGLU 8C/3 rounded up to 8). GPT-2's n_inner
    rope_theta: float = 10000.0  # RoPE base: theta_i = rope_theta^(-2i/hs) (RoFormer; Llama 3 uses 500000)

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            check_positive_int(getattr(self, name), name)
        if self.d_ff is not None:
            check_positive_int(self.d_ff, "d_ff")
        if isinstance(self.rope_theta, bool) or not isinstance(self.rope_theta, (int, float)) \
                or not 1.0 < self.rope_theta < math.inf:
            raise ValueError(f"rope_theta must be a finite number > 1 (the base of the RoPE frequencies), got {self.rope_theta!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        _choice(self.mlp, MLPS, "mlp")
        _choice(self.norm, NORMS, "norm")
        _choice(self.positions, POSITIONS, "positions")
        _choice(self.attn_impl, ATTN_IMPLS, "attn_impl")
        hs = self.n_embd // self.n_head
        if self.positions == "rope" and hs % 2:
            raise ValueError(f"positions='rope' rotates pairs of dimensions: head size n_embd // n_head = {hs} must be even")
        if self.positions == "sinusoidal" and self.n_embd % 2:
            raise ValueError(f"positions='sinusoidal' needs an even n_embd, got {self.n_embd}")

    @property
    def ff_width(self) -> int:
        """The MLP's hidden width H: ``d_ff``, or the default for ``mlp`` when it is None."""
        return mlp_hidden(self.n_embd, self.mlp) if self.d_ff is None else self.d_ff

    @classmethod
    def tiny(cls, **overrides) -> "GPTConfig":
        """A CPU-sized model for tests: 28,576 parameters."""
        return cls(**{**dict(block_size=32, n_layer=2, n_head=2, n_embd=32), **overrides})

    @classmethod
    def shakespeare_char(cls, **overrides) -> "GPTConfig":
        """nanoGPT's character-level Shakespeare model: 10,745,088 parameters (10.65M without positions)."""
        return cls(**{**dict(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384,
                             dropout=0.2, bias=False), **overrides})

    @classmethod
    def gpt2_small(cls, **overrides) -> "GPTConfig":
        """GPT-2 small (Radford et al. 2019): 124,439,808 parameters; loads the released weights."""
        return cls(**{**dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768,
                             bias=True, mlp="gelu_tanh"), **overrides})


# ---------------------------------------------------------------------------- formulas
def param_count(config: GPTConfig) -> int:
    """The number of parameters of ``GPT(config)``, from the formula (per block 12C^2 + 13C for GPT-2).

    Per block: attention 4C^2 (+4C biases), MLP 2CH (3CH for SwiGLU; + H + C biases, 2H + C for
    SwiGLU), two norms of C (2C for LayerNorm with bias). Plus V C token embeddings, T C learned
    positions, the final norm (pre-norm only) and V C for an untied head.
    """
    check_instance(config, GPTConfig, "config")
    C, L, V = config.n_embd, config.n_layer, config.vocab_size
    H = config.ff_width
    norm = 2 * C if config.norm == "layernorm" and config.bias else C
    attn = 4 * C * C + (4 * C if config.bias else 0)
    if config.mlp == "swiglu":
        mlp = 3 * C * H + (2 * H + C if config.bias else 0)
    else:
        mlp = 2 * C * H + (H + C if config.bias else 0)
    total = L * (attn + mlp + 2 * norm) + V * C
    total += config.block_size * C if config.positions == "learned" else 0
    total += norm if config.prenorm else 0
    total += 0 if config.tie_weights else V * C
    return total


def matmul_params(config: GPTConfig) -> int:
    """N: the weights that multiply activations in a forward pass, L (4C^2 + 2CH) + V C (3CH for SwiGLU).

    Embedding lookups, biases and norm gains do no matmul; the tied matrix E counts once, as the head.
    """
    check_instance(config, GPTConfig, "config")
    C, H = config.n_embd, config.ff_width
    return config.n_layer * (4 * C * C + (3 if config.mlp == "swiglu" else 2) * C * H) + config.vocab_size * C


def flops_per_token(config: GPTConfig) -> int:
    """Forward + backward matmul FLOPs per token at full context: 6 N + 12 L T C.

    A matmul with N weights costs 2N FLOPs per token forward and 4N backward (gradients of the
    input and of the weights): 6N. Attention adds Q K^T and P V, 2 x 2 T C forward per layer and
    twice that backward: 12 L T C, with T = block_size (PaLM appendix B; the causal mask's zeros
    are counted, as there). nanoGPT's ``estimate_mfu`` writes the same 6N + 12 L T C, with N all
    parameters but the positions, so its count is larger by the biases and gains.
    """
    check_instance(config, GPTConfig, "config")
    return 6 * matmul_params(config) + 12 * config.n_layer * config.block_size * config.n_embd


def gpt2_init_(module: nn.Module, n_residual: int) -> None:
    """GPT-2 initialisation, in place: Linear and Embedding weights N(0, 0.02^2), biases 0, and the
    projections into the residual stream (``*proj.weight``) N(0, (0.02 / sqrt(n_residual))^2).

    Each of the ``n_residual`` sublayers adds to the stream; scaling their output weights by
    1/sqrt(n_residual) keeps the variance of the sum independent of depth.
    """
    check_instance(module, nn.Module, "module")
    check_positive_int(n_residual, "n_residual")
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding, LearnedPositionalEmbedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
    for name, p in module.named_parameters():
        if name.endswith("proj.weight"):
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(n_residual))


def xavier_init_(module: nn.Module) -> None:
    """The initialisation of the original transformer's code (tensor2tensor), in place: Linear weights
    Glorot-uniform (variance 2 / (fan_in + fan_out)), biases 0, embeddings N(0, 1/C).

    Every sublayer then adds an output as large as its input, which post-norm blocks cannot absorb
    without learning-rate warmup; the chapter compares it with :func:`gpt2_init_`.
    """
    check_instance(module, nn.Module, "module")
    for m in module.modules():
        if isinstance(m, (nn.Embedding, LearnedPositionalEmbedding)):
            nn.init.normal_(m.weight, mean=0.0, std=m.weight.shape[1] ** -0.5)
    for m in module.modules():  # after the embeddings: a tied head keeps the embedding's values
        if isinstance(m, nn.Linear) and not any(m.weight is e.weight for e in module.modules()
                                                if isinstance(e, nn.Embedding)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


IGNORE_INDEX = -100  # a target left out of the loss (F.cross_entropy's default ignore_index)


# ---------------------------------------------------------------------------- the model
class GPT(nn.Module):
    """Decoder-only transformer language model.

    Parameters: ``token_embedding`` (V, C), ``position_embedding`` (block_size, C) for learned
    positions, ``blocks`` (L causal :class:`~mathllm.layers.Block`), ``norm_f`` and ``lm_head``
    (C -> V, no bias, its weight tied to the token embedding by default).

    Book: :doc:`/notebooks/11_transformer`
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        check_instance(config, GPTConfig, "config")
        self.config = c = config
        # the embeddings of chapter 09: the lookup E[idx] and a learned table of positions
        self.token_embedding = TokenEmbedding(c.vocab_size, c.n_embd)
        self.position_embedding = LearnedPositionalEmbedding(c.block_size, c.n_embd) if c.positions == "learned" else None
        if c.positions == "sinusoidal":
            self.register_buffer("sinusoid", sinusoidal_encoding(c.block_size, c.n_embd), persistent=False)
        rope = RoPE(c.n_embd // c.n_head, max_len=c.block_size, base=c.rope_theta) if c.positions == "rope" else None
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            Block(c.n_embd, c.n_head, causal=True, mlp=c.mlp, norm=c.norm, prenorm=c.prenorm, bias=c.bias,
                  dropout=c.dropout, attn_impl=c.attn_impl, rope=rope) for _ in range(c.n_layer))
        if c.d_ff is not None:  # Block builds the default width; give each block an MLP of width d_ff
            for block in self.blocks:
                block.mlp = FeedForward(c.n_embd, kind=c.mlp, hidden=c.d_ff, bias=c.bias, dropout=c.dropout)
        # post-norm blocks end in a norm already; pre-norm leaves the stream unnormalised
        self.norm_f = make_norm(c.norm, c.n_embd, bias=c.bias) if c.prenorm else nn.Identity()
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        gpt2_init_(self, n_residual=2 * c.n_layer)
        if c.tie_weights:
            self.lm_head.weight = self.token_embedding.weight  # one (V, C) matrix, read and written

    @classmethod
    def from_pretrained(cls, name_or_path: str = "gpt2") -> "GPT":
        """GPT-2 with OpenAI's weights: ``"gpt2"`` (124M), ``"gpt2-medium"`` (355M), ``"gpt2-large"`` (774M),
        ``"gpt2-xl"`` (1.5B) from the Hugging Face Hub (cached by ``transformers``), or the path of a folder
        written by ``save_pretrained``. In eval mode; see :mod:`mathllm.gpt2_weights`.

        Book: :doc:`/notebooks/11_transformer`
        """
        from .gpt2_weights import load_pretrained_gpt2  # needs transformers, imported only here
        return load_pretrained_gpt2(name_or_path)

    # ------------------------------------------------------------------ counting
    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters (a tied matrix once). ``non_embedding``: leave out the lookup-only tables, that is,
        the position embedding and, when the head is untied, the token embedding (nanoGPT's convention)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            if self.position_embedding is not None:
                n -= self.position_embedding.weight.numel()
            if not self.config.tie_weights:
                n -= self.token_embedding.weight.numel()
        return n

    def flops_per_token(self) -> int:
        """Forward + backward matmul FLOPs per token at full context, :func:`flops_per_token` of the config."""
        return flops_per_token(self.config)

    # ------------------------------------------------------------------ forward
    def _check_idx(self, idx: torch.Tensor, offset: int = 0) -> tuple[int, int]:
        B, T = check_shape(idx, "B T", name="idx")
        if B == 0 or T == 0:
            raise ValueError(f"idx must hold at least one token, got shape {tuple(idx.shape)}")
        if offset + T > self.config.block_size:
            raise ValueError(f"cannot forward positions {offset}..{offset + T - 1}: the sequence of length "
                             f"{offset + T} is longer than block_size={self.config.block_size}")
        # on a GPU the check would synchronise every step (CUDA asserts on its own); under
        # torch.compile its .item() would split the graph (the embedding still raises on a bad id)
        if not idx.is_cuda and not torch.compiler.is_compiling():
            check_ids(idx, self.config.vocab_size, name="idx")
        return B, T

    def _check_targets(self, targets: torch.Tensor, B: int, T: int) -> None:
        """targets: (B, T) integer ids in [0, V), or IGNORE_INDEX for a position left out of the loss."""
        check_tensor(targets, "targets")
        if targets.dtype not in (torch.int64, torch.int32, torch.int16):
            raise TypeError(f"targets must be an integer tensor of token ids, got dtype {str(targets.dtype).replace('torch.', '')}")
        if tuple(targets.shape) != (B, T):
            raise ValueError(f"targets must have the shape of idx (B, T) = ({B}, {T}), got {tuple(targets.shape)}")
        if targets.is_cuda or torch.compiler.is_compiling():  # no sync, no graph break: as in _check_idx
            return
        kept = targets[targets != IGNORE_INDEX]
        if kept.numel() == 0:  # the mean over no tokens is 0/0: F.cross_entropy would return nan
            raise ValueError(f"targets hold no token to predict: every entry is ignore_index={IGNORE_INDEX}")
        lo, hi = int(kept.min()), int(kept.max())
        if lo < 0 or hi >= self.config.vocab_size:
            raise ValueError(f"targets holds token id {lo if lo < 0 else hi}, outside the vocabulary "
                             f"[0, {self.config.vocab_size}) and not ignore_index={IGNORE_INDEX}")

    def _embed(self, idx: torch.Tensor, offset: int = 0) -> torch.Tensor:
        T = idx.shape[1]
        x = self.token_embedding(idx)  # (B, T) -> (B, T, C)
        if self.position_embedding is not None:
            x = x + self.position_embedding(T, offset)  # + (T, C): rows offset .. offset + T - 1
        elif self.config.positions == "sinusoidal":
            x = x + self.sinusoid[offset:offset + T]  # + (T, C)
        return self.drop(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """``idx`` (B, T) int64 token ids, ``targets`` (B, T) or None -> ``(logits (B, T, V), loss)``.

        ``loss`` is the mean cross-entropy of the next-token predictions in nats, or None. A target
        equal to ``IGNORE_INDEX`` (-100, torch's default) is left out of the mean; targets with no
        other entry raise ValueError (on a GPU or under torch.compile, unchecked, the loss is nan).
        """
        B, T = self._check_idx(idx)
        if targets is not None:
            self._check_targets(targets, B, T)
        x = self._embed(idx)  # (B, T, C)
        for block in self.blocks:
            x = block(x)  # (B, T, C) -> (B, T, C)
        logits = self.lm_head(self.norm_f(x))  # (B, T, C) x (C, V) -> (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1).long(),
                               ignore_index=IGNORE_INDEX)  # (B*T, V), (B*T,)
        return logits, loss

    # ------------------------------------------------------------------ generation
    @property
    def block_size(self) -> int:
        """The context length, for :func:`mathllm.generate.generate`."""
        return self.config.block_size

    def new_kv_caches(self) -> list[KVCache]:
        """One empty :class:`~mathllm.attention.KVCache` per layer."""
        return [KVCache() for _ in self.blocks]

    def next_logits(self, idx: torch.Tensor, kv_caches: list[KVCache] | None = None) -> torch.Tensor:
        """Logits (B, V) for the token after ``idx`` (B, T).

        With ``kv_caches`` (from :meth:`new_kv_caches`) ``idx`` holds only the tokens not yet
        cached; they sit at positions ``S .. S + T - 1``, S the cached length, and are appended.
        """
        offset = 0 if kv_caches is None else kv_caches[0].length
        self._check_idx(idx, offset)
        x = self._embed(idx, offset)  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, kv_cache=None if kv_caches is None else kv_caches[i])
        return self.lm_head(self.norm_f(x[:, -1]))  # only the last position: (B, C) x (C, V) -> (B, V)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, use_cache: bool = True, generator: torch.Generator | None = None):
        """Continue ``idx`` (B, T) by ``max_new_tokens`` sampled tokens -> (B, T + max_new_tokens).

        ``temperature=0`` is greedy decoding; see :func:`mathllm.generate.generate`.
        """
        return generate(self, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        use_cache=use_cache, generator=generator)
