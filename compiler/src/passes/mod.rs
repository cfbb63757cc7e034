//! Graph passes, one per file, run in the order [`PIPELINE`] lists (the one place to read it,
//! like AITemplate's `optimize_graph`). Each takes the graph and the weight store and returns
//! how many rewrites it made; [`optimize`] checks the graph's invariants after each pass and can
//! dump the graph before the first and after every pass.
//!
//! After these graph passes the compiler lowers each shape bucket to kernel problems
//! (`crate::lower`) and runs the one kernel-level pass, [`dedup_problems`], which gives equal
//! problems one kernel (AITemplate's `refine_graph`).
//!
//! Passes know the graph and the weights; they know nothing of buckets, devices or files
//! (dumping is done here, not in a pass).

pub mod absorb_layout;
pub mod dedup_problems;
pub mod drop_noops;
pub mod fuse_epilogue;
pub mod fuse_residual_layernorm;
pub mod merge_qkv;

use crate::graph::{Graph, GraphError};
use crate::weights::{ConcatError, WeightStore};
use std::path::{Path, PathBuf};

/// A pass failed (a bug in the pass: a well-formed graph never makes one fail).
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("after `{pass}`: {source}")]
    Invariant {
        pass: &'static str,
        source: GraphError,
    },
    #[error("pass `{pass}`: {source}")]
    Weights {
        pass: &'static str,
        source: ConcatError,
    },
    #[error("cannot write the graph dump {path}: {source}")]
    Dump {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One graph pass.
pub struct Pass {
    pub name: &'static str,
    pub run: fn(&mut Graph, &mut WeightStore) -> Result<usize, ConcatError>,
}

/// The graph passes, in the order they run.
pub const PIPELINE: [Pass; 5] = [
    // Inference needs no dropout; reshape round trips are identities.
    Pass {
        name: "drop_noops",
        run: drop_noops::run,
    },
    // Q, K, V projections of one input become one GEMM (weights concatenated here).
    Pass {
        name: "merge_qkv",
        run: merge_qkv::run,
    },
    // Before epilogue fusion, so the residual add goes to the layernorm (which reads it anyway).
    Pass {
        name: "fuse_residual_layernorm",
        run: fuse_residual_layernorm::run,
    },
    // Bias, activation (and a residual no layernorm took) into the GEMM epilogue.
    Pass {
        name: "fuse_epilogue",
        run: fuse_epilogue::run,
    },
    // Head split into the GEMM's head store; head merge into attention's token-major store.
    Pass {
        name: "absorb_layout",
        run: absorb_layout::run,
    },
];

/// What one pass did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PassReport {
    pub pass: String,
    pub rewrites: usize,
    pub nodes_after: usize,
}

/// Run [`PIPELINE`]; with `dump`, write `00-import.txt` and `NN-<pass>.txt` there.
pub fn optimize(
    graph: &mut Graph,
    weights: &mut WeightStore,
    dump: Option<&Path>,
) -> Result<Vec<PassReport>, PassError> {
    let write = |i: usize, name: &str, g: &Graph| -> Result<(), PassError> {
        let Some(dir) = dump else { return Ok(()) };
        let path = dir.join(format!("{i:02}-{name}.txt"));
        std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(&path, g.dump()))
            .map_err(|source| PassError::Dump { path, source })
    };
    graph.check().map_err(|source| PassError::Invariant {
        pass: "import",
        source,
    })?;
    write(0, "import", graph)?;
    let mut reports = Vec::new();
    for (i, pass) in PIPELINE.iter().enumerate() {
        let rewrites = (pass.run)(graph, weights).map_err(|source| PassError::Weights {
            pass: pass.name,
            source,
        })?;
        graph.check().map_err(|source| PassError::Invariant {
            pass: pass.name,
            source,
        })?;
        write(i + 1, pass.name, graph)?;
        reports.push(PassReport {
            pass: pass.name.to_string(),
            rewrites,
            nodes_after: graph.nodes.len(),
        });
    }
    Ok(reports)
}
