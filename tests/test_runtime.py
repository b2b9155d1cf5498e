import random

import numpy as np
import pytest
import torch

from mathllm import runtime


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.get_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_available", lambda: True)
    assert runtime.get_device("auto").type == "mps"
    monkeypatch.setattr(runtime, "_mps_available", lambda: False)
    assert runtime.get_device("auto") == torch.device("cpu")
    assert runtime.get_device("cpu") == torch.device("cpu")


def test_unavailable_or_unknown_device_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_available", lambda: False)
    with pytest.raises(RuntimeError, match="'cuda' was asked for"):
        runtime.get_device("cuda")
    with pytest.raises(RuntimeError, match="'mps' was asked for"):
        runtime.get_device("mps")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        runtime.get_device("tpu")
    with pytest.raises(TypeError, match="must be a str"):
        runtime.get_device(0)


def test_autocast_dtype(monkeypatch):
    assert runtime.autocast_dtype("cpu") == torch.float32
    def t4(including_emulation=True):  # a T4 (sm_75) emulates bf16: supported only with emulation
        return including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert runtime.autocast_dtype(torch.device("cuda")) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", t4)
    assert runtime.autocast_dtype(torch.device("cuda")) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert runtime.autocast_dtype(torch.device("cuda")) == torch.float16
    assert runtime.needs_grad_scaler(torch.float16)
    assert not runtime.needs_grad_scaler(torch.bfloat16) and not runtime.needs_grad_scaler(torch.float32)


def test_seed_everything_makes_every_generator_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    gen = runtime.seed_everything(123)
    first, g1 = draw(), torch.rand(3, generator=gen)
    gen = runtime.seed_everything(123)
    assert draw() == first
    assert torch.equal(torch.rand(3, generator=gen), g1)
    with pytest.raises(ValueError, match="non-negative int"):
        runtime.seed_everything(-1)


def test_budget_default_and_override(monkeypatch):
    monkeypatch.delenv(runtime.BUDGET_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.budget() == "small" and runtime.pick(small=1, full=2) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.budget() == "full" and runtime.pick(small=1, full=2) == 2
    monkeypatch.setenv(runtime.BUDGET_ENV, "small")
    assert runtime.pick(small="a", full="b") == "a"
    monkeypatch.setenv(runtime.BUDGET_ENV, " FULL ")
    assert runtime.budget() == "full"


def test_unknown_budget_is_an_error(monkeypatch):
    monkeypatch.setenv(runtime.BUDGET_ENV, "medium")
    with pytest.raises(ValueError, match="MATHLLM_BUDGET='medium' is not a budget: expected one of small, full"):
        runtime.budget()


def test_describe_names_device_and_budget(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_available", lambda: False)
    monkeypatch.setenv(runtime.BUDGET_ENV, "small")
    line = runtime.describe()
    assert "device cpu" in line and "budget small" in line and torch.__version__ in line


def test_seed_switch_shifts_every_seed_and_is_the_identity_when_unset(monkeypatch):
    monkeypatch.delenv("MATHLLM_SEED", raising=False)
    assert runtime.seed_offset() == 0 and runtime.seed(7) == 7
    a = torch.randn(3, generator=runtime.generator(7))
    assert torch.equal(a, torch.randn(3, generator=torch.Generator().manual_seed(7)))   # bit for bit as before
    monkeypatch.setenv("MATHLLM_SEED", "2")
    assert runtime.seed_offset() == 2 and runtime.seed(7) == 7 + 2 * runtime.SEED_STRIDE
    b = torch.randn(3, generator=runtime.generator(7))
    assert not torch.equal(a, b)                               # another draw...
    assert torch.equal(b, torch.randn(3, generator=runtime.generator(7)))   # ...that repeats
    assert runtime.seed(0) != runtime.seed(1)                  # a chapter's streams stay distinct
    runtime.seed_everything(7)
    c = torch.randn(3)
    runtime.manual_seed(7)
    assert torch.equal(c, torch.randn(3))
    runtime.seed_everything(7, shift=False)                    # a program's own --seed is used as given
    assert torch.equal(torch.randn(3), a)
    assert "MATHLLM_SEED=2" in runtime.describe()


@pytest.mark.parametrize("raw", ["-1", "one", "1.5"])
def test_seed_switch_rejects_what_is_not_a_seed(monkeypatch, raw):
    monkeypatch.setenv("MATHLLM_SEED", raw)
    with pytest.raises(ValueError, match="MATHLLM_SEED"):
        runtime.seed(0)
