//! Shapes files: the problems `tessera tune --shapes FILE.yaml` tunes, written as YAML.
//!
//! # Format
//!
//! ```yaml
//! # BERT-base GEMMs
//! defaults: { dtype: f16, out_dtype: f16, layout: rcr }
//! problems:
//!   - name: qkv              # optional
//!     op: gemm
//!     m: [128, 384, 1024]    # a size, or a list of sizes
//!     n: 2304
//!     k: 768
//!     batch: 1               # optional, default 1
//!     epilogue: [bias]       # optional, default none
//! ```
//!
//! The top level is a mapping with two keys:
//!
//! - `problems` (required): a non-empty list of problem entries.
//! - `defaults` (optional): values for any of `op`, `batch`, `dtype`, `out_dtype`, `layout`,
//!   `epilogue`, `fused` and `mask` that an entry leaves out. An entry's own value replaces the default (an entry's
//!   `epilogue: []` means no epilogue, whatever the default).
//!
//! A problem entry has these keys:
//!
//! | key | value | when absent |
//! |---|---|---|
//! | `name` | any string | the problem's key, e.g. `gemm m=384 n=2304 k=768 f16->f16 rcr` |
//! | `op` | `gemm`, `layernorm`, `softmax`, `attention` or `embedding` | from `defaults`, else an error |
//! | `m`, `n`, `k` | gemm: a positive integer, or a list of them | an error |
//! | `rows`, `cols` | layernorm and softmax: a positive integer, or a list of them | an error |
//! | `mask_period` | softmax: rows sharing one row of the additive mask | no mask |
//! | `heads`, `head_dim`, and `seq` (or `seq_q` and `seq_kv`) | attention sizes (a packed entry takes `lens` instead of `seq`) | an error |
//! | `kv_heads` | attention: K/V heads, a divisor of `heads` (grouped-query attention; 1 is multi-query) | `heads` |
//! | `packed` | attention: `true` for a packed (padding-free) batch: sequences back to back, token-major, found through `cu_seqlens` offsets; needs `lens` | `false` |
//! | `lens` | packed attention: the sequence lengths, a list (`[1, 77, 100]`, the batch is its length) or a distribution `{dist: uniform, max: 384, min: 1, seed: 0}` drawing `batch` lengths uniformly in `min..=max` (`min` 1 and `seed` 0 when absent) | an error when `packed` |
//! | `lens_kv` | packed attention: key lengths, as `lens` (cross-attention) | `lens` (self-attention) |
//! | `fused` | layernorm: operands added before the norm, `[residual, bias]` | none |
//! | `mask` | attention: `none`, `causal` or `padding` | `none` |
//! | `seq`, `hidden`, and optionally `vocab`, `positions`, `types` | embedding: rows of `hidden`, position ids (the `position_ids` operand) in `0..seq`, table sizes | `vocab` 30522, `positions` 512, `types` 2 (BERT's) |
//! | `tokens` | embedding: the token rows (a packed bucket's capacity, not necessarily a multiple of `seq`); not together with the entry's own `batch` (a `batch` in `defaults` does not apply) | `batch`·`seq` (`batch` sequences of `seq` tokens) |
//! | `batch` | gemm, attention and embedding: a positive integer, or a list of them | from `defaults`, else 1 |
//! | `dtype` | dtype of A and B: `f16` or `bf16` (`f32` is known but not an MMA input) | from `defaults`, else `f16` |
//! | `out_dtype` | dtype of D (and of C, bias, residual): `f16`, `bf16` or `f32` | from `defaults`, else `dtype` |
//! | `layout` | gemm: `rcr` (B is column-major, i.e. the weight `[N, K]` of `x @ W.T`) or `rrr` (B row-major `[K, N]`); A and D are always row-major. Attention: O's layout, `bhsd` (`[batch, heads, seq_q, head_dim]`, as Q) or `bshd` (token-major `[batch, seq_q, heads, head_dim]`). A gemm code is ignored by other ops (so `defaults` may hold one); an attention code on another op is an error | from `defaults`, else `rcr` (gemm), `bhsd` (attention) |
//! | `epilogue` | a list of epilogue ops in order, named as in [`EpilogueOp::name`]: `beta_c`, `bias`, `relu`, `gelu`, `gelu_tanh`, `silu`, `residual` (a single name is accepted too) | from `defaults`, else none |
//!
//! A key that does not apply to the entry's op is an error naming the op's keys. A size given
//! as a list expands to one problem per value; several lists expand to their cartesian
//! product, in the order of the table (`m` slowest, then `n`, `k`, ..., `batch` last). An expanded problem of a
//! named entry is named `NAME[m=128]` (only the listed dimensions appear, `NAME[m=128,k=64]`).
//!
//! # Errors
//!
//! Nothing panics on bad input; every failure is a [`ShapesError`]:
//!
//! - malformed YAML: `FILE:LINE:COLUMN: message`;
//! - anything else names the file and the entry (`problems[INDEX]`, counting from 0, and its
//!   name), then the issue ([`ShapeIssue`]): an unknown key, op, dtype, layout or epilogue op
//!   (with the valid choices), a size that is not a positive integer (through
//!   [`GemmProblem::check`], naming the op and the dimension), a repeated epilogue op, or a
//!   problem or name that an earlier entry already has.
//!
//! # Writing
//!
//! [`to_yaml`] writes problems back as a shapes file (one flow mapping per problem, only the
//! keys that differ from the defaults), so that `tessera inspect PLAN --shapes` can hand a
//! compiled plan's problems to `tessera tune` ahead of time: parsing its text gives the same
//! names and problems.

use serde_yaml_ng::{Mapping, Value};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use tessera_dsl::dtype::UnknownDType;
use tessera_dsl::epilogue::UnknownEpilogueOp;
use tessera_dsl::problem::ProblemError;
use tessera_dsl::{
    AttentionLayout, AttentionProblem, DType, EmbeddingProblem, EpilogueOp, GemmProblem,
    LayernormProblem, Layout, Mask, OpKind, Packing, Problem, SoftmaxProblem, Store,
};

/// One problem of a shapes file with the name it is reported under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedProblem {
    pub name: String,
    pub problem: Problem,
}

/// Why a shapes file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ShapesError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid YAML (`line` and `column` count from 1).
    #[error("{file}:{line}:{column}: {message}")]
    Yaml {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// The text is not valid YAML, and the parser gave no position.
    #[error("{file}: {message}")]
    YamlUnlocated { file: String, message: String },
    /// Valid YAML that does not describe problems; `at` is `problems[INDEX] (NAME)`,
    /// `defaults` or `top level`.
    #[error("{file}: {at}: {issue}")]
    Invalid {
        file: String,
        at: String,
        #[source]
        issue: ShapeIssue,
    },
}

/// What is wrong with one part of a shapes file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeIssue {
    #[error("missing key `{key}`")]
    MissingKey { key: &'static str },
    #[error("unknown key `{key}`; valid keys: {}", .valid.join(", "))]
    UnknownKey {
        key: String,
        valid: &'static [&'static str],
    },
    #[error("`{key}` must be {expected} (got {got})")]
    WrongType {
        key: &'static str,
        expected: &'static str,
        got: String,
    },
    #[error("`{key}` is an empty list")]
    EmptyList { key: &'static str },
    #[error("`problems` is empty")]
    NoProblems,
    #[error("unknown op `{got}`; valid ops: {}", names(SHAPE_OPS))]
    UnknownOp { got: String },
    #[error(
        "op `{op}` has no shape-file form yet; valid ops: {}",
        names(SHAPE_OPS)
    )]
    UnsupportedOp { op: OpKind },
    #[error(transparent)]
    UnknownDType(#[from] UnknownDType),
    #[error(
        "unknown layout `{got}`; use rcr (B column-major [N, K]) or rrr (B row-major [K, N]) \
         for gemm, bhsd or bshd (O token-major) for attention"
    )]
    UnknownLayout { got: String },
    #[error("layout `{layout}` is attention's output layout; it does not apply to op {op}")]
    AttentionLayoutNotForOp { layout: AttentionLayout, op: OpKind },
    #[error(transparent)]
    UnknownEpilogue(#[from] UnknownEpilogueOp),
    #[error(transparent)]
    Problem(#[from] ProblemError),
    #[error("duplicate problem: {key} (already {first})")]
    Duplicate { key: String, first: String },
    #[error("duplicate name `{name}` (already used by {first})")]
    DuplicateName { name: String, first: String },
    #[error("`{key}` does not apply to op {op}; its keys are: {}", .valid.join(", "))]
    NotForOp {
        key: &'static str,
        op: OpKind,
        valid: Vec<&'static str>,
    },
    #[error("unknown fused operand `{got}`; layernorm fuses: residual, bias")]
    UnknownFused { got: String },
    #[error("unknown mask `{got}`; attention masks: none, causal, padding")]
    UnknownMask { got: String },
    #[error("packed attention: {what}")]
    Packed { what: String },
    #[error(
        "`tokens` and `batch` together: `tokens` gives the token rows itself (in place of \
         batch·seq); drop one"
    )]
    TokensAndBatch,
}

const TOP_KEYS: &[&str] = &["defaults", "problems"];
const DEFAULT_KEYS: &[&str] = &[
    "op",
    "batch",
    "dtype",
    "out_dtype",
    "layout",
    "epilogue",
    "fused",
    "mask",
];
/// Size keys, in expansion order (slowest first); `batch` comes last.
const SIZE_KEYS: &[&str] = &[
    "m",
    "n",
    "k",
    "rows",
    "cols",
    "heads",
    "kv_heads",
    "seq",
    "seq_q",
    "seq_kv",
    "head_dim",
    "mask_period",
    "hidden",
    "vocab",
    "positions",
    "types",
    "tokens",
];
const PROBLEM_KEYS: &[&str] = &[
    "name",
    "op",
    "m",
    "n",
    "k",
    "rows",
    "cols",
    "heads",
    "kv_heads",
    "seq",
    "seq_q",
    "seq_kv",
    "head_dim",
    "mask_period",
    "hidden",
    "vocab",
    "positions",
    "types",
    "tokens",
    "packed",
    "lens",
    "lens_kv",
    "fused",
    "mask",
    "batch",
    "dtype",
    "out_dtype",
    "layout",
    "epilogue",
    "store",
];
/// Ops a shapes file can describe (those with a [`Problem`] variant).
const SHAPE_OPS: &[OpKind] = &[
    OpKind::Gemm,
    OpKind::Layernorm,
    OpKind::Softmax,
    OpKind::Attention,
    OpKind::Embedding,
];
const ALL_OPS: [OpKind; 5] = [
    OpKind::Gemm,
    OpKind::Layernorm,
    OpKind::Softmax,
    OpKind::Attention,
    OpKind::Embedding,
];

fn names(ops: &[OpKind]) -> String {
    ops.iter().map(|o| o.name()).collect::<Vec<_>>().join(", ")
}

/// Read and parse the shapes file at `path`; errors name it as given.
pub fn parse_file(path: impl AsRef<Path>) -> Result<Vec<NamedProblem>, ShapesError> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ShapesError::Io {
        file: file.clone(),
        source,
    })?;
    parse_str(&text, &file)
}

/// Parse shapes-file text; `origin` names it in errors (a path, or e.g. `<test>`).
pub fn parse_str(text: &str, origin: &str) -> Result<Vec<NamedProblem>, ShapesError> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| yaml_error(&e, origin))?;
    let invalid = |at: &str, issue: ShapeIssue| ShapesError::Invalid {
        file: origin.to_string(),
        at: at.to_string(),
        issue,
    };

    let top = match &doc {
        Value::Mapping(map) => map,
        Value::Null => {
            return Err(invalid(
                "top level",
                ShapeIssue::MissingKey { key: "problems" },
            ))
        }
        other => {
            return Err(invalid(
                "top level",
                wrong("(top level)", "a mapping with `problems`", other),
            ))
        }
    };
    let top = fields(top, TOP_KEYS).map_err(|i| invalid("top level", i))?;

    let defaults = match top.get("defaults") {
        None | Some(Value::Null) => Settings::default(),
        Some(Value::Mapping(map)) => Settings::parse(map, DEFAULT_KEYS)
            .map(|(s, _)| s)
            .map_err(|i| invalid("defaults", i))?,
        Some(other) => return Err(invalid("defaults", wrong("defaults", "a mapping", other))),
    };

    let entries = match top.get("problems") {
        None => {
            return Err(invalid(
                "top level",
                ShapeIssue::MissingKey { key: "problems" },
            ))
        }
        Some(Value::Sequence(seq)) if seq.is_empty() => {
            return Err(invalid("top level", ShapeIssue::NoProblems))
        }
        Some(Value::Sequence(seq)) => seq,
        Some(other) => {
            return Err(invalid(
                "top level",
                wrong("problems", "a list of problems", other),
            ))
        }
    };

    let mut out = Vec::new();
    let mut seen: HashMap<Problem, String> = HashMap::new();
    let mut seen_names: HashMap<String, String> = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let plain_at = format!("problems[{index}]");
        let map = match entry {
            Value::Mapping(map) => map,
            other => return Err(invalid(&plain_at, wrong("problem", "a mapping", other))),
        };
        // The name first, so every later error can carry it.
        let name = match map.get("name") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => return Err(invalid(&plain_at, wrong("name", "a string", other))),
        };
        let entry_at = match &name {
            Some(n) => format!("{plain_at} ({n})"),
            None => plain_at.clone(),
        };
        let (own, sizes) = Settings::parse(map, PROBLEM_KEYS).map_err(|i| invalid(&entry_at, i))?;
        let settings = own.over(&defaults);
        for (suffix, problem) in expand(&settings, &sizes).map_err(|i| invalid(&entry_at, i))? {
            let at = match &name {
                Some(n) => format!("{plain_at} ({n}{suffix})"),
                None if suffix.is_empty() => plain_at.clone(),
                None => format!("{plain_at} {suffix}"),
            };
            let problem = problem.map_err(|i| invalid(&at, i))?;
            problem
                .check()
                .map_err(|e| invalid(&at, ShapeIssue::Problem(e)))?;
            let full_name = match &name {
                Some(n) => format!("{n}{suffix}"),
                None => problem.key(),
            };
            if let Some(first) = seen.get(&problem) {
                return Err(invalid(
                    &at,
                    ShapeIssue::Duplicate {
                        key: problem.key(),
                        first: first.clone(),
                    },
                ));
            }
            if let Some(first) = seen_names.get(&full_name) {
                return Err(invalid(
                    &at,
                    ShapeIssue::DuplicateName {
                        name: full_name,
                        first: first.clone(),
                    },
                ));
            }
            let label = match &name {
                Some(_) => at.clone(),
                None => format!("{at} ({full_name})"),
            };
            seen.insert(problem.clone(), label.clone());
            seen_names.insert(full_name.clone(), label);
            out.push(NamedProblem {
                name: full_name,
                problem,
            });
        }
    }
    Ok(out)
}

/// `FILE:LINE:COLUMN: message`, without the parser's own ` at line L column C`.
fn yaml_error(e: &serde_yaml_ng::Error, origin: &str) -> ShapesError {
    let text = e.to_string();
    match e.location() {
        Some(loc) => {
            let mark = format!(" at line {} column {}", loc.line(), loc.column());
            ShapesError::Yaml {
                file: origin.to_string(),
                line: loc.line(),
                column: loc.column(),
                message: text.replacen(&mark, "", 1),
            }
        }
        None => ShapesError::YamlUnlocated {
            file: origin.to_string(),
            message: text,
        },
    }
}

/// A short description of a YAML value for error messages.
struct Got<'a>(&'a Value);

impl fmt::Display for Got<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::Null => f.write_str("nothing"),
            Value::Bool(b) => write!(f, "`{b}`"),
            Value::Number(n) => write!(f, "`{n}`"),
            Value::String(s) => write!(f, "`{s}`"),
            Value::Sequence(_) => f.write_str("a list"),
            Value::Mapping(_) => f.write_str("a mapping"),
            Value::Tagged(t) => write!(f, "a value tagged `{}`", t.tag),
        }
    }
}

fn wrong(key: &'static str, expected: &'static str, got: &Value) -> ShapeIssue {
    ShapeIssue::WrongType {
        key,
        expected,
        got: Got(got).to_string(),
    }
}

/// The entries of `map`, every key checked against `valid` (returned as the `'static` name).
fn fields<'a>(
    map: &'a Mapping,
    valid: &'static [&'static str],
) -> Result<HashMap<&'static str, &'a Value>, ShapeIssue> {
    let mut out = HashMap::new();
    for (k, v) in map {
        let key = match k {
            Value::String(s) => valid.iter().find(|&&name| name == s.as_str()).copied(),
            _ => None,
        };
        match key {
            Some(key) => {
                out.insert(key, v);
            }
            None => {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => Got(other).to_string().trim_matches('`').to_string(),
                };
                return Err(ShapeIssue::UnknownKey { key, valid });
            }
        }
    }
    Ok(out)
}

/// Settings an entry may take from `defaults`.
#[derive(Debug, Clone, Default)]
struct Settings {
    op: Option<OpKind>,
    batch: Option<Vec<i128>>,
    dtype: Option<DType>,
    out_dtype: Option<DType>,
    layout: Option<Layout>,
    /// Attention's output layout (also given as `layout`).
    attention_layout: Option<AttentionLayout>,
    epilogue: Option<Vec<EpilogueOp>>,
    store: Option<Store>,
    /// Layernorm's fused operands (`residual`, `bias`).
    fused: Option<Vec<&'static str>>,
    mask: Option<Mask>,
    /// Attention: a packed batch (entries only, not `defaults`).
    packed: Option<bool>,
    lens: Option<Lengths>,
    lens_kv: Option<Lengths>,
    /// The entry itself (not `defaults`) gives `batch`.
    own_batch: bool,
}

/// A packed batch's sequence lengths as a shapes entry gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lengths {
    /// The lengths themselves (the batch is their count).
    List(Vec<u64>),
    /// `batch` lengths drawn uniformly from `min..=max` by a generator seeded with `seed`.
    Uniform { min: u64, max: u64, seed: u64 },
}

impl Lengths {
    /// The lengths of a batch of `batch` sequences.
    fn lengths(&self, key: &'static str, batch: u64) -> Result<Vec<u64>, ShapeIssue> {
        match self {
            Lengths::List(l) if l.len() as u64 == batch => Ok(l.clone()),
            Lengths::List(l) => Err(ShapeIssue::Packed {
                what: format!("`{key}` lists {} lengths for batch {batch}", l.len()),
            }),
            &Lengths::Uniform { min, max, seed } => {
                let mut rng = tessera_library::host::Rng::new(seed);
                Ok((0..batch).map(|_| min + rng.below(max - min + 1)).collect())
            }
        }
    }

    /// The batch a list fixes.
    fn count(&self) -> Option<u64> {
        match self {
            Lengths::List(l) => Some(l.len() as u64),
            Lengths::Uniform { .. } => None,
        }
    }
}

/// `[1, 77, 100]` or `{dist: uniform, max: 384, min: 1, seed: 0}`.
fn parse_lengths(key: &'static str, v: &Value) -> Result<Lengths, ShapeIssue> {
    const EXPECTED: &str =
        "a list of positive lengths or a distribution {dist: uniform, max, min, seed}";
    let positive = |k: &'static str, v: &Value| {
        v.as_u64()
            .filter(|&x| x > 0)
            .ok_or_else(|| wrong(k, "a positive integer", v))
    };
    match v {
        Value::Sequence(seq) if seq.is_empty() => Err(ShapeIssue::EmptyList { key }),
        Value::Sequence(seq) => Ok(Lengths::List(
            seq.iter()
                .map(|x| positive(key, x))
                .collect::<Result<_, _>>()?,
        )),
        Value::Mapping(map) => {
            let f = fields(map, &["dist", "max", "min", "seed"])?;
            match f.get("dist") {
                None => return Err(ShapeIssue::MissingKey { key: "dist" }),
                Some(d) if d.as_str() == Some("uniform") => {}
                Some(d) => return Err(wrong("dist", "`uniform`", d)),
            }
            let max = positive(
                "max",
                f.get("max").ok_or(ShapeIssue::MissingKey { key: "max" })?,
            )?;
            let min = f.get("min").map_or(Ok(1), |v| positive("min", v))?;
            let seed = match f.get("seed") {
                None => 0,
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| wrong("seed", "a non-negative integer", v))?,
            };
            if min > max {
                return Err(ShapeIssue::Packed {
                    what: format!("`{key}`: min {min} is above max {max}"),
                });
            }
            Ok(Lengths::Uniform { min, max, seed })
        }
        other => Err(wrong(key, EXPECTED, other)),
    }
}

/// An entry's own sizes by key (`batch` lives in [`Settings`]).
type Sizes = HashMap<&'static str, Vec<i128>>;

impl Settings {
    fn parse(
        map: &Mapping,
        valid: &'static [&'static str],
    ) -> Result<(Settings, Sizes), ShapeIssue> {
        let f = fields(map, valid)?;
        let mut s = Settings::default();
        let mut sizes = Sizes::new();
        if let Some(v) = f.get("op") {
            s.op = Some(parse_op(v)?);
        }
        if let Some(v) = f.get("batch") {
            s.batch = Some(parse_sizes("batch", v)?);
            s.own_batch = true;
        }
        if let Some(v) = f.get("dtype") {
            s.dtype = Some(string("dtype", "a dtype name", v)?.parse()?);
        }
        if let Some(v) = f.get("out_dtype") {
            s.out_dtype = Some(string("out_dtype", "a dtype name", v)?.parse()?);
        }
        if let Some(v) = f.get("layout") {
            match parse_layout(v)? {
                LayoutCode::Gemm(l) => s.layout = Some(l),
                LayoutCode::Attention(l) => s.attention_layout = Some(l),
            }
        }
        if let Some(v) = f.get("epilogue") {
            s.epilogue = Some(parse_epilogue(v)?);
        }
        if let Some(v) = f.get("store") {
            s.store = Some(parse_store(v)?);
        }
        if let Some(v) = f.get("fused") {
            s.fused = Some(parse_fused(v)?);
        }
        if let Some(v) = f.get("mask") {
            s.mask = Some(parse_mask(v)?);
        }
        if let Some(v) = f.get("packed") {
            s.packed = Some(
                v.as_bool()
                    .ok_or_else(|| wrong("packed", "`true` or `false`", v))?,
            );
        }
        if let Some(v) = f.get("lens") {
            s.lens = Some(parse_lengths("lens", v)?);
        }
        if let Some(v) = f.get("lens_kv") {
            s.lens_kv = Some(parse_lengths("lens_kv", v)?);
        }
        for key in SIZE_KEYS {
            if let Some(v) = f.get(key) {
                sizes.insert(key, parse_sizes(key, v)?);
            }
        }
        Ok((s, sizes))
    }

    /// These settings, with `defaults` filling the gaps.
    fn over(self, defaults: &Settings) -> Settings {
        Settings {
            op: self.op.or(defaults.op),
            batch: self.batch.or_else(|| defaults.batch.clone()),
            dtype: self.dtype.or(defaults.dtype),
            out_dtype: self.out_dtype.or(defaults.out_dtype),
            layout: self.layout.or(defaults.layout),
            attention_layout: self.attention_layout.or(defaults.attention_layout),
            epilogue: self.epilogue.or_else(|| defaults.epilogue.clone()),
            store: self.store.or(defaults.store),
            fused: self.fused.or_else(|| defaults.fused.clone()),
            mask: self.mask.or(defaults.mask),
            packed: self.packed,
            lens: self.lens,
            lens_kv: self.lens_kv,
            own_batch: self.own_batch,
        }
    }
}

fn string<'a>(
    key: &'static str,
    expected: &'static str,
    v: &'a Value,
) -> Result<&'a str, ShapeIssue> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(wrong(key, expected, other)),
    }
}

fn parse_op(v: &Value) -> Result<OpKind, ShapeIssue> {
    let got = string("op", "an op name", v)?;
    match ALL_OPS.into_iter().find(|op| op.name() == got) {
        Some(op) if SHAPE_OPS.contains(&op) => Ok(op),
        Some(op) => Err(ShapeIssue::UnsupportedOp { op }),
        None => Err(ShapeIssue::UnknownOp {
            got: got.to_string(),
        }),
    }
}

/// A `layout:` value: a GEMM's operand layouts or attention's output layout.
enum LayoutCode {
    Gemm(Layout),
    Attention(AttentionLayout),
}

fn parse_layout(v: &Value) -> Result<LayoutCode, ShapeIssue> {
    let got = string("layout", "a layout code", v)?;
    if let Some(l) = AttentionLayout::from_code(got) {
        return Ok(LayoutCode::Attention(l));
    }
    let letters: Vec<char> = got.chars().collect();
    match letters.as_slice() {
        ['r', b, 'r'] => Layout::from_letter(*b).map(LayoutCode::Gemm),
        _ => None,
    }
    .ok_or_else(|| ShapeIssue::UnknownLayout {
        got: got.to_string(),
    })
}

/// `store: rows` or `store: { heads: H, head_dim: D, seq: S }`.
fn parse_store(v: &Value) -> Result<Store, ShapeIssue> {
    const EXPECTED: &str = "`rows` or a map {heads, head_dim, seq}";
    match v {
        Value::String(s) if s == "rows" => Ok(Store::Rows),
        Value::Mapping(map) => {
            let f = fields(map, &["heads", "head_dim", "seq"])?;
            let get = |key: &'static str| -> Result<u64, ShapeIssue> {
                let v = f.get(key).ok_or(ShapeIssue::MissingKey { key })?;
                v.as_u64()
                    .filter(|&x| x > 0)
                    .ok_or_else(|| wrong(key, "a positive integer", v))
            };
            Ok(Store::Heads {
                heads: get("heads")?,
                head_dim: get("head_dim")?,
                seq: get("seq")?,
            })
        }
        other => Err(wrong("store", EXPECTED, other)),
    }
}

/// `fused: [residual, bias]` (layernorm), a list or a single name.
fn parse_fused(v: &Value) -> Result<Vec<&'static str>, ShapeIssue> {
    const EXPECTED: &str = "a list of fused operands";
    let one = |v: &Value| {
        let got = string("fused", EXPECTED, v)?;
        ["residual", "bias"]
            .into_iter()
            .find(|n| *n == got)
            .ok_or_else(|| ShapeIssue::UnknownFused {
                got: got.to_string(),
            })
    };
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(seq) => seq.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

/// `mask: none | causal | padding` (attention).
fn parse_mask(v: &Value) -> Result<Mask, ShapeIssue> {
    let got = string("mask", "a mask name", v)?;
    [Mask::None, Mask::Causal, Mask::Padding]
        .into_iter()
        .find(|m| m.name() == got)
        .ok_or_else(|| ShapeIssue::UnknownMask {
            got: got.to_string(),
        })
}

fn parse_epilogue(v: &Value) -> Result<Vec<EpilogueOp>, ShapeIssue> {
    const EXPECTED: &str = "a list of epilogue op names";
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.parse()?]),
        Value::Sequence(seq) => seq
            .iter()
            .map(|item| Ok(string("epilogue", EXPECTED, item)?.parse()?))
            .collect(),
        other => Err(wrong("epilogue", EXPECTED, other)),
    }
}

/// One integer or a non-empty list of them; the sign is checked later, against the op.
fn parse_sizes(key: &'static str, v: &Value) -> Result<Vec<i128>, ShapeIssue> {
    const EXPECTED: &str = "a positive integer or a list of them";
    let one = |v: &Value| match v {
        Value::Number(n) => n
            .as_u64()
            .map(i128::from)
            .or_else(|| n.as_i64().map(i128::from))
            .ok_or_else(|| wrong(key, EXPECTED, v)),
        other => Err(wrong(key, EXPECTED, other)),
    };
    match v {
        Value::Sequence(seq) if seq.is_empty() => Err(ShapeIssue::EmptyList { key }),
        Value::Sequence(seq) => seq.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

/// A problem per combination of listed sizes, with its name suffix (`[m=128]`, or empty).
type Expanded = Vec<(String, Result<Problem, ShapeIssue>)>;

/// The size keys of an op: (required, optional). Attention takes `seq` or `seq_q` + `seq_kv`.
fn op_sizes(op: OpKind) -> (&'static [&'static str], &'static [&'static str]) {
    match op {
        OpKind::Gemm => (&["m", "n", "k"], &[]),
        OpKind::Layernorm => (&["rows", "cols"], &[]),
        OpKind::Softmax => (&["rows", "cols"], &["mask_period"]),
        OpKind::Attention => (
            &["heads", "head_dim"],
            &["kv_heads", "seq", "seq_q", "seq_kv"],
        ),
        OpKind::Embedding => (
            &["seq", "hidden"],
            &["vocab", "positions", "types", "tokens"],
        ),
    }
}

fn expand(s: &Settings, sizes: &Sizes) -> Result<Expanded, ShapeIssue> {
    let op = s.op.ok_or(ShapeIssue::MissingKey { key: "op" })?;
    let (required, optional) = op_sizes(op);
    let valid: Vec<&'static str> = required.iter().chain(optional).copied().collect();
    for key in SIZE_KEYS {
        if sizes.contains_key(key) && !valid.contains(key) {
            return Err(ShapeIssue::NotForOp {
                key,
                op,
                valid: valid.clone(),
            });
        }
    }
    for key in required {
        if !sizes.contains_key(key) {
            return Err(ShapeIssue::MissingKey { key });
        }
    }
    let not_for = |key: &'static str| ShapeIssue::NotForOp {
        key,
        op,
        valid: valid.clone(),
    };
    let gemm_only = op == OpKind::Gemm;
    if !gemm_only && s.epilogue.as_ref().is_some_and(|e| !e.is_empty()) {
        return Err(not_for("epilogue"));
    }
    if s.fused.as_ref().is_some_and(|f| !f.is_empty()) && op != OpKind::Layernorm {
        return Err(not_for("fused"));
    }
    if s.mask.is_some_and(|m| !m.is_none()) && op != OpKind::Attention {
        return Err(not_for("mask"));
    }
    if let Some(layout) = s.attention_layout {
        if op != OpKind::Attention {
            return Err(ShapeIssue::AttentionLayoutNotForOp { layout, op });
        }
    }
    if s.batch.is_some() && !matches!(op, OpKind::Gemm | OpKind::Attention | OpKind::Embedding) {
        return Err(not_for("batch"));
    }
    let packed = s.packed == Some(true);
    for (key, given) in [
        ("packed", s.packed.is_some()),
        ("lens", s.lens.is_some()),
        ("lens_kv", s.lens_kv.is_some()),
    ] {
        if given && op != OpKind::Attention {
            return Err(not_for(key));
        }
    }
    if !packed && (s.lens.is_some() || s.lens_kv.is_some()) {
        return Err(ShapeIssue::Packed {
            what: "`lens` and `lens_kv` describe a packed batch; add `packed: true`".into(),
        });
    }
    if packed {
        if s.lens.is_none() {
            return Err(ShapeIssue::MissingKey { key: "lens" });
        }
        if let Some(key) = ["seq", "seq_q", "seq_kv"]
            .into_iter()
            .find(|k| sizes.contains_key(k))
        {
            return Err(ShapeIssue::Packed {
                what: format!(
                    "`{key}` does not apply: the lengths come from `lens` (and `lens_kv`), the \
                     longest is the launch bound"
                ),
            });
        }
    } else if op == OpKind::Attention {
        let has = |k| sizes.contains_key(k);
        match (has("seq"), has("seq_q"), has("seq_kv")) {
            (true, false, false) | (false, true, true) => {}
            (false, false, false) => return Err(ShapeIssue::MissingKey { key: "seq" }),
            _ => {
                return Err(ShapeIssue::WrongType {
                    key: "seq",
                    expected: "given alone, or replaced by both `seq_q` and `seq_kv`",
                    got: "a mix".into(),
                })
            }
        }
    }
    let one = vec![1];
    let mut dims: Vec<(&'static str, &Vec<i128>)> = SIZE_KEYS
        .iter()
        .filter_map(|k| sizes.get(k).map(|v| (*k, v)))
        .collect();
    // a list of lengths fixes the batch (a `batch` given as well must agree)
    let listed = [&s.lens, &s.lens_kv]
        .into_iter()
        .flatten()
        .find_map(Lengths::count)
        .map(|n| vec![i128::from(n)]);
    if let (Some(n), Some(batch)) = (&listed, &s.batch) {
        if batch != n {
            return Err(ShapeIssue::Packed {
                what: format!(
                    "`batch` {} disagrees with the {} lengths listed",
                    names_of(batch),
                    n[0]
                ),
            });
        }
    }
    // `tokens` (embedding) replaces batch·seq: an entry's own `batch` conflicts with it, a
    // `batch` from `defaults` does not apply
    let tokens = sizes.contains_key("tokens");
    if tokens && s.own_batch {
        return Err(ShapeIssue::TokensAndBatch);
    }
    if matches!(op, OpKind::Gemm | OpKind::Attention | OpKind::Embedding) && !tokens {
        let batch = listed.as_ref().or(s.batch.as_ref()).unwrap_or(&one);
        dims.push(("batch", batch));
    }
    // the cartesian product, the first dimension varying slowest
    let mut points: Vec<Vec<i128>> = vec![Vec::new()];
    for (_, values) in &dims {
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |&v| {
                    let mut p = p.clone();
                    p.push(v);
                    p
                })
            })
            .collect();
    }
    let mut out = Vec::new();
    for values in points {
        let listed: Vec<String> = dims
            .iter()
            .zip(&values)
            .filter(|((_, list), _)| list.len() > 1)
            .map(|((dim, _), v)| format!("{dim}={v}"))
            .collect();
        let suffix = if listed.is_empty() {
            String::new()
        } else {
            format!("[{}]", listed.join(","))
        };
        let problem = (|| {
            let mut got: HashMap<&'static str, u64> = HashMap::new();
            for ((dim, _), &v) in dims.iter().zip(&values) {
                got.insert(dim, size(op, dim, v)?);
            }
            build(op, s, &got)
        })();
        out.push((suffix, problem));
    }
    Ok(out)
}

/// `[1, 2]` for error messages.
fn names_of(values: &[i128]) -> String {
    let v: Vec<String> = values.iter().map(i128::to_string).collect();
    match v.as_slice() {
        [one] => one.clone(),
        _ => format!("[{}]", v.join(", ")),
    }
}

/// The problem of one expanded point (`dims` holds every size the op needs).
fn build(
    op: OpKind,
    s: &Settings,
    dims: &HashMap<&'static str, u64>,
) -> Result<Problem, ShapeIssue> {
    let get = |k: &str| dims.get(k).copied().unwrap_or(1);
    let input = s.dtype.unwrap_or(DType::F16);
    Ok(match op {
        OpKind::Gemm => Problem::Gemm(GemmProblem {
            m: get("m"),
            n: get("n"),
            k: get("k"),
            batch: get("batch"),
            input,
            output: s.out_dtype.unwrap_or(input),
            layout_b: s.layout.unwrap_or(Layout::Col),
            epilogue: s.epilogue.clone().unwrap_or_default(),
            store: s.store.unwrap_or_default(),
        }),
        OpKind::Layernorm => {
            let fused = s.fused.clone().unwrap_or_default();
            Problem::Layernorm(LayernormProblem {
                rows: get("rows"),
                cols: get("cols"),
                dtype: input,
                residual: fused.contains(&"residual"),
                bias: fused.contains(&"bias"),
            })
        }
        OpKind::Softmax => Problem::Softmax(SoftmaxProblem {
            rows: get("rows"),
            cols: get("cols"),
            dtype: input,
            mask_period: dims.get("mask_period").copied(),
        }),
        OpKind::Attention => {
            let seq = dims.get("seq").copied();
            let heads = get("heads");
            let mut a = AttentionProblem {
                batch: get("batch"),
                heads,
                kv_heads: dims.get("kv_heads").copied().unwrap_or(heads),
                seq_q: seq.unwrap_or_else(|| get("seq_q")),
                seq_kv: seq.unwrap_or_else(|| get("seq_kv")),
                head_dim: get("head_dim"),
                dtype: input,
                mask: s.mask.unwrap_or_default(),
                layout: s.attention_layout.unwrap_or_default(),
                packed: None,
            };
            if let (Some(true), Some(lens)) = (s.packed, &s.lens) {
                let lens_q = lens.lengths("lens", a.batch)?;
                let lens_kv = match &s.lens_kv {
                    Some(l) => l.lengths("lens_kv", a.batch)?,
                    None => lens_q.clone(),
                };
                a = a.with_packing(Packing { lens_q, lens_kv });
            }
            Problem::Attention(a)
        }
        OpKind::Embedding => {
            let bert = EmbeddingProblem::new(1, 1, 1);
            let seq = get("seq");
            Problem::Embedding(EmbeddingProblem {
                tokens: dims
                    .get("tokens")
                    .copied()
                    .unwrap_or_else(|| get("batch").saturating_mul(seq)),
                hidden: get("hidden"),
                seq,
                vocab: dims.get("vocab").copied().unwrap_or(bert.vocab),
                positions: dims.get("positions").copied().unwrap_or(bert.positions),
                types: dims.get("types").copied().unwrap_or(bert.types),
                dtype: input,
            })
        }
    })
}

/// `problems` as a shapes file: `problems:` and one flow mapping per problem, its name first,
/// then only the keys whose value differs from the default (so a plain f16 `rcr` GEMM is
/// `{name: "..", op: gemm, m: .., n: .., k: ..}`). Parsing the text ([`parse_str`]) gives
/// `problems` back, names and order included, for problems that pass their `check` and have
/// distinct names and values (as a shapes file needs). A packed attention problem is written
/// with its lengths (`packed: true, lens: [..]`, `lens_kv` for cross-attention), from which
/// the parser derives its batch and longest lengths; an embedding whose `tokens` is a multiple
/// of `seq` is written with `batch`, any other with `tokens`.
pub fn to_yaml(problems: &[NamedProblem]) -> String {
    if problems.is_empty() {
        return "problems: []\n".to_string();
    }
    let mut out = String::from("problems:\n");
    for p in problems {
        let mut keys: Vec<(&str, String)> = vec![("name", quoted(&p.name))];
        problem_keys(&p.problem, &mut keys);
        let body: Vec<String> = keys.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        out.push_str(&format!("  - {{{}}}\n", body.join(", ")));
    }
    out
}

/// A YAML double-quoted scalar (JSON's string escapes are valid YAML ones).
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
}

/// `[1, 2, 3]`.
fn flow_list<T: fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(T::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// The keys of one problem (after `name`), in the order of the module table.
fn problem_keys(problem: &Problem, keys: &mut Vec<(&'static str, String)>) {
    keys.push(("op", problem.op().name().to_string()));
    let dtype = |keys: &mut Vec<(&'static str, String)>, d: DType| {
        if d != DType::F16 {
            keys.push(("dtype", d.name().to_string()));
        }
    };
    match problem {
        Problem::Gemm(g) => {
            keys.push(("m", g.m.to_string()));
            keys.push(("n", g.n.to_string()));
            keys.push(("k", g.k.to_string()));
            if g.batch != 1 {
                keys.push(("batch", g.batch.to_string()));
            }
            dtype(keys, g.input);
            if g.output != g.input {
                keys.push(("out_dtype", g.output.name().to_string()));
            }
            if g.layout_b != Layout::Col {
                keys.push(("layout", format!("r{}r", g.layout_b.letter())));
            }
            if !g.epilogue.is_empty() {
                let names: Vec<&str> = g.epilogue.iter().map(|e| e.name()).collect();
                keys.push(("epilogue", flow_list(&names)));
            }
            if let Store::Heads {
                heads,
                head_dim,
                seq,
            } = g.store
            {
                keys.push((
                    "store",
                    format!("{{heads: {heads}, head_dim: {head_dim}, seq: {seq}}}"),
                ));
            }
        }
        Problem::Layernorm(l) => {
            keys.push(("rows", l.rows.to_string()));
            keys.push(("cols", l.cols.to_string()));
            let fused: Vec<&str> = [("residual", l.residual), ("bias", l.bias)]
                .into_iter()
                .filter_map(|(name, on)| on.then_some(name))
                .collect();
            if !fused.is_empty() {
                keys.push(("fused", flow_list(&fused)));
            }
            dtype(keys, l.dtype);
        }
        Problem::Softmax(sm) => {
            keys.push(("rows", sm.rows.to_string()));
            keys.push(("cols", sm.cols.to_string()));
            if let Some(period) = sm.mask_period {
                keys.push(("mask_period", period.to_string()));
            }
            dtype(keys, sm.dtype);
        }
        Problem::Attention(a) => {
            keys.push(("heads", a.heads.to_string()));
            if a.kv_heads != a.heads {
                keys.push(("kv_heads", a.kv_heads.to_string()));
            }
            match &a.packed {
                Some(p) => {
                    keys.push(("head_dim", a.head_dim.to_string()));
                    keys.push(("packed", "true".to_string()));
                    keys.push(("lens", flow_list(&p.lens_q)));
                    if !p.is_self() {
                        keys.push(("lens_kv", flow_list(&p.lens_kv)));
                    }
                }
                None => {
                    if a.seq_q == a.seq_kv {
                        keys.push(("seq", a.seq_q.to_string()));
                    } else {
                        keys.push(("seq_q", a.seq_q.to_string()));
                        keys.push(("seq_kv", a.seq_kv.to_string()));
                    }
                    keys.push(("head_dim", a.head_dim.to_string()));
                    if a.batch != 1 {
                        keys.push(("batch", a.batch.to_string()));
                    }
                }
            }
            if !a.mask.is_none() {
                keys.push(("mask", a.mask.name().to_string()));
            }
            dtype(keys, a.dtype);
            if !a.layout.is_bhsd() {
                keys.push(("layout", a.layout.code().to_string()));
            }
        }
        Problem::Embedding(e) => {
            keys.push(("seq", e.seq.to_string()));
            keys.push(("hidden", e.hidden.to_string()));
            let bert = EmbeddingProblem::new(1, 1, 1);
            for (key, value, default) in [
                ("vocab", e.vocab, bert.vocab),
                ("positions", e.positions, bert.positions),
                ("types", e.types, bert.types),
            ] {
                if value != default {
                    keys.push((key, value.to_string()));
                }
            }
            if e.seq != 0 && e.tokens.is_multiple_of(e.seq) {
                if e.tokens != e.seq {
                    keys.push(("batch", (e.tokens / e.seq).to_string()));
                }
            } else {
                keys.push(("tokens", e.tokens.to_string()));
            }
            dtype(keys, e.dtype);
        }
    }
}

/// A size as `u64`: negatives are rejected here (zero and huge values by the problem's check).
fn size(op: OpKind, dim: &'static str, v: i128) -> Result<u64, ShapeIssue> {
    if v < 0 {
        let value = i64::try_from(v).unwrap_or(i64::MIN);
        return Err(ProblemError::NonPositive { op, dim, value }.into());
    }
    Ok(u64::try_from(v).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse_str(text, "t.yaml") {
            Ok(p) => panic!("expected an error, parsed {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn fused_ops_parse_and_reject_foreign_keys() {
        let text = "problems:\n\
                    - {op: layernorm, rows: [128, 384], cols: 768, fused: [residual, bias]}\n\
                    - {op: attention, batch: 2, heads: 12, seq: 384, head_dim: 64, mask: causal}\n\
                    - {op: softmax, rows: 4608, cols: 384, mask_period: 4608}\n";
        let p = parse_str(text, "t").unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(
            p[1].problem.key(),
            "layernorm rows=384 cols=768 f16 fused=residual,bias"
        );
        assert_eq!(
            p[2].problem.key(),
            "attention batch=2 heads=12 seq_q=384 seq_kv=384 head_dim=64 f16 mask=causal"
        );
        assert_eq!(
            p[3].problem.key(),
            "softmax rows=4608 cols=384 f16 mask_period=4608"
        );
        let e = err("problems: [{op: layernorm, rows: 1, cols: 768, k: 3}]");
        assert!(
            e.contains("`k` does not apply to op layernorm; its keys are: rows, cols"),
            "{e}"
        );
        let e = err("problems: [{op: layernorm, rows: 1, cols: 768, fused: [gelu]}]");
        assert!(e.contains("unknown fused operand `gelu`"), "{e}");
        let e = err("problems: [{op: attention, heads: 1, seq: 8, head_dim: 96}]");
        assert!(
            e.contains("head_dim 96 is not supported; use 32, 64 or 128"),
            "{e}"
        );
        let e = err("problems: [{op: attention, heads: 1, seq_q: 8, head_dim: 64}]");
        assert!(e.contains("`seq`"), "{e}");
        let e = err("problems: [{op: softmax, rows: 1, cols: 8, mask: causal}]");
        assert!(e.contains("`mask` does not apply to op softmax"), "{e}");
    }

    #[test]
    fn minimal_problem_takes_builtin_defaults() {
        let p = parse_str("problems: [{op: gemm, m: 16, n: 32, k: 64}]", "t").unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].problem, Problem::Gemm(GemmProblem::new(16, 32, 64)));
        assert_eq!(p[0].name, "gemm m=16 n=32 k=64 f16->f16 rcr");
    }

    #[test]
    fn entry_overrides_defaults_and_out_dtype_follows_dtype() {
        let text = "defaults: {op: gemm, dtype: bf16, epilogue: [bias], batch: 2}\n\
                    problems:\n  - {m: 8, n: 8, k: 8, epilogue: [], layout: rrr}\n";
        let p = parse_str(text, "t").unwrap();
        let g = p[0].problem.as_gemm().expect("a GEMM");
        assert_eq!((g.input, g.output), (DType::BF16, DType::BF16));
        assert_eq!(g.layout_b, Layout::Row);
        assert!(g.epilogue.is_empty());
        assert_eq!(g.batch, 2);
    }

    #[test]
    fn product_expansion_order_and_names() {
        let p = parse_str(
            "problems: [{name: x, op: gemm, m: [1, 2], n: 8, k: [3, 4]}]",
            "t",
        )
        .unwrap();
        let names: Vec<_> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["x[m=1,k=3]", "x[m=1,k=4]", "x[m=2,k=3]", "x[m=2,k=4]"]
        );
    }

    #[test]
    fn missing_and_unknown_keys() {
        assert_eq!(
            err("problems: [{op: gemm, m: 1, n: 2}]"),
            "t.yaml: problems[0]: missing key `k`"
        );
        assert!(err("problems: [{m: 1, n: 2, k: 3}]").contains("missing key `op`"));
        assert_eq!(
            err("defaults: {m: 1}\nproblems: [{op: gemm, m: 1, n: 2, k: 3}]"),
            "t.yaml: defaults: unknown key `m`; valid keys: op, batch, dtype, out_dtype, layout, epilogue, fused, mask"
        );
        assert!(
            err("problem: []").contains("unknown key `problem`; valid keys: defaults, problems")
        );
        assert!(err("").contains("missing key `problems`"));
        assert!(err("problems: []").contains("`problems` is empty"));
    }

    #[test]
    fn wrong_types() {
        assert_eq!(
            err("problems: [{op: gemm, m: 1.5, n: 2, k: 3}]"),
            "t.yaml: problems[0]: `m` must be a positive integer or a list of them (got `1.5`)"
        );
        assert!(err("problems: [{op: gemm, m: [], n: 2, k: 3}]").contains("`m` is an empty list"));
        assert!(err("problems: 3").contains("`problems` must be a list of problems (got `3`)"));
    }

    #[test]
    fn foreign_sizes_and_unknown_layout() {
        assert_eq!(
            err("problems: [{op: attention, m: 1, n: 2, k: 3}]"),
            "t.yaml: problems[0]: `m` does not apply to op attention; its keys are: heads, head_dim, kv_heads, seq, seq_q, seq_kv"
        );
        assert!(err("problems: [{op: gemm, m: 1, n: 2, k: 3, layout: crr}]")
            .contains("unknown layout `crr`; use rcr"));
        let e = err("problems: [{op: attention, heads: 2, seq: 8, head_dim: 64, layout: bsdh}]");
        assert!(e.contains("unknown layout `bsdh`"), "{e}");
        assert!(
            e.contains("bhsd or bshd (O token-major) for attention"),
            "{e}"
        );
        assert_eq!(
            err("problems: [{op: gemm, m: 1, n: 2, k: 3, layout: bshd}]"),
            "t.yaml: problems[0]: layout `bshd` is attention's output layout; it does not apply \
             to op gemm"
        );
    }

    #[test]
    fn embedding_entries() {
        let parsed = parse_str(
            "problems:\n\
             - {op: embedding, batch: 4, seq: 128, hidden: 768}\n\
             - {op: embedding, seq: 16, hidden: 64, vocab: 100, positions: 16, types: 3, dtype: bf16}\n",
            "t.yaml",
        )
        .unwrap();
        let Problem::Embedding(e) = &parsed[0].problem else {
            panic!("{parsed:?}")
        };
        assert_eq!(
            (e.tokens, e.hidden, e.seq, e.vocab, e.positions, e.types),
            (512, 768, 128, 30522, 512, 2)
        );
        assert_eq!(
            parsed[1].name,
            "embedding tokens=16 hidden=64 seq=16 vocab=100 positions=16 types=3 bf16"
        );
        assert!(err("problems: [{op: embedding, seq: 600, hidden: 768}]")
            .contains("seq 600 needs 600 positions"));
        assert!(err("problems: [{op: embedding, seq: 8}]").contains("missing key `hidden`"));
        assert!(
            err("problems: [{op: embedding, seq: 8, hidden: 64, mask: causal}]")
                .contains("`mask` does not apply to op embedding")
        );
    }

    #[test]
    fn attention_output_layout() {
        let text = "defaults: { layout: rcr }\n\
                    problems:\n\
                    - {op: attention, heads: 12, seq: 128, head_dim: 64, mask: padding, layout: bshd}\n\
                    - {op: attention, heads: 12, seq: 128, head_dim: 64, layout: bhsd}\n\
                    - {op: attention, heads: 12, seq: 256, head_dim: 64}\n";
        let parsed = parse_str(text, "t.yaml").unwrap();
        let layouts: Vec<AttentionLayout> = parsed
            .iter()
            .map(|p| match &p.problem {
                Problem::Attention(a) => a.layout,
                other => panic!("{other:?}"),
            })
            .collect();
        use AttentionLayout::{Bhsd, Bshd};
        assert_eq!(layouts, [Bshd, Bhsd, Bhsd]);
        assert_eq!(
            parsed[0].name,
            "attention batch=1 heads=12 seq_q=128 seq_kv=128 head_dim=64 f16 mask=padding \
             layout=bshd"
        );
    }

    #[test]
    fn repeated_epilogue_and_duplicate_names() {
        assert!(
            err("problems: [{op: gemm, m: 1, n: 2, k: 3, epilogue: [bias, bias]}]")
                .contains("epilogue op `bias` appears twice")
        );
        assert_eq!(
            err("problems: [{name: a, op: gemm, m: 1, n: 2, k: 3}, {name: a, op: gemm, m: 2, n: 2, k: 3}]"),
            "t.yaml: problems[1] (a): duplicate name `a` (already used by problems[0] (a))"
        );
    }

    #[test]
    fn f32_input_is_rejected_by_the_problem_check() {
        assert!(err("problems: [{op: gemm, m: 1, n: 2, k: 3, dtype: f32}]")
            .contains("gemm: input dtype must be f16 or bf16 (got f32)"));
    }

    #[test]
    fn grouped_query_attention_entries() {
        let parsed = parse_str(
            "problems:\n\
             - {name: gqa, op: attention, heads: 32, kv_heads: [1, 8, 32], seq: 512, head_dim: 128}\n",
            "t.yaml",
        )
        .unwrap();
        let kv: Vec<u64> = parsed
            .iter()
            .map(|p| match &p.problem {
                Problem::Attention(a) => a.kv_heads,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(kv, [1, 8, 32]);
        assert_eq!(parsed[1].name, "gqa[kv_heads=8]");
        assert_eq!(
            parsed[1].problem.key(),
            "attention batch=1 heads=32 kv_heads=8 seq_q=512 seq_kv=512 head_dim=128 f16"
        );
        // kv_heads = heads is plain attention: the same key as without it
        assert_eq!(
            parsed[2].problem.key(),
            "attention batch=1 heads=32 seq_q=512 seq_kv=512 head_dim=128 f16"
        );
        let e = err("problems: [{op: attention, heads: 12, kv_heads: 5, seq: 8, head_dim: 64}]");
        assert!(e.contains("kv_heads 5 must divide heads 12"), "{e}");
        let e = err("problems: [{op: gemm, m: 1, n: 2, k: 3, kv_heads: 2}]");
        assert!(e.contains("`kv_heads` does not apply to op gemm"), "{e}");
    }

    #[test]
    fn packed_attention_entries() {
        let parsed = parse_str(
            "problems:\n\
             - {op: attention, heads: 4, head_dim: 64, packed: true, lens: [1, 77, 100, 197], mask: causal}\n\
             - {op: attention, heads: 4, kv_heads: 2, head_dim: 32, packed: true, lens: [3, 5], lens_kv: [7, 2]}\n\
             - {op: attention, batch: 32, heads: 12, head_dim: 64, packed: true, lens: {dist: uniform, max: 384, seed: 1}}\n",
            "t.yaml",
        )
        .unwrap();
        let a = |i: usize| match &parsed[i].problem {
            Problem::Attention(a) => a.clone(),
            other => panic!("{other:?}"),
        };
        let p = a(0);
        assert_eq!(
            (p.batch, p.seq_q, p.seq_kv, p.mask),
            (4, 197, 197, Mask::Causal)
        );
        assert_eq!(p.packed, Some(Packing::uniform_self(vec![1, 77, 100, 197])));
        assert_eq!(
            parsed[0].name,
            "attention batch=4 heads=4 seq_q=197 seq_kv=197 head_dim=64 f16 mask=causal \
             packed=1,77,100,197"
        );
        let c = a(1);
        assert_eq!((c.batch, c.seq_q, c.seq_kv, c.kv_heads), (2, 5, 7, 2));
        assert_eq!(c.packed.as_ref().unwrap().lens_kv, [7, 2]);
        let u = a(2);
        let lens = &u.packed.as_ref().unwrap().lens_q;
        assert_eq!(lens.len(), 32);
        assert!(lens.iter().all(|l| (1..=384).contains(l)));
        assert_eq!(u.seq_q, *lens.iter().max().unwrap());
        // the same seed draws the same lengths: the key is stable
        let again = parse_str(
            "problems: [{op: attention, batch: 32, heads: 12, head_dim: 64, packed: true, lens: {dist: uniform, max: 384, seed: 1}}]",
            "t",
        )
        .unwrap();
        assert_eq!(again[0].problem, parsed[2].problem);

        for (text, want) in [
            ("packed: true, lens: [3, 4], seq: 8", "`seq` does not apply"),
            ("packed: true", "missing key `lens`"),
            ("lens: [3, 4]", "add `packed: true`"),
            (
                "packed: true, lens: [3, 0]",
                "`lens` must be a positive integer (got `0`)",
            ),
            (
                "packed: true, lens: [3, 4], batch: 3",
                "`batch` 3 disagrees with the 2 lengths",
            ),
            (
                "packed: true, lens: [3, 4], lens_kv: [1]",
                "`lens_kv` lists 1 lengths for batch 2",
            ),
            (
                "packed: true, lens: {dist: normal, max: 4}",
                "`dist` must be `uniform`",
            ),
            (
                "packed: true, lens: {dist: uniform, max: 4, min: 9}",
                "min 9 is above max 4",
            ),
            (
                "packed: true, lens: [3, 4], mask: padding",
                "drop `mask: padding`",
            ),
            (
                "packed: true, lens: [3, 4], layout: bshd",
                "drop `layout: bshd`",
            ),
            (
                "packed: yes, lens: [3]",
                "`packed` must be `true` or `false`",
            ),
        ] {
            let e = err(&format!(
                "problems: [{{op: attention, heads: 2, head_dim: 64, {text}}}]"
            ));
            assert!(e.contains(want), "{text}: {e}");
        }
        let e = err("problems: [{op: gemm, m: 1, n: 2, k: 3, packed: true}]");
        assert!(e.contains("`packed` does not apply to op gemm"), "{e}");
    }

    #[test]
    fn embedding_tokens_key() {
        let parsed = parse_str(
            "defaults: {batch: 4}\n\
             problems:\n\
             - {name: packed, op: embedding, tokens: [100, 200], seq: 64, hidden: 128}\n\
             - {name: padded, op: embedding, seq: 64, hidden: 128}\n",
            "t.yaml",
        )
        .unwrap();
        let tokens: Vec<(&str, u64, u64)> = parsed
            .iter()
            .map(|p| match &p.problem {
                Problem::Embedding(e) => (p.name.as_str(), e.tokens, e.seq),
                other => panic!("{other:?}"),
            })
            .collect();
        // a `batch` from `defaults` does not apply to an entry with `tokens`
        assert_eq!(
            tokens,
            [
                ("packed[tokens=100]", 100, 64),
                ("packed[tokens=200]", 200, 64),
                ("padded", 256, 64)
            ]
        );
        let e = err("problems: [{op: embedding, batch: 2, tokens: 100, seq: 64, hidden: 128}]");
        assert_eq!(
            e,
            "t.yaml: problems[0]: `tokens` and `batch` together: `tokens` gives the token rows \
             itself (in place of batch·seq); drop one"
        );
        let e = err("problems: [{op: gemm, m: 1, n: 2, k: 3, tokens: 4}]");
        assert!(e.contains("`tokens` does not apply to op gemm"), "{e}");
        let e = err("problems: [{op: embedding, tokens: 0, seq: 8, hidden: 64}]");
        assert!(e.contains("`tokens` must be positive"), "{e}");
    }

    fn named(name: &str, problem: Problem) -> NamedProblem {
        NamedProblem {
            name: name.to_string(),
            problem,
        }
    }

    fn round_trip(problems: &[NamedProblem]) {
        let text = to_yaml(problems);
        let back = parse_str(&text, "<to_yaml>").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, problems, "{text}");
    }

    /// Every variant and option through `to_yaml` and back.
    #[test]
    fn to_yaml_round_trips_every_variant_and_option() {
        let gemm = GemmProblem::new(384, 2304, 768);
        let attn = AttentionProblem::new(2, 12, 128, 64);
        let mut ps = vec![
            named("plain gemm", Problem::Gemm(gemm.clone())),
            named(
                "qkv: heads \"store\" seq 1",
                Problem::Gemm(GemmProblem {
                    m: 77,
                    epilogue: vec![EpilogueOp::Bias],
                    store: Store::Heads {
                        heads: 12,
                        head_dim: 64,
                        seq: 1,
                    },
                    ..gemm.clone()
                }),
            ),
            named(
                "qkv seq 128",
                Problem::Gemm(GemmProblem {
                    m: 256,
                    store: Store::Heads {
                        heads: 12,
                        head_dim: 64,
                        seq: 128,
                    },
                    ..gemm.clone()
                }),
            ),
            named(
                "rrr f32 out chain",
                Problem::Gemm(GemmProblem {
                    m: 57,
                    n: 130,
                    k: 72,
                    batch: 3,
                    input: DType::BF16,
                    output: DType::F32,
                    layout_b: Layout::Row,
                    epilogue: vec![
                        EpilogueOp::BetaC,
                        EpilogueOp::Bias,
                        EpilogueOp::GeluTanh,
                        EpilogueOp::Residual,
                    ],
                    store: Store::Rows,
                }),
            ),
            named(
                "epilogues",
                Problem::Gemm(GemmProblem {
                    epilogue: vec![
                        EpilogueOp::Silu,
                        EpilogueOp::Relu,
                        EpilogueOp::Gelu,
                        EpilogueOp::Bias,
                    ],
                    ..gemm.clone()
                }),
            ),
            named(
                "ln",
                Problem::Layernorm(LayernormProblem {
                    rows: 384,
                    cols: 768,
                    dtype: DType::F16,
                    residual: false,
                    bias: false,
                }),
            ),
            named(
                "ln fused",
                Problem::Layernorm(LayernormProblem {
                    rows: 100,
                    cols: 768,
                    dtype: DType::BF16,
                    residual: true,
                    bias: true,
                }),
            ),
            named(
                "ln residual",
                Problem::Layernorm(LayernormProblem {
                    rows: 100,
                    cols: 768,
                    dtype: DType::F16,
                    residual: true,
                    bias: false,
                }),
            ),
            named(
                "softmax",
                Problem::Softmax(SoftmaxProblem {
                    rows: 12,
                    cols: 100,
                    dtype: DType::F16,
                    mask_period: None,
                }),
            ),
            named(
                "softmax masked",
                Problem::Softmax(SoftmaxProblem {
                    rows: 4608,
                    cols: 384,
                    dtype: DType::BF16,
                    mask_period: Some(4608),
                }),
            ),
            named("attention", Problem::Attention(attn.clone())),
            named(
                "attention cross gqa bshd causal",
                Problem::Attention(AttentionProblem {
                    kv_heads: 4,
                    seq_q: 1,
                    seq_kv: 300,
                    dtype: DType::BF16,
                    mask: Mask::Causal,
                    layout: AttentionLayout::Bshd,
                    ..attn.clone()
                }),
            ),
            named(
                "attention padding",
                Problem::Attention(AttentionProblem {
                    batch: 1,
                    head_dim: 128,
                    kv_heads: 1,
                    mask: Mask::Padding,
                    ..attn.clone()
                }),
            ),
            named(
                "packed self",
                Problem::Attention(
                    AttentionProblem {
                        mask: Mask::Causal,
                        ..AttentionProblem::new(1, 4, 1, 32)
                    }
                    .with_packing(Packing::uniform_self(vec![1, 77, 100, 197])),
                ),
            ),
            named(
                "packed cross gqa",
                Problem::Attention(
                    AttentionProblem {
                        kv_heads: 2,
                        ..AttentionProblem::new(1, 4, 1, 64)
                    }
                    .with_packing(Packing {
                        lens_q: vec![3, 5],
                        lens_kv: vec![7, 2],
                    }),
                ),
            ),
            named(
                "embedding",
                Problem::Embedding(EmbeddingProblem::new(512, 768, 128)),
            ),
            named(
                "embedding one sequence",
                Problem::Embedding(EmbeddingProblem::new(16, 64, 16)),
            ),
            named(
                "embedding packed",
                Problem::Embedding(EmbeddingProblem {
                    vocab: 100,
                    positions: 64,
                    types: 1,
                    dtype: DType::BF16,
                    ..EmbeddingProblem::new(100, 128, 32)
                }),
            ),
            named(
                "embedding fewer tokens than seq",
                Problem::Embedding(EmbeddingProblem::new(7, 128, 32)),
            ),
        ];
        for p in &ps {
            p.problem
                .check()
                .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        }
        round_trip(&ps);
        let text = to_yaml(&ps);
        for want in [
            "  - {name: \"plain gemm\", op: gemm, m: 384, n: 2304, k: 768}\n",
            "store: {heads: 12, head_dim: 64, seq: 1}",
            "dtype: bf16, out_dtype: f32, layout: rrr, epilogue: [beta_c, bias, gelu_tanh, residual]",
            "fused: [residual, bias]",
            "mask_period: 4608",
            "kv_heads: 4, seq_q: 1, seq_kv: 300",
            "mask: causal, dtype: bf16, layout: bshd",
            "packed: true, lens: [1, 77, 100, 197], mask: causal",
            "lens: [3, 5], lens_kv: [7, 2]",
            "seq: 128, hidden: 768, batch: 4}",
            "tokens: 100, dtype: bf16}",
        ] {
            assert!(text.contains(want), "lacks `{want}`:\n{text}");
        }
        // unnamed problems come back under their keys
        for p in &mut ps {
            p.name = p.problem.key();
        }
        round_trip(&ps);
        assert_eq!(to_yaml(&[]), "problems: []\n");
    }

    fn gemm_strategy() -> impl proptest::strategy::Strategy<Value = Problem> {
        use proptest::prelude::*;
        let epilogue =
            proptest::sample::subsequence(EpilogueOp::ALL.to_vec(), 0..=3).prop_shuffle();
        (
            (1u64..5000, 1u64..9000, 1u64..9000, 1u64..5),
            (0usize..2, 0usize..3, any::<bool>()),
            epilogue,
            proptest::option::of((1u64..17, 1u64..65, 1u64..9)),
        )
            .prop_map(|((m, n, k, batch), (i, o, row), epilogue, heads)| {
                let input = [DType::F16, DType::BF16][i];
                let store = match heads {
                    // sizes that fit: m = batch·seq, n = parts·heads·head_dim, head_dim even
                    Some((h, d, seq)) => Store::Heads {
                        heads: h,
                        head_dim: 2 * d,
                        seq,
                    },
                    None => Store::Rows,
                };
                let (m, n) = match store {
                    Store::Heads {
                        heads,
                        head_dim,
                        seq,
                    } => (seq * (m % 64 + 1), heads * head_dim * (n % 3 + 1)),
                    Store::Rows => (m, n),
                };
                Problem::Gemm(GemmProblem {
                    m,
                    n,
                    k,
                    batch,
                    input,
                    output: [DType::F16, DType::BF16, DType::F32][o],
                    layout_b: if row { Layout::Row } else { Layout::Col },
                    epilogue,
                    store,
                })
            })
    }

    fn attention_strategy() -> impl proptest::strategy::Strategy<Value = Problem> {
        use proptest::prelude::*;
        let lens = proptest::collection::vec(1u64..600, 1..12);
        (
            (1u64..9, 1u64..17, 0usize..5, 0usize..3),
            (1u64..2000, 1u64..2000, 0usize..2, 0usize..3, any::<bool>()),
            proptest::option::of((lens.clone(), proptest::option::of(lens))),
        )
            .prop_map(
                |((batch, heads, group, hd), (seq_q, seq_kv, dt, mask, bshd), packed)| {
                    // kv_heads: a divisor of heads
                    let divisors: Vec<u64> = (1..=heads).filter(|d| heads % d == 0).collect();
                    let kv_heads = divisors[group % divisors.len()];
                    let mut a = AttentionProblem {
                        batch,
                        heads,
                        kv_heads,
                        seq_q,
                        seq_kv,
                        head_dim: tessera_dsl::problem::HEAD_DIMS[hd],
                        dtype: [DType::F16, DType::BF16][dt],
                        mask: [Mask::None, Mask::Causal, Mask::Padding][mask],
                        layout: if bshd {
                            AttentionLayout::Bshd
                        } else {
                            AttentionLayout::Bhsd
                        },
                        packed: None,
                    };
                    if let Some((lens_q, lens_kv)) = packed {
                        // packed: token-major, no padding mask; key lengths one per sequence
                        a.layout = AttentionLayout::Bhsd;
                        if a.mask == Mask::Padding {
                            a.mask = Mask::None;
                        }
                        let lens_kv = match lens_kv {
                            Some(kv) => (0..lens_q.len()).map(|i| kv[i % kv.len()]).collect(),
                            None => lens_q.clone(),
                        };
                        a = a.with_packing(Packing { lens_q, lens_kv });
                    }
                    Problem::Attention(a)
                },
            )
    }

    proptest::proptest! {
        #[test]
        fn to_yaml_round_trips_random_gemm_and_attention(
            gemms in proptest::collection::vec(gemm_strategy(), 1..6),
            attns in proptest::collection::vec(attention_strategy(), 1..6),
        ) {
            let mut ps: Vec<NamedProblem> = Vec::new();
            for (i, problem) in gemms.into_iter().chain(attns).enumerate() {
                problem.check().unwrap();
                // a shapes file holds distinct problems
                if ps.iter().any(|p| p.problem == problem) {
                    continue;
                }
                ps.push(named(&format!("p{i}"), problem));
            }
            let text = to_yaml(&ps);
            let back = parse_str(&text, "<to_yaml>");
            proptest::prop_assert!(back.is_ok(), "{:?}\n{}", back.err(), text);
            proptest::prop_assert_eq!(back.unwrap(), ps);
        }
    }

    #[test]
    fn the_decode_example_parses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/shapes/decode.yaml"
        );
        let parsed = parse_file(path).unwrap();
        assert_eq!(parsed.len(), 4 + 3);
        for p in &parsed {
            p.problem.check().unwrap();
            if let Problem::Attention(a) = &p.problem {
                assert_eq!((a.seq_q, a.heads, a.kv_heads), (1, 32, 8), "{}", p.name);
            }
        }
    }

    #[test]
    fn the_gqa_and_packed_example_parses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/shapes/attention-gqa-packed.yaml"
        );
        let parsed = parse_file(path).unwrap();
        let names: Vec<&str> = parsed.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "gqa[kv_heads=1]",
                "gqa[kv_heads=8]",
                "packed-bert",
                "packed-ragged-gqa"
            ]
        );
        for p in &parsed {
            p.problem.check().unwrap();
        }
    }
}
