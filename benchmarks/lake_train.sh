#!/usr/bin/env bash
# Meta-trains the Lake model: 20-way 1-shot episodes of the background alphabets (alphabet
# split: 25 alphabets for training, 5 for validation), an episode's classes drawn across those
# alphabets (--episodes mixed), MAML with batch statistics (Finn et al.'s batch norm), one inner
# SGD step of 0.4, meta-batch 16, Adam 1e-3 cosine-decayed to 1% at the last step. Score it per
# image with `metax eval-lake --per-image` (each test image normalised with the support set and
# itself, never with other test images), or with benchmarks/lake_eval.py.
#   DATA=path/to/omniglot_105.npz STEPS=2500 bash benchmarks/lake_train.sh [--resume | --overwrite]
# (a resumed run keeps its STEPS: the rate is cosine-decayed over them)
# The seventh session's model (29.50% error per image) came from within-alphabet episodes
# (--episodes within_alphabet), Adam 1e-3 constant, 3,000 steps, out runs/lake-maml-20w1s.
# The sixth session's model (MAML++ with per-step batch norm, 68.25% error) came from
#   --episodes within_alphabet --algo maml++ --bn-policy per_step --inner-steps 5 --inner-lr 0.1
#   --steps 1000 --steps-per-epoch 250 --msl-anneal-epochs 2 --first-order-epochs 2
#   --eval-inner-steps 5
set -euo pipefail
cd "$(dirname "$0")/.."
exec nice -n 5 .venv/bin/metax train omniglot --data "${DATA:?set DATA to an Omniglot npz}" \
  --split alphabet --episodes mixed --ways 20 --shots 1 --queries 1 \
  --algo maml --bn-policy batch --inner-steps 1 --inner-lr 0.4 --meta-batch 16 \
  --outer-decay cosine --steps "${STEPS:-2500}" --eval-inner-steps 10 --eval-every 500 \
  --val-tasks 100 --checkpoint-every 250 --log-every 25 --out runs/lake-mixed-20w1s --no-progress "$@"
