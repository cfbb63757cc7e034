#!/usr/bin/env bash
# Build what the GPU machine runs (release CLI, bench programs, `gpu_*` test executables),
# strip it into the ignored folder .gpu/, and print the one command that runs it there.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu && mkdir -p .gpu/bin
cargo build --release --locked -p tessera -p tessera-benches
cp target/release/tessera target/release/gemm target/release/gemm_epilogue \
  target/release/layernorm target/release/attention .gpu/bin/
cargo test --release --locked --no-run --features gpu -p tessera-tuner -p tessera-device -p tessera-compiler \
  --message-format=json 2>/dev/null \
  | python3 -c '
import json, sys, shutil, os
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        name = m["target"]["name"]
        crate = m["package_id"].split("#")[0].rsplit("/", 1)[-1]
        dst = f".gpu/bin/test-{crate}-{name}"
        shutil.copy(m["executable"], dst)
        print(dst)
'
strip .gpu/bin/*
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- . ':!benches/results' || commit="$commit-dirty"
echo "$commit" > .gpu/COMMIT
du -sh .gpu
echo "run on the GPU machine (carry .gpu):  scripts/gpu-run.sh [tests|bench|epilogue|layernorm|attention|bert|all]"
