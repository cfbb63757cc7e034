#!/usr/bin/env bash
# Fill buckets' configs, borrowed vs picked (tessera compile --fill-configs borrow|pick): the
# packed plan of benches/bert_bench.py (BERT-base, --batch 8,32 --seq 384 --packed-buckets 8
# --packed-granule 128) compiled both ways, each from empty tuning and module caches (wall
# times), then the ragged batches of bert_bench.py (same seeded lengths) timed on each plan
# with `tessera bench --padding packed --candidates` (the padded and the packed bucket in one
# process). GPU machine, after scripts/gpu-pack.sh; results in $OUT (or ./gpu-out).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}; mkdir -p "$out"
work=${TMPDIR:-/tmp}/tessera-fills
rm -rf "$work"; mkdir -p "$work"
python3 - "$work" <<'PY'
import sys
from transformers import BertConfig, BertModel
BertModel(BertConfig(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072)).save_pretrained(sys.argv[1] + "/bert")
PY
for fills in borrow pick; do
  start=$(date +%s%N)
  XDG_CACHE_HOME="$work/xdg-$fills" .gpu/bin/tessera compile "$work/bert" --gpu h200 --batch 8,32 --seq 384 \
    --packed-buckets 8 --packed-granule 128 --fill-configs $fills --cache "$work/tune-$fills.db" --quiet \
    --out "$work/plan-$fills.tsr" > "$out/fills-compile-$fills.log" 2>&1 || { tail -5 "$out/fills-compile-$fills.log"; exit 1; }
  echo "compile $fills: $(( ($(date +%s%N) - start) / 1000000 )) ms wall; $(tail -1 "$out/fills-compile-$fills.log" | cut -c1-200)"
done
cases="b8u=322,253,91,214,119,277,235,146 b8s=22,4,36,18,7,61,230,50 b32u=154,64,337,348,210,184,270,205,290,72,83,25,366,221,49,382,33,46,365,254,133,35,141,2,331,38,374,104,213,210,92,281 b32s=54,8,69,36,322,2,49,4,9,24,18,5,9,51,33,15,20,26,54,27,39,60,18,44,19,62,49,11,48,47,33,45"
for c in $cases; do
  case=${c%%=*}; lens=${c#*=}
  for fills in borrow pick; do
    XDG_CACHE_HOME="$work/xdg-$fills" .gpu/bin/tessera bench "$work/plan-$fills.tsr" --seq 384 --lens "$lens" --padding packed \
      --candidates --iters 50 --json > "$out/fills-$case-$fills.json" 2> "$out/fills-$case-$fills.err" || cat "$out/fills-$case-$fills.err"
    python3 -c '
import json,sys
d=json.load(open(sys.argv[1])); c={("packed" if x["packed"] else "padded"):x["median_ms"] for x in d["candidates"]}
print(sys.argv[2], sys.argv[3], d["bucket"], "packed %.4f" % d["median_ms"], "one process: padded %.4f packed %.4f -> %.3fx" % (c["padded"], c["packed"], c["padded"]/c["packed"]))' "$out/fills-$case-$fills.json" $case $fills
  done
done
