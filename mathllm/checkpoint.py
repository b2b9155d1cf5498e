"""Checkpoints that lose nothing: written atomically, verified when read, the last k kept.

A training run is a deterministic function of its state. To resume exactly, a checkpoint holds
all of it: the model's parameters, the optimizer's moments, the gradient scaler, the schedule,
every random generator (Python, NumPy, torch CPU and CUDA, the data loader's own), the data
position, the step and the configuration. Nothing is pickled but plain containers, numbers,
strings and tensors, so it loads with ``torch.load(..., weights_only=True)``, which executes no
code from the file.

Writing is atomic: the state goes to a temporary file in the same folder
(``ckpt_00001234.pt.<12 hex digits>.tmp``), is flushed and ``fsync``-ed, and only then renamed over
the final name with ``os.replace`` (atomic on POSIX and Windows), and the folder is synced. A
process killed at any moment leaves either the old set of checkpoints or the new one, never a
half-written file under a checkpoint's name; the temporary file it may leave behind is removed by
the next save (:func:`remove_stale_temp_files`, which touches only names of that pattern). Older
checkpoints are deleted only after the new one is in place. Files get the usual mode of a new file
(``0o666`` less the umask: 0644 under umask 022). A full disk is an ``OSError`` with ``errno.ENOSPC``
naming the checkpoint, whatever layer of ``torch.save`` met it.

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

import errno
import hashlib
import os
import pathlib
import random
import re
import secrets

import numpy as np
import torch

FORMAT = "mathllm-checkpoint-1"
PATTERN = re.compile(r"^ckpt_(\d{8})\.pt$")
BEST_NAME = "ckpt_best.pt"  # the checkpoint of the lowest validation loss so far; not in list_checkpoints
# a temporary file of ours: <final name>.<random tag>.tmp (12 hex digits; older versions used mkstemp's 8 characters)
TEMP_PATTERN = re.compile(r"^(?P<final>[\w.-]+)\.(?P<tag>[0-9a-f]{12}|[a-z0-9_]{8})\.tmp$")


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


def temp_path(final: str | os.PathLike) -> pathlib.Path:
    """A fresh temporary name beside ``final``: ``<final name>.<12 hex digits>.tmp``."""
    final = pathlib.Path(final)
    return final.with_name(f"{final.name}.{secrets.token_hex(6)}.tmp")


def _is_ours(name: str, finals: tuple[str, ...]) -> bool:
    m = TEMP_PATTERN.match(name)
    return bool(m) and (PATTERN.match(m["final"]) is not None or m["final"] == BEST_NAME or m["final"] in finals)


def remove_stale_temp_files(directory: str | os.PathLike, finals: tuple[str, ...] = ()) -> list[pathlib.Path]:
    """Delete the temporary files that killed saves left in ``directory``; return their paths.

    Only names of our pattern are touched: ``ckpt_<8 digits>.pt.<tag>.tmp``, ``ckpt_best.pt.<tag>.tmp``
    and ``<f>.<tag>.tmp`` for each name ``f`` in ``finals`` (e.g. ``"metrics.jsonl"``). Call it while
    no other process saves into ``directory``: one process per run folder writes (rank 0).
    """
    d = pathlib.Path(directory)
    if not d.is_dir():
        return []
    stale = [p for p in d.iterdir() if _is_ours(p.name, tuple(finals)) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _os_error_in(e: BaseException) -> OSError | None:
    """The first ``OSError`` with an errno in the chain of ``e`` (torch wraps a failed write in a RuntimeError)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno:
            return e
        e = e.__cause__ or e.__context__
    return None


def write_atomic(path: str | os.PathLike, write, *, _before_rename=None) -> pathlib.Path:
    """Create ``path`` atomically: ``write(f)`` fills a temporary file beside it, which is synced and renamed.

    The file gets mode ``0o666`` less the umask. An ``OSError`` (a full disk, a read-only folder),
    also one that ``write`` met inside a library that wrapped it in another exception, is raised
    again as an ``OSError`` with the same errno whose message names ``path``; the temporary
    file is removed.
    """
    path = pathlib.Path(path)
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if _before_rename is not None:
            _before_rename(tmp)
        os.replace(tmp, path)  # the atomic step: the name now points at a complete file
        _fsync_dir(path.parent)
    except Exception as e:
        cause = _os_error_in(e)
        if cause is None:
            raise
        raise OSError(cause.errno, f"cannot write {path}: {os.strerror(cause.errno)}") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_checkpoint(state: dict, path: str | os.PathLike, *, _before_rename=None) -> pathlib.Path:
    """Write ``state`` (with its digest) to ``path`` atomically; :func:`load_checkpoint` reads it back."""
    body = _to_cpu(state)
    payload = {"format": FORMAT, "sha256": digest(body), "state": body}
    return write_atomic(path, lambda f: torch.save(payload, f), _before_rename=_before_rename)


def save_checkpoint(state: dict, directory: str | os.PathLike, step: int, *, keep_last: int = 3,
                    _before_rename=None) -> pathlib.Path:
    """Write ``state`` as ``directory/ckpt_<step>.pt`` atomically; keep the newest ``keep_last``.

    ``state`` holds tensors, numbers, strings, ``None`` and (nested) dicts, lists and tuples.
    Temporary files of earlier, killed saves are removed first (:func:`remove_stale_temp_files`).
    ``_before_rename`` is a test hook called with the temporary path after it is synced.

    Returns:
        the path written.

    Raises:
        OSError: the file cannot be written (``errno.ENOSPC``: the disk is full); the older
            checkpoints are untouched.
    """
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
        raise ValueError(f"keep_last must be an int >= 1, got {keep_last!r}")
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(directory)
    final = write_checkpoint(state, checkpoint_path(directory, step), _before_rename=_before_rename)
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
    if path.stat().st_size == 0:
        raise fail("is empty (0 bytes): it was never written completely")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip, unpickling and weights_only errors all mean "not readable"
        first = (str(e).splitlines() or [""])[0][:160]
        raise fail(f"cannot be read, it is truncated or corrupt ({type(e).__name__}{': ' + first if first else ''})") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise fail(f"is not a {FORMAT} file")
    if not isinstance(payload.get("state"), dict) or digest(payload["state"]) != payload.get("sha256"):
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


def load_latest_good(directory: str | os.PathLike, warn=None) -> tuple[pathlib.Path, dict] | None:
    """``(path, state)`` of the newest checkpoint in ``directory`` that loads and verifies, or None if there is none.

    Each newer one that fails is reported through ``warn(message)`` (``warnings.warn`` when None), the
    message naming the file and what is wrong with it; the file is left in place for inspection.

    Raises:
        CheckpointError: ``directory`` holds checkpoints but none of them is good.
    """
    import warnings
    warn = warn or (lambda message: warnings.warn(message, stacklevel=3))
    found = list_checkpoints(directory)
    errors = []
    for path in reversed(found):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as e:
            errors.append(str(e).split("; the newest good")[0])
            warn(f"{errors[-1]}; trying the next older checkpoint")
    if found:
        raise CheckpointError(f"no good checkpoint in {directory}: {'; '.join(errors)}")
    return None
