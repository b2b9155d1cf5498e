"""Real text for the chapters: the Tiny Shakespeare corpus, or any local text file.

Where the file comes from, in order:

1. an explicit ``path=`` argument;
2. the folder named by the environment variable ``MATHLLM_DATA_DIR`` (it must hold
   ``tinyshakespeare.txt``);
3. the cache folder (``~/.cache/mathllm``, or ``$XDG_CACHE_HOME/mathllm``);
4. a download from the canonical source (Karpathy's char-rnn repository) into the cache.

Every copy of Tiny Shakespeare is checked against its SHA-256 digest, so a truncated or
altered file is an error rather than a silently different experiment. Downloads go to a
temporary file that is renamed into place only after the digest matches.

Book: book/intro.md, section "Data".
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile
import urllib.error
import urllib.request

TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINY_SHAKESPEARE_FILE = "tinyshakespeare.txt"
DATA_DIR_ENV = "MATHLLM_DATA_DIR"


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> pathlib.Path:
    """The folder downloads are cached in (not created here)."""
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "mathllm"


def check_digest(path: pathlib.Path, expected: str | tuple[str, ...], what: str = "Tiny Shakespeare") -> pathlib.Path:
    """Return ``path`` if its SHA-256 is ``expected`` (or one of several accepted digests), else raise."""
    expected = (expected,) if isinstance(expected, str) else tuple(expected)
    got = sha256_of(path)
    if got not in expected:
        raise ValueError(f"{path} has SHA-256 {got}, expected {' or '.join(expected)}: the file is truncated "
                         f"or not {what}; delete it and supply the original")
    return path


def download(url: str, dest: str | os.PathLike, sha256: str | tuple[str, ...], timeout: float = 30.0,
             what: str = "Tiny Shakespeare") -> pathlib.Path:
    """Download ``url`` to ``dest`` atomically with a progress bar, keeping it only if its SHA-256 is
    ``sha256`` (or one of several accepted digests); ``what`` names the file in messages and the bar."""
    from tqdm.auto import tqdm

    dest = pathlib.Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=what) as bar:
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        check_digest(pathlib.Path(tmp), sha256, what)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def tiny_shakespeare_path(path: str | os.PathLike | None = None, *, download_ok: bool = True,
                          url: str = TINY_SHAKESPEARE_URL) -> pathlib.Path:
    """Locate (or fetch) a verified copy of Tiny Shakespeare and return its path."""
    if path is not None:
        p = pathlib.Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"Tiny Shakespeare: no file at path={str(p)!r}")
        return check_digest(p, TINY_SHAKESPEARE_SHA256)
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        p = pathlib.Path(env) / TINY_SHAKESPEARE_FILE
        if not p.is_file():
            raise FileNotFoundError(f"{DATA_DIR_ENV}={env!r} is set but holds no {TINY_SHAKESPEARE_FILE}")
        return check_digest(p, TINY_SHAKESPEARE_SHA256)
    cached = cache_dir() / TINY_SHAKESPEARE_FILE
    if cached.is_file():
        return check_digest(cached, TINY_SHAKESPEARE_SHA256)
    how = (f"Supply it in one of these ways: pass path='/path/to/{TINY_SHAKESPEARE_FILE}'; "
           f"or set {DATA_DIR_ENV} to a folder holding {TINY_SHAKESPEARE_FILE}; "
           f"or save {url} as {cached} (SHA-256 {TINY_SHAKESPEARE_SHA256}).")
    if not download_ok:
        raise FileNotFoundError(f"Tiny Shakespeare is not on this machine and downloading is off. {how}")
    try:
        return download(url, cached, TINY_SHAKESPEARE_SHA256)
    except (urllib.error.URLError, OSError) as e:
        raise FileNotFoundError(f"Tiny Shakespeare is not on this machine and could not be downloaded "
                                f"from {url} ({e}). {how}") from e


def load_text(name: str = "tinyshakespeare", path: str | os.PathLike | None = None, *,
              download_ok: bool = True) -> str:
    """Return a corpus as one string.

    ``name="tinyshakespeare"`` gives the verified Tiny Shakespeare text (1,115,394 characters);
    ``name="file"`` reads any UTF-8 text file given by ``path``.
    """
    if name == "tinyshakespeare":
        return tiny_shakespeare_path(path, download_ok=download_ok).read_text(encoding="utf-8")
    if name == "file":
        if path is None:
            raise ValueError("load_text(name='file') needs path= pointing at a UTF-8 text file")
        p = pathlib.Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no text file at path={str(p)!r}")
        return p.read_text(encoding="utf-8")
    raise ValueError(f"unknown corpus {name!r}: expected 'tinyshakespeare' or 'file'")
