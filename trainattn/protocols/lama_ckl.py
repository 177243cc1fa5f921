"""The continual-knowledge-learning (CKL) loop on LAMA-CKL.

θ trains on the TO-LEARN evidence documents for ``config.epochs`` epochs with
one method (:mod:`trainattn.methods`); before training (epoch 0) and after
every epoch the TO-LEARN and NOT-TO-FORGET probes are scored. A seeded
``val_fraction`` slice of TO-LEARN is trained like the rest, but its curve is
reported separately, so an epoch can be chosen without the test curve. Every
epoch ends with an atomic checkpoint; a rerun with the same config continues
from it and reproduces the uninterrupted run exactly.

:func:`train_step` is the only place that runs forward, backward and the
optimizer step, so a data-parallel wrapper can swap in its ``backward`` and
its batches without touching the rest.

Data parallel (``accelerate launch``): pass ``accelerator=Accelerator()``.
Every process keeps a full replica of θ and of the method's state (no DDP
wrapper: parameter names, RHO-1's reference forward, RecAdam's anchors and
K-Adapter stay untouched); each global batch (exactly the single-process
batch, Mix-review rows included) is split row-wise across processes and the
gradients are averaged by a manual all-reduce with per-process loss scaling,
so each update equals the single-process one up to float rounding (see
:mod:`trainattn.protocols.parallel`). Every process evaluates every probe (cheap, and
keeps the replicas' curves identical); only the main process writes
checkpoints and results, the others wait at a barrier. Dropout masks are
drawn per process, so with dropout > 0 runs agree in distribution only.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from trainattn.config import CKLConfig, to_dict
from trainattn.core.evaluate import lm_logits, score_probes
from trainattn.core.lora import add_lora, trainable_tensors
from trainattn.core.losses import check_finite, per_token_nll, token_weighted_loss
from trainattn.core.spans import encode_with_objects
from trainattn.data.lama_ckl import probe_text
from trainattn.methods import (
    CompositeMethod,
    Finetune,
    Method,
    RunContext,
    TrainBatch,
    canonical_method_name,
    make_method,
    method_pools,
)
from trainattn.protocols.parallel import GradientSync, barrier, rank_world, shard_batch
from trainattn.protocols.store import (
    Run,
    data_fingerprint,
    method_phi,
    phi_fingerprint,
    provenance,
    run_identity,
    versions,
)

SETS = ("to_learn", "not_to_forget", "val", "to_learn_rest")


# ---------------------------------------------------------------- metrics


def ckl_metrics(to_learn_curve, not_to_forget_curve) -> dict:
    """The paper's LAMA-CKL metrics from per-epoch accuracies (index 0 = before training).

    Top Acc = max TO-LEARN accuracy; Epoch = the FIRST epoch reaching it;
    NF Acc = NOT-TO-FORGET accuracy at that epoch; Total Knowledge = the sum.
    Missing values (``None``/NaN) are ignored when taking the max.
    """
    learn = _as_array(to_learn_curve)
    if np.isnan(learn).all():
        return {"top_acc": None, "epoch": None, "nf_acc": None, "total_knowledge": None}
    epoch = int(np.nanargmax(learn))  # first occurrence of the max
    top, nf = float(learn[epoch]), _at(not_to_forget_curve, epoch)
    return {"top_acc": top, "epoch": epoch, "nf_acc": nf,
            "total_knowledge": None if nf is None else top + nf}


def val_chosen_metrics(curves: dict) -> dict | None:
    """Metrics at the validation-chosen epoch: the first epoch with the best :func:`validation_key`.

    The same rule as early stopping and the learning-rate choice (accuracy, then object NLL),
    so the epoch reported is the one those decisions were made on.
    """
    epoch = best_validation_epoch(curves)
    if epoch is None:
        return None
    val = curves["val"]["acc"][epoch]
    learn, nf = _at(curves["to_learn"]["acc"], epoch), _at(curves["not_to_forget"]["acc"], epoch)
    rest = _at(curves["to_learn_rest"]["acc"], epoch)
    return {"epoch": epoch, "val_acc": float(val), "to_learn_acc": learn,
            "to_learn_rest_acc": rest, "nf_acc": nf,
            "total_knowledge": None if learn is None or nf is None else learn + nf}


def run_metrics(curves: dict) -> dict:
    """Both readings of a run from its curves: ``{"test_chosen": …, "val_chosen": …}``.

    Read-back runs get their metrics recomputed with this, so a record written by an older
    rule reads the same as a fresh one (the curves are the record; the metrics follow).
    """
    return {"test_chosen": ckl_metrics(curves["to_learn"]["acc"], curves["not_to_forget"]["acc"]),
            "val_chosen": val_chosen_metrics(curves)}


def best_validation_epoch(curves: dict) -> int | None:
    """The first epoch with the highest :func:`validation_key`; ``None`` without a validation accuracy."""
    acc = curves["val"]["acc"]
    if not any(a is not None and not math.isnan(a) for a in acc):
        return None
    keys = [validation_key(curves, e) for e in range(len(acc))]
    return max(range(len(acc)), key=lambda e: (keys[e], -e))


def validation_key(curves: dict, epoch: int) -> tuple[float, float]:
    """How good epoch ``epoch`` is on the validation slice: (accuracy, −object NLL), higher is better.

    The NLL breaks ties: with ~20 validation facts accuracy moves in steps of 0.05 and often
    stays flat (0 for a slow learner) while the NLL still improves.
    """
    acc, nll = curves["val"]["acc"][epoch], curves["val"]["nll"][epoch]
    return (-math.inf if acc is None else acc, -math.inf if nll is None else -nll)


def epochs_without_improvement(curves: dict) -> int:
    """Epochs since the best validation score (:func:`validation_key`); 0 if the last epoch is the best."""
    best = best_validation_epoch(curves)
    return 0 if best is None else len(curves["val"]["acc"]) - 1 - best


def should_stop(curves: dict, patience: int | None) -> bool:
    """Early stopping: ``patience`` epochs have passed without a better validation score."""
    return patience is not None and epochs_without_improvement(curves) >= patience


def _as_array(curve) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in curve], dtype=float)


def _at(curve, epoch: int) -> float | None:
    value = curve[epoch] if epoch < len(curve) else None
    return None if value is None or math.isnan(value) else float(value)


# ---------------------------------------------------------------- data order


def epoch_seed(seed: int, epoch: int) -> int:
    """The per-epoch seed (shuffling, dropout): a function of (seed, epoch) only, so resume agrees."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The TO-LEARN document order of training epoch ``epoch`` (1-based)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch))).tolist()


def validation_indices(n: int, fraction: float, seed: int) -> list[int]:
    """Sorted indices of the validation slice: ``round(fraction × n)`` rows (≥ 1 if fraction > 0)."""
    if fraction <= 0 or n == 0:
        return []
    k = min(n, max(1, round(fraction * n)))
    rng = np.random.default_rng([seed, 0x7A1])  # a tag distinct from the per-epoch seeds
    return sorted(rng.choice(n, size=k, replace=False).tolist())


def make_train_batch(tokenizer, rows: list[dict], n_to_learn: int, max_length: int) -> TrainBatch:
    """Encode evidence documents with their objects marked: ``[batch, seq_len]`` tensors."""
    encoded = encode_with_objects(
        tokenizer, [r["evidence"] for r in rows], [r["object"] for r in rows], max_length
    )
    return TrainBatch(encoded, rows, n_to_learn)


# ---------------------------------------------------------------- training


def train_step(theta, method: CompositeMethod, optimizer, batch: TrainBatch, step: int,
               backward=None) -> float:
    """One update of θ on ``batch``: TWL with the method's weights (+ its extra loss).

    ``batch`` tensors are ``[batch, seq_len]``; an empty batch (a data-parallel
    process without rows this step) contributes only the extra loss.
    ``backward(loss)`` defaults to ``loss.backward()``; a data-parallel one
    (:meth:`~trainattn.protocols.parallel.GradientSync.backward`) returns the global
    batch loss, which is then checked and returned. Raises
    :class:`~trainattn.errors.NonFiniteLossError` before the update if the
    loss is NaN/inf (on every process together in data-parallel mode).
    """
    theta.train()
    optimizer.zero_grad(set_to_none=True)
    device = next(theta.parameters()).device
    where = f"CKL training step {step} ({method.name})"
    if batch.rows:
        batch = TrainBatch(batch.encoded.to(device), batch.rows, batch.n_to_learn)
        logits = lm_logits(theta, batch.encoded)
        nll = per_token_nll(logits, batch.encoded.input_ids)
        weights = method.batch_token_weights(batch, logits, theta)
        loss = token_weighted_loss(nll, weights, batch.encoded.attention_mask)
    else:
        loss = torch.zeros((), device=device)
    extra = method.extra_loss(theta, step)
    if extra is not None:
        loss = loss + extra
    if backward is None:
        check_finite(loss, where)
        loss.backward()
        value = float(loss.detach())
    else:
        value = backward(loss)
        value = float(loss.detach()) if value is None else float(value)
        check_finite(torch.tensor(value), where)
    optimizer.step()
    return value


def train_epoch(theta, tokenizer, method, optimizer, config: CKLConfig, rows: list[dict],
                epoch: int, progress: bool = True, accelerator=None) -> float:
    """Train one epoch (1-based ``epoch``); returns the mean training loss of the global batches.

    With an ``accelerator`` of N > 1 processes, each process trains on its
    shard of every global batch (:func:`~trainattn.protocols.parallel.shard_batch`) and
    gradients are averaged (:class:`~trainattn.protocols.parallel.GradientSync`).
    """
    rank, world = rank_world(accelerator)
    seed = epoch_seed(config.seed, epoch)
    if world > 1:  # distinct dropout masks per process
        seed = int(np.random.SeedSequence([config.seed, epoch, rank]).generate_state(1)[0])
    torch.manual_seed(seed)  # dropout masks, reproducible on resume
    sync = GradientSync(trainable_tensors(theta).values(), world) if world > 1 else None
    order = epoch_order(len(rows), config.seed, epoch)
    per_epoch = math.ceil(len(rows) / config.batch_size)
    losses = []
    starts = range(0, len(order), config.batch_size)
    show = progress and rank == 0
    for i, start in enumerate(tqdm(starts, desc=f"epoch {epoch}", disable=not show, leave=False)):
        step = (epoch - 1) * per_epoch + i + 1
        learn = [rows[j] for j in order[start : start + config.batch_size]]
        review = method.review_rows(epoch, step, len(learn))
        batch = make_train_batch(tokenizer, learn + review, len(learn), config.theta.max_length)
        if sync is None:
            losses.append(train_step(theta, method, optimizer, batch, step))
            continue
        local = shard_batch(batch, rank, world)
        share = world * len(local.rows) / len(batch.rows)  # see trainattn.protocols.parallel
        losses.append(train_step(theta, method, optimizer, local, step, sync.for_step(share)))
    return float(np.mean(losses))


def evaluate_theta(theta, tokenizer, config: CKLConfig, to_learn_rows, not_to_forget_rows,
                   val_idx: list[int], progress: bool = True) -> dict:
    """Probe accuracy and object NLL of every set: ``{set: {"acc", "nll"}}`` (``None`` if empty)."""

    def scores(rows, desc):
        probes = [probe_text(r, config.probe_form) for r in rows]
        return score_probes(theta, tokenizer, probes, [r["object"] for r in rows],
                            config.eval_batch_size, progress=desc if progress else False)

    learn, nf = scores(to_learn_rows, "TO-LEARN probes"), scores(not_to_forget_rows, "NOT-TO-FORGET probes")
    rest = sorted(set(range(len(to_learn_rows))) - set(val_idx))
    out = {"to_learn": _mean(learn, None), "not_to_forget": _mean(nf, None)}
    out["val"], out["to_learn_rest"] = _mean(learn, val_idx), _mean(learn, rest)
    out["per_fact"] = {"to_learn": _per_fact(learn.accuracy), "not_to_forget": _per_fact(nf.accuracy)}
    return out


def _per_fact(accuracy: np.ndarray) -> list:
    """Each probe's accuracy, JSON-ready (``None`` where the object was not located)."""
    return [None if math.isnan(a) else round(float(a), 6) for a in accuracy]


def _mean(scores, idx) -> dict:
    acc, nll = (scores.accuracy, scores.nll) if idx is None else (scores.accuracy[idx], scores.nll[idx])
    ok = ~np.isnan(acc)
    if not ok.any():
        return {"acc": None, "nll": None}
    return {"acc": float(acc[ok].mean()), "nll": float(np.nanmean(nll[ok]))}


# ---------------------------------------------------------------- the run


def run_lama_ckl(config: CKLConfig, model, tokenizer, to_learn_rows, not_to_forget_rows,
                 method: Method | str | None = None, out_dir=None, review_rows=None,
                 progress: bool = True, accelerator=None, reference_rows=None) -> dict:
    """Run one LAMA-CKL experiment and return its results (also written to ``out_dir/result.json``).

    ``model`` is modified in place (LoRA is injected, or it becomes a frozen
    K-Adapter base): pass a fresh model per run. ``method`` defaults to
    ``make_method(config.method)``; a given method must have the same name.
    With ``out_dir``, a finished run of the same identity (config, method, φ, data) is read
    back and a checkpoint of it is resumed; another run's files there are an error.

    ``accelerator`` (an ``accelerate.Accelerator``, optional): θ is moved to
    its device; with several processes training is data parallel (module
    docstring), every process returns the same result, and only the main
    process writes ``out_dir``. A checkpoint written by a run with another
    number of processes resumes too (the state is replicated, not sharded).

    ``review_rows`` is Mix-review's replay pool, ``reference_rows`` the in-domain documents
    RHO-1's reference model trains on (the meta-training pool). With ``config.patience``
    the run stops early once the validation slice has not improved for that many epochs
    (:func:`should_stop`); ``result["stopped_early"]`` says whether it did.
    """
    method = resolve_method(config, method)
    main = accelerator is None or accelerator.is_main_process
    progress = progress and main
    if accelerator is not None:
        model = model.to(accelerator.device)
    to_learn_rows, not_to_forget_rows = list(to_learn_rows), list(not_to_forget_rows)
    val_idx = validation_indices(len(to_learn_rows), config.val_fraction, config.seed)
    per_epoch = math.ceil(len(to_learn_rows) / config.batch_size)
    context = RunContext(to_learn_rows, not_to_forget_rows, review_rows,
                         config.epochs * per_epoch, config.seed, reference_rows=reference_rows)
    theta = build_theta(config, model, method)
    method.prepare(theta, tokenizer, config, context)
    optimizer = method.make_optimizer(theta, config, context) or torch.optim.AdamW(
        trainable_tensors(theta).values(), lr=config.lr, weight_decay=config.weight_decay)

    run = ckl_run(config, method, to_learn_rows, not_to_forget_rows, out_dir, review_rows, reference_rows)
    finished = run.read_result()
    if finished is not None:  # the same run, already finished (here or on another machine): read back
        return finished
    state = restore_training_state(run, theta, optimizer, method)
    barrier(accelerator)  # everyone has read the checkpoint before the main process writes one
    if state is None:
        start = time.perf_counter()
        scores = evaluate_theta(theta, tokenizer, config, to_learn_rows, not_to_forget_rows, val_idx, progress)
        state = {"epoch": 0, "curves": _empty_curves(), "timings": []}
        _append(state, scores, None, {"epoch": 0, "train_s": 0.0, "eval_s": time.perf_counter() - start})
        if main:
            save_training_state(run, state, theta, optimizer, method)
        barrier(accelerator)
    epochs = range(state["epoch"] + 1, config.epochs + 1)
    for epoch in tqdm(epochs, desc=f"CKL {method.name}", disable=not progress):
        if should_stop(state["curves"], config.patience):
            break
        t0 = time.perf_counter()
        loss = train_epoch(theta, tokenizer, method, optimizer, config, to_learn_rows, epoch, progress,
                           accelerator=accelerator)
        t1 = time.perf_counter()
        scores = evaluate_theta(theta, tokenizer, config, to_learn_rows, not_to_forget_rows, val_idx, progress)
        state["epoch"] = epoch
        state["versions"] = versions()  # who trained the latest epoch: a resumed, finished run keeps it
        _append(state, scores, loss, {"epoch": epoch, "train_s": t1 - t0, "eval_s": time.perf_counter() - t1})
        if main:
            save_training_state(run, state, theta, optimizer, method)
        barrier(accelerator)

    result = _result(config, method, state, context, val_idx)
    if main:
        run.write_result(result)
    barrier(accelerator)
    return result


def build_theta(config: CKLConfig, model, method: CompositeMethod):
    """θ for a run: the method's own model (K-Adapter), else ``model`` with LoRA adapters.

    Adapters are initialised under ``config.seed``, so a resumed run rebuilds them identically.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        theta = method.build_model(model)
    if theta is None:
        t = config.theta
        theta = add_lora(model, t.lora_rank, t.lora_alpha, t.lora_dropout, seed=config.seed)
    return theta


def resolve_method(config: CKLConfig, method) -> CompositeMethod:
    if method is None or isinstance(method, str):
        method = make_method(config.method if method is None else method)
    elif not isinstance(method, CompositeMethod):
        method = CompositeMethod(method) if method.weighting else CompositeMethod(Finetune(), [method])
    if method.name != canonical_method_name(config.method):
        raise ValueError(
            f"method {method.name!r} does not match config.method {config.method!r}; "
            "set config.method so the results and checkpoints record the method used"
        )
    method.configure(config)
    return method


def _empty_curves() -> dict:
    curves = {name: {"acc": [], "nll": []} for name in SETS}
    curves["train_loss"] = []
    curves["per_fact"] = {"to_learn": [], "not_to_forget": []}
    return curves


def _append(state: dict, scores: dict, loss, timing: dict) -> None:
    for name in SETS:
        state["curves"][name]["acc"].append(scores[name]["acc"])
        state["curves"][name]["nll"].append(scores[name]["nll"])
    state["curves"]["train_loss"].append(loss)
    per_fact = state["curves"].setdefault("per_fact", {"to_learn": [], "not_to_forget": []})  # older checkpoints
    for name in ("to_learn", "not_to_forget"):
        per_fact[name].append(scores["per_fact"][name])
    state["timings"].append(timing)


def _result(config, method, state, context, val_idx) -> dict:
    curves = state["curves"]
    return {
        "method": method.name,
        "labels": dict(method.labels),
        "config": to_dict(config),
        "seed": config.seed,
        "versions": state.get("versions") or versions(),
        "sizes": {"to_learn": len(context.to_learn_rows), "not_to_forget": len(context.not_to_forget_rows),
                  "val": len(val_idx), "updates": context.total_updates},
        "val_indices": val_idx,
        "epochs_trained": state["epoch"],
        "stopped_early": state["epoch"] < config.epochs,
        "curves": curves,
        "metrics": run_metrics(curves),
        "timings": state["timings"],
        "provenance": provenance(),  # when it finished, at which commit (versions: on which hardware)
    }


# ---------------------------------------------------------------- checkpoints


def ckl_identity(config: CKLConfig, phi_sha256: str | None, data_sha256: str, pools: dict | None = None) -> dict:
    """One LAMA-CKL run's identity: its config (method included), φ's fingerprint, the data's.

    ``data_sha256`` is ``data_fingerprint(to_learn_rows, not_to_forget_rows)``; ``pools`` the
    fingerprints of the row pools the method reads (:func:`pool_fingerprints`), absent for
    methods that read none. The grid builds the same identity before loading anything, so it
    reads a finished run back.
    """
    return run_identity(config, method=canonical_method_name(config.method), phi_sha256=phi_sha256,
                        data=data_sha256, pools=pools or None)


def pool_fingerprints(method: str, review_rows=None, reference_rows=None) -> dict | None:
    """``{pool: data_fingerprint(rows)}`` for the pools ``method`` reads (Mix-review's replay rows,
    RHO-1-paper's reference documents); ``None`` when it reads none."""
    rows = {"review_rows": review_rows, "reference_rows": reference_rows}
    return {pool: data_fingerprint(rows[pool] or []) for pool in method_pools(method)} or None


def ckl_run(config: CKLConfig, method: CompositeMethod, to_learn_rows, not_to_forget_rows, out_dir,
            review_rows=None, reference_rows=None) -> Run:
    """The run store's view of one LAMA-CKL run: config, method, φ, the data's uuids and the pools'."""
    identity = ckl_identity(config, phi_fingerprint(method_phi(method)),
                            data_fingerprint(to_learn_rows, not_to_forget_rows),
                            pool_fingerprints(config.method, review_rows, reference_rows))
    return Run(out_dir, identity)


def save_training_state(run: Run, state: dict, theta, optimizer, method) -> None:
    """Checkpoint θ's trainable tensors, the optimizer, the method's state and ``state`` (epoch, curves)."""
    run.save_checkpoint(f"epoch-{state['epoch']:04d}", {**state, "method_state": method.state_dict()},
                        tensors={"theta": trainable_tensors(theta)},
                        objects={"optimizer": optimizer.state_dict()})


def restore_training_state(run: Run, theta, optimizer, method) -> dict | None:
    """Restore θ's trainable tensors, the optimizer and the method; ``state``, or ``None`` if no checkpoint."""
    checkpoint = run.load_checkpoint()
    if checkpoint is None:
        return None
    tensors = checkpoint.tensors("theta")
    params = trainable_tensors(theta)
    if set(tensors) != set(params):
        raise ValueError(f"{checkpoint.folder}: trainable tensors do not match the model being trained")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(tensors[n])
    optimizer.load_state_dict(checkpoint.object("optimizer"))
    method.load_state_dict(checkpoint.state["method_state"])
    return {k: checkpoint.state[k] for k in ("epoch", "curves", "timings", "versions") if k in checkpoint.state}
