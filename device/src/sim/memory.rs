//! Simulated device memory: host byte vectors behind [`Buffer`] handles, with a capacity so
//! allocation failures behave like a real device's (a typed `OutOfMemory`, never an abort).
//!
//! This module depends on nothing but `std` and this crate's handle and error types.

use crate::error::DeviceError;
use crate::memory::Buffer;
use std::collections::HashMap;

/// The simulated device's memory. Emulations receive it to read inputs and write outputs.
#[derive(Debug, Default)]
pub struct SimMemory {
    buffers: HashMap<u64, Vec<u8>>,
    used: u64,
    capacity: u64,
}

impl SimMemory {
    pub(crate) fn new(capacity: u64) -> SimMemory {
        SimMemory {
            buffers: HashMap::new(),
            used: 0,
            capacity,
        }
    }

    pub(crate) fn alloc(&mut self, bytes: u64) -> Result<Buffer, DeviceError> {
        let oom = DeviceError::OutOfMemory { bytes };
        if bytes > self.capacity.saturating_sub(self.used) {
            return Err(oom);
        }
        let len = usize::try_from(bytes).map_err(|_| oom.clone())?;
        let mut v = Vec::new();
        v.try_reserve_exact(len).map_err(|_| oom)?;
        v.resize(len, 0);
        let buf = Buffer::fresh(bytes);
        self.buffers.insert(buf.id(), v);
        self.used += bytes;
        Ok(buf)
    }

    pub(crate) fn free(&mut self, buffer: &Buffer) -> Result<(), DeviceError> {
        let v = self
            .buffers
            .remove(&buffer.id())
            .ok_or(DeviceError::InvalidBuffer { id: buffer.id() })?;
        self.used -= v.len() as u64;
        Ok(())
    }

    /// Bytes currently allocated.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Whether a handle is live here.
    pub fn contains(&self, buffer: &Buffer) -> bool {
        self.buffers.contains_key(&buffer.id())
    }

    /// The bytes of a buffer.
    pub fn bytes(&self, buffer: &Buffer) -> Result<&[u8], DeviceError> {
        self.buffers
            .get(&buffer.id())
            .map(Vec::as_slice)
            .ok_or(DeviceError::InvalidBuffer { id: buffer.id() })
    }

    /// The bytes of a buffer, writable.
    pub fn bytes_mut(&mut self, buffer: &Buffer) -> Result<&mut [u8], DeviceError> {
        self.buffers
            .get_mut(&buffer.id())
            .map(Vec::as_mut_slice)
            .ok_or(DeviceError::InvalidBuffer { id: buffer.id() })
    }

    /// Run `f` with one buffer writable and every other buffer readable through `&SimMemory`
    /// (no copies: an emulation reads its inputs and writes its output in one pass). While `f`
    /// runs, `output` itself is not readable through the memory (in-place kernels read it from
    /// the slice).
    pub fn with_output<R>(
        &mut self,
        output: &Buffer,
        f: impl FnOnce(&SimMemory, &mut [u8]) -> R,
    ) -> Result<R, DeviceError> {
        let mut out = self
            .buffers
            .remove(&output.id())
            .ok_or(DeviceError::InvalidBuffer { id: output.id() })?;
        let r = f(self, &mut out);
        self.buffers.insert(output.id(), out);
        Ok(r)
    }

    /// A buffer read as little-endian f32 values (trailing bytes ignored).
    pub fn read_f32(&self, buffer: &Buffer) -> Result<Vec<f32>, DeviceError> {
        Ok(self
            .bytes(buffer)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Write little-endian f32 values at the start of a buffer.
    pub fn write_f32(&mut self, buffer: &Buffer, values: &[f32]) -> Result<(), DeviceError> {
        let dst = self.bytes_mut(buffer)?;
        let need = values.len() * 4;
        if need > dst.len() {
            return Err(DeviceError::SizeMismatch {
                buffer_bytes: dst.len() as u64,
                host_bytes: need as u64,
            });
        }
        for (d, v) in dst.chunks_exact_mut(4).zip(values) {
            d.copy_from_slice(&v.to_le_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_enforced_and_freed_bytes_come_back() {
        let mut m = SimMemory::new(100);
        let a = m.alloc(60).unwrap();
        assert_eq!(m.alloc(41), Err(DeviceError::OutOfMemory { bytes: 41 }));
        m.free(&a).unwrap();
        assert_eq!(m.used(), 0);
        assert_eq!(m.free(&a), Err(DeviceError::InvalidBuffer { id: a.id() }));
        let b = m.alloc(100).unwrap();
        assert!(m.contains(&b) && !m.contains(&a));
    }

    #[test]
    fn with_output_reads_inputs_and_writes_output() {
        let mut m = SimMemory::new(1 << 10);
        let (a, b, d) = (
            m.alloc(4).unwrap(),
            m.alloc(4).unwrap(),
            m.alloc(4).unwrap(),
        );
        m.bytes_mut(&a).unwrap().copy_from_slice(&[1, 2, 3, 4]);
        m.bytes_mut(&b).unwrap().copy_from_slice(&[10, 20, 30, 40]);
        let seen_self = m
            .with_output(&d, |mem, out| {
                let (x, y) = (mem.bytes(&a).unwrap(), mem.bytes(&b).unwrap());
                for i in 0..4 {
                    out[i] = x[i] + y[i];
                }
                mem.bytes(&d).is_ok()
            })
            .unwrap();
        assert!(!seen_self);
        assert_eq!(m.bytes(&d).unwrap(), &[11, 22, 33, 44]);
        assert_eq!(m.used(), 12);
        m.free(&d).unwrap();
        assert!(m.with_output(&d, |_, _| ()).is_err());
    }

    #[test]
    fn f32_helpers_round_trip() {
        let mut m = SimMemory::new(1 << 10);
        let b = m.alloc(12).unwrap();
        m.write_f32(&b, &[1.0, -2.5, 3.25]).unwrap();
        assert_eq!(m.read_f32(&b).unwrap(), vec![1.0, -2.5, 3.25]);
        assert!(m.write_f32(&b, &[0.0; 4]).is_err());
    }
}
