#!/usr/bin/env bash
# Run on the GPU machine, from the repo root, after scripts/gpu-pack.sh here (carry .gpu).
# `tests`: every gpu_* test; `bench`: the GEMM benchmark beside cuBLAS; `epilogue`: the
# fused GEMM+bias+GELU benchmark beside PyTorch and cuBLASLt; `layernorm`: layernorm beside
# F.layer_norm and a device copy; `attention`: fused attention beside SDPA; `bert`: the whole
# BERT executor (benches/bert_hf.py correctness against Hugging Face, benches/bert_bench.py
# timing beside PyTorch eager / CUDA graph / torch.compile; JSON + one log; not part of `all`,
# it needs its own command's time); `tune`: `tessera tune --gpu h200 --shapes examples/shapes/bert.yaml`
# from empty caches, then warm (wall times, JSON summaries, `cache ls`); `tune-gpus` (a machine
# with two GPUs): the same tune from empty caches on `--gpus 0` and on `--gpus 0,1`, pruned and
# with `--no-prune` (wall times, JSON summaries); `profile`: ncu on one fused-epilogue config
# (PROFILE_CONFIG, default 128x128x64_w4x2_s4_rcr: plain, bias+tanh, bias+erf; counters, stalls and
# SASS hot spots via benches/ncu_summary.py); `all`: everything else.
# Results go to $OUT (or ./gpu-out), benchmark JSON named as benches/results/ keeps it.
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
out=${OUT:-gpu-out}
mkdir -p "$out"
commit=$(cat .gpu/COMMIT)
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/device.txt"
.gpu/bin/tessera devices | tee -a "$out/device.txt"
if [ "$what" = tests ] || [ "$what" = all ]; then
  for t in .gpu/bin/test-*; do
    echo "== $t"
    # gpu_hip_* need an AMD GPU (device/tests/gpu_hip.rs); this machine is NVIDIA
    "$t" gpu_ --skip gpu_hip_ --test-threads=1 --nocapture 2>&1 | tee -a "$out/gpu-tests.log" | grep -E "^test |test result|runs over|panicked|failed" 
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  done
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  day=$(date -u +%Y-%m-%d)
  .gpu/bin/gemm "$out/gemm-tessera.json" 2> "$out/gemm-bench.log" || status=1
  python3 benches/gemm_vendor.py "$out/gemm-vendor.json" 2>> "$out/gemm-bench.log" || status=1
  python3 benches/compare.py "$out/gemm-tessera.json" "$out/gemm-vendor.json" "$out/gemm-$day.json" \
    "$commit" "scripts/gpu-run.sh bench" | tee "$out/gemm-table.txt" || status=1
fi
if [ "$what" = epilogue ] || [ "$what" = all ]; then
  day=$(date -u +%Y-%m-%d)
  .gpu/bin/gemm_epilogue "$out/gemm-epilogue-tessera.json" 2> "$out/gemm-epilogue.log" || status=1
  python3 benches/gemm_epilogue_vendor.py "$out/gemm-epilogue-tessera.json" "$out/gemm-epilogue-$day.json" \
    "$commit" "scripts/gpu-run.sh epilogue" | tee "$out/gemm-epilogue-table.txt" || status=1
fi
if [ "$what" = layernorm ] || [ "$what" = all ]; then
  day=$(date -u +%Y-%m-%d)
  .gpu/bin/layernorm "$out/layernorm-tessera.json" 2> "$out/layernorm.log" || status=1
  python3 benches/layernorm_vendor.py "$out/layernorm-tessera.json" "$out/layernorm-$day.json" \
    "$commit" "scripts/gpu-run.sh layernorm" | tee "$out/layernorm-table.txt" || status=1
fi
if [ "$what" = attention ] || [ "$what" = all ]; then
  day=$(date -u +%Y-%m-%d)
  .gpu/bin/attention "$out/attention-tessera.json" 2> "$out/attention.log" || status=1
  python3 benches/attention_vendor.py "$out/attention-tessera.json" "$out/attention-$day.json" \
    "$commit" "scripts/gpu-run.sh attention" | tee "$out/attention-table.txt" || status=1
fi
if [ "$what" = tune ]; then
  # examples/shapes/bert.yaml from an empty tuning cache and module cache, then again warm
  day=$(date -u +%Y-%m-%d)
  cache=${TMPDIR:-/tmp}/tessera-tune-bert.db
  xdg=${TMPDIR:-/tmp}/tessera-xdg-tune  # the module cache lives under $XDG_CACHE_HOME/tessera
  rm -rf "$cache" "$xdg"
  for run in cold warm; do
    start=$(date +%s%N)
    XDG_CACHE_HOME="$xdg" .gpu/bin/tessera tune --gpu h200 --shapes examples/shapes/bert.yaml --cache "$cache" --quiet --json \
      > "$out/bert-tune-$run.json" 2>> "$out/bert-tune.log" || status=1
    echo "$run: $(( ($(date +%s%N) - start) / 1000000 )) ms wall" | tee -a "$out/bert-tune.log"
  done
  .gpu/bin/tessera cache ls --cache "$cache" > "$out/bert-tune-$day-cache-ls.txt" 2>&1 || status=1
fi
if [ "$what" = tune-gpus ]; then
  for space in pruned full; do
    flags=""; [ "$space" = full ] && flags="--no-prune"
    for gpus in 0 0,1; do
      cache=${TMPDIR:-/tmp}/tessera-tune-gpus.db
      xdg=${TMPDIR:-/tmp}/tessera-xdg-tune-gpus
      rm -rf "$cache" "$cache"-* "$xdg"
      tag="$space-gpus${gpus/,/}"
      start=$(date +%s%N)
      XDG_CACHE_HOME="$xdg" .gpu/bin/tessera tune --gpu h200 --shapes examples/shapes/bert.yaml --gpus "$gpus" \
        $flags --cache "$cache" --quiet --json > "$out/tune-$tag.json" 2>> "$out/tune-gpus.log" || status=1
      echo "$tag: $(( ($(date +%s%N) - start) / 1000000 )) ms wall" | tee -a "$out/tune-gpus.log"
    done
  done
fi
if [ "$what" = profile ]; then
  # ncu (counters and SASS stall sampling) on one config of the fused-epilogue benchmark's shape,
  # plain / bias+tanh GELU / bias+erf GELU, one launch each; PROFILE_CONFIG is a kernel-name part
  day=$(date -u +%Y-%m-%d)
  cfg=${PROFILE_CONFIG:-128x128x64_w4x2_s4_rcr}
  tmp=${TMPDIR:-/tmp}
  specs=""
  for pair in plain:a8 bias_gelu_tanh:bias_gelu_tanh_a8 bias_gelu_erf:bias_gelu_a8; do
    label=${pair%%:*}; v=${pair#*:}
    ncu --clock-control none --set full -k "regex:gemm_f16_f32acc_${cfg}_${v}\$" -s 3 -c 1 -f -o "$tmp/ncu-$v" \
      .gpu/bin/gemm_epilogue "$tmp/only-$v.json" --only "$cfg" > "$out/ncu-$label.log" 2>&1 || status=1
    ncu -i "$tmp/ncu-$v.ncu-rep" --page raw --csv > "$tmp/ncu-$v-raw.csv" 2>> "$out/ncu-$label.log" || status=1
    ncu -i "$tmp/ncu-$v.ncu-rep" --page source --csv --print-source sass > "$tmp/ncu-$v-sass.csv" 2>> "$out/ncu-$label.log" || status=1
    specs="$specs $label=$tmp/ncu-$v-raw.csv,$tmp/ncu-$v-sass.csv"
  done
  python3 benches/ncu_summary.py "$out/gemm-epilogue-ncu-$day.json" "$commit" "scripts/gpu-run.sh profile (PROFILE_CONFIG=$cfg)" $specs \
    | tee "$out/ncu-table.txt" || status=1
fi
if [ "$what" = bert ]; then
  work=${TMPDIR:-/tmp}/tessera-bert
  python3 benches/bert_hf.py --tessera .gpu/bin/tessera --work "$work" --json "$out/bert-hf.json" \
    --commit "$commit" > "$out/bert.log" 2>&1 || status=1
  python3 benches/bert_bench.py --tessera .gpu/bin/tessera --work "$work" --json "$out/bert-bench.json" --tune \
    --packed-json "$out/bert-packed.json" \
    --commit "$commit" >> "$out/bert.log" 2>&1 || status=1
  tail -n 40 "$out/bert.log"
fi
exit $status
