#!/usr/bin/env bash
# Omniglot 5-way 1-shot for the family (issue 13's accuracy rows), one run per algorithm,
# all on Finn et al.'s episode settings (1 query per class while training and testing,
# meta-batch 32, Adam 1e-3, MAML split), each with its paper's inner loop:
#   maml, anil, meta-sgd: 1 inner SGD step of 0.4 (Meta-SGD: 0.4 is the learned rates' start)
#   imaml: 16 proximal SGD steps of 0.1, lam 2, 5 CG steps on the damped system of Rajeswaran
#     et al.'s code (cg_damping 1, lam_damping 10; the exact system is indefinite here)
#   DATA=path/to/omniglot_105.npz STEPS=1000 bash benchmarks/omniglot_family.sh ALGO [--resume | --overwrite]
set -euo pipefail
cd "$(dirname "$0")/.."
algo="${1:?name an algorithm: maml, anil, meta-sgd or imaml}"
shift
case "$algo" in
  maml | anil) inner=(--inner-steps 1 --inner-lr 0.4 --eval-inner-steps 10) ;;
  meta-sgd) inner=(--inner-steps 1 --inner-lr 0.4 --eval-inner-steps 1) ;;
  imaml) inner=(--inner-steps 16 --inner-lr 0.1 --lam 2 --cg-steps 5 --cg-damping 1 --lam-damping 10
    --eval-inner-steps 16) ;;
  *) echo "unknown algorithm: $algo" >&2; exit 2 ;;
esac
exec nice -n 5 .venv/bin/metax train omniglot --data "${DATA:?set DATA to an Omniglot npz}" \
  --algo "$algo" --ways 5 --shots 1 --queries 1 --meta-batch 32 --outer-lr 1e-3 "${inner[@]}" \
  --steps "${STEPS:-1000}" --eval-every 500 --val-tasks 200 --test-tasks 600 \
  --checkpoint-every 250 --log-every 25 --out "runs/family-$algo-5w1s" --no-progress "$@"
