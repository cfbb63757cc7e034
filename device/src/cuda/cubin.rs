//! Reading resource usage out of a CUBIN (an ELF64 file): the second route to register counts,
//! used when the `ptxas -v` log does not name the kernel.
//!
//! NVIDIA's ELF keeps per-function attributes in `.nv.info` (and `.nv.info.<kernel>`) sections
//! as records `u8 format, u8 attribute, u16 value-or-size [, size bytes]`. `EIATTR_REGCOUNT`
//! (0x2f) and `EIATTR_FRAME_SIZE` (0x11) are `SVAL` records of 8 bytes: `u32` symbol index,
//! `u32` value. The symbol index resolves through `.symtab` to the kernel's name.
//!
//! Every read is bounds-checked: a malformed image is an `Err`, never a panic.
//! This module is pure byte parsing; it depends on nothing but the usage type.

use crate::compile::ResourceUsage;

const EIFMT_SVAL: u8 = 0x04;
const EIATTR_FRAME_SIZE: u8 = 0x11;
const EIATTR_REGCOUNT: u8 = 0x2f;
const SHT_SYMTAB: u32 = 2;

struct Section<'a> {
    name: &'a str,
    kind: u32,
    data: &'a [u8],
    link: u32,
}

fn slice(b: &[u8], at: u64, len: u64) -> Result<&[u8], String> {
    let start = usize::try_from(at).map_err(|_| "offset overflows")?;
    let len = usize::try_from(len).map_err(|_| "length overflows")?;
    let end = start.checked_add(len).ok_or("range overflows")?;
    b.get(start..end)
        .ok_or_else(|| format!("range {start}..{end} outside the {}-byte image", b.len()))
}

fn u16_at(b: &[u8], at: u64) -> Result<u16, String> {
    let s = slice(b, at, 2)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: u64) -> Result<u32, String> {
    let s = slice(b, at, 4)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: u64) -> Result<u64, String> {
    let s = slice(b, at, 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

fn c_str(table: &[u8], at: u32) -> Result<&str, String> {
    let rest = table
        .get(at as usize..)
        .ok_or("string offset outside its table")?;
    let end = rest
        .iter()
        .position(|&c| c == 0)
        .ok_or("unterminated string")?;
    std::str::from_utf8(&rest[..end]).map_err(|_| "string is not UTF-8".to_string())
}

fn sections(img: &[u8]) -> Result<Vec<Section<'_>>, String> {
    if img.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF image".into());
    }
    if img.get(4) != Some(&2) || img.get(5) != Some(&1) {
        return Err("not a little-endian ELF64 image".into());
    }
    let shoff = u64_at(img, 0x28)?;
    let shentsize = u64::from(u16_at(img, 0x3a)?);
    let shnum = u64::from(u16_at(img, 0x3c)?);
    let shstrndx = u64::from(u16_at(img, 0x3e)?);
    if shentsize < 64 {
        return Err(format!("section header size {shentsize} < 64"));
    }
    let mut raw = Vec::new();
    for i in 0..shnum {
        let at = shentsize
            .checked_mul(i)
            .and_then(|x| x.checked_add(shoff))
            .ok_or("section header offset overflows")?;
        let h = slice(img, at, 64)?;
        let name = u32_at(h, 0)?;
        let kind = u32_at(h, 4)?;
        let offset = u64_at(h, 24)?;
        let size = u64_at(h, 32)?;
        let link = u32_at(h, 40)?;
        // NOBITS sections (8) occupy no file bytes.
        let data = if kind == 8 {
            &img[0..0]
        } else {
            slice(img, offset, size)?
        };
        raw.push((name, kind, data, link));
    }
    let names = raw
        .get(shstrndx as usize)
        .map(|s| s.2)
        .ok_or("section-name table index out of range")?;
    raw.into_iter()
        .map(|(name, kind, data, link)| {
            Ok(Section {
                name: c_str(names, name)?,
                kind,
                data,
                link,
            })
        })
        .collect()
}

/// Index of the symbol named `kernel` in `.symtab`.
fn symbol_index(secs: &[Section<'_>], kernel: &str) -> Result<Option<u32>, String> {
    let Some(symtab) = secs.iter().find(|s| s.kind == SHT_SYMTAB) else {
        return Ok(None);
    };
    let strtab = secs
        .get(symtab.link as usize)
        .ok_or("symtab links to no string table")?;
    for (i, sym) in symtab.data.chunks_exact(24).enumerate() {
        let name = u32::from_le_bytes([sym[0], sym[1], sym[2], sym[3]]);
        if c_str(strtab.data, name)? == kernel {
            return Ok(Some(
                u32::try_from(i).map_err(|_| "symbol index overflows")?,
            ));
        }
    }
    Ok(None)
}

/// Whether the image defines a symbol named `kernel`.
pub fn has_symbol(image: &[u8], kernel: &str) -> Result<bool, String> {
    let secs = sections(image)?;
    Ok(symbol_index(&secs, kernel)?.is_some())
}

/// Registers and stack frame of `kernel`, from the image's `.nv.info` records.
/// `Ok(None)` when the image has no such kernel or no such records.
pub fn usage(image: &[u8], kernel: &str) -> Result<Option<ResourceUsage>, String> {
    let secs = sections(image)?;
    let Some(sym) = symbol_index(&secs, kernel)? else {
        return Ok(None);
    };
    let own = format!(".nv.info.{kernel}");
    let mut usage = ResourceUsage::default();
    let mut found = false;
    for s in secs
        .iter()
        .filter(|s| s.name == ".nv.info" || s.name == own)
    {
        let d = s.data;
        let mut at = 0u64;
        while (at as usize) < d.len() {
            let format = *slice(d, at, 1)?.first().ok_or("empty record")?;
            let attr = *slice(d, at + 1, 1)?.first().ok_or("empty record")?;
            let word = u16_at(d, at + 2)?;
            if format == EIFMT_SVAL {
                let size = u64::from(word);
                let payload = slice(d, at + 4, size)?;
                if size == 8 && (attr == EIATTR_REGCOUNT || attr == EIATTR_FRAME_SIZE) {
                    let index = u32_at(payload, 0)?;
                    let value = u32_at(payload, 4)?;
                    if index == sym {
                        found = true;
                        if attr == EIATTR_REGCOUNT {
                            usage.registers = Some(value);
                        } else {
                            usage.stack_frame_bytes = Some(value);
                        }
                    }
                }
                at += 4 + size;
            } else {
                at += 4;
            }
        }
    }
    Ok(found.then_some(usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with `.shstrtab`, `.strtab`, `.symtab` (null symbol + `k`), `.nv.info`.
    fn tiny_cubin(regs: u32) -> Vec<u8> {
        let shstr = b"\0.shstrtab\0.strtab\0.symtab\0.nv.info\0".to_vec();
        let strtab = b"\0k\0".to_vec();
        let mut symtab = vec![0u8; 24];
        let mut k = vec![0u8; 24];
        k[0] = 1; // name offset of "k"
        symtab.extend(k);
        let mut info = Vec::new();
        // A 4-byte HVAL record first, to exercise skipping.
        info.extend([0x03, 0x1b, 0xff, 0x00]);
        info.extend([EIFMT_SVAL, EIATTR_REGCOUNT, 8, 0]);
        info.extend(1u32.to_le_bytes());
        info.extend(regs.to_le_bytes());
        info.extend([EIFMT_SVAL, EIATTR_FRAME_SIZE, 8, 0]);
        info.extend(1u32.to_le_bytes());
        info.extend(16u32.to_le_bytes());

        let bodies = [shstr, strtab, symtab, info];
        let mut img = vec![0u8; 64];
        img[..4].copy_from_slice(b"\x7fELF");
        img[4] = 2;
        img[5] = 1;
        let mut offsets = Vec::new();
        for b in &bodies {
            offsets.push(img.len() as u64);
            img.extend(b);
        }
        let shoff = img.len() as u64;
        img[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        img[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        img[0x3c..0x3e].copy_from_slice(&5u16.to_le_bytes());
        img[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        // (name offset, type, body index, link)
        let headers = [
            (0u32, 0u32, None, 0u32),
            (1, 3, Some(0), 0),
            (11, 3, Some(1), 0),
            (19, 2, Some(2), 2),
            (27, 0x7000_0000, Some(3), 3),
        ];
        for (name, kind, body, link) in headers {
            let mut h = vec![0u8; 64];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            if let Some(i) = body {
                h[24..32].copy_from_slice(&offsets[i].to_le_bytes());
                h[32..40].copy_from_slice(&(bodies[i].len() as u64).to_le_bytes());
            }
            h[40..44].copy_from_slice(&link.to_le_bytes());
            img.extend(h);
        }
        img
    }

    #[test]
    fn reads_regcount_and_frame_size() {
        let img = tiny_cubin(42);
        let u = usage(&img, "k").unwrap().unwrap();
        assert_eq!(u.registers, Some(42));
        assert_eq!(u.stack_frame_bytes, Some(16));
        assert_eq!(usage(&img, "other").unwrap(), None);
        assert!(has_symbol(&img, "k").unwrap());
        assert!(!has_symbol(&img, "other").unwrap());
    }

    #[test]
    fn malformed_images_are_errors_not_panics() {
        assert!(usage(b"not an elf", "k").is_err());
        let img = tiny_cubin(1);
        for cut in [8, 70, 100, img.len() - 10] {
            let _ = usage(&img[..cut], "k");
        }
        let mut bad = img.clone();
        bad[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(usage(&bad, "k").is_err());
    }
}
