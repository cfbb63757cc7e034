//! Encoding TMA tensor maps with the driver (`cuTensorMapEncodeTiled`) from a geometry that
//! [`tessera_dsl::TensorMapArg::resolve`] has already checked against the driver's rules.

use crate::launch::ResolvedTensorMap;
use cudarc::driver::sys;
use std::ffi::c_void;
use tessera_dsl::{DType, Swizzle};

/// Encode `m` over the device address `ptr`; an error is the driver's refusal, in words.
pub(crate) fn encode(ptr: u64, m: &ResolvedTensorMap) -> Result<sys::CUtensorMap, String> {
    if !ptr.is_multiple_of(16) {
        return Err(format!(
            "tensor map `{}`: `{}` at {ptr:#x} is not 16-byte aligned",
            m.map.name, m.map.tensor
        ));
    }
    let dtype = match m.map.dtype {
        DType::F16 => sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
        DType::BF16 => sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
        DType::F32 => sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT32,
    };
    let swizzle = match m.map.swizzle {
        Swizzle::B32 => sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_32B,
        Swizzle::B64 => sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_64B,
        Swizzle::B128 => sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
    };
    let g = &m.geometry;
    let element_strides = [1u32; 3];
    let mut out = sys::CUtensorMap { opaque: [0; 16] };
    // SAFETY: every array has the rank's length (3; strides 2), `out` is a writable,
    // 128-byte-aligned CUtensorMap, and the driver only reads `ptr` as a number here.
    let r = unsafe {
        sys::cuTensorMapEncodeTiled(
            &mut out,
            dtype,
            3,
            ptr as *mut c_void,
            g.dims.as_ptr(),
            g.strides.as_ptr(),
            g.boxes.as_ptr(),
            element_strides.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            swizzle,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
    };
    if r != sys::CUresult::CUDA_SUCCESS {
        return Err(format!(
            "tensor map `{}` over `{}`: cuTensorMapEncodeTiled refused dims {:?}, strides {:?}, box {:?}: {r:?}",
            m.map.name, m.map.tensor, g.dims, g.strides, g.boxes
        ));
    }
    Ok(out)
}
