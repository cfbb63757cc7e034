# Source me: the environment the tests and the CLI use to find NVRTC and the HIP tools.
_tessera_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export LD_LIBRARY_PATH="$_tessera_root/.tools/nvrtc/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$PATH:/usr/lib/llvm-15/bin"
unset _tessera_root
