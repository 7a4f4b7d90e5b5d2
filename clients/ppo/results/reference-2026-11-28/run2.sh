#!/bin/bash
# Second round (2026-11-28): with references the tiny policy fell silent faster (a blank answer's
# completeness charge is -2.21 under the reference heads against -3.50 without). C: reference with
# completeness weighted 1.59 (the ratio of the two charges); D/E: the ppo-demo weights
# (relevance 2, completeness 3) without and with references. Same SFT policy and settings as run.sh.
set -x
cd /work/main
OUT=runs/ppo-ref
mkdir -p $OUT
FGRM_TORCH_THREADS=1 .venv/bin/fgrm serve --http-port 3961 --grpc-port 3962 > $OUT/serve2.log 2>&1 &
SERVER=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:3961/readyz >/dev/null && break; sleep 2; done
run() {  # name reference weights
  nice -n 10 .venv/bin/python clients/ppo/train_ppo.py --policy runs/sft --out $OUT/$1 \
      --url http://127.0.0.1:3961 --reference $2 --weights $3 --policy-lr 1e-4 --time-limit 540
  for ref in false true; do
    .venv/bin/python clients/ppo/train_ppo.py --policy $OUT/$1/policy --out $OUT/eval-$1-scored-reference-$ref \
        --url http://127.0.0.1:3961 --reference $ref --total-steps 0 --n-eval 100 --eval-samples 2 --save false
  done
}
run ppo-reference-true-comp1.59 true relevance=1,factuality=1,completeness=1.59
run ppo-reference-false-rel2-comp3 false relevance=2,factuality=1,completeness=3
run ppo-reference-true-rel2-comp3 true relevance=2,factuality=1,completeness=3
kill $SERVER
.venv/bin/python clients/ppo/results/reference-2026-11-28/overlap.py $OUT
echo DONE
