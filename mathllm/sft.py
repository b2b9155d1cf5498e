"""Supervised fine-tuning data: prompt-answer pairs as rows whose loss counts the answer only.

An instruction-tuning example is a prompt ``p_1 .. p_P`` and an answer ``a_1 .. a_A``. The model
reads the concatenation, and its next-token targets are the concatenation shifted by one, but
only the answer's tokens are targets: every position whose next token still belongs to the
prompt gets the target ``IGNORE_INDEX`` (-100, torch's ``ignore_index``), so the mean
cross-entropy of :func:`mathllm.losses.cross_entropy` is the answer's alone,

    L = -(1/A) sum_{j=1..A} log p(a_j | p_1 .. p_P, a_1 .. a_{j-1}).

This is *prompt masking* (prompt-loss masking), as in InstructGPT's supervised stage
(Ouyang et al. 2022) and most instruction tuning since: the prompt is given at inference, so
predicting it is not the task, and a fixed template costs the model nothing to learn while its
tokens would dilute the gradient of the answer. A batch holds one example per row, padded at
the end with ``pad_id`` inputs and ``IGNORE_INDEX`` targets; under the causal mask the padding
after an example changes nothing before it.

Leaves out: packing several examples into one row (it needs attention masks between them),
chat templates and special tokens, loss weights per example, the loss summed per row rather
than averaged per token (a choice that weights long answers differently).

Book: :doc:`/notebooks/15_fine_tuning`
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .checks import check_instance, check_positive_int
from .losses import cross_entropy
from .transformer import IGNORE_INDEX


# ---------------------------------------------------------------------------- rows
def _check_ids(ids, name: str) -> list[int]:
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1 or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise TypeError(f"{name} must be a 1-d sequence of int token ids, got a tensor of shape "
                            f"{tuple(ids.shape)} and dtype {str(ids.dtype).replace('torch.', '')}")
        ids = ids.tolist()
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise TypeError(f"{name} must be a sequence of int token ids, got {type(ids).__name__}")
    if not ids:
        raise ValueError(f"{name} must hold at least one token id, got an empty sequence")
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int) or i < 0:
            raise ValueError(f"{name} must hold non-negative int token ids, got {i!r}")
    return list(ids)


def sft_row(prompt: Sequence[int], answer: Sequence[int], length: int | None = None, *,
            pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One example as ``(x, y)``, each (length,) int64: inputs and next-token targets, prompt masked.

    With ``ids = prompt + answer`` (n tokens), ``x = ids[:-1]`` and ``y = ids[1:]``, except that
    ``y[t] = IGNORE_INDEX`` for ``t < len(prompt) - 1`` (those positions would predict prompt
    tokens): the first target kept is ``answer[0]``, predicted at the prompt's last position.
    ``length`` (default n - 1) pads both at the end, ``x`` with ``pad_id`` and ``y`` with
    ``IGNORE_INDEX``.
    """
    prompt, answer = _check_ids(prompt, "prompt"), _check_ids(answer, "answer")
    ids = prompt + answer
    n = len(ids) - 1  # positions that predict a next token
    length = n if length is None else check_positive_int(length, "length")
    if length < n:
        raise ValueError(f"length must be at least len(prompt) + len(answer) - 1 = {n}, got {length}")
    if isinstance(pad_id, bool) or not isinstance(pad_id, int) or pad_id < 0:
        raise ValueError(f"pad_id must be a non-negative int token id, got {pad_id!r}")
    x = torch.full((length,), pad_id, dtype=torch.long)
    y = torch.full((length,), IGNORE_INDEX, dtype=torch.long)
    x[:n] = torch.tensor(ids[:-1])
    P = len(prompt)
    y[P - 1:n] = torch.tensor(answer)  # y[t] = ids[t + 1]; kept from t = P - 1, the first answer token
    return x, y


def sft_rows(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], *,
             pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ``(prompt, answer)`` pair as a row of :func:`sft_row`, padded to the longest:
    ``x`` and ``y`` of shape (N, L), L = max(len(prompt) + len(answer)) - 1."""
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence) or not pairs:
        raise TypeError(f"pairs must be a non-empty sequence of (prompt ids, answer ids), got {pairs!r:.80}")
    for k, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"pairs[{k}] must be a (prompt ids, answer ids) pair, got {pair!r:.80}")
    L = max(len(_check_ids(p, "prompt")) + len(_check_ids(a, "answer")) for p, a in pairs) - 1
    rows = [sft_row(p, a, L, pad_id=pad_id) for p, a in pairs]
    return torch.stack([x for x, _ in rows]), torch.stack([y for _, y in rows])  # (N, L), (N, L)


def _check_rows(x, y) -> None:
    check_instance(x, torch.Tensor, "x")
    check_instance(y, torch.Tensor, "y")
    if x.dim() != 2 or x.shape != y.shape or x.is_floating_point() or y.is_floating_point():
        raise ValueError(f"x and y must be integer tensors of the same shape (N, L), got {tuple(x.shape)} "
                         f"{x.dtype} and {tuple(y.shape)} {y.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x and y must hold at least one row of one token, got shape {tuple(x.shape)}")
    if ((y != IGNORE_INDEX).sum(dim=1) == 0).any():
        raise ValueError(f"every row of y needs an answer token (a target other than {IGNORE_INDEX})")


# ---------------------------------------------------------------------------- batches
class SFTBatches:
    """Batches ``(x, y)`` of ``batch_size`` rows drawn uniformly, with replacement, from SFT rows.

    The interface of :class:`mathllm.data.Batches` (``next``, ``state_dict``,
    ``load_state_dict``), so :func:`mathllm.lora.fine_tune_trainer` can train on it. Its own
    seeded generator decides the rows; nothing else is random.

    Args:
        x, y: (N, L) rows of :func:`sft_rows`.
        batch_size: rows per batch.
        seed: seeds the generator.
        device: where the batches go.

    Book: :doc:`/notebooks/15_fine_tuning`
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, seed: int = 0,
                 device: str | torch.device = "cpu"):
        _check_rows(x, y)
        self.B = check_positive_int(batch_size, "batch_size")
        self.x, self.y = x.long().cpu(), y.long().cpu()
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch: ``x`` and ``y`` of shape (batch_size, L), int64 on ``device``."""
        i = torch.randint(len(self.x), (self.B,), generator=self.generator)  # (B,) row indices
        return self.x[i].to(self.device), self.y[i].to(self.device)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": "sft"}

    def load_state_dict(self, state: dict) -> None:
        if state.get("order") != "sft":
            raise ValueError(f"batch state is for order={state.get('order')!r}, not for SFT rows")
        self.generator.set_state(state["generator"])


# ---------------------------------------------------------------------------- measuring
@torch.no_grad()
def answer_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256) -> float:
    """Mean cross-entropy in nats per answer token of ``model`` on SFT rows ``x``, ``y`` (N, L).

    Every answer token of every row counts once (not the mean of per-row means); the model is
    put in eval mode for the measurement and its mode restored.
    """
    check_instance(model, torch.nn.Module, "model")
    _check_rows(x, y)
    check_positive_int(batch_size, "batch_size")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        logits = model(xb)[0]                                                    # (b, L, V)
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        total += cross_entropy(logits, yb, reduction="sum").item()              # ignore_index=-100: answers only
        count += int((yb != IGNORE_INDEX).sum())
    model.train(was_training)
    return total / count


@torch.no_grad()
def greedy_answers(model: torch.nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
    """The greedy continuation (``max_new_tokens`` ids) of each prompt, prompts of equal length
    decoded together in one batch."""
    check_instance(model, torch.nn.Module, "model")
    check_positive_int(max_new_tokens, "max_new_tokens")
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence) or not prompts:
        raise TypeError("prompts must be a non-empty sequence of token-id sequences")
    prompts = [_check_ids(p, "prompt") for p in prompts]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[list[int] | None] = [None] * len(prompts)
    for n in sorted({len(p) for p in prompts}):
        rows = [k for k, p in enumerate(prompts) if len(p) == n]
        idx = torch.tensor([prompts[k] for k in rows], device=device)            # (b, n)
        new = model.generate(idx, max_new_tokens, temperature=0.0)[:, n:]        # (b, max_new_tokens)
        for k, ids in zip(rows, new.tolist()):
            out[k] = ids
    model.train(was_training)
    return out


def exact_match(predicted: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]) -> float:
    """The fraction of predictions that begin with their answer's ids (what follows is not read)."""
    for name, seqs in (("predicted", predicted), ("answers", answers)):
        if isinstance(seqs, (str, bytes)) or not isinstance(seqs, Sequence):
            raise TypeError(f"{name} must be a sequence of token-id sequences, got {type(seqs).__name__}")
    predicted = [_check_ids(p, "predicted[i]") for p in predicted]
    answers = [_check_ids(a, "answers[i]") for a in answers]
    if len(predicted) != len(answers) or not answers:
        raise ValueError(f"predicted and answers must be non-empty and of equal length, "
                         f"got {len(predicted)} and {len(answers)}")
    hits = sum(p[:len(a)] == a for p, a in zip(predicted, answers))
    return hits / len(answers)
