"""Generate text from a training checkpoint: ``python -m mathllm.sample --checkpoint out``.

The checkpoint carries the model configuration and the tokenizer, so nothing else is needed.
``--checkpoint`` is a file or a folder (its newest checkpoint). Sampling uses
:meth:`mathllm.transformer.GPT.generate` (temperature, top-k, top-p, a KV cache) with its own
seeded generator, so the same command prints the same text.

Leaves out: batching many prompts, streaming output, stop sequences.

Book: :doc:`/notebooks/12_training`
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import torch

from . import runtime
from .checkpoint import latest_checkpoint, load_checkpoint
from .bpe import BPETokenizer
from .data import tokenizer_from_dict, tokenizer_to_dict
from .transformer import GPT, GPTConfig


def _training_order(tok: BPETokenizer) -> bool:
    """Byte b is id b and merge k makes id 256 + k: what ``BPETokenizer(merges)`` rebuilds from the merges alone."""
    v = tok.vocab
    return (all(v.get(i) == bytes([i]) for i in range(256))
            and all(v.get(256 + k) == v.get(a, b"?") + v.get(b, b"?") for k, (a, b) in enumerate(tok.merges)))


def tokenizer_state(tok) -> dict:
    """A tokenizer as JSON-able data for checkpoints. A BPE with a numbering of its own (GPT-2's, read
    by :meth:`~mathllm.bpe.BPETokenizer.from_files`) is stored with its vocabulary, id by id, so the ids survive;
    a character or trained BPE tokenizer as :func:`mathllm.data.tokenizer_to_dict` stores it."""
    if isinstance(tok, BPETokenizer) and not _training_order(tok):
        special = set(tok.special_ids.values())
        return {"type": "bpe_vocab", "merges": [list(p) for p in tok.merges], "special_tokens": dict(tok.special_ids),
                "vocab": [[i, b.hex()] for i, b in sorted(tok.vocab.items()) if i not in special]}
    return tokenizer_to_dict(tok)


def tokenizer_from_state(data: dict | None):
    """Inverse of :func:`tokenizer_state` (None stays None)."""
    if isinstance(data, dict) and data.get("type") == "bpe_vocab":
        return BPETokenizer([tuple(p) for p in data["merges"]], dict(data["special_tokens"]),
                            vocab={int(i): bytes.fromhex(h) for i, h in data["vocab"]})
    return tokenizer_from_dict(data)


def load_model(checkpoint: str | pathlib.Path, device: str | torch.device = "cpu"):
    """``(model in eval mode, tokenizer or None)`` from a checkpoint file or the newest one in a folder."""
    path = pathlib.Path(checkpoint)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"no checkpoint (ckpt_*.pt) in the folder {path}")
        path = found
    state = load_checkpoint(path)
    model = GPT(GPTConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), tokenizer_from_state(state.get("tokenizer"))


def generate_text(model: GPT, tokenizer, prompt: str = "\n", max_new_tokens: int = 200, *,
                  temperature: float = 0.8, top_k: int | None = 200, top_p: float | None = None,
                  seed: int = 0, num_samples: int = 1) -> list[str]:
    """``num_samples`` continuations of ``prompt`` (prompt included), decoded to text.

    Book: :doc:`/notebooks/12_training`
    """
    if tokenizer is None:
        raise ValueError("this checkpoint has no tokenizer (a corpus of raw ids): it cannot encode a text prompt")
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError("the prompt must encode to at least one token; an empty prompt has nothing to continue")
    device = next(model.parameters()).device
    idx = torch.tensor([ids] * num_samples, dtype=torch.long, device=device)  # (num_samples, T)
    generator = torch.Generator(device=device).manual_seed(seed)
    out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
    return [tokenizer.decode(row.tolist()) for row in out]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mathllm.sample", description="Generate text from a mathllm checkpoint.",
                                allow_abbrev=False)
    p.add_argument("--checkpoint", required=True, help="a ckpt_*.pt file or a folder holding them (the newest is used)")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--max_new_tokens", type=int, default=500, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=0.8, help="0 is greedy; 1 samples the model's distribution")
    p.add_argument("--top_k", type=int, default=200, help="sample among the k most likely tokens; 0 = all")
    p.add_argument("--top_p", type=float, default=None, help="nucleus sampling: the most likely tokens holding mass p")
    p.add_argument("--num_samples", type=int, default=1, help="independent samples")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m mathllm.sample`` and ``mathllm-sample``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        model, tokenizer = load_model(args.checkpoint, runtime.get_device(args.device))
        texts = generate_text(model, tokenizer, args.prompt, args.max_new_tokens, temperature=args.temperature,
                              top_k=args.top_k or None, top_p=args.top_p, seed=args.seed, num_samples=args.num_samples)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        parser.error(str(e))
    for i, text in enumerate(texts):
        if len(texts) > 1:
            print(f"--- sample {i} ---")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
