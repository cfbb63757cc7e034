//! The kernel-level pass, run after lowering: equal problems (across layers and buckets) get
//! one kernel, so each is tuned and compiled once (AITemplate's `refine_graph`: "reduced
//! unique ops from N to M").

use crate::lower::{Step, StepKind};
use crate::plan::Callee;
use tessera_dsl::Problem;

/// The distinct problems of all launch lists, in first-seen order, and for every step what it
/// calls: the index of its problem, or its glue.
pub fn run(launch_lists: &[Vec<Step>]) -> (Vec<Problem>, Vec<Vec<Callee>>) {
    let mut unique: Vec<Problem> = Vec::new();
    let mut index = std::collections::HashMap::new();
    let refs = launch_lists
        .iter()
        .map(|steps| {
            steps
                .iter()
                .map(|s| match &s.kind {
                    StepKind::Kernel(p) => Callee::Kernel {
                        kernel: *index.entry(p.clone()).or_insert_with(|| {
                            unique.push(p.clone());
                            unique.len() - 1
                        }),
                    },
                    StepKind::Glue(glue) => Callee::Glue { glue: *glue },
                })
                .collect()
        })
        .collect();
    (unique, refs)
}
