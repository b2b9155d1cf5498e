"""Data parallelism with PyTorch's own engine: process groups, ranks, and printing from rank 0.

Under ``torchrun --nproc_per_node=K -m mathllm.train ...`` every process runs the same program.
``torchrun`` tells each one who it is through the environment (``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``); that is torch's launch protocol, not a
configuration of ours, so reading it here keeps ``runtime`` the only place that reads settings.

Each process holds a full replica of the model, computes gradients on its own rows of the
global batch, and ``DistributedDataParallel`` all-reduces (averages) the gradients during the
backward pass, so every replica takes the same optimizer step. With equal rows per process the
average of per-process means is the mean over the global batch: K processes with batch B train
exactly as one process with batch K B (up to the order of floating-point additions).
Backends: NCCL between GPUs, gloo between CPU processes.

References: Li et al. 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel
Training"; nanoGPT's ``train.py`` (``master_process``, ``require_backward_grad_sync``).
Leaves out: multi-node launch details, FSDP/ZeRO sharding, tensor and pipeline parallelism
(see the parallel-training chapter).

Book: :doc:`/notebooks/12_training`
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

BACKENDS = ("auto", "nccl", "gloo")


@dataclass(frozen=True)
class DistInfo:
    """Who this process is: ``rank`` of ``world_size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, evaluates, samples and writes checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()


def launched_by_torchrun() -> bool:
    """Whether ``torchrun`` (or another launcher speaking its protocol) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: torch.device, backend: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group if launched by ``torchrun``; return who we are and our device.

    A single process (no ``RANK`` in the environment) gets ``DistInfo()`` and ``device`` unchanged.
    Under ``torchrun`` with CUDA, process ``local_rank`` takes GPU ``local_rank``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not launched_by_torchrun():
        return DistInfo(), device
    info = DistInfo(rank=int(os.environ["RANK"]), local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                    world_size=int(os.environ["WORLD_SIZE"]))
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return info, device


def cleanup() -> None:
    """Leave the process group (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def print0(*args, info: DistInfo | None = None, **kwargs) -> None:
    """``print`` on rank 0 only, so K processes do not print K copies."""
    rank = info.rank if info is not None else (dist.get_rank() if dist.is_available() and dist.is_initialized() else 0)
    if rank == 0:
        print(*args, **kwargs)


def gather_objects(obj, info: DistInfo) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in a single process).

    Used to put every rank's random state into rank 0's checkpoint.
    """
    if not dist.is_initialized():
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over all processes (``value`` itself in a single process)."""
    if not dist.is_initialized():
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / dist.get_world_size()


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank (``obj`` itself in a single process).

    Used where rank 0 alone decides (it alone evaluates) and every rank must act on the decision.
    """
    if not dist.is_initialized():
        return obj
    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
