//! Reading resource usage out of `ptxas -v` output, which NVRTC puts in its program log when
//! given `--ptxas-options=-v`:
//!
//! ```text
//! ptxas info    : Compiling entry function 'axpy' for 'sm_80'
//! ptxas info    : Function properties for axpy
//! ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
//! ptxas info    : Used 10 registers, used 1 barriers, 1024 bytes smem, 380 bytes cmem[0]
//! ```
//!
//! "Used ..." lines belong to the entry function named by the latest "Compiling entry function";
//! stack and spill lines to the function named by the latest "Function properties for".
//!
//! This module is pure text processing; it depends on nothing but the usage type.

use crate::compile::ResourceUsage;
use std::collections::BTreeMap;

/// Resource usage of every function the log describes, by name.
pub fn parse(log: &str) -> BTreeMap<String, ResourceUsage> {
    let mut out: BTreeMap<String, ResourceUsage> = BTreeMap::new();
    let mut entry: Option<String> = None;
    let mut props: Option<String> = None;
    for line in log.lines() {
        if let Some(name) = quoted_after(line, "Compiling entry function ") {
            entry = Some(name.to_string());
            out.entry(name.to_string()).or_default();
        } else if let Some(rest) = after(line, "Function properties for ") {
            let name = rest.trim().trim_matches('\'');
            props = Some(name.to_string());
        } else if line.contains("bytes stack frame") || line.contains("bytes spill") {
            let name = match (&props, &entry) {
                (Some(p), _) => p.clone(),
                (None, Some(e)) => e.clone(),
                (None, None) => continue,
            };
            let u = out.entry(name).or_default();
            u.stack_frame_bytes = number_before(line, " bytes stack frame").or(u.stack_frame_bytes);
            u.spill_store_bytes =
                number_before(line, " bytes spill stores").or(u.spill_store_bytes);
            u.spill_load_bytes = number_before(line, " bytes spill loads").or(u.spill_load_bytes);
        } else if let Some(rest) = after(line, "Used ") {
            let Some(name) = entry.clone() else { continue };
            let u = out.entry(name).or_default();
            u.registers = leading_number(rest).or(u.registers);
            u.static_smem_bytes = number_before(line, " bytes smem").or(u.static_smem_bytes);
        }
    }
    out
}

/// Usage of one kernel: by exact name, or the only entry function when there is just one.
pub fn usage_for(log: &str, kernel: &str) -> Option<ResourceUsage> {
    let mut all = parse(log);
    if let Some(u) = all.remove(kernel) {
        return Some(u);
    }
    let entries: Vec<_> = all
        .into_values()
        .filter(|u| u.registers.is_some())
        .collect();
    match entries.as_slice() {
        [only] => Some(*only),
        _ => None,
    }
}

fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| &line[i + marker.len()..])
}

fn quoted_after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = after(line, marker)?.strip_prefix('\'')?;
    rest.find('\'').map(|end| &rest[..end])
}

fn leading_number(s: &str) -> Option<u32> {
    let digits: String = s
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The number written just before `suffix` (e.g. `1024` in "1024 bytes smem").
fn number_before(line: &str, suffix: &str) -> Option<u32> {
    let head = &line[..line.find(suffix)?];
    let digits: String = head
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

/// The first ptxas advisory saying it serialized a `wgmma` pipeline (C7510-C7515: too few
/// registers, extern calls, accumulators touched mid-pipeline): the kernel is correct but
/// runs its tensor-core work one group at a time, so the tuner rejects it.
pub fn serialized_wgmma(log: &str) -> Option<&str> {
    log.lines()
        .map(str::trim)
        .find(|l| l.contains("wgmma") && l.contains("serializ"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn serialized_wgmma_advisory_is_found() {
        let log = "ptxas info    : Used 168 registers\nptxas /tmp/k.ptx, line 9; warning : (C7515) Potential Performance Loss: wgmma.mma_async instructions are serialized due to non wgmma instructions defining accumulator registers of a wgmma between start and end of the pipeline stage in the function 'k'\n";
        let line = super::serialized_wgmma(log).unwrap();
        assert!(
            line.starts_with("ptxas /tmp/k.ptx, line 9; warning : (C7515)"),
            "{line}"
        );
        assert_eq!(
            super::serialized_wgmma("ptxas info    : Used 168 registers"),
            None
        );
    }

    use super::*;

    const SM80: &str = "ptxas info    : 0 bytes gmem\n\
ptxas info    : Compiling entry function 'axpy' for 'sm_80'\n\
ptxas info    : Function properties for axpy\n\
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
ptxas info    : Used 10 registers, used 1 barriers, 1024 bytes smem, 380 bytes cmem[0]\n\
ptxas info    : Compile time = 2.618 ms\n";

    #[test]
    fn parses_nvrtc_13_sm80_log() {
        let u = usage_for(SM80, "axpy").unwrap();
        assert_eq!(u.registers, Some(10));
        assert_eq!(u.static_smem_bytes, Some(1024));
        assert_eq!(u.spill_store_bytes, Some(0));
        assert_eq!(u.spill_load_bytes, Some(0));
        assert_eq!(u.stack_frame_bytes, Some(0));
    }

    #[test]
    fn several_kernels_device_functions_and_spills() {
        let log = "ptxas info    : Compiling entry function 'big' for 'sm_90a'\n\
ptxas info    : Function properties for big\n\
    48 bytes stack frame, 40 bytes spill stores, 36 bytes spill loads\n\
ptxas info    : Used 255 registers, used 1 barriers, 49152 bytes smem\n\
ptxas info    : Function properties for _Z6helperv\n\
    8 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
ptxas info    : Compiling entry function 'small' for 'sm_90a'\n\
ptxas info    : Function properties for small\n\
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
ptxas info    : Used 32 registers\n";
        let all = parse(log);
        let big = all["big"];
        assert_eq!(big.registers, Some(255));
        assert_eq!(big.spill_bytes(), Some(76));
        assert_eq!(big.stack_frame_bytes, Some(48));
        assert_eq!(big.static_smem_bytes, Some(49152));
        assert_eq!(all["small"].registers, Some(32));
        assert_eq!(all["small"].static_smem_bytes, None);
        assert_eq!(all["_Z6helperv"].stack_frame_bytes, Some(8));
        assert_eq!(usage_for(log, "small").unwrap().registers, Some(32));
        // Two entries and no exact match: ambiguous.
        assert_eq!(usage_for(log, "other"), None);
    }

    #[test]
    fn older_format_and_garbage() {
        let log = "ptxas info    : Compiling entry function 'k' for 'sm_80'\n\
ptxas info    : Used 18 registers, 2048 bytes smem, 360 bytes cmem[0]\n";
        let u = usage_for(log, "renamed").unwrap();
        assert_eq!((u.registers, u.static_smem_bytes), (Some(18), Some(2048)));
        assert!(parse("").is_empty());
        assert_eq!(
            usage_for("error: identifier \"x\" is undefined\n", "k"),
            None
        );
        // A "Used" line before any entry is ignored, not attributed at random.
        assert!(parse("ptxas info : Used 3 registers\n").is_empty());
    }
}
