//! The `Template` trait, rejections, and the registry `#[gpu_template]` fills.
//!
//! A template is a parameterized kernel: a [`ParamSpace`], dtype rules, and a `build` that turns
//! one [`Config`] into a [`KernelIr`]. `validate` decides whether a config can compute a problem
//! on a device, and says why not. Templates register themselves through `inventory`; nothing
//! lists them by hand.

use crate::caps::DeviceCaps;
use crate::dtype::DType;
use crate::ir::KernelIr;
use crate::problem::{OpKind, Problem};
use crate::space::{Config, ParamSpace, Variant};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which dtypes a template accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DTypeRules {
    pub inputs: &'static [DType],
    pub acc: DType,
    pub outputs: &'static [DType],
}

/// Why a config cannot compute a problem on a device. Rejections are data, not errors: the
/// tuner stores them as rows with their reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {reason}")]
pub struct Reject {
    pub kind: RejectKind,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectKind {
    /// The template does not implement this op or dtype combination.
    Unsupported,
    /// The config is not a point of the template's space.
    OutsideSpace,
    /// The problem's shape or alignment does not meet the config's guards.
    Shape,
    /// Shared memory, threads or registers exceed the device.
    Resources,
}

impl fmt::Display for RejectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectKind::Unsupported => "unsupported",
            RejectKind::OutsideSpace => "outside space",
            RejectKind::Shape => "shape",
            RejectKind::Resources => "resources",
        })
    }
}

impl Reject {
    pub fn new(kind: RejectKind, reason: impl Into<String>) -> Self {
        Reject {
            kind,
            reason: reason.into(),
        }
    }
}

/// A template's `build` could not produce IR (a bug in the template or a foreign config).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("config for template `{got}` given to template `{want}`")]
    WrongTemplate { want: String, got: String },
    #[error("config has {got} parameters, template `{template}` has {want}")]
    Arity {
        template: String,
        want: usize,
        got: usize,
    },
    #[error("kernel body refers to unknown {what} `{name}`")]
    Unknown { what: &'static str, name: String },
    #[error("kernel body is malformed: {0}")]
    Malformed(String),
}

/// A parameterized kernel.
pub trait Template: Sync + Send {
    /// Unique name, the first word of every kernel name.
    fn name(&self) -> &'static str;
    /// The operation it implements.
    fn op(&self) -> OpKind;
    /// Hash of the template's own tokens, computed by the macro: its version for the cache.
    fn source_hash(&self) -> &'static str;
    /// One-line description (the module's first doc line).
    fn about(&self) -> &'static str;
    fn space(&self) -> ParamSpace;
    fn dtypes(&self) -> DTypeRules;
    /// The parameters formatted for kernel names, e.g. `128x128x32_w2x2_s4`.
    fn label(&self, values: &[i64]) -> String;
    /// Lower one config to IR.
    fn build(&self, config: &Config) -> Result<KernelIr, BuildError>;
    /// Template-specific checks beyond the generic ones (default: none).
    fn check(
        &self,
        _config: &Config,
        _problem: &Problem,
        _caps: &DeviceCaps,
    ) -> Result<(), Reject> {
        Ok(())
    }

    /// The config for `values` (in space order) specialised to `problem`.
    fn config(&self, values: &[i64], problem: &Problem) -> Result<Config, Reject> {
        let space = self.space();
        if values.len() != space.params.len() {
            return Err(Reject::new(
                RejectKind::OutsideSpace,
                format!(
                    "{} values given, template `{}` has {} parameters",
                    values.len(),
                    self.name(),
                    space.params.len()
                ),
            ));
        }
        Ok(Config {
            template: self.name().to_string(),
            params: space
                .params
                .iter()
                .map(|p| p.name.clone())
                .zip(values.iter().copied())
                .collect(),
            label: self.label(values),
            variant: variant_for(self.dtypes().acc, problem),
        })
    }

    /// Whether `config` can compute `problem` on a device with `caps`; the reason if not.
    fn validate(
        &self,
        config: &Config,
        problem: &Problem,
        caps: &DeviceCaps,
    ) -> Result<(), Reject> {
        validate_generic(self, config, problem, caps)?;
        self.check(config, problem, caps)
    }
}

/// The variant a problem asks for, given the template's accumulator dtype.
pub fn variant_for(acc: DType, problem: &Problem) -> Variant {
    use crate::problem::{fused_ops, Mask, Store};
    let rows = |dtype: DType, cols: u64, align: u32, mask: Mask| Variant {
        input: dtype,
        acc,
        output: dtype,
        layout: String::new(),
        epilogue: fused_ops(problem),
        align,
        store: Store::Rows,
        extent: u32::try_from(cols).unwrap_or(u32::MAX),
        mask,
    };
    match problem {
        Problem::Gemm(g) => Variant {
            input: g.input,
            acc,
            output: g.output,
            layout: g.layout_code(),
            epilogue: g.epilogue.clone(),
            align: g.alignment(),
            store: g.store,
            extent: 0,
            mask: Mask::None,
        },
        Problem::Layernorm(l) => rows(l.dtype, l.cols, l.alignment(), Mask::None),
        Problem::Softmax(s) => {
            let mask = if s.mask_period.is_some() {
                Mask::Additive
            } else {
                Mask::None
            };
            rows(s.dtype, s.cols, s.alignment(), mask)
        }
        Problem::Embedding(e) => rows(e.dtype, e.hidden, e.alignment(), Mask::None),
        // every supported head_dim (HEAD_DIMS) is a multiple of 8: rows are 8-element aligned
        Problem::Attention(a) => Variant {
            layout: a.layout_code().into(),
            ..rows(a.dtype, a.head_dim, 8, a.mask)
        },
    }
}

/// Checks every template gets: op, space membership, dtypes, variant, alignment, resources
/// and MMA atom divisibility on this device.
pub fn validate_generic<T: Template + ?Sized>(
    t: &T,
    config: &Config,
    problem: &Problem,
    caps: &DeviceCaps,
) -> Result<(), Reject> {
    use RejectKind::*;
    if problem.op() != t.op() {
        return Err(Reject::new(
            Unsupported,
            format!(
                "template `{}` implements {}, not {}",
                t.name(),
                t.op(),
                problem.op()
            ),
        ));
    }
    if let Err(e) = problem.check() {
        return Err(Reject::new(Shape, e.to_string()));
    }
    if config.template != t.name() {
        return Err(Reject::new(
            OutsideSpace,
            format!("config belongs to template `{}`", config.template),
        ));
    }
    let space = t.space();
    let values = config.values();
    let names: Vec<&str> = config.params.iter().map(|(n, _)| n.as_str()).collect();
    let want: Vec<&str> = space.params.iter().map(|p| p.name.as_str()).collect();
    if names != want {
        return Err(Reject::new(
            OutsideSpace,
            format!("parameters {names:?} do not match the space {want:?}"),
        ));
    }
    for (p, v) in space.params.iter().zip(&values) {
        if !p.values.contains(v) {
            return Err(Reject::new(
                OutsideSpace,
                format!("{} = {v} is not one of {:?}", p.name, p.values),
            ));
        }
    }
    if let Some((p, v, on)) = space.not_offered_on(&values, caps.target) {
        let on: Vec<&str> = on.iter().map(|t| t.name()).collect();
        return Err(Reject::new(
            OutsideSpace,
            format!(
                "{} = {v} is offered on {} only, not on {}",
                p.name,
                on.join(", "),
                caps.target.name()
            ),
        ));
    }
    if let Some(c) = space.violated(&values) {
        return Err(Reject::new(OutsideSpace, format!("violates `{c}`")));
    }
    let rules = t.dtypes();
    let wanted = variant_for(rules.acc, problem);
    if !rules.inputs.contains(&wanted.input) {
        return Err(Reject::new(
            Unsupported,
            format!(
                "input dtype {} not supported (supported: {:?})",
                wanted.input, rules.inputs
            ),
        ));
    }
    if !rules.outputs.contains(&wanted.output) {
        return Err(Reject::new(
            Unsupported,
            format!(
                "output dtype {} not supported (supported: {:?})",
                wanted.output, rules.outputs
            ),
        ));
    }
    let v = &config.variant;
    if v.input != wanted.input
        || v.output != wanted.output
        || v.acc != wanted.acc
        || v.layout != wanted.layout
        || v.epilogue != wanted.epilogue
        || v.store != wanted.store
        || v.extent != wanted.extent
        || v.mask != wanted.mask
    {
        return Err(Reject::new(
            Shape,
            "config was specialised for a different dtype, layout, epilogue, size or mask",
        ));
    }
    if v.align > wanted.align || !wanted.align.is_multiple_of(v.align) {
        return Err(Reject::new(
            Shape,
            format!(
                "config needs {}-element aligned rows; this problem's rows are {}-element aligned",
                v.align, wanted.align
            ),
        ));
    }
    if v.align < 2 {
        return Err(Reject::new(
            Shape,
            "contiguous dimensions must be even (a GEMM's K, and N for row-major B or any output; \
             a row-wise op's cols); pad the problem to a multiple of 2 (8 is fastest)",
        ));
    }
    let ir = t
        .build(config)
        .map_err(|e| Reject::new(Unsupported, format!("build failed: {e}")))?;
    if let Some(r) = ir.row_tile() {
        if r.vector > wanted.align {
            return Err(Reject::new(
                Shape,
                format!(
                    "vector {} exceeds the rows' alignment ({} elements): cols must be a multiple \
                     of the vector width",
                    r.vector, wanted.align
                ),
            ));
        }
    }
    let threads = ir.threads(caps.warp_size);
    if threads > caps.max_threads_per_block {
        return Err(Reject::new(
            Resources,
            format!(
                "{threads} threads per block exceed {}",
                caps.max_threads_per_block
            ),
        ));
    }
    let smem = ir.smem_bytes();
    if smem > caps.smem_per_block {
        return Err(Reject::new(
            Resources,
            format!(
                "needs {smem} bytes of shared memory; {} allows {} per block",
                caps.name, caps.smem_per_block
            ),
        ));
    }
    // Accumulators plus double-buffered operand fragments and addresses must fit the register
    // file; past 5/8 of it for accumulators alone, generated GEMM kernels spill. (Attention
    // turns its score accumulators into the P operand in place; its template sets its own
    // bound.)
    let acc = ir.acc_per_thread(caps.warp_size);
    if ir.op == OpKind::Gemm && acc * 8 > caps.regs_per_thread * 5 {
        return Err(Reject::new(
            Resources,
            format!(
                "{acc} accumulator registers per thread leave too few of {} for operands (spills)",
                caps.regs_per_thread
            ),
        ));
    }
    if ir.fragments().is_empty() {
        // a row-wise kernel: no MMA atoms to divide
        return Ok(());
    }
    for f in ir.fragments() {
        let asked = ir.mma_atom(&f.name);
        let Some(atom) = caps.atom_with(v.input, asked) else {
            return Err(Reject::new(
                Unsupported,
                match asked {
                    Some(m) => format!(
                        "{} has no {m}-row MMA atom for {} (`mma ... atom {m}`)",
                        caps.name, v.input
                    ),
                    None => format!("{} has no MMA atom for {}", caps.name, v.input),
                },
            ));
        };
        if ir.tile_k % atom.k != 0 {
            return Err(Reject::new(
                Unsupported,
                format!(
                    "tile_k = {} is not a multiple of the MMA atom K ({})",
                    ir.tile_k, atom.k
                ),
            ));
        }
        let (wm, wn) = f.warp_tile();
        if wm % atom.m != 0 || wn % atom.n != 0 {
            return Err(Reject::new(
                Unsupported,
                format!(
                    "warp tile {wm}×{wn} is not a multiple of the MMA atom {}×{}",
                    atom.m, atom.n
                ),
            ));
        }
    }
    Ok(())
}

/// A registered template (submitted by `#[gpu_template]`).
pub struct TemplateEntry {
    pub template: &'static dyn Template,
}

inventory::collect!(TemplateEntry);

/// Every registered template, sorted by name.
pub fn registry() -> Vec<&'static dyn Template> {
    let mut all: Vec<&'static dyn Template> = inventory::iter::<TemplateEntry>
        .into_iter()
        .map(|e| e.template)
        .collect();
    all.sort_by_key(|t| t.name());
    all
}

/// No template of that name is registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown template `{name}`; templates are: {valid}")]
pub struct UnknownTemplate {
    pub name: String,
    pub valid: String,
}

/// Look a template up by name.
pub fn find(name: &str) -> Result<&'static dyn Template, UnknownTemplate> {
    let all = registry();
    all.iter()
        .copied()
        .find(|t| t.name() == name)
        .ok_or_else(|| UnknownTemplate {
            name: name.to_string(),
            valid: all.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
        })
}
