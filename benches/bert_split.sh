#!/usr/bin/env bash
# Packed batches split over two lanes (tessera bench --split), on the ragged batches of
# benches/bert_bench.py's packed half (same seeded lengths): per case the whole batch packed,
# the two halves replayed concurrently, and the padded plan. Run on the GPU machine after
# scripts/gpu-pack.sh (carry .gpu); output in $OUT (or ./gpu-out).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}; mkdir -p "$out"
work=${TMPDIR:-/tmp}/tessera-split
mkdir -p "$work"
python3 - "$work" <<'PY'
import sys
from transformers import BertConfig, BertModel
BertModel(BertConfig(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072)).save_pretrained(sys.argv[1] + "/bert")
PY
start=$(date +%s)
.gpu/bin/tessera compile "$work/bert" --gpu h200 --batch 8,32 --seq 384 --packed-buckets 8 --packed-granule 128 \
  --quiet --out "$work/plan.tsr" > "$out/split-compile.log" 2>&1 || { cat "$out/split-compile.log"; exit 1; }
echo "compile: $(( $(date +%s) - start )) s"
b32u=154,64,337,348,210,184,270,205,290,72,83,25,366,221,49,382,33,46,365,254,133,35,141,2,331,38,374,104,213,210,92,281
b32s=54,8,69,36,322,2,49,4,9,24,18,5,9,51,33,15,20,26,54,27,39,60,18,44,19,62,49,11,48,47,33,45
b8u=322,253,91,214,119,277,235,146
b8s=22,4,36,18,7,61,230,50
for case in b8u b8s b32u b32s; do
  lens=${!case}
  .gpu/bin/tessera bench "$work/plan.tsr" --seq 384 --lens "$lens" --padding packed --split --candidates --iters 50 --json \
    > "$out/split-$case.json" 2> "$out/split-$case.err" || cat "$out/split-$case.err"
  python3 -c '
import json,sys
d=json.load(open(sys.argv[1])); s=d["split"]; c={("packed" if x["packed"] else "padded"):x["median_ms"] for x in d["candidates"]}
print(sys.argv[2], "whole", round(s["whole_median_ms"],4), "split", round(s["median_ms"],4), s["buckets"], "cand", c,
      "split vs whole %.3f" % (s["whole_median_ms"]/s["median_ms"]), "split vs padded %.3f" % (c.get("padded",0)/s["median_ms"]))' "$out/split-$case.json" $case
done
