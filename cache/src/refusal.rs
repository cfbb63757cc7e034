//! Why a row of an untrusted file was not taken: the typed reasons import reports.
//!
//! Owns [`Refusal`] (a [`RefusalKind`] and a human-readable detail) and [`RefusalKind`]. The
//! cache's own checks produce [`RefusalKind::InvalidField`], [`RefusalKind::Unverified`] and
//! [`RefusalKind::LocalMeasurement`]; the other kinds name what a caller's
//! [`crate::CandidateCheck`] re-derives from this build's templates and devices (the cache
//! crate knows none of them, so it only carries the vocabulary).
//!
//! Depends on [`crate::error`].

use std::fmt;

use crate::error::FieldError;

/// What kind of check refused a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalKind {
    /// A field fails the cache's own validation (whitelists, bounds, status/timing rules).
    InvalidField,
    /// The template is not one of this build's.
    UnknownTemplate,
    /// The template is this build's, at another source hash.
    StaleTemplate,
    /// The problem description does not parse, or it is not the problem its key names.
    ProblemMismatch,
    /// The config is not a point of the template's space.
    ConfigOutsideSpace,
    /// The kernel name is not the one the template gives this config and problem.
    KernelNameMismatch,
    /// The config, or its JSON form, is not the one the template derives.
    ConfigMismatch,
    /// The device's architecture is unknown, so its throughput ceiling is unknown.
    UnknownDevice,
    /// The claimed time implies a throughput above the device's roof.
    AboveRoof,
    /// The stored throughput is not the one the problem and the median imply.
    ThroughputMismatch,
    /// An `ok` row claims to have passed the correctness gate without the evidence: no
    /// recorded error against the reference, or (for a winner row) no `ok` result row with
    /// one behind it in the same file.
    Unverified,
    /// An `ok` row whose recorded error against the reference is above the tolerance of the
    /// gate for its output dtype.
    AboveTolerance,
    /// The local row of this candidate was measured on this machine; imports never replace
    /// those unless asked to.
    LocalMeasurement,
}

impl RefusalKind {
    /// A stable word for JSON output and filtering.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::InvalidField => "invalid_field",
            RefusalKind::UnknownTemplate => "unknown_template",
            RefusalKind::StaleTemplate => "stale_template",
            RefusalKind::ProblemMismatch => "problem_mismatch",
            RefusalKind::ConfigOutsideSpace => "config_outside_space",
            RefusalKind::KernelNameMismatch => "kernel_name_mismatch",
            RefusalKind::ConfigMismatch => "config_mismatch",
            RefusalKind::UnknownDevice => "unknown_device",
            RefusalKind::AboveRoof => "above_roof",
            RefusalKind::ThroughputMismatch => "throughput_mismatch",
            RefusalKind::Unverified => "unverified",
            RefusalKind::AboveTolerance => "above_tolerance",
            RefusalKind::LocalMeasurement => "local_measurement",
        }
    }
}

impl fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one row was refused: its kind and what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct Refusal {
    pub kind: RefusalKind,
    pub detail: String,
}

impl Refusal {
    pub fn new(kind: RefusalKind, detail: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            detail: detail.into(),
        }
    }
}

impl From<FieldError> for Refusal {
    fn from(e: FieldError) -> Refusal {
        Refusal::new(RefusalKind::InvalidField, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_its_kind_and_detail() {
        let r: Refusal = FieldError::new("timing.median_ms", "1e307 ms is too long").into();
        assert_eq!(r.kind, RefusalKind::InvalidField);
        assert_eq!(
            r.to_string(),
            "invalid_field: timing.median_ms: 1e307 ms is too long"
        );
        assert_eq!(RefusalKind::AboveRoof.to_string(), "above_roof");
        assert_eq!(RefusalKind::Unverified.to_string(), "unverified");
    }
}
