//! HIP source compiled for gfx942 (MI300) by Debian's clang-19 to assembly, with the ROCm
//! device libraries linked so no call is left out of the resource report: every template ×
//! representative config × problem class must compile, not spill, fit LDS and not call out of
//! the kernel; the GEMM and attention assembly must contain MFMA instructions (the check is
//! `tessera_tests::amd`, shared with `hipcc_gfx90a.rs`). No code object is written (Debian's
//! device libraries are LLVM 15's and lack gfx942's ISA file). Needs `clang-19` and
//! `rocm-device-libs`; CI sets TESSERA_REQUIRE_GFX942.

use tessera_dsl::Target;
use tessera_tests::amd::{check_representative, AmdCompiler};

#[test]
fn templates_compile_for_gfx942_with_clang() {
    let Some(tools) = AmdCompiler::clang_or_skip() else {
        return;
    };
    check_representative(&tools, Target::Gfx942, 2);
}
