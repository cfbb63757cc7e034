//! Who is measuring what: problem claims in the cache, and per-GPU locks beside it.
//!
//! Several tuners (processes, possibly on several hosts) may share one cache. Two rules keep
//! them from wasting or spoiling each other's measurements:
//!
//! 1. **A problem is measured by one tuner at a time.** Before measuring a problem a tuner
//!    claims its key (device id + template version + problem key) with [`Cache::claim`]: in one
//!    `BEGIN IMMEDIATE` transaction it reads the `claims` row and inserts or takes it over.
//!    A claim is *live* unless it is **stale**: older than the caller's time-to-live (the owner
//!    refreshes `claimed_at` with [`Cache::refresh_claim`] while it works), or owned by a
//!    process of this host that no longer exists (`/proc/PID` is gone: a killed tuner). A
//!    stale claim is taken over and reported ([`ClaimOutcome::Claimed::took_over`]). The owner
//!    deletes its claim with [`Cache::release_claim`] after storing the winner; a tuner that
//!    then claims the problem finds the winner and measures nothing.
//! 2. **A GPU times one problem at a time.** [`GpuLock`] is an advisory `flock` on a file under
//!    the cache's directory (`<cache>.locks/<host>-<gpu>.lock`), held while a problem is
//!    claimed and measured. The kernel drops it when its process dies, so a killed tuner never
//!    leaves a GPU locked; every tuner that uses this cache (the usual case on one host) sees
//!    the same file.
//!
//! A GPU lock is always taken before a claim and a claim is never waited for (a held claim is
//! skipped and retried later), so the two can't deadlock.
//!
//! Depends on [`crate::store`], [`crate::error`] and rusqlite.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, OptionalExtension};

use crate::error::CacheError;
use crate::store::Cache;
use crate::timestamp::Timestamp;

/// Who holds a claim: a process on a host, measuring on one GPU (e.g. `cuda:1`, `sim:h100:0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimOwner {
    pub host: String,
    pub pid: u32,
    pub gpu: String,
}

impl ClaimOwner {
    /// This process on `host`, measuring on `gpu`.
    pub fn this_process(host: impl Into<String>, gpu: impl Into<String>) -> ClaimOwner {
        ClaimOwner {
            host: host.into(),
            pid: std::process::id(),
            gpu: gpu.into(),
        }
    }
}

impl std::fmt::Display for ClaimOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {} ({})", self.pid, self.host, self.gpu)
    }
}

/// One row of the `claims` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub key: String,
    pub owner: ClaimOwner,
    /// Unix seconds of the claim or its last refresh.
    pub claimed_at: i64,
}

/// What [`Cache::claim`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The caller owns the key now; `took_over` is the stale claim it replaced, if any.
    Claimed { took_over: Option<Claim> },
    /// Another live owner holds it.
    Held(Claim),
}

/// The claim key of one tuning job: device id, template name and source hash, problem key.
pub fn claim_key(device_id: &str, template: &str, source_hash: &str, problem_key: &str) -> String {
    format!("{device_id}|{template}@{source_hash}|{problem_key}")
}

/// Whether process `pid` of this host still exists. Where that can't be known (no `/proc`),
/// every process counts as alive and only the time-to-live frees its claims.
pub fn pid_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}

fn is_stale(claim: &Claim, me: &ClaimOwner, now: i64, ttl: Duration) -> bool {
    let age = now.saturating_sub(claim.claimed_at);
    age > i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)
        || (claim.owner.host == me.host && !pid_alive(claim.owner.pid))
}

fn decode(r: &rusqlite::Row) -> rusqlite::Result<Claim> {
    Ok(Claim {
        key: r.get(0)?,
        owner: ClaimOwner {
            host: r.get(1)?,
            pid: r.get::<_, i64>(2)?.try_into().unwrap_or(u32::MAX),
            gpu: r.get(3)?,
        },
        claimed_at: r.get(4)?,
    })
}

impl Cache {
    /// Claims `key` for `me` unless another live owner holds it (see the module docs); a claim
    /// older than `ttl`, or of a dead process of this host, is taken over. Re-claiming one's
    /// own key refreshes it.
    pub fn claim(
        &self,
        key: &str,
        me: &ClaimOwner,
        ttl: Duration,
    ) -> Result<ClaimOutcome, CacheError> {
        self.write(|tx| {
            let sql = self.sql("claiming a problem");
            let now = Timestamp::now().unix_seconds();
            let old = tx
                .query_row(
                    "SELECT key, host, pid, gpu, claimed_at FROM claims WHERE key = ?1",
                    [key],
                    decode,
                )
                .optional()
                .map_err(&sql)?;
            let took_over = match old {
                Some(c) if c.owner == *me => None,
                Some(c) if !is_stale(&c, me, now, ttl) => return Ok(ClaimOutcome::Held(c)),
                other => other,
            };
            tx.execute(
                "INSERT OR REPLACE INTO claims (key, host, pid, gpu, claimed_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![key, me.host, i64::from(me.pid), me.gpu, now],
            )
            .map_err(&sql)?;
            Ok(ClaimOutcome::Claimed { took_over })
        })
    }

    /// Moves `claimed_at` of `me`'s claim on `key` to now (so a long problem's claim does not
    /// go stale). Returns false when `me` no longer holds it.
    pub fn refresh_claim(&self, key: &str, me: &ClaimOwner) -> Result<bool, CacheError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE claims SET claimed_at = ?5 \
                     WHERE key = ?1 AND host = ?2 AND pid = ?3 AND gpu = ?4",
                    params![
                        key,
                        me.host,
                        i64::from(me.pid),
                        me.gpu,
                        Timestamp::now().unix_seconds()
                    ],
                )
                .map_err(self.sql("refreshing a claim"))?;
            Ok(n > 0)
        })
    }

    /// Drops `me`'s claim on `key` (someone else's is left alone).
    pub fn release_claim(&self, key: &str, me: &ClaimOwner) -> Result<(), CacheError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM claims WHERE key = ?1 AND host = ?2 AND pid = ?3 AND gpu = ?4",
                params![key, me.host, i64::from(me.pid), me.gpu],
            )
            .map_err(self.sql("releasing a claim"))?;
            Ok(())
        })
    }

    /// Every claim, by key.
    pub fn claims(&self) -> Result<Vec<Claim>, CacheError> {
        self.read(|c| {
            let err = self.sql("reading claims");
            let mut stmt = c
                .prepare("SELECT key, host, pid, gpu, claimed_at FROM claims ORDER BY key")
                .map_err(&err)?;
            let rows = stmt.query_map([], decode).map_err(&err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(&err)
        })
    }
}

/// An exclusive advisory lock on one GPU of one host, held until dropped (or the process dies).
#[derive(Debug)]
pub struct GpuLock {
    _file: File,
    path: PathBuf,
}

impl GpuLock {
    /// The lock file of `gpu` on `host` for the cache at `cache`: `<cache>.locks/<host>-<gpu>.lock`
    /// (characters other than letters, digits, `.`, `_` and `-` become `_`).
    pub fn path_for(cache: &Path, host: &str, gpu: &str) -> PathBuf {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        let mut dir = cache.as_os_str().to_owned();
        dir.push(".locks");
        PathBuf::from(dir).join(format!("{}-{}.lock", clean(host), clean(gpu)))
    }

    /// Waits until this process holds `gpu`'s lock (polling every 20 ms, so it can also give up
    /// after `wait`: `Ok(None)`).
    pub fn acquire(
        cache: &Path,
        host: &str,
        gpu: &str,
        wait: Duration,
    ) -> Result<Option<GpuLock>, CacheError> {
        let path = GpuLock::path_for(cache, host, gpu);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| CacheError::io("creating", dir, e))?;
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| CacheError::io("opening", &path, e))?;
        let start = std::time::Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(GpuLock { _file: file, path })),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if start.elapsed() >= wait {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(CacheError::io("locking", &path, e))
                }
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(host: &str, pid: u32, gpu: &str) -> ClaimOwner {
        ClaimOwner {
            host: host.into(),
            pid,
            gpu: gpu.into(),
        }
    }

    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    const TTL: Duration = Duration::from_secs(600);

    #[test]
    fn a_live_claim_blocks_others_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path().join("c.db")).unwrap();
        let me = ClaimOwner::this_process("h", "sim:h100:0");
        let other_gpu = ClaimOwner::this_process("h", "sim:h100:1");
        assert_eq!(
            c.claim("k", &me, TTL).unwrap(),
            ClaimOutcome::Claimed { took_over: None }
        );
        // same process, other GPU thread: held
        assert!(
            matches!(c.claim("k", &other_gpu, TTL).unwrap(), ClaimOutcome::Held(h) if h.owner == me)
        );
        // another host's fresh claim is live even though its pid means nothing here
        assert!(matches!(
            c.claim("k", &owner("elsewhere", dead_pid(), "cuda:0"), TTL)
                .unwrap(),
            ClaimOutcome::Held(_)
        ));
        // re-claiming one's own key refreshes it
        assert!(matches!(
            c.claim("k", &me, TTL).unwrap(),
            ClaimOutcome::Claimed { took_over: None }
        ));
        assert!(c.refresh_claim("k", &me).unwrap());
        assert!(!c.refresh_claim("k", &other_gpu).unwrap());
        c.release_claim("k", &other_gpu).unwrap(); // not its claim: nothing happens
        assert_eq!(c.claims().unwrap().len(), 1);
        c.release_claim("k", &me).unwrap();
        assert!(c.claims().unwrap().is_empty());
        assert!(matches!(
            c.claim("k", &other_gpu, TTL).unwrap(),
            ClaimOutcome::Claimed { took_over: None }
        ));
    }

    #[test]
    fn a_dead_process_s_claim_on_this_host_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path().join("c.db")).unwrap();
        let ghost = owner("h", dead_pid(), "cuda:0");
        c.claim("k", &ghost, TTL).unwrap();
        let me = ClaimOwner::this_process("h", "cuda:1");
        match c.claim("k", &me, TTL).unwrap() {
            ClaimOutcome::Claimed {
                took_over: Some(old),
            } => assert_eq!(old.owner, ghost),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.claims().unwrap()[0].owner, me);
    }

    #[test]
    fn an_expired_claim_of_another_host_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path().join("c.db")).unwrap();
        let far = owner("elsewhere", 1, "cuda:0");
        c.claim("k", &far, TTL).unwrap();
        c.conn()
            .execute("UPDATE claims SET claimed_at = claimed_at - 3600", [])
            .unwrap();
        let me = ClaimOwner::this_process("h", "cuda:0");
        assert!(matches!(
            c.claim("k", &me, TTL).unwrap(),
            ClaimOutcome::Claimed { took_over: Some(_) }
        ));
    }

    #[test]
    fn a_gpu_lock_is_exclusive_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        let a = GpuLock::acquire(&db, "h", "cuda:0", Duration::ZERO)
            .unwrap()
            .unwrap();
        assert!(a.path().starts_with(dir.path().join("c.db.locks")));
        assert!(
            GpuLock::acquire(&db, "h", "cuda:0", Duration::from_millis(50))
                .unwrap()
                .is_none()
        );
        assert!(GpuLock::acquire(&db, "h", "cuda:1", Duration::ZERO)
            .unwrap()
            .is_some());
        drop(a);
        assert!(GpuLock::acquire(&db, "h", "cuda:0", Duration::ZERO)
            .unwrap()
            .is_some());
    }
}
