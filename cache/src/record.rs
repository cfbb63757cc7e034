//! What the cache stores per candidate and per winner.
//!
//! Owns [`ResultRow`] (one candidate kernel measured, or rejected, for one problem on one
//! device: contract 3 makes every failure a row with a reason), [`WinnerRow`] (the kernel
//! chosen for a key, with the guards dispatch checks), their parts ([`Status`], [`Timing`],
//! [`Throughput`], [`Provenance`]), the [`Candidate`] view that import hooks inspect, and the
//! validation every row passes before it is written or imported. There is no code anywhere
//! in these rows: parameters and measurements only.
//!
//! Every time a row claims is bounded ([`MIN_TIMING_MS`]..=[`MAX_TIMING_MS`]): the tuner, a
//! caller storing a row and an import all go through [`ResultRow::validate`], so no stored
//! time can be zero, negative, non-finite or absurdly large.
//!
//! Depends on [`crate::key`], `field`, [`crate::refusal`], [`crate::timestamp`],
//! [`crate::error`].

use std::fmt;
use std::str::FromStr;

use crate::error::FieldError;
use crate::field;
use crate::key::{DeviceFingerprint, ProblemRecord, TemplateKey, WinnerKey};
use crate::refusal::Refusal;
use crate::timestamp::Timestamp;

/// The outcome of one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Verified against the reference and timed.
    Ok,
    /// Refused before compiling (invalid for the problem or device, resource overflow).
    Rejected,
    CompileError,
    LaunchError,
    /// Failed the reference check (contract 4).
    WrongResult,
    Timeout,
    /// Pruned: a quick probe showed it far slower than the best so far.
    SkippedSlow,
    /// Pruned before compiling: the cost model ranked it outside the candidates a sweep keeps
    /// (the reason says its rank and estimate). Never compiled, never measured; stored so
    /// `cache why` can say why it was not tried. Written since schema version 2.
    Pruned,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Ok,
        Status::Rejected,
        Status::CompileError,
        Status::LaunchError,
        Status::WrongResult,
        Status::Timeout,
        Status::SkippedSlow,
        Status::Pruned,
    ];

    /// The word stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Rejected => "rejected",
            Status::CompileError => "compile_error",
            Status::LaunchError => "launch_error",
            Status::WrongResult => "wrong_result",
            Status::Timeout => "timeout",
            Status::SkippedSlow => "skipped_slow",
            Status::Pruned => "pruned",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Status, FieldError> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                FieldError::new("status", format!("{:?} is not a known status", truncate(s)))
            })
    }
}

/// The shortest per-launch time a row may claim, in milliseconds (1 ns: no kernel launch
/// completes faster; anything below is a broken or forged measurement).
pub const MIN_TIMING_MS: f64 = 1e-6;

/// The longest per-launch time a row may claim, in milliseconds (about 17 minutes: the tuner
/// times candidates out long before). Bounding every stored time keeps everything that
/// computes with them (throughput, plots, speedups) finite.
pub const MAX_TIMING_MS: f64 = 1e6;

/// Timing statistics of one candidate, in milliseconds per launch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub median_ms: f64,
    pub p10_ms: f64,
    pub p90_ms: f64,
    /// Timed runs behind these numbers (at least 1).
    pub samples: u32,
}

impl Timing {
    /// Relative spread `(p90 - p10) / median`: the noise recorded per contract 5.
    pub fn noise(&self) -> f64 {
        (self.p90_ms - self.p10_ms) / self.median_ms
    }

    /// Every time within [`MIN_TIMING_MS`]..=[`MAX_TIMING_MS`], `p10 <= median <= p90`, and
    /// a sample count in range.
    pub fn validate(&self) -> Result<(), FieldError> {
        field::check_time_ms("timing.median_ms", self.median_ms)?;
        field::check_time_ms("timing.p10_ms", self.p10_ms)?;
        field::check_time_ms("timing.p90_ms", self.p90_ms)?;
        if !(self.p10_ms <= self.median_ms && self.median_ms <= self.p90_ms) {
            return Err(FieldError::new(
                "timing",
                format!(
                    "need p10 <= median <= p90, got {} / {} / {}",
                    self.p10_ms, self.median_ms, self.p90_ms
                ),
            ));
        }
        if self.samples == 0 || i64::from(self.samples) > field::MAX_SAMPLES {
            return Err(FieldError::new(
                "timing.samples",
                format!("{} is out of range", self.samples),
            ));
        }
        Ok(())
    }
}

/// What [`Throughput::value`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ThroughputUnit {
    /// TFLOP/s (compute-bound ops).
    Tflops,
    /// GB/s (memory-bound ops).
    Gbs,
}

impl ThroughputUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            ThroughputUnit::Tflops => "tflops",
            ThroughputUnit::Gbs => "gbs",
        }
    }
}

impl FromStr for ThroughputUnit {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        match s {
            "tflops" => Ok(ThroughputUnit::Tflops),
            "gbs" => Ok(ThroughputUnit::Gbs),
            _ => Err(FieldError::new(
                "throughput_unit",
                format!("{:?} is not tflops or gbs", truncate(s)),
            )),
        }
    }
}

/// Achieved throughput.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    pub value: f64,
    pub unit: ThroughputUnit,
}

/// Where and when a row was measured, and by which Tessera.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Provenance {
    /// Host name of the machine that measured it.
    pub origin_host: String,
    /// e.g. `tessera 0.1.0`.
    pub tool_version: String,
    pub measured_at: Timestamp,
}

impl Provenance {
    pub fn validate(&self) -> Result<(), FieldError> {
        field::ORIGIN_HOST.check(&self.origin_host)?;
        field::TOOL_VERSION.check(&self.tool_version)
    }
}

/// One candidate kernel's outcome for one problem on one device. Key: device, template
/// (name + hash), problem key, kernel name.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub device: DeviceFingerprint,
    pub template: TemplateKey,
    pub problem: ProblemRecord,
    /// The kernel's one name (contract 1).
    pub kernel_name: String,
    /// The config as `name=value,...` (what `--config` takes).
    pub config: String,
    /// The config as a JSON object.
    pub config_json: String,
    /// What dispatch must check before using this kernel for a problem (alignment, shape
    /// range), as a JSON object; carried into the winner when this row wins.
    pub guards_json: String,
    pub status: Status,
    /// Why it is not `ok` (required then); free text, may be empty for `ok`.
    pub reason: String,
    /// Required when `status` is `ok`; may be present for others (e.g. `skipped_slow`).
    pub timing: Option<Timing>,
    pub throughput: Option<Throughput>,
    /// Largest relative error against the reference.
    pub max_rel_error: Option<f64>,
    /// Seconds spent compiling this candidate.
    pub compile_s: Option<f64>,
    pub provenance: Provenance,
}

/// The parts of a row that name a kernel configuration: what an import hook checks (e.g.
/// that the config is a member of the template's space).
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub device: &'a DeviceFingerprint,
    pub template: &'a TemplateKey,
    pub problem: &'a ProblemRecord,
    pub kernel_name: &'a str,
    pub config: &'a str,
    pub config_json: &'a str,
    pub guards_json: &'a str,
    /// The row's status (`ok` for a winner row).
    pub status: Status,
    /// The claimed median time per launch, when the row has one.
    pub median_ms: Option<f64>,
    /// The claimed throughput, when the row has one.
    pub throughput: Option<Throughput>,
    /// The claimed largest relative error against the reference (result rows only).
    pub max_rel_error: Option<f64>,
}

/// A caller-supplied check run on every imported row after the cache's own validation;
/// `Err(refusal)` skips the row and reports why.
pub type CandidateCheck<'a> = &'a dyn Fn(&Candidate<'_>) -> Result<(), Refusal>;

impl ResultRow {
    /// The key of the winner this row competes for.
    pub fn winner_key(&self) -> WinnerKey {
        WinnerKey {
            device: self.device.clone(),
            template: self.template.clone(),
            problem_key: self.problem.key.clone(),
        }
    }

    pub fn candidate(&self) -> Candidate<'_> {
        Candidate {
            device: &self.device,
            template: &self.template,
            problem: &self.problem,
            kernel_name: &self.kernel_name,
            config: &self.config,
            config_json: &self.config_json,
            guards_json: &self.guards_json,
            status: self.status,
            median_ms: self.timing.map(|t| t.median_ms),
            throughput: self.throughput,
            max_rel_error: self.max_rel_error,
        }
    }

    /// Whether this row can win: `ok` with a timing.
    pub fn is_eligible(&self) -> bool {
        self.status == Status::Ok && self.timing.is_some()
    }

    /// Every field against its whitelist and bounds, and the status/timing rules.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.device.validate()?;
        self.template.validate()?;
        self.problem.validate()?;
        field::KERNEL_NAME.check(&self.kernel_name)?;
        field::check_assignment(&self.config)?;
        field::check_json_object("config_json", &self.config_json)?;
        field::check_json_object("guards_json", &self.guards_json)?;
        field::REASON.check(&self.reason)?;
        if let Some(t) = &self.timing {
            t.validate()?;
        }
        match self.status {
            Status::Ok if self.timing.is_none() => {
                return Err(FieldError::new("timing", "an ok result needs a timing"));
            }
            Status::Ok => {}
            _ if self.reason.trim().is_empty() => {
                return Err(FieldError::new(
                    "reason",
                    format!("a {} result needs a reason", self.status),
                ));
            }
            _ => {}
        }
        if let Some(tp) = &self.throughput {
            field::check_non_negative("throughput", tp.value)?;
        }
        if let Some(e) = self.max_rel_error {
            field::check_non_negative("max_rel_error", e)?;
        }
        if let Some(c) = self.compile_s {
            field::check_non_negative("compile_s", c)?;
        }
        self.provenance.validate()
    }
}

/// The kernel chosen for one [`WinnerKey`], with the guards dispatch checks (contract 2).
#[derive(Debug, Clone, PartialEq)]
pub struct WinnerRow {
    pub device: DeviceFingerprint,
    pub template: TemplateKey,
    pub problem: ProblemRecord,
    pub kernel_name: String,
    pub config: String,
    pub config_json: String,
    pub median_ms: f64,
    /// Alignment, shape range, ... as a JSON object.
    pub guards_json: String,
    pub provenance: Provenance,
}

impl WinnerRow {
    /// The winner a result makes, if it is eligible (`ok` and timed).
    pub fn from_result(r: &ResultRow) -> Option<WinnerRow> {
        let timing = r.timing.filter(|_| r.status == Status::Ok)?;
        Some(WinnerRow {
            device: r.device.clone(),
            template: r.template.clone(),
            problem: r.problem.clone(),
            kernel_name: r.kernel_name.clone(),
            config: r.config.clone(),
            config_json: r.config_json.clone(),
            median_ms: timing.median_ms,
            guards_json: r.guards_json.clone(),
            provenance: r.provenance.clone(),
        })
    }

    pub fn key(&self) -> WinnerKey {
        WinnerKey {
            device: self.device.clone(),
            template: self.template.clone(),
            problem_key: self.problem.key.clone(),
        }
    }

    pub fn candidate(&self) -> Candidate<'_> {
        Candidate {
            device: &self.device,
            template: &self.template,
            problem: &self.problem,
            kernel_name: &self.kernel_name,
            config: &self.config,
            config_json: &self.config_json,
            guards_json: &self.guards_json,
            status: Status::Ok,
            median_ms: Some(self.median_ms),
            throughput: None,
            max_rel_error: None,
        }
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        self.device.validate()?;
        self.template.validate()?;
        self.problem.validate()?;
        field::KERNEL_NAME.check(&self.kernel_name)?;
        field::check_assignment(&self.config)?;
        field::check_json_object("config_json", &self.config_json)?;
        field::check_time_ms("median_ms", self.median_ms)?;
        field::check_json_object("guards_json", &self.guards_json)?;
        self.provenance.validate()
    }
}

/// The first characters of untrusted text, for messages.
fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn device() -> DeviceFingerprint {
        DeviceFingerprint {
            name: "NVIDIA H100 80GB HBM3".into(),
            arch: "sm_90a".into(),
            sm_count: 132,
            driver: "580.65.06".into(),
            toolchain: "nvrtc 13.0".into(),
            simulated: false,
        }
    }

    pub(crate) fn ok_row(kernel: &str, median: f64) -> ResultRow {
        ResultRow {
            device: device(),
            template: TemplateKey::new("gemm", "h1"),
            problem: ProblemRecord::new(
                "gemm m=384 n=768 k=768 f16->f16 rcr",
                "gemm",
                r#"{"m":384}"#,
            ),
            kernel_name: kernel.into(),
            config: "BM=128,BN=128".into(),
            config_json: r#"{"BM":128,"BN":128}"#.into(),
            guards_json: r#"{"align":8}"#.into(),
            status: Status::Ok,
            reason: String::new(),
            timing: Some(Timing {
                median_ms: median,
                p10_ms: median * 0.98,
                p90_ms: median * 1.03,
                samples: 100,
            }),
            throughput: Some(Throughput {
                value: 512.0,
                unit: ThroughputUnit::Tflops,
            }),
            max_rel_error: Some(1e-3),
            compile_s: Some(0.4),
            provenance: Provenance {
                origin_host: "gpu-1".into(),
                tool_version: "tessera 0.1.0".into(),
                measured_at: Timestamp::parse("2025-06-01T12:00:00Z").unwrap(),
            },
        }
    }

    #[test]
    fn status_words_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
        }
        assert!("OK".parse::<Status>().is_err());
        assert!("fast".parse::<Status>().is_err());
    }

    #[test]
    fn a_good_row_validates() {
        ok_row("k1", 0.5).validate().unwrap();
    }

    #[test]
    fn status_and_timing_rules() {
        let mut r = ok_row("k1", 0.5);
        r.timing = None;
        assert_eq!(r.validate().unwrap_err().field, "timing");

        let mut r = ok_row("k1", 0.5);
        r.status = Status::CompileError;
        assert_eq!(r.validate().unwrap_err().field, "reason");
        r.reason = "ptxas: too much shared memory".into();
        r.timing = None;
        r.validate().unwrap();

        let mut r = ok_row("k1", 0.5);
        r.timing = Some(Timing {
            median_ms: 0.5,
            p10_ms: 0.6,
            p90_ms: 0.7,
            samples: 10,
        });
        assert_eq!(r.validate().unwrap_err().field, "timing");
        r.timing = Some(Timing {
            median_ms: 0.5,
            p10_ms: 0.4,
            p90_ms: 0.7,
            samples: 0,
        });
        assert_eq!(r.validate().unwrap_err().field, "timing.samples");
        r.timing = Some(Timing {
            median_ms: f64::NAN,
            p10_ms: 0.4,
            p90_ms: 0.7,
            samples: 3,
        });
        assert!(r.validate().is_err());

        let mut r = ok_row("k1", 0.5);
        r.max_rel_error = Some(-1.0);
        assert_eq!(r.validate().unwrap_err().field, "max_rel_error");
        let mut r = ok_row("k1", 0.5);
        r.throughput = Some(Throughput {
            value: f64::INFINITY,
            unit: ThroughputUnit::Gbs,
        });
        assert_eq!(r.validate().unwrap_err().field, "throughput");
    }

    #[test]
    fn timings_are_bounded() {
        for median in [1e307, f64::MAX, 1e6 * 1.01, 1e-7, f64::MIN_POSITIVE] {
            let mut r = ok_row("k1", 0.5);
            r.timing = Some(Timing {
                median_ms: median,
                p10_ms: median,
                p90_ms: median,
                samples: 10,
            });
            let e = r.validate().unwrap_err();
            assert!(e.field.starts_with("timing."), "{median}: {e}");
            let w = WinnerRow {
                median_ms: median,
                ..WinnerRow::from_result(&ok_row("k1", 0.5)).unwrap()
            };
            assert_eq!(w.validate().unwrap_err().field, "median_ms", "{median}");
        }
        let mut r = ok_row("k1", 0.5);
        r.timing = Some(Timing {
            median_ms: MAX_TIMING_MS,
            p10_ms: MIN_TIMING_MS,
            p90_ms: MAX_TIMING_MS,
            samples: 1,
        });
        r.validate().unwrap();
    }

    #[test]
    fn winner_from_result_only_when_ok() {
        let r = ok_row("k1", 0.5);
        let w = WinnerRow::from_result(&r).unwrap();
        assert_eq!(w.median_ms, 0.5);
        assert_eq!(w.guards_json, r.guards_json);
        assert_eq!(w.key(), r.winner_key());
        w.validate().unwrap();
        let mut bad = r.clone();
        bad.status = Status::WrongResult;
        assert!(WinnerRow::from_result(&bad).is_none());
    }
}
