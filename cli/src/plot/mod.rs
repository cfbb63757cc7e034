//! `tessera plot`: charts drawn from a tuning cache, as PNG or SVG (chosen by the extension of
//! `--out`).
//!
//! * `sweep`: every candidate of one problem on one device, by throughput ([`sweep`]).
//! * `roofline`: every winner of a device against its compute and bandwidth ceilings
//!   ([`roofline`]).
//! * `compare`: per-problem speedup of one cache's winners over another's ([`compare`]).
//!
//! Text is drawn with a font compiled into the binary (a Latin subset of DejaVu Sans, see
//! `cli/assets/fonts/README.md`), so plots render the same on a machine with no system fonts.
//! Bad input (no matching problem or device, an empty cache, an unknown extension, an existing
//! output file without `--force`) is a usage error (exit code 2) that names what exists.

mod compare;
mod roofline;
mod sweep;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{anyhow, Context};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use tessera_cache::{Cache, DeviceFingerprint, OpenOptions, ProblemRecord};

use crate::usage::{usage, UsageError};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    kind: Kind,
}

#[derive(clap::Subcommand)]
enum Kind {
    /// Every candidate's throughput for one problem, fastest first; the winner highlighted and
    /// candidates that are not `ok` marked at zero with their status.
    #[command(
        after_help = "Examples:\n  tessera plot sweep --problem 'm=384 n=768 k=768' -o sweep.png\n  tessera plot sweep --problem 'm=384 n=768 k=768' --device H100 -o sweep.svg --force"
    )]
    Sweep(sweep::Args),
    /// Every winner at (arithmetic intensity, achieved TFLOP/s) on log-log axes under the
    /// device's compute ceiling and bandwidth slope.
    #[command(
        after_help = "Examples:\n  tessera plot roofline -o roofline.png\n  tessera plot roofline --device H100 -o roofline.svg"
    )]
    Roofline(roofline::Args),
    /// Per-problem speedup of B's winners over A's (same device, template version, problem).
    #[command(after_help = "Examples:\n  tessera plot compare old.db new.db -o speedup.png")]
    Compare(compare::Args),
}

/// Where a plot goes: `--out` and `--force`, shared by every plot.
#[derive(clap::Args, Debug, Clone)]
pub struct OutArgs {
    /// The file to write; `.png` or `.svg` selects the format.
    #[arg(short = 'o', long, value_name = "FILE")]
    out: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.kind {
        Kind::Sweep(a) => sweep::run(a),
        Kind::Roofline(a) => roofline::run(a),
        Kind::Compare(a) => compare::run(a),
    }
}

/// The image format, from the output file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Svg,
}

/// A checked output file: known extension, and not an existing file unless `--force`.
#[derive(Debug, Clone)]
struct Output {
    path: PathBuf,
    format: Format,
    force: bool,
}

impl OutArgs {
    /// Checks the output before any work is done.
    fn check(&self) -> anyhow::Result<Output> {
        let ext = self
            .out
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let format = match ext.as_deref() {
            Some("png") => Format::Png,
            Some("svg") => Format::Svg,
            _ => {
                return Err(usage(format!(
                    "--out {}: unknown extension; use a .png or .svg file name",
                    self.out.display()
                )))
            }
        };
        if self.out.is_dir() {
            return Err(usage(format!(
                "--out {} is a directory; give a file name",
                self.out.display()
            )));
        }
        if !self.force && fs::symlink_metadata(&self.out).is_ok() {
            return Err(usage(format!(
                "{} exists; pass --force to replace it",
                self.out.display()
            )));
        }
        Ok(Output {
            path: self.out.clone(),
            format,
            force: self.force,
        })
    }
}

/// A chart that can be drawn on any plotters backend.
trait Figure {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>;
}

/// Draws `fig` into a temporary file next to the output, then moves it into place (never
/// over an existing file unless `--force`), so a failed plot leaves nothing half-written.
fn save(fig: &impl Figure, out: &Output) -> anyhow::Result<()> {
    register_fonts();
    let dir = match out.path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = out
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = match out.format {
        Format::Png => "png",
        Format::Svg => "svg",
    };
    let tmp = dir.join(format!(".{stem}.tmp{}.{ext}", std::process::id()));
    let drawn = draw_to(fig, out.format, &tmp);
    if let Err(e) = drawn {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let placed = place(&tmp, &out.path, out.force);
    let _ = fs::remove_file(&tmp);
    placed.with_context(|| format!("writing {}", out.path.display()))?;
    eprintln!("wrote {}", out.path.display());
    Ok(())
}

fn draw_to(fig: &impl Figure, format: Format, path: &Path) -> anyhow::Result<()> {
    let size = fig.size();
    match format {
        Format::Png => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            root.fill(&WHITE).map_err(drawing)?;
            fig.draw(&root)?;
            root.present().map_err(drawing)?;
        }
        Format::Svg => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            root.fill(&WHITE).map_err(drawing)?;
            fig.draw(&root)?;
            root.present().map_err(drawing)?;
        }
    }
    Ok(())
}

/// Moves the finished file into place: a hard link refuses an existing target, so without
/// `--force` a file that appeared meanwhile is still not overwritten.
fn place(tmp: &Path, dest: &Path, force: bool) -> anyhow::Result<()> {
    if force {
        fs::rename(tmp, dest)?;
        return Ok(());
    }
    match fs::hard_link(tmp, dest) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(anyhow::Error::new(UsageError(format!(
                "{} exists; pass --force to replace it",
                dest.display()
            ))))
        }
        // A file system without hard links: the existence check before drawing must do.
        Err(_) if !dest.exists() => Ok(fs::rename(tmp, dest)?),
        Err(e) => Err(e.into()),
    }
}

/// A plotters error as an error of this command.
fn drawing(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the plot failed: {e}")
}

/// The embedded font: DejaVu Sans, Latin/Greek/punctuation subset (Bitstream Vera license).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");

/// The family every text style names.
const FAMILY: &str = "sans-serif";

/// Makes [`FONT`] the font of [`FAMILY`] (every style falls back to it).
fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            panic!("the embedded font is not a valid TrueType font");
        }
    });
}

/// Text of `size` pixels in `color`.
fn text(size: u32, color: &RGBColor) -> TextStyle<'static> {
    TextStyle {
        color: color.to_backend_color(),
        ..TextStyle::from((FAMILY, size).into_font())
    }
}

// Colours (Tableau 10), readable on white and distinct from one another.
const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const RED: RGBColor = RGBColor(214, 39, 40);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
const BROWN: RGBColor = RGBColor(140, 86, 75);
const PINK: RGBColor = RGBColor(227, 119, 194);
const GREY: RGBColor = RGBColor(127, 127, 127);
const OLIVE: RGBColor = RGBColor(188, 189, 34);
const CYAN: RGBColor = RGBColor(23, 190, 207);
const DARK: RGBColor = RGBColor(40, 40, 40);
const LIGHT_GREY: RGBColor = RGBColor(235, 235, 235);

const PALETTE: [RGBColor; 10] = [
    BLUE, ORANGE, GREEN, RED, PURPLE, BROWN, PINK, GREY, OLIVE, CYAN,
];

/// Font sizes, in pixels, for a 1200×700 figure.
const TITLE: u32 = 24;
const SUBTITLE: u32 = 16;
const AXIS: u32 = 18;
const TICKS: u32 = 15;
const NOTE: u32 = 14;

/// Draws the title and subtitle lines at the top of `area`, which should be
/// [`header_height`] pixels high.
fn header<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    lines: &[String],
) -> anyhow::Result<()> {
    let width = area.dim_in_pixel().0 - 30;
    let style = text(TITLE, &BLACK);
    area.draw(&Text::new(
        fit(area, title, &style, width),
        (15, 10),
        style.clone(),
    ))
    .map_err(drawing)?;
    let style = text(SUBTITLE, &DARK);
    for (i, line) in lines.iter().enumerate() {
        area.draw(&Text::new(
            fit(area, line, &style, width),
            (15, 44 + 22 * i as i32),
            style.clone(),
        ))
        .map_err(drawing)?;
    }
    Ok(())
}

/// Height of the [`header`] area with `lines` subtitle lines.
fn header_height(lines: usize) -> u32 {
    48 + 22 * lines as u32
}

/// Width in pixels of `s` drawn in `style` (measured with the embedded font).
fn width_of<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, s: &str, style: &TextStyle) -> u32 {
    area.estimate_text_size(s, style).map_or_else(
        |_| (s.chars().count() as f64 * style.font.get_size() * 0.6) as u32,
        |(w, _)| w,
    )
}

/// `s`, cut with an ellipsis so that it is at most `max_px` pixels wide in `style`.
fn fit<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: &str,
    style: &TextStyle,
    max_px: u32,
) -> String {
    if width_of(area, s, style) <= max_px {
        return s.to_string();
    }
    let chars: Vec<char> = s.chars().collect();
    let (mut lo, mut hi) = (0, chars.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let cand: String = chars[..mid].iter().chain(['…'].iter()).collect();
        if width_of(area, &cand, style) <= max_px {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    chars[..lo].iter().chain(['…'].iter()).collect()
}

/// `s` broken at spaces into at most `max_lines` lines of at most `max_px` pixels (the last
/// one cut with an ellipsis if needed).
fn wrap<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: &str,
    style: &TextStyle,
    max_px: u32,
    max_lines: usize,
) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() && lines.len() + 1 < max_lines {
        if width_of(area, rest, style) <= max_px {
            break;
        }
        // The longest prefix ending at a space that fits.
        let mut cut = None;
        for (i, c) in rest.char_indices() {
            if c == ' ' {
                if width_of(area, &rest[..i], style) <= max_px {
                    cut = Some(i);
                } else {
                    break;
                }
            }
        }
        let Some(i) = cut else { break };
        lines.push(rest[..i].to_string());
        rest = rest[i..].trim_start();
    }
    if !rest.is_empty() {
        lines.push(fit(area, rest, style, max_px));
    }
    lines
}

/// Opens an existing cache (never creating one): the path from `--cache`, else
/// `TESSERA_CACHE`, else the default. A missing or empty cache is a usage error.
fn open_existing(path: &Path) -> anyhow::Result<Cache> {
    if !path.exists() {
        return Err(usage(format!(
            "no cache at {}; run `tessera tune` first or pass --cache",
            path.display()
        )));
    }
    let options = OpenOptions {
        create: false,
        read_only: true,
        ..OpenOptions::default()
    };
    let cache = Cache::open_with(path, &options).map_err(crate::cache::cache_error)?;
    let summary = cache.summary()?;
    if summary.results == 0 && summary.winners == 0 {
        return Err(usage(format!(
            "cache {} is empty (no results, no winners); run `tessera tune` first",
            path.display()
        )));
    }
    Ok(cache)
}

/// Whether `device` matches a `--device` substring (case-insensitive, against its full
/// description: name, arch, SMs, driver, toolchain, `simulated`).
fn device_matches(device: &DeviceFingerprint, filter: Option<&str>) -> bool {
    match filter {
        None => true,
        Some(f) => device
            .to_string()
            .to_lowercase()
            .contains(&f.to_lowercase()),
    }
}

/// `  - item` lines for an error message, at most 20 of them.
fn bullet_list<I: IntoIterator<Item = String>>(items: I) -> String {
    let items: Vec<String> = items.into_iter().collect();
    let mut s: String = items
        .iter()
        .take(20)
        .map(|i| format!("\n  - {i}"))
        .collect();
    if items.len() > 20 {
        s.push_str(&format!("\n  … and {} more", items.len() - 20));
    }
    s
}

/// Work and traffic of a stored problem, when its JSON is a problem this Tessera knows.
#[derive(Debug, Clone, Copy)]
struct Work {
    flops: f64,
    bytes: f64,
    /// Reported in GB/s rather than TFLOP/s (layernorm, softmax, embedding).
    memory_bound: bool,
}

fn work_of(problem: &ProblemRecord) -> Option<Work> {
    let p: tessera_dsl::Problem = serde_json::from_str(&problem.json).ok()?;
    let (flops, bytes) = (p.flops(), p.bytes());
    (flops > 0.0 && bytes > 0.0).then_some(Work {
        flops,
        bytes,
        memory_bound: p.memory_bound(),
    })
}

/// The values a plot axis takes. Anything outside, or not finite, is left out of a figure (and
/// said so), so an extreme value in a cache can neither overflow an axis to infinity nor
/// make its tick generation run over hundreds of decades.
const PLOTTABLE: std::ops::RangeInclusive<f64> = 1e-15..=1e15;

/// `v` if a plot can show it (finite, positive, within [`PLOTTABLE`]).
fn plottable(v: f64) -> Option<f64> {
    (v.is_finite() && PLOTTABLE.contains(&v)).then_some(v)
}

/// TFLOP/s of `flops` done in `ms` milliseconds.
fn tflops(flops: f64, ms: f64) -> f64 {
    flops / (ms * 1e-3) / 1e12
}

/// A number for a tick label or annotation: few digits, no trailing zeros.
fn num(v: f64) -> String {
    let a = v.abs();
    let s = if a == 0.0 {
        "0".to_string()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        let digits = (-a.log10().floor()) as usize + 1;
        format!("{v:.digits$}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Lengths of the prefix and suffix (ending / starting at a `_`) that all `names` share, so
/// that `gemm_f16_f32acc_128x128x32_w2x2_s4_rcr_a8` can be shown as `128x128x32_w2x2_s4`.
fn common_affixes(names: &[&str]) -> (usize, usize) {
    if names.len() < 2 {
        return (0, 0);
    }
    let first = names[0].as_bytes();
    let mut pre = first.len();
    let mut suf = first.len();
    for n in &names[1..] {
        let b = n.as_bytes();
        pre = pre.min(first.iter().zip(b).take_while(|(x, y)| x == y).count());
        suf = suf.min(
            first
                .iter()
                .rev()
                .zip(b.iter().rev())
                .take_while(|(x, y)| x == y)
                .count(),
        );
    }
    // Cut only just after / before an underscore.
    let pre = first[..pre]
        .iter()
        .rposition(|&c| c == b'_')
        .map_or(0, |i| i + 1);
    let suf = first[first.len() - suf..]
        .iter()
        .position(|&c| c == b'_')
        .map_or(0, |i| suf - i);
    let shortest = names.iter().map(|n| n.len()).min().unwrap_or(0);
    if pre + suf >= shortest {
        return (pre.min(shortest), 0);
    }
    (pre, suf)
}

/// `name` without the shared prefix and suffix (never empty).
fn shorten(name: &str, (pre, suf): (usize, usize)) -> String {
    let end = name.len().saturating_sub(suf);
    match name.get(pre..end) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_lose_their_shared_parts() {
        let names = [
            "gemm_f16_f32acc_128x128x32_w2x2_s4_rcr_bias_a8",
            "gemm_f16_f32acc_64x128x32_w2x2_s3_rcr_bias_a8",
            "gemm_f16_f32acc_256x128x64_w4x2_s4_rcr_bias_a8",
        ];
        let a = common_affixes(&names);
        assert_eq!(shorten(names[0], a), "128x128x32_w2x2_s4");
        assert_eq!(shorten(names[1], a), "64x128x32_w2x2_s3");
        assert_eq!(common_affixes(&names[..1]), (0, 0));
    }

    #[test]
    fn only_finite_moderate_values_are_plottable() {
        for v in [f64::NAN, f64::INFINITY, -1.0, 0.0, 1e-300, 1e307, f64::MAX] {
            assert_eq!(plottable(v), None, "{v}");
        }
        for v in [1e-12, 0.5, 989.0, 1e12] {
            assert_eq!(plottable(v), Some(v));
        }
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(num(989.0), "989");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1.0), "1");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(num(0.0123), "0.012");
    }

    #[test]
    fn long_text_is_cut_and_wrapped_to_its_measured_width() {
        register_fonts();
        let mut buf = vec![0u8; 400 * 100 * 3];
        let area = BitMapBackend::with_buffer(&mut buf, (400, 100)).into_drawing_area();
        let style = text(14, &BLACK);
        assert_eq!(fit(&area, "short", &style, 300), "short");
        let long = "word ".repeat(100);
        let cut = fit(&area, &long, &style, 300);
        assert!(
            cut.ends_with('…') && width_of(&area, &cut, &style) <= 300,
            "{cut}"
        );
        let lines = wrap(&area, &long, &style, 300, 2);
        assert_eq!(lines.len(), 2);
        assert!(
            !lines[0].ends_with('…') && lines[1].ends_with('…'),
            "{lines:?}"
        );
        assert!(lines.iter().all(|l| width_of(&area, l, &style) <= 300));
        assert_eq!(wrap(&area, "a b", &style, 300, 2), vec!["a b".to_string()]);
    }
}
