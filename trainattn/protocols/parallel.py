"""Data-parallel helpers for the CKL loop (:mod:`trainattn.protocols.lama_ckl`) under ``accelerate launch``.

Design: θ is **not** wrapped in DDP. Every process holds a full replica of θ
(and of the method's state: RHO-1's reference tensors, RecAdam's anchors, a
K-Adapter wrapper, Mix-review's pool), trains on its shard of each global
batch, and the gradients of θ's trainable tensors are averaged by one manual
``torch.distributed.all_reduce`` per step before the (replicated) optimizer
step. Reasons: DDP would rename the parameters (``module.``), which breaks
checkpoints and RHO-1's ``functional_call`` reference forward; DDP's reducer
also expects exactly one tracked forward per backward, while RHO-1 and TAALM
run extra untracked forwards; and RecAdam's "grad is None ⇒ untouched"
rule needs to know which tensors received a gradient on *any* process.

Sharding (:func:`shard_batch`): the global batch is what a single process
would train on (``config.batch_size`` TO-LEARN rows + the Mix-review rows drawn
for that step), encoded once (same padding); process ``r`` of ``N`` takes rows
``r, r + N, …`` of the TO-LEARN part and of the review part. The union of the
shards is the global batch, without duplicates.

Loss normalisation (:meth:`GradientSync.backward`): the TWL of a batch is the
mean over its B sequences of per-sequence-normalised losses, so the global
loss is ``(1/B) Σ_i ℓ_i``. Process ``p`` computes the mean over its ``b_p`` rows,
``L_p = (1/b_p) Σ_{i∈p} ℓ_i`` (+ the method's extra loss E, the same on every
process). It backpropagates ``s_p · (L_p + E)`` with ``s_p = N · b_p / B``, and
the gradients are averaged over the N processes:
``(1/N) Σ_p s_p ∇L_p = (1/B) Σ_i ∇ℓ_i`` (the single-process TWL gradient) and
``(1/N) Σ_p s_p ∇E = ∇E`` because ``Σ_p s_p = N``. A process with an empty
shard has ``s_p = 0`` and contributes zeros.
"""

from __future__ import annotations

import torch

from trainattn.core.spans import EncodedBatch
from trainattn.methods import TrainBatch


def rank_world(accelerator) -> tuple[int, int]:
    """``(process index, number of processes)`` of an ``accelerate.Accelerator``; ``(0, 1)`` for ``None``."""
    if accelerator is None:
        return 0, 1
    return accelerator.process_index, accelerator.num_processes


def barrier(accelerator) -> None:
    """Wait for every process (a no-op with one process or no accelerator)."""
    if accelerator is not None and accelerator.num_processes > 1:
        accelerator.wait_for_everyone()


def shard_indices(n: int, rank: int, world: int) -> list[int]:
    """Indices ``rank, rank + world, …`` of ``range(n)``: process ``rank``'s share of ``n`` rows."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in 0..{world - 1}")
    return list(range(rank, n, world))


def shard_rows(batch: TrainBatch, rank: int, world: int) -> list[int]:
    """Row indices of ``batch`` that process ``rank`` trains on: its TO-LEARN rows, then its review rows."""
    n, total = batch.n_to_learn, len(batch.rows)
    return shard_indices(n, rank, world) + [n + i for i in shard_indices(total - n, rank, world)]


def shard_batch(batch: TrainBatch, rank: int, world: int) -> TrainBatch:
    """Process ``rank``'s part of a global ``batch`` (``[b_p, seq_len]`` tensors, same ``seq_len``)."""
    if world == 1:
        return batch
    idx = shard_rows(batch, rank, world)
    index = torch.tensor(idx, dtype=torch.long)
    e = batch.encoded
    encoded = EncodedBatch(*(t.index_select(0, index.to(t.device)) for t in (
        e.input_ids, e.attention_mask, e.position_ids, e.object_mask, e.located)))
    n_learn = len(shard_indices(batch.n_to_learn, rank, world))
    return TrainBatch(encoded, [batch.rows[i] for i in idx], n_learn)


class GradientSync:
    """Averages the gradients of ``params`` over the processes of ``torch.distributed``.

    Args:
        params: θ's trainable tensors (identical order on every process).
        world: the number of processes.

    Use :meth:`for_step` to get the ``backward`` callable that
    :func:`~trainattn.protocols.lama_ckl.train_step` expects.
    """

    def __init__(self, params, world: int):
        self.params = list(params)
        self.world = world

    def for_step(self, share: float):
        """``backward(loss) -> global loss`` for a process holding ``share = N·b_p/B`` of the batch."""
        return lambda loss: self.backward(loss, share)

    @torch.no_grad()
    def _all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)  # gloo has no AVG
        return tensor.div_(self.world)

    def backward(self, loss: torch.Tensor, share: float) -> float:
        """Backpropagate ``share · loss``, then replace every gradient by its mean over processes.

        Returns the global batch loss ``(1/N) Σ_p s_p·loss_p`` (NaN/inf anywhere
        propagates, so every process sees a non-finite loss together). A
        tensor whose gradient is ``None`` on every process keeps ``None``; if
        any process has one, the others count zeros.
        """
        scaled = loss * share
        if scaled.requires_grad:
            scaled.backward()
        params = self.params
        ref = params[0]
        meta = torch.tensor([float(scaled.detach())] + [float(p.grad is not None) for p in params],
                            dtype=torch.float64, device=ref.device)
        self._all_reduce_mean(meta)
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(params):
            if meta[1 + i] > 0:
                groups.setdefault((p.dtype, p.device), []).append(i)
        for (dtype, device), idx in groups.items():
            grads = [params[i].grad if params[i].grad is not None else torch.zeros_like(params[i])
                     for i in idx]
            flat = torch.cat([g.reshape(-1).to(dtype) for g in grads]).to(device)
            self._all_reduce_mean(flat)
            offset = 0
            for i in idx:
                p = params[i]
                p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
                offset += p.numel()
        return float(meta[0])
