//! CPU references in f64: the semantics every kernel is checked against.
//!
//! Inputs are the exact values the device sees (already rounded to their dtypes); references
//! compute in f64 and return unrounded values.

mod attention;
mod embedding;
mod gemm;
mod rows;

pub use attention::{attention_row, visible_keys};
pub use embedding::embedding_row;
pub use gemm::{gemm, gemm_element, GemmInputs, GemmStrides};
pub use rows::{layernorm_row, softmax_row};
