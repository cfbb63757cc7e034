//! Row builders shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tessera_cache::{
    Cache, DeviceFingerprint, ProblemRecord, Provenance, ResultRow, Status, TemplateKey,
    Throughput, ThroughputUnit, Timestamp, Timing, WinnerRow,
};

pub fn h100() -> DeviceFingerprint {
    DeviceFingerprint {
        name: "NVIDIA H100 80GB HBM3".into(),
        arch: "sm_90a".into(),
        sm_count: 132,
        driver: "580.65.06".into(),
        toolchain: "nvrtc 13.0".into(),
        simulated: false,
    }
}

pub fn sim() -> DeviceFingerprint {
    DeviceFingerprint {
        name: "sim h100".into(),
        simulated: true,
        ..h100()
    }
}

pub fn problem(m: u32) -> ProblemRecord {
    ProblemRecord::new(
        format!("gemm m={m} n=768 k=768 f16->f16 rcr"),
        "gemm",
        format!(r#"{{"op":"gemm","m":{m},"n":768,"k":768}}"#),
    )
}

pub fn result(
    device: &DeviceFingerprint,
    m: u32,
    kernel: &str,
    median: f64,
    samples: u32,
) -> ResultRow {
    ResultRow {
        device: device.clone(),
        template: TemplateKey::new("gemm", "3f2a9c"),
        problem: problem(m),
        kernel_name: kernel.into(),
        config: "BM=128,BN=128,BK=32".into(),
        config_json: r#"{"BM":128,"BN":128,"BK":32}"#.into(),
        guards_json: r#"{"align":8,"m_max":4096}"#.into(),
        status: Status::Ok,
        reason: String::new(),
        timing: Some(Timing {
            median_ms: median,
            p10_ms: median * 0.99,
            p90_ms: median * 1.02,
            samples,
        }),
        throughput: Some(Throughput {
            value: 300.0,
            unit: ThroughputUnit::Tflops,
        }),
        max_rel_error: Some(2e-3),
        compile_s: Some(0.7),
        provenance: Provenance {
            origin_host: "gpu-box-1".into(),
            tool_version: "tessera 0.1.0".into(),
            measured_at: Timestamp::parse("2025-06-01T12:00:00Z").unwrap(),
        },
    }
}

pub fn failed(
    device: &DeviceFingerprint,
    m: u32,
    kernel: &str,
    status: Status,
    reason: &str,
) -> ResultRow {
    ResultRow {
        status,
        reason: reason.into(),
        timing: None,
        throughput: None,
        max_rel_error: None,
        ..result(device, m, kernel, 1.0, 1)
    }
}

/// A cache with results and policy-chosen winners.
pub fn build(path: &Path, rows: &[ResultRow]) -> Cache {
    let c = Cache::open(path).unwrap();
    c.record_results(rows).unwrap();
    let mut keys: Vec<_> = rows.iter().map(|r| r.winner_key()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let rs = c
            .results_for(&k.problem_key, &k.device, Some(&k.template))
            .unwrap();
        if let Some(best) = tessera_cache::policy::choose_winner(&rs) {
            c.record_winner(&WinnerRow::from_result(best).unwrap())
                .unwrap();
        }
    }
    c
}

pub fn temp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
