"""Tests for mathllm.lora: the adapter against the formula W + (alpha / r) B A written out with
torch.nn.functional.linear and torch.autograd, exact identity at initialisation, frozen bases,
merge and unmerge, exact parameter counts, the optimizer's measured state, and bad input."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mathllm.data import TokenData
from mathllm.lora import (LoRAConfig, LoRALinear, apply_lora, count_parameters, fine_tune_trainer, freeze_base,
                          lora_layers, lora_param_count, lora_targets, merge_lora, optimizer_state_bytes,
                          remove_lora, unmerge_lora)
from mathllm.train import TrainConfig
from mathllm.transformer import GPT, GPTConfig

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds

TIGHT = dict(rtol=1e-12, atol=1e-12)  # float64: only the order of additions differs
ALL = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")


def tiny_gpt(seed=0, dtype=torch.float64, **overrides):
    torch.manual_seed(seed)
    return GPT(GPTConfig.tiny(**overrides)).to(dtype)


def randomize_B(model, seed=1):
    """Give every adapter a nonzero B, so Delta W != 0 (at initialisation B = 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.B.copy_(0.1 * torch.randn(layer.B.shape, generator=g, dtype=layer.B.dtype))


def ids(model, B=3, T=16, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(model.config.vocab_size, (B, T), generator=g)


# ---------------------------------------------------------------------------- the layer
@pytest.mark.parametrize("d_in,d_out,rank,alpha,bias", [(8, 12, 1, 1.0, True), (16, 16, 4, 8.0, False),
                                                         (32, 6, 6, 3.0, True), (5, 40, 5, 16.0, True)])
def test_layer_equals_formula_forward_and_backward(d_in, d_out, rank, alpha, bias):
    torch.manual_seed(0)
    base = nn.Linear(d_in, d_out, bias=bias).double()
    layer = LoRALinear(base, rank, alpha, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        layer.B.normal_()
    x = torch.randn(2, 7, d_in, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    # reference: one linear map with the adapted weight, differentiated by autograd
    A = layer.A.detach().clone().requires_grad_()
    B = layer.B.detach().clone().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    bias = None if base.bias is None else base.bias.detach()
    y_ref = F.linear(x_ref, base.weight.detach() + alpha / rank * B @ A, bias)
    torch.testing.assert_close(y, y_ref, **TIGHT)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(layer.A.grad, A.grad, **TIGHT)
    torch.testing.assert_close(layer.B.grad, B.grad, **TIGHT)
    torch.testing.assert_close(x.grad, x_ref.grad, **TIGHT)
    assert torch.linalg.matrix_rank(layer.delta_weight()) == rank  # Delta W = (alpha/r) B A has rank r here
    assert layer.scaling == alpha / rank


def test_layer_init_statistics():
    base = nn.Linear(256, 64)
    layer = LoRALinear(base, 32, 32.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(layer.B, torch.zeros(64, 32))
    assert layer.A.std().item() == pytest.approx(256 ** -0.5, rel=0.05)  # std 1 / sqrt(d_in)
    custom = LoRALinear(base, 4, 1.0, init_std=0.5, generator=torch.Generator().manual_seed(0))
    assert custom.A.std().item() == pytest.approx(0.5, rel=0.15)
    same = LoRALinear(base, 32, 32.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(layer.A, same.A)  # the generator decides A


# ---------------------------------------------------------------------------- the model
@pytest.mark.parametrize("targets", [("attn.qkv",), ("attn.qkv", "attn.proj"), ALL, ("qkv", "fc")])
@pytest.mark.parametrize("rank", [1, 4, 32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lora_at_init_equals_base(targets, rank, dtype):
    model = tiny_gpt(dtype=dtype)
    base = copy.deepcopy(model)
    apply_lora(model, LoRAConfig(rank=rank, alpha=2.0 * rank, targets=targets))
    idx = ids(model)
    y = torch.randint(model.config.vocab_size, idx.shape)
    (logits, loss), (logits0, loss0) = model(idx, y), base(idx, y)
    assert torch.equal(logits, logits0) and torch.equal(loss, loss0)  # B = 0: the very same numbers


@pytest.mark.parametrize("targets,expected", [
    (("attn.qkv",), ["blocks.0.attn.qkv", "blocks.1.attn.qkv"]),
    (("proj",), ["blocks.0.attn.proj", "blocks.0.mlp.proj", "blocks.1.attn.proj", "blocks.1.mlp.proj"]),
    (("blocks.1.mlp.fc", "attn.qkv"), ["blocks.0.attn.qkv", "blocks.1.attn.qkv", "blocks.1.mlp.fc"]),
])
def test_targets_by_name(targets, expected):
    assert lora_targets(tiny_gpt(), targets) == expected
    model = apply_lora(tiny_gpt(), LoRAConfig(rank=2, targets=targets))
    assert sorted(lora_layers(model)) == sorted(expected)


@pytest.mark.parametrize("targets", [("attn.qkv",), ALL])
def test_gradient_flows_only_to_A_and_B(targets):
    model = apply_lora(tiny_gpt(), LoRAConfig(rank=4, targets=targets))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    idx = ids(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(2):
        model(idx, torch.roll(idx, 1, dims=1))[1].backward()
        for name, p in model.named_parameters():
            adapter = name.endswith((".A", ".B"))
            assert p.requires_grad == adapter, name
            if not adapter:
                assert p.grad is None, name
        for layer in lora_layers(model).values():
            assert layer.B.grad.abs().sum() > 0
            # dL/dA = (alpha/r) B^T dL/dh x^T is exactly zero while B = 0, nonzero after a step
            assert (layer.A.grad.abs().sum() > 0) == (step > 0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]) != k.endswith((".A", ".B")), k  # the base is bit-for-bit unchanged
    assert len(opt.param_groups[0]["params"]) == 2 * len(lora_layers(model))


def test_freeze_base_and_unfrozen_apply():
    model = apply_lora(tiny_gpt(), LoRAConfig(rank=2), freeze=False)
    trainable, total = count_parameters(model)
    assert trainable == total
    freeze_base(model)
    assert count_parameters(model)[0] == lora_param_count(tiny_gpt(), LoRAConfig(rank=2))


@pytest.mark.parametrize("targets", [("attn.qkv",), ALL])
@pytest.mark.parametrize("rank", [1, 8])
def test_merge_and_unmerge(targets, rank):
    model = apply_lora(tiny_gpt(), LoRAConfig(rank=rank, alpha=4.0, targets=targets))
    randomize_B(model)
    weights = {n: m.base.weight.clone() for n, m in lora_layers(model).items()}
    idx = ids(model)
    logits = model(idx)[0]
    merge_lora(model)
    for name, layer in lora_layers(model).items():
        torch.testing.assert_close(layer.base.weight, weights[name] + layer.delta_weight(), rtol=0, atol=0)
    torch.testing.assert_close(model(idx)[0], logits, **TIGHT)
    unmerge_lora(model)
    for name, layer in lora_layers(model).items():  # (W + D) - D = W up to one rounding per entry
        torch.testing.assert_close(layer.base.weight, weights[name], rtol=0, atol=1e-16)
    torch.testing.assert_close(model(idx)[0], logits, **TIGHT)


def test_merge_float32():
    model = apply_lora(tiny_gpt(dtype=torch.float32), LoRAConfig(rank=4, targets=ALL))
    randomize_B(model)
    idx = ids(model)
    logits = model(idx)[0]
    torch.testing.assert_close(merge_lora(model)(idx)[0], logits, rtol=1e-5, atol=1e-5)


def test_remove_lora_gives_plain_model():
    model = apply_lora(tiny_gpt(), LoRAConfig(rank=3, targets=ALL))
    randomize_B(model)
    idx = ids(model)
    logits = model(idx)[0]
    plain = remove_lora(model)
    assert not lora_layers(plain)
    fresh = GPT(plain.config).double()
    fresh.load_state_dict(plain.state_dict(), strict=True)
    torch.testing.assert_close(fresh(idx)[0], logits, **TIGHT)


def test_merge_errors():
    model = apply_lora(tiny_gpt(), LoRAConfig(rank=2))
    with pytest.raises(RuntimeError, match="not merged"):
        unmerge_lora(model)
    merge_lora(model)
    with pytest.raises(RuntimeError, match="merged already"):
        merge_lora(model)
    with pytest.raises(ValueError, match="no LoRA adapters"):
        merge_lora(tiny_gpt())
    with pytest.raises(ValueError, match="no LoRA adapters"):
        unmerge_lora(tiny_gpt())


# ---------------------------------------------------------------------------- counting
@pytest.mark.parametrize("rank", [1, 2, 8])
@pytest.mark.parametrize("targets", [("attn.qkv",), ("attn.qkv", "attn.proj"), ALL])
@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
def test_parameter_counts_exact(rank, targets, mlp):
    model = tiny_gpt(mlp=mlp)
    total0 = count_parameters(model)[1]
    n = lora_param_count(model, LoRAConfig(rank=rank, targets=targets))
    apply_lora(model, LoRAConfig(rank=rank, targets=targets))
    assert count_parameters(model) == (n, total0 + n)
    assert n == sum(m.A.numel() + m.B.numel() for m in lora_layers(model).values())


def test_parameter_count_known_answers():
    # tiny: C = 32, L = 2, H = 4C: per layer r (C + 3C) + r (C + C) + r (C + H) + r (H + C) = 16 r C
    assert lora_param_count(tiny_gpt(), LoRAConfig(rank=4, targets=ALL)) == 2 * 16 * 4 * 32
    # GPT-2 small, r = 8 on the attention matrices: 12 layers x 8 x (4 x 768 + 2 x 768) = 442,368
    with torch.device("meta"):
        gpt2 = GPT(GPTConfig.gpt2_small())
    config = LoRAConfig(rank=8, targets=("attn.qkv", "attn.proj"))
    assert lora_param_count(gpt2, config) == 442_368
    apply_lora(gpt2, config)
    assert count_parameters(gpt2) == (442_368, 124_439_808 + 442_368)


@pytest.mark.parametrize("fused", [False, True])
def test_optimizer_state_bytes(fused):
    model = apply_lora(tiny_gpt(dtype=torch.float32), LoRAConfig(rank=4, targets=ALL))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, fused=fused)
    assert optimizer_state_bytes(opt) == 0  # AdamW creates its state at the first step
    idx = ids(model)
    model(idx, idx)[1].backward()
    opt.step()
    trainable = count_parameters(model)[0]
    # m and v: two float32 numbers per trainable parameter, and one float32 step count per tensor
    assert optimizer_state_bytes(opt) == 2 * 4 * trainable + 4 * len(params)


# ---------------------------------------------------------------------------- the trainer
def token_data(tmp_path, vocab=65, n=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids_ = torch.randint(vocab, (n,), generator=g).tolist()
    return TokenData.write(tmp_path / "data", ids_[: 3 * n // 4], ids_[3 * n // 4:], vocab_size=vocab)


@pytest.mark.parametrize("lora", [None, LoRAConfig(rank=2, targets=ALL)])
def test_fine_tune_trainer(tmp_path, lora):
    model = tiny_gpt(dtype=torch.float32)
    frozen = copy.deepcopy(model.state_dict())
    config = TrainConfig(batch_size=4, max_steps=3, lr=1e-2, min_lr=1e-3, warmup_steps=1, eval_interval=0,
                         out_dir="", progress=False)
    trainer = fine_tune_trainer(model, config, token_data(tmp_path), lora)
    idx = ids(model)
    torch.testing.assert_close(trainer.model(idx)[0], model(idx)[0], rtol=0, atol=0)  # starts where model is
    trainable = count_parameters(trainer.model)[0]
    n_opt = sum(p.numel() for g in trainer.optimizer.param_groups for p in g["params"])
    assert n_opt == trainable == (count_parameters(model)[0] if lora is None else lora_param_count(model, lora))
    trainer.train()
    assert trainer.step == 3 and len(trainer.losses) == 3
    for k, v in model.state_dict().items():
        assert torch.equal(v, frozen[k])  # the pre-trained model passed in is never touched
    state = {k.replace(".base.", "."): v for k, v in trainer.model.state_dict().items()
             if not k.endswith((".A", ".B"))}
    assert state.keys() == frozen.keys()
    unchanged = all(torch.equal(state[k], frozen[k]) for k in frozen)
    assert unchanged == (lora is not None)  # LoRA trains the adapters only; full fine-tuning moves the weights


@pytest.mark.parametrize("lora", [None, LoRAConfig(rank=2, targets=ALL)])
def test_fine_tune_resumes_exactly(tmp_path, lora):
    """A fine-tuning run (full or LoRA) stopped after 3 steps and resumed from its checkpoint equals an
    uninterrupted one: the base weights and adapters are rebuilt before the checkpoint loads."""
    model = tiny_gpt(dtype=torch.float32)
    data = token_data(tmp_path)

    def config(name, **kw):
        return TrainConfig(batch_size=4, max_steps=6, lr=1e-2, min_lr=1e-3, warmup_steps=1, eval_interval=0,
                           out_dir=str(tmp_path / name), progress=False, model=model.config, **kw)

    straight = fine_tune_trainer(model, config("a"), data, lora, generator=torch.Generator().manual_seed(5))
    straight.train()
    first = fine_tune_trainer(model, config("b"), data, lora, generator=torch.Generator().manual_seed(5))
    first.train(steps=3)
    torch.manual_seed(99)  # whatever happens in between must not matter
    resumed = fine_tune_trainer(model, config("b", resume=True), data, lora, generator=torch.Generator().manual_seed(5))
    assert resumed.step == 3
    resumed.train()
    assert resumed.losses == straight.losses and len(resumed.losses) == 6
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)


def test_fine_tune_trainer_errors(tmp_path):
    model = tiny_gpt(dtype=torch.float32)
    config = TrainConfig(batch_size=4, max_steps=2, warmup_steps=1, eval_interval=0, out_dir="", progress=False)
    data = token_data(tmp_path)
    with pytest.raises(TypeError, match="GPT"):
        fine_tune_trainer(nn.Linear(2, 2), config, data)
    with pytest.raises(TypeError, match="TrainConfig"):
        fine_tune_trainer(model, {"lr": 1e-3}, data)
    with pytest.raises(ValueError, match="compile=False"):
        fine_tune_trainer(model, TrainConfig(**{**config.__dict__, "compile": True}), data)
    with pytest.raises(ValueError, match="tokenizer"):
        fine_tune_trainer(model, config, token_data(tmp_path / "big", vocab=100))
    with pytest.raises(ValueError, match="adapters"):
        fine_tune_trainer(apply_lora(tiny_gpt(dtype=torch.float32), LoRAConfig(rank=2)), config, data)


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("rank", [0, -1, 33, 2.5, True])
def test_bad_rank(rank):
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(nn.Linear(32, 64), rank, 1.0)


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(rank=0), ValueError, "rank must be a positive int"),
    (dict(rank=-3), ValueError, "rank must be a positive int"),
    (dict(rank=4.0), ValueError, "rank must be a positive int"),
    (dict(alpha=0.0), ValueError, "alpha"),
    (dict(alpha=-1.0), ValueError, "alpha"),
    (dict(targets="attn.qkv"), TypeError, "tuple of module names"),
    (dict(targets=()), TypeError, "tuple of module names"),
    (dict(init_std=0.0), ValueError, "init_std"),
])
def test_bad_config(kwargs, err, match):
    with pytest.raises(err, match=match):
        LoRAConfig(**kwargs)


def test_bad_model_input():
    with pytest.raises(ValueError, match=r"rank must be an int in \[1, min\(d_in, d_out\)\] = \[1, 32\]"):
        apply_lora(tiny_gpt(), LoRAConfig(rank=33))  # C = 32: the (32, 32) projection caps r at 32
    with pytest.raises(ValueError, match="exceeds min"):
        lora_param_count(tiny_gpt(), LoRAConfig(rank=33))
    with pytest.raises(ValueError, match="no module of the model is named 'attn.q'.*attn.qkv"):
        apply_lora(tiny_gpt(), LoRAConfig(rank=2, targets=("attn.q",)))
    with pytest.raises(ValueError, match="no module"):
        lora_targets(tiny_gpt(), ["attention"])
    with pytest.raises(TypeError, match="selects blocks.0.attn, a MultiHeadAttention"):
        apply_lora(tiny_gpt(), LoRAConfig(rank=2, targets=("attn",)))
    with pytest.raises(ValueError, match="tied"):
        apply_lora(tiny_gpt(), LoRAConfig(rank=2, targets=("lm_head",)))
    untied = apply_lora(tiny_gpt(tie_weights=False), LoRAConfig(rank=2, targets=("lm_head",)))
    assert list(lora_layers(untied)) == ["lm_head"]
    twice = apply_lora(tiny_gpt(), LoRAConfig(rank=2))
    with pytest.raises(ValueError, match="already"):
        apply_lora(twice, LoRAConfig(rank=2))
    with pytest.raises(TypeError, match="LoRAConfig"):
        apply_lora(tiny_gpt(), {"rank": 2})
    with pytest.raises(TypeError, match="wraps an nn.Linear"):
        LoRALinear(nn.Conv1d(2, 2, 1), 1, 1.0)
    with pytest.raises(TypeError, match="str"):
        lora_targets(tiny_gpt(), "attn.qkv")


@pytest.mark.parametrize("fn", [count_parameters, freeze_base, lora_layers, merge_lora, unmerge_lora, remove_lora])
def test_model_functions_refuse_what_is_not_a_module(fn):
    """Issue 15: a tensor or a number gave "'Tensor' object has no attribute 'named_modules'"; now the
    TypeError names ``model``. A state dict (a common mix-up) is refused the same way."""
    for bad in (torch.zeros(2, 3), 1.0, None, tiny_gpt().state_dict()):
        with pytest.raises(TypeError, match=f"model must be a Module, got {type(bad).__name__}"):
            fn(bad)


def test_optimizer_state_bytes_refuses_what_is_not_an_optimizer():
    model = tiny_gpt(dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters())
    assert optimizer_state_bytes(opt) == 0  # no step yet: AdamW allocates m and v lazily
    with pytest.raises(TypeError, match="optimizer must be an Optimizer, got dict"):
        optimizer_state_bytes(opt.state_dict())  # before: "'dict' object has no attribute 'state'"
