"""The trainer: exact resumption, gradient accumulation, optimizer groups, precision, the command line."""
import dataclasses
import json
import math
import re

import pytest
import torch

from mathllm import train as train_mod
from mathllm.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from mathllm.data import TokenData
from mathllm.sample import generate_text, load_model
from mathllm.sample import main as sample_main
from mathllm.train import (PRESETS, TrainConfig, Trainer, build_parser, config_from_dict, config_to_dict, mfu,
                           param_groups, parse_config)
from mathllm.transformer import GPT, GPTConfig


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    text = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
            "First Citizen:\nYou are all resolved rather to die than to famish?\n") * 40
    from mathllm.char_tokenizer import CharTokenizer
    return TokenData.from_text(tmp_path_factory.mktemp("data"), text, CharTokenizer.train(text))


def tiny(tmp_path, **overrides):
    base = dict(model=GPTConfig.tiny(block_size=16, dropout=0.1), batch_size=4, max_steps=8, lr=3e-3, min_lr=3e-4,
                warmup_steps=2, eval_interval=3, eval_batches=2, log_interval=2, out_dir=str(tmp_path), progress=False)
    return TrainConfig(**(base | overrides))


def params_of(trainer):
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


# ---------------------------------------------------------------------------- resumption
@pytest.mark.parametrize("order", ["random", "sequential"])
def test_resume_is_bitwise_identical(tmp_path, data, order):
    """N steps straight == N/2 steps, a checkpoint, a fresh process state, N/2 steps (dropout on)."""
    straight = Trainer(tiny(tmp_path / "a", data_order=order), data)
    straight.train()
    first = Trainer(tiny(tmp_path / "b", data_order=order, max_steps=8), data)
    first.train(steps=4)
    first.save()
    torch.manual_seed(12345)  # anything that happens in between must not matter
    torch.rand(100)
    second = Trainer(tiny(tmp_path / "b", data_order=order, resume=True), data)
    assert second.step == 4
    second.train()
    assert second.losses == straight.losses and len(straight.losses) == 8
    a, b = params_of(straight), params_of(second)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = straight.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    evals = lambda t: [r["val_loss"] for r in t.history if r["kind"] == "eval"]
    assert evals(second) == evals(straight)


def test_checkpoint_holds_the_whole_state(tmp_path, data):
    trainer = Trainer(tiny(tmp_path), data)
    trainer.train(steps=3)
    state = load_checkpoint(trainer.save())
    assert state["step"] == 3 and len(state["losses"]) == 3
    assert {"model", "optimizer", "scaler", "schedule", "rng", "data", "config", "model_config", "tokenizer"} <= state.keys()
    assert config_from_dict(state["config"]) == trainer.config
    assert state["schedule"] == {"name": "warmup_cosine", "max_lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 2, "decay_steps": 8}
    assert {"python", "numpy", "torch"} <= state["rng"][0].keys()


def test_keep_last_and_metrics_files(tmp_path, data):
    trainer = Trainer(tiny(tmp_path, ckpt_interval=2, keep_last=2), data)
    trainer.train()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_00000006.pt", "ckpt_00000008.pt"]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [0, 3, 6, 8]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [2, 4, 6, 8]
    assert all(r["tokens_per_s"] > 0 and r["mfu"] is None for r in rows if r["kind"] == "train")
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_mismatched_model_refuses_to_resume(tmp_path, data):
    Trainer(tiny(tmp_path, max_steps=2, eval_interval=0), data).train()
    with pytest.raises(ValueError, match="holds a model with config"):
        Trainer(tiny(tmp_path, model=GPTConfig.tiny(block_size=16, n_layer=3), resume=True), data)


# ---------------------------------------------------------------------------- one step
def test_accumulation_equals_one_big_batch(tmp_path, data):
    """G micro-batches of B rows, each loss divided by G == one batch of G B rows (the same rows)."""
    common = dict(model=GPTConfig.tiny(block_size=16), max_steps=3, warmup_steps=1, eval_interval=0, out_dir="", grad_clip=0.5)
    big = Trainer(TrainConfig(batch_size=8, grad_accum=1, **common), data)
    small = Trainer(TrainConfig(batch_size=2, grad_accum=4, **common), data)
    for _ in range(3):
        big.train_step(), small.train_step()
    torch.testing.assert_close(small._flush(), big._flush(), rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(big.model.named_parameters(), small.model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6, msg=name)


def test_param_groups_decay_matrices_only():
    model = GPT(GPTConfig.tiny())
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    n = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert n == model.num_params(non_embedding=False)  # every parameter once, the tied matrix too


def test_clipping_bounds_the_update(tmp_path, data):
    """Clipping projects the gradient onto the ball of radius grad_clip: the optimizer sees norm = grad_clip."""
    trainer = Trainer(tiny(tmp_path, grad_clip=1e-3, out_dir=""), data)
    seen = {}
    real_step = trainer.optimizer.step

    def spy(*args, **kwargs):
        seen["norm"] = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.model.parameters()])).item()
        return real_step(*args, **kwargs)

    trainer.optimizer.step = spy
    trainer.train_step()
    assert seen["norm"] == pytest.approx(1e-3, rel=1e-4)


def test_mathllm_adamw_trains_like_torch(tmp_path, data):
    runs = {}
    for name in ("torch", "mathllm"):
        t = Trainer(tiny(tmp_path, optimizer=name, out_dir="", eval_interval=0, model=GPTConfig.tiny(block_size=16)), data)
        t.train()
        runs[name] = t
    torch.testing.assert_close(runs["mathllm"].losses, runs["torch"].losses, rtol=1e-5, atol=1e-5)
    for p, q in zip(runs["torch"].model.parameters(), runs["mathllm"].model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)


def test_learning_rate_schedule_is_applied(tmp_path, data):
    trainer = Trainer(tiny(tmp_path, out_dir=""), data)
    lrs = []
    for _ in range(8):
        trainer.train_step()
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(3e-3 / 2) and lrs[1] == pytest.approx(3e-3)
    assert lrs[-1] == pytest.approx(3e-4 + (3e-3 - 3e-4) * 0.5 * (1 + math.cos(math.pi * 5 / 6)))
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))


@pytest.mark.parametrize("dtype, scaled", [("bfloat16", False), ("float16", True)])
def test_mixed_precision_on_cpu(tmp_path, data, dtype, scaled):
    trainer = Trainer(tiny(tmp_path, dtype=dtype, out_dir="", max_steps=4), data)
    assert trainer.scaler.is_enabled() == scaled and trainer.dtype == getattr(torch, dtype)
    trainer.train()
    assert all(math.isfinite(v) for v in trainer.losses) and trainer.losses[-1] < trainer.losses[0]
    assert next(trainer.model.parameters()).dtype == torch.float32  # autocast keeps fp32 master weights


def test_compile_failure_falls_back_to_eager(tmp_path, data, monkeypatch):
    def broken(model, *args, **kwargs):
        raise RuntimeError("no C++ compiler on this machine")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(UserWarning, match="torch.compile failed .*no C\\+\\+ compiler.*training eagerly"):
        trainer = Trainer(tiny(tmp_path, compile=True, out_dir=""), data)
    assert trainer.compiled is False and trainer.train_model is trainer.model
    assert all(p.grad is None for p in trainer.model.parameters())
    trainer.train()
    assert len(trainer.losses) == 8


def test_compiled_training_equals_eager_and_saves_plain_weights(tmp_path, data):
    """torch.compile for real (inductor, a C++ compiler): the same losses as eager, and checkpoints
    whose keys are the model's own (no ``_orig_mod.`` prefix), so an eager model loads them."""
    config = tiny(tmp_path / "eager", model=GPTConfig.tiny(block_size=16), max_steps=4, eval_interval=0)
    eager = Trainer(config, data)
    eager.train()
    compiled = Trainer(dataclasses.replace(config, compile=True, out_dir=str(tmp_path / "compiled")), data)
    assert compiled.compiled, "torch.compile fell back to eager on this machine"
    compiled.train()
    assert compiled.losses == pytest.approx(eager.losses, rel=1e-5)
    state = load_checkpoint(latest_checkpoint(tmp_path / "compiled"))["model"]
    assert state.keys() == eager.model.state_dict().keys()


def test_evaluate_reports_perplexity_and_bits(tmp_path, data):
    trainer = Trainer(tiny(tmp_path, out_dir=""), data)
    ev = trainer.evaluate()
    assert ev["val_perplexity"] == pytest.approx(math.exp(ev["val_loss"]))
    assert ev["val_bits_per_char"] == pytest.approx(ev["val_loss"] / math.log(2))  # one character per token
    V = trainer.model_config.vocab_size
    assert V == data.vocab_size and abs(ev["val_loss"] - math.log(V)) < 0.1  # untrained: near uniform over V ids


def test_samples_are_logged_and_reproducible(tmp_path, data):
    trainer = Trainer(tiny(tmp_path, sample_interval=4, sample_tokens=20, eval_interval=0), data)
    trainer.train()
    samples = [r["text"] for r in trainer.history if r["kind"] == "sample"]
    assert len(samples) == 2 and all(len(s) == 21 for s in samples)
    model, tok = load_model(tmp_path)
    a = generate_text(model, tok, "All:", 30, seed=3)
    assert a == generate_text(model, tok, "All:", 30, seed=3) and a[0].startswith("All:") and len(a[0]) == 34


def test_mfu_formula():
    assert mfu(6_000, 1e6, 1e12) == pytest.approx(6e9 / 1e12)
    assert mfu(6_000, 1e6, None) is None


# ---------------------------------------------------------------------------- configuration and CLI
@pytest.mark.parametrize("overrides, match", [
    (dict(batch_size=0), "batch_size must be an int >= 1"),
    (dict(dataset="wikipedia"), "dataset must be one of"),
    (dict(dtype="float8"), "dtype must be one of"),
    (dict(min_lr=1.0), "min_lr=1.0 must not exceed lr"),
    (dict(warmup_steps=50, max_steps=10), "warmup_steps=50 must not exceed"),
    (dict(dataset="file"), "needs data_path"),
    (dict(beta2=1.0), "beta1 and beta2 must be in"),
])
def test_bad_config(overrides, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**overrides)
    with pytest.raises(TypeError, match="model must be a GPTConfig"):
        TrainConfig(model={"n_layer": 2})


def test_presets_and_round_trip():
    for name, make in PRESETS.items():
        config = make()
        assert config_from_dict(json.loads(json.dumps(config_to_dict(config)))) == config, name
    assert PRESETS["shakespeare_char"]().model == GPTConfig.shakespeare_char()


def test_cli_overrides_any_field():
    config, _ = parse_config(["--preset", "shakespeare_char", "--n_layer=2", "--lr", "3e-4", "--compile",
                              "--progress=false", "--dataset", "file", "--data_path", "x.txt"])
    assert config.model.n_layer == 2 and config.model.n_embd == 384 and config.lr == 3e-4
    assert config.compile is True and config.progress is False and config.data_path == "x.txt"
    assert config.batch_size == 64  # untouched fields keep the preset's value


@pytest.mark.parametrize("argv, match", [
    (["--n_layers=3"], r"unknown option\(s\): --n_layers=3 \(did you mean --n_layer\?\)"),
    (["--n_layer=three"], "argument --n_layer: invalid int value: 'three'"),
    (["--compile=maybe"], "expected true or false"),
    (["--n_embd=30", "--n_head=4"], "invalid configuration: n_embd=30 must be divisible by n_head=4"),
    (["--preset=huge"], "invalid choice: 'huge'"),
])
def test_cli_errors_are_clear(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        parse_config(argv)
    assert e.value.code == 2
    assert re.search(match, capsys.readouterr().err)


def test_cli_help_comes_from_the_field_comments():
    text = " ".join(build_parser().format_help().split())
    assert "micro-batches per optimizer step (G); the loss is divided by G" in text
    assert "--n_embd" in text and "--grad_accum" in text


def test_cli_trains_and_samples(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text("to be or not to be, that is the question\n" * 50)
    out = tmp_path / "run"
    assert train_mod.main(["--preset=tiny", "--dataset=file", f"--data_path={text}", f"--out_dir={out}",
                           "--max_steps=4", "--warmup_steps=1", "--eval_interval=2", "--eval_batches=1", "--progress=false",
                           "--block_size=16"]) == 0
    assert latest_checkpoint(out).name == "ckpt_00000004.pt"
    assert '"val_loss"' in capsys.readouterr().out
    assert sample_main(["--checkpoint", str(out), "--prompt", "to be", "--max_new_tokens", "10", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("to be") and len(printed.rstrip("\n")) >= 15
    with pytest.raises(SystemExit):
        sample_main(["--checkpoint", str(tmp_path / "empty")])
    assert "does not exist" in capsys.readouterr().err
