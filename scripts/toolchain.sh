#!/usr/bin/env bash
# Install what the GPU-less checks need on a fresh machine, idempotently:
#   - NVRTC 13.0 from PyPI (the GPU machine's version) into .tools/nvrtc (no CUDA install needed)
#   - Debian's hipcc + HIP headers (and the LLVM 15 tools that come with them) for gfx90a
#   - Debian's clang-19 + the ROCm device libraries for gfx942 (hipcc's LLVM 15 predates it)
# Prints the environment to use; `source scripts/env.sh` applies it.
set -euo pipefail
cd "$(dirname "$0")/.."
NVRTC_VERSION=13.0.88
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ ! -e .tools/nvrtc/nvidia/cu13/lib/libnvrtc.so.13 ]; then
  echo "toolchain: installing nvidia-cuda-nvrtc==$NVRTC_VERSION into .tools/nvrtc" >&2
  python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --target .tools/nvrtc "nvidia-cuda-nvrtc==$NVRTC_VERSION"
fi
if ! command -v hipcc >/dev/null 2>&1 || [ ! -x /usr/lib/llvm-15/bin/clang-offload-bundler ]; then
  echo "toolchain: installing hipcc and libamdhip64-dev from Debian" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq hipcc libamdhip64-dev clang-tools-15 llvm >/dev/null
fi
if ! command -v clang++-19 >/dev/null 2>&1 || [ ! -e /usr/lib/x86_64-linux-gnu/amdgcn/bitcode/ockl.bc ]; then
  echo "toolchain: installing clang-19 and rocm-device-libs from Debian" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang-19 rocm-device-libs >/dev/null
fi
echo "toolchain: nvrtc $(ls .tools/nvrtc/nvidia/cu13/lib/libnvrtc.so.13), $(command -v hipcc), $(command -v clang++-19)" >&2
