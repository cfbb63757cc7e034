//! The worker side of tuning: a process that reads one JSON request per line on stdin, does
//! the job (compile, or compile + verify + time on its device) and writes one JSON reply per
//! line on stdout. Measurement lives in workers so that a candidate that crashes or hangs the
//! GPU context costs one worker, not the sweep (contract 3); the supervisor restarts it.
//!
//! The worker keeps the current problem's workload (inputs on the device, reference values at
//! the checked positions) between requests, so each candidate costs one launch to verify.

use crate::candidate::Candidate;
use crate::emulation::Fault;
use crate::error::TunerError;
use crate::measure::{measure_with, Outcome, TimingPlan};
use crate::workload::Workload;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use tessera_device::cuda::nvrtc_compile_cached;
use tessera_device::hipcc::compile_amd;
use tessera_device::module_cache::ModuleCache;
use tessera_device::{Device, DeviceError};
use tessera_dsl::{Problem, Target, Vendor};
use tessera_library::verify::Expected;

/// A defect planted in one candidate, for tests of the tuner's failure handling (simulated
/// device only, except `Crash` and `Hang`, which act on the worker process itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlantedFault {
    WrongValue,
    LaunchFailure,
    /// The worker process aborts mid-job.
    Crash,
    /// The worker stops answering.
    Hang,
}

/// One job for a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Request {
    /// Compile one candidate for `target` (fills the on-disk module cache; needs no GPU).
    Compile {
        template: String,
        values: Vec<i64>,
        problem: Problem,
        target: Target,
    },
    /// Verify, then time, one candidate on the worker's device. A candidate whose quick probe
    /// is slower than `stop_above_ms` is not timed in full (`skipped_slow`).
    Measure {
        template: String,
        values: Vec<i64>,
        problem: Problem,
        seed: u64,
        plan: TimingPlan,
        stop_above_ms: Option<f64>,
        fault: Option<PlantedFault>,
    },
}

/// A worker's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub kernel: String,
    /// ok | compile_error | launch_error | wrong_result | skipped_slow
    pub status: String,
    pub reason: String,
    pub registers: Option<u32>,
    pub spill_bytes: Option<u32>,
    pub compile_s: f64,
    pub verify_s: f64,
    pub time_s: f64,
    pub rel_err: Option<f64>,
    pub median_ms: Option<f64>,
    pub p10_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub samples: u32,
    pub simulated: bool,
    /// The device is unusable after this job (e.g. a faulted CUDA context); the worker exits.
    pub fatal: bool,
}

impl Reply {
    fn failed(kernel: String, status: &str, reason: String) -> Reply {
        Reply {
            kernel,
            status: status.into(),
            reason,
            ..Reply::default()
        }
    }
}

/// What a worker needs besides its device.
pub struct WorkerContext<'a> {
    /// The device measurements run on; `None` for a compile-only worker.
    pub device: Option<&'a dyn Device>,
    /// Where compiled CUDA modules are cached (shared with the measuring device).
    pub module_cache: Option<ModuleCache>,
    /// Test hook (`TESSERA_WORKER_LOG`): append one line per measure job to this file,
    /// `DEVICE PID START_NS END_NS KERNEL` (Unix nanoseconds), so tests can check that no two
    /// workers ever timed on one GPU at once and that no candidate was measured twice.
    pub log: Option<(std::path::PathBuf, String)>,
}

fn unix_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn log_job(ctx: &WorkerContext, start: u128, kernel: &str) {
    let Some((path, device)) = &ctx.log else {
        return;
    };
    let line = format!(
        "{device} {} {start} {} {kernel}\n",
        std::process::id(),
        unix_ns()
    );
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

struct Current {
    key: (String, u64),
    workload: Workload,
    expected: Expected,
}

/// Serve requests until stdin closes. Returns an error only for infrastructure failures
/// (the device is gone); per-candidate failures are replies.
pub fn serve(
    ctx: &WorkerContext,
    input: impl BufRead,
    mut output: impl Write,
) -> Result<(), DeviceError> {
    tessera_library::templates();
    let mut current: Option<Current> = None;
    for line in input.lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Err(e) => Reply::failed(String::new(), "protocol_error", format!("bad request: {e}")),
            Ok(Request::Compile {
                template,
                values,
                problem,
                target,
            }) => compile_job(ctx, &template, &values, &problem, target),
            Ok(Request::Measure {
                template,
                values,
                problem,
                seed,
                plan,
                stop_above_ms,
                fault,
            }) => match ctx.device {
                None => Reply::failed(
                    String::new(),
                    "protocol_error",
                    "this worker has no device".into(),
                ),
                Some(device) => {
                    let start = unix_ns();
                    let reply = measure_job(
                        device,
                        &mut current,
                        &template,
                        &values,
                        &problem,
                        seed,
                        plan,
                        stop_above_ms,
                        fault,
                    )?;
                    log_job(ctx, start, &reply.kernel);
                    reply
                }
            },
        };
        let text = serde_json::to_string(&reply)
            .unwrap_or_else(|e| format!("{{\"status\":\"protocol_error\",\"reason\":\"{e}\"}}"));
        if writeln!(output, "{text}")
            .and_then(|_| output.flush())
            .is_err()
        {
            break;
        }
        if reply.fatal {
            break;
        }
    }
    if let (Some(device), Some(c)) = (ctx.device, current.take()) {
        let _ = c.workload.free(device);
    }
    Ok(())
}

#[allow(clippy::result_large_err)] // the reply is the error report itself
fn candidate(
    template: &str,
    values: &[i64],
    problem: &Problem,
    target: Target,
) -> Result<Candidate, Reply> {
    let t = tessera_dsl::find(template)
        .map_err(|e| Reply::failed(String::new(), "protocol_error", e.to_string()))?;
    let config = t
        .config(values, problem)
        .map_err(|e| Reply::failed(String::new(), "protocol_error", e.to_string()))?;
    let name = config.kernel_name();
    Candidate::new(t, config, target)
        .map_err(|e| Reply::failed(name, "compile_error", e.to_string()))
}

fn compile_job(
    ctx: &WorkerContext,
    template: &str,
    values: &[i64],
    problem: &Problem,
    target: Target,
) -> Reply {
    let c = match candidate(template, values, problem, target) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let name = c.name();
    let result = match target.vendor() {
        Vendor::Nvidia => nvrtc_compile_cached(
            ctx.module_cache.as_ref(),
            &c.source.source,
            &name,
            target,
            &[],
        )
        .map(|(r, _)| (r.usage.registers, r.usage.spill_bytes(), r.seconds)),
        Vendor::Amd => compile_amd(&c.source.source, &name, target).map(|(_, r)| {
            let spills = r.vgpr_spills.unwrap_or(0)
                + r.sgpr_spills.unwrap_or(0)
                + r.scratch_bytes.unwrap_or(0);
            (r.vgprs, Some(spills), r.seconds)
        }),
    };
    match result {
        Ok((registers, spill_bytes, seconds)) => Reply {
            kernel: name,
            status: "ok".into(),
            registers,
            spill_bytes,
            compile_s: seconds,
            ..Reply::default()
        },
        Err(e) => Reply::failed(name, "compile_error", e.to_string()),
    }
}

#[allow(clippy::too_many_arguments)]
fn measure_job(
    device: &dyn Device,
    current: &mut Option<Current>,
    template: &str,
    values: &[i64],
    problem: &Problem,
    seed: u64,
    plan: TimingPlan,
    stop_above_ms: Option<f64>,
    fault: Option<PlantedFault>,
) -> Result<Reply, DeviceError> {
    let simulated = device.info().simulated;
    let c = match candidate(template, values, problem, device.caps().target) {
        Ok(c) => c,
        Err(r) => return Ok(r),
    };
    let name = c.name();
    match fault {
        Some(PlantedFault::Crash) => std::process::abort(),
        Some(PlantedFault::Hang) => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        _ => {}
    }
    let key = (problem.key(), seed);
    if current.as_ref().map(|c| &c.key) != Some(&key) {
        if let Some(old) = current.take() {
            old.workload.free(device)?;
        }
        let workload = Workload::new(device, problem, seed)?;
        let expected = workload.expected();
        *current = Some(Current {
            key,
            workload,
            expected,
        });
    }
    let Some(cur) = current.as_ref() else {
        return Ok(Reply::failed(name, "protocol_error", "no workload".into()));
    };
    let emulated_fault = match fault {
        Some(PlantedFault::WrongValue) => Some(Fault::WrongValue),
        Some(PlantedFault::LaunchFailure) => Some(Fault::LaunchFailure),
        _ => None,
    };
    let m = match measure_with(
        device,
        &c,
        &cur.workload,
        &cur.expected,
        plan,
        stop_above_ms,
        emulated_fault,
    ) {
        Ok(m) => m,
        Err(TunerError::Device(e)) => return Err(e),
        Err(e) => return Ok(Reply::failed(name, "protocol_error", e.to_string())),
    };
    let launch_failed = matches!(m.outcome, Outcome::LaunchError(_));
    Ok(Reply {
        kernel: m.kernel,
        status: m.outcome.status().into(),
        reason: m.outcome.reason().into(),
        registers: m.registers,
        spill_bytes: m.spill_bytes,
        compile_s: m.compile_s,
        verify_s: m.verify_s,
        time_s: m.time_s,
        rel_err: m.verdict.map(|v| v.rel_err),
        median_ms: m.timing.as_ref().map(|t| t.median()),
        p10_ms: m.timing.as_ref().map(|t| t.p10()),
        p90_ms: m.timing.as_ref().map(|t| t.p90()),
        samples: m.timing.as_ref().map_or(0, |t| t.samples_ms().len() as u32),
        simulated,
        // A faulted CUDA context poisons every later call: end this worker.
        fatal: launch_failed && !simulated,
    })
}
