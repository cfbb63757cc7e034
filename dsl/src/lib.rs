//! tessera-dsl: the vocabulary every other Tessera crate speaks.
//!
//! It owns the tile-level kernel IR ([`ir`]), element types ([`dtype`]) and memory layouts
//! ([`layout`]), parameter spaces and configs ([`space`]), problems ([`problem`]), epilogue
//! operations ([`epilogue`]), device capabilities and targets ([`caps`]) and the [`Template`]
//! trait with its self-registering registry ([`template`]). It re-exports the
//! `#[gpu_template]` macro.
//!
//! It must not depend on a GPU, on I/O, or on any other Tessera crate but `tessera-macros`.

pub mod builder;
pub mod caps;
pub mod dtype;
pub mod epilogue;
pub mod ir;
pub mod layout;
pub mod pipeline;
pub mod problem;
pub mod space;
pub mod template;
pub mod tensor_map;

pub use builder::KernelBuilder;
pub use caps::{DeviceCaps, GpuModel, MmaAtom, Target, Vendor};
pub use dtype::DType;
pub use epilogue::EpilogueOp;
pub use ir::KernelIr;
pub use layout::Layout;
pub use pipeline::attention::{
    AttentionPipeline, AttentionSchedule, AttentionTile, AttentionWarpgroupPlan,
};
pub use pipeline::{
    register_split, ConsumerSchedule, EpilogueMode, GemmPipeline, GemmTile, WarpgroupPlan,
    TMA_STORE_ALIGN, TMA_STORE_PANEL,
};
pub use problem::{
    head_dims_text, AttentionLayout, AttentionProblem, EmbeddingProblem, GemmProblem,
    LayernormProblem, Mask, OpKind, Packing, Problem, SoftmaxProblem, Store, HEAD_DIMS,
};
pub use space::{Config, ParamSpace, Variant};
pub use template::{
    find, registry, BuildError, DTypeRules, Reject, RejectKind, Template, TemplateEntry,
};
pub use tensor_map::{Extent, Swizzle, TensorMapArg, TensorMapError, TensorMapGeometry};
pub use tessera_macros::gpu_template;
/// The op table (operands, scalars, extents per op), shared with the macro.
pub use tessera_ops as ops;

/// Items the `#[gpu_template]` expansion refers to. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use inventory;
}
