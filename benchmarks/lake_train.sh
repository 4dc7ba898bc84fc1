cd /work/main && exec nice -n 5 .venv/bin/metax train omniglot --data ../shared/data/omniglot/omniglot_105.npz \
  --split alphabet --episodes within_alphabet --ways 20 --shots 1 --queries 1 \
  --algo maml++ --bn-policy per_step --inner-steps 5 --inner-lr 0.1 --meta-batch 16 \
  --steps 1500 --steps-per-epoch 250 --msl-anneal-epochs 4 --first-order-epochs 2 \
  --eval-inner-steps 5 --eval-every 500 --val-tasks 100 --checkpoint-every 250 --log-every 25 \
  --out runs/lake-20w1s --no-progress "$@"
