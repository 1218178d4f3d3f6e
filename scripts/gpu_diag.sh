#!/usr/bin/env bash
# graph diagnostics of 2026-11-28 (results/bench/gpu/2026-11-28b/call2), then the graphs section of gpu_check
bundle=.gpu; out="$1"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/hamr_site "$bundle"/wheels/*.whl
export PYTHONPATH="/tmp/hamr_site:$PWD/src:$PWD:$PWD/$bundle/shim" PYTHONUNBUFFERED=1 HAMR_DATA_DIR=/tmp/hamr_data \
       WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
mkdir -p "$HAMR_DATA_DIR" "$out" && tar xzf "$bundle/data.tgz" -C "$HAMR_DATA_DIR"
common=(--model bert_base_random --override model.name_or_path=$PWD/$bundle/minilm --datasets sst5 --reps 1 --warmup 0 --batches 2 --no-memory)
nodrop=(+model.random_init.hidden_dropout_prob=0.0 +model.random_init.attention_probs_dropout_prob=0.0)
{
python3 scripts/gpu_diag.py ce_bf16 "${common[@]}" --precision bf16 --variants ce ce_graphed
python3 scripts/gpu_diag.py ce_fp32 "${common[@]}" --precision fp32 --variants ce ce_graphed
python3 scripts/gpu_diag.py ce_bf16_nodrop --model bert_base_random --override model.name_or_path=$PWD/$bundle/minilm "${nodrop[@]}" --datasets sst5 --reps 1 --warmup 0 --batches 2 --no-memory --precision bf16 --variants ce ce_graphed
python3 scripts/gpu_diag.py hamr_bf16 "${common[@]}" --precision bf16 --variants ce hamr_exact_graphed
python3 scripts/gpu_diag.py hamr_bf16_nodrop --model bert_base_random --override model.name_or_path=$PWD/$bundle/minilm "${nodrop[@]}" --datasets sst5 --reps 1 --warmup 0 --batches 2 --no-memory --precision bf16 --variants ce hamr_exact_graphed
python3 scripts/gpu_diag.py ce_bf16_mask4d "${common[@]}" --precision bf16 --variants ce ce_graphed
} 2>&1 | grep -v "^\[20" | tee "$out/diag_log.txt"
PYTHON=python3 SECTIONS=graphs bash scripts/gpu_check.sh "$out" "$PWD/$bundle/minilm"
