"""Parallel training on PyTorch's distributed engine: a process launcher, the ring all-reduce,
tensor (model) parallelism and a pipeline, each checked against one process.

- :func:`launch` runs ``fn(rank, world_size, *args)`` in ``world_size`` processes joined in a gloo
  process group on 127.0.0.1 (NCCL would be the choice between GPUs) and returns every rank's result.
- :func:`ring_all_reduce` is the bandwidth-optimal all-reduce written with ``dist.isend/irecv``:
  a reduce-scatter and an all-gather of p - 1 steps each, so every process sends
  2 (p - 1) / p of the tensor's bytes, whatever p is; :func:`root_all_reduce`, through one root,
  makes the root send (p - 1) times them.
- :class:`ColumnParallelLinear` and :class:`RowParallelLinear` split a weight matrix by columns and
  by rows (Megatron-LM, Shoeybi et al. 2019); :func:`tensor_parallel_mlp_worker` chains them so that a
  two-layer MLP needs one all-reduce in the forward pass and one in the backward pass.
- :func:`pipeline_step` runs a two-stage GPipe schedule (Huang et al. 2019) over micro-batches.

Data parallelism itself is ``torch.nn.parallel.DistributedDataParallel`` (see :mod:`mathllm.distributed`
for the trainer's use of it). Memory and communication arithmetic lives in :mod:`mathllm.parallel_memory`.
Leaves out: interleaved pipeline schedules, sequence parallelism, multi-node launch.

Book: :doc:`/notebooks/14_parallel_training`
"""
from __future__ import annotations

import io
import multiprocessing as mp
import os
import socket
import traceback

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .checks import check_float_tensor, check_nonnegative_int, check_positive_int, check_shape, check_tensor

# ---------------------------------------------------------------------------- launching


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(fn, rank, world_size, port, queue, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # the processes share the machine's cores
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
        buf = io.BytesIO()  # tensors go back as bytes: a shared-memory handle would die with this process
        torch.save(fn(rank, world_size, *args), buf)
        queue.put((rank, buf.getvalue(), None))
    except Exception:  # noqa: BLE001 - sent back to the parent, which raises it
        queue.put((rank, None, traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def launch(fn, world_size: int = 2, *args, timeout: float = 300.0) -> list:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` fresh processes; return their results by rank.

    ``fn`` must be importable (defined in a module, not in a notebook) and return tensors, numbers,
    strings, or lists and dicts of them (what ``torch.load(weights_only=True)`` accepts).
    A failure in any process is raised here with that process's traceback.
    """
    check_positive_int(world_size, "world_size")
    ctx = mp.get_context("spawn")  # a fresh interpreter per rank, as torchrun gives
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(fn, r, world_size, port, queue, args)) for r in range(world_size)]
    for p in procs:
        p.start()
    results, errors = [None] * world_size, []
    try:
        for _ in range(world_size):
            rank, value, error = queue.get(timeout=timeout)
            results[rank] = None if error else torch.load(io.BytesIO(value), weights_only=True)
            if error:
                errors.append(f"rank {rank}:\n{error}")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    if errors:
        raise RuntimeError("a process failed\n" + "\n".join(errors))
    return results


# ---------------------------------------------------------------------------- ring all-reduce
def _check_collective_input(x, fn_name: str) -> None:
    """``x`` is a numeric tensor and this process is in a process group (run by :func:`launch` or torchrun)."""
    check_tensor(x, "x")
    if x.dtype == torch.bool:
        raise TypeError("x must be a numeric tensor to be summed, got dtype bool")
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(f"{fn_name} must run inside a process group (a function started by parallel.launch "
                         f"or torchrun), got none: torch.distributed is not initialised in this process")


def ring_all_reduce(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum ``x`` over all processes with the ring algorithm; return ``(sum, bytes this process sent)``.

    The tensor is cut into p chunks. Reduce-scatter: in step s each process sends one chunk to its
    right neighbour and adds the chunk arriving from its left; after p - 1 steps process r holds the
    full sum of chunk r + 1. All-gather: p - 1 more steps pass the finished chunks around the ring.
    Each step sends n / p elements, so a process sends 2 (p - 1) n / p in all.
    """
    _check_collective_input(x, "ring_all_reduce")
    p, r = dist.get_world_size(), dist.get_rank()
    chunks = list(x.detach().clone().flatten().tensor_split(p))  # p views of about n / p elements
    right, left = (r + 1) % p, (r - 1) % p
    sent = 0

    def exchange(send_idx, recv_idx, accumulate):
        nonlocal sent
        incoming = torch.empty_like(chunks[recv_idx])
        reqs = [dist.isend(chunks[send_idx].contiguous(), right), dist.irecv(incoming, left)]
        for req in reqs:
            req.wait()
        sent += chunks[send_idx].numel() * chunks[send_idx].element_size()
        chunks[recv_idx] = chunks[recv_idx] + incoming if accumulate else incoming

    for s in range(p - 1):  # reduce-scatter
        exchange((r - s) % p, (r - s - 1) % p, accumulate=True)
    for s in range(p - 1):  # all-gather
        exchange((r + 1 - s) % p, (r - s) % p, accumulate=False)
    return torch.cat(chunks).view_as(x), sent


def root_all_reduce(x: torch.Tensor, root: int = 0) -> tuple[torch.Tensor, int]:
    """Sum ``x`` over all processes through one root; return ``(sum, bytes this process sent)``.

    Every other process sends its vector to the root (n bytes each); the root adds them and sends
    the sum back to each of the p - 1 others, so the root sends (p - 1) n bytes (and receives as many).
    """
    _check_collective_input(x, "root_all_reduce")
    p, r = dist.get_world_size(), dist.get_rank()
    if isinstance(root, bool) or not isinstance(root, int) or not 0 <= root < p:
        raise ValueError(f"root must be a rank in [0, {p}), got {root!r}")
    x = x.detach().clone()
    n_bytes = x.numel() * x.element_size()
    if r != root:
        dist.send(x, dst=root)
        dist.recv(x, src=root)
        return x, n_bytes
    total, sent = x.clone(), 0
    for src in sorted(set(range(p)) - {root}):  # add in rank order: the same sum on every run
        incoming = torch.empty_like(x)
        dist.recv(incoming, src=src)
        total = total + incoming
    for dst in sorted(set(range(p)) - {root}):
        dist.send(total, dst=dst)
        sent += n_bytes
    return total, sent


def ring_all_reduce_worker(rank: int, world_size: int, n: int, seed: int) -> dict:
    """Each rank all-reduces its own random vector with :func:`ring_all_reduce`, :func:`root_all_reduce`
    and ``dist.all_reduce``; returns the results and the bytes this rank sent in each."""
    x = torch.randn(n, generator=torch.Generator().manual_seed(seed + rank), dtype=torch.float64)
    ours, sent = ring_all_reduce(x)
    root_sum, root_sent = root_all_reduce(x)
    ref = x.clone()
    dist.all_reduce(ref)
    return {"ours": ours, "reference": ref, "bytes_sent": sent, "bytes": x.numel() * x.element_size(),
            "root": root_sum, "root_bytes_sent": root_sent}


# ---------------------------------------------------------------------------- tensor parallelism


class _CopyToParallel(torch.autograd.Function):
    """Megatron's f: identity forward; all-reduce backward (every shard's path contributes to dx)."""

    @staticmethod
    def forward(ctx, x):
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class _ReduceFromParallel(torch.autograd.Function):
    """Megatron's g: all-reduce forward (sum the partial products); identity backward."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        return grad


def shard(w: torch.Tensor, dim: int, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s contiguous block of ``w`` along ``dim`` (the size must divide evenly)."""
    check_tensor(w, "w")
    check_positive_int(world_size, "world_size")
    if isinstance(dim, bool) or not isinstance(dim, int) or not -w.dim() <= dim < w.dim():
        raise ValueError(f"dim must be an axis of w, an int in [{-w.dim()}, {w.dim()}) for shape {tuple(w.shape)}; "
                         f"got {dim!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, world_size={world_size}), got {rank!r}")
    if w.shape[dim] % world_size:
        raise ValueError(f"w must split evenly: dimension {dim} of size {w.shape[dim]} does not split into "
                         f"{world_size} equal shards")
    return w.chunk(world_size, dim=dim)[rank].clone()


def _check_linear(weight, bias) -> None:
    """``weight`` a float (C_in, C_out) matrix; ``bias`` None or a float (C_out,) vector."""
    check_float_tensor(weight, "weight")
    _, c_out = check_shape(weight, "C_in C_out", name="weight")
    if bias is not None:
        check_float_tensor(bias, "bias")
        check_shape(bias, "C_out", name="bias", C_out=c_out)


class ColumnParallelLinear(torch.nn.Module):
    """``y_r = x W[:, cols_r] + b[cols_r]``: each rank computes its own slice of the output columns.

    ``weight``: the full (C_in, C_out) matrix; the module keeps only this rank's (C_in, C_out / p).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, rank: int, world_size: int):
        super().__init__()
        _check_linear(weight, bias)
        self.weight = torch.nn.Parameter(shard(weight, 1, rank, world_size))
        self.bias = None if bias is None else torch.nn.Parameter(shard(bias, 0, rank, world_size))

    def forward(self, x):
        x = _CopyToParallel.apply(x)
        y = x @ self.weight  # (N, C_in) x (C_in, C_out / p) -> (N, C_out / p)
        return y if self.bias is None else y + self.bias


class RowParallelLinear(torch.nn.Module):
    """``y = sum_r x_r W[rows_r, :] + b``: each rank multiplies its slice of the input by its rows;
    an all-reduce adds the partial products. ``weight``: the full (C_in, C_out) matrix."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, rank: int, world_size: int):
        super().__init__()
        _check_linear(weight, bias)
        self.weight = torch.nn.Parameter(shard(weight, 0, rank, world_size))
        self.bias = None if bias is None else torch.nn.Parameter(bias.clone())  # added once, after the sum

    def forward(self, x_shard):
        y = _ReduceFromParallel.apply(x_shard @ self.weight)  # (N, C_in / p) x (C_in / p, C_out) -> (N, C_out)
        return y if self.bias is None else y + self.bias


def mlp(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """The reference two-layer MLP ``gelu(x W1 + b1) W2 + b2`` in one process.

    ``x``: (N, C); ``w1``: (C, H); ``b1``: (H,); ``w2``: (H, C); ``b2``: (C,). Returns (N, C).
    """
    for name, t in (("x", x), ("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)):
        check_float_tensor(t, name)
    _, c = check_shape(x, "N C", name="x")
    _, h = check_shape(w1, "C H", name="w1", C=c)
    check_shape(b1, "H", name="b1", H=h)
    check_shape(w2, "H C", name="w2", H=h, C=c)
    check_shape(b2, "C", name="b2", C=c)
    return F.gelu(x @ w1 + b1) @ w2 + b2


def mlp_weights(c: int, h: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Random float64 weights (W1 (C, H), b1 (H,), W2 (H, C), b2 (C,)) for the MLP experiments."""
    check_positive_int(c, "c")
    check_positive_int(h, "h")
    check_nonnegative_int(seed, "seed")
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(c, h, generator=g, dtype=torch.float64) / c ** 0.5, torch.randn(h, generator=g, dtype=torch.float64),
            torch.randn(h, c, generator=g, dtype=torch.float64) / h ** 0.5, torch.randn(c, generator=g, dtype=torch.float64))


def tensor_parallel_mlp_worker(rank: int, world_size: int, n: int, c: int, h: int, seed: int) -> dict:
    """Run the MLP split over ranks (W1 by columns, W2 by rows) forward and backward.

    GELU acts elementwise, so the column shards of ``x W1`` go through it independently: the only
    communication is one all-reduce after W2 (forward) and one for dL/dx (backward).
    """
    w1, b1, w2, b2 = mlp_weights(c, h, seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, c, generator=g, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(n, c, generator=g, dtype=torch.float64)  # dL/dy for L = sum(y * upstream)
    fc1, fc2 = ColumnParallelLinear(w1, b1, rank, world_size), RowParallelLinear(w2, b2, rank, world_size)
    y = fc2(F.gelu(fc1(x)))
    (y * upstream).sum().backward()
    return {"y": y.detach(), "dx": x.grad, "dw1": fc1.weight.grad, "db1": fc1.bias.grad, "dw2": fc2.weight.grad}


# ---------------------------------------------------------------------------- pipeline parallelism


def pipeline_stages(c: int, h: int, seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Stage 0: Linear(C, H) + GELU. Stage 1: Linear(H, C). Same weights on every rank (seeded)."""
    check_positive_int(c, "c")
    check_positive_int(h, "h")
    check_nonnegative_int(seed, "seed")
    torch.manual_seed(seed)
    stage0 = torch.nn.Sequential(torch.nn.Linear(c, h), torch.nn.GELU()).double()
    stage1 = torch.nn.Linear(h, c).double()
    return stage0, stage1


def pipeline_step(rank: int, world_size: int, n: int, c: int, h: int, n_micro: int, seed: int) -> dict:
    """One GPipe training step over two processes: forward every micro-batch, then backward every one.

    Rank 0 runs stage 0 and sends activations (N/m, H) to rank 1; rank 1 runs stage 1, computes the
    mean-squared-error loss and sends dL/d(activation) back. Each micro-batch's loss is divided by m,
    so the summed gradients are those of the mean loss over the whole batch.
    """
    if world_size != 2:
        raise ValueError(f"this pipeline has 2 stages and needs world_size=2, got {world_size}")
    if n % n_micro:
        raise ValueError(f"batch {n} does not split into {n_micro} equal micro-batches")
    stage0, stage1 = pipeline_stages(c, h, seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, c, generator=g, dtype=torch.float64)
    target = torch.randn(n, c, generator=g, dtype=torch.float64)
    xs, ts = x.chunk(n_micro), target.chunk(n_micro)
    mb = n // n_micro
    if rank == 0:
        acts = []
        for xm in xs:  # forward: fill the pipe
            a = stage0(xm)
            dist.send(a.detach(), dst=1)
            acts.append(a)
        for a in acts:  # backward: drain it
            grad = torch.empty(mb, h, dtype=torch.float64)
            dist.recv(grad, src=1)
            a.backward(grad)
        return {"grads": [p.grad for p in stage0.parameters()]}
    acts, losses = [], []
    for tm in ts:  # forward: receive every micro-batch's activation first (GPipe), so sends never cross
        a = torch.empty(mb, h, dtype=torch.float64)
        dist.recv(a, src=0)
        a.requires_grad_()
        acts.append(a)
        losses.append(F.mse_loss(stage1(a), tm) / n_micro)
    for a, loss in zip(acts, losses):  # backward, micro-batch by micro-batch
        loss.backward()
        dist.send(a.grad, dst=0)
    return {"grads": [p.grad for p in stage1.parameters()], "loss": torch.stack(losses).detach().sum()}


def pipeline_reference(n: int, c: int, h: int, seed: int) -> dict:
    """The same step in one process on the whole batch: the loss and each stage's gradients."""
    check_positive_int(n, "n")  # a batch of 0 rows has no mean loss
    stage0, stage1 = pipeline_stages(c, h, seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, c, generator=g, dtype=torch.float64)
    target = torch.randn(n, c, generator=g, dtype=torch.float64)
    loss = F.mse_loss(stage1(stage0(x)), target)
    loss.backward()
    return {"loss": loss.detach(), "grads0": [p.grad for p in stage0.parameters()],
            "grads1": [p.grad for p in stage1.parameters()]}


# ---------------------------------------------------------------------------- data parallelism


def data_parallel_worker(rank: int, world_size: int, n: int, c: int, seed: int) -> dict:
    """Each rank takes rows ``rank::world_size`` of a global batch; DDP averages the gradients.

    Returns the gradients every rank holds after ``backward`` (identical across ranks).
    """
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(c, 2 * c), torch.nn.Tanh(), torch.nn.Linear(2 * c, 1)).double()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    g = torch.Generator().manual_seed(seed + 1)
    x, y = torch.randn(n, c, generator=g, dtype=torch.float64), torch.randn(n, 1, generator=g, dtype=torch.float64)
    F.mse_loss(ddp(x[rank::world_size]), y[rank::world_size]).backward()
    return {"grads": [p.grad for p in model.parameters()]}


def data_parallel_reference(n: int, c: int, seed: int) -> list[torch.Tensor]:
    """Gradients of the same model on the whole global batch in one process."""
    check_positive_int(n, "n")
    check_positive_int(c, "c")
    check_nonnegative_int(seed, "seed")
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(c, 2 * c), torch.nn.Tanh(), torch.nn.Linear(2 * c, 1)).double()
    g = torch.Generator().manual_seed(seed + 1)
    x, y = torch.randn(n, c, generator=g, dtype=torch.float64), torch.randn(n, 1, generator=g, dtype=torch.float64)
    F.mse_loss(model(x), y).backward()
    return [p.grad for p in model.parameters()]
