"""What training a transformer costs in memory and communication, per device, under each layout.

Mixed-precision training with Adam keeps, per parameter (Rajbhandari et al. 2020, ZeRO, section 3.1):
2 bytes of fp16/bf16 weights, 2 bytes of gradients, and K = 12 bytes of optimizer state (an fp32
master copy, Adam's m and v): 16 bytes in all. The layouts divide these terms differently over
N_d data-parallel devices:

=========  ===========  =========  ===============
layout     weights      gradients  optimizer state
=========  ===========  =========  ===============
DDP        2            2          12
ZeRO-1     2            2          12 / N_d
ZeRO-2     2            2 / N_d    12 / N_d
ZeRO-3     2 / N_d      2 / N_d    12 / N_d       (= FSDP full sharding)
=========  ===========  =========  ===============

Tensor parallelism of degree t and pipeline parallelism of degree p split the model itself, so all
three terms are divided by t * p; data parallelism multiplies throughput, not capacity, unless ZeRO
shards the states.

Activations (Korthikanti et al. 2022, 16-bit, no recomputation) of one layer for a micro-batch of b
sequences of length s, width h, a heads:

* no tensor parallelism: ``s b h (34 + 5 a s / h)``;
* tensor parallelism of degree t: ``s b h (10 + 24 / t + 5 a s / (h t))``: the layer norms'
  inputs and the dropout masks (10 s b h) are replicated on every rank;
* tensor + sequence parallelism: ``s b h (34 + 5 a s / h) / t``: those are split along s too.
  ``Layout(sequence_parallel=True)`` says so; the default is plain tensor parallelism.

A pipeline stage holds the activations of its ``L / p`` layers for every micro-batch whose forward
pass it has run and whose backward pass it has not: all m under GPipe (Huang et al. 2019), at most
``min(p - stage, m)`` under 1F1B (PipeDream-Flush, Narayanan et al. 2021). The first stage of a full
1F1B pipe (m >= p) therefore holds ``(L / p) * p = L`` layers' worth, as much as without a pipeline
(Korthikanti et al. 2022, section 4). :func:`pipeline_schedule` writes the schedules out and
:func:`simulate_pipeline` runs them, counting time slots and the activations each stage holds.
Leaves out: the embedding, final norm and loss activations (a few percent), interleaved
schedules, activation recomputation.

Book: :doc:`/notebooks/14_parallel_training`
"""
from __future__ import annotations

from dataclasses import dataclass

from .checks import check_positive, check_positive_int

BYTES_WEIGHTS, BYTES_GRADS, BYTES_ADAM = 2, 2, 12
LAYOUTS = ("ddp", "zero1", "zero2", "zero3")
SCHEDULES = ("1f1b", "gpipe")


def ring_all_reduce_bytes(n_bytes: float, world_size: int) -> float:
    """Bytes each process sends in a ring all-reduce of ``n_bytes``: 2 (p - 1) / p * n_bytes."""
    check_positive(n_bytes, "n_bytes", allow_zero=True)
    check_positive_int(world_size, "world_size")
    return 2 * (world_size - 1) / world_size * n_bytes


def root_all_reduce_bytes(n_bytes: float, world_size: int) -> float:
    """Bytes the root sends in an all-reduce through one root: (p - 1) * n_bytes.

    The root receives the p - 1 other vectors, adds them, and sends the sum back to each: it receives
    (p - 1) n and sends (p - 1) n, 2 (p - 1) n of traffic in all; every other process sends n.
    """
    check_positive(n_bytes, "n_bytes", allow_zero=True)
    check_positive_int(world_size, "world_size")
    return (world_size - 1) * n_bytes


def bubble_fraction(stages: int, micro_batches: int) -> float:
    """Idle fraction of a GPipe pipeline: (p - 1) / (m + p - 1) for p stages and m micro-batches."""
    check_positive_int(stages, "stages")
    check_positive_int(micro_batches, "micro_batches")
    return (stages - 1) / (micro_batches + stages - 1)


@dataclass(frozen=True)
class Layout:
    """How training is split: ``dp`` data-parallel replicas sharded by ``zero`` (ZeRO stage 0-3),
    ``tp`` tensor-parallel and ``pp`` pipeline-parallel degrees. Devices used: dp * tp * pp.
    ``sequence_parallel``: the tensor-parallel ranks also split the layer norms and dropouts along the
    sequence (Korthikanti et al. 2022), so all of a layer's activations are divided by tp."""

    dp: int = 1
    tp: int = 1
    pp: int = 1
    zero: int = 0  # 0 = plain DDP; 3 = FSDP full sharding
    sequence_parallel: bool = False

    def __post_init__(self):
        for name in ("dp", "tp", "pp"):
            check_positive_int(getattr(self, name), name)
        if self.zero not in (0, 1, 2, 3):
            raise ValueError(f"zero must be a ZeRO stage 0, 1, 2 or 3, got {self.zero!r}")
        if not isinstance(self.sequence_parallel, bool):
            raise TypeError(f"sequence_parallel must be a bool, got {self.sequence_parallel!r}")

    @property
    def devices(self) -> int:
        return self.dp * self.tp * self.pp


def _check_layout(layout) -> None:
    if not isinstance(layout, Layout):
        raise TypeError(f"layout must be a parallel_memory.Layout, got {type(layout).__name__}")


def state_bytes_per_device(n_params: float, layout: Layout) -> dict[str, float]:
    """Bytes of weights, gradients and optimizer state on one device (mixed precision + Adam)."""
    check_positive(n_params, "n_params", allow_zero=True)
    _check_layout(layout)
    model_split = layout.tp * layout.pp
    per = n_params / model_split
    shard = {"weights": layout.zero >= 3, "grads": layout.zero >= 2, "optimizer": layout.zero >= 1}
    sizes = {"weights": BYTES_WEIGHTS * per, "grads": BYTES_GRADS * per, "optimizer": BYTES_ADAM * per}
    return {k: v / layout.dp if shard[k] else v for k, v in sizes.items()}


def activation_bytes_per_layer(seq: int, batch: int, hidden: int, heads: int, tp: int = 1, *,
                               sequence_parallel: bool = False) -> float:
    """Activation bytes of one transformer layer for one micro-batch, 16-bit, no recomputation.

    ``s b h (10 + 24 / t + 5 a s / (h t))`` under tensor parallelism of degree t, and
    ``s b h (34 + 5 a s / h) / t`` with sequence parallelism as well (Korthikanti et al. 2022, section 4;
    the two agree at t = 1).
    """
    for name, value in (("seq", seq), ("batch", batch), ("hidden", hidden), ("heads", heads), ("tp", tp)):
        check_positive_int(value, name)
    if not isinstance(sequence_parallel, bool):
        raise TypeError(f"sequence_parallel must be a bool, got {sequence_parallel!r}")
    sbh, scores = seq * batch * hidden, 5 * heads * seq / hidden
    if sequence_parallel or tp == 1:
        return sbh * (34 + scores) / tp
    return sbh * (10 + 24 / tp + scores / tp)


def micro_batches_in_flight(stages: int, micro_batches: int, schedule: str = "1f1b", stage: int = 0) -> int:
    """Most micro-batches whose activations pipeline stage ``stage`` (0 = first) holds at once.

    GPipe runs every forward pass before any backward pass: m. 1F1B starts ``p - stage - 1`` forward
    passes, then alternates one forward and one backward: ``min(p - stage, m)``.
    """
    check_positive_int(stages, "stages")
    check_positive_int(micro_batches, "micro_batches")
    if not isinstance(schedule, str) or schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage < stages:
        raise ValueError(f"stage must lie in [0, {stages}), got {stage}")
    return micro_batches if schedule == "gpipe" else min(stages - stage, micro_batches)


def pipeline_schedule(stages: int, micro_batches: int, schedule: str = "1f1b") -> list[list[tuple[str, int]]]:
    """The order in which each stage runs forward ``("F", j)`` and backward ``("B", j)`` passes.

    GPipe: ``F0 .. F(m-1)`` then ``B0 .. B(m-1)``. 1F1B (Narayanan et al. 2021): stage s runs
    ``min(p - s - 1, m)`` warm-up forwards, then one forward and one backward while forwards remain,
    then the remaining backwards.
    """
    micro_batches_in_flight(stages, micro_batches, schedule)  # validates
    p, m = stages, micro_batches
    if schedule == "gpipe":
        return [[("F", j) for j in range(m)] + [("B", j) for j in range(m)] for _ in range(p)]
    order = []
    for s in range(p):
        warm = min(p - s - 1, m)
        ops = [("F", j) for j in range(warm)]
        for j in range(warm, m):  # steady state: F(j), then B of the oldest micro-batch
            ops += [("F", j), ("B", j - warm)]
        order.append(ops + [("B", j) for j in range(m - warm, m)])
    return order


def _check_order(order) -> None:
    if not isinstance(order, (list, tuple)) or not order:
        raise TypeError(f"order must be a non-empty list of stages, each a list of ('F' or 'B', j) passes; "
                        f"got {order!r:.80}")
    m = None
    for s, ops in enumerate(order):
        if not isinstance(ops, (list, tuple)) or not all(
                isinstance(op, tuple) and len(op) == 2 and op[0] in ("F", "B") and isinstance(op[1], int)
                and not isinstance(op[1], bool) for op in ops):
            raise TypeError(f"order[{s}] must be a list of ('F' or 'B', j) passes with int j, got {ops!r:.80}")
        m = len(ops) // 2 if m is None else m
        if sorted(ops) != sorted([("F", j) for j in range(m)] + [("B", j) for j in range(m)]):
            raise ValueError(f"order[{s}] must run ('F', j) and ('B', j) once each for j = 0 .. {m - 1}, "
                             f"the same micro-batches as stage 0; got {ops!r:.80}")


def simulate_pipeline(order: list[list[tuple[str, int]]]) -> tuple[int, list[int]]:
    """Run each stage's ``order`` in unit time slots; return (slots, most activations each stage held).

    ``F(s, j)`` may run once ``F(s - 1, j)`` has finished, ``B(s, j)`` once ``F(s, j)`` and
    ``B(s + 1, j)`` have; a stage runs its next pass as soon as it may. A stage holds micro-batch j's
    activations from the start of ``F(s, j)`` to the end of ``B(s, j)``.

    ``order`` must be a non-empty list with one list per stage, in which every stage runs ``("F", j)``
    and ``("B", j)`` exactly once for each micro-batch j = 0 .. m - 1 (the same m for every stage).
    """
    _check_order(order)
    p = len(order)
    done: set[tuple[str, int, int]] = set()
    nxt, held, peak, slots = [0] * p, [0] * p, [0] * p, 0
    while any(nxt[s] < len(order[s]) for s in range(p)):
        finished = []
        for s in range(p):
            if nxt[s] == len(order[s]):
                continue
            kind, j = order[s][nxt[s]]
            ready = (s == 0 or ("F", s - 1, j) in done) if kind == "F" else (
                ("F", s, j) in done and (s == p - 1 or ("B", s + 1, j) in done))
            if ready:
                finished.append((kind, s, j))
                nxt[s] += 1
                held[s] += 1 if kind == "F" else 0
                peak[s] = max(peak[s], held[s])
                held[s] -= 1 if kind == "B" else 0
        if not finished:
            raise ValueError("the schedule deadlocks: no stage can run its next pass")
        done.update(finished)
        slots += 1
    return slots, peak


def training_bytes_per_device(n_params: float, n_layer: int, seq: int, micro_batch: int, hidden: int,
                              heads: int, layout: Layout, *, micro_batches: int | None = None,
                              schedule: str = "1f1b") -> float:
    """States plus activations on the busiest device: the first pipeline stage.

    It holds ``n_layer / pp`` layers' activations for each of the micro-batches in flight
    (:func:`micro_batches_in_flight`; ``micro_batches`` None means m = pp, a full 1F1B pipe), each of
    ``micro_batch`` sequences of length ``seq``.
    """
    for name, value in (("n_layer", n_layer), ("seq", seq), ("micro_batch", micro_batch)):
        check_positive_int(value, name)
    states = sum(state_bytes_per_device(n_params, layout).values())
    m = layout.pp if micro_batches is None else check_positive_int(micro_batches, "micro_batches")
    per_layer = activation_bytes_per_layer(seq, micro_batch, hidden, heads, layout.tp,
                                           sequence_parallel=layout.sequence_parallel)
    return states + per_layer * n_layer / layout.pp * micro_batches_in_flight(layout.pp, m, schedule)
