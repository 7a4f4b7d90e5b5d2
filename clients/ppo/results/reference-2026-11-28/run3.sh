#!/bin/bash
# Third round (2026-11-28), after the reference head's completeness is put on the reference-free
# scale by two anchors (the mean answer and the blank answer; models.signal_model._on_base_scale):
# the two reference runs of run.sh / run2.sh again, same settings, into *-anchored.
set -x
cd /work/main
OUT=runs/ppo-ref
mkdir -p $OUT
FGRM_TORCH_THREADS=1 .venv/bin/fgrm serve --http-port 3961 --grpc-port 3962 > $OUT/serve3.log 2>&1 &
SERVER=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:3961/readyz >/dev/null && break; sleep 2; done
run() {  # name reference weights
  nice -n 10 .venv/bin/python clients/ppo/train_ppo.py --policy runs/sft --out $OUT/$1 \
      --url http://127.0.0.1:3961 --reference $2 --weights "$3" --policy-lr 1e-4 --time-limit 540
  for ref in false true; do
    .venv/bin/python clients/ppo/train_ppo.py --policy $OUT/$1/policy --out $OUT/eval-$1-scored-reference-$ref \
        --url http://127.0.0.1:3961 --reference $ref --total-steps 0 --n-eval 100 --eval-samples 2 --save false
  done
}
run ppo-reference-true-anchored true ""
run ppo-reference-true-rel2-comp3-anchored true relevance=2,factuality=1,completeness=3
for ref in false true; do  # the SFT policy under the new scale
  .venv/bin/python clients/ppo/train_ppo.py --policy runs/sft --out $OUT/eval-sft-anchored-scored-reference-$ref \
      --url http://127.0.0.1:3961 --reference $ref --total-steps 0 --n-eval 100 --eval-samples 2 --save false
done
kill $SERVER
.venv/bin/python clients/ppo/results/reference-2026-11-28/overlap.py $OUT
echo DONE
