"""Benchmark mathllm's byte-level BPE on Tiny Shakespeare, against Hugging Face ``tokenizers``.

Measures, best of ``--repeats`` runs each:

* training time (pre-tokenization included) for vocabularies of 512, 1024 and 4096, and for a
  500-token vocabulary on the first 130 KB; optionally the naive trainer on that 130 KB;
* encoding throughput in MB/s of UTF-8 input: a fresh tokenizer (empty pre-token cache), a
  second pass (warm cache) and ``encode_iterable`` over the lines of the text;
* the same for Hugging Face ``tokenizers`` (Rust, multithreaded) with the same GPT-2
  pre-tokenizer, and the compression ratio (bytes per token) of both on the same text;
* with ``--gpt2 FOLDER`` (GPT-2's ``vocab.json`` and ``merges.txt``): encoding Tiny Shakespeare with
  GPT-2's real vocabulary, mathllm against ``tiktoken`` and Hugging Face ``tokenizers`` built from
  the same files, and whether the three give identical ids.

Run from the repository root::

    MATHLLM_DATA_DIR=/path/to/data python benchmarks/bpe_benchmark.py [--repeats 3] [--naive]
    python benchmarks/bpe_benchmark.py --gpt2 ../shared/data/gpt2 --only-gpt2

Prints a Markdown table; the figures measured for the book are in benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

from mathllm.bpe import BPETokenizer
from mathllm.corpus import load_text


def best_time(fn, repeats: int):
    """(seconds of the fastest run, result of the last run)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def hf_tokenizer(text: str, vocab_size: int):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text], trainer)
    return tok


def gpt2_references(folder: str):
    """tiktoken's GPT-2 encoding and a Hugging Face BPE tokenizer, both from ``folder``'s files (no download)."""
    import json

    import tiktoken
    from tokenizers import Tokenizer, models, pre_tokenizers

    from mathllm.gpt2_tokenizer import token_bytes
    from mathllm.pretokenize import GPT2_SPLIT_PATTERN
    with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    ranks = {token_bytes(t): i for t, i in vocab.items() if t != "<|endoftext|>"}
    tik = tiktoken.Encoding(name="gpt2-offline", pat_str=GPT2_SPLIT_PATTERN, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": vocab["<|endoftext|>"]})
    hf = Tokenizer(models.BPE.from_file(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return tik, hf


def gpt2_encode_table(text: str, folder: str, repeats: int) -> None:
    """Encoding MB/s with GPT-2's vocabulary: mathllm, tiktoken, HF tokenizers; identical ids or not."""
    n_bytes = len(text.encode("utf-8"))
    lines = text.splitlines(keepends=True)
    vocab, merges = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    t_load, ours = best_time(lambda: BPETokenizer.from_files(vocab, merges), 1)
    t_cold, ids = best_time(lambda: BPETokenizer.from_files(vocab, merges).encode(text), repeats)
    t_cold -= t_load  # the fresh tokenizer's first pass, without reading the files
    t_warm, _ = best_time(lambda: ours.encode(text), repeats)
    t_iter, _ = best_time(lambda: list(ours.encode_iterable(lines)), repeats)
    tik, hf = gpt2_references(folder)
    t_tik, ids_tik = best_time(lambda: tik.encode_ordinary(text), repeats)
    t_hf, ids_hf = best_time(lambda: hf.encode(text).ids, repeats)
    t_hf_batch, _ = best_time(lambda: hf.encode_batch(lines), repeats)
    print(f"\n| encode with GPT-2's vocabulary (50,257), full text: {len(ids):,} tokens | MB/s |")
    print("|---|---|")
    print(f"| mathllm `encode`, fresh tokenizer (cold cache; reading the files took {t_load:.2f} s) | {n_bytes / t_cold / 1e6:.2f} |")
    print(f"| mathllm `encode`, second pass (warm cache) | {n_bytes / t_warm / 1e6:.2f} |")
    print(f"| mathllm `encode_iterable` over lines (warm cache) | {n_bytes / t_iter / 1e6:.2f} |")
    print(f"| tiktoken `encode_ordinary`, whole text | {n_bytes / t_tik / 1e6:.2f} |")
    print(f"| HF `encode`, whole text as one string | {n_bytes / t_hf / 1e6:.2f} |")
    print(f"| HF `encode_batch` over lines | {n_bytes / t_hf_batch / 1e6:.2f} |")
    print(f"\nids identical: tiktoken {ids == ids_tik}, HF tokenizers {ids == ids_hf}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the fastest is kept")
    parser.add_argument("--vocab-sizes", type=int, nargs="+", default=[512, 1024, 4096])
    parser.add_argument("--naive", action="store_true", help="also time the naive trainer on 130 KB")
    parser.add_argument("--gpt2", metavar="FOLDER", help="folder with GPT-2's vocab.json and merges.txt: "
                        "also time encoding with GPT-2's vocabulary against tiktoken and HF tokenizers")
    parser.add_argument("--only-gpt2", action="store_true", help="only the GPT-2 table (needs --gpt2)")
    args = parser.parse_args(argv)
    if args.only_gpt2 and not args.gpt2:
        parser.error("--only-gpt2 needs --gpt2 FOLDER")

    text = load_text("tinyshakespeare")
    if args.only_gpt2:
        gpt2_encode_table(text, args.gpt2, args.repeats)
        return
    n_bytes = len(text.encode("utf-8"))
    small = text[:130_000]
    try:
        import tokenizers
    except ImportError:
        tokenizers = None
    print(f"Tiny Shakespeare: {n_bytes:,} bytes | {platform.processor() or platform.machine()} | "
          f"{os.cpu_count()} CPUs | Python {platform.python_version()} | "
          f"tokenizers {tokenizers.__version__ if tokenizers else 'not installed'} | best of {args.repeats}\n")

    print("| task | mathllm (s) | HF tokenizers (s) | mathllm bytes/token | HF bytes/token |")
    print("|---|---|---|---|---|")
    tasks = [(f"train vocab {v}, full text", text, v) for v in args.vocab_sizes]
    tasks.append(("train vocab 500, first 130 KB", small, 500))
    trained = {}
    for name, data, v in tasks:
        t_ours, ours = best_time(lambda: BPETokenizer.train(data, v), args.repeats)
        trained[(name, v)] = ours
        row = f"| {name} | {t_ours:.2f} |"
        if tokenizers and data is text:
            t_hf, hf = best_time(lambda: hf_tokenizer(data, v), args.repeats)
            ratio_ours = n_bytes / len(ours.encode(text))
            ratio_hf = n_bytes / len(hf.encode(text).ids)
            row += f" {t_hf:.2f} | {ratio_ours:.3f} | {ratio_hf:.3f} |"
        elif tokenizers:
            t_hf, _ = best_time(lambda: hf_tokenizer(data, v), args.repeats)
            row += f" {t_hf:.2f} | | |"
        else:
            row += " | | |"
        print(row)
    if args.naive:
        t_naive, naive = best_time(lambda: BPETokenizer.train(small, 500, algorithm="naive"), 1)
        same = naive.merges == BPETokenizer.train(small, 500).merges
        print(f"| train vocab 500, first 130 KB, naive algorithm (same merges: {same}) | {t_naive:.2f} | | | |")

    tok = BPETokenizer.train(text, 1024)
    lines = text.splitlines(keepends=True)
    t_cold, _ = best_time(lambda: BPETokenizer(tok.merges).encode(text), args.repeats)
    t_warm, _ = best_time(lambda: tok.encode(text), args.repeats)
    t_iter, _ = best_time(lambda: list(tok.encode_iterable(lines)), args.repeats)
    print("\n| encode, vocab 1024, full text | MB/s |")
    print("|---|---|")
    print(f"| mathllm `encode`, fresh tokenizer (cold cache) | {n_bytes / t_cold / 1e6:.2f} |")
    print(f"| mathllm `encode`, second pass (warm cache) | {n_bytes / t_warm / 1e6:.2f} |")
    print(f"| mathllm `encode_iterable` over lines (warm cache) | {n_bytes / t_iter / 1e6:.2f} |")
    if tokenizers:
        hf = hf_tokenizer(text, 1024)
        t_hf, _ = best_time(lambda: hf.encode(text), args.repeats)
        t_hf_batch, _ = best_time(lambda: hf.encode_batch(lines), args.repeats)
        print(f"| HF `encode`, whole text as one string | {n_bytes / t_hf / 1e6:.2f} |")
        print(f"| HF `encode_batch` over lines | {n_bytes / t_hf_batch / 1e6:.2f} |")
    if args.gpt2:
        gpt2_encode_table(text, args.gpt2, args.repeats)


if __name__ == "__main__":
    main()
