"""What a training run reports: ``metrics.jsonl``, ``metrics.csv``, one printed line per report, the loss figure,
and, optionally, TensorBoard event files.

Every logged record is a dict with ``kind`` (``"train"``, ``"eval"`` or ``"sample"``) and
``step``. :class:`MetricsLog` appends each one as a JSON line to ``metrics.jsonl`` and, for train
and eval records, as a row of ``metrics.csv`` (fixed columns, for a spreadsheet). The timing fields
(:data:`TIMING_KEYS`) are the only ones that differ between two runs of the same configuration.

Resuming at step s keeps exactly the records of steps <= s (a checkpoint of step s is written
after every record of step s) and drops the rest, which the resumed run writes again; starting at
step 0 starts both files afresh. Both files are rewritten atomically (a temporary file, then
``os.replace``), so a process killed meanwhile leaves the old file or the new one.

:class:`TensorBoardLog` (``tensorboard=True``; ``pip install 'mathllm[tensorboard]'``) writes the
scalars of the same records (:data:`TENSORBOARD_TAGS`) with ``torch.utils.tensorboard.SummaryWriter``
into ``out_dir``: ``tensorboard --logdir out_dir`` shows them. Event files are append-only, so a
resumed run cannot cut them; it opens its writer with ``purge_step``, which tells TensorBoard to
discard the events of the steps the run writes again, exactly the records ``metrics.jsonl`` drops.

Book: :doc:`/notebooks/12_training`
"""
from __future__ import annotations

import csv
import io
import json
import math
import pathlib

from .checkpoint import write_atomic

TIMING_KEYS = ("tokens_per_s", "ms_per_step", "mfu")  # wall-clock figures: they differ from run to run
CSV_COLUMNS = ("kind", "step", "loss", "val_loss", "train_loss", "lr", "grad_norm", "ms_per_step", "tokens_per_s",
               "mfu")
METRICS_FILES = ("metrics.jsonl", "metrics.csv")
# (kind, key of the record) -> TensorBoard tag: the scalars of metrics.jsonl, the gradient norm before clipping
TENSORBOARD_TAGS = {("train", "loss"): "train/loss", ("train", "lr"): "train/lr",
                    ("train", "grad_norm"): "train/grad_norm", ("train", "tokens_per_s"): "train/tokens_per_s",
                    ("eval", "val_loss"): "eval/val_loss", ("eval", "train_loss"): "eval/train_loss"}


def read_records(path: str | pathlib.Path) -> list[dict]:
    """The records of a ``metrics.jsonl``; a line cut short by a killed process is skipped."""
    path = pathlib.Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record:
            out.append(record)
    return out


def _csv_text(records, header: bool) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(r for r in records if r.get("kind") in ("train", "eval"))
    return buf.getvalue()


class MetricsLog:
    """``metrics.jsonl`` and ``metrics.csv`` in ``directory`` (nothing is written when it is None)."""

    def __init__(self, directory: str | pathlib.Path | None):
        self.directory = None if directory is None else pathlib.Path(directory)

    @property
    def jsonl(self) -> pathlib.Path:
        return self.directory / "metrics.jsonl"

    @property
    def csv(self) -> pathlib.Path:
        return self.directory / "metrics.csv"

    def truncate(self, step: int) -> int:
        """Keep the records of steps <= ``step`` (none when ``step`` is 0); rewrite both files atomically.

        Returns the number of records dropped.
        """
        if self.directory is None or not self.jsonl.is_file() and not self.csv.is_file():
            return 0
        kept = [r for r in read_records(self.jsonl) if step > 0 and r["step"] <= step]
        dropped = sum(1 for line in self.jsonl.read_text().splitlines() if line.strip()) - len(kept) \
            if self.jsonl.is_file() else 0
        text = "".join(json.dumps(r) + "\n" for r in kept)
        write_atomic(self.jsonl, lambda f: f.write(text.encode()))
        table = _csv_text(kept, header=True)
        write_atomic(self.csv, lambda f: f.write(table.encode()))
        return dropped

    def append(self, record: dict) -> None:
        """Append ``record`` to ``metrics.jsonl`` (and a row to ``metrics.csv`` for train and eval records)."""
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")
        if record.get("kind") in ("train", "eval"):
            header = not self.csv.is_file() or self.csv.stat().st_size == 0
            with open(self.csv, "a", newline="") as f:
                f.write(_csv_text([record], header=header))


class TensorBoardLog:
    """The scalars of train and eval records as TensorBoard events in ``directory``.

    ``purge_step``: the first step this run writes; TensorBoard discards the events of earlier runs
    in the same folder from that step on (0: all of them, as a run from step 0 starts metrics.jsonl
    afresh). The writer opens at the first record and :meth:`close` flushes and closes it; a record
    after ``close`` opens a new one that purges nothing.
    """

    def __init__(self, directory: str | pathlib.Path, purge_step: int | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard, an optional dependency
        except ImportError as e:
            raise ImportError("tensorboard=True needs the tensorboard package: "
                              "pip install 'mathllm[tensorboard]' (or pip install tensorboard)") from e
        self._writer_class = SummaryWriter
        self.directory, self.purge_step, self.writer = pathlib.Path(directory), purge_step, None

    def append(self, record: dict) -> None:
        """Write the scalars of ``record`` (see :data:`TENSORBOARD_TAGS`) at its step; other kinds are skipped."""
        scalars = {tag: record[key] for (kind, key), tag in TENSORBOARD_TAGS.items()
                   if record.get("kind") == kind and record.get(key) is not None}
        if not scalars:
            return
        if self.writer is None:
            self.writer = self._writer_class(str(self.directory), purge_step=self.purge_step)
            self.purge_step = None  # purge once, when this run's first event is written
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def format_record(record: dict, max_steps: int) -> str | None:
    """The printed line of a train or eval record (None for other kinds)::

        step   100/2000 | loss 2.4512 | lr 3.00e-03 | grad norm 0.812 | 41.2 ms/step | 4,660 tok/s
        step   250/2000 | eval | val loss 2.1033 | train loss 2.0517 | val ppl 8.19
    """
    width = len(str(max_steps))
    head = f"step {record['step']:>{width}}/{max_steps}"
    if record.get("kind") == "train":
        parts = [head, f"loss {record['loss']:.4f}", f"lr {record['lr']:.2e}"]
        if record.get("grad_norm") is not None:
            parts.append(f"grad norm {record['grad_norm']:.3f}")
        parts += [f"{record['ms_per_step']:.1f} ms/step", f"{record['tokens_per_s']:,.0f} tok/s"]
        if record.get("mfu") is not None:
            parts.append(f"MFU {record['mfu']:.1%}")
        return " | ".join(parts)
    if record.get("kind") == "eval":
        ppl = record.get("val_perplexity", math.nan)
        return " | ".join([head, "eval", f"val loss {record['val_loss']:.4f}", f"train loss {record['train_loss']:.4f}",
                           f"val ppl {ppl:.2f}"])
    return None


def plot_metrics(path: str | pathlib.Path, *, title: str = "training"):
    """A figure of the train and validation losses in a ``metrics.jsonl``; returns the Figure.

    Uses ``matplotlib.figure.Figure`` directly, so saving needs no display backend.
    """
    from matplotlib.figure import Figure
    rows = read_records(path)
    train = [(r["step"], r["loss"]) for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train), lw=0.8, alpha=0.7, label="train (logged mini-batches)")
    if evals:
        ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="validation")
    ax.set(xlabel="optimizer step", ylabel="cross-entropy (nats per token)", title=title)
    ax.legend()
    fig.tight_layout()
    return fig
