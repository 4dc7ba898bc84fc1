#!/usr/bin/env bash
# Runs one piece of a long run kept in benchmarks/unfinished/ (see keep_run.sh) on a lent GPU
# machine (the `device` tool), for at most SECONDS, and hands the run back as $OUT/<run>.tar: its
# config, metrics, newest checkpoints, and results.json and figures if it finished. `devices.log` in
# the run records which steps ran on which device, for benchmarks/RESULTS.md.
#
# Here, once per session (the data stay out of git; `carry` takes them along):
#   mkdir -p .device && cp ../shared/data/omniglot/omniglot_105.npz .device/
#   grep -qx '/.device/' .git/info/exclude || echo /.device/ >> .git/info/exclude
# Then, with the run's newest checkpoint committed or at least kept (keep_run.sh save):
#   run(command="bash benchmarks/device_piece.sh table-maml++-20w1s 460 --chunk-size none",
#       carry=[".device"], timeout_s=560)
# and back here, over the CPU copy (stop the CPU run first):
#   rm -rf runs/table-maml++-20w1s && tar -xf <files_at>/table-maml++-20w1s.tar -C runs/
#   bash benchmarks/keep_run.sh save runs/table-maml++-20w1s   # then commit
# Extra arguments are `metax train` flags a resume may change (--chunk-size none: the whole
# meta-batch at once, the fast layout on a GPU; the same mean meta-gradient). The device's python3
# has jax (CUDA), flax, optax, orbax and matplotlib; metax runs from this checkout (PYTHONPATH).
#   bash benchmarks/device_piece.sh RUN SECONDS [metax train flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?name a run kept in benchmarks/unfinished/, e.g. table-maml++-20w1s}"
seconds="${2:?how many seconds the piece may train (leave a minute for compiling and packing)}"
shift 2
out="${OUT:?set OUT to the folder that comes back}"
python="${PYTHON:-python3}"
run="runs/$name"
rm -rf "$run"
bash benchmarks/keep_run.sh restore "$run"
family=$("$python" -c "import json, sys; print(json.load(open(sys.argv[1]))['family'])" "$run/config.json")
data=()
if [ "$family" = omniglot ]; then
  data=(--data "${DATA:-.device/omniglot_105.npz}")
fi
device=$("$python" -c "import jax; d = jax.devices()[0]; print(d.platform, d.device_kind)")
first=$(ls "$run/checkpoints")
echo "device: $device; resuming $run at step $first for at most $seconds s"
status=0
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout -s TERM "$seconds" "$python" \
  -m metax.cli --heap default train "$family" \
  --out "$run" --resume --no-progress "${data[@]}" "$@" || status=$?
last=$(find "$run/checkpoints" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9]+' -printf '%f\n' |
  sort -n | tail -1)
case "$status" in
  0) outcome="finished" ;;
  124) outcome="stopped at the time limit" ;;
  *) outcome="failed with status $status" ;;
esac
echo "steps $first-$last on $device ($(date -u +%F), $outcome)" | tee -a "$run/devices.log"
tar -cf "$out/$name.tar" -C runs "$name"
exit $(( status == 124 ? 0 : status ))
