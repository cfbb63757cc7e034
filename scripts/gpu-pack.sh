#!/usr/bin/env bash
# Build what the GPU machine runs (release CLI, bench programs, `gpu_*` test executables),
# strip it into the ignored folder .gpu/, and print the one command that runs it there.
set -euo pipefail
cd "$(dirname "$0")/.."
# the commit the binaries are built from, read before building: the JSON of every run names it
state() {
  local c
  c=$(git rev-parse --short HEAD)
  git diff --quiet HEAD -- . ':!benches/results' || c="$c-dirty"
  echo "$c"
}
commit=$(state)
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
if [ "$(state)" != "$commit" ]; then
  echo "gpu-pack: the tree changed while building ($commit, now $(state)); .gpu removed, pack again" >&2
  rm -rf .gpu
  exit 1
fi
echo "$commit" > .gpu/COMMIT
du -sh .gpu
echo "run on the GPU machine (carry .gpu):  scripts/gpu-run.sh [tests|bench|epilogue|layernorm|attention|bert|all]"
