//! Device memory handles.
//!
//! A [`Buffer`] is an opaque, copyable handle: an id unique in the process plus a length in
//! bytes. The device that allocated it owns the memory; the handle owns nothing. Memory is
//! released by [`Device::free`](crate::Device::free), or, for every buffer still live, when
//! the device itself is dropped. Using a handle after `free`, or on another device, is a typed
//! [`DeviceError::InvalidBuffer`](crate::DeviceError::InvalidBuffer), never undefined behaviour.
//!
//! This module depends on nothing but `std`.

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
}
