//! The on-disk cache of compiled modules, so a second run compiles nothing.
//!
//! A [`ModuleKey`] is the sha256 of everything that decides the compiler's output: source,
//! kernel name, the full option list, the compiler's version and the architecture. A cached
//! file holds the [`CompileReport`] (image plus resource usage and log) followed by a sha256
//! of its own bytes; a file that is truncated, fails its checksum or belongs to another key is
//! reported as corrupt and the caller recompiles and overwrites it: the cache is never trusted
//! blindly. Files are written to a temporary name and renamed, so readers never see half a file.
//!
//! This module depends on `sha2`, `serde_json` and the compile vocabulary; it knows no compiler.

use crate::compile::{CacheOutcome, CompileReport, ImageFormat, ResourceUsage};
use crate::error::DeviceError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tessera_dsl::Target;

/// Bumped whenever the file layout or the key recipe changes.
const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"TSRMOD01";

/// The cache key of one compile.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModuleKey(String);

impl ModuleKey {
    /// Hash every input that decides the compiled image. Fields are length-prefixed, so no two
    /// different inputs can concatenate to the same bytes.
    pub fn new(
        source: &str,
        kernel_name: &str,
        options: &[String],
        toolchain: &str,
        arch: &str,
    ) -> ModuleKey {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(b"tessera-module");
        field(&FORMAT_VERSION.to_le_bytes());
        field(source.as_bytes());
        field(kernel_name.as_bytes());
        field(&(options.len() as u64).to_le_bytes());
        for o in options {
            field(o.as_bytes());
        }
        field(toolchain.as_bytes());
        field(arch.as_bytes());
        ModuleKey(hex(&h.finalize()))
    }

    /// 64 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Everything of a [`CompileReport`] but the image, as stored in the file header.
#[derive(Serialize, Deserialize)]
struct Meta {
    key: String,
    kernel: String,
    target: Target,
    arch: String,
    format: ImageFormat,
    usage: ResourceUsage,
    log: String,
    seconds: f64,
    toolchain: String,
    options: Vec<String>,
}

/// The result of looking a key up.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Hit(CompileReport),
    Miss,
    /// A file exists but can't be trusted; recompile and store over it.
    Corrupt(String),
}

/// A folder of cached modules.
#[derive(Debug, Clone)]
pub struct ModuleCache {
    dir: PathBuf,
}

impl ModuleCache {
    pub fn new(dir: impl Into<PathBuf>) -> ModuleCache {
        ModuleCache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of a key.
    pub fn path(&self, key: &ModuleKey) -> PathBuf {
        self.dir.join(format!("{}.tsrmod", key.as_str()))
    }

    pub fn load(&self, key: &ModuleKey) -> Lookup {
        let path = self.path(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Corrupt(format!("{}: {e}", path.display())),
        };
        match decode(&bytes, key) {
            Ok(report) => Lookup::Hit(report),
            Err(why) => Lookup::Corrupt(format!("{}: {why}", path.display())),
        }
    }

    /// Store a report under a key (atomically: temporary file, then rename).
    pub fn store(&self, key: &ModuleKey, report: &CompileReport) -> Result<(), String> {
        static TMP: AtomicU64 = AtomicU64::new(0);
        fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let bytes = encode(key, report)?;
        let tmp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            key.as_str(),
            std::process::id(),
            TMP.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, self.path(key))
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            format!("{}: {e}", self.path(key).display())
        })
    }
}

/// Compile through the cache, for any compiler: a hit under `key` (for the same kernel and
/// target) is returned as is; otherwise `compile` runs and its report is stored, and the
/// outcome says how the cache took part. `key` is only computed when a cache is configured.
pub(crate) fn compile_cached_with(
    cache: Option<&ModuleCache>,
    kernel: &str,
    target: Target,
    key: impl FnOnce() -> Result<ModuleKey, DeviceError>,
    compile: impl FnOnce() -> Result<CompileReport, DeviceError>,
) -> Result<(CompileReport, CacheOutcome), DeviceError> {
    let Some(cache) = cache else {
        return Ok((compile()?, CacheOutcome::Disabled));
    };
    let key = key()?;
    let corrupt = match cache.load(&key) {
        Lookup::Hit(report) if report.kernel == kernel && report.target == target => {
            return Ok((report, CacheOutcome::Hit))
        }
        Lookup::Hit(report) => Some(format!(
            "entry holds kernel `{}` for {}",
            report.kernel, report.target
        )),
        Lookup::Miss => None,
        Lookup::Corrupt(why) => Some(why),
    };
    let report = compile()?;
    let outcome = match (cache.store(&key, &report), corrupt) {
        (Err(reason), _) => CacheOutcome::StoreFailed { reason },
        (Ok(()), Some(reason)) => CacheOutcome::Corrupt { reason },
        (Ok(()), None) => CacheOutcome::Miss,
    };
    Ok((report, outcome))
}

fn encode(key: &ModuleKey, r: &CompileReport) -> Result<Vec<u8>, String> {
    let meta = Meta {
        key: key.as_str().to_string(),
        kernel: r.kernel.clone(),
        target: r.target,
        arch: r.arch.clone(),
        format: r.format,
        usage: r.usage,
        log: r.log.clone(),
        seconds: r.seconds,
        toolchain: r.toolchain.clone(),
        options: r.options.clone(),
    };
    let json = serde_json::to_vec(&meta).map_err(|e| format!("encoding module metadata: {e}"))?;
    let json_len =
        u32::try_from(json.len()).map_err(|_| "module metadata over 4 GiB".to_string())?;
    let mut out = Vec::with_capacity(8 + 4 + json.len() + 8 + r.image.len() + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&json_len.to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&(r.image.len() as u64).to_le_bytes());
    out.extend_from_slice(&r.image);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

fn decode(bytes: &[u8], key: &ModuleKey) -> Result<CompileReport, String> {
    if bytes.len() < MAGIC.len() + 4 + 8 + 32 {
        return Err(format!("truncated ({} bytes)", bytes.len()));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != sum {
        return Err("checksum mismatch".into());
    }
    if &body[..8] != MAGIC {
        return Err("not a Tessera module file (bad magic)".into());
    }
    let mut at: usize = 8;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let end = at
            .checked_add(n)
            .filter(|&e| e <= body.len())
            .ok_or("truncated record")?;
        let s = &body[at..end];
        at = end;
        Ok(s)
    };
    let json_len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "bad length")?) as usize;
    let meta: Meta =
        serde_json::from_slice(take(json_len)?).map_err(|e| format!("bad metadata: {e}"))?;
    let image_len = u64::from_le_bytes(take(8)?.try_into().map_err(|_| "bad length")?);
    let image_len = usize::try_from(image_len).map_err(|_| "image length overflows")?;
    let image = take(image_len)?.to_vec();
    if at != body.len() {
        return Err("trailing bytes".into());
    }
    if meta.key != key.as_str() {
        return Err(format!(
            "stored under key {}, wanted {}",
            meta.key,
            key.as_str()
        ));
    }
    if image.is_empty() {
        return Err("empty image".into());
    }
    Ok(CompileReport {
        kernel: meta.kernel,
        target: meta.target,
        arch: meta.arch,
        image,
        format: meta.format,
        usage: meta.usage,
        log: meta.log,
        seconds: meta.seconds,
        toolchain: meta.toolchain,
        options: meta.options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let d = std::env::temp_dir().join(format!(
            "tessera-device-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn report() -> CompileReport {
        CompileReport {
            kernel: "axpy".into(),
            target: Target::Sm90a,
            arch: "sm_90a".into(),
            image: vec![0x7f, b'E', b'L', b'F', 1, 2, 3],
            format: ImageFormat::Cubin,
            usage: ResourceUsage {
                registers: Some(10),
                spill_store_bytes: Some(0),
                spill_load_bytes: Some(0),
                static_smem_bytes: Some(1024),
                stack_frame_bytes: Some(0),
            },
            log: "ptxas info    : Used 10 registers".into(),
            seconds: 0.25,
            toolchain: "nvrtc 13.0".into(),
            options: vec!["--gpu-architecture=sm_90a".into()],
        }
    }

    fn opts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn key_is_stable() {
        let k = ModuleKey::new("src", "k", &opts(&["-std=c++17"]), "nvrtc 13.0", "sm_90a");
        // Pinned: a change here silently invalidates every user's cache; bump FORMAT_VERSION
        // deliberately instead.
        assert_eq!(
            k.as_str(),
            "3fad8afe6c8150c55ac4a8b4b6caf193154a21c5e3c2dcf568d5278657bfc72a",
        );
    }

    #[test]
    fn key_changes_with_every_input() {
        let base = ModuleKey::new("src", "k", &opts(&["-a", "-b"]), "nvrtc 13.0", "sm_90a");
        assert_eq!(
            base,
            ModuleKey::new("src", "k", &opts(&["-a", "-b"]), "nvrtc 13.0", "sm_90a")
        );
        assert_eq!(base.as_str().len(), 64);
        for other in [
            ModuleKey::new("src ", "k", &opts(&["-a", "-b"]), "nvrtc 13.0", "sm_90a"),
            ModuleKey::new("src", "k2", &opts(&["-a", "-b"]), "nvrtc 13.0", "sm_90a"),
            ModuleKey::new("src", "k", &opts(&["-a-b"]), "nvrtc 13.0", "sm_90a"),
            ModuleKey::new("src", "k", &opts(&["-b", "-a"]), "nvrtc 13.0", "sm_90a"),
            ModuleKey::new("src", "k", &opts(&["-a", "-b"]), "nvrtc 13.1", "sm_90a"),
            ModuleKey::new("src", "k", &opts(&["-a", "-b"]), "nvrtc 13.0", "sm_80"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn round_trip_then_corruption_is_detected() {
        let cache = ModuleCache::new(temp_dir("cache"));
        let key = ModuleKey::new("src", "axpy", &[], "nvrtc 13.0", "sm_90a");
        assert_eq!(cache.load(&key), Lookup::Miss);
        cache.store(&key, &report()).unwrap();
        assert_eq!(cache.load(&key), Lookup::Hit(report()));

        // Flip one byte of the image: checksum mismatch.
        let path = cache.path(&key);
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 40] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        match cache.load(&key) {
            Lookup::Corrupt(why) => assert!(why.contains("checksum"), "{why}"),
            other => panic!("expected corrupt, got {other:?}"),
        }
        // Truncated file.
        fs::write(&path, &bytes[..10]).unwrap();
        assert!(matches!(cache.load(&key), Lookup::Corrupt(_)));
        // A valid file stored under another key's name is not trusted either.
        let other = ModuleKey::new("other", "axpy", &[], "nvrtc 13.0", "sm_90a");
        cache.store(&other, &report()).unwrap();
        fs::copy(cache.path(&other), &path).unwrap();
        match cache.load(&key) {
            Lookup::Corrupt(why) => assert!(why.contains("stored under key"), "{why}"),
            other => panic!("expected corrupt, got {other:?}"),
        }
        // Storing again repairs it.
        cache.store(&key, &report()).unwrap();
        assert_eq!(cache.load(&key), Lookup::Hit(report()));
        let _ = fs::remove_dir_all(cache.dir());
    }
}
