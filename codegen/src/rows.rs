//! Row-wise kernels (layernorm, softmax): rows held in registers, reductions across the
//! threads of a row, elementwise row expressions, a predicated vector store.

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
