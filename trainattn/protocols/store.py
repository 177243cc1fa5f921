"""The run store: what a run *is*, where it lives, and when it may be resumed or read back.

Every protocol (LAMA-CKL, TemporalWiki, meta-training, grids, ablations, open
questions) keeps its runs here, so there is one answer to "is this the same run?":

* a run's **identity** (:func:`run_identity`) is its config as a dict, the
  method's name, a fingerprint of its data (:func:`data_fingerprint`) and of
  the φ it uses (:func:`phi_fingerprint`), plus whatever else a protocol adds
  (periods, a variant's name). It is stored in every checkpoint and result the
  run writes;
* a :class:`Run` is a folder with that identity. It holds versioned
  checkpoints (``checkpoint/<label>/`` + ``checkpoint/latest``, written through
  a temporary folder so a crash never leaves half a checkpoint), and finished
  results (``result.json`` or another name) that are read back instead of
  recomputed. Reading a checkpoint or result written with another identity is
  an error that names the file and the keys that differ;
* :func:`run_lock` lets several processes share a folder: the second process
  waits, then finds the finished result and reads it back (``filelock``, so it
  works on Linux, macOS and Windows; a lock dies with its process);
* :func:`provenance` records who computed a result: software versions,
  hardware, date and, where the working tree is a git checkout, the commit.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainattn.errors import TrainattnError
from trainattn.files import read_json, write_json_atomic, write_text_atomic

LOCK_NAME = ".lock"
RESULT_NAME = "result.json"
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILES = "files"  # state.json key: the files a checkpoint was written with
PHI_FILE = "phi.safetensors"


RECORDS_ONLY_ENV = "TRAINATTN_RECORDS_ONLY"


class RunMismatchError(TrainattnError, ValueError):
    """A checkpoint or result in a run folder was written by a run with another identity."""


class RecordMissingError(TrainattnError):
    """Records-only mode (``TRAINATTN_RECORDS_ONLY=1``): a run has no finished record to read back.

    The published book sets this mode, so that a chapter whose runs are not all committed is
    never computed by accident (hours); ``folder`` names the first run found missing.
    """

    def __init__(self, folder: Path, name: str):
        self.folder = Path(folder)
        super().__init__(f"{self.folder / name}: no finished run to read back, and {RECORDS_ONLY_ENV} is set "
                         "(read committed records only, compute nothing)")


def records_only() -> bool:
    """Whether runs may only be read back (:data:`RECORDS_ONLY_ENV` set to a non-empty value other than 0)."""
    return os.environ.get(RECORDS_ONLY_ENV, "") not in ("", "0")


def require_records(folders, name: str = RESULT_NAME) -> None:
    """In records-only mode, raise :class:`RecordMissingError` for the first of ``folders`` without ``name``.

    A chapter calls this before work that only matters if its runs can be read back (scoring
    thousands of probes with the untrained θ), so that the published book gives way to the
    fallback profile at once. Outside records-only mode it does nothing.
    """
    if not records_only():
        return
    for folder in folders:
        if not (Path(folder) / name).is_file():
            raise RecordMissingError(Path(folder), name)


# ---------------------------------------------------------------- provenance


def versions() -> dict:
    """Versions of the software that produced a result, and the hardware it could use.

    ``hardware`` is the first CUDA device's name where one is visible (runs on
    such a machine put θ there), else ``cpu (<n> cores)``.
    """
    import torch
    import transformers

    from trainattn import __version__

    cuda = torch.cuda.is_available()
    return {
        "trainattn": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "hardware": torch.cuda.get_device_name(0) if cuda else f"cpu ({os.cpu_count()} cores)",
    }


def git_commit(root: str | os.PathLike | None = None) -> str | None:
    """The short commit of the git checkout holding ``root`` (default: this package), else ``None``.

    ``+dirty`` is appended when tracked files differ from that commit: the code that ran is then
    not exactly the commit's.
    """
    root = Path(root) if root is not None else Path(__file__).resolve().parent

    def git(*args) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short=12", "HEAD")
    if not commit:
        return None
    changed = git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}+dirty" if changed else commit


def provenance() -> dict:
    """Where and when a result was computed: :func:`versions`, UTC date and git commit."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return {**versions(), "date": now.isoformat(), "commit": git_commit()}


# ---------------------------------------------------------------- identity


def normalised(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def data_fingerprint(*groups: Iterable) -> str:
    """SHA-256 over groups of rows or examples, in order.

    A row (dict) counts by its ``uuid``; an example by its ``uuid`` or, without
    one, its document; any other item by its text. Groups are separated, so
    moving an item from one group to the next changes the fingerprint.
    """
    digest = hashlib.sha256()
    for group in groups:
        keys = []
        for item in group:
            if isinstance(item, dict):
                keys.append(str(item["uuid"]))
            elif hasattr(item, "document"):
                keys.append(getattr(item, "uuid", None) or item.document)
            else:
                keys.append(str(item))
        digest.update(("\n".join(keys) + "\0").encode())
    return digest.hexdigest()


def phi_file(run_dir: str | os.PathLike) -> Path:
    """The trained φ tensors of a meta-training run folder (its latest checkpoint)."""
    folder = Path(run_dir)
    candidates = [latest_checkpoint(folder), folder / CHECKPOINT_DIR, folder]
    for candidate in candidates:
        if candidate is not None and (candidate / PHI_FILE).is_file():
            return candidate / PHI_FILE
    raise FileNotFoundError(
        f"{run_dir}: no trained φ ({CHECKPOINT_DIR}/…/{PHI_FILE}); meta-train it first "
        "(notebook 03_meta_training or `trainattn meta-train --out ...`)"
    )


def phi_fingerprint(phi) -> str | None:
    """SHA-256 of φ's trained tensors (LoRA + head) as safetensors bytes; ``None`` without φ.

    ``phi`` is a :class:`~trainattn.core.train_attention.TrainAttention`, a
    meta-training run folder, or a ``phi.safetensors`` file. The three agree:
    the tensors are hashed in one canonical form (float32, CPU, safetensors
    bytes), and a meta-training run saves exactly the tensors of
    :meth:`~trainattn.core.train_attention.TrainAttention.trained_tensors`.
    So a φ re-trained into the same folder never resumes or reads back an old
    run, and a φ loaded from its file is the φ that file names.
    """
    if phi is None:
        return None
    import torch
    from safetensors.torch import load_file, save

    if isinstance(phi, (str, os.PathLike)):
        path = Path(phi)
        tensors = load_file(str(path if path.is_file() else phi_file(path)))
    else:
        tensors = phi.trained_tensors()
    canonical = {n: t.detach().to("cpu", dtype=torch.float32).contiguous() for n, t in tensors.items()}
    return hashlib.sha256(save(canonical)).hexdigest()



def method_phi(method) -> Any:
    """The φ a (composite) method weights tokens with, or ``None``."""
    weighting = getattr(method, "weighting_method", method)
    return getattr(weighting, "phi", None)


def config_identity(config) -> dict:
    """What of a config defines a run: every field except where φ was read from (``phi_checkpoint``,
    a path; φ counts by :func:`phi_fingerprint`), a CKL run's method by its canonical name, and
    its method settings resolved
    for the methods it uses (a default spelled out equals a default left out; settings of
    methods the run does not use do not count)."""
    from trainattn.config import CKLConfig, from_dict, to_dict

    if isinstance(config, dict):
        return {k: v for k, v in config.items() if k != "phi_checkpoint"}
    data = {k: v for k, v in to_dict(config).items() if k != "phi_checkpoint"}
    if isinstance(config, CKLConfig):
        from dataclasses import asdict

        from trainattn.methods import METHODS, canonical_method_name

        data["method"] = canonical_method_name(config.method)  # "kadapter" is "finetune+kadapter"
        given = config.method_settings or {}
        resolved = {}
        for name in canonical_method_name(config.method).split("+"):
            settings = from_dict(METHODS[name].Settings, given.get(name, {}), f"method_settings.{name}")
            if asdict(settings):
                resolved[name] = asdict(settings)
        data["method_settings"] = resolved
    return data


def run_identity(config=None, *, method=None, data: str | None = None, phi=None,
                 phi_sha256: str | None = None, **parts) -> dict:
    """A run's identity, normalised as JSON reads it back.

    ``config``: a frozen config dataclass (or a dict); ``method``: a method or
    its name; ``data``: a :func:`data_fingerprint`; ``phi``: what
    :func:`phi_fingerprint` accepts, or a method whose φ counts (``phi_sha256``:
    that fingerprint, already computed); ``parts``:
    anything else that defines the run. Keys left as ``None`` are dropped.
    """
    if phi is not None and hasattr(phi, "weighting_method"):
        phi = method_phi(phi)
    identity = {
        "config": None if config is None else config_identity(config),
        "method": getattr(method, "name", method),
        "data_sha256": data,
        "phi_sha256": phi_sha256 or phi_fingerprint(phi),
        **parts,
    }
    return normalised({k: v for k, v in identity.items() if v is not None})


def differing_keys(saved: dict, identity: dict, ignore: Iterable[str] = ()) -> list[str]:
    """Top-level keys (and ``config`` fields) whose values differ between two identities."""
    ignore = set(ignore)
    keys = []
    for key in sorted(set(saved) | set(identity)):
        if key in ignore or saved.get(key) == identity.get(key):
            continue
        a, b = saved.get(key), identity.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k not in ignore]
        else:
            keys.append(key)
    return keys


# ---------------------------------------------------------------- locks


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike | None, name: str = LOCK_NAME) -> Iterator[Path | None]:
    """Hold an exclusive lock on ``<folder>/<name>`` (the folder is created); yields the folder.

    ``folder=None`` (a run that writes nothing) locks nothing. A process that
    dies releases its lock, so a stale lock file never blocks a rerun.
    """
    if folder is None:
        yield None
        return
    from filelock import FileLock

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / name)):
        yield folder


# ---------------------------------------------------------------- checkpoints


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The folder ``<folder>/checkpoint/latest`` points at, or ``None``."""
    pointer = Path(folder) / CHECKPOINT_DIR / "latest"
    if not pointer.is_file():
        return None
    target = pointer.parent / pointer.read_text().strip()
    return target if target.is_dir() else None


@dataclass
class Checkpoint:
    """A saved checkpoint: ``state`` (JSON) and lazily loaded tensor files and torch objects."""

    folder: Path
    state: dict

    def tensors(self, name: str) -> dict:
        """``<name>.safetensors`` as a dict of CPU tensors."""
        from safetensors.torch import load_file

        return load_file(str(self._file(f"{name}.safetensors")))

    def object(self, name: str, map_location="cpu"):
        """``<name>.pt`` (an optimizer's ``state_dict``; tensors only, loaded with ``weights_only``)."""
        import torch

        return torch.load(self._file(f"{name}.pt"), map_location=map_location, weights_only=True)

    def _file(self, name: str) -> Path:
        path = self.folder / name
        if not path.is_file():
            raise FileNotFoundError(
                f"checkpoint {self.folder} has no {name} (copied without its tensor files?); "
                f"delete {self.folder.parent} to compute the run afresh")
        return path


@dataclass
class Run:
    """A run folder with an identity: checkpoints, results, locks.

    ``ignore``: identity keys that may differ on resume (bookkeeping such as
    how often to checkpoint). ``folder=None`` is a run that stores nothing:
    every read finds nothing and every write is skipped.
    """

    folder: Path | None
    identity: dict
    ignore: tuple[str, ...] = field(default=())

    def __post_init__(self):
        self.folder = Path(self.folder) if self.folder is not None else None
        self.identity = normalised(self.identity)

    # --- identity
    def check(self, saved: dict | None, where: Path) -> None:
        """Raise :class:`RunMismatchError` unless ``saved`` is this run's identity."""
        keys = differing_keys(saved or {}, self.identity, self.ignore)
        if keys:
            raise RunMismatchError(
                f"{where} was written by a run with a different {', '.join(keys)}; "
                "use another folder, or delete that one to compute the run afresh")

    def lock(self, name: str = LOCK_NAME):
        """:func:`run_lock` on this run's folder."""
        return run_lock(self.folder, name)

    # --- results
    def read_result(self, name: str = RESULT_NAME) -> dict | None:
        """The finished result ``name`` of this run (without its identity), or ``None``.

        In records-only mode (:func:`records_only`) a stored run without the result raises
        :class:`RecordMissingError` instead: the caller would compute it.
        """
        if self.folder is None:
            return None
        if not (self.folder / name).is_file():
            if records_only():
                raise RecordMissingError(self.folder, name)
            return None
        saved = read_json(self.folder / name)
        self.check(saved.get("identity"), self.folder / name)
        return {k: v for k, v in saved.items() if k != "identity"}

    def write_result(self, result: dict, name: str = RESULT_NAME) -> dict:
        """Write ``result`` with this run's identity (atomically); returns ``result``."""
        if self.folder is not None:
            write_json_atomic(self.folder / name, {**result, "identity": self.identity})
        return result

    # --- checkpoints
    def save_checkpoint(self, label: str, state: dict, tensors: dict[str, dict] | None = None,
                        objects: dict[str, Any] | None = None) -> Path | None:
        """Write ``checkpoint/<label>/`` through a temporary folder, point ``latest`` at it, drop older ones.

        ``tensors``: ``{file stem: {name: tensor}}`` saved as safetensors;
        ``objects``: ``{file stem: state_dict}`` saved with ``torch.save``.
        """
        if self.folder is None:
            return None
        import torch
        from safetensors.torch import save_file

        root = self.folder / CHECKPOINT_DIR
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".tmp-{label}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for stem, group in (tensors or {}).items():
            save_file({n: t.detach().cpu().contiguous() for n, t in group.items()}, str(tmp / f"{stem}.safetensors"))
        for stem, obj in (objects or {}).items():
            torch.save(obj, tmp / f"{stem}.pt")
        files = sorted(p.name for p in tmp.iterdir())
        write_json_atomic(tmp / "state.json", {"identity": self.identity, CHECKPOINT_FILES: files, **state})
        shutil.rmtree(root / label, ignore_errors=True)
        os.replace(tmp, root / label)
        write_text_atomic(root / "latest", label)
        for old in root.iterdir():
            if old.is_dir() and old.name != label and not old.name.startswith(".tmp-"):
                shutil.rmtree(old, ignore_errors=True)
        return root / label

    def load_checkpoint(self, needs: Iterable[str] | None = None) -> Checkpoint | None:
        """The latest checkpoint of this run, or ``None``; another run's checkpoint is an error.

        ``needs``: the files the caller will read (default: every file the checkpoint was
        written with, which resuming needs). A checkpoint that lacks one of them (a copy or
        checkout that kept only the JSON: ``*.safetensors`` and ``*.pt`` are git-ignored) is
        reported with a warning and counts as absent (``None``): the run starts afresh.
        """
        if self.folder is None:
            return None
        folder = latest_checkpoint(self.folder)
        if folder is None:
            return None
        saved = read_json(folder / "state.json")
        self.check(saved.get("identity"), folder / "state.json")
        required = saved.get(CHECKPOINT_FILES, []) if needs is None else needs
        missing = [name for name in required if not (folder / name).is_file()]
        if missing:
            warnings.warn(f"checkpoint {folder} lacks {', '.join(missing)}: the run starts afresh",
                          stacklevel=2)
            return None
        return Checkpoint(folder, {k: v for k, v in saved.items() if k not in ("identity", CHECKPOINT_FILES)})
