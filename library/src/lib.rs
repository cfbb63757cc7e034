//! tessera-library: the kernel templates and everything needed to check them.
//!
//! It owns the templates ([`gemm`], [`layernorm`], [`softmax`], [`attention`]), host-side
//! tensors with f16/bf16 rounding ([`host`]), the operands of the row-wise and attention
//! problems in launch-ABI order ([`operands`]), the CPU references in f64 ([`reference`]) and
//! the correctness gate that compares a kernel's output with a reference ([`verify`]). It
//! depends on `tessera-dsl` only: no GPU, no codegen.

pub mod attention;
pub mod embedding;
pub mod fixtures;
pub mod gemm;
pub mod host;
pub mod layernorm;
pub mod operands;
pub mod reference;
pub mod softmax;
mod tma_values;
pub mod verify;

/// Every template this crate defines (they also register themselves with
/// `tessera_dsl::registry()`; this keeps the crate linked where only the registry is used).
pub fn templates() -> Vec<&'static dyn tessera_dsl::Template> {
    let _keep = (
        &gemm::gemm::TEMPLATE,
        &layernorm::layernorm::TEMPLATE,
        &softmax::softmax::TEMPLATE,
        &attention::attention::TEMPLATE,
        &embedding::embedding::TEMPLATE,
    );
    tessera_dsl::registry()
}
