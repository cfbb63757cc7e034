//! The ops a template can implement: the op table lives in `tessera-ops`, shared with the DSL
//! (which derives each op's launch ABI and global tensors from the same rows), so an op's
//! operands, optional operands, scalars and extents are stated once.

pub use tessera_ops::*;
