//! Whether a problem fits: its operands and output (each held once in device memory, and
//! once in the measuring worker's host memory for the random inputs and the read-back
//! output) checked against the device's memory and the host's available memory, before
//! anything is allocated. A problem that passes shape validation can still need terabytes
//! (m = n = 4,000,000); it is refused with its name and sizes instead of growing a worker
//! until the machine runs out.
//!
//! Host memory comes from `/proc/meminfo` (`MemAvailable`); where that can't be read (not
//! Linux) only the device is checked.

use tessera_dsl::Problem;

/// A problem that does not fit in device or host memory.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "problem {name} ({key}) needs {need} of operands and output, more than the {have} of {place}; \
     use smaller shapes",
    need = gib(*need),
    have = gib(*have)
)]
pub struct TooBig {
    /// The problem's name in the shapes file (or its key).
    pub name: String,
    pub key: String,
    /// Bytes of its operands and output.
    pub need: u64,
    /// Bytes the device (or host) has.
    pub have: u64,
    /// `device memory (NAME)` or `available host memory`.
    pub place: String,
}

/// `12.3 GiB`, or bytes for small sizes.
fn gib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{bytes} bytes")
    }
}

/// Bytes of a problem's operands and output (saturating for absurd shapes).
pub fn footprint_bytes(problem: &Problem) -> u64 {
    let b = problem.bytes();
    if b.is_finite() && b < u64::MAX as f64 {
        b.ceil() as u64
    } else {
        u64::MAX
    }
}

/// The memory a problem is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimits {
    /// The device's name, for the message.
    pub device_name: String,
    pub device_bytes: u64,
    /// Available host memory, where known.
    pub host_bytes: Option<u64>,
}

impl MemoryLimits {
    /// A device's memory and this host's available memory.
    pub fn of_device(device_name: &str, device_bytes: u64) -> MemoryLimits {
        MemoryLimits {
            device_name: device_name.to_string(),
            device_bytes,
            host_bytes: host_available_bytes(),
        }
    }

    /// Refuses a problem whose operands and output don't fit the device or the host.
    pub fn check(&self, name: &str, problem: &Problem) -> Result<(), TooBig> {
        let need = footprint_bytes(problem);
        let too_big = |have: u64, place: String| TooBig {
            name: name.to_string(),
            key: problem.key(),
            need,
            have,
            place,
        };
        if need > self.device_bytes {
            return Err(too_big(
                self.device_bytes,
                format!("device memory ({})", self.device_name),
            ));
        }
        match self.host_bytes {
            Some(host) if need > host => Err(too_big(host, "available host memory".into())),
            _ => Ok(()),
        }
    }
}

/// Available host memory from `/proc/meminfo`, where it can be read.
pub fn host_available_bytes() -> Option<u64> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// `MemAvailable` (else `MemTotal`) of a `/proc/meminfo` text, in bytes.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            kib.checked_mul(1024)
        })
    };
    field("MemAvailable").or_else(|| field("MemTotal"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_dsl::{DType, GemmProblem, Layout};

    fn gemm(m: u64, n: u64, k: u64) -> Problem {
        Problem::Gemm(GemmProblem {
            m,
            n,
            k,
            batch: 1,
            input: DType::F16,
            output: DType::F16,
            layout_b: Layout::Col,
            epilogue: vec![],
            store: Default::default(),
        })
    }

    fn limits(device: u64, host: Option<u64>) -> MemoryLimits {
        MemoryLimits {
            device_name: "H100".into(),
            device_bytes: device,
            host_bytes: host,
        }
    }

    #[test]
    fn a_huge_problem_is_refused_with_its_name_and_sizes() {
        let p = gemm(4_000_000, 4_000_000, 64);
        // 2 bytes each of A (m*k), B (k*n), D (m*n)
        assert_eq!(
            footprint_bytes(&p),
            2 * (2 * 4_000_000 * 64 + 4_000_000 * 4_000_000)
        );
        let e = limits(80 << 30, None).check("huge", &p).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("problem huge (gemm m=4000000"), "{s}");
        assert!(s.contains("29803.3 GiB"), "{s}");
        assert!(s.contains("80.0 GiB of device memory (H100)"), "{s}");
    }

    #[test]
    fn host_memory_counts_too_and_small_problems_fit() {
        let p = gemm(4096, 4096, 4096);
        assert!(limits(80 << 30, Some(64 << 30)).check("ok", &p).is_ok());
        assert!(limits(80 << 30, None).check("ok", &p).is_ok());
        let e = limits(80 << 30, Some(1 << 20))
            .check("big", &p)
            .unwrap_err();
        assert_eq!(e.place, "available host memory");
        assert_eq!(e.have, 1 << 20);
    }

    #[test]
    fn meminfo_available_else_total() {
        let text = "MemTotal:       131072000 kB\nMemFree:  1000 kB\nMemAvailable:   65536000 kB\n";
        assert_eq!(parse_meminfo(text), Some(65_536_000 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 2048 kB\n"), Some(2048 * 1024));
        assert_eq!(parse_meminfo("garbage"), None);
    }
}
