//! What the simulated device runs in place of a kernel: the CPU reference over the simulated
//! buffers named by the launch arguments.
//!
//! Small problems are computed in full. Large ones are computed at exactly the positions the
//! correctness gate checks (`verify::gemm_positions`); every other element keeps whatever the
//! buffer held (the poison), which is never read. A [`Fault`] plants a defect for tests of the
//! gate itself.

use std::sync::Arc;
use tessera_device::{ArgValue, Emulation, SimMemory};
use tessera_dsl::{GemmProblem, Problem};
use tessera_library::host::HostTensor;
use tessera_library::operands::{OpInputs, Scalar, Slot};
use tessera_library::reference::{gemm_element, GemmInputs, GemmStrides};
use tessera_library::verify::gemm_positions;
use tessera_library::verify::{expected_op, op_output_index};

/// A defect to plant in an emulated kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// One checked element is off by a large amount.
    WrongValue,
    /// The kernel "crashes": the launch fails.
    LaunchFailure,
}

fn read(
    mem: &SimMemory,
    arg: &ArgValue,
    dtype: tessera_dsl::DType,
) -> Result<Option<HostTensor>, String> {
    match arg.buffer() {
        None => Ok(None),
        Some(b) => {
            let bytes = mem.bytes(&b).map_err(|e| e.to_string())?;
            HostTensor::from_bytes(dtype, bytes)
                .map(Some)
                .map_err(|e| e.to_string())
        }
    }
}

/// The emulation of any GEMM kernel for problems of `template`'s shape class (dtypes, layout,
/// epilogue); M, N, K, strides, alpha and beta are read from the launch arguments.
pub fn gemm(template: &GemmProblem, fault: Option<Fault>) -> Emulation {
    let template = template.clone();
    Arc::new(move |mem: &mut SimMemory, args: &[ArgValue]| {
        if fault == Some(Fault::LaunchFailure) {
            return Err("planted fault: illegal memory access".into());
        }
        let int = |i: usize| match args.get(i) {
            Some(ArgValue::I32(v)) => Ok(i64::from(*v)),
            Some(ArgValue::I64(v)) => Ok(*v),
            other => Err(format!("argument {i}: expected an integer, got {other:?}")),
        };
        let float = |i: usize| match args.get(i) {
            Some(ArgValue::F32(v)) => Ok(*v),
            other => Err(format!("argument {i}: expected f32, got {other:?}")),
        };
        let (m, n, k) = (int(6)?, int(7)?, int(8)?);
        if m <= 0 || n <= 0 || k <= 0 {
            return Err(format!("non-positive sizes {m}x{n}x{k}"));
        }
        let mut p = template.clone();
        p.m = m as u64;
        p.n = n as u64;
        p.k = k as u64;
        let s = GemmStrides::packed(&p);
        let given = [
            int(9)?,
            int(10)?,
            int(11)?,
            int(12)?,
            int(13)?,
            int(14)?,
            int(15)?,
            int(16)?,
        ];
        let packed = [
            s.lda, s.ldb, s.ldc, s.ldd, s.stride_a, s.stride_b, s.stride_c, s.stride_d,
        ];
        for (g, want) in given.iter().zip(packed) {
            // ldc/stride_c are free when C is absent
            if *g != want && args.get(2).and_then(ArgValue::buffer).is_some() {
                return Err("the simulated device emulates packed operands only".into());
            }
        }
        let get = |i: usize, dt| read(mem, &args[i], dt);
        let x = GemmInputs {
            a: get(0, p.input)?.ok_or("A is null")?,
            b: get(1, p.input)?.ok_or("B is null")?,
            c: get(2, p.output)?,
            bias: get(4, p.output)?,
            residual: get(5, p.output)?,
            alpha: float(17)?,
            beta: float(18)?,
        };
        let d = args.get(3).and_then(ArgValue::buffer).ok_or("D is null")?;
        let positions = gemm_positions(&p);
        let mut out = read(mem, &ArgValue::Ptr(Some(d)), p.output)?.ok_or("D is null")?;
        for (idx, &(b, i, j)) in positions.iter().enumerate() {
            let mut v = gemm_element(&p, &x, b, i, j);
            if fault == Some(Fault::WrongValue) && idx == positions.len() / 2 {
                v += 1.0;
            }
            out.values[p.output_index(b, i, j) as usize] =
                tessera_library::host::round_to(p.output, v as f32);
        }
        let bytes = out.to_bytes();
        mem.bytes_mut(&d)
            .map_err(|e| e.to_string())?
            .copy_from_slice(&bytes);
        Ok(())
    })
}

/// The emulation of any row-wise or attention kernel for `problem`: the inputs are read back
/// from the buffers the launch arguments name (in `ir::abi` order), the checked rows are
/// computed by the reference and written to the output. Packed attention takes its sequences
/// from the `cu_seqlens` operands, as the kernel does (a launch may carry other lengths than
/// the problem it was built for; empty sequences have no rows).
pub fn op(problem: &Problem, fault: Option<Fault>) -> Emulation {
    let problem = problem.clone();
    Arc::new(move |mem: &mut SimMemory, args: &[ArgValue]| {
        if fault == Some(Fault::LaunchFailure) {
            return Err("planted fault: illegal memory access".into());
        }
        // the slot layout of this problem, filled from the device's buffers
        let mut x = OpInputs::layout(&problem).map_err(|e| e.to_string())?;
        let mut out = None;
        let slots = x.slots.len();
        if args.len() != slots + x.scalars.len() {
            return Err(format!(
                "expected {} arguments, got {}",
                slots + x.scalars.len(),
                args.len()
            ));
        }
        for ((_, slot), arg) in x.slots.iter_mut().zip(args) {
            match slot {
                Slot::Input(t) => *t = read(mem, arg, t.dtype)?.ok_or("an input is null")?,
                Slot::Ints(lens) => {
                    let b = arg.buffer().ok_or("an i32 operand is null")?;
                    let bytes = mem.bytes(&b).map_err(|e| e.to_string())?;
                    *lens = bytes
                        .chunks_exact(4)
                        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                }
                Slot::Output { dtype, .. } => {
                    out = Some((arg.buffer().ok_or("the output is null")?, *dtype))
                }
                Slot::Absent => {}
            }
        }
        for ((_, s), arg) in x.scalars.iter_mut().zip(&args[slots..]) {
            *s = match arg {
                ArgValue::I32(v) => Scalar::I32(*v),
                ArgValue::F32(v) => Scalar::F32(*v),
                other => return Err(format!("unexpected scalar {other:?}")),
            };
        }
        runtime_packing(&mut x);
        let (d, dtype) = out.ok_or("no output argument")?;
        let mut values = read(mem, &ArgValue::Ptr(Some(d)), dtype)?.ok_or("the output is null")?;
        let e = expected_op(&x);
        for (idx, (&(o, r, c), &v)) in e.positions.iter().zip(&e.values).enumerate() {
            let v = if fault == Some(Fault::WrongValue) && idx == e.positions.len() / 2 {
                v + 1.0
            } else {
                v
            };
            values.values[op_output_index(&x.problem, o, r, c) as usize] =
                tessera_library::host::round_to(dtype, v as f32);
        }
        let bytes = values.to_bytes();
        mem.bytes_mut(&d)
            .map_err(|e| e.to_string())?
            .copy_from_slice(&bytes);
        Ok(())
    })
}

/// Packed attention's lengths as the launch's `cu_seqlens` operands give them.
fn runtime_packing(x: &mut OpInputs) {
    let Problem::Attention(a) = &x.problem else {
        return;
    };
    if a.packed.is_none() {
        return;
    }
    let lens = |name: &str| -> Option<Vec<u64>> {
        let cu = x.ints(name)?;
        cu.windows(2)
            .map(|w| u64::try_from(w[1].saturating_sub(w[0])).ok())
            .collect()
    };
    if let (Some(q), Some(kv)) = (lens("cu_seqlens_q"), lens("cu_seqlens_kv")) {
        if let Problem::Attention(a) = &mut x.problem {
            a.seq_q = q.iter().copied().max().unwrap_or(0);
            a.seq_kv = kv.iter().copied().max().unwrap_or(0);
            a.packed = Some(tessera_dsl::Packing {
                lens_q: q,
                lens_kv: kv,
            });
        }
    }
}
