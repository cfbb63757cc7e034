#!/usr/bin/env bash
# Build tessera-device's test executables (with the `gpu` feature) and copy them, stripped, into
# .gpu/device/ (git-ignored) with a run.sh, so the GPU machine can run them as is:
#
#   device/scripts/pack-gpu-tests.sh            # here
#   carry [".gpu"], then on the GPU machine: .gpu/device/run.sh
#
# The GPU machine has CUDA 13 (libcuda, libnvrtc) on its loader path and no Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.gpu/device
rm -rf "$out" && mkdir -p "$out"
cargo test -p tessera-device --release --features gpu,nvrtc-tests --no-run --message-format=json 2>/dev/null \
  | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["executable"])
' | while read -r name exe; do
  cp "$exe" "$out/$name"
  strip "$out/$name"
done
cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# Run on the GPU machine from the repository root. The fault test runs in its own process:
# an illegal address poisons the CUDA context of the process that caused it.
set -uo pipefail
dir="$(dirname "$0")"
rc=0
"$dir/tessera_device" --test-threads=1 "$@" || rc=1
"$dir/gpu" --test-threads=1 --nocapture "$@" || rc=1
"$dir/gpu_fault" --nocapture "$@" || rc=1
exit $rc
RUN
chmod +x "$out/run.sh"
ls -la "$out"
du -sh "$out"
