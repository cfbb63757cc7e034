//! The parts of a cache key (contract 2): device fingerprint, template version, problem.
//!
//! Owns [`DeviceFingerprint`] (name, arch, SM count, driver, toolchain, simulated) and its
//! derived [`DeviceId`], [`TemplateKey`] (template name + source hash), [`ProblemRecord`]
//! (canonical problem key string + op + JSON) and [`WinnerKey`], the exact key a winner is
//! looked up by. Everything is plain strings and numbers: this crate knows none of
//! Tessera's own types; callers (tuner, CLI) convert theirs into these.
//!
//! Depends on `field` and [`crate::error`].

use std::fmt;

use sha2::{Digest, Sha256};

use crate::error::FieldError;
use crate::field;

/// Everything about a device and its toolchain that a measurement depends on. Two devices
/// share cached results only if every field is equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceFingerprint {
    /// Marketing name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// Compilation target, e.g. `sm_90a` or `gfx90a`.
    pub arch: String,
    /// Streaming multiprocessors (NVIDIA) or compute units (AMD).
    pub sm_count: u32,
    /// Driver version, e.g. `580.65.06`.
    pub driver: String,
    /// Runtime compiler and its version, e.g. `nvrtc 13.0` or `hiprtc 6.2`.
    pub toolchain: String,
    /// Whether the numbers come from the simulated device (never mixed with real ones).
    pub simulated: bool,
}

/// A stable id derived from every field of a [`DeviceFingerprint`] (32 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(String);

impl DeviceId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl DeviceFingerprint {
    /// The id: SHA-256 over the length-prefixed fields, first 16 bytes in hex. Never read
    /// from a file; always recomputed from the fields.
    pub fn id(&self) -> DeviceId {
        let mut h = Sha256::new();
        let sm = self.sm_count.to_string();
        let sim = if self.simulated { "1" } else { "0" };
        for part in [
            "tessera-device-v1",
            &self.name,
            &self.arch,
            &sm,
            &self.driver,
            &self.toolchain,
            sim,
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let digest = h.finalize();
        DeviceId(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        field::DEVICE_NAME.check(&self.name)?;
        field::DEVICE_ARCH.check(&self.arch)?;
        if i64::from(self.sm_count) > field::MAX_SM_COUNT {
            return Err(FieldError::new(
                "device.sm_count",
                format!("{} is implausible", self.sm_count),
            ));
        }
        field::DEVICE_DRIVER.check(&self.driver)?;
        field::DEVICE_TOOLCHAIN.check(&self.toolchain)?;
        Ok(())
    }
}

impl fmt::Display for DeviceFingerprint {
    /// `NVIDIA H100 80GB HBM3 (sm_90a, 132 SMs, driver 580.65.06, nvrtc 13.0)`, plus
    /// `, simulated` for the simulated device.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {} SMs, driver {}, {}{})",
            self.name,
            self.arch,
            self.sm_count,
            self.driver,
            self.toolchain,
            if self.simulated { ", simulated" } else { "" }
        )
    }
}

/// A template at one version: its name and the source hash its macro computed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateKey {
    pub name: String,
    pub source_hash: String,
}

impl TemplateKey {
    pub fn new(name: impl Into<String>, source_hash: impl Into<String>) -> TemplateKey {
        TemplateKey {
            name: name.into(),
            source_hash: source_hash.into(),
        }
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        field::TEMPLATE_NAME.check(&self.name)?;
        field::TEMPLATE_HASH.check(&self.source_hash)
    }
}

impl fmt::Display for TemplateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.source_hash)
    }
}

/// A problem as the cache keeps it: the canonical key string (e.g.
/// `gemm m=384 n=768 k=768 f16->f16 rcr`), the op (`gemm`) and the full problem as JSON.
/// The key alone identifies the problem; the JSON is descriptive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProblemRecord {
    pub key: String,
    pub op: String,
    pub json: String,
}

impl ProblemRecord {
    pub fn new(key: impl Into<String>, op: impl Into<String>, json: impl Into<String>) -> Self {
        ProblemRecord {
            key: key.into(),
            op: op.into(),
            json: json.into(),
        }
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        field::PROBLEM_KEY.check(&self.key)?;
        field::PROBLEM_OP.check(&self.op)?;
        field::check_json_object("problem.json", &self.json)
    }
}

/// The exact key of a winner: device fingerprint (toolchain included), template name and
/// source hash, problem key. A winner is never reused when any part differs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WinnerKey {
    pub device: DeviceFingerprint,
    pub template: TemplateKey,
    pub problem_key: String,
}

impl fmt::Display for WinnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} | {} | {}",
            self.device, self.template, self.problem_key
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn h100() -> DeviceFingerprint {
        DeviceFingerprint {
            name: "NVIDIA H100 80GB HBM3".into(),
            arch: "sm_90a".into(),
            sm_count: 132,
            driver: "580.65.06".into(),
            toolchain: "nvrtc 13.0".into(),
            simulated: false,
        }
    }

    #[test]
    fn device_id_depends_on_every_field() {
        let base = h100();
        let id = base.id();
        assert_eq!(id.as_str().len(), 32);
        assert_eq!(id, h100().id(), "stable");
        let variants = [
            DeviceFingerprint {
                name: "NVIDIA H200".into(),
                ..h100()
            },
            DeviceFingerprint {
                arch: "sm_80".into(),
                ..h100()
            },
            DeviceFingerprint {
                sm_count: 114,
                ..h100()
            },
            DeviceFingerprint {
                driver: "575.0".into(),
                ..h100()
            },
            DeviceFingerprint {
                toolchain: "nvrtc 12.8".into(),
                ..h100()
            },
            DeviceFingerprint {
                simulated: true,
                ..h100()
            },
        ];
        for v in variants {
            assert_ne!(v.id(), id, "{v}");
        }
    }

    #[test]
    fn id_is_not_fooled_by_shifting_text_between_fields() {
        let a = DeviceFingerprint {
            name: "ab".into(),
            arch: "c".into(),
            ..h100()
        };
        let b = DeviceFingerprint {
            name: "a".into(),
            arch: "bc".into(),
            ..h100()
        };
        assert_ne!(a.id(), b.id());
    }

    #[test]
    fn validation_names_the_field() {
        assert!(h100().validate().is_ok());
        let bad = DeviceFingerprint {
            arch: "sm 90".into(),
            ..h100()
        };
        assert_eq!(bad.validate().unwrap_err().field, "device.arch");
        assert!(TemplateKey::new("gemm", "9f8e").validate().is_ok());
        assert!(TemplateKey::new("gemm", "").validate().is_err());
        let p = ProblemRecord::new("gemm m=1 n=2 k=3 f16->f16 rcr", "gemm", r#"{"m":1}"#);
        assert!(p.validate().is_ok());
        assert!(ProblemRecord {
            json: "1".into(),
            ..p
        }
        .validate()
        .is_err());
    }

    #[test]
    fn display_labels_simulated_devices() {
        let d = DeviceFingerprint {
            simulated: true,
            ..h100()
        };
        assert!(d.to_string().ends_with("nvrtc 13.0, simulated)"), "{d}");
    }
}
