//! Compile → poison → launch → verify → time, for one candidate on one problem.
//!
//! Contract 3 and 4 of the design: per-candidate failures (compile errors, launch faults,
//! wrong results) are [`Outcome`]s, never errors; a candidate is timed only after its output
//! matched the reference on fresh random inputs with the output poisoned first.

use crate::candidate::Candidate;
use crate::emulation::{self, Fault};
use crate::error::TunerError;
use crate::workload::GemmWorkload;
use tessera_device::{Device, DeviceError, Module, Timing};
use tessera_dsl::Problem;
use tessera_library::verify::{check_gemm, Verdict};

/// What happened to a candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Verified and timed.
    Ok,
    CompileError(String),
    LaunchError(String),
    WrongResult(String),
}

impl Outcome {
    /// The cache's status word.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::CompileError(_) => "compile_error",
            Outcome::LaunchError(_) => "launch_error",
            Outcome::WrongResult(_) => "wrong_result",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Outcome::Ok => "",
            Outcome::CompileError(r) | Outcome::LaunchError(r) | Outcome::WrongResult(r) => r,
        }
    }
}

/// One candidate's full measurement.
#[derive(Debug, Clone)]
pub struct Measured {
    pub kernel: String,
    pub outcome: Outcome,
    pub verdict: Option<Verdict>,
    pub timing: Option<Timing>,
    pub registers: Option<u32>,
    pub spill_bytes: Option<u32>,
    pub compile_s: f64,
}

/// How to time.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TimingPlan {
    pub warmup: u32,
    pub iters: u32,
    pub l2_flush: bool,
}

impl Default for TimingPlan {
    fn default() -> Self {
        TimingPlan {
            warmup: 3,
            iters: 20,
            l2_flush: true,
        }
    }
}

/// Compile a candidate on a device (the simulated device gets the GEMM emulation).
pub fn compile(
    device: &dyn Device,
    c: &Candidate,
    problem: &Problem,
    fault: Option<Fault>,
) -> Result<Module, DeviceError> {
    let mut req = c.compile_request(problem);
    if device.info().simulated {
        let Problem::Gemm(g) = problem;
        req = req.with_emulation(emulation::gemm(g, fault));
    }
    device.compile(&req)
}

/// Poison the output, launch once, read back and compare with the reference.
pub fn verify(
    device: &dyn Device,
    module: &Module,
    c: &Candidate,
    w: &GemmWorkload,
) -> Result<Verdict, DeviceError> {
    w.poison(device)?;
    device.launch(module, &w.launch(c), &w.args())?;
    let out = w.read_output(device)?;
    Ok(check_gemm(&w.problem, &w.inputs, &out))
}

/// Compile, verify on `w`, and time a candidate. Infrastructure failures are errors; the
/// candidate's own failures are outcomes.
pub fn measure(
    device: &dyn Device,
    c: &Candidate,
    w: &GemmWorkload,
    plan: TimingPlan,
    fault: Option<Fault>,
) -> Result<Measured, TunerError> {
    let problem = Problem::Gemm(w.problem.clone());
    let mut m = Measured {
        kernel: c.name(),
        outcome: Outcome::Ok,
        verdict: None,
        timing: None,
        registers: None,
        spill_bytes: None,
        compile_s: 0.0,
    };
    let module = match compile(device, c, &problem, fault) {
        Ok(module) => module,
        Err(e) if e.is_infrastructure() => return Err(e.into()),
        Err(e) => {
            m.outcome = Outcome::CompileError(e.to_string());
            return Ok(m);
        }
    };
    let report = module.report();
    m.compile_s = report.compile_seconds;
    m.registers = report.usage.registers;
    m.spill_bytes = report.usage.spill_bytes();
    let result = verify(device, &module, c, w).and_then(|verdict| {
        if !verdict.pass {
            return Ok((verdict, None));
        }
        let t = device.time(
            &module,
            &w.launch(c),
            &w.args(),
            plan.warmup,
            plan.iters,
            plan.l2_flush,
        )?;
        Ok((verdict, Some(t)))
    });
    let _ = device.unload(&module);
    match result {
        Ok((verdict, timing)) => {
            if !verdict.pass {
                m.outcome = Outcome::WrongResult(format!(
                    "relative error {:.3e} > {:.0e} ({} non-finite of {} checked, worst at {:?})",
                    verdict.rel_err,
                    verdict.tolerance,
                    verdict.nonfinite,
                    verdict.checked,
                    verdict.worst
                ));
            }
            m.verdict = Some(verdict);
            m.timing = timing;
            Ok(m)
        }
        Err(e) if e.is_infrastructure() => Err(e.into()),
        Err(e) => {
            m.outcome = Outcome::LaunchError(e.to_string());
            Ok(m)
        }
    }
}
