//! The compiled plan: a directory holding `plan.json` (what to launch, with which config, on
//! which views of which buffer, per bucket) and `weights.bin` (every weight the launches read,
//! converted and concatenated, each at a 256-byte-aligned offset). It holds no code: kernels are
//! generated again from template + config when the plan is loaded, so a plan can carry no more
//! than a shared cache can.
//!
//! Writing goes to a temporary directory beside the target that is renamed at the end, so a
//! failed compile leaves nothing half-written. Loading checks the schema version first, then the
//! weights file (size and SHA-256); [`Plan::check_device`] compares the device and toolchain.

use crate::bucket::Bucket;
use crate::graph::{AttentionStore, InputKind, OutputKind};
use crate::import::{BertConfig, Source};
use crate::lower::Glue;
use crate::passes::PassReport;
use crate::tuning::KernelChoice;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tessera_cache::DeviceFingerprint;
use tessera_dsl::DType;

/// Bumped on every incompatible change of [`Plan`].
pub const SCHEMA_VERSION: u32 = 2;
pub const PLAN_FILE: &str = "plan.json";
pub const WEIGHTS_FILE: &str = "weights.bin";

/// The device and toolchain the kernels were chosen (and tuned) for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanDevice {
    pub name: String,
    pub arch: String,
    pub sm_count: u32,
    pub driver: String,
    pub toolchain: String,
    pub simulated: bool,
}

impl From<&DeviceFingerprint> for PlanDevice {
    fn from(f: &DeviceFingerprint) -> Self {
        PlanDevice {
            name: f.name.clone(),
            arch: f.arch.clone(),
            sm_count: f.sm_count,
            driver: f.driver.clone(),
            toolchain: f.toolchain.clone(),
            simulated: f.simulated,
        }
    }
}

/// Which buffer a view points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Buffer {
    /// The one activation arena (inputs and outputs live there too).
    Arena,
    /// The weights file, loaded as one buffer.
    Weights,
}

/// A byte range of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub buffer: Buffer,
    pub offset: u64,
    pub bytes: u64,
}

/// One weight in `weights.bin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightEntry {
    pub name: String,
    pub shape: Vec<u64>,
    pub offset: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightTable {
    pub file: String,
    pub dtype: DType,
    pub bytes: u64,
    pub sha256: String,
    pub tensors: Vec<WeightEntry>,
}

/// The arena shared by all buckets, against what no reuse would need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArenaSummary {
    pub bytes: u64,
    pub naive_bytes: u64,
    pub alignment: u64,
}

/// What a launch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "callee", rename_all = "snake_case")]
pub enum Callee {
    /// Index into [`Plan::kernels`].
    Kernel { kernel: usize },
    /// A step with no kernel template yet (see `lower::Glue`).
    Glue { glue: Glue },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchArg {
    /// The kernel ABI's name for the operand (`a`, `bias`, `q`, `kv_lens`, `y`).
    pub name: String,
    pub view: View,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    pub node: String,
    #[serde(flatten)]
    pub callee: Callee,
    pub args: Vec<LaunchArg>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scalars: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_store: Option<AttentionStore>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSlot {
    pub kind: InputKind,
    pub shape: Vec<u64>,
    pub view: View,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSlot {
    pub kind: OutputKind,
    pub shape: Vec<u64>,
    pub view: View,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketPlan {
    pub bucket: Bucket,
    /// Arena bytes this bucket uses, and what it would use with no reuse.
    pub arena_bytes: u64,
    pub naive_bytes: u64,
    pub inputs: Vec<InputSlot>,
    pub outputs: Vec<OutputSlot>,
    pub launches: Vec<Launch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub schema_version: u32,
    pub tessera_version: String,
    pub source: Source,
    pub model: BertConfig,
    pub dtype: DType,
    pub device: PlanDevice,
    pub passes: Vec<PassReport>,
    pub kernels: Vec<KernelChoice>,
    pub arena: ArenaSummary,
    pub weights: WeightTable,
    pub buckets: Vec<BucketPlan>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a Tessera plan: {what}")]
    Malformed { path: PathBuf, what: String },
    #[error("{path}: plan schema version {found}, this Tessera reads version {supported}; compile the model again")]
    Schema {
        path: PathBuf,
        found: u64,
        supported: u32,
    },
    #[error("{path}: weights file {what}; the plan is damaged, compile the model again")]
    Weights { path: PathBuf, what: String },
    #[error("the plan was compiled for {plan}, this device is {here}; compile the model for this device")]
    Device { plan: String, here: String },
    #[error("the plan was compiled with toolchain `{plan}`, this machine has `{here}`; compile the model again")]
    Toolchain { plan: String, here: String },
    #[error("{path} exists and is not a Tessera plan; refusing to replace it")]
    OutputExists { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PlanError + '_ {
    move |source| PlanError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Plan {
    /// Write the plan directory `out` (replacing an earlier plan there) through a temporary
    /// directory that is renamed into place last.
    pub fn save(&self, weights: &[u8], out: &Path) -> Result<(), PlanError> {
        if out.exists() && !out.join(PLAN_FILE).is_file() {
            return Err(PlanError::OutputExists {
                path: out.to_path_buf(),
            });
        }
        let name = out
            .file_name()
            .map_or("plan".into(), |n| n.to_string_lossy().to_string());
        let tmp = out.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let result = (|| {
            if tmp.exists() {
                std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
            }
            std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
            let text = serde_json::to_string_pretty(self).map_err(|e| PlanError::Malformed {
                path: tmp.join(PLAN_FILE),
                what: e.to_string(),
            })?;
            std::fs::write(tmp.join(WEIGHTS_FILE), weights).map_err(io(&tmp))?;
            std::fs::write(tmp.join(PLAN_FILE), text).map_err(io(&tmp))?;
            if out.exists() {
                std::fs::remove_dir_all(out).map_err(io(out))?;
            }
            std::fs::rename(&tmp, out).map_err(io(out))
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Read and check a plan directory (schema version, weights file size and hash).
    pub fn load(dir: &Path) -> Result<Plan, PlanError> {
        let path = dir.join(PLAN_FILE);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let malformed = |what: String| PlanError::Malformed {
            path: path.clone(),
            what,
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
        let found = value
            .get("schema_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| malformed("no schema_version".into()))?;
        if found != u64::from(SCHEMA_VERSION) {
            return Err(PlanError::Schema {
                path,
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let plan: Plan = serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
        plan.read_weights(dir)?;
        Ok(plan)
    }

    /// [`Plan::load`], then [`Plan::check_device`]: what an executor calls.
    pub fn load_for_device(dir: &Path, here: &DeviceFingerprint) -> Result<Plan, PlanError> {
        let plan = Plan::load(dir)?;
        plan.check_device(here)?;
        Ok(plan)
    }

    /// The weights file of the plan in `dir`, checked against the plan.
    pub fn read_weights(&self, dir: &Path) -> Result<Vec<u8>, PlanError> {
        let path = dir.join(&self.weights.file);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let bad = |what: String| PlanError::Weights {
            path: path.clone(),
            what,
        };
        if bytes.len() as u64 != self.weights.bytes {
            return Err(bad(format!(
                "has {} bytes, the plan expects {}",
                bytes.len(),
                self.weights.bytes
            )));
        }
        if crate::import::sha256_hex(&bytes) != self.weights.sha256 {
            return Err(bad("does not match the plan's SHA-256".into()));
        }
        Ok(bytes)
    }

    /// The plan's kernels were chosen for `here`'s device and toolchain.
    pub fn check_device(&self, here: &DeviceFingerprint) -> Result<(), PlanError> {
        let here = PlanDevice::from(here);
        let describe = |d: &PlanDevice| {
            format!(
                "{} ({}, {} SMs{})",
                d.name,
                d.arch,
                d.sm_count,
                if d.simulated { ", simulated" } else { "" }
            )
        };
        if (&here.name, &here.arch, here.sm_count, here.simulated)
            != (
                &self.device.name,
                &self.device.arch,
                self.device.sm_count,
                self.device.simulated,
            )
        {
            return Err(PlanError::Device {
                plan: describe(&self.device),
                here: describe(&here),
            });
        }
        if here.toolchain != self.device.toolchain {
            return Err(PlanError::Toolchain {
                plan: self.device.toolchain.clone(),
                here: here.toolchain,
            });
        }
        Ok(())
    }

    /// The buckets, as the bucket choice takes them.
    pub fn bucket_list(&self) -> Vec<Bucket> {
        self.buckets.iter().map(|b| b.bucket).collect()
    }
}
