"""Training from the command line: ``python -m mathllm.train`` (also installed as ``mathllm-train``).

``python -m mathllm.train --preset shakespeare_char --max_steps 1000``: a preset sets every field of
:class:`TrainConfig` and of :class:`mathllm.transformer.GPTConfig`, and every field is an option
that overrides it. ``--help`` lists them with the comments of the dataclasses, each with its
default (the chosen preset's value: ``--preset gpt2_small --help`` shows that preset's) and its
choices. Besides the fields: ``--init_from scratch|resume|gpt2|...|PATH`` (``--resume`` is the same as
``--init_from resume``; ``gpt2``, ``gpt2-medium``, ``gpt2-large``, ``gpt2-xl`` or a folder written by
Hugging Face's ``save_pretrained`` fine-tune GPT-2 with GPT-2's tokenizer), ``--eval_only`` (evaluate
the initial weights and exit) and ``--print_config``. Under ``torchrun`` every process runs the same command (DDP); ``grad_accum``
counts micro-batches over all processes.

A configuration error (a bad value, a missing file, an unavailable device, a full disk, a
diverged loss) ends with one line ``error: ...`` on stderr and a non-zero exit status: 2 for a
bad command line, 1 for everything found later.

The pieces live in modules of their own, one concept each, and every name below is importable
from here as well (and documented here): ``mathllm.train_config`` (:class:`TrainConfig`,
``PRESETS``), ``mathllm.trainer`` (:class:`Trainer`, the optimizer and step helpers) and
``mathllm.train_log`` (``metrics.jsonl``, ``metrics.csv``, the printed lines, :func:`plot_metrics`).

Book: :doc:`/notebooks/12_training`
"""
from __future__ import annotations

import argparse
import difflib
import inspect
import json
import re
import sys
import typing
from dataclasses import fields

from . import distributed, runtime
from .data import CORPORA, ORDERS
from .train_config import (DTYPES, INIT_FROM, OPTIMIZERS, PRESET_NOTES, PRESETS, TRAIN_TOKENIZERS,  # noqa: F401
                           TrainConfig, config_from_dict, config_to_dict, pretrained_source, resume_differences)
from .train_log import format_record, plot_metrics  # noqa: F401
from .trainer import (PEAK_FLOPS, Trainer, TrainingDiverged, compile_or_eager, grad_norm,  # noqa: F401
                      make_optimizer, mfu, param_groups, peak_flops)
from .transformer import GPT, GPTConfig  # noqa: F401

__all__ = ["DTYPES", "OPTIMIZERS", "PEAK_FLOPS", "PRESETS", "TrainConfig", "Trainer", "TrainingDiverged",
           "build_parser", "compile_or_eager", "config_from_dict", "config_to_dict", "field_comments",
           "make_optimizer", "main", "mfu", "param_groups", "parse_config", "peak_flops", "plot_metrics"]

CHOICES = {"dataset": CORPORA, "tokenizer": TRAIN_TOKENIZERS, "data_order": ORDERS, "dtype": tuple(DTYPES),
           "optimizer": OPTIMIZERS, "backend": distributed.BACKENDS}
CLI_DEFAULTS = {"log_lines": True}  # the command line prints a line per report unless told not to
DEFAULT_PRESET = "tiny"


# ---------------------------------------------------------------------------- the parser
def field_comments(cls) -> dict[str, str]:
    """``{field: comment}`` read from the ``name: type = default  # comment`` lines of a dataclass."""
    out = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+)\s*:[^#]*#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional(kind):
    """The argument type of a field typed ``X | None``: ``none`` (or nothing) is None, anything else an X."""
    def convert(text: str):
        return None if text.strip().lower() in ("", "none") else kind(text)
    convert.__name__ = kind.__name__  # argparse names the type in its error messages
    return convert


def _options(cls, skip=()):
    hints, comments = typing.get_type_hints(cls), field_comments(cls)
    for f in fields(cls):
        if f.name not in skip:
            yield f.name, hints[f.name], comments.get(f.name, "")


def build_parser(preset: str = DEFAULT_PRESET) -> argparse.ArgumentParser:
    """The ``python -m mathllm.train`` parser: ``--preset`` and one option per config field, each with
    the value of ``preset`` as its default (shown by ``--help``)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(sorted(PRESETS))}, got {preset!r}")
    parser = argparse.ArgumentParser(
        prog="python -m mathllm.train", description="Train a GPT. A preset sets every field; options override it. "
                                                    "Defaults shown are those of the chosen --preset.",
        epilog="Under torchrun every process runs this same command (DDP); grad_accum counts micro-batches over "
               "all processes and must be a multiple of their number.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False)
    notes = "; ".join(f"{name}: {PRESET_NOTES[name]}" for name in PRESETS).replace("%", "%%")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=preset, help=f"named configuration ({notes})")
    parser.add_argument("--eval_only", action="store_true", help="evaluate the initial (or resumed) weights and exit")
    parser.add_argument("--print_config", action="store_true", help="print the resolved configuration and exit")
    base = PRESETS[preset]()
    defaults = {**config_to_dict(base), **config_to_dict(base)["model"], **CLI_DEFAULTS}
    for cls, title, skip in ((TrainConfig, "training (TrainConfig)", ("model",)), (GPTConfig, "model (GPTConfig)", ())):
        group = parser.add_argument_group(title)
        for name, kind, comment in _options(cls, skip):
            help_text = comment.replace("%", "%%")
            args = typing.get_args(kind)
            if type(None) in args and len(args) == 2:  # X | None: "none" gives None
                kind = _optional(next(a for a in args if a is not type(None)))
                help_text += " (none: None)"
            if kind is bool:
                group.add_argument(f"--{name}", type=_parse_bool, nargs="?", const=True, default=defaults[name],
                                   metavar="BOOL", help=help_text)
            elif name == "init_from":
                group.add_argument(f"--{name}", default=defaults[name], metavar="|".join(INIT_FROM) + "|PATH",
                                   help=help_text)
            else:
                group.add_argument(f"--{name}", type=kind, default=defaults[name], choices=CHOICES.get(name),
                                   metavar=kind.__name__.upper() if name not in CHOICES else None, help=help_text)
    return parser


def parse_config(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """The TrainConfig of a command line: the preset, then each option given; errors exit with a message."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--preset", default=DEFAULT_PRESET)
    known, _ = pre.parse_known_args(argv)
    parser = build_parser(known.preset if known.preset in PRESETS else DEFAULT_PRESET)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        known_options = [a for action in parser._actions for a in action.option_strings]
        hints = []
        options = [u for u in unknown if u.startswith("-")]  # the rest are their values, or stray words
        for u in options or unknown:
            close = difflib.get_close_matches(u.split("=")[0], known_options, n=1) if u.startswith("-") else []
            hints.append(f"{u} (did you mean {close[0]}?)" if close else u)
        parser.error(f"unknown {'option(s)' if options else 'argument(s)'}: {', '.join(hints)}; see --help")
    values = vars(args)
    model_fields = {f.name for f in fields(GPTConfig)}
    try:
        model = GPTConfig(**{k: values[k] for k in model_fields})
        config = TrainConfig(model=model, **{f.name: values[f.name] for f in fields(TrainConfig) if f.name != "model"})
    except (ValueError, TypeError) as e:
        parser.error(f"invalid configuration: {e}")
    if not config.out_dir:
        parser.error("invalid configuration: out_dir must name a folder (checkpoints and metrics go there); "
                     "got ''")
    return config, args


# ---------------------------------------------------------------------------- the command
def data_line(trainer: Trainer) -> str:
    """``data tinyshakespeare | tokenizer gpt2 (50,257 tokens) | vocab 50,304``: what the run reads."""
    c = trainer.config
    corpus = c.data_path if c.dataset == "file" else c.dataset
    tok = c.tokenizer + (f" {c.bpe_vocab_size}" if c.tokenizer == "bpe" else "")
    tok = "markov symbols" if c.dataset == "markov" else tok
    weights = f" | weights {trainer.pretrained}" if trainer.pretrained else ""
    return (f"data {corpus} | tokenizer {tok} ({trainer.data.vocab_size:,} tokens) | "
            f"vocab {trainer.model_config.vocab_size:,}{weights}")


def _error(e: BaseException) -> int:
    print(f"error: {' '.join(str(e).split()) or type(e).__name__}", file=sys.stderr, flush=True)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m mathllm.train`` and ``mathllm-train``. Returns the exit status."""
    config, args = parse_config(argv)
    if args.print_config:
        print(json.dumps(config_to_dict(config), indent=1))
        return 0
    try:
        try:  # everything found before the first step is a configuration error: one line, no traceback
            describe = runtime.describe()
            trainer = Trainer(config)
        except (ValueError, OSError, RuntimeError, ImportError) as e:
            return _error(e)
        info = trainer.dist
        distributed.print0(f"{describe} | dtype {str(trainer.dtype).replace('torch.', '')} | "
                           f"compiled {trainer.compiled} | processes {info.world_size} | {data_line(trainer)}",
                           info=info)
        distributed.print0(f"model: {trainer.model.num_params():,} parameters | "
                           f"{trainer.tokens_per_step:,} tokens per step", info=info)
        try:
            if args.eval_only:
                result = trainer.evaluate() if info.is_main else None  # rank 0 evaluates
            else:
                result = trainer.train()
        except (ValueError, OSError, TrainingDiverged) as e:
            return _error(e)
    finally:
        distributed.cleanup()
    if result is not None:
        distributed.print0(json.dumps(result), info=info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
