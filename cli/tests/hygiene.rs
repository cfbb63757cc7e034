//! What a user expects of any command line, checked on the simulated device (CI): read-only
//! caches can be read and refuse writes up front, output to a closed pipe is not a crash,
//! `--json` prints JSON, a filter that matches nothing is an error, problems too big for
//! the device are refused before anything is allocated, and every `--help` has an example.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TINY: &str = "defaults: { op: gemm }\nproblems:\n  - { name: tiny, m: 64, n: 128, k: 64 }\n";

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env_remove("TESSERA_CACHE")
        .output()
        .expect("run tessera")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// Tunes `shapes` on the simulated H100 into `cache`.
fn sim_tune(shapes: &Path, cache: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "tune",
        "--gpu",
        "h100",
        "--sim",
        "--quiet",
        "--shapes",
        s(shapes),
        "--cache",
        s(cache),
    ];
    args.extend_from_slice(extra);
    tessera(&args)
}

/// A directory this process can't write, undone on drop. Permission bits are enough for a
/// normal user; root ignores them, so for root the directory is also made immutable.
struct ReadOnlyDir {
    dir: PathBuf,
    immutable: bool,
}

fn can_create_in(dir: &Path) -> bool {
    let probe = dir.join("probe");
    let ok = std::fs::write(&probe, b"x").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

impl ReadOnlyDir {
    /// `None` when this machine can't make a directory read-only for this process.
    fn new(dir: &Path) -> Option<ReadOnlyDir> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).ok()?;
        let mut guard = ReadOnlyDir {
            dir: dir.to_path_buf(),
            immutable: false,
        };
        if can_create_in(dir) {
            guard.immutable = Command::new("chattr")
                .arg("+i")
                .arg(dir)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        }
        (!can_create_in(dir)).then_some(guard)
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.immutable {
            let _ = Command::new("chattr").arg("-i").arg(&self.dir).status();
        }
        let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755));
    }
}

#[test]
fn a_read_only_cache_is_readable_and_writes_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(dir.path(), "tiny.yaml", TINY);
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let cache = ro.join("tune.db");
    let o = sim_tune(&shapes, &cache, &["--budget", "30"]);
    assert!(o.status.success(), "{}", text(&o));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    let Some(_guard) = ReadOnlyDir::new(&ro) else {
        eprintln!("skipped: can't make a read-only directory on this machine");
        return;
    };
    let c = s(&cache);
    let exported = dir.path().join("out.db");
    let png = dir.path().join("sweep.png");
    for args in [
        vec!["cache", "ls", "--cache", c],
        vec!["cache", "ls", "--json", "--cache", c],
        vec!["cache", "why", "m=64", "--cache", c],
        vec!["cache", "export", "--out", s(&exported), "--cache", c],
        vec![
            "plot",
            "sweep",
            "--problem",
            "m=64",
            "--out",
            s(&png),
            "--cache",
            c,
        ],
    ] {
        let o = tessera(&args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        assert!(!text(&o).contains("Error code"), "{args:?}: {}", text(&o));
    }
    assert!(exported.exists() && png.exists());
    // Writes name the path that isn't writable, and fail before measuring anything.
    let started = Instant::now();
    let o = sim_tune(&shapes, &cache, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let msg = text(&o);
    assert!(msg.contains("not writable"), "{msg}");
    assert!(msg.contains(s(&ro)), "{msg}");
    assert!(!msg.contains("Error code"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(2), "{msg}");
    let o = tessera(&["cache", "gc", "--cache", c]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not writable"), "{}", text(&o));
    // compile without tuning only reads the cache; with tuning it must write it.
    let model = dir.path().join("bert");
    tessera_compiler::fixture::Fixture::tiny()
        .write(&model)
        .unwrap();
    let plan = dir.path().join("bert.tsr");
    let compile = |extra: &[&str]| {
        let mut args = vec![
            "compile",
            s(&model),
            "--gpu",
            "h100",
            "--sim",
            "--batch",
            "1",
            "--seq",
            "16",
            "-o",
            s(&plan),
            "--cache",
            c,
            "--quiet",
        ];
        args.extend_from_slice(extra);
        tessera(&args)
    };
    let o = compile(&["--no-tune"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = compile(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not writable"), "{}", text(&o));
    // A new cache in that directory: the same, and nothing is created.
    let fresh = ro.join("new.db");
    let o = sim_tune(&shapes, &fresh, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not writable"), "{}", text(&o));
    assert!(!fresh.exists());
    let mut names: Vec<_> = std::fs::read_dir(&ro)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    // `tune.db.locks` holds the GPU lock files of the first tune (made while the directory
    // was writable); the refused commands added nothing
    assert_eq!(names, ["tune.db", "tune.db.locks"]);
}

/// Runs tessera with its stdout a pipe that is already closed (what `| head -1` leaves when
/// `head` has exited).
fn into_closed_pipe(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env_remove("TESSERA_CACHE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tessera");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait for tessera")
}

#[test]
fn a_closed_stdout_pipe_is_a_clean_exit_not_a_panic() {
    for args in [
        vec!["templates"],
        vec!["templates", "--json"],
        vec!["devices"],
    ] {
        let o = into_closed_pipe(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn devices_json_is_json_even_without_a_gpu() {
    let o = tessera(&["devices", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&o)));
    assert!(v.is_array(), "{v}");
}

#[test]
fn templates_that_match_no_problem_are_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(dir.path(), "tiny.yaml", TINY);
    let cache = dir.path().join("tune.db");
    let o = sim_tune(&shapes, &cache, &["--templates", "layernorm"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let msg = text(&o);
    assert!(msg.contains("--templates layernorm"), "{msg}");
    assert!(msg.contains("gemm"), "{msg}");
    assert!(!msg.contains("tuned 0 problems"), "{msg}");
    assert!(!cache.exists());
}

#[test]
fn a_problem_bigger_than_the_device_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(
        dir.path(),
        "huge.yaml",
        "defaults: { op: gemm }\nproblems:\n  - { name: tiny, m: 64, n: 128, k: 64 }\n  - { name: huge, m: 4000000, n: 4000000, k: 64 }\n",
    );
    let cache = dir.path().join("tune.db");
    // Its own process group, so that a run that doesn't stop is killed with its workers.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "tune", "--gpu", "h100", "--sim", "--quiet", "--budget", "20",
        ])
        .args(["--shapes", s(&shapes), "--cache", s(&cache)])
        .env_remove("TESSERA_CACHE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("run tessera");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!("tune of a 30 TB problem was still running after 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("problem huge (gemm m=4000000 n=4000000 k=64"),
        "{msg}"
    );
    assert!(msg.contains("GiB of device memory"), "{msg}");
    // Refused before anything was measured: not even the small problem.
    assert!(!msg.contains("tuned"), "{msg}");
    assert!(!cache.exists(), "{msg}");
}

/// Every command users run, as `tessera <these> --help` takes them.
const COMMANDS: [&[&str]; 21] = [
    &[],
    &["templates"],
    &["emit"],
    &["devices"],
    &["tune"],
    &["cache"],
    &["cache", "ls"],
    &["cache", "why"],
    &["cache", "export"],
    &["cache", "import"],
    &["cache", "merge"],
    &["cache", "diff"],
    &["cache", "gc"],
    &["plot"],
    &["plot", "sweep"],
    &["plot", "roofline"],
    &["plot", "compare"],
    &["compile"],
    &["inspect"],
    &["run"],
    &["bench"],
];

#[test]
fn every_help_has_an_example() {
    for cmd in COMMANDS {
        let mut args = cmd.to_vec();
        args.push("--help");
        let o = tessera(&args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        let help = String::from_utf8_lossy(&o.stdout);
        let examples = help
            .split_once("Examples:\n")
            .unwrap_or_else(|| panic!("{args:?} --help has no Examples:\n{help}"))
            .1;
        let first = examples.lines().next().unwrap_or("").trim();
        assert!(
            first.starts_with(format!("tessera {}", cmd.join(" ")).trim_end()),
            "{args:?}: the first example does not run this command: {first}"
        );
    }
}

#[test]
fn flags_are_named_alike_across_subcommands() {
    // -o/--out wherever a file or directory is written.
    for cmd in [
        &["cache", "export"][..],
        &["cache", "merge"],
        &["plot", "sweep"],
        &["plot", "roofline"],
        &["plot", "compare"],
        &["compile"],
        &["run"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let help = String::from_utf8_lossy(&tessera(&args).stdout).into_owned();
        assert!(
            help.contains("-o, --out"),
            "{cmd:?} has no -o/--out:\n{help}"
        );
    }
    // --device names the device on tune and compile too (alias of --gpu), --template(s)
    // either way.
    for cmd in ["tune", "compile"] {
        let help = String::from_utf8_lossy(&tessera(&[cmd, "--help"]).stdout).into_owned();
        assert!(help.contains("--device"), "{cmd}:\n{help}");
    }
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(dir.path(), "tiny.yaml", TINY);
    let cache = dir.path().join("tune.db");
    let o = tessera(&[
        "tune",
        "--device",
        "h100",
        "--sim",
        "--shapes",
        s(&shapes),
        "--cache",
        s(&cache),
        "--template",
        "layernorm",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--templates layernorm"), "{}", text(&o));
}

#[test]
fn export_and_merge_refuse_a_json_or_other_foreign_extension() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(dir.path(), "tiny.yaml", TINY);
    let cache = dir.path().join("tune.db");
    let o = sim_tune(&shapes, &cache, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let json = dir.path().join("f.json");
    let o = tessera(&["cache", "export", "--out", s(&json), "--cache", s(&cache)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("name it .db"), "{}", text(&o));
    assert!(text(&o).contains("--json"), "{}", text(&o));
    assert!(!json.exists());
    let csv = dir.path().join("m.csv");
    let o = tessera(&["cache", "merge", s(&cache), s(&cache), "-o", s(&csv)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!csv.exists());
    // .db, .sqlite and no extension are fine.
    for name in ["f.db", "f.sqlite", "f"] {
        let out = dir.path().join(name);
        let o = tessera(&["cache", "export", "-o", s(&out), "--cache", s(&cache)]);
        assert!(o.status.success(), "{name}: {}", text(&o));
    }
}

#[test]
fn a_sweep_that_finds_unfinished_work_hints_at_resume_and_why_shows_compile_times() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(dir.path(), "tiny.yaml", TINY);
    let cache = dir.path().join("tune.db");
    // A budget that runs out at once leaves the problem unfinished (its rejected rows stored).
    let o = sim_tune(&shapes, &cache, &["--budget", "0.000001"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = sim_tune(&shapes, &cache, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("hint: an earlier run left tiny unfinished"),
        "{out}"
    );
    assert!(out.contains("--resume"), "{out}");
    // Finished now: no hint.
    let o = sim_tune(&shapes, &cache, &[]);
    assert!(!text(&o).contains("hint:"), "{}", text(&o));
    // COMPILE s shows the time compiling took, not 0.00 for everything that took < 5 ms.
    let o = tessera(&["cache", "why", "m=64", "--cache", s(&cache)]);
    assert!(o.status.success(), "{}", text(&o));
    let why = String::from_utf8_lossy(&o.stdout).into_owned();
    let header = why
        .lines()
        .find(|l| l.contains("COMPILE s"))
        .expect("a COMPILE s column");
    let col = header.find("COMPILE s").unwrap() + "COMPILE s".len();
    let ok_rows: Vec<&str> = why.lines().filter(|l| l.contains(" ok ")).collect();
    assert!(!ok_rows.is_empty(), "{why}");
    for row in ok_rows {
        let cell = row[..col].split_whitespace().last().unwrap();
        let seconds: f64 = cell.parse().unwrap_or_else(|_| panic!("{cell}: {row}"));
        assert!(seconds > 0.0, "compile time shown as {cell}: {row}");
    }
}

/// Every `<text>` of an SVG plotters wrote: (its attributes, its text).
fn svg_texts(svg: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find("<text ") {
        rest = &rest[i + 6..];
        let Some(end) = rest.find('>') else { break };
        let attrs = rest[..end].to_string();
        rest = &rest[end + 1..];
        let Some(close) = rest.find("</text>") else {
            break;
        };
        out.push((attrs, rest[..close].trim().to_string()));
        rest = &rest[close..];
    }
    out
}

fn attr(attrs: &str, name: &str) -> Option<f64> {
    let start = attrs.find(&format!("{name}=\""))? + name.len() + 2;
    let len = attrs[start..].find('"')?;
    attrs[start..start + len].parse().ok()
}

#[test]
fn roofline_lists_layernorm_in_gb_s_and_no_label_is_cut_or_crossed() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(
        dir.path(),
        "mixed.yaml",
        "problems:\n  - { name: proj, op: gemm, m: 64, n: 128, k: 64, epilogue: [bias, gelu] }\n  - { name: ln, op: layernorm, rows: 32, cols: 768, fused: [residual] }\n",
    );
    let cache = dir.path().join("tune.db");
    let o = sim_tune(&shapes, &cache, &["--budget", "60"]);
    assert!(o.status.success(), "{}", text(&o));
    let svg_path = dir.path().join("roofline.svg");
    let o = tessera(&["plot", "roofline", "--cache", s(&cache), "-o", s(&svg_path)]);
    assert!(o.status.success(), "{}", text(&o));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let texts = svg_texts(&svg);
    let all: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
    // The layernorm winner's throughput in GB/s (not only the bandwidth ceiling's label),
    // the GEMM's in TFLOP/s.
    let rates = |unit: &str| {
        all.iter()
            .filter(|t| {
                t.strip_suffix(unit)
                    .is_some_and(|n| n.trim().parse::<f64>().is_ok() && !t.starts_with("3350"))
            })
            .count()
    };
    assert_eq!(rates(" GB/s"), 1, "{all:?}");
    assert_eq!(rates(" TFLOP/s"), 1, "{all:?}");
    // No label cut short.
    assert!(!svg.contains('…'), "{all:?}");
    assert!(all.iter().any(|t| t.contains("fused=residual")), "{all:?}");
    // The peak label ends left of the ridge, where the dashed slope can't cross it.
    let find = |prefix: &str| {
        texts
            .iter()
            .find(|(_, t)| t.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {all:?}"))
    };
    let (peak, _) = find("peak ");
    let (ridge, _) = find("ridge ");
    assert!(peak.contains("text-anchor=\"end\""), "{peak}");
    assert!(
        attr(peak, "x").unwrap() < attr(ridge, "x").unwrap(),
        "{peak} / {ridge}"
    );
    // A layernorm sweep is drawn in GB/s too.
    let sweep = dir.path().join("sweep.svg");
    let o = tessera(&[
        "plot",
        "sweep",
        "--problem",
        "layernorm",
        "--cache",
        s(&cache),
        "-o",
        s(&sweep),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let svg = std::fs::read_to_string(&sweep).unwrap();
    let texts = svg_texts(&svg);
    assert!(
        texts.iter().any(|(_, t)| t == "throughput (GB/s)"),
        "{texts:?}"
    );
    assert!(
        !texts.iter().any(|(_, t)| t.contains("TFLOP/s")),
        "{texts:?}"
    );
}
