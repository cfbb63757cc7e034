//! A GEMM problem's operands on a device: fresh random inputs uploaded, the output buffer,
//! and the launch arguments in the kernel ABI's order.

use crate::candidate::Candidate;
use tessera_device::{ArgValue, Buffer, Device, DeviceError, Launch};
use tessera_dsl::{GemmProblem, Problem};
use tessera_library::host::HostTensor;
use tessera_library::reference::{GemmInputs, GemmStrides};
use tessera_library::verify::POISON_BYTE;

pub struct GemmWorkload {
    pub problem: GemmProblem,
    pub inputs: GemmInputs,
    pub strides: GemmStrides,
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

    /// Fill the output with NaN bytes so unwritten elements are caught.
    pub fn poison(&self, device: &dyn Device) -> Result<(), DeviceError> {
        device.fill(&self.d, POISON_BYTE)
    }

    pub fn read_output(&self, device: &dyn Device) -> Result<HostTensor, DeviceError> {
        HostTensor::from_bytes(self.problem.output, &self.read_output_bytes(device)?).map_err(|e| {
            DeviceError::InvalidRequest {
                message: e.to_string(),
            }
        })
    }

    /// The output in its device representation (decode only what you check).
    pub fn read_output_bytes(&self, device: &dyn Device) -> Result<Vec<u8>, DeviceError> {
        let mut bytes = vec![0u8; self.d.len() as usize];
        device.download(&self.d, &mut bytes)?;
        Ok(bytes)
    }

    /// The launch geometry of a candidate for this problem.
    pub fn launch(&self, c: &Candidate) -> Launch {
        let grid = c.source.grid(&Problem::Gemm(self.problem.clone()));
        Launch::new(grid, [c.source.threads, 1, 1]).with_dynamic_smem(c.source.smem_bytes)
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
