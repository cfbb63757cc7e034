//! tessera-tuner: from a template and a problem to a verified, timed kernel.
//!
//! It owns the measurement path every consumer shares: [`candidate`] (config → source),
//! [`workload`] (a problem's buffers and launch arguments on a device), [`emulation`] (the CPU
//! stand-in the simulated device runs), and [`measure`] (compile, poison, launch, verify against
//! the reference, then time). Sweeps, the cache and reports build on these; [`footprint`]
//! refuses a problem too big for the device or host before anything is allocated.
//!
//! A sweep ([`sweep`]) runs enumerate → validate → prune → compile → verify → time → select
//! → store. The prune stage ([`prune`]) ranks the valid candidates with [`cost_model`] and
//! keeps the best few per problem before anything is compiled; [`audit`] measures, on a
//! cache holding a full unpruned sweep, how often that would have dropped the winner.
//!
//! [`fleet`] runs sweeps on several GPUs (one measuring worker each, one job queue) and
//! beside other tuners on one cache (problems claimed in the cache, GPUs locked).
//!
//! It depends on dsl, codegen, device and library; nothing depends on it but the CLI, the
//! compiler, benches and tests.

pub mod audit;
pub mod candidate;
pub mod cost_model;
pub mod emulation;
pub mod error;
pub mod fleet;
pub mod footprint;
pub mod measure;
pub mod pool;
pub mod prune;
pub mod shapes;
pub mod shortlist;
pub mod supervisor;
pub mod sweep;
pub mod worker;
pub mod workload;

pub use candidate::Candidate;
pub use error::TunerError;
pub use measure::{Measured, Outcome};
pub use workload::{GemmWorkload, OpWorkload, Workload};
