#!/bin/bash
# PPO with and without the request's reference answer (2026-11-28): the same SFT policy, default
# weights (1/1/1), 60 steps or 540 s each; then every policy evaluated on 100 held-out questions x 2
# samples under both scorings, and its answers' overlap with the gold answers (overlap.py).
set -x
cd /work/main
OUT=runs/ppo-ref
mkdir -p $OUT
FGRM_TORCH_THREADS=1 .venv/bin/fgrm serve --http-port 3961 --grpc-port 3962 > $OUT/serve.log 2>&1 &
SERVER=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:3961/readyz >/dev/null && break; sleep 2; done
for ref in false true; do
  nice -n 10 .venv/bin/python clients/ppo/train_ppo.py --policy runs/sft --out $OUT/ppo-reference-$ref \
      --url http://127.0.0.1:3961 --reference $ref --policy-lr 1e-4 --time-limit 540
done
for p in runs/sft $OUT/ppo-reference-false/policy $OUT/ppo-reference-true/policy; do
  name=$(echo $p | sed "s|$OUT/||; s|runs/||; s|/policy||")
  for ref in false true; do
    .venv/bin/python clients/ppo/train_ppo.py --policy $p --out $OUT/eval-$name-scored-reference-$ref \
        --url http://127.0.0.1:3961 --reference $ref --total-steps 0 --n-eval 100 --eval-samples 2 --save false
  done
done
kill $SERVER
.venv/bin/python clients/ppo/results/reference-2026-11-28/overlap.py $OUT
echo DONE
