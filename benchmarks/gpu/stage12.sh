#!/usr/bin/env bash
# Stage, on this (networked) machine, what a bare GPU host lacks for benchmarks/gpu/issue12.py:
#   .gpu12/whl     the serving wheels (bentoml, grpcio, ..., pinned by requirements.lock); not
#                  torch, numpy or transformers, which the GPU image has (docs/training/env.txt)
#   .gpu12/minilm  the frozen MiniLM in fp16, pruned to the rows QA-Feedback uses (stage_encoder.py)
#   service/_proto the generated gRPC stubs (so the host needs no grpcio-tools)
# Both are git-ignored; the device tool carries them: carry [".gpu12", "service/_proto"] (64 MiB in all).
# The wheels must match the host's python3: STAGE_PYTHON=3.12 benchmarks/gpu/stage12.sh (default:
# this venv's Python). Then, on the host: bash benchmarks/gpu/run12.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
PYVER=${STAGE_PYTHON:-$($PY -c 'import sys; print("%d.%d" % sys.version_info[:2])')}
rm -rf .gpu12 && mkdir -p .gpu12/whl
$PY -m pip download -q --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  -d .gpu12/whl -c requirements.lock \
  bentoml grpcio grpcio-health-checking grpcio-reflection protobuf pydantic prometheus-client httpx pysbd tqdm \
  2>&1 | grep -v "is ignored" || true
rm -f .gpu12/whl/numpy-*.whl  # the image's own numpy stays (torch was built against it)
echo "$PYVER" > .gpu12/python-version
$PY -m benchmarks.gpu.stage_encoder stage .gpu12/minilm
$PY -c "import service.proto"  # writes service/_proto if missing or stale
du -sh .gpu12/whl .gpu12/minilm service/_proto
du -shc .gpu12 service/_proto | tail -1
