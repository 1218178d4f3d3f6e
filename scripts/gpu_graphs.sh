#!/usr/bin/env bash
# the graphs call of 2026-11-28 (results/bench/gpu/2026-11-28b/call3): gpu_check.sh SECTIONS=graphs, then each graphed variant alone if it failed
bundle=.gpu; out="$1"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/hamr_site "$bundle"/wheels/*.whl
export PYTHONPATH="/tmp/hamr_site:$PWD/src:$PWD:$PWD/$bundle/shim" PYTHONUNBUFFERED=1 HAMR_DATA_DIR=/tmp/hamr_data \
       WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
mkdir -p "$HAMR_DATA_DIR" "$out" && tar xzf "$bundle/data.tgz" -C "$HAMR_DATA_DIR"
PYTHON=python3 SECTIONS=graphs bash scripts/gpu_check.sh "$out" "$PWD/$bundle/minilm"
if grep -q "FAILED" "$out/gpu_check_log.txt"; then
  for v in ce_graphed hamr_exact_graphed; do
    python3 scripts/bench_step.py --device cuda --model bert_base_random --override model.name_or_path=$PWD/$bundle/minilm \
      --reps 3 --warmup 1 --precision bf16 --no-memory --variants ce hamr_exact $v --out "$out/separate_$v" 2>&1 | grep -v "^\[20" | tail -30
  done
fi
