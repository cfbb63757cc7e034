//! Fused attention: Q·Kᵀ, mask, online softmax and ·V in one kernel (FlashAttention).

use crate::dialect::Dialect;
use crate::kernel::KernelSource;
use crate::CodegenError;
use tessera_dsl::KernelIr;

pub fn emit(ir: &KernelIr, _d: &dyn Dialect) -> Result<KernelSource, CodegenError> {
    Err(CodegenError::Unsupported(format!(
        "op {} has no lowering yet",
        ir.op
    )))
}
