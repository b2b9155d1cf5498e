"""Checkpoints that lose nothing: written atomically, verified when read, the last k kept.

A training run is a deterministic function of its state. To resume exactly, a checkpoint holds
all of it: the model's parameters, the optimizer's moments, the gradient scaler, the schedule,
every random generator (Python, NumPy, torch CPU and CUDA, the data loader's own), the data
position, the step and the configuration. Nothing is pickled but plain containers, numbers,
strings and tensors, so it loads with ``torch.load(..., weights_only=True)``, which executes no
code from the file.

Writing is atomic: the state goes to a temporary file in the same folder, is flushed and
``fsync``-ed, and only then renamed over the final name with ``os.replace`` (atomic on POSIX and
Windows), and the folder is synced. A process killed at any moment leaves either the old set of
checkpoints or the new one, never a half-written file under a checkpoint's name. Older
checkpoints are deleted only after the new one is in place.

Reading is verified: a SHA-256 digest of every tensor's bytes and of the other entries is stored
in the file and recomputed on load, because the zip container catches truncation but not a
flipped byte inside tensor data. A bad file raises :class:`CheckpointError` naming the file, what
is wrong, and the newest good checkpoint beside it.

References: the atomic-rename pattern of databases and of ``git``'s object store; llm.c and
nanoGPT for what a language-model checkpoint holds (nanoGPT's omits the RNG and data state).
Leaves out: sharded (FSDP) checkpoints, asynchronous saving, cloud storage.

Book: :doc:`/notebooks/12_training`
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import random
import re
import tempfile

import numpy as np
import torch

FORMAT = "mathllm-checkpoint-1"
PATTERN = re.compile(r"^ckpt_(\d{8})\.pt$")


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, corrupt or of another format."""


# ---------------------------------------------------------------------------- random state
def capture_rng() -> dict:
    """The state of every global random generator, as tensors, ints and tuples only."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(_plain, np_state[2:])),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Inverse of :func:`capture_rng`."""
    random.setstate(_tuples(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(x):
    return x.item() if hasattr(x, "item") else x


def _tuples(x):
    # random.setstate needs tuples; weights_only loading may hand back lists
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


# ---------------------------------------------------------------------------- digest
def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _update(h, obj) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode())
            _update(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())  # lists and tuples hash alike: loading may turn one into the other
        for v in obj:
            _update(h, v)
    else:
        h.update(repr(obj).encode())


def digest(state: dict) -> str:
    """SHA-256 over every entry of ``state``: tensors by dtype, shape and bytes, the rest by ``repr``."""
    h = hashlib.sha256()
    _update(h, state)
    return h.hexdigest()


# ---------------------------------------------------------------------------- files
def checkpoint_path(directory: str | os.PathLike, step: int) -> pathlib.Path:
    """``directory/ckpt_00001234.pt``: the zero-padded step sorts by name."""
    return pathlib.Path(directory) / f"ckpt_{step:08d}.pt"


def list_checkpoints(directory: str | os.PathLike) -> list[pathlib.Path]:
    """The checkpoints in ``directory``, oldest first (temporary files are not checkpoints)."""
    d = pathlib.Path(directory)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if PATTERN.match(p.name))


def _fsync_dir(directory: pathlib.Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder; its rename is durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(state: dict, directory: str | os.PathLike, step: int, *, keep_last: int = 3,
                    _before_rename=None) -> pathlib.Path:
    """Write ``state`` as ``directory/ckpt_<step>.pt`` atomically; keep the newest ``keep_last``.

    ``state`` holds tensors, numbers, strings, ``None`` and (nested) dicts, lists and tuples.
    ``_before_rename`` is a test hook called with the temporary path after it is synced.

    Returns:
        the path written.
    """
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
        raise ValueError(f"keep_last must be an int >= 1, got {keep_last!r}")
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    body = _to_cpu(state)
    payload = {"format": FORMAT, "sha256": digest(body), "state": body}
    final = checkpoint_path(directory, step)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=final.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        if _before_rename is not None:
            _before_rename(pathlib.Path(tmp))
        os.replace(tmp, final)  # the atomic step: the name now points at a complete file
        _fsync_dir(directory)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    for old in list_checkpoints(directory)[:-keep_last]:
        old.unlink(missing_ok=True)
    return final


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read and verify a checkpoint written by :func:`save_checkpoint`; return its state, on the CPU.

    ``model.load_state_dict`` and ``optimizer.load_state_dict`` move tensors to the parameters'
    device; random generator states must stay on the CPU.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt or not a mathllm checkpoint;
            the message names the newest good checkpoint in the same folder, if any.
    """
    path = pathlib.Path(path)

    def fail(why: str):
        others = [p for p in reversed(list_checkpoints(path.parent)) if p != path and _is_good(p)]
        hint = f"; the newest good checkpoint beside it is {others[0]}" if others else ""
        return CheckpointError(f"checkpoint {path} {why}{hint}")

    if not path.is_file():
        raise fail("does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip, unpickling and weights_only errors all mean "not readable"
        raise fail(f"cannot be read, it is truncated or corrupt ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise fail(f"is not a {FORMAT} file")
    if digest(payload["state"]) != payload.get("sha256"):
        raise fail("is corrupt: its SHA-256 digest does not match its contents")
    return payload["state"]


def _is_good(path: pathlib.Path) -> bool:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        return isinstance(payload, dict) and digest(payload["state"]) == payload.get("sha256")
    except Exception:
        return False


def latest_checkpoint(directory: str | os.PathLike) -> pathlib.Path | None:
    """The newest checkpoint in ``directory`` (not verified; :func:`load_checkpoint` does that), or None."""
    found = list_checkpoints(directory)
    return found[-1] if found else None
