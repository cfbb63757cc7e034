//! Many writers on one file, and crashes: no "database is locked", nothing committed lost.
//!
//! The multi-process tests re-run this test binary as child writers: the child runs only
//! `child_writer`, selected by `--exact`, with its job in environment variables.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;

use tessera_cache::{Cache, ResultRow};

const MODE: &str = "TESSERA_CACHE_TEST_CHILD_MODE";
const PATH: &str = "TESSERA_CACHE_TEST_CHILD_PATH";
const WRITER: &str = "TESSERA_CACHE_TEST_CHILD_WRITER";

fn row(writer: &str, i: usize) -> ResultRow {
    common::result(
        &common::h100(),
        384,
        &format!("{writer}_{i:06}"),
        1.0 + i as f64 * 1e-4,
        20,
    )
}

fn count(path: &Path) -> u64 {
    Cache::open(path).unwrap().summary().unwrap().results
}

/// Not a test of its own: the body of a child process (does nothing when run normally).
#[test]
fn child_writer() {
    let (Ok(mode), Ok(path), Ok(writer)) = (
        std::env::var(MODE),
        std::env::var(PATH),
        std::env::var(WRITER),
    ) else {
        return;
    };
    let cache = Cache::open(&path).unwrap();
    match mode.as_str() {
        // 500 single-row transactions, as fast as possible.
        "write500" => {
            for i in 0..500 {
                cache.record_result(&row(&writer, i)).unwrap();
            }
        }
        // Batches of 10 until killed, reporting each commit.
        "forever" => {
            let mut out = std::io::stdout().lock();
            for batch in 0.. {
                let rows: Vec<_> = (0..10).map(|j| row(&writer, batch * 10 + j)).collect();
                cache.record_results(&rows).unwrap();
                writeln!(out, "committed {}", (batch + 1) * 10).unwrap();
                out.flush().unwrap();
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn spawn(mode: &str, path: &Path, writer: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
        .env(MODE, mode)
        .env(PATH, path)
        .env(WRITER, writer)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn two_threads_with_their_own_connections_write_500_rows_each() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("tune.db");
    let handles: Vec<_> = ["ta", "tb"]
        .into_iter()
        .map(|w| {
            let path = path.clone();
            thread::spawn(move || {
                let cache = Cache::open(&path).unwrap();
                for i in 0..500 {
                    cache.record_result(&row(w, i)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(count(&path), 1000);
}

#[test]
fn two_processes_write_500_rows_each_into_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    // The file does not exist yet: both processes race to create it, too.
    let path = dir.path().join("new/tune.db");
    let children: Vec<_> = ["pa", "pb"]
        .into_iter()
        .map(|w| spawn("write500", &path, w))
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(count(&path), 1000);
    let cache = Cache::open(&path).unwrap();
    for w in ["pa", "pb"] {
        let done = cache
            .done_kernels(
                &common::h100(),
                &row(w, 0).template,
                &common::problem(384).key,
            )
            .unwrap();
        assert_eq!(done.iter().filter(|k| k.starts_with(w)).count(), 500, "{w}");
    }
}

#[test]
fn rows_committed_before_sigkill_survive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tune.db");
    let mut child = spawn("forever", &path, "crash");
    let stdout = child.stdout.take().unwrap();
    let mut reported = 0usize;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("committed ") {
            reported = n.parse().unwrap();
            if reported >= 300 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL, mid-loop
    child.wait().unwrap();
    assert!(reported >= 300);
    let cache = Cache::open(&path).unwrap(); // also passes quick_check
    let stored = cache.summary().unwrap().results as usize;
    assert!(
        stored >= reported,
        "{stored} stored < {reported} reported committed"
    );
    assert_eq!(stored % 10, 0, "a batch was half written");
    let done = cache
        .done_kernels(
            &common::h100(),
            &row("crash", 0).template,
            &common::problem(384).key,
        )
        .unwrap();
    for i in 0..reported {
        assert!(done.contains(&format!("crash_{i:06}")), "row {i} lost");
    }
}

#[test]
fn rows_survive_a_connection_that_is_never_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tune.db");
    let cache = Cache::open(&path).unwrap();
    for i in 0..100 {
        cache.record_result(&row("leak", i)).unwrap();
    }
    // Simulated crash: no close, no checkpoint, no destructor.
    std::mem::forget(cache);
    assert_eq!(count(&path), 100);
}

#[test]
fn a_write_waits_out_a_lock_held_longer_than_the_busy_timeout() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tune.db");
    let opts = tessera_cache::OpenOptions {
        busy_timeout: Duration::from_millis(5),
        ..Default::default()
    };
    let cache = Cache::open_with(&path, &opts).unwrap();
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let release = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        blocker.execute_batch("COMMIT").unwrap();
    });
    let start = Instant::now();
    cache.record_result(&row("late", 0)).unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    release.join().unwrap();
    assert_eq!(count(&path), 1);
}

#[test]
fn a_lock_held_past_the_retry_budget_is_a_clear_busy_error() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tune.db");
    let opts = tessera_cache::OpenOptions {
        busy_timeout: Duration::from_millis(5),
        retry_for: Duration::from_millis(100),
        ..Default::default()
    };
    let cache = Cache::open_with(&path, &opts).unwrap();
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let e = cache.record_result(&row("late", 0)).unwrap_err();
    assert!(matches!(e, tessera_cache::CacheError::Busy { .. }), "{e}");
    blocker.execute_batch("ROLLBACK").unwrap();
    cache.record_result(&row("late", 0)).unwrap();
}
