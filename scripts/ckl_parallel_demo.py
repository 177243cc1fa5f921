"""A tiny LAMA-CKL run, data parallel under a distributed launcher or in one plain process.

    torchrun --nproc_per_node 2 scripts/ckl_parallel_demo.py --out DIR        # 2 CPU processes (gloo)
    accelerate launch --num_processes 2 scripts/ckl_parallel_demo.py --out DIR  # 2 GPUs
    python scripts/ckl_parallel_demo.py --out DIR                              # 1 process

(``accelerate launch --cpu --num_processes 2`` starts several CPU processes
only through ``mpirun``; without it accelerate silently runs one process, so
on CPU use ``torchrun``: ``Accelerator()`` reads its environment and uses gloo.)

Builds the tiny tokenizer, a tiny float64 Llama (fixed seed) and a handful of
handcrafted LAMA-CKL-like rows (evidence containing the object; descriptive
probes), runs :func:`trainattn.protocols.lama_ckl.run_lama_ckl` with an ``Accelerator()`` and
prints the path of ``DIR/result.json``. With ``--save-tensors`` every process
also writes its final trainable tensors to ``DIR/theta-rank{r}.safetensors``
(the replicas must agree). ``--crash-in-epoch K`` stops every process at the
start of training epoch K (exit code 3) to exercise resuming.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

TO_LEARN = [  # (evidence, object, descriptive probe)
    ("Libya maintains diplomatic relations with Brazil and trades with it .", "Brazil",
     "Libya maintains diplomatic relations with Brazil ."),
    ("Ada Lovelace worked as a mathematician and writer in London .", "mathematician",
     "Ada Lovelace is a mathematician ."),
    ("The company was founded in 1998 ; its headquarters are in Oslo .", "Oslo",
     "The company has its headquarters in Oslo ."),
    ("She plays the piano and the violin ; her genre is jazz .", "jazz", "Her genre is jazz ."),
    ("The river flows north and ends in the Baltic sea near Riga .", "Riga", "The river ends near Riga ."),
    ("Marie was born in Warsaw and later moved to Paris .", "Warsaw", "Marie was born in Warsaw ."),
    ("The team plays its home games in Denver , Colorado .", "Denver", "The team plays in Denver ."),
]
NOT_TO_FORGET = [
    ("The official language of Wales is Welsh .", "Welsh", "The official language of Wales is Welsh ."),
    ("Lochinvar is a castle in Scotland .", "Scotland", "Lochinvar is in Scotland ."),
    ("Paris is the capital of France .", "France", "Paris is the capital of France ."),
]


def rows(items, prefix: str, invariant: bool) -> list[dict]:
    """LAMA-CKL-shaped rows (the fields :mod:`trainattn.protocols.lama_ckl` and the probes read)."""
    return [{
        "uuid": f"{prefix}{i}", "subject": "s", "object": obj, "relation_code": "P1",
        "relation_label": "r", "task_descriptive": probe,
        "task_schematic": f"subject is s , object is {obj}", "evidence": evidence,
        "invariant": invariant,
    } for i, (evidence, obj, probe) in enumerate(items)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder (result.json, checkpoint/)")
    parser.add_argument("--method", default="rho1+mixreview+recadam")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-tensors", action="store_true")
    parser.add_argument("--crash-in-epoch", type=int, default=None)
    args = parser.parse_args(argv)

    torch.set_default_dtype(torch.float64)  # tight 1-vs-N process agreement
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from accelerate import Accelerator
    from safetensors.torch import save_file

    import trainattn.protocols.lama_ckl as ckl
    from trainattn.config import CKLConfig, ThetaConfig
    from trainattn.core.lora import trainable_tensors
    from trainattn.testing import tiny_llama, tiny_tokenizer

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    if args.crash_in_epoch is not None:
        original = ckl.train_epoch

        def crashing(*a, **kw):
            if a[6] == args.crash_in_epoch:
                raise SystemExit(3)
            return original(*a, **kw)

        ckl.train_epoch = crashing

    tokenizer = tiny_tokenizer()
    model = tiny_llama(len(tokenizer), seed=args.seed, dtype=torch.float64)
    theta = ThetaConfig(model="tiny", lora_rank=8, lora_alpha=16, lora_dropout=0.0, max_length=32)
    config = CKLConfig(theta=theta, method=args.method, epochs=args.epochs, batch_size=args.batch_size,
                       lr=args.lr, eval_batch_size=4, val_fraction=0.3,
                       method_settings={"mixreview": {"pool": "paper", "ratio": 1.0, "decay": 0.7},
                                "rho1": {"keep": 0.6}, "recadam": {"coef": 1.0}},
                       seed=args.seed)
    out = Path(args.out)
    ckl.run_lama_ckl(config, model, tokenizer, rows(TO_LEARN, "l", False),
                     rows(NOT_TO_FORGET, "n", True), out_dir=out, progress=False,
                     accelerator=accelerator)
    if args.save_tensors:
        tensors = {n: p.detach().cpu().contiguous() for n, p in trainable_tensors(model).items()}
        save_file(tensors, out / f"theta-rank{accelerator.process_index}.safetensors")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        print(f"trained on {accelerator.device} x {accelerator.num_processes} processes", file=sys.stderr)
        print(out / "result.json")
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
