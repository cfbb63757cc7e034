//! A file that is not a healthy Tessera cache is refused and never modified.

mod common;

use std::fs;
use std::path::Path;

use tessera_cache::{Cache, CacheError, ImportPolicy, SCHEMA_VERSION};

fn side_files(p: &Path) -> Vec<String> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .filter_map(|s| {
            let mut q = p.as_os_str().to_owned();
            q.push(s);
            Path::new(&q).exists().then(|| s.to_string())
        })
        .collect()
}

/// Opens `p`, expects a refusal, and checks the bytes did not change.
fn refused(p: &Path) -> CacheError {
    let before = fs::read(p).unwrap();
    let e = Cache::open(p).expect_err("must refuse");
    assert!(fs::read(p).unwrap() == before, "file bytes changed: {e}");
    // Refusing also must not leave a journal, WAL or shared-memory file next to it.
    assert!(side_files(p).is_empty(), "{:?} left behind", side_files(p));
    e
}

fn garbage(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn garbage_is_corrupt_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tune.db");
    fs::write(&p, garbage(8192)).unwrap();
    let e = refused(&p);
    assert!(matches!(e, CacheError::Corrupt { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("left untouched") && msg.contains(".bad"),
        "{msg}"
    );
    assert!(side_files(&p).is_empty(), "{:?}", side_files(&p));
    // Import refuses it the same way.
    let other = Cache::open(dir.path().join("other.db")).unwrap();
    assert!(matches!(
        other.import(&p, None, &ImportPolicy::default()),
        Err(CacheError::Corrupt { .. })
    ));
    assert!(fs::read(&p).unwrap() == garbage(8192));
}

#[test]
fn short_text_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tune.db");
    fs::write(&p, "not a database\n").unwrap();
    assert!(matches!(refused(&p), CacheError::Corrupt { .. }));
}

#[test]
fn truncated_databases_are_corrupt_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.db");
    let rows: Vec<_> = (0..2000)
        .map(|i| {
            common::result(
                &common::h100(),
                384 + (i % 7),
                &format!("k_{i:05}"),
                1.0 + i as f64 / 1000.0,
                50,
            )
        })
        .collect();
    drop(common::build(&good, &rows));
    assert!(
        side_files(&good).is_empty(),
        "closed cleanly: {:?}",
        side_files(&good)
    );
    let bytes = fs::read(&good).unwrap();
    assert!(bytes.len() > 100_000, "{}", bytes.len());
    for cut in [
        bytes.len() / 2,
        bytes.len() / 4,
        4096 + 100,
        4096,
        1000,
        200,
        50,
    ] {
        let p = dir.path().join(format!("cut_{cut}.db"));
        fs::write(&p, &bytes[..cut]).unwrap();
        let e = refused(&p);
        assert!(matches!(e, CacheError::Corrupt { .. }), "cut at {cut}: {e}");
        assert!(
            side_files(&p).is_empty(),
            "cut at {cut}: {:?} left behind",
            side_files(&p)
        );
    }
    // The intact copy still opens.
    Cache::open(&good).unwrap();
}

#[test]
fn newer_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tune.db");
    drop(common::build(
        &p,
        &[common::result(&common::h100(), 384, "k", 1.0, 10)],
    ));
    {
        let conn = rusqlite::Connection::open(&p).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        conn.pragma_update(None, "journal_mode", "delete").unwrap();
    }
    let e = refused(&p);
    assert!(
        matches!(e, CacheError::TooNew { found, .. } if found == SCHEMA_VERSION + 1),
        "{e}"
    );
    assert!(e.to_string().contains("upgrade Tessera"), "{e}");
}

#[test]
fn someone_elses_sqlite_file_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.db");
    {
        let conn = rusqlite::Connection::open(&p).unwrap();
        conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hi');")
            .unwrap();
    }
    let e = refused(&p);
    assert!(matches!(e, CacheError::Foreign { .. }), "{e}");
    {
        let conn = rusqlite::Connection::open(&p).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.pragma_update(None, "application_id", 42).unwrap();
    }
    assert!(matches!(refused(&p), CacheError::Foreign { .. }));
}

#[test]
fn damaged_pages_of_the_right_length_are_caught_by_quick_check() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.db");
    let rows: Vec<_> = (0..2000)
        .map(|i| {
            common::result(
                &common::h100(),
                384,
                &format!("k_{i:05}"),
                1.0 + i as f64 / 1000.0,
                50,
            )
        })
        .collect();
    drop(common::build(&good, &rows));
    let mut bytes = fs::read(&good).unwrap();
    let page = 4096;
    let n_pages = bytes.len() / page;
    // Scribble over the middle of the file, keeping its length and header.
    for b in &mut bytes[page * (n_pages / 2)..page * (n_pages / 2 + 3)] {
        *b = 0x5a;
    }
    let p = dir.path().join("scribbled.db");
    fs::write(&p, &bytes).unwrap();
    let e = refused(&p);
    assert!(matches!(e, CacheError::Corrupt { .. }), "{e}");
}
