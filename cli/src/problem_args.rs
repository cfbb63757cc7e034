//! Command-line flags that describe one problem: GEMM flags (shape, dtypes, layout, epilogue,
//! store), or `--problem` with one shapes-file entry for any op.

use crate::usage::usage;
use tessera_dsl::{DType, EpilogueOp, GemmProblem, Layout, Problem, Store};

#[derive(clap::Args, Debug, Clone)]
pub struct ProblemArgs {
    /// Any op's problem as one shapes-file entry (YAML), e.g.
    /// `{op: layernorm, rows: 12288, cols: 768, fused: [residual]}` or
    /// `{op: attention, batch: 8, heads: 16, seq: 2048, head_dim: 64, mask: causal}`;
    /// replaces the GEMM flags.
    #[arg(long)]
    pub problem: Option<String>,
    /// Problem shape as MxNxK (GEMM).
    #[arg(long, default_value = "4096x4096x4096")]
    pub shape: String,
    /// Independent products in one launch.
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    /// Input dtype: f16 or bf16.
    #[arg(long, default_value = "f16")]
    pub dtype: String,
    /// Output dtype (default: the input dtype): f16, bf16 or f32.
    #[arg(long)]
    pub out_dtype: Option<String>,
    /// Layouts of A, B, D: rcr (B column-major, as in `x @ W.T`) or rrr.
    #[arg(long, default_value = "rcr")]
    pub layout: String,
    /// Epilogue ops in order, comma separated: beta_c, bias, relu, gelu, gelu_tanh, silu, residual.
    #[arg(long, default_value = "")]
    pub epilogue: String,
    /// Output store: `rows`, or `heads=H,head_dim=D,seq=S` to write D as [part][batch][head][seq][d]
    /// (a QKV projection writing Q, K and V per head).
    #[arg(long, default_value = "rows")]
    pub store: String,
}

fn parse_store(text: &str) -> anyhow::Result<Store> {
    if text == "rows" {
        return Ok(Store::Rows);
    }
    let bad = || {
        usage(format!(
            "malformed --store `{text}`: use rows or heads=H,head_dim=D,seq=S"
        ))
    };
    let mut v = [None::<u64>; 3];
    for part in text.split(',') {
        let (k, x) = part.split_once('=').ok_or_else(bad)?;
        let x: u64 = x.trim().parse().map_err(|_| bad())?;
        let slot = ["heads", "head_dim", "seq"]
            .iter()
            .position(|n| *n == k.trim())
            .ok_or_else(bad)?;
        v[slot] = Some(x);
    }
    match v {
        [Some(heads), Some(head_dim), Some(seq)] => Ok(Store::Heads {
            heads,
            head_dim,
            seq,
        }),
        _ => Err(bad()),
    }
}

impl ProblemArgs {
    pub fn problem(&self) -> anyhow::Result<Problem> {
        if let Some(entry) = &self.problem {
            let text = format!("problems:\n  - {entry}\n");
            let mut parsed = tessera_tuner::shapes::parse_str(&text, "--problem").map_err(usage)?;
            return match (parsed.pop(), parsed.is_empty()) {
                (Some(p), true) => Ok(p.problem),
                _ => Err(usage(format!(
                    "--problem `{entry}` describes several problems; give one value per size"
                ))),
            };
        }
        let dims: Vec<&str> = self.shape.split('x').collect();
        let parsed: Result<Vec<u64>, _> = dims.iter().map(|d| d.trim().parse::<u64>()).collect();
        let [m, n, k] = match parsed.as_deref() {
            Ok([m, n, k]) => [*m, *n, *k],
            _ => {
                return Err(usage(format!(
                    "malformed --shape `{}`: expected MxNxK, e.g. 384x768x3072",
                    self.shape
                )))
            }
        };
        let input: DType = self.dtype.parse().map_err(usage)?;
        let output: DType = match &self.out_dtype {
            Some(s) => s.parse().map_err(usage)?,
            None => input,
        };
        let layout_b = match self.layout.as_str() {
            "rcr" => Layout::Col,
            "rrr" => Layout::Row,
            other => return Err(usage(format!("unknown --layout `{other}`; use rcr or rrr"))),
        };
        let epilogue = self
            .epilogue
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<EpilogueOp>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(usage)?;
        let store = parse_store(&self.store)?;
        let g = GemmProblem {
            m,
            n,
            k,
            batch: self.batch,
            input,
            output,
            layout_b,
            epilogue,
            store,
        };
        g.check().map_err(usage)?;
        Ok(Problem::Gemm(g))
    }
}
