#!/usr/bin/env bash
# One lease of a GPU as one call: the prepared checks, then one row of the paper's table.
#   bash scripts/offline_gpu_bundle.sh .gpu   (here, with WEIGHTS_FOR=cyclone_idai_2019; carry .gpu)
#   bash scripts/gpu_lease.sh OUT_DIR BUDGET_SECONDS   (there; OUT_DIR/lease.tgz holds everything)
# 1. SECTIONS="tests train graphs" of scripts/gpu_check.sh (the `gpu` tests, one epoch of CE / HAMR eager /
#    HAMR with trainer.cuda_graphs=true, the graphed step benchmark), one after another, nothing beside them;
# 2. the paper's regime (experiment=table_paper: full training data, 8 epochs, batch 8, its lr, bf16) on
#    Cyclone-Idai 2019 with the pre-trained MiniLM (the Hub's BERT-base is out of reach there): CE, ICF,
#    focal and HAMR (hamr=default, the exact step), seeds $SEEDS (default 1 2), every run its own process,
#    all side by side; HAMR with trainer.cuda_graphs=true if step 1's graphed runs finished, else eager
#    (and eager again if its graphed run fails). Runs still going at the budget's end are killed and left out.
# DEVICE=cpu MODEL=tiny_random PRECISION=fp32 PAPER_ARGS="dataset.max_train_examples=64 trainer.epochs=1"
# SECTIONS=tests checks the wiring on a CPU.
set -uo pipefail
out="${1:?usage: bash scripts/gpu_lease.sh OUT_DIR BUDGET_SECONDS}"; budget="${2:?budget in seconds}"
mkdir -p "$out/check" "$out/paper_logs"
bundle=.gpu
[[ -n "${PYTHONPATH:-}" && "$PYTHONPATH" == *hamr_site* ]] || . "$bundle/unpack.sh"
device="${DEVICE:-cuda}"
{
  echo "lease start $(date -u +%FT%TZ), budget ${budget}s, commit $(git rev-parse HEAD 2>/dev/null)"
  SECTIONS="${SECTIONS:-tests train graphs}" PYTHON=python3 \
    timeout "${CHECK_SECONDS:-420}" bash scripts/gpu_check.sh "$out/check" "$PWD/$bundle/minilm" \
    || echo "gpu_check.sh stopped (rc $?)"
  graphs=false
  if python3 - "$out/check/train/graphs_true/runs" <<'PY'; then graphs=true; fi
import json, sys
from pathlib import Path
runs = sorted(Path(sys.argv[1]).glob("*/hamr_no_neighbor_boost/seed=1/metrics.json"))
ok = len(runs) == 2 and all((json.loads(p.read_text()).get("cuda_graph_steps") or {}).get("replayed", 0) > 0 for p in runs)
print(f"graphed training runs finished with graph steps: {len(runs)} of 2 -> cuda_graphs for HAMR: {ok}")
sys.exit(0 if ok else 1)
PY
  echo "=== paper row, $(date -u +%T): Cyclone-Idai 2019, experiment=table_paper, MiniLM, HAMR cuda_graphs=$graphs"
  deadline=$((budget - 25 - SECONDS))
  common=(experiment=table_paper model=minilm dataset=cyclone_idai_2019 "trainer.device=$device" logger=none
          trainer.progress_bar=false "paths.results_dir=$out/table_paper" "paths.checkpoint_dir=/tmp/hamr_ckpt"
          ${PRECISION:+trainer.precision=$PRECISION} ${PAPER_ARGS:-})
  for seed in ${SEEDS:-1 2}; do
    for loss in ce icf focal; do
      OMP_NUM_THREADS=2 timeout "$deadline" python3 -m hamr.train "${common[@]}" method=baseline baseline_loss=$loss \
        trainer.seed=$seed "hydra.run.dir=/tmp/hamr_hydra/$loss$seed" > "$out/paper_logs/${loss}_seed$seed.log" 2>&1 &
    done
    (
      hamr=("${common[@]}" method=hamr hamr=default ablation=full trainer.seed=$seed)
      if [[ $graphs == true ]]; then
        OMP_NUM_THREADS=2 timeout "$deadline" python3 -m hamr.train "${hamr[@]}" trainer.cuda_graphs=true \
          "trainer.graph_lengths=[64,128,256]" "hydra.run.dir=/tmp/hamr_hydra/hamrg$seed" \
          > "$out/paper_logs/hamr_graphed_seed$seed.log" 2>&1 && exit 0
        echo "graphed HAMR seed $seed failed: eager" >> "$out/paper_logs/hamr_graphed_seed$seed.log"
      fi
      OMP_NUM_THREADS=2 timeout $((budget - 25 - SECONDS)) python3 -m hamr.train "${hamr[@]}" force=true \
        "hydra.run.dir=/tmp/hamr_hydra/hamr$seed" > "$out/paper_logs/hamr_seed$seed.log" 2>&1
    ) &
  done
  wait
  echo "=== paper row done $(date -u +%T) (${SECONDS}s into the lease)"
  python3 - "$out/table_paper/runs" <<'PY'
import json, sys
from pathlib import Path
for path in sorted(Path(sys.argv[1]).glob("*/*/seed=*/metrics.json")):
    m = json.loads(path.read_text())
    print(f"{path.parent.parent.name:>10} {path.parent.name}: dev {m.get('dev_macro_f1')} test {m.get('test_macro_f1')} "
          f"steps {m.get('steps')} train_s {m.get('train_seconds')} graphed {m.get('cuda_graph_steps')}")
PY
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  echo "lease end $(date -u +%FT%TZ)"
} 2>&1 | tee "$out/lease_log.txt"
find "$out" -name run.lock -delete
tar czf "$out.tgz" -C "$out" . && mv "$out.tgz" "$out/lease.tgz"
