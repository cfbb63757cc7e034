//! What every stored value may look like: character whitelists and length bounds.
//!
//! Owns the field rules that [`crate::key`] and [`crate::record`] validate against. The same
//! rules guard rows this process writes and rows read from an untrusted file, so an imported
//! cache can never carry text that a later shell line, file name or generated kernel would
//! choke on, nor values large enough to hurt.
//!
//! Depends on [`crate::error`] only.

use crate::error::FieldError;

/// The rule one text field follows.
pub(crate) struct TextRule {
    pub field: &'static str,
    pub max_len: usize,
    pub may_be_empty: bool,
    pub allowed: fn(char) -> bool,
    /// The allowed characters in words, for the refusal message.
    pub allowed_desc: &'static str,
}

impl TextRule {
    pub fn check(&self, value: &str) -> Result<(), FieldError> {
        if value.is_empty() {
            return if self.may_be_empty {
                Ok(())
            } else {
                Err(FieldError::new(self.field, "is empty"))
            };
        }
        if value.len() > self.max_len {
            return Err(FieldError::new(
                self.field,
                format!("is {} bytes long (at most {})", value.len(), self.max_len),
            ));
        }
        if let Some(c) = value.chars().find(|&c| !(self.allowed)(c)) {
            return Err(FieldError::new(
                self.field,
                format!("has {c:?}; only {} are allowed", self.allowed_desc),
            ));
        }
        Ok(())
    }
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn hash_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

fn problem_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '=' | ',' | ':' | '>' | '-' | ' ')
}

fn label_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '_' | '.' | ',' | ':' | '-' | ' ' | '(' | ')' | '/' | '+')
}

fn host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

fn version_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '+' | ' ')
}

fn assignment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '=' | ',' | '-' | '.')
}

/// Free text (reasons): printable characters, newlines and tabs; no other control codes.
fn reason_char(c: char) -> bool {
    !c.is_control() || c == '\n' || c == '\t'
}

pub(crate) const TEMPLATE_NAME: TextRule = TextRule {
    field: "template.name",
    max_len: 128,
    may_be_empty: false,
    allowed: ident_char,
    allowed_desc: "ASCII letters, digits and _",
};
pub(crate) const TEMPLATE_HASH: TextRule = TextRule {
    field: "template.source_hash",
    max_len: 128,
    may_be_empty: false,
    allowed: hash_char,
    allowed_desc: "ASCII letters, digits and _ . : -",
};
pub(crate) const KERNEL_NAME: TextRule = TextRule {
    field: "kernel_name",
    max_len: 256,
    may_be_empty: false,
    allowed: ident_char,
    allowed_desc: "ASCII letters, digits and _",
};
pub(crate) const PROBLEM_KEY: TextRule = TextRule {
    field: "problem.key",
    max_len: 512,
    may_be_empty: false,
    allowed: problem_key_char,
    allowed_desc: "ASCII letters, digits, space and _ . = , : > -",
};
pub(crate) const PROBLEM_OP: TextRule = TextRule {
    field: "problem.op",
    max_len: 64,
    may_be_empty: false,
    allowed: ident_char,
    allowed_desc: "ASCII letters, digits and _",
};
pub(crate) const DEVICE_NAME: TextRule = TextRule {
    field: "device.name",
    max_len: 128,
    may_be_empty: false,
    allowed: label_char,
    allowed_desc: "ASCII letters, digits, space and _ . , : - ( ) / +",
};
pub(crate) const DEVICE_ARCH: TextRule = TextRule {
    field: "device.arch",
    max_len: 32,
    may_be_empty: false,
    allowed: ident_char,
    allowed_desc: "ASCII letters, digits and _",
};
pub(crate) const DEVICE_DRIVER: TextRule = TextRule {
    field: "device.driver",
    max_len: 64,
    may_be_empty: false,
    allowed: label_char,
    allowed_desc: "ASCII letters, digits, space and _ . , : - ( ) / +",
};
pub(crate) const DEVICE_TOOLCHAIN: TextRule = TextRule {
    field: "device.toolchain",
    max_len: 64,
    may_be_empty: false,
    allowed: label_char,
    allowed_desc: "ASCII letters, digits, space and _ . , : - ( ) / +",
};
pub(crate) const ORIGIN_HOST: TextRule = TextRule {
    field: "provenance.origin_host",
    max_len: 253,
    may_be_empty: false,
    allowed: host_char,
    allowed_desc: "ASCII letters, digits and _ . -",
};
pub(crate) const TOOL_VERSION: TextRule = TextRule {
    field: "provenance.tool_version",
    max_len: 64,
    may_be_empty: false,
    allowed: version_char,
    allowed_desc: "ASCII letters, digits, space and _ . - +",
};
pub(crate) const CONFIG: TextRule = TextRule {
    field: "config",
    max_len: 1024,
    may_be_empty: true,
    allowed: assignment_char,
    allowed_desc: "ASCII letters, digits and _ = , - .",
};
pub(crate) const REASON: TextRule = TextRule {
    field: "reason",
    max_len: 8192,
    may_be_empty: true,
    allowed: reason_char,
    allowed_desc: "printable characters, newlines and tabs",
};

/// Longest JSON document (config, problem, guards) stored, in bytes.
pub(crate) const MAX_JSON_LEN: usize = 16 * 1024;

/// Longest measured-at text read from a file.
pub(crate) const MAX_TIMESTAMP_LEN: usize = 40;

/// Largest sample count accepted.
pub(crate) const MAX_SAMPLES: i64 = 1_000_000_000;

/// Largest SM (CU) count accepted.
pub(crate) const MAX_SM_COUNT: i64 = 1_000_000;

/// Checks a `name=value,name=value` assignment: each name an identifier, each value non-empty.
pub(crate) fn check_assignment(value: &str) -> Result<(), FieldError> {
    CONFIG.check(value)?;
    if value.is_empty() {
        return Ok(());
    }
    for part in value.split(',') {
        let Some((name, val)) = part.split_once('=') else {
            return Err(FieldError::new(
                "config",
                format!("{part:?} is not name=value"),
            ));
        };
        if name.is_empty() || !name.chars().all(ident_char) || val.is_empty() || val.contains('=') {
            return Err(FieldError::new(
                "config",
                format!("{part:?} is not name=value"),
            ));
        }
    }
    Ok(())
}

/// Checks that `value` is a JSON object of bounded size.
pub(crate) fn check_json_object(field: &'static str, value: &str) -> Result<(), FieldError> {
    if value.len() > MAX_JSON_LEN {
        return Err(FieldError::new(
            field,
            format!("is {} bytes long (at most {MAX_JSON_LEN})", value.len()),
        ));
    }
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(FieldError::new(field, "is JSON but not an object")),
        Err(e) => Err(FieldError::new(field, format!("is not JSON: {e}"))),
    }
}

/// Checks a measurement: finite and not negative.
pub(crate) fn check_non_negative(field: &'static str, v: f64) -> Result<(), FieldError> {
    if !v.is_finite() {
        return Err(FieldError::new(field, format!("{v} is not finite")));
    }
    if v < 0.0 {
        return Err(FieldError::new(field, format!("{v} is negative")));
    }
    Ok(())
}

/// Checks a time: finite and strictly positive.
pub(crate) fn check_positive(field: &'static str, v: f64) -> Result<(), FieldError> {
    check_non_negative(field, v)?;
    if v == 0.0 {
        return Err(FieldError::new(field, "is zero"));
    }
    Ok(())
}

/// Checks a per-launch time in milliseconds: finite and within
/// [`crate::record::MIN_TIMING_MS`, `crate::record::MAX_TIMING_MS`].
pub(crate) fn check_time_ms(field: &'static str, v: f64) -> Result<(), FieldError> {
    use crate::record::{MAX_TIMING_MS, MIN_TIMING_MS};
    check_positive(field, v)?;
    if !(MIN_TIMING_MS..=MAX_TIMING_MS).contains(&v) {
        return Err(FieldError::new(
            field,
            format!("{v} ms is outside the plausible range {MIN_TIMING_MS}..={MAX_TIMING_MS} ms"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_their_whitelists() {
        assert!(KERNEL_NAME
            .check("gemm_f16_f32acc_128x128x64_w2x2_s4_rcr_bias_gelu_a8")
            .is_ok());
        assert!(KERNEL_NAME.check("gemm; rm -rf /").is_err());
        assert!(KERNEL_NAME.check("").is_err());
        assert!(KERNEL_NAME.check(&"a".repeat(257)).is_err());
        assert!(PROBLEM_KEY
            .check("gemm m=384 n=768 k=3072 f16->f16 rcr epilogue=bias,gelu")
            .is_ok());
        assert!(PROBLEM_KEY.check("gemm m=1\nn=2").is_err());
        assert!(DEVICE_NAME.check("NVIDIA H100 80GB HBM3").is_ok());
        assert!(DEVICE_NAME.check("AMD Instinct MI250X / MI250").is_ok());
        assert!(DEVICE_NAME.check("evil`cmd`").is_err());
        assert!(TEMPLATE_HASH.check("sha256:0123abcd").is_ok());
        assert!(ORIGIN_HOST.check("gpu-box-7.example.org").is_ok());
        assert!(ORIGIN_HOST.check("host name").is_err());
        assert!(REASON
            .check("ptxas error: too many resources\n\tline 3")
            .is_ok());
        assert!(REASON.check("bell\u{7}").is_err());
        let e = KERNEL_NAME.check("a-b").unwrap_err();
        assert_eq!(e.field, "kernel_name");
        assert!(e.reason.contains("'-'"), "{e}");
    }

    #[test]
    fn assignments_are_name_value_lists() {
        assert!(check_assignment("").is_ok());
        assert!(check_assignment("BM=128,BN=128,BK=64,WM=2,WN=2,STAGES=4,SPLIT=-1").is_ok());
        for bad in [
            "BM",
            "BM=",
            "=1",
            "BM=1,,BN=2",
            "BM=1=2",
            "B M=1",
            "BM=1;BN=2",
        ] {
            assert!(check_assignment(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn json_must_be_a_bounded_object() {
        assert!(check_json_object("config_json", r#"{"BM":128}"#).is_ok());
        assert!(check_json_object("config_json", "[1,2]").is_err());
        assert!(check_json_object("config_json", "{").is_err());
        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_JSON_LEN));
        assert!(check_json_object("config_json", &big).is_err());
    }

    #[test]
    fn numbers_must_be_finite_and_not_negative() {
        assert!(check_non_negative("x", 0.0).is_ok());
        assert!(check_non_negative("x", -0.5).is_err());
        assert!(check_non_negative("x", f64::NAN).is_err());
        assert!(check_non_negative("x", f64::INFINITY).is_err());
        assert!(check_positive("x", 0.0).is_err());
        assert!(check_positive("x", 1e-6).is_ok());
    }
}
