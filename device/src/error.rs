//! The one error type of the device layer.
//!
//! Every fallible operation of a [`Device`](crate::Device) and of the free compile functions
//! returns a [`DeviceError`]. Variants are split the way the tuner needs them: infrastructure
//! problems (no driver, no device, no compiler) end a run, while per-kernel failures
//! (`Compile`, `Launch`, `OutOfMemory`, `ArgMismatch`) become rejected candidates.
//!
//! CUDA's and HIP's infrastructure errors are separate variants (`NoDriver`/`Driver` and
//! `NoHipRuntime`/`Hip`), so every message names the right vendor's library and call.
//!
//! This module depends on nothing but `std` and `thiserror`.

/// Why a device operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeviceError {
    /// The CUDA driver library could not be loaded at all.
    #[error(
        "no NVIDIA driver found (libcuda.so.1 could not be loaded); Tessera can still compile with --compile-only"
    )]
    NoDriver,

    /// The driver loaded but lacks an entry point Tessera needs (it is older than CUDA 13.0).
    #[error("the NVIDIA driver is too old for Tessera: it lacks `{symbol}` (CUDA 13.0 / driver 580 or newer is needed)")]
    DriverTooOld { symbol: String },

    /// The driver loaded but there is no usable GPU (none present, or the ordinal is out of range,
    /// or its architecture is not a Tessera target).
    #[error("no usable GPU: {message}")]
    NoDevice { message: String },

    /// The runtime compiler (NVRTC) could not be loaded or could not start.
    #[error("no runtime compiler: {message}")]
    NoCompiler { message: String },

    /// The kernel source did not compile; `log` is the compiler's log.
    #[error("kernel `{kernel}` failed to compile:\n{log}")]
    Compile { kernel: String, log: String },

    /// The kernel could not be launched or faulted while running (illegal memory access,
    /// too many resources requested, ...).
    #[error("kernel `{kernel}` failed: {message}")]
    Launch { kernel: String, message: String },

    /// A device allocation did not fit.
    #[error("out of device memory allocating {bytes} bytes")]
    OutOfMemory { bytes: u64 },

    /// Launch arguments do not match the kernel's ABI.
    #[error("kernel `{kernel}`: {message}")]
    ArgMismatch { kernel: String, message: String },

    /// The operation is not available on this device (e.g. running a kernel on the simulated
    /// device without an emulation, or compiling for another target).
    #[error("unsupported: {message}")]
    Unsupported { message: String },

    /// A buffer handle that this device does not own (freed, or from another device).
    #[error(
        "buffer #{id} is not allocated on this device (freed already, or from another device)"
    )]
    InvalidBuffer { id: u64 },

    /// A view that does not fit its buffer or is misaligned for the element it points at.
    #[error("view of buffer #{buffer} at byte {offset}: {message}")]
    InvalidView {
        buffer: u64,
        offset: u64,
        message: String,
    },

    /// A stream, graph or event handle this device does not hold (destroyed already, from
    /// another device, or a stream used in a way its state forbids, such as a copy during
    /// capture).
    #[error("{what} #{id}: {message}")]
    InvalidHandle {
        what: &'static str,
        id: u64,
        message: String,
    },

    /// A module handle that this device does not hold (unloaded, or from another device).
    #[error("module for kernel `{kernel}` is not loaded on this device (unloaded already, or from another device)")]
    UnknownModule { kernel: String },

    /// A host slice whose length differs from the buffer's.
    #[error(
        "copy size mismatch: the buffer holds {buffer_bytes} bytes, the host slice {host_bytes}"
    )]
    SizeMismatch { buffer_bytes: u64, host_bytes: u64 },

    /// The request itself is malformed (zero iterations, a zero grid dimension, a bad cost).
    #[error("invalid request: {message}")]
    InvalidRequest { message: String },

    /// Any other driver call failure, naming the call.
    #[error("CUDA driver call {call} failed: {message}")]
    Driver { call: &'static str, message: String },

    /// The AMD HIP runtime library could not be loaded (no ROCm on this machine, or not on the
    /// library path); `library` names what was tried, `message` says why the last one failed.
    #[error("no AMD HIP runtime found ({library} could not be loaded: {message}); Tessera can still compile for AMD targets with --compile-only")]
    NoHipRuntime { library: String, message: String },

    /// The HIP runtime (or hiprtc) loaded but lacks an entry point Tessera calls.
    #[error("the HIP library {library} is too old for Tessera: it lacks `{symbol}` (ROCm 5.2 or newer is needed)")]
    HipTooOld { library: String, symbol: String },

    /// Any other HIP runtime call failure, naming the call; `message` is HIP's own error name
    /// and string (`hipErrorInvalidValue: invalid argument`).
    #[error("HIP runtime call {call} failed: {message}")]
    Hip { call: &'static str, message: String },
}

impl DeviceError {
    /// A handle of kind `what` (`stream`, `graph`, `event`) this device does not hold: from
    /// another device, or destroyed already.
    pub(crate) fn stale_handle(what: &'static str, id: u64) -> DeviceError {
        let article = if what.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        DeviceError::InvalidHandle {
            what,
            id,
            message: format!("not {article} {what} of this device (destroyed already?)"),
        }
    }

    /// Whether this error is about the machine (no driver, device or compiler) rather than about
    /// one kernel: the tuner stops on these and records the others as rejected candidates.
    pub fn is_infrastructure(&self) -> bool {
        matches!(
            self,
            DeviceError::NoDriver
                | DeviceError::DriverTooOld { .. }
                | DeviceError::NoDevice { .. }
                | DeviceError::NoCompiler { .. }
                | DeviceError::Driver { .. }
                | DeviceError::NoHipRuntime { .. }
                | DeviceError::HipTooOld { .. }
                | DeviceError::Hip { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_driver_is_one_clear_sentence() {
        let msg = DeviceError::NoDriver.to_string();
        assert!(msg.starts_with("no NVIDIA driver found"));
        assert!(msg.contains("--compile-only"));
        assert!(!msg.contains('\n'));
        assert!(DeviceError::NoDriver.is_infrastructure());
    }

    #[test]
    fn hip_errors_name_the_library_and_call() {
        let e = DeviceError::NoHipRuntime {
            library: "libamdhip64.so".into(),
            message: "cannot open shared object file".into(),
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with("no AMD HIP runtime found (libamdhip64.so"),
            "{msg}"
        );
        assert!(
            msg.contains("--compile-only") && !msg.contains('\n'),
            "{msg}"
        );
        assert!(e.is_infrastructure());
        let e = DeviceError::Hip {
            call: "hipMalloc",
            message: "hipErrorInvalidValue: invalid argument".into(),
        };
        assert_eq!(
            e.to_string(),
            "HIP runtime call hipMalloc failed: hipErrorInvalidValue: invalid argument"
        );
        assert!(e.is_infrastructure());
    }

    #[test]
    fn kernel_errors_name_the_kernel() {
        let e = DeviceError::Launch {
            kernel: "gemm_x".into(),
            message: "CUDA_ERROR_ILLEGAL_ADDRESS".into(),
        };
        assert!(e.to_string().contains("gemm_x"));
        assert!(!e.is_infrastructure());
        let e = DeviceError::OutOfMemory { bytes: 1 << 50 };
        assert_eq!(
            e.to_string(),
            "out of device memory allocating 1125899906842624 bytes"
        );
    }
}
