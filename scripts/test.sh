#!/usr/bin/env bash
# The test command (README, CI): install the NVRTC wheel, hipcc and clang-19 if missing, then run
# every test that needs no GPU. NVRTC, hipcc (gfx90a) and clang-19 (gfx942) checks are mandatory
# here (TESSERA_REQUIRE_*).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/toolchain.sh
source scripts/env.sh
export TESSERA_REQUIRE_NVRTC=1 TESSERA_REQUIRE_HIPCC=1 TESSERA_REQUIRE_GFX942=1
start=$(date +%s)
cargo test --workspace --locked "$@"
echo "tests: wall time $(( $(date +%s) - start )) s"
