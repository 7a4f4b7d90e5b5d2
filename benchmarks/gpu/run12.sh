#!/usr/bin/env bash
# On the GPU host, after benchmarks/gpu/stage12.sh here: one call runs issue 12's list
# (benchmarks/gpu/issue12.py). Results land in $OUT progressively; a timeout keeps what finished.
#   run(command="bash benchmarks/gpu/run12.sh", carry=[".gpu12", "service/_proto"], timeout_s=600)
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false BENTOML_DO_NOT_TRACK=True
OUT=${OUT:-/tmp/gpu12-out}; mkdir -p "$OUT"
want=$(cat .gpu12/python-version); have=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$want" = "$have" ] || echo "WARNING: wheels staged for Python $want, host has $have: restage with STAGE_PYTHON=$have" | tee "$OUT/warning.txt"
# the image's torch / numpy / transformers stay; only what it lacks comes from the staged wheels
PKGS="bentoml grpcio grpcio-health-checking grpcio-reflection protobuf pydantic prometheus-client httpx pysbd tqdm"
if python3 -m venv --system-site-packages /tmp/v12 2>/dev/null; then
  /tmp/v12/bin/pip install -q --no-index --find-links .gpu12/whl $PKGS 2>&1 | tail -5 | tee "$OUT/pip.txt"
  PY=/tmp/v12/bin/python; SITE=
else  # an image without ensurepip: install beside its packages; a .pth file puts them on every
  # python3's path, the servers' included (benchmarks.launch sets their PYTHONPATH to the repository)
  python3 -m pip install -q --no-index --find-links .gpu12/whl --target /tmp/site12 $PKGS 2>&1 | tail -5 | tee "$OUT/pip.txt"
  echo /tmp/site12 > "$(python3 -c 'import site; print(site.getsitepackages()[0])')/fgrm-gpu12.pth"
  PY=python3
fi
export PYTHONPATH=$PWD:$PWD/clients
nvidia-smi -L | tee "$OUT/nvidia-smi.txt"
$PY -m benchmarks.gpu.stage_encoder restore .gpu12/minilm /tmp/gpu12 | tee "$OUT/restore.json"
export FGRM_FEEDBACK_TYPES=/tmp/gpu12/feedback_types.toml  # the service, naive and seed-style servers read it
timeout "${BUDGET_S:-540}" $PY -m benchmarks.gpu.issue12 --checkpoint /tmp/gpu12/fgrm-qa-signals --out "$OUT" \
  ${ISSUE12_ARGS:-} 2>&1 | grep -v "it/s\]" | tee "$OUT/log.txt"
ls -la "$OUT"
