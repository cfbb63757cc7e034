#!/usr/bin/env bash
# The test command (README, CI): install the NVRTC wheel and hipcc if missing, then run every
# test that needs no GPU. NVRTC and hipcc checks are mandatory here (TESSERA_REQUIRE_*).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/toolchain.sh
source scripts/env.sh
export TESSERA_REQUIRE_NVRTC=1 TESSERA_REQUIRE_HIPCC=1
start=$(date +%s)
cargo test --workspace --locked "$@"
echo "tests: wall time $(( $(date +%s) - start )) s"
