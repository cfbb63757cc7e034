#!/usr/bin/env bash
# EXPERIMENT: tune benches/probe/fill-1664.yaml (layernorm: every candidate; the rest: the 16 best-ranked) twice, L2
# flushed before each timed run (the tuner's default) and warm, and list every candidate of
# each problem fastest first from both caches.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-gpu-out}; mkdir -p "$out"
t=${TMPDIR:-/tmp}
for mode in flushed warm; do
  rm -f "$t/l2-$mode.db"
  warm=$([ $mode = warm ] && echo TESSERA_EXPERIMENT_WARM_L2=1)
  env $warm .gpu/bin/tessera tune --gpu h200 --shapes benches/probe/fill-1664.yaml --templates layernorm \
    --no-prune --cache "$t/l2-$mode.db" --quiet --json > "$out/l2-ln-$mode.json" 2> "$out/l2-$mode.log" || tail -3 "$out/l2-$mode.log"
  env $warm .gpu/bin/tessera tune --gpu h200 --shapes benches/probe/fill-1664.yaml \
    --keep 16 --cache "$t/l2-$mode.db" --quiet --json > "$out/l2-$mode.json" 2>> "$out/l2-$mode.log" || tail -3 "$out/l2-$mode.log"
  for k in 'm=1664 n=2304' 'm=1664 n=768 k=768' 'm=1664 n=3072' 'm=1664 n=768 k=3072' 'rows=1664' 'rows=3072' 'rows=6016' 'attention'; do
    echo "== $mode: $k" >> "$out/l2-why-$mode.txt"
    .gpu/bin/tessera cache why "$k" --cache "$t/l2-$mode.db" >> "$out/l2-why-$mode.txt" 2>&1
  done
  python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
for r in d["results"]: print(sys.argv[2], r["name"], r.get("winner"), round(r.get("median_ms") or 0, 5))' "$out/l2-$mode.json" $mode
done
