//! HIP source compiled for gfx90a (MI250) by hipcc to code objects: every template ×
//! representative config × problem class must compile, not spill, fit LDS and not call out of
//! the kernel; the GEMM and attention disassembly must contain MFMA instructions (the check is
//! `tessera_tests::amd`, shared with `clang_gfx942.rs`). Needs Debian's hipcc; CI sets
//! TESSERA_REQUIRE_HIPCC. Debian's hipcc 5.2 is LLVM 15, which predates gfx942.

use tessera_dsl::Target;
use tessera_tests::amd::{check_representative, AmdCompiler};

#[test]
fn templates_compile_for_gfx90a_with_hipcc() {
    let Some(tools) = AmdCompiler::hipcc_or_skip() else {
        return;
    };
    check_representative(&tools, Target::Gfx90a, 2);
}
