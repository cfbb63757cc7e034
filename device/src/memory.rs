//! Device memory handles.
//!
//! A [`Buffer`] is an opaque, copyable handle: an id unique in the process plus a length in
//! bytes. The device that allocated it owns the memory; the handle owns nothing. Memory is
//! released by [`Device::free`](crate::Device::free), or, for every buffer still live, when
//! the device itself is dropped. Using a handle after `free`, or on another device, is a typed
//! [`DeviceError::InvalidBuffer`](crate::DeviceError::InvalidBuffer), never undefined behaviour.
//!
//! A [`BufferView`] is a byte range of a buffer (a buffer plus an offset and a length), checked
//! against the buffer's length when it is made; launches take views where a kernel must see
//! part of a buffer (one weight of a weight blob, one tensor of an activation arena).
//!
//! This module depends on nothing but `std` and this crate's error type.

use crate::error::DeviceError;
use std::sync::atomic::{AtomicU64, Ordering};

/// A handle to device memory of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Buffer {
    id: u64,
    len: u64,
}

impl Buffer {
    /// A fresh handle with a process-unique id (ids are never reused, so a stale handle can
    /// never alias a newer allocation, on any device).
    pub(crate) fn fresh(len: u64) -> Buffer {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Buffer {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            len,
        }
    }

    /// The handle's id (for logs and error messages).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `len` bytes at `offset`; a range past the end is `InvalidView`.
    pub fn view(&self, offset: u64, len: u64) -> Result<BufferView, DeviceError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(BufferView {
                buffer: *self,
                offset,
                len,
            }),
            _ => Err(DeviceError::InvalidView {
                buffer: self.id,
                offset,
                message: format!(
                    "{len} bytes from byte {offset} run past the end of the buffer ({} bytes)",
                    self.len
                ),
            }),
        }
    }

    /// The whole buffer as a view.
    pub fn whole(&self) -> BufferView {
        BufferView {
            buffer: *self,
            offset: 0,
            len: self.len,
        }
    }
}

/// `len` bytes of a buffer from byte `offset`; always inside the buffer (see [`Buffer::view`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BufferView {
    buffer: Buffer,
    offset: u64,
    len: u64,
}

impl BufferView {
    pub fn buffer(&self) -> Buffer {
        self.buffer
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device address of the view in an allocation at `base` of `allocation_len` bytes
    /// (`InvalidView` when the view runs past the allocation).
    pub(crate) fn address_in(&self, base: u64, allocation_len: u64) -> Result<u64, DeviceError> {
        match self.offset.checked_add(self.len) {
            Some(end) if end <= allocation_len => Ok(base + self.offset),
            _ => Err(DeviceError::InvalidView {
                buffer: self.buffer.id,
                offset: self.offset,
                message: format!(
                    "{} bytes run past the allocation ({allocation_len} bytes)",
                    self.len
                ),
            }),
        }
    }

    /// `InvalidView` unless the offset is a multiple of `align` bytes.
    pub fn check_alignment(&self, align: u64, what: &str) -> Result<(), DeviceError> {
        if align > 1 && !self.offset.is_multiple_of(align) {
            return Err(DeviceError::InvalidView {
                buffer: self.buffer.id,
                offset: self.offset,
                message: format!("{what} needs {align}-byte alignment"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique() {
        let a = Buffer::fresh(4);
        let b = Buffer::fresh(4);
        assert_ne!(a.id(), b.id());
        assert_eq!(a.len(), 4);
        assert!(Buffer::fresh(0).is_empty());
    }

    #[test]
    fn views_stay_inside_their_buffer() {
        let b = Buffer::fresh(64);
        let v = b.view(16, 48).unwrap();
        assert_eq!((v.buffer(), v.offset(), v.len()), (b, 16, 48));
        assert_eq!(b.whole().len(), 64);
        assert!(b.view(64, 0).unwrap().is_empty());
        let e = b.view(17, 48).unwrap_err().to_string();
        assert!(
            e.contains("run past the end") && e.contains("64 bytes"),
            "{e}"
        );
        assert!(
            b.view(u64::MAX, 2).is_err(),
            "overflow is an error, not a wrap"
        );
        v.check_alignment(16, "x").unwrap();
        assert_eq!(v.address_in(0x1000, 64).unwrap(), 0x1010);
        let e = v.address_in(0x1000, 32).unwrap_err().to_string();
        assert!(
            e.contains("48 bytes run past the allocation (32 bytes)"),
            "{e}"
        );
        let e = b
            .view(6, 8)
            .unwrap()
            .check_alignment(4, "`a` (f32)")
            .unwrap_err();
        assert!(
            e.to_string().contains("`a` (f32) needs 4-byte alignment"),
            "{e}"
        );
    }
}
