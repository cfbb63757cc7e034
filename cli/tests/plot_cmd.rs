//! `tessera plot sweep | roofline | compare` on a cache written through the cache crate's API
//! with realistic rows (an H100, the real `gemm` template version, BERT-base shapes, ok and
//! failed candidates): each plot is written as PNG and SVG, and bad input is exit code 2 with
//! a message naming what exists.

use std::path::{Path, PathBuf};
use std::process::Command;

use tessera_cache::{
    Cache, DeviceFingerprint, ProblemRecord, Provenance, ResultRow, Status, TemplateKey,
    Throughput, ThroughputUnit, Timestamp, Timing, WinnerRow,
};
use tessera_dsl::{EpilogueOp, GemmProblem, Problem};

fn tessera(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env_remove("TESSERA_CACHE")
        .output()
        .expect("run tessera");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh directory for one test.
fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("plot_cmd")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn h100() -> DeviceFingerprint {
    DeviceFingerprint {
        name: "NVIDIA H100 80GB HBM3".into(),
        arch: "sm_90a".into(),
        sm_count: 132,
        driver: "580.65.06".into(),
        toolchain: "nvrtc 13.0".into(),
        simulated: false,
    }
}

fn gemm_template() -> &'static dyn tessera_dsl::Template {
    tessera_library::templates();
    tessera_dsl::find("gemm").expect("gemm template")
}

/// BERT-base GEMMs at sequence length 384 (QKV, attention output, FFN up and down) and a
/// decode-sized one.
fn problems() -> Vec<Problem> {
    let g = |m, n, k, epi: &[EpilogueOp]| {
        let mut p = GemmProblem::new(m, n, k);
        p.epilogue = epi.to_vec();
        Problem::Gemm(p)
    };
    use EpilogueOp::*;
    vec![
        g(384, 2304, 768, &[Bias]),
        g(384, 768, 768, &[Bias]),
        g(384, 3072, 768, &[Bias, Gelu]),
        g(384, 768, 3072, &[Bias, Residual]),
        g(16, 768, 768, &[Bias]),
    ]
}

/// A deterministic hash in [0, 1).
fn jitter(a: u64, b: u64) -> f64 {
    let mut x = a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 32;
    (x % 10_000) as f64 / 10_000.0
}

/// Every candidate of a 36-point slice of the gemm space for `problem`: most ok (timed by a
/// plausible model), big tiles with 4 stages rejected for shared memory, a few compile errors
/// and one wrong result. `scale` multiplies every time (for a second cache).
fn rows(problem: &Problem, pi: u64, scale: f64) -> Vec<ResultRow> {
    let t = gemm_template();
    let device = h100();
    let template = TemplateKey::new(t.name(), t.source_hash());
    let record = ProblemRecord::new(
        problem.key(),
        problem.op().name(),
        serde_json::to_string(problem).unwrap(),
    );
    let provenance = Provenance {
        origin_host: "gpu-node-7".into(),
        tool_version: "tessera 0.1.0".into(),
        measured_at: Timestamp::parse("2025-06-01T12:00:00Z").unwrap(),
    };
    let mut out = Vec::new();
    let mut i = 0u64;
    for tm in [64i64, 128, 256] {
        for tn in [64i64, 128, 256] {
            for tk in [32i64, 64] {
                for stages in [3i64, 4] {
                    i += 1;
                    let values = [tm, tn, tk, 2, 2, stages, 16, 1, 0, 1];
                    let config = t.config(&values, problem).expect("config");
                    let smem = (tm + tn) * tk * 2 * stages;
                    let (status, reason) = if smem > 232_448 {
                        (
                            Status::Rejected,
                            format!("shared memory {smem} B exceeds 232448 B per block"),
                        )
                    } else if tm == 64 && tn == 256 && tk == 64 && stages == 4 {
                        (
                            Status::CompileError,
                            "nvrtc: too many resources requested for launch".to_string(),
                        )
                    } else if tm == 256 && tn == 64 && tk == 32 && stages == 3 {
                        (
                            Status::WrongResult,
                            "max relative error 3.1e-1 exceeds 2e-2".to_string(),
                        )
                    } else {
                        (Status::Ok, String::new())
                    };
                    let flops = problem.flops();
                    // Efficiency: larger tiles are better until the grid underfills 132 SMs.
                    let g = problem.as_gemm().expect("GEMM fixtures");
                    let (m, n) = (g.m as f64, g.n as f64);
                    let tiles = (m / tm as f64).ceil() * (n / tn as f64).ceil();
                    let fill = (tiles / 132.0).min(1.0);
                    let size = ((tm * tn) as f64 / (256.0 * 256.0)).powf(0.3);
                    let eff = 0.75 * fill.powf(0.6) * size * (0.85 + 0.15 * jitter(pi, i));
                    let median_ms = scale * (flops / (eff * 989e12) * 1e3 + 0.004);
                    let ok = status == Status::Ok;
                    out.push(ResultRow {
                        device: device.clone(),
                        template: template.clone(),
                        problem: record.clone(),
                        kernel_name: config.kernel_name(),
                        config: config.assignment(),
                        config_json: serde_json::to_string(
                            &config
                                .params
                                .iter()
                                .map(|(k, v)| (k.clone(), *v))
                                .collect::<std::collections::BTreeMap<_, _>>(),
                        )
                        .unwrap(),
                        guards_json: format!(r#"{{"align":{}}}"#, config.variant.align),
                        status,
                        reason,
                        timing: ok.then(|| Timing {
                            median_ms,
                            p10_ms: median_ms * (0.97 - 0.03 * jitter(i, pi)),
                            p90_ms: median_ms * (1.02 + 0.05 * jitter(pi + 9, i)),
                            samples: 50,
                        }),
                        throughput: ok.then(|| Throughput {
                            value: flops / (median_ms * 1e-3) / 1e12,
                            unit: ThroughputUnit::Tflops,
                        }),
                        max_rel_error: ok.then_some(1.2e-3),
                        compile_s: (status != Status::Rejected).then_some(0.35),
                        provenance: provenance.clone(),
                    });
                }
            }
        }
    }
    out
}

/// A cache with every problem's candidates and winners; `scale(problem index)` multiplies
/// its times.
fn write_cache(path: &Path, scale: impl Fn(usize) -> f64) {
    let cache = Cache::open(path).unwrap();
    for (pi, p) in problems().iter().enumerate() {
        let rows = rows(p, pi as u64, scale(pi));
        cache.record_results(&rows).unwrap();
        let best = rows
            .iter()
            .filter(|r| r.is_eligible())
            .min_by(|a, b| {
                a.timing
                    .unwrap()
                    .median_ms
                    .total_cmp(&b.timing.unwrap().median_ms)
            })
            .unwrap();
        cache
            .record_winner(&WinnerRow::from_result(best).unwrap())
            .unwrap();
    }
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    assert!(
        bytes.len() > 20_000,
        "{} is only {} bytes",
        path.display(),
        bytes.len()
    );
}

fn read_svg(path: &Path) -> String {
    let svg = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(svg.contains("<svg"), "{}", path.display());
    assert!(
        svg.len() > 5_000,
        "{} is only {} bytes",
        path.display(),
        svg.len()
    );
    svg
}

#[test]
fn sweep_draws_every_candidate() {
    let d = dir("sweep");
    let db = d.join("tune.db");
    write_cache(&db, |_| 1.0);
    let png = d.join("sweep.png");
    let (code, _, err) = tessera(&[
        "plot",
        "sweep",
        "--cache",
        s(&db),
        "--problem",
        "m=384 n=768 k=768",
        "--device",
        "h100",
        "--out",
        s(&png),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_png(&png);

    let svg = d.join("sweep.svg");
    let (code, _, err) = tessera(&[
        "plot",
        "sweep",
        "--cache",
        s(&db),
        "--problem",
        "n=3072 k=768",
        "--out",
        s(&svg),
    ]);
    assert_eq!(code, 0, "{err}");
    let text = read_svg(&svg);
    for want in [
        "throughput (TFLOP/s)",
        "candidates, fastest first (rank)",
        "gemm m=384 n=3072 k=768",
        "NVIDIA H100 80GB HBM3",
        "winner",
        "rejected",
        "compile_error",
        "wrong_result",
    ] {
        assert!(text.contains(want), "sweep SVG lacks {want:?}");
    }

    // An existing file is kept unless --force.
    let before = std::fs::read(&png).unwrap();
    let (code, _, err) = tessera(&[
        "plot",
        "sweep",
        "--cache",
        s(&db),
        "--problem",
        "m=16 ",
        "--out",
        s(&png),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&png).unwrap(), before);
    let (code, _, err) = tessera(&[
        "plot",
        "sweep",
        "--cache",
        s(&db),
        "--problem",
        "m=16 ",
        "--out",
        s(&png),
        "--force",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_png(&png);
    assert_ne!(std::fs::read(&png).unwrap(), before);
}

#[test]
fn roofline_draws_every_winner_under_the_ceilings() {
    let d = dir("roofline");
    let db = d.join("tune.db");
    write_cache(&db, |_| 1.0);
    let png = d.join("roofline.png");
    let (code, _, err) = tessera(&["plot", "roofline", "--cache", s(&db), "--out", s(&png)]);
    assert_eq!(code, 0, "{err}");
    assert_png(&png);
    let svg = d.join("roofline.svg");
    let (code, _, err) = tessera(&[
        "plot",
        "roofline",
        "--cache",
        s(&db),
        "--device",
        "sm_90a",
        "--out",
        s(&svg),
    ]);
    assert_eq!(code, 0, "{err}");
    let text = read_svg(&svg);
    for want in [
        "arithmetic intensity (FLOP/byte)",
        "achieved throughput (TFLOP/s)",
        "compute ceiling: 989 TFLOP/s",
        "bandwidth slope: 3350 GB/s",
        "gemm winners",
    ] {
        assert!(text.contains(want), "roofline SVG lacks {want:?}");
    }
}

#[test]
fn compare_draws_speedups_per_problem() {
    let d = dir("compare");
    let a = d.join("a.db");
    let b = d.join("b.db");
    write_cache(&a, |_| 1.0);
    write_cache(&b, |pi| [0.8, 1.1, 0.65, 0.9, 1.0][pi]);
    let png = d.join("compare.png");
    let (code, _, err) = tessera(&["plot", "compare", s(&a), s(&b), "--out", s(&png)]);
    assert_eq!(code, 0, "{err}");
    assert_png(&png);
    let svg = d.join("compare.SVG");
    let (code, _, err) = tessera(&["plot", "compare", s(&a), s(&b), "--out", s(&svg)]);
    assert_eq!(code, 0, "{err}");
    let text = read_svg(&svg);
    for want in [
        "speedup of B over A",
        "B faster",
        "B slower",
        "1.0× (same speed)",
        "gemm m=16 n=768 k=768",
    ] {
        assert!(text.contains(want), "compare SVG lacks {want:?}");
    }
}

#[test]
fn bad_input_is_exit_code_2_naming_what_exists() {
    let d = dir("errors");
    let db = d.join("tune.db");
    write_cache(&db, |_| 1.0);
    let out = d.join("x.png");

    let (code, _, err) = tessera(&[
        "plot",
        "sweep",
        "--cache",
        s(&db),
        "--problem",
        "m=1 ",
        "--out",
        s(&d.join("x.jpg")),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(".png or .svg"), "{err}");

    let (code, _, err) = tessera(&[
        "plot",
        "sweep",
        "--cache",
        s(&db),
        "--problem",
        "m=999",
        "--out",
        s(&out),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("gemm m=384 n=2304 k=768 f16->f16 rcr epilogue=bias"),
        "{err}"
    );

    let (code, _, err) = tessera(&[
        "plot",
        "sweep",
        "--cache",
        s(&db),
        "--problem",
        "m=384",
        "--out",
        s(&out),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("matches 4 problems"), "{err}");

    let (code, _, err) = tessera(&[
        "plot",
        "sweep",
        "--cache",
        s(&db),
        "--problem",
        "m=16 ",
        "--device",
        "MI300",
        "--out",
        s(&out),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("NVIDIA H100 80GB HBM3 (sm_90a"), "{err}");

    let (code, _, err) = tessera(&[
        "plot",
        "roofline",
        "--cache",
        s(&db),
        "--device",
        "A100",
        "--out",
        s(&out),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("NVIDIA H100 80GB HBM3"), "{err}");

    let empty = d.join("empty.db");
    drop(Cache::open(&empty).unwrap());
    let (code, _, err) = tessera(&["plot", "roofline", "--cache", s(&empty), "--out", s(&out)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("empty"), "{err}");
    let (code, _, err) = tessera(&["plot", "compare", s(&db), s(&empty), "--out", s(&out)]);
    assert_eq!(code, 2, "{err}");

    let missing = d.join("missing.db");
    let (code, _, err) = tessera(&["plot", "roofline", "--cache", s(&missing), "--out", s(&out)]);
    assert_eq!(code, 2, "{err}");
    assert!(!missing.exists(), "a missing cache is not created");
    assert!(!out.exists(), "nothing is written on error");
    let leftovers: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A text of a plotters SVG: its anchor point, the box a text of its length can at most
/// cover (every character as wide as the font is high), and the text.
struct SvgText {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
    text: String,
}

impl SvgText {
    fn intersects(&self, o: &SvgText) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }
}

/// Every `<text>` of an SVG written by plotters, with a conservative bounding box: plotters
/// writes `font-size` as the pixel size / 1.24 and places the anchor with `dy` (`0.76em`: top,
/// `0.5ex`: centre, `-0.5ex`: bottom) and `text-anchor`.
fn svg_texts(svg: &str) -> Vec<SvgText> {
    let attr = |tag: &str, name: &str| -> String {
        let key = format!(" {name}=\"");
        let at = tag.find(&key).map(|i| i + key.len()).unwrap();
        tag[at..].split('"').next().unwrap().to_string()
    };
    svg.split("<text")
        .skip(1)
        .map(|t| {
            let (tag, rest) = t.split_once('>').unwrap();
            let text = rest.split("</text>").next().unwrap().trim().to_string();
            let x: f64 = attr(tag, "x").parse().unwrap();
            let y: f64 = attr(tag, "y").parse().unwrap();
            let px = attr(tag, "font-size").parse::<f64>().unwrap() * 1.24;
            let w = text.chars().count() as f64 * px;
            let (y0, y1) = match attr(tag, "dy").as_str() {
                "0.76em" => (y, y + px),
                "-0.5ex" => (y - px, y),
                _ => (y - px / 2.0 - 1.0, y + px / 2.0 + 1.0),
            };
            let (x0, x1) = match attr(tag, "text-anchor").as_str() {
                "end" => (x - w, x),
                "middle" => (x - w / 2.0, x + w / 2.0),
                _ => (x, x + w),
            };
            SvgText {
                x0,
                y0,
                x1,
                y1,
                text,
            }
        })
        .collect()
}

#[test]
fn the_sweep_winner_label_never_overlaps_the_legend() {
    // Issue 14, item 8: the winner's label ran into the legend. A stored winner that is not
    // the fastest candidate (a near-tie, or a winner kept from an earlier sweep) has its bar
    // at the right, under where the legend was.
    let d = dir("sweep_label");
    let db = d.join("tune.db");
    write_cache(&db, |_| 1.0);
    let p = &problems()[2];
    let slowest = rows(p, 2, 1.0)
        .into_iter()
        .filter(|r| r.is_eligible())
        .max_by(|a, b| {
            a.timing
                .unwrap()
                .median_ms
                .total_cmp(&b.timing.unwrap().median_ms)
        })
        .unwrap();
    let cache = Cache::open(&db).unwrap();
    cache
        .record_winner(&WinnerRow::from_result(&slowest).unwrap())
        .unwrap();
    drop(cache);
    for (problem, out) in [
        ("n=3072 k=768", "right.svg"),
        ("m=384 n=768 k=768", "left.svg"),
    ] {
        let svg = d.join(out);
        let (code, _, err) = tessera(&[
            "plot",
            "sweep",
            "--cache",
            s(&db),
            "--problem",
            problem,
            "--out",
            s(&svg),
        ]);
        assert_eq!(code, 0, "{err}");
        let texts = svg_texts(&read_svg(&svg));
        let label: Vec<&SvgText> = texts
            .iter()
            .filter(|t| t.text.starts_with("winner: "))
            .collect();
        assert_eq!(label.len(), 1, "{out}");
        let legend: Vec<&SvgText> = texts
            .iter()
            .filter(|t| {
                t.text == "winner"
                    || t.text.starts_with("ok (")
                    || t.text == "p10–p90 spread"
                    || t.text.ends_with(", at 0")
            })
            .collect();
        assert!(legend.len() >= 4, "{out}: the legend is drawn");
        for l in legend {
            assert!(
                !label[0].intersects(l),
                "{out}: the winner label {:?} at ({}, {}) overlaps the legend entry {:?} at ({}, {})",
                label[0].text,
                label[0].x0,
                label[0].y0,
                l.text,
                l.x0,
                l.y0
            );
        }
    }
}
