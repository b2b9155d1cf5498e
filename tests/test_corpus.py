"""The corpus loader: local files, the environment variable, the cache, and downloads (never from the network)."""
import functools
import hashlib
import http.server
import pathlib
import socket
import threading

import pytest

from mathllm import corpus

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / corpus.TINY_SHAKESPEARE_FILE


@pytest.fixture
def shakespeare(monkeypatch) -> pathlib.Path:
    """A verified local copy of Tiny Shakespeare (from MATHLLM_DATA_DIR or the shared folder)."""
    import os
    d = os.environ.get(corpus.DATA_DIR_ENV)
    path = pathlib.Path(d) / corpus.TINY_SHAKESPEARE_FILE if d else SHARED
    if not path.is_file():
        pytest.skip("Tiny Shakespeare is not on this machine (set MATHLLM_DATA_DIR)")
    return path


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No data dir, an empty cache under tmp_path."""
    monkeypatch.delenv(corpus.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_loads_and_verifies_from_data_dir(shakespeare, monkeypatch):
    monkeypatch.setenv(corpus.DATA_DIR_ENV, str(shakespeare.parent))
    text = corpus.load_text("tinyshakespeare")
    assert len(text) == 1_115_394 and len(set(text)) == 65
    assert text.startswith("First Citizen:")
    assert hashlib.sha256(text.encode()).hexdigest() == corpus.TINY_SHAKESPEARE_SHA256


def test_explicit_path_wins_and_is_verified(shakespeare, isolated):
    assert corpus.tiny_shakespeare_path(shakespeare) == shakespeare
    bad = isolated / "tinyshakespeare.txt"
    bad.write_bytes(shakespeare.read_bytes()[:-10])  # truncated
    with pytest.raises(ValueError, match="truncated or not Tiny Shakespeare"):
        corpus.tiny_shakespeare_path(bad)


def test_data_dir_without_the_file_is_a_clear_error(isolated, monkeypatch):
    monkeypatch.setenv(corpus.DATA_DIR_ENV, str(isolated))
    with pytest.raises(FileNotFoundError, match="holds no tinyshakespeare.txt"):
        corpus.load_text()


def test_download_from_file_url_into_cache_then_reuse(shakespeare, isolated):
    path = corpus.tiny_shakespeare_path(url=shakespeare.as_uri())
    assert path == corpus.cache_dir() / corpus.TINY_SHAKESPEARE_FILE and path.is_file()
    assert corpus.sha256_of(path) == corpus.TINY_SHAKESPEARE_SHA256
    # the second call finds the cache and does not download (an unreachable URL would fail otherwise)
    assert corpus.tiny_shakespeare_path(url="http://127.0.0.1:9/none") == path


def test_download_from_a_local_http_server(shakespeare, isolated):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(shakespeare.parent))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_port}/{corpus.TINY_SHAKESPEARE_FILE}"
        text = corpus.tiny_shakespeare_path(url=url).read_text()
    finally:
        srv.shutdown()
    assert len(text) == 1_115_394


def test_a_corrupt_download_leaves_nothing_behind(isolated):
    src = isolated / "wrong.txt"
    src.write_text("not shakespeare")
    with pytest.raises(ValueError, match="expected 86c4e6aa"):
        corpus.tiny_shakespeare_path(url=src.as_uri())
    assert not any(corpus.cache_dir().glob("*")), "a failed download must not leave a file in the cache"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_without_the_file_says_how_to_supply_it(isolated):
    with pytest.raises(FileNotFoundError) as e:
        corpus.tiny_shakespeare_path(url=f"http://127.0.0.1:{_closed_port()}/x")
    msg = str(e.value)
    assert "could not be downloaded" in msg and corpus.DATA_DIR_ENV in msg and "path=" in msg
    with pytest.raises(FileNotFoundError, match="downloading is off"):
        corpus.load_text(download_ok=False)


def test_any_local_text_file(tmp_path):
    f = tmp_path / "poem.txt"
    f.write_text("so long lives this\n", encoding="utf-8")
    assert corpus.load_text("file", f) == "so long lives this\n"
    with pytest.raises(ValueError, match="needs path="):
        corpus.load_text("file")
    with pytest.raises(FileNotFoundError, match="no text file"):
        corpus.load_text("file", tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="unknown corpus 'wiki'"):
        corpus.load_text("wiki")
