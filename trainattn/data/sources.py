"""Where the data files come from: pinned upstream paths, SHA-256 sums, download and cache.

Lookup order of :func:`data_file`: an explicit ``data_dir`` argument, else the environment
variable ``TRAINATTN_DATA``, else the user cache (``cache_dir`` argument, else
``TRAINATTN_CACHE``, else ``~/.cache/trainattn``) under ``data/``, downloading there from the
authors' repository at :data:`PINNED_COMMIT` when missing. Every file is checked against its
pinned SHA-256.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from trainattn.errors import ChecksumError

PINNED_COMMIT = "b12f344a9dbae555c239635b1c192c555bed001b"
REPO_URL = "https://raw.githubusercontent.com/ybseo-academy/TAALM"
DATA_ENV = "TRAINATTN_DATA"
CACHE_ENV = "TRAINATTN_CACHE"
DEFAULT_CACHE = Path("~/.cache/trainattn")
DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DataFileInfo:
    """One known data file: local relative path, path in the authors' repo, pinned SHA-256."""

    relpath: str
    repo_path: str
    sha256: str


def _entries() -> dict[str, DataFileInfo]:
    items = [
        ("lama_ckl/variant.jsonl", "data/LAMA_ckl/variant.jsonl",
         "03b6c60d4642ec3ee2af3e7e0a2c4ed24bbb1fae7d63c5b205e6b12da1056248"),
        ("lama_ckl/invariant_descriptive.jsonl", "data/LAMA_ckl/invariant_descriptive.jsonl",
         "c0b1925b92ff4050fac269e78ae11d806b9b3400e8770bad476c9be599b2a82d"),
        ("lama_ckl/invariant_schematic.jsonl", "data/LAMA_ckl/invariant_schematic.jsonl",
         "236ed1d27269a0d9359a89c8ca4f9a8c8401362ecaee8f60eb5590ec958d4cd7"),
    ]
    twiki_sums = {
        "0901-1001_changed": "b5899036092c6ff000364c7df8a5fd6665f9f24c92af674f31610579237bbfb3",
        "0901-1001_unchanged": "65adcc45bc7300c3b8ad887b59d2ad1693be64cbdc8388a32e3c485ddc64f8ce",
        "1001-1101_changed": "e205289f30d7fb02efcd24fde0ccbaa8a86ea51c206b23dda32abd99c5cecdeb",
        "1001-1101_unchanged": "8aad5a3a3c6372e5c778a5882b4256115fc33f9ad847bd10b4f995c36278f294",
        "1101-1201_changed": "a54c4b4b95a0065808e57b05b1c5aee15e31a1068890431e52a1c71f60be5e43",
        "1101-1201_unchanged": "f8f86a17ee3e2bd1cf0eb6157144068301b9cb5ed35c504ae38afbbfb6a78e06",
    }
    for stem, sha in twiki_sums.items():
        items.append((f"temporalwiki/probes/{stem}.jsonl",
                      f"data/TemporalWiki/eval/{stem}.jsonl", sha))
    return {rel: DataFileInfo(rel, repo, sha) for rel, repo, sha in items}


#: The known files, keyed by their path relative to a data directory.
FILES: dict[str, DataFileInfo] = _entries()

# (resolved path, size, mtime_ns) -> verified sha256; makes repeated checks cheap.
_VERIFIED: dict[tuple[str, int, int], str] = {}


def raw_url(repo_path: str, commit: str = PINNED_COMMIT) -> str:
    """Raw-download URL of ``repo_path`` in the authors' repository at ``commit``."""
    return f"{REPO_URL}/{commit}/{repo_path.lstrip('/')}"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: str | os.PathLike, expected: str) -> None:
    """Raise :class:`ChecksumError` unless ``path`` hashes to ``expected`` (cached per stat)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    actual = _VERIFIED.get(key)
    if actual is None:
        actual = sha256_file(p)
        _VERIFIED[key] = actual
    if actual != expected:
        raise ChecksumError(p, expected, actual)


def _fetch(url: str, dest_path: Path) -> None:
    """Download ``url`` into ``dest_path`` (tests monkeypatch this)."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp, \
            open(dest_path, "wb") as out:
        shutil.copyfileobj(resp, out)


def download(info: DataFileInfo, dest: Path) -> Path:
    """Fetch ``info`` to ``dest`` atomically: temp file in the same dir, verify, ``os.replace``.

    On any failure (network, checksum) no partial or wrong file is left behind.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _fetch(raw_url(info.repo_path), tmp)
        actual = sha256_file(tmp)
        if actual != info.sha256:
            raise ChecksumError(raw_url(info.repo_path), info.sha256, actual)
        os.replace(tmp, dest)
        st = dest.stat()
        _VERIFIED[(str(dest.resolve()), st.st_size, st.st_mtime_ns)] = actual
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return dest


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The user cache directory: ``cache_dir``, else ``$TRAINATTN_CACHE``, else ~/.cache."""
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(cache_dir).expanduser()


def data_file(
    relpath: str,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    verify: bool = True,
) -> Path:
    """Path of the known file ``relpath`` (a key of :data:`FILES`), verified against its SHA-256.

    A local directory (``data_dir`` or ``$TRAINATTN_DATA``) must contain the file, else
    :class:`FileNotFoundError`; otherwise the file is taken from, or downloaded into, the cache.
    Raises :class:`ChecksumError` when the bytes differ from the pinned version.
    """
    try:
        info = FILES[relpath]
    except KeyError:
        raise KeyError(f"unknown data file {relpath!r}; known: {sorted(FILES)}") from None
    if data_dir is None:
        data_dir = os.environ.get(DATA_ENV) or None
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        path = root / relpath
        if not path.is_file():
            raise FileNotFoundError(
                f"data directory {root} has no file {relpath} "
                f"(expected at {path}; upstream: {raw_url(info.repo_path)})"
            )
    else:
        path = cache_root(cache_dir) / "data" / relpath
        if not path.is_file():
            download(info, path)
    if verify:
        verify_file(path, info.sha256)
    return path
