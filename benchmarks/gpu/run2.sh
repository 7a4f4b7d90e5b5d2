#!/usr/bin/env bash
# Second GPU session: the first sweep (run.sh) showed every recipe underfitting in 5-6 epochs and
# the human-corrected "all ok" examples pulling error-F1 down. Three longer recipes without them,
# trained on the train split in parallel; the best by dev composite is shipped (selection on dev:
# mildly optimistic, said so in the README).
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
COMMON="--backbone .gpu/minilm --data .gpu/data/dev_feedback.json --corrected 0 --epochs ${EPOCHS:-15} ${EXTRA:-}"
declare -A R=([A]="--lr 1e-4" [B]="--lr 5e-5" [C]="--lr 1e-4 --factuality-pos-weight 2.0")
for k in A B C; do
  timeout "${BUDGET_S:-230}" python3 -m models.finetune $COMMON ${R[$k]} --out /tmp/r2/$k/fgrm-qa-minilm --log /tmp/r2/$k.jsonl > /tmp/r2-$k.log 2>&1 &
done
wait
best=$(python3 - <<'PY'
import json, os
best, score = None, -1
for k in "ABC":
    p = f"/tmp/r2/{k}.jsonl"
    if not os.path.isfile(p) or not os.path.isfile(f"/tmp/r2/{k}/fgrm-qa-minilm/fgrm.json"):
        continue
    d = json.loads(open(p).read().splitlines()[-1])["dev"]
    c = (d["relevance"]["accuracy"] + d["factuality"]["accuracy"] + d["factuality"]["error_f1"] + d["completeness"]["pairwise_accuracy"]) / 4
    print(k, round(c, 4), file=open("/tmp/r2/choice.txt", "a"))
    if c > score:
        best, score = k, c
print(best or "")
PY
)
cat /tmp/r2/choice.txt; echo "best=$best"
[ -n "$best" ] && { tar -C /tmp/r2/$best -cf - fgrm-qa-minilm | split -b 16000000 - "$OUT/ckpt.tar.part-"; }
cp /tmp/r2/*.jsonl /tmp/r2/choice.txt "$OUT/" 2>/dev/null; ls -la "$OUT"
