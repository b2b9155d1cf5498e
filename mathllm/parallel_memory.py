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
shards the states. Activations (Korthikanti et al. 2022, eq. 2, 16-bit, no recomputation) take
s b h (34 + 5 a s / h) bytes per layer, divided by t under tensor + sequence parallelism.

Book: :doc:`/notebooks/14_parallel_training`
"""
from __future__ import annotations

from dataclasses import dataclass

from .checks import check_positive_int

BYTES_WEIGHTS, BYTES_GRADS, BYTES_ADAM = 2, 2, 12
LAYOUTS = ("ddp", "zero1", "zero2", "zero3")


def ring_all_reduce_bytes(n_bytes: float, world_size: int) -> float:
    """Bytes each process sends in a ring all-reduce of ``n_bytes``: 2 (p - 1) / p * n_bytes."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    return 2 * (world_size - 1) / world_size * n_bytes


def bubble_fraction(stages: int, micro_batches: int) -> float:
    """Idle fraction of a GPipe pipeline: (p - 1) / (m + p - 1) for p stages and m micro-batches."""
    if stages < 1 or micro_batches < 1:
        raise ValueError(f"stages and micro_batches must be >= 1, got {stages} and {micro_batches}")
    return (stages - 1) / (micro_batches + stages - 1)


@dataclass(frozen=True)
class Layout:
    """How training is split: ``dp`` data-parallel replicas sharded by ``zero`` (ZeRO stage 0-3),
    ``tp`` tensor-parallel and ``pp`` pipeline-parallel degrees. Devices used: dp * tp * pp."""

    dp: int = 1
    tp: int = 1
    pp: int = 1
    zero: int = 0  # 0 = plain DDP; 3 = FSDP full sharding

    def __post_init__(self):
        for name in ("dp", "tp", "pp"):
            check_positive_int(getattr(self, name), name)
        if self.zero not in (0, 1, 2, 3):
            raise ValueError(f"zero must be a ZeRO stage 0, 1, 2 or 3, got {self.zero!r}")

    @property
    def devices(self) -> int:
        return self.dp * self.tp * self.pp


def state_bytes_per_device(n_params: float, layout: Layout) -> dict[str, float]:
    """Bytes of weights, gradients and optimizer state on one device (mixed precision + Adam)."""
    model_split = layout.tp * layout.pp
    per = n_params / model_split
    shard = {"weights": layout.zero >= 3, "grads": layout.zero >= 2, "optimizer": layout.zero >= 1}
    sizes = {"weights": BYTES_WEIGHTS * per, "grads": BYTES_GRADS * per, "optimizer": BYTES_ADAM * per}
    return {k: v / layout.dp if shard[k] else v for k, v in sizes.items()}


def activation_bytes_per_layer(seq: int, batch: int, hidden: int, heads: int, tp: int = 1) -> float:
    """Activation memory of one transformer layer, 16-bit, no recomputation: s b h (34 + 5 a s / h) / t."""
    return seq * batch * hidden * (34 + 5 * heads * seq / hidden) / tp


def training_bytes_per_device(n_params: float, n_layer: int, seq: int, micro_batch: int, hidden: int,
                              heads: int, layout: Layout) -> float:
    """States plus activations of the layers one device holds (n_layer / pp of them)."""
    states = sum(state_bytes_per_device(n_params, layout).values())
    acts = activation_bytes_per_layer(seq, micro_batch, hidden, heads, layout.tp) * n_layer / layout.pp
    return states + acts
