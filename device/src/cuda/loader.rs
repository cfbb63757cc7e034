//! Finding the CUDA libraries at run time, without ever panicking.
//!
//! cudarc loads `libcuda` and `libnvrtc` lazily and panics when a library or a symbol is
//! missing. Every entry point of [`crate::cuda`] calls [`driver`] or [`nvrtc`] first: they check
//! the library can be opened and that every symbol Tessera calls exists, once per process, and
//! turn a failure into a typed error (`NoDriver`, `DriverTooOld`, `NoCompiler`). After a
//! successful check, cudarc's lazy loads cannot fail.
//!
//! This module depends on cudarc's `sys` loaders only.

use crate::error::DeviceError;
use cudarc::driver::sys as cu;
use cudarc::nvrtc::sys as nv;
use std::sync::OnceLock;

/// Driver entry points the CUDA device calls (cudarc binds the CUDA 13.0 names).
const DRIVER_SYMBOLS: &[&str] = &[
    "cuInit",
    "cuDriverGetVersion",
    "cuDeviceGetCount",
    "cuDeviceGet",
    "cuDeviceGetName",
    "cuDeviceGetAttribute",
    "cuDeviceTotalMem_v2",
    "cuDevicePrimaryCtxRetain",
    "cuDevicePrimaryCtxRelease_v2",
    "cuCtxGetCurrent",
    "cuCtxSetCurrent",
    "cuCtxSynchronize",
    "cuGetErrorName",
    "cuGetErrorString",
    "cuMemAlloc_v2",
    "cuMemFree_v2",
    "cuMemcpyHtoD_v2",
    "cuMemcpyDtoH_v2",
    "cuMemsetD8_v2",
    "cuMemsetD8Async",
    "cuModuleLoadData",
    "cuModuleGetFunction",
    "cuModuleUnload",
    "cuFuncGetAttribute",
    "cuFuncSetAttribute",
    "cuLaunchKernel",
    "cuStreamSynchronize",
    "cuStreamCreate",
    "cuStreamDestroy_v2",
    "cuStreamBeginCapture_v2",
    "cuStreamEndCapture",
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoHAsync_v2",
    "cuGraphInstantiateWithFlags",
    "cuGraphUpload",
    "cuGraphLaunch",
    "cuGraphExecDestroy",
    "cuGraphDestroy",
    "cuEventCreate",
    "cuEventRecord",
    "cuEventSynchronize",
    "cuEventElapsedTime_v2",
    "cuEventDestroy_v2",
];

/// NVRTC entry points `nvrtc_compile` calls.
const NVRTC_SYMBOLS: &[&str] = &[
    "nvrtcVersion",
    "nvrtcCreateProgram",
    "nvrtcCompileProgram",
    "nvrtcDestroyProgram",
    "nvrtcGetProgramLogSize",
    "nvrtcGetProgramLog",
    "nvrtcGetCUBINSize",
    "nvrtcGetCUBIN",
    "nvrtcGetPTXSize",
    "nvrtcGetPTX",
];

/// Check the driver library and its symbols (once per process).
pub fn driver() -> Result<(), DeviceError> {
    static CHECK: OnceLock<Result<(), DeviceError>> = OnceLock::new();
    CHECK
        .get_or_init(|| {
            // SAFETY: only opens the library by name (dlopen); runs its initialisers, as any
            // use of the driver does.
            if !unsafe { cu::is_culib_present() } {
                return Err(DeviceError::NoDriver);
            }
            // SAFETY: present per the check above, so `culib` finds it and does not panic.
            let lib = unsafe { cu::culib() };
            for sym in DRIVER_SYMBOLS {
                // SAFETY: only looks the symbol up; it is never called through this pointer.
                if unsafe { lib.get::<*const ()>(sym.as_bytes()) }.is_err() {
                    return Err(DeviceError::DriverTooOld {
                        symbol: (*sym).to_string(),
                    });
                }
            }
            Ok(())
        })
        .clone()
}

/// Check the NVRTC library and its symbols (once per process).
pub fn nvrtc() -> Result<(), DeviceError> {
    static CHECK: OnceLock<Result<(), DeviceError>> = OnceLock::new();
    CHECK
        .get_or_init(|| {
            // SAFETY: as in `driver`.
            if !unsafe { nv::is_culib_present() } {
                return Err(DeviceError::NoCompiler {
                    message: "NVRTC could not be loaded (libnvrtc.so.13 is not on the library path); \
                              install the CUDA 13 toolkit or the `nvidia-cuda-nvrtc` wheel and put its \
                              lib folder on LD_LIBRARY_PATH"
                        .into(),
                });
            }
            // SAFETY: present per the check above.
            let lib = unsafe { nv::culib() };
            for sym in NVRTC_SYMBOLS {
                // SAFETY: only looks the symbol up.
                if unsafe { lib.get::<*const ()>(sym.as_bytes()) }.is_err() {
                    return Err(DeviceError::NoCompiler {
                        message: format!("the loaded NVRTC lacks `{sym}` (NVRTC 12 or newer is needed)"),
                    });
                }
            }
            Ok(())
        })
        .clone()
}
