#!/usr/bin/env bash
# One GPU session: (1) train the default recipe and ship it first, (2) 4-fold CV sweep of the
# recipes + separate-vs-shared comparison, retraining the winner, (3) raw forward benchmark.
# Everything lands in $OUT progressively, so a timeout still returns what was done.
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
SWEEP_EPOCHS=${SWEEP_EPOCHS:-5}; SWEEP_BUDGET_S=${SWEEP_BUDGET_S:-300}; EXTRA=${EXTRA:-}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
COMMON="--backbone .gpu/minilm --data .gpu/data/dev_feedback.json $EXTRA"
{ nvidia-smi -L; python3 -c "import torch, transformers, onnxruntime as o; print(torch.__version__, transformers.__version__, o.__version__, o.get_available_providers(), torch.cuda.is_available())"; } 2>&1 | tee "$OUT/env.txt"
ship() {  # $1 = checkpoint dir: tar it into <16 MiB parts
  rm -f "$OUT"/ckpt.tar.part-*; tar -C "$(dirname "$1")" -cf - "$(basename "$1")" | split -b 16000000 - "$OUT/ckpt.tar.part-"; ls -la "$OUT"
}
echo "== default recipe"; date
timeout "${DEFAULT_BUDGET_S:-170}" python3 -m models.finetune --epochs "${DEFAULT_EPOCHS:-6}" --corrected 1 --out /tmp/default/fgrm-qa-minilm --log /tmp/default/log.jsonl $COMMON 2>&1 | grep -v "it/s" | tail -12
ship /tmp/default/fgrm-qa-minilm; cp /tmp/default/log.jsonl "$OUT/default_log.jsonl"
echo "== sweep"; date
timeout "$SWEEP_BUDGET_S" python3 -m models.sweep --work /tmp/sweep --out /tmp/best/fgrm-qa-minilm --epochs "$SWEEP_EPOCHS" \
  --parallel "${PARALLEL:-12}" --variants "${VARIANTS:-joint,joint-nocorr,joint-lr1e-4,sep-relevance,sep-factuality,sep-completeness}" \
  --folds "${FOLDS:-1,2,3,4}" --extra "$COMMON" 2>&1 | tail -40
pkill -f "models.finetune" ; sleep 1  # runs the timeout cut short must not hold the GPU during the benchmark
[ -f /tmp/best/fgrm-qa-minilm/fgrm.json ] && ship /tmp/best/fgrm-qa-minilm
echo "== forward benchmark"; date
CK=/tmp/best/fgrm-qa-minilm; [ -f $CK/fgrm.json ] || CK=/tmp/default/fgrm-qa-minilm
timeout "${BENCH_BUDGET_S:-80}" python3 -m benchmarks.forward --checkpoint $CK --data .gpu/data/dev_feedback.json \
  --runtimes torch:float32,torch:float16,torch:bfloat16,onnx --batch-sizes 1,8,32,64 --items 256 --repeats 3 | tee "$OUT/gpu_forward.jsonl"
tar -czf "$OUT/sweep_logs.tgz" -C /tmp $(cd /tmp && ls -d sweep/*/log.jsonl sweep/*.json sweep/*.log default/log.jsonl 2>/dev/null) 2>/dev/null
date; ls -la "$OUT"
