"""Checkpoints: exact round trips, atomic writes, keep-last-k, and clear errors for damaged files."""
import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from mathllm.checkpoint import (BEST_NAME, CheckpointError, capture_rng, checkpoint_path, digest, latest_checkpoint,
                                list_checkpoints, load_checkpoint, load_latest_good, remove_stale_temp_files,
                                restore_rng, save_checkpoint, temp_path, write_checkpoint)


def _state(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "model": {"w": torch.randn(64, 32, generator=g), "b": torch.randn(32, generator=g).to(torch.bfloat16),
                  "ids": torch.arange(10)},
        "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(5, generator=g)}},
                      "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.99), "params": [0]}]},
        "step": 7, "name": "run", "nothing": None, "flags": [True, False], "pair": (1, 2.5),
    }


def _assert_same(a, b):
    assert type(a) is type(b) or (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


def test_round_trip_is_exact_and_loads_with_weights_only(tmp_path):
    state = _state()
    path = save_checkpoint(state, tmp_path, 7)
    assert path == checkpoint_path(tmp_path, 7) and path.name == "ckpt_00000007.pt"
    _assert_same(load_checkpoint(path), state)
    raw = torch.load(path, weights_only=True)  # plain torch can read it, executing no code
    assert raw["format"] == "mathllm-checkpoint-1" and raw["sha256"] == digest(raw["state"])


def test_digest_sees_every_entry():
    a, b = _state(), _state()
    assert digest(a) == digest(b)
    b["model"]["w"][3, 4] += 1e-6
    assert digest(a) != digest(b)
    c = _state()
    c["step"] = 8
    assert digest(a) != digest(c)


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_keep_last_k(tmp_path, keep):
    for step in range(1, 6):
        save_checkpoint(_state(step), tmp_path, step * 10, keep_last=keep)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == [f"ckpt_{s:08d}.pt" for s in range(60 - 10 * keep, 60, 10)]
    assert latest_checkpoint(tmp_path).name == "ckpt_00000050.pt"
    _assert_same(load_checkpoint(latest_checkpoint(tmp_path)), _state(5))


def test_truncated_checkpoint_is_a_clear_error_and_the_previous_survives(tmp_path):
    good = save_checkpoint(_state(1), tmp_path, 10)
    bad = save_checkpoint(_state(2), tmp_path, 20)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated or corrupt.*newest good checkpoint beside it is .*ckpt_00000010"):
        load_checkpoint(bad)
    _assert_same(load_checkpoint(good), _state(1))


def test_flipped_bytes_inside_tensor_data_are_caught(tmp_path):
    # the zip container does not notice a changed byte inside a tensor; the digest does
    save_checkpoint(_state(1), tmp_path, 10)
    bad = save_checkpoint(_state(2), tmp_path, 20)
    data = bytearray(bad.read_bytes())
    w = _state(2)["model"]["w"].numpy().tobytes()
    at = bytes(data).find(w[:64])
    assert at > 0
    data[at + 100: at + 108] = b"\x7f" * 8
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 digest does not match"):
        load_checkpoint(bad)


def test_other_files_are_not_checkpoints(tmp_path):
    torch.save({"model": torch.zeros(3)}, tmp_path / "ckpt_00000001.pt")
    with pytest.raises(CheckpointError, match="is not a mathllm-checkpoint-1 file"):
        load_checkpoint(tmp_path / "ckpt_00000001.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "ckpt_00000099.pt")
    (tmp_path / "ckpt_00000005.pt.abc.tmp").write_bytes(b"partial")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_00000001.pt"]


def test_bad_keep_last(tmp_path):
    with pytest.raises(ValueError, match="keep_last must be an int >= 1"):
        save_checkpoint(_state(), tmp_path, 1, keep_last=0)


def test_crash_between_write_and_rename_leaves_the_old_checkpoint(tmp_path):
    save_checkpoint(_state(1), tmp_path, 10)

    def crash(tmp):
        assert tmp.exists() and tmp.name.endswith(".tmp")
        raise KeyboardInterrupt  # the process dies after writing, before the rename

    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_state(2), tmp_path, 20, _before_rename=crash)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_00000010.pt"]
    _assert_same(load_checkpoint(latest_checkpoint(tmp_path)), _state(1))


WRITER = textwrap.dedent("""
    import sys, pathlib, time, torch
    from mathllm.checkpoint import save_checkpoint
    out, mode = pathlib.Path(sys.argv[1]), sys.argv[2]
    state = {"w": torch.randn(1024, 1024), "step": 0}  # 4 MiB per save
    def stall(tmp):
        (out / "in_rename_window").touch()
        time.sleep(60)
    for step in range(1, 10_000):
        state["step"] = step
        hook = stall if mode == "stall" and step == 3 else None
        save_checkpoint(state, out, step, keep_last=2, _before_rename=hook)
        (out / "saved").write_text(str(step))
""")


@pytest.mark.parametrize("mode", ["stall", "random"])
def test_killing_the_writer_never_leaves_only_a_broken_file(tmp_path, mode):
    """SIGKILL a process that saves in a loop: in the rename window ("stall") or at a random moment."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    out = tmp_path / "ckpts"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(out), mode])
    try:
        deadline = time.time() + 120
        marker = out / ("in_rename_window" if mode == "stall" else "saved")
        while not marker.exists() or (mode == "random" and int(marker.read_text() or 0) < 3):
            assert proc.poll() is None and time.time() < deadline, "the writer died or never saved"
            time.sleep(0.05)
        if mode == "random":
            time.sleep(random.Random(0).uniform(0.0, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    found = list_checkpoints(out)
    assert found, "no checkpoint survived"
    for path in found:  # every file under a checkpoint's name is complete
        assert load_checkpoint(path)["w"].shape == (1024, 1024)
    if mode == "stall":
        assert [p.name for p in found] == ["ckpt_00000001.pt", "ckpt_00000002.pt"]
        assert any(p.name.endswith(".tmp") for p in out.iterdir())  # the half-done save is only a temp file


def test_rng_capture_and_restore():
    state = capture_rng()
    expected = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    random.random(), np.random.rand(5), torch.rand(5)  # move every generator on
    restore_rng(state)
    assert (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == expected


def test_rng_state_survives_a_checkpoint(tmp_path):
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    path = save_checkpoint({"rng": capture_rng()}, tmp_path, 1)
    expected = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    restore_rng(load_checkpoint(path)["rng"])
    assert (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == expected


# ---------------------------------------------------------------------------- issue 15
def test_empty_checkpoint_is_a_clear_error(tmp_path):
    save_checkpoint(_state(1), tmp_path, 10)
    (tmp_path / "ckpt_00000020.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"ckpt_00000020\.pt is empty \(0 bytes\).*newest good .*ckpt_00000010"):
        load_checkpoint(tmp_path / "ckpt_00000020.pt")


def test_load_latest_good_falls_back_with_a_warning(tmp_path):
    save_checkpoint(_state(1), tmp_path, 10)
    save_checkpoint(_state(2), tmp_path, 20)
    (tmp_path / "ckpt_00000030.pt").write_bytes(b"")
    bad = tmp_path / "ckpt_00000020.pt"
    bad.write_bytes(bad.read_bytes()[:100])
    seen = []
    path, state = load_latest_good(tmp_path, warn=seen.append)
    assert path.name == "ckpt_00000010.pt" and state["step"] == 7
    assert len(seen) == 2 and "ckpt_00000030.pt is empty" in seen[0] and "ckpt_00000020.pt cannot be read" in seen[1]
    assert load_latest_good(tmp_path / "nothing") is None


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_checkpoints_get_the_usual_file_mode(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = save_checkpoint(_state(), tmp_path, 1)
        best = write_checkpoint(_state(), tmp_path / BEST_NAME)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode and best.stat().st_mode & 0o777 == mode


def test_save_removes_stale_temporary_files_of_ours_only(tmp_path):
    ours = [temp_path(tmp_path / "ckpt_00000003.pt").name, temp_path(tmp_path / BEST_NAME).name,
            "ckpt_00000002.pt.a1b2_c3d.tmp"]
    theirs = ["ckpt_00000002.pt.tmp", "data.0123456789ab.tmp", "metrics.jsonl.0123456789ab.tmp", "x.tmp"]
    for name in ours + theirs:
        (tmp_path / name).write_bytes(b"partial")
    save_checkpoint(_state(), tmp_path, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(theirs + ["ckpt_00000004.pt"])
    assert remove_stale_temp_files(tmp_path, ("metrics.jsonl",)) == [tmp_path / "metrics.jsonl.0123456789ab.tmp"]


@pytest.mark.parametrize("wrapped", [False, True])
def test_full_disk_is_an_os_error_naming_the_checkpoint(tmp_path, monkeypatch, wrapped):
    save_checkpoint(_state(1), tmp_path, 1)

    def full_disk(obj, f):
        f.write(b"some bytes")
        if not wrapped:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as e:  # torch.save's own wrapping of the writer's error
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0") from e

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r"cannot write .*ckpt_00000002\.pt: No space left on device") as e:
        save_checkpoint(_state(2), tmp_path, 2)
    assert e.value.errno == errno.ENOSPC
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt_00000001.pt"]  # no temporary file, the old one intact
