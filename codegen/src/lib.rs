//! tessera-codegen: `KernelIr` → GPU source text.
//!
//! It owns the vendor-neutral kernel emitter ([`kernel`]), epilogue lowering ([`epilogue`]) and
//! the [`Dialect`] trait with its two implementations, [`cuda::Cuda`] (sm_80 / sm_90a) and
//! [`hip::Hip`] (gfx90a / gfx942). Vendor differences live only behind `Dialect`.
//! Output is deterministic: the same IR and target always give the same bytes.
//!
//! It depends on `tessera-dsl` only: no GPU, no compiler, no I/O.

pub mod attention;
pub mod cuda;
pub mod dialect;
pub mod epilogue;
pub mod hip;
pub mod hopper;
pub mod kernel;
pub mod rows;
pub mod source;

pub use dialect::Dialect;
pub use kernel::{KernelSource, TileRows, TileSchedule};

use tessera_dsl::{KernelIr, Target, Vendor};

/// Why IR could not be turned into source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodegenError {
    #[error("cannot generate code: {0}")]
    Unsupported(String),
    #[error("malformed kernel IR: {0}")]
    Malformed(String),
}

/// The dialect for a target.
pub fn dialect_for(target: Target) -> Box<dyn Dialect> {
    match target.vendor() {
        Vendor::Nvidia => Box::new(cuda::Cuda { target }),
        Vendor::Amd => Box::new(hip::Hip { target }),
    }
}

/// Generate the source of `ir` for `target`.
pub fn emit(ir: &KernelIr, target: Target) -> Result<KernelSource, CodegenError> {
    kernel::emit(ir, dialect_for(target).as_ref())
}

/// Build `config` with its template and generate its source for `target`.
pub fn generate(
    template: &dyn tessera_dsl::Template,
    config: &tessera_dsl::Config,
    target: Target,
) -> Result<KernelSource, CodegenError> {
    let ir = template
        .build(config)
        .map_err(|e| CodegenError::Malformed(format!("template `{}`: {e}", template.name())))?;
    emit(&ir, target)
}
