//! What a launch needs: the launch shape ([`Launch`]), argument values ([`ArgValue`]), an
//! optional analytic [`Cost`], the check of argument values against the kernel's ABI
//! (`tessera_dsl::ir::Arg`) and the packing of checked values into the parameter slots that
//! both GPU runtimes read ([`pack_args`]: CUDA's `cuLaunchKernel` and HIP's
//! `hipModuleLaunchKernel` take the same array of pointers to parameter values).
//!
//! This module depends on `tessera-dsl` (for the ABI) and nothing else; it knows no driver.

use crate::error::DeviceError;
use crate::memory::{Buffer, BufferView};
use tessera_dsl::ir::Arg;
use tessera_dsl::{DeviceCaps, TensorMapArg, TensorMapGeometry};

/// Grid and block shape of one launch, plus dynamic shared memory in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Launch {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub dynamic_smem: u32,
    /// Work of this launch for the simulated device's roofline (overrides the module's).
    pub cost: Option<Cost>,
}

impl Launch {
    pub fn new(grid: [u32; 3], block: [u32; 3]) -> Launch {
        Launch {
            grid,
            block,
            dynamic_smem: 0,
            cost: None,
        }
    }

    pub fn with_dynamic_smem(mut self, bytes: u32) -> Launch {
        self.dynamic_smem = bytes;
        self
    }

    pub fn with_cost(mut self, cost: Cost) -> Launch {
        self.cost = Some(cost);
        self
    }

    /// Threads in one block.
    pub fn threads_per_block(&self) -> u64 {
        self.block.iter().map(|&d| u64::from(d)).product()
    }

    /// Blocks in the grid.
    pub fn blocks(&self) -> u64 {
        self.grid.iter().map(|&d| u64::from(d)).product()
    }

    /// A zero grid or block dimension is a caller bug, not a kernel failure.
    pub(crate) fn check_shape(&self, kernel: &str) -> Result<(), DeviceError> {
        if self.grid.contains(&0) || self.block.contains(&0) {
            return Err(DeviceError::InvalidRequest {
                message: format!(
                    "launch of `{kernel}` has a zero dimension: grid {:?}, block {:?}",
                    self.grid, self.block
                ),
            });
        }
        Ok(())
    }

    /// Check static plus dynamic shared memory (LDS on AMD) against the device's per-block
    /// limit: too much is a `Launch` error naming the kernel, as on hardware.
    pub(crate) fn check_total_smem(
        &self,
        kernel: &str,
        static_smem: u32,
        caps: &DeviceCaps,
    ) -> Result<(), DeviceError> {
        let total = u64::from(self.dynamic_smem) + u64::from(static_smem);
        if total > u64::from(caps.smem_per_block) {
            return Err(DeviceError::Launch {
                kernel: kernel.to_string(),
                message: format!(
                    "needs {total} bytes of shared memory ({static_smem} static + {} dynamic); the device allows {} per block",
                    self.dynamic_smem, caps.smem_per_block
                ),
            });
        }
        Ok(())
    }

    /// Check the launch against a device's per-block limits: a candidate that asks for more
    /// threads or shared memory than the device has fails like a launch on real hardware does
    /// (a `Launch` error naming the kernel, which the tuner records as a rejection).
    pub(crate) fn check_limits(&self, kernel: &str, caps: &DeviceCaps) -> Result<(), DeviceError> {
        let threads = self.threads_per_block();
        if threads > u64::from(caps.max_threads_per_block) {
            return Err(DeviceError::Launch {
                kernel: kernel.to_string(),
                message: format!(
                    "block of {threads} threads exceeds the device limit of {} threads per block",
                    caps.max_threads_per_block
                ),
            });
        }
        if self.dynamic_smem > caps.smem_per_block {
            return Err(DeviceError::Launch {
                kernel: kernel.to_string(),
                message: format!(
                    "requests {} bytes of dynamic shared memory; the device allows {} per block",
                    self.dynamic_smem, caps.smem_per_block
                ),
            });
        }
        Ok(())
    }
}

/// The work a launch does, for the simulated device's analytic timing:
/// `time = max(flops / (peak · efficiency), bytes / bandwidth) + launch overhead`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// Floating-point operations.
    pub flops: f64,
    /// DRAM bytes moved.
    pub bytes: f64,
    /// Fraction of peak compute the kernel reaches, in (0, 1].
    pub efficiency: f64,
}

impl Cost {
    pub fn new(flops: f64, bytes: f64, efficiency: f64) -> Cost {
        Cost {
            flops,
            bytes,
            efficiency,
        }
    }

    /// Reject costs that would make a time meaningless (negative, NaN, zero efficiency).
    pub(crate) fn check(&self, kernel: &str) -> Result<(), DeviceError> {
        let ok = self.flops.is_finite()
            && self.flops >= 0.0
            && self.bytes.is_finite()
            && self.bytes >= 0.0
            && self.efficiency.is_finite()
            && self.efficiency > 0.0
            && self.efficiency <= 1.0;
        if ok {
            Ok(())
        } else {
            Err(DeviceError::InvalidRequest {
                message: format!(
                    "cost of `{kernel}` is invalid: flops {}, bytes {}, efficiency {} (need finite, non-negative values and efficiency in (0, 1])",
                    self.flops, self.bytes, self.efficiency
                ),
            })
        }
    }
}

/// One argument value of a launch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArgValue {
    /// A device pointer to the start of a buffer, or null.
    Ptr(Option<Buffer>),
    /// A device pointer into a buffer: its address plus the view's offset. The offset must be
    /// a multiple of the pointed-to element's size ([`check_args`]).
    View(BufferView),
    I32(i32),
    I64(i64),
    F32(f32),
}

impl ArgValue {
    pub fn ptr(buffer: &Buffer) -> ArgValue {
        ArgValue::Ptr(Some(*buffer))
    }

    pub fn null() -> ArgValue {
        ArgValue::Ptr(None)
    }

    /// A pointer into part of a buffer.
    pub fn view(view: BufferView) -> ArgValue {
        ArgValue::View(view)
    }

    /// The buffer behind a pointer argument (for a view, the whole buffer it points into).
    pub fn buffer(&self) -> Option<Buffer> {
        match self {
            ArgValue::Ptr(b) => *b,
            ArgValue::View(v) => Some(v.buffer()),
            _ => None,
        }
    }

    /// The bytes a pointer argument points at: a whole buffer, or a view of one.
    pub fn region(&self) -> Option<BufferView> {
        match self {
            ArgValue::Ptr(b) => b.map(|b| b.whole()),
            ArgValue::View(v) => Some(*v),
            _ => None,
        }
    }

    /// The kind, as the ABI check names it.
    pub fn kind(&self) -> &'static str {
        match self {
            ArgValue::Ptr(_) | ArgValue::View(_) => "pointer",
            ArgValue::I32(_) => "i32",
            ArgValue::I64(_) => "i64",
            ArgValue::F32(_) => "f32",
        }
    }
}

impl From<&Buffer> for ArgValue {
    fn from(b: &Buffer) -> Self {
        ArgValue::ptr(b)
    }
}

impl From<i32> for ArgValue {
    fn from(v: i32) -> Self {
        ArgValue::I32(v)
    }
}

impl From<i64> for ArgValue {
    fn from(v: i64) -> Self {
        ArgValue::I64(v)
    }
}

impl From<f32> for ArgValue {
    fn from(v: f32) -> Self {
        ArgValue::F32(v)
    }
}

fn abi_kind(arg: &Arg) -> &'static str {
    match arg {
        Arg::Ptr { .. } | Arg::I32Ptr(_) => "pointer",
        Arg::I32(_) => "i32",
        Arg::I64(_) => "i64",
        Arg::F32(_) => "f32",
    }
}

/// Check argument values against a kernel's ABI: same count, same kind at every position, and
/// every view's offset a multiple of its element's size (an `InvalidView` naming the argument).
pub fn check_args(kernel: &str, abi: &[Arg], args: &[ArgValue]) -> Result<(), DeviceError> {
    if abi.len() != args.len() {
        return Err(DeviceError::ArgMismatch {
            kernel: kernel.to_string(),
            message: format!(
                "takes {} arguments ({}), got {}",
                abi.len(),
                abi.iter().map(Arg::name).collect::<Vec<_>>().join(", "),
                args.len()
            ),
        });
    }
    for (i, (want, got)) in abi.iter().zip(args).enumerate() {
        let matches = matches!(
            (want, got),
            (
                Arg::Ptr { .. } | Arg::I32Ptr(_),
                ArgValue::Ptr(_) | ArgValue::View(_)
            ) | (Arg::I32(_), ArgValue::I32(_))
                | (Arg::I64(_), ArgValue::I64(_))
                | (Arg::F32(_), ArgValue::F32(_))
        );
        if !matches {
            return Err(DeviceError::ArgMismatch {
                kernel: kernel.to_string(),
                message: format!(
                    "argument {i} (`{}`) must be {}, got {}",
                    want.name(),
                    abi_kind(want),
                    got.kind()
                ),
            });
        }
        if let ArgValue::View(v) = got {
            let (align, dtype) = match want {
                Arg::Ptr { dtype, .. } => (u64::from(dtype.size_bytes()), dtype.name()),
                _ => (4, "i32"),
            };
            v.check_alignment(
                align,
                &format!("kernel `{kernel}` argument `{}` ({dtype})", want.name()),
            )?;
        }
    }
    Ok(())
}

/// The storage of one kernel parameter: pointers and 64-bit values fill all eight bytes,
/// 32-bit values the first four (native-endian), the rest is zero. A runtime reads as many
/// bytes from the front as the kernel's parameter has, so one slot fits every ABI kind.
pub type ArgSlot = [u8; 8];

/// Pack (already [`check_args`]-checked) argument values into one [`ArgSlot`] each, in order.
/// `address` gives the device address of a buffer the device holds (its error, typically
/// `InvalidBuffer`, is returned as is); a view's address is its buffer's plus its offset; a
/// null pointer is zero.
pub fn pack_args(
    args: &[ArgValue],
    mut address: impl FnMut(&Buffer) -> Result<u64, DeviceError>,
) -> Result<Vec<ArgSlot>, DeviceError> {
    args.iter()
        .map(|a| {
            let mut slot = [0u8; 8];
            match a {
                ArgValue::Ptr(None) => {}
                ArgValue::Ptr(Some(b)) => slot = address(b)?.to_ne_bytes(),
                ArgValue::View(v) => {
                    // a view was checked against the handle's length; the allocation behind a
                    // live handle has the same length, so the sum stays inside it
                    slot = (address(&v.buffer())? + v.offset()).to_ne_bytes()
                }
                ArgValue::I32(v) => slot[..4].copy_from_slice(&v.to_ne_bytes()),
                ArgValue::I64(v) => slot = v.to_ne_bytes(),
                ArgValue::F32(v) => slot[..4].copy_from_slice(&v.to_ne_bytes()),
            }
            Ok(slot)
        })
        .collect()
}

/// One tensor map of a launch, resolved against its argument values: the buffer it points
/// into, the byte offset of the tensor in it (non-zero for a view argument) and the geometry
/// to encode.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTensorMap {
    pub buffer: Buffer,
    pub offset: u64,
    pub map: TensorMapArg,
    pub geometry: TensorMapGeometry,
}

/// Resolve a module's tensor maps against a launch's (already ABI-checked) arguments; the
/// batch count is the grid's y × z extent (GEMM: y is 1, z the batches; attention: heads ×
/// batch). A map that cannot describe the arguments (a null or
/// misaligned tensor, a stride TMA cannot take) is a `Launch` error naming the kernel, which
/// the tuner records as that candidate's rejection. A view argument's map starts at the view:
/// its offset must be 16-byte aligned (TMA's rule for a global address) and the map must fit
/// in the view. A map whose line count is [`tessera_dsl::Extent::RegionLines`] (a packed
/// batch's tokens) has as many lines as the bound region (buffer or view) holds.
pub fn resolve_tensor_maps(
    kernel: &str,
    abi: &[Arg],
    maps: &[TensorMapArg],
    args: &[ArgValue],
    launch: &Launch,
) -> Result<Vec<ResolvedTensorMap>, DeviceError> {
    let fail = |message: String| DeviceError::Launch {
        kernel: kernel.to_string(),
        message,
    };
    let position = |name: &str| abi.iter().position(|a| a.name() == name);
    let value = |name: &str| -> Option<i64> {
        match args.get(position(name)?)? {
            ArgValue::I32(v) => Some(i64::from(*v)),
            ArgValue::I64(v) => Some(*v),
            _ => None,
        }
    };
    maps.iter()
        .map(|map| {
            let region = position(&map.tensor)
                .and_then(|i| args.get(i))
                .and_then(ArgValue::region)
                .ok_or_else(|| {
                    fail(format!(
                        "tensor map `{}` needs a buffer for `{}`",
                        map.name, map.tensor
                    ))
                })?;
            if !region.offset().is_multiple_of(16) {
                return Err(fail(format!(
                    "tensor map `{}`: `{}` starts at byte {} of its buffer, not 16-byte aligned",
                    map.name,
                    map.tensor,
                    region.offset()
                )));
            }
            // a map may take its line count from the region it is bound to (`RegionLines`)
            let geometry = map
                .resolve_in(
                    &value,
                    u64::from(launch.grid[1]) * u64::from(launch.grid[2]),
                    Some(region.len()),
                )
                .map_err(|e| fail(e.to_string()))?;
            let last = geometry.strides[1] * (geometry.dims[2] - 1)
                + geometry.strides[0] * (geometry.dims[1] - 1)
                + geometry.dims[0] * u64::from(geometry.elem_bytes);
            if last > region.len() {
                return Err(fail(format!(
                    "tensor map `{}` spans {last} bytes of `{}`, a {} of {}",
                    map.name,
                    map.tensor,
                    if region.len() == region.buffer().len() && region.offset() == 0 {
                        "buffer"
                    } else {
                        "view"
                    },
                    region.len()
                )));
            }
            Ok(ResolvedTensorMap {
                buffer: region.buffer(),
                offset: region.offset(),
                map: map.clone(),
                geometry,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_dsl::DType;
    use tessera_dsl::TensorMapArg;

    fn abi() -> Vec<Arg> {
        vec![
            Arg::Ptr {
                name: "x",
                dtype: DType::F32,
                written: false,
            },
            Arg::I32("n"),
            Arg::F32("alpha"),
        ]
    }

    #[test]
    fn matching_args_pass() {
        let b = Buffer::fresh(16);
        check_args("k", &abi(), &[ArgValue::ptr(&b), 4.into(), 1.5f32.into()]).unwrap();
        check_args("k", &abi(), &[ArgValue::null(), 4.into(), 1.5f32.into()]).unwrap();
    }

    #[test]
    fn wrong_count_and_kind_name_kernel_and_arg() {
        let e = check_args("axpy", &abi(), &[ArgValue::null()]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("axpy") && msg.contains("takes 3 arguments (x, n, alpha), got 1"),
            "{msg}"
        );
        let e = check_args(
            "axpy",
            &abi(),
            &[ArgValue::null(), 4i64.into(), 1.0f32.into()],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "kernel `axpy`: argument 1 (`n`) must be i32, got i64"
        );
        assert!(matches!(e, DeviceError::ArgMismatch { .. }));
    }

    #[test]
    fn views_are_pointers_checked_for_element_alignment() {
        let abi = vec![
            Arg::Ptr {
                name: "x",
                dtype: DType::F16,
                written: false,
            },
            Arg::I32Ptr("lens"),
        ];
        let b = Buffer::fresh(64);
        let ok = [
            ArgValue::view(b.view(2, 8).unwrap()),
            ArgValue::view(b.view(8, 8).unwrap()),
        ];
        check_args("k", &abi, &ok).unwrap();
        assert_eq!(ok[0].region().unwrap().offset(), 2);
        assert_eq!(ok[0].buffer(), Some(b));
        assert_eq!(ArgValue::ptr(&b).region(), Some(b.whole()));
        let e = check_args(
            "k",
            &abi,
            &[
                ArgValue::view(b.view(3, 8).unwrap()),
                ArgValue::view(b.view(8, 8).unwrap()),
            ],
        )
        .unwrap_err();
        assert!(
            matches!(e, DeviceError::InvalidView { offset: 3, .. })
                && e.to_string().contains("`x` (f16) needs 2-byte alignment"),
            "{e}"
        );
        let e = check_args(
            "k",
            &abi,
            &[
                ArgValue::view(b.view(2, 8).unwrap()),
                ArgValue::view(b.view(6, 8).unwrap()),
            ],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("`lens` (i32) needs 4-byte alignment"),
            "{e}"
        );
    }

    /// A map over a view starts at the view, must be 16-byte aligned there and fit in it.
    #[test]
    fn tensor_maps_resolve_against_views() {
        let abi = vec![
            Arg::Ptr {
                name: "a",
                dtype: DType::F16,
                written: false,
            },
            Arg::I32("m"),
            Arg::I32("k"),
            Arg::I64("lda"),
            Arg::I64("stride_a"),
        ];
        let map = TensorMapArg {
            name: "tmap_a".into(),
            tensor: "a".into(),
            dtype: DType::F16,
            inner: "k".into(),
            lines: "m".into(),
            line_stride: "lda".into(),
            batch_stride: "stride_a".into(),
            batches: None,
            box_inner: 64,
            box_lines: 64,
            box_lines_cap: None,
            swizzle: tessera_dsl::Swizzle::B128,
        };
        // a 64 × 64 f16 matrix: 8 KiB
        let args = |a: ArgValue| vec![a, 64.into(), 64.into(), 64i64.into(), 4096i64.into()];
        let launch = Launch::new([1, 1, 1], [128, 1, 1]);
        let buf = Buffer::fresh(3 * 8192);
        let maps = resolve_tensor_maps(
            "g",
            &abi,
            std::slice::from_ref(&map),
            &args(ArgValue::view(buf.view(8192, 8192).unwrap())),
            &launch,
        )
        .unwrap();
        assert_eq!((maps[0].buffer, maps[0].offset), (buf, 8192));
        let e = resolve_tensor_maps(
            "g",
            &abi,
            std::slice::from_ref(&map),
            &args(ArgValue::view(buf.view(8, 8192).unwrap())),
            &launch,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not 16-byte aligned"), "{e}");
        let e = resolve_tensor_maps(
            "g",
            &abi,
            std::slice::from_ref(&map),
            &args(ArgValue::view(buf.view(8192, 4096).unwrap())),
            &launch,
        )
        .unwrap_err();
        assert!(e.to_string().contains("a view of 4096"), "{e}");
    }

    /// A packed operand's map takes its token count from the bound region, buffer or view;
    /// a region of no whole number of tokens is a launch error naming the kernel.
    #[test]
    fn tensor_maps_take_lines_from_the_region() {
        let abi = vec![
            Arg::Ptr {
                name: "q",
                dtype: DType::F16,
                written: false,
            },
            Arg::I32("heads"),
        ];
        let map = TensorMapArg {
            name: "tmap_q".into(),
            tensor: "q".into(),
            dtype: DType::F16,
            inner: tessera_dsl::Extent::Const(64),
            lines: tessera_dsl::Extent::RegionLines,
            line_stride: tessera_dsl::Extent::Scaled("heads".into(), 64),
            batch_stride: tessera_dsl::Extent::Const(64),
            batches: Some("heads".into()),
            box_inner: 64,
            box_lines: 64,
            box_lines_cap: None,
            swizzle: tessera_dsl::Swizzle::B128,
        };
        let launch = Launch::new([3, 4, 5], [256, 1, 1]);
        let resolve = |a: ArgValue| {
            resolve_tensor_maps(
                "attn",
                &abi,
                std::slice::from_ref(&map),
                &[a, 4.into()],
                &launch,
            )
        };
        // 4 heads × 64 f16: 512-byte tokens
        let buf = Buffer::fresh(77 * 512);
        let maps = resolve(ArgValue::ptr(&buf)).unwrap();
        assert_eq!(maps[0].geometry.dims, [64, 77, 4]);
        assert_eq!(maps[0].geometry.strides, [512, 128]);
        let maps = resolve(ArgValue::view(buf.view(512, 10 * 512).unwrap())).unwrap();
        assert_eq!((maps[0].offset, maps[0].geometry.dims[1]), (512, 10));
        let e = resolve(ArgValue::view(buf.view(512, 10 * 512 + 16).unwrap())).unwrap_err();
        assert!(matches!(e, DeviceError::Launch { .. }), "{e}");
        assert!(
            e.to_string().contains("attn") && e.to_string().contains("not a whole"),
            "{e}"
        );
    }

    #[test]
    fn args_pack_into_eight_byte_slots() {
        let b = Buffer::fresh(64);
        let other = Buffer::fresh(8);
        let base = |buf: &Buffer| {
            if *buf == b {
                Ok(0x7f00_0000_1000)
            } else {
                Err(DeviceError::InvalidBuffer { id: buf.id() })
            }
        };
        let slots = pack_args(
            &[
                ArgValue::ptr(&b),
                ArgValue::view(b.view(16, 8).unwrap()),
                ArgValue::null(),
                ArgValue::I32(-2),
                ArgValue::I64(1 << 40),
                ArgValue::F32(1.5),
            ],
            base,
        )
        .unwrap();
        assert_eq!(slots[0], 0x7f00_0000_1000u64.to_ne_bytes());
        assert_eq!(slots[1], 0x7f00_0000_1010u64.to_ne_bytes());
        assert_eq!(slots[2], [0; 8]);
        assert_eq!(slots[3][..4], (-2i32).to_ne_bytes());
        assert_eq!(slots[3][4..], [0; 4]);
        assert_eq!(slots[4], (1i64 << 40).to_ne_bytes());
        assert_eq!(slots[5][..4], 1.5f32.to_ne_bytes());
        assert_eq!(slots[5][4..], [0; 4]);
        let e = pack_args(&[ArgValue::I32(1), ArgValue::ptr(&other)], base).unwrap_err();
        assert_eq!(e, DeviceError::InvalidBuffer { id: other.id() });
    }

    #[test]
    fn launch_shape_and_cost_checks() {
        let l = Launch::new([2, 3, 1], [128, 1, 1]);
        assert_eq!(l.threads_per_block(), 128);
        assert_eq!(l.blocks(), 6);
        l.check_shape("k").unwrap();
        assert!(Launch::new([0, 1, 1], [1, 1, 1]).check_shape("k").is_err());
        let caps = tessera_dsl::Target::Sm80.nominal_caps();
        l.check_limits("k", &caps).unwrap();
        let e = Launch::new([1, 1, 1], [1024, 2, 1])
            .check_limits("k", &caps)
            .unwrap_err();
        assert!(e.to_string().contains("2048 threads"), "{e}");
        let e = l
            .with_dynamic_smem(300_000)
            .check_limits("k", &caps)
            .unwrap_err();
        assert!(matches!(e, DeviceError::Launch { .. }), "{e}");
        l.check_total_smem("k", 1024, &caps).unwrap();
        let e = l
            .with_dynamic_smem(caps.smem_per_block)
            .check_total_smem("k", 16, &caps)
            .unwrap_err();
        assert!(e.to_string().contains("(16 static + "), "{e}");
        Cost::new(1.0, 1.0, 0.5).check("k").unwrap();
        assert!(Cost::new(1.0, 1.0, 0.0).check("k").is_err());
        assert!(Cost::new(f64::NAN, 1.0, 1.0).check("k").is_err());
    }
}
