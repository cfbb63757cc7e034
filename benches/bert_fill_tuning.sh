#!/usr/bin/env bash
# Fill buckets borrowed vs tuned: BERT-base at batch 8 × seq 384 compiled twice on one tuning
# cache, packed anchors every 384 tokens with 128-token fills that borrow their configs
# (--packed-buckets 8, the bench's plan) and every 128 tokens tuned (--packed-buckets 24); the
# ragged batches of benches/bert_bench.py timed on each (tessera bench --candidates: the
# padded and the packed bucket in one process). GPU machine, after scripts/gpu-pack.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}; mkdir -p "$out"
work=${TMPDIR:-/tmp}/tessera-fill
mkdir -p "$work"
python3 - "$work" <<'PY'
import sys
from transformers import BertConfig, BertModel
BertModel(BertConfig(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072)).save_pretrained(sys.argv[1] + "/bert")
PY
for steps in 8 24; do
  start=$(date +%s)
  .gpu/bin/tessera compile "$work/bert" --gpu h200 --batch 8 --seq 384 --packed-buckets $steps --packed-granule 128 \
    --cache "$work/tune.db" --quiet --out "$work/plan$steps.tsr" > "$out/fill-compile-$steps.log" 2>&1 || { tail -5 "$out/fill-compile-$steps.log"; exit 1; }
  echo "compile steps $steps: $(( $(date +%s) - start )) s"
  .gpu/bin/tessera inspect "$work/plan$steps.tsr" > "$out/fill-inspect-$steps.txt" 2>&1
done
b8u=322,253,91,214,119,277,235,146
b8s=22,4,36,18,7,61,230,50
for case in b8u b8s; do
  for steps in 8 24; do
    .gpu/bin/tessera bench "$work/plan$steps.tsr" --seq 384 --lens "${!case}" --padding packed --candidates --iters 50 --json \
      > "$out/fill-$case-$steps.json" 2> "$out/fill-$case-$steps.err" || cat "$out/fill-$case-$steps.err"
    python3 -c '
import json,sys
d=json.load(open(sys.argv[1])); c={("packed" if x["packed"] else "padded"):x["median_ms"] for x in d["candidates"]}
print(sys.argv[2], "steps", sys.argv[3], d["bucket"], "packed", round(d["median_ms"],4), "cand", {k: round(v,4) for k,v in c.items()}, "packed vs padded (one process) %.3f" % (c["padded"]/c["packed"]))
for k in d["by_kernel"]: print("   %.4f %3d %s" % (k["total_ms"], k["launches"], k["kernel"]))' "$out/fill-$case-$steps.json" $case $steps
  done
done
