"""Time and peak memory of one meta-step against one plain token-weighted step.

Same θ (LoRA), same φ, same LAMA-CKL example, same length cap:

* plain step: φ's weights (no grad) → θ's token-weighted loss → backward →
  torch AdamW step on θ's LoRA;
* meta-step: φ's weights (tracked) → 1 untracked + 1 tracked functional AdamW
  step of θ → probe loss → backward into φ → AdamW step on φ.

Each kind runs in its own subprocess so that peak memory is measured cleanly
(CPU: peak resident set size; CUDA: ``torch.cuda.max_memory_allocated``),
both in total and above the baseline after the models are loaded.

    python benchmarks/bench_meta.py [--model smollm2-135m] [--repeats 5]

The last line is exactly ``time_ratio=<x> memory_ratio=<y>`` (memory: total peaks).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak(device) -> int:
    """Reset the peak counter to the current usage; returns the current usage in bytes."""
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    try:  # Linux: writing 5 to clear_refs resets VmHWM (peak RSS) to the current RSS
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    rss = _status_kib("VmRSS")
    return rss * 1024 if rss is not None else peak_bytes(device)


def peak_bytes(device) -> int:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    hwm = _status_kib("VmHWM")
    return hwm * 1024 if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(kind: str, model: str, repeats: int, max_length: int, phi_layers: int) -> dict:
    import torch

    from trainattn.config import MetaConfig, PhiConfig, ThetaConfig
    from trainattn.core.lora import add_lora, trainable_tensors
    from trainattn.core.losses import per_token_nll, token_weighted_loss
    from trainattn.core.meta import MetaLearner, examples_from_rows
    from trainattn.data import load_lama_ckl
    from trainattn.lm import build_phi, load_lm

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    theta, tokenizer = load_lm(model, device=device)
    theta = add_lora(theta, 16, 32)
    phi, _ = build_phi(model, phi_layers, tokenizer)
    phi.to(device)
    config = MetaConfig(theta=ThetaConfig(model=model, max_length=max_length), phi=PhiConfig(model=model))
    learner = MetaLearner(config, theta, phi, tokenizer)
    example = examples_from_rows([load_lama_ckl("variant")[0]], "schematic")[0]
    doc, _ = learner.encode(example)
    lora = {n: p for n, p in theta.named_parameters() if n in learner.theta0}
    optimizer = torch.optim.AdamW(lora.values(), lr=1e-4)

    def plain_step():
        for p in lora.values():
            p.requires_grad_(True)
        with torch.no_grad():
            weights = phi(doc.input_ids, doc.attention_mask, doc.position_ids)
        logits = theta(input_ids=doc.input_ids, attention_mask=doc.attention_mask,
                       position_ids=doc.position_ids).logits
        loss = token_weighted_loss(per_token_nll(logits, doc.input_ids), weights, doc.attention_mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def meta_step():
        learner.meta_step([example])

    step = plain_step if kind == "plain" else meta_step
    baseline = reset_peak(device)
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {
        "kind": kind,
        "seconds": statistics.median(times[1:]),
        "peak_bytes": peak_bytes(device),
        "baseline_bytes": baseline,
        "tokens": int(doc.attention_mask.sum()),
        "device": str(device),
        "trainable_phi": sum(p.numel() for p in trainable_tensors(phi).values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--phi-layers", type=int, default=6)
    parser.add_argument("--child", choices=["plain", "meta"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.model, args.repeats, args.max_length, args.phi_layers)))
        return
    results = {}
    for kind in ("plain", "meta"):
        cmd = [sys.executable, __file__, "--child", kind, "--model", args.model, "--repeats",
               str(args.repeats), "--max-length", str(args.max_length), "--phi-layers", str(args.phi_layers)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[kind] = json.loads(out.strip().splitlines()[-1])
    plain, meta = results["plain"], results["meta"]
    gib = 2**30
    print(f"model {args.model}, φ = first {args.phi_layers} layers, document of {plain['tokens']} tokens, "
          f"device {plain['device']}, median of {args.repeats}")
    for r in (plain, meta):
        print(f"  {r['kind']:<5} step: {r['seconds']:.3f} s, peak {r['peak_bytes'] / gib:.2f} GiB "
              f"({(r['peak_bytes'] - r['baseline_bytes']) / gib:.2f} GiB above the loaded models)")
    extra = (meta["peak_bytes"] - meta["baseline_bytes"]) / max(plain["peak_bytes"] - plain["baseline_bytes"], 1)
    print(f"  memory above the loaded models: meta / plain = {extra:.2f}")
    time_ratio = meta["seconds"] / plain["seconds"]
    memory_ratio = meta["peak_bytes"] / plain["peak_bytes"]
    print(f"time_ratio={time_ratio:.2f} memory_ratio={memory_ratio:.2f}")


if __name__ == "__main__":
    main()
