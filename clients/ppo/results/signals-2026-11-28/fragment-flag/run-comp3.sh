#!/bin/bash
# PPO re-run after the fragment flag (2026-11-28): relevance=2 collapsed to ~2-token answers before it.
set -x
cd /work/main
OUT=runs/ppo-frag-comp3
mkdir -p $OUT
FGRM_TORCH_THREADS=1 .venv/bin/fgrm serve --http-port 3931 --grpc-port 3932 > $OUT/serve.log 2>&1 &
SERVER=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:3931/readyz >/dev/null && break; sleep 2; done
nice -n 10 .venv/bin/python clients/ppo/train_ppo.py --policy runs/sft --out $OUT/ppo-rel-up-comp3 \
    --url http://127.0.0.1:3931 --weights relevance=2,factuality=1,completeness=3 --policy-lr 1e-4 --time-limit 540
for p in $OUT/ppo-rel-up-comp3/policy; do
  name=$(echo $p | sed "s|$OUT/||; s|runs/||; s|/policy||")
  .venv/bin/python clients/ppo/train_ppo.py --policy $p --out $OUT/eval-$name \
      --url http://127.0.0.1:3931 --weights relevance=1,factuality=1,completeness=1 \
      --total-steps 0 --n-eval 100 --eval-samples 2 --save false
done
kill $SERVER
echo DONE
