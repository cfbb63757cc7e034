//! Tuner errors: only infrastructure problems. A candidate that fails to compile, faults or
//! computes a wrong result is an [`crate::Outcome`], not an error.

use tessera_codegen::CodegenError;
use tessera_device::DeviceError;

#[derive(Debug, thiserror::Error)]
pub enum TunerError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Codegen(#[from] CodegenError),
    #[error(transparent)]
    Cache(#[from] tessera_cache::CacheError),
    #[error("{0}")]
    Invalid(String),
}
