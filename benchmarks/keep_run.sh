#!/usr/bin/env bash
# Keeps an unfinished long run in git between sessions (runs/ is not kept from one session to the
# next here; commits are): `save` copies the run's config, metrics and newest complete checkpoint
# to benchmarks/unfinished/<run name>/ (then commit that folder), `restore` copies them back into
# the missing run directory, ready for `--resume`. The folder is deleted when the run is finished.
#   bash benchmarks/keep_run.sh save runs/table-maml++-20w1s
#   bash benchmarks/keep_run.sh restore runs/table-maml++-20w1s
set -euo pipefail
cd "$(dirname "$0")/.."
action="${1:?save or restore}"
run="${2:?name a run directory, e.g. runs/table-maml++-20w1s}"
kept="benchmarks/unfinished/$(basename "$run")"
case "$action" in
  save)
    step=$(find "$run/checkpoints" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9]+' \
      -printf '%f\n' | sort -n | tail -1)
    [ -n "$step" ] || { echo "no complete checkpoint in $run/checkpoints" >&2; exit 1; }
    rm -rf "$kept.tmp"
    mkdir -p "$kept.tmp/checkpoints"
    cp "$run/config.json" "$run/metrics.jsonl" "$kept.tmp/"
    [ ! -f "$run/devices.log" ] || cp "$run/devices.log" "$kept.tmp/"  # from device_piece.sh
    cp -r "$run/checkpoints/$step" "$kept.tmp/checkpoints/"
    rm -rf "$kept"
    mv "$kept.tmp" "$kept"
    echo "kept step $step of $run in $kept ($(du -sh "$kept" | cut -f1)); commit it" ;;
  restore)
    [ ! -e "$run" ] || { echo "$run exists: restore only into a missing run directory" >&2; exit 1; }
    [ -d "$kept" ] || { echo "nothing kept for $run in $kept" >&2; exit 1; }
    mkdir -p "$(dirname "$run")"
    cp -r "$kept" "$run"
    echo "restored $run at step $(ls "$run/checkpoints"); resume it with --resume" ;;
  *) echo "unknown action: $action (save or restore)" >&2; exit 2 ;;
esac
