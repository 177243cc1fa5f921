"""Data-parallel CKL: sharding helpers, and 1 vs 2 CPU processes (torchrun + gloo) agreeing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainattn.protocols.lama_ckl import make_train_batch
from trainattn.protocols.parallel import shard_batch, shard_indices, shard_rows

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scripts" / "ckl_parallel_demo.py"


@pytest.mark.parametrize("n,world", [(0, 2), (1, 2), (5, 2), (6, 3), (7, 4), (3, 1)])
def test_shards_partition_the_rows(n, world):
    shards = [shard_indices(n, r, world) for r in range(world)]
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(n)) and len(flat) == len(set(flat))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def _row(i, obj="Oslo"):
    return {"uuid": str(i), "object": obj, "evidence": f"Fact {i} : the city is {obj} ."}


@pytest.mark.parametrize("n_learn,n_review,world", [(3, 3, 2), (1, 1, 2), (2, 0, 3), (4, 2, 1)])
def test_shard_batch_splits_learn_and_review_rows(tokenizer, n_learn, n_review, world):
    rows = [_row(i) for i in range(n_learn + n_review)]
    batch = make_train_batch(tokenizer, rows, n_learn, 32)
    seen = []
    for rank in range(world):
        part = shard_batch(batch, rank, world)
        idx = shard_rows(batch, rank, world)
        assert [r["uuid"] for r in part.rows] == [rows[i]["uuid"] for i in idx]
        learn = [i for i in idx if i < n_learn]
        assert part.n_to_learn == len(learn) and idx[: len(learn)] == learn  # TO-LEARN rows first
        assert torch.equal(part.encoded.input_ids, batch.encoded.input_ids[idx])
        assert part.encoded.input_ids.shape[1] == batch.encoded.input_ids.shape[1]
        seen += idx
    assert sorted(seen) == list(range(n_learn + n_review)) and len(seen) == len(set(seen))


# ------------------------------------------------------------- 1 vs 2 processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demo(out: Path, processes: int, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "TOKENIZERS_PARALLELISM": "false"}
    if processes == 1:
        cmd = [sys.executable, str(DEMO)]
    else:
        port = str(_free_port())
        env["MASTER_PORT"] = port
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--nnodes", "1", "--master_addr", "127.0.0.1", "--master_port", port, str(DEMO)]
    proc = subprocess.run([*cmd, "--out", str(out), "--save-tensors", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc


def _assert_same_run(a: dict, b: dict) -> None:
    for name in ("to_learn", "not_to_forget", "val", "to_learn_rest"):
        assert a["curves"][name]["acc"] == b["curves"][name]["acc"], name
        assert b["curves"][name]["nll"] == pytest.approx(a["curves"][name]["nll"], rel=1e-4), name
    assert b["curves"]["train_loss"][1:] == pytest.approx(a["curves"]["train_loss"][1:], rel=1e-4)
    assert a["sizes"] == b["sizes"] and a["config"] == b["config"] and a["method"] == b["method"]


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path)


def test_two_processes_match_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    proc = _demo(one, 1)
    assert proc.stdout.strip().endswith(str(one / "result.json"))
    _demo(two, 2)
    a = json.loads((one / "result.json").read_text())
    b = json.loads((two / "result.json").read_text())
    _assert_same_run(a, b)
    nll = a["curves"]["to_learn"]["nll"]
    assert nll[-1] < nll[0] - 0.03  # θ learned something (accuracy stays 0 on the tiny random model)
    assert (two / "checkpoint" / "latest").read_text() == "epoch-0004"

    ta, tb = _tensors(one / "theta-rank0.safetensors"), _tensors(two / "theta-rank0.safetensors")
    tb1 = _tensors(two / "theta-rank1.safetensors")
    assert ta.keys() == tb.keys() == tb1.keys()
    assert all(torch.equal(tb[n], tb1[n]) for n in tb)  # the replicas never drift apart
    for n in ta:
        # measured ~3e-7 (float64; lr 0.3 amplifies rounding differences over 12 updates)
        torch.testing.assert_close(tb[n], ta[n], rtol=1e-4, atol=1e-4)

    # resume across modes: a 1-process run stops in epoch 3, 2 processes finish it
    resumed = tmp_path / "resumed"
    crashed = _demo(resumed, 1, "--crash-in-epoch", "3", check=False)
    assert crashed.returncode == 3 and (resumed / "checkpoint" / "latest").read_text() == "epoch-0002"
    saved = json.loads((resumed / "checkpoint" / "epoch-0002" / "state.json").read_text())
    _demo(resumed, 2)
    c = json.loads((resumed / "result.json").read_text())
    assert c["timings"][:3] == saved["timings"]  # epochs 0-2 came from the checkpoint
    _assert_same_run(a, c)
    tc = _tensors(resumed / "theta-rank0.safetensors")
    for n in ta:
        torch.testing.assert_close(tc[n], ta[n], rtol=1e-4, atol=1e-4)
