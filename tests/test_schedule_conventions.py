"""Our warm-up + cosine schedule (mathllm.schedules.warmup_cosine) against Hugging Face's
``get_cosine_schedule_with_warmup`` and ``get_cosine_with_min_lr_schedule_with_warmup``: the rates each
gives to the optimizer at every update, and the one-step offset between them, written down as asserts.

The conventions, with W warm-up steps, D = num_training_steps and t the update (0 = the first):

* warm-up: ours is max_lr (t + 1) / W, so the first update already moves and update W - 1 reaches
  max_lr; Hugging Face's is max_lr t / W, so its first update has rate 0 (a wasted step) and
  max_lr arrives at update W. Ours at t equals theirs at t + 1: an offset of one step;
* decay (W <= t <= D): the same half cosine, max_lr -> min_lr, value for value;
* after D: ours stays at min_lr; Hugging Face's cosine turns and rises again (it assumes training
  stops at D).
"""
import math

import pytest
import torch

from mathllm.schedules import warmup_cosine

optimization = pytest.importorskip("transformers.optimization", reason="transformers is a test extra")


def _hf_rates(make, steps, max_lr, **kwargs):
    """The learning rate Hugging Face's scheduler hands the optimizer at updates 0 .. steps - 1."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=max_lr)
    sched = make(opt, **kwargs)
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])  # what this update uses
        opt.step()
        sched.step()
    return rates


@pytest.mark.parametrize("W, D", [(10, 100), (1, 20), (25, 60)])
def test_warmup_is_one_step_ahead_of_transformers(W, D):
    max_lr = 3e-3
    ours = [warmup_cosine(t, max_lr=max_lr, min_lr=0.0, warmup_steps=W, decay_steps=D) for t in range(D + 1)]
    hf = _hf_rates(optimization.get_cosine_schedule_with_warmup, D + 2, max_lr, num_warmup_steps=W, num_training_steps=D)
    assert hf[0] == 0.0 and ours[0] == max_lr / W  # their first update does nothing; ours moves
    for t in range(W):  # warm-up: ours at t is theirs at t + 1
        assert ours[t] == pytest.approx(hf[t + 1], rel=1e-12)
    assert ours[W - 1] == max_lr and hf[W - 1] < max_lr == hf[W]
    for t in range(W, D + 1):  # decay: identical
        assert ours[t] == pytest.approx(hf[t], rel=1e-12, abs=1e-15)
    assert ours[D] == hf[D] == 0.0
    after = warmup_cosine(D + 1, max_lr=max_lr, min_lr=0.0, warmup_steps=W, decay_steps=D)
    assert after == 0.0 and hf[D + 1] > 0.0  # past D theirs rises again along the cosine; ours stays


def test_min_lr_matches_transformers_min_lr_schedule():
    W, D, max_lr, min_lr = 8, 50, 1e-3, 1e-4
    ours = [warmup_cosine(t, max_lr=max_lr, min_lr=min_lr, warmup_steps=W, decay_steps=D) for t in range(D + 1)]
    hf = _hf_rates(optimization.get_cosine_with_min_lr_schedule_with_warmup, D + 1, max_lr,
                   num_warmup_steps=W, num_training_steps=D, min_lr=min_lr)
    assert [round(x / max_lr * W) for x in hf[:W]] == list(range(W))  # 0, 1/W, ... (W-1)/W: the offset again
    for t in range(W):
        assert ours[t] == pytest.approx(hf[t + 1] if t + 1 < W else max_lr, rel=1e-12)
    for t in range(W, D + 1):
        assert ours[t] == pytest.approx(hf[t], rel=1e-12)
    assert ours[D] == pytest.approx(min_lr) and math.isclose(hf[D], min_lr)


def test_shifting_transformers_by_one_step_gives_ours():
    """The whole difference is the warm-up's numerator: HF's lambda at t + 1 during warm-up, at t after."""
    W, D, max_lr = 12, 80, 6e-4
    hf = _hf_rates(optimization.get_cosine_schedule_with_warmup, D + 1, max_lr, num_warmup_steps=W, num_training_steps=D)
    shifted = [hf[t + 1] if t < W else hf[t] for t in range(D)]
    ours = [warmup_cosine(t, max_lr=max_lr, min_lr=0.0, warmup_steps=W, decay_steps=D) for t in range(D)]
    assert ours == pytest.approx(shifted, rel=1e-12)
