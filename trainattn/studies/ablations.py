"""Ablations of TAALM: one named variant = a few config overrides, run end to end.

A variant changes the base :class:`~trainattn.config.MetaConfig` (and its
:class:`~trainattn.config.PhiConfig`) and/or the base
:class:`~trainattn.config.CKLConfig`. :func:`run_variant` then

1. meta-trains φ under the variant's MetaConfig (resumable, in
   ``<run_dir>/<owner>/meta``, where ``owner`` is the first variant of the table
   with the same MetaConfig: a variant that only changes θ's training, such as
   known-token masking, reuses that φ instead of training an identical one);
2. validates φ on held-out meta-pool documents (:func:`~trainattn.protocols.meta_training.validate`:
   a fresh θ trained with φ's weights vs uniform weights, never the TO-LEARN
   test probes), with known-token masking as in the variant's CKL runs;
3. runs TAALM with that φ on a LAMA-CKL split (``<run_dir>/<variant>/ckl``),

and returns one flat row of numbers, also written to ``<run_dir>/<variant>/row.json``.
A finished variant is read back (after checking its configs and data), not
recomputed; an unfinished one resumes its meta-training or its CKL run.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from trainattn.config import CKLConfig, MetaConfig, to_dict
from trainattn.core.inner import make_inner_optimizer
from trainattn.core.intervals import RunFacts, bootstrap
from trainattn.core.lora import add_lora, trainable_tensors
from trainattn.core.losses import per_token_nll, token_weighted_loss, uniform_weights
from trainattn.core.meta import MetaExample, MetaLearner, theta_logits
from trainattn.core.spans import encode_with_objects
from trainattn.methods import make_method
from trainattn.protocols.grid import lr_choice_record
from trainattn.protocols.lama_ckl import run_lama_ckl
from trainattn.protocols.meta_training import meta_train, validate
from trainattn.protocols.store import Run, data_fingerprint, run_identity, run_lock


@dataclass(frozen=True)
class Variant:
    """Overrides of the base configs: MetaConfig fields, PhiConfig fields, CKLConfig fields."""

    description: str
    meta: Mapping = field(default_factory=dict)
    phi: Mapping = field(default_factory=dict)
    ckl: Mapping = field(default_factory=dict)


def ablation_variants(phi_layers_alt: int | None = 2, sgd_inner_lr: float = 0.2) -> dict[str, Variant]:
    """The chapter's variants, ``base`` first (the base configs unchanged).

    ``phi_layers_alt``: φ's depth in the ``phi_depth`` variant. ``sgd_inner_lr``:
    the SGD inner step size (see :func:`match_sgd_lr`; AdamW's α means nothing to SGD).
    """
    return {
        "base": Variant("the base settings: 1 untracked + 1 tracked AdamW step, probe NLL, no known masking"),
        "untracked_0": Variant("no untracked (dummy) step: the tracked step is AdamW's first",
                               meta={"untracked_steps": 0}),
        "untracked_3": Variant("3 untracked (dummy) steps before the tracked one", meta={"untracked_steps": 3}),
        "sgd": Variant("inner optimizer SGD instead of AdamW (its own step size)",
                       meta={"inner_optimizer": "sgd", "inner_lr": sgd_inner_lr}),
        "change3": Variant("outer objective change3: mean cubed change of the probe NLL",
                           meta={"objective": "change3"}),
        "known_masking": Variant("known-token masking when θ trains with φ's weights (validation and CKL)",
                                 ckl={"known_masking": True}),
        "phi_depth": Variant(f"φ with {phi_layers_alt or 'all'} layers", phi={"num_layers": phi_layers_alt}),
    }


def _replace(config, overrides: Mapping, where: str):
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown} of {type(config).__name__}")
    return replace(config, **overrides)


def variant_configs(name: str, base_meta: MetaConfig, base_ckl: CKLConfig,
                    variants: Mapping[str, Variant] | None = None) -> tuple[MetaConfig, CKLConfig]:
    """The variant's (MetaConfig, CKLConfig): the base configs with its overrides applied."""
    variants = ablation_variants() if variants is None else variants
    if name not in variants:
        raise ValueError(f"unknown ablation variant {name!r}; known: {', '.join(variants)}")
    v = variants[name]
    meta = _replace(base_meta, v.meta, f"variant {name!r} (meta)")
    meta = replace(meta, phi=_replace(meta.phi, v.phi, f"variant {name!r} (phi)"))
    return meta, _replace(base_ckl, v.ckl, f"variant {name!r} (ckl)")


def meta_owner(name: str, base_meta: MetaConfig, base_ckl: CKLConfig,
               variants: Mapping[str, Variant] | None = None) -> str:
    """The first variant (table order) with the same MetaConfig as ``name``: whose φ it uses."""
    variants = ablation_variants() if variants is None else variants
    meta, _ = variant_configs(name, base_meta, base_ckl, variants)
    return next(n for n in variants if variant_configs(n, base_meta, base_ckl, variants)[0] == meta)


def match_sgd_lr(theta, tokenizer, examples: list[MetaExample], adamw_lr: float, max_length: int,
                 weight_decay: float = 0.01) -> float:
    """An SGD step size that moves θ's trainable tensors as far as a first AdamW step of ``adamw_lr``.

    For each document (uniform weights) the ratio of the two steps' norms is
    taken at θ's current tensors; the median, rounded to 2 significant digits
    (so the value, which enters the config, is stable across machines).
    """
    params = trainable_tensors(theta)
    if not params:
        raise ValueError("θ has no trainable tensors (add LoRA first)")
    device = next(theta.parameters()).device
    adamw, sgd = make_inner_optimizer("adamw", adamw_lr, weight_decay), make_inner_optimizer("sgd", 1.0)
    ratios = []
    for e in examples:
        doc = encode_with_objects(tokenizer, [e.document], [e.object], max_length).to(device)
        leaves = {n: p.detach().requires_grad_(True) for n, p in params.items()}
        with torch.enable_grad():
            logits = theta_logits(theta, leaves, doc)
            loss = token_weighted_loss(per_token_nll(logits, doc.input_ids), uniform_weights(doc.attention_mask),
                                       doc.attention_mask)
            grads = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values())), strict=True))
        with torch.no_grad():
            a, _ = adamw.step(leaves, grads, adamw.init(leaves))
            s, _ = sgd.step(leaves, grads, sgd.init(leaves))
            if _distance(s, leaves) > 0:
                ratios.append(_distance(a, leaves) / _distance(s, leaves))
    if not ratios:
        raise ValueError("no document gave a non-zero gradient")
    lr = statistics.median(ratios)
    return float(f"{lr:.2g}")


def _distance(new: dict, old: dict) -> float:
    return torch.sqrt(sum(((new[n] - old[n]) ** 2).sum() for n in old)).item()


# ---------------------------------------------------------------- running one variant

ROW_KEYS = (
    "meta_seconds", "meta_steps", "phi_grad_norm", "outer_loss_first", "outer_loss_last",
    "val_phi_acc", "val_phi_nll", "val_uniform_acc", "val_uniform_nll", "weight_object", "weight_other",
    "top_acc", "epoch", "nf_acc", "total_knowledge", "ckl_seconds",
)


def ckl_numbers(result: dict) -> dict:
    """A CKL run's row: the paper's metrics (test-curve reading), their 95 % intervals over facts
    (:func:`~trainattn.core.intervals.bootstrap`; ``None`` without per-fact scores), time, curves."""
    m = result["metrics"]["test_chosen"]
    seconds = sum(t["train_s"] + t["eval_s"] for t in result["timings"])
    facts = RunFacts.from_result(result, "test")
    ci = bootstrap([facts]) if facts is not None else {}
    return {"top_acc": m["top_acc"], "epoch": m["epoch"], "nf_acc": m["nf_acc"],
            "total_knowledge": m["total_knowledge"], "ckl_seconds": seconds,
            "top_acc_ci95": ci.get("top_acc_ci95"), "nf_acc_ci95": ci.get("nf_acc_ci95"),
            "to_learn_acc": result["curves"]["to_learn"]["acc"],
            "not_to_forget_acc": result["curves"]["not_to_forget"]["acc"]}


def tuned_ckl_run(config: CKLConfig, make, load_theta, tokenizer, to_learn, not_to_forget, out_dir,
                  lrs: Sequence[float] | None = None, **kw) -> dict:
    """One CKL run, or with ``lrs`` one per learning rate (``<out_dir>/lr-<lr>``) and the run whose
    validation score is best (:func:`~trainattn.protocols.grid.choose_lr`: the test facts never
    decide), with ``lr_choice`` added. ``make()`` returns a fresh method (a string name works too).
    """
    if not lrs:
        return run_lama_ckl(config, load_theta(), tokenizer, to_learn, not_to_forget, make(), out_dir=out_dir, **kw)
    by_lr = {float(lr): run_lama_ckl(replace(config, lr=float(lr)), load_theta(), tokenizer, to_learn, not_to_forget,
                                     make(), out_dir=Path(out_dir) / f"lr-{float(lr):g}", **kw) for lr in lrs}
    chosen, choice = lr_choice_record(by_lr)
    return {**by_lr[chosen], "lr_choice": choice}


def _lr_keys(result: dict) -> dict:
    """For a tuned run: the chosen learning rate and how it was chosen (untuned rows keep their keys)."""
    if "lr_choice" not in result:
        return {}
    return {"lr": result["lr_choice"]["chosen"], "lr_choice": result["lr_choice"]}


def run_variant(
    name: str,
    base_meta: MetaConfig,
    base_ckl: CKLConfig,
    *,
    run_dir,
    tokenizer,
    load_theta: Callable[[], torch.nn.Module],
    make_phi: Callable,
    train: list[MetaExample],
    val: list[MetaExample],
    to_learn: list[dict],
    not_to_forget: list[dict],
    variants: Mapping[str, Variant] | None = None,
    review_rows=None,
    progress: bool = False,
    lrs: Sequence[float] | None = None,
) -> dict:
    """Meta-train, validate and run TAALM for one variant; its row of numbers (see module doc).

    ``load_theta()`` returns a fresh θ without adapters (called for meta-training and for
    each CKL run); ``make_phi(phi_config, seed)`` an untrained φ. ``train`` / ``val``:
    meta-pool examples (φ's training pool and held-out documents); ``to_learn`` /
    ``not_to_forget``: LAMA-CKL rows. ``lrs``: the CKL learning rate is chosen from these on the
    validation slice (:func:`tuned_ckl_run`: chapter 04's budget); ``None`` runs the config's.
    """
    variants = ablation_variants() if variants is None else variants
    meta_cfg, ckl_cfg = variant_configs(name, base_meta, base_ckl, variants)
    run_dir = Path(run_dir)
    owner = meta_owner(name, base_meta, base_ckl, variants)
    meta_dir = run_dir / owner / "meta"
    ckl_cfg = replace(ckl_cfg, method="taalm", phi_checkpoint=str(meta_dir),
                      n_to_learn=len(to_learn), n_not_to_forget=len(not_to_forget))
    # validation trains θ with φ's weights: known-token masking as in the CKL runs
    val_cfg = replace(meta_cfg, val_known_masking=ckl_cfg.known_masking)
    data = data_fingerprint(train, val, to_learn, not_to_forget)
    folder = run_dir / name
    tuned = {} if not lrs else {"lrs": [float(x) for x in lrs]}  # untuned rows keep their identity
    run = Run(folder, run_identity(variant=name, meta=to_dict(meta_cfg), validation=to_dict(val_cfg),
                                   ckl=to_dict(ckl_cfg), data=data, **tuned))
    with run.lock():  # another process computing this variant: wait, then read it back
        cached = run.read_result("row.json")
        if cached is not None:
            return cached["row"]

        theta = add_lora(load_theta(), meta_cfg.theta.lora_rank, meta_cfg.theta.lora_alpha,
                         meta_cfg.theta.lora_dropout, seed=meta_cfg.seed)
        device = next(theta.parameters()).device
        phi = make_phi(meta_cfg.phi, meta_cfg.seed).to(device)
        learner = MetaLearner(meta_cfg, theta, phi, tokenizer)
        with run_lock(meta_dir):  # variants sharing this φ (meta_owner) may run in other processes
            meta = meta_train(meta_cfg, learner, train, None, out_dir=meta_dir, progress=progress)
        if not meta["finished"]:
            raise RuntimeError(f"{meta_dir}: meta-training stopped at step {meta['step']}")

        validation_run = Run(folder, run_identity(validation=to_dict(val_cfg), data=data))
        saved = validation_run.read_result("validation.json")
        if saved is None:
            learner.config = val_cfg  # the same θ₀ and φ; only the validation settings differ
            report = validate(learner, val)
            validation_run.write_result({"validation": report}, "validation.json")
        else:
            report = saved["validation"]
        del theta, learner

        result = tuned_ckl_run(ckl_cfg, lambda: make_method("taalm", phi=phi), load_theta, tokenizer, to_learn,
                               not_to_forget, folder / "ckl", lrs, review_rows=review_rows, progress=progress)
        history = meta["history"]
        row = {
            "variant": name, "description": variants[name].description, "phi_from": owner,
            "overrides": {k: dict(getattr(variants[name], k)) for k in ("meta", "phi", "ckl")},
            "meta_seconds": meta["seconds"], "meta_steps": meta["step"],
            "phi_grad_norm": statistics.fmean(h["phi_grad_norm"] for h in history),
            "outer_loss_first": history[0]["outer_loss"], "outer_loss_last": history[-1]["outer_loss"],
            "val_phi_acc": report["phi"]["accuracy"], "val_phi_nll": report["phi"]["nll"],
            "val_uniform_acc": report["uniform"]["accuracy"], "val_uniform_nll": report["uniform"]["nll"],
            "weight_object": report["weight_object"], "weight_other": report["weight_other"],
            **ckl_numbers(result),
            **_lr_keys(result),
        }
        run.write_result({"row": row}, "row.json")
        return row


def run_reference(
    method: str,
    base_ckl: CKLConfig,
    *,
    run_dir,
    tokenizer,
    load_theta: Callable[[], torch.nn.Module],
    to_learn: list[dict],
    not_to_forget: list[dict],
    review_rows=None,
    progress: bool = False,
    lrs: Sequence[float] | None = None,
) -> dict:
    """A φ-free CKL run (e.g. ``"finetune"``) at the same scale, in ``<run_dir>/<method>/``: its numbers.

    ``lrs`` as for :func:`run_variant`."""
    config = replace(base_ckl, method=method, phi_checkpoint=None,
                     n_to_learn=len(to_learn), n_not_to_forget=len(not_to_forget))
    folder = Path(run_dir) / method
    tuned = {} if not lrs else {"lrs": [float(x) for x in lrs]}
    run = Run(folder, run_identity(ckl=to_dict(config), data=data_fingerprint(to_learn, not_to_forget), **tuned))
    with run.lock():
        cached = run.read_result("row.json")
        if cached is not None:
            return cached["row"]
        result = tuned_ckl_run(config, lambda: method, load_theta, tokenizer, to_learn, not_to_forget,
                               folder / "ckl", lrs, review_rows=review_rows, progress=progress)
        row = {"variant": method, **ckl_numbers(result), **_lr_keys(result)}
        run.write_result({"row": row}, "row.json")
        return row


# ---------------------------------------------------------------- table and figure

TABLE_COLUMNS = (
    ("variant", "variant"), ("meta_seconds", "meta-train s"), ("phi_grad_norm", "‖∇φ‖"),
    ("val_phi_acc", "val acc φ"), ("val_uniform_acc", "val acc uniform"),
    ("val_phi_nll", "val NLL φ"), ("val_uniform_nll", "val NLL uniform"),
    ("weight_object", "w object"), ("weight_other", "w other"),
    ("top_acc", "Top Acc"), ("epoch", "Epoch"), ("nf_acc", "NF Acc"), ("total_knowledge", "Total Knowledge"),
)

# the chapter's table: markdown_table(TABLE_COLUMNS, rows, TABLE_FORMATS)
TABLE_FORMATS = {"meta_seconds": ".0f", "phi_grad_norm": ".2e"}
