"""The trainer: exact resumption, gradient accumulation, optimizer groups, precision, the command line."""
import csv
import dataclasses
import errno
import json
import math
import os
import re
import warnings

import pytest
import torch

from mathllm import train as train_mod
from mathllm.checkpoint import BEST_NAME, latest_checkpoint, list_checkpoints, load_checkpoint
from mathllm.data import TokenData
from mathllm.sample import generate_text, load_model
from mathllm.sample import main as sample_main
from mathllm.train import (PRESETS, TrainConfig, Trainer, build_parser, config_from_dict, config_to_dict, mfu,
                           param_groups, parse_config)
from mathllm.transformer import GPT, GPTConfig

pytestmark = pytest.mark.numerics  # iterative or statistical claims: rerun under other kernels and seeds


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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = Trainer(dataclasses.replace(config, compile=True, out_dir=str(tmp_path / "compiled")), data)
    if not compiled.compiled:
        # Whether inductor compiles on this CPU/kernel path (it raised BackendCompilerFailed under
        # ATEN_CPU_CAPABILITY=default on an Intel Xeon) is not the project's claim; the fallback is
        # tested above. Equality is checked wherever compilation works.
        reasons = "; ".join(str(w.message)[:200] for w in caught) or "no warning"
        pytest.skip(f"torch.compile fell back to eager on this machine: {reasons}")
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
    (dict(beta2=1.0), r"beta2 must be a finite number in \[0, 1\)"),
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
    assert "micro-batches per optimizer step over all processes (G); the loss is divided by G" in text
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


# ---------------------------------------------------------------------------- issue 15: robustness
TIMING = ("tokens_per_s", "ms_per_step", "mfu")


def metrics_without_timing(folder):
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


class Killed(Exception):
    """Stands in for a SIGKILL in the middle of a run."""


def run_until_killed(trainer, kill_at):
    real = trainer.train_step

    def step():
        if trainer.step == kill_at:
            raise Killed
        real()

    trainer.train_step = step
    with pytest.raises(Killed):
        trainer.train()


@pytest.mark.parametrize("overrides, name", [
    (dict(lr=math.inf), "lr"), (dict(lr=math.nan), "lr"), (dict(lr=0.0, min_lr=0.0), "lr"),
    (dict(grad_clip=math.nan), "grad_clip"), (dict(grad_clip=math.inf), "grad_clip"),
    (dict(val_fraction=1.5), "val_fraction"), (dict(val_fraction=0.0), "val_fraction"),
    (dict(min_lr=math.nan), "min_lr"), (dict(weight_decay=math.inf), "weight_decay"),
    (dict(beta1=math.nan), "beta1"), (dict(peak_tflops=math.nan), "peak_tflops"),
    (dict(bpe_vocab_size=0), "bpe_vocab_size"), (dict(progress="no"), "progress"),
])
def test_non_finite_and_out_of_range_numbers_are_refused(overrides, name):
    with pytest.raises(ValueError, match=f"^{name} must be"):
        TrainConfig(**overrides)


@pytest.mark.parametrize("option", ["--lr=inf", "--lr=nan", "--grad_clip=nan", "--val_fraction=1.5"])
def test_cli_refuses_bad_numbers_before_preparing_data(tmp_path, option, capsys):
    with pytest.raises(SystemExit) as e:
        train_mod.main([option, f"--out_dir={tmp_path / 'run'}", "--progress=false"])
    assert e.value.code == 2 and "must be a finite number" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing prepared, nothing written


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, data):
    trainer = Trainer(tiny(tmp_path, ckpt_interval=2, log_interval=1, eval_interval=0), data)
    trainer.train(steps=4)
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(math.nan)  # what lr=1e30 does after one step
    with pytest.raises(train_mod.TrainingDiverged, match=r"the training loss is nan at step 5 .*training stopped"):
        trainer.train()
    assert latest_checkpoint(tmp_path).name == "ckpt_00000004.pt"
    with pytest.raises(train_mod.TrainingDiverged, match="weights hold nan"):
        trainer.save()  # nor can a save slip one through
    assert all(torch.isfinite(v).all() for v in load_checkpoint(latest_checkpoint(tmp_path))["model"].values())


def test_cli_divergence_exits_non_zero_with_one_line(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text("to be or not to be, that is the question\n" * 50)
    code = train_mod.main(["--dataset=file", f"--data_path={text}", f"--out_dir={tmp_path / 'run'}", "--lr=1e30",
                           "--grad_clip=0", "--warmup_steps=0", "--max_steps=6", "--log_interval=1",
                           "--ckpt_interval=1", "--eval_interval=0", "--progress=false", "--block_size=16",
                           "--log_lines=false"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("error: the training loss is") and "\n" not in err, err
    for path in list_checkpoints(tmp_path / "run"):
        assert all(torch.isfinite(v).all() for v in load_checkpoint(path)["model"].values()), path


def test_resume_reproduces_samples_and_metrics(tmp_path, data):
    """A run killed mid-way and resumed writes the same samples and the same metrics.jsonl (but for the
    timing fields) as an uninterrupted run: no duplicated records, the sampling generator restored."""
    common = dict(sample_interval=2, sample_tokens=12, ckpt_interval=2, log_interval=1, eval_interval=3)
    straight = Trainer(tiny(tmp_path / "a", **common), data)
    straight.train()
    run_until_killed(Trainer(tiny(tmp_path / "b", **common), data), kill_at=5)  # records of step 5 written
    resumed = Trainer(tiny(tmp_path / "b", resume=True, **common), data)
    assert resumed.step == 4
    resumed.train()
    samples = lambda t: [r["text"] for r in t.history if r["kind"] == "sample"]
    assert samples(resumed) == samples(straight) and len(samples(straight)) == 4
    assert metrics_without_timing(tmp_path / "b") == metrics_without_timing(tmp_path / "a")
    rows = lambda d: [(r["kind"], r["step"]) for r in csv.DictReader(open(d / "metrics.csv"))]
    assert rows(tmp_path / "b") == rows(tmp_path / "a") and len(rows(tmp_path / "a")) == 8 + 4


def test_resume_removes_stale_temporary_files_of_ours_only(tmp_path, data):
    Trainer(tiny(tmp_path, max_steps=2, eval_interval=0), data).train()
    ours = ["ckpt_00000004.pt.0123456789ab.tmp", "ckpt_best.pt.abcdef012345.tmp", "metrics.jsonl.00112233aabb.tmp",
            "ckpt_00000003.pt.k2_x9a1b.tmp"]  # the last: the mkstemp name of older versions
    theirs = ["notes.tmp", "ckpt_00000002.pt.tmp", "model.0123456789ab.tmp", "ckpt_00000004.pt.0123456789ab.tmp.keep"]
    for name in ours + theirs:
        (tmp_path / name).write_bytes(b"half a checkpoint")
    Trainer(tiny(tmp_path, max_steps=4, eval_interval=0, resume=True, allow_config_change=True), data).train()
    left = {p.name for p in tmp_path.iterdir()}
    assert not left & set(ours) and set(theirs) <= left


@pytest.mark.parametrize("damage", ["empty", "garbage", "flipped"])
def test_resume_skips_a_damaged_newest_checkpoint(tmp_path, data, damage):
    straight = Trainer(tiny(tmp_path / "a"), data)
    straight.train()
    run_until_killed(Trainer(tiny(tmp_path / "b", ckpt_interval=2), data), kill_at=5)
    newest = tmp_path / "b" / "ckpt_00000004.pt"
    raw = newest.read_bytes()
    newest.write_bytes({"empty": b"", "garbage": b"not a zip file",
                        "flipped": raw[:-2000] + bytes([raw[-2000] ^ 1]) + raw[-1999:]}[damage])
    with pytest.warns(UserWarning, match=r"ckpt_00000004\.pt (is empty|cannot be read|is corrupt).*next older"):
        resumed = Trainer(tiny(tmp_path / "b", ckpt_interval=2, resume=True), data)
    assert resumed.step == 2
    resumed.train()
    assert resumed.losses == straight.losses


def test_resume_with_only_damaged_checkpoints_is_an_error(tmp_path, data):
    (tmp_path / "ckpt_00000002.pt").write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no good checkpoint in .*is empty"):
        Trainer(tiny(tmp_path, resume=True), data)


@pytest.mark.parametrize("change, listed", [
    (dict(batch_size=2), "batch_size: 4 -> 2"), (dict(lr=1e-3), "lr: 0.003 -> 0.001"),
    (dict(seed=7), "seed: 1337 -> 7"), (dict(max_steps=10), "max_steps: 8 -> 10"),
    (dict(seed=7, lr=1e-3), "lr: 0.003 -> 0.001; seed: 1337 -> 7"),
])
def test_resume_refuses_a_changed_configuration(tmp_path, data, change, listed):
    Trainer(tiny(tmp_path, max_steps=8, eval_interval=0), data).train(steps=2)
    with pytest.raises(ValueError, match=re.escape(listed) + ".*allow_config_change"):
        Trainer(tiny(tmp_path, resume=True, **change), data)
    resumed = Trainer(tiny(tmp_path, resume=True, allow_config_change=True, **change), data)
    assert resumed.step == 2
    # what may change: where files go, how often the run reports and saves, the progress bar
    assert Trainer(tiny(tmp_path, resume=True, eval_interval=0, log_interval=1, ckpt_interval=1, keep_last=5,
                        progress=True, sample_interval=1), data).step == 2


def test_empty_out_dir_cannot_resume(tmp_path, monkeypatch, capsys):
    with pytest.raises(ValueError, match="resuming needs out_dir"):
        TrainConfig(out_dir="", resume=True)
    with pytest.raises(ValueError, match="resuming needs out_dir"):
        TrainConfig(out_dir="", init_from="resume")
    monkeypatch.chdir(tmp_path)
    for argv in (["--out_dir=", "--resume"], ["--out_dir", ""]):
        with pytest.raises(SystemExit) as e:
            train_mod.main(argv)
        assert e.value.code == 2 and "out_dir" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_resume_and_init_from_are_one_setting():
    assert TrainConfig(resume=True).init_from == "resume" and TrainConfig(init_from="resume").resume is True
    assert TrainConfig(resume=True) == TrainConfig(init_from="resume")
    with pytest.raises(ValueError, match="contradicts"):
        TrainConfig(resume=True, init_from="some/ckpt.pt")
    config, _ = parse_config(["--resume"])
    assert config.init_from == "resume"


def cli_run(tmp_path, *extra, name="run"):
    text = tmp_path / "corpus.txt"
    if not text.exists():
        text.write_text("to be or not to be, that is the question\n" * 50)
    return ["--dataset=file", f"--data_path={text}", f"--out_dir={tmp_path / name}", "--max_steps=4",
            "--warmup_steps=1", "--eval_interval=2", "--eval_batches=1", "--progress=false", "--block_size=16",
            "--log_interval=2", *extra]


@pytest.mark.parametrize("case", ["budget", "cuda", "checksum", "missing", "no_space", "no_space_plain"])
def test_cli_late_errors_are_one_line(tmp_path, monkeypatch, capsys, case):
    argv = cli_run(tmp_path)
    if case == "budget":
        monkeypatch.setenv("MATHLLM_BUDGET", "huge")
        expect = "MATHLLM_BUDGET='huge' is not a budget"
    elif case == "cuda":
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        argv.append("--device=cuda")
        expect = "device 'cuda' was asked for"
    elif case == "checksum":
        argv = [a for a in argv if not a.startswith("--data")] + [f"--data_path={tmp_path / 'corpus.txt'}"]
        argv.append("--dataset=tinyshakespeare")
        expect = "SHA-256"
    elif case == "missing":
        argv.append(f"--data_path={tmp_path / 'nowhere.txt'}")
        expect = "nowhere.txt"
    else:
        import mathllm.checkpoint as checkpoint_mod

        def full_disk(*args, **kwargs):
            if case == "no_space_plain":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            try:  # what torch.save does: the writer's OSError surfaces inside a RuntimeError
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError as e:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0") from e

        monkeypatch.setattr(checkpoint_mod.torch, "save", full_disk)
        expect = f"[Errno {errno.ENOSPC}] cannot write {tmp_path / 'run'}"
    assert train_mod.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert expect in err, err
    if case.startswith("no_space"):
        assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]  # no temporary left


def test_cli_prints_a_line_per_log_and_eval_without_a_bar(tmp_path, capsys):
    assert train_mod.main(cli_run(tmp_path)) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("step ")]
    assert [line.split("|")[0].strip() for line in lines] == ["step 0/4", "step 2/4", "step 2/4", "step 4/4",
                                                              "step 4/4"]
    train_line = lines[1]
    for part in ("loss ", "lr ", "grad norm ", "ms/step", "tok/s"):
        assert part in train_line, train_line
    assert "val loss" in lines[2]


def test_log_lines_go_through_the_bar_when_one_is_shown(tmp_path, data, capsys):
    Trainer(tiny(tmp_path, out_dir="", progress=True, log_lines=True, eval_interval=4), data).train()
    out = capsys.readouterr()
    assert sum(line.startswith("step ") for line in (out.out + out.err).splitlines()) == 4 + 3  # 4 logs, 3 evals


def test_grad_norm_is_logged_before_clipping(tmp_path, data, monkeypatch):
    import mathllm.trainer as trainer_mod
    trainer = Trainer(tiny(tmp_path, grad_clip=1e-3, out_dir="", log_interval=1), data)
    seen = []
    real = trainer_mod.clip_grad_norm

    def spy(params, *args, **kwargs):
        params = list(params)
        seen.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item())
        return real(params, *args, **kwargs)

    monkeypatch.setattr(trainer_mod, "clip_grad_norm", spy)
    trainer.train()
    logged = [r["grad_norm"] for r in trainer.history if r["kind"] == "train"]
    assert logged == pytest.approx(seen, rel=1e-5) and min(logged) > 1e-2  # far above the clip: before clipping
    unclipped = Trainer(tiny(tmp_path, grad_clip=0.0, out_dir="", log_interval=1), data)
    unclipped.train(steps=1)
    assert unclipped.grad_norms == pytest.approx(seen[:1], rel=1e-5)  # also computed without clipping


def test_csv_log_and_best_checkpoint(tmp_path, data):
    trainer = Trainer(tiny(tmp_path, max_steps=12, eval_interval=2), data)
    trainer.train()
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    jsonl = [r for r in trainer.history if r["kind"] in ("train", "eval")]
    assert [(r["kind"], int(r["step"])) for r in rows] == [(r["kind"], r["step"]) for r in jsonl]
    assert all(float(r["grad_norm"]) > 0 for r in rows if r["kind"] == "train")
    evals = [r for r in trainer.history if r["kind"] == "eval" and r["step"] > 0]
    best = min(evals, key=lambda r: r["val_loss"])
    state = load_checkpoint(tmp_path / BEST_NAME)
    assert state["step"] == best["step"] and trainer.best_val_loss == best["val_loss"]
    assert BEST_NAME not in [p.name for p in list_checkpoints(tmp_path)]  # not rotated away, not resumed from


def test_cli_init_from_resume_path_and_eval_only(tmp_path, capsys):
    assert train_mod.main(cli_run(tmp_path, "--max_steps=2")) == 0
    assert train_mod.main(cli_run(tmp_path, "--max_steps=4", "--init_from=resume", "--allow_config_change")) == 0
    assert latest_checkpoint(tmp_path / "run").name == "ckpt_00000004.pt"
    assert "resumed from" in capsys.readouterr().out
    source = tmp_path / "run" / "ckpt_00000004.pt"
    assert train_mod.main(cli_run(tmp_path, f"--init_from={source}", "--max_steps=1", "--warmup_steps=0",
                                  name="tuned")) == 0
    tuned = load_checkpoint(latest_checkpoint(tmp_path / "tuned"))
    assert tuned["step"] == 1 and "initialised the weights from" in capsys.readouterr().out
    assert train_mod.main(cli_run(tmp_path, f"--init_from={source}", "--eval_only", name="evaluated")) == 0
    out = capsys.readouterr().out
    assert '"val_loss"' in out and not list_checkpoints(tmp_path / "evaluated")


def test_cli_help_shows_defaults_and_choices():
    text = " ".join(build_parser().format_help().split())
    assert "(default: 0.003)" in text and "{random,sequential}" in text and "{char,bpe,gpt2}" in text
    assert "scratch|resume|gpt2|gpt2-medium|gpt2-large|gpt2-xl|PATH" in text
    gpt2 = " ".join(build_parser("gpt2_small").format_help().split())
    assert "(default: 40)" in gpt2  # the chosen preset's values are the defaults shown
    # every preset is described, and gpt2_small says which tokenizer it needs and where its files go
    assert all(f"{name}: " in text for name in PRESETS)
    assert "GPT-2's tokenizer, vocabulary 50,257 padded to 50,304; needs GPT-2's vocab.json and merges.txt" in text


def test_presets_name_their_corpus_and_tokenizer():
    """The gpt2_small preset is GPT-2 small with GPT-2's tokenizer: 50,257 tokens padded to 50,304 = 786 x 64."""
    for name, make in PRESETS.items():
        c = make()
        assert c.dataset == "tinyshakespeare" and c.tokenizer in ("char", "gpt2"), name
    c = PRESETS["gpt2_small"]()
    assert c.tokenizer == "gpt2" and c.vocab_from_data and c.vocab_multiple == 64
    assert -(-50257 // c.vocab_multiple) * c.vocab_multiple == 50304


def test_the_first_line_names_the_corpus_and_tokenizer(tmp_path, capsys):
    assert train_mod.main(cli_run(tmp_path, "--max_steps=1", "--tokenizer=bpe", "--bpe_vocab_size=300")) == 0
    first = capsys.readouterr().out.splitlines()[0]
    # the corpus is too short for 300 tokens: the BPE stops when no pair repeats, and the model's vocab is the data's
    assert re.search(rf"\| data {re.escape(str(tmp_path / 'corpus.txt'))} \| tokenizer bpe 300 \((\d+) tokens\) "
                     rf"\| vocab \1$", first), first


def test_accumulation_counts_micro_batches_over_all_processes(tmp_path, data):
    trainer = Trainer(tiny(tmp_path, out_dir="", grad_accum=4), data)
    assert trainer.micro_steps == 4 and trainer.tokens_per_step == 4 * 4 * 16  # one process runs all of them


def test_train_module_keeps_every_name_chapters_and_tests_import():
    from mathllm import train
    for name in ("PRESETS", "TrainConfig", "Trainer", "mfu", "param_groups", "peak_flops", "make_optimizer",
                 "config_from_dict", "config_to_dict", "build_parser", "parse_config", "plot_metrics",
                 "compile_or_eager", "field_comments", "main", "DTYPES", "OPTIMIZERS", "PEAK_FLOPS"):
        assert hasattr(train, name), name
    assert set(train.__all__) <= set(dir(train))


# ---------------------------------------------------------------------------- TensorBoard
def tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files of ``folder``, read back by TensorBoard's own reader (purges applied)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def jsonl_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """The same scalars taken from metrics.jsonl, rounded to float32 as TensorBoard stores them."""
    from mathllm.train_log import TENSORBOARD_TAGS
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    out = {}
    for (kind, key), tag in TENSORBOARD_TAGS.items():
        pairs = [(r["step"], r[key]) for r in rows if r["kind"] == kind]
        out[tag] = [(s, torch.tensor(v, dtype=torch.float32).item()) for s, v in pairs]
    return out


def test_tensorboard_events_equal_metrics_jsonl_also_after_a_resume(tmp_path, data):
    """The event files hold the scalars of metrics.jsonl, equal to float32 rounding (exactly: both sides
    are rounded once); a run killed after logging step 5 and resumed from step 4 shows each step once."""
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'mathllm[tensorboard]')")
    common = dict(tensorboard=True, ckpt_interval=2, log_interval=1, eval_interval=3)
    Trainer(tiny(tmp_path / "a", **common), data).train()
    straight = tensorboard_scalars(tmp_path / "a")
    assert straight == jsonl_scalars(tmp_path / "a")
    assert [s for s, _ in straight["train/loss"]] == list(range(1, 9))
    assert [s for s, _ in straight["eval/val_loss"]] == [0, 3, 6, 8]
    run_until_killed(Trainer(tiny(tmp_path / "b", **common), data), kill_at=5)  # steps 1..5 logged
    resumed = Trainer(tiny(tmp_path / "b", resume=True, **common), data)
    assert resumed.step == 4
    resumed.train()
    events = tensorboard_scalars(tmp_path / "b")
    assert events == jsonl_scalars(tmp_path / "b")  # the records of step 5 are in neither twice
    timing = {"train/tokens_per_s"}  # wall-clock: differs between runs; the rest is the same run
    same = lambda scalars: {t: v for t, v in scalars.items() if t not in timing}  # noqa: E731
    assert same(events) == same(straight)
    # a fresh run in the same folder starts the events afresh, as it starts metrics.jsonl afresh
    Trainer(tiny(tmp_path / "b", tensorboard=True, max_steps=2, log_interval=1, eval_interval=0), data).train()
    assert {t: [s for s, _ in v] for t, v in tensorboard_scalars(tmp_path / "b").items() if v} == {
        "train/loss": [1, 2], "train/lr": [1, 2], "train/grad_norm": [1, 2], "train/tokens_per_s": [1, 2]}


def test_tensorboard_missing_is_one_clear_error_before_training(tmp_path, data, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(ImportError, match=r"tensorboard=True needs the tensorboard package: pip install "
                                          r"'mathllm\[tensorboard\]'"):
        Trainer(tiny(tmp_path, tensorboard=True), data)


def test_tensorboard_is_off_by_default_and_needs_out_dir(tmp_path, data):
    assert TrainConfig().tensorboard is False
    Trainer(tiny(tmp_path / "a", max_steps=2), data).train()
    assert not list((tmp_path / "a").glob("events.out.tfevents.*"))
    with pytest.raises(ValueError, match="tensorboard=True writes its event files into out_dir"):
        tiny(tmp_path, tensorboard=True, out_dir="")
    config, _ = parse_config(["--tensorboard", "true", f"--out_dir={tmp_path}"])
    assert config.tensorboard is True


# ---------------------------------------------------------------------------- fine-tuning GPT-2 (init_from)
CORPUS = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
          "First Citizen:\nYou are all resolved rather to die than to famish?\n") * 40


def small_gpt2_folder(folder):
    """A random GPT2LMHeadModel written by save_pretrained, with the vocab.json and merges.txt of a BPE trained
    on the corpus (300 tokens) beside it: GPT-2's layout, small enough for a test, no download."""
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    from mathllm.bpe import BPETokenizer
    tok = BPETokenizer.train(CORPUS, 300)
    cfg = transformers.GPT2Config(vocab_size=tok.vocab_size, n_positions=24, n_layer=2, n_head=2, n_embd=32,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    hf.save_pretrained(folder)
    tok.save_files(folder / "vocab.json", folder / "merges.txt")
    return hf, tok


def test_init_from_a_pretrained_gpt2_folder_fine_tunes_it(tmp_path):
    """--init_from PATH of a save_pretrained folder: the step-0 validation loss is the Hugging Face model's own
    cross-entropy on the same batches (computed here with transformers and F.cross_entropy), and the data is
    tokenized with the folder's tokenizer. Tolerance: two float32 implementations of the same network sum in
    other orders; the losses (about ln 300 = 5.7 nats) agree to about 1e-6 relative, so rtol 1e-5."""
    import torch.nn.functional as F
    hf, tok = small_gpt2_folder(tmp_path / "gpt2")
    (tmp_path / "corpus.txt").write_text(CORPUS)
    config = tiny(tmp_path / "run", dataset="file", data_path=str(tmp_path / "corpus.txt"), max_steps=2,
                  eval_interval=2, init_from=str(tmp_path / "gpt2"))
    assert config.tokenizer == "gpt2"  # fine-tuning GPT-2 reads GPT-2's tokens
    trainer = Trainer(config, None)
    assert trainer.pretrained == str(tmp_path / "gpt2") and trainer.model_config.block_size == 24
    assert trainer.model_config.vocab_size == tok.vocab_size == trainer.data.vocab_size
    cut = int(len(CORPUS) * 0.9)
    assert list(trainer.data.val) == tok.encode(CORPUS[cut:])  # the folder's tokenizer, not one trained here
    trainer.train()
    step0 = next(r for r in trainer.history if r["kind"] == "eval" and r["step"] == 0)
    with torch.no_grad():
        by_hand = torch.stack([F.cross_entropy(hf(x).logits.flatten(0, 1), y.flatten())
                               for x, y in trainer.fixed_batches("val")]).mean().item()
    assert step0["val_loss"] == pytest.approx(by_hand, rel=1e-5)
    # the checkpoint carries the tokenizer and the pretrained source; resuming needs neither the folder's weights
    state = load_checkpoint(latest_checkpoint(tmp_path / "run"))
    assert state["pretrained"] == str(tmp_path / "gpt2") and state["model_config"]["block_size"] == 24
    model, tokenizer = load_model(tmp_path / "run")
    assert tokenizer.encode(CORPUS[:200]) == tok.encode(CORPUS[:200])
    resumed = Trainer(tiny(tmp_path / "run", dataset="file", data_path=str(tmp_path / "corpus.txt"), max_steps=3,
                           eval_interval=2, tokenizer="gpt2", resume=True, allow_config_change=True), None)
    assert resumed.step == 2 and resumed.pretrained == str(tmp_path / "gpt2")
    assert all(torch.equal(a, b) for a, b in zip(resumed.model.state_dict().values(), model.state_dict().values()))


def test_cli_init_from_a_save_pretrained_folder(tmp_path, capsys):
    """``--init_from PATH`` on the command line: GPT-2's tokenizer (the folder's files) and weights, named in the
    first line; the run trains and its checkpoint samples through ``python -m mathllm.sample``."""
    small_gpt2_folder(tmp_path / "gpt2")
    assert train_mod.main(cli_run(tmp_path, f"--init_from={tmp_path / 'gpt2'}", "--max_steps=2",
                                  "--warmup_steps=0")) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert f"tokenizer gpt2 (300 tokens) | vocab 300 | weights {tmp_path / 'gpt2'}" in first
    assert sample_main(["--checkpoint", str(tmp_path / "run"), "--prompt", "to be", "--max_new_tokens", "3",
                        "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("to be")


def test_init_from_gpt2_offline_fails_with_one_line_saying_how(tmp_path, monkeypatch, capsys):
    import urllib.error
    from mathllm import gpt2_tokenizer

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(gpt2_tokenizer, "_download", offline)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # an empty cache
    monkeypatch.delenv("MATHLLM_DATA_DIR", raising=False)
    assert train_mod.main(cli_run(tmp_path, "--init_from=gpt2")) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: GPT-2's vocab.json is not on this machine")
    assert "Supply the files" in err and "MATHLLM_DATA_DIR" in err


def test_init_from_gpt2_needs_gpt2_tokens():
    assert TrainConfig(init_from="gpt2-medium").tokenizer == "gpt2"
    with pytest.raises(ValueError, match="fine-tunes a pretrained GPT-2, which reads GPT-2's tokens"):
        TrainConfig(init_from="gpt2", tokenizer="bpe")


def test_gpt2_tokens_of_tiny_shakespeare_are_nanogpts(tmp_path):
    """GPT-2's tokenizer on Tiny Shakespeare, split 90/10 by characters: 301,966 training and 36,059
    validation tokens, the counts nanoGPT's data/shakespeare/prepare.py (tiktoken) prints."""
    import pathlib
    folder = pathlib.Path(os.environ.get("MATHLLM_DATA_DIR", "/nonexistent"))
    if not all((folder / p).is_file() for p in ("tinyshakespeare.txt", "gpt2/vocab.json", "gpt2/merges.txt")):
        pytest.skip("needs $MATHLLM_DATA_DIR with tinyshakespeare.txt and gpt2/{vocab.json,merges.txt}")
    from mathllm.distributed import DistInfo
    from mathllm.trainer import prepare_gpt2_data
    data = prepare_gpt2_data(TrainConfig(tokenizer="gpt2"), tmp_path, None, DistInfo())
    assert (len(data.train), len(data.val), data.vocab_size) == (301_966, 36_059, 50_257)
    text = (folder / "tinyshakespeare.txt").read_text(encoding="utf-8")
    assert data.decode(data.val) == text[int(len(text) * 0.9):]  # GPT-2's numbering survived meta.json
