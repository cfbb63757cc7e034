//! tessera-compiler: from a model directory to a compiled plan of tuned kernels.
//!
//! It owns, in pipeline order ([`compilation`] sequences them):
//! * [`import`]: Hugging Face BERT (`config.json` + `model.safetensors`, our own reader) to a
//!   [`graph::Graph`] and a [`weights::WeightStore`] converted once to f16 or bf16;
//! * [`graph`]: the op-level IR (an arena of values and nodes, symbolic batch and seq);
//! * [`passes`]: one pass per file, run in the order `passes::PIPELINE` shows, each dumpable;
//! * [`bucket`]: the (batch, seq) buckets and the run-time choice among them;
//! * [`lower`]: a bucket's launch list of kernel problems (`tessera_dsl::Problem`) and glue
//!   steps with operand views;
//! * [`tuning`]: each distinct problem resolved through the cache, tuning misses on the spot
//!   (`tessera_tuner`), or the cost model's pick, or a strict failure;
//! * [`memory`]: best-fit placement of lifetimes in one arena shared by all buckets, and
//!   [`binding`]: liveness over a launch list, weight layout, argument views;
//! * [`plan`]: the plan directory (JSON + weights, no code), written atomically, loaded with
//!   schema and device checks;
//! * [`fixture`]: a tiny random BERT checkpoint writer, for tests and first tries;
//! * [`executor`]: a plan loaded on a device (kernels rebuilt and compiled, weights uploaded
//!   once, one arena, a stream, one CUDA graph per bucket), run and timed.
//!
//! Not here yet: the pooler (recognised at import, not compiled: a plan returns the last
//! hidden state; `Glue::Pooler` is how a plan would carry it, and the executor refuses glue by
//! node name), packed execution.
//!
//! It depends on dsl, library, tuner, device and cache; it must not depend on codegen directly
//! or on the CLI, and nothing but the CLI and tests depend on it.

pub mod binding;
pub mod bucket;
pub mod compilation;
pub mod executor;
pub mod fixture;
pub mod graph;
pub mod import;
pub mod lower;
pub mod memory;
pub mod passes;
pub mod plan;
pub mod tuning;
pub mod weights;

pub use compilation::{compile, optimize, CompileError, Compiled, Options};
pub use executor::{ExecError, ExecOptions, Executor, Inputs, Output, Padding};
pub use plan::Plan;
pub use tuning::{Lookup, Mode};
