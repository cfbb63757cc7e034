//! The graph as text, one node a line, for `--dump-graph` and for reading in tests:
//!
//! ```text
//! %14 layer0.qkv = linear[bias,store=heads2x64](%1 x, @encoder.layer.0.attention.qkv.weight, ...) : [3,2,B,S,64] f16
//! ```

use super::{Dim, Graph, ValueId, ValueKind};
use std::fmt::Write;

impl Graph {
    fn operand(&self, v: ValueId) -> String {
        let value = self.value(v);
        match value.kind {
            ValueKind::Weight(_) => format!("@{}", value.name),
            ValueKind::Input(_) => format!("${}", value.name),
            ValueKind::Activation => format!("%{}", v.0),
        }
    }

    fn shape_text(&self, v: ValueId) -> String {
        let value = self.value(v);
        let dims: Vec<String> = value
            .shape
            .iter()
            .map(|d| match d {
                Dim::Batch => "B".to_string(),
                Dim::Seq => "S".to_string(),
                Dim::Lens => "L".to_string(),
                Dim::Fixed(n) => n.to_string(),
            })
            .collect();
        format!("[{}] {}", dims.join(","), value.elem.name())
    }

    /// One line per node, then the outputs.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let args: Vec<String> = n.inputs.iter().map(|&i| self.operand(i)).collect();
            let attrs = n.op.attributes();
            let attrs = if attrs.is_empty() {
                String::new()
            } else {
                format!("[{attrs}]")
            };
            let _ = writeln!(
                out,
                "%{} {} = {}{}({}) : {}",
                n.output.0,
                n.name,
                n.op.kind(),
                attrs,
                args.join(", "),
                self.shape_text(n.output)
            );
        }
        for &(k, v) in &self.outputs {
            let _ = writeln!(out, "output {k:?} = {}", self.operand(v));
        }
        out
    }
}
