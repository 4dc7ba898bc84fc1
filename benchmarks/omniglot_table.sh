#!/usr/bin/env bash
# One cell of the Omniglot table (issue 14), each on its paper's settings, MAML split
# (1,200 training characters, rotations as classes), Adam 1e-3, 600 test episodes:
#   maml-5w5s:  Finn et al.: meta-batch 32, 1 inner SGD step of 0.4, 5 queries per class
#   maml-20w1s: Finn et al.: meta-batch 16, 5 inner SGD steps of 0.1 (also at test), 1 query;
#     one task at a time (--chunk-size 1: the fastest layout measured for it, see RESULTS)
#   maml-20w5s: Finn et al.: as 20w1s with 5 shots and 5 queries
#   maml++-5w1s, maml++-20w1s: Antoniou et al.: meta-batch 8 (20-way: 16), 5 steps of 0.1 with
#     learned per-step rates, per-step batch norm (frozen in the inner loop, as their config),
#     multi-step loss annealed over 10 epochs of 500 steps, the outer rate cosine-decayed to 1% at
#     the run's last step; first order for the first 10 epochs (their paper: the first 50 of 150
#     epochs; a third of a 15,000-step run here, where STEPS shortens their 50,000; the 20-way
#     cell runs STEPS=10000, first order for its first half: its step costs ~7x the 5-way one here;
#     one task at a time (--chunk-size 1): the fastest layout on the 2-core Intel host of the
#     twelfth session, see benchmarks/RESULTS.md; the same mean meta-gradient, summed in another order)
#   DATA=path/to/omniglot_105.npz STEPS=N [HEAP=default] bash benchmarks/omniglot_table.sh CELL [--resume | --overwrite]
# HEAP=default runs `metax --heap default` (glibc's malloc settings; see benchmarks/RESULTS.md for
# when the resident heap is slower)
# The 5-way 1-shot MAML cell is `benchmarks/omniglot_family.sh maml` (STEPS=8000).
set -euo pipefail
cd "$(dirname "$0")/.."
cell="${1:?name a cell: maml-5w5s, maml-20w1s, maml-20w5s, maml++-5w1s or maml++-20w1s}"
shift
maml1=(--algo maml --inner-steps 1 --inner-lr 0.4 --eval-inner-steps 10 --meta-batch 32)
maml5=(--algo maml --inner-steps 5 --inner-lr 0.1 --eval-inner-steps 5 --meta-batch 16)
mamlpp=(--algo maml++ --bn-policy per_step_batch --inner-bn freeze --inner-steps 5 --inner-lr 0.1
  --eval-inner-steps 5 --steps-per-epoch 500 --msl-anneal-epochs 10 --first-order-epochs 10)
case "$cell" in
  maml-5w5s) args=("${maml1[@]}" --ways 5 --shots 5 --queries 5) ;;
  maml-20w1s) args=("${maml5[@]}" --ways 20 --shots 1 --queries 1 --chunk-size 1) ;;
  maml-20w5s) args=("${maml5[@]}" --ways 20 --shots 5 --queries 5 --chunk-size 1) ;;
  maml++-5w1s) args=("${mamlpp[@]}" --meta-batch 8 --ways 5 --shots 1 --queries 1) ;;
  maml++-20w1s) args=("${mamlpp[@]}" --meta-batch 16 --ways 20 --shots 1 --queries 1 --chunk-size 1) ;;
  *) echo "unknown cell: $cell" >&2; exit 2 ;;
esac
exec nice -n 5 .venv/bin/metax --heap "${HEAP:-resident}" train omniglot --data "${DATA:?set DATA to an Omniglot npz}" \
  "${args[@]}" --outer-lr 1e-3 --steps "${STEPS:-5000}" --eval-every 500 --val-tasks 200 \
  --test-tasks 600 --checkpoint-every 250 --log-every 25 --out "runs/table-$cell" --no-progress "$@"
