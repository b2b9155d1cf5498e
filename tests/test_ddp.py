"""Data parallelism: two CPU processes (gloo) under torchrun train exactly as one process on the same global batch."""
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from mathllm.checkpoint import latest_checkpoint, load_checkpoint
from mathllm.distributed import DistInfo, launched_by_torchrun, setup

pytestmark = [pytest.mark.numerics,
              pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                 reason="torch.distributed with gloo is not available")]


def _run(argv, cwd):
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def test_two_processes_equal_one_process_with_the_global_batch(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Now is the winter of our discontent\nMade glorious summer by this sun of York;\n" * 60)
    common = ["--preset=tiny", "--dataset=file", f"--data_path={corpus}", "--device=cpu", "--block_size=16",
              "--max_steps=4", "--warmup_steps=1", "--eval_interval=0", "--log_interval=2",
              "--progress=false", "--dropout=0"]
    # grad_accum counts micro-batches over all processes (nanoGPT's convention): 2 processes x 2 micro-batches
    # of 3 rows each == 1 process x 2 micro-batches of 6 rows; the same 12 rows per step, the same tokens per step
    two = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "mathllm.train", *common, "--grad_accum=4", "--batch_size=3", f"--out_dir={tmp_path / 'two'}"],
               tmp_path)
    one = _run([sys.executable, "-m", "mathllm.train", *common, "--grad_accum=2", "--batch_size=6",
                f"--out_dir={tmp_path / 'one'}"], tmp_path)
    assert "192 tokens per step" in two and "192 tokens per step" in one  # 12 rows x 16 tokens
    assert two.count("processes 2") == 1  # rank 0 prints, rank 1 does not
    a, b = (load_checkpoint(latest_checkpoint(tmp_path / name)) for name in ("one", "two"))
    assert a["step"] == b["step"] == 4 and len(b["rng"]) == 2  # both ranks' random states are saved
    torch.testing.assert_close(b["losses"], a["losses"], rtol=1e-5, atol=1e-6)
    assert a["model"].keys() == b["model"].keys()
    # gradients agree to rounding (the sums run in another order); Adam divides by sqrt(v), which can
    # magnify that rounding for a weight whose gradient is near 0, so weights get atol 2e-5: a wrong
    # average or a wrong split of the rows moves weights by about lr = 3e-3 per step
    for name in a["model"]:
        torch.testing.assert_close(b["model"][name], a["model"][name], rtol=1e-4, atol=2e-5,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_grad_accum_must_divide_among_the_processes(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Now is the winter of our discontent\n" * 60)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "mathllm.train", "--dataset=file", f"--data_path={corpus}", "--device=cpu",
                           "--grad_accum=3", "--max_steps=1", "--warmup_steps=0", "--progress=false", f"--out_dir={tmp_path / 'run'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "error: grad_accum=3 counts micro-batches over all 2 processes and must be a multiple of 2" in done.stderr


def test_single_process_is_not_distributed(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not launched_by_torchrun()
    info, device = setup(torch.device("cpu"))
    assert info == DistInfo() and info.is_main and device == torch.device("cpu")
    with pytest.raises(ValueError, match="backend must be one of auto, nccl, gloo"):
        setup(torch.device("cpu"), backend="mpi")
