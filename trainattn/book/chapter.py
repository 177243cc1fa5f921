"""The glue every chapter shares, so a notebook keeps its prose and the calls that teach.

A notebook's first code cell holds its parameters as plain literals (papermill
overrides them per profile). Right after its imports it builds one
:class:`Chapter` from those values::

    chapter = Chapter(globals())
    theta, tokenizer = chapter.load_theta()
    to_learn, not_to_forget, splits = chapter.lama_ckl_split(theta, tokenizer)
    base = chapter.ckl_config(n_to_learn=len(to_learn), n_not_to_forget=len(not_to_forget))
    ...
    chapter.write_results(results)

A config is built from the parameters whose names are config fields (``lr``,
``epochs``, ``batch_size`` …; θ's ``model_name``, ``lora_rank`` …); keyword
arguments override them. Parameters that name other things with a config
field's name are never taken (a chapter's ``methods`` list, its fact counts).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainattn.config import CKLConfig, MetaConfig, PhiConfig, ThetaConfig
from trainattn.files import read_json, write_json_atomic
from trainattn.report.provenance import provenance_note, runs_provenance

LITERALS = (str, int, float, bool, type(None), list, tuple, dict)
# parameter names that mean something else in a notebook than the config field of that name
NOT_CONFIG = {"methods", "n_to_learn", "n_not_to_forget", "phi_checkpoint"}
SPLIT_SOURCES = ("tailored", "released")


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


class Chapter:
    """A notebook's parameters and the helpers that turn them into configs, models, data and files."""

    def __init__(self, namespace: Mapping[str, Any]):
        self.params = {k: v for k, v in namespace.items()
                       if not k.startswith("_") and isinstance(v, LITERALS)}
        # the plain runners (scripts/run_notebook_plain.py) name the notebook; under papermill the
        # book runner's results path is always results/<profile>/<stem>.json
        self._notebook = namespace.get("__notebook__")

    @property
    def stem(self) -> str:
        """The notebook's name without ``.ipynb``: ``__notebook__`` when a runner set it, else the results file's stem."""
        return self._notebook or self.results_path.stem

    def __getitem__(self, name: str):
        try:
            return self.params[name]
        except KeyError:
            raise KeyError(f"the notebook has no parameter {name!r}; add it to its parameters cell") from None

    def _pick(self, cls, exclude=()) -> dict:
        names = _fields(cls) - NOT_CONFIG - set(exclude)
        return {k: self.params[k] for k in names if k in self.params}

    # ------------------------------------------------------------ configs

    def theta_config(self, **fields) -> ThetaConfig:
        """θ: ``model_name``, ``lora_rank``, ``lora_alpha``, ``lora_dropout``, ``max_length``."""
        values = {"model": self["model_name"], **self._pick(ThetaConfig, exclude={"model"})}
        return ThetaConfig(**{**values, **fields})

    def phi_config(self, **fields) -> PhiConfig:
        """φ on θ's backbone: ``phi_layers`` layers, θ's ``lora_rank`` and ``lora_alpha``."""
        values = {"model": self["model_name"], "num_layers": self.params.get("phi_layers", 6),
                  **self._pick(PhiConfig, exclude={"model", "num_layers"})}
        return PhiConfig(**{**values, **fields})

    def ckl_config(self, **fields) -> CKLConfig:
        """A CKL run's config: θ's config and every CKL field the notebook sets, then ``fields``."""
        values = {"theta": self.theta_config(), **self._pick(CKLConfig, exclude={"theta"})}
        return CKLConfig(**{**values, **fields})

    def meta_config(self, **fields) -> MetaConfig:
        """A meta-training config: θ's and φ's configs and every meta field the notebook sets, then ``fields``."""
        values = {"theta": self.theta_config(), "phi": self.phi_config(),
                  **self._pick(MetaConfig, exclude={"theta", "phi"})}
        return MetaConfig(**{**values, **fields})

    # ------------------------------------------------------------ models and data

    def load_theta(self):
        """A fresh ``(θ, tokenizer)`` (runs modify θ in place): ``model_name`` in ``dtype`` on ``device``."""
        import torch

        from trainattn.lm import load_lm

        dtype = getattr(torch, self.params.get("dtype", "float32"))
        return load_lm(self["model_name"], dtype=dtype, device=self.params.get("device"))

    def lama_ckl_split(self, theta, tokenizer, n_to_learn: int | None = None,
                       n_not_to_forget: int | None = None, split_seed: int | None = None):
        """``(to_learn, not_to_forget, splits)``: the LAMA-CKL facts a chapter trains and tests on.

        ``split_source`` "tailored" (default) re-selects the facts for this model by the
        paper's rules (:func:`~trainattn.data.tailor_lama_ckl`, seed ``split_seed``: the argument,
        else the parameter; cached);
        "released" takes the first rows of the paper's files (chosen for Llama-2 /
        TinyLlama), and ``splits`` is then ``None``.
        """
        from trainattn.data import load_lama_ckl, tailor_lama_ckl

        n_to_learn = self["n_to_learn"] if n_to_learn is None else n_to_learn
        n_not_to_forget = self["n_not_to_forget"] if n_not_to_forget is None else n_not_to_forget
        source, data_dir = self.params.get("split_source", "tailored"), self.params.get("data_dir")
        if source == "tailored":
            splits = tailor_lama_ckl(theta, tokenizer, self["model_name"], n_to_learn, n_not_to_forget,
                                     seed=self.params.get("split_seed", 42) if split_seed is None else split_seed,
                                     data_dir=data_dir, progress=False)
            return splits.to_learn[:n_to_learn], splits.not_to_forget[:n_not_to_forget], splits
        if source == "released":
            to_learn = list(load_lama_ckl("variant", data_dir=data_dir).select(range(n_to_learn)))
            nf = load_lama_ckl("invariant_descriptive", data_dir=data_dir).select(range(n_not_to_forget))
            return to_learn, list(nf), None
        raise ValueError(f"split_source must be one of {SPLIT_SOURCES}, not {source!r}")

    # ------------------------------------------------------------ files

    @property
    def results_path(self) -> Path:
        return Path(self["results_path"])

    def work_dir(self, name: str | None = None) -> Path:
        """``run_dir`` when the profile sets one, else ``<results folder>/<stem>_work`` (regenerated by the runner)."""
        run_dir = self.params.get("run_dir")
        if run_dir:
            return Path(run_dir)
        return self.results_path.parent / f"{name or self.results_path.stem}_work"

    def runs_provenance(self, run_dir: str | Path | None = None) -> dict:
        """Where and when the run records under ``run_dir`` (default :meth:`work_dir`) were computed.

        Every ``result.json`` below the folder counts (learning-rate candidates included):
        :func:`~trainattn.report.provenance.runs_provenance`.
        """
        folder = Path(run_dir) if run_dir is not None else self.work_dir()
        records = [read_json(p) for p in sorted(folder.rglob("result.json"))] if folder.is_dir() else []
        return runs_provenance(r for r in records if isinstance(r, dict))

    def provenance_note(self, run_dir: str | Path | None = None) -> str:
        """The Markdown line shown under a chapter's tables: hardware, dates, commits, how to recompute."""
        return provenance_note(self.runs_provenance(run_dir), self.stem, self["profile"])

    def figure_path(self, suffix: str) -> Path:
        """``<results path>.<suffix>.png``: a figure committed beside the results."""
        return self.results_path.with_suffix(f".{suffix}.png")

    def write_results(self, results: dict) -> Path:
        """Write the chapter's results (checked against the profile's reference) atomically; the path."""
        path = write_json_atomic(self.results_path, results)
        print(f"all expectations hold; results written to {path}")
        return path

    def write_companion(self, name: str, data) -> Path:
        """Write ``<results folder>/<name>.json``, a file published beside the chapter's results.

        The book runner finds a chapter's companions by reading its
        ``write_companion("<name>", …)`` calls (:func:`companion_files`).
        """
        return write_json_atomic(self.results_path.with_name(f"{name}.json"), data)


_COMPANION_CALL = re.compile(r"""write_companion\(\s*["']([\w.-]+)["']""")


def companion_files(sources: Mapping[str, str]) -> dict[str, str]:
    """``{companion name: notebook stem}`` from each notebook's code (``{stem: source}``)."""
    found: dict[str, str] = {}
    for stem, source in sources.items():
        for name in _COMPANION_CALL.findall(source):
            if found.get(name, stem) != stem:
                raise ValueError(f"companion {name!r} is written by both {found[name]} and {stem}")
            found[name] = stem
    return found
