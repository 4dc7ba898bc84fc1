#!/usr/bin/env bash
# Meta-trains the Lake model: 20-way 1-shot within-alphabet episodes of the background
# alphabets (alphabet split), MAML with batch statistics (Finn et al.'s batch norm), one inner
# SGD step of 0.4, meta-batch 16. Score it per image with `metax eval-lake --per-image`
# (each test image normalised with the support set and itself, never with other test images).
#   DATA=path/to/omniglot_105.npz [HEAP=default] bash benchmarks/lake_train.sh [--resume | --overwrite] [--steps N]
# HEAP=default runs `metax --heap default` (glibc's malloc settings, faster on some hosts).
# Tried in the ninth session (not published: 36.50% error per image, worse): episodes drawn
# across the background alphabets, the rate cosine-decayed, 1,500 steps:
#   --episodes mixed --outer-decay cosine --steps 1500 --out runs/lake-mixed-20w1s
# Tried in the fourteenth session (not published: level, 30.75% per image on our runs, 13.25% on
# Lake et al.'s own): every meta-training image distorted by a random affine map (Koch et al.):
#   --distortion affine --out runs/lake-affine-20w1s
# Tried in the eighteenth session (stopped at 500 steps: 73.8% validation against 77.7%, 3-7x the step):
#   --image-size 56 --chunk-size 1 --out runs/lake-56px-20w1s
# The sixth session's model (MAML++ with per-step batch norm, 68.25% error) came from
#   --algo maml++ --bn-policy per_step --inner-steps 5 --inner-lr 0.1 --steps 1000
#   --steps-per-epoch 250 --msl-anneal-epochs 2 --first-order-epochs 2 --eval-inner-steps 5
set -euo pipefail
cd "$(dirname "$0")/.."
exec nice -n 5 .venv/bin/metax --heap "${HEAP:-resident}" train omniglot --data "${DATA:?set DATA to an Omniglot npz}" \
  --split alphabet --episodes within_alphabet --ways 20 --shots 1 --queries 1 \
  --algo maml --bn-policy batch --inner-steps 1 --inner-lr 0.4 --meta-batch 16 \
  --steps 3000 --eval-inner-steps 10 --eval-every 500 --val-tasks 100 --checkpoint-every 250 \
  --log-every 25 --out runs/lake-maml-20w1s --no-progress "$@"
