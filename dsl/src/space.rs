//! Parameter spaces and configs.
//!
//! A [`ParamSpace`] is the cartesian product of each parameter's candidate values, filtered by
//! the template's constraints. A [`Config`] is one point of it plus the problem-derived
//! [`Variant`] (dtypes, layouts, epilogue, alignment); together they name exactly one kernel.

use crate::caps::Target;
use crate::dtype::DType;
use crate::epilogue::EpilogueOp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One tunable parameter and its candidate values, in the order the author wrote them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamDef {
    pub name: String,
    /// Every candidate: those every target offers, then the target-only ones.
    pub values: Vec<i64>,
    /// Candidates only some targets offer (`stages in [2, 3, 4] + sm_90a [6, 8]`); each is
    /// also in `values`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_values: Vec<TargetValues>,
    /// A target knob's default: the one value every target offers when `+ TARGET [...]` lists
    /// add others (`mfma in [16] + gfx90a [32] + gfx942 [32]`). Kernel names and `--config`
    /// strings leave the knob out at this value, so adding a knob renames no existing kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<i64>,
}

/// Values of a parameter that one target alone offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetValues {
    pub target: Target,
    pub values: Vec<i64>,
}

impl ParamDef {
    /// The targets that alone offer `value`, or `None` when every target offers it.
    pub fn only_on(&self, value: i64) -> Option<Vec<Target>> {
        let targets: Vec<Target> = self
            .target_values
            .iter()
            .filter(|t| t.values.contains(&value))
            .map(|t| t.target)
            .collect();
        (!targets.is_empty()).then_some(targets)
    }

    /// Whether `target` offers `value` for this parameter.
    pub fn offered_on(&self, value: i64, target: Target) -> bool {
        self.values.contains(&value) && self.only_on(value).is_none_or(|t| t.contains(&target))
    }
}

/// A constraint between parameters: `check` receives the values in parameter order.
#[derive(Clone)]
pub struct Constraint {
    /// The constraint as the author wrote it, for messages.
    pub text: &'static str,
    pub check: fn(&[i64]) -> bool,
}

impl fmt::Debug for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Constraint")
            .field("text", &self.text)
            .finish()
    }
}

/// A bad `--config` string or a point outside the space.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpaceError {
    #[error("malformed config `{0}`: expected `name=value,name=value,...` with integer values")]
    Malformed(String),
    #[error("unknown parameter `{name}`; parameters are: {valid}")]
    UnknownParam { name: String, valid: String },
    #[error("parameter `{0}` is given twice")]
    Duplicate(String),
    #[error("parameter `{name}` is missing; give one of {values}")]
    Missing { name: String, values: String },
    #[error("{name} = {value} is not in the space; choose one of {values}")]
    OutOfRange {
        name: String,
        value: i64,
        values: String,
    },
    #[error("config violates the constraint `{0}`")]
    Constraint(&'static str),
}

/// The cartesian product of parameter values, filtered by constraints.
#[derive(Debug, Clone)]
pub struct ParamSpace {
    pub params: Vec<ParamDef>,
    pub constraints: Vec<Constraint>,
}

impl ParamSpace {
    /// Number of points before constraints.
    pub fn raw_len(&self) -> u64 {
        self.params.iter().map(|p| p.values.len() as u64).product()
    }

    /// The first constraint a point violates, if any.
    pub fn violated(&self, values: &[i64]) -> Option<&'static str> {
        self.constraints
            .iter()
            .find(|c| !(c.check)(values))
            .map(|c| c.text)
    }

    /// The first parameter of a point whose value `target` does not offer, with the targets
    /// that do.
    pub fn not_offered_on(
        &self,
        values: &[i64],
        target: Target,
    ) -> Option<(&ParamDef, i64, Vec<Target>)> {
        self.params.iter().zip(values).find_map(|(p, &v)| {
            p.only_on(v)
                .filter(|t| !t.contains(&target))
                .map(|t| (p, v, t))
        })
    }

    /// Whether a point sets a target knob ([`ParamDef::default`]) to a value `target` lacks
    /// (`mfma = 32` on NVIDIA): such a point is no point of that target's space at all, so
    /// sweeps skip it rather than record a rejection.
    pub fn foreign_knob(&self, values: &[i64], target: Target) -> bool {
        self.params
            .iter()
            .zip(values)
            .any(|(p, &v)| p.default.is_some() && !p.offered_on(v, target))
    }

    /// Every point that satisfies all constraints, in lexicographic order of the value lists.
    pub fn enumerate(&self) -> Vec<Vec<i64>> {
        let mut out = Vec::new();
        let mut idx = vec![0usize; self.params.len()];
        if self.params.iter().any(|p| p.values.is_empty()) {
            return out;
        }
        loop {
            let point: Vec<i64> = idx
                .iter()
                .zip(&self.params)
                .map(|(&i, p)| p.values[i])
                .collect();
            if self.violated(&point).is_none() {
                out.push(point);
            }
            // odometer increment, last parameter fastest
            let mut d = self.params.len();
            loop {
                if d == 0 {
                    return out;
                }
                d -= 1;
                idx[d] += 1;
                if idx[d] < self.params[d].values.len() {
                    break;
                }
                idx[d] = 0;
            }
        }
    }

    /// Number of valid points.
    pub fn len(&self) -> usize {
        self.enumerate().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A deterministic sample of at most `n` valid points, spread evenly over the enumeration.
    pub fn sample(&self, n: usize) -> Vec<Vec<i64>> {
        let all = self.enumerate();
        if all.len() <= n {
            return all;
        }
        (0..n).map(|i| all[i * all.len() / n].clone()).collect()
    }

    /// Parse `tile_m=128,tile_n=64,...` into a point of this space (every parameter given once,
    /// each value one of its candidates, all constraints met).
    pub fn parse_point(&self, text: &str) -> Result<Vec<i64>, SpaceError> {
        let mut given: Vec<Option<i64>> = vec![None; self.params.len()];
        for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| SpaceError::Malformed(text.to_string()))?;
            let (name, value) = (name.trim(), value.trim());
            let value: i64 = value
                .parse()
                .map_err(|_| SpaceError::Malformed(text.to_string()))?;
            let i = self
                .params
                .iter()
                .position(|p| p.name == name)
                .ok_or_else(|| SpaceError::UnknownParam {
                    name: name.to_string(),
                    valid: self.param_names().join(", "),
                })?;
            if given[i].replace(value).is_some() {
                return Err(SpaceError::Duplicate(name.to_string()));
            }
        }
        let mut point = Vec::with_capacity(self.params.len());
        for (p, v) in self.params.iter().zip(given) {
            // a target knob left out takes its default
            let v = v.or(p.default).ok_or_else(|| SpaceError::Missing {
                name: p.name.clone(),
                values: list(&p.values),
            })?;
            if !p.values.contains(&v) {
                return Err(SpaceError::OutOfRange {
                    name: p.name.clone(),
                    value: v,
                    values: list(&p.values),
                });
            }
            point.push(v);
        }
        if let Some(c) = self.violated(&point) {
            return Err(SpaceError::Constraint(c));
        }
        Ok(point)
    }

    pub fn param_names(&self) -> Vec<String> {
        self.params.iter().map(|p| p.name.clone()).collect()
    }

    /// `name=value,...` of a point (the form `--config` takes and caches store), target knobs
    /// at their default left out.
    pub fn assignment(&self, values: &[i64]) -> String {
        self.written(values)
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A point's parameters by name as caches and plans write them: target knobs at their
    /// default left out ([`ParamSpace::parse_point`] and readers fill them back in).
    pub fn written(&self, values: &[i64]) -> Vec<(String, i64)> {
        self.params
            .iter()
            .zip(values)
            .filter(|(p, v)| p.default != Some(**v))
            .map(|(p, v)| (p.name.clone(), *v))
            .collect()
    }
}

fn list(values: &[i64]) -> String {
    values
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a problem fixes about a kernel beyond its tunable parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Variant {
    pub input: DType,
    pub acc: DType,
    pub output: DType,
    /// Layout code, e.g. `rcr` for a GEMM (A, B, D), O's [`AttentionLayout`] code for
    /// attention (`bhsd`, `bshd`; see [`Variant::attention_layout`]) or `thd` for packed
    /// attention ([`Variant::attention_packed`]); empty where it does not apply.
    ///
    /// [`AttentionLayout`]: crate::problem::AttentionLayout
    pub layout: String,
    pub epilogue: Vec<EpilogueOp>,
    /// Elements per aligned global vector access (8, 4, 2 or 1).
    pub align: u32,
    /// The output store (`Store` of the problem); rows when absent.
    #[serde(default)]
    pub store: crate::problem::Store,
    /// The row length a kernel keeps in registers, fixed at compile time: the hidden size of a
    /// row-wise op, the head size of attention; 0 for a GEMM.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub extent: u32,
    /// The mask an attention or softmax kernel applies.
    #[serde(default, skip_serializing_if = "crate::problem::Mask::is_none")]
    pub mask: crate::problem::Mask,
}

impl Variant {
    /// O's layout when this is an attention variant (its layout code is an attention layout's).
    pub fn attention_layout(&self) -> Option<crate::problem::AttentionLayout> {
        crate::problem::AttentionLayout::from_code(&self.layout)
    }

    /// Whether this is a packed (padding-free) attention variant: layout code
    /// [`PACKED_LAYOUT`](crate::problem::PACKED_LAYOUT), Q, K, V and O token-major with
    /// `cu_seqlens` offsets. Its O layout is not an [`AttentionLayout`].
    ///
    /// [`AttentionLayout`]: crate::problem::AttentionLayout
    pub fn attention_packed(&self) -> bool {
        self.layout == crate::problem::PACKED_LAYOUT
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// One kernel: a point of a template's space plus the problem-derived variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Config {
    pub template: String,
    /// Parameter values in the space's order.
    pub params: Vec<(String, i64)>,
    /// The parameters formatted by the template's label (e.g. `128x128x32_w2x2_s4`).
    pub label: String,
    pub variant: Variant,
}

impl Config {
    /// The value of a parameter, if the config has it.
    pub fn get(&self, name: &str) -> Option<i64> {
        self.params.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    /// Parameter values in space order.
    pub fn values(&self) -> Vec<i64> {
        self.params.iter().map(|&(_, v)| v).collect()
    }

    /// The one name of this kernel: its symbol, snapshot file, log line, cache row and CLI
    /// filter, e.g. `gemm_f16_f32acc_128x128x32_w2x2_s4_rcr_bias_gelu_a8`.
    pub fn kernel_name(&self) -> String {
        let v = &self.variant;
        let mut name = format!(
            "{}_{}_{}acc_{}",
            self.template,
            v.input.name(),
            v.acc.name(),
            self.label
        );
        if !v.layout.is_empty() {
            name.push('_');
            name.push_str(&v.layout);
        }
        for e in &v.epilogue {
            name.push('_');
            name.push_str(e.name());
        }
        if v.output != v.input {
            name.push_str("_o");
            name.push_str(v.output.name());
        }
        if !v.store.is_rows() {
            name.push('_');
            name.push_str(&v.store.label());
        }
        if v.extent != 0 {
            // attention kernels (layout `bhsd`, `bshd` or `thd`) are specialised per head
            // size, row-wise kernels per hidden size
            let tag = if v.attention_layout().is_some() || v.attention_packed() {
                'd'
            } else {
                'h'
            };
            name.push_str(&format!("_{tag}{}", v.extent));
        }
        if !v.mask.is_none() {
            name.push('_');
            name.push_str(v.mask.name());
        }
        name.push_str(&format!("_a{}", v.align));
        name
    }

    /// `name=value,...`, the form `--config` takes.
    pub fn assignment(&self) -> String {
        self.params
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kernel_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn space() -> ParamSpace {
        ParamSpace {
            params: vec![
                ParamDef {
                    name: "tile_m".into(),
                    values: vec![64, 128, 256],
                    target_values: vec![],
                    default: None,
                },
                ParamDef {
                    name: "warps_m".into(),
                    values: vec![1, 2, 4],
                    target_values: vec![],
                    default: None,
                },
                ParamDef {
                    name: "stages".into(),
                    values: vec![2, 3, 6],
                    target_values: vec![TargetValues {
                        target: Target::Sm90a,
                        values: vec![6],
                    }],
                    default: None,
                },
            ],
            constraints: vec![Constraint {
                text: "tile_m / warps_m >= 64",
                check: |v| v[0] / v[1] >= 64,
            }],
        }
    }

    #[test]
    fn enumerate_filters_by_constraints() {
        let s = space();
        assert_eq!(s.raw_len(), 27);
        // (64,1) (128,1) (128,2) (256,1) (256,2) (256,4) = 6 pairs × 3 stages
        assert_eq!(s.len(), 18);
        assert!(s.enumerate().iter().all(|p| p[0] / p[1] >= 64));
    }

    #[test]
    fn target_only_values_are_offered_on_their_target_alone() {
        let s = space();
        let stages = &s.params[2];
        assert_eq!(stages.only_on(3), None);
        assert_eq!(stages.only_on(6), Some(vec![Target::Sm90a]));
        assert!(stages.offered_on(6, Target::Sm90a) && !stages.offered_on(6, Target::Sm80));
        assert!(stages.offered_on(2, Target::Gfx90a) && !stages.offered_on(5, Target::Sm90a));
        assert!(s.not_offered_on(&[128, 2, 6], Target::Sm90a).is_none());
        let (p, v, on) = s.not_offered_on(&[128, 2, 6], Target::Gfx942).unwrap();
        assert_eq!((p.name.as_str(), v, on), ("stages", 6, vec![Target::Sm90a]));
        assert!(s.not_offered_on(&[128, 2, 3], Target::Gfx942).is_none());
    }

    #[test]
    fn parse_point_errors_name_choices() {
        let s = space();
        assert_eq!(
            s.parse_point("tile_m=128, warps_m=2,stages=3").unwrap(),
            vec![128, 2, 3]
        );
        let e = s
            .parse_point("tile_m=96,warps_m=2,stages=3")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "tile_m = 96 is not in the space; choose one of 64, 128, 256"
        );
        let e = s.parse_point("tile_q=1").unwrap_err().to_string();
        assert!(e.contains("parameters are: tile_m, warps_m, stages"), "{e}");
        assert!(matches!(
            s.parse_point("tile_m=64,warps_m=2,stages=2"),
            Err(SpaceError::Constraint(_))
        ));
        assert!(matches!(
            s.parse_point("tile_m:64"),
            Err(SpaceError::Malformed(_))
        ));
        assert!(matches!(
            s.parse_point("tile_m=64,warps_m=1"),
            Err(SpaceError::Missing { .. })
        ));
    }

    proptest! {
        #[test]
        fn sample_is_a_deterministic_subset(n in 1usize..20) {
            let s = space();
            let a = s.sample(n);
            let b = s.sample(n);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a.len(), n.min(s.len()));
            let all = s.enumerate();
            for p in &a {
                prop_assert!(all.contains(p));
            }
        }

        #[test]
        fn every_enumerated_point_parses_back(i in 0usize..12) {
            let s = space();
            let p = &s.enumerate()[i];
            let text: Vec<String> = s.params.iter().zip(p).map(|(d, v)| format!("{}={}", d.name, v)).collect();
            prop_assert_eq!(&s.parse_point(&text.join(",")).unwrap(), p);
        }
    }
}
