//! The wgmma shared-memory matrix descriptor (PTX ISA "matrix descriptor format"): a 64-bit
//! value telling the tensor cores where an operand tile starts and how its 8-line core
//! matrices are strided and swizzled.
//!
//! Bits 0–13: start address >> 4; 16–29: leading-dimension byte offset >> 4; 32–45: stride
//! byte offset >> 4; 49–51: base offset (0: tiles start on a swizzle-atom boundary);
//! 62–63: swizzle mode (1 = 128B, 2 = 64B, 3 = 32B). The generated kernel ORs the start
//! address into [`SmemDescriptor::high_bits`], so the constant it uses comes from here.

use tessera_dsl::Swizzle;

/// A descriptor of a K-major, swizzled operand tile: lines of `swizzle.span()` bytes, the
/// 8-line core matrices `8 × span` bytes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmemDescriptor {
    /// Shared-memory byte address of the first element (16-byte aligned).
    pub start: u32,
    pub swizzle: Swizzle,
}

/// The 14-bit, 16-byte-unit encoding every address and offset field uses.
fn field(bytes: u32) -> u64 {
    u64::from((bytes & 0x3FFFF) >> 4)
}

fn mode(s: Swizzle) -> u64 {
    match s {
        Swizzle::B128 => 1,
        Swizzle::B64 => 2,
        Swizzle::B32 => 3,
    }
}

impl SmemDescriptor {
    /// Leading byte offset: unused for K-major swizzled tiles whose k-step (32 bytes) stays
    /// inside one swizzled line; 16 by convention.
    pub const LEADING_BYTES: u32 = 16;

    /// Stride byte offset: one 8-line core matrix.
    pub fn stride_bytes(self) -> u32 {
        self.swizzle.atom_bytes()
    }

    /// Everything but the start address.
    pub fn high_bits(swizzle: Swizzle) -> u64 {
        SmemDescriptor { start: 0, swizzle }.encode()
    }

    /// Everything but the start address of an N-major (transposed) B operand: lines of
    /// `swizzle.span()` bytes hold consecutive N (for attention's V: head-dim elements of one
    /// key), K advances by lines. The leading byte offset is the stride between N panels
    /// (`panel_bytes`, used when N spans more than one swizzle span), the stride byte offset
    /// one 8-line core matrix along K.
    pub fn n_major_high_bits(swizzle: Swizzle, panel_bytes: u32) -> u64 {
        field(panel_bytes) << 16 | field(swizzle.atom_bytes()) << 32 | mode(swizzle) << 62
    }

    pub fn encode(self) -> u64 {
        field(self.start)
            | field(Self::LEADING_BYTES) << 16
            | field(self.stride_bytes()) << 32
            | mode(self.swizzle) << 62
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_bits() {
        let d = SmemDescriptor {
            start: 0x400,
            swizzle: Swizzle::B128,
        };
        let v = d.encode();
        assert_eq!(v & 0x3FFF, 0x40, "start field");
        assert_eq!((v >> 16) & 0x3FFF, 1, "LBO 16 bytes");
        assert_eq!((v >> 32) & 0x3FFF, 64, "SBO 1024 bytes");
        assert_eq!(v >> 62, 1, "128B swizzle");
        assert_eq!((v >> 49) & 7, 0, "base offset");
        assert_eq!(
            SmemDescriptor::high_bits(Swizzle::B128),
            0x4000_0040_0001_0000
        );
        let d64 = SmemDescriptor {
            start: 0,
            swizzle: Swizzle::B64,
        }
        .encode();
        assert_eq!((d64 >> 32) & 0x3FFF, 32, "SBO 512 bytes");
        assert_eq!(d64 >> 62, 2);
    }

    #[test]
    fn n_major_bits() {
        // V stage of 128 keys × 128 head-dim: two 64-wide panels of 128 lines × 128 bytes
        let v = SmemDescriptor::n_major_high_bits(Swizzle::B128, 128 * 128);
        assert_eq!((v >> 16) & 0x3FFF, 1024, "LBO: one panel, 16 KiB");
        assert_eq!((v >> 32) & 0x3FFF, 64, "SBO: 8 lines of 128 bytes");
        assert_eq!(v >> 62, 1);
        assert_eq!(v & 0x3FFF, 0, "no start address");
        let v = SmemDescriptor::n_major_high_bits(Swizzle::B64, 64 * 64);
        assert_eq!((v >> 32) & 0x3FFF, 32, "SBO: 8 lines of 64 bytes");
        assert_eq!(v >> 62, 2);
    }

    proptest! {
        /// A k16 step (+32 bytes) moves only the start field, by 2; the other fields stay.
        #[test]
        fn start_address_is_the_only_moving_field(start in (0u32..(227 * 1024 / 16)).prop_map(|x| x * 16)) {
            for s in [Swizzle::B32, Swizzle::B64, Swizzle::B128] {
                let d = SmemDescriptor { start, swizzle: s }.encode();
                prop_assert_eq!(d & !0x3FFF, SmemDescriptor::high_bits(s));
                prop_assert_eq!(d & 0x3FFF, u64::from(start >> 4));
                let next = SmemDescriptor { start: start + 32, swizzle: s }.encode();
                if start + 32 < (1 << 18) {
                    prop_assert_eq!(next - d, 2);
                }
            }
        }

        /// The sm_90a GEMM's mainloop builds a stage's descriptor low word once,
        /// `(u32)high_bits | (base >> 4)`, and each wgmma adds its k16 step's and m atom's
        /// offset `>> 4` to it under the constant high word: that is the full encoding of
        /// `base + offset` for every 16-byte aligned address inside the shared memory a block
        /// may have (227 KiB, below 2^18: the 14-bit field never carries).
        #[test]
        fn offset_low_words_encode_the_offset_address(
            base in (0u32..(227 * 1024 / 16)).prop_map(|x| x * 16),
            offset in (0u32..(227 * 1024 / 16)).prop_map(|x| x * 16),
        ) {
            prop_assume!(base + offset < 227 * 1024);
            for s in [Swizzle::B32, Swizzle::B64, Swizzle::B128] {
                let hi = SmemDescriptor::high_bits(s);
                let low = (hi as u32) | ((base & 0x3FFFF) >> 4);
                let emitted = (hi & 0xFFFF_FFFF_0000_0000) | u64::from(low + offset / 16);
                let whole = SmemDescriptor { start: base + offset, swizzle: s }.encode();
                prop_assert_eq!(emitted, whole);
            }
        }
    }
}
