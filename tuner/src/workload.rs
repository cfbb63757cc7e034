//! A problem's operands on a device: fresh random inputs uploaded, the output buffer, and the
//! launch arguments in the kernel ABI's order. [`Workload`] is any problem; [`GemmWorkload`]
//! and [`OpWorkload`] hold GEMM and non-GEMM operands.

use crate::candidate::Candidate;
use crate::footprint::MemoryLimits;
use tessera_device::{ArgValue, Buffer, Device, DeviceError, Launch};
use tessera_dsl::{GemmProblem, Problem};
use tessera_library::host::HostTensor;
use tessera_library::operands::{OpInputs, Scalar, Slot};
use tessera_library::reference::{GemmInputs, GemmStrides};
use tessera_library::verify::{
    check_gemm_expected_bytes, check_op_expected_bytes, expected_gemm, expected_op, Expected,
    Verdict, POISON_BYTE,
};

/// Any problem's operands on a device.
pub enum Workload {
    Gemm(Box<GemmWorkload>),
    Op(OpWorkload),
}

impl Workload {
    /// Allocate and upload fresh random operands (reproducible from `seed`).
    /// A problem too big for the device's or the host's memory is refused before anything
    /// is allocated (see [`crate::footprint`]).
    pub fn new(device: &dyn Device, problem: &Problem, seed: u64) -> Result<Workload, DeviceError> {
        let info = device.info();
        MemoryLimits::of_device(&info.name, info.memory_bytes)
            .check(&problem.key(), problem)
            .map_err(|e| DeviceError::InvalidRequest {
                message: e.to_string(),
            })?;
        Ok(match problem {
            Problem::Gemm(g) => Workload::Gemm(Box::new(GemmWorkload::new(device, g, seed)?)),
            other => Workload::Op(OpWorkload::new(device, other, seed)?),
        })
    }

    pub fn problem(&self) -> Problem {
        match self {
            Workload::Gemm(w) => Problem::Gemm(w.problem.clone()),
            Workload::Op(w) => w.inputs.problem.clone(),
        }
    }

    /// The reference values at the checked positions (computed on the host).
    pub fn expected(&self) -> Expected {
        match self {
            Workload::Gemm(w) => expected_gemm(&w.problem, &w.inputs),
            Workload::Op(w) => expected_op(&w.inputs),
        }
    }

    /// Compare a downloaded output with the reference values.
    pub fn check(&self, expected: &Expected, out: &[u8]) -> Verdict {
        match self {
            Workload::Gemm(w) => check_gemm_expected_bytes(&w.problem, expected, out),
            Workload::Op(w) => check_op_expected_bytes(&w.inputs, expected, out),
        }
    }

    pub fn args(&self) -> Vec<ArgValue> {
        match self {
            Workload::Gemm(w) => w.args(),
            Workload::Op(w) => w.args(),
        }
    }

    /// The output buffer.
    fn output(&self) -> &Buffer {
        match self {
            Workload::Gemm(w) => &w.d,
            Workload::Op(w) => &w.output,
        }
    }

    /// Fill the output with NaN bytes so unwritten elements are caught.
    pub fn poison(&self, device: &dyn Device) -> Result<(), DeviceError> {
        device.fill(self.output(), POISON_BYTE)
    }

    /// The output in its device representation (decode only what you check).
    pub fn read_output_bytes(&self, device: &dyn Device) -> Result<Vec<u8>, DeviceError> {
        let out = self.output();
        let mut bytes = vec![0u8; out.len() as usize];
        device.download(out, &mut bytes)?;
        Ok(bytes)
    }

    /// The launch geometry of a candidate for this problem.
    pub fn launch(&self, c: &Candidate) -> Launch {
        let sm_count = match self {
            Workload::Gemm(w) => w.sm_count,
            Workload::Op(w) => w.sm_count,
        };
        let grid = c.source.grid(&self.problem(), sm_count);
        Launch::new(grid, [c.source.threads, 1, 1]).with_dynamic_smem(c.source.smem_bytes)
    }

    pub fn free(self, device: &dyn Device) -> Result<(), DeviceError> {
        match self {
            Workload::Gemm(w) => (*w).free(device),
            Workload::Op(w) => w.free(device),
        }
    }
}

/// A row-wise or attention problem's operands on a device, one buffer per ABI pointer.
pub struct OpWorkload {
    pub inputs: OpInputs,
    buffers: Vec<Option<Buffer>>,
    output: Buffer,
    /// Multiprocessors of the device (a persistent kernel launches at most one block per each).
    sm_count: u32,
}

impl OpWorkload {
    pub fn new(
        device: &dyn Device,
        problem: &Problem,
        seed: u64,
    ) -> Result<OpWorkload, DeviceError> {
        let inputs = OpInputs::random(problem, seed).map_err(|e| DeviceError::InvalidRequest {
            message: e.to_string(),
        })?;
        let mut buffers = Vec::new();
        let mut output = None;
        for (_, slot) in &inputs.slots {
            let buffer = match slot {
                Slot::Input(t) => Some(upload(device, t)?),
                Slot::Absent => None,
                Slot::Output { dtype, len } => {
                    let b = device.alloc(len * u64::from(dtype.size_bytes()))?;
                    output = Some(b);
                    Some(b)
                }
                Slot::Ints(lens) => {
                    let bytes: Vec<u8> = lens.iter().flat_map(|l| l.to_le_bytes()).collect();
                    let b = device.alloc(bytes.len() as u64)?;
                    device.upload(&b, &bytes)?;
                    Some(b)
                }
            };
            buffers.push(buffer);
        }
        let output = output.ok_or_else(|| DeviceError::InvalidRequest {
            message: format!("{problem}: the launch ABI has no output"),
        })?;
        Ok(OpWorkload {
            inputs,
            buffers,
            output,
            sm_count: device.caps().sm_count,
        })
    }

    /// Launch arguments in `ir::abi` order: pointers (null for absent operands), then scalars.
    pub fn args(&self) -> Vec<ArgValue> {
        let mut args: Vec<ArgValue> = self
            .buffers
            .iter()
            .map(|b| b.as_ref().map_or(ArgValue::null(), ArgValue::ptr))
            .collect();
        args.extend(self.inputs.scalars.iter().map(|(_, s)| match s {
            Scalar::I32(v) => ArgValue::I32(*v),
            Scalar::F32(v) => ArgValue::F32(*v),
        }));
        args
    }

    pub fn free(self, device: &dyn Device) -> Result<(), DeviceError> {
        for b in self.buffers.into_iter().flatten() {
            device.free(b)?;
        }
        Ok(())
    }
}

pub struct GemmWorkload {
    pub problem: GemmProblem,
    pub inputs: GemmInputs,
    pub strides: GemmStrides,
    /// Multiprocessors of the device (a persistent kernel launches one block per each).
    sm_count: u32,
    a: Buffer,
    b: Buffer,
    c: Option<Buffer>,
    d: Buffer,
    bias: Option<Buffer>,
    residual: Option<Buffer>,
}

fn upload(device: &dyn Device, t: &HostTensor) -> Result<Buffer, DeviceError> {
    let bytes = t.to_bytes();
    let buf = device.alloc(bytes.len() as u64)?;
    device.upload(&buf, &bytes)?;
    Ok(buf)
}

impl GemmWorkload {
    /// Allocate and upload fresh random operands (reproducible from `seed`).
    pub fn new(
        device: &dyn Device,
        p: &GemmProblem,
        seed: u64,
    ) -> Result<GemmWorkload, DeviceError> {
        let inputs = GemmInputs::random(p, seed);
        let a = upload(device, &inputs.a)?;
        let b = upload(device, &inputs.b)?;
        let opt = |t: &Option<HostTensor>| t.as_ref().map(|t| upload(device, t)).transpose();
        let c = opt(&inputs.c)?;
        let bias = opt(&inputs.bias)?;
        let residual = opt(&inputs.residual)?;
        let d = device.alloc(p.batch * p.m * p.n * u64::from(p.output.size_bytes()))?;
        Ok(GemmWorkload {
            problem: p.clone(),
            sm_count: device.caps().sm_count,
            strides: GemmStrides::packed(p),
            inputs,
            a,
            b,
            c,
            d,
            bias,
            residual,
        })
    }

    /// Launch arguments in `gemm_abi` order.
    pub fn args(&self) -> Vec<ArgValue> {
        let p = &self.problem;
        let s = &self.strides;
        let opt = |b: &Option<Buffer>| b.as_ref().map_or(ArgValue::null(), ArgValue::ptr);
        vec![
            ArgValue::ptr(&self.a),
            ArgValue::ptr(&self.b),
            opt(&self.c),
            ArgValue::ptr(&self.d),
            opt(&self.bias),
            opt(&self.residual),
            ArgValue::I32(p.m as i32),
            ArgValue::I32(p.n as i32),
            ArgValue::I32(p.k as i32),
            ArgValue::I64(s.lda),
            ArgValue::I64(s.ldb),
            ArgValue::I64(s.ldc),
            ArgValue::I64(s.ldd),
            ArgValue::I64(s.stride_a),
            ArgValue::I64(s.stride_b),
            ArgValue::I64(s.stride_c),
            ArgValue::I64(s.stride_d),
            ArgValue::F32(self.inputs.alpha),
            ArgValue::F32(self.inputs.beta),
        ]
    }

    /// Release every buffer.
    pub fn free(self, device: &dyn Device) -> Result<(), DeviceError> {
        for b in [
            Some(self.a),
            Some(self.b),
            self.c,
            Some(self.d),
            self.bias,
            self.residual,
        ]
        .into_iter()
        .flatten()
        {
            device.free(b)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_device::SimDevice;
    use tessera_dsl::{DType, Layout, Target};

    #[test]
    fn a_problem_bigger_than_the_device_is_refused_before_allocating() {
        let device = SimDevice::with_memory_bytes(Target::Sm90a, 1 << 20);
        let p = Problem::Gemm(GemmProblem {
            m: 1024,
            n: 1024,
            k: 1024,
            batch: 1,
            input: DType::F16,
            output: DType::F16,
            layout_b: Layout::Col,
            epilogue: vec![],
            store: Default::default(),
        });
        let Err(DeviceError::InvalidRequest { message }) = Workload::new(&device, &p, 1) else {
            panic!("a 6 MiB problem on a 1 MiB device must be refused");
        };
        assert!(message.contains("of device memory"), "{message}");
    }
}
