"""Cost of TAALM in the continual-learning loop, and evaluation throughput.

* step ratio: one ``taalm`` training step (φ = the first 6 layers, frozen,
  gives the token weights) over one ``finetune`` step, same θ, same batch of
  LAMA-CKL evidence documents, through :func:`trainattn.protocols.lama_ckl.train_step`;
* probes per second: :func:`trainattn.core.evaluate.score_probes` on descriptive
  LAMA-CKL probes.

    python benchmarks/bench_ckl.py [--model smollm2-135m] [--batch-size 8] [--repeats 5]

The last line is exactly ``step_ratio=<x> probes_per_s=<y>``.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    import torch

    from trainattn.config import CKLConfig, ThetaConfig
    from trainattn.core.evaluate import score_probes
    from trainattn.core.lora import add_lora, trainable_tensors
    from trainattn.data import load_lama_ckl, probe_text
    from trainattn.lm import build_phi, load_lm
    from trainattn.methods import RunContext, make_method
    from trainattn.protocols.lama_ckl import make_train_batch, train_step

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--phi-layers", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--probes", type=int, default=128)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    theta, tokenizer = load_lm(args.model, device=device)
    theta = add_lora(theta, 16, 32)
    phi, _ = build_phi(args.model, args.phi_layers, tokenizer)
    phi.to(device).eval()
    for p in phi.parameters():
        p.requires_grad_(False)
    rows = [dict(r) for r in load_lama_ckl("variant").select(range(max(args.batch_size, args.probes)))]
    config = CKLConfig(theta=ThetaConfig(model=args.model, max_length=args.max_length))
    batch = make_train_batch(tokenizer, rows[: args.batch_size], args.batch_size, args.max_length)
    optimizer = torch.optim.AdamW(trainable_tensors(theta).values(), lr=1e-5)
    context = RunContext(rows, [], None, 10, 0)

    seconds = {}
    for name in ("finetune", "taalm", "finetune", "taalm"):  # interleaved: the second round counts
        method = make_method(name, phi=phi)
        method.prepare(theta, tokenizer, config, context)
        times = []
        for step in range(args.repeats + 1):
            start = time.perf_counter()
            train_step(theta, method, optimizer, batch, step)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        seconds[name] = statistics.median(times[1:])

    probes = [probe_text(r, "descriptive") for r in rows[: args.probes]]
    objects = [r["object"] for r in rows[: args.probes]]
    score_probes(theta, tokenizer, probes[:8], objects[:8])  # warm-up
    start = time.perf_counter()
    score_probes(theta, tokenizer, probes, objects, batch_size=32)
    probes_per_s = len(probes) / (time.perf_counter() - start)

    tokens = int(batch.encoded.attention_mask.sum())
    print(f"model {args.model}, batch {args.batch_size} documents ({tokens} tokens), "
          f"φ = first {args.phi_layers} layers, device {device}, median of {args.repeats}")
    print(f"  finetune step {seconds['finetune']:.3f} s, taalm step {seconds['taalm']:.3f} s")
    print(f"  {len(probes)} descriptive probes scored at {probes_per_s:.1f} probes/s (batch 32)")
    print(f"step_ratio={seconds['taalm'] / seconds['finetune']:.2f} probes_per_s={probes_per_s:.1f}")


if __name__ == "__main__":
    main()
