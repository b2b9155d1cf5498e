"""benchmarks/train_benchmark.py: its configuration, the nanoGPT command line it builds, and a whole
comparison against a stand-in for nanoGPT's train.py (the real one is not part of the repository)."""
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mathllm.train import PRESETS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_benchmark.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_default_is_the_cpu_preset_without_files(bench):
    config = bench.bench_config(["--lr=1e-3", "--min_lr=1e-4"], steps=50)
    assert config.model == PRESETS["shakespeare_cpu"]().model
    assert (config.lr, config.min_lr, config.max_steps, config.decay_steps) == (1e-3, 1e-4, 50, 2000)
    assert config.out_dir == "" and config.progress is False
    assert bench.bench_config(["--preset=tiny"]).model == PRESETS["tiny"]().model


def test_nanogpt_gets_the_same_optimizer_and_schedule(bench):
    args = bench.nanogpt_args(bench.bench_config([]))
    for option in ("--learning_rate=0.003", "--min_lr=0.0003", "--warmup_iters=100", "--lr_decay_iters=2000",
                   "--weight_decay=0.1", "--beta2=0.99", "--grad_clip=1.0", "--eval_iters=20", "--n_embd=128"):
        assert option in args
    with pytest.raises(ValueError, match="batch_size must be 12, got 16"):
        bench.nanogpt_args(bench.bench_config(["--batch_size=16"]))
    with pytest.raises(ValueError, match="seed must be 1337, got 5"):
        bench.nanogpt_args(bench.bench_config(["--seed=5"]))
    with pytest.raises(ValueError, match=r"model must be GPTConfig\(.*mlp='gelu'.*got GPTConfig\(.*mlp='relu'"):
        bench.nanogpt_args(bench.bench_config(["--mlp=relu"]))


FAKE_NANOGPT = """
    import sys
    open("argv.json", "w").write(__import__("json").dumps(sys.argv[1:]))
    print("step 0: train loss 4.1000, val loss 4.2000")
    for i in range(10):
        print(f"iter {i}: loss 3.0000, time {40 + i}.00ms, mfu 0.01%")
    print("step 10: train loss 2.5000, val loss 2.6000")
"""


def test_a_whole_comparison_against_a_stand_in_for_nanogpt(tmp_path):
    (tmp_path / "train.py").write_text(textwrap.dedent(FAKE_NANOGPT))
    out = subprocess.run([sys.executable, str(SCRIPT), "--nanogpt_dir", str(tmp_path), "--steps", "10",
                          "--device", "cpu", "--eval_interval", "5", "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads((tmp_path / "r.json").read_text())
    assert [r["who"] for r in results] == ["mathllm", "nanoGPT"]
    ours, nano = results
    assert ours["steps"] == 10 and ours["tokens_per_step"] == 12 * 64 and ours["val_loss"] < 4.2
    assert nano["ms_per_step"] == 47.0 and nano["val_loss"] == 2.6  # median of iterations 5..9: 45..49 ms
    assert "--max_iters=10" in json.loads((tmp_path / "argv.json").read_text())
    assert "throughput ratio mathllm / nanoGPT" in out.stdout


def test_a_config_nanogpt_cannot_run_is_refused_before_any_run(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--nanogpt_dir", str(tmp_path), "--n_layer=2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "the nanoGPT comparison is for the CPU model" in out.stderr
    assert not (tmp_path / "argv.json").exists()
