"""The meta-training run: data order, validation, checkpoints and resume.

A run is a deterministic function of its config: the examples of meta-step s
are drawn from seeded per-pass permutations of the pool (no other randomness,
LoRA dropout is 0), and a checkpoint holds φ's trainable tensors
(safetensors), φ's AdamW state and the history. Resuming after step k
therefore continues the identical trajectory.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from trainattn.config import MetaConfig, to_dict
from trainattn.core.evaluate import lm_logits, score_probes
from trainattn.core.losses import (
    known_token_mask,
    mask_known_tokens,
    per_token_nll,
    token_weighted_loss,
    uniform_weights,
)
from trainattn.core.meta import MetaExample, MetaLearner
from trainattn.core.spans import encode_with_objects
from trainattn.files import read_json, write_json_atomic
from trainattn.protocols.store import (
    PHI_FILE,
    Run,
    data_fingerprint,
    phi_file,
    phi_fingerprint,
    provenance,
    run_identity,
    versions,
)

# settings that do not change φ's trajectory: a run may be resumed with other values
_BOOKKEEPING = ("checkpoint_every",)


def meta_pool_split(pool: list, val_size: int, n_train: int) -> tuple[list, list, list]:
    """``(val, train, unseen)``: the pool's first ``val_size`` examples validate φ, the next ``n_train``
    are meta-trained on (one pass: ``meta_steps × meta_batch``), the rest stay unseen.

    Chapter 03 and ``trainattn meta-train`` both split this way, so the same settings give the same
    run identity (the pool counts in it, and :func:`batch_indices` permutes the whole pool).
    """
    if val_size < 0 or n_train < 1:
        raise ValueError(f"val_size must be ≥ 0 and n_train ≥ 1, got {val_size} and {n_train}")
    if len(pool) < val_size + n_train:
        raise ValueError(f"the meta pool has {len(pool)} examples, fewer than {val_size} validation + "
                         f"{n_train} training ones")
    return pool[:val_size], pool[val_size : val_size + n_train], pool[val_size + n_train :]


def batch_indices(pool_size: int, meta_batch: int, step: int, seed: int) -> list[int]:
    """Pool indices of meta-step ``step`` (0-based): consecutive slices of seeded permutations."""
    if pool_size < 1:
        raise ValueError("the meta-training pool is empty")
    out = []
    for k in range(step * meta_batch, (step + 1) * meta_batch):
        epoch, offset = divmod(k, pool_size)
        perm = torch.randperm(pool_size, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        out.append(int(perm[offset]))
    return out


def meta_run(config: MetaConfig, pool, val_examples, drift_pool, out_dir) -> Run:
    """The run store's view of a meta-training run: its config and its examples.

    ``checkpoint_every`` does not change φ's trajectory, so a run may resume with another value.
    """
    data = data_fingerprint(pool, val_examples or [], drift_pool or [])
    return Run(out_dir, run_identity(config, data=data), ignore=_BOOKKEEPING)


def save_checkpoint(run: Run, learner: MetaLearner, state: dict) -> None:
    """Checkpoint φ's trainable tensors (``phi.safetensors``), φ's optimizer and ``state``."""
    run.save_checkpoint(f"step-{state['step']:06d}", state, tensors={"phi": learner.phi_params},
                        objects={"phi_optimizer": learner.phi_optimizer.state_dict()})


def best_validation(validations: list[dict]) -> dict:
    """The validation whose φ-weighted θ reached the lowest probe NLL (ties: the earliest).

    NLL rather than accuracy: with a few held-out probes, accuracy is mostly 0
    and cannot rank steps; NLL is continuous.
    """
    return min(validations, key=lambda v: (v["phi"]["nll"], v["step"]))


def save_best(run: Run, learner: MetaLearner, state: dict) -> None:
    """Keep φ of the best validation so far as a run folder of its own (``<out>/best``).

    ``load_trained_phi(<out>/best)`` loads it, like any meta-training run.
    """
    best = best_validation(state["validations"])
    run.save_checkpoint("best", {"config": state["config"], "step": best["step"], "validation": best},
                        tensors={"phi": learner.phi_params})


def load_checkpoint(run: Run, learner: MetaLearner) -> dict | None:
    """Restore φ and its optimizer from the run's latest checkpoint; the saved state, or ``None``."""
    checkpoint = run.load_checkpoint()
    if checkpoint is None:
        return None
    load_phi_tensors(learner.phi, checkpoint.folder / PHI_FILE)
    learner.phi_optimizer.load_state_dict(checkpoint.object("phi_optimizer"))
    return checkpoint.state


def load_phi_tensors(phi, path) -> None:
    """Load φ's trainable tensors (LoRA + head) saved by a meta-training run."""
    tensors = load_file(str(path))
    params = dict(phi.named_parameters())
    missing = [n for n in tensors if n not in params]
    if missing:
        raise ValueError(f"{path}: tensors {missing[:3]} do not belong to this φ (different depth or rank?)")
    with torch.no_grad():
        for n, t in tensors.items():
            params[n].copy_(t)


def validate(learner: MetaLearner, examples: list[MetaExample]) -> dict:
    """Train a fresh θ on held-out documents with φ's weights and with uniform weights.

    For each weighting, θ's LoRA starts from θ₀ and trains ``val_epochs``
    epochs (torch AdamW, ``val_lr``), then the held-out probes are scored. φ's
    mean weight on the documents' object tokens vs the other tokens is reported
    too. θ is restored to θ₀ afterwards.
    """
    cfg, theta, tokenizer, phi = learner.config, learner.theta, learner.tokenizer, learner.phi
    lora = {n: p for n, p in theta.named_parameters() if n in learner.theta0}
    device = next(theta.parameters()).device
    out = {}
    phi.eval()
    for mode in ("phi", "uniform"):
        with torch.no_grad():
            for n, p in lora.items():
                p.copy_(learner.theta0[n])
        for p in lora.values():
            p.requires_grad_(True)
        optimizer = torch.optim.AdamW(lora.values(), lr=cfg.val_lr)
        for _ in range(cfg.val_epochs):
            for start in range(0, len(examples), cfg.val_batch):
                chunk = examples[start : start + cfg.val_batch]
                doc = encode_with_objects(
                    tokenizer, [e.document for e in chunk], [e.object for e in chunk], cfg.theta.max_length
                ).to(device)
                logits = lm_logits(theta, doc)
                if mode == "phi":
                    with torch.no_grad():
                        weights = phi(doc.input_ids, doc.attention_mask, doc.position_ids)
                    if cfg.val_known_masking:
                        weights = mask_known_tokens(weights, known_token_mask(logits.detach(), doc.input_ids))
                else:
                    weights = uniform_weights(doc.attention_mask)
                loss = token_weighted_loss(per_token_nll(logits, doc.input_ids), weights, doc.attention_mask)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        scores = score_probes(theta, tokenizer, [e.probe for e in examples], [e.object for e in examples])
        out[mode] = {"accuracy": scores.mean_accuracy, "nll": scores.mean_nll}
        for p in lora.values():
            p.requires_grad_(False)
    with torch.no_grad():
        for n, p in lora.items():
            p.copy_(learner.theta0[n])
        on_object, other = [], []
        for e in examples:
            doc = encode_with_objects(tokenizer, [e.document], [e.object], cfg.theta.max_length).to(device)
            w = phi(doc.input_ids, doc.attention_mask, doc.position_ids)[0]
            real = doc.attention_mask[0, 1:].bool()
            on_object.append(w[doc.target_mask[0] & real].cpu())
            other.append(w[~doc.target_mask[0] & real].cpu())
    out["weight_object"] = torch.cat(on_object).mean().item() if on_object else float("nan")
    out["weight_other"] = torch.cat(other).mean().item() if other else float("nan")
    return out


def meta_train(
    config: MetaConfig,
    learner: MetaLearner,
    pool: list[MetaExample],
    val_examples: list[MetaExample] | None = None,
    out_dir: str | os.PathLike | None = None,
    drift_pool: list[MetaExample] | None = None,
    stop_after: int | None = None,
    progress: bool = True,
) -> dict:
    """Run (or resume) meta-training; returns the result dict (also written to ``out_dir``).

    ``stop_after`` ends the call after that many meta-steps in total (the run
    can be resumed later), which is how interruption is simulated in tests.
    """
    run = meta_run(config, pool, val_examples, drift_pool, out_dir)
    finished = run.read_result()
    if finished is not None and finished.get("finished"):
        # the same run, finished (here or on another machine): φ's tensors and the history are
        # read back; its optimizer state is not needed, so a shipped record may leave it out. A
        # record that ships only the φ chosen on validation (a split's φ) gives that one back.
        checkpoint = run.load_checkpoint(needs=[PHI_FILE])
        if checkpoint is None and run.folder is not None:
            checkpoint = Run(run.folder / "best", run.identity, run.ignore).load_checkpoint(needs=[PHI_FILE])
        if checkpoint is None:
            raise FileNotFoundError(f"{run.folder}: result.json says finished, but no checkpoint holds φ")
        load_phi_tensors(learner.phi, checkpoint.folder / PHI_FILE)
        return finished
    best_run = Run(run.folder / "best" if run.folder is not None else None, run.identity, run.ignore)
    state = load_checkpoint(run, learner) or {"step": 0, "history": [], "validations": [], "seconds": 0.0}
    state["config"] = to_dict(config)
    total = config.meta_steps if stop_after is None else min(stop_after, config.meta_steps)
    if val_examples and config.val_every and state["step"] == 0 and not state["validations"]:
        state["validations"].append({"step": 0, **validate(learner, val_examples)})
        save_best(best_run, learner, state)
    bar = tqdm(range(state["step"], total), desc="meta-training", disable=not progress,
               initial=state["step"], total=config.meta_steps)
    for step in bar:
        started = time.time()
        idx = batch_indices(len(pool), config.meta_batch, step, config.seed)
        drift = None
        if drift_pool:
            drift = [drift_pool[i] for i in batch_indices(len(drift_pool), config.meta_batch, step, config.seed + 1)]
        logs = learner.meta_step([pool[i] for i in idx], drift)
        state["seconds"] += time.time() - started
        state["step"] = step + 1
        state["history"].append({"step": step + 1, **logs})
        bar.set_postfix(loss=f"{logs['outer_loss']:.3f}", w_obj=f"{logs['weight_object']:.2f}",
                        w_other=f"{logs['weight_other']:.2f}")
        last = step + 1 == config.meta_steps
        if val_examples and ((config.val_every and (step + 1) % config.val_every == 0) or last):
            state["validations"].append({"step": step + 1, **validate(learner, val_examples)})
            if best_validation(state["validations"])["step"] == step + 1:
                save_best(best_run, learner, state)
        if (step + 1) % config.checkpoint_every == 0 or last or step + 1 == total:
            save_checkpoint(run, learner, state)
    result = {**state, "seed": config.seed, "versions": versions(), "finished": state["step"] >= config.meta_steps,
              "provenance": provenance()}  # when and at which commit it was written
    return run.write_result(result)


def trained_phi_config(run_dir) -> MetaConfig:
    """The :class:`~trainattn.config.MetaConfig` a meta-training run folder (or its ``best``) was made with."""
    from trainattn.config import from_dict

    state = phi_file(run_dir).parent / "state.json"
    if not state.is_file():
        raise FileNotFoundError(f"{run_dir}: no meta-training checkpoint (state.json) beside {PHI_FILE}")
    return from_dict(MetaConfig, read_json(state)["config"], str(state))


def export_phi(run_dir, out_dir) -> Path:
    """Copy a meta-training run's trained φ into a small folder that can be shipped and loaded.

    ``out_dir`` gets ``phi.safetensors`` (φ's LoRA + head tensors only: no backbone, no
    optimizer) and ``state.json`` (the run's config, its step, validations, where and when
    it was computed, and φ's fingerprint). :func:`load_trained_phi` and
    ``trainattn weights --phi <out_dir>`` load it like the run itself.
    """
    source = phi_file(run_dir)
    state = read_json(source.parent / "state.json")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out / PHI_FILE)
    keep = {k: state[k] for k in ("config", "step", "validations", "seconds") if k in state}
    finished = Path(run_dir) / "result.json"
    trained_on = read_json(finished).get("versions") if finished.is_file() else None
    source = Path(run_dir)
    if source.is_absolute():  # no machine's path in a file meant to be shipped
        source = Path(os.path.relpath(source)) if source.resolve().is_relative_to(Path.cwd()) else Path(source.name)
    write_json_atomic(out / "state.json", {**keep, "phi_sha256": phi_fingerprint(out / PHI_FILE),
                                           "exported_from": source.as_posix(), "trained_on": trained_on,
                                           "exported": provenance()})
    return out


def load_trained_phi(run_dir, theta_tokenizer=None, cache_dir=None):
    """φ from a meta-training run folder (or its ``checkpoint``), rebuilt from the saved config.

    The run's :class:`~trainattn.config.PhiConfig` says which backbone, depth
    and LoRA rank to build; the trained LoRA + head tensors are then loaded.
    With ``theta_tokenizer``, φ's tokenizer must equal θ's.
    """
    from trainattn.lm import build_phi

    config = trained_phi_config(run_dir)
    p = config.phi
    phi, _ = build_phi(p.model, p.num_layers, theta_tokenizer, p.lora_rank, p.lora_alpha,
                       seed=config.seed, cache_dir=cache_dir)
    load_phi_tensors(phi, phi_file(run_dir))
    phi.eval()
    for param in phi.parameters():
        param.requires_grad_(False)
    return phi
