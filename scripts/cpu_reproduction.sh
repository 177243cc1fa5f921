#!/bin/bash
# The cpu-scale reproduction's long runs, in priority order (issue 6). Every command resumes
# where it stopped and reads finished runs back, so run this script again after an
# interruption. On 2 cores use one thread per process: two 2-thread processes slow each
# other down 4-10x.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
T=$(python -c "from trainattn.data.sources import cache_root; print(cache_root())")/tailored/smollm2-135m/n100_100_s42
[ -d "$T" ] || trainattn tailor --to-learn 100 --not-to-forget 100 --seed 42

# φ, attempt A: chapter 03's cpu run and the φ of chapters 04-07 (27 min of meta-steps on 2 cores)
trainattn meta-train --config configs/meta_smollm2_cpu.yml --out runs/cpu/03_meta_training --tailored "$T" \
  --examples 416

# φ tuning, attempt B: attempt A (configs/meta_smollm2_cpu.yml, outer_lr 1e-3) with outer_lr 3e-4,
# a validation every 13 steps and the best-validated φ kept; both φs validated on the same 24
# unseen meta-pool documents as A (pool rows 424-447).
B=runs/cpu/phi_tuning/B_outer_lr_3e-4
trainattn meta-train --config configs/meta_smollm2_cpu.yml --set outer_lr=3e-4 val_every=13 \
  --out $B --tailored "$T" --examples 416
[ -f $B/validate_unseen_best.json ] || trainattn meta-validate --phi $B/best --tailored "$T" \
  --examples-used 416 --size 24 --out $B/validate_unseen_best.json
[ -f $B/validate_unseen_last.json ] || trainattn meta-validate --phi $B --tailored "$T" \
  --examples-used 416 --size 24 --out $B/validate_unseen_last.json

# The LAMA-CKL grid of chapter 04 (φ = attempt A, runs/cpu/03_meta_training).
G="--config configs/lama_ckl_cpu.yml --phi runs/cpu/03_meta_training --out runs/cpu/lama_ckl --tailored $T"
trainattn ckl-grid $G --methods finetune oracle taalm rho1 mixreview recadam kadapter --seeds 0
trainattn ckl-grid $G --methods finetune oracle taalm --seeds 1 2
trainattn ckl-grid $G --methods taalm+kadapter taalm+mixreview taalm+recadam --seeds 0
trainattn ckl-grid $G --methods rho1 mixreview recadam kadapter --seeds 1 2 \
  --summary results/cpu/lama_ckl_summary.json

# Then the notebooks at the cpu profile (they read the runs above back), writing results/cpu/:
#   trainattn book --profile cpu --update
