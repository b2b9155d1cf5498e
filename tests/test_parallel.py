"""Parallel training across real processes (gloo on CPU), each checked against one process."""
import pytest
import torch

from mathllm import parallel
from mathllm.parallel_memory import (Layout, activation_bytes_per_layer, bubble_fraction, micro_batches_in_flight,
                                     pipeline_schedule, ring_all_reduce_bytes, root_all_reduce_bytes, simulate_pipeline,
                                     state_bytes_per_device, training_bytes_per_device)

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds

TOL = dict(rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("world_size, n", [(2, 1000), (3, 1001)])
def test_ring_all_reduce_equals_all_reduce_and_sends_2_p_minus_1_over_p(world_size, n):
    results = parallel.launch(parallel.ring_all_reduce_worker, world_size, n, 0)
    for r in results:
        torch.testing.assert_close(r["ours"], r["reference"], **TOL)
        # chunk sizes differ by at most one element when p does not divide n
        assert abs(r["bytes_sent"] - ring_all_reduce_bytes(r["bytes"], world_size)) <= 2 * world_size * 8
        torch.testing.assert_close(r["root"], r["reference"], **TOL)
    # through one root: the root sends the sum to each of the p - 1 others, (p - 1) n; the others send n
    assert results[0]["root_bytes_sent"] == root_all_reduce_bytes(results[0]["bytes"], world_size) == (
        (world_size - 1) * results[0]["bytes"])
    assert all(r["root_bytes_sent"] == r["bytes"] for r in results[1:])


def test_tensor_parallel_mlp_equals_one_process():
    n, c, h = 6, 8, 16
    results = parallel.launch(parallel.tensor_parallel_mlp_worker, 2, n, c, h, 0)
    w1, b1, w2, b2 = (t.requires_grad_() for t in parallel.mlp_weights(c, h, 0))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, c, generator=g, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(n, c, generator=g, dtype=torch.float64)
    y = parallel.mlp(x, w1, b1, w2, b2)
    (y * upstream).sum().backward()
    for rank, r in enumerate(results):
        torch.testing.assert_close(r["y"], y.detach(), **TOL)           # every rank holds the full output
        torch.testing.assert_close(r["dx"], x.grad, **TOL)              # the backward all-reduce
        torch.testing.assert_close(r["dw1"], w1.grad.chunk(2, dim=1)[rank], **TOL)   # column shard
        torch.testing.assert_close(r["db1"], b1.grad.chunk(2)[rank], **TOL)
        torch.testing.assert_close(r["dw2"], w2.grad.chunk(2, dim=0)[rank], **TOL)   # row shard


@pytest.mark.parametrize("n_micro", [1, 4])
def test_two_stage_pipeline_equals_one_process(n_micro):
    n, c, h = 8, 4, 6
    stage0, stage1 = parallel.launch(parallel.pipeline_step, 2, n, c, h, n_micro, 0)
    ref = parallel.pipeline_reference(n, c, h, 0)
    torch.testing.assert_close(stage1["loss"], ref["loss"], **TOL)
    for ours, want in zip(stage0["grads"] + stage1["grads"], ref["grads0"] + ref["grads1"]):
        torch.testing.assert_close(ours, want, **TOL)


def test_ddp_gradient_is_the_full_batch_gradient():
    results = parallel.launch(parallel.data_parallel_worker, 2, 8, 4, 0)
    ref = parallel.data_parallel_reference(8, 4, 0)
    for r in results:
        for ours, want in zip(r["grads"], ref):
            torch.testing.assert_close(ours, want, **TOL)


def test_a_failing_process_raises_with_its_traceback():
    with pytest.raises(RuntimeError, match="needs world_size=2, got 3"):
        parallel.launch(parallel.pipeline_step, 3, 8, 4, 6, 2, 0)


def test_bad_input():
    with pytest.raises(ValueError, match="world_size must be a positive int"):
        parallel.launch(parallel.data_parallel_worker, 0)
    with pytest.raises(ValueError, match="does not split into 3 equal shards"):
        parallel.shard(torch.zeros(4, 5), 1, 0, 3)
    with pytest.raises(ValueError, match="zero must be a ZeRO stage"):
        Layout(zero=4)
    with pytest.raises(ValueError, match="dp must be a positive int"):
        Layout(dp=0)


def test_bubble_fraction_matches_a_counted_schedule():
    # GPipe: p stages, m micro-batches take m + p - 1 time slots; each stage is busy m of them
    for p in range(1, 6):
        for m in range(1, 9):
            slots = m + p - 1
            assert bubble_fraction(p, m) == pytest.approx((slots - m) / slots)
    assert bubble_fraction(4, 4) == pytest.approx(3 / 7)


def test_memory_per_device_follows_zero_table():
    psi = 7e9
    assert sum(state_bytes_per_device(psi, Layout()).values()) == 16 * psi
    assert sum(state_bytes_per_device(psi, Layout(dp=8, zero=1)).values()) == pytest.approx((4 + 12 / 8) * psi)
    assert sum(state_bytes_per_device(psi, Layout(dp=8, zero=2)).values()) == pytest.approx((2 + 14 / 8) * psi)
    assert sum(state_bytes_per_device(psi, Layout(dp=8, zero=3)).values()) == pytest.approx(16 / 8 * psi)
    assert sum(state_bytes_per_device(psi, Layout(tp=4, pp=2)).values()) == pytest.approx(16 / 8 * psi)
    # Korthikanti et al. eq. 2 for GPT-3 175B's layer at s=2048, b=1: sbh(34 + 5as/h)
    s, h, a = 2048, 12288, 96
    assert activation_bytes_per_layer(s, 1, h, a) == s * h * (34 + 5 * a * s / h)
    # a full 1F1B pipe of 2 stages: the first stage holds 16 layers for 2 micro-batches, all 32 layers' worth
    assert training_bytes_per_device(psi, 32, 2048, 1, 4096, 32, Layout(pp=2)) == pytest.approx(
        8 * psi + 32 * activation_bytes_per_layer(2048, 1, 4096, 32))
    assert training_bytes_per_device(psi, 32, 2048, 1, 4096, 32, Layout(pp=2), micro_batches=8,
                                     schedule="gpipe") == pytest.approx(
        8 * psi + 16 * 8 * activation_bytes_per_layer(2048, 1, 4096, 32))


def test_activations_under_tensor_and_sequence_parallelism():
    # Korthikanti et al., section 4: tensor parallelism alone and with sequence parallelism; they agree at t = 1
    s, b, h, a = 2048, 2, 8192, 64
    for t in (1, 2, 4, 8):
        tp_only = activation_bytes_per_layer(s, b, h, a, t)
        with_sp = activation_bytes_per_layer(s, b, h, a, t, sequence_parallel=True)
        assert tp_only == pytest.approx(s * b * h * (10 + 24 / t + 5 * a * s / (h * t)))
        assert with_sp == pytest.approx(s * b * h * (34 + 5 * a * s / h) / t)
        assert with_sp <= tp_only and (with_sp == tp_only) == (t == 1)
    # 70B (80 layers, h = 8192, 64 heads), TP4 x PP2, s = 2048, b = 1, full 1F1B pipe: 178 GB with SP, 188 without
    lay = Layout(tp=4, pp=2, sequence_parallel=True)
    assert training_bytes_per_device(70e9, 80, 2048, 1, 8192, 64, lay) / 1e9 == pytest.approx(178.25, abs=0.01)
    assert training_bytes_per_device(70e9, 80, 2048, 1, 8192, 64, Layout(tp=4, pp=2)) / 1e9 == pytest.approx(
        188.32, abs=0.01)


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_simulated_schedules_hold_what_micro_batches_in_flight_says(schedule):
    for p in range(1, 6):
        for m in range(1, 9):
            order = pipeline_schedule(p, m, schedule)
            assert all(sorted(ops) == sorted([("F", j) for j in range(m)] + [("B", j) for j in range(m)])
                       for ops in order)
            slots, peak = simulate_pipeline(order)
            assert peak == [micro_batches_in_flight(p, m, schedule, s) for s in range(p)]
            # forward and backward each take one slot: busy 2m of 2(m + p - 1) slots
            assert (slots - 2 * m) / slots == pytest.approx(bubble_fraction(p, m))
    assert simulate_pipeline(pipeline_schedule(4, 6, "1f1b"))[1] == [4, 3, 2, 1]


def test_pipeline_bad_input():
    with pytest.raises(ValueError, match="schedule must be one of"):
        micro_batches_in_flight(2, 2, "interleaved")
    with pytest.raises(ValueError, match="stage must lie in"):
        micro_batches_in_flight(2, 2, stage=2)
    with pytest.raises(ValueError, match="deadlocks"):
        simulate_pipeline([[("B", 0), ("F", 0)], [("F", 0), ("B", 0)]])
    with pytest.raises(TypeError, match="sequence_parallel must be a bool"):
        Layout(sequence_parallel=1)


# ---------------------------------------------------------------------------- hostile input (tests/test_fuzz_api.py)
W = torch.zeros(4, 6)


@pytest.mark.parametrize("call, error, match", [
    # shard: a non-tensor, an axis it does not have, a rank outside [0, p)
    (lambda: parallel.shard(1.5, 0, 0, 2), TypeError, "w must be a torch.Tensor, got float"),
    (lambda: parallel.shard(torch.zeros(4), 1, 0, 2), ValueError, r"dim must be an axis of w, an int in \[-1, 1\)"),
    (lambda: parallel.shard(W, 0, 2, 2), ValueError, r"rank must be an int in \[0, world_size=2\), got 2"),
    (lambda: parallel.shard(W, 0, 0, 0), ValueError, "world_size must be a positive int, got 0"),
    # the parallel linear layers: a float (C_in, C_out) weight and a (C_out,) bias
    (lambda: parallel.ColumnParallelLinear(None, None, 0, 2), TypeError, "weight must be a torch.Tensor"),
    (lambda: parallel.ColumnParallelLinear(torch.zeros(6), None, 0, 2), ValueError, "weight must have shape"),
    (lambda: parallel.RowParallelLinear(W.bool(), None, 0, 2), TypeError, "weight must be a floating-point tensor"),
    (lambda: parallel.RowParallelLinear(W, torch.zeros(4), 0, 2), ValueError, "bias must have shape .* C_out=6"),
    # the one-process references: counts and seeds
    (lambda: parallel.mlp(torch.zeros(2, 4), None, None, None, None), TypeError, "w1 must be a torch.Tensor"),
    (lambda: parallel.mlp(torch.zeros(2, 4), W, torch.zeros(6), torch.zeros(6, 3), torch.zeros(4)), ValueError,
     "w2 must have shape"),
    (lambda: parallel.mlp_weights(float("nan"), 4, 0), ValueError, "c must be a positive int"),
    (lambda: parallel.pipeline_stages(4, -1, 0), ValueError, "h must be a positive int"),
    (lambda: parallel.pipeline_reference(0, 4, 6, 0), ValueError, "n must be a positive int, got 0"),  # was a nan loss
    (lambda: parallel.data_parallel_reference(8, 4, "a"), ValueError, "seed must be an int >= 0"),
    # the collectives, outside a process group: our message, not torch's
    (lambda: parallel.ring_all_reduce(torch.zeros(3)), ValueError, "ring_all_reduce must run inside a process group"),
    (lambda: parallel.root_all_reduce(torch.zeros(3)), ValueError, "root_all_reduce must run inside a process group"),
    (lambda: parallel.ring_all_reduce([1.0]), TypeError, "x must be a torch.Tensor, got list"),
    (lambda: parallel.ring_all_reduce(torch.ones(3, dtype=torch.bool)), TypeError, "x must be a numeric tensor"),
])
def test_parallel_refuses_hostile_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("call, error, match", [
    (lambda: ring_all_reduce_bytes(None, 2), TypeError, "n_bytes must be a number, got NoneType"),
    (lambda: ring_all_reduce_bytes(float("nan"), 2), ValueError, "n_bytes must be a finite number"),
    (lambda: root_all_reduce_bytes(8.0, 1.5), ValueError, "world_size must be a positive int, got 1.5"),
    (lambda: bubble_fraction(torch.ones(2), 4), ValueError, "stages must be a positive int"),
    (lambda: bubble_fraction(4, None), ValueError, "micro_batches must be a positive int, got None"),
    (lambda: micro_batches_in_flight("a", 2), ValueError, "stages must be a positive int, got 'a'"),
    (lambda: micro_batches_in_flight(2, 2, stage=0.5), ValueError, r"stage must lie in \[0, 2\), got 0.5"),
    (lambda: pipeline_schedule(float("inf"), 2), ValueError, "stages must be a positive int, got inf"),
    (lambda: activation_bytes_per_layer("a", 1, 8, 2), ValueError, "seq must be a positive int, got 'a'"),
    (lambda: activation_bytes_per_layer(8, 1, 8, None), ValueError, "heads must be a positive int, got None"),
    (lambda: state_bytes_per_device(1e9, None), TypeError, "layout must be a parallel_memory.Layout, got NoneType"),
    (lambda: state_bytes_per_device(float("inf"), Layout()), ValueError, "n_params must be a finite number"),
    (lambda: training_bytes_per_device(1e9, 0, 8, 1, 8, 2, Layout()), ValueError, "n_layer must be a positive int"),
    (lambda: training_bytes_per_device(1e9, 2, 8, 1, 8, 2, None), TypeError, "layout must be a parallel_memory.Layout"),
    (lambda: training_bytes_per_device(1e9, 2, 8, 1, 8, 2, Layout(), micro_batches=0), ValueError,
     "micro_batches must be a positive int, got 0"),
    # simulate_pipeline takes one list of passes per stage, each pass ('F' or 'B', j) once per micro-batch
    (lambda: simulate_pipeline(3), TypeError, "order must be a non-empty list of stages"),
    (lambda: simulate_pipeline([]), TypeError, "order must be a non-empty list of stages"),
    (lambda: simulate_pipeline([[("F", 0), ("X", 0)]]), TypeError, r"order\[0\] must be a list of \('F' or 'B', j\)"),
    (lambda: simulate_pipeline([[("F", 0), ("F", 0)]]), ValueError,
     r"order\[0\] must run \('F', j\) and \('B', j\) once"),
    (lambda: simulate_pipeline([[("F", 0), ("B", 0)], [("F", 1), ("B", 1)]]), ValueError, r"order\[1\] must run"),
])
def test_parallel_memory_refuses_hostile_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------------------- the trainer's all-reduce mean
def _all_reduce_mean_worker(rank: int, world_size: int) -> torch.Tensor:
    """Rank r contributes (r + 1, 10 (r + 1)); spawned by parallel.launch, so it lives at module level."""
    from mathllm.distributed import all_reduce_mean
    return all_reduce_mean(torch.tensor([rank + 1.0, 10.0 * (rank + 1)], dtype=torch.float64))


def test_all_reduce_mean_divides_the_sum_by_the_number_of_processes():
    """Three processes hold 1, 2, 3: their mean is 2, a literal here (the sum without the division by
    p would be 6). Small integers in float64 are added and divided exactly, so equality is exact."""
    from mathllm.distributed import all_reduce_mean
    results = parallel.launch(_all_reduce_mean_worker, 3)
    assert [r.tolist() for r in results] == [[2.0, 20.0]] * 3  # every rank holds the same mean
    single = torch.tensor([4.0, 5.0])
    assert all_reduce_mean(single) is single  # one process: the value itself
