"""Frozen run configurations, loadable from YAML and ``key=value`` overrides.

Every result file and checkpoint stores the config it was produced with
(:func:`to_dict`), so a number can always be traced to its settings.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass(frozen=True)
class ThetaConfig:
    """θ: the base LM being taught, trained through LoRA adapters."""

    model: str = "smollm2-135m"
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    max_length: int = 128  # tokens per document (the paper uses 512)


@dataclass(frozen=True)
class PhiConfig:
    """φ: Train-Attention, a (truncated) causal-LM body + LoRA + hidden→1 head."""

    model: str = "smollm2-135m"
    num_layers: int | None = 6  # None: every layer
    lora_rank: int = 16
    lora_alpha: int = 32
    bias_init: float = 4.0


@dataclass(frozen=True)
class MetaConfig:
    """Meta-training of φ (the paper's Algorithm 1, one example at a time)."""

    theta: ThetaConfig = field(default_factory=ThetaConfig)
    phi: PhiConfig = field(default_factory=PhiConfig)
    inner_optimizer: str = "adamw"  # "adamw" | "sgd"
    inner_lr: float = 2e-4  # α
    untracked_steps: int = 1  # the paper's dummy loop: no gradient to φ
    tracked_steps: int = 1  # differentiated through (create_graph=True)
    objective: str = "nll"  # "nll" | "change3" | "change2"
    drift_coef: float = 0.0  # weight of |ΔNLL| on unrelated text (0: off)
    outer_lr: float = 1e-3  # β
    meta_batch: int = 8  # examples whose φ-gradients are averaged per step
    meta_steps: int = 50
    probe_form: str = "schematic"  # T_D form, as the paper's LAMA-CKL meta-training
    val_every: int = 10  # meta-steps between validations (0: only at the end)
    val_size: int = 16
    val_epochs: int = 4
    val_lr: float = 1e-3
    val_batch: int = 8
    val_known_masking: bool = True
    checkpoint_every: int = 5
    seed: int = 0


@dataclass(frozen=True)
class CKLConfig:
    """One continual-knowledge-learning run of θ with one method."""

    theta: ThetaConfig = field(default_factory=ThetaConfig)
    method: str = "finetune"  # e.g. "taalm", "oracle", "rho1", "taalm+mixreview"
    benchmark: str = "lama-ckl"  # "lama-ckl" | "temporalwiki"
    n_to_learn: int = 100
    n_not_to_forget: int = 100
    epochs: int = 8
    lr: float = 1e-3
    batch_size: int = 8
    weight_decay: float = 0.0
    eval_batch_size: int = 32
    probe_form: str = "descriptive"
    val_fraction: float = 0.2  # held-out TO-LEARN slice for the validation-chosen epoch
    # early stopping on the validation slice: stop after this many epochs without a better
    # (accuracy, then lower object NLL) validation score; None trains all ``epochs``
    patience: int | None = None
    phi_checkpoint: str | None = None
    known_masking: bool = False
    # each method's own settings, by method name, e.g. {"rho1": {"keep": 0.6}}; the fields and
    # defaults are the method's ``Settings`` (trainattn.methods); absent means the defaults
    method_settings: dict = field(default_factory=dict)
    seed: int = 0


def to_dict(config) -> dict:
    """A plain, JSON-ready dict of a (nested) config."""
    return dataclasses.asdict(config)


# CKLConfig fields of results written before methods owned their settings → (method, setting)
_MOVED_TO_METHODS = {
    "rho_keep": ("rho1", "keep"), "review_ratio": ("mixreview", "ratio"),
    "review_decay": ("mixreview", "decay"), "review_pool": ("mixreview", "pool"),
    "recadam_k": ("recadam", "k"), "recadam_t0_fraction": ("recadam", "t0_fraction"),
    "recadam_coef": ("recadam", "coef"),
}


def from_dict(cls, data: dict, where: str = "config"):
    """Build ``cls`` from a dict, checking names and types; nested configs recurse.

    A :class:`CKLConfig` dict of an older result (``rho_keep``, ``review_*``,
    ``recadam_*`` at the top) reads back with those values under ``method_settings``.
    """
    data = dict(data or {})
    if cls is CKLConfig and any(k in data for k in _MOVED_TO_METHODS):
        methods = {k: dict(v) for k, v in (data.get("method_settings") or {}).items()}
        for old, (method, setting) in _MOVED_TO_METHODS.items():
            if old in data:
                methods.setdefault(method, {})[setting] = data.pop(old)
        data["method_settings"] = methods
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
    values = {}
    for name, value in data.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            values[name] = from_dict(kind, value, f"{where}.{name}")
        else:
            values[name] = _coerce(value, kind, f"{where}.{name}")
    return cls(**values)


def _coerce(value, kind, where: str):
    options = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    if value is None:
        if type(None) in options:
            return None
        raise ValueError(f"{where}: may not be null")
    for option in options:
        if option is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
        elif option is int and isinstance(value, (int, str)) and not isinstance(value, bool):
            try:
                return int(value)
            except ValueError:
                continue
        elif option is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                return float(value)
            except ValueError:
                continue
        elif option is str and isinstance(value, str):
            return value
        elif option is dict and isinstance(value, dict):
            return {k: (dict(v) if isinstance(v, dict) else v) for k, v in value.items()}
    names = " | ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ValueError(f"{where}: expected {names}, got {value!r}")


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=value`` strings to a nested dict (values stay strings; types are checked later)."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (data or {}).items()}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        target = data
        *parents, leaf = key.strip().split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = yaml.safe_load(value) if value.strip().lower() not in ("none", "null") else None
    return data


def load_config(cls, path: str | Path | None = None, overrides: list[str] | None = None):
    """``cls`` from an optional YAML file plus ``key=value`` overrides."""
    data = {}
    if path is not None:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of config fields")
    return from_dict(cls, apply_overrides(data, overrides or []), where=str(path or cls.__name__))
