//! The HIP runtime (`libamdhip64`) and hiprtc, loaded at run time with `libloading`: the entry
//! points Tessera calls, resolved once per process, the constants it passes them, and HIP error
//! codes turned into readable messages.
//!
//! Nothing is linked at build time. On a machine without ROCm, [`runtime`] is `NoHipRuntime`
//! and [`rtc`] is `NoCompiler`, both naming the library that could not be loaded; nothing
//! panics. Every entry point is looked up when its library is loaded, so a missing one is
//! `HipTooOld` up front rather than a failure halfway through a run.
//!
//! The constants are the numbers of ROCm's headers, identical from ROCm 5.2 to 6.x: the device
//! attribute numbers, and the two layouts of `hipDeviceProp_t` that matter for its one field
//! Tessera reads (`gcnArchName`), ROCm 5's (`hipGetDeviceProperties`) and ROCm 6's
//! (`hipGetDevicePropertiesR0600`).
//!
//! This module depends on `libloading` and this crate's error type; it holds no device state.

#![allow(non_snake_case)]

use crate::error::DeviceError;
use std::ffi::{c_char, c_float, c_int, c_uint, c_void, CStr};
use std::sync::OnceLock;

/// `hipError_t` (and `hiprtcResult`): 0 is success.
pub(crate) type HipError = c_int;
/// `hipDeviceptr_t`, `hipModule_t`, `hipFunction_t`, `hipStream_t`, `hipEvent_t`,
/// `hiprtcProgram`: all opaque pointers.
pub(crate) type Handle = *mut c_void;

pub(crate) const SUCCESS: HipError = 0;
pub(crate) const ERROR_OUT_OF_MEMORY: HipError = 2;
pub(crate) const ERROR_NO_DEVICE: HipError = 100;
pub(crate) const ERROR_INVALID_DEVICE: HipError = 101;

/// `hipDeviceAttribute_t` values Tessera queries.
pub(crate) mod attr {
    use std::ffi::c_int;
    pub const CLOCK_RATE: c_int = 5;
    pub const L2_CACHE_SIZE: c_int = 19;
    pub const MAX_THREADS_PER_BLOCK: c_int = 56;
    pub const MEMORY_BUS_WIDTH: c_int = 59;
    pub const MEMORY_CLOCK_RATE: c_int = 60;
    pub const MULTIPROCESSOR_COUNT: c_int = 63;
    pub const MAX_REGISTERS_PER_MULTIPROCESSOR: c_int = 72;
    pub const MAX_SHARED_MEMORY_PER_BLOCK: c_int = 74;
    pub const WARP_SIZE: c_int = 87;
}

/// `hipFunction_attribute` values Tessera queries.
pub(crate) mod func_attr {
    use std::ffi::c_int;
    pub const SHARED_SIZE_BYTES: c_int = 1;
    pub const LOCAL_SIZE_BYTES: c_int = 3;
    pub const NUM_REGS: c_int = 4;
}

/// `hipStreamNonBlocking`.
pub(crate) const STREAM_NON_BLOCKING: c_uint = 1;

/// Where `gcnArchName` (a `char[256]`) lies in a `hipDeviceProp_t`, and the struct's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PropsLayout {
    pub gcn_arch_name: usize,
    pub size: usize,
}

/// `hipDeviceProp_tR0600` (ROCm 6 and later).
pub(crate) const PROPS_R0600: PropsLayout = PropsLayout {
    gcn_arch_name: 1160,
    size: 1472,
};
/// `hipDeviceProp_t` of ROCm 5 (`hipDeviceProp_tR0000` in ROCm 6's headers).
pub(crate) const PROPS_R0000: PropsLayout = PropsLayout {
    gcn_arch_name: 396,
    size: 792,
};

// Both layouts hold the whole 256-byte `gcnArchName`; ROCm 6 moved it behind the fields it added.
const _: () = assert!(PROPS_R0000.gcn_arch_name + 256 <= PROPS_R0000.size);
const _: () = assert!(PROPS_R0600.gcn_arch_name + 256 <= PROPS_R0600.size);

/// Declares a table of entry points, resolved from one library by their own names.
macro_rules! entry_points {
    ($(#[$doc:meta])* $table:ident { $($sym:ident: fn($($arg:ty),*) -> $ret:ty;)* }) => {
        $(#[$doc])*
        pub(crate) struct $table {
            $(pub(crate) $sym: unsafe extern "C" fn($($arg),*) -> $ret,)*
            /// The library the pointers above point into, kept loaded with them.
            _lib: libloading::Library,
        }

        impl $table {
            /// Look every entry point up; the first missing one is the error.
            ///
            /// # Safety
            /// `lib` must be the library whose C signatures the table declares.
            unsafe fn resolve(lib: libloading::Library) -> Result<$table, &'static str> {
                $(
                    // SAFETY: per this function's contract the symbol has this signature.
                    let $sym = *unsafe {
                        lib.get::<unsafe extern "C" fn($($arg),*) -> $ret>(stringify!($sym))
                    }
                    .map_err(|_| stringify!($sym))?;
                )*
                Ok($table { $($sym,)* _lib: lib })
            }
        }
    };
}

entry_points! {
    /// The HIP runtime entry points the HIP device calls.
    Runtime {
        hipInit: fn(c_uint) -> HipError;
        hipRuntimeGetVersion: fn(*mut c_int) -> HipError;
        hipGetDeviceCount: fn(*mut c_int) -> HipError;
        hipSetDevice: fn(c_int) -> HipError;
        hipDeviceGetName: fn(*mut c_char, c_int, c_int) -> HipError;
        hipDeviceGetAttribute: fn(*mut c_int, c_int, c_int) -> HipError;
        hipDeviceTotalMem: fn(*mut usize, c_int) -> HipError;
        hipGetErrorName: fn(HipError) -> *const c_char;
        hipGetErrorString: fn(HipError) -> *const c_char;
        hipDeviceSynchronize: fn() -> HipError;
        hipMalloc: fn(*mut Handle, usize) -> HipError;
        hipFree: fn(Handle) -> HipError;
        hipMemcpyHtoD: fn(Handle, *mut c_void, usize) -> HipError;
        hipMemcpyDtoH: fn(*mut c_void, Handle, usize) -> HipError;
        hipMemcpyHtoDAsync: fn(Handle, *mut c_void, usize, Handle) -> HipError;
        hipMemcpyDtoHAsync: fn(*mut c_void, Handle, usize, Handle) -> HipError;
        hipMemsetD8: fn(Handle, u8, usize) -> HipError;
        hipMemsetD8Async: fn(Handle, u8, usize, Handle) -> HipError;
        hipModuleLoadData: fn(*mut Handle, *const c_void) -> HipError;
        hipModuleGetFunction: fn(*mut Handle, Handle, *const c_char) -> HipError;
        hipModuleUnload: fn(Handle) -> HipError;
        hipFuncGetAttribute: fn(*mut c_int, c_int, Handle) -> HipError;
        hipModuleLaunchKernel: fn(
            Handle, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, Handle,
            *mut *mut c_void, *mut *mut c_void
        ) -> HipError;
        hipStreamCreateWithFlags: fn(*mut Handle, c_uint) -> HipError;
        hipStreamDestroy: fn(Handle) -> HipError;
        hipStreamSynchronize: fn(Handle) -> HipError;
        hipEventCreate: fn(*mut Handle) -> HipError;
        hipEventRecord: fn(Handle, Handle) -> HipError;
        hipEventSynchronize: fn(Handle) -> HipError;
        hipEventElapsedTime: fn(*mut c_float, Handle, Handle) -> HipError;
        hipEventDestroy: fn(Handle) -> HipError;
    }
}

entry_points! {
    /// The hiprtc entry points the HIP compile path calls.
    Rtc {
        hiprtcVersion: fn(*mut c_int, *mut c_int) -> HipError;
        hiprtcGetErrorString: fn(HipError) -> *const c_char;
        hiprtcCreateProgram: fn(
            *mut Handle, *const c_char, *const c_char, c_int, *const *const c_char,
            *const *const c_char
        ) -> HipError;
        hiprtcCompileProgram: fn(Handle, c_int, *const *const c_char) -> HipError;
        hiprtcGetProgramLogSize: fn(Handle, *mut usize) -> HipError;
        hiprtcGetProgramLog: fn(Handle, *mut c_char) -> HipError;
        hiprtcGetCodeSize: fn(Handle, *mut usize) -> HipError;
        hiprtcGetCode: fn(Handle, *mut c_char) -> HipError;
        hiprtcDestroyProgram: fn(*mut Handle) -> HipError;
    }
}

/// `hipGetDeviceProperties` in the layout its library writes.
pub(crate) struct Props {
    pub get: unsafe extern "C" fn(*mut c_void, c_int) -> HipError,
    pub layout: PropsLayout,
}

/// The loaded runtime: its entry points, how to read device properties, and the file name it
/// was loaded as.
pub(crate) struct Hip {
    pub api: Runtime,
    pub props: Props,
    pub library: &'static str,
}

/// File names tried for the HIP runtime, in order (the dynamic loader searches its path for
/// bare names; ROCm installs into /opt/rocm/lib).
pub(crate) const RUNTIME_LIBRARIES: &[&str] = &[
    "libamdhip64.so",
    "libamdhip64.so.7",
    "libamdhip64.so.6",
    "libamdhip64.so.5",
    "/opt/rocm/lib/libamdhip64.so",
];

/// File names tried for hiprtc, in order: its own library (ROCm 5.3 and later), then the
/// runtime, which exported hiprtc itself up to ROCm 5.2.
pub(crate) const RTC_LIBRARIES: &[&str] = &[
    "libhiprtc.so",
    "libhiprtc.so.7",
    "libhiprtc.so.6",
    "libhiprtc.so.5",
    "/opt/rocm/lib/libhiprtc.so",
    "libamdhip64.so",
    "libamdhip64.so.5",
];

/// Open the first of `names` that loads; `NoHipRuntime`-style failure text otherwise.
fn open_first(names: &[&'static str]) -> Result<(libloading::Library, &'static str), String> {
    let mut last = String::from("no library name to try");
    for &name in names {
        // SAFETY: dlopen of a vendor library by name; runs its initialisers, as any use of
        // the library does.
        match unsafe { libloading::Library::new(name) } {
            Ok(lib) => return Ok((lib, name)),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// Load the HIP runtime from the first of `names` that opens and resolve its entry points.
pub(crate) fn load_runtime(names: &[&'static str]) -> Result<Hip, DeviceError> {
    let (lib, library) = open_first(names).map_err(|message| DeviceError::NoHipRuntime {
        library: names.join(", "),
        message,
    })?;
    let too_old = |symbol: &str| DeviceError::HipTooOld {
        library: library.to_string(),
        symbol: symbol.to_string(),
    };
    type GetProps = unsafe extern "C" fn(*mut c_void, c_int) -> HipError;
    // ROCm 6 keeps the old layout under the old name for old binaries and adds R0600.
    // SAFETY: both symbols have the signature `hipError_t (hipDeviceProp_t*, int)`.
    let props = match unsafe { lib.get::<GetProps>("hipGetDevicePropertiesR0600") } {
        Ok(get) => Props {
            get: *get,
            layout: PROPS_R0600,
        },
        // SAFETY: as above.
        Err(_) => match unsafe { lib.get::<GetProps>("hipGetDeviceProperties") } {
            Ok(get) => Props {
                get: *get,
                layout: PROPS_R0000,
            },
            Err(_) => return Err(too_old("hipGetDeviceProperties")),
        },
    };
    // SAFETY: `lib` is libamdhip64, whose C signatures `Runtime` declares.
    let api = unsafe { Runtime::resolve(lib) }.map_err(too_old)?;
    Ok(Hip {
        api,
        props,
        library,
    })
}

/// Load hiprtc from the first of `names` that opens and has every entry point.
pub(crate) fn load_rtc(names: &[&'static str]) -> Result<(Rtc, &'static str), DeviceError> {
    let mut why = Vec::new();
    for &name in names {
        // SAFETY: as in `open_first`.
        match unsafe { libloading::Library::new(name) } {
            // SAFETY: `lib` is hiprtc (or a runtime that exports it) with these signatures.
            Ok(lib) => match unsafe { Rtc::resolve(lib) } {
                Ok(rtc) => return Ok((rtc, name)),
                Err(symbol) => why.push(format!("{name} lacks `{symbol}`")),
            },
            Err(e) => why.push(e.to_string()),
        }
    }
    Err(DeviceError::NoCompiler {
        message: format!(
            "hiprtc could not be loaded (tried {}): {}; install ROCm (hiprtc) or put its lib folder on LD_LIBRARY_PATH",
            names.join(", "),
            why.last().map_or("nothing to try", String::as_str)
        ),
    })
}

/// The HIP runtime, loaded once per process.
pub(crate) fn runtime() -> Result<&'static Hip, DeviceError> {
    static HIP: OnceLock<Result<Hip, DeviceError>> = OnceLock::new();
    HIP.get_or_init(|| load_runtime(RUNTIME_LIBRARIES))
        .as_ref()
        .map_err(Clone::clone)
}

/// hiprtc, loaded once per process, and the file it came from.
pub(crate) fn rtc() -> Result<&'static (Rtc, &'static str), DeviceError> {
    static RTC: OnceLock<Result<(Rtc, &'static str), DeviceError>> = OnceLock::new();
    RTC.get_or_init(|| load_rtc(RTC_LIBRARIES))
        .as_ref()
        .map_err(Clone::clone)
}

/// Text of a C string the library returned (empty for null).
///
/// # Safety
/// `p` is null or a NUL-terminated string that lives as long as the library.
pub(crate) unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: per the contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl Hip {
    /// `hipErrorOutOfMemory: out of memory` (the code alone if HIP cannot name it).
    pub(crate) fn describe(&self, code: HipError) -> String {
        // SAFETY: both return static strings (or null) for any code.
        let (name, string) = unsafe {
            (
                text((self.api.hipGetErrorName)(code)),
                text((self.api.hipGetErrorString)(code)),
            )
        };
        describe_parts(code, &name, &string)
    }

    /// `Ok` for success; otherwise a `Hip` error naming `call`.
    pub(crate) fn check(&self, call: &'static str, code: HipError) -> Result<(), DeviceError> {
        if code == SUCCESS {
            Ok(())
        } else {
            Err(DeviceError::Hip {
                call,
                message: self.describe(code),
            })
        }
    }
}

/// `name: string`, or the one of them that says something, or the bare code.
pub(crate) fn describe_parts(code: HipError, name: &str, string: &str) -> String {
    match (name.is_empty(), string.is_empty() || string == name) {
        (false, false) => format!("{name}: {string}"),
        (false, true) => name.to_string(),
        (true, false) => format!("{string} (HIP error {code})"),
        (true, true) => format!("HIP error {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_runtime_is_a_typed_error_naming_the_library() {
        let Err(e) = load_runtime(&["libtessera-no-such-hip.so"]) else {
            panic!("a library that does not exist loaded");
        };
        assert!(
            matches!(&e, DeviceError::NoHipRuntime { library, .. } if library == "libtessera-no-such-hip.so"),
            "{e:?}"
        );
        assert!(e.is_infrastructure());
        assert!(e.to_string().contains("libtessera-no-such-hip.so"), "{e}");
        let Err(e) = load_rtc(&["libtessera-no-such-hiprtc.so"]) else {
            panic!("a library that does not exist loaded");
        };
        assert!(matches!(e, DeviceError::NoCompiler { .. }), "{e:?}");
        assert!(
            e.to_string().contains("libtessera-no-such-hiprtc.so"),
            "{e}"
        );
    }

    /// A library that loads but is not HIP is `HipTooOld` naming the first missing symbol,
    /// never a crash (libm is on every Linux machine).
    #[test]
    fn a_library_without_hip_symbols_is_too_old_not_a_crash() {
        match load_runtime(&["libm.so.6"]) {
            Err(DeviceError::HipTooOld { library, symbol }) => {
                assert_eq!(library, "libm.so.6");
                assert_eq!(symbol, "hipGetDeviceProperties");
            }
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("libm resolved as the HIP runtime"),
        }
        let Err(e) = load_rtc(&["libm.so.6"]) else {
            panic!("libm resolved as hiprtc");
        };
        assert!(
            e.to_string().contains("libm.so.6 lacks `hiprtcVersion`"),
            "{e}"
        );
    }

    /// Loading the real runtime (when this machine has one) never panics: it is a runtime or
    /// a typed infrastructure error.
    #[test]
    fn loading_the_runtime_never_panics() {
        match runtime() {
            Ok(hip) => {
                eprintln!("HIP runtime loaded from {}", hip.library);
                assert!(!hip.describe(SUCCESS).is_empty());
            }
            Err(e) => assert!(e.is_infrastructure(), "{e:?}"),
        }
        if let Err(e) = rtc() {
            assert!(matches!(e, DeviceError::NoCompiler { .. }), "{e:?}");
        }
    }

    #[test]
    fn error_descriptions_use_what_hip_says() {
        assert_eq!(
            describe_parts(2, "hipErrorOutOfMemory", "out of memory"),
            "hipErrorOutOfMemory: out of memory"
        );
        assert_eq!(
            describe_parts(100, "hipErrorNoDevice", "hipErrorNoDevice"),
            "hipErrorNoDevice"
        );
        assert_eq!(describe_parts(999, "", ""), "HIP error 999");
        assert_eq!(describe_parts(7, "", "odd"), "odd (HIP error 7)");
    }
}
